"""/history: the alerts sent to a chat, newest first, from the database (a real SQLite file),
with how each delivery went; of one symbol or one watch; in pages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alertbot.chat.commands import CommandError, History, parse_command
from alertbot.notify.render import format_time
from alertbot.store import AlertRecord, DeliveryRow, Store
from alertbot.zones import load_zone
from tests.fakes.binance import mini_ticker
from tests.test_chat import USER, Bot, T

OTHER = 777


def stored_alerts(
    tmp: Path, alerts: list[tuple[str, str, int, str, str]], chat: int = USER
) -> None:
    """Alerts (rule, symbol, event time, price, delivery state) already sent to ``chat`` in the
    database before the bot starts, as an earlier run left them: settled (sent or failed),
    so the start resumes none of them."""
    store = Store(tmp / "alertbot.db")
    records, rows = [], []
    for rule, symbol, time_ms, price, state in alerts:
        alert_id = f"{rule}|{symbol}|{time_ms}"
        records.append(
            AlertRecord(alert_id, rule, symbol, time_ms, price, "price > 100", "t", "h", created=1)
        )
        error = "Forbidden: bot was blocked by the user" if state == "failed" else None
        rows.append(DeliveryRow(alert_id, f"telegram:{chat}", state, 1, error, chat, 1.0))
    store.write(records, rows, [])
    store.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/history", History()),
        ("/history 2", History(2)),
        ("/history btc", History(symbol="BTC")),
        ("/history BTCUSDT 3", History(3, symbol="BTCUSDT")),
        ("/history w3", History(watch="w3")),
        ("/history W03 2", History(2, watch="w3")),
        ("/log", None),  # another word for it: answered with /history
    ],
)
def test_history_takes_a_symbol_or_a_watch_and_a_page(text: str, expected: History | None):
    if expected is None:
        with pytest.raises(CommandError, match="did you mean /history"):
            parse_command(text)
    else:
        assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/history 0", "expected a page number like 2, got '0'"),
        ("/history btc*", "one symbol, not a pattern like 'btc*'"),
        ("/history w3 2 3", "unexpected '3'"),
    ],
)
def test_a_malformed_history_is_answered_with_its_form(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    reply = info.value.reply()
    assert problem in reply.lower()
    assert "/history [SYMBOL|ID] [PAGE]" in reply


def test_history_in_reply_to_an_alert_is_its_watchs() -> None:
    assert parse_command("/history", replied="w5") == History(watch="w5")
    assert parse_command("/history 2", replied="w5") == History(2)  # words typed come first


async def test_history_lists_the_chats_alerts_newest_first(tmp_path, fakes):
    """Each alert sent here: its time in the chat's zone, its watch, symbol, condition and
    price; of a symbol (a coin as /list takes it), of a watch, or of the watch of the alert it
    replies to. Another chat's alerts are not shown."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone Europe/Berlin")
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch ETHUSDT < 50")
        await bot.say("/watch BTCUSDT > 100", chat=OTHER)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await bot.tick("BTCUSDT", 120, T)
        await tg.wait_for(lambda: any("[w1]" in m.plain_text for m in tg.messages_to(USER)))
        await tg.wait_for(lambda: any("[w3]" in m.plain_text for m in tg.messages_to(OTHER)))
        await bot.tick("ETHUSDT", 40, T + 2000)
        await tg.wait_for(lambda: any("[w2]" in m.plain_text for m in tg.messages_to(USER)))
        btc_alert = next(m for m in tg.messages_to(USER) if "[w1]" in m.plain_text)
        every = (await bot.say("/history")).splitlines()
        btc = (await bot.say("/history btc")).splitlines()
        w2 = (await bot.say("/history w2")).splitlines()
        replied = (await bot.say("/history", reply_to=btc_alert.message_id)).splitlines()
        none = await bot.say("/history SOLUSDT")
        status = (await bot.say("/status")).splitlines()
    zone = load_zone("Europe/Berlin")
    eth_line = f"{format_time(T + 2000, zone)}  w2 ETHUSDT price < 50: price 40"
    btc_line = f"{format_time(T, zone)}  w1 BTCUSDT price > 100: price 120"
    assert every == ["Alerts here, newest first: 2 alerts in the last 7 days.", eth_line, btc_line]
    assert btc == ["BTCUSDT alerts here, newest first: 1 alert in the last 7 days.", btc_line]
    assert w2 == ["Alerts of w2 here, newest first: 1 alert in the last 7 days.", eth_line]
    assert replied == ["Alerts of w1 here, newest first: 1 alert in the last 7 days.", btc_line]
    assert none == "No SOLUSDT alerts here in the last 7 days."
    # /status names the last one
    assert status[3] == (
        f"Last alert here: {format_time(T + 2000, zone)} (w2 ETHUSDT price < 50); "
        "/history lists all 2"
    )


async def test_history_says_what_a_move_or_a_metric_alert_measured(tmp_path, fakes):
    """A move's alert said 'up 7.00% from 100', a 24h change's its change, but /history said
    the price alone, which for these is not what fired: each line now says it after the price,
    as the alert did; a crossing either way, which way it went."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch SOLUSDT rises 5% in 1h")
        await bot.say("/watch ETHUSDT change_24h > 5%")
        await bot.say("/watch BTCUSDT crosses 100")
        await binance.wait_for_subscriptions(
            {"solusdt@miniTicker", "ethusdt@miniTicker", "btcusdt@miniTicker"}
        )
        await bot.tick("SOLUSDT", 100, T)
        await bot.tick("SOLUSDT", 107, T + 1000)
        await binance.publish([mini_ticker("ETHUSDT", 106, T + 2000, open=100)])
        await bot.tick("BTCUSDT", 90, T + 3000)
        await bot.tick("BTCUSDT", 110, T + 4000)
        await tg.wait_for(lambda: any("[w3]" in m.plain_text for m in tg.messages_to(USER)))
        lines = (await bot.say("/history")).splitlines()[1:]
    assert [line.partition("  ")[2] for line in lines] == [
        "w3 BTCUSDT price crosses 100: price 110, crossed up",
        "w2 ETHUSDT change_24h > 5%: price 106, change_24h +6.00%",
        "w1 SOLUSDT rises 5% in 1h: price 107, up 7.00% from 100",
    ]


async def test_history_comes_in_pages_with_the_command_for_the_next(tmp_path, fakes):
    """20 to a page, the newest first; the last line names the command for older ones; a page
    past the last is answered with the last page's command. Alerts an earlier run sent are
    there, read from the database."""
    stored_alerts(
        tmp_path,
        [(f"w{i % 3 + 1}", "BTCUSDT", T + i * 1000, str(100 + i), "sent") for i in range(45)],
    )
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        first = (await bot.say("/history")).splitlines()
        third = (await bot.say("/history 3")).splitlines()
        past = await bot.say("/history 4")
        of_w1 = await bot.say("/history w1 2")
    assert first[0] == "Alerts here, newest first: 45 alerts in the last 7 days, page 1 of 3."
    assert [line.rsplit(" ", 1)[1] for line in first[1:21]] == [str(144 - i) for i in range(20)]
    assert first[21] == "Older: /history 2"
    assert len(first) == 22
    assert [line.rsplit(" ", 1)[1] for line in third[1:]] == [str(104 - i) for i in range(5)]
    assert past == "There is no page 4 of them: /history 3 is the last."
    # w1's are i = 0, 3, ..., 42: 15 of them, one page
    assert of_w1 == "There is no page 2 of them: /history w1 shows them all."


async def test_history_says_how_a_delivery_went_when_it_did_not_simply_go(tmp_path, fakes):
    """An alert Telegram refused for good says so, with Telegram's words; one still being
    tried says how many tries so far and why they failed; a sent one says nothing more."""
    stored_alerts(
        tmp_path,
        [("w7", "BTCUSDT", T, "110", "failed"), ("w7", "BTCUSDT", T + 1000, "111", "sent")],
    )
    binance, tg = fakes
    async with Bot(
        tmp_path, binance, tg, delivery_settings={"backoff_initial": 60, "backoff_max": 60}
    ) as bot:
        await bot.say("/watch ETHUSDT < 50")
        await binance.wait_for_subscriptions({"ethusdt@miniTicker"})
        tg.fail_next(1, status=502, chat_id=USER)
        await bot.tick("ETHUSDT", 40, T + 5000)
        store = bot.app.notifier.store
        assert store is not None
        await tg.wait_for(
            lambda: any(d.attempts == 1 for d in store.deliveries() if d.alert_id.startswith("w1"))
        )
        lines = (await bot.say("/history")).splitlines()
    assert lines[1].endswith(
        "  w1 ETHUSDT price < 50: price 40 · not sent yet (1 try: NetworkError: Bad Gateway)"
    ), lines[1]
    assert lines[2].endswith("  w7 BTCUSDT price > 100: price 111")
    assert lines[3].endswith(
        "  w7 BTCUSDT price > 100: price 110"
        " · not delivered: Forbidden: bot was blocked by the user"
    )


async def test_history_says_when_the_fallback_webhook_has_an_alert_telegram_did_not_take(
    tmp_path, fakes, hook
):
    """Telegram failed and the fallback webhook took the alert: /history says it is not sent
    here yet and the webhook has it, with Telegram's last error; the watch's note shows."""
    binance, tg = fakes
    async with Bot(
        tmp_path,
        binance,
        tg,
        webhook_url=hook.url,
        delivery_settings={
            "webhook_secret": "hook-secret",
            "fallback_after": 0.0,
            "backoff_initial": 60,
            "backoff_max": 60,
        },
    ) as bot:
        await bot.say("/watch ETHUSDT < 50 note buy the dip")
        await binance.wait_for_subscriptions({"ethusdt@miniTicker"})
        tg.fail_next(1, status=502, chat_id=USER)
        await bot.tick("ETHUSDT", 40, T)
        (fallback,) = await hook.wait_for_deliveries(1)
        store = bot.app.notifier.store
        assert store is not None
        await tg.wait_for(
            lambda: any(d.state == "fell_back" for d in store.deliveries() if d.chat_id == USER)
        )
        lines = (await bot.say("/history")).splitlines()
    assert lines[1].endswith(
        "  w1 ETHUSDT price < 50: price 40, note «buy the dip» · not sent here yet, the fallback"
        " webhook has it: NetworkError: Bad Gateway"
    ), lines[1]
    # the webhook's JSON has the note as a field of its own, as well as in its message
    assert fallback.json["note"] == "buy the dip"
    assert "Note: buy the dip" in fallback.json["message"]


async def test_history_of_a_group_that_became_a_supergroup_keeps_the_groups_alerts(tmp_path, fakes):
    """A group's alerts were sent to its old id: after it became a supergroup, /history there
    shows them too."""
    group, supergroup = -100, -1001234
    stored_alerts(tmp_path, [("w1", "BTCUSDT", T, "110", "sent")], chat=group)
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/help", chat=group, chat_type="group")
        tg.upgrade_group(group, supergroup)
        lines = (await bot.say("/history", chat=supergroup)).splitlines()
    assert lines[0] == "Alerts here, newest first: 1 alert in the last 7 days."
    assert lines[1].endswith("  w1 BTCUSDT price > 100: price 110")


async def test_history_with_nothing_to_show_points_to_list(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, delivery_settings={"alert_retention": 0}) as bot:
        nothing = await bot.say("/history")
    assert nothing == "No alerts here. /list shows this chat's watches."


async def test_the_daily_digest_counts_the_alerts_of_the_last_day(tmp_path, fakes):
    """The digest ends with how many alerts the chat had in the 24 hours before it (one of
    two days ago is not counted), and points to /history; a day without any says so too."""
    now = time.time()
    stored_alerts(tmp_path, [("w9", "BTCUSDT", int((now - 2 * 86400) * 1000), "1", "sent")])
    hh, mm = time.gmtime(now)[3:5]
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        chat = bot.app.chat
        assert chat is not None
        await bot.say(f"/digest {hh:02d}:{mm:02d}")
        await bot.say("/watch BTCUSDT > 100")
        quiet = (await chat._fired_since(USER, now), chat.digest_text(USER, 0).splitlines()[-1])
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 120, int(now * 1000) - 1000)
        await tg.wait_for(lambda: any("[w1]" in m.plain_text for m in tg.messages_to(USER)))
        await chat.digest(now)
        await tg.wait_for(lambda: tg.messages_to(USER)[-1].text.startswith("Daily digest:"))
        digest = tg.messages_to(USER)[-1].text
    assert quiet == (0, "No alerts in the last 24 hours.")
    assert digest.splitlines()[-1] == "Alerts in the last 24 hours: 1 (/history lists them)."


async def test_a_digest_says_no_count_when_alerts_are_kept_less_than_a_day(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, delivery_settings={"alert_retention": 3600}) as bot:
        chat = bot.app.chat
        assert chat is not None
        await bot.say("/watch BTCUSDT > 100")
        fired = await chat._fired_since(USER, time.time())
        text = chat.digest_text(USER, fired)
    assert fired is None
    assert "Alerts in the last" not in text
    assert "No alerts" not in text
