"""Ticker parsing: every message shape, and malformed input counted and skipped, never raised."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbot.ticker import ParseStats, Ticker, Unreadable, parse_message, percent, salvage

GOOD = {
    "e": "24hrMiniTicker",
    "E": 1732000000000,
    "s": "BTCUSDT",
    "c": "70012.50",
    "o": "68000.00",
    "h": "70500.00",
    "l": "67500.10",
    "v": "12345.678",
    "q": "860000000.5",
}
EXPECTED = Ticker(
    "BTCUSDT", 1732000000000, 70012.5, 68000.0, 70500.0, 67500.1, 12345.678, 860000000.5, "70012.50"
)


def parse(obj: object) -> tuple[list[Ticker], ParseStats]:
    stats = ParseStats()
    return parse_message(orjson.dumps(obj), stats), stats


def test_raw_array_gives_one_ticker_per_element() -> None:
    tickers, stats = parse([GOOD, {**GOOD, "s": "ETHUSDT"}])
    assert tickers == [EXPECTED, EXPECTED._replace(symbol="ETHUSDT")]
    assert stats.tickers == 2
    assert stats.malformed == 0


def test_single_object_message_gives_its_ticker() -> None:
    assert parse(GOOD)[0] == [EXPECTED]


def test_combined_stream_wrapper_is_unwrapped_for_objects_and_arrays() -> None:
    assert parse({"stream": "btcusdt@miniTicker", "data": GOOD})[0] == [EXPECTED]
    assert parse({"stream": "!miniTicker@arr", "data": [GOOD]})[0] == [EXPECTED]


def test_price_text_is_kept_exactly_as_sent() -> None:
    tickers, _ = parse({**GOOD, "c": "70012.5000"})
    assert tickers[0].price_text == "70012.5000"
    assert tickers[0].close == 70012.5


def test_lowercase_symbol_is_upper_cased() -> None:
    assert parse({**GOOD, "s": "btcusdt"})[0][0].symbol == "BTCUSDT"


@pytest.mark.parametrize("st_value", [1, None])
def test_usdm_elements_are_kept(st_value: int | None) -> None:
    obj = dict(GOOD) if st_value is None else {**GOOD, "st": st_value, "ps": "BTCUSDT"}
    assert len(parse(obj)[0]) == 1


def test_a_coin_m_parse_keeps_st_2_and_skips_st_1_as_foreign() -> None:
    """ParseStats.market_st: the market read; an element without ``st`` is its own."""
    stats = ParseStats(market_st=2)
    coin = {**GOOD, "s": "BTCUSD_PERP", "st": 2, "ps": "BTCUSD"}
    frame = [coin, {**GOOD, "st": 1}, {**GOOD, "s": "ETHUSD_PERP"}]
    tickers = parse_message(orjson.dumps(frame), stats)
    assert [t.symbol for t in tickers] == ["BTCUSD_PERP", "ETHUSD_PERP"]
    assert (stats.foreign, stats.malformed) == (1, 0)


def test_elements_of_another_market_are_skipped_and_counted_as_foreign() -> None:
    tickers, stats = parse([{**GOOD, "st": 2, "ps": "BTCUSD"}, GOOD])
    assert tickers == [EXPECTED]
    assert stats.foreign == 1
    assert stats.malformed == 0


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        pytest.param(
            {k: v for k, v in GOOD.items() if k != "c"}, "missing or bad number", id="missing-c"
        ),
        pytest.param({**GOOD, "c": "abc"}, "missing or bad number", id="non-numeric"),
        pytest.param({**GOOD, "h": "NaN"}, "missing or bad number", id="nan"),
        pytest.param({**GOOD, "l": "inf"}, "missing or bad number", id="infinite"),
        pytest.param({**GOOD, "c": "-1.5"}, "missing or bad number", id="negative-price"),
        pytest.param({**GOOD, "v": None}, "missing or bad number", id="null"),
        pytest.param({**GOOD, "q": True}, "missing or bad number", id="bool"),
        pytest.param({**GOOD, "o": ["1"]}, "missing or bad number", id="list"),
        pytest.param({**GOOD, "E": "1732000000000"}, "bad symbol or event time", id="E-string"),
        pytest.param({**GOOD, "E": 2**63}, "bad symbol or event time", id="E-beyond-64-bits"),
        pytest.param({**GOOD, "s": 5}, "bad symbol or event time", id="symbol-int"),
        pytest.param({**GOOD, "s": ""}, "bad symbol or event time", id="symbol-empty"),
        pytest.param({**GOOD, "e": "24hrTicker"}, "not a 24hrMiniTicker", id="other-event"),
        pytest.param("BTCUSDT", "not an object", id="string-element"),
        pytest.param(42, "not an object", id="number-element"),
    ],
)
def test_malformed_element_is_skipped_counted_and_the_rest_kept(
    element: object, reason: str
) -> None:
    tickers, stats = parse([element, GOOD])
    assert tickers == [EXPECTED]
    assert stats.malformed == 1
    assert stats.reasons == {reason: 1}


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1,", b"\xff\xfe", b"null", b"42", b'"text"', b"{]"], ids=repr
)
def test_garbage_messages_are_counted_not_raised(raw: bytes) -> None:
    stats = ParseStats()
    assert parse_message(raw, stats) == []
    assert stats.malformed == 1


_BAD_SYMBOL = orjson.dumps({**GOOD, "s": "BTC#"}).replace(b"#", b"\xff")
_GOOD_BYTES = orjson.dumps(GOOD)


def test_a_message_loses_only_its_element_that_is_not_utf8() -> None:
    stats = ParseStats()
    assert parse_message(b"[" + _BAD_SYMBOL + b"," + _GOOD_BYTES + b"]", stats) == [EXPECTED]
    assert stats.reasons == {"invalid UTF-8": 1}


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # escaped quotes, brackets and commas inside strings, nested values, whitespace
        (
            b'[ {"x":"a\\"],{[","y":[1,{"z":[]}]} ,\n' + _BAD_SYMBOL + b", 7 ]",
            [{"x": 'a"],{[', "y": [1, {"z": []}]}, "bad", 7],
        ),
        # the stream's name is what is not UTF-8: every element is kept
        (b'{"stream":"x\xff","data":[' + _GOOD_BYTES + b"]}", [GOOD]),
        # of two data keys the last counts, as for orjson and the json module
        (
            b'{"data":[1],"stream":"s","data":[' + _BAD_SYMBOL + b',"ok"]}',
            ["bad", "ok"],
        ),
        (b'{"stream":"s","data":[[' + _BAD_SYMBOL + b"]]}", ["bad"]),
    ],
)
def test_salvage_finds_each_elements_bounds_in_any_well_formed_spelling(
    raw: bytes, want: list[object]
) -> None:
    got = salvage(raw)
    assert got is not None
    assert [x if not isinstance(x, Unreadable) else "bad" for x in got] == want


def test_subscription_replies_are_ignored_not_malformed() -> None:
    for reply in ({"result": None, "id": 1}, {"error": {"code": 2, "msg": "x"}, "id": 2}):
        tickers, stats = parse(reply)
        assert tickers == []
        assert (stats.ignored, stats.malformed) == (1, 0)


def test_numbers_sent_as_json_numbers_are_accepted() -> None:
    tickers, _ = parse({**GOOD, "c": 70012.5})
    assert tickers[0].close == 70012.5


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_value_never_raises(value: object) -> None:
    stats = ParseStats()
    try:
        raw = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return
    parse_message(raw, stats)


# ---------------------------------------------------------------- percent


_prices = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(1, 10**8),
    st.integers(0, 8),
)
_percents = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(1, 10**5),
    st.integers(0, 4),
)


@given(_prices, _percents)
def test_percent_of_an_exact_decimal_rise_is_its_percentage(base: Decimal, pct: Decimal):
    """A price that rose by exactly P% from a decimal base computes as P, not a hair off."""
    now = base * (1 + pct / 100)
    assert percent(float(now) - float(base), float(base)) == float(pct)


@given(_prices, _percents.filter(lambda p: p < 100))
def test_percent_of_an_exact_decimal_drop_is_its_percentage(base: Decimal, pct: Decimal):
    """A price that fell by exactly P% from a decimal base computes as P, not a hair off."""
    now = base * (1 - pct / 100)
    assert percent(float(base) - float(now), float(base)) == float(pct)


def test_percent_of_nothing_is_nan_and_never_negative_zero():
    """A zero base has no percentage; a move that rounds to nothing is 0.0, not -0.0."""
    assert percent(1.0, 0.0) != percent(1.0, 0.0)
    assert str(percent(-1e-15, 1.0)) == "0.0"
