"""The feature store: one HDF5 file per (dataset, backbone, endpoint, image size, preprocessing).

Datasets:
    features      (n_rows, feat_dim) float16 (or float32), chunked by `chunk_rows` rows
    ids           (n_rows,) utf-8 str, manifest order
    valid         (n_rows,) bool: False where the image could not be read (features are 0)
    error_ids     (n_errors,) utf-8 str, error_messages (n_errors,) utf-8 str
    committed     (n_chunks,) bool: chunk k (rows k*chunk_rows ...) is written (resume marker)
Attributes: backbone, endpoint, pooling, image_size, preprocessing, checkpoint, checkpoint_sha256,
feat_shape, config (JSON), versions (JSON), row_offset / n_total / shard (shards only),
complete (written last).

A shard file holds rows [row_offset, row_offset + n_rows) of the n_total manifest rows;
`merge` joins shards into the single-file layout, byte for byte what one run writes.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")
SHARD_ATTRS = ("row_offset", "n_total", "shard")


def create(path: Path, ids, feat_dim: int, dtype: str, chunk_rows: int, attrs: dict) -> None:
    """Start an empty store (in `path`.tmp until complete) for the given rows."""
    with h5py.File(path, "w") as h5:
        n = len(ids)
        h5.create_dataset("features", shape=(n, feat_dim), dtype=dtype,
                          chunks=(max(1, min(chunk_rows, n)), feat_dim))
        h5.create_dataset("ids", data=np.array([str(i) for i in ids], dtype=object), dtype=STR)
        h5.create_dataset("valid", shape=(n,), dtype=bool)
        h5.create_dataset("committed", shape=(-(-n // chunk_rows),), dtype=bool)
        h5.create_dataset("error_ids", shape=(0,), maxshape=(None,), dtype=STR)
        h5.create_dataset("error_messages", shape=(0,), maxshape=(None,), dtype=STR)
        h5.attrs.update(attrs, chunk_rows=chunk_rows, complete=False)


def pending_chunks(path: Path) -> list[int]:
    with h5py.File(path, "r") as h5:
        return [int(k) for k in np.flatnonzero(~h5["committed"][:])]


def commit_chunk(path: Path, chunk: int, features: np.ndarray, valid: np.ndarray, errors: list) -> None:
    """Write one chunk's (rows, feat_dim) features, validity and errors, then mark it committed."""
    with h5py.File(path, "r+") as h5:
        start = chunk * int(h5.attrs["chunk_rows"])
        h5["features"][start:start + len(features)] = features
        h5["valid"][start:start + len(valid)] = valid
        for key, message in errors:
            for name, value in (("error_ids", key), ("error_messages", message)):
                data = h5[name]
                data.resize((len(data) + 1,))
                data[-1] = value
        h5["committed"][chunk] = True
        h5.flush()


def finish(tmp: Path, path: Path) -> None:
    """Mark complete and move into place; errors are sorted by row so resuming changes nothing."""
    with h5py.File(tmp, "r+") as h5:
        ids = list(h5["ids"].asstr()[:])
        row = {key: i for i, key in enumerate(ids)}
        keys = list(h5["error_ids"].asstr()[:])
        messages = list(h5["error_messages"].asstr()[:])
        order = sorted(range(len(keys)), key=lambda i: row[keys[i]])
        h5["error_ids"][:] = [keys[i] for i in order] if keys else []
        h5["error_messages"][:] = [messages[i] for i in order] if keys else []
        h5.attrs["complete"] = True
    os.replace(tmp, path)


def is_complete(path: Path) -> bool:
    if not path.is_file():
        return False
    with h5py.File(path, "r") as h5:
        return bool(h5.attrs.get("complete", False))


def merge(shards: list[Path], out: Path) -> Path:
    """Join complete shard files (any order) into the single-file layout at `out`."""
    infos = []
    for shard in shards:
        with h5py.File(shard, "r") as h5:
            if not h5.attrs.get("complete", False):
                raise ValueError(f"{shard} is incomplete; finish it (rerun its --shard) before merging")
            if "row_offset" not in h5.attrs:
                raise ValueError(f"{shard} is not a shard (no row_offset attribute)")
            infos.append((int(h5.attrs["row_offset"]), int(h5.attrs["n_total"]), len(h5["ids"]), shard))
    infos.sort()
    n_total = infos[0][1]
    expected = 0
    for offset, total, n, shard in infos:
        if total != n_total or offset != expected:
            raise ValueError(f"{shard}: rows {offset}..{offset + n} do not continue the shards before it "
                             f"(expected row {expected} of {n_total}); are all shards of one run here?")
        expected += n
    if expected != n_total:
        raise ValueError(f"shards cover {expected} of {n_total} rows; missing shards")
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(infos[0][3], "r") as first:
        attrs = {k: v for k, v in first.attrs.items() if k not in SHARD_ATTRS + ("complete",)}
        dim, dtype = first["features"].shape[1], first["features"].dtype
    ids = np.concatenate([_read(s, "ids") for *_, s in infos])
    create(tmp, ids, dim, dtype, int(attrs["chunk_rows"]), attrs)
    with h5py.File(tmp, "r+") as h5:
        for offset, _, n, shard in infos:
            with h5py.File(shard, "r") as part:
                h5["features"][offset:offset + n] = part["features"][:]
                h5["valid"][offset:offset + n] = part["valid"][:]
        error_ids = np.concatenate([_read(s, "error_ids") for *_, s in infos])
        error_messages = np.concatenate([_read(s, "error_messages") for *_, s in infos])
        for name, values in (("error_ids", error_ids), ("error_messages", error_messages)):
            h5[name].resize((len(values),))
            if len(values):
                h5[name][:] = values
        h5["committed"][:] = True
    finish(tmp, out)
    return out


def _read(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5[name].asstr()[:].astype(object)


class FeatureReader:
    """Batched, read-only row access to a complete store; no handle is kept open between calls.

    `rows(index)` -> (len(index), feat_dim) float32, `index` in any order, repeats allowed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not is_complete(self.path):
            raise ValueError(f"{self.path} is missing or incomplete; run `make features` "
                             "(python -m extract features --config C)")
        with h5py.File(self.path, "r") as h5:
            self.ids = h5["ids"].asstr()[:]
            self.valid = h5["valid"][:]
            self.shape = h5["features"].shape
            self.attrs = dict(h5.attrs)

    def rows(self, index) -> np.ndarray:
        unique, inverse = np.unique(np.asarray(index), return_inverse=True)
        with h5py.File(self.path, "r") as h5:
            block = h5["features"][unique]  # h5py reads increasing indices only
        return block[inverse].astype(np.float32)

    def window(self, rows: np.ndarray) -> np.ndarray:
        """Rows (sorted, unique) read as one contiguous slice from the first to the last, then
        picked: the streaming read, sequential on disk. -> (len(rows), feat_dim) float32."""
        with h5py.File(self.path, "r") as h5:
            block = h5["features"][rows[0]:rows[-1] + 1]
        return block[rows - rows[0]].astype(np.float32)

    def all(self) -> np.ndarray:
        """Every row as float32 (n_rows, feat_dim), in file order."""
        with h5py.File(self.path, "r") as h5:
            return h5["features"][:].astype(np.float32)
