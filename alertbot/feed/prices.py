"""One symbol's 24h statistics over REST (Binance's ``ticker/24hr``), for ``/price`` when the
engine has no ticker of it: on symbol streams the feed carries only the watched symbols.

An answer, or a failure, serves the same symbol for ``price_cache`` seconds, a lookup asked while
the same one is under way waits for it, and at most ``price_lookups`` go at a time: a user
sending /price over and over asks Binance once. Nothing here raises: a failure is a
:class:`Failed` with a short reason for the user (never the answer's body).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from alertbot.feed.settings import FeedSettings
from alertbot.ticker import Ticker

log = logging.getLogger("alertbot.feed")

#: cached answers kept at most (expired ones are dropped when there are more): one per symbol
#: asked, and anyone may ask for any name
CACHE_MAX = 1024
#: characters of Binance's own error message shown at most
MSG_MAX = 80
#: the latest closeTime taken (ms: the last of year 9999): a later one is no date a reply can
#: show (format_time raised, the user got "Sorry, something went wrong")
MAX_CLOSE_TIME = 253_402_300_799_999


@dataclass(frozen=True, slots=True)
class Failed:
    """Why a lookup gave no ticker: a sentence for the user. ``unknown``: Binance answered
    that it lists no such symbol (-1121)."""

    reason: str
    unknown: bool = False


def _number(answer: dict[str, Any], key: str) -> float:
    value = answer.get(key)
    if type(value) is str or type(value) is float or type(value) is int:
        try:
            x = float(value)
        except OverflowError:  # an integer of 400 digits: no float holds it
            raise ValueError(f"{key}: out of range") from None
        if math.isfinite(x) and x >= 0.0:
            return x
    raise ValueError(f"{key}: not a number")


def ticker_of(answer: Any, symbol: str) -> Ticker:
    """``symbol``'s ticker in a ``ticker/24hr?symbol=`` answer: an object on USD-M and spot, a
    list of them on COIN-M. Its event time is ``closeTime`` (the end of the 24 h window), its
    price text ``lastPrice`` as sent.

    COIN-M has no ``quoteVolume``: its ``volume`` counts contracts and ``baseVolume`` the coin,
    which is what its mini ticker's ``q`` carries, so the quote volume is ``baseVolume`` there.
    Raises ValueError when the answer has not that shape.
    """
    if isinstance(answer, list):
        answer = next(
            (a for a in answer if isinstance(a, dict) and a.get("symbol") == symbol), None
        )
    if not isinstance(answer, dict) or answer.get("symbol") != symbol:
        raise ValueError(f"no ticker of {symbol}")
    text = answer.get("lastPrice")
    close_time = answer.get("closeTime")
    if type(text) is not str or type(close_time) is not int:
        raise ValueError("lastPrice or closeTime missing")
    if not 0 <= close_time <= MAX_CLOSE_TIME:
        raise ValueError("closeTime out of range")
    quote = "quoteVolume" if "quoteVolume" in answer else "baseVolume"
    return Ticker(
        symbol,
        close_time,
        _number(answer, "lastPrice"),
        _number(answer, "openPrice"),
        _number(answer, "highPrice"),
        _number(answer, "lowPrice"),
        _number(answer, "volume"),
        _number(answer, quote),
        text,
    )


#: Binance's error code for a symbol it does not list
INVALID_SYMBOL = -1121


def _code(answer: httpx.Response) -> int | None:
    """Binance's error code in an answer (``{"code": -1121, ...}``), if any."""
    try:
        body = answer.json()
    except (ValueError, RecursionError):
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if type(code) is int else None


def _refusal(answer: httpx.Response) -> str:
    """A short reason for an answer other than 200: the status, and Binance's own message
    (``{"code": -1121, "msg": "Invalid symbol."}``) cut short."""
    why = f"Binance answered {answer.status_code}"
    try:
        body = answer.json()
    except (ValueError, RecursionError):
        return why
    if isinstance(body, dict) and isinstance(body.get("msg"), str):
        msg = " ".join(body["msg"].split())[:MSG_MAX]
        code = body.get("code")
        return f"{why} ({code}: {msg})" if type(code) is int else f"{why} ({msg})"
    return why


class PriceLookup:
    """Asks Binance for one symbol's 24h ticker (the market's ``ticker_path``)."""

    def __init__(
        self,
        settings: FeedSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``client``: the HTTP client to ask with (None: one per lookup). ``clock``: seconds,
        for how long an answer is kept (tests move it)."""
        self.url = settings.market.ticker_url(settings.rest_url)
        self.timeout = settings.price_timeout
        self.keep = settings.price_cache
        self._client = client
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.price_lookups)
        self._cache: dict[str, tuple[float, Ticker | Failed]] = {}
        self._pending: dict[str, asyncio.Future[Ticker | Failed]] = {}

    async def get(self, symbol: str) -> Ticker | Failed:
        """``symbol``'s ticker from Binance, or why there is none."""
        now = self._clock()
        kept = self._cache.get(symbol)
        if kept is not None and now < kept[0]:
            return kept[1]
        pending = self._pending.get(symbol)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Ticker | Failed] = asyncio.get_running_loop().create_future()
        self._pending[symbol] = future
        result: Ticker | Failed = Failed("The lookup was cancelled.")
        try:
            result = await self._fetch(symbol)
            self._keep(symbol, result)
        finally:  # also when this caller is cancelled: the others waiting for it are answered
            del self._pending[symbol]
            future.set_result(result)
        return result

    def _keep(self, symbol: str, result: Ticker | Failed) -> None:
        now = self._clock()
        if len(self._cache) >= CACHE_MAX:
            self._cache = {s: kept for s, kept in self._cache.items() if now < kept[0]}
            if len(self._cache) >= CACHE_MAX:
                return
        self._cache[symbol] = (now + self.keep, result)

    async def _fetch(self, symbol: str) -> Ticker | Failed:
        waiting = True  # for a free lookup (the others are slow), not for Binance yet
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    waiting = False
                    answer = await self._ask(symbol)
        except TimeoutError:
            why = "too many lookups under way" if waiting else "no answer in time"
            return self._failed(symbol, why)
        except httpx.TimeoutException:  # httpx's own timeout, of the same length, came first
            return self._failed(symbol, "no answer in time")
        except httpx.HTTPError as exc:
            return self._failed(symbol, f"cannot reach Binance ({type(exc).__name__})")
        if answer.status_code != 200:
            # a 4xx is mostly a symbol Binance does not list (-1121): the user's, not ours
            level = logging.INFO if 400 <= answer.status_code < 500 else logging.WARNING
            failed = self._failed(symbol, _refusal(answer), level)
            if answer.status_code == 400 and _code(answer) == INVALID_SYMBOL:
                return Failed(failed.reason, unknown=True)
            return failed
        try:
            return ticker_of(answer.json(), symbol)
        # RecursionError: JSON nested deeper than the parser goes, an answer as bad as any
        except (ValueError, RecursionError):
            return self._failed(symbol, "Binance's answer was not a ticker")

    async def _ask(self, symbol: str) -> httpx.Response:
        params = {"symbol": symbol}
        if self._client is not None:
            return await self._client.get(self.url, params=params, timeout=self.timeout)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            return await client.get(self.url, params=params)

    @staticmethod
    def _failed(symbol: str, why: str, level: int = logging.WARNING) -> Failed:
        log.log(level, "price: cannot fetch %s's 24h ticker: %s", symbol, why)
        return Failed(f"Asking Binance for it failed: {why}.")
