"""How well confidence weights find hidden positives: `python -m splits weight-quality PATH`.

For every fold x ratio > 0 of a splits.h5 with ground truth, the estimators see only that
fold's observed training labels; among the observed zeros (on three-state data, those whose
truth the dataset knows), `1 - weight` is scored as a
detector of "was a hidden positive": ROC-AUC, average precision and Brier score (calibration),
each as counted and calibrated to the split's ratio (`missing_rate`, see `splits.weights`; the
heads train on the calibrated weights),
the share of hidden positives with no evidence (weight exactly 1) and the time per estimator
(of the calibrated call). Verified negatives (partial labels): the counted scores are the
estimator's on the observed positives alone; the calibrated ones are the weights as the heads
take them, 1 on every verified negative (so on three-state data under the ratios, where every
known negative is verified, the calibrated detection is perfect by construction). For `auto`,
the estimator it chose from the observed labels alone (`splits.weights.choose`), beside the
detection the ground truth gives it.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

import artifacts

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
            verified = sf.verified_negative(fold, protocol)
            zeros = seen == 0
            if sf.known is not None:
                zeros &= sf.known[train]  # a label the dataset leaves unknown has no truth to score against
            hidden = (truth == 1) & zeros
            if not hidden.any():
                continue
            known = None if verified is None else verified[train]
            for name in names:
                w = weights.estimator(name)(seen)
                score, target = 1.0 - w[zeros], hidden[zeros]
                start = time.perf_counter()
                calibrated = 1.0 - taken_weights(name, seen, float(ratio), known)[zeros]
                seconds = time.perf_counter() - start
                choice = weights.choose(seen, float(ratio)).name if name == "auto" else ""
                rows.append({"fold": fold + 1, "protocol": store.protocol_label(protocol), "ratio": ratio,
                             "estimator": name, "choice": choice,
                             "roc_auc": roc_auc_score(target, score),
                             "average_precision": average_precision_score(target, score),
                             "brier": float(np.mean((score - target) ** 2)),
                             "brier_calibrated": float(np.mean((calibrated - target) ** 2)),
                             "roc_auc_calibrated": roc_auc_score(target, calibrated),
                             "average_precision_calibrated": average_precision_score(target, calibrated),
                             "no_evidence_share": float((w[hidden] == 1).mean()), "seconds": seconds})
                if fold == 0:
                    curves.setdefault(store.protocol_label(protocol), {})[name] = roc_curve(target, score)[:2]
    table = pd.DataFrame(rows)
    if out:
        out = Path(out)
        artifacts.write_text(out, table.to_csv(index=False, float_format="%.4f"))
        if curves:
            _plot(curves, table, out.with_suffix(".png"))
    return table


def taken_weights(name: str, seen: np.ndarray, rate: float,
                  verified_negative: np.ndarray | None) -> np.ndarray:
    """An estimator's calibrated weights as the heads take them: 1 on verified negatives."""
    w = weights.estimator(name)(seen, rate)
    if verified_negative is not None:
        w[verified_negative] = 1.0
    return w


def figure_protocol(labels) -> str:
    """The protocol the ROC figure draws: the ratio nearest 0.5, else single positive."""
    ratios = [p for p in labels if p != store.protocol_label(store.SINGLE_POSITIVE)]
    return min(ratios, key=lambda p: abs(float(p) - 0.5)) if ratios else next(iter(labels))


def _plot(curves: dict, table: pd.DataFrame, path: Path) -> None:
    """ROC curves of fold 1 at `figure_protocol`, whatever ratios the splits hold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    protocol = figure_protocol(curves)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    at = table[(table["fold"] == 1) & (table["protocol"] == protocol)].set_index("estimator")
    for name, (fpr, tpr) in curves[protocol].items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {at.loc[name, 'roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate (true negatives flagged)")
    ax.set_ylabel("true positive rate (hidden positives found)")
    ax.set_title(f"Finding hidden positives, fold 1, {protocol}")
    ax.legend(fontsize=8)
    try:
        artifacts.save_figure(fig, path, dpi=130, bbox_inches="tight")
    finally:
        plt.close(fig)
