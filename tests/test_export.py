"""/export, and a message of /watch lines: a chat's watches as commands, which, sent back as
one message (here, in another chat, to another bot), make them all again, or none."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbot.chat.bot import split_text
from alertbot.chat.commands import MAX_BATCH, Batch, CommandError, Watch, parse_command
from alertbot.hints import unmarked
from alertbot.store import Store, WatchRow
from tests.test_chat import USER, Bot, stored_watches

OTHER = 777

WATCHES = [
    "/watch BTCUSDT > 70000",
    "/watch ETHUSDT crosses below 3k cooldown 1h rearm 0.5%",
    "/watch SOLUSDT rises 5% in 15m once for 2h",
    "/watch 币安人生USDT < 500 repeat 15m note buy the dip",
]


def _fields(row: WatchRow) -> tuple[object, ...]:
    """What a watch is, whoever's and whenever made: symbol, condition and options."""
    return (
        row.symbol,
        row.condition,
        row.cooldown_ms,
        row.rearm,
        row.once,
        row.repeat_ms,
        row.note,
    )


def _rows(tmp_path, chat: int) -> list[WatchRow]:
    store = Store(tmp_path / "alertbot.db")
    try:
        return [r for r in store.watches() if r.chat_id == chat]
    finally:
        store.close()


# ------------------------------------------------------------------ the parser (pure)


def test_a_message_of_watch_lines_is_a_batch_of_them() -> None:
    text = "/watch BTCUSDT > 70000 note TP1\n\n  /watch@alertbot ETHUSDT < 3000  \n/WATCH sol > 1"
    assert parse_command(text, "alertbot") == Batch(
        ("/watch BTCUSDT > 70000 note TP1", "/watch@alertbot ETHUSDT < 3000", "/WATCH sol > 1")
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("/watch BTCUSDT > 70000 note take\nprofit", Watch),  # a note goes on past its line
        ("/watch BTCUSDT > 70000", Watch),
    ],
)
def test_one_watch_over_several_lines_is_one_watch(text: str, kind: type) -> None:
    assert isinstance(parse_command(text), kind)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/watch BTCUSDT > 70000\n/list", "one command a message"),  # another command among them
        ("\n".join(["/watch BTCUSDT > 1"] * (MAX_BATCH + 1)), f"at most {MAX_BATCH} /watch"),
    ],
)
def test_a_message_of_other_commands_or_too_many_lines_is_refused(text: str, says: str) -> None:
    with pytest.raises(CommandError, match=says):
        parse_command(text)


# ------------------------------------------------------------------ the running bot


async def test_export_sent_back_in_another_chat_makes_the_same_watches(tmp_path, fakes):
    """Each watch as the /watch that makes it, options and note included, a 'for' as the
    time left; the block pasted as one message in another chat makes every one of them, as
    the ids of the answer say."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for command in WATCHES:
            await bot.say(command)
        exported = await bot.say("/export")
        message = tg.messages_to(USER)[-1]
        (block,) = message.shown_as("code")  # one tap copies all of it
        made = await bot.say(block, chat=OTHER)
    head, body = unmarked(exported).split("\n\n")
    assert head.startswith("This chat's 4 watches as commands. Send them back as one message")
    assert body.splitlines() == [
        "/watch BTCUSDT price > 70000 cooldown 5m",
        "/watch ETHUSDT price crosses below 3000 cooldown 1h rearm 0.5%",
        "/watch SOLUSDT rises 5% in 15m cooldown 5m once for 2h",
        "/watch 币安人生USDT price < 500 cooldown 5m repeat 15m note buy the dip",
    ]
    assert made.splitlines()[0] == "Made 4 watches:"
    assert made.splitlines()[1] == "w5  BTCUSDT price > 70000 (cooldown 5m)"
    assert made.splitlines()[-1] == "Remove them with /unwatch w5 w6 w7 w8."
    mine, theirs = _rows(tmp_path, USER), _rows(tmp_path, OTHER)
    assert [_fields(r) for r in theirs] == [_fields(r) for r in mine]
    assert theirs[2].expires_ms is not None
    assert mine[2].expires_ms is not None
    assert 0 <= theirs[2].expires_ms - mine[2].expires_ms < 120_000


async def test_a_batch_with_a_malformed_line_makes_none_and_names_the_line(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        refused = await bot.say(
            "/watch BTCUSDT > 70000\n/watch ETHUSDT >> 3000\n/watch SOLUSDT > 1"
        )
        unknown = await bot.say("/watch BTCUSDT > 70000\n/watch BTCUSDX > 1")
        listing = await bot.say("/list")
    assert refused.startswith("None of these 3 watches was made: line 2 is refused.\n")
    assert "Use: /watch SYMBOL CONDITION" in refused
    assert unknown.startswith("None of these 2 watches was made: unknown symbol BTCUSDX")
    assert listing.startswith("No watches here yet.")
    assert _rows(tmp_path, USER) == []


async def test_a_batch_names_the_watches_the_chat_has_already_and_makes_the_rest(tmp_path, fakes):
    """A line the chat watches so already is named, not made twice; the same line twice in the
    message is made once; one past the chat's limit makes none."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, max_watches=4) as bot:
        await bot.say("/watch BTCUSDT > 70000")
        made = await bot.say(
            "/watch BTCUSDT > 70000 cooldown 1h\n/watch ETHUSDT < 3000\n/watch ETHUSDT < 3000"
        )
        over = await bot.say("/watch SOLUSDT > 1\n/watch SOLUSDT > 2\n/watch SOLUSDT > 3")
    assert made.splitlines() == [
        "Made 1 watch:",
        "w2  ETHUSDT price < 3000 (cooldown 5m)",
        "Watched here so already: BTCUSDT price > 70000 (w1).",
        "Remove them with /unwatch w2.",
    ]
    assert over.startswith(
        "None of these 3 watches was made: this chat has 2 watches and 3 more would pass the 4"
    )
    assert [r.symbol for r in _rows(tmp_path, USER)] == ["BTCUSDT", "ETHUSDT"]


async def test_export_of_many_watches_comes_in_blocks_each_a_message_to_send(tmp_path, fakes):
    """More than MAX_BATCH watches: blocks of MAX_BATCH lines, each a code block of its own
    (a tap copies one), which as a message of its own is taken."""
    stored_watches(tmp_path, [("BTCUSDT", f"price > {n}") for n in range(1, MAX_BATCH + 6)])
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/export")  # one message: two blocks, each a tap to copy
        blocks = [b for m in tg.messages_to(USER) for b in m.shown_as("code")]
        second = await bot.say(blocks[1], chat=OTHER)
    assert [len(b.splitlines()) for b in blocks] == [MAX_BATCH, 5]
    assert second.startswith("Made 5 watches:")


async def test_an_export_longer_than_a_message_keeps_each_block_whole_in_one(tmp_path, fakes):
    """Watches with long notes: a block holds fewer lines, so that it fits a message, and the
    answer, sent as several messages, is cut between blocks, never within one."""
    note = "n" * 100
    stored_watches(tmp_path, [("BTCUSDT", f"price > {n}") for n in range(1, 61)], note=note)
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/export")

        def blocks() -> list[str]:
            return [b for m in tg.messages_to(USER) for b in m.shown_as("code")]

        await tg.wait_for(lambda: sum(len(b.splitlines()) for b in blocks()) >= 60)
        messages = tg.messages_to(USER)
    blocks = [b for m in messages for b in m.shown_as("code")]
    assert len(messages) > 1
    assert all(len(m.plain_text) <= 4096 for m in messages)
    lines = [line for b in blocks for line in b.splitlines()]
    assert lines == [f"/watch BTCUSDT price > {n} cooldown 1h note {note}" for n in range(1, 61)]
    for block in blocks:  # each one a message to send back
        assert isinstance(parse_command(block), Batch)


async def test_unwatch_answers_with_the_commands_that_make_the_watches_again(tmp_path, fakes):
    """A slip of /unwatch (all) is undone by sending what its answer gives: the removed
    watches' /watch commands, a tap to copy (one, or a block of them)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for command in WATCHES:
            await bot.say(command)
        await bot.say("/watch BTCUSDT < 1 cooldown 0")
        before = [_fields(r) for r in _rows(tmp_path, USER) if r.id != 5]
        one = await bot.say("/unwatch w5")
        removed = await bot.say("/unwatch all")
        (block,) = tg.messages_to(USER)[-1].shown_as("code")
        made = await bot.say(block)
    assert one.endswith("To make it again: /watch BTCUSDT price < 1 cooldown 0")
    assert removed.startswith("Removed all 4 watches. To make them again, send this:\n\n/watch")
    assert made.startswith("Made 4 watches:")
    assert [_fields(r) for r in _rows(tmp_path, USER)] == before


async def test_several_watches_at_once_get_the_notes_a_single_watch_gets(tmp_path, fakes):
    """What a lone /watch's answer points out is said for each watch of several made at once:
    a level far from a symbol's price now (one level typed for several symbols is often far
    from one of them), ``1m`` read as a million, a repeat its cooldown spaces."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch SOLUSDT > 1")  # the feed carries BTCUSDT and ETHUSDT from here on
        await bot.say("/watch BTCUSDT,ETHUSDT > 1000000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        now = int(time.time() * 1000)
        await bot.tick("BTCUSDT", 68000, now)
        await bot.tick("ETHUSDT", 3000, now)
        several = await bot.say("/watch BTCUSDT,ETHUSDT > 70000")
        batch = await bot.say("/watch BTCUSDT > 2m\n/watch ETHUSDT < 2000 cooldown 10m repeat 1m")
    assert "ETHUSDT is at 3000 now, far from 70000." in several.splitlines()
    assert not any(line.startswith("BTCUSDT is at") for line in several.splitlines())
    lines = batch.splitlines()
    assert "w6: BTCUSDT is at 68000 now, far from 2000000." in lines
    assert any(
        line.startswith("w6: 2m here is 2000000 (m: million), not minutes") for line in lines
    )
    assert "w7: Its cooldown of 10m spaces the repeats: one every 10m at most." in lines


async def test_export_with_no_watches_says_how_to_make_one(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        answer = await bot.say("/export")
    assert answer.startswith("This chat has no watches to export. Add one with /watch")


@given(
    st.lists(st.sampled_from(["", "a", "bb " * 5, "c" * 40, "d" * 9]), max_size=20),
    st.integers(min_value=3, max_value=60),
)
def test_a_long_answer_is_cut_between_paragraphs_that_fit_and_loses_nothing(
    lines: list[str], limit: int
) -> None:
    """Every message within the limit and not blank; nothing but white space lost; and a
    paragraph (blank-line apart) that fits in a message is in one message, whole."""
    text = "\n".join(lines)
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit and p.strip() for p in parts)
    # a piece of white space alone (a long line's end) is no message: nothing else goes
    assert "".join("".join(parts).split()) == "".join(text.split())
    for paragraph in text.split("\n\n"):
        if paragraph.strip() and len(paragraph) <= limit:
            assert any(paragraph in p for p in parts), (paragraph, parts)
