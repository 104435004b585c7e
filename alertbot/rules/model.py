"""Rule values shared by the loader, the engine and (later) chat watches."""

from __future__ import annotations

from dataclasses import dataclass, field

from alertbot.rules.conditions import Breaks, Condition, Cross, format_condition

PLACEHOLDERS = frozenset(
    {
        "rule",
        "symbol",
        "condition",
        "price",
        "open",
        "high",
        "low",
        "volume",
        "quote_volume",
        "change_24h",
        "range_24h",
        "threshold",
        "time",
        "sparkline",
        "move",
        "value",
    }
)


def repeats_ok(condition: Condition) -> bool:
    """Whether ``repeat`` means something for ``condition``: one that can hold tick after
    tick (a level, a move, a composite), not a crossing or a breakout (true on one tick)."""
    return not isinstance(condition, Cross | Breaks)


def is_glob(pattern: str) -> bool:
    """Whether a symbol pattern is a glob (``*``, ``?`` or ``[...]``) rather than a name."""
    return "*" in pattern or "?" in pattern or "[" in pattern


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a condition over a set of symbols, with its firing policy.

    ``symbols`` holds upper-case names or globs (``*`` and ``?``); ``exclude`` likewise.
    Durations and times are milliseconds of exchange event time; ``rearm`` is a fraction
    (0.005 for ``0.5%``).
    """

    id: str
    condition: Condition
    symbols: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    cooldown_ms: int = 0
    rearm: float = 0.0
    once: bool = False
    expires_ms: int | None = None
    #: ticks before it do not fire (a chat's /mute; event time, ms); a condition still true
    #: when the mute ends fires then, as at the end of a cooldown
    muted_until_ms: int | None = None
    message: str | None = None
    notify: tuple[str, ...] = ()
    #: a chat watch's note (``/watch ... note TP1``): its alerts show it on a line of their own
    note: str | None = None
    #: while the condition holds after an alert, alert again once this long has passed since
    #: the last one (ms; None: once per entry, as DESIGN.md says). Not for crossings and
    #: breakouts, which hold on one tick only (repeats_ok)
    repeat_ms: int | None = None
    #: where the rule came from, for messages: "rules.yaml:12:5" or "chat 123"
    origin: str = field(default="", compare=False)

    @property
    def condition_text(self) -> str:
        return format_condition(self.condition)


#: the bodies a webhook can be sent (alertbot.notify.webhook.body_of): alertbot's JSON, or a
#: Slack or Discord incoming webhook's message
WEBHOOK_FORMATS = ("json", "slack", "discord")


@dataclass(frozen=True, slots=True)
class Channel:
    """A named destination of a rule file: a Telegram chat or a webhook.

    A webhook's URL is ``webhook``, or the value of the environment variable ``webhook_env``
    names (a URL that is its own credential, Slack's or Discord's, kept out of the file): the
    loader reads no environment, so ``webhook`` stays None for such a channel until delivery's
    router resolves it."""

    name: str
    telegram: int | None = None
    #: the forum topic of the ``telegram`` chat its alerts go to (None: the chat itself, in a
    #: forum its General topic)
    topic: int | None = None
    webhook: str | None = None
    secret_env: str | None = None
    webhook_env: str | None = None
    #: the webhook's body: "json" (alertbot's, DESIGN.md), "slack" or "discord" (a chat
    #: service's incoming webhook); None: told by the URL's host (alertbot.notify.webhook)
    format: str | None = None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """What one or more rule files define."""

    rules: tuple[Rule, ...] = ()
    channels: dict[str, Channel] = field(default_factory=dict)
