"""Benchmark: suggested missing labels on the paper's published MSCOCO split, against the prior.

    .venv/bin/python bench/suggest.py [--splits mscoco,nuswide] [--ratio 0.5] [--out table.csv]
                                      [--data DIR] [--smoke]

The annotation is fold 1's training rows as published at the ratio (their hidden positives
known from the published ground truth); the published splits come without images or features,
so the suggestions are the confidence estimators' (`model.suggest`, each estimator alone, and
`prior`, the class prior). Per source: precision at 1, 5 and 20 per image (over the images with
a hidden positive), AP over every unobserved entry, and the seconds the scoring took. The
issue's goal: the suggestions above the class prior at every k.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import splits
from bench import tiny
from model import suggest
from splits import weights

FOLDERS = {"mscoco": "labels_balanced_4labels", "nuswide": "labels_balanced_nus"}


def annotation(sf, ratio: float) -> dict:
    """Fold 1's non-test rows as published at `ratio`."""
    rows = np.flatnonzero(sf.test_fold != 0)
    return {"keys": sf.ids[rows], "classes": sf.classes, "observed": sf.observed(0, ratio)[rows],
            "truth": sf.labels[rows], "probabilities": None, "missing_rate": sf.missing_rate(0, ratio)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", default="mscoco,nuswide")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--out", default=None, help="also write the table as CSV")
    tiny.add_arguments(parser)
    args = parser.parse_args()
    root = tiny.data_root(args)
    names = args.splits.split(",")
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = root / "paper_splits" / FOLDERS[name]
            sf = splits.store.load(splits.import_to(folder, Path(tmp) / f"{name}.h5"))
            case = annotation(sf, args.ratio)
            start = time.perf_counter()
            report = suggest.suggest(case, Path(tmp) / f"{name}.csv", estimator="auto")
            seconds = time.perf_counter() - start
            tables.append(report.assign(split=name, ratio=args.ratio, rows=len(case["keys"]),
                                        seconds_all_sources=seconds))
    table = pd.concat(tables, ignore_index=True)
    for name, group in table.groupby("split", sort=False):
        by = group.set_index("source")
        best = by.drop(index="prior")
        for k in suggest.AT:
            print(f"{name} .{str(args.ratio)[2:]}: P@{k} auto {by.loc['auto', f'P@{k}']:.4f}, best estimator "
                  f"{best[f'P@{k}'].max():.4f} ({best[f'P@{k}'].idxmax()}), prior "
                  f"{by.loc['prior', f'P@{k}']:.4f}")
        print(f"{name}: AP auto {by.loc['auto', 'AP']:.4f}, prior {by.loc['prior', 'AP']:.4f}; "
              f"{len(weights.ESTIMATORS)} estimators scored in {group['seconds_all_sources'].iloc[0]:.1f} s")
    if args.out:
        table.to_csv(args.out, index=False, float_format="%.6g")


if __name__ == "__main__":
    main()
