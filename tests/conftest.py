"""Test-session guards, and fixtures shared by test modules."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.binance import FakeBinance
from tests.fakes.telegram import FakeTelegram
from tests.fakes.webhook import WebhookReceiver

PACKAGE = Path(__file__).resolve().parent.parent / "alertbot"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled core module that is older than its source.

    An editable install compiles the core with mypyc in place, and Python imports the compiled
    module before the .py file: after an edit, the tests would silently run the old code.
    """
    stale = [
        str(so.relative_to(PACKAGE.parent))
        for so in PACKAGE.rglob("*.so")
        for suffix in (".py", ".c")
        if (source := so.with_name(so.name.split(".")[0] + suffix)).exists()
        and source.stat().st_mtime > so.stat().st_mtime
    ]
    if stale:
        raise pytest.UsageError(
            "compiled modules older than their source: "
            + ", ".join(stale)
            + "; rebuild with `pip install -e .` (or delete them to test the pure-Python code)"
        )


@pytest.fixture(scope="module", params=["c", "python"], ids=["core=c", "core=python"])
def core_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's engine tests over each implementation of the engine's core: the C one
    (``alertbot.rules._fastcore``, skipped when it was not compiled) and ``alertbot.rules.core``.
    """
    engine = importlib.import_module("alertbot.rules.engine")
    if request.param == "c":
        try:
            core_class = importlib.import_module("alertbot.rules._fastcore").Core
        except ImportError:
            pytest.skip("alertbot.rules._fastcore is not compiled")
    else:
        core_class = importlib.import_module("alertbot.rules.core").Core
    saved = engine.Core
    engine.Core = core_class
    try:
        yield request.param
    finally:
        engine.Core = saved


# ---------------------------------------------------------------- the delivery tests' fakes


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API, with the token the delivery tests' Harness uses (a module may define
    its own ``tg``)."""
    from tests.test_delivery import TOKEN

    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver that checks signatures with ``hook-secret``."""
    async with WebhookReceiver(secret="hook-secret") as receiver:
        yield receiver


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeBinance, FakeTelegram]]:
    """The chat tests' pair (tests/test_chat.py): a fake Binance listing its SYMBOLS and a fake
    Telegram for its TOKEN. A module with other needs defines its own ``fakes``."""
    from tests.test_chat import SYMBOLS, TOKEN

    async with FakeBinance(symbols=SYMBOLS) as binance, FakeTelegram(token=TOKEN) as tg:
        yield binance, tg
