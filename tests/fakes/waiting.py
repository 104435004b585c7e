"""Waiting in tests: poll a condition until it holds, or fail saying what was seen.

The one polling loop of the test suite; the fakes' ``wait_for`` methods and the tests' own
waits use it. A test never asserts on time: a timeout only bounds how long a broken test hangs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["POLL_INTERVAL", "wait_until"]

#: how often a condition is checked, in seconds
POLL_INTERVAL = 0.005


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    *,
    seen: Callable[[], str] | None = None,
) -> None:
    """Until ``predicate()`` (a plain or an async function) is true, checked every
    :data:`POLL_INTERVAL`; TimeoutError after ``timeout`` seconds, with ``seen()`` (what the
    caller can tell about the state it waited on) in its message."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                done = predicate()
                if inspect.isawaitable(done):
                    done = await done
                if done:
                    return
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        detail = f"; {seen()}" if seen is not None else ""
        raise TimeoutError(f"condition not met within {timeout} s{detail}") from None
