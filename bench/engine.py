"""Engine benchmark: how much does rule evaluation cost on top of decoding the feed?

Not a test. Run from the repository root::

    python bench/engine.py                       # 10k, 100k and 1M rules
    python bench/engine.py --sizes 100000 --frames 300 --runs 5
    python bench/engine.py --quick               # smoke run: 10k rules, few frames
    python bench/engine.py --sizes 100000 --profile   # cProfile of the engine loop (stderr)

What it does, per rule-set size, in a separate subprocess (so that peak RSS is per size):

1. Synthetic ``!miniTicker@arr`` frames of 650 symbols (every symbol in every frame, event times
   1 s apart): prices spread log-uniformly from 0.001 to 100,000, a geometric random walk with
   about 0.02 %/s volatility and occasional jumps, 24 h o/h/l/v/q kept consistent with a rolling
   window of 5-minute buckets pre-filled with 24 h of history, volumes that grow with activity and
   decay as old buckets leave the window, decimals formatted like Binance.
2. Rules: single-symbol rules spread over the 650 symbols (a quarter of them on 20 popular names),
   about 65 % price levels and crossings near the current price (within ±10 %), 25 % change_24h /
   range_24h / volume / quote_volume levels near the current values, 10 % moves in a window
   (rises / drops / moves P % in 5m / 15m / 1h), with cooldowns (0, 1m, 15m, 1h) and re-arm bands
   (0, 0.2 %, 1 %) mixed in; plus 100 glob rules over ``*USDT`` (breaks 24h high / low,
   change_24h levels, moves). Built from condition TEXT through
   ``alertbot.rules.conditions.parse``; "load" is parse + ``Rule`` + ``Engine(rules)``.
3. The first frame (every rule evaluated for the first time) is timed on its own, then a few
   warm-up frames, then ``--runs`` times ``--frames`` fresh frames (the engine is stateful and
   ignores event times it has seen, so every run gets new frames): per frame the time of
   ``engine.process_raw(raw, stats)`` (the path of the live feed and of replay: the frame's bytes
   read, validated and evaluated by the engine's core, without a Python object per element), and
   on the same frames the baseline
   ``orjson.loads(raw)`` plus ``float()`` of the six numeric fields of every element, and
   ``parse_message`` alone, interleaved frame by frame so that contention on a shared machine
   hits all three alike. Reported: medians of the per-run medians (and p99s) and the ratio
   engine / baseline.

Targets: ratio <= 3 at 100k rules; ratio <= 5 at 1M rules with peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from alertbot.rules.conditions import parse  # noqa: E402
from alertbot.rules.model import Rule  # noqa: E402
from alertbot.ticker import ParseStats, parse_message  # noqa: E402

N_SYMBOLS = 650
START_MS = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
SIGMA = 0.0002  # per-second log volatility (0.02 %/s)
JUMP_P = 0.0003  # chance per symbol and second of a jump
WARMUP_FRAMES = 5
GLOB_RULES = 100
BUCKET_S = 300  # the generator's 24 h window: 288 buckets of 5 minutes
BUCKETS = 86_400 // BUCKET_S
TARGETS = {100_000: 3.0, 1_000_000: 5.0}
RSS_TARGET_MB = 1024.0

POPULAR = [
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT", "ADAUSDT", "AVAXUSDT",
    "LINKUSDT", "DOTUSDT", "LTCUSDT", "TRXUSDT", "BCHUSDT", "NEARUSDT", "APTUSDT", "ARBUSDT",
    "OPUSDT", "SUIUSDT", "1000PEPEUSDT", "WIFUSDT",
]  # fmt: skip
POPULAR_PRICES = (
    68_500, 3_080, 148, 0.615, 0.161, 598, 0.45, 35.2, 14.8, 6.9,
    82.5, 0.121, 410, 5.6, 8.9, 0.78, 1.75, 1.62, 0.0112, 2.35,
)  # fmt: skip
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def make_symbols(n: int = N_SYMBOLS) -> list[str]:
    """20 popular names, then generated ones (A0USDT, B0USDT, ..., A0BUSDT, ...); about one in
    seven generated names quotes in USDC or BUSD, so ``*USDT`` globs do not match everything."""
    names = list(POPULAR[:n])
    i = 0
    while len(names) < n:
        base = LETTERS[i % 26] + str(i // 26 % 10) + ("" if i < 260 else LETTERS[i // 260 % 26])
        quote = "USDC" if i % 14 == 3 else "BUSD" if i % 14 == 10 else "USDT"
        names.append(base + quote)
        i += 1
    return names


def price_decimals(price: float) -> int:
    """Binance-like price precision: about 5 significant digits, 2 to 7 decimals."""
    return min(7, max(2, 4 - math.floor(math.log10(price))))


def qty_decimals(price: float) -> int:
    return min(3, max(0, math.floor(math.log10(price)) - 1))


class Market:
    """650 symbols moving second by second; ``frame()`` gives the next ``!miniTicker@arr`` frame.

    The 24 h statistics come from a rolling window of 288 completed 5-minute buckets (pre-filled
    with a day of history) plus the current bucket. The history lives in flat ``array('d')``
    ring buffers, so the generator adds little to RSS and nothing to the garbage collector's work.
    """

    def __init__(self, symbols: list[str], seed: int, start_ms: int = START_MS) -> None:
        rng = self.rng = random.Random(seed)
        self.symbols = symbols
        prices = [
            float(POPULAR_PRICES[POPULAR.index(s)])
            if s in POPULAR
            else math.exp(rng.uniform(math.log(0.001), math.log(100_000)))
            for s in symbols
        ]
        self.price = prices
        self.pdec = [price_decimals(p) for p in prices]
        self.qdec = [qty_decimals(p) for p in prices]
        # 24 h quote volume log-uniform 5m..10b (BTC and ETH at the top), per second
        self.base_q = [
            math.exp(rng.uniform(math.log(5e6), math.log(1e10))) / 86_400 for _ in prices
        ]
        self.base_q[0], self.base_q[1] = 12e9 / 86_400, 6e9 / 86_400
        self.log_act = [rng.gauss(0.0, 0.4) for _ in prices]
        self.spike = [0.0] * len(prices)
        # ring buffers of completed buckets, oldest at self.head
        self.opens: list[array[float]] = []
        self.highs: list[array[float]] = []
        self.lows: list[array[float]] = []
        self.vols: list[array[float]] = []
        self.quotes: list[array[float]] = []
        self.head = 0
        bucket_sigma = SIGMA * math.sqrt(BUCKET_S)
        for i, p in enumerate(prices):
            drift = rng.gauss(0.0, 0.03) / BUCKETS
            walk = [0.0]
            for _ in range(BUCKETS):
                walk.append(walk[-1] + drift + rng.gauss(0.0, bucket_sigma))
            shift = math.log(p) - walk[-1]
            opens, highs, lows, vols, quotes = (array("d") for _ in range(5))
            for k in range(BUCKETS):
                a, b = math.exp(walk[k] + shift), math.exp(walk[k + 1] + shift)
                q = self.base_q[i] * BUCKET_S * rng.lognormvariate(0.0, 0.4)
                opens.append(a)
                highs.append(max(a, b) * math.exp(abs(rng.gauss(0.0, bucket_sigma / 2))))
                lows.append(min(a, b) * math.exp(-abs(rng.gauss(0.0, bucket_sigma / 2))))
                vols.append(q / ((a + b) / 2))
                quotes.append(q)
            self.opens.append(opens)
            self.highs.append(highs)
            self.lows.append(lows)
            self.vols.append(vols)
            self.quotes.append(quotes)
        self.hmax = [max(h) for h in self.highs]
        self.lmin = [min(lo) for lo in self.lows]
        self.vsum = [sum(v) for v in self.vols]
        self.qsum = [sum(q) for q in self.quotes]
        # current bucket: [open, high, low, v, q]
        self.cur = [[p, p, p, 0.0, 0.0] for p in prices]
        self.second = 0
        self.start_ms = start_ms

    def _rollover(self) -> None:
        k = self.head
        for i, cur in enumerate(self.cur):
            open_, high, low, vol, quote = cur
            old_high, old_low = self.highs[i][k], self.lows[i][k]
            self.vsum[i] += vol - self.vols[i][k]
            self.qsum[i] += quote - self.quotes[i][k]
            self.opens[i][k] = open_
            self.highs[i][k] = high
            self.lows[i][k] = low
            self.vols[i][k] = vol
            self.quotes[i][k] = quote
            if old_high >= self.hmax[i]:
                self.hmax[i] = max(self.highs[i])
            elif high > self.hmax[i]:
                self.hmax[i] = high
            if old_low <= self.lmin[i]:
                self.lmin[i] = min(self.lows[i])
            elif low < self.lmin[i]:
                self.lmin[i] = low
            p = self.price[i]
            self.cur[i] = [p, p, p, 0.0, 0.0]
        self.head = (k + 1) % BUCKETS

    def frame(self) -> bytes:
        """Advance one second; the frame of every symbol as Binance would send it."""
        if self.second and self.second % BUCKET_S == 0:
            self._rollover()
        rng = self.rng
        gauss, rand = rng.gauss, rng.random
        event_ms = self.start_ms + self.second * 1000 + rng.randrange(0, 20)
        self.second += 1
        act_decay, act_sigma = 1.0 - 1.0 / 600, 0.4 * math.sqrt(2.0 / 600)
        out = []
        head = self.head
        for i, sym in enumerate(self.symbols):
            r = gauss(0.0, SIGMA)
            spike = self.spike[i] * 0.99
            if rand() < JUMP_P:
                r += (1 if rand() < 0.5 else -1) * (0.005 + 0.025 * rand())
                spike += 4.0
            self.spike[i] = spike
            p = self.price[i] * math.exp(r)
            self.price[i] = p
            la = self.log_act[i] * act_decay + gauss(0.0, act_sigma)
            self.log_act[i] = la
            q = self.base_q[i] * math.exp(la + gauss(0.0, 0.5)) * (1.0 + spike)
            q *= 1.0 + 0.3 * abs(r) / SIGMA
            cur = self.cur[i]
            if p > cur[1]:
                cur[1] = p
            if p < cur[2]:
                cur[2] = p
            cur[3] += q / p
            cur[4] += q
            d = self.pdec[i]
            out.append(
                {
                    "e": "24hrMiniTicker",
                    "E": event_ms,
                    "s": sym,
                    "c": f"{p:.{d}f}",
                    "o": f"{self.opens[i][head]:.{d}f}",
                    "h": f"{max(self.hmax[i], cur[1]):.{d}f}",
                    "l": f"{min(self.lmin[i], cur[2]):.{d}f}",
                    "v": f"{self.vsum[i] + cur[3]:.{self.qdec[i]}f}",
                    "q": f"{self.qsum[i] + cur[4]:.2f}",
                }
            )
        return orjson.dumps(out)

    def snapshot(self, i: int) -> tuple[float, float, float, float, float]:
        """(price, change_24h %, range_24h %, volume, quote_volume) of symbol ``i`` now."""
        cur = self.cur[i]
        o = self.opens[i][self.head]
        h, low = max(self.hmax[i], cur[1]), min(self.lmin[i], cur[2])
        p = self.price[i]
        return (
            p,
            (p - o) / o * 100,
            (h - low) / low * 100,
            self.vsum[i] + cur[3],
            self.qsum[i] + cur[4],
        )


# ------------------------------------------------------------------------------------ rules

COOLDOWNS = (0, 60_000, 900_000, 3_600_000)
COOLDOWN_WEIGHTS = (40, 20, 25, 15)
REARMS = (0.0, 0.002, 0.01)
REARM_WEIGHTS = (50, 30, 20)
OPS = (">", ">=", "<", "<=")
MOVE_PCTS = ("0.3", "0.5", "1", "2", "3", "5")
WINDOWS = ("5m", "15m", "1h")


def _volume_text(x: float, rng: random.Random) -> str:
    if x >= 1e4 and rng.random() < 0.5:
        for suffix, size in (("b", 1e9), ("m", 1e6), ("k", 1e3)):
            if x >= size:
                return f"{x / size:.3f}{suffix}"
    return f"{x:.0f}" if x >= 100 else f"{x:.4f}"


Spec = tuple[str, tuple[str, ...], int, float]


def rule_specs(n: int, market: Market, seed: int) -> Iterator[Spec]:
    """(condition text, symbols, cooldown ms, re-arm fraction) of ``n`` single-symbol rules plus
    the glob rules, generated lazily (the texts of 1M rules would add ~200 MB to peak RSS)."""
    rng = random.Random(seed * 7919 + n)
    symbols = market.symbols
    n_popular = sum(1 for s in symbols if s in POPULAR)
    snapshots = [market.snapshot(i) for i in range(len(symbols))]
    choices, rand, randrange, uniform = rng.choices, rng.random, rng.randrange, rng.uniform
    cooldowns = choices(COOLDOWNS, COOLDOWN_WEIGHTS, k=n)
    rearms = choices(REARMS, REARM_WEIGHTS, k=n)
    for k in range(n):
        i = randrange(n_popular) if rand() < 0.25 else randrange(len(symbols))
        price, change, range_, volume, quote_volume = snapshots[i]
        u = rand()
        if u < 0.65:
            x = f"{price * (1 + uniform(-0.1, 0.1)):.{market.pdec[i]}f}"
            if float(x) <= 0:
                x = f"{10.0 ** -market.pdec[i]:.{market.pdec[i]}f}"
            if rand() < 0.5:
                text = f"price {OPS[randrange(4)]} {x}"
            else:
                w = rand()
                direction = "above " if w < 0.4 else "below " if w < 0.8 else ""
                metric = "price " if rand() < 0.7 else ""
                text = f"{metric}crosses {direction}{x}"
        elif u < 0.90:
            w = rand()
            op = OPS[randrange(4)]
            if w < 0.4:
                text = f"change_24h {op} {change + uniform(-3, 3):.2f}%"
            elif w < 0.6:
                text = f"range_24h {op} {range_ * uniform(0.8, 1.2):.2f}%"
            elif w < 0.8:
                text = f"volume {op} {_volume_text(volume * uniform(0.9, 1.1), rng)}"
            else:
                text = f"quote_volume {op} {_volume_text(quote_volume * uniform(0.9, 1.1), rng)}"
        else:
            kind = ("rises", "drops", "moves")[randrange(3)]
            text = f"{kind} {MOVE_PCTS[randrange(6)]}% in {WINDOWS[randrange(3)]}"
        yield (text, (symbols[i],), cooldowns[k], rearms[k])
    glob_conditions = (
        "breaks 24h high",
        "breaks 24h low",
        "change_24h >= 5%",
        "change_24h <= -5%",
        "change_24h > 10%",
        "rises 2% in 5m",
        "drops 2% in 5m",
        "moves 3% in 15m",
        "rises 5% in 1h",
        "drops 5% in 1h",
    )
    for k in range(GLOB_RULES):
        yield (
            glob_conditions[k % len(glob_conditions)],
            ("*USDT",),
            COOLDOWNS[k % 4],
            REARMS[k % 3],
        )


def build_rules(specs: list[Spec], start: int) -> list[Rule]:
    """What a rule loader does: parse each condition text and make the ``Rule``."""
    return [
        Rule(id=f"r{k}", condition=parse(text), symbols=syms, cooldown_ms=cd, rearm=rearm)
        for k, (text, syms, cd, rearm) in enumerate(specs, start)
    ]


# ------------------------------------------------------------------------------------ measuring


class DummyEngine:
    """Stands in for the engine with ``--dummy-engine``: measures the harness and parsing only."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def process(self, tickers: list[object]) -> list[object]:
        return []

    def process_message(self, message: object, stats: ParseStats) -> list[object]:
        return []

    def process_raw(self, raw: bytes, stats: ParseStats) -> list[object]:
        return []


def baseline(raw: bytes) -> None:
    """The floor: decode the frame and read the six numbers of every element."""
    for el in orjson.loads(raw):
        float(el["c"])
        float(el["o"])
        float(el["h"])
        float(el["l"])
        float(el["v"])
        float(el["q"])


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def worker(args: argparse.Namespace) -> dict[str, object]:
    size = args.worker
    market = Market(make_symbols(), args.seed)
    for _ in range(3):  # let the walk start moving before the rules are placed
        market.frame()
    gc.collect()
    rss_before = rss_mb()
    log(f"{size} rules: generating, parsing and loading")

    if args.dummy_engine:
        engine_cls = DummyEngine
    else:
        from alertbot.rules.engine import Engine

        engine_cls = Engine  # type: ignore[assignment]
    # texts are generated in chunks, untimed; parsing them into rules is timed
    specs = rule_specs(size, market, args.seed)
    rules: list[Rule] = []
    parse_s = 0.0
    while chunk := list(islice(specs, 10_000)):
        t0 = time.perf_counter()
        rules.extend(build_rules(chunk, len(rules)))
        parse_s += time.perf_counter() - t0
    del chunk
    gc.collect()
    rss_rules = rss_mb()
    t_init = time.perf_counter()
    engine = engine_cls(rules)
    init_s = time.perf_counter() - t_init
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    log(f"{size} rules: parse {parse_s:.2f} s, Engine() {init_s:.2f} s, rss {rss_mb():.0f} MB")

    stats = ParseStats()
    first_raw = market.frame()
    t = time.perf_counter_ns()
    first_alerts = len(engine.process_raw(first_raw, stats))
    first_ns = time.perf_counter_ns() - t
    for _ in range(WARMUP_FRAMES):
        engine.process_raw(market.frame(), stats)
    log(f"{size} rules: first frame {first_ns / 1e6:.1f} ms, {first_alerts} alerts")

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    runs = []
    all_engine: list[int] = []
    alerts_total = frames_total = 0
    for run in range(args.runs):
        frames = [market.frame() for _ in range(args.frames)]
        eng_ns, parse_ns, base_ns = [], [], []
        alerts = 0
        process, perf = engine.process_raw, time.perf_counter_ns
        profiling = profiler is not None and run == 0
        # Interleaved per frame (baseline, parse only, engine) so that all three see the same
        # machine: on a shared box, contention drifts over seconds and would skew a ratio of
        # separate loops. The engine never sees a frame twice (it ignores old event times).
        for raw in frames:
            n0 = perf()
            baseline(raw)
            n1 = perf()
            parse_message(raw, stats)
            n2 = perf()
            if profiling:
                profiler.enable()  # type: ignore[union-attr]
            fired = process(raw, stats)
            n3 = perf()
            if profiling:
                profiler.disable()  # type: ignore[union-attr]
            base_ns.append(n1 - n0)
            parse_ns.append(n2 - n1)
            eng_ns.append(n3 - n2)
            alerts += len(fired)
        del frames
        e_med, b_med = statistics.median(eng_ns), statistics.median(base_ns)
        e_p99, b_p99 = percentile(eng_ns, 0.99), percentile(base_ns, 0.99)
        runs.append(
            {
                "engine_median_ms": e_med / 1e6,
                "engine_p99_ms": e_p99 / 1e6,
                "engine_max_ms": max(eng_ns) / 1e6,
                "parse_median_ms": statistics.median(parse_ns) / 1e6,
                "baseline_median_ms": b_med / 1e6,
                "baseline_p99_ms": b_p99 / 1e6,
                "ratio": e_med / b_med,
                "p99_ratio": e_p99 / b_p99,
                "alerts": alerts,
            }
        )
        all_engine.extend(eng_ns)
        alerts_total += alerts
        frames_total += args.frames
        log(
            f"{size} rules: run {run + 1}/{args.runs}: engine {e_med / 1e6:.2f} ms, "
            f"baseline {b_med / 1e6:.2f} ms, ratio {e_med / b_med:.2f}, alerts {alerts}"
        )
    if profiler is not None:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(25)
        print(f"--- cProfile, {size} rules, {args.frames} frames (by tottime)", file=sys.stderr)
        print(buf.getvalue(), file=sys.stderr)

    def med(key: str) -> float:
        return statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]

    return {
        "size": size,
        "rules": len(rules),
        "symbols": N_SYMBOLS,
        "frames": args.frames,
        "runs": args.runs,
        "load_s": parse_s + init_s,
        "parse_s": parse_s,
        "engine_init_s": init_s,
        "first_frame_ms": first_ns / 1e6,
        "first_frame_alerts": first_alerts,
        "engine_median_ms": med("engine_median_ms"),
        "engine_p99_ms": med("engine_p99_ms"),
        "engine_max_ms": max(all_engine) / 1e6,
        "parse_median_ms": med("parse_median_ms"),
        "baseline_median_ms": med("baseline_median_ms"),
        "baseline_p99_ms": med("baseline_p99_ms"),
        "ratio": med("ratio"),
        "p99_ratio": med("p99_ratio"),
        "alerts_per_frame": alerts_total / frames_total,
        "rss_before_rules_mb": rss_before,
        "rss_after_parse_mb": rss_rules,
        "peak_rss_mb": rss_mb(),
        "malformed": stats.malformed,
        "dummy_engine": bool(args.dummy_engine),
        "build": build(),
    }


# ------------------------------------------------------------------------------------ report


def build() -> str:
    """How the engine runs: mypyc-compiled or interpreted, with the C core or its Python twin."""
    import alertbot.rules.engine as engine_module

    compiled = "compiled" if not engine_module.__file__.endswith(".py") else "interpreted"
    return f"engine {compiled}, core {engine_module.Core.__module__}.Core"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.platform()}; {cpu}; {os.cpu_count()} cores ({usable} usable); "
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"load average {load}"
    )


def revision() -> str:
    """The commit the benchmark ran against, with ``+dirty`` when the engine or parser differ."""

    def git(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(ROOT), *cmd], capture_output=True, text=True, check=False
        )

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown revision"
    dirty = git("diff", "--quiet", "HEAD", "--", "alertbot/rules", "alertbot/ticker.py")
    return head.stdout.strip() + ("+dirty" if dirty.returncode else "")


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def report(results: list[dict[str, object]], args: argparse.Namespace) -> None:
    print()
    print(f"machine: {machine()}")
    print(f"alertbot: {revision()}; {results[0]['build'] if results else build()}")
    print(
        f"setup: {N_SYMBOLS} symbols per frame, {args.frames} measured frames x {args.runs} runs "
        f"(median of per-run medians), {WARMUP_FRAMES} warm-up frames, seed {args.seed}"
        + (", gc.freeze() after load" if args.gc_freeze else "")
        + (", DUMMY ENGINE (harness only)" if args.dummy_engine else "")
    )
    print()
    print(
        "| rules | load s | first frame ms | parse+eval median ms | baseline median ms "
        "| ratio | p99 ratio | alerts/frame | peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {size_label(int(r['size']))} (+{GLOB_RULES} globs) | {r['load_s']:.2f} "
            f"| {r['first_frame_ms']:.1f} | {r['engine_median_ms']:.2f} "
            f"| {r['baseline_median_ms']:.2f} | {r['ratio']:.2f} | {r['p99_ratio']:.2f} "
            f"| {r['alerts_per_frame']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    print()
    for r in results:
        print(
            f"{size_label(int(r['size']))}: load = parse {r['parse_s']:.2f} s + Engine() "
            f"{r['engine_init_s']:.2f} s; first frame {r['first_frame_alerts']} alerts; "
            f"parse_message alone {r['parse_median_ms']:.2f} ms "
            f"({r['parse_median_ms'] / r['baseline_median_ms']:.2f}x baseline); "
            f"engine p99 {r['engine_p99_ms']:.2f} ms, max {r['engine_max_ms']:.1f} ms; "
            f"peak RSS before rules {r['rss_before_rules_mb']:.0f} MB, "
            f"after parsing (Rule objects) {r['rss_after_parse_mb']:.0f} MB"
        )
    print()
    by_size = {int(r["size"]): r for r in results}
    for size, limit in TARGETS.items():
        r = by_size.get(size)
        if r is None:
            continue
        ratio = float(r["ratio"])  # type: ignore[arg-type]
        ok = ratio <= limit
        text = f"target {size_label(size)}: ratio <= {limit:g} -> {ratio:.2f}"
        if size == 1_000_000:
            rss = float(r["peak_rss_mb"])  # type: ignore[arg-type]
            ok = ok and rss <= RSS_TARGET_MB
            text += f", peak RSS <= {RSS_TARGET_MB:.0f} MB -> {rss:.0f} MB"
        print(f"{text}: {'MET' if ok else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark alertbot's rule engine against the cost of decoding the feed."
    )
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="rule-set sizes (default: %(default)s)"
    )
    parser.add_argument(
        "--frames", type=int, default=300, help="measured frames per run (default: %(default)s)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=5,
        help="measured runs, median of medians (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 10k rules, 30 frames, 2 runs"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first run (stderr)")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after loading")
    parser.add_argument(
        "--dummy-engine", action="store_true", help="a no-op engine: measure the harness only"
    )
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.frames, args.runs = "10000", 30, 2
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    results = []
    for size in sizes:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            str(size),
            "--frames",
            str(args.frames),
            "--runs",
            str(args.runs),
            "--seed",
            str(args.seed),
        ]
        cmd += [flag for flag, on in (
            ("--profile", args.profile),
            ("--gc-freeze", args.gc_freeze),
            ("--dummy-engine", args.dummy_engine),
        ) if on]  # fmt: skip
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            print(f"size {size}: worker failed with exit code {proc.returncode}", file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report(results, args)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
