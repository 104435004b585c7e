"""Random crash schedules against the real ``alertbot run``: no alert lost, none twice, no
watch lost.

tests/test_cli_live.py checks each crash case once (alerts pending at a SIGKILL delivered
after the restart, an alert stored before a SIGKILL not repeated, a ``once`` watch never ended
without its alert). Here one seed makes one schedule that interleaves price ticks crossing the
levels of rule-file rules and of chat watches (``/watch`` made, muted, unmuted and removed
through the fake Telegram, ``once`` watches among them), Telegram faults on ``sendMessage``
for a while (5xx, 429 with ``retry_after``, requests never answered: the bot's timeouts;
messages taken and answered after the bot's timeout), webhook outages (500, 429 with
``Retry-After``, requests never answered, TCP resets, the port closed: connection refused),
chats that block the bot (Telegram says so with a ``my_chat_member`` update, or only answers
403 "Forbidden: bot was blocked by the user") and unblock it (the update, or a command), and
process stops: SIGKILL at random moments (while ticks are being read, alerts stored, messages
sent, commands answered; also aimed at the moment Telegram or the webhook receiver has taken
an alert and the bot has not written that down yet), SIGTERM sometimes (and a SIGKILL during
that stop), each followed by a restart on the same SQLite file. The bot runs as a user runs it
(a subprocess, as in test_cli_live.py) between the fake Binance (the all-market stream, so that
every tick published reaches the live connection), the fake Telegram Bot API and the webhook
receiver: a rule file channel's URL and the fallback webhook's (``ALERTBOT_FALLBACK_AFTER`` 2 s,
so a Telegram fault or the chats' spacing sends alerts there too).

A chat that blocks the bot: README "Chat commands". A watch chat's user makes a watch first
if the chat has none (else there is nothing to pause). Its deliveries under way are settled
first (a refusal of one of them would pause the chat at a moment the reference cannot know).
Told by Telegram, the bot pauses a chat with watches at once; told only by a 403, at the first
alert refused: in both cases nothing more is published until the pause is on disk, and from
then on the reference has the chat's watches muted, with a ``once`` watch whose alert was
refused active again with no firing state. The chat's user sends no command meanwhile (one
does not reach the bot on Telegram); the rule files' chat 102 is never paused, its alerts
refused and sent to the fallback webhook.

What the bot **saw**: the ticks the fake wrote to the connection of a live bot process, of
which the process read a prefix before it stopped. A tick is **confirmed** seen once the
bot's ``/metrics`` count of tickers covers it (``sync`` steps wait for that, and for the
alerts the reference gives up to there to be stored: README "Never lost", each alert is
written to SQLite before anything is sent). Ticks after the last sync of a life may or may
not have been seen.

The oracle is a reference evaluation (tests/reference.py) of every life of the bot, from the
state README "Across a restart" says the bot carries on with: each symbol's last ticker and
every rule's firing state as of the last save (which ticks that was is read from the
database: the saved last tickers' event times; what the state then was is the reference's,
and the saved rows are compared with it: the same last firing, and armed only where the
reference is, since the engine re-arms a pair only when the price next reaches its level),
with the alerts stored since that save taken as fired. So the documented losses of a crash
(an alert not stored yet is not sent, and fires again on the next tick only if its condition
still holds; a re-arm after the last save is lost) are the reference's too, and nothing else
is excused. Checked after every stop and at the end:

- each life's stored alerts are the reference's alerts of that life over a prefix of its
  ticks, and contain every alert at a confirmed tick (none missed, none the reference does
  not give: a level that fired before the crash and still holds does not fire again);
- after a SIGTERM the state saved holds every alert stored and every tick confirmed seen
  (README: saved at shutdown), so the next start takes up nothing as fired after it;
- no stored alert leaves the database; every one goes to the chats its rule names (a chat
  watch's: its chat) and to the webhook channel where its rule names that, and is delivered
  to each at least once by the end (after the last restart and a settle with every chat back
  and Telegram and the webhook healthy): every delivery row is ``sent`` (and the message or
  the accepted POST is there), but a Telegram one refused by a chat that blocked the bot,
  ``failed`` with that reason, whose alert the fallback webhook accepted; a fallback POST is
  for one of the alert's chats and says ``"fallback": true`` and the chat id;
- a chat gets an alert a second time, and the webhook an id, only as README "Delivery"
  allows at least once: a stop between a send and the write of its result (the copy before
  the stop, the database after it still has the delivery open, the copy after the restart),
  or a Telegram answer later than the bot's timeout (the first copy's); a fallback POST and
  a Telegram message of one alert are two channels, not two copies;
- a chat back from a pause (by the update or a command) gets the note README "Chat
  commands" gives: "Welcome back", with the number of the alerts it refused meanwhile and the
  times of the first 5; its pause is then gone from the database, its watches fire again;
- every watch whose ``/watch`` was answered and whose ``/unwatch`` was not is in the database,
  active, after every stop (a ``once`` watch ended only together with its stored alert);
  one whose ``/unwatch`` was answered is gone; a ``/mute`` or ``/unmute`` answered is on disk
  (a command under way at a SIGKILL, not answered, may or may not have been made);
- the bot logs no error and no traceback in any of its lives.

``ALERTBOT_CRASH_SEEDS=N`` runs N schedules instead of the default 3 (``ALERTBOT_CRASH_FIRST``
sets the first seed; ``ALERTBOT_CRASH_REPORT=1`` prints what each covered, with ``-s``); a
failure names its seed and shows the schedule it ran and the bot's last log lines.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from alertbot.chat.watches import rule_for
from alertbot.rules.conditions import Cross, parse
from alertbot.rules.model import Rule
from alertbot.store import WatchRow
from alertbot.ticker import Ticker
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram, Message
from tests.fakes.webhook import Delivery, WebhookReceiver
from tests.reference import PairState, ReferenceEngine

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:CRASH-soak-token-0123456789"

FIRST_SEED = int(os.environ.get("ALERTBOT_CRASH_FIRST", "0"))
SEEDS = range(FIRST_SEED, FIRST_SEED + int(os.environ.get("ALERTBOT_CRASH_SEEDS", "3")))
REPORT = os.environ.get("ALERTBOT_CRASH_REPORT") == "1"

SYMBOLS = ("BTCUSDT", "ETHUSDT")
#: never a level itself: which side of a level a price is on is never in doubt
PRICES = (88, 93, 97, 102, 107, 112, 118, 123, 128)
ADMIN = 100
WATCH_CHATS = (201, 202)
#: chats that block the bot now and then: the watch chats (paused, README "Chat commands") and
#: a rule file's chat (not paused: each alert refused goes to the fallback webhook)
BLOCKING_CHATS = (*WATCH_CHATS, 102)
#: the bot's Telegram timeout (README "Delivery": an answer later than it sends again)
TELEGRAM_TIMEOUT = 10.0
#: how late a late Telegram answer comes: after that timeout
LATE_ANSWER = 11.0

RULES_YAML = """\
channels:
  one: {telegram: 101}
  two: {telegram: 102}
  hook: {webhook: "HOOK_URL"}
rules:
  - id: btc-up
    symbols: [BTCUSDT]
    when: price crosses above 100
    notify: [one]
  - id: btc-both
    symbols: [BTCUSDT]
    when: price crosses 120
    notify: [two]
  - id: eth-high
    symbols: [ETHUSDT]
    when: price > 110
    cooldown: 3s
  - id: eth-down
    symbols: [ETHUSDT]
    when: price crosses below 100
    notify: [one, two]
  - id: btc-hook
    symbols: [BTCUSDT]
    when: price crosses below 110
    notify: [hook]
  - id: eth-mixed
    symbols: [ETHUSDT]
    when: price crosses above 125
    notify: [two, hook]
"""

FILE_RULES = (
    Rule("btc-up", parse("price crosses above 100"), ("BTCUSDT",)),
    Rule("btc-both", parse("price crosses 120"), ("BTCUSDT",)),
    Rule("eth-high", parse("price > 110"), ("ETHUSDT",), cooldown_ms=3000),
    Rule("eth-down", parse("price crosses below 100"), ("ETHUSDT",)),
    Rule("btc-hook", parse("price crosses below 110"), ("BTCUSDT",)),
    Rule("eth-mixed", parse("price crosses above 125"), ("ETHUSDT",)),
)
#: the Telegram chats of the rule files' alerts (README "Where an alert goes")
FILE_CHATS = {
    "btc-up": {101},
    "btc-both": {102},
    "eth-high": {ADMIN},
    "eth-down": {101, 102},
    "btc-hook": set(),
    "eth-mixed": {102},
}
#: the rules whose alerts also go to the webhook channel (the fallback webhook's URL too)
FILE_HOOKS = {"btc-hook", "eth-mixed"}

WATCHES = (
    "BTCUSDT crosses above 110 cooldown 0",
    "BTCUSDT > 115 cooldown 2s",
    "BTCUSDT < 95 once",
    "ETHUSDT crosses 105 cooldown 0",
    "ETHUSDT > 120 once",
    "ETHUSDT < 90",
)

Step = tuple[Any, ...]


def schedule(rng: random.Random, length: int) -> list[Step]:
    """One random schedule: what happens, in order."""
    steps: list[Step] = []
    for _ in range(length):
        r = rng.random()
        if r < 0.44:
            symbols = rng.sample(SYMBOLS, rng.randint(1, len(SYMBOLS)))
            steps.append(("tick", {s: rng.choice(PRICES) for s in symbols}))
        elif r < 0.50:
            steps.append(("sync",))
        elif r < 0.62:
            chat = rng.choice(WATCH_CHATS)
            what = rng.choice(["watch", "watch", "watch", "unwatch", "mute", "unmute"])
            if what == "watch":
                steps.append(("watch", chat, rng.choice(WATCHES)))
            else:
                steps.append((what, chat, rng.random()))
        elif r < 0.69:
            kind = rng.choice(["5xx", "429", "hang", "late"])
            steps.append(("fault", kind, round(rng.uniform(0.3, 2.0), 2)))
        elif r < 0.75:
            kind = rng.choice(["500", "429", "hang", "reset", "refused"])
            steps.append(("hook_fault", kind, round(rng.uniform(0.3, 2.0), 2)))
        elif r < 0.82:  # at a random moment: mostly soon after the step before
            steps.append(("kill", rng.choice([0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3])))
        elif r < 0.85:  # between a send and the write of its result
            steps.append(("kill_on_send",))
        elif r < 0.87:  # between a POST and the write of its result
            steps.append(("kill_on_post",))
        elif r < 0.90:
            chat = rng.choice(WATCH_CHATS)
            delay = rng.choice([0, 0.01, 0.05, 0.1, 0.3])
            what = rng.choice(["watch", "watch", "unwatch", "mute", "unmute"])
            if what == "watch":
                steps.append(("watch_kill", chat, rng.choice(WATCHES), delay))
            else:
                steps.append(("change_kill", chat, what, rng.random(), delay))
        elif r < 0.95:  # Telegram's my_chat_member update, or only 403s from then on
            chat = rng.choice([*WATCH_CHATS, *BLOCKING_CHATS])  # mostly a watch chat
            steps.append(("block", chat, rng.choice(["update", "silent", "silent"])))
        elif r < 0.975:  # the update, or a command (README: either ends a pause)
            steps.append(("unblock", rng.choice(BLOCKING_CHATS), rng.choice(["update", "command"])))
        elif r < 0.99:
            steps.append(("term",))
        else:
            steps.append(("term_kill", rng.choice([0.01, 0.05, 0.2, 0.5])))
    return steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def key(rule: str, ms: int) -> str:
    """What identifies an alert in a Telegram message (default messages end so)."""
    return f"at {when(ms)} UTC [{rule}]"


# ------------------------------------------------------------------ the database, read


@dataclass
class Snapshot:
    """The database as a stopped bot left it (or as a running one shows it)."""

    alerts: dict[tuple[str, str, int], tuple[str, int]]  # (rule, symbol, time): (price, seq)
    #: (rule, symbol, time, where): state; where is telegram:<chat>, webhook, fallback:<chat>
    deliveries: dict[tuple[str, str, int, str], str]
    errors: dict[tuple[str, str, int, str], str]  # the same: last error
    watches: dict[int, WatchRow]  # the active ones
    ended: set[int]  # inactive or deleted ones seen before are not here: ids of inactive rows
    pair_states: dict[tuple[str, str], tuple[int, int | None]]
    last_ticks: dict[str, tuple[int, float]]  # symbol: (time, price)
    saved_seq: int | None
    paused: dict[int, list[str]]  # chat: the ids of the alerts it refused while paused


def read_db(db: Path) -> Snapshot:
    conn = sqlite3.connect(db, timeout=10)
    try:
        alerts = {
            (r, s, t): (p, q)
            for r, s, t, p, q in conn.execute("SELECT rule, symbol, time, price, seq FROM alerts")
        }
        deliveries = {}
        errors = {}
        for r, s, t, dest, state, error in conn.execute(
            "SELECT a.rule, a.symbol, a.time, d.destination, d.state, d.last_error"
            " FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        ):
            kind, _, rest = dest.partition(":")
            assert kind in ("telegram", "webhook", "fallback"), dest
            where = "webhook" if kind == "webhook" else f"{kind}:{rest.partition(':')[0]}"
            deliveries[(r, s, t, where)] = state
            errors[(r, s, t, where)] = error or ""
        watches: dict[int, WatchRow] = {}
        ended: set[int] = set()
        for row in conn.execute(
            "SELECT id, chat_id, symbol, condition, cooldown_ms, rearm, once, expires_ms,"
            " muted_until, last_fired, created, active FROM watches"
        ):
            if row[-1]:
                watches[row[0]] = WatchRow(*row[:6], bool(row[6]), *row[7:-1])
            else:
                ended.add(row[0])
        pair_states = {
            (r, s): (f, lf)
            for r, s, f, lf in conn.execute(
                "SELECT rule, symbol, flags, last_fired FROM pair_states"
            )
        }
        last_ticks = {
            s: (t, c) for s, t, c in conn.execute("SELECT symbol, time, close FROM last_ticks")
        }
        row = conn.execute("SELECT seq FROM state_saved WHERE id = 1").fetchone()
        paused = {
            c: json.loads(missed)
            for c, missed in conn.execute("SELECT chat_id, missed FROM paused_chats")
        }
    finally:
        conn.close()
    saved_seq = None if row is None else row[0]
    return Snapshot(
        alerts, deliveries, errors, watches, ended, pair_states, last_ticks, saved_seq, paused
    )


EMPTY = Snapshot({}, {}, {}, {}, set(), {}, {}, None, {})


# ------------------------------------------------------------------ the reference


def after_firing(rule: Rule, state: PairState, price: float, at: int) -> PairState:
    """README "Across a restart": a pair whose alert is stored after the last save is taken
    as having fired then; ``crosses X`` waits on the side its price is on (the rules here have
    no re-arm band)."""
    state = copy.copy(state)
    state.last_fired = at
    cond = rule.condition
    if isinstance(cond, Cross) and cond.direction is None:
        # the side it crossed waits; on that tick the other re-arms, as on any tick that
        # does not cross that way (past the band)
        if price > cond.value:
            state.armed = False
            state.armed_down = state.armed_down or rule.rearm == 0
        else:
            state.armed_down = False
            state.armed = state.armed or rule.rearm == 0
    else:
        state.armed = False
    return state


@dataclass
class Life:
    """One run of the bot process, as the reference sees it."""

    number: int
    engine: ReferenceEngine
    ticks: list[Ticker] = field(default_factory=list)
    #: per tick: the alerts the reference gives at it, and the symbol's pair states after it
    alerts: list[list[tuple[str, str, int]]] = field(default_factory=list)
    states: list[dict[tuple[str, str], PairState]] = field(default_factory=list)
    confirmed: int = 0  # ticks seen for sure (a sync step): their alerts are stored
    started: float = 0.0  # loop time of the start


class Failed(AssertionError):
    pass


class Soak:
    def __init__(
        self,
        rng: random.Random,
        tmp: Path,
        fake: FakeBinance,
        tg: FakeTelegram,
        hook: WebhookReceiver,
    ):
        self.rng = rng
        self.fake = fake
        self.tg = tg
        self.hook = hook  # the webhook channel's and the fallback's (one URL)
        self.hook_port = hook.port
        self.db = tmp / "alertbot.db"
        self.rules_file = tmp / "rules.yaml"
        self.rules_file.write_text(RULES_YAML.replace("HOOK_URL", hook.url))
        self.log: list[str] = []
        self.now = (int(time.time()) - 60) * 1000  # event times near the wall clock (mutes)
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.stderr = b""
        self.errors: list[str] = []  # the bot's log lines of errors, tracebacks
        self.lives: list[Life] = []
        self.saved: dict[tuple[str, str], PairState] = {}  # the pair states on disk
        self.last_saved: dict[str, Ticker] = {}  # the last tickers on disk
        self.all_ticks: dict[tuple[str, int], Ticker] = {}
        self.snapshots: list[tuple[float, Snapshot]] = []  # (loop time of the restart, db)
        self.acked: dict[int, int] = {}  # watch id: chat, for answered /watch not unwatched
        self.removed: set[int] = set()  # answered /unwatch
        self.mutes: dict[int, bool] = {}  # answered /mute (True) or /unmute (False)
        self.fault_task: asyncio.Task[None] | None = None
        self.hook_task: asyncio.Task[None] | None = None  # a webhook outage under way
        #: chats that have blocked the bot (in the fake Telegram), and how: "update" (Telegram
        #: told the bot) or "silent" (only 403s); their users send no commands meanwhile
        self.blocked: dict[int, str] = {}
        self.ever_blocked: set[int] = set()
        self.pending: tuple[int, int] | None = None  # a /watch under way at a stop: chat, msgs
        self.known: Snapshot | None = None
        self.counts = dict.fromkeys(
            (
                "ticks", "alerts", "kills", "terms", "faults", "hook_faults", "cmds",
                "open_at_stop", "resent", "late_resent", "hook_resent", "webhook", "fallbacks",
                "blocks", "pauses", "refused", "welcomes", "missed",
            ),
            0,
        )  # fmt: skip

    # ---------------------------------------------------------------- the process

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBOT_")}
        env.update(
            ALERTBOT_DB=str(self.db),
            ALERTBOT_BINANCE_WS_URL=self.fake.ws_url,
            ALERTBOT_BINANCE_REST_URL=self.fake.rest_url,
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=self.tg.api_url,
            ALERTBOT_ADMIN_CHATS=str(ADMIN),
            ALERTBOT_FEED_STREAM="all",
            ALERTBOT_HTTP_PORT=str(self.port),
            ALERTBOT_SHUTDOWN_GRACE="1",
            ALERTBOT_CHAT_STOP_TIMEOUT="0.5",
            ALERTBOT_RULES_CHECK="1h",
            ALERTBOT_WEBHOOK_URL=self.hook.url,
            # Telegram slow for a while (a fault, its spacing): the fallback webhook too
            ALERTBOT_FALLBACK_AFTER="2",
            PYTHONUNBUFFERED="1",
        )
        return env

    async def start(self) -> None:
        self.port = free_port()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "alertbot.cli",
            "run",
            "--rules",
            str(self.rules_file),
            cwd=ROOT,
            env=self.env(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.stderr_task = asyncio.create_task(self._read_stderr(self.proc))
        proc = self.proc
        await self.fake.wait_for(
            lambda: bool(self.fake.connections) or proc.returncode is not None, timeout=30
        )
        if proc.returncode is not None:
            raise Failed(f"the bot exited at start: {proc.returncode}")
        await self.fake.wait_for_subscriptions({"!miniTicker@arr"}, timeout=30)

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self.stderr = (self.stderr + line)[-200_000:]
            if b"Traceback" in line or b" ERROR " in line or b" CRITICAL " in line:
                self.errors.append(line.decode(errors="replace").rstrip())

    async def stop(self, sig: int) -> None:
        proc = self.proc
        assert proc is not None
        if proc.returncode is None:
            proc.send_signal(sig)
        await asyncio.wait_for(proc.wait(), 30)
        await self.stderr_task
        self.proc = None
        await self.fake.wait_for(lambda: not self.fake.connections, timeout=10)
        if sig == signal.SIGTERM and proc.returncode not in (0, -signal.SIGKILL):
            raise Failed(f"SIGTERM: exit status {proc.returncode}")

    async def tickers_seen(self) -> int:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        m = re.search(r"^alertbot_tickers_total (\S+)$", answer.text, re.M)
        assert m is not None, answer.text[:500]
        return int(float(m[1]))

    # ---------------------------------------------------------------- the reference

    def rules_now(self, snap: Snapshot) -> list[Rule]:
        """The rule files' rules and the active watches (a paused chat's muted: README "Chat
        commands", its watches do not fire while it blocks the bot)."""
        watches = (
            rule_for(row, paused=row.chat_id in snap.paused) for row in snap.watches.values()
        )
        return [*FILE_RULES, *watches]

    def new_life(self, snap: Snapshot) -> Life:
        """The engine the bot carries on with after a (re)start on ``snap``."""
        rules = self.rules_now(snap)
        by_id = {r.id: r for r in rules}
        # the alerts stored since the last save, the newest of each pair: taken as fired
        since: dict[tuple[str, str], tuple[int, str]] = {}
        for (rule, symbol, at), (price, seq) in snap.alerts.items():
            if snap.saved_seq is not None and seq < snap.saved_seq:
                continue
            if since.get((rule, symbol), (-1, ""))[0] < at:
                since[(rule, symbol)] = (at, price)
        for (rule_id, symbol), (at, price) in since.items():
            rule = by_id.get(rule_id)
            if rule is None:
                continue
            state = self.saved.get((rule_id, symbol), PairState())
            if state.last_fired is not None and state.last_fired >= at:
                continue
            self.saved[(rule_id, symbol)] = after_firing(rule, state, float(price), at)
        for pair in [p for p in self.saved if p[0] not in by_id]:
            del self.saved[pair]  # rules gone: their states are forgotten
        engine = ReferenceEngine(rules)
        engine.states = {p: copy.copy(s) for p, s in self.saved.items()}
        engine.history = {s: [t] for s, t in self.last_saved.items()}
        life = Life(len(self.lives) + 1, engine)
        self.lives.append(life)
        return life

    @property
    def life(self) -> Life:
        return self.lives[-1]

    def set_rules(self, snap: Snapshot) -> None:
        """The running bot's watches changed (an answered command): so do the reference's."""
        engine = self.life.engine
        rules = self.rules_now(snap)
        ids = {r.id for r in rules}
        for rule in list(engine.rules):
            if rule.id not in ids:
                engine.remove_rule(rule.id)
        engine.rules = rules

    # ---------------------------------------------------------------- steps

    async def run(self, steps: list[Step]) -> None:
        await self.start()
        self.new_life(EMPTY)
        self.life.started = asyncio.get_running_loop().time()
        commands = ("watch", "unwatch", "mute", "unmute", "watch_kill", "change_kill")
        for step in steps:
            self.log.append(" ".join(map(str, step)))
            if step[0] in commands and step[1] in self.blocked:
                self.log[-1] += " (skipped: the chat blocks the bot)"
                continue
            await getattr(self, "do_" + step[0])(*step[1:])
        await self.settle()

    async def do_tick(self, prices: dict[str, int]) -> None:
        tickers = []
        for symbol, price in prices.items():
            self.now += 1000
            tickers.append(mini_ticker(symbol, price, self.now))
        frames = await self.fake.publish(tickers)
        assert frames == 1, frames  # the one connection of the live bot
        life = self.life
        for t in tickers:
            ticker = Ticker(
                t["s"], t["E"], float(t["c"]), float(t["o"]), float(t["h"]), float(t["l"]),
                float(t["v"]), float(t["q"]), t["c"],
            )  # fmt: skip
            self.all_ticks[(ticker.symbol, ticker.time)] = ticker
            fired = life.engine.process([ticker])
            life.ticks.append(ticker)
            life.alerts.append(fired)
            life.states.append(
                {p: copy.copy(s) for p, s in life.engine.states.items() if p[1] == ticker.symbol}
            )
        self.counts["ticks"] += len(tickers)
        await self.refusals(len(tickers))

    async def refusals(self, n: int) -> None:
        """The last ``n`` ticks fired alerts of watches of a chat that blocked the bot without
        Telegram saying so: their sends are refused (403) and the chat paused from then on
        (README "Chat commands"). Nothing more is published until the bot has done so, so the
        reference knows after which tick the chat's watches are muted."""
        life = self.life
        start = len(life.ticks) - n
        refused: dict[int, list[tuple[int, str, str, int]]] = {}  # chat: (tick, alert)
        watch_chats = self._watch_chats()
        onces = self._once_watches()
        for i in range(start, len(life.ticks)):
            for rule, symbol, at in life.alerts[i]:
                chat = watch_chats.get(int(rule[1:])) if rule.startswith("w") else None
                if chat is not None and chat in self.blocked:
                    refused.setdefault(chat, []).append((i, rule, symbol, at))
        if not refused:
            return
        await self.do_sync()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40  # a hanging send times out (10 s) before it is refused
        for chat, alerts in refused.items():
            ids = {f"{rule}:{symbol}:{at}" for _, rule, symbol, at in alerts}
            while True:
                snap = read_db(self.db)
                seqs = {
                    snap.alerts[(r, s, t)][1] for _, r, s, t in alerts if (r, s, t) in snap.alerts
                }
                back = {int(r[1:]) for _, r, _, _ in alerts if r in onces}
                done = (
                    ids <= set(snap.paused.get(chat, ()))
                    # a once watch whose alert was refused is active again, and saved so
                    and back <= set(snap.watches)
                    and (not back or (snap.saved_seq or 0) > max(seqs))
                )
                if done:
                    break
                if loop.time() > deadline:
                    raise Failed(f"chat {chat} blocked the bot: not paused at alerts {ids}")
                await asyncio.sleep(0.02)
            self.counts["pauses"] += 1
            for i, rule, symbol, _ in alerts:
                if rule in onces:  # active again with no firing state: its next time alerts
                    life.engine.states[(rule, symbol)] = PairState()
                    life.states[i][(rule, symbol)] = PairState()
        self.set_rules(read_db(self.db))

    async def do_sync(self) -> None:
        """Until the bot has read every tick published, and stored their alerts."""
        life = self.life
        n = len(life.ticks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await self.tickers_seen() < n:
            if loop.time() > deadline:
                raise Failed(f"sync: the bot did not read the {n} ticks published")
            await asyncio.sleep(0.02)
        want = {a for fired in life.alerts for a in fired}
        while True:
            snap = read_db(self.db)
            missing = want - set(snap.alerts)
            if not missing:
                break
            if loop.time() > deadline:
                raise Failed(f"sync: alerts seen and not stored (missed): {sorted(missing)}")
            await asyncio.sleep(0.02)
        life.confirmed = n

    async def healthy(self) -> None:
        """Until the Telegram fault under way has ended (commands are answered again)."""
        if self.fault_task is not None:
            await self.fault_task
            self.fault_task = None

    async def command(self, chat: int, text: str) -> str:
        """Send a command as the user of ``chat``; its answer."""
        await self.do_sync()  # the reference knows where in the ticks the change comes
        await self.healthy()
        before = len(self.tg.messages_to(chat))
        self.tg.user_says(chat, text)
        self.counts["cmds"] += 1

        def answer() -> str | None:
            for m in self.tg.messages_to(chat)[before:]:
                # not an alert (a welcome back names the alerts refused meanwhile)
                if " UTC [" not in m.plain_text or m.plain_text.startswith("Welcome back"):
                    return m.plain_text
            return None

        await self.tg.wait_for(lambda: answer() is not None, timeout=20)
        reply = answer()
        assert reply is not None
        snap = read_db(self.db)
        self.set_rules(snap)
        return reply

    def pick(self, chat: int, r: float) -> int | None:
        mine = sorted(i for i, c in self.acked.items() if c == chat)
        return mine[int(r * len(mine))] if mine else None

    async def do_watch(self, chat: int, text: str) -> None:
        reply = await self.command(chat, f"/watch {text}")
        m = re.search(r"\b(?:Id |already: )w(\d+)", reply)
        assert m is not None, reply
        self.acked[int(m[1])] = chat

    async def do_unwatch(self, chat: int, r: float) -> None:
        wid = self.pick(chat, r)
        if wid is None:
            return
        reply = await self.command(chat, f"/unwatch w{wid}")
        assert reply.startswith((f"Removed w{wid} ", f"This chat has no watch w{wid}")), reply
        del self.acked[wid]
        self.removed.add(wid)

    async def do_mute(self, chat: int, r: float) -> None:
        wid = self.pick(chat, r)
        if wid is None:
            return
        reply = await self.command(chat, f"/mute w{wid} 1h")
        if reply.startswith(f"Muted w{wid} "):
            self.mutes[wid] = True

    async def do_unmute(self, chat: int, r: float) -> None:
        wid = self.pick(chat, r)
        if wid is None:
            return
        reply = await self.command(chat, f"/unmute w{wid}")
        if reply.startswith((f"Unmuted w{wid}", f"w{wid} is not muted")):
            self.mutes[wid] = False

    async def do_fault(self, kind: str, seconds: float) -> None:
        await self.healthy()
        self.counts["faults"] += 1
        tg = self.tg
        if kind == "5xx":
            tg.down(self.rng.choice([500, 502, 503]), method="sendMessage")
        elif kind == "hang":
            tg.down(None, method="sendMessage")
        elif kind == "late":  # taken, and answered after the bot's timeout
            tg.answer_late(LATE_ANSWER)
        else:
            tg.fail_next(self.rng.randint(1, 4), status=429, retry_after=1)

        async def end() -> None:
            await asyncio.sleep(seconds)
            self.tg_recover()

        self.fault_task = asyncio.create_task(end())

    def tg_recover(self) -> None:
        """The fake Telegram healthy again, but for the chats that block the bot."""
        self.tg.recover()
        self.tg.clear_failures()
        self.tg.answer_late(0)
        for chat in self.blocked:
            self.tg.block(chat)

    async def do_hook_fault(self, kind: str, seconds: float) -> None:
        """The webhook receiver out for a while: 500s, 429 with Retry-After, requests never
        answered (the bot's timeout), TCP resets, or its port closed (connection refused)."""
        await self.hook_healthy()
        self.counts["hook_faults"] += 1
        hook = self.hook
        if kind == "429":
            hook.respond_with(*[429] * self.rng.randint(1, 4), retry_after=1)
        elif kind == "refused":
            # requests under way first get their answers out (one accepted is answered)
            hook.down("close")
            await asyncio.sleep(0.05)
            await hook.aclose()
        else:
            hook.down(kind)

        async def end() -> None:
            await asyncio.sleep(seconds)
            if kind == "refused":
                await hook.start(self.hook_port)
            hook.recover()
            hook.clear_responses()  # 429s not used by then would come at any later time

        self.hook_task = asyncio.create_task(end())

    async def hook_healthy(self) -> None:
        if self.hook_task is not None:
            await self.hook_task
            self.hook_task = None

    async def do_watch_kill(self, chat: int, text: str, delay: float) -> None:
        """A /watch, and a SIGKILL while it may be under way."""
        await self.do_sync()
        await self.healthy()
        self.pending = (chat, len(self.tg.messages_to(chat)))
        self.tg.user_says(chat, f"/watch {text}")
        self.counts["cmds"] += 1
        await self.do_kill(delay)

    async def do_change_kill(self, chat: int, what: str, r: float, delay: float) -> None:
        """An /unwatch, /mute or /unmute, and a SIGKILL while it may be under way: until it
        is answered, whether it was made is not known."""
        wid = self.pick(chat, r)
        if wid is None:
            return
        await self.do_sync()
        await self.healthy()
        self.pending = (chat, len(self.tg.messages_to(chat)))
        self.mutes.pop(wid, None)
        if what == "unwatch":
            del self.acked[wid]
        arg = " 1h" if what == "mute" else ""
        self.tg.user_says(chat, f"/{what} w{wid}{arg}")
        self.counts["cmds"] += 1
        await self.do_kill(delay)

    async def do_term_kill(self, delay: float) -> None:
        """SIGTERM, and SIGKILL while the bot stops (before its grace is over)."""
        proc = self.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(delay)
        self.counts["kills"] += 1
        await self.restart(signal.SIGKILL)

    async def do_kill(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.counts["kills"] += 1
        await self.restart(signal.SIGKILL)

    async def do_kill_on_send(self) -> None:
        """SIGKILL as Telegram takes the next alert: the bot has not written its result."""
        sends = self.tg.calls("sendMessage")
        n = len(sends)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while loop.time() < deadline:
            sends = self.tg.calls("sendMessage")
            if any(" UTC [" in str(r.params.get("text", "")) for r in sends[n:]):
                break
            await asyncio.sleep(0.001)
        self.counts["kills"] += 1
        await self.restart(signal.SIGKILL)

    async def do_kill_on_post(self) -> None:
        """SIGKILL as the webhook receiver takes the next alert (a channel's or a fallback):
        the bot has not written its result."""
        n = len(self.hook.deliveries)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while loop.time() < deadline and len(self.hook.deliveries) == n:
            await asyncio.sleep(0.001)
        self.counts["kills"] += 1
        await self.restart(signal.SIGKILL)

    async def do_block(self, chat: int, how: str) -> None:
        """The user of ``chat`` blocks the bot: Telegram says so (a my_chat_member update),
        or only refuses every send to it (403 "Forbidden: bot was blocked by the user").
        README "Chat commands": a chat with watches is paused, at once or at the first alert
        refused (see ``refusals``); a rule file's chat is not, its alerts fall back."""
        if chat in self.blocked:
            return
        if chat in WATCH_CHATS and chat not in set(self.acked.values()):
            # a chat with no watch has nothing to pause: its user watches something first
            await self.do_watch(chat, self.rng.choice(WATCHES))
        # its deliveries under way settled first: a refusal of one made before would pause
        # the chat at a moment the reference cannot know
        await self.healthy()
        await self.do_sync()
        await self.settled(chat)
        self.blocked[chat] = how
        self.ever_blocked.add(chat)
        self.counts["blocks"] += 1
        if how == "silent":
            self.tg.block(chat)
            return
        self.tg.bot_status(chat, "kicked")
        snap = read_db(self.db)
        if not any(row.chat_id == chat for row in snap.watches.values()):
            return  # no watch: nothing to pause
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while chat not in snap.paused:
            if loop.time() > deadline:
                raise Failed(f"chat {chat} blocked the bot (Telegram said so): not paused")
            await asyncio.sleep(0.02)
            snap = read_db(self.db)
        self.counts["pauses"] += 1
        self.set_rules(snap)

    async def settled(self, chat: int) -> None:
        """Until no Telegram delivery to ``chat`` is open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        where = f"telegram:{chat}"
        while True:
            snap = read_db(self.db)
            open_ = [k for k, s in snap.deliveries.items() if k[3] == where and s != "sent"]
            if not any(snap.deliveries[k] != "failed" for k in open_):
                return
            if loop.time() > deadline:
                raise Failed(f"chat {chat}: deliveries still open: {open_[:5]}")
            await asyncio.sleep(0.05)

    async def do_unblock(self, chat: int, how: str) -> None:
        """The user unblocks the bot: Telegram says so, or the user sends a command (README:
        either ends the pause, with a note naming the alerts refused meanwhile)."""
        if chat not in self.blocked:
            return
        await self.healthy()
        # every tick published read first, as before a command: ticks sent while the bot was
        # down reach it at its restart, and read after the pause ended they fire the chat's
        # watches, which the reference (the chat blocked at those ticks) does not (seed 7641)
        await self.do_sync()
        del self.blocked[chat]
        snap = read_db(self.db)
        missed = snap.paused.get(chat)
        before = len(self.tg.messages_to(chat))
        if how == "command":
            self.tg.unblock(chat)
            reply = await self.command(chat, "/list")
            if missed is not None and not reply.startswith("Welcome back"):
                raise Failed(f"chat {chat} paused, back with a command: answered {reply!r}")
        else:
            self.tg.bot_status(chat, "member")
            if missed is None:
                return
            await self.tg.wait_for(
                lambda: any(
                    m.plain_text.startswith("Welcome back")
                    for m in self.tg.messages_to(chat)[before:]
                ),
                timeout=20,
            )
        if missed is None:
            return
        self.counts["welcomes"] += 1
        note = next(
            m.plain_text
            for m in self.tg.messages_to(chat)[before:]
            if m.plain_text.startswith("Welcome back")
        )
        self.check_welcome(chat, note, missed)
        self.counts["missed"] += len(missed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while chat in snap.paused:  # the note is sent after the pause ended on disk
            if loop.time() > deadline:
                raise Failed(f"chat {chat}: welcomed back, still paused in the database")
            await asyncio.sleep(0.02)
            snap = read_db(self.db)
        self.set_rules(snap)

    def check_welcome(self, chat: int, note: str, missed: list[str]) -> None:
        """README: the note names the alerts the chat refused meanwhile (the first 5)."""
        n = len(missed)
        if n == 0:
            if "could not reach you" in note:
                raise Failed(f"chat {chat}: no alert refused, welcomed with {note!r}")
            return
        count = "this alert" if n == 1 else f"these {n} alerts"
        problems = [] if f", {count} could not reach you" in note else [f"not {count}"]
        for alert in missed[:5]:
            at = alert.rpartition(":")[2]
            if f"{when(int(at))} UTC  " not in note:
                problems.append(f"{alert} not named")
        if n > 5 and f"… and {n - 5} more" not in note:
            problems.append(f"not '… and {n - 5} more'")
        if problems:
            raise Failed(f"chat {chat}: welcome back note {note!r}: " + "; ".join(problems))

    async def do_term(self) -> None:
        self.counts["terms"] += 1
        await self.restart(signal.SIGTERM)

    async def restart(self, sig: int) -> None:
        await self.stop(sig)
        self.pending_acks()
        snap = self.check_life(final=False, term=sig == signal.SIGTERM)
        self.snapshots.append((asyncio.get_running_loop().time(), snap))
        await self.start()
        # the bot took its state up from the database as the stop left it
        self.new_life(snap)
        self.life.started = asyncio.get_running_loop().time()
        # the commands sent before the stop are answered first (one at a time, in order)
        for chat in WATCH_CHATS:
            if chat in self.blocked:  # its user sends nothing meanwhile
                continue
            await self.healthy()
            before = len(self.tg.messages_to(chat))
            self.tg.user_says(chat, "/status")
            await self.tg.wait_for(
                lambda c=chat, n=before: any(
                    "Prices:" in m.plain_text for m in self.tg.messages_to(c)[n:]
                ),
                timeout=30,
            )
        # the watches a command under way at the stop made or removed since
        self.pending_acks()
        snap = read_db(self.db)
        if self.pending is not None:  # an /unwatch under way that did not remove it
            chat = self.pending[0]
            for wid, row in snap.watches.items():
                if row.chat_id == chat and wid not in self.removed:
                    self.acked.setdefault(wid, chat)
        self.set_rules(snap)
        self.pending = None

    def pending_acks(self) -> None:
        """A /watch sent just before a stop: answered before it or after the restart."""
        if self.pending is None:
            return
        chat, before = self.pending
        for m in self.tg.messages_to(chat)[before:]:
            if found := re.search(r"\b(?:Id |already: )w(\d+)", m.plain_text):
                self.acked[int(found[1])] = chat
            elif found := re.match(r"Removed w(\d+) ", m.plain_text):
                self.removed.add(int(found[1]))
            elif found := re.match(r"(Muted|Unmuted) w(\d+) ", m.plain_text):
                self.mutes[int(found[2])] = found[1] == "Muted"

    # ---------------------------------------------------------------- checks

    def check_life(self, *, final: bool, term: bool = True) -> Snapshot:
        """After a stop: the life's stored alerts, the state saved, the watches on disk."""
        snap = read_db(self.db)
        life = self.life
        before = set(self.known.alerts) if self.known is not None else set()
        stored = set(snap.alerts) - before
        index = {a: i for i, fired in enumerate(life.alerts) for a in fired}
        problems = [f"life {life.number}: an alert the reference does not give: {a}"
                    for a in sorted(stored) if a not in index]  # fmt: skip
        last = max((index[a] for a in stored if a in index), default=-1)
        seen = len(life.ticks) if final else max(life.confirmed, last)
        problems += [
            f"life {life.number}: an alert seen and not stored before one after it: {a}"
            if index[a] < last
            else f"life {life.number}: an alert seen and not stored: {a}"
            for a in sorted(index)
            if a not in stored and (index[a] < seen)
        ]
        # the state on disk: as of the saved last tickers' ticks
        times = {(t.symbol, t.time): i for i, t in enumerate(life.ticks)}
        for symbol, (at, price) in snap.last_ticks.items():
            old = self.last_saved.get(symbol)
            if old is not None and old.time == at:
                continue
            i = times.get((symbol, at))
            if i is None:
                problems.append(f"life {life.number}: saved last ticker {symbol} {at} not seen")
                continue
            ticker = life.ticks[i]
            if ticker.close != price:
                problems.append(f"life {life.number}: saved last ticker {symbol} {at} {price}")
            self.last_saved[symbol] = ticker
            for pair in [p for p in self.saved if p[1] == symbol]:
                del self.saved[pair]
            self.saved.update({p: copy.copy(s) for p, s in life.states[i].items()})
        rules = {r.id: r for r in self.rules_now(snap)}
        for pair, (flags, fired) in snap.pair_states.items():
            if pair[0] not in rules:
                continue
            mine = self.saved.get(pair, PairState())
            cond = rules[pair[0]].condition
            both = isinstance(cond, Cross) and cond.direction is None
            got = (bool(flags & 1), bool(flags & 2) if both else True, fired)
            want = (mine.armed, mine.armed_down if both else True, mine.last_fired)
            # the engine re-arms a pair when the price next reaches its level (it evaluates
            # only the pairs a tick moves past): one the reference re-armed may still be
            # saved disarmed, which behaves the same; one saved armed must be armed
            if (got[0] and not want[0]) or (got[1] and not want[1]) or got[2] != want[2]:
                problems.append(f"life {life.number}: saved state of {pair}: {got}, not {want}")
        if term:  # README "Across a restart": saved at shutdown, every alert made before it
            last_seen = {t.symbol: t.time for t in life.ticks[: max(seen, 0)]}
            problems += [
                f"life {life.number}: stopped by SIGTERM, last ticker of {symbol} saved: "
                f"{snap.last_ticks.get(symbol)}, not {at}"
                for symbol, at in last_seen.items()
                if snap.last_ticks.get(symbol, (0, 0))[0] < at
            ]
            problems += [
                f"life {life.number}: stopped by SIGTERM, alert {a} not in the state saved"
                for a, (_, seq) in sorted(snap.alerts.items())
                if snap.saved_seq is None or seq >= snap.saved_seq
            ]
        problems += self.check_watches(snap)
        if problems:
            raise Failed("\n".join(problems))
        self.counts["alerts"] += len(stored)
        self.counts["open_at_stop"] += sum(
            s in ("pending", "fell_back") for s in snap.deliveries.values()
        )
        self.known = snap
        return snap

    def check_watches(self, snap: Snapshot) -> list[str]:
        problems = []
        fired = {r for r, _, _ in snap.alerts}
        for wid, chat in self.acked.items():
            row = snap.watches.get(wid)
            if row is None:
                if wid in snap.ended and f"w{wid}" in fired:
                    continue  # a once watch, ended with its alert stored
                problems.append(f"watch w{wid} of chat {chat} (answered) is gone")
                continue
            muted = self.mutes.get(wid)
            if muted is not None and (row.muted_until is not None) != muted:
                problems.append(f"watch w{wid}: muted_until {row.muted_until}, answered {muted}")
        problems += [f"watch w{wid} (/unwatch answered) is still there"
                     for wid in self.removed if wid in snap.watches]  # fmt: skip
        return problems

    async def settle(self) -> None:
        """Every chat back, Telegram and the webhook healthy, every tick read and every
        delivery made; then a last SIGTERM."""
        await self.healthy()
        await self.hook_healthy()
        for chat in sorted(self.blocked):
            await self.do_unblock(chat, "update")
        self.tg_recover()
        await self.do_sync()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90  # a timed-out send (10 s) and backoffs
        while True:
            snap = read_db(self.db)
            open_ = {d: s for d, s in snap.deliveries.items() if s in ("pending", "fell_back")}
            if not open_:
                break
            if loop.time() > deadline:
                raise Failed(f"not delivered by the end: {sorted(open_.items())[:10]}")
            await asyncio.sleep(0.1)
        await self.stop(signal.SIGTERM)
        if self.errors:  # nothing crashes, nothing goes wrong unnoticed
            raise Failed("the bot logged errors:\n" + "\n".join(self.errors[:20]))
        snap = self.check_life(final=True)
        self.snapshots.append((loop.time(), snap))
        self.check_deliveries(snap)

    def check_deliveries(self, snap: Snapshot) -> None:
        problems = [
            f"alert {a} stored by the stop at {restarted:.2f}, then gone from the database"
            for restarted, earlier in self.snapshots
            for a in sorted(set(earlier.alerts) - set(snap.alerts))
        ]
        posts: dict[str, list[Delivery]] = {}
        for d in self.hook.accepted:
            posts.setdefault(str(d.id), []).append(d)
        watch_chats = self._watch_chats()
        for (rule, symbol, at), _ in sorted(snap.alerts.items()):
            alert = (rule, symbol, at)
            wheres = {k[3] for k in snap.deliveries if k[:3] == alert}
            chats = {int(w.partition(":")[2]) for w in wheres if w.startswith("telegram:")}
            want = FILE_CHATS.get(rule)
            if want is None:
                want = {c for wid, c in watch_chats.items() if f"w{wid}" == rule}
            if chats != want:
                problems.append(f"alert {rule} {symbol} {at}: for chats {chats}, not {want}")
            hooked = "webhook" in wheres
            if hooked != (rule in FILE_HOOKS):
                problems.append(f"alert {rule} {symbol} {at}: for the webhook: {hooked}")
            fell = {int(w.partition(":")[2]) for w in wheres if w.startswith("fallback:")}
            if not fell <= want:
                problems.append(f"alert {rule} {symbol} {at}: fallbacks for chats {fell - want}")
        for where_key, state in sorted(snap.deliveries.items()):
            rule, symbol, at, where = where_key
            kind, _, chat_text = where.partition(":")
            name = f"alert {rule} {symbol} {at} to {where}"
            if kind == "telegram":
                chat = int(chat_text)
                fallback = posts.get(f"{rule}:{symbol}:{at}:{chat}", [])
                if state == "failed":
                    # README: refused for good only by a chat that blocked the bot, and then
                    # it goes to the fallback webhook
                    error = snap.errors[where_key]
                    if chat not in self.ever_blocked or "blocked by the user" not in error:
                        problems.append(f"{name}: failed ({error})")
                    elif not fallback:
                        problems.append(f"{name}: refused, and not sent to the fallback webhook")
                    self.counts["refused"] += 1
                elif state != "sent":
                    problems.append(f"{name}: {state} at the end")
                copies = [
                    m
                    for m in self.tg.messages_to(chat)
                    if not m.plain_text.startswith("Welcome back")  # names refused alerts
                    for _ in range(m.plain_text.count(key(rule, at)))
                ]
                if state == "sent" and not copies:
                    problems.append(f"{name}: sent, and never delivered to chat {chat}")
                problems += self.second_copies(name, where_key, copies)
            else:
                if state != "sent":
                    problems.append(f"{name}: {state} at the end")
                suffix = "" if kind == "webhook" else f":{chat_text}"
                accepted = posts.get(f"{rule}:{symbol}:{at}{suffix}", [])
                if not accepted:
                    problems.append(f"{name}: never accepted by the webhook")
                for d in accepted:
                    body = d.json
                    fb = kind == "fallback"
                    if (body.get("fallback", False), body.get("chat_id")) != (
                        fb,
                        int(chat_text) if fb else None,
                    ):
                        problems.append(f"{name}: posted as {body}")
                self.counts["fallbacks" if kind == "fallback" else "webhook"] += 1
                problems += self.second_copies(name, where_key, accepted)
        if problems:
            raise Failed("\n".join(problems))

    def second_copies(
        self, name: str, where: tuple[str, str, int, str], copies: list[Message] | list[Delivery]
    ) -> list[str]:
        """README "Delivery", at least once: a second copy only after a stop between a send
        and the write of its result (the delivery still open in the database the restart took
        up), or, on Telegram, after an answer later than the bot's timeout."""
        problems = []
        for a, b in itertools.pairwise(sorted(copies, key=lambda c: c.time)):
            if isinstance(a, Message) and a.answered_late >= TELEGRAM_TIMEOUT:
                self.counts["late_resent"] += 1
                continue
            excused = any(
                a.time < restarted < b.time and s.deliveries.get(where) not in (None, "sent")
                for restarted, s in self.snapshots
            )
            if not excused:
                problems.append(
                    f"{name}: delivered twice (at {a.time:.2f} and {b.time:.2f}) with no stop "
                    "between a send and its result"
                )
            elif isinstance(a, Message):
                self.counts["resent"] += 1
            else:
                self.counts["hook_resent"] += 1
        return problems

    def _watch_chats(self) -> dict[int, int]:
        conn = sqlite3.connect(self.db)
        try:
            return dict(conn.execute("SELECT id, chat_id FROM watches").fetchall())
        finally:
            conn.close()

    def _once_watches(self) -> set[str]:
        """The rule ids of the ``once`` watches, ended or not."""
        conn = sqlite3.connect(self.db)
        try:
            return {f"w{i}" for (i,) in conn.execute("SELECT id FROM watches WHERE once = 1")}
        finally:
            conn.close()


async def soak(seed: int, tmp: Path, length: int) -> dict[str, int]:
    rng = random.Random(seed)
    steps = schedule(rng, length)
    async with (
        FakeBinance(symbols=SYMBOLS) as fake,
        FakeTelegram(token=TOKEN) as tg,
        WebhookReceiver() as hook,
    ):
        runner = Soak(rng, tmp, fake, tg, hook)
        try:
            await runner.run(steps)
        except BaseException as exc:
            exc.add_note(
                f"seed {seed}; steps run:\n  " + "\n  ".join(runner.log)
                + "\nthe bot's last log lines:\n" + runner.stderr.decode()[-4000:]
            )  # fmt: skip
            raise
        finally:
            if runner.proc is not None and runner.proc.returncode is None:
                runner.proc.kill()
                await runner.proc.wait()
            for task in (runner.fault_task, runner.hook_task):
                if task is not None:
                    task.cancel()
    return runner.counts


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_random_crash_schedule_loses_no_alert_and_no_watch(seed: int, tmp_path: Path):
    """Ticks, commands, Telegram faults, SIGKILLs and SIGTERMs in a random order (one seed,
    one schedule): every alert the bot could see is delivered, none twice except as at least
    once allows, every answered watch survives every restart (see the docstring)."""
    counts = await soak(seed, tmp_path, length=45)
    if REPORT:
        print(f"crash soak {seed}:", sorted(counts.items()))
    assert counts["ticks"] > 0
