"""Telegram delivery on python-telegram-bot's ``Bot``, within Telegram's limits.

Each chat has a queue. A chat may be sent to when its previous alert is ``chat_interval``
ago (1 s; ``group_interval``, 3 s, for groups: 20 a minute) and the bot has sent fewer than
``overall_per_second`` (30) messages in the last second. Those limits are the bot token's: the
chat commands' answers draw on the same :class:`Budget` (through :class:`BudgetLimiter`).
When a chat's turn comes, everything waiting for it is merged into one message (up to
Telegram's 4096 characters): a burst of alerts for one chat costs one message, not a queue of
them.

Failures, by what Telegram says:
- ``RetryAfter``: that chat waits as long as told;
- timeouts, network errors, 5xx: retried with capped, jittered backoff;
- ``Forbidden`` (bot blocked, user deactivated, bot kicked or not a member) and "chat not
  found": permanent; a Forbidden fails what else waits for that chat too (Telegram refuses the
  chat, not the message: no call spent on each), and ``on_forbidden`` is told (the chat's
  watches pause);
- "can't parse entities" (a template that is not valid Telegram HTML): sent again as plain
  text rather than dropped; a merged message's alerts are first sent one by one, so that only
  the one Telegram refuses by itself loses its formatting;
- ``ChatMigrated`` (a group became a supergroup): sent to the new chat id, as is everything
  for the old id from then on; ``on_migrate(old, new)`` is told (the chat watches move);
- buttons refused (a bad inline keyboard): sent again without them, with the hint line;
- a forum topic refused (deleted, closed): sent to the chat itself (its General topic); the
  General topic closed: retried with backoff (kept, not failed), as a chat's admins may
  reopen it, until ``give_up_after``.
No chat's trouble delays another chat.

A message whose alerts are all one chat watch's (one alert, or a pattern watch's several) has
that watch's buttons, *Mute 1h* and *Stop* (:func:`watch_buttons`, answered by the chat side),
instead of each alert's WATCH_HINT line; a message that merges several watches' alerts keeps
the lines (a button there could not say which watch it is for), as do the rule files' alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from itertools import count
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import BaseRateLimiter

from alertbot.notify.delivery import Delivery, Report, backoff, clip
from alertbot.notify.render import without_watch_hint
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.ids import watch_number
from alertbot.store import AlertRecord
from alertbot.tasks import cancel_and_wait
from alertbot.text import plural

log = logging.getLogger("alertbot.notify")

_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
#: the log's note on a Forbidden not taken care of (a chat of the rule files, an admin chat)
FORBIDDEN_HINT = (
    " (the chat blocked the bot or removed it; it is named in the rule files or "
    "ALERTBOT_ADMIN_CHATS, whose alerts to it fail until it is back: unblock or re-add the "
    "bot, or change the configuration)"
)
_SEPARATOR = "\n\n"
#: how a delivery's error begins when Telegram refused the chat itself (Forbidden: the chat
#: blocked or removed the bot): stored so, it is read back at start-up (App._revive_refused)
FORBIDDEN = "forbidden: "

#: the kinds of callback_data of the buttons under a chat watch's alert, ``amute:w3``: Telegram
#: allows 64 bytes, and a watch's 64-bit number makes at most 26. Nothing else is needed to
#: act on a press (the chat is the message's), so a press after a restart acts too
ALERT_MUTE = "amute"
ALERT_STOP = "astop"
#: a button that shows what a press did ("Muted until 14:05 UTC"); pressed, it says the state
ALERT_SHOWN = "ashown"


def watch_buttons(rule_id: str, chart: str | None = None) -> InlineKeyboardMarkup:
    """The buttons under an alert of the chat watch ``rule_id``: Mute 1h, Stop; with
    ``chart`` (the symbol's chart on the exchange), a Chart link in a row of its own."""
    rows = [
        [
            InlineKeyboardButton("Mute 1h", callback_data=f"{ALERT_MUTE}:{rule_id}"),
            InlineKeyboardButton("Stop", callback_data=f"{ALERT_STOP}:{rule_id}"),
        ]
    ]
    if chart is not None:
        rows.append([InlineKeyboardButton("Chart", url=chart)])
    return InlineKeyboardMarkup(rows)


def buttons_watch(batch: list[Delivery]) -> str | None:
    """The chat watch whose buttons go under the message of ``batch``: when all its alerts are
    that watch's. None: no buttons (several watches' alerts, a rule file's alert, a ``once``
    watch's last alert: the watch is gone, or Telegram refused the buttons)."""
    rule = batch[0].alert.rule
    if watch_number(rule) is None:
        return None
    for d in batch:
        if d.alert.rule != rule or d.alert.ends_watch or not d.buttons:
            return None
    return rule


def retry_seconds(exc: RetryAfter) -> float:
    """The seconds a 429 asks to wait, whatever PTB_TIMEDELTA says.

    PTB 22 is moving time periods from int seconds to timedelta: with PTB_TIMEDELTA unset (or
    false), ``retry_after`` is an int and every read warns; set, it is a timedelta. That switch is
    process-wide and the choice of whoever runs the process, so it is read here from the
    timedelta PTB keeps either way, and set nowhere. (PTB's own RetryAfter.__init__ reads the
    property and warns when PTB_TIMEDELTA is unset: a DeprecationWarning, which Python does not
    show by default.)
    """
    value = getattr(exc, "_retry_after", None)  # a timedelta; the public property warns
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = exc.retry_after
    return raw.total_seconds() if isinstance(raw, dt.timedelta) else float(raw)


def is_group(chat_id: int) -> bool:
    return chat_id < 0


JSONDict = dict[str, Any]  # a Bot API answer, as python-telegram-bot types it
Stamp = list[Any]  # [loop time, answered]: a message's start, then its answer's time


def _counting(stamps: deque[Stamp], now: float, period: float) -> tuple[int, float | None]:
    """Messages of ``stamps`` that count against a limit per ``period`` now, and when the
    first of them stops counting (None: only unanswered ones count).

    A message counts from its start until ``period`` after it was answered (when Telegram
    received it lies somewhere in between): conservative, whatever the network does.
    """
    while stamps and stamps[0][1] and stamps[0][0] <= now - period:
        stamps.popleft()
    counting = 0
    frees: float | None = None
    for end, done in stamps:
        if not done or end > now - period:
            counting += 1
            if done and (frees is None or end + period < frees):
                frees = end + period
    return counting, frees


class Budget:
    """Telegram's limits for one bot token, shared by everything sent with it: the alerts
    (:class:`TelegramSender`) and the chat commands' answers and notes (:class:`BudgetLimiter`).

    - in all, ``overall_per_second`` messages in any second;
    - a group, 60 / ``group_interval`` (20) messages in any minute;
    - after an alert, a chat's next message waits ``chat_interval`` (groups: ``group_interval``);
      an answer does not make the next message wait (an alert must not be late for it, and a
      user sending commands fast gets the answers at once: Telegram allows a short burst);
    - a chat Telegram answered 429 waits as long as it asked, whoever sends next.

    Answers waiting for room in the second go first: the sender leaves them that room.
    """

    def __init__(self, settings: DeliverySettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.group_limit = max(1, round(60.0 / settings.group_interval))
        self.waiting = 0  # answers waiting for room in the overall second
        #: called on every change that can let a message go (the sender's wake-up)
        self.listeners: list[Callable[[], object]] = []
        self._stamps: deque[Stamp] = deque()
        self._groups: dict[int, deque[Stamp]] = {}
        self._after_alert: dict[int, float] = {}  # chat -> loop time an answer may go
        self._held: dict[int, float] = {}  # chat -> loop time a 429 ends
        self._changed = asyncio.Event()

    def interval(self, chat: int) -> float:
        cfg = self.settings
        return cfg.group_interval if is_group(chat) else cfg.chat_interval

    def window(self, now: float) -> tuple[int, float | None]:
        """Messages counting against the overall limit now, and when the first stops."""
        return _counting(self._stamps, now, 1.0)

    def free_at(self, chat: int, now: float, *, alert: bool) -> float:
        """Loop time from which this chat's own limits let a message go (an alert's, or an
        answer's); the overall limit aside. (The sender spaces its alerts itself.)"""
        at = self._held.get(chat, 0.0)
        if not alert:
            at = max(at, self._after_alert.get(chat, 0.0))
        stamps = self._groups.get(chat)
        if stamps is not None:
            counting, frees = _counting(stamps, now, 60.0)
            if not stamps:
                del self._groups[chat]
            elif counting >= self.group_limit:
                at = max(at, frees if frees is not None else now + 1.0)
        return at

    def start(self, chat: int, now: float) -> Stamp:
        """A message to ``chat`` starts now; :meth:`done` when it is answered."""
        stamp: Stamp = [now, False]
        self._stamps.append(stamp)
        if is_group(chat):
            if len(self._groups) > 4096:  # forget the groups with nothing in the last minute
                for key in list(self._groups):
                    if not _counting(self._groups[key], now, 60.0)[0]:
                        del self._groups[key]
            self._groups.setdefault(chat, deque()).append(stamp)
        return stamp

    def done(self, stamp: Stamp, chat: int, *, sent: bool, alert: bool) -> None:
        now = self.clock()
        stamp[0], stamp[1] = now, True
        if sent and alert:
            spaced = self._after_alert
            spaced[chat] = now + self.interval(chat)
            if len(spaced) > 4096:  # forget the chats whose spacing is over
                for key in [k for k, at in spaced.items() if at <= now]:
                    del spaced[key]
        self._notify()

    def hold(self, chat: int, seconds: float) -> None:
        """Telegram asked to wait ``seconds`` before the next message to ``chat``."""
        now = self.clock()
        self._held[chat] = max(self._held.get(chat, 0.0), now + seconds)
        if len(self._held) > 4096:
            for key in [k for k, at in self._held.items() if at <= now]:
                del self._held[key]
        self._notify()

    async def acquire(self, chat: int) -> Stamp:
        """Wait for an answer's turn to ``chat``; then it has started (:meth:`done` after)."""
        limit = self.settings.overall_per_second
        reserving = False
        try:
            while True:
                now = self.clock()
                at = self.free_at(chat, now, alert=False)
                counting, frees = self.window(now)
                if at <= now and counting < limit:
                    return self.start(chat, now)
                in_window = at <= now  # only the overall limit holds it up: room is kept
                if in_window != reserving:
                    self.waiting += 1 if in_window else -1
                    reserving = in_window
                    self._notify()
                wake = at if not in_window else (frees if frees is not None else now + 1.0)
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, wake - now)):
                        await changed.wait()
        finally:
            if reserving:
                self.waiting -= 1
                self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self.listeners:
            listener()


def _chat_key(value: object) -> int | None:
    """A request's chat_id as an int (None: none, or a channel's @name)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    return None


#: Telegram's words (lower case) for a forum topic a message cannot go to: deleted ("message
#: thread not found"), closed ("TOPIC_CLOSED"), or gone otherwise
_TOPIC_GONE = ("thread not found", "topic_closed", "topic_deleted", "topic_id_invalid")


class BudgetLimiter(BaseRateLimiter[int]):
    """python-telegram-bot's rate limiter for the chat commands: each answer or note to a chat
    takes its turn in the alerts' :class:`Budget`, so together they keep to Telegram's limits.
    One refused with 429 anyway is sent again after the wait Telegram asks, up to
    ``max_retries`` times (as PTB's AIORateLimiter does); requests naming no chat (the command
    menu, a button's answer) are not held up, as there."""

    __slots__ = ("budget", "max_retries")

    def __init__(self, budget: Budget, max_retries: int = 0) -> None:
        self.budget = budget
        self.max_retries = max_retries

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        retries = rate_limit_args or self.max_retries
        chat = _chat_key(data.get("chat_id"))
        attempt = 0
        while True:
            try:
                if chat is None:
                    return await callback(*args, **kwargs)
                stamp = await self.budget.acquire(chat)
                sent = False
                try:
                    result = await callback(*args, **kwargs)
                    sent = True
                    return result
                finally:
                    self.budget.done(stamp, chat, sent=sent, alert=False)
            except RetryAfter as exc:
                wait = retry_seconds(exc)
                if chat is not None:
                    self.budget.hold(chat, wait)  # the alerts to that chat wait too
                if attempt >= retries:
                    log.warning(
                        "telegram: %s refused with 429 %s; given up",
                        endpoint,
                        plural(attempt + 1, "time"),
                    )
                    raise
                attempt += 1
                log.info("telegram: %s refused with 429; again in %.1fs", endpoint, wait)
                if chat is None:
                    await asyncio.sleep(wait)


class TelegramSender:
    def __init__(self, bot: Bot, settings: DeliverySettings, report: Report) -> None:
        self.bot = bot
        self.settings = settings
        self.report = report
        # Per chat, only while it has something to do: a chat's queue goes when it is empty
        # (the scheduler scans the queues at each wake-up), its fairness stamp with it, its
        # failures once nothing of it waits or is being sent (_forget), its next-ok time at
        # the first wake-up after that time. A bot that served 50,000 chats keeps nothing of
        # the ones it is done with.
        self._queues: dict[int, deque[Delivery]] = {}  # chats with alerts waiting
        self._next_ok: dict[int, float] = {}  # loop time a chat may next be sent to
        self._expiry: list[tuple[float, int]] = []  # heap of the (next-ok time, chat) set
        self._failures: dict[int, int] = {}
        self._order: dict[int, int] = {}  # when each chat's head was queued (fairness)
        self._seq = count()
        self._inflight: set[int] = set()
        self._single: set[int] = set()  # chats whose merged message was refused as too long
        self._sends: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        #: the token's limits, shared with the chat commands' answers (BudgetLimiter)
        self.budget = Budget(settings, self._loop.time)
        self.budget.listeners.append(self._wake.set)
        self._moved: dict[int, int] = {}  # a group's id -> its supergroup's
        self.sent_messages = 0
        #: told (old id, new id) when Telegram says a group became a supergroup
        self.on_migrate: Callable[[int, int], object] | None = None
        #: told (chat, the alerts refused, why) when Telegram refuses a chat as Forbidden;
        #: returns the ids of those alerts it has logged itself (a paused chat's: one line
        #: for the chat, not one per alert). Until it is set, they are kept (forbidden())
        self.on_forbidden: Callable[[int, list[AlertRecord], str], Collection[str]] | None = None
        self._forbidden: list[tuple[int, list[AlertRecord], str]] = []
        #: the forum topic of a chat an alert goes to (rule id, chat; None: the chat itself):
        #: a watch made in a topic alerts there
        self.topic_of: Callable[[str, int], int | None] | None = None
        #: told (chat, topic) when Telegram refuses a topic (deleted, closed): its alerts went
        #: to the chat itself instead
        self.on_topic_gone: Callable[[int, int], object] | None = None
        #: an alert's text (or HTML) as ``chat`` reads it: a rule file's alert, rendered once
        #: for all its chats, with its time in the chat's own /timezone
        self.localize: Callable[[str, AlertRecord, int], str] | None = None
        #: the web page of a symbol's chart on the exchange (None: none), linked under a
        #: watch's alerts of one symbol
        self.chart_url: Callable[[str], str | None] | None = None
        #: whether a message to a chat now goes without a sound (its /quiet hours)
        self.silent: Callable[[int], bool] | None = None

    def forbidden(self) -> list[tuple[int, list[AlertRecord], str]]:
        """The chats refused as Forbidden before ``on_forbidden`` was set (deliveries resumed
        at start-up), with their alerts and why; taken (the list is emptied)."""
        out, self._forbidden = self._forbidden, []
        return out

    def moved(self) -> dict[int, int]:
        """The groups Telegram said became supergroups, by old id: the new one."""
        return dict(self._moved)

    def enqueue(self, d: Delivery) -> None:
        chat = d.chat_id
        assert chat is not None
        if chat in self._moved:  # no failed send to the old id first
            chat = d.chat_id = self._moved[chat]
        q = self._queues.get(chat)
        if q is None:
            q = self._queues[chat] = deque()
            self._order[chat] = next(self._seq)
        q.append(d)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="telegram-sender")
        self._wake.set()

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)

    # ------------------------------------------------------------------ scheduling

    async def _run(self) -> None:
        budget = self.budget
        expiry, next_ok = self._expiry, self._next_ok
        while True:
            now = self._loop.time()
            while expiry and expiry[0][0] <= now:  # a time gone by holds up nothing
                at, chat = heapq.heappop(expiry)
                if next_ok.get(chat) == at:
                    del next_ok[chat]
            counting, frees = budget.window(now)
            limit = self.settings.overall_per_second - budget.waiting  # answers go first
            turns = {
                chat: max(self._next_ok.get(chat, 0.0), budget.free_at(chat, now, alert=True))
                for chat in self._queues
                if chat not in self._inflight
            }
            ready = sorted((c for c, at in turns.items() if at <= now), key=self._order.__getitem__)
            started = 0
            for chat in ready:
                if counting >= limit:
                    break
                counting += 1
                started += 1
                stamp = budget.start(chat, now)
                self._inflight.add(chat)
                task = asyncio.create_task(self._send(chat, stamp), name="telegram-send")
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            # sleep until a chat's turn, the overall window opening, or new work (a send that
            # ends, or an answer of the chat commands, wakes this loop too)
            waits = [at for chat, at in turns.items() if chat not in self._inflight]
            wake_at = min(waits) if waits else None
            if counting >= limit and wake_at is not None:
                wake_at = max(wake_at, frees) if frees is not None else None
            self._wake.clear()
            timeout = None if wake_at is None else max(0.0, wake_at - self._loop.time())
            if timeout == 0.0 and started:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _topic(self, d: Delivery, chat: int) -> int | None:
        if d.general or self.topic_of is None:
            return None
        try:
            return self.topic_of(d.alert.rule, chat)
        except Exception:  # a bug must not hold the alert up: the chat itself
            log.exception("telegram: could not tell the topic of alert %s", d.alert.id)
            return None

    def _take(self, chat: int) -> tuple[list[Delivery], int | None]:
        """Pop what goes into this chat's next message: same mode and forum topic, within the
        length cap; and that topic."""
        q = self._queues[chat]
        cap = self.settings.max_message
        batch = [q.popleft()]
        topic = self._topic(batch[0], chat)
        size = len(self._text(batch[0]))
        merging = chat not in self._single and not batch[0].alone
        while (
            merging
            and q
            and q[0].plain == batch[0].plain
            and not q[0].alone
            and self._topic(q[0], chat) == topic
        ):
            extra = len(_SEPARATOR) + len(self._text(q[0]))
            if size + extra > cap:
                break
            batch.append(q.popleft())
            size += extra
        if q:
            self._order[chat] = next(self._seq)
        else:  # nothing more waits: the scheduler stops looking at it (a retry puts it back)
            del self._queues[chat]
            del self._order[chat]
        return batch, topic

    def _text(self, d: Delivery, buttons: bool = False, *, plain: bool | None = None) -> str:
        """The alert as sent (``plain``: its plain text, whatever ``d`` says); with
        ``buttons``, less its hint line (the buttons say it)."""
        text = d.alert.text if (d.plain if plain is None else plain) else d.alert.html
        if self.localize is not None and d.chat_id is not None:
            text = self.localize(text, d.alert, d.chat_id)
        return without_watch_hint(text, d.alert.rule) if buttons else text

    def _silent(self, chat: int) -> bool:
        """Whether this chat's alert goes without a sound now (its quiet hours)."""
        if self.silent is None:
            return False
        try:
            return self.silent(chat)
        except Exception:  # a bug must not hold the alert up: with a sound
            log.exception("telegram: could not tell whether chat %s is quiet", chat)
            return False

    def _chart(self, batch: list[Delivery]) -> str | None:
        """The chart linked under a message of ``batch``: when its alerts are of one symbol."""
        symbols = {d.alert.symbol for d in batch}
        if self.chart_url is None or len(symbols) != 1:
            return None
        return self.chart_url(symbols.pop())

    def _requeue(self, chat: int, batch: list[Delivery]) -> None:
        q = self._queues.setdefault(chat, deque())
        q.extendleft(reversed(batch))
        self._order[chat] = next(self._seq)

    # ------------------------------------------------------------------ sending

    async def _send(self, chat: int, stamp: Stamp) -> None:
        batch, topic = self._take(chat)
        cfg = self.settings
        plain = batch[0].plain
        watch = buttons_watch(batch)
        buttons = watch is not None
        text = _SEPARATOR.join(self._text(d, buttons) for d in batch)
        if len(text) > cfg.max_message:  # one alert alone over the cap: cut its plain text
            plain = True
            text = self._text(batch[0], buttons, plain=True)
            text = text[: cfg.max_message - 1] + "…"
        for d in batch:
            d.attempts += 1
        interval = cfg.group_interval if is_group(chat) else cfg.chat_interval
        sent = False
        try:
            await self.bot.send_message(
                chat_id=chat,
                message_thread_id=topic,
                text=text,
                parse_mode=None if plain else "HTML",
                link_preview_options=_NO_PREVIEW,
                reply_markup=None if watch is None else watch_buttons(watch, self._chart(batch)),
                disable_notification=self._silent(chat),
                read_timeout=cfg.telegram_timeout,
                write_timeout=cfg.telegram_timeout,
                connect_timeout=cfg.telegram_timeout,
                pool_timeout=cfg.telegram_timeout,
            )
        except RetryAfter as exc:
            wait = retry_seconds(exc)
            self.budget.hold(chat, wait)  # the chat commands' answers to that chat wait too
            self._retry(chat, batch, f"429 retry after {wait:g}s", wait)
        except ChatMigrated as exc:
            new = int(exc.new_chat_id)
            log.warning("telegram: chat %s is now %s; sending there (update the config)", chat, new)
            self._moved[chat] = new
            waiting = self._queues.pop(chat, deque())
            self._order.pop(chat, None)
            for d in (*batch, *waiting):
                d.chat_id = new
                self.enqueue(d)
            if self.on_migrate is not None:
                try:
                    self.on_migrate(chat, new)
                except Exception:
                    log.exception("telegram: could not follow chat %s to %s", chat, new)
        except Forbidden as exc:
            self._refused(chat, batch, f"{FORBIDDEN}{exc.message}")
        except InvalidToken as exc:
            self._fail(batch, f"token rejected: {type(exc).__name__}")
        except BadRequest as exc:
            self._bad_request(chat, batch, exc, interval, buttons, topic)
        except (TimedOut, NetworkError, TelegramError) as exc:
            failures = self._failures.get(chat, 0) + 1
            self._failures[chat] = failures
            wait = backoff(failures, cfg.backoff_initial, cfg.backoff_max)
            self._retry(chat, batch, f"{type(exc).__name__}: {exc.message}", wait)
        except Exception as exc:  # a bug must not lose the batch
            log.exception("telegram: unexpected error sending to %s", chat)
            self._retry(chat, batch, f"{type(exc).__name__}: {exc}", cfg.backoff_max)
        else:
            sent = True
            self.sent_messages += 1
            self._failures.pop(chat, None)
            self._single.discard(chat)
            self._hold(chat, self._loop.time() + interval)
            for d in batch:
                d.state = "sent"
                self.report(d, "sent")
        finally:
            self._inflight.discard(chat)
            self._forget(chat)
            self.budget.done(stamp, chat, sent=sent, alert=True)  # wakes the loop

    def _forget(self, chat: int) -> None:
        """Drop the failures kept for ``chat`` once nothing of it waits or is being sent."""
        if chat not in self._queues and chat not in self._inflight:
            self._failures.pop(chat, None)
            self._single.discard(chat)

    def _hold(self, chat: int, at: float) -> None:
        """``chat`` may next be sent to at loop time ``at``."""
        self._next_ok[chat] = at
        heapq.heappush(self._expiry, (at, chat))

    def _bad_request(
        self,
        chat: int,
        batch: list[Delivery],
        exc: BadRequest,
        interval: float,
        buttons: bool,
        topic: int | None = None,
    ) -> None:
        message = exc.message.lower()
        if topic is not None and any(word in message for word in _TOPIC_GONE):
            # a watch's topic deleted or closed (or, as Telegram's own bug has it, an old one
            # that bots can no longer reach): the alert matters, the topic does not
            log.warning(
                "telegram: chat %s refused forum topic %s (%s); its alerts go to the chat itself",
                chat,
                topic,
                exc.message,
            )
            for d in batch:
                d.general = True
            if self.on_topic_gone is not None:
                try:
                    self.on_topic_gone(chat, topic)
                except Exception:
                    log.exception("telegram: could not forget topic %s of chat %s", topic, chat)
            self._retry(chat, batch, f"topic refused: {exc.message}", 0.0, count=False)
            return
        if topic is None and "topic_closed" in message:
            # the forum's General topic closed: nowhere else to post in the chat, and its
            # admins may reopen it (or let the bot manage topics): kept and tried again
            failures = self._failures.get(chat, 0) + 1
            self._failures[chat] = failures
            wait = backoff(failures, self.settings.backoff_initial, self.settings.backoff_max)
            why = "the forum's General topic is closed (reopen it, or let the bot manage topics)"
            self._retry(chat, batch, f"{why}: {exc.message}", wait)
            return
        bad_html = "parse entities" in message or "can't find end" in message
        if buttons and not bad_html and ("button" in message or "markup" in message):
            # the alert matters, its buttons do not: again without them, with the hint line
            log.warning(
                "telegram: chat %s refused an alert's buttons (%s); sending it without", chat, exc
            )
            for d in batch:
                d.buttons = False
            self._retry(chat, batch, f"buttons refused: {exc.message}", 0.0, count=False)
            return
        if bad_html and not batch[0].plain and len(batch) > 1:
            # which alert's template is not valid HTML is not known: each goes by itself, and
            # only the one refused by itself is sent as plain text (the others keep their
            # formatting)
            log.warning(
                "telegram: chat %s refused the HTML of %d merged alerts (%s); sending them one "
                "by one",
                chat,
                len(batch),
                exc,
            )
            for d in batch:
                d.alone = True
            self._retry(chat, batch, f"merged message refused: {exc.message}", 0.0, count=False)
            return
        if bad_html and not batch[0].plain:
            log.warning("telegram: chat %s refused the HTML (%s); sending plain text", chat, exc)
            batch[0].plain = True
            self._retry(chat, batch, f"bad HTML: {exc.message}", interval, count=False)
            return
        if "too long" in message and len(batch) > 1:
            self._single.add(chat)  # not merged after all: one at a time until one goes out
            self._retry(chat, batch, f"merged message refused: {exc.message}", 0.0, count=False)
            return
        self._fail(batch, f"bad request: {exc.message}")

    def _retry(
        self, chat: int, batch: list[Delivery], error: str, wait: float, *, count: bool = True
    ) -> None:
        error = clip(error)
        now_wall = time.time()
        keep = []
        for d in batch:
            d.last_error = error
            if now_wall - d.created > self.settings.give_up_after:
                d.state = "failed"
                self.report(d, "failed", f"gave up: {error}")
            else:
                keep.append(d)
                # its real state: "pending", or "fell_back" once the fallback webhook has it
                self.report(d, d.state, error)
        if keep:
            self._requeue(chat, keep)
        self._hold(chat, self._loop.time() + wait)
        if count and (self._failures.get(chat, 0) <= 1):
            log.warning("telegram: chat %s: %s; retrying in %.1fs", chat, error, wait)

    def _refused(self, chat: int, batch: list[Delivery], error: str) -> None:
        """Telegram refuses ``chat`` itself (Forbidden): this message and what else waits
        for it fail, and ``on_forbidden`` is told."""
        waiting = self._queues.pop(chat, None)
        if waiting is not None:
            self._order.pop(chat, None)
            batch = [*batch, *waiting]
        error = clip(error)
        alerts = [d.alert for d in batch]
        told: Collection[str] = ()
        if self.on_forbidden is None:
            if len(self._forbidden) < 4096:  # a notifier without the chat side never takes them
                self._forbidden.append((chat, alerts, error))
        else:
            try:
                told = self.on_forbidden(chat, alerts, error)
            except Exception:
                log.exception("telegram: could not pause chat %s", chat)
        for d in batch:
            d.quiet = d.alert.id in told
        hint = FORBIDDEN_HINT if self.on_forbidden is not None else ""  # not a watch's alert
        self._fail([d for d in batch if not d.quiet], error, hint=hint)
        self._fail([d for d in batch if d.quiet], error, logged=True)

    def _fail(
        self, batch: list[Delivery], error: str, *, hint: str = "", logged: bool = False
    ) -> None:
        if not batch:
            return
        error = clip(error)
        if not logged:
            log.warning(
                "telegram: chat %s refused %s for good: %s%s",
                batch[0].chat_id,
                plural(len(batch), "alert"),
                error,
                hint,
            )
        for d in batch:
            d.state = "failed"
            d.last_error = error
            self.report(d, "failed", error)
