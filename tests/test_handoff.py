"""The hand-off's conflation keeps what the rules need: per symbol, the newest tick and the
extremes of every metric a condition can name, and only ticks the engine would take."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from alertbot.feed.handoff import Handoff
from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.model import Rule
from alertbot.ticker import ParseStats
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
