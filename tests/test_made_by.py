"""Whose watch it is: a group's watches belong to the whole group, and its /list says who sent
each /watch (kept in the database, across restarts)."""

from __future__ import annotations

from alertbot.store import Store, WatchRow
from tests.test_chat import Bot

GROUP = -100_555


async def test_a_groups_list_says_who_made_each_watch_and_a_private_one_does_not(tmp_path, fakes):
    """In a trading group anyone may /unwatch anyone's watch: the list says whose it is, by
    @username, else by first name; a pasted message of /watch lines is its sender's too."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        group = {"chat": GROUP, "chat_type": "supergroup"}
        await bot.say("/watch BTCUSDT > 70000", user_id=11, username="alice", **group)
        await bot.say("/watch ETHUSDT < 3000", user_id=12, username="", **group)  # no @name
        await bot.say(
            "/watch SOLUSDT > 200\n/watch SOLUSDT < 100", user_id=13, username="bob", **group
        )
        await bot.say("/watch BTCUSDT > 80000")  # a private chat's
        private = await bot.say("/list")
    async with Bot(tmp_path, binance, tg) as bot:  # kept in the database
        listing = await bot.say("/list", chat=GROUP, chat_type="supergroup")
    assert [line.split(" — ")[0] for line in listing.splitlines()[1:]] == [
        "w1  BTCUSDT price > 70000, cooldown 5m, by @alice",
        "w2  ETHUSDT price < 3000, cooldown 5m, by Trader",
        "w3  SOLUSDT price > 200, cooldown 5m, by @bob",
        "w4  SOLUSDT price < 100, cooldown 5m, by @bob",
    ]
    assert " by " not in private


def test_a_database_of_an_earlier_version_gets_the_column_of_who_made_a_watch(tmp_path):
    path = tmp_path / "a.db"
    store = Store(path)
    old = store.add_watch(WatchRow(0, GROUP, "BTCUSDT", "price > 120", 0, 0.0, False))
    store.db.execute("ALTER TABLE watches DROP COLUMN made_by")  # as an earlier version made it
    store.close()
    store = Store(path)
    try:
        new = store.add_watch(
            WatchRow(0, GROUP, "ETHUSDT", "price > 1", 0, 0.0, False, made_by="@alice")
        )
        assert [(w.id, w.made_by) for w in store.watches()] == [(old, None), (new, "@alice")]
    finally:
        store.close()
