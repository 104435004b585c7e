"""End-to-end benchmark: fake Binance -> ``alertbot run`` (a real process) -> fake Telegram.

Not a test. Run from the repository root::

    python bench/e2e.py                 # 100k rules, 60 s of frames
    python bench/e2e.py --rules 10000 --seconds 20

- A rule file of ``--rules`` rules from bench/engine.py's realistic mix (levels and crossings
  near the price, change/volume levels, moves, globs) whose alerts go to the console (stdout of
  the bot, discarded), plus probe rules, one per probe chat, that go to Telegram.
- The fake exchange (tests/fakes/binance.py, in this process) publishes 650-symbol
  ``!miniTicker@arr`` frames back to back, as fast as the bot's socket takes them (each
  ``publish`` waits for the write). Every 0.5 s a probe frame moves one probe symbol across its
  probe rule's level; the latency is from that publish to the fake Telegram (also in this
  process) reading the probe's sendMessage.
- Reported: frames the bot evaluated per second (its ``alertbot_frame_seconds`` count from
  /metrics over the measured time; when it falls behind, the hand-off conflates and it
  evaluates fewer, newer frames than were sent), frames sent per second, alerts fired and
  deliveries sent per second (``alertbot_alerts_total``, ``alertbot_deliveries_total``), the
  alerts not yet delivered when it ends (fired minus delivered or failed since the start: each
  alert here has one destination), probe latency median and p99, the bot's peak RSS (VmHWM)
  and start-up time until its feed subscribed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from alertbot.rules.conditions import format_duration  # noqa: E402
from bench.engine import Market, machine, make_symbols, revision, rule_specs  # noqa: E402
from tests.fakes.binance import FakeBinance, mini_ticker  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

TOKEN = "123456:E2E-token-0123456789abcdefgh"
PROBES = 20
PROBE_BASE = 900_000


def write_rules(path: Path, n: int, market: Market) -> None:
    rules = []
    for k, (text, symbols, cooldown, rearm) in enumerate(rule_specs(n, market, 1)):
        rule: dict[str, object] = {"id": f"r{k}", "symbols": list(symbols), "when": text}
        if cooldown:
            rule["cooldown"] = format_duration(cooldown)
        if rearm and not text.startswith("breaks"):  # rule files refuse rearm on breakouts
            rule["rearm"] = f"{rearm * 100:g}%"
        rules.append(rule)
    channels = {f"probe{i}": {"telegram": PROBE_BASE + i} for i in range(PROBES)}
    for i in range(PROBES):
        rules.append(
            {
                "id": f"probe{i}",
                "symbols": [f"PROBE{i}USDT"],
                "when": "price crosses above 100",
                "notify": [f"probe{i}"],
            }
        )
    path.write_text(yaml.safe_dump({"channels": channels, "rules": rules}, sort_keys=False))


async def run(args: argparse.Namespace) -> dict[str, object]:
    market = Market(make_symbols(), 1)
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        write_rules(rules, args.rules, market)
        log_file = open(Path(tmp) / "bot.log", "wb")  # noqa: SIM115 (closed below)
        async with FakeBinance() as binance, FakeTelegram(token=TOKEN) as tg:
            port = 18000 + os.getpid() % 1000
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("ALERTBOT_")},
                "ALERTBOT_BINANCE_WS_URL": binance.ws_url,
                "ALERTBOT_BINANCE_REST_URL": binance.rest_url,
                "ALERTBOT_TELEGRAM_TOKEN": TOKEN,
                "ALERTBOT_TELEGRAM_API_URL": tg.api_url,
                "ALERTBOT_DB": str(Path(tmp) / "a.db"),
                "ALERTBOT_HTTP_PORT": str(port),
                "ALERTBOT_LOG_LEVEL": "WARNING",
            }
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alertbot.cli", "run", "--rules", str(rules),
                cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
            )  # fmt: skip
            try:
                await binance.wait_for(
                    lambda: (
                        "!miniTicker@arr" in binance.subscribed() or proc.returncode is not None
                    ),
                    timeout=900,
                )
                if proc.returncode is not None:
                    log_file.flush()
                    raise SystemExit(
                        "alertbot did not start:\n" + (Path(tmp) / "bot.log").read_text()[-2000:]
                    )
                startup = time.monotonic() - started
                loop = asyncio.get_running_loop()
                latencies: list[float] = []
                waits: list[asyncio.Task[None]] = []
                sent = 0
                event = int(time.time() * 1000)
                # every probe symbol starts below its level: each probe frame then crosses it
                await binance.publish(
                    [mini_ticker(f"PROBE{i}USDT", 90.0, event) for i in range(PROBES)]
                )
                # the first frames evaluate every rule for the first time and fire every level
                # that is already true (tens of thousands of alerts at 100k rules): a warm-up
                for _ in range(20):
                    await binance.send_raw(market.frame())
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=300
                ) as http:
                    before = _counts((await http.get("/metrics")).text)
                    t0 = loop.time()
                    next_probe = t0 + 0.5
                    probe = 0
                    while loop.time() - t0 < args.seconds:
                        await binance.send_raw(market.frame())  # fresh event times
                        sent += 1
                        if loop.time() >= next_probe:
                            next_probe += 0.5
                            i = probe % PROBES
                            probe += 1
                            event += 1
                            # down then up in one frame: every probe is a crossing, to a price
                            # of its own, by which its alert is recognised
                            price = f"{110 + probe / 1000:.3f}"
                            sent_at = loop.time()
                            await binance.publish(
                                [
                                    mini_ticker(f"PROBE{i}USDT", 90.0, event),
                                    mini_ticker(f"PROBE{i}USDT", price, event + 1),
                                ]
                            )
                            event += 1
                            waits.append(
                                asyncio.create_task(
                                    _await_probe(tg, PROBE_BASE + i, price, sent_at, latencies)
                                )
                            )
                    elapsed = loop.time() - t0
                    after = _counts((await http.get("/metrics")).text)
                    await asyncio.gather(*waits)
                rss = _vmhwm(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
                log_file.close()
                err = (Path(tmp) / "bot.log").read_bytes()
    lat = sorted(x * 1000 for x in latencies)
    return {
        "revision": revision(),
        "machine": machine(),
        "rules": args.rules,
        "startup_s": startup,
        "frames_sent_per_s": sent / elapsed,
        "frames_evaluated_per_s": (after["frames"] - before["frames"]) / elapsed,
        "alerts_per_s": (after["alerts"] - before["alerts"]) / elapsed,
        "delivered_per_s": (after["sent"] - before["sent"]) / elapsed,
        # every alert here has one destination (the console, or a probe's chat)
        "undelivered": after["alerts"] - after["sent"] - after["failed"],
        "probes": len(lat),
        "probes_sent": probe,
        "latency_median_ms": statistics.median(lat) if lat else None,
        "latency_p99_ms": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else None,
        "rss_mb": rss,
        "stderr_tail": err.decode()[-500:],
    }


async def _await_probe(
    tg: FakeTelegram, chat: int, price: str, sent_at: float, out: list[float]
) -> None:
    """The time from ``sent_at`` to the message with this probe's alert (its price); none when
    the probe crossed nothing (conflated) or its alert did not come within 30 s."""
    text = f": price {price} ("
    try:
        await tg.wait_for(lambda: _sent(tg, chat, text) is not None, timeout=30)
    except TimeoutError:
        return
    when = _sent(tg, chat, text)
    assert when is not None
    out.append(when - sent_at)


def _sent(tg: FakeTelegram, chat: int, text: str) -> float | None:
    for r in tg.calls("sendMessage"):
        if r.params.get("chat_id") == chat and text in str(r.params.get("text", "")):
            return r.time
    return None


def _counts(metrics: str) -> dict[str, float]:
    """Frames evaluated, alerts fired, deliveries sent and failed for good (all channels)."""

    def total(pattern: str) -> float:
        return sum(float(v) for v in re.findall(pattern + r" ([0-9.e+]+)$", metrics, re.M))

    return {
        "frames": total(r"^alertbot_frame_seconds_count"),
        "alerts": total(r"^alertbot_alerts_total\{[^}]*\}"),
        "sent": total(r'^alertbot_deliveries_total\{[^}]*outcome="sent"[^}]*\}'),
        "failed": total(r'^alertbot_deliveries_total\{[^}]*outcome="failed"[^}]*\}'),
    }


def _vmhwm(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    r = asyncio.run(run(args))
    print(f"revision {r['revision']}; {r['machine']}")
    print(
        f"{r['rules']:,} rules (+100 globs, +{PROBES} probes), 650-symbol frames; "
        f"start-up until subscribed {r['startup_s']:.1f} s"
    )
    print(
        f"frames sent {r['frames_sent_per_s']:.0f}/s, evaluated {r['frames_evaluated_per_s']:.0f}/s"
    )
    print(
        f"alerts fired {r['alerts_per_s']:.0f}/s, delivered {r['delivered_per_s']:.0f}/s; "
        f"alerts not yet delivered when the measured time ended: {r['undelivered']:.0f}"
    )
    if r["probes"]:
        print(
            f"frame -> Telegram request, {r['probes']} of {r['probes_sent']} probes alerted "
            "(a conflated probe crosses nothing): median "
            f"{r['latency_median_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms"
        )
    print(f"peak RSS of the bot {r['rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
