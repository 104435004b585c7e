"""Parse Binance mini-ticker messages into :class:`Ticker` values (pure).

A message is a raw ``!miniTicker@arr`` array, a single ``<symbol>@miniTicker`` object, or a
combined-stream wrapper ``{"stream": ..., "data": ...}`` around either. Numbers are parsed once per
ticker. Malformed elements are counted and skipped; nothing in here raises for bad input.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson

EVENT_TYPE = "24hrMiniTicker"
#: event times are milliseconds since the epoch; beyond 64 bits one is garbage, not a time (and
#: would silence its symbol for good, every later tick looking older)
MAX_EVENT_TIME = 2**63 - 1


_ROUNDER: Final = 6755399441055744.0  # 1.5 * 2**52: x + it - it is x rounded to an integer


def percent(part: float, whole: float) -> float:
    """``part`` in percent of ``whole``, rounded to 9 decimal places; NaN when ``whole`` is 0.

    Prices arrive as decimals, and binary floating point misses exact decimal moves by a few
    units in the last place: 0.1 -> 0.105 computes as 4.99999999999999 %, which would miss
    ``>= 5%``, and 0.3 -> 0.315 as 5.000000000000004 %, which would pass ``> 5%``. Rounded, both
    are 5. The product ``v * 1e9`` is rounded to an integer (ties to even, never -0.0) by adding
    and taking away 1.5 * 2**52, where a double has no fraction bits left (exact below 2**51;
    several times cheaper than ``round()``, which builds an int), and divided back. The C core
    (``pct`` in ``rules/_fastcore.c``) computes the same operations, so both agree to the bit;
    beyond a million percent there is no rounding (nothing there is finer than 1e-9 anyway).
    """
    if not whole:
        return math.nan
    v = part / whole * 100
    if -1e6 < v < 1e6:
        return (v * 1e9 + _ROUNDER - _ROUNDER) / 1e9
    return v


class Ticker(NamedTuple):
    """One mini-ticker update: 24h rolling-window statistics of a symbol at event time ``time``.

    A NamedTuple rather than a frozen dataclass: 650 of them are built every second, and a
    tuple is several times cheaper to build while staying immutable.
    """

    symbol: str
    time: int  # event time E, ms since the epoch
    close: float
    open: float
    high: float
    low: float
    volume: float
    quote_volume: float
    price_text: str  # ``c`` exactly as the feed sent it


@dataclass(slots=True)
class ParseStats:
    """Counters of what parsing skipped, by reason (for logs and metrics), and the market read.

    ``market_st`` is the ``st`` of the market the bot reads (DESIGN.md: 1 USD-M, 2 COIN-M):
    since the COIN-M merger, frames may carry elements of both, and an element carrying
    another ``st`` is skipped (an element without one is the market's own).
    """

    tickers: int = 0
    malformed: int = 0
    foreign: int = 0  # elements of another market (``st`` present and not ``market_st``)
    ignored: int = 0  # well-formed messages that are not tickers (acks, other events)
    reasons: dict[str, int] = field(default_factory=dict)
    market_st: int = 1

    def skip(self, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


_INF = math.inf
_new_ticker = tuple.__new__


def _number(value: Any) -> float:
    # Binance sends decimal strings; accept JSON numbers too, but never bools (a subclass of int).
    if type(value) is str or type(value) is float or type(value) is int:
        x = float(value)
        if math.isfinite(x) and x >= 0.0:
            return x
    raise ValueError


class Unreadable:
    """An element of a frame that orjson refused while the frame around it is well-formed (see
    :func:`salvage`): it stays in its place and is counted as malformed, for ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"


def parse_element(obj: Any, stats: ParseStats) -> Ticker | None:
    """One ticker object, or None (counted in ``stats``) when it is not a usable ticker of the
    market read (``stats.market_st``)."""
    if type(obj) is not dict:
        stats.skip(obj.reason if isinstance(obj, Unreadable) else "not an object")
        return None
    st = obj.get("st")
    if st is not None and st != stats.market_st:
        stats.foreign += 1
        return None
    if obj.get("e") != EVENT_TYPE:
        stats.skip("not a 24hrMiniTicker")
        return None
    symbol = obj.get("s")
    event_time = obj.get("E")
    if (
        type(symbol) is not str
        or not symbol
        or type(event_time) is not int
        or not 0 <= event_time <= MAX_EVENT_TIME
    ):
        stats.skip("bad symbol or event time")
        return None
    c = obj.get("c")
    try:
        close = _number(c)
        open_ = _number(obj.get("o"))
        high = _number(obj.get("h"))
        low = _number(obj.get("l"))
        volume = _number(obj.get("v"))
        quote_volume = _number(obj.get("q"))
    except (ValueError, TypeError):
        stats.skip("missing or bad number")
        return None
    stats.tickers += 1
    return Ticker(
        symbol.upper(),
        event_time,
        close,
        open_,
        high,
        low,
        volume,
        quote_volume,
        c if type(c) is str else repr(c),
    )


class Fields:
    """The values of one well-formed element, read in place.

    One instance is reused for every element, so reading a frame allocates no ticker: the engine
    copies the values into its per-symbol state and builds a :class:`Ticker` only when needed.
    """

    __slots__ = (
        "close",
        "high",
        "low",
        "market_st",
        "open",
        "quote_volume",
        "symbol",
        "text",
        "time",
        "volume",
    )

    def __init__(self, market_st: int = 1) -> None:
        self.market_st = market_st  # as ParseStats.market_st: elements of another are refused
        self.symbol = ""
        self.time = 0
        self.close = 0.0
        self.open = 0.0
        self.high = 0.0
        self.low = 0.0
        self.volume = 0.0
        self.quote_volume = 0.0
        self.text = ""

    def ticker(self) -> Ticker:
        return _new_ticker(
            Ticker,
            (
                self.symbol,
                self.time,
                self.close,
                self.open,
                self.high,
                self.low,
                self.volume,
                self.quote_volume,
                self.text,
            ),
        )


def read_element(el: object, f: Fields) -> bool:
    """Read a well-formed element of ``f``'s market into ``f``; False for anything else (then
    :func:`parse_element` classifies and counts it). Nothing is counted here.

    Written for mypyc: the isinstance checks let it use direct dict, str and float operations.
    """
    if not isinstance(el, dict):
        return False
    st = el.get("st")
    if (st is not None and st != f.market_st) or el.get("e") != EVENT_TYPE:
        return False
    s = el.get("s")
    e = el.get("E")
    c = el.get("c")
    o = el.get("o")
    h = el.get("h")
    lo = el.get("l")
    v = el.get("v")
    q = el.get("q")
    if not (
        isinstance(s, str)
        and isinstance(e, int)
        and not isinstance(e, bool)
        and isinstance(c, str)
        and isinstance(o, str)
        and isinstance(h, str)
        and isinstance(lo, str)
        and isinstance(v, str)
        and isinstance(q, str)
        and s
        and 0 <= e <= MAX_EVENT_TIME
    ):
        return False
    try:
        fc = float(c)
        fo = float(o)
        fh = float(h)
        fl = float(lo)
        fv = float(v)
        fq = float(q)
    except ValueError:
        return False
    if not (
        0.0 <= fc < _INF
        and 0.0 <= fo < _INF
        and 0.0 <= fh < _INF
        and 0.0 <= fl < _INF
        and 0.0 <= fv < _INF
        and 0.0 <= fq < _INF
    ):
        return False
    # Binance sends upper case; upper() would allocate a new string for every element
    f.symbol = s if s.isupper() else s.upper()
    f.time = e
    f.close = fc
    f.open = fo
    f.high = fh
    f.low = fl
    f.volume = fv
    f.quote_volume = fq
    f.text = c
    return True


def unwrap(obj: Any, stats: ParseStats) -> list[Any]:
    """The elements of a decoded message: a raw array, one object, or a combined-stream wrapper.

    Replies to SUBSCRIBE and friends and shapes that are no message at all are counted.
    """
    if type(obj) is dict and "data" in obj and "stream" in obj:
        obj = obj["data"]
    if type(obj) is list:
        return obj
    if type(obj) is dict:
        if "e" not in obj and ("result" in obj or "error" in obj or "id" in obj):
            stats.ignored += 1  # a reply to SUBSCRIBE and friends, not market data
            return []
        return [obj]
    stats.skip("not an array or object")
    return []


def tickers_from_obj(obj: Any, stats: ParseStats) -> list[Ticker]:
    """Tickers from an already decoded message."""
    out: list[Ticker] = []
    f = Fields(stats.market_st)
    good = 0
    for el in unwrap(obj, stats):
        if read_element(el, f):
            good += 1
            out.append(f.ticker())
        else:
            ticker = parse_element(el, stats)  # classifies and counts what is wrong
            if ticker is not None:
                out.append(ticker)
    stats.tickers += good
    return out


#: the tokens of JSON text that give it its structure: strings (any byte inside, escapes read
#: as such) and punctuation; numbers, literals and whitespace lie between them
_TOKEN: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
_QUOTE, _COLON, _COMMA = ord('"'), ord(":"), ord(",")
_OPEN, _CLOSE = b"[{", b"]}"


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def salvage(raw: bytes) -> list[Any] | None:
    """The elements of an array frame (bare, or in a combined-stream wrapper) that orjson refused
    as a whole because of some elements alone: each of those an :class:`Unreadable`, the others
    as orjson decodes them. None when that is not certain: the frame is refused whole.

    Only where every element's bounds are certain: the frame must be well-formed JSON once its
    invalid UTF-8 is replaced (which never touches an ASCII byte, so quotes, brackets and commas
    stay where they are) and lone surrogate escapes are allowed (the json module takes them,
    orjson does not). A frame cut short or garbled in its structure is refused whole, and so is
    one of a single object: it has nothing else to keep. Slow, and only for frames orjson
    refused, which Binance does not send.
    """
    try:
        whole = json.loads(raw.decode("utf-8", "replace"), parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    open_at = 0
    data: Any = whole
    if type(whole) is dict and "data" in whole and "stream" in whole:
        data = whole["data"]
        open_at = _data_array(raw)
    elif type(whole) is list:
        open_at = raw.index(b"[")
    if type(data) is not list or open_at < 0:
        return None
    spans = _element_spans(raw, open_at)
    if spans is None or len(spans) != len(data):
        return None
    out: list[Any] = []
    for start, end in spans:
        span = raw[start:end]
        try:
            out.append(orjson.loads(span))
        except orjson.JSONDecodeError:
            try:
                span.decode("utf-8")
            except UnicodeDecodeError:
                out.append(Unreadable("invalid UTF-8"))
            else:
                out.append(Unreadable("invalid JSON"))
    return out


def _data_array(raw: bytes) -> int:
    """Where the array that is the value of the last ``data`` key of a well-formed top-level
    object begins (the one the json module and orjson take); -1 when there is none."""
    depth = 0
    key = b""
    last = b""
    value = False  # the next token at depth 1 begins a value
    found = -1
    for m in _TOKEN.finditer(raw):
        at = m.start()
        ch = raw[at]
        if ch == _QUOTE:
            if depth == 1:
                if value:
                    value = False
                else:
                    last = m.group()
        elif ch == _COLON:
            if depth == 1:
                key = last
                value = True
        elif ch in _OPEN:
            if depth == 1 and value:
                value = False
                if ch == _OPEN[0] and json.loads(key.decode("utf-8", "replace")) == "data":
                    found = at
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        else:  # a comma
            if depth == 1:
                value = False
    return found


def _element_spans(raw: bytes, open_at: int) -> list[tuple[int, int]] | None:
    """The byte spans of the elements of the well-formed array that begins at ``open_at``."""
    depth = 0
    spans: list[tuple[int, int]] = []
    start = open_at + 1
    for m in _TOKEN.finditer(raw, open_at):
        at = m.start()
        ch = raw[at]
        if ch in (_QUOTE, _COLON):
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                if spans or raw[start:at].strip():
                    spans.append((start, at))
                return spans
        elif depth == 1:  # a comma between two elements
            spans.append((start, at))
            start = m.end()
    return None


def decode_frame(raw: bytes) -> Any:
    """``orjson.loads(raw)``, or when orjson refuses an array frame for some elements alone,
    its elements (:func:`salvage`); raises ``orjson.JSONDecodeError`` as orjson does when the
    frame is not that."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        elements = salvage(raw)
        if elements is None:
            raise
        return elements


def parse_message(raw: bytes | str, stats: ParseStats) -> list[Ticker]:
    """Tickers from one WebSocket message; malformed input is counted in ``stats`` and skipped."""
    try:
        obj = decode_frame(raw) if isinstance(raw, bytes) else orjson.loads(raw)
    except orjson.JSONDecodeError:
        stats.skip("invalid JSON")
        return []
    return tickers_from_obj(obj, stats)
