"""HDF5 stores: the one way they are opened (a file HDF5 cannot read, or a failed write, becomes
a ValueError naming it), written in one go (`written`), and the checksum of their arrays that
their readers recompute.

h5py reports some failed writes only from the destructors of its objects; `install_hooks`
(called by every command's entry, `runtime.cli.run_cli`, and by every task, `runtime.tasks`)
routes those of a file being written to `open_h5`, which raises them as `write_failed`. Nothing
here changes the interpreter's hooks at import or when a file is opened.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import traceback
from pathlib import Path

import h5py
import numpy as np

from .files import fingerprint, write_failed

FORCE_HINT = "rerun the stage with --force (make ... FORCE=1)"
# the attributes `written` and `write_arrays` add to a store (the rest are its writer's own)
STAMP_ATTRS = ("provenance", "fingerprint", "arrays_sha256", "complete")


DIGEST_BLOCK = 64 << 20  # bytes of a dataset hashed at a time: a large store is never read whole


def arrays_digest(arrays: dict) -> str:
    """sha256 over named arrays (name, dtype, shape and bytes of each, by name; an array of
    strings as its utf-8 text): what a store's reader recomputes to find damaged data. A value
    may be an HDF5 dataset, hashed a block of rows at a time."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = arrays[name]
        text = value.dtype.kind in "OUS"
        digest.update(f"{name}:{'str' if text else value.dtype}:{value.shape}:".encode())
        if text:
            strings = value.asstr()[()] if isinstance(value, h5py.Dataset) else np.asarray(value)
            digest.update("\0".join(map(str, strings.ravel())).encode())
            continue
        rows = max(1, DIGEST_BLOCK // max(1, value.nbytes // max(1, len(value)))) if value.ndim else 1
        for start in range(0, max(1, len(value)) if value.ndim else 1, rows):
            block = value[start:start + rows] if value.ndim else value[()]
            digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


def write_arrays(h5, arrays: dict, options: dict | None = None) -> None:
    """Create a dataset per named array (strings as utf-8; `options`: name -> create_dataset
    keywords such as compression) and record their `arrays_sha256` for `check_arrays`."""
    for name, value in arrays.items():
        text = {"dtype": h5py.string_dtype("utf-8")} if np.asarray(value).dtype.kind in "OUS" else {}
        h5.create_dataset(name, data=value, **text, **(options or {}).get(name, {}))
    h5.attrs["arrays_sha256"] = arrays_digest(arrays)


def datasets(h5, names) -> dict:
    """The named datasets of an open HDF5 file that exist (unread: `arrays_digest` hashes them a
    block at a time)."""
    return {name: h5[name] for name in names if name in h5}


def stamp_arrays(h5, names) -> None:
    """Record the `arrays_sha256` of the named datasets already in an open file, for
    `check_arrays` (a store written in parts; `write_arrays` for one written in one go)."""
    h5.attrs["arrays_sha256"] = arrays_digest(datasets(h5, names))


def read_arrays(h5, names) -> dict:
    """The named datasets of an open HDF5 file that exist, strings decoded."""
    return {name: (h5[name].asstr()[:].astype(object) if h5[name].dtype.kind == "O" else h5[name][:])
            for name in names if name in h5}


def check_arrays(h5, names, path, read: dict | None = None) -> None:
    """ValueError when the named datasets of an open store differ from the `arrays_sha256`
    written with them (a store without one, from before it existed, passes). `read`: those
    already in memory; the others are hashed from the file a block at a time."""
    recorded = h5.attrs.get("arrays_sha256")
    arrays = datasets(h5, names)
    arrays.update({name: value for name, value in (read or {}).items() if name in arrays})
    if recorded is not None and arrays_digest(arrays) != recorded:
        raise ValueError(f"{path} is damaged: its arrays differ from the checksum written with them; "
                         f"{FORCE_HINT} for its stage")


def io_error(err: Exception) -> OSError | None:
    """The OSError behind an HDF5 failure: h5py raises OSError on most, but RuntimeError on a
    failed flush or close ('... errno = 28, error message = ...'); None for other errors."""
    if isinstance(err, OSError):
        return err
    found = re.search(r"errno = (\d+)", str(err)) if isinstance(err, RuntimeError) else None
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


_WRITING: set[str] = set()  # HDF5 files open for writing through `open_h5`, and those whose writing failed

_LOST: dict[str, OSError] = {}  # their write errors that h5py raised only in a destructor

_LEFT_OPEN: list[str] = []  # files whose writing failed: HDF5 could not close them


def hdf5_left_open() -> list[str]:
    """The HDF5 files this process failed to write and HDF5 could not close. HDF5 tries to close
    them again when the interpreter exits and crashes doing so (a segfault, seen with h5py 3.14
    on a full disk), so a command that reported such a failure leaves through `os._exit`."""
    return list(_LEFT_OPEN)


def _lost_write(error, tb) -> bool:
    """Whether `error` is a write error of a file being written, raised in an h5py destructor
    (kept in _LOST for `open_h5` to raise as `write_failed`)."""
    # h5py raises OSError, or RuntimeError with errno
    cause = io_error(error) if isinstance(error, Exception) else None
    if cause is None or "__dealloc__" not in "".join(traceback.format_tb(tb)):
        return False
    name = next((n for n in _WRITING if n in str(error)), None)
    if name is not None:
        _LOST.setdefault(name, cause)
    return name is not None


def _catch_lost_unraisable(unraisable) -> None:
    """h5py reports some failed writes only from the destructors of its objects ("Exception
    ignored in __dealloc__", with the traceback printed first through sys.excepthook): for a file
    being written the error is kept for `open_h5`, not printed as a stray traceback."""
    if not _lost_write(unraisable.exc_value, unraisable.exc_traceback):
        sys.__unraisablehook__(unraisable)


def _catch_lost_excepthook(kind, error, tb) -> None:
    if not _lost_write(error, tb):
        sys.__excepthook__(kind, error, tb)


def install_hooks() -> None:
    """Route h5py's destructor errors of files being written to `open_h5` (module docstring);
    other errors reach the interpreter's own hooks."""
    sys.unraisablehook, sys.excepthook = _catch_lost_unraisable, _catch_lost_excepthook


@contextlib.contextmanager
def open_h5(path: str | Path, mode: str = "r"):
    """h5py.File(path, mode), with an HDF5 error turned into a ValueError naming the file: a file
    HDF5 cannot read is damaged; in a writing mode, a failed write or flush (ENOSPC, EROFS,
    EIO) is `write_failed`, the file flushed and closed inside the block so none goes unseen."""
    path = Path(path)
    if mode != "r":
        _WRITING.add(str(path))
    yield from _opened(path, mode)  # a file that failed stays in _WRITING: its destructors' errors come later
    _WRITING.discard(str(path))
    lost = _LOST.pop(str(path), None)
    if lost is not None:
        raise write_failed(path, lost)


def _opened(path: Path, mode: str):
    """The body of `open_h5`: open, yield, flush and close, every HDF5 error named."""
    try:
        h5 = h5py.File(path, mode)
    except FileNotFoundError:
        raise
    except OSError as err:
        if mode != "r" and err.errno:
            raise write_failed(path, err) from None
        raise ValueError(f"{path} is damaged: HDF5 cannot read it ({err}). Delete it, or "
                         f"{FORCE_HINT}") from None
    try:
        yield h5
        lost = _LOST.pop(str(path), None) if mode != "r" else None
        if lost is None and mode != "r":
            h5.flush()
    except (OSError, RuntimeError) as err:
        _close_quietly(h5, path)
        cause = io_error(err)
        if cause is None:
            raise
        if mode != "r":
            raise write_failed(path, cause) from None
        raise ValueError(f"{path} is damaged: HDF5 failed reading it ({err}). Delete it, or "
                         f"{FORCE_HINT}") from None
    except BaseException:
        _close_quietly(h5, path)
        raise
    if lost is not None:
        # a write inside the block failed, and h5py said so only from a destructor: flushing or
        # closing the file now would crash HDF5, so it is left open (`hdf5_left_open`) and named
        _LEFT_OPEN.append(str(path))
        raise write_failed(path, lost)
    try:
        h5.close()
    except (OSError, RuntimeError) as err:
        cause = io_error(err)
        if cause is None:
            raise
        _LEFT_OPEN.append(str(path))
        raise write_failed(path, cause) from None


def _close_quietly(h5, path: Path) -> None:
    """Close a file that already failed: its own error is the one to report. One that HDF5
    cannot close stays in `hdf5_left_open`."""
    file_id = h5.id
    try:
        h5.close()
    except (OSError, RuntimeError):
        pass
    if file_id.valid:
        _LEFT_OPEN.append(str(path))


def stamp(h5, provenance: dict) -> None:
    """Record an output's provenance and fingerprint in its HDF5 attributes."""
    h5.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    h5.attrs["fingerprint"] = fingerprint(provenance)


@contextlib.contextmanager
def written(path: str | Path, provenance: dict, copy_of: Path | None = None):
    """An HDF5 output written in one go: yields it open under a temporary name; when the block
    ends without error it is stamped, marked complete and renamed into place, else the
    temporary file is removed and nothing is marked complete. `copy_of`: the temporary file
    starts as a copy of that complete store (its arrays and their checksum), for the block to
    change its attributes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if copy_of is not None:
            shutil.copyfile(copy_of, tmp)
        with open_h5(tmp, "w" if copy_of is None else "r+") as h5:
            yield h5
            stamp(h5, provenance)
            h5.attrs["complete"] = True
        verify_complete(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise write_failed(path, err) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def verify_complete(path: Path) -> None:
    """Reopen a just-written store and read its completion flag back: a write the file system
    lost (a full disk) shows here, before the store is renamed into place."""
    try:
        with h5py.File(path, "r") as h5:
            done = bool(h5.attrs.get("complete", False))
    except OSError as err:
        raise write_failed(path, err) from None
    if not done:
        raise write_failed(path, OSError(0, "the completion flag did not reach the disk"))
