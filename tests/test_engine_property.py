"""Property tests: the engine fires exactly what the naive reference evaluator fires.

Random rule sets (every condition kind, composites, cooldowns, re-arm bands, once, expires,
repeats,
globs and exclude) run over random ticker streams of a few symbols. Prices, thresholds and
times come from small grids so that ties with thresholds, repeated prices, window boundaries,
duplicate and out-of-order event times, and uncomputable metrics (o or l equal to 0) are common.
"""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertbot.rules.conditions import (
    METRICS,
    OPS,
    AllOf,
    AnyOf,
    Breaks,
    Condition,
    Cross,
    Level,
    Move,
)
from alertbot.rules.engine import Engine
from alertbot.rules.model import Rule
from alertbot.ticker import ParseStats, Ticker
from tests.reference import ReferenceEngine

# every engine test runs over both implementations of the core
pytestmark = pytest.mark.usefixtures("core_impl")

BASE = 1_700_000_000_000
SYMBOLS = ("BTCUSDT", "BNCUSDT", "ETHUSDT", "ETHBTC")
PATTERNS = (
    "BTCUSDT",
    "ETHUSDT",
    "ETHBTC",
    "XRPUSDT",
    "*USDT",
    "*USDT",
    "B?CUSDT",
    "ETH*",
    "*",
    "*",
)
EXCLUDES = ("BTCUSDT", "ETH*", "B?CUSDT", "*BTC")

# Prices: ratios between them are mostly exact in binary (64 -> 80 is +25%, 80 -> 64 is -20%).
PRICES = (64.0, 72.0, 80.0, 90.0, 96.0, 100.0, 104.0, 110.0, 120.0, 128.0)
OPENS = (0.0, 80.0, 100.0, 100.0, 128.0)
LOWS_ZERO_SHARE = 5  # one in LOWS_ZERO_SHARE lows is 0
VOLUMES = (0.0, 500.0, 1000.0, 2000.0)
QUOTE_VOLUMES = (0.0, 1e6, 2e6)
THRESHOLDS: dict[str, tuple[float, ...]] = {
    "price": (64.0, 80.0, 90.0, 100.0, 104.0, 110.0, 128.0),
    "high": (80.0, 100.0, 110.0, 120.0, 128.0),
    "low": (64.0, 72.0, 80.0, 100.0),
    "volume": (0.0, 500.0, 1000.0, 2000.0),
    "quote_volume": (0.0, 1e6, 2e6),
    "change_24h": (-20.0, -10.0, -4.0, 0.0, 4.0, 10.0, 20.0, 25.0),
    "range_24h": (0.0, 10.0, 12.5, 20.0, 25.0, 50.0, 100.0),
}
MOVE_PCTS = (4.0, 10.0, 12.5, 20.0, 25.0)
WINDOWS = (1000, 2000, 5000, 10_000)
COOLDOWNS = (0, 0, 0, 1000, 2000, 5000)
REARMS = (0.0, 0.0, 0.0, 0.1, 0.25, 0.5)
TIME_STEPS = (-1000, -1, 0, 0, 1, 500, 1000, 1000, 1000, 2000, 3000, 10_000)


# ---------------------------------------------------------------- strategies


@st.composite
def levels(draw: st.DrawFn) -> Level:
    metric = draw(st.sampled_from(METRICS))
    return Level(metric, draw(st.sampled_from(OPS)), draw(st.sampled_from(THRESHOLDS[metric])))


@st.composite
def crosses(draw: st.DrawFn) -> Cross:
    metric = draw(st.sampled_from(METRICS))
    direction = draw(st.sampled_from(("above", "below", None)))
    return Cross(metric, direction, draw(st.sampled_from(THRESHOLDS[metric])))


breaks = st.builds(Breaks, st.sampled_from(("high", "low")))
moves = st.builds(
    Move,
    st.sampled_from(("rises", "drops", "moves")),
    st.sampled_from(MOVE_PCTS),
    st.sampled_from(WINDOWS),
)
leaf_conditions = st.one_of(levels(), crosses(), breaks, moves)


def _composite(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
    parts = st.lists(children, min_size=1, max_size=3).map(tuple)
    return st.one_of(parts.map(AllOf), parts.map(AnyOf))


conditions = st.one_of(
    leaf_conditions,
    leaf_conditions,
    st.recursive(leaf_conditions, _composite, max_leaves=5),
)


_SYMBOL_PATTERNS = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3)
_EXCLUDES = st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(EXCLUDES), max_size=2))
_COOLDOWN = st.sampled_from(COOLDOWNS)
_REARM = st.sampled_from(REARMS)
_ONCE = st.sampled_from((False, False, False, True))
#: repeat (ms): alerts again while the condition holds, so the engine's timers are exercised
_REPEAT = st.sampled_from((None, None, None, 1000, 3000, 20_000))
_EXPIRES = st.sampled_from((None, None, None, 0)).flatmap(
    lambda e: st.none() if e is None else st.integers(0, 40_000).map(lambda ms: BASE + ms)
)


@st.composite
def rules(draw: st.DrawFn, rule_id: str) -> Rule:
    return Rule(
        id=rule_id,
        condition=draw(conditions),
        symbols=tuple(draw(_SYMBOL_PATTERNS)),
        exclude=tuple(draw(_EXCLUDES)),
        cooldown_ms=draw(_COOLDOWN),
        rearm=draw(_REARM),
        once=draw(_ONCE),
        expires_ms=draw(_EXPIRES),
        repeat_ms=draw(_REPEAT),
    )


@st.composite
def rule_sets(draw: st.DrawFn, prefix: str = "r", max_size: int = 6) -> list[Rule]:
    count = draw(st.integers(1, max_size))
    return [draw(rules(f"{prefix}{i}")) for i in range(count)]


_TIME_STEP = st.sampled_from(TIME_STEPS)
_CLOSE = st.sampled_from(PRICES)
_HIGH = {c: st.sampled_from([p for p in PRICES if p >= c]) for c in PRICES}
_LOW = {
    c: st.sampled_from([0.0] + [p for p in PRICES if p <= c] * (LOWS_ZERO_SHARE - 1))
    for c in PRICES
}
_OPEN = st.sampled_from(OPENS)
_VOLUME = st.sampled_from(VOLUMES)
_QUOTE_VOLUME = st.sampled_from(QUOTE_VOLUMES)


@st.composite
def streams(draw: st.DrawFn, max_size: int = 40) -> list[Ticker]:
    """Tickers of a few symbols on one clock that mostly moves forward (not always)."""
    count = draw(st.integers(0, max_size))
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=3, unique=True))
    symbol = st.sampled_from(symbols)
    time = BASE
    out: list[Ticker] = []
    for _ in range(count):
        time += draw(_TIME_STEP)
        close = draw(_CLOSE)
        out.append(
            Ticker(
                symbol=draw(symbol),
                time=time,
                close=close,
                open=draw(_OPEN),
                high=draw(_HIGH[close]),
                low=draw(_LOW[close]),
                volume=draw(_VOLUME),
                quote_volume=draw(_QUOTE_VOLUME),
                price_text=repr(close),
            )
        )
    return out


def fired(engine: Engine, tickers: list[Ticker]) -> list[tuple[str, str, int]]:
    alerts = engine.process(tickers)
    for a in alerts:
        assert a.ticker.symbol == a.symbol
        assert a.price == a.ticker.price_text
        assert a.condition == a.rule.condition_text
    return [(a.rule.id, a.symbol, a.time) for a in alerts]


PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _chunks(draw: st.DrawFn, tickers: list[Ticker], max_cuts: int = 4) -> list[list[Ticker]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(tickers)), max_size=max_cuts)))
    bounds = [0, *cuts, len(tickers)]
    return [tickers[a:b] for a, b in pairwise(bounds)]


# ---------------------------------------------------------------- properties


@PROPERTY
@given(rule_sets(), streams())
def test_engine_fires_what_the_reference_fires(the_rules: list[Rule], tickers: list[Ticker]):
    assert fired(Engine(the_rules), tickers) == ReferenceEngine(the_rules).process(tickers)


def _number_text(x: float, style: int) -> str:
    """Texts that float() reads as ``x``: the feed's plain decimals, and forms that only the
    Python reader takes (the C core leaves them to it)."""
    if style == 1 and x == int(x):
        return str(int(x))
    if style == 2:
        return f" {x!r}"
    if style == 3:
        return f"{x:e}" if float(f"{x:e}") == x else repr(x)
    return repr(x)


def _element(t: Ticker, style: int) -> dict[str, Any]:
    return {
        "e": "24hrMiniTicker",
        "E": t.time,
        "s": t.symbol.lower() if style == 4 else t.symbol,
        "c": t.price_text,
        "o": _number_text(t.open, style),
        "h": _number_text(t.high, style),
        "l": _number_text(t.low, style),
        "v": _number_text(t.volume, style),
        "q": _number_text(t.quote_volume, style),
    }


@PROPERTY
@given(rule_sets(), streams(), st.data())
def test_the_feed_path_fires_what_the_reference_fires(
    the_rules: list[Rule], tickers: list[Ticker], data: st.DataObject
):
    """process_message over frames of decoded elements (the path of the feed and replay), with
    number and symbol spellings that the C core reads and ones it leaves to Python."""
    engine = Engine(the_rules)
    stats = ParseStats()
    got: list[tuple[str, str, int]] = []
    for chunk in _chunks(data.draw, tickers):
        styles = data.draw(st.lists(st.integers(0, 8), min_size=len(chunk), max_size=len(chunk)))
        frame = [_element(t, style) for t, style in zip(chunk, styles, strict=True)]
        message: Any = frame[0] if len(frame) == 1 and styles[0] == 5 else frame
        alerts = engine.process_message(message, stats)
        got.extend((a.rule.id, a.symbol, a.time) for a in alerts)
    assert got == ReferenceEngine(the_rules).process(tickers)
    assert stats.tickers == len(tickers)
    for symbol in SYMBOLS:
        last = engine.last_ticker(symbol)
        mine = [t for t in tickers if t.symbol == symbol]
        assert (last.time if last else None) == (max(t.time for t in mine) if mine else None)


@PROPERTY
@given(rule_sets(), streams(), st.data())
def test_feeding_the_stream_in_chunks_changes_nothing(
    the_rules: list[Rule], tickers: list[Ticker], data: st.DataObject
):
    engine = Engine(the_rules)
    got: list[tuple[str, str, int]] = []
    for chunk in _chunks(data.draw, tickers):
        got.extend(fired(engine, chunk))
    assert got == ReferenceEngine(the_rules).process(tickers)


@PROPERTY
@given(rule_sets(max_size=4), streams(), st.data())
def test_add_and_remove_rules_midway(
    the_rules: list[Rule], tickers: list[Ticker], data: st.DataObject
):
    engine = Engine(the_rules)
    reference = ReferenceEngine(the_rules)
    live = [rule.id for rule in the_rules]
    removed: list[str] = []
    log: list[Any] = []
    for n, chunk in enumerate(_chunks(data.draw, tickers)):
        if n > 0:
            # remove a few rules (sometimes an id that is not there)
            for rule_id in data.draw(st.lists(st.sampled_from([*live, "ghost"]), max_size=2)):
                log.append(("remove", rule_id))
                assert engine.remove_rule(rule_id) == reference.remove_rule(rule_id)
                if rule_id in live:
                    live.remove(rule_id)
                    removed.append(rule_id)
            # add a few: new ids, or an id removed before (which must start fresh)
            for k in range(data.draw(st.integers(0, 2))):
                fresh = f"n{n}.{k}"
                rule_id = data.draw(st.sampled_from([fresh, *removed]))
                if rule_id in removed:
                    removed.remove(rule_id)
                rule = data.draw(rules(rule_id))
                log.append(("add", rule))
                engine.add_rule(rule)
                reference.add_rule(rule)
                live.append(rule_id)
        log.append(("process", len(chunk)))
        assert fired(engine, chunk) == reference.process(chunk), log


# ---------------------------------------------------------------- long trends
#
# The grids above keep the min/max candidates of a window short (a few distinct prices). Long
# monotonic runs of distinct prices make them long, so what an engine keeps per window (and
# trims from it) is exercised too.

TREND_WINDOWS = (1000, 2000, 3000, 5000, 10_000)
RUN_LENGTHS = st.sampled_from((1, 10, 50, 400, 600, 800))


@st.composite
def trend_streams(draw: st.DrawFn) -> list[Ticker]:
    """One symbol, a tick about every 100 ms, prices in long runs up, down or sideways.

    Only the runs are drawn; the jitter of each tick comes from a seeded generator, so that
    streams of thousands of ticks stay within what hypothesis can draw.
    """
    jitter = random.Random(draw(st.integers(0, 2**32)))
    time = BASE
    price = 1000.0
    out: list[Ticker] = []
    for _ in range(draw(st.integers(1, 4))):
        step = draw(st.sampled_from((-0.5, -0.25, 0.25, 0.5, 0.5, -0.5, 0.0)))
        for _ in range(draw(RUN_LENGTHS)):
            time += jitter.choice((100, 100, 100, 1, 250, 0, -50))
            price = max(1.0, price + step + jitter.choice((0.0, 0.0, 0.125, -0.125)))
            out.append(Ticker("BTCUSDT", time, price, 1000.0, price, price, 1.0, 1.0, repr(price)))
    return out


@st.composite
def trend_rules(draw: st.DrawFn) -> list[Rule]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        move = Move(
            draw(st.sampled_from(("rises", "drops", "moves"))),
            draw(st.sampled_from((0.5, 1.0, 2.0, 5.0))),
            draw(st.sampled_from(TREND_WINDOWS)),
        )
        out.append(
            Rule(
                id=f"t{i}",
                condition=move,
                symbols=("BTCUSDT",),
                cooldown_ms=draw(st.sampled_from((0, 0, 1000, 20_000))),
                rearm=draw(st.sampled_from((0.0, 0.5))),
                repeat_ms=draw(_REPEAT),
            )
        )
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(trend_rules(), trend_streams(), st.data())
def test_long_trends_of_moves_rules(
    the_rules: list[Rule], tickers: list[Ticker], data: st.DataObject
):
    """Long runs of distinct prices; the history horizon narrowed to the longest window, so the
    engine forgets old extremes as it goes and must still agree with the full-history reference."""
    engine = Engine(the_rules, history_ms=1)
    got: list[tuple[str, str, int]] = []
    for chunk in _chunks(data.draw, tickers, max_cuts=2):
        got.extend(fired(engine, chunk))
    assert got == ReferenceEngine(the_rules).process(tickers)


MANY_WINDOWS = [
    Rule(f"w{k}", Move(kind, 4.0 if k % 2 else 10.0, 1000 * k), ("*",))
    for k, kind in zip(range(1, 41), ("rises", "drops", "moves") * 14, strict=False)
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_a_symbol_with_forty_moves_windows(tickers: list[Ticker]):
    """More windows on one symbol than fit in one 64-bit mask of the core's findings."""
    assert fired(Engine(MANY_WINDOWS), tickers) == ReferenceEngine(MANY_WINDOWS).process(tickers)
