"""``alertbot backup --out FILE``: the database copied with SQLite's online backup, checked, and
put in place whole; a real SQLite file throughout, the command run as a user runs it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from alertbot.store import Store, WatchRow
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
