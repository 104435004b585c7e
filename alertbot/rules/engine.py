"""The evaluation engine (pure): tickers in, alerts out, driven by exchange event time.

How a ticker touches only the rules whose state can change:

* Every (rule, symbol) pair is evaluated by one function, :func:`_evaluate`, which applies
  DESIGN.md's firing semantics in full. Evaluating a pair on a tick where nothing about it changed
  is harmless; the indexes below only decide *which* pairs to evaluate.
* Per symbol and metric, a sorted list of the thresholds that matter (the level ``X`` and the
  re-arm band edge). If no threshold lies in the closed interval between the metric's previous
  and current value, no comparison of that metric changed its result, so no pair registered there
  can change state. The gap around the current value is cached, so the common case costs two
  float comparisons; otherwise two bisections select the pairs.
* What cannot be seen on a threshold: cooldown ends (a heap of due times per symbol), breakouts
  (pairs evaluated on a tick that breaks and on the tick after), crossings inside composites (the
  tick after a crossing), and pairs that are new (evaluated in full on their first tick).

Glob rules are matched once per new symbol. Rules are added and removed while running; an index
that gained thresholds is re-sorted lazily on its next use.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Final

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
from alertbot.rules.model import Rule
from alertbot.ticker import Fields, ParseStats, Ticker, parse_element, read_element, unwrap

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


class Alert:
    """A rule that fired for a symbol on a ticker (read-only).

    Texts are derived on use: hundreds of alerts may fire in one frame, and formatting is only
    worth paying for an alert that is rendered. A plain class with ``Final`` attributes rather
    than a frozen dataclass, whose generated ``__init__`` stays interpreted even when compiled.
    """

    __slots__ = ("previous_time", "rule", "symbol", "ticker")

    def __init__(self, rule: Rule, symbol: str, ticker: Ticker, previous_time: int = -1) -> None:
        self.rule: Final = rule
        self.symbol: Final = symbol
        self.ticker: Final = ticker
        # The event time of the symbol's tick before this one (-1: none): the feed compares it
        # with its outages to flag an alert computed across a gap.
        self.previous_time: Final = previous_time

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
    if kind == _PRICE:
        return t.close
    if kind == _CHANGE:
        return (t.close - t.open) / t.open * 100 if t.open else NAN
    if kind == _RANGE:
        return (t.high - t.low) / t.low * 100 if t.low else NAN
    if kind == _VOLUME:
        return t.volume
    if kind == _QUOTE:
        return t.quote_volume
    if kind == _HIGH:
        return t.high
    return t.low


class _Prices:
    """A symbol's recent prices, for the min and max over windows of several lengths.

    One increasing list (window minimum candidates) and one decreasing list (maximum candidates)
    cover the engine's history horizon; each window keeps a pointer to its first element, which
    only moves forward because event time does. Every symbol keeps them, watched by a moves rule
    or not, so a rule added later sees the symbol's recent past. They stay short: only running
    extremes are kept.
    """

    __slots__ = ("max_p", "max_t", "min_p", "min_t", "order", "windows")

    def __init__(self) -> None:
        self.min_t: list[int] = []
        self.min_p: list[float] = []
        self.max_t: list[int] = []
        self.max_p: list[float] = []
        self.windows: dict[int, _Window] = {}
        self.order: list[_Window] = []  # the same windows, as a list for the hot path

    def window(self, ms: int) -> _Window:
        window = self.windows.get(ms)
        if window is None:
            window = self.windows[ms] = _Window(ms)
            self.order.append(window)
        return window

    def push(self, time: int, price: float, horizon: int) -> None:
        min_t, min_p, max_t, max_p = self.min_t, self.min_p, self.max_t, self.max_p
        while min_p and min_p[-1] >= price:
            min_p.pop()
            min_t.pop()
        min_p.append(price)
        min_t.append(time)
        while max_p and max_p[-1] <= price:
            max_p.pop()
            max_t.pop()
        max_p.append(price)
        max_t.append(time)
        # forget what is older than the horizon, in batches
        if len(min_t) > 64 and min_t[0] < time - horizon:
            cut = bisect_left(min_t, time - horizon)
            del min_t[:cut]
            del min_p[:cut]
            for w in self.order:
                w.imin = max(w.imin - cut, 0)
        if len(max_t) > 64 and max_t[0] < time - horizon:
            cut = bisect_left(max_t, time - horizon)
            del max_t[:cut]
            del max_p[:cut]
            for w in self.order:
                w.imax = max(w.imax - cut, 0)


class _Window:
    """The min and max price of one window length, over the lists of :class:`_Prices`.

    Refreshed lazily: while the price stays strictly inside ``(lo, hi)`` and neither extreme has
    left the window (``time <= expires``), the extremes are unchanged and the rise and drop stay in
    their indexes' gaps, so nothing about the window can change a pair's state.
    """

    __slots__ = ("drop", "expires", "hi", "high", "imax", "imin", "lo", "low", "ms", "rise")

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.imin = 0
        self.imax = 0
        self.low = NAN
        self.high = NAN
        self.rise: _Index | None = None
        self.drop: _Index | None = None
        self.expires = -1  # no fast path until the first refresh
        self.lo = NAN
        self.hi = NAN

    def refresh(self, prices: _Prices, time: int, price: float, todo: list[_Pair]) -> None:
        """Bring the extremes up to date, collect touched pairs, and recompute the safe band."""
        min_t, max_t = prices.min_t, prices.max_t
        start = time - self.ms
        i = min(self.imin, len(min_t) - 1)
        while min_t[i] < start:
            i += 1
        self.imin = i
        j = min(self.imax, len(max_t) - 1)
        while max_t[j] < start:
            j += 1
        self.imax = j
        low = self.low = prices.min_p[i]
        high = self.high = prices.max_p[j]
        self.expires = min(min_t[i], max_t[j]) + self.ms
        # Strictly between the extremes they stay the extremes; map the gaps of the rise and
        # drop indexes (percent) into prices, shrunk a little so rounding cannot hide a threshold.
        lo = low
        hi = high
        rise = self.rise
        if rise is not None:
            v = (price - low) / low * 100 if low else NAN
            if not rise.glo < v < rise.ghi:
                todo.extend(rise.touched(v))
            if rise.glo < rise.ghi:
                lo = max(lo, low * (1 + rise.glo / 100))
                hi = min(hi, low * (1 + rise.ghi / 100))
            else:
                hi = -INF
        drop = self.drop
        if drop is not None:
            v = (high - price) / high * 100 if high else NAN
            if not drop.glo < v < drop.ghi:
                todo.extend(drop.touched(v))
            if drop.glo < drop.ghi:
                lo = max(lo, high * (1 - drop.ghi / 100))
                hi = min(hi, high * (1 - drop.glo / 100))
            else:
                hi = -INF
        self.lo = lo + abs(lo) * 1e-9
        self.hi = hi - abs(hi) * 1e-9

    def value(self, kind: int, price: float) -> float:
        """Rise, drop, or the larger of both, in percent, for the current price."""
        low = self.low
        high = self.high
        rise = (price - low) / low * 100 if low else NAN
        drop = (high - price) / high * 100 if high else NAN
        if kind == _RISE:
            return rise
        if kind == _DROP:
            return drop
        if rise != rise:
            return drop
        if drop != drop:
            return rise
        return rise if rise >= drop else drop


class _Compiled:
    """What the engine derives once from a rule."""

    __slots__ = (
        "band_high",
        "band_low",
        "code",
        "cross_leaves",
        "either",
        "order",
        "pairs",
        "rule",
        "x",
    )

    def __init__(self, rule: Rule, order: int) -> None:
        self.rule = rule
        self.order = order
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
                self.band_low = x - abs(x) * b
                self.band_high = x + abs(x) * b
            elif type(cond) is Move:
                self.band_low = cond.pct * (1 - b)
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
        "dead",
        "done",
        "last_fired",
        "order",
        "stamp",
        "timer",
    )

    def __init__(self, compiled: _Compiled, book: _Book) -> None:
        self.c = compiled
        self.order = compiled.order  # firing order within a tick: the order rules were added
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

    __slots__ = ("dead", "dirty", "entries", "ghi", "glo", "keys", "kind", "pos", "value")

    def __init__(self, kind: int) -> None:
        self.kind = kind
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
    """Everything the engine keeps about one symbol."""

    __slots__ = (
        "basic",
        "breaks",
        "broke",
        "close",
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
        "prices",
        "quote",
        "recheck",
        "symbol",
        "text",
        "time",
        "timers",
        "volume",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        # The last accepted tick and the one before it, as plain values (no ticker is built
        # for a tick that changes nothing); -1: none yet.
        self.time = -1
        self.close = self.open = self.high = self.low = self.volume = self.quote = 0.0
        self.text = ""
        self.last: Ticker | None = None  # the last tick as a Ticker, once built
        self.p_time = -1
        self.p_close = self.p_open = self.p_high = self.p_low = self.p_volume = self.p_quote = 0.0
        self.p_text = ""
        self.p_last: Ticker | None = None
        self.indexes: dict[tuple[int, int], _Index] = {}
        self.basic: list[_Index] = []  # indexes of metrics of the ticker itself
        self.prices = _Prices()  # recent extremes, and the windows of moves rules
        self.breaks: list[_Pair] = []
        self.broke = False  # the previous tick printed a new 24h high or low
        self.fresh: list[_Pair] = []
        self.recheck: list[_Pair] = []
        self.timers: list[tuple[int, int, _Pair]] = []

    def window(self, ms: int) -> _Window:
        return self.prices.window(ms)

    def accept(
        self, time: int, c: float, o: float, h: float, lo: float, v: float, q: float, text: str
    ) -> None:
        """Make this tick the last one and the last one the previous."""
        self.p_time = self.time
        self.p_close = self.close
        self.p_open = self.open
        self.p_high = self.high
        self.p_low = self.low
        self.p_volume = self.volume
        self.p_quote = self.quote
        self.p_text = self.text
        self.p_last = self.last
        self.time = time
        self.close = c
        self.open = o
        self.high = h
        self.low = lo
        self.volume = v
        self.quote = q
        self.text = text
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

    def index(self, kind: int, window_ms: int = 0) -> _Index:
        key = (kind, window_ms)
        index = self.indexes.get(key)
        if index is None:
            index = self.indexes[key] = _Index(kind)
            if window_ms:
                window = self.window(window_ms)
                if kind == _RISE:
                    window.rise = index
                else:
                    window.drop = index
            else:
                self.basic.append(index)
        return index

    def move_indexes(self, leaf: Move) -> list[_Index]:
        """``moves`` is ``rises or drops``: it watches the thresholds of both.

        The caller adds thresholds, so the window's safe band is void until its next refresh.
        """
        kinds = (_RISE, _DROP) if leaf.kind == "moves" else (_MOVE_KIND[leaf.kind],)
        indexes = [self.index(kind, leaf.window_ms) for kind in kinds]
        self.window(leaf.window_ms).expires = -1
        return indexes


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
        self._rules: dict[str, _Compiled] = {}
        self._globs: list[_Compiled] = []
        self._order = 0
        self._fields = Fields()  # reused by process_message
        self._tick = 0
        self._seq = 0
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
        """Remove a rule and forget its state; False when there is none with that id."""
        compiled = self._rules.pop(rule_id, None)
        if compiled is None:
            return False
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
        compiled.pairs.clear()
        return True

    def _book(self, symbol: str) -> _Book:
        """The symbol's book, created (and matched against the glob rules) on first sight."""
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book(symbol)
            for compiled in self._globs:
                if compiled.matches(symbol):
                    self._attach(compiled, book)
        return book

    def _attach(self, compiled: _Compiled, book: _Book) -> None:
        pair = _Pair(compiled, book)
        compiled.pairs.append(pair)
        book.fresh.append(pair)
        cond = compiled.rule.condition
        for leaf in leaves(cond):
            if type(leaf) is Breaks:
                if pair not in book.breaks:
                    book.breaks.append(pair)
            elif type(leaf) is Move:
                for index in book.move_indexes(leaf):
                    index.add(leaf.pct, pair)
            elif type(leaf) is Level or type(leaf) is Cross:
                index = book.index(_METRIC_KIND[leaf.metric])
                index.add(leaf.value, pair)
        # the re-arm band's edges are thresholds too (only single-leaf conditions have a band)
        for edge in (compiled.band_low, compiled.band_high):
            if edge != edge:
                continue
            if isinstance(cond, Move):
                for index in book.move_indexes(cond):
                    index.add(edge, pair)
            elif isinstance(cond, Level | Cross):
                book.index(_METRIC_KIND[cond.metric]).add(edge, pair)

    # ------------------------------------------------------------ evaluation

    def last_ticker(self, symbol: str) -> Ticker | None:
        """The symbol's last accepted ticker, if any."""
        book = self._books.get(symbol)
        return book.current() if book is not None else None

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

        The feed's path: well-formed elements go straight into the symbols' state, and a
        :class:`Ticker` is built only for a tick that has pairs to evaluate.
        """
        alerts: list[Alert] = []
        f = self._fields
        good = 0
        for el in unwrap(message, stats):
            if not read_element(el, f):
                t = parse_element(el, stats)  # classifies and counts what is wrong
                if t is not None:
                    self._accept_ticker(t, alerts)
                continue
            good += 1
            book = self._book(f.symbol)
            if f.time <= book.time:
                continue  # a duplicate or out of order
            book.accept(f.time, f.close, f.open, f.high, f.low, f.volume, f.quote_volume, f.text)
            self._step(book, alerts)
        stats.tickers += good
        return alerts

    def _accept_ticker(self, t: Ticker, alerts: list[Alert]) -> None:
        book = self._book(t.symbol)
        if t.time <= book.time:
            return  # a duplicate or out of order
        book.accept(t.time, t.close, t.open, t.high, t.low, t.volume, t.quote_volume, t.price_text)
        book.last = t
        self._step(book, alerts)

    def _step(self, book: _Book, alerts: list[Alert]) -> None:
        """One accepted tick of a symbol: collect what it may change, evaluate that."""
        book.prices.push(book.time, book.close, self._horizon)
        if not (book.indexes or book.fresh or book.breaks or book.timers):
            return  # no rule watches this symbol
        todo = self._collect(book)
        if not todo:
            return
        if len(todo) > 1:
            todo.sort(key=_order_of)
        for pair in todo:
            if not pair.dead:
                self._evaluate(pair, book, alerts)

    def _collect(self, book: _Book) -> list[_Pair]:
        """The pairs whose state this tick may change (this is the per-tick hot path)."""
        todo: list[_Pair] = []
        if book.fresh:
            todo.extend(book.fresh)
            book.fresh = []
        if book.recheck:
            todo.extend(book.recheck)
            book.recheck = []
        price = book.close
        for index in book.basic:
            kind = index.kind
            if kind == _PRICE:
                v = price
            elif kind == _CHANGE:
                o = book.open
                v = (price - o) / o * 100 if o else NAN
            elif kind == _VOLUME:
                v = book.volume
            elif kind == _QUOTE:
                v = book.quote
            elif kind == _RANGE:
                lo = book.low
                v = (book.high - lo) / lo * 100 if lo else NAN
            elif kind == _HIGH:
                v = book.high
            else:
                v = book.low
            if not index.glo < v < index.ghi:
                todo.extend(index.touched(v))
        time = book.time
        prices = book.prices
        for w in prices.order:
            if not (time <= w.expires and w.lo < price < w.hi):
                w.refresh(prices, time, price, todo)
        if book.breaks:
            broke = book.p_time >= 0 and (book.high > book.p_high or book.low < book.p_low)
            if broke or book.broke:
                todo.extend(book.breaks)
            book.broke = broke
        timers = book.timers
        while timers and timers[0][0] <= time:
            todo.append(heapq.heappop(timers)[2])
        if len(todo) < 2:
            return todo
        self._tick += 1
        stamp = self._tick
        out = []
        for pair in todo:
            if pair.stamp != stamp:
                pair.stamp = stamp
                out.append(pair)
        return out

    def _evaluate(self, pair: _Pair, book: _Book, alerts: list[Alert]) -> None:
        """Apply the firing semantics to one pair on one tick."""
        if pair.done:
            return
        c = pair.c
        code = c.code
        if code >= 0:
            metric = code >> 3
            now = _metric(
                metric, book.close, book.open, book.high, book.low, book.volume, book.quote
            )
            x = c.x
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
                if pair.armed and self._fire(pair, book, alerts):
                    pair.armed = False
            elif not pair.armed:
                # re-arm, beyond the band when there is one (both edges are set, or neither)
                edge = c.band_low if up else c.band_high
                if edge != edge or (now <= edge if up else now >= edge):
                    pair.armed = True
            return
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
                pair, book, alerts
            ):
                if up:
                    pair.armed = False
                else:
                    pair.armed_down = False
            if not up and not pair.armed and _below_band(c, now, x):
                pair.armed = True
            if not down and not pair.armed_down and _above_band(c, now, x):
                pair.armed_down = True
            return
        truth = _true(cond, t, prev, book)
        if c.cross_leaves and any(_true(leaf, t, prev, book) for leaf in c.cross_leaves):
            book.recheck.append(pair)
        if truth:
            if pair.armed and self._fire(pair, book, alerts):
                pair.armed = False
        elif not pair.armed and _band_ok(c, cond, t, book):
            pair.armed = True

    def _fire(self, pair: _Pair, book: _Book, alerts: list[Alert]) -> bool:
        """Fire unless expired or in cooldown (then come back when the cooldown ends)."""
        rule = pair.c.rule
        time = book.time
        if rule.expires_ms is not None and time >= rule.expires_ms:
            pair.done = True
            return False
        if pair.last_fired is not None:
            due = pair.last_fired + rule.cooldown_ms
            if time < due:
                if pair.timer != due:
                    pair.timer = due
                    self._seq += 1
                    heapq.heappush(book.timers, (due, self._seq, pair))
                return False
        pair.last_fired = time
        if rule.once:
            pair.done = True
        t = book.current()
        assert t is not None
        alerts.append(Alert(rule, book.symbol, t, book.p_time))
        return True


def _metric(kind: int, c: float, o: float, h: float, lo: float, v: float, q: float) -> float:
    """A basic metric from a tick's values (as :func:`metric_value`); NaN when not computable."""
    if kind == _PRICE:
        return c
    if kind == _CHANGE:
        return (c - o) / o * 100 if o else NAN
    if kind == _RANGE:
        return (h - lo) / lo * 100 if lo else NAN
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


def _order_of(pair: _Pair) -> int:
    return pair.order


def _is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern or "[" in pattern


def _true(cond: Condition, t: Ticker, prev: Ticker | None, book: _Book) -> bool:
    """Whether a condition holds on this tick (DESIGN.md, "Meaning")."""
    kind = type(cond)
    if kind is Level:
        assert isinstance(cond, Level)
        v = metric_value(_METRIC_KIND[cond.metric], t)
        op = cond.op
        x = cond.value
        if op == ">":
            return v > x
        if op == ">=":
            return v >= x
        if op == "<":
            return v < x
        return v <= x
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
        window = book.prices.windows[cond.window_ms]
        return window.value(_MOVE_KIND[cond.kind], t.close) >= cond.pct
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
        v = book.prices.windows[cond.window_ms].value(_MOVE_KIND[cond.kind], t.close)
        return v < c.band_low
    return True  # breaks and composites have no band
