"""Telegram chat commands parsed into values: ``/watch BTCUSDT > 70000`` -> :class:`Watch`.

Pure: text in, a value or a :class:`CommandError` out. No I/O, no clock, no Telegram code; the
handlers decide what a command does (and whether a chat may use it, e.g. a glob symbol).

::

    /watch SYMBOL CONDITION [cooldown D] [rearm P%] [once] [for D] [repeat D] [note TEXT]
    /edit ID [SYMBOL] [CONDITION] [cooldown D] [rearm P%] [once] [for D] [repeat D]
          [OPTION off] [note TEXT]
    /list [SYMBOL] [PAGE]   /unwatch ID [ID...]|all   /mute ID [ID...]|all D   /unmute [ID...|all]
    /price SYMBOL [SYMBOL...]   /digest HH:MM|off   /quiet [HH:MM-HH:MM|off]   /timezone [ZONE]
    /status   /help   /start

Choices worth knowing:

- The condition is every word between the symbol and the first option keyword (``cooldown``,
  ``rearm``, ``once``, ``for``); the condition language never uses those words. Options come in
  any order, each at most once. ``BTCUSDT>70000`` (no space) is read as symbol and condition.
- ``above 70k`` / ``below 3k`` (not after ``crosses``) is read as ``> 70k`` / ``< 3k``: the chat's
  leniency, rule files keep the signs.
- ``rearm`` takes a percentage written with ``%``: ``0.5%`` and ``0.5 %`` are both accepted, a
  bare ``0.5`` is refused (it would be ambiguous between 0.5% and 50%). 0 < P <= 50.
- ``repeat D``: while the condition holds after an alert, alert again every D (a level, a
  move, a composite: not a crossing or a breakout, true on one tick; not with ``once``).
  ``every 15m`` is answered with ``repeat 15m``.
- ``cooldown``, ``for``, ``repeat`` and ``/mute`` durations: ``30s``, ``15m``, ``4h``,
  ``1d``; > 0, <= 366d (a cooldown may be 0: none, as in rule files).
- ``note TEXT`` comes last: the rest of the message is the watch's note, which its alerts and
  ``/list`` show (``note: TP1`` too; one line, at most :data:`NOTE_MAX` characters; quotes
  around all of it are taken off). ``/edit w12 note off`` takes it away. A refused command's
  suggested ``/watch`` (or ``/edit``) keeps the note typed (:attr:`CommandError.note`).
- ``/edit`` takes ``off`` for an option's value (``once off``, ``for off``, ``rearm off``,
  ``cooldown off``): the watch no longer has it. ``/watch`` refuses it (a new watch has only
  the options written).
- Watch ids look like ``w12``; ``W012`` and a bare ``12`` are read as ``w12``; ``all`` means
  every watch. A bare ``/unmute`` means ``/unmute all``; ``/mute w12 for 1h`` is read as
  ``/mute w12 1h``.
- ``/start`` ignores its argument: Telegram deep links send ``/start <payload>``.
- A command's name is ASCII, so ``/watch币安人生USDT > 0.5`` (Chinese is written without
  spaces) is ``/watch 币安人生USDT > 0.5``.
- ``/cmd@name`` is ours when ``name`` is ``bot_username`` (any case); when the caller does not
  know its username every ``@name`` is taken as ours.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from alertbot.errors import ConditionError, RuleError
from alertbot.hints import hint, unmarked
from alertbot.rules.conditions import (
    METRICS,
    AllOf,
    AnyOf,
    Breaks,
    Condition,
    Cross,
    Level,
    Move,
    format_condition,
    format_duration,
    parse,
    parse_duration,
)
from alertbot.rules.model import repeats_ok
from alertbot.rules.names import is_symbol, normalise, symbol_char
from alertbot.zones import ZoneError, find_zone

#: longer messages are refused before any parsing (a Telegram message may hold 4096)
MAX_TEXT_LENGTH = 500
#: a message of /watch commands, one a line (what /export gives), makes them all: at most
#: this many lines (each at most MAX_TEXT_LENGTH long)
MAX_BATCH = 25
#: the largest re-arm band a chat may ask for, in percent
MAX_REARM_PERCENT = Decimal(50)

# name -> (usage, description for setMyCommands and /help, example)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "watch": (
        "/watch SYMBOL CONDITION [cooldown D] [rearm P%] [once] [for D] [repeat D] [note TEXT]",
        "Alert me when a condition holds, e.g. /watch BTCUSDT > 70000",
        "/watch BTCUSDT > 70000",
    ),
    "list": ("/list [SYMBOL] [PAGE]", "Show my watches (or a symbol's) and their ids", "/list"),
    "edit": (
        "/edit ID [SYMBOL] [CONDITION] [cooldown D] [rearm P%] [once] [for D] [repeat D]"
        " [OPTION off] [note TEXT]",
        "Change a watch: its symbol, condition or options, e.g. /edit w12 > 71000",
        "/edit w12 > 71000",
    ),
    "unwatch": ("/unwatch ID [ID...]|all", "Delete watches (or all of them)", "/unwatch w12"),
    "mute": (
        "/mute ID [ID...]|all D|until HH:MM",
        "Silence watches (or all) for a while",
        "/mute w12 2h",
    ),
    "unmute": ("/unmute [ID...|all]", "End a mute (all of them by default)", "/unmute w12"),
    "price": (
        "/price SYMBOL [SYMBOL...]",
        "Show the last price of a symbol (or of up to 5)",
        "/price BTCUSDT",
    ),
    "digest": (
        "/digest HH:MM|off",
        "A daily summary of my watched symbols at HH:MM (UTC, or my /timezone)",
        "/digest 08:00",
    ),
    "quiet": (
        "/quiet [HH:MM-HH:MM|off]",
        "Alerts without a sound between two times, e.g. /quiet 23:00-07:00",
        "/quiet 23:00-07:00",
    ),
    "timezone": (
        "/timezone [ZONE]",
        "Show times in my time zone, e.g. /timezone Europe/Berlin (or UTC+8)",
        "/timezone Europe/Berlin",
    ),
    "history": (
        "/history [SYMBOL|ID] [PAGE]",
        "Show the alerts sent here lately (or a symbol's, or a watch's)",
        "/history",
    ),
    "export": (
        "/export",
        "Show my watches as /watch commands, to copy to another chat or bot",
        "/export",
    ),
    "status": ("/status", "Show whether the bot is connected and up to date", "/status"),
    "help": ("/help", "Show every command and examples", "/help"),
    "start": ("/start", "Say hello and show how to begin", "/start"),
}

#: words people type for our commands
_ALIASES = {
    "alert": "watch",
    "add": "watch",
    "new": "watch",
    "set": "watch",
    "alerts": "list",
    "watches": "list",
    "ls": "list",
    "show": "list",
    "delete": "unwatch",
    "del": "unwatch",
    "remove": "unwatch",
    "rm": "unwatch",
    "cancel": "unwatch",
    "silence": "mute",
    "quote": "price",
    "p": "price",
    "change": "edit",
    "modify": "edit",
    "update": "edit",
    "fired": "history",
    "log": "history",
    "recent": "history",
    "past": "history",
    "tz": "timezone",
    "zone": "timezone",
}

_OPTIONS = ("cooldown", "rearm", "once", "for", "repeat")
_CONDITION_WORDS = (
    *METRICS,
    "crosses",
    "above",
    "below",
    "breaks",
    "24h",
    "high",
    "low",
    "rises",
    "drops",
    "moves",
    "in",
    "all",
    "any",
)
#: words that can start a condition, so they are never taken for a symbol
_CONDITION_STARTS = frozenset({*METRICS, "crosses", "breaks", "rises", "drops", "moves"})
# comparison signs as a Chinese keyboard types them: full-width, or 《》 in its punctuation mode
_WIDE_SIGNS = {
    "＞＝": ">=",
    "＜＝": "<=",
    "＞": ">",
    "＜": "<",
    "》": ">",
    "《": "<",
    "≥": ">=",
    "≤": "<=",
}
_WIDE_SIGN_RE = re.compile("|".join(_WIDE_SIGNS))  # the two-character ones first
#: words typed for a level's sign: "/watch BTCUSDT above 70k" is "> 70k"
_SIGN_WORDS = {"above": ">", "below": "<"}
# a condition that is a number alone: a price with no sign, a percentage with no metric
_AMOUNT_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[kmb]?", re.IGNORECASE | re.ASCII)
_SIGNED_PERCENT_RE = re.compile(r"([+-]?)((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))%", re.ASCII)
#: words people put before a repeat interval ("every 1h"): a cooldown is the nearest meaning
_EVERY = ("every", "each")
_OPTIONS_HINT = "the options are cooldown D, rearm P%, once, for D, repeat D, and last note TEXT"
#: a watch's note (``note TEXT``): the rest of the message, at most this many characters
NOTE_MAX = 100
_NOTE_WORDS = ("note", "note:")
#: words people use for a note, answered with the command that says 'note'
_NOTE_SYNONYMS = frozenset(
    {"label", "comment", "memo", "msg", "message", "remark", "description", "desc", "tag"}
)
# quotes around a whole note, taken off: "TP1", “TP1”, «TP1», 'TP1'
_NOTE_QUOTES = {'"': '"', "“": "”", "„": "“", "«": "»", "'": "'", "‘": "’", "「": "」"}
# a note whose lines go on with a command of ours: a pasted list, not a note
_NOTE_COMMAND_RE = re.compile(r"\n\s*/[A-Za-z]")
_OPERATOR_TYPOS = {"=>": ">=", "=<": "<=", "=": ">= or <=", "==": ">="}
#: traders' words for the language's own, suggested when typed ("falls 5% in 1h": drops; a
#: close spelling would name 'all')
_SYNONYMS = {
    **dict.fromkeys(("up", "pump", "pumps", "gain", "gains", "jump", "jumps", "surges"), "rises"),
    **dict.fromkeys(
        ("down", "fall", "falls", "dump", "dumps", "dip", "dips", "tanks", "declines"), "drops"
    ),
    **dict.fromkeys(("hit", "hits", "reach", "reaches", "touch", "touches", "at"), "crosses"),
}
#: TradingView's "crossing up/down" after 'crosses'
_CROSS_WORDS = {"up": "above", "over": "above", "down": "below", "under": "below"}
#: words (and signs) people join two conditions with: all(...) or any(...); None: either
_JOINERS: dict[str, str | None] = {
    **dict.fromkeys(("and", "&", "&&"), "all"),
    **dict.fromkeys(("or", "|", "||"), "any"),
    ",": None,
}
# a number written with spaces between its thousands ("70 000")
_SPACED_NUMBER_RE = re.compile(r"(?<![0-9.])[0-9]{1,3}(?: [0-9]{3})+(?![0-9.])", re.ASCII)
#: a currency typed after a price ("> 70000 USDT")
_CURRENCIES = frozenset({"USDT", "USD", "USDC", "BUSD", "FDUSD", "$", "DOLLARS"})
#: a quote asset written as a word of its own ("/watch BTC USDT > 1"): the symbol's end
_QUOTE_WORDS = {"USDT": "USDT", "USDC": "USDC", "BUSD": "BUSD", "FDUSD": "FDUSD", "USD": "USDT"}
_QUOTE_END_RE = re.compile(r"(?:USDT|USDC|BUSD|FDUSD)$")
# a duration in parts ("2h30m"), which the language writes in one unit ("150m")
_DURATION_PARTS_RE = re.compile(r"(?:[0-9]+[wdhms]){2,}", re.IGNORECASE | re.ASCII)
_DURATION_PART_RE = re.compile(r"([0-9]+)([wdhms])", re.IGNORECASE | re.ASCII)
_UNIT_S = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first
# a duration in words: "15 min", "1hour", "2 weeks" (the space is taken out before matching)
_DURATION_WORDS_RE = re.compile(
    r"([0-9]+)(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?)",
    re.IGNORECASE | re.ASCII,
)

_WORD_RE = re.compile(r"\S+")
# a command's name (and bot's) is ASCII: "/watch币安人生USDT", written as Chinese is, with no
# space, is /watch and its first argument (Telegram marks no command in it: the bot's
# handler takes a text starting with "/" all the same)
_GLUED_RE = re.compile(r"/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?(?=[^\x00-\x7f])")
_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
# a word that is a command of ours, maybe addressed ("/watch@alertbot")
_COMMAND_WORD_RE = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]+)?")
# fnmatch syntax limited to what a symbol can hold: * ? and [..] / [!..] classes (beyond
# ASCII, any character here; _symbol() then checks it is one a symbol can hold)
_GLOB_RE = re.compile(r"(?:[A-Z0-9_*?\x80-\U0010ffff]|\[!?[A-Z0-9_\x80-\U0010ffff-]+\])+")
_GLOB_CHARS = frozenset("*?[]")
_DIGIT_COMMA_RE = re.compile(r"\d,\d")
COMMA_HINT = "numbers take no ',' separators: write 70000 (or 70k) and 0.5"
# TradingView's BINANCE:BTCUSDT and BTCUSDT.P (a perpetual), a cashtag ($BTC, #BTC), BTC-PERP
_TRADINGVIEW_RE = re.compile(r"^(?:BINANCE(?:US)?:|[$#])|\.P$|[-_]PERP$")
_SEPARATORS_RE = re.compile(r"(?<=[A-Z0-9\x80-\U0010ffff])[-/:.](?=[A-Z0-9\x80-\U0010ffff])")
# ASCII: IGNORECASE alone takes the long s (U+017F) for s and the Kelvin sign for k
_DURATION_FORM_RE = re.compile(r"[0-9]+[smhd]", re.IGNORECASE | re.ASCII)
_PERCENT_RE = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))%")
_BARE_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_WATCH_ID_RE = re.compile(r"w?([0-9]{1,18})", re.IGNORECASE | re.ASCII)
# the condition tokenizer's own token syntax, to name the word an error column points at
_CONDITION_TOKEN_RE = re.compile(r"(>=|<=|>|<|\(|\)|,|[^\s<>(),]+)")
_COLUMN_RE = re.compile(r" at column (\d+)$")
_EXOTIC_NUMBER_RE = re.compile(
    r"[+-]?(?:nan|inf|infinity|[0-9.]+e[+-]?[0-9]+[kmb%]?)", re.IGNORECASE | re.ASCII
)


class CommandError(RuleError):
    """A chat command that does not validate: what was wrong, the right form, an example."""

    def __init__(self, message: str, usage: str, example: str) -> None:
        """``message``, ``usage`` and ``example`` may show commands marked as hints (code in
        the answer: alertbot.hints); the attributes are the text alone."""
        super().__init__(unmarked(message))
        self.message = unmarked(message)
        self.usage = unmarked(usage)
        self.example = unmarked(example)
        self._marked = (message, usage, example)

    #: the refused command's note and its name (``("watch", "TP1")``), set by
    #: :func:`parse_command`: the commands the answer suggests to send keep it
    note: tuple[str, str] | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def note_words(self) -> str:
        """`` note TEXT`` of the refused command, for a command made from it; "" without."""
        return f" note {self.note[1]}" if self.note is not None else ""

    def noting(self, note: tuple[str, str] | None) -> CommandError:
        """This error, with the note of the command it refuses (another error made from it:
        :meth:`SymbolError.suggesting`, :meth:`TargetError.naming`)."""
        self.note = note
        return self

    def prefixed(self, text: str) -> CommandError:
        """This error with ``text`` before its message (``none of these 3 watches was made:
        ``), its note kept."""
        message, usage, example = self._marked
        return CommandError(text + message, usage, example).noting(self.note)

    def reply(self) -> str:
        """Plain-text answer for the user, its commands with arguments marked as hints."""
        message, usage, example = self._marked
        if self.note is not None:
            message = _with_note(message, *self.note)
        first = message[:1].upper() + message[1:]
        return f"{first}\nUse: {usage}\ne.g. {example}"


def _with_note(message: str, name: str, note: str) -> str:
    """``message`` with ``note TEXT`` after each ``/name`` command it suggests (marked as a
    hint): a refused ``/watch ... note TP1`` is answered with the command to send, note kept."""
    return re.sub(
        rf"(\x0e/{name} [^\x0e\x0f]*)(?=\x0f)",
        lambda m: f"{m.group(1)} note {note}",
        message,
    )


class SymbolError(CommandError):
    """A symbol typed in another form (``BTC/USDT``, ``BINANCE:ETHUSDT.P``, ``$BTC``):
    ``name`` is what it stands for (``BTC``), for the caller to check against the exchange's
    list, which the parser does not know: :meth:`suggesting`."""

    def __init__(self, typed: str, name: str, usage: str, example: str) -> None:
        super().__init__(f"{_q(typed)} is not a symbol (did you mean {name}?)", usage, example)
        self._usage = (usage, example)
        self.typed = typed
        self.name = name

    def suggesting(self, listed: str | None) -> CommandError:
        """The error suggesting ``listed``, the contract Binance lists for the name; None:
        it lists none."""
        if listed is None:
            message = f"{_q(self.typed)} is not a symbol Binance lists"
        else:
            message = f"{_q(self.typed)} is not a symbol (did you mean {listed}?)"
        return CommandError(message, *self._usage)


class LevelsError(CommandError):
    """``/edit w2 > 71000 76000``: several levels, where a watch has one. The parser does not
    know the watch's symbol, which the command for the other levels needs: :meth:`of`. Nor,
    for numbers alone (``/edit w2 71000 76000``: ``numbers``, no ``conditions``), its
    condition, whose one threshold each number takes (the bot's, as for ``/edit w2 71000``)."""

    def __init__(
        self,
        target: str,
        conditions: Sequence[str],
        symbol: str | None,
        tail: str,
        numbers: Sequence[tuple[str, float]] = (),
    ) -> None:
        self.target = target  # the watch's id, as typed (or the replied alert's watch)
        self.conditions = tuple(conditions)  # each level's condition, canonical
        self.symbol = symbol  # the symbol typed in the /edit, if any
        self.tail = tail  # the options typed after the levels
        self.numbers = tuple(numbers)  # numbers alone: each as typed, and its value
        usage, _, example = COMMANDS["edit"]
        text = (
            self._text(None, self.conditions)
            if self.conditions
            else f"a watch has one level: {hint(f'/edit {target} {numbers[0][0]}')} changes "
            f"{target}, and /watch with its symbol and condition makes a watch of each other one"
        )
        super().__init__(text, hint(usage), hint(example))

    def _text(self, watched: str | None, conditions: Sequence[str]) -> str:
        first, *others = conditions
        body = _ladder_text(others)
        bodies = [body] if body is not None else others  # else one /watch each
        typed = f" {self.symbol}" if self.symbol else ""
        tail = f" {self.tail}" if self.tail else ""
        symbol = self.symbol or watched
        if symbol is None:
            more = " and ".join(f"/watch with its symbol and {body}" for body in bodies)
        else:  # a new watch has no 'off' to turn: the options without them
            kept = "" if "off" in tail.lower().split() else tail
            more = " and ".join(
                hint(f"/watch {symbol} {body}{kept}{self.note_words}") for body in bodies
            )
        return (
            f"a watch has one level: {hint(f'/edit {self.target}{typed} {first}{tail}')} changes "
            f"{self.target}, and {more} makes a watch of each other one"
        )

    def of(self, watched: str | None, conditions: Sequence[str] = ()) -> CommandError:
        """The error, its command for the other levels naming the watch's symbol ``watched``
        (None: not known), the note kept; ``conditions``: the levels' conditions, for numbers
        alone (the watch's condition at each)."""
        usage, example = self._marked[1:]
        text = self._text(watched, conditions or self.conditions)
        return CommandError(text, usage, example).noting(self.note)


class TargetError(CommandError):
    """``/unwatch BTCUSDT``: a symbol (or other text) where a watch id belongs. The parser does
    not know the chat's watches; the caller names those of the symbol: :meth:`naming`."""

    def __init__(self, name: str, typed: str, tail: str, before: Sequence[str] = ()) -> None:
        usage, _, example = COMMANDS[name]
        super().__init__(
            f"{_q(typed)} is not a watch id; use an id from /list like w12, or all",
            hint(usage),
            hint(example),
        )
        self.name = name
        self.typed = typed
        self.tail = tail  # what followed it (/mute's duration)
        self.before = tuple(before)  # the watch ids typed before it (/unwatch w1 BTCUSDT)

    @property
    def symbol(self) -> str | None:
        """The symbol typed, upper case; None: not one."""
        symbol = normalise(self.typed)
        return symbol if _is_symbol(symbol) else None

    def naming(self, symbol: str, watches: Sequence[tuple[str, str]]) -> CommandError:
        """The error for ``symbol``, whose watches in the chat are ``watches`` (id, condition):
        the command to send for them, or that there are none."""
        usage, _, example = COMMANDS[self.name]
        if not watches:
            message = f"this chat has no watch of {symbol}; /list shows its watches"
            return CommandError(message, hint(usage), hint(example))
        ids = [wid for wid, _ in watches]
        shown = ", ".join(
            f"{wid} ({_cut_condition(condition)})" for wid, condition in watches[:_NAMED]
        )
        if len(watches) > _NAMED:
            shown += f" and {len(watches) - _NAMED} more"
        tail = self.tail or {"mute": "1h", "edit": "> 71000"}.get(self.name, "")
        if self.name == "edit":  # one watch at a time
            commands = " or ".join(hint(f"/edit {wid} {tail}") for wid in ids[:_NAMED])
            return CommandError(
                f"{symbol} is watched here by {shown}: send {commands}", hint(usage), hint(example)
            )
        # with the ids typed before the symbol (/unwatch w1 BTCUSDT), first
        ids = [*(wid for wid in self.before if wid not in ids), *ids]
        command = " ".join([f"/{self.name}", *ids[:_IDS_IN_COMMAND], tail]).rstrip()
        message = f"{symbol} is watched here by {shown}: send {hint(command)}"
        if len(ids) > _IDS_IN_COMMAND:
            message += f" (the first {_IDS_IN_COMMAND}; then the others)"
        return CommandError(message, hint(usage), hint(example))


#: TargetError.naming: the watches named with their condition, and the ids a command holds
_NAMED = 3
_IDS_IN_COMMAND = 20


def _cut_condition(condition: str) -> str:
    return condition if len(condition) <= 40 else condition[:39] + "…"


@dataclass(frozen=True, slots=True)
class Watch:
    """``/watch``: ``symbol`` is upper-case, or a glob when it holds ``*``, ``?`` or ``[]``.

    ``cooldown_ms``/``rearm``/``for_ms`` are None when not given; ``rearm`` is a fraction
    (0.005 for 0.5%); ``for_ms`` is how long the watch lives.
    """

    symbol: str
    condition: Condition
    condition_text: str
    cooldown_ms: int | None = None
    rearm: float | None = None
    once: bool = False
    for_ms: int | None = None
    note: str | None = None  # note TEXT: its alerts and /list show it
    repeat_ms: int | None = None  # repeat D: alerts again every D while it holds
    #: the other symbols of ``/watch BTCUSDT,ETHUSDT > 1`` (upper-case, each once): a watch
    #: each, with the same condition and options
    more: tuple[str, ...] = ()
    #: the other levels of ``/watch BTCUSDT > 70000 75000 80000`` (each once, in the order
    #: typed): a watch each, with the same options (for each symbol)
    levels: tuple[Condition, ...] = ()
    #: who sent it (``@alice``, or a first name), which the bot knows and a group's /list shows
    made_by: str | None = None

    def each(self) -> list[Watch]:
        """A watch of each level (itself first), of its symbol (``more`` is kept)."""
        return [self] + [
            dataclasses.replace(self, condition=c, condition_text=format_condition(c), levels=())
            for c in self.levels
        ]

    @property
    def is_glob(self) -> bool:
        return not _GLOB_CHARS.isdisjoint(self.symbol)


@dataclass(frozen=True, slots=True)
class Edit:
    """``/edit``: watch ``target`` (``w12``) gets ``condition`` (None: keeps its own), or
    ``level`` as its condition's one threshold (``/edit w12 71000``: a number alone, ``5%`` a
    percentage), and the options given (None, False: kept); ``off``: the options it no
    longer has (``once off``); ``symbol``: the symbol it moves to (``/edit w12 ETHUSDT``: a
    contract's full name, upper-case; None: kept); ``note``: its new note (``note off``:
    ``"note"`` in ``off``)."""

    target: str
    condition: Condition | None = None
    condition_text: str | None = None
    level: float | None = None
    level_text: str | None = None
    cooldown_ms: int | None = None
    rearm: float | None = None
    once: bool = False
    for_ms: int | None = None
    off: frozenset[str] = frozenset()
    symbol: str | None = None
    note: str | None = None
    repeat_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Unwatch:
    """``/unwatch``: ``target`` is a watch id (``w12``) or ``all``; ``more``: the other ids
    of ``/unwatch w1 w2 w3`` (each once)."""

    target: str
    more: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Mute:
    """``/mute``: ``target`` is a watch id or ``all``; ``duration_ms`` > 0, or 0 with
    ``until_minute``, the minute of the day it ends at in the chat's time zone (``/mute w3
    until 08:00``: its next 08:00); ``more``: the other ids given."""

    target: str
    duration_ms: int
    more: tuple[str, ...] = ()
    until_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Unmute:
    """``/unmute``: ``target`` is a watch id or ``all``; ``more``: the other ids given."""

    target: str
    more: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Price:
    """``/price``: upper-case symbols (never globs): ``symbol``, and ``more`` asked with it
    (``/price BTC ETH SOL``), each once, at most :data:`MAX_PRICES` in all."""

    symbol: str
    more: tuple[str, ...] = ()


#: the symbols one /price answers (each its own lines; Binance asked for those it must be)
MAX_PRICES = 5


@dataclass(frozen=True, slots=True)
class Listing:
    """``/list``: the chat's watches, ``page`` (from 1) of them when they fill several;
    ``symbol``: only those of this symbol (upper-case, as typed: a coin's name is resolved
    by the caller, as /price's)."""

    page: int = 1
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Simple:
    """A command without arguments: ``start``, ``help`` or ``status``."""

    name: str


@dataclass(frozen=True, slots=True)
class Digest:
    """``/digest HH:MM`` or ``/digest off``: ``minute`` of the day in the chat's time zone
    (UTC without one), None for off; ``utc``: written ``/digest 08:00 UTC``."""

    minute: int | None
    utc: bool = False


@dataclass(frozen=True, slots=True)
class Quiet:
    """``/quiet 23:00-07:00``: ``window`` is its (start, end) minutes of the day in the
    chat's time zone, the end the first minute that is not quiet; None: ``/quiet off``.
    ``show``: ``/quiet`` alone, which says the chat's."""

    window: tuple[int, int] | None = None
    show: bool = False


@dataclass(frozen=True, slots=True)
class Zone:
    """``/timezone ZONE``: ``zone`` as :func:`find_zone` gives it (``UTC``: back to UTC);
    None: ``/timezone`` alone, which shows the chat's."""

    zone: str | None


@dataclass(frozen=True, slots=True)
class Batch:
    """A message of ``/watch`` commands, one a line (``/export``'s, pasted back): ``lines``
    as typed, each parsed by the caller with :func:`parse_command`, all made or none."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class History:
    """``/history``: the alerts sent to the chat, newest first, ``page`` (from 1) of them;
    only ``symbol``'s (upper-case, as typed: resolved by the caller, as /list's) or only the
    watch ``watch``'s (``w3``), when given."""

    page: int = 1
    symbol: str | None = None
    watch: str | None = None


Command = (
    Watch
    | Edit
    | Unwatch
    | Mute
    | Unmute
    | Price
    | Listing
    | History
    | Batch
    | Simple
    | Digest
    | Quiet
    | Zone
)


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    start: int  # offset in the stripped message
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()


# ---------------------------------------------------------------- entry point


def parse_command(
    text: str, bot_username: str | None = None, *, group: bool = False, replied: str | None = None
) -> Command | None:
    """Parse one chat message.

    ``replied``: the id of the watch the message replies to (an alert of it): ``/mute 1h``,
    ``/unwatch`` and ``/unmute`` without an id are about that watch.

    Returns None when the message is not a command or is addressed to another bot
    (``/watch@otherbot``), and in a ``group`` for an unknown command that names no bot and
    resembles none of ours (``/roll``: another bot's, whose users want no answer from this
    one); raises :class:`CommandError` for anything malformed.
    """
    message = text.strip()
    if not message.startswith("/"):
        return None
    head = _GLUED_RE.match(message) or _WORD_RE.match(message)
    assert head is not None  # the message starts with "/"
    name, _, addressee = head.group()[1:].partition("@")
    if (
        addressee
        and bot_username is not None
        and addressee.lower() != bot_username.lstrip("@").lower()
    ):
        return None
    name = name.lower()
    known = name if name in COMMANDS else None
    if known is None and group and not addressee and _guess(name) is None:
        return None  # another bot's, however long
    if known == "watch" and (batch := _batch(message)) is not None:
        return batch
    if len(message) > MAX_TEXT_LENGTH:
        raise _error(
            known,
            f"that message is too long ({len(message)} characters, at most {MAX_TEXT_LENGTH})",
        )
    if known is None:
        raise _unknown_command(name)
    words = [_Word(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(message, head.end())]
    if known in ("watch", "edit"):
        message, words, note = _split_note(known, message, words)
        try:
            _one_command(known, message, words)
            if known == "watch":
                watch = _watch(message, words)
                return watch if note is None else dataclasses.replace(watch, note=note)
            edit = _edit(message, words, replied, noted=note is not None)
            if note == "off":
                return dataclasses.replace(edit, off=edit.off | {"note"})
            return edit if note is None else dataclasses.replace(edit, note=note)
        except CommandError as exc:
            raise exc.noting(None if note in (None, "off") else (known, note)) from None
    _one_command(known, message, words)
    if known == "unwatch":
        return _unwatch(words, replied)
    if known == "mute":
        return _mute(words, replied)
    if known == "unmute":
        return _unmute(words, replied)
    if known == "price":
        return _price(message, words)
    if known == "digest":
        return _digest(words)
    if known == "quiet":
        return _quiet(words)
    if known == "timezone":
        return _timezone(message[words[0].start :] if words else "")
    if known == "list":
        return _listing(words)
    if known == "history":
        return _history(words, replied)
    if words and known not in ("start", "help"):
        # /start carries a deep-link payload, which we ignore; "/help watch" is for help too
        raise _error(known, f"/{known} takes no arguments, got {_q(words[0].text)}")
    return Simple(known)


_WATCH_LINE_RE = re.compile(r"/watch(?:@[A-Za-z0-9_]+)?(?:\s|$)", re.IGNORECASE)


def _batch(message: str) -> Batch | None:
    """A message of two or more lines, each a ``/watch`` command, as a Batch; None for any
    other (one command; a note that goes on past its line; another command among them, which
    is one command a message). Too many lines are refused."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) < 2 or not all(_WATCH_LINE_RE.match(line) for line in lines):
        return None
    if len(lines) > MAX_BATCH:
        raise _error(
            "watch",
            f"at most {MAX_BATCH} /watch commands a message, one a line; this one has "
            f"{len(lines)}: send them in parts",
        )
    return Batch(tuple(lines))


def _split_note(name: str, message: str, words: list[_Word]) -> tuple[str, list[_Word], str | None]:
    """The command without its ``note TEXT`` (the rest of the message), and the note: one
    line, quotes around it taken off; ``"off"`` for /edit's ``note off``; None: no note."""
    first = 1 if name == "watch" else 0  # "/watch note > 1": a symbol
    k = next((i for i, w in enumerate(words) if i >= first and w.lower in _NOTE_WORDS), None)
    if k is None:
        _note_synonym(name, message, words)
        return message, words, None
    raw = message[words[k].end :]
    if _NOTE_COMMAND_RE.search(raw):
        return message, words, None  # several commands pasted: _one_command says so
    note = " ".join(raw.split())
    if len(note) >= 2 and _NOTE_QUOTES.get(note[0]) == note[-1]:
        note = " ".join(note[1:-1].split())
    # the watch's id when typed before the note, else an example's
    wid = words[0].text if k and _WATCH_ID_RE.fullmatch(words[0].text) else "w12"
    off_form = f"; {hint(f'/edit {wid} note off')} takes a note away" if name == "edit" else ""
    if not note:
        raise _error(name, f"'note' needs its text after it, e.g. note take profit{off_form}")
    if note.lower() == "off":
        if name == "watch":
            raise _error(
                "watch",
                f"a new watch has only the options written: leave the note out (off is for "
                f"changing a watch: {hint('/edit w12 note off')})",
            )
        return message[: words[k].start].rstrip(), words[:k], "off"
    bad = next((ch for ch in note if not ch.isprintable()), None)
    if bad is not None:
        raise _error(name, f"a note is text that shows: {_q(note)} holds {_code(bad)}")
    if len(note) > NOTE_MAX:
        raise _error(name, f"a note holds at most {NOTE_MAX} characters; this one has {len(note)}")
    return message[: words[k].start].rstrip(), words[:k], note


def _note_synonym(name: str, message: str, words: list[_Word]) -> None:
    """Refuse another word for ``note`` (``label TP1``, ``comment: TP1``) with the command
    that says it, before the condition's reading takes it for a misspelt condition word."""
    first = 2 if name == "watch" else 1  # after the symbol and the condition's first word
    for k, word in enumerate(words[first:], first):
        if word.lower.rstrip(":") in _NOTE_SYNONYMS and k + 1 < len(words):
            command = f"{message[: word.start].rstrip()} note {message[words[k + 1].start :]}"
            if _NOTE_COMMAND_RE.search(command):
                return  # several commands pasted: _one_command says so
            raise _error(name, f"a note is written after 'note': {hint(' '.join(command.split()))}")


def _one_command(name: str, message: str, words: list[_Word]) -> None:
    """Refuse several commands in one message (a list of watches pasted at once), naming each
    to send: only the first would be read, and the next one's words are not its arguments."""
    if name in ("help", "start"):  # "/help /mute": help
        return
    starts: list[int] = []
    for word in words:
        match = _COMMAND_WORD_RE.fullmatch(word.text)
        if match and (match.group(1).lower() in COMMANDS or match.group(1).lower() in _ALIASES):
            starts.append(word.start)
    if not starts:
        return
    bounds = [0, *starts, len(message)]
    pieces = [" ".join(message[a:b].split()) for a, b in pairwise(bounds)]
    # a pasted list can be long: the answer names what fits and counts the rest
    shown: list[str] = []
    size = 0
    for piece in pieces:
        # one too long, or with characters that show nothing, is quoted: not one to copy
        copyable = len(piece) <= _PIECE_MAX and piece.isprintable()
        piece = hint(piece) if copyable else _q(piece)
        if shown and size + len(piece) > _PIECES_MAX:
            break
        shown.append(piece)
        size += len(piece) + len(", then ")
    commands = ", then ".join(shown)
    if len(shown) < len(pieces):
        commands += f", then the other {len(pieces) - len(shown)}"
    raise _error(name, f"one command a message: send {commands}, each as a message of its own")


#: how much of a pasted list of commands an answer names: a command longer than _PIECE_MAX
#: is named by its start (quoted), and the commands beyond _PIECES_MAX in all are counted
_PIECE_MAX = 80
_PIECES_MAX = 180


#: the answer to text in a private chat that is no command
NOT_A_COMMAND = "I read commands, which start with '/': /help lists them, e.g. " + hint(
    "/watch BTCUSDT > 70000"
)


def text_reply(text: str) -> str:
    """The answer to a private chat's text that is not a command: ``watch BTCUSDT > 1``, a
    command of ours without its '/', is shown with it; other text is told what the bot reads."""
    words = text.split()
    if not words or words[0].lower() not in COMMANDS:
        return NOT_A_COMMAND
    command = " ".join(words)
    if len(command) > MAX_TEXT_LENGTH:
        command = command[: MAX_TEXT_LENGTH - 1] + "…"
    return f"Commands start with '/': send {hint('/' + command)}"


def _error(name: str | None, message: str) -> CommandError:
    if name is None:
        return CommandError(message, _command_list(), "/help")
    usage, _, example = COMMANDS[name]
    return CommandError(message, hint(usage), hint(example))


def _command_list() -> str:
    return " ".join(f"/{name}" for name in COMMANDS)


def _guess(name: str) -> str | None:
    """The command of ours an unknown name was meant to be, if any (an alias, a typo)."""
    if not name or not _COMMAND_NAME_RE.fullmatch(name):
        return None
    return _ALIASES.get(name) or _closest(name, COMMANDS, cutoff=0.6)


def _unknown_command(name: str) -> CommandError:
    if not name:
        return _error(None, "a command needs a name after '/'")
    shown = "/" + (name if len(name) <= 32 else name[:31] + "…")
    if not _COMMAND_NAME_RE.fullmatch(name):
        return _error(None, f"unknown command {shown}")
    guess = _guess(name)
    if guess is None:
        return _error(None, f"unknown command {shown}")
    return CommandError(
        f"unknown command {shown} (did you mean /{guess}?)",
        _command_list(),
        hint(COMMANDS[guess][2]),
    )


# ---------------------------------------------------------------- /watch


def _unglued(words: list[_Word]) -> list[_Word]:
    """``words`` with the first sign glued to what comes before it cut off as a word of its
    own (``BTCUSDT>1``, ``BTCUSDT,ETHUSDT>1``, ``price>1``): a symbol, or a list of them, reads
    the same with or without the space. Not within ``all(...)``: that sign is the condition's
    (the condition is read from the message as typed, whatever its words)."""
    for k, word in enumerate(words):
        text = word.text
        sign = min((i for i in (text.find("<"), text.find(">")) if i >= 0), default=-1)
        if "(" in (text if sign < 0 else text[:sign]):
            break
        if sign < 0:
            continue
        if sign == 0:
            break
        head = _Word(text[:sign], word.start, word.start + sign)
        return [*words[:k], head, _Word(text[sign:], word.start + sign, word.end), *words[k + 1 :]]
    return words


def _watch(message: str, words: list[_Word]) -> Watch:
    if not words:
        raise _error("watch", "missing symbol and condition")
    words = _unglued(words)
    names, end = _several_symbols(message, words)
    more: tuple[str, ...] = ()
    if names:  # "/watch BTCUSDT,ETHUSDT > 1": one watch each, the first's words read
        more = tuple(_symbol("watch", name, allow_glob=False) for name in names[1:])
        words = [_Word(names[0], words[0].start, words[0].end), *words[end:]]
    sign = _WIDE_SIGN_RE.search(message, words[0].start)
    if sign:  # else "币安人生USDT＞0.5" reads as a symbol with letters it cannot have
        raise _error("watch", f"write {_WIDE_SIGNS[sign.group()]} instead of {_q(sign.group())}")
    symbol_text = words[0].text
    rest = words[1:]
    if (
        symbol_text.startswith(("<", ">"))
        or _LEVEL_RE.fullmatch(symbol_text)  # "/watch 75000": a level, not a symbol
        or symbol_text.lower() in _CONDITION_STARTS
        or symbol_text.lower() in _OPTIONS
        or symbol_text.lower().startswith(("all(", "any("))
    ):
        raise NoSymbolError(
            "watch",
            "missing symbol: put it before the condition, e.g. BTCUSDT (or send the command in "
            "reply to an alert, for its symbol)",
            message,
            words[0].start,
        )
    symbol = _symbol("watch", symbol_text, allow_glob=True)
    # the symbols as the commands an answer suggests write them: all of them
    listed = ",".join(dict.fromkeys((symbol, *more)))

    end = next((i for i, w in enumerate(rest) if w.lower in _OPTIONS), len(rest))
    if end == 0:
        raise _error("watch", f"missing condition after {symbol}, e.g. > 70000")
    condition_text = message[rest[0].start : rest[end - 1].end]
    following = rest[end] if end < len(rest) else None
    _shorthand(listed, rest[:end], message[following.start :] if following is not None else "")
    levels: list[Condition] = []
    try:
        condition = parse(_plain_signs(condition_text))
    except ConditionError as exc:
        ladder = _ladder(rest[:end])
        if not ladder:
            tail = message[following.start :] if following is not None else ""
            combined = _combined(listed, condition_text, tail)
            answer = combined or _explain(exc, condition_text, following)
            coins = 0 if names else _coins(rest[:end])
            if coins:  # "/watch btc eth > 1": more symbols, if Binance lists them all
                more = tuple(w.text.rstrip(",") for w in rest[:coins])
                rewritten = _with_commas(message, words[0], more, rest[coins])
                raise CoinsError(answer, more, rewritten) from None
            raise _error("watch", answer) from None
        condition, *levels = ladder
        if len(levels) + 1 > MAX_LEVELS:
            raise _error(
                "watch",
                f"at most {MAX_LEVELS} levels in one /watch, got {len(levels) + 1}: send the "
                "others in another",
            ) from None

    _refuse_never(
        "watch", f"/watch {listed}", condition, message[following.start :] if following else ""
    )
    options = _options("watch", rest[end:], condition)
    if options.repeat_ms is not None:
        problem = repeat_problem(condition, options.once)
        if problem is not None:
            raise _error("watch", problem)
    return Watch(
        symbol=symbol,
        condition=condition,
        condition_text=format_condition(condition),
        cooldown_ms=options.cooldown_ms,
        rearm=options.rearm,
        once=options.once,
        for_ms=options.for_ms,
        repeat_ms=options.repeat_ms,
        more=tuple(s for s in more if s != symbol),
        levels=tuple(levels),
    )


#: a word that may be a coin's name (``eth``, ``1000pepe``), with the comma that lists it
_COIN_WORD_RE = re.compile(r"[0-9]*[A-Za-z][A-Za-z0-9]{0,19},?", re.ASCII)


def _coins(words: list[_Word]) -> int:
    """How many of a condition's first ``words`` may be more coins (``/watch btc eth sol >
    1``): no word of the language nor one like it; 0 unless the words after them are a
    condition. Whether they are coins, Binance's list tells (the caller: CoinsError)."""
    n = 0
    for w in words:
        word = w.lower.rstrip(",")
        if (
            not _COIN_WORD_RE.fullmatch(w.text)
            or word in _CONDITION_WORDS
            or word in _OPTIONS
            or word in ("note", "all", "any")
            or word in _JOINERS
            or word in _SYNONYMS
            or word.upper() in _CURRENCIES
            or _suggest_word(word) is not None
        ):
            break
        n += 1
    if not n or n == len(words):
        return 0
    if _AMOUNT_RE.fullmatch(words[n].text):  # "btc eth 70000": answered as for one symbol
        return n
    try:
        parse(_plain_signs(" ".join(w.text for w in words[n:])))
    except ConditionError:
        return 0
    return n


def _with_commas(message: str, first: _Word, more: Sequence[str], after: _Word) -> str:
    """``message`` with its symbols listed by commas: ``/watch btc,eth,sol > 1``."""
    names = ",".join((first.text.rstrip(","), *more))
    return f"{message[: first.start]}{names} {message[after.start :]}"


class CoinsError(CommandError):
    """``/watch btc eth > 1``: words where the condition goes that may be more coins, which
    the parser cannot tell (it does not know Binance's list). The answer to the condition as
    it stands; ``rewritten``, the command with the symbols listed by commas, is what to run
    when Binance lists each of ``names``."""

    def __init__(self, message: str, names: tuple[str, ...], rewritten: str) -> None:
        usage, _, example = COMMANDS["watch"]
        super().__init__(message, hint(usage), hint(example))
        self.names = names
        self.rewritten = rewritten


class NoSymbolError(CommandError):
    """``/watch > 75000`` (a condition with no symbol before it), ``/price`` alone. In reply
    to the bot's message about a symbol (an alert), the bot runs :meth:`with_symbol` of it."""

    def __init__(self, name: str, problem: str, message: str, start: int) -> None:
        usage, _, example = COMMANDS[name]
        super().__init__(problem, hint(usage), hint(example))
        self.command = message  # as typed, its note aside
        self.start = start  # where the symbol goes

    def with_symbol(self, symbol: str) -> str:
        """The command with ``symbol`` where it goes."""
        head, tail = self.command[: self.start].rstrip(), self.command[self.start :].strip()
        return f"{head} {symbol} {tail}".rstrip()


#: the levels one /watch makes watches of (``/watch BTCUSDT > 70000 75000 80000``)
MAX_LEVELS = 10
#: a number of the condition language, as a word (``70k``, ``0.5``, ``5%``), or one with the
#: comma that lists it (``70000,``)
_LEVEL_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[kmbKMB]|%)?,?", re.ASCII)


#: a level's sign and number written as one word (``>70000``, ``<=3k,``)
_GLUED_LEVEL_RE = re.compile(r"(>=|<=|>|<)(" + _LEVEL_RE.pattern + ")", re.ASCII)


def _ladder(words: list[_Word]) -> list[Condition]:
    """``> 70000 75000 80000`` (or ``crosses above 70k, 75k``; ``change_24h > 5% 10%``): a
    level or crossing followed by more numbers is a condition each, in the order typed, each
    once; [] when the words are no such thing. Numbers in groups of three digits separated by
    spaces only (``> 150 200 250``) could be one number written ``70 000``: those are not
    taken (the answer asks for either form); a comma between them lists them. A move of
    several sizes (``rises 5% 10% in 1h``) is a move of each size."""
    moves = _move_ladder(words)
    if moves:
        return moves
    run = len(words)
    while run > 0 and _LEVEL_RE.fullmatch(words[run - 1].text):
        run -= 1
    numbers = [w.text.removesuffix(",") for w in words[run:]]
    head = " ".join(w.text for w in words[:run])
    glued = _GLUED_LEVEL_RE.fullmatch(words[run - 1].text) if run else None
    if glued:  # ">70000 75000": the sign glued to the first
        head = " ".join([*(w.text for w in words[: run - 1]), glued[1]])
        numbers.insert(0, glued[2].removesuffix(","))
    if not head or len(numbers) < 2:
        return []
    listed = any(w.text.endswith(",") for w in words[run - (1 if glued else 0) : -1])
    if words[-1].text.endswith(",") or (not listed and _SPACED_NUMBER_RE.search(" ".join(numbers))):
        return []
    ladder: list[Condition] = []
    for number in dict.fromkeys(numbers):
        try:
            condition = parse(_plain_signs(f"{head} {number}"))
        except ConditionError:
            return []
        if not isinstance(condition, Level | Cross):
            return []
        ladder.append(condition)
    return ladder


def _ladder_text(conditions: Sequence[str]) -> str | None:
    """Conditions (canonical) that differ in their number alone as one /watch reads them
    (:func:`_ladder`): ``price > 76000, 80000``, ``rises 8%, 10% in 1h``; None: they differ
    otherwise."""
    parts = [c.split(" ") for c in conditions]
    if all(len(p) == 4 and p[2] == "in" for p in parts):  # moves: the size before the window
        if len({(p[0], p[3]) for p in parts}) == 1:
            return f"{parts[0][0]} {', '.join(p[1] for p in parts)} in {parts[0][3]}"
        return None
    heads = {c.rpartition(" ")[0] for c in conditions}
    if len(heads) != 1:
        return None
    return f"{heads.pop()} {', '.join(c.rpartition(' ')[2] for c in conditions)}"


def _move_ladder(words: list[_Word]) -> list[Condition]:
    """``rises 5% 10% in 1h`` (``drops 3%, 5% in 15m``): a move of each size, in the order
    typed, each once; [] when the words are no such thing."""
    if len(words) < 5 or words[-2].lower != "in":
        return []
    sizes = words[1:-2]
    if sizes[-1].text.endswith(",") or not all(_LEVEL_RE.fullmatch(w.text) for w in sizes):
        return []
    ladder: list[Condition] = []
    for size in dict.fromkeys(w.text.removesuffix(",") for w in sizes):
        try:
            condition = parse(f"{words[0].text} {size} in {words[-1].text}")
        except ConditionError:
            return []
        if not isinstance(condition, Move):
            return []
        ladder.append(condition)
    return ladder


@dataclass(frozen=True, slots=True)
class _Options:
    cooldown_ms: int | None = None
    rearm: float | None = None
    once: bool = False
    for_ms: int | None = None
    off: frozenset[str] = frozenset()
    repeat_ms: int | None = None


def _options(
    name: str, words: list[_Word], condition: Condition | None, *, off_ok: bool = False
) -> _Options:
    """The options after a condition (``cooldown 1h rearm 0.5% once for 7d``), each at most
    once; ``condition``: what ``rearm`` applies to (None: checked by the caller). With
    ``off_ok`` (/edit), ``KEY off`` turns an option off."""
    seen: set[str] = set()
    off: set[str] = set()
    cooldown_ms: int | None = None
    rearm: float | None = None
    for_ms: int | None = None
    repeat_ms: int | None = None
    i = 0
    while i < len(words):
        word = words[i]
        key = word.lower
        if key not in _OPTIONS:
            guess = _closest(key, (*_OPTIONS, "note"))
            guessed = f" (did you mean {guess}?)" if guess else ""
            after = "the condition" if condition is not None else "the options"
            raise _error(
                name, f"unexpected {_q(word.text)} after {after}{guessed}; {_OPTIONS_HINT}"
            )
        if key in seen:
            raise _error(name, f"{key!r} is given twice")
        seen.add(key)
        i += 1
        if i < len(words) and words[i].lower == "off":
            if not off_ok:
                raise _error(
                    name,
                    f"a new watch has only the options written: leave {key!r} out "
                    f"(off is for changing a watch: {hint(f'/edit w12 {key} off')})",
                )
            off.add(key)
            i += 1
            continue
        if key == "once":
            continue
        value = words[i] if i < len(words) and words[i].lower not in _OPTIONS else None
        if value is None:
            what = (
                "a percentage, e.g. rearm 0.5%" if key == "rearm" else f"a duration, e.g. {key} 1h"
            )
            raise _error(name, f"{key!r} needs {what}")
        i += 1
        if key == "rearm":
            text = value.text
            if i < len(words) and words[i].text == "%" and not text.endswith("%"):
                text += "%"  # "rearm 0.5 %"
                i += 1
            rearm = _rearm(name, text, condition)
        else:
            following = words[i] if i < len(words) else None
            ms = _duration(name, repr(key), value, following, zero_ok=key == "cooldown")
            if key == "cooldown":
                cooldown_ms = ms
            elif key == "repeat":
                repeat_ms = ms
            else:
                for_ms = ms
    once = "once" in seen and "once" not in off
    return _Options(cooldown_ms, rearm, once, for_ms, frozenset(off), repeat_ms)


def repeat_problem(condition: Condition, once: bool) -> str | None:
    """Why ``repeat`` cannot be a watch's with ``condition`` (and ``once``); None: it can."""
    if not repeats_ok(condition):
        return (
            "repeat is for a condition that holds for a while (a level, a move): a crossing or "
            "a breakout is true on one tick"
        )
    if once:
        return "repeat and once exclude each other: once ends the watch at its first alert"
    return None


#: the symbols one /watch makes watches of (``/watch BTCUSDT,ETHUSDT,SOLUSDT rises 5% in 15m``)
MAX_WATCH_SYMBOLS = 10


def _several_symbols(message: str, words: list[_Word]) -> tuple[list[str], int]:
    """Several symbols before the condition (``BTCUSDT ETHUSDT > 1``, ``btc,eth > 1``): their
    names and the index of the condition's first word; ``([], 0)`` for one symbol. Refuses a
    symbol written as two words (``BTC USDT > 1``), with the command to send, and more than
    :data:`MAX_WATCH_SYMBOLS`."""
    names: list[str] = []
    end = len(words)
    for k, word in enumerate(words):
        pieces = [normalise(p) for p in word.text.split(",") if p]
        listed = k == 0 or "," in word.text or words[k - 1].text.endswith(",")
        if not pieces or not all(
            _is_symbol(p)
            and not _BARE_NUMBER_RE.fullmatch(p)  # "/watch BTCUSDT 60000, 70000": levels
            and p.lower() not in _CONDITION_WORDS
            and p.lower() not in _OPTIONS
            and (listed or _QUOTE_END_RE.search(p) or p in _QUOTE_WORDS)
            for p in pieces
        ):
            end = k
            break
        names += pieces
    if len(names) < 2:
        return [], 0
    tail = message[words[end].start :] if end < len(words) else "CONDITION"
    if len(names) == 2 and names[1] in _QUOTE_WORDS and "," not in message[: words[1].end]:
        if _QUOTE_END_RE.search(names[0]):
            return [], 0  # "BTCUSDT USDT": the usual answer
        raise _error(
            "watch",
            "write the symbol as one word: "
            + hint(f"/watch {names[0]}{_QUOTE_WORDS[names[1]]} {tail}"),
        )
    names = list(dict.fromkeys(names))  # each once
    if len(names) > MAX_WATCH_SYMBOLS:
        raise _error(
            "watch",
            f"at most {MAX_WATCH_SYMBOLS} symbols in one /watch, got {len(names)}: send the "
            "others in another",
        )
    if end == len(words):
        raise _error("watch", f"missing condition after {', '.join(names)}, e.g. > 70000")
    return names, end


class ShorthandError(CommandError):
    """``/watch BTC 70000`` or ``/watch BTC +5%``: a number alone, which the condition
    language has no form for. The parser does not know the price; the caller that does
    names the condition to write from it: :meth:`with_price`."""

    def __init__(
        self, message: str, symbol: str, first: str, levels: tuple[str, ...] = (), tail: str = ""
    ) -> None:
        usage, _, example = COMMANDS["watch"]
        super().__init__(message, hint(usage), hint(example))
        self.symbol = symbol
        self.first = first  # the number as typed: "70k", "+5%"
        self.levels = levels or (first,)  # "/watch BTC 70000 75000": each number, as typed
        self.tail = tail  # the options typed after them, kept in the commands suggested

    def with_price(self, price: float, price_text: str) -> CommandError:
        """The answer with the symbol's price now (as Binance sent it, ``price_text``): for a
        level, which side of it the level is, so which sign; for a percentage, the level that
        far from it too."""
        symbol, first = self.symbol, self.first
        usage, example = self._marked[1:]
        percent = _SIGNED_PERCENT_RE.fullmatch(first)
        if percent is None:
            return CommandError(self._sides(price, price_text), usage, example)
        sign, size = percent.groups()
        decimals = len(price_text.partition(".")[2])
        factor = 1 - float(size) / 100 if sign == "-" else 1 + float(size) / 100
        target = f"{price * factor:.{decimals}f}"
        op, side = ("<", "below") if sign == "-" else (">", "above")
        message = (
            f"{self._marked[0]}; for a level {size}% {side} the price now ({price_text}), "
            f"{hint(f'/watch {symbol} {op} {target}{self.tail}')}"
        )
        return CommandError(message, usage, example)

    def _sides(self, price: float, price_text: str) -> str:
        """Which sign each level takes from the price now: ``>`` above it, ``<`` below."""
        symbol, tail = self.symbol, self.tail
        sides: dict[str, list[str]] = {">": [], "<": []}
        for typed in self.levels:
            level = parse(f"price > {typed}")
            assert isinstance(level, Level)
            sides[">" if level.value >= price else "<"].append(typed)
        told: list[str] = []
        for op, verb in ((">", "rises"), ("<", "falls")):
            levels = sides[op]
            if levels:
                command = hint(f"/watch {symbol} {op} {', '.join(levels)}{tail}")
                to = levels[0] if len(levels) == 1 else "each"
                told.append(f"{command} {'alerts ' if not told else ''}when it {verb} to {to}")
        message = f"say which way the price should go: {symbol} is at {price_text} now, so "
        if len(told) == 2:
            return message + ", and ".join(told)
        op, other = (">", "<") if sides[">"] else ("<", ">")
        other_way = hint(f"/watch {symbol} {other} {', '.join(sides[op])}{tail}")
        return message + f"{told[0]} (the other way: {other_way})"


def _shorthand(symbol: str, words: list[_Word], tail: str = "") -> None:
    """A condition written as a number alone (``70000``, ``+5% in 1h``; ``70000 75000``: several
    levels), which the condition language has no form for: the exact condition meant, or the
    two it could mean. ``tail``: the options typed after it, which the answer's commands keep."""
    first = words[0].text.removesuffix(",")
    if _AMOUNT_RE.fullmatch(first):
        numbers = [w.text.removesuffix(",") for w in words]
        if len(numbers) > MAX_LEVELS or not all(_AMOUNT_RE.fullmatch(n) for n in numbers):
            numbers = [first]
        levels = tuple(dict.fromkeys(numbers))
        every, after = ", ".join(levels), f" {tail}" if tail else ""
        raise ShorthandError(
            f"say which way the price should go: {hint(f'/watch {symbol} > {every}{after}')} "
            f"(above) or {hint(f'/watch {symbol} < {every}{after}')} (below)",
            symbol,
            first,
            levels,
            after,
        )
    _windowless_move(symbol, words, tail)
    percent = _SIGNED_PERCENT_RE.fullmatch(first)
    if percent is None:
        return
    sign, size = percent.groups()
    if len(words) >= 3 and words[1].lower == "in":
        move = {"+": "rises", "-": "drops"}.get(sign, "moves")
        window = words[2].text
        raise _error(
            "watch",
            f"write the move as a word: {hint(f'/watch {symbol} {move} {size}% in {window}')} "
            "(rises: up, drops: down, moves: either way)",
        )
    level, move = (f"< -{size}%", "drops") if sign == "-" else (f"> {size}%", "rises")
    message = (
        f"for the 24h change write {hint(f'/watch {symbol} change_24h {level}')}; for a move "
        f"within a time, {hint(f'/watch {symbol} {move} {size}% in 1h')}"
    )
    if len(words) > 1:  # more than the percentage: no level from the price either
        raise _error("watch", message)
    raise ShorthandError(message, symbol, first)


def _windowless_move(symbol: str, words: list[_Word], tail: str) -> None:
    """``rises 5%`` with no window: most likely 5% above the price now. The move with a
    window to send, and (the bot's, from the price now: ShorthandError.with_price) the level
    that far from the price."""
    if len(words) != 2 or words[0].lower not in ("rises", "drops", "moves"):
        return
    if tail.lower().startswith("for "):  # "rises 5% for 1h": the window, 'for' for 'in'
        return  # (the language's own error says so)
    percent = _SIGNED_PERCENT_RE.fullmatch(words[1].text)
    if percent is None or percent.group(1):
        return
    move, size = words[0].lower, percent.group(2)
    after = f" {tail}" if tail else ""
    message = (
        f"a move is measured within a time: {hint(f'/watch {symbol} {move} {size}% in 1h{after}')}"
        " (any time up to 366d)"
    )
    if move == "moves":  # either way: no one level
        raise _error("watch", message)
    raise ShorthandError(message, symbol, f"{'+' if move == 'rises' else '-'}{size}%", tail=after)


def _combined(symbol: str, condition_text: str, tail: str) -> str | None:
    """Conditions joined as people write them (``> 70000 or < 60000``, ``> 70000, < 80000``,
    ``> 70000 < 80000``, ``between 60000 and 70000``): the all(...) or any(...) command that
    means it (``tail``: the options typed after the condition). None: not that."""
    tokens = _CONDITION_TOKEN_RE.findall(condition_text)
    if "(" in tokens or ")" in tokens:
        return None
    lower = [t.lower() for t in tokens]
    tail = f" {tail}" if tail else ""
    if "between" in lower:
        i = lower.index("between")
        if lower.count("and") != 1 or lower.index("and") < i:
            return None
        j = lower.index("and")
        metric = " ".join(tokens[:i]) or "price"
        low, high = " ".join(tokens[i + 1 : j]), " ".join(tokens[j + 1 :])
        both = _parsed(f"all({metric} >= {low}, {metric} <= {high})")
        return f"for a range, write {hint(f'/watch {symbol} {both}{tail}')}" if both else None
    groups: list[list[str]] = [[]]
    kinds: set[str | None] = set()
    for token, word in zip(tokens, lower, strict=True):
        if word in _JOINERS:
            kinds.add(_JOINERS[word])
            groups.append([])
        else:
            groups[-1].append(token)
    if len(groups) == 1:  # one after the other: "> 70000 < 80000"
        groups = next(
            (
                [tokens[:i], tokens[i:]]
                for i in range(1, len(tokens))
                if _parsed(" ".join(tokens[:i])) and _parsed(" ".join(tokens[i:]))
            ),
            groups,
        )
    if len(groups) < 2 or len(kinds - {None}) > 1:
        return None
    parts = [_parsed(" ".join(group)) for group in groups]
    if not all(parts):
        return None
    (kind,) = kinds - {None} or {None}
    listed = ", ".join(p for p in parts if p)
    if kind != "any" and _never_all([parse(p) for p in parts if p]):
        # "> 70000 < 60000": no price is both; either one is what can be meant
        either = _parsed(f"any({listed})")
        if either is None:
            return None
        which = "both" if len(parts) == 2 else "all of them"
        return (
            f"{which} at once can never be; for {'either one' if len(parts) == 2 else 'any one'}"
            f", write {hint(f'/watch {symbol} {either}{tail}')}"
        )
    joined = _parsed(f"{kind or 'all'}({listed})")
    if joined is None:
        return None
    command = hint(f"/watch {symbol} {joined}{tail}")
    which = "both" if len(parts) == 2 else "all of them"
    if kind == "all":
        return f"for {which} at once, write {command}"
    if kind == "any":
        return f"for {'either one' if len(parts) == 2 else 'any one of them'}, write {command}"
    return (
        f"{'two' if len(parts) == 2 else 'several'} conditions go in all(...) ({which} at "
        f"once) or any(...) (either one), e.g. {command}"
    )


def _refuse_never(name: str, head: str, condition: Condition, tail: str) -> None:
    """Refuse an ``all(...)`` that can never hold, with the ``any(...)`` that can (``head``:
    the command before the condition, ``tail``: the options after it)."""
    if not never_true(condition):
        return
    assert isinstance(condition, AllOf)
    either = format_condition(AnyOf(condition.parts))
    command = hint(" ".join(f"{head} {either} {tail}".split()))
    raise _error(
        name,
        f"the parts of {format_condition(condition)} can never hold at once; for either one: "
        f"{command}",
    )


def never_true(condition: Condition) -> bool:
    """Whether ``condition`` can never hold: ``all(price > 70000, price < 60000)``."""
    return isinstance(condition, AllOf) and _never_all(list(condition.parts))


def _never_all(conditions: list[Condition]) -> bool:
    """Whether levels of one metric (``price > 70000``, ``price < 60000``) can never hold at
    once: the highest lower bound is at or above the lowest upper bound."""
    if not all(isinstance(c, Level) for c in conditions):
        return False
    levels = [c for c in conditions if isinstance(c, Level)]
    if len({c.metric for c in levels}) != 1:
        return False
    lows = [(c.value, c.op == ">") for c in levels if c.op in (">", ">=")]
    highs = [(c.value, c.op == "<") for c in levels if c.op in ("<", "<=")]
    if not lows or not highs:
        return False
    low, low_strict = max(lows, key=lambda b: (b[0], b[1]))
    high, high_strict = min(highs, key=lambda b: (b[0], not b[1]))
    return low > high or (low == high and (low_strict or high_strict))


def _parsed(condition_text: str) -> str | None:
    """A condition as the answer shows it, or None when it does not parse."""
    if not condition_text:
        return None
    try:
        return format_condition(parse(_plain_signs(condition_text)))
    except ConditionError:
        return None


def _duration_fix(text: str) -> str | None:
    """A duration written in words (``15 min``, ``1hour``, ``2 weeks``) or in parts (``2h30m``)
    as the language writes it (``15m``, ``1h``, ``14d``, ``150m``); None: not one."""
    match = _DURATION_WORDS_RE.fullmatch(text.replace(" ", ""))
    if match is None:
        if not _DURATION_PARTS_RE.fullmatch(text):
            return None
        seconds = sum(int(n) * _UNIT_S[u.lower()] for n, u in _DURATION_PART_RE.findall(text))
        if not seconds:
            return None
        unit, size = next((u, s) for u, s in _UNIT_S.items() if u != "w" and seconds % s == 0)
        fix = f"{seconds // size}{unit}"
    else:
        number, unit = int(match.group(1)), match.group(2)[0].lower()
        fix = f"{number * 7}d" if unit == "w" else f"{number}{unit}"
    try:
        parse_duration(fix)
    except ValueError:  # over 366 days: the answer says so when it is written so
        return None
    return fix


def _plain_signs(condition_text: str) -> str:
    """``above 70k`` / ``below 3k`` as the signs they mean (``> 70k``, ``< 3k``), outside
    ``crosses above|below``; each sign padded to the word's length, so that a column the
    condition parser names is the same in the text as typed."""
    out: list[str] = []
    previous = ""
    pos = 0
    for token in _CONDITION_TOKEN_RE.finditer(condition_text):
        word = token.group().lower()
        sign = _SIGN_WORDS.get(word)
        if sign is not None and previous != "crosses":
            out += [condition_text[pos : token.start()], sign.ljust(len(word))]
            pos = token.end()
        previous = word
    return "".join(out) + condition_text[pos:]


def _explain(exc: ConditionError, condition_text: str, following: _Word | None) -> str:
    """The condition parser's message, with its column turned into the word it points at."""
    message = exc.message
    if "(" not in condition_text and _DIGIT_COMMA_RE.search(condition_text):
        # 70,000 or 0,15, whatever the parser tripped on first (0 is no price: "> 0,15")
        return COMMA_HINT
    token: str | None = None
    at_column = _COLUMN_RE.search(message)
    if at_column:
        message = message[: at_column.start()]
        found = _CONDITION_TOKEN_RE.match(condition_text, max(exc.column - 1, 0))
        token = found.group() if found else None
    elif message.endswith(" at the end"):
        message = message[: -len(" at the end")]
        if following is not None:  # the condition stopped at an option keyword
            message += f" before {_q(following.text)}"
    if message.startswith("expected 'in'"):
        message += " (a move reads like 'rises 5% in 15m')"
    if token is None:
        return _shorten(message, condition_text)

    if token == "," and "(" not in condition_text:
        return COMMA_HINT
    before = condition_text[: max(exc.column - 1, 0)].split()[-1:]
    after = condition_text[exc.column - 1 + len(token) :].split()[:1]
    if token == "%" and before and _BARE_NUMBER_RE.fullmatch(before[0]):
        return f"write {before[0]}% without a space"
    if token.lower() in ("percent", "pct") and before and _BARE_NUMBER_RE.fullmatch(before[0]):
        return f"write {before[0]}% (with '%')"
    if token == ")" and before and before[0].endswith(","):  # all(> 1, < 2,)
        return "nothing follows the last ','; take it out"
    spaced = _SPACED_NUMBER_RE.search(condition_text)
    if message.startswith("unexpected ") and spaced and token.isdigit():  # 70 000
        groups = spaced.group().split()
        joined = f"write numbers without spaces: {''.join(groups)}"
        if len(groups[0]) < 3 or any(g.startswith("0") for g in groups):  # 70 000, 65 500
            return joined
        # 150 200 250: maybe three levels
        return (
            f"{joined} (or, for a watch of each level, list them with commas: {', '.join(groups)})"
        )
    if message.startswith("unexpected ") and token.upper() in _CURRENCIES:  # > 70000 USDT
        typed = condition_text[: exc.column - 1].strip()
        return f"a number takes no currency: write {typed}"
    bare = token.strip("$")
    if message.startswith("expected a number") and bare != token and _AMOUNT_RE.fullmatch(bare):
        return f"a number takes no currency: write {bare}"
    if message.startswith("expected a duration"):
        fix = _duration_fix(token) or (_duration_fix(token + after[0]) if after else None)
        return _shorten(message, condition_text) + (f"; write {fix}" if fix else "")
    suggestion = _OPERATOR_TYPOS.get(token) or _suggest_word(token)
    if token.lower() == "24h" and after and after[0].lower() in ("change", "range"):
        suggestion = f"{after[0].lower()}_24h"  # "24h change > 5%"
    if before and before[0].lower() == "crosses":
        suggestion = _CROSS_WORDS.get(
            token.lower(), None if suggestion == "crosses" else suggestion
        )
    if message.startswith("unexpected ") and token.lower() in _EVERY:
        every = after[0] if after and _DURATION_FORM_RE.fullmatch(after[0]) else "1h"
        return (
            f"unexpected {_q(token)}: for an alert every {every} while it holds, write "
            f"repeat {every} (cooldown {every}: at most one alert per {every}); {_OPTIONS_HINT}"
        )
    if message.startswith("unknown metric or condition") and suggestion:
        message = f"unknown metric or condition {_q(token)}"
    elif repr(token) not in message and _q(token) not in message:
        message += f" (at {_q(token)})"
    if suggestion:
        message += f" (did you mean {suggestion}?)"
    if token.lower() in _JOINERS:
        message += "; to join conditions write all(A, B) (both at once) or any(A, B) (either)"
    elif message.startswith("unexpected "):  # a whole condition, then a word it cannot take
        message += f"; {_OPTIONS_HINT}"
    if message.startswith("expected a number") and (
        _EXOTIC_NUMBER_RE.fullmatch(token) or any(ch.isdigit() for ch in token)
    ):
        message += "; write numbers with the digits 0-9 and an optional k, m or b, e.g. 70k"
    return _shorten(message, condition_text)


def _suggest_word(token: str) -> str | None:
    word = token.lower()
    if _EXOTIC_NUMBER_RE.fullmatch(word):
        return None
    if (
        word in _CONDITION_WORDS
        or word in _OPTIONS
        or word == "note"
        or not re.fullmatch(r"[a-z_0-9]+", word)
    ):
        return None
    if word.isdigit() or word in _JOINERS:  # not 'or': for
        return None
    if word in _SYNONYMS:
        return _SYNONYMS[word]
    return _closest(word, (*_CONDITION_WORDS, *_OPTIONS, "note"), cutoff=0.75)


def rearm_problem(condition: Condition) -> str | None:
    """Why ``rearm`` cannot apply to ``condition``; None: it can."""
    if not isinstance(condition, Breaks | AllOf | AnyOf):
        return None
    why = (
        "'breaks 24h ...' has no threshold to move away from"
        if isinstance(condition, Breaks)
        else "an all(...)/any(...) condition has several"
    )
    return f"'rearm' needs a single threshold condition; {why}"


def _rearm(name: str, text: str, condition: Condition | None) -> float:
    problem = rearm_problem(condition) if condition is not None else None
    if problem is not None:
        raise _error(name, problem)
    if _BARE_NUMBER_RE.fullmatch(text):
        raise _error(name, f"'rearm' takes a percentage: write {text}% instead of {text}")
    match = _PERCENT_RE.fullmatch(text)
    if match is None:
        raise _error(name, f"'rearm' needs a percentage like 0.5%, got {_q(text)}")
    percent = Decimal(match.group(1))
    fraction = float(percent / 100)
    if not (0 < percent <= MAX_REARM_PERCENT and fraction > 0):
        raise _error(
            name, f"'rearm' must be more than 0% and at most {MAX_REARM_PERCENT}%, got {text}"
        )
    return fraction


# ---------------------------------------------------------------- other commands


def _target(name: str, words: list[_Word], *, first: bool = False) -> str:
    """The watch id (or ``all``) ``words`` start with; ``first``: the command's first word,
    which may be a symbol the chat's watches are named for (TargetError)."""
    if not words:
        raise _error(name, "which watch? Give its id from /list (like w12) or 'all'")
    word = words[0]
    if word.lower == "all":
        return "all"
    match = _WATCH_ID_RE.fullmatch(word.text)
    if match:
        return f"w{int(match.group(1))}"
    if first:
        raise TargetError(name, word.text, " ".join(w.text for w in words[1:]))
    raise _error(name, f"{_q(word.text)} is not a watch id; use an id from /list like w12, or all")


def _targets(name: str, words: list[_Word], *, bare: bool = True) -> tuple[list[str], list[_Word]]:
    """The watch ids (or ``all``) a command starts with, each once (``w1 w2``, ``w1, w2,w3``),
    and the words after them. ``bare``: a number after the first id is an id too (``/unwatch
    1 2``); /mute's ``w1 60`` is a duration without its unit."""
    pieces = [_Word(piece, w.start, w.end) for w in words for piece in w.text.split(",") if piece]
    targets = [_target(name, pieces, first=True)]
    i = 1
    while i < len(pieces):
        text = pieces[i].text
        if not (
            pieces[i].lower == "all"
            or (_WATCH_ID_RE.fullmatch(text) and (bare or not text.isdigit()))
        ):
            named = normalise(text)
            if (
                targets != ["all"]
                and _is_symbol(named)
                and (bare or _QUOTE_END_RE.search(named) is not None)
            ):
                # "/unwatch w1 BTCUSDT": a symbol among the ids (TargetError.naming); after
                # /mute's ids, where a duration goes ("/mute w1 2hrs"), only one named in
                # full ("/mute w1 BTCUSDT 2h"), and what follows it is the duration
                if bare:
                    after = [
                        _target(name, [w])
                        for w in pieces[i + 1 :]
                        if _WATCH_ID_RE.fullmatch(w.text)
                    ]
                    tail = " ".join(after)
                else:
                    tail = " ".join(w.text for w in pieces[i + 1 :])
                raise TargetError(name, text, tail, before=targets)
            break
        target = _target(name, [pieces[i]])
        if "all" in (target, targets[0]):
            raise _error(name, f"unexpected {_q(text)}; /{name} takes watch ids or all")
        if target not in targets:
            targets.append(target)
        i += 1
    return targets, pieces[i:]


def _edit(
    message: str, words: list[_Word], replied: str | None = None, *, noted: bool = False
) -> Edit:
    """``/edit w12 > 71000 cooldown 1h``; in reply to a watch's alert, ``/edit > 71000``.
    ``noted``: a note (or ``note off``) was given, which is a change of its own."""
    words = _unglued(words)  # "/edit w12>71000"
    first = words[0] if words else None
    if first is not None and first.lower == "all":
        raise _error("edit", f"one watch at a time: give its id, e.g. {hint('/edit w12 > 71000')}")
    is_id = first is not None and _WATCH_ID_RE.fullmatch(first.text) is not None
    bare = first is not None and first.text.isdigit()
    if replied is not None and not (is_id and not bare):
        target, rest = replied, words  # "/edit > 71000" (or "70000") about the replied watch
    elif is_id:
        target, rest = _target("edit", words), words[1:]
    elif first is None:
        raise _error("edit", f"which watch? Give its id from /list: {hint('/edit w12 > 71000')}")
    else:
        raise TargetError("edit", first.text, " ".join(w.text for w in words[1:]))
    if not rest and noted:
        return Edit(target=target)
    if not rest:
        raise _error(
            "edit",
            f"what to change? A condition ({hint(f'/edit {target} > 71000')}), options "
            f"({hint(f'/edit {target} cooldown 1h')}), the symbol "
            f"({hint(f'/edit {target} ETHUSDT')}) or its note ({hint(f'/edit {target} note TP1')})",
        )
    # another symbol first ("/edit w12 ETHUSDT > 3000"): named in full, with its quote asset,
    # so that no misspelt condition word is taken for one
    symbol: str | None = None
    named = normalise(rest[0].text)
    if _QUOTE_END_RE.search(named) and _is_symbol(named):
        symbol, rest = named, rest[1:]
        if not rest:
            return Edit(target=target, symbol=symbol)
    if rest[0].lower == "off":
        raise _error(
            "edit", f"'off' turns an option off: say which, e.g. {hint(f'/edit {target} once off')}"
        )
    end = next((i for i, w in enumerate(rest) if w.lower in _OPTIONS), len(rest))
    condition: Condition | None = None
    level: float | None = None
    if end:
        condition_text = message[rest[0].start : rest[end - 1].end]
        try:
            condition = parse(_plain_signs(condition_text))
        except ConditionError as exc:
            level = _level(condition_text) if end == 1 else None
            ladder = _ladder(rest[:end])
            tail = message[rest[end].start :] if end < len(rest) else ""
            if len(ladder) > 1:  # "/edit w2 > 71000 76000"
                texts = [format_condition(c) for c in ladder]
                raise LevelsError(target, texts, symbol, tail) from None
            numbers = _numbers(rest[:end])
            if len(numbers) > 1:  # "/edit w2 71000 76000": the watch's condition at each
                raise LevelsError(target, (), symbol, tail, numbers) from None
            if level is None:
                following = rest[end] if end < len(rest) else None
                explained = _explain(exc, condition_text, following)
                word = rest[0].lower
                if (
                    word.isalpha()
                    and word not in _CONDITION_WORDS
                    and _is_symbol(named)
                    and _closest(word, (*_CONDITION_WORDS, "note")) is None
                ):  # "/edit w12 eth > 3000": a coin, not a misspelt condition word
                    contract = " ".join([f"{named}USDT", *(w.text for w in rest[1:])])
                    explained += (
                        f"; another symbol is named in full: {hint(f'/edit {target} {contract}')}"
                    )
                raise _error("edit", explained) from None
    if condition is not None:
        tail = message[rest[end].start :] if end < len(rest) else ""
        named = f"/edit {target}" + (f" {symbol}" if symbol else "")
        _refuse_never("edit", named, condition, tail)
    options = _options("edit", rest[end:], condition, off_ok=True)
    return Edit(
        target=target,
        condition=condition,
        condition_text=format_condition(condition) if condition is not None else None,
        level=level,
        level_text=rest[0].text if level is not None else None,
        cooldown_ms=options.cooldown_ms,
        rearm=options.rearm,
        once=options.once,
        for_ms=options.for_ms,
        off=options.off,
        symbol=symbol,
        repeat_ms=options.repeat_ms,
    )


def _numbers(words: list[_Word]) -> list[tuple[str, float]]:
    """``71000 76000`` (or ``71k, 76k``; ``6% 8%``): numbers alone, of one kind (all
    percentages or none), each once, as typed and their values; [] when the words are no such
    thing, or could be one number written in groups (``150 200``, as :func:`_ladder`)."""
    texts = [w.text.removesuffix(",") for w in words]
    if not all(_LEVEL_RE.fullmatch(w.text) for w in words) or words[-1].text.endswith(","):
        return []
    listed = any(w.text.endswith(",") for w in words[:-1])
    if not listed and _SPACED_NUMBER_RE.search(" ".join(texts)):
        return []
    if len({t.endswith("%") for t in texts}) > 1:
        return []
    numbers: list[tuple[str, float]] = []
    for text in dict.fromkeys(texts):
        level = _level(text)
        if level is None:
            return []
        numbers.append((text, level))
    return numbers


def _level(text: str) -> float | None:
    """A number alone as the language writes one (``71000``, ``71k``, ``-5%``); None: not."""
    metric = "change_24h" if text.endswith("%") else "price"
    try:
        found = parse(f"{metric} > {text}")
    except ConditionError:
        return None
    return found.value if isinstance(found, Level) else None


def _unwatch(words: list[_Word], replied: str | None = None) -> Unwatch:
    if not words and replied is not None:
        return Unwatch(replied)
    targets, rest = _targets("unwatch", words)
    if rest:
        _target("unwatch", rest)  # not an id: says so
    return Unwatch(targets[0], tuple(targets[1:]))


def _unmute(words: list[_Word], replied: str | None = None) -> Unmute:
    if not words:
        return Unmute(replied or "all")
    targets, rest = _targets("unmute", words)
    if rest:
        _target("unmute", rest)
    return Unmute(targets[0], tuple(targets[1:]))


def _mute(words: list[_Word], replied: str | None = None) -> Mute:
    first = words[0] if words else None
    if replied is not None and (
        first is None
        or not (first.lower == "all" or _WATCH_ID_RE.fullmatch(first.text))
        or first.text.isdigit()
    ):  # "/mute 1h" in reply to an alert
        return _mute([_Word(replied, 0, 0), *words])
    if words and _DURATION_FORM_RE.fullmatch(words[0].text):
        if len(words) > 1:
            raise _error(
                "mute",
                f"put the watch id first, then how long: {hint(f'/mute ID {words[0].text}')}",
            )
        raise _error(
            "mute",
            f"which watch? Put its id before the time: {hint(f'/mute w12 {words[0].text}')}, "
            f"or {hint(f'/mute all {words[0].text}')}",
        )
    targets, rest = _targets("mute", words, bare=False)
    if rest and rest[0].lower == "for":  # "/mute w12 for 1h"
        rest = rest[1:]
    if not rest:
        command = hint(f"/mute {' '.join(targets)} 1h")
        raise _error("mute", f"for how long? e.g. {command}")
    ids = " ".join(targets)
    if rest[0].lower in _UNTIL_WORDS:  # "/mute w12 until 08:00"
        return Mute(targets[0], 0, tuple(targets[1:]), _mute_until(ids, rest[1:]))
    if _CLOCK_RE.match(rest[0].text) and len(rest) == 1:  # "/mute w12 08:00": until, or for?
        hh, mm = (int(part) for part in rest[0].text.split(":"))
        until = hint(f"/mute {ids} until {rest[0].text}")
        if not hh and not mm:
            raise _error("mute", f"until midnight? {until}")
        span = f"{hh * 60 + mm}m" if mm else f"{hh}h"
        raise _error(
            "mute", f"until that time, or for that long? {until} or {hint(f'/mute {ids} {span}')}"
        )
    duration = _duration("mute", "the mute", rest[0], rest[1] if len(rest) > 1 else None)
    if len(rest) > 1:
        raise _error("mute", f"unexpected {_q(rest[1].text)} after the duration")
    return Mute(targets[0], duration, tuple(targets[1:]))


#: words for the end of a mute given as a time of day
_UNTIL_WORDS = ("until", "till", "til", "to")


def _mute_until(ids: str, words: list[_Word]) -> int:
    """The minute of the day a ``/mute ... until HH:MM`` names (``7am``, ``19.30`` too)."""
    example = hint(f"/mute {ids} until 08:00")
    if not words:
        raise _error("mute", f"until what time? e.g. {example} ({_DIGEST_ZONE})")
    text = words[0].text
    if len(words) == 2 and words[1].lower in ("am", "pm"):  # "until 8 am"
        text, words = text + words[1].lower, words[:1]
    if len(words) > 1:
        raise _error("mute", f"unexpected {_q(words[1].text)} after the time; e.g. {example}")
    match = _CLOCK_RE.match(text)
    if match is not None:
        return int(match.group(1)) * 60 + int(match.group(2))
    fix = _clock_fix(text.lower())
    if fix is None:
        raise _error("mute", f"expected a time of day like 08:00, got {_q(text)}; e.g. {example}")
    return int(fix[:2]) * 60 + int(fix[3:])


def _price(message: str, words: list[_Word]) -> Price:
    if not words:  # in reply to an alert: its symbol (the bot's)
        raise NoSymbolError(
            "price",
            f"which symbol? e.g. {hint('/price BTCUSDT')} (or send /price in reply to an alert)",
            message,
            len(message),
        )
    symbol = _symbol("price", words[0].text.rstrip(","), allow_glob=False)
    if len(words) == 2 and normalise(words[1].text) in _QUOTE_WORDS:
        quote = _QUOTE_WORDS[normalise(words[1].text)]
        raise _error("price", f"write the symbol as one word: {hint(f'/price {symbol}{quote}')}")
    # "/price BTC ETH", "/price BTC, ETH", "/price BTC,ETH"
    texts = [piece for w in words for piece in w.text.split(",") if piece]
    symbols = list(dict.fromkeys(_symbol("price", text, allow_glob=False) for text in texts))
    if len(symbols) > MAX_PRICES:
        raise _error("price", f"at most {MAX_PRICES} symbols at a time, got {len(symbols)}")
    return Price(symbols[0], tuple(symbols[1:]))


def _timezone(text: str) -> Zone:
    if not text:
        return Zone(None)
    try:
        return Zone(find_zone(text))
    except ZoneError as exc:
        raise _error("timezone", exc.text(_q(" ".join(text.split())))) from None


#: a /list word meant as a page (``0``, ``-1``, ``1.5``), not a symbol
_PAGE_LIKE_RE = re.compile(r"[+-]?[0-9][0-9.,]*")


def _listing(words: list[_Word]) -> Listing:
    """``/list``, ``/list 2``, ``/list BTCUSDT`` (or ``btc``), ``/list BTCUSDT 2``."""
    if not words:
        return Listing()
    symbol: str | None = None
    if not _PAGE_LIKE_RE.fullmatch(words[0].text):
        text = words[0].text
        if not _GLOB_CHARS.isdisjoint(text):
            raise _error("list", f"one symbol, not a pattern like {_q(text)}; /list shows all")
        symbol, words = _symbol("list", text, allow_glob=False), words[1:]
        if not words:
            return Listing(symbol=symbol)
    if len(words) > 1:
        raise _error(
            "list", f"unexpected {_q(words[1].text)}; /list takes a symbol and a page number"
        )
    text = words[0].text
    if not text.isascii() or not text.isdigit() or len(text) > 6 or int(text) < 1:
        raise _error("list", f"expected a page number like 2, got {_q(text)}")
    return Listing(int(text), symbol)


def _history(words: list[_Word], replied: str | None = None) -> History:
    """``/history``, ``/history 2``, ``/history BTCUSDT`` (or ``btc``), ``/history w3``, and
    either with a page; in reply to an alert, alone, its watch's."""
    if not words:
        return History(watch=replied)
    symbol = watch = None
    first = words[0].text
    if not _PAGE_LIKE_RE.fullmatch(first):
        if first[:1] in "wW" and (match := _WATCH_ID_RE.fullmatch(first)):
            watch = f"w{int(match.group(1))}"
        elif not _GLOB_CHARS.isdisjoint(first):
            raise _error(
                "history", f"one symbol, not a pattern like {_q(first)}; /history shows all"
            )
        else:
            symbol = _symbol("history", first, allow_glob=False)
        words = words[1:]
        if not words:
            return History(symbol=symbol, watch=watch)
    if len(words) > 1:
        raise _error(
            "history",
            f"unexpected {_q(words[1].text)}; /history takes a symbol or a watch id, and a page"
            " number",
        )
    text = words[0].text
    if not text.isascii() or not text.isdigit() or len(text) > 6 or int(text) < 1:
        raise _error("history", f"expected a page number like 2, got {_q(text)}")
    return History(int(text), symbol, watch)


# ---------------------------------------------------------------- pieces


_CLOCK_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


_CLOCK_FORM_RE = re.compile(r"([0-9]{1,2})(?:[:.h]([0-9]{2}))?(am|pm)?", re.ASCII)


def _digest(words: list[_Word]) -> Digest:
    if not words:
        raise _error(
            "digest",
            f"at what time? e.g. {hint('/digest 08:00')} ({_DIGEST_ZONE}), or "
            f"{hint('/digest off')}",
        )
    utc = len(words) == 2 and words[1].lower == "utc"  # "/digest 08:00 UTC"
    if utc:
        words = words[:1]
    if len(words) > 1:
        rest = " ".join(w.text for w in words[1:])
        try:
            zone = find_zone(rest)
        except ZoneError:
            raise _error(
                "digest",
                f"unexpected {_q(words[1].text)}; /digest takes one time ({_DIGEST_ZONE}) or off",
            ) from None
        # "/digest 08:00 CET": the time is in the chat's zone, which /timezone sets
        first = words[0].lower
        clock = first if _CLOCK_RE.match(first) else _clock_fix(first) or words[0].text
        raise _error(
            "digest",
            f"the digest's time is in this chat's time zone: send {hint(f'/timezone {zone}')}, "
            f"then {hint(f'/digest {clock}')}",
        )
    text = words[0].lower
    if text == "off":
        return Digest(None)
    match = _CLOCK_RE.match(text)
    if match is None:
        fix = _clock_fix(text)
        fixed = f"; write {fix}" if fix else ""
        raise _error(
            "digest",
            f"expected a time of day like 08:00 ({_DIGEST_ZONE}) or off, got {_q(text)}{fixed}",
        )
    return Digest(int(match.group(1)) * 60 + int(match.group(2)), utc=utc)


#: /quiet's two times, written with a dash, "to" or a space between them
_QUIET_SPLIT_RE = re.compile(r"\s*(?:-|–|—|\bto\b|\buntil\b|\s)\s*", re.IGNORECASE)


def _quiet(words: list[_Word]) -> Quiet:
    """``/quiet 23:00-07:00`` (``23:00 07:00``, ``23:00 to 07:00``, ``11pm-7am``), ``/quiet
    off``, ``/quiet`` alone."""
    if not words:
        return Quiet(show=True)
    text = " ".join(w.text for w in words)
    if text.lower() == "off":
        return Quiet()
    example = hint("/quiet 23:00-07:00")
    parts = [p for p in _QUIET_SPLIT_RE.split(text.strip()) if p]
    if len(parts) != 2:
        raise _error(
            "quiet",
            f"give the time they begin and the time they end ({_DIGEST_ZONE}), e.g. {example}, "
            "or off",
        )
    minutes = []
    for part in parts:
        match = _CLOCK_RE.match(part)
        if match is not None:
            minutes.append(int(match.group(1)) * 60 + int(match.group(2)))
            continue
        fix = _clock_fix(part.lower())
        if fix is None:
            raise _error("quiet", f"expected a time of day like 23:00, got {_q(part)}")
        minutes.append(int(fix[:2]) * 60 + int(fix[3:]))
    start, end = minutes
    if start == end:
        raise _error("quiet", f"they begin and end at the same time; e.g. {example}")
    return Quiet((start, end))


#: the zone a /digest time is in, as its refusals say it
_DIGEST_ZONE = "UTC, or this chat's /timezone"


def _clock_fix(text: str) -> str | None:
    """A time of day in another form (``8``, ``8pm``, ``08.00``) as /digest takes it."""
    match = _CLOCK_FORM_RE.fullmatch(text)
    if match is None:
        return None
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), match.group(3)
    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


def _is_symbol(text: str) -> bool:
    return 2 <= len(text) <= 30 and is_symbol(text)


def _symbol(name: str, text: str, *, allow_glob: bool) -> str:
    upper = normalise(text)
    if not _GLOB_CHARS.isdisjoint(upper):
        if not allow_glob:
            raise _error(name, f"/{name} takes one symbol, not a pattern like {_q(text)}")
        if (
            len(upper) > 30
            or not _GLOB_RE.fullmatch(upper)
            or not all(symbol_char(ch) for ch in upper if not ch.isascii())
        ):
            raise _error(
                name,
                f"{_q(text)} is not a symbol pattern; use letters, digits, * and ?, e.g. *USDT",
            )
        return upper
    if _is_symbol(upper):
        return upper
    # BTC/USDT, TradingView's names, a cashtag
    joined = _SEPARATORS_RE.sub("", _TRADINGVIEW_RE.sub("", upper))
    if joined != upper and _is_symbol(joined):
        usage, _, example = COMMANDS[name]
        raise SymbolError(text, joined, usage, example)
    if is_symbol(upper):
        raise _error(name, f"a symbol has 2 to 30 letters or digits, got {_q(text)}")
    raise _error(name, f"{_q(text)} is not a symbol; use letters and digits, e.g. BTCUSDT")


def _duration(
    name: str, what: str, word: _Word, following: _Word | None, *, zero_ok: bool = False
) -> int:
    """A duration option's value; ``zero_ok``: 0 (or 0s, 0m, ...) is a value too (a cooldown of
    none, as ``cooldown: 0`` in a rule file)."""
    text = word.text
    if zero_ok and text == "0":
        return 0
    if not _DURATION_FORM_RE.fullmatch(text):
        if (
            text.isascii()
            and text.isdigit()
            and following is not None
            and following.lower in ("s", "m", "h", "d")
        ):
            raise _error(name, f"write {text}{following.lower} without a space")
        fix = _duration_fix(text)
        if fix is None and following is not None and text.isascii() and text.isdigit():
            fix = _duration_fix(text + following.text)  # "30 minutes"
        fixed = f"; write {fix}" if fix else ""
        raise _error(
            name, f"{what} needs a duration like 30s, 15m, 4h or 1d, got {_q(text)}{fixed}"
        )
    try:
        ms = parse_duration(text)
    except ValueError:
        raise _error(name, f"{what} can be at most 366 days, got {_q(text)}") from None
    if ms <= 0 and not zero_ok:
        raise _error(name, f"{what} must be longer than 0, got {_q(text)}")
    return ms


def _closest(word: str, choices: Iterable[str], cutoff: float = 0.75) -> str | None:
    """The most similar choice; on a tie the one listed first (metrics before the rest)."""
    best: tuple[float, str] | None = None
    for choice in choices:
        ratio = difflib.SequenceMatcher(None, word, choice).ratio()
        if ratio >= cutoff and (best is None or ratio > best[0]):
            best = (ratio, choice)
    return best[1] if best else None


def _q(text: str) -> str:
    """User text quoted for a reply: as typed, between single quotes, cut short when long.

    Not repr(), which doubled a backslash (``'C:\\\\temp'``) and switched to double quotes
    around an apostrophe. Replies are plain text (no parse mode), so nothing quoted can break
    their formatting; only a character that shows nothing or reorders the line (zero-width,
    direction marks, controls) is written as its code, ``\\u200b``: the user sees what made
    the word wrong, and the reply reads as it should."""
    cut = text if len(text) <= 32 else text[:31] + "…"
    return "'" + "".join(ch if ch.isprintable() else _code(ch) for ch in cut) + "'"


def _code(ch: str) -> str:
    n = ord(ch)
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def _shorten(message: str, condition_text: str) -> str:
    """The words the condition parser copies into its messages (with repr()) quoted as the
    rest of a reply quotes them, and cut short when long."""
    for token in set(_CONDITION_TOKEN_RE.findall(condition_text)):
        message = message.replace(repr(token), _q(token))
    return message


# ---------------------------------------------------------------- rendering and help


def format_percent(fraction: float) -> str:
    """A re-arm band as typed: 0.001234567 -> ``0.1234567%``."""
    percent = format(Decimal(repr(fraction)) * 100, "f")
    if "." in percent:
        percent = percent.rstrip("0").rstrip(".")
    return f"{percent}%"


def format_watch(watch: Watch) -> str:
    """The canonical ``/watch`` text of a watch; ``parse_command`` reads it back unchanged."""
    parts = ["/watch", watch.symbol, watch.condition_text]
    if watch.cooldown_ms is not None:  # none: "cooldown 0", not the "0d" a unit would make
        parts += ["cooldown", format_duration(watch.cooldown_ms) if watch.cooldown_ms else "0"]
    if watch.rearm is not None:
        parts += ["rearm", format_percent(watch.rearm)]
    if watch.once:
        parts.append("once")
    if watch.for_ms is not None:
        parts += ["for", format_duration(watch.for_ms)]
    if watch.repeat_ms is not None:
        parts += ["repeat", format_duration(watch.repeat_ms)]
    if watch.note is not None:
        parts += ["note", watch.note]
    return " ".join(parts)


WATCH_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("/watch BTCUSDT > 70000", "price above 70000"),
    ("/watch ETHUSDT crosses below 3k cooldown 1h", "price crossing down through 3000"),
    ("/watch BTCUSDT price crosses 65000", "either way through 65000"),
    ("/watch SOLUSDT rises 5% in 15m once", "a 5% rise within 15 minutes, alert once"),
    ("/watch BNBUSDT,SOLUSDT drops 3% in 1h", "a 3% fall within an hour, a watch each"),
    ("/watch BTCUSDT > 70k, 75k, 80k", "three levels, a watch each"),
    ("/watch ETHUSDT breaks 24h high", "a new 24h high (or low)"),
    ("/watch DOGEUSDT change_24h > 10%", "up more than 10% over 24h"),
    ("/watch BTCUSDT quote_volume > 2b", "24h quote volume over 2 billion"),
    ("/watch BTCUSDT price >= 65000 rearm 0.5% for 7d", "re-alert only after a 0.5% pullback"),
    ("/watch ETHUSDT < 2800 note buy the dip", "a note its alerts show (last)"),
    ("/watch XRPUSDT all(price > 0.6, rises 2% in 5m)", "both at once (any(...): either)"),
)


def start_text(chat: int, topic: int | None = None) -> str:
    """The answer to /start: what the bot does and the first command to send (not /help's
    full list, a screenful that hid the one line a new user needs), and the chat's id, which
    an operator setting the bot up needs for ALERTBOT_ADMIN_CHATS and Telegram shows nowhere;
    sent in a forum topic, that topic's too, which a rule file's channel may name."""
    lines = [
        "Hello! I send price alerts for Binance futures.",
        "Start with a watch: " + hint("/watch BTCUSDT > 70000"),
        "  (a message when BTCUSDT trades above 70000)",
        f"Then /list shows your watches and {hint('/price BTCUSDT')} the last price.",
        "/help: every command, with examples.",
        f"This chat's id: {chat}",
    ]
    if topic is not None:
        lines.append(
            f"This topic's id: {topic} (a rule file's channel for it: "
            f"{hint(f'{{telegram: {chat}, topic: {topic}}}')})"
        )
    return "\n".join(lines)


def help_text() -> str:
    """The answer to /help."""
    lines = ["Commands:"]
    for usage, description, example in COMMANDS.values():
        lines += [hint(usage), f"  {description.replace(example, hint(example))}"]
    lines += ["", "Examples:"]
    for example, meaning in WATCH_EXAMPLES:
        lines += [hint(example), f"  {meaning}"]
    lines += [
        "",
        "Conditions: [metric] > >= < <= number; [metric] crosses [above|below] number; "
        "breaks 24h high|low; rises|drops|moves P% in D; all(...) / any(...).",
        "Metrics: price (the default), change_24h, range_24h, volume, quote_volume, high, low.",
        "Numbers: 70000, 0.5, 70k, 1.5m, 2b; % for change_24h, range_24h and moves.",
        "Durations: 30s, 15m, 4h, 1d (at most 366d).",
        "Options: cooldown D (no repeat within D), rearm P% (re-alert only after moving P% "
        "back), once (alert once, then stop), for D (the watch ends after D), repeat D (alert "
        "again every D while it holds), and last note TEXT (your words, shown with each alert). "
        f"/edit turns one off: {hint('/edit w12 once off')}.",
        f"In reply to an alert: {hint('/mute 1h')}, /unwatch, {hint('/edit 71000')} and /history "
        f"are about its watch, {hint('/watch > 75000')} and /price about its symbol.",
    ]
    return "\n".join(lines)
