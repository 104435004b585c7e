"""The Mute 1h / Stop buttons under a chat watch's alert, end to end: the alert on the fake
Telegram with its inline keyboard, a user's press, the watch muted or removed, the press
answered and the buttons changed in place."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from alertbot.notify.render import format_time
from alertbot.notify.telegram import ALERT_MUTE, ALERT_SHOWN, ALERT_STOP, watch_buttons
from alertbot.rules.conditions import parse
from alertbot.rules.model import Channel, Rule, RuleSet
from tests.fakes.binance import mini_ticker
from tests.fakes.telegram import FakeTelegram, Message
from tests.test_chat import USER, Bot, T

GROUP, SUPERGROUP = -555, -1_000_000_000_555
BUTTONS = [[("Mute 1h", "amute:w1"), ("Stop", "astop:w1")]]


def buttons(msg: Message) -> list[list[tuple[str, str]]]:
    """A message's inline keyboard as (text, callback_data) rows, its links left out (see
    links); [] without one."""
    rows: list[list[dict[str, Any]]] = (msg.reply_markup or {}).get("inline_keyboard", [])
    pressed = [[(b["text"], b["callback_data"]) for b in row if "url" not in b] for row in rows]
    return [row for row in pressed if row]


def links(msg: Message) -> list[tuple[str, str]]:
    """A message's link buttons as (text, url)."""
    rows: list[list[dict[str, Any]]] = (msg.reply_markup or {}).get("inline_keyboard", [])
    return [(b["text"], b["url"]) for row in rows for b in row if "url" in b]


async def alert_of_w1(
    bot: Bot, chat: int = USER, *, fail: str | None = None, **say: Any
) -> Message:
    """/watch BTCUSDT > 100 (w1) in ``chat``, and its alert there. ``fail``: Telegram refuses
    the alert's first send so (a 400's description)."""
    tg = bot.tg
    await bot.say("/watch BTCUSDT > 100", chat=chat, **say)
    await bot.binance.wait_for_subscriptions({"btcusdt@miniTicker"})
    if fail is not None:
        tg.fail_next(1, status=400, description=fail, chat_id=chat)
    before = len(tg.messages_to(chat))
    await bot.tick("BTCUSDT", 110, T)
    await tg.wait_for(lambda: len(tg.messages_to(chat)) > before)
    return tg.messages_to(chat)[-1]


async def press(tg: FakeTelegram, msg: Message, data: str) -> str | None:
    """The user presses the button ``data`` under ``msg``; the press's answer."""
    answered = len(tg.answered_callbacks)
    tg.user_presses(msg.chat_id, msg.message_id, data)
    await tg.wait_for(lambda: len(tg.answered_callbacks) > answered)
    return tg.answered_callbacks[-1].text


def test_the_buttons_of_the_largest_watch_id_fit_telegrams_64_bytes():
    """callback_data is at most 64 bytes (else Telegram refuses the whole alert): a watch's
    buttons carry its id alone, which for the largest SQLite id still fits."""
    largest = f"w{2**63 - 1}"
    data = [b.callback_data for row in watch_buttons(largest).inline_keyboard for b in row]
    assert data == [f"{ALERT_MUTE}:{largest}", f"{ALERT_STOP}:{largest}"]
    kinds = (ALERT_MUTE, ALERT_STOP, ALERT_SHOWN)
    assert max(len(f"{kind}:{largest}".encode()) for kind in kinds) <= 64


async def test_a_watch_alert_has_mute_and_stop_buttons_in_place_of_the_hint_line(tmp_path, fakes):
    """A command with arguments is not tappable in Telegram: the alert's last line
    'Mute: /mute w1 1h · stop: /unwatch w1' had to be typed. The alert has buttons for that
    watch instead, and no hint line; its HTML stays."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
    assert (
        alert.plain_text == f"BTCUSDT price > 100: price 110 (+0.00% 24h) at {format_time(T)} [w1]"
    )
    assert alert.parse_mode == "HTML"
    assert buttons(alert) == BUTTONS


async def test_a_rule_files_alert_has_no_buttons(tmp_path, fakes):
    """A rule file's rule is not a chat watch: its alert has no buttons (nor a hint line),
    while the chat's own watch's alert, sent after it, has them."""
    binance, tg = fakes
    ops = Rule(id="btc-200", condition=parse("price > 200"), symbols=("BTCUSDT",), notify=("desk",))
    rules = RuleSet(rules=(ops,), channels={"desk": Channel("desk", telegram=USER)})
    async with Bot(tmp_path, binance, tg, rules) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 150, T)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].plain_text)
        await bot.tick("BTCUSDT", 250, T + 1000)
        await tg.wait_for(lambda: "[btc-200]" in tg.messages_to(USER)[-1].plain_text)
    watch_alert, file_alert = tg.messages_to(USER)[-2:]
    assert buttons(watch_alert) == BUTTONS
    assert buttons(file_alert) == []
    assert "\n" not in file_alert.plain_text


async def test_the_mute_button_mutes_that_watch_for_an_hour_and_shows_until_when(tmp_path, fakes):
    """Mute 1h mutes the alert's watch for an hour (the engine holds it back), the press is
    answered, and the alert's buttons say until when it is muted, Stop still there."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        before = time.time()
        answer = await press(tg, alert, "amute:w1")
        book = bot.app.book
        assert book is not None
        muted = book.rows[1].muted_until
        assert muted is not None
        assert before + 3600 <= muted <= time.time() + 3600
        assert [r.muted_until_ms for r in bot.app.engine.rules()] == [int(muted * 1000)]
        await tg.wait_for(lambda: alert.edits == 1)
    assert answer == "Muted w1 for 1h."
    [[(label, shown), stop]] = buttons(alert)
    assert label.startswith("Muted until ")
    assert label.endswith(" UTC")
    assert f"{time.gmtime(muted).tm_hour:02d}:{time.gmtime(muted).tm_min:02d} UTC" in label
    assert (shown, stop) == ("ashown:w1", ("Stop", "astop:w1"))
    assert alert.plain_text.endswith("[w1]")  # the text stays as sent


async def test_the_muted_until_button_shows_the_time_in_the_chats_zone(tmp_path, fakes):
    """After /timezone UTC+8, "Muted until" is that zone's time of the mute's end (with its
    day when that is tomorrow there: a mute pressed in the zone's last hour of the day)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone UTC+8")
        alert = await alert_of_w1(bot)
        await press(tg, alert, "amute:w1")
        book = bot.app.book
        assert book is not None
        muted = book.rows[1].muted_until
        assert muted is not None
        await tg.wait_for(lambda: alert.edits == 1)
    [[(label, _), _]] = buttons(alert)
    plus_8 = dt.timezone(dt.timedelta(hours=8))
    end = dt.datetime.fromtimestamp(muted, plus_8)
    tomorrow = end.date() != dt.datetime.fromtimestamp(muted - 3600, plus_8).date()
    day = f"{end:%b} {end.day} " if tomorrow else ""
    assert f"Muted until {day}{end:%H:%M} UTC+08:00" in label


async def test_the_muted_until_button_says_the_state_and_gives_mute_back_once_unmuted(
    tmp_path, fakes
):
    """'Muted until …' pressed says until when; after /unmute it says the watch alerts and
    the Mute 1h / Stop buttons are back (the label no longer tells the truth)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        await press(tg, alert, "amute:w1")
        await tg.wait_for(lambda: alert.edits == 1)
        book = bot.app.book
        assert book is not None
        muted = book.rows[1].muted_until
        assert muted is not None
        while_muted = await press(tg, alert, "ashown:w1")
        await bot.say("/unmute w1")
        after = await press(tg, alert, "ashown:w1")
        await tg.wait_for(lambda: alert.edits == 2)
    assert while_muted == f"w1 is muted until {format_time(int(muted * 1000))}."
    assert after == "w1 is not muted: it alerts."
    assert buttons(alert) == BUTTONS


async def test_the_alerts_mute_button_never_shortens_a_longer_mute(tmp_path, fakes):
    """As /list's button: after '/mute w1 6h', Mute 1h under the alert keeps the 6 hours and
    says so, and the buttons show the 6 hours' end."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        await bot.say("/mute w1 6h")
        book = bot.app.book
        assert book is not None
        six_hours = book.rows[1].muted_until
        assert six_hours is not None
        answer = await press(tg, alert, "amute:w1")
        assert book.rows[1].muted_until == six_hours
        await tg.wait_for(lambda: alert.edits == 1)
    assert answer == f"w1 is already muted until {format_time(int(six_hours * 1000))}."
    shown = time.gmtime(six_hours)
    assert f"{shown.tm_hour:02d}:{shown.tm_min:02d} UTC" in buttons(alert)[0][0][0]


async def test_the_stop_button_removes_that_watch_and_says_stopped(tmp_path, fakes):
    """Stop removes the alert's watch (its stream is unsubscribed), the answer names it, and
    the buttons become one 'Stopped', which pressed says the watch alerts no more."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        answer = await press(tg, alert, "astop:w1")
        assert bot.app.book is not None
        assert bot.app.book.rows == {}
        await binance.wait_for(lambda: "btcusdt@miniTicker" not in binance.subscribed())
        await tg.wait_for(lambda: alert.edits == 1)
        assert buttons(alert) == [[("Stopped", "ashown:w1")]]
        again = await press(tg, alert, "ashown:w1")
    assert answer == "Stopped w1 (BTCUSDT price > 100)."
    assert again == "w1 is gone: it alerts no more."


async def test_a_button_of_a_watch_already_removed_is_answered_and_goes(tmp_path, fakes):
    """Mute 1h under the alert of a watch removed meanwhile (/unwatch typed) gets a clear
    answer, no error, and the buttons, which can do nothing more, are removed (the Chart
    link stays: the symbol's chart is still there)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        await bot.say("/unwatch w1")
        answer = await press(tg, alert, "amute:w1")
        await tg.wait_for(lambda: alert.edits == 1)
    assert answer == "w1 is gone already: it alerts no more."
    assert buttons(alert) == []
    assert links(alert) == [("Chart", "https://www.binance.com/en/futures/BTCUSDT")]


async def test_a_watchs_alert_links_its_symbols_chart_and_keeps_the_link(tmp_path, fakes):
    """Under a watch's alert, a Chart link to the symbol's page on Binance (USD-M futures,
    the default market), in a row of its own below Mute 1h and Stop; it stays when a press
    changes the buttons (Muted until …, Stopped)."""
    binance, tg = fakes
    chart = [("Chart", "https://www.binance.com/en/futures/BTCUSDT")]
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        sent = (buttons(alert), links(alert))
        await press(tg, alert, "amute:w1")
        await tg.wait_for(lambda: alert.edits == 1)
        muted = links(alert)
        await press(tg, alert, "astop:w1")
        await tg.wait_for(lambda: alert.edits == 2)
    assert sent == ([[("Mute 1h", "amute:w1"), ("Stop", "astop:w1")]], chart)
    assert muted == chart
    assert buttons(alert) == [[("Stopped", "ashown:w1")]]
    assert links(alert) == chart
    assert alert.reply_markup is not None
    assert len(alert.reply_markup["inline_keyboard"]) == 2  # the link in a row of its own


async def test_a_button_under_an_alert_sent_before_a_restart_acts(tmp_path, fakes):
    """The buttons carry all they need (the watch's id; the chat is the message's): a press
    on an alert the previous run sent mutes the watch."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
    async with Bot(tmp_path, binance, tg) as bot:
        answer = await press(tg, alert, "amute:w1")
        assert bot.app.book is not None
        assert bot.app.book.rows[1].muted_until is not None
    assert answer == "Muted w1 for 1h."


async def test_a_button_under_a_groups_alert_acts_on_its_watch_moved_to_the_supergroup(
    tmp_path, fakes
):
    """The supergroup shows the group's history: a press on an alert sent to the group comes
    from the old id, and stops the watch that moved to the supergroup (as /list's buttons)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot, GROUP, chat_type="group")
        assert buttons(alert) == BUTTONS
        tg.upgrade_group(GROUP, SUPERGROUP)
        await bot.say("/help", chat=SUPERGROUP)  # the service messages are handled by then
        answer = await press(tg, alert, "astop:w1")
        assert bot.app.book is not None
        assert bot.app.book.of_chat(SUPERGROUP) == []
    assert answer == "Stopped w1 (BTCUSDT price > 100)."


async def test_a_button_in_a_chat_no_longer_allowed_does_nothing(tmp_path, fakes):
    """Who may press is who may type the commands: a chat taken off the allow-list after its
    alert presses Mute 1h in vain (the press is answered, with no text), as its /mute would be
    refused."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, allowed_chats=(USER,)) as bot:
        alert = await alert_of_w1(bot)
    async with Bot(tmp_path, binance, tg, allowed_chats=(USER + 1,)) as bot:
        answer = await press(tg, alert, "amute:w1")
        assert bot.app.book is not None
        assert bot.app.book.rows[1].muted_until is None
    assert answer is None
    assert alert.edits == 0


async def test_a_message_merging_two_watches_alerts_keeps_the_hint_lines(tmp_path, fakes):
    """Alerts of w1 and w2 merged into one message: a Mute button could not say which watch it
    is for, so the message has none and each alert keeps its line of commands."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch BTCUSDT > 105")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.fail_next(1, status=502, chat_id=USER)  # the first waits for the second
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 3)
    merged = tg.messages_to(USER)[-1]
    assert buttons(merged) == []
    lines = merged.plain_text.split("\n")
    assert "Mute: /mute w1 1h · stop: /unwatch w1" in lines
    assert "Mute: /mute w2 1h · stop: /unwatch w2" in lines
    # as code: a tap on a /command link would send '/mute' alone
    assert merged.shown_as("code") == ["/mute w1 1h", "/unwatch w1", "/mute w2 1h", "/unwatch w2"]


async def test_a_message_merging_one_pattern_watchs_alerts_has_its_buttons(tmp_path, fakes):
    """An admin's pattern watch (*USDT) alerting for two symbols at once: one watch, so the
    merged message has its buttons, and no alert repeats the hint line."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, admin_chats=(USER,)) as bot:
        await bot.say("/watch *USDT > 100")
        await binance.wait_for_subscriptions({"!miniTicker@arr"})
        tg.fail_next(1, status=502, chat_id=USER)
        await binance.publish([mini_ticker("BTCUSDT", 110, T), mini_ticker("ETHUSDT", 120, T)])
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
    merged = tg.messages_to(USER)[-1]
    assert buttons(merged) == BUTTONS
    assert "BTCUSDT" in merged.plain_text
    assert "ETHUSDT" in merged.plain_text
    assert "Mute:" not in merged.plain_text


async def test_an_alert_sent_again_as_plain_text_keeps_its_buttons(tmp_path, fakes):
    """Telegram refusing the HTML: the alert goes again as plain text, buttons and all."""
    binance, tg = fakes
    refusal = "Bad Request: can't parse entities: unsupported start tag"
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot, fail=refusal)
    assert alert.parse_mode is None
    assert buttons(alert) == BUTTONS
    assert alert.plain_text.endswith("[w1]")


async def test_an_alert_whose_buttons_telegram_refuses_goes_without_them(tmp_path, fakes):
    """Telegram refusing the keyboard (BUTTON_DATA_INVALID) used to fail the alert for good:
    it goes again without buttons, with its hint line."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot, fail="Bad Request: BUTTON_DATA_INVALID")
    assert buttons(alert) == []
    assert alert.plain_text.endswith("\nMute: /mute w1 1h · stop: /unwatch w1")


async def test_the_muted_until_button_pressed_after_a_typed_mute_shows_its_new_end(tmp_path, fakes):
    """Mute 1h, then '/mute w1 6h' typed: the button still said the first hour's end, and
    pressed it only answered. Pressed, it now also shows the mute's end as it is."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        await press(tg, alert, "amute:w1")
        await tg.wait_for(lambda: alert.edits == 1)
        await bot.say("/mute w1 6h")
        book = bot.app.book
        assert book is not None
        six_hours = book.rows[1].muted_until
        assert six_hours is not None
        await press(tg, alert, "ashown:w1")
        await tg.wait_for(lambda: alert.edits == 2)
    shown = time.gmtime(six_hours)
    [[(label, data), stop]] = buttons(alert)
    assert f"{shown.tm_hour:02d}:{shown.tm_min:02d} UTC" in label
    assert (data, stop) == ("ashown:w1", ("Stop", "astop:w1"))


async def test_the_muted_until_button_of_a_mute_into_next_year_names_the_year(tmp_path, fakes):
    """'/mute w1 366d', then Mute 1h under the alert (which keeps the longer mute): the button
    said 'Muted until Nov 24 14:05 UTC', read as tomorrow, for a mute that ends next year. A
    day in another year than today's is shown with its year."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot)
        await bot.say("/mute w1 366d")
        book = bot.app.book
        assert book is not None
        until = book.rows[1].muted_until
        assert until is not None
        await press(tg, alert, "amute:w1")
        await tg.wait_for(lambda: alert.edits == 1)
    end = time.gmtime(until)
    label = buttons(alert)[0][0][0]
    assert label == (
        f"Muted until {time.strftime('%b', end)} {end.tm_mday} {end.tm_year} "
        f"{end.tm_hour:02d}:{end.tm_min:02d} UTC"
    )


async def test_a_button_of_a_groups_watch_merged_into_its_supergroups_twin_acts_on_the_twin(
    tmp_path, fakes
):
    """The supergroup made the same watch (w2) before the bot knew of the upgrade: the move
    ends the group's w1 and keeps w2. Stop under w1's alert in the history answered 'w1 is
    gone already: it alerts no more' while w2 went on alerting the same thing; it stops w2."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        alert = await alert_of_w1(bot, GROUP, chat_type="group")
        await bot.say("/watch BTCUSDT > 100", chat=SUPERGROUP, chat_type="supergroup")
        tg.upgrade_group(GROUP, SUPERGROUP)
        await bot.say("/help", chat=SUPERGROUP)  # the service messages are handled by then
        book = bot.app.book
        assert book is not None
        assert [r.id for r in book.of_chat(SUPERGROUP)] == [2]
        answer = await press(tg, alert, "astop:w1")
        assert book.of_chat(SUPERGROUP) == []
    assert answer == "Stopped w2 (BTCUSDT price > 100)."


async def test_stop_under_the_alert_of_a_long_condition_is_answered_cut_short(tmp_path, fakes):
    """A press's answer is at most 200 characters: Stop under the alert of a watch whose
    condition is long answered 'Stopped w1 (BTCUSDT any(...))' whole, Telegram refused it
    (MESSAGE_TOO_LONG) and the user saw no answer. It is cut short, with '…'."""
    binance, tg = fakes
    long = "any(" + ", ".join(f"price crosses {70000 + i}.123456" for i in range(8)) + ")"
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say(f"/watch BTCUSDT {long}")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 69_000, T)
        await bot.tick("BTCUSDT", 71_000, T + 1000)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].plain_text)
        alert = tg.messages_to(USER)[-1]
        answer = await press(tg, alert, "astop:w1")
        assert bot.app.book is not None
        assert bot.app.book.rows == {}
    assert answer is not None
    assert answer.startswith("Stopped w1 (BTCUSDT any(price crosses 70000.123456, ")
    assert answer.endswith("…")
    assert len(answer) == 200


async def test_a_new_watchs_answer_has_a_remove_button(tmp_path, fakes):
    """A watch made by a slip (the wrong level, the wrong coin) went with a typed /unwatch; its
    answer now has a Remove button, the Stop of its alerts: pressed, the watch is gone and the
    button says so. An answer that made no watch (one the chat has, an error) or several (their
    /unwatch is in the text) has none."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        made = tg.messages_to(USER)[-1]
        shown = buttons(made)
        await bot.say("/watch BTCUSDT > 100")
        again = tg.messages_to(USER)[-1]
        await bot.say("/watch BTCUSDT > 120, 130")
        several = tg.messages_to(USER)[-1]
        answered = await press(tg, made, f"{ALERT_STOP}:w1")
        stopped = [[("Stopped", f"{ALERT_SHOWN}:w1")]]
        await tg.wait_for(lambda: buttons(made) == stopped)  # the answer edited in place
        book = bot.app.book
        assert book is not None
        left = sorted(book.rows)
    assert shown == [[("Remove w1", f"{ALERT_STOP}:w1")]]
    assert buttons(again) == []
    assert buttons(several) == []
    assert answered == "Stopped w1 (BTCUSDT price > 100)."
    assert left == [2, 3]
