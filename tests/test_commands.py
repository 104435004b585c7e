"""Chat commands: every form parses to its value, every mistake gets a reply that says what was
wrong and shows the right form, and no text at all makes the parser raise anything else."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alertbot.chat.commands import (
    COMMANDS,
    MAX_TEXT_LENGTH,
    WATCH_EXAMPLES,
    CoinsError,
    Command,
    CommandError,
    Digest,
    Edit,
    Listing,
    Mute,
    NoSymbolError,
    Price,
    Simple,
    TargetError,
    Unmute,
    Unwatch,
    Watch,
    format_watch,
    help_text,
    never_true,
    parse_command,
)
from alertbot.errors import RuleError
from alertbot.hints import entities, unmarked
from alertbot.rules.conditions import (
    MAX_DURATION_MS,
    METRICS,
    AllOf,
    AnyOf,
    Breaks,
    Condition,
    Cross,
    Level,
    Move,
    format_condition,
)
from alertbot.rules.loader import RuleFileError, load_text

WATCH_USAGE = COMMANDS["watch"][0]
BOT = "AlertTestBot"

H = 3_600_000
D = 86_400_000


def _watch(
    symbol: str,
    condition: Condition,
    *,
    cooldown_ms: int | None = None,
    rearm: float | None = None,
    once: bool = False,
    for_ms: int | None = None,
) -> Watch:
    text = format_condition(condition)
    return Watch(symbol, condition, text, cooldown_ms, rearm, once, for_ms)


def _error(text: str) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse_command(text, BOT)
    return info.value


# ---------------------------------------------------------------- /watch that works


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/watch BTCUSDT > 70000", _watch("BTCUSDT", Level("price", ">", 70000.0))),
        (
            "/watch ethusdt crosses below 3k cooldown 1h",
            _watch("ETHUSDT", Cross("price", "below", 3000.0), cooldown_ms=H),
        ),
        (
            "/watch SOLUSDT rises 5% in 15m once",
            _watch("SOLUSDT", Move("rises", 5.0, 900_000), once=True),
        ),
        ("/watch BTCUSDT quote_volume > 2b", _watch("BTCUSDT", Level("quote_volume", ">", 2e9))),
        (
            "/watch BTCUSDT price >= 65000 rearm 0.5% for 7d",
            _watch("BTCUSDT", Level("price", ">=", 65000.0), rearm=0.005, for_ms=7 * D),
        ),
        ("/watch DOGEUSDT change_24h > 10%", _watch("DOGEUSDT", Level("change_24h", ">", 10.0))),
        # options in any order, any case, any white space
        (
            "/WATCH\tBtcUsdt  PRICE   CROSSES ABOVE 70K\nFOR 1D ONCE Cooldown 30M REARM 1%",
            _watch(
                "BTCUSDT",
                Cross("price", "above", 70000.0),
                cooldown_ms=1_800_000,
                rearm=0.01,
                once=True,
                for_ms=D,
            ),
        ),
        (
            "/watch BTCUSDT > 5 rearm 0.5 %",
            _watch("BTCUSDT", Level("price", ">", 5.0), rearm=0.005),
        ),
        ("/watch BTCUSDT>70000", _watch("BTCUSDT", Level("price", ">", 70000.0))),
        ("  /watch BTCUSDT price<0.5  ", _watch("BTCUSDT", Level("price", "<", 0.5))),
        ("/watch *usdt breaks 24h high", _watch("*USDT", Breaks("high"))),
        ("/watch 1000PEPEUSDT drops 3% in 1h", _watch("1000PEPEUSDT", Move("drops", 3.0, H))),
        ("/watch BTCUSDT change_24h <= -5%", _watch("BTCUSDT", Level("change_24h", "<=", -5.0))),
        (
            "/watch XRPUSDT all(price > 0.6, rises 2% in 5m) cooldown 366d",
            _watch(
                "XRPUSDT",
                AllOf((Level("price", ">", 0.6), Move("rises", 2.0, 300_000))),
                cooldown_ms=366 * D,
            ),
        ),
        (
            "/watch BTCUSDT any(breaks 24h low, volume > 1m)",
            _watch("BTCUSDT", AnyOf((Breaks("low"), Level("volume", ">", 1e6)))),
        ),
        ("/watch@alerttestbot BTCUSDT > 1", _watch("BTCUSDT", Level("price", ">", 1.0))),
        ("/watch BTCUSDT > 1 rearm 50%", _watch("BTCUSDT", Level("price", ">", 1.0), rearm=0.5)),
        # no cooldown at all, as 'cooldown: 0' in a rule file (the chat default is 5m)
        (
            "/watch BTCUSDT > 1 cooldown 0",
            _watch("BTCUSDT", Level("price", ">", 1.0), cooldown_ms=0),
        ),
        (
            "/watch BTCUSDT > 1 cooldown 0s",
            _watch("BTCUSDT", Level("price", ">", 1.0), cooldown_ms=0),
        ),
        # Binance lists contracts named in Chinese, some among its most traded
        ("/watch 币安人生usdt > 0.5", _watch("币安人生USDT", Level("price", ">", 0.5))),
        ("/watch 牛来USDT drops 5% in 1h", _watch("牛来USDT", Move("drops", 5.0, H))),
        ("/watch *人生* > 1", _watch("*人生*", Level("price", ">", 1.0))),
        # with no space after the command (Chinese is written without): a command's name is
        # ASCII, so the symbol starts where it ends
        ("/watch币安人生USDT > 0.5", _watch("币安人生USDT", Level("price", ">", 0.5))),
        (f"/watch@{BOT}币安人生usdt>0.5", _watch("币安人生USDT", Level("price", ">", 0.5))),
    ],
)
def test_watch_parses_to_its_value(text: str, expected: Watch) -> None:
    watch = parse_command(text, BOT)
    assert watch == expected
    assert isinstance(watch, Watch)
    assert watch.condition_text == format_condition(watch.condition)
    assert parse_command(format_watch(watch)) == watch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/watch BTCUSDT above 70k", _watch("BTCUSDT", Level("price", ">", 70000.0))),
        ("/watch ETHUSDT BELOW 3000", _watch("ETHUSDT", Level("price", "<", 3000.0))),
        (
            "/watch DOGEUSDT change_24h above 10% once",
            _watch("DOGEUSDT", Level("change_24h", ">", 10.0), once=True),
        ),
        ("/watch BTCUSDT crosses above 70k", _watch("BTCUSDT", Cross("price", "above", 7e4))),
        (
            "/watch XRPUSDT any(price below 0.5, price crosses below 0.4)",
            _watch(
                "XRPUSDT",
                AnyOf((Level("price", "<", 0.5), Cross("price", "below", 0.4))),
            ),
        ),
    ],
)
def test_above_and_below_before_a_number_are_read_as_the_signs(text: str, expected: Watch) -> None:
    """'/watch BTCUSDT above 70k' has one meaning, '> 70k': it used to be refused as an
    unknown metric 'above'. 'crosses above' stays a crossing."""
    assert parse_command(text, BOT) == expected


def test_a_mistake_after_above_names_the_word_as_typed() -> None:
    """A condition with 'above' that is still wrong points at the word the user typed."""
    assert _error("/watch BTCUSDT above 70k pleas").message.startswith("unexpected 'pleas'")


def test_a_glob_symbol_is_marked_as_such() -> None:
    glob = parse_command("/watch [AB]*usdt > 1")
    plain = parse_command("/watch btcusdt > 1")
    assert isinstance(glob, Watch)
    assert isinstance(plain, Watch)
    assert (glob.symbol, glob.is_glob, plain.is_glob) == ("[AB]*USDT", True, False)


# ---------------------------------------------------------------- /watch mistakes


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/watch", "missing symbol and condition"),
        ("/watch > 70000", "missing symbol"),
        ("/watch 70000", "missing symbol"),  # a level where the symbol goes
        ("/watch price > 70000", "missing symbol"),
        ("/watch BTCUSDT", "missing condition after BTCUSDT"),
        ("/watch BTCUSDT once", "missing condition"),
        ("/watch BTCUSDT > abc", "expected a number after '>', got 'abc'"),
        ("/watch BTCUSDT > cooldown 1h", "expected a number after '>' before 'cooldown'"),
        ("/watch BTCUSDT pricee > 5", "unknown metric or condition 'pricee' (did you mean price?)"),
        ("/watch BTCUSDT prise > 5", "did you mean price?"),
        ("/watch BTCUSDT quote_volum > 2b", "did you mean quote_volume?"),
        ("/watch BTCUSDT foo > 5", "unknown metric or condition 'foo'; expected one of price"),
        ("/watch BTCUSDT crosses abov 5", "got 'abov' (did you mean above?)"),
        ("/watch BTCUSDT > 5 coldown 1h", "unexpected 'coldown' (did you mean cooldown?)"),
        ("/watch BTCUSDT > 5 once coldown 1h", "'coldown' after the condition (did you mean"),
        ("/watch BTCUSDT > 5 once please", "the options are cooldown D, rearm P%, once, for D"),
        ("/watch BTCUSDT > 5 once once", "'once' is given twice"),
        ("/watch BTCUSDT > 5 cooldown 1h cooldown 2h", "'cooldown' is given twice"),
        ("/watch BTCUSDT > 5 for 1h FOR 2h", "'for' is given twice"),
        (
            "/watch BTCUSDT > 5 once off",
            "a new watch has only the options written: leave 'once' out "
            "(off is for changing a watch: /edit w12 once off)",
        ),
        ("/watch BTCUSDT > 5 cooldown", "'cooldown' needs a duration, e.g. cooldown 1h"),
        ("/watch BTCUSDT > 5 cooldown once", "'cooldown' needs a duration"),
        ("/watch BTCUSDT > 5 for", "'for' needs a duration"),
        ("/watch BTCUSDT > 5 rearm", "'rearm' needs a percentage"),
        ("/watch BTCUSDT > 5 cooldown 1.5h", "duration like 30s, 15m, 4h or 1d, got '1.5h'"),
        ("/watch BTCUSDT > 5 cooldown soon", "got 'soon'"),
        ("/watch BTCUSDT > 5 cooldown 15 m", "write 15m without a space"),
        ("/watch BTCUSDT > 5 cooldown 999999d", "at most 366 days, got '999999d'"),
        ("/watch BTCUSDT > 5 for 367d", "at most 366 days"),
        ("/watch BTCUSDT > 1 cooldown 15\u017f", "a duration like 30s, 15m, 4h or 1d, got '15"),
        ("/watch BTCUSDT rises 5% in 15\u017f", "expected a duration like 30s, 15m, 4h or 1d"),
        ("/watch BTCUSDT > 5 for 0h", "must be longer than 0"),
        ("/watch BTCUSDT > 1e309", "got '1e309'; write numbers with the digits 0-9"),
        ("/watch BTCUSDT > nan", "got 'nan'; write numbers"),
        ("/watch BTCUSDT > inf", "got 'inf'; write numbers"),
        ("/watch BTCUSDT > 9" + "9" * 400, "is too large"),
        ("/watch BTCUSDT > -5", "price cannot be negative (at '-5')"),
        ("/watch BTCUSDT > 0", "price must be greater than 0"),
        ("/watch BTCUSDT price crosses 0.0", "price must be greater than 0"),
        ("/watch BTCUSDT volume > 0", "volume must be greater than 0"),
        ("/watch BTCUSDT quote_volume crosses above 0k", "quote_volume must be greater than 0"),
        ("/watch BTCUSDT volume > -1", "volume cannot be negative"),
        ("/watch BTCUSDT drops 100% in 1h", "cannot drop by 100% or more"),
        ("/watch BTCUSDT price > 5%", "'%' only goes with change_24h and range_24h"),
        ("/watch BTCUSDT " + "all(" * 17 + "> 1" + ")" * 17, "nest more than 16 levels deep"),
        ("/watch BTCUSDT > 70,000", "no ',' separators"),
        ("/watch DOGEUSDT > 0,15", "no ',' separators"),  # not "must be greater than 0"
        ("/watch BTCUSDT rises 0,5% in 1h", "no ',' separators"),
        ("/watch BTCUSDT > ７００００", "digits 0-9"),
        ("/watch BTCUSDT price => 5", "did you mean >= or <=?"),
        # comparison signs as a Chinese keyboard types them (full-width, or 《》 in its
        # punctuation mode), also with no space around them
        ("/watch 币安人生USDT ＞ 0.5", "write > instead of '＞'"),
        ("/watch 币安人生USDT＞0.5", "write > instead of '＞'"),
        ("/watch 币安人生USDT 》 0.5", "write > instead of '》'"),
        ("/watch BTCUSDT price＜＝5", "write <= instead of '＜＝'"),
        ("/watch BTCUSDT《5", "write < instead of '《'"),
        ("/watch BTCUSDT ≥ 5", "write >= instead of '≥'"),
        ("/watch BTCUSDT rises 5% for 1h", "expected 'in' after '5%' before 'for'"),
        ("/watch BTCUSDT rises 5% in 8d", "the window must be between 1s and 7d"),
        ("/watch BTCUSDT > 5 rearm 0%", "'rearm' must be more than 0% and at most 50%, got 0%"),
        ("/watch BTCUSDT > 5 rearm 80%", "at most 50%, got 80%"),
        ("/watch BTCUSDT > 5 rearm -1%", "at most 50%"),
        ("/watch BTCUSDT > 5 rearm 0.5", "write 0.5% instead of 0.5"),
        ("/watch BTCUSDT > 5 rearm lots", "'rearm' needs a percentage like 0.5%, got 'lots'"),
        ("/watch BTCUSDT breaks 24h high rearm 1%", "'rearm' needs a single threshold"),
        ("/watch BTCUSDT all(> 1, < 2) rearm 1%", "'rearm' needs a single threshold"),
        ("/watch BTC-USDT > 5", "'BTC-USDT' is not a symbol (did you mean BTCUSDT?)"),
        # TradingView's names for Binance's perpetuals
        ("/watch ETHUSDT.P > 5", "'ETHUSDT.P' is not a symbol (did you mean ETHUSDT?)"),
        ("/watch BINANCE:BTCUSDT > 5", "(did you mean BTCUSDT?)"),
        ("/watch binance:btc-usdt.p > 5", "(did you mean BTCUSDT?)"),
        ("/watch BTC:USDT > 5", "(did you mean BTCUSDT?)"),  # no exchange: a separator
        ("/watch B > 5", "a symbol has 2 to 30 letters or digits"),
        ("/watch " + "B" * 31 + " > 5", "2 to 30 letters or digits"),
        ("/watch 🚀 > 5", "'🚀' is not a symbol"),
        ("/watch 币安人生/USDT > 5", "(did you mean 币安人生USDT?)"),
        ("/watch 币 > 5", "a symbol has 2 to 30 letters or digits"),
        # a letter beyond ASCII with a case: Binance lists none, and its stream name is unknown
        ("/watch ÉTHUSDT > 5", "'ÉTHUSDT' is not a symbol"),
        ("/watch ВТСUSDT > 5", "is not a symbol"),  # Cyrillic look-alikes of B, T, C
        ("/watch É*USDT > 5", "is not a symbol pattern"),
        ("/watch 人生🚀* > 5", "is not a symbol pattern"),
        ("/watch BTC\u200bUSDT > 5", "is not a symbol"),
        ("/watch BTC[USDT > 5", "is not a symbol pattern"),
        ("/watch BTCUSDT > 5 🚀", "unexpected '🚀'"),
        ("/watch BTCUSDT > 5 \u05e9\u05dc\u05d5\u05dd", "unexpected"),
    ],
)
def test_each_watch_mistake_says_what_is_wrong_and_shows_the_usage(text: str, says: str) -> None:
    error = _error(text)
    assert says in error.message
    assert error.usage == WATCH_USAGE
    assert error.example == "/watch BTCUSDT > 70000"
    reply = unmarked(error.reply())
    assert says[1:] in reply  # the reply capitalises the first letter
    assert f"Use: {WATCH_USAGE}" in reply
    assert "e.g. /watch BTCUSDT > 70000" in reply


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "/watch BTCUSDT 70000",
            "say which way the price should go: /watch BTCUSDT > 70000 (above) or "
            "/watch BTCUSDT < 70000 (below)",
        ),
        ("/watch btc 70k", "/watch BTC > 70k (above) or /watch BTC < 70k (below)"),
        ("/watch SOLUSDT +5% in 1h", "write the move as a word: /watch SOLUSDT rises 5% in 1h"),
        ("/watch SOLUSDT -3% in 15m", "/watch SOLUSDT drops 3% in 15m"),
        ("/watch SOLUSDT 5% in 4h", "/watch SOLUSDT moves 5% in 4h"),
        (
            "/watch SOLUSDT +10%",
            "for the 24h change write /watch SOLUSDT change_24h > 10%; for a move within a "
            "time, /watch SOLUSDT rises 10% in 1h",
        ),
        ("/watch SOLUSDT -10%", "/watch SOLUSDT change_24h < -10%"),
        (
            "/watch BTCUSDT > 70000 every 1h",
            "unexpected 'every': for an alert every 1h while it holds, write repeat 1h (cooldown "
            "1h: at most one alert per 1h); the options are cooldown D, rearm P%, once, for D, "
            "repeat D",
        ),
        ("/watch BTCUSDT > 70000 every hour", "write repeat 1h"),
        ("/watch BTCUSDT > 70000 now", "unexpected 'now'; the options are cooldown D,"),
    ],
)
def test_a_watch_written_in_a_common_shorthand_is_answered_with_the_exact_fix(
    text: str, says: str
) -> None:
    """Forms a trader types that the condition language has none for (a number alone, '+5% in
    1h', 'every 1h') got a list of metrics or a bare "unexpected 'every'"; the answer now is
    the command to send (or the two it could mean)."""
    assert says in _error(text).message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "/watch BTCUSDT > 70000 or < 60000",
            "for either one, write /watch BTCUSDT any(price > 70000, price < 60000)",
        ),
        ("/watch BTCUSDT above 70k OR below 60k", "any(price > 70000, price < 60000)"),
        ("/watch BTCUSDT > 70000 || < 60000", "any(price > 70000, price < 60000)"),
        (
            "/watch BTCUSDT > 70000 and < 80000",
            "for both at once, write /watch BTCUSDT all(price > 70000, price < 80000)",
        ),
        (
            "/watch BTCUSDT > 70000 && < 80000 cooldown 1h once",
            "all(price > 70000, price < 80000) cooldown 1h once",
        ),
        (
            "/watch BTCUSDT price > 70000 < 80000",
            "two conditions go in all(...) (both at once) or any(...) (either one), e.g. "
            "/watch BTCUSDT all(price > 70000, price < 80000)",
        ),
        ("/watch BTCUSDT > 70000, < 80000", "all(price > 70000, price < 80000)"),
        ("/watch BTCUSDT > 70k,< 80k", "all(price > 70000, price < 80000)"),
        (
            "/watch BTCUSDT between 60000 and 70000",
            "for a range, write /watch BTCUSDT all(price >= 60000, price <= 70000)",
        ),
        (
            "/watch BTCUSDT change_24h between 5% and 10% once",
            "all(change_24h >= 5%, change_24h <= 10%) once",
        ),
        (
            "/watch SOLUSDT rises 5% in 1h or drops 5% in 1h",
            "any(rises 5% in 1h, drops 5% in 1h)",
        ),
        # not two conditions: the usual answers
        ("/watch BTCUSDT > 70000 or", "unexpected 'or'; to join conditions write all(A, B)"),
        ("/watch BTCUSDT > 70,000 < 80,000", "no ',' separators"),
        ("/watch BTCUSDT > 1,5b", "no ',' separators"),
    ],
)
def test_two_conditions_joined_as_people_write_them_are_answered_with_all_or_any(
    text: str, says: str
) -> None:
    """'> 70000 or < 60000' (a break out of a range, either way) was answered "unexpected 'or'
    (did you mean for?)", and '> 70000, < 80000' with the advice to write numbers without
    commas. The answer is the all(...) or any(...) command that means it."""
    assert says in _error(text).message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "/watch BTCUSDT falls 5% in 1h",
            "unknown metric or condition 'falls' (did you mean drops?)",
        ),
        ("/watch BTCUSDT fall 5% in 1h", "(did you mean drops?)"),
        ("/watch BTCUSDT dumps 5% in 1h", "(did you mean drops?)"),
        ("/watch BTCUSDT down 5% in 1h", "(did you mean drops?)"),
        ("/watch BTCUSDT dips 5% in 1h", "(did you mean drops?)"),
        ("/watch BTCUSDT up 5% in 1h", "unknown metric or condition 'up' (did you mean rises?)"),
        ("/watch BTCUSDT pumps 5% in 1h", "(did you mean rises?)"),
        ("/watch BTCUSDT gains 5% in 1h", "(did you mean rises?)"),
        ("/watch BTCUSDT hits 70000", "unknown metric or condition 'hits' (did you mean crosses?)"),
        ("/watch BTCUSDT reaches 70000", "(did you mean crosses?)"),
        ("/watch BTCUSDT touches 70k", "(did you mean crosses?)"),
        ("/watch BTCUSDT crosses up 70000", "got 'up' (did you mean above?)"),
        ("/watch BTCUSDT crosses over 70000", "got 'over' (did you mean above?)"),
        ("/watch BTCUSDT crosses down 70000", "got 'down' (did you mean below?)"),
        ("/watch BTCUSDT crosses under 70000", "got 'under' (did you mean below?)"),
    ],
)
def test_a_trader_s_word_for_a_condition_gets_the_word_the_language_has(
    text: str, says: str
) -> None:
    """'falls 5% in 1h' was answered "did you mean all?", 'up', 'pumps', 'hits 70000' and
    TradingView's 'crosses up' with the list of metrics, or nothing to go on."""
    assert says in _error(text).message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/watch BTCUSDT rises 5% in 15 min", "got '15'; write 15m"),
        ("/watch BTCUSDT rises 5% in 15min", "got '15min'; write 15m"),
        ("/watch BTCUSDT rises 5% in 1 hour", "got '1'; write 1h"),
        ("/watch BTCUSDT rises 5% in 1hr", "write 1h"),
        ("/watch BTCUSDT rises 5% in 90 secs", "write 90s"),
        ("/watch BTCUSDT > 5 cooldown 30 minutes", "got '30'; write 30m"),
        ("/watch BTCUSDT > 5 cooldown 1hour", "got '1hour'; write 1h"),
        ("/watch BTCUSDT > 5 for 1w", "got '1w'; write 7d"),
        ("/watch BTCUSDT > 5 for 2 weeks", "write 14d"),
        ("/watch BTCUSDT > 5 for 3 days once", "write 3d"),
        (
            "/watch BTCUSDT 24h change > 5%",
            "unknown metric or condition '24h' (did you mean change_24h?)",
        ),
        ("/watch BTCUSDT 24h range > 5%", "(did you mean range_24h?)"),
        ("/watch BTCUSDT change_24h > 5 percent", "write 5% (with '%')"),
        ("/watch BTCUSDT rises 5 pct in 1h", "write 5% (with '%')"),
        ("/watch BTCUSDT all(> 1, < 2,)", "nothing follows the last ','; take it out"),
        ("/watch BTCUSDT any(> 1, < 2, )", "nothing follows the last ','"),
        ("/watch BTCUSDT > 70 000", "write numbers without spaces: 70000"),
        ("/watch BTCUSDT > 65 500", "write numbers without spaces: 65500"),
        ("/watch BTCUSDT crosses 1 250 000 once", "without spaces: 1250000"),
        ("/watch BTCUSDT > 70000 USDT", "a number takes no currency: write > 70000"),
        ("/watch BTCUSDT > 70k usd cooldown 1h", "a number takes no currency: write > 70k"),
        ("/watch BTCUSDT > $70000", "a number takes no currency: write 70000"),
        ("/watch BTCUSDT < 70000$", "a number takes no currency: write 70000"),
        ("/watch BTCUSDT rises 5 % in 1h", "write 5% without a space"),
        ("/watch BTCUSDT change_24h > 5 %", "write 5% without a space"),
        ("/watch BTCUSDT > 5 cooldown 15 m", "write 15m without a space"),  # as before
        ("/watch BTCUSDT > 5 cooldown 1h30m", "got '1h30m'; write 90m"),
        ("/watch BTCUSDT rises 5% in 1m30s", "write 90s"),
    ],
)
def test_a_duration_or_percentage_written_in_words_or_spaced_gets_the_form_to_write(
    text: str, says: str
) -> None:
    """'in 15 min', 'cooldown 1 hour', 'for 1w' and '5 %' got "expected a duration like 30s,
    15m, 4h or 1d, got '15'" or "expected 'in' after '5', got '%'": the answer names the form
    to write."""
    assert says in _error(text).message


@pytest.mark.parametrize(
    ("text", "symbols", "condition", "once"),
    [
        ("/watch BTCUSDT ETHUSDT > 1", ("BTCUSDT", "ETHUSDT"), "price > 1", False),
        ("/watch btcusdt,ethusdt crosses 3k", ("BTCUSDT", "ETHUSDT"), "price crosses 3000", False),
        (
            "/watch BTCUSDT, ETHUSDT, SOLUSDT > 1",
            ("BTCUSDT", "ETHUSDT", "SOLUSDT"),
            "price > 1",
            False,
        ),
        ("/watch btc,eth,sol rises 5% in 15m once", ("BTC", "ETH", "SOL"), "rises 5% in 15m", True),
        # written without spaces: read as with them
        ("/watch BTCUSDT,ETHUSDT>1", ("BTCUSDT", "ETHUSDT"), "price > 1", False),
        ("/watch BTCUSDT, ETHUSDT>=1k", ("BTCUSDT", "ETHUSDT"), "price >= 1000", False),
        ("/watch BTCUSDT ETHUSDT<1 once", ("BTCUSDT", "ETHUSDT"), "price < 1", True),
        ("/watch BTCUSDT,BTCUSDT > 1", ("BTCUSDT",), "price > 1", False),  # each once
    ],
)
def test_several_symbols_make_a_watch_each(
    text: str, symbols: tuple[str, ...], condition: str, once: bool
) -> None:
    """'/watch BTCUSDT,ETHUSDT,SOLUSDT > 1': one command for the same condition on several
    symbols (the bot makes a watch of each); a symbol named twice is one."""
    watch = parse_command(text, BOT)
    assert isinstance(watch, Watch)
    assert ((watch.symbol, *watch.more), watch.condition_text, watch.once) == (
        symbols,
        condition,
        once,
    )


@pytest.mark.parametrize(
    ("text", "names", "rewritten"),
    [
        ("/watch btc eth > 1", ("eth",), "/watch btc,eth > 1"),
        (
            "/watch btc eth sol rises 5% in 1h once",
            ("eth", "sol"),
            "/watch btc,eth,sol rises 5% in 1h once",
        ),
        ("/watch btc 1000pepe < 0.01", ("1000pepe",), "/watch btc,1000pepe < 0.01"),
        ("/watch btc eth 70000", ("eth",), "/watch btc,eth 70000"),  # then: which sign
    ],
)
def test_coins_with_spaces_between_may_be_several_symbols(
    text: str, names: tuple[str, ...], rewritten: str
) -> None:
    """'/watch btc eth > 1' (as /price btc eth takes them): words where the condition goes that
    may be coins are handed to the bot, which knows Binance's list, with the command as
    commas would write it; the answer for the condition as written stays the error's."""
    with pytest.raises(CoinsError) as caught:
        parse_command(text)
    assert (caught.value.names, caught.value.rewritten) == (names, rewritten)
    assert caught.value.message.startswith("unknown metric or condition")


@pytest.mark.parametrize(
    "text",
    [
        "/watch btc pirce > 1",  # like a word of the language: its did-you-mean
        "/watch btc up 5% in 1h",  # a trader's word: the language's
        "/watch btc usdt > 1",  # a quote asset: one symbol in two words
        "/watch btc xyz abc",  # no condition after them
    ],
)
def test_words_that_are_no_coins_are_answered_as_before(text: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert not isinstance(caught.value, CoinsError)


@pytest.mark.parametrize(
    ("text", "conditions"),
    [
        ("/watch BTCUSDT > 70000 75000 80000", ["price > 70000", "price > 75000", "price > 80000"]),
        ("/watch BTCUSDT > 70000, 75000 once", ["price > 70000", "price > 75000"]),
        ("/watch btc below 60k, 55k", ["price < 60000", "price < 55000"]),
        (
            "/watch BTCUSDT crosses above 70k 75k",
            ["price crosses above 70000", "price crosses above 75000"],
        ),
        ("/watch BTCUSDT change_24h > 5% 10%", ["change_24h > 5%", "change_24h > 10%"]),
        # numbers of three digits with spaces between are one number or levels: with commas, levels
        ("/watch SOLUSDT > 150, 200, 250", ["price > 150", "price > 200", "price > 250"]),
        ("/watch BTCUSDT > 70000 70000", ["price > 70000"]),  # each once
        ("/watch BTCUSDT >70000 75000", ["price > 70000", "price > 75000"]),  # a glued sign
        # a move of several sizes: a move of each, in the one window
        ("/watch SOLUSDT rises 5% 10% in 1h", ["rises 5% in 1h", "rises 10% in 1h"]),
        ("/watch SOLUSDT drops 3%, 5%, 3% in 15m once", ["drops 3% in 15m", "drops 5% in 15m"]),
    ],
)
def test_several_levels_make_a_watch_each(text: str, conditions: list[str]) -> None:
    """'/watch BTCUSDT > 70000 75000 80000' (take-profit levels, a ladder of buys) was
    "unexpected '75000'": a level or crossing followed by more numbers is a watch of each, in the
    order typed, with the same options."""
    watch = parse_command(text, BOT)
    assert isinstance(watch, Watch)
    assert [w.condition_text for w in watch.each()] == conditions
    assert {w.once for w in watch.each()} == {"once" in text}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "/watch SOLUSDT > 150 200 250",
            "write numbers without spaces: 150200250 (or, for a watch of each level, list them "
            "with commas: 150, 200, 250)",
        ),
        ("/watch BTCUSDT > 70 000", "write numbers without spaces: 70000"),
        ("/watch BTCUSDT > 1 2 3 4 5 6 7 8 9 10 11", "at most 10 levels in one /watch, got 11"),
        ("/watch BTCUSDT rises 5% 10%", "expected 'in' after '5%'"),  # a move needs its window
        ("/watch BTCUSDT rises 5% 10%, in 1h", "expected 'in' after '5%'"),  # ends in ','
        ("/watch BTCUSDT > 70000 75000,", "unexpected '75000'"),  # a list that ends in ','
    ],
)
def test_levels_that_could_be_one_number_or_too_many_are_answered(text: str, says: str) -> None:
    """Three-digit groups with spaces between may be one number or levels (the answer offers
    both); a shorter first group or a group starting with 0 is one number (70 000)."""
    message = _error(text).message
    assert says in message
    assert ("commas" in message) == ("commas" in says)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/watch BTC USDT > 70000", "write the symbol as one word: /watch BTCUSDT > 70000"),
        ("/watch eth usdt crosses 3k once", "one word: /watch ETHUSDT crosses 3k once"),
        ("/price btc usdt", "write the symbol as one word: /price BTCUSDT"),
        ("/watch BTC USDT>70000", "write the symbol as one word: /watch BTCUSDT >70000"),
        ("/watch BTCUSDT,ETHUSDT", "missing condition after BTCUSDT, ETHUSDT"),
        (
            "/watch " + ",".join(f"C{n}USDT" for n in range(11)) + " > 1",
            "at most 10 symbols in one /watch, got 11",
        ),
        # a refused condition's suggestion names every symbol
        (
            "/watch BTCUSDT,ETHUSDT 70000",
            "/watch BTCUSDT,ETHUSDT > 70000 (above) or /watch BTCUSDT,ETHUSDT < 70000",
        ),
        # a word of the condition language, or a symbol-like word not ending like one: as before
        ("/watch BTCUSDT pricee > 5", "did you mean price?"),
        ("/watch BTCUSDT XYZ > 5", "unknown metric or condition 'XYZ'"),
    ],
)
def test_a_symbol_in_two_words_or_too_many_symbols_get_the_commands_to_send(
    text: str, says: str
) -> None:
    """'/watch BTC USDT > 70000' got "unknown metric or condition 'USDT'": the answer says
    what to send."""
    assert says in _error(text).message


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("/watch BTCUSDT>1", "price > 1"),
        ("/watch BTCUSDT price>1", "price > 1"),
        ("/watch BTCUSDT all(price>1, price<2)", "all(price > 1, price < 2)"),
        ("/watch BTCUSDT any(price>1,price<2) once", "any(price > 1, price < 2)"),
    ],
)
def test_a_sign_glued_to_the_symbol_or_in_the_condition_reads_as_spaced(
    text: str, condition: str
) -> None:
    """A symbol glued to its condition is cut off at the sign; a sign within the condition
    (in all(...)) is the condition's, never a place to cut a symbol list at."""
    watch = parse_command(text)
    assert isinstance(watch, Watch)
    assert (watch.symbol, watch.condition_text) == ("BTCUSDT", condition)


@pytest.mark.parametrize(
    ("text", "command", "says"),
    [
        (  # on one line (on lines of their own, /watch commands are a batch: test_export)
            "/watch BTCUSDT > 70000 /watch ETHUSDT > 3000",
            "watch",
            "one command a message: send /watch BTCUSDT > 70000, then /watch ETHUSDT > 3000, "
            "each as a message of its own",
        ),
        (
            "/watch btc > 70k /watch@AlertTestBot eth < 3k\n/price sol",
            "watch",
            "send /watch btc > 70k, then /watch@AlertTestBot eth < 3k, then /price sol, each",
        ),
        ("/unwatch w1\n/unwatch w2", "unwatch", "send /unwatch w1, then /unwatch w2, each"),
        ("/list\n/price btc", "list", "send /list, then /price btc, each"),
    ],
)
def test_several_commands_in_one_message_are_answered_with_each_to_send(
    text: str, command: str, says: str
) -> None:
    """A list of watches pasted as one message ('/watch BTCUSDT > 70000' and '/watch ETHUSDT >
    3000' on two lines) got "unexpected '/watch'": nothing said only one command is read."""
    error = _error(text)
    assert says in error.message
    assert error.usage == COMMANDS[command][0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/mute 1h", Mute("w3", H)),
        ("/mute for 1h", Mute("w3", H)),
        ("/mute w5 1h", Mute("w5", H)),  # an id typed is the one
        ("/unwatch", Unwatch("w3")),
        ("/unmute", Unmute("w3")),
        ("/unwatch all", Unwatch("all")),
        ("/watch BTCUSDT > 1", _watch("BTCUSDT", Level("price", ">", 1.0))),
    ],
)
def test_a_command_in_reply_to_a_watchs_message_is_about_that_watch(
    text: str, expected: Command
) -> None:
    assert parse_command(text, BOT, replied="w3") == expected


def test_a_mute_in_reply_without_a_time_asks_for_one_with_that_watch() -> None:
    with pytest.raises(CommandError, match=r"for how long\? e.g. /mute w3 1h"):
        parse_command("/mute", BOT, replied="w3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/digest 08:00", Digest(480)),
        ("/digest 8:30 UTC", Digest(510, utc=True)),  # refused in a chat with another zone
        ("/digest 20:00 utc", Digest(1200, utc=True)),
        ("/digest OFF", Digest(None)),
    ],
)
def test_digest_parses_to_its_value(text: str, expected: Digest) -> None:
    assert parse_command(text, BOT) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/digest 8", "got '8'; write 08:00"),
        ("/digest 8am", "write 08:00"),
        ("/digest 8pm", "write 20:00"),
        ("/digest 8:30pm", "write 20:30"),
        ("/digest 12am", "write 00:00"),
        ("/digest 08.00", "write 08:00"),
        (
            "/digest 25:00",
            "expected a time of day like 08:00 (UTC, or this chat's /timezone) or off, got '25:00'",
        ),
        (
            "/digest 08:00 CET",
            "the digest's time is in this chat's time zone: send /timezone CET, then /digest 08:00",
        ),
        (
            "/digest 8pm new york",
            "the digest's time is in this chat's time zone: send /timezone America/New_York, "
            "then /digest 20:00",
        ),
        (
            "/digest 08:00 daily",
            "unexpected 'daily'; /digest takes one time (UTC, or this chat's /timezone) or off",
        ),
    ],
)
def test_a_digest_time_in_another_form_gets_the_form_to_write(text: str, says: str) -> None:
    """'/digest 8', '8am' and '08.00' got "expected a time of day like 08:00", and '08:00 UTC'
    was refused for its 'UTC': the answer names the time to write; UTC is taken."""
    assert says in _error(text).message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/mute w1 30 min", "write 30m"),
        ("/mute w1 1 hour", "write 1h"),
        ("/mute w1 2hrs", "write 2h"),
        ("/mute w1 1w", "write 7d"),
        ("/mute w1 2h30m", "got '2h30m'; write 150m"),
        ("/mute w1 1d12h", "write 36h"),
        ("/mute 1h", "which watch? Put its id before the time: /mute w12 1h, or /mute all 1h"),
    ],
)
def test_a_mute_for_a_time_in_words_gets_the_form_to_write(text: str, says: str) -> None:
    assert says in _error(text).message


@pytest.mark.parametrize(
    "condition",
    [
        "volume > 0",
        "quote_volume < 0",
        "volume crosses below 0.0k",
        "drops 100% in 1h",
        "drops 150% in 1h",
        "all(price > 1, any(volume >= 0, breaks 24h high))",
    ],
)
def test_watch_and_rule_files_refuse_the_same_conditions_with_the_same_words(
    condition: str,
) -> None:
    """One condition language: what /watch refuses, a rule file's 'when:' refuses too, both with
    the condition parser's message (the chat's names the word instead of the column)."""
    with pytest.raises(RuleFileError) as in_file:
        load_text(f"rules:\n  - {{id: r, symbols: X, when: '{condition}'}}\n", "r.yaml")
    (problem,) = in_file.value.problems
    message = problem.message.rsplit(" at column ", 1)[0]

    assert _error(f"/watch BTCUSDT {condition}").message.startswith(message)


def test_a_reply_is_the_message_then_the_usage_then_an_example() -> None:
    error = _error("/watch BTCUSDT > abc")
    assert unmarked(error.reply()) == (
        f"Expected a number after '>', got 'abc'\nUse: {WATCH_USAGE}\ne.g. /watch BTCUSDT > 70000"
    )
    assert isinstance(error, RuleError)
    assert str(error) == error.message


def test_long_words_are_cut_short_in_messages() -> None:
    error = _error("/watch BTCUSDT > " + "x" * 400)
    assert len(error.message) < 100
    assert "…" in error.message


# ---------------------------------------------------------------- other commands


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/list", Listing(1)),
        ("/LIST", Listing(1)),
        ("/list 2", Listing(2)),
        ("/list btc", Listing(1, "BTC")),  # the caller resolves a coin, as /price's
        ("/list BTCUSDT 3", Listing(3, "BTCUSDT")),
        ("/help", Simple("help")),
        ("/status\n", Simple("status")),
        ("/start", Simple("start")),
        ("/start deep-link-payload", Simple("start")),
        # help is help, whatever its argument: "/help watch" was refused
        ("/help watch", Simple("help")),
        ("/help /mute", Simple("help")),
        # several watches at once, as /list shows their ids
        ("/unwatch w1 w2 w10", Unwatch("w1", ("w2", "w10"))),
        ("/unwatch w1, w2,w3", Unwatch("w1", ("w2", "w3"))),
        ("/unwatch w4 w4", Unwatch("w4")),
        ("/unwatch w12", Unwatch("w12")),
        ("/unwatch W12", Unwatch("w12")),
        ("/unwatch w007", Unwatch("w7")),
        ("/unwatch 12", Unwatch("w12")),
        ("/unwatch ALL", Unwatch("all")),
        ("/mute w3 1h", Mute("w3", H)),
        ("/mute all 30m", Mute("all", 1_800_000)),
        ("/mute w3 for 2d", Mute("w3", 2 * D)),
        ("/unmute w3", Unmute("w3")),
        ("/unmute all", Unmute("all")),
        ("/unmute", Unmute("all")),
        ("/mute w1 w2 1h", Mute("w1", H, ("w2",))),
        ("/mute w1, w2,w3 for 2d", Mute("w1", 2 * D, ("w2", "w3"))),
        ("/unmute w1 w2", Unmute("w1", ("w2",))),
        ("/price btcusdt", Price("BTCUSDT")),
        ("/price@AlertTestBot ETHUSDT", Price("ETHUSDT")),
        ("/price币安人生usdt", Price("币安人生USDT")),
        ("/price btc eth", Price("BTC", ("ETH",))),  # several: a block each
        ("/price btc, eth,SOLUSDT btc", Price("BTC", ("ETH", "SOLUSDT"))),  # each once
    ],
)
def test_other_commands_parse_to_their_values(text: str, expected: Command) -> None:
    assert parse_command(text, BOT) == expected


@pytest.mark.parametrize(
    ("text", "replied", "expected"),
    [
        (
            "/edit w3 > 71k",
            None,
            Edit("w3", Level("price", ">", 71000.0), "price > 71000"),
        ),
        ("/edit w3>71000", None, Edit("w3", Level("price", ">", 71000.0), "price > 71000")),
        ("/edit 3 71k", None, Edit("w3", level=71000.0, level_text="71k")),  # a level alone
        ("/edit w3 -5%", None, Edit("w3", level=-5.0, level_text="-5%")),
        ("/edit W3 cooldown 1h once", None, Edit("w3", cooldown_ms=3_600_000, once=True)),
        ("/edit w3 rearm 1% for 2d", None, Edit("w3", rearm=0.01, for_ms=2 * 86_400_000)),
        ("/edit 70000", "w9", Edit("w9", level=70000.0, level_text="70000")),  # in reply
        ("/edit crosses 5", "w9", Edit("w9", Cross("price", None, 5.0), "price crosses 5")),
        ("/edit w2 cooldown 0", "w9", Edit("w2", cooldown_ms=0)),  # an id typed wins
        # another symbol: alone, with a condition, a level or options
        ("/edit w3 ethusdt", None, Edit("w3", symbol="ETHUSDT")),
        (
            "/edit w3 ETHUSDT crosses 3000",
            None,
            Edit("w3", Cross("price", None, 3000.0), "price crosses 3000", symbol="ETHUSDT"),
        ),
        ("/edit w3 SOLUSDC 150", None, Edit("w3", level=150.0, level_text="150", symbol="SOLUSDC")),
        ("/edit ETHUSDT once", "w9", Edit("w9", once=True, symbol="ETHUSDT")),  # in reply
        # an option turned off: the watch no longer has it
        ("/edit w3 once off", None, Edit("w3", off=frozenset({"once"}))),
        (
            "/edit w3 for OFF rearm off cooldown 1h",
            None,
            Edit("w3", cooldown_ms=3_600_000, off=frozenset({"for", "rearm"})),
        ),
        (
            "/edit w3 > 5 cooldown off",
            None,
            Edit("w3", Level("price", ">", 5.0), "price > 5", off=frozenset({"cooldown"})),
        ),
    ],
)
def test_edit_parses_to_its_value(text: str, replied: str | None, expected: Edit) -> None:
    assert parse_command(text, BOT, replied=replied) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/edit", "which watch? Give its id from /list: /edit w12 > 71000"),
        (
            "/edit w3",
            "what to change? A condition (/edit w3 > 71000), options (/edit w3 cooldown 1h), "
            "the symbol (/edit w3 ETHUSDT) or its note (/edit w3 note TP1)",
        ),
        ("/edit w3 eth > 3000", "another symbol is named in full: /edit w3 ETHUSDT > 3000"),
        ("/edit all > 1", "one watch at a time"),
        ("/edit BTCUSDT > 1", "'BTCUSDT' is not a watch id"),
        ("/edit w3 abc", "unknown metric or condition 'abc'"),
        ("/edit w3 cooldown", "'cooldown' needs a duration, e.g. cooldown 1h"),
        ("/edit w3 cooldown 1h soon", "unexpected 'soon' after the options"),
        ("/edit w3 breaks 24h high rearm 1%", "'rearm' needs a single threshold condition"),
        ("/edit w3 once off once", "'once' is given twice"),
        ("/edit w3 once off for off for 1d", "'for' is given twice"),
        ("/edit w3 off", "'off' turns an option off: say which, e.g. /edit w3 once off"),
        ("/edit w3 prcie > 5", "unknown metric or condition 'prcie'"),  # no symbol: no quote
    ],
)
def test_a_malformed_edit_is_answered_with_its_form(text: str, says: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text, BOT)
    assert says in str(info.value)
    assert unmarked(info.value.reply()).endswith(
        "Use: /edit ID [SYMBOL] [CONDITION] [cooldown D] [rearm P%] [once] [for D] [repeat D]"
        " [OPTION off] [note TEXT]\n"
        "e.g. /edit w12 > 71000"
    )


def test_a_symbol_of_many_watches_names_three_and_a_command_for_the_first_twenty():
    """/unwatch BTCUSDT in a chat with 25 watches of it: three named with their condition
    (a long one cut), the command holds the first 20 ids and says the others follow; a text
    that is no symbol is told as before, whatever the chat watches."""
    with pytest.raises(TargetError) as info:
        parse_command("/unwatch BTCUSDT", BOT)
    long = "all(price > 1, rises 2% in 5m, drops 3% in 1h, change_24h > 10%)"
    watches = [(f"w{i}", long if i == 1 else "price > 1") for i in range(1, 26)]
    message = info.value.naming("BTCUSDT", watches).message
    assert message == (
        "BTCUSDT is watched here by w1 (all(price > 1, rises 2% in 5m, drops 3%…), w2 "
        "(price > 1), w3 (price > 1) and 22 more: send /unwatch "
        + " ".join(f"w{i}" for i in range(1, 21))
        + " (the first 20; then the others)"
    )
    with pytest.raises(TargetError) as other:
        parse_command("/unwatch $$$", BOT)
    assert other.value.symbol is None


@pytest.mark.parametrize(
    ("text", "command", "says"),
    [
        ("/list 1.5", "list", "expected a page number like 2, got '1.5'"),
        ("/list *USDT", "list", "one symbol, not a pattern like '*USDT'"),
        ("/list BTCUSDT 2 3", "list", "unexpected '3'"),
        ("/list 0", "list", "expected a page number like 2, got '0'"),
        ("/list 2 3", "list", "unexpected '3'"),
        ("/status please", "status", "/status takes no arguments"),
        ("/unwatch", "unwatch", "which watch?"),
        ("/unwatch btcusdt", "unwatch", "'btcusdt' is not a watch id"),
        ("/unwatch w1 w2 BTCUSDT", "unwatch", "'BTCUSDT' is not a watch id"),
        ("/unwatch w1 all", "unwatch", "unexpected 'all'; /unwatch takes watch ids or all"),
        ("/unwatch all w1", "unwatch", "unexpected 'w1'; /unwatch takes watch ids or all"),
        ("/unmute w1 1h", "unmute", "'1h' is not a watch id"),
        ("/mute w1 all 1h", "mute", "unexpected 'all'; /mute takes watch ids or all"),
        ("/mute w1 w2", "mute", "for how long? e.g. /mute w1 w2 1h"),
        ("/mute", "mute", "which watch?"),
        ("/mute all", "mute", "for how long? e.g. /mute all 1h"),
        ("/mute w1 999999d", "mute", "at most 366 days"),
        ("/mute w1 0s", "mute", "must be longer than 0"),
        ("/mute w1 soon", "mute", "got 'soon'"),
        ("/mute w1 15\u017f", "mute", "a duration like 30s, 15m, 4h or 1d, got '15"),
        ("/mute 1h w1", "mute", "put the watch id first"),
        ("/mute w1 1h more", "mute", "unexpected 'more'"),
        ("/price", "price", "which symbol?"),
        ("/price *USDT", "price", "not a pattern"),
        (
            "/price BTCUSDT ETHUSDT SOLUSDT BNBUSDT XRPUSDT DOGEUSDT",
            "price",
            "at most 5 symbols at a time, got 6",
        ),
        ("/price BTC/USDT", "price", "did you mean BTCUSDT?"),
    ],
)
def test_each_mistake_in_other_commands_shows_that_commands_usage(
    text: str, command: str, says: str
) -> None:
    error = _error(text)
    assert says in error.message
    usage, _, example = COMMANDS[command]
    assert (error.usage, error.example) == (usage, example)
    assert f"Use: {usage}" in unmarked(error.reply())


@pytest.mark.parametrize(
    ("text", "says", "example"),
    [
        ("/wach BTCUSDT > 1", "unknown command /wach (did you mean /watch?)", "/watch BTCUSDT"),
        ("/unwach w1", "did you mean /unwatch?", "/unwatch w12"),
        ("/alerts", "did you mean /list?", "/list"),
        ("/delete w1", "did you mean /unwatch?", "/unwatch w12"),
        ("/frobnicate", "unknown command /frobnicate", "/help"),
        ("/вотч", "unknown command /вотч", "/help"),
        ("/", "needs a name", "/help"),
        ("/" + "x" * 100, "unknown command /xxx", "/help"),
    ],
)
def test_an_unknown_command_gets_a_suggestion_and_the_list_of_commands(
    text: str, says: str, example: str
) -> None:
    error = _error(text)
    assert says in error.message
    assert error.example.startswith(example)
    for name in COMMANDS:
        assert f"/{name}" in error.usage
    assert len(error.message) < 80


@pytest.mark.parametrize(
    ("text", "bot", "ours"),
    [
        ("/watch@otherbot BTCUSDT > 1", BOT, False),
        ("/watch@AlertTestBot BTCUSDT > 1", BOT, True),
        ("/watch@alerttestbot BTCUSDT > 1", "@AlertTestBot", True),
        ("/wach@otherbot", BOT, False),
        ("/list@otherbot", BOT, False),
        ("/watch@somebot BTCUSDT > 1", None, True),
        ("/watch BTCUSDT > 1", BOT, True),
    ],
)
def test_commands_addressed_to_another_bot_are_ignored(
    text: str, bot: str | None, ours: bool
) -> None:
    try:
        result = parse_command(text, bot)
    except CommandError:
        result = Simple("error")
    assert (result is not None) == ours


@pytest.mark.parametrize(
    ("text", "answered"),
    [
        ("/roll", False),  # another bot's command, sent to every bot of the group
        ("/roll 2d6", False),
        ("/roll " + "2d6 " * 150, False),  # however long: no "too long" reply either
        (f"/roll@{BOT}", True),  # meant for this bot: told it is unknown
        ("/wathc BTCUSDT > 1", True),  # a typo of ours: the suggestion helps
        ("/alerts", True),  # an alias of ours
        ("/watch BTCUSDT >", True),  # ours, malformed
        ("/watch BTCUSDT > 1 " + "x" * MAX_TEXT_LENGTH, True),  # ours, too long
    ],
)
def test_in_a_group_only_commands_like_ours_are_answered(text: str, answered: bool) -> None:
    """A group has other bots: an unknown command that names no bot and resembles none of
    ours is theirs, and an 'unknown command' reply to each would be noise."""
    try:
        result = parse_command(text, BOT, group=True)
    except CommandError:
        result = Simple("error")
    assert (result is not None) == answered
    with pytest.raises(CommandError):  # in a private chat, every one is answered
        parse_command(text, BOT)


@pytest.mark.parametrize("text", ["", "hello", "BTCUSDT > 70000", " ", "／watch BTCUSDT > 1"])
def test_text_that_is_not_a_command_gives_none(text: str) -> None:
    assert parse_command(text, BOT) is None


def test_a_very_long_message_is_refused_early() -> None:
    error = _error("/watch BTCUSDT > 1 " + "x" * MAX_TEXT_LENGTH)
    assert "too long" in error.message
    assert error.usage == WATCH_USAGE
    assert "too long" in _error("/nope " + "x" * 10_000).message
    assert parse_command("just chatting " * 1000, BOT) is None
    assert parse_command("/watch@otherbot " + "x" * 10_000, BOT) is None


# ---------------------------------------------------------------- help and the command table


def test_help_lists_every_command_with_its_usage_and_description() -> None:
    text = unmarked(help_text())
    for usage, description, _ in COMMANDS.values():
        assert usage in text
        assert description in text


def test_every_example_in_help_and_in_the_table_works() -> None:
    examples = [
        line
        for line in unmarked(help_text()).splitlines()
        if line.startswith("/watch ") and line != COMMANDS["watch"][0]
    ]
    assert examples == [example for example, _ in WATCH_EXAMPLES]
    kinds: set[object] = set()
    for example in examples:
        watch = parse_command(example)
        assert isinstance(watch, Watch)
        kinds.add(type(watch.condition))
        if isinstance(watch.condition, Level | Cross):
            kinds.add(watch.condition.metric)
    assert kinds >= {Level, Cross, Breaks, Move, AllOf, "price", "change_24h", "quote_volume"}
    for name, (_, _, example) in COMMANDS.items():
        assert example.split()[0] == f"/{name}"
        assert parse_command(example) is not None


def test_help_says_what_a_reply_to_an_alert_does_and_each_such_reply_parses() -> None:
    """Replies to an alert act on its watch or symbol; /help is where a user learns it."""
    (line,) = [x for x in unmarked(help_text()).splitlines() if x.startswith("In reply to")]
    for command in ("/mute 1h", "/unwatch", "/edit 71000", "/history"):
        assert command in line
        assert parse_command(command, replied="w3") is not None
    assert "/watch > 75000" in line
    with pytest.raises(NoSymbolError):  # the bot fills in the symbol
        parse_command("/watch > 75000", replied="w3")


def test_the_command_table_fits_set_my_commands() -> None:
    for name, (usage, description, _) in COMMANDS.items():
        assert re.fullmatch(r"[a-z0-9_]{1,32}", name)
        assert usage.startswith(f"/{name}")
        assert 3 <= len(description) <= 256


# ---------------------------------------------------------------- properties

_FRAGMENTS = [
    *(f"/{name}" for name in COMMANDS),
    "/WATCH",
    "/watch@AlertTestBot",
    "/watch@other",
    "/",
    "/wach",
    "BTCUSDT",
    "ethusdt",
    "*USDT",
    "[A",
    "]",
    "?",
    *METRICS,
    ">",
    ">=",
    "<",
    "<=",
    "=",
    "crosses",
    "above",
    "below",
    "breaks",
    "24h",
    "high",
    "low",
    "rises",
    "drops",
    "moves",
    "in",
    "all(",
    "any(",
    "(",
    ")",
    ",",
    "cooldown",
    "rearm",
    "once",
    "for",
    "0",
    "-1",
    "5",
    "5%",
    "0.5",
    "%",
    "70k",
    "2b",
    "1e309",
    "nan",
    "inf",
    "-0",
    "15m",
    "0s",
    "999999d",
    "7d",
    "366d",
    "w12",
    "W0",
    "all",
    "Europe/Berlin",  # /timezone's
    "new york",
    "UTC+8",
    "+05:75",
    "IST",
    "１２",
    "🚀",
    "\u200b",
    "שלום",
    "\x00",
    "9" * 60,
    "'",
    '"',
]
_SEPARATORS = [" ", "  ", "\t", "\n", "", "\u3000", "\x85"]
_fragment_text = st.lists(
    st.tuples(st.sampled_from(_FRAGMENTS), st.sampled_from(_SEPARATORS)), max_size=14
).map(lambda parts: "".join(f + s for f, s in parts))


def _check_total(text: str) -> None:
    """parse_command returns None or a Command, or raises CommandError: nothing else."""
    error: CommandError | None = None
    try:
        result = parse_command(text, BOT)
    except CommandError as exc:
        error, result = exc, None
    if error is not None:
        assert error.message
        assert len(error.message) <= 300, error.message
        assert error.usage.startswith("/")
        assert error.example.startswith("/")
        assert unmarked(error.reply()).count("\n") >= 2
    elif result is not None:
        assert isinstance(result, Command)  # the union of every command the parser knows
    if isinstance(result, Watch):
        assert result.condition_text == format_condition(result.condition)
        assert parse_command(format_watch(result)) == result


@settings(max_examples=300)
@given(st.text())
def test_any_text_gives_none_a_command_or_a_command_error(text: str) -> None:
    _check_total(text)


@settings(max_examples=300)
@given(st.text().map(lambda t: "/" + t) | st.text().map(lambda t: "/watch BTCUSDT " + t))
def test_any_text_after_a_slash_gives_a_command_or_a_command_error(text: str) -> None:
    _check_total(text)


@settings(max_examples=500)
@given(_fragment_text)
def test_text_made_of_command_fragments_gives_a_command_or_a_command_error(text: str) -> None:
    _check_total(text)


_RESERVED = {*METRICS, "crosses", "breaks", "rises", "drops", "moves", "cooldown", "rearm", "once"}
_RESERVED |= {"for", "all", "any"}
_symbols = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_]{1,29}", fullmatch=True).filter(
        # a number where the symbol goes is a level ("/watch 70000"): Binance's symbols have
        # letters (their quote asset's, at least)
        lambda s: s.lower() not in _RESERVED and not re.fullmatch(r"[0-9]+[kmbKMB]?", s)
    ),
    st.sampled_from(["*USDT", "btc*", "?TCUSDT", "[AB]*usdt", "*"]),
    st.sampled_from(["币安人生USDT", "牛来usdt", "我踏马来了USDT", "*人生*"]),
)
_numbers = st.one_of(
    st.integers(1, 10**12).map(float),
    st.decimals(min_value="0.00000001", max_value="1000000000", places=8).map(float),
    st.floats(min_value=1e-9, max_value=1e15, allow_nan=False, allow_infinity=False),
).filter(lambda x: x > 0)


@st.composite
def _level(draw: st.DrawFn) -> Level:
    metric = draw(st.sampled_from(METRICS))
    value = draw(_numbers)
    if metric == "change_24h" and draw(st.booleans()):
        value = -value
    return Level(metric, draw(st.sampled_from([">", ">=", "<", "<="])), value)


_cross = st.builds(
    Cross, st.sampled_from(METRICS), st.sampled_from([None, "above", "below"]), _numbers
)
_move = st.builds(
    Move,
    st.sampled_from(["rises", "drops", "moves"]),
    _numbers.filter(lambda x: x < 100),
    st.integers(1, 7 * 86_400).map(lambda s: s * 1000),
)
_leaf = st.one_of(_level(), _cross, st.builds(Breaks, st.sampled_from(["high", "low"])), _move)
_condition = st.one_of(
    _leaf,
    st.lists(_leaf, min_size=1, max_size=3).map(lambda xs: AllOf(tuple(xs))),
    st.lists(_leaf, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
)
_durations = (
    st.tuples(st.integers(1, 10_000), st.sampled_from([("s", 1000), ("m", 60_000), ("h", H)]))
    | st.tuples(st.integers(1, 366), st.just(("d", D)))
).filter(lambda t: t[0] * t[1][1] <= MAX_DURATION_MS)
_rearms = st.decimals(min_value="0.001", max_value="50", places=3).filter(lambda p: p > 0)
_spaces = st.sampled_from([" ", "  ", "\t", "\n", " \n "])
_case: st.SearchStrategy[Callable[[str], str]] = st.sampled_from([str, str.lower, str.upper])


@settings(max_examples=300)
@given(
    symbol=_symbols,
    condition=_condition,
    cooldown=st.none() | _durations,
    rearm=st.none() | _rearms,
    once=st.booleans(),
    for_=st.none() | _durations,
    data=st.data(),
)
def test_a_rendered_watch_parses_back_to_the_same_values(
    symbol: str,
    condition: Condition,
    cooldown: tuple[int, tuple[str, int]] | None,
    rearm: Decimal | None,
    once: bool,
    for_: tuple[int, tuple[str, int]] | None,
    data: st.DataObject,
) -> None:
    # all(price > 1, price < 1) is refused (it would never fire), with the any(...) to send
    assume(not never_true(condition))
    if not isinstance(condition, Level | Cross | Move):
        rearm = None  # a re-arm band needs a single threshold
    options: list[list[str]] = []
    if cooldown is not None:
        options.append(["cooldown", f"{cooldown[0]}{cooldown[1][0]}"])
    if rearm is not None:
        percent = format(rearm.normalize(), "f")
        options.append(["rearm", *data.draw(st.sampled_from([[f"{percent}%"], [percent, "%"]]))])
    if once:
        options.append(["once"])
    if for_ is not None:
        options.append(["for", f"{for_[0]}{for_[1][0]}"])
    words = [
        "/watch",
        symbol,
        *format_condition(condition).split(" "),
        *(word for option in data.draw(st.permutations(options)) for word in option),
    ]
    text = "".join(data.draw(_case)(word) + data.draw(_spaces) for word in words)

    watch = parse_command(text, BOT)

    assert watch == Watch(
        symbol=symbol.upper(),
        condition=condition,
        condition_text=format_condition(condition),
        cooldown_ms=None if cooldown is None else cooldown[0] * cooldown[1][1],
        rearm=None if rearm is None else float(rearm / 100),
        once=once,
        for_ms=None if for_ is None else for_[0] * for_[1][1],
    )
    assert watch.condition_text == format_condition(watch.condition)
    assert parse_command(format_watch(watch)) == watch


def test_a_long_pasted_list_of_commands_is_answered_within_bounds_naming_the_first() -> None:
    """Twelve pasted watches get an answer of at most 300 characters: the first commands to
    send, whole, and a count of the others (the answer used to name every one of them)."""
    text = " ".join(f"/watch SYMBOL{i}USDT > {10**12 + i}" for i in range(12))
    with pytest.raises(CommandError) as caught:
        parse_command(text, BOT)
    message = unmarked(caught.value.message)
    assert len(message) <= 300, message
    assert "send /watch SYMBOL0USDT > 1000000000000, then /watch SYMBOL1USDT" in message
    assert re.search(r"then the other \d+, each as a message of its own$", message)


def test_a_command_too_long_to_copy_is_named_by_its_start() -> None:
    """A pasted command longer than a line is quoted, cut short, not offered whole to copy."""
    text = "/watch BTCUSDT > 1 /watch ETHUSDT > " + "9" * 400
    with pytest.raises(CommandError) as caught:
        parse_command(text, BOT)
    message = caught.value.message
    assert len(unmarked(message)) <= 300
    assert "'/watch ETHUSDT > 99999999999999…'" in message


def test_control_characters_in_a_pasted_command_keep_each_code_span_on_a_whole_command() -> None:
    """The marks that make commands code spans are control characters; the user's own are
    written as their codes, so each span still covers exactly one command (the user's used to
    cut a span short and shift the later ones)."""
    text = "/watch BTCUSDT > 1 /watch ETH\x0eUSDT > 2\x0f"
    with pytest.raises(CommandError) as caught:
        parse_command(text, BOT)
    plain, spans = entities(caught.value.reply())
    codes = [plain[start : start + length] for start, length in spans]
    assert codes[0] == "/watch BTCUSDT > 1"
    assert all(code.startswith("/") for code in codes), codes
    assert "\\u000eUSDT > 2\\u000f" in plain


def test_a_misspelt_condition_word_after_an_edits_id_is_not_taken_for_a_coin() -> None:
    """'/edit w3 prcie > 5' is a misspelt 'price' (close to a condition word), answered as
    such: no symbol is suggested; a word close to none ('eth') gets the contract in full."""
    with pytest.raises(CommandError) as typo:
        parse_command("/edit w3 prcie > 5", BOT)
    with pytest.raises(CommandError) as coin:
        parse_command("/edit w3 eth", BOT)
    assert "another symbol" not in typo.value.message
    assert coin.value.message.endswith("another symbol is named in full: /edit w3 ETHUSDT")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (  # joined without a word: no price is both, so either one is meant
            "/watch BTCUSDT > 70k < 60k",
            "both at once can never be; for either one, write "
            "/watch BTCUSDT any(price > 70000, price < 60000)",
        ),
        (
            "/watch BTCUSDT > 70k and < 60k cooldown 1h",
            "both at once can never be; for either one, write "
            "/watch BTCUSDT any(price > 70000, price < 60000) cooldown 1h",
        ),
        (  # a bound both sides share, strict on one: never
            "/watch BTCUSDT > 70k, <= 70k",
            "both at once can never be",
        ),
        (  # a range that can hold: both forms offered, as before
            "/watch BTCUSDT > 60k < 70k",
            "two conditions go in all(...) (both at once) or any(...) (either one), e.g. "
            "/watch BTCUSDT all(price > 60000, price < 70000)",
        ),
        (
            "/watch BTCUSDT all(price > 70000, price < 60000) once",
            "the parts of all(price > 70000, price < 60000) can never hold at once; for either "
            "one: /watch BTCUSDT any(price > 70000, price < 60000) once",
        ),
        (
            "/edit w3 ETHUSDT all(price > 3000, price < 2000)",
            "for either one: /edit w3 ETHUSDT any(price > 3000, price < 2000)",
        ),
    ],
)
def test_levels_that_can_never_hold_at_once_are_answered_with_any(text: str, says: str) -> None:
    """``> 70k < 60k`` (or ``all(...)`` of them) would make a watch that never fires: it is
    refused, and the command for either one is given."""
    with pytest.raises(CommandError) as info:
        parse_command(text, BOT)
    assert says in str(info.value)


def test_a_range_of_one_price_can_hold() -> None:
    """``>= 70000`` and ``<= 70000`` hold together at 70000: a watch, not a refusal."""
    watch = parse_command("/watch BTCUSDT all(price >= 70000, price <= 70000)", BOT)
    assert isinstance(watch, Watch)


@pytest.mark.parametrize("word", ["label", "comment:", "memo", "message"])
def test_another_word_for_note_is_answered_with_the_command_that_says_note(word: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(f"/watch BTCUSDT > 70k cooldown 1h {word} take profit", BOT)
    assert str(info.value) == (
        "a note is written after 'note': /watch BTCUSDT > 70k cooldown 1h note take profit"
    )
