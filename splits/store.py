"""The splits store, `splits.h5`: the contract between `splits` and every later stage.

Datasets:
    ids          (N,) utf-8 str      row keys in manifest order
    classes      (L,) utf-8 str
    image_paths  (N,) utf-8 str      "" where there is no image (imported splits, feature tables)
    labels       (N, L) uint8        ground truth
    test_fold    (N,) int8           0..K-1: the fold whose test set holds the row
    observed     (K, P, N, L) uint8  observed training labels of fold k under protocol p (hidden
                                     positives are 0); rows of fold k's test set hold ground
                                     truth and are never used for training
    validation   (K, N) bool         optional: training rows held out for validation
Attributes: protocols (P,) str (`protocol_key`: the ratios, then "single_positive" when on),
ratios (R,), single_positive, missing_rate (K, P) (the share of a training row's true positives
the estimators should expect missing: the ratio, or 1 - 1 / mean true count of the fold's
training rows under single positive), hidden_share (K, P), seed, n_folds, min_labels,
dropped_rows, dropped_classes (JSON), ground_truth (whether `labels` are the truth of every row,
test rows included: what oracle methods read), source, config (JSON), versions (JSON),
provenance (JSON), fingerprint, complete (written last).

Protocols, said once: a ratio r (each training row hides round(r n) of its n positives) is
keyed "0.25" and stored under `ratio0.25` directories; single positive is keyed and stored as
"single_positive" and shown as "single positive". Written atomically: a temporary file renamed
into place once `complete` is set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import artifacts

SINGLE_POSITIVE = "single_positive"


def path(cfg, seed: int | None = None) -> Path:
    """runs/<name>/splits.h5 (or runs/<name>/seed<s>/splits.h5 with [experiment] seeds); the
    first seed's when `seed` is None."""
    return cfg.seed_dir(cfg.seeds[0] if seed is None else seed) / "splits.h5"


def protocol_key(protocol) -> str:
    """The key of a protocol: a ratio as '0.25' (any float-like spelling), or 'single_positive'."""
    if str(protocol) in (SINGLE_POSITIVE, "single", "single positive"):
        return SINGLE_POSITIVE
    try:
        return f"{float(protocol):g}"
    except ValueError:
        raise ValueError(f"{protocol!r} is no protocol: a ratio such as 0.5, or single_positive") from None


def protocol_ratio(key: str) -> float | None:
    return None if key == SINGLE_POSITIVE else float(key)


def protocol_label(key: str) -> str:
    return "single positive" if key == SINGLE_POSITIVE else key


def protocol_dir(key: str) -> str:
    """A protocol's folder: ratio0.25 (two decimals at least, every decimal the ratio has, so two
    ratios never share one), or single_positive."""
    if key == SINGLE_POSITIVE:
        return SINGLE_POSITIVE
    two = f"{float(key):.2f}"
    return f"ratio{two if float(two) == float(key) else key}"


def protocol_order(key: str) -> tuple:
    """Sort key: the ratios ascending, then single positive."""
    return (key == SINGLE_POSITIVE, protocol_ratio(key) or 0.0)


def write(path: str | Path, *, ids, classes, image_paths, labels, test_fold, observed, ratios, single_positive,
          missing_rate, hidden_share, seed, min_labels, source, config_json, versions, provenance,
          validation=None, dropped_rows=0, dropped_classes=(), ground_truth=True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, n_classes = labels.shape
    n_folds = int(test_fold.max()) + 1
    protocols = [protocol_key(r) for r in ratios] + ([SINGLE_POSITIVE] if single_positive else [])
    assert observed.shape == (n_folds, len(protocols), n, n_classes), observed.shape
    arrays = {"ids": np.array([str(i) for i in ids], dtype=object), "classes": np.array(classes, dtype=object),
              "image_paths": np.array(image_paths, dtype=object), "labels": labels.astype(np.uint8),
              "test_fold": test_fold.astype(np.int8), "observed": observed.astype(np.uint8)}
    if validation is not None:
        arrays["validation"] = validation.astype(bool)
    with artifacts.written(path, provenance) as h5:
        artifacts.write_arrays(h5, arrays, {"labels": {"compression": "gzip"},
                                            "observed": {"compression": "gzip", "chunks": (1, 1, min(n, 8192), n_classes)}})
        h5.attrs.update(protocols=protocols, ratios=np.asarray(ratios, dtype=np.float64),
                        single_positive=bool(single_positive),
                        missing_rate=np.asarray(missing_rate, dtype=np.float64),
                        hidden_share=np.asarray(hidden_share, dtype=np.float64),
                        seed=seed, n_folds=n_folds, min_labels=min_labels, source=source,
                        dropped_rows=int(dropped_rows), dropped_classes=json.dumps(list(dropped_classes)),
                        ground_truth=bool(ground_truth),
                        config=config_json, versions=json.dumps(versions))
    return path


ARRAYS = ("ids", "classes", "image_paths", "labels", "test_fold", "observed", "validation")  # under arrays_sha256


@dataclass(frozen=True)
class SplitsFile:
    """A read-only view of `splits.h5`; the (K, P, N, L) `observed` array is read per slice."""
    path: Path
    ids: np.ndarray  # (N,) str
    classes: list[str]
    image_paths: np.ndarray  # (N,) str
    labels: np.ndarray  # (N, L) uint8
    test_fold: np.ndarray  # (N,) int8
    protocols: list[str]  # (P,) protocol keys, the columns of `observed`
    hidden_share: np.ndarray  # (K, P)
    attrs: dict

    @property
    def n_folds(self) -> int:
        return int(self.attrs["n_folds"])

    @property
    def fingerprint(self) -> str:
        return str(self.attrs["fingerprint"])

    @property
    def ground_truth(self) -> bool:
        return bool(self.attrs.get("ground_truth", True))

    @property
    def ratios(self) -> np.ndarray:
        return np.asarray(self.attrs["ratios"], dtype=np.float64)

    def column(self, protocol) -> int:
        key = protocol_key(protocol)
        if key not in self.protocols:
            raise ValueError(f"{self.path} has no protocol {protocol_label(key)!r}; it has "
                             f"{', '.join(map(protocol_label, self.protocols))}")
        return self.protocols.index(key)

    def observed(self, fold: int, protocol) -> np.ndarray:
        """(N, L) uint8 observed labels of one fold and protocol (test rows hold ground truth)."""
        with artifacts.open_h5(self.path) as h5:
            return h5["observed"][fold, self.column(protocol)]

    def missing_rate(self, fold: int, protocol) -> float:
        """The share of a training row's true positives missing from `observed(fold, protocol)`."""
        return float(np.asarray(self.attrs["missing_rate"])[fold, self.column(protocol)])

    def validation(self, fold: int) -> np.ndarray:
        """(N,) bool validation rows of a fold (all False when the store has none)."""
        with artifacts.open_h5(self.path) as h5:
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
    with artifacts.open_h5(path) as h5:
        if "observed" not in h5 or "test_fold" not in h5:
            other = " It is a feature store: `python -m features describe` reads it." if "valid" in h5 else ""
            raise ValueError(f"{path} is not a splits.h5 (it holds {', '.join(h5) or 'nothing'}).{other}")
        if not h5.attrs.get("complete", False):
            raise ValueError(f"{path} is incomplete (no complete=True attribute); rerun `make splits`")
        if "protocols" not in h5.attrs:
            raise ValueError(f"{path} was written by an older version (no protocols attribute); "
                             f"{artifacts.FORCE_HINT} for splits")
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}
        arrays = artifacts.read_arrays(h5, ("ids", "classes", "image_paths", "labels", "test_fold"))
        artifacts.check_arrays(h5, ARRAYS, path, arrays)  # observed and validation hashed from the file
        return SplitsFile(
            path=path,
            ids=arrays["ids"],
            classes=list(arrays["classes"]),
            image_paths=arrays["image_paths"],
            labels=arrays["labels"],
            test_fold=arrays["test_fold"],
            protocols=[str(p) for p in attrs["protocols"]],
            hidden_share=np.asarray(attrs["hidden_share"]),
            attrs=attrs,
        )
