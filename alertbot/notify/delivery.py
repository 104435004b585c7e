"""One alert on its way to one destination, and what senders report about it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from alertbot.store import AlertRecord


@dataclass(eq=False, slots=True)
class Delivery:
    alert: AlertRecord
    destination: str  # telegram:<chat> | webhook:<url> | fallback:<chat>:<url> | console
    chat_id: int | None = None  # the Telegram chat (also for a fallback: the chat it stands in for)
    url: str | None = None
    secret: str | None = field(default=None, repr=False)
    #: a webhook's body, as configured ("json", "slack", "discord"); None: told by its host
    body_format: str | None = None
    attempts: int = 0
    created: float = 0.0  # wall clock, s
    state: str = "pending"
    plain: bool = False  # Telegram refused the HTML: send as plain text
    alone: bool = False  # in a merged message Telegram refused as bad HTML: send by itself
    buttons: bool = True  # False: Telegram refused its watch's buttons; sent without them
    last_error: str | None = None
    quiet: bool = False  # its failure is logged once for its chat (a chat that blocked the bot)
    general: bool = False  # Telegram refused its watch's forum topic: sent to the chat itself

    @property
    def kind(self) -> str:
        return self.destination.partition(":")[0]


#: the most of an error's text that is kept (the outbox's last_error, the senders' log lines):
#: an error can quote a whole answer, e.g. a front end's HTML page while Telegram is down
MAX_ERROR = 200


def clip(error: str, limit: int = MAX_ERROR) -> str:
    """``error`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return error if len(error) <= limit else error[: limit - 1] + "…"


class Report(Protocol):
    def __call__(
        self, delivery: Delivery, state: str, error: str | None = None, attempts: int = 1
    ) -> None:
        """``state``: sent, failed (for good) or pending (will be retried)."""


class Sender(Protocol):
    def enqueue(self, delivery: Delivery) -> None: ...


def jittered(base: float, rng: Callable[[], float] = random.random) -> float:
    """A delay drawn from [base/2, base]."""
    return base * (0.5 + 0.5 * rng())


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Capped exponential backoff with jitter for the ``attempt``-th retry (1-based)."""
    return jittered(min(maximum, initial * 2 ** max(0, attempt - 1)))
