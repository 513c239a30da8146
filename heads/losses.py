"""The losses of every method in `heads.methods`, one signature for all.

    loss(logits, observed, inputs, **params) -> Terms(loss (h,), corrected (h, n, L) or None)

logits and observed (0/1 observed labels) are (h, n, L): h heads of the same method side by
side, n rows, L classes. `inputs` carries what a method needs besides them, each with the same
leading head axis (`Inputs`); params are the method's parameters (`methods.parameters`).
Every loss is the mean over the n x L entries of its per-entry loss, plus a batch-level term
where the method has one (EPR, ROLE), as Cole et al.'s reference; the references of ASL, Hill
and SPLC sum over entries instead, which only rescales the learning rate. Logs are computed
from logits (log p = -softplus(-z), log(1 - p) = -softplus(z)): finite for any logit, where
the references add an eps (1e-5 in Cole'21 / Zhou'22, a 1e-8 clamp in ASL).

`batch_loss(method, logits, observed, **inputs)` is the public form for one head: (n, L)
logits and observed labels -> scalar, every parameter at its published default unless given.

Notation below: p = sigmoid(z), o = observed label, "P | N": the loss where o = 1 | o = 0.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from runtime.tf_quiet import tf

from . import methods
from .inputs import needs

EPSILON = 1e-7
LOG_LOW, LOG_HIGH = math.log(EPSILON), math.log1p(-EPSILON)


class Inputs(NamedTuple):
    pos_weight: tf.Tensor | None = None  # (h, L) class weights of observed positives
    neg_weight: tf.Tensor | None = None  # (h, n, L) per-entry weights of the o = 0 entries
    epoch: tf.Tensor | int = 1  # 1-based
    estimates: tf.Tensor | None = None  # (h, n, L) ROLE's label estimates, logits
    k: tf.Tensor | None = None  # (h,) expected positives per row (EPR, ROLE)


class Terms(NamedTuple):
    loss: tf.Tensor  # (h,) batch loss per head
    corrected: tf.Tensor | None = None  # (h, n, L) 0/1 float: o = 0 entries taken as positives for good (LL-Cp)


def _log_p(z):
    return -tf.nn.softplus(-z)


def _log_not_p(z):
    return -tf.nn.softplus(z)


def _mean(per_entry):
    return tf.reduce_mean(per_entry, axis=[1, 2])


def _split(observed, positive, negative):
    """The mean over entries of `positive` where o = 1 and `negative` where o = 0."""
    return _mean(observed * positive + (1.0 - observed) * negative)


def weighted_ce(logits, observed, inputs, power=1.0, zero=0.0):
    """The paper's weighted CE: -w+_j log p | -w_ij^power log(1 - p), p clipped to [1e-7, 1 - 1e-7]
    (applied to the logs). w+ = `pos_weight` (1 when absent), w = `neg_weight` (1 when absent:
    plain CE). `zero` (a share of the expected hidden entries set to w = 0) is applied to the
    weights before they reach the loss (`heads.inputs.zero_likely_hidden`)."""
    log_p = tf.clip_by_value(_log_p(logits), LOG_LOW, LOG_HIGH)
    log_not_p = tf.clip_by_value(_log_not_p(logits), LOG_LOW, LOG_HIGH)
    positive = -log_p if inputs.pos_weight is None else -log_p * inputs.pos_weight[:, None, :]
    neg_weight = inputs.neg_weight if inputs.neg_weight is None or power == 1.0 else inputs.neg_weight ** power
    negative = -log_not_p if neg_weight is None else -log_not_p * neg_weight
    return Terms(_split(observed, positive, negative))


def an(logits, observed, inputs, **_):
    """Assume negative: -log p | -log(1 - p)."""
    return Terms(_split(observed, -_log_p(logits), -_log_not_p(logits)))


def an_ls(logits, observed, inputs, epsilon):
    """AN with label smoothing e: -(1-e) log p - e log(1-p) | -(1-e) log(1-p) - e log p."""
    log_p, log_not_p = _log_p(logits), _log_not_p(logits)
    return Terms(_split(observed, -(1 - epsilon) * log_p - epsilon * log_not_p,
                        -(1 - epsilon) * log_not_p - epsilon * log_p))


def wan(logits, observed, inputs, gamma):
    """Weak AN: -log p | -g log(1 - p), g = 1 / (L - 1) by default."""
    gamma = 1.0 / (logits.shape[-1] - 1) if gamma is None else gamma
    return Terms(_split(observed, -_log_p(logits), -gamma * _log_not_p(logits)))


def expected_positives_penalty(probabilities, k):
    """(h,) (mean over rows of sum_j p_ij - k)^2 / L^2: Cole'21's expected-positive regulariser."""
    n_classes = probabilities.shape[-1]
    per_row = tf.reduce_mean(tf.reduce_sum(probabilities, axis=2), axis=1)
    return tf.square(per_row - k) / n_classes ** 2


def _k(inputs, k):
    if k is not None:
        return tf.cast(k, tf.float32)
    if inputs.k is None:
        raise ValueError("this method needs k, the expected number of positives per row (parameter k "
                         "or input k)")
    return tf.cast(inputs.k, tf.float32)


def epr(logits, observed, inputs, k):
    """Expected positive regularisation: -log p | 0, plus the batch term R(p) with k positives."""
    return Terms(_split(observed, -_log_p(logits), 0.0)
                 + expected_positives_penalty(tf.sigmoid(logits), _k(inputs, k)))


def _bce(log_a, log_not_a, target):
    return -target * log_a - (1.0 - target) * log_not_a


def role(logits, observed, inputs, k, lr_mult):
    """Regularised online label estimation (Cole'21), u = sigmoid(estimates), sg = stop gradient:
    per entry 1/2 [o (-log p) + o (-log u)] + 1/2 [BCE(p; sg u) + BCE(u; sg p)] on every entry,
    plus 1/2 [R(p) + R(u)]. `lr_mult` is the estimates' learning-rate factor (the stack's)."""
    if inputs.estimates is None:
        raise ValueError("role needs its label estimates (input estimates, (n, L) logits)")
    k = _k(inputs, k)
    p, u = tf.sigmoid(logits), tf.sigmoid(inputs.estimates)
    log_p, log_not_p = _log_p(logits), _log_not_p(logits)
    log_u, log_not_u = _log_p(inputs.estimates), _log_not_p(inputs.estimates)
    positives = 0.5 * observed * (-log_p - log_u)
    cross = 0.5 * (_bce(log_p, log_not_p, tf.stop_gradient(u)) + _bce(log_u, log_not_u, tf.stop_gradient(p)))
    penalty = 0.5 * (expected_positives_penalty(p, k) + expected_positives_penalty(u, k))
    return Terms(_mean(positives + cross) + penalty)


def em(logits, observed, inputs, alpha):
    """Entropy maximisation (Zhou'22): -log p | -alpha H(p), H(p) = -p log p - (1-p) log(1-p)."""
    p, log_p, log_not_p = tf.sigmoid(logits), _log_p(logits), _log_not_p(logits)
    entropy = -p * log_p - (1.0 - p) * log_not_p
    return Terms(_split(observed, -log_p, -alpha * entropy))


def focal(logits, observed, inputs, gamma):
    """Focal loss (Lin'17): -(1-p)^g log p | -p^g log(1-p)."""
    p = tf.sigmoid(logits)
    return Terms(_split(observed, -((1.0 - p) ** gamma) * _log_p(logits), -(p ** gamma) * _log_not_p(logits)))


def asl(logits, observed, inputs, gamma_pos, gamma_neg, clip):
    """Asymmetric loss (Ridnik'21): -(1-p)^g+ log p | -q^g- log(1-q), q = max(p - clip, 0); the
    focusing weights are constants of the gradient (stop gradient), as the reference's scripts."""
    p = tf.sigmoid(logits)
    shifted = tf.maximum(p - clip, 0.0)
    log_not_shifted = tf.math.log(tf.minimum(1.0 - p + clip, 1.0)) if clip > 0 else _log_not_p(logits)
    positive = -tf.stop_gradient((1.0 - p) ** gamma_pos) * _log_p(logits)
    negative = -tf.stop_gradient(shifted ** gamma_neg) * log_not_shifted
    return Terms(_split(observed, positive, negative))


def hill(logits, observed, inputs, margin, gamma, lam):
    """Hill (Zhang'21): -(1-q)^g log q, q = sigmoid(z - margin) | (lam - p) p^2."""
    q = tf.sigmoid(logits - margin)
    p = tf.sigmoid(logits)
    return Terms(_split(observed, -((1.0 - q) ** gamma) * _log_p(logits - margin), (lam - p) * p ** 2))


def splc(logits, observed, inputs, tau, margin, gamma):
    """Self-paced loss correction (Zhang'21). z' = z - margin where o = 1; from epoch 2 an o = 0
    entry with p > tau is a positive for this batch (z' = z there: no margin). Then focal loss
    on z': -(1-p')^g log p' | -p'^g log(1-p')."""
    shifted = logits - margin * observed
    late = tf.cast(tf.convert_to_tensor(inputs.epoch) >= 2, tf.float32)
    confident = tf.cast(tf.sigmoid(logits) > tau, tf.float32) * (1.0 - observed) * late
    target = tf.stop_gradient(observed + confident)
    p = tf.sigmoid(shifted)
    return Terms(_split(target, -((1.0 - p) ** gamma) * _log_p(shifted), -(p ** gamma) * _log_not_p(shifted)))


def large_loss_count(n_rows, n_classes: int, epoch, delta: float, permanent: bool):
    """Kim'22's k per batch: ceil(n L (t - 1) d) entries (reject / temporary correction), or
    ceil(n L d) from epoch 2 on (permanent correction); 0 in epoch 1. The product is rounded to
    9 decimals before the ceiling so that an exact integer stays one."""
    epoch = tf.cast(epoch, tf.float64)
    delta = tf.constant(delta, tf.float64)
    share = tf.where(epoch >= 2, delta if permanent else (epoch - 1) * delta, tf.constant(0.0, tf.float64))
    total = tf.cast(n_rows * n_classes, tf.float64)
    k = tf.math.ceil(tf.round(total * share * 1e9) / 1e9)
    return tf.cast(tf.minimum(k, total), tf.int32)


def _largest_negative_losses(loss_if_negative, observed, count):
    """(h, n, L) 0/1 float: per head the `count` largest AN losses among its o = 0 entries.
    Float, not bool: TensorFlow's graph optimiser would move a later cast behind the stack's
    transpose, and a bool transpose makes oneDNN log an error line on CPUs without AVX-512."""
    h = tf.shape(observed)[0]
    flat = tf.reshape(tf.where(observed > 0, -math.inf, loss_if_negative), [h, -1])
    _, index = tf.math.top_k(flat, k=count)
    heads = tf.repeat(tf.range(h), count)
    picked = tf.scatter_nd(tf.stack([heads, tf.reshape(index, [-1])], axis=1),
                           tf.ones(h * count, tf.float32), tf.shape(flat))
    return tf.reshape(picked, tf.shape(observed)) * (1.0 - observed)


def _large_loss(logits, observed, inputs, delta, mode):
    """AN; from epoch 2 the k largest losses among o = 0 entries are rejected (loss 0, "reject")
    or taken with target 1 (-log p) for this batch ("temporary") or for good ("permanent")."""
    positive, negative = -_log_p(logits), -_log_not_p(logits)
    count = large_loss_count(tf.shape(logits)[1], logits.shape[-1], inputs.epoch, delta, mode == "permanent")
    picked = _largest_negative_losses(tf.stop_gradient(negative), observed, count)
    kept = observed * positive + (1.0 - observed) * negative
    changed = tf.zeros_like(kept) if mode == "reject" else positive
    loss = _mean(tf.where(picked > 0, changed, kept))
    return Terms(loss, picked if mode == "permanent" else None)


def ll_r(logits, observed, inputs, delta):
    """Large loss rejection (Kim'22)."""
    return _large_loss(logits, observed, inputs, delta, "reject")


def ll_ct(logits, observed, inputs, delta):
    """Large loss correction, temporary (Kim'22)."""
    return _large_loss(logits, observed, inputs, delta, "temporary")


def ll_cp(logits, observed, inputs, delta):
    """Large loss correction, permanent (Kim'22): `corrected` holds the entries that become
    observed positives from now on (the stack keeps them; the reference code's permanent set
    leaves out entries tied with the k-th loss, here the same top-k entries are used)."""
    return _large_loss(logits, observed, inputs, delta, "permanent")


LOSSES = {fn.__name__: fn for fn in (weighted_ce, an, an_ls, wan, epr, role, em, focal, asl, hill, splc,
                                     ll_r, ll_ct, ll_cp)}


def terms(loss: str, logits, observed, inputs: Inputs, params: dict) -> Terms:
    """The Terms of loss function `loss` (a method's `needs(method).loss`) for (h, n, L) logits
    and observed labels, params already resolved."""
    fn = LOSSES[loss]
    logits = tf.convert_to_tensor(logits, tf.float32)
    return fn(logits, tf.cast(observed, tf.float32), inputs, **params)


def batch_loss(method: str, logits, observed, *, pos_weight=None, neg_weight=None, labels=None, epoch=1,
               estimates=None, k=None, **params) -> tf.Tensor:
    """The method's batch loss (scalar) for one head: logits and observed 0/1 labels (n, L).

    pos_weight (L,): the paper's class weights (1 when absent); neg_weight (n, L): the method's
    negative weights (IM-WCE computes them from `labels`, the ground truth, when absent);
    epoch: 1-based; estimates (n, L): ROLE's label estimates as logits; k: expected positives
    per row (EPR, ROLE; else parameter k); params: overrides of the published defaults.
    """
    spec = needs(method)
    params = methods.parameters(method, params)
    if spec.negatives == "oracle" and neg_weight is None:
        if labels is None:
            raise ValueError(f"{method} is an oracle: it needs labels (the ground truth) or neg_weight")
        neg_weight = 1.0 - tf.cast(labels, tf.float32) * (1.0 - tf.cast(observed, tf.float32))
    if spec.negatives and neg_weight is None:
        raise ValueError(f"{method} needs neg_weight, its ({spec.negatives}) negative weights")

    def head(value):
        return None if value is None else tf.convert_to_tensor(value, tf.float32)[None]

    inputs = Inputs(pos_weight=head(pos_weight) if spec.class_weights else None,
                    neg_weight=head(neg_weight) if spec.negatives else None, epoch=epoch,
                    estimates=head(estimates), k=None if k is None else tf.constant([k], tf.float32))
    return terms(spec.loss, tf.convert_to_tensor(logits, tf.float32)[None], tf.convert_to_tensor(observed)[None],
                 inputs, params).loss[0]
