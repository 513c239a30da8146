"""The losses of every method in `heads.methods`, one signature for all.

    loss(logits, observed, inputs, **params) -> Terms(loss (h,), corrected (h, n, L) or None)

logits and observed (0/1 observed labels) are (h, n, L): h heads of the same method side by
side, n rows, L classes. `inputs` carries what a method needs besides them, each with the same
leading head axis (`Inputs`); params are the method's parameters (`methods.parameters`).

Three states. An o = 0 entry is unknown, unless `inputs.verified_negative` marks it a verified
negative (partial labels: `splits.store`). A verified negative is a negative for every method:
where a method treats o = 0 as plain negatives (AN, AN-LS, focal, ASL, Hill, the weighted CE,
whose weights are 1 there) it keeps its negative term; where it treats them as uncertain it
takes -log(1 - p) instead (WAN's weight, EPR's nothing, ROLE's estimate, EM's entropy, GR's
robust term, EM+APL's and Score-PL's pseudo-labels), and it is never a candidate for
correction (SPLC, the large-loss methods, CSL's selection). Without `verified_negative` (two-state
data) every loss is what it was.
Every loss is the mean over the n x L entries of its per-entry loss, plus a batch-level term
where the method has one (EPR, ROLE), as Cole et al.'s reference; the references of ASL, Hill,
SPLC, CSL and EM+APL sum over entries (EM+APL: divided by n L) instead, which only rescales the
learning rate. Logs are computed
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
    verified_negative: tf.Tensor | None = None  # (h, n, L) 0/1: verified negatives among the o = 0 entries
    prior: tf.Tensor | None = None  # (h, L) class prior (CSL's prior rule)
    pseudo: tf.Tensor | None = None  # (h, n, L) 0/1: Score-PL's pseudo-positives among the o = 0 entries
    pseudo_negative: tf.Tensor | None = None  # (h, n, L) EM+APL's soft pseudo-negative targets, -1 where none


class Terms(NamedTuple):
    loss: tf.Tensor  # (h,) batch loss per head
    # (h, n, L) 0/1 float: o = 0 entries taken as positives for good (LL-Cp)
    corrected: tf.Tensor | None = None


def _log_p(z):
    return -tf.nn.softplus(-z)


def _log_not_p(z):
    return -tf.nn.softplus(z)


def _mean(per_entry):
    return tf.reduce_mean(per_entry, axis=[1, 2])


def _split(observed, positive, negative):
    """The mean over entries of `positive` where o = 1 and `negative` where o = 0."""
    return _mean(observed * positive + (1.0 - observed) * negative)


def _verified(inputs, unknown, logits):
    """An o = 0 entry's loss: -log(1 - p) on verified negatives, `unknown` on the others."""
    if inputs.verified_negative is None:
        return unknown
    return tf.where(inputs.verified_negative > 0, -_log_not_p(logits), unknown)


def _unknown(observed, inputs):
    """(h, n, L) 0/1: the entries neither observed positive nor verified negative."""
    unknown = 1.0 - observed
    return unknown if inputs.verified_negative is None else unknown * (1.0 - inputs.verified_negative)


def weighted_ce(logits, observed, inputs, power=1.0, zero=0.0):
    """The paper's weighted CE: -w+_j log p | -w_ij^power log(1 - p), p clipped to [1e-7, 1 - 1e-7]
    (applied to the logs). w+ = `pos_weight` (1 when absent), w = `neg_weight` (1 when absent:
    plain CE). `zero` (a share of the expected hidden entries set to w = 0) is applied to the
    weights before they reach the loss (`heads.inputs.zero_likely_hidden`)."""
    log_p = tf.clip_by_value(_log_p(logits), LOG_LOW, LOG_HIGH)
    log_not_p = tf.clip_by_value(_log_not_p(logits), LOG_LOW, LOG_HIGH)
    positive = -log_p if inputs.pos_weight is None else -log_p * inputs.pos_weight[:, None, :]
    neg_weight = inputs.neg_weight
    if neg_weight is not None and power != 1.0:
        neg_weight = neg_weight ** power
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
    return Terms(_split(observed, -_log_p(logits), _verified(inputs, -gamma * _log_not_p(logits), logits)))


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
    return Terms(_split(observed, -_log_p(logits), _verified(inputs, 0.0, logits))
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
    if inputs.verified_negative is not None:  # a verified negative: target 0, and its estimate 0 (untouched)
        cross = tf.where(inputs.verified_negative > 0, -log_not_p, cross)
        u = u * (1.0 - inputs.verified_negative)
    penalty = 0.5 * (expected_positives_penalty(p, k) + expected_positives_penalty(u, k))
    return Terms(_mean(positives + cross) + penalty)


def em(logits, observed, inputs, alpha):
    """Entropy maximisation (Zhou'22): -log p | -alpha H(p), H(p) = -p log p - (1-p) log(1-p)."""
    p, log_p, log_not_p = tf.sigmoid(logits), _log_p(logits), _log_not_p(logits)
    entropy = -p * log_p - (1.0 - p) * log_not_p
    return Terms(_split(observed, -log_p, _verified(inputs, -alpha * entropy, logits)))


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
    confident = tf.cast(tf.sigmoid(logits) > tau, tf.float32) * _unknown(observed, inputs) * late
    target = tf.stop_gradient(observed + confident)
    p = tf.sigmoid(shifted)
    return Terms(_split(target, -((1.0 - p) ** gamma) * _log_p(shifted), -(p ** gamma) * _log_not_p(shifted)))


def large_loss_count(n_rows, n_classes: int, epoch, delta: float, permanent: bool, verified=None):
    """Kim'22's k per batch: ceil(n L (t - 1) d) entries (reject / temporary correction), or
    ceil(n L d) from epoch 2 on (permanent correction); 0 in epoch 1. The product is rounded to
    9 decimals before the ceiling so that an exact integer stays one. `verified` (h,): each
    head's verified negatives in the batch, which leave n L (as mlcpl counts its entries):
    then one k per head."""
    epoch = tf.cast(epoch, tf.float64)
    delta = tf.constant(delta, tf.float64)
    share = tf.where(epoch >= 2, delta if permanent else (epoch - 1) * delta, tf.constant(0.0, tf.float64))
    total = tf.cast(n_rows * n_classes, tf.float64)
    if verified is not None:
        total = total - tf.cast(verified, tf.float64)
    k = tf.math.ceil(tf.round(total * share * 1e9) / 1e9)
    return tf.cast(tf.minimum(k, total), tf.int32)


def _largest_negative_losses(loss_if_negative, observed, count):
    """(h, n, L) 0/1 float: per head the `count` largest AN losses among its o = 0 entries
    (`observed` 1 on every entry that is no candidate: observed positives, verified negatives;
    `count` one for every head, or (h,) one each). Float, not bool: TensorFlow's graph optimiser
    would move a later cast behind the stack's transpose, and a bool transpose makes oneDNN log
    an error line on CPUs without AVX-512."""
    h = tf.shape(observed)[0]
    flat = tf.reshape(tf.where(observed > 0, -math.inf, loss_if_negative), [h, -1])
    each = count if count.shape.rank else None
    count = tf.reduce_max(count) if each is not None else count
    _, index = tf.math.top_k(flat, k=count)
    heads = tf.repeat(tf.range(h), count)
    ones = tf.ones(h * count, tf.float32) if each is None else \
        tf.reshape(tf.cast(tf.range(count)[None, :] < each[:, None], tf.float32), [-1])
    picked = tf.scatter_nd(tf.stack([heads, tf.reshape(index, [-1])], axis=1), ones, tf.shape(flat))
    return tf.reshape(picked, tf.shape(observed)) * (1.0 - observed)


def _large_loss(logits, observed, inputs, delta, mode):
    """AN; from epoch 2 the k largest losses among o = 0 entries are rejected (loss 0, "reject")
    or taken with target 1 (-log p) for this batch ("temporary") or for good ("permanent")."""
    positive, negative = -_log_p(logits), -_log_not_p(logits)
    verified = None if inputs.verified_negative is None else tf.reduce_sum(inputs.verified_negative,
                                                                           axis=[1, 2])
    count = large_loss_count(tf.shape(logits)[1], logits.shape[-1], inputs.epoch, delta,
                             mode == "permanent", verified)
    settled = observed if inputs.verified_negative is None else 1.0 - _unknown(observed, inputs)
    picked = _largest_negative_losses(tf.stop_gradient(negative), settled, count)
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


def partial_ignore(logits, observed, inputs, **_):
    """Partial labels, unknowns ignored (HCP-MLR-PL's and mlcpl's BCE): -log p | -log(1 - p) on
    verified negatives | 0 on unknowns; the mean over each head's known entries."""
    known = 1.0 - _unknown(observed, inputs)
    per_entry = known * (observed * -_log_p(logits) + (1.0 - observed) * -_log_not_p(logits))
    return Terms(tf.reduce_sum(per_entry, axis=[1, 2]) / tf.maximum(tf.reduce_sum(known, axis=[1, 2]), 1.0))


def partial_bce(logits, observed, inputs, g_alpha, g_beta, g_gamma):
    """Durand et al. (CVPR'19) partial BCE: row i's BCE summed over its known entries, times
    g(q_i) / L, q_i the share of its labels known, g(q) = g_alpha q^g_gamma + g_beta (defaults
    -4.45, 5.45, 1: g(1) = 1, g(0.1) = 5; the values third-party code uses, unverified against
    the paper); the mean over rows."""
    known = 1.0 - _unknown(observed, inputs)
    bce = known * (observed * -_log_p(logits) + (1.0 - observed) * -_log_not_p(logits))
    n_classes = logits.shape[-1]
    share = tf.reduce_sum(known, axis=2) / n_classes
    weight = g_alpha * share ** g_gamma + g_beta
    return Terms(tf.reduce_mean(weight * tf.reduce_sum(bce, axis=2) / n_classes, axis=1))


def _selected_unknowns(p, unknown, count):
    """(h, n, L) 0/1: per head the `count` unknown entries of the batch with the highest p."""
    h = tf.shape(p)[0]
    flat = tf.reshape(tf.where(unknown > 0, p, -math.inf), [h, -1])
    count = tf.minimum(count, tf.shape(flat)[1])
    _, index = tf.math.top_k(flat, k=count)
    heads = tf.repeat(tf.range(h), count)
    picked = tf.scatter_nd(tf.stack([heads, tf.reshape(index, [-1])], axis=1), tf.ones(h * count, tf.float32),
                           tf.shape(flat))
    return tf.reshape(picked, tf.shape(p)) * unknown


def csl(logits, observed, inputs, gamma_pos, gamma_neg, gamma_unknown, clip, prior_threshold,
        likelihood_topk):
    """Class-aware selective loss (Ben-Baruch et al., CVPR'22), focusing weights without gradient,
    q = max(p - clip, 0): -(1-p)^g+ log p | -q^g- log(1-q) on verified negatives | -w q^gu log(1-q)
    on unknowns, w = 0 on the unknowns of classes whose prior exceeds `prior_threshold` (0: no
    prior rule, as the reference) and on the batch's likelihood_topk x n unknowns of highest p
    (pooled over rows), else 1. The mean over entries, where the reference sums."""
    p = tf.sigmoid(logits)
    shifted = tf.maximum(p - clip, 0.0)
    log_not_shifted = tf.math.log(tf.minimum(1.0 - p + clip, 1.0)) if clip > 0 else _log_not_p(logits)
    unknown = _unknown(observed, inputs)
    frequent = tf.cast(inputs.prior > prior_threshold, tf.float32)[:, None, :] if prior_threshold > 0 else 0.0
    count = tf.cast(tf.round(likelihood_topk * tf.cast(tf.shape(logits)[1], tf.float32)), tf.int32)
    ignored = tf.maximum(unknown * frequent, _selected_unknowns(tf.stop_gradient(p), unknown, count))
    positive = -tf.stop_gradient((1.0 - p) ** gamma_pos) * _log_p(logits)
    negative = -tf.stop_gradient(shifted ** gamma_neg) * log_not_shifted
    unknown_term = -(1.0 - ignored) * tf.stop_gradient(shifted ** gamma_unknown) * log_not_shifted
    return Terms(_split(observed, positive, tf.where(unknown > 0, unknown_term, negative)))


def schedule(start, end, epoch, epochs, first, offset):
    """GR's linear schedule: start + (end - start) max(epoch - first - offset, 0) / (epochs - first)."""
    t = tf.cast(epoch, tf.float32)
    return start + (end - start) * tf.maximum(t - first - offset, 0.0) / max(epochs - first, 1)


def gr(logits, observed, inputs, w0, w_end, b0, b_end, mu0, mu_end, sigma0, sigma_end, q2, q3, epochs, first):
    """Generalised robust loss (Chen et al. 2024): -log p | V(p)[K(p)(1 - p^q2)/q2 + (1 - K(p))(1 -
    (1-p)^q3)/q3] on unknowns, K = sigmoid(w p + b) and V = exp(-(p - mu)^2 / (2 sigma^2)) on p
    without gradient; w, b from epoch first + 2 and mu, sigma from epoch first + 1 move linearly to
    their end values at `epochs` (the reference's schedules; `first`: its linear_init epochs)."""
    p = tf.sigmoid(logits)
    fixed = tf.stop_gradient(p)
    w = schedule(w0, w_end, inputs.epoch, epochs, first, 1.0)
    b = schedule(b0, b_end, inputs.epoch, epochs, first, 1.0)
    mu = schedule(mu0, mu_end, inputs.epoch, epochs, first, 0.0)
    sigma = schedule(sigma0, sigma_end, inputs.epoch, epochs, first, 0.0)
    k = tf.sigmoid(w * fixed + b)
    v = tf.exp(-tf.square(fixed - mu) / (2.0 * tf.square(sigma)))
    robust = v * (k * (1.0 - tf.pow(p, q2)) / q2 + (1.0 - k) * (1.0 - tf.pow(1.0 - p, q3)) / q3)
    return Terms(_split(observed, -_log_p(logits), _verified(inputs, robust, logits)))


def em_apl(logits, observed, inputs, alpha, beta, theta, warmup, epochs):
    """EM with asymmetric pseudo-labelling (Zhou et al., ECCV'22): -log p | -beta [s log p + (1-s)
    log(1-p)] on pseudo-negatives (s: the probability frozen when the entry was chosen) | -alpha
    H(p) on the other unknowns. The stack chooses the pseudo-negatives after each epoch from
    `warmup` on (`heads.models`); theta, warmup and epochs are its selection's."""
    p, log_p, log_not_p = tf.sigmoid(logits), _log_p(logits), _log_not_p(logits)
    entropy = -p * log_p - (1.0 - p) * log_not_p
    unlabelled = -alpha * entropy
    if inputs.pseudo_negative is not None:
        s = inputs.pseudo_negative
        unlabelled = tf.where(s >= 0,
                              -beta * (tf.maximum(s, 0.0) * log_p + (1.0 - tf.maximum(s, 0.0)) * log_not_p),
                              unlabelled)
    return Terms(_split(observed, -log_p, _verified(inputs, unlabelled, logits)))


def score_pl(logits, observed, inputs, alpha, beta, temperature, theta):
    """Pseudo-labels from a score matrix (VLPL's rule for any scores, `heads.inputs.pseudo_positives`):
    -log p | -beta [0.9 log p + 0.1 log(1-p)] on pseudo-positives | -alpha H(p) on the other
    unknowns. temperature and theta make the pseudo-positives (a row's softmax of scores /
    temperature above theta)."""
    p, log_p, log_not_p = tf.sigmoid(logits), _log_p(logits), _log_not_p(logits)
    entropy = -p * log_p - (1.0 - p) * log_not_p
    pseudo = -beta * (0.9 * log_p + 0.1 * log_not_p)
    unlabelled = tf.where(inputs.pseudo > 0, pseudo,
                          -alpha * entropy) if inputs.pseudo is not None else -alpha * entropy
    return Terms(_split(observed, -log_p, _verified(inputs, unlabelled, logits)))


LOSSES = {fn.__name__: fn for fn in (weighted_ce, an, an_ls, wan, epr, role, em, focal, asl, hill, splc,
                                     ll_r, ll_ct, ll_cp, partial_ignore, partial_bce, csl, gr,
                                     em_apl, score_pl)}


def terms(loss: str, logits, observed, inputs: Inputs, params: dict) -> Terms:
    """The Terms of loss function `loss` (a method's `needs(method).loss`) for (h, n, L) logits
    and observed labels, params already resolved."""
    fn = LOSSES[loss]
    logits = tf.convert_to_tensor(logits, tf.float32)
    return fn(logits, tf.cast(observed, tf.float32), inputs, **params)


def batch_loss(method: str, logits, observed, *, pos_weight=None, neg_weight=None, labels=None, epoch=1,
               estimates=None, k=None, verified_negative=None, prior=None, pseudo=None, pseudo_negative=None,
               **params) -> tf.Tensor:
    """The method's batch loss (scalar) for one head: logits and observed 0/1 labels (n, L).

    pos_weight (L,): the paper's class weights (1 when absent); neg_weight (n, L): the method's
    negative weights (IM-WCE computes them from `labels`, the ground truth, when absent);
    epoch: 1-based; estimates (n, L): ROLE's label estimates as logits; k: expected positives
    per row (EPR, ROLE; else parameter k); verified_negative (n, L) 0/1: verified negatives among
    the o = 0 entries; prior (L,): CSL's class prior; pseudo (n, L) 0/1: Score-PL's
    pseudo-positives; pseudo_negative (n, L): EM+APL's soft pseudo-negatives (-1: none);
    params: overrides of the published defaults (GR needs `epochs`, its schedules' length).
    """
    spec = needs(method)
    params = methods.parameters(method, params)
    if params.get("epochs", 0) is None and spec.loss == "gr":
        raise ValueError(f"{method} needs epochs, the number of epochs its schedules span (parameter epochs)")
    if spec.prior and prior is None:
        raise ValueError(f"{method} needs prior, the (L,) class prior of its rule")
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
                    estimates=head(estimates), k=None if k is None else tf.constant([k], tf.float32),
                    verified_negative=head(verified_negative), prior=head(prior), pseudo=head(pseudo),
                    pseudo_negative=head(pseudo_negative))
    return terms(spec.loss, tf.convert_to_tensor(logits, tf.float32)[None],
                 tf.convert_to_tensor(observed)[None],
                 inputs, params).loss[0]
