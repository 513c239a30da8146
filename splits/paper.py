"""Import the splits published with the paper into a `splits.h5`.

Layout: `missing_labels{0.0,0.2,0.5,0.8}/{train,test,negative_weights}{k}_{r}.csv[.gz]`,
k = 1..4, first column the image key, then one 0/1 column per class. Folder 0.2 / 0.8 are the
nominal ratios 0.25 / 0.75. The test files give ground truth (identical for every ratio); the
train files give observed labels; `negative_weights` is 0 exactly where a positive was hidden.
"""
from __future__ import annotations

from pathlib import Path

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
    truth = truth.loc[ids]
    labels = truth.to_numpy(np.uint8)
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    test_fold = np.empty(len(ids), dtype=np.int8)
    for k, test in enumerate(tests):
        test_fold[row_of[test.index].to_numpy()] = k

    observed = np.empty((n_folds, len(FOLDERS), len(ids), len(classes)), dtype=np.uint8)
    hidden_share = np.zeros((n_folds, len(FOLDERS)))
    for r, (name, folder) in enumerate(zip(FOLDERS, folders)):
        for k in range(n_folds):
            test = _read(_find(folder, f"test{k + 1}_{name}"), classes)
            if not test.index.equals(tests[k].index) or not (test.to_numpy() == tests[k].to_numpy()).all():
                raise ValueError(f"{folder}/test{k + 1}_{name}: differs from {first}/test{k + 1}_0.0; "
                                 "test files must be identical for every ratio")
            train_path = _find(folder, f"train{k + 1}_{name}")
            train = _read(train_path, classes)
            unknown = train.index.difference(row_of.index)
            if len(unknown):
                raise ValueError(f"{train_path}: image {unknown[0]!r} is in no test fold")
            rows = row_of[train.index].to_numpy()
            expected = np.flatnonzero(test_fold != k)
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
            observed[k, r] = labels
            observed[k, r, rows] = seen
            hidden_share[k, r] = hidden.sum() / labels[rows].sum()
    return {"ids": ids, "classes": classes, "image_paths": [""] * len(ids), "labels": labels,
                "test_fold": test_fold, "observed": observed, "ratios": list(FOLDERS.values()),
                "hidden_share": hidden_share, "source": f"paper:{directory}"}
