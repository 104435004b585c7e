"""Feed benchmark: what the live path costs on top of receiving, and how fast a reconnect is.

Not a test. Run from the repository root::

    python bench/feed.py                  # throughput (7 runs) and 30 reconnects
    python bench/feed.py --quick          # smoke run
    python bench/feed.py --json           # one JSON object instead of the table

1. Throughput on loopback. A server in a separate process (so that it does not share the
   client's core or event loop; started from a fork server, not forked from the client, so
   that it shares none of the client's memory) sends ``--frames`` pre-built
   ``!miniTicker@arr`` frames of 650 symbols (bench/engine.py's market generator: every symbol
   in every frame, event times 1 s apart) as fast as the client takes them, over one
   connection per run. Five clients, in a rotating order within each run, each on fresh
   frames:
   - *bare*: a websockets ``async for message in ws`` loop that only counts messages;
   - *decode*: the bare loop plus ``orjson.loads`` of each frame (what any JSON path pays);
   - *feed*: the feed alone (sockets, classification, hand-off), messages then dropped (ticker
     frames pass undecoded, as in the pipeline);
   - *read*: the same path as *engine* into an engine with no rules: every ticker read into
     the engine's per-symbol state, nothing evaluated (what reading the frames costs at all);
   - *engine*: alertbot's path, ``Feed`` (socket, watchdog, classification) -> ``Handoff`` ->
     ``Engine.process_raw`` over ``--rules`` rules (bench/engine.py's realistic mix), the
     consumer that ``alertbot run`` uses. The hand-off is made large enough that nothing is
     conflated: every ticker is evaluated.
   Reported: tickers per second (median over runs) and each client's ratio to *bare* (median of
   the per-run ratios). Target: *engine* / *bare* >= 0.5.
2. Reconnect time. Against the in-process fake Binance (tests/fakes/binance.py) publishing a
   frame every 5 ms, with the feed's default settings: the server aborts the TCP connection
   (no close frame); measured from the abort to the first frame the engine receives on the new
   connection. A fresh feed per run (backoff state starts over, as after a healthy period).
   Reported: median and p99 over ``--reconnects`` runs. Target p99 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from alertbot.app import Pipeline  # noqa: E402
from alertbot.feed.client import Feed  # noqa: E402
from alertbot.feed.handoff import Handoff  # noqa: E402
from alertbot.feed.settings import FeedSettings  # noqa: E402
from alertbot.rules.engine import Engine  # noqa: E402
from alertbot.ticker import ParseStats  # noqa: E402
from bench.engine import Market, build_rules, machine, make_symbols, revision, rule_specs  # noqa: E402
from tests.fakes.binance import FakeBinance, mini_ticker  # noqa: E402

THROUGHPUT_TARGET = 0.5
CLIENTS = ("bare", "decode", "feed", "read", "engine")
RECONNECT_P99_TARGET = 2.0


# ------------------------------------------------------------------ the frame server


def _serve(frames: list[bytes], port_out: Any, stop: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame.decode())
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            port_out.put(server.sockets[0].getsockname()[1])
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)

    asyncio.run(main())


def make_frames(n: int, seed: int) -> tuple[Market, list[bytes]]:
    market = Market(make_symbols(), seed)
    return market, [market.frame() for _ in range(n)]


# ------------------------------------------------------------------ clients


async def bare_client(url: str, n: int) -> float:
    async with connect(url, compression=None, max_size=None) as ws:
        count = 0
        start = 0.0
        async for _ in ws:
            if count == 0:
                start = time.perf_counter()
            count += 1
            if count == n:
                return time.perf_counter() - start
    raise RuntimeError("server closed early")


async def decode_client(url: str, n: int) -> float:
    """The bare loop plus ``orjson.loads`` of every frame: the ceiling of any decoding path."""
    async with connect(url, compression=None, max_size=None) as ws:
        count = 0
        start = 0.0
        loads = orjson.loads
        while count < n:
            loads(await ws.recv(decode=False))
            if count == 0:
                start = time.perf_counter()
            count += 1
        return time.perf_counter() - start


async def feed_client(url: str, n: int, engine: Engine) -> tuple[float, int]:
    settings = FeedSettings(
        ws_root=url,
        stream="all",
        queue=n + 1,  # evaluate every ticker: no conflation in a throughput measurement
        stale_after=60.0,
        max_frame_bytes=64 * 1024 * 1024,
        ping_interval=None,
    )
    alerts = 0

    def emit(alert: object, gap: bool) -> None:
        nonlocal alerts
        alerts += 1

    pipeline = Pipeline(engine, settings, emit)
    pipeline.directory.refresh = _no_rest  # type: ignore[method-assign]
    first = _first_put(pipeline.handoff)
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    while pipeline.frames < n:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - first[0]
    stop.set()
    await task
    return elapsed, alerts


async def feed_only_client(url: str, n: int) -> float:
    """The feed's own share: socket, classification, hand-off; the messages are dropped."""
    settings = FeedSettings(
        ws_root=url,
        stream="all",
        queue=n + 1,
        stale_after=60.0,
        ping_interval=None,
        max_frame_bytes=64 * 1024 * 1024,
    )
    handoff = Handoff(settings.queue)
    first = _first_put(handoff)
    # as the pipeline's feed: ticker frames pass on undecoded
    feed = Feed(
        settings, lambda message, raw: handoff.put(message), undecoded=True, burst=handoff.burst
    )
    feed.want_streams(["!miniTicker@arr"])
    got = 0
    async with feed:
        while got < n:
            got += len(await handoff.get())
    return time.perf_counter() - first[0]


def _first_put(handoff: Handoff) -> list[float]:
    """Time the first message entering the hand-off (the start of a measurement)."""
    first = [0.0]
    put = handoff.put

    def timed(message: Any) -> None:
        if not first[0]:
            first[0] = time.perf_counter()
        put(message)

    handoff.put = timed  # type: ignore[method-assign]
    return first


async def _no_rest() -> bool:
    return False


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate bare and feed runs on the same frames; medians of tickers per second."""
    per_run = args.frames
    market, frames = make_frames(per_run * args.runs * len(CLIENTS) + 5, args.seed)
    specs = list(rule_specs(args.rules, market, args.seed))
    engine = Engine(build_rules(specs, 0))
    empty = Engine([])
    # the first frame evaluates every rule for the first time: not part of the measurement
    stats = ParseStats()
    for frame in frames[:5]:
        engine.process_message(orjson.loads(frame), stats)
        empty.process_message(orjson.loads(frame), stats)
    tickers = sum(frame.count(b'"s":') for frame in frames[5 : 5 + per_run])
    rates: dict[str, list[float]] = {kind: [] for kind in CLIENTS}
    alerts: list[int] = []
    # not fork: a forked server shares the client's pages copy-on-write (the frames alone are
    # hundreds of MB), and the client's first write to each shared page then faults; that
    # charged the client about 20 page faults a frame, 50-100 us, that the bot never pays
    ctx = mp.get_context("forkserver")
    kinds = list(CLIENTS)
    for run in range(args.runs):
        first = run % len(kinds)
        order = kinds[first:] + kinds[:first]  # rotate who goes first
        for kind in order:
            # each run gets fresh frames (the engine ignores event times it has seen)
            offset = 5 + (len(kinds) * run + kinds.index(kind)) * per_run
            chunk = frames[offset : offset + per_run]
            port_q = ctx.Queue()
            stop = ctx.Event()
            server = ctx.Process(target=_serve, args=(chunk, port_q, stop), daemon=True)
            server.start()
            url = f"ws://127.0.0.1:{port_q.get(timeout=30)}"
            if kind == "bare":
                elapsed = asyncio.run(bare_client(url + "/market/ws/!miniTicker@arr", len(chunk)))
            elif kind == "decode":
                elapsed = asyncio.run(decode_client(url + "/market/ws/!miniTicker@arr", len(chunk)))
            elif kind == "feed":
                elapsed = asyncio.run(feed_only_client(url, len(chunk)))
            elif kind == "read":
                elapsed, _ = asyncio.run(feed_client(url, len(chunk), empty))
            else:
                elapsed, fired = asyncio.run(feed_client(url, len(chunk), engine))
                alerts.append(fired)
            rates[kind].append(tickers / elapsed)
            stop.set()
            server.join(10)
            print(f"  run {run + 1} {kind}: {tickers / elapsed:,.0f} tickers/s", file=sys.stderr)
    bare, decode, feed, full = rates["bare"], rates["decode"], rates["feed"], rates["engine"]
    read = rates["read"]
    bare_med = statistics.median(bare)
    return {
        "frames_per_run": per_run,
        "tickers_per_frame": tickers / per_run,
        "rules": args.rules,
        "bare_tickers_per_s": bare_med,
        "decode_tickers_per_s": statistics.median(decode),
        "decode_ratio": statistics.median(d / b for d, b in zip(decode, bare, strict=True)),
        "feed_tickers_per_s": statistics.median(feed),
        "engine_tickers_per_s": statistics.median(full),
        "feed_ratio": statistics.median(f / b for f, b in zip(feed, bare, strict=True)),
        "read_tickers_per_s": statistics.median(read),
        "read_ratio": statistics.median(r / b for r, b in zip(read, bare, strict=True)),
        "ratio": statistics.median(f / b for f, b in zip(full, bare, strict=True)),
        "ratio_per_run": [f / b for f, b in zip(full, bare, strict=True)],
        "alerts_per_run": statistics.median(alerts),
    }


# ------------------------------------------------------------------ reconnects


async def reconnect_times(runs: int) -> list[float]:
    out: list[float] = []
    async with FakeBinance() as fake:
        for _ in range(runs):
            settings = FeedSettings(ws_root=fake.ws_url, rest_root=fake.rest_url, stream="all")
            engine = Engine([])
            pipeline = Pipeline(engine, settings, lambda a, g: None)
            pipeline.directory.refresh = _no_rest  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(pipeline.run(stop))
            t = 1_772_000_000_000 + len(out) * 10_000_000
            await fake.wait_for_connections(1)

            async def publish_until(pred: Any) -> None:
                nonlocal t
                while not pred():
                    t += 1
                    await fake.publish([mini_ticker("BTCUSDT", 1, t)])
                    await asyncio.sleep(0.005)

            await publish_until(lambda p=pipeline: p.frames > 0)
            frames = pipeline.frames
            handshakes = fake.stats.handshakes
            start = time.perf_counter()
            await fake.drop(code=None)
            await publish_until(
                lambda p=pipeline, h=handshakes, f=frames: (
                    fake.stats.handshakes > h and p.frames > f
                )
            )
            out.append(time.perf_counter() - start)
            stop.set()
            await task
            await fake.wait_for(lambda: not fake.connections)
    return out


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--reconnects", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.runs, args.rules, args.reconnects = 30, 2, 1000, 5
    print(f"machine: {machine()}", file=sys.stderr)
    tp = throughput(args)
    times = asyncio.run(reconnect_times(args.reconnects))
    result = {
        "revision": revision(),
        "machine": machine(),
        "throughput": tp,
        "reconnect_s": {
            "runs": len(times),
            "median": statistics.median(times),
            "p99": percentile(times, 0.99),
            "max": max(times),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rc = result["reconnect_s"]
    ratios = ", ".join(f"{r:.2f}" for r in tp["ratio_per_run"])
    print(f"revision {result['revision']}; {result['machine']}")
    print(
        f"throughput, {tp['tickers_per_frame']:.0f}-ticker frames, {tp['rules']:,} rules, "
        f"{args.runs} runs of {tp['frames_per_run']} frames:"
    )
    print(f"  bare websockets receive loop  {tp['bare_tickers_per_s']:>12,.0f} tickers/s")
    print(
        f"  bare loop + orjson.loads      {tp['decode_tickers_per_s']:>12,.0f} tickers/s"
        f"   ratio {tp['decode_ratio']:.2f}"
    )
    print(
        f"  feed, hand-off (no engine)    {tp['feed_tickers_per_s']:>12,.0f} tickers/s"
        f"   ratio {tp['feed_ratio']:.2f}"
    )
    print(
        f"  feed -> engine, no rules      {tp['read_tickers_per_s']:>12,.0f} tickers/s"
        f"   ratio {tp['read_ratio']:.2f}"
    )
    print(
        f"  feed -> engine                {tp['engine_tickers_per_s']:>12,.0f} tickers/s"
        f"   ratio {tp['ratio']:.2f} (target >= {THROUGHPUT_TARGET}; per run {ratios})"
    )
    print(
        f"reconnect after an abrupt close, {rc['runs']} runs: median {rc['median']:.3f} s, "
        f"p99 {rc['p99']:.3f} s, max {rc['max']:.3f} s (target p99 <= {RECONNECT_P99_TARGET} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
