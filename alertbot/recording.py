"""Recordings: JSON Lines, one WebSocket message per line as received; ``.gz`` is transparent."""

from __future__ import annotations

import errno
import fcntl
import gzip
import os
import stat
from collections.abc import Iterator
from typing import IO, Any

from alertbot.errors import AlertbotError

#: how a gzip file starts: a recording is read as gzip by its content, not by its name (a
#: renamed or downloaded file keeps its bytes, not its suffix)
GZIP_MAGIC = b"\x1f\x8b"


class RecordingCutOff(AlertbotError):
    """A recording ends before its end (a recorder that was killed, a copy that stopped short):
    a gzip one without its end-of-stream marker, or one whose last line stops short of its
    newline and does not read; every whole line before the cut was read."""

    def __init__(self, path: str | os.PathLike[str], lines: int) -> None:
        super().__init__(f"{os.fspath(path)} is cut off after line {lines}")
        self.path = path
        self.lines = lines


class RecordingExists(AlertbotError):
    """The file ``record`` was to write has something in it (``size`` bytes), found as it was
    opened: written since the command's first check, and left as it is."""

    def __init__(self, path: str, size: int) -> None:
        super().__init__(f"{path}: the file exists ({size} bytes)")
        self.path = path
        self.size = size


class RecordingBusy(AlertbotError):
    """The file ``record`` was to write is being written by another ``alertbot record``."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: another alertbot record is writing to it")
        self.path = path


class _OwnGzipFile(gzip.GzipFile):
    """A gzip reader or writer over an open file, which it closes with itself."""

    def __init__(self, inner: IO[bytes], mode: str = "rb", filename: str | None = None) -> None:
        super().__init__(filename=filename, fileobj=inner, mode=mode)
        self._inner = inner

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._inner.close()


#: the name that stands for stdin (reading) or stdout (writing), as for most commands
STDIO = "-"


def open_recording(path: str | os.PathLike[str], mode: str = "rb") -> IO[bytes]:
    """Open a recording for reading (``rb``: gzip when it starts as gzip does, whatever its
    name) or writing (``wb``: gzip when the name ends in .gz). ``-`` is stdin or stdout: a
    copy of its descriptor, so that closing the recording leaves it open, and a ``>> file``
    is appended to (opening /dev/stdout anew would truncate it)."""
    stdio = os.fspath(path) == STDIO
    if not mode.startswith("r"):
        if stdio:
            return open(os.dup(1), "wb")
        if os.fspath(path).endswith(".gz"):
            return gzip.open(path, mode)  # type: ignore[return-value]
        return open(path, mode)
    # opened once and peeked at, not probed and opened again: a pipe (``replay <(...)``,
    # /dev/stdin) can be read only once
    fh = open(os.dup(0) if stdio else path, "rb")  # noqa: SIM115 (the caller closes it)
    try:
        gz = fh.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)] == GZIP_MAGIC
    except BaseException:
        fh.close()
        raise
    if gz:
        return _OwnGzipFile(fh)  # type: ignore[return-value]
    return fh


#: flock's errors on a file system without locks: the size check alone guards the file there
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def create_recording(path: str, *, force: bool = False) -> IO[bytes]:
    """Open a recording to write, for ``alertbot record``: gzip when the name ends in .gz;
    ``-`` is stdout, as for :func:`open_recording`.

    What the file holds is judged on the file opened, not on the name beforehand: a regular
    file is opened without truncating it and locked (``flock``, held until it is closed), and
    only then is its size read. A file with something in it raises :class:`RecordingExists`
    unless ``force`` (then it is emptied); one another ``record`` holds raises
    :class:`RecordingBusy`, ``force`` or not (it is for an earlier recording, not one being
    written). So a file made or written between a caller's check and this open is never
    overwritten, and two recorders never share one file. Devices and pipes (``/dev/stdout``)
    are written as they are. OSError as open() raises it."""
    if path == STDIO:
        return open_recording(path, "wb")
    # appended to: a writer that is not a recorder, taking the empty file between the size
    # read below and our first write, keeps what it wrote
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RecordingBusy(path) from None
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
            size = os.fstat(fd).st_size  # under the lock: no recorder writes it but us
            if size and not force:
                raise RecordingExists(path, size)
            if size:
                os.ftruncate(fd, 0)
        fh = open(fd, "wb")  # noqa: SIM115 (the caller closes it)
    except BaseException:
        os.close(fd)
        raise
    if path.endswith(".gz"):
        # named as gzip.open(path) names it (its header carries the name without .gz)
        return _OwnGzipFile(fh, "wb", filename=path)  # type: ignore[return-value]
    return fh


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, message, whole) for every non-blank line of a recording; ``whole`` is
    False for a last line without its newline: cut off mid-write when it does not read (the
    caller decodes it, and then raises :class:`RecordingCutOff` itself).

    A gzip recording cut off mid-stream yields every whole line it holds, then raises
    :class:`RecordingCutOff`.
    """
    number = 0
    with open_recording(path) as fh:
        try:
            for number, line in enumerate(fh, 1):
                whole = line.endswith(b"\n")
                line = line.strip()
                if line:
                    yield number, line, whole
        except EOFError as exc:  # gzip: "ended before the end-of-stream marker"
            raise RecordingCutOff(path, number) from exc


class Overlap:
    """Tells a message already recorded from another socket (a 24 h rotation's overlap, when the
    old and the new connection both deliver) from a new one.

    A message is a repeat when every element is a ticker (an object with a str ``s`` and an int
    ``E``) whose event time is not newer than the last one recorded for its symbol on the same
    stream; such a message adds nothing to the recording. Anything else (new ticks, replies,
    malformed data) is new and is recorded as received. Memory: one entry per (stream, symbol).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str | None, str], int] = {}
        self.repeats = 0

    def is_new(self, obj: Any) -> bool:
        stream = None
        if type(obj) is dict and "data" in obj and "stream" in obj:
            stream = obj["stream"] if type(obj["stream"]) is str else None
            obj = obj["data"]
        elements = obj if type(obj) is list else [obj]
        keys: list[tuple[tuple[str | None, str], int]] = []
        for el in elements:
            if type(el) is not dict:
                return True
            symbol, time = el.get("s"), el.get("E")
            if type(symbol) is not str or type(time) is not int:
                return True
            keys.append(((stream, symbol), time))
        last = self._last
        if keys and all(key in last and time <= last[key] for key, time in keys):
            self.repeats += 1
            return False
        for key, time in keys:
            if time > last.get(key, time - 1):
                last[key] = time
        return True
