"""Chat watches: rules owned by a chat, persisted in SQLite, live in the engine at once."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from alertbot.errors import ConditionError, ConfigError
from alertbot.notify.settings import parse_chats
from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.ids import watch_number, watch_rule_id
from alertbot.rules.model import Rule
from alertbot.settings import env_int, env_seconds
from alertbot.store import HistoryRow, Pause, Store, WatchRow

log = logging.getLogger("alertbot.chat")
T = TypeVar("T")
Db = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ChatSettings:
    allowed_chats: tuple[int, ...] = ()  # empty: open to everyone
    admin_chats: tuple[int, ...] = ()
    max_watches: int = 50  # per chat, in open mode
    default_cooldown_ms: int = 300_000
    default_rearm: float = 0.0
    #: while polling for commands keeps failing, its warning is repeated this often (s; 0: never)
    poll_reminder: float = 3600.0
    #: a poll for commands that Telegram has not answered this long after its long poll's
    #: timeout is given up (timed out) and sent again (s); two polls' time without an answer
    #: (2 x (timeout + margin)) is an outage
    poll_margin: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChatSettings:
        e = os.environ if env is None else env
        return cls(
            allowed_chats=parse_chats(
                "ALERTBOT_ALLOWED_CHATS", e.get("ALERTBOT_ALLOWED_CHATS", "")
            ),
            admin_chats=parse_chats("ALERTBOT_ADMIN_CHATS", e.get("ALERTBOT_ADMIN_CHATS", "")),
            max_watches=env_int(e, "ALERTBOT_MAX_WATCHES", 50, minimum=1),
            default_cooldown_ms=int(
                env_seconds(e, "ALERTBOT_WATCH_COOLDOWN", 300.0, minimum=0) * 1000
            ),
            poll_reminder=_poll_reminder(e),
            # a poll answered empty at the very end of its long poll must not time out
            poll_margin=env_seconds(e, "ALERTBOT_CHAT_POLL_MARGIN", 10.0, minimum=1.0),
        )

    def allowed(self, chat: int) -> bool:
        return not self.allowed_chats or chat in self.allowed_chats or chat in self.admin_chats

    def admin(self, chat: int) -> bool:
        return chat in self.admin_chats


#: the shortest ALERTBOT_CHAT_POLL_REMINDER but 0 (seconds): more often is a line per failed poll,
#: which the reminder is there to spare the log
POLL_REMINDER_MIN = 60.0


def _poll_reminder(env: Mapping[str, str]) -> float:
    name = "ALERTBOT_CHAT_POLL_REMINDER"
    value = env_seconds(env, name, 3600.0)
    if 0 < value < POLL_REMINDER_MIN:
        raise ConfigError(
            f"{name}: must be at least {POLL_REMINDER_MIN:g}s (or 0: no reminder), "
            f"got {env[name].strip()!r}"
        )
    return value


def watch_id(row: WatchRow) -> str:
    """The watch's rule id, ``w12``: rule files may not use such ids (alertbot.rules.ids)."""
    return watch_rule_id(row.id)


#: a paused chat's watches are muted until then (event time, ms): until it is back
PAUSED_UNTIL_MS = 2**62


def rule_for(row: WatchRow, *, paused: bool = False) -> Rule:
    """The engine's rule for a watch (raises ConditionError for a condition that no longer
    parses, e.g. after a language change). ``paused``: its chat blocked the bot; the rule is
    muted until the chat is back (the watch's own /mute stays in its row, for then)."""
    muted = PAUSED_UNTIL_MS if paused else None
    if muted is None and row.muted_until:
        muted = int(row.muted_until * 1000)
    return Rule(
        id=watch_id(row),
        condition=parse(row.condition),
        symbols=(row.symbol,),
        cooldown_ms=row.cooldown_ms,
        rearm=row.rearm,
        once=row.once,
        expires_ms=row.expires_ms,
        # the engine holds a muted watch back itself, so that the firing is not used up: a
        # level still true when the mute ends alerts then, a ``once`` watch stays unfired
        muted_until_ms=muted,
        notify=(f"chat:{row.chat_id}",),
        origin=f"chat {row.chat_id}",
        note=row.note,
        repeat_ms=row.repeat_ms,
    )


class WatchBook:
    """The chats' watches, in memory, in the database and in the engine, kept in step."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        db: Db,
        on_change: Callable[[], object],
        settings: ChatSettings,
        clock: Callable[[], float] = time.time,
        topics: dict[int, tuple[int, int]] | None = None,
        zones: dict[int, str] | None = None,
        quiet: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        """``topics``: the watches made in a forum topic, as read when the database opened
        (the notifier's, which tells the Telegram sender where each watch's alerts go), kept
        up to date here. ``zones``: the chats' time zones (the notifier's, which shows a
        watch's alert time in its chat's), read at :meth:`load` and kept up to date here;
        ``quiet``: the chats' quiet hours (the notifier's, which sends alerts without a sound
        in them), likewise."""
        self.engine = engine
        self.store = store
        self.db = db  # runs a store call on the database thread
        self.on_change = on_change  # the feed's subscriptions follow the engine's rules
        self.settings = settings
        self.clock = clock
        self.rows: dict[int, WatchRow] = {}
        self.digests: dict[int, int] = {}  # chat -> minute of the day, in the chat's zone
        #: chat -> its /timezone (alertbot.zones); none: UTC
        self.zones: dict[int, str] = {} if zones is None else zones
        #: chat -> its /quiet hours: (start, end) minutes of the day in its zone
        self.quiet: dict[int, tuple[int, int]] = {} if quiet is None else quiet
        #: chat -> the day (its zone's) and minute its digest was last sent at: the hour a
        #: change back from summer time repeats does not send it twice, across a restart too
        #: (a new /digest time later that day does)
        self.digests_sent: dict[int, tuple[dt.date, int]] = {}
        #: (chat, forum topic) -> (its name, whether from a rename), as the bot saw them
        self.topic_names: dict[tuple[int, int], tuple[str, bool]] = {}
        #: a supergroup's id -> its group's: the settings may still name the group
        self.successors: dict[int, int] = {}
        #: the chats that blocked the bot (or removed it): their watches wait, muted
        self.paused: dict[int, Pause] = {}
        #: a group's watch ended by its move (its supergroup had made the same) -> the
        #: supergroup's, which alerts in its place (this run's moves)
        self.merged: dict[int, int] = {}
        #: the watches made in a forum topic, ended ones too (a ``once`` watch's alert may
        #: still be on its way): id -> (chat, topic)
        self.topics: dict[int, tuple[int, int]] = {} if topics is None else topics

    def _rule(self, row: WatchRow) -> Rule:
        return rule_for(row, paused=row.chat_id in self.paused)

    async def set_quiet(self, chat: int, window: tuple[int, int] | None) -> None:
        """``chat``'s quiet hours (start, end minutes of the day in its zone); None: none."""
        await self.db(self.store.set_quiet, chat, window)
        if window is None:
            self.quiet.pop(chat, None)
        else:
            self.quiet[chat] = window

    async def set_zone(self, chat: int, zone: str | None) -> None:
        """``chat``'s time zone; None: UTC."""
        await self.db(self.store.set_zone, chat, zone)
        if zone is None:
            self.zones.pop(chat, None)
        else:
            self.zones[chat] = zone

    async def name_topic(self, chat: int, topic: int, name: str, *, edited: bool) -> None:
        """``chat``'s forum topic ``topic`` is called ``name``: from a rename (``edited``), or
        as its messages carry it (its creation's name, which a rename does not change there:
        it replaces no rename's)."""
        known = self.topic_names.get((chat, topic))
        if known == (name, edited) or (known is not None and known[1] and not edited):
            return
        await self.db(self.store.set_topic_name, chat, topic, name, edited)
        self.topic_names[(chat, topic)] = (name, edited)

    async def digest_sent(self, chat: int, day: dt.date, minute: int) -> None:
        """The digest of ``day`` at ``minute`` (local) goes to ``chat`` now: not again, after
        a restart within a repeated hour either."""
        self.digests_sent[chat] = (day, minute)
        await self.db(self.store.set_digest_sent, chat, day, minute)

    async def set_digest(self, chat: int, minute: int | None) -> None:
        await self.db(self.store.set_digest, chat, minute)
        if minute is None:
            self.digests.pop(chat, None)
        else:
            self.digests[chat] = minute

    def _enter(self, row: WatchRow) -> bool:
        """``row`` into the engine and the book; False (logged) when its condition no longer
        parses (e.g. after a language change)."""
        try:
            self.engine.add_rule(self._rule(row))
        except (ConditionError, ValueError) as exc:
            log.error("watch w%d of chat %d cannot be loaded: %s", row.id, row.chat_id, exc)
            return False
        self.rows[row.id] = row
        return True

    async def load(self) -> int:
        self.digests = await self.db(self.store.digests)
        self.zones.update(await self.db(self.store.zones))
        self.quiet.update(await self.db(self.store.quiet_hours))
        self.topic_names = await self.db(self.store.topic_names)
        self.digests_sent = await self.db(self.store.digests_sent)
        self.successors.update(await self.db(self.store.chat_moves))
        self.paused = await self.db(self.store.paused_chats)
        rows: list[WatchRow] = await self.db(self.store.watches)
        for row in rows:
            if not self._enter(row):
                continue
        if rows:
            self.on_change()
        return len(self.rows)

    def of_chat(self, chat: int) -> list[WatchRow]:
        return [r for r in self.rows.values() if r.chat_id == chat]

    def find(self, chat: int, target: str) -> list[WatchRow]:
        """``all`` or a watch id of this chat (``w12`` or ``12``); [] when there is none."""
        mine = self.of_chat(chat)
        if target == "all":
            return mine
        number = target.lower().removeprefix("w")
        return [r for r in mine if str(r.id) == number]

    async def add(self, row: WatchRow) -> WatchRow:
        return (await self.add_all([row]))[0]

    async def add_all(self, rows: list[WatchRow]) -> list[WatchRow]:
        """``rows`` as watches, all or none (``/watch`` of several symbols): stored in one
        transaction, then entered in the engine; when the engine refuses one, those entered
        are taken out again and all are ended in the database, and the error raised."""
        if not rows:
            return []
        now = self.clock()
        for row in rows:
            row.created = row.created or now
        ids = await self.db(self.store.add_watches, rows)
        entered: list[WatchRow] = []
        try:
            for row, id_ in zip(rows, ids, strict=True):
                row.id = id_
                self.engine.add_rule(self._rule(row))
                entered.append(row)
        except Exception:
            for row in entered:
                self.engine.remove_rule(watch_id(row))
            await self.db(self.store.end_watches, ids)
            raise
        for row in rows:
            self.rows[row.id] = row
            if row.topic is not None:
                self.topics[row.id] = (row.chat_id, row.topic)
        self.on_change()
        return rows

    async def clear_topic(self, chat: int, topic: int) -> list[WatchRow]:
        """Telegram refused ``chat``'s forum topic ``topic`` (deleted, closed): the watches
        made there alert in the chat itself from now on. Returns those still active."""
        await self.db(self.store.clear_topic, chat, topic)
        for number, (c, t) in list(self.topics.items()):
            if (c, t) == (chat, topic):
                del self.topics[number]
        rows = [r for r in self.of_chat(chat) if r.topic == topic]
        for r in rows:
            r.topic = None
        return rows

    async def remove(self, rows: list[WatchRow]) -> None:
        if not rows:
            return
        await self.db(self.store.end_watches, [r.id for r in rows])
        self._forget(rows)

    def _forget(self, rows: list[WatchRow]) -> None:
        for r in rows:
            self.rows.pop(r.id, None)
            self.engine.remove_rule(watch_id(r))
        self.on_change()

    async def edit(self, row: WatchRow, new: WatchRow) -> bool:
        """``row`` gets ``new``'s symbol, condition, options and note (/edit), in the database and
        the engine, which keeps its firing state unless the symbol, condition or band
        changed. False: the watch ended meanwhile (a ``once`` watch that fired). Raises
        ConditionError for a condition that does not parse (nothing changed then)."""
        rule_for(new)  # parses, before anything is written
        await self.db(self.store.edit_watch, new)
        if self.rows.get(row.id) is not row:
            return False
        moved = row.symbol != new.symbol
        row.symbol, row.condition = new.symbol, new.condition
        row.cooldown_ms, row.rearm = new.cooldown_ms, new.rearm
        row.once, row.expires_ms = new.once, new.expires_ms
        row.note, row.repeat_ms = new.note, new.repeat_ms
        self.engine.replace_rule(self._rule(row))  # a new symbol starts afresh
        if moved:
            self.on_change()  # the feed's streams: the new symbol's, not the old one's
        return True

    async def mute(self, rows: list[WatchRow], until: float | None) -> None:
        await self.db(self.store.mute_watches, [r.id for r in rows], until)
        for r in rows:
            if self.rows.get(r.id) is not r:  # removed meanwhile (a once watch that fired)
                continue
            r.muted_until = until
            self.engine.replace_rule(self._rule(r))  # keeps its firing state

    async def move_chat(self, old: int, new: int) -> list[WatchRow]:
        """A group became a supergroup: its watches (with their firing state), digest and
        pause now belong to, and alert, the new chat id. Returns the watches moved.

        A watch the new chat has already (the same symbol and condition: made again there
        before the move was known) stays one watch, the new chat's: the group's copy ends.
        """
        have = {(r.symbol, r.condition): r.id for r in self.of_chat(new)}
        twins = [r for r in self.of_chat(old) if (r.symbol, r.condition) in have]
        if twins:
            await self.remove(twins)
            for r in twins:
                self.merged[r.id] = have[(r.symbol, r.condition)]
        # the group's pause is the supergroup's (with the supergroup's own, if it has one):
        # its watches stay quiet there and its refused alerts are named when it is back
        pause = self._joined_pause(old, new)
        await self.db(self.store.move_chat, old, new, pause)
        self.paused.pop(old, None)
        if pause is not None:
            self.paused[new] = pause
        moved = self.of_chat(old)
        for row in moved:
            row.chat_id = new
            self.engine.replace_rule(self._rule(row))  # the same condition: its state is kept
        minute = self.digests.pop(old, None)
        if minute is not None:
            self.digests.setdefault(new, minute)
        zone = self.zones.pop(old, None)
        if zone is not None:
            self.zones.setdefault(new, zone)
        window = self.quiet.pop(old, None)
        if window is not None:
            self.quiet.setdefault(new, window)
        return moved

    def _joined_pause(self, old: int, new: int) -> Pause | None:
        """The pause of the supergroup ``new`` once the group ``old`` is moved into it: the
        group's, or the supergroup's own, or both joined (the earlier start and its reason, the
        refused alerts of both); None: neither is paused."""
        theirs, mine = self.paused.get(old), self.paused.get(new)
        if theirs is None or mine is None:
            return mine if theirs is None else theirs
        first, second = (theirs, mine) if theirs.since <= mine.since else (mine, theirs)
        missed = [*first.missed, *(i for i in second.missed if i not in first.missed)]
        return Pause(first.since, first.reason, missed)

    # ------------------------------------------------------------------ chats that blocked the bot

    def pause(self, chat: int, reason: str, missed: list[str], since: float | None = None) -> bool:
        """Telegram refused ``chat`` (the user blocked the bot, or a group removed it): its
        watches stay and stop firing until it is back (:meth:`resume`); ``missed``, the alerts
        it refused, are noted for then. In memory and the engine at once (no alert of it is
        fired from now on); :meth:`save_pause` writes it. ``since``: when Telegram refused it
        (wall clock, s; now when not given). Returns whether it is new."""
        pause = self.paused.get(chat)
        new = pause is None
        if pause is None:
            pause = self.paused[chat] = Pause(self.clock() if since is None else since, reason)
            for row in self.of_chat(chat):
                self.engine.replace_rule(self._rule(row))  # keeps its firing state
        pause.missed.extend(i for i in missed if i not in pause.missed)
        return new

    async def save_pause(self, chat: int) -> None:
        pause = self.paused.get(chat)
        if pause is not None:
            copy = Pause(pause.since, pause.reason, [*pause.missed])  # as it is now
            await self.db(self.store.pause_chat, chat, copy)

    async def revive(self, fired: list[tuple[int, int]]) -> list[WatchRow]:
        """The ``once`` watches that ended with an alert Telegram refused (watch id, event
        time): not delivered, not done. Back in the engine (muted while their chat is paused),
        with no firing state: their next time alerts."""
        rows: list[WatchRow] = await self.db(self.store.revive_watches, fired)
        back = []
        for row in rows:
            if row.id in self.rows:
                continue
            if not self._enter(row):
                continue
            back.append(row)
        if back:
            self.on_change()
        return back

    async def resume(self, chat: int) -> tuple[Pause, list[tuple[int, str]]] | None:
        """``chat`` is back (it sent a command): its watches fire again. Returns its pause and
        the (event time, text) of the alerts it refused meanwhile; None: it was not paused."""
        pause = self.paused.pop(chat, None)
        if pause is None:
            return None
        for row in self.of_chat(chat):
            self.engine.replace_rule(self._rule(row))  # its own /mute, if any, holds again
        await self.db(self.store.resume_chat, chat)
        return pause, await self.db(self.store.alert_texts, pause.missed)

    async def history(
        self,
        chat: int,
        *,
        symbol: str | None = None,
        rule: str | None = None,
        since: int | None = None,
        limit: int,
        offset: int = 0,
    ) -> tuple[int, list[HistoryRow]]:
        """The alerts sent (or being sent) to ``chat``, its id before it became a supergroup
        included (/history; see Store.history)."""
        ids = [chat] if (old := self.successors.get(chat)) is None else [chat, old]
        found: tuple[int, list[HistoryRow]] = await self.db(
            lambda: self.store.history(
                [f"telegram:{i}" for i in ids],
                symbol=symbol,
                rule=rule,
                since=since,
                limit=limit,
                offset=offset,
            )
        )
        return found

    def row_of_rule(self, rule_id: str) -> WatchRow | None:
        number = watch_number(rule_id)
        return None if number is None else self.rows.get(number)

    def fired(self, row: WatchRow, time_ms: int) -> None:
        """Note an alert of ``row`` here; a ``once`` watch is done, and leaves the engine. Its
        row in the database changes in the transaction that stores the alert (App.emit,
        AlertRecord.watch): a watch never ends on disk without its alert, and a crash before
        that transaction leaves the watch as it was (it fires again, as an alert is sent
        again: at least once)."""
        row.last_fired = time_ms
        if row.once:
            self._forget([row])

    async def expire(self) -> list[WatchRow]:
        """Remove watches whose ``for`` time is over; returns them (their chats get a note)."""
        now_ms = int(self.clock() * 1000)
        gone = [
            r for r in self.rows.values() if r.expires_ms is not None and r.expires_ms <= now_ms
        ]
        await self.remove(gone)
        return gone
