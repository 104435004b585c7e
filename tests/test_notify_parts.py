"""Delivery's parts that need no server: settings, routing, rendering, the SQLite store."""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import sys
from collections import deque
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbot.chat.watches import ChatSettings
from alertbot.cli import Redact
from alertbot.errors import ConfigError
from alertbot.notify.delivery import Delivery
from alertbot.notify.notifier import Notifier, Sparklines
from alertbot.notify.render import (
    alert_detail,
    amount_text,
    format_amount,
    format_time,
    metric_text,
    render,
    render_both,
    sparkline,
    values,
)
from alertbot.notify.routing import Router, channel_env_problems
from alertbot.notify.settings import DeliverySettings
from alertbot.notify.webhook import body_of, format_by_url, signature
from alertbot.rules.conditions import format_number, parse
from alertbot.rules.engine import Alert, Engine
from alertbot.rules.model import Channel, Rule
from alertbot.rules.urls import shown_url
from alertbot.settings import environment, unknown_setting
from alertbot.store import AlertRecord, DeliveryRow, Store, Update
from alertbot.ticker import Ticker, percent

TOKEN = "123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ra"
T = 1_772_000_000_000


def rule(notify: tuple[str, ...] = (), message: str | None = None, id: str = "r1") -> Rule:
    return Rule(
        id=id,
        condition=parse("price > 100"),
        symbols=("BTCUSDT",),
        notify=notify,
        message=message,
    )


def record(**changes: object) -> AlertRecord:
    base: dict[str, object] = {
        "id": "r1:BTCUSDT:1", "rule": "r1", "symbol": "BTCUSDT", "time": T, "price": "101.5",
        "condition": "price > 100", "text": "BTCUSDT > 100 <b>",
        "html": "BTCUSDT &gt; 100 &lt;b&gt;", "created": 1_795_000_000.5,
    }  # fmt: skip
    base.update(changes)
    return AlertRecord(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- settings


def test_delivery_settings_from_the_environment():
    s = DeliverySettings.from_env(
        {
            "ALERTBOT_TELEGRAM_TOKEN": TOKEN,
            "ALERTBOT_TELEGRAM_API_URL": "http://127.0.0.1:9/",
            "ALERTBOT_ADMIN_CHATS": "123, -100456",
            "ALERTBOT_WEBHOOK_URL": "https://example.com/hook",
            "ALERTBOT_WEBHOOK_SECRET": "s3cret-0123456789",
            "ALERTBOT_DB": "/data/alertbot.db",
            "ALERTBOT_FALLBACK_AFTER": "90s",
        }
    )
    assert s.telegram_token == TOKEN
    assert s.telegram_api_url == "http://127.0.0.1:9"
    assert s.admin_chats == (123, -100456)
    assert (s.webhook_url, s.webhook_secret) == ("https://example.com/hook", "s3cret-0123456789")
    assert (s.db, s.fallback_after) == ("/data/alertbot.db", 90.0)
    assert s.secrets() == [TOKEN, "s3cret-0123456789"]


def test_the_webhook_url_may_come_from_a_file_as_the_secrets_do(tmp_path: Path):
    """A Slack- or Discord-style URL is its own credential: ALERTBOT_WEBHOOK_URL_FILE names
    a file holding it (a container secret), read as the secrets' files are (white space and a
    byte-order mark dropped); ALERTBOT_WEBHOOK_URL itself wins."""
    url = "https://hooks.slack.com/services/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"
    path = tmp_path / "webhook_url"
    path.write_text(f"\ufeff{url}\n", encoding="utf-8")
    env = environment({"ALERTBOT_WEBHOOK_URL_FILE": str(path)})
    assert DeliverySettings.from_env(env).webhook_url == url
    given = "https://h.example/x"
    both = environment({"ALERTBOT_WEBHOOK_URL_FILE": str(path), "ALERTBOT_WEBHOOK_URL": given})
    assert DeliverySettings.from_env(both).webhook_url == given
    with pytest.raises(ConfigError, match=r"^ALERTBOT_WEBHOOK_URL_FILE: does not name a readable"):
        environment({"ALERTBOT_WEBHOOK_URL_FILE": url})  # the URL itself, by mistake
    assert unknown_setting("ALERTBOT_WEBHOOK_URL_FILE") is None


def test_the_bot_api_urls_password_is_a_secret_kept_out_of_the_log():
    """ALERTBOT_TELEGRAM_API_URL behind a proxy that asks for a password: httpx logs request
    URLs at debug level, so the password is redacted like the webhook URL's."""
    s = DeliverySettings.from_env(
        {
            "ALERTBOT_TELEGRAM_TOKEN": TOKEN,
            "ALERTBOT_TELEGRAM_API_URL": "https://bot:pr0xy-pass@tg-proxy.example.com",
            "ALERTBOT_WEBHOOK_URL": "https://hook:w3bhook-pass@example.com/hook",
        }
    )
    assert s.secrets() == [TOKEN, ":w3bhook-pass@", ":pr0xy-pass@"]
    record = logging.LogRecord(
        "httpx", logging.DEBUG, "", 0, "GET %s", (f"{s.telegram_api_url}/getMe",), None
    )
    assert Redact(s.secrets()).filter(record)
    assert "pr0xy-pass" not in record.getMessage()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (  # Slack: the last segment is the credential; the team and hook ids are not
            "https://hooks.slack.com/services/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",
            "https://hooks.slack.com/services/T0AB12CDE/B0FG34HIJ/***",
        ),
        (  # Discord: the id is a number and stays, the token after it does not
            "https://discord.com/api/webhooks/1234567890123456789/Zk8-Qw_3rTyUiOpAsDfGhJkL",
            "https://discord.com/api/webhooks/1234567890123456789/***",
        ),
        (  # the Bot API's token is a segment of its own
            f"https://api.telegram.org/bot{TOKEN}/sendMessage",
            "https://api.telegram.org/***/sendMessage",
        ),
        (  # every query value, a value without a name, a fragment, a password
            "https://bob:hunter22@example.com:8443/hook?key=abc&channel=ops&flag&empty=#frag",
            "https://bob:***@example.com:8443/hook?key=***&channel=***&***&empty=#***",
        ),
        ("https://example.com/alerts/", "https://example.com/alerts/"),  # nothing to hide
        ("http://[::1:8080/hook?key=v", "http://[::1:8080/hook?key=***"),  # too broken to parse
    ],
)
def test_a_url_shown_in_a_log_line_hides_what_may_be_its_credential(url: str, shown: str):
    """Slack- and Discord-style webhooks take the URL itself as the credential: a log line
    or an error shows a long path segment that is not a number, the query's values and a
    fragment as ***, and keeps the rest, so that the receiver can still be told apart."""
    assert shown_url(url) == shown


_URL_TEXT = st.text(
    alphabet=st.characters(
        codec="ascii", exclude_characters="/?#&=@: \t\r\n\x0b\x0c", exclude_categories=["Cc"]
    ),
    min_size=1,
    max_size=30,
)


@given(
    segments=st.lists(_URL_TEXT, max_size=5),
    token=_URL_TEXT.filter(lambda t: len(t) >= 16 and not t.isdigit()),
    at=st.integers(min_value=0, max_value=5),
    query=st.lists(st.tuples(_URL_TEXT, _URL_TEXT), max_size=3),
)
def test_a_token_in_a_urls_path_or_query_never_shows(
    segments: list[str], token: str, at: int, query: list[tuple[str, str]]
):
    """Wherever a token sits in the path, and whatever the query's values are, the URL as
    shown holds none of them, and as many segments as it had."""
    parts = [*segments[:at], token, *segments[at:]]
    url = "https://h.example/" + "/".join(parts)
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query)
    shown = shown_url(url)
    path = shown.removeprefix("https://h.example/").partition("?")[0]
    assert len(path.split("/")) == len(parts)
    assert token not in path.split("/")
    assert shown.partition("?")[2] == "&".join(f"{k}=***" for k, _ in query)


def test_an_http_url_in_any_log_line_is_shown_without_its_credential():
    """httpx's request lines at debug level quote the URL whole, and a rule file's webhook
    channel is not among the settings' secrets: the log filter shows every http(s) URL, in the
    message and in a traceback, as shown_url does; a wss:// URL (the feed's) it leaves alone."""
    hook = "https://hooks.slack.com/services/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"
    record = logging.LogRecord(
        "httpx", logging.DEBUG, "", 0, 'HTTP Request: POST %s "HTTP/1.1 500"', (hook,), None
    )
    assert Redact([]).filter(record)
    assert record.getMessage() == (
        'HTTP Request: POST https://hooks.slack.com/services/T0AB12CDE/B0FG34HIJ/*** "HTTP/1.1 500"'
    )
    try:
        raise RuntimeError(f"Server error for url '{hook}'")
    except RuntimeError:
        failed = logging.LogRecord("x", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    assert Redact([TOKEN]).filter(failed)
    assert failed.exc_text is not None
    assert "Xq3vB8nPz2LmWk7RtY5sJd9e" not in failed.exc_text
    assert "/B0FG34HIJ/***'" in failed.exc_text
    feed = "wss://fstream.binance.com/market/stream?streams=btcusdt@miniTicker"
    record = logging.LogRecord("alertbot", logging.INFO, "", 0, "feed: %s", (feed,), None)
    assert Redact([]).filter(record)
    assert record.getMessage() == f"feed: {feed}"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALERTBOT_TELEGRAM_TOKEN", "not-a-token", "ALERTBOT_TELEGRAM_TOKEN: not a bot token"),
        ("ALERTBOT_ADMIN_CHATS", "123,abc", "ALERTBOT_ADMIN_CHATS: expected chat ids"),
        ("ALERTBOT_WEBHOOK_URL", "example.com", "ALERTBOT_WEBHOOK_URL: expected a URL"),
        ("ALERTBOT_FALLBACK_AFTER", "soon", "ALERTBOT_FALLBACK_AFTER: expected a duration"),
        # python-telegram-bot's base_url style; taken, the token was blamed for the 404s
        (
            "ALERTBOT_TELEGRAM_API_URL",
            "http://127.0.0.1:8081/bot",
            "ALERTBOT_TELEGRAM_API_URL: the Bot API root, without /bot",
        ),
        # delivery would refuse every alert to it for good (and the loader refuses it in files)
        (
            "ALERTBOT_WEBHOOK_URL",
            "https://exa mple.com/hook",
            "ALERTBOT_WEBHOOK_URL: not a URL one can post to: ' ' at position 11",
        ),
        # easy to guess, and redacted from every log line it blanked words ("feed") too
        (
            "ALERTBOT_WEBHOOK_SECRET",
            "feed",
            r"ALERTBOT_WEBHOOK_SECRET: too short \(4 characters\): a signing secret needs at "
            "least 16",
        ),
    ],
    ids=[
        "token",
        "chats",
        "webhook-url",
        "duration",
        "api-url-with-bot",
        "url-with-space",
        "short-secret",
    ],
)
def test_a_bad_delivery_setting_names_the_variable(name: str, value: str, message: str):
    with pytest.raises(ConfigError, match=message):
        DeliverySettings.from_env({name: value})


@pytest.mark.parametrize("port", ["70000", "x"])
def test_a_bad_webhook_url_is_named_without_its_password(port: str):
    """ALERTBOT_WEBHOOK_URL with a password and a bad port: the error quotes the URL with the
    password as ***, as the start's error is printed and logged."""
    url = f"https://alice:pa55-w0rd-xyzzy@example.com:{port}/hook"
    with pytest.raises(ConfigError) as err:
        DeliverySettings.from_env({"ALERTBOT_WEBHOOK_URL": url})
    assert "ALERTBOT_WEBHOOK_URL" in str(err.value)
    assert f"https://alice:***@example.com:{port}/hook" in str(err.value)
    assert "pa55" not in str(err.value)


def test_a_channel_secret_must_be_set_and_long_enough():
    channels = {
        "a": Channel("a", webhook="https://a.example/h", secret_env="A_SECRET"),
        "b": Channel("b", webhook="https://b.example/h", secret_env="B_SECRET"),
        "c": Channel("c", webhook="https://c.example/h", secret_env="C_SECRET"),
        "plain": Channel("plain", webhook="https://p.example/h"),
    }
    env = {"A_SECRET": "x" * 16, "B_SECRET": "short"}
    assert channel_env_problems(channels, env) == [
        "channel 'b': B_SECRET: too short (5 characters): a signing secret needs at least 16 "
        "(e.g. openssl rand -hex 16)",
        "channel 'c': its secret_env C_SECRET is not set in the environment (nor C_SECRET_FILE)",
    ]


def test_a_channel_url_from_the_environment_must_be_set_and_postable_and_is_not_shown():
    """``webhook_env``: an unset variable, or one holding no URL that can be posted to, is a
    problem (a start and a reload refuse it, as an unset secret_env), named by the variable;
    the URL in it is shown as log lines show it, its token hidden."""
    token = "Xq3vB8nPz2LmWk7RtY5sJd9e"
    channels = {
        "ok": Channel("ok", webhook_env="OK_URL"),
        "unset": Channel("unset", webhook_env="UNSET_URL"),
        "ftp": Channel("ftp", webhook_env="FTP_URL"),
        "port": Channel("port", webhook_env="PORT_URL", secret_env="PORT_SECRET"),
    }
    env = {
        "OK_URL": "https://hooks.slack.com/services/T0AB12CDE/B0FG34HIJ/" + token,
        "FTP_URL": "ftp://files.example/" + token,
        "PORT_URL": f"https://h.example:70000/{token}",
        "PORT_SECRET": "x" * 16,
    }
    assert channel_env_problems(channels, env) == [
        "channel 'unset': its webhook_env UNSET_URL is not set in the environment (nor "
        "UNSET_URL_FILE)",
        "channel 'ftp': FTP_URL: invalid URL 'ftp://files.example/***': expected http(s)://HOST/...",
        "channel 'port': PORT_URL: invalid URL 'https://h.example:70000/***': port 70000 is not "
        "in 1..65535",
    ]


def test_a_channels_url_and_secret_may_come_from_files_as_docker_secrets_do(tmp_path: Path):
    """``VAR_FILE`` stands for an unset ``VAR`` (as ALERTBOT_*_FILE): the router posts to the
    URL and signs with the secret the files hold (white space around them not theirs, each
    file read once); a file that cannot be read, or is empty, is a problem named by its
    variable, never quoting what it holds; ``VAR`` itself wins over ``VAR_FILE``."""
    url = "https://hooks.slack.com/services/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"
    (tmp_path / "url").write_text(url + "\n")
    (tmp_path / "secret").write_text("\ufeffs3cr3t-0123456789abcdef\n")
    (tmp_path / "empty").write_text("  \n")
    channels = {
        "slack": Channel("slack", webhook_env="SLACK_URL", secret_env="SLACK_SECRET"),
        "gone": Channel("gone", webhook_env="GONE_URL"),
        "empty": Channel("empty", webhook="https://e.example/h", secret_env="EMPTY_SECRET"),
        "both": Channel("both", webhook="https://b.example/h", secret_env="BOTH_SECRET"),
    }
    env = {
        "SLACK_URL_FILE": str(tmp_path / "url"),
        "SLACK_SECRET_FILE": str(tmp_path / "secret"),
        "GONE_URL_FILE": str(tmp_path / "missing"),
        "EMPTY_SECRET_FILE": str(tmp_path / "empty"),
        "BOTH_SECRET": "from-the-variable-itself",
        "BOTH_SECRET_FILE": str(tmp_path / "missing"),
    }
    assert channel_env_problems(channels, env) == [
        "channel 'gone': GONE_URL_FILE: does not name a readable file (No such file or "
        "directory); is it the secret itself? put the secret in a file and name the file here",
        f"channel 'empty': EMPTY_SECRET_FILE: the file {str(tmp_path / 'empty')!r} is empty (or "
        "only white space); put the secret in it, or unset EMPTY_SECRET_FILE",
    ]
    r = Router(channels, DeliverySettings(), env=env)
    (route,) = r.routes(rule(("slack",)))
    assert route.url == url
    assert r.secret_for(url) == "s3cr3t-0123456789abcdef"
    (tmp_path / "secret").write_text("another-secret-0123456789")  # read once: not this
    assert r.secret_for(url) == "s3cr3t-0123456789abcdef"
    assert r.secret_for("https://b.example/h") == "from-the-variable-itself"
    r.channels = dict(channels)  # a reload reads the files again
    assert r.secret_for(url) == "another-secret-0123456789"


def test_a_channel_url_from_the_environment_is_where_its_alerts_go_signed():
    """The router reads a ``webhook_env`` channel's URL from the environment, routes its
    rules' alerts there, and signs them with its ``secret_env``, as a ``webhook:`` channel."""
    url = "https://hooks.slack.com/services/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"
    channels = {"slack": Channel("slack", webhook_env="SLACK_URL", secret_env="SLACK_SECRET")}
    r = Router(channels, DeliverySettings(), env={"SLACK_URL": f" {url}\n", "SLACK_SECRET": "s"})
    (route,) = r.routes(rule(("slack",)))
    assert (route.destination, route.url) == (f"webhook:{url}", url)
    assert r.secret_for(url) == "s"


@pytest.mark.parametrize("name", ["ALERTBOT_ADMIN_CHATS", "ALERTBOT_ALLOWED_CHATS"])
@pytest.mark.parametrize(
    "value",
    ["42, 9223372036854775808", "-9223372036854775809", "1" * 5000],
    ids=["above-2**63-1", "below--2**63", "5000-digits"],
)
def test_a_chat_id_in_the_environment_must_fit_in_64_bits(name: str, value: str):
    """As Telegram's chat ids and SQLite's integers do; a larger one would be accepted and
    then fail every store of an alert to that chat. The refusal is short, never a traceback."""
    with pytest.raises(ConfigError, match=f"^{name}: expected chat ids") as info:
        ChatSettings.from_env({name: value})
    assert len(str(info.value)) < 200


def test_chat_ids_in_the_environment_may_use_all_64_bits_and_no_more():
    env = {
        "ALERTBOT_ALLOWED_CHATS": "-9223372036854775808",
        "ALERTBOT_ADMIN_CHATS": "9223372036854775807",
    }
    settings = ChatSettings.from_env(env)
    assert (settings.allowed_chats, settings.admin_chats) == ((-(2**63),), (2**63 - 1,))
    assert DeliverySettings.from_env(env).admin_chats == (2**63 - 1,)

    with pytest.raises(ConfigError, match="ALERTBOT_ADMIN_CHATS"):
        DeliverySettings.from_env({"ALERTBOT_ADMIN_CHATS": "9223372036854775808"})


def test_the_bots_time_zone_is_read_as_a_chat_gives_one():
    """ALERTBOT_TIMEZONE takes what /timezone takes (UTC when unset); a zone that cannot be
    used stops the start with the reason and the closest."""
    assert DeliverySettings.from_env({}).timezone == "UTC"
    assert DeliverySettings.from_env({"ALERTBOT_TIMEZONE": " berlin "}).timezone == (
        "Europe/Berlin"
    )
    assert DeliverySettings.from_env({"ALERTBOT_TIMEZONE": "UTC+8"}).timezone == "UTC+08:00"
    with pytest.raises(ConfigError) as info:
        DeliverySettings.from_env({"ALERTBOT_TIMEZONE": "Berln"})
    assert str(info.value) == (
        "ALERTBOT_TIMEZONE: unknown time zone 'Berln' (did you mean Europe/Berlin?)"
    )


def test_the_bad_token_message_does_not_repeat_the_token():
    with pytest.raises(ConfigError) as info:
        DeliverySettings.from_env({"ALERTBOT_TELEGRAM_TOKEN": "12:short-secret"})
    assert "short-secret" not in str(info.value)


# ---------------------------------------------------------------- routing


def router(**settings: object) -> Router:
    channels = {
        "ops": Channel("ops", telegram=-1001),
        "desk": Channel("desk", webhook="https://desk.example/hook", secret_env="DESK_SECRET"),
    }
    return Router(channels, DeliverySettings(**settings), env={"DESK_SECRET": "d"})  # type: ignore[arg-type]


def test_notify_channels_route_to_their_chat_and_webhook():
    routes = router(telegram_token=TOKEN).routes(rule(("ops", "desk")))
    assert [r.destination for r in routes] == [
        "telegram:-1001",
        "webhook:https://desk.example/hook",
    ]
    assert router().secret_for("https://desk.example/hook") == "d"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"telegram_token": TOKEN, "admin_chats": (1, 2)}, ["telegram:1", "telegram:2"]),
        ({"webhook_url": "https://h.example/x"}, ["webhook:https://h.example/x"]),
        (
            {"telegram_token": TOKEN, "webhook_url": "https://h.example/x"},
            ["webhook:https://h.example/x"],
        ),
        ({}, ["console"]),
    ],
)
def test_a_rule_without_notify_goes_to_admins_else_the_webhook_else_the_console(
    settings: dict[str, object], expected: list[str]
):
    assert [r.destination for r in router(**settings).routes(rule())] == expected


def test_a_token_without_admin_chats_says_once_how_to_find_a_chats_id(caplog):
    """With a token but no ALERTBOT_ADMIN_CHATS, the rule files' alerts go to the console,
    and the one warning says how to learn the id to set (Telegram shows it nowhere)."""
    r = router(telegram_token=TOKEN)
    with caplog.at_level(logging.WARNING, logger="alertbot"):
        assert [x.destination for x in r.routes(rule())] == ["console"]
        assert [x.destination for x in r.routes(rule())] == ["console"]
    assert [rec.getMessage() for rec in caplog.records] == [
        "alerts of rules without 'notify' go to the console: set ALERTBOT_ADMIN_CHATS to send "
        "them to Telegram (a chat's id: send the bot /start from it)"
    ]


def test_a_telegram_channel_without_a_token_goes_to_the_fallback_webhook():
    r = router(webhook_url="https://h.example/x", webhook_secret="w")
    (route,) = r.routes(rule(("ops",)))
    assert (route.destination, route.chat_id) == ("fallback:-1001:https://h.example/x", -1001)
    assert r.secret_for("https://h.example/x") == "w"


def test_chat_watches_name_their_chat():
    (route,) = router(telegram_token=TOKEN).routes(rule(("chat:42",)))
    assert (route.destination, route.chat_id) == ("telegram:42", 42)


# ---------------------------------------------------------------- rendering


def test_sparkline_shows_the_shape_of_recent_prices():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 1, 5]) == "█▁█"
    assert sparkline([3, 3, 3]) == "▄▄▄"
    assert sparkline([3]) == ""


def alert_for(r: Rule):
    engine = Engine([r])
    (alert,) = engine.process(
        [Ticker("BTCUSDT", T, 101.5, 100.0, 110.0, 90.0, 5.0, 500.0, "101.5")]
    )
    return alert


def test_the_default_message_carries_the_sparkline_on_its_own_line():
    text = render(alert_for(rule()), spark="▁▄█")
    assert text.splitlines() == [
        "BTCUSDT price > 100: price 101.5 (+1.50% 24h) at 2026-02-25 06:13:20 UTC [r1]",
        "▁▄█",
    ]


def test_values_are_escaped_for_telegram_html_but_the_template_is_not():
    a = alert_for(rule(message="<b>{symbol}</b> {condition}"))
    assert render(a, escape_html=True) == "<b>BTCUSDT</b> price &gt; 100"
    assert render(a) == "<b>BTCUSDT</b> price > 100"


def test_a_moves_alert_says_how_far_the_price_went_and_from_where():
    """'SOLUSDT rises 5% in 15m: price 2900' did not say by how much: 5%, or 30%. The default
    message says it after the price; a template has it as {move}, empty for other alerts."""

    def alert(when: str, closes: list[float], message: str | None = None) -> Alert:
        engine = Engine(
            [Rule(id="m", condition=parse(when), symbols=("SOLUSDT",), message=message)]
        )
        ticks = [
            Ticker("SOLUSDT", T + i * 1000, c, 100.0, 200.0, 50.0, 5.0, 500.0, format_number(c))
            for i, c in enumerate(closes)
        ]
        (fired,) = engine.process(ticks)
        return fired

    assert render(alert("rises 5% in 15m", [100.0, 96.0, 104.1])) == (
        "SOLUSDT rises 5% in 15m: price 104.1, up 8.44% from 96 (+4.10% 24h) "
        "at 2026-02-25 06:13:22 UTC [m]"
    )
    assert render(alert("drops 5% in 15m", [100.0, 95.0])).startswith(
        "SOLUSDT drops 5% in 15m: price 95, down 5.00% from 100 ("
    )
    # as near its size as a percentage gets, one that would show 5.00 shows more
    assert "down 5.001% from 100" in render(alert("drops 5% in 15m", [100.0, 94.999]))
    templated = alert("moves 5% in 15m", [100.0, 94.0], message="{symbol} {move}!")
    assert render(templated) == "SOLUSDT down 6.00% from 100!"
    level = alert_for(rule(message="{symbol} {move}!"))
    assert render(level) == "BTCUSDT !"


def test_a_repeats_default_message_says_the_condition_still_holds():
    """``repeat 15m`` sent the same text every 15 minutes, as if the price had come back and
    entered again; a rule's own message is as written."""
    first = alert_for(rule())
    again = Alert(first.rule, first.symbol, first.ticker, repeated=True)
    assert render(first).startswith("BTCUSDT price > 100: price 101.5 (+1.50% 24h) at ")
    assert render(again).startswith("BTCUSDT price > 100 still holds: price 101.5 (+1.50% 24h)")
    templated = alert_for(rule(message="{symbol} {condition}"))
    assert render(Alert(templated.rule, "BTCUSDT", templated.ticker, repeated=True)) == (
        "BTCUSDT price > 100"
    )


@pytest.mark.parametrize(
    ("condition", "repeated", "detail"),
    [
        ("price > 100", False, None),  # the price is what /history shows already
        ("price > 100", True, "still holds"),
        ("change_24h > 1%", False, "change_24h +1.50%"),
        ("range_24h > 10%", False, "range_24h 22.22%"),
        ("quote_volume > 400", True, "quote_volume 500, still holds"),
        ("high > 100", False, "high 110"),
        ("all(price > 100, volume > 1)", False, None),
    ],
)
def test_an_alerts_detail_is_what_it_measured_besides_the_price(
    condition: str, repeated: bool, detail: str | None
):
    """What /history shows after ``price X``, kept with the alert (render.alert_detail)."""
    r = Rule(id="r1", condition=parse(condition), symbols=("BTCUSDT",))
    fired = alert_for(r)
    assert alert_detail(Alert(r, "BTCUSDT", fired.ticker, repeated=repeated)) == detail


def test_a_volume_alerts_default_message_says_the_volume():
    """'DOGEUSDT quote_volume > 2b: price 0.16683 (+5.48% 24h)' did not say the volume that
    fired it. The default message says the value of a metric it does not show anyway, after
    the price; ``{value}`` in a template is that, empty for a price level."""
    volume = Rule(id="v", condition=parse("quote_volume > 400"), symbols=("BTCUSDT",))
    assert render(alert_for(volume)).startswith(
        "BTCUSDT quote_volume > 400: price 101.5, quote_volume 500 (+1.50% 24h) at "
    )
    ranged = Rule(id="r", condition=parse("range_24h > 10%"), symbols=("BTCUSDT",))
    assert render(alert_for(ranged)).startswith(
        "BTCUSDT range_24h > 10%: price 101.5, range_24h 22.22% (+1.50% 24h) at "
    )
    # the 24h change is in the message already: not twice
    change = Rule(id="c", condition=parse("change_24h > 1%"), symbols=("BTCUSDT",))
    assert render(alert_for(change)).startswith("BTCUSDT change_24h > 1%: price 101.5 (+1.50% 24h)")
    templated = Rule(
        id="t", condition=parse("volume > 4"), symbols=("BTCUSDT",), message="{symbol}: {value}!"
    )
    assert render(alert_for(templated)) == "BTCUSDT: volume 5!"
    assert render(alert_for(rule(message="{symbol}: {value}!"))) == "BTCUSDT: !"


def test_the_24h_high_or_low_is_shown_as_a_price_not_an_amount():
    """'high 70.12k' read as a volume; the 24h high and low are prices, every digit."""
    assert metric_text(parse("high > 70000"), 70123.4) == "high 70123.4"
    assert metric_text(parse("low < 0.5"), 0.000123) == "low 0.000123"
    assert metric_text(parse("volume > 1m"), 1_234_567.0) == "volume 1.23m"


@pytest.mark.parametrize(
    ("amount", "thresholds", "shown"),
    [
        (2_012_345_678.0, (), "2.01b"),
        (2_000_000_000.5, (2e9,), "2.000000001b"),  # past 2b: never shown as 2b
        (1_999_999_999.0, (2e9,), "1.999999999b"),  # short of it: never 2b either
        (184_523.417, (1e6,), "184.52k"),  # far from it: two decimals
        (0.5, (1.0,), "0.5"),
    ],
)
def test_an_amount_is_shown_short_and_on_its_side_of_each_threshold(
    amount: float, thresholds: tuple[float, ...], shown: str
):
    assert amount_text(amount, thresholds) == shown


def test_a_message_whose_values_come_out_empty_is_the_default_instead():
    """A template of placeholders only can render blank ({sparkline} before a symbol has a
    history); Telegram would refuse it as empty and the alert would be lost."""
    a = alert_for(rule(message="<i>{sparkline}</i>"))
    assert render(a).startswith("BTCUSDT price > 100: price 101.5 (+1.50% 24h)")
    assert render(a, escape_html=True).startswith("BTCUSDT price &gt; 100: price 101.5")
    assert render(a, spark="▁▄█") == "<i>▁▄█</i>"  # not blank: as written


# ---------------------------------------------------------------- webhook body


def test_webhook_body_is_designs_json_and_the_signature_an_hmac_of_it():
    d = Delivery(record(gap=True), "fallback:42:https://h.example/x", chat_id=42)
    body = body_of(d)
    assert orjson.loads(body) == {
        "version": 1, "id": "r1:BTCUSDT:1:42", "rule": "r1", "symbol": "BTCUSDT",
        "condition": "price > 100", "time": T, "price": "101.5", "message": "BTCUSDT > 100 <b>",
        "gap": True, "chat_id": 42, "fallback": True,
    }  # fmt: skip
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) == f"sha256={expected}"
    plain = orjson.loads(body_of(Delivery(record(), "webhook:https://h.example/x")))
    assert "fallback" not in plain
    assert "chat_id" not in plain
    assert plain["id"] == "r1:BTCUSDT:1"


@pytest.mark.parametrize(
    ("url", "form"),
    [
        ("https://hooks.slack.com/services/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", "slack"),
        ("https://HOOKS.SLACK.COM/services/T/B/x", "slack"),
        ("https://discord.com/api/webhooks/1234567890123456789/Zk8-Qw", "discord"),
        ("https://discordapp.com/api/webhooks/1/x", "discord"),
        ("https://discord.com/channels/1/2", "json"),  # not a webhook
        ("https://example.com/hooks.slack.com/x", "json"),
        ("https://h.example/alerts", "json"),
        ("http://[::1/hook", "json"),  # too broken to tell
    ],
)
def test_a_webhooks_body_is_told_by_its_host_when_none_is_configured(url: str, form: str):
    """Slack's and Discord's incoming webhooks refuse alertbot's JSON (400: no text, an empty
    message): their URLs get their own message bodies without any setting."""
    assert format_by_url(url) == form


def test_a_slack_webhook_gets_the_message_as_text_its_markup_escaped():
    """``{"text": ...}``, with &, < and > escaped as Slack asks (a condition such as
    ``price < 3000`` would otherwise be read as markup), and mrkdwn off (it has no escape for
    the underscores of a rule id like ``eth_3k``); a fallback says for which chat."""
    alert = record(text="eth_3k: ETHUSDT price < 3000 & *falling* >:(")
    url = "https://hooks.slack.com/services/T/B/x"
    assert orjson.loads(body_of(Delivery(alert, f"webhook:{url}", url=url))) == {
        "text": "eth_3k: ETHUSDT price &lt; 3000 &amp; *falling* &gt;:(",
        "mrkdwn": False,
    }
    fallback = Delivery(alert, f"fallback:42:{url}", chat_id=42, url=url)
    assert orjson.loads(body_of(fallback))["text"].endswith(
        "\n(for Telegram chat 42, which the alert could not reach)"
    )


@pytest.mark.parametrize("form", ["json", "slack", "discord"])
def test_a_fallback_copy_leaves_out_the_chat_watchs_command_line(form: str):
    """A chat watch's alert ends with commands for the chat (``Mute: /mute w3 1h``, or a
    ``once`` watch's ``it has ended. To watch again: ...``). The fallback webhook's reader
    cannot send them, and a ``once`` watch whose alert the chat refused (blocked the bot) is
    kept, not ended: a fallback's copy goes without that line, a chat's own copy keeps it."""
    url = {
        "json": "https://h.example/alerts",
        "slack": "https://hooks.slack.com/services/T/B/x",
        "discord": "https://discord.com/api/webhooks/1/x",
    }[form]
    for last in (
        "Mute: /mute w3 1h · stop: /unwatch w3",
        "That was w3's one alert (once): it has ended. To watch again: /watch BTCUSDT > 100 once",
    ):
        alert = record(rule="w3", text=f"BTCUSDT price > 100: price 101.5\nNote: tp1\n{last}")
        fallback = orjson.loads(body_of(Delivery(alert, f"fallback:42:{url}", chat_id=42, url=url)))
        text = fallback.get("message") or fallback.get("text") or fallback["content"]
        assert "/mute" not in text, text
        assert "ended" not in text, text
        assert "tp1" in text  # the note, the line before it, is kept
        plain = orjson.loads(body_of(Delivery(alert, f"webhook:{url}", url=url)))
        own = plain.get("message") or plain.get("text") or plain["content"]
        assert "w3" in own.rpartition("\n")[2]  # a channel's own copy: as rendered


def test_a_discord_webhook_gets_the_message_as_content_shown_as_written():
    """``{"content": ...}``: markdown escaped (a rule id with underscores, a negative change),
    no @mention pinged whatever a template holds, and cut at Discord's 2000 characters."""
    url = "https://discord.com/api/webhooks/1/x"
    alert = record(text="btc_70k: BTCUSDT *broke* 70000 (-1.5%) @everyone")
    body = orjson.loads(body_of(Delivery(alert, f"webhook:{url}", url=url)))
    assert body == {
        "content": "btc\\_70k: BTCUSDT \\*broke\\* 70000 \\(\\-1.5%\\) @everyone",
        "allowed_mentions": {"parse": []},
    }
    long = orjson.loads(body_of(Delivery(record(text="x" * 3000), f"webhook:{url}", url=url)))
    assert len(long["content"]) == 2000
    assert long["content"].endswith("…")
    # the cut never leaves an escape's backslash without its character (it would escape the
    # ellipsis), nor takes one of an escaped backslash's two
    cases = [
        ("x" * 1998 + "*", "x" * 1998),  # the cut between "\\" and "*": the "\\" goes too
        ("x" * 1997 + "\\", "x" * 1997 + "\\\\"),  # an escaped backslash, whole: kept
        ("x" * 1996 + "\\*", "x" * 1996 + "\\\\"),  # "\\\\" kept, "\\" of "\\*" not
    ]
    for text, kept in cases:
        cut = orjson.loads(
            body_of(Delivery(record(text=text + "y" * 9), f"webhook:{url}", url=url))
        )
        assert cut["content"] == kept + "…"


def test_a_configured_webhook_format_wins_over_the_host():
    """A channel's ``format`` (a Slack-compatible receiver elsewhere, or alertbot's JSON
    through a Slack-hosted relay) and ALERTBOT_WEBHOOK_FORMAT for ALERTBOT_WEBHOOK_URL."""
    channels = {
        "mm": Channel("mm", webhook="https://mattermost.example/hooks/abc", format="slack"),
        "plain": Channel("plain", webhook="https://h.example/x"),
    }
    settings = DeliverySettings(webhook_url="https://hooks.slack.com/x", webhook_format="json")
    r = Router(channels, settings, env={})
    assert r.format_for("https://mattermost.example/hooks/abc") == "slack"
    assert r.format_for("https://h.example/x") is None
    assert r.format_for("https://hooks.slack.com/x") == "json"
    d = Delivery(record(), "webhook:https://hooks.slack.com/x", url="https://hooks.slack.com/x")
    d.body_format = "json"
    assert orjson.loads(body_of(d))["version"] == 1
    assert DeliverySettings.from_env({"ALERTBOT_WEBHOOK_FORMAT": "Slack"}).webhook_format == "slack"
    with pytest.raises(ConfigError, match="ALERTBOT_WEBHOOK_FORMAT: expected one of json"):
        DeliverySettings.from_env({"ALERTBOT_WEBHOOK_FORMAT": "teams"})


# ---------------------------------------------------------------- store


def test_the_store_keeps_alerts_and_delivery_states_across_a_reopen(tmp_path: Path):
    path = tmp_path / "a.db"
    store = Store(path)
    assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    a = record()
    store.write(
        [a],
        [DeliveryRow(a.id, "telegram:1", chat_id=None), DeliveryRow(a.id, "console")],
        [],
    )
    store.write([], [], [Update(a.id, "console", "sent", 1)])
    store.write([], [], [Update(a.id, "telegram:1", "pending", 1, "HTTP 502")])
    store.close()
    again = Store(path)
    ((alert, row),) = again.open_deliveries()
    assert alert == a
    assert (row.destination, row.state, row.attempts, row.last_error) == (
        "telegram:1",
        "pending",
        1,
        "HTTP 502",
    )
    assert again.counts() == {"pending": 1, "sent": 1}


def test_the_same_alert_stored_twice_is_one_alert(tmp_path: Path):
    store = Store(tmp_path / "a.db")
    a = record()
    for _ in range(2):
        store.write([a], [DeliveryRow(a.id, "console")], [])
    assert store.db.execute("SELECT COUNT(*) FROM alerts").fetchone() == (1,)
    assert len(store.deliveries()) == 1


async def test_a_database_that_cannot_be_created_stops_the_start_with_its_path(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    notifier = Notifier(DeliverySettings(db=str(blocker / "alertbot.db")), {})
    with pytest.raises(ConfigError, match=r"ALERTBOT_DB: cannot use '.*file/alertbot.db'"):
        await notifier.start()


# ---------------------------------------------------------------- per-alert work, kept cheap


@pytest.mark.parametrize(
    "template",
    [
        None,
        "<b>{symbol}</b> {condition} & {price} {{literal}} {threshold}",
        "{rule} {open} {high} {low} {volume} {quote_volume} {change_24h} {range_24h} {time}",
        "{sparkline} {symbol}",
    ],
)
@pytest.mark.parametrize("gap", [False, True])
def test_text_and_html_from_one_computation_are_what_render_gives(template, gap):
    a = alert_for(rule(message=template))
    text, html = render_both(a, gap=gap, spark="▁▄█")
    assert text == render(a, gap=gap, spark="▁▄█")
    assert html == render(a, gap=gap, spark="▁▄█", escape_html=True)
    assert render_both(a, gap=gap, spark="▁▄█", with_html=False) == (text, "")
    assert values(a, "▁▄█")["sparkline"] == "▁▄█"


def test_format_time_in_the_same_second_and_across_seconds():
    assert format_time(T) == "2026-02-25 06:13:20 UTC"
    assert format_time(T + 999) == "2026-02-25 06:13:20 UTC"
    assert format_time(T + 1000) == "2026-02-25 06:13:21 UTC"
    assert format_time(-1) == "1969-12-31 23:59:59 UTC"


@given(
    st.lists(st.floats(0.001, 1e6), max_size=30),
    st.lists(st.floats(0.001, 1e6), min_size=1, max_size=5),
)
def test_sparklines_drawn_from_their_cache_are_the_plain_drawing(history, prices):
    engine = Engine([])
    lines = Sparklines(engine)
    if history:
        lines.history["BTCUSDT"] = deque(history, maxlen=30)
    for price in prices:  # the first draws the history, the others reuse it
        assert lines.of("BTCUSDT", price) == sparkline([*history, price])


def test_routes_follow_a_change_of_the_channels():
    r = router(telegram_token=TOKEN)
    (before,) = r.routes(rule(("ops",)))
    assert r.routes(rule(("ops",))) is r.routes(rule(("ops",)))  # computed once per notify list
    r.channels = {"ops": Channel("ops", telegram=-2002)}
    (after,) = r.routes(rule(("ops",)))
    assert (before.destination, after.destination) == ("telegram:-1001", "telegram:-2002")


def test_a_rule_files_alerts_go_to_the_topic_of_its_channel_for_that_chat():
    """topic_for: by the rule's id (a resumed delivery has no rule at hand), the topic of the
    channel it notifies for that chat; None for another chat, a channel without a topic, a
    rule the router was not given, or a watch; the rules given before or after the channels."""
    r = router(telegram_token=TOKEN)
    r.set_rules([rule(("ops", "desk"), id="up"), rule(("ops",), id="down")])
    r.channels = {
        "ops": Channel("ops", telegram=-1001, topic=7),
        "room": Channel("room", telegram=-1001),
        "desk": Channel("desk", webhook="https://desk.example/hook"),
    }
    r2 = router(telegram_token=TOKEN)
    r2.channels = r.channels
    r2.set_rules([rule(("ops", "desk"), id="up"), rule(("room",), id="plain")])
    for each in (r, r2):
        assert each.topic_for("up", -1001) == 7
        assert each.topic_for("up", -2002) is None
        assert each.topic_for("other", -1001) is None
    assert r.topic_for("down", -1001) == 7
    assert r2.topic_for("plain", -1001) is None


def test_a_topic_telegram_refused_is_not_tried_again_until_the_channels_change(caplog):
    """Refused: told once, naming its channels; the next alerts go to the chat itself. New
    channels (a reload) try it again; a refusal of a topic no channel names changes nothing
    (a watch's, handled by the chat side)."""
    r = router(telegram_token=TOKEN)
    r.channels = {"ops": Channel("ops", telegram=-1001, topic=7)}
    r.set_rules([rule(("ops",), id="up")])
    r.topic_refused(-1001, 9)
    assert r.topic_for("up", -1001) == 7
    r.topic_refused(-1001, 7)
    r.topic_refused(-1001, 7)
    assert r.topic_for("up", -1001) is None
    assert [m.getMessage() for m in caplog.records] == [
        "channel 'ops': Telegram refuses topic 7 of chat -1001 (deleted or closed): its alerts "
        "go to the chat itself (its General topic) until the rules are reloaded"
    ]
    r.channels = dict(r.channels)
    assert r.topic_for("up", -1001) == 7


def test_many_alerts_are_written_in_a_few_statements(tmp_path: Path):
    store = Store(tmp_path / "a.db")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    alerts = [record(id=f"r1:BTCUSDT:{i}") for i in range(2000)]
    store.write(alerts, [DeliveryRow(a.id, "console") for a in alerts], [])
    store.write([], [], [Update(a.id, "console", "sent", 1) for a in alerts])
    store.db.set_trace_callback(None)
    assert len(statements) < 30  # one per row and table would be 6000
    assert store.counts() == {"sent": 2000}
    assert store.db.execute("SELECT COUNT(*) FROM alerts").fetchone() == (2000,)


@pytest.mark.parametrize("update_from", [True, False], ids=["UPDATE FROM", "row by row"])
def test_several_updates_of_one_delivery_in_a_batch_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_from: bool
):
    if not update_from:  # what SQLite before 3.33 (no UPDATE ... FROM) gets
        monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 32, 3))
    store = Store(tmp_path / "a.db")
    a, b = record(), record(id="r1:BTCUSDT:2")
    store.write([a, b], [DeliveryRow(a.id, "telegram:1"), DeliveryRow(b.id, "telegram:1")], [])
    store.write(
        [],
        [],
        [
            Update(a.id, "telegram:1", "pending", 1, "HTTP 502"),
            Update(b.id, "telegram:1", "pending", 1, "timeout"),
            Update(a.id, "telegram:1", "pending", 1, "HTTP 503"),
            Update(a.id, "telegram:1", "sent", 1),
        ],
    )
    rows = {d.alert_id: d for d in store.deliveries()}
    assert (rows[a.id].state, rows[a.id].attempts, rows[a.id].last_error) == ("sent", 3, None)
    assert (rows[b.id].state, rows[b.id].attempts, rows[b.id].last_error) == (
        "pending",
        1,
        "timeout",
    )


def test_engine_state_is_saved_in_a_few_statements_the_later_of_a_key_winning(tmp_path: Path):
    store = Store(tmp_path / "a.db")
    states = [(f"r{i}", "BTCUSDT", "fp", 1, None) for i in range(3000)]
    states.append(("r7", "BTCUSDT", "fp", 4, T))  # r7 again, later in the same save
    tick = Ticker("BTCUSDT", T, 101.5, 100.0, 110.0, 90.0, 5.0, 500.0, "101.5")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    store.save_engine(states, [tick])
    store.db.set_trace_callback(None)
    assert len(statements) < 20
    saved, ticks = store.engine_state()
    assert len(saved) == 3000
    assert ("r7", "BTCUSDT", "fp", 4, T) in saved
    assert ticks == [tick]


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (12_873_456_789.12, "12.87b"),
        (184_523.417, "184.52k"),
        (2e9, "2b"),  # as a condition writes it
        (999_999.999, "1m"),  # rounded up into the next suffix, not "1000k"
        (123.456, "123.46"),
        (0.001234, "0.001234"),  # not rounded away to 0
        (0.0, "0"),
    ],
)
def test_a_volume_is_shown_short_with_a_conditions_suffix(amount, shown):
    """What /price shows for a volume: a few digits and the suffix /watch takes."""
    assert format_amount(amount) == shown


# ---------------------------------------------------------------- values next to a threshold


def _fired(condition: str, ticker: Ticker, template: str | None = None):
    """The alert a rule with ``condition`` makes on ``ticker`` (it must fire)."""
    r = Rule(id="r1", condition=parse(condition), symbols=("BTCUSDT",), message=template)
    engine = Engine([r])
    if "crosses" in condition:  # a crossing needs a tick before it, here one with no change
        assert not engine.process([_ticker(ticker.open, open_=ticker.open, time=T - 1000)])
    (alert,) = engine.process([ticker])
    return alert


def _ticker(
    close: float, open_: float = 100.0, high: float = 110.0, low: float = 90.0, time: int = T
) -> Ticker:
    return Ticker("BTCUSDT", time, close, open_, high, low, 5.0, 5e8, format_number(close))


@pytest.mark.parametrize(
    ("condition", "close", "shown"),
    [
        ("change_24h > 5%", 105.001, "(+5.001% 24h)"),  # was +5.00%: as if at the threshold
        ("change_24h >= 5.0001%", 105.0002, "(+5.0002% 24h)"),
        ("change_24h < -5%", 94.999, "(-5.001% 24h)"),
        ("change_24h crosses above 5%", 105.004, "(+5.004% 24h)"),
        ("change_24h > 5%", 107.5, "(+7.50% 24h)"),  # plainly past it: two decimals
        ("change_24h >= 5%", 105.0, "(+5.00% 24h)"),  # at it, as the rule compares
    ],
)
def test_the_24h_change_an_alert_shows_is_past_its_threshold_as_the_rule_compares(
    condition: str, close: float, shown: str
):
    """A rule 'change_24h > 5%' that fires never shows '+5.00%' or less: the percentage is
    rounded as rules compare it (9 decimal places), and shown with as many decimals as it
    takes to read on the side of the threshold the rule found it."""
    text = render(_fired(condition, _ticker(close)))
    assert shown in text


def test_a_percentage_an_any_rule_did_not_fire_on_does_not_look_met():
    """any(price > 1, change_24h > 5%) fired on the price with a change of 4.999%: '+5.00%'
    would read as the change being at its threshold."""
    alert = _fired("any(price > 1, change_24h > 5%)", _ticker(104.999))
    assert "(+4.999% 24h)" in render(alert)


def test_the_24h_range_an_alert_shows_is_past_its_threshold():
    alert = _fired("range_24h > 20%", _ticker(100.0, high=108.0012, low=90.0), "{range_24h}%")
    assert render(alert) == "20.001%"  # 20.00133333...: not 20.00%


@given(
    st.integers(1, 10**9).map(lambda n: n / 10**4),
    st.integers(-9999, 9999).map(lambda n: n / 100),
    st.integers(1, 10**4).map(lambda n: n / 10**4),
    st.sampled_from([">", ">=", "<", "<="]),
)
def test_a_shown_24h_change_compares_with_the_threshold_as_the_rule_does(
    open_: float, pct: float, nudge: float, op: str
):
    """Whatever the prices and the threshold, the shown change is on the same side of the
    threshold (or at it) as the change the rule compared."""
    close = open_ * (1 + (pct + nudge / 100) / 100)
    ticker = _ticker(close, open_=open_)
    r = Rule(id="r1", condition=parse(f"any(price > 0.000000000001, change_24h {op} {pct}%)"),
             symbols=("BTCUSDT",), message="{change_24h}")  # fmt: skip
    (alert,) = Engine([r]).process([ticker])
    value = percent(close - open_, open_)
    shown = float(render(alert))
    assert (shown > pct) - (shown < pct) == (value > pct) - (value < pct)


@pytest.mark.parametrize("template", ["{quote_volume}", "{volume}"])
def test_an_amount_an_alert_shows_is_never_rounded_onto_its_threshold(template: str):
    """'quote_volume > 11.999b' on an amount of 11.999b plus a little: the alert shows every
    digit (format_number), never a short '12b' that reads as past or at the threshold."""
    metric = template.strip("{}")
    amount = 11_999_000_000.5
    ticker = Ticker("BTCUSDT", T, 101.0, 100.0, 110.0, 90.0, amount, amount, "101")
    alert = _fired(f"any(price > 1, {metric} > 11.999b)", ticker, template)
    assert render(alert) == "11999000000.5"
