"""The live feed against a local fake Binance: faults, recovery, subscriptions, switches.

Every fault test follows the issue's rule: after the fault the bot recovers, and the next
crossing after recovery is alerted exactly once. Times are shrunk through FeedSettings; no test
waits on a real exchange or on wall-clock minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest

from alertbot.app import Pipeline
from alertbot.feed.client import Feed
from alertbot.feed.market import ALL_MARKET, MARKETS
from alertbot.feed.settings import FeedSettings
from alertbot.rules.conditions import parse
from alertbot.rules.engine import Alert, Engine
from alertbot.rules.model import Rule
from tests.fakes.binance import FakeBinance, FakeConnection, mini_ticker

T = 1_772_000_000_000
BTC = "btcusdt@miniTicker"
ETH = "ethusdt@miniTicker"
#: data watchdogs far beyond a test: every reconnect in it is one the test causes
NO_WATCHDOG = {"stale_after": 10.0, "symbol_stale_after": 10.0}


def rule(when: str, *symbols: str, id: str = "up") -> Rule:
    return Rule(id=id, condition=parse(when), symbols=symbols or ("BTCUSDT",))


def fast(fake: FakeBinance, **changes: Any) -> FeedSettings:
    """Settings with every time shrunk for loopback."""
    base = FeedSettings(
        ws_root=fake.ws_url,
        rest_root=fake.rest_url,
        stale_after=0.4,
        symbol_stale_after=0.4,
        handover_timeout=1.0,
        drain_timeout=0.5,
        backoff_initial=0.02,
        backoff_max=0.2,
        healthy_after=0.3,
        open_timeout=2.0,
        close_timeout=0.5,
        ping_interval=None,
        ack_timeout=1.0,
        symbols_refresh=3600.0,
    )
    return dataclasses.replace(base, **changes)


class Bot:
    """The pipeline (feed -> engine -> alerts) running against a fake, with helpers."""

    def __init__(self, fake: FakeBinance, rules: Sequence[Rule], **settings: Any) -> None:
        self.fake = fake
        self.engine = Engine(rules)
        self.alerts: list[tuple[Alert, bool]] = []
        self.pipeline = Pipeline(
            self.engine, fast(fake, **settings), lambda a, gap: self.alerts.append((a, gap))
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def feed(self) -> Feed:
        return self.pipeline.feed

    async def __aenter__(self) -> Bot:
        self._task = asyncio.create_task(self.pipeline.run(self._stop))
        await asyncio.sleep(0)  # run() has told the feed what the rules need
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    def fired(self) -> list[tuple[str, str, int]]:
        return [(a.rule.id, a.symbol, a.time) for a, _ in self.alerts]

    def seen(self, symbol: str, time: int) -> bool:
        last = self.engine.last_ticker(symbol)
        return last is not None and last.time >= time

    async def started(self) -> None:
        """Until BTCUSDT is subscribed and the feed has settled, then BTCUSDT at 90 (at ``T``):
        where the handover tests cross 100 from."""
        await self.fake.wait_for_subscriptions({BTC})
        await asyncio.wait_for(self.feed.settled(), 5)
        await self.tick(90, T)

    async def started_on_all_market(self) -> None:
        """:meth:`started` for a bot whose rules need the all-market stream."""
        await self.fake.wait_for_subscriptions({ALL_MARKET})
        await asyncio.wait_for(self.feed.settled(), 5)
        await self.tick(90, T)

    async def switching_to_symbols(self, lag: float) -> FakeConnection:
        """:meth:`started_on_all_market` (the rules have a glob rule, ``glob``), then the glob
        rule goes while the all-market connection lags ``lag`` seconds: the feed switches to
        symbol streams. Until BTCUSDT is subscribed; returns the all-market connection."""
        await self.started_on_all_market()
        (all_market,) = self.fake.connections
        self.fake.lag(lag, conn=all_market)
        self.engine.remove_rule("glob")
        assert self.pipeline.update_streams() == "symbols"
        await self.fake.wait_for_subscriptions({BTC})
        return all_market

    async def started_on_two_symbol_connections(self) -> None:
        """:meth:`started` for a bot whose rules watch BTCUSDT and ETHUSDT, one stream a
        connection (``max_streams=1``): both at 90 (at ``T``)."""
        await self.fake.wait_for_subscriptions({BTC, ETH})
        await asyncio.wait_for(self.feed.settled(), 5)
        await self.tick(90, T)
        await self.tick(90, T, "ETHUSDT")

    async def tick(self, close: float, time: int, symbol: str = "BTCUSDT") -> None:
        """Publish one ticker and wait until the engine has it."""
        await self.fake.publish([mini_ticker(symbol, close, time)])
        await self.fake.wait_for(lambda: self.seen(symbol, time))

    async def held_on_the_new_all_market_connection(self, close: float, time: int) -> None:
        """Add a glob rule (the feed switches to the all-market stream) and, once the new
        connection's socket is open, publish one BTCUSDT ticker, which only the connections
        not silenced get, and wait until the new one has it (held: the switch is under way)."""
        self.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
        assert self.pipeline.update_streams() == "all"
        await self.fake.wait_for_subscriptions({ALL_MARKET})
        await self.fake.wait_for(lambda: self.feed.connections()[0].session is not None)
        raw = self.feed.connections()[0]
        await self.fake.publish([mini_ticker("BTCUSDT", close, time)])
        await self.fake.wait_for(lambda: raw.messages > 0)

    async def reconnected(self, handshakes: int, streams: set[str]) -> None:
        """Until a new handshake happened and the streams flow again."""
        fake = self.fake
        await fake.wait_for(
            lambda: fake.stats.handshakes > handshakes and streams <= fake.subscribed()
        )


async def past(
    fake: FakeBinance, silenced: FakeConnection, ticker: dict[str, Any], arrived: Callable[[], bool]
) -> None:
    """Publish ``ticker`` while ``silenced`` is silent (it never gets it), until ``arrived()``:
    a tick only the other sockets carry."""
    fake.silence(conn=silenced)
    await fake.publish([ticker])
    await fake.wait_for(arrived)
    fake.silence(False, conn=silenced)


def asked(fake: FakeBinance, conn: FakeConnection, since: int) -> bool:
    """Whether ``conn`` has sent a ``LIST_SUBSCRIPTIONS`` (the request a socket is read to
    its end by) among the fake's requests from index ``since`` on."""
    return any(
        cid == conn.id and isinstance(r, dict) and r.get("method") == "LIST_SUBSCRIPTIONS"
        for cid, r, _ in fake.stats.requests[since:]
    )


async def rotation_of(fake: FakeBinance, old: FakeConnection, stream: str) -> None:
    """Until a socket besides ``old`` carries ``stream``: the connection on ``old`` rotates."""
    await fake.wait_for(
        lambda: any(c is not old and stream in c.streams for c in fake.connections), timeout=5
    )


Fault = Callable[[FakeBinance], Awaitable[None]]


async def abrupt_close(fake: FakeBinance) -> None:
    await fake.drop(code=None)


async def close_1001(fake: FakeBinance) -> None:
    await fake.drop(code=1001, reason="going away")


async def close_1008(fake: FakeBinance) -> None:
    await fake.drop(code=1008, reason="policy violation")


async def silence(fake: FakeBinance) -> None:
    fake.silence()  # the socket stays open; the data watchdog must notice


async def refused_handshakes_then_drop(fake: FakeBinance) -> None:
    fake.reject_handshakes(3, status=503)
    await fake.drop(code=None)


FAULTS = [abrupt_close, close_1001, close_1008, silence, refused_handshakes_then_drop]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("stream", ["symbols", "all"])
async def test_after_a_fault_the_feed_recovers_and_the_next_crossing_fires_once(
    fault: Fault, stream: str
):
    wanted = {BTC} if stream == "symbols" else {ALL_MARKET}
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")], stream=stream) as bot:
        await fake.wait_for_subscriptions(wanted)
        await bot.tick(90, T)
        handshakes = fake.stats.handshakes
        await fault(fake)
        await bot.reconnected(handshakes, wanted)
        await bot.tick(110, T + 60_000)
        await bot.tick(111, T + 61_000)
        await fake.publish([mini_ticker("BTCUSDT", 110, T + 60_000)])  # a late duplicate
        await bot.tick(112, T + 62_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 60_000)]
        assert bot.feed.health().reconnects >= 1


async def test_a_socket_the_watchdog_lets_go_of_is_closed_saying_why():
    """The data watchdog closes a silent socket with the reason "no data": ticks that were on
    their way over it are let go of (the soak's oracle tells such a close from a handover's
    by it), and the exchange's side can tell why."""
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        handshakes = fake.stats.handshakes
        fake.silence()
        await bot.reconnected(handshakes, {BTC})
        await fake.wait_for(lambda: fake.closed)
        (old,) = fake.closed
        assert (old.closed_by, old.closed_code, old.closed_reason) == ("client", 1000, "no data")


@pytest.mark.parametrize("stream", ["symbols", "all"])
async def test_a_coin_m_bot_reads_its_own_market_and_skips_usd_m_elements(
    stream: str, caplog: pytest.LogCaptureFixture
):
    """ALERTBOT_MARKET=coinm: dstream's paths; and since the COIN-M merger a frame may carry
    both markets' elements, told apart by ``st`` (1 USD-M, 2 COIN-M): a COIN-M bot reads those
    with st 2 (or none) and counts st 1 as another market's, on the core's path too. The log
    counts its one rule and its connection's one stream in the singular."""
    caplog.set_level(logging.INFO, logger="alertbot")
    perp = "BTCUSD_PERP"
    wanted = {"btcusd_perp@miniTicker"} if stream == "symbols" else {ALL_MARKET}
    rules = [rule("crosses above 100", perp)]
    async with (
        FakeBinance(market="coinm", symbols=[perp]) as fake,
        Bot(fake, rules, stream=stream, market=MARKETS["coinm"]) as bot,
    ):
        await fake.wait_for_subscriptions(wanted)
        await fake.publish([mini_ticker(perp, 90, T, st=2, ps="BTCUSD")])  # first sight
        await fake.wait_for(lambda: bot.seen(perp, T))
        await fake.publish([mini_ticker(perp, 110, T + 1000, st=1, ps="BTCUSD")])
        await fake.wait_for(lambda: bot.pipeline.stats.foreign == 1)
        await fake.publish([mini_ticker(perp, 95, T + 2000)])  # no st: the market's own
        await fake.publish([mini_ticker(perp, 110, T + 3000, st=2, ps="BTCUSD")])
        await fake.wait_for(lambda: bot.seen(perp, T + 3000))
        assert bot.fired() == [("up", perp, T + 3000)]
        assert bot.feed.health().problems == {"ticker of another market": 1}
    skipped = [r for r in caplog.records if "ticker of another market" in r.getMessage()]
    assert [r.levelname for r in skipped] == ["INFO"]  # tickers of its own came first
    assert "this bot reads coinm" in skipped[0].getMessage()
    kind = "symbol streams" if stream == "symbols" else "the all-market stream"
    logged = [r.getMessage() for r in caplog.records]
    assert f"feed: {kind} for 1 rule" in logged
    assert "feed connection 1: open, 1 stream" in logged


async def test_a_level_crossed_while_the_feed_was_down_fires_on_the_first_tick_after():
    """The engine keeps each symbol's previous ticker across a reconnect."""
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(90, T)
        handshakes = fake.stats.handshakes
        await fake.drop(code=None)
        await bot.reconnected(handshakes, {BTC})
        await bot.tick(130, T + 120_000)  # the price went through 100 while we were away
        assert bot.fired() == [("up", "BTCUSDT", T + 120_000)]


async def test_an_alert_across_an_outage_longer_than_the_stale_time_carries_the_gap_flag(
    caplog: pytest.LogCaptureFixture,
):
    """An alert computed across an outage longer than the stale time carries the gap flag,
    the next one not; the log counts the two rules and the connection's two streams in the
    plural."""
    caplog.set_level(logging.INFO, logger="alertbot")
    rules = [rule("crosses above 100"), rule("crosses above 100", "ETHUSDT", id="eth")]
    async with FakeBinance() as fake, Bot(fake, rules) as bot:
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
        await bot.tick(90, T)
        await bot.tick(90, T, "ETHUSDT")
        handshakes = fake.stats.handshakes
        fake.silence()  # down for longer than stale_after (0.4 s): the watchdog reconnects
        await bot.reconnected(handshakes, {BTC})
        await bot.tick(110, T + 90_000)
        await bot.tick(90, T + 91_000)
        await bot.tick(110, T + 92_000)  # a crossing computed after the outage
        (first, gap1), (second, gap2) = bot.alerts
        assert (first.time, gap1) == (T + 90_000, True)
        assert (second.time, gap2) == (T + 92_000, False)
        assert bot.feed.health().outages == 1
    logged = [r.getMessage() for r in caplog.records]
    assert "feed: symbol streams for 2 rules" in logged
    assert "feed connection 1: open, 2 streams" in logged


async def test_the_gap_flag_holds_for_a_symbol_newer_than_its_frames_first_element():
    """Each element of an all-market frame carries its own event time, and the connection
    marks a frame by its first one: BTC's tick before the outage, newer than ETH's at the
    head of its frame, still counts as before it."""
    async with (
        FakeBinance() as fake,
        Bot(fake, [rule("crosses above 100")], stream="all") as bot,
    ):
        await fake.wait_for_subscriptions({ALL_MARKET})
        await fake.publish([mini_ticker("ETHUSDT", 1, T), mini_ticker("BTCUSDT", 90, T + 500)])
        await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 500))
        handshakes = fake.stats.handshakes
        fake.silence()
        await bot.reconnected(handshakes, {ALL_MARKET})
        await bot.tick(110, T + 90_000)
        await bot.tick(90, T + 91_000)
        await bot.tick(110, T + 92_000)  # a crossing computed after the outage
        assert [(a.time, gap) for a, gap in bot.alerts] == [
            (T + 90_000, True),
            (T + 92_000, False),
        ]


async def test_a_short_reconnect_is_no_gap():
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(90, T)
        handshakes = fake.stats.handshakes
        await fake.drop(code=1001)
        await bot.reconnected(handshakes, {BTC})
        await bot.tick(110, T + 1_000)
        assert [gap for _, gap in bot.alerts] == [False]


async def test_server_pings_are_answered_and_the_connection_stays():
    async with (
        # pongs every 50 ms are over Binance's message limit, which is not what this is about
        FakeBinance(ping_interval=0.05, ping_timeout=0.2, max_incoming_per_s=1000) as fake,
        Bot(fake, [rule("crosses above 100")]) as bot,
    ):
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(90, T)
        (conn,) = fake.connections
        await fake.wait_for(lambda: conn.pongs_received >= 5)
        await bot.tick(110, T + 1_000)
        assert conn.is_open
        assert fake.stats.handshakes == 1
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_our_pings_detect_a_dead_peer():
    """A peer that answers nothing at all (not even pongs) is left, data watchdog aside."""
    async with FakeBinance(max_incoming_per_s=1000) as fake:  # pings every 50 ms: over 10/s
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            market=dataclasses.replace(MARKETS["usdm"], max_incoming=1000),  # as the fake's
            ping_interval=0.05,
            ping_timeout=0.1,
            close_timeout=0.1,
            symbol_stale_after=10.0,  # the data watchdog would also notice, but later
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            (conn,) = fake.connections
            assert conn.ws is not None
            conn.ws.transport.pause_reading()  # the peer stops reading: no pong ever comes
            await fake.wait_for(lambda: fake.stats.handshakes >= 2)
            assert "keepalive ping timeout" in (bot.feed.connections()[0].last_error or "")


BAD_FRAMES = [
    b"{not json",
    b'{"e": "24hrMiniTicker", "E": 1, "s": "BTCUSDT", "c": "1"',  # truncated
    # truncated in the plain form, which reaches the engine undecoded: it counts it the same
    b'[{"e":"24hrMiniTicker","E":7,"s":"BTCUSDT","c":"1"',
    b"42",
    b'"a string"',
    b"null",
    b'{"unexpected": true}',
    b'{"e": "somethingElse", "E": 5, "s": "BTCUSDT"}',
    b'[{"e": "24hrMiniTicker", "E": 7, "s": "BTCUSDT", "c": "abc"}]',
    b'{"stream": "btcusdt@miniTicker", "data": "junk"}',
    b'{"result": null, "id": 999}',  # a reply to nothing we asked
    b'{"error": {"code": 2, "msg": "Invalid request"}, "id": null}',
    b"[" + b'{"e": "24hrMiniTicker"},' * 20_000 + b"1]",  # a big frame of junk
]


@pytest.mark.parametrize("stream", ["symbols", "all"])
async def test_bad_frames_are_counted_and_skipped_and_the_feed_keeps_running(stream: str):
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")], stream=stream) as bot:
        await fake.wait_for_subscriptions({BTC} if stream == "symbols" else {ALL_MARKET})
        await bot.tick(90, T)
        for frame in BAD_FRAMES:
            await fake.send_raw(frame)
        await bot.tick(110, T + 1_000)
        health = bot.feed.health()
        assert fake.stats.handshakes == 1
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]
        # well-framed, ill-formed tickers reach the engine's parser, which counts and skips
        # them: among the feed's problems too, by reason
        assert health.problems == {
            "invalid JSON frame": 3,
            "unexpected message": 4,  # 42, "a string", null, {"unexpected": true}
            "reply to no request of ours": 2,
            "malformed ticker (not a 24hrMiniTicker)": 1,
            "malformed ticker (missing or bad number)": 1,
            "malformed ticker (not an array or object)": 1,  # {"stream":..., "data": "junk"}
            "malformed ticker (bad symbol or event time)": 20_000,  # the big frame's
            "malformed ticker (not an object)": 1,  # and its last element
        }
        assert bot.pipeline.stats.malformed == 20_004


async def test_invalid_utf8_in_a_text_frame_is_counted_and_skipped():
    """Frames are read as bytes and orjson checks UTF-8: no reason to drop the connection."""
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(90, T)
        await fake.send_raw("\ud83d".encode("utf-8", "surrogatepass"))
        await bot.tick(110, T + 1_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]
        assert bot.feed.health().problems == {"invalid JSON frame": 1}
        assert fake.stats.handshakes == 1


@pytest.mark.parametrize("stream", ["symbols", "all"])
async def test_invalid_utf8_in_one_ticker_of_a_frame_costs_that_ticker_alone(stream: str):
    """A frame that is well-formed but for a byte that is no UTF-8 in one ticker's symbol: the
    other tickers are read as if it were not there; that one is counted by kind and skipped."""
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")], stream=stream) as bot:
        await fake.wait_for_subscriptions({BTC} if stream == "symbols" else {ALL_MARKET})
        await bot.tick(90, T)
        frame = orjson.dumps(
            [mini_ticker("ETH#USDT", 120, T + 500), mini_ticker("BTCUSDT", 110, T + 500)]
        )
        await fake.send_raw(frame.replace(b"#", b"\xff"))
        await bot.tick(111, T + 1_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 500)]
        assert bot.feed.health().problems == {"malformed ticker (invalid UTF-8)": 1}
        assert fake.stats.handshakes == 1


async def test_a_frame_over_the_size_limit_is_counted_and_the_feed_reconnects():
    """websockets cannot skip a frame it has not read: over max_frame_bytes, it closes (1009)."""
    async with (
        FakeBinance() as fake,
        Bot(fake, [rule("crosses above 100")], max_frame_bytes=10_000) as bot,
    ):
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(90, T)
        handshakes = fake.stats.handshakes
        await fake.send_raw(b"[" + b"1," * 10_000 + b"1]")
        await bot.reconnected(handshakes, {BTC})
        await bot.tick(110, T + 1_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]
        assert bot.feed.health().problems == {"frame over the size limit": 1}


async def test_a_forced_close_at_max_age_is_survived():
    """Binance closes every connection at 24 h; here the fake does it at 0.3 s."""
    async with (
        FakeBinance(max_age=0.3) as fake,
        Bot(fake, [rule("crosses above 100")]) as bot,
    ):
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(90, T)
        await fake.wait_for(lambda: fake.stats.handshakes >= 3)
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(110, T + 1_000)
        await bot.tick(111, T + 2_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]
        assert all(c.closed_code == 1001 for c in fake.closed)


async def publish_alternating(fake: FakeBinance, until: Callable[[], bool], symbols: list[str]):
    """Tickers alternating 90/110 every 10 ms; returns how many up-crossings were sent."""
    ups = 0
    time = T
    while not until():
        time += 1_000
        high = (time // 1_000) % 2 == 0
        await fake.publish([mini_ticker(s, 110 if high else 90, time) for s in symbols])
        ups += high and time > T + 1_000
        await asyncio.sleep(0.01)
    return ups, time


async def test_a_connection_asked_for_an_answer_while_it_rotates_answers_on_its_new_socket():
    """A switch asks its new connections for an answer before it takes over; a rotation of
    one that takes over meanwhile (make-before-break: nothing lost) is no failure to answer:
    the socket that took over is asked in turn. Taken for one, the switch started over after
    each rotation, and never ended while rotations came faster than its last round trips."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="symbols",
            max_age=0.5,
            **NO_WATCHDOG,
            drain_timeout=3.0,
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            (old,) = fake.connections
            (ours,) = bot.feed.connections()
            fake.lag(0.3, conn=old)  # the rotation reads it to its end in 0.3 s
            since = len(fake.stats.requests)

            def read_to_its_end() -> bool:  # the rotation's request reached it
                return asked(fake, old, since)

            time = T
            while not read_to_its_end():  # the new socket delivers: the rotation goes on
                time += 1
                await fake.publish([mini_ticker("BTCUSDT", 90, time)])
                await asyncio.sleep(0.01)
            fake.lag(2.0, conn=old)  # our request's reply would come long after the rotation
            assert await ours.answers()
            assert bot.feed.stats.rotations == 1
            assert old.closing_at is not None  # let go of (its closing waits behind the lag)


@pytest.mark.parametrize("stream", ["symbols", "all"])
async def test_rotation_before_max_age_loses_nothing_and_duplicates_nothing(stream: str):
    """Make-before-break: every up-crossing of a continuous stream fires exactly once."""
    async with FakeBinance() as fake:
        bot = Bot(fake, [rule("crosses above 100")], stream=stream, max_age=0.25)
        async with bot:
            await fake.wait_for_subscriptions({BTC} if stream == "symbols" else {ALL_MARKET})
            ups, last = await publish_alternating(
                fake, lambda: bot.feed.stats.rotations >= 3, ["BTCUSDT"]
            )
            await fake.wait_for(lambda: bot.seen("BTCUSDT", last))
        assert len(bot.alerts) == ups
        assert bot.feed.stats.reconnects == 0
        assert len(fake.closed) >= 3
        assert all(c.closed_code != 1006 for c in fake.closed)


async def test_rotation_of_a_connection_that_subscribes_live_loses_nothing():
    """After a refused stream URL the connection opens with no streams and subscribes live:
    its rotation must subscribe the new socket before the old one goes."""
    async with FakeBinance() as fake:
        fake.reject_handshakes(1, 400)  # the stream URL refused once: live subscriptions
        bot = Bot(fake, [rule("crosses above 100")], stream="symbols", max_age=0.25)
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            ups, last = await asyncio.wait_for(
                publish_alternating(fake, lambda: bot.feed.stats.rotations >= 3, ["BTCUSDT"]), 10
            )
            await fake.wait_for(lambda: bot.seen("BTCUSDT", last))
        assert len(bot.alerts) == ups
        assert bot.feed.stats.reconnects == 1  # the refused handshake only
        assert {c.path for c in fake.closed} == {"/market/ws"}
        assert all(c.closed_code != 1006 for c in fake.closed)


async def test_a_rotation_away_from_a_lagging_socket_loses_none_of_its_last_ticks():
    """The old socket lags behind the new one (a congested path): its last ticks reach the bot
    after the new socket's first, newer ones. The new socket's are held and merged with the
    old one's by event time, so the old one's are not dropped as out of order: every
    up-crossing of a continuous stream still fires once. Handed on at once, the held ones
    are more than the hand-off's 4 places, yet not conflated (which would keep one
    up-crossing of them all): the engine was not behind."""
    async with FakeBinance() as fake:
        bot = Bot(fake, [rule("crosses above 100")], stream="all", max_age=0.3, queue=4)
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            fake.lag(0.2)  # this socket only (drain_timeout, 0.5 s, leaves time to catch up)
            ups, last = await publish_alternating(
                fake, lambda: bot.feed.stats.rotations >= 1, ["BTCUSDT"]
            )
            await fake.wait_for(lambda: bot.seen("BTCUSDT", last))
        assert len(bot.alerts) == ups
        assert bot.feed.stats.reconnects == 0


async def test_a_rotations_held_ticks_go_before_newer_ones_of_the_old_socket():
    """The old socket falls silent for a moment while the new one delivers (held, merged by
    event time): when the old one delivers again, with newer ticks, the new one's older ones
    are handed on first, not dropped as out of order after them."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="all",
            max_age=0.3,
            stale_after=10.0,  # no watchdog in this test
            drain_timeout=5.0,  # the rotation waits for the old socket to catch up
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.silence(conn=old)
            await fake.wait_for_connections(2)  # the rotation's new socket
            (conn,) = bot.feed.connections()
            received = conn.messages
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the new one only
            await fake.wait_for(lambda: conn.messages > received)
            fake.silence(False, conn=old)
            await bot.tick(90, T + 2_000)  # on both
            await fake.wait_for(lambda: bot.feed.stats.rotations == 1)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_rotation_whose_new_socket_closes_while_the_old_one_drains_keeps_the_old_one():
    """The new socket delivers, then closes while the lagging old one is read to its end: the
    old one is still the only socket delivering. Switching to the closed one would let go of
    the old one with the ticks on their way over it; the rotation is given up instead, and a
    crossing sent after the close (on the old socket alone) is alerted."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="all",
            max_age=0.3,
            stale_after=10.0,
            drain_timeout=5.0,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.lag(1.0, conn=old)
            await fake.wait_for_connections(2)  # the rotation's new socket
            new = fake.connections[1]
            received = old.messages_in
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])
            # the new one delivered; the old one is being read to its end (asked for a reply)
            await fake.wait_for(lambda: old.messages_in > received)
            await fake.drop(code=1001, conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])  # the old one only
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000))
            assert bot.feed.stats.rotations == 0
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_rotation_whose_new_socket_falls_silent_while_the_old_one_drains_keeps_the_old():
    """The new socket delivers, then falls silent (open, answering nothing) while the lagging
    old one is read to its end: the old one is kept, not closed with its last ticks on their
    way, and a crossing sent after the silence began (on the old socket alone) is alerted at
    once, not after the watchdog reconnects."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="all",
            max_age=0.3,
            stale_after=10.0,  # far beyond this test: only the rotation may save the tick
            drain_timeout=1.5,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.lag(0.5, conn=old)
            await fake.wait_for_connections(2)  # the rotation's new socket
            new = fake.connections[1]
            received = old.messages_in
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])
            # the new one delivered; the old one is being read to its end (asked for a reply)
            await fake.wait_for(lambda: old.messages_in > received)
            fake.silence(conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])  # the old one only
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000))
            assert bot.feed.stats.reconnects == 0
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_quiet_rotation_onto_a_socket_that_answers_nothing_keeps_the_old_one():
    """Neither socket delivers while a symbol-stream connection rotates (its symbol is quiet),
    and the new socket, subscribed, never delivers nor answers: it must answer a request
    before it takes over, as one that delivered must. It does not, so the old one carries on
    and a crossing sent after the handover wait (on the old socket alone) is alerted at once,
    not lost until the data watchdog reconnects."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="symbols",
            max_age=0.4,
            handover_timeout=0.5,
            drain_timeout=0.5,
            symbol_stale_after=10.0,  # far beyond this test: only the rotation may save the tick
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            old = fake.connections[0]
            await fake.wait_for_connections(2)  # the rotation's new socket, subscribed by URL
            new = fake.connections[1]
            assert new.streams == {BTC}
            fake.silence(conn=new)
            # the rotation has decided: one of the two is let go of
            await fake.wait_for(lambda: not (old.is_open and new.is_open))
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 1_000), timeout=3)
            assert old.is_open
            assert new.messages_in >= 1  # it was asked
            assert bot.feed.stats.reconnects == 0
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_quiet_rotation_reads_the_lagging_old_socket_to_its_end_before_closing_it():
    """Neither socket delivers while a symbol-stream connection rotates, but a crossing sent
    before the new socket opened is still on its way over the old one, which lags: the new
    one takes over (it answers), and the old one is first read to its end (it is asked for a
    reply, whose answer comes after the crossing), not closed with the crossing on its way."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="symbols",
            max_age=0.3,
            handover_timeout=0.3,
            drain_timeout=3.0,  # the old socket's reply comes 1.5 s late
            symbol_stale_after=10.0,  # far beyond this test: only the rotation may save it
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.reject_handshakes(1_000)  # rotations cannot open their socket for now
            await fake.wait_for(lambda: bot.feed.stats.rotations_failed >= 1)
            fake.lag(1.5, conn=old)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the old one only
            assert len(fake.connections) == 1
            # the next rotation opens its socket within 0.3 s and waits 0.3 s for it: both
            # quiet, as the crossing is still on its way over the old one
            fake.reject_handshakes(0)
            await fake.wait_for(lambda: bot.feed.stats.rotations >= 1, timeout=5)
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 1_000), timeout=3)
            await old.wait_closed()
            assert bot.feed.stats.reconnects == 0
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def tick_until_seen(bot: Bot, close: float, time: int) -> None:
    """Publish one ticker again and again (the engine ignores repeats of an event time) until
    the engine has it: for a socket that is being opened at an unknown moment."""

    async def until() -> None:
        while not bot.seen("BTCUSDT", time):
            await bot.fake.publish([mini_ticker("BTCUSDT", close, time)])
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(), 5)


def rotating_bot(fake: FakeBinance, max_age: float) -> Bot:
    """All-market, rotating every ``max_age`` s, stale after 1 s, a handover that would wait
    far longer than that."""
    rules = [rule("crosses above 100")]
    return Bot(fake, rules, stream="all", stale_after=1.0, max_age=max_age, handover_timeout=30.0)


async def test_a_silence_that_starts_before_a_rotation_is_an_outage_and_flags_the_gap():
    """Both sockets silent through a rotation: the rotation waits no longer than the old
    socket may stay silent, does not take over (it was counted as one and the silence was
    forgotten), and the watchdog's reconnect records the outage, so the next crossing
    carries the gap flag."""
    async with FakeBinance() as fake, rotating_bot(fake, max_age=0.5) as bot:
        await fake.wait_for_subscriptions({ALL_MARKET})
        await bot.tick(90, T)
        fake.silence(future=True)
        await fake.wait_for(lambda: bot.feed.stats.reconnects >= 1)
        fake.silence(False)
        await tick_until_seen(bot, 110, T + 90_000)
    assert bot.feed.stats.rotations == 0
    assert [o.last_event for o in bot.feed.stats.outages] == [T]
    assert [gap for _, gap in bot.alerts] == [True]


async def test_a_rotation_onto_a_silent_socket_after_the_old_one_closed_keeps_the_outage():
    """The old socket closes (Binance's 24 h limit) while the rotation's new one has not
    delivered: the new one is all there is and takes over, and the silence counts from the
    old socket's last data, so the outage that follows is recorded and flags the gap."""
    async with FakeBinance() as fake, rotating_bot(fake, max_age=0.3) as bot:
        await fake.wait_for_subscriptions({ALL_MARKET})
        await bot.tick(90, T)
        old = fake.connections[0]
        fake.silence(future=True)
        await fake.wait_for_connections(2)  # the rotation's new socket
        await fake.drop(code=1001, conn=old)
        await fake.wait_for(lambda: bot.feed.stats.rotations == 1)
        await fake.wait_for(lambda: bot.feed.stats.reconnects >= 1)  # the watchdog
        fake.silence(False)
        await tick_until_seen(bot, 110, T + 90_000)
    assert [o.last_event for o in bot.feed.stats.outages] == [T]
    assert [gap for _, gap in bot.alerts] == [True]


@pytest.mark.parametrize("status", [429, 418])
async def test_a_handshake_refused_for_its_rate_keeps_the_stream_url(status: int):
    """429 and 418 say the client connects too often, not that a stream in the URL is
    refused: after the backoff the same combined URL is tried again, rather than a bare one
    subscribed live for the rest of the run."""
    async with FakeBinance() as fake:
        fake.reject_handshakes(1, status)
        async with Bot(fake, [rule("crosses above 100")], stream="symbols") as bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            (conn,) = fake.connections
            assert conn.url_streams == (BTC,)
            assert conn.messages_in == 0  # no live SUBSCRIBE


async def test_closing_the_feed_during_a_rotations_drain_closes_the_new_socket_too():
    """The old socket lags, so the rotation waits in its drain; a close then must take the
    rotation's new socket with it, not leave it delivering to nobody's sink."""
    async with FakeBinance() as fake:
        got: list[Any] = []
        settings = fast(fake, stream="all", max_age=0.3, drain_timeout=5.0, stale_after=10.0)
        feed = Feed(settings, lambda obj, raw: got.append(obj))
        feed.want_streams([ALL_MARKET])
        await feed.start()
        await fake.wait_for_connections(1)
        await fake.publish([mini_ticker("BTCUSDT", 1, T)])
        fake.silence(conn=fake.connections[0])  # the old socket falls behind
        await fake.wait_for_connections(2)  # the rotation's new socket
        time = T
        (conn,) = feed.connections()
        # until the new socket delivers (held from the sink); the drain then waits for the old
        while conn.messages < 2:
            time += 1_000
            await fake.publish([mini_ticker("BTCUSDT", 1, time)])
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        await feed.close()
        assert feed.stats.rotations == 0
        delivered = len(got)
        await fake.wait_for(lambda: not fake.connections)
        await fake.publish([mini_ticker("BTCUSDT", 1, time + 1_000)])
        await asyncio.sleep(0.1)
        assert len(got) == delivered
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("feed-")]


async def test_a_catch_up_is_not_ended_by_another_ones_earlier_reply():
    """A rotation's drain and a switch's may read the same lagging socket at once, each to
    its own request's reply: the one asked later must not end at the earlier one's reply,
    with the ticks sent between the two requests still on their way (closing it then would
    lose them)."""
    async with FakeBinance() as fake:
        settings = fast(fake, stream="all", stale_after=10.0, drain_timeout=5.0)
        feed = Feed(settings, lambda obj, raw: None)
        feed.want_streams([ALL_MARKET])
        await feed.start()
        try:
            await fake.wait_for_connections(1)
            (conn,) = feed.connections()
            await fake.publish([mini_ticker("BTCUSDT", 1, T)])
            await fake.wait_for(lambda: conn.last_event() == T)
            fake.lag(0.5)
            await fake.publish([mini_ticker("BTCUSDT", 1, T + 1_000)])
            earlier = asyncio.create_task(conn.catch_up())
            await fake.wait_for(lambda: len(fake.stats.requests) == 1)
            for i in range(2, 6):  # on their way behind the first request, 50 ms apart
                await fake.publish([mini_ticker("BTCUSDT", 1, T + i * 1_000)])
                await asyncio.sleep(0.05)
            later = asyncio.create_task(conn.catch_up())
            await asyncio.wait_for(earlier, 5)
            assert T + 1_000 <= conn.last_event() < T + 5_000
            await asyncio.wait_for(later, 5)
            assert conn.last_event() == T + 5_000
        finally:
            await feed.close()


async def test_a_given_up_catch_up_leaves_no_request_behind_and_its_late_reply_is_harmless():
    """A catch-up given up before its LIST_SUBSCRIPTIONS is answered (the caller's time ran
    out on a lagging socket) takes its request out of the socket's reply table, and the reply
    that comes later is not counted as a reply to nothing we asked."""
    async with FakeBinance() as fake:
        settings = fast(fake, stream="all", stale_after=10.0)
        feed = Feed(settings, lambda obj, raw: None)
        feed.want_streams([ALL_MARKET])
        await feed.start()
        try:
            await fake.wait_for_connections(1)
            (conn,) = feed.connections()
            await fake.publish([mini_ticker("BTCUSDT", 1, T)])
            await fake.wait_for(lambda: conn.last_event() == T)
            fake.lag(0.3)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await conn.catch_up()
            assert conn.session is not None
            assert conn.session.replies == {}
            # the reply is on its way ahead of this tick: once the tick is read, so is it
            await fake.publish([mini_ticker("BTCUSDT", 1, T + 1_000)])
            await fake.wait_for(lambda: conn.last_event() == T + 1_000)
            (request,) = [r for _, r, _ in fake.stats.requests]
            assert request["method"] == "LIST_SUBSCRIPTIONS"
            assert feed.stats.problems.counts == {}
        finally:
            await feed.close()


# ------------------------------------------------------------------ subscriptions


async def test_few_symbols_use_symbol_streams_on_a_combined_connection():
    rules = [rule("price > 1", "BTCUSDT", id="a"), rule("price > 1", "ETHUSDT", id="b")]
    async with FakeBinance() as fake, Bot(fake, rules) as bot:
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
        (conn,) = fake.connections
        assert conn.combined
        assert conn.path.startswith("/market/stream?streams=")
        assert bot.feed.health().mode == "symbols"


async def test_a_glob_or_many_symbols_use_the_all_market_stream():
    async with FakeBinance() as fake, Bot(fake, [rule("price > 1", "*USDT")]) as bot:
        await fake.wait_for_subscriptions({ALL_MARKET})
        (conn,) = fake.connections
        assert conn.path == "/market/ws/!miniTicker@arr"
        assert bot.feed.health().mode == "all"
    many = [rule("price > 1", f"S{i}USDT", id=f"r{i}") for i in range(51)]
    async with FakeBinance() as fake, Bot(fake, many):
        await fake.wait_for_subscriptions({ALL_MARKET})


async def test_streams_are_spread_over_connections_above_the_per_connection_limit():
    symbols = [f"S{i}USDT" for i in range(7)]
    rules = [rule("price > 1", s, id=s) for s in symbols]
    async with FakeBinance(max_streams=3) as fake, Bot(fake, rules, max_streams=3):
        await fake.wait_for_subscriptions({f"s{i}usdt@miniTicker" for i in range(7)})
        assert sorted(len(c.streams) for c in fake.connections) == [1, 3, 3]


async def test_swapping_streams_on_a_full_connection_unsubscribes_before_subscribing():
    """At the server's stream limit, the old streams must go before the new ones come, or the
    server refuses the new ones (and a refused stream is left out for good)."""
    streams = [f"{s}usdt@miniTicker" for s in "abcd"]
    async with FakeBinance(max_streams=4) as fake:
        bot = Bot(fake, [], max_streams=4, symbol_stale_after=30)
        async with bot:
            bot.feed.want_streams(streams)
            await fake.wait_for_subscriptions(set(streams))
            swapped = [*streams[:2], "eusdt@miniTicker", "fusdt@miniTicker"]
            bot.feed.want_streams(swapped)
            await fake.wait_for(lambda: fake.subscribed() == set(swapped))
            await bot.tick(5, T, "EUSDT")  # and the new streams deliver
            requests = [r[1] for r in fake.stats.requests]
        assert [(r["method"], r["params"]) for r in requests[-2:]] == [
            ("UNSUBSCRIBE", streams[2:]),
            ("SUBSCRIBE", swapped[2:]),
        ]
        assert bot.feed.health().refused_streams == ()
        assert "live request refused" not in bot.feed.health().problems


async def test_live_changes_subscribe_in_batches_within_the_message_rate():
    """Adding 60 symbols one rule at a time, quickly: batched SUBSCRIBEs, never over 10/s."""
    quiet_ok = {"auto_threshold": 100, "symbol_stale_after": 30.0}  # no data in this test
    async with FakeBinance() as fake, Bot(fake, [rule("price > 1")], **quiet_ok) as bot:
        await fake.wait_for_subscriptions({BTC})
        for i in range(60):
            bot.engine.add_rule(rule("price > 1", f"S{i}USDT", id=f"r{i}"))
            bot.pipeline.update_streams()
            await asyncio.sleep(0.005)
        wanted = {BTC} | {f"s{i}usdt@miniTicker" for i in range(60)}
        await fake.wait_for_subscriptions(wanted)
        for i in range(30):
            bot.engine.remove_rule(f"r{i}")
        bot.pipeline.update_streams()
        gone = {f"s{i}usdt@miniTicker" for i in range(30)}
        await fake.wait_for(lambda: not (fake.subscribed() & gone))
        assert fake.stats.rate_limit_closes == 0
        assert fake.stats.handshakes == 1  # all of it live, on the one connection
        requests = list(fake.stats.requests)
        assert 2 <= len(requests) <= 20  # batched, not one message per symbol
        assert all(r[1]["method"] in ("SUBSCRIBE", "UNSUBSCRIBE") for r in requests)
        assert len({r[1]["id"] for r in requests}) == len(requests)  # ids unique


async def test_a_burst_of_changes_on_spot_stays_within_5_messages_a_second_with_pings():
    """Spot allows 5 incoming messages a second, pings and pongs included: a burst of symbol
    changes that takes many SUBSCRIBE/UNSUBSCRIBE batches, while both sides ping (every 1.2 s
    here, every 20 s on Binance: at most one each in any second either way), is never closed
    with 1008 (nor is our close frame at the end over the limit), and ends with exactly the
    wanted streams on the one connection."""
    before = [f"A{i}USDT" for i in range(4)]
    after = [*before[:1], *(f"B{i}USDT" for i in range(8))]
    keepalive = {"ping_interval": 1.2, "ping_timeout": 5.0}
    async with (
        FakeBinance(market="spot", symbols=before + after, **keepalive) as fake,
        Bot(
            fake,
            [rule("price > 1", s, id=s) for s in before],
            market=MARKETS["spot"],
            stream="symbols",
            max_params=2,  # many batches from a few symbols
            symbol_stale_after=30.0,  # no data in this test
            **keepalive,
        ) as bot,
    ):
        await fake.wait_for_subscriptions({f"{s.lower()}@miniTicker" for s in before})
        (conn,) = fake.connections
        for symbol in before[1:]:  # as /unwatch and /watch would, one after the other
            bot.engine.remove_rule(symbol)
            bot.pipeline.update_streams()
        for symbol in after[1:]:
            bot.engine.add_rule(rule("price > 1", symbol, id=symbol))
            bot.pipeline.update_streams()
        wanted = {f"{s.lower()}@miniTicker" for s in after}
        await fake.wait_for(lambda: fake.subscribed() == wanted, timeout=10)
        assert fake.stats.rate_limit_closes == 0
        assert fake.stats.handshakes == 1
        assert conn.is_open
        assert conn.streams == wanted
        assert len(fake.stats.requests) >= 5  # UNSUBSCRIBE and SUBSCRIBE batches
        assert conn.pings_received >= 1  # while pings flowed, both ways
        assert conn.pongs_received >= 1
    assert fake.stats.rate_limit_closes == 0  # our close frame too


async def test_a_catch_ups_request_keeps_to_the_live_request_pace():
    """A catch-up's LIST_SUBSCRIPTIONS counts toward the incoming-message limit too: it goes
    no sooner after the last live request than the request pace allows (here 2 a second)."""
    async with FakeBinance() as fake:
        settings = fast(fake, stream="symbols", control_rate=2.0, symbol_stale_after=30.0)
        feed = Feed(settings, lambda obj, raw: None)
        feed.want_streams([BTC])
        await feed.start()
        try:
            await fake.wait_for_subscriptions({BTC})
            feed.want_streams([BTC, "ethusdt@miniTicker"])
            await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
            (ours,) = feed.connections()
            await fake.wait_for(lambda: ours.ready)
            await asyncio.wait_for(ours.catch_up(), 5)
            (subscribe, listing) = fake.stats.requests
            assert (subscribe[1]["method"], listing[1]["method"]) == (
                "SUBSCRIBE",
                "LIST_SUBSCRIPTIONS",
            )
            assert listing[2] - subscribe[2] >= 0.5 - 0.01
        finally:
            await feed.close()


async def test_a_refused_stream_does_not_take_the_others_down():
    """The server refuses a batch with one bad stream: the good ones are retried alone."""
    async with FakeBinance() as fake, Bot(fake, [rule("price > 1")], symbol_stale_after=30) as bot:
        await fake.wait_for_subscriptions({BTC})
        bot.feed.want_streams([BTC, "ethusdt@miniTicker", "solusdt@miniTicker", "bad_@miniTicker"])
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker", "solusdt@miniTicker"})
        await fake.wait_for(lambda: bot.feed.health().refused_streams == ("bad_@miniTicker",))
        assert bot.feed.health().problems["live request refused"] >= 2
        assert fake.stats.handshakes == 1


async def test_a_refused_stream_is_tried_again_after_a_while():
    """A refusal may pass (here the server's own stream limit, lower than ours, is raised):
    the refused stream is subscribed again after ``refused_retry``, not left out for good."""
    streams = [f"{s}usdt@miniTicker" for s in "abc"]
    async with FakeBinance(max_streams=2) as fake:
        bot = Bot(fake, [], max_streams=3, symbol_stale_after=30, refused_retry=0.3)
        async with bot:
            bot.feed.want_streams(streams)
            await fake.wait_for(lambda: len(bot.feed.health().refused_streams) == 1)
            assert len(fake.subscribed() & set(streams)) == 2
            fake.max_streams = 3
            await fake.wait_for(lambda: set(streams) <= fake.subscribed())
            assert bot.feed.health().refused_streams == ()
            await bot.tick(5, T, "CUSDT")


async def test_a_connections_only_stream_refused_opens_no_new_connection_until_its_retry():
    """The refused stream was all its connection carried, so that connection is closed: the
    refusal outlives it, and the stream gets a new connection only after ``refused_retry``
    (once, refused again), not one every backoff."""
    bad = "bad_@miniTicker"
    async with FakeBinance() as fake:
        feed = Feed(fast(fake, refused_retry=1.0), lambda obj, raw: None)
        feed.want_streams([bad])
        async with feed:
            await fake.wait_for(lambda: feed.health().refused_streams == (bad,))
            assert fake.stats.attempts == 2  # the stream URL refused, then a live SUBSCRIBE
            await fake.wait_for(lambda: not fake.connections)  # closed: it carries nothing
            await asyncio.sleep(0.5)  # 25 times the first backoff
            assert fake.stats.attempts == 2
            assert feed.health().refused_streams == (bad,)
            await fake.wait_for(lambda: fake.stats.attempts == 4, timeout=3)  # the retry
            await fake.wait_for(lambda: not fake.connections)
            await asyncio.sleep(0.3)
            assert fake.stats.attempts == 4
            assert feed.health().refused_streams == (bad,)


async def test_a_stream_url_refused_at_the_handshake_falls_back_to_live_subscriptions():
    """One bad stream in a combined URL gets the handshake refused (400): the connection then
    opens without streams and subscribes live, so only the bad stream is left out."""
    good = {BTC, "ethusdt@miniTicker"}
    async with FakeBinance() as fake:
        bot = Bot(fake, [], symbol_stale_after=30)
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})  # no rules: the all-market stream
            bot.feed.want_streams([*good, "bad_@miniTicker"])
            await fake.wait_for_subscriptions(good)
            await fake.wait_for(lambda: bot.feed.health().refused_streams == ("bad_@miniTicker",))
            await asyncio.wait_for(bot.feed.settled(), 5)  # and the all-market one closed
            await fake.wait_for(lambda: len(fake.connections) == 1)
            (conn,) = fake.connections
            assert conn.path == "/market/ws"
            assert fake.stats.rejected == 1
            await bot.tick(5, T)  # and data flows
            await bot.tick(6, T, "ETHUSDT")


async def test_a_subscription_the_server_drops_on_its_own_is_found_and_renewed():
    """LIST_SUBSCRIPTIONS now and then: a stream gone silent next to busy ones is caught."""
    quiet_ok = {"symbol_stale_after": 30.0, "audit_interval": 0.1}
    async with FakeBinance() as fake, Bot(fake, [rule("price > 1")], **quiet_ok) as bot:
        bot.feed.want_streams([BTC, "ethusdt@miniTicker"])
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
        (conn,) = fake.connections
        conn.streams.discard(BTC)  # the server forgets it, says nothing
        await fake.wait_for(
            lambda: any(r[1].get("params") == [BTC] for r in fake.stats.requests), timeout=3
        )
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
        assert bot.feed.health().problems == {"subscription lost on the server": 1}
        assert fake.stats.handshakes == 1


async def test_a_switch_between_stream_kinds_loses_no_tick_of_a_watched_symbol():
    """symbols -> all (a glob rule arrives) -> symbols (it goes), under a continuous stream."""
    async with FakeBinance() as fake, Bot(fake, [rule("crosses above 100")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        done = asyncio.Event()
        publisher = asyncio.create_task(publish_alternating(fake, done.is_set, ["BTCUSDT"]))
        await asyncio.sleep(0.1)
        bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
        assert bot.pipeline.update_streams() == "all"
        await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.feed.health().mode == "all"
        await asyncio.sleep(0.1)
        bot.engine.remove_rule("glob")
        assert bot.pipeline.update_streams() == "symbols"
        await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.feed.health().mode == "symbols"
        await asyncio.sleep(0.1)
        done.set()
        ups, last = await publisher
        await fake.wait_for(lambda: bot.seen("BTCUSDT", last))
        assert len(bot.alerts) == ups
        assert bot.feed.stats.reconnects == 0


async def test_a_switchs_held_ticks_go_before_newer_ones_of_the_old_connection():
    """As in a rotation: the symbol connection falls silent for a moment while the new
    all-market one delivers; its older ticks go before the symbol connection's newer ones.
    The silenced connection never answers the switch's request (the fake drops it), so the
    switch reads it for ``drain_timeout``, as a rotation reads a socket that stopped answering;
    the all-market stream is given longer than that before its watchdog lets go."""
    rules = [rule("crosses above 100")]
    async with FakeBinance() as fake:
        bot = Bot(fake, rules, stale_after=10.0, symbol_stale_after=10.0, drain_timeout=1.0)
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.silence(conn=old)
            await bot.held_on_the_new_all_market_connection(110, T + 1_000)  # it alone
            fake.silence(False, conn=old)
            await bot.tick(90, T + 2_000)  # on both
            await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_held_tick_goes_before_a_newer_one_of_an_old_connection_that_was_not_sent_it():
    """An old connection open all along may not have been sent a tick the new one holds (here
    it was silent a moment; on Binance the all-market stream sends every second, symbol
    streams every 2 s): its newer tick of that symbol waits until the held one has gone, also
    while a lagging neighbour keeps the held one back. Going first, it made the engine drop
    the held, older tick as out of order (soak seed 2076: a crossing missed)."""
    rules = [rule("crosses above 100"), rule("price > 1b", "ETHUSDT", id="eth")]
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            rules,
            max_streams=1,
            stale_after=10.0,
            symbol_stale_after=10.0,
            drain_timeout=2.0,
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC, ETH})
            await fake.publish([mini_ticker("BTCUSDT", 90, T), mini_ticker("ETHUSDT", 1, T)])
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T) and bot.seen("ETHUSDT", T))
            (a,) = [c for c in fake.connections if BTC in c.streams]
            (b,) = [c for c in fake.connections if ETH in c.streams]
            fake.lag(1.0, conn=b)  # the neighbour: it has not passed the held tick for a while
            fake.silence(conn=a)
            await bot.held_on_the_new_all_market_connection(110, T + 1_000)  # it alone
            fake.silence(False, conn=a)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])  # a and the new one
            await fake.publish([mini_ticker("ETHUSDT", 1, T + 2_500)])  # b (late) and the new one
            await asyncio.wait_for(bot.feed.settled(), 8)
            await fake.wait_for(lambda: bot.seen("ETHUSDT", T + 2_500))
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_is_not_cut_short_by_a_late_duplicate_as_the_new_ones_first_frame():
    """A switch reads the old connection until it has caught up with the new one: a late
    duplicate of a tick the old one already handed on, arriving first on the new one, says
    nothing about where the new one begins, and must not end that reading while ticks sent
    before the new one's subscription are still on their way over the old one (soak seed
    877: a crossing lost)."""
    rules = [rule("crosses above 100")]
    async with FakeBinance() as fake:
        bot = Bot(fake, rules, **NO_WATCHDOG, drain_timeout=5.0)
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            first = mini_ticker("BTCUSDT", 90, T)
            await fake.publish([first])
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T))
            fake.lag(0.5, conn=fake.connections[0])
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the old one only
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({BTC, ALL_MARKET})
            await fake.publish([first])  # the late duplicate: first on the new one
            await fake.wait_for(lambda: bot.feed.health().mode == "all", timeout=5)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000), timeout=3)
            await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_rotation_is_not_cut_short_by_a_late_duplicate_as_the_new_sockets_first_frame():
    """A rotation reads the old socket to its end before the new one takes over. The new
    socket's newest event time says nothing of where it began when its only frame is a late
    duplicate of a tick still on its way over the old, lagging socket: reading the old one only
    up to that time lost the ticks behind it (soak seed 1751, under load). It is read to a
    request's reply, which comes after everything sent before the new socket delivered."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            stream="symbols",
            max_age=1.0,
            **NO_WATCHDOG,
            drain_timeout=5.0,
        )
        async with bot:
            await bot.started()  # BTCUSDT at 90
            loop = asyncio.get_running_loop()
            (old,) = fake.connections
            # still on their way over the old one when the new one delivers its first frame,
            # and arriving 0.2 s apart
            fake.lag(1.5, conn=old)
            for k, price in ((1, 95), (2, 110), (3, 90)):
                await fake.publish([mini_ticker("BTCUSDT", price, T + k * 1_000)])
                await asyncio.sleep(0.2)
            published = loop.time()
            await fake.wait_for(lambda: fake.stats.handshakes == 2, timeout=5)
            (new,) = [c for c in fake.connections if c is not old]
            assert new.opened_at > published  # it was sent none of them
            await fake.wait_for(lambda: BTC in new.streams)
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])  # the new one's first
            await fake.wait_for(lambda: bot.feed.stats.rotations == 1, timeout=5)
            await bot.tick(95, T + 4_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_switch_to_all_is_not_cut_short_by_a_late_duplicate_as_the_new_ones_newest():
    """As a rotation (above): a switch to the all-market stream reads the old symbol
    connection to a request's reply. Reading it only up to the newest event time the new one
    has delivered, a late duplicate of a tick still on its way over the old, lagging
    connection, lost the ticks behind it."""
    async with FakeBinance() as fake:
        bot = Bot(fake, [rule("crosses above 100")], **NO_WATCHDOG, drain_timeout=5.0)
        async with bot:
            await bot.started()  # BTCUSDT at 90, on symbol streams
            loop = asyncio.get_running_loop()
            (old,) = fake.connections
            # still on their way over the old one when the new one delivers, 0.3 s apart
            fake.lag(1.5, conn=old)
            for k, price in ((1, 95), (2, 110), (3, 90)):
                await fake.publish([mini_ticker("BTCUSDT", price, T + k * 1_000)])
                await asyncio.sleep(0.3)
            published = loop.time()
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({BTC, ALL_MARKET})
            (new,) = [c for c in fake.connections if c is not old]
            assert new.opened_at > published  # it was sent none of them
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])  # the new one's first
            await fake.wait_for(lambda: bot.feed.health().mode == "all", timeout=5)
            await bot.tick(95, T + 4_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


@pytest.mark.parametrize("glob_first", [False, True], ids=["to-all", "to-symbols"])
async def test_a_switch_away_from_lagging_connections_loses_none_of_their_last_ticks(
    glob_first: bool,
):
    """As a rotation: a switch of stream kinds (a glob rule added, or removed) while the
    connections carrying BTCUSDT lag behind; the new ones' ticks are merged with theirs."""
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100"), glob] if glob_first else [rule("crosses above 100")]
    async with FakeBinance() as fake, Bot(fake, rules) as bot:
        await fake.wait_for_subscriptions({ALL_MARKET} if glob_first else {BTC})
        fake.lag(0.2)  # these connections only: the new ones are fast
        done = asyncio.Event()
        publisher = asyncio.create_task(publish_alternating(fake, done.is_set, ["BTCUSDT"]))
        await asyncio.sleep(0.1)
        if glob_first:
            bot.engine.remove_rule("glob")
        else:
            bot.engine.add_rule(glob)
        assert bot.pipeline.update_streams() == ("symbols" if glob_first else "all")
        await asyncio.wait_for(bot.feed.settled(), 5)
        await asyncio.sleep(0.1)
        done.set()
        ups, last = await publisher
        await fake.wait_for(lambda: bot.seen("BTCUSDT", last))
    assert len(bot.alerts) == ups
    assert bot.feed.stats.reconnects == 0


async def test_a_switch_does_not_hand_on_ticks_ahead_of_another_old_connection_that_lags():
    """A switch to the all-market stream from two symbol connections, the one carrying
    BTCUSDT lagging behind: the ETHUSDT one's newer ticks must not take the new connection's
    held BTCUSDT tick with them ahead of the lagging one's older BTCUSDT ticks, which the
    engine would then drop as out of order (here a crossing up and back, missed)."""
    rules = [rule("crosses above 100"), rule("price > 1b", "ETHUSDT", id="eth")]
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), max_streams=1) as fake:
        bot = Bot(fake, rules, max_streams=1, **NO_WATCHDOG, drain_timeout=5.0)
        async with bot:
            await bot.started_on_two_symbol_connections()
            btc = next(c for c in fake.connections if BTC in c.streams)
            fake.lag(1.0, conn=btc)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the old one only
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 2_000)])  # held on the new one
            await fake.publish([mini_ticker("ETHUSDT", 90, T + 2_500)])  # the ETHUSDT one's
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000), timeout=3)
            await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_does_not_wait_on_an_old_connection_reconnected_since_for_held_ticks():
    """As above, but the other old connection (ETHUSDT) reconnected after the new all-market
    one held a BTCUSDT tick, and has delivered nothing since: its new socket was sent only
    newer ticks, so the held one still goes ahead of the BTCUSDT connection's newer one."""
    rules = [rule("crosses above 100"), rule("price > 1b", "ETHUSDT", id="eth")]
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), max_streams=1) as fake:
        bot = Bot(fake, rules, max_streams=1, **NO_WATCHDOG, drain_timeout=5.0)
        async with bot:
            await bot.started_on_two_symbol_connections()
            btc = next(c for c in fake.connections if BTC in c.streams)
            eth = next(c for c in fake.connections if c is not btc)
            fake.silence(conn=btc)  # it cannot be read to its end: the switch waits
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            raw = bot.feed.connections()[0]
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the new one only
            await fake.wait_for(lambda: raw.messages > 0)
            await fake.drop(code=None, conn=eth)
            await fake.wait_for(lambda: "ethusdt@miniTicker" in fake.subscribed())
            fake.silence(False, conn=btc)
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 2_000)])
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000), timeout=3)
            await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switchs_held_tick_is_not_overtaken_by_an_old_connection_reconnected_meanwhile():
    """A switch to the all-market stream from two symbol connections, the ETHUSDT one lagging
    (the held frames wait for it), while the BTCUSDT one is down: a BTCUSDT crossing sent then
    is on the new connection alone, held. The BTCUSDT one reconnects and delivers a newer
    tick: it must not go ahead of the held one, which the engine would then drop as out of
    order (here a crossing up and back, missed)."""
    rules = [rule("crosses above 100"), rule("price > 1b", "ETHUSDT", id="eth")]
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), max_streams=1) as fake:
        bot = Bot(fake, rules, max_streams=1, **NO_WATCHDOG, drain_timeout=5.0)
        async with bot:
            await bot.started_on_two_symbol_connections()
            btc = next(c for c in fake.connections if BTC in c.streams)
            eth = next(c for c in fake.connections if c is not btc)
            fake.lag(1.5, conn=eth)  # read to its end 1.5 s after it is asked
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            raw = bot.feed.connections()[0]
            fake.reject_handshakes(1_000)  # the BTCUSDT one stays down until let in
            await fake.drop(code=None, conn=btc)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the new one only
            await fake.wait_for(lambda: raw.messages > 0)  # held
            fake.reject_handshakes(0)
            await fake.wait_for(lambda: BTC in fake.subscribed())  # reconnected
            ours = next(c for c in bot.feed.connections() if BTC in c.streams)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])  # on both
            await fake.wait_for(lambda: ours.last_event() >= T + 2_000)  # it has the newer one
            assert bot.feed.health().mode == "switching"  # the held one still waits
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000), timeout=3)
            await asyncio.wait_for(bot.feed.settled(), 5)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_ticks_kept_back_for_a_switch_that_is_given_up_go_on_and_so_do_later_ones():
    """As above, but the new all-market connection then falls silent and the switch is given
    up, the symbol connections carrying on: the BTCUSDT connection's tick kept back goes once
    the held one has, and its later ticks go straight on; none is kept back for good."""
    rules = [rule("crosses above 100"), rule("price > 1b", "ETHUSDT", id="eth")]
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), max_streams=1) as fake:
        bot = Bot(
            fake,
            rules,
            max_streams=1,
            **NO_WATCHDOG,
            drain_timeout=1.0,
            handover_timeout=30.0,  # not tried again within this test
        )
        async with bot:
            await bot.started_on_two_symbol_connections()
            btc = next(c for c in fake.connections if BTC in c.streams)
            eth = next(c for c in fake.connections if c is not btc)
            fake.lag(0.6, conn=eth)
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            new = next(c for c in fake.connections if ALL_MARKET in c.streams)
            raw = bot.feed.connections()[0]
            fake.reject_handshakes(1_000)
            await fake.drop(code=None, conn=btc)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the new one only
            await fake.wait_for(lambda: raw.messages > 0)  # held
            fake.reject_handshakes(0)
            await fake.wait_for(lambda: BTC in fake.subscribed())  # reconnected
            ours = next(c for c in bot.feed.connections() if BTC in c.streams)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])  # on both
            await fake.wait_for(lambda: ours.last_event() >= T + 2_000)
            fake.silence(conn=new)  # it will not answer: the switch is given up
            await new.wait_closed()
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000))
            await bot.tick(110, T + 3_000)  # on the BTCUSDT connection alone
            # given up once the old ones are read to their end (the new one let go of first)
            await fake.wait_for(lambda: bot.feed.health().mode == "symbols")
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000), ("up", "BTCUSDT", T + 3_000)]


async def test_held_frames_going_ahead_of_an_old_connections_tick_take_its_older_ones_first():
    """A switch to the all-market stream from two symbol connections. The ETHUSDT one lags,
    so the new connection's held frames wait for it; the new connection missed a BTCUSDT
    crossing (its socket was silent then), which the BTCUSDT connection delivered and keeps
    back behind them. When the ETHUSDT one's newer tick lets held frames go ahead of it, the
    BTCUSDT connection's older tick goes between them, not after a newer held one (the engine
    would drop it: soak seed 5630)."""
    rules = [rule("crosses above 100"), rule("price > 1b", "ETHUSDT", id="eth")]
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), max_streams=1) as fake:
        bot = Bot(
            fake,
            rules,
            max_streams=1,
            **NO_WATCHDOG,
            drain_timeout=2.0,  # the switch waits this long for an answer of the new one
            handover_timeout=30.0,  # not tried again within this test
        )
        async with bot:
            await bot.started_on_two_symbol_connections()
            eth = next(c for c in fake.connections if ETH in c.streams)
            fake.lag(0.5, conn=eth)
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            new = next(c for c in fake.connections if ALL_MARKET in c.streams)
            raw = next(c for c in bot.feed.connections() if c.raw)
            ours = next(c for c in bot.feed.connections() if BTC in c.streams)
            await fake.publish([mini_ticker("ETHUSDT", 95, T + 500)])  # held: ETHUSDT lags
            await fake.wait_for(lambda: raw.messages > 0)
            # the old one only, kept back behind the held ETHUSDT tick
            await past(fake, new, mini_ticker("BTCUSDT", 110, T + 1_000), lambda: ours.waiting)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])
            await fake.publish([mini_ticker("ETHUSDT", 95, T + 2_500)])
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 3_000)])
            await fake.wait_for(lambda: raw.messages > 3)
            fake.silence(conn=new)  # it does not answer: the switch waits, then is given up
            # the ETHUSDT connection's tick at T + 2_500 arrives: held frames older go ahead
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 3_000), timeout=5)
            await fake.wait_for(lambda: bot.feed.health().mode == "symbols", timeout=10)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_late_frame_held_behind_a_newer_one_keeps_no_older_tick_back():
    """A switch to the all-market stream while the old symbol connection lags: the new
    connection holds a frame, a newer one, then a late duplicate older than both. The old
    connection's crossing (the new one missed it: silent then) is older than the first held
    frame and newer than the late one. Held frames go in the order they came, so the late
    one cannot go ahead of it without the newer ones: it goes on, not kept back until the
    first held frame goes (for having been held ``drain_timeout``) ahead of it, which would
    make the engine drop it (soak seed 8184)."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            drain_timeout=1.0,  # the held frames go after this long; the switch is given up
            handover_timeout=30.0,  # and not tried again within this test
        )
        async with bot:
            await bot.started()
            (old,) = fake.connections
            fake.lag(0.5, conn=old)
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({ALL_MARKET})
            (new,) = [c for c in fake.connections if ALL_MARKET in c.streams]
            raw = next(c for c in bot.feed.connections() if c.raw)
            await fake.wait_for(lambda: raw.session is not None)
            fake.silence(conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # on its way, late
            fake.silence(False, conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 115, T + 2_000)])
            await fake.wait_for(lambda: raw.messages == 1)
            await asyncio.sleep(0.05)  # the frames after it come later: not due with it
            await fake.publish([mini_ticker("BTCUSDT", 116, T + 2_500)])
            late = orjson.dumps([mini_ticker("ETHUSDT", 90, T + 500)])
            await fake.send_raw(late, conn=new)
            await fake.wait_for(lambda: raw.messages == 3)
            fake.silence(conn=new)  # it does not answer: the switch is given up
            await fake.wait_for(lambda: bot.feed.health().switches_failed == 1, timeout=5)
            await bot.tick(116, T + 3_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_held_frame_due_goes_behind_an_old_connections_older_rotation_held_tick():
    """A switch to the all-market stream while the old symbol connection rotates: a crossing
    reached only the rotation's new socket, which holds it while the old socket is read to
    its end (silent, so for ``drain_timeout``), then through a failed answer and a second
    ``drain_timeout``. The all-market connection's newer frame, held for ``drain_timeout``
    meanwhile, goes behind it, not ahead (the engine would drop it)."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            max_age=1.0,
            drain_timeout=1.0,
            handover_timeout=30.0,  # the switch is not tried again within this test
        )
        async with bot:
            await bot.started()
            (old,) = fake.connections
            await rotation_of(fake, old, BTC)
            (rotating,) = [c for c in fake.connections if c is not old]
            fake.silence(conn=old)
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({ALL_MARKET})
            (new,) = [c for c in fake.connections if ALL_MARKET in c.streams]
            raw = next(c for c in bot.feed.connections() if c.raw)
            symbols = next(c for c in bot.feed.connections() if not c.raw)
            await fake.wait_for(lambda: raw.session is not None)
            seen = symbols.messages
            # the rotation's new socket's alone, held
            await past(
                fake, new, mini_ticker("BTCUSDT", 110, T + 1_000), lambda: symbols.messages > seen
            )
            fake.silence(conn=rotating)  # it does not answer: the rotation fails, holding on
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 2_000)])
            await fake.wait_for(lambda: raw.messages == 1)
            fake.silence(conn=new)  # it does not answer: the switch is given up
            await fake.wait_for(lambda: bot.feed.health().switches_failed == 1, timeout=5)
            fake.silence(False)
            await bot.tick(96, T + 3_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_given_up_lets_go_of_its_new_connection_before_reading_the_old_ones():
    """A switch to the all-market stream is given up (its connection delivered nothing in
    time) while the old symbol connection lags behind; the all-market connection starts
    delivering while the old one is read to its end. What it holds from then on is newer
    than what that reading covers: handed on after it, it would go ahead of the old one's
    older ticks still on their way, which the engine would drop as out of order (here a
    crossing up, then back, missed). It is let go of first, so it takes in nothing more."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            handover_timeout=0.5,
            drain_timeout=3.0,
        )
        async with bot:
            await bot.started()
            (old,) = fake.connections
            fake.lag(1.0, conn=old)  # read to its end a second after it is asked
            fake.silence_opening("all-market")
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"
            since = len(fake.stats.requests)
            await fake.wait_for(lambda: bot.feed.health().switches_failed == 1, timeout=3)
            # the give-up's request reached the old one: its reply comes a second later
            await fake.wait_for(lambda: asked(fake, old, since))
            fake.lag(1.5, conn=old)  # what it is sent now comes after the reply
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # the old one only
            for conn in fake.connections:
                fake.silence(False, conn=conn)  # the all-market one, while still open
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])
            await bot.tick(95, T + 3_000)  # on the old one alone, after all it had
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_given_up_half_way_hands_on_an_old_connections_rotation_first():
    """A switch to the all-market stream is given up half-way (the glob rule goes again)
    while the old symbol connection rotates, its old socket silent: its new socket holds
    what it delivers (a crossing up and back) until the old one is read to its end. The
    all-market connection, silent a while, holds a newer tick; handed on ahead of the
    rotation's older ones, the engine would drop those as out of order (the crossing
    missed). They go first."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            max_age=0.8,
            **NO_WATCHDOG,
            drain_timeout=0.6,
        )
        async with bot:
            loop = asyncio.get_running_loop()
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            (old,) = fake.connections
            # old enough to rotate well before the all-market connection opened now does
            await fake.wait_for(lambda: loop.time() >= old.opened_at + 0.4)
            fake.silence(conn=old)  # read to its end by no request: each wait runs out
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            (raw,) = [c for c in fake.connections if ALL_MARKET in c.streams]
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 1_000)])  # held by it
            await fake.wait_for(lambda: bot.feed.connections()[0].messages > 0)
            bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == "symbols"
            fake.silence(conn=raw)
            await fake.wait_for(lambda: fake.stats.handshakes == 3)  # the rotation's socket
            (new,) = [c for c in fake.connections if c not in (old, raw)]
            await fake.wait_for(lambda: BTC in new.streams)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])  # the new socket's
            fake.silence(False, conn=raw)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 3_000)])  # on both, held
            await fake.wait_for(lambda: bot.feed.stats.rotations == 1, timeout=3)
            assert raw.closing_at is not None  # it was handed on before the rotation ended
            await bot.tick(95, T + 4_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_switch_given_up_hands_on_what_its_connections_rotation_held():
    """A switch to the all-market stream is given up (its connection does not answer: its
    socket fell silent) while that connection rotates: its new socket holds what it
    delivers until the silent one is read to its end. A tick of a symbol only it carries
    (a glob rule's) is handed on with what the connection held, not dropped with the
    rotation when the connection is closed (the crossing it makes is alerted)."""
    glob = rule("crosses above 120", "*USDT", id="glob")
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT")) as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            max_age=0.5,
            **NO_WATCHDOG,
            drain_timeout=0.6,
            handover_timeout=5.0,  # not tried again within this test
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            time = T

            async def ticking_until(done: Callable[[], bool]) -> None:
                nonlocal time
                while not done():
                    time += 1
                    await fake.publish([mini_ticker("BTCUSDT", 90, time)])
                    await asyncio.sleep(0.01)

            # the symbol connection rotated: its next rotation comes after the one below
            await ticking_until(lambda: bot.feed.stats.rotations == 1)
            (old,) = [c for c in fake.connections if c.closing_at is None]
            fake.lag(0.2, conn=old)  # read to its end 0.2 s after the all-market one delivers
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            (raw,) = [c for c in fake.connections if ALL_MARKET in c.streams]
            ours = bot.feed.connections()[0]
            await fake.publish([mini_ticker("ETHUSDT", 110, T + 1_000_000)])
            await fake.wait_for(lambda: ours.messages > 0)  # held
            fake.silence(conn=raw)  # it will not answer: the switch is given up
            await ticking_until(
                lambda: any(ALL_MARKET in c.streams and c is not raw for c in fake.connections)
            )  # its rotation's new socket
            await fake.publish([mini_ticker("ETHUSDT", 130, T + 2_000_000)])  # on that one
            await fake.wait_for(lambda: bot.feed.health().switches_failed == 1, timeout=3)
            await fake.wait_for(lambda: bot.seen("ETHUSDT", T + 2_000_000), timeout=3)
        assert ("glob", "ETHUSDT", T + 2_000_000) in bot.fired()


async def test_a_switch_given_up_hands_on_what_its_new_connection_alone_carried():
    """A switch to the all-market stream is given up (the glob rule goes again) while the old
    symbol connection drains, and a symbol watched meanwhile (ETHUSDT) is subscribed on the
    old one only now: its tick from before that reached the all-market connection alone,
    which held it. It is handed on, after all the old one had, not closed with it."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT")) as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            drain_timeout=5.0,
        )
        async with bot:
            await bot.started()
            fake.lag(0.5, conn=fake.connections[0])  # it drains for a while
            bot.engine.add_rule(glob)
            bot.engine.add_rule(rule("price > 100", "ETHUSDT", id="eth"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for(lambda: ALL_MARKET in fake.subscribed())
            raw = bot.feed.connections()[0]
            await fake.publish([mini_ticker("ETHUSDT", 110, T + 1_000)])  # the new one only
            await fake.wait_for(lambda: raw.messages > 0)
            bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == "symbols"
            await asyncio.wait_for(bot.feed.settled(), 5)
            assert bot.feed.health().mode == "symbols"
        assert bot.fired() == [("eth", "ETHUSDT", T + 1_000)]


@pytest.mark.parametrize("to", ["all", "symbols"])
async def test_a_switch_does_not_wait_for_a_quiet_old_connections_next_tick(to: str):
    """The old connections carry nothing new (their symbols are quiet), so none of them will
    reach the new ones' first event time: a request's reply, which comes after everything the
    exchange sent before it, shows they are read to the end. The switch completes in one
    round trip, not after ``drain_timeout``, and the new ones' held ticks go on at once."""
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100")] + ([glob] if to == "symbols" else [])
    async with FakeBinance() as fake:
        bot = Bot(fake, rules, stale_after=60.0, symbol_stale_after=60.0, drain_timeout=60.0)
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET} if to == "symbols" else {BTC})
            await asyncio.wait_for(bot.feed.settled(), 5)
            await bot.tick(90, T)
            if to == "all":
                bot.engine.add_rule(glob)
            else:
                bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == to
            if to == "all":
                await fake.wait_for_subscriptions({ALL_MARKET})
                await fake.wait_for(lambda: bot.feed.connections()[0].session is not None)
                # on the new all-market connection only: the old one carries BTCUSDT alone
                await fake.publish([mini_ticker("SOLUSDT", 110, T + 1_000)])
            await asyncio.wait_for(bot.feed.settled(), 5)  # not drain_timeout's 60 s
            assert bot.feed.health().mode == to
            assert len(fake.connections) == 1
            if to == "all":
                await fake.wait_for(lambda: bot.seen("SOLUSDT", T + 1_000))


@pytest.mark.parametrize("to", ["all", "symbols"])
async def test_a_switch_whose_new_connection_closes_while_the_old_one_drains_waits_for_it(to: str):
    """The new connection is subscribed (or delivers), then closes while the lagging old one is
    read to its end: the old one is all that carries the symbol until the new one is back, so
    it is kept until then, and a crossing sent meanwhile (on the old one alone) is alerted."""
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100")] + ([glob] if to == "symbols" else [])
    async with FakeBinance() as fake:
        bot = Bot(fake, rules, **NO_WATCHDOG, drain_timeout=5.0)
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET} if to == "symbols" else {BTC})
            await asyncio.wait_for(bot.feed.settled(), 5)
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.lag(1.0, conn=old)
            asked = old.messages_in
            if to == "all":
                bot.engine.add_rule(glob)
            else:
                bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == to
            await fake.wait_for_connections(2)
            new = fake.connections[1]
            fake.reject_handshakes(1, 503)  # the new one's first reconnect: it stays away longer
            if to == "all":
                await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])
            # the new one delivers (or is subscribed): the old one is being read to its end
            await fake.wait_for(lambda: old.messages_in > asked)
            await fake.drop(code=1001, conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])  # the old one only
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000))
            settled = asyncio.create_task(bot.feed.settled())
            time = T + 2_000
            while not settled.done():  # the all-market one must deliver again first
                time += 1
                await fake.publish([mini_ticker("BTCUSDT", 110, time)])
                await asyncio.wait({settled}, timeout=0.05)
                assert time < T + 2_100, "not settled"
            assert bot.feed.health().mode == to
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


@pytest.mark.parametrize("to", ["all", "symbols"])
async def test_a_switch_whose_new_connection_falls_silent_before_it_answers_keeps_the_old_one(
    to: str,
):
    """The new connection delivers, then falls silent (open, answering nothing) while the
    lagging old one is read to its end: it must answer a request before it takes over, as a
    rotation's new socket does. It does not, so the old one is kept (a crossing sent after the
    silence began, on the old one alone, is alerted at once, not after the watchdog), the
    silent one is closed, and the switch is tried again ``handover_timeout`` later."""
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100")] + ([glob] if to == "symbols" else [])
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            rules,
            stale_after=10.0,  # far beyond this test: only the switch may save the tick
            symbol_stale_after=10.0,
            drain_timeout=1.0,
            handover_timeout=1.0,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET} if to == "symbols" else {BTC})
            await asyncio.wait_for(bot.feed.settled(), 5)
            await bot.tick(90, T)
            old = fake.connections[0]
            fake.lag(0.5, conn=old)
            asked = old.messages_in
            if to == "all":
                bot.engine.add_rule(glob)
            else:
                bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == to
            await fake.wait_for_connections(2)
            new = fake.connections[1]
            ours = next(c for c in bot.feed.connections() if c.id == 2)
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])
            await fake.wait_for(lambda: ours.messages > 0)  # the new one delivered (held)
            # the old one is being read to its end (asked for a reply)
            await fake.wait_for(lambda: old.messages_in > asked)
            fake.silence(conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])  # the old one only
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 2_000), timeout=3)
            await new.wait_closed()
            assert old.is_open
            # given up once the old one is read to its end (the new one let go of first)
            await fake.wait_for(
                lambda: bot.feed.health().mode == ("symbols" if to == "all" else "all")
            )
            # tried again later, onto a connection that answers
            settled = asyncio.create_task(bot.feed.settled())
            time = T + 2_000
            while not settled.done():  # the all-market one must deliver first
                time += 1
                await fake.publish([mini_ticker("BTCUSDT", 110, time)])
                await asyncio.wait({settled}, timeout=0.05)
                assert time < T + 2_200, "not settled"
            assert bot.feed.health().mode == to
            assert bot.feed.stats.reconnects == 0
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


@pytest.mark.parametrize("fault", ["silent", "refused", "unsubscribed"])
async def test_a_switch_whose_new_connection_never_gets_going_is_given_up_and_tried_again(
    fault: str,
):
    """A switch's new connection that never delivers (to the all-market stream: it opens,
    then sends nothing) or is never open and subscribed (to symbol streams: its handshakes
    are refused, or it subscribes live and its SUBSCRIBE is never answered) is waited for no
    longer than ``handover_timeout``: the switch is given up (the new one closed, counted in
    switches_failed), the old connection carries on (a crossing on it is alerted), and the
    switch is tried again ``handover_timeout`` later, onto a connection that works."""
    to = "all" if fault == "silent" else "symbols"
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100")] + ([glob] if to == "symbols" else [])
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            rules,
            stale_after=10.0,  # far beyond this test: the watchdog plays no part
            symbol_stale_after=10.0,
            handover_timeout=0.5,
            drain_timeout=0.5,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET} if to == "symbols" else {BTC})
            await asyncio.wait_for(bot.feed.settled(), 5)
            await bot.tick(90, T)
            (old,) = fake.connections
            if fault == "refused":
                fake.reject_handshakes(1_000_000)
            else:
                if fault == "unsubscribed":
                    fake.reject_handshakes(1, 400)  # the stream URL refused: subscribes live
                fake.silence(future=True)
                fake.silence(False, conn=old)  # new connections only
            if to == "all":
                bot.engine.add_rule(glob)
            else:
                bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == to
            before = "symbols" if to == "all" else "all"
            await fake.wait_for(
                lambda: bot.feed.health().switches_failed == 1 and bot.feed.health().mode == before,
                timeout=3,
            )
            assert [c.id for c in bot.feed.connections()] == [1]
            await fake.wait_for(lambda: fake.connections == [old])  # the new one closed
            await bot.tick(110, T + 1_000)  # on the old one
            fake.reject_handshakes(0)
            fake.silence(False)
            settled = asyncio.create_task(bot.feed.settled())
            time = T + 1_000
            while not settled.done():  # the all-market one must deliver first
                time += 1
                await fake.publish([mini_ticker("BTCUSDT", 110, time)])
                await asyncio.wait({settled}, timeout=0.05)
                assert time < T + 1_200, "not settled"
            health = bot.feed.health()
            assert health.mode == to
            assert (health.switches_failed, health.rotations_failed) == (1, 0)
            assert old not in fake.connections
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_to_symbol_streams_that_subscribes_slowly_but_steadily_is_not_given_up():
    """A switch's new connection subscribes live one stream a request at a slow pace (its
    stream URL was refused), taking longer than ``handover_timeout`` in all: while each
    window of ``handover_timeout`` brings a stream more, it is waited for, not given up (on
    spot, finding a refused stream one request a second can take 100 s)."""
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100", *symbols), glob],
            **NO_WATCHDOG,
            handover_timeout=0.5,
            control_rate=2.5,  # a SUBSCRIBE each 0.4 s: 1.2 s for the four
            max_params=1,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            await asyncio.wait_for(bot.feed.settled(), 5)
            fake.reject_handshakes(1, 400)  # the new one's stream URL: it subscribes live
            bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == "symbols"
            await asyncio.wait_for(bot.feed.settled(), 5)
            health = bot.feed.health()
            assert health.mode == "symbols"
            assert health.switches_failed == 0
            assert [c.path for c in fake.connections] == ["/market/ws"]


async def test_a_switch_to_several_connections_waits_for_each_to_answer_even_a_quiet_one():
    """A switch to symbol streams on two connections, one of which (ETHUSDT's) has delivered
    nothing and answers nothing: it must answer before it takes over too, so the switch is
    given up, both new connections are closed, the all-market one carries on (an ETHUSDT
    crossing on it alone is alerted), and the switch succeeds when tried again."""
    rules = [rule("crosses above 100", "BTCUSDT", "ETHUSDT"), rule("price > 1b", "*USDT", id="g")]
    async with FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), max_streams=1) as fake:
        bot = Bot(
            fake,
            rules,
            max_streams=1,
            **NO_WATCHDOG,
            drain_timeout=1.0,
            handover_timeout=1.0,
        )
        async with bot:
            await bot.started_on_all_market()
            await bot.tick(90, T, "ETHUSDT")
            old = fake.connections[0]
            fake.lag(0.5, conn=old)
            asked = old.messages_in
            bot.engine.remove_rule("g")
            assert bot.pipeline.update_streams() == "symbols"
            await fake.wait_for_connections(3)
            opened = fake.connections[1:]
            eth = next(c for c in opened if "ethusdt@miniTicker" in c.streams)
            fake.silence(conn=eth)
            await fake.wait_for(lambda: old.messages_in > asked)  # read to its end
            await fake.publish([mini_ticker("ETHUSDT", 110, T + 2_000)])  # the old one only
            await fake.wait_for(lambda: bot.seen("ETHUSDT", T + 2_000), timeout=3)
            for c in opened:
                await c.wait_closed()
            assert old.is_open
            # once the old one is read to its end, what they held handed on
            await fake.wait_for(lambda: bot.feed.health().mode == "all")
            await asyncio.wait_for(bot.feed.settled(), 5)  # tried again
            assert bot.feed.health().mode == "symbols"
            assert bot.feed.stats.reconnects == 0
        assert bot.fired() == [("up", "ETHUSDT", T + 2_000)]


async def test_a_switch_given_up_for_want_of_an_answer_hands_on_what_it_alone_carried():
    """A switch to the all-market stream whose new connection lags too far behind to answer
    in time is given up; a tick of a symbol only it carries (a glob rule's) that reached it
    after it was asked, and so is still held, is handed on once the old connection is read
    to its end, not closed with it."""
    glob = rule("price > 100", "SOL*", id="sol")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            drain_timeout=0.6,
            handover_timeout=30.0,  # not tried again within this test
        )
        async with bot:
            await bot.started()
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_connections(2)
            new = fake.connections[1]
            fake.lag(0.9, conn=new)  # longer than drain_timeout: its reply comes too late
            await fake.publish([mini_ticker("BTCUSDT", 95, T + 1_000)])
            # it reaches the new one 0.9 s from now, and the new one is asked then: this
            # one reaches it 0.3 s after that, while the feed waits for its reply
            await asyncio.sleep(0.3)
            await fake.publish([mini_ticker("SOLUSDT", 110, T + 2_000)])  # the new one only
            await new.wait_closed()
            assert new.messages_in >= 1  # it was asked
            await fake.wait_for(lambda: bot.seen("SOLUSDT", T + 2_000))
            assert bot.feed.health().mode == "symbols"
        assert bot.fired() == [("sol", "SOLUSDT", T + 2_000)]


async def test_a_switch_to_symbols_given_up_hands_on_what_it_alone_carried():
    """A switch to symbol streams whose new connection lags too far behind to answer in time
    is given up. A tick it holds that the all-market connection never delivered (its socket
    was aborted with that tick on its way) is handed on, not closed with the new connection
    (soak seed 2301: the all-market connection was down meanwhile)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100"), glob],
            **NO_WATCHDOG,
            drain_timeout=1.0,
            handover_timeout=30.0,  # not tried again within this test
        )
        async with bot:
            old = await bot.switching_to_symbols(lag=3.0)  # the old one is read for drain_timeout
            (new,) = [c for c in fake.connections if c is not old]
            fake.lag(1.5, conn=new)  # longer than drain_timeout: its reply comes too late
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])
            # the new one is asked once the old one is gone (or read for drain_timeout), and
            # the tick reaches it 1.5 s after now, before the switch gives up on its answer,
            # so that it is held for less than drain_timeout when the switch gives up
            await asyncio.sleep(0.6)
            await fake.drop(conn=old)  # aborted: its copy of the tick is lost
            await fake.wait_for(lambda: bot.feed.stats.switches_failed == 1, timeout=5)
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 1_000))
            await fake.wait_for(lambda: bot.feed.health().mode == "all")  # the new one closed
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_to_all_hands_on_an_abandoned_switchs_held_ticks_before_its_own():
    """A switch to symbol streams is abandoned (the glob rule comes back) while its new
    connection holds a tick no all-market connection will deliver (the old one's copy was
    lost with its socket, which does not come back: that switch back is given up and the old
    all-market connection closed). The next switch opens a new all-market connection; when
    it takes over, the symbol connection's older held tick goes ahead of its frames, not
    closed with the symbol connection (soak seed 2583)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100"), glob],
            **NO_WATCHDOG,
            drain_timeout=8.0,  # nothing is handed on for having been held that long
            handover_timeout=1.0,
        )
        async with bot:
            old = await bot.switching_to_symbols(lag=2.0)  # read a while
            (ours,) = [c for c in bot.feed.connections() if not c.raw]
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])
            await fake.wait_for(lambda: ours.messages > 0)  # held by the symbol connection
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"  # the switch abandoned
            fake.reject_handshakes(1_000)  # the old one does not come back
            await fake.drop(conn=old)  # aborted: its copy of the tick is lost
            await fake.wait_for(lambda: bot.feed.stats.switches_failed == 1, timeout=5)
            fake.reject_handshakes(0)  # the next all-market connection opens and delivers
            await fake.wait_for_subscriptions({ALL_MARKET})  # a new one
            await bot.tick(90, T + 2_000)
            await asyncio.wait_for(bot.feed.settled(), 5)
            assert bot.feed.health().mode == "all"
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_symbol_frame_waits_for_what_the_switchs_rotating_connection_holds():
    """The all-market connection of a switch to it rotates while the switch is under way: its
    new socket holds a tick (its old one is read to its end meanwhile), and no other socket
    carries it. A frame of the symbol connection, newer, must not overtake it: the engine
    would drop the held tick behind it, and the crossing with it (soak seed 2720, where the
    symbol connection's first frame after a reconnect did)."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            max_age=0.6,
            drain_timeout=2.0,  # the switch and the rotation read silent sockets this long
        )
        async with bot:
            await bot.started()
            (symbols,) = fake.connections
            fake.silence_opening("symbols")  # its rotations fail: nothing new carries BTCUSDT
            fake.silence(conn=symbols)  # the switch reads it to its end (drain_timeout)
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({ALL_MARKET})
            (all_market,) = [c for c in fake.connections if ALL_MARKET in c.streams]
            raw = next(c for c in bot.feed.connections() if c.raw)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 1_000)])
            await fake.wait_for(lambda: raw.messages > 0)  # held
            fake.silence(conn=all_market)  # its rotation reads it to its end
            await fake.wait_for(
                lambda: any(
                    ALL_MARKET in c.streams and c is not all_market and c.is_open
                    for c in fake.connections
                )
            )
            # the rotation's new socket alone carries it, and holds it
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])
            await fake.wait_for(lambda: raw.messages > 1)
            assert bot.feed.health().mode == "switching"
            fake.silence(False, conn=symbols)
            await bot.tick(90, T + 3_000)
            await asyncio.wait_for(bot.feed.settled(), 10)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_switch_to_all_hands_on_what_an_old_connections_rotation_holds_in_order():
    """A switch to the all-market stream completes while an old symbol connection rotates: its
    rotation's new socket holds a tick the all-market connection was not sent (it was silent
    then), older than what the all-market connection releases. It goes first, not after them
    when the old connection closes (the engine would drop it)."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            max_age=1.0,
            drain_timeout=2.0,  # the switch reads the silent old socket this long
        )
        async with bot:
            await bot.started()
            (symbols,) = fake.connections
            fake.silence(conn=symbols)  # the switch, and its rotation, read it to its end
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({ALL_MARKET})
            (all_market,) = [c for c in fake.connections if ALL_MARKET in c.streams]
            fake.silence_opening("all-market")  # its own rotation delivers nothing
            raw = next(c for c in bot.feed.connections() if c.raw)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 1_000)])
            await fake.wait_for(lambda: raw.messages > 0)  # held
            await rotation_of(fake, symbols, BTC)  # max_age, during the switch
            old = next(c for c in bot.feed.connections() if not c.raw)
            # the rotation's alone
            ticker = mini_ticker("BTCUSDT", 110, T + 2_000)
            await past(fake, all_market, ticker, lambda: old.messages > 1)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 3_000)])
            await fake.wait_for(lambda: bot.feed.health().mode == "all", timeout=10)
            await bot.tick(90, T + 4_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_switch_to_symbols_hands_on_what_the_old_connections_rotation_holds_in_order():
    """A switch to symbol streams completes while the old all-market connection rotates: its
    rotation's new socket holds a tick the symbol connection was not sent (it was silent
    then), older than what the symbol connection releases. It goes first, not after them
    when the all-market connection closes (the engine would drop it)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100"), glob],
            **NO_WATCHDOG,
            max_age=1.0,
            drain_timeout=2.0,  # the switch reads the silent old socket this long
        )
        async with bot:
            await bot.started_on_all_market()
            (all_market,) = fake.connections
            fake.silence(conn=all_market)  # the switch, and its rotation, read it to its end
            bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == "symbols"
            await fake.wait_for_subscriptions({BTC})
            (symbols,) = [c for c in fake.connections if BTC in c.streams]
            fake.silence_opening("symbols")  # its own rotation delivers nothing
            await rotation_of(fake, all_market, ALL_MARKET)  # max_age, during the switch
            raw = next(c for c in bot.feed.connections() if c.raw)
            # the rotation's alone
            ticker = mini_ticker("BTCUSDT", 110, T + 1_000)
            await past(fake, symbols, ticker, lambda: raw.messages > 1)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 2_000)])
            await fake.wait_for(lambda: bot.feed.health().mode == "symbols", timeout=10)
            await bot.tick(90, T + 3_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_reads_an_old_connections_rotating_socket_when_its_old_one_is_gone():
    """A switch to the all-market stream while the old symbol connection rotates: the
    rotation's old socket is gone (aborted) while its new socket, which lags, has a crossing
    on its way that no other socket carries. The switch reads the new socket to a request's
    reply too before the all-market connection takes over, not only the old one (at its end
    at once): the crossing is alerted at its tick, not at the next one (soak seed 7673)."""
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100")],
            **NO_WATCHDOG,
            max_age=2.0,
            drain_timeout=3.0,  # the rotation waits this long for its new socket's answer
            handover_timeout=30.0,  # the switch is not given up within this test
        )
        async with bot:
            await bot.started()
            (symbols,) = fake.connections
            await rotation_of(fake, symbols, BTC)
            (new,) = [c for c in fake.connections if c is not symbols]
            fake.lag(0.5, conn=new)
            since = len(fake.stats.requests)
            await bot.tick(90, T + 1_000)  # the new socket's first data, half a second late
            # it delivered and the old one is read to its end: the rotation asks the new one
            await fake.wait_for(lambda: asked(fake, new, since))
            await fake.drop(conn=symbols)  # aborted: only the new socket carries what follows
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])
            bot.engine.add_rule(rule("price > 1b", "*USDT", id="glob"))
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({ALL_MARKET})
            await fake.publish([mini_ticker("BTCUSDT", 111, T + 3_000)])
            await fake.wait_for(lambda: bot.feed.health().mode == "all", timeout=10)
            await bot.tick(111, T + 4_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


async def test_a_switch_to_symbols_abandoned_hands_on_what_it_alone_carried():
    """A switch to symbol streams is abandoned (the glob rule comes back) while its new
    connection holds a tick the all-market connection was never sent (it was silent then).
    Once the all-market connection is read to its end, the tick is handed on, not closed with
    the symbol connection (soak seed 3411)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100"), glob],
            **NO_WATCHDOG,
            drain_timeout=8.0,  # nothing is handed on for having been held that long
        )
        async with bot:
            all_market = await bot.switching_to_symbols(lag=1.0)  # read a while
            (ours,) = [c for c in bot.feed.connections() if not c.raw]
            fake.silence(conn=all_market)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])
            await fake.wait_for(lambda: ours.messages > 0)  # held by the symbol connection
            fake.silence(False, conn=all_market)
            fake.lag(0.0, conn=all_market)
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"  # the switch abandoned
            await asyncio.wait_for(bot.feed.settled(), 10)
            assert bot.feed.health().mode == "all"
            await bot.tick(90, T + 2_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


async def test_a_switch_to_symbols_abandoned_hands_on_what_it_holds_after_newer_lagging_ticks():
    """A switch to symbol streams is abandoned (the glob rule comes back) while the
    all-market connection lags. It answers the request that ends the switch, but a crossing
    it was sent after that request is still on its way, and the symbol connection, which
    missed it (silent then), holds a newer tick. That tick goes on only after the all-market
    connection has been read past it, not ahead of the crossing (the engine would drop it:
    soak seed 10190)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100"), glob],
            **NO_WATCHDOG,
            drain_timeout=8.0,  # nothing is handed on for having been held that long
            handover_timeout=30.0,
        )
        async with bot:
            all_market = await bot.switching_to_symbols(lag=0.5)
            (symbols,) = [c for c in fake.connections if BTC in c.streams]
            ours = next(c for c in bot.feed.connections() if not c.raw)
            bot.engine.add_rule(glob)
            since = len(fake.stats.requests)
            assert bot.pipeline.update_streams() == "all"  # the switch abandoned
            # the request the all-market connection answers before the switch ends
            await fake.wait_for(lambda: asked(fake, all_market, since))
            fake.silence(conn=symbols)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 1_000)])  # on its way, late
            fake.silence(False, conn=symbols)
            await fake.publish([mini_ticker("BTCUSDT", 111, T + 2_000)])
            await fake.wait_for(lambda: ours.messages > 0)  # held by the symbol connection
            await asyncio.wait_for(bot.feed.settled(), 10)
            assert bot.feed.health().mode == "all"
            await bot.tick(90, T + 3_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 1_000)]


@pytest.mark.parametrize("glob_first", [False, True], ids=["to-all", "to-symbols"])
async def test_a_switch_given_up_half_way_loses_none_of_the_lagging_old_connections_ticks(
    glob_first: bool,
):
    """A switch away from lagging connections is given up while the old ones drain (the glob
    rule goes again, or comes back): the new connection, abandoned, held newer ticks than the
    old ones have handed on. They must not be handed on ahead of the old ones' last ticks,
    which the engine would then drop as out of order: every up-crossing still fires once,
    though what the new one held, handed on at once, is more than the hand-off's 4 places."""
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100"), glob] if glob_first else [rule("crosses above 100")]
    async with FakeBinance() as fake, Bot(fake, rules, drain_timeout=5.0, queue=4) as bot:
        await fake.wait_for_subscriptions({ALL_MARKET} if glob_first else {BTC})
        await asyncio.wait_for(bot.feed.settled(), 5)
        fake.lag(0.3)  # these connections only: the new one is fast
        done = asyncio.Event()
        publisher = asyncio.create_task(publish_alternating(fake, done.is_set, ["BTCUSDT"]))
        await asyncio.sleep(0.1)
        if glob_first:
            bot.engine.remove_rule("glob")
        else:
            bot.engine.add_rule(glob)
        assert bot.pipeline.update_streams() == ("symbols" if glob_first else "all")
        await fake.wait_for_connections(2)
        new = next(c for c in bot.feed.connections() if c.id == 2)
        await fake.wait_for(lambda: new.messages >= 5)  # held: the old ones still drain
        assert bot.feed.health().mode == "switching"
        if glob_first:
            bot.engine.add_rule(glob)
        else:
            bot.engine.remove_rule("glob")
        assert bot.pipeline.update_streams() == ("all" if glob_first else "symbols")
        await asyncio.wait_for(bot.feed.settled(), 5)
        await asyncio.sleep(0.4)
        done.set()
        ups, last = await publisher
        await fake.wait_for(lambda: bot.seen("BTCUSDT", last))
    assert len(bot.alerts) == ups
    assert bot.feed.stats.reconnects == 0


async def test_a_switch_whose_old_connection_never_answers_logs_no_asyncio_error(
    caplog: pytest.LogCaptureFixture,
):
    """The old connection is silent, so the request that reads it to its end is never
    answered and the switch goes on after ``drain_timeout``: the wait given up is let go of
    quietly, not left for asyncio to log as "exception was never retrieved" (an ERROR in the
    bot's log at every such switch)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(fake, [rule("crosses above 100")], symbol_stale_after=10.0, drain_timeout=0.3)
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await asyncio.wait_for(bot.feed.settled(), 5)
            fake.silence(conn=fake.connections[0])
            bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == "all"
            await fake.wait_for_subscriptions({ALL_MARKET})
            await tick_until_seen(bot, 110, T)
            await asyncio.wait_for(bot.feed.settled(), 5)
        gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_a_switch_away_from_a_rotating_connection_reads_its_new_socket_to_the_end():
    """The all-market connection rotates while a switch to symbol streams reads it to its end:
    the rotation takes over first (its old socket is closed under the switch's request), and
    the new socket, lagging too, still has a crossing on its way that the symbol connection,
    subscribed after it was sent, does not carry. The switch reads the socket that took over
    to its end as well before it closes the connection, so the crossing is alerted."""
    glob = rule("price > 1b", "*USDT", id="glob")
    async with FakeBinance() as fake:
        bot = Bot(
            fake,
            [rule("crosses above 100"), glob],
            max_age=1.0,
            **NO_WATCHDOG,
            drain_timeout=5.0,
        )
        async with bot:
            await bot.started_on_all_market()
            old = fake.connections[0]
            fake.lag(1.0, conn=old)
            await fake.wait_for_connections(2)  # the rotation's new socket
            new = fake.connections[1]
            fake.lag(0.3, conn=new)
            await fake.publish([mini_ticker("BTCUSDT", 90, T + 1_000)])
            # the new socket delivered and the old one was read to T + 1; the rotation now
            # asks the new one for a reply before it takes over (it comes 0.3 s later)
            await fake.wait_for(lambda: new.messages_in >= 1, timeout=5)
            await fake.publish([mini_ticker("BTCUSDT", 110, T + 2_000)])  # behind that reply
            bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == "symbols"
            await asyncio.wait_for(bot.feed.settled(), 5)
            assert bot.feed.stats.rotations == 1
            await bot.tick(111, T + 3_000)
        assert bot.fired() == [("up", "BTCUSDT", T + 2_000)]


# ------------------------------------------------------------------ slow consumer


async def test_a_slow_engine_conflates_to_the_newest_ticks_and_never_stalls_the_socket():
    """While the engine is stuck, frames are read and conflated; it then sees the newest."""
    async with FakeBinance(send_timeout=2.0) as fake:
        blocked = asyncio.Event()
        bot = Bot(fake, [rule("crosses above 100")], queue=4)
        real_emit = bot.pipeline.emit

        def slow_emit(alert: Alert, gap: bool) -> None:
            real_emit(alert, gap)
            blocked.set()

        bot.pipeline.emit = slow_emit
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            await bot.tick(110, T + 1_000)
            await blocked.wait()
            # hold the engine: the consumer cannot take from the hand-off meanwhile
            handoff = bot.pipeline.handoff
            original_get = handoff.get
            gate = asyncio.Event()

            async def gated_get() -> list[Any]:
                await gate.wait()
                return await original_get()

            handoff.get = gated_get  # type: ignore[method-assign]
            await asyncio.sleep(0.05)  # the consumer is now parked on the gate
            for i in range(2, 200):
                await fake.publish([mini_ticker("BTCUSDT", 90 + i % 2 * 20, T + i * 1_000)])
            await fake.wait_for(lambda: handoff.conflations > 0)
            assert len(handoff) <= 4
            gate.set()
            await fake.wait_for(lambda: bot.seen("BTCUSDT", T + 199_000))
        assert fake.stats.slow_drops == 0
        assert handoff.dropped > 100
        assert bot.feed.stats.reconnects == 0


# ------------------------------------------------------------------ symbols and health


async def test_exchange_symbols_and_a_warning_for_unknown_rule_symbols(caplog):
    async with FakeBinance(symbols=["BTCUSDT", "ETHUSDT"]) as fake:
        rules = [rule("price > 1", "BTCUSDT", id="a"), rule("price > 1", "ETHUSDX", id="b")]
        async with Bot(fake, rules) as bot:
            await fake.wait_for(lambda: bot.pipeline.directory.exchange is not None)
            await fake.wait_for(lambda: "ETHUSDX" in caplog.text)
        assert bot.pipeline.directory.exchange == {"BTCUSDT", "ETHUSDT"}
        assert "ETHUSDX (did you mean ETHUSDT?) (rules: b)" in caplog.text


async def test_without_rest_the_symbols_seen_on_the_stream_stand_in():
    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        fake.fail_rest()
        async with Bot(fake, [rule("price > 1", "*USDT")]) as bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            await fake.wait_for(lambda: bot.pipeline.directory.last_error is not None)
            await bot.tick(1, T, "SOLUSDT")
            directory = bot.pipeline.directory
            assert directory.source == "stream"
            assert directory.known() == {"SOLUSDT"}
            assert directory.suggest("SOLUSDR") == "SOLUSDT"


async def test_symbol_mode_expands_globs_over_the_exchange_symbols():
    async with (
        FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "ETHBTC"]) as fake,
        Bot(fake, [rule("price > 1", "*USDT")], stream="symbols"),
    ):
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
        assert "ethbtc@miniTicker" not in fake.subscribed()


async def test_symbol_mode_leaves_out_what_a_globs_rule_excludes_unless_another_needs_it():
    """A glob's exclusions are not streamed for it: ETHUSDT is excluded by the one rule over
    *USDT, and streamed again once a rule over ETH* takes it."""
    excluding = dataclasses.replace(rule("price > 1", "*USDT"), exclude=("ETH*",))
    async with (
        FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]) as fake,
        Bot(fake, [excluding], stream="symbols") as bot,
    ):
        await fake.wait_for_subscriptions({BTC, "solusdt@miniTicker"})
        assert "ethusdt@miniTicker" not in fake.subscribed()
        bot.engine.add_rule(rule("price > 1", "ETH*", id="eth"))
        bot.pipeline.update_streams()
        await fake.wait_for_subscriptions({BTC, "solusdt@miniTicker", "ethusdt@miniTicker"})


async def test_symbol_mode_skips_a_listed_symbol_that_cannot_be_named_and_keeps_refreshing(
    caplog: pytest.LogCaptureFixture,
):
    """A listed symbol no stream can name (a letter beyond ASCII with a case: how Binance would
    lower it is unknown): a glob that matches it in symbol mode subscribes the others and warns
    once, where such a symbol used to raise and end the symbol refresh (and every later change
    of streams) for good."""
    caplog.set_level(logging.WARNING, logger="alertbot")
    async with (
        FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "ÉUSDT"]) as fake,
        Bot(fake, [rule("price > 1", "*USDT")], stream="symbols") as bot,
    ):
        await fake.wait_for_subscriptions({BTC, "ethusdt@miniTicker"})
        assert bot.pipeline.update_streams() == "symbols"
        (refresh,) = [t for t in asyncio.all_tasks() if t.get_name() == "symbols"]
        assert not refresh.done()
    warnings = [r.getMessage() for r in caplog.records if "cannot be subscribed" in r.getMessage()]
    assert len(warnings) == 1
    assert "ÉUSDT matches *USDT" in warnings[0]


CN = "币安人生USDT"


@pytest.mark.parametrize("stream", ["auto", "symbols"])
async def test_a_symbol_named_in_chinese_gets_its_own_stream_and_its_alerts(stream: str):
    """Binance lists contracts named in Chinese (币安人生USDT, 牛来USDT, among its most traded):
    a rule over one is carried by its symbol stream, named in the combined URL as Binance
    serves it (ASCII letters lowered, percent-encoded UTF-8), and its crossing fires once."""
    async with (
        FakeBinance(symbols=["BTCUSDT", CN]) as fake,
        Bot(fake, [rule("crosses above 1", CN)], stream=stream) as bot,
    ):
        await fake.wait_for_subscriptions({"币安人生usdt@miniTicker"})
        (conn,) = fake.connections
        assert (
            conn.path
            == "/market/stream?streams=%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@miniTicker"
        )
        assert bot.feed.health().mode == "symbols"
        await bot.tick(0.9, T, CN)
        await bot.tick(1.1, T + 2_000, CN)
        await bot.tick(1.2, T + 4_000, CN)
        assert bot.fired() == [("up", CN, T + 2_000)]


async def test_a_live_subscription_names_a_chinese_symbol_as_binance_does():
    """A rule over 币安人生USDT added to a running feed is SUBSCRIBEd live by its stream name."""
    async with FakeBinance(symbols=["BTCUSDT", CN]) as fake, Bot(fake, [rule("> 1")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        bot.engine.add_rule(rule("crosses above 1", CN, id="cn"))
        assert bot.pipeline.update_streams() == "symbols"
        await fake.wait_for_subscriptions({BTC, "币安人生usdt@miniTicker"})
        await bot.tick(0.9, T, CN)
        await bot.tick(1.1, T + 2_000, CN)
        assert bot.fired() == [("cn", CN, T + 2_000)]


async def test_health_reports_connections_ages_and_rates():
    async with FakeBinance() as fake, Bot(fake, [rule("price > 1")]) as bot:
        await fake.wait_for_subscriptions({BTC})
        await bot.tick(2, T)
        health = bot.feed.health()
        (conn,) = health.connections
        assert (health.mode, conn.streams, conn.connected) == ("symbols", 1, True)
        assert conn.messages == 1
        assert health.messages == 1
        assert conn.last_message_age is not None
        assert 0 <= conn.last_message_age < 5
        assert health.last_message_age is not None
        assert health.messages_per_second >= 0
