"""Generate examples/sample.jsonl.gz: a SYNTHETIC sample recording for demos and replay tests.

Nothing in the output is market data: the price paths are scripted and the noise comes from a
seeded random generator, so the same seed always gives the same bytes. The file is in alertbot's
recording format (JSON Lines, gzip; one ``!miniTicker@arr`` WebSocket message per line) and every
element has exactly Binance's mini-ticker shape::

    {"e":"24hrMiniTicker","E":1772452800123,"s":"BTCUSDT","c":"68512.30","o":"67410.10",
     "h":"69702.50","l":"67188.40","v":"123456.789","q":"8456789012.34"}

Six USD-M symbols over two hours of event time, one frame per second that carries only the
symbols that traded in that second (like the real all-market stream). The 24 h fields are rolling
windows over a simulated trade history that starts 24 h before the first frame: ``o`` is the first
trade of the last 24 h, ``h``/``l`` its extremes, ``v``/``q`` its base and quote volume.

The paths are eventful on purpose, so that a demo rule file fires a handful of alerts:

- BTCUSDT climbs from about 68,500 through 70,000 (a new 24 h high) and falls back below it;
- SOLUSDT pumps more than 5 % within 15 minutes (new 24 h high), then fades;
- ETHUSDT drops below 3,000 (new 24 h low) and recovers a little;
- DOGEUSDT has a volume burst that takes its 24 h quote volume past 2b, with a new 24 h high;
- XRPUSDT and BNBUSDT drift quietly (BNB prints a marginal new high).

Run ``python scripts/make_sample_recording.py`` to (re)create the file and print what the paths do.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "examples" / "sample.jsonl.gz"
DEFAULT_SEED = 20260302
#: first frame's event time: 2026-03-02 12:00:00 UTC
START_MS = int(datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp() * 1000)
DAY_S = 86_400
RECORD_S = 2 * 3_600
#: mean reversion time (s) and per-second volatility of the noise around the scripted path
NOISE_TAU_S = 240.0
NOISE_SIGMA = 1.1e-4


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    tick: float  # price tick size
    price_decimals: int  # decimals of c/o/h/l as Binance prints them
    qty_decimals: int  # decimals of v
    trade_prob: float  # chance that the symbol trades (and so appears) in a given second
    quote_per_s: float  # average quote volume per second (USDT) at activity 1
    #: scripted path: (minute relative to the first frame, price); pre-history from -1440
    path: tuple[tuple[float, float], ...]
    #: activity (volume multiplier) schedule: (minute, multiplier), linear in between
    activity: tuple[tuple[float, float], ...] = ((-1440, 1.0), (120, 1.0))


SPECS: tuple[SymbolSpec, ...] = (
    SymbolSpec(
        "BTCUSDT",
        0.1,
        2,
        3,
        0.55,
        140_000.0,
        (
            (-1440, 67_400),
            (-1100, 67_900),
            (-640, 69_550),
            (-420, 68_700),
            (-180, 68_150),
            (0, 68_500),
            (25, 69_100),
            (42, 69_850),
            (52, 70_300),
            (63, 70_650),
            (75, 70_150),
            (86, 69_600),
            (100, 69_150),
            (120, 68_900),
        ),
        ((-1440, 1.0), (30, 1.0), (50, 2.2), (70, 2.5), (90, 1.3), (120, 1.0)),
    ),
    SymbolSpec(
        "ETHUSDT",
        0.01,
        2,
        3,
        0.45,
        70_000.0,
        (
            (-1440, 3_150),
            (-900, 3_185),
            (-420, 3_110),
            (-150, 3_050),
            (-60, 3_078),
            (0, 3_082),
            (35, 3_045),
            (62, 3_004),
            (75, 2_968),
            (88, 2_951),
            (104, 2_982),
            (120, 3_006),
        ),
        ((-1440, 1.0), (50, 1.0), (75, 2.0), (95, 1.6), (120, 1.0)),
    ),
    SymbolSpec(
        "SOLUSDT",
        0.01,
        2,
        2,
        0.35,
        28_000.0,
        (
            (-1440, 146.2),
            (-700, 151.4),
            (-300, 149.1),
            (0, 148.0),
            (18, 148.4),
            (22, 149.0),
            (31, 156.9),
            (38, 158.6),
            (50, 155.2),
            (70, 152.0),
            (95, 150.1),
            (120, 149.3),
        ),
        ((-1440, 1.0), (20, 1.0), (28, 4.0), (40, 3.0), (60, 1.5), (120, 1.0)),
    ),
    SymbolSpec(
        "XRPUSDT",
        0.0001,
        4,
        1,
        0.25,
        17_000.0,
        (
            (-1440, 0.6010),
            (-800, 0.6280),
            (-300, 0.6120),
            (0, 0.6150),
            (60, 0.6190),
            (120, 0.6170),
        ),
    ),
    SymbolSpec(
        "DOGEUSDT",
        0.00001,
        5,
        0,
        0.25,
        20_500.0,
        (
            (-1440, 0.15800),
            (-600, 0.16480),
            (-200, 0.16150),
            (0, 0.16120),
            (55, 0.16250),
            (72, 0.16730),
            (90, 0.16580),
            (120, 0.16410),
        ),
        ((-1440, 1.0), (45, 1.0), (55, 9.0), (85, 9.0), (95, 2.0), (120, 1.3)),
    ),
    SymbolSpec(
        "BNBUSDT",
        0.01,
        3,
        2,
        0.20,
        5_000.0,
        (
            (-1440, 590.0),
            (-600, 601.8),
            (-200, 597.0),
            (0, 598.2),
            (60, 603.9),
            (120, 600.4),
        ),
    ),
)


def _interp(points: tuple[tuple[float, float], ...], minute: float, log: bool) -> float:
    """Piecewise linear (in log space when ``log``) interpolation of a schedule."""
    if minute <= points[0][0]:
        return points[0][1]
    for (m0, y0), (m1, y1) in pairwise(points):
        if minute <= m1:
            f = (minute - m0) / (m1 - m0)
            if log:
                return math.exp(math.log(y0) + f * (math.log(y1) - math.log(y0)))
            return y0 + f * (y1 - y0)
    return points[-1][1]


@dataclass
class Tick:
    """One emitted element of a symbol, kept numerically for the summary."""

    time: int
    c: float
    o: float
    h: float
    low: float
    v: float
    q: float


class RollingWindow:
    """Binance's 24 h rolling statistics over a trade history (per second)."""

    def __init__(self) -> None:
        self.trades: deque[tuple[int, float, float, float]] = deque()  # (t, price, v, q)
        self.maxq: deque[tuple[int, float]] = deque()  # monotonic deques for h / l
        self.minq: deque[tuple[int, float]] = deque()
        self.v = 0.0
        self.q = 0.0

    def add(self, t: int, price: float, vol: float, quote: float) -> None:
        self.trades.append((t, price, vol, quote))
        self.v += vol
        self.q += quote
        while self.maxq and self.maxq[-1][1] <= price:
            self.maxq.pop()
        self.maxq.append((t, price))
        while self.minq and self.minq[-1][1] >= price:
            self.minq.pop()
        self.minq.append((t, price))

    def expire(self, now: int) -> None:
        """Drop trades older than 24 h: keep ``t > now - DAY_S``."""
        cutoff = now - DAY_S
        while self.trades and self.trades[0][0] <= cutoff:
            _, _, vol, quote = self.trades.popleft()
            self.v -= vol
            self.q -= quote
        while self.maxq and self.maxq[0][0] <= cutoff:
            self.maxq.popleft()
        while self.minq and self.minq[0][0] <= cutoff:
            self.minq.popleft()

    def stats(self) -> tuple[float, float, float, float, float]:
        return self.trades[0][1], self.maxq[0][1], self.minq[0][1], self.v, self.q


def _fmt(x: float, decimals: int) -> str:
    return f"{max(x, 0.0):.{decimals}f}"


def generate(seed: int) -> tuple[list[bytes], dict[str, list[Tick]]]:
    """The recording's lines and, per symbol, the emitted ticks."""
    rng = random.Random(seed)
    windows = {s.symbol: RollingWindow() for s in SPECS}
    noise = {s.symbol: 0.0 for s in SPECS}
    ticks: dict[str, list[Tick]] = {s.symbol: [] for s in SPECS}
    decay = 1.0 / NOISE_TAU_S
    lines: list[bytes] = []
    # t is seconds relative to the first frame; the history starts 24 h earlier
    for t in range(-DAY_S, RECORD_S):
        minute = t / 60.0
        elements = []
        event_ms = START_MS + t * 1000 + rng.randrange(0, 40)
        for spec in SPECS:
            sym = spec.symbol
            x = noise[sym] * (1.0 - decay) + rng.gauss(0.0, NOISE_SIGMA)
            noise[sym] = x
            if rng.random() >= spec.trade_prob:
                continue
            anchor = _interp(spec.path, minute, log=True)
            price = round(anchor * math.exp(x) / spec.tick) * spec.tick
            price = round(price, spec.price_decimals)
            activity = _interp(spec.activity, minute, log=False)
            quote = spec.quote_per_s / spec.trade_prob * activity * rng.lognormvariate(0.0, 0.6)
            quote /= math.exp(0.18)  # E[lognormal(0, 0.6)] = exp(0.18): keep the mean
            vol = round(quote / price, spec.qty_decimals)
            if vol <= 0:
                vol = 10.0**-spec.qty_decimals
            window = windows[sym]
            window.add(t, price, vol, vol * price)
            if t < 0:
                continue
            window.expire(t)
            o, h, low, v, q = window.stats()
            ticks[sym].append(Tick(event_ms, price, o, h, low, v, q))
            d = spec.price_decimals
            elements.append(
                {
                    "e": "24hrMiniTicker",
                    "E": event_ms,
                    "s": sym,
                    "c": _fmt(price, d),
                    "o": _fmt(o, d),
                    "h": _fmt(h, d),
                    "l": _fmt(low, d),
                    "v": _fmt(v, spec.qty_decimals),
                    "q": _fmt(q, 2),
                }
            )
        if t < 0:
            # keep the pre-history windows bounded as we go
            if t % 600 == 0:
                for window in windows.values():
                    window.expire(t)
            continue
        if elements:
            lines.append(json.dumps(elements, separators=(",", ":")).encode())
    return lines, ticks


def write(lines: list[bytes], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        for line in lines:
            gz.write(line + b"\n")


# ------------------------------------------------------------------ summary (no engine needed)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def _level_entries(values: list[tuple[int, bool]]) -> list[int]:
    """Times where a level condition becomes true (including on the first tick)."""
    out, prev = [], False
    for time, now in values:
        if now and not prev:
            out.append(time)
        prev = now
    return out


def _crossings(ts: list[Tick], x: float) -> tuple[list[int], list[int]]:
    up, down = [], []
    for a, b in pairwise(ts):
        if a.c < x <= b.c:
            up.append(b.time)
        elif a.c > x >= b.c:
            down.append(b.time)
    return up, down


def _breaks(ts: list[Tick]) -> tuple[list[int], list[int]]:
    """Ticks that print a new 24 h high / low."""
    highs = [b.time for a, b in pairwise(ts) if b.h > a.h]
    lows = [b.time for a, b in pairwise(ts) if b.low < a.low]
    return highs, lows


def _break_fires(ts: list[Tick], side: str) -> list[int]:
    """Firings of ``breaks 24h high|low`` (no cooldown): a run of breaking ticks fires once,
    the pair re-arms on a tick that does not break."""
    if side == "high":
        values = [(b.time, b.h > a.h) for a, b in pairwise(ts)]
    else:
        values = [(b.time, b.low < a.low) for a, b in pairwise(ts)]
    return _level_entries(values)


def _window_extremes(ts: list[Tick], window_ms: int) -> Iterator[tuple[Tick, float, float]]:
    """Each tick with the min and max price of the window that ends at it (monotonic deques)."""
    mins: deque[tuple[int, float]] = deque()
    maxs: deque[tuple[int, float]] = deque()
    for tk in ts:
        while mins and mins[-1][1] >= tk.c:
            mins.pop()
        mins.append((tk.time, tk.c))
        while maxs and maxs[-1][1] <= tk.c:
            maxs.pop()
        maxs.append((tk.time, tk.c))
        while mins[0][0] < tk.time - window_ms:
            mins.popleft()
        while maxs[0][0] < tk.time - window_ms:
            maxs.popleft()
        yield tk, mins[0][1], maxs[0][1]


def _max_move(ts: list[Tick], window_ms: int) -> tuple[float, int, float, int]:
    """Largest rise and drop (percent) within ``window_ms``, with the time each peaks."""
    best_rise = best_drop = 0.0
    rise_at = drop_at = 0
    for tk, low, high in _window_extremes(ts, window_ms):
        rise = (tk.c - low) / low * 100
        drop = (high - tk.c) / high * 100
        if rise > best_rise:
            best_rise, rise_at = rise, tk.time
        if drop > best_drop:
            best_drop, drop_at = drop, tk.time
    return best_rise, rise_at, best_drop, drop_at


def _first_move(ts: list[Tick], pct: float, window_ms: int, kind: str) -> list[int]:
    """Entries (false -> true) of ``rises|drops pct% in window``."""
    values = []
    for tk, low, high in _window_extremes(ts, window_ms):
        if kind == "rises":
            values.append((tk.time, (tk.c - low) / low * 100 >= pct))
        else:
            values.append((tk.time, (high - tk.c) / high * 100 >= pct))
    return _level_entries(values)


def _times(times: list[int], limit: int = 6) -> str:
    shown = ", ".join(_clock(t) for t in times[:limit])
    return f"{len(times)}x" + (
        f" ({shown}{', ...' if len(times) > limit else ''})" if times else ""
    )


def summarize(lines: list[bytes], ticks: dict[str, list[Tick]], out: Path) -> None:
    elements = sum(len(ts) for ts in ticks.values())
    first = min(ts[0].time for ts in ticks.values())
    last = max(ts[-1].time for ts in ticks.values())
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): SYNTHETIC data")
    print(
        f"{len(lines)} frames, {elements} tickers ({elements / len(lines):.2f} per frame), "
        f"{datetime.fromtimestamp(first / 1000, tz=UTC):%Y-%m-%d %H:%M:%S} .. "
        f"{_clock(last)} UTC"
    )
    print()
    header = "symbol    ticks  first      min        max        last       24h high  24h low   "
    print(header + "new-high/low ticks  q first..max")
    for spec in SPECS:
        ts = ticks[spec.symbol]
        d = spec.price_decimals
        cs = [t.c for t in ts]
        highs, lows = _breaks(ts)
        q0, q1 = ts[0].q / 1e9, max(t.q for t in ts) / 1e9
        print(
            f"{spec.symbol:<9} {len(ts):>5}  {cs[0]:<10.{d}f} {min(cs):<10.{d}f} "
            f"{max(cs):<10.{d}f} {cs[-1]:<10.{d}f} {ts[0].h:<9.{d}f} {ts[0].low:<9.{d}f} "
            f"{len(highs):>5}/{len(lows):<5}          {q0:.3f}b..{q1:.3f}b"
        )
    print()
    print("fires of simple rules (DESIGN.md semantics; no cooldown, no re-arm band):")
    btc, eth, sol, doge, bnb = (
        ticks[s] for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "BNBUSDT")
    )
    btc_up, btc_down = _crossings(btc, 70_000)
    checks = [
        ("BTCUSDT price crosses above 70000", btc_up),
        ("BTCUSDT price crosses below 70000", btc_down),
        ("BTCUSDT price > 70000 (entries)", _level_entries([(t.time, t.c > 70e3) for t in btc])),
        ("BTCUSDT breaks 24h high", _break_fires(btc, "high")),
        ("ETHUSDT price < 3000 (entries)", _level_entries([(t.time, t.c < 3e3) for t in eth])),
        ("ETHUSDT price crosses below 3000", _crossings(eth, 3_000)[1]),
        ("ETHUSDT breaks 24h low", _break_fires(eth, "low")),
        ("SOLUSDT rises 5% in 15m (entries)", _first_move(sol, 5.0, 15 * 60_000, "rises")),
        ("SOLUSDT breaks 24h high", _break_fires(sol, "high")),
        (
            "SOLUSDT change_24h >= 5% (entries)",
            _level_entries([(t.time, (t.c - t.o) / t.o * 100 >= 5) for t in sol]),
        ),
        (
            "DOGEUSDT quote_volume > 2b (entries)",
            _level_entries([(t.time, t.q > 2e9) for t in doge]),
        ),
        ("DOGEUSDT breaks 24h high", _break_fires(doge, "high")),
        ("BNBUSDT breaks 24h high", _break_fires(bnb, "high")),
    ]
    for label, times in checks:
        print(f"  {label + ':':<38} {_times(times)}")
    rise, rise_at, drop, drop_at = _max_move(sol, 15 * 60_000)
    print(
        f"  SOLUSDT largest 15m rise {rise:.2f}% (at {_clock(rise_at)}), "
        f"largest 15m drop {drop:.2f}% (at {_clock(drop_at)})"
    )
    for spec in SPECS:
        ts = ticks[spec.symbol]
        ch = [(t.c - t.o) / t.o * 100 for t in ts]
        print(f"  {spec.symbol:<9} change_24h {min(ch):+.2f}% .. {max(ch):+.2f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Write a SYNTHETIC !miniTicker@arr recording (JSON Lines, gzip) of six USD-M "
            "symbols over two hours, with scripted events (BTC through 70k, a SOL pump, ETH "
            "below 3k, a DOGE volume burst). Not market data; deterministic for a given seed."
        )
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    parser.add_argument("--quiet", action="store_true", help="do not print the summary")
    args = parser.parse_args(argv)
    lines, ticks = generate(args.seed)
    write(lines, args.out)
    if not args.quiet:
        summarize(lines, ticks, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
