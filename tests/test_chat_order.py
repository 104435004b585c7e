"""A chat's answers come in the order of its commands, end to end against the fakes: a command
that waits (a /price asking Binance, a write while another process holds SQLite's lock, a
button press's write) holds up its own chat's later answers until it is answered, and no
other chat's."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alertbot.chat.bot import CONCURRENT_UPDATES
from tests.fakes.telegram import FakeTelegram
from tests.test_chat import (
    BTC_ONLY,
    GROUP,
    SOL,
    SUPERGROUP,
    USER,
    Bot,
    T,
    on_symbol_streams,
)

OTHER = USER + 1


def texts(tg: FakeTelegram, chat: int) -> list[str]:
    return [m.plain_text for m in tg.messages_to(chat)]


@contextmanager
def database_locked(path: Path) -> Iterator[None]:
    """Another process holds the database's write lock: the bot's writes wait (SQLite's busy
    timeout, 5 s) until it is let go."""
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        yield
        lock.execute("COMMIT")
    finally:
        lock.close()


async def test_a_price_asked_of_binance_is_answered_before_the_next_command_of_its_chat(
    tmp_path, fakes
):
    """/price of a symbol the feed has no price of, then /list at once: the /list was answered
    first (the /price waited for Binance in a task of its own), as if the /price had been
    ignored. The answers come /price then /list; another chat's /help, sent while Binance
    is being asked, is answered meanwhile."""
    binance, tg = fakes
    binance.hold_ticker()
    # a timeout longer than the test: the lookup is under way until the ticker is let go
    async with Bot(tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_timeout": 60.0}) as bot:
        await on_symbol_streams(bot)
        await binance.publish([SOL])
        try:
            tg.user_says(USER, "/price SOLUSDT")
            await binance.wait_for(lambda: binance.stats.ticker_requests == ["SOLUSDT"])
            tg.user_says(USER, "/list")
            other = await bot.say("/help", chat=OTHER)
            held = texts(tg, USER)
        finally:
            binance.hold_ticker(False)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
    assert other.startswith("Commands:")
    assert held == []  # the /list waits for the /price before it
    price, listing = texts(tg, USER)
    assert price.startswith("SOLUSDT 150.50 (+7.50% 24h)")
    assert listing.startswith("No watches here yet")


async def test_a_chats_commands_waiting_their_turn_take_no_place_from_other_chats(tmp_path, fakes):
    """One chat sends more commands than the bot handles at once (CONCURRENT_UPDATES) while
    its first, a /price, waits for Binance: its others wait their turn. They held places
    among those handled at once while waiting, so they took them all, and another chat's /help
    waited for Binance too; it is answered meanwhile."""
    binance, tg = fakes
    binance.hold_ticker()
    try:
        async with Bot(
            tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_timeout": 60.0}
        ) as bot:
            await on_symbol_streams(bot)
            tg.user_says(USER, "/price SOLUSDT")
            await binance.wait_for(lambda: binance.stats.ticker_requests == ["SOLUSDT"])
            for _ in range(CONCURRENT_UPDATES):
                tg.user_says(USER, "/list")
            other = await bot.say("/help", chat=OTHER)
            held = texts(tg, USER)
    finally:
        binance.hold_ticker(False)
    assert other.startswith("Commands:")
    assert held == []  # its own wait their turn, behind the /price


async def test_a_price_binance_never_answers_holds_its_chat_only_until_the_lookups_timeout(
    tmp_path, fakes
):
    """Binance never answers: the /price is answered when its lookup times out
    (the feed's price_timeout), saying so, and the chat's next command right after it."""
    binance, tg = fakes
    binance.hold_ticker()
    async with Bot(tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_timeout": 0.3}) as bot:
        await on_symbol_streams(bot)
        try:
            tg.user_says(USER, "/price SOLUSDT")
            await binance.wait_for(lambda: binance.stats.ticker_requests == ["SOLUSDT"])
            tg.user_says(USER, "/list")
            await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        finally:
            binance.hold_ticker(False)
    price, listing = texts(tg, USER)
    assert price.startswith("No price for SOLUSDT yet")
    assert price.split("\n")[1] == "Asking Binance for it failed: no answer in time."
    assert listing.startswith("No watches here yet")


async def test_a_watch_waiting_for_a_locked_database_holds_up_its_own_chat_only(tmp_path, fakes):
    """Another process holds SQLite's write lock: a /watch waits to be written (up to SQLite's
    busy timeout). The updates were handled one at a time, so every chat's commands waited
    as long; now another chat's /help is answered meanwhile, and the /watch's chat gets its
    answers in order once the write is done: the /watch's, then its /list with the watch."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg):
        with database_locked(tmp_path / "alertbot.db"):
            tg.user_says(USER, "/watch BTCUSDT > 100")
            tg.user_says(USER, "/list")
            tg.user_says(OTHER, "/help")
            # well within the busy timeout (5 s), after which the /watch would fail
            await tg.wait_for(lambda: bool(tg.messages_to(OTHER)), timeout=3)
            held = texts(tg, USER)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
    assert texts(tg, OTHER)[0].startswith("Commands:")
    assert held == []
    watching, listing = texts(tg, USER)
    assert watching.startswith("Watching BTCUSDT: price > 100")
    assert listing.startswith("1 watch:\nw1  BTCUSDT price > 100")


async def test_a_button_press_waiting_for_a_locked_database_holds_up_its_own_chat_only(
    tmp_path, fakes
):
    """/list's Remove pressed while another process holds SQLite's write lock, then /list sent:
    another chat's /help is answered while the removal waits, and the /list comes after the
    removal (it no longer shows the watch)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/list")
        listing = tg.messages_to(USER)[-1]
        with database_locked(tmp_path / "alertbot.db"):
            tg.user_presses(USER, listing.message_id, "rm:w1:1")
            tg.user_says(USER, "/list")
            tg.user_says(OTHER, "/help")
            await tg.wait_for(lambda: bool(tg.messages_to(OTHER)), timeout=3)
            held = len(tg.messages_to(USER))
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 3)
        assert tg.answered_callbacks
    assert held == 2  # the second /list waits for the press before it
    assert texts(tg, USER)[2].startswith("No watches here yet")


async def test_the_stop_does_not_wait_for_a_price_binance_has_not_answered(tmp_path, fakes):
    """A /price waiting for Binance when the bot stops is given up, unanswered: the stop does
    not wait for the lookup's timeout (the chat poller's stop has 3 s)."""
    binance, tg = fakes
    binance.hold_ticker()
    bot = Bot(tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_timeout": 60.0})
    try:
        async with bot:
            await on_symbol_streams(bot)
            tg.user_says(USER, "/price SOLUSDT")
            await binance.wait_for(lambda: binance.stats.ticker_requests == ["SOLUSDT"])
            started = time.monotonic()
        took = time.monotonic() - started
    finally:
        binance.hold_ticker(False)
    assert took < 2.5
    assert tg.messages_to(USER) == []


async def test_a_move_found_by_a_delivery_waits_for_the_supergroups_command_under_way(
    tmp_path, fakes, caplog
):
    """A group's move to a supergroup learned from an alert refused as migrated runs in turn
    with the commands of both chats, as the service messages' move does: a /price in the
    supergroup waiting for Binance is answered before the group's watches move. Run beside
    it, a command would not see the move, nor the move the command's watch (a /watch of the
    group's watch, made again in the supergroup meanwhile, would be kept twice)."""
    binance, tg = fakes
    caplog.set_level(logging.INFO, logger="alertbot")
    answered_when_moved: list[list[str]] = []

    class Moves(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "is now the supergroup" in record.getMessage():
                answered_when_moved.append(texts(tg, SUPERGROUP))

    moves = Moves()
    logging.getLogger("alertbot").addHandler(moves)
    binance.hold_ticker()
    try:
        async with Bot(
            tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_timeout": 60.0}
        ) as bot:
            await bot.say("/watch BTCUSDT crosses above 100", chat=GROUP, chat_type="group")
            await on_symbol_streams(bot)
            await binance.publish([SOL])  # what Binance answers for it, once let go
            tg.user_says(SUPERGROUP, "/price SOLUSDT", chat_type="supergroup")
            await binance.wait_for(lambda: binance.stats.ticker_requests == ["SOLUSDT"])
            tg.migrate_chat(GROUP, SUPERGROUP)
            await bot.tick("BTCUSDT", 90, T)
            await bot.tick("BTCUSDT", 110, T + 1000)  # refused in the group: it moved
            await tg.wait_for(lambda: "price 110" in " ".join(texts(tg, SUPERGROUP)))
            assert bot.app.book is not None
            assert bot.app.book.of_chat(GROUP)  # the move waits for the /price
            binance.hold_ticker(False)
            await tg.wait_for(lambda: answered_when_moved != [])
    finally:
        binance.hold_ticker(False)
        logging.getLogger("alertbot").removeHandler(moves)
    (seen,) = answered_when_moved
    assert [t for t in seen if t.startswith("SOLUSDT 150.50")] != [], seen
