"""The outbox's bound in memory: during a long Telegram outage at most
``DeliverySettings.delivery_memory`` Telegram deliveries are held in memory (and one more for
each chat holding none, up to outbox.SPARE), the others wait in SQLite only and are loaded,
oldest first, as room frees; none is lost or sent twice, each chat's
stay in order, and their fallbacks fall due from the alert's time all the same. A webhook
channel's deliveries are bounded alike, with a budget of their own, and so are the fallback
webhook's while it is down too.

Against the fake Telegram and the webhook receiver on loopback, with a small bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from alertbot.errors import ConfigError
from alertbot.notify.outbox import Outbox
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.model import Channel
from tests.fakes.telegram import FakeTelegram
from tests.fakes.waiting import wait_until
from tests.fakes.webhook import WebhookReceiver
from tests.test_delivery import Harness, T, rule, tick

CAP = 10
#: what two destinations of a kind hold in memory at most: the bound, and one delivery past it
#: for a destination holding none while the other holds the bound (outbox.SPARE)
HELD = CAP + 1
CHATS = (5001, 5002)


def fire_rounds(h: Harness, rounds: int, start: int = 0) -> None:
    """``rounds`` engine frames, each firing one alert for each chat of CHATS (text: its rule
    id and round), in the order a chat must get them."""
    for k in range(start, start + rounds):
        rules = [
            rule(f"c{chat}-{k:03}", notify=[f"chat:{chat}"], message="{rule}") for chat in CHATS
        ]
        h.fire(rules, [tick(time=T + k)])


def telegram_held(outbox: Outbox) -> int:
    return sum(1 for _, destination in outbox.open if destination.startswith("telegram:"))


def received(tg: FakeTelegram, chat: int) -> list[str]:
    return [line for m in tg.messages_to(chat) for line in m.text.split("\n\n")]


async def most_held_until(
    held: Callable[[], int], done: Callable[[], bool], timeout: float = 30
) -> int:
    """Wait until ``done``; the most deliveries ``held`` counted in memory meanwhile."""
    most = 0

    def check() -> bool:
        nonlocal most
        most = max(most, held())
        return done()

    await wait_until(check, timeout, seen=lambda: f"held {held()}")
    return most


def sent_everything(h: Harness):
    def check() -> bool:
        return set(h.states().values()) == {"sent"}

    return check


async def test_an_outage_holds_at_most_the_bound_and_then_delivers_each_alert_once_in_order(
    tmp_path, tg
):
    """40 alerts for each of two chats while Telegram answers 502, bound 10: never more than
    11 Telegram deliveries in memory (HELD), the rest wait in SQLite; after the recovery every alert
    arrives exactly once, each chat's in the order they fired."""
    tg.down(502)
    async with Harness(tmp_path, tg, None, delivery_memory=CAP, chat_interval=0.01) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        most = 0
        for k in range(0, 40, 8):  # several writes, as a flood over time
            fire_rounds(h, 8, k)
            await outbox.stored_all()
            most = max(most, telegram_held(outbox))
        await tg.wait_for(lambda: len(tg.requests) >= 4)  # being retried
        most = max(most, telegram_held(outbox))
        assert most <= HELD
        assert outbox.depth == 80  # the parked ones count as open all the same
        for chat in CHATS:  # as /status counts a chat's waiting alerts
            mine = sum(1 for _, d in outbox.open if d == f"telegram:{chat}")
            assert mine + outbox.parked_to(f"telegram:{chat}") == 40
        tg.recover()
        most = max(most, await most_held_until(lambda: telegram_held(outbox), sent_everything(h)))
        assert most <= HELD
    for chat in CHATS:
        assert received(tg, chat) == [f"c{chat}-{k:03}" for k in range(40)]


async def test_a_restart_mid_outage_loses_nothing_and_reads_a_window_only(tmp_path, tg):
    """Stopped during the outage with most alerts in SQLite only, the next start loads at most
    the bound of them and, Telegram back, delivers every one once, in order."""
    tg.down(502)
    async with Harness(tmp_path, tg, None, delivery_memory=CAP, chat_interval=0.01) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        fire_rounds(h, 30)
        await outbox.stored_all()
        await tg.wait_for(lambda: len(tg.requests) >= 2)
        assert telegram_held(outbox) <= HELD
    assert set(h.states().values()) == {"pending"}
    async with Harness(tmp_path, tg, None, delivery_memory=CAP, chat_interval=0.01) as again:
        outbox = again.notifier.outbox
        assert outbox is not None
        # Telegram still down: nothing can be sent before these are read (once it was back
        # here, a first message could go before them, and the depth was 50 under load)
        assert telegram_held(outbox) <= HELD  # read at start: a window, not the backlog
        assert outbox.depth == 60
        tg.recover()
        assert await most_held_until(lambda: telegram_held(outbox), sent_everything(again)) <= HELD
    for chat in CHATS:
        assert received(tg, chat) == [f"c{chat}-{k:03}" for k in range(30)]


async def test_alerts_waiting_in_the_database_fall_back_on_time_and_once(tmp_path, tg, hook):
    """The fallback counts from the alert, not from when it is loaded: alerts parked behind a
    full window reach the fallback webhook while Telegram is still down, each once; Telegram
    gets them all once it is back, and the webhook no second copy."""
    tg.down(502)
    settings = {"delivery_memory": CAP, "chat_interval": 0.01, "fallback_after": 0.3}
    async with Harness(tmp_path, tg, hook, **settings) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        fire_rounds(h, 15)
        await hook.wait_for_deliveries(30, timeout=10)  # Telegram still down
        assert telegram_held(outbox) <= HELD
        tg.recover()

        def done() -> bool:
            return {v for k, v in h.states().items() if ">telegram:" in k} == {"sent"}

        await wait_until(done, 30)
        await h.settled()
    keys = [d.idempotency_key for d in hook.accepted]
    assert len(keys) == 30
    assert len(set(keys)) == 30
    for chat in CHATS:
        assert received(tg, chat) == [f"c{chat}-{k:03}" for k in range(15)]


def test_the_bound_is_a_setting_with_a_floor():
    """ALERTBOT_DELIVERY_MEMORY: default 5000, a whole number of at least 100."""
    assert DeliverySettings.from_env({}).delivery_memory == 5000
    assert DeliverySettings.from_env({"ALERTBOT_DELIVERY_MEMORY": "2000"}).delivery_memory == 2000
    with pytest.raises(ConfigError, match="ALERTBOT_DELIVERY_MEMORY: must be at least 100"):
        DeliverySettings.from_env({"ALERTBOT_DELIVERY_MEMORY": "50"})
    with pytest.raises(ConfigError, match="ALERTBOT_DELIVERY_MEMORY: expected a whole number"):
        DeliverySettings.from_env({"ALERTBOT_DELIVERY_MEMORY": "lots"})


async def test_one_chats_backlog_leaves_room_for_the_others(tmp_path, tg):
    """A chat that keeps failing with a backlog larger than the bound holds one window (256)
    of it in memory, not the whole bound: another chat's alert goes out at once."""
    stuck, other = CHATS
    tg.fail_chat(stuck, 502, "Bad Gateway")
    async with Harness(tmp_path, tg, None, delivery_memory=300, chat_interval=0.01) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        h.fire([rule(f"s{k:03}", notify=[f"chat:{stuck}"]) for k in range(400)])
        await outbox.stored_all()
        await tg.wait_for(lambda: len(tg.requests) >= 2)
        assert telegram_held(outbox) == 256
        h.fire([rule("o", notify=[f"chat:{other}"], message="{rule}")], [tick(time=T + 1)])
        await tg.wait_for(lambda: received(tg, other) == ["o"])
        assert outbox.parked_to(f"telegram:{stuck}") == 144


async def test_a_chat_that_blocks_the_bot_fails_its_parked_alerts_too_each_once(tmp_path, tg, hook):
    """A chat refusing the bot (403) with most of its alerts parked: each window loaded after
    fails in turn, so every alert ends failed (none left pending in the database) and goes to
    the fallback webhook once."""
    stuck, _ = CHATS
    tg.block(stuck)
    async with Harness(tmp_path, tg, hook, delivery_memory=CAP, chat_interval=0.01) as h:
        h.fire([rule(f"b{k:03}", notify=[f"chat:{stuck}"]) for k in range(35)])
        await hook.wait_for_deliveries(35, timeout=10)
        await h.settled()
    states = h.states()
    assert sorted({v for k, v in states.items() if ">telegram:" in k}) == ["failed"]
    assert len([k for k in states if ">telegram:" in k]) == 35
    keys = [d.idempotency_key for d in hook.accepted]
    assert len(keys) == len(set(keys)) == 35


# ---------------------------------------------------------------- webhook channels


def webhook_held(outbox: Outbox) -> int:
    return sum(1 for _, destination in outbox.open if destination.startswith("webhook:"))


def posted(receiver: WebhookReceiver) -> list[str]:
    """The rules of the alerts the receiver took (2xx), in the order it took them."""
    return [d.json["rule"] for d in receiver.accepted]


def fire_to(h: Harness, channels: Sequence[str], rounds: int, start: int = 0) -> None:
    """``rounds`` engine frames, each firing one alert for each named channel (its rule id:
    the channel and the round), in the order the channel must get them."""
    for k in range(start, start + rounds):
        h.fire([rule(f"{name}-{k:03}", notify=[name]) for name in channels], [tick(time=T + k)])


async def test_a_webhook_outage_holds_at_most_the_bound_and_then_delivers_each_once_in_order(
    tmp_path, hook
):
    """Two webhook channels whose receivers answer 500, 25 alerts each, bound 10: never more
    than 11 webhook deliveries in memory (HELD; the rest wait in SQLite, counted in the depth);
    after the recovery each receiver takes every one of its alerts once, in the order they
    fired."""
    async with WebhookReceiver() as other:
        channels = {"a": Channel("a", webhook=hook.url), "b": Channel("b", webhook=other.url)}
        hook.down("500")
        other.down("500")
        async with Harness(tmp_path, None, None, channels=channels, delivery_memory=CAP) as h:
            outbox = h.notifier.outbox
            assert outbox is not None
            most = 0
            for k in range(0, 25, 5):  # several writes, as a flood over time
                fire_to(h, ("a", "b"), 5, k)
                await outbox.stored_all()
                most = max(most, webhook_held(outbox))
            await hook.wait_for(lambda: len(hook.deliveries) >= 3)  # being retried
            most = max(most, webhook_held(outbox))
            assert most <= HELD
            assert outbox.depth == 50  # those waiting in the database count as open
            hook.recover()
            other.recover()
            most = max(
                most,
                await most_held_until(
                    lambda: webhook_held(outbox),
                    lambda: len(hook.accepted) >= 25 and len(other.accepted) >= 25,
                ),
            )
            await h.settled()
            assert most <= HELD
        assert set(h.states().values()) == {"sent"}
    assert posted(hook) == [f"a-{k:03}" for k in range(25)]
    assert posted(other) == [f"b-{k:03}" for k in range(25)]


async def test_a_destination_with_nothing_in_memory_is_not_held_up_by_a_stuck_ones_backlog(
    tmp_path, hook
):
    """Webhook channel a's receiver is down with a backlog that fills the whole bound (10), so
    channel b, with nothing in memory, has no room when its alerts come: it takes one at a time
    past the bound all the same, and gets each in order while a is still down. Without that its
    alerts would wait in SQLite until a's backlog was sent or given up (a day)."""
    async with WebhookReceiver() as other:
        channels = {"a": Channel("a", webhook=hook.url), "b": Channel("b", webhook=other.url)}
        hook.down("500")
        async with Harness(tmp_path, None, None, channels=channels, delivery_memory=CAP) as h:
            outbox = h.notifier.outbox
            assert outbox is not None
            fire_to(h, ("a",), 15)
            await outbox.stored_all()
            await hook.wait_for(lambda: len(hook.deliveries) >= 2)
            assert webhook_held(outbox) == CAP
            fire_to(h, ("b",), 3)
            most = await most_held_until(
                lambda: webhook_held(outbox), lambda: len(other.accepted) >= 3, timeout=10
            )
            assert most <= HELD  # b's one
            assert hook.accepted == []  # still down
    assert posted(other) == [f"b-{k:03}" for k in range(3)]


async def test_a_restart_mid_webhook_outage_reads_a_window_only_and_loses_nothing(
    tmp_path, hook, caplog
):
    """Stopped while the receiver is down with most webhook alerts in SQLite only (the stop
    counts them as open), the next start loads at most the bound of them and, the receiver
    back, delivers every one once, in order."""
    channels = {"a": Channel("a", webhook=hook.url)}
    hook.down("500")
    async with Harness(tmp_path, None, None, channels=channels, delivery_memory=CAP) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        fire_to(h, ("a",), 30)
        await outbox.stored_all()
        await hook.wait_for(lambda: len(hook.deliveries) >= 2)
    assert "shutting down with 30 deliveries open" in caplog.text
    assert list(h.states().values()) == ["pending"] * 30
    async with Harness(tmp_path, None, None, channels=channels, delivery_memory=CAP) as again:
        outbox = again.notifier.outbox
        assert outbox is not None
        assert webhook_held(outbox) <= CAP  # read at start: a window, not the backlog
        assert outbox.depth == 30
        hook.recover()
        most = await most_held_until(lambda: webhook_held(outbox), lambda: len(hook.accepted) >= 30)
        await again.settled()
        assert most <= CAP
    assert set(again.states().values()) == {"sent"}
    assert posted(hook) == [f"a-{k:03}" for k in range(30)]


async def test_telegram_and_a_webhook_channel_each_have_the_bound_and_neither_waits_for_the_other(
    tmp_path, tg, hook
):
    """Telegram and a webhook channel down together, 20 alerts each, bound 10: at most 10 of
    each kind in memory. The receiver back while Telegram is still down, it gets all 20 of its
    alerts in order (Telegram's backlog takes none of its room); Telegram back, the chat gets
    its 20 in order."""
    chat = CHATS[0]
    channels = {"a": Channel("a", webhook=hook.url)}
    tg.down(502)
    hook.down("500")
    settings = {"delivery_memory": CAP, "chat_interval": 0.01}
    async with Harness(tmp_path, tg, None, channels=channels, **settings) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        for k in range(20):
            h.fire(
                [
                    rule(f"t-{k:03}", notify=[f"chat:{chat}"], message="{rule}"),
                    rule(f"a-{k:03}", notify=["a"]),
                ],
                [tick(time=T + k)],
            )
        await outbox.stored_all()
        await hook.wait_for(lambda: len(hook.deliveries) >= 2)
        await tg.wait_for(lambda: len(tg.requests) >= 2)
        assert telegram_held(outbox) <= CAP
        assert webhook_held(outbox) <= CAP
        assert outbox.depth == 40
        hook.recover()
        await hook.wait_for_deliveries(20, timeout=30)
        assert received(tg, chat) == []  # still down
        tg.recover()
        await wait_until(lambda: set(h.states().values()) == {"sent"}, 30)
    assert received(tg, chat) == [f"t-{k:03}" for k in range(20)]
    assert posted(hook) == [f"a-{k:03}" for k in range(20)]


def fallback_held(outbox: Outbox) -> int:
    return sum(1 for _, destination in outbox.open if destination.startswith("fallback:"))


async def test_fallbacks_while_the_fallback_webhook_is_down_too_are_bounded_and_none_is_lost(
    tmp_path, tg, hook
):
    """Telegram answers 502 and the fallback webhook 500: 30 alerts for each of two chats fall
    back, bound 10. Never more than 11 fallback deliveries in memory (HELD) (they had no bound: an
    outage of both grew memory by one delivery an alert); the rest wait in SQLite. After the
    recovery the webhook takes each alert once, and Telegram gets each chat's in order."""
    tg.down(502)
    hook.down("500")
    settings = {"delivery_memory": CAP, "chat_interval": 0.01, "fallback_after": 0.1}
    async with Harness(tmp_path, tg, hook, **settings) as h:
        outbox = h.notifier.outbox
        assert outbox is not None
        most = 0

        def fell_back(n: int):
            def check() -> bool:
                nonlocal most
                most = max(most, fallback_held(outbox))
                return sum(1 for k in h.states() if ">fallback:" in k) >= n

            return check

        fire_rounds(h, 30)
        await wait_until(fell_back(60), 20, seen=lambda: f"held {fallback_held(outbox)}")
        await hook.wait_for(lambda: len(hook.deliveries) >= 3)  # being retried
        assert most <= HELD
        hook.recover()
        tg.recover()

        def done() -> bool:
            fell_back(0)()
            return set(h.states().values()) == {"sent"}

        await wait_until(done, 30, seen=lambda: f"held {fallback_held(outbox)}")
        await h.settled()
        assert most <= HELD
    keys = [d.idempotency_key for d in hook.accepted]
    assert len(keys) == len(set(keys)) == 60
    for chat in CHATS:
        assert received(tg, chat) == [f"c{chat}-{k:03}" for k in range(30)]


async def test_a_restart_while_both_are_down_reads_a_window_of_fallbacks_only(tmp_path, tg, hook):
    """Stopped while Telegram and the fallback webhook are down, 40 alerts fallen back: the
    next start loads at most the bound of the fallbacks (they are parked, not read whole) and,
    both back, the webhook takes each alert once."""
    tg.down(502)
    hook.down("500")
    settings = {"delivery_memory": CAP, "chat_interval": 0.01, "fallback_after": 0.1}
    async with Harness(tmp_path, tg, hook, **settings) as h:
        fire_rounds(h, 20)
        await wait_until(lambda: sum(">fallback:" in k for k in h.states()) == 40, 20)
    async with Harness(tmp_path, tg, hook, **settings) as again:
        outbox = again.notifier.outbox
        assert outbox is not None
        assert fallback_held(outbox) <= HELD  # read at start: a window, not the backlog
        hook.recover()
        tg.recover()
        most = await most_held_until(lambda: fallback_held(outbox), sent_everything(again))
        await again.settled()
        assert most <= HELD
    keys = [d.idempotency_key for d in hook.accepted]
    assert len(keys) == len(set(keys)) == 40
