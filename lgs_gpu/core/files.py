"""Atomic file writes: a reader never sees a half-written output, and a crash leaves no partial file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _proc_umask() -> int | None:
    """The process's umask as Linux reports it (``/proc/self/status``), or None where it does not."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def _umask_at_import() -> int:
    mask = os.umask(0o022)  # reading it means setting it: done once, at import, before any writer thread
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666`` less the umask (read now on Linux, else at import)."""
    mask = _proc_umask()
    return 0o666 & ~(_UMASK_AT_IMPORT if mask is None else mask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    The file gets the mode a plain ``open()`` would give it (the umask is respected): the
    temporary file is private (0600) only while it is being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
            try:
                os.fchmod(stream.fileno(), file_mode())
            except OSError:  # a file system without modes (vfat, some SMB/FUSE mounts): its own rules apply
                pass
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
