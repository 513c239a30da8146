"""A lock beside an output while it is being made or read: a second process on the same output is
refused with a message naming the holder (the kernel drops the lock when its holder exits,
however it exits).

    claim(path)               exclusive: the one process making `path`
    claim(path, shared=True)  shared: a process reading `path` (model predict, suggest, export),
                              refused while one makes it, and refusing one that would make it
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from .files import writable


@contextlib.contextmanager
def claim(path: str | Path, shared: bool = False):
    """A lock on `path` + '.lock' while an output is made (exclusive) or read (`shared`); refused
    when another process holds it exclusively, or, for an exclusive claim, holds it at all. The
    kernel drops the lock when its holder exits, however it exits. A shared claim where no lock
    file can be written (a read-only copy) is no lock: nothing can replace the output there."""
    lock_path = Path(f"{path}.lock")
    if not shared:
        writable(lock_path.parent)
    handle = _lock_file(lock_path, shared)
    if handle is None:
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{path} is {_holder(handle)}; wait for it to finish or stop it") from None
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
        try:
            yield lock_path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(lock_path: Path, shared: bool):
    """The lock file opened (created when missing) for `claim`, which closes it; for a shared
    claim, opened for reading where it cannot be written, and None where it cannot be opened."""
    if not shared:
        return open(lock_path, "a+")
    for mode in ("a+", "r"):
        try:
            return open(lock_path, mode)
        except OSError:
            continue
    return None


def _holder(handle, tries: int = 20) -> str:
    """What holds a lock: "being made by <holder>" (an exclusive holder writes "process <pid>"
    just after taking the lock, so an empty file is read again for up to 0.2 s), or "being read
    by another process" when the holders are shared ones."""
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pass
    else:
        fcntl.flock(handle, fcntl.LOCK_UN)
        return "being read by another process"
    for _ in range(tries):
        handle.seek(0)
        holder = handle.read().strip()
        if holder:
            return f"being made by {holder}"
        time.sleep(0.01)
    return "being made by another process"
