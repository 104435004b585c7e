"""Where an alert goes (DESIGN.md, Rule files): ``notify`` channels, else the admin chats, else
the webhook, else the console."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from alertbot.errors import ConfigError
from alertbot.notify.settings import MIN_SECRET, DeliverySettings, secret_problem
from alertbot.notify.webhook import url_problem
from alertbot.rules.model import Channel, Rule
from alertbot.settings import env_secret

log = logging.getLogger("alertbot.notify")


@dataclass(frozen=True, slots=True)
class Route:
    destination: str  # telegram:<chat> | webhook:<url> | console
    chat_id: int | None = None
    url: str | None = None


CONSOLE = Route("console")


def chat_of(name: str) -> int | None:
    """The chat a ``notify`` name ``chat:<id>`` (a chat watch's) names; None: another name."""
    kind, _, rest = name.partition(":")
    if kind != "chat":
        return None
    try:
        return int(rest)
    except ValueError:
        return None


def channel_env_problems(
    channels: Mapping[str, Channel], env: Mapping[str, str] | None = None
) -> list[str]:
    """What is wrong with what the channels take from the environment here (``VAR``, or the
    file ``VAR_FILE`` names): a ``webhook_env`` whose variable is not set, or holds no URL
    that can be posted to (every alert to it lost); a ``secret_env`` whose variable is not set
    (its webhook would get unsigned requests, which a receiver that checks signatures refuses
    for good: every alert to it lost, without a word) or is too short; a ``_FILE`` that cannot
    be read. A URL is shown as log lines show it (it may be its own credential)."""
    e = os.environ if env is None else env
    problems = []
    for name, channel in channels.items():
        for var in filter(None, (channel.webhook_env, channel.secret_env)):
            try:
                value = env_secret(e, var)
            except ConfigError as exc:
                problems.append(f"channel {name!r}: {exc}")
                continue
            key = "webhook_env" if var == channel.webhook_env else "secret_env"
            if value is None:
                problems.append(
                    f"channel {name!r}: its {key} {var} is not set in the environment (nor "
                    f"{var}_FILE)"
                )
            elif key == "webhook_env" and (problem := url_problem(value.strip())) is not None:
                problems.append(f"channel {name!r}: {var}: {problem}")
            elif key == "secret_env" and len(value) < MIN_SECRET:
                problems.append(f"channel {name!r}: {var}: {secret_problem(value)}")
    return problems


class Router:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        settings: DeliverySettings,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.env = os.environ if env is None else env
        self._warned: set[str] = set()
        # by a rule's notify list: every alert asks, and the answer changes only with channels
        self._routes: dict[tuple[str, ...], tuple[Route, ...]] = {}
        # the rule files' rules that notify a channel in a forum topic: id -> their notify;
        # None: to be found again (the rules or the channels changed), at the first asking
        self._topical: dict[str, tuple[str, ...]] | None = None
        self._rules: tuple[Rule, ...] = ()
        # what the channels' webhook_env and secret_env hold here (a _FILE read once)
        self._values: dict[str, str | None] = {}
        self._refused: set[tuple[int, int]] = set()  # (chat, topic) Telegram refused
        self.channels = dict(channels)

    @property
    def channels(self) -> dict[str, Channel]:
        return self._channels

    @channels.setter
    def channels(self, channels: dict[str, Channel]) -> None:
        self._values.clear()  # a reload: a secret's file may have been replaced
        self._channels = {name: self._resolved(c) for name, c in channels.items()}
        self._routes.clear()
        self._refused.clear()  # a reload: the operator may have opened or changed the topic
        self._topical = None

    def _resolved(self, channel: Channel) -> Channel:
        """A ``webhook_env`` channel with its URL from the environment (unset: no URL, as
        :func:`channel_env_problems` reports before a start or a reload takes it)."""
        if not channel.webhook_env:
            return channel
        return dataclasses.replace(
            channel, webhook=(self._value(channel.webhook_env) or "").strip() or None
        )

    def _value(self, var: str) -> str | None:
        """``var``'s value here, or its ``_FILE``'s (None: neither, or a file that cannot be
        read, which :func:`channel_env_problems` reports before a start or a reload)."""
        if var not in self._values:
            try:
                self._values[var] = env_secret(self.env, var)
            except ConfigError:
                self._values[var] = None
        return self._values[var]

    @property
    def telegram(self) -> bool:
        return self.settings.telegram_token is not None

    def routes(self, rule: Rule) -> tuple[Route, ...]:
        routes = self._routes.get(rule.notify)
        if routes is None:
            routes = self._routes[rule.notify] = tuple(self._resolve(rule))
        return routes

    def _resolve(self, rule: Rule) -> list[Route]:
        out: list[Route] = []
        for name in rule.notify:
            channel = self.channels.get(name)
            if channel is None:  # the loader refuses unknown names; chat watches name chats
                out.extend(self._chat_route(name))
                continue
            if channel.telegram is not None:
                out.append(self._telegram(channel.telegram, f"channel {name!r}"))
            if channel.webhook is not None:
                out.append(Route(f"webhook:{channel.webhook}", url=channel.webhook))
        if not out:
            out = self.default_routes()
        unique = {r.destination: r for r in out}
        return list(unique.values())

    def default_routes(self) -> list[Route]:
        cfg = self.settings
        if self.telegram and cfg.admin_chats:
            return [Route(f"telegram:{chat}", chat_id=chat) for chat in cfg.admin_chats]
        if cfg.webhook_url:
            return [Route(f"webhook:{cfg.webhook_url}", url=cfg.webhook_url)]
        if self.telegram and "no-admins" not in self._warned:
            self._warned.add("no-admins")
            log.warning(
                "alerts of rules without 'notify' go to the console: set ALERTBOT_ADMIN_CHATS "
                "to send them to Telegram (a chat's id: send the bot /start from it)"
            )
        return [CONSOLE]

    def _chat_route(self, name: str) -> list[Route]:
        chat = chat_of(name)
        return [] if chat is None else [self._telegram(chat, name)]

    def _telegram(self, chat: int, what: str) -> Route:
        if self.telegram:
            return Route(f"telegram:{chat}", chat_id=chat)
        if what not in self._warned:
            self._warned.add(what)
            log.warning(
                "%s is a Telegram chat but ALERTBOT_TELEGRAM_TOKEN is not set: its alerts go "
                "to the fallback instead",
                what,
            )
        cfg = self.settings
        if cfg.webhook_url:
            return Route(f"fallback:{chat}:{cfg.webhook_url}", chat_id=chat, url=cfg.webhook_url)
        return CONSOLE

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """The rule files' rules, for the forum topics their alerts go to (:meth:`topic_for`,
        which asks by rule id: a delivery resumed after a restart has no rule at hand)."""
        self._rules = tuple(rules)  # read again when the channels change
        self._topical = None

    def topic_for(self, rule_id: str, chat: int) -> int | None:
        """The forum topic of ``chat`` that rule ``rule_id``'s alerts go to: its ``notify``
        channel's for that chat; None: the chat itself (no such channel or no topic, or a topic
        Telegram refused, until the rules are reloaded)."""
        if self._topical is None:  # once per change of the rules or channels, not per alert
            topical = {n for n, c in self.channels.items() if c.topic is not None}
            self._topical = (
                {r.id: r.notify for r in self._rules if not topical.isdisjoint(r.notify)}
                if topical
                else {}
            )
        notify = self._topical.get(rule_id)
        if notify is None:
            return None
        for name in notify:
            channel = self.channels.get(name)
            if channel is not None and channel.telegram == chat and channel.topic is not None:
                return None if (chat, channel.topic) in self._refused else channel.topic
        return None

    def topic_refused(self, chat: int, topic: int) -> None:
        """Telegram refused ``chat``'s forum topic ``topic`` (deleted or closed): the rule
        files' alerts for it go to the chat itself from now on, told once."""
        names = [n for n, c in self.channels.items() if c.telegram == chat and c.topic == topic]
        if names and (chat, topic) not in self._refused:
            self._refused.add((chat, topic))
            log.warning(
                "%s: Telegram refuses topic %s of chat %s (deleted or closed): its alerts go to "
                "the chat itself (its General topic) until the rules are reloaded",
                ", ".join(f"channel {n!r}" for n in names),
                topic,
                chat,
            )

    def format_for(self, url: str) -> str | None:
        """The body a webhook URL was configured to take (a channel's ``format``, or
        ALERTBOT_WEBHOOK_FORMAT for ALERTBOT_WEBHOOK_URL); None: told by its host."""
        if url == self.settings.webhook_url and self.settings.webhook_format:
            return self.settings.webhook_format
        return next((c.format for c in self._channels_at(url) if c.format), None)

    def secret_for(self, url: str) -> str | None:
        """The signing secret of a webhook URL, from the environment (never from rule files)."""
        if url == self.settings.webhook_url:
            return self.settings.webhook_secret
        env = next((c.secret_env for c in self._channels_at(url) if c.secret_env), None)
        return None if env is None else self._value(env)

    def _channels_at(self, url: str) -> Iterator[Channel]:
        """The rule files' channels that post to ``url``."""
        return (c for c in self.channels.values() if c.webhook == url)
