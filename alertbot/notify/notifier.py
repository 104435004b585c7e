"""Delivery assembled: store, router, senders and outbox behind one ``emit(alert, gap)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, tzinfo
from typing import TextIO

from telegram import Bot
from telegram.error import InvalidToken, TelegramError
from telegram.request import HTTPXRequest

from alertbot.errors import ConfigError
from alertbot.notify.delivery import Sender, clip
from alertbot.notify.outbox import ConsoleSender, Outbox, alert_id
from alertbot.notify.render import BLOCKS, alert_detail, format_time, render_both, sparkline
from alertbot.notify.routing import Route, Router, chat_of
from alertbot.notify.settings import DeliverySettings
from alertbot.notify.telegram import TelegramSender
from alertbot.notify.webhook import WebhookSender
from alertbot.rules.engine import Alert, Engine
from alertbot.rules.ids import watch_number
from alertbot.rules.model import Channel, Rule
from alertbot.store import AlertRecord, Store
from alertbot.text import plural
from alertbot.zones import UTC_NAME, in_window, load_zone, local_minute

log = logging.getLogger("alertbot.notify")


class Sparklines:
    """Recent prices per symbol, sampled from the engine every ``interval`` seconds."""

    def __init__(self, engine: Engine, *, interval: float = 60.0, size: int = 30) -> None:
        self.engine = engine
        self.interval = interval
        self.size = size
        self.history: dict[str, deque[float]] = {}
        # per symbol until the next sample: the history's low, high and blocks, for a price
        # within them needs one more block only (a flood of alerts asks for the same symbols)
        self._drawn: dict[str, tuple[float, float, str]] = {}

    def sample(self) -> None:
        engine = self.engine
        self._drawn.clear()
        for symbol in engine.symbols():
            t = engine.last_ticker(symbol)
            if t is None:
                continue
            h = self.history.get(symbol)
            if h is None:
                h = self.history[symbol] = deque(maxlen=self.size)
            h.append(t.close)

    def of(self, symbol: str, price: float) -> str:
        history = self.history.get(symbol)
        if not history:
            return ""
        drawn = self._drawn.get(symbol)
        if drawn is None:
            lo, hi = min(history), max(history)
            drawn = self._drawn[symbol] = (lo, hi, sparkline(history) if hi > lo else "")
        lo, hi, blocks = drawn
        if blocks and lo <= price <= hi:  # the scale of the full drawing: one more block
            return blocks + BLOCKS[round((price - lo) / (hi - lo) * (len(BLOCKS) - 1))]
        return sparkline([*history, price])

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


def make_bot(settings: DeliverySettings) -> Bot:
    assert settings.telegram_token is not None
    request = HTTPXRequest(
        connection_pool_size=64,
        read_timeout=settings.telegram_timeout,
        write_timeout=settings.telegram_timeout,
        connect_timeout=settings.telegram_timeout,
        pool_timeout=settings.telegram_timeout,
    )
    return Bot(
        settings.telegram_token,
        base_url=f"{settings.telegram_api_url}/bot",
        base_file_url=f"{settings.telegram_api_url}/file/bot",
        request=request,
    )


class Notifier:
    def __init__(
        self,
        settings: DeliverySettings,
        channels: Mapping[str, Channel],
        *,
        rules: Iterable[Rule] = (),
        out: TextIO | None = None,
        sparklines: Sparklines | None = None,
        clock: Callable[[], float] = time.time,
        on_console_gone: Callable[[], object] | None = None,
    ) -> None:
        """``on_console_gone``: called (on the event loop) once stdout takes no more lines,
        instead of the console's own warning (ConsoleSender)."""
        self.settings = settings
        #: the watches made in a forum topic, ended ones too (a ``once`` watch's alert may
        #: still be on its way): id -> (chat, topic). Read when the database opens, before
        #: the deliveries it holds resume; the chat side's WatchBook keeps it up to date.
        self.topics: dict[int, tuple[int, int]] = {}
        #: the chats' time zones (/timezone: chat -> zone name), which a watch's alert shows
        #: its time in; the chat side's WatchBook reads and keeps them
        self.zones: dict[int, str] = {}
        #: the chats' quiet hours (/quiet: chat -> start and end minute of the day in its
        #: zone): alerts to the chat then come without a sound
        self.quiet: dict[int, tuple[int, int]] = {}
        self.on_console_gone = on_console_gone
        self.router = Router(channels, settings)
        #: ALERTBOT_TIMEZONE's (None: UTC): the rule files' alerts' and zoneless chats'
        self.default_zone = None if settings.timezone == UTC_NAME else load_zone(settings.timezone)
        self.router.set_rules(rules)
        #: told (chat, topic) when Telegram refuses a forum topic (deleted, closed): the alert
        #: went to the chat itself (the rule files' channels in it are handled here)
        self.on_topic_gone: Callable[[int, int], object] | None = None
        #: a symbol's chart on the exchange, linked under a watch's alerts (App sets the
        #: market's: alertbot.feed.market.Market.chart_url)
        self.chart_url: Callable[[str], str | None] | None = None
        self.out = out or sys.stdout
        self.sparklines = sparklines
        self.clock = clock
        self.store: Store | None = None
        self.bot: Bot | None = None
        self.outbox: Outbox | None = None
        self.telegram: TelegramSender | None = None
        self.webhook: WebhookSender | None = None
        self.console: ConsoleSender | None = None

    async def start(self) -> int:
        """Open the database, check the bot token, resume undelivered alerts (their count).

        Raises ConfigError for a database that cannot be written or a token Telegram rejects.
        """
        cfg = self.settings
        try:
            self.store = Store(cfg.db)
            self.store.check_writable()
            self.topics.update(self.store.watch_topics())
        except Exception as exc:
            raise ConfigError(f"ALERTBOT_DB: cannot use {cfg.db!r}: {exc}") from None
        senders: dict[str, Sender] = {}
        outbox_report = self._report
        self.webhook = WebhookSender(cfg, outbox_report)
        senders["webhook"] = self.webhook
        self.console = ConsoleSender(outbox_report, self.out, self.on_console_gone)
        senders["console"] = self.console
        if cfg.telegram_token:
            self.bot = make_bot(cfg)
            try:
                await self.bot.initialize()  # getMe: a rejected token stops here
            except InvalidToken:
                await self.close()
                raise ConfigError("ALERTBOT_TELEGRAM_TOKEN: Telegram rejected the token") from None
            except TelegramError as exc:
                log.warning(
                    "telegram: not reachable at start-up (%s); alerts will wait", clip(str(exc))
                )
            self.telegram = TelegramSender(self.bot, cfg, outbox_report)
            self.telegram.topic_of = self.topic_of
            self.telegram.on_topic_gone = self._topic_gone
            self.telegram.localize = self._localize
            self.telegram.chart_url = self.chart_url
            self.telegram.silent = self.silent
            senders["telegram"] = self.telegram
        self.outbox = Outbox(self.store, cfg, self.router, senders)
        return await self.outbox.start()

    def topic_of(self, rule_id: str, chat: int) -> int | None:
        """The forum topic of ``chat`` that an alert of rule ``rule_id`` goes to: the one its
        watch was made in, or a rule file's channel names; None: the chat itself (a watch made
        outside a topic, a channel without one, or a topic Telegram refused)."""
        number = watch_number(rule_id)
        if number is None:  # a rule file's
            return self.router.topic_for(rule_id, chat)
        found = self.topics.get(number)
        return found[1] if found is not None and found[0] == chat else None

    def _zone(self, rule: Rule) -> tzinfo | None:
        """The time zone an alert of ``rule`` shows its time in: a chat watch's chat's, else
        ALERTBOT_TIMEZONE's (None: UTC)."""
        if watch_number(rule.id) is None or not rule.notify:
            return self.default_zone
        chat = chat_of(rule.notify[0])
        return self.default_zone if chat is None else self._chat_zone(chat)

    def silent(self, chat: int) -> bool:
        """Whether a message to ``chat`` now goes without a sound: it is within its quiet
        hours (/quiet), on its clock."""
        window = self.quiet.get(chat)
        if window is None:
            return False
        _day, minute = local_minute(self.clock(), self._chat_zone(chat) or UTC)
        return in_window(minute, *window)

    def _chat_zone(self, chat: int) -> tzinfo | None:
        """``chat``'s /timezone, else ALERTBOT_TIMEZONE's (None: UTC)."""
        name = self.zones.get(chat)
        return self.default_zone if name is None else load_zone(name)

    def _localize(self, text: str, record: AlertRecord, chat: int) -> str:
        """``text`` of a rule file's alert as ``chat`` reads it: rendered once for all its
        chats in ALERTBOT_TIMEZONE, its time is shown in the chat's own /timezone. A chat
        watch's alert is in its chat's zone already; a template without ``{time}`` and a
        delivery resumed after ALERTBOT_TIMEZONE changed keep their text."""
        if not self.zones or watch_number(record.rule) is not None:
            return text
        zone = self._chat_zone(chat)
        if (zone or UTC) == (self.default_zone or UTC):
            return text
        shown = format_time(record.time, self.default_zone)
        return text.replace(shown, format_time(record.time, zone))

    def _topic_gone(self, chat: int, topic: int) -> None:
        self.router.topic_refused(chat, topic)
        if self.on_topic_gone is not None:
            self.on_topic_gone(chat, topic)

    def _report(self, *args: object, **kwargs: object) -> None:
        assert self.outbox is not None
        self.outbox.report(*args, **kwargs)  # type: ignore[arg-type]

    def record(
        self,
        alert: Alert,
        gap: bool,
        routes: Sequence[Route] | None = None,
        *,
        seq: int | None = None,
        watch: int | None = None,
        ends_watch: bool = False,
        again: str | None = None,
    ) -> AlertRecord:
        """The alert as stored and sent. Its HTML (Telegram's text) is rendered only when one of
        ``routes`` is a Telegram chat, the sparkline only when the message shows it. ``seq``,
        ``watch``, ``ends_watch``: see AlertRecord. ``again``: see render_both."""
        rule = alert.rule
        ticker = alert.ticker
        template = rule.message
        spark = (
            self.sparklines.of(alert.symbol, ticker.close)
            if self.sparklines is not None and (template is None or "sparkline" in template)
            else ""
        )
        condition = alert.condition
        with_html = routes is None or any(r.destination.startswith("telegram:") for r in routes)
        text, html = render_both(
            alert,
            gap=gap,
            spark=spark,
            with_html=with_html,
            condition=condition,
            zone=self._zone(rule) if self.zones else self.default_zone,
            again=again,
        )
        return AlertRecord(
            id=alert_id(rule.id, alert.symbol, ticker.time),
            rule=rule.id,
            symbol=alert.symbol,
            time=ticker.time,
            price=ticker.price_text,
            condition=condition,
            text=text,
            html=html,
            gap=gap,
            created=self.clock(),
            seq=seq,
            watch=watch,
            ends_watch=ends_watch,
            note=rule.note,
            detail=alert_detail(alert),
        )

    def emit(
        self,
        alert: Alert,
        gap: bool,
        *,
        watch: int | None = None,
        ends_watch: bool = False,
        again: str | None = None,
    ) -> None:
        """Hand the alert to the outbox; a chat watch's alert with its watch (AlertRecord) and,
        when it ends the watch, the command that makes it again (render_both)."""
        outbox = self.outbox
        assert outbox is not None
        routes = self.router.routes(alert.rule)
        seq = outbox.take_seq()
        record = self.record(
            alert, gap, routes, seq=seq, watch=watch, ends_watch=ends_watch, again=again
        )
        outbox.submit(record, routes)

    async def close(self, grace: float = 0.0) -> None:
        """Let the senders drain for up to ``grace`` seconds, stop them, write the outbox."""
        # with no grace (the stop's short writes used it up), what is open is told all the same
        if self.outbox is not None and not await self.outbox.drain(grace):
            log.warning(
                "shutting down with %s open: %s at the next start",
                plural(self.outbox.depth, "delivery", "deliveries"),
                "it resumes" if self.outbox.depth == 1 else "they resume",
            )
        if self.telegram is not None:
            await self.telegram.close()
        if self.webhook is not None:
            await self.webhook.close()
        if self.console is not None:
            self.console.close()
            await asyncio.sleep(0)  # its last results, to be written below
        if self.outbox is not None:
            await self.outbox.close()
        if self.bot is not None:
            with contextlib.suppress(TelegramError):
                await self.bot.shutdown()
        if self.store is not None:
            self.store.close()
            self.store = None
