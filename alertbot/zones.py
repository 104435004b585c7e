"""A chat's time zone (``/timezone``): the zone its times are shown in, and its daily digest
comes at. Zones are IANA's (``Europe/Berlin``, from the system's database or the ``tzdata``
package, which containers without one need) or fixed offsets (``UTC+8``)."""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from difflib import get_close_matches

__all__ = ["UTC_NAME", "ZoneError", "find_zone", "load_zone", "local_minute", "zone_names"]

UTC_NAME = "UTC"
#: ``UTC+8``, ``GMT-05:30``, ``+0530``, ``+8``: an offset from UTC, hours (and minutes)
_OFFSET_RE = re.compile(r"(?:utc|gmt)?\s*([+-])\s*([0-9]{1,2})(?::?([0-9]{2}))?", re.ASCII)
#: what Telegram users type for UTC itself
_UTC_WORDS = frozenset({"utc", "gmt", "z", "zulu", "utc+0", "utc-0", "gmt+0", "gmt-0", "off"})
#: links and legacy names of the database not offered (posix/..., right/..., localtime, Factory)
_HIDDEN_PREFIXES = ("posix/", "right/", "etc/", "systemv/", "us/", "canada/", "brazil/", "mexico/")


#: abbreviations people type, which name no one zone (IST: India's, Ireland's, Israel's; EST
#: in the database is a fixed UTC-5, without New York's summer time): the zone most meant
_ABBREVIATIONS = {
    "pst": "America/Los_Angeles",
    "pdt": "America/Los_Angeles",
    "mst": "America/Denver",
    "mdt": "America/Denver",
    "cst": "America/Chicago or Asia/Shanghai",
    "cdt": "America/Chicago",
    "est": "America/New_York",
    "edt": "America/New_York",
    "bst": "Europe/London",
    "cest": "Europe/Berlin",
    "eest": "Europe/Athens",
    "msk": "Europe/Moscow",
    "ist": "Asia/Kolkata",
    "gst": "Asia/Dubai",
    "sgt": "Asia/Singapore",
    "hkt": "Asia/Hong_Kong",
    "jst": "Asia/Tokyo",
    "kst": "Asia/Seoul",
    "wib": "Asia/Jakarta",
    "aest": "Australia/Sydney",
    "aedt": "Australia/Sydney",
}


class ZoneError(ValueError):
    """A time zone that cannot be used: why, with a suggestion when any. The message holds
    ``{typed}`` where the text typed goes, quoted as the caller quotes user text (:meth:`text`)."""

    def text(self, typed: str) -> str:
        return str(self).format(typed=typed)


@functools.cache
def zone_names() -> dict[str, str]:
    """Every zone the database knows, lower case -> its name (read once: 0.1 s)."""
    names = zoneinfo.available_timezones() - {"localtime", "Factory"}
    return {name.lower(): name for name in names}


@functools.cache
def _cities() -> dict[str, list[str]]:
    """A zone's last part as people write a city (``new york``) -> the zones it ends."""
    out: dict[str, list[str]] = {}
    for lower, name in zone_names().items():
        if "/" not in lower or lower.startswith(_HIDDEN_PREFIXES):
            continue
        city = lower.rsplit("/", 1)[1].replace("_", " ")
        out.setdefault(city, []).append(name)
    return out


def _city(city: str) -> str | None:
    """The zone a city names: the one zone ending with it, or of several that keep the same
    time (a name and its old link: America/Argentina/Buenos_Aires, America/Buenos_Aires), the
    longest. Raises ZoneError for a city of zones whose times differ."""
    zones = _cities().get(city)
    if not zones:
        return None
    if len(zones) > 1:
        now = dt.datetime.now(dt.UTC)
        instants = (now, now + dt.timedelta(days=182))
        offsets = {tuple(load_zone(z).utcoffset(i) for i in instants) for z in zones}
        if len(offsets) > 1:
            raise ZoneError(f"{{typed}} is in several zones: {', '.join(sorted(zones)[:4])}")
    return max(zones, key=lambda z: (z.count("/"), z))


def _offset_name(sign: str, hours: int, minutes: int) -> str:
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def find_zone(text: str) -> str:
    """The zone ``text`` names, as it is stored and shown (``Europe/Berlin``, ``UTC+08:00``,
    ``UTC``). Takes IANA names in any case, a city alone when only one zone ends with it
    (``berlin``, ``new york``) and offsets (``UTC+8``, ``GMT-5``, ``+05:30``). Raises
    ZoneError, with the closest names when any."""
    typed = " ".join(text.split())
    lower = typed.lower()
    if lower in _UTC_WORDS:
        return UTC_NAME
    match = _OFFSET_RE.fullmatch(lower)
    if match is not None:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if minutes >= 60 or hours * 60 + minutes > (12 if sign == "-" else 14) * 60:
            raise ZoneError("{typed} is not an offset from UTC (they go from -12:00 to +14:00)")
        if hours == minutes == 0:
            return UTC_NAME
        return _offset_name(sign, hours, minutes)
    meant = _ABBREVIATIONS.get(lower)
    if meant is not None:
        raise ZoneError(
            "{typed} is an abbreviation, which names no one zone: write a zone's name "
            f"(did you mean {meant}?) or an offset from UTC"
        )
    names = zone_names()
    if "/" in lower:
        name = names.get(lower.replace(" ", "_"))
        if name is not None:
            return name
    city = _city(lower.replace("_", " "))
    if city is not None:
        return city
    name = names.get(lower.replace(" ", "_"))
    if name is not None:
        return name
    close = get_close_matches(lower.replace(" ", "_"), list(names), n=3, cutoff=0.75)
    close += [
        found
        for c in get_close_matches(lower.replace("_", " "), list(_cities()), n=3, cutoff=0.8)
        if (found := _city(c)) is not None
    ]
    shown = list(dict.fromkeys(names.get(c, c) for c in close))[:3]
    hint = f" (did you mean {' or '.join(shown)}?)" if shown else ""
    raise ZoneError(f"unknown time zone {{typed}}{hint}")


@functools.lru_cache(maxsize=256)
def load_zone(name: str) -> dt.tzinfo:
    """The tzinfo of a zone :func:`find_zone` gave; UTC for one the database no longer has
    (an update dropped it), rather than no times at all."""
    if name == UTC_NAME:
        return dt.UTC
    match = _OFFSET_RE.fullmatch(name.lower())
    if match is not None:
        sign = -1 if match.group(1) == "-" else 1
        offset = dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
        return dt.timezone(sign * offset, name)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_minute(seconds: float, zone: dt.tzinfo) -> tuple[dt.date, int]:
    """The day and the minute of the day it is at ``seconds`` (wall clock) in ``zone``."""
    at = dt.datetime.fromtimestamp(seconds, tz=zone)
    return at.date(), at.hour * 60 + at.minute


def in_window(minute: int, start: int, end: int) -> bool:
    """Whether ``minute`` of the day is in [``start``, ``end``), which runs overnight when
    ``end`` comes before ``start`` (23:00-07:00)."""
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


_NUMERIC_ABBREVIATION = re.compile(r"([+-])([0-9]{2})([0-9]{2})?")


def zone_label(at: dt.datetime) -> str:
    """How a time's zone is named after it: its abbreviation (``CET``, ``EST``), or, for a
    zone the database gives none (``+04`` for Asia/Dubai, ``+0545`` for Asia/Kathmandu), its
    offset as an offset zone is named (``UTC+04:00``): a bare ``+04`` reads as no zone."""
    name = at.strftime("%Z")
    found = _NUMERIC_ABBREVIATION.fullmatch(name)
    if found is None:
        return name
    sign, hours, minutes = found.groups()
    return _offset_name(sign, int(hours), int(minutes or 0))
