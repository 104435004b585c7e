"""The bounded hand-off between the sockets and the engine.

The sockets must never wait for the engine (a socket that is not read makes Binance drop the
connection), and memory must not grow when the engine falls behind. Messages are queued as they
are, decoded or as the bytes of a frame (which the engine reads without decoding); when
``capacity`` messages are waiting, everything waiting is decoded and conflated into one message
holding, per symbol, at most three tickers in event-time order: the newest, and those of the
lowest and the highest price among the conflated ones. The engine catches up on the latest state
instead of replaying stale ticks, and every price level the conflated ticks reached is still
crossed, both ways: a level crossed and crossed back while the engine was behind is alerted, as
it would have been tick by tick (a second round trip over the same level is not). Frames that
turn out not to be JSON then are handed to ``invalid`` (the feed counts them) and dropped.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

#: malformed elements kept through a conflation (the engine counts them); beyond, dropped
_MAX_ODD = 1000


def _elements(obj: Any) -> list[Any]:
    if type(obj) is dict and "data" in obj and "stream" in obj:
        obj = obj["data"]
    if type(obj) is list:
        return obj
    return [obj]


def _price(text: Any) -> float | None:
    """A ticker's price as the engine reads it, or None: left for the engine to count."""
    if type(text) is not str:
        return None
    try:
        price = float(text)
    except ValueError:
        return None
    return price if math.isfinite(price) else None


class _Ticks:
    """One symbol's tickers kept through a conflation: of those the engine would take (each newer
    than the one before; it drops a tick as old as its last), the newest, and the first of the
    lowest and of the highest price."""

    __slots__ = ("high", "high_price", "low", "low_price", "newest", "time")

    def __init__(self, el: Any, time: int, price: float) -> None:
        self.time = time
        self.newest = self.low = self.high = el
        self.low_price = self.high_price = price

    def add(self, el: Any, time: int, price: float) -> None:
        if time <= self.time:
            return  # older than a tick already taken: the engine would drop it
        self.time = time
        self.newest = el
        if price < self.low_price:
            self.low, self.low_price = el, price
        elif price > self.high_price:
            self.high, self.high_price = el, price

    def in_order(self) -> list[Any]:
        """The kept tickers, each once, oldest first."""
        kept: list[Any] = []
        for el in sorted((self.low, self.high, self.newest), key=lambda e: e["E"]):
            if not kept or kept[-1] is not el:
                kept.append(el)
        return kept


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
        self.dropped = 0  # tickers a conflation left out (see _Ticks), or odd ones dropped

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Any) -> None:
        if len(self._items) >= self.capacity:
            self._conflate(message)
        else:
            self._items.append(message)
        self._ready.set()

    def _conflate(self, message: Any) -> None:
        symbols: dict[str, _Ticks] = {}
        odd: list[Any] = []
        total = 0
        for item in (*self._items, message):
            if type(item) is bytes:
                try:
                    item = orjson.loads(item)
                except orjson.JSONDecodeError:
                    self.invalid(item)
                    continue
            for el in _elements(item):
                total += 1
                if type(el) is dict:
                    symbol = el.get("s")
                    time = el.get("E")
                    st = el.get("st")
                    price = _price(el.get("c"))
                    if (
                        type(symbol) is str
                        and type(time) is int
                        and price is not None
                        and (st is None or st == self.market_st)
                    ):
                        ticks = symbols.get(symbol)
                        if ticks is None:
                            symbols[symbol] = _Ticks(el, time, price)
                        else:
                            ticks.add(el, time, price)
                        continue
                if len(odd) < _MAX_ODD:
                    odd.append(el)
        merged = odd
        for ticks in symbols.values():
            merged.extend(ticks.in_order())
        self.dropped += total - len(merged)
        self.conflations += 1
        self._items.clear()
        self._items.append(merged)

    async def get(self) -> list[Any]:
        """Every waiting message, oldest first; waits while there is none."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = list(self._items)
        self._items.clear()
        return items
