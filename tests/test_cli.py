"""The command line, run as a user runs it: a subprocess of ``python -m alertbot.cli``."""

from __future__ import annotations

import gzip
import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import orjson
import pytest

from tests.test_cli_live import as_from_a_shell

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def alertbot(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertbot.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env=env,
    )


def tick(symbol: str, time: int, price: str, **extra: object) -> dict[str, object]:
    return {
        "e": "24hrMiniTicker",
        "E": time,
        "s": symbol,
        "c": price,
        "o": "100",
        "h": max(price, "100", key=float),
        "l": min(price, "100", key=float),
        "v": "10",
        "q": "1000",
        **extra,
    }


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - id: up\n"
        "    symbols: [BTCUSDT]\n"
        "    when: price crosses above 105\n"
        '    message: "{symbol} over {threshold} at {price}"\n'
        "  - id: low\n"
        "    symbols: ['*USDT']\n"
        "    when: price < 95\n"
    )
    return path


def write_recording(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


RECORDING = [
    orjson.dumps([tick("BTCUSDT", 1000, "100.0"), tick("ETHUSDT", 1000, "100")]),
    orjson.dumps({"stream": "btcusdt@miniTicker", "data": tick("BTCUSDT", 2000, "106.50")}),
    orjson.dumps([tick("ETHUSDT", 3000, "94.5")]),
]


def test_help_lists_every_command() -> None:
    result = alertbot("--help")
    assert result.returncode == 0
    for command in ("run", "check", "replay", "record"):
        assert command in result.stdout


def test_alertbot_without_a_command_lists_the_commands() -> None:
    """A new user's first try, ``alertbot`` alone: the commands and what each does, not only
    that one is required."""
    result = alertbot()
    assert result.returncode == 2
    for command in ("run", "check", "replay", "record"):
        assert f"    {command} " in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_help_shows_the_recording_first_as_the_command_takes_it() -> None:
    """The usage line is the form that works (README's), not argparse's ``[RECORDING]`` at
    the end, which reads as optional and after the rule files."""
    result = alertbot("replay", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(
        "usage: alertbot replay RECORDING --rules FILE [FILE ...] [--json] [--config FILE]\n"
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("run", ["ALERTBOT_TELEGRAM_TOKEN", "console", "Settings"]),
        ("check", ["FILE:LINE:COL"]),
        ("replay", ["stdout", "stderr"]),
        ("record", ["Ctrl-C", "replay"]),
    ],
)
def test_each_commands_help_says_what_it_does_and_where_to_read_more(
    command: str, says: list[str]
) -> None:
    """``alertbot COMMAND --help`` describes the command, not only its options: run says where
    its settings come from and that without a token the alerts go to the console."""
    result = alertbot(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for word in says:
        assert word in text, (word, result.stdout)


@pytest.mark.parametrize(
    ("args", "usage", "hint"),
    [
        (
            ["run", "rules.example.yaml"],
            "usage: alertbot run ",
            "alertbot run: error: unrecognized arguments: rules.example.yaml (rule files go "
            "after --rules: alertbot run --rules FILE ...)",
        ),
        (
            ["check", "--rules", "rules.example.yaml"],
            "usage: alertbot check ",
            "alertbot check: error: unrecognized arguments: --rules (check takes the rule "
            "files themselves: alertbot check FILE ...)",
        ),
        (
            ["record", "--out", "x.jsonl", "1h"],
            "usage: alertbot record ",
            "alertbot record: error: unrecognized arguments: 1h",
        ),
    ],
)
def test_a_word_a_command_does_not_take_gets_its_usage_and_the_form_that_works(
    args: list[str], usage: str, hint: str
) -> None:
    """``alertbot run rules.yaml`` (``--rules`` forgotten) is a new user's likely first slip:
    the error shows run's usage, not the bare command's, and where rule files go."""
    result = alertbot(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(usage)
    assert result.stderr.endswith(hint + "\n")


def test_the_command_line_module_loads_nothing_heavy_before_main_runs() -> None:
    """Until main() runs, a Ctrl-C is a KeyboardInterrupt traceback: what the commands need
    (asyncio, YAML, the engine, JSON) is loaded by them, inside main(), where it is caught."""
    heavy = ("asyncio", "yaml", "orjson", "alertbot.rules.engine", "alertbot.rules.loader")
    code = f"import sys, alertbot.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


#: runs alertbot/cli.py as ``python -m alertbot.cli ARGS`` does, saying on fd {fd} when its
#: first line is next (Python's start-up, finding the module and compiling it are behind)
_CLI_NEXT = (
    "import importlib.util, os, sys\n"
    "spec = importlib.util.find_spec('alertbot.cli')\n"
    "code = spec.loader.get_code('alertbot.cli')\n"
    "scope = dict(__name__='__main__', __file__=spec.origin, __spec__=spec, "
    "__package__='alertbot', __builtins__=__builtins__)\n"
    "os.write({fd}, b'up')\n"
    "os.close({fd})\n"
    "exec(code, scope)\n"
)


def test_a_ctrl_c_while_a_command_imports_is_acted_on_once_the_imports_are_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt raised inside an extension module's initialisation crashed the
    process (orjson's, SIGSEGV: the test above, about 1 run in 2) or was swallowed by
    importlib: the modules a command needs are imported with SIGINT held back, and it is then
    a KeyboardInterrupt (exit 130). With SIGINT ignored (a background job), it stays ignored."""
    from alertbot import cli

    (tmp_path / "interrupted_on_import.py").write_text(
        "import signal\nsignal.raise_signal(signal.SIGINT)\ndone = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._COMMAND_MODULES, "probe", ("interrupted_on_import",))
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        cli._import_for("probe")
    assert sys.modules["interrupted_on_import"].done  # imported whole, then interrupted
    assert signal.getsignal(signal.SIGINT) is before
    del sys.modules["interrupted_on_import"]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cli._import_for("probe")  # no KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, before)
        sys.modules.pop("interrupted_on_import", None)


@pytest.mark.parametrize("delay", [0.005, 0.02, 0.1, 0.2])
def test_ctrl_c_in_the_first_moments_exits_130_without_a_traceback(
    tmp_path: Path, delay: float
) -> None:
    """A Ctrl-C right after Enter (the wrong file, a typo seen too late) ends the command
    quietly, exit 130, as later: not with a traceback through the imports.

    The delay counts from when cli.py's first line is next (the child says so on a pipe), not
    from the spawn: Python's own start-up and the compiling of cli.py, which no code of ours
    can guard, take longer than the delay on a loaded machine, and a fixed delay from the
    spawn tested those instead (and missed cli.py's own imports, which showed a traceback)."""
    rules = tmp_path / "many.yaml"
    rules.write_text(
        "rules:\n"
        + "".join(
            f"  - id: r{i}\n    symbols: [BTCUSDT]\n    when: price > {i}\n" for i in range(40_000)
        )
    )
    up, child_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLI_NEXT.format(fd=child_end), "check", str(rules)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            pass_fds=(child_end,),
            preexec_fn=as_from_a_shell,
        )
    finally:
        os.close(child_end)
    try:
        assert os.read(up, 2) == b"up"
    finally:
        os.close(up)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == ""


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["run", "--config", "a.env", "--config", "b.env"], "--config"),
        (
            ["replay", "rec.jsonl", "--rules", "r.yaml", "--config", "a.env", "--config=b.env"],
            "--config",
        ),
        (["record", "--out", "a.jsonl", "--out", "b.jsonl", "--duration", "1s"], "--out"),
        (["record", "--out", "a.jsonl", "--duration", "1m", "--duration", "1s"], "--duration"),
    ],
)
def test_an_option_that_takes_one_value_given_twice_is_refused(
    tmp_path: Path, args: list[str], option: str
) -> None:
    """argparse keeps the last: ``--config base.env --config local.env`` read local.env alone,
    as if the settings were layered, and the first file was ignored without a word."""
    dead = {"ALERTBOT_BINANCE_WS_URL": "ws://127.0.0.1:9", "ALERTBOT_DB": str(tmp_path / "db")}
    result = alertbot(*args, cwd=tmp_path, env={**os.environ, **dead})
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: alertbot {args[0]} ")
    assert f"argument {option}: given twice; give it once" in result.stderr


def test_run_rejects_bad_rule_files_before_anything_else() -> None:
    result = alertbot("run", "--rules", DATA / "bad" / "bad-condition.yaml")
    assert result.returncode == 1
    assert "bad-condition.yaml:" in result.stderr


def test_check_accepts_the_example_rules() -> None:
    result = alertbot("check", "rules.example.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_reports_every_problem_with_its_place_and_exits_1() -> None:
    bad = DATA / "bad" / "three-mistakes.yaml"
    result = alertbot("check", bad)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert "Traceback" not in result.stderr


def test_check_of_a_missing_file_is_a_clear_error() -> None:
    result = alertbot("check", "no-such-file.yaml")
    assert result.returncode == 1
    assert result.stderr.startswith("no-such-file.yaml:1:1:")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_check_of_a_utf16_file_says_so_and_how_to_save_it(tmp_path: Path, encoding: str) -> None:
    """Windows Notepad's "Unicode" is UTF-16 (with its byte-order mark): "not UTF-8 text" alone
    leaves a user staring at a file that looks right in the editor."""
    rules = tmp_path / "rules.yaml"
    text = (ROOT / "rules.example.yaml").read_text()
    bom = "" if encoding == "utf-16" else "\ufeff"  # utf-16 writes its own
    rules.write_bytes((bom + text).encode(encoding))
    result = alertbot("check", rules)
    assert result.returncode == 1
    assert result.stderr == (
        f"{rules}:1:1: not UTF-8 text: UTF-16 (what Windows Notepad calls Unicode); save it "
        "as UTF-8\n"
    )


SIGNED_CHANNEL = (
    "channels:\n"
    "  desk: {webhook: 'https://example.com/hook', secret_env: ALERTBOT_TEST_DESK_SECRET}\n"
    "rules:\n"
    "  - id: up\n"
    "    symbols: [BTCUSDT]\n"
    "    when: price > 100\n"
    "    notify: [desk]\n"
)


def env_without(*names: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(more)
    return env


def test_check_warns_of_a_channel_secret_that_is_not_set_here(tmp_path: Path) -> None:
    """It may be set where the bot runs, so only a warning; the counts say 1 rule, 1 channel."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(SIGNED_CHANNEL)
    result = alertbot("check", rules, env=env_without("ALERTBOT_TEST_DESK_SECRET"))
    assert result.returncode == 0
    assert result.stdout == f"{rules}: 1 rule, 1 channel, OK\n"
    assert (
        f"{rules}: warning: channel 'desk': its secret_env ALERTBOT_TEST_DESK_SECRET is not set"
    ) in result.stderr
    signed = alertbot("check", rules, env=env_without(ALERTBOT_TEST_DESK_SECRET="s" * 32))
    assert signed.stderr == ""


def run_without(tmp_path: Path, rules: Path, name: str) -> subprocess.CompletedProcess[str]:
    """``alertbot run --rules RULES`` with the variable ``name`` unset (and an exchange that
    is not there: it must stop before it would connect)."""
    env = env_without(
        name, ALERTBOT_BINANCE_WS_URL="ws://127.0.0.1:9", ALERTBOT_DB=str(tmp_path / "a.db")
    )
    return alertbot("run", "--rules", rules, env=env)


def test_run_refuses_to_start_when_a_channel_secret_is_not_set(tmp_path: Path) -> None:
    """Its webhook would get unsigned requests, which a checking receiver refuses for good."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(SIGNED_CHANNEL)
    result = run_without(tmp_path, rules, "ALERTBOT_TEST_DESK_SECRET")
    assert result.returncode == 1
    assert (
        "alertbot: channel 'desk': its secret_env ALERTBOT_TEST_DESK_SECRET is not set"
    ) in result.stderr


def test_run_refuses_to_start_when_a_channels_url_variable_is_not_set(tmp_path: Path) -> None:
    """A ``webhook_env`` channel without its variable has nowhere to post: every alert to it
    would be lost. ``check`` warns (it may be set where the bot runs); ``run`` refuses."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        SIGNED_CHANNEL.replace(
            "webhook: 'https://example.com/hook', secret_env: ALERTBOT_TEST_DESK_SECRET",
            "webhook_env: ALERTBOT_TEST_DESK_URL",
        )
    )
    problem = (
        "channel 'desk': its webhook_env ALERTBOT_TEST_DESK_URL is not set in the environment "
        "(nor ALERTBOT_TEST_DESK_URL_FILE)"
    )
    checked = alertbot("check", rules, env=env_without("ALERTBOT_TEST_DESK_URL"))
    assert (checked.returncode, checked.stdout) == (0, f"{rules}: 1 rule, 1 channel, OK\n")
    assert f"{rules}: warning: {problem}" in checked.stderr
    result = run_without(tmp_path, rules, "ALERTBOT_TEST_DESK_URL")
    assert result.returncode == 1
    assert f"alertbot: {problem}" in result.stderr


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
def test_replay_prints_alerts_in_firing_order(tmp_path: Path, rules_file: Path, name: str) -> None:
    recording = write_recording(tmp_path / name, RECORDING)
    result = alertbot("replay", recording, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "up  BTCUSDT over 105 at 106.50" in lines[0]
    assert "low  ETHUSDT price < 95" in lines[1]
    assert "replayed 3 messages, 4 tickers, 2 alerts" in result.stderr


@pytest.mark.parametrize("name", ["rec.jsonl", "rec", "rec.gzip"])
def test_replay_reads_a_gzip_recording_by_its_content_whatever_its_name(
    tmp_path: Path, rules_file: Path, name: str
) -> None:
    recording = tmp_path / name
    recording.write_bytes(gzip.compress(b"\n".join(RECORDING) + b"\n"))
    result = alertbot("replay", recording, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == "replayed 3 messages, 4 tickers, 2 alerts\n"


@pytest.mark.skipif(not Path("/dev/stdin").exists(), reason="reads a pipe as /dev/stdin")
@pytest.mark.parametrize("compressed", [False, True], ids=["text", "gzip"])
@pytest.mark.parametrize("name", ["/dev/stdin", "-"])
def test_replay_reads_a_recording_from_a_pipe_gzip_or_not(
    rules_file: Path, compressed: bool, name: str
) -> None:
    """A pipe (``replay <(ssh host cat rec.gz)``) can be read once: telling gzip from text
    must not take its first bytes away. ``-`` is stdin, as for most commands (not a file of
    that name)."""
    data = b"\n".join(RECORDING) + b"\n"
    result = subprocess.run(
        [sys.executable, "-m", "alertbot.cli", "replay", name, "--rules", rules_file],
        input=gzip.compress(data) if compressed else data,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == b"replayed 3 messages, 4 tickers, 2 alerts\n"


def test_replay_json_gives_one_object_per_alert_with_the_stable_fields(
    tmp_path: Path, rules_file: Path
) -> None:
    recording = write_recording(tmp_path / "rec.jsonl", RECORDING)
    result = alertbot("replay", recording, "--rules", rules_file, "--json")
    assert result.returncode == 0, result.stderr
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert alerts == [
        {
            "rule": "up",
            "symbol": "BTCUSDT",
            "time": 2000,
            "price": "106.50",
            "condition": "price crosses above 105",
            "message": "BTCUSDT over 105 at 106.50",
        },
        {
            "rule": "low",
            "symbol": "ETHUSDT",
            "time": 3000,
            "price": "94.5",
            "condition": "price < 95",
            "message": alerts[1]["message"],
        },
    ]
    assert "ETHUSDT price < 95: price 94.5" in alerts[1]["message"]


def test_replay_skips_a_corrupt_line_naming_it_and_goes_on(
    tmp_path: Path, rules_file: Path
) -> None:
    lines = [RECORDING[0], b'[{"e":"24hrMiniTicker", "E": 15', RECORDING[1], RECORDING[2]]
    recording = write_recording(tmp_path / "rec.jsonl", lines)
    result = alertbot("replay", recording, "--rules", rules_file, "--json")
    assert result.returncode == 0
    assert f"{recording}:2: corrupt line skipped" in result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "1 corrupt line skipped" in result.stderr


def test_replay_reads_a_line_whose_one_ticker_is_not_utf8_without_that_ticker(
    tmp_path: Path, rules_file: Path
) -> None:
    """A line that is whole but for a byte that is no UTF-8 in one ticker is no corrupt line:
    its other tickers are replayed, and that one is counted as a malformed ticker."""
    line = orjson.dumps([tick("ETH#USDT", 2000, "90"), tick("BTCUSDT", 2000, "106.50")])
    lines = [RECORDING[0], line.replace(b"#", b"\xff"), RECORDING[2]]
    recording = write_recording(tmp_path / "rec.jsonl", lines)
    result = alertbot("replay", recording, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # BTCUSDT over 105 at 2000, ETHUSDT at 3000
    assert "BTCUSDT over 105 at 106.50" in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "replayed 3 messages, 4 tickers, 2 alerts, 1 malformed ticker skipped"
    )


def test_replay_names_the_first_corrupt_lines_and_counts_the_rest(
    tmp_path: Path, rules_file: Path
) -> None:
    """A recording damaged over thousands of lines (a flipped bit in a gzip stream) gives a
    screenful that shows the problem, not a line per corrupt line that buries the summary."""
    lines = [RECORDING[0], *[b'{"e": oops'] * 500, RECORDING[1], RECORDING[2]]
    recording = write_recording(tmp_path / "rec.jsonl", lines)
    result = alertbot("replay", recording, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # the good lines are replayed
    err = result.stderr.splitlines()
    named = [line for line in err if "corrupt line skipped" in line]
    assert named == [
        f"{recording}:{n}: corrupt line skipped: {named[0].split(': ', 2)[2]}" for n in range(2, 12)
    ]
    assert f"{recording}: more corrupt lines follow; not shown one by one" in err
    assert err[-1] == "replayed 503 messages, 4 tickers, 2 alerts, 500 corrupt lines skipped"
    assert len(err) == 12


@pytest.mark.parametrize("gz", [False, True])
def test_replay_of_a_file_that_is_no_recording_says_so_and_exits_1(
    tmp_path: Path, rules_file: Path, gz: bool
) -> None:
    """The rule file given as the recording (the arguments swapped), or any file none of whose
    lines is a JSON message: an error, not a successful replay of 0 alerts."""
    recording = rules_file
    if gz:
        recording = tmp_path / "rules.yaml.gz"
        recording.write_bytes(gzip.compress(rules_file.read_bytes()))
    result = alertbot("replay", recording, "--rules", rules_file)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"alertbot replay: {recording} is not a recording: no line of it is a JSON message "
        "(the recording comes first: alertbot replay RECORDING --rules FILE ...)\n"
    )
    assert "Traceback" not in result.stderr


def test_replay_counts_malformed_tickers_and_skips_them(tmp_path: Path, rules_file: Path) -> None:
    lines = [*RECORDING, orjson.dumps([{**tick("BTCUSDT", 4000, "1"), "c": "abc"}, "junk"])]
    recording = write_recording(tmp_path / "rec.jsonl", lines)
    result = alertbot("replay", recording, "--rules", rules_file)
    assert result.returncode == 0
    assert "2 malformed tickers skipped" in result.stderr


def test_replay_s_summary_says_one_of_each_in_the_singular(
    tmp_path: Path, rules_file: Path
) -> None:
    """Every count of the summary agrees with its number: "1 alert", not "1 alerts"."""
    lines = [
        orjson.dumps([tick("ETHUSDT", 1000, "94.5"), {**tick("BTCUSDT", 1000, "1"), "c": "x"}]),
        b"{not json",
    ]
    result = alertbot(
        "replay", write_recording(tmp_path / "rec.jsonl", lines), "--rules", rules_file
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "replayed 2 messages, 1 ticker, 1 alert, 1 malformed ticker skipped, 1 corrupt line skipped"
    )


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz", "REC.JSONL"])
def test_replay_takes_a_recording_named_after_the_rule_files(
    tmp_path: Path, rules_file: Path, name: str
) -> None:
    """``--rules`` takes every name after it; a last one named as a recording is the recording."""
    recording = write_recording(tmp_path / name, RECORDING)
    result = alertbot("replay", "--rules", rules_file, recording)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "replayed 3 messages, 4 tickers, 2 alerts" in result.stderr


def test_replay_takes_rules_given_with_rules_twice(tmp_path: Path, rules_file: Path) -> None:
    """``--rules a.yaml --rules b.yaml`` loads both: argparse's last-one-wins dropped a.yaml's
    rules without a word."""
    other = tmp_path / "other.yaml"
    other.write_text("rules:\n  - id: eth-low\n    symbols: [ETHUSDT]\n    when: price < 99\n")
    recording = write_recording(tmp_path / "rec.jsonl", RECORDING)
    both = alertbot("replay", recording, "--rules", other, "--rules", rules_file)
    assert both.returncode == 0, both.stderr
    assert "replayed 3 messages, 4 tickers, 3 alerts" in both.stderr
    fired = {line.split()[3] for line in both.stdout.splitlines()}
    assert fired == {"eth-low", "up", "low"}


def test_replay_without_a_recording_says_where_it_goes(tmp_path: Path, rules_file: Path) -> None:
    """A last name that is no recording's stays a rule file, and the error shows the form."""
    recording = write_recording(tmp_path / "rec", RECORDING)
    result = alertbot("replay", "--rules", rules_file, recording)
    assert result.returncode == 2
    assert "alertbot replay RECORDING --rules FILE ..." in result.stderr
    # the usage shown is replay's, as for its other mistakes, not the bare command's
    assert result.stderr.startswith("usage: alertbot replay RECORDING --rules FILE")
    assert "Traceback" not in result.stderr


def test_replay_reads_the_market_alertbot_market_names(tmp_path: Path) -> None:
    """A COIN-M recording's elements carry st 2: replayed as USD-M they are skipped, and the
    summary says so and names the setting; with ALERTBOT_MARKET=coinm they fire."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: up\n    symbols: [BTCUSD_PERP]\n    when: price > 105\n")
    lines = [orjson.dumps([tick("BTCUSD_PERP", t, p, st=2)]) for t, p in ((1, "100"), (2, "106"))]
    recording = write_recording(tmp_path / "coin.jsonl", lines)
    usdm = alertbot("replay", recording, "--rules", rules, env=env_without("ALERTBOT_MARKET"))
    assert usdm.stdout == ""
    assert "2 tickers of another market skipped (ALERTBOT_MARKET is usdm)" in usdm.stderr
    coinm = alertbot(
        "replay", recording, "--rules", rules, env=env_without(ALERTBOT_MARKET="coinm")
    )
    assert coinm.returncode == 0, coinm.stderr
    assert "up" in coinm.stdout
    assert coinm.stderr == "replayed 2 messages, 2 tickers, 1 alert\n"


def test_replay_reads_the_market_from_the_config_file_run_uses(tmp_path: Path) -> None:
    """``--config`` as for ``run``: its ALERTBOT_MARKET=coinm replays a COIN-M recording as
    such, and the environment still overrides the file."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: up\n    symbols: [BTCUSD_PERP]\n    when: price > 105\n")
    lines = [orjson.dumps([tick("BTCUSD_PERP", t, p, st=2)]) for t, p in ((1, "100"), (2, "106"))]
    recording = write_recording(tmp_path / "coin.jsonl", lines)
    config = tmp_path / "alertbot.env"
    config.write_text("# the bot's settings\nALERTBOT_MARKET=coinm\n")
    args = ("replay", recording, "--rules", rules, "--config", config)
    coinm = alertbot(*args, env=env_without("ALERTBOT_MARKET"))
    assert coinm.returncode == 0, coinm.stderr
    assert coinm.stderr == "replayed 2 messages, 2 tickers, 1 alert\n"
    usdm = alertbot(*args, env=env_without(ALERTBOT_MARKET="usdm"))
    assert usdm.stdout == ""
    assert "2 tickers of another market skipped (ALERTBOT_MARKET is usdm)" in usdm.stderr


def test_replay_warns_of_a_misspelt_setting_in_the_environment(tmp_path: Path) -> None:
    """ALERTBOT_MARKT=coinm is no setting: replay says so (naming the one meant) and replays
    with the settings there are, as ``run`` and ``record`` do."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: up\n    symbols: [BTCUSDT]\n    when: price > 105\n")
    lines = [orjson.dumps([tick("BTCUSDT", t, p)]) for t, p in ((1, "100"), (2, "106"))]
    recording = write_recording(tmp_path / "rec.jsonl", lines)
    env = env_without("ALERTBOT_MARKET", ALERTBOT_MARKT="coinm")
    result = alertbot("replay", recording, "--rules", rules, env=env)
    assert result.returncode == 0, result.stderr
    assert "up" in result.stdout
    assert result.stderr == (
        "alertbot replay: warning: environment: unknown setting ALERTBOT_MARKT "
        "(did you mean ALERTBOT_MARKET?); ignored\n"
        "replayed 2 messages, 2 tickers, 1 alert\n"
    )


def test_replay_refuses_a_bad_config_file_naming_its_line(tmp_path: Path, rules_file: Path) -> None:
    recording = write_recording(tmp_path / "rec.jsonl", RECORDING)
    config = tmp_path / "alertbot.env"
    config.write_text("ALERTBOT_MARKET=coinm\nALERTBOT_MARKT=usdm\n")
    result = alertbot("replay", recording, "--rules", rules_file, "--config", config)
    assert result.returncode == 1
    assert f"{config}:2:" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_replay_of_a_missing_recording_says_so_without_a_traceback(rules_file: Path) -> None:
    result = alertbot("replay", "missing.jsonl", "--rules", rules_file)
    assert result.returncode == 1
    # the reason once, as check gives it: no "[Errno 2] ...: 'missing.jsonl'" after the name
    assert (
        result.stderr == "alertbot replay: cannot read missing.jsonl: No such file or directory\n"
    )
    assert "Traceback" not in result.stderr


def test_replay_of_a_cut_off_gzip_replays_every_whole_line_and_warns(
    tmp_path: Path, rules_file: Path
) -> None:
    """A recorder killed mid-write leaves a .gz without its end: what it holds is replayed,
    with a warning naming the file, and the summary; not refused whole."""
    lines = [RECORDING[0], RECORDING[1], *[RECORDING[2]] * 300]  # ETH stays < 95: no more alerts
    good = write_recording(tmp_path / "rec.jsonl.gz", lines)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(good.read_bytes()[:-20])  # the 8-byte trailer and some data
    whole = zlib.decompressobj(wbits=31).decompress(broken.read_bytes()).count(b"\n")
    assert 2 < whole < len(lines)
    result = alertbot("replay", broken, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # both alerts, from the lines before the cut
    assert (
        f"alertbot replay: warning: {broken} is cut off after line {whole} (its end is missing: "
        "was the recorder stopped abruptly?); replayed every whole line before the cut\n"
    ) in result.stderr
    assert result.stderr.endswith(f"replayed {whole} messages, {whole + 1} tickers, 2 alerts\n")
    assert "Traceback" not in result.stderr


def test_replay_of_a_plain_recording_cut_off_mid_line_warns_as_for_a_gzip(
    tmp_path: Path, rules_file: Path
) -> None:
    """A recorder killed mid-write leaves a .jsonl whose last line stops short, without its
    newline: every whole line is replayed and the cut is named as such (as for a .gz), not
    reported as a corrupt line."""
    good = write_recording(tmp_path / "rec.jsonl", RECORDING).read_bytes()
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(good[:-20])  # the last line's end and its newline
    result = alertbot("replay", broken, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1  # the alert of line 2; line 3 is cut
    assert result.stderr == (
        f"alertbot replay: warning: {broken} is cut off after line 2 (its end is missing: "
        "was the recorder stopped abruptly?); replayed every whole line before the cut\n"
        "replayed 2 messages, 3 tickers, 1 alert\n"
    )


def test_replay_of_a_gzip_cut_off_inside_its_header_warns_and_replays_nothing(
    tmp_path: Path, rules_file: Path
) -> None:
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(write_recording(tmp_path / "rec.jsonl.gz", RECORDING).read_bytes()[:5])
    result = alertbot("replay", broken, "--rules", rules_file)
    assert result.returncode == 0, result.stderr
    assert f"{broken} is cut off after line 0" in result.stderr
    assert result.stderr.endswith("replayed 0 messages, 0 tickers, 0 alerts\n")


def test_replay_of_a_corrupt_gzip_reports_and_exits_1(tmp_path: Path, rules_file: Path) -> None:
    """Damage is not a cut: a bad checksum is refused."""
    data = bytearray(write_recording(tmp_path / "rec.jsonl.gz", RECORDING).read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 in the trailer
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(bytes(data))
    result = alertbot("replay", broken, "--rules", rules_file)
    assert result.returncode == 1
    assert f"alertbot replay: cannot read {broken}: CRC check failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_with_bad_rules_changes_nothing_and_exits_1(tmp_path: Path) -> None:
    recording = write_recording(tmp_path / "rec.jsonl", RECORDING)
    result = alertbot("replay", recording, "--rules", DATA / "bad" / "bad-condition.yaml")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "bad-condition.yaml:" in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules.example.yaml"],
        ["replay", "examples/sample.jsonl.gz", "--rules", "rules.example.yaml"],
    ],
    ids=["check", "replay"],
)
def test_output_that_cannot_be_written_is_named_as_such_without_a_traceback(
    args: list[str],
) -> None:
    """``> /dev/full`` (a full disk under a redirect): replay blamed its recording ("cannot read
    examples/sample.jsonl.gz: No space left on device") and check raised a traceback."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "alertbot.cli", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr == f"alertbot {args[0]}: cannot write to stdout: No space left on device\n"


def test_replay_of_the_example_rules_over_the_sample_recording_fires() -> None:
    result = alertbot(
        "replay", "examples/sample.jsonl.gz", "--rules", "rules.example.yaml", "--json"
    )
    assert result.returncode == 0, result.stderr
    fired = {(a["rule"], a["symbol"]) for a in map(orjson.loads, result.stdout.splitlines())}
    assert {("btc-70k", "BTCUSDT"), ("sol-pump", "SOLUSDT"), ("eth-below-3k", "ETHUSDT")} <= fired


@pytest.mark.parametrize("flags", [(), ("--json",)], ids=["text", "json"])
def test_the_readmes_replay_example_is_what_replay_prints(flags: tuple[str, ...]) -> None:
    """The README's 'Try it offline' shows replay's output: a change to the alerts' text must
    change it too (it went stale when a move's alert began to say how far the price went)."""
    command = "$ alertbot replay examples/sample.jsonl.gz --rules rules.example.yaml"
    command = " ".join((command, *flags)) + (" | head -1\n" if flags else "\n")
    readme = (ROOT / "README.md").read_text()
    shown = readme[readme.index(command) + len(command) :].split("```")[0]
    result = alertbot("replay", "examples/sample.jsonl.gz", "--rules", "rules.example.yaml", *flags)
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr
    assert shown == (printed.splitlines(keepends=True)[0] if flags else printed)


def test_replay_is_deterministic(tmp_path: Path) -> None:
    args = ("replay", "examples/sample.jsonl.gz", "--rules", "rules.example.yaml", "--json")
    assert alertbot(*args).stdout == alertbot(*args).stdout


def test_log_lines_keep_logging_s_own_time_format_with_the_clock_text_reused() -> None:
    from alertbot.cli import JsonFormatter, Redact, TextFormatter

    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    ours, stdlib = TextFormatter(fmt), logging.Formatter(fmt)
    json_ours = JsonFormatter()
    redact = Redact(["s3cret"])
    for created in (1_772_000_000.001, 1_772_000_000.999, 1_772_000_001.5, 1_772_000_000.25):
        record = logging.LogRecord(
            "alertbot.alerts", logging.INFO, "", 0, "a %s %s", ("x", 1), None
        )
        record.created, record.msecs = created, (created % 1) * 1000
        plain = logging.LogRecord("alertbot.alerts", logging.INFO, "", 0, "a %s %s", ("x", 1), None)
        plain.created, plain.msecs = record.created, record.msecs
        assert redact.filter(record)
        assert ours.format(record) == stdlib.format(plain)
        body = orjson.loads(json_ours.format(record))
        assert body["message"] == "a x 1"
        assert body["time"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created)))
