"""A watch's note: ``/watch BTCUSDT > 70000 note take profit`` (the rest of the message).

Its alerts show it on a line of their own, ``/list`` and the answers show it, ``/edit`` changes
or removes it (``note off``) keeping the watch's firing state, and it is kept in the database.
A refused command's suggested commands keep it, so that it need not be typed again.
"""

from __future__ import annotations

import time

import pytest

from alertbot.chat.commands import (
    NOTE_MAX,
    Batch,
    CommandError,
    Edit,
    Watch,
    format_watch,
    parse_command,
)
from alertbot.hints import unmarked
from alertbot.rules.conditions import parse
from alertbot.store import AlertRecord, DeliveryRow, Store, WatchRow
from tests.test_chat import USER, Bot, T

# ------------------------------------------------------------------ the parser (pure)


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("/watch BTCUSDT > 70000 note take profit 1", "take profit 1"),
        ("/watch BTCUSDT > 70000 cooldown 1h once note TP1", "TP1"),
        ("/watch BTCUSDT > 70000 note: TP1", "TP1"),  # as people write a label
        ("/watch BTCUSDT > 70000 NOTE “close half”", "close half"),  # quotes taken off
        ("/watch BTCUSDT > 70000 note «TP1»", "TP1"),
        ("/watch BTCUSDT > 70000 note  sell   half\n  then wait ", "sell half then wait"),
        # what follows 'note' is its text, whatever it says: no option, no condition
        ("/watch BTCUSDT > 70000 note cooldown 1h > 5", "cooldown 1h > 5"),
        ("/watch BTCUSDT > 70000 note see /price later", "see /price later"),
    ],
)
def test_a_watchs_note_is_the_rest_of_the_message_on_one_line(text: str, note: str) -> None:
    watch = parse_command(text)
    assert isinstance(watch, Watch)
    assert (watch.symbol, watch.condition_text, watch.note) == ("BTCUSDT", "price > 70000", note)


def test_a_note_leaves_the_options_before_it_as_they_were() -> None:
    watch = parse_command("/watch ethusdt crosses below 3k cooldown 1h rearm 0.5% once note dip")
    assert watch == Watch(
        symbol="ETHUSDT",
        condition=parse("price crosses below 3000"),
        condition_text="price crosses below 3000",
        cooldown_ms=3_600_000,
        rearm=0.005,
        once=True,
        note="dip",
    )
    assert parse_command(format_watch(watch)) == watch  # the canonical text reads back


def test_note_is_a_symbol_where_the_symbol_goes() -> None:
    """``/watch note > 1``: the first word is the symbol, whatever it is (a coin NOTE)."""
    watch = parse_command("/watch note > 1")
    assert isinstance(watch, Watch)
    assert (watch.symbol, watch.note) == ("NOTE", None)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/watch BTCUSDT > 70000 note", "'note' needs its text after it"),
        ("/watch BTCUSDT > 70000 note “”", "'note' needs its text after it"),
        ("/watch BTCUSDT > 70000 note off", "leave the note out"),
        ("/watch BTCUSDT > 70000 note " + "x" * (NOTE_MAX + 1), "at most 100 characters"),
        ("/watch BTCUSDT > 70000 note TP\u200b1", "holds \\u200b"),
        ("/edit w3 note", "needs its text after it, e.g. note take profit; /edit w3 note off"),
        ("/watch BTCUSDT > 70000 notes TP1", "did you mean note?"),
    ],
)
def test_a_malformed_note_is_refused_with_the_form(text: str, says: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert says in str(info.value)
    assert "[note TEXT]" in unmarked(info.value.reply())  # the form shows where it goes


def test_a_note_of_exactly_the_longest_length_is_taken() -> None:
    watch = parse_command("/watch BTCUSDT > 70000 note " + "x" * NOTE_MAX)
    assert isinstance(watch, Watch)
    assert watch.note == "x" * NOTE_MAX


@pytest.mark.parametrize(
    ("text", "replied", "expected"),
    [
        ("/edit w3 note TP2", None, Edit(target="w3", note="TP2")),
        ("/edit w3 note off", None, Edit(target="w3", off=frozenset({"note"}))),
        ("/edit w3 once off note off", None, Edit(target="w3", off=frozenset({"once", "note"}))),
        ("/edit note TP2", "w7", Edit(target="w7", note="TP2")),  # in reply to an alert
        ("/edit w3 ETHUSDT note TP2", None, Edit(target="w3", symbol="ETHUSDT", note="TP2")),
        (
            "/edit w3 71000 note TP2",
            None,
            Edit(target="w3", level=71000.0, level_text="71000", note="TP2"),
        ),
    ],
)
def test_edit_takes_a_note_or_takes_it_away(text: str, replied: str | None, expected: Edit) -> None:
    assert parse_command(text, replied=replied) == expected


@pytest.mark.parametrize(
    ("text", "commands"),
    [
        (  # no sign: both ways, each with the note
            "/watch BTCUSDT 70000 note TP1",
            ["/watch BTCUSDT > 70000 note TP1", "/watch BTCUSDT < 70000 note TP1"],
        ),
        (  # several symbols, no sign: every symbol and the note in both
            "/watch BTCUSDT ETHUSDT 1 note TP1",
            ["/watch BTCUSDT,ETHUSDT > 1 note TP1", "/watch BTCUSDT,ETHUSDT < 1 note TP1"],
        ),
        ("/watch BTCUSDT > 70k or < 60k note TP1", None),  # any(...) with the note
    ],
)
def test_a_refused_watchs_suggested_commands_keep_its_note(
    text: str, commands: list[str] | None
) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    message, usage = unmarked(info.value.reply()).split("\nUse: ")
    if commands is None:
        assert "any(price > 70000, price < 60000) note TP1" in message
    else:
        for command in commands:
            assert command in message
    # the form and its example are not about this note
    assert "TP1" not in usage


def test_a_second_command_pasted_after_a_note_is_not_part_of_the_note() -> None:
    """``note`` takes the rest of the message, but /watch commands pasted on lines of their
    own are a batch, each line its own watch: the note ends with its line."""
    batch = parse_command("/watch BTCUSDT > 70000 note TP1\n/watch ETHUSDT > 3000")
    assert isinstance(batch, Batch)
    first, second = (parse_command(line) for line in batch.lines)
    assert isinstance(first, Watch)
    assert first.note == "TP1"
    assert isinstance(second, Watch)
    assert second.symbol == "ETHUSDT"
    with pytest.raises(CommandError, match="one command a message"):  # another command
        parse_command("/watch BTCUSDT > 70000 note TP1\n/list")


# ------------------------------------------------------------------ the database


def test_a_database_of_an_earlier_version_gets_the_column_of_a_watchs_note(tmp_path):
    """``watches.note``: a database made before it has it added at the start, its watches
    without a note; a note written and edited is read back."""
    path = tmp_path / "a.db"
    store = Store(path)
    old = store.add_watch(WatchRow(0, 5, "BTCUSDT", "price > 120", 0, 0.0, False))
    store.db.execute("ALTER TABLE watches DROP COLUMN note")  # as an earlier version made it
    store.close()
    store = Store(path)
    try:
        new = store.add_watch(WatchRow(0, 5, "ETHUSDT", "price > 1", 0, 0.0, False, note="TP1"))
        assert [(w.id, w.note) for w in store.watches()] == [(old, None), (new, "TP1")]
        (_, row) = store.watches()
        store.edit_watch(WatchRow(**{**_fields(row), "note": "TP2"}))
        assert [w.note for w in store.watches()] == [None, "TP2"]
    finally:
        store.close()


def test_an_alerts_note_is_kept_with_it_for_a_delivery_resumed_later(tmp_path):
    """``alerts.note``: an alert stored with its watch's note has it when its delivery is
    resumed from the database (the webhook's ``note`` then); a database made before the
    column has it added, its alerts without a note."""
    path = tmp_path / "a.db"
    store = Store(path)
    for column in ("detail", "note"):  # as an earlier version made it
        store.db.execute(f"ALTER TABLE alerts DROP COLUMN {column}")
    store.db.execute(
        "INSERT INTO alerts VALUES ('old', 'w1', 'BTCUSDT', 1, '1', 'c', 't', 'h', 0, 1.0, 1)"
    )
    store.write([], [DeliveryRow("old", "telegram:5", chat_id=5, created=1.0)], [])
    store.close()
    store = Store(path)
    try:
        noted = AlertRecord("new", "w2", "BTCUSDT", T, "1", "c", "t", "h", created=1, note="TP1")
        store.write([noted], [DeliveryRow("new", "telegram:5", chat_id=5, created=1.0)], [])
        assert [(a.id, a.note) for a, _ in store.open_deliveries()] == [
            ("old", None),
            ("new", "TP1"),
        ]
    finally:
        store.close()


def _fields(row: WatchRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in WatchRow.__slots__}


# ------------------------------------------------------------------ the running bot


async def test_a_watchs_alert_shows_its_note_and_list_and_answers_name_it(tmp_path, fakes):
    """The note comes on a line of its own below what happened, escaped for Telegram's HTML
    (``<`` is text), the buttons below it; the /watch answer and /list name it."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        answer = await bot.say("/watch BTCUSDT > 100 note sell <half> & wait")
        listing = await bot.say("/list")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].plain_text)
        alert = tg.messages_to(USER)[-1]
    assert answer.startswith(
        "Watching BTCUSDT: price > 100 (cooldown 5m, note «sell <half> & wait»). Id w1."
    )
    assert "w1  BTCUSDT price > 100, cooldown 5m, note «sell <half> & wait» — active" in listing
    lines = alert.plain_text.split("\n")
    assert lines[0].startswith("BTCUSDT price > 100: price 110")
    assert lines[1] == "Note: sell <half> & wait"
    assert "Note: sell &lt;half&gt; &amp; wait" in alert.text
    assert alert.reply_markup is not None  # its buttons, under the note


async def test_edit_changes_or_removes_a_note_keeping_the_watchs_firing(tmp_path, fakes):
    """A new note is not a new watch: a level that fired and still holds stays quiet after
    the note changes. The next alert shows the new note; after ``note off`` none. The note
    is kept across a restart."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 cooldown 0 note TP1")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].plain_text)
        changed = await bot.say("/edit w1 note TP2 then trail")
        await bot.tick("BTCUSDT", 111, T + 1000)  # still above: no alert
        await bot.tick("BTCUSDT", 90, T + 2000)
        await bot.tick("BTCUSDT", 112, T + 3000)  # above again: an alert, the new note
        await tg.wait_for(lambda: "price 112" in tg.messages_to(USER)[-1].plain_text)
        second = tg.messages_to(USER)[-1].plain_text
        alerts = [m for m in tg.messages_to(USER) if "[w1]" in m.plain_text]
    assert changed == (
        "Changed w1: BTCUSDT price > 100 (no cooldown, note «TP2 then trail»). "
        "Was: price > 100 (no cooldown, note «TP1»)."
    )
    assert len(alerts) == 2
    assert "\nNote: TP2 then trail" in second
    async with Bot(tmp_path, binance, tg) as bot:
        assert "note «TP2 then trail»" in await bot.say("/list")
        removed = await bot.say("/edit w1 note off")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T + 4000)
        await bot.tick("BTCUSDT", 113, T + 5000)
        await tg.wait_for(lambda: "price 113" in tg.messages_to(USER)[-1].plain_text)
        third = tg.messages_to(USER)[-1].plain_text
    assert removed.startswith("Changed w1: BTCUSDT price > 100 (no cooldown). Was: ")
    assert "Note:" not in third


async def test_a_watch_made_again_with_a_note_is_answered_with_the_edit_that_sets_it(
    tmp_path, fakes
):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 once note TP1")
        again = await bot.say("/watch BTCUSDT > 100 note TP2")
        bare = await bot.say("/watch BTCUSDT > 100 cooldown 1h")
    assert again.endswith("To change it to these options: /edit w1 once off note TP2")
    # options typed without a note: the watch's note is taken away, as its other options
    assert bare.endswith("To change it to these options: /edit w1 cooldown 1h once off note off")


async def test_a_number_alone_with_a_note_is_answered_from_the_price_now_note_kept(tmp_path, fakes):
    """``/watch BTCUSDT 70000 note TP1`` with a price in the feed: the command that alerts
    when the price gets there, note and all, ready to copy."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 1000000")  # the feed carries BTCUSDT
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 68_000.5, int(time.time() * 1000))  # a price now
        before = len(tg.messages_to(USER))
        tg.user_says(USER, "/watch BTCUSDT 70000 note TP1")
        await tg.wait_for(lambda: len(tg.messages_to(USER)) > before)
        answer = tg.messages_to(USER)[before]
    assert "so /watch BTCUSDT > 70000 note TP1 alerts when it rises to 70000" in answer.plain_text
    assert "/watch BTCUSDT > 70000 note TP1" in answer.shown_as("code")
