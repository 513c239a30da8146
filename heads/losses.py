"""The weighted cross-entropy losses, one signature for all.

    loss(logits, targets, pos_weight, neg_weight) -> per-entry loss, same shape as logits

logits, targets (observed labels, 0/1) and neg_weight are (..., n, L); pos_weight is (..., L).
Reduction (the mean over entries, as the paper) is the caller's. The paper's weighted CE is

    -y log(p) pos_w - (1 - y) log(1 - p) neg_w,   p = sigmoid(logit) clipped to [1e-7, 1 - 1e-7],

computed here from logits with softplus (log p = -softplus(-z), log(1 - p) = -softplus(z)),
the clip applied to the logs: equal to the formula everywhere, stable for any logit.

Names: `ce` (paper: CE, negatives weighted 1), `ignore_missing` (IM-WCE: neg_weight =
`splits.weights.im_weights`, the oracle), `confidence` (CB-WCE: neg_weight = `cb_weights`),
and `confidence_<estimator>` for every `splits.weights.ESTIMATORS` entry.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

EPSILON = 1e-7
LOG_LOW, LOG_HIGH = math.log(EPSILON), math.log1p(-EPSILON)


def weighted_ce(logits, targets, pos_weight, neg_weight):
    """The paper's weighted CE per entry (see the module docstring)."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    pos_weight = tf.cast(pos_weight, tf.float32)[..., None, :]
    neg_weight = tf.cast(neg_weight, tf.float32)
    log_p = tf.clip_by_value(-tf.nn.softplus(-logits), LOG_LOW, LOG_HIGH)
    log_not_p = tf.clip_by_value(-tf.nn.softplus(logits), LOG_LOW, LOG_HIGH)
    return -targets * log_p * pos_weight - (1.0 - targets) * log_not_p * neg_weight


def ce(logits, targets, pos_weight, neg_weight):
    """Positive-weighted binary CE: every negative weighs 1 (`neg_weight` is not used)."""
    return weighted_ce(logits, targets, pos_weight, tf.ones_like(tf.cast(neg_weight, tf.float32)))


LOSSES = {"ce": ce, "ignore_missing": weighted_ce, "confidence": weighted_ce}
PAPER_NAMES = {"ce": "CE", "ignore_missing": "IM-WCE", "confidence": "CB-WCE"}


def get(method: str):
    """The loss of a method; `confidence_<estimator>` methods share the weighted CE."""
    if method in LOSSES:
        return LOSSES[method]
    if method.startswith("confidence_"):
        return weighted_ce
    raise ValueError(f"unknown method {method!r}; known: {', '.join(LOSSES)}, confidence_<estimator>")


def display_name(method: str) -> str:
    """The paper's name for tables and plots (CE, IM-WCE, CB-WCE), else CB-WCE[estimator]."""
    if method in PAPER_NAMES:
        return PAPER_NAMES[method]
    return f"CB-WCE[{method.removeprefix('confidence_')}]"


def negative_weights(method: str, labels: np.ndarray, observed: np.ndarray, ratio: float | None = None,
                     natural_missing_rate: float = 0.0) -> np.ndarray:
    """(n, L) float32 negative weights of a method from a fold's training rows.

    The `confidence_<estimator>` weights (splits.weights) expect a share
    1 - (1 - natural_missing_rate) (1 - ratio) of the true positives to be missing: the split's
    simulated ratio on top of what the annotations themselves lack; `ratio=None`: unknown.
    """
    from splits import weights
    if method == "ce":
        return np.ones(observed.shape, np.float32)
    if method == "ignore_missing":
        return weights.im_weights(labels, observed)
    if method == "confidence":
        return weights.cb_weights(observed)
    if method.startswith("confidence_"):
        missing_rate = None if ratio is None else 1 - (1 - natural_missing_rate) * (1 - ratio)
        return weights.estimator(method.removeprefix("confidence_"))(observed, missing_rate)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(LOSSES)}, confidence_<estimator>")


def fold_negative_weights(method: str, labels: np.ndarray, observed: np.ndarray, train: np.ndarray,
                          validation: np.ndarray, ratio: float | None = None,
                          natural_missing_rate: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) negative weights of one fold: one estimate (`negative_weights`)
    over all its rows with observed labels, `train` then `validation` (row indices into the
    (N, L) `labels` / `observed`), split back."""
    known = np.concatenate([train, validation])
    estimate = negative_weights(method, labels[known], observed[known], ratio, natural_missing_rate)
    return estimate[:len(train)], estimate[len(train):]
