"""The feed: which streams, over which connections, and how that changes without losing a tick.

``Feed.want(symbols, everything=...)`` says what the rules need. In ``auto`` mode the feed
reads ``!miniTicker@arr`` (one raw connection) when a rule has a glob, when more than
``auto_threshold`` symbols are watched, or when nothing is watched yet; otherwise it reads
``<symbol>@miniTicker`` streams on combined connections of at most ``max_streams`` each, changed
live with SUBSCRIBE/UNSUBSCRIBE. A switch between the two is make-before-break: the new
connections must deliver (all-market) or be open and subscribed (symbol streams) within
``handover_timeout`` (or subscribe a stream more in each such wait), and then answer a
request as a rotation's new socket does within ``drain_timeout``, before the old ones close
(otherwise the switch is given up, the old ones carrying on, and tried again
``handover_timeout`` later), and the engine drops the overlap's duplicates by symbol and
event time. Meanwhile what the new ones deliver is held and merged with what the old ones
deliver by event time (for at most ``drain_timeout``): old connections that lag behind would
otherwise hand on their last ticks after newer ones, and the engine would drop them as out
of order. An old connection keeps its own frames back while an older held frame waits for
a lagging neighbour: the held one may be all there is of a tick it was not sent (it
reconnected meanwhile, or its symbol streams send every 2 s, the all-market stream every
second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from alertbot.feed.connection import Backoff, Connection, FeedStats, Sink
from alertbot.feed.market import ALL_MARKET, nameable, normalise_stream, symbol_stream
from alertbot.feed.settings import FeedSettings
from alertbot.tasks import cancel_and_wait
from alertbot.text import plural

log = logging.getLogger("alertbot.feed")


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    id: int
    streams: int
    connected: bool
    last_message_age: float | None  # seconds; None: nothing received on this socket yet
    age: float | None  # seconds since this socket opened
    reconnects: int
    messages: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """A snapshot for ``/status``, ``/healthz`` and metrics."""

    mode: str  # "all", "symbols" or "switching"
    connections: tuple[ConnectionHealth, ...]
    messages: int
    messages_per_second: float
    reconnects: int
    rotations: int
    last_message_age: float | None
    problems: dict[str, int] = field(default_factory=dict)
    refused_streams: tuple[str, ...] = ()
    outages: int = 0
    #: handovers given up (the old connections carried on; tried again later)
    rotations_failed: int = 0
    switches_failed: int = 0
    #: mode switches done (rotations done: ``rotations``)
    switches: int = 0

    @property
    def bad_frames(self) -> int:
        return sum(self.problems.values())


def _overlap(a: Connection, b: Connection) -> bool:
    """Whether ``a`` and ``b`` carry a symbol in common (one is the all-market connection)."""
    return ALL_MARKET in a.streams or ALL_MARKET in b.streams or not a.streams.isdisjoint(b.streams)


def _subscribed(conns: Iterable[Connection]) -> int:
    """How many of the streams the connections should carry their sockets have subscribed."""
    return sum(len(c.streams & c.session.subscribed) for c in conns if c.session is not None)


class Feed:
    """Keeps the wanted streams flowing into ``sink``; see the module docstring."""

    def __init__(
        self,
        settings: FeedSettings,
        sink: Sink,
        *,
        undecoded: bool = False,
        on_refused: Callable[[str, str], None] = lambda stream, reason: None,
        burst: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.settings = settings
        self.sink = sink
        #: around handing on many frames held back at once (see Connection.burst)
        self.burst = burst
        # ticker frames in Binance's plain form reach the sink as bytes, not decoded
        self.undecoded = undecoded
        self.on_refused = on_refused  # (stream, the exchange's reason), after the feed noted it
        self.clock = asyncio.get_running_loop().time
        self.stats = FeedStats(self.clock)
        self._target: frozenset[str] = frozenset()
        self._raw: Connection | None = None  # the all-market connection
        self._combined: list[Connection] = []
        # streams the exchange refused, and when (loop time): kept here, not on the connection,
        # because a connection left with no streams is closed, and a refusal forgotten with it
        # would put the stream on a new connection at once, again and again
        self._refusals: dict[str, float] = {}
        self._next_id = 0
        self._changed = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        #: a switch given up because a new connection did not answer: tried again then
        #: (loop time), as a rotation is
        self._retry_at: float | None = None
        #: connections keeping frames back until frames a switch holds have gone (see
        #: _delivering); possibly closed since
        self._waiters: set[Connection] = set()
        self._flush: asyncio.Handle | None = None  # a _hand_on_waiting to come

    # ------------------------------------------------------------------ wanting

    def want(self, symbols: Iterable[str], *, everything: bool = False) -> str:
        """Carry what rules over ``symbols`` (and globs, when ``everything``) need.

        Returns the stream kind chosen: ``all`` or ``symbols``.
        """
        cfg = self.settings
        wanted = {s.upper() for s in symbols}
        if not all(nameable(s) for s in wanted):
            # no stream names it (alertbot/rules/names.py): only the all-market stream has it
            wanted = {s for s in wanted if nameable(s)}
            everything = everything or cfg.stream != "symbols"
        if cfg.stream == "symbols" and wanted:
            mode = "symbols"
        elif cfg.stream == "all" or everything or not wanted:
            mode = "all"
        else:
            mode = "symbols" if len(wanted) <= cfg.auto_threshold else "all"
        if mode == "all":
            self.want_streams([ALL_MARKET])
        else:
            self.want_streams(symbol_stream(s) for s in wanted)
        return mode

    def carries(self, symbol: str) -> bool:
        """Whether the streams wanted now bring ``symbol``'s tickers (if it trades)."""
        target = self._target
        return ALL_MARKET in target or (nameable(symbol) and symbol_stream(symbol) in target)

    def want_streams(self, streams: Iterable[str]) -> None:
        """Carry exactly these streams (``alertbot record`` names them directly)."""
        target = frozenset(normalise_stream(s) for s in streams)
        if target != self._target:
            self._target = target
            self._settled.clear()
            self._changed.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._manage(), name="feed-manager")

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        conns = [c for c in (self._raw, *self._combined) if c is not None]
        self._raw = None
        self._combined = []
        await asyncio.gather(*(c.close() for c in conns), *self._closing)

    async def __aenter__(self) -> Feed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def settled(self) -> None:
        """Wait until the connections match the last ``want`` and the old ones are closed."""
        await self._settled.wait()

    async def _manage(self) -> None:
        cfg = self.settings
        # a failing change may have opened connections: it is retried no faster than a reconnect
        backoff = Backoff(cfg.backoff_initial, cfg.backoff_max, cfg.backoff_factor)
        while True:
            await self._next_change()
            self._changed.clear()
            self._retry_at = None
            try:
                done = await self._reconcile(self._target)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a bug here end the feed
                log.exception("feed: error while changing streams")
                done = False
                await asyncio.sleep(backoff.next())
                self._changed.set()
            else:
                backoff.reset()
            if done and not self._changed.is_set():
                self._settled.set()

    async def _next_change(self) -> None:
        """Until a new target is wanted, a stream is refused, a refusal is old enough for
        the stream to be tried again, or a switch given up is due to be tried again."""
        self._refused()  # forget refusals that are old enough
        due = [at + self.settings.refused_retry for at in self._refusals.values()]
        if self._retry_at is not None:
            due.append(self._retry_at)
        if not due:
            await self._changed.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(min(due)):
                await self._changed.wait()

    def _refused(self) -> set[str]:
        """Streams refused within ``refused_retry``; older refusals are forgotten, so that
        ``_reshape`` subscribes those streams again."""
        edge = self.clock() - self.settings.refused_retry
        for stream, at in list(self._refusals.items()):
            if at <= edge:
                del self._refusals[stream]
        return set(self._refusals)

    def _on_refused(self, stream: str, reason: str) -> None:
        self._refusals[stream] = self.clock()
        self._changed.set()
        self.on_refused(stream, reason)

    def refused(self) -> frozenset[str]:
        """The streams the exchange refused within ``refused_retry`` (they are left out until
        then, and subscribed again after)."""
        return frozenset(self._refused())

    def _new(
        self, streams: Iterable[str], *, raw: bool, held: bool = False, start: bool = True
    ) -> Connection:
        """A connection of this feed, wired to its merge; started unless not ``start``."""
        self._next_id += 1
        conn = Connection(
            self._next_id,
            streams,
            raw=raw,
            settings=self.settings,
            stats=self.stats,
            sink=self.sink,
            undecoded=self.undecoded,
            on_progress=self._progress.set,
            on_refused=self._on_refused,
            on_deliver=self._delivering,
            on_released=self._hand_on_waiting,
            on_ahead=self._ahead_of_held,
            burst=self.burst,
        )
        if held:
            conn.hold()
        if start:
            conn.start()
        return conn

    def _delivering(self, conn: Connection, event: int) -> bool:
        """Before ``conn`` hands on a frame of event time ``event``: what the new connections
        of a switch hold that is older goes first (an old connection's socket that fell
        behind, or one that was down and reconnected, brings newer ticks than theirs).

        Only what the other old connections have passed too: an all-market frame held has
        the symbols of each, and one of them that lags behind still has older ticks of its
        own on their way, which the engine would drop behind the held ones. True when the
        frame must wait instead (``conn`` keeps it back, and all after it, until
        :meth:`_hand_on_waiting`): a held frame older than it still waits for such a
        neighbour, and may be all there is of a tick of ``conn``'s symbols (see
        Connection.holds_before), which the engine would drop behind this newer one."""
        wait = self._must_wait(conn, event)
        if self._waiters:
            # what went ahead may let frames kept back go too: older ones ahead of this one,
            # newer ones after it
            self._hand_on_waiting(before=event)
            if self._flush is None:
                self._flush = asyncio.get_running_loop().call_soon(self._flush_waiting)
        if wait:
            self._waiters.add(conn)  # after the hand-on above: it keeps nothing back yet
        return wait

    def _ahead_of_held(self, conn: Connection, event: int) -> None:
        """Before ``conn`` hands on a frame it held (event time ``event``) outside the merge,
        or one its rotation's new socket held: the frames other connections keep back that
        are older go first, as far as nothing else holds them back (see _hand_on_waiting),
        and so do those their rotations hold (a rotation's new socket's, while its old one
        is read to its end), when they carry a symbol of ``conn``'s. They may be all there
        is of a tick ``conn`` missed, which the engine would drop behind its newer frame
        (soak seed 5630). A connection with other symbols keeps its rotation's held: its
        old socket may still have older ticks of them on their way."""
        for other in self.connections():
            if other is not conn and _overlap(conn, other):
                other.release_rotating_before(event)
        if self._waiters:
            self._hand_on_waiting(before=event)

    def _must_wait(self, conn: Connection, event: int) -> bool:
        """Hand on the held frames that may go ahead of ``conn``'s frame of event time
        ``event`` (see _delivering); whether it must wait."""
        others = [c for c in (self._raw, *self._combined) if c is not None and c is not conn]
        holding = [c for c in others if c.holding]
        if not holding:  # every frame comes here: nothing more to do outside a switch
            return False
        # the old sockets: the other old connections', and the new socket of a rotation under
        # way on any old one, ``conn`` too. That one may lag behind its old socket, with
        # older ticks on their way that the old one no longer carries (soak seed 18072: the
        # exchange dropped a subscription of the old socket, and the held all-market frame
        # went ahead of the lagging new socket's older tick of that symbol)
        behind = [mark for o in others if not o.holding and o.live for mark in o.sockets()]
        behind += conn.sockets(current=False)
        for other in holding:
            other.release_before(event, behind)
        return any(other.holds_before(event) for other in holding)

    def _flush_waiting(self) -> None:
        self._flush = None
        self._hand_on_waiting()

    def _hand_on_waiting(self, before: int | None = None) -> None:
        """Hand on the frames connections keep back, as far as the held frames they wait for
        have gone (each going may let another connection's go); only those older than event
        time ``before``, if given."""
        progress = True
        while progress and self._waiters:
            progress = False
            for conn in list(self._waiters):

                def must_wait(event: int, conn: Connection = conn) -> bool:
                    newer = before is not None and event >= before
                    return newer or self._must_wait(conn, event)

                if conn.hand_on_waiting(must_wait):
                    progress = True
                if not conn.waiting:
                    self._waiters.discard(conn)

    async def _reconcile(self, target: frozenset[str]) -> bool:
        """Move the connections towards ``target``; False if the target changed meanwhile."""
        if target == {ALL_MARKET}:
            if self._raw is None:
                # held while the symbol connections it replaces catch up with it
                self._raw = self._new(target, raw=True, held=bool(self._combined))
            all_market = self._raw
            if self._combined:
                # it takes over from the symbol connections; unless it carried the feed all
                # along, the ones closed below being a switch to them abandoned for this target
                switching = all_market.holding
                # a switch to them given up keeps what they hold from the sink: the
                # all-market connection, the old one again, may lag behind them, and hands on
                # the same ticks; theirs older than its go first (_delivering), the rest go
                # with them when they close
                old = self._combined
                # no longer than a rotation waits for its new socket: one that opens and never
                # delivers would keep the switch going for ever
                deadline = self.clock() + self.settings.handover_timeout
                while True:
                    try:
                        if not await self._until(
                            lambda: all_market.live and all_market.delivering, deadline
                        ):
                            return False
                    except TimeoutError:
                        why = f"delivered nothing within {self.settings.handover_timeout:g}s"
                        await self._give_up_to_all(all_market, old, why)
                        return False
                    # a rotation meanwhile loses nothing (make-before-break); a socket lost does
                    losses = all_market.losses
                    # it delivers: the old ones are read to a request's reply, which comes
                    # after all they were sent before it did (not only up to the newest event
                    # time it delivered: that may be a late duplicate)
                    if not await self._drained(old):
                        return False
                    # as a rotation's new socket: one that delivered and then fell silent would
                    # take over only to lose what is on its way over the old ones
                    answered = await all_market.answers()
                    if all_market.live and all_market.losses == losses:
                        if answered:
                            if not switching:
                                await self._read_past(all_market, old)
                            break
                        why = f"did not answer within {self.settings.drain_timeout:g}s"
                        await self._give_up_to_all(all_market, old, why)
                        return False
                    # it closed meanwhile: what the exchange sent since is on the old ones only

                # an old one still holding (its switch to them abandoned) hands on first what
                # it holds that is older than the all-market frames released now: they are
                # read to their end, and it may be all there is of a tick sent before the
                # all-market socket opened (soak seed 2583); the rest goes after them. So does
                # an old one's rotation under way (its new socket's ticks, held while its old
                # socket is read): the all-market socket may have missed one of them
                def ahead(event: int) -> None:
                    for conn in old:
                        conn.release_before(event)
                        conn.release_rotating_before(event)

                all_market.release(ahead)
                # what they still hold goes on now that the all-market connection has been read
                # to its end, not closed with them: when it carried the feed all along (their
                # switch abandoned), it may have missed a tick they alone got (it was silent a
                # while: soak seed 3411); the engine drops the rest as duplicates
                for conn in old:
                    conn.release(all_market.release_rotating_before)
                self._combined = []
                if switching:
                    self.stats.switches += 1
                log.info(
                    "feed: all-market stream delivering; closing %s",
                    plural(len(old), "symbol connection"),
                )
                await asyncio.gather(*(c.close() for c in old))
            all_market.release()
            return True
        raw = self._raw
        # a switch to the all-market connection given up (it still holds): the symbol
        # connections are the old ones again, and may lag behind it. What it holds stays
        # held, handed on only ahead of their newer ticks (_delivering), the rest once they
        # too are read to their end (it may have ticks of a symbol they subscribe only now);
        # they deliver on, unheld. Only the connections opened now are new.
        old_ones = set(self._combined) if raw is not None and raw.holding else set()
        # closing an all-market connection that never took over ends a switch abandoned, not
        # one done
        switching = raw is not None and not raw.holding
        self._reshape(target)
        if raw is not None:
            opened = [c for c in self._combined if c not in old_ones]
            for conn in opened:
                conn.hold()
            new = self._combined
            wait = self.settings.handover_timeout  # as for the all-market one, but see below
            deadline = self.clock() + wait
            subscribed = _subscribed(new)
            while True:
                try:
                    if not await self._until(
                        lambda: all(c.live and c.ready for c in new), deadline
                    ):
                        return False
                except TimeoutError:
                    if _subscribed(new) > subscribed:
                        # still subscribing: after a refused batch, one stream a request at
                        # the market's pace (on spot, 100 streams take 100 s); waited for as
                        # long as each wait brings more
                        subscribed = _subscribed(new)
                        deadline = self.clock() + wait
                        continue
                    unready = sum(not (c.live and c.ready) for c in new)
                    why = (
                        f"connections for symbol streams not open and subscribed within "
                        f"{self.settings.handover_timeout:g}s: {unready} of {len(new)}"
                    )
                    await self._give_up_to_symbols(opened, why)
                    return False
                # a rotation meanwhile loses nothing (make-before-break); a socket lost does
                lost = [c.losses for c in new]
                # everything from the subscriptions on is on the new ones: the old one must
                # hand on what it was sent before them
                if not await self._drained([raw, *old_ones]):
                    return False
                # and they must still answer, as a rotation's new socket must (see above)
                answers = await asyncio.gather(*(c.answers() for c in opened))
                if all(c.live and c.losses == n for c, n in zip(new, lost, strict=True)):
                    if all(answers):
                        break
                    why = (
                        f"connections opened for symbol streams that did not answer within "
                        f"{self.settings.drain_timeout:g}s: {answers.count(False)} of "
                        f"{len(opened)}"
                    )
                    await self._give_up_to_symbols(opened, why)
                    return False
                # one closed meanwhile: what the exchange sent since is on the old one only
            self._raw = None
            # a switch to it given up: what it holds goes behind all the old ones had, and
            # ahead of what the connections opened now hold (_delivering): it carries every
            # symbol, theirs too
            self._hand_on(raw)
            # what its rotation under way holds (its new socket's ticks, held while its old
            # socket is read) goes ahead of their newer ones: they may have missed one
            for conn in new:
                conn.release(raw.release_rotating_before)
            if switching:
                self.stats.switches += 1
            log.info("feed: symbol streams subscribed; closing the all-market connection")
            await raw.close()
        else:
            for conn in self._combined:
                conn.release()
        return True

    async def _read_past(self, conn: Connection, old: list[Connection]) -> None:
        """Before what ``old`` holds is handed on ahead of ``conn``'s frames to come (a switch
        to them abandoned, ``conn`` carrying on): let go of them, so that they take in
        nothing more, then read ``conn`` to a request's reply (for at most
        ``drain_timeout``). Its answer to the switch's request covers only what it was sent
        before that; what it was sent since, and has not delivered yet (it lags), may be
        older than what they hold, which would overtake it (soak seed 10190)."""
        await asyncio.gather(*(c.close(keep_held=True) for c in old))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.drain_timeout):
                await conn.catch_up()

    async def _give_up_to_all(
        self, all_market: Connection, old: list[Connection], why: str
    ) -> None:
        """Give up a switch to the all-market connection (it did not deliver, or did not
        answer: ``why``): the symbol connections carry on, and the switch is tried again
        ``handover_timeout`` later. What it holds may be all there was of a symbol they do not
        carry: it is handed on once they are read to their end, as when a switch is given up
        half-way."""
        cfg = self.settings
        self.stats.switches_failed += 1
        log.warning(
            "feed: the new all-market connection %s; keeping %s, switching again in %gs",
            why,
            plural(len(old), "symbol connection"),
            cfg.handover_timeout,
        )
        # let go of it first: what it took in while they are read would be newer than what
        # that reading covers, and go ahead of their older ticks still on their way
        await all_market.close(keep_held=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cfg.drain_timeout):
                await self._catch_up(old)
        self._raw = None
        self._hand_on(all_market)
        self._retry_at = self.clock() + cfg.handover_timeout
        await all_market.close()

    def _hand_on(self, conn: Connection) -> None:
        """Hand on what ``conn`` held (a switch to it given up), each frame behind what the
        other connections' rotations hold that is older: a rotation's new socket holds its
        frames until the old one is read to its end, and may have ticks ``conn`` missed
        (it was down a while), which its newer ones would overtake."""
        others = [c for c in self.connections() if c is not conn]

        def ahead(event: int) -> None:
            for other in others:
                other.release_rotating_before(event)

        conn.release(ahead)

    async def _give_up_to_symbols(self, opened: list[Connection], why: str) -> None:
        """Give up a switch to symbol connections (some were not open and subscribed in time,
        or did not answer: ``why``): the all-market connection carries on, all those opened
        for the switch are closed, and the switch is tried again ``handover_timeout`` later.

        What they hold is handed on once the all-market connection is read to its end, as
        when a switch to it is given up: it may be all there is of a tick the all-market
        connection missed (it was down meanwhile); what it did carry the engine drops as a
        duplicate."""
        cfg = self.settings
        self.stats.switches_failed += 1
        log.warning(
            "feed: %s; keeping the all-market connection, switching again in %gs",
            why,
            cfg.handover_timeout,
        )
        self._retry_at = self.clock() + cfg.handover_timeout
        # let go of them first (see _give_up_to_all); while the all-market connection is
        # read, what they hold that is older than its frames still goes ahead of them
        await asyncio.gather(*(c.close(keep_held=True) for c in opened))
        raw = [self._raw] if self._raw is not None else []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cfg.drain_timeout):
                await self._catch_up(raw)
        self._combined = [c for c in self._combined if c not in opened]
        for conn in opened:
            self._hand_on(conn)
        await asyncio.gather(*(c.close() for c in opened))

    async def _drained(self, old: list[Connection]) -> bool:
        """Read the old connections until each has handed on all it was sent before now (to
        a request's reply, see Connection.catch_up), for at most ``drain_timeout``; False as
        soon as a new target is wanted."""
        # a task, not the gather itself: a gather cancelled when the wait is given up ends
        # with a CancelledError nobody retrieves, which asyncio logs as an error
        catching: asyncio.Future[Any] = asyncio.create_task(self._catch_up(old))
        changed: asyncio.Future[Any] = asyncio.create_task(self._changed.wait())
        try:
            done, _ = await asyncio.wait(
                {catching, changed},
                timeout=self.settings.drain_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            catching.cancel()
            changed.cancel()
        return catching in done or changed not in done

    @staticmethod
    async def _catch_up(old: list[Connection]) -> None:
        await asyncio.gather(*(c.catch_up() for c in old), return_exceptions=True)

    def _reshape(self, target: frozenset[str]) -> None:
        """Live changes of the combined connections: unsubscribe, subscribe, open, close.

        A stream refused within ``refused_retry`` is left out: no connection is opened for it
        (nor kept open for it alone) until then."""
        limit = self.settings.max_streams
        current: set[str] = set()
        for conn in self._combined:
            gone = conn.streams - target
            if gone:
                conn.unsubscribe(gone)
            current |= conn.streams
        for conn in [c for c in self._combined if not c.streams]:
            self._combined.remove(conn)
            task = asyncio.create_task(conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        add = sorted(target - current - self._refused())
        for conn in self._combined:
            room = limit - len(conn.streams)
            if add and room > 0:
                conn.subscribe(add[:room])
                add = add[room:]
        while add:
            self._combined.append(self._new(add[:limit], raw=False))
            add = add[limit:]

    async def _until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``predicate()``; False as soon as a new target is wanted. TimeoutError
        when ``deadline`` (loop time) comes first."""
        while not predicate():
            if self._changed.is_set():
                return False
            timeout = deadline - self.clock()
            if timeout <= 0:
                raise TimeoutError
            self._progress.clear()
            progress = asyncio.create_task(self._progress.wait())
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait(
                    {progress, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                progress.cancel()
                changed.cancel()
        return True

    # ------------------------------------------------------------------ health

    def connections(self) -> list[Connection]:
        return [c for c in (self._raw, *self._combined) if c is not None]

    def health(self) -> FeedHealth:
        now = self.clock()
        conns = []
        for c in self.connections():
            s = c.session
            conns.append(
                ConnectionHealth(
                    id=c.id,
                    streams=len(c.streams),
                    connected=s is not None,
                    last_message_age=c.last_data_age(),
                    age=None if s is None else now - s.opened_at,
                    reconnects=c.reconnects,
                    messages=c.messages,
                    last_error=c.last_error,
                )
            )
        if self._raw is not None and self._combined:
            mode = "switching"
        elif self._raw is not None:
            mode = "all"
        else:
            mode = "symbols" if self._combined else "idle"
        last = self.stats.last_data_at
        refused = sorted(self._refused())
        return FeedHealth(
            mode=mode,
            connections=tuple(conns),
            messages=self.stats.messages,
            messages_per_second=self.stats.messages_per_second(),
            reconnects=self.stats.reconnects,
            rotations=self.stats.rotations,
            last_message_age=None if last is None else now - last,
            problems=dict(self.stats.problems.counts),
            refused_streams=tuple(refused),
            outages=len(self.stats.outages),
            rotations_failed=self.stats.rotations_failed,
            switches_failed=self.stats.switches_failed,
            switches=self.stats.switches,
        )

    def market_seen(self) -> bool:
        """Whether the all-market stream is delivering: every symbol traded is on it each
        second, so the symbols seen are the market's."""
        raw = self._raw
        return raw is not None and raw.delivering

    def across_gap(self, symbol: str, previous_time: int, time: int) -> bool:
        """Whether an alert computed from the tick at ``previous_time`` to the one at ``time``
        spans an outage of the feed longer than its stale threshold."""
        return any(o.covers(symbol, previous_time, time) for o in self.stats.outages)
