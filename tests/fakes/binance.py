"""A local fake of Binance market data (USD-M futures by default): the mini-ticker WebSocket and
exchangeInfo.

It serves, on one 127.0.0.1 port (``websockets`` server; plain HTTP through ``process_request``):

- ``/market/ws/<stream>`` raw (payloads bare), ``/market/ws`` raw with no streams until SUBSCRIBE,
  ``/market/stream?streams=a/b`` combined (payloads wrapped ``{"stream": ..., "data": ...}``);
- the legacy ``/ws...`` and ``/stream...`` paths: accepted, then silent forever;
- any other path: handshake rejected with 404;
- ``GET /fapi/v1/exchangeInfo``;
- ``GET /fapi/v1/ticker/24hr?symbol=X``: X's 24h statistics, from the last ticker ``publish``
  gave of X (whether or not a stream carried it), as Binance answers them (see
  :meth:`FakeBinance.ticker_24hr`).

With ``market="coinm"`` it poses as ``dstream``/``dapi`` instead: the stream paths have no
``/market`` prefix (``/ws/<stream>``, ``/ws``, ``/stream?streams=``), there are no legacy ones,
exchangeInfo is ``GET /dapi/v1/exchangeInfo`` (``contractStatus``, as COIN-M answers) and the 24h
ticker ``GET /dapi/v1/ticker/24hr`` (a list). With ``market="spot"`` it poses as
``stream.binance.com``/``api.binance.com``: the same paths as COIN-M, exchangeInfo at
``GET /api/v3/exchangeInfo``, the 24h ticker at ``GET /api/v3/ticker/24hr``, and 5 incoming
messages a second, not 10.

It enforces the real limits (incoming messages per second, pings and pongs included, streams per
connection, connection age, server pings) and lets a test inject the failures seen in the field:
abrupt drops, clean closes with any code, silent connections, lagging connections, rejected
handshakes, malformed frames, a failing REST endpoint, a 24h ticker that fails, answers garbage
or does not answer.

Nothing is sent on its own: each ``publish`` is one tick of the market.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import http
import re
import time as _time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from tests.fakes.waiting import wait_until

__all__ = [
    "ALL_MARKET_STREAM",
    "EXCHANGE_INFO_PATH",
    "SETTLING_SYMBOL",
    "FakeBinance",
    "FakeConnection",
    "Stats",
    "mini_ticker",
    "valid_stream",
]

ALL_MARKET_STREAM = "!miniTicker@arr"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
COINM_EXCHANGE_INFO_PATH = "/dapi/v1/exchangeInfo"
SPOT_EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
TICKER_PATHS = {
    "usdm": "/fapi/v1/ticker/24hr",
    "coinm": "/dapi/v1/ticker/24hr",
    "spot": "/api/v3/ticker/24hr",
}
DAY_MS = 86_400_000
#: The non-trading symbol exchangeInfo always lists, for the client's filtering.
SETTLING_SYMBOL = "SETTLEDUSDT"

# btcusdt_250627, btcusd_perp; 币安人生usdt (Binance lowers only the ASCII letters of a name)
_SYMBOL_STREAM = re.compile(r"[a-z0-9\x80-\U0010ffff]+(_[a-z0-9]+)?@miniTicker")
_UINT64_MAX = 2**64 - 1

JSON = Any
Number = float | int | str | Decimal

#: frames Binance counts as incoming messages: a message (its first frame), a ping, a pong; and
#: the client's close frame when it starts the closing (see FakeBinance._client_closing): Binance
#: does not say whether it counts that one, so the fake does, to be safe
_COUNTED = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})


@dataclass(frozen=True)
class _Market:
    prefix: str  # before /ws and /stream ("/market" on USD-M since 2026)
    legacy: bool  # the bare /ws, /stream paths are accepted and stay silent
    info_path: str
    status_key: str  # the exchangeInfo key of a symbol's status
    max_incoming_per_s: int  # documented limit, pings and pongs included


_MARKETS = {
    "usdm": _Market("/market", True, EXCHANGE_INFO_PATH, "status", 10),
    "coinm": _Market("", False, COINM_EXCHANGE_INFO_PATH, "contractStatus", 10),
    "spot": _Market("", False, SPOT_EXCHANGE_INFO_PATH, "status", 5),
}


def valid_stream(name: object) -> bool:
    """Whether ``name`` is a stream served here: ``!miniTicker@arr`` or ``<sym>@miniTicker``."""
    return isinstance(name, str) and (
        name == ALL_MARKET_STREAM or _SYMBOL_STREAM.fullmatch(name) is not None
    )


# --- payloads ------------------------------------------------------------------------------------


def _decimal(value: Number) -> Decimal:
    if isinstance(value, Decimal):
        return value
    return Decimal(value if isinstance(value, str) else repr(value))


def _text(value: Decimal) -> str:
    return format(value, "f")


def mini_ticker(
    symbol: str,
    close: Number,
    time: int,
    *,
    open: Number | None = None,
    high: Number | None = None,
    low: Number | None = None,
    volume: Number = 1000.0,
    quote_volume: Number | None = None,
    st: int | None = None,
    ps: str | None = None,
) -> dict[str, Any]:
    """One ``24hrMiniTicker`` element with decimal strings, as the real feed sends it.

    Defaults: ``open`` = ``close``, ``high``/``low`` = the max/min of open and close,
    ``quote_volume`` = ``volume * close``. Numbers are written in plain positional notation, never
    with an exponent; a ``str`` is used as given. ``st`` and ``ps`` (COIN-M merger fields) are
    added only when given.
    """
    c = _decimal(close)
    o = c if open is None else _decimal(open)
    h = max(o, c) if high is None else _decimal(high)
    lo = min(o, c) if low is None else _decimal(low)
    v = _decimal(volume)
    q = v * c if quote_volume is None else _decimal(quote_volume)
    ticker: dict[str, Any] = {
        "e": "24hrMiniTicker",
        "E": time,
        "s": symbol,
        "c": close if isinstance(close, str) else _text(c),
        "o": open if isinstance(open, str) else _text(o),
        "h": high if isinstance(high, str) else _text(h),
        "l": low if isinstance(low, str) else _text(lo),
        "v": volume if isinstance(volume, str) else _text(v),
        "q": quote_volume if isinstance(quote_volume, str) else _text(q),
    }
    if ps is not None:
        ticker["ps"] = ps
    if st is not None:
        ticker["st"] = st
    return ticker


def _dumps(obj: JSON) -> bytes:
    return orjson.dumps(obj)


# --- state ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class FakeConnection:
    """One accepted WebSocket connection, as the fake sees it (identity-compared)."""

    id: int
    path: str  # the request target, query included
    combined: bool
    legacy: bool
    streams: set[str]  # current: URL + subscribed - unsubscribed (always empty on a legacy path)
    url_streams: tuple[str, ...]  # as asked in the URL (also for a legacy path)
    opened_at: float  # loop time
    silenced: bool = False
    #: everything written to the client (data, replies, pings, pongs, the close frame) reaches
    #: it this many seconds late, in order: a congested path (see FakeBinance.lag)
    lag: float = 0.0
    closed_code: int | None = None  # 1006 when the TCP connection ended without a close frame
    closed_reason: str | None = None
    closed_at: float | None = None  # loop time
    #: when either side began to close it (loop time), and which: "server" (a clean close by
    #: the fake), "abort" (the fake ended it without a close frame), or "client" (its reading
    #: ended first: the client's close frame came, or the connection was lost)
    closing_at: float | None = None
    closed_by: str | None = None
    #: the client's close frame: when it arrived (loop time) and the reason it gave, also
    #: when it answers ours or crosses it
    client_close_at: float | None = None
    client_close_reason: str | None = None
    #: when our close frame reaches the client (loop time): behind what is on its way
    server_close_reaches_at: float | None = None
    messages_in: int = 0  # every incoming message, answered or not
    #: every frame counted against the rate limit: messages, pings, pongs (answers or not),
    #: the close frame that starts the client's closing
    frames_in: int = 0
    pings_received: int = 0
    frames_out: int = 0  # data frames sent (publish, send_raw, replies), late ones when queued
    #: when the last market-data frame written to it (``publish``) reaches the client (loop
    #: time): behind a lag, or behind frames still on their way from a lag lifted since
    data_arrives_at: float = 0.0
    pings_sent: int = 0
    pongs_received: int = 0
    ws: ServerConnection | None = field(default=None, repr=False)
    _window: collections.deque[float] = field(default_factory=collections.deque, repr=False)
    #: set when the rate limit was exceeded: how many messages came before the one that was
    #: over (or before the ping or pong that was); the rest are not answered
    _answerable: int | None = field(default=None, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def is_open(self) -> bool:
        """Handshake done and not yet ended (a connection in its closing handshake counts)."""
        return self.closed_at is None

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Until the fake has moved this connection to ``closed``."""
        async with asyncio.timeout(timeout):
            await self._done.wait()


@dataclass
class Stats:
    attempts: int = 0  # WebSocket connection attempts reaching process_request
    handshakes: int = 0  # accepted WebSocket handshakes
    rejected: int = 0  # handshakes the fake refused (404, 400, injected statuses)
    #: over the message limit: closed with 1008 (or closing already, by a client's close frame
    #: over it)
    rate_limit_closes: int = 0
    slow_drops: int = 0  # connections aborted because a send exceeded send_timeout
    rest_requests: int = 0
    #: the symbols asked of ``ticker/24hr``, in order (None: asked without one)
    ticker_requests: list[str | None] = field(default_factory=list)
    tickers_held_max: int = 0  # the most ticker requests held at once (``hold_ticker``)
    # every incoming WebSocket message: (connection id, parsed JSON or the raw str/bytes, loop time)
    requests: list[tuple[int, Any, float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Route:
    combined: bool
    legacy: bool
    streams: tuple[str, ...]


class _Reject(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(status, text)
        self.status = status
        self.text = text


class _BadRequest(Exception):
    def __init__(self, msg: str, id_: int | None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.id = id_


def _response(status: int, body: bytes, content_type: str) -> Response:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    return Response(status, phrase, headers, body)


class _CountingConnection(ServerConnection):
    """Reports each frame the client sends as it arrives, control frames too: Binance counts
    pings and pongs against its message limit, and websockets answers pings on its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived: list[tuple[Opcode, float]] = []  # until the fake's handler takes over
        #: when the client's close frame arrived (loop time): the client let go of the socket
        #: then, though the closing handshake may end later (our answer waits behind a lag)
        self.close_arrived: float | None = None
        self.close_reason_arrived: str | None = None
        self.on_close: Callable[[float], None] = lambda at: None
        self.on_frame: Callable[[Opcode, float], None] = self._keep

    def _keep(self, opcode: Opcode, at: float) -> None:
        self.arrived.append((opcode, at))

    def process_event(self, event: Event) -> None:
        if self.request is not None and isinstance(event, Frame):
            if event.opcode in _COUNTED:
                self.on_frame(event.opcode, self.loop.time())
            elif event.opcode is Opcode.CLOSE and self.close_arrived is None:
                self.close_arrived = self.loop.time()
                try:
                    self.close_reason_arrived = Close.parse(event.data).reason
                except Exception:  # a malformed close frame: websockets fails the connection
                    self.close_reason_arrived = None
                self.on_close(self.close_arrived)
        super().process_event(event)


class _LaggingTransport:
    """A connection's transport that writes ``conn.lag`` seconds late, in order (see
    FakeBinance.lag): websockets writes every frame through it, its own pongs and close frame
    too. With no lag and nothing on its way it writes at once; an abort loses what is on its
    way, as a reset TCP connection does."""

    def __init__(self, transport: Any, conn: FakeConnection) -> None:
        self._transport = transport
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        #: (due loop time, what to do): bytes to write, or "eof" / "close"
        self._late: collections.deque[tuple[float, bytes | str]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def _queue(self, item: bytes | str) -> bool:
        """Put ``item`` in line; False when it may go at once."""
        if self._conn.lag <= 0 and not self._late:
            return False
        due = self._loop.time() + self._conn.lag
        if self._late:
            due = max(due, self._late[-1][0])  # never before what is already on its way
        self._late.append((due, item))
        if self._timer is None:
            self._timer = self._loop.call_at(self._late[0][0], self._flush)
        return True

    def arrival(self) -> float:
        """When a frame written now reaches the client (loop time): never before what is
        already on its way."""
        now = self._loop.time()
        if self._conn.lag <= 0 and not self._late:
            return now
        due = now + self._conn.lag
        return max(due, self._late[-1][0]) if self._late else due

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._late and self._late[0][0] <= now:
            _, item = self._late.popleft()
            if item == "eof":
                self._transport.write_eof()
            elif item == "close":
                self._transport.close()
            else:
                assert isinstance(item, bytes)
                self._transport.write(item)
        if self._late:
            self._timer = self._loop.call_at(self._late[0][0], self._flush)

    def write(self, data: bytes) -> None:
        if not self._queue(bytes(data)):
            self._transport.write(data)

    def write_eof(self) -> None:
        if not self._queue("eof"):
            self._transport.write_eof()

    def close(self) -> None:
        if not self._queue("close"):
            self._transport.close()

    def abort(self) -> None:
        self._late.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.abort()


# --- the fake ------------------------------------------------------------------------------------


class FakeBinance:
    """Fake ``fstream.binance.com`` (mini tickers) and ``fapi.binance.com`` (exchangeInfo).

    Use as ``async with FakeBinance() as fake:``; connect to ``fake.ws_url + "/market/ws/..."``.
    """

    def __init__(
        self,
        *,
        max_streams: int = 200,
        max_incoming_per_s: int | None = None,
        max_age: float | None = None,
        ping_interval: float | None = None,
        symbols: Iterable[str] = (),
        ping_timeout: float | None = None,
        rate_window: float = 1.0,
        close_timeout: float = 1.0,
        compression: bool = False,
        send_timeout: float | None = None,
        market: str = "usdm",
    ) -> None:
        """Limits as the real service, compressible for tests.

        ``max_incoming_per_s``: frames a connection may send within ``rate_window`` (None: the
        market's documented limit, 10 on USD-M and COIN-M, 5 on spot); every message, ping and
        pong counts, and the one over the limit gets the connection closed with 1008.

        Extras: ``ping_timeout`` (None: never drop a client that does not answer; else drop it
        abruptly that many seconds after an unanswered ping), ``rate_window`` (the sliding window of
        ``max_incoming_per_s``, 1 s on Binance), ``close_timeout`` (how long a closing handshake may
        take before the TCP connection is aborted), ``compression`` (offer permessage-deflate),
        ``send_timeout`` (None: a send to a client that stops reading waits forever, and so does
        ``publish``; else such a client is dropped abruptly after that many seconds and counted in
        ``stats.slow_drops``).
        """
        if market not in _MARKETS:
            raise ValueError(f"market: {', '.join(_MARKETS)}, not {market!r}")
        self.market = market
        self._market = _MARKETS[market]
        self.max_streams = max_streams
        self.max_incoming_per_s = (
            self._market.max_incoming_per_s if max_incoming_per_s is None else max_incoming_per_s
        )
        self.max_age = max_age
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.rate_window = rate_window
        self.close_timeout = close_timeout
        self.compression = compression
        self.send_timeout = send_timeout
        self.connections: list[FakeConnection] = []
        self.closed: list[FakeConnection] = []
        self.stats = Stats()
        self.silence_new = False  # silence connections opened from now on
        #: silence connections opened from now on for this kind of stream only (see
        #: silence_opening)
        self.silence_new_kind: str | None = None
        self.lag_new = 0.0  # the lag of connections opened from now on
        self._symbols: list[str] = list(symbols)
        self._reject_remaining = 0
        self._reject_status = 503
        self._rest_fail_status: int | None = None
        self._rest_body: bytes | None = None
        self._ticker_fail_status: int | None = None
        self._ticker_body: bytes | None = None
        self._ticker_body_status = 200
        self._ticker_gate: asyncio.Event | None = None  # set: requests go on; None: never held
        self._tickers_held = 0
        #: the last ticker ``publish`` gave of each symbol: the 24h ticker's source
        self.last_tickers: dict[str, dict[str, Any]] = {}
        self._next_id = 1
        self._server: Server | None = None
        self._port = 0
        self._closers: set[asyncio.Task[None]] = set()

    # --- lifecycle

    async def __aenter__(self) -> FakeBinance:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            create_connection=_CountingConnection,
            compression="deflate" if self.compression else None,
            ping_interval=None,  # our own pinger counts pings and pongs
            ping_timeout=None,
            close_timeout=self.close_timeout,
            server_header=None,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (1001) and the server; wait until all handlers have ended."""
        server = self._server
        if server is None:
            return
        if self._ticker_gate is not None:
            self._ticker_gate.set()  # held requests end (their clients are gone by now)
        await asyncio.gather(
            *(self._close(c, 1001, "server shutting down") for c in list(self.connections))
        )
        server.close()
        await server.wait_closed()
        self._server = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # --- controls

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """exchangeInfo lists these as TRADING USDT perpetuals, plus ``SETTLING_SYMBOL``."""
        self._symbols = list(symbols)

    def fail_rest(self, on: bool = True, status: int = 500) -> None:
        """While on, every REST request gets ``status`` with a Binance-like error body."""
        self._rest_fail_status = status if on else None

    def answer_rest(self, body: bytes | None) -> None:
        """exchangeInfo answers 200 with exactly ``body`` (as JSON) until called with None: a
        broken or hostile answer, as a proxy or a bad deploy might serve."""
        self._rest_body = body

    def fail_ticker(self, on: bool = True, status: int = 500) -> None:
        """While on, every ``ticker/24hr`` request gets ``status`` with a Binance-like error body
        (exchangeInfo still answers)."""
        self._ticker_fail_status = status if on else None

    def answer_ticker(self, body: bytes | None, status: int = 200) -> None:
        """``ticker/24hr`` answers ``status`` with exactly ``body`` (as JSON) until called with
        None: a broken answer, or a front end's error page."""
        self._ticker_body = body
        self._ticker_body_status = status

    def hold_ticker(self, on: bool = True) -> None:
        """While on, ``ticker/24hr`` requests get no answer (a client times out); switched off,
        the held ones are answered. ``stats.tickers_held_max``: the most held at once."""
        if on:
            if self._ticker_gate is None or self._ticker_gate.is_set():
                self._ticker_gate = asyncio.Event()
        elif self._ticker_gate is not None:
            self._ticker_gate.set()

    def reject_handshakes(self, n: int, status: int = 503) -> None:
        """The next ``n`` WebSocket connection attempts (whatever their path) get ``status``."""
        self._reject_remaining = n
        self._reject_status = status

    def silence(
        self, on: bool = True, *, conn: FakeConnection | None = None, future: bool = False
    ) -> None:
        """Keep the socket open (pings and pongs still work) but send no data, answer nothing.

        ``conn=None``: every open connection; with ``future=True`` also connections opened later.
        ``silence(False)`` with ``conn=None`` also stops silencing future connections. Requests a
        silenced connection receives are counted and recorded, never applied.
        """
        if conn is not None:
            conn.silenced = on
            return
        for c in self.connections:
            c.silenced = on
        if future or not on:
            self.silence_new = on
        if not on:
            self.silence_new_kind = None

    def silence_opening(self, kind: str | None) -> None:
        """Silence (as ``silence``) the connections opened from now on for ``kind``, not the
        open ones: ``"all-market"``, those with the all-market stream in their URL;
        ``"symbols"``, the others; ``"any"``, all of them. None: no longer. A mode switch's
        new connections then never deliver nor answer, while the old ones' rotations go on
        (or, with ``"any"``, are given up too). ``silence(False)`` ends it too."""
        if kind not in (None, "all-market", "symbols", "any"):
            raise ValueError(f"kind: 'all-market', 'symbols', 'any' or None, not {kind!r}")
        self.silence_new_kind = kind

    def lag(
        self, seconds: float, *, conn: FakeConnection | None = None, future: bool = False
    ) -> None:
        """Deliver everything written to the client ``seconds`` late, in the order written: a
        slow path to the client, as a congested socket has next to a fresh one. Data frames,
        replies, pings, the pongs answering the client's pings and the close frame all wait
        in the same line (a pong comes after the data sent before it, as over TCP);
        ``send_timeout`` does not apply to late frames. Frames already on their way keep
        their time.

        ``conn=None``: every open connection; with ``future=True`` also connections opened
        later. ``lag(0)`` with ``conn=None`` also ends the lag of future connections. A clean
        close (``drop`` with a code, the max age) comes after the frames on their way; an abort
        loses them.
        """
        if conn is not None:
            conn.lag = seconds
            return
        for c in self.connections:
            c.lag = seconds
        if future or not seconds:
            self.lag_new = seconds

    async def publish(self, tickers: Sequence[dict[str, Any]]) -> int:
        """One tick of the market; returns the number of frames sent (after they are written).

        Per live connection, in stream order (``!miniTicker@arr`` first, then by name): the
        all-market stream gets ONE array of all ``tickers`` (none if ``tickers`` is empty); a
        ``<sym>@miniTicker`` stream gets the ticker(s) whose ``s`` is that symbol. Combined
        connections get each payload wrapped. Silenced and legacy connections get nothing.
        """
        by_stream: dict[str, list[bytes]] = {}
        for t in tickers:
            symbol = t.get("s")
            if isinstance(symbol, str):
                self.last_tickers[symbol] = t
                by_stream.setdefault(f"{symbol.lower()}@miniTicker", []).append(_dumps(t))
        if tickers:
            by_stream[ALL_MARKET_STREAM] = [_dumps(list(tickers))]
        wrapped: dict[str, list[bytes]] = {}

        def frames(stream: str, combined: bool) -> list[bytes]:
            raw = by_stream.get(stream, [])
            if not combined or not raw:
                return raw
            if stream not in wrapped:
                head = b'{"stream":' + _dumps(stream) + b',"data":'
                wrapped[stream] = [head + payload + b"}" for payload in raw]
            return wrapped[stream]

        jobs: list[Coroutine[Any, Any, int]] = []
        for conn in list(self.connections):
            if conn.legacy or conn.silenced:
                continue
            out = [f for s in sorted(conn.streams) for f in frames(s, conn.combined)]
            if out:
                jobs.append(self._send(conn, out, data=True))
        return sum(await asyncio.gather(*jobs))

    async def send_raw(
        self,
        data: str | bytes,
        *,
        conn: FakeConnection | None = None,
        binary: bool = False,
    ) -> int:
        """Send ``data`` as one frame, exactly as given; returns the number of frames sent.

        ``str`` goes as a text frame; ``bytes`` also as a TEXT frame with those bytes (not
        validated: invalid UTF-8 is possible) unless ``binary=True``. ``conn=None``: every open
        connection that is neither silenced nor legacy; an explicit ``conn`` gets it regardless.
        """
        payload = data.encode() if isinstance(data, str) else data
        targets = (
            [conn]
            if conn is not None
            else [c for c in self.connections if not c.silenced and not c.legacy]
        )
        sent = await asyncio.gather(*(self._send(c, [payload], text=not binary) for c in targets))
        return sum(sent)

    async def drop(
        self, *, code: int | None = None, conn: FakeConnection | None = None, reason: str = ""
    ) -> None:
        """End ``conn`` (None: every open connection) and wait until it is in ``closed``.

        ``code=None``: abort the TCP connection without a close frame (the client sees 1006);
        else a clean closing handshake with that code.
        """
        targets = [conn] if conn is not None else list(self.connections)
        await asyncio.gather(*(self._close(c, code, reason) for c in targets))

    # --- waiting

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
        await wait_until(predicate, timeout, seen=lambda: f"open connections: {self.connections}")

    async def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:
        """Until at least ``n`` connections are open."""
        await self.wait_for(lambda: len(self.connections) >= n, timeout)

    async def wait_for_subscriptions(self, streams: AbstractSet[str], timeout: float = 5.0) -> None:
        """Until the open connections' streams together cover ``streams``."""
        await self.wait_for(lambda: streams <= self.subscribed(), timeout)

    def subscribed(self) -> set[str]:
        """The union of the open connections' current streams."""
        out: set[str] = set()
        for c in self.connections:
            out |= c.streams
        return out

    # --- HTTP side

    def _route(self, target: str) -> _Route:
        parts = urlsplit(target)
        path = unquote(parts.path)
        live = self._market.prefix
        if path.startswith(live + "/"):
            rest = path[len(live) :]
            if rest in ("/ws", "/ws/"):
                return _Route(False, False, ())
            if rest.startswith("/ws/"):
                stream = rest[len("/ws/") :]
                if "/" in stream:
                    raise _Reject(404, "Not Found")
                return _Route(False, False, self._checked((stream,)))
            if rest == "/stream":
                return _Route(True, False, self._checked(self._query_streams(parts.query)))
        legacy = self._market.legacy
        if legacy and (path == "/ws" or path.startswith("/ws/")):
            return _Route(False, True, tuple(s for s in path[4:].split("/") if s))
        if legacy and path == "/stream":
            return _Route(True, True, tuple(self._query_streams(parts.query)))
        raise _Reject(404, "Not Found")

    @staticmethod
    def _query_streams(query: str) -> list[str]:
        values = parse_qs(query).get("streams", [])
        return values[0].split("/") if values else []

    def _checked(self, streams: Sequence[str]) -> tuple[str, ...]:
        for s in streams:
            if not valid_stream(s):
                raise _Reject(400, f"Invalid stream name: {s!r}")
        unique = tuple(dict.fromkeys(streams))
        if len(unique) > self.max_streams:
            raise _Reject(400, f"Too many streams: {len(unique)} > {self.max_streams}")
        return unique

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if path == TICKER_PATHS[self.market]:
            return await self._ticker(parse_qs(parts.query).get("symbol", [None])[0])
        if path.startswith(("/fapi/", "/dapi/", "/api/")):
            return self._rest(path)
        self.stats.attempts += 1
        try:
            if self._reject_remaining > 0:
                self._reject_remaining -= 1
                raise _Reject(self._reject_status, "Service unavailable (injected)")
            self._route(request.path)
        except _Reject as r:
            self.stats.rejected += 1
            return _response(r.status, r.text.encode(), "text/plain; charset=utf-8")
        return None

    def _rest(self, path: str) -> Response:
        self.stats.rest_requests += 1
        if self._rest_fail_status is not None:
            body = {"code": -1000, "msg": "An unknown error occurred while processing the request."}
            return _response(self._rest_fail_status, _dumps(body), "application/json")
        if path != self._market.info_path:
            not_found = {"code": -5000, "msg": "Path not found"}
            return _response(404, _dumps(not_found), "application/json")
        if self._rest_body is not None:
            return _response(200, self._rest_body, "application/json")
        return _response(200, _dumps(self.exchange_info()), "application/json")

    async def _ticker(self, symbol: str | None) -> Response:
        self.stats.rest_requests += 1
        self.stats.ticker_requests.append(symbol)
        gate = self._ticker_gate
        if gate is not None and not gate.is_set():
            self._tickers_held += 1
            self.stats.tickers_held_max = max(self.stats.tickers_held_max, self._tickers_held)
            try:
                await gate.wait()
            finally:
                self._tickers_held -= 1
        status = self._rest_fail_status or self._ticker_fail_status
        if status is not None:
            body = {"code": -1000, "msg": "An unknown error occurred while processing the request."}
            return _response(status, _dumps(body), "application/json")
        if self._ticker_body is not None:
            return _response(self._ticker_body_status, self._ticker_body, "application/json")
        if symbol is None:  # every symbol's, as Binance answers (weight 40)
            every = [self.ticker_24hr(s) for s in sorted({*self._symbols, *self.last_tickers})]
            return _response(200, _dumps(every), "application/json")
        if symbol not in self.last_tickers and symbol not in self._symbols:
            invalid = {"code": -1121, "msg": "Invalid symbol."}
            return _response(400, _dumps(invalid), "application/json")
        one = self.ticker_24hr(symbol)
        return _response(200, _dumps([one] if self.market == "coinm" else one), "application/json")

    def ticker_24hr(self, symbol: str) -> dict[str, Any]:
        """``symbol``'s 24h statistics as this market's ``ticker/24hr`` answers them, from its
        last published mini ticker (a listed symbol never published: zeros, as for one that
        has not traded). The shapes (Binance's documentation of each endpoint):

        - USD-M: ``{"symbol", "priceChange", "priceChangePercent", "weightedAvgPrice",
          "lastPrice", "lastQty", "openPrice", "highPrice", "lowPrice", "volume",
          "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count"}``;
        - spot: the same plus ``"prevClosePrice", "bidPrice", "bidQty", "askPrice", "askQty"``;
        - COIN-M: a LIST of objects (one per symbol asked, all of a pair's with ``pair=``),
          each with ``"pair"``, and ``"baseVolume"`` in place of ``"quoteVolume"``: its
          ``volume`` counts contracts, ``baseVolume`` the coin (what its mini ticker's ``q`` is).

        Prices and volumes are decimal strings, the times (ms) and ids numbers; ``closeTime`` is
        the mini ticker's ``E``. An unknown symbol gets 400 ``{"code": -1121, "msg": "Invalid
        symbol."}``.
        """
        t = self.last_tickers.get(symbol, {})
        close_time = t.get("E") if type(t.get("E")) is int else int(_time.time() * 1000)
        last, open_ = str(t.get("c", "0")), str(t.get("o", t.get("c", "0")))
        try:
            change = Decimal(last) - Decimal(open_)
            percent = change / Decimal(open_) * 100 if Decimal(open_) else Decimal(0)
        except ArithmeticError:  # a malformed ticker published on purpose
            change = percent = Decimal(0)
        out: dict[str, Any] = {
            "symbol": symbol,
            "priceChange": _text(change),
            "priceChangePercent": f"{percent:.3f}",
            "weightedAvgPrice": last,
            "lastPrice": last,
            "lastQty": "1",
            "openPrice": open_,
            "highPrice": str(t.get("h", last)),
            "lowPrice": str(t.get("l", last)),
            "volume": str(t.get("v", "0")),
            "quoteVolume": str(t.get("q", "0")),
            "openTime": close_time - DAY_MS,
            "closeTime": close_time,
            "firstId": 1,
            "lastId": 1,
            "count": 1 if t else 0,
        }
        if self.market == "spot":
            out.update(prevClosePrice=open_, bidPrice=last, bidQty="1", askPrice=last, askQty="1")
        elif self.market == "coinm":
            out = {"symbol": symbol, "pair": t.get("ps", symbol), **out}
            out["baseVolume"] = out.pop("quoteVolume")
        return out

    def exchange_info(self) -> dict[str, Any]:
        """The exchangeInfo body served now."""
        key = self._market.status_key
        spot = self.market == "spot"
        symbols = [_symbol_info(s, "TRADING", key, spot) for s in self._symbols]
        symbols.append(_symbol_info(SETTLING_SYMBOL, "BREAK" if spot else "SETTLING", key, spot))
        now_ms = int(_time.time() * 1000)
        return {"timezone": "UTC", "serverTime": now_ms, "symbols": symbols}

    # --- WebSocket side

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        route = self._route(ws.request.path)  # accepted by _process_request: cannot raise
        loop = asyncio.get_running_loop()
        conn = FakeConnection(
            id=self._next_id,
            path=ws.request.path,
            combined=route.combined,
            legacy=route.legacy,
            streams=set() if route.legacy else set(route.streams),
            url_streams=route.streams,
            opened_at=loop.time(),
            silenced=self.silence_new or self._silenced_kind(route),
            lag=self.lag_new,
            ws=ws,
        )
        ws.transport = _LaggingTransport(ws.transport, conn)
        self._next_id += 1
        self.stats.handshakes += 1
        self.connections.append(conn)
        assert isinstance(ws, _CountingConnection)
        for opcode, at in ws.arrived:  # frames that came before this handler ran
            self._incoming(conn, opcode, at)
        ws.on_frame = lambda opcode, at: self._incoming(conn, opcode, at)
        ws.on_close = lambda at: self._client_closing(conn, at)
        tasks: list[asyncio.Task[None]] = []
        if self.ping_interval is not None:
            tasks.append(asyncio.create_task(self._pinger(conn, self.ping_interval)))
        if self.max_age is not None:
            tasks.append(asyncio.create_task(self._age_limit(conn, self.max_age)))
        try:
            await self._read_loop(conn, ws)
            if conn.closing_at is None:
                conn.closing_at, conn.closed_by = ws.close_arrived or loop.time(), "client"
            await ws.wait_closed()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if conn.closed_code is None:
                conn.closed_code = ws.close_code if ws.close_code is not None else 1006
                conn.closed_reason = ws.close_reason
            conn.closed_at = loop.time()
            if conn.closing_at is None:  # the handler was cancelled
                conn.closing_at, conn.closed_by = conn.closed_at, "server"
            self.connections.remove(conn)
            self.closed.append(conn)
            conn._done.set()

    def _silenced_kind(self, route: _Route) -> bool:
        kind = self.silence_new_kind
        if kind is None or kind == "any":
            return kind == "any"
        return (ALL_MARKET_STREAM in route.streams) == (kind == "all-market")

    def _client_closing(self, conn: FakeConnection, at: float) -> None:
        """The client's close frame arrived: it let go of the socket then, however long the
        closing handshake takes after (our answer waits behind a lag). A close frame that
        starts the closing counts toward the message limit, as any frame the client sends
        (one answering ours does not: the closing was ours)."""
        conn.client_close_at = at
        if isinstance(conn.ws, _CountingConnection):
            conn.client_close_reason = conn.ws.close_reason_arrived
        if conn.closing_at is None:
            conn.closing_at, conn.closed_by = at, "client"
            self._incoming(conn, Opcode.CLOSE, at)

    async def _read_loop(self, conn: FakeConnection, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        read = 0
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed:
                return
            read += 1
            parsed: Any = message
            is_json = False
            if isinstance(message, str):
                with contextlib.suppress(ValueError):
                    parsed = orjson.loads(message)
                    is_json = True
            self.stats.requests.append((conn.id, parsed, loop.time()))
            if conn._answerable is not None and read > conn._answerable:
                return  # over the rate limit: the connection is being closed with 1008
            if conn.legacy or conn.silenced:
                continue
            reply = self._answer(conn, message, parsed, is_json)
            await self._send(conn, [_dumps(reply)])

    def _incoming(self, conn: FakeConnection, opcode: Opcode, now: float) -> None:
        """Count one frame as it arrives, against a sliding window of ``rate_window``."""
        conn.frames_in += 1
        if opcode is Opcode.PING:
            conn.pings_received += 1
        elif opcode in (Opcode.TEXT, Opcode.BINARY):
            conn.messages_in += 1
        if conn._answerable is not None:
            return  # already over: closing
        window = conn._window
        while window and window[0] <= now - self.rate_window:
            window.popleft()
        window.append(now)
        if len(window) > self.max_incoming_per_s:
            if opcode is Opcode.CLOSE:  # over, but closing already: nothing more to answer
                conn._answerable = conn.messages_in
                self.stats.rate_limit_closes += 1
                return
            is_message = opcode in (Opcode.TEXT, Opcode.BINARY)
            conn._answerable = conn.messages_in - (1 if is_message else 0)
            self.stats.rate_limit_closes += 1
            closer = asyncio.create_task(self._close(conn, 1008, "Too many requests", wait=False))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)

    def _answer(
        self, conn: FakeConnection, message: str | bytes, parsed: Any, is_json: bool
    ) -> JSON:
        try:
            if isinstance(message, bytes):
                raise _BadRequest("binary frames are not accepted", None)
            if not is_json:
                raise _BadRequest("invalid JSON", None)
            return self._apply(conn, parsed)
        except _BadRequest as e:
            return {"error": {"code": 2, "msg": f"Invalid request: {e.msg}"}, "id": e.id}

    def _apply(self, conn: FakeConnection, req: Any) -> JSON:
        if not isinstance(req, dict):
            raise _BadRequest("request must be a JSON object", None)
        raw_id = req.get("id")
        if type(raw_id) is not int or not 0 <= raw_id <= _UINT64_MAX:
            raise _BadRequest("'id' must be an unsigned integer", None)
        id_: int = raw_id
        method = req.get("method")
        params = req.get("params")
        if method == "LIST_SUBSCRIPTIONS":
            if params not in (None, []):
                raise _BadRequest("LIST_SUBSCRIPTIONS takes no params", id_)
            return {"result": sorted(conn.streams), "id": id_}
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            raise _BadRequest(f"unknown method {method!r}", id_)
        if not isinstance(params, list) or not params:
            raise _BadRequest("'params' must be a non-empty list of stream names", id_)
        for p in params:
            if not valid_stream(p):
                raise _BadRequest(f"invalid stream name {p!r}", id_)
        if method == "SUBSCRIBE":
            after = conn.streams | set(params)
            if len(after) > self.max_streams:
                raise _BadRequest(
                    f"too many streams: {len(after)} > {self.max_streams} per connection", id_
                )
            conn.streams = after
        else:
            conn.streams = conn.streams - set(params)
        return {"result": None, "id": id_}

    async def _send(
        self, conn: FakeConnection, frames: list[bytes], *, text: bool = True, data: bool = False
    ) -> int:
        ws = conn.ws
        sent = 0
        if ws is None or ws.state is not State.OPEN:
            return 0
        try:
            async with asyncio.timeout(self.send_timeout):
                for f in frames:
                    if data:  # written in this call, with no await before the write
                        assert isinstance(ws.transport, _LaggingTransport)
                        conn.data_arrives_at = ws.transport.arrival()
                    await ws.send(f, text=text)
                    sent += 1
        except ConnectionClosed:
            pass
        except TimeoutError:
            self.stats.slow_drops += 1
            await self._close(conn, None, "", wait=False)
        conn.frames_out += sent
        return sent

    async def _close(
        self, conn: FakeConnection, code: int | None, reason: str, *, wait: bool = True
    ) -> None:
        ws = conn.ws
        if ws is None or not conn.is_open:
            return
        if conn.closing_at is None:
            conn.closing_at = asyncio.get_running_loop().time()
            conn.closed_by = "abort" if code is None else "server"
        if conn.closed_code is None and ws.close_code is None:
            conn.closed_code = 1006 if code is None else code
            conn.closed_reason = None if code is None else reason
        if code is None:
            ws.transport.abort()
        else:
            if conn.server_close_reaches_at is None and isinstance(ws.transport, _LaggingTransport):
                conn.server_close_reaches_at = ws.transport.arrival()
            await ws.close(code, reason)
        if wait:
            await conn._done.wait()

    async def _pinger(self, conn: FakeConnection, interval: float) -> None:
        ws = conn.ws
        assert ws is not None
        while True:
            await asyncio.sleep(interval)
            try:
                pong = await ws.ping()
            except ConnectionClosed:
                return
            conn.pings_sent += 1
            try:
                async with asyncio.timeout(self.ping_timeout):
                    await pong
            except TimeoutError:
                await self._close(conn, None, "", wait=False)
                return
            except ConnectionClosed:
                return
            conn.pongs_received += 1

    async def _age_limit(self, conn: FakeConnection, max_age: float) -> None:
        await asyncio.sleep(max_age)
        await self._close(conn, 1001, "going away", wait=False)


def _symbol_info(symbol: str, status: str, key: str, spot: bool) -> dict[str, Any]:
    if spot:
        return {"symbol": symbol, key: status, "quoteAsset": "USDT"}
    return {
        "symbol": symbol,
        "pair": symbol,
        key: status,
        "contractType": "PERPETUAL",
        "quoteAsset": "USDT",
    }
