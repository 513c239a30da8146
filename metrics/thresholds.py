"""Decision thresholds chosen on validation rows, and top-k predictions (TensorFlow-free).

The study's metrics (`metrics.multilabel`: the "_global", "_class" and "_top3" rules) and the
final model (`model.final`, whose model directory stores the thresholds) choose them here, once:
    best_global_threshold   the one threshold maximising OF1 over every entry
    best_f1_thresholds      per class, the threshold maximising that class's F1
    top_k                   each row's k highest scores
A threshold t predicts `score >= t`; a class without a validation positive keeps 0.5.
"""
from __future__ import annotations

import numpy as np


def best_f1_thresholds(truth: np.ndarray, scores: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """(L,) per-class thresholds maximising F1 on (validation) rows (their `known` labels only,
    when given: partial labels); 0.5 for a class without positives."""
    thresholds = np.full(truth.shape[1], 0.5)
    for c in range(truth.shape[1]):
        rows = slice(None) if known is None else known[:, c]
        if truth[rows, c].sum() == 0:
            continue
        thresholds[c] = _best_threshold(truth[rows, c], scores[rows, c])
    return thresholds


def best_global_threshold(truth: np.ndarray, scores: np.ndarray, known: np.ndarray | None = None) -> float:
    """The one threshold maximising OF1 over every entry of (validation) rows (the `known` ones
    when given); 0.5 without positives."""
    entries = np.ones(truth.shape, bool) if known is None else known
    if truth[entries].sum() == 0:
        return 0.5
    return _best_threshold(truth[entries], scores[entries])


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
