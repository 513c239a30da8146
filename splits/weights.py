"""Per-entry weights for the weighted losses, computed from one fold's observed training labels.

Inputs are (n_train, L) 0/1 matrices of a fold's training rows only (dense, or a SciPy sparse
matrix where the label space is large): test rows and ground truth never enter a weight
(except `im_weights`, the oracle, which is defined by the hidden labels).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
import scipy.sparse

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


def _dense(observed) -> np.ndarray:
    """(n, L) bool from a dense or SciPy sparse 0/1 matrix."""
    if scipy.sparse.issparse(observed):
        return observed.toarray().astype(bool)
    return np.asarray(observed).astype(bool)


def _unique_patterns(observed: np.ndarray):
    """Unique rows of a 0/1 matrix: (u, L) bool patterns, (n,) row -> pattern, (u,) multiplicity."""
    packed = np.packbits(observed, axis=1)
    _, first, inverse, counts = np.unique(packed, axis=0, return_index=True, return_inverse=True,
                                          return_counts=True)
    return observed[first], inverse.ravel(), counts


DENSE_COUNTING_LABELS = 256  # up to this many labels, supersets are found by one matrix product


def superset_counts(patterns: np.ndarray, observed: np.ndarray, chunk: int = 1024):
    """For each 0/1 pattern S (rows of `patterns`), the training rows containing it.

    Returns N(S) (u,) and N(S + {j}) (u, L), both float64, from `observed` (n, L) bool. Works on
    the unique rows of `observed` with their multiplicities. Few labels: a matrix product per
    block of patterns says which rows contain which pattern (|S & row| == |S|). Many labels: per
    pattern, the rows of its rarest label filtered by the others (posting lists), sparse.
    """
    rows, _, mult = _unique_patterns(observed)
    weighted = rows.astype(np.float32) * mult[:, None].astype(np.float32)
    if observed.shape[1] > DENSE_COUNTING_LABELS:
        contains = _contains_posting(patterns, rows)
        return np.asarray(contains @ mult.astype(np.float64)).ravel(), np.asarray(
            (contains @ scipy.sparse.csr_matrix(weighted.astype(np.float64))).toarray())
    rows_t = np.ascontiguousarray(rows.T.astype(np.float32))
    n_s, n_sj = np.empty(len(patterns)), np.empty(patterns.shape)
    for start in range(0, len(patterns), chunk):
        block = patterns[start:start + chunk].astype(np.float32)
        contains = ((block @ rows_t) == block.sum(1, keepdims=True)).astype(np.float32)  # exact in float32
        n_s[start:start + chunk] = contains @ mult.astype(np.float32)
        n_sj[start:start + chunk] = contains @ weighted
    return n_s, n_sj


def _contains_posting(patterns: np.ndarray, rows: np.ndarray) -> scipy.sparse.csr_matrix:
    """(u, r) sparse: row r contains pattern u, through the rows of each pattern's labels."""
    postings = scipy.sparse.csc_matrix(rows)
    frequency = np.diff(postings.indptr)
    all_rows = np.arange(len(rows))
    indptr, indices = [0], []
    for pattern in patterns:
        labels = np.flatnonzero(pattern)
        if len(labels):
            labels = labels[np.argsort(frequency[labels])]
            first = labels[0]
            candidates = postings.indices[postings.indptr[first]:postings.indptr[first + 1]]
            for label in labels[1:]:
                candidates = candidates[rows[candidates, label]]
                if len(candidates) <= 1:
                    break
            if len(candidates) == 1:
                candidates = candidates[rows[candidates][:, labels].all(1)]
        else:
            candidates = all_rows
        indices.append(candidates)
        indptr.append(indptr[-1] + len(candidates))
    data = np.ones(indptr[-1], np.float64)
    return scipy.sparse.csr_matrix((data, np.concatenate(indices) if indices else [], indptr),
                                   shape=(len(patterns), len(rows)))


def cb_weights(observed) -> np.ndarray:
    """(n, L) float32 confidence weight of the paper (CB-WCE), for each row's observed zeros.

    For row i with observed positive set S_i and label j not in S_i:
        w_ij = (N(S_i) - N(S_i + {j})) / N(S_i),
    N(S) = number of rows of `observed` whose positives include S (N(empty) = n). This is the
    estimated probability that j is truly absent given the row's observed labels. 0 on observed
    positives. A row with no observed positive gets 1 - (share of rows observing j).
    """
    observed = _dense(observed)
    patterns, inverse, _ = _unique_patterns(observed)
    n_s, n_sj = superset_counts(patterns, observed)
    result = (n_s[:, None] - n_sj) / n_s[:, None]
    result[patterns] = 0.0
    return result[inverse].astype(np.float32)


# Confidence-weight estimators: (observed (n, L) 0/1 training labels, missing_rate) -> (n, L)
# float32 weights in [0, 1], the estimated probability that an observed 0 is a true negative,
# 0 on observed positives. All counts come from the observed matrix passed in: a fold's training
# rows, never test rows or ground truth.
#
# Back-off to the class prior. The co-occurrence of s and j is only visible in rows that show s
# with at least one other label: N_co(s) of them. Under the splits' hiding a row showing only s
# says nothing about what goes with s (at high ratios, and under single positive, most rows show
# one label). So every co-occurrence estimate is shrunk towards the prior P(j) (the share of rows
# observing j) in proportion to the co-occurrence it has seen:
#     C(s, j) = (N(s, j) + a P(j)) / (N_co(s) + a),   a = BACKOFF pseudo-rows,
# both terms estimate (1 - r) P(j truly present | ...) on the same scale. Without any observed
# co-occurrence every estimator gives the prior's ranking; the mixture mixes its estimate with the
# prior's per row, by the co-occurrence seen of the row's labels.
#
# The missing rate. Counts on observed labels estimate q = P(j observed | evidence). With each
# true positive hidden at rate r, an observed 0 is a hidden positive with odds
#     odds(hidden | observed 0) = odds(q) r / (1 - r),   i.e.   q r / (q r + (1 - q)(1 - r)),
# 0 at r = 0 (nothing is missing) and strictly increasing in q: calibration keeps the ranking.
# `missing_rate=None` (unknown) leaves the scores as counted. The heads pass the split's missing
# rate (with `[dataset] natural_missing_rate` on top); `weight-quality` reports detection and
# Brier score of both.

BACKOFF = 3.0  # pseudo-rows of the prior behind every co-occurrence count (bench/weights_quality.py)


def _rate(missing_rate: float) -> float:
    """The missing rate r, checked to lie in [0, 1)."""
    if not 0 <= missing_rate < 1:
        raise ValueError(f"missing_rate = {missing_rate}; must lie in [0, 1)")
    return float(missing_rate)


def calibrate(scores: np.ndarray, missing_rate: float | None) -> np.ndarray:
    """P(hidden positive | observed 0) from q = P(observed | evidence) (see above)."""
    if missing_rate is None:
        return scores
    rate = _rate(missing_rate)
    hidden = scores * rate
    return hidden / np.maximum(hidden + (1.0 - scores) * (1.0 - rate), 1e-300)


def _finish(hidden_probability: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Weights 1 - P(hidden), 0 on observed positives, float32."""
    result = np.clip(hidden_probability.astype(np.float32, copy=False), 0.0, 1.0)
    np.subtract(1.0, result, out=result)
    result[observed] = 0.0
    return result


class Counts(NamedTuple):
    prior: np.ndarray  # (L,) share of rows observing j
    pairs: np.ndarray  # (L, L) N(s, j), rows observing both
    with_others: np.ndarray  # (L,) N_co(s), rows observing s and another label


def counts(observed: np.ndarray) -> Counts:
    y = scipy.sparse.csr_matrix(observed, dtype=np.float64)
    pairs = (y.T @ y).toarray()
    shown = np.asarray(y.sum(1)).ravel()
    with_others = np.asarray(y.T @ (shown >= 2).astype(np.float64)).ravel()
    return Counts(pairs.diagonal() / max(len(observed), 1), pairs, with_others)


def class_prior(observed) -> np.ndarray:
    """(L,) share of rows observing each class."""
    return _dense(observed).mean(0, dtype=np.float64)


def backed_off_conditionals(observed: np.ndarray, strength: float | None = None) -> np.ndarray:
    """(L, L) C(s, j): P(j | s) from observed co-occurrence, shrunk towards P(j) by `strength`
    pseudo-rows (default BACKOFF; see above)."""
    strength = BACKOFF if strength is None else strength
    c = counts(observed)
    trust = co_occurrence_trust(c, strength)
    conditional = trust[:, None] * c.pairs / np.maximum(c.with_others[:, None],
                                                        1) + (1 - trust[:, None]) * c.prior[None, :]
    np.fill_diagonal(conditional, 0.0)
    return np.clip(conditional, 0.0, 1.0 - 1e-9)


def co_occurrence_trust(c: Counts, strength: float) -> np.ndarray:
    """(L,) how far label s's co-occurrence is trusted over the prior: the share of its rows that
    show co-occurrence at all, times N_co / (N_co + a)."""
    shown = np.maximum(np.diag(c.pairs), 1)
    return (c.with_others / shown) * c.with_others / (c.with_others + strength)


def prior_weights(observed, missing_rate: float | None = None) -> np.ndarray:
    """1 - P(j): the class prior alone, the same for every row."""
    observed = _dense(observed)
    return _finish(calibrate(np.broadcast_to(class_prior(observed), observed.shape).copy(), missing_rate),
                   observed)


def pairwise_max_scores(observed: np.ndarray, chunk_rows: int = 1024) -> np.ndarray:
    """(n, L) max over a row's observed labels s of C(s, j); the prior for rows with none."""
    conditional = backed_off_conditionals(observed)
    scores = np.broadcast_to(class_prior(observed), observed.shape).copy()
    for start in range(0, len(observed), chunk_rows):
        block = scipy.sparse.csr_matrix(observed[start:start + chunk_rows])
        filled = np.flatnonzero(np.diff(block.indptr))
        if len(filled):
            gathered = conditional[block.indices]
            scores[start + filled] = np.maximum.reduceat(gathered, block.indptr[filled], axis=0)
    return scores


def pairwise_max_weights(observed, missing_rate: float | None = None) -> np.ndarray:
    """1 - the strongest single piece of co-occurrence evidence, backed off to the prior."""
    observed = _dense(observed)
    return _finish(calibrate(pairwise_max_scores(observed), missing_rate), observed)


def noisy_or_scores(rows: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(len(rows), L) 1 - prod over s in the row of (1 - C(s, j)), with the conditionals counted
    on `observed`; the class prior for rows with no observed label."""
    conditional = backed_off_conditionals(observed)
    scores = 1.0 - np.exp(scipy.sparse.csr_matrix(rows, dtype=np.float64) @ np.log1p(-conditional))
    scores[~rows.any(1)] = class_prior(observed)
    return scores


def pairwise_noisy_or_weights(observed, missing_rate: float | None = None) -> np.ndarray:
    """1 - noisy-OR of the backed-off conditionals: each observed label is independent evidence."""
    observed = _dense(observed)
    return _finish(calibrate(noisy_or_scores(observed, observed), missing_rate), observed)


PATTERN_STRENGTH = 20.0  # pseudo-rows of the pairwise estimate behind every pattern count


def backoff_weights(observed, missing_rate: float | None = None,
                    strength: float = PATTERN_STRENGTH) -> np.ndarray:
    """The paper's pattern estimate (superset counts N(S)), shrunk towards the pairwise noisy-OR
    where its support is thin.

    score_ij = (N(S_i + {j}) + a q_ij) / (N_co(S_i) + a), q = noisy-OR score, a = `strength`,
    N_co(S) = rows containing S and at least one more label (the rows where anything is seen
    with S): a pattern seen with many others keeps the paper's estimate; a nearly unique one
    backs off to the pairwise evidence, and that to the prior.
    """
    observed = _dense(observed)
    patterns, inverse, multiplicity = _unique_patterns(observed)
    n_s, n_sj = superset_counts(patterns, observed)
    with_more = n_s - multiplicity  # rows whose observed set is exactly S see nothing with it
    pair = noisy_or_scores(patterns, observed)
    scores = (n_sj + strength * pair) / (with_more[:, None] + strength)
    return _finish(calibrate(np.clip(scores[inverse], 0.0, 1.0), missing_rate), observed)


# Chosen on the published splits (fold 1) and the shipped real sets (bench/weights_quality.py).
# Restarts: 16, fewer on large label matrices (at least 4): about MIXTURE_WORK unique rows x
# labels x restarts, which keeps a call near 2 s at 16,000 x 1,000 labels on 2 CPU cores.
MIXTURE = {"components": 16, "seeds": 16, "iterations": 30, "smoothing": 0.5}
MIXTURE_WORK = 1.2e8
MIXTURE_SPARSE = 0.1  # the share of positive entries under which the EM's label sets are sparse


def mixture_restarts(unique_rows: int, n_labels: int) -> int:
    return int(np.clip(MIXTURE_WORK // max(unique_rows * n_labels, 1), 4, MIXTURE["seeds"]))


def fit_bernoulli_mixtures(x: np.ndarray, multiplicity: np.ndarray, components: int,
                           iterations: int, seeds: int,
                           smoothing: float):
    """EM for `seeds` mixtures of independent Bernoullis ("scenes") at once, on unique observed
    label sets `x` (u, L) seen `multiplicity` times each.

    Returns responsibilities (seeds, K, u) and per-component observation probabilities q
    (seeds, K, L). Start: Dirichlet(1) responsibilities per unique row, drawn with seed s for
    restart s. M-step: q_k = (sum_i m_i R_ik x_i + a prior) / (sum_i m_i R_ik + a), a =
    `smoothing`, clipped to [1e-4, 1 - 1e-4]; E-step: R_ik proportional to pi_k prod_j q_kj^x_ij
    (1 - q_kj)^(1 - x_ij). A fixed number of iterations: run to convergence, the components
    overfit the rare label sets (measured: worse detection). The restarts share every matrix
    product (one (u, L) x (L, seeds K) product per step), with `x` sparse where under
    MIXTURE_SPARSE of its entries are positive (label sets are: at 16,000 x 1,000 labels with
    19 a row the sparse products take a fraction of the dense ones, measured in
    bench/weights_quality.py).
    """
    x = x.astype(np.float32)
    u, n_labels = x.shape
    m = multiplicity.astype(np.float32)
    n = m.sum()
    prior = (m @ x) / n
    if x.mean() < MIXTURE_SPARSE:
        x = scipy.sparse.csr_matrix(x)
    x_t = x.T.tocsr() if scipy.sparse.issparse(x) else np.ascontiguousarray(x.T)
    # responsibilities laid out (u, seeds, K): both products then read and write contiguous rows
    resp = np.stack([np.random.default_rng(seed).dirichlet(np.ones(components), u).astype(np.float32)
                     for seed in range(seeds)], axis=1)
    for _ in range(iterations):
        weighted = (resp * m[:, None, None]).reshape(u, seeds * components)
        size = weighted.sum(0)
        q = np.clip(((x_t @ weighted).T + smoothing * prior) / (size[:, None] + smoothing), 1e-4, 1 - 1e-4)
        log_p = x @ np.ascontiguousarray((np.log(q) - np.log1p(-q)).T)
        log_p += np.log1p(-q).sum(1) + np.log(size / n + 1e-12)
        log_p = log_p.reshape(u, seeds, components)
        log_p -= log_p.max(2, keepdims=True)
        resp = np.exp(log_p, out=log_p)
        resp /= resp.sum(2, keepdims=True)
    return np.ascontiguousarray(resp.transpose(1, 2, 0)), q.reshape(seeds, components, n_labels)


def mixture_shares(observed: np.ndarray, components: int = MIXTURE["components"], seeds: int | None = None,
                   iterations: int = MIXTURE["iterations"], smoothing: float = MIXTURE["smoothing"],
                   work_rows: int | None = None) -> np.ndarray:
    """(n, L) how a row's hidden positives are shared among its observed zeros (each row sums to
    1 over its zeros; 0 on positives).

    Evidence for label j in row i: sum_k R_ik q_kj / (1 - q_kj), the odds of j under the row's
    scenes with the row's own 0 at j taken out (R / (1 - q) are the responsibilities without
    that entry, up to a per-row constant); averaged over `seeds` restarts (default
    `mixture_restarts` of the unique rows, or of `work_rows`), each scaled to mean 1.
    """
    observed = _dense(observed)
    patterns, inverse, multiplicity = _unique_patterns(observed)
    seeds = seeds or mixture_restarts(work_rows or len(patterns), observed.shape[1])
    resp, q = fit_bernoulli_mixtures(patterns, multiplicity, components, iterations, seeds, smoothing)
    ratio = q / (1 - q)  # (S, K, L)
    weight = multiplicity.astype(np.float32)
    mean_odds = np.einsum("sku,u,sk->s", resp, weight, ratio.sum(2)) / (weight.sum() * observed.shape[1])
    # each restart's odds scaled to mean 1
    scaled = (resp / mean_odds[:, None, None]).reshape(-1, len(patterns))
    evidence = scaled.T @ ratio.reshape(-1, observed.shape[1])  # (u, L): summed over restarts and scenes
    evidence[patterns] = 0.0
    evidence /= np.maximum(evidence.sum(1, keepdims=True), 1e-30)
    return evidence[inverse]


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


MIXTURE_BACKOFF = 15.0  # pseudo-rows of the prior per unit of the missing odds r / (1 - r) (below)


def mixture_weights(observed, missing_rate: float | None = None, backoff: float = MIXTURE_BACKOFF,
                    shares: np.ndarray | None = None) -> np.ndarray:
    """P(hidden) = 1 - exp(-count x share): the row's expected hidden count (`expected_hidden`)
    shared among its zeros, by a Bernoulli mixture (`mixture_shares`) as far as the co-occurrence
    of the row's labels is trusted, by the prior (P(j) over the row's zeros) for the rest.

    Trust E / (E + a): E = the co-occurrence seen of the row's labels (sum over its labels s of
    N_co(s), rows showing s with another label), a = `backoff` x r / (1 - r). The pseudo-count
    grows with the missing odds: the higher the rate, the fewer rows show two labels and the
    more those that do are the atypical ones with many true labels, so the more evidence the
    mixture needs before it is believed. With no co-occurrence seen, a row's zeros rank as the
    prior ranks them. Chosen on the shipped real sets and the published splits (docs/estimators.md,
    `bench/weights_quality.py --backoffs`): 15 keeps every case within 0.001 of the prior's
    detection and NUS-WIDE at .5 at 0.890; 3 (the count back-off's) loses 0.031 to the prior on enron at .75.
    `missing_rate=None` assumes r = .5."""
    observed = _dense(observed)
    rate = 0.5 if missing_rate is None else _rate(missing_rate)
    hidden = expected_hidden(observed.sum(1), rate).astype(np.float32)
    prior = np.where(observed, np.float32(0), class_prior(observed).astype(np.float32)[None, :])
    prior /= np.maximum(prior.sum(1, keepdims=True), 1e-30)
    seen = scipy.sparse.csr_matrix(observed, dtype=np.float64) @ counts(observed).with_others
    trust = (seen / np.maximum(seen + backoff * rate / (1 - rate), 1e-12)).astype(np.float32)[:, None]
    mixed = (mixture_shares(observed) if shares is None else shares) - prior
    mixed *= trust
    mixed += prior  # trust x mixture + (1 - trust) x prior
    mixed *= -hidden[:, None]
    return _finish(-np.expm1(mixed), observed)


def paper_weights(observed, missing_rate: float | None = None) -> np.ndarray:
    """The paper's CB weight (`cb_weights`) as it is: no missing-rate correction, no back-off."""
    return cb_weights(observed)


# Choosing an estimator without ground truth (`auto`). Re-hiding positives from the observed
# labels at the split's rate would grade the estimators on a sparser problem than the real one
# (the effective ratio compounds: 1 - (1 - r)^2) and, at high ratios, leave no co-occurrence to
# learn from. So the simulation keeps the observed labels of most rows as they are and holds out
# one positive from a random AUTO["share"] of the rows that show two or more, on up to
# AUTO["rows"] rows, AUTO["repeats"] times. Each candidate is fitted on that and scored on how it
# ranks each test row's held-out positive among the row's zeros (`within_row_auc`): the
# simulation's rows hide one positive each, which no missing rate describes, so only the ranking
# within a row is compared (told a rate of .5, every candidate ranks a row's zeros as it would at
# the split's rate). The mixture is the default (the best on average, bench/weights_quality.py);
# another candidate is used when it ranks better by at least AUTO["margin"]; with nothing to hold
# out (no row shows two labels), the default, whose back-off then gives the prior's ranking.
AUTO = {"rows": 4000, "share": 0.25, "repeats": 2, "margin": 0.005, "default": "mixture"}


def _candidates() -> dict:
    return {"mixture": mixture_weights, "prior": prior_weights,
            "pairwise_noisy_or": pairwise_noisy_or_weights,
            "pairwise_max": pairwise_max_weights,
            "mixture (light back-off)": partial(mixture_weights, backoff=MIXTURE_BACKOFF / 5),
            "mixture (strong back-off)": partial(mixture_weights, backoff=MIXTURE_BACKOFF * 5)}


class Choice(NamedTuple):
    name: str
    simulated: dict  # candidate -> mean within-row ROC-AUC on the simulation (empty: nothing held out)


def choose(observed, missing_rate: float | None, seed: int = 0) -> Choice:
    """The estimator `auto` uses for these observed labels (see above)."""
    observed = _dense(observed)
    candidates = _candidates()
    scores = {name: [] for name in candidates}
    for repeat in range(AUTO["repeats"]):
        rng = np.random.default_rng([seed, repeat])
        rows = np.sort(rng.choice(len(observed), min(len(observed), AUTO["rows"]), replace=False))
        labels = observed[rows]
        test = (labels.sum(1) >= 2) & (rng.random(len(labels)) < AUTO["share"])
        if not test.any():
            continue
        held_out = (folds.keep_one_positive(labels, rng) ^ labels) & test[:, None]  # one positive a test row
        seen = labels & ~held_out
        zeros = ~seen & test[:, None]
        # one fit for every mixture variant, the real one's restarts
        shares = mixture_shares(seen, work_rows=len(observed))
        for name, estimate in candidates.items():
            extra = {"shares": shares} if name.startswith("mixture") else {}
            scores[name].append(within_row_auc(1.0 - estimate(seen, 0.5, **extra), held_out, zeros, test))
    if not missing_rate or not scores["prior"]:
        return Choice(AUTO["default"], {})
    simulated = {name: float(np.mean(values)) for name, values in scores.items()}
    best = max(simulated, key=simulated.get)
    return Choice(best if simulated[best] - simulated[AUTO["default"]] >= AUTO["margin"] else AUTO["default"],
                  simulated)


def within_row_auc(scores: np.ndarray, held_out: np.ndarray, zeros: np.ndarray, rows: np.ndarray) -> float:
    """Mean over `rows` of the share of a row's other zeros scored below its held-out positive
    (ties half): each row's ranking of its own zeros, whatever the scale across rows."""
    picked = np.flatnonzero(rows)
    target = np.where(held_out[picked], scores[picked], np.nan)
    value = np.nanmax(target, axis=1)[:, None]
    others = zeros[picked] & ~held_out[picked]
    below = ((scores[picked] < value) & others).sum(1) + 0.5 * ((scores[picked] == value) & others).sum(1)
    return float(np.mean(below / np.maximum(others.sum(1), 1)))


def auto_weights(observed, missing_rate: float | None = None) -> np.ndarray:
    """The estimator `choose` picks for these labels, from the observed labels alone."""
    return _candidates()[choose(observed, missing_rate).name](observed, missing_rate)


ESTIMATORS = {
    "paper": paper_weights,
    "prior": prior_weights,
    "pairwise_max": pairwise_max_weights,
    "pairwise_noisy_or": pairwise_noisy_or_weights,
    "backoff": backoff_weights,
    "mixture": mixture_weights,
    "auto": auto_weights,
}


def estimator(name: str):
    """A confidence-weight estimator by name: (observed (n, L) 0/1, missing_rate=None) -> (n, L)
    float32 weights."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown confidence estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]
