"""The feed's pure parts: market URLs, stream names, settings, backoff, the conflating hand-off."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import orjson
import pytest

from alertbot.errors import ConfigError
from alertbot.feed.client import Feed
from alertbot.feed.connection import Backoff, Connection, FeedStats, Outage, _Session
from alertbot.feed.handoff import Handoff
from alertbot.feed.market import (
    ALL_MARKET,
    MARKETS,
    nameable,
    normalise_stream,
    stream_symbol,
    symbol_stream,
)
from alertbot.feed.settings import FeedSettings
from alertbot.feed.symbols import suggest, tradable
from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.model import Rule
from alertbot.settings import parse_seconds
from alertbot.ticker import ParseStats
from tests.fakes.binance import mini_ticker


def el(symbol: str, time: int, close: str = "1") -> dict[str, object]:
    """A ticker whose only moving metric is its price (high and low follow it)."""
    return {
        "e": "24hrMiniTicker",
        "E": time,
        "s": symbol,
        **{"c": close, "o": close, "h": close, "l": close, "v": "1", "q": "1"},
    }


# ---------------------------------------------------------------- URLs and streams


def test_usdm_urls_use_the_market_path_routing():
    """DESIGN.md: since 2026 USD-M mini tickers live under /market; bare /ws stays silent."""
    usdm = MARKETS["usdm"]
    root = usdm.ws_root
    assert root == "wss://fstream.binance.com"
    assert usdm.raw_url(root, ALL_MARKET) == "wss://fstream.binance.com/market/ws/!miniTicker@arr"
    assert (
        usdm.combined_url(root, ["btcusdt@miniTicker", "ethusdt@miniTicker"])
        == "wss://fstream.binance.com/market/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker"
    )
    assert usdm.exchange_info_url(usdm.rest_root) == "https://fapi.binance.com/fapi/v1/exchangeInfo"


@pytest.mark.parametrize(
    ("name", "raw", "info"),
    [
        (
            "testnet",
            "wss://fstream.binancefuture.com/market/ws/!miniTicker@arr",
            "https://testnet.binancefuture.com/fapi/v1/exchangeInfo",
        ),
        (
            "coinm",
            "wss://dstream.binance.com/ws/!miniTicker@arr",
            "https://dapi.binance.com/dapi/v1/exchangeInfo",
        ),
        (
            "spot",
            "wss://stream.binance.com:9443/ws/!miniTicker@arr",
            "https://api.binance.com/api/v3/exchangeInfo",
        ),
    ],
)
def test_market_presets_have_their_own_roots_and_paths(name: str, raw: str, info: str):
    market = MARKETS[name]
    assert market.raw_url(market.ws_root, ALL_MARKET) == raw
    assert market.exchange_info_url(market.rest_root) == info


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_each_markets_request_budget_leaves_room_for_a_ping_a_pong_a_close_and_jitter(name: str):
    """Pings and pongs count toward the exchange's incoming-message limit (5 a second on spot,
    10 on futures), and so may our close frame, which can follow a request at once: a
    second's requests, plus one that jitter brings in, plus our keepalive ping, our pong to the
    exchange's ping and our close frame stay within it."""
    market = MARKETS[name]
    assert math.ceil(market.request_rate) + 1 + 2 + 1 <= market.max_incoming
    assert (MARKETS["spot"].max_incoming, MARKETS["usdm"].max_incoming) == (5, 10)


def test_live_requests_are_paced_by_the_market_unless_a_rate_is_set():
    assert FeedSettings(market=MARKETS["spot"]).request_rate == 1.0
    assert FeedSettings(market=MARKETS["usdm"]).request_rate == 4.0
    assert FeedSettings(market=MARKETS["usdm"], control_rate=2.0).request_rate == 2.0


def test_the_futures_markets_link_a_symbols_chart_page():
    """USD-M (and its testnet) name a symbol's chart page by the symbol alone, linked under a
    watch's alerts; a name beyond ASCII percent-encoded. COIN-M's and spot's pages are named
    otherwise (a delivery contract, a base and quote apart): no link."""
    assert MARKETS["usdm"].chart_url("BTCUSDT") == "https://www.binance.com/en/futures/BTCUSDT"
    assert MARKETS["testnet"].chart_url("ETHUSDT") == (
        "https://testnet.binancefuture.com/en/futures/ETHUSDT"
    )
    assert MARKETS["usdm"].chart_url("币安人生USDT") == (
        "https://www.binance.com/en/futures/%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9FUSDT"
    )
    assert MARKETS["coinm"].chart_url("BTCUSD_PERP") is None
    assert MARKETS["spot"].chart_url("BTCUSDT") is None


def test_a_configured_root_replaces_the_host_and_keeps_the_path_shape():
    usdm = MARKETS["usdm"]
    assert usdm.raw_url("ws://127.0.0.1:9/", "btcusdt@miniTicker") == (
        "ws://127.0.0.1:9/market/ws/btcusdt@miniTicker"
    )


def test_symbol_streams_are_lower_case_and_map_back():
    assert symbol_stream("BTCUSDT") == "btcusdt@miniTicker"
    assert stream_symbol("btcusdt@miniTicker") == "BTCUSDT"
    assert stream_symbol(ALL_MARKET) is None


def test_a_symbol_named_in_chinese_has_a_stream_name_sent_percent_encoded():
    """Binance names the stream of 币安人生USDT with only its ASCII letters lowered, and the
    combined URL carries it percent-encoded as UTF-8 (the form other clients checked against
    Binance); ASCII names go as they are."""
    assert symbol_stream("币安人生USDT") == "币安人生usdt@miniTicker"
    assert stream_symbol("币安人生usdt@miniTicker") == "币安人生USDT"
    assert nameable("币安人生USDT")
    url = MARKETS["usdm"].combined_url("wss://x", ["btcusdt@miniTicker", "币安人生usdt@miniTicker"])
    assert url == (
        "wss://x/market/stream?streams=btcusdt@miniTicker/"
        "%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@miniTicker"
    )


@pytest.mark.parametrize("symbol", ["ÉUSDT", "BTC-USDT", "BTC USDT", "🚀USDT", ""])
def test_a_symbol_no_stream_can_name_is_not_nameable(symbol: str):
    assert not nameable(symbol)


@pytest.mark.parametrize(
    ("text", "stream"),
    [
        ("BTCUSDT", "btcusdt@miniTicker"),
        ("btcusdt@miniTicker", "btcusdt@miniTicker"),
        ("ETHUSDT@miniTicker", "ethusdt@miniTicker"),
        ("btcusdt@miniticker", "btcusdt@miniTicker"),  # the exchange would refuse this spelling
        ("BTCUSDT_251226", "btcusdt_251226@miniTicker"),  # a dated contract
        ("币安人生usdt", "币安人生usdt@miniTicker"),
        ("币安人生USDT@miniticker", "币安人生usdt@miniTicker"),
        ("!miniTicker@arr", ALL_MARKET),
        ("!MINITICKER@ARR", ALL_MARKET),
    ],
)
def test_record_accepts_symbols_and_stream_names(text: str, stream: str):
    assert normalise_stream(text) == stream


@pytest.mark.parametrize("text", ["", "btc usdt", "a/b@miniTicker", "x@"])
def test_a_stream_name_that_cannot_be_one_is_refused(text: str):
    with pytest.raises(ValueError, match="not a mini-ticker stream"):
        normalise_stream(text)


@pytest.mark.parametrize(
    "text",
    [
        "btcusdt@kline_1m",
        "btcusdt@aggTrade",
        "btcusdt@ticker",
        "btcusdt@bookTicker",
        "!ticker@arr",
        "!miniTicker@arr@3000ms",
        "btcusdt@miniTicker@arr",
        "@miniTicker",
    ],
)
def test_only_mini_ticker_streams_are_accepted_and_the_error_names_the_accepted_forms(text: str):
    """The engine and ``replay`` read mini tickers only: another stream would be recorded (or
    refused by the exchange) for nothing."""
    message = (
        f"not a mini-ticker stream: {text!r} (accepted: a symbol such as BTCUSDT, "
        "<symbol>@miniTicker such as btcusdt@miniTicker, or !miniTicker@arr)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        normalise_stream(text)


# ---------------------------------------------------------------- settings


def test_settings_default_to_the_real_usdm_service():
    s = FeedSettings.from_env({})
    assert (s.ws_url, s.rest_url) == ("wss://fstream.binance.com", "https://fapi.binance.com")
    assert (s.stream, s.auto_threshold, s.max_streams) == ("auto", 50, 200)
    assert (s.stale_after, s.max_age) == (15.0, 23.5 * 3600)


def test_settings_from_the_environment():
    s = FeedSettings.from_env(
        {
            "ALERTBOT_MARKET": "spot",
            "ALERTBOT_BINANCE_WS_URL": "ws://127.0.0.1:8765/",
            "ALERTBOT_BINANCE_REST_URL": "http://127.0.0.1:8766",
            "ALERTBOT_FEED_STREAM": "symbols",
            "ALERTBOT_FEED_STALE_AFTER": "500ms",
            "ALERTBOT_FEED_MAX_AGE": "23h30m",
            "ALERTBOT_FEED_MAX_STREAMS": "1024",
        }
    )
    assert s.market.name == "spot"
    assert s.ws_url == "ws://127.0.0.1:8765"
    assert s.rest_url == "http://127.0.0.1:8766"
    assert (s.stream, s.stale_after, s.max_age, s.max_streams) == ("symbols", 0.5, 84600.0, 1024)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALERTBOT_FEED_STALE_AFTER", "soon", "ALERTBOT_FEED_STALE_AFTER: expected a duration"),
        ("ALERTBOT_FEED_STALE_AFTER", "0", "ALERTBOT_FEED_STALE_AFTER: must be at least"),
        ("ALERTBOT_FEED_STREAM", "some", "ALERTBOT_FEED_STREAM: expected one of auto, all"),
        ("ALERTBOT_MARKET", "margin", "ALERTBOT_MARKET: expected one of usdm"),
        ("ALERTBOT_BINANCE_WS_URL", "fstream.binance.com", "expected a URL starting with ws://"),
        ("ALERTBOT_FEED_MAX_STREAMS", "many", "ALERTBOT_FEED_MAX_STREAMS: expected a whole"),
        ("ALERTBOT_FEED_MAX_STREAMS", "0", "ALERTBOT_FEED_MAX_STREAMS: must be at least 1"),
    ],
)
def test_a_bad_setting_names_the_variable(name: str, value: str, message: str):
    with pytest.raises(ConfigError, match=message):
        FeedSettings.from_env({name: value})


@pytest.mark.parametrize(
    ("market", "ping_interval", "control_rate"),
    [
        # requests, jitter, pings, a pong, the close frame
        ("spot", 0.5, None),  # 2 pings a second: 1 + 1 + 2 + 1 + 1 > 5
        ("spot", 0.99, None),
        ("usdm", 0.25, None),  # 4 pings a second: 4 + 1 + 4 + 1 + 1 > 10
        ("spot", 20.0, 2.0),  # 2 requests a second: 2 + 1 + 1 + 1 + 1 > 5
    ],
)
def test_keepalive_pings_or_requests_over_the_markets_message_limit_are_refused(
    market: str, ping_interval: float, control_rate: float | None
):
    """Pings count toward the exchange's incoming-message limit: pings more often than once a
    second (or more requests a second) than the market's limit leaves room for are refused
    when the settings are made, with a message saying why, rather than being closed with 1008
    (and risking a ban) once running."""
    with pytest.raises(ConfigError, match=r"ping_interval|control_rate") as refused:
        FeedSettings(market=MARKETS[market], ping_interval=ping_interval, control_rate=control_rate)
    assert "incoming messages a second" in str(refused.value)


@pytest.mark.parametrize(
    ("market", "ping_interval"),
    [("spot", 1.0), ("spot", None), ("usdm", 0.34), ("usdm", 20.0), ("coinm", 0.34)],
)
def test_keepalive_pings_within_the_markets_message_limit_are_accepted(
    market: str, ping_interval: float | None
):
    s = FeedSettings(market=MARKETS[market], ping_interval=ping_interval)
    assert s.ping_interval == ping_interval


def test_a_ping_interval_of_zero_is_refused():
    with pytest.raises(ConfigError, match="ping_interval: must be positive"):
        FeedSettings(ping_interval=0.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15", 15.0), ("15s", 15.0), ("500ms", 0.5), ("2m", 120.0), ("1h 30m", 5400.0), ("1d", 86400)],
)
def test_durations_in_settings(text: str, seconds: float):
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15x", "-1", "1h-30m", "nan", "inf"])
def test_a_bad_duration_is_refused(text: str):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_seconds(text)


# ---------------------------------------------------------------- backoff


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    low = Backoff(1.0, 8.0, 2.0, rng=lambda: 0.0)
    high = Backoff(1.0, 8.0, 2.0, rng=lambda: 1.0)
    assert [low.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_reset_starts_over():
    b = Backoff(1.0, 8.0, 2.0, rng=lambda: 1.0)
    for _ in range(5):
        b.next()
    b.reset()
    assert b.next() == 1.0


# ---------------------------------------------------------------- hand-off


async def test_handoff_passes_messages_through_in_order_while_it_keeps_up():
    h = Handoff(capacity=4)
    h.put([el("A", 1)])
    h.put({"stream": "b@miniTicker", "data": el("B", 1)})
    assert await h.get() == [[el("A", 1)], {"stream": "b@miniTicker", "data": el("B", 1)}]
    assert (h.conflations, h.dropped) == (0, 0)


async def test_handoff_conflates_to_the_newest_ticker_per_symbol_when_full():
    """A slow engine gets the latest state, not a growing backlog: per symbol the newest
    ticker, with its lowest and highest price when those came earlier; a tick older than one
    already taken is dropped, as the engine would drop it."""
    h = Handoff(capacity=3)
    h.put([el("A", 1, "1"), el("B", 1, "5")])
    h.put({"stream": "a@miniTicker", "data": el("A", 3, "3")})
    h.put([el("A", 2, "2"), el("C", 2, "2")])  # A at 2 arrives late: older than A at 3
    h.put([el("B", 4, "4"), el("B", 5, "4.5")])  # the fourth message: over capacity
    assert len(h) == 1
    (merged,) = await h.get()
    assert [(e["s"], e["E"], e["c"]) for e in merged] == [
        ("A", 1, "1"),  # A's lowest
        ("A", 3, "3"),  # A's highest and newest
        ("B", 1, "5"),  # B's highest
        ("B", 4, "4"),  # B's lowest
        ("B", 5, "4.5"),  # B's newest
        ("C", 2, "2"),
    ]
    assert (h.conflations, h.dropped) == (1, 1)


async def test_handoff_conflation_keeps_a_level_crossed_and_crossed_back():
    """Never miss a level: after 90, the ticks 110, 95, 105, 92 conflated into one message still
    cross 100 up (at the highest) and down (at the newest, also the lowest) in the engine; the
    newest alone would cross nothing. The second round trip is not kept."""
    engine = Engine([Rule(id="x", condition=parse("price crosses 100"), symbols=("BTCUSDT",))])
    stats = ParseStats()
    engine.process_message([mini_ticker("BTCUSDT", 90, 1)], stats)
    h = Handoff(capacity=1)
    for time, price in ((2, 110), (3, 95), (4, 105), (5, 92)):
        h.put([mini_ticker("BTCUSDT", price, time, open=100, high=120, low=80)])
    assert len(h) == 1
    alerts = [a for m in await h.get() for a in engine.process_message(m, stats)]
    assert [(a.ticker.time, a.direction) for a in alerts] == [(2, "up"), (5, "down")]


async def test_handoff_conflation_keeps_the_first_of_ticks_with_the_same_event_time():
    """The engine takes the first tick of an event time and drops the next; so does the
    conflation, so that conflated and tick-by-tick evaluation agree."""
    h = Handoff(capacity=1)
    h.put([el("A", 7, "1")])
    h.put([el("A", 7, "2")])
    (merged,) = await h.get()
    assert merged == [el("A", 7, "1")]


async def test_handoff_queues_a_burst_of_held_frames_as_they_are():
    """Frames the feed held back and hands on at once (a rotation's or a switch's new socket)
    are not conflated with each other: the engine was not behind. Conflated, a price going up
    and down across a level in them would be alerted once, not every time."""
    h = Handoff(capacity=2)
    with h.burst():
        for time in range(1, 7):
            h.put([el("A", time, "110" if time % 2 else "90")])
    assert len(h) == 6
    assert [m[0]["E"] for m in await h.get()] == [1, 2, 3, 4, 5, 6]
    assert (h.conflations, h.dropped) == (0, 0)


async def test_handoff_conflates_a_burst_once_the_engine_falls_behind_it():
    """A burst only widens the bound until the engine next takes what waits: a frame after it
    waits in the burst's room, and one beyond that room conflates everything waiting, the burst
    too (memory stays bounded); after the engine takes them the bound is ``capacity`` again."""
    h = Handoff(capacity=2)
    with h.burst():
        for time in range(1, 4):
            h.put([el("A", time)])
    h.put([el("A", 4)])
    h.put([el("A", 5)])  # 2 + 3 waiting: room for this one, not for another
    assert (len(h), h.conflations) == (5, 0)
    h.put([el("A", 6)])
    assert (len(h), h.conflations) == (1, 1)
    await h.get()
    h.put([el("A", 7)])
    h.put([el("A", 8)])
    h.put([el("A", 9)])
    assert (len(h), h.conflations) == (1, 2)


async def test_handoff_stays_bounded_however_far_behind_the_engine_is():
    h = Handoff(capacity=8)
    for time in range(1, 10_001):
        h.put([el(f"S{i}", time) for i in range(20)])
        assert len(h) <= 8
    items = await h.get()
    # the conflated message at most three tickers a symbol, the seven after it as they came
    assert sum(len(i) if isinstance(i, list) else 1 for i in items) <= 3 * 20 + 7 * 20
    assert max(e["E"] for i in items for e in i) == 10_000


async def test_handoff_passes_frame_bytes_and_decodes_them_only_to_conflate():
    """Frames the feed left undecoded stay bytes until a conflation needs their tickers; one
    that is not JSON then is reported to ``invalid`` and dropped."""
    bad: list[bytes] = []
    h = Handoff(capacity=2, invalid=bad.append)
    frame = orjson.dumps([el("A", 1, "1"), el("B", 1, "1")])
    h.put(frame)
    assert await h.get() == [frame]
    h.put(frame)
    h.put(b'[{"e":"24hrMiniTicker","E":2')  # cut short
    h.put(orjson.dumps({"stream": "a@miniTicker", "data": el("A", 3, "3")}))
    (merged,) = await h.get()
    assert sorted((e["s"], e["E"], e["c"]) for e in merged) == [
        ("A", 1, "1"),
        ("A", 3, "3"),
        ("B", 1, "1"),
    ]
    assert bad == [b'[{"e":"24hrMiniTicker","E":2']
    assert (h.conflations, h.dropped) == (1, 0)


async def test_handoff_conflation_keeps_the_markets_own_tick_over_another_markets():
    """A symbol named alike in both markets (the merged feed): the other market's newer
    element is left for the engine to count, and does not replace the market's own."""
    h = Handoff(capacity=1, market_st=2)
    own, other = {**el("X_PERP", 2, "110"), "st": 2}, {**el("X_PERP", 3, "95"), "st": 1}
    first = {**el("X_PERP", 1, "90"), "st": 2}
    h.put([first])
    h.put([own, other])
    (merged,) = await h.get()
    assert merged == [other, first, own]  # the other market's 95 is not the market's lowest


async def test_handoff_keeps_malformed_elements_for_the_engine_to_count():
    h = Handoff(capacity=1)
    h.put(["junk"])
    h.put([{"s": "A"}, el("A", 1)])
    (merged,) = await h.get()
    assert merged == ["junk", {"s": "A"}, el("A", 1)]


# ---------------------------------------------------------------- outages and symbols


def test_an_outage_covers_an_alert_whose_previous_tick_came_before_it():
    o = Outage(frozenset({"BTCUSDT"}), last_event=1000, duration=30.0)
    assert o.covers("BTCUSDT", 900, 5000)
    assert o.covers("BTCUSDT", 1000, 5000)
    assert not o.covers("BTCUSDT", 1001, 5000)  # the previous tick is after the outage
    assert not o.covers("BTCUSDT", -1, 5000)  # no previous tick: nothing was compared
    assert not o.covers("ETHUSDT", 900, 5000)  # another connection's symbol
    assert Outage(None, 1000, 30.0).covers("ETHUSDT", 900, 5000)  # all-market: every symbol


LISTED = frozenset(
    [
        "BTCUSDT",
        "ETHUSDT",
        "SOLUSDT",
        "SUSHIUSDT",
        "PEOPLEUSDT",
        "TONUSDT",
        "FLOWUSDT",
        "BTCUSDC",
        "1000SHIBUSDT",
        "1000PEPEUSDT",
        "1000BONKUSDT",
        "1000FLOKIUSDT",
        "1MBABYDOGEUSDT",
        "1000000MOGUSDT",
    ]
)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        # a coin Binance trades by the thousand: the contract, not the closest spelling
        ("PEPEUSDT", "1000PEPEUSDT"),  # not PEOPLEUSDT
        ("SHIBUSDT", "1000SHIBUSDT"),  # not SUSHIUSDT
        ("BONKUSDT", "1000BONKUSDT"),  # not TONUSDT
        ("FLOKIUSDT", "1000FLOKIUSDT"),  # not FLOWUSDT
        ("BABYDOGEUSDT", "1MBABYDOGEUSDT"),
        ("MOGUSDT", "1000000MOGUSDT"),
        ("1000000PEPEUSDT", "1000PEPEUSDT"),  # the wrong multiplier
        ("1000BTCUSDT", "BTCUSDT"),  # one where there is none
        # a coin's name alone: its USDT contract
        ("BTC", "BTCUSDT"),
        ("PEPE", "1000PEPEUSDT"),
        # a typo: the closest spelling
        ("BTCUSDX", "BTCUSDT"),
        ("SOLUSDR", "SOLUSDT"),
        ("XYZ", None),
    ],
)
def test_did_you_mean_names_the_contract_meant(typed: str, meant: str | None) -> None:
    assert suggest(typed, LISTED) == meant


def test_tradable_symbols_from_exchange_info():
    info = {
        "symbols": [
            {"symbol": "BTCUSDT", "status": "TRADING"},
            {"symbol": "OLDUSDT", "status": "SETTLING"},
            {"symbol": "BTCUSD_PERP", "contractStatus": "TRADING"},  # COIN-M's key
            "junk",
        ]
    }
    assert tradable(info) == {"BTCUSDT", "BTCUSD_PERP"}
    with pytest.raises(ValueError, match="symbols"):
        tradable({"code": -1121})


def connection(streams: list[str], *, raw: bool = False, **hooks: Any) -> Connection:
    """A connection with default settings, not started (it has no socket): tests hand it
    frames as its reader would (``_deliver``). ``hooks``: its sink and callbacks."""
    return Connection(
        1, streams, raw=raw, settings=FeedSettings(), stats=FeedStats(lambda: 0.0), **hooks
    )


# ---------------------------------------------------------------- a switch's held frames


async def test_a_newer_held_tick_of_one_symbol_does_not_keep_an_older_one_of_another_back():
    """During a switch a new symbol connection holds what it delivers until the old ones
    have passed it. Each of its frames is one symbol's tick, in order per symbol but not
    across symbols: a frame of event time 1500 about to go from an old connection takes
    ahead of it every held tick older than it (ETHUSDT at 1000), also one that arrived behind
    a newer tick of another symbol (BTCUSDT at 2000), which stays held. Kept back, the older
    one made that frame wait (holds_before) for as long as the hold lasted (soak seed 2301).
    The frames are handed to the connection as its reader would (_deliver)."""
    sunk: list[tuple[str, int]] = []
    conn = connection(
        ["btcusdt@miniTicker", "ethusdt@miniTicker"],
        sink=lambda obj, raw: sunk.append((obj["s"], obj["E"])),
    )
    conn.hold()
    for symbol, time in (("BTCUSDT", 2000), ("ETHUSDT", 1000), ("BTCUSDT", 2500)):
        conn._deliver(time, el(symbol, time), b"")
    conn.release_before(1500)
    assert sunk == [("ETHUSDT", 1000)]
    assert not conn.holds_before(1500)  # the frame about to go need not wait
    assert conn.holds_before(2100)
    await conn.close()


async def test_held_ticks_released_together_go_by_event_time_each_after_older_kept_back():
    """Held ticks released together ahead of another connection's frame (or for having been
    held ``drain_timeout``) go outside the merge: before each, the feed hands on what other
    connections keep back that is older (``on_ahead``, soak seed 5630). A symbol
    connection's go by event time, not in the order they came (a newer BTCUSDT tick first
    would let an older frame kept back go only after it), each symbol's in order."""
    events: list[tuple[str, int]] = []
    conn = connection(
        ["btcusdt@miniTicker", "ethusdt@miniTicker"],
        sink=lambda obj, raw: events.append((obj["s"], obj["E"])),
        on_ahead=lambda c, event: events.append(("ahead", event)),
    )
    conn.hold()
    for symbol, time in (("BTCUSDT", 2000), ("ETHUSDT", 1000), ("BTCUSDT", 2100)):
        conn._deliver(time, el(symbol, time), b"")
    conn.release_before(3000)
    assert events == [
        ("ahead", 1000),
        ("ETHUSDT", 1000),
        ("ahead", 2000),
        ("BTCUSDT", 2000),
        ("ahead", 2100),
        ("BTCUSDT", 2100),
    ]
    await conn.close()


async def test_waiting_ticks_go_once_each_in_order_when_the_hand_on_nests():
    """Asking whether a waiting tick must wait can hand on ticks of the same line (held
    frames let go first take the older waiting ones with them, ``on_ahead``): each tick
    still goes exactly once, in order, and the line goes on from the tick now first (the
    answer about the one handed on meanwhile no longer stops it)."""
    sunk: list[int] = []
    conn = connection(
        ["btcusdt@miniTicker"],
        sink=lambda obj, raw: sunk.append(obj["E"]),
        on_deliver=lambda c, event: True,  # everything waits
    )
    for time in (1000, 2000, 3000):
        conn._deliver(time, el("BTCUSDT", time), b"")
    assert sunk == []
    nested = []

    def must_wait(event: int) -> bool:
        if event == 2000 and not nested:
            nested.append(conn.hand_on_waiting(lambda e: e > 2000))  # hands on 2000
            return True  # so it would wait: an answer about a tick already gone
        return False

    assert conn.hand_on_waiting(must_wait)
    assert nested == [True]
    assert sunk == [1000, 2000, 3000]
    assert not conn.waiting
    await conn.close()


async def test_the_all_market_connections_held_frames_go_in_the_order_they_came():
    """An all-market frame carries every symbol: held ones go only in the order they came,
    however their event times compare (a later frame's older first element does not go
    ahead of an earlier frame that is still held)."""
    sunk: list[int] = []
    conn = connection(
        [ALL_MARKET],
        raw=True,
        sink=lambda obj, raw: sunk.append(obj[0]["E"]),
    )
    conn.hold()
    for time in (2000, 1000):
        conn._deliver(time, [el("BTCUSDT", time), el("ETHUSDT", time)], b"")
    conn.release_before(1500)
    assert sunk == []
    conn.release_before(2100)
    assert sunk == [2000, 1000]
    await conn.close()


async def test_a_late_all_market_frame_held_behind_a_newer_one_keeps_no_older_frame_waiting():
    """Held all-market frames go only in the order they came: one older than another
    connection's frame, held behind one newer than it (a late duplicate), cannot go ahead of
    it, so that frame need not wait for it (it would wait until the newer one went, and then
    come behind it: soak seed 8184). A first frame older than it still makes it wait."""
    conn = connection(
        [ALL_MARKET],
        raw=True,
        sink=lambda obj, raw: None,
    )
    conn.hold()
    for time in (2000, 1000):
        conn._deliver(time, [el("BTCUSDT", time)], b"")
    assert not conn.holds_before(1500)
    assert conn.holds_before(2100)
    await conn.close()


async def test_a_symbol_connections_rotation_hands_on_every_held_tick_older_than_a_frame():
    """What a symbol connection's rotation holds (its new socket's ticks, while the old one
    is read to its end) goes ahead of another connection's frame as a switch's held ticks do:
    every tick older than it, also one that came behind a newer tick of another symbol, which
    stays held; and once none is older, the frame need not wait."""
    sunk: list[tuple[str, int]] = []
    conn = connection(
        ["btcusdt@miniTicker", "ethusdt@miniTicker"],
        sink=lambda obj, raw: sunk.append((obj["s"], obj["E"])),
    )
    rotating = _Session(None, conn.streams, 0.0, held=True)  # type: ignore[arg-type]
    conn._rotating = rotating
    for symbol, time in (("BTCUSDT", 2000), ("ETHUSDT", 1000)):
        assert rotating.held is not None
        rotating.held.append((time, el(symbol, time), b"", 0.0))
    assert conn.holds_before(1500)
    conn.release_rotating_before(1500)
    assert sunk == [("ETHUSDT", 1000)]
    assert not conn.holds_before(1500)
    assert conn.holds_before(2100)
    conn._rotating = None  # nothing to close: it has no socket


def socket(conn: Connection, opened_at: float, last_event: int, *, held: bool = False) -> _Session:
    """A socket of ``conn`` as its reader leaves it (open, delivered up to ``last_event``),
    with no network under it: tests set it as the current one or a rotation's new one."""
    s = _Session(None, conn.streams, opened_at, held=held)  # type: ignore[arg-type]
    s.reader = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    s.last_event = last_event
    return s


def part_of(feed: Feed, streams: list[str], *, raw: bool = False) -> Connection:
    """A connection of ``feed``, wired to its merge as its own are, not started (no socket)."""
    return feed._new(streams, raw=raw, start=False)


def rotation(conn: Connection, opened_at: float, *frames: tuple[int, Any]) -> _Session:
    """``conn``'s rotation under way: its new socket, open since ``opened_at``, holding
    ``frames`` (event time, frame), which arrived now."""
    now = asyncio.get_running_loop().time()
    s = conn._rotating = socket(conn, opened_at, max((e for e, _ in frames), default=-1), held=True)
    assert s.held is not None
    s.held.extend((event, obj, b"", now) for event, obj in frames)
    return s


def unplug(*conns: Connection) -> None:
    """Forget the sockets set by hand, so that closing touches no network."""
    for conn in conns:
        conn.session = None
        conn._rotating = None


def sunk_ticks(sunk: list[Any]) -> list[tuple[str, int]]:
    """Each frame handed on, as its (symbol, event time) pairs in order."""
    out = []
    for obj in sunk:
        for t in obj if isinstance(obj, list) else [obj]:
            out.append((t["s"], t["E"]))
    return out


async def test_a_rotations_held_ticks_handed_on_outside_the_merge_take_older_ones_ahead():
    """A rotation's new socket holds its ticks while the old one is read to its end; when
    its connection is closed meanwhile (a switch to symbol streams done: the all-market
    connection goes), what it held goes to the sink at once. Before each tick, what the
    other connections' rotations hold that is older goes first (``on_ahead``): the symbol
    connection's rotating socket may have the only copy of an older tick, which the engine
    would drop behind the newer one (soak seed 17961)."""
    sunk: list[Any] = []
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda obj, raw: sunk.append(obj))
    now = asyncio.get_running_loop().time()
    symbols = part_of(feed, ["btcusdt@miniTicker"])
    feed._combined = [symbols]
    symbols.session = socket(symbols, now - 2, 1000)
    rotation(symbols, now - 1, (2000, el("BTCUSDT", 2000)))
    all_market = part_of(feed, [ALL_MARKET], raw=True)
    rotation(all_market, now - 1, (2500, [el("BTCUSDT", 2500)]))
    await all_market.close()
    assert sunk_ticks(sunk) == [("BTCUSDT", 2000), ("BTCUSDT", 2500)]
    unplug(symbols)
    await symbols.close()


async def test_a_rotations_held_ticks_keep_another_symbols_connections_rotation_held():
    """A connection with other symbols keeps what its rotation holds when one rotation's
    ticks go: its old socket may still have older ticks of its own symbols on their way,
    which its new socket's would overtake."""
    sunk: list[Any] = []
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda obj, raw: sunk.append(obj))
    now = asyncio.get_running_loop().time()
    btc = part_of(feed, ["btcusdt@miniTicker"])
    eth = part_of(feed, ["ethusdt@miniTicker"])
    feed._combined = [btc, eth]
    for conn, symbol, time in ((btc, "BTCUSDT", 2000), (eth, "ETHUSDT", 1500)):
        conn.session = socket(conn, now - 2, 1000)
        rotation(conn, now - 1, (time, el(symbol, time)))
    btc._release_rotating()
    assert sunk_ticks(sunk) == [("BTCUSDT", 2000)]
    assert eth.holds_before(2000)  # still held
    unplug(btc, eth)
    await asyncio.gather(btc.close(), eth.close())


async def test_a_rotations_held_ticks_go_ahead_of_newer_ones_of_the_old_socket_kept_back():
    """The old socket's frames kept back (waiting behind a switch's held frames) may be
    newer than what the rotation's new socket held: released into that line, each held tick
    takes its place ahead of the newer ones, as it would have gone had it not been held.
    Put behind them, an all-market frame let go for the newer one would overtake it, and the
    engine would drop it (soak seed 18072)."""
    sunk: list[int] = []
    conn = connection(
        ["btcusdt@miniTicker", "ethusdt@miniTicker"],
        sink=lambda obj, raw: sunk.append(obj["E"]),
        on_deliver=lambda c, event: True,  # the old socket's frames wait
    )
    now = asyncio.get_running_loop().time()
    conn._deliver(3000, el("ETHUSDT", 3000), b"")
    rotation(
        conn,
        now,
        *((t, el(s, t)) for s, t in (("BTCUSDT", 1000), ("ETHUSDT", 2500), ("ETHUSDT", 3500))),
    )
    conn._release_rotating()
    assert sunk == []
    assert conn.hand_on_waiting(lambda event: False)
    assert sunk == [1000, 2500, 3000, 3500]
    unplug(conn)
    await conn.close()


async def test_a_switchs_held_frame_waits_for_a_lagging_rotation_of_an_old_connection():
    """A switch to the all-market stream holds its frames until the old connections have
    passed them. A rotation's new socket on an old connection counts as one of them: it may
    lag behind the old socket with an older tick the old socket no longer carries (the
    exchange dropped that subscription). A newer frame of the old socket waits, and the held
    all-market frame goes only once the rotation's ticks older than it have (soak seed
    18072)."""
    sunk: list[Any] = []
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda obj, raw: sunk.append(obj))
    now = asyncio.get_running_loop().time()
    symbols = part_of(feed, ["btcusdt@miniTicker", "ethusdt@miniTicker"])
    all_market = part_of(feed, [ALL_MARKET], raw=True)
    feed._combined, feed._raw = [symbols], all_market
    symbols.session = socket(symbols, now - 2, 1000)
    rotating = symbols._rotating = socket(symbols, now - 1, 1000, held=True)
    all_market.hold()
    all_market._deliver(2000, [el("BTCUSDT", 2000), el("ETHUSDT", 2000)], b"")
    symbols._deliver(2500, el("ETHUSDT", 2500), b"")  # from the old socket: it waits
    assert sunk == []
    # the new socket's lagging ticks arrive (held), and the rotation takes over
    assert rotating.held is not None
    for symbol, time in (("BTCUSDT", 1500), ("ETHUSDT", 2600)):
        rotating.held.append((time, el(symbol, time), b"", now))
        rotating.last_event = time
    symbols._rotating = None
    symbols.session = rotating
    symbols._release_all(rotating)
    assert sunk_ticks(sunk) == [
        ("BTCUSDT", 1500),
        ("BTCUSDT", 2000),
        ("ETHUSDT", 2000),
        ("ETHUSDT", 2500),
        ("ETHUSDT", 2600),
    ]
    unplug(symbols, all_market)
    await asyncio.gather(symbols.close(), all_market.close())


async def test_frames_kept_back_when_their_connection_closes_take_older_rotation_ticks_ahead():
    """A switch to the all-market stream done, the old symbol connections close and hand on
    the frames they kept back: outside the merge, each after what the all-market
    connection's rotation holds that is older (its new socket's ticks, while its old one is
    read to its end: they may be all there is of a tick), which the engine would otherwise
    drop behind them."""
    sunk: list[Any] = []
    feed = Feed(FeedSettings(ws_root="ws://127.0.0.1:9"), lambda obj, raw: sunk.append(obj))
    now = asyncio.get_running_loop().time()
    symbols = part_of(feed, ["btcusdt@miniTicker"])
    symbols.on_deliver = lambda c, event: True  # kept back, as behind a switch's held frame
    symbols._deliver(2000, el("BTCUSDT", 2000), b"")
    all_market = part_of(feed, [ALL_MARKET], raw=True)
    feed._raw = all_market
    all_market.session = socket(all_market, now - 2, 1000)
    rotation(all_market, now - 1, (1500, [el("BTCUSDT", 1500)]))
    await symbols.close()
    assert sunk_ticks(sunk) == [("BTCUSDT", 1500), ("BTCUSDT", 2000)]
    unplug(all_market)
    await all_market.close()
