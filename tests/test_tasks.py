"""cancel_and_wait: background tasks stop, and the caller's own cancellation is never lost."""

from __future__ import annotations

import asyncio

import pytest

from alertbot.tasks import cancel_and_wait


async def _slow_to_stop(release: asyncio.Event) -> None:
    """A task that, once cancelled, takes a while to finish (as a socket's closing handshake)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await release.wait()
        raise


async def test_the_tasks_are_cancelled_and_have_ended_when_it_returns():
    release = asyncio.Event()
    release.set()
    tasks = [asyncio.create_task(_slow_to_stop(release)) for _ in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks)
    assert all(t.cancelled() for t in tasks)


async def test_a_cancellation_of_the_caller_while_it_waits_is_not_swallowed():
    """The shutdown hang: a caller cancelled while waiting for a task to stop must end too."""
    release = asyncio.Event()
    inner = asyncio.create_task(_slow_to_stop(release))
    await asyncio.sleep(0)
    carried_on = asyncio.Event()

    async def closer() -> None:
        await cancel_and_wait(inner)
        carried_on.set()  # what a swallowed cancellation would reach

    outer = asyncio.create_task(closer())
    await asyncio.sleep(0)  # outer now waits for inner to stop
    outer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not carried_on.is_set()
    await asyncio.sleep(0)
    assert inner.cancelled()


async def test_an_error_a_task_ended_with_is_raised_after_all_have_ended():
    async def broken() -> None:
        raise ValueError("bug")

    release = asyncio.Event()
    release.set()
    failing = asyncio.create_task(broken())
    other = asyncio.create_task(_slow_to_stop(release))
    await asyncio.sleep(0)  # failing has ended with its error
    with pytest.raises(ValueError, match="bug"):
        await cancel_and_wait(failing, other)
    assert other.done()
