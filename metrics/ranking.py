"""Ranking metrics: average precision per column (batched over any leading axes), mAP, ROC-AUC.

Said once: AP is scikit-learn's (the sum over distinct scores, from the highest, of the recall
gained there times the precision there; tied scores enter together), NaN for a column without a
positive; mAP is the mean over the columns that have one. With `known` (partial labels) only
the known entries count: the others are ranked below every known one, where they change no
precision at a positive. ROC-AUC is the Mann-Whitney statistic, tied scores counted half.
"""
from __future__ import annotations

import numpy as np


def average_precision(truth: np.ndarray, scores: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """AP of each column: truth (..., n, L) 0/1 and scores (..., n, L) -> (..., L), NaN where a
    column has no positive; `known` (bool, broadcast like truth): only those entries count."""
    truth = np.asarray(truth, np.float64)
    scores = np.asarray(scores, np.float64)
    truth = np.broadcast_to(truth, scores.shape)
    if known is not None:
        known = np.broadcast_to(np.asarray(known, bool), scores.shape)
        truth = np.where(known, truth, 0.0)
        scores = np.where(known, scores, -np.inf)
    order = np.argsort(-scores, axis=-2, kind="stable")
    s = np.take_along_axis(scores, order, axis=-2)
    t = np.take_along_axis(truth, order, axis=-2)
    n = s.shape[-2]
    # the last row of each run of tied scores closes a threshold
    last = np.ones(s.shape, bool)
    last[..., :-1, :] = s[..., 1:, :] != s[..., :-1, :]
    tp = np.cumsum(t, axis=-2)
    positives = tp[..., -1, :]
    # tp at the previous closing row: the running maximum of closing rows' tp, shifted one row
    closed = np.maximum.accumulate(np.where(last, tp, 0.0), axis=-2)
    previous = np.concatenate([np.zeros_like(closed[..., :1, :]), closed[..., :-1, :]], axis=-2)
    seen = np.arange(1, n + 1, dtype=np.float64)[:, None]
    gained = np.where(last, tp - previous, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (gained * tp / seen).sum(axis=-2) / positives
    return np.where(positives > 0, ap, np.nan)


def ranked_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """`average_precision` of one long ranking, truth (m,) bool and scores (m,), NaN without a
    positive: the same sum, over the closing rows of tied runs only, in a few arrays of m (the
    batched form holds a dozen)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    ranked = np.asarray(scores, np.float64)[order]
    tp = np.cumsum(np.asarray(truth, bool)[order], dtype=np.int64)
    del order
    closing = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    del ranked
    if not len(tp) or tp[-1] == 0:
        return float("nan")
    at = tp[closing]
    gained = np.diff(at, prepend=0)
    return float((gained * (at / (closing + 1.0))).sum() / tp[-1])


def mean_average_precision(truth: np.ndarray, scores: np.ndarray,
                           known: np.ndarray | None = None) -> np.ndarray:
    """mAP: the mean of `average_precision` over columns with a positive, (...,); `known`: over
    the known entries only."""
    ap = average_precision(truth, scores, known)
    counted = ~np.isnan(ap)
    return np.where(counted.any(-1), np.nansum(ap, -1) / np.maximum(counted.sum(-1), 1), np.nan)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (n,), tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return ((last - counts + 1 + last) / 2.0)[inverse]


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of 0/1 `truth` (n,) against `scores` (n,): the Mann-Whitney statistic, ties half."""
    truth = np.asarray(truth)
    ranks = average_ranks(np.asarray(scores, np.float64))
    n_pos = truth.sum()
    n_neg = len(truth) - n_pos
    return float((ranks[truth == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
