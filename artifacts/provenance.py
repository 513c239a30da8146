"""Provenance: a flat dict {key: JSON value} of exactly what determines an output (the config
keys it depends on, the fingerprints of the files it read, checkpoint hashes, the versions of
the packages that compute it). It is stored with the output (HDF5 attributes `provenance`, as
JSON, and `fingerprint`, its sha256; a JSON record beside an output of another format) and
compared when a stage meets an existing output:

    same provenance, complete  -> "already done", reused
    other provenance           -> refused, naming each change (key: old -> new), unless --force
    damaged (not readable)     -> refused with what to do, unless --force
    --force                    -> made anew without opening the old one, which stays until the new
                                  one is complete and replaces it (its temporary files are cleared)
"""
from __future__ import annotations

import json
from pathlib import Path

from .files import fingerprint, remove, write_text
from .hdf5 import FORCE_HINT, open_h5


def changes(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every key whose value differs (absent keys read as (none))."""
    def show(value):
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{key}: {show(old.get(key, '(none)'))} -> {show(new.get(key, '(none)'))}"
            for key in sorted(set(old) | set(new)) if old.get(key, "(none)") != new.get(key, "(none)")]


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
    write_text(path,
               json.dumps({"complete": True, "provenance": provenance,
                           "fingerprint": fingerprint(provenance)},
                                sort_keys=True, default=str))


def stale_message(path, differences: list[str]) -> str:
    shown = "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more"
                                          if len(differences) > 8 else "")
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


def versions(*names: str) -> dict:
    """Versions of the packages that shape the results (all of them, or `names`), recorded with
    every output. TensorFlow is "tensorflow" whichever wheel (CPU or GPU) provides it."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {"numpy": ("numpy",), "h5py": ("h5py",), "scikit-learn": ("scikit-learn",),
                "iterative-stratification": ("iterative-stratification",),
                "tensorflow": ("tensorflow-cpu", "tensorflow"), "tf-slim": ("tf-slim",),
                "tf-keras": ("tf-keras",)}
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
