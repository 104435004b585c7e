"""Webhook delivery (httpx): one alert per POST, signed, retried until it is taken or refused.

DESIGN.md: any 2xx is success; a 4xx other than 408/429 is permanent; everything else
(408, 429, 5xx, timeouts, connection errors, garbage) is retried with backoff, honouring
``Retry-After``. Each URL has its own queue and worker, so one failing receiver delays no other.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import logging
import time
from collections import deque
from typing import Any

import httpx
import orjson

from alertbot.notify.delivery import Delivery, Report, backoff
from alertbot.notify.settings import DeliverySettings
from alertbot.tasks import cancel_and_wait

log = logging.getLogger("alertbot.notify")


def body_of(d: Delivery) -> bytes:
    a = d.alert
    body: dict[str, Any] = {
        "version": 1,
        "id": a.id,
        "rule": a.rule,
        "symbol": a.symbol,
        "condition": a.condition,
        "time": a.time,
        "price": a.price,
        "message": a.text,
    }
    if a.gap:
        body["gap"] = True
    if d.kind == "fallback":
        body["chat_id"] = d.chat_id
        body["fallback"] = True
    return orjson.dumps(body)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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

    def enqueue(self, d: Delivery) -> None:
        url = d.url
        assert url is not None
        if url not in self._queues:
            self._queues[url] = deque()
            self._wake[url] = asyncio.Event()
            self._workers[url] = asyncio.create_task(self._work(url), name="webhook-sender")
        self._queues[url].append(d)
        self._wake[url].set()

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def close(self) -> None:
        await cancel_and_wait(*self._workers.values())
        await self._client.aclose()

    async def _work(self, url: str) -> None:
        queue, wake = self._queues[url], self._wake[url]
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            d = queue[0]
            wait = await self._send(d)
            if wait is None:
                queue.popleft()
                continue
            # the head waits, and so does the rest of this URL's queue: the receiver is down
            await asyncio.sleep(wait)

    async def _send(self, d: Delivery) -> float | None:
        """One attempt; None when the delivery is settled, else seconds until the next try."""
        body = body_of(d)
        headers = {"Content-Type": "application/json", "Idempotency-Key": d.alert.id}
        if d.secret:
            headers["X-Alertbot-Signature"] = signature(d.secret, body)
        d.attempts += 1
        try:
            response = await self._client.post(d.url or "", content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return self._retry(d, error, None)
        status = response.status_code
        if 200 <= status < 300:
            d.state = "sent"
            self.report(d, "sent")
            return None
        error = f"HTTP {status}"
        if 400 <= status < 500 and status not in (408, 429):
            d.state = "failed"
            log.warning("webhook %s refused alert %s for good: %s", d.url, d.alert.id, error)
            self.report(d, "failed", error)
            return None
        return self._retry(d, error, retry_after(response))

    def _retry(self, d: Delivery, error: str, after: float | None) -> float | None:
        cfg = self.settings
        if time.time() - d.created > cfg.give_up_after:
            d.state = "failed"
            log.error("webhook %s: giving up on alert %s: %s", d.url, d.alert.id, error)
            self.report(d, "failed", f"gave up: {error}")
            return None
        wait = (
            after
            if after is not None
            else backoff(d.attempts, cfg.backoff_initial, cfg.backoff_max)
        )
        if d.attempts == 1 or d.attempts % 10 == 0:
            log.warning(
                "webhook %s: %s; retrying alert %s in %.1fs", d.url, error, d.alert.id, wait
            )
        self.report(d, "pending", error)
        return wait
