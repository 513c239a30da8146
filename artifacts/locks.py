"""A lock beside an output while it is being made: a second process on the same output is
refused with a message naming the holder (the kernel drops the lock when its holder exits,
however it exits)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from .files import writable


@contextlib.contextmanager
def claim(path: str | Path):
    """An exclusive lock on `path` + '.lock' while an output is made; refused when another
    process holds it. The kernel drops the lock when its holder exits, however it exits."""
    lock_path = Path(f"{path}.lock")
    writable(lock_path.parent)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            raise ValueError(f"{path} is being made by {holder}; wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        try:
            yield lock_path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle, tries: int = 20) -> str:
    """Who holds a lock, as its holder wrote it ("process <pid>"); the holder writes just after
    taking the lock, so an empty file is read again for up to 0.2 s before "another process"."""
    for _ in range(tries):
        handle.seek(0)
        holder = handle.read().strip()
        if holder:
            return holder
        time.sleep(0.01)
    return "another process"
