"""App's stop: what is under way when it begins (a scheduled job, a short write, an open
delivery) ends within the grace, quietly, against the fake exchange and the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.model import RuleSet
from alertbot.store import Store, WatchRow
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram
from tests.fakes.waiting import wait_until

TOKEN = "123456:TEST-token-0123456789abcdef"
ADMIN = 42
USER = 501
GROUP, SUPERGROUP = -555, -1_000_000_000_555
T = 1_772_000_000_000


class Clock:
    """The stop's clock: it stands still until the test moves it; counts its reads."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def app_for(tmp: Path, binance: FakeBinance, tg: FakeTelegram, **kw: Any) -> App:
    feed = FeedSettings(
        ws_root=binance.ws_url,
        rest_root=binance.rest_url,
        backoff_initial=0.02,
        backoff_max=0.2,
        ping_interval=None,
    )
    delivery = DeliverySettings(
        telegram_token=TOKEN,
        telegram_api_url=tg.api_url,
        admin_chats=(ADMIN,),
        db=str(tmp / "alertbot.db"),
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    return App(RuleSet(), feed, delivery, ChatSettings(), poll_timeout=0.5, **kw)


async def test_a_job_under_way_at_the_stop_ends_without_a_traceback(tmp_path, caplog):
    """The heartbeat job is sending its message (Telegram takes it and does not answer) when
    the bot stops: the job is stopped, and nothing logs its CancelledError (APScheduler logged
    'Job "App.heartbeat ..." raised an exception' with the traceback)."""
    caplog.set_level(logging.INFO)
    async with FakeBinance() as binance, FakeTelegram(token=TOKEN) as tg:
        tg.down(None, method="sendMessage")
        app = app_for(tmp_path, binance, tg, grace=0.2, heartbeat=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await tg.wait_for(lambda: bool(tg.calls("sendMessage")), timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_the_short_writes_and_the_open_deliveries_share_one_grace(tmp_path, caplog):
    """At the stop, a group's move to its supergroup is still being written (another process
    holds the database's write lock) and a watch's alert's delivery is open (Telegram answers
    502). The write takes the whole grace (the stop's clock moves on by it before the lock is
    let go): no grace is left for the delivery, and the stop ends without waiting for it (each
    had the full grace before: 30 s more here), saying so. The alert, with its watch's
    firing, is stored and its delivery kept for the next start."""
    db = tmp_path / "alertbot.db"
    store = Store(str(db))
    store.add_watch(WatchRow(0, USER, "BTCUSDT", "price > 100", 0, 0.0, False))
    store.close()
    clock = Clock()
    async with FakeBinance(symbols=["BTCUSDT"]) as binance, FakeTelegram(token=TOKEN) as tg:
        tg.fail_chat(USER, 502, "Bad Gateway")
        app = app_for(tmp_path, binance, tg, grace=30.0, clock=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        lock = sqlite3.connect(db, isolation_level=None)
        try:
            await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
            lock.execute("BEGIN IMMEDIATE")
            await binance.publish([mini_ticker("BTCUSDT", 150, T)])
            await binance.wait_for(lambda: app.pipeline.alerts == 1)
            # as the Telegram sender does when a send is refused as migrated: the move is a
            # short write the stop lets finish within the grace
            app._chat_moved(GROUP, SUPERGROUP)
            assert app._finishing
            stop.set()
            await wait_until(lambda: clock.reads > 0)  # the stop's deadline is set
            clock.now += 30.0
        finally:
            lock.close()  # the writes go through
            stop.set()
            await asyncio.wait_for(task, 10)
    with sqlite3.connect(db) as check:
        rows = check.execute("SELECT destination, state FROM deliveries").fetchall()
        fired = check.execute("SELECT last_fired FROM watches").fetchall()
    assert rows == [(f"telegram:{USER}", "pending")]  # resumed at the next start
    assert fired == [(T,)]
    assert "shutting down with 1 deliveries open: they resume at the next start" in [
        r.getMessage() for r in caplog.records
    ]
