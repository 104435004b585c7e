"""Stopping background tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    The usual ``task.cancel(); with suppress(CancelledError): await task`` also swallows a
    cancellation of the caller that arrives while it waits: the caller then carries on as if it
    had never been cancelled, and whoever cancelled it to stop it waits forever (a shutdown
    that hangs). Here the caller's own cancellation propagates. An error a task ended with
    (other than its cancellation) is raised once all have ended, as ``await task`` would.
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    await asyncio.wait(tasks)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
