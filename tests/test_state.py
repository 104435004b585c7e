"""A restarted App carries on from its last run's engine state (a real SQLite file, the fake
exchange): no second alert for a level still true, a level crossed while it was down caught
and flagged as across a gap, and the state saved while running, not only at shutdown."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.render import GAP_NOTE
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.conditions import parse
from alertbot.rules.model import Rule, RuleSet
from tests.fakes.binance import FakeBinance, mini_ticker

T = 1_772_000_000_000
RULES = RuleSet(
    rules=(
        Rule(id="hi", condition=parse("price > 100"), symbols=("BTCUSDT",)),
        Rule(id="x", condition=parse("crosses above 200"), symbols=("BTCUSDT",)),
    )
)


def app_for(tmp: Path, fake: FakeBinance, out: io.StringIO, state_every: float = 5.0) -> App:
    feed = FeedSettings(
        ws_root=fake.ws_url, rest_root=fake.rest_url, backoff_initial=0.02, ping_interval=None
    )
    delivery = DeliverySettings(db=str(tmp / "a.db"))
    return App(RULES, feed, delivery, ChatSettings(), grace=0.5, out=out, state_every=state_every)


async def run_until(app: App, fake: FakeBinance, price: float, time: int, alerts: int) -> None:
    """Run the app, publish one ticker, wait until it is evaluated and ``alerts`` fired, stop."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
        await fake.publish([mini_ticker("BTCUSDT", price, time)])
        await fake.wait_for(lambda: app.pipeline.frames >= 1 and app.pipeline.alerts >= alerts)
        await asyncio.sleep(0.05)  # room for a wrong extra alert to show up
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_restart_does_not_repeat_a_true_level_and_catches_a_crossing_while_down(
    tmp_path,
):
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        first_out = io.StringIO()
        first = app_for(tmp_path, fake, first_out)
        await run_until(first, fake, 150, T, alerts=1)
        assert first.pipeline.alerts_by_rule == {"hi": 1}

        out = io.StringIO()
        second = app_for(tmp_path, fake, out)
        await run_until(second, fake, 250, T + 60_000, alerts=1)
    # "hi" is still true: no second alert; "x" crossed 200 while the bot was down
    assert second.pipeline.alerts_by_rule == {"x": 1}
    assert GAP_NOTE in out.getvalue()


async def test_the_state_is_saved_while_running(tmp_path):
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake, io.StringIO(), state_every=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        db = sqlite3.connect(tmp_path / "a.db")
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await fake.publish([mini_ticker("BTCUSDT", 150, T)])

            def saved() -> list[tuple[str, str, int]]:
                return db.execute("SELECT rule, symbol, last_fired FROM pair_states").fetchall()

            await fake.wait_for(lambda: bool(saved()))
            assert saved() == [("hi", "BTCUSDT", T)]
            ticks = db.execute("SELECT symbol, time, price FROM last_ticks").fetchall()
            assert ticks == [("BTCUSDT", T, "150")]
        finally:
            db.close()
            stop.set()
            await asyncio.wait_for(task, 10)
