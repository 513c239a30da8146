"""Benchmark: confidence-weight estimators on both published splits (all folds; fold 1 shown).

    .venv/bin/python bench/weights_quality.py [--paper-dir ../shared/data/paper_splits]

Targets (issue): MSCOCO ratio .5 ROC-AUC >= 0.92 and AP >= 0.42, NUS-WIDE ratio .5 ROC-AUC
>= 0.89; at most 5 s per fold x ratio.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import splits
from splits.quality import weight_quality


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paper-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/paper_splits"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for name, folder in (("MSCOCO", "labels_balanced_4labels"), ("NUS-WIDE", "labels_balanced_nus")):
        path = splits.import_to(Path(args.paper_dir) / folder, tmp / f"{folder}.h5")
        table = weight_quality(path, out=tmp / f"{folder}.csv")
        fold1 = table[table["fold"] == 1].pivot(index="estimator", columns="ratio",
                                                  values=["roc_auc", "average_precision", "seconds"])
        print(f"\n{name}, fold 1 (ROC-AUC / AP / seconds per ratio):")
        print(fold1.round(3).to_string())
        calibrated = table[table["fold"] == 1].pivot(index="estimator", columns="ratio",
                                                       values=["roc_auc_calibrated", "average_precision_calibrated"])
        print(f"{name}, fold 1, weights calibrated to the ratio (what the heads train on), ROC-AUC / AP:")
        print(calibrated.round(3).to_string())
        brier = table[table["fold"] == 1].pivot(index="estimator", columns="ratio",
                                                  values=["brier", "brier_calibrated"])
        print(f"{name}, fold 1 Brier score of 1 - weight, as counted and calibrated to the ratio:")
        print(brier.round(4).to_string())
        print(f"slowest estimator call: {table['seconds'].max():.2f} s (target <= 5 s)")


if __name__ == "__main__":
    main()
