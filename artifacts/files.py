"""Files written so that nothing half-written is ever taken for an output: a temporary file of
its own beside the target, renamed over it once complete; the one error for a write that failed
(a full disk, a read-only or failing file system); identities of input files and the
fingerprint of a provenance."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


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


def write_failed(path: str | Path, err: OSError) -> ValueError:
    """The one error for an output that could not be written (a full disk, a read-only or failing
    file system): the file, the cause, the space left there and what to do."""
    path = Path(path)
    cause = os.strerror(err.errno) if err.errno else str(err)
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:,.1f} MiB free there"
    except OSError:
        free = "its folder cannot be read"
    return ValueError(f"{path}: writing failed ({cause}; {free}); nothing was marked complete. Free some "
                      "space "
                      "(or point experiment.runs_dir at another disk) and rerun: the stage starts that file "
                      "again")


def check_space(path: Path, need: int) -> None:
    """ValueError before a long write when the file system of `path` has less free space than
    the `need` bytes it will add (and 16 MiB of slack)."""
    free = shutil.disk_usage(Path(path).parent).free
    if free < need + (16 << 20):
        raise ValueError(f"{path}: the stage will write about {need / 2**20:,.0f} MiB, but only "
                         f"{free / 2**20:,.0f} "
                         "MiB are free there; free some space (or point experiment.runs_dir at another disk) "
                         "and rerun")


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


def remove(path: Path) -> None:
    """Delete an output (file or directory) without opening it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_directory(staging: Path, target: Path) -> None:
    """Rename the complete directory `staging` to `target`. A previous `target` is renamed aside
    first (`.<name>.old-<pid>`, beside it) and removed only once the new one is in place; when
    the second rename fails it is put back. A kill between the two renames leaves the previous
    one aside under that name, for `set_aside` to find."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        remove(old)


def set_aside(target: Path) -> list[Path]:
    """The previous versions of `target` that an interrupted `replace_directory` left aside, the
    most recently set aside first."""
    found = Path(target).parent.glob(f".{glob.escape(Path(target).name)}.old-*")
    return sorted((p for p in found if p.is_dir()), key=lambda p: p.stat().st_ctime, reverse=True)


def writable(directory: str | Path) -> Path:
    """Create `directory` and check a file can be written there, before any long work."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to {directory} ({err.strerror}: {err.filename}); fix its permissions "
                         "or "
                         "change experiment.runs_dir") from None
    return directory
