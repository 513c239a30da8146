"""Multi-label metrics by the field's names, computed directly (tests compare each with a plain
per-class loop or scikit-learn).

    mAP   mean over classes with a positive of each class's average precision
          (`heads.search.average_precision`, scikit-learn's definition)
    CP    mean over those classes of the class's precision TP / (TP + FP), 0 with no prediction
    CR    mean over those classes of the class's recall TP / (TP + FN)
    CF1   2 CP CR / (CP + CR): the harmonic mean of CP and CR (ML-GCN's and ASL's CF1, not
          the mean of per-class F1)
    OP    overall precision: sum TP / sum (TP + FP) over every class
    OR    overall recall: sum TP / sum (TP + FN)
    OF1   2 OP OR / (OP + OR)
each at four decision rules, the column suffix naming the rule:
    ""         threshold 0.5 (the paper's numbers)
    "_global"  one threshold per run, the one maximising OF1 on the validation rows
    "_class"   one threshold per class, each maximising that class's F1 on the validation rows
    "_top3"    the 3 highest-scoring classes of each row are its predictions (ML-GCN's top-3)
The validation rules use the labels the run's selection used (`heads.search`): the
validation rows' observed labels, or their truth under select = "clean"; never test labels.
Edge-case policy, said once: a class with no positive in the test fold has no recall, AP or
AUC; it is excluded from every class average and counted in `classes_without_positives`.
micro_auc / macro_auc: ROC-AUC over every entry / the mean over classes with both labels.
"""
from __future__ import annotations

import numpy as np

from heads import search


def _safe_div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


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
        thresholds[c] = _best_threshold(truth[:, c], scores[:, c])
    return thresholds


def best_global_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The one threshold maximising OF1 over every entry of (validation) rows; 0.5 without positives."""
    if truth.sum() == 0:
        return 0.5
    return _best_threshold(truth.ravel(), scores.ravel())


def _best_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The score t maximising F1 of `scores >= t` against 0/1 `truth` (the lowest t on ties)."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # predicting down to each distinct score
    tp = np.cumsum(t)[last]
    f1 = 2 * tp / (last + 1 + truth.sum())
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(s[last[best]])


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, L) bool: each row's k highest scores (ties by class order)."""
    k = min(k, scores.shape[1])
    picked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.zeros(scores.shape, bool)
    np.put_along_axis(out, picked, True, axis=1)
    return out


def threshold_metrics(truth: np.ndarray, predicted: np.ndarray, suffix: str = "") -> dict:
    """CP, CR, CF1, OP, OR, OF1 of 0/1 predictions (classes with a positive for the class
    averages), and per-class F1 / TP."""
    has_pos = truth.sum(0) > 0
    tp = (predicted & (truth == 1)).sum(0)
    n_pred, n_true = predicted.sum(0), truth.sum(0)
    precision, recall = _safe_div(tp, n_pred), _safe_div(tp, n_true)
    cp, cr = float(precision[has_pos].mean()), float(recall[has_pos].mean())
    op, o_r = float(_safe_div(tp.sum(), n_pred.sum())), float(_safe_div(tp.sum(), n_true.sum()))
    return {
        f"CP{suffix}": cp, f"CR{suffix}": cr, f"CF1{suffix}": float(_safe_div(2 * cp * cr, cp + cr)),
        f"OP{suffix}": op, f"OR{suffix}": o_r, f"OF1{suffix}": float(_safe_div(2 * op * o_r, op + o_r)),
        f"class_f1{suffix}": _safe_div(2 * tp, n_pred + n_true),
        f"class_tp{suffix}": tp,
    }


def evaluate(truth: np.ndarray, scores: np.ndarray, val_truth=None, val_scores=None) -> dict:
    """Every metric of one run: truth (n, L) 0/1 ground truth, scores (n, L) probabilities;
    val_truth / val_scores (m, L): the validation rows' selection labels and probabilities, for
    the "_global" and "_class" rules."""
    truth = np.asarray(truth).astype(np.int64)
    has_pos = truth.sum(0) > 0
    has_both = has_pos & (truth.sum(0) < len(truth))
    ap = search.average_precision(truth, scores)
    out = threshold_metrics(truth, scores >= 0.5)
    out.update(threshold_metrics(truth, top_k(scores, 3), suffix="_top3"))
    out.update({
        "micro_auc": roc_auc(truth.ravel(), scores.ravel()),
        "macro_auc": float(np.mean([roc_auc(truth[:, c], scores[:, c]) for c in np.flatnonzero(has_both)])),
        "mAP": float(np.nanmean(ap)),
        "class_ap": ap,
        "class_positives": truth.sum(0),
        "classes_without_positives": int((~has_pos).sum()),
    })
    if val_truth is not None and len(val_truth):
        val_truth = np.asarray(val_truth).astype(np.int64)
        threshold = best_global_threshold(val_truth, val_scores)
        thresholds = best_f1_thresholds(val_truth, val_scores)
        out.update(threshold_metrics(truth, scores >= threshold, suffix="_global"))
        out.update(threshold_metrics(truth, scores >= thresholds, suffix="_class"))
        out["threshold_global"] = threshold
        out["class_threshold"] = thresholds
    return out
