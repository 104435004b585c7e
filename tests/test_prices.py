"""/price's REST lookup (alertbot/feed/prices.py) against the fake Binance on loopback: each
market's answer, the cache, the bound on lookups at once, and every failure as a short reason."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import pytest

from alertbot.feed.market import MARKETS
from alertbot.feed.prices import Failed, PriceLookup
from alertbot.feed.settings import FeedSettings
from alertbot.ticker import Ticker
from tests.fakes.binance import FakeBinance, mini_ticker

T = 1_772_000_000_000
SOL = mini_ticker("SOLUSDT", "150.50", T, open="140", high="155", low="139.5", volume=10)


def lookup(fake: FakeBinance, clock: list[float] | None = None, **settings: object) -> PriceLookup:
    feed = dataclasses.replace(
        FeedSettings(market=MARKETS[fake.market], rest_root=fake.rest_url), **settings
    )
    now = clock if clock is not None else [0.0]
    return PriceLookup(feed, clock=lambda: now[0])


@pytest.mark.parametrize("market", ["usdm", "coinm", "spot"])
async def test_each_market_answers_the_symbols_24h_ticker(market):
    """USD-M and spot answer an object, COIN-M a list; all read as the mini ticker would be
    (COIN-M's quote volume is its baseVolume, as its mini ticker's q)."""
    async with FakeBinance(market=market, symbols=["SOLUSDT"]) as fake:
        await fake.publish([SOL])
        got = await lookup(fake).get("SOLUSDT")
    assert got == Ticker("SOLUSDT", T, 150.5, 140.0, 155.0, 139.5, 10.0, 1505.0, "150.50")


async def test_a_symbol_named_in_chinese_is_asked_for_and_answered():
    """Binance lists contracts named in Chinese: the name goes percent-encoded as UTF-8."""
    async with FakeBinance(symbols=["币安人生USDT"]) as fake:
        await fake.publish([mini_ticker("币安人生USDT", "0.1234", T)])
        got = await lookup(fake).get("币安人生USDT")
    assert isinstance(got, Ticker)
    assert (got.symbol, got.price_text) == ("币安人生USDT", "0.1234")


async def test_an_answer_serves_the_same_symbol_until_the_cache_time_is_over():
    """A user sending /price over and over asks Binance once per cache time."""
    clock = [100.0]
    async with FakeBinance(symbols=["SOLUSDT"]) as fake:
        await fake.publish([SOL])
        prices = lookup(fake, clock, price_cache=5.0)
        for _ in range(5):
            assert isinstance(await prices.get("SOLUSDT"), Ticker)
        clock[0] += 4.9
        await prices.get("SOLUSDT")
        assert fake.stats.ticker_requests == ["SOLUSDT"]
        clock[0] += 0.1
        await prices.get("SOLUSDT")
        assert fake.stats.ticker_requests == ["SOLUSDT", "SOLUSDT"]


async def test_a_failure_is_kept_as_long_as_an_answer():
    """A failing Binance is not asked again at every /price either."""
    async with FakeBinance(symbols=["SOLUSDT"]) as fake:
        fake.fail_ticker(status=503)
        prices = lookup(fake)
        first = await prices.get("SOLUSDT")
        fake.fail_ticker(False)
        assert await prices.get("SOLUSDT") == first
        assert fake.stats.ticker_requests == ["SOLUSDT"]


async def test_the_same_symbol_asked_while_its_lookup_is_under_way_waits_for_it():
    async with FakeBinance(symbols=["SOLUSDT"]) as fake:
        await fake.publish([SOL])
        prices = lookup(fake)
        fake.hold_ticker()
        asks = [asyncio.create_task(prices.get("SOLUSDT")) for _ in range(5)]
        await fake.wait_for(lambda: fake.stats.ticker_requests == ["SOLUSDT"])
        fake.hold_ticker(False)
        got = await asyncio.gather(*asks)
    assert all(isinstance(g, Ticker) for g in got)
    assert fake.stats.ticker_requests == ["SOLUSDT"]


async def test_lookups_at_once_are_bounded():
    """Twenty symbols asked together: at most ``price_lookups`` requests reach Binance at a
    time, and every one is answered."""
    symbols = [f"C{i}USDT" for i in range(20)]
    async with FakeBinance(symbols=symbols) as fake:
        prices = lookup(fake, price_lookups=3)
        fake.hold_ticker()
        asks = [asyncio.create_task(prices.get(s)) for s in symbols]
        await fake.wait_for(lambda: len(fake.stats.ticker_requests) >= 3)
        for _ in range(100):  # room for a fourth to arrive, were it let through
            await asyncio.sleep(0)
        fake.hold_ticker(False)
        got = await asyncio.gather(*asks)
    assert fake.stats.tickers_held_max == 3
    assert all(isinstance(g, Ticker) for g in got)
    assert sorted(s for s in fake.stats.ticker_requests if s) == sorted(symbols)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("unknown", "Binance answered 400 (-1121: Invalid symbol.)"),
        ("5xx", "Binance answered 502 (-1000: An unknown error occurred while processing the"),
        ("html", "Binance answered 502"),
        ("malformed", "Binance's answer was not a ticker"),
        ("not a ticker", "Binance's answer was not a ticker"),
        ("timeout", "no answer in time"),
    ],
)
async def test_a_failure_is_a_short_reason_and_the_body_is_never_logged(fault, reason, caplog):
    caplog.set_level(logging.INFO, logger="alertbot.feed")
    async with FakeBinance(symbols=["SOLUSDT"]) as fake:
        await fake.publish([SOL])
        symbol = "NOPEUSDT" if fault == "unknown" else "SOLUSDT"
        if fault == "5xx":
            fake.fail_ticker(status=502)
        elif fault == "html":
            fake.answer_ticker(b"<html>" + b"x" * 10_000 + b"</html>", status=502)
        elif fault == "malformed":
            fake.answer_ticker(b'{"symbol": "SOLUSDT", "lastPrice": ' + b"x" * 10_000)
        elif fault == "not a ticker":
            fake.answer_ticker(b'{"symbol": "SOLUSDT", "lastPrice": "abc", "closeTime": 1}')
        elif fault == "timeout":
            fake.hold_ticker()
        # a short timeout only where it is the fault: on a busy machine 0.2 s can pass
        # before a quick answer is read
        got = await lookup(fake, price_timeout=0.2 if fault == "timeout" else 5.0).get(symbol)
        fake.hold_ticker(False)
    assert isinstance(got, Failed)
    assert got.reason.startswith(f"Asking Binance for it failed: {reason}")
    assert len(got.reason) < 200
    assert "xxxxxxxxxx" not in caplog.text
    assert f"cannot fetch {symbol}'s 24h ticker" in caplog.text


async def test_an_unreachable_binance_is_a_short_reason():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feed = FeedSettings(rest_root=f"http://127.0.0.1:{port}", price_timeout=2.0)
    got = await PriceLookup(feed).get("SOLUSDT")
    assert got == Failed("Asking Binance for it failed: cannot reach Binance (ConnectError).")
