"""Per-entry weights for the weighted losses, computed from one fold's observed training labels.

Inputs are (n_train, L) 0/1 matrices of a fold's training rows only: test rows and ground truth
never enter a weight (except `im_weights`, the oracle, which is defined by the hidden labels).
"""
from __future__ import annotations

import numpy as np

from splits import folds


def pos_weight(observed: np.ndarray) -> np.ndarray:
    """(L,) float32 positive weight: clip(round(1 / (2 * positive share of class c)), 1, 10).

    The paper's baseline balancing, from observed training labels. A class never observed gets 10.
    """
    share = observed.mean(0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        weight = np.round(1.0 / (2.0 * share))
    return np.clip(weight, 1, 10).astype(np.float32)


def im_weights(labels: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(n, L) float32 "ignore missing" oracle: 0 where a positive was hidden, 1 elsewhere."""
    if labels.shape != observed.shape:
        raise ValueError(f"labels {labels.shape} and observed {observed.shape} differ in shape")
    hidden = (labels == 1) & (observed == 0)
    return (~hidden).astype(np.float32)


def _unique_patterns(observed: np.ndarray):
    """Unique rows of a 0/1 matrix: (u, L) patterns, (n,) row -> pattern, (u,) multiplicity."""
    packed = np.packbits(observed.astype(bool), axis=1)
    _, first, inverse, counts = np.unique(packed, axis=0, return_index=True,
                                          return_inverse=True, return_counts=True)
    return observed[first].astype(np.float32), inverse.ravel(), counts


def superset_counts(patterns: np.ndarray, observed: np.ndarray, chunk: int = 2048):
    """For each 0/1 pattern S (rows of `patterns`), count training rows containing it.

    Returns N(S) (u,) and N(S + {j}) (u, L), both float64, from `observed` (n, L) 0/1.
    Works on the unique rows of `observed` with their multiplicities: one matrix product says
    which rows contain which pattern (|S & row| == |S|), another sums their labels.
    """
    rows, _, mult = _unique_patterns(observed)
    mult = mult.astype(np.float32)
    weighted_rows = rows * mult[:, None]
    sizes = patterns.sum(1)
    n_s = np.empty(len(patterns))
    n_sj = np.empty(patterns.shape)
    for start in range(0, len(patterns), chunk):
        block = patterns[start:start + chunk]
        contains = (block @ rows.T) == sizes[start:start + chunk, None]  # (b, u) exact in float32
        contains = contains.astype(np.float32)
        n_s[start:start + chunk] = contains @ mult
        n_sj[start:start + chunk] = contains @ weighted_rows
    return n_s, n_sj


def cb_weights(observed: np.ndarray) -> np.ndarray:
    """(n, L) float32 confidence weight of the paper (CB-WCE), for each row's observed zeros.

    For row i with observed positive set S_i and label j not in S_i:
        w_ij = (N(S_i) - N(S_i + {j})) / N(S_i),
    N(S) = number of rows of `observed` whose positives include S (N(empty) = n). This is the
    estimated probability that j is truly absent given the row's observed labels. 0 on observed
    positives. A row with no observed positive gets 1 - (share of rows observing j).
    """
    observed = np.asarray(observed)
    patterns, inverse, _ = _unique_patterns(observed)
    n_s, n_sj = superset_counts(patterns, observed)
    weights = (n_s[:, None] - n_sj) / n_s[:, None]
    weights[patterns.astype(bool)] = 0.0
    return weights[inverse].astype(np.float32)



# Confidence-weight estimators: (observed (n, L) 0/1 training labels, missing_rate) -> (n, L)
# float32 weights in [0, 1], the estimated probability that an observed 0 is a true negative,
# 0 on observed positives. All counts come from the observed matrix passed in: a fold's training
# rows, never test rows or ground truth.
#
# The missing rate. Counts on observed labels estimate q = P(j observed | evidence), which
# underestimates presence: when each positive is hidden with probability r, presence is
# t = q / (1 - r), and an observed 0 is a hidden positive with probability
#     P(hidden | observed 0) = t r / (1 - (1 - r) t)        (0 when r = 0: nothing is missing).
# `missing_rate=None` (unknown) leaves the scores as counted: their ranking of the zeros is the
# same, only their scale (calibration, and how far they pull the loss) differs. The heads pass
# the split's ratio (with `[dataset] natural_missing_rate` on top, `losses.negative_weights`);
# `weight-quality` reports detection and Brier score of both.

def _rate(missing_rate: float) -> float:
    """The missing rate r, checked to lie in [0, 1)."""
    if not 0 <= missing_rate < 1:
        raise ValueError(f"missing_rate = {missing_rate}; must lie in [0, 1)")
    return float(missing_rate)


def calibrate(scores: np.ndarray, missing_rate: float | None) -> np.ndarray:
    """P(hidden positive | observed 0) from q = P(observed | evidence) (see above)."""
    if missing_rate is None:
        return scores
    missing_rate = _rate(missing_rate)
    present = np.clip(scores / (1.0 - missing_rate), 0.0, 1.0)
    return present * missing_rate / np.maximum(1.0 - (1.0 - missing_rate) * present, 1e-12)


def _finish(scores: np.ndarray, observed: np.ndarray, missing_rate: float | None = None) -> np.ndarray:
    weights = 1.0 - np.clip(calibrate(scores, missing_rate), 0.0, 1.0)
    weights[observed.astype(bool)] = 0.0
    return weights.astype(np.float32)


def class_prior(observed: np.ndarray) -> np.ndarray:
    """(L,) share of rows observing each class."""
    return observed.mean(0, dtype=np.float64)


def pairwise_conditionals(observed: np.ndarray) -> np.ndarray:
    """(L, L) P(j | s) = N(s, j) / N(s) on observed labels; rows of never-observed s are 0."""
    y = observed.astype(np.float64)
    pairs = y.T @ y
    return pairs / np.maximum(np.diag(pairs)[:, None], 1)


def prior_weights(observed: np.ndarray, missing_rate: float | None = None) -> np.ndarray:
    """1 - P(j): the class prior alone, the same for every row."""
    return _finish(np.broadcast_to(class_prior(observed), observed.shape).copy(), observed, missing_rate)


def pairwise_max_weights(observed: np.ndarray, missing_rate: float | None = None) -> np.ndarray:
    """1 - max over observed labels s of P(j | s); rows with no observed label use the prior."""
    conditional = pairwise_conditionals(observed)
    present = observed.astype(bool)
    scores = np.zeros(observed.shape)
    for s in range(observed.shape[1]):
        scores = np.where(present[:, [s]], np.maximum(scores, conditional[s]), scores)
    empty = ~present.any(1)
    scores[empty] = class_prior(observed)
    return _finish(scores, observed, missing_rate)


def noisy_or_scores(rows: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(len(rows), L) 1 - prod over s in the row of (1 - P(j | s)), with the conditionals counted
    on `observed`; the class prior for rows with no observed label."""
    conditional = np.clip(pairwise_conditionals(observed), 0.0, 1.0 - 1e-9)
    scores = 1.0 - np.exp(rows.astype(np.float64) @ np.log1p(-conditional))
    scores[~rows.astype(bool).any(1)] = class_prior(observed)
    return scores


def pairwise_noisy_or_weights(observed: np.ndarray, missing_rate: float | None = None) -> np.ndarray:
    """1 - noisy-OR of the pairwise conditionals: each observed label is independent evidence."""
    return _finish(noisy_or_scores(observed, observed), observed, missing_rate)


BACKOFF_STRENGTH = 20.0  # pseudo-rows of the pairwise estimate behind every exact-pattern count


def backoff_weights(observed: np.ndarray, missing_rate: float | None = None,
                    strength: float = BACKOFF_STRENGTH) -> np.ndarray:
    """The exact-pattern estimate, shrunk towards the pairwise noisy-OR where its support is thin.

    score_ij = (N(S_i + {j}) + a q_ij) / (N(S_i) + a), q = noisy-OR score, a = `strength`:
    a pattern seen in many rows keeps the paper's estimate N(S + j) / N(S); a nearly unique
    pattern (N(S) = 1, the usual case with 4+ labels, where the paper's weight is exactly 1)
    backs off to the pairwise evidence instead of claiming certainty.
    """
    patterns, inverse, _ = _unique_patterns(observed)
    n_s, n_sj = superset_counts(patterns, observed)
    pair = noisy_or_scores(patterns, observed)  # per pattern: the same for equal rows
    scores = (n_sj + strength * pair) / (n_s[:, None] + strength)
    return _finish(scores[inverse], observed, missing_rate)


MIXTURE = {"components": 16, "seeds": 16, "iterations": 40, "smoothing": 0.5}  # chosen on the published splits, fold 1


def fit_bernoulli_mixture(observed: np.ndarray, components: int, iterations: int, seed: int,
                          smoothing: float):
    """EM for a mixture of independent Bernoullis ("scenes") on the observed label sets.

    Returns responsibilities (n, K) and per-component observation probabilities q (K, L).
    Start: Dirichlet(1) responsibilities drawn with `seed`. M-step: q_k = (sum_i R_ik x_i +
    a prior) / (sum_i R_ik + a), a = `smoothing`, clipped to [1e-4, 1 - 1e-4]; E-step: R_ik
    proportional to pi_k prod_j q_kj^x_ij (1 - q_kj)^(1 - x_ij). A fixed number of iterations:
    run to convergence, the components overfit the rare label sets (measured: worse detection).
    """
    x = observed.astype(np.float32)
    x_t = np.ascontiguousarray(x.T)
    n = len(x)
    prior = x.mean(0)
    # (K, n) layout: the reductions over components run along contiguous rows (3x faster)
    resp = np.ascontiguousarray(np.random.default_rng(seed).dirichlet(np.ones(components), n).astype(np.float32).T)
    for _ in range(iterations):
        size = resp.sum(1)
        q = np.clip((resp @ x + smoothing * prior) / (size[:, None] + smoothing), 1e-4, 1 - 1e-4)
        log_p = (np.log(q) - np.log1p(-q)) @ x_t
        log_p += (np.log1p(-q).sum(1) + np.log(size / n + 1e-12))[:, None]
        log_p -= log_p.max(0)
        resp = np.exp(log_p, out=log_p)
        resp /= resp.sum(0)
    return resp.T, q.astype(np.float32)


def mixture_shares(observed: np.ndarray, components: int = MIXTURE["components"], seeds: int = MIXTURE["seeds"],
                   iterations: int = MIXTURE["iterations"], smoothing: float = MIXTURE["smoothing"]) -> np.ndarray:
    """(n, L) how a row's hidden positives are shared among its observed zeros (each row sums to
    1 over its zeros; 0 on positives).

    Evidence for label j in row i: sum_k R_ik q_kj / (1 - q_kj), the odds of j under the row's
    scenes with the row's own 0 at j taken out (R / (1 - q) are the responsibilities without
    that entry, up to a per-row constant); averaged over `seeds` restarts, each scaled to mean 1.
    """
    evidence = np.zeros(observed.shape, np.float64)
    for seed in range(seeds):
        resp, q = fit_bernoulli_mixture(observed, components, iterations, seed, smoothing)
        odds = resp @ (q / (1 - q))
        evidence += odds / odds.mean()
    evidence[observed.astype(bool)] = 0.0
    return evidence / np.maximum(evidence.sum(1, keepdims=True), 1e-30)


# How many positives a row hides. The splits hide h(n) = round(r n) of a row's n true positives
# (`folds.hidden_count`), so a row observed with k labels hides h(n) for some n with
# n - h(n) = k: often one n (NUS-WIDE at r = .5: k = 1 means n = 3 when no image has fewer than 3
# labels), sometimes several. Prior on the true count: geometric from n0 on, P(n) ~ lam^(n - n0)
# for n >= n0 (n0: the dataset's least number of labels per image); n0 and lam are fitted by
# maximum likelihood to the histogram of observed counts k (lam on a grid), and E[h | k] is the
# hidden count averaged over the n that k can come from. Measured on the published splits,
# fold 1: E[h | k] within 0.11 of the true mean hidden count for every k with 100+ rows, n0 = 3
# (NUS-WIDE) and 4 (MSCOCO) recovered, except NUS-WIDE k = 5 at r = .5 and k = 8 at r = .25
# (0.7 and 0.5 too low: 86 images with exactly 11 labels, a bump a geometric cannot follow). A
# negative binomial with a free shape split the n of one k worse at r = .75 (errors 0.33, 0.63).
COUNT_DECAYS = np.linspace(0.01, 0.99, 99)  # lam tried


def expected_hidden(observed_counts: np.ndarray, missing_rate: float) -> np.ndarray:
    """(n,) E[hidden positives | k observed] per row under the splits' hiding rule (see above)."""
    k = np.asarray(observed_counts, dtype=np.int64)
    rate = _rate(missing_rate)
    if rate == 0 or len(k) == 0:
        return np.zeros(len(k))
    n = np.arange(int(np.ceil((k.max() + 1) / (1 - rate))) + 3)
    kept = (n - folds.hidden_count(n, rate)).astype(np.int64)
    to_k = np.zeros((len(n), kept.max() + 1))
    to_k[n, kept] = 1.0
    histogram = np.bincount(k, minlength=to_k.shape[1])
    best = (-np.inf, None)
    for n0 in range(int(n[kept <= k.min()].max()) + 1):
        p = np.where(n >= n0, COUNT_DECAYS[:, None] ** np.maximum(n - n0, 0), 0.0)
        p /= p.sum(1, keepdims=True)
        log_lik = (histogram * np.log(np.maximum(p @ to_k, 1e-300))).sum(1)
        if log_lik.max() > best[0]:
            best = (log_lik.max(), p[log_lik.argmax()])
    p = best[1]
    hidden = (p * (n - kept)) @ to_k / np.maximum(p @ to_k, 1e-300)
    return hidden[k]


def mixture_weights(observed: np.ndarray, missing_rate: float | None = None) -> np.ndarray:
    """1 - the row's expected hidden count (`expected_hidden`) shared among its zeros by a
    Bernoulli mixture (`mixture_shares`), clipped to [0, 1]. `missing_rate=None` assumes r = .5."""
    rate = 0.5 if missing_rate is None else missing_rate
    hidden = expected_hidden(observed.sum(1), rate)
    return _finish(hidden[:, None] * mixture_shares(observed), observed)


def paper_weights(observed: np.ndarray, missing_rate: float | None = None) -> np.ndarray:
    """The paper's CB weight (`cb_weights`) as it is: no missing-rate correction."""
    return cb_weights(observed)


ESTIMATORS = {
    "paper": paper_weights,
    "prior": prior_weights,
    "pairwise_max": pairwise_max_weights,
    "pairwise_noisy_or": pairwise_noisy_or_weights,
    "backoff": backoff_weights,
    "mixture": mixture_weights,
}


def estimator(name: str):
    """A confidence-weight estimator by name: (observed (n, L) 0/1, missing_rate=None) -> (n, L)
    float32 weights."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown confidence estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]
