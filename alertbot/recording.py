"""Recordings: JSON Lines, one WebSocket message per line as received; ``.gz`` is transparent."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from typing import IO


def open_recording(path: str | os.PathLike[str], mode: str = "rb") -> IO[bytes]:
    """Open a recording for reading (``rb``) or writing (``wb``), gzip when the name ends in .gz."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, message) for every non-blank line of a recording."""
    with open_recording(path) as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if line:
                yield number, line
