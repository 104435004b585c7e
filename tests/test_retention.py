"""Retention of the outbox (ALERTBOT_ALERT_RETENTION): old alerts whose deliveries are all
settled are deleted with their deliveries, in batches; open deliveries are kept however old;
the App prunes on a schedule. A real SQLite file in each test's tmp_path."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from alertbot.app import PRUNE_EVERY, PRUNE_FIRST_AFTER, App
from alertbot.chat.watches import ChatSettings
from alertbot.errors import ConfigError
from alertbot.feed.settings import FeedSettings
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.model import RuleSet
from alertbot.store import PRUNE_BATCH, AlertRecord, DeliveryRow, Store
from tests.fakes.binance import FakeBinance
from tests.test_cli_live import env_for, finish, start

T = 1_772_000_000_000
NOW = 1_795_000_000.0
DAY = 86400.0
OLD = NOW - 30 * DAY  # a month old
RECENT = NOW - 3600.0  # an hour old
CUTOFF = NOW - 7 * DAY


def alert(alert_id: str, created: float) -> AlertRecord:
    return AlertRecord(
        id=alert_id, rule="r1", symbol="BTCUSDT", time=T, price="101.5",
        condition="price > 100", text="BTCUSDT > 100", html="", created=created,
    )  # fmt: skip


def add(store: Store, alert_id: str, created: float, *states: str) -> None:
    """An alert and one delivery per state (to destinations d0, d1, ...)."""
    store.write(
        [alert(alert_id, created)],
        [DeliveryRow(alert_id, f"d{i}", state=s, created=created) for i, s in enumerate(states)],
        [],
    )


def alert_ids(store: Store) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT id FROM alerts")}


def delivery_keys(store: Store) -> set[tuple[str, str, str]]:
    return set(store.db.execute("SELECT alert_id, destination, state FROM deliveries"))


# ---------------------------------------------------------------- Store.prune


def test_old_settled_alerts_are_deleted_with_their_deliveries(tmp_path: Path):
    """An alert older than the cutoff whose deliveries are all sent or failed, or which has no
    delivery at all, is deleted, and so are its delivery rows; the count says how many."""
    store = Store(tmp_path / "a.db")
    add(store, "sent", OLD, "sent")
    add(store, "failed", OLD, "failed")
    add(store, "mixed", OLD, "sent", "failed", "sent")
    add(store, "none", OLD)
    assert store.prune(CUTOFF) == 4
    assert alert_ids(store) == set()
    assert delivery_keys(store) == set()
    store.close()


@pytest.mark.parametrize("open_state", ["pending", "fell_back"])
def test_old_alerts_with_an_open_delivery_are_kept_whole(tmp_path: Path, open_state: str):
    """An alert with any delivery still open (pending, fell back) is kept however old, with
    every delivery row it has (the settled ones too): it is resumed at the next start."""
    store = Store(tmp_path / "a.db")
    add(store, "open", OLD - 365 * DAY, "sent", open_state, "failed")
    add(store, "done", OLD, "sent")
    assert store.prune(CUTOFF) == 1
    assert alert_ids(store) == {"open"}
    assert delivery_keys(store) == {
        ("open", "d0", "sent"),
        ("open", "d1", open_state),
        ("open", "d2", "failed"),
    }
    store.close()
    # and the kept delivery is what the next start resumes
    again = Store(tmp_path / "a.db")
    assert [(a.id, d.state) for a, d in again.open_deliveries()] == [("open", open_state)]
    again.close()


def test_recent_alerts_are_kept(tmp_path: Path):
    """Alerts created at or after the cutoff stay, settled or not; only the older ones go."""
    store = Store(tmp_path / "a.db")
    add(store, "recent-sent", RECENT, "sent")
    add(store, "recent-none", RECENT)
    add(store, "at-cutoff", CUTOFF, "sent")
    add(store, "just-before", CUTOFF - 0.5, "sent")
    assert store.prune(CUTOFF) == 1
    assert alert_ids(store) == {"recent-sent", "recent-none", "at-cutoff"}
    assert {k[0] for k in delivery_keys(store)} == {"recent-sent", "at-cutoff"}
    store.close()


def test_more_alerts_than_one_batch_are_all_pruned_a_batch_to_a_transaction(tmp_path: Path):
    """A backlog larger than PRUNE_BATCH is pruned completely, in several transactions of at
    most a batch each (a huge backlog never holds the database in one long transaction)."""
    store = Store(tmp_path / "a.db")
    total = 2 * PRUNE_BATCH + 7
    ids = [f"r1:BTCUSDT:{i}" for i in range(total)]
    store.write(
        [alert(i, OLD + n) for n, i in enumerate(ids)],
        [DeliveryRow(i, "console", state="sent", created=OLD) for i in ids],
        [],
    )
    add(store, "open", OLD, "pending")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    assert store.prune(CUTOFF) == total
    store.db.set_trace_callback(None)
    assert alert_ids(store) == {"open"}
    assert delivery_keys(store) == {("open", "d0", "pending")}
    assert sum(s == "COMMIT" for s in statements) == 3  # 2000 + 2000 + 8 alerts looked at
    store.close()


def test_batches_go_on_past_kept_alerts_and_alerts_created_at_the_same_instant(tmp_path: Path):
    """Small batches over alerts that share one creation time, every third one still open:
    each batch carries on where the last one stopped, so none is skipped or left behind."""
    store = Store(tmp_path / "a.db")
    for n in range(50):
        add(store, f"a{n:02}", OLD, "pending" if n % 3 == 0 else "sent")
    kept = {f"a{n:02}" for n in range(50) if n % 3 == 0}
    assert store.prune(CUTOFF, batch=4) == 50 - len(kept)
    assert alert_ids(store) == kept
    assert store.prune(CUTOFF, batch=4) == 0
    store.close()


def test_a_database_from_before_retention_gets_the_index_when_opened(tmp_path: Path):
    """An existing outbox (made without the alerts(created) index) is upgraded in place on
    opening, keeping its rows, and pruning it uses the index rather than a full scan."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE alerts (id TEXT PRIMARY KEY, rule TEXT NOT NULL, symbol TEXT NOT NULL,"
        " time INTEGER NOT NULL, price TEXT NOT NULL, condition TEXT NOT NULL,"
        " text TEXT NOT NULL, html TEXT NOT NULL, gap INTEGER NOT NULL DEFAULT 0,"
        " created REAL NOT NULL);"
        "INSERT INTO alerts VALUES ('old', 'r1', 'BTCUSDT', 1, '1', 'c', 't', '', 0, 1.0);"
    )
    db.close()
    store = Store(path)
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "alerts_created" in indexes
    plan = " ".join(
        str(r[3])
        for r in store.db.execute(
            "EXPLAIN QUERY PLAN SELECT rowid FROM alerts WHERE created < ? ORDER BY created",
            (CUTOFF,),
        )
    )
    assert "alerts_created" in plan
    assert store.prune(CUTOFF) == 1
    store.close()


# ---------------------------------------------------------------- the setting


def test_the_retention_setting_parses_durations_and_defaults_to_a_week():
    """ALERTBOT_ALERT_RETENTION: a duration like the other delivery settings, 7 days when
    unset, 0 allowed (it turns pruning off)."""
    assert DeliverySettings.from_env({}).alert_retention == 7 * DAY
    assert DeliverySettings.from_env({"ALERTBOT_ALERT_RETENTION": "3d"}).alert_retention == 3 * DAY
    assert DeliverySettings.from_env({"ALERTBOT_ALERT_RETENTION": "90"}).alert_retention == 90.0
    assert DeliverySettings.from_env({"ALERTBOT_ALERT_RETENTION": "0"}).alert_retention == 0.0


@pytest.mark.parametrize("value", ["-1", "-3d", "a week", "7 days"])
def test_a_bad_retention_is_refused_naming_the_variable(value: str):
    """A negative or unreadable retention is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="ALERTBOT_ALERT_RETENTION: expected a duration"):
        DeliverySettings.from_env({"ALERTBOT_ALERT_RETENTION": value})


async def test_a_negative_retention_stops_the_start_with_one_clear_line(tmp_path: Path):
    """``alertbot run`` with ALERTBOT_ALERT_RETENTION=-1 exits 1 before connecting anywhere,
    saying which variable is wrong, without a traceback."""
    async with FakeBinance() as fake:
        env = {**env_for(fake, tmp_path / "a.db"), "ALERTBOT_ALERT_RETENTION": "-1"}
        code, _, err = await finish(await start("run", "--rules", "rules.example.yaml", env=env))
    assert code == 1
    assert err.strip().splitlines() == [
        "alertbot: ALERTBOT_ALERT_RETENTION: expected a duration like 15s, 500ms or 23h30m, "
        "got '-1'"
    ]
    assert not fake.stats.attempts


# ---------------------------------------------------------------- the App's job


def app_for(tmp: Path, retention: float) -> App:
    feed = FeedSettings(ws_root="ws://127.0.0.1:9", rest_root="http://127.0.0.1:9")
    delivery = DeliverySettings(db=str(tmp / "a.db"), alert_retention=retention)
    return App(RuleSet(), feed, delivery, ChatSettings(), grace=0.5, out=io.StringIO())


async def test_the_prune_job_is_scheduled_hourly_and_first_shortly_after_the_start(
    tmp_path: Path,
):
    """With a retention, the App schedules the prune every PRUNE_EVERY (an hour), the first
    run PRUNE_FIRST_AFTER (a minute) after the scheduler is set up."""
    app = app_for(tmp_path, 7 * DAY)
    scheduler = app._schedule()
    job = scheduler.get_job("retention")
    assert job is not None
    assert job.func.__wrapped__ == app.prune_alerts  # wrapped by App._job
    assert job.trigger.interval == dt.timedelta(seconds=PRUNE_EVERY) == dt.timedelta(hours=1)
    first = (job.next_run_time - dt.datetime.now(dt.UTC)).total_seconds()
    assert PRUNE_FIRST_AFTER - 5 < first <= PRUNE_FIRST_AFTER


async def test_no_prune_job_when_the_retention_is_zero(tmp_path: Path):
    """ALERTBOT_ALERT_RETENTION=0 keeps every alert: no prune job is scheduled at all."""
    scheduler = app_for(tmp_path, 0)._schedule()
    assert scheduler.get_job("retention") is None
    assert scheduler.get_job("sparklines") is not None  # the other jobs are still there


async def test_every_scheduled_job_runs_on_the_event_loop(tmp_path: Path):
    """AsyncIOScheduler runs a plain function on a thread pool, where it would race the event
    loop over shared state (the sparklines' samples, read while an alert is rendered, once
    raised 'deque mutated during iteration' and lost the alert): every job is a coroutine."""
    app = App(
        RuleSet(),
        FeedSettings(ws_root="ws://127.0.0.1:9", rest_root="http://127.0.0.1:9"),
        DeliverySettings(db=str(tmp_path / "a.db"), telegram_token="1:x", alert_retention=DAY),
        ChatSettings(),
        grace=0.5,
        out=io.StringIO(),
        state_every=5.0,
        heartbeat=3600.0,
    )
    jobs = app._schedule().get_jobs()
    assert len(jobs) >= 5
    assert [j.id for j in jobs if not inspect.iscoroutinefunction(j.func)] == []


async def test_the_prune_job_deletes_old_settled_alerts_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The job run on the outbox's database thread deletes every settled alert older than the
    retention (more than one batch of them), keeps open and recent ones, and logs one info
    line saying how many; a run with nothing to delete logs nothing."""
    app = app_for(tmp_path, 7 * DAY)
    await app.notifier.start()
    store = app.notifier.store
    assert store is not None
    now = time.time()
    ids = [f"old{i}" for i in range(PRUNE_BATCH + 10)]
    store.write(
        [alert(i, now - 8 * DAY) for i in ids],
        [DeliveryRow(i, "console", state="sent", created=now - 8 * DAY) for i in ids],
        [],
    )
    add(store, "old-open", now - 30 * DAY, "fell_back")
    add(store, "recent", now - 6 * DAY, "sent")
    try:
        with caplog.at_level(logging.INFO, logger="alertbot"):
            assert await app.prune_alerts() == len(ids)
            assert await app.prune_alerts() == 0
        assert alert_ids(store) == {"old-open", "recent"}
    finally:
        await app.notifier.close()
    lines = [r.getMessage() for r in caplog.records if "older than" in r.getMessage()]
    assert lines == [
        f"outbox: {len(ids)} alerts older than 7d deleted, their deliveries all settled"
    ]
