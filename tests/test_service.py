"""/healthz and /metrics of a running App against the fake exchange."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.conditions import parse
from alertbot.rules.model import Rule, RuleSet
from tests.fakes.binance import FakeBinance, mini_ticker

T = 1_772_000_000_000


def app_for(tmp: Path, fake: FakeBinance) -> App:
    rules = RuleSet(
        rules=(Rule(id="btc-up", condition=parse("crosses above 100"), symbols=("BTCUSDT",)),)
    )
    feed = FeedSettings(
        ws_root=fake.ws_url,
        rest_root=fake.rest_url,
        stale_after=0.4,
        symbol_stale_after=0.4,
        backoff_initial=0.02,
        backoff_max=0.1,
        ping_interval=None,
    )
    delivery = DeliverySettings(db=str(tmp / "a.db"))
    return App(rules, feed, delivery, ChatSettings(), grace=0.5, out=io.StringIO(), http_port=0)


async def test_healthz_follows_the_feed_and_metrics_count_what_happened(tmp_path):
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await fake.wait_for(lambda: app.http is not None and app.http.port != 0)
            assert app.http is not None
            base = f"http://127.0.0.1:{app.http.port}"
            async with httpx.AsyncClient(base_url=base) as http:
                first = await http.get("/healthz")
                assert first.status_code == 503
                assert first.json()["reasons"] == ["feed: no market data received yet"]

                await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
                await fake.publish([mini_ticker("BTCUSDT", 90, T)])
                await fake.publish([mini_ticker("BTCUSDT", 110, T + 1000)])
                await fake.wait_for(lambda: app.pipeline.alerts == 1)
                ok = await http.get("/healthz")
                assert ok.status_code == 200, ok.text
                assert ok.json()["status"] == "ok"

                fake.silence()  # the feed goes quiet: unhealthy until data flows again
                await fake.wait_for(
                    lambda: (app.pipeline.feed.health().last_message_age or 0) > 0.5
                )
                stale = await http.get("/healthz")
                assert stale.status_code == 503
                assert stale.json()["reasons"][0].startswith("feed: no market data for")
                await fake.wait_for(lambda: any(not c.silenced for c in fake.connections))
                await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
                await fake.publish([mini_ticker("BTCUSDT", 111, T + 2000)])
                await fake.wait_for(
                    lambda: (app.pipeline.feed.health().last_message_age or 9) < 0.3
                )
                assert (await http.get("/healthz")).status_code == 200

                metrics = (await http.get("/metrics")).text
                assert (await http.get("/nothing")).status_code == 404
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert "alertbot_tickers_total 3.0" in metrics
    assert 'alertbot_alerts_total{rule="btc-up"} 1.0' in metrics
    assert 'alertbot_deliveries_total{channel="console",outcome="sent"} 1.0' in metrics
    assert "alertbot_outbox_depth 0.0" in metrics
    assert "alertbot_feed_reconnects_total 1.0" in metrics
    assert "alertbot_feed_last_message_age_seconds" in metrics
    assert "alertbot_frame_seconds_count 3.0" in metrics
    assert "alertbot_feed_problems_total" in metrics
