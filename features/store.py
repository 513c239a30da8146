"""The feature store: one HDF5 file per (rows, backbone, endpoint, image size, preprocessing,
pooling), or per imported table. This module owns its contract and its path (`path`).

Datasets:
    features      (n_rows, feat_dim) float16 (or float32), chunked by `chunk_rows` rows; or,
                  in the CSR layout (attribute layout = "csr", sparse imports), the rows as
                  features_data (nnz,) float32, features_indices (nnz,) int32 and
                  features_indptr (n_rows + 1,) int64 (scipy.sparse.csr_matrix's arrays)
    ids           (n_rows,) utf-8 str: the rows' keys (splits.h5 ids; an import's row keys)
    valid         (n_rows,) bool: False where the image could not be read (features are 0)
    error_ids     (n_errors,) utf-8 str, error_messages (n_errors,) utf-8 str
    committed     (n_chunks,) bool: chunk k (rows k*chunk_rows ...) is written (resume marker)
    labels, classes  imported stores only: (n_rows, L) uint8 0/1 and (L,) str, what the table
                  adapter of `splits` reads; labels_known (n_rows, L) bool when the labels have
                  three states (`features.labels`: False where a label is unknown)
Attributes: layout (dense | csr), feat_dim, backbone, endpoint, pooling, image_size,
preprocessing, checkpoint, checkpoint_sha256, feat_shape, config (JSON), versions (JSON),
provenance (JSON) and fingerprint (artifacts), row_offset / n_total / shard (shards
only); imported stores: imported = True, source, source_sha256, labels_source, labels_sha256;
arrays_sha256 (`artifacts.arrays_digest` of `ARRAYS`, written when the store completes; the
reader's `check_data` recomputes it); complete (written last).

A shard file holds rows [row_offset, row_offset + n_rows) of the n_total rows; `merge` joins
shards into the single-file layout, byte for byte what one run writes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse

import artifacts

STR = h5py.string_dtype("utf-8")
SHARD_ATTRS = ("row_offset", "n_total", "shard")
CSR = ("features_data", "features_indices", "features_indptr")
# the arrays a complete store's `arrays_sha256` covers (`finish`, `write_table`; `FeatureReader.check_data`)
ARRAYS = ("features", *CSR, "ids", "valid", "labels", "labels_known", "classes", "error_ids",
          "error_messages")


def tag(cfg) -> str:
    """The store's name for a config: the resolved [extract] settings, or the imported file."""
    if cfg.dataset.adapter == "table":
        return f"imported_{Path(cfg.dataset.features).name.split('.')[0]}"
    ex = cfg.extract
    return f"{ex.backbone}_{ex.endpoint.replace('/', '-')}_{ex.image_size}_{ex.preprocessing}_{ex.pooling}"


def path(cfg, shard: tuple[int, int] = (0, 1)) -> Path:
    """runs/<name>/features/<tag>.h5, or <tag>.shard-<i>-of-<n>.h5 for one of n shards."""
    return shard_path((cfg.run_dir / "features" / tag(cfg)).with_suffix(".h5"), shard)


def shard_path(store: Path, shard: tuple[int, int]) -> Path:
    """The file of shard i of n of the store `store` (<name>.shard-<i>-of-<n>.h5); `store` for (0, 1)."""
    return store if shard[1] == 1 else store.with_name(f"{store.stem}.shard-{shard[0]}-of-{shard[1]}.h5")


def create(path: Path, ids, feat_dim: int, dtype: str, chunk_rows: int, attrs: dict,
           provenance: dict) -> None:
    """Start an empty dense store (in `path`.tmp until complete) for the given rows."""
    with artifacts.open_h5(path, "w") as h5:
        n = len(ids)
        h5.create_dataset("features", shape=(n, feat_dim), dtype=dtype,
                          chunks=(max(1, min(chunk_rows, n)), feat_dim))
        _create_common(h5, ids, chunk_rows)
        h5.attrs.update(attrs, layout="dense", feat_dim=feat_dim, chunk_rows=chunk_rows, complete=False)
        artifacts.stamp(h5, provenance)


def _create_common(h5, ids, chunk_rows: int) -> None:
    n = len(ids)
    h5.create_dataset("ids", data=np.array([str(i) for i in ids], dtype=object), dtype=STR)
    h5.create_dataset("valid", shape=(n,), dtype=bool)
    h5.create_dataset("committed", shape=(-(-n // chunk_rows),), dtype=bool)
    h5.create_dataset("error_ids", shape=(0,), maxshape=(None,), dtype=STR)
    h5.create_dataset("error_messages", shape=(0,), maxshape=(None,), dtype=STR)


def write_table(path: Path, ids, features, labels, classes, attrs: dict, provenance: dict,
                known=None) -> Path:
    """Write an imported store in one go (dense (n, D) array or scipy sparse matrix), with its
    labels (and which are known, for three-state labels), atomically; `features` stay sparse
    when they come sparse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    with artifacts.written(path, provenance) as h5:
        if scipy.sparse.issparse(features):
            csr = scipy.sparse.csr_matrix(features, dtype=np.float32)
            csr.sort_indices()
            for name, values in zip(CSR,
                                    (csr.data, csr.indices.astype(np.int32), csr.indptr.astype(np.int64))):
                h5.create_dataset(name, data=values, compression="gzip")
            layout = "csr"
        else:
            chunk = max(1, min(n, (1 << 22) // max(1, features.shape[1])))
            h5.create_dataset("features", data=np.asarray(features, np.float32),
                              chunks=(chunk, features.shape[1]))
            layout = "dense"
        _create_common(h5, ids, n)
        h5["valid"][:] = True
        h5["committed"][:] = True
        h5.create_dataset("labels", data=labels.astype(np.uint8), compression="gzip")
        if known is not None:
            h5.create_dataset("labels_known", data=np.asarray(known, bool), compression="gzip")
        h5.create_dataset("classes", data=np.array(classes, dtype=object), dtype=STR)
        h5.attrs.update(attrs, layout=layout, feat_dim=features.shape[1], chunk_rows=n, imported=True)
        artifacts.stamp_arrays(h5, ARRAYS)
    return path


def pending_chunks(path: Path) -> list[int]:
    """Chunks not yet committed; errors recorded for their rows by an interrupted commit are
    dropped, so a resumed run records each error once."""
    with artifacts.open_h5(path, "r+") as h5:
        pending = np.flatnonzero(~h5["committed"][:])
        chunk_rows = int(h5.attrs["chunk_rows"])
        ids = h5["ids"].asstr()[:]
        errors = h5["error_ids"].asstr()[:]
        if len(pending) and len(errors):
            row = {key: i for i, key in enumerate(ids)}
            keep = [i for i, key in enumerate(errors) if not np.isin(row[key] // chunk_rows, pending)]
            if len(keep) < len(errors):
                for name in ("error_ids", "error_messages"):
                    values = h5[name].asstr()[:][keep]
                    h5[name].resize((len(keep),))
                    if len(keep):
                        h5[name][:] = values
        return [int(k) for k in pending]


def commit_chunk(path: Path, chunk: int, features: np.ndarray, valid: np.ndarray, errors: list) -> None:
    """Write one chunk's (rows, feat_dim) features, validity and errors, then mark it committed."""
    with artifacts.open_h5(path, "r+") as h5:
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


def errors(path: Path) -> tuple[int, list[tuple[str, str]]]:
    """(invalid rows, the first (id, reason) pairs) of a store being written."""
    with artifacts.open_h5(path) as h5:
        committed = np.repeat(h5["committed"][:], int(h5.attrs["chunk_rows"]))[:len(h5["valid"])]
        invalid = int((committed & ~h5["valid"][:]).sum())
        return invalid, list(zip(h5["error_ids"].asstr()[:5], h5["error_messages"].asstr()[:5]))


def finish(tmp: Path, path: Path, provenance: dict) -> None:
    """Mark complete and move into place; errors are sorted by row so resuming changes nothing."""
    with artifacts.open_h5(tmp, "r+") as h5:
        missing = np.flatnonzero(~h5["committed"][:])
        if len(missing):
            raise ValueError(f"{tmp}: chunk(s) {', '.join(map(str, missing[:5]))} were not written; "
                             "rerun the stage to write them (it resumes)")
        ids = list(h5["ids"].asstr()[:])
        row = {key: i for i, key in enumerate(ids)}
        keys = list(h5["error_ids"].asstr()[:])
        messages = list(h5["error_messages"].asstr()[:])
        order = sorted(range(len(keys)), key=lambda i: row[keys[i]])
        h5["error_ids"][:] = [keys[i] for i in order] if keys else []
        h5["error_messages"][:] = [messages[i] for i in order] if keys else []
        artifacts.stamp(h5, provenance)
        artifacts.stamp_arrays(h5, ARRAYS)
        h5.attrs["complete"] = True
    artifacts.verify_complete(tmp)
    os.replace(tmp, path)


def is_complete(path: Path) -> bool:
    if not path.is_file():
        return False
    with artifacts.open_h5(path) as h5:
        return bool(h5.attrs.get("complete", False))


def merge(shards: list[Path], out: Path) -> Path:
    """Join complete shard files (any order) into the single-file layout at `out`."""
    infos = []
    for shard in shards:
        with artifacts.open_h5(shard) as h5:
            if not h5.attrs.get("complete", False):
                raise ValueError(f"{shard} is incomplete; finish it (rerun its --shard) before merging")
            if "row_offset" not in h5.attrs:
                raise ValueError(f"{shard} is not a shard (no row_offset attribute)")
            infos.append((int(h5.attrs["row_offset"]), int(h5.attrs["n_total"]), len(h5["ids"]), shard,
                          json.loads(h5.attrs["provenance"])))
    infos.sort(key=lambda info: info[0])
    n_total = infos[0][1]
    expected = 0
    for offset, total, n, shard, provenance in infos:
        if total != n_total or offset != expected or provenance != infos[0][4]:
            raise ValueError(f"{shard}: rows {offset}..{offset + n} do not continue the shards before it "
                             f"(expected row {expected} of {n_total} of the same run); are all shards of one "
                             "run here?")
        expected += n
    if expected != n_total:
        raise ValueError(f"shards cover {expected} of {n_total} rows; missing shards")
    tmp = out.with_name(out.name + ".tmp")
    with artifacts.open_h5(infos[0][3]) as first:
        attrs = {k: v for k, v in first.attrs.items()
                 if k not in (*SHARD_ATTRS, "complete", "layout", "feat_dim", "chunk_rows", "provenance",
                              "fingerprint")}
        dim, dtype = first["features"].shape[1], first["features"].dtype
        chunk_rows = int(first.attrs["chunk_rows"])
    ids = np.concatenate([_read(s, "ids") for *_, s, _ in infos])
    create(tmp, ids, dim, dtype, chunk_rows, attrs, infos[0][4])
    with artifacts.open_h5(tmp, "r+") as h5:
        for offset, _, n, shard, _ in infos:
            with artifacts.open_h5(shard) as part:
                h5["features"][offset:offset + n] = part["features"][:]
                h5["valid"][offset:offset + n] = part["valid"][:]
        error_ids = np.concatenate([_read(s, "error_ids") for *_, s, _ in infos])
        error_messages = np.concatenate([_read(s, "error_messages") for *_, s, _ in infos])
        for name, values in (("error_ids", error_ids), ("error_messages", error_messages)):
            h5[name].resize((len(values),))
            if len(values):
                h5[name][:] = values
        h5["committed"][:] = True
    finish(tmp, out, infos[0][4])
    return out


def _read(path: Path, name: str) -> np.ndarray:
    with artifacts.open_h5(path) as h5:
        return h5[name].asstr()[:].astype(object)


def dense(x) -> np.ndarray:
    """Rows as a dense float32 array, whether they were read dense or sparse."""
    return x.toarray() if scipy.sparse.issparse(x) else x


class FeatureReader:
    """Batched, read-only row access to a complete store; no handle is kept open between calls.

    `rows(index)` -> (len(index), feat_dim) float32 dense, `index` in any order, repeats
    allowed; `window(rows)` reads a contiguous run (a CSR matrix in the CSR layout, so sparse
    features stay sparse until `dense` makes a batch); `positions(ids)` maps row keys to rows.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not is_complete(self.path):
            raise ValueError(f"{self.path} is missing or incomplete; run `make features` "
                             "(python -m extract features --config C, or python -m features import)")
        with artifacts.open_h5(self.path) as h5:
            if "valid" not in h5 or "ids" not in h5:
                other = (" It is a splits.h5: `python -m splits describe` reads it."
                         if "observed" in h5 else "")
                raise ValueError(f"{self.path} is not a feature store (it holds "
                                 f"{', '.join(h5) or 'nothing'}).{other}")
            self.ids = h5["ids"].asstr()[:]
            self.valid = h5["valid"][:]
            self.attrs = dict(h5.attrs)
            self.sparse = self.attrs.get("layout", "dense") == "csr"
            self.shape = (len(self.ids), int(self.attrs.get("feat_dim", 0) or h5["features"].shape[1]))
            self.dtype = "float32" if self.sparse else str(h5["features"].dtype)  # as stored

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint", ""))

    def stored_values(self) -> int:
        """How many values the store holds: n_rows x feat_dim dense, the non-zeros in CSR."""
        if not self.sparse:
            return self.shape[0] * self.shape[1]
        with artifacts.open_h5(self.path) as h5:
            return len(h5["features_data"])

    def check_data(self) -> None:
        """ValueError when the store's arrays differ from the checksum written when it was
        completed (damaged on disk; a store from before checksums passes): hashed a block at a
        time, about a second per 500 MB."""
        with artifacts.open_h5(self.path) as h5:
            artifacts.check_arrays(h5, ARRAYS, self.path)

    def check_sources(self) -> None:
        """ValueError when a file an imported store was made from has changed since the import
        (`artifacts.same_file`: size and time, else content), or when the store itself is
        damaged (`check_data`): a stage reading the store would read the wrong data."""
        self.check_data()
        for source, identity in json.loads(self.attrs.get("source_files", "{}")).items():
            if not artifacts.same_file(source, identity):
                raise ValueError(f"{self.path} was imported from {source}, which has changed (or gone) "
                                 "since; "
                                 "rerun the import: make features FORCE=1 (python -m features import "
                                 "--config C "
                                 "--force)")

    def positions(self, ids) -> np.ndarray:
        """(len(ids),) store rows of the given keys; ValueError naming a key the store lacks."""
        index = {key: i for i, key in enumerate(self.ids)}
        missing = [key for key in ids if key not in index]
        if missing:
            raise ValueError(f"{self.path} has no row {missing[0]!r} ({len(missing)} of {len(ids)} keys "
                             "missing); "
                             "rebuild the features for this dataset (make features FORCE=1)")
        return np.fromiter((index[key] for key in ids), dtype=np.int64, count=len(ids))

    def _csr(self, h5, start: int, stop: int) -> scipy.sparse.csr_matrix:
        indptr = h5["features_indptr"][start:stop + 1]
        data = h5["features_data"][indptr[0]:indptr[-1]]
        indices = h5["features_indices"][indptr[0]:indptr[-1]]
        return scipy.sparse.csr_matrix((data, indices, indptr - indptr[0]),
                                       shape=(stop - start, self.shape[1]))

    def window(self, rows: np.ndarray):
        """Rows (sorted, unique) read as one contiguous slice from the first to the last, then
        picked: the streaming read, sequential on disk. -> (len(rows), feat_dim) float32, a CSR
        matrix in the CSR layout."""
        if not len(rows):  # a part without rows: the final model has no held-out ones
            empty = np.zeros((0, self.shape[1]), np.float32)
            return scipy.sparse.csr_matrix(empty) if self.sparse else empty
        with artifacts.open_h5(self.path) as h5:
            if self.sparse:
                return self._csr(h5, int(rows[0]), int(rows[-1]) + 1)[rows - rows[0]]
            block = h5["features"][rows[0]:rows[-1] + 1]
        return block[rows - rows[0]].astype(np.float32)

    def rows(self, index) -> np.ndarray:
        """(len(index), feat_dim) float32 dense rows in the given order."""
        unique, inverse = np.unique(np.asarray(index), return_inverse=True)
        if self.sparse:
            return dense(self.window(unique)[inverse])
        with artifacts.open_h5(self.path) as h5:
            block = h5["features"][unique]  # h5py reads increasing indices only
        return block[inverse].astype(np.float32)

    def labels(self) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """An imported store's (classes, (n_rows, L) uint8 labels, (n_rows, L) bool known or None)."""
        with artifacts.open_h5(self.path) as h5:
            if "labels" not in h5:
                raise ValueError(f"{self.path} holds no labels: it is not an imported store")
            known = h5["labels_known"][:] if "labels_known" in h5 else None
            return list(h5["classes"].asstr()[:]), h5["labels"][:], known
