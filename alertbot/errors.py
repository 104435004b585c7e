"""alertbot's exception tree.

    AlertbotError
    ├── ConfigError          bad settings
    ├── RuleError            a rule file or chat command that does not validate
    │   └── ConditionError   a condition text that does not parse (carries the column)
    ├── FeedError            the exchange feed (issue: live feed)
    ├── RecordingCutOff      a recording without its end (alertbot/recording.py)
    └── DeliveryError        a destination refused or failed (issue: delivery)

Third-party exceptions are translated into these at the border (``raise ... from exc``); the
core never sees them.
"""

from __future__ import annotations


class AlertbotError(Exception):
    """Root of every error alertbot raises on purpose."""


class ConfigError(AlertbotError):
    """Settings that cannot be used."""


class RuleError(AlertbotError):
    """A rule that does not validate."""


class ConditionError(RuleError):
    """A condition text that does not parse.

    ``column`` is 1-based within the condition text.
    """

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return self.message


class FeedError(AlertbotError):
    """The exchange feed failed."""


class DeliveryError(AlertbotError):
    """A destination failed to take an alert."""
