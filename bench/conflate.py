"""Hand-off benchmark: what does a conflation cost, against the engine reading the frames?

Not a test. Run from the repository root::

    python bench/conflate.py                  # 33 frames of 650 symbols, 9 runs
    python bench/conflate.py --rules 10000    # the engines over 10k rules

When ``capacity`` (32) messages wait, the 33rd conflates them all inside ``Handoff.put``, on the
sockets' event loop. Per run, on 33 fresh all-market frames of the engine benchmark's generator
(bench/engine.py's ``Market``), in a rotating order so that contention on a shared machine hits
all alike: the Python conflation (``conflate_decoded``: orjson and a tuple per tick), the
hand-off's (``conflate``: the C core on frames' bytes), an engine reading the 33 frames one by
one (``Engine.process_raw``) and a second engine reading the frame the C conflation made.
Both engines are warmed on the same first frame (every symbol known). Reported: the median of
each over the runs, and the ratios of each run's times, median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alertbot.feed.handoff import conflate, conflate_decoded  # noqa: E402
from alertbot.rules.engine import Engine  # noqa: E402
from alertbot.ticker import ParseStats  # noqa: E402
from bench.engine import Market, build_rules, make_symbols, rule_specs  # noqa: E402


def one_run(
    frames: list[bytes], straight: Engine, merged_engine: Engine, run: int
) -> dict[str, float]:
    """Each way's time on these frames (seconds), the Python and C conflations and the straight
    read in an order rotating with ``run``, the merged frame's read last; and the tickers kept."""
    times: dict[str, float] = {}
    merged = b""
    order = ["python", "c", "straight"]
    for name in [*order[run % 3 :], *order[: run % 3], "merged"]:
        started = time.perf_counter()
        if name == "python":
            conflate_decoded(frames, 1, lambda raw: None)
        elif name == "c":
            out, _ = conflate(frames, 1, lambda raw: None)
            assert type(out) is bytes, "the C core did not take the frames"
            merged = out
        elif name == "straight":
            stats = ParseStats()
            for raw in frames:
                straight.process_raw(raw, stats)
        else:
            merged_engine.process_raw(merged, ParseStats())
        times[name] = time.perf_counter() - started
    times["kept"] = merged.count(b'"e":')
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=33, help="frames conflated at once")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--rules", type=int, default=0, help="rules of both engines")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    market = Market(make_symbols(), args.seed)
    rules = build_rules(list(rule_specs(args.rules, market, args.seed)), 0) if args.rules else []
    first = market.frame()
    straight, merged_engine = Engine(rules), Engine(rules)
    for engine in (straight, merged_engine):
        engine.process_raw(first, ParseStats())
    times: dict[str, list[float]] = {k: [] for k in ("python", "c", "straight", "merged")}
    sizes = []
    for run in range(args.runs):
        got = one_run([market.frame() for _ in range(args.frames)], straight, merged_engine, run)
        for key, values in times.items():
            values.append(got[key])
        sizes.append(int(got["kept"]))

    def ms(key: str) -> str:
        return f"{statistics.median(times[key]) * 1000:8.2f} ms"

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    n = args.frames
    print(f"{n} frames of {len(market.symbols)} symbols, {args.rules} rules, {args.runs} runs")
    print(f"conflation in Python (conflate_decoded)   {ms('python')}")
    print(f"conflation in C (conflate)                {ms('c')}")
    print(f"engine reading the {n} frames             {ms('straight')}")
    print(f"engine reading the merged frame           {ms('merged')}")
    print(f"tickers kept: median {statistics.median(sizes):.0f} of {n * len(market.symbols)}")
    print(f"ratio Python / C conflation:   {ratio('python', 'c'):6.1f}")
    print(f"ratio C conflation / {n} frames read: {ratio('c', 'straight'):6.2f}")
    print(f"ratio merged frame read / {n} frames read: {ratio('merged', 'straight'):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
