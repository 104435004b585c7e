"""The exchange's tradable symbols: exchangeInfo over REST, else the symbols seen on the feed."""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from alertbot.feed.settings import FeedSettings
from alertbot.text import is_text, plural

log = logging.getLogger("alertbot.feed")


def tradable(info: Any) -> frozenset[str]:
    """Symbols with status TRADING in an exchangeInfo answer (``contractStatus`` on COIN-M).

    Raises ValueError when the answer has not the expected shape.
    """
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise ValueError("exchangeInfo answer without a 'symbols' list")
    out = set()
    not_text = []
    for item in info["symbols"]:
        if not isinstance(item, dict):
            continue
        symbol = item.get("symbol")
        status = item.get("status", item.get("contractStatus"))
        if isinstance(symbol, str) and symbol and status == "TRADING":
            if not is_text(symbol):  # a \ud800 escape: no stream, reply or row can hold it
                not_text.append(ascii(symbol))
                continue
            out.add(symbol.upper())
    if not_text:
        log.warning(
            "exchangeInfo: %s not valid Unicode (a lone surrogate), left out: %s",
            plural(len(not_text), "symbol"),
            ", ".join(not_text[:10]),
        )
    return frozenset(out)


#: quote assets a coin's name alone is completed with, most common first
QUOTES = ("USDT", "USDC", "USD_PERP", "USD", "FDUSD")
#: contract sizes Binance puts before a coin whose unit price is tiny (1000PEPEUSDT, 1MBABYDOGE)
_MULTIPLIER_RE = re.compile(r"(?:1(?:0{3,6}|M))(?=[A-Z])")


def suggest(symbol: str, known: Iterable[str]) -> str | None:
    """The known symbol a user most likely meant by an unknown ``symbol``, or None.

    First the contract the name stands for: a coin's name alone completed with a quote asset
    (BTC -> BTCUSDT), a coin Binance trades by the thousand with its multiplier
    (PEPEUSDT -> 1000PEPEUSDT), or the other way round; only then the closest spelling (a
    typo: BTCUSDX -> BTCUSDT). Closeness alone would name another coin for those
    (PEPEUSDT -> PEOPLEUSDT).
    """
    typed = symbol.upper()
    names = set(known)
    multiplier = _MULTIPLIER_RE.match(typed)
    bare = typed[multiplier.end() :] if multiplier else typed
    by_coin: dict[str, list[str]] = {}
    for name in names:
        m = _MULTIPLIER_RE.match(name)
        if m is not None:
            by_coin.setdefault(name[m.end() :], []).append(name)
    for base in (typed, bare):
        for form in (base, *(base + q for q in QUOTES)):
            for candidate in (form, *sorted(by_coin.get(form, ()), key=len)):
                if candidate != typed and candidate in names:
                    return candidate
    close = difflib.get_close_matches(typed, sorted(names), n=1, cutoff=0.75)
    return close[0] if close else None


class SymbolDirectory:
    """Which symbols exist. ``refresh()`` asks the exchange; until that works, and whenever it
    fails before ever working, ``seen`` (the symbols that came on the feed) stands in.

    ``seen`` is the whole market only when ``complete()`` says so (the feed is on the
    all-market stream, which carries every symbol each second); on symbol streams it is just
    the symbols already watched, so a symbol missing from it may well exist: see
    :attr:`authoritative`.
    """

    def __init__(
        self,
        settings: FeedSettings,
        *,
        seen: Callable[[], Iterable[str]] = tuple,
        complete: Callable[[], bool] = lambda: False,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.url = settings.market.exchange_info_url(settings.rest_url)
        self._seen = seen
        self._complete = complete
        self._client = client
        self.exchange: frozenset[str] | None = None  # the last good answer
        self.last_error: str | None = None
        self.refreshed = asyncio.Event()

    @property
    def source(self) -> str:
        return "exchange" if self.exchange is not None else "stream"

    @property
    def authoritative(self) -> bool:
        """Whether a symbol missing from :meth:`known` does not exist (rather than not being
        known yet)."""
        return bool(self.exchange) or self._complete()

    def known(self) -> frozenset[str]:
        if self.exchange is not None:
            return self.exchange
        return frozenset(self._seen())

    def suggest(self, symbol: str) -> str | None:
        """The known symbol meant, for a did-you-mean (see :func:`suggest`)."""
        return suggest(symbol, self.known())

    async def refresh(self) -> bool:
        """Ask the exchange; on any failure keep what we had and say why (once per change)."""
        try:
            if self._client is not None:
                answer = await self._client.get(self.url, timeout=self.settings.rest_timeout)
            else:
                async with httpx.AsyncClient(timeout=self.settings.rest_timeout) as client:
                    answer = await client.get(self.url)
            answer.raise_for_status()
            symbols = tradable(answer.json())
        # RecursionError: JSON nested deeper than the parser goes, an answer as bad as any
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:
                fallback = (
                    "keeping the last list" if self.exchange else "using symbols seen on the feed"
                )
                log.warning("symbols: cannot read %s (%s); %s", self.url, error, fallback)
            self.last_error = error
            return False
        if self.exchange is None or symbols != self.exchange:
            log.info("symbols: %d tradable on the exchange", len(symbols))
        self.exchange = symbols
        self.last_error = None
        self.refreshed.set()
        return True


def unknown_symbols(names: Iterable[str], directory: SymbolDirectory) -> list[str]:
    """Warnings for literal symbols the exchange does not list, with a did-you-mean."""
    known = directory.known()
    out = []
    for name in sorted(set(names)):
        if name in known:
            continue
        hint = directory.suggest(name)
        out.append(f"{name}" + (f" (did you mean {hint}?)" if hint else ""))
    return out
