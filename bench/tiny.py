"""Stand-ins for `../shared/data` at a few hundred rows, so that `make bench-smoke` runs every
benchmark's code path without the shared data (CI has none).

    root = tiny.shared_data(directory)   # root/real/<the shipped files>, root/paper_splits/<both layouts>

The real sets keep their files' names, formats and keys (MATLAB X / y and data / target coded
-1/1 as (L, N), a CSV with Att* and Class* columns, dense and sparse ARFF with the labels last),
the published splits their layout (`splits.paper`): test / train / negative_weights per fold and
ratio folder, round(r n) positives hidden per training row. Labels come from the synthetic
generator's scenes (co-occurring, at least 3 a row), features are noisy functions of them.
Numbers measured on these files mean nothing: they only show that the code runs.
"""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import arff
import numpy as np
import pandas as pd
import scipy.io

from splits import folds, paper, synthetic

SETS = {"corel5k.mat": 374, "enron.mat": 53, "yeast.csv.gz": 14, "emotions.arff": 6, "bibtex.arff": 159}


def labels(n_rows: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(n_rows, n_classes) uint8: the synthetic scenes' 16 classes tiled over n_classes columns
    (each row's scene labels in one block of 16), at least 3 positives a row."""
    base = synthetic.sample_labels(n_rows, rng)
    out = np.zeros((n_rows, n_classes), np.uint8)
    blocks = max(1, n_classes // base.shape[1])
    offset = rng.integers(0, blocks, n_rows) * base.shape[1]
    for j in range(base.shape[1]):
        column = (offset + j) % n_classes
        out[np.arange(n_rows), column] |= base[:, j]
    return out


def features(y: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    return (y @ rng.normal(0, 1, (y.shape[1], width)) + rng.normal(0, 1, (len(y), width))).astype(np.float32)


def real_sets(directory: Path, n_rows: int = 240, seed: int = 0) -> Path:
    """The five shipped real sets' files, tiny, in `directory`."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    y = {name: labels(n_rows, n_classes, rng) for name, n_classes in SETS.items()}
    scipy.io.savemat(directory / "corel5k.mat",
                     {"X": (features(y["corel5k.mat"], 24, rng) > 0).astype(np.float64),
                                                  "y": y["corel5k.mat"].astype(np.float64)})
    scipy.io.savemat(directory / "enron.mat",
                     {"data": (features(y["enron.mat"], 32, rng) > 0).astype(np.float64),
                                                "target": (2.0 * y["enron.mat"] - 1).T})
    table = pd.DataFrame(features(y["yeast.csv.gz"], 12, rng), columns=[f"Att{j + 1}" for j in range(12)])
    for j in range(14):
        table[f"Class{j + 1}"] = y["yeast.csv.gz"][:, j]
    with gzip.open(directory / "yeast.csv.gz", "wt") as fh:
        table.to_csv(fh, index=False)
    _arff(directory / "emotions.arff", features(y["emotions.arff"], 8, rng), y["emotions.arff"], sparse=False)
    _arff(directory / "bibtex.arff", (features(y["bibtex.arff"], 40, rng) > 1.5).astype(np.float32),
          y["bibtex.arff"], sparse=True)
    return directory


def _arff(path: Path, x: np.ndarray, y: np.ndarray, sparse: bool) -> None:
    """An ARFF file of numeric features then {0,1} labels (MULAN's layout), dense or sparse."""
    attributes = [(f"f{j}", "NUMERIC") for j in range(x.shape[1])] + [(f"label{j}", ["0", "1"])
                                                                       for j in range(y.shape[1])]
    values = np.hstack([x, y]).astype(object)
    values[:, x.shape[1]:] = y.astype(int).astype(str)
    if not sparse:
        path.write_text(arff.dumps({"relation": path.stem, "attributes": attributes,
                                    "data": values.tolist()}))
        return
    header = "\n".join([f"@RELATION {path.stem}"] + [f"@ATTRIBUTE {name} NUMERIC" if kind == "NUMERIC" else
                                                      f"@ATTRIBUTE {name} {{0,1}}" for name,
                                                      kind in attributes]
                       + ["@DATA"])
    rows = ["{" + ", ".join(f"{j} {values[i, j]}" for j in np.flatnonzero(np.hstack([x[i], y[i]]))) + "}"
            for i in range(len(x))]
    path.write_text(header.rstrip() + "\n" + "\n".join(rows) + "\n")


def paper_splits(directory: Path, n_rows: int = 320, n_classes: int = 20, seed: int = 0) -> Path:
    """The published splits' two layouts (labels_balanced_4labels, labels_balanced_nus), tiny."""
    for k, name in enumerate(("labels_balanced_4labels", "labels_balanced_nus")):
        rng = np.random.default_rng([seed, k])
        truth = labels(n_rows, n_classes, rng)
        test_fold = folds.make_folds(truth, 4, seed=seed)
        _layout(directory / name, truth, test_fold, rng)
    return directory


def _layout(root: Path, truth: np.ndarray, test_fold: np.ndarray, rng: np.random.Generator) -> None:
    keys = np.arange(len(truth)).astype(str)
    columns = [f"class{j}" for j in range(truth.shape[1])]
    for folder, ratio in paper.FOLDERS.items():
        out = root / f"missing_labels{folder}"
        out.mkdir(parents=True, exist_ok=True)
        for k in range(4):
            test, train = test_fold == k, test_fold != k
            observed = truth[train].copy()
            for i, row in enumerate(observed):
                positives = np.flatnonzero(row)
                observed[i, rng.choice(positives, int(np.round(ratio * len(positives))), replace=False)] = 0
            weights = 1.0 - ((truth[train] == 1) & (observed == 0))
            for stem, rows, values in ((f"test{k + 1}_{folder}", test, truth[test]),
                                       (f"train{k + 1}_{folder}", train, observed),
                                       (f"negative_weights{k + 1}_{folder}", train, weights)):
                pd.DataFrame(values, index=keys[rows], columns=columns).to_csv(out / f"{stem}.csv.gz")


def shared_data(directory: Path) -> Path:
    """`directory` laid out like ../shared/data: real/ and paper_splits/."""
    real_sets(directory / "real")
    paper_splits(directory / "paper_splits")
    return directory


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_arguments(parser) -> None:
    """--smoke (tiny inputs, the stand-ins below instead of ../shared) and --data (its root)."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny inputs: checks the code runs, measures nothing")
    parser.add_argument("--data", default=str(SHARED), help="the shared data's root (real/, paper_splits/)")


def data_root(args) -> Path:
    """The data a benchmark reads: tiny stand-ins (made in a temporary folder) under --smoke,
    else --data, which must exist."""
    if args.smoke:
        print("smoke run: tiny stand-ins for ../shared/data (bench/tiny.py); the numbers mean nothing")
        return shared_data(Path(tempfile.mkdtemp(prefix="bench-smoke-")))
    root = Path(args.data)
    if not root.is_dir():
        raise SystemExit(f"{root} not found: this benchmark reads the shared data (../shared/data); "
                         "run it with --smoke to check it on tiny stand-ins")
    return root
