"""Binance markets: WebSocket and REST roots, URL shapes and stream names (DESIGN.md, The feed)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from alertbot.rules.names import ascii_lower, ascii_upper, is_symbol, normalise

ALL_MARKET = "!miniTicker@arr"
ACCEPTED_STREAMS = (
    f"a symbol such as BTCUSDT, <symbol>@miniTicker such as btcusdt@miniTicker, or {ALL_MARKET}"
)


@dataclass(frozen=True, slots=True)
class Market:
    """Where one Binance market serves its mini tickers and its symbol list."""

    name: str
    ws_root: str
    rest_root: str
    #: USD-M market data is routed by path since 2026: ``/market/ws/...``; the bare ``/ws/...``
    #: path is accepted and then stays silent.
    ws_prefix: str
    exchange_info_path: str
    #: one symbol's 24h statistics (``?symbol=``): an object, a list of one on COIN-M
    ticker_path: str
    #: the ``st`` its tickers carry, if any (DESIGN.md: 1 USD-M, 2 COIN-M); since the COIN-M
    #: merger a frame may mix both markets, and elements carrying another ``st`` are skipped
    st: int = 1
    #: incoming messages a connection may send per second; over it the exchange closes the
    #: connection (1008) and bans an IP that does so repeatedly. Pings and pongs count.
    max_incoming: int = 10
    #: live requests (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS; a catch-up's too) per second
    #: and connection, within what ``max_incoming`` leaves once our keepalive ping and our pong
    #: to the exchange's ping have their room (at most one each in any second: both come every
    #: 20 s or more), our close frame (it may follow a request at once), and one request more,
    #: which arrival jitter may bring into the same second: 1 + 3 + 1 on spot
    request_rate: float = 4.0
    #: the exchange's web page of a symbol's chart (``{symbol}``), linked under a watch's
    #: alerts; empty: none (a page whose address is not the symbol's name alone)
    chart_page: str = ""

    def chart_url(self, symbol: str) -> str | None:
        """The web page of ``symbol``'s chart on the exchange; None: this market has none."""
        return self.chart_page.format(symbol=quote(symbol, safe="")) if self.chart_page else None

    def raw_url(self, root: str, stream: str | None = None) -> str:
        """One raw stream (payloads unwrapped); without a stream, a connection for SUBSCRIBE."""
        base = f"{root.rstrip('/')}{self.ws_prefix}/ws"
        return f"{base}/{stream}" if stream else base

    def combined_url(self, root: str, streams: Iterable[str]) -> str:
        """Several streams on one connection; each payload wrapped as {"stream", "data"}.

        A name beyond ASCII (``币安人生usdt@miniTicker``) goes percent-encoded as UTF-8."""
        names = quote("/".join(streams), safe="/@!")
        return f"{root.rstrip('/')}{self.ws_prefix}/stream?streams={names}"

    def exchange_info_url(self, root: str) -> str:
        return f"{root.rstrip('/')}{self.exchange_info_path}"

    def ticker_url(self, root: str) -> str:
        return f"{root.rstrip('/')}{self.ticker_path}"


MARKETS: dict[str, Market] = {
    "usdm": Market(
        "usdm", "wss://fstream.binance.com", "https://fapi.binance.com", "/market",
        "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/24hr",
        chart_page="https://www.binance.com/en/futures/{symbol}",
    ),
    "testnet": Market(
        "testnet", "wss://fstream.binancefuture.com", "https://testnet.binancefuture.com",
        "/market", "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/24hr",
        chart_page="https://testnet.binancefuture.com/en/futures/{symbol}",
    ),
    "coinm": Market(
        "coinm", "wss://dstream.binance.com", "https://dapi.binance.com", "",
        "/dapi/v1/exchangeInfo", "/dapi/v1/ticker/24hr", st=2,
    ),
    "spot": Market(
        "spot", "wss://stream.binance.com:9443", "https://api.binance.com", "",
        "/api/v3/exchangeInfo", "/api/v3/ticker/24hr", max_incoming=5, request_rate=1.0,
    ),
}  # fmt: skip


def symbol_stream(symbol: str) -> str:
    """``BTCUSDT`` -> ``btcusdt@miniTicker``; ``币安人生USDT`` -> ``币安人生usdt@miniTicker`` (only
    ASCII letters are lowered, as Binance names such streams: alertbot/rules/names.py)."""
    return f"{ascii_lower(symbol)}@miniTicker"


def stream_symbol(stream: str) -> str | None:
    """``btcusdt@miniTicker`` -> ``BTCUSDT``; None for a stream of no single symbol."""
    name, _, kind = stream.partition("@")
    if not kind or name.startswith("!"):
        return None
    return ascii_upper(name)


def nameable(symbol: str) -> bool:
    """Whether a symbol can be asked for by name (``<symbol>@miniTicker``): one that
    alertbot/rules/names.py accepts (``币安人生USDT`` too). Should the exchange list another,
    only the all-market stream carries it."""
    return is_symbol(symbol)


def normalise_stream(text: str) -> str:
    """A mini-ticker stream as a user may type it, in the exchange's spelling:
    ``BTCUSDT`` and ``BTCUSDT@miniticker`` -> ``btcusdt@miniTicker``.

    Only mini-ticker streams: the feed, the engine and ``replay`` read nothing else, and the
    exchange refuses a miss-cased name. Raises ValueError naming the accepted forms otherwise.
    """
    s = text.strip()
    if s.lower() == ALL_MARKET.lower():
        return ALL_MARKET
    name, at, kind = s.partition("@")
    symbol = normalise(name)
    if is_symbol(symbol) and (not at or kind.lower() == "miniticker"):
        return symbol_stream(symbol)
    raise ValueError(f"not a mini-ticker stream: {text!r} (accepted: {ACCEPTED_STREAMS})")
