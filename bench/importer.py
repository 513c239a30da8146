"""Benchmark: importing the real sets (`python -m features import`) against reading each file
with its library alone.

    .venv/bin/python bench/importer.py [--data ../shared/data] [--repeats 3] [--out table.csv] [--smoke]

For each shipped file: rows/s of the library's own read (scipy.io.loadmat, liac-arff, pandas)
and of the whole import (read, checks, recoding, writing the feature store with its
provenance), best of `--repeats`. The import should cost little more than the read it wraps.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import arff
import pandas as pd
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import configs
from bench import tiny
from features import importer, store

SETS = {  # file: (dataset keys, the library's own read)
    "corel5k.mat": ({}, lambda p: scipy.io.loadmat(p)),
    "enron.mat": ({"label_coding": "-1/1"}, lambda p: scipy.io.loadmat(p)),
    "yeast.csv.gz": ({"label_columns": [f"Class{j}" for j in range(1, 15)]}, lambda p: pd.read_csv(p)),
    "emotions.arff": ({"n_labels": 6}, lambda p: liac_arff(p, arff.DENSE)),
    "bibtex.arff": ({"n_labels": 159}, lambda p: liac_arff(p, arff.COO)),
}


def liac_arff(path: Path, kind) -> dict:
    with open(path) as f:
        return arff.load(f, return_type=kind)


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def import_each(configs_: list) -> None:
    """One import per call, each into its own store, so none is skipped as already done."""
    importer.import_features(configs_.pop(), force=True)


def import_config(root: Path, features: Path, keys: dict, trial: int):
    return configs.from_dict({"experiment": {"name": f"bench{trial}", "runs_dir": str(root)},
                              "dataset": {"adapter": "table", "features": str(features), **keys}},
                              source="bench/importer.py")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="", help="also write the table as CSV")
    tiny.add_arguments(parser)
    args = parser.parse_args()
    real = tiny.data_root(args) / "real"
    repeats = 1 if args.smoke else args.repeats
    print(f"{'file':<15} {'rows':>6} {'library rows/s':>15} {'import rows/s':>14} {'import/library':>15}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (keys, library_read) in SETS.items():
            path = real / name
            read = best_of(repeats, partial(library_read, path))
            configs_ = [import_config(Path(tmp), path, keys, trial) for trial in range(repeats)]
            whole = best_of(repeats, partial(import_each, configs_))
            n = store.FeatureReader(store.path(import_config(Path(tmp), path, keys, 0))).shape[0]
            print(f"{name:<15} {n:>6} {n / read:>15,.0f} {n / whole:>14,.0f} {whole / read:>14.2f}x")
            rows.append({"file": name, "rows": n, "library_rows_per_s": n / read,
                         "import_rows_per_s": n / whole,
                         "import_over_library": whole / read})
    if args.out:
        pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
