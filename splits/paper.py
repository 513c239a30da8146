"""Import the splits published with the paper into a `splits.h5`.

Layout: `missing_labels{0.0,0.2,0.5,0.8}/{train,test,negative_weights}{k}_{r}.csv[.gz]`,
k = 1..4, first column the image key, then one 0/1 column per class. Folder 0.2 / 0.8 are the
nominal ratios 0.25 / 0.75. The test files give ground truth (identical for every ratio); the
train files give observed labels; `negative_weights` is 0 exactly where a positive was hidden.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

FOLDERS = {"0.0": 0.0, "0.2": 0.25, "0.5": 0.5, "0.8": 0.75}


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".csv", stem + ".csv.gz"):
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"{folder / stem}.csv (or .csv.gz) does not exist; is this the published layout?")


def _read(path: Path, classes: list[str] | None) -> pd.DataFrame:
    frame = pd.read_csv(path, index_col=0, dtype={0: str})
    frame.index = frame.index.astype(str)
    if classes is not None and list(frame.columns) != classes:
        raise ValueError(f"{path}: its class columns differ from the other files'")
    if frame.index.has_duplicates:
        raise ValueError(f"{path}: duplicate image key {frame.index[frame.index.duplicated()][0]!r}")
    values = frame.to_numpy()
    bad = ~np.isin(values, [0, 1])
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{path}: row {frame.index[row]!r} column {frame.columns[col]!r} "
                         f"holds {values[row, col]!r}; labels must be 0 or 1")
    return frame


def _sort_keys(keys) -> list[str]:
    keys = list(keys)
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def import_paper(directory: str | Path, n_folds: int = 4):
    """Read a published split directory. Returns a dict of `splits.store.write` arguments."""
    # the folders, and the ground truth: the test files of ratio 0, which partition the images
    directory = Path(directory)
    folders = [directory / f"missing_labels{name}" for name in FOLDERS]
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"{folder} does not exist; expected missing_labels"
                             f"{{{','.join(FOLDERS)}}}/ under {directory}")
    first = folders[0]
    tests = [_read(_find(first, f"test{k}_0.0"), None) for k in range(1, n_folds + 1)]
    classes = list(tests[0].columns)
    truth = pd.concat(tests)
    if truth.index.has_duplicates:
        key = truth.index[truth.index.duplicated()][0]
        raise ValueError(f"{first}: image {key!r} is in two test folds; test folds must partition the images")
    ids = _sort_keys(truth.index)
    labels = truth.loc[ids].to_numpy(np.uint8)
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    test_fold = np.empty(len(ids), dtype=np.int8)
    for k, test in enumerate(tests):
        test_fold[row_of[test.index].to_numpy()] = k

    # the observed labels of every (fold, ratio), checked against the truth and the weights
    observed = np.empty((n_folds, len(FOLDERS), len(ids), len(classes)), dtype=np.uint8)
    hidden_share = np.zeros((n_folds, len(FOLDERS)))
    published = Published(first, tests, classes, labels, row_of, test_fold)
    for r, (name, folder) in enumerate(zip(FOLDERS, folders)):
        for k in range(n_folds):
            observed[k, r], hidden_share[k, r] = _read_fold(published, folder, name, k)
    return {"ids": ids, "classes": classes, "image_paths": [""] * len(ids), "labels": labels,
            "test_fold": test_fold, "observed": observed, "ratios": list(FOLDERS.values()),
            "hidden_share": hidden_share, "source": f"paper:{directory}"}


class Published(NamedTuple):
    """What every (fold, ratio) file is checked against: the ratio-0 test files and the truth."""
    first: Path  # the missing_labels0.0 folder
    tests: list  # its test files, one DataFrame per fold
    classes: list[str]
    labels: np.ndarray  # (N, L) uint8 ground truth, rows in `row_of` order
    row_of: pd.Series  # image key -> row
    test_fold: np.ndarray  # (N,) int8


def _read_fold(published: Published, folder: Path, name: str, k: int) -> tuple[np.ndarray, float]:
    """(observed labels (N, L): the train file's on training rows, the truth on test rows; the
    share of training positives hidden) of fold k at the ratio of `folder`."""
    labels, classes, row_of = published.labels, published.classes, published.row_of
    test = _read(_find(folder, f"test{k + 1}_{name}"), classes)
    expected = published.tests[k]
    same = test.index.equals(expected.index) and (test.to_numpy() == expected.to_numpy()).all()
    if not same:
        raise ValueError(f"{folder}/test{k + 1}_{name}: differs from {published.first}/test{k + 1}_0.0; "
                         "test files must be identical for every ratio")
    train_path = _find(folder, f"train{k + 1}_{name}")
    train = _read(train_path, classes)
    unknown = train.index.difference(row_of.index)
    if len(unknown):
        raise ValueError(f"{train_path}: image {unknown[0]!r} is in no test fold")
    rows = row_of[train.index].to_numpy()
    expected = np.flatnonzero(published.test_fold != k)
    if len(rows) != len(expected) or (np.sort(rows) != expected).any():
        raise ValueError(f"{train_path}: holds {len(rows)} images, but {len(expected)} are outside "
                         f"test fold {k + 1}; the train file must hold exactly those")
    seen = train.to_numpy(np.uint8)
    wrong = seen > labels[rows]
    if wrong.any():
        i, j = np.argwhere(wrong)[0]
        raise ValueError(f"{train_path}: row {train.index[i]!r} observes {classes[j]!r} as positive, "
                         "but its test file says negative")
    weights_path = _find(folder, f"negative_weights{k + 1}_{name}")
    weights = _read(weights_path, classes).reindex(train.index)
    if weights.isna().any().any():
        raise ValueError(f"{weights_path}: lacks rows of {train_path}")
    hidden = (labels[rows] == 1) & (seen == 0)
    mismatch = hidden != (weights.to_numpy() == 0)
    if mismatch.any():
        i, j = np.argwhere(mismatch)[0]
        raise ValueError(f"{weights_path}: row {train.index[i]!r} class {classes[j]!r} disagrees with "
                         f"the hidden positives of {train_path}")
    observed = labels.copy()
    observed[rows] = seen
    return observed, hidden.sum() / labels[rows].sum()
