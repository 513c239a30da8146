"""Multi-label metrics, computed directly (tests compare every value with scikit-learn's).

Edge-case policy, said once: a class with no positive in the test fold has no recall, AP or
AUC; it is excluded from every macro average and counted in `classes_without_positives`.
Precision of a class with no predicted positive is 0 (scikit-learn's zero_division=0).
Thresholds: 0.5 (the paper's numbers) and, when validation predictions exist, one threshold per
class chosen to maximise F1 on the validation rows' observed labels (never on test).
"""
from __future__ import annotations

import numpy as np


def _safe_div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """AP of one class: sum over distinct score thresholds of (recall step) x precision."""
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last index of each distinct score
    tp = np.cumsum(truth)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / truth.sum()
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic with tied scores counted half."""
    from scipy.stats import rankdata
    ranks = rankdata(scores)
    n_pos = truth.sum()
    n_neg = len(truth) - n_pos
    return float((ranks[truth == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_f1_thresholds(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(L,) per-class thresholds maximising F1 on (validation) rows; 0.5 for a class without positives."""
    thresholds = np.full(truth.shape[1], 0.5)
    for c in range(truth.shape[1]):
        if truth[:, c].sum() == 0:
            continue
        candidates = np.unique(scores[:, c])
        predicted = scores[:, c][None, :] >= candidates[:, None]
        tp = (predicted & (truth[:, c] == 1)).sum(1)
        f1 = _safe_div(2 * tp, predicted.sum(1) + truth[:, c].sum())
        thresholds[c] = candidates[np.argmax(f1)]
    return thresholds


def threshold_metrics(truth: np.ndarray, predicted: np.ndarray, suffix: str = "") -> dict:
    """Micro and macro precision / recall / F1 of 0/1 predictions, and per-class F1 / TP."""
    has_pos = truth.sum(0) > 0
    tp = (predicted & (truth == 1)).sum(0)
    n_pred, n_true = predicted.sum(0), truth.sum(0)
    precision, recall = _safe_div(tp, n_pred), _safe_div(tp, n_true)
    f1 = _safe_div(2 * tp, n_pred + n_true)
    micro_p, micro_r = _safe_div(tp.sum(), n_pred.sum()), _safe_div(tp.sum(), n_true.sum())
    return {
        f"micro_precision{suffix}": float(micro_p),
        f"micro_recall{suffix}": float(micro_r),
        f"micro_f1{suffix}": float(_safe_div(2 * tp.sum(), n_pred.sum() + n_true.sum())),
        f"macro_precision{suffix}": float(precision[has_pos].mean()),
        f"macro_recall{suffix}": float(recall[has_pos].mean()),
        f"macro_f1{suffix}": float(f1[has_pos].mean()),
        f"class_f1{suffix}": f1,
        f"class_tp{suffix}": tp,
    }


def evaluate(truth: np.ndarray, scores: np.ndarray, val_truth=None, val_scores=None) -> dict:
    """Every metric of one run: truth (n, L) 0/1 ground truth, scores (n, L) probabilities."""
    truth = np.asarray(truth).astype(np.int64)
    has_pos = truth.sum(0) > 0
    has_both = has_pos & (truth.sum(0) < len(truth))
    ap = np.full(truth.shape[1], np.nan)
    for c in np.flatnonzero(has_pos):
        ap[c] = average_precision(truth[:, c], scores[:, c])
    out = threshold_metrics(truth, scores >= 0.5)
    out.update({
        "micro_auc": roc_auc(truth.ravel(), scores.ravel()),
        "macro_auc": float(np.mean([roc_auc(truth[:, c], scores[:, c]) for c in np.flatnonzero(has_both)])),
        "mAP": float(np.nanmean(ap)),
        "class_ap": ap,
        "class_positives": truth.sum(0),
        "classes_without_positives": int((~has_pos).sum()),
    })
    if val_truth is not None and len(val_truth):
        thresholds = best_f1_thresholds(np.asarray(val_truth), val_scores)
        out.update(threshold_metrics(truth, scores >= thresholds, suffix="_valthr"))
        out["class_threshold"] = thresholds
    return out
