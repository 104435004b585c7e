"""Parse Binance mini-ticker messages into :class:`Ticker` values (pure).

A message is a raw ``!miniTicker@arr`` array, a single ``<symbol>@miniTicker`` object, or a
combined-stream wrapper ``{"stream": ..., "data": ...}`` around either. Numbers are parsed once per
ticker. Malformed elements are counted and skipped; nothing in here raises for bad input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

EVENT_TYPE = "24hrMiniTicker"


@dataclass(frozen=True, slots=True)
class Ticker:
    """One mini-ticker update: 24h rolling-window statistics of a symbol at event time ``time``."""

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
    """Counters of what parsing skipped, by reason (for logs and metrics)."""

    tickers: int = 0
    malformed: int = 0
    foreign: int = 0  # elements of another market (``st`` present and not 1)
    ignored: int = 0  # well-formed messages that are not tickers (acks, other events)
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


_NUMERIC = ("c", "o", "h", "l", "v", "q")


def _number(value: Any) -> float:
    # Binance sends decimal strings; accept JSON numbers too, but never bools (a subclass of int).
    if type(value) is str or type(value) is float or type(value) is int:
        x = float(value)
        if math.isfinite(x) and x >= 0.0:
            return x
    raise ValueError


def parse_element(obj: Any, stats: ParseStats) -> Ticker | None:
    """One ticker object, or None (counted in ``stats``) when it is not a usable USD-M ticker."""
    if type(obj) is not dict:
        stats.skip("not an object")
        return None
    st = obj.get("st")
    if st is not None and st != 1:
        stats.foreign += 1
        return None
    if obj.get("e") != EVENT_TYPE:
        stats.skip("not a 24hrMiniTicker")
        return None
    symbol = obj.get("s")
    event_time = obj.get("E")
    if type(symbol) is not str or not symbol or type(event_time) is not int or event_time < 0:
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


def tickers_from_obj(obj: Any, stats: ParseStats) -> list[Ticker]:
    """Tickers from an already decoded message."""
    if type(obj) is dict and "data" in obj and "stream" in obj:
        obj = obj["data"]
    if type(obj) is list:
        out = []
        for element in obj:
            ticker = parse_element(element, stats)
            if ticker is not None:
                out.append(ticker)
        return out
    if type(obj) is dict:
        if "e" not in obj and ("result" in obj or "error" in obj or "id" in obj):
            stats.ignored += 1  # a reply to SUBSCRIBE and friends, not market data
            return []
        ticker = parse_element(obj, stats)
        return [] if ticker is None else [ticker]
    stats.skip("not an array or object")
    return []


def parse_message(raw: bytes | str, stats: ParseStats) -> list[Ticker]:
    """Tickers from one WebSocket message; malformed input is counted in ``stats`` and skipped."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        stats.skip("invalid JSON")
        return []
    return tickers_from_obj(obj, stats)


def parse_messages(raws: Iterable[bytes | str], stats: ParseStats) -> list[Ticker]:
    """Tickers from several messages, in order."""
    out: list[Ticker] = []
    for raw in raws:
        out.extend(parse_message(raw, stats))
    return out
