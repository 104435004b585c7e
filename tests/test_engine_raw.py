"""Engine.process_raw (the C core reads frame bytes) equals process_message(decode_frame(raw)),
which is orjson.loads(raw) but for an array frame orjson refuses for some elements alone.

Frames are generated as bytes, in Binance's plain form and in every other spelling JSON allows
(whitespace, key order, escapes, exponents, long and negative numbers, nested values), plus
damage that makes them invalid JSON: both ways must fire the same alerts, count the same, keep
the same last ticks (price text included), and raise the same way.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbot.rules.conditions import parse
from alertbot.rules.engine import Alert, Engine
from alertbot.rules.loader import load_text
from alertbot.rules.model import Rule
from alertbot.ticker import ParseStats, decode_frame

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

# the first five as Binance names them (it lists 币安人生USDT); then names Python upper-cases
SYMBOLS = ["BTCUSDT", "ETHUSDT", "ETHBTC", "SOLUSDT", "币安人生USDT"]
SYMBOLS += ["btcusdt", "1000", "", "B\u00c9T", "\u00e9USDT", "\u00dfUSDT", "A/B"]

_plain = st.sampled_from(["98", "99", "99.5", "100", "100.0", "101", "102", "0", "0.00010000"])
_odd = st.one_of(
    st.sampled_from(
        ["1e2", "1.01E2", "+100", "-0", "-0.0", "100.", ".99e2", "1e-2", "1E+2", "00100"]
    ),
    st.sampled_from([" 100", "100 ", "1_00", "nan", "NaN", "inf", "-inf", "Infinity"]),
    st.sampled_from(["1e400", "-1", "", "1e", "--1", "\u0661\u0660\u0660", "0x10", "1,5"]),
    st.sampled_from(["9" * 70, "1" + "0" * 40, "0." + "0" * 60 + "1", "99.99999999999999999"]),
    st.decimals(min_value=0, max_value=200, places=4).map(str),
)
# mostly what Binance sends, so that the C core reads most elements itself
_decimal = st.one_of(_plain, _plain, _plain, _plain, _plain, _plain, _plain, _plain, _odd)
# a JSON number where a decimal string is expected: the slow path accepts it
_number = st.one_of(
    st.sampled_from([5.5, 100, 0, -1, 10**30, 1e300, 2**63]),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
_time = st.one_of(
    st.integers(0, 20).map(lambda i: 1_000_000 + i * 700),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**70, 10**17, 10**18, 1.5e6, True]),
)


@st.composite
def _element(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 2)):  # most as Binance sends them
        return {
            "e": "24hrMiniTicker",
            "E": 1_000_000 + draw(st.integers(0, 20)) * 700,
            "s": draw(st.sampled_from(SYMBOLS[:5])),
            **{key: draw(_plain) for key in "cohlvq"},
        }
    el: dict[str, Any] = {
        "e": draw(st.sampled_from(["24hrMiniTicker"] * 8 + ["24hrTicker", "x"])),
        "E": draw(_time),
        "s": draw(st.sampled_from(SYMBOLS)),
    }
    for key in "cohlvq":
        el[key] = draw(st.one_of(_decimal, _number) if draw(st.integers(0, 19)) == 0 else _decimal)
    damage = draw(st.integers(0, 24))
    if damage == 1:
        del el[draw(st.sampled_from(sorted(el)))]
    elif damage == 2:
        el["st"] = draw(st.sampled_from([1, 2, None, True, "1", 1.0]))
    elif damage == 3:
        el["ps"] = "BTCUSDT"
    elif damage == 4:
        el["x"] = draw(st.sampled_from([[1, 2], {"y": None}, "z", False, -3]))
    elif damage == 5:
        return draw(st.sampled_from(["junk", 42, None, [], -7, 1.5, True]))
    elif damage == 6:
        el["stream"] = "s"  # keys of a wrapper inside an element
        el["data"] = 1
    return el


@st.composite
def _message(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 11))
    if kind <= 5:
        return draw(st.lists(_element(), max_size=6))
    if kind <= 7:
        return draw(_element())
    if kind <= 9:
        data = draw(st.one_of(st.lists(_element(), max_size=4), _element()))
        return {"stream": "!miniTicker@arr", "data": data}
    return draw(
        st.sampled_from(
            [
                {"result": None, "id": 3},
                {"error": {"code": 2, "msg": "bad"}, "id": 4},
                {"e": "somethingElse", "E": 5},
                {"data": [], "stream": "x"},
                {"stream": "x", "data": "junk"},
                {"stream": "x"},
                {"id": 1, "e": "24hrMiniTicker"},
                "text",
                12,
                None,
            ]
        )
    )


def _string(draw: st.DrawFn, text: str) -> str:
    """A JSON string, plain or with escapes (ASCII or not)."""
    way = draw(st.integers(0, 30))
    if way == 0 or way > 20:
        return json.dumps(text, ensure_ascii=False)
    if way == 1 and text:
        i = draw(st.integers(0, len(text) - 1))
        return json.dumps(text[:i])[:-1] + f"\\u{ord(text[i]):04x}" + json.dumps(text[i + 1 :])[1:]
    if way == 2:
        return json.dumps(text).replace("/", "\\/")
    return json.dumps(text)


def _dump(draw: st.DrawFn, value: Any, odd: bool = True) -> str:
    """JSON text of a value in a drawn spelling: whitespace, key order, escapes; compact and
    in order unless ``odd``."""

    def ws() -> str:
        return draw(st.sampled_from(["", "", "", " ", "\n", " \t\r\n "])) if odd else ""

    if isinstance(value, dict):
        keys = list(value)
        if odd and draw(st.integers(0, 3)) == 0:
            keys = draw(st.permutations(keys))
        parts = [
            ws() + _string(draw, k) + ws() + ":" + ws() + _dump(draw, value[k], odd) for k in keys
        ]
        return "{" + ",".join(p + ws() for p in parts) + ws() + "}"
    if isinstance(value, list):
        return "[" + ",".join(ws() + _dump(draw, v, odd) + ws() for v in value) + ws() + "]"
    if isinstance(value, str):
        return _string(draw, value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return draw(st.sampled_from([repr(value), f"{value:.0f}.0", f"{value:e}"]))
    return json.dumps(value)


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    odd = draw(st.booleans())
    raw = (draw(st.sampled_from(["", " ", "\n"])) + _dump(draw, draw(_message()), odd)).encode()
    damage = draw(st.integers(0, 19))
    if damage == 1 and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]  # truncated
    elif damage == 2:
        raw += draw(st.sampled_from([b",", b" x", b"]", b"}", b"\x00", b" \n"]))
    elif damage == 3 and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = (
            raw[:i]
            + draw(
                st.sampled_from(
                    [
                        *(b"\xff", b"\xed\xa0\xbd", b"\\", b'"', b"\x01", b"\x7f", b"\xc2\x85"),
                        # overlong, beyond U+10FFFF, cut short, a lone continuation byte
                        *(b"\xc0\x80", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xe5\xb8", b"\x80"),
                    ]
                )
            )
            + raw[i:]
        )
    elif damage == 4:
        raw = raw.replace(b'"24hrMiniTicker"', b'"24hr\\u004diniTicker"')
    elif damage == 5:
        raw = raw.replace(b"100", b"1e400")
    return raw


def _key(alerts: list[Alert]) -> list[tuple[str, str, int, str]]:
    return [(a.rule.id, a.symbol, a.time, a.price) for a in alerts]


def _run(engine: Engine, raw: bytes, stats: ParseStats, *, direct: bool) -> Any:
    try:
        if direct:
            return _key(engine.process_raw(raw, stats))
        return _key(engine.process_message(decode_frame(raw), stats))
    except orjson.JSONDecodeError:
        return "invalid JSON"


@pytest.mark.parametrize("market_st", [1, 2], ids=["usdm", "coinm"])
@settings(max_examples=400, deadline=None)
@given(st.lists(_frame(), max_size=12))
def test_process_raw_fires_and_counts_exactly_what_process_message_of_the_decoded_frame_does(
    market_st: int, frames: list[bytes]
) -> None:
    """Whichever market is read: the elements carrying another market's ``st`` are skipped
    alike by the core's reading of the bytes and by Python's of the decoded frame."""
    raw_engine, decoded = Engine(RULES), Engine(RULES)
    stats_raw, stats_decoded = ParseStats(market_st=market_st), ParseStats(market_st=market_st)
    for raw in frames:
        got = _run(raw_engine, raw, stats_raw, direct=True)
        want = _run(decoded, raw, stats_decoded, direct=False)
        assert got == want, raw
    assert stats_raw == stats_decoded
    for symbol in raw_engine.symbols():
        assert raw_engine.last_ticker(symbol) == decoded.last_ticker(symbol)
    assert raw_engine.symbols() == decoded.symbols()


def _ticker(symbol: str, time: int, close: str) -> dict[str, Any]:
    return {
        "e": "24hrMiniTicker",
        "E": time,
        "s": symbol,
        "c": close,
        "o": "100",
        "h": "110",
        "l": "90",
        "v": "10",
        "q": "1000",
    }


@pytest.mark.parametrize(
    "wrap",
    [
        lambda els: els,
        lambda els: {"stream": "!miniTicker@arr", "data": els},
        lambda els: els[0],
        lambda els: {"stream": "btcusdt@miniTicker", "data": els[0]},
    ],
    ids=["array", "combined array", "object", "combined object"],
)
def test_plain_frames_of_every_shape_fire_like_decoded_ones(wrap: Any) -> None:
    raw_engine, decoded = Engine(RULES), Engine(RULES)
    stats_raw, stats_decoded = ParseStats(), ParseStats()
    got, want = [], []
    for i, close in enumerate(["99", "100.5", "99.25", "101.00", "101.00", "98"]):
        els = [_ticker("BTCUSDT", 1_000 + i * 1_000, close), _ticker("ETHUSDT", 1_000 + i, "1")]
        raw = orjson.dumps(wrap(els))
        got += _key(raw_engine.process_raw(raw, stats_raw))
        want += _key(decoded.process_message(orjson.loads(raw), stats_decoded))
    assert got == want
    assert ("up", "BTCUSDT", 2_000, "100.5") in got
    assert stats_raw == stats_decoded
    assert raw_engine.last_ticker("BTCUSDT") == decoded.last_ticker("BTCUSDT")


@pytest.mark.parametrize("wrap", [lambda el: [el], lambda el: el], ids=["array", "object"])
def test_a_rule_file_rule_on_a_delivery_contract_fires_from_a_frame(wrap: Any) -> None:
    """USD-M quarterly contracts are named with an underscore (BTCUSDT_250627): a rule file may
    name one, or match it with a glob, and a frame of its tickers fires the rule, read by the
    core from the bytes as decoded."""
    rules = load_text(
        "rules:\n"
        "  - {id: quarterly, symbols: [btcusdt_250627], when: price crosses above 100}\n"
        "  - {id: any-quarterly, symbols: ['*_250627'], when: price > 100}\n",
        "r.yaml",
    ).rules
    raw_engine, decoded = Engine(rules), Engine(rules)
    stats_raw, stats_decoded = ParseStats(), ParseStats()
    got, want = [], []
    for i, close in enumerate(["99", "100.5"]):
        raw = orjson.dumps(wrap(_ticker("BTCUSDT_250627", 1_000 + i * 1_000, close)))
        got += _key(raw_engine.process_raw(raw, stats_raw))
        want += _key(decoded.process_message(orjson.loads(raw), stats_decoded))

    assert got == want
    assert got == [
        ("quarterly", "BTCUSDT_250627", 2_000, "100.5"),
        ("any-quarterly", "BTCUSDT_250627", 2_000, "100.5"),
    ]


@pytest.mark.parametrize(
    "wrap",
    [lambda els: els, lambda els: {"stream": "币安人生usdt@miniTicker", "data": els[0]}],
    ids=["array", "combined object"],
)
def test_a_symbol_beyond_ascii_is_read_from_the_bytes_and_fires_like_decoded(
    wrap: Any, core_impl: str
) -> None:
    """Binance lists symbols such as 币安人生USDT: a frame that carries one in UTF-8 is read by
    the core like any other (before, the whole frame went to orjson, 7x slower), and its
    ticker fires a glob rule exactly as decoding the frame does."""
    raw_engine, decoded = Engine(RULES), Engine(RULES)
    stats_raw, stats_decoded = ParseStats(), ParseStats()
    got, want = [], []
    for i, close in enumerate(["99", "100.5", "99", "101"]):
        els = [_ticker("币安人生USDT", 1_000 + i * 1_000, close)]
        els.append(_ticker("BTCUSDT", 1_000 + i, "1"))
        raw = json.dumps(wrap(els), ensure_ascii=False, separators=(",", ":")).encode()
        if core_impl == "c":  # not left to orjson
            assert raw_engine._core.parse_raw(raw) >= 0
        got += _key(raw_engine.process_raw(raw, stats_raw))
        want += _key(decoded.process_message(orjson.loads(raw), stats_decoded))

    assert got == want
    assert ("up", "币安人生USDT", 2_000, "100.5") in got
    assert stats_raw == stats_decoded
    assert raw_engine.last_ticker("币安人生USDT") == decoded.last_ticker("币安人生USDT")


def test_an_invalid_frame_raises_and_changes_nothing() -> None:
    engine = Engine(RULES)
    stats = ParseStats()
    good = orjson.dumps([_ticker("BTCUSDT", 1_000, "99")])
    engine.process_raw(good, stats)
    bad = orjson.dumps([_ticker("BTCUSDT", 2_000, "101")])[:-1]
    with pytest.raises(orjson.JSONDecodeError):
        engine.process_raw(bad, stats)
    last = engine.last_ticker("BTCUSDT")
    assert last is not None
    assert last.time == 1_000
    assert stats == ParseStats(tickers=1)


_digits = st.text(alphabet="0123456789", max_size=24)


@st.composite
def _decimal_text(draw: st.DrawFn) -> str:
    """Plain decimals as Binance writes them and beyond: up to 24 digits each side of an
    optional point (the core's word-at-a-time path, its exact one-division path and its
    fallback to a full conversion all get their share)."""
    whole = draw(_digits)
    text = whole + "." + draw(_digits) if draw(st.booleans()) else whole
    return text if any(ch.isdigit() for ch in text) else "0"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[_decimal_text() for _ in range(6)]), min_size=1, max_size=8))
def test_plain_decimals_are_read_to_exactly_what_float_of_their_text_gives(
    rows: list[tuple[str, ...]],
) -> None:
    """The C core converts Binance's decimals itself (not through float()); every value and the
    price text it keeps must be exactly those of float(text) and the text, at any position in
    the frame (the last bytes of a frame take the path that reads byte by byte)."""
    symbols = [f"S{i}USDT" for i in range(len(rows))]
    engine = Engine([])
    stats = ParseStats()
    # first sight of a symbol is read in Python; the frame after it by the core
    engine.process_raw(orjson.dumps([_ticker(s, 1_000, "1") for s in symbols]), stats)
    frame = [
        {"e": "24hrMiniTicker", "E": 2_000, "s": s, **dict(zip("cohlvq", row, strict=True))}
        for s, row in zip(symbols, rows, strict=True)
    ]
    engine.process_raw(orjson.dumps(frame), stats)
    for s, row in zip(symbols, rows, strict=True):
        t = engine.last_ticker(s)
        assert t is not None
        assert t.time == 2_000
        got = (t.close, t.open, t.high, t.low, t.volume, t.quote_volume)
        assert got == tuple(float(x) for x in row), row
        assert t.price_text == row[0]


@pytest.mark.parametrize(
    "time",
    [
        7,
        1_000_000 + 700,
        12_345_678,  # 8 digits: the first word only
        1_772_409_600_003,  # Binance's 13
        100_000_000_000_009,  # 15: the longest read in two words
        1_234_567_890_123_456,  # 16: read digit by digit
        10**17 + 1,
        10**18 + 5,  # 19 digits: left to Python
    ],
)
def test_event_times_of_every_length_are_read_as_decoding_reads_them(time: int) -> None:
    """The core reads Binance's event times (13 digits) a word at a time and shorter or
    longer ones digit by digit; either way the tick's time is the one orjson decodes."""
    raw_engine, decoded = Engine(RULES), Engine(RULES)
    stats_raw, stats_decoded = ParseStats(), ParseStats()
    for t, close in ((time, "99"), (time + 1, "101")):
        raw = orjson.dumps([_ticker("BTCUSDT", t, close), _ticker("ETHUSDT", t, "1")])
        got = _key(raw_engine.process_raw(raw, stats_raw))
        assert got == _key(decoded.process_message(orjson.loads(raw), stats_decoded))
    assert ("up", "BTCUSDT", time + 1, "101") in got
    last = raw_engine.last_ticker("BTCUSDT")
    assert last is not None
    assert last.time == time + 1
    assert last == decoded.last_ticker("BTCUSDT")
    assert stats_raw == stats_decoded


# ------------------------------------------------------------------ one bad element in a frame

_GOOD = [_ticker(s, 2_000, "101") for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]


def _with_bad(bad: bytes, wrap: Any) -> tuple[bytes, bytes]:
    """A frame of three good tickers with ``bad`` (an element's bytes) second, and the same
    frame without it."""
    parts = [orjson.dumps(el) for el in _GOOD]
    whole = wrap(b"[" + b",".join([parts[0], bad, *parts[1:]]) + b"]")
    alone = wrap(b"[" + b",".join(parts) + b"]")
    return whole, alone


_BAD_ELEMENTS = [
    # invalid UTF-8 in the symbol: a byte that is no character, a sequence cut short, a surrogate
    pytest.param(
        orjson.dumps(_ticker("BTC#USDT", 2_000, "1")).replace(b"#", b"\xff"),
        "invalid UTF-8",
        id="xff",
    ),
    pytest.param(
        orjson.dumps(_ticker("BTC#USDT", 2_000, "1")).replace(b"#", b"\xe5\xb8"),
        "invalid UTF-8",
        id="cut-short",
    ),
    pytest.param(
        orjson.dumps(_ticker("BTC#USDT", 2_000, "1")).replace(b"#", b"\xed\xa0\xbd"),
        "invalid UTF-8",
        id="surrogate-bytes",
    ),
    # well-formed JSON that orjson refuses: a lone surrogate escape, a number beyond a double
    pytest.param(
        orjson.dumps(_ticker("BTC#USDT", 2_000, "1")).replace(b"#", b"\\ud800"),
        "invalid JSON",
        id="lone-surrogate-escape",
    ),
    pytest.param(
        orjson.dumps({**_ticker("XUSDT", 2_000, "1"), "x": 0}).replace(b'"x":0', b'"x":1e400'),
        "invalid JSON",
        id="number-out-of-range",
    ),
]


@pytest.mark.parametrize(
    "wrap",
    [lambda b: b, lambda b: b'{"stream":"!miniTicker@arr","data":' + b + b"}"],
    ids=["array", "combined"],
)
@pytest.mark.parametrize(("bad", "reason"), _BAD_ELEMENTS)
def test_one_unreadable_element_costs_only_itself_not_the_frame(
    bad: bytes, reason: str, wrap: Any
) -> None:
    """A frame orjson refuses for one element's text alone (its boundaries certain) is read as
    the frame of its good elements alone: same alerts, same last ticks, same counts but the one
    element, counted as a malformed ticker of its kind."""
    whole, alone = _with_bad(bad, wrap)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(whole)  # the case is what it says
    engine, reference = Engine(RULES), Engine(RULES)
    stats, want_stats = ParseStats(), ParseStats()
    first = orjson.dumps([_ticker(el["s"], 1_000, "99") for el in _GOOD])
    engine.process_raw(first, stats)
    reference.process_raw(first, want_stats)
    got = _key(engine.process_raw(whole, stats))
    assert got == _key(reference.process_raw(alone, want_stats))
    assert ("up", "BTCUSDT", 2_000, "101") in got
    want_stats.skip(reason)
    assert stats == want_stats
    assert engine.symbols() == reference.symbols()
    for symbol in reference.symbols():
        assert engine.last_ticker(symbol) == reference.last_ticker(symbol)


_GOOD_FRAME = orjson.dumps(_GOOD)
_XFF = _GOOD_FRAME.replace(b"ETHUSDT", b"ETH\xffUSDT")


@pytest.mark.parametrize(
    "raw",
    [
        _XFF[:-1],  # cut short: where the last element ends is not known
        _XFF[: _XFF.index(b"ETH")],
        _XFF.replace(b'"c":"101"', b'"c":"101', 1),  # a quote lost: boundaries move
        _XFF.replace(b"},{", b"}{", 1),  # a comma lost
        _XFF.replace(b"},{", b"},,{", 1),
        _XFF.replace(b'"c":"101"', b'"c":NaN', 1),  # not JSON
        _XFF.replace(b"[", b"[\xff,", 1),  # invalid UTF-8 outside a string
        _XFF + b"]",
        b'{"e":"24hrMiniTicker","E":3,"s":"ETH\xffUSDT","c":"1"}',  # one object: nothing to keep
        b'{"stream":"ethusdt@miniTicker","data":{"e":"24hrMiniTicker","s":"ETH\xff"}}',
    ],
    ids=repr,
)
def test_a_frame_whose_structure_is_uncertain_is_still_refused_whole(raw: bytes) -> None:
    engine = Engine(RULES)
    stats = ParseStats()
    engine.process_raw(orjson.dumps([_ticker("BTCUSDT", 1_000, "99")]), stats)
    with pytest.raises(orjson.JSONDecodeError):
        engine.process_raw(raw, stats)
    last = engine.last_ticker("BTCUSDT")
    assert last is not None
    assert last.time == 1_000
    assert stats == ParseStats(tickers=1)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(_element(), min_size=1, max_size=6), st.booleans())
def test_invalid_utf8_in_one_element_of_any_spelling_reads_as_the_frame_without_it(
    data: st.DataObject, elements: list[Any], wrapped: bool
) -> None:
    """Whatever the spelling of the frame, a byte that is no UTF-8 inside one element's string
    costs that element alone: the rest fires and counts as a frame of the others would."""
    parts = [_dump(data.draw, el) for el in elements]
    bad = data.draw(st.sampled_from([i for i, p in enumerate(parts) if '"' in p] or [-1]))
    if bad < 0:
        return  # no string to put the byte in
    q = parts[bad].index('"') + 1
    encoded = [p.encode() for p in parts]
    encoded[bad] = (
        encoded[bad][:q] + data.draw(st.sampled_from([b"\xff", b"\xc0\x80"])) + encoded[bad][q:]
    )
    frame = b"[" + b",".join(encoded) + b"]"
    others = b"[" + b",".join(e for i, e in enumerate(encoded) if i != bad) + b"]"
    if wrapped:
        frame = b'{"stream":"!miniTicker@arr","data":' + frame + b"}"
    engine, reference = Engine(RULES), Engine(RULES)
    stats, want_stats = ParseStats(), ParseStats()
    assert _key(engine.process_raw(frame, stats)) == _key(reference.process_raw(others, want_stats))
    want_stats.skip("invalid UTF-8")
    assert stats == want_stats
    assert engine.symbols() == reference.symbols()
    for symbol in reference.symbols():
        assert engine.last_ticker(symbol) == reference.last_ticker(symbol)
