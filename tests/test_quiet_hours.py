"""Quiet hours (``/quiet 23:00-07:00``): alerts and notes to a chat then come without a sound.

Telegram's ``disable_notification``: the message arrives as always, silently. Nothing is held
back. The hours are in the chat's time zone, kept in the database, and move with a group that
becomes a supergroup. Answers to commands keep their sound (the user is there).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from alertbot.chat.commands import CommandError, Quiet, parse_command
from alertbot.store import Store
from alertbot.zones import in_window
from tests.fakes.telegram import FakeTelegram, Message
from tests.test_chat import USER, Bot, T

# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/quiet", Quiet(show=True)),
        ("/quiet off", Quiet()),
        ("/quiet 23:00-07:00", Quiet((23 * 60, 7 * 60))),
        ("/quiet 23:00 - 07:30", Quiet((23 * 60, 7 * 60 + 30))),
        ("/quiet 23:00 07:00", Quiet((23 * 60, 7 * 60))),
        ("/quiet 23:00 to 7:00", Quiet((23 * 60, 7 * 60))),
        ("/quiet 11pm-7am", Quiet((23 * 60, 7 * 60))),
        ("/quiet 22.30–06.45", Quiet((22 * 60 + 30, 6 * 60 + 45))),
        ("/quiet 13:00-14:00", Quiet((13 * 60, 14 * 60))),  # within one day: a siesta
    ],
)
def test_quiet_parses_two_times_of_day(text: str, expected: Quiet) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/quiet 23:00", "give the time they begin and the time they end"),
        ("/quiet 23:00-07:00 CET", "give the time they begin and the time they end"),
        ("/quiet 25:00-07:00", "expected a time of day like 23:00, got '25:00'"),
        ("/quiet 8-8", "they begin and end at the same time"),
    ],
)
def test_a_malformed_quiet_is_refused_with_the_form(text: str, says: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert says in str(info.value)
    assert "/quiet [HH:MM-HH:MM|off]" in info.value.reply()


@pytest.mark.parametrize(
    ("minute", "start", "end", "inside"),
    [
        (23 * 60, 23 * 60, 7 * 60, True),  # the start is quiet
        (3 * 60, 23 * 60, 7 * 60, True),  # overnight: after midnight
        (7 * 60 - 1, 23 * 60, 7 * 60, True),
        (7 * 60, 23 * 60, 7 * 60, False),  # the end is not
        (12 * 60, 23 * 60, 7 * 60, False),
        (13 * 60 + 30, 13 * 60, 14 * 60, True),  # within one day
        (14 * 60, 13 * 60, 14 * 60, False),
        (12 * 60, 13 * 60, 14 * 60, False),
    ],
)
def test_a_window_runs_from_its_start_up_to_its_end_overnight_too(
    minute: int, start: int, end: int, inside: bool
) -> None:
    assert in_window(minute, start, end) is inside


def test_quiet_hours_are_kept_and_move_with_a_group_that_becomes_a_supergroup(tmp_path):
    path = tmp_path / "a.db"
    store = Store(path)
    store.set_quiet(-5, (23 * 60, 7 * 60))
    store.set_quiet(-7, (1, 2))
    store.set_quiet(-7, None)
    store.close()
    store = Store(path)
    try:
        assert store.quiet_hours() == {-5: (23 * 60, 7 * 60)}
        store.move_chat(-5, -1_000_000_000_005)
        assert store.quiet_hours() == {-1_000_000_000_005: (23 * 60, 7 * 60)}
    finally:
        store.close()


# ------------------------------------------------------------------ the running bot


def window_around(now: float, zone: dt.tzinfo = dt.UTC, *, inside: bool) -> str:
    """A /quiet window (``HH:MM-HH:MM`` in ``zone``) that holds the minute ``now`` is in, or
    one that ends an hour before it."""
    at = dt.datetime.fromtimestamp(now, zone)
    if inside:
        start, end = at - dt.timedelta(hours=1), at + dt.timedelta(hours=1)
    else:
        start, end = at - dt.timedelta(hours=3), at - dt.timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M}"


def silent(msg: Message) -> Any:
    return msg.params.get("disable_notification")


async def alert(bot: Bot, tg: FakeTelegram, price: float, time_ms: int) -> Message:
    await bot.tick("BTCUSDT", price, time_ms)
    await tg.wait_for(lambda: f"price {price:g}" in tg.messages_to(USER)[-1].plain_text)
    return tg.messages_to(USER)[-1]


async def test_an_alert_in_quiet_hours_comes_without_a_sound_and_after_them_with_one(
    tmp_path, fakes
):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        set_answer = await bot.say(f"/quiet {window_around(time.time(), inside=True)}")
        answer_msg = tg.messages_to(USER)[-1]
        quiet = await alert(bot, tg, 110, T)
        status = await bot.say("/status")
        await bot.say(f"/quiet {window_around(time.time(), inside=False)}")
        await bot.tick("BTCUSDT", 90, T + 1000)
        loud = await alert(bot, tg, 111, T + 2000)
        await bot.say("/quiet off")
        shown = await bot.say("/quiet")
        after = await alert_after_drop(bot, tg)
    assert "It is quiet now." in set_answer
    assert set_answer.startswith("Quiet hours ")
    assert silent(answer_msg) in (None, False)  # an answer: the user is there
    assert silent(quiet) is True
    assert "Quiet hours: " in status
    assert "quiet now" in status
    assert silent(loud) in (None, False)
    assert shown.startswith("No quiet hours here")
    assert silent(after) in (None, False)


async def alert_after_drop(bot: Bot, tg: FakeTelegram) -> Message:
    await bot.tick("BTCUSDT", 90, T + 3000)
    return await alert(bot, tg, 112, T + 4000)


async def test_quiet_hours_are_in_the_chats_time_zone_and_kept_across_a_restart(tmp_path, fakes):
    """After ``/timezone Asia/Tokyo`` the hours are Tokyo's: a window around Tokyo's time
    now is quiet now (one around UTC's would not be: 9 hours apart)."""
    binance, tg = fakes
    tokyo = dt.timezone(dt.timedelta(hours=9))
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone Asia/Tokyo")
        answer = await bot.say(f"/quiet {window_around(time.time(), tokyo, inside=True)}")
        await bot.say("/watch BTCUSDT > 100")
    async with Bot(tmp_path, binance, tg) as bot:
        shown = await bot.say("/quiet")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        quiet = await alert(bot, tg, 110, T)
    assert "JST: alerts and notes then come without a sound" in answer
    assert "It is quiet now." in shown
    assert silent(quiet) is True


async def test_a_note_in_quiet_hours_comes_without_a_sound(tmp_path, fakes):
    """Notes (a daily digest, a watch run out of its time) are sent unasked, as alerts are."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say(f"/quiet {window_around(time.time(), inside=True)}")
        assert bot.app.chat is not None
        await bot.app.chat.tell(USER, "Daily digest: …")
        note = tg.messages_to(USER)[-1]
    assert note.plain_text == "Daily digest: …"
    assert silent(note) is True
