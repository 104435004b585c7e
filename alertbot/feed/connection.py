"""One logical Binance connection: a set of streams kept flowing whatever the network does.

A :class:`Connection` owns the streams it was given and keeps a live socket delivering them:

- it reconnects after any close or error, with capped, jittered exponential backoff that is
  reset only once a connection has delivered for ``healthy_after`` (a server that accepts and
  then closes at once is not retried in a tight loop);
- a data watchdog ends a socket that stays open but delivers no market data for
  ``stale_after`` (the field failure that matters most: a silently dead feed);
- before Binance's 24 h limit it rotates make-before-break: a second socket is opened and the
  old one is closed only once the new one delivers (or, both being quiet, has not) and then
  answers a request, so nothing is lost (the engine drops the duplicates by symbol and event
  time). Meanwhile the two are merged by event time: what the
  new one delivers is held, and handed on before anything newer from the old one, or when
  the old one has caught up with it. An old socket that lags behind (a congested path) would
  otherwise hand over its last ticks after the new one's newer ones, and the engine would
  drop them as out of order;
- live SUBSCRIBE/UNSUBSCRIBE go out at most the market's ``request_rate`` per second (what
  its message limit leaves to them after pings and pongs), batched, each waiting for its
  ``{"result": null, "id": N}``; a refused batch is retried stream by stream so that one bad
  stream does not take the others down with it;
- nothing the network sends kills it: bad frames are counted (logged once per kind) and
  skipped, and a failure in the consumer is contained.

websockets' reconnecting ``async for ... in connect()`` iterator is not used: it resets its
backoff as soon as a handshake succeeds, and rotation needs two sockets at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from alertbot import __version__
from alertbot.feed.market import ALL_MARKET, stream_symbol
from alertbot.feed.settings import FeedSettings
from alertbot.tasks import cancel_and_wait
from alertbot.text import plural

log = logging.getLogger("alertbot.feed")

#: receives every market-data message: the decoded object and the raw text as received; with
#: ``undecoded``, a ticker frame in Binance's plain form comes as its bytes, twice
Sink = Callable[[Any, "str | bytes"], None]

#: a frame kept from the sink: its (first element's) event time, the object, the raw text,
#: when it arrived (loop time)
Held = tuple[int, Any, "str | bytes", float]

#: the start of a ticker frame as Binance writes it (array, object, or combined wrapper), with
#: the first element's event time: such a frame is data and needs no decoding to be classified.
#: A frame that starts so but is not valid JSON is found out by the consumer when it reads it.
#: catch-up requests whose late reply is recognised, per socket (see Connection._given_up)
_GIVEN_UP = 64

_PLAIN_DATA = re.compile(
    rb'[ \t\n\r]*(?:\{"stream":"[^"\\]*","data":)?\[?\{"e":"24hrMiniTicker","E":'
    rb"(0|[1-9][0-9]{0,17})[,}]"
)


class Backoff:
    """Capped exponential backoff with jitter: each delay is drawn from [base/2, base]."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempt)
        if base < self.maximum:
            self.attempt += 1
        return base * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.attempt = 0


class Problems:
    """Counts of what went wrong, by kind; each kind is logged the first time only."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, kind: str, detail: str = "", *, quiet: bool = False) -> None:
        """Count one; ``quiet``: the caller logs it itself (every time)."""
        n = self.counts.get(kind, 0) + 1
        if quiet:
            self.counts[kind] = n
        else:
            self.set(kind, n, detail)

    def set(self, kind: str, n: int, detail: str = "", level: int = logging.WARNING) -> None:
        """Set a count kept elsewhere (the engine's skipped tickers); logged the first time."""
        if n > 0 and kind not in self.counts:
            suffix = f": {detail}" if detail else ""
            log.log(level, "feed: %s%s (counted, logged once)", kind, suffix)
        self.counts[kind] = n

    def total(self) -> int:
        return sum(self.counts.values())


class Outage:
    """A stretch with no data on a connection, longer than its stale threshold."""

    __slots__ = ("duration", "last_event", "resume_event", "symbols")

    def __init__(
        self,
        symbols: frozenset[str] | None,
        last_event: int,
        duration: float,
        resume_event: int = -1,
    ) -> None:
        self.symbols = symbols  # None: every symbol (the all-market stream)
        self.last_event = last_event  # the last event time received before it
        self.duration = duration
        self.resume_event = resume_event  # the first received after it (-1: not known)

    def covers(self, symbol: str, previous_time: int, time: int) -> bool:
        """Whether an alert computed from ``previous_time`` to ``time`` spans this outage."""
        if self.symbols is not None and symbol not in self.symbols:
            return False
        if self.resume_event > self.last_event:
            # the marks are frames' first elements' event times, and the other elements of an
            # all-market frame carry their own, a little newer or older: the middle of the
            # silence (longer than the stale threshold) parts the ticks before from the ones
            # after
            middle = (self.last_event + self.resume_event) // 2
            return 0 <= previous_time <= middle < time
        return 0 <= previous_time <= self.last_event < time


class FeedStats:
    """Counters shared by a feed's connections."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.messages = 0
        self.reconnects = 0
        #: handovers done, the new connections taking over: a connection's rotation to a new
        #: socket, a mode switch (all-market <-> symbol streams)
        self.rotations = 0
        self.switches = 0
        #: handovers given up (each tried again later, the old connections carrying on): a
        #: rotation's new socket, a mode switch's new connections
        self.rotations_failed = 0
        self.switches_failed = 0
        self.problems = Problems()
        self.outages: deque[Outage] = deque(maxlen=32)
        self.last_data_at: float | None = None
        self._second = 0
        self._this_second = 0
        self._last_second_count = 0

    def data(self, now: float) -> None:
        self.messages += 1
        self.last_data_at = now
        second = int(now)
        if second != self._second:
            self._last_second_count = self._this_second if second == self._second + 1 else 0
            self._second = second
            self._this_second = 0
        self._this_second += 1

    def messages_per_second(self) -> float:
        """Messages in the last whole second."""
        second = int(self.clock())
        if second == self._second:
            return float(self._last_second_count)
        if second == self._second + 1:
            return float(self._this_second)
        return 0.0


def _event_of(held: Held) -> int:
    return held[0]


def _take_while(held: list[Held], taking: Callable[[Held], bool]) -> list[Held]:
    """Take from ``held`` its first frames for which ``taking`` holds."""
    n = 0
    while n < len(held) and taking(held[n]):
        n += 1
    taken = held[:n]
    del held[:n]
    return taken


def _event_time(obj: Any) -> int:
    """The event time of a data message (its first element's), or -1."""
    if type(obj) is dict and "data" in obj:
        obj = obj["data"]
    if type(obj) is list:
        if not obj:
            return -1
        obj = obj[0]
    if type(obj) is dict:
        e = obj.get("E")
        if type(e) is int:
            return e
    return -1


def describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code} at the handshake"
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is None:
            return "closed abruptly (no close frame)"
        return f"closed with code {rcvd.code}" + (f" ({rcvd.reason})" if rcvd.reason else "")
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


class _Session:
    """One socket of a connection."""

    reader: asyncio.Task[None]  # set by Connection._open

    def __init__(
        self, ws: ClientConnection, streams: Iterable[str], opened_at: float, held: bool = False
    ) -> None:
        self.ws = ws
        self.subscribed: set[str] = set(streams)
        self.opened_at = opened_at
        self.first_data_at: float | None = None
        self.last_data_at: float | None = None
        # the watchdog's mark before any data: when it opened, or, for a socket taken over
        # before it delivered, when its predecessor last did
        self.quiet_since = opened_at
        self.last_event = -1
        self.next_id = 0
        #: when the next request of ours may go (loop time): live requests and catch-ups'
        #: requests share the request pace (see Connection._reserve)
        self.next_send_at = 0.0
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: catch-up requests given up before their reply came: a late reply is not a reply to
        #: nothing we asked (see Connection._given_up)
        self.given_up: set[int] = set()
        self.first_data = asyncio.Event()
        self.control: asyncio.Task[None] | None = None
        self.answered = asyncio.Event()  # set after each live request's reply is applied
        self.split: set[str] = set()  # streams to subscribe one by one after a refused batch
        #: a rotation's new socket: what it delivers, kept until the old one has caught up
        self.held: list[Held] | None = [] if held else None
        #: the reason its close frame gives: why the bot let go of it, when not for a handover
        self.let_go = ""


class Connection:
    """Keeps ``streams`` flowing to ``sink`` over one socket at a time (two while rotating)."""

    def __init__(
        self,
        cid: int,
        streams: Iterable[str],
        *,
        raw: bool,
        settings: FeedSettings,
        stats: FeedStats,
        sink: Sink,
        undecoded: bool = False,
        on_progress: Callable[[], None] = lambda: None,
        on_refused: Callable[[str, str], None] = lambda stream, reason: None,
        on_deliver: Callable[[Connection, int], bool] = lambda conn, event: False,
        on_released: Callable[[], None] = lambda: None,
        on_ahead: Callable[[Connection, int], None] = lambda conn, event: None,
        burst: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.id = cid
        self.raw = raw  # one stream on a raw URL; else a combined URL plus live subscriptions
        self.streams: set[str] = set(streams)  # what should be flowing
        if raw and len(self.streams) != 1:
            raise ValueError("a raw connection carries exactly one stream")
        self.settings = settings
        self.stats = stats
        self.sink = sink
        self.undecoded = undecoded
        self.on_progress = on_progress
        self.on_refused = on_refused
        #: before a frame (its event time) goes to the sink: the feed hands on first what
        #: other connections hold that is older; True: the frame must wait (see hand_on_waiting)
        self.on_deliver = on_deliver
        #: after frames this connection held are handed on or dropped: frames other
        #: connections keep waiting for them may go now
        self.on_released = on_released
        #: before a frame this connection held goes to the sink without passing the merge
        #: (released ahead of another's frame, or held for ``drain_timeout``): the feed hands
        #: on first what other connections keep back that is older
        self.on_ahead = on_ahead
        #: around handing on frames held back (or kept waiting): many at once, which the sink
        #: must not take for an engine falling behind (Handoff.burst)
        self.burst = burst
        self.stale_after = (
            settings.stale_after if ALL_MARKET in self.streams else settings.symbol_stale_after
        )
        self.live_only = False  # open with no streams in the URL and SUBSCRIBE them all
        self.reconnects = 0
        #: sockets that ended under it (not handed over by a rotation): what was on its way
        #: over them may be lost, and a switch waiting on it starts over
        self.losses = 0
        self.messages = 0
        self.last_error: str | None = None
        self.session: _Session | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self._down_since: float | None = None  # data stopped then (for outage accounting)
        self._down_event = -1
        #: what the connection delivers, kept from the sink while an old connection that it
        #: replaces catches up (see hold)
        self._held: list[Held] | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        self._rotating: _Session | None = None  # a rotation's new socket, while it holds
        #: this connection's own frames kept back while another's held older ones go first
        #: (see on_deliver): event time, object, raw text, and when they arrived (loop
        #: time), in order
        self._waiting: deque[Held] = deque()
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-connection-{self.id}")

    async def close(self, *, keep_held: bool = False) -> None:
        """Stop, and close the socket. What it holds goes nowhere, unless ``keep_held``: then
        it stays held, merged as before, until :meth:`release` (it takes in nothing more).
        What a rotation's new socket holds is handed on (held so, if kept): the ticks it
        delivered while the old one was read to its end may be all there is of them."""
        if keep_held and self._held is not None:
            self._release_rotating()
            if self._task is not None:
                await cancel_and_wait(self._task)
                self._task = None
            return
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        was_holding, self._held = self._held is not None, None  # what it held goes nowhere now
        self._release_rotating()
        # what it kept back waiting for another connection's held frames is market data all
        # the same: handed on rather than lost, outside the merge, each frame after what the
        # other connections' rotations hold that is older (a switch to the all-market stream
        # done, its connection's rotation may hold the only copy of an older tick)
        waiting, self._waiting = self._waiting, deque()
        self._hand_on_held(list(waiting))
        if was_holding:
            self.on_released()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    def subscribe(self, streams: Iterable[str]) -> None:
        self._change(self.streams | set(streams))

    def unsubscribe(self, streams: Iterable[str]) -> None:
        self._change(self.streams - set(streams))

    def _change(self, streams: set[str]) -> None:
        if self.raw:
            raise ValueError("a raw connection's stream cannot change")
        self.streams = streams
        self._changed.set()

    def hold(self) -> None:
        """Keep what arrives from now on from the sink, until :meth:`release`: while an old
        connection carrying the same streams catches up (a mode switch), so that its last
        ticks, when it lags, are not overtaken by this one's newer ones. Held frames older
        than a frame the old one delivers go first (:meth:`release_before`), and none is held
        longer than ``drain_timeout``."""
        if self._held is None:
            self._held = []

    def release(self, ahead: Callable[[int], None] | None = None) -> None:
        """Hand what was held to the sink, in order, and deliver straight on from now;
        ``ahead(event)`` before each frame hands on what must go ahead of it."""
        held, self._held = self._held, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        with self.burst():
            for event, obj, raw, _ in held or ():
                if ahead is not None:
                    ahead(event)
                self._deliver(event, obj, raw)
        if held is not None:
            self.on_released()

    def release_rotating_before(self, event: int) -> None:
        """Hand on what a rotation's new socket holds that is older than ``event``: another
        connection is about to hand on a frame of that event time, which would overtake
        them (the engine drops what is older than the last ticker it has)."""
        rotating = self._rotating
        if rotating is not None and rotating.held:
            self._release(rotating, before=event)

    def release_before(self, event: int, behind: Iterable[tuple[float, int]] = ()) -> None:
        """Hand on the held frames older than ``event`` (another connection is about to
        deliver it: they go first), and keep holding the rest.

        ``behind``: the other old sockets, each as (when it opened, its last event time): a
        held frame goes only once each one that was open before it arrived has passed its
        event time too (one that lags behind still has older ticks on their way; one opened
        after was sent only newer ones)."""
        others = list(behind)

        def ahead(h: Held) -> bool:
            return h[0] < event and all(h[3] < opened or h[0] < last for opened, last in others)

        go = self._take_ahead(self._held or [], ahead)
        if go:
            self._hand_on_held(go)

    def _release_due(self) -> None:
        """Hand on the frames held for ``drain_timeout``: an old connection that is that far
        behind, or down, holds back no longer."""
        self._held_timer = None
        held = self._held or []
        edge = self._loop.time() - self.settings.drain_timeout
        due_now = _take_while(held, lambda h: h[3] <= edge)
        self._hand_on_held(due_now)
        if held:
            due = held[0][3] + self.settings.drain_timeout
            self._held_timer = self._loop.call_at(due, self._release_due)
        if due_now:
            self.on_released()

    def holds_before(self, event: int) -> bool:
        """Whether a frame older than ``event`` is still held: another connection's frame of
        that event time must not go ahead of it. Its socket may not have been sent the held
        one's ticks, even when it was open then: it was down or not yet subscribed, or it
        carries symbol streams, which Binance sends every 2 s, and the held frame came on the
        all-market stream, sent every second (and the engine would drop the held, older tick
        behind the newer one).

        So is what a rotation's new socket holds while its old one is read to its end: those
        are this connection's ticks too, and may be all there is of some (soak seed 2720: a
        switch's all-market connection rotated while the symbol connection was down, and the
        symbol connection's first frame after it reconnected overtook them)."""
        rotating = self._rotating
        return self._holds_older(self._held, event) or (
            rotating is not None and self._holds_older(rotating.held, event)
        )

    def _holds_older(self, held: list[Held] | None, event: int) -> bool:
        """Whether a frame of ``held`` goes ahead of another connection's frame of event
        time ``event`` (see _take_ahead)."""
        if not held:
            return False
        if ALL_MARKET in self.streams:
            return held[0][0] < event
        return any(h[0] < event for h in held)

    def _take_ahead(self, held: list[Held], ahead: Callable[[Held], bool]) -> list[Held]:
        """Take from ``held`` the frames that go ahead of another connection's frame, those
        for which ``ahead`` holds (older than it, and no longer waited for), in the order
        they came.

        An all-market connection's frames each carry every symbol, and go in the order they
        came: only the first ones for which ``ahead`` holds. One that came after a newer
        frame (a late duplicate) goes only behind it, and so does not keep the other frame
        waiting either (holds_before): the other frame would go behind that newer one too,
        and the engine would drop its ticks that are older (soak seed 8184).

        A symbol connection's frames are each one symbol's tick, in order per symbol but
        not across symbols: all for which ``ahead`` holds go (the ones of each symbol that
        may go come before those that may not), and a newer tick of one symbol does not
        keep an older one of another back (the other frame would have to wait for it, see
        holds_before, for as long as the hold lasts)."""
        if ALL_MARKET in self.streams:
            return _take_while(held, ahead)
        go: list[Held] = []
        keep: list[Held] = []
        for h in held:
            (go if ahead(h) else keep).append(h)
        if go:
            held[:] = keep
        return go

    @property
    def waiting(self) -> bool:
        """Whether frames of this connection are kept back (see on_deliver)."""
        return bool(self._waiting)

    def hand_on_waiting(self, must_wait: Callable[[int], bool]) -> bool:
        """Hand on the frames kept back, in order, up to the first for which ``must_wait``
        (its event time) holds; whether any went.

        ``must_wait`` may hand on frames of this connection itself (a held frame it lets go
        first takes the older ones of the waiting ones ahead of it, see on_ahead): each
        frame leaves the line before it goes, and one no longer first is not handed on twice."""
        waiting = self._waiting
        went = False
        with self.burst():
            while waiting:
                first = waiting[0]
                wait = must_wait(first[0])
                if not waiting or waiting[0] is not first:
                    went = True  # handed on meanwhile: the new first is asked anew
                    continue
                if wait:
                    break
                waiting.popleft()
                self._sink(first[1], first[2])
                went = True
        return went

    @property
    def holding(self) -> bool:
        return self._held is not None

    @property
    def ready(self) -> bool:
        """A socket is open and every wanted stream is subscribed on it."""
        s = self.session
        return s is not None and self.streams <= s.subscribed

    @property
    def live(self) -> bool:
        """A socket is open (its reader has not ended)."""
        s = self.session
        return s is not None and not s.reader.done()

    @property
    def delivering(self) -> bool:
        s = self.session
        return s is not None and s.first_data_at is not None

    def symbols(self) -> frozenset[str] | None:
        """The symbols this connection carries; None for every symbol."""
        if ALL_MARKET in self.streams:
            return None
        return frozenset(s for s in map(stream_symbol, self.streams) if s)

    def last_data_age(self) -> float | None:
        s = self.session
        if s is None or s.last_data_at is None:
            return None
        return self._loop.time() - s.last_data_at

    # ------------------------------------------------------------------ lifecycle

    async def _run(self) -> None:
        cfg = self.settings
        backoff = Backoff(cfg.backoff_initial, cfg.backoff_max, cfg.backoff_factor)
        try:
            while True:
                try:
                    session = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(f"connect failed: {describe(exc)}")
                    self._refused_url(exc)
                else:
                    reason = await self._serve(session, backoff)
                    self.losses += 1
                    self._failed(reason)
                if not self.streams:
                    await self._changed.wait()  # nothing to carry until streams come back
                    continue
                delay = backoff.next()
                log.info("feed connection %d: reconnecting in %.2fs", self.id, delay)
                await asyncio.sleep(delay)
                self.reconnects += 1
                self.stats.reconnects += 1
        finally:
            s, self.session = self.session, None
            if s is not None:
                self._end(s)

    def _refused_url(self, exc: Exception) -> None:
        """A combined URL refused with a 4xx may hold a stream the exchange rejects: from now on
        open with no streams and subscribe live, where a refusal names its batch and the
        culprit is found stream by stream instead of taking every other stream down with it."""
        if (
            not self.raw
            and not self.live_only
            and isinstance(exc, InvalidStatus)
            and 400 <= exc.response.status_code < 500
            # too many requests, or banned for them: the rate, not the URL; backing off is all
            and exc.response.status_code not in (418, 429)
        ):
            self.live_only = True
            log.warning(
                "feed connection %d: the exchange refused the stream URL; subscribing live instead",
                self.id,
            )

    def _failed(self, reason: str) -> None:
        self.last_error = reason
        log.warning("feed connection %d: %s", self.id, reason)

    async def _open(self, *, held: bool = False) -> _Session:
        cfg = self.settings
        streams = sorted(self.streams)
        if self.raw:
            url = cfg.market.raw_url(cfg.ws_url, streams[0])
        elif self.live_only:
            url = cfg.market.raw_url(cfg.ws_url)  # no streams: all of them by SUBSCRIBE
            streams = []
        else:
            url = cfg.market.combined_url(cfg.ws_url, streams)
        ws = await connect(
            url,
            open_timeout=cfg.open_timeout,
            close_timeout=cfg.close_timeout,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_timeout,
            max_size=cfg.max_frame_bytes,
            user_agent_header=f"alertbot/{__version__}",
        )
        session = _Session(ws, streams, self._loop.time(), held)
        session.reader = asyncio.create_task(self._read(session), name=f"feed-reader-{self.id}")
        log.info("feed connection %d: open, %s", self.id, plural(len(streams), "stream"))
        return session

    async def _serve(self, s: _Session, backoff: Backoff) -> str:
        """Keep sessions going until the current one ends; returns why it ended."""
        cfg = self.settings
        self._adopt(s)
        rotate_at = s.opened_at + cfg.max_age
        healthy = False
        try:
            while True:
                current = self.session
                assert current is not None
                s = current
                now = self._loop.time()
                first = s.first_data_at
                if not healthy and first is not None and now - first >= cfg.healthy_after:
                    backoff.reset()
                    healthy = True
                stale_at = (s.last_data_at or s.quiet_since) + self.stale_after
                if now >= stale_at:
                    self.stats.problems.count("connection open but silent", quiet=True)
                    # what may be on its way over it is let go of: say why to the exchange
                    s.let_go = "no data"
                    return f"no data for {self.stale_after:g}s: reconnecting"
                if now >= rotate_at:
                    rotated = await self._rotate(s)
                    if not rotated:
                        self.stats.rotations_failed += 1
                    rotate_at = self._loop.time() + (
                        cfg.max_age if rotated else min(cfg.max_age, cfg.handover_timeout)
                    )
                    continue
                deadline = min(stale_at, rotate_at)
                if not healthy and s.first_data_at is not None:
                    deadline = min(deadline, s.first_data_at + cfg.healthy_after)
                done, _ = await asyncio.wait({s.reader}, timeout=max(0.0, deadline - now))
                if done:
                    sent = s.ws.protocol.close_sent
                    if sent is not None and sent.code == 1009:  # websockets refused a frame
                        self.stats.problems.count(
                            "frame over the size limit", f"> {cfg.max_frame_bytes} bytes"
                        )
                    return self._close_reason(s)
        finally:
            ending = self.session
            self.session = None
            if ending is not None:
                self._down_since = ending.last_data_at or self._down_since
                if ending.last_event >= 0:
                    self._down_event = ending.last_event
                self._end(ending)
            self._release_rotating()  # after all the old socket delivered

    def _adopt(self, s: _Session) -> None:
        self.session = s
        self._start_control(s)
        self.on_progress()

    def _start_control(self, s: _Session) -> None:
        if not self.raw and s.control is None:
            s.control = asyncio.create_task(self._control(s), name=f"feed-control-{self.id}")

    async def _rotate(self, old: _Session) -> bool:
        """Make-before-break: open a second socket, switch once it delivers, close the old."""
        self._release_rotating()  # what a failed rotation still held
        try:
            new = await self._open(held=True)  # merged with the old one's by event time
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(f"rotation: connect failed ({describe(exc)}), keeping the old socket")
            return False
        self._rotating = new
        try:
            if not await self._handover(old, new):
                self._end(new)
                # what it delivered may include a stream the old one has not subscribed yet:
                # it goes on merged with what the old one delivers, the rest once the old one
                # ends or after drain_timeout
                self._loop.call_later(self.settings.drain_timeout, self._release_rotating, new)
                return False
            await self._drain(old, new)
            if not old.reader.done() and not await self._responds(new):
                # it must answer a request, whether it delivered or not (with both quiet the
                # handover cannot tell a dead one): once it has, all it was sent before is
                # read, the ticks on their way over the old socket too. One that closed, fell
                # silent while the old one was read to its end, or was silent all along would
                # take over only to lose them, until the watchdog reconnects
                why = (
                    f"{self._close_reason(new)} before the old one was read to its end"
                    if new.reader.done()
                    else f"did not answer within {self.settings.drain_timeout:g}s"
                )
                self._failed(f"rotation: new socket {why}, keeping the old one")
                self._end(new)
                self._loop.call_later(self.settings.drain_timeout, self._release_rotating, new)
                return False
        except BaseException:  # cancelled mid-rotation: the new socket is nobody's yet
            self._rotating = None
            self._end(new)
            raise
        self._rotating = None
        self.stats.rotations += 1
        if old.reader.done():
            self.losses += 1  # it ended before it was read to its end
        log.info("feed connection %d: rotated to a new socket", self.id)
        if old.control is not None:
            old.control.cancel()
        if new.first_data_at is None:
            # taken over before it delivered (the old one closed, or both quiet): the silence
            # goes on from the old socket's last data, for the watchdog and for the gap flag
            new.quiet_since = min(new.quiet_since, old.last_data_at or old.quiet_since)
            self._down_since = old.last_data_at or self._down_since
            if old.last_event >= 0:
                self._down_event = old.last_event
        self._adopt(new)
        self._release_all(new)
        self._end(old)
        return True

    def _release_rotating(self, s: _Session | None = None) -> None:
        """Hand on all that a failed rotation's new socket (``s``, if still that one) held."""
        rotating = self._rotating
        if rotating is not None and (s is None or s is rotating):
            self._rotating = None
            self._release_all(rotating)

    def _release_all(self, s: _Session) -> None:
        """Hand on all a rotation's new socket held; frames of other connections kept back
        behind them (see holds_before) may go then too."""
        held = bool(s.held)
        self._release(s)
        if held:
            self.on_released()

    def _release(self, s: _Session, before: int | None = None) -> None:
        """Hand on what a rotation's new socket holds: all of it, and from then on it delivers
        straight on; or only what is older than event time ``before``."""
        held = s.held or []
        if before is None:
            s.held = None
            taken = held
        else:
            taken = self._take_ahead(held, lambda h: h[0] < before)
        with self.burst():
            for frame in taken:
                event, obj, raw, _ = frame
                if self._held is None:
                    if self._waiting:
                        # the old socket's frames kept back are newer, some of them: it goes
                        # ahead of those, as it would have gone had it not been held (soak
                        # seed 18072: the new socket lagged, and the all-market frames the
                        # old socket's waited for went ahead of its older ticks)
                        self._wait_in_order(frame)
                        continue
                    # it goes to the sink now, past no merge with the rotations of the other
                    # connections: what theirs hold that is older goes first (on_ahead). It
                    # may be all there is of a tick this socket missed, and the engine would
                    # drop it behind this newer one (soak seed 17961: a switch to symbol
                    # streams done, the all-market connection closed mid-rotation, and its
                    # new socket's ticks overtook those the symbol connection's rotation held)
                    self.on_ahead(self, event)
                self._deliver(event, obj, raw)

    def _wait_in_order(self, frame: Held) -> None:
        """Keep ``frame`` back in the waiting line, ahead of the frames there that are newer."""
        waiting = self._waiting
        at = next((i for i, w in enumerate(waiting) if w[0] > frame[0]), len(waiting))
        waiting.insert(at, frame)

    async def _handover(self, old: _Session, new: _Session) -> bool:
        """Wait until ``new`` carries every stream and delivers; False when it cannot take over
        from ``old``. Streams missing from the new socket's URL (all of them after a refused
        URL, or ones added since) are subscribed on it now, while the old one still delivers."""
        self._start_control(new)
        waiter = asyncio.create_task(self._taking_over(new))
        # no longer than the old socket may stay silent: the watchdog does not run meanwhile
        old_stale_at = (old.last_data_at or old.quiet_since) + self.stale_after
        wait = min(self.settings.handover_timeout, old_stale_at - self._loop.time())
        try:
            await asyncio.wait(
                {waiter, new.reader, old.reader},
                timeout=max(0.0, wait),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
        if new.reader.done():
            self._failed(f"rotation: new socket {self._close_reason(new)}, keeping the old one")
            return False
        if old.reader.done():
            return True  # the old one is gone: the new one is all there is
        if not self.streams <= new.subscribed:
            self._failed("rotation: the new socket is not subscribed yet, keeping the old one")
            return False
        if new.first_data_at is None and (
            old.last_data_at is not None and old.last_data_at > new.opened_at
        ):
            # the old socket delivered while the new one stayed silent: the new one is bad
            self._failed("rotation: the new socket delivered nothing, keeping the old one")
            return False
        if new.first_data_at is None and self._loop.time() >= old_stale_at:
            self._failed("rotation: neither socket delivers, keeping the old one")
            return False  # the watchdog reconnects, and records the outage
        return True

    async def _taking_over(self, new: _Session) -> None:
        """Until ``new`` has delivered and carries every wanted stream."""
        await new.first_data.wait()
        while not self.streams <= new.subscribed:
            new.answered.clear()
            await new.answered.wait()

    async def _drain(self, old: _Session, new: _Session) -> None:
        """Before closing ``old``: read it until it has caught up with where ``new`` began.

        Frames already on their way over the old socket are read first, so that a tick sent
        just before the new socket's first one is not lost with the old socket's buffer (the
        new one's are held meanwhile, and handed on after). The old one is read to a request's
        reply (or its end), never only up to an event time ``new`` has delivered: that may be
        a late duplicate of a tick still on its way over the old one, with newer ticks behind
        it there, sent before the new socket began (soak seed 1751).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.drain_timeout):
                await self._catch_up(old)

    async def answers(self) -> bool:
        """Whether the current socket answers a request within ``drain_timeout``, as a
        rotation's new socket must before it takes over (see _rotate): a mode switch asks
        it of its new connections before it closes the old ones. A socket that takes over
        from it by a rotation meanwhile is asked in turn (it has answered one already)."""
        s = self.session
        while s is not None:
            if await self._responds(s):
                return True
            if self.session is s:
                return False
            s = self.session
        return False

    async def _responds(self, s: _Session) -> bool:
        """Whether ``s`` answers a request within ``drain_timeout`` (and is still open)."""
        try:
            async with asyncio.timeout(self.settings.drain_timeout):
                await self._catch_up(s)  # its reply, or its end
        except TimeoutError:
            return False
        return not s.reader.done()

    async def catch_up(self) -> None:
        """Until the current socket has handed on all the server had sent on it when it read
        a request sent now; at once when there is no socket. The caller bounds the wait.

        Never only up to an event time another socket has delivered: that may be a late
        duplicate of a tick still on its way over this one, with newer ticks behind it here
        (soak seeds 877 and 1751).

        A rotation under way has its new socket read to its end too: it may be all there is
        of ticks sent before now, when the old one ended meanwhile (at its end at once) or
        missed them (soak seed 7673: the old socket aborted while the new one lagged). A
        rotation that takes over meanwhile ends the socket being read: the one that took
        over is read to its end in turn (it may lag too, with ticks on their way that were
        sent before now)."""
        s = self.session
        while s is not None:
            sockets = [s] if self._rotating is None else [s, self._rotating]
            await asyncio.gather(*(self._catch_up(x) for x in sockets))
            if self.session in sockets:
                return  # (one that took over meanwhile has been read to a reply already)
            s = self.session  # None: closed, reconnecting; nothing more to read now

    async def _catch_up(self, s: _Session) -> None:
        """See :meth:`catch_up`. A request's reply comes after the frames the server sent
        before it (one TCP stream, read in order), so once the reader has taken the reply, it
        has handed them on: a socket that lags behind is read to its end in one round trip,
        and a quiet one is not waited for."""
        if s.reader.done():
            return
        waiters: set[asyncio.Future[Any]] = {s.reader}
        rid = -1
        try:
            # the request keeps to the request pace (its slot is taken now): the socket may
            # end meanwhile, and then it is not sent
            delay = self._reserve(s)
            if delay > 0:
                done, _ = await asyncio.wait(
                    waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    return
            s.next_id += 1
            rid = s.next_id
            reply: asyncio.Future[dict[str, Any]] = self._loop.create_future()
            s.replies[rid] = reply
            waiters.add(reply)
            # any request does; this one changes nothing and Binance answers it on every path
            await s.ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": rid}).decode())
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except ConnectionClosed:
            pass
        finally:
            for w in waiters - {s.reader}:
                w.cancel()
            if s.replies.pop(rid, None) is not None:
                self._given_up(s, rid)

    def _reserve(self, s: _Session) -> float:
        """Take the socket's next slot for a message of ours; returns how long to wait for it.

        Every message we send counts toward the exchange's incoming-message limit: live
        requests and a catch-up's request alike go at most ``request_rate`` a second between
        them (the market's budget leaves room beside them only for our ping, our pong, our
        close frame and jitter)."""
        now = self._loop.time()
        at = max(now, s.next_send_at)
        s.next_send_at = at + 1.0 / self.settings.request_rate
        return at - now

    async def _pace(self, s: _Session) -> None:
        """Until the socket's next slot for a message of ours (see _reserve)."""
        delay = self._reserve(s)
        if delay > 0:
            await asyncio.sleep(delay)

    @staticmethod
    def _given_up(s: _Session, rid: int) -> None:
        """Remember a request whose reply no one waits for any more, so that it is not taken
        for a reply to nothing we asked. Binance answers in order, so a reply to a later
        request means the earlier ones are answered or never will be: they are forgotten then
        (see _on_reply), and at most _GIVEN_UP are kept."""
        s.given_up.add(rid)
        if len(s.given_up) > _GIVEN_UP:
            s.given_up.remove(min(s.given_up))

    def sockets(self, *, current: bool = True) -> list[tuple[float, int]]:
        """The sockets still reading, each as (when it opened, its last event time): the
        current one (unless not ``current``) and a rotation's new one, if under way."""
        return [
            (s.opened_at, s.last_event)
            for s in ((self.session if current else None), self._rotating)
            if s is not None and not s.reader.done()
        ]

    def last_event(self) -> int:
        s = self.session
        return -1 if s is None else s.last_event

    def _end(self, s: _Session) -> None:
        """Stop a session's tasks and close its socket in the background."""
        s.reader.cancel()
        if s.control is not None:
            s.control.cancel()
        for fut in s.replies.values():
            fut.cancel()
        closer = asyncio.create_task(self._close_ws(s))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close_ws(self, s: _Session) -> None:
        # not paced: the socket is let go of now (its reader has ended), and a close frame
        # sent late would leave the exchange writing to it meanwhile; the market's budget
        # has a slot for it (Market.request_rate)
        with contextlib.suppress(Exception):
            await s.ws.close(1000, s.let_go)

    @staticmethod
    def _close_reason(s: _Session) -> str:
        if s.reader.done() and not s.reader.cancelled():
            exc = s.reader.exception()
            if exc is not None:
                return f"reader failed: {describe(exc)}"
        rcvd = s.ws.protocol.close_rcvd
        sent = s.ws.protocol.close_sent
        if rcvd is None and sent is not None:
            return f"closed by us with code {sent.code}" + (
                f" ({sent.reason})" if sent.reason else ""
            )
        if rcvd is None:
            return "closed abruptly (no close frame)"
        return f"closed by the server with code {rcvd.code}" + (
            f" ({rcvd.reason})" if rcvd.reason else ""
        )

    # ------------------------------------------------------------------ reading

    async def _read(self, s: _Session) -> None:
        recv = s.ws.recv
        try:
            while True:
                # bytes: orjson parses them directly (and checks UTF-8, so a bad frame is
                # counted and skipped instead of failing the connection)
                raw = await recv(decode=False)
                try:
                    self._on_frame(s, raw)
                except Exception as exc:  # a bug downstream must not kill the feed
                    self.stats.problems.count("error handling a message", describe(exc))
                    log.debug("error handling a message", exc_info=True)
        except ConnectionClosed:
            pass

    def _on_frame(self, s: _Session, raw: str | bytes) -> None:
        plain = _PLAIN_DATA.match(raw) if self.undecoded and isinstance(raw, bytes) else None
        if plain is not None:  # ticker data: the consumer reads the bytes
            self._on_data(s, raw, int(plain.group(1)), raw)
            return
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw[:80] if isinstance(raw, str) else repr(raw[:80])
            self.stats.problems.count("invalid JSON frame", text)
            return
        kind = type(obj)
        if kind is dict:
            if "e" not in obj and "stream" not in obj:
                if "id" in obj and ("result" in obj or "error" in obj):
                    self._on_reply(obj, s)
                else:
                    self.stats.problems.count(
                        "unexpected message", "object with keys " + ", ".join(sorted(obj)[:8])
                    )
                return
        elif kind is not list:
            self.stats.problems.count("unexpected message", f"a JSON {kind.__name__}")
            return
        self._on_data(s, obj, _event_time(obj), raw)

    def _on_data(self, s: _Session, obj: Any, event: int, raw: str | bytes) -> None:
        now = self._loop.time()
        s.last_data_at = now
        if event > s.last_event:
            s.last_event = event
        if s.first_data_at is None:
            s.first_data_at = now
            s.first_data.set()
            self._first_data(now, event)
        self.messages += 1
        self.stats.data(now)
        if s.held is not None:
            s.held.append((event, obj, raw, now))
        else:
            rotating = self._rotating
            if rotating is not None and rotating.held:
                self._release(rotating, before=event)  # the new socket's older ones first
            self._deliver(event, obj, raw)
        self.on_progress()

    def _deliver(self, event: int, obj: Any, raw: str | bytes) -> None:
        held = self._held
        if held is not None:
            now = self._loop.time()
            held.append((event, obj, raw, now))
            if self._held_timer is None:
                self._held_timer = self._loop.call_at(
                    now + self.settings.drain_timeout, self._release_due
                )
            return
        if self._waiting or self.on_deliver(self, event):
            # kept back behind what another connection holds (and so is everything after it)
            self._waiting.append((event, obj, raw, self._loop.time()))
            return
        self._sink(obj, raw)

    def _hand_on_held(self, frames: list[Held]) -> None:
        """Hand on frames this connection held, outside the merge (released ahead of another
        connection's frame, held for ``drain_timeout``, or kept waiting when it closes), each
        after what other connections keep back, or their rotations hold, that is older
        (on_ahead): one of them may have a tick the frames here do not (it is why it waits),
        which a newer frame of ours would make the engine drop (soak seed 5630). A symbol
        connection's frames go by event time (each symbol's ticks stay in order): a frame
        handed on ahead of one of them is then older than all after it."""
        if ALL_MARKET not in self.streams:
            frames.sort(key=_event_of)
        with self.burst():
            for event, obj, raw, _ in frames:
                self.on_ahead(self, event)
                self._sink(obj, raw)

    def _sink(self, obj: Any, raw: str | bytes) -> None:
        try:
            self.sink(obj, raw)
        except Exception as exc:  # a bug downstream must not kill the feed
            self.stats.problems.count("error handling a message", describe(exc))
            log.debug("error handling a message", exc_info=True)

    def _first_data(self, now: float, event: int) -> None:
        """Data flows again (``event``: the first event time): account for the outage before it."""
        if self._down_since is not None:
            duration = now - self._down_since
            if duration > self.stale_after and self._down_event >= 0:
                outage = Outage(self.symbols(), self._down_event, duration, event)
                self.stats.outages.append(outage)
                log.warning(
                    "feed connection %d: data flowing again after %.1fs without any",
                    self.id,
                    duration,
                )
            self._down_since = None
        self.on_progress()

    def _on_reply(self, obj: dict[str, Any], s: _Session) -> None:
        rid = obj.get("id")
        fut = s.replies.pop(rid, None) if type(rid) is int else None
        if s.given_up and type(rid) is int:
            late = rid in s.given_up
            s.given_up = {i for i in s.given_up if i > rid}
            if late:
                return  # a request given up: no one waits for it
        if fut is None:
            self.stats.problems.count("reply to no request of ours", str(obj)[:120])
        elif not fut.done():
            fut.set_result(obj)

    # ------------------------------------------------------------------ subscriptions

    async def _control(self, s: _Session) -> None:
        """Bring the socket's subscriptions to ``self.streams``, within the message rate."""
        with contextlib.suppress(ConnectionClosed):
            await self._control_loop(s)

    async def _control_loop(self, s: _Session) -> None:
        cfg = self.settings
        while True:
            add = self.streams - s.subscribed
            remove = s.subscribed - self.streams
            if not add and not remove:
                self.on_progress()
                self._changed.clear()
                try:
                    async with asyncio.timeout(cfg.audit_interval):
                        await self._changed.wait()
                except TimeoutError:
                    if not await self._audit(s):
                        return
                    await self._next_slot(s)
                continue
            # unsubscribe first: a full connection has room for the new streams only once the
            # old ones are gone (the server counts both, and refuses over its limit)
            if remove:
                method = "UNSUBSCRIBE"
                params = sorted(remove)[: cfg.max_params]
            else:
                method = "SUBSCRIBE"
                singles = sorted(add & s.split)
                params = singles[:1] if singles else sorted(add)[: cfg.max_params]
            reply = await self._request(s, method, params)
            if reply is None:
                return
            if reply.get("error") is None:
                if method == "SUBSCRIBE":
                    s.subscribed.update(params)
                    s.split.difference_update(params)
                else:
                    s.subscribed.difference_update(params)
            else:
                self._refused(method, params, reply["error"], s)
            s.answered.set()
            await self._next_slot(s)

    async def _next_slot(self, s: _Session) -> None:
        """Until the socket's next message may go: the next batch is made from the streams
        wanted then."""
        await asyncio.sleep(max(0.0, s.next_send_at - self._loop.time()))

    async def _request(
        self, s: _Session, method: str, params: list[str] | None = None
    ) -> dict[str, Any] | None:
        """Send a live request and wait for its reply; None (and the socket closed, so that
        the reconnect resubscribes from scratch) when none comes within ``ack_timeout``."""
        await self._pace(s)
        s.next_id += 1
        rid = s.next_id
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        s.replies[rid] = fut
        body: dict[str, Any] = {"method": method, "id": rid}
        if params is not None:
            body["params"] = params
        await s.ws.send(orjson.dumps(body).decode())
        try:
            return await asyncio.wait_for(fut, self.settings.ack_timeout)
        except TimeoutError:
            self.stats.problems.count("live request not answered", f"{method} id {rid}")
            s.replies.pop(rid, None)
            await s.ws.close(1000, "no reply to a live request")
            return None

    async def _audit(self, s: _Session) -> bool:
        """Compare the server's LIST_SUBSCRIPTIONS with ours: a stream the server dropped on
        its own would stay silent while its neighbours keep the data watchdog happy."""
        reply = await self._request(s, "LIST_SUBSCRIPTIONS")
        if reply is None:
            return False
        listed = reply.get("result")
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            self.stats.problems.count("unexpected reply to LIST_SUBSCRIPTIONS", str(reply)[:120])
            return True
        lost = s.subscribed - set(listed)
        if lost:
            self.stats.problems.count("subscription lost on the server", quiet=True)
            log.warning(
                "feed connection %d: the exchange no longer lists %d of our streams (%s); "
                "subscribing again",
                self.id,
                len(lost),
                ", ".join(sorted(lost)[:5]),
            )
            s.subscribed -= lost
        s.subscribed |= set(listed) - s.subscribed  # ones we do not want get unsubscribed
        return True

    def _refused(self, method: str, params: list[str], error: Any, s: _Session) -> None:
        msg = error.get("msg", error) if isinstance(error, dict) else error
        self.stats.problems.count("live request refused", f"{method} {params[:3]}: {msg}")
        if method == "UNSUBSCRIBE":
            s.subscribed.difference_update(params)  # not subscribed as far as the server knows
        elif len(params) > 1:
            s.split.update(params)  # find the culprit: one by one
        else:
            log.warning(
                "feed: the exchange refused stream %s: %s (trying again in %gs)",
                params[0],
                msg,
                self.settings.refused_retry,
            )
            self.streams.difference_update(params)
            s.split.difference_update(params)
            # the feed remembers it: this connection may be closed now that it carries nothing
            self.on_refused(params[0], str(msg))
