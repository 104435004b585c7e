"""``repeat D`` on a chat watch: while its condition holds, it alerts again every D.

The engine's semantics are tests/test_engine_repeat.py's; these pin down the chat's side: the
option in ``/watch`` and ``/edit`` (and what cannot have it), ``every 15m`` answered with it,
the answers and ``/list`` naming it, and the database keeping it.
"""

from __future__ import annotations

import pytest

from alertbot.chat.commands import CommandError, Edit, Watch, format_watch, parse_command
from alertbot.store import Store, WatchRow
from tests.test_chat import USER, Bot, T


def test_repeat_is_an_option_of_watch_and_reads_back() -> None:
    watch = parse_command("/watch BTCUSDT > 70000 cooldown 1m repeat 15m note TP1")
    assert isinstance(watch, Watch)
    assert (watch.repeat_ms, watch.cooldown_ms, watch.note) == (900_000, 60_000, "TP1")
    assert format_watch(watch) == "/watch BTCUSDT price > 70000 cooldown 1m repeat 15m note TP1"
    assert parse_command(format_watch(watch)) == watch


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/watch BTCUSDT crosses above 70000 repeat 15m", "a crossing or a breakout is true"),
        ("/watch BTCUSDT breaks 24h high repeat 15m", "a crossing or a breakout is true"),
        ("/watch BTCUSDT > 70000 once repeat 15m", "repeat and once exclude each other"),
        ("/watch BTCUSDT > 70000 repeat", "'repeat' needs a duration, e.g. repeat 1h"),
        ("/watch BTCUSDT > 70000 repeat 0", "'repeat' needs a duration like 30s"),
        # what people type for it
        ("/watch BTCUSDT > 70000 every 15m", "for an alert every 15m while it holds, write repeat"),
    ],
)
def test_a_repeat_a_watch_cannot_have_is_refused(text: str, says: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/edit w3 repeat 5m", Edit(target="w3", repeat_ms=300_000)),
        ("/edit w3 repeat off", Edit(target="w3", off=frozenset({"repeat"}))),
    ],
)
def test_edit_sets_or_turns_off_repeat(text: str, expected: Edit) -> None:
    assert parse_command(text) == expected


def test_a_database_of_an_earlier_version_gets_the_column_of_a_watchs_repeat(tmp_path):
    path = tmp_path / "a.db"
    store = Store(path)
    old = store.add_watch(WatchRow(0, 5, "BTCUSDT", "price > 120", 0, 0.0, False))
    store.db.execute("ALTER TABLE watches DROP COLUMN repeat_ms")  # as an earlier version made it
    store.close()
    store = Store(path)
    try:
        new = store.add_watch(
            WatchRow(0, 5, "ETHUSDT", "price > 1", 0, 0.0, False, repeat_ms=60_000)
        )
        assert [(w.id, w.repeat_ms) for w in store.watches()] == [(old, None), (new, 60_000)]
    finally:
        store.close()


async def test_a_watch_with_repeat_alerts_again_while_its_level_holds(tmp_path, fakes):
    """Every 10 s of event time while the price stays above, on the next tick; the answer,
    /list and a restart keep the option."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        answer = await bot.say("/watch BTCUSDT > 100 cooldown 0 repeat 10s")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        for i, price in enumerate((110, 110, 111, 110, 110)):  # at T, T+4s, ... T+16s
            await bot.tick("BTCUSDT", price, T + i * 4_000)
        await tg.wait_for(lambda: sum("[w1]" in m.plain_text for m in tg.messages_to(USER)) == 2)
        listing = await bot.say("/list")
    assert answer.startswith("Watching BTCUSDT: price > 100 (no cooldown, repeat 10s). Id w1.")
    assert "w1  BTCUSDT price > 100, no cooldown, repeat 10s — active" in listing
    alerts = [m.plain_text for m in tg.messages_to(USER) if "[w1]" in m.plain_text]
    assert [a.split(":")[1].split()[1] for a in alerts] == ["110", "110"]  # T and T+12s
    # the second says it is a repeat, not a new entry
    assert alerts[0].startswith("BTCUSDT price > 100: price 110")
    assert alerts[1].startswith("BTCUSDT price > 100 still holds: price 110")
    async with Bot(tmp_path, binance, tg) as bot:
        assert bot.app.book is not None
        (row,) = bot.app.book.of_chat(USER)
    assert row.repeat_ms == 10_000


async def test_edit_keeps_repeat_where_it_can_and_says_what_cannot_be(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 repeat 1h")
        once = await bot.say("/edit w1 once")
        crossing = await bot.say("/edit w1 crosses above 120")
        again = await bot.say("/edit w1 repeat 5m")
        await bot.say("/watch ETHUSDT > 100 once")
        added = await bot.say("/edit w2 repeat 5m")
    assert once.startswith(
        "Repeat and once exclude each other: once ends the watch at its first alert: "
        "/edit w1 once repeat off"
    )
    assert crossing.startswith("Changed w1: BTCUSDT price crosses above 120 (cooldown 5m).")
    assert crossing.endswith("Its repeat 1h is dropped: this condition is true on one tick only.")
    assert again.startswith("Repeat is for a condition that holds for a while")
    assert added.startswith(
        "Repeat and once exclude each other: once ends the watch at its first alert: "
        "/edit w2 once off repeat 5m"
    )


async def test_a_repeat_shorter_than_the_default_cooldown_is_not_thinned_by_it(tmp_path, fakes):
    """``repeat 1m`` alone means every minute: the default cooldown (5m) does not apply over
    it; a cooldown typed longer than the repeat is the user's, and the answer says what it
    does."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        fast = await bot.say("/watch BTCUSDT > 100 repeat 1m")
        spaced = await bot.say("/watch ETHUSDT > 100 repeat 1m cooldown 10m")
        await bot.say("/watch SOLUSDT > 100 cooldown 10m")
        edited = await bot.say("/edit w3 repeat 2m")
    assert fast.startswith("Watching BTCUSDT: price > 100 (cooldown 1m, repeat 1m). Id w1.")
    assert "spaces the repeats" not in fast
    assert "Its cooldown of 10m spaces the repeats: one every 10m at most." in spaced
    # an edit keeps the cooldown, and says the same
    assert edited.endswith("Its cooldown of 10m spaces the repeats: one every 10m at most.")
