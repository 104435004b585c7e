"""Alert text (pure): a rule's message template, or a clear default."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from alertbot.rules.conditions import format_number
from alertbot.rules.engine import Alert

DEFAULT_TEMPLATE = "{symbol} {condition}: price {price} ({change_24h}% 24h) at {time} [{rule}]"


def format_time(ms: int) -> str:
    """Event time as ``2026-11-22 04:36:59 UTC``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(numerator: float, denominator: float) -> str:
    if not denominator:
        return "n/a"
    return f"{numerator / denominator * 100:+.2f}"


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


def values(alert: Alert, spark: str = "") -> dict[str, str]:
    """The placeholder values of an alert, as text."""
    t = alert.ticker
    return {
        "rule": alert.rule.id,
        "symbol": alert.symbol,
        "condition": alert.condition,
        "price": t.price_text,
        "open": format_number(t.open),
        "high": format_number(t.high),
        "low": format_number(t.low),
        "volume": format_number(t.volume),
        "quote_volume": format_number(t.quote_volume),
        "change_24h": _percent(t.close - t.open, t.open),
        "range_24h": _percent(t.high - t.low, t.low).lstrip("+"),
        "threshold": alert.threshold,
        "time": format_time(t.time),
        "sparkline": spark,
    }


_BARE_AMPERSAND = re.compile(r"&(?!(?:lt|gt|amp|quot|#\d+|#x[0-9A-Fa-f]+);)")

GAP_NOTE = "(the feed was down before this tick: the price moved while it was)"


def render(alert: Alert, *, escape_html: bool = False, gap: bool = False, spark: str = "") -> str:
    """The alert's message; with ``escape_html`` every value is escaped for Telegram's HTML mode.

    ``gap``: the alert was computed across an outage of the feed, which the message says.
    ``spark``: a sparkline of recent prices, the ``{sparkline}`` placeholder; the default
    message shows it on a line of its own.
    """
    vals = values(alert, spark)
    template = alert.rule.message
    if template is None:
        template = DEFAULT_TEMPLATE + ("\n{sparkline}" if spark else "")
    if escape_html:
        vals = {k: html.escape(v, quote=False) for k, v in vals.items()}
        template = _BARE_AMPERSAND.sub("&amp;", template)  # "A & B" in a template is text
    text = template.format_map(vals)
    return f"{text} {GAP_NOTE}" if gap else text
