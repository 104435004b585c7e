"""The evaluation engine (pure): tickers in, alerts out, driven by exchange event time.

How a ticker touches only the rules whose state can change:

* Every (rule, symbol) pair is evaluated by one function, :func:`_evaluate`, which applies
  DESIGN.md's firing semantics in full (single levels and one-way crossings, most rules, from
  values copied onto the pair). Evaluating a pair on a tick where nothing about it changed is
  harmless; the indexes below only decide *which* pairs to evaluate.
* Per symbol and metric, a sorted list of the thresholds that matter (the level ``X`` and the
  re-arm band edge the pair re-arms at). If no threshold lies in the closed interval between the
  metric's previous and current value, no comparison of that metric changed its result, so no
  pair registered there can change state. The gap around the current value is cached, so the
  common case costs two float comparisons; otherwise a walk from the previous value's position
  selects the pairs.
* What cannot be seen on a threshold: cooldown ends and repeats of a condition that still holds
  (a heap of due times per symbol), breakouts
  (pairs evaluated on a tick that breaks and on the tick after), crossings inside composites (the
  tick after a crossing), and pairs that are new (evaluated in full on their first tick).

The per-symbol numbers (the last two ticks, running price extremes, the gaps, the moves windows'
safe bands) and the quiet-or-busy decision per tick live in a :class:`Core`: the C extension
``alertbot.rules._fastcore`` when it was compiled, else its Python twin ``alertbot.rules.core``.
A quiet tick never reaches this module's Python code; for a busy one the core says which indexes
and windows to look at, and the engine tells it the new gaps, pending pairs and timers.

Glob rules are matched once per new symbol. Rules are added and removed while running; an index
that gained thresholds is re-sorted lazily on its next use.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase
from typing import Any, Final

import orjson

from alertbot.rules.conditions import (
    AllOf,
    AnyOf,
    Breaks,
    Condition,
    Cross,
    Level,
    Move,
    format_condition,
    format_number,
    leaves,
    threshold_text,
)
from alertbot.rules.model import Rule, repeats_ok

try:
    from alertbot.rules._fastcore import BUSY, Core
except ImportError:  # not compiled (ALERTBOT_PURE=1, no C compiler): the same in Python
    from alertbot.rules.core import BUSY, Core
from alertbot.ticker import (
    Fields,
    ParseStats,
    Ticker,
    decode_frame,
    parse_element,
    percent,
    read_element,
    unwrap,
)

NAN = math.nan
INF = math.inf

# metric kinds of an index; moves are keyed by (kind, window) on top of these
_PRICE, _CHANGE, _RANGE, _VOLUME, _QUOTE, _HIGH, _LOW, _RISE, _DROP, _MOVE = range(10)
_METRIC_KIND = {
    "price": _PRICE,
    "change_24h": _CHANGE,
    "range_24h": _RANGE,
    "volume": _VOLUME,
    "quote_volume": _QUOTE,
    "high": _HIGH,
    "low": _LOW,
}
_MOVE_KIND = {"rises": _RISE, "drops": _DROP, "moves": _MOVE}
_OP_CODE = {">": 0, ">=": 1, "<": 2, "<=": 3}
_BASIC_KINDS = 7  # _PRICE .. _LOW


class Alert:
    """A rule that fired for a symbol on a ticker (read-only).

    Texts are derived on use: hundreds of alerts may fire in one frame, and formatting is only
    worth paying for an alert that is rendered. A plain class with ``Final`` attributes rather
    than a frozen dataclass, whose generated ``__init__`` stays interpreted even when compiled.
    """

    __slots__ = (
        "direction",
        "order",
        "previous_time",
        "repeated",
        "rule",
        "start",
        "symbol",
        "ticker",
    )

    def __init__(
        self,
        rule: Rule,
        symbol: str,
        ticker: Ticker,
        previous_time: int = -1,
        order: int = 0,
        direction: str = "",
        start: float = NAN,
        repeated: bool = False,
    ) -> None:
        self.rule: Final = rule
        self.symbol: Final = symbol
        self.ticker: Final = ticker
        # The event time of the symbol's tick before this one (-1: none): the feed compares it
        # with its outages to flag an alert computed across a gap.
        self.previous_time: Final = previous_time
        self.order: Final = order  # its rule's place in the engine: alerts of a tick go by it
        # The way a ``crosses X`` (either way) went: "up" or "down"; "" for any other rule.
        # Only the engine knows: at X itself the current value alone cannot tell.
        self.direction: Final = direction
        # For a moves condition (``rises 5% in 15m``): the price the move is measured from, the
        # window's low for a rise, its high for a drop, as the engine found it; NaN otherwise.
        self.start: Final = start
        # A ``repeat``: the condition has held since the rule's last alert (not a new entry).
        self.repeated: Final = repeated

    def __repr__(self) -> str:
        return f"Alert(rule={self.rule.id!r}, symbol={self.symbol!r}, time={self.ticker.time})"

    @property
    def condition(self) -> str:
        """The canonical condition text."""
        return format_condition(self.rule.condition)

    @property
    def threshold(self) -> str:
        """What ``{threshold}`` shows: the rule's number, or for a breakout the new extreme."""
        cond = self.rule.condition
        if isinstance(cond, Breaks):
            return format_number(self.ticker.high if cond.side == "high" else self.ticker.low)
        return threshold_text(cond)

    @property
    def time(self) -> int:
        return self.ticker.time

    @property
    def price(self) -> str:
        return self.ticker.price_text


def metric_value(kind: int, t: Ticker) -> float:
    """The value of a basic metric on a ticker; NaN when it cannot be computed."""
    return _metric(kind, t.close, t.open, t.high, t.low, t.volume, t.quote_volume)


def metric_of(metric: str, t: Ticker) -> float:
    """The value of a metric named as in conditions (``price``, ``change_24h``, ...) on a
    ticker; NaN when it cannot be computed."""
    return metric_value(_METRIC_KIND[metric], t)


def level_holds(cond: Level, t: Ticker) -> bool:
    """Whether a level condition is true on a ticker, exactly as the engine decides it."""
    v = metric_of(cond.metric, t)
    op = cond.op
    if op == ">":
        return v > cond.value
    if op == ">=":
        return v >= cond.value
    if op == "<":
        return v < cond.value
    return v <= cond.value


class _Window:
    """A moves window of one symbol: its number in the core, and its rise and drop indexes.

    The extremes and the safe band live in the :class:`Core`; every symbol keeps its recent
    prices there, watched by a moves rule or not, so a rule added later sees the recent past.
    """

    __slots__ = ("drop", "ms", "rise", "w")

    def __init__(self, ms: int, w: int) -> None:
        self.ms = ms
        self.w = w
        self.rise: _Index | None = None
        self.drop: _Index | None = None


def _move_value(kind: int, low: float, high: float, price: float) -> float:
    """Rise, drop, or the larger of both, in percent, for the current price."""
    rise = percent(price - low, low)
    drop = percent(high - price, high)
    if kind == _RISE:
        return rise
    if kind == _DROP:
        return drop
    return rise if _rise_wins(rise, drop) else drop


def _move_start(kind: int, low: float, high: float, price: float) -> float:
    """The price a move to ``price`` is measured from: the window's low for a rise, its high
    for a drop, and for ``moves`` the one of the larger move (as _move_value)."""
    if kind == _RISE:
        return low
    if kind == _DROP:
        return high
    return low if _rise_wins(percent(price - low, low), percent(high - price, high)) else high


def _rise_wins(rise: float, drop: float) -> bool:
    """Whether ``moves`` takes the rise (else the drop): the larger, a NaN never."""
    return rise == rise and (drop != drop or rise >= drop)


def band_edge(x: float, rearm: float, side: int) -> float:
    """``x - |x| * rearm`` (``side`` -1) or ``x + |x| * rearm`` (1), computed on the decimals the
    rule was written with and rounded once: ``> 0.3`` with ``rearm: 7%`` re-arms at or below
    0.279, where floating point makes the edge 0.27899999999999997 and a tick at exactly 0.279
    would not re-arm (and ``rises 3%`` with 20 % re-arms below 2.4, not 2.4000000000000004).
    A value and its edge compare as decimals since tick values are too (percentages rounded
    by :func:`percent`, prices as Binance wrote them)."""
    if not (math.isfinite(x) and math.isfinite(rearm)):
        return x + side * abs(x) * rearm
    with localcontext() as ctx:
        ctx.prec = 60  # exact for any two doubles' shortest decimals
        d = Decimal(repr(x))
        return float(d + side * abs(d) * Decimal(repr(rearm)))


class _Compiled:
    """What the engine derives once from a rule."""

    __slots__ = (
        "band_high",
        "band_low",
        "code",
        "cross_leaves",
        "either",
        "fp",
        "order",
        "pairs",
        "repeat",
        "rule",
        "x",
    )

    def __init__(self, rule: Rule, order: int) -> None:
        self.rule = rule
        self.order = order
        # ms after an alert that a condition still holding alerts again; -1: never
        self.repeat = (
            rule.repeat_ms
            if rule.repeat_ms and repeats_ok(rule.condition) and not rule.once
            else -1
        )
        self.fp = ""  # fingerprint(rule), once asked for
        cond = rule.condition
        self.either = type(cond) is Cross and cond.direction is None
        all_leaves = leaves(cond)
        # crossings inside a composite need the tick after they were true re-evaluated
        self.cross_leaves: tuple[Cross, ...] = (
            tuple(leaf for leaf in all_leaves if type(leaf) is Cross)
            if type(cond) in (AllOf, AnyOf)
            else ()
        )
        # re-arm band edges: metric <= band_low re-arms upward conditions, >= band_high downward
        self.band_low = NAN
        self.band_high = NAN
        b = rule.rearm
        if b > 0:
            if type(cond) is Level or type(cond) is Cross:
                x = cond.value
                self.band_low = band_edge(x, b, -1)
                self.band_high = band_edge(x, b, 1)
            elif type(cond) is Move:
                self.band_low = band_edge(cond.pct, b, -1)
        self.pairs: list[_Pair] = []
        # A single level or one-way crossing (most rules) is evaluated from ``code`` and ``x``,
        # without reaching into the rule and its condition: with a million rules, every object
        # touched per evaluation is a likely cache miss. ``code``: -1 for any other condition,
        # else metric * 8 + op (levels, op in > >= < <= order) or metric * 8 + 4 + direction
        # (crossings, 0 above and 1 below). One int, as every field costs 8 bytes per rule.
        self.code = -1
        self.x = 0.0
        if type(cond) is Level:
            self.code = _METRIC_KIND[cond.metric] * 8 + _OP_CODE[cond.op]
            self.x = cond.value
        elif type(cond) is Cross and cond.direction is not None:
            self.code = _METRIC_KIND[cond.metric] * 8 + 4 + (cond.direction == "below")
            self.x = cond.value

    def matches(self, symbol: str) -> bool:
        rule = self.rule
        return any(fnmatchcase(symbol, p) for p in rule.symbols) and not any(
            fnmatchcase(symbol, p) for p in rule.exclude
        )


class _Pair:
    """The state of one (rule, symbol)."""

    __slots__ = (
        "armed",
        "armed_down",
        "book",
        "c",
        "code",
        "dead",
        "done",
        "edge",
        "last_fired",
        "order",
        "stamp",
        "timer",
        "x",
    )

    def __init__(self, compiled: _Compiled, book: _Book) -> None:
        self.c = compiled
        self.order = compiled.order  # firing order within a tick: the order rules were added
        # the compiled rule's fast evaluation (see _Compiled), copied here: one object less to
        # reach per evaluation; edge: the band edge it re-arms at (NaN: no band)
        self.code = compiled.code
        self.x = compiled.x
        code = compiled.code
        up = (code & 4 == 0 and code & 3 < 2) or code & 5 == 4  # > >= or crosses above
        self.edge = compiled.band_low if up else compiled.band_high
        self.book = book
        self.armed = True
        self.armed_down = True  # the second flag of ``crosses X``
        self.last_fired: int | None = None
        self.done = False  # fired with ``once``, or expired
        self.dead = False  # its rule was removed
        self.stamp = -1  # the tick it was last collected for evaluation
        self.timer = -1  # due time of its pending timer


class _Index:
    """Thresholds of one metric of one symbol, sorted, with the pairs they belong to."""

    __slots__ = ("dead", "dirty", "entries", "ghi", "glo", "keys", "kind", "pos", "value", "w")

    def __init__(self, kind: int, w: int = -1) -> None:
        self.kind = kind
        self.w = w  # the window of a rise or drop index, else -1
        self.keys: list[float] = []
        self.entries: list[_Pair] = []
        # The metric on an earlier tick. Ticks that stay inside the gap do not update it: any value
        # in the same gap selects the same thresholds.
        self.value = NAN
        self.pos = -1  # bisect_left(keys, value) when known, else -1
        self.glo = NAN  # no threshold lies strictly between glo and ghi (NaN: unknown)
        self.ghi = NAN
        self.dirty = False
        self.dead = 0

    def add(self, key: float, pair: _Pair) -> None:
        self.keys.append(key)
        self.entries.append(pair)
        self.dirty = True
        self.glo = self.ghi = NAN

    def rebuild(self) -> None:
        order = sorted(
            (i for i, p in enumerate(self.entries) if not p.dead), key=self.keys.__getitem__
        )
        # fresh float objects, allocated together in sorted order: bisection reads them
        self.keys = [self.keys[i] + 0.0 for i in order]
        self.entries = [self.entries[i] for i in order]
        self.dirty = False
        self.dead = 0
        self.pos = -1

    def touched(self, new: float) -> list[_Pair]:
        """Pairs with a threshold between the previous value and ``new`` (both included).

        The position of the previous value among the keys is kept, and the keys between it and
        the new value are walked: a tick passes few thresholds, and neighbouring keys are close
        in memory where the probes of a bisection over a large index are cache misses.
        """
        if self.dirty:
            self.rebuild()
        old = self.value
        keys = self.keys
        n = len(keys)
        if new != new:
            self.value = new
            self.pos = -1
            self.glo = self.ghi = NAN
            return self.entries[:]  # to "not computable": every comparison may change
        if old != old:
            hit = self.entries[:]  # from "not computable": likewise
            i = _bisect_left(keys, new)
        else:
            p = self.pos
            if p < 0:
                p = _bisect_left(keys, old)
            if old <= new:
                # [bisect_left(keys, old), bisect_right(keys, new))
                b = p
                while b < n and keys[b] <= new:
                    b += 1
                hit = self.entries[p:b]
                i = b  # bisect_left(keys, new), which lies in [p, b]
                while i > p and keys[i - 1] >= new:
                    i -= 1
            else:
                # [bisect_left(keys, new), bisect_right(keys, old))
                i = p
                while i > 0 and keys[i - 1] >= new:
                    i -= 1
                b = p
                while b < n and keys[b] <= old:
                    b += 1
                hit = self.entries[i:b]
        self.value = new
        self.pos = i
        if i < n and keys[i] == new:
            self.glo = self.ghi = new  # sitting on a threshold: look every tick
        else:
            self.glo = keys[i - 1] if i else -INF
            self.ghi = keys[i] if i < n else INF
        return hit


class _Book:
    """Everything the engine keeps about one symbol.

    The values of the last two ticks are copied from the core only for a busy tick (quiet ticks
    never reach Python), so they are those of the last busy tick: all that evaluation needs.
    """

    __slots__ = (
        "basic",
        "breaks",
        "close",
        "core",
        "fresh",
        "high",
        "indexes",
        "last",
        "low",
        "open",
        "p_close",
        "p_high",
        "p_last",
        "p_low",
        "p_open",
        "p_quote",
        "p_text",
        "p_time",
        "p_volume",
        "quote",
        "recheck",
        "slot",
        "symbol",
        "text",
        "time",
        "timers",
        "volume",
        "windows",
    )

    def __init__(self, symbol: str, core: Core) -> None:
        self.symbol = symbol
        self.core = core
        self.slot = core.add(symbol)
        # the last busy tick and the one before it, as plain values; -1: none yet
        self.time = -1
        self.close = self.open = self.high = self.low = self.volume = self.quote = 0.0
        self.text = ""
        self.last: Ticker | None = None  # the last tick as a Ticker, once built
        self.p_time = -1
        self.p_close = self.p_open = self.p_high = self.p_low = self.p_volume = self.p_quote = 0.0
        self.p_text = ""
        self.p_last: Ticker | None = None
        self.indexes: dict[tuple[int, int], _Index] = {}
        # indexes of metrics of the ticker itself, by kind
        self.basic: list[_Index | None] = [None] * _BASIC_KINDS
        self.windows: dict[int, _Window] = {}  # moves windows by length
        self.breaks: list[_Pair] = []
        self.fresh: list[_Pair] = []
        self.recheck: list[_Pair] = []
        self.timers: list[tuple[int, int, _Pair]] = []

    def load(self, v: tuple[Any, ...]) -> None:
        """Take the last two ticks from ``Core.values``."""
        last = self.last
        self.time = v[0]
        self.close = v[1]
        self.open = v[2]
        self.high = v[3]
        self.low = v[4]
        self.volume = v[5]
        self.quote = v[6]
        self.text = v[7]
        p_time: int = v[8]
        self.p_time = p_time
        self.p_close = v[9]
        self.p_open = v[10]
        self.p_high = v[11]
        self.p_low = v[12]
        self.p_volume = v[13]
        self.p_quote = v[14]
        self.p_text = v[15]
        self.p_last = last if last is not None and last.time == p_time else None
        self.last = None

    def current(self) -> Ticker | None:
        if self.last is None and self.time >= 0:
            self.last = Ticker(
                self.symbol,
                self.time,
                self.close,
                self.open,
                self.high,
                self.low,
                self.volume,
                self.quote,
                self.text,
            )
        return self.last

    def previous(self) -> Ticker | None:
        if self.p_last is None and self.p_time >= 0:
            self.p_last = Ticker(
                self.symbol,
                self.p_time,
                self.p_close,
                self.p_open,
                self.p_high,
                self.p_low,
                self.p_volume,
                self.p_quote,
                self.p_text,
            )
        return self.p_last

    def window(self, ms: int) -> _Window:
        window = self.windows.get(ms)
        if window is None:
            window = self.windows[ms] = _Window(ms, self.core.add_window(self.slot, ms))
        return window

    def index(self, kind: int, window_ms: int = 0) -> _Index:
        key = (kind, window_ms)
        index = self.indexes.get(key)
        if index is None:
            if window_ms:
                window = self.window(window_ms)
                index = self.indexes[key] = _Index(kind, window.w)
                if kind == _RISE:
                    window.rise = index
                else:
                    window.drop = index
            else:
                index = self.indexes[key] = _Index(kind)
                self.basic[kind] = index
        return index

    def sync(self, index: _Index) -> None:
        """Tell the core an index's gap."""
        if index.w < 0:
            self.core.set_gap(self.slot, index.kind, index.glo, index.ghi)
        else:
            self.core.set_window_gap(self.slot, index.w, index.kind == _DROP, index.glo, index.ghi)

    def move_indexes(self, leaf: Move) -> list[_Index]:
        """``moves`` is ``rises or drops``: it watches the thresholds of both.

        The caller adds thresholds, so the window's safe band is void until its next refresh.
        """
        kinds = (_RISE, _DROP) if leaf.kind == "moves" else (_MOVE_KIND[leaf.kind],)
        indexes = [self.index(kind, leaf.window_ms) for kind in kinds]
        self.core.invalidate(self.slot, self.window(leaf.window_ms).w)
        return indexes

    def move_value(self, kind: int, window_ms: int, price: float) -> float:
        low, high = self.core.extremes(self.slot, self.windows[window_ms].w)
        return _move_value(kind, low, high, price)

    def move_start(self, kind: int, window_ms: int, price: float) -> float:
        low, high = self.core.extremes(self.slot, self.windows[window_ms].w)
        return _move_start(kind, low, high, price)

    def extremes_from_history(self, window_ms: int, time: int) -> tuple[float, float]:
        """The low and high a window of ``window_ms`` sees at ``time`` (the slot's last tick),
        from the prices kept (Core.history), as its first refresh will take them: for a
        window added since that tick, whose own are not there yet. NaN: no price in it."""
        start = time - window_ms
        prices = [p for t, p in self.core.history(self.slot) if start <= t <= time]
        return (min(prices), max(prices)) if prices else (NAN, NAN)


class Engine:
    """Evaluates rules on tickers, by exchange event time, per DESIGN.md's firing semantics.

    Alerts come out per ticker in input order; within one ticker in the order rules were added.
    Every symbol's recent price extremes are kept for ``history_ms`` (or the longest moves window
    of any rule, if longer), so a moves rule added while running sees the symbol's prices from
    before it was added, as far back as that history reaches.
    """

    def __init__(self, rules: Iterable[Rule] = (), *, history_ms: int = 3_600_000) -> None:
        self._books: dict[str, _Book] = {}
        # how far back every symbol's extremes are kept; widened to the longest moves window
        self._horizon = history_ms
        self._core = Core(history_ms)
        self._slots: list[_Book] = []  # the books by core slot
        self._rules: dict[str, _Compiled] = {}
        self._globs: list[_Compiled] = []
        self._order = 0
        self._fields = Fields()  # reused by process_message
        self._tick = 0
        self._seq = 0
        # pairs whose firing state changed since the last changes() (a set, in order); None
        # until changes() is first called, so that replay and benchmarks keep no such record
        self._changed: dict[_Pair, None] | None = None
        # restored states of pairs not created yet (a glob rule's symbols not seen yet): rule
        # id -> symbol -> (fingerprint, flags, last fired)
        self._restored: dict[str, dict[str, tuple[str, int, int | None]]] = {}
        # saved states made void since the last dropped() (see there), recorded as _changed
        self._dropped: dict[tuple[str, str | None], None] = {}
        self.add_rules(rules)

    # ------------------------------------------------------------ rules

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def rules(self) -> list[Rule]:
        """The rules, in the order they were added."""
        return [c.rule for c in self._rules.values()]

    def add_rules(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            self.add_rule(rule)

    def add_rule(self, rule: Rule) -> None:
        """Add a rule while running; it takes part from the next ticker of each of its symbols.

        Raises ValueError when a rule with the same id is already there.
        """
        if rule.id in self._rules:
            raise ValueError(f"duplicate rule id {rule.id!r}")
        compiled = _Compiled(rule, self._order)
        self._order += 1
        for leaf in leaves(rule.condition):
            if isinstance(leaf, Move) and leaf.window_ms > self._horizon:
                self._horizon = leaf.window_ms
                self._core.set_horizon(leaf.window_ms)
        self._rules[rule.id] = compiled
        if any(_is_glob(p) for p in rule.symbols):
            self._globs.append(compiled)
            for book in self._books.values():
                if compiled.matches(book.symbol):
                    self._attach(compiled, book)
        else:
            for symbol in dict.fromkeys(rule.symbols):
                if compiled.matches(symbol):
                    self._attach(compiled, self._book(symbol))

    def remove_rule(self, rule_id: str) -> bool:
        """Remove a rule and forget its state, the restored states it had still to take up
        too; its saved states are void (:meth:`dropped`). False when there is none with that
        id."""
        compiled = self._rules.pop(rule_id, None)
        if compiled is None:
            return False
        self._detach(compiled)
        self._restored.pop(rule_id, None)
        self._drop(rule_id, None)
        return True

    def _detach(self, compiled: _Compiled) -> None:
        """Take a rule's pairs out of evaluation (the rule is out of ``_rules`` already)."""
        if compiled in self._globs:
            self._globs.remove(compiled)
        for pair in compiled.pairs:
            pair.dead = True
            book = pair.book
            for index in book.indexes.values():
                index.dead += sum(1 for p in index.entries if p is pair)
                if index.dead * 2 > len(index.entries):
                    index.dirty = True
            if pair in book.breaks:
                book.breaks.remove(pair)
                self._core.set_breaks(book.slot, bool(book.breaks))
        compiled.pairs.clear()

    def replace_rule(self, rule: Rule) -> None:
        """Put ``rule`` in the place of the rule with its id (an edited rule file's rule).

        When the condition and the re-arm band are the same (:func:`fingerprint`), the pairs
        of symbols the rule still covers keep their firing state: a level that fired and still
        holds stays quiet, a cooldown runs on. Otherwise the rule starts afresh, as a new one.
        The states of the pairs it does not keep are void (:meth:`dropped`): a symbol it
        covers again later starts afresh. Raises KeyError when there is no rule with that id.
        """
        old = self._rules[rule.id]
        if fingerprint(old.rule) != fingerprint(rule):
            self.remove_rule(rule.id)
            self.add_rule(rule)
            return
        kept = [_state_of(pair) for pair in old.pairs]
        del self._rules[rule.id]
        self._detach(old)
        self.add_rule(rule)  # takes up the restored states still waiting, as a new rule would
        compiled = self._rules[rule.id]
        pairs = {pair.book.symbol: pair for pair in compiled.pairs}
        for _rule_id, symbol, _fp, flags, last_fired in kept:
            pair = pairs.get(symbol)
            if pair is not None:
                _set_state(pair, flags, last_fired)
                self._note(pair)  # saved again: a change of the old pair not saved yet is not lost
            else:  # a symbol the rule no longer covers
                self._drop(rule.id, symbol)
        waiting = self._restored.get(rule.id)
        if waiting is not None:
            for symbol in [s for s in waiting if not compiled.matches(s)]:
                del waiting[symbol]
                self._drop(rule.id, symbol)
            if not waiting:
                del self._restored[rule.id]

    def _book(self, symbol: str) -> _Book:
        """The symbol's book, created (and matched against the glob rules) on first sight."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book(symbol, self._core)
            self._slots.append(book)
            for compiled in self._globs:
                if compiled.matches(symbol):
                    self._attach(compiled, book)
        return book

    def _attach(self, compiled: _Compiled, book: _Book) -> None:
        pair = _Pair(compiled, book)
        compiled.pairs.append(pair)
        if self._restored:
            waiting = self._restored.get(compiled.rule.id)
            if waiting is not None:
                saved = waiting.pop(book.symbol, None)
                if not waiting:
                    del self._restored[compiled.rule.id]
                if saved is not None and saved[0] == fingerprint(compiled.rule):
                    _set_state(pair, saved[1], saved[2])
        book.fresh.append(pair)
        core = self._core
        core.set_pending(book.slot, True)
        cond = compiled.rule.condition
        for leaf in leaves(cond):
            if type(leaf) is Breaks:
                if pair not in book.breaks:
                    book.breaks.append(pair)
                    core.set_breaks(book.slot, True)
            elif type(leaf) is Move:
                for index in book.move_indexes(leaf):
                    index.add(leaf.pct, pair)
                    book.sync(index)
            elif type(leaf) is Level or type(leaf) is Cross:
                index = book.index(_METRIC_KIND[leaf.metric])
                index.add(leaf.value, pair)
                book.sync(index)
        # The re-arm band's edges are thresholds too (only single-leaf conditions have a band),
        # but only the edge the pair re-arms at: the other can change nothing about it.
        for edge in _rearm_edges(compiled):
            if isinstance(cond, Move):
                for index in book.move_indexes(cond):
                    index.add(edge, pair)
                    book.sync(index)
            elif isinstance(cond, Level | Cross):
                index = book.index(_METRIC_KIND[cond.metric])
                index.add(edge, pair)
                book.sync(index)

    # ------------------------------------------------------------ state across restarts

    def changes(self) -> list[PairState]:
        """The firing state of every (rule, symbol) whose state changed since the last call
        (fired, disarmed, re-armed, done): what a restart needs to carry on without firing
        again for a level that is still true, nor forgetting a cooldown."""
        out = []
        if self._changed is not None:
            for pair in self._changed:
                if not pair.dead:
                    out.append(_state_of(pair))
        self._changed = {}
        return out

    def _note(self, pair: _Pair) -> None:
        if self._changed is not None:
            self._changed[pair] = None

    def dropped(self) -> list[tuple[str, str | None]]:
        """The saved states made void since the last call, to be forgotten where they are
        saved, before the next :meth:`changes` are saved: (rule id, None) for all of a rule's
        (removed, or replaced by one that starts afresh), (rule id, symbol) for a symbol a
        rule no longer covers. A rule or symbol that comes back later is new to the engine
        and starts afresh; with its old states forgotten, after a restart too. Recorded, as
        :meth:`changes`, from the first call to that on."""
        out = list(self._dropped)
        self._dropped = {}
        return out

    def _drop(self, rule_id: str, symbol: str | None) -> None:
        if self._changed is not None:
            self._dropped[(rule_id, symbol)] = None

    def covers(self, rule_id: str, symbol: str) -> bool:
        """Whether the rule with this id is evaluated for ``symbol`` (False: no such rule)."""
        compiled = self._rules.get(rule_id)
        return compiled is not None and compiled.matches(symbol)

    def restore(self, states: Iterable[PairState]) -> int:
        """Take up saved states (from :meth:`changes` or :meth:`states` of an earlier run).

        A state applies only while its rule is the same (see :func:`fingerprint`) and covers
        its symbol (:meth:`covers`); one for a pair that does not exist yet (a glob rule's
        symbol not seen yet) waits for it. States of rules the engine does not have are
        dropped. Returns how many were applied or kept.
        """
        n = 0
        for rule_id, symbol, fp, flags, last_fired in states:
            compiled = self._rules.get(rule_id)
            if compiled is None or fp != fingerprint(compiled.rule) or not compiled.matches(symbol):
                continue  # a rule since removed or changed, a symbol since left: afresh
            pair = None
            for p in compiled.pairs:
                if p.book.symbol == symbol:
                    pair = p
                    break
            if pair is None:
                self._restored.setdefault(rule_id, {})[symbol] = (fp, flags, last_fired)
            else:
                _set_state(pair, flags, last_fired)
            n += 1
        return n

    def prime(
        self,
        tickers: Iterable[Ticker],
        histories: dict[str, list[tuple[int, float]]] | None = None,
    ) -> None:
        """Take each ticker as its symbol's last one (an earlier run's), evaluating nothing.

        The next live tick is then compared with it, so a level crossed or a 24h high broken
        while the bot was down is caught, as across a reconnect. Tickers older than what the
        engine already has are ignored. ``histories`` (from :meth:`histories`) gives the moves
        windows back the prices before each ticker, so a move that began before the restart
        is still measured from its start.
        """
        histories = histories or {}
        for t in tickers:
            book = self._book(t.symbol)
            for time, price in histories.get(t.symbol, ()):
                if time < t.time:
                    self._core.remember(book.slot, time, price)
            # the result is ignored: the pairs stay pending and are evaluated in full on the
            # symbol's next tick, against this one
            self._feed(book, t)

    def histories(self) -> dict[str, list[tuple[int, float]]]:
        """Each symbol's recent prices as the moves windows keep them (the running extremes
        within the longest window), for :meth:`prime` after a restart."""
        out = {}
        core = self._core
        for symbol, book in self._books.items():
            points = core.history(book.slot)
            if points:
                out[symbol] = points
        return out

    def last_tickers(self) -> list[Ticker]:
        """Every symbol's last accepted ticker."""
        out = []
        for symbol in self._books:
            t = self.last_ticker(symbol)
            if t is not None:
                out.append(t)
        return out

    # ------------------------------------------------------------ evaluation

    def last_ticker(self, symbol: str) -> Ticker | None:
        """The symbol's last accepted ticker, if any."""
        book = self._books.get(symbol)
        if book is None:
            return None
        v = self._core.values(book.slot)
        if v[0] < 0:
            return None
        return Ticker(symbol, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])

    def move_now(self, symbol: str, condition: Move) -> tuple[float, float] | None:
        """The move ``condition`` (``rises 5% in 1h``) sees in ``symbol`` at its last ticker:
        its size in percent, as the rule compares it, and the price it is measured from (see
        Alert.start). A window added since the symbol's last tick (a new watch's) has not
        seen a tick yet: what it will see, from the prices kept (``history_ms``), as if that
        tick came again. None when no rule of the symbol has that window, or no price is in
        it."""
        book = self._books.get(symbol)
        if book is None or condition.window_ms not in book.windows:
            return None
        t = self.last_ticker(symbol)
        if t is None:
            return None
        kind = _MOVE_KIND[condition.kind]
        w = book.windows[condition.window_ms].w
        low, high = self._core.extremes(book.slot, w)
        if low != low:  # not refreshed since it was added
            low, high = book.extremes_from_history(condition.window_ms, t.time)
        value = _move_value(kind, low, high, t.close)
        if value != value:
            return None
        return value, _move_start(kind, low, high, t.close)

    def symbols(self) -> list[str]:
        """Symbols that rules name or that have been seen on the feed."""
        return list(self._books)

    def process(self, tickers: Iterable[Ticker]) -> list[Alert]:
        """Evaluate every rule that a ticker may affect; returns the alerts in firing order."""
        alerts: list[Alert] = []
        for t in tickers:
            self._accept_ticker(t, alerts)
        return alerts

    def process_message(self, message: object, stats: ParseStats) -> list[Alert]:
        """``process(tickers_from_obj(message, stats))`` without building a ticker per element.

        The feed's path: the core reads well-formed elements of known symbols straight into
        their state and stops only at a busy tick (then evaluated here) or at an element it
        leaves to Python (malformed, or a symbol seen for the first time).
        """
        alerts: list[Alert] = []
        elements = unwrap(message, stats)
        core = self._core
        core.market_st = self._fields.market_st = stats.market_st
        core.good = 0
        n = len(elements)
        i = 0
        while i < n:
            r = core.scan(elements, i)
            i = r >> 1
            if i >= n:
                break
            if r & 1:
                self._busy(self._slots[core.slot], alerts, None)
            else:
                self._element(elements[i], stats, alerts)
            i += 1
        stats.tickers += core.good
        return alerts

    def process_raw(self, raw: bytes, stats: ParseStats) -> list[Alert]:
        """``process_message(decode_frame(raw), stats)`` without decoding the frame when the
        core can read its bytes (the C core, for frames in the plain form Binance writes).

        Raises ``orjson.JSONDecodeError`` for a frame that is not JSON, as decoding would,
        having changed nothing; an array frame orjson refuses for some elements' text alone
        loses only those (counted: see ``salvage``). Elements the core leaves to Python
        (malformed, escaped, of a symbol seen for the first time) are decoded one by one and
        read as by process_message.
        """
        core = self._core
        core.market_st = self._fields.market_st = stats.market_st
        n = core.parse_raw(raw)
        if n < 0:
            return self.process_message(decode_frame(raw), stats)
        alerts: list[Alert] = []
        core.good = 0
        i = 0
        while i < n:
            r = core.scan_raw(i)
            i = r >> 1
            if i >= n:
                break
            if r & 1:
                self._busy(self._slots[core.slot], alerts, None)
            else:
                start, end = core.span(i)
                self._element(orjson.loads(raw[start:end]), stats, alerts)
            i += 1
        stats.tickers += core.good
        return alerts

    def _element(self, el: object, stats: ParseStats, alerts: list[Alert]) -> None:
        f = self._fields
        if read_element(el, f):
            stats.tickers += 1
            book = self._book(f.symbol)
            if (
                self._core.feed(
                    book.slot,
                    f.time,
                    f.close,
                    f.open,
                    f.high,
                    f.low,
                    f.volume,
                    f.quote_volume,
                    f.text,
                )
                == BUSY
            ):
                self._busy(book, alerts, None)
        else:
            t = parse_element(el, stats)  # classifies and counts what is wrong
            if t is not None:
                self._accept_ticker(t, alerts)

    def _accept_ticker(self, t: Ticker, alerts: list[Alert]) -> None:
        book = self._book(t.symbol)
        if self._feed(book, t) == BUSY:
            self._busy(book, alerts, t)

    def _feed(self, book: _Book, t: Ticker) -> int:
        """Hand a ticker to the core: DUPLICATE, QUIET or BUSY."""
        return self._core.feed(
            book.slot,
            t.time,
            t.close,
            t.open,
            t.high,
            t.low,
            t.volume,
            t.quote_volume,
            t.price_text,
        )

    def _busy(self, book: _Book, alerts: list[Alert], t: Ticker | None) -> None:
        """A tick the core found busy: collect the pairs it may change, evaluate them."""
        core = self._core
        slot = book.slot
        v = core.values(slot)
        book.load(v)
        if t is not None:
            book.last = t
        kinds: int = v[16]
        wins: int = v[17]
        flags: int = v[18]
        # Pairs are evaluated as they are found, each once per tick (the stamp), in any order:
        # a pair's evaluation touches only its own state. Alerts are put in rule order at the end.
        self._tick += 1
        stamp = self._tick
        first = len(alerts)
        # both taken before either runs: a fresh pair's evaluation may add it to the next
        # tick's re-checks (a crossing in a composite), which must not be taken now and lost
        fresh = book.fresh
        recheck = book.recheck
        if fresh:
            book.fresh = []
        if recheck:
            book.recheck = []
        if fresh:
            self._run(fresh, 0, len(fresh), stamp, book, alerts)
        if recheck:
            self._run(recheck, 0, len(recheck), stamp, book, alerts)
        kind = 0
        while kinds:
            if kinds & 1:
                index = book.basic[kind]
                assert index is not None
                if index.dirty:
                    index.rebuild()
                    core.set_keys(slot, kind, index.keys)
                # the walk over the thresholds passed runs in the core, over its copy of keys
                r = core.walk(
                    slot,
                    kind,
                    _metric(
                        kind, book.close, book.open, book.high, book.low, book.volume, book.quote
                    ),
                )
                entries = index.entries
                if r < 0:
                    self._run(entries, 0, len(entries), stamp, book, alerts)
                else:
                    self._run(entries, r >> 32, r & 0xFFFFFFFF, stamp, book, alerts)
            kinds >>= 1
            kind += 1
        if wins:
            price = book.close
            for window in book.windows.values():
                w = window.w
                hits = wins >> (2 * w) & 3
                if not hits:
                    continue
                low, high = core.extremes(slot, w)
                rise = window.rise
                if hits & 1 and rise is not None:
                    hit = rise.touched(percent(price - low, low))
                    core.set_window_gap(slot, w, False, rise.glo, rise.ghi)
                    self._run(hit, 0, len(hit), stamp, book, alerts)
                drop = window.drop
                if hits & 2 and drop is not None:
                    hit = drop.touched(percent(high - price, high))
                    core.set_window_gap(slot, w, True, drop.glo, drop.ghi)
                    self._run(hit, 0, len(hit), stamp, book, alerts)
                core.band(slot, w)
        if flags & 1:
            self._run(book.breaks, 0, len(book.breaks), stamp, book, alerts)
        timers = book.timers
        if flags & 2:
            time = book.time
            due: list[_Pair] = []
            while timers and timers[0][0] <= time:
                due.append(heapq.heappop(timers)[2])
            self._run(due, 0, len(due), stamp, book, alerts)
        if len(alerts) - first > 1:
            alerts[first:] = sorted(alerts[first:], key=_alert_order)
        core.settle(slot, bool(book.recheck) or bool(book.fresh), timers[0][0] if timers else -1)

    def _run(
        self,
        pairs: list[_Pair],
        start: int,
        end: int,
        stamp: int,
        book: _Book,
        alerts: list[Alert],
    ) -> None:
        """Evaluate pairs[start:end], skipping those already evaluated on this tick."""
        for i in range(start, end):
            pair = pairs[i]
            if pair.stamp != stamp:
                pair.stamp = stamp
                if not pair.dead:
                    self._evaluate(pair, book, alerts)

    def _evaluate(self, pair: _Pair, book: _Book, alerts: list[Alert]) -> None:
        """Apply the firing semantics to one pair on one tick."""
        if pair.done:
            return
        code = pair.code
        if code >= 0:
            metric = code >> 3
            now = _metric(
                metric, book.close, book.open, book.high, book.low, book.volume, book.quote
            )
            x = pair.x
            if code & 4 == 0:  # a level
                op = code & 3
                if op == 0:
                    truth = now > x
                elif op == 1:
                    truth = now >= x
                elif op == 2:
                    truth = now < x
                else:
                    truth = now <= x
                up = op < 2
            else:  # a one-way crossing
                up = code & 1 == 0
                if book.p_time < 0:
                    truth = False  # the first tick never crosses
                else:
                    before = _metric(
                        metric,
                        book.p_close,
                        book.p_open,
                        book.p_high,
                        book.p_low,
                        book.p_volume,
                        book.p_quote,
                    )
                    truth = before < x <= now if up else before > x >= now
            if truth:
                if pair.armed:
                    if self._fire(pair, book, alerts):
                        pair.armed = False
                        if pair.c.repeat >= 0:
                            self._wake(pair, book, book.time + pair.c.repeat)
                elif pair.c.repeat >= 0:
                    self._again(pair, book, alerts)
            elif not pair.armed:
                # re-arm, beyond the band when there is one
                edge = pair.edge
                if edge != edge or (now <= edge if up else now >= edge):
                    pair.armed = True
                    self._note(pair)
            return
        c = pair.c
        t = book.current()
        assert t is not None
        prev = book.previous()
        rule = c.rule
        cond = rule.condition
        if c.either:
            assert type(cond) is Cross
            kind = _METRIC_KIND[cond.metric]
            now = metric_value(kind, t)
            before = metric_value(kind, prev) if prev is not None else NAN
            x = cond.value
            up = before < x <= now
            down = before > x >= now
            if ((up and pair.armed) or (down and pair.armed_down)) and self._fire(
                pair, book, alerts, "up" if up else "down"
            ):
                if up:
                    pair.armed = False
                else:
                    pair.armed_down = False
            if not up and not pair.armed and _below_band(c, now, x):
                pair.armed = True
                self._note(pair)
            if not down and not pair.armed_down and _above_band(c, now, x):
                pair.armed_down = True
                self._note(pair)
            return
        truth = _true(cond, t, prev, book)
        if c.cross_leaves and any(_true(leaf, t, prev, book) for leaf in c.cross_leaves):
            book.recheck.append(pair)
        if truth:
            if pair.armed:
                if self._fire(pair, book, alerts):
                    pair.armed = False
                    if c.repeat >= 0:
                        self._wake(pair, book, book.time + c.repeat)
            elif c.repeat >= 0:
                self._again(pair, book, alerts)
        elif not pair.armed and _band_ok(c, cond, t, book):
            pair.armed = True
            self._note(pair)

    def _fire(
        self,
        pair: _Pair,
        book: _Book,
        alerts: list[Alert],
        direction: str = "",
        repeated: bool = False,
    ) -> bool:
        """Fire unless expired, muted or in cooldown (then come back when the mute or the
        cooldown ends: a condition still true then fires then). ``direction``, ``repeated``:
        see Alert."""
        rule = pair.c.rule
        time = book.time
        if rule.expires_ms is not None and time >= rule.expires_ms:
            pair.done = True
            self._note(pair)
            return False
        due = -1
        if pair.last_fired is not None:
            due = pair.last_fired + rule.cooldown_ms
        muted = rule.muted_until_ms
        if muted is not None and muted > due:
            due = muted
        if time < due:
            self._wake(pair, book, due)
            return False
        pair.last_fired = time
        self._note(pair)  # the caller disarms it
        if rule.once:
            pair.done = True
        t = book.current()
        assert t is not None
        start = NAN
        cond = rule.condition
        if type(cond) is Move:  # the alert says how far it moved, from where
            assert isinstance(cond, Move)
            start = book.move_start(_MOVE_KIND[cond.kind], cond.window_ms, t.close)
        alerts.append(
            Alert(rule, book.symbol, t, book.p_time, pair.order, direction, start, repeated)
        )
        return True

    def _again(self, pair: _Pair, book: _Book, alerts: list[Alert]) -> None:
        """A rule with ``repeat`` whose condition still holds after its alert: alert again
        once ``repeat`` has passed since the last one (cooldown, mute and expiry as for any
        alert), else come back then."""
        last = pair.last_fired
        if last is None:  # kept disarmed from a state saved without its alert: nothing to repeat
            return
        due = last + pair.c.repeat
        if book.time < due:
            self._wake(pair, book, due)
        elif self._fire(pair, book, alerts, repeated=True):
            self._wake(pair, book, book.time + pair.c.repeat)

    def _wake(self, pair: _Pair, book: _Book, due: int) -> None:
        """Evaluate ``pair`` again on the first tick at or after ``due`` (event time), quiet
        or not."""
        if pair.timer != due:
            pair.timer = due
            self._seq += 1
            heapq.heappush(book.timers, (due, self._seq, pair))


def _metric(kind: int, c: float, o: float, h: float, lo: float, v: float, q: float) -> float:
    """A basic metric from a tick's values (as :func:`metric_value`); NaN when not computable."""
    if kind == _PRICE:
        return c
    if kind == _CHANGE:
        return percent(c - o, o)
    if kind == _RANGE:
        return percent(h - lo, lo)
    if kind == _VOLUME:
        return v
    if kind == _QUOTE:
        return q
    if kind == _HIGH:
        return h
    return lo


def _bisect_left(keys: list[float], x: float) -> int:
    """``bisect.bisect_left`` for floats, with native comparisons once compiled."""
    lo = 0
    hi = len(keys)
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _rearm_edges(c: _Compiled) -> list[float]:
    """The band edges a pair of this rule re-arms at: the low one for upward conditions (and
    moves), the high one for downward, both for ``crosses X``; none without a band."""
    if c.band_low != c.band_low:
        return []
    cond = c.rule.condition
    if type(cond) is Level:
        return [c.band_low] if cond.op in (">", ">=") else [c.band_high]
    if type(cond) is Cross and cond.direction is not None:
        return [c.band_low] if cond.direction == "above" else [c.band_high]
    if type(cond) is Move:
        return [c.band_low]
    return [c.band_low, c.band_high]


def _alert_order(alert: Alert) -> int:
    return alert.order


def _is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern or "[" in pattern


def _true(cond: Condition, t: Ticker, prev: Ticker | None, book: _Book) -> bool:
    """Whether a condition holds on this tick (DESIGN.md, "Meaning")."""
    kind = type(cond)
    if kind is Level:
        assert isinstance(cond, Level)
        return level_holds(cond, t)
    if kind is Cross:
        assert isinstance(cond, Cross)
        if prev is None:
            return False
        metric = _METRIC_KIND[cond.metric]
        before = metric_value(metric, prev)
        now = metric_value(metric, t)
        x = cond.value
        if cond.direction == "above":
            return before < x <= now
        if cond.direction == "below":
            return before > x >= now
        return before < x <= now or before > x >= now
    if kind is Breaks:
        assert isinstance(cond, Breaks)
        if prev is None:
            return False
        return t.high > prev.high if cond.side == "high" else t.low < prev.low
    if kind is Move:
        assert isinstance(cond, Move)
        return book.move_value(_MOVE_KIND[cond.kind], cond.window_ms, t.close) >= cond.pct
    if kind is AllOf:
        assert isinstance(cond, AllOf)
        return all(_true(p, t, prev, book) for p in cond.parts)
    assert isinstance(cond, AnyOf)
    return any(_true(p, t, prev, book) for p in cond.parts)


def _below_band(c: _Compiled, now: float, x: float) -> bool:
    """Re-arm test of an upward condition: back at or below the band (or X without a band)."""
    edge = c.band_low
    return now <= (edge if edge == edge else x)


def _above_band(c: _Compiled, now: float, x: float) -> bool:
    edge = c.band_high
    return now >= (edge if edge == edge else x)


def _band_ok(c: _Compiled, cond: Condition, t: Ticker, book: _Book) -> bool:
    """Whether a pair whose condition is false has also left its re-arm band."""
    if c.rule.rearm <= 0:
        return True
    if type(cond) is Level:
        assert isinstance(cond, Level)
        v = metric_value(_METRIC_KIND[cond.metric], t)
        return v <= c.band_low if cond.op in (">", ">=") else v >= c.band_high
    if type(cond) is Cross:
        assert isinstance(cond, Cross)
        v = metric_value(_METRIC_KIND[cond.metric], t)
        return v <= c.band_low if cond.direction == "above" else v >= c.band_high
    if type(cond) is Move:
        assert isinstance(cond, Move)
        v = book.move_value(_MOVE_KIND[cond.kind], cond.window_ms, t.close)
        return v < c.band_low
    return True  # breaks and composites have no band


#: (rule id, symbol, rule fingerprint, flags, last fired event time): the firing state of a
#: pair; flags: 1 armed, 2 armed for the downward side of ``crosses X``, 4 done
PairState = tuple[str, str, str, int, int | None]


def fingerprint(rule: Rule) -> str:
    """What a saved state depends on: the condition and the re-arm band. A rule edited in
    either starts afresh; other edits (cooldown, message, channels) keep its state."""
    return f"{format_condition(rule.condition)}|{rule.rearm!r}"


def _state_of(pair: _Pair) -> PairState:
    flags = (1 if pair.armed else 0) | (2 if pair.armed_down else 0) | (4 if pair.done else 0)
    c = pair.c
    if not c.fp:
        c.fp = fingerprint(c.rule)  # once per rule: thousands of its pairs may change at once
    return (c.rule.id, pair.book.symbol, c.fp, flags, pair.last_fired)


def _set_state(pair: _Pair, flags: int, last_fired: int | None) -> None:
    pair.armed = bool(flags & 1)
    pair.armed_down = bool(flags & 2)
    # done stays only for a ``once`` rule that fired: one done by expiry is found expired
    # again (or not, when its expiry was moved since) from the rule as it is now, and one
    # whose ``once`` was dropped since fires again
    pair.done = bool(flags & 4) and pair.c.rule.once and last_fired is not None
    pair.last_fired = last_fired


#: the flags of a pair that never fired: armed, on both sides
FRESH = 3


def after_firing(rule: Rule, flags: int, price: str | None) -> int:
    """The flags (see :data:`PairState`) of a pair of ``rule`` with ``flags`` once it has fired
    on a tick whose price was ``price``, as :meth:`Engine._evaluate` records it: disarmed, and
    done for a ``once`` rule. ``crosses X`` keeps one flag per side: the side it crossed is
    disarmed and, on the same tick, the other re-arms when the price is beyond X (and the
    band). The side is known from the price for a price crossing, unless the price is X
    itself; when it is not known, both sides are disarmed.
    """
    cond = rule.condition
    if type(cond) is Cross and cond.direction is None:
        now = NAN
        if cond.metric == "price" and price is not None:
            try:
                now = float(price)
            except ValueError:
                now = NAN
        x = cond.value
        b = rule.rearm
        if now != now or now == x:
            flags &= ~3
        elif now > x:  # crossed upward
            flags &= ~1
            if now >= (band_edge(x, b, 1) if b > 0 else x):
                flags |= 2
        else:
            flags &= ~2
            if now <= (band_edge(x, b, -1) if b > 0 else x):
                flags |= 1
    else:
        flags &= ~1
    if rule.once:
        flags |= 4
    return flags
