"""Webhook delivery (httpx): one alert per POST, signed, retried until it is taken or refused.

DESIGN.md: any 2xx is success; a 4xx other than 408/429 is permanent; everything else
(408, 429, 5xx, timeouts, connection errors, garbage) is retried with backoff, honouring
``Retry-After`` within bounds (see ``WebhookSender._retry``). A redirect (3xx) is permanent too,
and not followed: the URL is wrong, and the signed alert must not go to another address. Each
URL has its own queue and worker, so one failing receiver delays no other; a worker that ends
unexpectedly is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import logging
import math
import re
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from alertbot.notify.delivery import Delivery, Report, backoff, clip
from alertbot.notify.render import without_hint_line
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.urls import shown_url, url_text_problem
from alertbot.tasks import cancel_and_wait

log = logging.getLogger("alertbot.notify")

#: the most of a receiver's answer body that is read: only its status and headers matter, and
#: a receiver may stream a body without end (the rest is left unread, the connection closed)
MAX_ANSWER = 64 * 1024


def idempotency_key(d: Delivery) -> str:
    """What names this delivery to its receiver (``Idempotency-Key`` and the body's ``id``):
    the alert id (``rule:symbol:time``) for a webhook; for a fallback, that and the chat it
    stands in for (``rule:symbol:time:chat``), since each chat's copy is a message of its own
    and a receiver de-duplicating by key would keep one chat's copy only. Made from the
    destination, which is stored with the delivery: the same across retries and restarts."""
    if d.kind == "fallback":  # fallback:<chat>:<url>
        return f"{d.alert.id}:{d.destination.split(':', 2)[1]}"
    return d.alert.id


# The bodies a webhook can be sent (WEBHOOK_FORMATS): alertbot's JSON (DESIGN.md), or a chat
# service's incoming-webhook message, which refuses alertbot's (Slack: 400 ``no_text``;
# Discord: 400 "Cannot send an empty message").
#: Slack's incoming webhooks read ``text`` up to this many characters; Discord's ``content``
SLACK_MAX = 40_000
DISCORD_MAX = 2_000
_SLACK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
_DISCORD_HOSTS = frozenset(
    {"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"}
)
#: what Discord reads as markdown, escaped so that a message shows as written
_DISCORD_MARKUP = re.compile(r"([\\*_~`|>#\[\]()-])")


def format_by_url(url: str) -> str:
    """The body ``url`` takes when none was configured: Slack's or Discord's message for
    their incoming webhooks (told by host, and Discord's ``/api/webhooks/`` path), else
    alertbot's JSON."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "json"
    if host in _SLACK_HOSTS:
        return "slack"
    if host in _DISCORD_HOSTS and parts.path.startswith("/api/webhooks/"):
        return "discord"
    return "json"


def _text(d: Delivery) -> str:
    """The alert's text; a fallback's without the chat watch's last line (render's
    WATCH_HINT, ENDED_HINT): its commands are the chat's to send, not the webhook reader's,
    and a ``once`` watch whose alert the chat refused (blocked the bot) has not ended: it is
    kept for the chat's return (the pause), which the line would deny."""
    return without_hint_line(d.alert.text) if d.kind == "fallback" else d.alert.text


def _message(d: Delivery) -> str:
    """The alert's text as a chat service shows it; a fallback's says for which chat."""
    text = _text(d)
    if d.kind == "fallback":
        text += f"\n(for Telegram chat {d.chat_id}, which the alert could not reach)"
    return text


def body_of(d: Delivery) -> bytes:
    form = d.body_format or format_by_url(d.url or "")
    if form == "slack":
        # &, < and > are markup whatever else is, escaped as Slack asks; its mrkdwn (*bold*,
        # _italic_, ~strike~) has no escape, and is turned off: a rule id or template with
        # underscores or asterisks shows as written
        text = _message(d).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return orjson.dumps({"text": clip(text, SLACK_MAX), "mrkdwn": False})
    if form == "discord":  # markdown, and no @mentions, whatever a template holds
        text = _DISCORD_MARKUP.sub(r"\\\1", _message(d))
        if len(text) > DISCORD_MAX:  # cut, but not between an escape and what it escapes
            text = text[: DISCORD_MAX - 1]
            if (len(text) - len(text.rstrip("\\"))) % 2:  # an escape's "\\" without its character
                text = text[:-1]
            text += "…"
        return orjson.dumps({"content": text, "allowed_mentions": {"parse": []}})
    a = d.alert
    body: dict[str, Any] = {
        "version": 1,
        "id": idempotency_key(d),
        "rule": a.rule,
        "symbol": a.symbol,
        "condition": a.condition,
        "time": a.time,
        "price": a.price,
        "message": _text(d),
    }
    if a.note:  # a chat watch's note, which "message" shows on a line of its own
        body["note"] = a.note
    if a.gap:
        body["gap"] = True
    if d.kind == "fallback":
        body["chat_id"] = d.chat_id
        body["fallback"] = True
    return orjson.dumps(body)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when there is
    none, or it is nonsense: unreadable, nan, negative, a date gone by."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": UTC, with no zone given (RFC 5322)
                when = when.replace(tzinfo=dt.UTC)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds


def url_problem(url: str) -> str | None:
    """Why ``url`` can never be posted to (a permanent failure), or None.

    httpx takes a port out of 1..65535 and fails only when connecting, with an error that is
    not an ``httpx.HTTPError``; a URL resumed from the outbox may predate the rule loader's
    check. httpx percent-encodes white space, even in a host that then cannot exist:
    :func:`url_text_problem`, which the loader asks too, refuses it.
    """
    shown = shown_url(url)
    problem = url_text_problem(url)
    if problem is not None:
        return f"invalid URL {shown!r}: {problem}"
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        return f"invalid URL {shown!r}: {str(exc).replace(url, shown)}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"invalid URL {shown!r}: expected http(s)://HOST/..."
    if port is not None and not 1 <= port <= 65535:
        return f"invalid URL {shown!r}: port {port} is not in 1..65535"
    return None


def describe(exc: BaseException) -> str:
    """``Type: message``; an exception group (anyio's, from inside httpx) by its first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def tls_problem(exc: BaseException) -> str | None:
    """A certificate that failed verification, somewhere under ``exc``, named plainly (httpx
    calls it a ConnectError, as it does a refused connection); None when there is none."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({cause.verify_message or cause})"
        cause = cause.__cause__ or cause.__context__
    return None


class WebhookSender:
    def __init__(
        self, settings: DeliverySettings, report: Report, client: httpx.AsyncClient | None = None
    ) -> None:
        self.settings = settings
        self.report = report
        self._client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout,
            headers={"User-Agent": "alertbot"},
            follow_redirects=False,
        )
        self._queues: dict[str, deque[Delivery]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, int] = {}  # per URL, unexpected ends since it last settled one
        self._unexpected: set[str] = set()  # kinds of unexpected send errors logged already
        # per URL, the redirect logged last (its status and Location less the query): a login
        # proxy's Location changes each time (a fresh ``state`` nonce), its address does not
        self._redirects: dict[str, tuple[int, str]] = {}
        self._closed = False

    def enqueue(self, d: Delivery) -> None:
        url = d.url
        assert url is not None
        if url not in self._queues:
            self._queues[url] = deque()
            self._wake[url] = asyncio.Event()
            self._start(url)
        elif not self._closed and self._workers[url].done():
            # ended before its done-callback ran (which would start it again)
            self._restart(url, self._workers[url])
        self._queues[url].append(d)
        self._wake[url].set()

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def close(self) -> None:
        self._closed = True  # what is queued from now on stays open, resumed at the next start
        await cancel_and_wait(*self._workers.values())
        await self._client.aclose()

    def _start(self, url: str, delay: float = 0.0) -> None:
        if self._closed:
            return
        task = asyncio.create_task(self._work(url, delay), name="webhook-sender")
        self._workers[url] = task
        task.add_done_callback(lambda t: self._ended(url, t))

    def _ended(self, url: str, task: asyncio.Task[None]) -> None:
        if not self._closed and self._workers.get(url) is task:
            self._restart(url, task)

    def _restart(self, url: str, task: asyncio.Task[None]) -> None:
        """A worker ended without close(): a bug, or someone cancelled it. Its queue would
        wait for ever, so a new worker takes over (after a backoff, in case it ends again)."""
        exc = None if task.cancelled() else task.exception()
        why = "cancelled" if task.cancelled() else "returned" if exc is None else describe(exc)
        n = self._restarts[url] = self._restarts.get(url, 0) + 1
        delay = backoff(n, self.settings.backoff_initial, self.settings.backoff_max)
        log.error(
            "webhook %s: the sender stopped (%s); starting it again in %.1fs",
            shown_url(url),
            why,
            delay,
            exc_info=exc,
        )
        self._start(url, delay)

    async def _work(self, url: str, delay: float = 0.0) -> None:
        queue, wake = self._queues[url], self._wake[url]
        if delay:
            await asyncio.sleep(delay)
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            d = queue[0]
            wait = await self._send(d)
            if wait is None:
                queue.popleft()
                self._restarts.pop(url, None)
                continue
            # the head waits, and so does the rest of this URL's queue: the receiver is down
            await asyncio.sleep(wait)

    async def _send(self, d: Delivery) -> float | None:
        """One attempt; None when the delivery is settled, else seconds until the next try."""
        url = d.url or ""
        problem = url_problem(url)
        if problem is not None:
            self._fail(d, problem)
            return None
        d.attempts += 1
        try:
            body = body_of(d)
            headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key(d)}
            if d.secret:
                headers["X-Alertbot-Signature"] = signature(d.secret, body)
            response = await self._post(url, body, headers)
        except TimeoutError:  # the whole answer took longer than webhook_timeout
            timeout = self.settings.webhook_timeout
            return self._retry(d, f"no whole answer within {timeout:g}s", None)
        except httpx.InvalidURL as exc:  # not an HTTPError: httpx found the URL unusable
            shown = shown_url(url)
            self._fail(d, f"invalid URL {shown!r}: {str(exc).replace(url, shown)}")
            return None
        except httpx.HTTPError as exc:
            return self._retry(d, tls_problem(exc) or describe(exc), None)
        except Exception as exc:  # not httpx's own error (a bug, anyio's groups): keep trying
            error = describe(exc)
            kind = error.partition(":")[0]
            if kind not in self._unexpected:  # once per kind: a long retry must not flood the log
                self._unexpected.add(kind)
                log.error(
                    "webhook %s: unexpected error sending alert %s; retrying with backoff",
                    shown_url(url),
                    d.alert.id,
                    exc_info=exc,
                )
            return self._retry(d, error, None, quiet=True)
        status = response.status_code
        if 200 <= status < 300:
            d.state = "sent"
            self.report(d, "sent")
            return None
        if 300 <= status < 400:
            self._redirected(d, status, response)
            return None
        error = f"HTTP {status}"
        if 400 <= status < 500 and status not in (408, 429):
            self._fail(d, error)
            return None
        return self._retry(d, error, retry_after(response))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST, with ``webhook_timeout`` as a deadline on the whole answer (httpx's timeouts
        are per read: an answer trickling in a byte at a time would hold the queue for ever).
        Once the status is in, that is the answer: at most ``MAX_ANSWER`` bytes of the body are
        read, within what is left of the deadline, and a body that breaks off is no matter."""
        request = self._client.build_request("POST", url, content=body, headers=headers)
        end = asyncio.get_running_loop().time() + self.settings.webhook_timeout
        async with asyncio.timeout_at(end):
            response = await self._client.send(request, stream=True)
        try:
            async with asyncio.timeout_at(end):
                read = 0
                async for chunk in response.aiter_raw():  # raw: no inflating a zip bomb
                    read += len(chunk)
                    if read >= MAX_ANSWER:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass
        finally:
            await response.aclose()  # the rest unread: the connection is closed, not reused
        return response

    def _redirected(self, d: Delivery, status: int, response: httpx.Response) -> None:
        """A redirect: the configured URL is wrong. Following it would send the signed alert
        (and its Basic auth) to an address nobody configured, and retrying gets the same answer
        for 24 h: the delivery fails for good, and the first one says once what to fix."""
        url = d.url or ""
        location = response.headers.get("location")
        where = ""
        if location:
            with contextlib.suppress(httpx.InvalidURL, ValueError):
                location = str(httpx.URL(url).join(location))  # a relative one, in full
            redirect = f"a redirect to {clip(shown_url(location))}"
            where = location.partition("#")[0].partition("?")[0]
        else:
            redirect = "a redirect without a Location"
        if self._redirects.get(url) != (status, where):
            self._redirects[url] = (status, where)
            setting = (
                "ALERTBOT_WEBHOOK_URL"
                if url == self.settings.webhook_url
                else "the webhook channel's URL in the rule file"
            )
            log.error(
                "webhook %s: the receiver answers HTTP %d, %s, which alertbot does not follow "
                "(the signed alert would go to another address): update %s; its alerts fail "
                "until then",
                shown_url(url),
                status,
                redirect,
                setting,
            )
        self._fail(d, f"HTTP {status}: {redirect}")

    def _fail(self, d: Delivery, error: str) -> None:
        d.state = "failed"
        log.warning(
            "webhook %s: alert %s failed for good: %s", shown_url(d.url or ""), d.alert.id, error
        )
        self.report(d, "failed", error)

    def _retry(
        self, d: Delivery, error: str, after: float | None, *, quiet: bool = False
    ) -> float | None:
        """Report the failed attempt; the seconds until the next, or None when given up.

        The wait is the backoff, or what ``Retry-After`` asks (``after``) if that is longer,
        though never longer than ``backoff_max`` or the time left before the give-up: 0 is
        no reason to hammer a receiver, nor a day a reason to park its queue past the give-up.
        """
        cfg = self.settings
        left = d.created + cfg.give_up_after - time.time()
        if left < 0:
            d.state = "failed"
            log.error(
                "webhook %s: giving up on alert %s: %s", shown_url(d.url or ""), d.alert.id, error
            )
            self.report(d, "failed", f"gave up: {error}")
            return None
        wait = backoff(d.attempts, cfg.backoff_initial, cfg.backoff_max)
        if after is not None:
            wait = max(wait, min(after, cfg.backoff_max, left))
        if not quiet and (d.attempts == 1 or d.attempts % 10 == 0):
            log.warning(
                "webhook %s: %s; retrying alert %s in %.1fs",
                shown_url(d.url or ""),
                error,
                d.alert.id,
                wait,
            )
        self.report(d, "pending", error)
        return wait
