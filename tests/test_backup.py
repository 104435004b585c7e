"""``alertbot backup --out FILE``: the database copied with SQLite's online backup, checked, and
put in place whole; a real SQLite file throughout, the command run as a user runs it."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from alertbot.app import BACKUP_CHECK, BACKUP_FIRST_AFTER, App
from alertbot.backup import RETRY_AFTER, Backups
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.render import format_time
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.model import RuleSet
from alertbot.service import AppCollector
from alertbot.store import Store, WatchRow
from tests.test_chat import USER, Bot
from tests.test_cli import alertbot


def with_watches(path: Path, conditions: list[str]) -> None:
    store = Store(path)
    for condition in conditions:
        store.add_watch(WatchRow(0, 501, "BTCUSDT", condition, 300_000, 0.0, False))
    store.close()


def env_for(db: Path) -> dict[str, str]:
    return {**os.environ, "ALERTBOT_DB": str(db)}


def conditions_in(path: Path) -> list[str]:
    store = Store(path)
    try:
        return [w.condition for w in store.watches()]
    finally:
        store.close()


def test_a_backup_is_the_databases_watches_in_one_checked_file(tmp_path: Path) -> None:
    """The copy opens as the bot's database (a restore is putting it where ALERTBOT_DB
    names), holds every watch, and is one file: no WAL of its own to lose beside it."""
    db = tmp_path / "alertbot.db"
    with_watches(db, ["price > 70000", "price < 60000"])
    out = tmp_path / "backup.db"
    result = alertbot("backup", "--out", out, env=env_for(db))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"alertbot backup: {db} -> {out} (2 watches, 0 alerts; {out.stat().st_size} bytes)\n"
    )
    copy = sqlite3.connect(out)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy.close()
    assert conditions_in(out) == ["price > 70000", "price < 60000"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("backup")) == [
        "backup.db"
    ]


def test_a_backup_while_another_process_writes_has_what_was_committed(tmp_path: Path) -> None:
    """The bot keeps running: a write under way (its transaction open) neither blocks the
    backup nor gets into it half made."""
    db = tmp_path / "alertbot.db"
    with_watches(db, ["price > 70000"])
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(  # the row as Store writes it, less the defaults
        "INSERT INTO watches (chat_id, symbol, condition, cooldown_ms, rearm, once, created) "
        "VALUES (501, 'ETHUSDT', 'price > 4000', 0, 0, 0, 0)"
    )
    try:
        result = alertbot("backup", "--out", tmp_path / "b.db", env=env_for(db))
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert result.returncode == 0, result.stderr
    assert conditions_in(tmp_path / "b.db") == ["price > 70000"]
    assert conditions_in(db) == ["price > 70000", "price > 4000"]


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    db = tmp_path / "alertbot.db"
    with_watches(db, ["price > 70000"])
    out = tmp_path / "backup.db"
    out.write_bytes(b"yesterday's")
    refused = alertbot("backup", "--out", out, env=env_for(db))
    assert refused.returncode == 2
    assert "--out" in refused.stderr
    assert "the file exists (11 bytes); give --force to overwrite it" in refused.stderr
    assert out.read_bytes() == b"yesterday's"
    forced = alertbot("backup", "--out", out, "--force", env=env_for(db))
    assert forced.returncode == 0, forced.stderr
    assert conditions_in(out) == ["price > 70000"]


def test_no_database_is_said_and_none_is_made(tmp_path: Path) -> None:
    """Connecting would have made an empty database, and backed that up as if all was well."""
    db = tmp_path / "typo.db"
    result = alertbot("backup", "--out", tmp_path / "b.db", env=env_for(db))
    assert result.returncode == 1
    assert result.stderr == f"alertbot backup: {db}: no database there (ALERTBOT_DB)\n"
    assert list(tmp_path.iterdir()) == []


def test_a_place_that_cannot_be_written_is_named_with_why(tmp_path: Path) -> None:
    db = tmp_path / "alertbot.db"
    with_watches(db, ["price > 70000"])
    out = tmp_path / "missing" / "b.db"
    result = alertbot("backup", "--out", out, env=env_for(db))
    assert result.returncode == 1
    assert result.stderr == f"alertbot backup: {out}.part: No such file or directory\n"


def test_the_database_itself_is_refused_as_the_copy(tmp_path: Path) -> None:
    db = tmp_path / "alertbot.db"
    with_watches(db, ["price > 70000"])
    result = alertbot("backup", "--out", db, "--force", env=env_for(db))
    assert result.returncode == 1
    assert "is the database itself" in result.stderr
    assert conditions_in(db) == ["price > 70000"]


def test_stdout_is_refused_as_the_copy(tmp_path: Path) -> None:
    """A database is a file: '--out -' (as record takes it) would write it to a terminal."""
    db = tmp_path / "alertbot.db"
    with_watches(db, ["price > 70000"])
    result = alertbot("backup", "--out", "-", env=env_for(db))
    assert result.returncode == 1
    assert result.stderr == "alertbot backup: --out -: a database is a file; name one\n"
    assert result.stdout == ""


# ---------------------------------------------------------------- scheduled copies

DAY = 86_400.0
NOW = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def backups(tmp: Path, clock: Clock, **kw: object) -> Backups:
    db = tmp / "alertbot.db"
    if not db.exists():
        with_watches(db, ["price > 70000"])
    return Backups(str(db), str(tmp / "copies"), clock=clock, **kw)  # type: ignore[arg-type]


def test_a_copy_is_made_when_the_newest_is_as_old_as_the_interval(tmp_path: Path) -> None:
    """ALERTBOT_BACKUP_DIR: a copy named by its time (UTC), another only once the newest is
    ``every`` old; each opens as the database, with its watches."""
    clock = Clock()
    b = backups(tmp_path, clock, every=DAY)
    line = b.take()
    assert line is not None
    assert line.startswith(f"backup: {b.db} -> {tmp_path}/copies/alertbot-20261118-110640.db (1 ")
    clock.now += DAY - 1
    assert b.take() is None  # not due yet
    clock.now += 1
    assert b.take() is not None
    assert b.copies() == ["alertbot-20261118-110640.db", "alertbot-20261119-110640.db"]
    assert conditions_in(tmp_path / "copies" / b.copies()[-1]) == ["price > 70000"]
    assert b.last == clock.now


def test_a_restart_makes_no_copy_while_the_newest_on_disk_is_recent(tmp_path: Path) -> None:
    """The interval counts from the newest copy in the directory, not from the start: a bot
    restarted (or crash-looping) makes no copy each time, which would rotate the good ones
    out; the metric's last copy is the one on disk."""
    clock = Clock()
    assert backups(tmp_path, clock).take() is not None
    clock.now += 3600
    again = backups(tmp_path, clock)
    assert again.take() is None
    assert again.last == NOW
    assert len(again.copies()) == 1


def test_a_copy_named_in_the_future_does_not_put_the_next_off_nor_make_one_a_minute(
    tmp_path: Path,
) -> None:
    """The clock stepped back a year (or a copy brought from a machine ahead): a copy is made
    now, and the next an interval later, as usual, not one at each check."""
    clock = Clock()
    b = backups(tmp_path, clock, every=DAY)
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "alertbot-20271118-110640.db").write_bytes(b"")
    assert b.take() is not None
    clock.now += 60
    assert b.take() is None
    clock.now += DAY
    assert b.take() is not None
    assert len(b.copies()) == 3


def test_the_newest_copies_are_kept_and_nothing_else_in_the_directory_is_touched(
    tmp_path: Path,
) -> None:
    """``keep`` copies: the oldest of the bot's own go, and so does a copy cut short; a file of
    another name stays."""
    clock = Clock()
    b = backups(tmp_path, clock, every=60.0, keep=2)
    (tmp_path / "copies").mkdir()
    mine = tmp_path / "copies" / "manual.db"
    mine.write_bytes(b"x")
    # a copy cut short by a kill (its name passed: no later copy empties it)
    cut = tmp_path / "copies" / "alertbot-20261118-100000.db.part"
    cut.write_bytes(b"half")
    lines = []
    for _ in range(4):
        lines.append(b.take())
        clock.now += 60
    assert b.copies() == ["alertbot-20261118-110840.db", "alertbot-20261118-110940.db"]
    assert mine.read_bytes() == b"x"
    assert not cut.exists()
    assert lines[2] is not None
    assert lines[2].endswith("; 1 older copy deleted")


def test_a_copy_that_fails_is_logged_once_and_tried_again_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory that cannot be made (a file is in its place): one error naming why, the
    failure shown (the metric), no try every minute (a full disk is not hammered), the same
    error not logged again; once it can be written, a copy and a line saying so."""
    caplog.set_level(logging.INFO, "alertbot.backup")
    clock = Clock()
    b = backups(tmp_path, clock, every=DAY)
    (tmp_path / "copies").write_text("not a directory")
    assert b.take() is None
    assert b.failed is not None
    clock.now += 60
    assert not b.due()  # not every minute
    clock.now += RETRY_AFTER
    assert b.take() is None  # tried, failed the same way: not logged again
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"backup: cannot copy the database to {tmp_path}/copies ({tmp_path}/copies: File exists);"
        " trying again in 10m"
    ]
    (tmp_path / "copies").unlink()
    clock.now += RETRY_AFTER
    assert b.take() is not None
    assert b.failed is None
    assert any("copies work again" in r.getMessage() for r in caplog.records)


def app_with(tmp: Path, b: Backups | None) -> App:
    feed = FeedSettings(ws_root="ws://127.0.0.1:9", rest_root="http://127.0.0.1:9")
    delivery = DeliverySettings(db=str(tmp / "alertbot.db"))
    return App(RuleSet(), feed, delivery, ChatSettings(), out=io.StringIO(), backups=b)


async def test_the_app_checks_for_a_due_copy_every_minute_and_makes_it_on_a_thread(
    tmp_path: Path,
) -> None:
    """The scheduled job (first shortly after the start), a copy made off the event loop, and
    the metrics: when the last copy was made, and whether copies fail."""
    clock = Clock(time.time())
    b = backups(tmp_path, clock)
    app = app_with(tmp_path, b)
    job = app._schedule().get_job("backup")
    assert job is not None
    assert job.trigger.interval == dt.timedelta(seconds=BACKUP_CHECK) == dt.timedelta(minutes=1)
    first = (job.next_run_time - dt.datetime.now(dt.UTC)).total_seconds()
    assert BACKUP_FIRST_AFTER - 5 < first <= BACKUP_FIRST_AFTER
    assert (await app.backup() or "").startswith("backup: ")
    metrics = {
        m.name: m.samples[0].value
        for m in AppCollector(app).collect()
        if m.name.startswith("alertbot_backup")
    }
    assert metrics == {
        "alertbot_backup_last_success_timestamp_seconds": clock.now,
        "alertbot_backup_failing": 0,
    }
    assert app_with(tmp_path, None)._schedule().get_job("backup") is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("ALERTBOT_BACKUP_EVERY", "10s", "ALERTBOT_BACKUP_EVERY: must be at least"),
        ("ALERTBOT_BACKUP_KEEP", "0", "ALERTBOT_BACKUP_KEEP: must be at least 1, got 0"),
        ("ALERTBOT_BACKUP_KEEP", "all", "ALERTBOT_BACKUP_KEEP: expected a whole number"),
    ],
)
def test_a_bad_backup_setting_stops_the_start_naming_it(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    env = {
        **env_for(tmp_path / "alertbot.db"),
        "ALERTBOT_BACKUP_DIR": str(tmp_path / "copies"),
        "ALERTBOT_BINANCE_WS_URL": "ws://127.0.0.1:9",
        name: value,
    }
    result = alertbot("run", env=env)
    assert result.returncode == 1
    assert says in result.stderr
    assert not (tmp_path / "copies").exists()


async def test_an_admins_status_says_when_the_last_copy_was_made_or_that_copies_fail(
    tmp_path: Path, fakes
) -> None:
    """An admin asks /status whether the bot's copies are made: none yet, the last one's time,
    or that they fail, since when and why. A user's /status does not say it."""
    binance, tg = fakes
    clock = Clock(time.time())
    bot = Bot(tmp_path, binance, tg, admin_chats=(USER,))
    copies = tmp_path / "copies"
    bot.app.backups = Backups(str(tmp_path / "alertbot.db"), str(copies), keep=3, clock=clock)
    async with bot:
        none_yet = (await bot.say("/status")).splitlines()
        await bot.app.backup()
        made = (await bot.say("/status")).splitlines()
        for name in os.listdir(copies):
            os.remove(copies / name)
        copies.rmdir()
        copies.write_text("in the way")
        clock.now += DAY
        await bot.app.backup()
        failing = (await bot.say("/status")).splitlines()
        user = await bot.say("/status", chat=USER + 1)
    assert f"Backups: none yet, one every 1d, 3 kept in {copies}" in none_yet
    when = format_time(int(clock.now - DAY) * 1000)
    assert f"Backups: last {when}, one every 1d, 3 kept in {copies}" in made
    assert (
        f"Backups: last {when}, one every 1d, 3 kept in {copies}; FAILING since "
        f"{format_time(int(clock.now) * 1000)}: {copies}: File exists"
    ) in failing
    assert "Backups" not in user
