"""Rotations and mode switches given up: counted in the feed's health, shown in an admin's
/status and exported as ``alertbot_feed_handovers_failed_total`` by kind; those done counted
too, and every one that ended exported as ``alertbot_feed_handovers_total`` by kind. End to end,
on the fake exchange and the fake Telegram."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest

from alertbot.feed.market import ALL_MARKET
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.waiting import wait_until
from tests.test_chat import USER, served
from tests.test_chat import Bot as ChatBot
from tests.test_feed import BTC, NO_WATCHDOG, T, rule
from tests.test_feed import Bot as FeedBot


async def test_a_rotation_given_up_is_counted_once_and_a_rotation_that_succeeds_is_not():
    """A rotation whose new socket answers nothing is given up: one failed rotation in
    health(), no switch; the next one, onto a socket that answers, is a rotation and adds
    no failure."""
    async with FakeBinance() as fake:
        bot = FeedBot(
            fake,
            [rule("crosses above 100")],
            stream="symbols",
            max_age=0.4,
            handover_timeout=0.5,
            drain_timeout=0.5,
            symbol_stale_after=10.0,
        )
        async with bot:
            await fake.wait_for_subscriptions({BTC})
            await bot.tick(90, T)
            assert bot.feed.health().rotations_failed == 0
            await fake.wait_for_connections(2)  # the rotation's new socket
            new = fake.connections[1]
            fake.silence(conn=new)
            await new.wait_closed()  # given up
            health = bot.feed.health()
            assert (health.rotations, health.rotations_failed) == (0, 1)
            await fake.wait_for(lambda: bot.feed.stats.rotations >= 1)  # tried again: done
            health = bot.feed.health()
            assert (health.rotations_failed, health.switches_failed) == (1, 0)


async def test_a_switch_given_up_is_counted_once_in_health():
    """A switch to symbol streams whose new connection answers nothing is given up: one
    failed switch in health(), no failed rotation; tried again onto one that answers, it
    succeeds and adds no failure."""
    async with FakeBinance() as fake:
        bot = FeedBot(
            fake,
            [rule("crosses above 100"), rule("price > 1b", "*USDT", id="glob")],
            **NO_WATCHDOG,
            drain_timeout=0.5,
            handover_timeout=0.5,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET})
            await asyncio.wait_for(bot.feed.settled(), 5)
            (old,) = fake.connections
            fake.silence(future=True)
            fake.silence(False, conn=old)  # new connections only
            bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == "symbols"
            await fake.wait_for_connections(2)
            new = fake.connections[1]
            fake.silence(False)  # the retry's connection answers
            fake.silence(conn=new)
            await new.wait_closed()  # given up
            assert old.is_open
            assert bot.feed.health().switches_failed == 1
            await asyncio.wait_for(bot.feed.settled(), 5)  # tried again: done
            health = bot.feed.health()
            assert health.mode == "symbols"
            assert (health.switches_failed, health.rotations_failed) == (1, 0)
            assert health.switches == 1


async def test_an_admins_status_and_the_metrics_show_the_handovers_given_up(tmp_path, fakes):
    """Every new connection silent: the all-market connection's rotations and the switch to
    symbol streams (the first watch) are given up again and again, the old connection
    carrying on; an admin's /status says how many of each, and so does
    alertbot_feed_handovers_failed_total by kind."""
    binance, tg = fakes
    feed = {
        "auto_threshold": 1,
        "max_age": 0.5,
        "handover_timeout": 0.3,
        "drain_timeout": 0.2,
        **NO_WATCHDOG,
    }
    async with ChatBot(tmp_path, binance, tg, admin_chats=(USER,), feed_settings=feed) as bot:
        feed_ = bot.app.pipeline.feed
        await binance.wait_for_subscriptions({ALL_MARKET})  # nothing watched yet
        _, _, metrics = await served(bot.app)
        assert 'alertbot_feed_handovers_failed_total{kind="rotation"} 0.0' in metrics
        assert 'alertbot_feed_handovers_failed_total{kind="switch"} 0.0' in metrics
        (old,) = binance.connections
        binance.silence(future=True)
        binance.silence(False, conn=old)  # new connections only
        await bot.say("/watch BTCUSDT > 1000000")
        await wait_until(
            lambda: feed_.health().rotations_failed >= 1 and feed_.health().switches_failed >= 1
        )
        status = await bot.say("/status")
        _, _, metrics = await served(bot.app)
        assert old.is_open  # carried on throughout
    for kind in ("rotation", "switch"):  # the ones given up are among those that ended
        assert handovers(metrics, kind) >= handovers(metrics, kind, failed=True), metrics
    line = re.search(r"^  handovers given up: rotations (\d+), switches (\d+)$", status, re.M)
    assert line is not None, status
    assert int(line[1]) >= 1, status
    assert int(line[2]) >= 1, status
    for kind in ("rotation", "switch"):
        assert handovers(metrics, kind, failed=True) >= 1


async def test_healthz_shows_the_handovers_given_up_and_stays_healthy(tmp_path, fakes):
    """/healthz's feed part says how many rotations and switches were given up (0 and 0 at
    first, as in /status and the metrics); once some are, through the real endpoint, it says
    how many, and stays 200: the old connection carries the feed meanwhile."""
    binance, tg = fakes
    feed = {
        "auto_threshold": 1,
        "max_age": 0.5,
        "handover_timeout": 0.3,
        "drain_timeout": 0.2,
        **NO_WATCHDOG,
    }
    async with ChatBot(tmp_path, binance, tg, feed_settings=feed) as bot:
        feed_ = bot.app.pipeline.feed
        await binance.wait_for_subscriptions({ALL_MARKET})
        await binance.publish([mini_ticker("BTCUSDT", 90, T)])
        await wait_until(lambda: feed_.health().last_message_age is not None)
        status, first, _ = await served(bot.app)
        assert status == 200, first
        assert (first["feed"]["rotations_failed"], first["feed"]["switches_failed"]) == (0, 0)
        (old,) = binance.connections
        binance.silence(future=True)
        binance.silence(False, conn=old)  # new connections only
        await bot.say("/watch BTCUSDT > 1000000")
        await wait_until(
            lambda: feed_.health().rotations_failed >= 1 and feed_.health().switches_failed >= 1
        )
        await binance.publish([mini_ticker("BTCUSDT", 91, T + 1_000)])  # the old one only
        await wait_until(lambda: (feed_.health().last_message_age or 9.0) < 1.0)
        status, body, _ = await served(bot.app)
        assert old.is_open
    assert status == 200, body
    assert body["feed"]["rotations_failed"] >= 1, body
    assert body["feed"]["switches_failed"] >= 1, body


@pytest.mark.parametrize("away", ["symbols", "all"])
async def test_a_switch_abandoned_for_the_old_target_is_not_counted_as_done(away: str):
    """A switch begun (to symbol streams, or to the all-market stream) whose new connection
    cannot open, and whose target goes back to what the old connections carry before it is
    given up: the new connection is closed and the old ones carry on, which is no switch done
    (and none given up)."""
    glob = rule("price > 1b", "*USDT", id="glob")
    rules = [rule("crosses above 100")] + ([glob] if away == "symbols" else [])
    back = "all" if away == "symbols" else "symbols"
    async with FakeBinance() as fake:
        bot = FeedBot(
            fake,
            rules,
            **NO_WATCHDOG,
            handover_timeout=10.0,  # never given up within this test
            drain_timeout=0.5,
        )
        async with bot:
            await fake.wait_for_subscriptions({ALL_MARKET} if away == "symbols" else {BTC})
            await asyncio.wait_for(bot.feed.settled(), 5)
            await bot.tick(90, T)
            (old,) = fake.connections
            fake.reject_handshakes(1_000_000)
            if away == "symbols":
                bot.engine.remove_rule("glob")
            else:
                bot.engine.add_rule(glob)
            assert bot.pipeline.update_streams() == away
            await fake.wait_for(lambda: bot.feed.health().mode == "switching")
            if away == "symbols":
                bot.engine.add_rule(glob)
            else:
                bot.engine.remove_rule("glob")
            assert bot.pipeline.update_streams() == back
            settled = asyncio.create_task(bot.feed.settled())
            time = T
            while not settled.done():  # an all-market connection must deliver first
                time += 1
                await fake.publish([mini_ticker("BTCUSDT", 90, time)])
                await asyncio.wait({settled}, timeout=0.05)
                assert time < T + 200, "not settled"
            fake.reject_handshakes(0)
            health = bot.feed.health()
            assert health.mode == back
            assert fake.connections == [old]
            assert (health.switches, health.switches_failed) == (0, 0)


async def market(binance: FakeBinance, time: int, until: Callable[[], bool]) -> int:
    """Publish a ticker each 50 ms (a new socket takes over once it delivers) until
    ``until()``; the last event time published."""
    while not until():
        time += 1
        await binance.publish([mini_ticker("BTCUSDT", 90, time)])
        await asyncio.sleep(0.05)
        assert time < T + 200, "not reached"
    return time


def handovers(metrics: str, kind: str, failed: bool = False) -> int:
    name = "alertbot_feed_handovers_failed_total" if failed else "alertbot_feed_handovers_total"
    found = re.search(rf'^{name}{{kind="{kind}"}} (\d+)\.0$', metrics, re.M)
    assert found is not None, metrics
    return int(found[1])


async def test_the_metrics_count_every_handover_that_ended_next_to_those_given_up(tmp_path, fakes):
    """alertbot_feed_handovers_total by kind counts the rotations and switches that ended,
    done or given up: none at first; after a real rotation of the all-market connection
    (its max age shrunk) and a real switch to symbol streams (the first watch), at least one
    rotation and exactly one switch, none of them failed."""
    binance, tg = fakes
    feed = {
        "auto_threshold": 1,
        "max_age": 0.5,
        "handover_timeout": 5.0,
        "drain_timeout": 2.0,
        **NO_WATCHDOG,
    }
    async with ChatBot(tmp_path, binance, tg, feed_settings=feed) as bot:
        feed_ = bot.app.pipeline.feed
        await binance.wait_for_subscriptions({ALL_MARKET})
        time = await market(binance, T, lambda: feed_.health().rotations >= 1)
        await bot.say("/watch BTCUSDT > 1000000")
        await market(binance, time, lambda: feed_.health().switches >= 1)
        assert feed_.health().mode == "symbols"
        _, _, metrics = await served(bot.app)
    assert handovers(metrics, "rotation") >= 1
    assert handovers(metrics, "switch") == 1
    assert handovers(metrics, "rotation", failed=True) == 0
    assert handovers(metrics, "switch", failed=True) == 0


async def test_healthz_shows_the_handovers_done(tmp_path, fakes):
    """/healthz's feed part counts the rotations and switches done next to those given up
    (it had only the failures, so a failure ratio needed the metrics): 0 and 0 at first;
    after a real rotation (max age shrunk) and a real switch to symbol streams, at least one
    rotation and exactly one switch."""
    binance, tg = fakes
    feed = {"auto_threshold": 1, "max_age": 0.5, "drain_timeout": 2.0, **NO_WATCHDOG}
    async with ChatBot(tmp_path, binance, tg, feed_settings=feed) as bot:
        feed_ = bot.app.pipeline.feed
        await binance.wait_for_subscriptions({ALL_MARKET})
        _, first, _ = await served(bot.app)
        time = await market(binance, T, lambda: feed_.health().rotations >= 1)
        await bot.say("/watch BTCUSDT > 1000000")
        await market(binance, time, lambda: feed_.health().switches >= 1)
        _, body, _ = await served(bot.app)
    assert (first["feed"]["rotations"], first["feed"]["switches"]) == (0, 0)
    assert body["feed"]["rotations"] >= 1, body
    assert body["feed"]["switches"] == 1, body
