"""Dataset adapters: each turns a dataset on disk into a `Manifest`.

A manifest is the label side of a dataset: image keys (int or str), image paths, class names
and the (n_images, n_classes) uint8 0/1 ground-truth matrix, filtered to images with at least
`min_labels` positives. Adapters: `coco`, `nuswide`, `csv`, `synthetic` (see `load`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import synthetic


@dataclass(frozen=True)
class Manifest:
    ids: list  # image keys, int or str, unique
    paths: list[str]  # image file paths ("" when unknown)
    classes: list[str]
    labels: np.ndarray  # (n_images, n_classes) uint8 0/1
    source: str

    def __post_init__(self):
        n = len(self.ids)
        if len(self.paths) != n or self.labels.shape != (n, len(self.classes)):
            raise ValueError(f"{self.source}: {n} ids, {len(self.paths)} paths and labels of shape "
                             f"{self.labels.shape} for {len(self.classes)} classes do not agree")


def check_labels(labels: np.ndarray, ids, classes, source: str) -> np.ndarray:
    """The labels as uint8 after checking they are 0/1 and the ids unique; ValueError if not."""
    values = np.unique(labels)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"{source}: labels must be 0 or 1, found {values[~np.isin(values, [0, 1])][:5]}")
    keys = pd.Index(ids)
    if keys.has_duplicates:
        raise ValueError(f"{source}: duplicate image key {keys[keys.duplicated()][0]!r}; keys must be unique")
    empty = np.flatnonzero(labels.sum(0) == 0)
    if len(empty):
        raise ValueError(f"{source}: class {classes[empty[0]]!r} has no positive image; "
                         "drop it or lower min_labels")
    return labels.astype(np.uint8)


def filter_min_labels(manifest: Manifest, min_labels: int) -> Manifest:
    keep = manifest.labels.sum(1) >= min_labels
    if not keep.any():
        raise ValueError(f"{manifest.source}: no image has at least {min_labels} labels; lower min_labels")
    labels = check_labels(manifest.labels[keep], [manifest.ids[i] for i in np.flatnonzero(keep)],
                          manifest.classes, manifest.source)
    idx = np.flatnonzero(keep)
    return Manifest([manifest.ids[i] for i in idx], [manifest.paths[i] for i in idx],
                    manifest.classes, labels, manifest.source)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist; check the dataset section of your config")
    return path


def from_csv(labels_csv: str | Path, image_root: str | Path = "", path_column: str = "path") -> Manifest:
    """`labels_csv`: a path column, then one 0/1 column per class. Keys are the paths."""
    labels_csv = _require(Path(labels_csv), "labels file")
    frame = pd.read_csv(labels_csv)
    if path_column not in frame.columns:
        raise ValueError(f"{labels_csv}: no column {path_column!r}; columns are {list(frame.columns)[:6]}...")
    classes = [c for c in frame.columns if c != path_column]
    values = frame[classes].to_numpy()
    if not np.issubdtype(values.dtype, np.number) or np.isnan(values.astype(float)).any():
        raise ValueError(f"{labels_csv}: class columns must hold 0 or 1 in every row")
    rel = frame[path_column].astype(str).tolist()
    root = Path(image_root) if image_root else labels_csv.parent
    labels = check_labels(values, rel, classes, str(labels_csv))
    return Manifest(rel, [str(root / p) for p in rel], classes, labels, str(labels_csv))


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


def from_nuswide(root: str | Path, image_root: str | Path) -> Manifest:
    """NUS-WIDE: `ImageList/Imagelist.txt`, `AllTags81.txt` (0/1 rows), `Concepts81.txt`.

    Keys are the image file stems (e.g. `0325_510889886`), as in the published splits.
    """
    root = Path(root)
    listing = _require(root / "ImageList" / "Imagelist.txt", "NUS-WIDE image list")
    tags = _require(root / "AllTags81.txt", "NUS-WIDE tag file")
    concepts = _require(root / "Concepts81.txt", "NUS-WIDE concept list")
    rel = [line.strip().replace("\\", "/") for line in listing.read_text().splitlines() if line.strip()]
    classes = [line.strip() for line in concepts.read_text().splitlines() if line.strip()]
    labels = np.loadtxt(tags, dtype=np.int64, ndmin=2)
    if labels.shape != (len(rel), len(classes)):
        raise ValueError(f"{tags}: shape {labels.shape}, expected ({len(rel)}, {len(classes)}) "
                         f"from {listing} and {concepts}")
    ids = [Path(p).stem for p in rel]
    paths = [str(Path(image_root) / p) for p in rel]
    return Manifest(ids, paths, classes, labels.astype(np.uint8), str(tags))


def load(cfg) -> Manifest:
    """The manifest of the config's dataset, filtered to `min_labels`."""
    ds = cfg.dataset
    if ds.adapter == "synthetic":
        root = ds.root or str(cfg.run_dir / "data")
        manifest = from_csv(synthetic.write(root, ds.n_images, cfg.experiment.seed, ds.image_size))
    elif ds.adapter == "csv":
        manifest = from_csv(ds.annotations, ds.root, ds.path_column)
    elif ds.adapter == "coco":
        manifest = from_coco(ds.annotations, ds.root)
    elif ds.adapter == "nuswide":
        manifest = from_nuswide(ds.annotations, ds.root)
    else:
        raise ValueError(f"unknown dataset adapter {ds.adapter!r}; known: coco, nuswide, csv, synthetic")
    return filter_min_labels(manifest, ds.min_labels)
