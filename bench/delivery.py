"""Delivery benchmark: alert-to-Telegram latency, and how fast a burst drains within the limits.

Not a test. Run from the repository root::

    python bench/delivery.py            # 200 latency samples, 3 drains of 1000 alerts
    python bench/delivery.py --quick
    python bench/delivery.py --outage 20000   # memory of open deliveries while Telegram is down
    python bench/delivery.py --outage 20000 --webhook   # ... while a webhook receiver is down
    python bench/delivery.py --outage 20000 --fallback  # ... Telegram and the fallback webhook

1. Latency: alerts leave the engine one at a time (``Notifier.emit``, the call the pipeline
   makes), each for a different chat and 50 ms apart, so that no limit of Telegram's applies;
   measured from ``emit`` to the moment the fake Telegram server (tests/fakes/telegram.py, on
   loopback, in this process) has read the sendMessage request. This includes rendering, the
   outbox's SQLite write (WAL, one transaction per batch, on its own thread) and the HTTP call.
   Reported: median and p99. Target p99 <= 20 ms.
2. Drain: 1000 alerts for 100 chats (10 each) fired at once, as one engine frame would. With
   Telegram's limits (30 messages/s in all, 1/s per chat) and merging (10 alerts of a chat fit in
   one message) the fastest possible drain is 100 messages at 30 per second: the first 30 at
   once, then 30 a second later, ..., the last 10 at 3.0 s. Measured: from the burst to the last
   message received. Reported: seconds and the ratio to that minimum. Target <= 1.2.
3. Outage (``--outage N``, instead of 1 and 2): the fake Telegram answers every call with 502
   while N alerts for 100 chats are emitted; once all are stored and being retried, reported:
   the deliveries held in memory (``Outbox.open``), the Python heap they take (tracemalloc,
   bytes per open delivery; the alerts' rendered texts included) and the process's RSS growth.
   Then Telegram recovers and every alert must arrive once. With ``--webhook`` the same for
   100 webhook channels (one receiver, tests/fakes/webhook.py, a URL each by its query string)
   answering 500, and no Telegram. With ``--fallback``: Telegram answers 502 and the fallback
   webhook 500, every alert falls back (``fallback_after`` 0.5 s) and is held by both kinds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alertbot.notify.notifier import Notifier  # noqa: E402
from alertbot.notify.settings import DeliverySettings  # noqa: E402
from alertbot.rules.conditions import parse  # noqa: E402
from alertbot.rules.engine import Alert, Engine  # noqa: E402
from alertbot.rules.model import Channel, Rule  # noqa: E402
from alertbot.store import Store  # noqa: E402
from alertbot.ticker import Ticker  # noqa: E402
from bench.engine import machine, revision  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.fakes.webhook import WebhookReceiver  # noqa: E402

TOKEN = "123456:BENCH-token-0123456789abcdef"
T = 1_772_000_000_000


def alerts_for(
    chats: list[int], per_chat: int, time_ms: int, notify: str = "chat:{}"
) -> list[Alert]:
    """``per_chat`` alerts for each of ``chats``, each to ``notify`` with its chat filled in."""
    rules = [
        Rule(
            id=f"r{chat}-{k}",
            condition=parse("price > 100"),
            symbols=("BTCUSDT",),
            notify=(notify.format(chat),),
        )
        for chat in chats
        for k in range(per_chat)
    ]
    engine = Engine(rules)
    ticker = Ticker("BTCUSDT", time_ms, 101.5, 100.0, 110.0, 90.0, 5.0, 500.0, "101.5")
    return engine.process([ticker])


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with FakeTelegram(token=TOKEN) as tg:
        with tempfile.TemporaryDirectory() as tmp:
            settings = DeliverySettings(
                telegram_token=TOKEN,
                telegram_api_url=tg.api_url,
                db=str(Path(tmp) / "bench.db"),
            )
            notifier = Notifier(settings, {})
            await notifier.start()
            loop = asyncio.get_running_loop()
            try:
                # 1. latency, one alert at a time, each to its own chat
                latencies = []
                for n in range(args.samples):
                    (alert,) = alerts_for([10_000 + n], 1, T + n)
                    before = len(tg.requests)
                    start = loop.time()
                    notifier.emit(alert, False)
                    await tg.wait_for(lambda b=before: len(tg.requests) > b, timeout=5)
                    latencies.append(tg.requests[before].time - start)
                    await asyncio.sleep(0.05)
                # 2. drains
                drains = []
                for run_no in range(args.drains):
                    chats = [100_000 * (run_no + 1) + c for c in range(100)]
                    burst = alerts_for(chats, 10, T + 1_000_000 * (run_no + 1))
                    await asyncio.sleep(1.1)  # the previous burst's window is over
                    before = len(tg.messages)
                    start = loop.time()
                    for alert in burst:
                        notifier.emit(alert, False)
                    await tg.wait_for(lambda b=before: len(tg.messages) >= b + 100, timeout=60)
                    drains.append(tg.messages[-1].time - start)
                    got = sum(len(m.text.split("\n\n")) for m in tg.messages[before:])
                    assert got == 1000, got
                violations = tg.limit_violations()
            finally:
                await notifier.close()
    minimum = (math.ceil(100 / settings.overall_per_second) - 1) * 1.0
    lat_ms = sorted(x * 1000 for x in latencies)
    return {
        "revision": revision(),
        "machine": machine(),
        "latency_ms": {
            "samples": len(lat_ms),
            "median": statistics.median(lat_ms),
            "p99": lat_ms[min(len(lat_ms) - 1, round(0.99 * (len(lat_ms) - 1)))],
            "max": lat_ms[-1],
        },
        "drain_s": drains,
        "drain_minimum_s": minimum,
        "drain_ratio": statistics.median(drains) / minimum,
        "limit_violations": violations,
    }


def rss() -> int:
    """The process's resident set, bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def outage(
    n: int, settings_changes: dict[str, Any], mode: str = "telegram"
) -> dict[str, int]:
    """N alerts for 100 chats while Telegram answers 502 (``mode`` "webhook": for 100 webhook
    channels while their receiver answers 500; "fallback": and the fallback webhook answers
    500); memory per open delivery."""
    webhook = mode == "webhook"
    if mode == "fallback":
        settings_changes = {"fallback_after": 0.5, **settings_changes}
    chats = [10_000 + c for c in range(100)]
    per_chat = max(1, n // len(chats))
    async with FakeTelegram(token=TOKEN) as tg, WebhookReceiver() as hook:
        with tempfile.TemporaryDirectory() as tmp:
            settings = DeliverySettings(
                telegram_token=None if webhook else TOKEN,
                telegram_api_url=tg.api_url,
                db=str(Path(tmp) / "bench.db"),
                webhook_url=hook.url if mode == "fallback" else None,
                **settings_changes,
            )
            channels = {f"h{c}": Channel(f"h{c}", webhook=f"{hook.url}?c={c}") for c in chats}
            notifier = Notifier(settings, channels if webhook else {})
            await notifier.start()
            outbox = notifier.outbox
            assert outbox is not None
            if webhook or mode == "fallback":
                hook.down("500")
            if not webhook:
                tg.down(502)
            notify = "h{}" if webhook else "chat:{}"
            # the alerts as the engine makes them, one frame per round; made before the
            # measure starts (the engine's own objects are not the outbox's)
            rounds = [alerts_for(chats, 1, T + k * 1000, notify) for k in range(per_chat)]
            emitted = sum(len(r) for r in rounds)
            try:
                gc.collect()
                rss_before = rss()
                tracemalloc.start()
                heap_before = tracemalloc.get_traced_memory()[0]
                for frame in rounds:
                    for alert in frame:
                        notifier.emit(alert, False)
                    await asyncio.sleep(0)
                await outbox.stored_all()  # (flush() would wait for the retries' results too)
                await asyncio.sleep(3.0)  # every destination tried, and waiting for a retry
                if mode == "fallback":  # and every alert fallen back (parked ones: swept)
                    while await outbox.db(fallbacks, outbox.store) < emitted:
                        await asyncio.sleep(0.5)
                    await asyncio.sleep(3.0)
                gc.collect()
                heap = tracemalloc.get_traced_memory()[0] - heap_before
                tracemalloc.stop()
                grown = rss() - rss_before
                held = len(outbox.open)
                depth = outbox.depth
                hook.recover()
                tg.recover()
                deadline = time.monotonic() + 600
                while (outbox.depth or outbox.open) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await outbox.flush()  # nothing is retried any more: the results are written
                got = (await outbox.db(outbox.store.counts)).get("sent", 0)
            finally:
                await notifier.close()
    return {
        "alerts": emitted,
        "held": held,
        "depth": depth,
        "heap_bytes": heap,
        "rss_bytes": grown,
        "delivered": got,
    }


def fallbacks(store: Store) -> int:
    """How many fallback deliveries are stored."""
    return sum(1 for d in store.deliveries() if d.destination.startswith("fallback:"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--drains", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--outage", type=int, metavar="N", help="the outage memory measure")
    parser.add_argument(
        "--webhook", action="store_true", help="with --outage: 100 webhook channels are down"
    )
    parser.add_argument(
        "--fallback", action="store_true", help="with --outage: the fallback webhook is down too"
    )
    args = parser.parse_args(argv)
    if args.outage:
        started = time.perf_counter()
        mode = "webhook" if args.webhook else "fallback" if args.fallback else "telegram"
        o = asyncio.run(outage(args.outage, {}, mode))
        print(f"revision {revision()}; {machine()}")
        n, held, heap, grown = o["alerts"], o["held"], o["heap_bytes"], o["rss_bytes"]
        what = {
            "webhook": "A webhook receiver down, {} alerts for 100 webhook channels",
            "fallback": "Telegram and the fallback webhook down, {} alerts for 100 chats",
            "telegram": "Telegram down, {} alerts for 100 chats",
        }[mode]
        print(
            f"{what.format(n)}: {held} deliveries in memory "
            f"(depth {o['depth']}); heap +{heap / 2**20:.1f} MiB "
            f"({heap / max(1, held):.0f} B per delivery in memory, {heap / n:.0f} B per alert), "
            f"RSS +{grown / 2**20:.1f} MiB; after recovery {o['delivered']} of {o['depth']} "
            "deliveries sent"
        )
        print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        return 0
    if args.quick:
        args.samples, args.drains = 20, 1
    started = time.perf_counter()
    r = asyncio.run(run(args))
    lat = r["latency_ms"]
    assert isinstance(lat, dict)
    print(f"revision {r['revision']}; {r['machine']}")
    print(
        f"latency emit -> request at the fake Telegram, {lat['samples']} alerts: median "
        f"{lat['median']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms "
        "(target p99 <= 20 ms)"
    )
    drains = ", ".join(f"{d:.2f}" for d in r["drain_s"])  # type: ignore[attr-defined]
    print(
        f"drain of 1000 alerts over 100 chats: {drains} s; minimum {r['drain_minimum_s']:.1f} s; "
        f"ratio {r['drain_ratio']:.2f} (target <= 1.2); limit violations: "
        f"{len(r['limit_violations']) or 'none'}"  # type: ignore[arg-type]
    )
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
