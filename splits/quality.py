"""How well confidence weights find hidden positives: `python -m splits weight-quality PATH`.

For every fold x ratio > 0 of a splits.h5 with ground truth, the estimators see only that
fold's observed training labels; among the observed zeros, `1 - weight` is scored as a
detector of "was a hidden positive": ROC-AUC, average precision and Brier score (calibration),
each as counted and calibrated to the split's ratio (`missing_rate`, see `splits.weights`; the
heads train on the calibrated weights),
the share of hidden positives with no evidence (weight exactly 1) and the time per estimator
(of the calibrated call). For `auto`, the estimator it chose from the observed labels alone
(`splits.weights.choose`), beside the detection the ground truth gives it.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from . import store, weights


def detection(score: np.ndarray, observed: np.ndarray, labels: np.ndarray, metric=roc_auc_score) -> float:
    """`metric` (ROC-AUC by default) of `score` (e.g. 1 - weight) as a detector of the hidden
    positives among the observed zeros; NaN when nothing is hidden."""
    zeros = observed == 0
    target = labels[zeros] == 1
    return float(metric(target, score[zeros])) if target.any() else float("nan")


def weight_quality(path, estimators=None, out: Path | None = None) -> pd.DataFrame:
    sf = store.load(path)
    names = estimators or list(weights.ESTIMATORS)
    rows, curves = [], {}
    for fold in range(sf.n_folds):
        train = sf.train_rows(fold)
        truth = sf.labels[train]
        for protocol in sf.protocols:
            ratio = sf.missing_rate(fold, protocol)
            seen = sf.observed(fold, protocol)[train]
            zeros = seen == 0
            hidden = (truth == 1) & zeros
            if not hidden.any():
                continue
            for name in names:
                w = weights.estimator(name)(seen)
                score, target = 1.0 - w[zeros], hidden[zeros]
                start = time.perf_counter()
                calibrated = 1.0 - weights.estimator(name)(seen, float(ratio))[zeros]
                seconds = time.perf_counter() - start
                choice = weights.choose(seen, float(ratio)).name if name == "auto" else ""
                rows.append({"fold": fold + 1, "protocol": store.protocol_label(protocol), "ratio": ratio,
                             "estimator": name, "choice": choice,
                             "roc_auc": roc_auc_score(target, score), "average_precision": average_precision_score(target, score),
                             "brier": float(np.mean((score - target) ** 2)),
                             "brier_calibrated": float(np.mean((calibrated - target) ** 2)),
                             "roc_auc_calibrated": roc_auc_score(target, calibrated),
                             "average_precision_calibrated": average_precision_score(target, calibrated),
                             "no_evidence_share": float((w[hidden] == 1).mean()), "seconds": seconds})
                if fold == 0 and protocol == "0.5":
                    curves[name] = roc_curve(target, score)[:2]
    table = pd.DataFrame(rows)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False, float_format="%.4f")
        if curves:
            _plot(curves, table, out.with_suffix(".png"))
    return table


def _plot(curves: dict, table: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 5))
    at = table[(table["fold"] == 1) & (table["protocol"] == "0.5")].set_index("estimator")
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {at.loc[name, 'roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate (true negatives flagged)")
    ax.set_ylabel("true positive rate (hidden positives found)")
    ax.set_title("Finding hidden positives, fold 1, ratio 0.5")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
