"""What ``alertbot record`` treats as a repeat: ``Overlap`` on its own (the live rotation case is
in test_cli_live.py)."""

from __future__ import annotations

from alertbot.recording import Overlap
from tests.fakes.binance import mini_ticker

T = 1_772_000_000_000


def test_a_frame_whose_ticks_were_all_recorded_is_a_repeat():
    seen = Overlap()
    frame = [mini_ticker("BTCUSDT", 1, T), mini_ticker("ETHUSDT", 2, T)]
    assert seen.is_new(frame)
    assert not seen.is_new([dict(t) for t in frame])
    assert seen.repeats == 1


def test_a_frame_with_one_newer_tick_is_recorded_whole():
    seen = Overlap()
    assert seen.is_new([mini_ticker("BTCUSDT", 1, T), mini_ticker("ETHUSDT", 2, T)])
    assert seen.is_new([mini_ticker("BTCUSDT", 1, T), mini_ticker("ETHUSDT", 2, T + 1)])
    assert not seen.is_new([mini_ticker("ETHUSDT", 2, T + 1)])


def test_each_stream_of_a_combined_connection_is_its_own():
    """The same tick on the all-market stream and on a symbol stream the user asked for too."""
    seen = Overlap()
    tick = mini_ticker("BTCUSDT", 1, T)
    assert seen.is_new({"stream": "!miniTicker@arr", "data": [tick]})
    assert seen.is_new({"stream": "btcusdt@miniTicker", "data": tick})
    assert not seen.is_new({"stream": "btcusdt@miniTicker", "data": tick})


def test_an_older_tick_does_not_move_the_mark_back():
    seen = Overlap()
    assert seen.is_new([mini_ticker("BTCUSDT", 1, T + 5)])
    assert seen.is_new([mini_ticker("BTCUSDT", 1, T + 6), mini_ticker("BTCUSDT", 1, T)])
    assert not seen.is_new([mini_ticker("BTCUSDT", 1, T + 6)])


def test_anything_that_is_not_all_ticks_is_recorded_as_received():
    seen = Overlap()
    tick = mini_ticker("BTCUSDT", 1, T)
    assert seen.is_new([tick])
    for message in (
        [tick, "garbage"],
        [tick, {"s": "BTCUSDT", "E": "late"}],
        {"result": None, "id": 1},
        [],
        7,
    ):
        assert seen.is_new(message)
        assert seen.is_new(message)
    assert seen.repeats == 0
