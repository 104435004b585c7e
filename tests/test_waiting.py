"""tests/fakes/waiting.py: the suite's one polling wait."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.waiting import wait_until


async def test_a_plain_or_async_condition_is_waited_for_until_it_holds() -> None:
    """Both kinds of condition are checked again until true (an async one is awaited each
    time, so it may do work first, like flushing a queue)."""
    checks: list[str] = []

    def plain() -> bool:
        checks.append("plain")
        return checks.count("plain") == 3

    async def awaited() -> bool:
        await asyncio.sleep(0)
        checks.append("async")
        return checks.count("async") == 3

    await wait_until(plain)
    await wait_until(awaited)

    assert checks == ["plain"] * 3 + ["async"] * 3


async def test_a_condition_never_met_is_a_timeout_error_saying_what_was_seen() -> None:
    """The error names the timeout and the caller's account of the state it waited on."""
    with pytest.raises(TimeoutError, match=r"^condition not met within 0.02 s; 0 messages$"):
        await wait_until(lambda: False, 0.02, seen=lambda: "0 messages")
