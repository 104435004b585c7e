"""The evaluation engine (pure): tickers in, alerts out. API stub; implementation in progress."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alertbot.rules.model import Rule
from alertbot.ticker import Ticker


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule that fired for a symbol on a ticker."""

    rule: Rule
    symbol: str
    ticker: Ticker
    condition: str  # canonical condition text
    threshold: str  # what {threshold} shows

    @property
    def time(self) -> int:
        return self.ticker.time

    @property
    def price(self) -> str:
        return self.ticker.price_text


class Engine:
    """Evaluates rules on tickers, by exchange event time, per DESIGN.md's firing semantics.

    Alerts come out per ticker in input order; within one ticker in the order rules were added.
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        raise NotImplementedError

    def add_rule(self, rule: Rule) -> None:
        """Add a rule while running; it takes part from the next ticker of each of its symbols."""
        raise NotImplementedError

    def add_rules(self, rules: Iterable[Rule]) -> None:
        raise NotImplementedError

    def remove_rule(self, rule_id: str) -> bool:
        """Remove a rule; False when there is none with that id."""
        raise NotImplementedError

    def process(self, tickers: Iterable[Ticker]) -> list[Alert]:
        """Evaluate every rule that a ticker may affect; returns the alerts in firing order."""
        raise NotImplementedError
