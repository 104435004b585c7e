"""Chat commands end to end: a user's command on the fake Telegram, the bot's reply, the watch
live in the engine and the feed, the alert back in that chat; restarts; bad input; access."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from telegram.error import InvalidToken

from alertbot.app import App
from alertbot.chat.bot import split_text
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.render import format_time
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.conditions import Level, parse
from alertbot.rules.loader import load_files
from alertbot.rules.model import Channel, Rule, RuleSet
from alertbot.service import AppCollector, HttpService
from alertbot.store import Store, WatchRow
from alertbot.zones import load_zone
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram
from tests.fakes.waiting import wait_until

TOKEN = "123456:TEST-token-0123456789abcdef"
T = 1_772_000_000_000
USER = 501
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "币安人生USDT"]


def at_utc(hour: int, minute: int, day: dt.date | None = None) -> float:
    """The wall clock (s) at ``hour``:``minute`` UTC of ``day`` (today), and a little: when
    the every-minute jobs (the daily digest's) run."""
    when = dt.datetime.combine(day or dt.date.today(), dt.time(hour, minute), tzinfo=dt.UTC)
    return when.timestamp() + 0.2


class Bot:
    """The whole app against both fakes."""

    def __init__(
        self,
        tmp: Path,
        binance: FakeBinance,
        tg: FakeTelegram,
        rules: RuleSet | None = None,
        *,
        listed: bool = True,
        rule_files: tuple[str, ...] = (),
        poll_interval: float = 0.0,
        webhook_url: str | None = None,
        feed_settings: dict[str, Any] | None = None,
        delivery_settings: dict[str, Any] | None = None,
        **chat: Any,
    ) -> None:
        """``listed``: wait for the exchange's list of symbols at the start (False: when its
        REST endpoint is down). ``poll_interval``: see ChatBot (small: a failed poll is tried
        again at once). ``webhook_url``: the fallback webhook. ``feed_settings``,
        ``delivery_settings``: FeedSettings and DeliverySettings fields to change."""
        self.binance = binance
        self.tg = tg
        self.listed = listed
        feed = FeedSettings(
            ws_root=binance.ws_url,
            rest_root=binance.rest_url,
            stale_after=5.0,
            symbol_stale_after=5.0,
            backoff_initial=0.02,
            backoff_max=0.2,
            ping_interval=None,
        )
        feed = dataclasses.replace(feed, **(feed_settings or {}))
        delivery = DeliverySettings(
            telegram_token=TOKEN,
            telegram_api_url=tg.api_url,
            db=str(tmp / "alertbot.db"),
            backoff_initial=0.05,
            backoff_max=0.2,
            webhook_url=webhook_url,
        )
        delivery = dataclasses.replace(delivery, **(delivery_settings or {}))
        self.app = App(
            rules or RuleSet(),
            feed,
            delivery,
            dataclasses.replace(ChatSettings(), **chat),
            grace=1.0,
            poll_timeout=0.5,
            poll_interval=poll_interval,
            rule_files=rule_files,
            write_retry=0.05,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bot:
        self._task = asyncio.create_task(self.app.run(self._stop))
        await self.tg.wait_for(lambda: bool(self.tg.calls("getUpdates")), timeout=10)
        if self.listed:
            await self.binance.wait_for(lambda: self.app.pipeline.directory.exchange is not None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 15)

    async def say(self, text: str, chat: int = USER, **kw: Any) -> str:
        """Send a command; return the bot's reply."""
        before = len(self.tg.messages_to(chat))
        self.tg.user_says(chat, text, **kw)
        await self.tg.wait_for(lambda: len(self.tg.messages_to(chat)) > before, timeout=5)
        return self.tg.messages_to(chat)[before].text

    async def price_now(self, symbol: str, close: float) -> None:
        """A price of ``symbol`` from now (what answers judge on): a watch that never fires
        (``> 1000000``) has the feed carry it, and a tick of this instant."""
        await self.say(f"/watch {symbol} > 1000000")
        await self.binance.wait_for_subscriptions({f"{symbol.lower()}@miniTicker"})
        await self.tick(symbol, close, int(time.time() * 1000))

    async def tick(self, symbol: str, close: float, time: int) -> None:
        await self.binance.publish([mini_ticker(symbol, close, time)])
        engine = self.app.engine
        await self.binance.wait_for(
            lambda: (t := engine.last_ticker(symbol)) is not None and t.time >= time
        )


def stored_watches(tmp: Path, rows: list[tuple[str, str]], chat: int = USER, **kw: Any) -> None:
    """Watches (symbol, condition) of ``chat`` in the database before the bot starts, as a
    chat that made them earlier left them (quicker than one /watch each)."""
    store = Store(tmp / "alertbot.db")
    for symbol, condition in rows:
        store.add_watch(WatchRow(0, chat, symbol, condition, 3_600_000, 0.0, False, **kw))
    store.close()


async def test_watch_then_the_crossing_alerts_that_chat(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch BTCUSDT crosses above 100")
        assert reply.startswith("Watching BTCUSDT: price crosses above 100")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        alert = tg.messages_to(USER)[1].plain_text
    assert alert.startswith("BTCUSDT price crosses above 100: price 110")
    assert "[w1]" in alert


async def test_an_either_way_crossing_alert_says_which_way_the_price_went(tmp_path, fakes):
    """'crosses 100' (no direction) alerted 'BTCUSDT price crosses 100: price 100' both ways:
    at 100 itself the price alone does not tell whether it came from below or above. The
    alert says 'crossed up through 100' / 'crossed down through 100'."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 100, T + 1000)  # up, from below
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        await bot.tick("BTCUSDT", 110, T + 2000)
        await bot.tick("BTCUSDT", 100, T + 3000)  # down, from above
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 3)
        alerts = [m.plain_text.split("\n")[0] for m in tg.messages_to(USER)[1:]]
    assert alerts == [
        f"BTCUSDT price crossed up through 100: price 100 (+0.00% 24h) at {format_time(T + 1000)}"
        " [w1]",
        f"BTCUSDT price crossed down through 100: price 100 (+0.00% 24h) at "
        f"{format_time(T + 3000)} [w1]",
    ]


async def test_a_watch_of_a_symbol_named_in_chinese_alerts_and_its_price_is_shown(tmp_path, fakes):
    """Binance lists contracts named in Chinese, some among its most traded: /watch and /price
    take one typed with its ASCII letters in any case, the bot subscribes to its stream, and
    the crossing alerts that chat."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch 币安人生usdt crosses above 0.5")
        assert reply.startswith("Watching 币安人生USDT: price crosses above 0.5")
        await binance.wait_for_subscriptions({"币安人生usdt@miniTicker"})
        await bot.tick("币安人生USDT", 0.4, T)
        await bot.tick("币安人生USDT", 0.6, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        alert = tg.messages_to(USER)[1].plain_text
        price = await bot.say("/price 币安人生USDT")
    assert alert.startswith("币安人生USDT price crosses above 0.5: price 0.6")
    assert price.startswith("币安人生USDT 0.6")


async def test_a_coin_name_alone_is_its_usdt_contract_in_watch_and_price(tmp_path, fakes):
    """'/watch btc > 70000' and '/price eth' mean BTCUSDT and ETHUSDT, the contracts Binance
    lists: they used to be refused as unknown symbols with that very suggestion. The answer
    names the contract it took."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch btc > 70000")
        await bot.say("/watch ETH < 3000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await bot.tick("ETHUSDT", 3100, T)
        price = await bot.say("/price eth")
        book = bot.app.book
        assert book is not None
        assert sorted(r.symbol for r in book.rows.values()) == ["BTCUSDT", "ETHUSDT"]
    assert reply.startswith("Watching BTCUSDT: price > 70000")
    assert price.startswith("ETHUSDT 3100 ")


async def test_a_command_written_with_no_space_before_a_chinese_symbol_is_answered(tmp_path, fakes):
    """'/watch币安人生USDT > 0.5', as Chinese is written: Telegram marks no command in it (a
    command must not run into a letter), and the bot used to stay silent. It is read as
    '/watch 币安人生USDT > 0.5'."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch币安人生USDT > 0.5")
        price = await bot.say("/price币安人生USDT")
    assert "entities" not in tg.updates[-1]["message"]
    assert reply.startswith("Watching 币安人生USDT: price > 0.5")
    assert price.startswith("币安人生USDT ")  # its price, fetched: the feed has none yet


async def test_an_edited_command_is_answered_and_changes_nothing(tmp_path, fakes):
    """A user fixes a typo by editing their /watch: the edit used to get no answer at all, so
    they took the watch as changed while the first one stayed. They are told to send it
    again, and nothing is run twice; another bot's command edited in a group gets nothing."""
    binance, tg = fakes
    group = -100555
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 7000")
        message_id = tg.updates[-1]["message"]["message_id"]
        tg.user_says(group, "/roll 2d6")
        roll = tg.updates[-1]["message"]["message_id"]
        tg.user_edits(group, roll, "/roll 3d6")
        tg.user_edits(USER, message_id, "/watch BTCUSDT > 70000")
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        book = bot.app.book
        assert book is not None
        assert [(r.id, r.condition) for r in book.rows.values()] == [(1, "price > 7000")]
    assert tg.messages_to(USER)[-1].text == (
        "Edited commands are not run: send the corrected one as a new message (what the "
        "first one did stays; /list shows this chat's watches)."
    )
    assert tg.messages_to(group) == []


async def test_a_command_in_a_pictures_caption_is_run(tmp_path, fakes):
    """A chart sent with '/watch BTCUSDT > 70000' as its caption got no answer at all."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch BTCUSDT > 70000", photo=True)
    assert reply.startswith("Watching BTCUSDT: price > 70000")


async def test_a_watch_survives_a_restart(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch ETHUSDT < 3000")
    async with Bot(tmp_path, binance, tg) as bot:
        await binance.wait_for_subscriptions({"ethusdt@miniTicker"})
        listing = await bot.say("/list")
        assert "w1  ETHUSDT price < 3000" in listing
        await bot.tick("ETHUSDT", 2990, T)
        await tg.wait_for(lambda: "ETHUSDT price < 3000" in tg.messages_to(USER)[-1].plain_text)


async def test_an_admins_list_names_rule_file_rules_whose_id_starts_with_w(tmp_path, fakes):
    """Only w and digits is a watch's id: an admin's /list shows a rule file's 'whale' among
    the rule files' rules, next to the chat's own watch w1."""
    binance, tg = fakes
    whale = Rule(id="whale", condition=parse("quote_volume > 2b"), symbols=("BTCUSDT",))
    async with Bot(tmp_path, binance, tg, RuleSet(rules=(whale,)), admin_chats=(USER,)) as bot:
        await bot.say("/watch ETHUSDT < 3000")
        listing = await bot.say("/list")
    assert "w1  ETHUSDT price < 3000" in listing
    assert "Rule files: 1 rules (whale)" in listing


async def test_unwatch_stops_alerts_and_unsubscribes(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch SOLUSDT > 200")
        await binance.wait_for_subscriptions({"solusdt@miniTicker"})
        assert (await bot.say("/unwatch w1")).startswith("Removed w1")
        assert await bot.say("/list") == "No watches here yet. Add one: /watch BTCUSDT > 70000"
        assert bot.app.engine.rules() == []


BAD = [
    ("/watch", "Use: /watch"),
    ("/watch BTCUSDT", "Use: /watch"),
    ("/watch BTCUSDT > abc", "expected a number"),
    ("/watch BTCUSDT > 0", "Use: /watch"),
    ("/watch BTCUSDT > 1e309", "Use: /watch"),
    ("/watch BTCUSDT > 70000 cooldown 999999d", "Use: /watch"),
    ("/watch BTCUSDX > 70000", "did you mean BTCUSDT?"),
    ("/watch *USDT > 1", "admins"),
    ("/wach BTCUSDT > 1", "did you mean /watch?"),
    ("/mute w1", "Use: /mute"),
    ("/unwatch w99", "no watch w99"),
    ("/price", "Use: /price"),
    ("/watch " + "9" * 600, "long"),
    ("/watch BTCUSDT > ７００", "Use: /watch"),
    ("/watch 币安人生USDT＞0.5", "write > instead of '＞'"),
]


async def test_every_malformed_command_gets_a_helpful_reply_and_changes_nothing(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for text, expected in BAD:
            reply = await bot.say(text)
            assert expected.lower() in reply.lower(), (text, reply)
        assert bot.app.book is not None
        assert bot.app.book.rows == {}
    store = Store(tmp_path / "alertbot.db")
    assert store.watches() == []
    store.close()


async def test_an_error_reply_quotes_the_users_text_as_typed(tmp_path, fakes):
    """Error replies quoted the user's words with Python's repr: 'C:\\\\temp' with its backslash
    doubled, "it's" in double quotes. They quote them as typed, between single quotes (the
    replies are plain text: no parse mode whose markup a quote could break)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        not_an_id = await bot.say("/unwatch C:\\temp")
        apostrophe = await bot.say("/watch BTCUSDT > 5 it's")
        parsed = await bot.say("/watch BTCUSDT crosses ab\\ov 5")
    assert not_an_id.split("\n")[0] == (
        "'C:\\temp' is not a watch id; use an id from /list like w12, or all"
    )
    assert apostrophe.startswith("Unexpected 'it's'; the options are")
    assert parsed.startswith("Expected a number after 'crosses', got 'ab\\ov'")
    assert all(m.parse_mode is None for m in tg.messages_to(USER))


async def test_a_command_typed_without_its_slash_in_a_private_chat_is_answered(tmp_path, fakes):
    """'watch BTCUSDT > 70000' (no '/'), a new user's commonest slip, got no answer at all, as
    any text did: the user waited for a watch that was never made. In a private chat the
    answer is the command with its '/', and other text is told that commands are what the
    bot reads; in a group, where people talk, text stays unanswered, and so does a chat
    outside the allow-list."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, allowed_chats=(USER, -100777)) as bot:
        slip = await bot.say("watch btc > 70k cooldown 1h")
        chatter = await bot.say("hello, is this working?")
        tg.user_says(-100777, "watch BTCUSDT > 1")
        tg.user_says(778, "watch BTCUSDT > 1")  # not allowed
        await bot.say("/help")  # the updates before it have been handled
        assert bot.app.book is not None
        assert bot.app.book.rows == {}
    assert slip == "Commands start with '/': send /watch btc > 70k cooldown 1h"
    assert chatter == (
        "I read commands, which start with '/': /help lists them, e.g. /watch BTCUSDT > 70000"
    )
    assert tg.messages_to(-100777) == []
    assert tg.messages_to(778) == []


async def test_a_chat_outside_the_allow_list_gets_one_refusal_and_changes_nothing(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, allowed_chats=(USER,)) as bot:
        stranger = 777
        reply = await bot.say("/watch BTCUSDT > 1", chat=stranger)
        assert "private" in reply
        tg.user_says(stranger, "/watch BTCUSDT > 2")
        await bot.say("/help")  # the allowed user's command is answered...
        assert len(tg.messages_to(stranger)) == 1  # ...the stranger's second one is not
        assert bot.app.book is not None
        assert bot.app.book.rows == {}


async def test_a_group_outside_the_allow_list_is_not_refused_for_other_bots_commands(
    tmp_path, fakes
):
    """Another bot's command (/roll, /start@otherbot) in a group the bot may not serve gets no
    answer: the one refusal goes to the first command that is the bot's."""
    binance, tg = fakes
    group = -100777
    async with Bot(tmp_path, binance, tg, allowed_chats=(USER,)) as bot:
        tg.user_says(group, "/roll 2d6", chat_type="group")
        tg.user_says(group, "/start@someotherbot", chat_type="group")
        await bot.say("/help")  # updates are handled in order: the two before it are done
        assert tg.messages_to(group) == []
        reply = await bot.say("/watch BTCUSDT >", chat=group, chat_type="group")  # ours
        assert "private" in reply


async def test_list_buttons_remove_and_mute(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch ETHUSDT > 100")
        await bot.say("/list")
        listing = tg.messages_to(USER)[-1]
        tg.user_presses(USER, listing.message_id, "mute:w1:1")
        await tg.wait_for(lambda: len(tg.answered_callbacks) == 1)
        tg.user_presses(USER, listing.message_id, "rm:w2:1")
        await tg.wait_for(lambda: len(tg.answered_callbacks) == 2)
        book = bot.app.book
        assert book is not None
        assert sorted(book.rows) == [1]
        muted = book.rows[1].muted_until
        assert muted is not None
        # the engine holds it back (DESIGN, Firing: a muted rule does not fire)
        assert [r.muted_until_ms for r in bot.app.engine.rules()] == [int(muted * 1000)]


async def test_the_list_mute_button_never_shortens_a_longer_mute(tmp_path, fakes):
    """'/mute w1 6h', then the /list button 'Mute w1 1h': w1 used to be muted for 1h only,
    alerting 5 hours before the trader asked. The longer mute stays, and the answer says so."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/mute w1 6h")
        book = bot.app.book
        assert book is not None
        six_hours = book.rows[1].muted_until
        assert six_hours is not None
        await bot.say("/list")
        tg.user_presses(USER, tg.messages_to(USER)[-1].message_id, "mute:w1:1")
        await tg.wait_for(lambda: len(tg.answered_callbacks) == 1)
        assert book.rows[1].muted_until == six_hours
        assert [r.muted_until_ms for r in bot.app.engine.rules()] == [int(six_hours * 1000)]
    assert tg.answered_callbacks[0].text == (
        f"w1 is already muted until {format_time(int(six_hours * 1000))}."
    )


async def test_a_typed_mute_shorter_than_the_current_one_says_it_shortens_it(tmp_path, fakes):
    """'/mute w1 1h' on a watch muted for 6h sets the hour typed (the user's explicit choice),
    and the answer says that this shortened the mute, and until when it was; '/mute all 10m'
    names each watch whose mute it shortened."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch BTCUSDT > 200")
        await bot.say("/mute w1 6h")
        book = bot.app.book
        assert book is not None
        six_hours = book.rows[1].muted_until
        assert six_hours is not None
        one = await bot.say("/mute w1 1h")
        one_hour = book.rows[1].muted_until
        assert one_hour is not None
        assert one_hour < six_hours - 4 * 3600
        every = await bot.say("/mute all 10m")
    assert one == (
        f"Muted w1 until {format_time(int(one_hour * 1000))}. That shortens its mute, which was "
        f"until {format_time(int(six_hours * 1000))}. /unmute ends it sooner."
    )
    assert every.startswith("Muted all 2 watches until ")
    was = format_time(int(one_hour * 1000))
    assert f"This shortened the mute of w1 (was until {was})." in every


async def test_group_commands_addressed_to_the_bot(tmp_path, fakes):
    binance, tg = fakes
    group = -100555
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say(
            "/watch@alertbot_test_bot BTCUSDT > 100", chat=group, chat_type="supergroup"
        )
        assert reply.startswith("Watching BTCUSDT")
        tg.user_says(group, "/watch@someotherbot BTCUSDT > 5", chat_type="supergroup")
        await bot.say("/list", chat=group, chat_type="supergroup")
        book = bot.app.book
        assert book is not None
        assert len(book.of_chat(group)) == 1


async def test_price_and_status(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, admin_chats=(USER,)) as bot:
        await bot.say("/watch BTCUSDT > 1000000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 70_000, T)
        price = await bot.say("/price btcusdt")
        assert price.startswith("BTCUSDT 70000")
        status = await bot.say("/status")
        assert "Feed: symbols" in status
        assert "Watches: 1 in this chat" in status
        assert "1 stream, open" in status  # admins see the connections


async def test_a_users_status_is_what_they_can_act_on_not_the_feeds_internals(tmp_path, fakes):
    """A non-admin's /status showed the feed's internals (connections, streams, reconnect
    counters, every chat's watches): it says whether prices are live and how fresh, this
    chat's watches and mutes, and whether its alerts wait to be sent; nothing else."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 1000000")
        await bot.say("/watch ETHUSDT > 1000000")
        await bot.say("/mute w2 1h")
        await bot.say("/watch SOLUSDT > 1000000", chat=USER + 1)  # another chat's
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await bot.tick("BTCUSDT", 70_000, T)
        status = await bot.say("/status")
        other = await bot.say("/status", chat=USER + 1)
    prices, *rest = status.split("\n")
    assert re.fullmatch(r"Prices: live, last update \d+\.\ds ago", prices)
    assert rest == [
        "Watches in this chat: 2, 1 muted",
        "Alerts to this chat: none waiting to be sent",
        "Last alert here: none in the last 7 days",
    ]
    assert other.split("\n")[1] == "Watches in this chat: 1"


async def test_a_groups_status_counts_its_own_and_an_admins_says_which_numbers_are_global(
    tmp_path, fakes
):
    """Another chat's watches and waiting alerts: a group's /status (not an admin chat)
    counts only the group's; an admin's, in a group as in a private chat, says for every
    count whether it is this chat's or all chats' (its internals are the whole bot's)."""
    binance, tg = fakes
    group, admins, other = -777, -888, USER + 1
    async with Bot(tmp_path, binance, tg, admin_chats=(admins, USER)) as bot:
        await bot.say("/watch SOLUSDT > 1000000", chat=group, chat_type="group")
        await bot.say("/watch ETHUSDT > 1000000", chat=admins, chat_type="group")
        await bot.say("/watch BTCUSDT > 100", chat=other)
        await bot.say("/watch ETHUSDT > 2000000", chat=other)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.fail_chat(other, 502, "Bad Gateway")  # its alert waits in the outbox
        await bot.tick("BTCUSDT", 70_000, T)
        outbox = bot.app.notifier.outbox
        assert outbox is not None
        await tg.wait_for(lambda: any(d.last_error for d in outbox.open.values()))
        in_group = await bot.say("/status", chat=group, chat_type="group")
        in_admins = await bot.say("/status", chat=admins, chat_type="group")
        in_private = await bot.say("/status")
    assert in_group.split("\n")[1:] == [
        "Watches in this chat: 1",
        "Alerts to this chat: none waiting to be sent",
        "Last alert here: none in the last 7 days",
    ]
    assert in_admins.split("\n")[1:5] == [
        "Watches: 1 in this chat, 4 in all chats",
        "Alerts waiting for delivery: 0 to this chat, 1 in all chats and webhooks",
        "Last alert here: none in the last 7 days",
        "Rules in the engine: 4, all chats' watches and the rule files'; symbols: exchange",
    ]
    assert in_private.split("\n")[1:3] == [
        "Watches: 0 in this chat, 4 in all chats",
        "Alerts waiting for delivery: 0 to this chat, 1 in all chats and webhooks",
    ]


async def test_commands_with_arguments_in_answers_are_code_so_a_tap_copies_them_whole(
    tmp_path, fakes
):
    """Telegram makes each /command in a text a link whose tap sends the command alone
    (`/mute` for `/mute w12 1h`): a command shown with its arguments, in an answer to a mistake,
    a suggestion or a note of what to send next, is a code entity (a tap copies it), sent with
    the plain text; a command without arguments (`/list`) stays a link."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/mute 1h")
        await bot.say("/watch BTCUSDT,ETHUSDT > 1")
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/unwatch w7")
    mute, several, _, same, unwatch = tg.messages_to(USER)
    assert mute.parse_mode is None
    assert mute.shown_as("code") == [
        "/mute w12 1h",
        "/mute all 1h",
        "/mute ID [ID...]|all D|until HH:MM",
        "/mute w12 2h",
    ]
    assert several.shown_as("code") == ["/unwatch w1 w2"]
    assert same.shown_as("code") == ["/edit w3 cooldown 1h"]
    assert "/list" in unwatch.plain_text
    assert unwatch.shown_as("code") == []


async def test_several_symbols_past_the_chats_limit_make_none(tmp_path, fakes):
    """The limit is counted for all of them before any is made: not the first ones alone."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, max_watches=3) as bot:
        await bot.say("/watch ETHUSDT > 100")
        refused = await bot.say("/watch BTCUSDT,SOLUSDT,币安人生USDT > 100")
        listing = await bot.say("/list")
    assert refused.startswith(
        "This chat has 1 watch and 3 more would pass the 3 allowed; remove some with /unwatch"
    )
    assert listing.startswith("1 watch:")


async def test_several_symbols_in_one_watch_make_a_watch_each(tmp_path, fakes):
    """'/watch BTCUSDT,ETHUSDT,SOLUSDT > 100': a watch of each symbol, with the same condition
    and options, each alerting on its own; one the chat watches so already is named, not made
    again; an unknown symbol among them makes none."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch ETHUSDT > 100")
        unknown = await bot.say("/watch BTCUSDT,BTCUSDX > 100")
        made = await bot.say("/watch btc,eth,sol > 100 cooldown 1h note breakout")
        await binance.wait_for_subscriptions(
            {"btcusdt@miniTicker", "ethusdt@miniTicker", "solusdt@miniTicker"}
        )
        await bot.tick("SOLUSDT", 120, T)
        await tg.wait_for(lambda: "[w3]" in tg.messages_to(USER)[-1].plain_text)
        alert = tg.messages_to(USER)[-1].plain_text
        listing = await bot.say("/list")
    assert unknown.startswith("Unknown symbol BTCUSDX (did you mean BTCUSDT?)")
    assert made.splitlines() == [
        "Watching BTCUSDT, SOLUSDT: price > 100 (cooldown 1h, note «breakout»). Ids w2, w3.",
        "Watched here so already: ETHUSDT (w1).",
        "Remove them with /unwatch w2 w3.",
    ]
    assert alert.startswith("SOLUSDT price > 100: price 120")
    assert "Note: breakout" in alert
    assert [line.split("  ")[1].split(",")[0] for line in listing.splitlines()[1:]] == [
        "ETHUSDT price > 100",
        "BTCUSDT price > 100",
        "SOLUSDT price > 100",
    ]


async def test_several_levels_in_one_watch_make_a_watch_each(tmp_path, fakes):
    """'/watch BTCUSDT > 100, 110, 120 note tp' (take-profit levels): a watch of each level,
    with the same options and note, each alerting on its own; past the chat's limit, none is
    made."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, max_watches=4) as bot:
        await bot.say("/watch ETHUSDT > 100")
        made = await bot.say("/watch BTCUSDT > 100, 110, 120 cooldown 1h note tp")
        too_many = await bot.say("/watch SOLUSDT > 1, 2")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 115, T + 1000)
        await tg.wait_for(lambda: "[w3]" in tg.messages_to(USER)[-1].plain_text)
        alert = tg.messages_to(USER)[-1].plain_text
        listing = await bot.say("/list")
    assert made.splitlines() == [
        "Made 3 watches:",
        "w2  BTCUSDT price > 100 (cooldown 1h, note «tp»)",
        "w3  BTCUSDT price > 110 (cooldown 1h, note «tp»)",
        "w4  BTCUSDT price > 120 (cooldown 1h, note «tp»)",
        "Remove them with /unwatch w2 w3 w4.",
    ]
    assert too_many.startswith("This chat has 4 watches and 2 more would pass the 4 allowed")
    # 115 is past the first two levels: their alerts, merged in one message; not the third's
    assert "BTCUSDT price > 100: price 115" in alert
    assert "BTCUSDT price > 110: price 115" in alert
    assert "[w4]" not in alert
    assert listing.startswith("4 watches:")


async def test_a_move_of_several_sizes_makes_a_move_watch_each(tmp_path, fakes):
    """'/watch SOLUSDT rises 5% 10% in 1h' got "expected 'in' after '5%', got '10%'": a move
    of each size, the window and options shared, as several levels make a watch each; a rise
    of 7% alerts the 5% watch alone."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        made = await bot.say("/watch SOLUSDT rises 5%, 10% in 1h once")
        await binance.wait_for_subscriptions({"solusdt@miniTicker"})
        await bot.tick("SOLUSDT", 100, T)
        await bot.tick("SOLUSDT", 107, T + 1000)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].plain_text)
        alert = tg.messages_to(USER)[-1].plain_text
    assert made.splitlines() == [
        "Made 2 watches:",
        "w1  SOLUSDT rises 5% in 1h (cooldown 5m, once)",
        "w2  SOLUSDT rises 10% in 1h (cooldown 5m, once)",
        "Remove them with /unwatch w1 w2.",
    ]
    assert "SOLUSDT rises 5% in 1h: price 107, up 7.00% from 100" in alert
    assert "[w2]" not in alert


async def test_an_edit_to_several_levels_is_answered_with_an_edit_and_a_watch(tmp_path, fakes):
    """'/edit w1 > 71000 76000' was "unexpected '76000'": a watch has one level, so the answer
    gives the /edit for the first and the /watch (of the watch's symbol, options and note
    kept) for the others, and changes nothing."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch btc > 70000")
        two = await bot.say("/edit w1 > 71000 76000, 80000 once note tp")
        listing = await bot.say("/list")
    assert two.splitlines()[0] == (
        "A watch has one level: /edit w1 price > 71000 once note tp changes w1, and "
        "/watch BTCUSDT price > 76000, 80000 once note tp makes a watch of each other one"
    )
    assert listing.splitlines()[1].startswith("w1  BTCUSDT price > 70000, cooldown 5m —")
    assert len(listing.splitlines()) == 2


async def test_an_edit_to_several_numbers_alone_puts_the_watchs_condition_at_each(tmp_path, fakes):
    """'/edit w1 71000 76000' (numbers alone, as '/edit w1 71000' takes one) got "unknown
    metric or condition '71000'". Each number is the watch's one threshold, as for one number:
    the answer gives the /edit for the first and the /watch of the watch's symbol and
    condition at the others (a crossing stays a crossing, a move's size moves); nothing is
    changed. A watch of no single threshold, or no such watch, is answered as for one
    number."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch btc crosses above 70000")
        await bot.say("/watch sol rises 5% in 1h")
        await bot.say("/watch eth breaks 24h high")
        crossing = await bot.say("/edit w1 71000, 76000 80000 once")
        move = await bot.say("/edit w2 6% 8% 10%")
        kinds = await bot.say("/edit w2 6000 8000")
        breaks = await bot.say("/edit w3 1 2")
        missing = await bot.say("/edit w9 71000 76000")
        listing = await bot.say("/list")
    assert crossing.splitlines()[0] == (
        "A watch has one level: /edit w1 price crosses above 71000 once changes w1, and "
        "/watch BTCUSDT price crosses above 76000, 80000 once makes a watch of each other one"
    )
    assert move.splitlines()[0] == (
        "A watch has one level: /edit w2 rises 6% in 1h changes w2, and "
        "/watch SOLUSDT rises 8%, 10% in 1h makes a watch of each other one"
    )
    assert kinds.startswith("'6000' is no level of w2's rises 5% in 1h (a number)"), kinds
    assert breaks.startswith("'1' is no level of w3's breaks 24h high (a number)"), breaks
    assert missing == "This chat has no watch w9. /list shows its watches."
    assert [line.split(",")[0] for line in listing.splitlines()[1:4]] == [
        "w1  BTCUSDT price crosses above 70000",
        "w2  SOLUSDT rises 5% in 1h",
        "w3  ETHUSDT breaks 24h high",
    ]


async def test_coins_with_spaces_between_make_a_watch_each_when_binance_lists_them(tmp_path, fakes):
    """'/watch btc eth > 1' was "unknown metric or condition 'eth'", while /price took 'btc
    eth'. Words Binance lists where the condition goes are symbols; a word it does not list
    is answered as before, and so is every such word while its list cannot be read."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        made = await bot.say("/watch btc eth sol > 1 note dip")
        unknown = await bot.say("/watch btc xyz > 1")
    assert made.splitlines()[0] == (
        "Watching BTCUSDT, ETHUSDT, SOLUSDT: price > 1 (cooldown 5m, note «dip»). Ids w1, w2, w3."
    )
    assert unknown.startswith("Unknown metric or condition 'xyz'")
    binance.answer_rest(b"{}")  # exchangeInfo: the bot cannot tell which symbols exist
    (tmp_path / "down").mkdir()
    async with Bot(tmp_path / "down", binance, tg, listed=False) as bot:
        unlisted = await bot.say("/watch btc eth > 1")
    assert unlisted.startswith("Unknown metric or condition 'eth'")


async def test_several_symbols_that_cannot_all_be_stored_make_none(tmp_path, fakes):
    """A /watch of several symbols is stored in one transaction: when the database refuses
    one of them (a trigger refuses SOLUSDT's row here, as a full disk would), none is made,
    not the ones before it, and the answer says nothing was changed. Once the database
    takes them, the same command makes them all."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        other = sqlite3.connect(tmp_path / "alertbot.db", isolation_level=None)
        other.execute(
            "CREATE TRIGGER no_sol BEFORE INSERT ON watches WHEN NEW.symbol = 'SOLUSDT'"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        refused = await bot.say("/watch BTCUSDT,ETHUSDT,SOLUSDT > 100")
        book = bot.app.book
        assert book is not None
        in_memory = list(book.of_chat(USER))
        listing = await bot.say("/list")
        other.execute("DROP TRIGGER no_sol")
        other.close()
        made = await bot.say("/watch BTCUSDT,ETHUSDT,SOLUSDT > 100")
    assert refused == "Sorry, something went wrong on our side; nothing was changed."
    assert in_memory == []
    assert listing.startswith("No watches here yet.")
    assert made.startswith("Watching BTCUSDT, ETHUSDT, SOLUSDT: price > 100")
    store = Store(tmp_path / "alertbot.db")
    try:  # the refused command's two rows were rolled back, not stored and ended
        assert [(r.id, r.symbol) for r in store.watches()] == [
            (1, "BTCUSDT"),
            (2, "ETHUSDT"),
            (3, "SOLUSDT"),
        ]
        assert store.db.execute("SELECT count(*) FROM watches").fetchone() == (3,)
    finally:
        store.close()


async def test_a_price_level_written_with_m_is_a_million_and_the_answer_says_so(tmp_path, fakes):
    """'/watch BTCUSDT > 1m' is price > 1000000, as in a rule file (m after a sign moves the
    decimal point), and its answer, next to a cooldown in minutes ('cooldown 5m'), says so
    and shows how a minute is written: whoever meant one sees it. 'in 1m' gets no such line."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        million = await bot.say("/watch BTCUSDT > 1m")
        minute = await bot.say("/watch BTCUSDT rises 5% in 1m cooldown 1m")
        (rule,) = [r for r in bot.app.engine.rules() if r.id == "w1"]
    assert rule.condition == Level("price", ">", 1_000_000.0)
    assert million.split("\n")[1] == (
        "1m here is 1000000 (m: million), not minutes: a time is written after in, "
        "cooldown or for (rises 5% in 1m, cooldown 1m)"
    )
    assert "million" not in minute


async def test_a_users_status_says_prices_are_delayed_when_the_feed_is_stale(tmp_path, fakes):
    """The feed gone quiet past its stale time: a user's /status says prices are delayed,
    for how long, and that the bot is reconnecting."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, feed_settings={"symbol_stale_after": 0.3}) as bot:
        await bot.say("/watch BTCUSDT > 1000000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 70_000, T)
        feed = bot.app.pipeline.feed
        # the switch from the all-market stream (no watch yet at the start) done: while it
        # lasts, the all-market stream's stale time applies
        await asyncio.wait_for(feed.settled(), 5)
        assert feed.health().mode == "symbols"
        binance.silence(future=True)
        await binance.wait_for(lambda: (feed.health().last_message_age or 0) > 0.4)
        status = await bot.say("/status")
    assert re.fullmatch(
        r"Prices: delayed, no update for \d+\.\ds; the bot is reconnecting to the exchange, "
        r"and alerts wait for the prices",
        status.split("\n")[0],
    )


async def test_a_users_status_says_when_the_chats_alerts_wait_for_telegram(tmp_path, fakes):
    """Telegram failing the sends to a chat: its /status says how many of its alerts wait to
    be sent, since when, and that the bot tries again; once they are sent, that none waits.
    (Read from the running bot: while its sends fail, so would the reply.)"""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        chat = bot.app.chat
        assert chat is not None
        await bot.say("/watch BTCUSDT > 100")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.fail_chat(USER, 502, "Bad Gateway")
        await bot.tick("BTCUSDT", 70_000, T)
        outbox = bot.app.notifier.outbox
        assert outbox is not None
        await tg.wait_for(lambda: any(d.last_error for d in outbox.open.values()))
        (alert,) = outbox.open.values()
        waiting = chat.status(USER).split("\n")[2]
        tg.recover()
        await tg.wait_for(lambda: not outbox.open)
        after = chat.status(USER).split("\n")[2]
    assert waiting == (
        f"Alerts to this chat: 1 waiting to be sent, since {format_time(int(alert.created * 1000))}"
        "; Telegram refused the last try, the bot tries again"
    )
    assert after == "Alerts to this chat: none waiting to be sent"


async def test_price_shows_volumes_in_the_short_form_watch_takes(tmp_path, fakes):
    """/price showed 24h quote volume as '12873456789.12', eleven digits to count: volumes read
    '12.87b' (and '184.52k'), the suffixes /watch takes ('/watch BTCUSDT quote_volume > 12b')."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 1000000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        ticker = mini_ticker(
            "BTCUSDT", 70_000, T, volume="184523.417", quote_volume="12873456789.12"
        )
        await binance.publish([ticker])
        await binance.wait_for(lambda: bot.app.engine.last_ticker("BTCUSDT") is not None)
        price = await bot.say("/price BTCUSDT")
    assert price.split("\n")[2] == "volume 184.52k · quote volume 12.87b"


async def test_price_shows_the_24h_change_on_the_side_of_a_watchs_threshold_it_is(tmp_path, fakes):
    """/price (and the digest) rounded the 24h change to 2 decimals: up 4.999% it said '+5.00%'
    while the chat's 'change_24h > 5%' watch stayed quiet. It shows the change as alerts do:
    more decimals where 2 would put it past a threshold of this chat's watches of the symbol,
    and the value the rules compare (0.1 -> 0.105 is 5%, which fires '>= 5%', not
    4.99999999999999%)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT change_24h > 5%")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await binance.publish([mini_ticker("BTCUSDT", "104.999", T, open="100")])
        await binance.wait_for(lambda: bot.app.engine.last_ticker("BTCUSDT") is not None)
        below = await bot.say("/price BTCUSDT")
        chat = bot.app.chat
        assert chat is not None
        digest = chat.digest_text(USER)
        await bot.say("/watch ETHUSDT change_24h >= 5%")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await binance.publish([mini_ticker("ETHUSDT", "0.105", T, open="0.1")])
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 4)  # the alert
        alert = tg.messages_to(USER)[-1].plain_text
        exact = await bot.say("/price ETHUSDT")
    assert below.startswith("BTCUSDT 104.999 (+4.999% 24h)\n")
    assert "BTCUSDT 104.999 (+4.999% 24h)" in digest  # the daily digest shows it so too
    assert "(+5.00% 24h)" in alert
    assert exact.startswith("ETHUSDT 0.105 (+5.00% 24h)\n")


async def test_a_level_already_true_says_it_fires_now(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.price_now("BTCUSDT", 70_000)
        reply = await bot.say("/watch BTCUSDT > 60000")
        assert "true right now (price 70000)" in reply


async def test_a_new_watchs_answer_says_where_it_stands_against_the_price_now(tmp_path, fakes):
    """As /list says it: how far the level is, the value of another metric, and for a crossing
    whose side the price is on already, that it fires only after going back; for each level of
    several. Nothing of the kind without a price now (a price from long ago says nothing)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.price_now("BTCUSDT", 68_000)
        level = await bot.say("/watch BTCUSDT > 70000")
        crossed = await bot.say("/watch BTCUSDT crosses above 65000")
        change = await bot.say("/watch BTCUSDT change_24h > 5%")
        ladder = await bot.say("/watch BTCUSDT < 66000 64000")
        await bot.say("/watch ETHUSDT > 1000000")
        await binance.wait_for_subscriptions({"ethusdt@miniTicker"})
        await bot.tick("ETHUSDT", 3_000, T)  # long ago
        stale = await bot.say("/watch ETHUSDT > 3500")
    assert level.splitlines()[1] == "BTCUSDT price 68000 now, 2.94% to go."
    assert crossed.splitlines()[1] == (
        "BTCUSDT price 68000 now, already above 65000: it fires once it goes back under and "
        "crosses again."
    )
    assert change.splitlines()[1] == "BTCUSDT change_24h +0.00% now."
    assert ladder.splitlines()[1:5] == [
        "w5  BTCUSDT price < 66000 (cooldown 5m)",
        "w6  BTCUSDT price < 64000 (cooldown 5m)",
        "w5: price 68000 now, 2.94% to go.",
        "w6: price 68000 now, 5.88% to go.",
    ]
    assert "now" not in stale


async def test_a_number_alone_is_answered_with_the_sign_the_price_now_gives_it(tmp_path, fakes):
    """'/watch BTC 70000' (no sign) is answered with the price now and the condition that
    alerts when the price gets there: '>' for a level above it, '<' below; '/watch BTC +5%'
    also with the level 5% above the price now (as many decimals as Binance's price). With no
    current price, as before: both signs."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        unknown = await bot.say("/watch ETH 3000")
        await bot.price_now("BTCUSDT", 68_000.5)
        above = await bot.say("/watch btc 70k")
        below = await bot.say("/watch BTCUSDT 65000")
        up, down = await bot.say("/watch btc +5%"), await bot.say("/watch btc -2.5%")
    assert unknown.splitlines()[0] == (
        "Say which way the price should go: /watch ETH > 3000 (above) or /watch ETH < 3000 (below)"
    )
    assert above.splitlines()[0] == (
        "Say which way the price should go: BTC is at 68000.5 now, so /watch BTC > 70k alerts "
        "when it rises to 70k (the other way: /watch BTC < 70k)"
    )
    assert below.splitlines()[0].startswith(
        "Say which way the price should go: BTCUSDT is at 68000.5 now, so /watch BTCUSDT < "
        "65000 alerts when it falls to 65000"
    )
    assert up.splitlines()[0].endswith(
        "; for a level 5% above the price now (68000.5), /watch BTC > 71400.5"
    )
    assert down.splitlines()[0].endswith(
        "; for a level 2.5% below the price now (68000.5), /watch BTC < 66300.5"
    )


async def test_a_move_without_a_window_is_answered_with_one_and_the_level_from_the_price(
    tmp_path, fakes
):
    """'/watch btc rises 5%' was "expected 'in' after '5%'": most likely 5% above the price now.
    The answer gives the move with a window to send, and, from the price now, the level that
    far from it, the options typed kept in both; 'moves' (either way) has no one level."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.price_now("BTCUSDT", 68_000.5)
        up = await bot.say("/watch btc rises 5% once")
        down = await bot.say("/watch btc drops 2.5%")
        either = await bot.say("/watch btc moves 5%")
    assert up.splitlines()[0] == (
        "A move is measured within a time: /watch BTC rises 5% in 1h once (any time up to "
        "366d); for a level 5% above the price now (68000.5), /watch BTC > 71400.5 once"
    )
    assert down.splitlines()[0].endswith(
        "; for a level 2.5% below the price now (68000.5), /watch BTC < 66300.5"
    )
    assert either.splitlines()[0] == (
        "A move is measured within a time: /watch BTC moves 5% in 1h (any time up to 366d)"
    )


async def test_a_moves_watch_says_how_far_the_price_moved_in_its_window(tmp_path, fakes):
    """/list, /price and a new watch's answer show a move's watch as its alert would say the
    move (from the window's low for a rise, its high for a drop); one already as far as it asks
    is said to fire on the next tick."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        now = int(time.time() * 1000)
        await bot.say("/watch BTCUSDT rises 5% in 1h")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 67_000, now - 60_000)
        await bot.tick("BTCUSDT", 68_000, now)
        drop = await bot.say("/watch BTCUSDT drops 2% in 1h")
        either = await bot.say("/watch BTCUSDT moves 1% in 1h")
        listing = await bot.say("/list")
        price = await bot.say("/price btc")
    assert drop.splitlines()[1] == "BTCUSDT down 0.00% from 68000 now."
    # /price (and the digest) under the symbol, each by id
    assert price.splitlines()[-3:] == [
        "  w1 rises 5% in 1h: up 1.49% from 67000",
        "  w2 drops 2% in 1h: down 0.00% from 68000",
        "  w3 moves 1% in 1h: up 1.49% from 67000: true",
    ]
    assert either.splitlines()[1] == (
        "BTCUSDT up 1.49% from 67000 now: that is true, it fires on the next tick."
    )
    assert listing.splitlines()[1].endswith("not fired yet · up 1.49% from 67000 now")
    assert listing.splitlines()[3].endswith("not fired yet · up 1.49% from 67000 now: true")


async def test_a_moves_watch_of_a_new_window_says_where_it_stands_at_once(tmp_path, fakes):
    """A watch of a window no rule had (15m here, beside 1h) said nothing of its move until
    the symbol's next tick: its answer and /list now read it from the prices the bot keeps,
    those in its window only (60000, half an hour ago, is not)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        now = int(time.time() * 1000)
        await bot.say("/watch BTCUSDT rises 20% in 1h")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 60_000, now - 1_800_000)
        await bot.tick("BTCUSDT", 67_000, now - 60_000)
        await bot.tick("BTCUSDT", 68_000, now)
        made = await bot.say("/watch BTCUSDT rises 3% in 15m")
        listing = await bot.say("/list")
    assert made.splitlines()[1] == "BTCUSDT up 1.49% from 67000 now."
    assert listing.splitlines()[1].endswith("not fired yet · up 13.33% from 60000 now")
    assert listing.splitlines()[2].endswith("not fired yet · up 1.49% from 67000 now")


async def test_several_numbers_alone_are_answered_with_each_levels_sign(tmp_path, fakes):
    """'/watch BTC 60000, 70000 once' (levels with no sign): each level's sign from the price
    now, those above in one command and those below in another, the options typed kept (a
    '60000,' read as a second symbol was answered 'missing condition'); with no price now, both
    signs for all of them."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        unknown = await bot.say("/watch ETH 3000 3100 once")
        await bot.price_now("BTCUSDT", 68_000.5)
        above = await bot.say("/watch BTCUSDT 70000 75000")
        mixed = await bot.say("/watch BTCUSDT 60000, 70000 cooldown 1h note tp")
    assert unknown.splitlines()[0] == (
        "Say which way the price should go: /watch ETH > 3000, 3100 once (above) or "
        "/watch ETH < 3000, 3100 once (below)"
    )
    assert above.splitlines()[0] == (
        "Say which way the price should go: BTCUSDT is at 68000.5 now, so /watch BTCUSDT > "
        "70000, 75000 alerts when it rises to each (the other way: /watch BTCUSDT < 70000, 75000)"
    )
    assert mixed.splitlines()[0] == (
        "Say which way the price should go: BTCUSDT is at 68000.5 now, so /watch BTCUSDT > "
        "70000 cooldown 1h note tp alerts when it rises to 70000, and /watch BTCUSDT < 60000 "
        "cooldown 1h note tp when it falls to 60000"
    )


async def test_a_price_level_far_from_the_price_now_is_pointed_out(tmp_path, fakes):
    """'/watch BTCUSDT < 70.000' (a thousands separator, as much of Europe writes it) is a
    watch of 'price < 70', which never fires with BTCUSDT at 68000: the answer said nothing
    of it. A price level 10 times above or below the price now is answered with that
    price; one near it is not."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.price_now("BTCUSDT", 68_000.5)
        far = await bot.say("/watch BTCUSDT < 70.000")
        inside = await bot.say("/watch BTCUSDT any(crosses 1.5k, > 65000)")
        near = await bot.say("/watch BTCUSDT crosses below 62000")
    assert "\nBTCUSDT is at 68000.5 now, far from 70.\n" in far
    assert "far from 1500." in inside
    assert "far from" not in near


async def test_a_level_true_on_a_price_from_long_ago_is_not_said_to_be_true_now(tmp_path, fakes):
    """SOLUSDT was watched, last traded at 210 ten minutes ago, and unwatched: the feed no
    longer carries it, and its last price stays in memory. Watching it again with '> 200'
    was answered 'It is true right now (price 210)', though it may be at 150 by now."""
    binance, tg = fakes
    ten_minutes_ago = int(time.time() * 1000) - 600_000
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 1000000")
        await bot.say("/watch SOLUSDT > 1000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "solusdt@miniTicker"})
        await bot.tick("SOLUSDT", 210, ten_minutes_ago)
        await bot.say("/unwatch w2")
        await binance.wait_for(lambda: binance.subscribed() == {"btcusdt@miniTicker"})
        reply = await bot.say("/watch SOLUSDT > 200")
    assert reply.startswith("Watching SOLUSDT: price > 200")
    assert "true right now" not in reply


async def test_a_symbol_typed_in_another_form_is_answered_with_a_contract_binance_lists(
    tmp_path, fakes
):
    """The suggestion for 'BTC-PERP' was 'BTCPERP' and for 'ETHUSDT/BTCUSDT' 'ETHUSDTBTCUSDT',
    names Binance lists no contract by (sent as suggested, they were unknown), and a
    cashtag ('$BTC', '#eth') was "not a symbol; use letters and digits". The suggestion is the
    contract the name stands for, checked against Binance's list, or none."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        cashtag = await bot.say("/watch $BTC > 70000")
        hashtag = await bot.say("/price #eth")
        perp = await bot.say("/watch BTC-PERP > 70000")
        pair = await bot.say("/watch btc/usdt > 70000")
        two = await bot.say("/watch ETHUSDT/BTCUSDT > 1")
        assert bot.app.book is not None
        assert bot.app.book.of_chat(USER) == []
    assert cashtag.startswith("'$BTC' is not a symbol (did you mean BTCUSDT?)\nUse: /watch ")
    assert hashtag.startswith("'#eth' is not a symbol (did you mean ETHUSDT?)\nUse: /price ")
    assert perp.startswith("'BTC-PERP' is not a symbol (did you mean BTCUSDT?)")
    assert pair.startswith("'btc/usdt' is not a symbol (did you mean BTCUSDT?)")  # as before
    assert two.startswith("'ETHUSDT/BTCUSDT' is not a symbol Binance lists\n")


async def test_unwatch_with_several_ids_removes_those_the_chat_has(tmp_path, fakes):
    """'/unwatch w1 w3 w9', a clean-up after /list, was refused ("unexpected 'w3'"): one id
    at a time. The chat's watches among them are removed, the others named; the rest stay."""
    binance, tg = fakes
    stored_watches(tmp_path, [("BTCUSDT", "price > 1"), ("ETHUSDT", "price > 2")])
    stored_watches(tmp_path, [("SOLUSDT", "price > 3")])
    stored_watches(tmp_path, [("SOLUSDT", "price > 4")], chat=USER + 1)  # w4: another chat's
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/unwatch w1 w3, w4 w9")
        assert bot.app.book is not None
        left = [r.id for r in bot.app.book.rows.values()]
        none = await bot.say("/unwatch w8 w9")
    assert reply.startswith(
        "Removed w1 (BTCUSDT price > 1), w3 (SOLUSDT price > 3). This chat has no watches w4, w9."
        " To make them again, send this:"
    )
    assert sorted(left) == [2, 4]
    assert none == "This chat has no watches w8, w9. /list shows its watches."


async def test_mute_and_unmute_with_several_ids_act_on_those_the_chat_has(tmp_path, fakes):
    """'/mute w1 w2 1h' was answered "The mute needs a duration ..., got 'w2'", and '/unmute w1
    w2' refused: one id at a time, as /unwatch was."""
    binance, tg = fakes
    stored_watches(tmp_path, [("BTCUSDT", "price > 1"), ("ETHUSDT", "price > 2")])
    stored_watches(tmp_path, [("SOLUSDT", "price > 3")])
    async with Bot(tmp_path, binance, tg) as bot:
        muted = await bot.say("/mute w1 w3 w9 1h")
        book = bot.app.book
        assert book is not None
        states = {i: r.muted_until is not None for i, r in book.rows.items()}
        unmuted = await bot.say("/unmute w1, w2")
        after = {i: r.muted_until is not None for i, r in book.rows.items()}
    assert muted.startswith("Muted w1, w3 until ")
    assert "This chat has no watch w9." in muted
    assert states == {1: True, 2: False, 3: True}
    assert unmuted == "Unmuted w1. w2 is not muted: it alerts."
    assert after == {1: False, 2: False, 3: True}


async def test_a_mute_or_unwatch_in_reply_to_an_alert_acts_on_its_watch(tmp_path, fakes):
    """Replying to an alert with '/mute 1h' (or '/unwatch') was answered "which watch?": the
    alert names its watch ([w1]), and a reply to it is about that watch. A reply to a message
    naming no one watch (/help) is answered as before."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 cooldown 0")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        alert = tg.messages_to(USER)[-1].message_id
        muted = await bot.say("/mute 1h", reply_to=alert)
        assert bot.app.book is not None
        assert bot.app.book.rows[1].muted_until is not None
        unmuted = await bot.say("/unmute", reply_to=alert)
        await bot.say("/help")
        help_ = tg.messages_to(USER)[-1].message_id
        unknown = await bot.say("/mute 1h", reply_to=help_)
        removed = await bot.say("/unwatch", reply_to=alert)
    assert muted.startswith("Muted w1 until ")
    assert unmuted == "Unmuted w1."
    assert unknown.startswith("Which watch? Put its id before the time: /mute w12 1h")
    assert removed.startswith("Removed w1 (BTCUSDT price > 100). To make it again: /watch")


async def test_a_watch_in_reply_to_an_alert_takes_its_symbol(tmp_path, fakes):
    """'/watch > 120' in reply to an alert (the next level after the one that fired) was
    "missing symbol": it is the alert's symbol, also once its ``once`` watch has ended with
    that alert, and so for a reply to a /price answer; '/price' alone, the alert's price.
    Without a reply, or in reply to a message of no symbol (/help), it is answered as before,
    the reply named as a way."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 2)
        alert = tg.messages_to(USER)[-1].message_id
        next_level = await bot.say("/watch > 120 cooldown 1h note tp2", reply_to=alert)
        price_of = await bot.say("/price", reply_to=alert)
        unsigned = await bot.say("/watch 130", reply_to=alert)
        which = await bot.say("/price")
        await bot.say("/price eth")
        price = tg.messages_to(USER)[-1].message_id
        eth = await bot.say("/watch < 50", reply_to=price)
        await bot.say("/help")
        help_ = tg.messages_to(USER)[-1].message_id
        unknown = await bot.say("/watch > 120", reply_to=help_)
        alone = await bot.say("/watch > 120")
    assert next_level.startswith("Watching BTCUSDT: price > 120 (cooldown 1h, note «tp2»). Id w2.")
    assert eth.startswith("Watching ETHUSDT: price < 50 (cooldown 5m). Id w3.")
    assert price_of.startswith("BTCUSDT 110"), price_of
    # a level alone: the symbol's, its sign asked for as for '/watch BTCUSDT 130'
    assert unsigned.startswith("Say which way the price should go: /watch BTCUSDT > 130 (above)")
    assert which.startswith(
        "Which symbol? e.g. /price BTCUSDT (or send /price in reply to an alert)"
    )
    for answer in (unknown, alone):
        assert answer.startswith(
            "Missing symbol: put it before the condition, e.g. BTCUSDT (or send the command in "
            "reply to an alert, for its symbol)"
        )


async def test_a_range_break_typed_with_or_is_answered_with_a_command_that_works(tmp_path, fakes):
    """'/watch BTCUSDT > 70000 or < 60000', the commonest two-sided alert, was answered
    "Unexpected 'or' (did you mean for?)". The answer is the any(...) command, which, sent as
    it is, makes the watch; nothing was made before."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch btc > 70k or < 60k cooldown 1h")
        assert bot.app.book is not None
        assert bot.app.book.of_chat(USER) == []
        command = reply.split("write ", 1)[1].split("\n", 1)[0]
        made = await bot.say(command)
    assert command == "/watch BTC any(price > 70000, price < 60000) cooldown 1h"
    assert made.startswith("Watching BTCUSDT: any(price > 70000, price < 60000) (cooldown 1h)")


async def test_start_is_a_short_welcome_with_the_first_command_to_send(tmp_path, fakes):
    """/start, a new user's first message, answered with the whole /help (50 lines) under a
    greeting; it is six lines: what the bot does, a first watch, where to go next, and the
    chat's id (what an operator needs for ALERTBOT_ADMIN_CHATS; Telegram shows it nowhere)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        hello = await bot.say("/start")
        help_ = await bot.say("/help")
    assert hello.split("\n") == [
        "Hello! I send price alerts for Binance futures.",
        "Start with a watch: /watch BTCUSDT > 70000",
        "  (a message when BTCUSDT trades above 70000)",
        "Then /list shows your watches and /price BTCUSDT the last price.",
        "/help: every command, with examples.",
        f"This chat's id: {USER}",
    ]
    assert help_.startswith("Commands:\n/watch SYMBOL CONDITION")


async def test_price_of_a_watched_symbol_before_its_first_tick_does_not_say_watch_it(
    tmp_path, fakes
):
    """Asked right after '/watch BTCUSDT > 70000', '/price BTCUSDT' answered that the feed
    carries only watched symbols and to watch it, which the user had just done (Binance's
    24h ticker failing: else it is asked for and shown)."""
    binance, tg = fakes
    binance.fail_ticker(status=503)
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 70000")
        price = await bot.say("/price BTCUSDT")
    assert price.startswith(
        "No price for BTCUSDT yet: its first one comes within seconds. Ask again.\n"
    )


SOL = mini_ticker("SOLUSDT", "150.50", T, open="140", high="155", low="139.5", volume=10)
#: a rule on BTCUSDT alone: the feed is on symbol streams (with no rule, on the all-market one)
BTC_ONLY = RuleSet(
    rules=(Rule(id="btc", condition=parse("price > 1000000"), symbols=("BTCUSDT",)),)
)


async def on_symbol_streams(bot: Bot) -> None:
    await bot.binance.wait_for(lambda: bot.binance.subscribed() == {"btcusdt@miniTicker"})


async def test_price_of_a_symbol_nobody_watches_is_fetched_from_binance(tmp_path, fakes):
    """On symbol streams the feed carries only watched symbols: '/price SOLUSDT', asked before
    setting a level, was answered "No price for SOLUSDT yet ... Watch it". It is Binance's 24h
    ticker, asked for once, in the same form, and said to be fetched."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, BTC_ONLY) as bot:
        await on_symbol_streams(bot)
        await binance.publish([SOL])  # on no stream the bot reads
        price = await bot.say("/price sol")
        assert bot.app.engine.last_ticker("SOLUSDT") is None  # the engine is left alone
    lines = price.split("\n")
    assert lines[:2] == ["SOLUSDT 150.50 (+7.50% 24h)", "24h high 155 · low 139.5"]
    assert lines[2].startswith("volume 10 · quote volume ")
    assert lines[3] == f"at {format_time(T)}, fetched from Binance on request"
    assert binance.stats.ticker_requests == ["SOLUSDT"]


async def test_price_of_several_symbols_answers_each_in_the_order_asked(tmp_path, fakes):
    """/price btc, sol: one answer, a block per symbol in the order asked, each as /price of
    it alone gives it: the engine's BTCUSDT, Binance's SOLUSDT (fetched, said so)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, BTC_ONLY) as bot:
        await on_symbol_streams(bot)
        await bot.tick("BTCUSDT", 70_000, T)
        await binance.publish([SOL])  # on no stream the bot reads
        both = await bot.say("/price btc, sol")
        btc, sol = await bot.say("/price btc"), await bot.say("/price sol")
    assert both == f"{btc}\n\n{sol}"
    assert btc.startswith("BTCUSDT 70000 ")
    assert sol.startswith("SOLUSDT 150.50 ")
    assert "fetched from Binance on request" in sol
    assert binance.stats.ticker_requests == ["SOLUSDT"]  # the second asking: from the cache


async def test_price_asked_again_and_again_asks_binance_once(tmp_path, fakes):
    """A user sending /price over and over must not hammer Binance: the answer is kept a few
    seconds (here an hour, so the test does not depend on the machine's speed)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_cache": 3600.0}) as bot:
        await on_symbol_streams(bot)
        await binance.publish([SOL])
        answers = [await bot.say("/price SOLUSDT") for _ in range(4)]
    assert all(a.startswith("SOLUSDT 150.50") for a in answers)
    assert binance.stats.ticker_requests == ["SOLUSDT"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("503", "Binance answered 503 (-1000: An unknown error occurred"),
        ("timeout", "no answer in time."),
        ("malformed", "Binance's answer was not a ticker."),
    ],
)
async def test_price_when_binance_fails_is_the_usual_answer_and_why(tmp_path, fakes, fault, reason):
    """Binance's 24h ticker failing (an error, no answer, garbage): /price answers as before it
    was asked, with a line saying why, and the bot goes on answering."""
    binance, tg = fakes
    if fault == "503":
        binance.fail_ticker(status=503)
    elif fault == "timeout":
        binance.hold_ticker()
    else:
        binance.answer_ticker(b'{"symbol": "SOLUSDT", "lastPrice": [')
    # a short timeout only where it is the fault: a busy machine can take 0.2 s to answer
    timeout = 0.2 if fault == "timeout" else 5.0
    async with Bot(
        tmp_path, binance, tg, BTC_ONLY, feed_settings={"price_timeout": timeout}
    ) as bot:
        await on_symbol_streams(bot)
        price = await bot.say("/price SOLUSDT")
        binance.hold_ticker(False)
        assert (await bot.say("/help")).startswith("Commands:")
    lines = price.split("\n")
    assert lines[0].startswith("No price for SOLUSDT yet")
    assert "/watch SOLUSDT" in lines[0]
    assert lines[1].startswith(f"Asking Binance for it failed: {reason}")


@pytest.mark.parametrize(
    "field",
    ['"volume": ' + "9" * 400, '"closeTime": 100000000000000000000'],
    ids=["volume beyond a float", "close time beyond year 9999"],
)
async def test_price_when_binances_answer_has_a_number_out_of_range_is_not_a_ticker(
    tmp_path, fakes, field
):
    """A 24h ticker with a number no float holds, or a closeTime past any date a reply can
    show, answered "Sorry, something went wrong" with a traceback in the log (OverflowError,
    OSError): it is an answer that is not a ticker, said so, as other garbage is."""
    binance, tg = fakes
    good = binance.ticker_24hr("SOLUSDT") | {"symbol": "SOLUSDT"}
    key = field.partition(":")[0].strip('"')
    body = json.dumps({k: v for k, v in good.items() if k != key})[:-1] + f", {field}}}"
    binance.answer_ticker(body.encode())
    async with Bot(tmp_path, binance, tg, BTC_ONLY) as bot:
        await on_symbol_streams(bot)
        price = await bot.say("/price SOLUSDT")
    lines = price.split("\n")
    assert lines[0].startswith("No price for SOLUSDT yet")
    assert lines[1] == "Asking Binance for it failed: Binance's answer was not a ticker."


async def test_price_of_a_symbol_binance_says_it_does_not_list_is_unknown(tmp_path, fakes):
    """The symbol list could not be read, so a typo is asked of Binance, which answers -1121:
    the reply says the symbol is unknown, not "no price yet ... watch it" (which would have the
    user watch a symbol that does not exist)."""
    binance, tg = fakes
    binance.answer_rest(b"{}")  # exchangeInfo: the bot cannot tell which symbols exist
    async with Bot(tmp_path, binance, tg, BTC_ONLY, listed=False) as bot:
        await on_symbol_streams(bot)
        typo = await bot.say("/price NOPEUSDT")
    assert typo == "Unknown symbol NOPEUSDT: Binance does not list it."
    assert binance.stats.ticker_requests == ["NOPEUSDT"]


async def test_price_asks_binance_nothing_for_a_symbol_the_engine_has_or_one_it_does_not_list(
    tmp_path, fakes
):
    """The guard for the tests above: a symbol with a ticker in the engine is answered from it,
    and one Binance surely does not list is refused, without asking Binance either time."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, BTC_ONLY) as bot:
        await on_symbol_streams(bot)
        await bot.tick("BTCUSDT", 70_000, T)
        btc = await bot.say("/price BTCUSDT")
        typo = await bot.say("/price BTCUSDX")
    assert btc.startswith("BTCUSDT 70000 (+0.00% 24h)")
    assert "fetched" not in btc
    assert typo == "Unknown symbol BTCUSDX. Did you mean BTCUSDT?"
    assert binance.stats.ticker_requests == []


async def test_the_command_menu_is_registered(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg):
        pass
    names = [c["command"] for c in tg.commands]
    assert {"watch", "list", "unwatch", "mute", "unmute", "price", "status", "help"} <= set(names)


async def test_a_muted_watch_stays_quiet_until_unmuted(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 1s")
        assert (await bot.say("/mute w1 1h")).startswith("Muted w1 until")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)  # muted: no alert
        assert (await bot.say("/unmute w1")) == "Unmuted w1."
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 110, T + 6000)
        await tg.wait_for(lambda: "crosses above 100" in tg.messages_to(USER)[-1].plain_text)
        alerts = [m for m in tg.messages_to(USER) if "crosses above 100: price" in m.plain_text]
    assert len(alerts) == 1


async def test_mute_all_and_unwatch_all_name_a_chats_only_watch(tmp_path, fakes):
    """'/mute all' and '/unwatch all' in a chat of one watch answered 'Muted all 1 watch' and
    'Removed all 1 watch.': they name it, as '/mute w1' and '/unwatch w1' do."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        muted = await bot.say("/mute all 1h")
        removed = await bot.say("/unwatch all")
    assert muted.startswith("Muted w1 until ")
    assert removed.startswith("Removed w1 (BTCUSDT price > 100). To make it again: /watch")


async def test_unmute_names_the_watches_it_unmuted(tmp_path, fakes):
    """'/unmute' after '/mute w1 1h' in a chat of 3 watches answered 'Unmuted all 3 watches.',
    as if all 3 had been muted; it names the one it unmuted, and says when none was muted."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for level in (100, 200, 300):
            await bot.say(f"/watch BTCUSDT > {level}")
        await bot.say("/mute w1 1h")
        one = await bot.say("/unmute")
        none = await bot.say("/unmute")
        not_muted = await bot.say("/unmute w2")
        await bot.say("/mute all 1h")
        every = await bot.say("/unmute all")
    assert one == "Unmuted w1."
    assert none == "No watch here is muted: all of them alert."
    assert not_muted == "w2 is not muted: it alerts."
    assert every == "Unmuted 3 watches: w1, w2, w3."


async def test_a_watch_muted_when_it_would_fire_is_not_used_up(tmp_path, fakes):
    """DESIGN, Firing: a muted rule does not fire. So a ``once`` watch that crosses while muted
    stays for its next crossing, and a level still true after /unmute alerts on the next tick
    (as at the end of a cooldown), instead of the mute having used the firing up."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 once")
        await bot.say("/watch BTCUSDT > 200 cooldown 1s")
        assert (await bot.say("/mute all 1h")).startswith("Muted all")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 210, T + 1000)  # both would fire: muted
        assert (await bot.say("/unmute")).startswith("Unmuted")
        await bot.tick("BTCUSDT", 220, T + 2000)  # w2 still true: fires now
        await tg.wait_for(lambda: "price > 200: price 220" in tg.messages_to(USER)[-1].plain_text)
        await bot.tick("BTCUSDT", 90, T + 3000)
        await bot.tick("BTCUSDT", 110, T + 4000)  # w1 crosses again: fires, once
        await tg.wait_for(lambda: "crosses above 100" in tg.messages_to(USER)[-1].plain_text)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: sorted(book.rows) == [2])  # w1 done, w2 goes on
        alerts = [m.plain_text for m in tg.messages_to(USER) if m.plain_text.startswith("BTCUSDT")]
    assert len(alerts) == 2


@pytest.mark.parametrize(
    ("status", "description", "logged"),
    [
        (
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running",
            "chat: another process is polling for this bot token's updates",
        ),
        (502, "Bad Gateway", "chat: polling for commands failed (Bad Gateway); trying again"),
    ],
    ids=["another-process", "outage"],
)
async def test_a_failed_poll_is_one_log_line_and_polling_goes_on(
    tmp_path, fakes, caplog, status, description, logged
):
    """python-telegram-bot logged a whole traceback for each failed getUpdates (every few
    seconds through an outage, or while a second process polls with the same token)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, poll_interval=0.01) as bot:
        tg.fail_next(1, status=status, description=description, method="getUpdates")
        await tg.wait_for(lambda: any(r.status == status for r in tg.requests), timeout=10)
        assert (await bot.say("/help")).startswith("Commands")  # polling goes on
    lines = [r for r in caplog.records if logged in r.getMessage()]
    assert len(lines) == 1
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("telegram")]


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def poll_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, m) for r in caplog.records if "polling for commands" in (m := r.getMessage())
    ]


async def test_a_polling_outage_is_one_warning_then_one_line_when_polling_works_again(
    tmp_path, fakes, caplog
):
    """Telegram failing every poll for a while: one warning when polling starts failing (not
    one per failed poll), and one info line when a poll works again, saying how long polling
    was down and how many polls failed."""
    binance, tg = fakes
    caplog.set_level("INFO", logger="alertbot.chat")
    async with Bot(tmp_path, binance, tg, poll_interval=0.01) as bot:
        assert bot.app.chat is not None
        bot.app.chat.polls.clock = clock = Clock()
        tg.down(502, method="getUpdates")
        await tg.wait_for(lambda: sum(r.status == 502 for r in tg.calls("getUpdates")) >= 6)
        clock.now += 125.0
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")
    failed = sum(r.status == 502 for r in tg.calls("getUpdates"))
    assert poll_lines(caplog) == [
        ("WARNING", "chat: polling for commands failed (Bad Gateway); trying again"),
        ("INFO", f"chat: polling for commands works again after 2m 5s ({failed} polls failed)"),
    ]


async def test_a_long_polling_outage_is_recalled_at_the_reminder_interval(tmp_path, fakes, caplog):
    """Through a long outage the warning is repeated once per ``poll_reminder``, naming how
    long polling has been failing, how many polls failed and the last error."""
    binance, tg = fakes
    caplog.set_level("INFO", logger="alertbot.chat")
    async with Bot(tmp_path, binance, tg, poll_interval=0.01, poll_reminder=600.0) as bot:
        assert bot.app.chat is not None
        bot.app.chat.polls.clock = clock = Clock()
        tg.down(502, method="getUpdates")
        await tg.wait_for(lambda: sum(r.status == 502 for r in tg.calls("getUpdates")) >= 3)
        clock.now += 599.0  # not yet
        seen = sum(r.status == 502 for r in tg.calls("getUpdates"))
        await tg.wait_for(lambda: sum(r.status == 502 for r in tg.calls("getUpdates")) > seen)
        assert len(poll_lines(caplog)) == 1
        clock.now += 1.0
        seen = sum(r.status == 502 for r in tg.calls("getUpdates"))
        await tg.wait_for(lambda: sum(r.status == 502 for r in tg.calls("getUpdates")) > seen + 1)
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")
    lines = poll_lines(caplog)
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO"]
    assert re.fullmatch(
        r"chat: polling for commands still failing after 10m 0s \((\d+) polls failed; the "
        r"last: Bad Gateway\)",
        lines[1][1],
    )


async def later_polls(tg: FakeTelegram, n: int) -> None:
    """Until ``n`` more getUpdates calls came in: each but the last ended (answered or timed
    out) after this was called, and each from the second on was also sent after it."""
    seen = len(tg.calls("getUpdates"))
    await tg.wait_for(lambda: len(tg.calls("getUpdates")) >= seen + n)


async def test_polls_that_time_out_are_one_warning_once_unanswered_for_two_polls(
    tmp_path, fakes, caplog
):
    """Telegram taking every getUpdates and never answering (PTB tries a timed-out poll again
    at once and reports nothing): no line while no poll has been answered for less than two
    polls' time (long poll and margin: 1.4 s here), then one warning, and one line when a poll
    works again."""
    binance, tg = fakes
    caplog.set_level("INFO", logger="alertbot.chat")
    async with Bot(tmp_path, binance, tg, poll_margin=0.2) as bot:
        assert bot.app.chat is not None
        bot.app.chat.polls.clock = clock = Clock()
        await later_polls(tg, 2)  # the polls in flight were sent on this clock
        tg.down(None, method="getUpdates")
        await later_polls(tg, 3)
        clock.now += 1.0
        await later_polls(tg, 2)
        assert poll_lines(caplog) == []
        clock.now += 0.5
        await later_polls(tg, 2)
        clock.now += 60.0
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")
    lines = poll_lines(caplog)
    assert [level for level, _ in lines] == ["WARNING", "INFO"]
    assert re.fullmatch(
        r"chat: polling for commands failed \(no answer from Telegram for 1\.5s: \d+ polls "
        r"timed out\); trying again",
        lines[0][1],
    )
    assert re.fullmatch(
        r"chat: polling for commands works again after 1m 2s \(\d+ polls failed\)", lines[1][1]
    )


async def test_a_poll_or_two_that_time_out_are_not_logged(tmp_path, fakes, caplog):
    """Polls left unanswered for less than two polls' time (a connection a NAT dropped during
    the long poll) are no outage: no warning, and no line when a poll works again."""
    binance, tg = fakes
    caplog.set_level("INFO", logger="alertbot.chat")
    async with Bot(tmp_path, binance, tg, poll_margin=0.2) as bot:
        assert bot.app.chat is not None
        bot.app.chat.polls.clock = Clock()
        tg.down(None, method="getUpdates")
        await later_polls(tg, 3)
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")
    assert poll_lines(caplog) == []


async def test_a_long_outage_of_polls_that_time_out_is_recalled_at_the_reminder_interval(
    tmp_path, fakes, caplog
):
    """Polls that keep timing out are reminded of once per ``poll_reminder`` like any other
    failing polls, the last error named as a timeout."""
    binance, tg = fakes
    caplog.set_level("INFO", logger="alertbot.chat")
    async with Bot(tmp_path, binance, tg, poll_margin=0.2, poll_reminder=600.0) as bot:
        assert bot.app.chat is not None
        bot.app.chat.polls.clock = clock = Clock()
        await later_polls(tg, 2)
        tg.down(None, method="getUpdates")
        await later_polls(tg, 2)
        clock.now += 2.0
        await later_polls(tg, 2)
        assert len(poll_lines(caplog)) == 1
        clock.now += 600.0
        await later_polls(tg, 2)
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")
    lines = poll_lines(caplog)
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "INFO"]
    assert re.fullmatch(
        r"chat: polling for commands still failing after 10m 2s \((\d+) polls failed; the "
        r"last: Timed out\)",
        lines[1][1],
    )


async def served(app: App) -> tuple[int, dict[str, Any], str]:
    """``app``'s /healthz (status and JSON) and /metrics, served on loopback for the asking."""
    http = HttpService(app, 0, host="127.0.0.1")
    port = await http.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/healthz")
            metrics = await client.get("/metrics")
    finally:
        await http.stop()
    return health.status_code, health.json(), metrics.text


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_polling_outage_is_in_healthz_metrics_and_an_admins_status_not_a_503(
    tmp_path, fakes
):
    """Telegram failing every poll: /healthz's ``telegram_polling`` says failing, since when,
    for how long and the last error, and /healthz stays 200 (a restart would not bring
    Telegram back); /metrics has the seconds it has been failing and the failed polls; once a
    poll works again it is ok, and an admin's /status says when polling last failed."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, poll_interval=0.01, admin_chats=(USER,)) as bot:
        chat = bot.app.chat
        assert chat is not None
        await bot.say("/watch BTCUSDT > 1000000")  # the feed carries a symbol: it can be fresh
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        chat.polls.clock = clock = Clock()
        chat.clock = wall = Clock()
        wall.now = T / 1000
        await later_polls(tg, 2)  # a poll answered on these clocks
        await bot.tick("BTCUSDT", 70_000, T)
        code, body, metrics = await served(bot.app)
        assert code == 200, body
        assert body["telegram_polling"] == {
            "status": "ok",
            "last_answer_age": 0.0,
            "failed_polls": 0,
        }
        assert "alertbot_telegram_polling_failing_seconds 0.0" in metrics
        assert "alertbot_telegram_poll_failures_total 0.0" in metrics

        tg.down(502, method="getUpdates")
        await tg.wait_for(lambda: sum(r.status == 502 for r in tg.calls("getUpdates")) >= 3)
        clock.now += 125.0
        await bot.tick("BTCUSDT", 70_001, T + 1000)
        code, body, metrics = await served(bot.app)
        assert code == 200, body  # the feed and the alerts work: no restart
        part = body["telegram_polling"]
        assert part["failed_polls"] >= 3
        assert part == {
            "status": "failing",
            "since": iso(T / 1000 - 125),
            "failing_for": 125.0,
            "last_answer_age": 125.0,
            "failed_polls": part["failed_polls"],
            "last_error": "NetworkError",
            "last_error_text": "Bad Gateway",
        }
        assert "alertbot_telegram_polling_failing_seconds 125.0" in metrics
        failures = re.search(r"^alertbot_telegram_poll_failures_total (\d+)\.0$", metrics, re.M)
        assert failures is not None
        assert int(failures[1]) >= 3

        tg.recover()
        status = await bot.say("/status")
        failed = sum(r.status == 502 for r in tg.calls("getUpdates"))
        assert status.split("\n")[-1] == (
            f"Polling for commands: works; it last failed for 2m 5s until {format_time(T)} "
            f"({failed} polls failed; the last: Bad Gateway)"
        )
        code, body, metrics = await served(bot.app)
        assert body["telegram_polling"]["status"] == "ok"
        assert "alertbot_telegram_polling_failing_seconds 0.0" in metrics


async def test_a_poll_refused_with_429_is_a_failed_poll_in_healthz_metrics_and_the_log(
    tmp_path, fakes, caplog
):
    """Telegram answering getUpdates 429 (flood control, with retry_after): python-telegram-bot
    waits and polls again without a word to error_callback (it says nothing of RetryAfter, as
    of a timeout), so /healthz said ok and no failed poll was counted. It is a failed poll as
    any other: failing in /healthz with its error, counted in
    alertbot_telegram_poll_failures_total, one warning; ok once a poll works again."""
    binance, tg = fakes
    caplog.set_level("INFO", logger="alertbot.chat")
    async with Bot(tmp_path, binance, tg, poll_interval=0.01) as bot:
        chat = bot.app.chat
        assert chat is not None
        await later_polls(tg, 1)
        tg.fail_next(1, status=429, retry_after=1, method="getUpdates")
        await tg.wait_for(lambda: any(r.status == 429 for r in tg.calls("getUpdates")))
        await tg.wait_for(lambda: chat.polls.total == 1, timeout=2)
        _, during, _ = await served(bot.app)  # python-telegram-bot waits 1.5 s meanwhile
        assert (await bot.say("/help")).startswith("Commands")  # polling goes on
        _, after, metrics = await served(bot.app)
    part = during["telegram_polling"]
    assert (part["status"], part["failed_polls"], part["last_error"]) == (
        "failing",
        1,
        "RetryAfter",
    )
    assert "retry in 1" in part["last_error_text"].lower()
    assert after["telegram_polling"]["status"] == "ok"
    assert "alertbot_telegram_poll_failures_total 1.0" in metrics
    assert [level for level, _ in poll_lines(caplog)] == ["WARNING", "INFO"]


async def test_polls_that_time_out_are_failing_in_healthz_once_unanswered_for_two_polls(
    tmp_path, fakes
):
    """Telegram taking every poll and answering none: /healthz says ok while no poll has been
    answered for less than two polls' time (a NAT's dropped connection), then failing, since
    the first unanswered poll was sent, with the last error a timeout."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, poll_margin=0.2) as bot:
        chat = bot.app.chat
        assert chat is not None
        chat.polls.clock = clock = Clock()
        await later_polls(tg, 2)  # the polls in flight were sent on this clock
        tg.down(None, method="getUpdates")
        await later_polls(tg, 3)
        part = (await served(bot.app))[1]["telegram_polling"]
        assert (part["status"], part["last_error"]) == ("ok", "TimedOut")
        clock.now += 1.5
        part = (await served(bot.app))[1]["telegram_polling"]
        assert (part["status"], part["failing_for"]) == ("failing", 1.5)
        assert (part["last_error"], part["last_error_text"]) == ("TimedOut", "Timed out")
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")
        assert (await served(bot.app))[1]["telegram_polling"]["status"] == "ok"


async def test_healthz_says_polling_fails_once_no_poll_is_answered_for_two_polls(tmp_path, fakes):
    """PTB's polling loop gone without an error (cancelled here by name, as a bug would end
    it): no poll fails, none is sent either; /healthz says polling is failing once no poll has
    been answered for two polls' time, since the last answered one, with no error named."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, poll_margin=0.2) as bot:
        chat = bot.app.chat
        assert chat is not None
        chat.polls.clock = clock = Clock()
        await later_polls(tg, 2)  # a poll answered on this clock
        (loop,) = [
            t for t in asyncio.all_tasks() if t.get_name() == "Updater:start_polling:polling_task"
        ]
        loop.cancel()
        await wait_until(loop.done)
        clock.now += 1.3
        assert (await served(bot.app))[1]["telegram_polling"]["status"] == "ok"
        clock.now += 0.2
        part = (await served(bot.app))[1]["telegram_polling"]
    assert part == {
        "status": "failing",
        "since": part["since"],
        "failing_for": 1.5,
        "last_answer_age": 1.5,
        "failed_polls": 0,
    }


async def test_healthz_says_polling_fails_while_telegram_is_unreachable_at_the_start(
    tmp_path, fakes
):
    """Telegram down when the bot starts (polling cannot even start: getMe fails, retried):
    /healthz says polling is failing, with Telegram's error, until it starts."""
    binance, tg = fakes
    tg.down(502)
    bot = Bot(tmp_path, binance, tg)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.app.run(stop))
    try:
        await tg.wait_for(lambda: bot.app.chat is not None and bot.app.chat.polls.total > 0)
        part = (await served(bot.app))[1]["telegram_polling"]
        assert part["status"] == "failing"
        assert (part["last_error"], part["last_error_text"]) == ("NetworkError", "Bad Gateway")
        assert part["last_answer_age"] is None
        tg.recover()
        await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=10)
        assert (await bot.say("/help")).startswith("Commands")
        assert (await served(bot.app))[1]["telegram_polling"]["status"] == "ok"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_failed_start_of_polling_leaves_no_connection_open(tmp_path, fakes):
    """Telegram down at the start: PTB opens its HTTP clients before getMe and left them open
    when getMe failed, a connection pool leaked per try (found as an unclosed socket when
    collected). Each failed start now closes them."""
    binance, tg = fakes
    tg.down(502, method="getMe")
    bot = Bot(tmp_path, binance, tg)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.app.run(stop))
    try:
        # the notifier's getMe, then the chat's start's
        await tg.wait_for(lambda: sum(r.status == 502 for r in tg.calls("getMe")) >= 2)
        await asyncio.sleep(0)  # its failure is handled
        gc.collect()  # a leaked client's sockets warn (an error here) as they are collected
        await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_token_revoked_while_running_is_failing_polling_in_healthz(tmp_path, fakes, caplog):
    """The token revoked while the bot runs: PTB ends polling for good on the 401, without a
    word to the error callback. /healthz says polling is failing with InvalidToken (it no
    longer said anything), and the log says chat commands are off."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        chat = bot.app.chat
        assert chat is not None
        tg.token = "9:another-token"
        await tg.wait_for(lambda: chat.polls.total > 0)
        part = (await served(bot.app))[1]["telegram_polling"]
    assert (part["status"], part["last_error"]) == ("failing", "InvalidToken")
    assert part["last_error_text"] == "Unauthorized"
    (line,) = [r for r in caplog.records if "rejected the bot token" in r.getMessage()]
    assert line.levelname == "ERROR"


async def test_a_token_rejected_by_a_start_of_polling_is_in_healthz_redacted(tmp_path, fakes):
    """PTB's error for a token rejected when polling starts quotes the token: /healthz names
    the error with the token redacted (it is served to whoever reaches the port)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        chat = bot.app.chat
        assert chat is not None
        await chat.stop()  # as the start's retry does
        tg.token = "9:another-token"
        with pytest.raises(InvalidToken):
            await chat.start()
        _, body, _ = await served(bot.app)
        tg.token = TOKEN
    part = body["telegram_polling"]
    assert (part["status"], part["last_error"]) == ("failing", "InvalidToken")
    assert part["last_error_text"] == "The token `[redacted]` was rejected by the server."
    assert TOKEN not in json.dumps(body)


async def test_a_token_revoked_while_running_does_not_break_the_stop(tmp_path, fakes):
    """PTB's polling loop ended on a revoked token raises that error again from the updater's
    stop: it came out of App.run, and the stop after it (draining the outbox, saving the
    state, closing the database) was skipped. Now the stop ends cleanly."""
    binance, tg = fakes
    bot = Bot(tmp_path, binance, tg)
    async with bot:
        chat = bot.app.chat
        assert chat is not None
        (loop,) = [
            t for t in asyncio.all_tasks() if t.get_name() == "Updater:start_polling:polling_task"
        ]
        tg.token = "9:another-token"
        await wait_until(loop.done)  # PTB's polling loop ended on the 401
    assert chat.app is None  # stopped and shut down
    assert bot.app.notifier.store is None  # the stop went on: the database is closed


async def test_a_failed_poll_answered_with_an_html_page_is_logged_cut_short(
    tmp_path, fakes, caplog
):
    """Telegram's front end answering getUpdates with its HTML error page (a proxy's 502, not
    the Bot API's JSON): the poller's warning quotes the error cut to 200 characters, not the
    whole page."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, poll_interval=0.01) as bot:
        # the long poll under way ends within its timeout (0.5 s); the next one gets the page
        tg.down(502, page=True, method="getUpdates")
        await tg.wait_for(lambda: any(r.status == 502 for r in tg.calls("getUpdates")))
        tg.recover()
        assert (await bot.say("/help")).startswith("Commands")  # polling goes on
    (line, *_) = [m for r in caplog.records if "polling for" in (m := r.getMessage())]
    assert line.startswith("chat: polling for commands failed (Bad Gateway (502). Parsing the")
    assert line.endswith("…); trying again")
    error = line.removeprefix("chat: polling for commands failed (").removesuffix("; trying again")
    assert len(error) == 200 + len(")")


async def test_a_note_or_an_answer_refused_with_an_html_page_is_logged_cut_short(
    tmp_path, fakes, caplog
):
    """Telegram's front end answering sendMessage with its HTML error page: a note to a chat
    that cannot be sent, and an answer to a command, are logged with the error cut to 200
    characters, not the whole page."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.down(502, page=True, method="sendMessage")
        assert bot.app.chat is not None
        await bot.app.chat.tell(USER, "a note")
        tg.user_says(USER, "/help")
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) == 2)
        await wait_until(lambda: "could not send the answer" in caplog.text)
        tg.recover()
    note, answer = [m for r in caplog.records if f"chat {USER}: could not" in (m := r.getMessage())]
    assert note.startswith(f"chat {USER}: could not send a note: Bad Gateway (502). Parsing")
    assert answer.startswith(f"chat {USER}: could not send the answer to a command: Bad Gateway")
    for line in (note, answer):
        assert len(line.partition(": could not send ")[2].partition(": ")[2]) == 200
        assert line.endswith("…")


async def test_a_watch_with_no_cooldown(tmp_path, fakes):
    """'cooldown 0', as 'cooldown: 0' in a rule file: every entry into the level alerts."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch BTCUSDT > 100 cooldown 0")
        assert reply.startswith("Watching BTCUSDT: price > 100 (no cooldown). Id w1.")
        assert "w1  BTCUSDT price > 100, no cooldown — active" in await bot.say("/list")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        for i, price in enumerate((110, 90, 110)):
            await bot.tick("BTCUSDT", price, T + i)  # a millisecond apart
        alert = "price > 100: price 110"  # two close together may share one message
        await tg.wait_for(lambda: sum(m.plain_text.count(alert) for m in tg.messages_to(USER)) == 2)


async def test_list_shows_every_option_a_watch_was_made_with(tmp_path, fakes):
    """rearm and for were not shown by /list: a user could not tell which watch ends when, or
    re-alerts only after a pullback (and the duplicate answer says to remove one and watch it
    again with new options). The answer to /watch shows the band as it was typed."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        reply = await bot.say("/watch BTCUSDT > 100 rearm 0.1234567% for 7d once cooldown 90m")
        listing = await bot.say("/list")
        book = bot.app.book
        assert book is not None
        expires = book.rows[1].expires_ms
        assert expires is not None
    until = format_time(expires)
    assert f"(cooldown 90m, rearm 0.1234567%, once, until {until})" in reply
    assert listing.splitlines()[1] == (
        f"w1  BTCUSDT price > 100, cooldown 90m, rearm 0.1234567%, once, until {until} — "
        "active, not fired yet"
    )


async def test_edit_moves_a_watchs_level_keeping_its_id_options_and_topic(tmp_path, fakes):
    """/edit w1 200 (a number alone: the condition's one threshold): the engine alerts at the
    new level, not the old, under the same id, options and forum topic; the answer says what
    it was; the change is in the database (after a restart, /list shows it)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.user_says(SUPERGROUP, "/watch BTCUSDT crosses above 100 cooldown 1h", topic=7)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        edited = await bot.say("/edit w1 200", chat=SUPERGROUP)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 150, T + 1000)  # through the old level: no alert
        await bot.tick("BTCUSDT", 210, T + 2000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 3)
        (rule,) = bot.app.engine.rules()
    assert edited == (
        "Changed w1: BTCUSDT price crosses above 200 (cooldown 1h). Was: price crosses above "
        "100 (cooldown 1h)."
    )
    alert = tg.messages_to(SUPERGROUP)[-1]
    assert "BTCUSDT price crosses above 200: price 210" in alert.text
    assert alert.text.splitlines()[0].endswith("[w1]")
    assert _topic(alert) == 7
    assert (rule.id, rule.cooldown_ms) == ("w1", 3_600_000)
    async with Bot(tmp_path, binance, tg) as bot:
        listing = await bot.say("/list", chat=SUPERGROUP)
    assert listing.startswith(
        "1 watch:\nw1  BTCUSDT price crosses above 200, cooldown 1h, in topic «Topic 7», by @trader"
    )


async def test_edit_moves_a_watch_to_another_symbol(tmp_path, fakes):
    """/edit w1 ETHUSDT > 3000: the watch, its id and options kept, alerts on ETHUSDT and no
    longer on BTCUSDT (the feed follows: ETHUSDT's stream, not BTCUSDT's); the answer names
    both symbols; a symbol Binance does not list is refused with /edit's form and changes
    nothing; after a restart /list shows the move."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 cooldown 1h")
        unknown = await bot.say("/edit w1 NOPEUSDT > 5")
        moved = await bot.say("/edit w1 ETHUSDT > 3000")
        await binance.wait_for(lambda: binance.subscribed() == {"ethusdt@miniTicker"})
        rules = [(r.id, r.symbols) for r in bot.app.engine.rules()]
        await bot.tick("ETHUSDT", 2900, T)
        await bot.tick("ETHUSDT", 3100, T + 1000)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].text)
        alerts = [m.plain_text for m in tg.messages_to(USER) if "[w1]" in m.text]
    async with Bot(tmp_path, binance, tg) as bot:
        listing = await bot.say("/list")
    assert unknown.splitlines()[0] == "Unknown symbol NOPEUSDT"
    assert unknown.splitlines()[1].startswith("Use: /edit ID [SYMBOL] [CONDITION]")
    assert moved == (
        "Changed w1: ETHUSDT price > 3000 (cooldown 1h). Was: BTCUSDT price > 100 (cooldown 1h)."
    )
    assert rules == [("w1", ("ETHUSDT",))]  # BTCUSDT's ticks are not evaluated for it
    (alert,) = alerts
    assert alert.startswith("ETHUSDT price > 3000: price 3100")
    assert listing.startswith("1 watch:\nw1  ETHUSDT price > 3000, cooldown 1h —")


async def test_list_names_the_forum_topic_each_watch_alerts_in(tmp_path, fakes):
    """/list says where a watch made in a forum topic alerts: the topic's name, learned from
    the messages in it (each replies to the topic's creation, which has the name), or from
    its rename's service message, which the creation's name in later messages does not
    undo; a topic the bot has no name of by its number. Kept across a restart."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.user_says(SUPERGROUP, "/watch BTCUSDT > 100", topic=7, topic_name="BTC levels")
        tg.user_says(SUPERGROUP, "/watch ETHUSDT > 100", topic=8, topic_name="Alts")
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 2)
        answer = tg.messages_to(SUPERGROUP)[0].message_id
        tg.user_says(SUPERGROUP, "/watch SOLUSDT > 100", topic=9, reply_to=answer)  # no name
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 3)
        tg.topic_renamed(SUPERGROUP, 8, "Altcoins")
        listing = await bot.say("/list", chat=SUPERGROUP)
        tg.user_says(SUPERGROUP, "/help", topic=8, topic_name="Alts")  # the creation's name
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 5)
    async with Bot(tmp_path, binance, tg) as bot:
        again = await bot.say("/list", chat=SUPERGROUP)
    lines = listing.splitlines()[1:4]
    by = ", by @trader —"  # who made it: a group's /list says
    assert lines[0].startswith(f"w1  BTCUSDT price > 100, cooldown 5m, in topic «BTC levels»{by}")
    assert lines[1].startswith(f"w2  ETHUSDT price > 100, cooldown 5m, in topic «Altcoins»{by}")
    assert lines[2].startswith(f"w3  SOLUSDT price > 100, cooldown 5m, in topic 9{by}")
    assert again.splitlines()[1:4] == lines


async def test_edit_changes_a_condition_or_options_and_refuses_what_cannot_be(tmp_path, fakes):
    """A whole new condition, options alone (the rest kept), a percentage for a 24h change,
    in reply to an alert (the watch it names); refused, changing nothing: another chat's id, a
    level of the wrong kind, a condition the chat watches already, rearm on a condition with
    no single threshold; a rearm the new condition cannot keep is dropped, and said so."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 rearm 0.5%")
        await bot.say("/watch ETHUSDT change_24h > 5%")
        await bot.say("/watch SOLUSDT > 1", chat=USER + 1)  # w3, another chat's
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: "[w1]" in tg.messages_to(USER)[-1].text)
        alert = tg.messages_to(USER)[-1].message_id
        said = [
            await bot.say("/edit w1 crosses below 90 cooldown 0"),
            await bot.say("/edit w1 for 2d once"),
            await bot.say("/edit w2 6%"),
            await bot.say("/edit 95", reply_to=alert),
            await bot.say("/edit w3 > 2"),
            await bot.say("/edit w2 6000"),
            await bot.say("/edit w2 change_24h > 5% rearm 1%"),  # a rearm it can keep
            await bot.say("/edit w1 price crosses below 95"),
            await bot.say("/edit w1 breaks 24h low rearm 1%"),
            await bot.say("/edit w1 breaks 24h low"),
        ]
        assert bot.app.book is not None
        rows = {r.id: r for r in bot.app.book.of_chat(USER)}
    assert said[0].startswith(
        "Changed w1: BTCUSDT price crosses below 90 (no cooldown, rearm 0.5%). Was: price > "
        "100 (cooldown 5m, rearm 0.5%)."
    )
    assert said[1].startswith("Changed w1: BTCUSDT price crosses below 90 (no cooldown, rearm ")
    assert ", once, until " in said[1]
    assert said[2] == (
        "Changed w2: ETHUSDT change_24h > 6% (cooldown 5m). Was: change_24h > 5% (cooldown 5m)."
    )
    assert said[3].startswith("Changed w1: BTCUSDT price crosses below 95 (")
    assert said[4] == "This chat has no watch w3. /list shows its watches."
    assert said[5].splitlines()[0] == (
        "'6000' is no level of w2's change_24h > 6% (a number): write the whole condition, "
        "e.g. /edit w2 > 71000"
    )
    assert said[6].startswith("Changed w2: ETHUSDT change_24h > 5% (cooldown 5m, rearm 1%).")
    assert said[7].startswith("Nothing to change: w1 is BTCUSDT price crosses below 95 (")
    assert said[8].splitlines()[0] == (
        "'rearm' needs a single threshold condition; 'breaks 24h ...' has no threshold to move "
        "away from"
    )
    assert said[9].startswith("Changed w1: BTCUSDT breaks 24h low (no cooldown, once, until ")
    assert said[9].endswith(
        "Its rearm 0.5% is dropped: this condition has no single threshold to move away from."
    )
    assert (rows[1].condition, rows[1].rearm, rows[1].once) == ("breaks 24h low", 0.0, True)
    assert (rows[2].condition, rows[2].rearm) == ("change_24h > 5%", 0.01)


async def test_the_same_watch_twice_is_not_made_twice(tmp_path, fakes):
    """A second watch of the same symbol and condition would only double every alert; the
    answer names the one there is and how to change its options to those typed (its once
    and for, when not typed, turned off)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch BTCUSDT < 50 once for 1d")
        reply = await bot.say("/watch btcusdt  >  100 cooldown 1h")
        other = await bot.say("/watch btcusdt < 50 cooldown 1h")
        book = bot.app.book
        assert book is not None
        assert sorted(book.rows) == [1, 2]
    assert reply == (
        "This chat watches BTCUSDT price > 100 already: w1. To change it to these options: "
        "/edit w1 cooldown 1h"
    )
    assert other.endswith("/edit w2 cooldown 1h once off for off")


async def test_edit_turns_options_off(tmp_path, fakes):
    """/edit w1 once off for off rearm off cooldown off: the watch no longer has them. It
    alerts again after its first alert (not once, no cooldown, re-armed on the first tick
    below the level), has no end, and keeps so after a restart."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 once for 1d rearm 5% cooldown 1h")
        edited = await bot.say("/edit w1 once off for off rearm off cooldown off")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        for i, price in enumerate((110, 99, 110)):  # 99: within the old 5% band
            await bot.tick("BTCUSDT", price, T + i * 1000)
        await tg.wait_for(lambda: sum("[w1]" in m.text for m in tg.messages_to(USER)) == 2)
    assert edited.startswith(
        "Changed w1: BTCUSDT price > 100 (no cooldown). Was: price > 100 (cooldown 1h, rearm "
        "5%, once, until "
    )
    async with Bot(tmp_path, binance, tg) as bot:
        assert bot.app.book is not None
        (row,) = bot.app.book.of_chat(USER)
    assert (row.once, row.expires_ms, row.rearm, row.cooldown_ms) == (False, None, 0.0, 0)


async def test_a_once_watch_is_removed_after_it_fires(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: "price > 100: price 110" in tg.messages_to(USER)[-1].plain_text)
        await tg.wait_for(lambda: not book.rows)
        assert "No watches here yet" in await bot.say("/list")


async def test_a_once_watchs_last_alert_gives_the_command_that_makes_it_again(tmp_path, fakes):
    """The alert that ends a ``once`` watch has nothing to mute or stop: instead of the mute and
    stop line (whose /mute w1 would be answered 'no watch w1') it says the watch has ended and
    gives its /watch as code, every option and the note kept, which sent makes it again."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 once cooldown 1h note <take> profit")
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: "price > 100: price 110" in tg.messages_to(USER)[-1].plain_text)
        alert = tg.messages_to(USER)[-1]
        command = "/watch BTCUSDT price > 100 cooldown 1h once note <take> profit"
        assert alert.plain_text.endswith(
            f"That was w1's one alert (once): it has ended. To watch again: {command}"
        )
        assert "/mute" not in alert.plain_text
        assert alert.shown_as("code") == [command]
        assert alert.reply_markup is None or "Mute" not in json.dumps(alert.reply_markup)
        await tg.wait_for(lambda: not bot.app.book.rows)
        assert (await bot.say(command)).startswith(
            "Watching BTCUSDT: price > 100 (cooldown 1h, once, note «<take> profit»). Id w2."
        )


async def test_a_once_watch_that_fires_as_the_bot_stops_is_still_removed(tmp_path, fakes):
    """Its removal is a write the shutdown lets finish, not one it cancels: after the restart
    the watch is gone, not listed and counted forever while never firing again."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100 once")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        # another process holds the database's write lock for a moment: the removal waits
        lock = sqlite3.connect(tmp_path / "alertbot.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.3, lock.execute, "COMMIT")
        await bot.tick("BTCUSDT", 110, T)  # and stop at once, the removal still waiting
    lock.close()
    async with Bot(tmp_path, binance, tg) as bot:
        assert "No watches here yet" in await bot.say("/list")


async def test_a_reply_refused_with_429_is_sent_again_after_the_wait(tmp_path, fakes):
    """A user sending commands fast can get a reply over Telegram's limit: the 429's wait is
    honoured and the reply goes out, not lost (the watch exists either way)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.fail_next(1, status=429, retry_after=1, chat_id=USER)
        reply = await asyncio.wait_for(bot.say("/watch BTCUSDT > 100"), 10)
        assert reply.startswith("Watching BTCUSDT: price > 100")


async def test_daily_digest_is_set_by_command_and_sent_at_its_minute(tmp_path, fakes):
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 1000000")
        assert (
            await bot.say("/digest 08:30") == "Daily digest of your watched symbols at 08:30 UTC."
        )
        assert "time of day like 08:00" in await bot.say("/digest 25:00")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 70_000, T)
        chat = bot.app.chat
        assert chat is not None
        await chat.digest(at_utc(8, 29))  # not its minute: nothing
        await chat.digest(at_utc(8, 30))  # what the every-minute job calls at 08:30 UTC
        await tg.wait_for(lambda: tg.messages_to(USER)[-1].text.startswith("Daily digest:"))
        assert "BTCUSDT 70000 (+0.00% 24h)" in tg.messages_to(USER)[-1].text
        assert await bot.say("/digest off") == "Daily digest off."


async def test_price_says_how_far_this_chats_levels_of_the_symbol_are(tmp_path, fakes):
    """Under /price's block, each of this chat's watches of a price level or crossing of the
    symbol, as /list measures them; another chat's are not shown."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 70000")
        await bot.say("/watch BTCUSDT > 69000", chat=USER + 1)
        await bot.say("/watch BTCUSDT drops 5% in 1h")
        await bot.say("/watch BTCUSDT crosses above 60000")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 68_000.5, T)
        shown = (await bot.say("/price btc")).splitlines()
    assert shown[0].startswith("BTCUSDT 68000.5 (")
    assert shown[-2:] == [
        "  w1 price > 70000: 2.94% to go",
        "  w4 price crosses above 60000: already above",
    ]


async def test_the_daily_digest_says_how_far_each_price_level_is(tmp_path, fakes):
    """Under each symbol, its watches of a price level or crossing, as /list measures them
    (other conditions are not measured: the symbol's line says the rest)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for command in (
            "/watch BTCUSDT > 70000",
            "/watch BTCUSDT crosses below 60000",
            "/watch BTCUSDT < 75000",
            "/watch BTCUSDT rises 5% in 1h",
            "/watch ETHUSDT > 3000",
            "/digest 08:30",
        ):
            await bot.say(command)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await bot.tick("BTCUSDT", 68_000.5, T)
        # w3 (price < 75000) fires on that tick: its alert first, then the digest
        await tg.wait_for(lambda: any("[w3]" in m.plain_text for m in tg.messages_to(USER)))
        assert bot.app.chat is not None
        await bot.app.chat.digest(at_utc(8, 30))
        await tg.wait_for(lambda: tg.messages_to(USER)[-1].text.startswith("Daily digest:"))
        digest = tg.messages_to(USER)[-1].text.splitlines()
    assert digest[1].startswith("BTCUSDT 68000.5 (")
    assert digest[2:5] == [
        "  w1 price > 70000: 2.94% to go",
        "  w2 price crosses below 60000: 11.77% to go",
        "  w3 price < 75000: true",
    ]
    assert digest[5] == "ETHUSDT: no price yet"


async def test_a_symbol_where_a_watch_id_belongs_gets_the_command_for_its_watches(tmp_path, fakes):
    """/unwatch BTCUSDT (or its coin, btc), /mute BTCUSDT 2h, /unmute ETHUSDT: the answer
    names the chat's watches of the symbol, in the order made, and the command to send for
    them (a mute keeps the duration typed, 1h when none; /edit, one for each, as it takes one
    watch); nothing is removed, muted or changed. After ids (/unwatch w3 BTCUSDT), the
    command keeps them, first. A symbol the chat does not watch is said so; another chat's
    watches are not named."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT < 60000")
        await bot.say("/watch BTCUSDT > 70000", chat=USER + 1)
        await bot.say("/watch ETHUSDT > 3000")
        await bot.say("/watch BTCUSDT > 70000")
        answers = [
            await bot.say(text)
            for text in (
                "/unwatch BTCUSDT",
                "/unwatch btc",
                "/mute BTCUSDT 2h",
                "/mute btc",
                "/edit BTCUSDT 65000",
                "/unwatch w3 BTCUSDT",  # after an id: the command keeps it, first
                "/unmute w3, btc w9",
                "/mute w3 BTCUSDT 2h",  # after /mute's ids: named in full
            )
        ]
        unmute = await bot.say("/unmute ETHUSDT")
        none = await bot.say("/unwatch SOLUSDT")
        assert bot.app.book is not None
        assert [(r.id, r.muted_until) for r in bot.app.book.of_chat(USER)] == [
            (1, None),
            (3, None),
            (4, None),
        ]
    both = "BTCUSDT is watched here by w1 (price < 60000), w4 (price > 70000): send"
    assert [a.splitlines()[0] for a in answers] == [
        f"{both} /unwatch w1 w4",
        f"{both} /unwatch w1 w4",
        f"{both} /mute w1 w4 2h",
        f"{both} /mute w1 w4 1h",
        f"{both} /edit w1 65000 or /edit w4 65000",  # one watch at a time
        f"{both} /unwatch w3 w1 w4",
        f"{both} /unmute w3 w1 w4 w9",
        f"{both} /mute w3 w1 w4 2h",
    ]
    assert answers[0].splitlines()[1:] == ["Use: /unwatch ID [ID...]|all", "e.g. /unwatch w12"]
    assert unmute.splitlines()[0] == "ETHUSDT is watched here by w3 (price > 3000): send /unmute w3"
    assert none.splitlines()[0] == "This chat has no watch of SOLUSDT; /list shows its watches"


# ---------------------------------------------------------------- a chat's time zone

PLUS_8 = load_zone("UTC+08:00")


async def test_timezone_shows_a_chats_times_in_its_zone_and_keeps_it(tmp_path, fakes):
    """/timezone UTC+8: the answers' times (a watch's end, a mute's, /list's) and a watch's
    alert time are shown in it, named as it names itself (the buttons': test_alert_buttons);
    the zone is kept across a restart; /timezone alone says which it is; /timezone UTC goes
    back."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        first = await bot.say("/timezone")
        assert re.fullmatch(
            r"Times here are in UTC: it is \S+ \S+ UTC\. For yours: /timezone Europe/Berlin, a "
            r"city \(/timezone new york\) or an offset \(/timezone UTC\+8\)\.",
            first,
        )
        assert re.fullmatch(
            r"Times here are in UTC\+08:00 now: it is \S+ \S+ UTC\+08:00\.",
            await bot.say("/timezone utc+8"),
        )
        made = await bot.say("/watch BTCUSDT crosses above 100 for 1d")
        assert bot.app.book is not None
        (row,) = bot.app.book.of_chat(USER)
        assert row.expires_ms is not None
        assert f"until {format_time(row.expires_ms, PLUS_8)})" in made
        assert format_time(row.expires_ms, PLUS_8).endswith(" UTC+08:00")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: "price 110" in tg.messages_to(USER)[-1].text)
        alert = tg.messages_to(USER)[-1].text
        muted = await bot.say("/mute w1 1h")
        listing = await bot.say("/list")
        assert row.muted_until is not None
    assert f"at {format_time(T + 1000, PLUS_8)} [w1]" in alert
    assert muted.startswith(f"Muted w1 until {format_time(int(row.muted_until * 1000), PLUS_8)}.")
    assert f"muted until {format_time(int(row.muted_until * 1000), PLUS_8)}" in listing
    assert f"last fired {format_time(T + 1000, PLUS_8)}" in listing
    async with Bot(tmp_path, binance, tg) as bot:
        kept = await bot.say("/timezone")
        back = await bot.say("/timezone UTC")
        assert bot.app.book is not None
        assert bot.app.book.zones == {}
    assert kept.startswith("Times here are in UTC+08:00: it is ")
    assert kept.endswith(" UTC+08:00. Back to UTC: /timezone UTC.")
    assert back.startswith("Times here are in UTC now: it is ")
    store = Store(tmp_path / "alertbot.db")
    assert store.zones() == {}
    store.close()


async def test_the_bots_timezone_is_the_rule_files_and_that_of_chats_without_one(tmp_path, fakes):
    """ALERTBOT_TIMEZONE: a rule file's alert and the watch of a chat that set no zone show
    their time in it, /timezone says it is the bot's; a chat's /timezone UTC is kept as its
    choice (not the bot's zone), and its watch's alerts show UTC from then on."""
    binance, tg = fakes
    up = Rule(id="btc-up", condition=parse("price crosses above 100"), symbols=("BTCUSDT",))
    me = Channel("me", telegram=USER)
    rules = RuleSet(rules=(dataclasses.replace(up, notify=("me",)),), channels={"me": me})
    plus_2 = {"timezone": "UTC+02:00"}
    async with Bot(tmp_path, binance, tg, rules, delivery_settings=plus_2) as bot:
        said = await bot.say("/timezone")
        await bot.say("/watch ETHUSDT crosses above 10")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await bot.tick("ETHUSDT", 9, T)
        await bot.tick("ETHUSDT", 11, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == 4)
        await bot.say("/timezone UTC")
        await bot.tick("ETHUSDT", 9, T + 2000)
        await bot.tick("ETHUSDT", 12, T + 3000 + 3_600_000)
        await tg.wait_for(lambda: "price 12 " in tg.messages_to(USER)[-1].text)
        assert bot.app.book is not None
        assert bot.app.book.zones == {USER: "UTC"}
    plus_2_zone = load_zone("UTC+02:00")
    assert said.startswith("Times here are in UTC+02:00 (the bot's): it is ")
    assert "For yours: /timezone Europe/Berlin" in said
    texts = [m.text for m in tg.messages_to(USER)]
    (rule_alert,) = [t for t in texts if "[btc-up]" in t]
    eth = [t for t in texts if "[w1]" in t]
    assert f"at {format_time(T + 1000, plus_2_zone)} [btc-up]" in rule_alert
    assert f"at {format_time(T + 1000, plus_2_zone)} [w1]" in eth[0]
    assert f"at {format_time(T + 3000 + 3_600_000)} [w1]" in eth[1]  # UTC, as chosen


async def test_a_rule_files_alert_shows_each_chat_its_time_in_its_own_zone(tmp_path, fakes):
    """A rule file's alert to two chats is rendered once, in ALERTBOT_TIMEZONE: the chat that
    set none reads it so, the chat with its own /timezone reads its time in that zone (the
    rest of the text the same)."""
    binance, tg = fakes
    up = Rule(id="btc-up", condition=parse("price crosses above 100"), symbols=("BTCUSDT",))
    channels = {"a": Channel("a", telegram=USER), "b": Channel("b", telegram=USER + 1)}
    rules = RuleSet(rules=(dataclasses.replace(up, notify=("a", "b")),), channels=channels)
    async with Bot(
        tmp_path, binance, tg, rules, delivery_settings={"timezone": "UTC+02:00"}
    ) as bot:
        await bot.say("/timezone Asia/Tokyo", chat=USER + 1)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)

        def both() -> bool:
            return all(
                any("[btc-up]" in m.text for m in tg.messages_to(c)) for c in (USER, USER + 1)
            )

        await tg.wait_for(both)
    bots, own = (tg.messages_to(chat)[-1].text for chat in (USER, USER + 1))
    plus_2, tokyo = (format_time(T + 1000, load_zone(z)) for z in ("UTC+02:00", "Asia/Tokyo"))
    assert f"at {plus_2} [btc-up]" in bots
    assert f"at {tokyo} [btc-up]" in own
    assert tokyo.endswith(" JST")
    assert own == bots.replace(plus_2, tokyo)


@pytest.mark.parametrize(
    ("typed", "answer"),
    [
        ("/timezone Berln", "Unknown time zone 'Berln' (did you mean Europe/Berlin?)"),
        (
            "/timezone IST",
            "'IST' is an abbreviation, which names no one zone: write a zone's name (did you "
            "mean Asia/Kolkata?) or an offset from UTC",
        ),
        ("/timezone UTC+15", "'UTC+15' is not an offset from UTC (they go from -12:00 to +14:00)"),
    ],
)
async def test_a_time_zone_that_cannot_be_used_is_answered_with_the_form(
    tmp_path, fakes, typed, answer
):
    """Refused, with the right form and an example, and the chat's zone left as it was."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone Asia/Tokyo")
        reply = await bot.say(typed)
        assert bot.app.book is not None
        assert bot.app.book.zones == {USER: "Asia/Tokyo"}
    assert reply == (f"{answer}\nUse: /timezone [ZONE]\ne.g. /timezone Europe/Berlin")


async def test_the_daily_digest_comes_at_its_time_in_the_chats_zone(tmp_path, fakes):
    """/digest 08:30 in a chat at UTC+8 comes at 00:30 UTC, not 08:30 UTC; /digest 09:00 UTC
    there changes nothing and says how; a new zone keeps the digest's time of day, now in that
    zone (the answer says so)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone UTC+8")
        set_at = await bot.say("/digest 08:30")
        in_utc = await bot.say("/digest 09:00 UTC")  # not this chat's zone: refused
        chat = bot.app.chat
        assert chat is not None
        assert chat.book.digests == {USER: 8 * 60 + 30}
        before = len(tg.messages_to(USER))
        await chat.digest(at_utc(8, 30))
        await chat.digest(at_utc(0, 30))
        await tg.wait_for(lambda: len(tg.messages_to(USER)) == before + 1)
        moved = await bot.say("/timezone Europe/Berlin")
    assert set_at == "Daily digest of your watched symbols at 08:30 UTC+08:00."
    assert in_utc == (
        "This chat's times are in UTC+08:00: send /digest 09:00 for 09:00 there, or "
        "/timezone UTC first."
    )
    assert tg.messages_to(USER)[before].text.startswith("Daily digest:")
    assert "Your daily digest comes at 08:30 Europe/Berlin." in moved


@pytest.mark.parametrize(
    ("minute", "times", "sent"),
    [
        # New York's clocks go forward on 2027-03-14 at 02:00 EST (07:00 UTC) to 03:00 EDT:
        # 02:30 never comes that day, and the digest comes at 03:00, once
        ("02:30", [(2027, 3, 14, 6, 58), (2027, 3, 14, 6, 59), (2027, 3, 14, 7, 0)], [2]),
        ("02:30", [(2027, 3, 14, 7, 1), (2027, 3, 15, 6, 30)], [1]),  # the next day as usual
        # and back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00 EST: 01:30 comes twice
        ("01:30", [(2026, 11, 1, 5, 30), (2026, 11, 1, 6, 30)], [0]),
        # a digest moved later in the day it was sent: sent at its new time too
        ("01:30", [(2026, 11, 1, 5, 30), "/digest 03:00", (2026, 11, 1, 8, 0)], [0, 2]),
    ],
)
async def test_a_digest_in_a_minute_summer_time_skips_or_repeats_comes_once(
    tmp_path, fakes, minute, times, sent
):
    """The every-minute job at each UTC time in ``times`` (or a command sent then): the
    digest is sent at those in ``sent`` (indexes), and no other."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone America/New_York")
        await bot.say(f"/digest {minute}")
        chat = bot.app.chat
        assert chat is not None
        got = []
        for i, when in enumerate(times):
            if isinstance(when, str):
                await bot.say(when)
                continue
            y, mo, d, h, mi = when
            before = len(tg.messages_to(USER))
            await chat.digest(at_utc(h, mi, dt.date(y, mo, d)))
            await asyncio.sleep(0.05)
            if len(tg.messages_to(USER)) > before:
                got.append(i)
    assert got == sent


async def test_a_digest_sent_in_the_repeated_hour_is_not_sent_again_after_a_restart(
    tmp_path, fakes
):
    """New York's 01:30 comes twice on 2026-11-01 (05:30 and 06:30 UTC): the digest at
    01:30 is sent at the first, and a restart between the two does not send it again (the
    digest sent is kept in the database); the next day's comes."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/timezone America/New_York")
        await bot.say("/digest 01:30")
        assert bot.app.chat is not None
        await bot.app.chat.digest(at_utc(5, 30, dt.date(2026, 11, 1)))
        first = len(tg.messages_to(USER))
    async with Bot(tmp_path, binance, tg) as bot:
        assert bot.app.chat is not None
        await bot.app.chat.digest(at_utc(6, 30, dt.date(2026, 11, 1)))
        again = len(tg.messages_to(USER))
        await bot.app.chat.digest(at_utc(6, 30, dt.date(2026, 11, 2)))
        next_day = len(tg.messages_to(USER))
    assert "Daily digest" in tg.messages_to(USER)[first - 1].plain_text
    assert (again, next_day) == (first, first + 1)


# ---------------------------------------------------------------- Telegram's 4096 characters

LIMIT = 4096


async def test_a_long_list_comes_in_pages_each_within_telegrams_limit(tmp_path, fakes):
    """50 muted watches (over 5000 characters on one page): /list shows the first page and
    points to the next; /list 2 and /list 3 show the rest, every watch once."""
    binance, tg = fakes
    stored_watches(
        tmp_path,
        [("ETHUSDT", f"price crosses below {3000 - i}") for i in range(50)],
        muted_until=2e9,
    )
    async with Bot(tmp_path, binance, tg) as bot:
        first = await bot.say("/list")
        second = await bot.say("/list 2")
        third = await bot.say("/list 3")
    assert first.startswith("50 watches, page 1 of 3:")
    assert first.endswith("… and 30 more: /list 2")
    assert second.endswith("… and 10 more: /list 3")
    assert third.startswith("50 watches, page 3 of 3:")
    shown = [line.split()[0] for page in (first, second, third) for line in page.splitlines()]
    assert [w for w in shown if w.startswith("w")] == [f"w{i}" for i in range(1, 51)]
    assert all(len(page) <= LIMIT for page in (first, second, third))


async def test_list_pages_hold_fewer_watches_when_their_lines_are_long(tmp_path, fakes):
    """Conditions of ~440 characters: a page holds as many as fit in 4096 characters."""
    binance, tg = fakes
    condition = "all(" + ", ".join(f"price > {n}" for n in range(1, 36)) + ")"
    stored_watches(tmp_path, [("BTCUSDT", condition)] * 12)
    async with Bot(tmp_path, binance, tg) as bot:
        pages = [await bot.say("/list")]
        while pages[-1].endswith(f"/list {len(pages) + 1}"):
            pages.append(await bot.say(f"/list {len(pages) + 1}"))
    assert 1 < len(pages) < 12
    assert all(len(page) <= LIMIT for page in pages)
    assert sum(page.count("BTCUSDT") for page in pages) == 12


async def test_list_of_a_page_past_the_last_names_the_last(tmp_path, fakes):
    binance, tg = fakes
    stored_watches(tmp_path, [("ETHUSDT", "price > 1")] * 25)
    async with Bot(tmp_path, binance, tg) as bot:
        assert await bot.say("/list 5") == (
            "There is no page 5 of this chat's watches: /list 2 is the last."
        )


async def test_a_button_on_a_later_list_page_shows_that_page_again(tmp_path, fakes):
    binance, tg = fakes
    stored_watches(tmp_path, [("ETHUSDT", "price > 1")] * 25)
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/list 2")
        page = tg.messages_to(USER)[-1]
        tg.user_presses(USER, page.message_id, "rm:w22:2")
        await tg.wait_for(lambda: page.edits == 1)
    assert page.plain_text.startswith("24 watches, page 2 of 2:")
    assert "w22 " not in page.plain_text
    assert "w21  ETHUSDT" in page.plain_text


async def test_a_button_whose_answer_telegram_refuses_still_shows_the_new_list(
    tmp_path, fakes, caplog
):
    """A press handled late (queued while the bot restarted) gets "query is too old" for its
    answer: the watch is removed all the same, so the list is shown again without it, and
    the log has one line, not a traceback."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100")
        await bot.say("/watch ETHUSDT > 100")
        await bot.say("/list")
        listing = tg.messages_to(USER)[-1]
        tg.fail_next(
            1,
            status=400,
            description="Bad Request: query is too old and response timeout expired or query "
            "ID is invalid",
            method="answerCallbackQuery",
        )
        tg.user_presses(USER, listing.message_id, "rm:w1:1")
        await tg.wait_for(lambda: listing.edits == 1)
        book = bot.app.book
        assert book is not None
        assert sorted(book.rows) == [2]
    assert listing.plain_text.startswith("1 watch:\nw2  ETHUSDT")
    assert not [r for r in caplog.records if r.exc_info]
    assert "button press could not be answered: query is too old" in caplog.text.lower()


async def test_an_admins_list_names_a_few_of_many_rule_file_rules(tmp_path, fakes):
    """300 rule-file rules with long ids: the line names the first ones and how many more."""
    binance, tg = fakes
    rules = tuple(
        Rule(id=f"desk-{'x' * 30}-{n}", condition=parse("price > 1000000"), symbols=("BTCUSDT",))
        for n in range(300)
    )
    async with Bot(tmp_path, binance, tg, RuleSet(rules=rules), admin_chats=(USER,)) as bot:
        await bot.say("/watch ETHUSDT < 3000")
        listing = await bot.say("/list")
    files = listing.splitlines()[-1]
    assert files.startswith("Rule files: 300 rules (desk-")
    assert files.endswith(" more)")
    assert len(files) < 500


async def test_a_digest_longer_than_a_message_comes_as_several(tmp_path):
    """An admin chat watching 200 symbols: the digest is sent in parts, each within 4096
    characters, together naming every symbol."""
    symbols = [f"COIN{n:03d}USDT" for n in range(200)]
    stored_watches(tmp_path, [(s, "price > 1000000") for s in symbols])
    async with (
        FakeBinance(symbols=symbols) as binance,
        FakeTelegram(token=TOKEN) as tg,
        Bot(tmp_path, binance, tg, admin_chats=(USER,)) as bot,
    ):
        await bot.say("/digest 08:30")
        before = len(tg.messages_to(USER))
        chat = bot.app.chat
        assert chat is not None
        await chat.digest(at_utc(8, 30))
        await tg.wait_for(lambda: len(tg.messages_to(USER)) >= before + 2)
        parts = [m.text for m in tg.messages_to(USER)[before:]]
    assert parts[0].startswith("Daily digest:")
    assert all(len(p) <= LIMIT for p in parts)
    assert all(any(f"{s}: no price yet" in p for p in parts) for s in symbols)


async def test_an_answer_telegram_refuses_is_followed_by_an_apology(tmp_path, fakes, caplog):
    """A 400 for a command's answer leaves the user no silence, and the log says why."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.fail_next(1, status=400, description="Bad Request: something odd", chat_id=USER)
        reply = await bot.say("/help")
    assert reply == "Sorry, Telegram refused my answer (Something odd)."
    assert "Telegram refused the answer to '/help'" in caplog.text


@pytest.mark.parametrize("limit", [5, 20, 4096])
def test_split_text_cuts_between_lines_within_the_limit(limit):
    text = "\n".join(["short", "a" * 12, "", "tail line", "x" * 30])
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")
    if limit >= 30:
        assert "\n".join(parts) == text  # every line whole


# ---------------------------------------------------------------- exchangeInfo unreachable


async def test_a_watch_of_a_symbol_not_on_the_feed_is_accepted_while_rest_is_down(tmp_path, fakes):
    """On symbol streams the feed shows only the watched symbols: with exchangeInfo down, any
    other symbol cannot be told from a typo, so it is watched, with a note saying so."""
    binance, tg = fakes
    binance.fail_rest(True, status=503)
    btc = Rule(id="btc", condition=parse("price > 1000000"), symbols=("BTCUSDT",))
    async with Bot(tmp_path, binance, tg, RuleSet(rules=(btc,)), listed=False) as bot:
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 70_000, T)
        reply = await bot.say("/watch ETHUSDT > 3000")
        price = await bot.say("/price SOLUSDT")
    assert reply.startswith("Watching ETHUSDT: price > 3000")
    assert "ETHUSDT is not checked: Binance's list of symbols cannot be read right now" in reply
    assert price.startswith("No price for SOLUSDT yet (whether Binance lists SOLUSDT cannot")


async def test_on_the_all_market_stream_an_unknown_symbol_is_refused_while_rest_is_down(
    tmp_path, fakes
):
    """The all-market stream carries every symbol: what it never showed does not exist, with
    or without exchangeInfo (the guard for the test above: not every symbol is let through)."""
    binance, tg = fakes
    binance.fail_rest(True, status=503)
    every = Rule(id="every", condition=parse("price > 1000000000"), symbols=("*USDT",))
    async with Bot(tmp_path, binance, tg, RuleSet(rules=(every,)), listed=False) as bot:
        await binance.wait_for_subscriptions({"!miniTicker@arr"})
        await bot.tick("BTCUSDT", 70_000, T)
        reply = await bot.say("/watch BTCUSDX > 3000")
        price = await bot.say("/price BTCUSDX")
    assert reply.startswith("Unknown symbol BTCUSDX (did you mean BTCUSDT?)")
    assert price == "Unknown symbol BTCUSDX. Did you mean BTCUSDT?"


# ---------------------------------------------------------------- a group becomes a supergroup

GROUP, SUPERGROUP = -555, -1_000_000_000_555


async def test_after_a_group_upgrade_its_watches_and_digest_are_the_supergroups(tmp_path, fakes):
    """Telegram's "migrated to/from" service messages move the group's watches, digest and
    time zone to the supergroup's id, in the database too (they are there after a restart)."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100", chat=GROUP, chat_type="group")
        await bot.say("/digest 08:30", chat=GROUP, chat_type="group")
        await bot.say("/timezone UTC+8", chat=GROUP, chat_type="group")
        tg.upgrade_group(GROUP, SUPERGROUP)
        listing = await bot.say("/list", chat=SUPERGROUP)
        assert bot.app.book is not None
        assert bot.app.book.digests == {SUPERGROUP: 8 * 60 + 30}
        assert bot.app.book.zones == {SUPERGROUP: "UTC+08:00"}
    assert listing.startswith("1 watch:\nw1  BTCUSDT price > 100")
    async with Bot(tmp_path, binance, tg) as bot:
        assert (await bot.say("/unwatch w1", chat=SUPERGROUP)).startswith("Removed w1")
        assert bot.app.book is not None
        assert bot.app.book.digests == {SUPERGROUP: 8 * 60 + 30}
        assert bot.app.book.zones == {SUPERGROUP: "UTC+08:00"}


def _topic(message: Any) -> int | None:
    return message.params.get("message_thread_id")


async def test_a_watch_made_in_a_forum_topic_alerts_in_that_topic(tmp_path, fakes):
    """A supergroup with forum topics: the answer to a command goes to the topic it was sent
    in (else the user would not see it), and a watch made in a topic alerts there; one made
    outside any topic alerts in the chat itself (the General topic). Alerts of two topics that
    fire together go as two messages; /list in any topic lists the whole chat's watches."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.user_says(SUPERGROUP, "/watch BTCUSDT crosses above 100", topic=7)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        await bot.say("/watch ETHUSDT crosses above 10", chat=SUPERGROUP)
        tg.user_says(SUPERGROUP, "/list", topic=9)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 3)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        await binance.publish([mini_ticker("BTCUSDT", 90, T), mini_ticker("ETHUSDT", 9, T)])
        await binance.publish(
            [mini_ticker("BTCUSDT", 110, T + 1000), mini_ticker("ETHUSDT", 11, T + 1000)]
        )
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 5)
    made, made_eth, listing, *alerts = tg.messages_to(SUPERGROUP)
    assert made.plain_text.startswith("Watching BTCUSDT: price crosses above 100")
    assert "Id w1. Its alerts come to this topic.\n" in made.plain_text
    assert (_topic(made), _topic(made_eth)) == (7, None)
    assert "topic" not in made_eth.plain_text
    assert listing.plain_text.startswith("2 watches:\nw1  BTCUSDT price crosses above 100")
    assert _topic(listing) == 9
    by_topic = {_topic(m): m.plain_text for m in alerts}
    assert set(by_topic) == {7, None}
    assert "BTCUSDT price crosses above 100: price 110" in by_topic[7]
    assert "ETHUSDT" not in by_topic[7]
    assert "ETHUSDT price crosses above 10: price 11" in by_topic[None]


async def test_a_once_watch_made_in_a_topic_sends_its_last_alert_there(tmp_path, fakes):
    """A ``once`` watch ends as it fires, before its alert is sent: the alert still goes to
    the topic the watch was made in."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.user_says(SUPERGROUP, "/watch BTCUSDT > 100 once", topic=5)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 2)
        assert bot.app.book is not None
        assert bot.app.book.of_chat(SUPERGROUP) == []  # ended by its alert
    alert = tg.messages_to(SUPERGROUP)[1]
    assert "BTCUSDT price > 100: price 110" in alert.plain_text
    assert _topic(alert) == 5


async def test_a_watchs_topic_is_kept_across_a_restart_for_an_alert_resumed_then(tmp_path, fakes):
    """The topic is stored with the watch, and known before the alerts left undelivered at
    a stop are sent again at the next start: such an alert goes to its topic too."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.user_says(SUPERGROUP, "/watch BTCUSDT crosses above 100", topic=7)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.fail_chat(SUPERGROUP, 500, "Internal Server Error")
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 2)  # tried, refused
    tg.recover()
    async with Bot(tmp_path, binance, tg):
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 2)
    alert = tg.messages_to(SUPERGROUP)[1]
    assert "BTCUSDT price crosses above 100: price 110" in alert.plain_text
    assert _topic(alert) == 7


async def test_a_refused_topic_of_several_watches_names_them_all_once(tmp_path, fakes):
    """Two watches made in the same topic, whose alerts fire together when the topic is gone:
    one note names both (were, their), and both alerts reach the chat itself."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        for answers, level in enumerate((100, 105), start=1):
            tg.user_says(SUPERGROUP, f"/watch BTCUSDT crosses above {level}", topic=7)
            await tg.wait_for(lambda n=answers: len(tg.messages_to(SUPERGROUP)) == n)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.close_topic(SUPERGROUP, 7)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 4)
    alerts, note = sorted(m.plain_text for m in tg.messages_to(SUPERGROUP)[2:])
    assert "crosses above 100: price 110" in alerts
    assert "crosses above 105: price 110" in alerts  # merged: one message, same topic
    assert note == (
        "The topic where w1, w2 were made cannot be posted to (deleted or closed): their "
        "alerts come here now."
    )


@pytest.mark.parametrize("refusal", ["message thread not found", "TOPIC_CLOSED"])
async def test_an_alert_to_a_topic_telegram_refuses_goes_to_the_chat_itself(
    tmp_path, fakes, refusal
):
    """A watch's topic deleted (or closed) since: the alert is not lost but sent to the chat
    itself, the chat is told once which watches now alert there, and their next alerts go
    there at once (no attempt at the topic), after a restart too."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        tg.user_says(SUPERGROUP, "/watch BTCUSDT crosses above 100", topic=7)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.close_topic(SUPERGROUP, 7, refusal)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 3)
        await bot.tick("BTCUSDT", 90, T + 2000)
        await bot.tick("BTCUSDT", 111, T + 3000 + 3_600_000)  # past the default cooldown
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 4)
    _, *later = tg.messages_to(SUPERGROUP)
    texts = sorted(m.plain_text for m in later)
    assert "price 110" in texts[0]
    assert "price 111" in texts[1]
    assert texts[2] == (
        "The topic where w1 was made cannot be posted to (deleted or closed): its alerts "
        "come here now."
    )
    assert [_topic(m) for m in later] == [None, None, None]
    tried = [c.params.get("message_thread_id") for c in tg.calls("sendMessage")]
    assert tried.count(7) == 2  # the /watch answer, then the first alert, refused
    store = Store(tmp_path / "alertbot.db")
    assert [w.topic for w in store.watches()] == [None]
    store.close()


def _topic_rules(path: Path, topic: int = 7) -> tuple[str, ...]:
    """A rule file whose ``btc-up`` alerts in forum topic ``topic`` of SUPERGROUP and whose
    ``eth-up`` alerts in the chat itself (its General topic)."""
    path.write_text(
        f"""channels:
  desk: {{telegram: {SUPERGROUP}, topic: {topic}}}
  room: {{telegram: {SUPERGROUP}}}
rules:
  - {{id: btc-up, symbols: [BTCUSDT], when: price crosses above 100, notify: [desk]}}
  - {{id: eth-up, symbols: [ETHUSDT], when: price crosses above 10, notify: [room]}}
"""
    )
    return (str(path),)


async def _cross_both(bot: Bot, at: int) -> None:
    """BTCUSDT and ETHUSDT cross up through btc-up's and eth-up's levels, in one frame."""
    await bot.binance.publish([mini_ticker("BTCUSDT", 90, at), mini_ticker("ETHUSDT", 9, at)])
    await bot.binance.publish(
        [mini_ticker("BTCUSDT", 110, at + 1000), mini_ticker("ETHUSDT", 11, at + 1000)]
    )


async def test_a_rule_file_channel_with_a_topic_alerts_in_that_topic(tmp_path, fakes):
    """``{telegram: CHAT, topic: N}``: that channel's alerts go to forum topic N, another
    channel of the same chat's to the chat itself; fired together, they go as two messages."""
    binance, tg = fakes
    files = _topic_rules(tmp_path / "rules.yaml")
    async with Bot(tmp_path, binance, tg, load_files(files), rule_files=files) as bot:
        await _cross_both(bot, T)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 2)
    by_topic = {_topic(m): m.plain_text for m in tg.messages_to(SUPERGROUP)}
    assert set(by_topic) == {7, None}
    assert "BTCUSDT price crosses above 100: price 110" in by_topic[7]
    assert "ETHUSDT" not in by_topic[7]
    assert "ETHUSDT price crosses above 10: price 11" in by_topic[None]


async def test_a_rule_files_topic_is_known_for_an_alert_resumed_at_the_next_start(tmp_path, fakes):
    """An alert left undelivered at a stop is sent at the next start, before any rule fires
    again: it still goes to its channel's topic (known by its rule's id)."""
    binance, tg = fakes
    files = _topic_rules(tmp_path / "rules.yaml")
    async with Bot(tmp_path, binance, tg, load_files(files), rule_files=files) as bot:
        tg.fail_chat(SUPERGROUP, 500, "Internal Server Error")
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.calls("sendMessage")) >= 1)  # tried, refused
    tg.recover()
    async with Bot(tmp_path, binance, tg, load_files(files), rule_files=files):
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
    (alert,) = tg.messages_to(SUPERGROUP)
    assert "BTCUSDT price crosses above 100: price 110" in alert.plain_text
    assert _topic(alert) == 7


async def test_a_rule_files_topic_telegram_refuses_is_left_until_a_reload(tmp_path, fakes, caplog):
    """The channel's topic deleted or closed: its alert goes to the chat itself (not lost),
    the log says so once, naming the channel, and later alerts go there at once; no watch was
    made there, so the chat gets no note. A reload that names another topic is tried again."""
    binance, tg = fakes
    path = tmp_path / "rules.yaml"
    files = _topic_rules(path)
    async with Bot(tmp_path, binance, tg, load_files(files), rule_files=files) as bot:
        tg.close_topic(SUPERGROUP, 7)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        await bot.tick("BTCUSDT", 90, T + 2000)
        await bot.tick("BTCUSDT", 111, T + 3000 + 3_600_000)  # past the default cooldown
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 2)
        _topic_rules(path, topic=8)
        assert await bot.app.reload("test")
        await bot.tick("BTCUSDT", 90, T + 4000 + 3_600_000)
        await bot.tick("BTCUSDT", 112, T + 5000 + 7_200_000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 3)
    alerts = tg.messages_to(SUPERGROUP)
    assert [m.plain_text.split("price ")[-1][:3] for m in alerts] == ["110", "111", "112"]
    assert [_topic(m) for m in alerts] == [None, None, 8]
    tried = [c.params.get("message_thread_id") for c in tg.calls("sendMessage")]
    assert tried == [7, None, None, 8]  # the refused try, its retry, the next alert, the reload
    warned = [r.getMessage() for r in caplog.records if "refuses topic 7" in r.getMessage()]
    assert warned == [
        f"channel 'desk': Telegram refuses topic 7 of chat {SUPERGROUP} (deleted or closed): "
        "its alerts go to the chat itself (its General topic) until the rules are reloaded"
    ]


async def test_start_sent_in_a_forum_topic_tells_the_topics_id_too(tmp_path, fakes):
    """/start in a topic ends with the topic's id and the rule-file channel that names it:
    Telegram shows neither; outside a topic, the chat's id alone."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg):
        tg.user_says(SUPERGROUP, "/start", topic=7)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        tg.user_says(SUPERGROUP, "/start")
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 2)
    in_topic, outside = (m.plain_text.splitlines()[-2:] for m in tg.messages_to(SUPERGROUP))
    assert in_topic == [
        f"This chat's id: {SUPERGROUP}",
        f"This topic's id: 7 (a rule file's channel for it: {{telegram: {SUPERGROUP}, topic: 7}})",
    ]
    assert outside[-1] == f"This chat's id: {SUPERGROUP}"
    assert "topic" not in outside[0] + outside[1]


async def test_after_a_group_upgrade_alerts_go_straight_to_the_supergroup(tmp_path, fakes):
    """Once the service messages moved the watch, its alert is sent to the supergroup alone: no
    attempt at the old id first."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100", chat=GROUP, chat_type="group")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.upgrade_group(GROUP, SUPERGROUP)
        await bot.say("/help", chat=SUPERGROUP)  # the service messages are handled by then
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: "crosses above 100: price 110" in tg.messages[-1].plain_text)
    assert tg.messages[-1].chat_id == SUPERGROUP
    sends = [c.params.get("chat_id") for c in tg.calls("sendMessage")]
    assert sends.count(GROUP) == 1  # the /watch reply, before the upgrade


async def test_an_upgraded_groups_watch_keeps_its_firing_state(tmp_path, fakes):
    """A level that fired in the group and still holds stays quiet in the supergroup."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100", chat=GROUP, chat_type="group")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 110, T)
        await tg.wait_for(lambda: "price 110" in tg.messages_to(GROUP)[-1].plain_text)
        tg.upgrade_group(GROUP, SUPERGROUP)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: bool(book.of_chat(SUPERGROUP)))
        await bot.tick("BTCUSDT", 111, T + 1000)
        assert bot.app.pipeline.alerts == 1


async def test_a_send_refused_as_migrated_moves_the_groups_watches(tmp_path, fakes):
    """No service message seen, only Telegram's "group chat was upgraded" for an alert: the
    alert goes to the supergroup, and so do the watch and its next alerts."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100 cooldown 1s", chat=GROUP, chat_type="group")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.migrate_chat(GROUP, SUPERGROUP)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: bool(book.of_chat(SUPERGROUP)))  # moved as the alert was sent
        listing = await bot.say("/list", chat=SUPERGROUP)
        await bot.tick("BTCUSDT", 90, T + 5000)
        await bot.tick("BTCUSDT", 111, T + 6000)
        await tg.wait_for(lambda: "price 111" in tg.messages_to(SUPERGROUP)[-1].plain_text, 8)
    assert listing.startswith("1 watch:\nw1  BTCUSDT price crosses above 100")
    refused = [c for c in tg.calls("sendMessage") if c.params.get("chat_id") == GROUP and not c.ok]
    assert len(refused) == 1


async def test_a_move_learned_late_keeps_a_watch_made_again_in_the_supergroup_once(tmp_path, fakes):
    """The supergroup's users made the group's watch again before the move was known (it is
    learned from an alert refused as migrated): the same symbol and condition stays one watch
    in the supergroup, so each alert comes once, and the group's other watch moves."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        watch = "/watch BTCUSDT crosses above 100 cooldown 1s"
        await bot.say(watch, chat=GROUP, chat_type="group")
        await bot.say("/watch ETHUSDT > 5000", chat=GROUP, chat_type="group")
        await bot.say(watch, chat=SUPERGROUP, chat_type="supergroup")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
        tg.migrate_chat(GROUP, SUPERGROUP)
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)  # both copies fire; the group's is refused
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: not book.of_chat(GROUP))

        def crossings() -> int:  # of both copies: both fired before the move was known
            return sum(m.plain_text.count("price 110") for m in tg.messages_to(SUPERGROUP))

        await tg.wait_for(lambda: crossings() == 2, 8)  # no alert comes in between from now on
        listing = await bot.say("/list", chat=SUPERGROUP)
        before = bot.app.pipeline.alerts
        await bot.tick("BTCUSDT", 90, T + 2000)
        await bot.tick("BTCUSDT", 111, T + 3000)  # one watch: one alert
        await tg.wait_for(lambda: "price 111" in tg.messages_to(SUPERGROUP)[-1].plain_text)
        assert bot.app.pipeline.alerts == before + 1
    assert listing.startswith("2 watches:"), listing
    assert listing.count("BTCUSDT price crosses above 100") == 1, listing
    assert "ETHUSDT price > 5000" in listing
    store = Store(tmp_path / "alertbot.db")
    assert sorted(w.symbol for w in store.watches()) == ["BTCUSDT", "ETHUSDT"]
    store.close()


async def test_a_resumed_alert_refused_as_migrated_moves_the_groups_watches(tmp_path, fakes):
    """An alert left undelivered at shutdown is resumed at the next start, before the chat
    side is up: refused then as migrated, it still takes the group's watches along."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT crosses above 100", chat=GROUP, chat_type="group")
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        tg.fail_next(100, status=502, chat_id=GROUP)  # the alert stays undelivered
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await tg.wait_for(lambda: any(not c.ok for c in tg.calls("sendMessage")))
    tg.clear_failures()
    tg.migrate_chat(GROUP, SUPERGROUP)
    async with Bot(tmp_path, binance, tg) as bot:
        await tg.wait_for(lambda: len(tg.messages_to(SUPERGROUP)) == 1)  # the resumed alert
        book = bot.app.book
        assert book is not None
        await tg.wait_for(lambda: bool(book.of_chat(SUPERGROUP)))
        assert book.of_chat(GROUP) == []


async def test_a_list_button_shown_before_a_group_upgrade_acts_on_the_moved_watch(tmp_path, fakes):
    """The supergroup shows the group's history: a /list button pressed there comes from the
    old group's id. It said "That watch is gone already." while the watch, moved to the
    supergroup, went on alerting; it removes that watch."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg) as bot:
        await bot.say("/watch BTCUSDT > 100", chat=GROUP, chat_type="group")
        await bot.say("/watch ETHUSDT > 100", chat=GROUP, chat_type="group")
        await bot.say("/list", chat=GROUP)
        listing = tg.messages_to(GROUP)[-1]
        tg.upgrade_group(GROUP, SUPERGROUP)
        await bot.say("/help", chat=SUPERGROUP)  # the service messages are handled by then
        tg.user_presses(GROUP, listing.message_id, "rm:w1:1")
        await tg.wait_for(lambda: len(tg.answered_callbacks) == 1)
        book = bot.app.book
        assert book is not None
        assert [r.id for r in book.of_chat(SUPERGROUP)] == [2]
    assert tg.answered_callbacks[0].text == "Removed w1."


async def test_an_allowed_groups_supergroup_is_allowed_too(tmp_path, fakes, caplog):
    """The allow-list names the group's old id: its supergroup is let in, after a restart too
    (the move is kept in the database), and the log asks for the new id in the settings."""
    binance, tg = fakes
    async with Bot(tmp_path, binance, tg, allowed_chats=(GROUP,)) as bot:
        await bot.say("/watch BTCUSDT > 100", chat=GROUP, chat_type="group")
        tg.upgrade_group(GROUP, SUPERGROUP)
        reply = await bot.say("/watch ETHUSDT > 100", chat=SUPERGROUP)
    assert reply.startswith("Watching ETHUSDT")
    assert f"put {SUPERGROUP} in place of {GROUP} in ALERTBOT_ALLOWED_CHATS" in caplog.text
    async with Bot(tmp_path, binance, tg, allowed_chats=(GROUP,)) as bot:
        again = await bot.say("/watch SOLUSDT > 100", chat=SUPERGROUP)
        stranger = await bot.say("/watch SOLUSDT > 100", chat=-777)
    assert again.startswith("Watching SOLUSDT")
    assert not stranger.startswith("Watching")


# ---------------------------------------------------------------- one budget with the alerts


async def test_alerts_and_answers_together_keep_to_30_messages_a_second(tmp_path, fakes):
    """60 chats get an alert at once while 20 others ask for /help: the answers take their
    turn in the alerts' budget, so Telegram never sees more than 30 messages in a second."""
    binance, tg = fakes
    watchers = [1000 + n for n in range(60)]
    askers = [5000 + n for n in range(20)]
    async with Bot(tmp_path, binance, tg):
        for chat in watchers:
            tg.user_says(chat, "/watch BTCUSDT > 100")
        await tg.wait_for(lambda: all(tg.messages_to(c) for c in watchers), timeout=30)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await binance.publish([mini_ticker("BTCUSDT", 110, T)])
        for chat in askers:
            tg.user_says(chat, "/help")
        await tg.wait_for(lambda: len(tg.messages) == 60 + 60 + 20, timeout=30)
    assert tg.limit_violations() == []


async def test_alert_metrics_count_watches_under_one_label_and_drop_removed_rules(tmp_path, fakes):
    """alertbot_alerts_total: every chat watch's alerts under rule="/watch" (not a series per
    watch, w1, w2, ... for ever), and a rule gone from the rule files has no series left."""
    binance, tg = fakes
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: btc-up\n    symbols: [BTCUSDT]\n    when: price crosses above 100\n"
    )
    files = (str(rules),)

    def alert_lines(app: App) -> list[str]:
        registry = CollectorRegistry()
        registry.register(AppCollector(app))
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if line.startswith("alertbot_alerts_total")]

    async with Bot(tmp_path, binance, tg, load_files(files), rule_files=files) as bot:
        await bot.say("/watch BTCUSDT crosses above 100")
        await bot.say("/watch BTCUSDT crosses above 100", chat=USER + 1)
        await binance.wait_for_subscriptions({"btcusdt@miniTicker"})
        await bot.tick("BTCUSDT", 90, T)
        await bot.tick("BTCUSDT", 110, T + 1000)
        await binance.wait_for(lambda: bot.app.pipeline.alerts == 3)
        assert alert_lines(bot.app) == [
            'alertbot_alerts_total{rule="/watch"} 2.0',
            'alertbot_alerts_total{rule="btc-up"} 1.0',
        ]
        rules.write_text("rules: []\n")
        assert await bot.app.reload("test")
        assert alert_lines(bot.app) == ['alertbot_alerts_total{rule="/watch"} 2.0']
