"""Rule ids of chat watches: ``w`` and the watch's number (``w12``), the id a chat sees in
``/list`` and gives to ``/unwatch``; and what a Telegram chat id may be.

Watches and the rule files' rules share one engine, so their ids must never meet: rule files
may not use ``w`` (or ``W``) followed by digits, and the loader refuses such an id at its place.
A watch's id is derived from its database row, so watches kept before this rule existed load
under the same ids.
"""

from __future__ import annotations

import re

__all__ = ["CHAT_ID_RANGE", "chat_id", "is_reserved", "watch_number", "watch_rule_id"]

_WATCH = re.compile(r"w([1-9][0-9]*)")
_RESERVED = re.compile(r"[wW][0-9]+")
_INTEGER = re.compile(r"[+-]?0*([0-9]+)")
#: Telegram's chat ids are signed 64-bit integers, and SQLite stores no larger ones
CHAT_ID_MIN = -(2**63)
CHAT_ID_MAX = 2**63 - 1
CHAT_ID_RANGE = f"{CHAT_ID_MIN} to {CHAT_ID_MAX}"


def watch_rule_id(number: int) -> str:
    """The rule id of watch ``number``."""
    return f"w{number}"


def watch_number(rule_id: str) -> int | None:
    """The watch number in a watch's rule id; None for any other id (a rule file's)."""
    match = _WATCH.fullmatch(rule_id)
    return int(match.group(1)) if match else None


def is_reserved(rule_id: str) -> bool:
    """Whether an id is in the watches' namespace, and so not for rule files."""
    return _RESERVED.fullmatch(rule_id) is not None


def chat_id(text: str) -> int | None:
    """The Telegram chat id ``text`` holds (an integer in :data:`CHAT_ID_RANGE`, with an optional
    sign, white space around), or None: a larger one would pass here and then fail every store
    of an alert to that chat."""
    match = _INTEGER.fullmatch(text.strip())
    # the digits are counted before int(), which refuses over 4300 of them
    if match is None or len(match.group(1)) > len(str(CHAT_ID_MAX)):
        return None
    value = int(match.group())
    return value if CHAT_ID_MIN <= value <= CHAT_ID_MAX else None
