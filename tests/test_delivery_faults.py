"""Delivery under faults the happy paths never meet: a webhook URL httpx cannot use, a sender
that stops, a fallback across restarts, a receiver's Retry-After out of bounds, a database that
refuses writes at shutdown, a receiver that redirects or whose certificate fails verification.

Against the fake Telegram Bot API, the webhook receiver and a real SQLite file, as
tests/test_delivery.py; times are shrunk through DeliverySettings.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time

import pytest

from alertbot.errors import ConfigError
from alertbot.notify import outbox as outbox_module
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.model import Channel
from alertbot.store import AlertRecord, DeliveryRow, Store
from tests.fakes.telegram import FakeTelegram
from tests.fakes.waiting import wait_until
from tests.fakes.webhook import WebhookReceiver, self_signed_tls
from tests.test_delivery import CHAT, Harness, T, _Lines, rule

BAD_PORT = "http://127.0.0.1:70000/hook"


def rows(h: Harness) -> dict[str, DeliveryRow]:
    """The deliveries in the database, by ``alert id>destination``."""
    store = Store(h.settings.db)
    try:
        return {f"{d.alert_id}>{d.destination}": d for d in store.deliveries()}
    finally:
        store.close()


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


# ------------------------------------------------------------------ a webhook sender that stops


@pytest.mark.parametrize("port", ["0", "70000", "99999999999", "http"])
def test_a_webhook_url_with_a_port_out_of_range_is_refused_at_start_up(port: str) -> None:
    """ALERTBOT_WEBHOOK_URL with a port outside 1..65535 stops the start, naming the variable
    (httpx would take it and fail only when connecting, with an error not its own)."""
    with pytest.raises(ConfigError, match="ALERTBOT_WEBHOOK_URL: the port must be"):
        DeliverySettings.from_env({"ALERTBOT_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook"})


def test_a_webhook_url_with_a_good_port_or_none_is_taken() -> None:
    """The port check lets ordinary URLs through."""
    for url in ("http://127.0.0.1:1/hook", "https://example.com:65535/x", "https://[::1]/x"):
        assert DeliverySettings.from_env({"ALERTBOT_WEBHOOK_URL": url}).webhook_url == url


async def test_a_webhook_url_ending_in_a_slash_is_posted_to_as_given(tmp_path):
    """ALERTBOT_WEBHOOK_URL ``.../alerts/`` gets its POSTs at ``/alerts/``: a receiver serving
    only that path answered the ``/alerts`` it got instead with 404, every alert lost for good
    (only the API roots, which paths are appended to, lose a trailing '/')."""
    async with WebhookReceiver(secret="hook-secret", path="/alerts/") as hook:
        url = DeliverySettings.from_env({"ALERTBOT_WEBHOOK_URL": hook.url}).webhook_url
        async with Harness(tmp_path, None, hook, webhook_url=url) as h:
            h.fire([rule()])
            await h.settled()
    assert [(d.path, d.status) for d in hook.deliveries] == [("/alerts/", 200)]


async def test_a_webhook_url_httpx_cannot_use_fails_for_good_and_its_queue_goes_on(tmp_path, hook):
    """A rule's webhook with a port out of range (the rule loader lets it through): each of its
    deliveries fails for good with a clear error, the URL's sender keeps going, and other
    webhooks are untouched."""
    channels = {
        "bad": Channel("bad", webhook=BAD_PORT),
        "good": Channel("good", webhook=hook.url),
    }
    async with Harness(tmp_path, None, hook, channels=channels) as h:
        h.fire([rule("r1", notify=["bad"]), rule("r2", notify=["good"], symbol="ETHUSDT")])
        await h.settled(timeout=3)
        h.fire([rule("r3", notify=["bad"], symbol="SOLUSDT")])  # the same sender, later
        await h.settled(timeout=3)
        sender = h.notifier.webhook
        assert sender is not None
        assert not sender._workers[BAD_PORT].done()
    got = rows(h)
    for r in (f"r1:BTCUSDT:{T}", f"r3:SOLUSDT:{T}"):
        d = got[f"{r}>webhook:{BAD_PORT}"]
        assert d.state == "failed"
        assert "port 70000 is not in 1..65535" in (d.last_error or "")
    assert got[f"r2:ETHUSDT:{T}>webhook:{hook.url}"].state == "sent"
    assert [d.id for d in hook.accepted] == [f"r2:ETHUSDT:{T}"]


async def test_an_unexpected_send_error_is_retried_with_backoff_and_logged_once(
    tmp_path, hook, caplog, monkeypatch
):
    """An error that is not httpx's own (here anyio's ExceptionGroup around an OverflowError,
    from a proxy whose port is out of range, which httpx takes from HTTP_PROXY) leaves the
    delivery pending, retried with the normal backoff, and is logged once, not per attempt."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:70000")  # read when the client is made
    async with Harness(tmp_path, None, hook, backoff_initial=0.04, backoff_max=0.08) as h:
        start = time.monotonic()
        h.fire([rule("r1")])
        key = f"r1:BTCUSDT:{T}>webhook:{hook.url}"
        outbox = h.notifier.outbox
        assert outbox is not None
        await wait_until(lambda: outbox.outcomes.get(("webhook", "pending"), 0) >= 4, 3.0)
        elapsed = time.monotonic() - start
        await outbox.flush()
        d = rows(h)[key]
        assert d.state == "pending"
        assert d.last_error == "OverflowError: connect(): port must be 0-65535."
        # each wait is at least backoff_initial / 2 (jitter): no hot loop
        assert d.attempts <= elapsed / 0.02 + 2
    assert hook.deliveries == []
    assert len(errors(caplog, "unexpected error")) == 1


async def test_a_webhook_sender_that_stops_is_started_again(tmp_path, hook, caplog):
    """A URL's worker that ends without close() (cancelled here; a bug would do the same) is
    started again and logged: the delivery it was retrying goes out, and so do later ones."""
    hook.respond_with(503, 503, 503)
    async with Harness(tmp_path, None, hook, backoff_initial=0.1, backoff_max=0.1) as h:
        h.fire([rule("r1")])
        await hook.wait_for(lambda: len(hook.deliveries) >= 1)
        sender = h.notifier.webhook
        assert sender is not None
        sender._workers[hook.url].cancel()  # while it is retrying r1
        await hook.wait_for_deliveries(1)  # r1, with nothing enqueued since
        h.fire([rule("r2", symbol="ETHUSDT")])
        await hook.wait_for_deliveries(2)
        await h.settled()
    assert [d.id for d in hook.accepted] == [f"r1:BTCUSDT:{T}", f"r2:ETHUSDT:{T}"]
    assert len(errors(caplog, "the sender stopped (cancelled)")) == 1


# ------------------------------------------------------------------ fallback across restarts


async def test_a_fallback_survives_telegram_retries_and_a_restart_without_a_second_copy(
    tmp_path, tg, hook
):
    """Telegram's retries after the fallback keep the row 'fell_back' in the database, so a
    restart while Telegram is still down sends no second copy to the fallback webhook."""
    tg.down(502)
    async with Harness(tmp_path, tg, hook, fallback_after=0.3) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1)
        n = len(tg.calls("sendMessage"))
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= n + 2)  # retried since
        assert h.notifier.outbox is not None
        await h.notifier.outbox.flush()
    assert h.states()[f"r1:BTCUSDT:{T}>telegram:{CHAT}"] == "fell_back"
    async with Harness(tmp_path, tg, hook, fallback_after=0.3) as again:
        outbox = again.notifier.outbox
        assert outbox is not None
        n = len(tg.calls("sendMessage"))
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= n + 2)  # resumed, retried
        await outbox.flush()
        assert [k for k in outbox.open if k[1].startswith("fallback:")] == []
        await asyncio.sleep(0.2)  # a second POST would be on its way by now
    assert again.states()[f"r1:BTCUSDT:{T}>telegram:{CHAT}"] == "fell_back"
    assert len(hook.deliveries) == 1


async def test_a_fallback_keeps_its_idempotency_key_across_retries_and_a_restart(
    tmp_path, tg, hook
):
    """A fallback refused by its receiver, retried, then resumed after a restart is POSTed
    with one and the same key throughout (``<alert id>:<chat>``): the receiver can tell the
    copies of one delivery from the deliveries for other chats."""
    tg.fail_chat(CHAT)
    hook.down("500")
    async with Harness(tmp_path, tg, hook) as h:
        h.fire([rule()])
        await hook.wait_for(lambda: len(hook.deliveries) >= 2)
    tg.recover()
    hook.recover()
    async with Harness(tmp_path, tg, hook) as again:
        await hook.wait_for_deliveries(1)
        await again.settled()
    assert {d.idempotency_key for d in hook.deliveries} == {f"r1:BTCUSDT:{T}:{CHAT}"}
    assert again.states()[f"r1:BTCUSDT:{T}>fallback:{CHAT}:{hook.url}"] == "sent"


async def test_a_fallback_stored_before_is_not_sent_again(
    tmp_path, tg: FakeTelegram, hook: WebhookReceiver
):
    """A database where the fallback was sent but the Telegram row says 'pending' (as an
    earlier version left it): at the restart the due fallback finds its row and is not
    dispatched again; the Telegram row is put right ('fell_back')."""
    alert_id = f"r1:BTCUSDT:{T}"
    created = time.time() - 10  # the fallback is due at once
    store = Store(tmp_path / "alertbot.db")
    alert = AlertRecord(
        alert_id, "r1", "BTCUSDT", T, "101.5", "price > 100", "m", "m", False, created
    )
    store.write(
        [alert],
        [
            DeliveryRow(alert_id, f"telegram:{CHAT}", "pending", 5, "NetworkError", CHAT, created),
            DeliveryRow(alert_id, f"fallback:{CHAT}:{hook.url}", "sent", 1, None, CHAT, created),
        ],
        [],
    )
    store.close()
    tg.down(502)
    async with Harness(tmp_path, tg, hook, fallback_after=0.3) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 2)
        await outbox.flush()  # the due fallback is written, or found written before
        assert [k for k in outbox.open if k[1].startswith("fallback:")] == []
        await asyncio.sleep(0.2)
    assert hook.deliveries == []
    assert h.states() == {
        f"{alert_id}>telegram:{CHAT}": "fell_back",
        f"{alert_id}>fallback:{CHAT}:{hook.url}": "sent",
    }


# ------------------------------------------------------------------ errors quoting a page


async def test_an_error_quoting_a_whole_page_is_stored_cut_short(tmp_path, tg):
    """Telegram's front end answering 502 with its HTML page: the error, which quotes the
    page, is stored as the delivery's last_error cut to 200 characters."""
    tg.down(502, page=True)
    async with Harness(tmp_path, tg, None) as h:
        h.fire([rule()])
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 2)
        assert h.notifier.outbox is not None
        await h.notifier.outbox.flush()
    error = rows(h)[f"r1:BTCUSDT:{T}>telegram:{CHAT}"].last_error or ""
    assert error.startswith("NetworkError: Bad Gateway (502). Parsing the server response b'<ht")
    assert (len(error), error[-1]) == (200, "…")


# ------------------------------------------------------------------ resumed without a token


async def pending_for_telegram(tmp_path, tg: FakeTelegram, n: int = 1) -> None:
    """Leave ``n`` alerts for the admin chat pending in the database (Telegram down)."""
    tg.down(502)
    async with Harness(tmp_path, tg, None) as h:
        h.fire([rule(f"r{i}") for i in range(n)])
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 1)
    assert set(h.states().values()) == {"pending"}
    tg.recover()


async def test_a_telegram_alert_resumed_without_a_token_goes_to_the_fallback_webhook(
    tmp_path, tg, hook
):
    """Restarted without a Telegram token, a pending Telegram delivery goes to the fallback
    webhook, as a new alert for that chat would; it is not printed to the console and
    recorded 'sent'. Its row stays open ('fell_back'): Telegram gets it once the token is
    back."""
    await pending_for_telegram(tmp_path, tg)
    out = _Lines()
    async with Harness(tmp_path, None, hook, out=out) as h:
        await hook.wait_for_deliveries(1)
        await h.settled()
    (d,) = hook.deliveries
    assert (d.json["fallback"], d.json["chat_id"]) == (True, CHAT)
    assert out.lines == []
    assert h.states() == {
        f"r0:BTCUSDT:{T}>telegram:{CHAT}": "fell_back",
        f"r0:BTCUSDT:{T}>fallback:{CHAT}:{hook.url}": "sent",
    }
    async with Harness(tmp_path, tg, hook) as again:
        await tg.wait_for_messages(1)
        await again.settled()
    assert again.states()[f"r0:BTCUSDT:{T}>telegram:{CHAT}"] == "sent"
    assert len(hook.deliveries) == 1


async def test_telegram_alerts_resumed_without_a_token_fall_back_a_page_at_a_time_each_once(
    tmp_path, tg, hook, monkeypatch, caplog
):
    """Restarted without a Telegram token, the pending Telegram deliveries are not read into
    memory all at once (a long outage's backlog may not fit): they fall back a page at a time
    (2 here), each page stored before the next is read. All 5 reach the fallback webhook, each
    once, in the order they fired; one log line counts them."""
    monkeypatch.setattr(outbox_module, "SWEEP_BATCH", 2)
    await pending_for_telegram(tmp_path, tg, 5)
    caplog.clear()
    async with Harness(tmp_path, None, hook) as h:
        await hook.wait_for_deliveries(5)
        await h.settled()
    assert [d.json["rule"] for d in hook.deliveries] == [f"r{i}" for i in range(5)]
    states = h.states()
    assert [s for k, s in states.items() if ">telegram:" in k] == ["fell_back"] * 5
    assert [s for k, s in states.items() if ">fallback:" in k] == ["sent"] * 5
    (line,) = [m for r in caplog.records if "no Telegram token" in (m := r.getMessage())]
    assert line.startswith("outbox: 5 undelivered Telegram alert deliveries and no Telegram")
    assert "5 sent to the fallback webhook" in line


async def test_telegram_alerts_resumed_with_no_token_nor_fallback_wait_and_say_so_once(
    tmp_path, tg, caplog
):
    """Restarted with neither a Telegram token nor a fallback webhook, pending Telegram
    deliveries stay pending (one log line says why), not printed to the console and recorded
    'sent'; at the next start with the token they go out."""
    await pending_for_telegram(tmp_path, tg, 3)
    out = _Lines()
    caplog.clear()
    async with Harness(tmp_path, None, None, out=out) as h:
        await h.settled()
    assert out.lines == []
    assert set(h.states().values()) == {"pending"}
    (line,) = [m for r in caplog.records if "wait for a Telegram token" in (m := r.getMessage())]
    assert line.startswith("outbox: 3 undelivered Telegram alert deliveries")
    async with Harness(tmp_path, tg, None) as again:
        await again.settled()
    assert set(again.states().values()) == {"sent"}
    assert len(tg.messages) == 1  # the three, merged


# ------------------------------------------------------------------ Retry-After out of bounds


@pytest.mark.parametrize(
    "value", ["0", "nan", "-5", "Mon, 01 Jan 2001 00:00:00 GMT"], ids=["0", "nan", "neg", "past"]
)
async def test_a_webhook_retry_after_of_zero_or_nonsense_still_backs_off(tmp_path, hook, value):
    """Retry-After 0, nan, negative or a date gone by is no reason to hammer the receiver:
    the normal backoff applies."""
    hook.respond_with(503, 503, 503, retry_after=value)
    async with Harness(tmp_path, None, hook, backoff_initial=0.2, backoff_max=0.2) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1)
        await h.settled()
    times = [d.time for d in hook.deliveries]
    assert [d.status for d in hook.deliveries] == [503, 503, 503, 200]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.09  # 0.2 jittered


async def test_a_webhook_retry_after_is_capped_at_backoff_max(tmp_path, hook):
    """A Retry-After of years waits backoff_max at most: the URL's queue is not parked."""
    hook.respond_with(503, retry_after=10**9)
    async with Harness(tmp_path, None, hook, backoff_initial=0.05, backoff_max=0.3) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1, timeout=3)
        await h.settled()
    first, second = hook.deliveries
    assert second.time - first.time >= 0.25  # backoff_max (0.3), more than the backoff


async def test_a_webhook_retry_after_past_the_give_up_time_gives_up_on_time(tmp_path, hook):
    """A Retry-After beyond the give-up time waits only until then: the delivery is tried once
    more and given up, not left pending for the Retry-After."""
    hook.respond_with(503, 503, 503, retry_after=10**9)
    settings = {"backoff_initial": 0.05, "backoff_max": 60.0, "give_up_after": 0.5}
    async with Harness(tmp_path, None, hook, **settings) as h:
        h.fire([rule()])
        await h.settled(timeout=3)
    (d,) = rows(h).values()
    assert d.state == "failed"
    assert (d.last_error or "").startswith("gave up: HTTP 503")
    assert all(d.status == 503 for d in hook.deliveries)  # given up before a 4th try (200)


async def test_a_webhook_retry_after_within_bounds_is_honoured(tmp_path, hook):
    """A Retry-After longer than the backoff and within backoff_max is waited for in full."""
    hook.respond_with(503, retry_after=0.5)
    async with Harness(tmp_path, None, hook, backoff_initial=0.05, backoff_max=1.0) as h:
        h.fire([rule()])
        await hook.wait_for_deliveries(1, timeout=3)
    first, second = hook.deliveries
    assert second.time - first.time >= 0.5


# ------------------------------------------------------------------ a URL with a password


async def test_a_webhook_urls_password_is_used_but_never_logged_nor_stored(tmp_path, hook, caplog):
    """``http://user:PASSWORD@host/hook?key=v``: the receiver gets Basic auth and the query,
    and no log line or stored error shows the password (a retry's warning and a URL that can
    never be posted to quoted the URL whole)."""
    password = "pa55-w0rd-xyzzy"
    url = hook.url.replace("http://", f"http://alice:{password}@") + "?key=v"
    bad = f"http://alice:{password}@127.0.0.1:70000/hook"
    channels = {"bad": Channel("bad", webhook=bad)}
    hook.respond_with(500)
    caplog.set_level(logging.DEBUG, logger="alertbot")
    async with Harness(tmp_path, None, hook, webhook_url=url, channels=channels) as h:
        h.fire([rule("r1"), rule("r2", notify=["bad"], symbol="ETHUSDT")])
        await hook.wait_for_deliveries(1)
        await h.settled()
    assert [(d.status, d.query) for d in hook.deliveries] == [(500, "key=v"), (200, "key=v")]
    assert (
        hook.deliveries[-1].headers["authorization"]
        == "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()
    )
    got = rows(h)
    assert got[f"r2:ETHUSDT:{T}>webhook:{bad}"].state == "failed"
    shown = [r.getMessage() for r in caplog.records] + [d.last_error or "" for d in got.values()]
    assert any("alice:***@127.0.0.1:70000" in line for line in shown)
    assert any("HTTP 500" in line and "alice:***@" in line for line in shown)
    assert [line for line in shown if password in line] == []


# ------------------------------------------------------------------ answers that never end


async def test_a_webhook_answer_trickling_in_for_ever_is_a_timeout_and_retried(tmp_path, hook):
    """A receiver that sends a header line every 10 ms and never ends its answer: each read is
    quick, so only a deadline on the whole request ends it. It is a timeout after
    webhook_timeout, retried; the URL's queue was held up for ever before."""
    hook.down("trickle")
    async with Harness(tmp_path, None, hook, webhook_timeout=0.3) as h:
        h.fire([rule()])
        await hook.wait_for(lambda: len(hook.deliveries) >= 2)
        hook.recover()
        await hook.wait_for_deliveries(1)
        await h.settled()
    got = rows(h)[f"r1:BTCUSDT:{T}>webhook:{hook.url}"]
    assert got.state == "sent"
    assert got.attempts >= 3


async def test_a_webhook_200_whose_body_never_ends_is_sent_without_reading_it_all(tmp_path, hook):
    """A receiver answering 200 with a body that never ends: the 200 is the answer, the body
    is read only up to a bound. Before, the sender read it into memory for ever (650 MB in
    4 s from a fast one) and the URL's queue never moved."""
    hook.down("endless")
    async with Harness(tmp_path, None, hook, webhook_timeout=60.0) as h:
        h.fire([rule()])
        await h.settled(timeout=5)
    assert h.states() == {f"r1:BTCUSDT:{T}>webhook:{hook.url}": "sent"}
    assert [d.status for d in hook.deliveries] == [200]


# ------------------------------------------------------------------ shutdown, database refusing


async def test_shutdown_ends_when_the_database_refuses_writes_and_counts_what_was_lost(
    tmp_path, hook, caplog
):
    """With the database refusing every write (here SQLite's query_only, as a read-only
    volume would), close() gives up after close_timeout and logs how many alerts and results
    it could not store; what was stored stays open, for the next start."""
    h = Harness(tmp_path, None, hook, close_timeout=0.3)
    await h.notifier.start()
    outbox = h.notifier.outbox
    assert outbox is not None
    assert h.notifier.store is not None
    hook.delay(0.5)  # r1's answer comes after the database stops taking writes
    h.fire([rule("r1")])
    await outbox.flush()  # r1 stored and being sent
    await outbox.db(h.notifier.store.db.execute, "PRAGMA query_only = ON")
    await wait_until(lambda: outbox.outcomes.get(("webhook", "sent"), 0) == 1, 3.0)  # r1 sent
    h.fire([rule(f"x{i}", symbol=f"S{i}USDT") for i in range(5)])
    await wait_until(lambda: outbox.write_errors >= 1, 3.0)
    await asyncio.wait_for(h.notifier.close(), 5.0)
    (line,) = errors(caplog, "could not be stored")
    assert "5 alerts (lost) and 1 delivery result (that delivery is resumed" in line.getMessage()
    assert h.states() == {f"r1:BTCUSDT:{T}>webhook:{hook.url}": "pending"}


# ------------------------------------------------------------------ a receiver that moved, TLS


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_webhook_redirect_fails_the_delivery_unfollowed_and_says_to_fix_the_url(
    tmp_path, caplog, status
):
    """A receiver answering with a redirect means ALERTBOT_WEBHOOK_URL is wrong: the signed
    alert is not sent on to the Location (another host), each delivery fails for good at its
    first answer as a 4xx does (it was retried until the 24 h give-up), and one error line
    names the status and the Location (its password as ***) and says to update the URL."""
    async with WebhookReceiver(secret="hook-secret") as hook, WebhookReceiver() as elsewhere:
        moved = elsewhere.url.replace("http://", "http://bob:hunter22@")
        hook.redirect(moved, status)
        async with Harness(tmp_path, None, hook) as h:
            h.fire([rule("r1"), rule("r2", symbol="ETHUSDT")])
            await h.settled(timeout=3)
    shown = moved.replace("hunter22", "***")
    assert elsewhere.deliveries == []
    assert [d.status for d in hook.deliveries] == [status, status]
    for d in rows(h).values():
        assert (d.state, d.last_error) == ("failed", f"HTTP {status}: a redirect to {shown}")
    assert [r.getMessage() for r in errors(caplog, "redirect")] == [
        f"webhook {hook.url}: the receiver answers HTTP {status}, a redirect to {shown}, which "
        "alertbot does not follow (the signed alert would go to another address): update "
        "ALERTBOT_WEBHOOK_URL; its alerts fail until then"
    ]
    assert [r for r in caplog.records if "hunter22" in r.getMessage()] == []


async def test_a_webhook_certificate_that_fails_verification_is_named_in_the_log_and_retried(
    tmp_path, caplog
):
    """A receiver whose TLS certificate cannot be verified (self-signed here; expired or for
    another name alike): the delivery is retried (the certificate may be fixed), and the log
    line says plainly that the certificate failed verification, and why."""
    tls = self_signed_tls()
    async with (
        WebhookReceiver(secret="hook-secret", tls=tls) as hook,
        Harness(tmp_path, None, hook) as h,
    ):
        h.fire([rule("r1")])
        outbox = h.notifier.outbox
        assert outbox is not None
        await wait_until(lambda: outbox.outcomes.get(("webhook", "pending"), 0) >= 2, 3.0)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("webhook ")]
    assert line.startswith(
        f"webhook {hook.url}: TLS certificate verification failed (self-signed certificate); "
        f"retrying alert r1:BTCUSDT:{T} in "
    )


async def test_a_webhook_redirect_whose_location_changes_each_time_is_logged_once(tmp_path, caplog):
    """A login proxy in front of the receiver answers each POST with a redirect to its
    identity provider carrying a fresh ``state`` nonce: still one error line for the URL (it
    was one per alert, each remembered for ever), while each delivery's error names the
    Location it got (its query's values as ***, as a token may be one of them)."""
    async with WebhookReceiver(secret="hook-secret") as hook:
        login = "https://idp.example/authorize?client_id=alertbot&state="
        async with Harness(tmp_path, None, hook) as h:
            for i in range(3):
                hook.redirect(f"{login}nonce{i}", 302)
                h.fire([rule(f"r{i}")])
                await h.settled(timeout=3)
    assert len(errors(caplog, "redirect")) == 1
    assert [d.last_error for d in rows(h).values()] == [
        "HTTP 302: a redirect to https://idp.example/authorize?client_id=***&state=***"
    ] * 3
