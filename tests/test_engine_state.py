"""The engine's firing state carried across a restart: Engine.changes(), restore() and prime().

A restart must neither fire again for a level that already fired and is still true, nor forget a
cooldown, nor miss a level crossed while the bot was down; a rule changed in the meantime starts
afresh. Each case compares with a fresh engine, which shows what would happen without the state.
"""

from __future__ import annotations

import pytest

from alertbot.rules.conditions import parse
from alertbot.rules.engine import Engine, PairState
from alertbot.rules.model import Rule
from alertbot.ticker import Ticker

# every engine test runs over both implementations of the core
pytestmark = pytest.mark.usefixtures("core_impl")

S = "BTCUSDT"


def tick(time: int, close: float, symbol: str = S) -> Ticker:
    return Ticker(symbol, time, close, 100.0, 200.0, 50.0, 1000.0, 1e6, repr(close))


def fired(engine: Engine, *ticks: Ticker) -> list[tuple[str, str, int]]:
    return [(a.rule.id, a.symbol, a.time) for a in engine.process(ticks)]


def restart(old: Engine, rules: list[Rule], saved: list[PairState] | None = None) -> Engine:
    """A new engine (the next run) given what the old one would have saved."""
    new = Engine(rules)
    new.prime(old.last_tickers())
    new.restore(old.changes() if saved is None else saved)
    return new


def test_a_level_that_fired_and_is_still_true_does_not_fire_again_after_a_restart() -> None:
    rules = [Rule("hi", parse("price > 100"), (S,))]
    old = Engine(rules)
    old.changes()  # start recording
    assert fired(old, tick(1_000, 101)) == [("hi", S, 1_000)]
    new = restart(old, rules)
    assert fired(new, tick(2_000, 102)) == []
    assert fired(Engine(rules), tick(2_000, 102)) == [("hi", S, 2_000)]  # without the state
    # and it re-arms and fires as usual afterwards
    assert fired(new, tick(3_000, 99), tick(4_000, 101)) == [("hi", S, 4_000)]


def test_a_cooldown_is_kept_across_a_restart() -> None:
    rules = [Rule("hi", parse("price > 100"), (S,), cooldown_ms=10_000)]
    old = Engine(rules)
    old.changes()
    assert fired(old, tick(1_000, 101), tick(2_000, 99)) == [("hi", S, 1_000)]
    new = restart(old, rules)
    # true again within the cooldown: held until it ends, then fired
    assert fired(new, tick(3_000, 101)) == []
    assert fired(new, tick(11_000, 101)) == [("hi", S, 11_000)]


def test_a_crossing_while_the_bot_was_down_fires_on_the_first_tick_after() -> None:
    rules = [Rule("x", parse("price crosses above 100"), (S,))]
    old = Engine(rules)
    old.changes()
    assert fired(old, tick(1_000, 99)) == []
    new = restart(old, rules)
    assert fired(new, tick(60_000, 101)) == [("x", S, 60_000)]
    assert fired(Engine(rules), tick(60_000, 101)) == []  # the first tick never crosses
    alert = restart(old, rules).process([tick(60_000, 101)])[0]
    assert alert.previous_time == 1_000  # what the feed compares with its outages


def test_a_rule_changed_while_down_starts_afresh() -> None:
    old_rules = [Rule("hi", parse("price > 100"), (S,))]
    old = Engine(old_rules)
    old.changes()
    fired(old, tick(1_000, 101))
    new = restart(old, [Rule("hi", parse("price > 100.5"), (S,))])
    assert fired(new, tick(2_000, 102)) == [("hi", S, 2_000)]


def test_a_glob_rule_state_waits_for_its_symbol() -> None:
    rules = [Rule("g", parse("price > 100"), ("*USDT",))]
    old = Engine(rules)
    old.changes()
    assert fired(old, tick(1_000, 101, "ETHUSDT")) == [("g", "ETHUSDT", 1_000)]
    saved = old.changes()
    new = Engine(rules)  # nothing primed: ETHUSDT is not known yet
    assert new.restore(saved) == 1
    assert fired(new, tick(2_000, 102, "ETHUSDT"), tick(2_000, 102, "SOLUSDT")) == [
        ("g", "SOLUSDT", 2_000)
    ]


def test_changes_report_each_changed_pair_once_and_then_nothing() -> None:
    rules = [Rule("hi", parse("price > 100"), (S,)), Rule("lo", parse("price < 50"), (S,))]
    engine = Engine(rules)
    assert engine.changes() == []
    fired(engine, tick(1_000, 101), tick(2_000, 99), tick(3_000, 101))
    states = engine.changes()
    assert [(s[0], s[1], s[3], s[4]) for s in states] == [("hi", S, 2, 3_000)]  # disarmed
    assert engine.changes() == []


def test_a_once_rule_that_fired_stays_done() -> None:
    rules = [Rule("one", parse("price > 100"), (S,), once=True)]
    old = Engine(rules)
    old.changes()
    fired(old, tick(1_000, 101))
    new = restart(old, rules)
    assert fired(new, tick(2_000, 99), tick(3_000, 101)) == []
