"""A restarted App carries on from its last run's engine state (a real SQLite file, the fake
exchange): no second alert for a level still true, a level crossed while it was down caught
and flagged as across a gap, and the state saved while running, not only at shutdown."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.render import GAP_NOTE
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.conditions import parse
from alertbot.rules.engine import fingerprint
from alertbot.rules.model import Rule, RuleSet
from alertbot.store import AlertRecord, Store, WatchRow
from alertbot.ticker import Ticker
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram

T = 1_772_000_000_000
TOKEN = "123456:TEST-token-0123456789abcdef"
RULES = RuleSet(
    rules=(
        Rule(id="hi", condition=parse("price > 100"), symbols=("BTCUSDT",)),
        Rule(id="x", condition=parse("crosses above 200"), symbols=("BTCUSDT",)),
    )
)


def app_for(
    tmp: Path,
    fake: FakeBinance,
    out: io.StringIO,
    state_every: float = 5.0,
    rules: RuleSet = RULES,
) -> App:
    feed = FeedSettings(
        ws_root=fake.ws_url, rest_root=fake.rest_url, backoff_initial=0.02, ping_interval=None
    )
    delivery = DeliverySettings(db=str(tmp / "a.db"))
    return App(rules, feed, delivery, ChatSettings(), grace=0.5, out=out, state_every=state_every)


async def run_until(
    app: App, fake: FakeBinance, price: float, time: int, alerts: int, *more: tuple[float, int]
) -> None:
    """Run the app, publish one ticker (and ``more`` (price, time) after it), wait until they
    are evaluated and ``alerts`` fired, stop."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
        for p, t in ((price, time), *more):
            frames = app.pipeline.frames
            await fake.publish([mini_ticker("BTCUSDT", p, t)])
            await fake.wait_for(lambda f=frames: app.pipeline.frames > f)
        await fake.wait_for(lambda: app.pipeline.alerts >= alerts)
        await asyncio.sleep(0.05)  # room for a wrong extra alert to show up
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_restart_does_not_repeat_a_true_level_and_catches_a_crossing_while_down(
    tmp_path,
):
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        first_out = io.StringIO()
        first = app_for(tmp_path, fake, first_out)
        await run_until(first, fake, 150, T, alerts=1)
        assert first.pipeline.alerts_by_rule == {"hi": 1}

        out = io.StringIO()
        second = app_for(tmp_path, fake, out)
        await run_until(second, fake, 250, T + 60_000, alerts=1)
    # "hi" is still true: no second alert; "x" crossed 200 while the bot was down
    assert second.pipeline.alerts_by_rule == {"x": 1}
    assert GAP_NOTE in out.getvalue()


async def test_the_state_is_saved_while_running(tmp_path):
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake, io.StringIO(), state_every=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        db = sqlite3.connect(tmp_path / "a.db")
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await fake.publish([mini_ticker("BTCUSDT", 150, T)])

            def saved() -> list[tuple[str, str, int]]:
                return db.execute("SELECT rule, symbol, last_fired FROM pair_states").fetchall()

            await fake.wait_for(lambda: bool(saved()))
            assert saved() == [("hi", "BTCUSDT", T)]
            ticks = db.execute("SELECT symbol, time, price FROM last_ticks").fetchall()
            assert ticks == [("BTCUSDT", T, "150")]
        finally:
            db.close()
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_a_firing_state_is_never_on_disk_before_its_alert(tmp_path, caplog):
    """A crash between the two writes must not leave a restored engine that knows it fired and
    an outbox that never had the alert. The database itself checks the order (a trigger);
    1,500 alerts at once keep the outbox's writer busy over several transactions while the
    state is saved every 50 ms."""
    Store(str(tmp_path / "a.db")).close()
    db = sqlite3.connect(tmp_path / "a.db")
    for op in ("INSERT", "UPDATE"):
        db.execute(
            f"CREATE TRIGGER state_after_alert_{op.lower()} BEFORE {op} ON pair_states"
            " WHEN NEW.last_fired IS NOT NULL AND NOT EXISTS (SELECT 1 FROM alerts"
            " WHERE id = NEW.rule || ':' || NEW.symbol || ':' || NEW.last_fired)"
            " BEGIN SELECT RAISE(ABORT, 'state saved before its alert'); END"
        )
    db.commit()
    rules = RuleSet(
        rules=tuple(
            Rule(id=f"r{i}", condition=parse("price > 100"), symbols=("BTCUSDT",))
            for i in range(1500)
        )
    )
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake, io.StringIO(), state_every=0.05, rules=rules)
        await run_until(app, fake, 150, T, alerts=1500)
    saved = db.execute("SELECT count(*) FROM pair_states WHERE last_fired = ?", (T,)).fetchone()
    db.close()
    assert saved == (1500,)
    assert "state saved before its alert" not in caplog.text


async def test_a_start_forgets_only_the_saved_states_that_no_longer_apply(tmp_path):
    """Per pair: a rule's pairs saved before and after an edit of its condition may both be
    in the database, and only the older ones are stale; a watch's state stays while a run
    without a Telegram token leaves the watches unloaded; a removed rule's state goes, and so
    do an ended watch's and that of a symbol the rule no longer names."""
    rules = RuleSet(
        rules=(Rule(id="m", condition=parse("price > 100"), symbols=("BTCUSDT", "ETHUSDT")),)
    )
    now, before = fingerprint(rules.rules[0]), "price > 90|None"
    store = Store(str(tmp_path / "a.db"))
    live, ended = (store.add_watch(WatchRow(0, 5, "SOLUSDT", "price > 1", 0, 0.0, False))
                   for _ in range(2))  # fmt: skip
    store.end_watches([ended])
    store.save_engine(
        [
            ("m", "BTCUSDT", now, 2, T),
            ("m", "ETHUSDT", before, 2, T),
            ("m", "SOLUSDT", now, 2, T),
            (f"w{live}", "SOLUSDT", "price > 1|None", 2, T),
            (f"w{ended}", "SOLUSDT", "price > 1|None", 2, T),
            ("gone", "BTCUSDT", before, 2, T),
        ],
        [],
    )
    store.close()
    async with FakeBinance(symbols=["BTCUSDT", "ETHUSDT"]) as fake:
        app = app_for(tmp_path, fake, io.StringIO(), rules=rules)
        await run_until(app, fake, 150, T + 1_000, alerts=0)
    db = sqlite3.connect(tmp_path / "a.db")
    kept = db.execute("SELECT rule, symbol FROM pair_states ORDER BY rule, symbol").fetchall()
    db.close()
    assert kept == [("m", "BTCUSDT"), (f"w{live}", "SOLUSDT")]
    assert app.pipeline.alerts == 0  # BTCUSDT's state was taken up: fired before, still true


async def test_a_move_under_way_at_a_restart_is_measured_from_its_start(tmp_path):
    """The moves windows' prices are saved at shutdown and taken back at start: a rise of 5 %
    from 100 (before the restart) to 106 (after) fires, though 103 -> 106 alone is 2.9 %."""
    rules = RuleSet(rules=(Rule(id="up", condition=parse("rises 5% in 5m"), symbols=("BTCUSDT",)),))
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        first = app_for(tmp_path, fake, io.StringIO(), rules=rules)
        await run_until(first, fake, 100, T, 0, (103, T + 30_000))
        assert first.pipeline.alerts == 0
        second = app_for(tmp_path, fake, io.StringIO(), rules=rules)
        await run_until(second, fake, 106, T + 60_000, 1)
    assert second.pipeline.alerts_by_rule == {"up": 1}
    db = sqlite3.connect(tmp_path / "a.db")
    try:
        (points,) = db.execute(
            "SELECT points FROM price_history WHERE symbol = 'BTCUSDT'"
        ).fetchone()
    finally:
        db.close()
    assert points.startswith(f"[[{T},100.0]")  # the first run's low, still in the window


def test_every_commit_is_durable_across_a_power_loss(tmp_path):
    """SQLite's synchronous=FULL: with WAL's NORMAL the last commits (an alert stored, a /watch
    already acknowledged to its chat) may roll back after a host crash or a power loss."""
    store = Store(str(tmp_path / "a.db"))
    try:
        assert store.db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        store.close()


def test_a_saved_history_that_does_not_read_is_left_out(tmp_path):
    """Store.histories skips a damaged row instead of failing the start."""
    store = Store(tmp_path / "a.db")
    try:
        store.save_histories({"BTCUSDT": [(T, 100.0), (T + 1_000, 101.5)], "ETHUSDT": [(T, 2.0)]})
        store.db.execute("UPDATE price_history SET points = '[[1,' WHERE symbol = 'ETHUSDT'")
        assert store.histories() == {"BTCUSDT": [(T, 100.0), (T + 1_000, 101.5)]}
    finally:
        store.close()


async def test_the_last_tickers_saved_are_of_the_moment_of_the_states_saved(tmp_path):
    """A crossing tick taken while a save waits for the outbox must not reach the disk ahead
    of its firing state: restored after a crash, the engine would compare with that tick and
    never see the crossing. The test holds the database's write lock so that the save waits
    (the first alert cannot be stored), feeds the crossing tick meanwhile, then lets go."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake, io.StringIO(), state_every=3600)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        db = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            db.execute("BEGIN IMMEDIATE")  # the outbox cannot store an alert until COMMIT
            await fake.publish([mini_ticker("BTCUSDT", 150, T)])  # "hi" fires
            await fake.wait_for(lambda: app.pipeline.alerts >= 1)
            save = asyncio.create_task(app.save_state())
            await asyncio.sleep(0.05)  # the save has its snapshot and waits for the outbox
            assert not save.done()
            await fake.publish([mini_ticker("BTCUSDT", 250, T + 1000)])  # "x" crosses 200
            await fake.wait_for(lambda: app.pipeline.alerts >= 2)
            db.execute("COMMIT")
            await asyncio.wait_for(save, 10)
            ticks = db.execute("SELECT symbol, time, price FROM last_ticks").fetchall()
            states = db.execute("SELECT rule, last_fired FROM pair_states").fetchall()
        finally:
            db.close()
            stop.set()
            await asyncio.wait_for(task, 10)
    assert states == [("hi", T)]
    assert ticks == [("BTCUSDT", T, "150")]


def once_alerts(watches: tuple[int, ...]) -> list[AlertRecord]:
    """An alert of each of these ``once`` watches, which ends it (AlertRecord.watch)."""
    return [
        AlertRecord(f"w{i}:BTC:{T}", f"w{i}", "BTC", T, "2", "price > 1", "", "",
                    watch=i, ends_watch=True)
        for i in watches
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "table"),
    [
        (lambda store: store.end_watches([1, 2, 3]), "watches"),
        (lambda store: store.mute_watches([1, 2, 3], 1.0), "watches"),
        (lambda store: store.write(once_alerts((1, 2, 3)), [], []), "watches"),
        (lambda store: store.forget_states([(f"w{i}", "BTC") for i in (1, 2, 3)]), "pair_states"),
    ],
    ids=["end_watches", "mute_watches", "alerts_ending_watches", "forget_states"],
)
def test_a_batch_of_row_changes_is_all_or_nothing(tmp_path, change, table):
    """One transaction per batch (not one durable commit per row, in autocommit: 5,000 rows
    took over a second): a row that fails half way leaves the rows before it unchanged too.
    A trigger refuses the third row."""
    store = Store(tmp_path / "a.db")
    try:
        for _ in range(3):  # w1, w2, w3
            store.add_watch(WatchRow(0, 5, "BTC", "price > 1", 0, 0.0, False))
        store.save_engine([(f"w{i}", "BTC", "price > 1|0.0", 1, None) for i in (1, 2, 3)], [])
        store.db.executescript(
            "CREATE TRIGGER refuse_w3 BEFORE UPDATE ON watches WHEN OLD.id = 3"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END;"
            "CREATE TRIGGER refuse_w3_state BEFORE DELETE ON pair_states WHEN OLD.rule = 'w3'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END;"
        )
        before = store.db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        with pytest.raises(sqlite3.IntegrityError, match="refused"):
            change(store)
        assert store.db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() == before
    finally:
        store.close()


async def test_a_once_watch_whose_alert_came_after_the_last_save_is_ended_at_the_start(
    tmp_path,
):
    """A ``once`` watch ends as it fires. Killed before that was written (and before the
    state save), the bot restarted with the watch active and not done: it fired again. Its
    stored alert now makes it done, and the start ends it."""
    store = Store(tmp_path / "a.db")
    once = store.add_watch(WatchRow(0, 5, "BTCUSDT", "price > 120", 0, 0.0, True))
    store.write(
        [
            AlertRecord(
                f"w{once}:BTCUSDT:{T}", f"w{once}", "BTCUSDT", T, "150", "price > 120", "", ""
            )
        ],
        [],
        [],
    )
    store.close()
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        feed = FeedSettings(
            ws_root=fake.ws_url, rest_root=fake.rest_url, backoff_initial=0.02, ping_interval=None
        )
        delivery = DeliverySettings(
            telegram_token=TOKEN, telegram_api_url=tg.api_url, db=str(tmp_path / "a.db")
        )
        rules = RuleSet(
            rules=(Rule(id="far", condition=parse("price > 1m"), symbols=("BTCUSDT",)),)
        )
        app = App(rules, feed, delivery, ChatSettings(), grace=0.5, out=io.StringIO())
        await run_until(app, fake, 150, T + 2_000, alerts=0)  # "far" keeps BTCUSDT subscribed
    assert app.pipeline.frames == 1
    assert app.pipeline.alerts == 0
    store = Store(tmp_path / "a.db")
    try:
        assert store.watches() == []
    finally:
        store.close()


async def test_a_database_saved_without_a_save_time_takes_only_alerts_after_its_tickers(tmp_path):
    """A database of an earlier version records no time for its last save: an alert newer
    than its symbol's saved last ticker came after that save (taken as fired); an older one
    is in the saved state already, or was forgotten with its rule's state (a rule removed
    and added back, whose alerts must not make it fired)."""
    rules = RuleSet(
        rules=tuple(
            Rule(id=i, condition=parse("price > 100"), symbols=("BTCUSDT",))
            for i in ("back", "crashed")
        )
    )
    store = Store(tmp_path / "a.db")
    store.save_engine([], [Ticker("BTCUSDT", T, 99.0, 99.0, 99.0, 99.0, 1.0, 1.0, "99")])
    store.write(
        [
            AlertRecord(f"{rule}:BTCUSDT:{t}", rule, "BTCUSDT", t, "150", "price > 100", "", "")
            for rule, t in (("back", T - 1_000), ("crashed", T + 1_000))
        ],
        [],
        [],
    )
    store.close()
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        app = app_for(tmp_path, fake, io.StringIO(), rules=rules)
        await run_until(app, fake, 150, T + 2_000, alerts=1)
    assert app.pipeline.alerts_by_rule == {"back": 1}


class SteppingClock:
    """A wall clock the test sets (NTP stepping it back, say)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_an_alert_after_the_last_save_counts_as_fired_though_the_clock_stepped_back(
    tmp_path,
):
    """The alerts stored after the last state save are taken as fired at a restart. They were
    told apart by wall-clock times: the clock stepped back after a save (NTP), an alert made
    later carried an earlier time than the save, was taken as saved already, and its level,
    still true after a crash, fired again inside its 1 h cooldown. The crash is a copy of the
    database as it was then; a probe rule, true only after the restart, shows the tick was
    evaluated."""
    rules = RuleSet(
        rules=(
            Rule(id="hi", condition=parse("price > 100"), symbols=("BTCUSDT",),
                 cooldown_ms=3_600_000),
            Rule(id="probe", condition=parse("price > 150.5"), symbols=("BTCUSDT",)),
        )
    )  # fmt: skip
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        first = app_for(tmp_path, fake, io.StringIO(), state_every=0, rules=rules)
        first.notifier.clock = clock = SteppingClock(1_772_000_000.0)
        stop = asyncio.Event()
        task = asyncio.create_task(first.run(stop))
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.wait_for(lambda: first.pipeline.frames >= 1)
            await first.save_state()
            clock.now -= 60.0  # stepped back a minute
            await fake.publish([mini_ticker("BTCUSDT", 150, T + 1_000)])  # "hi" fires
            await fake.wait_for(lambda: first.pipeline.alerts >= 1)
            assert first.notifier.outbox is not None
            await first.notifier.outbox.flush()
            src = sqlite3.connect(tmp_path / "a.db")
            dst = sqlite3.connect(crashed / "a.db")
            try:
                src.backup(dst)  # the disk as a crash now would leave it
            finally:
                src.close()
                dst.close()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        second = app_for(crashed, fake, io.StringIO(), rules=rules)
        await run_until(second, fake, 151, T + 2_000, alerts=1)
    assert second.pipeline.alerts_by_rule == {"probe": 1}


def seq_alert(rule: str, seq: int | None, created: float = 0.0) -> AlertRecord:
    return AlertRecord(
        f"{rule}:BTCUSDT:{T}", rule, "BTCUSDT", T, "150", "price > 100", "", "",
        created=created, seq=seq,
    )  # fmt: skip


def test_the_alerts_order_goes_on_past_the_last_save_when_every_alert_is_pruned(tmp_path):
    """The seq of the next alert is past the last state save's, not only past the alerts
    left: with every alert pruned, a new alert would otherwise start again at 1, below the
    save, and count as saved already."""
    store = Store(tmp_path / "a.db")
    store.write([seq_alert("a", 1), seq_alert("b", 2)], [], [])
    store.save_engine([], [], (), 3)
    assert store.prune(float("inf")) == 2  # no deliveries: settled
    store.close()
    store = Store(tmp_path / "a.db")
    try:
        assert store.next_seq() == 3
        store.write([seq_alert("c", store.next_seq())], [], [])
        assert store.alerts_since_saved() == (True, [("c", "BTCUSDT", "price > 100", T, "150")])
    finally:
        store.close()


def test_a_database_whose_last_save_went_by_wall_clock_is_read_as_it_was_written(tmp_path):
    """A database of the version before: alerts without a seq, the last save as a wall-clock
    time. It opens (the columns are added) and an alert it stored after that save still
    counts, as does every alert stored since, whatever its time."""
    db = sqlite3.connect(tmp_path / "a.db")
    db.executescript(
        "CREATE TABLE alerts (id TEXT PRIMARY KEY, rule TEXT NOT NULL, symbol TEXT NOT NULL,"
        " time INTEGER NOT NULL, price TEXT NOT NULL, condition TEXT NOT NULL,"
        " text TEXT NOT NULL, html TEXT NOT NULL, gap INTEGER NOT NULL DEFAULT 0,"
        " created REAL NOT NULL);"
        "CREATE TABLE state_saved (id INTEGER PRIMARY KEY CHECK (id = 1), alerts REAL NOT NULL);"
        "INSERT INTO state_saved VALUES (1, 2000.0);"
    )
    for rule, created in (("before", 1000.0), ("after", 3000.0)):
        db.execute(
            "INSERT INTO alerts VALUES (?, ?, 'BTCUSDT', ?, '150', 'price > 100', '', '', 0, ?)",
            (f"{rule}:BTCUSDT:{T}", rule, T, created),
        )
    db.commit()
    db.close()
    store = Store(tmp_path / "a.db")
    try:
        store.write([seq_alert("new", store.next_seq(), created=500.0)], [], [])
        recorded, alerts = store.alerts_since_saved()
    finally:
        store.close()
    assert recorded
    assert sorted(a[0] for a in alerts) == ["after", "new"]


def test_a_database_of_an_earlier_version_gets_the_column_of_a_watchs_forum_topic(tmp_path):
    """``watches.topic`` (where a watch made in a forum topic alerts): a database made before
    that column has it added at the start, its watches in no topic, and a new watch keeps its
    topic across a reopen."""
    path = tmp_path / "a.db"
    store = Store(path)
    old = store.add_watch(WatchRow(0, -100, "BTCUSDT", "price > 120", 0, 0.0, False))
    store.db.execute("ALTER TABLE watches DROP COLUMN topic")  # as an earlier version made it
    store.close()
    store = Store(path)
    try:
        new = store.add_watch(WatchRow(0, -100, "ETHUSDT", "price > 1", 0, 0.0, False, topic=7))
        assert [(w.id, w.topic) for w in store.watches()] == [(old, None), (new, 7)]
        assert store.watch_topics() == {new: (-100, 7)}
    finally:
        store.close()


def test_a_database_of_an_earlier_version_gets_the_column_that_keeps_a_revived_watch(tmp_path):
    """Store.revive_watches notes the refused alert in ``watches.revived``: a database made
    before that column has it added at the start, and a revival fills it in."""
    path = tmp_path / "a.db"
    store = Store(path)
    watch = store.add_watch(WatchRow(0, 5, "BTCUSDT", "price > 120", 0, 0.0, True))
    store.db.execute("ALTER TABLE watches DROP COLUMN revived")  # as an earlier version made it
    store.write(
        [AlertRecord(f"w{watch}:BTCUSDT:{T}", f"w{watch}", "BTCUSDT", T, "150", "price > 120",
                     "", "", watch=watch, ends_watch=True)],
        [],
        [],
    )  # fmt: skip
    store.close()
    store = Store(path)
    try:
        (row,) = store.revive_watches([(watch, T)])
        assert (row.id, row.last_fired, row.revived) == (watch, None, T)
    finally:
        store.close()
