"""The condition language shared by rule files (``when:``, ``all:``, ``any:``) and ``/watch``.

::

    condition  := [metric] op number              price > 70000, change_24h >= 5%
                | [metric] 'crosses' [dir] number price crosses above 70k
                | 'breaks' '24h' ('high'|'low')
                | ('rises'|'drops'|'moves') pct 'in' duration
                | ('all'|'any') '(' condition (',' condition)* ')'    nested at most 16 deep
    metric     := price | change_24h | range_24h | volume | quote_volume | high | low
    op         := > | >= | < | <=
    dir        := above | below
    number     := decimal [k|m|b]   a trailing % only on percent metrics and move sizes
    duration   := integer (s|m|h|d)

``parse`` turns text into a frozen value; ``format_condition`` gives its canonical text, and
``parse(format_condition(c)) == c`` for every condition. Errors carry the 1-based column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from alertbot.errors import ConditionError

Metric = Literal["price", "change_24h", "range_24h", "volume", "quote_volume", "high", "low"]
Op = Literal[">", ">=", "<", "<="]

METRICS: tuple[Metric, ...] = (
    "price",
    "change_24h",
    "range_24h",
    "volume",
    "quote_volume",
    "high",
    "low",
)
_METRIC_BY_NAME: dict[str, Metric] = {m: m for m in METRICS}
PERCENT_METRICS = frozenset({"change_24h", "range_24h"})
#: metrics whose values may be negative (24h change); all others are >= 0 by construction
SIGNED_METRICS = frozenset({"change_24h"})
#: metrics a threshold of 0 means nothing for
_POSITIVE_METRICS = frozenset({"price", "high", "low", "volume", "quote_volume"})
OPS: tuple[Op, ...] = (">", ">=", "<", "<=")
_OP_BY_TEXT: dict[str, Op] = {op: op for op in OPS}
_MOVE_BY_NAME: dict[str, Literal["rises", "drops", "moves"]] = {
    "rises": "rises",
    "drops": "drops",
    "moves": "moves",
}
#: a suffix shifts the decimal point by this many places (k x1e3, m x1e6, b x1e9)
SUFFIXES = {"k": 3, "m": 6, "b": 9}
DURATION_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: longest window a move condition may use: the 24h statistics make longer ones meaningless
#: for most users, and each window keeps its prices in memory
MAX_MOVE_WINDOW_MS = 7 * 86_400_000
#: longest duration accepted anywhere (cooldowns, expiry offsets): one year
MAX_DURATION_MS = 366 * 86_400_000
#: how many all/any levels may nest (a rule file's all:/any: lists count too). Every walk over a
#: condition (comparing, hashing, evaluating) recurses once per level, the compiled ones without
#: a recursion check: far deeper conditions crashed the process or broke every later reload
MAX_NESTING = 16
TOO_DEEP = f"all/any nest more than {MAX_NESTING} levels deep"


@dataclass(frozen=True, slots=True)
class Level:
    """``metric op value``: true while the comparison holds."""

    metric: Metric
    op: Op
    value: float


@dataclass(frozen=True, slots=True)
class Cross:
    """``metric crosses [above|below] value``: true on the tick that crosses."""

    metric: Metric
    direction: Literal["above", "below"] | None
    value: float


@dataclass(frozen=True, slots=True)
class Breaks:
    """``breaks 24h high|low``: true on a tick that prints a new 24h extreme."""

    side: Literal["high", "low"]


@dataclass(frozen=True, slots=True)
class Move:
    """``rises|drops|moves pct% in window``: a move of at least ``pct`` percent in the window."""

    kind: Literal["rises", "drops", "moves"]
    pct: float
    window_ms: int


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Condition, ...]


Leaf = Level | Cross | Breaks | Move
Condition = Level | Cross | Breaks | Move | AllOf | AnyOf


# ---------------------------------------------------------------- numbers and durations

# [0-9], not \d: float() would accept other scripts' digits, the grammar does not. ASCII with
# IGNORECASE: without it the Kelvin sign matches as k and the long s (U+017F) as s
_NUMBER_RE = re.compile(
    r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([kmb]?)(%?)$", re.IGNORECASE | re.ASCII
)
_DURATION_RE = re.compile(r"^([0-9]+)([smhd])$", re.IGNORECASE | re.ASCII)
#: 366 days is 31,622,400 s: a count of more digits is longer in any unit
_MAX_DURATION_DIGITS = 8


def format_number(x: float) -> str:
    """Shortest plain decimal text that reads back as exactly ``x`` (no exponent)."""
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _scaled(digits: str, suffix: str) -> float:
    """The decimal ``digits`` times its suffix's power of ten, as float() reads that number
    written out: ``32.2k`` is 32200, where 32.2 * 1000 in floating point is 32200.000000000004."""
    if not suffix:
        return float(digits)
    return float(f"{digits}e{SUFFIXES[suffix.lower()]}")


def parse_duration(text: str) -> int:
    """``15m`` -> 900000 (ms). Raises ValueError with a readable message."""
    match = _DURATION_RE.match(text.strip())
    if not match:
        raise ValueError(f"expected a duration like 30s, 15m, 4h or 1d, got {_shown(text)}")
    # counted before int(), which refuses over 4300 digits with advice for programmers
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > _MAX_DURATION_DIGITS:
        raise ValueError(f"duration {_shown(text)} is longer than 366 days")
    ms = int(digits) * DURATION_UNITS[match.group(2).lower()]
    if ms > MAX_DURATION_MS:
        raise ValueError(f"duration {_shown(text)} is longer than 366 days")
    return ms


def _shown(text: str) -> str:
    """User text quoted for a message, cut short when long."""
    return repr(text if len(text) <= 32 else text[:31] + "…")


def format_duration(ms: int) -> str:
    """900000 -> ``15m``: the largest unit that divides exactly."""
    for unit in ("d", "h", "m", "s"):
        size = DURATION_UNITS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise ValueError(f"{ms} ms is not a whole number of seconds")


# ---------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(r"\s*(>=|<=|>|<|\(|\)|,|[^\s<>(),]+)")


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    column: int  # 1-based

    @property
    def word(self) -> str:
        return self.text.lower()


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:  # only trailing white space is left
            break
        tokens.append(_Token(match.group(1), match.start(1) + 1))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, nesting: int) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.nesting = nesting  # the all/any levels around the condition being read

    # -- helpers
    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def end_column(self) -> int:
        return len(self.text.rstrip()) + 1

    def fail(self, message: str, token: _Token | None) -> ConditionError:
        column = token.column if token is not None else self.end_column()
        where = f"at column {column}" if token is not None else "at the end"
        return ConditionError(f"{message} {where}", column)

    def next(self, expected: str, after: str | None = None) -> _Token:
        token = self.peek()
        if token is None:
            context = f" after {after!r}" if after else ""
            raise self.fail(f"expected {expected}{context}", None)
        self.pos += 1
        return token

    # -- grammar
    def parse(self) -> Condition:
        if not self.tokens:
            raise ConditionError("empty condition: expected e.g. 'price > 70000'", 1)
        cond = self.condition()
        extra = self.peek()
        if extra is not None:
            raise self.fail(f"unexpected {extra.text!r}", extra)
        return cond

    def condition(self) -> Condition:
        first = self.next("a condition")
        word = first.word
        if word in ("all", "any"):
            return self.composite(first)
        if word == "breaks":
            return self.breaks(first)
        if word in ("rises", "drops", "moves"):
            return self.move(first)
        metric: Metric = "price"
        op_token = first
        if word in METRICS:
            metric = _METRIC_BY_NAME[word]
            op_token = self.next("'>', '>=', '<', '<=' or 'crosses'", after=first.text)
        elif word not in OPS and word != "crosses":
            raise self.fail(
                f"unknown metric or condition {first.text!r}; expected one of "
                "price, change_24h, range_24h, volume, quote_volume, high, low, "
                "crosses, breaks, rises, drops, moves",
                first,
            )
        if op_token.word == "crosses":
            direction: Literal["above", "below"] | None = None
            after = op_token.text
            token = self.peek()
            if token is not None and token.word in ("above", "below"):
                self.pos += 1
                direction = "above" if token.word == "above" else "below"
                after = token.text
            return Cross(metric, direction, self.number(metric, after=after))
        if op_token.word not in OPS:
            raise self.fail(
                f"expected '>', '>=', '<', '<=' or 'crosses' after {metric!r}, "
                f"got {op_token.text!r}",
                op_token,
            )
        return Level(metric, _OP_BY_TEXT[op_token.word], self.number(metric, after=op_token.text))

    def number(self, metric: Metric, after: str) -> float:
        token = self.next("a number", after=after)
        match = _NUMBER_RE.match(token.text)
        if not match:
            raise self.fail(f"expected a number after {after!r}, got {token.text!r}", token)
        sign, digits, suffix, percent = match.groups()
        if suffix and percent:
            raise self.fail(f"a percentage takes no k/m/b suffix: {token.text!r}", token)
        value = _scaled(digits, suffix)
        if sign == "-":
            value = -value
        if percent and metric not in PERCENT_METRICS:
            raise self.fail(f"'%' only goes with change_24h and range_24h, not {metric}", token)
        if suffix and metric in PERCENT_METRICS:
            # 'change_24h > 1m' would be a million percent: surely a typo, never a threshold
            raise self.fail(
                f"{metric} is a percentage and takes no k/m/b suffix: write it like 5%, "
                f"got {token.text!r}",
                token,
            )
        if not math.isfinite(value):
            raise self.fail(f"number {token.text!r} is too large", token)
        if value < 0 and metric not in SIGNED_METRICS:
            raise self.fail(f"{metric} cannot be negative", token)
        # a price is never 0, and a volume never below 0: 'volume > 0' would hold on every tick
        # of a traded symbol, 'volume < 0' on none
        if value == 0 and metric in _POSITIVE_METRICS:
            raise self.fail(f"{metric} must be greater than 0", token)
        return value + 0.0  # normalise -0.0

    def breaks(self, first: _Token) -> Breaks:
        window = self.next("'24h'", after=first.text)
        if window.word != "24h":
            raise self.fail(f"expected '24h' after 'breaks', got {window.text!r}", window)
        side = self.next("'high' or 'low'", after=window.text)
        if side.word not in ("high", "low"):
            raise self.fail(f"expected 'high' or 'low' after '24h', got {side.text!r}", side)
        return Breaks("high" if side.word == "high" else "low")

    def move(self, first: _Token) -> Move:
        token = self.next("a percentage like 5%", after=first.text)
        match = _NUMBER_RE.match(token.text)
        if not match or match.group(1) or match.group(3):
            raise self.fail(
                f"expected a percentage like 5% after {first.text!r}, got {token.text!r}", token
            )
        pct = float(match.group(2))
        if not pct > 0 or not math.isfinite(pct):
            raise self.fail("the move size must be greater than 0%", token)
        if first.word == "drops" and pct >= 100:
            raise self.fail("a price cannot drop by 100% or more", token)
        in_token = self.next("'in'", after=token.text)
        if in_token.word != "in":
            raise self.fail(f"expected 'in' after {token.text!r}, got {in_token.text!r}", in_token)
        dur = self.next("a duration like 15m", after="in")
        try:
            window = parse_duration(dur.text)
        except ValueError as exc:
            raise self.fail(str(exc), dur) from None
        if window <= 0 or window > MAX_MOVE_WINDOW_MS:
            raise self.fail("the window must be between 1s and 7d", dur)
        return Move(_MOVE_BY_NAME[first.word], pct, window)

    def composite(self, first: _Token) -> AllOf | AnyOf:
        if self.nesting >= MAX_NESTING:
            raise self.fail(TOO_DEEP, first)
        opening = self.next("'('", after=first.text)
        if opening.text != "(":
            raise self.fail(f"expected '(' after {first.text!r}", opening)
        self.nesting += 1
        parts = [self.condition()]
        while True:
            token = self.next("',' or ')'")
            if token.text == ")":
                break
            if token.text != ",":
                raise self.fail(f"expected ',' or ')', got {token.text!r}", token)
            parts.append(self.condition())
        self.nesting -= 1
        return AllOf(tuple(parts)) if first.word == "all" else AnyOf(tuple(parts))


def parse(text: str, nesting: int = 0) -> Condition:
    """Parse a condition; raises :class:`ConditionError` naming the column and what was expected.

    ``nesting``: the all/any levels that enclose the text (a rule file's ``all:`` lists), which
    count towards :data:`MAX_NESTING`.
    """
    return _Parser(text, nesting).parse()


def format_condition(cond: Condition) -> str:
    """Canonical text of a condition, e.g. ``price crosses above 70000``."""
    if isinstance(cond, Level):
        return f"{cond.metric} {cond.op} {_format_value(cond.metric, cond.value)}"
    if isinstance(cond, Cross):
        direction = f" {cond.direction}" if cond.direction else ""
        return f"{cond.metric} crosses{direction} {_format_value(cond.metric, cond.value)}"
    if isinstance(cond, Breaks):
        return f"breaks 24h {cond.side}"
    if isinstance(cond, Move):
        return f"{cond.kind} {format_number(cond.pct)}% in {format_duration(cond.window_ms)}"
    name = "all" if isinstance(cond, AllOf) else "any"
    return f"{name}({', '.join(format_condition(p) for p in cond.parts)})"


def _format_value(metric: Metric, value: float) -> str:
    text = format_number(value)
    # volumes read better as 2b than as 2000000000; the suffixed text parses back exactly
    for suffix, size in (("b", 1e9), ("m", 1e6)):
        if abs(value) >= size and metric not in PERCENT_METRICS:
            digits = format_number(value / size)
            if len(digits) + 1 < len(text) and _scaled(digits, suffix) == value:
                text = digits + suffix
            break
    return f"{text}%" if metric in PERCENT_METRICS else text


def leaves(cond: Condition) -> list[Leaf]:
    """The leaf conditions of ``cond``, depth first."""
    if isinstance(cond, AllOf | AnyOf):
        return [leaf for part in cond.parts for leaf in leaves(part)]
    return [cond]


def threshold_text(cond: Condition) -> str:
    """The number a message's ``{threshold}`` shows: the first leaf that has one."""
    for leaf in leaves(cond):
        if isinstance(leaf, Level | Cross):
            return _format_value(leaf.metric, leaf.value)
        if isinstance(leaf, Move):
            return f"{format_number(leaf.pct)}%"
    return ""
