"""The threshold index's walk from its last position selects what a bisection selects."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

from hypothesis import given
from hypothesis import strategies as st

from alertbot.rules.conditions import parse
from alertbot.rules.core import Core
from alertbot.rules.engine import _Book, _Compiled, _Index, _Pair
from alertbot.rules.model import Rule

KEYS = st.lists(st.sampled_from((-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 10.0)), max_size=12)
VALUES = st.lists(
    st.sampled_from((-5.0, -2.0, -1.0, 0.0, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 11.0, math.nan)),
    min_size=1,
    max_size=20,
)


@given(KEYS, VALUES, KEYS)
def test_touched_selects_the_thresholds_between_previous_and_new_value(
    keys: list[float], values: list[float], added: list[float]
) -> None:
    """Also with thresholds added between ticks (``added[k]`` after the k-th value)."""
    index = _Index(0)
    compiled = _Compiled(Rule("r", parse("price > 1"), ("X",)), 0)
    book = _Book("X", Core(0))
    owners = [_Pair(compiled, book) for _ in keys]
    for key, owner in zip(keys, owners, strict=True):
        index.add(key, owner)
    previous = math.nan
    for step, new in enumerate(values):
        if step and step - 1 < len(added):
            owners.append(_Pair(compiled, book))
            keys.append(added[step - 1])
            index.add(keys[-1], owners[-1])
        ordered = sorted(zip(keys, range(len(keys)), strict=True))
        sorted_keys = [k for k, _ in ordered]
        sorted_owners = [owners[i] for _, i in ordered]
        hit = index.touched(new)
        if math.isnan(previous) or math.isnan(new):
            expected = sorted_owners
        else:
            lo, hi = min(previous, new), max(previous, new)
            expected = sorted_owners[bisect_left(sorted_keys, lo) : bisect_right(sorted_keys, hi)]
        assert [id(p) for p in hit] == [id(p) for p in expected]
        if not math.isnan(new):
            i = bisect_left(sorted_keys, new)
            if i < len(sorted_keys) and sorted_keys[i] == new:
                assert index.glo == index.ghi == new
            else:
                assert index.glo == (sorted_keys[i - 1] if i else -math.inf)
                assert index.ghi == (sorted_keys[i] if i < len(sorted_keys) else math.inf)
        previous = new
