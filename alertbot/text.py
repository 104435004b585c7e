"""Text that is not valid Unicode: a Python ``str`` may hold a lone surrogate (U+D800-U+DFFF
alone), made by a ``\\ud800`` escape in YAML or JSON. No UTF-8 encoder takes one: SQLite (as
Python binds it), Telegram, orjson (the webhook body, JSON log lines) all refuse it. Where text
comes in it is refused with a message (a rule file, a chat command) or mended (a record that
must not be lost); this module only tells and mends. No I/O, no clock.

Also the counts of summary and log lines: ``plural(1, "watch", "watches")`` is ``1 watch``.
"""

from __future__ import annotations

import re

#: a surrogate code point; in a str that UTF-8 can encode, there is none
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_text(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (it has no lone surrogate)."""
    return value.isascii() or _SURROGATE.search(value) is None


def first_bad(value: str) -> int:
    """The index of the first character of ``value`` that UTF-8 cannot encode (-1: none)."""
    found = None if value.isascii() else _SURROGATE.search(value)
    return -1 if found is None else found.start()


def mend(value: str) -> str:
    """``value`` with each lone surrogate as U+FFFD, the replacement character; a high and a
    low surrogate side by side (a character past U+FFFF written as two escapes, as JSON does)
    become that character."""
    if is_text(value):
        return value
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1: ``many``, or ``word`` and an s."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {many if many is not None else word + 's'}"


__all__ = ["first_bad", "is_text", "mend", "plural"]
