"""/list: where each watch of one level, crossing or move stands against the price now, and the
list of one symbol's watches (``/list btc``)."""

from __future__ import annotations

import time

from tests.fakes.binance import mini_ticker
from tests.test_chat import USER, Bot, T, stored_watches

WATCHES = {
    "price > 70000": "price 68000.5 now, 2.94% to go",  # of the price now
    "price < 50000": "price 68000.5 now, 26.47% to go",
    "price < 70000": "price 68000.5 now: true",
    "price crosses above 60000": "price 68000.5 now, already above",  # must come back first
    "price crosses below 60000": "price 68000.5 now, 11.77% to go",
    "price crosses 68000.4": "price 68000.5 now, under 0.01% to go",  # either way
    "change_24h > 5%": "change_24h +3.03% now",  # percentage points: the value alone
    "quote_volume > 2b": "quote_volume 1.2b now",
}


async def test_list_shows_each_levels_distance_from_the_price_now(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for condition in WATCHES:
            await bot.say(f"/watch BTCUSDT {condition}")
        await bot.say("/watch BTCUSDT rises 5% in 1h")  # a move: from the window's low
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        now = int(time.time() * 1000)
        await binance.publish(
            [mini_ticker("BTCUSDT", "68000.5", now, open="66000", volume=1, quote_volume=1.2e9)]
        )
        engine = bot.app.engine
        await binance.wait_for(
            lambda: (t := engine.last_ticker("BTCUSDT")) is not None and t.time == now
        )
        # w3 (price < 70000) fires on that tick: its alert first, then the list is the answer
        await tg.wait_for(lambda: any("[w3]" in m.plain_text for m in tg.messages_to(USER)))
        listing = (await bot.say("/list")).splitlines()
    for i, (condition, stands) in enumerate(WATCHES.items(), 1):
        line = listing[i]
        assert line.startswith(f"w{i}  BTCUSDT {condition},"), line
        assert line.endswith(f" · {stands}"), line  # after its state (w3 fired: true)
    # its first tick: no move yet, measured from that price
    assert listing[len(WATCHES) + 1].endswith("— active, not fired yet · up 0.00% from 68000.5 now")


async def test_list_says_nothing_of_a_price_from_long_ago(tmp_path, fakes):
    """A last ticker more than 2 minutes old (one kept from before a restart, or of a feed
    that stopped) is not the price now: /list does not measure from it."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 70000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 68_000.5, T)  # long ago
        listing = await bot.say("/list")
    assert listing.splitlines()[1].endswith("— active, not fired yet")


async def test_list_of_a_symbol_shows_its_watches_and_its_buttons_keep_to_it(tmp_path, fakes):
    """``/list btc``: BTCUSDT's watches only (a coin is its USDT contract, as in /price); a
    press on its buttons shows that list again, and when its last watch is removed, says so
    and how many the chat has."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for command in ("/watch BTCUSDT > 100", "/watch ETHUSDT > 100", "/watch BTCUSDT < 50"):
            await bot.say(command)
        shown = await bot.say("/list btc")
        listing = tg.messages_to(USER)[-1]
        tg.user_presses(USER, listing.message_id, "rm:w1:1:BTCUSDT")
        await tg.wait_for(lambda: listing.edits == 1)
        after_one = listing.plain_text
        tg.user_presses(USER, listing.message_id, "rm:w3:1:BTCUSDT")
        await tg.wait_for(lambda: listing.edits == 2)
        after_both = listing.plain_text
        none = await bot.say("/list SOLUSDT")
    assert shown.splitlines()[0] == "2 watches of BTCUSDT:"
    assert [line.split("  ")[0] for line in shown.splitlines()[1:]] == ["w1", "w3"]
    assert after_one.splitlines()[:2] == ["1 watch of BTCUSDT:", after_one.splitlines()[1]]
    assert after_one.splitlines()[1].startswith("w3  BTCUSDT price < 50")
    assert after_both == "This chat has no watch of BTCUSDT: /list shows its 1 watch."
    assert none == "This chat has no watch of SOLUSDT: /list shows its 1 watch."


async def test_list_of_a_symbol_pages_by_that_symbol(tmp_path, fakes):
    """Past a page, the command for the next one names the symbol; a page past the last is
    refused with the last one's command."""
    stored_watches(
        tmp_path, [("ETHUSDT", "price > 1")] + [("BTCUSDT", f"price > {n}") for n in range(1, 23)]
    )
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        first = await bot.say("/list BTCUSDT")
        second = await bot.say("/list BTCUSDT 2")
        third = await bot.say("/list BTCUSDT 3")
    assert first.splitlines()[0] == "22 watches of BTCUSDT, page 1 of 2:"
    assert first.splitlines()[-1] == "… and 2 more: /list BTCUSDT 2"
    assert second.splitlines()[0] == "22 watches of BTCUSDT, page 2 of 2:"
    assert len(second.splitlines()) == 3
    assert third == (
        "There is no page 3 of this chat's BTCUSDT watches: /list BTCUSDT 2 is the last."
    )
