"""Webhook URLs: what makes one impossible to post to, decided without an HTTP client.

The rule loader (pure) and the webhook sender both ask :func:`url_text_problem`, so that
``alertbot check`` refuses what delivery would refuse for good. It covers what httpx refuses in
the text (control characters, a malformed IPv4 address, more than 65536 characters) and what
``urllib.parse.urlsplit`` would silently drop (a tab, CR or LF: in a header line they would
inject one) or httpx would percent-encode into a host that cannot exist (a space). The scheme,
host and port are each caller's own check, in its own words.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["MAX_URL_LENGTH", "TOKEN_LENGTH", "shown_url", "url_text_problem"]

#: httpx refuses longer URLs
MAX_URL_LENGTH = 65_536
#: a host httpx reads as an IPv4 address, and so must be a valid one
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: a path segment this long, unless it is a number (an id), may be a token
TOKEN_LENGTH = 16


def _authority(url: str) -> tuple[int, int] | None:
    """Where ``url``'s authority (``user:password@host:port``) starts and ends; None: no
    ``scheme://``. Text only, so that a URL too broken to parse is read all the same."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    start = scheme.end()
    ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
    return start, min(ends, default=len(url))


def _userinfo(url: str) -> tuple[int, str, str] | None:
    """Where ``url``'s user and password start, and the two (``https://user:PASSWORD@host/``);
    None when it holds no password."""
    span = _authority(url)
    if span is None:
        return None
    start, end = span
    userinfo, at, _ = url[start:end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon:
        return None
    return start, user, password


def shown_url(url: str) -> str:
    """``url`` as a log line or an error may show it, with what may be a credential as ``***``:
    a password (``https://user:PASSWORD@host/``); a path segment of :data:`TOKEN_LENGTH` or more
    characters that is not a number, since some receivers take the URL itself as the
    credential (Slack's ``/services/T…/B…/TOKEN``, Discord's ``/api/webhooks/ID/TOKEN``,
    Telegram's ``/botTOKEN/``); every value in the query (``?key=VALUE``, names kept); and a
    fragment. Text only, so that a URL too broken to parse is shown the same way."""
    span = _authority(url)
    if span is None:
        return url
    start, end = span
    authority, rest = url[start:end], url[end:]
    found = _userinfo(url)
    if found is not None:
        _, user, password = found
        authority = f"{user}:***@{authority[len(user) + len(password) + 2 :]}"
    rest, hash_, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    path = "/".join(
        "***" if len(part) >= TOKEN_LENGTH and not part.isdigit() else part
        for part in path.split("/")
    )
    if query:
        query = "&".join(_shown_pair(pair) for pair in query.split("&"))
    return f"{url[:start]}{authority}{path}{question}{query}{hash_}{'***' if fragment else ''}"


def _shown_pair(pair: str) -> str:
    name, equals, value = pair.partition("=")
    if not equals:
        return "***" if name else ""  # ``?TOKEN``: a value without a name
    return f"{name}=***" if value else pair


def url_password(url: str) -> str | None:
    """The password in ``url`` (``https://user:PASSWORD@host/``), or None: what a log line
    must never show, whoever logs the URL (httpx's request lines do)."""
    found = _userinfo(url)
    return found[2] if found is not None and found[2] else None


def url_text_problem(url: str) -> str | None:
    """What in ``url``'s text makes it impossible to post to, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"it is longer than {MAX_URL_LENGTH} characters"
    for i, char in enumerate(url):
        if char.isspace() or not char.isprintable():
            return f"{char!r} at position {i} (a URL holds no white space or control characters)"
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # a bracket left open, or no IPv6 address between brackets
        return None  # the caller's check of the URL's parts says so
    if _IPV4_STYLE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not an IPv4 address"
    return None
