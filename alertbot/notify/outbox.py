"""The durable outbox: every alert is in SQLite before anyone is told about it.

``submit`` (called by the pipeline for each alert, on the hot path) only appends the rendered
alert to a list: alerts for the console alone to a lane of their own, every other one to the
main list. A writer task stores what has gathered in one transaction, on a thread of its own,
and only then hands the deliveries to the senders; the senders' results are written the same
way. Each transaction takes the whole main list but at most ``CONSOLE_BATCH`` console alerts,
so a console flood never holds up an alert for Telegram or a webhook by more than one such
write. At start-up every delivery still open is resumed. Delivery is at least once: a crash
between a send and the write of its result sends that alert again after the restart (webhook
receivers de-duplicate by ``Idempotency-Key``).

Fallback (DESIGN.md, Delivery): a Telegram delivery that fails for good, or has not succeeded
within ``fallback_after``, also goes to the fallback webhook (``fallback: true`` and the chat
id). Telegram keeps trying in the second case; if it then succeeds, that is recorded and
nothing more is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO, TypeVar

from alertbot.notify.delivery import Delivery, Report, Sender, clip
from alertbot.notify.render import format_time
from alertbot.notify.routing import CONSOLE, Route, Router
from alertbot.notify.settings import DeliverySettings
from alertbot.store import OPEN_STATES, AlertRecord, DeliveryRow, Store, Update, database_failed
from alertbot.tasks import cancel_and_wait
from alertbot.text import is_text, mend, plural

T = TypeVar("T")
log = logging.getLogger("alertbot.notify")
alert_log = logging.getLogger("alertbot.alerts")

#: the deliveries a start without the Telegram token holds back, in the singular and plural
_UNDELIVERED = ("undelivered Telegram alert delivery", "undelivered Telegram alert deliveries")

#: alerts for the console stored in one transaction, at most (see Outbox._write_loop)
CONSOLE_BATCH = 256

#: a destination's deliveries held in memory, at most (a Telegram chat's: a merged message of
#: short alerts takes a couple of hundred; a webhook URL's: sent one at a time in any case): one
#: destination's backlog cannot take the room of the others (Outbox._refill)
CHAT_WINDOW = 256
#: past a kind's bound, a destination with nothing in memory still takes one delivery at a time,
#: up to this many in all: destinations that keep failing (their windows held until they send,
#: or give up after a day) cannot take the whole bound and leave every other destination's
#: alerts in the database
SPARE = CHAT_WINDOW
#: the kinds of delivery held in memory within a bound (settings.delivery_memory, each kind its
#: own): those that pile up while their service is down (fallbacks: while Telegram and the
#: fallback webhook both are), by the sender each goes to. The console's are written at once
BOUNDED = {"telegram": "telegram", "webhook": "webhook", "fallback": "webhook"}
#: how often the deliveries waiting in the database only are checked for a fallback due
SWEEP_EVERY = 1.0
#: of those, the most that fall back at one check
SWEEP_BATCH = 2000


#: the text fields of an alert, mended (U+FFFD for a lone surrogate) when a write refuses it
_TEXT_FIELDS = ("id", "rule", "symbol", "price", "condition", "text", "html")


@dataclasses.dataclass(slots=True)
class _Written:
    """What a write did (Outbox._store): the fallbacks stored before (not to be sent again);
    for a batch written record by record: alerts stored mended, by their id as submitted, and
    what could not be stored at all, with the error."""

    stored_before: set[Delivery]
    mended: dict[str, AlertRecord] = dataclasses.field(default_factory=dict)
    #: deliveries (by identity) not stored: their alert or their own row was refused
    refused: dict[int, str] = dataclasses.field(default_factory=dict)
    #: delivery results not stored: (alert id, destination, error)
    lost_results: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    #: the rowid of the newest delivery row before the write (Store.last_delivery)
    before: int = 0


def _mended(record: AlertRecord) -> AlertRecord:
    bad: dict[str, Any] = {
        f: mend(getattr(record, f)) for f in _TEXT_FIELDS if not is_text(getattr(record, f))
    }
    return dataclasses.replace(record, **bad) if bad else record


def one_line(text: str) -> str:
    """A message as one line (for the console and the log): its sparkline and gap note follow
    the sentence instead of standing on lines of their own."""
    return " ".join(text.splitlines())


def alert_id(rule: str, symbol: str, time: int) -> str:
    """Stable across retries and restarts: the same firing has the same id."""
    return f"{rule}:{symbol}:{time}"


#: a console delivery's error once stdout takes no more lines (ConsoleSender.gone)
CONSOLE_GONE = "console: stdout is closed"


def gone_note(more: str = "") -> str:
    """What the log says once stdout is gone for good (ConsoleSender), ``more`` at its end."""
    return (
        f"{CONSOLE_GONE} (nothing reads it): alerts are no longer printed; each is still stored "
        f"in the database and logged (alertbot.alerts){more}"
    )


def _drop_buffer(out: TextIO, exc: Exception) -> None:
    """Point ``out``'s descriptor at /dev/null after a broken pipe: the lines left in its
    buffer would be flushed again at exit, where Python prints "Exception ignored ...
    BrokenPipeError" and exits 120 (the Python documentation's advice for SIGPIPE)."""
    if not isinstance(exc, BrokenPipeError):
        return
    try:
        fd = out.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no descriptor (a StringIO): nothing flushes it at exit
        return
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class ConsoleSender:
    """The embedded default: one line per alert on ``out`` (stdout), written by a thread of its
    own. Lines that wait together are written together, with one flush; a slow or blocked
    stdout (a terminal, a full pipe) holds up only the console's own queue, never the event loop
    or the other destinations. Results are reported on the event loop, in order.

    A stdout whose reader went away (``alertbot run | head -1``: a pipe nobody reads), or none
    at all (``>&-``: ``out`` is None), never comes back: said once (by ``on_gone`` when
    given, called on the event loop), and from then on nothing is written; the alerts stay
    stored (failed, saying so) and logged."""

    def __init__(
        self, report: Report, out: TextIO | None, on_gone: Callable[[], object] | None = None
    ) -> None:
        self.report = report
        self.out = out
        self.on_gone = on_gone
        #: why stdout takes no more lines, for good (see above); None while it does
        self.gone: str | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.writes = 0  # batches written (each one write and one flush)

    def enqueue(self, d: Delivery) -> None:
        with self._cond:
            self._queue.append(d)
            if len(self._queue) == 1:
                self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="alertbot-console", daemon=True)
            self._thread.start()

    def pending(self) -> int:
        return len(self._queue)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread after the batch it is writing; what waits stays open (resumed at the
        next start). A write that does not return within ``timeout`` is left to itself."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = list(self._queue)
                self._queue.clear()
            # one line each (README), as in the log: a sparkline or gap note follows the
            # sentence on its line, not on lines of its own
            text = "".join(
                f"{format_time(d.alert.time)}  {d.alert.rule}  {one_line(d.alert.text)}\n"
                for d in batch
            )
            error = self.gone
            went = False
            if error is None:
                error = self._write(text)
                went = self.gone is not None
            try:
                self._loop.call_soon_threadsafe(self._done, batch, error, went)
            except RuntimeError:  # the loop is closed: the batch stays open in the database
                return

    def _write(self, text: str) -> str | None:
        """Write and flush ``text``; None, or why it failed (setting :attr:`gone` when stdout
        is gone for good)."""
        out = self.out
        self.writes += 1
        try:
            if out is None:  # started without one (``>&-``)
                raise ValueError("no stdout")
            out.write(text)
            out.flush()
        except (BrokenPipeError, ValueError) as exc:  # ValueError: a closed file
            self.gone = CONSOLE_GONE
            if out is not None:
                _drop_buffer(out, exc)
            return CONSOLE_GONE
        except OSError as exc:  # a full disk under ``> file``: it may have room later
            return f"console: {exc}"
        return None

    def _done(self, batch: list[Delivery], error: str | None, went: bool = False) -> None:
        if went:
            if self.on_gone is not None:
                self.on_gone()
            else:
                log.warning("%s", gone_note())
        for d in batch:
            if error is None:
                d.state = "sent"
                self.report(d, "sent")
            else:
                self.report(d, "failed", error)


class Outbox:
    def __init__(
        self,
        store: Store,
        settings: DeliverySettings,
        router: Router,
        senders: dict[str, Sender],
    ) -> None:
        self.store = store
        self.settings = settings
        self.router = router
        self.senders = senders  # by kind: telegram, webhook (also fallbacks), console
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertbot-db")
        self._alerts: list[AlertRecord] = []
        self._new: list[Delivery] = []
        self._updates: list[Update] = []
        # alerts for the console alone, stored CONSOLE_BATCH to a transaction (see _write_loop)
        self._console: deque[Delivery] = deque()
        self._dirty = asyncio.Event()
        self._flushed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: with no Telegram token, the resumed Telegram deliveries falling back (_fall_back_all)
        self._fall_backs: asyncio.Task[None] | None = None
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # (alert id, Telegram destination) handed to the fallback webhook while that Telegram
        # delivery is open; by destination (telegram:<chat as configured>), which a group's
        # move to a supergroup leaves alone, unlike the delivery's chat_id
        self._fallbacks: set[tuple[str, str]] = set()
        #: the Telegram destinations whose fallback was logged since Telegram last delivered
        #: to them: an outage during a flood logs each chat's first, not one line an alert
        self._fallback_told: set[str] = set()
        self.submitted = 0
        self.open: dict[tuple[str, str], Delivery] = {}  # being attempted, by (alert, dest)
        self._in_write = 0  # deliveries in the transaction being written
        self.write_errors = 0
        #: the last write's error; None once a write succeeds
        self.write_error: str | None = None
        # time.monotonic() when the oldest alert not stored yet was submitted (at most)
        self._unstored_since: float | None = None
        #: attempts by (destination kind, outcome): sent, failed, pending (a retry follows)
        self.outcomes: dict[tuple[str, str], int] = {}
        self._writing = False
        # alerts submitted and stored, per queue (each is written in order): stored_all() waits
        # on them; _batch is set after each transaction
        self._queued = [0, 0]  # other destinations, the console alone
        self._stored = [0, 0]
        self._batch = asyncio.Event()
        # the seq of the next alert (AlertRecord.seq): set from the database at start()
        self._seq = 1
        #: the write on the database thread: its future, and its alerts and results (counted)
        self._in_flight: tuple[Future[_Written], int, int] | None = None
        # Telegram, webhook and fallback deliveries held in memory are bounded
        # (settings.delivery_memory each kind, CHAT_WINDOW each destination: a chat, a webhook
        # URL, a chat's fallback): the others are in the database only ("parked"), each
        # destination's from just past a rowid on, and are loaded, oldest first, as room frees
        # (_refill). Telegram's fallbacks fall due from the database (_sweep). Only the counts
        # are in memory, per destination. Each kind has a budget of its own: a Telegram outage
        # must not hold up a webhook that works, nor the other way round, nor a fallback
        # webhook that is down the channels' webhooks. Without a Telegram sender (no token)
        # Telegram deliveries are never sent from here (_without_telegram): they take no room.
        self._bounded = frozenset(k for k, sender in BOUNDED.items() if sender in senders)
        self._window = max(1, min(CHAT_WINDOW, settings.delivery_memory))
        self._held: dict[str, int] = {}  # destination -> its deliveries in memory
        self.held = dict.fromkeys(self._bounded, 0)  # kind -> its deliveries in memory
        # destination -> the rowid past which its deliveries are parked (-1: being written,
        # known after the write), and how many are (at most)
        self._parked: dict[str, int] = {}
        self._parked_n: dict[str, int] = {}
        self.parked = 0
        self._refill_due = False  # room freed, or deliveries parked, since the last _refill
        self._sweep_at = 0.0
        self._sweep_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ intake

    @property
    def next_seq(self) -> int:
        """The seq the next alert made will have: every alert made so far has a lower one."""
        return self._seq

    def take_seq(self) -> int:
        """A new alert's seq (AlertRecord.seq): its place in the order alerts are made, which,
        unlike their wall-clock times, a clock stepped back (NTP) cannot disorder. Engine state
        saved now holds the firings of every alert before ``next_seq`` (App.save_state)."""
        seq = self._seq
        self._seq = seq + 1
        return seq

    def submit(self, record: AlertRecord, routes: Sequence[Route]) -> None:
        """Queue an alert for its destinations (no I/O here: the writer stores it first)."""
        self.submitted += 1
        if self._unstored_since is None:
            self._unstored_since = time.monotonic()
        if alert_log.isEnabledFor(logging.INFO):
            # Logger.info less its caller lookup (a stack walk per alert): the line is the same
            alert_log.handle(
                alert_log.makeRecord(
                    alert_log.name,
                    logging.INFO,
                    __file__,
                    0,
                    "alert %s %s: %s",
                    # one line, as a log line should be: the sparkline and a gap note follow
                    # the sentence on lines of their own in the message
                    (record.rule, record.symbol, one_line(record.text)),
                    None,
                )
            )
        if len(routes) == 1 and routes[0].destination == CONSOLE.destination:
            self._console.append(Delivery(record, CONSOLE.destination, created=record.created))
            self._queued[1] += 1
        else:
            self._alerts.append(record)
            self._queued[0] += 1
            for route in routes:
                d = Delivery(
                    record,
                    route.destination,
                    chat_id=route.chat_id,
                    url=route.url,
                    secret=self.router.secret_for(route.url) if route.url else None,
                    body_format=self.router.format_for(route.url) if route.url else None,
                    created=record.created,
                )
                self._new.append(d)
        self._dirty.set()

    def report(self, d: Delivery, state: str, error: str | None = None, attempts: int = 1) -> None:
        """What a sender says about one attempt: sent, failed for good, or still open (pending
        a retry; fell_back, a retry of a delivery the fallback webhook has too)."""
        if state == "pending" and d.state == "fell_back":
            # the row must keep saying so: restored at the next start, it keeps the alert from
            # falling back a second time
            state = "fell_back"
        if error is not None:
            error = clip(error)
        self._updates.append(Update(d.alert.id, d.destination, state, attempts, error))
        self._dirty.set()
        still_open = state in OPEN_STATES
        key = (d.kind, "pending" if still_open else state)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        if still_open:
            return
        delivery = (d.alert.id, d.destination)
        if self.open.pop(delivery, None) is not None and d.kind in self._bounded:
            self._release(d.destination)
        timer = self._timers.pop(delivery, None)
        if timer is not None:  # settled: no fallback is due (a flood must not keep 60 s of them)
            timer.cancel()
        if d.kind == "telegram":
            if state == "sent":
                self._fallback_told.discard(d.destination)
            elif state == "failed":
                self._fall_back(d, f"Telegram refused it for good: {error}", quiet=d.quiet)
            # settled: it cannot fall back again (its timer is gone), so the marker that kept
            # it from falling back twice goes too; kept, the markers of a long outage add up
            self._fallbacks.discard((d.alert.id, d.destination))

    @property
    def _waiting(self) -> bool:
        """Anything submitted or reported that is not written yet."""
        return bool(self._alerts or self._new or self._updates or self._console)

    @property
    def depth(self) -> int:
        """Deliveries not settled yet: waiting to be stored, being stored, or being attempted."""
        return len(self.open) + len(self._new) + len(self._console) + self._in_write + self.parked

    def parked_to(self, destination: str) -> int:
        """Deliveries to ``destination`` waiting in the database only (not in :attr:`open`)."""
        return self._parked_n.get(destination, 0)

    @property
    def unstored_age(self) -> float | None:
        """Seconds the oldest alert not stored yet has waited (at most); None: none waits."""
        since = self._unstored_since
        return None if since is None else time.monotonic() - since

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Open the database and resume what was left undelivered; returns how many."""
        loop = asyncio.get_running_loop()
        self._seq = await loop.run_in_executor(self._executor, self.store.next_seq)
        # the bounded kinds' deliveries are loaded a window at a time (_refill, at the writer's
        # start): a backlog of an outage is not read into memory whole
        capped = [f"{kind}:" for kind in sorted(self._bounded)]
        # with no Telegram sender (no token) Telegram's are not read here either: counted, and
        # those due fall back a page at a time (_without_telegram)
        telegram = "telegram" in self.senders
        skipped = capped if telegram else [*capped, "telegram:"]
        left = await loop.run_in_executor(self._executor, self.store.open_deliveries, skipped)
        for record, row in left:
            self._dispatch(self._restored(record, row))
        resumed = len(left)
        for prefix in capped:
            waiting = await loop.run_in_executor(
                self._executor, self.store.open_destinations, prefix
            )
            for destination, n in waiting.items():
                self._park(destination, 0, n)
                resumed += n
        no_token = 0  # Telegram deliveries, and no Telegram token now
        if not telegram:
            waiting = await self.db(self.store.open_destinations, "telegram:")
            no_token = sum(waiting.values())
            resumed += no_token
        if resumed:
            log.warning(
                "outbox: resuming %s",
                plural(resumed, "undelivered alert delivery", "undelivered alert deliveries"),
            )
        if self._parked:
            await self._refill()  # each chat's first window, as those above: being attempted
        self._task = asyncio.create_task(self._write_loop(), name="outbox-writer")
        if no_token:
            await self._without_telegram(no_token)
        return resumed

    def _restored(self, record: AlertRecord, row: DeliveryRow) -> Delivery:
        """A delivery read back from the database (at start-up, or parked), as it was."""
        d = Delivery(
            record,
            row.destination,
            chat_id=row.chat_id,
            attempts=row.attempts,
            created=row.created,
            state=row.state,
        )
        kind, _, rest = row.destination.partition(":")
        if kind == "telegram":
            d.chat_id = int(rest)
            if row.state == "fell_back":
                self._fallbacks.add((record.id, row.destination))
        elif kind == "webhook":
            d.url = rest
        elif kind == "fallback":
            chat, _, d.url = rest.partition(":")  # fallback:<chat>:<url>
            self._fallbacks.add((record.id, f"telegram:{chat}"))
        if d.url:
            d.secret = self.router.secret_for(d.url)
            d.body_format = self.router.format_for(d.url)
        return d

    async def drain(self, grace: float) -> bool:
        """Give the senders up to ``grace`` seconds to settle every open delivery (those
        parked in the database too, loaded as room frees)."""
        deadline = time.monotonic() + grace
        while (self.open or self.parked) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not (self.open or self.parked)

    async def close(self, grace: float | None = None) -> None:
        """Write what is queued and stop (what is still open is resumed at the next start).

        A database that refuses writes (disk full, read-only) must not hold the shutdown up
        for ever: once no write has succeeded for ``grace`` seconds (``settings.close_timeout``
        when none is given), what could not be stored is counted in the log and left. The
        deadline starts again after each write that succeeds, so a large backlog on a database
        that takes it is written in full, however long that takes.
        """
        if self._fall_backs is not None:  # the rest fall back at the next start
            await cancel_and_wait(self._fall_backs)
        written = await self._write_all(grace if grace else self.settings.close_timeout)
        if self._task is not None:
            await cancel_and_wait(self._task)
        for timer in self._timers.values():
            timer.cancel()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        # a write in progress ends (SQLite's busy timeout: seconds, on a database another
        # process holds), waited for off the event loop, which keeps running meanwhile (a
        # second Ctrl-C ends the process at once, the stop's other tasks end)
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if not written:
            alerts, results = self._unwritten()
            log.error(
                "outbox: the database took no write for %gs at shutdown: %s (lost) and %s "
                "(%s resumed at the next start) could not be stored",
                grace if grace else self.settings.close_timeout,
                plural(alerts, "alert"),
                plural(results, "delivery result"),
                "that delivery is" if results == 1 else "those deliveries are",
            )

    async def _write_all(self, timeout: float) -> bool:
        """flush() while writes succeed: False once none has for ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._waiting or self._writing:
            self._batch.clear()  # set after each transaction that succeeds
            self._dirty.set()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._batch.wait()
            except TimeoutError:
                return False
            deadline = loop.time() + timeout
        return True

    def _unwritten(self) -> tuple[int, int]:
        """Alerts, and results (a sender's report, a fallback's row), not stored: those still
        queued and those of a write that the close interrupted and that then failed."""
        alerts = len(self._alerts) + len(self._console)
        results = len(self._updates) + sum(d.kind == "fallback" for d in self._new)
        if self._in_flight is not None:
            future, batch_alerts, batch_results = self._in_flight
            if future.done() and (future.cancelled() or future.exception() is not None):
                alerts += batch_alerts
                results += batch_results
        return alerts, results

    async def flush(self) -> None:
        """Until everything submitted or reported so far is written (a write in progress too)."""
        while self._waiting or self._writing:
            self._flushed.clear()
            if self._waiting:
                self._dirty.set()
            await self._flushed.wait()

    async def stored_all(self) -> None:
        """Until every alert submitted so far is stored (not those submitted meanwhile: unlike
        flush(), this ends during a steady flood). Engine state that records a firing must not
        reach the database before the firing's alert does (App.save_state)."""
        mark = list(self._queued)
        while self._stored[0] < mark[0] or self._stored[1] < mark[1]:
            self._batch.clear()
            self._dirty.set()
            await self._batch.wait()

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the database thread (the one connection is used only there)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------ writing

    async def _write_loop(self) -> None:
        """Store what gathered, one transaction at a time, then hand it to the senders.

        Each transaction takes everything waiting for Telegram or a webhook and every result,
        but at most CONSOLE_BATCH alerts for the console: the console's backlog in a flood
        (thousands of alerts a second) delays another destination's alert by one such write at
        most, never by the whole backlog.
        """
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            while self._waiting:
                alerts, new, updates = self._alerts, self._new, self._updates
                self._alerts, self._new, self._updates = [], [], []
                waiting = self._console
                console = [waiting.popleft() for _ in range(min(len(waiting), CONSOLE_BATCH))]
                parking = self._plan(new)
                self._writing = True
                self._in_write = len(new) + len(console)
                future: Future[_Written] = self._executor.submit(
                    self._store, alerts, new, console, updates
                )
                # kept until the write ends: close() counts it if it is cancelled meanwhile
                self._in_flight = (
                    future,
                    len(alerts) + len(console),
                    len(updates) + sum(d.kind == "fallback" for d in new),
                )
                try:
                    # shielded: a cancelled writer (close(), past its deadline) must not cancel
                    # a batch the thread has not started yet: it is written, or counted as lost
                    written = await asyncio.shield(asyncio.wrap_future(future))
                except Exception as exc:  # disk full, database locked: keep it, try again
                    self._in_flight = None
                    self.write_errors += 1
                    self.write_error = str(exc)
                    log.error("outbox: cannot write the database (%s); retrying", exc)
                    self._alerts[:0], self._new[:0], self._updates[:0] = alerts, new, updates
                    waiting.extendleft(reversed(console))
                    await asyncio.sleep(1.0)
                    continue
                finally:
                    self._writing = False
                    self._in_write = 0
                self._in_flight = None
                self.write_error = None
                # what came during the write waits since then at most
                self._unstored_since = time.monotonic() if self._alerts or self._console else None
                self._stored[0] += len(alerts)
                self._stored[1] += len(console)
                self._batch.set()
                if written.mended or written.refused or written.lost_results:
                    self._mend(written, new, console)
                for destination, after in self._parked.items():
                    if after < 0:  # parked from this write on
                        self._parked[destination] = written.before
                for d in new:  # stored: now they may be sent
                    if id(d) in written.refused:
                        continue
                    if id(d) in parking:  # stored: it waits there for room (_refill)
                        self._park(d.destination, written.before, 1)
                        self._refill_due = True
                        continue
                    if d in written.stored_before:
                        # a fallback sent (or being sent) before a restart, whose Telegram row
                        # was written back to pending by an older version: not a second copy
                        log.info(
                            "alert %s for chat %s: the fallback webhook had it already",
                            d.alert.id,
                            d.chat_id,
                        )
                        continue
                    self._dispatch(d)
                for d in console:
                    if id(d) not in written.refused:
                        self._dispatch(d)
                # here too, not only once nothing waits: a steady flood keeps this loop going
                await self._parked_work()
            await self._parked_work()  # woken with nothing to write: the sweep's timer
            self._flushed.set()

    async def _parked_work(self) -> None:
        """Load parked deliveries when room freed, and let those due fall back. Only between
        writes: a fallback's row written by the sweep is stored before any _refill reads it."""
        if self._parked:
            if self._refill_due:
                self._refill_due = False
                await self._refill()
            await self._sweep()

    # ------------------------------------------------------------------ the bound in memory

    def _plan(self, new: list[Delivery]) -> set[int]:
        """The deliveries of ``new`` of the bounded kinds (by identity) that are to be parked
        once stored: all of a destination's when it has parked ones already (they go first) or
        when they do not fit in its window or in the room left (all or none, so that each
        destination's parked rows are those written past a rowid)."""
        bounded = self._bounded
        wanted: dict[str, int] = {}
        for d in new:
            if d.kind in bounded:
                wanted[d.destination] = wanted.get(d.destination, 0) + 1
        if not wanted:
            return set()
        room = self._room()
        parked = self._parked
        for destination, n in wanted.items():
            kind = destination.partition(":")[0]
            if (
                destination in parked
                or self._held.get(destination, 0) + n > self._window
                or n > room[kind]
            ):
                parked.setdefault(destination, -1)
            else:
                room[kind] -= n
        return {id(d) for d in new if d.kind in bounded and d.destination in parked}

    def _room(self) -> dict[str, int]:
        """How many more deliveries of each bounded kind memory may hold."""
        cap = self.settings.delivery_memory
        return {kind: cap - held for kind, held in self.held.items()}

    def _park(self, destination: str, after: int, n: int) -> None:
        self._parked.setdefault(destination, after)
        self._parked_n[destination] = self._parked_n.get(destination, 0) + n
        self.parked += n

    def _unpark(self, destination: str, n: int | None = None) -> None:
        """``n`` of the destination's parked deliveries are loaded (None: all there are)."""
        had = self._parked_n.pop(destination, 0)
        left = 0 if n is None else max(0, had - n)
        self.parked -= had - left
        if n is None:
            del self._parked[destination]
        elif left:
            self._parked_n[destination] = left

    def _release(self, destination: str) -> None:
        """A delivery of a bounded kind held in memory is settled: its room is free."""
        self.held[destination.partition(":")[0]] -= 1
        n = self._held[destination] - 1
        if n:
            self._held[destination] = n
        else:
            del self._held[destination]
        if self._parked:
            self._refill_due = True
            self._dirty.set()  # the writer loads what waits (_refill)

    async def _refill(self) -> None:
        """Load parked deliveries while there is room: the destinations with the oldest first,
        each once half its window is free, as many as fill it, in the order they were written;
        with no room left, one for each destination holding none, from the SPARE."""
        room = self._room()
        window = self._window
        for destination, after in sorted(self._parked.items(), key=lambda item: item[1]):
            if max(room.values()) <= -SPARE:
                break
            kind = destination.partition(":")[0]
            held = self._held.get(destination, 0)
            if after < 0 or held > window // 2:
                continue
            if room[kind] > 0:
                take = min(window - held, room[kind])
            elif held == 0 and room[kind] > -SPARE:
                take = 1
            else:
                continue
            rows = await self.db(self.store.open_to, destination, after, take)
            for _, record, row in rows:
                self._dispatch(self._restored(record, row))
            room[kind] -= len(rows)
            if len(rows) < take:  # none left in the database
                self._unpark(destination)
            else:
                self._parked[destination] = rows[-1][0]
                self._unpark(destination, len(rows))

    async def _sweep(self) -> None:
        """Parked Telegram deliveries whose fallback is due (``fallback_after`` from their
        alert, as for those in memory) fall back from the database, without being loaded
        for Telegram; checked every SWEEP_EVERY seconds while any are parked."""
        if not any(destination.startswith("telegram:") for destination in self._parked):
            return  # webhook deliveries only: they have no fallback
        now = time.time()
        if now >= self._sweep_at:
            self._sweep_at = now + SWEEP_EVERY
            due = now - self.settings.fallback_after
            rows = await self.db(self.store.pending_before, "telegram:", due, SWEEP_BATCH)
            why = f"Telegram has not delivered it within {self.settings.fallback_after:g}s"
            for rowid, record, row in rows:
                after = self._parked.get(row.destination)
                if after is None or after < 0 or rowid <= after:
                    continue  # in memory: its own timer
                d = self._restored(record, row)
                self._fall_back(d, why)
                # its row says so once written, before any _refill reads it again: no marker
                # is kept for a delivery not in memory
                self._fallbacks.discard((d.alert.id, d.destination))
        if self._parked and self._sweep_timer is None:
            loop = asyncio.get_running_loop()
            self._sweep_timer = loop.call_later(SWEEP_EVERY, self._sweep_due)

    def _sweep_due(self) -> None:
        self._sweep_timer = None
        self._dirty.set()

    def _mend(self, written: _Written, new: list[Delivery], console: list[Delivery]) -> None:
        """After a batch written record by record: its deliveries of mended alerts take the
        mended alert (sent as stored), the refused ones are counted as failed; each said once
        in the log, by alert id."""
        told: set[str] = set()
        for d in (*new, *console):
            old = d.alert.id
            mended = written.mended.get(old)
            if mended is not None:
                d.alert = mended
                d.destination = mend(d.destination)
            error = written.refused.get(id(d))
            if error is not None:
                key = (d.kind, "failed")
                self.outcomes[key] = self.outcomes.get(key, 0) + 1
                if d.alert.id not in told:
                    told.add(d.alert.id)
                    log.error(
                        "alert %s (rule %s) cannot be stored (%s): it is not sent, its "
                        "deliveries count as failed",
                        d.alert.id,
                        d.alert.rule,
                        error,
                    )
            elif mended is not None and mended.id not in told:
                told.add(mended.id)
                log.warning(
                    "alert %s (rule %s): its text is not valid Unicode (a lone surrogate); "
                    "stored and sent with U+FFFD in its place",
                    mended.id,
                    mended.rule,
                )
        for alert_id, destination, error in written.lost_results:
            log.error(
                "alert %s to %s: a delivery result cannot be stored (%s); the delivery is "
                "resumed at the next start",
                alert_id,
                destination,
                error,
            )

    def _store(
        self,
        alerts: list[AlertRecord],
        new: list[Delivery],
        console: list[Delivery],
        updates: list[Update],
    ) -> _Written:
        """On the database thread: one transaction (the rows are made here, where they live
        only as long as the write). Returns the fallbacks that were stored before (not to be
        sent again), and what was mended or refused.

        A write that fails for one of its records (a text with a lone surrogate, a number
        SQLite cannot hold) is made again record by record (:meth:`_store_each`), so that one
        bad record holds up none of the others; one that fails for the database itself (locked,
        full, read-only) raises, and the writer keeps the batch and tries again."""
        before = self.store.last_delivery()
        try:
            stored_before = self._stored_before(new)
            rows = [
                DeliveryRow(d.alert.id, d.destination, chat_id=d.chat_id, created=d.created)
                for d in (*new, *console)
            ]
            self.store.write([*alerts, *(d.alert for d in console)], rows, updates)
            return _Written(stored_before, before=before)
        except Exception as exc:
            if database_failed(exc):
                raise
        written = self._store_each(alerts, new, console, updates)
        written.before = before
        return written

    def _stored_before(self, new: list[Delivery]) -> set[Delivery]:
        return {
            d
            for d in new
            if d.kind == "fallback"
            and any(r.destination == d.destination for r in self.store.deliveries(d.alert.id))
        }

    def _store_each(
        self,
        alerts: list[AlertRecord],
        new: list[Delivery],
        console: list[Delivery],
        updates: list[Update],
    ) -> _Written:
        """The batch again, each record in a savepoint of its own (Store.write_each), its texts
        mended first: a lone surrogate as U+FFFD (SQLite, Telegram and orjson take no lone
        surrogate; the alert is stored and sent so rather than lost). What still fails is
        left out and reported."""
        written = _Written(set())
        for a in (*alerts, *(d.alert for d in console)):
            m = _mended(a)
            if m is not a:
                written.mended[a.id] = m
        mended = written.mended
        by_row: dict[int, Delivery] = {}
        rows = []
        for d in (*new, *console):
            alert = mended.get(d.alert.id, d.alert)
            row = DeliveryRow(alert.id, mend(d.destination), chat_id=d.chat_id, created=d.created)
            by_row[id(row)] = d
            rows.append(row)
        fixed = [
            dataclasses.replace(
                u,
                alert_id=mend(u.alert_id),
                destination=mend(u.destination),
                last_error=None if u.last_error is None else mend(u.last_error),
            )
            for u in updates
        ]
        failed = self.store.write_each(
            [mended.get(a.id, a) for a in (*alerts, *(d.alert for d in console))], rows, fixed
        )
        refused_alerts: dict[str, str] = {}
        for item, exc in failed:
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(item, AlertRecord):
                refused_alerts[item.id] = error
            elif isinstance(item, DeliveryRow):
                written.refused[id(by_row[id(item)])] = error
            else:
                written.lost_results.append((item.alert_id, item.destination, error))
        for row in rows:
            if row.alert_id in refused_alerts:
                written.refused[id(by_row[id(row)])] = refused_alerts[row.alert_id]
        try:
            written.stored_before = self._stored_before(
                [d for d in new if id(d) not in written.refused and is_text(d.alert.id)]
            )
        except Exception as exc:  # as good as none: a second copy at worst
            if database_failed(exc):
                raise
        return written

    async def _without_telegram(self, waiting: int) -> None:
        """Telegram deliveries resumed while no bot token is set (``waiting`` of them, still
        in the database): as a new alert for a Telegram chat then, each goes to the fallback
        webhook; with none, it waits in the database for a start with the token. Never to the
        console: a line on stdout is no Telegram message, and the row would be settled 'sent'.
        Either way the Telegram row stays open (resumed, and sent, once the token is back), and
        the log says so once, not once per alert. None is read into memory but a page of those
        that fall back at a time (a long outage's backlog can be more than memory holds)."""
        if self.settings.webhook_url is None:
            log.warning(
                "outbox: %s %s for a Telegram token (ALERTBOT_TELEGRAM_TOKEN is not set, nor a "
                "fallback webhook): %s in the database and %s sent at a start with the token",
                plural(waiting, *_UNDELIVERED),
                "waits" if waiting == 1 else "wait",
                "it stays" if waiting == 1 else "they stay",
                "is" if waiting == 1 else "are",
            )
            return
        due = await self.db(self.store.pending_count, "telegram:")  # the others fell back before
        log.warning(
            "outbox: %s and no Telegram token (ALERTBOT_TELEGRAM_TOKEN is not set): %d sent "
            "to the fallback webhook; Telegram gets %s at a start with the token",
            plural(waiting, *_UNDELIVERED),
            due,
            "it" if waiting == 1 else "them",
        )
        if due:
            self._fall_backs = asyncio.create_task(self._fall_back_all(), name="outbox-no-token")

    async def _fall_back_all(self) -> None:
        """Send the Telegram deliveries still pending to the fallback webhook (no token is
        set), a page (SWEEP_BATCH) at a time in the order they were written, each page stored
        before the next is read."""
        after = 0
        why = "no Telegram token is set"
        try:
            while rows := await self.db(
                self.store.pending_before, "telegram:", math.inf, SWEEP_BATCH, after
            ):
                added = []
                for rowid, record, row in rows:
                    after = rowid
                    key = (record.id, row.destination)
                    if key not in self._fallbacks:  # a fallback resumed is its copy already
                        self._fall_back(self._restored(record, row), why, quiet=True)
                        added.append(key)
                await self.flush()
                # its row says so once written: no marker is kept for a delivery not in memory
                self._fallbacks.difference_update(added)
        except Exception:  # the database failing: they stay pending, resumed at the next start
            log.exception(
                "outbox: the Telegram deliveries waiting for a token stopped falling back"
            )

    def _dispatch(self, d: Delivery) -> None:
        key = (d.alert.id, d.destination)
        kind = d.kind
        if kind in self._bounded and key not in self.open:  # one room, freed by its one settle
            self.held[kind] += 1
            self._held[d.destination] = self._held.get(d.destination, 0) + 1
        self.open[key] = d
        sender = self.senders["webhook" if kind == "fallback" else kind]
        if kind == "telegram" and d.state == "pending" and d.chat_id is not None:
            due = d.created + self.settings.fallback_after - time.time()
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(max(0.0, due), self._fallback_due, d)
        sender.enqueue(d)

    def _fallback_due(self, d: Delivery) -> None:
        self._timers.pop((d.alert.id, d.destination), None)
        if d.state == "pending":
            self._fall_back(
                d, f"Telegram has not delivered it within {self.settings.fallback_after:g}s"
            )

    def _fall_back(self, d: Delivery, why: str, *, quiet: bool = False) -> None:
        assert d.chat_id is not None
        key = (d.alert.id, d.destination)
        if key in self._fallbacks:
            return
        self._fallbacks.add(key)
        url = self.settings.webhook_url
        if d.state == "pending":
            d.state = "fell_back"
            self._updates.append(Update(d.alert.id, d.destination, "fell_back", 0, clip(why)))
        if url is None:
            if quiet and d.state == "failed":  # a paused chat's: its one line says so
                self._dirty.set()
                return
            log.error(
                "alert %s for chat %s: %s, and no fallback webhook is set (ALERTBOT_WEBHOOK_URL)",
                d.alert.id,
                d.chat_id,
                why,
            )
            self._dirty.set()
            return
        if not quiet:
            first = d.destination not in self._fallback_told
            self._fallback_told.add(d.destination)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "alert %s for chat %s: %s; sending it to the fallback webhook%s",
                d.alert.id,
                d.chat_id,
                why,
                " (and this chat's later alerts that fall back too, logged at debug, until "
                "Telegram delivers to it again)"
                if first
                else "",
            )
        # the chat as the Telegram delivery names it (as configured, before any move to a
        # supergroup): the fallback's destination and Idempotency-Key are the same whenever
        # it is made
        chat = d.destination.partition(":")[2]
        fb = Delivery(
            d.alert,
            f"fallback:{chat}:{url}",
            chat_id=int(chat),
            url=url,
            secret=self.router.secret_for(url),
            created=time.time(),
        )
        self._new.append(fb)
        self._dirty.set()


__all__ = ["CONSOLE", "ConsoleSender", "Outbox", "alert_id"]
