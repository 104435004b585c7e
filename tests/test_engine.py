"""Table-driven cases of DESIGN.md's rule semantics, checked on the engine and on the reference.

Each case is a short ticker sequence, one rule and the event times at which it must fire. Every
case runs against both :class:`Engine` and the naive :class:`ReferenceEngine`, so the table also
validates the reference that the property tests trust.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.model import Rule
from alertbot.ticker import Ticker
from tests.reference import ReferenceEngine

# every engine test runs over both implementations of the core
pytestmark = pytest.mark.usefixtures("core_impl")

SYMBOL = "BTCUSDT"


def tick(
    time: int,
    close: float = 100.0,
    *,
    symbol: str = SYMBOL,
    open: float = 100.0,
    high: float = 200.0,
    low: float = 50.0,
    volume: float = 1000.0,
    quote_volume: float = 1e6,
) -> Ticker:
    return Ticker(symbol, time, close, open, high, low, volume, quote_volume, repr(close))


def prices(*pairs: tuple[int, float]) -> list[Ticker]:
    """Tickers of SYMBOL from (event time, close) pairs."""
    return [tick(time, close) for time, close in pairs]


def rule(
    when: str,
    *,
    id: str = "r",
    symbols: Sequence[str] = (SYMBOL,),
    exclude: Sequence[str] = (),
    cooldown_ms: int = 0,
    rearm: float = 0.0,
    once: bool = False,
    expires_ms: int | None = None,
    muted_until_ms: int | None = None,
) -> Rule:
    return Rule(
        id=id,
        condition=parse(when),
        symbols=tuple(symbols),
        exclude=tuple(exclude),
        cooldown_ms=cooldown_ms,
        rearm=rearm,
        once=once,
        expires_ms=expires_ms,
        muted_until_ms=muted_until_ms,
    )


class EngineUnderTest:
    """Engine with the reference's interface: alerts as (rule id, symbol, time)."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.engine = Engine(rules)

    def add_rule(self, rule: Rule) -> None:
        self.engine.add_rule(rule)

    def remove_rule(self, rule_id: str) -> bool:
        return self.engine.remove_rule(rule_id)

    def process(self, tickers: Iterable[Ticker]) -> list[tuple[str, str, int]]:
        return [(a.rule.id, a.symbol, a.time) for a in self.engine.process(tickers)]


Factory = Callable[[Iterable[Rule]], Any]


@pytest.fixture(params=[EngineUnderTest, ReferenceEngine], ids=["engine", "reference"])
def make(request: pytest.FixtureRequest) -> Factory:
    return request.param  # type: ignore[no-any-return]


def case(
    id: str,
    the_rule: Rule,
    ticks: list[Ticker],
    expected: list[int],
) -> Any:
    return pytest.param(the_rule, ticks, expected, id=id)


T = 1_000_000  # a base event time; cases count milliseconds from it

CASES = [
    # ---- levels, on every metric
    case(
        "price > X fires on entering, stays quiet while true, fires again after leaving",
        rule("price > 100"),
        prices((1, 90), (2, 101), (3, 102), (4, 100), (5, 101)),
        [2, 5],
    ),
    case("price > X is false at exactly X", rule("price > 100"), prices((1, 100), (2, 100)), []),
    case("price >= X fires at exactly X", rule("price >= 100"), prices((1, 99), (2, 100)), [2]),
    case(
        "price < X fires below and again after going back to X",
        rule("price < 100"),
        prices((1, 101), (2, 99.5), (3, 99), (4, 100), (5, 99)),
        [2, 5],
    ),
    case("price <= X fires at exactly X", rule("price <= 100"), prices((1, 101), (2, 100)), [2]),
    case(
        "change_24h >= 5% is (c - o) / o * 100, exact at the threshold",
        rule("change_24h >= 5%"),
        [tick(1, 104), tick(2, 105), tick(3, 104, open=98)],
        [2],
    ),
    # percentages are exact to 9 decimal places: in binary floating point 0.1 -> 0.105 is
    # 4.99999999999999 %, 0.3 -> 0.315 is 5.000000000000004 %
    case(
        "change_24h >= 5% fires on an exact 5% move that binary floating point puts below",
        rule("change_24h >= 5%"),
        [tick(1, 0.104, open=0.1), tick(2, 0.105, open=0.1)],
        [2],
    ),
    case(
        "change_24h <= 5% holds on an exact 5% move that binary floating point puts above",
        rule("change_24h <= 5%"),
        [tick(1, 0.316, open=0.3), tick(2, 0.315, open=0.3)],
        [2],
    ),
    case(
        "change_24h crosses above 5% at an exact 5% move",
        rule("change_24h crosses above 5%"),
        [tick(1, 0.104, open=0.1), tick(2, 0.105, open=0.1)],
        [2],
    ),
    case(
        "change_24h > 5% stays false on an exact 5% move that binary floating point puts above",
        rule("change_24h > 5%"),
        [tick(1, 0.3, open=0.3), tick(2, 0.315, open=0.3)],
        [],
    ),
    case(
        "range_24h >= 5% fires on an exact 5% range",
        rule("range_24h >= 5%"),
        [tick(1, high=0.104, low=0.1), tick(2, high=0.105, low=0.1)],
        [2],
    ),
    case(
        "change_24h < -5% on a fall",
        rule("change_24h < -5%"),
        [tick(1, 96), tick(2, 94), tick(3, 100), tick(4, 100, open=110)],
        [2, 4],
    ),
    case(
        "range_24h > 10% is (h - l) / l * 100",
        rule("range_24h > 10%"),
        [tick(1, high=110, low=100), tick(2, high=111, low=100), tick(3, high=120, low=100)],
        [2],
    ),
    case(
        "range_24h <= X",
        rule("range_24h <= 20%"),
        [tick(1, high=130, low=100), tick(2, high=120, low=100)],
        [2],
    ),
    case(
        "volume >= 1k with the k suffix",
        rule("volume >= 1k"),
        [tick(1, volume=999), tick(2, volume=1000), tick(3, volume=5000)],
        [2],
    ),
    case(
        "volume < X",
        rule("volume < 500"),
        [tick(1, volume=500), tick(2, volume=499)],
        [2],
    ),
    case(
        "quote_volume > 2m with the m suffix",
        rule("quote_volume > 2m"),
        [tick(1, quote_volume=2e6), tick(2, quote_volume=2e6 + 1)],
        [2],
    ),
    case(
        "quote_volume <= X",
        rule("quote_volume <= 1b"),
        [tick(1, quote_volume=2e9), tick(2, quote_volume=1e9)],
        [2],
    ),
    case(
        "high > X uses h",
        rule("high > 200"),
        [tick(1, high=200), tick(2, high=201, close=90)],
        [2],
    ),
    case(
        "high >= X",
        rule("high >= 150"),
        [tick(1, high=149), tick(2, high=150)],
        [2],
    ),
    case(
        "low < X uses l",
        rule("low < 50"),
        [tick(1, low=50), tick(2, low=49, close=120)],
        [2],
    ),
    case(
        "low <= X",
        rule("low <= 40"),
        [tick(1, low=41), tick(2, low=40)],
        [2],
    ),
    # ---- the first tick
    case(
        "a level already true on the first tick fires at once",
        rule("price > 100"),
        prices((1, 101)),
        [1],
    ),
    case(
        "the first tick never crosses, even when already beyond X",
        rule("price crosses above 100"),
        prices((1, 101), (2, 102)),
        [],
    ),
    case("the first tick never breaks", rule("breaks 24h high"), [tick(1, high=999)], []),
    # ---- crossings
    case(
        "crosses above: previous < X and now >= X (exactly X counts)",
        rule("price crosses above 100"),
        prices((1, 99), (2, 100), (3, 101), (4, 99), (5, 101)),
        [2, 5],
    ),
    case(
        "crosses above: starting from exactly X is no crossing",
        rule("price crosses above 100"),
        prices((1, 100), (2, 101)),
        [],
    ),
    case(
        "crosses above ignores a downward crossing",
        rule("price crosses above 100"),
        prices((1, 101), (2, 99)),
        [],
    ),
    case(
        "crosses below: previous > X and now <= X (exactly X counts)",
        rule("price crosses below 100"),
        prices((1, 101), (2, 100), (3, 99), (4, 101), (5, 99)),
        [2, 5],
    ),
    case(
        "crosses below: starting from exactly X is no crossing",
        rule("price crosses below 100"),
        prices((1, 100), (2, 99)),
        [],
    ),
    case(
        "crosses X fires in either direction",
        rule("price crosses 100"),
        prices((1, 99), (2, 101), (3, 99), (4, 101)),
        [2, 3, 4],
    ),
    case(
        "crosses X keeps one armed flag per direction (band re-arms each side separately)",
        rule("price crosses 100", rearm=0.25),
        prices((1, 99), (2, 101), (3, 99), (4, 101), (5, 70), (6, 101), (7, 130), (8, 99)),
        [2, 3, 6, 8],
    ),
    case(
        "crosses X shares one cooldown between the two directions",
        rule("price crosses 100", cooldown_ms=10_000),
        prices((1000, 99), (2000, 101), (3000, 99), (12_000, 101)),
        [2000, 12_000],
    ),
    case(
        "crosses above on change_24h",
        rule("change_24h crosses above 5%"),
        [tick(1, 104), tick(2, 105), tick(3, 104), tick(4, 110)],
        [2, 4],
    ),
    case(
        "crosses below on volume",
        rule("volume crosses below 1k"),
        [tick(1, volume=2000), tick(2, volume=1000)],
        [2],
    ),
    # ---- breaks
    case(
        "breaks 24h high: h above the previous h; consecutive breaks fire once until a non-break",
        rule("breaks 24h high"),
        [
            tick(1, high=100),
            tick(2, high=100),
            tick(3, high=101),
            tick(4, high=101),
            tick(5, high=102),
            tick(6, high=103),
            tick(7, high=103),
            tick(8, high=104),
        ],
        [3, 5, 8],
    ),
    case(
        "breaks 24h low: l smaller than the previous tick's l",
        rule("breaks 24h low"),
        [tick(1, low=50), tick(2, low=49), tick(3, low=49), tick(4, low=48), tick(5, low=60)],
        [2, 4],
    ),
    case(
        "breaks with a rearm band re-arms as soon as the condition is false",
        rule("breaks 24h high", rearm=0.5),
        [tick(1, high=100), tick(2, high=101), tick(3, high=101), tick(4, high=102)],
        [2, 4],
    ),
    # ---- moves
    case(
        "rises P% in D: (c - min) / min * 100 >= P, min over [E - D, E]",
        rule("rises 10% in 10s"),
        prices((T, 100), (T + 4000, 105), (T + 8000, 110)),
        [T + 8000],
    ),
    case(
        "rises: the window includes its start E - D",
        rule("rises 10% in 10s"),
        prices((T, 100), (T + 10_000, 110)),
        [T + 10_000],
    ),
    case(
        "rises: a price older than E - D has left the window",
        rule("rises 10% in 10s"),
        prices((T, 100), (T + 10_001, 110)),
        [],
    ),
    case(
        "rises: the low left the window before the rise completed",
        rule("rises 10% in 10s"),
        prices((T, 100), (T + 5000, 105), (T + 12_000, 110)),
        [],
    ),
    case(
        "drops P% in D: (max - c) / max * 100 >= P",
        rule("drops 10% in 1m"),
        prices((T, 100), (T + 1000, 95), (T + 2000, 90), (T + 3000, 89)),
        [T + 2000],
    ),
    case(
        "rises: an exact 5% rise that binary floating point puts below 5% fires",
        rule("rises 5% in 10s"),
        prices((T, 0.1), (T + 1000, 0.104), (T + 2000, 0.105)),
        [T + 2000],
    ),
    case(
        "drops: an exact 5% drop that binary floating point puts below 5% fires",
        rule("drops 5% in 10s"),
        prices((T, 0.7), (T + 1000, 0.666), (T + 2000, 0.665)),
        [T + 2000],
    ),
    case(
        "moves: an exact 10% drop fires moves 10%",
        rule("moves 10% in 10s"),
        prices((T, 0.3), (T + 1000, 0.28), (T + 2000, 0.27)),
        [T + 2000],
    ),
    case(
        "drops: the high left the window",
        rule("drops 10% in 1m"),
        prices((T, 100), (T + 30_000, 95), (T + 61_000, 90)),
        [],
    ),
    case(
        "moves P% in D: a rise or a drop",
        rule("moves 10% in 1m"),
        prices((T, 100), (T + 1000, 110), (T + 2000, 100), (T + 3000, 90)),
        [T + 1000, T + 3000],
    ),
    case(
        "rises with a rearm band re-arms only when the rise is below P * (1 - b)",
        rule("rises 10% in 10s", rearm=0.5),
        prices(
            (T, 100),
            (T + 1000, 110),  # fires
            (T + 2000, 108),  # false, but 8 >= 5: stays disarmed
            (T + 3000, 111),  # true, disarmed
            (T + 20_000, 104),  # window holds only 104: rise 0 < 5, re-arms
            (T + 21_000, 100),
            (T + 22_000, 110),  # fires
        ),
        [T + 1000, T + 22_000],
    ),
    # ---- cooldown
    case(
        "cooldown: a tick at exactly last_fired + cooldown fires",
        rule("price > 100", cooldown_ms=10_000),
        prices((1000, 101), (2000, 99), (11_000, 101)),
        [1000, 11_000],
    ),
    case(
        "cooldown: a tick one ms before its end does not fire",
        rule("price > 100", cooldown_ms=10_000),
        prices((1000, 101), (2000, 99), (10_999, 101)),
        [1000],
    ),
    case(
        "cooldown: true during the cooldown and still true at its end fires then",
        rule("price > 100", cooldown_ms=10_000),
        prices((1000, 101), (2000, 99), (3000, 101), (10_999, 102), (11_000, 101), (12_000, 102)),
        [1000, 11_000],
    ),
    case(
        "cooldown: true during the cooldown but false at its end does not fire",
        rule("price > 100", cooldown_ms=10_000),
        prices((1000, 101), (2000, 99), (3000, 101), (11_000, 99)),
        [1000],
    ),
    case(
        "cooldown: a crossing inside the cooldown is lost",
        rule("price crosses above 100", cooldown_ms=10_000),
        prices((1000, 99), (2000, 101), (3000, 99), (4000, 101), (11_000, 102)),
        [2000],
    ),
    case(
        "cooldown 0: fires again on the first re-entry",
        rule("price > 100"),
        prices((1000, 101), (1001, 99), (1002, 101)),
        [1000, 1002],
    ),
    # ---- re-arm band
    case(
        "rearm band for >: no re-fire until at or below X - |X|*b (exact boundary re-arms)",
        rule("price > 100", rearm=0.25),
        prices((1, 101), (2, 80), (3, 101), (4, 75), (5, 101)),
        [1, 5],
    ),
    case(
        "rearm band for >: just above the boundary does not re-arm",
        rule("price > 100", rearm=0.25),
        prices((1, 101), (2, 75.5), (3, 101)),
        [1],
    ),
    case(
        "rearm band for <: re-arms at or above X + |X|*b",
        rule("price < 100", rearm=0.25),
        prices((1, 99), (2, 124), (3, 99), (4, 125), (5, 99)),
        [1, 5],
    ),
    case(
        "rearm band for crosses above",
        rule("price crosses above 100", rearm=0.25),
        prices((1, 99), (2, 101), (3, 80), (4, 101), (5, 75), (6, 101)),
        [2, 6],
    ),
    case(
        "rearm band for crosses below",
        rule("price crosses below 100", rearm=0.25),
        prices((1, 101), (2, 99), (3, 120), (4, 99), (5, 125), (6, 99)),
        [2, 6],
    ),
    # band edges are exact decimals: 0.3 - 0.3 * 7% is 0.279 (in floating point
    # 0.27899999999999997), 3% * (1 - 20%) is 2.4 (2.4000000000000004)
    case(
        "price > 0.3 with rearm 7% re-arms at exactly 0.279",
        rule("price > 0.3", rearm=0.07),
        prices((1, 0.31), (2, 0.279), (3, 0.31)),
        [1, 3],
    ),
    case(
        "change_24h > 0.3% with rearm 7% re-arms at exactly 0.279%",
        rule("change_24h > 0.3%", rearm=0.07),
        [tick(1, 100.31), tick(2, 100.279), tick(3, 100.31)],
        [1, 3],
    ),
    case(
        "rises 3% with rearm 20% does not re-arm at exactly 2.4%, only below",
        rule("rises 3% in 10s", rearm=0.2),
        prices(
            (T, 100),
            (T + 1000, 103),
            (T + 2000, 102.4),
            (T + 3000, 103),
            (T + 4000, 102.39),
            (T + 5000, 103),
        ),
        [T + 1000, T + 5000],
    ),
    case(
        "rearm band on a negative X uses |X|: change_24h > -20% re-arms at or below -25%",
        rule("change_24h > -20%", rearm=0.25),
        [tick(1, 90), tick(2, 76), tick(3, 90), tick(4, 75), tick(5, 90)],
        [1, 5],
    ),
    case(
        "rearm band: a metric that cannot be computed does not re-arm",
        rule("change_24h > 5%", rearm=0.5),
        [tick(1, 106), tick(2, 106, open=0), tick(3, 106)],
        [1],
    ),
    case(
        "no rearm band: a metric that cannot be computed is a false condition and re-arms",
        rule("change_24h > 5%"),
        [tick(1, 106), tick(2, 106, open=0), tick(3, 106)],
        [1, 3],
    ),
    # ---- once and expires
    case(
        "once: fires at most once",
        rule("price > 100", once=True),
        prices((1, 101), (2, 99), (3, 101), (4, 99), (5, 101)),
        [1],
    ),
    case(
        "expires: a tick at exactly expires does not fire",
        rule("price > 100", expires_ms=5000),
        prices((1000, 99), (5000, 101)),
        [],
    ),
    case(
        "expires: a tick one ms before expires fires",
        rule("price > 100", expires_ms=5000),
        prices((1000, 99), (4999, 101)),
        [4999],
    ),
    case(
        "expires: nothing fires after it",
        rule("price crosses 100", expires_ms=5000),
        prices((1000, 99), (2000, 101), (6000, 99), (7000, 101)),
        [2000],
    ),
    # ---- composites
    case(
        "all: fires when every part is true",
        rule("all(price > 100, volume >= 1k)"),
        [
            tick(1, 101, volume=500),
            tick(2, 101, volume=1000),
            tick(3, 101, volume=2000),
            tick(4, 99, volume=2000),
            tick(5, 101, volume=2000),
        ],
        [2, 5],
    ),
    case(
        "any: fires when one part is true, and again only after all parts were false",
        rule("any(price > 100, volume >= 1k)"),
        [
            tick(1, 99, volume=500),
            tick(2, 101, volume=500),
            tick(3, 99, volume=1000),
            tick(4, 99, volume=500),
            tick(5, 99, volume=1000),
        ],
        [2, 5],
    ),
    case(
        "all with a crossing and a level",
        rule("all(price crosses above 100, volume >= 1k)"),
        [
            tick(1, 99, volume=500),
            tick(2, 101, volume=500),
            tick(3, 99, volume=2000),
            tick(4, 101, volume=2000),
        ],
        [4],
    ),
    case(
        "any of nested all",
        rule("any(all(price > 100, low < 50), breaks 24h high)"),
        [
            tick(1, 101, low=60, high=200),
            tick(2, 101, low=40),
            tick(3, 99, low=40),
            tick(4, 99, low=40, high=201),
        ],
        [2, 4],
    ),
    case(
        "a composite ignores the rearm band: re-arms when the whole condition is false",
        rule("all(price > 100, volume > 1)", rearm=0.5),
        prices((1, 101), (2, 99), (3, 101)),
        [1, 3],
    ),
    # ---- metric not computable
    case(
        "change_24h with o == 0 is false, even for a threshold every value would pass",
        rule("change_24h > -100%"),
        [tick(1, 100, open=0), tick(2, 100, open=100)],
        [2],
    ),
    case(
        "change_24h < X with o == 0 is false",
        rule("change_24h < 5%"),
        [tick(1, 100, open=0)],
        [],
    ),
    case(
        "range_24h with l == 0 is false",
        rule("range_24h >= 0%"),
        [tick(1, high=100, low=0), tick(2, high=100, low=90)],
        [2],
    ),
    case(
        "low with l == 0 is computable (only change_24h and range_24h are not)",
        rule("low < 1"),
        [tick(1, low=0)],
        [1],
    ),
    case(
        "crossing from a tick whose metric cannot be computed is no crossing",
        rule("change_24h crosses above 5%"),
        [tick(1, 100, open=0), tick(2, 106), tick(3, 100), tick(4, 106)],
        [4],
    ),
    # ---- duplicate and out-of-order tickers
    case(
        "a duplicate event time is ignored, also as the previous tick of a crossing",
        rule("price crosses above 100"),
        prices((1000, 99), (1000, 101), (2000, 101)),
        [2000],
    ),
    case(
        "an out-of-order ticker is ignored",
        rule("price > 100"),
        prices((2000, 99), (1000, 101), (1500, 101)),
        [],
    ),
    case(
        "an out-of-order ticker is not the previous tick of a crossing",
        rule("price crosses above 100"),
        prices((2000, 101), (1500, 99), (3000, 101)),
        [],
    ),
    case(
        "an out-of-order ticker is not in a move window",
        rule("rises 10% in 10s"),
        prices((T + 5000, 110), (T + 4000, 100), (T + 6000, 110)),
        [],
    ),
    case(
        "an out-of-order ticker does not re-arm",
        rule("price > 100"),
        prices((2000, 101), (1000, 99), (3000, 101)),
        [2000],
    ),
    case(
        "an ignored ticker does not break the cooldown clock",
        rule("price > 100", cooldown_ms=1000),
        prices((5000, 101), (5500, 99), (6000, 99), (5999, 101), (6000, 101), (6001, 101)),
        [5000, 6001],
    ),
    # ---- a chat's mute: not firing at all, so nothing is used up by it
    case(
        "a muted rule does not fire; a level still true when the mute ends fires then",
        rule("price > 100", muted_until_ms=3000),
        prices((1000, 101), (2000, 101), (3000, 101), (4000, 101)),
        [3000],
    ),
    case(
        "a once rule that crosses while muted is not used up by it",
        rule("price crosses above 100", once=True, muted_until_ms=3000),
        prices((1000, 99), (2000, 101), (2500, 99), (3500, 101)),
        [3500],
    ),
    case(
        "a crossing while muted starts no cooldown",
        rule("price crosses above 100", cooldown_ms=10_000, muted_until_ms=3000),
        prices((1000, 99), (2000, 101), (2500, 99), (3500, 101)),
        [3500],
    ),
    case(
        "a crossing while muted is not alerted when the mute ends (as in a cooldown)",
        rule("price crosses above 100", muted_until_ms=3000),
        prices((1000, 99), (2000, 101), (3000, 101)),
        [],
    ),
]


@pytest.mark.parametrize(("the_rule", "ticks", "expected"), CASES)
def test_rule_fires_at(make: Factory, the_rule: Rule, ticks: list[Ticker], expected: list[int]):
    fired = make([the_rule]).process(ticks)
    assert fired == [(the_rule.id, SYMBOL, time) for time in expected]


def test_all_in_one_call_equals_one_call_per_ticker(make: Factory):
    """Splitting the stream into several process calls changes nothing."""
    r = rule("price crosses 100", cooldown_ms=1000, rearm=0.25)
    ticks = prices(
        (1000, 99), (2000, 101), (2500, 70), (2600, 70), (3000, 101), (4000, 130), (5000, 99)
    )
    one = make([r]).process(ticks)
    engine = make([r])
    many = [alert for t in ticks for alert in engine.process([t])]
    assert one == many == [("r", SYMBOL, 2000), ("r", SYMBOL, 3000), ("r", SYMBOL, 5000)]


# ---- symbols, globs, exclude


SYMBOL_CASES = [
    pytest.param(
        ("*USDT",),
        (),
        ["BTCUSDT", "ETHUSDT", "ETHBTC", "USDT"],
        ["BTCUSDT", "ETHUSDT", "USDT"],
        id="glob *USDT matches every USDT symbol and nothing else",
    ),
    pytest.param(
        ("B?CUSDT",),
        (),
        ["BTCUSDT", "BNCUSDT", "BCUSDT", "BTTCUSDT", "ETHUSDT"],
        ["BTCUSDT", "BNCUSDT"],
        id="glob ? matches exactly one character",
    ),
    pytest.param(
        ("*USDT",),
        ("BTCUSDT", "ETH*"),
        ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ETHBTC"],
        ["SOLUSDT"],
        id="exclude removes names and globs from the match",
    ),
    pytest.param(
        ("BTCUSDT", "*USDT", "B*"),
        (),
        ["BTCUSDT"],
        ["BTCUSDT"],
        id="a symbol matched by several patterns is one pair and fires once",
    ),
    pytest.param(
        ("BTCUSDT",),
        (),
        ["BTCUSDT", "BTCUSDT_240628", "XBTCUSDT"],
        ["BTCUSDT"],
        id="a plain name matches only that symbol",
    ),
    pytest.param(
        ("*",),
        ("*",),
        ["BTCUSDT"],
        [],
        id="excluding everything matches nothing",
    ),
]


@pytest.mark.parametrize(("symbols", "exclude", "seen", "expected"), SYMBOL_CASES)
def test_symbols_and_exclude(
    make: Factory,
    symbols: tuple[str, ...],
    exclude: tuple[str, ...],
    seen: list[str],
    expected: list[str],
):
    r = rule("price > 100", symbols=symbols, exclude=exclude)
    fired = make([r]).process([tick(1, 101, symbol=s) for s in seen])
    assert fired == [("r", s, 1) for s in expected]


def test_state_and_previous_tick_are_per_symbol(make: Factory):
    """Each symbol crosses against its own previous tick, with its own armed flag."""
    r = rule("price crosses above 100", symbols=("*USDT",))
    ticks = [
        tick(1, 99, symbol="BTCUSDT"),
        tick(2, 101, symbol="ETHUSDT"),  # ETH's first tick: no crossing
        tick(3, 101, symbol="BTCUSDT"),  # BTC: 99 -> 101
        tick(4, 99, symbol="ETHUSDT"),
        tick(5, 101, symbol="ETHUSDT"),  # ETH: 99 -> 101
    ]
    assert make([r]).process(ticks) == [("r", "BTCUSDT", 3), ("r", "ETHUSDT", 5)]


def test_time_order_is_per_symbol(make: Factory):
    """A ticker is out of order only relative to its own symbol's last one."""
    r = rule("price > 100", symbols=("*USDT",))
    ticks = [tick(10, 101, symbol="BTCUSDT"), tick(5, 101, symbol="ETHUSDT")]
    assert make([r]).process(ticks) == [("r", "BTCUSDT", 10), ("r", "ETHUSDT", 5)]


# ---- several rules, add_rule and remove_rule


def test_two_rules_on_one_ticker_fire_in_the_order_they_were_added(make: Factory):
    second = rule("price > 100", id="zz-added-first")
    first = rule("volume > 1", id="aa-added-second")
    engine = make([second, first])
    third = rule("price > 50", id="mm-added-third")
    engine.add_rule(third)
    assert engine.process([tick(1, 101)]) == [
        ("zz-added-first", SYMBOL, 1),
        ("aa-added-second", SYMBOL, 1),
        ("mm-added-third", SYMBOL, 1),
    ]


def test_alerts_of_several_tickers_come_in_input_order(make: Factory):
    a = rule("price > 100", id="a", symbols=("*",))
    b = rule("price > 100", id="b", symbols=("ETHUSDT",))
    ticks = [tick(2, 101, symbol="ETHUSDT"), tick(1, 101, symbol="BTCUSDT")]
    assert make([a, b]).process(ticks) == [
        ("a", "ETHUSDT", 2),
        ("b", "ETHUSDT", 2),
        ("a", "BTCUSDT", 1),
    ]


def test_add_rule_while_running_takes_effect_on_the_next_tick(make: Factory):
    engine = make([])
    assert engine.process(prices((1, 101))) == []
    engine.add_rule(rule("price > 100"))
    assert engine.process(prices((2, 101), (3, 101))) == [("r", SYMBOL, 2)]


def test_add_rule_crosses_against_the_symbols_tick_from_before_the_rule(make: Factory):
    engine = make([rule("volume > 1m", id="other")])
    assert engine.process(prices((1, 99))) == []
    engine.add_rule(rule("price crosses above 100"))
    assert engine.process(prices((2, 101))) == [("r", SYMBOL, 2)]


def test_a_composite_that_crosses_on_its_first_tick_re_arms_on_the_tick_after(make: Factory):
    """DESIGN, Firing: the pair re-arms on a tick where the condition is false. A composite
    with a crossing is evaluated again on the tick after one where the crossing held; for a
    rule just added (a /watch, a reload, the first tick after a restart) that re-check was
    dropped, and the pair stayed disarmed: the alert at 89 was lost."""
    engine = make([])
    assert engine.process(prices((1, 98))) == []
    engine.add_rule(rule("any(price crosses above 100, price < 90)"))
    assert engine.process(prices((2, 100.5), (3, 101), (4, 89))) == [
        ("r", SYMBOL, 2),
        ("r", SYMBOL, 4),
    ]


def test_add_rule_move_window_holds_ticks_from_before_the_rule(make: Factory):
    engine = make([rule("volume > 1m", id="other")])
    assert engine.process(prices((T, 100))) == []
    engine.add_rule(rule("rises 10% in 1m"))
    assert engine.process(prices((T + 1000, 110))) == [("r", SYMBOL, T + 1000)]


def test_add_rule_for_a_symbol_no_rule_watched_yet(make: Factory):
    """Even a symbol no rule covered has its previous tick and its last event time kept."""
    engine = make([])
    assert engine.process(prices((2, 99))) == []
    engine.add_rule(rule("price crosses above 100"))
    assert engine.process(prices((1, 101), (3, 101))) == [("r", SYMBOL, 3)]


def test_remove_rule_stops_firing(make: Factory):
    engine = make([rule("price crosses 100"), rule("price crosses 100", id="kept")])
    assert engine.process(prices((1, 99), (2, 101))) == [("r", SYMBOL, 2), ("kept", SYMBOL, 2)]
    assert engine.remove_rule("r") is True
    assert engine.process(prices((3, 99), (4, 101))) == [("kept", SYMBOL, 3), ("kept", SYMBOL, 4)]


def test_remove_rule_of_an_unknown_id_returns_false(make: Factory):
    engine = make([rule("price > 100")])
    assert engine.remove_rule("nope") is False
    assert engine.process(prices((1, 101))) == [("r", SYMBOL, 1)]


def test_a_rule_added_again_after_removal_starts_fresh(make: Factory):
    engine = make([rule("price > 100", once=True)])
    assert engine.process(prices((1, 101))) == [("r", SYMBOL, 1)]
    assert engine.remove_rule("r") is True
    engine.add_rule(rule("price > 100", once=True))
    assert engine.process(prices((2, 101))) == [("r", SYMBOL, 2)]


# ---------------------------------------------------------------- the engine's own API


def test_engine_lists_its_rules_in_the_order_they_were_added():
    engine = Engine([rule("price > 1", id="a"), rule("price < 1", id="b")])
    engine.add_rule(rule("volume > 1", id="c"))
    assert [r.id for r in engine.rules()] == ["a", "b", "c"]
    assert len(engine) == 3
    assert "b" in engine
    assert engine.remove_rule("b") is True
    assert engine.remove_rule("b") is False
    assert [r.id for r in engine.rules()] == ["a", "c"]


def test_a_duplicate_rule_id_is_refused_and_changes_nothing():
    engine = Engine([rule("price > 1", id="a")])
    with pytest.raises(ValueError, match="duplicate rule id 'a'"):
        engine.add_rule(rule("price < 5", id="a"))
    assert [r.condition for r in engine.rules()] == [parse("price > 1")]


def test_last_ticker_is_the_symbols_last_accepted_tick():
    engine = Engine([rule("price > 1000")])
    assert engine.last_ticker(SYMBOL) is None
    engine.process(prices((T, 100), (T + 1000, 101), (T + 500, 99)))  # the last is out of order
    last = engine.last_ticker(SYMBOL)
    assert last is not None
    assert (last.time, last.close) == (T + 1000, 101)
    assert engine.symbols() == [SYMBOL]


def test_alert_texts_show_the_canonical_condition_and_the_threshold():
    engine = Engine([rule("crosses above 70k"), rule("breaks 24h high", id="hi")])
    engine.process([tick(T, 69_000.0, high=69_500.0)])
    alerts = engine.process([tick(T + 1000, 70_100.5, high=70_100.5)])
    assert [(a.rule.id, a.condition, a.threshold, a.price) for a in alerts] == [
        ("r", "price crosses above 70000", "70000", "70100.5"),
        ("hi", "breaks 24h high", "70100.5", "70100.5"),  # a breakout shows the new high
    ]


def test_a_moves_alert_carries_the_price_its_move_is_measured_from():
    """The alert says how far the price went and from where: the window's low for a rise, its
    high for a drop, and for ``moves`` the end of the larger move; other alerts carry NaN."""

    def starts(when: str, *closes: float) -> list[tuple[int, float]]:
        engine = Engine([rule(when)])
        ticks = prices(*((T + 10_000 * i, close) for i, close in enumerate(closes)))
        return [((a.time - T) // 10_000, a.start) for a in engine.process(ticks)]

    assert starts("rises 5% in 1m", 90.0, 80.0, 95.0) == [(2, 80.0)]  # from the low, not 90
    assert starts("drops 5% in 1m", 100.0, 120.0, 110.0) == [(2, 120.0)]
    # 100 -> 104 -> 98: down 5.77% from 104 is the larger (up 4% from 100 is under 5%)
    assert starts("moves 5% in 1m", 100.0, 104.0, 98.0) == [(2, 104.0)]
    assert starts("moves 5% in 1m", 104.0, 100.0, 106.0) == [(2, 100.0)]  # up 6% from 100
    (level,) = Engine([rule("price > 100")]).process([tick(T, 101.0)])
    assert level.start != level.start  # NaN: no move


def test_move_now_is_the_move_a_rule_of_that_window_sees_at_the_last_tick():
    """What /list shows of a moves watch: the size the rule compares and where it is measured
    from; nothing for a window no rule of the symbol has, or a symbol never seen."""
    engine = Engine([rule("rises 5% in 1m", id="up")])
    engine.process(prices((T, 90.0), (T + 10_000, 80.0), (T + 20_000, 83.0)))
    rise, start = engine.move_now(SYMBOL, parse("rises 9% in 1m"))  # the same window
    assert (round(rise, 2), start) == (3.75, 80.0)
    drop, high = engine.move_now(SYMBOL, parse("drops 9% in 1m"))
    assert (round(drop, 2), high) == (7.78, 90.0)
    assert engine.move_now(SYMBOL, parse("rises 5% in 2m")) is None  # no rule has that window
    assert engine.move_now("ETHUSDT", parse("rises 5% in 1m")) is None


def test_move_now_of_a_window_added_since_the_last_tick_is_read_from_the_prices_kept():
    """A new watch's window (``rises 5% in 30s`` where no rule had 30s) has seen no tick yet:
    its answer and /list said nothing until one came. It is what the window will see at the
    next tick, from the prices the engine keeps: the same as once that tick has come (here
    the last price again), and a price older than the window is not in it."""
    engine = Engine([rule("rises 5% in 1m", id="up")])
    engine.process(prices((T, 70.0), (T + 10_000, 80.0), (T + 40_000, 90.0), (T + 50_000, 84.0)))
    engine.add_rule(rule("moves 5% in 30s", id="new"))
    before = engine.move_now(SYMBOL, parse("moves 5% in 30s"))
    assert before is not None
    assert (round(before[0], 2), before[1]) == (6.67, 90.0)  # down from 90, not 80 (too old)
    engine.process(prices((T + 50_500, 84.0)))
    assert engine.move_now(SYMBOL, parse("moves 5% in 30s")) == before


def test_alert_carries_the_time_of_the_symbols_previous_tick():
    """The feed flags an alert computed across an outage by comparing this time with it."""
    engine = Engine([rule("price > 1000"), rule("price < 50", id="low")])
    first = engine.process([tick(T, 2000.0)])  # true on the first tick: nothing before it
    engine.process([tick(T + 1000, 100.0, symbol="ETHUSDT")])  # another symbol's tick
    later = engine.process([tick(T + 60_000, 10.0)])
    assert [(a.rule.id, a.previous_time) for a in first] == [("r", -1)]
    assert [(a.rule.id, a.previous_time) for a in later] == [("low", T)]
