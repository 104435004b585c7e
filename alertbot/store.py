"""SQLite persistence: the alert outbox (and, with the chat commands, the watches).

Plain ``sqlite3``, one connection, WAL journal. The store is synchronous on purpose: the async
outbox runs every call on one dedicated thread, so the event loop never waits on the disk and
the connection is only ever used from that thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from alertbot.errors import ConfigError
from alertbot.rules.engine import PairState
from alertbot.ticker import Ticker


def hold_database(path: str) -> BinaryIO | None:
    """Hold ``PATH.lock`` for as long as the returned file is open (the process's life): a
    second ``alertbot run`` on the same database would resume and attempt every open delivery
    too, and so send every alert twice. Raises ConfigError when another process holds it, and
    for a ``file:`` URI: SQLite opens the file it names (its path, without the query), which
    no lock file next to the text would guard."""
    if path == ":memory:":
        return None
    if path.startswith("file:"):
        named = urllib.parse.unquote(urllib.parse.urlsplit(path).path) or "alertbot.db"
        raise ConfigError(
            f"ALERTBOT_DB: a file: URI is not supported ({path!r}); give the database's path, "
            f"as in ALERTBOT_DB={named}"
        )
    lock = Path(path + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = lock.open("ab")
    except OSError as exc:  # as the database itself would be refused, a moment later
        raise ConfigError(f"ALERTBOT_DB: cannot use {path!r}: {exc}") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ConfigError(
            f"ALERTBOT_DB: another alertbot is running on {path} (it holds {lock}); two on one "
            "database would send every alert twice"
        ) from None
    return fh


SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id         TEXT PRIMARY KEY,   -- rule|symbol|event time: stable across retries and restarts
    rule       TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    time       INTEGER NOT NULL,   -- event time, ms
    price      TEXT NOT NULL,
    condition  TEXT NOT NULL,
    text       TEXT NOT NULL,      -- the message as plain text
    html       TEXT NOT NULL,      -- the message for Telegram's HTML mode ('' if no chat gets it)
    gap        INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL,      -- wall clock, s
    seq        INTEGER,            -- its place in the order alerts are made (Outbox.take_seq);
                                   -- NULL: stored by an earlier version
    note       TEXT,               -- the chat watch's note (its alert's text shows it too)
    detail     TEXT                -- what it measured besides the price, as /history shows
                                   -- it: "up 8.44% from 96", "change_24h +5.20%"
);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id    TEXT NOT NULL REFERENCES alerts(id),
    destination TEXT NOT NULL,  -- telegram:<chat> | webhook:<url> | fallback:<chat>:<url> | console
    state       TEXT NOT NULL,     -- pending | sent | failed | fell_back
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    chat_id     INTEGER,           -- for a fallback: the chat it stands in for
    created     REAL NOT NULL,
    updated     REAL NOT NULL,
    PRIMARY KEY (alert_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries(state)
    WHERE state IN ('pending', 'fell_back');
CREATE INDEX IF NOT EXISTS alerts_created ON alerts(created);  -- for Store.prune
CREATE INDEX IF NOT EXISTS deliveries_open_to ON deliveries(destination)  -- Store.open_to
    WHERE state IN ('pending', 'fell_back');
CREATE TABLE IF NOT EXISTS watches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- shown to users as w<id>
    chat_id     INTEGER NOT NULL,
    symbol      TEXT NOT NULL,
    condition   TEXT NOT NULL,     -- canonical text: parsed again at start-up
    cooldown_ms INTEGER NOT NULL,
    rearm       REAL NOT NULL,
    once        INTEGER NOT NULL,
    expires_ms  INTEGER,           -- wall clock ms (Binance event times are wall clock)
    muted_until REAL,              -- wall clock s
    last_fired  INTEGER,           -- event time ms
    created     REAL NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1,
    revived     INTEGER,           -- a ``once`` watch kept through its refused alert: that
                                   -- alert's event time ms and not its firing (revive_watches)
    topic       INTEGER,           -- the forum topic it was made in: its alerts go there
    note        TEXT,              -- /watch ... note TEXT: its alerts and /list show it
    repeat_ms   INTEGER,           -- /watch ... repeat D: alerts again every D while it holds
    made_by     TEXT               -- who sent the /watch (@name or first name): a group's /list
    -- no comma in a comment between two columns: DROP COLUMN in SQLite (a test drops the
    -- last one) cuts the text at the last comma before the column, comments or not
);
CREATE INDEX IF NOT EXISTS watches_chat ON watches(chat_id) WHERE active = 1;
-- every watch of a chat, ended ones too: Store.refused_once asks it of each refusal at start
CREATE INDEX IF NOT EXISTS watches_of_chat ON watches(chat_id);
CREATE TABLE IF NOT EXISTS digests (
    chat_id INTEGER PRIMARY KEY,
    minute  INTEGER NOT NULL       -- minute of the day, in the chat's zone (UTC without one)
);
CREATE TABLE IF NOT EXISTS digest_sent (   -- the last daily digest sent to each chat
    chat_id INTEGER PRIMARY KEY,
    day     TEXT NOT NULL,         -- its local day (ISO), and minute: the change back from
    minute  INTEGER NOT NULL       -- summer time repeats it, a restart then must not resend
);
CREATE TABLE IF NOT EXISTS chat_zones (     -- /timezone: the zone a chat's times are shown in
    chat_id INTEGER PRIMARY KEY,
    zone    TEXT NOT NULL          -- Europe/Berlin, UTC+08:00 (alertbot.zones)
);
CREATE TABLE IF NOT EXISTS quiet_hours (    -- /quiet: alerts come without a sound meanwhile
    chat_id      INTEGER PRIMARY KEY,
    start_minute INTEGER NOT NULL, -- of the day, in the chat's zone (chat_zones)
    end_minute   INTEGER NOT NULL  -- the first minute after them (before the start: overnight)
);
CREATE TABLE IF NOT EXISTS topic_names (   -- forum topics' names, as the bot saw them (/list)
    chat_id INTEGER NOT NULL,
    topic   INTEGER NOT NULL,      -- message_thread_id
    name    TEXT NOT NULL,
    edited  INTEGER NOT NULL,      -- 1: from a rename (forum_topic_edited), which the name a
                                   -- topic's messages carry (its creation's) does not replace
    PRIMARY KEY (chat_id, topic)
);
CREATE TABLE IF NOT EXISTS paused_chats (  -- chats that blocked or removed the bot: watches wait
    chat_id INTEGER PRIMARY KEY,
    since   REAL NOT NULL,         -- wall clock, s
    reason  TEXT NOT NULL,         -- Telegram's refusal
    missed  TEXT NOT NULL          -- JSON list of the ids of the alerts it refused
);
CREATE TABLE IF NOT EXISTS chat_moves (    -- groups that became supergroups
    old INTEGER PRIMARY KEY,       -- the group's id, as the settings may still name it
    new INTEGER NOT NULL           -- the supergroup's
);
CREATE TABLE IF NOT EXISTS pair_states (   -- the engine's firing state, for restarts
    rule        TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,     -- the rule's condition and band when it was saved
    flags       INTEGER NOT NULL,  -- 1 armed, 2 armed downward, 4 done
    last_fired  INTEGER,           -- event time ms
    PRIMARY KEY (rule, symbol)
);
CREATE TABLE IF NOT EXISTS state_saved (   -- when pair_states was last saved
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    alerts  REAL NOT NULL,         -- wall clock, s, of the save (an earlier version's measure)
    seq     INTEGER                -- pair_states holds every alert whose seq is below it
);
CREATE TABLE IF NOT EXISTS price_history (  -- the moves windows' prices, for restarts
    symbol TEXT PRIMARY KEY,
    points TEXT NOT NULL            -- JSON [[event time ms, price], ...], in time order
);
CREATE TABLE IF NOT EXISTS last_ticks (    -- each symbol's last ticker, for restarts
    symbol TEXT PRIMARY KEY,
    time   INTEGER NOT NULL,
    close  REAL NOT NULL,
    open   REAL NOT NULL,
    high   REAL NOT NULL,
    low    REAL NOT NULL,
    volume REAL NOT NULL,
    quote  REAL NOT NULL,
    price  TEXT NOT NULL
);
"""


#: columns added since the first version, as SQLite adds them to a table made before: at its end
ADDED_COLUMNS = (
    ("alerts", "seq", "INTEGER"),
    ("alerts", "note", "TEXT"),
    ("alerts", "detail", "TEXT"),
    ("state_saved", "seq", "INTEGER"),
    ("watches", "revived", "INTEGER"),
    ("watches", "topic", "INTEGER"),
    ("watches", "note", "TEXT"),
    ("watches", "repeat_ms", "INTEGER"),
    ("watches", "made_by", "TEXT"),
)
#: Store.refused_once: the ``once`` watches ended by an alert Telegram refused with an error
#: beginning with the parameter, their chat not seen to have the bot since
REFUSED_ONCE = (
    "SELECT w.chat_id, a.id, d.last_error, d.updated FROM watches w"
    " JOIN alerts a ON a.id = 'w' || w.id || ':' || w.symbol || ':' || w.last_fired"
    " JOIN deliveries d ON d.alert_id = a.id"
    " WHERE w.once = 1 AND w.active = 0 AND w.last_fired IS NOT NULL"
    " AND d.destination >= 'telegram:' AND d.destination < 'telegram;'"
    " AND d.state = 'failed' AND substr(d.last_error, 1, ?) = ?"
    " AND NOT EXISTS (SELECT 1 FROM watches n WHERE n.chat_id = w.chat_id"
    "  AND (n.created > d.updated OR (n.last_fired > w.last_fired AND EXISTS ("
    "   SELECT 1 FROM deliveries s WHERE s.state = 'sent' AND s.destination = d.destination"
    "   AND s.alert_id = 'w' || n.id || ':' || n.symbol || ':' || n.last_fired))))"
    " ORDER BY d.updated, a.time"
)

#: what needs those columns, made once they are there
AFTER_COLUMNS = "CREATE INDEX IF NOT EXISTS alerts_seq ON alerts(seq);"


def database_failed(exc: BaseException) -> bool:
    """Whether a write failed for the database itself (locked, disk full, read-only, I/O error,
    a damaged file: worth retrying as it is) rather than for one of its records (a text that is
    not valid Unicode, a number past 64 bits, a value SQLite cannot bind: retrying changes
    nothing)."""
    if isinstance(exc, sqlite3.ProgrammingError):  # the connection closed under the write
        return "closed" in str(exc)
    return isinstance(exc, sqlite3.OperationalError | MemoryError) or (
        type(exc) is sqlite3.DatabaseError
    )


def _placeholders(width: int) -> str:
    return "(" + ",".join("?" * width) + ")"


#: states in which a delivery is still being attempted
OPEN_STATES = ("pending", "fell_back")

#: alerts looked at per transaction of Store.prune (each batch a few milliseconds)
PRUNE_BATCH = 2000

#: where a pruning pass has got to: (alerts.created, alerts.rowid) of the last alert looked at
PruneCursor = tuple[float, int]
PRUNE_START: PruneCursor = (float("-inf"), 0)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: str
    rule: str
    symbol: str
    time: int
    price: str
    condition: str
    text: str
    html: str
    gap: bool = False
    created: float = 0.0
    #: its place in the order alerts are made (Outbox.take_seq): unlike ``created``, it never
    #: goes back with the clock; None: not known (read back, or stored by an earlier version)
    seq: int | None = None
    #: the chat watch that fired it: its row changes (last fired; a ``once`` watch ends,
    #: ``ends_watch``) in the transaction that stores the alert, never without it
    watch: int | None = None
    ends_watch: bool = False
    #: the chat watch's note (``note TEXT``), for the webhook's ``note`` and /history
    note: str | None = None
    #: what the alert measured besides the price, for /history (render.alert_detail)
    detail: str | None = None


@dataclass(slots=True)
class DeliveryRow:
    alert_id: str
    destination: str
    state: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    chat_id: int | None = None
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """An alert as /history shows it: what fired, and how its delivery to the chat went."""

    rule: str
    symbol: str
    time: int  # event time, ms
    price: str
    condition: str
    gap: bool
    state: str  # pending | sent | failed | fell_back
    attempts: int
    last_error: str | None
    note: str | None = None
    detail: str | None = None  # AlertRecord.detail


@dataclass(slots=True)
class WatchRow:
    id: int
    chat_id: int
    symbol: str
    condition: str
    cooldown_ms: int
    rearm: float
    once: bool
    expires_ms: int | None = None
    muted_until: float | None = None
    last_fired: int | None = None
    created: float = 0.0
    #: the event time of the refused alert this ``once`` watch was kept through
    #: (Store.revive_watches): that alert did not end it, after a restart neither
    revived: int | None = None
    #: the forum topic of a supergroup it was made in (``message_thread_id``): its alerts go
    #: there; None: the chat itself (a forum's General topic)
    topic: int | None = None
    #: ``note TEXT``: its alerts and /list show it
    note: str | None = None
    #: ``repeat D`` (ms): while its condition holds, it alerts again every D
    repeat_ms: int | None = None
    #: who sent the /watch, as a group's /list names them (``@alice``, or a first name)
    made_by: str | None = None


@dataclass(slots=True)
class Pause:
    """A chat that blocked the bot (or removed it from the group): its watches wait for it."""

    since: float  # wall clock, s
    reason: str  # Telegram's refusal
    missed: list[str] = field(default_factory=list)  # the alerts it refused, by id


@dataclass(frozen=True, slots=True)
class Update:
    """A change of a delivery's state (``attempts`` is added, not set)."""

    alert_id: str
    destination: str
    state: str
    attempts: int = 0
    last_error: str | None = None


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is on disk when it returns, also across a power loss or a host
        # crash (NORMAL may roll the last ones back): an alert stored, a /watch acknowledged,
        # stay. Measured here: 0.15-0.3 ms more per commit; the outbox batches its writes.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        for table, column, kind in ADDED_COLUMNS:  # a database made by an earlier version
            if column not in {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self.db.executescript(AFTER_COLUMNS)
        self._max_params = self.db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        """``begin`` ... COMMIT around the block, ROLLBACK when it raises."""
        db = self.db
        db.execute(begin)
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            # a COMMIT that failed (disk full) was rolled back by SQLite already: a ROLLBACK
            # now would raise "no transaction is active" in place of the real error
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def check_writable(self) -> None:
        """Raise sqlite3.Error when the database cannot be written."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("ROLLBACK")

    def write(
        self,
        alerts: Sequence[AlertRecord],
        deliveries: Sequence[DeliveryRow],
        updates: Sequence[Update],
    ) -> None:
        """One transaction: new alerts and deliveries (existing ones are kept), the rows of
        the watches that fired them (AlertRecord.watch), then updates.

        A few statements per batch rather than one per row: rows go in as multi-row ``VALUES``
        lists, and the updates of a batch as one ``UPDATE ... FROM`` (several updates of one
        delivery are merged first: the last state and error, the attempts added up).
        """
        now = time.time()
        with self._transaction():
            self._write_rows(alerts, deliveries, updates, now)

    def write_each(
        self,
        alerts: Sequence[AlertRecord],
        deliveries: Sequence[DeliveryRow],
        updates: Sequence[Update],
    ) -> list[tuple[AlertRecord | DeliveryRow | Update, Exception]]:
        """As :meth:`write`, in one transaction, but each alert (with its deliveries and its
        watch's row), each other delivery and each update in a savepoint of its own: one that
        fails for itself (a text that is not valid Unicode, a number SQLite cannot hold) is
        left out and returned with its error, and the rest are written. A failure of the
        database itself (:func:`database_failed`: locked, full, read-only, broken) rolls the
        whole transaction back and is raised, as from :meth:`write`."""
        now = time.time()
        rows_of: dict[str, list[DeliveryRow]] = {}
        for row in deliveries:
            rows_of.setdefault(row.alert_id, []).append(row)
        units: list[tuple[AlertRecord | DeliveryRow | Update, tuple[list[Any], ...]]] = []
        for a in alerts:
            units.append((a, ([a], rows_of.pop(a.id, []), [])))
        units += [(row, ([], [row], [])) for rows in rows_of.values() for row in rows]
        units += [(u, ([], [], [u])) for u in updates]
        failed: list[tuple[AlertRecord | DeliveryRow | Update, Exception]] = []
        with self._transaction() as db:
            for item, (one_alert, its_rows, one_update) in units:
                db.execute("SAVEPOINT one")
                try:
                    self._write_rows(one_alert, its_rows, one_update, now)
                except Exception as exc:
                    if database_failed(exc):
                        raise
                    db.execute("ROLLBACK TO one")
                    failed.append((item, exc))
                db.execute("RELEASE one")
        return failed

    def _write_rows(
        self,
        alerts: Sequence[AlertRecord],
        deliveries: Sequence[DeliveryRow],
        updates: Sequence[Update],
        now: float,
    ) -> None:
        """The statements of :meth:`write`, in the transaction (or savepoint) open."""
        db = self.db
        self._insert(
            # named: a database an earlier version made has its added columns in the order
            # they were added
            "INSERT OR IGNORE INTO alerts (id, rule, symbol, time, price, condition, text, html,"
            " gap, created, seq, note, detail)",
            13,
            [
                (a.id, a.rule, a.symbol, a.time, a.price, a.condition, a.text, a.html,
                 int(a.gap), a.created or now, a.seq, a.note, a.detail)
                for a in alerts
            ],
        )  # fmt: skip
        fired = [(a.time, a.ends_watch, a.watch) for a in alerts if a.watch is not None]
        if fired:
            db.executemany(
                "UPDATE watches SET last_fired = ?,"
                " active = CASE WHEN ? THEN 0 ELSE active END WHERE id = ?",
                fired,
            )
        self._insert(
            "INSERT OR IGNORE INTO deliveries",
            8,
            [
                (d.alert_id, d.destination, d.state, d.attempts, d.last_error, d.chat_id,
                 d.created or now, now)
                for d in deliveries
            ],
        )  # fmt: skip
        if updates:
            self._update(updates, now)

    def _insert(self, into: str, width: int, rows: Sequence[Sequence[object]]) -> None:
        """``into`` (``INSERT ... INTO table``) of ``rows``, as many to a statement as SQLite
        takes (in order: a later row of the same key is inserted, or replaces, after)."""
        for values, params in self._batches(width, rows):
            self.db.execute(f"{into} VALUES {values}", params)

    def _update(self, updates: Sequence[Update], now: float) -> None:
        merged: dict[tuple[str, str], list[object]] = {}
        for u in updates:
            key = (u.alert_id, u.destination)
            m = merged.get(key)
            if m is None:
                merged[key] = [u.alert_id, u.destination, u.state, u.attempts, u.last_error]
            else:
                m[2], m[4] = u.state, u.last_error
                m[3] = cast(int, m[3]) + u.attempts
        rows = list(merged.values())
        if sqlite3.sqlite_version_info < (3, 33):  # no UPDATE ... FROM: one row at a time
            self.db.executemany(
                "UPDATE deliveries SET state=?, attempts=attempts+?, last_error=?, updated=? "
                "WHERE alert_id=? AND destination=?",
                [(r[2], r[3], r[4], now, r[0], r[1]) for r in rows],
            )
            return
        for values, params in self._batches(5, rows):
            self.db.execute(
                "UPDATE deliveries SET state = u.column3, attempts = attempts + u.column4,"
                f" last_error = u.column5, updated = ? FROM (VALUES {values}) AS u"
                " WHERE deliveries.alert_id = u.column1 AND deliveries.destination = u.column2",
                [now, *params],
            )

    def _batches(
        self, width: int, rows: Sequence[Sequence[object]]
    ) -> Iterator[tuple[str, list[object]]]:
        """``rows`` of ``width`` values as multi-row ``VALUES`` lists, as many rows to a
        statement as SQLite takes (one parameter left over): the list's text and its values."""
        # SQLite's limit on a statement's parameters: 32766 since 3.32, 999 before
        per = max(1, min(500, (self._max_params - 1) // width))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            yield ",".join([_placeholders(width)] * len(chunk)), [v for row in chunk for v in row]

    def open_deliveries(self, but: Sequence[str] = ()) -> list[tuple[AlertRecord, DeliveryRow]]:
        """Every delivery still being attempted, oldest first, with its alert; ``but``: less
        those to destinations starting with any of these prefixes."""
        skip = " AND NOT (d.destination >= ? AND d.destination < ?)" * len(but)
        rows = self.db.execute(
            f"{self._OPEN_COLUMNS} WHERE d.state IN ('pending', 'fell_back'){skip}"
            " ORDER BY d.created, a.time, d.rowid",
            [v for prefix in but for v in (prefix, prefix + "\U0010ffff")],
        ).fetchall()
        return [(alert, row) for _, alert, row in self._open_rows(rows)]

    _OPEN_COLUMNS = (
        "SELECT d.rowid, a.id, a.rule, a.symbol, a.time, a.price, a.condition, a.text, a.html,"
        " a.gap, a.created, d.destination, d.state, d.attempts, d.last_error, d.chat_id,"
        " d.created, a.note FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
    )

    @staticmethod
    def _open_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[int, AlertRecord, DeliveryRow]]:
        out = []
        for r in rows:
            alert = AlertRecord(
                id=r[1], rule=r[2], symbol=r[3], time=r[4], price=r[5], condition=r[6],
                text=r[7], html=r[8], gap=bool(r[9]), created=r[10], note=r[17],
            )  # fmt: skip
            row = DeliveryRow(r[1], r[11], r[12], r[13], r[14], r[15], r[16])
            out.append((r[0], alert, row))
        return out

    def last_delivery(self) -> int:
        """The rowid of the newest delivery row (0: none): rows written later have higher ones."""
        return self.db.execute("SELECT MAX(rowid) FROM deliveries").fetchone()[0] or 0

    def open_destinations(self, prefix: str) -> dict[str, int]:
        """Destinations starting with ``prefix`` that have deliveries still being attempted,
        with how many."""
        return dict(
            self.db.execute(
                "SELECT destination, COUNT(*) FROM deliveries WHERE state IN ('pending',"
                " 'fell_back') AND destination >= ? AND destination < ? GROUP BY destination",
                (prefix, prefix + "\U0010ffff"),
            )
        )

    def open_to(
        self, destination: str, after: int, limit: int
    ) -> list[tuple[int, AlertRecord, DeliveryRow]]:
        """The next ``limit`` deliveries to ``destination`` still being attempted, in the order
        they were written, from just past the row ``after`` (a rowid): (rowid, alert, row)."""
        return self._open_rows(
            self.db.execute(
                f"{self._OPEN_COLUMNS} WHERE d.destination = ? AND d.state IN ('pending',"
                " 'fell_back') AND d.rowid > ? ORDER BY d.rowid LIMIT ?",
                (destination, after, limit),
            )
        )

    def pending_before(
        self, prefix: str, created: float, limit: int, after: int = 0
    ) -> list[tuple[int, AlertRecord, DeliveryRow]]:
        """Up to ``limit`` deliveries to destinations starting with ``prefix`` still pending
        (not fallen back) and created before ``created``, oldest first; from just past the row
        ``after`` (a rowid)."""
        return self._open_rows(
            self.db.execute(
                f"{self._OPEN_COLUMNS} WHERE d.state = 'pending' AND d.created < ?"
                " AND d.destination >= ? AND d.destination < ? AND d.rowid > ?"
                " ORDER BY d.rowid LIMIT ?",
                (created, prefix, prefix + "\U0010ffff", after, limit),
            )
        )

    def pending_count(self, prefix: str) -> int:
        """Deliveries to destinations starting with ``prefix`` still pending (not fallen back)."""
        (n,) = self.db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND destination >= ?"
            " AND destination < ?",
            (prefix, prefix + "\U0010ffff"),
        ).fetchone()
        return int(n)

    def deliveries(self, alert_id: str | None = None) -> list[DeliveryRow]:
        query = (
            "SELECT alert_id, destination, state, attempts, last_error, chat_id, created"
            " FROM deliveries"
        )
        params: Iterable[str] = ()
        if alert_id is not None:
            query += " WHERE alert_id = ?"
            params = (alert_id,)
        return [DeliveryRow(*r) for r in self.db.execute(query + " ORDER BY rowid", tuple(params))]

    def history(
        self,
        destinations: Sequence[str],
        *,
        symbol: str | None = None,
        rule: str | None = None,
        since: int | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[int, list[HistoryRow]]:
        """The alerts delivered (or being delivered) to ``destinations`` (a chat's
        ``telegram:<id>``, and its id before it became a supergroup), newest first by event
        time: how many there are in all, and ``limit`` of them from ``offset`` (/history);
        only ``symbol``'s, or ``rule``'s (a watch: ``w3``), or those of event time ``since``
        (ms) or later, when given."""
        where = f"d.destination IN {_placeholders(len(destinations))}"
        params: list[object] = list(destinations)
        if symbol is not None:
            where += " AND a.symbol = ?"
            params.append(symbol)
        if rule is not None:
            where += " AND a.rule = ?"
            params.append(rule)
        if since is not None:
            where += " AND a.time >= ?"
            params.append(since)
        # one pass over the deliveries, the count with it: no index on destination, which
        # every delivery written would pay for (a chat's alerts are few; 300k deliveries of
        # 1,000 chats take about 20 ms here)
        joined = f"FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE {where}"
        if limit <= 0:  # the count alone (a digest's)
            (total,) = self.db.execute(f"SELECT COUNT(*) {joined}", params).fetchone()
            return int(total), []
        rows = self.db.execute(
            f"SELECT a.rule, a.symbol, a.time, a.price, a.condition, a.gap, d.state, d.attempts,"
            f" d.last_error, a.note, a.detail, COUNT(*) OVER () {joined}"
            " ORDER BY a.time DESC, d.rowid DESC"
            " LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        if rows:
            total = rows[0][-1]
        else:  # past the last page: the count alone
            (total,) = self.db.execute(f"SELECT COUNT(*) {joined}", params).fetchone()
        return int(total), [
            HistoryRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], r[9], r[10])
            for r in rows
        ]

    # ------------------------------------------------------------------ retention

    def prune(self, before: float, *, batch: int = PRUNE_BATCH) -> int:
        """Delete the alerts created (wall clock) before ``before`` whose deliveries are all
        settled (sent or failed; an alert with no delivery rows is settled too), with their
        deliveries; returns how many alerts were deleted. An alert with a delivery still open
        (pending, fell back) is kept however old: it is resumed at the next start.

        ``batch`` alerts are looked at per transaction, so a large backlog never holds the
        database long at a time (see prune_batch to give the thread back between them).
        """
        deleted = 0
        cursor: PruneCursor | None = PRUNE_START
        while cursor is not None:
            n, cursor = self.prune_batch(before, cursor, batch)
            deleted += n
        return deleted

    def prune_batch(
        self, before: float, after: PruneCursor = PRUNE_START, batch: int = PRUNE_BATCH
    ) -> tuple[int, PruneCursor | None]:
        """One transaction of ``prune``: of the next ``batch`` alerts created before
        ``before``, in order of creation from just past ``after``, delete the settled ones.
        Returns how many were deleted and where the next batch starts (None: done).

        The cursor, rather than starting over each time, keeps the kept alerts (those with an
        open delivery) from being read again by every later batch of the same pass.
        """
        with self._transaction("BEGIN IMMEDIATE") as db:
            rows = db.execute(
                "SELECT a.rowid, a.created, a.id, EXISTS (SELECT 1 FROM deliveries d"
                " WHERE d.alert_id = a.id AND d.state IN ('pending', 'fell_back'))"
                " FROM alerts a WHERE a.created < ? AND (a.created, a.rowid) > (?, ?)"
                " ORDER BY a.created, a.rowid LIMIT ?",
                (before, after[0], after[1], batch),
            ).fetchall()
            settled = [(r[0], r[2]) for r in rows if not r[3]]
            per = max(1, min(batch, self._max_params - 1))
            for start in range(0, len(settled), per):
                chunk = settled[start : start + per]
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"DELETE FROM deliveries WHERE alert_id IN ({marks})", [c[1] for c in chunk]
                )
                db.execute(f"DELETE FROM alerts WHERE rowid IN ({marks})", [c[0] for c in chunk])
        done = len(rows) < batch
        return len(settled), None if done else (rows[-1][1], rows[-1][0])

    # ------------------------------------------------------------------ watches

    def add_watch(self, w: WatchRow) -> int:
        return self._add_watch(self.db, w)

    def add_watches(self, rows: Sequence[WatchRow]) -> list[int]:
        """All of ``rows`` in one transaction (a /watch of several symbols): their ids, or
        none of them stored when one cannot be."""
        with self._transaction() as db:
            return [self._add_watch(db, w) for w in rows]

    @staticmethod
    def _add_watch(db: sqlite3.Connection, w: WatchRow) -> int:
        cur = db.execute(
            "INSERT INTO watches (chat_id, symbol, condition, cooldown_ms, rearm, once,"
            " expires_ms, muted_until, last_fired, created, topic, note, repeat_ms, made_by)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (w.chat_id, w.symbol, w.condition, w.cooldown_ms, w.rearm, int(w.once),
             w.expires_ms, w.muted_until, w.last_fired, w.created or time.time(), w.topic,
             w.note, w.repeat_ms, w.made_by),
        )  # fmt: skip
        assert cur.lastrowid is not None
        return cur.lastrowid

    def edit_watch(self, w: WatchRow) -> None:
        """``w``'s symbol, condition, options (repeat too) and note as they are now (/edit)."""
        self.db.execute(
            "UPDATE watches SET symbol = ?, condition = ?, cooldown_ms = ?, rearm = ?, once = ?,"
            " expires_ms = ?, note = ?, repeat_ms = ? WHERE id = ?",
            (
                w.symbol,
                w.condition,
                w.cooldown_ms,
                w.rearm,
                int(w.once),
                w.expires_ms,
                w.note,
                w.repeat_ms,
                w.id,
            ),
        )

    def watches(self) -> list[WatchRow]:
        """Every active watch, oldest first."""
        return self._watches()

    def _watches(self, where: str = "", params: tuple[object, ...] = ()) -> list[WatchRow]:
        rows = self.db.execute(
            "SELECT id, chat_id, symbol, condition, cooldown_ms, rearm, once, expires_ms,"
            " muted_until, last_fired, created, revived, topic, note, repeat_ms, made_by"
            f" FROM watches WHERE active = 1{where} ORDER BY id",
            params,
        ).fetchall()
        return [
            WatchRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                bool(r[6]),
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
                r[13],
                r[14],
                r[15],
            )
            for r in rows
        ]

    def watch_topics(self) -> dict[int, tuple[int, int]]:
        """Every watch made in a forum topic, ended ones too (an alert of a ``once`` watch may
        still be on its way): id -> (chat, topic)."""
        rows = self.db.execute(
            "SELECT id, chat_id, topic FROM watches WHERE topic IS NOT NULL"
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def clear_topic(self, chat_id: int, topic: int) -> None:
        """The watches of ``chat_id`` made in forum topic ``topic`` alert in the chat itself
        from now on: Telegram refused the topic (deleted, closed)."""
        self.db.execute(
            "UPDATE watches SET topic = NULL WHERE chat_id = ? AND topic = ?",
            (chat_id, topic),
        )

    # The batches below are one transaction each: in autocommit, executemany commits (and,
    # with synchronous=FULL, syncs) once per row: 5,000 rows took 0.5-1.4 s, not 0.04-0.1 s.
    # All or nothing, too: a /unwatch all that fails half way ends none of the watches.

    def end_watches(self, ids: Sequence[int]) -> None:
        with self._transaction() as db:
            db.executemany("UPDATE watches SET active = 0 WHERE id = ?", [(i,) for i in ids])

    def mute_watches(self, ids: Sequence[int], until: float | None) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE watches SET muted_until = ? WHERE id = ?", [(until, i) for i in ids]
            )

    def set_digest(self, chat_id: int, minute: int | None) -> None:
        if minute is None:
            self.db.execute("DELETE FROM digests WHERE chat_id = ?", (chat_id,))
        else:
            self.db.execute(
                "INSERT INTO digests VALUES (?, ?) ON CONFLICT(chat_id) DO UPDATE SET minute = ?",
                (chat_id, minute, minute),
            )

    def set_zone(self, chat_id: int, zone: str | None) -> None:
        """``chat_id``'s time zone; None: UTC (no row)."""
        if zone is None:
            self.db.execute("DELETE FROM chat_zones WHERE chat_id = ?", (chat_id,))
        else:
            self.db.execute(
                "INSERT INTO chat_zones VALUES (?, ?) ON CONFLICT(chat_id) DO UPDATE SET zone = ?",
                (chat_id, zone, zone),
            )

    def zones(self) -> dict[int, str]:
        return dict(self.db.execute("SELECT chat_id, zone FROM chat_zones"))

    def set_quiet(self, chat_id: int, window: tuple[int, int] | None) -> None:
        """``chat_id``'s quiet hours (/quiet: start and end minutes of the day); None: none."""
        if window is None:
            self.db.execute("DELETE FROM quiet_hours WHERE chat_id = ?", (chat_id,))
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO quiet_hours VALUES (?, ?, ?)", (chat_id, *window)
            )

    def quiet_hours(self) -> dict[int, tuple[int, int]]:
        rows = self.db.execute("SELECT chat_id, start_minute, end_minute FROM quiet_hours")
        return {chat: (start, end) for chat, start, end in rows}

    def set_topic_name(self, chat_id: int, topic: int, name: str, edited: bool) -> None:
        self.db.execute(
            "INSERT INTO topic_names VALUES (?, ?, ?, ?) ON CONFLICT(chat_id, topic) DO UPDATE "
            "SET name = excluded.name, edited = excluded.edited",
            (chat_id, topic, name, int(edited)),
        )

    def topic_names(self) -> dict[tuple[int, int], tuple[str, bool]]:
        """(chat, topic) -> (its name, whether from a rename)."""
        rows = self.db.execute("SELECT chat_id, topic, name, edited FROM topic_names")
        return {(chat, topic): (name, bool(edited)) for chat, topic, name, edited in rows}

    def move_chat(self, old: int, new: int, pause: Pause | None = None) -> None:
        """A group became a supergroup (a new chat id): its watches, digest, time zone and quiet
        hours go with it (those the new chat set already stay); ``pause``: the new chat's
        pause after the move (the group's, joined with its own: WatchBook.move_chat), the
        group's is gone."""
        with self._transaction() as db:
            db.execute("DELETE FROM paused_chats WHERE chat_id = ?", (old,))
            if pause is not None:
                db.execute(
                    "INSERT OR REPLACE INTO paused_chats VALUES (?, ?, ?, ?)",
                    (new, pause.since, pause.reason, orjson.dumps(pause.missed).decode()),
                )
            db.execute("UPDATE watches SET chat_id = ? WHERE chat_id = ?", (new, old))
            db.execute(
                "INSERT INTO digests SELECT ?, minute FROM digests WHERE chat_id = ?"
                " ON CONFLICT(chat_id) DO NOTHING",
                (new, old),
            )
            db.execute("DELETE FROM digests WHERE chat_id = ?", (old,))
            db.execute(
                "INSERT INTO chat_zones SELECT ?, zone FROM chat_zones WHERE chat_id = ?"
                " ON CONFLICT(chat_id) DO NOTHING",
                (new, old),
            )
            db.execute("DELETE FROM chat_zones WHERE chat_id = ?", (old,))
            db.execute(
                "INSERT INTO quiet_hours SELECT ?, start_minute, end_minute FROM quiet_hours"
                " WHERE chat_id = ? ON CONFLICT(chat_id) DO NOTHING",
                (new, old),
            )
            db.execute("DELETE FROM quiet_hours WHERE chat_id = ?", (old,))
            db.execute("INSERT OR IGNORE INTO chat_moves VALUES (?, ?)", (old, new))

    def pause_chat(self, chat_id: int, pause: Pause) -> None:
        """``chat_id``'s pause, unless it is a group that became a supergroup (its pause, saved
        late, moved with its watches: none is left on the dead id)."""
        self.db.execute(
            "INSERT OR REPLACE INTO paused_chats SELECT ?, ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM chat_moves WHERE old = ?)",
            (chat_id, pause.since, pause.reason, orjson.dumps(pause.missed).decode(), chat_id),
        )

    def resume_chat(self, chat_id: int) -> None:
        self.db.execute("DELETE FROM paused_chats WHERE chat_id = ?", (chat_id,))

    def paused_chats(self) -> dict[int, Pause]:
        out: dict[int, Pause] = {}
        for chat, since, reason, missed in self.db.execute("SELECT * FROM paused_chats"):
            try:
                ids = [str(i) for i in orjson.loads(missed)]
            except (orjson.JSONDecodeError, TypeError):
                ids = []
            out[chat] = Pause(since, reason, ids)
        return out

    def revive_watches(self, fired: Sequence[tuple[int, int]]) -> list[WatchRow]:
        """The ``once`` watches ended by the alerts (watch id, event time) of ``fired``, active
        again with no alert (their alert was refused: it reached no one); returns them. A
        watch ended otherwise (/unwatch, expiry, another alert) stays ended.

        Complete in itself: the refused alert is noted as not the watch's firing
        (WatchRow.revived), so a restart does not take it for one (App._fired_since_saved)
        whether or not the engine's state was saved after it."""
        with self._transaction() as db:
            for watch, time_ms in fired:
                db.execute(
                    "UPDATE watches SET active = 1, last_fired = NULL, revived = ?"
                    " WHERE id = ? AND once = 1 AND active = 0 AND last_fired = ?",
                    (time_ms, watch, time_ms),
                )
        return [
            row
            for watch in sorted({w for w, _ in fired})
            for row in self._watches(" AND id = ?", (watch,))
        ]

    def refused_once(self, error: str) -> list[tuple[int, str, str, float]]:
        """The ``once`` watches ended by an alert whose Telegram delivery failed with an error
        beginning with ``error``, their chat not seen to have the bot since (no watch of it
        made later, no later alert of its watches delivered): (the watch's chat, the alert's
        id, the error, when it was written), oldest first. Their alert reached no one, and the
        watch is kept (revive_watches) once a pause names it (App._revive_refused).

        A version before pauses ended such a watch for good: a chat that was back after it is
        left so, not paused (its watches would go quiet until its next command)."""
        return self.db.execute(
            REFUSED_ONCE,
            (len(error), error),
        ).fetchall()

    def alert_texts(self, ids: Sequence[str]) -> list[tuple[int, str]]:
        """(event time, plain text) of the alerts ``ids`` still stored, in their order."""
        out = []
        for alert_id in ids:
            row = self.db.execute("SELECT time, text FROM alerts WHERE id = ?", (alert_id,))
            found = row.fetchone()
            if found is not None:
                out.append((found[0], found[1]))
        return out

    def chat_moves(self) -> dict[int, int]:
        """Each supergroup's id -> the id of the group it was, as :meth:`move_chat` saw them."""
        return {new: old for old, new in self.db.execute("SELECT old, new FROM chat_moves")}

    def digests(self) -> dict[int, int]:
        return dict(self.db.execute("SELECT chat_id, minute FROM digests"))

    def set_digest_sent(self, chat_id: int, day: dt.date, minute: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO digest_sent VALUES (?, ?, ?)",
            (chat_id, day.isoformat(), minute),
        )

    def digests_sent(self) -> dict[int, tuple[dt.date, int]]:
        rows = self.db.execute("SELECT chat_id, day, minute FROM digest_sent")
        return {chat: (dt.date.fromisoformat(day), minute) for chat, day, minute in rows}

    def counts(self) -> dict[str, int]:
        """Deliveries by state."""
        return dict(self.db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state"))

    # ------------------------------------------------------------------ engine state

    def save_engine(
        self,
        states: Sequence[PairState],
        ticks: Sequence[Ticker],
        dropped: Sequence[tuple[str, str | None]] = (),
        alerts_before: int | None = None,
    ) -> None:
        """One transaction: the states ``dropped`` forgotten (Engine.dropped: a rule's, or
        one symbol's of it), then pair states and last tickers, replacing those saved before.
        ``alerts_before`` (an AlertRecord.seq): the states saved now hold what every alert
        before it in order did to its pair (see :meth:`alerts_since_saved`)."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM pair_states WHERE rule = ?1 AND (?2 IS NULL OR symbol = ?2)", dropped
            )
            if alerts_before is not None:
                db.execute(
                    "INSERT OR REPLACE INTO state_saved (id, alerts, seq) VALUES (1, ?, ?)",
                    (time.time(), alerts_before),
                )
            # multi-row statements, as the outbox's: this shares its thread, and with one SQLite
            # step per row (thousands of changed pairs every few seconds at 100k rules) it
            # held the outbox's writes up for a third of a second each time
            self._insert("INSERT OR REPLACE INTO pair_states", 5, states)
            self._insert(
                "INSERT OR REPLACE INTO last_ticks",
                9,
                [
                    (t.symbol, t.time, t.close, t.open, t.high, t.low, t.volume,
                     t.quote_volume, t.price_text)
                    for t in ticks
                ],
            )  # fmt: skip

    def engine_state(self) -> tuple[list[PairState], list[Ticker]]:
        states = [
            (r[0], r[1], r[2], r[3], r[4])
            for r in self.db.execute(
                "SELECT rule, symbol, fingerprint, flags, last_fired FROM pair_states"
            )
        ]
        ticks = [Ticker(*r) for r in self.db.execute("SELECT * FROM last_ticks")]
        return states, ticks

    def alerts_since_saved(self) -> tuple[bool, list[tuple[str, str, str, int, str]]]:
        """The newest alert of each rule, symbol and condition made since the pair states
        were last saved (from ``alerts_before`` of :meth:`save_engine` on, in the order alerts
        are made, never by their times: a clock stepped back would put an alert made after
        the save before it): (rule, symbol, condition, event time, price). The first item says
        whether such a save is recorded (a database of an earlier version has none: then
        every stored alert's newest; or one by wall clock, which is then compared with the
        alerts' times)."""
        row = self.db.execute("SELECT alerts, seq FROM state_saved WHERE id = 1").fetchone()
        where = ""
        params: tuple[float, ...] = ()
        if row is not None and row[1] is not None:
            where, params = " WHERE seq >= ?", (row[1],)
        elif row is not None:  # saved by an earlier version, whose alerts have no seq
            where, params = " WHERE seq IS NOT NULL OR created >= ?", (row[0],)
        # MAX() picks the row the other (bare) columns are read from: the newest alert's price
        rows = self.db.execute(
            "SELECT rule, symbol, condition, MAX(time), price FROM alerts"
            f"{where} GROUP BY rule, symbol, condition",
            params,
        ).fetchall()
        return row is not None, [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def next_seq(self) -> int:
        """The seq of the next alert: past every alert stored and every state save (so that
        alerts pruned since do not take the order back)."""
        stored, saved = self.db.execute(
            "SELECT (SELECT MAX(seq) FROM alerts), (SELECT seq FROM state_saved WHERE id = 1)"
        ).fetchone()
        return max(1, (stored or 0) + 1, saved or 0)

    def save_histories(self, histories: dict[str, list[tuple[int, float]]]) -> None:
        """Replace the saved price histories (Engine.histories) in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM price_history")
            self._insert(
                "INSERT INTO price_history",
                2,
                [(symbol, orjson.dumps(points).decode()) for symbol, points in histories.items()],
            )

    def histories(self) -> dict[str, list[tuple[int, float]]]:
        """The saved price histories; a row that does not read as one is left out."""
        out: dict[str, list[tuple[int, float]]] = {}
        for symbol, text in self.db.execute("SELECT symbol, points FROM price_history"):
            try:
                points = [(int(t), float(p)) for t, p in orjson.loads(text)]
            except (orjson.JSONDecodeError, TypeError, ValueError):
                continue
            out[symbol] = points
        return out

    def forget_states(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop the saved states of these (rule, symbol) pairs (of rules removed or changed:
        they start afresh), in one transaction: at start-up, before the feed starts."""
        with self._transaction() as db:
            db.executemany("DELETE FROM pair_states WHERE rule = ? AND symbol = ?", pairs)
