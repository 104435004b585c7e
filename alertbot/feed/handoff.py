"""The bounded hand-off between the sockets and the engine.

The sockets must never wait for the engine (a socket that is not read makes Binance drop the
connection), and memory must not grow when the engine falls behind. Messages are queued as they
are, decoded or as the bytes of a frame (which the engine reads without decoding); when
``capacity`` messages are waiting, everything waiting is decoded and conflated into one message
holding the newest ticker of each symbol (by event time), so the engine catches up on the latest
state instead of replaying stale ticks. Frames that turn out not to be JSON then are handed to
``invalid`` (the feed counts them) and dropped.
"""

from __future__ import annotations

import asyncio
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
        self.dropped = 0  # tickers replaced by a newer one of their symbol, or odd ones dropped

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Any) -> None:
        if len(self._items) >= self.capacity:
            self._conflate(message)
        else:
            self._items.append(message)
        self._ready.set()

    def _conflate(self, message: Any) -> None:
        newest: dict[str, Any] = {}
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
                    if (
                        type(symbol) is str
                        and type(time) is int
                        and (st is None or st == self.market_st)
                    ):
                        kept = newest.get(symbol)
                        if kept is None or kept["E"] <= time:
                            newest[symbol] = el
                        continue
                if len(odd) < _MAX_ODD:
                    odd.append(el)
        merged = odd + list(newest.values())
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
