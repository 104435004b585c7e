"""Copies of the database: ``alertbot backup --out FILE``, and the bot's own scheduled ones
(``ALERTBOT_BACKUP_DIR``), a set number kept.

A copy is made with SQLite's online backup in one step (one read transaction: in WAL mode the
bot's writes go on beside it), checked with ``integrity_check``, made one self-contained file
(no WAL), flushed to disk, and only then renamed onto its name: a copy cut short (a crash, a
full disk) never leaves a broken file under that name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alertbot.text import plural

log = logging.getLogger("alertbot.backup")

#: the tables a copy's summary counts, and what one row of each is
COUNTED = {"watches": "watch", "alerts": "alert"}
#: a scheduled copy's name: its time (UTC), so that names sort as times do
NAME_FORMAT = "alertbot-%Y%m%d-%H%M%S.db"
_NAME_RE = re.compile(r"alertbot-[0-9]{8}-[0-9]{6}\.db")
#: a copy under way, or one cut short (the process killed during it: its name has passed)
_PART_RE = re.compile(_NAME_RE.pattern + r"\.part")
#: after a scheduled copy fails, the next try comes this long after (seconds), or after the
#: interval when that is shorter: a full disk is not tried every minute
RETRY_AFTER = 600.0


def copy_database(db: str, out_path: str, *, force: bool = False) -> dict[str, int]:
    """Copy the database ``db`` to ``out_path`` (see the module); returns the rows of each
    COUNTED table in the copy. Raises FileExistsError when ``out_path`` is a file already
    and not ``force``; OSError or sqlite3.Error when the copy cannot be made (the partial
    copy removed, ``out_path`` untouched)."""
    part = f"{out_path}.part"
    try:
        # emptied, or made: an earlier copy's cut short goes, and a place that cannot be
        # written to is named as such (SQLite says only "unable to open database file")
        open(part, "wb").close()
        source = sqlite3.connect(db, timeout=30)
        try:
            copy = sqlite3.connect(part)
            try:
                # one step, one read transaction: in WAL mode the bot's writes go on beside it
                # (a copy in steps starts over at each write of another connection: under an
                # alert flood it might never end)
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one file, whatever the source's
                (check,) = copy.execute("PRAGMA integrity_check").fetchone()
                if check != "ok":
                    raise sqlite3.DatabaseError(f"the copy fails its check: {check}")
                counts = {
                    table: copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in COUNTED
                    if copy.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                    ).fetchone()
                }
            finally:
                copy.close()
        finally:
            source.close()
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        if not force and filled_file(out_path):  # made meanwhile: still not overwritten
            raise FileExistsError(
                f"--out {out_path}: the file exists; give --force to overwrite it"
            )
        os.replace(part, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
    return counts


def summary(db: str, out_path: str, counts: dict[str, int]) -> str:
    """``alertbot.db -> backup.db (12 watches, 340 alerts; 245760 bytes)``."""
    what = ", ".join(plural(n, COUNTED[table], table) for table, n in counts.items())
    return f"{db} -> {out_path} ({what}; {plural(os.path.getsize(out_path), 'byte')})"


def filled_file(path: str) -> int:
    """The size of the regular file at ``path``; 0 when there is none, or it is empty, or not a
    regular file (``-``, /dev/stdout, a pipe: writing to them destroys nothing)."""
    if path == "-":
        return 0
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # none (or a path that cannot be one): open() says why
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def why(exc: BaseException) -> str:
    """An error as a log line reads it: ``/backups: Permission denied``."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


@dataclass
class Backups:
    """The bot's scheduled copies (``ALERTBOT_BACKUP_DIR``): one when the newest copy in
    ``directory`` is ``every`` seconds old (so a restart does not make another, nor rotate
    good copies out in a crash loop), the ``keep`` newest kept, older ones of its own naming
    deleted (nothing else in the directory is touched). ``clock``: wall-clock seconds."""

    db: str
    directory: str
    every: float = 86400.0
    keep: int = 7
    clock: Callable[[], float] = time.time
    #: when the last copy was made (wall clock: this run's, or the newest on disk), None:
    #: none; the last failure's reason, None once a copy works
    last: float | None = None
    failed: str | None = None
    failed_at: float = 0.0  # the last try that failed
    failing_since: float = 0.0  # the first of the tries failing since the last copy
    _made_at: float | None = field(default=None, repr=False)  # this run's last copy
    _told: str | None = field(default=None, repr=False)

    def copies(self) -> list[str]:
        """This bot's copies in the directory, oldest first (their names sort as times)."""
        try:
            names = os.listdir(self.directory)
        except OSError:  # none yet, or not a directory: the copy says why
            return []
        return sorted(n for n in names if _NAME_RE.fullmatch(n))

    def newest(self) -> float | None:
        """When the newest copy in the directory was made (its name's time), None: none."""
        copies = self.copies()
        if not copies:
            return None
        stamp = dt.datetime.strptime(copies[-1], NAME_FORMAT).replace(tzinfo=dt.UTC)
        return stamp.timestamp()

    def due(self) -> bool:
        """Whether a copy is to be made now."""
        now = self.clock()
        if self.failed is not None and now - self.failed_at < min(self.every, RETRY_AFTER):
            return False
        if self._made_at is not None and now - self._made_at < self.every:
            return False
        newest = self.newest()
        if self.last is None:  # a copy of an earlier run's: the last made
            self.last = newest
        # a newest copy from the future (the clock was stepped back, or it came from a
        # machine ahead of this one) does not put the next off for that long
        return newest is None or now - newest >= self.every or newest > now + 60

    def take(self) -> str | None:
        """Make a copy when one is due, then delete the oldest beyond ``keep``; the line to
        log, None when none was due. Raises nothing: a failure is logged (once for a reason,
        until a copy works again) and tried again later."""
        if not self.due():
            return None
        now = self.clock()
        name = dt.datetime.fromtimestamp(now, dt.UTC).strftime(NAME_FORMAT)
        path = os.path.join(self.directory, name)
        try:
            os.makedirs(self.directory, exist_ok=True)
            counts = copy_database(self.db, path, force=True)
        except (OSError, sqlite3.Error) as exc:
            if self.failed is None:
                self.failing_since = now
            self.failed, self.failed_at = why(exc), now
            if self._told != self.failed:
                self._told = self.failed
                log.error(
                    "backup: cannot copy the database to %s (%s); trying again in %s",
                    self.directory,
                    self.failed,
                    _minutes(min(self.every, RETRY_AFTER)),
                )
            return None
        if self.failed is not None:
            log.info("backup: copies work again (%s before)", self.failed)
        self.failed = self._told = None
        self.last = self._made_at = now
        line = f"backup: {summary(self.db, path, counts)}"
        removed = self.prune()
        if removed:
            line += f"; {plural(removed, 'older copy', 'older copies')} deleted"
        log.info("%s", line)
        return line

    def prune(self) -> int:
        """Delete this bot's copies beyond the ``keep`` newest, and the part of any copy cut
        short (a process killed during it: a stop's kill, a crash), which would stay for ever
        under a name no later copy takes; how many copies went."""
        old = self.copies()[: -self.keep]
        for name in old:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                if _PART_RE.fullmatch(name):  # none is under way: this run copies one at a time
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(self.directory, name))
        return len(old)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds < 3600 else f"{seconds / 3600:g}h"
