"""The splits store, `splits.h5`: the contract between `splits` and every later stage.

Datasets:
    ids          (N,) utf-8 str      row keys in manifest order
    classes      (L,) utf-8 str
    image_paths  (N,) utf-8 str      "" where there is no image (imported splits, feature tables)
    labels       (N, L) uint8        ground truth (1 positive, 0 otherwise)
    labels_known (N, L) bool         only for three-state labels (`features.labels`): False where
                                     the dataset leaves a label unknown
    test_fold    (N,) int8           0..K-1: the fold whose test set holds the row
    observed     (K, P, N, L) uint8  observed training labels of fold k under protocol p: 1 an
                                     observed positive, 0 not observed (a hidden positive, or
                                     under the ratios a negative no one verified), 2 a verified
                                     negative (`NEGATIVE`: partial-label protocols and three-state
                                     data only, so two-state data under the paper's protocols
                                     stays 0/1); rows of fold k's test set hold ground truth (2 on
                                     a three-state dataset's verified negatives) and are never
                                     used for training
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
"single_positive" and shown as "single positive"; the partial-label protocols (positives and
negatives alike, `splits.folds`) are keyed and stored as "partial0.5" (keep a share of each
row's labels), "fpc100" (keep 100 positives and 100 negatives per class) and "rps0.5" (each label
unknown with probability 0.5), shown as "partial 0.5", "fpc 100", "rps 0.5". Their order: the
ratios, single positive, partial, fpc, rps. Written atomically: a temporary file renamed into
place once `complete` is set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import artifacts

SINGLE_POSITIVE = "single_positive"
PARTIAL_KINDS = ("partial", "fpc", "rps")  # the partial-label protocols, keyed <kind><value>
POSITIVE, UNKNOWN, NEGATIVE = 1, 0, 2  # the codes of `observed`


def path(cfg, seed: int | None = None) -> Path:
    """runs/<name>/splits.h5 (or runs/<name>/seed<s>/splits.h5 with [experiment] seeds); the
    first seed's when `seed` is None."""
    return cfg.seed_dir(cfg.seeds[0] if seed is None else seed) / "splits.h5"


def protocol_key(protocol) -> str:
    """The key of a protocol: a ratio as '0.25' (any float-like spelling), 'single_positive', or
    a partial-label protocol as 'partial0.5', 'fpc100', 'rps0.5' (a space or '_' allowed)."""
    text = str(protocol).strip()
    if text in (SINGLE_POSITIVE, "single", "single positive"):
        return SINGLE_POSITIVE
    for kind in PARTIAL_KINDS:
        if text.startswith(kind):
            value = text[len(kind):].strip(" _")
            try:
                return f"{kind}{int(value)}" if kind == "fpc" else f"{kind}{float(value):g}"
            except ValueError:
                break
    try:
        return f"{float(text):g}"
    except ValueError:
        raise ValueError(f"{protocol!r} is no protocol: a ratio such as 0.5, single_positive, partial0.5, "
                         "fpc100 or "
                         "rps0.5") from None


def partial_key(kind: str, value) -> str:
    return protocol_key(f"{kind}{value}")


def protocol_keys(ratios, single_positive: bool, partial=(), fpc=(), rps=()) -> list[str]:
    """The protocols' keys in their order (the columns of `observed`): the ratios, single
    positive, then partial, fpc and rps."""
    return ([protocol_key(r) for r in ratios] + ([SINGLE_POSITIVE] if single_positive else [])
            + [partial_key(kind, v) for kind, values in (("partial", partial), ("fpc", fpc), ("rps", rps))
               for v in values])


def protocol_kind(key: str) -> tuple[str, float]:
    """(kind, value): ("ratio", r), ("single_positive", 0), ("partial" | "fpc" | "rps", value)."""
    if key == SINGLE_POSITIVE:
        return SINGLE_POSITIVE, 0.0
    for kind in PARTIAL_KINDS:
        if key.startswith(kind):
            return kind, float(key[len(kind):])
    return "ratio", float(key)


def protocol_ratio(key: str) -> float | None:
    """A ratio protocol's ratio; None for the others."""
    kind, value = protocol_kind(key)
    return value if kind == "ratio" else None


def protocol_label(key: str) -> str:
    kind, value = protocol_kind(key)
    if kind == "ratio":
        return key
    return "single positive" if kind == SINGLE_POSITIVE else f"{kind} {value:g}"


def protocol_dir(key: str) -> str:
    """A protocol's folder: ratio0.25 (two decimals at least, every decimal the ratio has, so two
    ratios never share one), single_positive, or the partial-label protocol's key."""
    if protocol_kind(key)[0] != "ratio":
        return key
    two = f"{float(key):.2f}"
    return f"ratio{two if float(two) == float(key) else key}"


def protocol_order(key: str) -> tuple:
    """Sort key: the ratios ascending, then single positive, then partial, fpc and rps."""
    kind, value = protocol_kind(key)
    return (("ratio", SINGLE_POSITIVE, *PARTIAL_KINDS).index(kind), value)


def write(path: str | Path, *, ids, classes, image_paths, labels, test_fold, observed, ratios,
          single_positive,
          missing_rate, hidden_share, seed, min_labels, source, config_json, versions, provenance,
          validation=None, dropped_rows=0, dropped_classes=(), ground_truth=True, known=None,
          partial_protocols=()) -> Path:
    """`partial_protocols`: the keys of the partial-label protocols after the ratios and single
    positive; `known`: (N, L) bool, three-state labels' known ones (None: all)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, n_classes = labels.shape
    n_folds = int(test_fold.max()) + 1
    protocols = [protocol_key(r) for r in ratios] + ([SINGLE_POSITIVE] if single_positive else []) + \
        list(partial_protocols)
    assert observed.shape == (n_folds, len(protocols), n, n_classes), observed.shape
    arrays = {"ids": np.array([str(i) for i in ids], dtype=object),
              "classes": np.array(classes, dtype=object),
              "image_paths": np.array(image_paths, dtype=object), "labels": labels.astype(np.uint8),
              "test_fold": test_fold.astype(np.int8), "observed": observed.astype(np.uint8)}
    if validation is not None:
        arrays["validation"] = validation.astype(bool)
    if known is not None:
        arrays["labels_known"] = np.asarray(known, bool)
    with artifacts.written(path, provenance) as h5:
        artifacts.write_arrays(h5, arrays,
                               {"labels": {"compression": "gzip"}, "labels_known": {"compression": "gzip"},
                                            "observed": {"compression": "gzip",
                                                         "chunks": (1, 1, min(n, 8192), n_classes)}})
        h5.attrs.update(protocols=protocols, ratios=np.asarray(ratios, dtype=np.float64),
                        single_positive=bool(single_positive),
                        missing_rate=np.asarray(missing_rate, dtype=np.float64),
                        hidden_share=np.asarray(hidden_share, dtype=np.float64),
                        seed=seed, n_folds=n_folds, min_labels=min_labels, source=source,
                        dropped_rows=int(dropped_rows), dropped_classes=json.dumps(list(dropped_classes)),
                        ground_truth=bool(ground_truth),
                        config=config_json, versions=json.dumps(versions))
    return path


# arrays_sha256
ARRAYS = ("ids", "classes", "image_paths", "labels", "labels_known", "test_fold", "observed", "validation")


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
    known: np.ndarray | None = None  # (N, L) bool: three-state labels' known ones; None: every label known

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

    def states(self, fold: int, protocol) -> np.ndarray:
        """(N, L) uint8 codes of one fold and protocol: 1 observed positive, 2 verified negative, 0
        not observed."""
        with artifacts.open_h5(self.path) as h5:
            return h5["observed"][fold, self.column(protocol)]

    def observed(self, fold: int, protocol) -> np.ndarray:
        """(N, L) uint8 observed positives (0/1) of one fold and protocol (test rows hold ground truth)."""
        states = self.states(fold, protocol)
        return states if states.max(initial=0) <= POSITIVE else (states == POSITIVE).astype(np.uint8)

    def verified_negative(self, fold: int, protocol) -> np.ndarray | None:
        """(N, L) bool verified negatives of one fold and protocol; None when it has none."""
        states = self.states(fold, protocol)
        return states == NEGATIVE if states.max(initial=0) == NEGATIVE else None

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
        arrays = artifacts.read_arrays(h5,
                                       ("ids", "classes", "image_paths", "labels", "labels_known",
                                        "test_fold"))
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
            known=arrays.get("labels_known"),
        )
