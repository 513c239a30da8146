"""Benchmark: vectorised `cb_weights` vs the notebook-style per-sample loop; fold making.

    .venv/bin/python bench/splits.py [--data ../shared/data] [--smoke]

Times `cb_weights` on MSCOCO fold 1 (24,731 x 80) at each ratio, the naive loop of the
definition on a subsample extrapolated to the fold, and `make_folds` on all 33,052 images.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import splits
from bench import tiny
from splits import folds, store, weights


def naive_row(observed: np.ndarray, i: int) -> np.ndarray:
    """One row of the CB weight, the way the published notebook loops: label by label."""
    s = observed[i] == 1
    contains = (observed[:, s] == 1).all(1)
    n_s = contains.sum()
    return np.array([0.0 if s[j] else (n_s - (contains & (observed[:, j] == 1)).sum()) / n_s
                     for j in range(observed.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser()
    tiny.add_arguments(parser)
    parser.add_argument("--naive-rows", type=int, default=200)
    args = parser.parse_args()
    paper_dir = tiny.data_root(args) / "paper_splits" / "labels_balanced_4labels"
    naive_rows = min(args.naive_rows, 20) if args.smoke else args.naive_rows
    tmp = tempfile.TemporaryDirectory()
    sf = store.load(splits.import_to(paper_dir, Path(tmp.name) / "splits.h5"))
    train = sf.train_rows(0)
    print(f"{paper_dir.name} fold 1: {len(train)} training rows x {len(sf.classes)} classes")
    for ratio in sf.ratios:
        observed = sf.observed(0, ratio)[train]
        start = time.perf_counter()
        weights.cb_weights(observed)
        fast = time.perf_counter() - start
        rows = np.random.default_rng(0).choice(len(train), naive_rows, replace=False)
        start = time.perf_counter()
        for i in rows:
            naive_row(observed, i)
        naive = (time.perf_counter() - start) / naive_rows * len(train)
        print(f"ratio {ratio:.2f}: cb_weights {fast:.2f} s (target <= 2 s); naive loop "
              f"{naive:.0f} s extrapolated from {naive_rows} rows; speed-up {naive / fast:.0f}x")
    start = time.perf_counter()
    folds.make_folds(sf.labels, 4, seed=0)
    print(f"make_folds on {len(sf.labels)} x {len(sf.classes)}: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
