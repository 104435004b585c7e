"""A chat that blocked the bot (Telegram answers 403 Forbidden): its watches pause, keep, and
come back with the chat; no call is spent on it meanwhile. End to end, on the fake Telegram and
a real SQLite database."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from alertbot.rules.conditions import parse
from alertbot.rules.model import Channel, Rule, RuleSet
from alertbot.service import AppCollector
from alertbot.store import (
    REFUSED_ONCE,
    AlertRecord,
    DeliveryRow,
    Pause,
    Store,
    Update,
    WatchRow,
)
from tests.fakes.telegram import FakeTelegram
from tests.fakes.webhook import WebhookReceiver
from tests.test_chat import USER, Bot, T, at_utc

CROSSING = "BTCUSDT price crosses above 100: price 110"


def sends_to(tg: FakeTelegram, chat: int) -> int:
    """sendMessage calls naming ``chat``, answered or refused."""
    return sum(1 for c in tg.calls("sendMessage") if c.params.get("chat_id") == chat)


async def blocked_crossing(bot: Bot, at: int = T) -> None:
    """The user blocks the bot, then BTCUSDT crosses 100: the watch's alert is refused."""
    tg = bot.tg
    tg.block(USER)
    await bot.tick("BTCUSDT", 90, at)
    await bot.tick("BTCUSDT", 110, at + 1000)
    outbox = bot.app.notifier.outbox
    assert outbox is not None

    def settled() -> bool:
        calls = tg.calls("sendMessage")
        return any(c.params.get("chat_id") == USER and c.status == 403 for c in calls)

    await tg.wait_for(lambda: settled() and not outbox.open)


async def test_a_chat_that_blocked_the_bot_is_paused_and_costs_no_more_calls(
    tmp_path, fakes, caplog
):
    """Every crossing of a blocked chat's watch used to be sent (and refused): a call from the
    token's 30 a second each. After the first 403 the watch does not fire at all; the pause is
    one log line for the chat, not one per alert."""
    binance, tg = fakes
    caplog.set_level(logging.INFO)
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        calls = sends_to(tg, USER)
        alerts = bot.app.pipeline.alerts
        for i in range(3):  # three more crossings
            await bot.tick("BTCUSDT", 90, T + 2000 + 2000 * i)
            await bot.tick("BTCUSDT", 110, T + 3000 + 2000 * i)
        assert bot.app.pipeline.alerts == alerts
        assert sends_to(tg, USER) == calls
        book = bot.app.book
        assert book is not None
        assert [r.id for r in book.of_chat(USER)] == [1]
    lines = [r for r in caplog.records if str(USER) in r.getMessage()]
    assert [r.getMessage() for r in lines if r.levelno >= logging.WARNING] == [
        f"chat {USER} refuses the bot (forbidden: Forbidden: bot was blocked by the user): its 1 "
        "watch is paused until it is back (the bot unblocked or added again, or a command); "
        "the alerts it refused are stored as failed"
    ]


async def test_a_once_watch_whose_alert_was_refused_stays(tmp_path, fakes):
    """A ``once`` watch ended with its alert, which the blocked chat never got: when the user
    came back the watch was gone and its alert unseen. It stays (in the database too), and its
    alert is stored as failed with Telegram's reason."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: 1 in book.rows)
        assert book.rows[1].last_fired is None
        assert "w1" in {r.id for r in bot.app.engine.rules()}
    store = Store(tmp_path / "alertbot.db")
    (watch,) = store.watches()
    (delivery,) = [d for d in store.deliveries() if d.destination == f"telegram:{USER}"]
    store.close()
    assert (watch.id, watch.once) == (1, True)
    assert (delivery.state, delivery.last_error) == (
        "failed",
        "forbidden: Forbidden: bot was blocked by the user",
    )


@pytest.mark.parametrize("crash", ["before the revival", "before the save"])
async def test_a_once_watch_whose_alert_was_refused_stays_after_a_crash(tmp_path, fakes, crash):
    """After a refusal the pause is written, then the ``once`` watch made active again, then
    the engine's state saved (the refused alert before it). A SIGKILL before the revival left
    the watch ended; one before the save left the refused alert after the last save, which
    the restart took as the watch's firing, and ended it. Either way the watch was used up by
    an alert that reached no one (README: it stays, and alerts at its next time)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: 1 in book.rows)
    # the database as that SIGKILL leaves it: the pause written, the state saved last
    # before the alert, the watch as the alert's transaction left it or active again
    db = sqlite3.connect(tmp_path / "alertbot.db")
    with db:
        (seq, at) = db.execute("SELECT seq, time FROM alerts WHERE rule = 'w1'").fetchone()
        db.execute("UPDATE state_saved SET seq = ?", (seq,))
        db.execute("DELETE FROM pair_states WHERE rule = 'w1'")
        if crash == "before the revival":
            db.execute("UPDATE watches SET active = 0, last_fired = ? WHERE id = 1", (at,))
    db.close()
    tg.unblock(USER)
    async with Bot(tmp_path, binance, tg) as bot:
        book = bot.app.book
        assert book is not None
        assert [r.id for r in book.rows.values()] == [1]
        assert (await bot.say("/list")).startswith("Welcome back: your watch is active again.")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 110, T + 6000)
        await tg.wait_for(lambda: any("[w1]" in m.plain_text for m in tg.messages_to(USER)))
    store = Store(tmp_path / "alertbot.db")
    assert store.watches() == []  # used up by the alert that reached the chat
    store.close()


@pytest.mark.parametrize("saved", ["before the alert", "after it"])
async def test_a_once_watch_stays_when_a_crash_came_before_the_pause_was_written(
    tmp_path, fakes, saved
):
    """The refused alert's ``failed`` result and the chat's pause are two writes: a SIGKILL
    between them left the ``once`` watch ended by an alert that reached no one, and no pause
    naming it, so nothing revived it at the restart (README: it stays, and alerts at its next
    time). The stored refusal is taken up at start-up: the chat is paused again (its watches
    quiet, the refused alert named when it is back) and the watch kept."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: 1 in book.rows)
    # the database as that SIGKILL leaves it: the alert stored with the watch ended by it,
    # its Telegram delivery failed as blocked (written by this run), no pause, no revival;
    # the engine's state saved last before the alert or after it
    db = sqlite3.connect(tmp_path / "alertbot.db")
    with db:
        (alert, seq, at) = db.execute(
            "SELECT id, seq, time FROM alerts WHERE rule = 'w1'"
        ).fetchone()
        (state, error) = db.execute(
            "SELECT state, last_error FROM deliveries WHERE alert_id = ? AND destination = ?",
            (alert, f"telegram:{USER}"),
        ).fetchone()
        assert (state, error) == ("failed", "forbidden: Forbidden: bot was blocked by the user")
        db.execute(
            "UPDATE state_saved SET seq = ?", (seq if saved == "before the alert" else seq + 1,)
        )
        db.execute("DELETE FROM pair_states WHERE rule = 'w1'")
        db.execute(
            "UPDATE watches SET active = 0, last_fired = ?, revived = NULL WHERE id = 1", (at,)
        )
        db.execute("DELETE FROM paused_chats")
    db.close()
    async with Bot(tmp_path, binance, tg) as bot:  # the user has not unblocked the bot yet
        book = bot.app.book
        assert book is not None
        assert [r.id for r in book.rows.values()] == [1]
        assert book.rows[1].last_fired is None
        pause = book.paused.get(USER)
        assert pause is not None
        assert pause.missed == [alert]
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        calls = sends_to(tg, USER)
        await bot.tick("BTCUSDT", 90, T + 3000)
        await bot.tick("BTCUSDT", 110, T + 4000)  # paused: no alert, no call
        assert bot.app.pipeline.alerts == 0
        assert sends_to(tg, USER) == calls
        tg.unblock(USER)
        reply = await bot.say("/list")
        assert reply.startswith("Welcome back: your watch is active again.")
        assert CROSSING in reply  # the refused alert, named
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 110, T + 6000)
        await tg.wait_for(lambda: any("[w1]" in m.plain_text for m in tg.messages_to(USER)))
    store = Store(tmp_path / "alertbot.db")
    try:
        assert store.watches() == []  # used up by the alert that reached the chat
        assert store.paused_chats() == {}
    finally:
        store.close()


async def test_a_kept_once_watch_stays_after_a_restart_though_no_state_save_followed(
    tmp_path, fakes
):
    """The ``once`` watch kept through its refused alert (above) was safe on disk only once the
    engine's state was saved after it: with every save failing from then until the stop (a
    trigger refuses them here, as a full disk would), the restart took the refused alert for
    the watch's firing and ended it, though the user is told it is active. Its revival is one
    transaction of its own: the watch stays, paused, and alerts once the user is back."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        other = sqlite3.connect(tmp_path / "alertbot.db", isolation_level=None)
        other.execute(
            "CREATE TRIGGER no_state_save BEFORE INSERT ON state_saved"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        await blocked_crossing(bot)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: 1 in book.rows)
    other.execute("DROP TRIGGER no_state_save")  # the disk is back
    other.close()
    tg.unblock(USER)
    async with Bot(tmp_path, binance, tg) as bot:
        book = bot.app.book
        assert book is not None
        assert [r.id for r in book.of_chat(USER)] == [1]
        assert USER in book.paused
        reply = await bot.say("/help")
        assert reply.startswith("Welcome back: your watch is active again.")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 110, T + 6000)
        await tg.wait_for(lambda: any(CROSSING in m.text for m in tg.messages_to(USER)))
        assert 1 not in book.rows  # done now: it alerted


async def test_a_once_watch_is_kept_when_the_database_refuses_the_writes_for_a_while(
    tmp_path, fakes, caplog
):
    """The pause and the revival of the ``once`` watch whose alert was refused were tried
    once: the database refusing writes just then (read-only here, as a full or read-only
    volume) ended the watch for good, in memory too, and left the pause unwritten. Both are
    retried until written (one error line), as the outbox retries its writes."""
    binance, tg = fakes
    caplog.set_level(logging.INFO)
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        outbox, store = bot.app.notifier.outbox, bot.app.notifier.store
        assert outbox is not None
        assert store is not None
        book = bot.app.book
        assert book is not None
        tg.fail_next(1, status=429, retry_after=1, chat_id=USER)  # tried again in a second
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: any(c.status == 429 for c in tg.calls("sendMessage")))
        await outbox.db(store.db.execute, "PRAGMA query_only = ON")
        tg.block(USER)  # the second try is refused
        await tg.wait_for(lambda: "could not write its pause" in caplog.text)
        assert 1 not in book.rows
        await outbox.db(store.db.execute, "PRAGMA query_only = OFF")
        await tg.wait_for(lambda: 1 in book.rows)
        assert book.rows[1].last_fired is None
    store = Store(tmp_path / "alertbot.db")
    try:
        assert [w.id for w in store.watches()] == [1]
        assert USER in store.paused_chats()
    finally:
        store.close()
    errors = [m for r in caplog.records if "could not write its pause" in (m := r.getMessage())]
    assert len(errors) == 1


async def test_a_pause_survives_a_restart(tmp_path, fakes):
    """The pause is in the database: after a restart the blocked chat's watch stays quiet."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
    calls = sends_to(tg, USER)
    async with Bot(tmp_path, binance, tg) as bot:
        book = bot.app.book
        assert book is not None
        assert USER in book.paused
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 110, T + 6000)
        assert bot.app.pipeline.alerts == 0
    assert sends_to(tg, USER) == calls


async def test_a_chat_back_with_a_command_gets_a_note_and_its_watches_fire_again(tmp_path, fakes):
    """The user unblocks the bot and presses Start: the answer begins with a note that the
    watches are active again, naming the alert refused meanwhile; the next crossing alerts,
    and the ``once`` watch kept through the pause fires then too. A watch the user muted
    before stays muted (the pause is not the mute)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0")
        await bot.say("/watch BTCUSDT > 105 once")
        await bot.say("/watch BTCUSDT > 155 cooldown 0")
        await bot.say("/mute w3 1h")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
    async with Bot(tmp_path, binance, tg) as bot:
        tg.unblock(USER)
        reply = await bot.say("/start")
        before = len(tg.messages_to(USER))
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 160, T + 6000)  # w1 crosses, w2 (kept) holds; w3 is muted

        def alerts() -> str:
            return "\n".join(m.plain_text for m in tg.messages_to(USER)[before:])

        await tg.wait_for(lambda: alerts().count("price 160") == 2)
        assert bot.app.pipeline.alerts == 2
    first, missed, refused, refused_once, hello = reply.split("\n", 4)
    assert first == "Welcome back: your 3 watches are active again."
    assert missed == "While the bot was blocked, these 2 alerts could not reach you:"
    assert CROSSING in refused
    assert "BTCUSDT price > 105: price 110" in refused_once
    # each missed alert on its line, without the mute/stop hint it had for then (the once
    # watch's: that it has ended, which it has not: it was kept)
    assert "/mute" not in refused + refused_once
    assert "ended" not in refused_once, refused_once
    assert hello.startswith("\nHello! I send price alerts")
    assert "BTCUSDT price crosses above 100: price 160" in alerts()
    assert "BTCUSDT price > 105: price 160" in alerts()
    store = Store(tmp_path / "alertbot.db")
    assert store.paused_chats() == {}
    store.close()


async def test_a_chat_back_with_text_that_is_no_command_is_resumed_too(tmp_path, fakes):
    """Text in a private chat is answered (with /help); a chat back from blocking the bot that
    says 'hi' was answered and stayed paused, its watches quiet. The answer is the
    welcome-back note, and the pause ends, as at a command."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        tg.unblock(USER)
        reply = await bot.say("hi")
        book = bot.app.book
        assert book is not None
        assert USER not in book.paused
    assert reply.startswith("Welcome back: your watch is active again.\n")
    assert reply.endswith(
        "\n\nI read commands, which start with '/': /help lists them, e.g. /watch BTCUSDT > 70000"
    )


async def test_the_refused_alert_goes_to_the_fallback_webhook_and_the_log_says_so_once(
    tmp_path, fakes, caplog
):
    """As any alert Telegram refuses for good, the fallback webhook has it, with the chat; the
    log says so in the chat's one line, not in one line per alert (two here, merged)."""
    binance, tg = fakes
    async with WebhookReceiver() as hook, Bot(tmp_path, binance, tg, webhook_url=hook.url) as bot:
        await bot.say("/watch BTCUSDT crosses above 100")
        await bot.say("/watch BTCUSDT > 105")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        posted = await hook.wait_for_deliveries(2)
    assert sorted((p.json["chat_id"], p.json["fallback"], p.json["rule"]) for p in posted) == [
        (USER, True, "w1"),
        (USER, True, "w2"),
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"chat {USER} refuses the bot (forbidden: Forbidden: bot was blocked by the user): its 2 "
        "watches are paused until it is back (the bot unblocked or added again, or a command); "
        "the alerts it refused are stored as failed and sent to the fallback webhook"
    ]


async def test_the_fallback_copy_of_a_refused_once_alert_does_not_say_the_watch_ended(
    tmp_path, fakes
):
    """A ``once`` watch whose alert the blocked chat refused is kept for its next time (the
    pause), so the fallback webhook's copy must not say it has ended, as the chat's text does;
    it goes without the chat's command line, and the watch is still there."""
    binance, tg = fakes
    async with WebhookReceiver() as hook, Bot(tmp_path, binance, tg, webhook_url=hook.url) as bot:
        await bot.say("/watch BTCUSDT > 105 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        (posted,) = await hook.wait_for_deliveries(1)
    store = Store(tmp_path / "alertbot.db")
    try:
        assert [w.id for w in store.watches()] == [1]  # kept: it has not ended
    finally:
        store.close()
    message = posted.json["message"]
    assert message.startswith("BTCUSDT price > 105: price 110"), message
    assert "ended" not in message, message
    assert "/watch" not in message, message


async def test_a_rule_file_chat_that_blocked_the_bot_is_not_paused(tmp_path, fakes, caplog):
    """A chat named in a rule file's channel is the operator's: its rule keeps firing (and
    failing) as before, and the log says what to do."""
    binance, tg = fakes
    chat = 909
    rules = RuleSet(
        rules=(
            Rule(
                id="btc-100",
                condition=parse("price crosses above 100"),
                symbols=("BTCUSDT",),
                notify=("desk",),
            ),
        ),
        channels={"desk": Channel("desk", telegram=chat)},
    )
    async with Bot(tmp_path, binance, tg, rules) as bot:
        tg.block(chat)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        for i in range(2):
            await bot.tick("BTCUSDT", 90, T + 2000 * i)
            await bot.tick("BTCUSDT", 110, T + 1000 + 2000 * i)
        await tg.wait_for(lambda: sends_to(tg, chat) == 2)
        book = bot.app.book
        assert book is not None
        assert not book.paused
    refused = [m for r in caplog.records if "refused 1 alert for good" in (m := r.getMessage())]
    assert len(refused) == 2
    assert "it is named in the rule files or ALERTBOT_ADMIN_CHATS" in refused[0]


async def test_an_admins_status_counts_the_paused_chats(tmp_path, fakes):
    """A paused chat cannot ask for its /list; the operator sees how many there are."""
    binance, tg = fakes
    admin = 42
    async with Bot(tmp_path, binance, tg, admin_chats=(admin,)) as bot:
        await bot.say("/watch BTCUSDT crosses above 100")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        status = await bot.say("/status", chat=admin)
    assert "Chats paused (they blocked or removed the bot): 1, with 1 watch" in status


def paused_gauge(bot: Bot) -> list[str]:
    """The paused-chats lines of the app's /metrics exposition."""
    registry = CollectorRegistry()
    registry.register(AppCollector(bot.app))
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith("alertbot_paused_chats")]


async def test_metrics_count_the_paused_chats_until_they_are_back(tmp_path, fakes):
    """alertbot_paused_chats: the chats paused because they blocked the bot, as the database
    holds them (1 after the refusal, 0 once the chat is back with a command)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        assert paused_gauge(bot) == ["alertbot_paused_chats 0.0"]
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await blocked_crossing(bot)
        assert paused_gauge(bot) == ["alertbot_paused_chats 1.0"]
        tg.unblock(USER)
        await bot.say("/start")
        assert paused_gauge(bot) == ["alertbot_paused_chats 0.0"]


# ---------------------------------------------------------------- the bot's status in the chat

GROUP = -1_000_000_000_777
KICKED = "Forbidden: bot was kicked from the supergroup chat"


@pytest.mark.parametrize(
    ("chat", "refusal", "status", "welcome"),
    [
        (USER, "Forbidden: bot was blocked by the user", "member", "your watch"),
        (GROUP, KICKED, "administrator", "this chat's watch"),
    ],
    ids=["a user unblocks it", "a group adds it back"],
)
async def test_a_paused_chat_that_takes_the_bot_back_is_resumed_without_a_command(
    tmp_path, fakes, chat, refusal, status, welcome
):
    """Telegram's my_chat_member update (the bot's own status in the chat is member or
    administrator again) ends the pause as a command would: the chat gets the note that its
    watches are back, naming the alert it refused, and the next crossing alerts. Before, the
    watches stayed silent until someone there happened to send a command."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0", chat=chat)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.block(chat, refusal)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: chat in book.paused)
        before = len(tg.messages_to(chat))
        tg.bot_status(chat, status)
        await tg.wait_for(lambda: len(tg.messages_to(chat)) > before)
        note = tg.messages_to(chat)[before].plain_text
        assert chat not in book.paused
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 120, T + 6000)
        await tg.wait_for(lambda: "price 120" in tg.messages_to(chat)[-1].plain_text)
    first, missed, refused = note.split("\n")
    assert first == f"Welcome back: {welcome} is active again."
    assert missed == "While the bot was blocked, this alert could not reach you:"
    assert CROSSING in refused
    store = Store(tmp_path / "alertbot.db")
    assert store.paused_chats() == {}
    store.close()


@pytest.mark.parametrize(
    ("chat", "status", "reason"),
    [
        (USER, "kicked", "the user blocked the bot"),
        (GROUP, "left", "the bot was removed from the group"),
        (GROUP, "kicked", "the bot was removed from the group"),
    ],
    ids=["a user blocks it", "a group removes it", "a group bans it"],
)
async def test_a_chat_that_drops_the_bot_is_paused_before_any_alert_fails(
    tmp_path, fakes, caplog, chat, status, reason
):
    """The my_chat_member update that says the bot was blocked or removed pauses the chat at
    once, in the database too: its next crossing costs no call at all (before, the first alert
    was sent and refused to find out). A chat with no watches that drops the bot is not paused."""
    binance, tg = fakes
    idle = USER + 1 if chat == USER else GROUP - 1
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0", chat=chat)
        await bot.say("/help", chat=idle)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.bot_status(idle, "kicked")
        tg.bot_status(chat, status)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: chat in book.paused)
        assert idle not in book.paused
        calls = sends_to(tg, chat)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        assert bot.app.pipeline.alerts == 0
        assert sends_to(tg, chat) == calls
    store = Store(tmp_path / "alertbot.db")
    assert store.paused_chats()[chat].reason == reason
    store.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "alertbot"]
    assert [r.getMessage() for r in warnings] == [
        f"chat {chat} refuses the bot ({reason}): its 1 watch is paused until it is back "
        "(the bot unblocked or added again, or a command)"
    ]


# ---------------------------------------------------------------- a refused note or answer


async def refused_note(bot: Bot, chat: int, how: str) -> None:
    """``chat``'s daily digest (``how`` = "note") or the answer to its /list ("reply") is sent
    and refused."""
    tg = bot.tg
    calls = sends_to(tg, chat)
    chatbot = bot.app.chat
    assert chatbot is not None
    if how == "note":
        await chatbot.digest(at_utc(8, 30))
    else:
        tg.user_says(chat, "/list")
    await tg.wait_for(lambda: sends_to(tg, chat) > calls)


@pytest.mark.parametrize("how", ["note", "reply"])
async def test_a_note_or_answer_refused_as_blocked_pauses_the_chat(tmp_path, fakes, caplog, how):
    """A 403 "bot was blocked by the user" on the daily digest or on a command's answer pauses
    the chat as an alert's does (in the database too): before, only a refused alert paused it,
    so its next alerts were each sent and refused first."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0")
        await bot.say("/digest 08:30")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.block(USER)
        await refused_note(bot, USER, how)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: USER in book.paused)
        calls = sends_to(tg, USER)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        assert bot.app.pipeline.alerts == 0
        assert sends_to(tg, USER) == calls
    store = Store(tmp_path / "alertbot.db")
    reason = "forbidden: Forbidden: bot was blocked by the user"
    assert store.paused_chats()[USER].reason == reason
    store.close()
    assert f"chat {USER} refuses the bot ({reason}): its 1 watch is paused" in caplog.text


@pytest.mark.parametrize("how", ["note", "reply"])
async def test_a_note_or_answer_refused_for_another_reason_does_not_pause(tmp_path, fakes, how):
    """A 403 that does not say the chat dropped the bot (a group that lets no member send
    messages: "not enough rights") leaves the chat as it is: it has the bot, and pausing it
    would end its alerts until someone there sent a command."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0", chat=GROUP)
        await bot.say("/digest 08:30", chat=GROUP)
        tg.fail_chat(GROUP, 403, "Forbidden: not enough rights to send text messages to the chat")
        await refused_note(bot, GROUP, how)
        await bot.say("/help")  # handled after the refusal: it would be paused by now
        book = bot.app.book
        assert book is not None
        assert not book.paused


# ---------------------------------------------------------------- a group becomes a supergroup

BASIC, SUPER = -555, -1_000_000_000_555


async def test_a_paused_groups_pause_moves_to_its_supergroup(tmp_path, fakes):
    """A paused group upgraded to a supergroup: its pause (since, reason and the alert it
    refused) is the supergroup's, in memory and in the database, and none is left on the
    group's dead id. Before, the moved watches fired into the supergroup at once (and the pause,
    with the alert it held for the welcome back, was left on the old id for good). The
    supergroup's first command ends it with the note naming the refused alert."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 0", chat=BASIC, chat_type="group")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        # the group lets no member send: the bot is still there and sees the upgrade
        tg.fail_chat(BASIC, 403, "Forbidden: not enough rights to send text messages to the chat")
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: BASIC in book.paused)
        pause = book.paused[BASIC]
        assert len(pause.missed) == 1
        tg.upgrade_group(BASIC, SUPER)
        await tg.wait_for(lambda: bool(book.of_chat(SUPER)))
        assert book.paused == {SUPER: pause}
        await bot.tick("BTCUSDT", 90, T + 2000)
        await bot.tick("BTCUSDT", 120, T + 3000)
        assert bot.app.pipeline.alerts == 1  # the refused one: the supergroup's waits
    store = Store(tmp_path / "alertbot.db")
    assert store.paused_chats() == {SUPER: pause}
    store.close()
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/list", chat=SUPER)
    first, missed, refused, _ = reply.split("\n", 3)
    assert first == "Welcome back: this chat's watch is active again."
    assert missed == "While the bot was blocked, this alert could not reach you:"
    assert CROSSING in refused


def test_a_pause_saved_after_its_groups_move_is_not_left_on_the_old_id(tmp_path):
    """The pause is written by a task of its own (App._pause_written): one that runs after the
    group's move would put it back on the dead id, where nothing would ever end it. The
    database takes no pause for a group that became a supergroup."""
    store = Store(tmp_path / "alertbot.db")
    pause = Pause(
        1_772_000_000.0, "forbidden: Forbidden: bot was kicked from the group chat", ["a"]
    )
    store.pause_chat(BASIC, pause)
    store.move_chat(BASIC, SUPER, pause)
    store.pause_chat(BASIC, pause)
    assert store.paused_chats() == {SUPER: pause}
    store.close()


@pytest.mark.parametrize("back", [None, "a later alert delivered", "a watch made later"])
def test_a_refusal_of_a_version_before_pauses_is_taken_up_unless_the_chat_was_back(tmp_path, back):
    """A version before pauses ended a ``once`` watch for good at its refused alert, and the
    database says so just as a crash before the pause's write does. Taken up at start-up
    (App._revive_refused), a chat that has had the bot since would be paused, and its watches
    quiet until its next command: a refusal is taken up only while nothing says the chat was
    back after it."""
    store = Store(tmp_path / "alertbot.db")
    watch = WatchRow(0, USER, "BTCUSDT", "price crosses above 100", 0, 0.0, True, created=1.0)
    once = store.add_watch(watch)
    refused = AlertRecord(f"w{once}:BTCUSDT:{T}", f"w{once}", "BTCUSDT", T, "110", "c", "t", "")
    refused = dataclasses.replace(refused, watch=once, ends_watch=True)
    error = "forbidden: Forbidden: bot was blocked by the user"
    store.write([refused], [DeliveryRow(refused.id, f"telegram:{USER}")], [])
    store.write([], [], [Update(refused.id, f"telegram:{USER}", "failed", 1, error)])
    (_, _, _, refused_at) = store.refused_once("forbidden: ")[0]
    if back is not None:
        later = dataclasses.replace(watch, once=False, created=refused_at + 1)
        other = store.add_watch(later if back == "a watch made later" else watch)
        if back == "a later alert delivered":
            alert = dataclasses.replace(
                refused, id=f"w{other}:BTCUSDT:{T + 60_000}", rule=f"w{other}", time=T + 60_000,
                watch=other,
            )  # fmt: skip
            store.write([alert], [DeliveryRow(alert.id, f"telegram:{USER}")], [])
            store.write([], [], [Update(alert.id, f"telegram:{USER}", "sent", 1)])
    found = store.refused_once("forbidden: ")
    store.close()
    assert [(chat, alert) for chat, alert, _, _ in found] == (
        [(USER, refused.id)] if back is None else []
    )


def test_the_start_up_search_for_refused_once_watches_reads_a_chats_watches_by_index(tmp_path):
    """Store.refused_once asks, of each refusal, whether its chat made or fired a watch since.
    Without an index on every watch's chat (the other one holds active watches only), that was
    a scan of the whole watches table per refusal: 1.2 s at start for 100k watches and 200
    refusals, 0.17 s with the index (measured at aefffd0)."""
    store = Store(tmp_path / "a.db")
    plan = " | ".join(
        row[3]
        for row in store.db.execute(
            "EXPLAIN QUERY PLAN " + REFUSED_ONCE, (len("forbidden: "), "forbidden: ")
        )
    )
    assert "SCAN n" not in plan, plan
    assert "USING INDEX watches_of_chat" in plan, plan
