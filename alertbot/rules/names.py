"""What a symbol name is, for rule files, chat commands and stream names alike.

Binance lists contracts named in Chinese (``币安人生USDT``, ``牛来USDT``, ``龙虾USDT``), some
of them among its most traded, so a symbol is not only ``[A-Z0-9_]``. A symbol here is one or more
characters, each an ASCII capital letter, an ASCII digit, ``_`` (dated contracts:
``BTCUSDT_251226``), or a letter or number outside ASCII that has no case (CJK and the like).
Such a name has exactly one spelling in any case a user may type (``币安人生usdt``), and its
stream name is the symbol with its ASCII letters lowered (``币安人生usdt@miniTicker``), the form
other clients checked against Binance's combined streams. Letters outside ASCII that have a
case (``É``) are not accepted: Binance lists none, and how it would lower them in a stream name
is not known.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "ascii_lower",
    "ascii_upper",
    "is_pattern",
    "is_symbol",
    "normalise",
    "symbol_char",
]

_LOWER = {ord(c): ord(c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"}
_UPPER = {v: k for k, v in _LOWER.items()}
_ASCII_SYMBOL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def ascii_upper(text: str) -> str:
    """``text`` with its ASCII letters in capitals; every other character as it is."""
    return text.translate(_LOWER)


def ascii_lower(text: str) -> str:
    """``text`` with its ASCII letters in lower case; every other character as it is."""
    return text.translate(_UPPER)


def normalise(text: str) -> str:
    """A symbol (or pattern) as typed, in its one spelling: NFC, ASCII letters in capitals."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return ascii_upper(text)


def symbol_char(ch: str) -> bool:
    """Whether ``ch`` may appear in a (normalised) symbol."""
    if ch in _ASCII_SYMBOL:
        return True
    if ch.isascii():
        return False
    return ch.isalnum() and ch.lower() == ch == ch.upper()


def is_symbol(text: str) -> bool:
    """Whether ``text`` is a normalised symbol name."""
    return bool(text) and all(symbol_char(ch) for ch in text)


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a normalised symbol name or a glob of ``*`` and ``?`` over one."""
    return bool(text) and all(ch in "*?" or symbol_char(ch) for ch in text)
