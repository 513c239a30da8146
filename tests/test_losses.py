"""Every method's loss against a NumPy transcription of its formula (../shared/LOSSES.md)."""
import math

import numpy as np
import pytest

from heads import losses
from heads.inputs import needs


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def log_p(z):
    return -np.logaddexp(0, -z)


def log_not_p(z):
    return -np.logaddexp(0, z)


def split_mean(o, positive, negative):
    return float(np.mean(o * positive + (1 - o) * negative))


def ce_ref(z, o, pos_weight=None, neg_weight=None):
    """The paper's formula, literally: clipped sigmoid, then logs."""
    p = np.clip(sigmoid(z.astype(np.float64)), 1e-7, 1 - 1e-7)
    pw = 1 if pos_weight is None else pos_weight
    nw = 1 if neg_weight is None else neg_weight
    return split_mean(o, -np.log(p) * pw, -np.log(1 - p) * nw)


def an_ref(z, o):
    return split_mean(o, -log_p(z), -log_not_p(z))


def an_ls_ref(z, o, epsilon=0.1):
    return split_mean(o, -(1 - epsilon) * log_p(z) - epsilon * log_not_p(z),
                      -(1 - epsilon) * log_not_p(z) - epsilon * log_p(z))


def wan_ref(z, o, gamma=None):
    gamma = 1 / (z.shape[1] - 1) if gamma is None else gamma
    return split_mean(o, -log_p(z), -gamma * log_not_p(z))


def penalty(p, k):
    return (p.sum(1).mean() - k) ** 2 / p.shape[1] ** 2


def epr_ref(z, o, k):
    return split_mean(o, -log_p(z), 0) + penalty(sigmoid(z), k)


def role_ref(z, o, u_logits, k):
    p, u = sigmoid(z), sigmoid(u_logits)
    bce_p = -u * log_p(z) - (1 - u) * log_not_p(z)
    bce_u = -p * log_p(u_logits) - (1 - p) * log_not_p(u_logits)
    per_entry = 0.5 * o * (-log_p(z) - log_p(u_logits)) + 0.5 * (bce_p + bce_u)
    return float(per_entry.mean()) + 0.5 * (penalty(p, k) + penalty(u, k))


def em_ref(z, o, alpha=0.1):
    p = sigmoid(z)
    entropy = -p * log_p(z) - (1 - p) * log_not_p(z)
    return split_mean(o, -log_p(z), -alpha * entropy)


def focal_ref(z, o, gamma=2.0):
    p = sigmoid(z)
    return split_mean(o, -(1 - p) ** gamma * log_p(z), -(p ** gamma) * log_not_p(z))


def asl_ref(z, o, gamma_pos=0.0, gamma_neg=4.0, clip=0.05):
    p = sigmoid(z)
    q = np.maximum(p - clip, 0)
    return split_mean(o, -(1 - p) ** gamma_pos * log_p(z),
                      -(q ** gamma_neg) * np.log(np.minimum(1 - p + clip, 1)))


def hill_ref(z, o, margin=1.0, gamma=2.0, lam=1.5):
    q, p = sigmoid(z - margin), sigmoid(z)
    return split_mean(o, -(1 - q) ** gamma * log_p(z - margin), (lam - p) * p ** 2)


def splc_ref(z, o, epoch, tau=0.6, margin=1.0, gamma=2.0):
    shifted = z - margin * o
    target = o + (epoch >= 2) * (1 - o) * (sigmoid(z) > tau)
    p = sigmoid(shifted)
    return split_mean(target, -(1 - p) ** gamma * log_p(shifted), -(p ** gamma) * log_not_p(shifted))


def large_loss_ref(z, o, epoch, mode, delta=0.002):
    """Kim'22 by a loop: the k largest AN losses among o = 0 entries, rejected or corrected."""
    n, n_classes = z.shape
    share = 0 if epoch < 2 else (delta if mode == "permanent" else (epoch - 1) * delta)
    k = math.ceil(round(n * n_classes * share, 9))
    loss = o * -log_p(z) + (1 - o) * -log_not_p(z)
    candidates = sorted(((-log_not_p(z[i, j]), i, j) for i in range(n) for j in range(n_classes)
                         if o[i, j] == 0),
                        reverse=True)[:k]
    for _, i, j in candidates:
        loss[i, j] = 0.0 if mode == "reject" else -log_p(z[i, j])
    return float(loss.mean()), k


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, (64, 7)).astype(np.float32)
    z[0] = [-30, -16.2, -1, 0, 1, 16.2, 30]  # extreme logits: clips and logs at their limits
    z[1] = [30, 20, 16.2, 0, -16.2, -20, -30]
    o = (rng.random((64, 7)) < 0.4).astype(np.float32)
    o[0] = [1, 0, 1, 0, 1, 0, 1]
    o[1] = [0, 1, 0, 1, 0, 1, 0]
    return z, o


STATELESS = {
    "an": an_ref, "an_ls": an_ls_ref, "wan": wan_ref, "em": em_ref, "focal": focal_ref, "asl": asl_ref,
    "hill": hill_ref,
}


@pytest.mark.parametrize("method", sorted(STATELESS))
def test_stateless_losses_equal_their_formula_with_extreme_logits(batch, method):
    z, o = batch
    got = float(losses.batch_loss(method, z, o))
    assert np.isfinite(got)
    assert got == pytest.approx(STATELESS[method](z.astype(np.float64), o), rel=1e-5, abs=1e-6)


PARAMETERS = [("an_ls", {"epsilon": 0.3}), ("wan", {"gamma": 0.5}), ("em", {"alpha": 0.2}),
              ("focal", {"gamma": 1.0}),
              ("asl", {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0}),
              ("hill", {"margin": 0.5, "lam": 2.0})]


@pytest.mark.parametrize("method, params", PARAMETERS)
def test_each_parameter_changes_the_loss_as_the_formula_says(batch, method, params):
    z, o = batch
    default = float(losses.batch_loss(method, z, o))
    got = float(losses.batch_loss(method, z, o, **params))
    assert got != pytest.approx(default)
    assert got == pytest.approx(STATELESS[method](z.astype(np.float64), o, **params), rel=1e-5, abs=1e-6)


def test_the_papers_weighted_ce(batch):
    z, o = batch
    rng = np.random.default_rng(1)
    pos = rng.integers(1, 11, z.shape[1]).astype(np.float32)
    neg = rng.random(z.shape).astype(np.float32)
    for method in ("ignore_missing", "confidence", "confidence_mixture"):
        got = float(losses.batch_loss(method, z, o, pos_weight=pos, neg_weight=neg))
        assert got == pytest.approx(ce_ref(z, o, pos, neg), rel=1e-5)
    assert float(losses.batch_loss("ce", z, o, pos_weight=pos)) == pytest.approx(ce_ref(z, o, pos), rel=1e-5)
    truth = np.maximum(o, (rng.random(z.shape) < 0.2)).astype(np.float32)  # the oracle builds its weights
    oracle = 1 - truth * (1 - o)
    assert float(losses.batch_loss("ignore_missing", z, o, pos_weight=pos, labels=truth)) == \
        pytest.approx(ce_ref(z, o, pos, oracle), rel=1e-5)


def test_epr_and_role_with_their_batch_terms(batch):
    z, o = batch
    for k in (1.5, 3.0):
        assert float(losses.batch_loss("epr", z, o, k=k)) == pytest.approx(epr_ref(z, o, k), rel=1e-5)
    u = np.random.default_rng(2).normal(0, 2, z.shape).astype(np.float32)
    assert float(losses.batch_loss("role", z, o, estimates=u, k=2.0)) == pytest.approx(role_ref(z, o, u, 2.0),
                                                                                       rel=1e-5)
    with pytest.raises(ValueError, match="needs k"):
        losses.batch_loss("epr", z, o)


@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_splc_corrects_confident_negatives_from_epoch_two(batch, epoch):
    z, o = batch
    got = float(losses.batch_loss("splc", z, o, epoch=epoch))
    assert got == pytest.approx(splc_ref(z.astype(np.float64), o, epoch), rel=1e-5)
    assert (float(losses.batch_loss("splc", z, o, epoch=1)) != pytest.approx(got)) == (epoch >= 2)


@pytest.mark.parametrize("method, mode", [("ll_r", "reject"), ("ll_ct", "temporary"), ("ll_cp", "permanent")])
@pytest.mark.parametrize("epoch", [1, 2, 5])
def test_large_loss_methods_change_the_formulas_k_entries(batch, method, mode, epoch):
    z, o = batch
    expected, k = large_loss_ref(z.astype(np.float64), o.copy(), epoch, mode, delta=0.01)
    assert float(losses.batch_loss(method, z, o, epoch=epoch, delta=0.01)) == pytest.approx(expected,
                                                                                            rel=1e-5)
    count = losses.large_loss_count(z.shape[0], z.shape[1], epoch, 0.01, mode == "permanent")
    assert int(count) == k
    assert k == (0 if epoch == 1 else math.ceil(64 * 7 * 0.01 * (1 if mode == "permanent" else epoch - 1)))
    terms = losses.terms(needs(method).loss, z[None], o[None], losses.Inputs(epoch=epoch), {"delta": 0.01})
    if mode == "permanent":
        corrected = terms.corrected.numpy()[0].astype(bool)
        assert corrected.sum() == k and not (corrected & (o == 1)).any()
    else:
        assert terms.corrected is None


# Three states and the losses since 2022 (../shared/LOSSES.md, "Additions"): o = 1 positive, k = 1 a
# verified negative, the other o = 0 entries unknown.
@pytest.fixture
def partial_batch(batch):
    z, o = batch
    k = ((o == 0) & (np.random.default_rng(7).random(o.shape) < 0.4)).astype(np.float32)
    return z.astype(np.float64), o, k


def entropy(z):
    p = sigmoid(z)
    return -p * log_p(z) - (1 - p) * log_not_p(z)


def three(o, k, positive, negative, unknown):
    """The mean over entries of the positive, verified-negative and unknown terms."""
    return float(np.mean(o * positive + k * negative + (1 - o) * (1 - k) * unknown))


def partial_ignore_ref(z, o, k):
    known = o + k
    return float((o * -log_p(z) + k * -log_not_p(z)).sum() / known.sum())


def partial_bce_ref(z, o, k, g_alpha=-4.45, g_beta=5.45, g_gamma=1.0):
    rows = []
    for i in range(len(z)):
        known = [j for j in range(z.shape[1]) if o[i, j] or k[i, j]]
        q = len(known) / z.shape[1]
        g = g_alpha * q ** g_gamma + g_beta
        rows.append(g / z.shape[1] * sum(-log_p(z[i, j]) if o[i, j] else -log_not_p(z[i, j]) for j in known))
    return float(np.mean(rows))


def csl_ref(z, o, k, prior, gamma_pos=0.0, gamma_neg=1.0, gamma_unknown=4.0, clip=0.0, prior_threshold=0.5,
            likelihood_topk=5.0):
    p = sigmoid(z)
    q = np.maximum(p - clip, 0)
    log_not_q = np.log(np.minimum(1 - p + clip, 1)) if clip > 0 else log_not_p(z)
    unknown = (1 - o) * (1 - k)
    ignored = unknown * (prior > prior_threshold)[None, :]
    count = round(likelihood_topk * len(z))
    cells = sorted(((p[i, j], i, j) for i in range(len(z)) for j in range(z.shape[1]) if unknown[i, j]),
                   reverse=True)[:count]
    for _, i, j in cells:
        ignored[i, j] = 1
    return three(o, k, -(1 - p) ** gamma_pos * log_p(z), -(q ** gamma_neg) * log_not_q,
                 -(1 - ignored) * q ** gamma_unknown * log_not_q)


def gr_ref(z, o, k, epoch, epochs, w0=0.0, w_end=2.0, b0=-2.0, b_end=-2.0, mu0=0.5, mu_end=0.8, sigma0=2.0,
           sigma_end=0.5, q2=0.01, q3=1.0, first=0.0):
    def at(start, end, offset):
        return start + (end - start) * max(epoch - first - offset, 0) / (epochs - first)
    p = sigmoid(z)
    weight = 1 / (1 + np.exp(-(at(w0, w_end, 1) * p + at(b0, b_end, 1))))
    v = np.exp(-(p - at(mu0, mu_end, 0)) ** 2 / (2 * at(sigma0, sigma_end, 0) ** 2))
    robust = v * (weight * (1 - p ** q2) / q2 + (1 - weight) * (1 - (1 - p) ** q3) / q3)
    return three(o, k, -log_p(z), -log_not_p(z), robust)


def em_apl_ref(z, o, k, s, alpha=0.1, beta=0.9):
    pseudo = -beta * (np.maximum(s, 0) * log_p(z) + (1 - np.maximum(s, 0)) * log_not_p(z))
    return three(o, k, -log_p(z), -log_not_p(z), np.where(s >= 0, pseudo, -alpha * entropy(z)))


def score_pl_ref(z, o, k, pseudo, alpha=0.1, beta=0.7):
    return three(o, k, -log_p(z), -log_not_p(z),
                 np.where(pseudo > 0, -beta * (0.9 * log_p(z) + 0.1 * log_not_p(z)), -alpha * entropy(z)))


def test_the_partial_label_losses_equal_their_formulas(partial_batch):
    z, o, k = partial_batch
    assert float(losses.batch_loss("partial_ignore", z, o, verified_negative=k)) == \
        pytest.approx(partial_ignore_ref(z, o, k), rel=1e-5)
    assert float(losses.batch_loss("partial_bce", z, o, verified_negative=k)) == \
        pytest.approx(partial_bce_ref(z, o, k), rel=1e-5)
    negative = float(losses.batch_loss("partial_negative", z, o, verified_negative=k))
    assert negative == pytest.approx(an_ref(z, o), rel=1e-5)
    prior = np.linspace(0.1, 0.9, z.shape[1]).astype(np.float32)
    for params in ({}, {"clip": 0.05, "gamma_neg": 3.0, "gamma_unknown": 4.0, "prior_threshold": 0.3,
                        "likelihood_topk": 1.0}):
        got = float(losses.batch_loss("csl", z, o, verified_negative=k, prior=prior, **params))
        assert got == pytest.approx(csl_ref(z, o, k, prior, **params), rel=1e-5), params


@pytest.mark.parametrize("epoch", [1, 2, 4, 8])
def test_gr_follows_its_schedules(partial_batch, epoch):
    z, o, k = partial_batch
    got = float(losses.batch_loss("gr", z, o, verified_negative=k, epoch=epoch, epochs=8))
    assert got == pytest.approx(gr_ref(z, o, k, epoch, 8), rel=1e-4)
    assert float(losses.batch_loss("gr", z, o, epoch=epoch, epochs=8, q2=0.1)) == \
        pytest.approx(gr_ref(z, o, np.zeros_like(k), epoch, 8, q2=0.1), rel=1e-4)


def test_em_apl_and_score_pl_with_their_pseudo_labels(partial_batch):
    z, o, k = partial_batch
    rng = np.random.default_rng(8)
    s = np.where(rng.random(z.shape) < 0.3, rng.random(z.shape), -1.0).astype(np.float32)
    assert float(losses.batch_loss("em_apl", z, o, verified_negative=k, pseudo_negative=s)) == \
        pytest.approx(em_apl_ref(z, o, k, s), rel=1e-5)
    # no pseudo-labels yet
    assert float(losses.batch_loss("em_apl", z, o)) == pytest.approx(em_ref(z, o), rel=1e-5)
    pseudo = ((rng.random(z.shape) < 0.2) & (o == 0)).astype(np.float32)
    assert float(losses.batch_loss("score_pl", z, o, verified_negative=k, pseudo=pseudo)) == \
        pytest.approx(score_pl_ref(z, o, k, pseudo), rel=1e-5)


def test_a_verified_negative_is_a_negative_for_every_method(partial_batch):
    z, o, k = partial_batch
    nk = -log_not_p(z)
    assert float(losses.batch_loss("wan", z, o, verified_negative=k)) == \
        pytest.approx(three(o, k, -log_p(z), nk, nk / 6), rel=1e-5)
    assert float(losses.batch_loss("epr", z, o, verified_negative=k, k=2.0)) == \
        pytest.approx(three(o, k, -log_p(z), nk, 0) + penalty(sigmoid(z), 2.0), rel=1e-5)
    assert float(losses.batch_loss("em", z, o, verified_negative=k)) == \
        pytest.approx(three(o, k, -log_p(z), nk, -0.1 * entropy(z)), rel=1e-5)
    for method in ("an", "focal", "asl"):  # o = 0 is a negative already: unchanged
        assert float(losses.batch_loss(method, z, o, verified_negative=k)) == \
            pytest.approx(float(losses.batch_loss(method, z, o)), rel=1e-6)
    corrected = losses.terms("ll_cp", z[None], o[None], losses.Inputs(epoch=3, verified_negative=k[None]),
                             {"delta": 0.05}).corrected.numpy()[0]
    assert corrected.sum() > 0 and not (corrected.astype(bool) & (k == 1)).any()


def gradient(method, z, o, **inputs):
    import tensorflow as tf
    logits = tf.constant(z, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = losses.batch_loss(method, logits, o, **inputs)
    return tape.gradient(loss, logits).numpy()


def numeric_gradient(frozen, z, step=1e-4):
    """d frozen(z, z0) / dz at z0 = z by central differences: `frozen` reads its detached factors from z0."""
    out = np.zeros_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        out[index] = (frozen(up, z) - frozen(down, z)) / (2 * step)
    return out


def test_gr_and_csl_take_no_gradient_through_their_weights():
    """K, V (GR) and the focusing weights (CSL) are constants of the gradient, as the references."""
    rng = np.random.default_rng(9)
    z = rng.normal(0, 1.5, (6, 5))
    o = (rng.random((6, 5)) < 0.3).astype(np.float32)
    k = ((o == 0) & (rng.random((6, 5)) < 0.3)).astype(np.float32)

    def gr_frozen(z_, z0, epoch=3, epochs=8):
        p, p0 = sigmoid(z_), sigmoid(z0)
        weight = 1 / (1 + np.exp(-(2 * (epoch - 1) / epochs * p0 - 2)))
        v = np.exp(-(p0 - (0.5 + 0.3 * epoch / epochs)) ** 2 / (2 * (2 - 1.5 * epoch / epochs) ** 2))
        robust = v * (weight * (1 - p ** 0.01) / 0.01 + (1 - weight) * p)
        return three(o, k, -log_p(z_), -log_not_p(z_), robust)

    np.testing.assert_allclose(gradient("gr", z, o, verified_negative=k, epoch=3, epochs=8),
                               numeric_gradient(gr_frozen, z), rtol=1e-3, atol=1e-6)
    prior = np.full(5, 0.2, np.float32)

    def csl_frozen(z_, z0):
        p, p0 = sigmoid(z_), sigmoid(z0)
        unknown = (1 - o) * (1 - k)
        count = round(5.0 * len(z_))
        cells = sorted(((p0[i, j], i, j) for i in range(len(z0)) for j in range(5) if unknown[i, j]),
                       reverse=True)
        ignored = np.zeros_like(p)
        for _, i, j in cells[:count]:
            ignored[i, j] = 1
        return three(o, k, -log_p(z_), -p0 * log_not_p(z_), -(1 - ignored) * p0 ** 4 * log_not_p(z_))

    np.testing.assert_allclose(gradient("csl", z, o, verified_negative=k, prior=prior),
                               numeric_gradient(csl_frozen, z),
                               rtol=1e-3, atol=1e-6)


def test_role_leaves_a_verified_negatives_estimate_alone_and_large_losses_count_the_others(partial_batch):
    z, o, k = partial_batch
    u = np.random.default_rng(2).normal(0, 2, z.shape)
    p, est = sigmoid(z), sigmoid(u)
    bce_p = -est * log_p(z) - (1 - est) * log_not_p(z)
    bce_u = -p * log_p(u) - (1 - p) * log_not_p(u)
    cross = np.where(k > 0, -log_not_p(z), 0.5 * (bce_p + bce_u))
    expected = float((0.5 * o * (-log_p(z) - log_p(u)) + cross).mean()) + \
        0.5 * (penalty(p, 2.0) + penalty(est * (1 - k), 2.0))
    assert float(losses.batch_loss("role", z, o, estimates=u, k=2.0, verified_negative=k)) == \
        pytest.approx(expected, rel=1e-5)
    n, n_classes = z.shape
    # epoch 3: 2 delta of the non-verified entries
    count = math.ceil(round((n * n_classes - k.sum()) * 2 * 0.01, 9))
    loss = o * -log_p(z) + (1 - o) * -log_not_p(z)
    candidates = sorted(((-log_not_p(z[i, j]), i, j) for i in range(n) for j in range(n_classes)
                         if o[i, j] == 0 and k[i, j] == 0), reverse=True)[:count]
    for _, i, j in candidates:
        loss[i, j] = 0.0
    assert float(losses.batch_loss("ll_r", z, o, epoch=3, delta=0.01, verified_negative=k)) == \
        pytest.approx(float(loss.mean()), rel=1e-5)
