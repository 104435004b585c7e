"""Text that is not valid Unicode (a lone surrogate, which neither SQLite, Telegram nor orjson
takes) never blocks an alert: the outbox stores and delivers the rest of its batch, and sends
the bad one with U+FFFD in its place; a record that cannot be stored at all is counted as failed
and logged once. A database that refuses every write is still retried (tests/
test_delivery_faults.py, shutdown).

Against the webhook receiver, the fake Telegram Bot API and a real SQLite file, as
tests/test_delivery.py.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import orjson
import pytest

from alertbot.cli import JsonFormatter
from alertbot.feed.symbols import SymbolDirectory
from alertbot.notify.routing import Route
from alertbot.rules.loader import RuleFileError, load_files
from alertbot.rules.model import Channel
from alertbot.store import AlertRecord, Store
from alertbot.text import is_text
from tests.fakes.binance import FakeBinance
from tests.fakes.telegram import FakeTelegram
from tests.fakes.waiting import wait_until
from tests.fakes.webhook import WebhookReceiver
from tests.test_chat import GROUP, SUPERGROUP, Bot
from tests.test_chat import T as T_CHAT
from tests.test_delivery import CHAT, Harness, T, rule
from tests.test_feed import Bot as FeedBot
from tests.test_feed import fast
from tests.test_feed import rule as feed_rule

BAD = "x \ud800 {price}"


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# ------------------------------------------------------------------ the outbox


async def test_an_alert_with_a_lone_surrogate_is_sent_with_ufffd_and_the_rest_of_its_batch_too(
    tmp_path, hook: WebhookReceiver, caplog
):
    """One bad alert in a batch: the other alert is stored and delivered as usual, the bad one
    is stored and delivered with U+FFFD for the surrogate, the log names it once, the state
    save is not held up and nothing is lost at shutdown."""
    h = Harness(tmp_path, None, hook)
    async with h:
        outbox = h.notifier.outbox
        assert outbox is not None
        assert h.fire([rule("bad", message=BAD), rule("good", symbol="ETHUSDT")]) == 2
        await asyncio.wait_for(outbox.stored_all(), 3.0)  # what App.save_state waits on
        await h.settled()
        assert outbox.write_errors == 0  # not taken for a database that fails
    by_rule = {d.json["rule"]: d.json for d in hook.deliveries}
    assert by_rule["bad"]["message"] == "x \ufffd 101.5"
    assert "good" in by_rule
    assert h.states() == {
        f"bad:BTCUSDT:{T}>webhook:{hook.url}": "sent",
        f"good:ETHUSDT:{T}>webhook:{hook.url}": "sent",
    }
    (line,) = logged(caplog, "not valid Unicode")
    assert f"bad:BTCUSDT:{T}" in line
    assert not logged(caplog, "could not be stored")
    assert not logged(caplog, "retrying")


async def test_an_alert_with_a_lone_surrogate_reaches_a_telegram_chat_with_ufffd(
    tmp_path, tg: FakeTelegram
):
    """Telegram takes only valid UTF-8: the chat gets the message with U+FFFD in its place."""
    h = Harness(tmp_path, tg, None, channels={"ops": Channel("ops", telegram=CHAT)})
    async with h:
        h.fire([rule("bad", message=BAD, notify=["ops"])])
        await h.settled()
    assert [m.plain_text for m in tg.messages_to(CHAT)] == ["x \ufffd 101.5"]


async def test_a_record_that_cannot_be_stored_at_all_is_counted_failed_and_the_rest_goes_on(
    tmp_path, hook: WebhookReceiver, caplog
):
    """A per-record error that no cleaning mends (here an event time past SQLite's 64-bit
    integers) fails that alert alone, logged once with its id; the alert with it in the batch
    is stored and delivered, and the writer takes no more for a failing database."""
    h = Harness(tmp_path, None, hook)
    async with h:
        outbox = h.notifier.outbox
        assert outbox is not None
        routes = [Route(f"webhook:{hook.url}", url=hook.url)]
        huge = 2**70

        def record(rule_id: str, event_time: int) -> AlertRecord:
            return AlertRecord(
                f"{rule_id}:BTCUSDT:{event_time}", rule_id, "BTCUSDT", event_time, "1",
                "price > 0", f"{rule_id} fired", "", created=time.time(), seq=outbox.take_seq(),
            )  # fmt: skip

        outbox.submit(record("huge", huge), routes)
        outbox.submit(record("fine", T), routes)
        await asyncio.wait_for(outbox.stored_all(), 3.0)
        await h.settled()
        assert outbox.write_errors == 0
        assert outbox.outcomes.get(("webhook", "failed")) == 1
    assert [d.json["rule"] for d in hook.deliveries] == ["fine"]
    assert h.states() == {f"fine:BTCUSDT:{T}>webhook:{hook.url}": "sent"}
    (line,) = logged(caplog, "cannot be stored")
    assert f"huge:BTCUSDT:{huge}" in line


async def test_a_database_that_refuses_writes_is_still_retried_not_taken_for_a_bad_record(
    tmp_path, hook: WebhookReceiver, caplog
):
    """A write that fails for the database itself (read-only here, as on a full or read-only
    volume) keeps the batch and retries it; once writes are taken again it is stored and sent."""
    h = Harness(tmp_path, None, hook)
    async with h:
        outbox = h.notifier.outbox
        store = h.notifier.store
        assert outbox is not None
        assert store is not None
        await outbox.db(store.db.execute, "PRAGMA query_only = ON")
        h.fire([rule("r1")])
        await wait_until(lambda: outbox.write_errors >= 1, 3.0)
        assert not hook.deliveries
        await outbox.db(store.db.execute, "PRAGMA query_only = OFF")
        await h.settled()
    assert h.states() == {f"r1:BTCUSDT:{T}>webhook:{hook.url}": "sent"}
    assert not logged(caplog, "cannot be stored")
    assert logging.ERROR in {r.levelno for r in caplog.records if "retrying" in r.getMessage()}


def test_the_store_writes_the_good_records_of_a_batch_and_returns_the_bad(tmp_path):
    """Store.write_each: each alert with its deliveries in a savepoint of its own."""
    store = Store(tmp_path / "a.db")
    try:
        good = AlertRecord("g:S:1", "g", "S", 1, "1", "c", "fine", "")
        bad = AlertRecord("b:S:1", "b", "S", 1, "1", "c", "x \udc80", "")
        from alertbot.store import DeliveryRow

        rows = [DeliveryRow(a.id, "console") for a in (good, bad)]
        failed = store.write_each([bad, good], rows, [])
        assert [(item.id, type(exc)) for item, exc in failed] == [("b:S:1", UnicodeEncodeError)]
        assert [d.alert_id for d in store.deliveries()] == ["g:S:1"]
    finally:
        store.close()


# ------------------------------------------------------------------ rule files

RULES = """\
channels:
  ops:
    webhook: "https://hooks.example.com/a"
rules:
  - id: good
    symbols: [BTCUSDT]
    when: price > 100
    notify: [ops]
  - id: bad
    symbols: [ETHUSDT]
    when: price > 100
    message: "x \\ud800 {price}"
"""


def problems_of(path) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_files([path])
    return [str(p) for p in caught.value.problems]


def test_a_rule_file_with_a_lone_surrogate_escape_in_a_message_is_refused_at_its_place(tmp_path):
    """``\\ud800`` in a double-quoted YAML string is a lone surrogate: the file is refused with
    FILE:LINE:COL at the escape, and the message names it."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:12:17: ")
    assert "\\ud800" in problem
    assert "not valid Unicode" in problem
    assert problem.isascii() or "\ud800" not in problem  # the message itself can be printed


@pytest.mark.parametrize(
    ("line", "fixed"),
    [
        ('  - id: "b\\udc00d"\n', ""),  # an id
        ('    notify: ["op\\uDFFFs"]\n', ""),  # a channel name, upper case hex
        ('    message: "\\ud83d\\ude00 {price}"\n', "\\U0001F600"),  # a pair: say how to write it
        ('    message: "\\U0000D800"\n', ""),  # the long escape
        ('    "\\ud800note": 1\n', ""),  # a key
    ],
)
def test_any_string_of_a_rule_file_that_is_not_valid_unicode_is_refused(tmp_path, line, fixed):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - id: r\n    symbols: [BTCUSDT]\n    when: price > 1\n".replace(
            "  - id: r\n", line if line.startswith("  - id") else "  - id: r\n"
        )
        + ("" if line.startswith("  - id") else line)
    )
    found = [p for p in problems_of(path) if "not valid Unicode" in p]
    assert len(found) == 1, problems_of(path)
    assert fixed in found[0]


def test_check_shows_a_lone_surrogate_in_a_rule_file_and_exits_1(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    result = subprocess.run(
        [sys.executable, "-m", "alertbot.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{path}:12:17: " in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ chat commands


@pytest.mark.parametrize(
    "text",
    ["/watch BTCUSDT > 100 \ud800", "/watch BTC\udc00USDT > 100", "/price \ud800", "/list \ud83d"],
)
async def test_a_command_with_a_lone_surrogate_is_refused_quoting_its_code_and_changes_nothing(
    tmp_path, fakes, text
):
    """Telegram's JSON can carry a ``\\ud800`` escape, which PTB decodes to a lone surrogate: no
    symbol, number or word of a command takes one, so the command is refused, and the reply
    quotes the surrogate as its code (``\\ud800``), never as itself: Telegram takes only
    valid UTF-8, and would refuse a reply that quoted it (the fake does too). No watch is made.
    """
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say(text)
        listing = await bot.say("/list")
    bad = next(ch for ch in text if not is_text(ch))
    assert f"\\u{ord(bad):04x}" in reply
    assert is_text(reply)
    assert listing.startswith("No watches")


# ------------------------------------------------------------------ the feed and exchangeInfo


def _frame(*elements: tuple[str, float, int]) -> bytes:
    """A ticker frame written by hand: a symbol may hold a ``\\\\ud800`` escape, as JSON allows
    and orjson (which the fake's own encoder is) refuses to write."""
    parts = [
        f'{{"e":"24hrMiniTicker","E":{time},"s":"{symbol}","c":"{close}","o":"100","h":"120",'
        f'"l":"80","v":"10","q":"1000"}}'
        for symbol, close, time in elements
    ]
    return ("[" + ",".join(parts) + "]").encode()


@pytest.mark.parametrize("stream", ["symbols", "all"])
async def test_a_ticker_whose_symbol_is_a_lone_surrogate_escape_is_counted_and_skipped(stream):
    """orjson refuses a lone surrogate: the element with one is counted (a malformed ticker,
    invalid JSON) and skipped, and the rest of its frame is read (C core and Python parser
    alike); no symbol that no text can hold reaches the engine, an alert or the database, and
    the feed goes on."""
    async with (
        FakeBinance() as fake,
        FeedBot(fake, [feed_rule("crosses above 100")], stream=stream) as bot,
    ):
        await fake.wait_for_subscriptions(
            {"btcusdt@miniTicker"} if stream == "symbols" else {"!miniTicker@arr"}
        )
        await bot.tick(90, T)
        await fake.send_raw(_frame(("BTC\\ud800USDT", 120.0, T + 500), ("BTCUSDT", 110.0, T + 500)))
        await bot.tick(111, T + 1_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 500)]
        assert bot.feed.health().problems == {"malformed ticker (invalid JSON)": 1}
        assert all(is_text(s) for s in bot.engine.symbols())


async def test_an_exchange_info_symbol_that_is_not_valid_unicode_is_left_out_and_logged(caplog):
    """httpx decodes exchangeInfo with the json module, which takes a ``\\\\ud800`` escape: such
    a symbol is left out of the known symbols (it would reach a did-you-mean reply, a stream
    name sent in a SUBSCRIBE, orjson, the database), with a warning naming it by its escape."""
    async with FakeBinance() as fake:
        fake.answer_rest(
            b'{"symbols": [{"symbol": "BTCUSDT", "status": "TRADING"},'
            b' {"symbol": "BAD\\ud800USDT", "status": "TRADING"}]}'
        )
        directory = SymbolDirectory(fast(fake))
        assert await directory.refresh()
    assert directory.known() == {"BTCUSDT"}
    (line,) = logged(caplog, "not valid Unicode")
    assert "BAD\\ud800USDT" in line


# ------------------------------------------------------------------ background writes


async def test_a_chat_moves_write_that_fails_is_logged_by_us_naming_what_was_written(
    tmp_path, fakes, caplog
):
    """A group's alert refused as "upgraded to a supergroup" moves its watches in a background
    write (App._spawn). When that write fails (here a trigger in the real database refuses
    the chat_moves row), our log says so with the chat ids and the error, rather than only
    asyncio's "Task exception was never retrieved" at garbage collection."""
    store = Store(tmp_path / "alertbot.db")
    store.db.execute(
        "CREATE TRIGGER refuse_moves BEFORE INSERT ON chat_moves"
        " BEGIN SELECT RAISE(ABORT, 'the move was refused'); END"
    )
    store.close()
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100", chat=GROUP, chat_type="group")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.migrate_chat(GROUP, SUPERGROUP)
        await bot.tick("BTCUSDT", 90, T_CHAT)
        await bot.tick("BTCUSDT", 110, T_CHAT + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        await wait_until(lambda: bool(logged(caplog, "the move was refused")), 5.0)
    (line,) = logged(caplog, "the move was refused")
    assert str(GROUP) in line
    assert str(SUPERGROUP) in line
    assert "never retrieved" not in caplog.text


# ------------------------------------------------------------------ log lines


def test_a_json_log_line_with_a_lone_surrogate_is_written_with_ufffd():
    """orjson refuses a lone surrogate: a JSON log line quoting one (an alert's text, a user's
    word) is written with U+FFFD in its place, not lost to a "Logging error"."""
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "alertbot.alerts", logging.INFO, __file__, 1, "alert %s", ("x \ud800",), None
    )
    line = formatter.format(record)
    assert orjson.loads(line)["message"] == "alert x \ufffd"
