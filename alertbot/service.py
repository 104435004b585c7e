"""``/healthz`` and ``/metrics`` on ``ALERTBOT_HTTP_PORT``.

Metrics are read from the running parts at scrape time (a custom prometheus-client collector),
so the per-tick path pays nothing for them except one timing per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from alertbot.app import App

log = logging.getLogger("alertbot.http")

#: the ``rule`` label of every chat watch's alerts on alertbot_alerts_total: a series per watch
#: (w1, w2, ... for ever) would grow without bound; no rule file's id has a ``/``
WATCH_LABEL = "/watch"

FRAME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _iso(seconds: float) -> str:
    """A wall-clock time as ``2026-11-23T05:40:12Z``."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AppCollector(Collector):
    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        app = self.app
        pipeline = app.pipeline
        health = pipeline.feed.health()
        yield CounterMetricFamily(
            "alertbot_tickers", "Tickers processed", value=pipeline.stats.tickers
        )
        yield CounterMetricFamily(
            "alertbot_malformed_tickers",
            "Malformed tickers skipped",
            value=pipeline.stats.malformed,
        )
        fired = CounterMetricFamily(
            "alertbot_alerts", "Alerts fired, by rule (/watch: all chat watches)", labels=["rule"]
        )
        for rule, n in sorted(pipeline.alerts_by_rule.items()):
            if rule == WATCH_LABEL or rule in pipeline.engine:  # not a rule removed since
                fired.add_metric([rule], n)
        yield fired
        outbox = app.notifier.outbox
        deliveries = CounterMetricFamily(
            "alertbot_deliveries",
            "Delivery attempts by channel and outcome (pending: a retry follows)",
            labels=["channel", "outcome"],
        )
        if outbox is not None:
            for (kind, state), n in sorted(outbox.outcomes.items()):
                deliveries.add_metric([kind, state], n)
        yield deliveries
        yield GaugeMetricFamily(
            "alertbot_outbox_depth",
            "Alert deliveries not settled yet (waiting to be stored, or being attempted)",
            value=outbox.depth if outbox is not None else 0,
        )
        yield CounterMetricFamily(
            "alertbot_feed_reconnects", "Feed reconnects", value=health.reconnects
        )
        yield CounterMetricFamily(
            "alertbot_feed_messages", "Feed market-data messages", value=health.messages
        )
        # every handover that ended, taken over or given up: the total the failed ones are a
        # part of (Prometheus' way for a failure ratio), 0 telling that none happened at all
        handovers = CounterMetricFamily(
            "alertbot_feed_handovers",
            "Feed handovers ended, the new connections taking over or given up: "
            "a connection's rotation to a new socket, a mode switch",
            labels=["kind"],
        )
        handovers.add_metric(["rotation"], health.rotations + health.rotations_failed)
        handovers.add_metric(["switch"], health.switches + health.switches_failed)
        yield handovers
        failed = CounterMetricFamily(
            "alertbot_feed_handovers_failed",
            "Feed handovers given up, the old connections carrying on (tried again later): "
            "a rotation's new socket, a mode switch's new connections",
            labels=["kind"],
        )
        failed.add_metric(["rotation"], health.rotations_failed)
        failed.add_metric(["switch"], health.switches_failed)
        yield failed
        problems = CounterMetricFamily(
            "alertbot_feed_problems",
            "Bad frames, messages and tickers skipped, by kind",
            labels=["kind"],
        )
        for kind, n in sorted(health.problems.items()):
            problems.add_metric([kind], n)
        yield problems
        age = GaugeMetricFamily(
            "alertbot_feed_last_message_age_seconds",
            "Seconds since the feed last delivered market data (-1: never)",
        )
        age.add_metric([], -1.0 if health.last_message_age is None else health.last_message_age)
        yield age
        yield GaugeMetricFamily(
            "alertbot_feed_connections", "Feed connections", value=len(health.connections)
        )
        if app.delivery.telegram_token:
            polling = app.chat.polling() if app.chat is not None else None
            yield GaugeMetricFamily(
                "alertbot_telegram_polling_failing_seconds",
                "Seconds polling Telegram for chat commands has been failing (0: it works)",
                value=(polling.failing_for or 0.0) if polling is not None else 0.0,
            )
            yield CounterMetricFamily(
                "alertbot_telegram_poll_failures",
                "Polls of Telegram for chat commands that failed (and failed starts of polling)",
                value=polling.total if polling is not None else 0,
            )
        if app.backups is not None:
            yield GaugeMetricFamily(
                "alertbot_backup_last_success_timestamp_seconds",
                "When the last scheduled copy of the database was made (Unix time; 0: none yet)",
                value=app.backups.last or 0.0,
            )
            yield GaugeMetricFamily(
                "alertbot_backup_failing",
                "1 while the scheduled copies of the database fail (ALERTBOT_BACKUP_DIR)",
                value=int(app.backups.failed is not None),
            )
        if app.book is not None:
            yield GaugeMetricFamily("alertbot_watches", "Chat watches", value=len(app.book.rows))
            yield GaugeMetricFamily(
                "alertbot_paused_chats",
                "Chats paused because they blocked or removed the bot (their watches wait)",
                value=len(app.book.paused),
            )


class HttpService:
    """A minimal HTTP/1.1 server (GET only, one request per connection)."""

    def __init__(self, app: App, port: int, host: str = "0.0.0.0") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.registry = CollectorRegistry()
        self.registry.register(AppCollector(app))
        self.frames = Histogram(
            "alertbot_frame_seconds",
            "Engine time per feed message",
            buckets=FRAME_BUCKETS,
            registry=self.registry,
        )
        app.pipeline.frame_seconds = self.frames.observe
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("http: /healthz and /metrics on port %d", self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def health(self) -> tuple[int, dict[str, Any]]:
        """200 when the feed is fresh and the outbox's writes succeed; 503 with the reasons."""
        app = self.app
        reasons = []
        health = app.pipeline.feed.health()
        settings = app.pipeline.settings
        stale = settings.stale_after if health.mode != "symbols" else settings.symbol_stale_after
        age = health.last_message_age
        if age is None:
            reasons.append("feed: no market data received yet")
        elif age > stale:
            reasons.append(f"feed: no market data for {age:.0f}s (stale after {stale:g}s)")
        for name, why in sorted(app.pipeline.dead.items()):  # a bug ended it
            reasons.append(f"{name} stopped ({why})")
        store, outbox = app.notifier.store, app.notifier.outbox
        if store is None or outbox is None:
            reasons.append("database: not open")
        elif outbox.write_error is not None:
            # check_writable writes nothing: it passes on a full disk, where every alert waits
            reasons.append(
                f"database: the last write failed ({outbox.write_error}); alerts wait to be stored"
            )
        else:
            unstored = outbox.unstored_age
            if unstored is not None and unstored > app.delivery.unstored_after:
                reasons.append(f"database: an alert has waited {unstored:.0f}s to be stored")
            else:
                # not while a write is held up: the check would wait behind it, on the one
                # database thread, past a health probe's timeout (4 s in the image)
                try:
                    await outbox.db(store.check_writable)
                except Exception as exc:
                    reasons.append(f"database: not writable ({exc})")
        body: dict[str, Any] = {
            "status": "ok" if not reasons else "unhealthy",
            "feed": {
                "mode": health.mode,
                "last_message_age": age,
                "connections": len(health.connections),
                "reconnects": health.reconnects,
                "rotations": health.rotations,
                "switches": health.switches,
                # handovers given up: the old connections carried on, so never a 503
                "rotations_failed": health.rotations_failed,
                "switches_failed": health.switches_failed,
            },
            "outbox_depth": outbox.depth if outbox is not None else None,
            "telegram_polling": self.polling(),
        }
        if reasons:
            body["reasons"] = reasons
        return (200 if not reasons else 503), body

    def polling(self) -> dict[str, Any]:
        """``/healthz``'s part on polling Telegram for chat commands. It never makes the bot
        unhealthy: a restart (what an orchestrator does with an unhealthy container) does not
        bring back an unreachable Telegram, and would only break the feed and the alerts,
        which go on meanwhile (README, Health and metrics)."""
        app = self.app
        if not app.delivery.telegram_token:
            return {"status": "off", "reason": "no Telegram token: no chat commands to poll for"}
        if app.chat is None:
            return {"status": "starting"}
        polling = app.chat.polling()
        part: dict[str, Any] = {
            "status": polling.state,
            "last_answer_age": polling.last_answer_age,
            "failed_polls": polling.failed,
        }
        if polling.since is not None:
            part["since"] = _iso(polling.since)
            part["failing_for"] = polling.failing_for
        if polling.error is not None:
            part["last_error"] = polling.error
            part["last_error_text"] = polling.error_text
        return part

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            if method not in ("GET", "HEAD"):
                status, ctype, payload = 405, "text/plain", b"method not allowed\n"
            elif path == "/healthz":
                code, body = await self.health()
                status, ctype, payload = code, "application/json", orjson.dumps(body) + b"\n"
            elif path == "/metrics":
                status, ctype = 200, "text/plain; version=0.0.4; charset=utf-8"
                payload = generate_latest(self.registry)
            else:
                status, ctype, payload = 404, "text/plain", b"not found: try /healthz or /metrics\n"
            reason = {
                200: "OK",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }
            head = (
                f"HTTP/1.1 {status} {reason.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (payload if method == "GET" else b""))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception:
            log.exception("http: error answering a request")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
