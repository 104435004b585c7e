"""The engine's firing state carried across a restart: Engine.changes(), restore() and prime().

A restart must neither fire again for a level that already fired and is still true, nor forget a
cooldown, nor miss a level crossed while the bot was down; a rule changed in the meantime starts
afresh. Each case compares with a fresh engine, which shows what would happen without the state.
"""

from __future__ import annotations

import dataclasses

import pytest

from alertbot.rules.conditions import parse
from alertbot.rules.engine import FRESH, Engine, PairState, after_firing
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


def test_a_replaced_rule_keeps_its_state_unless_its_condition_changed() -> None:
    """A rule file edited while running (a reload): an edit of the message, the cooldown or
    the symbols keeps each remaining pair's firing state; an edit of the condition does not."""
    hi = Rule("hi", parse("price > 100"), (S,), cooldown_ms=10_000)
    engine = Engine([hi])
    engine.changes()
    assert fired(engine, tick(1_000, 101, S), tick(1_000, 101, "ETHUSDT")) == [("hi", S, 1_000)]
    engine.replace_rule(Rule("hi", parse("price > 100"), (S, "ETHUSDT"), message="new"))
    # still true: no second alert for BTCUSDT; ETHUSDT is new to the rule and fires
    assert fired(engine, tick(2_000, 102, S), tick(2_000, 102, "ETHUSDT")) == [
        ("hi", "ETHUSDT", 2_000)
    ]
    # the kept state is saved again, under the rule as it is now
    assert ("hi", S, 2, 1_000) in [(r, s, f, t) for r, s, _, f, t in engine.changes()]
    engine.replace_rule(Rule("hi", parse("price > 101.5"), (S,)))
    assert fired(engine, tick(3_000, 102, S)) == [("hi", S, 3_000)]  # afresh


def test_a_replaced_rule_keeps_its_cooldown() -> None:
    engine = Engine([Rule("hi", parse("price > 100"), (S,), cooldown_ms=10_000)])
    assert fired(engine, tick(1_000, 101), tick(2_000, 99)) == [("hi", S, 1_000)]
    engine.replace_rule(Rule("hi", parse("price > 100"), (S,), cooldown_ms=20_000))
    assert fired(engine, tick(3_000, 101)) == []  # held: within the (new) cooldown
    assert fired(engine, tick(21_000, 101)) == [("hi", S, 21_000)]


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


def test_a_removed_glob_rule_forgets_the_states_still_waiting_for_their_symbols() -> None:
    """A rule removed and added back is new: a restored state of it that was still waiting
    for its symbol (not seen since the start) must not be taken up by the new rule."""
    rules = [Rule("g", parse("price > 100"), ("*USDT",), once=True)]
    old = Engine(rules)
    old.changes()
    assert fired(old, tick(1_000, 101, "ETHUSDT")) == [("g", "ETHUSDT", 1_000)]
    new = Engine(rules)  # nothing primed: ETHUSDT is not known yet
    new.restore(old.changes())
    new.changes()
    new.remove_rule("g")
    new.add_rule(rules[0])
    assert fired(new, tick(2_000, 102, "ETHUSDT")) == [("g", "ETHUSDT", 2_000)]


def test_dropped_names_the_saved_states_a_removal_or_an_edit_made_void() -> None:
    """What the saved copies must forget (App.save_state): all of a removed rule's states and
    all of one replaced by a new condition; one symbol's when an edit left that symbol only,
    whether its pair existed or its restored state was still waiting for it."""
    a, b, c = (Rule(i, parse("price > 100"), (S, "ETHUSDT", "SOL*")) for i in "abc")
    engine = Engine([a, b, c])
    assert fired(engine, tick(500, 99, S), tick(500, 99, "ETHUSDT")) == []  # their pairs
    engine.restore([(r, "SOLUSDT", "price > 100|0.0", 2, 1_000) for r in "abc"])
    assert engine.dropped() == []  # recorded from the first changes() on, as they are
    engine.changes()
    engine.remove_rule("a")
    engine.replace_rule(Rule("b", parse("price > 200"), (S,)))
    engine.replace_rule(Rule("c", parse("price > 100"), (S,), message="edited"))
    assert engine.dropped() == [("a", None), ("b", None), ("c", "ETHUSDT"), ("c", "SOLUSDT")]
    assert engine.dropped() == []


def test_a_state_of_a_symbol_its_rule_no_longer_covers_is_not_restored() -> None:
    """A symbol dropped from a rule while the bot was down, and named again by a later edit,
    is new to the rule: it starts afresh."""
    one = Rule("one", parse("price > 100"), (S, "ETHUSDT"), once=True)
    old = Engine([one])
    old.changes()
    assert fired(old, tick(1_000, 101, "ETHUSDT")) == [("one", "ETHUSDT", 1_000)]
    new = restart(old, [dataclasses.replace(one, symbols=(S,))])
    new.changes()
    new.replace_rule(one)
    assert fired(new, tick(2_000, 102, "ETHUSDT")) == [("one", "ETHUSDT", 2_000)]


@pytest.mark.parametrize(
    ("when", "once", "rearm", "prices"),
    [
        ("price > 100", False, 0.0, [99, 101]),
        ("price > 100", True, 0.0, [101]),
        ("price < 100", False, 0.0, [101, 99]),
        ("price crosses above 100", False, 0.0, [99, 101]),
        ("price crosses 100", False, 0.0, [99, 101]),  # upward
        ("price crosses 100", False, 0.0, [99, 101, 99]),  # downward: the upward side re-arms
        ("price crosses 100", False, 0.05, [101, 99, 103]),  # the other side not beyond the band
        ("price crosses 100", False, 0.05, [101, 99, 106]),  # and beyond it
        ("rises 2% in 1m", True, 0.0, [100, 103]),
        ("all(price > 100, rises 2% in 1m)", False, 0.0, [100, 103]),
    ],
)
def test_after_firing_records_a_firing_as_the_engine_does(when, once, rearm, prices) -> None:
    """A restart takes an alert stored after the last save as a firing (App.restore_state):
    the state it gives the pair is the one the engine's own firing would have saved."""
    rule = Rule("r", parse(when), (S,), once=once, rearm=rearm)
    engine = Engine([rule])
    engine.changes()
    ticks = [tick(1_000 * (i + 1), p) for i, p in enumerate(prices)]
    engine.process(ticks[:-1])
    before = [s[3] for s in engine.changes()] or [FRESH]
    alerts = engine.process(ticks[-1:])
    assert [a.time for a in alerts] == [ticks[-1].time]
    (state,) = engine.changes()
    assert after_firing(rule, before[-1], ticks[-1].price_text) == state[3]


@pytest.mark.parametrize(
    ("when", "price"),
    [("price crosses 100", "100"), ("change_24h crosses 1%", "101"), ("price crosses 100", None)],
)
def test_after_firing_disarms_both_sides_of_a_crossing_it_cannot_place(when, price) -> None:
    """``crosses X`` disarms the side it crossed; from an alert's price, the side of a price
    crossing is known unless the price is X itself. Otherwise both are disarmed: no second
    alert (a crossing back before the next re-arm is missed instead)."""
    assert after_firing(Rule("r", parse(when), (S,)), FRESH, price) == 0


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


def test_a_rule_done_by_expiry_or_once_fires_again_after_that_was_edited_away() -> None:
    """'done' comes back only where it still holds: an expiry moved later, or a ``once``
    dropped, between two runs lets the rule fire again."""
    expiring = Rule("exp", parse("price > 100"), (S,), expires_ms=2_000)
    one = Rule("one", parse("price > 100"), (S,), once=True)
    old = Engine([expiring, one])
    old.changes()
    assert fired(old, tick(1_000, 99), tick(3_000, 101)) == [("one", S, 3_000)]  # exp expired
    saved = old.changes()
    assert sorted((s[0], s[3] & 4) for s in saved) == [("exp", 4), ("one", 4)]
    later = dataclasses.replace(expiring, expires_ms=10_000)
    again = dataclasses.replace(one, once=False)
    new = restart(old, [later, again], saved)
    assert fired(new, tick(4_000, 99), tick(5_000, 101)) == [("exp", S, 5_000), ("one", S, 5_000)]
    # unedited, both stay done
    assert fired(restart(old, [expiring, one], saved), tick(4_000, 99), tick(5_000, 101)) == []


def test_a_move_that_began_before_a_restart_is_measured_from_its_start() -> None:
    """The moves windows' prices (Engine.histories) are given back by prime(): a rise that began
    before the restart fires when it completes after it, as if the bot had not stopped."""
    rules = [Rule("up", parse("rises 5% in 5m"), (S,))]
    old = Engine(rules)
    assert fired(old, tick(1_000, 100), tick(61_000, 103)) == []
    new = Engine(rules)
    new.prime(old.last_tickers(), old.histories())
    assert fired(new, tick(121_000, 106)) == [("up", S, 121_000)]  # 6 % over the 100 at 1 s
    bare = Engine(rules)
    bare.prime(old.last_tickers())  # without the history: only 103 -> 106 is seen
    assert fired(bare, tick(121_000, 106)) == []


def test_a_restored_history_keeps_to_its_window() -> None:
    """Prices older than the window do not count after the restart either."""
    rules = [Rule("up", parse("rises 5% in 1m"), (S,))]
    old = Engine(rules)
    fired(old, tick(1_000, 100), tick(50_000, 103))
    new = Engine(rules)
    new.prime(old.last_tickers(), old.histories())
    assert fired(new, tick(90_000, 106)) == []  # 100 is 89 s old: outside the minute
    assert fired(new, tick(100_000, 108.2)) == [("up", S, 100_000)]  # 5 % over the 103 at 50 s


def test_histories_hold_the_prices_a_window_can_still_use_in_time_order() -> None:
    """histories() gives each symbol's running extremes as (time, price) in time order, the
    same from both cores; a price that can never again be a window's low or high is gone."""
    rules = [Rule("up", parse("moves 5% in 5m"), (S,))]
    engine = Engine(rules)
    engine.process([tick(1_000, 100), tick(2_000, 99), tick(3_000, 101), tick(4_000, 100)])
    # 100 at 1 s is superseded as a low by 99 at 2 s and as a high by 101 at 3 s
    assert engine.histories() == {S: [(2_000, 99.0), (3_000, 101.0), (4_000, 100.0)]}
