"""Telegram's limits as one budget for the bot token (alertbot.notify.telegram.Budget), shared
by the alerts' sender and the chat commands' answers: the rules, with a clock of the test's."""

from __future__ import annotations

import asyncio

from alertbot.notify.settings import DeliverySettings
from alertbot.notify.telegram import Budget

CHAT, OTHER, GROUP = 501, 502, -1001


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sent(budget: Budget, clock: Clock, chat: int, *, alert: bool, at: float) -> None:
    """A message to ``chat`` started and answered at ``at``."""
    clock.now = at
    budget.done(budget.start(chat, at), chat, sent=True, alert=alert)


def test_an_answer_waits_for_the_chats_interval_after_an_alert():
    clock = Clock()
    budget = Budget(DeliverySettings(), clock)
    sent(budget, clock, CHAT, alert=True, at=100.0)
    sent(budget, clock, GROUP, alert=True, at=100.0)
    assert budget.free_at(CHAT, 100.0, alert=False) == 101.0  # chat_interval
    assert budget.free_at(GROUP, 100.0, alert=False) == 103.0  # group_interval


def test_an_answer_holds_up_neither_the_next_answer_nor_an_alert():
    """A user sending commands fast gets the answers at once; an alert is not late for them."""
    clock = Clock()
    budget = Budget(DeliverySettings(), clock)
    sent(budget, clock, CHAT, alert=False, at=100.0)
    assert budget.free_at(CHAT, 100.0, alert=False) <= 100.0
    assert budget.free_at(CHAT, 100.0, alert=True) <= 100.0


def test_a_group_gets_20_messages_a_minute_alerts_and_answers_together():
    clock = Clock()
    budget = Budget(DeliverySettings(), clock)
    for n in range(20):
        sent(budget, clock, GROUP, alert=n % 2 == 0, at=100.0 + n)
    # the 21st, alert or answer, waits until the first is a minute old
    assert budget.free_at(GROUP, 125.0, alert=True) == 160.0
    assert budget.free_at(GROUP, 125.0, alert=False) == 160.0
    assert budget.free_at(GROUP, 160.0, alert=False) <= 160.0


def test_a_429_holds_the_chat_for_alerts_and_answers_alike():
    clock = Clock()
    budget = Budget(DeliverySettings(), clock)
    budget.hold(CHAT, 5.0)
    assert budget.free_at(CHAT, 100.0, alert=True) == 105.0
    assert budget.free_at(CHAT, 100.0, alert=False) == 105.0
    assert budget.free_at(OTHER, 100.0, alert=False) <= 100.0


def test_the_overall_limit_counts_alerts_and_answers_until_a_second_after_their_answer():
    clock = Clock()
    budget = Budget(DeliverySettings(overall_per_second=3), clock)
    sent(budget, clock, CHAT, alert=True, at=100.0)
    sent(budget, clock, OTHER, alert=False, at=100.2)
    budget.start(GROUP, 100.3)  # not answered yet: counts however long it takes
    assert budget.window(100.5) == (3, 101.0)
    assert budget.window(101.1) == (2, 101.2)
    assert budget.window(105.0) == (1, None)


async def test_an_answer_waiting_for_room_in_the_second_keeps_that_room_from_the_alerts():
    """While an answer waits for the overall window it is counted in ``waiting``, which the
    sender takes off its own limit: the freed room goes to the answer."""
    loop = asyncio.get_running_loop()
    budget = Budget(DeliverySettings(overall_per_second=2), loop.time)
    first = budget.start(CHAT, loop.time())
    budget.start(OTHER, loop.time())
    answer = asyncio.create_task(budget.acquire(GROUP))
    await asyncio.sleep(0.05)
    assert budget.waiting == 1
    assert not answer.done()
    budget.done(first, CHAT, sent=True, alert=True)  # counts for one more second
    await asyncio.wait_for(answer, 3)
    assert budget.waiting == 0
