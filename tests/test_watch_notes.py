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


# ETHUSDT last traded at 3000, up 20% on the day
ETH = Ticker("ETHUSDT", 1_000, 3000.0, 2500.0, 3100.0, 2400.0, 1e4, 3e7, "3000")


async def replies(tmp: Path, texts: list[str], ticker: Ticker = ETH) -> list[str]:
    engine = Engine([])
    engine.process([ticker])
    notifier = Notifier(DeliverySettings(db=str(tmp / "a.db")), {})
    await notifier.start()
    assert notifier.store is not None
    assert notifier.outbox is not None
    book = WatchBook(engine, notifier.store, notifier.outbox.db, lambda: None, ChatSettings())
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda m, r: None)
    bot = ChatBot(
        DeliverySettings(), ChatSettings(), book, engine, feed, SymbolDirectory(FeedSettings()),
        notifier, clock=lambda: ticker.time / 1000 + 1,  # the ticker is a second old
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
    assert f"{NOTE} (change_24h +20.00%)" in true_change


def test_a_percent_metric_already_true_is_shown_as_a_percentage_that_is_plainly_true(tmp_path):
    """The 24h change is computed: it was shown as 'change_24h 9.591369859430989' (float noise,
    no %). It is shown as /price shows it, with as many decimals as it takes to be seen past
    the threshold ('+9.5914%' for '> 9.5913%', not '+9.59%')."""
    sol = Ticker("SOLUSDT", 1_000, 71234.5, 65000.1, 71300.0, 64000.0, 1e4, 3e7, "71234.50")
    change, close_call, spread, price = asyncio.run(
        replies(
            tmp_path,
            [
                "/watch SOLUSDT change_24h > 5%",
                "/watch SOLUSDT change_24h > 9.5913%",
                "/watch SOLUSDT range_24h >= 10%",
                "/watch SOLUSDT > 70000",
            ],
            sol,
        )
    )
    assert f"{NOTE} (change_24h +9.59%):" in change
    assert f"{NOTE} (change_24h +9.5914%):" in close_call
    assert f"{NOTE} (range_24h 11.41%):" in spread
    assert f"{NOTE} (price 71234.50):" in price  # as Binance sent it, and as /price shows it


def test_a_volume_already_true_is_shown_short_and_plainly_past_its_threshold(tmp_path):
    """A volume was shown with every digit ('quote_volume 30000000'); it is shown as /price
    shows volumes, with the suffix a condition takes, and with the decimals it takes to be
    seen past the threshold ('30.0000001m' for '> 30m', not '30m')."""
    eth = Ticker("ETHUSDT", 1_000, 3000.0, 2500.0, 3100.0, 2400.0, 1e4, 30_000_000.1, "3000")
    far, close_call = asyncio.run(
        replies(
            tmp_path, ["/watch ETHUSDT quote_volume > 1m", "/watch ETHUSDT quote_volume > 30m"], eth
        )
    )
    assert f"{NOTE} (quote_volume 30m):" in far
    assert f"{NOTE} (quote_volume 30.0000001m):" in close_call


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
