"""The hand-off's conflation keeps what the rules need: per symbol, the newest tick and the
extremes of every metric a condition can name, and only ticks the engine would take."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbot.feed.handoff import Handoff, conflate, conflate_decoded
from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.model import Rule
from alertbot.ticker import ParseStats
from bench.engine import Market, make_symbols
from tests.fakes.binance import mini_ticker


def tick(time: int, close: float = 100, **kw: Any) -> dict[str, Any]:
    """A BTCUSDT tick in a steady 24h window unless told: open 100, high 120, low 80."""
    values: dict[str, Any] = {"open": 100, "high": 120, "low": 80, "volume": 1000, **kw}
    return mini_ticker("BTCUSDT", close, time, **values)


def _engine(condition: str) -> Engine:
    return Engine([Rule(id="r", condition=parse(condition), symbols=("BTCUSDT",))])


async def conflated(condition: str, ticks: list[dict[str, Any]]) -> list[int]:
    """Event times of the alerts of ``condition`` when the first tick is evaluated and the
    others reach the engine through one conflation (the engine behind)."""
    engine = _engine(condition)
    stats = ParseStats()
    engine.process_message([ticks[0]], stats)
    h = Handoff(capacity=1)
    for t in ticks[1:]:
        h.put([t])
    assert (len(h), h.conflations) == (1, len(ticks) - 2)
    alerts = [a for m in await h.get() for a in engine.process_message(m, stats)]
    assert stats.malformed == 0
    return [a.ticker.time for a in alerts]


def one_by_one(condition: str, ticks: list[dict[str, Any]]) -> list[int]:
    engine = _engine(condition)
    stats = ParseStats()
    return [a.ticker.time for t in ticks for a in engine.process_message([t], stats)]


# The price's extremes are ticks 2 (99) and 3 (101), the newest is 5: a metric's level reached
# only at tick 4 and left by tick 5 is seen only if the conflation keeps tick 4.
_PRICES = {1: 100, 2: 99, 3: 101, 4: 100, 5: 100.5}


_CASES = [
    # 24h rolling volume falls when old volume leaves the window: peaks and troughs
    ("volume > 1100", {"volume": 1200}, {"volume": 1000}),
    ("volume crosses below 900", {"volume": 800}, {"volume": 1000}),
    ("quote_volume >= 150k", {"volume": 1000, "quote_volume": 150_000}, {"volume": 1000}),
    ("quote_volume < 90k", {"volume": 1000, "quote_volume": 80_000}, {"volume": 1000}),
    # the open is the price 24 h ago and moves too: change has extremes of its own
    ("change_24h > 5%", {"open": 95}, {"open": 100}),
    ("change_24h crosses below -2%", {"open": 103}, {"open": 100}),
    # the window's high and low move as old prices leave it and new trades come in
    ("high > 125", {"high": 130}, {"high": 120}),
    ("low crosses below 75", {"low": 70}, {"low": 80}),
    ("range_24h > 60%", {"high": 130, "low": 80}, {"high": 120, "low": 80}),
    ("range_24h < 30%", {"high": 120, "low": 95}, {"high": 120, "low": 80}),
    ("breaks 24h high", {"high": 130}, {"high": 120}),
]


@pytest.mark.parametrize(("condition", "at_4", "elsewhere"), _CASES, ids=[c[0] for c in _CASES])
async def test_conflation_keeps_a_level_of_any_metric_reached_and_left_while_behind(
    condition: str, at_4: dict[str, Any], elsewhere: dict[str, Any]
) -> None:
    """A level of volume, quote volume, change, high, low or range reached on a tick that is
    not a price extreme and left by the newest fires through a conflation as tick by tick:
    the conflation keeps each metric's extremes, not only the price's."""
    ticks = [tick(t, p, **(at_4 if t == 4 else elsewhere)) for t, p in _PRICES.items()]
    want = one_by_one(condition, ticks)
    assert 4 in want  # the case is what it says
    assert await conflated(condition, ticks) == want


async def test_conflation_keeps_at_most_fifteen_ticks_a_symbol_in_event_time_order() -> None:
    """Bounded: the newest and each of 7 metrics' lowest and highest, each tick once, oldest
    first, all of them ticks as they came; however many ticks were conflated."""
    rng = random.Random(7)
    h = Handoff(capacity=1)
    sent = []
    for time in range(1, 2_001):
        t = mini_ticker(
            rng.choice(["A", "B"]),
            rng.uniform(90, 110),
            time,
            open=rng.uniform(90, 110),
            high=rng.uniform(110, 130),
            low=rng.uniform(70, 90),
            volume=rng.uniform(900, 1100),
            quote_volume=rng.uniform(90_000, 110_000),
        )
        sent.append(t)
        h.put([t])
    (merged,) = await h.get()
    for symbol in "AB":
        kept = [e for e in merged if e["s"] == symbol]
        assert 1 < len(kept) <= 15
        assert [e["E"] for e in kept] == sorted({e["E"] for e in kept})
        assert kept[-1] == [e for e in sent if e["s"] == symbol][-1]
    assert all(e in sent for e in merged)


async def test_conflation_weighs_only_ticks_the_engine_takes() -> None:
    """A tick the engine refuses (a volume that is no number) neither displaces the newest good
    tick nor stands for an extreme: it is passed on for the engine to count, and the engine
    ends on the last good tick, having crossed what the good ticks crossed."""
    bad = {**tick(5, 130), "v": "lots"}
    ticks = [tick(1, 90), tick(2, 110), tick(3, 95), tick(4, 99), bad]
    engine = _engine("price crosses 100")
    stats = ParseStats()
    engine.process_message([ticks[0]], stats)
    h = Handoff(capacity=1)
    for t in ticks[1:]:
        h.put([t])
    alerts = [a for m in await h.get() for a in engine.process_message(m, stats)]
    assert [(a.ticker.time, a.direction) for a in alerts] == [(2, "up"), (3, "down")]
    last = engine.last_ticker("BTCUSDT")
    assert last is not None
    assert last.time == 4
    assert stats.reasons == {"missing or bad number": 1}


async def test_conflation_keeps_the_good_tickers_of_a_frame_with_one_unreadable_element() -> None:
    """A frame orjson refuses for a byte that is no UTF-8 in one element is not dropped whole
    when conflated: its good tickers are weighed, the bad element is passed on for the engine
    to count by kind, and the frame is no invalid frame. One cut short still is."""
    bad: list[bytes] = []
    h = Handoff(capacity=1, invalid=bad.append)
    frame = orjson.dumps([tick(2, 110), mini_ticker("ETH#USDT", 5, 2)]).replace(b"#", b"\xff")
    cut = orjson.dumps([tick(3, 120)])[:-1]
    for message in (orjson.dumps([tick(1, 90)]), frame, cut):
        h.put(message)
    (merged,) = await h.get()
    assert bad == [cut]
    engine = _engine("price crosses 100")
    stats = ParseStats()
    alerts = engine.process_message(merged, stats)
    assert [a.ticker.time for a in alerts] == [2]
    assert stats.reasons == {"invalid UTF-8": 1}
    assert engine.symbols() == ["BTCUSDT"]


async def test_a_percentage_that_cannot_be_computed_is_no_extreme() -> None:
    """With an open of 0 the 24h change is not computable (NaN): the conflation weighs the
    other metrics as ever, and the first tick whose change can be computed is kept for it."""
    ticks = [tick(t, p, open=0, volume=1200 if t == 4 else 1000) for t, p in _PRICES.items()]
    assert await conflated("volume > 1100", ticks) == one_by_one("volume > 1100", ticks) == [4]
    ticks[3] = tick(4, 100, open=90)  # change 11.1 %, the only computable one
    assert await conflated("change_24h > 10%", ticks) == [4]


# ---------------------------------------------------------------- frames' bytes, conflated in C

try:
    import alertbot.rules._fastcore  # noqa: F401

    COMPILED = True
except ImportError:  # pure Python: conflate() is conflate_decoded()
    COMPILED = False


def same_conflation(items: list[Any], market_st: int = 1) -> Any:
    """conflate(items) keeps exactly the elements conflate_decoded(items) keeps, in the same
    order, and counts the same left out and invalid; the merged message (bytes when the C core
    took the batch)."""
    invalid_fast: list[bytes] = []
    invalid_slow: list[bytes] = []
    merged, dropped = conflate(items, market_st, invalid_fast.append)
    want, want_dropped = conflate_decoded(items, market_st, invalid_slow.append)
    got = orjson.loads(merged) if type(merged) is bytes else merged
    assert got == want
    assert (dropped, invalid_fast) == (want_dropped, invalid_slow)
    return merged


def market_frames(n: int, symbols: int = 60, seed: int = 1) -> list[bytes]:
    market = Market(make_symbols(symbols), seed)
    return [market.frame() for _ in range(n)]


def test_frames_conflated_in_c_keep_what_python_keeps() -> None:
    """Binance-like all-market frames: the C core conflates their bytes into one frame holding
    the elements the Python conflation keeps, as they came; also with ticks older than ones
    taken (frames out of order) and repeated event times (a frame twice)."""
    frames = market_frames(33)
    merged = same_conflation(frames)
    assert type(merged) is bytes or not COMPILED
    assert len(conflate_decoded(frames, 1, print)[0]) < 33 * 60 // 2
    same_conflation([*frames[10:], *frames[:10]])
    same_conflation([frames[0], frames[0], frames[1], frames[0]])
    # a frame merged by an earlier conflation is conflated again like any frame
    same_conflation([merged, *market_frames(5, seed=2)])


def test_a_frame_the_c_reader_does_not_take_leaves_the_whole_batch_to_python() -> None:
    """A frame not in the plain form (cut short, an escape, not an array of tickers, a reply)
    or a decoded message in the batch: conflated in Python, as ever, invalid frames reported."""
    frames = market_frames(3)
    escaped = orjson.dumps([tick(9, 101)]).replace(b"BTCUSDT", b"BTC\\u0055SDT")
    for odd in (
        frames[2][:-1],
        escaped,
        b'{"result":null,"id":1}',
        b"5",
        [tick(9, 101)],
        {"stream": "btcusdt@miniTicker", "data": tick(9, 101)},
    ):
        assert type(same_conflation([*frames[:2], odd])) is list


def test_c_conflation_of_hand_made_edge_cases() -> None:
    """NaN percentages (open or low 0), equal and older times, several symbols, elements the
    engine reads in Python (lowercase symbol, numbers as JSON numbers, another market's, a
    symbol beyond ASCII) and malformed ones, in arrays, single objects and wrappers."""
    zero = {**tick(3, 100), "o": "0", "l": "0"}
    frames = [
        orjson.dumps([tick(1, 100), zero, tick(3, 90), tick(2, 80)]),
        orjson.dumps([{**tick(4, 99), "s": "btcusdt"}, {**tick(5, 120), "c": 120}]),
        orjson.dumps({"stream": "btcusdt@miniTicker", "data": tick(6, 95, open=0)}),
        orjson.dumps(tick(7, 96, low=0)),
        orjson.dumps([{**tick(8, 10), "st": 2}, {**tick(8, 101), "st": 1, "ps": "BTCUSD"}]),
        orjson.dumps([mini_ticker("币安人生USDT", 1, 1), mini_ticker("ßUSDT", 2, 2)]),
        orjson.dumps([mini_ticker("SSUSDT", 3, 1), mini_ticker("SSUSDT", 4, 3)]),
        b'[ "junk" , 5 , null , {"s": "A"} , {"e": "24hrMiniTicker", "E": -1} ]',
        orjson.dumps([tick(9, 100), {**tick(10, 100), "v": "lots"}, tick(11, 100, open=0)]),
        orjson.dumps([mini_ticker("ETHUSDT", 5, t, open=t % 3) for t in range(1, 9)]),
        # a NaN change or range is neither the lowest nor the highest: these middle ticks go
        orjson.dumps(
            [
                mini_ticker("NANUSDT", 100, 1, open=100, high=120, low=80),
                mini_ticker("NANUSDT", 100, 2, open=0, high=120, low=80),
                mini_ticker("NANUSDT", 101, 3, open=100, high=120, low=0),
                mini_ticker("NANUSDT", 100, 4, open=100, high=120, low=0),
                mini_ticker("NANUSDT", 101, 5, open=100, high=120, low=80),
            ]
        ),
        b"[]",
    ]
    assert type(same_conflation(frames)) is bytes or not COMPILED
    for market_st in (1, 2):
        same_conflation(frames, market_st)
    for i in range(len(frames)):
        same_conflation(frames[i:] + frames[:i])
    # beyond a thousand malformed elements, the others are dropped
    junk = b"[" + b",".join([b'"junk"', b"7"] * 350) + b"]"
    assert type(same_conflation([junk, frames[0], junk])) is bytes or not COMPILED


_SYMBOLS = ["BTCUSDT", "btcusdt", "ETHUSDT", "SSUSDT", "ßUSDT", "币安人生USDT"]
_TEXTS = ["0", "0.0", "1", "1.5", "2", "100", "100.00", "1e2", "0.000001", "99999999999.99"]

_text = st.sampled_from(_TEXTS)
#: mostly a text the C reader reads; else a JSON number (read in Python) or no number at all
_value = st.one_of(_text, _text, _text, st.integers(0, 3), st.sampled_from(["-1", "x"]))
_element = st.fixed_dictionaries(
    {
        "e": st.sampled_from(["24hrMiniTicker", "24hrMiniTicker", "24hrMiniTicker", "kline"]),
        "E": st.integers(0, 6),
        "s": st.sampled_from(_SYMBOLS),
        **{k: _value if k == "v" else _text for k in "cohlvq"},
    },
    optional={"st": st.sampled_from([1, 2, None]), "ps": st.just("BTCUSD")},
)
_frame = st.one_of(
    st.lists(st.one_of(_element, st.just("junk"), st.just({"s": "A"})), max_size=6),
    _element,
    _element.map(lambda e: {"stream": "x@miniTicker", "data": e}),
)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.tuples(_frame, st.booleans()), min_size=1, max_size=8),
    market_st=st.sampled_from([1, 2]),
)
def test_c_conflation_keeps_what_python_keeps_for_any_frames(
    frames: list[tuple[Any, bool]], market_st: int
) -> None:
    """Generated frames (equal and older times, zero opens and lows, odd values, several
    symbols, malformed elements), compact or spaced, conflate alike in C and in Python."""
    raw = [
        orjson.dumps(f) if compact else json.dumps(f, ensure_ascii=False).encode()
        for f, compact in frames
    ]
    same_conflation(raw, market_st)


@pytest.mark.parametrize(("condition", "at_4", "elsewhere"), _CASES, ids=[c[0] for c in _CASES])
async def test_frames_conflated_in_c_alert_as_tick_by_tick(
    condition: str, at_4: dict[str, Any], elsewhere: dict[str, Any]
) -> None:
    """The merged frame's bytes reach the engine, which reads them as any frame: a level of
    any metric reached and left while behind fires as tick by tick."""
    ticks = [tick(t, p, **(at_4 if t == 4 else elsewhere)) for t, p in _PRICES.items()]
    engine = _engine(condition)
    stats = ParseStats()
    engine.process_raw(orjson.dumps([ticks[0]]), stats)
    h = Handoff(capacity=1)
    for t in ticks[1:]:
        h.put(orjson.dumps([t]))
    (merged,) = await h.get()
    assert type(merged) is bytes or not COMPILED
    if type(merged) is bytes:
        alerts = engine.process_raw(merged, stats)
    else:  # pure Python: conflated as decoded elements
        alerts = engine.process_message(merged, stats)
    assert [a.ticker.time for a in alerts] == one_by_one(condition, ticks)
    assert stats.malformed == 0
