"""Alert text (pure): a rule's message template, or a clear default."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

from alertbot.rules.conditions import (
    PERCENT_METRICS,
    Condition,
    Cross,
    Level,
    Move,
    format_number,
    leaves,
)
from alertbot.rules.engine import Alert, metric_of
from alertbot.rules.ids import watch_number
from alertbot.rules.loader import is_blank
from alertbot.ticker import percent
from alertbot.zones import zone_label

DEFAULT_TEMPLATE = "{symbol} {condition}: price {price} ({change_24h}% 24h) at {time} [{rule}]"


def format_time(ms: int, zone: tzinfo | None = None) -> str:
    """Event time as ``2026-11-22 04:36:59 UTC``; in ``zone`` (a chat's /timezone), named as
    it names itself: ``2026-11-22 05:36:59 CET``."""
    if zone is None or zone is UTC:
        return _second_text(ms // 1000)
    at = datetime.fromtimestamp(ms // 1000, tz=zone)
    return f"{at:%Y-%m-%d %H:%M:%S} {zone_label(at)}"


@lru_cache(maxsize=256)
def _second_text(second: int) -> str:
    # the alerts of a frame share a few event seconds: strftime once per second, not per alert
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: the suffixes of the condition language's numbers (``2b``), largest first
_AMOUNT_SUFFIXES = ((1e9, "b"), (1e6, "m"), (1e3, "k"))
_SCALE = {suffix: size for size, suffix in _AMOUNT_SUFFIXES}


def format_amount(x: float, places: int = 2) -> str:
    """A volume as a reply shows it, with the suffix a condition takes (``quote_volume >
    12b``): 12873456789.12 -> ``12.87b``, 184523.417 -> ``184.52k``, at most ``places``
    decimals (a smaller amount too, unless that would round it to 0)."""
    for size, suffix in _AMOUNT_SUFFIXES:
        text = f"{x / size:.{places}f}"
        if abs(float(text)) >= 1:  # 999999.999 is 1m, not 1000k
            return _trimmed(text) + suffix
    text = f"{x:.{places}f}"
    return format_number(x) if x and not float(text) else _trimmed(text)


def amount_text(x: float, thresholds: Sequence[float] = ()) -> str:
    """:func:`format_amount`, with more decimals where two would put the amount on another
    side of one of ``thresholds`` than it is: ``2.0000001b`` for ``> 2b``, never a ``2b``
    that reads as not past it."""
    for places in range(2, 13):
        text = format_amount(x, places)
        scale = _SCALE.get(text[-1:], 1.0)
        shown = float(text[:-1] if scale != 1.0 else text) * scale
        if all((shown > t) - (shown < t) == (x > t) - (x < t) for t in thresholds):
            return text
    return format_number(x)


def _trimmed(decimal: str) -> str:
    return decimal.rstrip("0").rstrip(".") if "." in decimal else decimal


def percent_text(value: float, thresholds: Sequence[float] = (), sign: str = "") -> str:
    """A percentage as an alert (or a reply: ``/price``, a new watch's note) shows it: two
    decimals (``+5.37``), more where two would put it on another side of one of
    ``thresholds`` than it is (``+5.001`` for ``> 5%``, not ``+5.00``). ``value`` is rounded
    as rules compare it (9 decimal places)."""
    if value != value:  # NaN: the open (or low) is 0
        return "n/a"
    for places in range(2, 10):
        text = f"{value:{sign}.{places}f}"
        shown = float(text)
        if all((shown > x) - (shown < x) == (value > x) - (value < x) for x in thresholds):
            return text
    # past a million percent percent() does not round: every digit
    text = format_number(value)
    return text if sign != "+" or text.startswith("-") else f"+{text}"


def thresholds(condition: Condition, metric: str) -> tuple[float, ...]:
    """The numbers the condition compares ``metric`` with."""
    return tuple(
        leaf.value
        for leaf in leaves(condition)
        if isinstance(leaf, Level | Cross) and leaf.metric == metric
    )


BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(prices: Sequence[float]) -> str:
    """Recent prices as Unicode blocks, oldest first: ``▁▂▄▇█`` shows a rise at a glance."""
    if len(prices) < 2:
        return ""
    lo, hi = min(prices), max(prices)
    if not hi > lo:
        return BLOCKS[3] * len(prices)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[round((p - lo) / (hi - lo) * top)] for p in prices)


def _change_24h(alert: Alert, spark: str) -> str:
    t = alert.ticker
    near = thresholds(alert.rule.condition, "change_24h")
    return percent_text(percent(t.close - t.open, t.open), near, "+")


def _range_24h(alert: Alert, spark: str) -> str:
    t = alert.ticker
    near = thresholds(alert.rule.condition, "range_24h")
    return percent_text(percent(t.high - t.low, t.low), near, "")


def _value(alert: Alert, spark: str) -> str:
    """The value of the metric the alert's condition compares, other than the price, as
    replies show it: ``quote_volume 2.01b``, ``range_24h 12.30%``; empty for a price, a move,
    a breakout and ``all``/``any``."""
    cond = alert.rule.condition
    if not isinstance(cond, Level | Cross) or cond.metric == "price":
        return ""
    return metric_text(cond, metric_of(cond.metric, alert.ticker))


def _move(alert: Alert, spark: str) -> str:
    """How far a moves alert's price went in its window, and from where: ``up 4.69% from
    2770``; empty for any other alert."""
    start = alert.start
    if start != start:
        return ""
    cond = alert.rule.condition
    if not isinstance(cond, Move):
        return ""
    return move_text(alert.ticker.close, start, cond)


def move_text(price: float, start: float, cond: Move) -> str:
    """A move to ``price`` from ``start`` as alerts (and /list) say it: ``up 8.44% from 96``,
    with more decimals where two would put it on another side of the condition's size; no
    move at all is ``down`` for a drop."""
    down = price < start or (price == start and cond.kind == "drops")
    way, size = ("down", start - price) if down else ("up", price - start)
    return f"{way} {percent_text(percent(size, start), (cond.pct,))}% from {format_number(start)}"


def metric_text(
    cond: Level | Cross, value: float, thresholds: Sequence[float] | None = None
) -> str:
    """A value of a condition's metric other than the price, named, as replies and /history
    show it: ``change_24h +5.20%`` (more decimals where two would put it on the other side
    of one of ``thresholds``, by default the condition's number), ``range_24h 12.30%``,
    ``quote_volume 2.1b``, ``high 70123.4``."""
    near = (cond.value,) if thresholds is None else thresholds
    if cond.metric in PERCENT_METRICS:
        sign = "+" if cond.metric == "change_24h" else ""
        return f"{cond.metric} {percent_text(value, near, sign)}%"
    if cond.metric in ("high", "low"):  # prices: every digit, as Binance writes prices
        return f"{cond.metric} {format_number(value)}"
    return f"{cond.metric} {amount_text(value, near)}"


def alert_detail(alert: Alert) -> str | None:
    """What an alert measured besides the price, as /history shows it after ``price X``: a
    move's ``up 8.44% from 96``, another metric's value (``change_24h +5.20%``, ``quote_volume
    2.1b``), the way a crossing either way went (``crossed up``), ``still holds`` for a
    repeat; None when nothing (a price level, a breakout, ``all``/``any``)."""
    parts = [part for part in (_move(alert, ""), _value(alert, "")) if part]
    if alert.direction:
        parts.append(f"crossed {alert.direction}")
    if alert.repeated:
        parts.append("still holds")
    return ", ".join(parts) or None


#: how each placeholder is computed from an alert (and the sparkline text)
_VALUE_OF: dict[str, Callable[[Alert, str], str]] = {
    "rule": lambda a, s: a.rule.id,
    "symbol": lambda a, s: a.symbol,
    "condition": lambda a, s: a.condition,
    "price": lambda a, s: a.ticker.price_text,
    "open": lambda a, s: format_number(a.ticker.open),
    "high": lambda a, s: format_number(a.ticker.high),
    "low": lambda a, s: format_number(a.ticker.low),
    "volume": lambda a, s: format_number(a.ticker.volume),
    "quote_volume": lambda a, s: format_number(a.ticker.quote_volume),
    "change_24h": _change_24h,
    "range_24h": _range_24h,
    "threshold": lambda a, s: a.threshold,
    "time": lambda a, s: format_time(a.ticker.time),
    "sparkline": lambda a, s: s,
    "move": _move,
    "value": _value,
}


class _Values(dict[str, str]):
    """An alert's placeholder values, each computed when a template first asks for it: the
    default message uses 6 of the 14, and an alert's text and HTML share them."""

    __slots__ = ("alert", "spark")

    def __init__(self, alert: Alert, spark: str) -> None:
        super().__init__()
        self.alert = alert
        self.spark = spark

    def __missing__(self, key: str) -> str:
        value = self[key] = _VALUE_OF[key](self.alert, self.spark)
        return value


class _Escaped(dict[str, str]):
    """The same values escaped for Telegram's HTML, also computed on first use."""

    __slots__ = ("plain",)

    def __init__(self, plain: _Values) -> None:
        super().__init__()
        self.plain = plain

    def __missing__(self, key: str) -> str:
        value = self[key] = html.escape(self.plain[key], quote=False)
        return value


def values(alert: Alert, spark: str = "") -> dict[str, str]:
    """The placeholder values of an alert, as text."""
    lazy = _Values(alert, spark)
    return {name: lazy[name] for name in _VALUE_OF}


_BARE_AMPERSAND = re.compile(r"&(?!(?:lt|gt|amp|quot|#\d+|#x[0-9A-Fa-f]+);)")

#: the last line of a chat watch's alert (the default message); a Telegram message with the
#: watch's buttons goes without it (telegram.watch_buttons)
WATCH_HINT = "Mute: /mute {id} 1h · stop: /unwatch {id}"
#: the same in HTML, its commands as code: a tap on a /command link sends the command alone
#: (/mute, not /mute w3 1h), one on code copies it whole (alertbot.hints)
WATCH_HINT_HTML = "Mute: <code>/mute {id} 1h</code> · stop: <code>/unwatch {id}</code>"
#: in its place, the last line of a ``once`` watch's alert: the watch has ended with it, so
#: there is nothing to mute or stop; the command that makes it again instead (code: a tap copies)
ENDED_HINT = "That was {id}'s one alert (once): it has ended. To watch again: {again}"
ENDED_HINT_HTML = ENDED_HINT.replace("{again}", "<code>{again}</code>")
GAP_NOTE = "(the feed was down before this tick: the price moved while it was)"


def without_watch_hint(text: str, rule_id: str) -> str:
    """An alert's text (or HTML) less the WATCH_HINT line its chat watch ``rule_id`` ends it
    with; as is when it has none."""
    for line in (WATCH_HINT, WATCH_HINT_HTML):  # an HTML alert stored before: the plain line
        text = text.removesuffix("\n" + line.format(id=rule_id))
    return text


_HINT_LINE = re.compile(
    re.escape(WATCH_HINT.partition("{")[0])
    + "|"
    + re.escape(ENDED_HINT.partition("{")[0])
    + r"w\d+"
    + re.escape(ENDED_HINT.partition("}")[2].partition("{")[0])
)


def is_watch_hint(line: str) -> bool:
    """Whether ``line`` is the last line of a chat watch's alert: WATCH_HINT, or ENDED_HINT."""
    return _HINT_LINE.match(line) is not None


def without_hint_line(text: str) -> str:
    """An alert's text less its last line when that is WATCH_HINT or ENDED_HINT: the commands
    in it are for the chat, and only then (``once``: whether the watch ended is the chat's)."""
    head, sep, last = text.rpartition("\n")
    return head if sep and is_watch_hint(last) else text


@lru_cache(maxsize=1024)
def _html_template(template: str) -> str:
    return _BARE_AMPERSAND.sub("&amp;", template)  # "A & B" in a template is text


def _crossed(alert: Alert) -> str:
    """What a ``crosses X`` (either way) did, as its default message says it: ``price crossed
    up through 70000`` (the condition alone did not say which way the price went). A
    template's ``{condition}`` stays the rule's condition."""
    cond = alert.rule.condition
    assert isinstance(cond, Cross)
    return f"{cond.metric} crossed {alert.direction} through {alert.threshold}"


#: the metrics whose value the default message shows anyway: no ``{value}`` after the price
_SHOWN_ANYWAY = frozenset({"price", "change_24h"})


def _shows_value(alert: Alert) -> bool:
    """Whether the default message shows ``{value}``: a level or crossing of a volume, the
    24h range, high or low, whose value the message would otherwise not say."""
    cond = alert.rule.condition
    return isinstance(cond, Level | Cross) and cond.metric not in _SHOWN_ANYWAY


@lru_cache(maxsize=16)
def _template_default(spark: bool, move: bool, repeated: bool, value: bool = False) -> str:
    """DEFAULT_TEMPLATE, and: a move's alert says how far, from where (``price 104.1, up 8.44%
    from 96``); another metric's its value (``price 0.167, quote_volume 2.01b``); a
    ``repeat`` says the condition has held since the last alert (``still holds``); a
    sparkline goes on a line of its own."""
    template = DEFAULT_TEMPLATE
    if move:
        template = template.replace("{price} ", "{price}, {move} ", 1)
    elif value:
        template = template.replace("{price} ", "{price}, {value} ", 1)
    if repeated:
        template = template.replace("{condition}:", "{condition} still holds:", 1)
    return template + ("\n{sparkline}" if spark else "")


def render(alert: Alert, *, escape_html: bool = False, gap: bool = False, spark: str = "") -> str:
    """The alert's message; with ``escape_html`` every value is escaped for Telegram's HTML mode.

    ``gap``: the alert was computed across an outage of the feed, which the message says.
    ``spark``: a sparkline of recent prices, the ``{sparkline}`` placeholder; the default
    message shows it on a line of its own.
    """
    text, html_text = render_both(alert, gap=gap, spark=spark, with_html=escape_html)
    return html_text if escape_html else text


def render_both(
    alert: Alert,
    *,
    gap: bool = False,
    spark: str = "",
    with_html: bool = True,
    condition: str | None = None,
    zone: tzinfo | None = None,
    again: str | None = None,
) -> tuple[str, str]:
    """The message as text and, ``with_html``, for Telegram's HTML mode (else ``""``): one
    computation of the values the template uses serves both. ``condition``: the alert's
    condition text when the caller has it already. ``zone``: the time zone ``{time}`` is
    shown in (a chat's /timezone; None: UTC). ``again``: for the alert that ends a chat watch
    (``once``), the /watch command that makes it again, which its last line gives."""
    vals = _Values(alert, spark)
    if condition is not None:
        vals["condition"] = condition
    if zone is not None:
        vals["time"] = format_time(alert.ticker.time, zone)
    template = alert.rule.message
    text = "" if template is None else template.format_map(vals)
    if template is None or is_blank(text):
        # (a blank one: values that came out empty, {sparkline} before a symbol has a history,
        # {threshold} of a condition without a number; Telegram refuses an empty message, and
        # the alert would be lost: the default says what happened)
        template = _template_default(
            bool(spark), alert.start == alert.start, alert.repeated, _shows_value(alert)
        )
        if alert.direction:
            vals["condition"] = _crossed(alert)
        text = template.format_map(vals)
    html_text = _html_template(template).format_map(_Escaped(vals)) if with_html else ""
    if gap:
        text, html_text = f"{text} {GAP_NOTE}", f"{html_text} {GAP_NOTE}" if with_html else ""
    if alert.rule.note:  # a chat watch's note, below what happened
        line = f"Note: {alert.rule.note}"
        text = f"{text}\n{line}"
        html_text = f"{html_text}\n{html.escape(line, quote=False)}" if with_html else ""
    if alert.rule.message is None and watch_number(alert.rule.id) is not None:
        # a chat watch's alert says how to quiet it: the reader is the watch's owner
        wid = alert.rule.id
        if again is None:
            line, html_line = WATCH_HINT.format(id=wid), WATCH_HINT_HTML.format(id=wid)
        else:
            line = ENDED_HINT.format(id=wid, again=again)
            html_line = ENDED_HINT_HTML.format(id=wid, again=html.escape(again, quote=False))
        text, html_text = f"{text}\n{line}", f"{html_text}\n{html_line}" if with_html else ""
    return text, html_text
