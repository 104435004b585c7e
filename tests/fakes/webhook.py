"""A real HTTP webhook receiver for alertbot's webhook delivery, and the small HTTP server under it.

``WebhookReceiver`` listens on 127.0.0.1 and records every POST: the raw body, the parsed JSON,
the headers and whether ``X-Alertbot-Signature`` matches the configured secret. A test scripts its
answers (``respond_with``), takes it down in the ways receivers fail in the field (``down``: 500s,
a hang, a TCP reset, a closed connection, a non-HTTP answer, an answer whose headers trickle in
for ever, a 200 whose body never ends), moves it (``redirect``: a 3xx with a ``Location``) or
makes it slow (``delay``). With ``tls=self_signed_tls()`` it serves HTTPS with a certificate no
client trusts (``tests/data/self-signed.pem``, for 127.0.0.1, made for these tests only).

DESIGN's webhook contract, which the receiver records but does not enforce: one alert per POST as
JSON ``{"version": 1, "id", "rule", "symbol", "condition", "time", "price", "message",
"chat_id"?, "fallback"?}``, headers ``Idempotency-Key: <id>`` and, with a secret,
``X-Alertbot-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``.

``HTTPServer`` is the shared plumbing (also used by ``tests.fakes.telegram``): asyncio streams with
``h11`` parsing, keep-alive, a handler per request, and a clean shutdown that closes every socket
and cancels every task it started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import enum
import hashlib
import hmac
import http
import json
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import h11
import httpx

from tests.fakes.waiting import wait_until

__all__ = [
    "DOWN_MODES",
    "GARBAGE",
    "Delivery",
    "Drop",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPServer",
    "WebhookReceiver",
    "self_signed_tls",
    "sign",
]

#: What ``Drop.GARBAGE`` writes instead of an HTTP response (then the connection is closed).
GARBAGE = b"\x00\xffNOT HTTP AT ALL\r\n\r\n"
#: The modes of ``WebhookReceiver.down``.
DOWN_MODES = ("500", "hang", "reset", "close", "garbage", "trickle", "endless")
#: ``Drop.TRICKLE`` writes a header line this often; ``Drop.ENDLESS`` a body chunk of
#: ``_READ_SIZE`` bytes (paced, so that a client reading it all grows slowly, not the test's RAM)
DRIP_INTERVAL = 0.01

_READ_SIZE = 65536
#: a certificate and its key for 127.0.0.1, signed by itself: a client verifying it fails
SELF_SIGNED = Path(__file__).resolve().parent.parent / "data" / "self-signed.pem"


def self_signed_tls() -> ssl.SSLContext:
    """A server's TLS context with ``SELF_SIGNED``'s certificate, which no client trusts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(SELF_SIGNED)
    return context


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Alertbot-Signature`` value for ``body``: ``"sha256=" + hex HMAC-SHA256``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# --- the HTTP/1.1 server --------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPRequest:
    """One complete request as the server read it."""

    method: str  # "GET", "POST", ...
    target: str  # the request target as sent: path and query
    headers: httpx.Headers  # case-insensitive
    body: bytes
    time: float  # loop time the request was complete

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass(frozen=True)
class HTTPResponse:
    """An answer; ``Date``, ``Content-Length`` and ``Content-Type`` are added when written."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


class Drop(enum.Enum):
    """Ways of not answering a request."""

    HANG = "hang"  # read on, never answer; the connection ends when the client gives up
    RESET = "reset"  # abort the TCP connection (RST, SO_LINGER 0): the client sees a reset
    CLOSE = "close"  # close the connection cleanly (FIN) without an answer
    GARBAGE = "garbage"  # write ``GARBAGE`` instead of an HTTP response, then close
    TRICKLE = "trickle"  # a status line, then a header line now and then, never the end
    ENDLESS = "endless"  # 200 and a chunked body that never ends


Reply = HTTPResponse | Drop


class HTTPServer:
    """An asyncio + h11 HTTP/1.1 server on 127.0.0.1 (port 0); subclasses implement ``handle``.

    Connections are kept alive between requests. While a request is being handled the server
    watches the socket: if the client goes away, the handler is cancelled. ``delay`` seconds are
    slept after ``handle`` returned and before the answer is written (the request has been
    processed; only the answer is late). An exception in ``handle`` is answered with 500 and kept
    in ``errors`` so that a bug in a fake does not pass unnoticed.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve HTTPS with this context (``base_url`` then starts with https)."""
        self.errors: list[BaseException] = []
        self.tls = tls
        self._delay = 0.0
        self._server: asyncio.Server | None = None
        self._port = 0
        self._closing = False
        self._connections: set[asyncio.Task[None]] = set()

    # --- lifecycle

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1, on a free port, or on ``port``: a server closed with
        ``aclose`` started again where it was (its clients meanwhile: connection refused)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._closing = False
        self._server = await asyncio.start_server(
            self._on_connection, "127.0.0.1", port, ssl=self.tls
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, end every connection (hanging ones included) and wait for them."""
        server = self._server
        if server is None:
            return
        self._closing = True
        server.close()
        await asyncio.sleep(0)  # let connections accepted just now register (they see _closing)
        while self._connections:
            tasks = list(self._connections)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}"

    @property
    def open_connections(self) -> int:
        """TCP connections currently open (kept-alive ones included)."""
        return len(self._connections)

    def delay(self, seconds: float) -> None:
        """Every answer from now on is written ``seconds`` late (0: no delay)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = seconds

    async def handle(self, request: HTTPRequest) -> Reply:
        """Answer one request (override)."""
        raise NotImplementedError

    # --- connections

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError, h11.ProtocolError):
            pass  # the client went away or spoke broken HTTP: just close
        except asyncio.CancelledError:
            pass  # aclose(): end quietly (3.11 logs a connection task that ends cancelled)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request = await self._read_request(conn, reader)
            except h11.RemoteProtocolError as e:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    bad = HTTPResponse(e.error_status_hint, f"{e}\n".encode())
                    await self._write(conn, writer, bad, keep_alive=False)
                return
            if request is None:
                return
            reply = await self._answer(conn, reader, request)
            if reply is None:  # the client left while we were busy
                return
            if isinstance(reply, Drop):
                await self._drop(reply, reader, writer)
                return
            await self._write(conn, writer, reply, keep_alive=True)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, reader: asyncio.StreamReader
    ) -> HTTPRequest | None:
        start: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ_SIZE))
            elif isinstance(event, h11.Request):
                start = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert start is not None
                headers = httpx.Headers(
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.headers]
                )
                return HTTPRequest(
                    method=start.method.decode("ascii"),
                    target=start.target.decode("latin-1"),
                    headers=headers,
                    body=bytes(body),
                    time=asyncio.get_running_loop().time(),
                )
            else:  # ConnectionClosed, or PAUSED (cannot happen between cycles)
                return None

    async def _answer(
        self, conn: h11.Connection, reader: asyncio.StreamReader, request: HTTPRequest
    ) -> Reply | None:
        """Run the handler (and the delay) while watching for the client leaving."""
        handler = asyncio.create_task(self._handle_and_delay(request))
        watcher = asyncio.create_task(reader.read(_READ_SIZE))
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done():
                data = b"" if watcher.exception() is not None else watcher.result()
                if not data:  # EOF or reset: nobody to answer
                    return None
                conn.receive_data(data)  # pipelined bytes: kept for the next cycle
            return await handler
        finally:
            for t in (handler, watcher):
                t.cancel()
            await asyncio.gather(handler, watcher, return_exceptions=True)

    async def _handle_and_delay(self, request: HTTPRequest) -> Reply:
        try:
            reply = await self.handle(request)
        except Exception as e:
            self.errors.append(e)
            return HTTPResponse(500, f"fake server error: {e!r}\n".encode())
        if self._delay > 0 and isinstance(reply, HTTPResponse):
            await asyncio.sleep(self._delay)
        return reply

    @staticmethod
    async def _write(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        response: HTTPResponse,
        *,
        keep_alive: bool,
    ) -> None:
        status = response.status
        no_body = status in (204, 304)
        body = b"" if no_body else response.body
        headers = [("Date", email.utils.formatdate(usegmt=True)), ("Server", "alertbot-fake")]
        if not no_body:
            headers += [("Content-Type", response.content_type), ("Content-Length", str(len(body)))]
        if not keep_alive:
            headers.append(("Connection", "close"))
        headers += list(response.headers)
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=_phrase(status)))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()

    @staticmethod
    async def _drop(how: Drop, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if how is Drop.HANG:
            while await reader.read(_READ_SIZE):
                pass  # until the client gives up (or aclose cancels us)
        elif how is Drop.RESET:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif how is Drop.GARBAGE:
            writer.write(GARBAGE)
            await writer.drain()
        elif how in (Drop.TRICKLE, Drop.ENDLESS):
            # until the client leaves (the write fails) or aclose cancels us
            if how is Drop.TRICKLE:
                writer.write(b"HTTP/1.1 200 OK\r\n")
                piece = b"X-Trickle: 1\r\n"
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                piece = b"%x\r\n%s\r\n" % (_READ_SIZE, b"x" * _READ_SIZE)
            while not writer.is_closing():
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(DRIP_INTERVAL)
        # Drop.CLOSE, and after the others: the caller closes the writer


# --- the webhook receiver -------------------------------------------------------------------------


@dataclass(eq=False)
class Delivery:
    """One POST the receiver got (to any path; only ``/hook`` is answered 2xx)."""

    body: bytes  # raw
    json: Any  # the body parsed as JSON, or None when it is not JSON
    headers: httpx.Headers  # case-insensitive
    signature_ok: bool | None  # None: no secret configured
    time: float  # loop time received
    path: str = "/hook"
    query: str = ""  # the request target's query string, without its "?"
    status: int | None = None  # what was answered; None: no answer (hang, reset, close, garbage)

    @property
    def idempotency_key(self) -> str | None:
        """The ``Idempotency-Key`` header."""
        value = self.headers.get("idempotency-key")
        return None if value is None else str(value)

    @property
    def id(self) -> str | None:
        """The delivery's id: the JSON body's ``"id"`` when it is a string, else
        ``Idempotency-Key``."""
        if isinstance(self.json, dict) and isinstance(self.json.get("id"), str):
            return str(self.json["id"])
        return self.idempotency_key

    @property
    def ok(self) -> bool:
        """Answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


class WebhookReceiver(HTTPServer):
    """A webhook endpoint at ``url`` (``http://127.0.0.1:PORT/hook``).

    Answers: a POST to ``/hook`` gets 200 ``{"ok": true}`` unless a control says otherwise, in this
    order: ``down`` mode, ``redirect``, bad signature (only with ``enforce_signature=True``:
    401), the ``respond_with`` queue. A POST to another path gets 404, any other method 405
    (not recorded).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        path: str = "/hook",
        enforce_signature: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``secret``: check ``X-Alertbot-Signature`` (recorded in ``signature_ok``);
        ``enforce_signature``: also answer 401 to a request whose signature is missing or wrong;
        ``tls``: serve HTTPS (see ``self_signed_tls``).
        """
        super().__init__(tls=tls)
        if enforce_signature and secret is None:
            raise ValueError("enforce_signature needs a secret")
        self.secret = secret
        self.path = path
        self.enforce_signature = enforce_signature
        self.deliveries: list[Delivery] = []
        self._script: collections.deque[tuple[int, float | str | None]] = collections.deque()
        self._down: str | None = None
        self._redirect: tuple[int, str] | None = None

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    @property
    def accepted(self) -> list[Delivery]:
        """The deliveries answered 2xx, in order."""
        return [d for d in self.deliveries if d.ok]

    # --- controls

    def respond_with(self, *statuses: int, retry_after: float | str | None = None) -> None:
        """The next requests get these statuses, in order (after any queued earlier), then 200.

        ``retry_after``: sent as ``Retry-After`` on the 429 and 503 answers among them (a whole
        number is written as an integer, a fraction as a decimal such as ``0.2``, which is not
        standard HTTP but keeps tests fast; a client should treat it as seconds). A string is
        sent as it is: an HTTP date, or the nonsense receivers send (``nan``, ``-5``).
        """
        for s in statuses:
            if not 200 <= s <= 599:
                raise ValueError(f"status must be in 200..599, not {s}")
            self._script.append((s, retry_after))

    def clear_responses(self) -> None:
        """Forget the statuses of ``respond_with`` not used yet."""
        self._script.clear()

    def down(self, mode: str = "500") -> None:
        """Until ``recover()``: ``"500"`` every request gets 500; ``"hang"`` never answered;
        ``"reset"`` TCP reset without an answer (httpx: ``ReadError``); ``"close"`` clean close
        without an answer (httpx: ``RemoteProtocolError``); ``"garbage"`` a non-HTTP byte string,
        then close (httpx: ``RemoteProtocolError``); ``"trickle"`` a status line, then a header
        line every ``DRIP_INTERVAL`` for ever (each read is quick: only a deadline on the whole
        answer ends it); ``"endless"`` 200 (recorded as such) and a body that never ends. The
        ``respond_with`` queue waits meanwhile.
        """
        if mode not in DOWN_MODES:
            raise ValueError(f"mode must be one of {DOWN_MODES}, not {mode!r}")
        self._down = mode

    def redirect(self, location: str, status: int = 301) -> None:
        """Until ``recover()``, every POST to the path gets ``status`` (a 3xx) with
        ``Location: location`` and an empty body, as a receiver that moved answers."""
        if not 300 <= status <= 399:
            raise ValueError(f"a redirect's status is a 3xx, not {status}")
        self._redirect = (status, location)

    def recover(self) -> None:
        """Undo ``down()`` and ``redirect()``."""
        self._down = None
        self._redirect = None

    # --- queries

    def unique_ids(self) -> set[str]:
        """The ids (see ``Delivery.id``) of the accepted deliveries."""
        return {i for d in self.accepted if (i := d.id) is not None}

    def duplicates(self) -> list[str]:
        """Ids accepted more than once, in order of their first acceptance."""
        counts = collections.Counter(i for d in self.accepted if (i := d.id) is not None)
        return [i for i, n in counts.items() if n > 1]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
        await wait_until(
            predicate,
            timeout,
            seen=lambda: f"deliveries: {[(d.status, d.id) for d in self.deliveries]}",
        )

    async def wait_for_deliveries(self, n: int, timeout: float = 5.0) -> list[Delivery]:
        """Until at least ``n`` deliveries were accepted (2xx); returns the accepted ones."""
        await self.wait_for(lambda: len(self.accepted) >= n, timeout)
        return self.accepted

    # --- serving

    def _signature_ok(self, request: HTTPRequest) -> bool | None:
        if self.secret is None:
            return None
        got = request.headers.get("x-alertbot-signature")
        if got is None:
            return False
        return hmac.compare_digest(got.encode(), sign(self.secret, request.body).encode())

    async def handle(self, request: HTTPRequest) -> Reply:
        if request.method != "POST":
            return HTTPResponse(405, b"method not allowed\n", headers=(("Allow", "POST"),))
        try:
            parsed: Any = json.loads(request.body)
        except ValueError:
            parsed = None
        delivery = Delivery(
            body=request.body,
            json=parsed,
            headers=request.headers,
            signature_ok=self._signature_ok(request),
            time=request.time,
            path=request.path,
            query=request.query,
        )
        self.deliveries.append(delivery)
        if request.path != self.path:
            return self._status(delivery, 404)
        if self._down == "500":
            return self._status(delivery, 500)
        if self._down is not None:
            if self._down == "endless":
                delivery.status = 200  # the status line is all of the answer that ends
            return Drop(self._down)
        if self._redirect is not None:
            delivery.status, location = self._redirect
            return HTTPResponse(delivery.status, headers=(("Location", location),))
        if self.enforce_signature and not delivery.signature_ok:
            return self._status(delivery, 401)
        if self._script:
            status, retry_after = self._script.popleft()
            return self._status(delivery, status, retry_after)
        return self._status(delivery, 200)

    @staticmethod
    def _status(
        delivery: Delivery, status: int, retry_after: float | str | None = None
    ) -> HTTPResponse:
        delivery.status = status
        headers: tuple[tuple[str, str], ...] = ()
        if retry_after is not None and status in (429, 503):
            if isinstance(retry_after, str):
                value = retry_after
            elif float(retry_after).is_integer():
                value = str(int(retry_after))
            else:
                value = str(retry_after)
            headers = (("Retry-After", value),)
        if 200 <= status < 300:
            body: dict[str, Any] = {"ok": True}
        else:
            body = {"ok": False, "error": _phrase(status)}
        return HTTPResponse(status, json.dumps(body).encode(), "application/json", headers)
