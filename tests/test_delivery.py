"""Delivery end to end: the notifier against the fake Telegram Bot API and a real webhook
receiver, both on loopback, with the faults injected there.

Times are shrunk through DeliverySettings (backoff, fallback time, timeouts); Telegram's own
limits are kept (1 message/s per chat, 20/min per group, 30/s overall) because the bursts test
exactly those.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from telegram.error import RetryAfter

from alertbot.notify.notifier import Notifier, Sparklines, make_bot
from alertbot.notify.outbox import CONSOLE_BATCH
from alertbot.notify.render import BLOCKS
from alertbot.notify.settings import DeliverySettings
from alertbot.notify.telegram import retry_seconds
from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.model import Channel, Rule
from alertbot.store import Store
from alertbot.ticker import Ticker
from tests.fakes.telegram import FakeTelegram
from tests.fakes.waiting import wait_until
from tests.fakes.webhook import WebhookReceiver

TOKEN = "123456:TEST-token-0123456789abcdef"
T = 1_772_000_000_000
CHAT = 111


def rule(
    id: str = "r1",
    *,
    notify: Sequence[str] = (),
    message: str | None = None,
    symbol: str = "BTCUSDT",
) -> Rule:
    return Rule(
        id=id,
        condition=parse("price > 100"),
        symbols=(symbol,),
        notify=tuple(notify),
        message=message,
    )


def tick(symbol: str = "BTCUSDT", close: float = 101.5, time: int = T) -> Ticker:
    return Ticker(symbol, time, close, 100.0, 110.0, 90.0, 5.0, 500.0, repr(close))


class Harness:
    """A notifier wired to the fakes; ``fire`` makes alerts the way the engine does."""

    def __init__(
        self,
        tmp: Path,
        tg: FakeTelegram | None,
        hook: WebhookReceiver | None,
        *,
        channels: dict[str, Channel] | None = None,
        out: Any = None,
        **changes: Any,
    ) -> None:
        base = DeliverySettings(
            telegram_token=tg.token if tg else None,
            telegram_api_url=tg.api_url if tg else "http://127.0.0.1:9",
            admin_chats=(CHAT,) if tg else (),
            webhook_url=hook.url if hook else None,
            webhook_secret="hook-secret" if hook else None,
            db=str(tmp / "alertbot.db"),
            fallback_after=60.0,
            telegram_timeout=2.0,
            webhook_timeout=2.0,
            backoff_initial=0.05,
            backoff_max=0.2,
        )
        self.settings = dataclasses.replace(base, **changes)
        self.channels = channels or {}
        self.notifier = Notifier(self.settings, self.channels, out=out or _Lines())

    async def __aenter__(self) -> Harness:
        await self.notifier.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.notifier.close()

    def fire(self, rules: Sequence[Rule], tickers: Sequence[Ticker] = ()) -> int:
        engine = Engine(rules)
        alerts = engine.process(tickers or [tick(r.symbols[0]) for r in rules])
        for alert in alerts:
            self.notifier.emit(alert, False)
        return len(alerts)

    def states(self) -> dict[str, str]:
        store = Store(self.settings.db)
        try:
            return {f"{d.alert_id}>{d.destination}": d.state for d in store.deliveries()}
        finally:
            store.close()

    async def settled(self, timeout: float = 10.0) -> None:
        outbox = self.notifier.outbox
        assert outbox is not None

        async def idle() -> bool:
            await outbox.flush()  # stored, handed to the senders, results written
            # nothing being attempted (a fallback would be open), nothing waiting in the
            # database for room in memory
            return not outbox.open and not outbox.parked

        await wait_until(idle, timeout, seen=lambda: f"being attempted: {sorted(outbox.open)}")


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


class _Stuck(_Lines):
    """A stdout that blocks every write until ``release()`` (a terminal nobody scrolls, a pipe
    nobody reads); ``writing`` is set once a write is blocked. A write on the event loop's
    own thread is not blocked (it would stop the test itself), only recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.gate = threading.Event()
        self.loop_thread = threading.get_ident()

    def write(self, text: str) -> int:
        if threading.get_ident() != self.loop_thread:
            self.writing.set()
            self.gate.wait(30)  # bounded: a regression fails instead of hanging the suite
        return super().write(text)

    def release(self) -> None:
        self.gate.set()


# ------------------------------------------------------------------ Telegram


async def test_each_alert_is_one_log_line_and_one_console_line(tmp_path, caplog):
    """The message's own lines (a gap note here, a sparkline) become one log line and one
    line on the console (README: one line each): a line per alert is what tools count and
    grep."""
    caplog.set_level("INFO", logger="alertbot.alerts")
    out = _Lines()
    async with Harness(tmp_path, None, None, out=out) as h:
        engine = Engine([rule()])
        sparklines = h.notifier.sparklines = Sparklines(engine)
        assert engine.process([tick("BTCUSDT", 99.0, T)]) == []
        sparklines.sample()
        (alert,) = engine.process([tick("BTCUSDT", 95.0, T + 1), tick("BTCUSDT", 101.5, T + 2)])
        sparklines.sample()
        h.notifier.emit(alert, True)  # a sparkline line, and a gap note on it
        await h.notifier.outbox.flush()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "alertbot.alerts"]
    assert "\n" not in line
    assert line.startswith("alert r1 BTCUSDT: ")
    assert "feed was down" in line
    assert any(block in line for block in BLOCKS)
    (printed,) = out.lines
    assert printed.count("\n") == 1
    assert printed.endswith(line.removeprefix("alert r1 BTCUSDT: ") + "\n")


async def test_an_alert_reaches_the_admin_chat_as_escaped_html(tmp_path, tg, hook):
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule(message="<b>{symbol}</b> {condition} & {price}")])
        await tg.wait_for_messages(1)
        await h.settled()
    (m,) = tg.messages
    assert (m.chat_id, m.parse_mode) == (CHAT, "HTML")
    assert m.text == "<b>BTCUSDT</b> price &gt; 100 &amp; 101.5"
    assert h.states() == {f"r1:BTCUSDT:{T}>telegram:{CHAT}": "sent"}
    assert hook.deliveries == []


async def test_retry_after_is_honoured(tmp_path, tg, hook):
    tg.fail_next(1, status=429, description="Too Many Requests: retry after 1", retry_after=1)
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule()])
        await tg.wait_for_messages(1, timeout=5)
        await h.settled()
    refused, delivered = tg.requests[-2], tg.requests[-1]
    assert delivered.time - refused.time >= 1.0
    assert len(tg.messages) == 1


@pytest.mark.parametrize("ptb_timedelta", [None, "true", "false"])
async def test_the_wait_a_429_asks_for_is_read_whatever_ptb_timedelta_says(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, ptb_timedelta: str | None
) -> None:
    """``retry_after`` is read as the seconds Telegram sent, without a warning, whether
    PTB_TIMEDELTA (PTB's process-wide opt-in to timedelta time periods) is unset, true or
    false: alertbot neither needs it nor sets it."""
    if ptb_timedelta is None:
        monkeypatch.delenv("PTB_TIMEDELTA", raising=False)
    else:
        monkeypatch.setenv("PTB_TIMEDELTA", ptb_timedelta)
    tg.fail_next(1, status=429, retry_after=7)
    settings = DeliverySettings(
        telegram_token=tg.token, telegram_api_url=tg.api_url, telegram_timeout=2.0
    )
    async with make_bot(settings) as bot:
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(CHAT, "hi")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert retry_seconds(info.value) == 7.0
    assert caught == []


def test_importing_the_bot_leaves_ptb_timedelta_unset() -> None:
    """Importing alertbot (the Telegram sender included) does not change the environment:
    PTB_TIMEDELTA changes PTB for everything in the process, so it is not alertbot's to set."""
    env = {k: v for k, v in os.environ.items() if k != "PTB_TIMEDELTA"}
    code = "import os, alertbot.app, alertbot.notify.telegram; print(os.getenv('PTB_TIMEDELTA'))"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "None"


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried_until_delivered(tmp_path, tg, hook, status):
    tg.fail_next(3, status=status, description="Bad Gateway")
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule()])
        await tg.wait_for_messages(1)
        await h.settled()
    assert len([r for r in tg.requests if r.method == "sendMessage"]) == 4
    assert len(tg.messages) == 1
    assert hook.deliveries == []


async def test_a_timeout_is_retried(tmp_path, tg, hook):
    tg.down(None)  # accepts, never answers
    async with Harness(tmp_path, tg, hook, telegram_timeout=0.2) as h:
        h.fire([rule()])
        await tg.wait_for(lambda: len(tg.requests) >= 3)
        tg.recover()
        await tg.wait_for_messages(1)
        await h.settled()
    assert len(tg.messages) == 1


async def test_slow_answers_are_waited_for_not_retried(tmp_path, tg, hook):
    tg.delay(0.5)
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule()])
        await h.settled()
    assert len(tg.calls("sendMessage")) == 1
    assert h.states() == {f"r1:BTCUSDT:{T}>telegram:{CHAT}": "sent"}


@pytest.mark.parametrize(
    ("status", "description"),
    [(403, "Forbidden: bot was blocked by the user"), (400, "Bad Request: chat not found")],
)
async def test_a_permanent_refusal_goes_to_the_fallback_webhook_at_once(
    tmp_path, tg, hook, status, description
):
    tg.fail_chat(CHAT, status=status, description=description)
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1)
        await h.settled()
    (d,) = hook.deliveries
    body = orjson.loads(d.body)
    assert (body["fallback"], body["chat_id"], body["rule"]) == (True, CHAT, "r1")
    assert d.signature_ok is True
    assert d.headers["idempotency-key"] == body["id"] == f"r1:BTCUSDT:{T}:{CHAT}"
    assert h.states() == {
        f"r1:BTCUSDT:{T}>telegram:{CHAT}": "failed",
        f"r1:BTCUSDT:{T}>fallback:{CHAT}:{hook.url}": "sent",
    }
    assert len([r for r in tg.requests if r.method == "sendMessage"]) == 1  # not retried


async def test_each_chats_fallback_copy_has_its_own_idempotency_key(tmp_path, tg, hook):
    """One alert refused for two chats: two fallback POSTs, keyed ``<alert id>:<chat>`` (header
    and body id), so a receiver de-duplicating by key keeps both, not one chat's copy only."""
    other = 222
    tg.fail_chat(CHAT)
    tg.fail_chat(other)
    async with Harness(tmp_path, tg, hook, admin_chats=(CHAT, other)) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(2)
        await h.settled()
    keys = {(d.json["chat_id"], d.idempotency_key, d.id) for d in hook.deliveries}
    assert keys == {
        (chat, f"r1:BTCUSDT:{T}:{chat}", f"r1:BTCUSDT:{T}:{chat}") for chat in (CHAT, other)
    }
    assert hook.duplicates() == []


async def test_a_template_telegram_cannot_parse_is_sent_as_plain_text(tmp_path, tg, hook):
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule(message="<b>{symbol} is up")])  # the <b> is never closed
        await tg.wait_for_messages(1)
        await h.settled()
    (m,) = tg.messages
    assert (m.parse_mode, m.text) == (None, "<b>BTCUSDT is up")
    assert hook.deliveries == []


async def test_a_bad_template_merged_with_others_makes_only_its_own_alert_plain(tmp_path, tg, hook):
    """Two alerts merged into one message, one template not valid Telegram HTML (a bare '<'):
    Telegram refuses the message, its alerts are sent one by one, and only the one refused by
    itself goes as plain text; the other keeps its formatting."""
    good = rule("good", message="<b>{symbol}</b> is above 100")
    bad = rule("bad", message="{symbol} < 200 and rising")
    async with Harness(tmp_path, tg, hook, chat_interval=0.05) as h:
        h.fire([good, bad])  # one frame: both wait for the same chat, merged
        await h.settled()
    refused = tg.calls("sendMessage")[0]
    assert refused.status == 400
    assert refused.params["text"] == "<b>BTCUSDT</b> is above 100\n\nBTCUSDT < 200 and rising"
    assert {m.text: m.parse_mode for m in tg.messages} == {
        "<b>BTCUSDT</b> is above 100": "HTML",
        "BTCUSDT < 200 and rising": None,
    }
    assert len(tg.messages) == 2
    assert set(h.states().values()) == {"sent"}


async def test_telegram_down_longer_than_the_fallback_time(tmp_path, tg, hook):
    """The fallback gets it after fallback_after; Telegram, once back, too; no third copy."""
    tg.down(502)
    async with Harness(tmp_path, tg, hook, fallback_after=0.3) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1)
        assert tg.messages == []
        tg.recover()
        await tg.wait_for_messages(1)
        await h.settled()
        await asyncio.sleep(0.3)  # nothing more comes
    assert len(hook.accepted) == 1
    assert len(tg.messages) == 1
    assert h.states() == {
        f"r1:BTCUSDT:{T}>telegram:{CHAT}": "sent",
        f"r1:BTCUSDT:{T}>fallback:{CHAT}:{hook.url}": "sent",
    }


async def test_an_outage_logs_a_chats_first_fallback_not_each_one(tmp_path, tg, hook, caplog):
    """Telegram down, 6 alerts for one chat fall back: one warning for the chat (an outage
    during a flood wrote one line an alert), the rest at debug; once Telegram has delivered
    to the chat again, the next outage's first fallback is said again."""
    caplog.set_level(logging.DEBUG, logger="alertbot.notify")
    tg.down(502)
    async with Harness(tmp_path, tg, hook, fallback_after=0.1) as h:
        for k in range(6):
            h.fire([rule(f"r{k}")], [tick(time=T + k)])
        await hook.wait_for_deliveries(6)
        told = [r for r in caplog.records if "to the fallback webhook" in r.getMessage()]
        tg.recover()
        await wait_until(lambda: set(h.states().values()) == {"sent"})
        tg.down(502)
        h.fire([rule("again")], [tick(time=T + 10)])
        await hook.wait_for_deliveries(7)
    warned = [r for r in caplog.records if "to the fallback webhook" in r.getMessage()]
    assert [r.levelname for r in told] == ["WARNING"] + ["DEBUG"] * 5
    assert "until Telegram delivers to it again" in told[0].getMessage()
    assert [r.levelname for r in warned[6:]] == ["WARNING"]


async def test_both_down_then_both_back(tmp_path, tg, hook):
    tg.down(503)
    hook.down("500")
    async with Harness(tmp_path, tg, hook, fallback_after=0.2) as h:
        h.fire([rule()])
        await hook.wait_for(lambda: len(hook.deliveries) >= 2)  # the fallback is being retried
        hook.recover()
        tg.recover()
        await tg.wait_for_messages(1)
        await hook.wait_for_deliveries(1)
        await h.settled()
    assert len(hook.accepted) == 1
    assert hook.duplicates() == []
    assert len(tg.messages) == 1


async def test_a_failing_chat_does_not_delay_another(tmp_path, tg, hook):
    other = 222
    tg.fail_next(50, status=502, chat_id=CHAT)
    async with Harness(tmp_path, tg, hook, admin_chats=(CHAT, other)) as h:
        h.fire([rule()])
        await tg.wait_for(lambda: len(tg.messages_to(other)) == 1, timeout=2)
        assert tg.messages_to(CHAT) == []


async def test_after_one_refusal_as_migrated_a_groups_alerts_go_to_its_supergroup(
    tmp_path, tg, hook
):
    """A group (a rule file's chat) became a supergroup: the refused alert and every later one
    go to the new id, with no second try at the old one; ``on_migrate`` is told once."""
    group, supergroup = -555, -1_000_000_000_555
    tg.migrate_chat(group, supergroup)
    told: list[tuple[int, int]] = []
    async with Harness(tmp_path, tg, hook, admin_chats=(group,), group_interval=0.05) as h:
        assert h.notifier.telegram is not None
        h.notifier.telegram.on_migrate = lambda old, new: told.append((old, new))
        h.fire([rule("r1")])
        await tg.wait_for(lambda: len(tg.messages_to(supergroup)) == 1)
        h.fire([rule("r2")])
        await tg.wait_for(lambda: len(tg.messages_to(supergroup)) == 2)
        await h.settled()
    assert [c.params["chat_id"] for c in tg.calls("sendMessage")].count(group) == 1
    assert told == [(group, supergroup)]
    assert hook.deliveries == []


async def test_an_alert_to_a_forum_whose_general_topic_is_closed_waits_for_it(tmp_path, tg, hook):
    """A forum's General topic closed (TOPIC_CLOSED, for a message in no topic): the alert is
    kept and tried again with backoff, not failed (there is nowhere else in the chat to post,
    and its admins may reopen it); once reopened it is sent."""
    forum = -1_000_000_000_777
    tg.close_topic(forum, 0, "TOPIC_CLOSED")
    async with Harness(tmp_path, tg, hook, admin_chats=(forum,), group_interval=0.05) as h:
        h.fire([rule()])
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 3)  # tried again, and again
        assert h.states() == {f"r1:BTCUSDT:{T}>telegram:{forum}": "pending"}
        tg.reopen_topic(forum, 0)
        await tg.wait_for(lambda: len(tg.messages_to(forum)) == 1)
        await h.settled()
    assert h.states() == {f"r1:BTCUSDT:{T}>telegram:{forum}": "sent"}
    assert hook.deliveries == []


async def test_a_fallback_then_a_move_to_a_supergroup_sends_no_second_fallback(tmp_path, tg, hook):
    """An alert for a group fell back (Telegram late); the group then turned out to be a
    supergroup that refuses the bot for good: no second fallback copy, and once settled no
    fallback marker is left (it is kept by the delivery's destination, which the move leaves
    alone, not by its chat id, which the move changes)."""
    group, supergroup = -555, -1_000_000_000_555
    tg.down(502)
    async with Harness(
        tmp_path, tg, hook, admin_chats=(group,), fallback_after=0.3, group_interval=0.05
    ) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1)
        tg.recover()
        tg.migrate_chat(group, supergroup)
        tg.fail_chat(supergroup, 403, "Forbidden: bot was kicked from the supergroup chat")
        await tg.wait_for(lambda: any(r.status == 403 for r in tg.calls("sendMessage")))
        await h.settled()
        assert len(hook.deliveries) == 1
        assert h.notifier.outbox is not None
        assert h.notifier.outbox._fallbacks == set()
    assert h.states() == {
        f"r1:BTCUSDT:{T}>telegram:{group}": "failed",
        f"r1:BTCUSDT:{T}>fallback:{group}:{hook.url}": "sent",
    }


# ------------------------------------------------------------------ bursts and limits


async def test_a_burst_of_500_alerts_to_one_chat_is_merged_and_within_the_limits(
    tmp_path, tg, hook
):
    rules = [rule(f"r{i}", message="{rule} {symbol} {price}") for i in range(500)]
    async with Harness(tmp_path, tg, hook) as h:
        assert h.fire(rules) == 500
        await h.settled(timeout=30)
    texts = [line for m in tg.messages for line in m.text.split("\n\n")]
    assert sorted(texts) == sorted(f"r{i} BTCUSDT 101.5" for i in range(500))
    assert all(len(m.text) <= 4096 for m in tg.messages)
    assert len(tg.messages) <= 3  # merged: about 8.5 KB of text
    assert tg.limit_violations() == []


async def test_a_burst_of_500_alerts_over_50_chats(tmp_path, tg, hook):
    rules = [
        rule(f"r{i}", notify=[f"chat:{1000 + i % 50}"], message="{rule} {price}")
        for i in range(500)
    ]
    async with Harness(tmp_path, tg, hook) as h:
        assert h.fire(rules) == 500
        await h.settled(timeout=30)
    assert len(tg.messages) == 50  # one merged message per chat
    for chat in range(1000, 1050):
        (m,) = tg.messages_to(chat)
        assert sorted(m.text.split("\n\n")) == sorted(
            f"r{i} 101.5" for i in range(500) if 1000 + i % 50 == chat
        )
    assert tg.limit_violations() == []


async def test_a_group_gets_at_most_20_messages_a_minute(tmp_path, tg, hook):
    group = -1001234
    async with Harness(tmp_path, tg, hook, admin_chats=(group,)) as h:
        for n in range(3):  # three separate frames: three messages, 3 s apart
            h.fire([rule(f"g{n}")], [tick(time=T + n)])
            await asyncio.sleep(0.01)
        await h.settled(timeout=15)
    times = [m.time for m in tg.messages_to(group)]
    assert len(times) >= 2
    assert all(b - a >= 2.9 for a, b in itertools.pairwise(times))
    assert tg.limit_violations() == []


# ------------------------------------------------------------------ webhook as a channel


async def test_a_webhook_channel_gets_signed_json(tmp_path, hook):
    channels = {"desk": Channel("desk", webhook=hook.url, secret_env="DESK_SECRET")}
    async with WebhookReceiver(secret="desk-secret") as desk:
        channels = {"desk": Channel("desk", webhook=desk.url, secret_env="DESK_SECRET")}
        h = Harness(tmp_path, None, hook, channels=channels)
        h.notifier.router.env = {"DESK_SECRET": "desk-secret"}
        async with h:
            h.fire([rule(notify=["desk"])])
            await desk.wait_for_deliveries(1)
            await h.settled()
        (d,) = desk.deliveries
    body = orjson.loads(d.body)
    assert body == {
        "version": 1, "id": f"r1:BTCUSDT:{T}", "rule": "r1", "symbol": "BTCUSDT",
        "condition": "price > 100", "time": T, "price": "101.5",
        "message": body["message"],
    }  # fmt: skip
    assert body["message"].startswith("BTCUSDT price > 100: price 101.5")
    assert d.signature_ok is True
    assert hook.deliveries == []


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_a_webhook_4xx_is_permanent(tmp_path, hook, status):
    hook.respond_with(status)
    async with Harness(tmp_path, None, hook) as h:
        h.fire([rule()])
        await hook.wait_for(lambda: len(hook.deliveries) == 1)
        await h.settled()
        await asyncio.sleep(0.2)
    assert len(hook.deliveries) == 1
    assert h.states() == {f"r1:BTCUSDT:{T}>webhook:{hook.url}": "failed"}


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_a_webhook_408_429_and_5xx_are_retried(tmp_path, hook, status):
    hook.respond_with(status, status)
    async with Harness(tmp_path, None, hook) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1)
        await h.settled()
    assert [d.status for d in hook.deliveries] == [status, status, 200]
    assert len({d.headers["idempotency-key"] for d in hook.deliveries}) == 1


async def test_a_webhook_retry_after_is_honoured(tmp_path, hook):
    hook.respond_with(503, retry_after=1)
    async with Harness(tmp_path, None, hook, backoff_max=2.0) as h:  # within the cap
        h.fire([rule()])
        await hook.wait_for_deliveries(1, timeout=5)
    first, second = hook.deliveries
    assert second.time - first.time >= 1.0


@pytest.mark.parametrize("mode", ["reset", "garbage", "hang"])
async def test_a_broken_webhook_is_retried_and_never_crashes_the_sender(tmp_path, hook, mode):
    hook.down(mode)
    async with Harness(tmp_path, None, hook, webhook_timeout=0.2) as h:
        h.fire([rule()])
        await hook.wait_for(lambda: len(hook.deliveries) >= 2)
        hook.recover()
        await hook.wait_for_deliveries(1)
        await h.settled()
    assert h.states() == {f"r1:BTCUSDT:{T}>webhook:{hook.url}": "sent"}


# ------------------------------------------------------------------ floods and backlogs


def console_and_chat_rules(n: int, chat: int = 333) -> list[Rule]:
    """``n`` rules whose alerts go to the console (no notify, no admin chats, no webhook), then
    one rule for a Telegram chat, the last to fire."""
    return [rule(f"c{i}", message="{rule} {price}") for i in range(n)] + [
        rule("to-chat", notify=[f"chat:{chat}"])
    ]


async def test_a_blocked_console_does_not_delay_a_telegram_alert(tmp_path, tg):
    out = _Stuck()
    async with Harness(tmp_path, tg, None, admin_chats=(), out=out) as h:
        assert h.fire(console_and_chat_rules(200)) == 201
        await tg.wait_for(lambda: len(tg.messages_to(333)) == 1, timeout=10)
        # the console is still stuck on its first write: nothing of it printed, all 200 open
        assert out.writing.is_set()
        assert out.lines == []
        outbox = h.notifier.outbox
        assert outbox is not None
        assert sum(1 for _, dest in outbox.open if dest == "console") == 200
        out.release()
        await h.settled()
    printed = "".join(out.lines).splitlines()
    assert printed == [f"2026-02-25 06:13:20 UTC  c{i}  c{i} 101.5" for i in range(200)]
    assert set(h.states().values()) == {"sent"}


async def test_console_lines_that_wait_together_are_written_together(tmp_path, tg):
    out = _Stuck()
    async with Harness(tmp_path, tg, None, admin_chats=(), out=out) as h:
        h.fire([rule("first")])
        await asyncio.to_thread(out.writing.wait, 10)  # the console thread is in its write
        h.fire([rule(f"c{i}") for i in range(300)], [tick(time=T + 1)])
        await h.notifier.outbox.flush()  # stored and handed to the console
        out.release()
        await h.settled()
    assert len(out.lines) == 2  # one write for the first alert, one for the 300 behind it
    assert len("".join(out.lines).splitlines()) == 301


async def test_a_flood_for_the_console_is_stored_in_slices_after_other_alerts(tmp_path, tg):
    """The Telegram alert, fired last, is in the outbox's first transaction; the console's
    1000 are stored at most CONSOLE_BATCH to a transaction (SQLite's own statement trace)."""
    async with Harness(tmp_path, tg, None, admin_chats=()) as h:
        store = h.notifier.store
        assert store is not None
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        h.fire(console_and_chat_rules(1000))
        await h.settled(timeout=30)
        store.db.set_trace_callback(None)
    transactions: list[list[str]] = []
    for statement in statements:
        if statement.startswith("BEGIN"):
            transactions.append([])
        elif transactions:
            transactions[-1].append(statement)
    inserts = [
        " ".join(st for st in t if st.startswith("INSERT OR IGNORE INTO deliveries"))
        for t in transactions
    ]
    assert "'telegram:333'" in inserts[0]
    per_transaction = [i.count("'console'") for i in inserts]
    assert sum(per_transaction) == 1000
    assert max(per_transaction) == CONSOLE_BATCH
    assert h.states()[f"to-chat:BTCUSDT:{T}>telegram:333"] == "sent"


async def test_a_hanging_webhook_does_not_delay_a_telegram_alert(tmp_path, tg, hook):
    hook.down("hang")
    channels = {"desk": Channel("desk", webhook=hook.url)}
    rules = [rule(f"w{i}", notify=["desk"]) for i in range(50)] + [
        rule("to-chat", notify=["chat:333"])
    ]
    async with Harness(tmp_path, tg, hook, channels=channels, webhook_timeout=30.0) as h:
        h.fire(rules)
        await tg.wait_for(lambda: len(tg.messages_to(333)) == 1, timeout=10)
        assert hook.accepted == []
        outbox = h.notifier.outbox
        assert outbox is not None
        await tg.wait_for(lambda: all(dest != "telegram:333" for _, dest in outbox.open))
        await outbox.flush()
        states = h.states()
        hook.recover()
    assert states[f"to-chat:BTCUSDT:{T}>telegram:333"] == "sent"
    assert sum(1 for s in states.values() if s == "pending") == 50  # the webhook's, waiting


async def test_a_console_line_not_yet_written_at_shutdown_is_printed_after_the_restart(tmp_path):
    out = _Stuck()
    async with Harness(tmp_path, None, None, out=out) as h:
        h.fire([rule()])
        await asyncio.to_thread(out.writing.wait, 10)
    assert h.states() == {f"r1:BTCUSDT:{T}>console": "pending"}
    out.release()
    async with Harness(tmp_path, None, None) as again:
        await again.settled()
    assert isinstance(again.notifier.out, _Lines)
    assert len(again.notifier.out.lines) == 1
    assert again.states() == {f"r1:BTCUSDT:{T}>console": "sent"}


async def test_an_alert_for_the_console_only_is_not_rendered_as_html(tmp_path, tg):
    async with Harness(tmp_path, tg, None, admin_chats=()) as h:
        h.fire(console_and_chat_rules(1))
        await h.settled()
    store = Store(h.settings.db)
    try:
        html = dict(store.db.execute("SELECT rule, html FROM alerts"))
    finally:
        store.close()
    assert html["c0"] == ""  # no Telegram chat gets it
    assert html["to-chat"].startswith("BTCUSDT price &gt; 100: price 101.5")
    assert len(tg.messages_to(333)) == 1


# ------------------------------------------------------------------ durability


async def test_undelivered_alerts_are_resumed_at_the_next_start(tmp_path, tg, hook):
    tg.down(502)
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule()])
        await tg.wait_for(lambda: len(tg.requests) >= 2)
    assert h.states() == {f"r1:BTCUSDT:{T}>telegram:{CHAT}": "pending"}
    tg.recover()
    async with Harness(tmp_path, tg, hook) as again:
        await tg.wait_for_messages(1)
        await again.settled()
    assert again.states() == {f"r1:BTCUSDT:{T}>telegram:{CHAT}": "sent"}


async def test_the_console_is_the_default_when_nothing_else_is_configured(tmp_path):
    async with Harness(tmp_path, None, None) as h:
        h.fire([rule()])
        await h.settled()
    out = h.notifier.out
    assert isinstance(out, _Lines)
    assert out.lines == [
        "2026-02-25 06:13:20 UTC  r1  BTCUSDT price > 100: price 101.5 (+1.50% 24h) at "
        "2026-02-25 06:13:20 UTC [r1]\n"
    ]
    assert h.states() == {f"r1:BTCUSDT:{T}>console": "sent"}


async def test_a_webhook_that_does_not_resolve_is_retried_then_given_up_and_reported(
    tmp_path, caplog
):
    channels = {"gone": Channel("gone", webhook="http://alertbot-test.invalid/hook")}
    async with Harness(tmp_path, None, None, channels=channels, give_up_after=0.3) as h:
        h.fire([rule(notify=["gone"])])
        await h.settled()
    store = Store(h.settings.db)
    (row,) = store.deliveries()
    store.close()
    assert row.state == "failed"
    assert row.attempts >= 2
    assert row.last_error is not None
    assert row.last_error.startswith("gave up: ConnectError")
    assert "giving up on alert r1:BTCUSDT" in caplog.text


# ------------------------------------------------------------------ bookkeeping


async def test_a_delivered_alert_leaves_no_fallback_timer(tmp_path, tg, hook):
    """Each Telegram delivery arms a fallback timer; a settled one cancels it, so a flood does
    not keep fallback_after seconds' worth of timers (and their deliveries) alive."""
    async with Harness(tmp_path, tg, hook, fallback_after=60.0) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        h.fire([rule(f"r{i}") for i in range(20)])
        await outbox.flush()
        assert outbox._timers  # armed while being attempted
        await h.settled()
        assert outbox._timers == {}
    assert set(h.states().values()) == {"sent"}
    assert hook.deliveries == []


async def test_fallen_back_alerts_leave_no_marker_once_telegram_settles(tmp_path, tg, hook):
    """A delivery that fell back is marked so that it never falls back twice; once its Telegram
    delivery settles (sent late or refused for good) the marker goes, so a long Telegram outage
    does not leave one behind per alert for the life of the process."""
    tg.down(502)
    async with Harness(tmp_path, tg, hook, fallback_after=0.2) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        h.fire([rule(f"r{i}") for i in range(5)])
        await hook.wait_for_deliveries(5)
        assert len(outbox._fallbacks) == 5  # fell back, Telegram still trying
        tg.recover()  # and, in the same step, refuses the chat for good
        tg.fail_chat(CHAT, status=403, description="Forbidden: bot was blocked by the user")
        await h.settled()
        assert outbox._fallbacks == set()
    assert len(hook.accepted) == 5  # each once: the refusal did not send a second copy
    states = h.states()
    assert sorted(v for k, v in states.items() if ">telegram:" in k) == ["failed"] * 5


async def test_the_telegram_sender_keeps_nothing_of_the_chats_it_is_done_with(tmp_path, tg, hook):
    """Once a chat's alerts are settled (sent, sent after a retry, refused for good) and its
    spacing is over, the sender keeps no entry for it: its tables do not grow with every chat
    the bot ever sent to, and its scheduler does not scan them at each wake-up."""
    chats = range(1000, 1050)
    tg.fail_chat(1000)  # refused for good
    tg.fail_next(1, status=502, chat_id=1001)  # sent at the second try
    settings = {"chat_interval": 0.01, "overall_per_second": 1000}
    async with Harness(tmp_path, tg, hook, **settings) as h:
        sender = h.notifier.telegram
        assert sender is not None
        h.fire([rule(f"r{chat}", notify=[f"chat:{chat}"]) for chat in chats])
        await h.settled()
        assert len(tg.messages) == 49
        await asyncio.sleep(0.05)  # every chat's spacing (0.01 s) is over
        h.fire([rule("later", notify=["chat:2000"])], [tick(time=T + 1)])  # a wake-up after it
        await h.settled()
        assert (sender._queues, sender._order, sender._failures) == ({}, {}, {})
        assert set(sender._next_ok) <= {2000}
        assert sender.pending() == 0


async def test_outbox_depth_counts_alerts_not_yet_stored(tmp_path, tg, hook):
    """The depth (the /metrics gauge and /status) counts a delivery from the moment it is
    submitted, not only once the writer has stored it; it returns to 0 when all settled."""
    tg.down(502)
    async with Harness(tmp_path, tg, hook) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        h.fire([rule("r1"), rule("r2"), rule("r3")])
        assert outbox.depth == 3  # nothing written yet: no await since the alerts came
        await outbox.flush()
        assert outbox.depth == 3  # stored, being attempted (Telegram is down)
        tg.recover()
        await h.settled()
        assert outbox.depth == 0
    assert list(h.states().values()) == ["sent"] * 3
