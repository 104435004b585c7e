"""Tests of the fake Telegram Bot API (tests/fakes/telegram.py).

The delivery and chat-command tests trust this fake to behave like api.telegram.org; each test here
pins one behaviour with plain ``httpx`` or with python-telegram-bot's own ``Bot``, never with
alertbot's code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import telegram
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    ApplicationBuilder,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from tests.fakes.telegram import FakeTelegram, HTMLError, Message, parse_html

CHAT = 42
GROUP = -1001234567890
TLS = ssl.create_default_context()  # one for all clients: building one costs ~30 ms


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, verify=TLS) as c:
        yield c


@asynccontextmanager
async def ptb(fake: FakeTelegram, **request: Any) -> AsyncIterator[telegram.Bot]:
    """python-telegram-bot's Bot against the fake (initialize: getMe; shutdown on exit)."""
    bot = telegram.Bot(
        fake.token,
        base_url=f"{fake.api_url}/bot",
        request=HTTPXRequest(**request, httpx_kwargs={"verify": TLS}),
        get_updates_request=HTTPXRequest(**request, httpx_kwargs={"verify": TLS}),
    )
    async with bot:
        yield bot


async def call(
    c: httpx.AsyncClient, fake: FakeTelegram, method: str, **params: Any
) -> httpx.Response:
    """POST ``params`` as JSON, the way a plain client does."""
    return await c.post(f"{fake.api_url}/bot{fake.token}/{method}", json=params)


async def send(c: httpx.AsyncClient, fake: FakeTelegram, text: str, **params: Any) -> Any:
    params.setdefault("chat_id", CHAT)
    return (await call(c, fake, "sendMessage", text=text, **params)).json()


# --- python-telegram-bot against the fake


async def test_ptb_initialize_gets_the_bot_user(tg: FakeTelegram) -> None:
    async with ptb(tg) as bot:
        assert (bot.id, bot.username, bot.bot.is_bot) == (123456, "alertbot_test_bot", True)
        assert bot.bot.can_read_all_group_messages is False
    assert [r.method for r in tg.requests] == ["getMe"]


async def test_ptb_send_message_html_is_delivered_with_typed_params(tg: FakeTelegram) -> None:
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("Mute 1h", callback_data="mute:r1")]]
    )
    async with ptb(tg) as bot:
        sent = await bot.send_message(
            CHAT, "<b>BTCUSDT</b> &gt; 70000", parse_mode="HTML", reply_markup=keyboard
        )
    assert (sent.text, sent.chat.type, sent.message_id) == ("BTCUSDT > 70000", "private", 1)
    assert sent.entities[0].type == "bold"
    assert sent.reply_markup == keyboard
    [msg] = tg.messages_to(CHAT)
    assert (msg.text, msg.plain_text, msg.parse_mode) == (
        "<b>BTCUSDT</b> &gt; 70000",
        "BTCUSDT > 70000",
        "HTML",
    )
    assert msg.reply_markup == {
        "inline_keyboard": [[{"text": "Mute 1h", "callback_data": "mute:r1"}]]
    }
    request = tg.calls("sendMessage")[0]
    assert request.params["chat_id"] == CHAT  # form-encoded "42" comes back as an int
    assert request.status == 200


async def test_ptb_plain_text_with_entities_keeps_them_in_utf16_units(tg: FakeTelegram) -> None:
    """A plain text sent with ``entities`` (no parse mode): the fake keeps them, offsets in
    UTF-16 units, and one past the text's end is refused, as by Telegram."""
    code = telegram.MessageEntity(telegram.MessageEntity.CODE, 3, 11)
    async with ptb(tg) as bot:
        sent = await bot.send_message(CHAT, "📈 /mute w3 1h", entities=[code])
        with pytest.raises(telegram.error.BadRequest, match=r"(?i)can.t parse entities"):
            await bot.send_message(CHAT, "/mute", entities=[telegram.MessageEntity("code", 0, 6)])
    assert sent.entities == (code,)
    [msg] = tg.messages_to(CHAT)
    assert (msg.text, msg.parse_mode, msg.shown_as("code")) == (
        "📈 /mute w3 1h",
        None,
        ["/mute w3 1h"],
    )


async def test_ptb_429_is_retry_after(tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # else PTB 22 warns when it builds RetryAfter
    tg.fail_next(1, status=429, retry_after=7)
    async with ptb(tg) as bot:
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(CHAT, "hi")
        assert info.value.retry_after == dt.timedelta(seconds=7)
        await bot.send_message(CHAT, "hi")  # only the next one failed
    assert len(tg.messages) == 1


async def test_ptb_blocked_chat_is_forbidden_until_recover(tg: FakeTelegram) -> None:
    tg.fail_chat(CHAT)
    async with ptb(tg) as bot:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(CHAT, "hi")
        await bot.send_message(CHAT + 1, "other chats still work")
        tg.recover()
        await bot.send_message(CHAT, "hi")
    assert [m.chat_id for m in tg.messages] == [CHAT + 1, CHAT]


async def test_a_chat_blocked_is_forbidden_until_unblocked_alone(tg: FakeTelegram) -> None:
    """block / unblock: one chat's 403 ends for that chat, others' stay."""
    tg.block(CHAT)
    tg.block(CHAT + 1, "Forbidden: user is deactivated")
    async with ptb(tg) as bot:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(CHAT, "hi")
        tg.unblock(CHAT)
        await bot.send_message(CHAT, "hi")
        with pytest.raises(Forbidden, match="user is deactivated"):
            await bot.send_message(CHAT + 1, "hi")
    assert [m.chat_id for m in tg.messages] == [CHAT]


async def test_ptb_chat_not_found_is_bad_request(tg: FakeTelegram) -> None:
    tg.fail_chat(CHAT, 400, "Bad Request: chat not found")
    async with ptb(tg) as bot:
        with pytest.raises(BadRequest, match=r"[Cc]hat not found"):
            await bot.send_message(CHAT, "hi")
    assert tg.messages == []


async def test_ptb_migrated_group_is_chat_migrated(tg: FakeTelegram) -> None:
    tg.migrate_chat(-42, GROUP)
    async with ptb(tg) as bot:
        with pytest.raises(ChatMigrated) as info:
            await bot.send_message(-42, "hi")
    assert info.value.new_chat_id == GROUP


async def test_ptb_hang_is_timed_out_and_nothing_is_delivered(tg: FakeTelegram) -> None:
    async with ptb(tg, read_timeout=0.2) as bot:
        tg.down(None)  # after initialize's getMe
        with pytest.raises(TimedOut):
            await bot.send_message(CHAT, "hi")
    assert tg.calls("sendMessage")[0].status is None
    assert tg.messages == []


async def test_ptb_down_502_is_network_error(tg: FakeTelegram) -> None:
    async with ptb(tg) as bot:
        tg.down()
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(CHAT, "hi")
        tg.recover()
        await bot.send_message(CHAT, "hi")
    assert [r.status for r in tg.calls("sendMessage")] == [502, 200]


async def test_down_with_a_page_answers_every_call_with_a_front_ends_html_page(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    """``down(502, page=True)``: Telegram's front end answers for the Bot API behind it, with
    nginx's HTML error page (no JSON); ``recover()`` ends it."""
    tg.down(502, page=True)
    r = await client.post(f"{tg.api_url}/bot{tg.token}/sendMessage", json={"chat_id": CHAT})
    assert (r.status_code, r.headers["content-type"]) == (502, "text/html")
    assert r.text.startswith("<html>\r\n<head><title>502 Bad Gateway</title>")
    assert "nginx" in r.text
    assert tg.calls("sendMessage")[0].status == 502
    tg.recover()
    r = await client.post(f"{tg.api_url}/bot{tg.token}/getMe")
    assert r.json()["ok"] is True


async def test_down_for_one_method_leaves_the_others_served(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    """``down(502, page=True, method="getUpdates")``: only that method (in any case) gets the
    page; the others are answered as usual."""
    tg.down(502, page=True, method="getUpdates")
    base = f"{tg.api_url}/bot{tg.token}"
    r = await client.post(f"{base}/getupdates", json={"timeout": 0})
    assert (r.status_code, r.headers["content-type"]) == (502, "text/html")
    assert (await client.post(f"{base}/getMe")).json()["ok"] is True
    tg.recover()
    assert (await client.post(f"{base}/getUpdates", json={"timeout": 0})).json()["ok"] is True


async def test_ptb_down_with_a_page_is_network_error_quoting_it(tg: FakeTelegram) -> None:
    async with ptb(tg) as bot:
        tg.down(504, page=True)
        with pytest.raises(NetworkError, match=r"Gateway Timeout \(504\).*<html>"):
            await bot.send_message(CHAT, "hi")


async def test_ptb_wrong_token_is_invalid_token(tg: FakeTelegram) -> None:
    bot = telegram.Bot("999:wrong", base_url=f"{tg.api_url}/bot")
    with pytest.raises(InvalidToken):
        await bot.initialize()
    await bot.shutdown()
    assert tg.requests[0].status == 401


async def test_ptb_get_updates_returns_a_command_with_its_entity(tg: FakeTelegram) -> None:
    update_id = tg.user_says(CHAT, "/alerts btc")
    async with ptb(tg) as bot:
        [update] = await bot.get_updates(timeout=1)
    assert update.update_id == update_id
    message = update.message
    assert message is not None
    assert message.from_user is not None
    assert (message.text, message.chat.id, message.from_user.id) == ("/alerts btc", CHAT, CHAT)
    [entity] = message.entities
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 7)


async def test_ptb_get_updates_returns_an_edited_message_with_its_new_text(
    tg: FakeTelegram,
) -> None:
    tg.user_says(CHAT, "/alerts btc")
    message_id = tg.updates[-1]["message"]["message_id"]
    tg.user_edits(CHAT, message_id, "/alerts eth")
    async with ptb(tg) as bot:
        first, edit = await bot.get_updates(timeout=1)
    assert first.message is not None
    assert first.message.text == "/alerts btc"
    edited = edit.edited_message
    assert edited is not None
    assert (edited.message_id, edited.text) == (message_id, "/alerts eth")
    assert edited.edit_date is not None
    [entity] = edited.entities
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 7)


async def test_ptb_get_updates_returns_a_photo_with_a_command_in_its_caption(
    tg: FakeTelegram,
) -> None:
    tg.user_says(CHAT, "/alerts btc", photo=True)
    async with ptb(tg) as bot:
        [update] = await bot.get_updates(timeout=1)
    message = update.message
    assert message is not None
    assert (message.text, message.caption, len(message.photo)) == (None, "/alerts btc", 1)
    assert message.entities == ()
    [entity] = message.caption_entities
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 7)


async def test_ptb_set_my_commands_is_stored_and_read_back(tg: FakeTelegram) -> None:
    async with ptb(tg) as bot:
        assert await bot.set_my_commands([("alerts", "List alerts"), ("mute", "Mute a rule")])
        got = await bot.get_my_commands()
    assert [(c.command, c.description) for c in got] == [
        ("alerts", "List alerts"),
        ("mute", "Mute a rule"),
    ]
    assert tg.commands == [
        {"command": "alerts", "description": "List alerts"},
        {"command": "mute", "description": "Mute a rule"},
    ]


async def test_ptb_inline_button_roundtrip(tg: FakeTelegram) -> None:
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("Mute", callback_data="mute:r1")]]
    )
    async with ptb(tg) as bot:
        sent = await bot.send_message(CHAT, "BTC crossed 70000", reply_markup=keyboard)
        tg.user_presses(CHAT, sent.message_id, "mute:r1")
        [update] = await bot.get_updates(timeout=1)
        query = update.callback_query
        assert query is not None
        assert query.data == "mute:r1"
        assert query.message is not None
        assert query.message.message_id == sent.message_id
        assert await bot.answer_callback_query(query.id, text="Muted")
        edited = await bot.edit_message_text("BTC crossed 70000 (muted)", CHAT, sent.message_id)
    assert [(a.data, a.text) for a in tg.answered_callbacks] == [("mute:r1", "Muted")]
    assert isinstance(edited, telegram.Message)
    assert edited.reply_markup is None  # editMessageText without reply_markup drops the keyboard
    assert (tg.messages[0].plain_text, tg.messages[0].edits) == ("BTC crossed 70000 (muted)", 1)


async def test_ptb_second_long_poll_terminates_the_first_with_conflict(tg: FakeTelegram) -> None:
    async with ptb(tg) as first, ptb(tg) as second:
        polling = asyncio.create_task(first.get_updates(timeout=5))
        await tg.wait_for(lambda: len(tg.calls("getUpdates")) == 1)
        assert await second.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await polling


async def test_ptb_upgraded_group_sends_both_migrate_service_messages(tg: FakeTelegram) -> None:
    """A group upgraded to a supergroup: its old id is ChatMigrated, and PTB's MIGRATE filter
    sees "migrated to" in the group and "migrated from" in the supergroup."""
    seen: list[tuple[int, int | None, int | None]] = []

    async def migrated(update: telegram.Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        m = update.effective_message
        assert m is not None
        seen.append((m.chat_id, m.migrate_to_chat_id, m.migrate_from_chat_id))

    tg.upgrade_group(-42, GROUP)
    app = ApplicationBuilder().token(tg.token).base_url(f"{tg.api_url}/bot").build()
    app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, migrated))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, poll_interval=0)
        await tg.wait_for(lambda: len(seen) == 2)
        with pytest.raises(ChatMigrated):
            await app.bot.send_message(-42, "hi")
        await app.updater.stop()
        await app.stop()
    assert seen == [(-42, GROUP, None), (GROUP, None, -42)]


async def test_bot_status_changes_are_my_chat_member_updates_ptb_reads(tg: FakeTelegram) -> None:
    """``bot_status``: a user blocks and unblocks the bot, a group removes it and makes it an
    admin; PTB's ChatMemberHandler reads each ``my_chat_member`` as the ChatMember subclass of
    the status, with the old status, the chat and who did it. While out, a call naming the
    chat gets Telegram's 403 for its type; back, it works."""
    seen: list[tuple[int, int, str, str, str]] = []

    async def member(update: telegram.Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        changed = update.my_chat_member
        assert changed is not None
        assert changed.new_chat_member.user.id == tg.bot_id
        new = changed.new_chat_member
        seen.append(
            (changed.chat.id, changed.from_user.id, changed.old_chat_member.status,
             new.status, type(new).__name__)
        )  # fmt: skip

    app = ApplicationBuilder().token(tg.token).base_url(f"{tg.api_url}/bot").build()
    app.add_handler(ChatMemberHandler(member, ChatMemberHandler.MY_CHAT_MEMBER))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, poll_interval=0)
        tg.bot_status(CHAT, "kicked")
        tg.bot_status(GROUP, "left")
        await tg.wait_for(lambda: len(seen) == 2)
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await app.bot.send_message(CHAT, "hi")
        with pytest.raises(Forbidden, match="bot is not a member of the supergroup chat"):
            await app.bot.send_message(GROUP, "hi")
        tg.bot_status(CHAT, "member")
        tg.bot_status(GROUP, "administrator")
        await tg.wait_for(lambda: len(seen) == 4)
        await app.bot.send_message(CHAT, "back")
        await app.bot.send_message(GROUP, "back")
        await app.updater.stop()
        await app.stop()
    admin = FakeTelegram.DEFAULT_GROUP_USER_ID
    assert seen == [
        (CHAT, CHAT, "member", "kicked", "ChatMemberBanned"),
        (GROUP, admin, "member", "left", "ChatMemberLeft"),
        (CHAT, CHAT, "kicked", "member", "ChatMemberMember"),
        (GROUP, admin, "left", "administrator", "ChatMemberAdministrator"),
    ]
    with pytest.raises(ValueError, match="cannot become 'left' in a private chat"):
        tg.bot_status(CHAT, "left")


async def test_get_updates_leaves_out_chat_member_updates_unless_asked(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    """Without allowed_updates (or with []), Telegram sends every kind but chat_member and the
    reactions: my_chat_member comes; a list that does not name it leaves it out."""
    url = f"{tg.api_url}/bot{tg.token}/getUpdates"
    tg._queue({"chat_member": {}})
    update_id = tg.bot_status(CHAT, "kicked")
    got = (await client.post(url, json={"timeout": 0})).json()["result"]
    assert [u["update_id"] for u in got] == [update_id]
    got = (await client.post(url, json={"allowed_updates": ["message"]})).json()["result"]
    assert got == []


async def test_ptb_application_polling_runs_command_handlers(tg: FakeTelegram) -> None:
    seen: list[list[str] | None] = []

    async def alerts(update: telegram.Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(context.args)
        assert update.effective_message is not None
        await update.effective_message.reply_text("<b>2 alerts</b>", parse_mode="HTML")

    app = ApplicationBuilder().token(tg.token).base_url(f"{tg.api_url}/bot").build()
    app.add_handler(CommandHandler("alerts", alerts))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, poll_interval=0)
        tg.user_says(CHAT, "/alerts btc")
        tg.user_says(GROUP, "/alerts@other_bot sol")  # for another bot: ignored by PTB
        tg.user_says(GROUP, "/alerts@alertbot_test_bot eth")
        await tg.wait_for_messages(2)
        await app.updater.stop()
        await app.stop()
    assert seen == [["btc"], ["eth"]]
    assert [(m.chat_id, m.plain_text) for m in tg.messages] == [
        (CHAT, "2 alerts"),
        (GROUP, "2 alerts"),
    ]
    assert tg.pending_updates == []  # the final getUpdates confirmed everything


# --- routing and parameters (plain httpx)


async def test_wrong_token_is_401_unknown_method_and_path_404(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    wrong = await client.post(f"{tg.api_url}/bot1:nope/getMe")
    unknown = await call(client, tg, "sendRocket")
    no_bot = await client.get(f"{tg.api_url}/getMe")
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert (unknown.status_code, unknown.json()["description"]) == (404, "Not Found")
    assert no_bot.status_code == 404
    assert [r.method for r in tg.requests] == ["getMe", "sendRocket", ""]


async def test_method_names_are_case_insensitive(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    r = await client.get(f"{tg.api_url}/bot{tg.token}/GETME")
    assert r.json()["result"]["username"] == "alertbot_test_bot"
    assert tg.requests[0].method == "getMe"


async def test_query_form_json_and_multipart_give_the_same_params(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    url = f"{tg.api_url}/bot{tg.token}/sendMessage"
    form = {"chat_id": "42", "text": "x", "reply_markup": json.dumps(markup)}
    form_bool = {**form, "disable_notification": "true"}
    await client.post(
        url, json={**form, "chat_id": 42, "reply_markup": markup, "disable_notification": True}
    )
    await client.post(url, data=form_bool)
    await client.get(url, params=form_bool)
    await client.post(url, data=form_bool, files={"unused": ("f.txt", b"file bytes")})
    expected = {"chat_id": 42, "text": "x", "reply_markup": markup, "disable_notification": True}
    for r in tg.requests:
        assert {k: v for k, v in r.params.items() if k != "unused"} == expected
        assert r.status == 200
    assert tg.requests[-1].params["unused"] == b"file bytes"


async def test_undecodable_body_is_400(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"{tg.api_url}/bot{tg.token}/sendMessage",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    bad_markup = await call(client, tg, "sendMessage", chat_id=CHAT, text="x", reply_markup="{")
    assert bad_markup.json()["description"] == (
        "Bad Request: can't parse reply keyboard markup JSON object"
    )


# --- sendMessage validation


async def test_send_message_result_is_a_message_object(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    private = await send(client, tg, "hello", chat_id=CHAT)
    group = await send(client, tg, "hello", chat_id=GROUP)
    result = private["result"]
    assert private["ok"] is True
    assert (result["chat"]["type"], group["result"]["chat"]["type"]) == ("private", "supergroup")
    assert result["text"] == "hello"
    assert isinstance(result["date"], int)
    assert [m.message_id for m in tg.messages] == [1, 1]  # message ids count per chat


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"text": "x", "chat_id": None}, "Bad Request: chat_id is empty"),
        ({"text": ""}, "Bad Request: message text is empty"),
        ({"text": " \n "}, "Bad Request: message text is empty"),
        ({"text": "<b> </b>", "parse_mode": "HTML"}, "Bad Request: message text is empty"),
        ({"text": "x" * 4097}, "Bad Request: message is too long"),
        ({"text": "x", "parse_mode": "BBCode"}, "Bad Request: unsupported parse_mode"),
    ],
)
async def test_send_message_rejects(
    tg: FakeTelegram, client: httpx.AsyncClient, params: dict[str, Any], description: str
) -> None:
    params = {"chat_id": CHAT, **params}
    body = (
        await call(client, tg, "sendMessage", **{k: v for k, v in params.items() if v is not None})
    ).json()
    assert body == {"ok": False, "error_code": 400, "description": description}
    assert tg.messages == []


async def test_length_is_counted_after_entity_parsing_and_trimming(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    text = "<b>" + "&amp;" * 4096 + "</b>"
    ok = await send(client, tg, "  " + text + "\n", parse_mode="HTML")
    too_long = await send(client, tg, text + "!", parse_mode="HTML")
    assert ok["ok"] is True
    assert len(tg.messages[0].plain_text) == 4096
    assert too_long["description"] == "Bad Request: message is too long"


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("price < 70000", 'Unsupported start tag "" at byte offset 6'),
        ("a<b", "Unclosed start tag at byte offset 1"),
        ("<br>x", 'Unsupported start tag "br" at byte offset 0'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="x">y</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("AT&T", 'Unescaped "&" at byte offset 2'),
        ("&nbsp;", 'Unescaped "&" at byte offset 0'),
    ],
)
async def test_invalid_html_is_cant_parse_entities(
    tg: FakeTelegram, client: httpx.AsyncClient, html: str, error: str
) -> None:
    body = await send(client, tg, html, parse_mode="HTML")
    assert body["error_code"] == 400
    assert body["description"].startswith(f"Bad Request: can't parse entities: {error}")


@pytest.mark.parametrize(
    ("html", "plain"),
    [
        ("<b>B</b><strong>S</strong><i>I</i><em>E</em><u>U</u><ins>N</ins>", "BSIEUN"),
        ("<s>1</s><strike>2</strike><del>3</del><tg-spoiler>4</tg-spoiler>", "1234"),
        (
            '<span class="tg-spoiler">s</span> <a href="https://x.io/?a=1&amp;b=2">link</a>',
            "s link",
        ),
        ('<pre><code class="language-python">x = 1</code></pre> <code>y</code>', "x = 1 y"),
        ("<blockquote>q</blockquote><blockquote expandable>e</blockquote>", "qe"),
        ("&lt;&gt;&amp;&quot;&#65;&#x42;", '<>&"AB'),
        (
            "<B>caps</B> and <b><i>x</></>: an empty end tag closes the innermost",
            "caps and x: an empty end tag closes the innermost",
        ),
    ],
)
async def test_valid_html_is_delivered_as_plain_text(
    tg: FakeTelegram, client: httpx.AsyncClient, html: str, plain: str
) -> None:
    body = await send(client, tg, html, parse_mode="HTML")
    assert body["ok"] is True, body
    assert body["result"]["text"] == plain == tg.messages[0].plain_text


def test_parse_html_entities_use_utf16_offsets() -> None:
    parsed = parse_html('📈 <b>BTC</b> <a href="https://x.io">chart</a>')
    assert parsed.text == "📈 BTC chart"
    assert parsed.entities == [
        {"type": "bold", "offset": 3, "length": 3},
        {"type": "text_link", "offset": 7, "length": 5, "url": "https://x.io"},
    ]


def test_parse_html_strict_and_lenient_ampersand() -> None:
    with pytest.raises(HTMLError):
        parse_html("AT&T")
    assert parse_html("AT&T &nbsp;", strict=False).text == "AT&T &nbsp;"


async def test_lenient_fake_accepts_a_bare_ampersand(client: httpx.AsyncClient) -> None:
    async with FakeTelegram(strict_html=False) as tg:
        body = await send(client, tg, "AT&T <b>up</b>", parse_mode="HTML")
    assert body["result"]["text"] == "AT&T up"


async def test_plain_text_is_not_parsed(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    body = await send(client, tg, "<b>x</b> & y")
    assert body["result"]["text"] == "<b>x</b> & y"


async def test_inline_keyboard_is_validated(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    long_data = {"inline_keyboard": [[{"text": "A", "callback_data": "x" * 65}]]}
    no_action = {"inline_keyboard": [[{"text": "A"}]]}
    assert (await send(client, tg, "x", reply_markup=long_data))["description"] == (
        "Bad Request: BUTTON_DATA_INVALID"
    )
    assert (
        "Text buttons are unallowed"
        in (await send(client, tg, "x", reply_markup=no_action))["description"]
    )


# --- fault injection


async def test_fail_next_rules_queue_up_in_order(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.fail_next(2, status=500)
    tg.fail_next(1, status=503, description="Service Unavailable")
    statuses = [
        (await call(client, tg, "sendMessage", chat_id=CHAT, text="x")).status_code
        for _ in range(4)
    ]
    assert statuses == [500, 500, 503, 200]
    assert tg.calls("sendMessage")[0].response == {
        "ok": False,
        "error_code": 500,
        "description": "Internal Server Error",
    }
    assert len(tg.messages) == 1


async def test_fail_next_matches_method_and_chat(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.fail_next(1, status=403, chat_id=7)
    tg.fail_next(1, status=500, method="getMe")
    assert (await send(client, tg, "x", chat_id=8))["ok"] is True
    assert (await call(client, tg, "getMe")).status_code == 500
    assert (await send(client, tg, "x", chat_id=7))["description"] == "Forbidden"
    assert (await send(client, tg, "x", chat_id=7))["ok"] is True


async def test_fail_next_429_carries_retry_after(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.fail_next(1, status=429, retry_after=3)
    r = await call(client, tg, "sendMessage", chat_id=CHAT, text="x")
    assert (r.status_code, r.json()) == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        },
    )
    with pytest.raises(ValueError, match="429"):
        tg.fail_next(1, status=500, retry_after=3)


async def test_delay_answers_late_but_delivers_on_receipt(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.delay(0.3)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            f"{tg.api_url}/bot{tg.token}/sendMessage",
            json={"chat_id": CHAT, "text": "x"},
            timeout=httpx.Timeout(10.0, read=0.1),  # the answer's wait alone is short
        )
    assert len(tg.messages) == 1  # delivered although the client gave up: a retry duplicates it
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await call(client, tg, "getMe")).status_code == 200
    assert loop.time() - start >= 0.3


async def test_answer_late_holds_one_methods_answers_back_and_marks_the_messages(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    """``answer_late``: sendMessage is applied on receipt and its answer written late (the
    message says how late); other methods are answered at once; 0 ends it."""
    tg.answer_late(0.3)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            f"{tg.api_url}/bot{tg.token}/sendMessage",
            json={"chat_id": CHAT, "text": "x"},
            # the answer's wait alone is short: a connection made slowly on a busy machine
            # (CI with a soak beside it) was a ConnectTimeout, not the timeout under test
            timeout=httpx.Timeout(10.0, read=0.1),
        )
    assert [m.answered_late for m in tg.messages] == [0.3]  # delivered all the same
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await call(client, tg, "getMe")).status_code == 200
    assert loop.time() - start < 0.3
    tg.answer_late(0)
    assert (await call(client, tg, "sendMessage", chat_id=CHAT, text="y")).status_code == 200
    assert [m.answered_late for m in tg.messages] == [0.3, 0.0]


# --- rate limits


def _at(fake: FakeTelegram, chat_id: int, *times: float) -> None:
    for t in times:
        fake.messages.append(Message(chat_id, "x", None, None, len(fake.messages) + 1, t))


def test_limit_violations_private_chat_allows_a_burst_of_3_then_1_per_second() -> None:
    fake = FakeTelegram()
    _at(fake, CHAT, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0)  # burst of 3, then one per second: clean
    assert fake.limit_violations() == []
    _at(fake, CHAT, 3.5)
    [line] = fake.limit_violations()
    assert line.startswith(f"private chat {CHAT}: 1 of 7 messages over the limit")


def test_limit_violations_group_20_per_minute_and_30_per_second_overall() -> None:
    fake = FakeTelegram()
    _at(fake, GROUP, *(i * 3.0 for i in range(20)), 59.9)  # 21 within 60 s
    _at(fake, GROUP - 1, *(i * 3.0 for i in range(20)), 60.0)  # the first one has left
    assert fake.limit_violations() == [
        f"group chat {GROUP}: 1 of 21 messages over the limit (at most 20 per 60 s); "
        "first: message #21, 59.900 s after the first"
    ]
    fake = FakeTelegram()
    for chat in range(1, 32):
        _at(fake, chat, 100.0 + chat / 100)  # 31 chats within 0.31 s
    assert fake.limit_violations() == [
        "overall: 1 of 31 messages over the limit (at most 30 per 1 s)"
    ]


async def test_enforce_limits_answers_429_in_a_private_chat(client: httpx.AsyncClient) -> None:
    async with FakeTelegram(enforce_limits=True) as tg:
        bodies = [await send(client, tg, f"m{i}") for i in range(4)]
        assert [b["ok"] for b in bodies] == [True, True, True, False]
        assert bodies[3]["parameters"] == {"retry_after": 1}
        assert (await send(client, tg, "other chat", chat_id=CHAT + 1))["ok"] is True
        assert tg.limit_violations() == []


async def test_enforce_limits_group_retry_after_waits_for_the_window(
    client: httpx.AsyncClient,
) -> None:
    async with FakeTelegram(enforce_limits=True) as tg:
        tg.GROUP_LIMIT = 2
        tg.GROUP_WINDOW = 10.0
        bodies = [await send(client, tg, f"m{i}", chat_id=GROUP) for i in range(3)]
    assert [b["ok"] for b in bodies] == [True, True, False]
    assert bodies[2]["parameters"]["retry_after"] == 10
    assert bodies[2]["description"] == "Too Many Requests: retry after 10"


# --- updates and long polling


async def test_get_updates_offset_confirms_and_negative_offset_keeps_the_last(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    ids = [tg.user_says(CHAT, f"m{i}") for i in range(4)]
    first = (await call(client, tg, "getUpdates")).json()["result"]
    after = (await call(client, tg, "getUpdates", offset=ids[2])).json()["result"]
    last = (await call(client, tg, "getUpdates", offset=-1)).json()["result"]
    assert [u["update_id"] for u in first] == ids
    assert [u["update_id"] for u in after] == ids[2:]
    assert [u["update_id"] for u in last] == ids[3:]
    assert [u["update_id"] for u in tg.pending_updates] == ids[3:]


async def test_long_poll_returns_empty_after_its_timeout(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    body = (await call(client, tg, "getUpdates", timeout=0.3)).json()
    assert body == {"ok": True, "result": []}
    assert 0.3 <= loop.time() - start < 1.0


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    poll = asyncio.create_task(call(client, tg, "getUpdates", timeout=10))
    await tg.wait_for(lambda: len(tg.calls("getUpdates")) == 1)
    tg.user_says(CHAT, "/price btc")
    async with asyncio.timeout(1):
        [update] = (await poll).json()["result"]
    assert update["message"]["text"] == "/price btc"


async def test_allowed_updates_filters_and_persists(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    sent = await send(
        client, tg, "x", reply_markup={"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    )
    tg.user_says(CHAT, "hello")
    press = tg.user_presses(CHAT, sent["result"]["message_id"], "a")
    only_queries = await call(client, tg, "getUpdates", allowed_updates=["callback_query"])
    still = await call(client, tg, "getUpdates")
    assert [u["update_id"] for u in only_queries.json()["result"]] == [press]
    assert [u["update_id"] for u in still.json()["result"]] == [press]


async def test_delete_webhook_can_drop_pending_updates(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    tg.user_says(CHAT, "old")
    assert (await call(client, tg, "deleteWebhook")).json()["result"] is True
    assert len(tg.pending_updates) == 1
    await call(client, tg, "deleteWebhook", drop_pending_updates=True)
    assert tg.pending_updates == []


def test_user_says_marks_bot_commands_like_telegram() -> None:
    fake = FakeTelegram()
    fake.user_says(GROUP, "📈 /price@alertbot_test_bot BTC, /help price/btc")
    message = fake.updates[0]["message"]
    assert message["chat"]["type"] == "supergroup"
    assert message["from"]["id"] == FakeTelegram.DEFAULT_GROUP_USER_ID
    assert message["entities"] == [
        {"type": "bot_command", "offset": 3, "length": 24},
        {"type": "bot_command", "offset": 33, "length": 5},
    ]
    fake.user_says(CHAT, "just text", chat_type="private", user_id=5)
    assert "entities" not in fake.updates[1]["message"]
    assert fake.updates[1]["message"]["from"]["id"] == 5


async def test_user_presses_needs_a_live_button(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    sent = (
        await send(
            client,
            tg,
            "x",
            reply_markup={"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]},
        )
    )["result"]
    with pytest.raises(ValueError, match="no button"):
        tg.user_presses(CHAT, sent["message_id"], "b")
    with pytest.raises(ValueError, match="no live bot message"):
        tg.user_presses(CHAT, 99, "a")


async def test_answer_callback_query_twice_is_400(
    tg: FakeTelegram, client: httpx.AsyncClient
) -> None:
    sent = (
        await send(
            client,
            tg,
            "x",
            reply_markup={"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]},
        )
    )["result"]
    tg.user_presses(CHAT, sent["message_id"], "a")
    query_id = tg.updates[-1]["callback_query"]["id"]
    first = await call(client, tg, "answerCallbackQuery", callback_query_id=query_id)
    second = await call(client, tg, "answerCallbackQuery", callback_query_id=query_id)
    assert first.json()["result"] is True
    assert second.json()["description"].startswith("Bad Request: query is too old")
    assert len(tg.answered_callbacks) == 1


# --- editing and deleting


async def test_edit_errors_like_telegram(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    sent = (await send(client, tg, "same"))["result"]
    tg.user_says(CHAT, "from the user")  # message_id 2 in this chat
    unchanged = await call(
        client, tg, "editMessageText", chat_id=CHAT, message_id=sent["message_id"], text="same"
    )
    missing = await call(client, tg, "editMessageText", chat_id=CHAT, message_id=99, text="x")
    theirs = await call(client, tg, "editMessageText", chat_id=CHAT, message_id=2, text="x")
    assert unchanged.json()["description"].startswith("Bad Request: message is not modified")
    assert missing.json()["description"] == "Bad Request: message to edit not found"
    assert theirs.json()["description"] == "Bad Request: message can't be edited"


async def test_edit_reply_markup_and_delete(tg: FakeTelegram, client: httpx.AsyncClient) -> None:
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    sent = (await send(client, tg, "x", reply_markup=markup))["result"]
    ids = {"chat_id": CHAT, "message_id": sent["message_id"]}
    removed = await call(client, tg, "editMessageReplyMarkup", **ids)
    assert "reply_markup" not in removed.json()["result"]
    assert tg.messages[0].reply_markup is None
    assert (await call(client, tg, "deleteMessage", **ids)).json()["result"] is True
    again = await call(client, tg, "deleteMessage", **ids)
    assert again.json()["description"] == "Bad Request: message to delete not found"
    assert tg.messages[0].deleted


async def test_get_chat_is_a_full_chat_info(tg: FakeTelegram) -> None:
    async with ptb(tg) as bot:
        private = await bot.get_chat(CHAT)
        group = await bot.get_chat(GROUP)
    assert (private.type, group.type, group.title) == (
        "private",
        "supergroup",
        "alertbot test supergroup",
    )


# --- lifecycle


async def test_shutdown_ends_pending_polls_and_hangs_without_leaks(
    client: httpx.AsyncClient,
) -> None:
    async with FakeTelegram() as tg:
        poll = asyncio.create_task(call(client, tg, "getUpdates", timeout=30))
        await tg.wait_for(lambda: len(tg.requests) == 1)
        tg.down(None)
        hang = asyncio.create_task(call(client, tg, "getMe"))
        await tg.wait_for(lambda: len(tg.requests) == 2)
        assert tg.open_connections == 2
    results = await asyncio.gather(poll, hang, return_exceptions=True)
    assert all(isinstance(r, httpx.TransportError) for r in results), results
    assert tg.open_connections == 0
    assert tg.errors == []
