"""Reading settings from the environment: one error message per bad variable, naming it."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from alertbot.errors import ConfigError
from alertbot.rules.urls import shown_url, url_text_problem
from alertbot.zones import UTC_NAME, ZoneError, find_zone

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_seconds(text: str) -> float:
    """``15s``, ``500ms``, ``23h30m`` or a plain number of seconds -> seconds.

    Raises ValueError with a readable message.
    """
    s = text.strip().lower().replace(" ", "")
    try:
        value = float(s)
    except ValueError:
        pos = 0
        value = 0.0
        for match in _PART_RE.finditer(s):
            if match.start() != pos:
                break
            value += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(s) or not s:
            raise ValueError(
                f"expected a duration like 15s, 500ms or 23h30m, got {text!r}"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a duration like 15s, 500ms or 23h30m, got {text!r}")
    return value


#: the longest duration a setting takes unless it says otherwise: longer ones are typos (``1e20``)
#: and overflow the scheduler's date arithmetic at start (APScheduler, asyncio)
MAX_SECONDS = 366 * 86400.0


def env_seconds(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_SECONDS,
) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = parse_seconds(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum:g}s, got {text!r}")
    if value > maximum:
        raise ConfigError(
            f"{name}: must be at most {maximum / 86400:g} days ({maximum:g}s), got {text!r}"
        )
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {text!r}")
    return text


def env_zone(env: Mapping[str, str], name: str) -> str:
    """A time zone setting (``Europe/Berlin``, ``UTC+8``), as :func:`find_zone` names it."""
    text = env.get(name, "").strip()
    if not text:
        return UTC_NAME
    try:
        return find_zone(text)
    except ZoneError as exc:
        raise ConfigError(f"{name}: {exc.text(repr(text))}") from None


def env_url(
    env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...], *, root: bool = True
) -> str:
    """A URL setting, checked. ``root``: a server root that paths are appended to, returned
    without its trailing ``/``; otherwise a URL used as it is (a webhook: ``/alerts/`` and
    ``/alerts`` are different resources, and the receiver may answer only one of them)."""
    text = env.get(name, "").strip()
    if not text:
        return default
    shown = shown_url(text)  # in an error: the URL's password never
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in schemes or not rest.strip("/"):
        raise ConfigError(
            f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
            f"got {shown!r}"
        )
    problem = url_text_problem(text)  # as the loader and the webhook sender refuse it
    if problem is not None:
        raise ConfigError(f"{name}: not a URL one can post to: {problem}")
    # httpx takes a port out of range and fails only when connecting, with an error that is
    # not one of httpx's own
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an IPv6 address's bracket left open
        raise ConfigError(f"{name}: not a URL ({exc}), got {shown!r}") from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{name}: the port must be a number in 1..65535, got {shown!r}")
    return text.rstrip("/") if root else text


#: secrets, which every log line has redacted and which may also come from files
SECRET_VARS = ("ALERTBOT_TELEGRAM_TOKEN", "ALERTBOT_WEBHOOK_SECRET")
#: what may come from a file (container secrets): VAR_FILE names the file. The webhook's URL
#: too, which may be its own credential (Slack's, Discord's); it is no SECRET_VARS entry: log
#: lines show it as alertbot.rules.urls.shown_url does, which tells webhooks apart
FILE_VARS = (*SECRET_VARS, "ALERTBOT_WEBHOOK_URL")

#: every setting alertbot reads: the README's settings table (a test keeps the two the same),
#: and the secrets' ``_FILE`` forms
SETTINGS = frozenset(
    {
        "ALERTBOT_ADMIN_CHATS",
        "ALERTBOT_ALERT_RETENTION",
        "ALERTBOT_ALLOWED_CHATS",
        "ALERTBOT_BACKUP_DIR",
        "ALERTBOT_BACKUP_EVERY",
        "ALERTBOT_BACKUP_KEEP",
        "ALERTBOT_BINANCE_REST_URL",
        "ALERTBOT_BINANCE_WS_URL",
        "ALERTBOT_CHAT_POLL_MARGIN",
        "ALERTBOT_CHAT_POLL_REMINDER",
        "ALERTBOT_CHAT_STOP_TIMEOUT",
        "ALERTBOT_DB",
        "ALERTBOT_DELIVERY_GIVE_UP",
        "ALERTBOT_DELIVERY_MEMORY",
        "ALERTBOT_FALLBACK_AFTER",
        "ALERTBOT_FEED_AUTO_THRESHOLD",
        "ALERTBOT_FEED_BACKOFF_MAX",
        "ALERTBOT_FEED_DOWN_AFTER",
        "ALERTBOT_FEED_MAX_AGE",
        "ALERTBOT_FEED_MAX_STREAMS",
        "ALERTBOT_FEED_QUEUE",
        "ALERTBOT_FEED_STALE_AFTER",
        "ALERTBOT_FEED_STREAM",
        "ALERTBOT_FEED_SYMBOL_STALE_AFTER",
        "ALERTBOT_HEARTBEAT",
        "ALERTBOT_HTTP_PORT",
        "ALERTBOT_LOG_FORMAT",
        "ALERTBOT_LOG_LEVEL",
        "ALERTBOT_MARKET",
        "ALERTBOT_MAX_WATCHES",
        "ALERTBOT_RULES_CHECK",
        "ALERTBOT_SHUTDOWN_GRACE",
        "ALERTBOT_TELEGRAM_API_URL",
        "ALERTBOT_TELEGRAM_TOKEN",
        "ALERTBOT_TIMEZONE",
        "ALERTBOT_WATCH_COOLDOWN",
        "ALERTBOT_WEBHOOK_FORMAT",
        "ALERTBOT_WEBHOOK_SECRET",
        "ALERTBOT_WEBHOOK_URL",
    }
    | {f"{var}_FILE" for var in FILE_VARS}
)


def unknown_setting(name: str) -> str | None:
    """What is wrong with ``name`` when it is no setting (a typo, mostly), else None."""
    if name in SETTINGS:
        return None
    close = difflib.get_close_matches(name, sorted(SETTINGS), n=1)
    return f"unknown setting {name}" + (f" (did you mean {close[0]}?)" if close else "")


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_config(path: str) -> dict[str, str]:
    """A settings file: ``ALERTBOT_NAME=value`` lines, ``#`` comments, blank lines.

    Raises ConfigError naming ``FILE:LINE`` for anything else.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:  # the reason alone: the message names the file already
        why = exc.strerror or str(exc)
        raise ConfigError(f"{path}: cannot read the settings file: {why}") from None
    try:
        lines = data.decode("utf-8-sig").splitlines()  # a byte-order mark is not a key's
    except UnicodeDecodeError as exc:
        # where, in lines: the byte itself may be a secret's
        where = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: cannot read the settings file: not UTF-8 text (line {where})"
        ) from None
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key.startswith("ALERTBOT_") or not key.replace("_", "").isalnum():
            # the line's first word only, and only when it is a name: the rest, or a line
            # without a name, may be a secret (a token written "NAME: value", or on its own)
            start = re.split(r"[\s=:]", text, maxsplit=1)[0]
            shown = (
                f"a line starting {start!r}"
                if _NAME_RE.fullmatch(start) and start.startswith(("ALERTBOT_", "export"))
                else "a line that is not one"
            )
            raise ConfigError(
                f"{path}:{number}: expected ALERTBOT_NAME=value, got {shown}"
                " (the rest of the line is not shown: it may hold a secret)"
            )
        problem = unknown_setting(key)
        if problem is not None:  # a typo would otherwise be ignored without a word
            raise ConfigError(f"{path}:{number}: {problem}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def environment(env: Mapping[str, str], config: str | None = None) -> dict[str, str]:
    """The settings in effect: the config file's, overridden by the environment's (a secret
    the environment gives as ``VAR`` or ``VAR_FILE`` overrides both of the file's), with
    secrets read from ``VAR_FILE`` where ``VAR`` itself is not set."""
    merged = read_config(config) if config else {}
    for var in FILE_VARS:
        if env.get(var, "").strip() or env.get(f"{var}_FILE", "").strip():
            # the environment gives this secret, in either form: the file's, in either, is
            # overridden (else its VAR would win over the environment's VAR_FILE)
            merged.pop(var, None)
            merged.pop(f"{var}_FILE", None)
    merged.update(env)
    for var in FILE_VARS:
        path = merged.get(f"{var}_FILE", "").strip()
        if path and not merged.get(var, "").strip():
            merged[var] = read_secret_file(var, path)
    return merged


def read_secret_file(var: str, path: str) -> str:
    """The secret in the file ``path`` (``var``'s ``_FILE`` form: a Docker or Kubernetes
    secret), without the white space around it. Raises ConfigError, never quoting the secret,
    for a file that cannot be read or holds nothing."""
    try:
        # utf-8-sig: a byte-order mark (Windows Notepad) is no part of the secret; kept, a
        # webhook secret signed every alert with a key the receiver does not have
        with open(path, encoding="utf-8-sig") as fh:
            secret = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        # neither the value nor the exception's text (which quotes it): a secret put here
        # instead of in a file would be printed
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise ConfigError(
            f"{var}_FILE: does not name a readable file ({why}); is it the secret itself? put "
            "the secret in a file and name the file here"
        ) from None
    if not secret:  # not mounted yet, or written empty: never taken as no secret
        raise ConfigError(
            f"{var}_FILE: the file {path!r} is empty (or only white space); put the secret in "
            f"it, or unset {var}_FILE"
        )
    return secret


def env_secret(env: Mapping[str, str], var: str) -> str | None:
    """A secret a rule file's channel names (``secret_env``, ``webhook_env``): ``var``'s value,
    else the content of the file ``var_FILE`` names (as ALERTBOT_*_FILE); None: neither set.
    Raises ConfigError for a ``_FILE`` that cannot be read."""
    value = env.get(var, "")
    if value.strip():
        return value
    path = env.get(f"{var}_FILE", "").strip()
    return read_secret_file(var, path) if path else None
