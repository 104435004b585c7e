"""Commands shown with their arguments in the bot's messages (``e.g. /mute w3 1h``), as code.

Telegram makes each ``/command`` in a message's text a link, and a tap on it sends the command
alone: ``/mute`` for ``/mute w3 1h``, which only asks again. Shown as code, a tap copies the
whole command instead. Text is written with :func:`hint` around each such command; where it is
sent, :func:`entities` turns the marks into code entities (an answer, which is plain text) and
:func:`html` into ``<code>`` (an alert, which is HTML); :func:`unmarked` is the text alone (for
a log, a button press's answer, a test). A command without arguments (``/list``) stays a link:
a tap sends all of it. No I/O.
"""

from __future__ import annotations

# control characters: nothing a reply quotes from the user keeps one (it is written as its code)
_OPEN, _CLOSE = "\x0e", "\x0f"


def hint(command: str) -> str:
    """``command`` marked to be shown as code when it has arguments; one without stays as it
    is (a link, whose tap sends all of it). A mark in ``command`` (it may quote the user's
    text) is written as its code, as a reply writes any control character it quotes: left
    in, it would end the hint early and move the next ones' offsets."""
    if _OPEN in command or _CLOSE in command:
        command = command.replace(_OPEN, "\\u000e").replace(_CLOSE, "\\u000f")
    if " " not in command.strip():
        return command
    return f"{_OPEN}{command}{_CLOSE}"


def unmarked(text: str) -> str:
    """``text`` without the marks :func:`hint` put in."""
    if _OPEN not in text and _CLOSE not in text:
        return text
    return text.replace(_OPEN, "").replace(_CLOSE, "")


def entities(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The plain text to send and each hint's (offset, length) in UTF-16 code units, as
    Telegram counts them for a ``code`` entity."""
    plain, spans = _spans(text)
    found = []
    for start, end in spans:
        offset = len(plain[:start].encode("utf-16-le")) // 2
        length = len(plain[start:end].encode("utf-16-le")) // 2
        found.append((offset, length))
    return plain, found


def html(text: str) -> str:
    """``text`` (HTML already) with each hint in ``<code>``."""
    plain, spans = _spans(text)
    for start, end in reversed(spans):
        plain = f"{plain[:start]}<code>{plain[start:end]}</code>{plain[end:]}"
    return plain


def _spans(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text without marks, and each hint's (start, end) in it (characters). A mark left
    alone (a long line cut between two messages) is dropped; an open one runs to the end."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    size = 0
    start: int | None = None
    for ch in text:
        if ch == _OPEN:
            start = size  # a second open before a close starts the hint again
        elif ch == _CLOSE:
            if start is not None and size > start:
                spans.append((start, size))
            start = None
        else:
            out.append(ch)
            size += 1
    if start is not None and size > start:
        spans.append((start, size))
    return "".join(out), spans


__all__ = ["entities", "hint", "html", "unmarked"]
