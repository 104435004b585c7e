"""App's stop: what is under way when it begins (a scheduled job, a short write, an open
delivery) ends within the grace, quietly, against the fake exchange and the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.model import RuleSet
from tests.fakes.binance import FakeBinance
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456:TEST-token-0123456789abcdef"
ADMIN = 42


def app_for(tmp: Path, binance: FakeBinance, tg: FakeTelegram, **kw: Any) -> App:
    feed = FeedSettings(
        ws_root=binance.ws_url,
        rest_root=binance.rest_url,
        backoff_initial=0.02,
        backoff_max=0.2,
        ping_interval=None,
    )
    delivery = DeliverySettings(
        telegram_token=TOKEN,
        telegram_api_url=tg.api_url,
        admin_chats=(ADMIN,),
        db=str(tmp / "alertbot.db"),
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    return App(RuleSet(), feed, delivery, ChatSettings(), poll_timeout=0.5, **kw)


async def test_a_job_under_way_at_the_stop_ends_without_a_traceback(tmp_path, caplog):
    """The heartbeat job is sending its message (Telegram takes it and does not answer) when
    the bot stops: the job is stopped, and nothing logs its CancelledError (APScheduler logged
    'Job "App.heartbeat ..." raised an exception' with the traceback)."""
    caplog.set_level(logging.INFO)
    async with FakeBinance() as binance, FakeTelegram(token=TOKEN) as tg:
        tg.down(None, method="sendMessage")
        app = app_for(tmp_path, binance, tg, grace=0.2, heartbeat=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await tg.wait_for(lambda: bool(tg.calls("sendMessage")), timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
