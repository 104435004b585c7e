"""/watch's note when the level is already true: the engine's own reading of the last ticker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alertbot.chat.bot import ChatBot
from alertbot.chat.commands import parse_command
from alertbot.chat.watches import ChatSettings, WatchBook
from alertbot.feed.client import Feed
from alertbot.feed.settings import FeedSettings
from alertbot.feed.symbols import SymbolDirectory
from alertbot.notify.notifier import Notifier
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.engine import Engine
from alertbot.store import WatchRow
from alertbot.ticker import Ticker

CHAT = 42
NOTE = "It is true right now"


async def replies(tmp: Path, texts: list[str]) -> list[str]:
    engine = Engine([])
    # ETHUSDT last traded at 3000, up 20% on the day
    engine.process([Ticker("ETHUSDT", 1_000, 3000.0, 2500.0, 3100.0, 2400.0, 1e4, 3e7, "3000")])
    notifier = Notifier(DeliverySettings(db=str(tmp / "a.db")), {})
    await notifier.start()
    assert notifier.store is not None
    assert notifier.outbox is not None
    book = WatchBook(engine, notifier.store, notifier.outbox.db, lambda: None, ChatSettings())
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda m, r: None)
    bot = ChatBot(
        DeliverySettings(), ChatSettings(), book, engine, feed, SymbolDirectory(FeedSettings()),
        notifier,
    )  # fmt: skip
    out = []
    try:
        for text in texts:
            command = parse_command(text)
            assert command is not None
            answer, _ = await bot.run(CHAT, command)
            out.append(answer)
    finally:
        await notifier.close()
    return out


def test_a_level_already_true_says_so_with_the_metric_and_one_not_true_does_not(tmp_path):
    true_price, false_price, true_change = asyncio.run(
        replies(
            tmp_path,
            ["/watch ETHUSDT >= 3000", "/watch ETHUSDT > 3000", "/watch ETHUSDT change_24h > 10%"],
        )
    )
    assert f"{NOTE} (price 3000): it fires on the next tick." in true_price
    assert NOTE not in false_price
    assert f"{NOTE} (change_24h 20)" in true_change


def test_a_mute_while_a_watch_is_being_removed_mutes_the_others(tmp_path):
    """/mute all found its watches before its database write; a once watch that fired was
    removed meanwhile (its removal's write was first on the database thread). The mute used to
    fail on it with KeyError: the user was told nothing changed, and the watches after it were
    left firing though the database had them muted."""

    async def main() -> tuple[list[int], list[int | None]]:
        notifier = Notifier(DeliverySettings(db=str(tmp_path / "a.db")), {})
        await notifier.start()
        assert notifier.store is not None
        assert notifier.outbox is not None
        engine = Engine([])
        book = WatchBook(engine, notifier.store, notifier.outbox.db, lambda: None, ChatSettings())
        try:
            once = await book.add(WatchRow(0, CHAT, "BTCUSDT", "price > 1", 0, 0.0, True))
            await book.add(WatchRow(0, CHAT, "BTCUSDT", "price > 2", 0, 0.0, False))
            removing = asyncio.create_task(book.remove([once]))  # as book.fired does
            await asyncio.sleep(0)  # its write is queued on the database thread
            await book.mute(book.find(CHAT, "all"), 9e9)
            await removing
        finally:
            await notifier.close()
        return sorted(book.rows), [r.muted_until_ms for r in engine.rules()]

    rows, muted = asyncio.run(main())
    assert rows == [2]
    assert muted == [9_000_000_000_000]
