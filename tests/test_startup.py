"""``alertbot run`` start-up: it starts cleanly or says why not, before connecting anywhere;
settings from a --config file and secrets from *_FILE; JSON logs."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import orjson
import pytest

from alertbot.chat.watches import ChatSettings
from alertbot.errors import ConfigError
from alertbot.settings import SETTINGS, environment, read_config
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram
from tests.test_cli_live import env_for, finish, start

README = Path(__file__).resolve().parent.parent / "README.md"

TOKEN = "123456:TEST-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ALERTBOT_TELEGRAM_TOKEN": "not-a-token"}, "ALERTBOT_TELEGRAM_TOKEN: not a bot token"),
        ({"ALERTBOT_DB": "/proc/alertbot/a.db"}, "ALERTBOT_DB: cannot use '/proc/alertbot/a.db'"),
        ({"ALERTBOT_LOG_FORMAT": "xml"}, "ALERTBOT_LOG_FORMAT: expected one of text, json"),
        ({"ALERTBOT_ADMIN_CHATS": "ops"}, "ALERTBOT_ADMIN_CHATS: expected chat ids"),
        ({"ALERTBOT_TELEGRAM_TOKEN_FILE": "/nonexistent/token"}, "ALERTBOT_TELEGRAM_TOKEN_FILE"),
        # a huge duration overflowed the scheduler's date arithmetic: a traceback, not a message
        ({"ALERTBOT_HEARTBEAT": "1e20"}, "ALERTBOT_HEARTBEAT: must be at most 366 days"),
        ({"ALERTBOT_RULES_CHECK": "1e15"}, "ALERTBOT_RULES_CHECK: must be at most 366 days"),
        ({"ALERTBOT_WATCH_COOLDOWN": "1e20"}, "ALERTBOT_WATCH_COOLDOWN: must be at most"),
        ({"ALERTBOT_ALERT_RETENTION": "1e20"}, "ALERTBOT_ALERT_RETENTION: must be at most 3660"),
        # an admin message every millisecond
        ({"ALERTBOT_HEARTBEAT": "1ms"}, "ALERTBOT_HEARTBEAT: must be at least 60s"),
        # too short for the poller's stop even to begin
        ({"ALERTBOT_CHAT_STOP_TIMEOUT": "0"}, "ALERTBOT_CHAT_STOP_TIMEOUT: must be at least 0.1s"),
        # a line per failed poll, which the reminder is there to spare the log
        (
            {"ALERTBOT_CHAT_POLL_REMINDER": "5s"},
            "ALERTBOT_CHAT_POLL_REMINDER: must be at least 60s (or 0: no reminder), got '5s'",
        ),
        # an empty answer at the end of the long poll would time out
        ({"ALERTBOT_CHAT_POLL_MARGIN": "0"}, "ALERTBOT_CHAT_POLL_MARGIN: must be at least 1s"),
        ({"ALERTBOT_CHAT_POLL_MARGIN": "ten"}, "ALERTBOT_CHAT_POLL_MARGIN: expected a duration"),
    ],
)
async def test_a_start_up_failure_says_why_and_connects_nowhere(tmp_path, extra, message):
    async with FakeBinance() as fake:
        env = {**env_for(fake, tmp_path / "a.db"), **extra}
        code, _, err = await finish(await start("run", "--rules", "rules.example.yaml", env=env))
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert not fake.stats.attempts


async def test_a_token_telegram_rejects_stops_the_start(tmp_path):
    async with FakeBinance() as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            tmp_path / "a.db",
            ALERTBOT_TELEGRAM_TOKEN="999999:WRONG-token-0123456789abcdef",
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
        )
        code, _, err = await finish(await start("run", env=env))
    assert code == 1
    assert "ALERTBOT_TELEGRAM_TOKEN: Telegram rejected the token" in err
    assert "WRONG-token" not in err
    assert not fake.stats.attempts


async def test_settings_from_a_config_file_and_the_token_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    async with FakeBinance() as fake, FakeTelegram(token=TOKEN) as tg:
        config = tmp_path / "alertbot.env"
        config.write_text(
            "# settings\n"
            f"ALERTBOT_TELEGRAM_API_URL={tg.api_url}\n"
            f'ALERTBOT_TELEGRAM_TOKEN_FILE="{token_file}"\n'
            "ALERTBOT_LOG_FORMAT=json\n"
            "ALERTBOT_LOG_LEVEL=warning\n"  # the closing summary is still there
        )
        env = env_for(fake, tmp_path / "a.db")
        proc = await start("run", "--config", config, env=env)
        try:
            await tg.wait_for(lambda: bool(tg.calls("getMe")), timeout=20)
            await fake.wait_for(lambda: fake.stats.handshakes >= 1, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0
    records = [orjson.loads(line) for line in err.splitlines()]  # every line one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert records[-1]["message"].startswith("stopped: ")  # the closing summary too
    assert TOKEN not in err


SECRET_VALUE = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.mark.parametrize(
    ("var", "via_config"),
    [
        ("ALERTBOT_TELEGRAM_TOKEN_FILE", False),
        ("ALERTBOT_WEBHOOK_SECRET_FILE", False),
        ("ALERTBOT_TELEGRAM_TOKEN_FILE", True),
    ],
    ids=["token-env", "webhook-secret-env", "token-config"],
)
async def test_a_secret_put_in_its_file_variable_is_not_printed(tmp_path, var, via_config):
    """The secret itself given as ``*_FILE`` (no such file): the start fails naming the
    variable, and the value appears nowhere in the output."""
    async with FakeBinance() as fake:
        env = env_for(fake, tmp_path / "a.db")
        args: list[str | Path] = ["run"]
        if via_config:
            config = tmp_path / "alertbot.env"
            config.write_text(f"{var}={SECRET_VALUE}\n")
            args += ["--config", config]
        else:
            env[var] = SECRET_VALUE
        code, out, err = await finish(await start(*args, env=env))
    assert code == 1
    assert f"{var}: does not name a readable file (No such file or directory)" in err
    assert "AAHdq" not in out + err
    assert not fake.stats.attempts


@pytest.mark.parametrize(
    ("var", "text"),
    [("ALERTBOT_TELEGRAM_TOKEN_FILE", ""), ("ALERTBOT_WEBHOOK_SECRET_FILE", "\r\n")],
    ids=["token-empty", "webhook-secret-blank"],
)
async def test_a_secret_file_that_is_empty_stops_the_start(tmp_path, var, text):
    """A ``*_FILE`` naming an empty (or blank) file, such as a secret not mounted yet: the
    start fails naming the variable. Before, the secret counted as unset: a bot without
    Telegram printing alerts to the console, or a webhook's requests sent unsigned (which a
    receiver that checks signatures refuses for good), without a word."""
    secret = tmp_path / "secret"
    secret.write_text(text, newline="")
    async with FakeBinance() as fake:
        env = {**env_for(fake, tmp_path / "a.db"), var: str(secret)}
        code, _, err = await finish(await start("run", "--rules", "rules.example.yaml", env=env))
    assert code == 1
    assert f"{var}: the file {str(secret)!r} is empty" in err
    assert not fake.stats.attempts


def test_a_secret_file_in_the_environment_overrides_the_secret_in_the_config_file(tmp_path):
    """The environment overrides --config, a secret's ``*_FILE`` form too: a container's
    mounted ALERTBOT_WEBHOOK_SECRET_FILE wins over a shared config file's
    ALERTBOT_WEBHOOK_SECRET (which was used instead, the requests signed with it)."""
    config = tmp_path / "alertbot.env"
    config.write_text("ALERTBOT_WEBHOOK_SECRET=from-the-config-file-0123\n")
    secret = tmp_path / "secret"
    secret.write_text("from-the-mounted-file-4567\n")
    env = {"ALERTBOT_WEBHOOK_SECRET_FILE": str(secret)}
    assert environment(env, str(config))["ALERTBOT_WEBHOOK_SECRET"] == "from-the-mounted-file-4567"
    # and the other way round: the environment's value over the config file's *_FILE
    config.write_text(f"ALERTBOT_WEBHOOK_SECRET_FILE={secret}\n")
    env = {"ALERTBOT_WEBHOOK_SECRET": "from-the-environment-89ab"}
    assert environment(env, str(config))["ALERTBOT_WEBHOOK_SECRET"] == "from-the-environment-89ab"


def test_a_byte_order_mark_is_no_part_of_a_secret_file_or_a_config_file(tmp_path):
    """Windows Notepad starts a UTF-8 file with a byte-order mark: a webhook secret read with it
    signed every alert with a key the receiver does not have (refused for good), and a config
    file's first setting was an unknown one."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xef\xbb\xbfs3cret-0123\r\n")
    config = tmp_path / "alertbot.env"
    config.write_bytes(b"\xef\xbb\xbfALERTBOT_FEED_STREAM=all\r\n")
    env = {"ALERTBOT_WEBHOOK_SECRET_FILE": str(secret)}
    merged = environment(env, str(config))
    assert merged["ALERTBOT_WEBHOOK_SECRET"] == "s3cret-0123"
    assert merged["ALERTBOT_FEED_STREAM"] == "all"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ALERTBOT_FEED_STREAM=all\nthis is not a setting\n", "2: expected ALERTBOT_NAME=value"),
        # a typo would otherwise leave the setting at its default without a word
        (
            "ALERTBOT_FEED_STREAM=all\n# a comment\nALERTBOT_HTTP_PROT=8080\n",
            "3: unknown setting ALERTBOT_HTTP_PROT (did you mean ALERTBOT_HTTP_PORT?)",
        ),
    ],
    ids=["malformed-line", "misspelt-setting"],
)
async def test_a_bad_config_file_names_its_line_and_connects_nowhere(tmp_path, text, message):
    config = tmp_path / "bad.env"
    config.write_text(text)
    async with FakeBinance() as fake:
        code, _, err = await finish(
            await start("run", "--config", config, env=env_for(fake, tmp_path / "a.db"))
        )
    assert code == 1
    assert f"{config}:{message}" in err
    assert not fake.stats.attempts


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("missing.env", None, "No such file or directory"),
        ("a-directory", "dir", "Is a directory"),
        # a Latin-1 file (an editor's "ANSI"): where, not Python's codec talk and byte offset
        ("latin1.env", b"ALERTBOT_FEED_STREAM=all\n# caf\xe9\n", "not UTF-8 text (line 2)"),
    ],
)
async def test_a_config_file_that_cannot_be_read_says_why_in_a_few_words(
    tmp_path, name, content, why
):
    config = tmp_path / name
    if content == "dir":
        config.mkdir()
    elif content is not None:
        config.write_bytes(content)
    async with FakeBinance() as fake:
        code, _, err = await finish(
            await start("run", "--config", config, env=env_for(fake, tmp_path / "a.db"))
        )
    assert code == 1
    assert err == f"alertbot: {config}: cannot read the settings file: {why}\n"
    assert not fake.stats.attempts


async def run_until_connected(tmp: Path, **settings: str) -> tuple[int, str]:
    """``alertbot run`` on the example rules with ``settings``, stopped (SIGTERM) once it has
    connected to the fake exchange: its exit code and stderr."""
    async with FakeBinance() as fake:
        env = env_for(fake, tmp / "a.db", **settings)
        proc = await start("run", "--rules", "rules.example.yaml", env=env)
        await fake.wait_for_connections(1, timeout=20)
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    return code, err


async def test_a_heartbeat_that_cannot_be_sent_is_warned_about(tmp_path):
    """It goes to the admin chats over Telegram: without a token it would never be sent, and
    a dead man's switch that never sends looks like one that works."""
    code, err = await run_until_connected(tmp_path, ALERTBOT_HEARTBEAT="1h")
    assert code == 0
    assert (
        "WARNING alertbot: ALERTBOT_HEARTBEAT is set, but the heartbeat goes to the admin chats "
        "over Telegram: set ALERTBOT_TELEGRAM_TOKEN and ALERTBOT_ADMIN_CHATS"
    ) in err


def test_a_malformed_settings_line_is_refused_without_showing_its_value(tmp_path):
    """A token written the docker-compose way ("NAME: value") is refused; the refusal goes to
    stderr before logging (and its redaction) is set up, so it must not repeat the value."""
    config = tmp_path / "bad.env"
    config.write_text(f"# settings\nALERTBOT_TELEGRAM_TOKEN: {TOKEN}\n")
    with pytest.raises(ConfigError) as refused:
        read_config(str(config))
    message = str(refused.value)
    assert message.startswith(f"{config}:2: expected ALERTBOT_NAME=value")
    assert "'ALERTBOT_TELEGRAM_TOKEN'" in message
    assert TOKEN.partition(":")[2] not in message

    config.write_text("# settings\n7f3c9a1e5b2d4c6f8a0b1c2d\n")  # a secret on a line of its own
    with pytest.raises(ConfigError) as refused:
        read_config(str(config))
    assert str(refused.value) == (
        f"{config}:2: expected ALERTBOT_NAME=value, got a line that is not one (the rest of "
        "the line is not shown: it may hold a secret)"
    )


async def test_a_misspelt_setting_in_the_environment_is_warned_about(tmp_path):
    code, err = await run_until_connected(tmp_path, ALERTBOT_FEED_STAL_AFTER="30s")
    assert code == 0
    assert (
        "environment: unknown setting ALERTBOT_FEED_STAL_AFTER "
        "(did you mean ALERTBOT_FEED_STALE_AFTER?); ignored"
    ) in err


def test_the_poll_settings_come_from_the_environment_and_a_config_file(tmp_path):
    """ALERTBOT_CHAT_POLL_REMINDER and ALERTBOT_CHAT_POLL_MARGIN set the chat poller's
    reminder and margin, as durations, from the environment or a config file (a name the
    file does not know is refused); unset, 1h and 10s; a reminder of 0 is none."""
    assert (ChatSettings().poll_reminder, ChatSettings().poll_margin) == (3600.0, 10.0)
    defaults = ChatSettings.from_env({})
    assert (defaults.poll_reminder, defaults.poll_margin) == (3600.0, 10.0)
    config = tmp_path / "alertbot.env"
    config.write_text("ALERTBOT_CHAT_POLL_REMINDER=10m\nALERTBOT_CHAT_POLL_MARGIN=2s\n")
    chat = ChatSettings.from_env(environment({}, str(config)))
    assert (chat.poll_reminder, chat.poll_margin) == (600.0, 2.0)
    chat = ChatSettings.from_env(environment({"ALERTBOT_CHAT_POLL_REMINDER": "0"}, str(config)))
    assert (chat.poll_reminder, chat.poll_margin) == (0.0, 2.0)


def test_the_readme_documents_exactly_the_settings_there_are():
    table = re.findall(r"^\| `(ALERTBOT_[A-Z_]+)` \|", README.read_text(), re.MULTILINE)
    assert len(table) == len(set(table))
    assert set(table) == {s for s in SETTINGS if not s.endswith("_FILE")}


async def test_sigterm_drains_open_deliveries_within_the_grace(tmp_path):
    """A slow Telegram answer in flight at SIGTERM is waited for, not cut off."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: b\n    symbols: [BTCUSDT]\n    when: price > 100\n")
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        env = env_for(
            fake,
            tmp_path / "a.db",
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_ADMIN_CHATS="42",
            ALERTBOT_SHUTDOWN_GRACE="5s",
        )
        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await tg.wait_for(lambda: bool(tg.calls("getMe")), timeout=20)
            tg.delay(1.0)  # the answer to the alert's sendMessage comes a second late
            await fake.publish([mini_ticker("BTCUSDT", 110, 1_772_000_000_000)])
            await tg.wait_for(lambda: bool(tg.calls("sendMessage")), timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0
    assert len(tg.messages) == 1
    assert "deliveries open" not in err  # drained, nothing left for the next start


async def _run_with_telegram_hanging(
    tmp: Path, tg: FakeTelegram, fake: FakeBinance, **extra: str
) -> asyncio.subprocess.Process:
    """``alertbot run`` with chat commands on, once polling: then Telegram takes every request
    and never answers (the last get_updates of PTB's stop would hang for its 40 s timeout)."""
    env = env_for(
        fake,
        tmp / "a.db",
        ALERTBOT_TELEGRAM_TOKEN=TOKEN,
        ALERTBOT_TELEGRAM_API_URL=tg.api_url,
        ALERTBOT_ADMIN_CHATS="42",
        ALERTBOT_SHUTDOWN_GRACE="1s",
        **extra,
    )
    proc = await start("run", "--rules", "rules.example.yaml", env=env)
    await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=20)
    await fake.wait_for_connections(1, timeout=20)
    tg.down(None)
    return proc


async def test_sigterm_stops_without_waiting_for_a_telegram_that_never_answers(tmp_path):
    """The chat poller's stop is bounded by ALERTBOT_CHAT_STOP_TIMEOUT: the process ends
    (within finish()'s bound, short of the 40 s the last get_updates would hang), saying it
    stopped without Telegram's answer."""
    async with FakeBinance() as fake, FakeTelegram(token=TOKEN) as tg:
        proc = await _run_with_telegram_hanging(
            tmp_path, tg, fake, ALERTBOT_CHAT_STOP_TIMEOUT="200ms"
        )
        proc.send_signal(signal.SIGTERM)
        try:
            code, _, err = await finish(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
    assert code == 0, err
    assert "chat: Telegram did not answer the poller's last call within 0.2s; stopped" in err
    assert "unknown setting" not in err


async def test_a_second_sigterm_while_stopping_ends_the_process_at_once(tmp_path):
    """A second SIGTERM during the stop (here: while the chat poller's stop hangs) ends the
    process at once, exit 143, saying open deliveries resume at the next start."""
    async with FakeBinance() as fake, FakeTelegram(token=TOKEN) as tg:
        proc = await _run_with_telegram_hanging(tmp_path, tg, fake)
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        seen = []
        while not seen or "SIGTERM: stopping" not in seen[-1]:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "".join(seen)  # the process ended before saying it stops
            seen.append(line)
        # a person's second request, not one sent together with the first (which is ignored)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 128 + signal.SIGTERM, err
    assert "SIGTERM again: stopping at once; open deliveries resume at the next start" in err
