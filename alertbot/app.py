"""Composition root: feed -> engine -> ``emit`` (the notifier: outbox, Telegram, webhook,
console), under one lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TextIO

import orjson
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from telegram.error import InvalidToken, TelegramError

from alertbot.backup import Backups
from alertbot.chat.bot import ChatBot, watch_command
from alertbot.chat.watches import ChatSettings, WatchBook, rule_for, watch_id
from alertbot.errors import ConditionError, ConfigError
from alertbot.feed.client import Feed
from alertbot.feed.connection import Outage
from alertbot.feed.handoff import Handoff
from alertbot.feed.market import nameable
from alertbot.feed.prices import PriceLookup
from alertbot.feed.settings import FeedSettings
from alertbot.feed.symbols import SymbolDirectory, unknown_symbols
from alertbot.notify.delivery import clip
from alertbot.notify.notifier import Notifier, Sparklines
from alertbot.notify.outbox import CONSOLE_GONE, alert_id, gone_note
from alertbot.notify.routing import CONSOLE, channel_env_problems
from alertbot.notify.settings import DeliverySettings
from alertbot.notify.telegram import FORBIDDEN
from alertbot.rules.conditions import format_condition
from alertbot.rules.engine import FRESH, Alert, Engine, PairState, after_firing, fingerprint
from alertbot.rules.ids import watch_number, watch_rule_id
from alertbot.rules.loader import RuleFileError, load_files
from alertbot.rules.model import Rule, RuleSet, is_glob
from alertbot.service import WATCH_LABEL, HttpService
from alertbot.store import PRUNE_START, AlertRecord, PruneCursor, WatchRow, database_failed
from alertbot.tasks import cancel_and_wait
from alertbot.text import plural
from alertbot.ticker import ParseStats, Ticker

log = logging.getLogger("alertbot")


#: frames after which the engine holds its per-symbol state for the whole market
WARM_FRAMES = 10

#: old delivered alerts are pruned from the outbox this often (ALERTBOT_ALERT_RETENTION), and
#: first this long after the start (not during it: the outbox is resuming deliveries then)
PRUNE_EVERY = 3600.0
PRUNE_FIRST_AFTER = 60.0

#: the moves windows' prices are saved this often (and at shutdown): a crash loses at most
#: this much of their history; the firing state goes every state_every seconds
HISTORY_EVERY = 60.0
#: how long a state save waits for the alerts fired before it to be stored (a slow or failing
#: disk); then the state is kept for the next save
STATE_WAIT = 5.0
#: a chat's pause, or the revival of its ``once`` watches, that the database refused (locked,
#: full, read-only) is tried again this often, as the outbox retries its writes (seconds)
WRITE_RETRY = 1.0

# The stop (App._stop) fits in a known time, so that a container runtime's stop timeout can be
# set above it: at most max(grace, chat_stop_timeout, FINAL_SAVE_WAIT) on the stop's clock,
# plus the cuts (CUT_WAIT) and the notifier's close (README: Running in a container).
#: the final save's own share of the stop, whatever is left of the grace: it begins as the stop
#: does, before anything that can hang, and the stop waits for it this long at most (seconds)
FINAL_SAVE_WAIT = 5.0
#: how often the scheduled copies (ALERTBOT_BACKUP_DIR) check whether one is due, and how
#: soon after the start first (seconds): a copy is due by the newest one's age
BACKUP_CHECK = 60.0
BACKUP_FIRST_AFTER = 10.0
#: a task the stop gives up on is cancelled, and again every CANCEL_AGAIN seconds, for at most
#: CUT_WAIT seconds: PTB's updater takes a first cancellation (of its wait for its poller,
#: asleep between retries) as its cue to make one more call, which a Telegram that never
#: answers holds for the poll's read timeout
CUT_WAIT = 0.5
CANCEL_AGAIN = 0.05
#: how often the stop looks at what it waits for and at its clock
STOP_POLL = 0.02


#: how long the event loop's thread may hold the GIL while the outbox's database thread (or
#: the console's) waits for it (CPython's default: 5 ms). Those threads take the GIL back
#: after each SQLite statement or write; with the loop busy evaluating frames, each of those
#: waited a full interval. At 1 ms a write of 24 alerts with the loop busy took a median
#: 6.8 ms instead of 42.5 ms (and 508 ms with one statement per row, as before).
SWITCH_INTERVAL = 0.001


def _report_failure(what: str, task: asyncio.Task[Any]) -> None:
    """A background task's failure in our log (App._spawn); retrieving it spares asyncio's
    "Task exception was never retrieved"."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc, exc_info=exc)


def freeze_long_lived(when: str) -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    The rules, the engine's index and its per-(rule, symbol) state are some 600,000 objects at
    100k rules that live as long as the process; each full collection walked them all, a pause
    of 0.2-0.5 s every few seconds while alerts flowed (their records, deliveries and results
    are what fills the collector's generations). Frozen, they are still freed by reference
    counting when dropped: a rule removed from the engine (a reload, an unwatch) leaves no
    reference cycle behind. What was alive then and later becomes cyclic garbage (the first
    feed connection, after a reconnect) is not reclaimed: a bounded, one-time cost. Only
    ``alertbot run`` freezes (App(own_process=True)), never a test's process.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "memory: %s kept out of garbage collection after %s (%.0f ms)",
        plural(gc.get_freeze_count(), "object"),
        when,
        (time.perf_counter() - started) * 1000,
    )


#: a rule file's (mtime, size); None: it cannot be read
Stamp = tuple[float, int] | None


def file_stamps(paths: Sequence[str]) -> list[Stamp]:
    """The files' stamps, as the rule-file watch compares them (App.check_rule_files)."""
    out: list[Stamp] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime, st.st_size))
        except OSError:
            out.append(None)
    return out


def rule_symbols(rules: list[Rule]) -> tuple[set[str], list[str]]:
    """The literal symbols rules name, and their glob patterns."""
    literal: set[str] = set()
    globs: list[str] = []
    for rule in rules:
        for pattern in rule.symbols:
            (globs.append(pattern) if is_glob(pattern) else literal.add(pattern))
    return literal, globs


def glob_matches(rules: list[Rule], known: Collection[str]) -> dict[str, str]:
    """The known symbols the rules' globs match, less each rule's exclusions, each with a
    pattern that matched it: what symbol streams must carry for the globs."""
    out: dict[str, str] = {}
    done: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for rule in rules:
        globs = tuple(p for p in rule.symbols if is_glob(p))
        if not globs or (globs, rule.exclude) in done:
            continue
        done.add((globs, rule.exclude))
        for pattern in globs:
            for symbol in fnmatch.filter(known, pattern):
                if symbol not in out and not any(
                    fnmatch.fnmatchcase(symbol, x) for x in rule.exclude
                ):
                    out[symbol] = pattern
    return out


class Pipeline:
    """Feeds the engine from the live feed and hands every alert to ``emit``."""

    def __init__(
        self,
        engine: Engine,
        settings: FeedSettings,
        emit: Callable[[Alert, bool], None],
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.emit = emit
        self.handoff = Handoff(settings.queue, self._invalid, settings.market.st)
        # ticker frames come as bytes, which the engine reads without decoding them
        self.feed = Feed(settings, self._put, undecoded=True, burst=self.handoff.burst)
        self.stats = ParseStats(market_st=settings.market.st)
        self._skipped = (0, 0)  # stats.malformed and stats.foreign, as last noted
        self.directory = SymbolDirectory(settings, seen=self._seen, complete=self.feed.market_seen)
        self.alerts = 0
        self.frames = 0
        #: alerts by rule id, chat watches' all under WATCH_LABEL (the metrics' labels)
        self.alerts_by_rule: dict[str, int] = {}
        #: called with each frame's processing time in seconds (the metrics histogram)
        self.frame_seconds: Callable[[float], None] | None = None
        #: called once, after WARM_FRAMES frames (by then every symbol has ticked)
        self.warmed: Callable[[], None] | None = None
        self._warned: set[str] = set()
        self._unnamed: set[str] = set()  # listed symbols that symbol streams cannot carry
        #: the tasks that ended while the pipeline runs (a bug), each with why: /healthz
        self.dead: dict[str, str] = {}
        self._running = False

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Neither task ends while the pipeline runs: one that does is a bug, and the bot goes
        deaf (engine) or blind to new symbols (symbols) while looking alive. Say so at once."""
        if not self._running:
            return
        name = task.get_name()
        if task.cancelled():
            why = "cancelled"
            log.critical("pipeline: the %s task was cancelled; no alerts until restarted", name)
        else:
            exc = task.exception()
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "returned"
            log.critical(
                "pipeline: the %s task stopped (%s); no alerts until restarted",
                name,
                why,
                exc_info=exc,
            )
        self.dead[name] = why

    def _put(self, message: Any, raw: str | bytes) -> None:
        self.handoff.put(message)

    def _note_skips(self) -> None:
        """Tickers the engine skipped, among the feed's problems (``/metrics``): malformed ones
        by reason, and another market's, each kind logged the first time."""
        stats = self.stats
        problems = self.feed.stats.problems
        for reason, n in stats.reasons.items():
            problems.set(f"malformed ticker ({reason})", n)
        if stats.foreign:
            market = self.settings.market
            problems.set(
                "ticker of another market",
                stats.foreign,
                f"st other than {market.st}; this bot reads {market.name} (ALERTBOT_MARKET)",
                # the merged USD-M feed may carry COIN-M tickers: alarming only when there is
                # nothing else (the market set wrong for the URL)
                logging.INFO if stats.tickers else logging.WARNING,
            )
        self._skipped = (stats.malformed, stats.foreign)

    def _invalid(self, raw: bytes) -> None:
        """A frame that looked like ticker data but is not JSON: counted as the feed does."""
        self.feed.stats.problems.count("invalid JSON frame", repr(raw[:80]))

    def _seen(self) -> list[str]:
        return [s for s in self.engine.symbols() if self.engine.last_ticker(s) is not None]

    def update_streams(self) -> str:
        """Tell the feed what the engine's rules need now (call after adding/removing rules)."""
        rules = self.engine.rules()
        literal, globs = rule_symbols(rules)
        if globs and self.settings.stream == "symbols":
            # symbol streams only: expand the globs over the exchange's symbols
            for symbol, pattern in glob_matches(rules, self.directory.known()).items():
                if nameable(symbol):
                    literal.add(symbol)
                elif symbol not in self._unnamed:
                    self._unnamed.add(symbol)
                    log.warning(
                        "feed: %s matches %s but cannot be subscribed to by name; only the "
                        "all-market stream carries it (ALERTBOT_FEED_STREAM=auto or all)",
                        symbol,
                        pattern,
                    )
        return self.feed.want(literal, everything=bool(globs))

    def check_symbols(self) -> list[str]:
        """Warn (once each) about literal rule symbols the exchange does not list."""
        if self.directory.exchange is None:
            return []
        rules = self.engine.rules()
        literal, _ = rule_symbols(rules)
        out = [t for t in unknown_symbols(literal, self.directory) if t not in self._warned]
        if not out:
            return out
        # the rules naming each, in one pass over the rules (not one per unknown symbol: 20
        # unknown symbols and 100k rules kept the event loop busy for seconds at start-up)
        users: dict[str, list[str]] = {text.split()[0]: [] for text in out}
        for rule in rules:
            for symbol in rule.symbols:
                named = users.get(symbol)
                if named is not None and (not named or named[-1] != rule.id):
                    named.append(rule.id)
        for text in out:
            self._warned.add(text)
            log.warning(
                "rules name a symbol the exchange does not list: %s (rules: %s)",
                text,
                ", ".join(users[text.split()[0]]),
            )
        return out

    async def _symbols(self) -> None:
        while True:
            ok = False
            try:
                ok = await self.directory.refresh()
                self.check_symbols()
                if self.settings.stream == "symbols":
                    self.update_streams()
            except Exception:  # a bug must not end the refresh: the next one tries again
                log.exception("feed: the symbol refresh failed; trying again at the next one")
            interval = self.settings.symbols_refresh
            await asyncio.sleep(interval if ok else min(interval, 60.0))

    async def _consume(self) -> None:
        engine, stats, feed = self.engine, self.stats, self.feed
        by_rule = self.alerts_by_rule
        timed = self.frame_seconds
        clock = time.perf_counter
        while True:
            batch = await self.handoff.get()
            for k, message in enumerate(batch):
                if k:
                    # let delivery (the outbox's writes, the senders) and the sockets run between
                    # frames: a backlog of frames must not hold up the alerts of the first one
                    await asyncio.sleep(0)
                self.frames += 1
                started = clock()
                try:
                    if type(message) is bytes:
                        alerts = engine.process_raw(message, stats)
                    else:
                        alerts = engine.process_message(message, stats)
                except orjson.JSONDecodeError:
                    self._invalid(message)
                    continue
                except Exception:  # a bug must not stop the feed; say so loudly
                    log.exception("engine failed on a message; skipped")
                    continue
                if timed is not None:
                    timed(clock() - started)
                if stats.malformed != self._skipped[0] or stats.foreign != self._skipped[1]:
                    self._note_skips()
                if self.frames == WARM_FRAMES and self.warmed is not None:
                    self.warmed()
                for alert in alerts:
                    self.alerts += 1
                    rule_id = alert.rule.id
                    label = WATCH_LABEL if watch_number(rule_id) is not None else rule_id
                    by_rule[label] = by_rule.get(label, 0) + 1
                    gap = feed.across_gap(alert.symbol, alert.previous_time, alert.time)
                    try:
                        self.emit(alert, gap)
                    except Exception:
                        log.exception("could not hand on an alert of rule %s", alert.rule.id)

    async def run(self, stop: asyncio.Event) -> None:
        mode = self.update_streams()
        kind = "the all-market stream" if mode == "all" else "symbol streams"
        log.info("feed: %s for %s", kind, plural(len(self.engine), "rule"))
        tasks = [
            asyncio.create_task(self._consume(), name="engine"),
            asyncio.create_task(self._symbols(), name="symbols"),
        ]
        self._running = True
        for task in tasks:
            task.add_done_callback(self._task_done)
        try:
            async with self.feed:
                await stop.wait()
        finally:
            self._running = False
            # one that ended meanwhile was reported then (_task_done): raised again here, it
            # turned the stop into a traceback and exit status 1
            await cancel_and_wait(*(t for t in tasks if t.get_name() not in self.dead))


class App:
    """Everything ``alertbot run`` runs: feed, engine, delivery, chat commands, one lifecycle.

    Start-up order: the database and the token are checked first (ConfigError, before any
    connection); chat watches are loaded into the engine; the chat bot starts polling (retrying
    in the background while Telegram is unreachable); then the feed. The stop: see _stop.
    """

    def __init__(
        self,
        rules: RuleSet,
        feed: FeedSettings,
        delivery: DeliverySettings,
        chat: ChatSettings,
        *,
        grace: float = 10.0,
        chat_stop_timeout: float = 3.0,
        out: TextIO | None = None,
        poll_timeout: float = 30.0,
        poll_interval: float = 0.0,
        http_port: int | None = None,
        rule_files: Sequence[str] = (),
        rule_stamps: Sequence[Stamp] | None = None,
        rules_check: float = 5.0,
        feed_down_after: float = 120.0,
        heartbeat: float = 0.0,
        state_every: float = 5.0,
        write_retry: float = WRITE_RETRY,
        own_process: bool = False,
        backups: Backups | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backups = backups  # ALERTBOT_BACKUP_DIR's scheduled copies
        self.rule_files = list(rule_files)
        # the files as ``rules`` were read from them: stamps taken before they were read (by
        # the caller, ``alertbot run``), so an edit made while they were read is seen as one
        self._stamps = list(file_stamps(self.rule_files) if rule_stamps is None else rule_stamps)
        self.engine = Engine(rules.rules)
        self.rules_check = rules_check
        self.file_rules: dict[str, Rule] = {r.id: r for r in rules.rules}
        self._changing: list[Stamp] | None = None  # see check_rule_files
        self.reloads = 0
        self._reload_lock = asyncio.Lock()
        self.feed_down_after = feed_down_after
        self.feed_down = False
        self.heartbeat_every = heartbeat
        self.state_every = state_every  # how often the engine's firing state is saved, s
        self.write_retry = write_retry
        self._unsaved: list[PairState] = []
        self._undropped: list[tuple[str, str | None]] = []  # Engine.dropped, not saved yet
        self._save_lock = asyncio.Lock()  # one save at a time: see save_state
        self._history_saved = time.monotonic()  # the moves windows' prices: see save_state
        self.own_process = own_process
        self._started = time.monotonic()
        self.sparklines = Sparklines(self.engine)
        self.notifier = Notifier(
            delivery,
            rules.channels,
            rules=rules.rules,
            out=out,
            sparklines=self.sparklines,
            on_console_gone=self._stdout_gone,
        )
        self.notifier.chart_url = feed.market.chart_url
        self.pipeline = Pipeline(self.engine, feed, self.emit)
        self.delivery = delivery
        self.chat_settings = chat
        self.grace = grace
        self.clock = clock  # the stop's, which the grace is measured on (seconds)
        self.chat_stop_timeout = chat_stop_timeout
        self.poll_timeout = poll_timeout
        self.poll_interval = poll_interval  # see ChatBot
        self.book: WatchBook | None = None
        self.chat: ChatBot | None = None
        self.http: HttpService | None = None
        self.http_port = http_port
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finishing: set[asyncio.Task[Any]] = set()  # see _spawn
        self._jobs: set[asyncio.Task[Any]] = set()  # scheduled jobs under way (see _job)
        self._stopping = False
        self._stop_event: asyncio.Event | None = None  # run()'s

    def emit(self, alert: Alert, gap: bool) -> None:
        # a muted watch never gets here: the engine does not fire it (Rule.muted_until_ms)
        book = self.book
        row = None if book is None else book.row_of_rule(alert.rule.id)
        if book is None or row is None:
            self.notifier.emit(alert, gap)
            return
        # the watch's row changes with the alert, in the transaction that stores it: a ``once``
        # watch's end written on its own could reach the disk first, and a crash then (or a
        # write of the alert that fails) lost the alert for good
        again = watch_command(row, alert.time) if row.once else None  # see render.ENDED_HINT
        self.notifier.emit(alert, gap, watch=row.id, ends_watch=row.once, again=again)
        book.fired(row, alert.time)

    # ------------------------------------------------------------------ rule files

    async def reload(self, why: str = "SIGHUP") -> bool:
        """Read the rule files again. A broken edit keeps the running rules and tells the
        admins exactly what is wrong; a good one swaps only the rules that changed.

        The files are read on a thread (a big file takes seconds; the feed goes on meanwhile),
        one reload at a time (a SIGHUP during a reload after a file change waits for it).
        """
        async with self._reload_lock:
            return await self._reload(why)

    async def _reload(self, why: str) -> bool:
        if not self.rule_files:
            log.info("rules: %s: no rule files to reload (alertbot run --rules FILE)", why)
            return False
        self._stamps = file_stamps(self.rule_files)
        self._changing = None
        try:
            ruleset = await asyncio.to_thread(load_files, self.rule_files)
            # a channel whose signing secret is not set here would post unsigned: as broken
            problems = channel_env_problems(ruleset.channels)
        except RuleFileError as exc:
            problems = [str(p) for p in exc.problems]
        except Exception as exc:
            # what no problem of the loader covers (a file too big for the memory the process
            # may map: MemoryError; a loader bug): the running rules stay, and the admins know
            # which files. Not tried again until a file changes (the stamps above).
            files = ", ".join(self.rule_files)
            log.exception(
                "rules: %s: %s could not be read (an internal error: %r); keeping the running "
                "rules",
                why,
                files,
                exc,
            )
            await self.tell_admins(
                f"Rule files not reloaded: {files} could not be read (an internal error: "
                f"{exc!r}); the running rules stay."
            )
            return False
        if problems:
            text = "\n".join(problems)
            log.error(
                "rules: %s: the edit does not load, keeping the running rules:\n%s", why, text
            )
            await self.tell_admins(
                "Rule files not reloaded: the running rules stay.\n" + text[:3500]
            )
            return False
        new = {r.id: r for r in ruleset.rules}
        old = self.file_rules
        removed = [i for i in old if i not in new]
        changed = [r for i, r in new.items() if i in old and old[i] != r]
        added = [r for i, r in new.items() if i not in old]
        for rule_id in removed:
            self.engine.remove_rule(rule_id)
        for rule in changed:  # keeps its firing state unless its condition or band changed
            self.engine.replace_rule(rule)
        for rule in added:  # never a watch's id: the loader refuses those (alertbot.rules.ids)
            self.engine.add_rule(rule)
        self.file_rules = new
        router = self.notifier.router
        router.channels = dict(ruleset.channels)
        router.set_rules(ruleset.rules)
        self.pipeline.update_streams()
        self.reloads += 1
        log.info(
            "rules: %s: reloaded: %d added, %d changed, %d removed, %d unchanged",
            why,
            len(added),
            len(changed),
            len(removed),
            len(new) - len(added) - len(changed),
        )
        if removed or changed:
            # the saved states of the rules removed or started afresh go now, not at the next
            # save: after a crash meanwhile, such a rule added back would take up its old state
            await self.save_state()
        console = self.notifier.console
        if console is not None and console.gone is not None:
            # the bot ran on with stdout gone for the deliveries this edit may have removed
            self._stop_if_console_only("since the reload")
        return True

    async def check_rule_files(self) -> None:
        """A scheduled job: reload when a rule file's size or mtime changed, once it has stayed
        the same for a whole check: a file caught while it is being written (an editor, a
        script) is not loaded half done, which would remove its later rules and their state."""
        stamps = file_stamps(self.rule_files)
        if stamps == self._stamps:
            self._changing = None
        elif stamps != self._changing:
            self._changing = stamps  # changed since the last look: wait until it settles
        else:
            await self.reload("rule file changed")

    async def check_feed(self) -> None:
        """A scheduled job: tell the admins when the feed has been silent for
        ``feed_down_after``, and again when it recovers (the watchdog reconnects meanwhile)."""
        health = self.pipeline.feed.health()
        age = health.last_message_age
        if age is None:
            age = time.monotonic() - self._started
        if not self.feed_down and age > self.feed_down_after:
            self.feed_down = True
            text = (
                f"Feed down: no market data for {age:.0f}s "
                f"({plural(health.reconnects, 'reconnect')} so far). Alerts wait for it."
            )
            log.error("%s", text)
            await self.tell_admins(text)
        elif self.feed_down and age < self.feed_down_after:
            self.feed_down = False
            text = "Feed recovered: market data is flowing again."
            log.warning("%s", text)
            await self.tell_admins(text)

    async def heartbeat(self) -> None:
        """A scheduled job (ALERTBOT_HEARTBEAT): a dead man's switch for the admins."""
        h = self.pipeline.feed.health()
        age = "no data yet" if h.last_message_age is None else f"data {h.last_message_age:.0f}s ago"
        await self.tell_admins(
            f"alertbot is alive: feed {h.mode}, {age}; {self.pipeline.alerts} alerts since start."
        )

    async def daily_digest(self) -> None:
        if self.chat is not None and self.chat.app is not None:
            await self.chat.digest(time.time())

    async def expire_watches(self) -> None:
        if self.chat is not None and self.chat.app is not None:
            await self.chat.expire()

    async def prune_alerts(self) -> int:
        """A scheduled job (ALERTBOT_ALERT_RETENTION): delete the alerts older than the
        retention whose deliveries are all settled. One batch per call to the database thread,
        so the outbox's own writes go in between the batches of a large backlog."""
        store = self.notifier.store
        outbox = self.notifier.outbox
        retention = self.delivery.alert_retention
        if store is None or outbox is None or retention <= 0:
            return 0
        before = time.time() - retention
        deleted = 0
        cursor: PruneCursor | None = PRUNE_START
        try:
            while cursor is not None:
                n, cursor = await outbox.db(store.prune_batch, before, cursor)
                deleted += n
        except Exception as exc:  # the disk may come back: the next run carries on
            log.error("outbox: cannot prune old alerts (%s); trying again later", exc)
        if deleted:
            age = f"{retention / 86400:g}d" if retention >= 86400 else f"{retention:g}s"
            log.info(
                "outbox: %s older than %s deleted, %s all settled",
                plural(deleted, "alert"),
                age,
                "its deliveries" if deleted == 1 else "their deliveries",
            )
        return deleted

    async def backup(self) -> str | None:
        """A scheduled job (ALERTBOT_BACKUP_DIR): a copy of the database when one is due, on a
        thread of its own (a large database takes seconds; the event loop goes on). The line
        it logged, None when none was due or it failed (logged too)."""
        if self.backups is None:
            return None
        return await asyncio.to_thread(self.backups.take)

    async def sample_sparklines(self) -> None:
        """A scheduled job: each symbol's price for the alerts' sparklines (on the event loop,
        not a thread: the alerts read the same samples as they are rendered)."""
        self.sparklines.sample()

    def _schedule(self) -> AsyncIOScheduler:
        """The periodic jobs, on APScheduler (the scheduler PTB's JobQueue wraps)."""
        scheduler = AsyncIOScheduler(timezone=dt.UTC)

        def add(fn: Callable[[], Awaitable[Any]], trigger: str, **kw: Any) -> None:
            # every job is a coroutine function: AsyncIOScheduler runs a plain function on a
            # thread pool, where it would race the event loop over the state it shares with it
            scheduler.add_job(
                self._job(fn),
                trigger,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                **kw,
            )

        add(self.sample_sparklines, "interval", seconds=60, id="sparklines")
        add(
            self.check_feed,
            "interval",
            seconds=max(0.05, min(5.0, self.feed_down_after / 4)),
            id="feed-health",
        )
        if self.rule_files and self.rules_check > 0:
            add(self.check_rule_files, "interval", seconds=self.rules_check, id="rules")
        if self.chat is not None:
            add(self.expire_watches, "interval", seconds=30, id="expiry")
            add(self.daily_digest, "cron", minute="*", id="digest")
        if self.state_every > 0:
            add(self.save_state, "interval", seconds=self.state_every, id="state")
        if self.heartbeat_every:
            add(self.heartbeat, "interval", seconds=self.heartbeat_every, id="heartbeat")

        def soon(seconds: float) -> dt.datetime:  # a first run this long after the start
            return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)

        if self.delivery.alert_retention > 0:
            add(
                self.prune_alerts,
                "interval",
                seconds=PRUNE_EVERY,
                next_run_time=soon(PRUNE_FIRST_AFTER),
                id="retention",
            )
        if self.backups is not None:
            add(
                self.backup,
                "interval",
                seconds=BACKUP_CHECK,
                next_run_time=soon(BACKUP_FIRST_AFTER),
                id="backup",
            )
        return scheduler

    def _job(self, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """``fn`` as a scheduled job that the stop can end (see _stop)."""

        @functools.wraps(fn)
        async def job() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._jobs.add(task)
            try:
                await fn()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                # ended by the stop, as expected: APScheduler would log it as the job's failure,
                # with a traceback. Each job is safe to end anywhere: what a state save leaves
                # undone the final save does; a reload, a prune or a note is just not done.
                log.debug("stop: the scheduled job %s was under way; ended", fn.__name__)
            finally:
                self._jobs.discard(task)

        return job

    # ------------------------------------------------------------------ engine state

    async def restore_state(self) -> None:
        """Carry on from the last run: each symbol's last ticker (so a level crossed while the
        bot was down is caught on the first tick, flagged as across a gap) and every rule's
        firing state (so a level that fired and is still true does not fire again, and a
        cooldown is kept), with the alerts stored since it was saved taken as fired (see
        _fired_since_saved). Rules removed or changed since start afresh."""
        store = self.notifier.store
        outbox = self.notifier.outbox
        assert store is not None
        assert outbox is not None
        states, ticks = await outbox.db(store.engine_state)
        histories = await outbox.db(store.histories)
        # every alert made so far is before it (no alert is made before the feed starts)
        now = outbox.next_seq
        recorded, alerts = await outbox.db(store.alerts_since_saved)
        # the alerts paused chats refused: a ``once`` watch one of them ended stays (README
        # "Chat commands"), also after a crash before its revival, or before the save that
        # follows it, was written
        refused = await self._revive_refused()
        watch_rows = await outbox.db(store.watches)
        fired = self._fired_since_saved(states, ticks, recorded, alerts, watch_rows, refused)
        self.engine.prime(ticks, histories)
        restored = self.engine.restore([*states, *fired])  # the later state of a pair wins
        # forget the saved states of rules changed or removed since (their pairs start
        # afresh), pair by pair: a rule's pairs saved before and after an edit may both be
        # there; and of symbols a rule no longer covers (one added back later starts afresh).
        # A watch's state stays while its watch is not loaded (a run without a token), and
        # goes once the watch has ended (/unwatch, a once that fired, an expiry).
        engine = self.engine
        current = {r.id: fingerprint(r) for r in engine.rules()}
        watches = {watch_rule_id(w.id) for w in watch_rows}
        stale = [
            (rule_id, symbol)
            for rule_id, symbol, fp, _flags, _fired in states
            if current.get(rule_id, fp if rule_id in watches else None) != fp
            or (rule_id in current and not engine.covers(rule_id, symbol))
        ]
        if stale:
            await outbox.db(store.forget_states, stale)
        # the pairs that fired after the last save, saved as such; and every alert stored
        # until now is accounted for (those of rules no longer there are void): after a crash
        # before the next save, one of them added back is not taken as having fired
        await outbox.db(store.save_engine, fired, [], (), now)
        if fired:
            log.warning(
                "state: %s saved before %s (the bot was not stopped cleanly): taken up as "
                "fired then",
                plural(len(fired), "rule state"),
                "its last alert" if len(fired) == 1 else "their last alerts",
            )
        self.engine.changes()  # from now on, changes are recorded for save_state
        book = self.book
        if book is not None:
            # a ``once`` watch ends as it fires (WatchBook.fired): one the bot stopped before
            # it could end is ended now, as done
            done = {
                (rule_id, symbol)
                for rule_id, symbol, fp, flags, last in [*states, *fired]
                if flags & 4 and last is not None and current.get(rule_id) == fp
            }
            await book.remove(
                [r for r in book.rows.values() if r.once and (watch_id(r), r.symbol) in done]
            )
        if ticks:
            last = max(t.time for t in ticks)
            down = time.time() - last / 1000
            feed = self.pipeline.feed
            if down > feed.settings.stale_after:
                # alerts computed from these tickers span the time the bot was down
                feed.stats.outages.append(Outage(None, last, down))
            log.info(
                "state: %s and %s restored (down %.0fs)",
                plural(restored, "rule state"),
                plural(len(ticks), "symbol's last ticker", "symbols' last tickers"),
                down,
            )

    async def _revive_refused(self) -> set[str]:
        """The ids of the alerts the paused chats refused; the ``once`` watches they ended
        active again (WatchBook.revive; done already unless a crash came first).

        A refused alert's ``failed`` result and its chat's pause are two writes (the outbox's,
        then _pause_written's): after a crash between them the refusal is stored and no pause
        names it. Such a ``once`` watch's alert is taken as refused here: its chat is paused
        (again, or its pause names it too), as the refusal did before the crash."""
        book = self.book
        store, outbox = self.notifier.store, self.notifier.outbox
        if book is None or store is None or outbox is None:
            return set()
        named = {i for pause in book.paused.values() for i in pause.missed}
        unnamed: dict[int, list[tuple[str, str, float]]] = {}
        for chat, alert, why, when in await outbox.db(store.refused_once, FORBIDDEN):
            if alert not in named:
                unnamed.setdefault(chat, []).append((alert, why, when))
        for chat, alerts in unnamed.items():
            _, why, since = alerts[0]
            book.pause(chat, why, [a for a, _, _ in alerts], since=since)
            await book.save_pause(chat)
            log.warning(
                "chat %s refused the bot (%s) and the bot stopped before its pause was "
                "written: it is paused, and its %s whose alert it refused %s",
                chat,
                why,
                plural(len(alerts), "once watch", "once watches"),
                "stays" if len(alerts) == 1 else "stay",
            )
        refused = {i for pause in book.paused.values() for i in pause.missed}
        fired = []
        for alert in refused:
            rule, _, rest = alert.partition(":")
            number, at = watch_number(rule), rest.rpartition(":")[2]
            if number is not None and at.isdigit():
                fired.append((number, int(at)))
        if fired:
            await book.revive(fired)
        return refused

    def _fired_since_saved(
        self,
        states: list[PairState],
        ticks: list[Ticker],
        recorded: bool,
        alerts: list[tuple[str, str, str, int, str]],
        watch_rows: list[WatchRow],
        refused: set[str],
    ) -> list[PairState]:
        """The pairs that fired after their state was last saved, with the state the firing
        left them in (rules.engine.after_firing).

        An alert is stored before it is sent; the engine's state is saved every state_every
        seconds. After a crash in between, a level still true fired again at the restart,
        inside its cooldown. Each alert stored since the last save (``alerts``: the newest
        per pair and condition, from Store.alerts_since_saved; when no save is recorded, those
        newer than their symbol's saved last ticker) means its pair fired then, unless its
        rule's condition is another now: it is disarmed, its cooldown runs from the alert,
        a ``once`` is done.

        A watch's ``last_fired`` is not taken as a firing, its stored alert is: the two are
        written in one transaction now, but an earlier version wrote ``last_fired`` on its own,
        maybe before the alert, which a crash then lost; not taken, the watch fires again if
        its condition still holds (at least once, as delivery). The refused alert a ``once``
        watch was kept through (WatchRow.revived) is no firing of it.

        A ``once`` watch's alert that its paused chat refused (``refused``, by alert id) is no
        firing either: a crash may have come before the revival was written (see
        _revive_refused), and the watch stays, and alerts at its next time.
        """
        engine = self.engine
        rules = {r.id: r for r in engine.rules()}
        watch_symbols: dict[str, str] = {}
        revived: dict[str, int] = {}
        for row in watch_rows:
            rule_id = watch_id(row)
            watch_symbols[rule_id] = row.symbol
            if row.revived is not None:
                revived[rule_id] = row.revived
            if rule_id not in rules:  # not loaded (no token): its state is kept for later
                with contextlib.suppress(ConditionError):
                    rules[rule_id] = rule_for(row)
        last_tick = {t.symbol: t.time for t in ticks}
        saved = {(s[0], s[1]): s for s in states}
        out: list[PairState] = []
        for rule_id, symbol, condition, fired_at, price in alerts:
            rule = rules.get(rule_id)
            if rule is None or condition != format_condition(rule.condition):
                continue  # a rule since removed, or one whose condition was edited since
            if rule.once and alert_id(rule_id, symbol, fired_at) in refused:
                continue  # it reached no one: the watch was made active again
            if not recorded and fired_at <= last_tick.get(symbol, -1):
                continue  # older than the state saved with that ticker
            if fired_at <= revived.get(rule_id, -1):
                continue  # refused, its watch kept: not delivered, not done
            if rule_id in engine:
                if not engine.covers(rule_id, symbol):
                    continue
            elif watch_symbols.get(rule_id) != symbol:
                continue
            fp = fingerprint(rule)
            flags = FRESH
            state = saved.get((rule_id, symbol))
            if state is not None and state[2] == fp:
                if state[4] is not None and state[4] >= fired_at:
                    continue  # the saved state has this firing already
                flags = state[3]
            out.append((rule_id, symbol, fp, after_firing(rule, flags, price), fired_at))
        return out

    async def save_state(self, final: bool = False) -> None:
        """A scheduled job, and the last step of shutdown: save what changed; the moves
        windows' prices every HISTORY_EVERY seconds and at shutdown (``final``)."""
        async with self._save_lock:
            # one at a time: two saves under way at once, the first to end would clear what
            # the second still has to save, and a failure of the second would lose it
            await self._save_state(final)

    async def _save_state(self, final: bool) -> None:
        store = self.notifier.store
        outbox = self.notifier.outbox
        if store is None or outbox is None:
            return
        dropped = self.engine.dropped()
        unsaved = self._unsaved
        if dropped:  # states taken before their rule or symbol was dropped: void
            rules = {rule for rule, symbol in dropped if symbol is None}
            pairs = set(dropped)
            unsaved = [s for s in unsaved if s[0] not in rules and (s[0], s[1]) not in pairs]
        dropped = self._undropped + dropped
        states = unsaved + self.engine.changes()
        # the last tickers as of the same moment: one read after the wait below could hold a
        # crossing tick whose alert and state are not in this save (lost, after a crash, since
        # the restored engine compares with that tick)
        ticks = self.engine.last_tickers()
        # saved, the states hold every alert made before now (on this loop, as the alerts): in
        # the outbox's order, not by the wall clock, which may step back (NTP) and put an alert
        # made after this save before it, and have it fire again after a crash
        taken = outbox.next_seq
        # until saved: a save that fails or is cancelled loses nothing
        self._unsaved = states
        self._undropped = dropped
        try:
            # a state that records a firing goes to disk only after the firing's alert: saved
            # the other way round, a crash between the two would lose the alert for good (the
            # engine, restored, knows it fired; the outbox never had it)
            async with asyncio.timeout(STATE_WAIT):
                await outbox.stored_all()
            await outbox.db(store.save_engine, states, ticks, dropped, taken)
        except TimeoutError:
            log.warning("state: alerts are not stored yet; the engine's state is saved later")
        except Exception as exc:  # the disk may come back: kept for the next save
            log.error("state: cannot save the engine's state (%s); retrying", exc)
        else:
            self._unsaved = []
            self._undropped = []
        now = time.monotonic()
        if final or now - self._history_saved >= HISTORY_EVERY:
            self._history_saved = now
            try:
                await outbox.db(store.save_histories, self.engine.histories())
            except Exception as exc:
                log.error("state: cannot save the price history (%s)", exc)

    async def tell_admins(self, text: str) -> None:
        if self.chat is None or self.chat.app is None:
            return
        for chat in self.delivery.admin_chats:
            await self.chat.tell(chat, text)

    def _spawn(self, coro: Any, *, finish: bool = False, what: str | None = None) -> None:
        """Run ``coro`` in the background; ``finish``: a short write that shutdown lets end
        (a chat's move to a supergroup) instead of cancelling it. If it fails, our log says
        so, naming ``what`` it was doing (else the coroutine's name), once it ends: not only
        asyncio's "Task exception was never retrieved", whenever the task is collected."""
        task = asyncio.create_task(coro)
        tasks = self._finishing if finish else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        name = what or str(getattr(coro, "__qualname__", "a background task"))
        task.add_done_callback(functools.partial(_report_failure, name))

    async def run(self, stop: asyncio.Event) -> None:
        self._stop_event = stop
        await self.notifier.start()
        if self.http_port is not None:
            self.http = HttpService(self, self.http_port)
            try:
                await self.http.start()
            except OSError as exc:
                await self.notifier.close()
                raise ConfigError(
                    f"ALERTBOT_HTTP_PORT: cannot listen on {self.http_port}: {exc}"
                ) from None
        outbox, store = self.notifier.outbox, self.notifier.store
        assert outbox is not None
        assert store is not None
        if self.delivery.telegram_token:
            self.book = WatchBook(
                self.engine,
                store,
                outbox.db,
                self.pipeline.update_streams,
                self.chat_settings,
                topics=self.notifier.topics,
                zones=self.notifier.zones,
                quiet=self.notifier.quiet,
            )
            loaded = await self.book.load()
            if loaded:
                log.info("chat: %s loaded", plural(loaded, "watch", "watches"))
            self.chat = ChatBot(
                self.delivery,
                self.chat_settings,
                self.book,
                self.engine,
                self.pipeline.feed,
                self.pipeline.directory,
                self.notifier,
                self.sparklines,
                prices=PriceLookup(self.pipeline.settings),
                poll_timeout=self.poll_timeout,
                poll_interval=self.poll_interval,
            )
            # a note or answer refused as the chat dropped the bot, or Telegram's word that it
            # did: the chat pauses as for a refused alert
            self.chat.on_gone = self._chat_gone
            self.chat.backups = self.backups
            self._spawn(self._chat_forever(self.chat))
            sender = self.notifier.telegram
            if sender is not None:
                # an alert to a group that became a supergroup: its watches follow it; so do
                # those of a resumed alert refused as migrated before this was set
                sender.on_migrate = self._chat_moved
                for old, new in sender.moved().items():
                    self._chat_moved(old, new)
                self.notifier.on_topic_gone = self._topic_gone
        await self.restore_state()
        sender = self.notifier.telegram
        if sender is not None and self.book is not None:
            # after restore_state, which ends the ``once`` watches whose alert is stored: one
            # revived (its alert refused) is not ended again
            sender.on_forbidden = self._chat_refused
            for chat, alerts, why in sender.forbidden():  # resumed deliveries refused before
                self._chat_refused(chat, alerts, why)
        self._started = time.monotonic()
        self.sparklines.sample()
        if self.own_process:
            # the interpreter is ours alone (``alertbot run``), not a test's: tune it
            sys.setswitchinterval(SWITCH_INTERVAL)
            freeze_long_lived("start-up")
            self.pipeline.warmed = lambda: freeze_long_lived("the first frames")
        scheduler = self._schedule()
        scheduler.start()
        try:
            await self.pipeline.run(stop)
        finally:
            await self._stop(scheduler)

    async def _stop(self, scheduler: AsyncIOScheduler) -> None:
        """The stop, after the feed's: bounded, so that a container runtime's stop timeout
        (Docker's 10 s, Kubernetes' 30 s), set above the bound, never kills the bot mid-stop.

        At once: no scheduled job starts and those under way end; the final save of the
        engine's state begins (before anything that can hang; FINAL_SAVE_WAIT of its own,
        whatever is left of the grace), and so do the chat poller's stop (``chat_stop_timeout``)
        and the HTTP service's. Meanwhile the short writes (a chat's move, a pause) and the open
        deliveries get ``grace`` seconds together. Each of these is measured on the stop's clock
        from the stop's start, and what is not done by its time is cut (CUT_WAIT at most).
        Then the notifier closes: it writes the outbox (the deliveries still open resume at the
        next start). The whole: max(grace, chat_stop_timeout, FINAL_SAVE_WAIT), the cuts (2 s at
        most, none as a rule) and the close (about a second; more only while the database
        refuses writes: the outbox's close_timeout, and a write under way ending at SQLite's
        busy timeout).
        """
        clock = self.clock
        started = clock()
        deadline = started + self.grace
        self._stopping = True
        scheduler.pause()
        # a run submitted just before the pause begins now, and so is among self._jobs below:
        # cancelled before its first step, APScheduler would log its CancelledError
        await asyncio.sleep(0)
        # the jobs end quietly (see _job); the chat poller's start, retrying, ends too
        await self._cut([*self._jobs, *self._tasks])
        scheduler.shutdown(wait=False)
        saving = asyncio.create_task(self.save_state(final=True), name="final-save")
        chat = self.chat
        chat_stop = None if chat is None else asyncio.create_task(chat.stop(), name="chat-stop")
        http = self.http
        http_stop = None if http is None else asyncio.create_task(http.stop(), name="http-stop")
        outbox = self.notifier.outbox
        while True:
            now = clock()
            waiting = (
                (not saving.done() and now < started + FINAL_SAVE_WAIT)
                or (
                    chat_stop is not None
                    and not chat_stop.done()
                    and now < started + self.chat_stop_timeout
                )
                or (
                    now < deadline
                    and bool(
                        self._finishing or (outbox is not None and (outbox.open or outbox.parked))
                    )
                )
            )
            if not waiting:
                break
            await asyncio.sleep(STOP_POLL)
        if not saving.done():
            log.warning(
                "state: the final save did not end within %gs (the database is slow); the "
                "alerts stored since the last save are taken as fired at the next start",
                FINAL_SAVE_WAIT,
            )
        cut_chat = chat_stop is not None and not chat_stop.done()
        if cut_chat:
            log.warning(
                "chat: Telegram did not answer the poller's last call within %gs; "
                "stopped without it",
                self.chat_stop_timeout,
            )
        left = [saving, *self._finishing, *self._tasks]
        left += [t for t in (chat_stop, http_stop) if t is not None]
        await self._cut(left)
        if cut_chat and chat is not None:
            # the cut left the PTB application itself running (its updater stopped): a second
            # stop ends it, without the updater's wait and its last call
            await self._cut([asyncio.create_task(chat.stop(), name="chat-stop")], CUT_WAIT)
        await self.notifier.close(0.0)

    async def _cut(self, tasks: Sequence[asyncio.Task[Any]], within: float = 0.0) -> None:
        """Wait up to ``within`` seconds for ``tasks`` to end, then cancel those left, again
        and again (CANCEL_AGAIN), for at most CUT_WAIT more; one still running then is left
        to the event loop's end. An error one ended with is logged (the stop goes on)."""
        pending = {t for t in tasks if not t.done()}
        if pending and within > 0:
            _, pending = await asyncio.wait(pending, timeout=within)
        loop = asyncio.get_running_loop()
        until = loop.time() + CUT_WAIT
        while pending and loop.time() < until:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN)
        for task in pending:
            log.warning("stop: the task %s did not end when cancelled; left", task.get_name())
        for task in tasks:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                log.error("stop: %s failed; stopping all the same", task.get_name(), exc_info=error)

    def _chat_refused(self, chat: int, alerts: list[AlertRecord], why: str) -> set[str]:
        """Telegram refused ``chat`` as Forbidden (the user blocked the bot or is deactivated,
        a group removed it): a chat with watches is paused (WatchBook.pause) until it is back
        (ChatBot.welcome_back: a command, or Telegram's word that it has the bot again); its
        refused alerts stay stored as failed (and go to the fallback webhook), and
        a ``once`` watch one of them ended stays. Returns the ids of the alerts this logged
        for (a chat named in the rule files alone is left to the sender: as any failure)."""
        book = self.book
        if book is None:
            return set()
        fired = [(n, a) for a in alerts if (n := watch_number(a.rule)) is not None]
        if chat not in book.paused and not book.of_chat(chat) and not fired:
            return set()
        if book.pause(chat, why, [a.id for _, a in fired]):
            fallback = " and sent to the fallback webhook" if self.delivery.webhook_url else ""
            watches = len(book.of_chat(chat))
            log.warning(
                "chat %s refuses the bot (%s): its %s %s paused until it is back (the bot "
                "unblocked or added again, or a command)%s",
                chat,
                why,
                plural(watches, "watch", "watches"),
                "is" if watches == 1 else "are",
                f"; the alerts it refused are stored as failed{fallback}" if alerts else "",
            )
        self._spawn(self._pause_written(chat, [(n, a.time) for n, a in fired]), finish=True)
        return {a.id for _, a in fired}

    def console_only(self) -> bool:
        """Every alert goes to the console: no Telegram token (so no chat watches either) and
        no rule whose alerts go anywhere else (a channel's webhook, ALERTBOT_WEBHOOK_URL)."""
        if self.delivery.telegram_token:
            return False
        routes = self.notifier.router.routes
        return all(route == CONSOLE for rule in self.file_rules.values() for route in routes(rule))

    def _stdout_gone(self) -> None:
        """The console's stdout takes no more lines, for good (``alertbot run | head -1`` once
        head has its line, or ``>&-``). When the console is the only delivery, nothing would
        ever be delivered again: the bot stops as on SIGTERM (the alerts stay stored), as any
        Unix tool in a pipeline does; else it runs on for the other deliveries."""
        stop = self._stop_event
        if stop is None or stop.is_set() or self._stopping:  # stopping already: no more to say
            log.warning("%s", gone_note())
        elif not self._stop_if_console_only():
            log.warning(
                "%s",
                gone_note(
                    "; the bot runs on for its other deliveries (Ctrl-C or SIGTERM stops it)"
                ),
            )

    def _stop_if_console_only(self, since: str = "") -> bool:
        """With stdout gone (_stdout_gone), stop as on SIGTERM once the console is the only
        delivery (``since``: what made it so, when not the start); whether it stops."""
        stop = self._stop_event
        if stop is None or stop.is_set() or self._stopping or not self.console_only():
            return False
        log.warning(
            "%s (nothing reads it), and %sthe console is the only delivery (no Telegram token, "
            "no webhook): stopping; the alerts are stored in the database",
            CONSOLE_GONE,
            f"{since} " if since else "",
        )
        stop.set()
        return True

    def _chat_gone(self, chat: int, why: str) -> None:
        """``chat`` no longer has the bot, said by a refused note or answer or by Telegram
        (ChatBot.on_gone): paused as for a refused alert, with no alert refused."""
        self._chat_refused(chat, [], why)

    async def _pause_written(self, chat: int, fired: list[tuple[int, int]]) -> None:
        """The pause of ``chat`` in the database, and its ``once`` watches that ended with a
        refused alert active again (paused with the chat).

        A write the database refuses (locked, full, read-only) is tried again every
        ``write_retry`` seconds until it is written: a revival given up would end for good a
        watch the chat is told, once back, is active. Each write is complete in itself (the
        revival needs no state save after it: Store.revive_watches)."""
        book = self.book
        assert book is not None
        paused = False
        failed = False
        while True:
            try:
                if not paused:
                    await book.save_pause(chat)
                    paused = True
                if fired:
                    back = await book.revive(fired)
                    if back:
                        log.info(
                            "chat %s: %s whose alert it refused %s (paused)",
                            chat,
                            plural(len(back), "once watch", "once watches"),
                            "stays" if len(back) == 1 else "stay",
                        )
            except Exception as exc:
                if not database_failed(exc):
                    log.exception("chat %s: could not write its pause", chat)
                    return
                if not failed:  # once: the outbox's own retries say the database is down
                    log.error(
                        "chat %s: could not write its pause (%s); retrying every %gs",
                        chat,
                        exc,
                        self.write_retry,
                    )
                failed = True
                try:
                    await asyncio.sleep(self.write_retry)
                except asyncio.CancelledError:  # the stop, the database still refusing
                    log.error(
                        "chat %s: its pause%s could not be written before the stop",
                        chat,
                        " and its once watches kept through a refused alert" if fired else "",
                    )
                    raise
                continue
            if failed:
                log.info("chat %s: its pause is written now", chat)
            return

    def _chat_moved(self, old: int, new: int) -> None:
        if self.chat is not None:
            self._spawn(
                self.chat.moved(old, new),
                finish=True,
                what=f"writing chat {old}'s move to the supergroup {new} (its watches, digest "
                "and pause)",
            )

    def _topic_gone(self, chat: int, topic: int) -> None:
        if self.chat is not None:
            self._spawn(
                self.chat.topic_gone(chat, topic),
                finish=True,
                what=f"moving the watches of chat {chat}'s forum topic {topic} to the chat",
            )

    async def _chat_forever(self, chat: ChatBot) -> None:
        delay = 1.0
        while True:
            try:
                await chat.start()
                return
            except InvalidToken:
                log.error("chat: Telegram rejected the token; chat commands are off")
                return
            except TelegramError as exc:
                log.warning(
                    "chat: cannot start polling (%s); retrying in %.0fs", clip(str(exc)), delay
                )
                await chat.stop()
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
