"""The splits store, `splits.h5`: the contract between `splits` and every later stage.

Datasets:
    ids          (N,) utf-8 str      image keys in manifest order
    classes      (L,) utf-8 str
    image_paths  (N,) utf-8 str      "" for imported splits
    labels       (N, L) uint8        ground truth
    test_fold    (N,) int8           0..K-1: the fold whose test set holds the row
    observed     (K, R, N, L) uint8  observed training labels of fold k at ratio r (hidden
                                     positives are 0); rows of fold k's test set hold ground
                                     truth and are never used for training
    validation   (K, N) bool         optional: training rows held out for validation
Attributes: ratios (R,), hidden_share (K, R), seed, n_folds, min_labels, source, config (JSON),
versions (JSON), complete (written last).

Written atomically: a temporary file renamed into place once `complete` is set.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


def write(path: str | Path, *, ids, classes, image_paths, labels, test_fold, observed, ratios,
          hidden_share, seed, min_labels, source, config_json, versions, validation=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, n_classes = labels.shape
    n_folds = int(test_fold.max()) + 1
    assert observed.shape == (n_folds, len(ratios), n, n_classes), observed.shape
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("ids", data=np.array([str(i) for i in ids], dtype=object), dtype=STR)
            h5.create_dataset("classes", data=np.array(classes, dtype=object), dtype=STR)
            h5.create_dataset("image_paths", data=np.array(image_paths, dtype=object), dtype=STR)
            h5.create_dataset("labels", data=labels.astype(np.uint8), compression="gzip")
            h5.create_dataset("test_fold", data=test_fold.astype(np.int8))
            h5.create_dataset("observed", data=observed.astype(np.uint8), compression="gzip",
                              chunks=(1, 1, min(n, 8192), n_classes))
            if validation is not None:
                h5.create_dataset("validation", data=validation.astype(bool))
            h5.attrs.update(ratios=np.asarray(ratios, dtype=np.float64),
                            hidden_share=np.asarray(hidden_share, dtype=np.float64),
                            seed=seed, n_folds=n_folds, min_labels=min_labels, source=source,
                            config=config_json, versions=json.dumps(versions))
            h5.attrs["complete"] = True
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@dataclass(frozen=True)
class SplitsFile:
    """A read-only view of `splits.h5`; the (K, R, N, L) `observed` array is read per slice."""
    path: Path
    ids: np.ndarray  # (N,) str
    classes: list[str]
    image_paths: np.ndarray  # (N,) str
    labels: np.ndarray  # (N, L) uint8
    test_fold: np.ndarray  # (N,) int8
    ratios: np.ndarray  # (R,) float
    hidden_share: np.ndarray  # (K, R)
    attrs: dict

    @property
    def n_folds(self) -> int:
        return int(self.attrs["n_folds"])

    def ratio_index(self, ratio: float) -> int:
        hits = np.flatnonzero(np.isclose(self.ratios, ratio))
        if not len(hits):
            raise ValueError(f"{self.path} has no ratio {ratio}; it has {list(self.ratios)}")
        return int(hits[0])

    def observed(self, fold: int, ratio_index: int) -> np.ndarray:
        """(N, L) uint8 observed labels of one fold and ratio (test rows hold ground truth)."""
        with h5py.File(self.path, "r") as h5:
            return h5["observed"][fold, ratio_index]

    def validation(self, fold: int) -> np.ndarray:
        """(N,) bool validation rows of a fold (all False when the store has none)."""
        with h5py.File(self.path, "r") as h5:
            if "validation" not in h5:
                return np.zeros(len(self.ids), dtype=bool)
            return h5["validation"][fold]

    def train_rows(self, fold: int) -> np.ndarray:
        """(n_train,) row indices fold `fold` trains on (validation rows excluded)."""
        return np.flatnonzero((self.test_fold != fold) & ~self.validation(fold))


def load(path: str | Path) -> SplitsFile:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; run `make splits` (python -m splits make --config C)")
    with h5py.File(path, "r") as h5:
        if not h5.attrs.get("complete", False):
            raise ValueError(f"{path} is incomplete (no complete=True attribute); rerun `make splits`")
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
        return SplitsFile(
            path=path,
            ids=h5["ids"].asstr()[:],
            classes=list(h5["classes"].asstr()[:]),
            image_paths=h5["image_paths"].asstr()[:],
            labels=h5["labels"][:],
            test_fold=h5["test_fold"][:],
            ratios=np.asarray(attrs["ratios"]),
            hidden_share=np.asarray(attrs["hidden_share"]),
            attrs=attrs,
        )
