"""Telegram chat commands on python-telegram-bot's Application (long polling, manual lifecycle).

Every command goes through one handler: access control, then ``parse_command`` (which answers a
malformed command with what was wrong and the right form), then the command. Replies are plain
text, so nothing a user types can break their formatting. Nothing a user sends can crash the
bot: an unexpected error is logged and answered with an apology, and the state is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from telegram import (
    BotCommand,
    CallbackQuery,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from alertbot.backup import Backups
from alertbot.chat.commands import (
    COMMANDS,
    MAX_BATCH,
    Batch,
    CoinsError,
    CommandError,
    Digest,
    Edit,
    History,
    LevelsError,
    Listing,
    Mute,
    NoSymbolError,
    Price,
    Quiet,
    ShorthandError,
    Simple,
    SymbolError,
    TargetError,
    Unmute,
    Unwatch,
    Watch,
    Zone,
    format_percent,
    format_watch,
    help_text,
    parse_command,
    rearm_problem,
    repeat_problem,
    start_text,
    text_reply,
)
from alertbot.chat.watches import ChatSettings, WatchBook, watch_id
from alertbot.errors import ConditionError
from alertbot.feed.client import Feed
from alertbot.feed.prices import Failed, PriceLookup
from alertbot.feed.symbols import SymbolDirectory
from alertbot.hints import entities, hint, unmarked
from alertbot.notify.delivery import Delivery, clip
from alertbot.notify.notifier import Notifier, Sparklines
from alertbot.notify.render import (
    format_amount,
    format_time,
    metric_text,
    move_text,
    percent_text,
    thresholds,
    without_hint_line,
)
from alertbot.notify.settings import DeliverySettings
from alertbot.notify.telegram import (
    ALERT_MUTE,
    ALERT_SHOWN,
    ALERT_STOP,
    Budget,
    BudgetLimiter,
    watch_buttons,
)
from alertbot.rules.conditions import (
    PERCENT_METRICS,
    AllOf,
    AnyOf,
    Breaks,
    Condition,
    Cross,
    Level,
    Move,
    format_condition,
    format_duration,
    format_number,
    leaves,
    parse,
)
from alertbot.rules.engine import Engine, level_holds, metric_of
from alertbot.rules.ids import watch_number, watch_rule_id
from alertbot.rules.model import is_glob
from alertbot.store import HistoryRow, WatchRow
from alertbot.tasks import cancel_and_wait
from alertbot.text import plural
from alertbot.ticker import Ticker, percent
from alertbot.zones import UTC_NAME, load_zone, local_minute, zone_label

log = logging.getLogger("alertbot.chat")

#: a reply or note refused with 429 is sent again this many times, each after the wait asked
REPLY_RETRIES = 3
#: updates handled at once at most (python-telegram-bot's own number for concurrent updates);
#: one chat's wait for each other (ChatOrder), and take a place only once their turn comes
CONCURRENT_UPDATES = 256
#: python-telegram-bot's own bound on concurrent updates, made moot (see ChatOrder)
_NO_BOUND = 2**31 - 1

REFUSAL = (
    "Sorry, this alert bot is private: this chat is not on its list. "
    "Ask its operator to add chat id {chat} to ALERTBOT_ALLOWED_CHATS."
)
MUTE_BUTTON_S = 3600
#: the characters of a button press's answer Telegram takes at most
ANSWER_MAX = 200
#: the watches whose longer mute a /mute shortened, named in its answer at most
MUTES_SHOWN = 5
#: watches on one page of /list (each has a row of buttons: a keyboard this size stays usable)
LIST_PAGE = 20
#: characters of /watch lines in an /export block at most: with the answer's first lines, it
#: fits a message (split_text keeps each block whole), and so does the block sent back
EXPORT_BLOCK = 3500
#: a day (s): a digest counts the alerts of the one before it
DAY_S = 86_400
#: alerts to a /history page, and how much of a failed delivery's error each shows
HISTORY_PAGE = 20
HISTORY_ERROR_MAX = 80
#: characters of a /list page kept for its header and its "and N more" line
LIST_RESERVE = 120
#: a watch's line in /list is cut to this many characters (a /watch is 500 at most anyway)
LINE_MAX = 1000
#: the bytes of a button's callback data Telegram takes
BUTTON_DATA_MAX = 64
#: an admin's /list names this many of the rule files' rules, in this many characters at most
RULE_IDS_SHOWN = 20
RULE_IDS_CHARS = 400
#: a ticker at most this old (s) tells a new watch it is true right now: a carried symbol
#: has one every 1-2 s while it trades (the feed calls one quiet for 90 s stale)
CURRENT_S = 120
#: a new watch's price level this many times above or below the price now is pointed out
FAR = 10
#: the alerts a chat refused while it blocked the bot, named in its welcome-back note at most
MISSED_SHOWN = 5
#: the answer to an edited command
EDITED = (
    "Edited commands are not run: send the corrected one as a new message (what the first "
    "one did stays; /list shows this chat's watches)."
)
#: a number in millions in a condition as shown (``price > 1.5m``); not a move's window
_MILLIONS_RE = re.compile(r"(?<!\bin )(?<![\w.])([0-9]+(?:\.[0-9]+)?)m\b")
#: a watch a bot's message names: an alert's "[w3]", a new watch's "Id w3."
_NAMED_WATCH_RE = re.compile(r"(?:\[|\bId )(w[0-9]+)\b")
#: the watch a chat with none is shown to begin with
FIRST_WATCH = hint("/watch BTCUSDT > 70000")
#: the answer to a command that failed on our side (a bug: it is logged)
SORRY = "Sorry, something went wrong on our side; nothing was changed."
#: Telegram's words in a 403 Forbidden that says the chat no longer has the bot (blocked by
#: the user, a deleted account, removed from the group); another 403 (e.g. "not enough rights
#: to send text messages": the bot is there, muted) does not pause the chat
GONE = ("bot was blocked", "bot was kicked", "user is deactivated", "bot is not a member")


def gone(exc: TelegramError) -> bool:
    """Whether Telegram refused a call as Forbidden because the chat no longer has the bot."""
    text = exc.message.lower()
    return isinstance(exc, Forbidden) and any(words in text for words in GONE)


def _in_chat(member: ChatMember) -> bool | None:
    """The bot's own status in a chat (a my_chat_member update): True, it is in it (a member
    or an administrator); False, it is out (it left or was removed or banned, or the user
    blocked it); None, restricted (whether it may send is for the next message to tell)."""
    if member.status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER):
        return True
    if member.status in (ChatMember.LEFT, ChatMember.BANNED):
        return False
    return None


def _topic(message: Message) -> int | None:
    """The forum topic a message was sent in; None outside one (a reply in a forum's General
    topic carries a ``message_thread_id`` too, of its reply chain: not a topic)."""
    return message.message_thread_id if message.is_topic_message else None


def _text_of(message: Message | None) -> str | None:
    """What a user wrote: a message's text, or a picture's caption."""
    if message is None:
        return None
    return message.text if message.text is not None else message.caption


#: at most this much of a name is kept as who made a watch
MADE_BY_MAX = 40


def _made_by(command: object, message: Message) -> object:
    """A /watch (or a message of them) with who sent it: ``@username``, else the first name
    (a group's /list says whose each watch is); other commands as they are."""
    user = message.from_user
    if user is None or not isinstance(command, Watch | WatchBatch):
        return command
    name = _cut(f"@{user.username}" if user.username else user.first_name, MADE_BY_MAX)
    if isinstance(command, Watch):
        return dataclasses.replace(command, made_by=name)
    watches = tuple(dataclasses.replace(w, made_by=name) for w in command.watches)
    return dataclasses.replace(command, watches=watches)


def _remove_markup(wid: str) -> InlineKeyboardMarkup:
    """The button under a new watch's answer: Remove, the Stop of its alerts' buttons."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(f"Remove {wid}", callback_data=f"{ALERT_STOP}:{wid}")]]
    )


def _short_time(seconds: float, now: float, zone: dt.tzinfo | None = None) -> str:
    """A time as a button shows it: ``14:05 UTC``, with the day when not today's
    (``Nov 24 14:05 UTC``) and the year when not this year's (``Nov 24 2027 14:05 UTC``: a
    mute may last 366 days, and without it one ending next year read as ending this year);
    in ``zone`` (the chat's /timezone), named as it names itself (``14:05 CET``)."""
    zone = zone or dt.UTC
    at = dt.datetime.fromtimestamp(seconds, tz=zone)
    today = dt.datetime.fromtimestamp(now, tz=zone).date()
    if at.date() == today:
        day = ""
    elif at.year == today.year:
        day = f"{at:%b} {at.day} "
    else:
        day = f"{at:%b} {at.day} {at.year} "
    return f"{day}{at:%H:%M} {zone_label(at)}"


def _link_rows(message: object) -> list[tuple[InlineKeyboardButton, ...]]:
    """The rows of links (the Chart button) under a message: they stay when the buttons
    under it change."""
    markup = message.reply_markup if isinstance(message, Message) else None
    if markup is None:
        return []
    return [tuple(row) for row in markup.inline_keyboard if row and all(b.url for b in row)]


def _option_words(w: Watch) -> str:
    """The options a /watch gave, as typed again: ``cooldown 1h rearm 0.5% once for 7d``."""
    words = []
    if w.cooldown_ms is not None:
        words.append(f"cooldown {format_duration(w.cooldown_ms)}")
    if w.rearm is not None:
        words.append(f"rearm {format_percent(w.rearm)}")
    if w.once:
        words.append("once")
    if w.for_ms:
        words.append(f"for {format_duration(w.for_ms)}")
    if w.repeat_ms:
        words.append(f"repeat {format_duration(w.repeat_ms)}")
    return " ".join(words)


def _million(condition: str) -> str | None:
    """For a condition (as shown) with a number in millions, ``1m``: that it is not a minute.
    The language reads m after a sign as a million, and the answer shows it next to a
    cooldown in minutes (``cooldown 5m``): one who meant a minute sees how to write it. None:
    no such number (``in 1m``, a move's window, is a minute)."""
    found = _MILLIONS_RE.search(condition)
    if found is None:
        return None
    full = format(Decimal(found.group(1)).scaleb(6), "f")
    return (
        f"{found.group()} here is {full} (m: million), not minutes: a time is written after "
        f"in, cooldown or for ({hint('rises 5% in 1m')}, {hint('cooldown 1m')})"
    )


def _shown(text: str) -> dict[str, Any]:
    """The text and entities that send ``text`` (plain text) with its hints as code."""
    plain, spans = entities(text)
    return {
        "text": plain,
        "entities": [MessageEntity(MessageEntity.CODE, o, n) for o, n in spans] or None,
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_text(text: str, limit: int) -> list[str]:
    """``text`` as messages of at most ``limit`` characters each, cut between paragraphs
    (blank-line apart: an ``/export`` block, a ``/price`` symbol's, stays in one message) where
    they fit, else between lines (a line longer than ``limit`` is cut within itself); none of
    them blank."""
    pieces = []
    for paragraph in text.split("\n\n"):
        if len(paragraph) <= limit:
            pieces.append(paragraph)
            continue
        chunks = []  # its lines, a line longer than the limit in pieces
        for line in paragraph.split("\n"):
            chunks += [line[i : i + limit] for i in range(0, len(line), limit)] or [""]
        pieces += _packed(chunks, "\n", limit)
    return [p for p in _packed(pieces, "\n\n", limit) if p.strip()]


def _packed(pieces: list[str], joint: str, limit: int) -> list[str]:
    """``pieces`` (each at most ``limit`` long) joined by ``joint``, as few at a time as fill
    ``limit``, in order."""
    parts: list[str] = []
    for piece in pieces:
        if parts and len(parts[-1]) + len(joint) + len(piece) <= limit:
            parts[-1] += joint + piece
        else:
            parts.append(piece)
    return parts


def _duration(ms: int) -> str:
    try:
        return format_duration(ms)
    except ValueError:
        return f"{ms / 1000:g}s"


def _thresholds(rows: list[WatchRow], symbol: str, metric: str) -> tuple[float, ...]:
    """The numbers the watches ``rows`` of ``symbol`` compare ``metric`` with: a percentage
    shown near one gets the decimals that put it on its side (as in their alerts)."""
    return tuple(
        x
        for r in rows
        if fnmatchcase(symbol, r.symbol)
        for x in thresholds(parse(r.condition), metric)
    )


@functools.lru_cache(maxsize=4096)
def _condition(text: str) -> Condition | None:
    """A watch's condition (as stored) parsed, once per text: ``/list`` reads each watch's to
    say where it stands, on every page. None: it no longer parses."""
    try:
        return parse(text)
    except ConditionError:
        return None


def _distance(level: float, value: float) -> str:
    """How far ``value`` is from ``level``, in percent of ``value``: ``2.94%``."""
    away = abs(level - value) / value * 100
    return "under 0.01%" if away < 0.01 else f"{away:.2f}%"


def _standing(r: WatchRow, t: Ticker) -> tuple[str, str] | None:
    """Where watch ``r`` of one level or crossing stands at ``t``: its metric's value as
    shown (``price 68000.5``) and its state: ``true``, ``already above`` (a crossing above the
    value is past: it fires when it comes back and crosses again), ``2.94% to go`` (a price,
    in percent of it), or "" (a percentage's points, a volume: the value alone). None for
    another condition."""
    cond = _condition(r.condition)
    if not isinstance(cond, Level | Cross):
        return None
    value = metric_of(cond.metric, t)
    # the price as Binance sent it, as /price shows it
    shown = f"price {t.price_text}" if cond.metric == "price" else metric_text(cond, value)
    if value != value:  # NaN: a percentage of a 0 open
        return shown, ""
    if isinstance(cond, Level) and level_holds(cond, t):
        return shown, "true"
    if isinstance(cond, Cross) and cond.direction is not None:
        beyond = value >= cond.value if cond.direction == "above" else value <= cond.value
        if beyond:  # it fires on a crossing back: the price must first return
            return shown, f"already {cond.direction}"
    if cond.metric != "price" or not value > 0:
        return shown, ""
    return shown, f"{_distance(cond.value, value)} to go"


def _levels(
    rows: list[WatchRow], t: Ticker, moved: Callable[[WatchRow], str | None] = lambda r: None
) -> list[str]:
    """How far each of ``rows`` (watches of ``t``'s symbol) that is a price level or crossing
    is at ``t``, a line each by id (``  w1 price > 70000: 2.94% to go``), and where a move's
    stands (``moved``: ``  w3 rises 5% in 1h: up 1.20% from 67200``): /price and the daily
    digest show them under the symbol."""
    lines = []
    for r in sorted(rows, key=lambda r: r.id):
        standing = _standing(r, t)
        if standing is not None and standing[0].startswith("price ") and standing[1]:
            lines.append(f"  {watch_id(r)} {r.condition}: {standing[1]}")
        elif standing is None and (move := moved(r)):
            lines.append(f"  {watch_id(r)} {r.condition}: {move}")
    return lines


def _span(seconds: float) -> str:
    """A time span for the log: ``4.2s``, ``2m 5s``, ``3h 0m 10s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s"


def _period(seconds: float) -> str:
    """A period as an answer names it: ``7 days``, ``12 hours``, ``90 minutes``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return plural(int(seconds // size), unit, f"{unit}s")
    return plural(round(seconds), "second", "seconds")


#: a minute (ms): /export rounds a ``for`` up to it
MINUTE_MS = 60_000


def _watch_of(row: WatchRow, now_ms: float) -> Watch:
    """The /watch command that makes ``row`` again (its ``for``: the time left, rounded up
    to the minute)."""
    left = None
    if row.expires_ms is not None:
        left = max(MINUTE_MS, -(-int(row.expires_ms - now_ms) // MINUTE_MS) * MINUTE_MS)
    return Watch(
        symbol=row.symbol,
        condition=parse(row.condition),
        condition_text=row.condition,
        cooldown_ms=row.cooldown_ms,
        rearm=row.rearm or None,
        once=row.once,
        for_ms=left,
        note=row.note,
        repeat_ms=row.repeat_ms,
    )


def watch_command(row: WatchRow, now_ms: float) -> str:
    """The /watch command that makes ``row`` again (/export, /unwatch's undo, the last alert
    of a ``once`` watch)."""
    return format_watch(_watch_of(row, now_ms))


def _blocks(lines: list[str]) -> list[list[str]]:
    """/watch lines in blocks a message can take: MAX_BATCH lines, EXPORT_BLOCK characters at
    most."""
    blocks: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if blocks[-1] and (len(blocks[-1]) == MAX_BATCH or size + len(line) > EXPORT_BLOCK):
            blocks.append([])
            size = 0
        blocks[-1].append(line)
        size += len(line) + 1
    return blocks


class _NotOurs(Exception):
    """A message that is no command for this bot (another bot's, in a group)."""


@dataclasses.dataclass(frozen=True, slots=True)
class WatchBatch:
    """The parsed watches of a message of /watch lines (commands.Batch)."""

    watches: tuple[Watch, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Outage:
    """A polling outage that ended: its start and end (wall clock, s), the polls that failed,
    and the last error's kind (its class: ``NetworkError``, ``TimedOut``, ``Conflict``...) and
    text (secrets redacted)."""

    since: float
    ended: float
    failed: int
    error: str | None
    error_text: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class PollingHealth:
    """Polling for commands, for ``/healthz``, the metrics and an admin's ``/status``.

    ``state``: ``starting`` (no poll answered yet, none failing), ``ok`` or ``failing``;
    ``since`` (wall clock, s) and ``failing_for`` (s) while failing; ``failed``: the polls
    failed in the outage under way (or the row of them too short to be one yet); ``total``:
    every failed poll (and failed start of polling) since the start; ``last_answer_age``: s
    since a poll was last answered (None: never); ``error``, ``error_text``: the outage's last
    error (None: polls that went without an answer and without an error)."""

    state: str
    since: float | None
    failing_for: float | None
    failed: int
    total: int
    last_answer_age: float | None
    error: str | None
    error_text: str | None
    last_outage: Outage | None


def _failed(polls: int, error: str | None) -> str:
    """The polls of an outage, as an admin's /status names them."""
    if not polls:
        return "no poll answered"  # PTB's polling loop ended, or no poll was sent
    failed = "1 poll failed" if polls == 1 else f"{polls} polls failed"
    return failed + (f"; the last: {error}" if error else "")


class PollFailures:
    """Failed polls for commands in a row, logged as an operator wants them through an outage:
    one warning when polling starts failing, a reminder every ``reminder`` seconds while it
    goes on (0: none), and one info line when a poll works again, with how long polling was
    down and how many polls failed. PTB tries every few seconds (at most 30 s apart): a line
    per failed poll buried the log for as long as Telegram was unreachable.

    A poll that times out (Telegram takes the request, or drops the packets, and never answers)
    counts too, though PTB never reports it (it tries again at once): the warning comes once no
    poll has been answered for ``silence`` seconds, since one poll left unanswered can be a
    connection a NAT or proxy dropped during the long poll, and the next one works.

    It also keeps what ``/healthz`` says of polling (``outage``): failing from the first failed
    poll of a row (a row of timeouts: once it has lasted ``silence``), and failing too once no
    poll has been answered for ``silence`` seconds without any failing (PTB's polling loop
    ended some other way than on a revoked token, which _PollRequest reports)."""

    def __init__(
        self, reminder: float, silence: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reminder = reminder
        self.silence = silence
        self.clock = clock
        self.failed = 0
        self.total = 0  # every failed poll since the start (the metric's counter)
        self.last_error: TelegramError | None = None  # of the outage under way (or the last)
        self.last_outage: tuple[float, float, int, TelegramError | None] | None = None
        self._since: float | None = None  # the first failure of the outage under way
        self._hard = False  # a failure of the row under way was not a timeout
        self._warned = False  # the outage under way was logged
        self._told = 0.0  # when it was last logged
        self._conflict = False  # the last logged failure was a second poller's
        self._rejected = False  # the token was rejected (polling has ended), logged
        self._begun: float | None = None  # when polling was first tried
        self._answered: float | None = None  # when a poll was last answered

    def begin(self) -> None:
        """Polling is being started (the first time counts: a start that fails is a failure)."""
        if self._begun is None:
            self._begun = self.clock()

    def failure(
        self, exc: TelegramError, sent: float | None = None, *, log_it: bool = True
    ) -> None:
        """A failed poll; ``sent``: when it was sent (a timed-out poll: polling has had no
        answer since the first of a row of them was sent). ``log_it``: False for a failed
        start of polling, which its caller logs."""
        now = self.clock()
        self.failed += 1
        self.total += 1
        self.last_error = exc
        if self._since is None:
            self._since = now if sent is None else sent
            self._hard = False
        if not isinstance(exc, TimedOut):
            self._hard = True
        if not log_it:
            return
        if isinstance(exc, InvalidToken):
            if self._rejected:
                return  # polling ended on it: said once (this is the stop's last poll)
            self._warned, self._told, self._rejected = True, now, True
            log.error(
                "chat: Telegram rejected the bot token while polling for commands (%s): "
                "polling has stopped; chat commands are off until a restart with a valid token",
                clip(str(exc)),
            )
            return
        conflict = isinstance(exc, Conflict)
        if not self._warned or conflict != self._conflict:
            if isinstance(exc, TimedOut) and not self._warned:
                if now - self._since < self.silence:
                    return
                self._warned, self._told = True, now
                log.warning(
                    "chat: polling for commands failed (no answer from Telegram for %s: %s "
                    "timed out); trying again",
                    _span(now - self._since),
                    plural(self.failed, "poll"),
                )
                return
            self._warned, self._told, self._conflict = True, now, conflict
            if conflict:
                log.error(
                    "chat: another process is polling for this bot token's updates (%s): each "
                    "command reaches one of the two; run one bot per token",
                    clip(exc.message),
                )
            else:
                log.warning("chat: polling for commands failed (%s); trying again", clip(str(exc)))
        elif self.reminder and now - self._told >= self.reminder:
            self._told = now
            log.warning(
                "chat: polling for commands still failing after %s (%s failed; the last: %s)",
                _span(now - self._since),
                plural(self.failed, "poll"),
                clip(str(exc)),
            )

    def outage(self, now: float | None = None) -> float | None:
        """Since when (on ``clock``) polling has been failing; None: it is not."""
        now = self.clock() if now is None else now
        if self._since is not None and (self._hard or now - self._since >= self.silence):
            return self._since
        last = self._answered if self._answered is not None else self._begun
        if last is not None and now - last >= self.silence:
            return last
        return None

    def answered_age(self) -> float | None:
        return None if self._answered is None else self.clock() - self._answered

    def success(self) -> None:
        now = self.clock()
        since = self.outage(now)
        self._answered = now
        if since is not None:
            error = self.last_error if self._since is not None else None
            self.last_outage = (since, now, self.failed, error)
        if self._since is None:
            return
        if self._warned:  # else a poll or two timed out, never logged: nor is their end
            log.info(
                "chat: polling for commands works again after %s (%s failed)",
                _span(now - self._since),
                plural(self.failed, "poll"),
            )
        self._since, self._warned, self._hard, self.failed = None, False, False, 0
        self._rejected = False


def _description(payload: bytes, status: int) -> str:
    """The Bot API's description of an error (its JSON answer's), as PTB's error has it."""
    try:
        return str(json.loads(payload)["description"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


def _retry_after(payload: bytes) -> int:
    """The seconds a 429's JSON answer asks to wait (``parameters.retry_after``; 1 if none)."""
    try:
        return int(json.loads(payload)["parameters"]["retry_after"])
    except (ValueError, KeyError, TypeError):
        return 1


class _PollRequest(HTTPXRequest):
    """The getUpdates requests' HTTP client, which tells ``polls`` of each poll answered with
    success, of each that timed out, of each refused with 429 and of a token rejected: PTB
    reports only the other failed polls (to ``error_callback``), tries a timed-out one again
    at once and a 429 after its retry_after without a word (its network_retry_loop catches
    TimedOut and RetryAfter before it calls the callback), and ends polling for good on a
    rejected token (a token revoked while the bot runs)."""

    def __init__(self, polls: PollFailures, **kw: Any) -> None:
        super().__init__(**kw)
        self.polls = polls

    async def do_request(self, *args: Any, **kw: Any) -> tuple[int, bytes]:
        sent = self.polls.clock()
        try:
            status, payload = await super().do_request(*args, **kw)
        except TimedOut as exc:
            self.polls.failure(exc, sent)
            raise
        if 200 <= status < 300:
            self.polls.success()
        elif status in (401, 404):  # what PTB raises InvalidToken for
            self.polls.failure(InvalidToken(_description(payload, status)))
        elif status == 429:  # PTB waits retry_after and polls again, error_callback untold
            self.polls.failure(RetryAfter(_retry_after(payload)))
        return status, payload


def _order_keys(update: object) -> tuple[int, ...]:
    """The chats whose updates ``update`` is handled in turn with; none for an update with no
    chat. A group's move to a supergroup (a service message in each, "migrated to" and
    "migrated from") is in turn with both: the supergroup's commands after it find the
    group's watches moved, and the two moves do not run into each other."""
    if not isinstance(update, Update):
        return ()
    chat = update.effective_chat
    if chat is None:
        return ()
    message = update.effective_message
    if message is not None and message.migrate_to_chat_id is not None:
        return chat.id, int(message.migrate_to_chat_id)
    if message is not None and message.migrate_from_chat_id is not None:
        return int(message.migrate_from_chat_id), chat.id
    return (chat.id,)


class ChatOrder(BaseUpdateProcessor):
    """Updates handled concurrently, each chat's one at a time in the order Telegram gave
    them: a command that waits (a /price asking Binance, a write while SQLite is locked, a
    button press's write) holds up its own chat's later commands, whose answers so come in
    the order of the commands (a later one's came first, as if the first had been ignored),
    and no other chat's (handled one at a time, every chat waited).

    The wait is as long as what the command waits for, which is bounded: a lookup by the
    feed's price_timeout (3 s), a write by SQLite's busy timeout, a reply by the rate limiter's
    retries. An update waiting for its turn holds none of the CONCURRENT_UPDATES places
    (ours, taken once the turn comes): one chat's flood of commands behind a slow one would
    otherwise take them all, and hold up every chat."""

    def __init__(self, max_concurrent_updates: int = CONCURRENT_UPDATES) -> None:
        # the base class takes a place of its semaphore before do_process_update, so before
        # the chat's turn: unbounded there, the places are ours, taken after the turn
        super().__init__(_NO_BOUND)
        self._places = asyncio.BoundedSemaphore(max_concurrent_updates)
        #: a chat -> done once its latest update so far has been handled
        self._last: dict[int, asyncio.Future[None]] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """The chat's turn, then one of the places, then the update."""
        await self.in_turn(_order_keys(update), coroutine)

    async def in_turn(self, keys: tuple[int, ...], coroutine: Awaitable[Any]) -> None:
        """``coroutine`` in turn with the updates of the chats ``keys`` (work that is no
        update also: a group's move to a supergroup found by a delivery), then one of the
        places; at once with no keys."""
        if not keys:
            async with self._places:
                await coroutine
            return
        # taken in one step, in the order the updates came: no two wait for each other
        before = {f for key in keys if (f := self._last.get(key)) is not None}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._last[key] = done
        try:
            if before:
                # asyncio.wait: this update cancelled does not cancel those before
                await asyncio.wait(before)
            async with self._places:
                await coroutine
        except BaseException:
            if inspect.iscoroutine(coroutine) and inspect.getcoroutinestate(coroutine) == (
                inspect.CORO_CREATED
            ):
                coroutine.close()  # cancelled before its turn or its place: no "never awaited"
            raise
        finally:
            done.set_result(None)
            for key in keys:
                if self._last.get(key) is done:
                    del self._last[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free: Application.stop has waited for every update."""


def _cooldown(ms: int) -> str:
    return f"cooldown {_duration(ms)}" if ms else "no cooldown"


class ChatBot:
    def __init__(
        self,
        delivery: DeliverySettings,
        settings: ChatSettings,
        book: WatchBook,
        engine: Engine,
        feed: Feed,
        directory: SymbolDirectory,
        notifier: Notifier,
        sparklines: Sparklines | None = None,
        *,
        prices: PriceLookup | None = None,
        poll_timeout: float = 30.0,
        poll_interval: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``poll_timeout``: how long a getUpdates long poll waits for updates (seconds).
        ``poll_interval``: the pause between polls; python-telegram-bot waits 1.5 times it
        after a failed poll (1 s when it is 0), then 1.5 times longer after each failure in a
        row, at most 30 s. Both are shrunk by tests. ``prices``: where /price asks for a symbol
        the engine has no ticker of (None: it does not ask)."""
        self.delivery = delivery
        self.settings = settings
        self.book = book
        self.engine = engine
        self.feed = feed
        self.directory = directory
        self.notifier = notifier
        self.sparklines = sparklines
        self.prices = prices
        self.poll_timeout = poll_timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self.app: Application[Any, Any, Any, Any, Any, Any] | None = None
        #: each chat's updates in turn (and what the deliveries find out about a chat)
        self._order = ChatOrder()
        self.username: str | None = None
        #: told (chat, why) when a chat no longer has the bot: a note or an answer refused
        #: with a 403 that says so (:func:`gone`), or Telegram's word that it blocked or
        #: removed the bot (a my_chat_member update): its watches pause (App._chat_refused)
        self.on_gone: Callable[[int, str], object] | None = None
        #: the scheduled copies of the database (ALERTBOT_BACKUP_DIR), for an admin's /status
        self.backups: Backups | None = None
        self._refused: set[int] = set()
        #: /price lookups of Binance under way: the stop gives them up (their commands go
        #: unanswered) rather than wait up to the feed's price_timeout
        self._lookups: set[asyncio.Task[Ticker | Failed]] = set()
        self._stopping = False
        # two polls in a row without an answer: see PollFailures
        self.polls = PollFailures(settings.poll_reminder, 2 * (poll_timeout + settings.poll_margin))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start polling for commands; a failed start (Telegram unreachable at start-up, a
        rejected token) is raised to the caller, which logs it, and counts as a failed poll."""
        self.polls.begin()
        try:
            await self._start()
        except TelegramError as exc:
            self.polls.failure(exc, log_it=False)
            raise

    async def _start(self) -> None:
        cfg = self.delivery
        assert cfg.telegram_token is not None
        api = cfg.telegram_api_url
        app = (
            ApplicationBuilder()
            .token(cfg.telegram_token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .request(HTTPXRequest(connection_pool_size=16, read_timeout=cfg.telegram_timeout))
            # PTB adds the long poll's timeout to this read timeout itself
            .get_updates_request(_PollRequest(self.polls, read_timeout=self.settings.poll_margin))
            # replies and notes within Telegram's limits, in one budget with the alerts (the
            # limits are the token's), and a reply that gets a 429 anyway (a user sending
            # commands fast) sent again after the wait, not lost
            .rate_limiter(BudgetLimiter(self._budget(), max_retries=REPLY_RETRIES))
            # each chat's updates in turn, the chats' side by side: see ChatOrder
            .concurrent_updates(self._order)
            .build()
        )
        # a text starting with "/" that Telegram marks no command in is answered too: one
        # running into a letter ("/watch币安人生USDT", as Chinese is written) is not marked
        # and one in a picture's caption (a chart sent with "/watch BTCUSDT > 70000")
        commands = filters.COMMAND | filters.Regex(r"^/") | filters.CaptionRegex(r"^/")
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & commands, self.on_command))
        app.add_handler(
            MessageHandler(filters.UpdateType.EDITED_MESSAGE & commands, self.on_edited)
        )
        text = filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & filters.TEXT & ~commands
        app.add_handler(MessageHandler(text, self.on_text))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.on_migrate))
        topics = filters.StatusUpdate.FORUM_TOPIC_CREATED | filters.StatusUpdate.FORUM_TOPIC_EDITED
        app.add_handler(MessageHandler(topics, self.on_topic))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(ChatMemberHandler(self.on_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self.on_error)
        try:
            await app.initialize()
        except BaseException:
            # PTB opens its HTTP clients before getMe and leaves them open when getMe fails:
            # a connection pool leaked per failed start (``stop`` knows nothing of this app)
            await app.bot.shutdown()
            raise
        self.app = app
        self.username = app.bot.username
        try:
            await app.bot.set_my_commands(
                [BotCommand(name, description) for name, (_, description, _) in COMMANDS.items()]
            )
        except TelegramError as exc:
            log.warning("chat: could not register the command menu: %s", clip(str(exc)))
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(
            # a timedelta, which python-telegram-bot sends as a whole number of seconds when it
            # is one: int() made a timeout under 1 s 0, a poll that returns at once, over and over
            timeout=dt.timedelta(seconds=self.poll_timeout),
            poll_interval=self.poll_interval,
            # my_chat_member: the bot's own status in a chat (blocked, removed, added back)
            allowed_updates=["message", "edited_message", "callback_query", "my_chat_member"],
            drop_pending_updates=False,
            error_callback=self._polling_failed,
        )
        log.info("chat: @%s is listening for commands", self.username)

    def polling(self) -> PollingHealth:
        """How polling for commands goes (see PollFailures), times on ``clock``'s wall clock."""
        polls = self.polls
        mono = polls.clock()
        wall = self.clock()
        since = polls.outage(mono)
        answered = polls.answered_age()
        last: Outage | None = None
        if polls.last_outage is not None:
            start, end, failed, why = polls.last_outage
            last = Outage(wall - (mono - start), wall - (mono - end), failed, *self._error(why))
        state = "failing" if since is not None else "starting" if answered is None else "ok"
        error, error_text = self._error(polls.last_error if polls.failed else None)
        return PollingHealth(
            state=state,
            since=None if since is None else wall - (mono - since),
            failing_for=None if since is None else mono - since,
            failed=polls.failed,
            total=polls.total,
            last_answer_age=answered,
            error=error,
            error_text=error_text,
            last_outage=last,
        )

    def _error(self, exc: TelegramError | None) -> tuple[str | None, str | None]:
        """An error's kind (its class) and text, cut short, the secrets redacted (PTB's
        InvalidToken quotes the token)."""
        if exc is None:
            return None, None
        text = str(exc)
        for secret in self.delivery.secrets():
            text = text.replace(secret, "[redacted]")
        return type(exc).__name__, clip(text)

    def _budget(self) -> Budget:
        """The alerts' budget of messages (one per token); a budget of its own without it."""
        sender = self.notifier.telegram
        if sender is not None:
            return sender.budget
        return Budget(self.delivery, asyncio.get_running_loop().time)

    async def stop(self) -> None:
        app = self.app
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            try:
                await app.updater.stop()
            except TelegramError as exc:
                # the polling loop ended on it (a revoked token), logged then; re-raised here,
                # it ended the whole stop: the outbox was not drained, nor the state saved
                log.debug("chat: polling had stopped already (%s)", clip(str(exc)))
        self._stopping = True
        await cancel_and_wait(*self._lookups)
        if app.running:
            await app.stop()
        await app.shutdown()
        self.app = None

    async def expire(self) -> None:
        """Remove watches whose time is over, with a note to their chats (a scheduled job)."""
        for row in await self.book.expire():
            if row.chat_id in self.book.paused:
                continue  # it refuses messages: a note would only spend a call
            await self.tell(
                row.chat_id,
                f"Watch {watch_id(row)} ({row.symbol} {row.condition}) has run its time "
                "and was removed.",
            )

    async def digest(self, now: float) -> None:
        """Send the daily digest to every chat whose minute it is at ``now`` (wall clock, s) in
        its time zone (a job run every minute). A minute a change to summer time skips is sent
        at the first minute after it; one the change back repeats, once."""
        for chat, minute in list(self.book.digests.items()):
            if chat in self.book.paused:
                continue
            zone = self._zone(chat) or dt.UTC
            (day_before, before), (day, at) = local_minute(now - 60, zone), local_minute(now, zone)
            due = before < minute <= at if day == day_before else minute <= at or minute > before
            if due and self.book.digests_sent.get(chat) != (day, minute):
                try:
                    await self.book.digest_sent(chat, day, minute)
                except Exception as exc:  # sent all the same: kept in memory, as it was
                    log.warning("chat %s: could not write its digest's sending: %s", chat, exc)
                await self.tell(chat, self.digest_text(chat, await self._fired_since(chat, now)))

    def _shorthand(self, exc: ShorthandError) -> CommandError:
        """``/watch BTC 70000`` (``+5%``) answered with the condition to write from the
        symbol's price now, when the feed has a current one; as parsed otherwise."""
        t = self._fresh(self._resolve(exc.symbol))
        if t is None or not t.close > 0:
            return exc
        return exc.with_price(t.close, t.price_text)

    def _symbol_target(self, chat: int, exc: TargetError) -> CommandError:
        """``/unwatch BTCUSDT`` (``btc`` too: its USDT contract): the command for this chat's
        watches of the symbol, in the order they were made; not a symbol: as typed."""
        symbol = exc.symbol
        if symbol is None:
            return exc
        rows = sorted(
            (r for r in self.book.of_chat(chat) if r.symbol in (symbol, f"{symbol}USDT")),
            key=lambda r: r.id,
        )
        if rows and all(r.symbol != symbol for r in rows):
            symbol = rows[0].symbol
        return exc.naming(symbol, [(watch_id(r), r.condition) for r in rows])

    def _zone_name(self, chat: int) -> str:
        """``chat``'s /timezone, else the bot's (ALERTBOT_TIMEZONE)."""
        return self.book.zones.get(chat, self.delivery.timezone)

    def _zone(self, chat: int) -> dt.tzinfo | None:
        """``chat``'s time zone (:meth:`_zone_name`); None: UTC."""
        name = self._zone_name(chat)
        return None if name == UTC_NAME else load_zone(name)

    def _at(self, chat: int, ms: float) -> str:
        """A time (ms) as ``chat``'s answers show it: in its /timezone."""
        return format_time(int(ms), self._zone(chat))

    def _clock(self, chat: int) -> str:
        """``chat``'s digest time and its zone: ``08:30 UTC``, ``08:30 Europe/Berlin``."""
        hh, mm = divmod(self.book.digests.get(chat, 0), 60)
        return f"{hh:02d}:{mm:02d} {self._zone_name(chat)}"

    async def timezone(self, chat: int, zone: str | None) -> str:
        """``/timezone``: set ``chat``'s zone (``UTC``: back to UTC); None: say which it is."""
        default = self.delivery.timezone
        if zone is not None:
            # UTC is kept as a choice when the bot's zone is another
            await self.book.set_zone(chat, None if zone == UTC_NAME == default else zone)
        name = self._zone_name(chat)
        own = chat in self.book.zones
        now = self._at(chat, self.clock() * 1000)
        if zone is None:
            whose = " (the bot's)" if not own and name != UTC_NAME else ""
            text = f"Times here are in {name}{whose}: it is {now}."
        else:
            text = f"Times here are in {name} now: it is {now}."
        if chat in self.book.digests:
            text += f" Your daily digest comes at {self._clock(chat)}."
        if name == UTC_NAME or (zone is None and not own):
            text += (
                f" For yours: {hint('/timezone Europe/Berlin')}, a city "
                f"({hint('/timezone new york')}) or an offset ({hint('/timezone UTC+8')})."
            )
        elif zone is None:
            text += f" Back to UTC: {hint('/timezone UTC')}."
        return text

    def _quiet_hours(self, chat: int) -> str | None:
        """``chat``'s quiet hours as answers show them: ``23:00-07:00 CET``; None: none."""
        window = self.book.quiet.get(chat)
        if window is None:
            return None
        (sh, sm), (eh, em) = divmod(window[0], 60), divmod(window[1], 60)
        zone = zone_label(dt.datetime.fromtimestamp(self.clock(), self._zone(chat) or dt.UTC))
        return f"{sh:02d}:{sm:02d}-{eh:02d}:{em:02d} {zone}"

    async def quiet(self, chat: int, command: Quiet) -> str:
        """``/quiet``: set ``chat``'s quiet hours, end them (off), or say them (alone)."""
        if not command.show:
            await self.book.set_quiet(chat, command.window)
        hours = self._quiet_hours(chat)
        if hours is None:
            text = "No quiet hours here: alerts come with a sound at any time."
            if command.show:
                text += (
                    f" For alerts without one at night: {hint('/quiet 23:00-07:00')} "
                    "(in this chat's time zone, /timezone)."
                )
            return text
        now = " It is quiet now." if self.notifier.silent(chat) else ""
        return (
            f"Quiet hours {hours}: alerts and notes then come without a sound (none is held "
            f"back or lost).{now} End them with {hint('/quiet off')}."
        )

    async def _fired_since(self, chat: int, now: float) -> int | None:
        """How many alerts were sent to ``chat`` in the day before ``now`` (wall clock, s), for
        its digest; None: not known (the database kept less, or failed)."""
        retention = self.delivery.alert_retention
        if 0 < retention < DAY_S:
            return None
        try:
            total, _ = await self.book.history(chat, since=int((now - DAY_S) * 1000), limit=0)
        except Exception as exc:
            log.warning("chat %s: its digest's count of alerts could not be read: %s", chat, exc)
            return None
        return total

    def digest_text(self, chat: int, fired: int | None = None) -> str:
        """The daily digest: each watched symbol's price, change and sparkline, how far its
        levels are; ``fired``: how many alerts the chat had in the last day."""
        by_symbol: dict[str, list[WatchRow]] = {}
        for r in self.book.of_chat(chat):
            by_symbol.setdefault(r.symbol, []).append(r)
        symbols = sorted(by_symbol)
        if not symbols:
            return f"Daily digest: this chat watches nothing yet. {FIRST_WATCH}"
        lines = ["Daily digest:"]
        for symbol in symbols:
            if is_glob(symbol):
                continue
            t = self.engine.last_ticker(symbol)
            if t is None:
                lines.append(f"{symbol}: no price yet")
                continue
            spark = self.sparklines.of(symbol, t.close) if self.sparklines else ""
            lines.append(f"{symbol} {t.price_text} ({self._change(chat, t)}) {spark}".rstrip())
            lines += _levels(by_symbol[symbol], t, self._moved_text)  # the morning's "how far"
        if fired is not None:
            lines.append(
                f"Alerts in the last 24 hours: {fired} (/history lists them)."
                if fired
                else "No alerts in the last 24 hours."
            )
        return "\n".join(lines)

    async def topic_gone(self, chat: int, topic: int) -> None:
        """Telegram refused ``chat``'s forum topic ``topic`` (deleted, closed) for an alert,
        which went to the chat itself: so do the alerts of the watches made there from now on,
        and the chat is told which (in turn with its commands: ChatOrder)."""
        await self._order.in_turn((chat,), self._topic_gone(chat, topic))

    async def _topic_gone(self, chat: int, topic: int) -> None:
        rows = await self.book.clear_topic(chat, topic)
        if rows:
            ids = ", ".join(watch_id(r) for r in rows)
            one = len(rows) == 1
            await self.tell(
                chat,
                f"The topic where {ids} {'was' if one else 'were'} made cannot be posted to "
                f"(deleted or closed): {'its' if one else 'their'} alerts come here now.",
            )

    async def tell(self, chat: int, text: str) -> None:
        """A note to a chat; a long one goes as several messages."""
        if self.app is None:
            return
        for part in split_text(text, self.delivery.max_message):
            try:
                try:
                    await self.app.bot.send_message(
                        chat, **_shown(part), disable_notification=self.notifier.silent(chat)
                    )
                except ChatMigrated as exc:
                    chat = await self.move_chat(chat, int(exc.new_chat_id))
                    await self.app.bot.send_message(
                        chat, **_shown(part), disable_notification=self.notifier.silent(chat)
                    )
            except TelegramError as exc:
                log.warning("chat %s: could not send a note: %s", chat, clip(str(exc)))
                self._gone(chat, exc)
                return

    async def moved(self, old: int, new: int) -> None:
        """A delivery found the group ``old`` a supergroup, ``new``: its watches move in turn
        with the commands of both chats (ChatOrder), as when the service messages say so. A
        command running meanwhile (a /watch in the supergroup of a watch the group has) would
        otherwise not see the move, nor the move the command's watch."""
        await self._order.in_turn((old, new), self.move_chat(old, new))

    async def move_chat(self, old: int, new: int) -> int:
        """A group became a supergroup, whose id is ``new``: its watches, their alerts and its
        digest follow, and so do its rights (the settings name the old id; kept in the database
        for later runs). Returns ``new``."""
        if old == new:
            return new
        moved = await self.book.move_chat(old, new)
        successors = self.book.successors
        if new in successors:  # told again (a failed send, the other service message)
            return new
        successors[new] = successors.get(old, old)
        log.info(
            "chat %s is now the supergroup %s: %s moved there",
            old,
            new,
            plural(len(moved), "watch", "watches"),
        )
        cfg = self.settings
        if (cfg.allowed(old) and not cfg.allowed(new)) or (cfg.admin(old) and not cfg.admin(new)):
            log.warning(
                "chat %s is now %s: put %s in place of %s in ALERTBOT_ALLOWED_CHATS or "
                "ALERTBOT_ADMIN_CHATS (until then it has the old chat's rights)",
                old,
                new,
                new,
                old,
            )
        return new

    def _current(self, chat: int) -> int:
        """The chat's id now: a group's that became a supergroup is the supergroup's."""
        return next((new for new, old in self.book.successors.items() if old == chat), chat)

    def _allowed(self, chat: int) -> bool:
        old = self.book.successors.get(chat)
        return self.settings.allowed(chat) or (old is not None and self.settings.allowed(old))

    def _admin(self, chat: int) -> bool:
        old = self.book.successors.get(chat)
        return self.settings.admin(chat) or (old is not None and self.settings.admin(old))

    # ------------------------------------------------------------------ handlers

    def _polling_failed(self, exc: TelegramError) -> None:
        """A getUpdates that failed; PTB tries again itself, waiting longer each time (up to
        30 s). Without this it logs a whole traceback each time: one every few seconds through
        a Telegram outage. The error is cut short: behind a front end's HTML error page (a
        proxy's 502) it quotes the whole page."""
        self.polls.failure(exc)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("chat: error while handling an update", exc_info=context.error)

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        text = _text_of(message)
        if message is None or chat is None or text is None:
            return
        markup: InlineKeyboardMarkup | None = None
        group = chat.type != "private"
        try:
            command, answer = self._parse(
                text, chat.id, group, self._replied_watch(message), self._replied_symbol(message)
            )
        except _NotOurs:
            # in a group, a command none of ours resembles is another bot's: no answer, not
            # even the refusal below (which would spend the one a chat gets)
            return
        if isinstance(command, Batch):
            command, answer = self._parse_batch(command, chat.id, group)
        if not self._allowed(chat.id):
            if chat.id not in self._refused:  # one polite refusal, then silence
                self._refused.add(chat.id)
                await self._reply(message, chat.id, REFUSAL.format(chat=chat.id), None)
            return
        await self._learn_topic(chat.id, message)
        welcome = await self.welcome_back(chat.id)
        if command is not None:
            command = _made_by(command, message)
            try:
                answer, markup = await self.run(chat.id, command, _topic(message))
            except CommandError as exc:
                answer, markup = exc.reply(), None
            except Exception:
                log.exception("chat %s: command failed: %r", chat.id, text[:200])
                answer, markup = SORRY, None
        if answer is None:
            return  # a /price whose lookup the stop gave up
        if welcome:
            answer = f"{welcome}\n\n{answer}"
        await self._reply(message, chat.id, answer, markup)

    def _parse(
        self,
        text: str,
        chat: int,
        group: bool,
        replied: str | None = None,
        replied_symbol: str | None = None,
    ) -> tuple[object | None, str | None]:
        """A message's command, or the answer to a malformed one (with what only the bot
        knows: Binance's list, the chat's watches, the price now). Raises _NotOurs for a
        message that is not a command for this bot."""
        try:
            command = parse_command(text, self.username, group=group, replied=replied)
        except SymbolError as exc:  # BTC/USDT, $BTC: what Binance lists for it
            found = exc.suggesting(self._listed(exc.name))
            return None, found.noting(exc.note).reply()
        except CoinsError as exc:  # /watch btc eth > 1: more symbols, when Binance lists them
            if self.directory.authoritative and all(
                self._resolve(name.upper()) in self.directory.known() for name in exc.names
            ):
                return self._parse(exc.rewritten + exc.note_words, chat, group, replied)
            return None, exc.reply()
        except NoSymbolError as exc:  # /watch > 75000 in reply to an alert: its symbol
            rows = self.book.find(chat, replied) if replied is not None else []
            symbol = rows[0].symbol if rows else replied_symbol
            if symbol is None:
                return None, exc.reply()
            return self._parse(exc.with_symbol(symbol) + exc.note_words, chat, group)
        except LevelsError as exc:  # /edit w2 > 71000 76000: the other levels, of its symbol
            rows = self.book.find(chat, exc.target)
            if not exc.numbers:
                return None, exc.of(rows[0].symbol if rows else None).reply()
            if not rows:
                return None, self._none(exc.target)
            return None, self._levels_of(rows[0], exc)
        except TargetError as exc:  # /unwatch BTCUSDT: this chat's watches of it
            return None, self._symbol_target(chat, exc).noting(exc.note).reply()
        except ShorthandError as exc:  # /watch BTC 70000: the sign, from the price now
            return None, self._shorthand(exc).noting(exc.note).reply()
        except CommandError as exc:
            return None, exc.reply()
        except Exception:
            log.exception("chat %s: command failed: %r", chat, text[:200])
            return None, SORRY
        if command is None:
            raise _NotOurs
        return command, None

    def _parse_batch(
        self, batch: Batch, chat: int, group: bool
    ) -> tuple[object | None, str | None]:
        """The watches of a message of /watch lines, or the answer to its first malformed
        line (then none is made)."""
        watches: list[Watch] = []
        for i, line in enumerate(batch.lines, 1):
            try:
                command, answer = self._parse(line, chat, group)
            except _NotOurs:  # /watch@otherbot among ours
                command, answer = None, f"{line[:60]} is addressed to another bot"
            if answer is not None or not isinstance(command, Watch):
                return None, (
                    f"None of these {len(batch.lines)} watches was made: line {i} is refused.\n"
                    f"{answer}"
                )
            watches.append(command)
        return WatchBatch(tuple(watches)), None

    def _to_us(self, message: Message) -> Message | None:
        """The bot's message that ``message`` replies to; None: it replies to none."""
        replied = message.reply_to_message
        if (
            replied is None
            or replied.from_user is None
            or self.username is None
            or (replied.from_user.username or "").lower() != self.username.lower()
        ):
            return None
        return replied

    def _replied_symbol(self, message: Message) -> str | None:
        """The symbol of the bot's message that ``message`` replies to: its first word when
        that is a symbol Binance lists or the feed has (an alert, ``BTCUSDT price > 70000:
        ...``; a ``/price`` block; ``Watching BTCUSDT: ...``); None for any other."""
        replied = self._to_us(message)
        words = (_text_of(replied) or "").split(maxsplit=2) if replied is not None else []
        for word in words[:2]:  # "Watching BTCUSDT:"
            symbol = word.rstrip(":,.")
            if symbol in self.directory.known() or self.engine.last_ticker(symbol) is not None:
                return symbol
        return None

    def _replied_watch(self, message: Message) -> str | None:
        """The watch a message replies to: the bot's message naming one watch (an alert,
        ``[w3]``, or the answer to its /watch, ``Id w3.``); None for any other."""
        replied = self._to_us(message)
        if replied is None:
            return None
        ids = set(_NAMED_WATCH_RE.findall(_text_of(replied) or ""))
        return ids.pop() if len(ids) == 1 else None

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Text in a private chat that is not a command ('watch BTCUSDT > 1', its '/' left
        out): silence looked like a watch made. Only allowed chats are answered (a refusal
        is for commands); a paused one is back, as at a command."""
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None or message.text is None:
            return
        if self._allowed(chat.id):
            answer = text_reply(message.text)
            welcome = await self.welcome_back(chat.id)  # the chat has the bot again
            await self._reply(
                message, chat.id, f"{welcome}\n\n{answer}" if welcome else answer, None
            )

    async def welcome_back(self, chat: int) -> str | None:
        """A chat that blocked the bot (or removed it) is back: its watches fire again. The
        note that says so, and names the alerts it refused meanwhile; None: it was not paused."""
        if chat not in self.book.paused:
            return None
        try:
            resumed = await self.book.resume(chat)
        except Exception:  # the pause stays in the database: it ends again at the next start
            log.exception("chat %s: its pause could not be ended in the database", chat)
            resumed = None
        if resumed is None:
            return None
        pause, missed = resumed
        n = len(self.book.of_chat(chat))
        log.info(
            "chat %s is back after %.0fs: its %s %s active again",
            chat,
            self.clock() - pause.since,
            plural(n, "watch", "watches"),
            "is" if n == 1 else "are",
        )
        whose = "your" if chat > 0 else "this chat's"
        if n == 0:
            text = "Welcome back."
        elif n == 1:
            text = f"Welcome back: {whose} watch is active again."
        else:
            text = f"Welcome back: {whose} {n} watches are active again."
        if missed:
            # without each alert's mute/stop hint (render.WATCH_HINT): it was for then
            lines = [
                f"{self._at(chat, t)}  {_cut(' '.join(without_hint_line(m).split()), 300)}"
                for t, m in missed
            ]
            shown = lines[:MISSED_SHOWN]
            if len(lines) > len(shown):
                shown.append(f"… and {len(lines) - len(shown)} more")
            count = "this alert" if len(missed) == 1 else f"these {len(missed)} alerts"
            text += f"\nWhile the bot was blocked, {count} could not reach you:\n" + "\n".join(
                shown
            )
        return text

    async def on_edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command the user edited: it is not run again (a /watch would be made twice), but
        an edit that got no answer looks as if it took effect, so they are told."""
        message = update.effective_message
        chat = update.effective_chat
        text = _text_of(message)
        if message is None or chat is None or text is None:
            return
        try:
            if parse_command(text, self.username, group=chat.type != "private") is None:
                return  # not ours (another bot's, or no longer a command)
        except CommandError:
            pass  # ours, malformed: the answer is the same
        except Exception:
            log.exception("chat %s: an edited command failed: %r", chat.id, text[:200])
        if self._allowed(chat.id):
            await self._reply(message, chat.id, EDITED, None)

    async def _reply(
        self, message: Message, chat: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        """Answer a command: a long answer as several messages (the buttons under the last).

        Telegram refusing an answer is logged; a refused one (400) is followed by a short
        apology, so the user is not left with silence.
        """
        parts = split_text(text, self.delivery.max_message)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                await message.reply_text(
                    **_shown(part), reply_markup=markup if last else None, do_quote=False
                )
            except BadRequest as exc:
                log.error(
                    "chat %s: Telegram refused the answer to %r (%s): %s",
                    chat,
                    (_text_of(message) or "")[:60],
                    plural(len(part), "character"),
                    exc.message,
                )
                try:
                    await message.reply_text(
                        f"Sorry, Telegram refused my answer ({_cut(exc.message, 200)}).",
                        do_quote=False,
                    )
                except TelegramError as again:
                    log.error(
                        "chat %s: the apology could not be sent either: %s",
                        chat,
                        clip(str(again)),
                    )
                    self._gone(chat, again)
                return
            except TelegramError as exc:
                log.error(
                    "chat %s: could not send the answer to a command: %s", chat, clip(str(exc))
                )
                self._gone(chat, exc)
                return

    def _gone(self, chat: int, exc: TelegramError) -> None:
        """A note or an answer to ``chat`` refused: a 403 that says the chat no longer has the
        bot pauses it, as an alert's does (any other failure does not)."""
        if gone(exc) and self.on_gone is not None:
            try:
                self.on_gone(chat, f"forbidden: {clip(exc.message)}")
            except Exception:
                log.exception("chat %s: could not pause it", chat)

    async def on_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Telegram's word that the bot's own status in a chat changed (my_chat_member): a user
        blocked or unblocked it, a group removed it or added it back. Out of the chat: a chat
        with watches is paused at once, not after an alert has failed; back in it: a paused
        chat is resumed, with the note a command would have begun with."""
        changed = update.my_chat_member
        if changed is None:
            return
        chat = changed.chat.id
        if self._current(chat) != chat:
            return  # a group that became a supergroup: what it had is the supergroup's now
        inside = _in_chat(changed.new_chat_member)
        if inside is False:
            kind = changed.chat.type
            if kind == "private":
                why = "the user blocked the bot"
            else:
                why = f"the bot was removed from the {'channel' if kind == 'channel' else 'group'}"
            if self.on_gone is not None:
                self.on_gone(chat, why)
        elif inside and self._allowed(chat):
            welcome = await self.welcome_back(chat)
            if welcome:
                await self.tell(chat, welcome)

    async def on_topic(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A forum topic made or renamed (its service message): its name, for /list."""
        message = update.effective_message
        if message is not None and self._allowed(message.chat_id):
            await self._learn_topic(message.chat_id, message)

    async def _learn_topic(self, chat: int, message: Message) -> None:
        """The name of the forum topic ``message`` is in, as /list shows it (Telegram gives
        bots no topic by id): a rename's, from its service message; else its creation's,
        which every message in a topic carries as the message it replies to (unless it
        replies to another). Not known, /list shows the topic's number."""
        topic = _topic(message)
        if topic is None:
            return
        edited = message.forum_topic_edited
        replied = message.reply_to_message
        created = message.forum_topic_created or (
            replied.forum_topic_created if replied is not None else None
        )
        try:
            if edited is not None and edited.name:
                await self.book.name_topic(chat, topic, edited.name, edited=True)
            elif created is not None:
                await self.book.name_topic(chat, topic, created.name, edited=False)
        except Exception as exc:  # a name is not worth a command: it is written next time
            log.warning("chat %s: could not write forum topic %s's name: %s", chat, topic, exc)

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The service messages of a group that became a supergroup: "migrated to" in the
        group, "migrated from" in the supergroup; either moves the group's watches."""
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id is not None:
            await self.move_chat(message.chat_id, int(message.migrate_to_chat_id))
        elif message.migrate_from_chat_id is not None:
            await self.move_chat(int(message.migrate_from_chat_id), message.chat_id)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        chat = update.effective_chat
        # a group's /list shown before it became a supergroup is in the supergroup's history:
        # its buttons come from the group's id, and act on the watches that moved
        chat_id = None if chat is None else self._current(chat.id)
        if query is None or chat_id is None or not self._allowed(chat_id):
            if query is not None:
                await self._answer(query, None)
            return
        welcome = await self.welcome_back(chat_id)
        if welcome:
            await self.tell(chat_id, welcome)
        kind, _, rest = (query.data or "").partition(":")
        if kind in (ALERT_MUTE, ALERT_STOP, ALERT_SHOWN):
            await self._alert_button(query, chat_id, kind, rest)
            return
        # the /list page the button is on, and its symbol when the list was of one
        wid, _, shown = rest.partition(":")
        page, _, symbol = shown.partition(":")
        rows = self.book.find(chat_id, wid)
        if not rows:
            await self._answer(query, "That watch is gone already.")
        elif kind == "rm":
            await self.book.remove(rows)
            await self._answer(query, f"Removed {watch_id(rows[0])}.")
        elif kind == "mute":
            await self._answer(query, await self._mute_button(rows[0]))
        else:
            await self._answer(query, None)
            return
        text, markup = self.listing(chat_id, int(page) if page.isdigit() else 1, symbol or None)
        if query.message is not None:
            with contextlib.suppress(TelegramError):
                await query.edit_message_text(**_shown(text), reply_markup=markup)

    async def _alert_button(self, query: CallbackQuery, chat: int, kind: str, wid: str) -> None:
        """A button under a chat watch's alert (notify.telegram.watch_buttons), pressed: Mute 1h
        (as /list's: it never shortens a longer mute), Stop, or one showing what an earlier
        press did (it says the watch's state; once the mute is over, the buttons are back).
        Answered in place: the press's answer, and the buttons changed to show what was done
        (removed when the watch is gone; a Chart link stays)."""
        number = watch_number(wid)
        row = next(iter(self.book.find(chat, wid)), None) if number else None
        twin = self.book.merged.get(number) if number and row is None else None
        if twin is not None:  # a group's watch the move merged into its supergroup's twin
            wid = watch_rule_id(twin)
            row = next(iter(self.book.find(chat, wid)), None)
        links = _link_rows(query.message)
        markup: InlineKeyboardMarkup | None
        if kind == ALERT_SHOWN:
            await self._answer(query, self._alert_state(wid, row))
            if row is None:
                return  # "Stopped", as shown
            # its mute is over (or /unmute): Mute 1h again; a /mute typed since: its new end
            markup = self._mute_markup(wid, row, links)
            message = query.message
            if isinstance(message, Message) and message.reply_markup == markup:
                return  # as shown
        elif row is None:
            await self._answer(query, f"{wid} is gone already: it alerts no more.")
            markup = InlineKeyboardMarkup(links) if links else None
        elif kind == ALERT_MUTE:
            await self._answer(query, await self._mute_button(row))
            markup = self._mute_markup(wid, row, links)
        else:
            await self.book.remove([row])
            await self._answer(query, f"Stopped {wid} ({row.symbol} {row.condition}).")
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton("Stopped", callback_data=f"{ALERT_SHOWN}:{wid}")], *links]
            )
        if query.message is not None:
            # the alert's text stays as sent (its HTML too); in a group's history shown by its
            # supergroup the edit is refused (the old id), what the press did is done all the same
            with contextlib.suppress(TelegramError):
                await query.edit_message_reply_markup(reply_markup=markup)

    def _mute_markup(
        self, wid: str, row: WatchRow, links: Sequence[Sequence[InlineKeyboardButton]] = ()
    ) -> InlineKeyboardMarkup:
        """The buttons under an alert of the watch ``row`` as its mute is now: "Muted until
        14:05 UTC" and Stop while muted, else Mute 1h and Stop; then ``links`` (the Chart
        link the alert came with)."""
        if not self._muted(row) or row.muted_until is None:
            return InlineKeyboardMarkup([*watch_buttons(wid).inline_keyboard, *links])
        until = _short_time(row.muted_until, self.clock(), self._zone(row.chat_id))
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        f"Muted until {until}", callback_data=f"{ALERT_SHOWN}:{wid}"
                    ),
                    InlineKeyboardButton("Stop", callback_data=f"{ALERT_STOP}:{wid}"),
                ],
                *links,
            ]
        )

    def _alert_state(self, wid: str, row: WatchRow | None) -> str:
        """What a pressed "Muted until …" or "Stopped" button says: the watch's state now."""
        if row is None:
            return f"{wid} is gone: it alerts no more."
        if self._muted(row) and row.muted_until is not None:
            return f"{wid} is muted until {self._at(row.chat_id, row.muted_until * 1000)}."
        return f"{wid} is not muted: it alerts."

    def _muted(self, row: WatchRow) -> bool:
        return row.muted_until is not None and row.muted_until > self.clock()

    @staticmethod
    async def _answer(query: CallbackQuery, text: str | None) -> None:
        """Answer a button press. Telegram refuses an answer after about 15 s ("query is too
        old": a press handled after a restart); what the button did is done all the same, and
        the list is shown again after it. A text over Telegram's 200 characters (a long
        condition in "Stopped w1 (...)") would be refused, and the user answered nothing: it
        is cut short."""
        try:
            await query.answer(None if text is None else _cut(unmarked(text), ANSWER_MAX))
        except TelegramError as exc:
            log.warning("chat: a button press could not be answered: %s", exc)

    # ------------------------------------------------------------------ commands

    async def run(
        self, chat: int, command: object, topic: int | None = None
    ) -> tuple[str | None, InlineKeyboardMarkup | None]:
        """A command's answer and its buttons; None: no answer (the bot is stopping).
        ``topic``: the forum topic it was sent in (a watch made there alerts there)."""
        if isinstance(command, Watch):
            before = {r.id for r in self.book.of_chat(chat)}
            answer = await self.watch(chat, command, topic)
            made = [r for r in self.book.of_chat(chat) if r.id not in before]
            # a watch made by a slip goes with one press (as an alert's Stop, which it is)
            return answer, _remove_markup(watch_id(made[0])) if len(made) == 1 else None
        if isinstance(command, Edit):
            return await self.edit(chat, command), None
        if isinstance(command, Unwatch):
            return await self.unwatch(chat, command.target, command.more), None
        if isinstance(command, Mute):
            if command.until_minute is not None:
                until = self._next_local(chat, command.until_minute)
            else:
                until = self.clock() + command.duration_ms / 1000
            return await self.mute(chat, command.target, until, command.more), None
        if isinstance(command, Unmute):
            return await self.unmute(chat, command.target, command.more), None
        if isinstance(command, Price):
            # those Binance is asked for are asked at once (PriceLookup bounds them), the
            # answers in the order asked
            answers = await asyncio.gather(
                *(self.price_or_fetch(chat, s) for s in (command.symbol, *command.more))
            )
            if any(a is None for a in answers):
                return None, None  # the bot is stopping
            return "\n\n".join(a for a in answers if a is not None), None
        if isinstance(command, Digest):
            zone = self._zone_name(chat)
            if command.utc and zone != UTC_NAME and command.minute is not None:
                hh, mm = divmod(command.minute, 60)
                return (
                    f"This chat's times are in {zone}: send {hint(f'/digest {hh:02d}:{mm:02d}')} "
                    f"for {hh:02d}:{mm:02d} there, or {hint('/timezone UTC')} first.",
                    None,
                )
            await self.book.set_digest(chat, command.minute)
            if command.minute is None:
                return "Daily digest off.", None
            return f"Daily digest of your watched symbols at {self._clock(chat)}.", None
        if isinstance(command, Zone):
            return await self.timezone(chat, command.zone), None
        if isinstance(command, Quiet):
            return await self.quiet(chat, command), None
        if isinstance(command, Listing):
            symbol = None if command.symbol is None else self._resolve(command.symbol)
            pages = self.pages(chat, symbol)
            if command.page > max(pages, 1):
                of = "" if symbol is None else f" {symbol}"
                last = (
                    f"{hint(f'/list{of} {pages}')} is the last"
                    if pages > 1
                    else hint(f"/list{of}") + " shows them all"
                )
                whose = "this chat's watches" if symbol is None else f"this chat's {symbol} watches"
                return f"There is no page {command.page} of {whose}: {last}.", None
            return self.listing(chat, command.page, symbol)
        if isinstance(command, History):
            return await self.history(chat, command), None
        if isinstance(command, WatchBatch):
            return await self.watch_batch(chat, command.watches, topic), None
        if isinstance(command, Simple):
            if command.name == "status":
                return self.status(chat, await self._last_alert_line(chat)), None
            if command.name == "start":
                return start_text(chat, topic), None
            if command.name == "export":
                return self.export_text(chat), None
            return help_text(), None
        raise AssertionError(command)

    def _user_status(self, chat: int, last_alert: str | None = None) -> str:
        h = self.feed.health()
        cfg = self.feed.settings
        stale = cfg.symbol_stale_after if h.mode == "symbols" else cfg.stale_after
        age = h.last_message_age
        if age is None:
            prices = "Prices: none received yet (the bot is connecting to the exchange)"
        elif age > stale:
            prices = (
                f"Prices: delayed, no update for {_span(age)}; the bot is reconnecting to "
                "the exchange, and alerts wait for the prices"
            )
        else:
            prices = f"Prices: live, last update {age:.1f}s ago"
        rows = self.book.of_chat(chat)
        muted = sum(1 for r in rows if self._muted(r))
        if not rows:
            watches = f"Watches in this chat: none yet ({FIRST_WATCH})"
        else:
            watches = f"Watches in this chat: {len(rows)}" + (f", {muted} muted" if muted else "")
        waiting = self._waiting(chat)
        # and those waiting in the database only (the outbox's bound in memory): newer ones
        parked = self._parked(chat)
        if not waiting and not parked:
            delivery = "Alerts to this chat: none waiting to be sent"
        elif not waiting:
            delivery = f"Alerts to this chat: {parked} waiting to be sent"
        else:
            oldest = self._at(chat, min(d.created for d in waiting) * 1000)
            delivery = (
                f"Alerts to this chat: {len(waiting) + parked} waiting to be sent, since {oldest}"
            )
            if any(d.last_error for d in waiting):
                delivery += "; Telegram refused the last try, the bot tries again"
        lines = [prices, watches, delivery, *([last_alert] if last_alert else [])]
        hours = self._quiet_hours(chat)
        if hours is not None:
            now = ", quiet now" if self.notifier.silent(chat) else ""
            lines.append(f"Quiet hours: {hours} (alerts without a sound{now})")
        return "\n".join(lines)

    def _parked(self, chat: int) -> int:
        """How many alerts to ``chat`` wait in the database only (beyond the outbox's bound
        in memory: ALERTBOT_DELIVERY_MEMORY), all newer than those in memory."""
        outbox = self.notifier.outbox
        return outbox.parked_to(f"telegram:{chat}") if outbox is not None else 0

    def _waiting(self, chat: int) -> list[Delivery]:
        """The alerts to ``chat`` that wait to be sent (stored, not delivered yet)."""
        outbox = self.notifier.outbox
        return [
            d
            for d in (outbox.open.values() if outbox is not None else ())
            if d.kind == "telegram" and d.chat_id == chat
        ]

    def _polling_line(self, chat: int) -> str | None:
        """For an admin's /status: when polling for commands last failed (None: it has not
        since the start). Never "failing now": the /status itself came by a poll that worked,
        which ended the outage (a second poller's: each poll that loses to it is one)."""
        last = self.polling().last_outage
        if last is None:
            return None
        return (
            f"Polling for commands: works; it last failed for {_span(last.ended - last.since)} "
            f"until {self._at(chat, last.ended * 1000)} "
            f"({_failed(last.failed, last.error_text)})"
        )

    def _resolve(self, symbol: str) -> str:
        """A coin's name alone (``BTC``, ``eth``) as its USDT contract, when Binance lists that
        and not the name itself: the one contract a trader means by it. Anything else as is
        (``PEPE`` is not completed to ``1000PEPEUSDT``, whose price is another unit: it gets a
        did-you-mean)."""
        known = self.directory.known()
        if is_glob(symbol) or symbol in known or f"{symbol}USDT" not in known:
            return symbol
        return f"{symbol}USDT"

    def _listed(self, name: str) -> str | None:
        """The contract Binance lists that ``name`` (``BTC``, ``ETHUSDT``) stands for; None:
        none (the name as is when Binance's list cannot be read)."""
        resolved = self._resolve(name)
        if resolved in self.directory.known() or not self.directory.authoritative:
            return resolved
        return self.directory.suggest(resolved)

    def _check_symbol(self, chat: int, symbol: str, command: str = "watch") -> str | None:
        """Refuse a pattern from a non-admin, and a symbol the exchange does not list; a note
        when whether it lists the symbol cannot be told now (its list cannot be read)."""
        usage, example = COMMANDS[command][0], COMMANDS[command][2]
        if is_glob(symbol):
            if not self._admin(chat):
                raise CommandError(
                    f"patterns like {symbol} are for the bot's admins; name one symbol",
                    usage,
                    example,
                )
            return None
        if symbol in self.directory.known():
            return None
        if self.directory.authoritative:
            hint = self.directory.suggest(symbol)
            raise CommandError(
                f"unknown symbol {symbol}" + (f" (did you mean {hint}?)" if hint else ""),
                usage,
                example,
            )
        return (
            f"{symbol} is not checked: Binance's list of symbols cannot be read right now. "
            "If it has no such symbol, this watch never fires."
        )

    async def watch(self, chat: int, w: Watch, topic: int | None = None) -> str:
        usage, example = COMMANDS["watch"][0], COMMANDS["watch"][2]
        if w.more or w.levels:  # a watch of each symbol and level
            symbols = list(dict.fromkeys(self._resolve(s) for s in (w.symbol, *w.more)))
            pairs = [(level, s) for level in w.each() for s in symbols]
            if len(pairs) > 1:
                return await self._watch_several(chat, pairs, topic)
        w = dataclasses.replace(w, symbol=self._resolve(w.symbol), more=())
        unchecked = self._check_symbol(chat, w.symbol)
        mine = self.book.of_chat(chat)
        same = [r for r in mine if r.symbol == w.symbol and r.condition == w.condition_text]
        if same:  # a second one would only double every alert (sent together, one message)
            wid = watch_id(same[0])
            typed = _option_words(w)
            if typed or w.note is not None:  # these options: the watch's others turned off
                if same[0].once and not w.once:
                    typed += " once off"
                if same[0].expires_ms and not w.for_ms:
                    typed += " for off"
                if same[0].repeat_ms and not w.repeat_ms:
                    typed += " repeat off"
                if same[0].note and w.note is None:
                    typed += " note off"
                if w.note is not None:  # last: the rest of the command is the note
                    typed += f" note {w.note}"
                typed = typed.lstrip()
            change = hint(f"/edit {wid} {typed or 'cooldown 1h'}")
            return (
                f"This chat watches {w.symbol} {w.condition_text} already: {wid}. To change "
                f"{'it to these options' if typed else 'its options'}: {change}"
            )
        if (
            not self.settings.allowed_chats
            and not self._admin(chat)
            and len(mine) >= self.settings.max_watches
        ):
            raise CommandError(
                f"this chat has {len(mine)} watches, the most allowed; remove one with /unwatch",
                usage,
                example,
            )
        row = await self.book.add(self._new_row(chat, w, w.symbol, topic, self.clock()))
        wid = watch_id(row)
        text = (
            f"Watching {w.symbol}: {w.condition_text} ({self._options_text(chat, row)}). Id {wid}."
        )
        if topic is not None:
            text += " Its alerts come to this topic."
        now_true = self._true_now(chat, w)
        if now_true:
            text += f"\nIt is true right now ({now_true}): it fires on the next tick."
        million = _million(w.condition_text)
        if million:
            text += f"\n{million}"
        far = self._far(w)
        if far:
            text += f"\n{far}"
        elif not now_true and (stands := self._now(row)):
            text += f"\n{w.symbol} {stands}."
        text += self._spacing(row)
        if unchecked:
            text += f"\n{unchecked}"
        return text + f"\nRemove it with {hint(f'/unwatch {wid}')}."

    def _new_row(self, chat: int, w: Watch, symbol: str, topic: int | None, now: float) -> WatchRow:
        """The row a new watch of ``symbol`` is stored as: ``w``'s condition and options, the
        chat's defaults for those not typed. Raises CommandError for a rearm band the
        condition cannot have."""
        rearm = w.rearm if w.rearm is not None else self.settings.default_rearm
        if rearm and isinstance(w.condition, (Breaks, AllOf, AnyOf)):
            raise CommandError(
                "rearm applies to levels, crossings and moves, not to this condition",
                COMMANDS["watch"][0],
                COMMANDS["watch"][2],
            )
        cooldown = w.cooldown_ms if w.cooldown_ms is not None else self.settings.default_cooldown_ms
        if w.repeat_ms and w.cooldown_ms is None:  # the default does not thin the repeats typed
            cooldown = min(cooldown, w.repeat_ms)
        return WatchRow(
            id=0,
            chat_id=chat,
            symbol=symbol,
            condition=w.condition_text,
            cooldown_ms=cooldown,
            rearm=rearm,
            once=w.once,
            expires_ms=int(now * 1000) + w.for_ms if w.for_ms else None,
            created=now,
            topic=topic,
            note=w.note,
            repeat_ms=w.repeat_ms,
            made_by=w.made_by,
        )

    async def watch_batch(self, chat: int, watches: tuple[Watch, ...], topic: int | None) -> str:
        """A message of /watch lines (``/export``'s, pasted back): all of them, or none."""
        pairs = [
            (level, symbol)
            for w in watches
            for level in w.each()
            for symbol in dict.fromkeys(self._resolve(s) for s in (w.symbol, *w.more))
        ]
        try:
            return await self._watch_several(chat, pairs, topic)
        except CommandError as exc:
            raise exc.prefixed(f"none of these {len(watches)} watches was made: ") from None

    async def _watch_several(
        self, chat: int, pairs: list[tuple[Watch, str]], topic: int | None
    ) -> str:
        """A watch of each (watch, symbol), or none: ``/watch BTCUSDT,ETHUSDT,SOLUSDT rises 5%
        in 15m`` (one condition and its options for each symbol), or a message of /watch
        lines. Every symbol is checked, and the chat's limit counted, before any is made; a
        watch the chat has so already (symbol and condition) is named, not made twice."""
        usage, example = COMMANDS["watch"][0], COMMANDS["watch"][2]
        unchecked = [note for _, s in pairs if (note := self._check_symbol(chat, s)) is not None]
        mine = self.book.of_chat(chat)
        have = {(r.symbol, r.condition): r for r in mine}
        had: dict[tuple[str, str], WatchRow] = {}
        new: dict[tuple[str, str], Watch] = {}
        for w, symbol in pairs:
            key = (symbol, w.condition_text)
            if key in have:
                had[key] = have[key]
            else:
                new.setdefault(key, w)  # the same one twice in a message: made once
        if (
            not self.settings.allowed_chats
            and not self._admin(chat)
            and len(mine) + len(new) > self.settings.max_watches
        ):
            raise CommandError(
                f"this chat has {plural(len(mine), 'watch', 'watches')} and {len(new)} more "
                f"would pass the {self.settings.max_watches} allowed; remove some with /unwatch",
                usage,
                example,
            )
        now = self.clock()
        rows = await self.book.add_all(
            [self._new_row(chat, w, symbol, topic, now) for (symbol, _), w in new.items()]
        )
        made = list(zip(rows, new.values(), strict=True))
        one = len({id(w) for w, _ in pairs}) == 1  # one condition for several symbols
        lines = []
        if rows and one:
            w = pairs[0][0]
            ids = ", ".join(watch_id(r) for r in rows)
            lines.append(
                f"Watching {', '.join(r.symbol for r in rows)}: {w.condition_text} "
                f"({self._options_text(chat, rows[0])}). Ids {ids}."
                + (" Their alerts come to this topic." if topic is not None else "")
            )
        elif rows:
            lines.append(
                f"Made {plural(len(rows), 'watch', 'watches')}"
                + (", their alerts coming to this topic" if topic is not None else "")
                + ":"
            )
            lines += [
                f"{watch_id(r)}  {r.symbol} {r.condition} ({self._options_text(chat, r)})"
                for r in rows
            ]
        if had:
            named = ", ".join(
                f"{s} ({watch_id(r)})" if one else f"{s} {c} ({watch_id(r)})"
                for (s, c), r in had.items()
            )
            lines.append(f"Watched here so already: {named}.")
        millions: set[str] = set()
        for r, w in made:
            w = dataclasses.replace(w, symbol=r.symbol, more=())
            which = r.symbol if one else f"{watch_id(r)} ({r.symbol})"
            now_true = self._true_now(chat, w)
            if now_true:
                lines.append(f"{which} is true right now ({now_true}): it fires on the next tick.")
            far = self._far(w)  # a level typed for one symbol may be far from another's price
            if far:
                lines.append(far if one else f"{watch_id(r)}: {far}")
            elif not now_true and (stands := self._now(r)):
                lines.append(f"{r.symbol} {stands}." if one else f"{watch_id(r)}: {stands}.")
            million = _million(r.condition)
            if million and million not in millions:  # said once for a condition
                millions.add(million)
                lines.append(million if one else f"{watch_id(r)}: {million}")
            spacing = self._spacing(r).strip()
            if spacing:
                lines.append(spacing if one else f"{watch_id(r)}: {spacing}")
        lines += unchecked
        if rows:
            lines.append(
                f"Remove them with {hint(' '.join(['/unwatch', *(watch_id(r) for r in rows)]))}."
            )
        return "\n".join(lines)

    async def edit(self, chat: int, e: Edit) -> str:
        """``/edit``: a watch's new condition (or level) and options, its id, topic, mute and
        firing state kept (the state as far as the engine keeps it: a new condition starts
        afresh); the answer says what it was."""
        usage, example = COMMANDS["edit"][0], COMMANDS["edit"][2]
        rows = self.book.find(chat, e.target)
        if not rows:
            return self._none(e.target)
        row = rows[0]
        wid = watch_id(row)
        symbol, unchecked = row.symbol, None
        if e.symbol is not None and e.symbol != row.symbol:
            symbol = self._resolve(e.symbol)
            unchecked = self._check_symbol(chat, symbol, "edit")
        condition, text = parse(row.condition), row.condition
        if e.condition is not None and e.condition_text is not None:
            condition, text = e.condition, e.condition_text
        elif e.level is not None:
            condition = self._moved(row, condition, e.level, e.level_text or "")
            text = format_condition(condition)
        same = [
            r
            for r in self.book.of_chat(chat)
            if r is not row and (r.symbol, r.condition) == (symbol, text)
        ]
        if same:
            return f"This chat watches {symbol} {text} already: {watch_id(same[0])}."
        rearm = row.rearm if e.rearm is None else e.rearm
        if "rearm" in e.off:
            rearm = 0.0
        dropped = ""
        problem = rearm_problem(condition) if rearm else None
        if problem is not None:
            if e.rearm is not None:
                raise CommandError(problem, usage, example)
            rearm = 0.0
            dropped = (
                f" Its rearm {format_percent(row.rearm)} is dropped: this condition has no "
                "single threshold to move away from."
            )
        once = (row.once or e.once) and "once" not in e.off
        repeat = None if "repeat" in e.off else e.repeat_ms or row.repeat_ms
        problem = repeat_problem(condition, once) if repeat else None
        if problem is not None:
            if e.repeat_ms is not None or (e.once and once):  # typed: the user's to choose
                if once and e.repeat_ms is not None:
                    problem += (
                        f": {hint(f'/edit {wid} once off repeat {format_duration(repeat or 0)}')}"
                    )
                elif once:
                    problem += f": {hint(f'/edit {wid} once repeat off')}"
                raise CommandError(problem, usage, example)
            repeat = None  # the new condition cannot have it
            dropped += (
                f" Its repeat {format_duration(row.repeat_ms or 0)} is dropped: this condition "
                "is true on one tick only."
            )
        cooldown = row.cooldown_ms if e.cooldown_ms is None else e.cooldown_ms
        expires = row.expires_ms if not e.for_ms else int(self.clock() * 1000) + e.for_ms
        new = dataclasses.replace(
            row,
            symbol=symbol,
            condition=text,
            cooldown_ms=0 if "cooldown" in e.off else cooldown,
            rearm=rearm,
            once=once,
            expires_ms=None if "for" in e.off else expires,
            note=None if "note" in e.off else e.note or row.note,
            repeat_ms=repeat,
        )
        before, moved = row.condition, symbol != row.symbol
        was = f"{row.symbol + ' ' if moved else ''}{before} ({self._options_text(chat, row)})"
        if new == row:
            return f"Nothing to change: {wid} is {row.symbol} {was} already."
        if not await self.book.edit(row, new):
            return f"{wid} is gone already: it alerts no more."
        now_options = self._options_text(chat, row)
        answer = f"Changed {wid}: {symbol} {text} ({now_options}). Was: {was}.{dropped}"
        answer += self._spacing(row)
        if unchecked:
            answer += f"\n{unchecked}"
        if text != before or moved:
            w = Watch(symbol=symbol, condition=condition, condition_text=text)
            now_true = self._true_now(chat, w)
            if now_true:
                answer += f"\nIt is true right now ({now_true}): it fires on the next tick."
            far = self._far(w)
            if far:
                answer += f"\n{far}"
        return answer

    def _levels_of(self, row: WatchRow, exc: LevelsError) -> str:
        """The answer to ``/edit w2 71000 76000`` (numbers alone): the ``/edit`` that moves
        w2's one threshold to the first, and the ``/watch`` of w2's symbol and condition at
        the others; or why the watch takes no number (as ``/edit w2 71000`` is answered)."""
        condition = _condition(row.condition)
        try:
            if condition is None:
                raise CommandError(
                    f"{watch_id(row)}'s condition {row.condition!r} has no level",
                    COMMANDS["edit"][0],
                    COMMANDS["edit"][2],
                )
            levels = [
                format_condition(self._moved(row, condition, level, typed))
                for typed, level in exc.numbers
            ]
        except CommandError as err:
            return err.noting(exc.note).reply()
        return exc.of(row.symbol, levels).reply()

    def _moved(self, row: WatchRow, condition: Condition, level: float, typed: str) -> Condition:
        """``row``'s condition with its one threshold at ``level`` (``/edit w3 71000``; a
        percentage for a 24h change or range, or a move's size). Raises CommandError for a
        condition of no single threshold, or another kind of number."""
        usage, example = COMMANDS["edit"][0], COMMANDS["edit"][2]
        wid = watch_id(row)
        percent = typed.endswith("%")
        moved: Condition | None = None
        if isinstance(condition, Level | Cross) and percent == (
            condition.metric in PERCENT_METRICS
        ):
            moved = dataclasses.replace(condition, value=level)
        elif isinstance(condition, Move) and percent:
            moved = dataclasses.replace(condition, pct=level)
        if moved is None:
            kind = "a percentage" if percent else "a number"
            raise CommandError(
                f"{typed!r} is no level of {wid}'s {row.condition} ({kind}): write the whole "
                f"condition, e.g. {hint(f'/edit {wid} > 71000')}",
                usage,
                example,
            )
        try:
            return parse(format_condition(moved))  # the language's bounds (a move's > 0)
        except ConditionError as exc:
            raise CommandError(
                f"not a condition for {wid}: {format_condition(moved)} ({exc})", usage, example
            ) from None

    @staticmethod
    def _spacing(row: WatchRow) -> str:
        """A line saying that a watch's cooldown, longer than its repeat, spaces the repeats
        (``cooldown 10m repeat 1m``: every 10 minutes at most); "" otherwise."""
        if not row.repeat_ms or row.cooldown_ms <= row.repeat_ms:
            return ""
        every = format_duration(row.cooldown_ms)
        return f"\nIts cooldown of {every} spaces the repeats: one every {every} at most."

    def _options_text(self, chat: int, row: WatchRow) -> str:
        """A watch's options as its /watch answer shows them: ``cooldown 5m, once, until …``."""
        parts = [_cooldown(row.cooldown_ms)]
        if row.rearm:
            parts.append(f"rearm {format_percent(row.rearm)}")
        if row.once:
            parts.append("once")
        if row.expires_ms:
            parts.append(f"until {self._at(chat, row.expires_ms)}")
        if row.repeat_ms:
            parts.append(f"repeat {format_duration(row.repeat_ms)}")
        if row.note:
            parts.append(f"note «{row.note}»")
        return ", ".join(parts)

    def _far(self, w: Watch) -> str | None:
        """A price level 10 times above or below the price now (``< 70.000``, a thousands
        separator, is ``< 70``: with BTCUSDT at 68000 it never fires): the price, to see it."""
        t = self._fresh(w.symbol)
        if t is None or not t.close > 0:
            return None
        far = [
            leaf.value
            for leaf in leaves(w.condition)
            if isinstance(leaf, Level | Cross)
            and leaf.metric == "price"
            and not t.close / FAR < leaf.value < t.close * FAR
        ]
        if not far:
            return None
        return f"{w.symbol} is at {t.price_text} now, far from {format_number(far[0])}."

    def _fresh(self, symbol: str) -> Ticker | None:
        """The last ticker of ``symbol``, if it says something about now: not the last one
        kept of a symbol no longer carried (unwatched, or from before a restart)."""
        t = self.engine.last_ticker(symbol)
        if t is None or t.time < self.clock() * 1000 - CURRENT_S * 1000:
            return None
        return t

    def _true_now(self, chat: int, w: Watch) -> str | None:
        cond = w.condition
        if not isinstance(cond, Level):
            return None
        t = self._fresh(w.symbol)
        if t is None or not level_holds(cond, t):
            return None
        if cond.metric == "price":
            return f"price {t.price_text}"  # as Binance sent it, as /price shows it
        # as /price shows it: plainly on its side of each of the chat's thresholds of the
        # symbol (the new watch is among the chat's)
        near = (*_thresholds(self.book.of_chat(chat), w.symbol, cond.metric), cond.value)
        return metric_text(cond, metric_of(cond.metric, t), near)

    async def unwatch(self, chat: int, target: str, more: tuple[str, ...] = ()) -> str:
        if more:
            return await self._unwatch_several(chat, (target, *more))
        rows = self.book.find(chat, target)
        if not rows:
            return self._none(target)
        await self.book.remove(rows)
        if target == "all" and len(rows) > 1:  # the only one: named, as by its id
            return f"Removed all {len(rows)} watches.{self._again(rows)}"
        row = rows[0]
        return f"Removed {watch_id(row)} ({row.symbol} {row.condition}).{self._again(rows)}"

    def _again(self, rows: list[WatchRow]) -> str:
        """What to send to make removed watches again (a tap copies it): undo, for a slip."""
        lines = self._commands_of(rows)
        if len(lines) == 1:
            return f" To make it again: {hint(lines[0])}"
        blocks = _blocks(lines)
        how = "this" if len(blocks) == 1 else "each block as a message of its own"
        return f" To make them again, send {how}:\n\n" + "\n\n".join(
            hint("\n".join(b)) for b in blocks
        )

    def _commands_of(self, rows: list[WatchRow]) -> list[str]:
        """The /watch commands that make ``rows`` again (export, undo)."""
        now_ms = self.clock() * 1000
        return [watch_command(r, now_ms) for r in sorted(rows, key=lambda r: r.id)]

    def _find(self, chat: int, targets: tuple[str, ...]) -> tuple[list[WatchRow], str]:
        """The chat's watches ``targets`` name, and a sentence naming the ids it has none of
        ("" when it has them all)."""
        found = {target: self.book.find(chat, target) for target in targets}
        rows = [r for target in targets for r in found[target]]
        missing = [target for target in targets if not found[target]]
        if not missing:
            return rows, ""
        if len(missing) == 1:
            return rows, f"This chat has no watch {missing[0]}."
        return rows, f"This chat has no watches {', '.join(missing)}."

    async def _unwatch_several(self, chat: int, targets: tuple[str, ...]) -> str:
        """``/unwatch w1 w2 w3``: the ones this chat has are removed, the others named."""
        rows, missing = self._find(chat, targets)
        if not rows:
            return f"{missing} /list shows its watches."
        await self.book.remove(rows)
        removed = ", ".join(f"{watch_id(r)} ({r.symbol} {r.condition})" for r in rows)
        return f"Removed {removed}." + (f" {missing}" if missing else "") + self._again(rows)

    async def _mute_button(self, row: WatchRow) -> str:
        """The /list button "Mute w1 1h": quiet for the next hour at least. A longer mute
        (``/mute w1 6h``) stays as it is: a quick tap meant "not now", never "alert me again
        sooner than I asked"."""
        wid = watch_id(row)
        until = self.clock() + MUTE_BUTTON_S
        if row.muted_until is not None and row.muted_until >= until:
            return f"{wid} is already muted until {self._at(row.chat_id, row.muted_until * 1000)}."
        await self.book.mute([row], until)
        return f"Muted {wid} for 1h."

    def _next_local(self, chat: int, minute: int) -> float:
        """The next time (wall clock, s) it is ``minute`` of the day in ``chat``'s zone: today's
        when still to come, else tomorrow's; a time the change to summer time skips is the
        first one after it, one the change back repeats the first of the two."""
        zone = self._zone(chat) or dt.UTC
        now = self.clock()
        wall = dt.datetime.combine(
            dt.datetime.fromtimestamp(now, zone).date(), dt.time(*divmod(minute, 60))
        )
        while True:
            at = wall.replace(tzinfo=zone)
            # a wall time that does not come back as itself was skipped: the next minute
            if dt.datetime.fromtimestamp(at.timestamp(), zone).replace(tzinfo=None) != wall:
                wall += dt.timedelta(minutes=1)
            elif at.timestamp() <= now:
                wall = dt.datetime.combine(
                    wall.date() + dt.timedelta(days=1), dt.time(*divmod(minute, 60))
                )
            else:
                return at.timestamp()

    async def mute(self, chat: int, target: str, until: float, more: tuple[str, ...] = ()) -> str:
        """``/mute``: exactly until the time typed (wall clock, s), also when that shortens a
        longer mute (typed, it is the user's choice, unlike the /list button's), which the
        answer says. ``more``: other ids (``/mute w1 w2 1h``); those the chat has not are
        named."""
        rows, missing = self._find(chat, (target, *more))
        if not rows:
            return f"{missing} /list shows its watches." if more else self._none(target)
        shortened = [
            (watch_id(r), self._at(chat, r.muted_until * 1000))
            for r in rows
            if r.muted_until is not None and r.muted_until > until
        ]
        await self.book.mute(rows, until)
        which = (
            f"all {len(rows)} watches"
            if target == "all" and len(rows) > 1  # the only one: named, as by its id
            else ", ".join(watch_id(r) for r in rows)
        )
        text = f"Muted {which} until {self._at(chat, until * 1000)}."
        if missing:
            text += f" {missing}"
        if shortened and len(rows) == 1:
            text += f" That shortens its mute, which was until {shortened[0][1]}."
        elif shortened:
            shown = [f"{wid} (was until {was})" for wid, was in shortened[:MUTES_SHOWN]]
            if len(shortened) > len(shown):
                shown.append(f"and {len(shortened) - len(shown)} more")
            text += f" This shortened the mute of {', '.join(shown)}."
        return text + " /unmute ends it sooner."

    async def unmute(self, chat: int, target: str, more: tuple[str, ...] = ()) -> str:
        rows, missing = self._find(chat, (target, *more))
        if not rows:
            return f"{missing} /list shows its watches." if more else self._none(target)
        now = self.clock()
        muted = [r for r in rows if r.muted_until and r.muted_until > now]
        if not muted and target == "all":
            return "No watch here is muted: all of them alert."
        parts = []
        if muted:
            await self.book.mute(muted, None)
            if len(muted) == 1:
                parts.append(f"Unmuted {watch_id(muted[0])}.")
            else:
                parts.append(
                    f"Unmuted {len(muted)} watches: {', '.join(watch_id(r) for r in muted)}."
                )
        quiet = [watch_id(r) for r in rows if r not in muted] if target != "all" else []
        if len(quiet) == 1:
            parts.append(f"{quiet[0]} is not muted: it alerts.")
        elif quiet:
            parts.append(f"{', '.join(quiet)} are not muted: they alert.")
        if missing:
            parts.append(missing)
        return " ".join(parts)

    def _none(self, target: str) -> str:
        if target == "all":
            return f"This chat has no watches. Add one with /watch, e.g. {FIRST_WATCH}"
        return f"This chat has no watch {target}. /list shows its watches."

    def _fetches(self, symbol: str) -> bool:
        """Whether /price ``symbol`` asks Binance: the engine has no ticker of it, and Binance
        lists it or may list it."""
        resolved = self._resolve(symbol)
        return not (
            self.prices is None
            or self.engine.last_ticker(resolved) is not None
            or (resolved not in self.directory.known() and self.directory.authoritative)
        )

    async def _lookup(self, prices: PriceLookup, symbol: str) -> Ticker | Failed | None:
        """Binance's 24h ticker of ``symbol`` (within the feed's price_timeout,
        PriceLookup's own bound); None: the bot is stopping, and gave it up."""
        if self._stopping:
            return None
        task = asyncio.create_task(prices.get(symbol), name="price")
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)
        try:
            await asyncio.wait((task,))  # the lookup cancelled by the stop is not this one
        finally:
            task.cancel()  # this command cancelled: so is its lookup (done: nothing)
        return None if task.cancelled() else task.result()

    async def price_or_fetch(self, chat: int, symbol: str) -> str | None:
        """/price: the engine's last ticker; without one, of a symbol Binance lists or may
        list, its 24h ticker asked of Binance once (a failure: the answer without, and why).
        The chat's later commands wait for it (ChatOrder), no other chat's. None: the bot
        stopped meanwhile (no answer)."""
        resolved = self._resolve(symbol)
        if self.prices is None or not self._fetches(symbol):
            return self.price(chat, symbol)
        fetched = await self._lookup(self.prices, resolved)
        if fetched is None:
            return None
        if isinstance(fetched, Failed) and fetched.unknown:
            # the symbol list could not be read (or does not have it yet): Binance says so now
            hint = self.directory.suggest(resolved)
            return f"Unknown symbol {resolved}: Binance does not list it." + (
                f" Did you mean {hint}?" if hint else ""
            )
        if isinstance(fetched, Failed):
            return f"{self.price(chat, symbol)}\n{fetched.reason}"
        return self.price(chat, symbol, fetched)

    def price(self, chat: int, symbol: str, fetched: Ticker | None = None) -> str:
        """``fetched``: a ticker fetched from Binance, shown as such."""
        symbol = self._resolve(symbol)
        t = fetched if fetched is not None else self.engine.last_ticker(symbol)
        if t is None:
            known = self.directory.known()
            if symbol not in known and self.directory.authoritative:
                near = self.directory.suggest(symbol)
                return f"Unknown symbol {symbol}." + (f" Did you mean {near}?" if near else "")
            if symbol in known and self.feed.carries(symbol):
                # watched (or on the all-market stream): its first price is on the way
                return f"No price for {symbol} yet: its first one comes within seconds. Ask again."
            unchecked = (
                ""
                if symbol in known
                else f" (whether Binance lists {symbol} cannot be checked right now either)"
            )
            return (
                f"No price for {symbol} yet{unchecked}: the feed carries only watched symbols "
                f"right now. Watch it ({hint(f'/watch {symbol} ...')}) and ask again."
            )
        lines = [
            f"{symbol} {t.price_text} ({self._change(chat, t)})",
            f"24h high {format_number(t.high)} · low {format_number(t.low)}",
            f"volume {format_amount(t.volume)} · quote volume {format_amount(t.quote_volume)}",
            f"at {self._at(chat, t.time)}"
            + (", fetched from Binance on request" if fetched else ""),
        ]
        if self.sparklines is not None:
            spark = self.sparklines.of(symbol, t.close)
            if spark:
                lines.append(spark)
        mine = [r for r in self.book.of_chat(chat) if r.symbol == symbol]
        lines += _levels(mine, t, self._moved_text)
        return "\n".join(lines)

    def _change(self, chat: int, t: Ticker) -> str:
        """A ticker's 24h change as alerts show it (``+4.999% 24h``): the value rules compare,
        with more decimals than 2 where those would put it past a threshold of the chat's
        watches of the symbol."""
        near = _thresholds(self.book.of_chat(chat), t.symbol, "change_24h")
        change = percent_text(percent(t.close - t.open, t.open), near, "+")
        return "24h change n/a" if change == "n/a" else f"{change}% 24h"

    def listing(
        self, chat: int, page: int = 1, symbol: str | None = None
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        """One page of the chat's watches (``symbol``'s only, when given), within Telegram's
        length (a later page than the last shows the last); the buttons act on that page's
        watches, and show the same page again after a press."""
        rows = self._listed_rows(chat, symbol)
        if not rows:
            if symbol is None:
                return f"No watches here yet. Add one: {FIRST_WATCH}", None
            others = len(self.book.of_chat(chat))
            every = (
                f"/list shows its {plural(others, 'watch', 'watches')}" if others else "it has none"
            )
            return f"This chat has no watch of {symbol}: {every}.", None
        pages, files = self._pages(chat, rows, symbol)
        page = min(max(page, 1), len(pages))
        start, end = pages[page - 1]
        now = self.clock()
        of = "" if symbol is None else f" of {symbol}"
        if len(pages) == 1:
            lines = [f"{len(rows)} watch{'es' if len(rows) != 1 else ''}{of}:"]
        else:
            lines = [f"{len(rows)} watches{of}, page {page} of {len(pages)}:"]
        # a press shows the same page again, of the same symbol when it fits in the button
        shown = f"{page}:{symbol}" if symbol is not None else str(page)
        buttons = []
        for r in rows[start:end]:
            wid = watch_id(r)
            lines.append(self._watch_line(r, now))
            again = shown if len(f"mute:{wid}:{shown}".encode()) <= BUTTON_DATA_MAX else page
            buttons.append(
                [
                    InlineKeyboardButton(f"Remove {wid}", callback_data=f"rm:{wid}:{again}"),
                    InlineKeyboardButton(f"Mute {wid} 1h", callback_data=f"mute:{wid}:{again}"),
                ]
            )
        if end < len(rows):
            following = f"/list {symbol} {page + 1}" if symbol else f"/list {page + 1}"
            lines.append(f"… and {len(rows) - end} more: {hint(following)}")
        if files and page == 1:
            lines.append(files)
        return "\n".join(lines), InlineKeyboardMarkup(buttons)

    def _listed_rows(self, chat: int, symbol: str | None) -> list[WatchRow]:
        """The chat's watches /list shows, by id: ``symbol``'s only, when given (a pattern
        watch of an admin's among them when it matches the symbol)."""
        rows = self.book.of_chat(chat)
        if symbol is not None:
            rows = [r for r in rows if r.symbol == symbol or fnmatchcase(symbol, r.symbol)]
        return sorted(rows, key=lambda r: r.id)

    def export_text(self, chat: int) -> str:
        """``/export``: the chat's watches as /watch commands, one a line, in blocks of at
        most MAX_BATCH, each a message's worth to send back (here, in another chat, to another
        bot) to make them again. A ``for`` end is the time left, rounded up to the minute;
        mutes and forum topics are not in them."""
        rows = self.book.of_chat(chat)
        if not rows:
            return f"This chat has no watches to export. Add one with /watch, e.g. {FIRST_WATCH}"
        blocks = _blocks(self._commands_of(rows))
        parts = (
            f"in {len(blocks)} messages, one for each block below"
            if len(blocks) > 1
            else "as one message"
        )
        head = (
            f"This chat's {plural(len(rows), 'watch', 'watches')} as commands. Send them back "
            f"{parts} (here, in another chat or to another alertbot) to make them again; tap "
            "a block to copy it. Mutes and topics are not in them; a 'for' counts from when "
            "they are sent."
        )
        return "\n\n".join([head, *(hint("\n".join(b)) for b in blocks)])

    async def history(self, chat: int, h: History) -> str:
        """``/history``: the alerts sent to this chat, newest first, HISTORY_PAGE to a page,
        each with how its delivery went when it did not simply go; of a symbol or a watch."""
        symbol = None if h.symbol is None else self._resolve(h.symbol)
        total, rows = await self.book.history(
            chat,
            symbol=symbol,
            rule=h.watch,
            limit=HISTORY_PAGE,
            offset=(h.page - 1) * HISTORY_PAGE,
        )
        kept = self._kept()
        which = "" if h.watch is None and symbol is None else f" {h.watch or symbol}"
        if h.watch:
            whose = f"alerts of {h.watch} here"
        elif symbol:
            whose = f"{symbol} alerts here"
        else:
            whose = "alerts here"
        pages = -(-total // HISTORY_PAGE)
        if not total:
            return f"No {whose}{kept}." + (
                "" if which else f" {hint('/list')} shows this chat's watches."
            )
        if h.page > pages:
            last = (
                f"{hint(f'/history{which} {pages}')} is the last"
                if pages > 1
                else hint(f"/history{which}") + " shows them all"
            )
            return f"There is no page {h.page} of them: {last}."
        of = f", page {h.page} of {pages}" if pages > 1 else ""
        count = plural(total, "alert", "alerts")
        lines = [f"{whose[0].upper()}{whose[1:]}, newest first: {count}{kept}{of}."]
        lines += [self._history_line(chat, r) for r in rows]
        if h.page < pages:
            lines.append(f"Older: {hint(f'/history{which} {h.page + 1}')}")
        return "\n".join(lines)

    def _kept(self) -> str:
        """The span the database keeps alerts for, as an answer says it: `` in the last 7
        days``; "" when it keeps them all."""
        retention = self.delivery.alert_retention
        return f" in the last {_period(retention)}" if retention > 0 else ""

    def _history_line(self, chat: int, r: HistoryRow) -> str:
        line = f"{self._at(chat, r.time)}  {r.rule} {r.symbol} {r.condition}: price {r.price}"
        if r.detail:  # a move's "up 8.44% from 96", a 24h change's value
            line += f", {r.detail}"
        if r.note:
            line += f", note «{r.note}»"
        if r.gap:
            line += " · after a feed outage"
        error = "" if not r.last_error else f": {clip(r.last_error, HISTORY_ERROR_MAX)}"
        if r.state == "pending":
            line += f" · not sent yet ({plural(r.attempts, 'try', 'tries')}{error})"
        elif r.state == "fell_back":
            line += f" · not sent here yet, the fallback webhook has it{error}"
        elif r.state == "failed":
            line += f" · not delivered{error}"
        return line

    def pages(self, chat: int, symbol: str | None = None) -> int:
        """How many pages the chat's ``/list`` (of ``symbol``) fills (0: no watches)."""
        rows = self._listed_rows(chat, symbol)
        return len(self._pages(chat, rows, symbol)[0]) if rows else 0

    def _pages(
        self, chat: int, rows: list[WatchRow], symbol: str | None = None
    ) -> tuple[list[tuple[int, int]], str]:
        """The (start, end) of each page of ``rows``, and an admin's line of rule-file rules
        (none in a list of one ``symbol``).

        A page holds LIST_PAGE watches at most, fewer when their lines would not fit in one
        message next to the header, the "and N more" line and the rule files' line.
        """
        files = self._rule_files(chat) if symbol is None else ""
        budget = self.delivery.max_message - LIST_RESERVE - len(files)
        now = self.clock()
        pages: list[tuple[int, int]] = []
        start, size = 0, 0
        for i, r in enumerate(rows):
            length = len(self._watch_line(r, now)) + 1
            if i > start and (i - start >= LIST_PAGE or size + length > budget):
                pages.append((start, i))
                start, size = i, 0
            size += length
        pages.append((start, len(rows)))
        return pages, files

    def _watch_line(self, r: WatchRow, now: float) -> str:
        state = (
            f"muted until {self._at(r.chat_id, r.muted_until * 1000)}"
            if r.muted_until and r.muted_until > now
            else "active"
        )
        fired = (
            f", last fired {self._at(r.chat_id, r.last_fired)}"
            if r.last_fired
            else ", not fired yet"
        )
        extra = f", {_cooldown(r.cooldown_ms)}"
        if r.rearm:
            extra += f", rearm {format_percent(r.rearm)}"
        if r.once:
            extra += ", once"
        if r.expires_ms is not None:
            extra += f", until {self._at(r.chat_id, r.expires_ms)}"
        if r.repeat_ms:
            extra += f", repeat {format_duration(r.repeat_ms)}"
        if r.note:
            extra += f", note «{r.note}»"
        if r.topic is not None:  # where its alerts go: the forum topic it was made in
            named = self.book.topic_names.get((r.chat_id, r.topic))
            extra += f", in topic «{named[0]}»" if named else f", in topic {r.topic}"
        if r.made_by and r.chat_id < 0:  # a group's: whose it is (a private chat's are yours)
            extra += f", by {r.made_by}"
        stands = self._stands(r)
        stands = f" · {stands}" if stands else ""
        line = f"{watch_id(r)}  {r.symbol} {r.condition}{extra} — {state}{fired}{stands}"
        return _cut(line, LINE_MAX)

    def _move_now(self, r: WatchRow) -> tuple[str, bool] | None:
        """For a watch of one move (``rises 5% in 1h``): how far its symbol moved in the
        window, as its alert would say it (``up 1.20% from 67200``), and whether that is as far
        as the watch asks; None for another condition, or without a price now."""
        cond = _condition(r.condition)
        if not isinstance(cond, Move):
            return None
        t = self._fresh(r.symbol)
        seen = None if t is None else self.engine.move_now(r.symbol, cond)
        if t is None or seen is None:
            return None
        value, start = seen
        return move_text(t.close, start, cond), value >= cond.pct

    def _moved_text(self, r: WatchRow, now: str = "") -> str | None:
        """A move's watch as /price and the digest show it: ``up 1.20% from 67200``, ``…:
        true`` when as far as it asks (``now`` after the move: /list's `` now``); None for
        another condition or without a price now."""
        move = self._move_now(r)
        return None if move is None else move[0] + now + (": true" if move[1] else "")

    def _now(self, r: WatchRow) -> str | None:
        """Where a new watch of one level, crossing or move stands, for its answer: ``price
        68000.5 now, 2.94% to go``, ``change_24h +3.03% now``, a crossing already past: ``price
        71000 now, already above 70000: it fires once it goes back under and crosses again``,
        a move: ``up 1.20% from 67200 now``; None for a level true now (the answer says so),
        for other conditions, or without a price now."""
        move = self._move_now(r)
        if move is not None:
            shown, true = move
            return f"{shown} now" + (": that is true, it fires on the next tick" if true else "")
        t = self._fresh(r.symbol)
        standing = None if t is None else _standing(r, t)
        if standing is None or standing[1] == "true":
            return None
        shown, state = standing
        cond = _condition(r.condition)
        if state.startswith("already") and isinstance(cond, Cross) and cond.direction:
            back = "under" if cond.direction == "above" else "over"
            return (
                f"{shown} now, already {cond.direction} {format_number(cond.value)}: it fires "
                f"once it goes back {back} and crosses again"
            )
        return f"{shown} now, {state}" if state else f"{shown} now"

    def _stands(self, r: WatchRow) -> str | None:
        """Where a watch of one level or crossing stands now, as /list shows it after its
        state: ``price 68000.5 now, 2.94% to go`` (of the price now; other metrics their
        value alone), ``true now``, ``already above`` (a crossing above waits for the price to
        come back under first); None for other conditions, or without a price now
        (:meth:`_fresh`); for a move, how far it went in the window: ``up 1.20% from 67200
        now``."""
        moved = self._moved_text(r, " now")
        if moved is not None:
            return moved
        t = self._fresh(r.symbol)
        standing = None if t is None else _standing(r, t)
        if standing is None:
            return None
        shown, state = standing
        if state == "true":
            return f"{shown} now: true"
        return f"{shown} now, {state}" if state else f"{shown} now"

    def _rule_files(self, chat: int) -> str:
        """For an admin: how many rules the rule files hold, and the first ids (a short line)."""
        if not self._admin(chat):
            return ""
        files = [r.id for r in self.engine.rules() if watch_number(r.id) is None]
        if not files:
            return ""
        shown: list[str] = []
        size = 0
        for rule_id in files[:RULE_IDS_SHOWN]:
            rule_id = _cut(rule_id, 40)
            if size + len(rule_id) > RULE_IDS_CHARS:
                break
            shown.append(rule_id)
            size += len(rule_id) + 2
        more = len(files) - len(shown)
        names = ", ".join(shown) + (f" and {more} more" if more else "")
        return f"Rule files: {len(files)} rules ({names})"

    async def _last_alert_line(self, chat: int) -> str | None:
        """/status's line on the last alert sent to ``chat``; None: not known (the database
        failed)."""
        try:
            total, rows = await self.book.history(chat, limit=1)
        except Exception as exc:
            log.warning("chat %s: its last alert could not be read for /status: %s", chat, exc)
            return None
        if not rows:
            return f"Last alert here: none{self._kept() or ' yet'}"
        r = rows[0]
        return (
            f"Last alert here: {self._at(chat, r.time)} ({r.rule} {r.symbol} {r.condition}); "
            f"/history lists {'it' if total == 1 else f'all {total}'}"
        )

    def status(self, chat: int, last_alert: str | None = None) -> str:
        """``/status``: for an admin the feed's internals, the deliveries and polling; for
        anyone else what they can act on: whether prices are live, this chat's watches, and
        whether its alerts get through. ``last_alert``: its line on the chat's last alert."""
        if not self._admin(chat):
            return self._user_status(chat, last_alert)
        h = self.feed.health()
        age = (
            "no data yet"
            if h.last_message_age is None
            else f"last data {h.last_message_age:.1f}s ago"
        )
        outbox = self.notifier.outbox
        open_deliveries = outbox.depth if outbox else 0
        waiting = self._waiting(chat)
        lines = [
            f"Feed: {h.mode}, {plural(len(h.connections), 'connection')}, {age}, "
            f"{h.messages_per_second:g} messages/s, {plural(h.reconnects, 'reconnect')}",
            # an admin chat may be a group: each count says whose it is
            f"Watches: {len(self.book.of_chat(chat))} in this chat, "
            f"{len(self.book.rows)} in all chats",
            f"Alerts waiting for delivery: {len(waiting) + self._parked(chat)} to this chat, "
            f"{open_deliveries} in all chats and webhooks",
            *([last_alert] if last_alert else []),
            f"Rules in the engine: {len(self.engine)}, all chats' watches and the rule files'; "
            f"symbols: {self.directory.source}",
        ]
        paused = self.book.paused
        if paused:
            held = sum(1 for r in self.book.rows.values() if r.chat_id in paused)
            lines.append(
                f"Chats paused (they blocked or removed the bot): {len(paused)}, "
                f"with {plural(held, 'watch', 'watches')}"
            )
        for c in h.connections:
            last = "-" if c.last_message_age is None else f"{c.last_message_age:.1f}s"
            lines.append(
                f"  connection {c.id}: {plural(c.streams, 'stream')}, "
                f"{'open' if c.connected else 'down'}, last data {last}, "
                f"{plural(c.reconnects, 'reconnect')}"
                + (f", last error: {c.last_error}" if c.last_error else "")
            )
        if h.rotations_failed or h.switches_failed:
            lines.append(
                f"  handovers given up: rotations {h.rotations_failed}, "
                f"switches {h.switches_failed}"
            )
        if h.problems:
            lines.append("  problems: " + ", ".join(f"{k} {v}" for k, v in h.problems.items()))
        if self.backups is not None:
            lines.append(self._backup_line(chat, self.backups))
        polling = self._polling_line(chat)
        if polling:
            lines.append(polling)
        return "\n".join(lines)

    def _backup_line(self, chat: int, b: Backups) -> str:
        """An admin's /status line on the scheduled copies: the last, or that they fail."""
        every = format_duration(int(b.every * 1000))
        last = "none yet" if b.last is None else f"last {self._at(chat, b.last * 1000)}"
        line = f"Backups: {last}, one every {every}, {b.keep} kept in {b.directory}"
        if b.failed is not None:
            line += f"; FAILING since {self._at(chat, b.failing_since * 1000)}: {b.failed}"
        return line
