"""Time zones as /timezone takes them (alertbot.zones)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbot import zones
from alertbot.zones import UTC_NAME, ZoneError, find_zone, load_zone, local_minute, zone_label


@pytest.mark.parametrize(
    ("typed", "zone"),
    [
        ("Europe/Berlin", "Europe/Berlin"),
        ("europe/berlin", "Europe/Berlin"),  # any case
        ("America/New York", "America/New_York"),  # a space for the underscore
        ("berlin", "Europe/Berlin"),  # a city alone
        ("New  York", "America/New_York"),
        ("Singapore", "Asia/Singapore"),  # the city's zone, not the old link "Singapore"
        ("buenos aires", "America/Argentina/Buenos_Aires"),  # a zone and its link: the same
        ("CET", "CET"),  # a name of the database
        ("UTC", UTC_NAME),
        ("gmt", UTC_NAME),
        ("UTC+0", UTC_NAME),
        ("+00:00", UTC_NAME),
        ("UTC+8", "UTC+08:00"),
        ("utc +8", "UTC+08:00"),
        ("GMT-5", "UTC-05:00"),
        ("+05:30", "UTC+05:30"),
        ("+0545", "UTC+05:45"),
        ("UTC+14", "UTC+14:00"),
        ("UTC-12", "UTC-12:00"),
    ],
)
def test_a_zone_is_found_as_people_type_it(typed: str, zone: str) -> None:
    assert find_zone(typed) == zone


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("Berln", "unknown time zone {typed} (did you mean Europe/Berlin?)"),
        ("new yrok", "unknown time zone {typed} (did you mean America/New_York?)"),
        ("Mars/Olympus", "unknown time zone {typed}"),
        (
            "IST",
            "{typed} is an abbreviation, which names no one zone: write a zone's name (did you "
            "mean Asia/Kolkata?) or an offset from UTC",
        ),
        (
            "EST",  # the database's EST is a fixed UTC-5: New York's summer time is not in it
            "{typed} is an abbreviation, which names no one zone: write a zone's name (did you "
            "mean America/New_York?) or an offset from UTC",
        ),
        ("UTC+15", "{typed} is not an offset from UTC (they go from -12:00 to +14:00)"),
        ("UTC-13", "{typed} is not an offset from UTC (they go from -12:00 to +14:00)"),
        ("+05:75", "{typed} is not an offset from UTC (they go from -12:00 to +14:00)"),
    ],
)
def test_a_zone_that_cannot_be_used_is_refused_with_the_closest(typed: str, message: str) -> None:
    with pytest.raises(ZoneError) as info:
        find_zone(typed)
    assert str(info.value) == message
    assert info.value.text("'x'") == message.format(typed="'x'")


def test_a_city_of_zones_that_keep_different_times_is_not_guessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two zones ending with one city whose clocks differ (none in today's database, which
    may change): the answer names both rather than picking one."""
    cities = {"springfield": ["America/New_York", "America/Chicago"]}
    monkeypatch.setattr(zones, "_cities", lambda: cities)
    with pytest.raises(ZoneError) as info:
        find_zone("Springfield")
    assert str(info.value) == "{typed} is in several zones: America/Chicago, America/New_York"


def test_every_zone_found_loads_and_names_itself() -> None:
    """What find_zone gives, load_zone turns into the zone (a fixed offset named as shown);
    a name the database lost meanwhile reads as UTC rather than failing."""
    at = dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC)
    assert at.astimezone(load_zone("UTC+05:30")).strftime("%H:%M %Z") == "17:30 UTC+05:30"
    assert at.astimezone(load_zone("UTC-05:00")).strftime("%H:%M %Z") == "07:00 UTC-05:00"
    assert at.astimezone(load_zone("Europe/Berlin")).strftime("%H:%M %Z") == "14:00 CEST"
    assert load_zone(UTC_NAME) is dt.UTC
    assert load_zone("Gone/Zone") is dt.UTC


@pytest.mark.parametrize(
    ("zone", "label"),
    [
        ("Europe/Berlin", "CEST"),  # an abbreviation: as it is
        ("America/New_York", "EDT"),
        ("UTC+05:30", "UTC+05:30"),
        ("Asia/Dubai", "UTC+04:00"),  # the database has "+04": an offset zone's name
        ("Asia/Kathmandu", "UTC+05:45"),  # "+0545"
        ("America/Sao_Paulo", "UTC-03:00"),  # "-03"
    ],
)
def test_a_times_zone_is_named_by_its_abbreviation_or_as_an_offset_zone(
    zone: str, label: str
) -> None:
    at = dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC).astimezone(load_zone(zone))
    assert zone_label(at) == label


def test_the_local_minute_follows_summer_time() -> None:
    """New York on the day its clocks go forward (2027-03-14, 02:00 -> 03:00): 06:59 UTC is
    01:59 there, 07:00 UTC is 03:00."""
    zone = load_zone("America/New_York")
    before = dt.datetime(2027, 3, 14, 6, 59, tzinfo=dt.UTC).timestamp()
    assert local_minute(before, zone) == (dt.date(2027, 3, 14), 1 * 60 + 59)
    assert local_minute(before + 60, zone) == (dt.date(2027, 3, 14), 3 * 60)


@settings(max_examples=300)
@given(
    st.text()
    | st.sampled_from(sorted(zones.zone_names().values())).map(lambda z: z.lower())
    | st.from_regex(r"(utc|gmt)?[+-][0-9]{1,2}(:?[0-9]{2})?", fullmatch=True)
)
def test_any_text_is_a_zone_that_loads_or_a_zone_error(text: str) -> None:
    """find_zone never fails otherwise, and what it gives loads as itself (not UTC's stand-in
    for a name the database lacks)."""
    name: str | None = None
    try:
        name = find_zone(text)
    except ZoneError as exc:
        refused = str(exc)
    if name is None:
        assert "{typed}" in refused  # where the reply quotes what was typed
        return
    zone = load_zone(name)
    assert (zone is dt.UTC) == (name == UTC_NAME)
    assert dt.datetime(2026, 1, 1, tzinfo=zone).utcoffset() is not None
