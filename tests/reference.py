"""A deliberately naive reference evaluator of rules, written straight from DESIGN.md.

It exists only to check :class:`alertbot.rules.engine.Engine`: no indexes, no incremental
windows. Every accepted ticker of every symbol is kept, and on each ticker every rule that
covers the symbol is evaluated from scratch by scanning that history. Decisions taken where
DESIGN.md is silent are noted where they apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from fractions import Fraction

from alertbot.rules.conditions import AllOf, AnyOf, Breaks, Condition, Cross, Level, Move
from alertbot.rules.model import Rule
from alertbot.ticker import Ticker


def percent(part: float, whole: float) -> float | None:
    """``part`` in percent of ``whole`` (None when whole is 0), rounded to 9 decimal places as
    DESIGN.md's metrics are: an exact decimal move meets its threshold despite binary floating
    point. Spelled out again here rather than imported, so that the engine's copy is checked."""
    if whole == 0:
        return None
    v = part / whole * 100
    return round(v * 1e9) / 1e9 if abs(v) < 1e6 else v


def metric(name: str, t: Ticker) -> float | None:
    """The metric's value on one ticker; None when it cannot be computed (o or l is 0)."""
    if name == "price":
        return t.close
    if name == "change_24h":
        return percent(t.close - t.open, t.open)
    if name == "range_24h":
        return percent(t.high - t.low, t.low)
    if name == "volume":
        return t.volume
    if name == "quote_volume":
        return t.quote_volume
    if name == "high":
        return t.high
    if name == "low":
        return t.low
    raise ValueError(name)


def compare(value: float, op: str, x: float) -> bool:
    if op == ">":
        return value > x
    if op == ">=":
        return value >= x
    if op == "<":
        return value < x
    if op == "<=":
        return value <= x
    raise ValueError(op)


def crossed_up(name: str, x: float, history: list[Ticker]) -> bool:
    """Previous tick of the symbol had ``metric < x``, this one ``metric >= x``."""
    if len(history) < 2:
        return False  # the first tick of a symbol never crosses
    before, now = metric(name, history[-2]), metric(name, history[-1])
    return before is not None and now is not None and before < x <= now


def crossed_down(name: str, x: float, history: list[Ticker]) -> bool:
    """Previous tick of the symbol had ``metric > x``, this one ``metric <= x``."""
    if len(history) < 2:
        return False
    before, now = metric(name, history[-2]), metric(name, history[-1])
    return before is not None and now is not None and before > x >= now


def rise_and_drop(window_ms: int, history: list[Ticker]) -> tuple[float | None, float | None]:
    """Rise from the window's minimum and drop from its maximum, in percent (None: min/max 0)."""
    now = history[-1]
    prices = [t.close for t in history if now.time - window_ms <= t.time <= now.time]
    low, high = min(prices), max(prices)
    rise = percent(now.close - low, low)
    drop = percent(high - now.close, high)
    return rise, drop


def move_size(move: Move, history: list[Ticker]) -> float | None:
    """The number a move condition compares with its percentage (and its re-arm band)."""
    rise, drop = rise_and_drop(move.window_ms, history)
    if move.kind == "rises":
        return rise
    if move.kind == "drops":
        return drop
    known = [x for x in (rise, drop) if x is not None]
    return max(known) if known else None


def holds(cond: Condition, history: list[Ticker]) -> bool:
    """Whether the condition is true on the last tick of ``history`` (one symbol's ticks)."""
    now = history[-1]
    if isinstance(cond, Level):
        value = metric(cond.metric, now)
        return value is not None and compare(value, cond.op, cond.value)
    if isinstance(cond, Cross):
        up = crossed_up(cond.metric, cond.value, history)
        down = crossed_down(cond.metric, cond.value, history)
        if cond.direction == "above":
            return up
        if cond.direction == "below":
            return down
        return up or down
    if isinstance(cond, Breaks):
        if len(history) < 2:
            return False  # the first tick never breaks
        before = history[-2]
        return now.high > before.high if cond.side == "high" else now.low < before.low
    if isinstance(cond, Move):
        rise, drop = rise_and_drop(cond.window_ms, history)
        rises = rise is not None and rise >= cond.pct
        drops = drop is not None and drop >= cond.pct
        if cond.kind == "rises":
            return rises
        if cond.kind == "drops":
            return drops
        return rises or drops
    if isinstance(cond, AllOf):
        return all(holds(part, history) for part in cond.parts)
    if isinstance(cond, AnyOf):
        return any(holds(part, history) for part in cond.parts)
    raise TypeError(cond)


def edge(x: float, band: float, side: int) -> float:
    """``x + side * |x| * band`` on the decimals the rule was written with, as the double
    nearest to the exact result: a tick exactly on the edge is on it."""
    exact = Fraction(repr(x))
    return float(exact + side * abs(exact) * Fraction(repr(band)))


def below_band(name: str, x: float, band: float, now: Ticker) -> bool:
    """Metric at or below ``x - |x|*band`` (the re-arm band of ``>``, ``>=``, crossing up)."""
    value = metric(name, now)
    return value is not None and value <= edge(x, band, -1)


def above_band(name: str, x: float, band: float, now: Ticker) -> bool:
    """Metric at or above ``x + |x|*band`` (the re-arm band of ``<``, ``<=``, crossing down)."""
    value = metric(name, now)
    return value is not None and value >= edge(x, band, 1)


def band_holds(rule: Rule, history: list[Ticker]) -> bool:
    """The re-arm band part of re-arming (the caller checks that the condition is false)."""
    cond = rule.condition
    band = rule.rearm
    # breaks and all/any never have a band: they re-arm whenever the condition is false
    if band == 0 or isinstance(cond, Breaks | AllOf | AnyOf):
        return True
    now = history[-1]
    if isinstance(cond, Level):
        if cond.op in (">", ">="):
            return below_band(cond.metric, cond.value, band, now)
        return above_band(cond.metric, cond.value, band, now)
    if isinstance(cond, Cross):
        if cond.direction == "above":
            return below_band(cond.metric, cond.value, band, now)
        if cond.direction == "below":
            return above_band(cond.metric, cond.value, band, now)
        raise AssertionError("crosses without a direction has one band per direction")
    if isinstance(cond, Move):
        size = move_size(cond, history)
        return size is not None and size < edge(cond.pct, band, -1)
    raise TypeError(cond)


def matches(rule: Rule, symbol: str) -> bool:
    if not any(fnmatchcase(symbol, pattern) for pattern in rule.symbols):
        return False
    return not any(fnmatchcase(symbol, pattern) for pattern in rule.exclude)


@dataclass
class PairState:
    """Firing state of one (rule, symbol) pair."""

    armed: bool = True
    armed_down: bool = True  # the second flag of ``crosses X`` (``armed`` is the upward one)
    last_fired: int | None = None


class ReferenceEngine:
    """Naive evaluator: ``process`` returns ``(rule id, symbol, event time)`` in firing order."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: list[Rule] = []
        self.states: dict[tuple[str, str], PairState] = {}
        self.history: dict[str, list[Ticker]] = {}
        for rule in rules:
            self.add_rule(rule)

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    def remove_rule(self, rule_id: str) -> bool:
        kept = [rule for rule in self.rules if rule.id != rule_id]
        found = len(kept) != len(self.rules)
        self.rules = kept
        for key in [key for key in self.states if key[0] == rule_id]:
            del self.states[key]
        return found

    def process(self, tickers: Iterable[Ticker]) -> list[tuple[str, str, int]]:
        fired: list[tuple[str, str, int]] = []
        for ticker in tickers:
            history = self.history.setdefault(ticker.symbol, [])
            if history and ticker.time <= history[-1].time:
                continue  # duplicate or out of order: as if it never came
            history.append(ticker)
            for rule in self.rules:
                if matches(rule, ticker.symbol) and self.step(rule, history):
                    fired.append((rule.id, ticker.symbol, ticker.time))
        return fired

    def step(self, rule: Rule, history: list[Ticker]) -> bool:
        """Evaluate one rule on the last tick of one symbol's history; True when it fires."""
        now = history[-1]
        state = self.states.setdefault((rule.id, now.symbol), PairState())
        cond = rule.condition
        may_fire = (
            (state.last_fired is None or now.time >= state.last_fired + rule.cooldown_ms)
            and (rule.expires_ms is None or now.time < rule.expires_ms)
            and (rule.muted_until_ms is None or now.time >= rule.muted_until_ms)
            and not (rule.once and state.last_fired is not None)
        )
        if isinstance(cond, Cross) and cond.direction is None:
            up = crossed_up(cond.metric, cond.value, history)
            down = crossed_down(cond.metric, cond.value, history)
            fire = may_fire and ((up and state.armed) or (down and state.armed_down))
            if fire:
                state.last_fired = now.time
                if up:
                    state.armed = False
                else:
                    state.armed_down = False
            band = rule.rearm
            if not up and (band == 0 or below_band(cond.metric, cond.value, band, now)):
                state.armed = True
            if not down and (band == 0 or above_band(cond.metric, cond.value, band, now)):
                state.armed_down = True
            return fire
        true = holds(cond, history)
        # repeat: a pair that fired and was not re-armed since fires again while the
        # condition holds, once repeat_ms has passed since its last alert
        again = (
            rule.repeat_ms is not None
            and rule.repeat_ms > 0
            and not isinstance(cond, Cross | Breaks)
            and state.last_fired is not None
            and now.time >= state.last_fired + rule.repeat_ms
        )
        if true and (state.armed or again) and may_fire:
            state.armed = False
            state.last_fired = now.time
            return True
        if not true and band_holds(rule, history):
            state.armed = True
        return False
