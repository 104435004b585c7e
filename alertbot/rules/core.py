"""The engine's per-symbol numbers and its per-tick filter, in plain Python (pure).

:class:`Core` keeps, per symbol (a *slot*), the last two ticks, the recent price extremes, the
gap around each watched metric's value in which no threshold lies, the windows of moves rules
with their safe bands, and what else makes a tick need the engine (new or re-checked pairs,
breakouts, due timers). For every tick it answers one question: can any (rule, symbol) pair
change state? Most ticks cannot ("quiet"); the engine's Python code only runs for the others
("busy"), with the masks saying which indexes and windows to look at.

``alertbot/rules/_fastcore.c`` is the same class in C, used when it was compiled (it does the
work of a frame without creating a Python object per tick); this module is its specification
and the fallback when it is missing (``ALERTBOT_PURE=1``, no C compiler). Both must behave
identically: the tests run the engine over each.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from alertbot.ticker import Fields, percent, read_element

NAN = math.nan
INF = math.inf
#: a safe band keeps this far (in percent) inside its gaps: :func:`percent` moves a value by up
#: to half of 1e-9
SNAP = 1e-9

#: basic metric kinds, as in the engine: price, change, range, volume, quote, high, low
KINDS = 7

# feed() results
DUPLICATE, QUIET, BUSY = range(3)


class _Window:
    __slots__ = (
        "dghi",
        "dglo",
        "drop",
        "expires",
        "hi",
        "high",
        "imax",
        "imin",
        "lo",
        "low",
        "ms",
        "rghi",
        "rglo",
        "rise",
    )

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.imin = 0
        self.imax = 0
        self.low = NAN
        self.high = NAN
        self.expires = -1  # no fast path until the first refresh
        self.lo = NAN
        self.hi = NAN
        self.rise = False  # watched by a rises (or moves) index
        self.drop = False
        self.rglo = self.rghi = self.dglo = self.dghi = NAN


class _Slot:
    __slots__ = (
        "breaks",
        "broke",
        "c",
        "due",
        "ghi",
        "glo",
        "h",
        "keys",
        "kinds",
        "kpos",
        "kval",
        "l",
        "max_p",
        "max_t",
        "min_p",
        "min_t",
        "o",
        "pc",
        "pending",
        "ph",
        "pl",
        "po",
        "pq",
        "ptext",
        "ptime",
        "pv",
        "q",
        "text",
        "time",
        "v",
        "watch",
        "windows",
        "wins",
    )

    def __init__(self) -> None:
        self.time = -1
        self.c = self.o = self.h = self.l = self.v = self.q = 0.0
        self.text = ""
        self.ptime = -1
        self.pc = self.po = self.ph = self.pl = self.pv = self.pq = 0.0
        self.ptext = ""
        self.min_t: list[int] = []
        self.min_p: list[float] = []
        self.max_t: list[int] = []
        self.max_p: list[float] = []
        self.watch = 0  # bit per watched basic kind
        self.glo = [NAN] * KINDS
        self.ghi = [NAN] * KINDS
        # per basic kind: its index's thresholds, sorted (set_keys), the value walk() last saw
        # (NaN: none or not computable) and bisect_left(keys, value) when known, else -1
        self.keys: list[list[float]] = [[] for _ in range(KINDS)]
        self.kval = [NAN] * KINDS
        self.kpos = [-1] * KINDS
        self.windows: list[_Window] = []
        self.pending = False  # new or re-checked pairs wait: always busy
        self.breaks = False  # breakout pairs are attached
        self.broke = False  # the previous tick printed a new 24h high or low
        self.due = -1  # earliest timer due time, -1: none
        # the last tick's findings: basic kinds out of their gap; per window, bit 2w the rise
        # and bit 2w+1 the drop value out of its gap; 1 breakouts due, 2 a timer due
        self.kinds = 0
        self.wins = 0


def metric(kind: int, c: float, o: float, h: float, lo: float, v: float, q: float) -> float:
    """A basic metric from a tick's values; NaN when it cannot be computed."""
    if kind == 0:
        return c
    if kind == 1:
        return percent(c - o, o)
    if kind == 2:
        return percent(h - lo, lo)
    if kind == 3:
        return v
    if kind == 4:
        return q
    if kind == 5:
        return h
    return lo


def _max(a: float, b: float) -> float:
    return b if b > a else a  # builtins.max(a, b), NaN included


def _min(a: float, b: float) -> float:
    return b if b < a else a


class Core:
    """Per-symbol numbers and the per-tick filter (see the module docstring)."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.slots: list[_Slot] = []
        self.symbols: dict[str, int] = {}
        self.good = 0  # elements read by scan() since the caller last reset it
        self.slot = -1  # the slot of the busy tick scan() stopped at
        self.flags = 0  # 1: breakouts due, 2: a timer due (of the last busy tick)
        self.market_st = 1  # the ``st`` of the market read (ParseStats.market_st)
        self._fields = Fields()

    def add(self, symbol: str) -> int:
        self.slots.append(_Slot())
        slot = self.symbols[symbol] = len(self.slots) - 1
        return slot

    def set_horizon(self, horizon: int) -> None:
        self.horizon = horizon

    # ---------------------------------------------------------------- per tick

    def scan(self, elements: list[Any], start: int) -> int:
        """Feed elements from ``start`` on until one needs the caller: ``2 * i + 1`` when
        element ``i`` was a busy tick (accepted; its slot in :attr:`slot`), ``2 * i`` when the
        caller must read element ``i`` itself (malformed, or a symbol without a slot), and
        ``2 * len(elements)`` at the end. Counts the elements it read in :attr:`good`."""
        f = self._fields
        f.market_st = self.market_st
        symbols = self.symbols
        for i in range(start, len(elements)):
            if not read_element(elements[i], f):
                return 2 * i
            slot = symbols.get(f.symbol)
            if slot is None:
                return 2 * i
            self.good += 1
            if (
                self.feed(
                    slot, f.time, f.close, f.open, f.high, f.low, f.volume, f.quote_volume, f.text
                )
                == BUSY
            ):
                self.slot = slot
                return 2 * i + 1
        return 2 * len(elements)

    def parse_raw(self, raw: bytes) -> int:
        """Read a frame's bytes for :meth:`scan_raw`: the number of its elements, or -1 when
        the caller must decode it (with orjson) and use :meth:`scan`. The C core reads frames
        in the plain form Binance writes without creating Python objects; this one leaves every
        frame to the caller, which is the same result by another way."""
        return -1

    def scan_raw(self, start: int) -> int:
        """:meth:`scan` over the elements of the last :meth:`parse_raw` frame; the caller reads
        element ``i`` itself by decoding its bytes, ``raw[slice(*span(i))]``."""
        return 0

    def span(self, i: int) -> tuple[int, int]:
        """The byte span of element ``i`` of the last :meth:`parse_raw` frame."""
        raise IndexError("no such element")

    def feed(
        self,
        slot: int,
        time: int,
        c: float,
        o: float,
        h: float,
        lo: float,
        v: float,
        q: float,
        text: str,
    ) -> int:
        """One tick of a slot: DUPLICATE (not newer than the last), QUIET or BUSY."""
        s = self.slots[slot]
        if time <= s.time:
            return DUPLICATE
        s.ptime, s.pc, s.po, s.ph, s.pl, s.pv, s.pq, s.ptext = (
            s.time,
            s.c,
            s.o,
            s.h,
            s.l,
            s.v,
            s.q,
            s.text,
        )
        s.time, s.c, s.o, s.h, s.l, s.v, s.q, s.text = time, c, o, h, lo, v, q, text
        self._push(s, time, c)
        kinds = 0
        watch = s.watch
        if watch:
            for k in range(KINDS):
                if watch >> k & 1:
                    x = metric(k, c, o, h, lo, v, q)
                    if not s.glo[k] < x < s.ghi[k]:
                        kinds |= 1 << k
        wins = 0
        for w, win in enumerate(s.windows):
            if not (time <= win.expires and win.lo < c < win.hi):
                wins |= self._refresh(s, win, w, time, c)
        flags = 0
        if s.breaks:
            broke = s.ptime >= 0 and (h > s.ph or lo < s.pl)
            if broke or s.broke:
                flags |= 1
            s.broke = broke
        if 0 <= s.due <= time:
            flags |= 2
        s.kinds = kinds
        s.wins = wins
        self.flags = flags
        return BUSY if s.pending or kinds or wins or flags else QUIET

    def history(self, slot: int) -> list[tuple[int, float]]:
        """The prices the moves windows can still use: the running extremes' entries, in time
        order (what :meth:`remember` takes back after a restart)."""
        s = self.slots[slot]
        points = dict(zip(s.min_t, s.min_p, strict=True))
        points.update(zip(s.max_t, s.max_p, strict=True))
        return sorted(points.items())

    def remember(self, slot: int, time: int, price: float) -> None:
        """Take a past price into the running extremes (an earlier run's :meth:`history`),
        evaluating nothing. Only a time after everything the slot has is taken."""
        s = self.slots[slot]
        if time > s.time and (not s.min_t or time > s.min_t[-1]):
            self._push(s, time, price)

    def _push(self, s: _Slot, time: int, price: float) -> None:
        """Add a price to the running extremes (one increasing and one decreasing list); each
        window keeps a pointer to its first element, which only moves forward with time."""
        min_t, min_p, max_t, max_p = s.min_t, s.min_p, s.max_t, s.max_p
        while min_p and min_p[-1] >= price:
            min_p.pop()
            min_t.pop()
        min_p.append(price)
        min_t.append(time)
        while max_p and max_p[-1] <= price:
            max_p.pop()
            max_t.pop()
        max_p.append(price)
        max_t.append(time)
        # forget what is older than the horizon, in batches
        horizon = self.horizon
        if len(min_t) > 64 and min_t[0] < time - horizon:
            cut = bisect_left(min_t, time - horizon)
            del min_t[:cut]
            del min_p[:cut]
            for win in s.windows:
                win.imin = max(win.imin - cut, 0)
        if len(max_t) > 64 and max_t[0] < time - horizon:
            cut = bisect_left(max_t, time - horizon)
            del max_t[:cut]
            del max_p[:cut]
            for win in s.windows:
                win.imax = max(win.imax - cut, 0)

    def _refresh(self, s: _Slot, win: _Window, w: int, time: int, price: float) -> int:
        """Bring a window's extremes up to date; the rise and drop that left their gaps (as
        bits of ``wins``), else the new safe band."""
        min_t, max_t = s.min_t, s.max_t
        start = time - win.ms
        i = min(win.imin, len(min_t) - 1)
        while min_t[i] < start:
            i += 1
        win.imin = i
        j = min(win.imax, len(max_t) - 1)
        while max_t[j] < start:
            j += 1
        win.imax = j
        low = win.low = s.min_p[i]
        high = win.high = s.max_p[j]
        win.expires = min(min_t[i], max_t[j]) + win.ms
        hits = 0
        if win.rise:
            v = percent(price - low, low)
            if not win.rglo < v < win.rghi:
                hits |= 1 << (2 * w)
        if win.drop:
            v = percent(high - price, high)
            if not win.dglo < v < win.dghi:
                hits |= 1 << (2 * w + 1)
        if not hits:
            self._band(win, price)
        return hits

    def _band(self, win: _Window, price: float) -> None:
        """The safe band: strictly between the extremes they stay the extremes; the gaps of the
        rise and drop indexes (percent) mapped into prices, shrunk a little so that rounding
        cannot hide a threshold: by ``SNAP`` percent, more than :func:`percent` rounds a value
        by, and then by a relative 1e-9 for the mapping's own rounding."""
        low = win.low
        high = win.high
        lo = low
        hi = high
        if win.rise:
            glo = win.rglo + SNAP
            ghi = win.rghi - SNAP
            if glo < ghi:
                lo = _max(lo, low * (1 + glo / 100))
                hi = _min(hi, low * (1 + ghi / 100))
            else:
                hi = -INF
        if win.drop:
            glo = win.dglo + SNAP
            ghi = win.dghi - SNAP
            if glo < ghi:
                lo = _max(lo, high * (1 - ghi / 100))
                hi = _min(hi, high * (1 - glo / 100))
            else:
                hi = -INF
        win.lo = lo + abs(lo) * 1e-9
        win.hi = hi - abs(hi) * 1e-9

    # ---------------------------------------------------------------- the engine's side

    def values(self, slot: int) -> tuple[Any, ...]:
        """The last two ticks and the findings of the last one: ``(time, c, o, h, l, v, q,
        text, p_time, p_c, p_o, p_h, p_l, p_v, p_q, p_text, kinds, wins, flags)``; flags are
        those of the last busy tick fed (the caller asks right after it)."""
        s = self.slots[slot]
        return (
            s.time,
            s.c,
            s.o,
            s.h,
            s.l,
            s.v,
            s.q,
            s.text,
            s.ptime,
            s.pc,
            s.po,
            s.ph,
            s.pl,
            s.pv,
            s.pq,
            s.ptext,
            s.kinds,
            s.wins,
            self.flags,
        )

    def set_gap(self, slot: int, kind: int, glo: float, ghi: float) -> None:
        """A basic metric's gap (NaN: unknown, look on the next tick); watches the metric."""
        s = self.slots[slot]
        s.watch |= 1 << kind
        s.glo[kind] = glo
        s.ghi[kind] = ghi

    def set_keys(self, slot: int, kind: int, keys: list[float]) -> None:
        """A basic metric's thresholds, sorted (they replace the previous ones)."""
        s = self.slots[slot]
        s.keys[kind] = list(keys)
        s.kpos[kind] = -1

    def walk(self, slot: int, kind: int, new: float) -> int:
        """Thresholds between the metric's previous value and ``new`` (both included): their
        positions among the keys as ``start << 32 | end``, or -1 for all of them (to or from
        "not computable"); sets the metric's gap around ``new`` and watches the metric.

        The position of the previous value is kept and the keys between it and the new value
        are walked: a tick passes few thresholds.
        """
        s = self.slots[slot]
        keys = s.keys[kind]
        n = len(keys)
        old = s.kval[kind]
        s.watch |= 1 << kind
        s.kval[kind] = new
        if new != new:
            s.kpos[kind] = -1
            s.glo[kind] = s.ghi[kind] = NAN
            return -1
        if old != old:
            r = -1
            i = bisect_left(keys, new)
        else:
            p = s.kpos[kind]
            if p < 0:
                p = bisect_left(keys, old)
            b = p
            if old <= new:
                # [bisect_left(keys, old), bisect_right(keys, new))
                while b < n and keys[b] <= new:
                    b += 1
                i = b  # bisect_left(keys, new), which lies in [p, b]
                while i > p and keys[i - 1] >= new:
                    i -= 1
                r = p << 32 | b
            else:
                # [bisect_left(keys, new), bisect_right(keys, old))
                i = p
                while i > 0 and keys[i - 1] >= new:
                    i -= 1
                while b < n and keys[b] <= old:
                    b += 1
                r = i << 32 | b
        s.kpos[kind] = i
        if i < n and keys[i] == new:
            s.glo[kind] = s.ghi[kind] = new  # sitting on a threshold: look every tick
        else:
            s.glo[kind] = keys[i - 1] if i else -INF
            s.ghi[kind] = keys[i] if i < n else INF
        return r

    def add_window(self, slot: int, ms: int) -> int:
        s = self.slots[slot]
        s.windows.append(_Window(ms))
        return len(s.windows) - 1

    def set_window_gap(self, slot: int, w: int, drop: bool, glo: float, ghi: float) -> None:
        """The gap of a window's rise (or drop) index; watches it."""
        win = self.slots[slot].windows[w]
        if drop:
            win.drop = True
            win.dglo = glo
            win.dghi = ghi
        else:
            win.rise = True
            win.rglo = glo
            win.rghi = ghi

    def invalidate(self, slot: int, w: int) -> None:
        """Refresh the window on the next tick (its indexes gained thresholds)."""
        self.slots[slot].windows[w].expires = -1

    def band(self, slot: int, w: int) -> None:
        """Recompute a window's band after the caller brought its gaps up to date."""
        s = self.slots[slot]
        self._band(s.windows[w], s.c)

    def extremes(self, slot: int, w: int) -> tuple[float, float]:
        win = self.slots[slot].windows[w]
        return win.low, win.high

    def set_pending(self, slot: int, pending: bool) -> None:
        self.slots[slot].pending = pending

    def set_breaks(self, slot: int, breaks: bool) -> None:
        self.slots[slot].breaks = breaks

    def settle(self, slot: int, pending: bool, due: int) -> None:
        """After a busy tick: whether pairs wait for the next tick, and the earliest timer
        (-1: none)."""
        s = self.slots[slot]
        s.pending = pending
        s.due = due


def conflate(
    frames: list[bytes],
    market_st: int,
    judge: Callable[[bytes], tuple[str, int, float, float, float, float, float, float] | None],
    max_odd: int,
) -> tuple[bytes, int] | None:
    """The hand-off's conflation of frames' bytes (``alertbot.feed.handoff``) as one merged
    frame and the number of elements left out, or None when the caller must decode the frames
    and conflate them itself. The C core reads frames in the plain form Binance writes and
    conflates them without creating Python objects; this one leaves every batch to the caller,
    which is the same result by another way."""
    return None
