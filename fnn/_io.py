"""File helpers: atomic writes (a crash leaves the old file or the new one, never half of
one) and bounded reads (a FIFO, a device or a huge file is refused, never waited on)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Flushes a directory's entries to disk, so that a rename or a new file in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file, fsync and rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file, fsync, rename and an fsync of the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_KINDS = [
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
]


def read_regular_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, read without blocking and within a bound.

    The file is opened non-blocking and checked with ``fstat`` before anything is
    read, so a FIFO, a device (a symlink to ``/dev/zero``, say) or a directory is
    refused at once instead of hanging or exhausting memory, and a file larger
    than ``max_bytes`` is refused before it is read.

    Args:
        path: the file (symlinks are followed; what they point to is checked).
        max_bytes: the most bytes it may hold (``None``: no limit but its own size).

    Returns:
        Its contents.

    Raises:
        OSError: when it cannot be opened or read (``FileNotFoundError`` when missing).
        ValueError: when it is not a regular file, holds more than ``max_bytes``, or
            changes size while it is read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)  # never waits on a FIFO
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
            raise ValueError(f"not a regular file but {kind}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes, more than the {max_bytes} expected")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(info.st_size + 1)
    finally:
        os.close(fd)
    if len(data) != info.st_size:
        raise ValueError(f"changed size while being read (it held {info.st_size} bytes)")
    return data
