"""Engine.process_message (the feed's path, no ticker per element) equals process(parse(...))."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbot.rules.conditions import parse
from alertbot.rules.engine import Alert, Engine
from alertbot.rules.model import Rule
from alertbot.ticker import ParseStats, tickers_from_obj

# every engine test runs over both implementations of the core
pytestmark = pytest.mark.usefixtures("core_impl")

RULES = [
    Rule("up", parse("price crosses above 100"), ("*USDT",)),
    Rule("lvl", parse("price >= 101"), ("BTCUSDT",), rearm=0.01),
    Rule("hi", parse("breaks 24h high"), ("*",)),
    Rule("chg", parse("change_24h < -1%"), ("ETHUSDT",), cooldown_ms=2000),
    Rule("mv", parse("moves 1% in 5s"), ("*USDT",)),
    Rule("vol", parse("all(volume > 15, price < 100)"), ("BTCUSDT", "ETHBTC")),
]

_price = st.one_of(
    st.sampled_from(["98", "99", "99.5", "100", "100.0", "101", "102", "0"]),
    # spellings float() takes or refuses, which the C core must read alike or leave to Python
    st.sampled_from(
        ["1e2", "1.01E2", "+100", "-0", "-0.0", "100.", ".99e2", " 100", "1_00", "nan", "inf"]
    ),
    st.sampled_from(["1e400", "-1", "", "1e", "--1", "\u0661\u0660\u0660", "0x10", "1,5"]),
)
_good = st.fixed_dictionaries(
    {
        "e": st.just("24hrMiniTicker"),
        "E": st.one_of(
            st.integers(0, 20).map(lambda i: 1_000_000 + i * 700), st.sampled_from([-1, 2**70])
        ),
        "s": st.sampled_from(["BTCUSDT", "ETHUSDT", "ETHBTC", "btcusdt", "EthBTC", "1000", ""]),
        "c": _price,
        "o": st.sampled_from(["100", "101", "0"]),
        "h": _price,
        "l": _price,
        "v": st.sampled_from(["10", "20"]),
        "q": st.sampled_from(["1000", "2000"]),
    }
)


@st.composite
def _element(draw: st.DrawFn) -> Any:
    el = dict(draw(_good))
    damage = draw(st.integers(0, 9))
    if damage == 1:
        el["c"] = "abc"
    elif damage == 2:
        el["E"] = True
    elif damage == 3:
        el["st"] = 2
    elif damage == 4:
        el["v"] = 5.5  # a JSON number: accepted by the slow path
    elif damage == 5:
        del el["q"]
    elif damage == 6:
        return draw(st.sampled_from(["junk", 42, None, []]))
    return el


_message = st.one_of(
    st.lists(_element(), max_size=6),
    _element(),
    st.lists(_element(), max_size=4).map(lambda d: {"stream": "!miniTicker@arr", "data": d}),
    st.just({"result": None, "id": 3}),
)


def _key(alerts: list[Alert]) -> list[tuple[str, str, int, str]]:
    return [(a.rule.id, a.symbol, a.time, a.price) for a in alerts]


@pytest.mark.parametrize("market_st", [1, 2], ids=["usdm", "coinm"])
@settings(max_examples=300, deadline=None)
@given(st.lists(_message, max_size=12))
def test_process_message_fires_and_counts_exactly_what_process_of_parsed_tickers_does(
    market_st: int, messages: list[Any]
) -> None:
    direct, via_tickers = Engine(RULES), Engine(RULES)
    stats_direct = ParseStats(market_st=market_st)
    stats_tickers = ParseStats(market_st=market_st)
    got, want = [], []
    for message in messages:
        got.extend(_key(direct.process_message(message, stats_direct)))
        want.extend(_key(via_tickers.process(tickers_from_obj(message, stats_tickers))))
    assert got == want
    assert stats_direct == stats_tickers
    for symbol in ("BTCUSDT", "ETHUSDT", "ETHBTC"):
        assert direct.last_ticker(symbol) == via_tickers.last_ticker(symbol)
