"""The feed's settings, from the environment or given directly (tests shrink every time here)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from alertbot.errors import ConfigError
from alertbot.feed.market import MARKETS, Market
from alertbot.settings import env_choice, env_int, env_seconds, env_url

STREAM_MODES = ("auto", "all", "symbols")


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """Times are seconds on the event loop's clock."""

    market: Market = field(default_factory=lambda: MARKETS["usdm"])
    ws_root: str = ""  # "" = the market's own
    rest_root: str = ""
    #: ``all``: one ``!miniTicker@arr`` connection; ``symbols``: ``<symbol>@miniTicker`` streams;
    #: ``auto``: all-market when a rule has a glob or more than ``auto_threshold`` symbols are
    #: watched, symbol streams otherwise.
    stream: str = "auto"
    auto_threshold: int = 50
    max_streams: int = 200  # per connection; Binance documents 1024, historically 200
    #: data watchdog: reconnect when a connection delivers no market data for this long
    stale_after: float = 15.0  # the all-market stream sends every second
    symbol_stale_after: float = 90.0  # a quiet symbol's stream may legitimately not change
    #: rotate each connection (make-before-break) before Binance's 24 h limit
    max_age: float = 23.5 * 3600
    #: how long a rotation or a mode switch waits for the new connection before giving up on it
    handover_timeout: float = 30.0
    #: how long an old connection is still read, after its replacement delivers, to catch up
    #: with where the replacement began (bounded for quiet streams that may send nothing)
    drain_timeout: float = 5.0
    backoff_initial: float = 0.25
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    #: a connection that delivered for this long resets the backoff
    healthy_after: float = 60.0
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    ping_interval: float | None = 20.0  # our own pings: dead-peer detection
    ping_timeout: float | None = 20.0
    #: live SUBSCRIBE/UNSUBSCRIBE messages per second and connection (a catch-up's request
    #: keeps to the same pace); None: the market's
    #: ``request_rate`` (Binance allows 10 incoming messages a second on futures, 5 on spot,
    #: pings and pongs included)
    control_rate: float | None = None
    ack_timeout: float = 10.0
    #: how often a symbol-stream connection checks LIST_SUBSCRIPTIONS against what it expects
    audit_interval: float = 300.0
    max_params: int = 100  # streams per SUBSCRIBE message
    #: a stream the exchange refused is tried again after this long (a refusal may be passing:
    #: a limit, an overloaded server), one request per refused stream each time
    refused_retry: float = 600.0
    #: decoded frames held for the engine before conflating (per symbol: the newest ticker and the
    #: ones of the lowest and highest price)
    queue: int = 32
    max_frame_bytes: int = 8 * 1024 * 1024
    symbols_refresh: float = 3600.0
    rest_timeout: float = 10.0
    #: /price of a symbol the engine has no ticker of asks Binance's 24h ticker over REST: the
    #: user waits at most this long for it (a free lookup included), ...
    price_timeout: float = 3.0
    #: ... its answer (or failure) serves the same symbol this long (a user sending /price over
    #: and over asks Binance once), and this many lookups go at a time at most
    price_cache: float = 5.0
    price_lookups: int = 4

    def __post_init__(self) -> None:
        self._check_message_budget()

    def _check_message_budget(self) -> None:
        """Refuse keepalive pings or live requests that could take a connection over the
        market's incoming-message limit (pings and pongs count; over it the exchange closes
        the connection with 1008 and bans an IP that does so repeatedly). In any second a
        connection sends: its requests (a catch-up's request keeps to their pace, see
        Connection._reserve), one more that arrival jitter brings in, its pings (one for an
        interval of a second or more, ``ceil(1 / interval)`` below), one pong to the
        exchange's ping, and its close frame."""
        market = self.market
        interval = self.ping_interval
        if interval is not None and not interval > 0:
            raise ConfigError(
                f"ping_interval: must be positive (or None: no pings), got {interval}"
            )
        rate = self.request_rate
        if not rate > 0:
            raise ConfigError(f"control_rate: must be positive, got {rate}")
        pings = 0 if interval is None else math.ceil(1 / interval)
        requests = math.ceil(rate)
        if requests + 1 + pings + 1 + 1 <= market.max_incoming:
            return
        room = market.max_incoming - requests - 3
        if room < 1 or pings <= 1:
            allowed = market.max_incoming - 3 - min(pings, 1)
            raise ConfigError(
                f"control_rate: {rate:g} requests a second are over what {market.name} allows "
                f"within its {market.max_incoming} incoming messages a second, pings, a pong, "
                f"our close frame and jitter included: at most {allowed}"
            )
        noun = "request" if requests == 1 else "requests"
        raise ConfigError(
            f"ping_interval: pings every {interval:g}s are {pings} a second, over what "
            f"{market.name} leaves for them within its {market.max_incoming} incoming messages a "
            f"second ({requests} {noun}, one more for jitter, a pong and our close frame): at "
            f"least {math.ceil(1000 / room) / 1000:g}s"
        )

    @property
    def ws_url(self) -> str:
        return self.ws_root or self.market.ws_root

    @property
    def rest_url(self) -> str:
        return self.rest_root or self.market.rest_root

    @property
    def request_rate(self) -> float:
        """Live requests per second and connection."""
        return self.market.request_rate if self.control_rate is None else self.control_rate

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FeedSettings:
        """Settings from ``ALERTBOT_*`` variables; raises ConfigError naming a bad one."""
        e = os.environ if env is None else env
        market = MARKETS[env_choice(e, "ALERTBOT_MARKET", "usdm", tuple(MARKETS))]
        return cls(
            market=market,
            ws_root=env_url(e, "ALERTBOT_BINANCE_WS_URL", "", ("ws", "wss")),
            rest_root=env_url(e, "ALERTBOT_BINANCE_REST_URL", "", ("http", "https")),
            stream=env_choice(e, "ALERTBOT_FEED_STREAM", "auto", STREAM_MODES),
            auto_threshold=env_int(e, "ALERTBOT_FEED_AUTO_THRESHOLD", 50, minimum=1),
            max_streams=env_int(e, "ALERTBOT_FEED_MAX_STREAMS", 200, minimum=1),
            stale_after=env_seconds(e, "ALERTBOT_FEED_STALE_AFTER", 15.0, minimum=0.01),
            symbol_stale_after=env_seconds(
                e, "ALERTBOT_FEED_SYMBOL_STALE_AFTER", 90.0, minimum=0.01
            ),
            max_age=env_seconds(e, "ALERTBOT_FEED_MAX_AGE", 23.5 * 3600, minimum=0.01),
            backoff_max=env_seconds(e, "ALERTBOT_FEED_BACKOFF_MAX", 30.0, minimum=0.01),
            queue=env_int(e, "ALERTBOT_FEED_QUEUE", 32, minimum=1),
        )
