"""Dataset adapters: each turns a dataset on disk into a `Manifest`.

A manifest is the label side of a dataset: row keys, image paths ("" where there is no image),
class names and the (n_rows, n_classes) uint8 0/1 ground-truth matrix, with, for three-state
labels (positive, verified negative, unknown: `features.labels`), which labels are known.
Adapters: `coco`,
`nuswide`, `csv`, `synthetic`, and `table` (precomputed features with labels: it reads the
labels that `python -m features import` stored with the features). `load` filters the rows to
at least `min_labels` positives, then drops classes left without a positive; both are counted;
then [dataset] reviewed_labels (a review's labels.csv) replaces the labels of the rows it names.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import artifacts
from features import labels as labels_coding
from features import store as feature_store

from . import synthetic


@dataclass(frozen=True)
class Manifest:
    ids: list  # row keys, int or str, unique
    paths: list[str]  # image file paths ("" when there is no image)
    classes: list[str]
    labels: np.ndarray  # (n_rows, n_classes) uint8 0/1
    source: str
    dropped_rows: int = 0  # rows with fewer than min_labels positives
    dropped_classes: tuple[str, ...] = ()  # classes without a positive among the kept rows
    known: np.ndarray | None = None  # (n_rows, n_classes) bool: the labels whose state is known; None: all

    def __post_init__(self):
        n = len(self.ids)
        shape_ok = self.known is None or self.known.shape == self.labels.shape
        if len(self.paths) != n or self.labels.shape != (n, len(self.classes)) or not shape_ok:
            raise ValueError(f"{self.source}: {n} ids, {len(self.paths)} paths and labels of shape "
                             f"{self.labels.shape} for {len(self.classes)} classes do not agree")


def check_labels(labels: np.ndarray, ids, classes, source: str) -> np.ndarray:
    """The labels as uint8 after checking they are 0/1 and the ids unique; ValueError naming the
    row, column and value if not."""
    bad = ~np.isin(labels, [0, 1])
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{source}: row {ids[i]!r} column {classes[j]!r} holds {labels[i, j].item()!r}; "
                         "labels must be 0 or 1")
    keys = pd.Index(ids)
    if keys.has_duplicates:
        raise ValueError(f"{source}: duplicate key {keys[keys.duplicated()][0]!r}; keys must be unique")
    return labels.astype(np.uint8)


def filter_min_labels(manifest: Manifest, min_labels: int) -> Manifest:
    """Rows with at least `min_labels` positives, then the classes that keep a positive."""
    keep = manifest.labels.sum(1) >= min_labels
    if not keep.any():
        raise ValueError(f"{manifest.source}: no row has at least {min_labels} labels; lower min_labels")
    rows = np.flatnonzero(keep)
    labels = manifest.labels[rows]
    present = labels.sum(0) > 0
    if present.sum() < 2:
        raise ValueError(f"{manifest.source}: {int(present.sum())} class(es) with a positive after "
                         "min_labels = "
                         f"{min_labels} ({len(rows)} rows); multi-label folds and metrics need at least 2 "
                         "classes")
    known = None if manifest.known is None else manifest.known[rows][:, present]
    return Manifest([manifest.ids[i] for i in rows], [manifest.paths[i] for i in rows],
                    [c for c, kept in zip(manifest.classes, present) if kept], labels[:, present],
                    manifest.source,
                    dropped_rows=int((~keep).sum()),
                    dropped_classes=tuple(c for c, kept in zip(manifest.classes, present) if not kept),
                    known=None if known is None or known.all() else known)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist; check the dataset section of your config")
    if path.is_dir() and what.endswith("file"):
        raise ValueError(f"{what} {path} is a directory; point it at the file")
    return path


def _label_values(frame: pd.DataFrame, classes: list[str], ids, source) -> np.ndarray:
    """The class columns as numbers (an empty cell NaN: an unknown label, or an error by the
    coding); ValueError naming the row, column and cell that is not a number."""
    numeric = frame[classes].apply(pd.to_numeric, errors="coerce")
    bad = (numeric.isna() & (frame[classes].astype(str) != "")).to_numpy()
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{source}: row {ids[i]!r} column {classes[j]!r} holds "
                         f"{frame[classes[j]].iloc[i]!r}; "
                         "class columns must hold a label of the coding in every row (dataset.label_coding)")
    return numeric.to_numpy()


def from_csv(labels_csv: str | Path, image_root: str | Path = "", path_column: str = "path",
             coding: str = "0/1",
             id_lists: tuple[str, str] | None = None) -> Manifest:
    """`labels_csv`: a path column, then one column per class holding its label in `coding`
    (`features.labels`); or, with `id_lists` (positive column, negative column), each row's
    positive and verified negative class ids (OpenImages' data.csv; the other classes unknown).
    Keys are the paths relative to the image root, normalised (`./img/a.png` and `img/a.png`
    are one image)."""
    labels_csv = _require(Path(labels_csv), "labels file")
    frame = pd.read_csv(labels_csv, dtype={path_column: str}, keep_default_na=False)
    if path_column not in frame.columns:
        raise ValueError(f"{labels_csv}: no column {path_column!r}; columns are {list(frame.columns)[:6]}...")
    rel = [os.path.normpath(p) for p in frame[path_column].astype(str)]
    if id_lists:
        missing = [c for c in id_lists if c not in frame.columns]
        if missing:
            raise ValueError(f"{labels_csv}: no column {missing[0]!r} (dataset.positive_column / "
                             "negative_column); "
                             f"columns are {list(frame.columns)[:6]}...")
        classes, labels, known = labels_coding.from_id_lists(
            labels_coding.id_lists(frame[id_lists[0]], labels_csv, id_lists[0], rel),
            labels_coding.id_lists(frame[id_lists[1]], labels_csv, id_lists[1], rel), labels_csv, rel)
    else:
        classes = [c for c in frame.columns if c != path_column]
        values = _label_values(frame, classes, rel, labels_csv)
        labels, known = labels_coding.decode(values, coding, labels_csv, rel, classes)
    labels = check_labels(labels, rel, classes, str(labels_csv))
    root = Path(image_root) if image_root else labels_csv.parent
    return Manifest(rel, [str(root / p) for p in rel], classes, labels, str(labels_csv), known=known)


def from_coco(annotations: str | Path, image_root: str | Path) -> Manifest:
    """MSCOCO `instances_*.json`: classes are the 80 categories in category-id order."""
    annotations = _require(Path(annotations), "annotations file")
    with open(annotations) as fh:
        coco = json.load(fh)
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    column = {c["id"]: j for j, c in enumerate(categories)}
    images = sorted(coco["images"], key=lambda im: im["id"])
    row = {im["id"]: i for i, im in enumerate(images)}
    labels = np.zeros((len(images), len(categories)), dtype=np.uint8)
    for ann in coco["annotations"]:
        labels[row[ann["image_id"]], column[ann["category_id"]]] = 1
    ids = [im["id"] for im in images]
    paths = [str(Path(image_root) / im["file_name"]) for im in images]
    return Manifest(ids, paths, [c["name"] for c in categories], labels, str(annotations))


NUSWIDE_FILES = ("ImageList/Imagelist.txt", "AllTags81.txt", "Concepts81.txt")


def from_nuswide(root: str | Path, image_root: str | Path) -> Manifest:
    """NUS-WIDE: `ImageList/Imagelist.txt`, `AllTags81.txt` (0/1 rows), `Concepts81.txt`.

    Keys are the image file stems (e.g. `0325_510889886`), as in the published splits.
    """
    root = Path(root)
    listing, tags, concepts = (_require(root / name, "NUS-WIDE file") for name in NUSWIDE_FILES)
    rel = [line.strip().replace("\\", "/") for line in listing.read_text().splitlines() if line.strip()]
    classes = [line.strip() for line in concepts.read_text().splitlines() if line.strip()]
    labels = np.loadtxt(tags, dtype=np.int64, ndmin=2)
    if labels.shape != (len(rel), len(classes)):
        raise ValueError(f"{tags}: shape {labels.shape}, expected ({len(rel)}, {len(classes)}) "
                         f"from {listing} and {concepts}")
    ids = [Path(p).stem for p in rel]
    paths = [str(Path(image_root) / p) for p in rel]
    return Manifest(ids, paths, classes, check_labels(labels, ids, classes, str(tags)), str(tags))


def from_table(cfg) -> Manifest:
    """The labels an import stored with its features (`python -m features import`)."""
    path = feature_store.path(cfg)
    if not feature_store.is_complete(path):
        raise ValueError(f"{path} does not exist yet: a table dataset's labels come with its features; "
                         "run `python -m features import --config C` (make features) first")
    reader = feature_store.FeatureReader(path)
    reader.check_sources()
    classes, labels, known = reader.labels()
    return Manifest(list(reader.ids), [""] * len(reader.ids), classes, labels, str(path), known=known)


REVIEWED_CODES = {1: "positive", 0: "verified negative", -1: "unknown"}  # `model.review`'s labels.csv


def apply_reviewed(manifest: Manifest, path: str | Path) -> Manifest:
    """The manifest with the labels of a review's labels.csv (`model.review`: a `key` column, then
    one column per class coded 1 positive, 0 verified negative, -1 unknown; keys and class names
    spreadsheet-safe, `artifacts.cells`, the leading quote dropped here) on the rows it names;
    the other rows keep theirs. Its classes must be the manifest's; a key the dataset does not
    have, or a code outside 1 / 0 / -1, is a ValueError naming the file, row and column."""
    path = _require(Path(path), "reviewed labels file")
    frame = pd.read_csv(path, dtype={"key": str}, keep_default_na=False)
    frame.columns = [artifacts.plain(str(c)) for c in frame.columns]  # as written: spreadsheet-safe
    if "key" in frame.columns:
        frame["key"] = [artifacts.plain(key) for key in frame["key"]]
    if "key" not in frame.columns:
        raise ValueError(f"{path}: no 'key' column; a reviewed labels file is python -m model review "
                         "import's "
                         "labels.csv")
    classes = [c for c in frame.columns if c != "key"]
    if sorted(classes) != sorted(manifest.classes):
        other = sorted(set(classes) ^ set(manifest.classes))
        raise ValueError(f"{path}: its classes are not the dataset's (first difference {other[0]!r}); it "
                         "belongs to "
                         "another dataset (dataset.reviewed_labels)")
    values = frame[manifest.classes].apply(pd.to_numeric, errors="coerce").to_numpy()
    bad = ~np.isin(values, list(REVIEWED_CODES))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{path}: row {frame['key'].iloc[i]!r} class {manifest.classes[j]!r} holds "
                         f"{frame[manifest.classes[j]].iloc[i]!r}; codes are 1 (positive), 0 (verified "
                         "negative), "
                         "-1 (unknown)")
    row = {str(key): i for i, key in enumerate(manifest.ids)}
    absent = [key for key in frame["key"] if key not in row]
    if absent:
        raise ValueError(f"{path}: key {absent[0]!r} is no row of the dataset ({len(absent)} of "
                         f"{len(frame)}); "
                         "was it made for another dataset or before a change of min_labels?")
    rows = [row[key] for key in frame["key"]]
    labels = manifest.labels.copy()
    known = np.ones(labels.shape, bool) if manifest.known is None else manifest.known.copy()
    labels[rows] = (values == 1).astype(np.uint8)
    known[rows] = values != -1
    return dataclasses.replace(manifest, labels=labels, known=None if known.all() else known,
                               source=f"{manifest.source} + {path}")


def synthetic_root(cfg) -> Path:
    return Path(cfg.dataset.root or cfg.run_dir / "data")


def source_files(cfg) -> list[Path]:
    """The files a dataset's labels are read from (their hashes enter the splits' provenance)."""
    ds = cfg.dataset
    reviewed = [_require(Path(ds.reviewed_labels), "reviewed labels file")] if ds.reviewed_labels else []
    return _adapter_files(cfg) + reviewed


def _adapter_files(cfg) -> list[Path]:
    ds = cfg.dataset
    if ds.adapter == "synthetic":
        return [synthetic.write(synthetic_root(cfg), ds.n_images, cfg.experiment.seed, ds.image_size,
                                ds.difficulty)]
    if ds.adapter == "nuswide":
        return [_require(Path(ds.annotations) / name, "NUS-WIDE file") for name in NUSWIDE_FILES]
    if ds.adapter == "table":
        return [_require(feature_store.path(cfg), "imported store file")]
    return [_require(Path(ds.annotations), "annotations file")]


def check_inside_root(manifest: Manifest, root: Path, where: str) -> None:
    """ValueError naming the first image whose path leaves `root` (an absolute path elsewhere,
    `..`, or a symbolic link that resolves outside it); [dataset] allow_outside_root = true
    accepts them."""
    top = root.resolve()
    for key, path in zip(manifest.ids, manifest.paths):
        if path and not Path(path).resolve().is_relative_to(top):
            raise ValueError(f"{where}: image {key!r} is {path}, which leads outside the image root {top}; "
                             "move it under the root, or set [dataset] allow_outside_root = true")


def load(cfg) -> Manifest:
    """The manifest of the config's dataset, filtered to `min_labels` (see the module docstring);
    image paths stay inside the image root unless [dataset] allow_outside_root."""
    ds = cfg.dataset
    if ds.adapter == "synthetic":
        manifest = from_csv(source_files(cfg)[0])
    elif ds.adapter == "csv":
        id_lists = (ds.positive_column, ds.negative_column) if ds.positive_column else None
        manifest = from_csv(ds.annotations, ds.root, ds.path_column, ds.label_coding, id_lists)
    elif ds.adapter == "coco":
        manifest = from_coco(ds.annotations, ds.root)
    elif ds.adapter == "nuswide":
        manifest = from_nuswide(ds.annotations, ds.root)
    else:
        manifest = from_table(cfg)
    if ds.adapter in ("csv", "coco", "nuswide") and not ds.allow_outside_root:
        root = Path(ds.root) if ds.root or ds.adapter != "csv" else Path(ds.annotations).parent
        check_inside_root(manifest, root, cfg.source)
    manifest = filter_min_labels(manifest, ds.min_labels)
    return apply_reviewed(manifest, ds.reviewed_labels) if ds.reviewed_labels else manifest
