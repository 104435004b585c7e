"""App's stop: what is under way when it begins (a scheduled job, a short write, an open
delivery) ends within the grace, quietly, against the fake exchange and the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from alertbot.app import FINAL_SAVE_WAIT, App
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


def app_for(
    tmp: Path, binance: FakeBinance, tg: FakeTelegram, chat: ChatSettings | None = None, **kw: Any
) -> App:
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
    return App(RuleSet(), feed, delivery, chat or ChatSettings(), poll_timeout=0.5, **kw)


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
    assert "shutting down with 1 delivery open: it resumes at the next start" in [
        r.getMessage() for r in caplog.records
    ]


def with_watch(tmp: Path) -> Path:
    """The database, with USER's watch on BTCUSDT above 100 (a price of 150 fires it)."""
    db = tmp / "alertbot.db"
    store = Store(str(db))
    store.add_watch(WatchRow(0, USER, "BTCUSDT", "price > 100", 0, 0.0, False))
    store.close()
    return db


def saved_states(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as check:
        return check.execute("SELECT rule, symbol FROM pair_states").fetchall()


async def test_the_chat_pollers_stop_is_cut_at_its_timeout_while_ptb_sleeps_between_polls(
    tmp_path, caplog
):
    """Telegram answered a poll 429 "retry after 60": PTB's poller sleeps 60.5 s, and its stop
    waits for that sleep. Cut at ALERTBOT_CHAT_STOP_TIMEOUT, PTB took the cancellation as its
    cue to make its last getUpdates, which a Telegram that no longer answers held for the
    poll's read timeout (60 s here): the stop outlasted its timeout by that much, silently.
    Now the cut holds: the stop ends once the stop's clock passes the timeout, saying so."""
    clock = Clock()
    async with FakeBinance() as binance, FakeTelegram(token=TOKEN) as tg:
        app = app_for(
            tmp_path,
            binance,
            tg,
            ChatSettings(poll_margin=60.0),
            grace=0.0,
            chat_stop_timeout=3.0,
            clock=clock,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=10)
            tg.fail_next(1, status=429, retry_after=60, method="getUpdates")
            await tg.wait_for(lambda: any(c.status == 429 for c in tg.calls("getUpdates")), 10)
            tg.down(None)  # from now on Telegram takes every request and never answers
            stop.set()
            await wait_until(lambda: clock.reads > 0)  # the stop began
            clock.now += 3.0
            await asyncio.wait_for(asyncio.shield(task), 20)  # not the 60 s of either wait
        finally:
            stop.set()
            await asyncio.wait_for(task, 90)
    messages = [r.getMessage() for r in caplog.records]
    assert "chat: Telegram did not answer the poller's last call within 3s; stopped without it" in (
        messages
    )


async def test_the_final_save_comes_before_the_waits_of_the_stop(tmp_path, caplog):
    """A watch fired; at the stop its delivery is open (Telegram answers 502) and the chat
    poller's last call is never answered. The engine's state is saved as the stop begins,
    while the stop's clock stands still, not after the chat poller's stop and the grace (a
    container runtime that kills the bot at its own timeout lost it); the stop then ends once
    its clock passes the grace and the chat stop timeout, the delivery kept for the next start."""
    caplog.set_level(logging.INFO)
    db = with_watch(tmp_path)
    clock = Clock()
    async with FakeBinance(symbols=["BTCUSDT"]) as binance, FakeTelegram(token=TOKEN) as tg:
        tg.fail_chat(USER, 502, "Bad Gateway")
        app = app_for(
            tmp_path, binance, tg, grace=30.0, chat_stop_timeout=20.0, state_every=0, clock=clock
        )
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
            await binance.publish([mini_ticker("BTCUSDT", 150, T)])
            await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 2)  # being retried
            assert saved_states(db) == []  # no save since the start (state_every=0)
            tg.down(None, method="getUpdates")
            stop.set()
            await wait_until(lambda: saved_states(db) == [("w1", "BTCUSDT")])
            assert clock.now == 1000.0
            sent = len(tg.calls("sendMessage"))
            await tg.wait_for(lambda: len(tg.calls("sendMessage")) > sent)  # in its grace
            assert not task.done()
            clock.now += 30.0
            await asyncio.wait_for(asyncio.shield(task), 10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    with sqlite3.connect(db) as check:
        rows = check.execute("SELECT destination, state FROM deliveries").fetchall()
    assert rows == [(f"telegram:{USER}", "pending")]  # resumed at the next start
    messages = [r.getMessage() for r in caplog.records]
    assert "shutting down with 1 delivery open: it resumes at the next start" in messages
    assert (
        "chat: Telegram did not answer the poller's last call within 20s; stopped without it"
        in messages
    )


async def test_a_final_save_the_database_holds_up_is_cut_at_its_share(tmp_path, caplog):
    """At the stop another process holds the database's write lock: the final save waits for
    it (SQLite's busy timeout, then retries). It has a share of its own, FINAL_SAVE_WAIT on
    the stop's clock, whatever the grace: past it the stop goes on, saying so (the alerts
    stored since the last save are taken as fired at the next start)."""
    db = with_watch(tmp_path)
    clock = Clock()
    async with FakeBinance(symbols=["BTCUSDT"]) as binance, FakeTelegram(token=TOKEN) as tg:
        app = app_for(tmp_path, binance, tg, grace=0.0, state_every=0, clock=clock)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        lock = sqlite3.connect(db, isolation_level=None)
        try:
            await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
            await binance.publish([mini_ticker("BTCUSDT", 150, T)])
            await tg.wait_for(lambda: bool(tg.messages_to(USER)))  # stored, and sent
            lock.execute("BEGIN IMMEDIATE")
            stop.set()
            await wait_until(lambda: clock.reads > 0)
            clock.now += FINAL_SAVE_WAIT
            await wait_until(lambda: "state: the final save" in caplog.text)
            assert not task.done()  # the save's write goes on, on the database's thread
        finally:
            lock.close()  # the write goes through
            stop.set()
            await asyncio.wait_for(task, 30)
    assert (
        f"state: the final save did not end within {FINAL_SAVE_WAIT:g}s (the database is slow); "
        "the alerts stored since the last save are taken as fired at the next start"
    ) in caplog.text
