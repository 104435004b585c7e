"""Reading settings from the environment: one error message per bad variable, naming it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from alertbot.errors import ConfigError

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


def env_seconds(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0
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


def env_url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    text = env.get(name, "").strip()
    if not text:
        return default
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in schemes or not rest.strip("/"):
        raise ConfigError(
            f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}, "
            f"got {text!r}"
        )
    return text.rstrip("/")
