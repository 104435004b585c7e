"""The condition language: every form, canonical formatting, and errors that name the column."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertbot.errors import ConditionError
from alertbot.rules.conditions import (
    MAX_NESTING,
    METRICS,
    PERCENT_METRICS,
    AllOf,
    AnyOf,
    Breaks,
    Condition,
    Cross,
    Level,
    Move,
    format_condition,
    format_duration,
    format_number,
    parse,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("price > 70000", Level("price", ">", 70000.0)),
        ("> 70000", Level("price", ">", 70000.0)),
        ("PRICE >= 70k", Level("price", ">=", 70000.0)),
        ("price<0.5", Level("price", "<", 0.5)),
        ("low <= 1.5m", Level("low", "<=", 1.5e6)),
        ("high > .25", Level("high", ">", 0.25)),
        ("change_24h >= 5%", Level("change_24h", ">=", 5.0)),
        ("change_24h <= -5%", Level("change_24h", "<=", -5.0)),
        ("change_24h > 5", Level("change_24h", ">", 5.0)),
        ("range_24h > 10%", Level("range_24h", ">", 10.0)),
        ("volume > 100k", Level("volume", ">", 1e5)),
        ("quote_volume > 2b", Level("quote_volume", ">", 2e9)),
        ("price >= 32.2k", Level("price", ">=", 32_200.0)),
        ("volume > 2.01m", Level("volume", ">", 2_010_000.0)),
        ("quote_volume < 4.02B", Level("quote_volume", "<", 4_020_000_000.0)),
        ("price crosses 70000", Cross("price", None, 70000.0)),
        ("crosses above 70k", Cross("price", "above", 70000.0)),
        ("price crosses below 3K", Cross("price", "below", 3000.0)),
        ("change_24h crosses above 10%", Cross("change_24h", "above", 10.0)),
        ("breaks 24h high", Breaks("high")),
        ("Breaks 24H Low", Breaks("low")),
        ("rises 5% in 15m", Move("rises", 5.0, 900_000)),
        ("drops 2.5% in 1h", Move("drops", 2.5, 3_600_000)),
        ("moves 3% in 30s", Move("moves", 3.0, 30_000)),
        (
            "all(price > 200, rises 5% in 15m)",
            AllOf((Level("price", ">", 200.0), Move("rises", 5.0, 900_000))),
        ),
        (
            "any(breaks 24h high, all(volume > 1m, price < 5))",
            AnyOf((Breaks("high"), AllOf((Level("volume", ">", 1e6), Level("price", "<", 5.0))))),
        ),
    ],
)
def test_every_form_parses_to_its_value(text: str, expected: Condition) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("crosses above 70k", "price crosses above 70000"),
        ("> 1.50", "price > 1.5"),
        ("quote_volume > 2b", "quote_volume > 2b"),
        ("volume > 1500000", "volume > 1.5m"),
        ("volume > 1234567", "volume > 1234567"),
        ("price crosses above 70k", "price crosses above 70000"),
        ("change_24h >= 5", "change_24h >= 5%"),
        ("price < 0.00001", "price < 0.00001"),
        ("rises 5% in 90m", "rises 5% in 90m"),
        ("drops 1% in 120m", "drops 1% in 2h"),
        ("moves 2% in 3600s", "moves 2% in 1h"),
        ("all(>1,<2)", "all(price > 1, price < 2)"),
        ("price >= 32.2k", "price >= 32200"),  # not 32200.000000000004
        ("price crosses 4.03k", "price crosses 4030"),  # not 4030.0000000000005
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    assert format_condition(parse(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("price > abc", "expected a number after '>', got 'abc' at column 9", 9),
        ("price >", "expected a number after '>' at the end", 8),
        ("", "empty condition: expected e.g. 'price > 70000'", 1),
        ("prise > 5", "unknown metric or condition 'prise'", 1),
        ("price = 5", "expected '>', '>=', '<', '<=' or 'crosses' after 'price', got '='", 7),
        ("price > 5%", "'%' only goes with change_24h and range_24h, not price at column 9", 9),
        ("price > -5", "price cannot be negative at column 9", 9),
        # a percent metric with a suffix would be a million percent: a typo, refused
        ("change_24h > 1m", "change_24h is a percentage and takes no k/m/b suffix", 14),
        ("range_24h crosses 2K", "write it like 5%, got '2K' at column 19", 19),
        ("change_24h < -1b", "change_24h is a percentage and takes no k/m/b suffix", 14),
        ("price > 0", "price must be greater than 0 at column 9", 9),
        ("price > 1e309", "expected a number after '>', got '1e309'", 9),
        ("price > 9" + "9" * 400, "is too large", 9),
        ("price > 5 now", "unexpected 'now' at column 11", 11),
        ("breaks 1h high", "expected '24h' after 'breaks', got '1h' at column 8", 8),
        ("breaks 24h top", "expected 'high' or 'low' after '24h', got 'top'", 12),
        ("rises 5% within 15m", "expected 'in' after '5%', got 'within'", 10),
        ("rises 5% in 15 minutes", "expected a duration like 30s, 15m, 4h or 1d", 13),
        ("rises 5% in 8d", "the window must be between 1s and 7d", 13),
        ("rises 0% in 1h", "the move size must be greater than 0%", 7),
        ("rises -5% in 1h", "expected a percentage like 5% after 'rises', got '-5%'", 7),
        ("price crosses sideways 5", "expected a number after 'crosses', got 'sideways'", 15),
        ("all(price > 1", "expected ',' or ')'", 14),
        ("all price > 1", "expected '(' after 'all'", 5),
        ("volume > 0", "volume must be greater than 0 at column 10", 10),
        ("quote_volume < 0", "quote_volume must be greater than 0 at column 16", 16),
        ("quote_volume crosses above 0k", "quote_volume must be greater than 0", 28),
        ("drops 100% in 1h", "a price cannot drop by 100% or more at column 7", 7),
        ("drops 150% in 1h", "a price cannot drop by 100% or more", 7),
        ("rises 5% in 15\u017f", "expected a duration like 30s, 15m, 4h or 1d", 13),
        ("price > 5\u212a", "expected a number after '>', got '5\u212a'", 9),
        ("rises 5% in " + "1" * 5000 + "m", "longer than 366 days", 13),
    ],
)
def test_errors_say_what_was_expected_and_where(text: str, message: str, column: int) -> None:
    with pytest.raises(ConditionError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.column == column


def _nested(depth: int, inner: str = "price > 1") -> str:
    return "all(" * depth + inner + ")" * depth


def test_all_and_any_nest_up_to_the_limit() -> None:
    deepest = parse("any(" + _nested(MAX_NESTING - 1) + ")")

    assert format_condition(deepest) == "any(" + _nested(MAX_NESTING - 1) + ")"
    assert deepest == parse(format_condition(deepest))
    assert hash(deepest) == hash(parse(format_condition(deepest)))


def test_nesting_deeper_than_the_limit_is_refused_at_the_all_or_any_that_exceeds_it() -> None:
    """Every walk over a condition (comparing, hashing, evaluating) recurses once per level:
    a condition nested 400 deep passed but broke each later reload with a RecursionError."""
    text = "all(price > 1, " * MAX_NESTING + "any(price < 5)" + ")" * MAX_NESTING
    with pytest.raises(ConditionError) as info:
        parse(text)

    assert info.value.message == (
        f"all/any nest more than {MAX_NESTING} levels deep at column {text.index('any') + 1}"
    )
    assert info.value.column == text.index("any") + 1


def test_a_condition_nested_far_too_deep_is_an_error_not_a_crash() -> None:
    """50,000 levels overflowed the C stack of the compiled parser (SIGSEGV, no recursion
    check); run in a process of its own, so that a crash is a failure, not the end of the run."""
    code = (
        "from alertbot.errors import ConditionError\n"
        "from alertbot.rules.conditions import parse\n"
        "try:\n"
        "    parse('all(' * 50_000 + 'price > 1' + ')' * 50_000)\n"
        "except ConditionError as exc:\n"
        "    print(exc.column)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert (done.returncode, done.stdout) == (0, f"{MAX_NESTING * 4 + 1}\n")


@pytest.mark.parametrize(
    ("text", "ms"), [("30s", 30_000), ("15m", 900_000), ("4H", 14_400_000), ("1d", 86_400_000)]
)
def test_durations_parse_and_format_back(text: str, ms: int) -> None:
    assert parse_duration(text) == ms
    assert format_duration(ms) == text.lower()


@pytest.mark.parametrize("text", ["15", "m", "1.5h", "-1m", "999999d", "15 m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_unit_that_only_case_folds_to_s_is_refused_as_a_duration() -> None:
    """Only s, m, h, d (any case) are units: LATIN SMALL LETTER LONG S, which IGNORECASE
    matched as s, is refused with the usual message, not a KeyError."""
    with pytest.raises(ValueError, match="expected a duration like 30s, 15m, 4h or 1d"):
        parse_duration("15\u017f")


def test_a_duration_of_thousands_of_digits_is_too_long_not_an_int_limit() -> None:
    """Python's int() refuses over 4300 digits with advice for programmers; the user is told
    the duration is too long, with the text cut short."""
    with pytest.raises(ValueError, match="longer than 366 days") as info:
        parse_duration("1" * 5000 + "m")
    message = str(info.value)
    assert "set_int_max_str_digits" not in message
    assert len(message) < 100
    assert parse_duration("0" * 5000 + "15m") == 900_000  # many digits, but not a long time


# ---------------------------------------------------------------- parse(format(c)) == c

_numbers = st.one_of(
    st.integers(1, 10**12).map(float),
    st.decimals(min_value="0.00000001", max_value="1000000000", places=8).map(float),
    st.floats(min_value=1e-9, max_value=1e15, allow_nan=False, allow_infinity=False),
).filter(lambda x: x > 0)
_metrics = st.sampled_from(METRICS)


@st.composite
def _level(draw: st.DrawFn) -> Level:
    metric = draw(_metrics)
    value = draw(_numbers)
    if metric in PERCENT_METRICS and metric == "change_24h" and draw(st.booleans()):
        value = -value
    return Level(metric, draw(st.sampled_from([">", ">=", "<", "<="])), value)


@st.composite
def _cross(draw: st.DrawFn) -> Cross:
    return Cross(draw(_metrics), draw(st.sampled_from([None, "above", "below"])), draw(_numbers))


_move = st.builds(
    Move,
    st.sampled_from(["rises", "moves"]),
    _numbers.filter(lambda x: x < 1e6),
    st.integers(1, 7 * 86_400).map(lambda s: s * 1000),
) | st.builds(
    Move,
    st.just("drops"),
    _numbers.filter(lambda x: x < 100),  # a price cannot drop by 100% or more
    st.integers(1, 7 * 86_400).map(lambda s: s * 1000),
)
_leaf = st.one_of(_level(), _cross(), st.builds(Breaks, st.sampled_from(["high", "low"])), _move)
_condition = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AllOf(tuple(xs))),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
    ),
    max_leaves=6,
)


@given(_condition)
def test_parse_of_format_gives_back_the_same_condition(cond: Condition) -> None:
    assert parse(format_condition(cond)) == cond


_SUFFIX_DIGITS = {"k": 3, "m": 6, "b": 9}


@given(
    st.from_regex(r"[0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12}", fullmatch=True).filter(
        lambda d: Decimal(d) > 0
    ),
    st.sampled_from(["k", "m", "b", "K", "M", "B"]),
)
def test_a_suffixed_number_is_the_decimal_written_without_the_suffix(
    digits: str, suffix: str
) -> None:
    """``32.2k`` is the number 32200, exactly as the text ``32200`` reads (not 32.2 * 1000 in
    floating point, 32200.000000000004), and its canonical text reads back the same."""
    with localcontext(prec=100):  # exact: at most 24 digits are scaled
        plain = format(Decimal(digits).scaleb(_SUFFIX_DIGITS[suffix.lower()]), "f")
    suffixed = parse(f"volume >= {digits}{suffix}")
    assert suffixed == parse(f"volume >= {plain}")
    assert isinstance(suffixed, Level)
    assert suffixed.value == float(plain)
    assert parse(format_condition(suffixed)) == suffixed


@given(st.floats(min_value=0, max_value=1e300, allow_nan=False))
def test_format_number_reads_back_exactly_and_has_no_exponent(x: float) -> None:
    text = format_number(x)
    assert "e" not in text.lower()
    assert float(text) == x


@given(st.text(max_size=60))
def test_arbitrary_text_either_parses_or_raises_condition_error(text: str) -> None:
    try:
        cond = parse(text)
    except ConditionError as exc:
        column = exc.column
        assert 1 <= column <= len(text) + 1
        return
    assert parse(format_condition(cond)) == cond
