"""``repeat``: while a condition holds after its alert, it alerts again every ``repeat_ms``.

Event time throughout, as every firing rule: the repeat comes on the first tick at or after
its due time, a quiet tick too (the price unchanged: no threshold passed). Cooldown, mute and
expiry hold a repeat as they hold any alert; a crossing or breakout, true on one tick, has no
repeat. Each test runs over both implementations of the engine's core.
"""

from __future__ import annotations

import pytest

from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine
from alertbot.rules.model import Rule, repeats_ok
from alertbot.ticker import Ticker

pytestmark = pytest.mark.usefixtures("core_impl")

S = "BTCUSDT"


def tick(time: int, close: float) -> Ticker:
    return Ticker(S, time, close, 100.0, 200.0, 50.0, 1000.0, 1e6, repr(close))


def times(engine: Engine, *pairs: tuple[int, float]) -> list[int]:
    """The event times the engine alerts at over ticks of (time, close)."""
    return [a.time for a in engine.process([tick(t, c) for t, c in pairs])]


def level(**kw: object) -> Rule:
    return Rule("r", parse("price > 100"), (S,), **kw)  # type: ignore[arg-type]


def test_a_level_that_holds_alerts_again_every_repeat_quiet_ticks_included() -> None:
    engine = Engine([level(repeat_ms=10_000)])
    # the price never moves after the first tick: every later tick is quiet
    steady = [(t, 105.0) for t in range(1_000, 32_000, 1_000)]
    assert times(engine, *steady) == [1_000, 11_000, 21_000, 31_000]


def test_a_repeat_comes_on_the_first_tick_at_or_after_its_time() -> None:
    engine = Engine([level(repeat_ms=10_000)])
    assert times(engine, (1_000, 105), (9_000, 106), (14_500, 106), (15_000, 107)) == [
        1_000,
        14_500,
    ]


def test_a_condition_left_and_entered_again_alerts_as_usual_and_repeats_from_there() -> None:
    engine = Engine([level(repeat_ms=10_000)])
    ticks = [(1_000, 105), (3_000, 99), (5_000, 105), (14_000, 105), (15_000, 105)]
    assert times(engine, *ticks) == [1_000, 5_000, 15_000]


def test_no_repeat_once_the_condition_no_longer_holds() -> None:
    engine = Engine([level(repeat_ms=10_000)])
    assert times(engine, (1_000, 105), (2_000, 99), (20_000, 99), (40_000, 98)) == [1_000]


def test_a_repeat_is_marked_as_one_and_an_entry_is_not() -> None:
    """Its message says the condition still holds: the same text again could be read as a new
    entry. An entry after leaving, and an entry held by a cooldown that fires when it ends,
    are not repeats."""
    engine = Engine([level(repeat_ms=10_000, cooldown_ms=5_000)])
    ticks = [(1_000, 105), (11_000, 105), (12_000, 99), (14_000, 105), (16_000, 105), (26_000, 105)]
    fired = engine.process([tick(t, c) for t, c in ticks])
    assert [(a.time, a.repeated) for a in fired] == [
        (1_000, False),
        (11_000, True),
        (16_000, False),  # entered at 14_000, in the cooldown of 11_000's alert
        (26_000, True),
    ]


def test_a_longer_cooldown_holds_the_repeat_until_it_ends() -> None:
    engine = Engine([level(repeat_ms=5_000, cooldown_ms=12_000)])
    steady = [(t, 105.0) for t in range(1_000, 27_000, 1_000)]
    assert times(engine, *steady) == [1_000, 13_000, 25_000]


def test_a_mute_holds_the_repeat_and_a_condition_still_true_alerts_when_it_ends() -> None:
    engine = Engine([level(repeat_ms=5_000, muted_until_ms=18_500)])
    engine.process([tick(500, 99)])
    assert times(engine, *[(t, 105.0) for t in range(1_000, 25_000, 1_000)]) == [19_000, 24_000]


def test_no_repeat_after_the_rule_expires() -> None:
    engine = Engine([level(repeat_ms=5_000, expires_ms=12_000)])
    steady = [(t, 105.0) for t in range(1_000, 30_000, 1_000)]
    assert times(engine, *steady) == [1_000, 6_000, 11_000]


def test_a_once_rule_has_no_repeat() -> None:
    engine = Engine([level(repeat_ms=5_000, once=True)])
    assert times(engine, *[(t, 105.0) for t in range(1_000, 30_000, 1_000)]) == [1_000]


def test_a_move_that_holds_repeats_too() -> None:
    rule = Rule("m", parse("rises 5% in 1m"), (S,), repeat_ms=10_000)
    engine = Engine([rule])
    ticks = [(0, 100.0), *[(t, 106.0) for t in range(1_000, 25_000, 1_000)]]
    assert times(engine, *ticks) == [1_000, 11_000, 21_000]


@pytest.mark.parametrize("when", ["price crosses above 100", "breaks 24h high"])
def test_a_crossing_or_a_breakout_has_no_repeat(when: str) -> None:
    """True on one tick only: repeat means nothing for them (and is refused where written)."""
    assert not repeats_ok(parse(when))
    engine = Engine([Rule("c", parse(when), (S,), repeat_ms=1_000)])
    # the 24h high is the price: 250 is a new one, held (not broken again) after it
    closes = [99.0, 250.0, *[250.0] * 6]
    ticks = [
        Ticker(S, 1_000 * (i + 1), c, 100.0, c, 50.0, 1e3, 1e6, repr(c))
        for i, c in enumerate(closes)
    ]
    assert [a.time for a in engine.process(ticks)] == [2_000]


def test_a_repeat_goes_on_after_a_restart() -> None:
    """The last alert's time is the saved state: the next run repeats from it."""
    rules = [level(repeat_ms=10_000)]
    old = Engine(rules)
    old.changes()  # start recording
    assert times(old, (1_000, 105), (5_000, 105)) == [1_000]
    new = Engine(rules)
    new.prime(old.last_tickers())
    new.restore(old.changes())
    assert times(new, (8_000, 105), (11_000, 105), (20_000, 105), (21_000, 105)) == [11_000, 21_000]


def test_a_repeat_changed_on_a_rule_keeps_its_firing_state() -> None:
    """repeat is not part of what a saved state depends on: a level that fired and holds
    stays quiet until the new repeat is due, counted from its last alert."""
    engine = Engine([level(repeat_ms=60_000)])
    assert times(engine, (1_000, 105), (2_000, 105)) == [1_000]
    engine.replace_rule(level(repeat_ms=5_000))
    assert times(engine, (3_000, 105), (6_000, 105), (7_000, 105)) == [6_000]
