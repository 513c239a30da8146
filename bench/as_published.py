"""Benchmark: what the published CB-WCE consists of, next to the method as described.

    .venv/bin/python bench/as_published.py [--config configs/corel5k.toml] [--seeds 0,1,2] [--out DIR]
                                           [--data ../shared/data] [--smoke]

1. On the published splits (fold 1 of MSCOCO and NUS-WIDE, ../shared/data/paper_splits): how
   well the weights single out the hidden positives among a fold's observed zeros -- ROC-AUC and
   AP of 1 - weight, mean weight on hidden positives and on true negatives -- for
   `confidence_notebook` (the CB weight as the notebook computed it: patterns and counts from the
   ground truth of every image), `confidence` (the paper's formula on a fold's observed training
   labels) and `confidence_auto` (this project's estimator, chosen without ground truth).
2. Heads of CE, IM-WCE, CB-WCE, CB-WCE (as published) and CB-WCE[auto] trained through the
   pipeline on a real set (default Corel5k: seeds x 4 folds x the paper's ratios): OR, OP, OF1
   (overall recall, precision, F1 at 0.5) and mAP, each mean and 95% interval over runs; and
   CB-WCE (as published) against IM-WCE, paired by (seed, fold).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import configs
import splits
from analysis import report
from bench import tiny
from features import importer
from heads import inputs as run_inputs
from heads import methods, trainer
from splits import quality, store

METHODS = ["ce", "ignore_missing", "confidence", "confidence_notebook", "confidence_auto"]


def detection(data: Path) -> pd.DataFrame:
    print("Hidden positives among fold 1's observed zeros (published splits): ROC-AUC / AP of 1 - weight, "
          "mean weight on hidden positives / on true negatives")
    rows = []
    for name, folder in (("MSCOCO", "labels_balanced_4labels"), ("NUS-WIDE", "labels_balanced_nus")):
        sf = store.load(splits.import_to(data / "paper_splits" / folder, Path(tempfile.mkdtemp()) / "s.h5"))
        train = sf.train_rows(0)
        for protocol in sf.protocols[1:]:
            observed = sf.observed(0, protocol)
            hidden = (sf.labels[train] == 1) & (observed[train] == 0)
            negative = sf.labels[train] == 0
            for method in ("confidence_notebook", "confidence", "confidence_auto"):
                w = run_inputs.negative_weights(method, sf.labels, observed, train,
                                                sf.missing_rate(0, protocol))
                auc = quality.detection(1 - w, observed[train], sf.labels[train])
                ap = quality.detection(1 - w, observed[train], sf.labels[train], average_precision_score)
                print(f"  {name:8s} {protocol:5s} {methods.display_name(method):22s} {auc:.4f} / {ap:.4f}   "
                      f"{w[hidden].mean():.3f} / {w[negative].mean():.3f}")
                rows.append({"data": name, "protocol": protocol, "method": method, "roc_auc": auc, "ap": ap,
                             "weight_hidden": w[hidden].mean(), "weight_negative": w[negative].mean()})
    return pd.DataFrame(rows)


def heads(config: Path, seeds: list[int], data: Path, smoke: bool) -> Path:
    """The five methods through the pipeline on `config`'s set; the report's folder."""
    raw = tomllib.loads(config.read_text())
    raw["experiment"].update(runs_dir=tempfile.mkdtemp(), seeds=seeds)
    raw["heads"]["methods"] = METHODS
    raw["dataset"]["features"] = str(data / "real" / Path(raw["dataset"]["features"]).name)
    if smoke:
        raw["heads"].update(epochs=1, hidden=[8])
    cfg = configs.from_dict(raw, source=str(config))
    start = time.perf_counter()
    importer.import_features(cfg)
    splits.make(cfg)
    trainer.train(cfg)
    out = report.report(cfg).parent
    print(f"\n{config.name}, {len(seeds)} seed(s) x 4 folds, {time.perf_counter() - start:.0f} s; test "
          "metrics at 0.5:")
    summary = pd.read_csv(out / "summary.csv", dtype={"protocol": str})
    for _, row in summary.iterrows():
        cells = [f"{row[m + ' mean']:.3f} ± {row[m + ' ci95']:.3f}" for m in ("OR", "OP", "OF1", "mAP")]
        print(f"  {row['protocol']:5s} {row['name']:22s} OR {cells[0]}  OP {cells[1]}  OF1 {cells[2]}  "
              f"mAP {cells[3]}")
    print(f"paired tests against CE: {out / 'paired_vs_ce.md'}")
    paired_against(pd.read_csv(out / "runs.csv", dtype={"protocol": str}), "confidence_notebook",
                   "ignore_missing")
    return out


def paired_against(runs: pd.DataFrame, method: str, baseline: str) -> None:
    """`method` minus `baseline` (registry ids) over the (seed, fold) pairs: mean, how many pairs
    favour `method`, two-sided Wilcoxon p."""
    print(f"\n{methods.display_name(method)} against {methods.display_name(baseline)}, paired by (seed, "
          "fold):")
    for protocol in runs["protocol"].unique():
        for metric in ("OR", "OF1", "mAP"):
            values = [runs[(runs["method"] == m) & (runs["protocol"] == protocol)].set_index(["seed",
                                                                                              "fold"])[metric]
                      for m in (method, baseline)]
            diff = (values[0] - values[1]).dropna()
            p = stats.wilcoxon(diff).pvalue if (diff != 0).any() else 1.0
            print(f"  {protocol:5s} {metric:13s} {diff.mean():+.4f}  {(diff > 0).sum()} of {len(diff)} pairs "
                  "higher, "
                  f"p = {p:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config",
                        default=str(Path(__file__).resolve().parents[1] / "configs" / "corel5k.toml"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="", help="a folder for detection.csv and the heads' summary.csv")
    tiny.add_arguments(parser)
    args = parser.parse_args()
    data = tiny.data_root(args)
    table = detection(data)
    seeds = [0] if args.smoke else [int(s) for s in args.seeds.split(",")]
    report_dir = heads(Path(args.config), seeds, data, args.smoke)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "detection.csv", index=False)
        pd.read_csv(report_dir / "summary.csv").to_csv(out / "summary.csv", index=False)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
