"""The bounded hand-off between the sockets and the engine.

The sockets must never wait for the engine (a socket that is not read makes Binance drop the
connection), and memory must not grow when the engine falls behind. Messages are queued as they
are, decoded or as the bytes of a frame (which the engine reads without decoding); when
``capacity`` messages are waiting, everything waiting is conflated into one message holding,
per symbol, in event-time order, the newest ticker and those of the lowest and the highest value
of every metric a condition can name (price, change_24h, range_24h, volume, quote_volume, high,
low) among the conflated ones: at most fifteen, usually a few, as one tick often holds several
extremes. The engine catches up on the latest state instead of replaying
stale ticks, and every level the conflated ticks reached, of any metric, is still crossed, both
ways: a level crossed and crossed back while the engine was behind is alerted, as it would have
been tick by tick (a second round trip over the same level is not). Frames the feed held back
and hands on at once (a rotation's or a switch's) are no sign of a slow engine: they are queued
as they are (``Handoff.burst``). Only ticks the engine would
take are weighed, read as it reads them; the others are passed on for it to count. Frames that
turn out not to be JSON then are handed to ``invalid`` (the feed counts them) and dropped; of
an array frame that is JSON but for some elements' text, only those are left out (for the
engine to count: see ``alertbot.ticker.salvage``).

Conflating runs inside ``put``, on the sockets' event loop, so it must cost less than the work
it saves: when everything waiting is frames' bytes in the plain form Binance writes (the live
feed's), the C core (``alertbot.rules._fastcore.conflate``) reads and conflates them without a
Python object per element, into one frame's bytes holding the kept elements as they came,
which the engine reads as any frame. Otherwise (a decoded message or a frame not in that form
among them, or no C core) all are decoded and conflated in Python, to the same elements.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import orjson

try:
    from alertbot.rules._fastcore import conflate as conflate_raw
except ImportError:  # not compiled: every batch is conflated in Python
    from alertbot.rules.core import conflate as conflate_raw
from alertbot.ticker import (
    Fields,
    ParseStats,
    decode_frame,
    parse_element,
    percent,
    read_element,
)

#: malformed elements kept through a conflation (the engine counts them); beyond, dropped
_MAX_ODD = 1000

_INF = float("inf")


def _elements(obj: Any) -> list[Any]:
    if type(obj) is dict and "data" in obj and "stream" in obj:
        obj = obj["data"]
    if type(obj) is list:
        return obj
    return [obj]


def _tick(
    time: int, el: Any, c: float, o: float, h: float, lo: float, v: float, q: float
) -> tuple[Any, ...]:
    """The tick with the metrics a condition can name, as the engine computes them: price,
    volume, quote_volume, high, low, then change_24h and range_24h once to find the lowest and
    once the highest, where NaN (a percentage of 0, not computable) is no extreme."""
    change = percent(c - o, o)
    range_ = percent(h - lo, lo)
    change_lo, change_hi = (change, change) if change == change else (_INF, -_INF)
    range_lo, range_hi = (range_, range_) if range_ == range_ else (_INF, -_INF)
    return (time, el, c, v, q, h, lo, change_lo, range_lo, change_hi, range_hi)


_LOWEST = [itemgetter(k) for k in range(2, 9)]
_HIGHEST = [itemgetter(k) for k in (2, 3, 4, 5, 6, 9, 10)]


def _kept(ticks: list[tuple[Any, ...]]) -> list[Any]:
    """Of one symbol's ticks (oldest first, each newer than the one before), the newest and per
    metric the first of the lowest and of the highest value: each once, oldest first."""
    if len(ticks) <= 2:
        return [t[1] for t in ticks]
    kept = {t[0]: t[1] for t in [min(ticks, key=k) for k in _LOWEST]}
    kept.update((t[0], t[1]) for t in [max(ticks, key=k) for k in _HIGHEST])
    newest = ticks[-1]
    kept[newest[0]] = newest[1]
    return [kept[time] for time in sorted(kept)]


def conflate(items: list[Any], market_st: int, invalid: Callable[[bytes], None]) -> tuple[Any, int]:
    """The conflated message of ``items`` (see the module docstring) and how many elements it
    left out. When every item is a frame's bytes in the plain form Binance writes, the C core
    conflates them and the message is a frame's bytes, the kept elements as they came, which the
    engine reads as fast as any frame; else, or without the C core, :func:`conflate_decoded`."""
    if all(type(item) is bytes for item in items):
        f = Fields(market_st)
        scratch = ParseStats(market_st=market_st)

        def judge(span: bytes) -> tuple[str, int, float, float, float, float, float, float] | None:
            # an element the C reader leaves to Python, read as conflate_decoded reads it
            el = orjson.loads(span)
            if read_element(el, f):
                return (f.symbol, f.time, f.close, f.open, f.high, f.low, f.volume, f.quote_volume)
            t = parse_element(el, scratch)
            if t is None:
                return None
            return (t.symbol, t.time, t.close, t.open, t.high, t.low, t.volume, t.quote_volume)

        done = conflate_raw(items, market_st, judge, _MAX_ODD)
        if done is not None:
            return done
    return conflate_decoded(items, market_st, invalid)


def conflate_decoded(
    items: list[Any], market_st: int, invalid: Callable[[bytes], None]
) -> tuple[list[Any], int]:
    """:func:`conflate` in Python: frames' bytes are decoded (those that are not JSON handed to
    ``invalid`` and dropped), and the message is the list of the kept elements, decoded."""
    symbols: dict[str, list[tuple[Any, ...]]] = {}
    odd: list[Any] = []
    total = 0
    f = Fields(market_st)
    scratch = ParseStats(market_st=market_st)
    for item in items:
        if type(item) is bytes:
            try:
                item = decode_frame(item)  # an unreadable element is the engine's to count
            except orjson.JSONDecodeError:
                invalid(item)
                continue
        for el in _elements(item):
            total += 1
            if read_element(el, f):
                tick = _tick(f.time, el, f.close, f.open, f.high, f.low, f.volume, f.quote_volume)
                symbol = f.symbol
            else:
                # the forms the engine reads in Python (numbers as JSON numbers); the
                # engine counts what is wrong with the others itself
                t = parse_element(el, scratch)
                if t is None:
                    if len(odd) < _MAX_ODD:
                        odd.append(el)
                    continue
                tick = _tick(t.time, el, t.close, t.open, t.high, t.low, t.volume, t.quote_volume)
                symbol = t.symbol
            ticks = symbols.get(symbol)
            if ticks is None:
                symbols[symbol] = [tick]
            elif tick[0] > ticks[-1][0]:
                ticks.append(tick)
            # else older than a tick already taken: the engine would drop it
    merged = odd
    for ticks in symbols.values():
        merged.extend(_kept(ticks))
    return merged, total - len(merged)


class Handoff:
    """Sockets ``put`` decoded messages (never blocking); the engine ``get``s them in batches."""

    def __init__(
        self,
        capacity: int = 32,
        invalid: Callable[[bytes], None] = lambda raw: None,
        market_st: int = 1,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.invalid = invalid
        #: the market read (ParseStats.market_st): another market's element of the same symbol
        #: must not take the place of the market's own newest one
        self.market_st = market_st
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self.conflations = 0  # how often the engine was behind
        self.dropped = 0  # tickers a conflation left out (see _kept), or odd ones dropped
        self._bursts = 0  # nested burst() blocks open
        #: messages put in a burst since the engine last took what waits: beyond capacity
        self._extra = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Any) -> None:
        if self._bursts:
            self._items.append(message)
            self._extra += 1
        elif len(self._items) >= self.capacity + self._extra:
            self._conflate(message)
        else:
            self._items.append(message)
        self._ready.set()

    @contextmanager
    def burst(self) -> Iterator[None]:
        """Messages put meanwhile are frames the feed held back and now hands on at once (a
        rotation's or a switch's new socket, while the old one was read to its end): the
        engine is not behind, it had no chance to take them. They are queued as they are,
        beyond ``capacity`` until the engine next takes what waits, instead of conflated with
        each other (which would keep only one round trip over a level of all they hold).
        Memory stays bounded: they were held in memory already, for at most
        ``drain_timeout``."""
        self._bursts += 1
        try:
            yield
        finally:
            self._bursts -= 1

    def _conflate(self, message: Any) -> None:
        merged, dropped = conflate([*self._items, message], self.market_st, self.invalid)
        self.dropped += dropped
        self.conflations += 1
        self._items.clear()
        self._items.append(merged)
        self._extra = 0

    async def get(self) -> list[Any]:
        """Every waiting message, oldest first; waits while there is none."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = list(self._items)
        self._items.clear()
        self._extra = 0
        return items
