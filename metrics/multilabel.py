"""Multi-label metrics by the field's names, computed directly (tests compare each with a plain
per-class loop or scikit-learn).

    mAP   mean over classes with a positive of each class's average precision
          (`metrics.ranking.average_precision`, scikit-learn's definition)
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
The thresholds are `metrics.thresholds`' (the final model stores the same). The validation
rules use the labels the run's selection used (`heads.search`): the validation rows' observed
labels, or their truth under select = "clean"; never test labels.
Edge-case policy, said once: a class with no positive in the test fold has no recall, AP or
AUC; it is excluded from every class average and counted in `classes_without_positives`.
Partial-label evaluation (test labels with three states: a dataset that leaves some unknown,
`known`): every metric counts the known test labels only, AP per class over its known entries
(as CSL's AP_partial); a class without a known positive or a known negative is skipped and
counted in `classes_skipped_partial`.
micro_auc / macro_auc: ROC-AUC over every entry / the mean over classes with both labels.
"""
from __future__ import annotations

import numpy as np

from .ranking import average_precision, roc_auc
from .thresholds import best_f1_thresholds, best_global_threshold, top_k


def _safe_div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


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


def evaluate(truth: np.ndarray, scores: np.ndarray, val_truth=None, val_scores=None, known=None,
             val_known=None) -> dict:
    """Every metric of one run: truth (n, L) 0/1 ground truth, scores (n, L) probabilities;
    val_truth / val_scores (m, L): the validation rows' selection labels and probabilities, for
    the "_global" and "_class" rules. `known` (n, L) bool: the test labels a three-state dataset
    knows (the partial-label evaluation, module docstring); `val_known`: the validation labels
    the selection knows (a partial-label protocol)."""
    truth = np.asarray(truth).astype(np.int64)
    if known is not None:
        return _evaluate_partial(truth, scores, np.asarray(known, bool), val_truth, val_scores, val_known)
    has_pos = truth.sum(0) > 0
    has_both = has_pos & (truth.sum(0) < len(truth))
    ap = average_precision(truth, scores)
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
    out.update(_validation_rules(truth, scores, val_truth, val_scores, val_known))
    return out


def _validation_rules(truth, scores, val_truth, val_scores, val_known, known=None) -> dict:
    """The "_global" and "_class" metrics, thresholds chosen on the validation rows."""
    if val_truth is None or not len(val_truth):
        return {}
    val_truth = np.asarray(val_truth).astype(np.int64)
    threshold = best_global_threshold(val_truth, val_scores, val_known)
    thresholds = best_f1_thresholds(val_truth, val_scores, val_known)
    within = np.ones(truth.shape, bool) if known is None else known
    return {**threshold_metrics(truth, (scores >= threshold) & within, suffix="_global"),
            **threshold_metrics(truth, (scores >= thresholds) & within, suffix="_class"),
            "threshold_global": threshold, "class_threshold": thresholds}


def _evaluate_partial(truth, scores, known, val_truth, val_scores, val_known) -> dict:
    """The partial-label evaluation: every metric over the known test labels only; a class
    without a known positive or a known negative has no AP or AUC (skipped, and counted)."""
    positives = (truth == 1) & known
    scored = positives.any(0) & (known & (truth == 0)).any(0)
    ap = average_precision(truth, scores, known)
    ap[~scored] = np.nan
    out = threshold_metrics(truth * known, (scores >= 0.5) & known)
    out.update(threshold_metrics(truth * known, top_k(np.where(known, scores, -np.inf), 3) & known,
                                 suffix="_top3"))
    out.update({
        "micro_auc": roc_auc(truth[known], scores[known]),
        "macro_auc": float(np.mean([roc_auc(truth[known[:, c], c], scores[known[:, c], c])
                                    for c in np.flatnonzero(scored)])),
        "mAP": float(np.nanmean(ap)), "class_ap": ap, "class_positives": positives.sum(0),
        "classes_without_positives": int((~positives.any(0)).sum()),
        "classes_skipped_partial": int((~scored).sum()),
    })
    out.update(_validation_rules(truth * known, scores, val_truth, val_scores, val_known, known))
    return out
