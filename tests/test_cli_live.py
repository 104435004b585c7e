"""``alertbot run`` and ``alertbot record`` as a user runs them, against the local fake Binance."""

from __future__ import annotations

import asyncio
import errno
import gzip
import os
import signal
import sqlite3
import sys
import zlib
from pathlib import Path

import orjson
import pytest

from alertbot.store import Store, WatchRow
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram
from tests.fakes.webhook import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
T = 1_772_000_000_000
TOKEN = "123456:TEST-token-0123456789abcdef"


def env_for(fake: FakeBinance, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTBOT_")}
    env.update(
        ALERTBOT_DB=str(db),
        ALERTBOT_BINANCE_WS_URL=fake.ws_url,
        ALERTBOT_BINANCE_REST_URL=fake.rest_url,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def as_from_a_shell() -> None:
    """A child's SIGINT and SIGHUP as a shell at a terminal leaves them (a preexec_fn): a test
    run started under nohup, or as a background job of a script, ignores them, and its
    children would inherit that. alertbot keeps an ignored SIGINT ignored (the nohup
    convention), so the tests that send one, or that watch for the SIGHUP that run ignores
    while it loads the rules, tested the launch instead of the bot."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


async def start(*args: str | Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alertbot.cli",
        *map(str, args),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=as_from_a_shell,
    )


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_prints_an_alert_from_the_live_feed_and_stops_cleanly_on_sigterm(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: btc-100\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
    )
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        proc = await start("run", "--rules", rules, env=env_for(fake, tmp_path / "alertbot.db"))
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.publish([mini_ticker("BTCUSDT", 110.5, T + 2000)])
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert line.decode().startswith(
        "2026-02-25 06:13:22 UTC  btc-100  BTCUSDT price crosses above 100"
    )
    assert "110.5" in line.decode()
    assert code == 0
    assert "stopped: 2 tickers, 1 alert, " in err
    assert "objects kept out of garbage collection after start-up" in err  # its own process
    assert "Traceback" not in err


STOP_NOTE = (
    "console: stdout is closed (nothing reads it), and the console is the only delivery (no "
    "Telegram token, no webhook): stopping; the alerts are stored in the database"
)


async def test_run_started_without_a_stdout_says_so_and_stops_without_waiting(tmp_path):
    """``alertbot run >&-``: Python has no sys.stdout, and the console's thread died on its
    first alert with a traceback, leaving the delivery open (the stop then waited its whole
    grace for it). Now the alert is stored as failed with why, said once; the console being
    its only delivery, the bot stops then, as when a ``| head`` reader leaves (below)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: up\n    symbols: [BTCUSDT]\n    when: price > 100\n")
    db = tmp_path / "alertbot.db"
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "alertbot.cli", "run",
            "--rules", str(rules), cwd=ROOT, env=env_for(fake, db),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 110, T)])

            def state() -> list[tuple[str, str | None]]:
                with sqlite3.connect(db) as con:
                    return con.execute("SELECT state, last_error FROM deliveries").fetchall()

            _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)  # no signal sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = err_bytes.decode()
    assert proc.returncode == 0, err
    assert state() == [("failed", "console: stdout is closed")]
    (note,) = [line for line in err.splitlines() if "stdout is closed" in line]
    assert note.endswith(STOP_NOTE)
    assert "Traceback" not in err
    assert "deliveries open" not in err


async def _run_piped(rules: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int]:
    """``alertbot run`` with stdout a pipe (buffered, as a user's): the process and the pipe's
    read end."""
    read, write = os.pipe()
    env = dict(env)
    env.pop("PYTHONUNBUFFERED", None)  # as a user runs it: stdout buffered, as a pipe is
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertbot.cli", "run", "--rules", str(rules),
        cwd=ROOT, env=env, stdout=write, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    return proc, read


async def _first_alert_then_close(fake: FakeBinance, read: int) -> bytes:
    """BTCUSDT crosses 100 (90, then 110); what ``head -1`` reads of the pipe, before it
    closes its end and exits."""
    await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
    await fake.publish([mini_ticker("BTCUSDT", 90, T)])
    await fake.publish([mini_ticker("BTCUSDT", 110, T + 1000)])
    first = await asyncio.to_thread(os.read, read, 4096)
    os.close(read)
    return first


def _deliveries(db: Path) -> dict[str, tuple[str, str, str | None]]:
    """Each delivery by its rule: destination, state, last error."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT alert_id, destination, state, last_error FROM deliveries")
        return {r[0].split(":")[0]: (r[1], r[2], r[3]) for r in rows}


async def test_run_whose_stdout_reader_left_stops_when_the_console_is_its_only_delivery(
    tmp_path,
):
    """``alertbot run | head -1`` in the quick-start mode (no Telegram, no webhook): once head
    has its line, nothing would ever be delivered again, yet the bot ran on for ever and the
    pipeline never returned. Now the first alert that finds stdout gone stops it as SIGTERM
    does: that alert is stored (failed, saying why), one line on stderr says why it stops,
    the summary follows, exit 0, with no signal sent."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        + "".join(
            f"  - id: up{x}\n    symbols: [BTCUSDT]\n    when: price crosses above {x}\n"
            for x in (100, 200)
        )
    )
    db = tmp_path / "alertbot.db"
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        proc, read = await _run_piped(rules, env_for(fake, db))
        try:
            first = await _first_alert_then_close(fake, read)
            await fake.publish([mini_ticker("BTCUSDT", 210, T + 2000)])
            _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)  # no signal sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = err_bytes.decode()
    assert proc.returncode == 0, err
    assert first.startswith(b"2026-02-25 06:13:21 UTC  up100  BTCUSDT price crosses above 100")
    gone = "console: stdout is closed"
    assert _deliveries(db) == {
        "up100": ("console", "sent", None),
        "up200": ("console", "failed", gone),
    }
    notes = [line for line in err.splitlines() if "stdout is closed" in line]
    assert len(notes) == 1, err
    assert notes[0].endswith(f"WARNING alertbot: {STOP_NOTE}")
    assert "stopped: 3 tickers, 2 alerts, " in err
    assert "alert up200 BTCUSDT" in err  # the log still has it
    assert "Traceback" not in err
    assert "Exception ignored" not in err


RUN_ON_NOTE = (
    "console: stdout is closed (nothing reads it): alerts are no longer printed; each is still "
    "stored in the database and logged (alertbot.alerts); the bot runs on for its other "
    "deliveries (Ctrl-C or SIGTERM stops it)"
)


async def test_run_whose_stdout_reader_left_runs_on_while_a_webhook_delivers(tmp_path):
    """``alertbot run | head -1`` with a rule whose alerts go to a webhook: the console's
    alerts are stored (failed, saying why) and logged, not printed; the bot runs on and the
    next alert reaches the webhook. The one warning says why it runs on and how to stop it
    (it said only what became of the console's alerts, and ``| head -1`` seemed to hang)."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, WebhookReceiver() as hook:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            f"channels:\n  desk: {{webhook: {hook.url}}}\n"
            "rules:\n"
            "  - id: up100\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
            "  - id: up200\n    symbols: [BTCUSDT]\n    when: price crosses above 200\n"
            "  - id: hook300\n    symbols: [BTCUSDT]\n    when: price crosses above 300\n"
            "    notify: [desk]\n"
        )
        db = tmp_path / "alertbot.db"
        proc, read = await _run_piped(rules, env_for(fake, db))
        try:
            first = await _first_alert_then_close(fake, read)
            await fake.publish([mini_ticker("BTCUSDT", 210, T + 2000)])
            await fake.wait_for(lambda: _deliveries(db).get("up200", ("", ""))[1] == "failed")
            await fake.publish([mini_ticker("BTCUSDT", 310, T + 3000)])
            await hook.wait_for_deliveries(1, timeout=20)
            assert proc.returncode is None  # runs on
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    err = err_bytes.decode()
    assert proc.returncode == 0, err
    assert first.startswith(b"2026-02-25 06:13:21 UTC  up100  BTCUSDT price crosses above 100")
    assert [d.json["rule"] for d in hook.accepted] == ["hook300"]
    gone = "console: stdout is closed"
    assert _deliveries(db) == {
        "up100": ("console", "sent", None),
        "up200": ("console", "failed", gone),
        "hook300": (f"webhook:{hook.url}", "sent", None),
    }
    notes = [line for line in err.splitlines() if "stdout is closed" in line]
    assert len(notes) == 1, err
    assert notes[0].endswith(f"WARNING alertbot: {RUN_ON_NOTE}")
    assert "Traceback" not in err
    assert "Exception ignored" not in err


async def test_run_whose_stdout_left_stops_once_a_reload_leaves_the_console_its_only_delivery(
    tmp_path,
):
    """``alertbot run | head -1`` running on for a webhook rule after head left: an edit that
    removes the webhook rule leaves the console, which nothing reads, as the only delivery. The
    reload stops the bot as the first alert to find stdout gone would have (it ran on, for ever,
    delivering nothing): one line says why, exit 0, with no stop signal sent."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, WebhookReceiver() as hook:
        rules = tmp_path / "rules.yaml"
        console_rules = (
            "  - id: up100\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
            "  - id: up200\n    symbols: [BTCUSDT]\n    when: price crosses above 200\n"
        )
        rules.write_text(
            f"channels:\n  desk: {{webhook: {hook.url}}}\nrules:\n{console_rules}"
            "  - id: hook300\n    symbols: [BTCUSDT]\n    when: price crosses above 300\n"
            "    notify: [desk]\n"
        )
        db = tmp_path / "alertbot.db"
        proc, read = await _run_piped(rules, env_for(fake, db))
        try:
            await _first_alert_then_close(fake, read)
            await fake.publish([mini_ticker("BTCUSDT", 210, T + 2000)])
            await fake.wait_for(lambda: _deliveries(db).get("up200", ("", ""))[1] == "failed")
            rules.write_text(f"rules:\n{console_rules}")
            proc.send_signal(signal.SIGHUP)
            _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)  # no stop signal
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = err_bytes.decode()
    assert proc.returncode == 0, err
    assert "rules: SIGHUP: reloaded: 0 added, 0 changed, 1 removed, 2 unchanged" in err
    notes = [line for line in err.splitlines() if "stdout is closed" in line]
    assert len(notes) == 2, err
    assert notes[0].endswith(f"WARNING alertbot: {RUN_ON_NOTE}")
    assert notes[1].endswith(
        "WARNING alertbot: console: stdout is closed (nothing reads it), and since the reload "
        "the console is the only delivery (no Telegram token, no webhook): stopping; the alerts "
        "are stored in the database"
    )
    assert "stopped: " in err
    assert "Traceback" not in err


async def test_a_second_run_on_the_same_database_refuses_to_start(tmp_path):
    """Two bots on one database would each resume and attempt every open delivery: every
    alert twice. The second one says why and exits 1; the first runs on."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        env = env_for(fake, tmp_path / "data" / "alertbot.db")
        first = await start("run", "--rules", "rules.example.yaml", env=env)
        try:
            await fake.wait_for_connections(1, timeout=20)
            code, _, err = await finish(await start("run", env=env))
            assert first.returncode is None  # still running
        finally:
            first.send_signal(signal.SIGTERM)
        first_code, _, _ = await finish(first)
    assert code == 1
    assert err == (
        f"alertbot: ALERTBOT_DB: another alertbot is running on {tmp_path}/data/alertbot.db "
        f"(it holds {tmp_path}/data/alertbot.db.lock); two on one database would send every "
        "alert twice\n"
    )
    assert first_code == 0


async def test_a_file_uri_as_the_database_is_refused_as_it_would_escape_the_lock(tmp_path):
    """SQLite opens ``file:PATH`` as PATH, but the one-bot-per-database lock was skipped for a
    URI: a second bot on the same file ran, and every alert went out twice."""
    db = tmp_path / "alertbot.db"
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        first = await start("run", "--rules", "rules.example.yaml", env=env_for(fake, db))
        second = None
        try:
            await fake.wait_for_connections(1, timeout=20)
            uri = {**env_for(fake, db), "ALERTBOT_DB": f"file:{db}?mode=rwc"}
            second = await start("run", env=uri)
            await asyncio.wait_for(second.wait(), 20)
            assert first.returncode is None  # still running
        finally:
            first.send_signal(signal.SIGTERM)
            if second is not None and second.returncode is None:
                second.kill()
        code, _, err = await finish(second)
        first_code, _, _ = await finish(first)
    assert code == 1
    assert err == (
        f"alertbot: ALERTBOT_DB: a file: URI is not supported ('file:{db}?mode=rwc'); give the "
        f"database's path, as in ALERTBOT_DB={db}\n"
    )
    assert first_code == 0


async def test_run_does_not_log_every_run_of_its_scheduled_jobs(tmp_path):
    """APScheduler logs two INFO lines per job run (several jobs every few seconds) and two
    per job added at start: at the default level they are left out of the log."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        env = env_for(fake, tmp_path / "alertbot.db", ALERTBOT_RULES_CHECK="0.1")
        proc = await start("run", "--rules", "rules.example.yaml", env=env)
        try:
            await fake.wait_for_connections(1, timeout=20)  # started (the all-market stream)
            await asyncio.sleep(0.5)  # the rule-file check ran a few times
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0
    assert "alertbot.feed: feed connection 1: open" in err  # the log is on
    assert "apscheduler" not in err  # neither the runs nor the jobs added at start


async def test_run_with_a_bad_setting_names_the_variable_and_exits_1(tmp_path):
    async with FakeBinance() as fake:
        proc = await start(
            "run",
            "--rules",
            "rules.example.yaml",
            env=env_for(fake, tmp_path / "alertbot.db", ALERTBOT_FEED_STREAM="some"),
        )
        code, _, err = await finish(proc)
    assert code == 1
    assert "ALERTBOT_FEED_STREAM: expected one of auto, all, symbols, got 'some'" in err
    assert "Traceback" not in err
    assert not fake.stats.attempts  # nothing was started


async def test_run_rejects_bad_rule_files_before_connecting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    symbols: [BTCUSDT]\n    when: price >> 1\n")
    async with FakeBinance() as fake:
        code, _, err = await finish(
            await start("run", "--rules", bad, env=env_for(fake, tmp_path / "alertbot.db"))
        )
    assert code == 1
    assert err.startswith(f"{bad}:4:")
    assert not fake.stats.attempts


async def test_run_reads_every_file_of_rules_given_twice(tmp_path):
    """``run --rules bad.yaml --rules good.yaml`` reads both: the bad one stops the start, as
    it does in ``--rules bad.yaml good.yaml``, rather than being dropped unsaid."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    symbols: [BTCUSDT]\n    when: price >> 1\n")
    async with FakeBinance() as fake:
        proc = await start(
            "run",
            "--rules",
            bad,
            "--rules",
            "rules.example.yaml",
            env=env_for(fake, tmp_path / "alertbot.db"),
        )
        try:
            code, _, err = await finish(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 1
    assert err.startswith(f"{bad}:4:")
    assert not fake.stats.attempts


@pytest.mark.parametrize("twice", [False, True])
async def test_record_takes_streams_given_with_streams_twice(tmp_path, twice):
    out = tmp_path / "out.jsonl"
    streams = (
        ["--streams", "BTCUSDT", "--streams", "ETHUSDT"]
        if twice
        else ["--streams", "BTCUSDT", "ETHUSDT"]
    )
    async with FakeBinance() as fake:
        proc = await start("record", "--out", out, *streams, env=env_for(fake, tmp_path / "db"))
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"}, 10)
        finally:
            proc.send_signal(signal.SIGTERM)
            code, _, err = await finish(proc)
    assert code == 0, err


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
async def test_record_writes_each_message_as_received_one_per_line(tmp_path, name):
    out = tmp_path / name
    async with FakeBinance() as fake:
        proc = await start(
            "record",
            "--out",
            out,
            "--streams",
            "BTCUSDT",
            "ethusdt@miniTicker",
            env=env_for(fake, tmp_path / "alertbot.db"),
        )
        await fake.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"}, 20)
        sent = [
            [mini_ticker("BTCUSDT", 70_000 + i, T + i * 1000), mini_ticker("ETHUSDT", 3000, T + i)]
            for i in range(5)
        ]
        for tickers in sent:
            await fake.publish(tickers)
        await fake.wait_for(lambda: all(c.frames_out >= 10 for c in fake.connections))
        await asyncio.sleep(0.2)  # let the recorder read the last frames
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    opener = gzip.open if name.endswith(".gz") else open
    with opener(out, "rb") as fh:
        lines = fh.read().splitlines()
    expected = [
        {"stream": f"{t['s'].lower()}@miniTicker", "data": t} for tickers in sent for t in tickers
    ]
    assert [orjson.loads(line) for line in lines] == expected
    assert f"recorded 10 messages to {out}" in err


def lines_on_disk(path: Path) -> list[bytes]:
    """The whole lines a recording being written has on disk now (a gzip one has no end yet)."""
    data = path.read_bytes() if path.exists() else b""
    if path.suffix == ".gz":
        data = zlib.decompressobj(wbits=31).decompress(data)  # as far as it goes, no error
    return data.split(b"\n")[:-1]


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
async def test_record_has_what_it_received_on_disk_within_a_second_so_a_sigkill_keeps_it(
    tmp_path, name
):
    out = tmp_path / name
    async with FakeBinance() as fake:
        proc = await start(
            "record", "--out", out, "--streams", "BTCUSDT", env=env_for(fake, tmp_path / "db")
        )
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
            sent = [mini_ticker("BTCUSDT", 70_000 + i, T + i * 1000) for i in range(3)]
            for ticker in sent:
                await fake.publish([ticker])
            await fake.wait_for(lambda: len(lines_on_disk(out)) == 3, timeout=3)
        finally:
            proc.kill()  # no shutdown, no close: only what is on disk stays
            await proc.wait()
    expected = [{"stream": "btcusdt@miniTicker", "data": t} for t in sent]
    assert [orjson.loads(line) for line in lines_on_disk(out)] == expected


@pytest.mark.parametrize("name", ["/dev/stdout", "-"])
async def test_record_to_a_pipe_keeps_recording_past_the_fsync_a_pipe_refuses(tmp_path, name):
    """Each second's flush is followed by an fsync (a power cut), which a pipe refuses
    (``--out /dev/stdout``, or ``-``, which is stdout as for most commands, not a file of that
    name): that is no write error, and the recording goes on."""
    async with FakeBinance() as fake:
        proc = await start(
            "record",
            "--out",
            name,
            "--streams",
            "BTCUSDT",
            env=env_for(fake, tmp_path / "db"),
        )
        assert proc.stdout is not None
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
        sent = [mini_ticker("BTCUSDT", 70_000 + i, T + i * 1000) for i in range(2)]
        got = []
        for ticker in sent:  # one flush (and fsync) for each
            await fake.publish([ticker])
            got.append(await asyncio.wait_for(proc.stdout.readline(), 5))
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    assert [orjson.loads(line) for line in got] == [
        {"stream": "btcusdt@miniTicker", "data": t} for t in sent
    ]
    assert f"recorded 2 messages to {'stdout' if name == '-' else name}" in err
    assert not (ROOT / "-").exists()


async def test_record_stops_cleanly_on_sighup_as_when_its_terminal_is_closed(tmp_path):
    """SIGHUP's default action would end it with a gzip file cut off; it closes the file whole
    and says what it recorded, as on Ctrl-C."""
    out = tmp_path / "out.jsonl.gz"
    async with FakeBinance() as fake:
        proc = await start(
            "record", "--out", out, "--streams", "BTCUSDT", env=env_for(fake, tmp_path / "db")
        )
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
        await fake.publish([mini_ticker("BTCUSDT", 70_000, T)])
        await fake.wait_for(lambda: fake.connections[0].frames_out >= 1)
        await asyncio.sleep(0.2)  # let the recorder read it
        proc.send_signal(signal.SIGHUP)
        code, _, err = await finish(proc)
    assert code == 0, err
    assert f"recorded 1 message to {out}" in err
    with gzip.open(out, "rb") as fh:  # whole: its end is there
        (line,) = fh.read().splitlines()
    assert orjson.loads(line)["data"]["E"] == T


async def test_record_stopped_by_two_signals_at_once_still_closes_its_file_whole(tmp_path):
    """systemd sends SIGTERM and at once SIGHUP (SendSIGHUP=yes); ``timeout`` and a process
    group's kill send a signal twice. Signals that arrive together are one request to stop, not
    a second one that ends the process at once with the gzip file cut off."""
    out = tmp_path / "out.jsonl.gz"
    async with FakeBinance() as fake:
        proc = await start(
            "record", "--out", out, "--streams", "BTCUSDT", env=env_for(fake, tmp_path / "db")
        )
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
        await fake.publish([mini_ticker("BTCUSDT", 70_000, T)])
        await fake.wait_for(lambda: fake.connections[0].frames_out >= 1)
        await asyncio.sleep(0.2)  # let the recorder read it
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGHUP)
        code, _, err = await finish(proc)
    assert code == 0, err
    assert "again" not in err
    assert "recorded 1 message to" in err
    with gzip.open(out, "rb") as fh:  # whole: its end is there
        (line,) = fh.read().splitlines()
    assert orjson.loads(line)["data"]["E"] == T


async def test_a_second_signal_while_record_stops_says_what_the_recording_keeps(tmp_path):
    """A person's second Ctrl-C during a slow stop (the exchange late to answer the close) ends
    ``record`` at once, saying what that means for the recording: not run's words about
    deliveries, which ``record`` has none of."""
    out = tmp_path / "out.jsonl"
    async with FakeBinance() as fake:
        proc = await start(
            "record", "--out", out, "--streams", "BTCUSDT", env=env_for(fake, tmp_path / "db")
        )
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
        fake.lag(1.5)  # its close frame comes 1.5 s late: the stop waits for it
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        seen = []
        while not seen or "SIGINT: stopping" not in seen[-1]:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "".join(seen)
            seen.append(line)
        await asyncio.sleep(0.3)  # a person's second request
        proc.send_signal(signal.SIGINT)
        code, _, err = await finish(proc)
    assert code == 128 + signal.SIGINT, "".join(seen) + err
    assert (
        "SIGINT again: stopping at once; the recording keeps what was put on disk, not its end"
    ) in err
    assert "deliveries" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("symbols", [1, 300], ids=["at-the-flush", "at-the-write"])
async def test_record_on_a_full_disk_stops_without_claiming_it_recorded(tmp_path, symbols):
    """A write that fails (a full disk) stops ``record`` with exit 1 and the reason, whether it
    fails when the second's data is flushed or at once (a frame bigger than the write buffer,
    as the whole market's are), and its closing line does not say "recorded N messages to
    FILE" first, as if they were in the file."""
    names = [f"S{i}USDT" for i in range(symbols)]
    async with FakeBinance() as fake:
        proc = await start("record", "--out", "/dev/full", env=env_for(fake, tmp_path / "db"))
        await fake.wait_for_connections(1, timeout=20)
        await fake.publish([mini_ticker(name, 70_000, T) for name in names])
        code, _, err = await finish(proc)  # stops on its own
    assert code == 1, err
    assert "recorded" not in err
    assert err.endswith(
        "alertbot record: cannot write /dev/full: No space left on device (stopped: what was "
        "not on disk by then is lost)\n"
    )


async def test_record_stops_after_its_duration_with_the_whole_market_by_default(tmp_path):
    out = tmp_path / "all.jsonl"
    async with FakeBinance() as fake:
        proc = await start(
            "record",
            "--out",
            out,
            "--duration",
            "1500ms",
            env=env_for(fake, tmp_path / "alertbot.db"),
        )
        await fake.wait_for_subscriptions({"!miniTicker@arr"}, 20)
        await fake.publish([mini_ticker("BTCUSDT", 1, T), mini_ticker("ETHUSDT", 2, T)])
        code, _, err = await finish(proc)
    assert code == 0, err
    (line,) = out.read_bytes().splitlines()
    assert [t["s"] for t in orjson.loads(line)] == ["BTCUSDT", "ETHUSDT"]
    assert "recorded 1 message to" in err


async def test_record_reads_the_feed_settings_from_the_config_file_run_uses(tmp_path):
    """``--config``: the exchange's URLs come from the bot's settings file, not only from the
    environment (which has none of them here)."""
    out = tmp_path / "configured.jsonl"
    async with FakeBinance() as fake:
        config = tmp_path / "alertbot.env"
        config.write_text(
            f"ALERTBOT_BINANCE_WS_URL={fake.ws_url}\nALERTBOT_BINANCE_REST_URL={fake.rest_url}\n"
        )
        env = env_for(fake, tmp_path / "alertbot.db")
        del env["ALERTBOT_BINANCE_WS_URL"], env["ALERTBOT_BINANCE_REST_URL"]
        proc = await start(
            "record", "--out", out, "--duration", "1500ms", "--config", config, env=env
        )
        await fake.wait_for_subscriptions({"!miniTicker@arr"}, 20)
        await fake.publish([mini_ticker("BTCUSDT", 1, T)])
        code, _, err = await finish(proc)
    assert code == 0, err
    (line,) = out.read_bytes().splitlines()
    assert [t["s"] for t in orjson.loads(line)] == ["BTCUSDT"]


async def test_record_warns_of_a_misspelt_setting_in_the_environment(tmp_path):
    """ALERTBOT_MARKT is no setting: record says so in its log, naming the one meant, as
    ``run`` does, and records all the same."""
    out = tmp_path / "typo.jsonl"
    async with FakeBinance() as fake:
        env = env_for(fake, tmp_path / "alertbot.db", ALERTBOT_MARKT="coinm")
        proc = await start("record", "--out", out, "--duration", "1500ms", env=env)
        await fake.wait_for_subscriptions({"!miniTicker@arr"}, 20)
        await fake.publish([mini_ticker("BTCUSDT", 1, T)])
        code, _, err = await finish(proc)
    assert code == 0, err
    assert (
        "WARNING alertbot: environment: unknown setting ALERTBOT_MARKT "
        "(did you mean ALERTBOT_MARKET?); ignored"
    ) in err
    assert len(out.read_bytes().splitlines()) == 1


async def test_record_keeps_each_message_once_across_24h_rotations(tmp_path):
    """Make-before-break: the old and the new socket both deliver during a rotation's overlap;
    the recording has every published frame exactly once, in order."""
    out = tmp_path / "rotating.jsonl"
    async with FakeBinance() as fake:
        proc = await start(
            "record",
            "--out",
            out,
            env=env_for(fake, tmp_path / "alertbot.db", ALERTBOT_FEED_MAX_AGE="250ms"),
        )
        await fake.wait_for_subscriptions({"!miniTicker@arr"}, 20)
        sent = []
        i = 0
        while len(fake.closed) < 3:  # three rotations, each with an overlap
            i += 1
            frame = [
                mini_ticker("BTCUSDT", 70_000 + i, T + i * 1000),
                mini_ticker("ETHUSDT", 3000, T + i),
            ]
            await fake.publish(frame)
            sent.append(frame)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # let the recorder read the last frames
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == sent
    assert f"recorded {len(sent)} messages to {out} (" in err
    assert "repeated by a second socket, skipped)" in err


@pytest.mark.parametrize("stream", ["btc/usdt", "btcusdt@kline_1m"])
async def test_record_refuses_a_stream_it_cannot_record_before_connecting(tmp_path, stream):
    async with FakeBinance() as fake:
        code, _, err = await finish(
            await start(
                "record",
                "--out",
                tmp_path / "x.jsonl",
                "--streams",
                "BTCUSDT",
                stream,
                env=env_for(fake, tmp_path / "alertbot.db"),
            )
        )
    assert code == 1
    assert err == (
        f"alertbot record: not a mini-ticker stream: {stream!r} (accepted: a symbol such as "
        "BTCUSDT, <symbol>@miniTicker such as btcusdt@miniTicker, or !miniTicker@arr)\n"
    )
    assert not fake.stats.attempts
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("duration", ["0", "0s", "0ms", "", " "])
async def test_record_refuses_a_duration_of_nothing_before_connecting(tmp_path, duration):
    """``--duration 0`` (read by many tools as "no limit") recorded nothing and exited 0, as did
    an empty one (a script's unset variable) after recording for ever: both are refused,
    saying how to record until stopped, and no file is made."""
    out = tmp_path / "x.jsonl"
    async with FakeBinance() as fake:
        code, _, err = await finish(
            await start(
                "record", "--out", out, "--duration", duration, env=env_for(fake, tmp_path / "db")
            )
        )
    assert code == 1
    assert err == (
        f"alertbot record: --duration: expected a duration longer than 0 like 90s or 1h30m, "
        f"got {duration!r} (leave --duration out to record until Ctrl-C)\n"
    )
    assert not fake.stats.attempts
    assert not out.exists()


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("missing-dir/x.jsonl", "No such file or directory"),
        (".", "Is a directory"),
        ("rules.example.yaml/x.jsonl", "Not a directory"),
    ],
)
async def test_record_to_a_place_it_cannot_write_says_why_once_before_connecting(
    tmp_path, out, why
):
    async with FakeBinance() as fake:
        proc = await start("record", "--out", out, env=env_for(fake, tmp_path / "db"))
        code, _, err = await finish(proc)
    assert code == 1
    assert err == f"alertbot record: cannot write {out}: {why}\n"
    assert not fake.stats.attempts


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
async def test_record_refuses_to_overwrite_a_recording_without_force(tmp_path, name):
    """``--out`` naming a file that has something in it (last week's recording) emptied it at
    once, unsaid: refused before connecting, exit 2 with the usage and how to overwrite it,
    and the file is left as it was."""
    out = tmp_path / name
    out.write_bytes(b"last week's recording\n")
    async with FakeBinance() as fake:
        env = env_for(fake, tmp_path / "db")
        proc = await start("record", "--out", out, "--duration", "1s", env=env)
        code, _, err = await finish(proc)
    assert code == 2
    assert err.startswith("usage: alertbot record")
    assert err.endswith(
        f"alertbot record: error: --out {out}: the file exists (22 bytes); give --force to "
        "overwrite it\n"
    )
    assert not fake.stats.attempts
    assert out.read_bytes() == b"last week's recording\n"


async def test_record_with_force_overwrites_and_an_empty_file_needs_none(tmp_path):
    """``--force`` replaces an existing recording; an empty file (``mktemp``'s) holds nothing
    to lose and is written without it."""
    forced, empty = tmp_path / "forced.jsonl", tmp_path / "empty.jsonl"
    forced.write_bytes(b"old\n")
    empty.touch()
    for out, extra in ((forced, ["--force"]), (empty, [])):
        async with FakeBinance(symbols=["BTCUSDT"]) as fake:
            env = env_for(fake, tmp_path / "db")
            proc = await start("record", "--out", out, *extra, "--streams", "BTCUSDT", env=env)
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
            await fake.publish([mini_ticker("BTCUSDT", 70_000, T)])
            await fake.wait_for(lambda f=fake: f.connections[0].frames_out >= 1)
            await asyncio.sleep(0.2)  # let the recorder read it
            proc.send_signal(signal.SIGTERM)
            code, _, err = await finish(proc)
        assert code == 0, err
        (line,) = out.read_bytes().splitlines()
        assert orjson.loads(line)["data"]["E"] == T


async def _past_its_check(fifo: Path, proc: asyncio.subprocess.Process) -> int:
    """The write end of ``fifo``, once ``proc`` has opened it to read its settings: by then
    ``record`` has checked ``--out`` and not yet opened it (the settings come in between)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + 20
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: no reader yet
            if exc.errno != errno.ENXIO or proc.returncode is not None or loop.time() > until:
                raise
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
async def test_record_leaves_a_file_written_after_its_check_as_it_is(tmp_path, name):
    """``record`` checked that --out held nothing, read its settings (here a FIFO, as
    ``--config <(...)`` gives), then opened --out truncating it: a recording written in
    between was emptied. The file is now checked again as it is opened, in one step: what it
    holds is left as it is, and the command says so (exit 2, as for the first check)."""
    out = tmp_path / name
    fifo = tmp_path / "settings.env"
    os.mkfifo(fifo)
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        env = env_for(fake, tmp_path / "db")
        proc = await start("record", "--out", out, "--config", fifo, "--duration", "1s", env=env)
        try:
            write = await _past_its_check(fifo, proc)
        except BaseException:
            proc.kill()
            raise
        out.write_bytes(b"another recording\n")  # made by something else meanwhile
        os.write(write, b"ALERTBOT_LOG_LEVEL=info\n")
        os.close(write)
        code, _, err = await finish(proc)
    assert code == 2, err
    assert err == (
        f"alertbot record: --out {out}: the file exists (18 bytes, written since record "
        "started); give --force to overwrite it\n"
    )
    assert out.read_bytes() == b"another recording\n"
    assert not fake.stats.attempts


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
@pytest.mark.parametrize("force", [[], ["--force"]])
async def test_a_second_record_to_the_file_another_is_writing_is_refused(tmp_path, name, force):
    """Two ``record`` runs to one --out: the second found it empty (the first had nothing to
    write yet), took it as the empty file it may reuse, and both wrote over each other. Now
    the file is the first one's while it runs: the second is refused (``--force`` or not,
    which is for an earlier recording) and the first's recording is whole."""
    out = tmp_path / name
    async with FakeBinance(symbols=["BTCUSDT", "ETHUSDT"]) as fake:
        env = env_for(fake, tmp_path / "db")
        first = await start("record", "--out", out, "--streams", "BTCUSDT", env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, 20)
            second = await start(
                "record", "--out", out, *force, "--streams", "ETHUSDT", "--duration", "2s",
                env=env,
            )  # fmt: skip
            code, _, err = await finish(second)
            await fake.publish([mini_ticker("BTCUSDT", 70_000, T), mini_ticker("ETHUSDT", 1, T)])
            await fake.wait_for(lambda: len(lines_on_disk(out)) == 1, timeout=3)
        finally:
            first.send_signal(signal.SIGTERM)
        first_code, _, first_err = await finish(first)
    assert code == 1, err
    assert err == f"alertbot record: cannot write {out}: another alertbot record is writing to it\n"
    assert first_code == 0, first_err
    assert "recorded 1 message" in first_err
    assert fake.stats.attempts == 1  # the second never connected
    expected = {"stream": "btcusdt@miniTicker", "data": mini_ticker("BTCUSDT", 70_000, T)}
    assert [orjson.loads(line) for line in lines_on_disk(out)] == [expected]


async def test_record_warns_of_a_symbol_the_exchange_does_not_list(tmp_path):
    """Binance takes a stream of a symbol it does not list and then sends nothing on it: a
    typo recorded nothing, for as long as it ran, without a word. As ``run`` does for rules,
    ``record`` says so, with a did-you-mean, and records the rest."""
    out = tmp_path / "out.jsonl"
    async with FakeBinance(symbols=["BTCUSDT", "ETHUSDT"]) as fake:
        proc = await start(
            "record",
            "--out",
            out,
            "--streams",
            "ETHUSDT",
            "BTCUSTD",
            "!miniTicker@arr",
            env=env_for(fake, tmp_path / "db"),
        )
        await fake.wait_for_subscriptions({"ethusdt@miniTicker"}, 20)
        await asyncio.sleep(1)  # exchangeInfo asked and answered (the fake answers at once)
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    seen = [line + "\n" for line in err.splitlines() if "does not list" in line]
    assert len(seen) == 1, err
    assert seen[-1].endswith(
        "WARNING alertbot: the exchange does not list BTCUSTD (did you mean BTCUSDT?): its "
        "stream stays silent\n"
    )
    assert "ETHUSDT" not in "".join(seen)


async def test_record_exits_1_naming_the_streams_when_the_exchange_refuses_every_one(tmp_path):
    """Nothing could ever be recorded: it stops at once with the exchange's reasons, instead of
    running (for ever, without --duration) on an empty file."""
    async with FakeBinance() as fake:  # the fake refuses a symbol with "_"
        proc = await start(
            "record",
            "--out",
            tmp_path / "x.jsonl",
            "--streams",
            "bad_@miniTicker",
            "worse_@miniTicker",
            env=env_for(fake, tmp_path / "alertbot.db"),
        )
        code, _, err = await finish(proc)
    assert code == 1, err
    assert err.endswith(
        "alertbot record: the exchange refused every stream asked for "
        "(bad_@miniTicker: Invalid request: invalid stream name 'bad_@miniTicker'; "
        "worse_@miniTicker: Invalid request: invalid stream name 'worse_@miniTicker')\n"
    )
    assert "recorded 0 messages" in err
    assert fake.stats.attempts == 2  # the stream URL refused, then live SUBSCRIBEs on one socket


async def test_alerts_pending_at_a_sigkill_are_delivered_after_the_restart(tmp_path):
    """SIGKILL while Telegram is down: the alert is in the outbox, and goes out after restart."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: btc-100\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
    )
    db = tmp_path / "alertbot.db"
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            db,
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_ADMIN_CHATS="42",
        )
        tg.down(502)  # Telegram answers nothing but 502, getMe included
        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1000)])
            await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 1, timeout=20)
        finally:
            proc.kill()  # SIGKILL: no shutdown, no flush
        await proc.wait()
        assert tg.messages == []
        tg.recover()
        again = await start("run", "--rules", rules, env=env)
        try:
            await tg.wait_for_messages(1, timeout=20)
        finally:
            again.send_signal(signal.SIGTERM)
        code, _, err = await finish(again)
    (m,) = tg.messages
    assert m.chat_id == 42
    assert m.text.startswith("BTCUSDT price crosses above 100: price 110")
    assert "resuming 1 undelivered" in err
    assert code == 0


async def test_a_telegram_outage_answered_with_an_html_page_logs_one_line_per_chat(tmp_path):
    """Telegram's front end answering 502 with its HTML page, not JSON: each chat's failure is
    one warning line with the error cut short, not also an ERROR with a traceback from
    python-telegram-bot at every attempt."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: btc-100\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
    )
    chats = (42, 43, 44)
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            tmp_path / "alertbot.db",
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_ADMIN_CHATS=",".join(map(str, chats)),
            ALERTBOT_SHUTDOWN_GRACE="0.1",
        )
        tg.down(502, page=True)

        def tried_twice() -> bool:
            sent = [r.params.get("chat_id") for r in tg.calls("sendMessage")]
            return all(sent.count(chat) >= 2 for chat in chats)

        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 90, T)])
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1000)])
            await tg.wait_for(tried_twice, timeout=20)  # each chat's first failure is logged
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0
    assert "Traceback" not in err
    assert "Can not load invalid JSON" not in err
    for chat in chats:
        (line,) = [x for x in err.splitlines() if f"telegram: chat {chat}: " in x]
        assert "NetworkError: Bad Gateway (502). Parsing the server response b'<html>" in line
        assert "…; retrying in " in line  # cut short


async def test_an_alert_stored_before_a_sigkill_is_not_repeated_after_the_restart(tmp_path):
    """The alert is stored at once, the engine's state every 5 s: killed in between, the bot
    restarted with the state of before the alert, and a level still true fired again, inside
    its 1 h cooldown. The alerts stored since the last save now count as fired. A second
    rule, true only after the restart, shows when the tick has been evaluated."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: btc-100\n    symbols: [BTCUSDT]\n    when: price > 100\n    cooldown: 1h\n"
        "  - id: probe\n    symbols: [BTCUSDT]\n    when: price > 150.5\n"
    )
    db = tmp_path / "alertbot.db"
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        env = env_for(fake, db)
        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 150, T)])
            assert proc.stdout is not None
            first = await asyncio.wait_for(proc.stdout.readline(), 20)  # stored, then printed
        finally:
            proc.kill()  # SIGKILL: no shutdown, no state saved since the start
        await proc.wait()
        conn = sqlite3.connect(db)
        try:  # as the crash left it: the alert without the state that records it
            assert conn.execute("SELECT time FROM alerts").fetchall() == [(T,)]
            assert conn.execute("SELECT * FROM pair_states").fetchall() == []
        finally:
            conn.close()
        again = await start("run", "--rules", rules, env=env)
        lines: list[str] = []
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 151, T + 2_000)])  # still above 100
            assert again.stdout is not None
            while not any("  probe  " in line for line in lines):
                lines.append((await asyncio.wait_for(again.stdout.readline(), 20)).decode())
        finally:
            again.send_signal(signal.SIGTERM)
        code, _, err = await finish(again)
    assert "btc-100  BTCUSDT price > 100: price 150" in first.decode()
    # btc-100 fired 2 s before, its cooldown is 1 h (its first alert may be printed again:
    # the console's delivery of it was not recorded, and delivery is at least once)
    assert not [line for line in lines if "btc-100" in line and "price 151" in line]
    assert code == 0
    assert "stopped: 1 ticker, 1 alert, " in err
    assert "1 rule state saved before its last alert" in err


async def test_telegram_behind_an_html_error_page_at_start_is_logged_cut_short(tmp_path):
    """Telegram's front end answers with its HTML error page from the start: the token
    check's warning and the chat poller's (it cannot start) quote the error cut to 200
    characters, never the whole page."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            tmp_path / "alertbot.db",
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_SHUTDOWN_GRACE="0.1",
        )
        tg.down(502, page=True)
        proc = await start("run", "--rules", "rules.example.yaml", env=env)
        assert proc.stderr is not None
        seen: list[str] = []
        try:
            while not seen or "chat: cannot start polling" not in seen[-1]:
                line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
                assert line, "".join(seen)  # the process ended first
                seen.append(line)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    lines = [x for x in seen if "Bad Gateway (502). Parsing the server response b'<html>" in x]
    assert [x.split(": ", 1)[1].split(" (", 1)[0] for x in lines] == [
        "telegram: not reachable at start-up",
        "chat: cannot start polling",
    ]
    for line in lines:
        assert "…); " in line  # cut short
        assert "</html>" not in line


async def test_the_bot_token_never_appears_in_the_log(tmp_path):
    """httpx logs request URLs, and Telegram's contain the token: every line is redacted."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            tmp_path / "alertbot.db",
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_ADMIN_CHATS="42",
            ALERTBOT_LOG_LEVEL="DEBUG",  # httpx and PTB at their most talkative
        )
        proc = await start("run", "--rules", "rules.example.yaml", env=env)
        try:
            await fake.wait_for_subscriptions({"!miniTicker@arr"}, timeout=20)
            await tg.wait_for(lambda: len(tg.calls("getMe")) >= 1, timeout=20)
            await asyncio.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, out, err = await finish(proc)
    assert code == 0
    assert "HTTP Request" in err  # httpx did log its request lines
    assert "/bot[redacted]/getMe" in err
    assert TOKEN not in err + out
    assert TOKEN.split(":")[1] not in err + out


async def one_alert_to(
    hook: WebhookReceiver, fake: FakeBinance, rules: Path, env: dict[str, str]
) -> tuple[int, str, str]:
    """``alertbot run --rules RULES``: BTCUSDT at 150 once subscribed, stopped (SIGTERM) once
    ``hook`` took an alert (2xx) and httpx could log the request; its exit code, out, err."""
    proc = await start("run", "--rules", rules, env=env)
    try:
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
        await fake.publish([mini_ticker("BTCUSDT", 150, 1_772_000_000_000)])
        await hook.wait_for_deliveries(1, timeout=20)
        await asyncio.sleep(0.3)  # httpx logs the request once answered
    finally:
        proc.send_signal(signal.SIGTERM)
    return await finish(proc)


async def test_a_webhook_urls_password_never_appears_in_the_log(tmp_path):
    """httpx logs each request's URL, with its user and password: at DEBUG the POST line of
    http://alice:PASSWORD@host/hook showed the password; it is redacted like the token."""
    password = "pw-6fJq2xR9"
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: up\n    symbols: [BTCUSDT]\n    when: price > 100\n")
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, WebhookReceiver() as hook:
        url = hook.url.replace("http://", f"http://alice:{password}@")
        env = env_for(
            fake, tmp_path / "alertbot.db", ALERTBOT_WEBHOOK_URL=url, ALERTBOT_LOG_LEVEL="DEBUG"
        )
        code, out, err = await one_alert_to(hook, fake, rules, env)
    assert code == 0
    assert "HTTP Request: POST http://alice[redacted]127.0.0.1" in err
    assert password not in err + out


async def test_a_channel_posts_signed_to_the_url_its_webhook_env_holds(tmp_path):
    """A rule file's channel ``{webhook_env: VAR, secret_env: VAR2}``: the URL stays out of
    the file, the alert is posted there, signed with the secret, and the URL's token never
    shows in the log, at DEBUG either."""
    token = "Zk8-Qw_3rTyUiOpAsDfGhJkL"
    path = f"/api/webhooks/1234567890123456789/{token}"
    secret = "desk-secret-0123456789"
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "channels:\n  discord: {webhook_env: DESK_URL, secret_env: DESK_SECRET}\n"
        "rules:\n  - id: up\n    symbols: [BTCUSDT]\n    when: price > 100\n"
        "    notify: [discord]\n"
    )
    async with (
        FakeBinance(symbols=["BTCUSDT"]) as fake,
        WebhookReceiver(secret=secret, path=path) as hook,
    ):
        env = env_for(
            fake,
            tmp_path / "alertbot.db",
            DESK_URL=hook.url,
            DESK_SECRET=secret,
            ALERTBOT_LOG_LEVEL="DEBUG",
        )
        code, out, err = await one_alert_to(hook, fake, rules, env)
    assert code == 0
    (delivery,) = hook.deliveries
    assert (delivery.status, delivery.path, delivery.signature_ok) == (200, path, True)
    assert f"HTTP Request: POST {hook.base_url}/api/webhooks/1234567890123456789/***" in err
    assert token not in err + out


async def test_a_channel_of_format_slack_gets_a_slack_message(tmp_path):
    """A rule file's channel ``{webhook: URL, format: slack}`` (a Slack-compatible receiver
    that the host does not tell): the POST is Slack's incoming-webhook message, the alert's
    text with &, < and > escaped, not alertbot's JSON (which such a receiver refuses)."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, WebhookReceiver() as hook:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            f"channels:\n  mm: {{webhook: '{hook.url}', format: slack}}\n"
            "rules:\n  - id: up\n    symbols: [BTCUSDT]\n    when: price > 100\n"
            "    notify: [mm]\n    message: '{symbol} > 100 & rising: {price}'\n"
        )
        env = env_for(fake, tmp_path / "alertbot.db")
        code, _out, err = await one_alert_to(hook, fake, rules, env)
    assert code == 0, err
    (delivery,) = hook.deliveries
    assert delivery.json == {"text": "BTCUSDT &gt; 100 &amp; rising: 150", "mrkdwn": False}


async def test_a_webhook_url_that_is_its_own_credential_never_appears_in_the_log(tmp_path):
    """A Slack-style webhook URL is the credential (its last segment), and a rule file's
    channel is not among the settings' secrets: at DEBUG, httpx's POST line and alertbot's
    retry warning show that segment as ***."""
    token = "Xq3vB8nPz2LmWk7RtY5sJd9e"
    path = f"/services/T0AB12CDE/B0FG34HIJ/{token}"
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, WebhookReceiver(path=path) as hook:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            f"channels:\n  slack: {{webhook: '{hook.url}'}}\n"
            "rules:\n  - id: up\n    symbols: [BTCUSDT]\n    when: price > 100\n"
            "    notify: [slack]\n"
        )
        hook.respond_with(500)  # one failure first: alertbot's own retry line names the URL
        env = env_for(fake, tmp_path / "alertbot.db", ALERTBOT_LOG_LEVEL="DEBUG")
        code, out, err = await one_alert_to(hook, fake, rules, env)
    assert code == 0
    assert [d.status for d in hook.deliveries] == [500, 200]
    shown = f"{hook.base_url}/services/T0AB12CDE/B0FG34HIJ/***"
    assert f"HTTP Request: POST {shown}" in err
    assert f"webhook {shown}: HTTP 500" in err
    assert token not in err + out


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "ALERTBOT_HTTP_PORT",
            "eighty",
            "ALERTBOT_HTTP_PORT: expected a port from 1 to 65535, got 'eighty'",
        ),
        (
            "ALERTBOT_HTTP_PORT",
            "70000",
            "ALERTBOT_HTTP_PORT: expected a port from 1 to 65535, got 70000",
        ),
        ("ALERTBOT_HTTP_PORT", "0", "ALERTBOT_HTTP_PORT: expected a port from 1 to 65535, got 0"),
        # not "must be at least 0", which 0 is not either
        ("ALERTBOT_HTTP_PORT", "-1", "ALERTBOT_HTTP_PORT: expected a port from 1 to 65535, got -1"),
        (
            "ALERTBOT_LOG_LEVEL",
            "verbose",
            "ALERTBOT_LOG_LEVEL: expected one of debug, info, warning, error, got 'verbose'",
        ),
    ],
)
async def test_a_bad_setting_is_refused_at_start_naming_the_variable(
    tmp_path, name, value, message
):
    """Before anything is done: no connection, and not even the database's directory and
    lock made (a bad ALERTBOT_LOG_LEVEL was read only after them)."""
    async with FakeBinance() as fake:
        env = env_for(fake, tmp_path / "data" / "alertbot.db", **{name: value})
        code, _, err = await finish(await start("run", "--rules", "rules.example.yaml", env=env))
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert not fake.stats.attempts
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [("ALERTBOT_LOG_LEVEL", "verbose"), ("ALERTBOT_LOG_FORMAT", "xml")],
)
async def test_record_with_a_bad_setting_makes_no_file(tmp_path, name, value):
    out = tmp_path / "out.jsonl"
    async with FakeBinance() as fake:
        env = env_for(fake, tmp_path / "db", **{name: value})
        code, _, err = await finish(await start("record", "--out", out, env=env))
    assert code == 1
    assert err.startswith(f"alertbot: {name}: expected one of ")
    assert not fake.stats.attempts
    assert not out.exists()


def _field(status: Path, name: str) -> str:
    """A field of a Linux /proc/PID/status file."""
    for line in status.read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise KeyError(name)


async def sighup_ignored(pid: int) -> None:
    """Return once process ``pid`` ignores SIGHUP: ``alertbot run`` does from just before it
    reads the rule files until its event loop handles the signal."""
    status = Path(f"/proc/{pid}/status")
    while not int(_field(status, "SigIgn"), 16) & 1 << (signal.SIGHUP - 1):
        await asyncio.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
async def test_a_sighup_while_the_rules_load_does_not_end_the_bot(tmp_path):
    """SIGHUP's default action ends a process: until the event loop handles it (a reload),
    it is ignored, also while a large rule file is still being read."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        + "".join(
            f"  - id: r{i}\n    symbols: [BTCUSDT]\n    when: price > {i + 1}\n"
            for i in range(20_000)
        )
    )
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        proc = await start("run", "--rules", rules, env=env_for(fake, tmp_path / "alertbot.db"))
        await asyncio.wait_for(sighup_ignored(proc.pid), 30)  # the rules are loading
        proc.send_signal(signal.SIGHUP)
        await fake.wait_for_connections(1, timeout=60)  # it lived on and went online
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err


async def test_record_logs_in_the_format_and_level_of_its_config_file(tmp_path):
    """``record --config`` takes ALERTBOT_LOG_FORMAT and ALERTBOT_LOG_LEVEL from the file, as
    ``run`` does: every stderr line one JSON object, the closing summary too."""
    out = tmp_path / "all.jsonl"
    config = tmp_path / "alertbot.env"
    config.write_text("ALERTBOT_LOG_FORMAT=json\nALERTBOT_LOG_LEVEL=debug\n")
    async with FakeBinance() as fake:
        proc = await start(
            "record",
            "--out",
            out,
            "--duration",
            "1500ms",
            "--config",
            config,
            env=env_for(fake, tmp_path / "alertbot.db"),
        )
        await fake.wait_for_subscriptions({"!miniTicker@arr"}, 20)
        await fake.publish([mini_ticker("BTCUSDT", 1, T)])
        code, _, err = await finish(proc)
    assert code == 0, err
    records = [orjson.loads(line) for line in err.splitlines()]
    assert any(r["level"] == "DEBUG" for r in records)  # the file's level, not the default INFO
    assert records[-1]["message"] == f"recorded 1 message to {out}"


async def test_a_once_watch_never_ends_on_disk_without_its_alert(tmp_path):
    """A ``once`` watch that fires ends, and its alert is stored: both or neither, whatever
    stops the bot. The watch's end was its own commit, made while the alert's write could
    still fail (here the disk refuses it: a trigger in the real database); SIGKILLed then,
    the restarted bot had the watch ended and no alert, lost for good. Now both are in one
    transaction: the restarted bot still has the watch, and it fires."""
    db = tmp_path / "alertbot.db"
    store = Store(db)
    store.add_watch(WatchRow(0, 42, "BTCUSDT", "price > 100", 0, 0.0, True))
    store.db.execute(
        "CREATE TRIGGER disk_refuses_alerts BEFORE INSERT ON alerts"
        " BEGIN SELECT RAISE(ABORT, 'injected: the disk refuses the alert'); END"
    )
    store.close()
    rules = tmp_path / "rules.yaml"  # the probe: fires at 151 only, to chat 7 (admin)
    rules.write_text("rules:\n  - id: probe\n    symbols: [BTCUSDT]\n    when: price > 150.5\n")
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            db,
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_ADMIN_CHATS="7",
        )
        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 150, T)])  # the watch fires
            assert proc.stderr is not None
            while b"injected: the disk refuses the alert" not in await asyncio.wait_for(
                proc.stderr.readline(), 20
            ):
                pass
            # until the chat sees the watch gone (as soon as it is ended on disk, before)
            for _ in range(100):
                replies = len(tg.messages_to(42))
                tg.user_says(42, "/list")
                await tg.wait_for(lambda n=replies: len(tg.messages_to(42)) > n, timeout=20)
                if tg.messages_to(42)[-1].text.startswith("No watches here yet"):
                    break
            else:
                raise AssertionError("/list still shows the once watch")
        finally:
            proc.kill()  # SIGKILL: no shutdown, nothing more written
        await proc.wait()
        conn = sqlite3.connect(db)
        try:  # as the crash left it: neither the alert nor the watch's end
            assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
            assert conn.execute("SELECT active, last_fired FROM watches").fetchall() == [(1, None)]
            conn.execute("DROP TRIGGER disk_refuses_alerts")  # the disk is back
            conn.commit()
        finally:
            conn.close()
        again = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await fake.publish([mini_ticker("BTCUSDT", 151, T + 2_000)])
            await tg.wait_for(lambda: bool(tg.messages_to(7)), timeout=20)  # the probe
        finally:
            again.send_signal(signal.SIGTERM)  # open deliveries go out within the grace
        code, _, err = await finish(again)
    alerts = [m.plain_text for m in tg.messages_to(42) if "price > 100" in m.plain_text]
    assert alerts == [
        "BTCUSDT price > 100: price 151 (+0.00% 24h) at 2026-02-25 06:13:22 UTC [w1]\n"
        "That was w1's one alert (once): it has ended. To watch again: "
        "/watch BTCUSDT price > 100 cooldown 0 once"
    ]
    assert code == 0, err
