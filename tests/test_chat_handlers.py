"""The command handlers under arbitrary input: whatever a user types, the bot answers with text
and its state stays consistent (memory, database and engine agree), or nothing changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertbot.chat.bot import ChatBot
from alertbot.chat.commands import CommandError, parse_command
from alertbot.chat.watches import ChatSettings, WatchBook
from alertbot.feed.client import Feed
from alertbot.feed.settings import FeedSettings
from alertbot.feed.symbols import SymbolDirectory
from alertbot.notify.notifier import Notifier
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.engine import Engine
from alertbot.store import Store

CHAT = 42
FRAGMENTS = [
    "/watch", "/unwatch", "/mute", "/unmute", "/list", "/price", "/status", "/help", "/start",
    "BTCUSDT", "ethusdt", "*USDT", "w1", "w2", "all", ">", "<", ">=", "crosses", "above",
    "below", "price", "change_24h", "quote_volume", "breaks", "24h", "high", "rises", "5%",
    "in", "15m", "cooldown", "1h", "rearm", "0.5%", "once", "for", "7d", "70000", "3k", "2b",
    "0", "-1", "1e309", "nan", "999999d", "all(", ")", ",", "@alertbot_test_bot", " ", "\n",
]  # fmt: skip

texts = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=10).map(" ".join),
)


def consistent(book: WatchBook, store: Store, engine: Engine) -> bool:
    in_db = {w.id for w in store.watches()}
    in_engine = {r.id for r in engine.rules()}
    return set(book.rows) == in_db and {f"w{i}" for i in in_db} == in_engine


async def session(tmp: Path, inputs: list[str]) -> None:
    engine = Engine([])
    delivery = DeliverySettings(db=str(tmp / "a.db"))
    notifier = Notifier(delivery, {})
    await notifier.start()
    assert notifier.store is not None
    assert notifier.outbox is not None
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda m, r: None)
    directory = SymbolDirectory(FeedSettings())
    directory.exchange = frozenset({"BTCUSDT", "ETHUSDT"})
    book = WatchBook(
        engine, notifier.store, notifier.outbox.db, lambda: None, ChatSettings(max_watches=3)
    )
    bot = ChatBot(delivery, ChatSettings(max_watches=3), book, engine, feed, directory, notifier)
    try:
        for text in inputs:
            try:
                command = parse_command(text, "alertbot_test_bot")
                if command is None:
                    continue
                answer, _ = await bot.run(CHAT, command)
            except CommandError as exc:
                answer = exc.reply()
            assert isinstance(answer, str)
            assert answer.strip()
            assert await notifier.outbox.db(consistent, book, notifier.store, engine)
        assert len(book.of_chat(CHAT)) <= 3  # the per-chat limit holds
    finally:
        await notifier.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(inputs=st.lists(texts, min_size=1, max_size=8))
def test_any_sequence_of_messages_keeps_watches_consistent(tmp_path_factory, inputs):
    """Memory, database and engine agree after every command, whatever the user sent."""
    asyncio.run(session(tmp_path_factory.mktemp("chat"), inputs))


def test_the_per_chat_limit_is_enforced(tmp_path):
    inputs = [f"/watch BTCUSDT > {n}" for n in range(1, 6)]
    asyncio.run(session(tmp_path, inputs))


def test_limit_message_names_the_way_out(tmp_path):
    async def run() -> str:
        engine = Engine([])
        notifier = Notifier(DeliverySettings(db=str(tmp_path / "b.db")), {})
        await notifier.start()
        assert notifier.store is not None
        assert notifier.outbox is not None
        book = WatchBook(
            engine, notifier.store, notifier.outbox.db, lambda: None, ChatSettings(max_watches=1)
        )
        feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda m, r: None)
        bot = ChatBot(
            DeliverySettings(),
            ChatSettings(max_watches=1),
            book,
            engine,
            feed,
            SymbolDirectory(FeedSettings()),
            notifier,
        )
        try:
            first = parse_command("/watch BTCUSDT > 1")
            assert first is not None
            await bot.run(CHAT, first)
            second = parse_command("/watch BTCUSDT > 2")
            assert second is not None
            try:
                await bot.run(CHAT, second)
            except CommandError as exc:
                return exc.reply()
            return "accepted"
        finally:
            await notifier.close()

    reply = asyncio.run(run())
    assert "the most allowed" in reply
    assert "/unwatch" in reply
