"""/healthz and /metrics of a running App against the fake exchange."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import resource
import signal
import socket
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.conditions import parse
from alertbot.rules.model import Rule, RuleSet
from alertbot.service import HttpService
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.waiting import wait_until
from tests.test_cli_live import env_for, finish, start

T = 1_772_000_000_000


def app_for(
    tmp: Path, fake: FakeBinance, *, symbols_refresh: float = 3600.0, **delivery: Any
) -> App:
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
        symbols_refresh=symbols_refresh,
    )
    settings = DeliverySettings(db=str(tmp / "a.db"), **delivery)
    return App(rules, feed, settings, ChatSettings(), grace=0.5, out=io.StringIO(), http_port=0)


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


async def test_an_exchange_answer_nested_too_deep_is_a_bad_answer_and_the_refresh_goes_on(
    tmp_path, caplog
):
    """exchangeInfo answered with JSON nested deeper than the parser's recursion limit: its
    RecursionError (not the ValueError of other bad answers) used to end the symbol refresh
    task for good, so the bot never learnt a new listing again. Now it is a bad answer like
    any other: one warning, and the next refresh reads the list once the answer is good."""
    caplog.set_level(logging.WARNING, logger="alertbot")
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        fake.answer_rest(b"[" * 100_000 + b"]" * 100_000)
        app = app_for(tmp_path, fake, symbols_refresh=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            directory = app.pipeline.directory
            await fake.wait_for(lambda: fake.stats.rest_requests >= 2)
            assert directory.exchange is None
            assert directory.last_error is not None
            assert directory.last_error.startswith("RecursionError")
            fake.answer_rest(None)
            await fake.wait_for(lambda: directory.exchange is not None)
            assert not app.pipeline.dead
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    warned = [r.getMessage() for r in caplog.records if "symbols: cannot read" in r.getMessage()]
    assert len(warned) == 1
    assert "RecursionError" in warned[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_symbols_task_that_ends_is_logged_and_fails_healthz(tmp_path, caplog):
    """The symbol refresh task ending while the pipeline runs (no known input ends it now: it
    is cancelled by name here, as the engine's is) is a CRITICAL line at once, and /healthz 503
    "symbols stopped" though the feed is fresh; the stop then ends cleanly."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await fake.wait_for(lambda: app.http is not None and app.http.port != 0)
            assert app.http is not None
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            (symbols,) = [t for t in asyncio.all_tasks() if t.get_name() == "symbols"]
            symbols.cancel()
            await fake.wait_for(lambda: "symbols" in app.pipeline.dead)
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.wait_for(lambda: app.pipeline.frames == 1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
                answer = await http.get("/healthz")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert answer.status_code == 503
    assert [r for r in answer.json()["reasons"] if "stopped" in r] == [
        "symbols stopped (cancelled)"
    ]
    (critical,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical.getMessage().startswith("pipeline: the symbols task was cancelled")


async def test_the_readme_names_exactly_the_metrics_there_are(tmp_path):
    """The README's list under "Health and metrics" is the exposition's metric names (a
    counter's with its ``_total``); ``alertbot_watches``, ``alertbot_paused_chats`` and the
    Telegram polling ones are exported with a Telegram token, the backup ones with
    ALERTBOT_BACKUP_DIR."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Health and metrics", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(alertbot_[a-z_]+)`", section))
    async with FakeBinance() as fake:
        app = app_for(tmp_path, fake)
        text = generate_latest(HttpService(app, 0).registry).decode()
    types = re.findall(r"^# TYPE (alertbot_[a-z_]+) ", text, re.MULTILINE)
    exported = {name for name in types if not name.endswith("_created")}  # the client's own
    with_token = {
        "alertbot_watches",
        "alertbot_paused_chats",
        "alertbot_telegram_polling_failing_seconds",
        "alertbot_telegram_poll_failures_total",
    }
    with_backups = {"alertbot_backup_last_success_timestamp_seconds", "alertbot_backup_failing"}
    assert documented == exported | with_token | with_backups


async def test_healthz_says_polling_is_off_without_a_token_and_metrics_have_none_of_it(tmp_path):
    """No Telegram token, so no chat commands to poll for: /healthz's ``telegram_polling``
    says so, and the bot is healthy on the feed and the database alone; /metrics has no
    polling metrics (they would read as polling that works)."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await fake.wait_for(lambda: app.http is not None and app.http.port != 0)
            assert app.http is not None
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.wait_for(lambda: app.pipeline.frames == 1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
                health = await http.get("/healthz")
                metrics = (await http.get("/metrics")).text
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert health.status_code == 200, health.text
    assert health.json()["telegram_polling"] == {
        "status": "off",
        "reason": "no Telegram token: no chat commands to poll for",
    }
    assert "alertbot_telegram" not in metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_is_unhealthy_while_the_database_refuses_every_write(tmp_path):
    """A full disk (the bot's file size limit set to 0: every write fails, the database still
    opens and BEGIN IMMEDIATE still passes): /healthz says 503 with the outbox's real error
    (not SQLite's "cannot rollback" after the failed COMMIT), and 200 again once writes work."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: btc-100\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
    )
    port = free_port()
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        env = env_for(fake, tmp_path / "a.db", ALERTBOT_HTTP_PORT=str(port))
        proc = await start("run", "--rules", rules, env=env)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

                async def healthz() -> httpx.Response | None:
                    try:
                        return await http.get("/healthz")
                    except httpx.TransportError:  # not listening yet
                        return None

                async def status(code: int) -> bool:
                    answer = await healthz()
                    return answer is not None and answer.status_code == code

                await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
                await fake.publish([mini_ticker("BTCUSDT", 90, T)])
                await wait_until(lambda: status(200), 20)

                _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, hard))
                await fake.publish([mini_ticker("BTCUSDT", 110, T + 1000)])  # an alert to store
                await wait_until(lambda: status(503), 20)
                answer = await healthz()
                assert answer is not None
                (reason,) = answer.json()["reasons"]
                assert reason.startswith("database: the last write failed (")
                assert "cannot rollback" not in reason

                resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
                await fake.publish([mini_ticker("BTCUSDT", 111, T + 2000)])  # the feed fresh
                await wait_until(lambda: status(200), 20)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    assert "outbox: cannot write the database" in err
    assert "cannot rollback" not in err


async def test_an_engine_task_that_ends_while_running_is_logged_and_makes_healthz_unhealthy(
    tmp_path, caplog
):
    """The engine task ends while the app runs (no input is known to end it, so it is
    cancelled here, as a bug outside its per-message guard would end it): a CRITICAL line at
    once, and /healthz 503 "engine stopped" though the feed is fresh."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await fake.wait_for(lambda: app.http is not None and app.http.port != 0)
            assert app.http is not None
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.wait_for(lambda: app.pipeline.frames == 1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
                assert (await http.get("/healthz")).status_code == 200
                (engine,) = [t for t in asyncio.all_tasks() if t.get_name() == "engine"]
                engine.cancel()
                await wait_until(engine.done)
                await asyncio.sleep(0)  # its done-callbacks run
                answer = await http.get("/healthz")
            assert answer.status_code == 503
            assert answer.json()["reasons"] == ["engine stopped (cancelled)"]
            assert [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL] == [
                "pipeline: the engine task was cancelled; no alerts until restarted"
            ]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_healthz_is_unhealthy_at_once_while_an_alert_waits_to_be_stored(tmp_path):
    """Another process holds the database's write lock: the outbox's write of an alert waits
    (SQLite's busy timeout, 5 s; no write has failed yet). Once the alert has waited longer
    than unstored_after, /healthz says 503 with that reason, at once (not after the stuck
    write, behind which its writability check would wait)."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake, unstored_after=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        lock = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        try:
            await fake.wait_for(lambda: app.http is not None and app.http.port != 0)
            assert app.http is not None
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.wait_for(lambda: app.pipeline.frames == 1)
            lock.execute("BEGIN IMMEDIATE")
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1000)])  # an alert to store
            await fake.wait_for(lambda: app.pipeline.alerts == 1)
            outbox = app.notifier.outbox
            assert outbox is not None
            await wait_until(lambda: (outbox.unstored_age or 0) > 0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
                answer = await http.get("/healthz", timeout=2)
            assert answer.status_code == 503
            assert "database: an alert has waited 0s to be stored" in answer.json()["reasons"]
            assert outbox.write_error is None  # held up, not failed
        finally:
            lock.close()  # rolls back: the write goes through
            stop.set()
            await asyncio.wait_for(task, 10)
    assert outbox.write_errors == 0
