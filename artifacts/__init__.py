"""Outputs that know what made them: opening, fingerprinting and claiming every stage's files.

Provenance: a flat dict {key: JSON value} of exactly what determines an output (the config
keys it depends on, the fingerprints of the files it read, checkpoint hashes, the versions of
the packages that compute it). It is stored with the output (HDF5 attributes `provenance`, as
JSON, and `fingerprint`, its sha256) and compared when a stage meets an existing output:

    same provenance, complete  -> "already done", reused
    other provenance           -> refused, naming each change (key: old -> new), unless --force
    damaged (not readable)     -> refused with what to do, unless --force
    --force                    -> made anew without opening the old one, which stays until the new
                                  one is complete and replaces it (its temporary files are cleared)

`written` is how a store made in one go is written (a temporary name, renamed once stamped and
complete). `open_h5` is the one way stores are opened: a file that HDF5 cannot read becomes a ValueError
naming it. `claim` takes an exclusive lock beside an output for as long as it is being made: a
second process on the same output is refused with a message (the lock dies with its holder).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import h5py
import numpy as np

FORCE_HINT = "rerun the stage with --force (make ... FORCE=1)"


def fingerprint(provenance: dict) -> str:
    return hashlib.sha256(json.dumps(provenance, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str | Path, sha256: str | None = None) -> dict:
    """What identifies an input file's content: size, modification time and sha256."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256 or file_sha256(path)}


def same_file(path: str | Path, identity: dict) -> bool:
    """Whether `path` still holds the content `identity` (`file_identity`) describes: the same
    size and modification time are taken as the same file (cheap); otherwise the content is
    hashed and compared."""
    path = Path(path)
    if not path.is_file():
        return False
    stat = path.stat()
    if stat.st_size != identity["size"]:
        return False
    return stat.st_mtime_ns == identity["mtime_ns"] or file_sha256(path) == identity["sha256"]


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


def changes(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every key whose value differs (absent keys read as (none))."""
    def show(value):
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{key}: {show(old.get(key, '(none)'))} -> {show(new.get(key, '(none)'))}"
            for key in sorted(set(old) | set(new)) if old.get(key, "(none)") != new.get(key, "(none)")]


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
    cause = io_error(error) if isinstance(error, Exception) else None  # h5py raises OSError, or RuntimeError with errno
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


def write_failed(path: str | Path, err: OSError) -> ValueError:
    """The one error for an output that could not be written (a full disk, a read-only or failing
    file system): the file, the cause, the space left there and what to do."""
    path = Path(path)
    cause = os.strerror(err.errno) if err.errno else str(err)
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:,.1f} MiB free there"
    except OSError:
        free = "its folder cannot be read"
    return ValueError(f"{path}: writing failed ({cause}; {free}); nothing was marked complete. Free some space "
                      "(or point experiment.runs_dir at another disk) and rerun: the stage starts that file again")


def check_space(path: Path, need: int) -> None:
    """ValueError before a long write when the file system of `path` has less free space than
    the `need` bytes it will add (and 16 MiB of slack)."""
    free = shutil.disk_usage(Path(path).parent).free
    if free < need + (16 << 20):
        raise ValueError(f"{path}: the stage will write about {need / 2**20:,.0f} MiB, but only {free / 2**20:,.0f} "
                         "MiB are free there; free some space (or point experiment.runs_dir at another disk) and rerun")


@contextlib.contextmanager
def open_h5(path: str | Path, mode: str = "r"):
    """h5py.File(path, mode), with an HDF5 error turned into a ValueError naming the file: a file
    HDF5 cannot read is damaged; in a writing mode, a failed write or flush (ENOSPC, EROFS,
    EIO) is `write_failed`, the file flushed and closed inside the block so none goes unseen."""
    path = Path(path)
    if mode != "r":
        _WRITING.add(str(path))
        sys.unraisablehook, sys.excepthook = _catch_lost_unraisable, _catch_lost_excepthook
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
        raise ValueError(f"{path} is damaged: HDF5 cannot read it ({err}). Delete it, or {FORCE_HINT}") from None
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
        raise ValueError(f"{path} is damaged: HDF5 failed reading it ({err}). Delete it, or {FORCE_HINT}") from None
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
def written(path: str | Path, provenance: dict):
    """An HDF5 output written in one go: yields it open under a temporary name; when the block
    ends without error it is stamped, marked complete and renamed into place, else the
    temporary file is removed and nothing is marked complete."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open_h5(tmp, "w") as h5:
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


def temp_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty file beside `path` with a name of its own (two writers never share one) and
    the permissions a plain new file gets here (the umask's), to be renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


@contextlib.contextmanager
def replaced(path: str | Path, suffix: str = ".tmp"):
    """Yields a temporary file of its own beside `path` (`temp_beside`), renamed over `path`
    when the block ends without error; removed in any case; a failed write is `write_failed`."""
    path = Path(path)
    try:
        tmp = temp_beside(path, suffix)
    except OSError as err:
        raise write_failed(path, err) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise write_failed(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def save_figure(fig, path: str | Path, **savefig) -> Path:
    """A matplotlib figure saved atomically (`replaced`; its format from the suffix of `path`)."""
    path = Path(path)
    with replaced(path, f".tmp{path.suffix}") as tmp:
        fig.savefig(tmp, **savefig)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """A text file written atomically (`replaced`): nothing is left behind on error."""
    path = Path(path)
    with replaced(path) as tmp:
        tmp.write_text(text)
    return path


def recorded(path: str | Path) -> tuple[bool, dict]:
    """(complete, provenance) of an existing output: an HDF5 file, or a JSON record (`record`)
    of an output in another format; ValueError when it is damaged."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            record = json.loads(path.read_text())
            return bool(record["complete"]), record["provenance"]
        except (ValueError, KeyError) as err:
            raise ValueError(f"{path} is damaged ({err}). Delete it, or {FORCE_HINT}") from None
    with open_h5(path) as h5:
        return bool(h5.attrs.get("complete", False)), json.loads(h5.attrs.get("provenance", "{}"))


def record(path: str | Path, provenance: dict) -> None:
    """The provenance of an output that is not an HDF5 file (a checkpoint), as JSON, written last."""
    write_text(path, json.dumps({"complete": True, "provenance": provenance, "fingerprint": fingerprint(provenance)},
                                sort_keys=True, default=str))


def remove(path: Path) -> None:
    """Delete an output (file or directory) without opening it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def stale_message(path, differences: list[str]) -> str:
    shown = "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more" if len(differences) > 8 else "")
    return (f"{path} was made from other inputs or settings ({shown}). Nothing was reused: "
            f"{FORCE_HINT} to redo it, or change experiment.name to keep both")


def status(path: str | Path, provenance: dict) -> list[str] | None:
    """None when the output is absent or incomplete (to be made), [] when it is complete and made
    from `provenance` (to be reused), else the differences (key: old -> new); ValueError when it
    is damaged."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        complete, before = recorded(path)
    except ValueError as err:
        raise ValueError(str(err).replace(FORCE_HINT, f"{FORCE_HINT} to remake it")) from None
    if not complete:
        return None
    return changes(before, json.loads(json.dumps(provenance, sort_keys=True, default=str)))


def must_make(path: str | Path, provenance: dict, force: bool = False) -> bool:
    """Whether an output must be (re)made: True when it is absent or incomplete, or with `force`
    (the output itself is left in place, unopened, for the new one to replace when complete; a
    temporary `path`.tmp of an earlier attempt is removed, so nothing is resumed); False when it
    is complete and made from the same provenance; ValueError when it is damaged or made from
    another one. `path` is the file holding the record."""
    if force:
        remove(Path(f"{path}.tmp"))
        return True
    differences = status(path, provenance)
    if differences:
        raise ValueError(stale_message(path, differences))
    return differences is None


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


def writable(directory: str | Path) -> Path:
    """Create `directory` and check a file can be written there, before any long work."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to {directory} ({err.strerror}: {err.filename}); fix its permissions or "
                         "change experiment.runs_dir") from None
    return directory


def versions(*names: str) -> dict:
    """Versions of the packages that shape the results (all of them, or `names`), recorded with
    every output. TensorFlow is "tensorflow" whichever wheel (CPU or GPU) provides it."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {"numpy": ("numpy",), "h5py": ("h5py",), "scikit-learn": ("scikit-learn",),
                "iterative-stratification": ("iterative-stratification",),
                "tensorflow": ("tensorflow-cpu", "tensorflow"), "tf-slim": ("tf-slim",), "tf-keras": ("tf-keras",)}
    out = {}
    for name, wheels in packages.items():
        if names and name not in names:
            continue
        for wheel in wheels:
            try:
                out[name] = version(wheel)
                break
            except PackageNotFoundError:
                continue
    return out
