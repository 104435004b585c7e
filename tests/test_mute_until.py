"""``/mute w3 until 08:00``: a mute that ends at a time of day, the next one in the chat's
time zone, rather than after a duration."""

from __future__ import annotations

import datetime as dt

import pytest

from alertbot.chat.commands import CommandError, Mute, parse_command
from alertbot.hints import unmarked
from tests.test_chat import Bot


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/mute w3 until 08:00", Mute("w3", 0, until_minute=8 * 60)),
        ("/mute w3 w5 till 7am", Mute("w3", 0, ("w5",), until_minute=7 * 60)),
        ("/mute all until 8 pm", Mute("all", 0, until_minute=20 * 60)),
        ("/mute w3 to 19.30", Mute("w3", 0, until_minute=19 * 60 + 30)),
        ("/mute w3 2h", Mute("w3", 2 * 3_600_000)),  # a duration, as before
    ],
)
def test_mute_takes_a_time_of_day_after_until(text: str, expected: Mute) -> None:
    assert parse_command(text) == expected


def test_mute_until_in_reply_to_an_alert_is_about_its_watch() -> None:
    assert parse_command("/mute until 08:00", replied="w5") == Mute("w5", 0, until_minute=480)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # a time of day alone could mean either: both commands are given
        (
            "/mute w3 08:30",
            "Until that time, or for that long? /mute w3 until 08:30 or /mute w3 510m",
        ),
        ("/mute w3 02:00", "or /mute w3 2h"),
        ("/mute w3 00:00", "Until midnight? /mute w3 until 00:00"),
        ("/mute w3 until", "Until what time? e.g. /mute w3 until 08:00"),
        ("/mute w3 until 25:00", "Expected a time of day like 08:00, got '25:00'"),
        ("/mute w3 until 08:00 tomorrow", "Unexpected 'tomorrow' after the time"),
    ],
)
def test_a_malformed_mute_until_is_answered_with_the_command_to_send(text: str, says: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    reply = unmarked(info.value.reply())
    assert says in reply
    assert "/mute ID [ID...]|all D|until HH:MM" in reply


def _utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("now", "until", "answer", "ends"),
    [
        # 07:00 in Berlin: 08:00 is still to come today
        (_utc(2026, 3, 28, 6, 0), "08:00", "2026-03-28 08:00:00 CET", _utc(2026, 3, 28, 7, 0)),
        # 22:00 in Berlin: tomorrow's 08:00, which is in summer time (CEST) by then
        (_utc(2026, 3, 28, 21, 0), "08:00", "2026-03-29 08:00:00 CEST", _utc(2026, 3, 29, 6, 0)),
        # 02:30 does not come on 29 March (02:00 CET becomes 03:00 CEST): the first minute after
        (_utc(2026, 3, 28, 21, 0), "02:30", "2026-03-29 03:00:00 CEST", _utc(2026, 3, 29, 1, 0)),
        # 02:30 comes twice on 25 October: the first of the two (CEST)
        (_utc(2026, 10, 24, 21, 0), "02:30", "2026-10-25 02:30:00 CEST", _utc(2026, 10, 25, 0, 30)),
        # the minute itself has come: the next day's
        (_utc(2026, 3, 28, 7, 0), "08:00", "2026-03-29 08:00:00 CEST", _utc(2026, 3, 29, 6, 0)),
    ],
)
async def test_mute_until_ends_at_the_next_such_time_in_the_chats_zone(
    tmp_path, fakes, now: float, until: str, answer: str, ends: float
):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        chat = bot.app.chat
        book = bot.app.book
        assert chat is not None
        assert book is not None
        await bot.say("/timezone Europe/Berlin")
        await bot.say("/watch BTCUSDT > 100")
        chat.clock = lambda: now
        reply = await bot.say(f"/mute w1 until {until}")
        muted_until = book.rows[1].muted_until
    assert reply.startswith(f"Muted w1 until {answer}.")
    assert muted_until == ends


async def test_mute_until_without_a_time_zone_is_in_utc(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        chat = bot.app.chat
        assert chat is not None
        await bot.say("/watch BTCUSDT > 100")
        chat.clock = lambda: _utc(2026, 3, 28, 21, 0)
        reply = await bot.say("/mute all until 7am")
    assert reply.startswith("Muted w1 until 2026-03-29 07:00:00 UTC.")
