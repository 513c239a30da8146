"""Folds and simulated missing labels.

Edge-case policy, said once:
- `test_fold[i] = k` puts image i in fold k's test set; fold k trains on every other row.
- Hiding: each training row hides `round(r * n_pos)` of its positives, chosen uniformly at
  random. `round` is NumPy's (round half to even, like Python's and like the paper's
  notebooks): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2. A hidden positive is stored as 0 in `observed`.
- Single positive (Cole et al. 2021, `single_positive`): each training row keeps one of its
  positives, chosen uniformly at random, and hides the others.
- Partial labels (three states: positive, verified negative, unknown; stored with the codes of
  `splits.store`), on a training row's known labels, positives and negatives alike:
  `partial` q keeps q k of the row's k known labels, rounded at random (so the share kept is q
  in expectation and within 1 / k of it in every row), chosen uniformly at random (Durand et
  al. 2019); `fpc` N keeps, per class, N of its training positives
  and N of its negatives (all of them when fewer), chosen uniformly at random (Ben-Baruch et al.
  2022); `rps` p makes each known label unknown with probability p, independently.
- Three-state data (labels some of which the dataset leaves unknown): under the ratios a
  verified negative stays verified; single positive keeps one positive and nothing else.
- Test rows always keep their ground truth.
"""
from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from .store import NEGATIVE, POSITIVE


def make_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) int8 test-fold index by iterative stratification (seeded)."""
    if n_folds < 2:
        raise ValueError(f"n_folds = {n_folds}; need at least 2 folds")
    if len(labels) < n_folds:
        raise ValueError(f"{len(labels)} images cannot make {n_folds} folds; give more rows, or fewer folds "
                         "(splits.n_folds, model.folds)")
    test_fold = np.full(len(labels), -1, dtype=np.int8)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        test_fold[test_rows] = k
    assert (test_fold >= 0).all()
    return test_fold


def held_out(labels: np.ndarray, share: float, seed: int, key: str = "splits.validation") -> np.ndarray:
    """(n,) bool: a stratified `share` of the rows of `labels` (n, L), as one fold of an
    iterative-stratification K-fold with K = round(1 / share), seeded; ValueError naming `key`
    (the config key of the share) when there are fewer than K rows."""
    parts = max(2, round(1 / share))
    if len(labels) < parts:
        raise ValueError(f"{key} = {share:g} holds out one of {parts} stratified parts of the rows, and "
                         f"{len(labels)} row(s) cannot make {parts}; give more rows, or a larger {key}")
    splitter = MultilabelStratifiedKFold(n_splits=parts, shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(labels)), labels))
    mask = np.zeros(len(labels), bool)
    mask[held] = True
    return mask


def validation_rows(labels: np.ndarray, test_fold: np.ndarray, share: float, seed: int,
                    key: str = "splits.validation") -> np.ndarray:
    """(K, n) bool: a stratified `share` of each fold's training rows, held out for validation.

    One fold of an iterative-stratification K-fold with K = round(1 / share) over the training
    rows (sizes stay close to the share, unlike iterstrat's shuffle split on small sets).
    """
    n_folds = int(test_fold.max()) + 1
    validation = np.zeros((n_folds, len(labels)), dtype=bool)
    for k in range(n_folds):
        train = np.flatnonzero(test_fold != k)
        validation[k, train[held_out(labels[train], share, seed + k, key)]] = True
    return validation


SINGLE_POSITIVE_KEY = 20_000  # the protocol's seed key; ratios use round(10,000 r) < 10,000
PARTIAL_SEED_KEYS = {"partial": 31, "fpc": 32, "rps": 33}  # seeded as [seed, fold, key, value]


def ratio_seed(seed: int, fold: int, ratio: float) -> np.random.SeedSequence:
    """The seed of one (seed, fold, ratio) hiding draw."""
    return np.random.SeedSequence([seed, fold, round(ratio * 10_000)])


def hidden_count(n_pos: np.ndarray, ratio: float) -> np.ndarray:
    """How many of a row's n_pos positives are hidden: round(ratio * n_pos) (module docstring)."""
    return np.round(ratio * np.asarray(n_pos))


def hide_positives(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """(n, L) bool mask of hidden positives: `hidden_count` random positives per row."""
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio {ratio} outside [0, 1)")
    positive = labels.astype(bool)
    n_hide = hidden_count(positive.sum(1), ratio)
    keys = np.where(positive, rng.random(labels.shape), np.inf)
    rank = keys.argsort(1).argsort(1)  # rank of each positive among its row's positives
    return positive & (rank < n_hide[:, None])


def keep_one_positive(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, L) bool mask of hidden positives: all of a row's positives but one, chosen at random
    (a row without positives hides nothing)."""
    positive = labels.astype(bool)
    keys = np.where(positive, rng.random(labels.shape), np.inf)
    hidden = positive.copy()
    hidden[np.arange(len(labels)), keys.argmin(1)] = False
    return hidden


def keep_share(known: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """(n, L) bool: of each row's k known labels, share x k rounded at random (down, or up with
    the probability of its fraction: the share kept is `share` in expectation, a row's is
    within 1 / k of it), chosen at random."""
    target = share * known.sum(1)
    count = np.floor(target) + (rng.random(len(known)) < target - np.floor(target))
    keys = np.where(known, rng.random(known.shape), np.inf)
    rank = keys.argsort(1).argsort(1)
    return known & (rank < count[:, None])


def keep_per_class(labels: np.ndarray, known: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(n, L) bool: per class, `count` of its known positives and `count` of its known negatives
    (all of them when fewer), chosen at random."""
    draw = rng.random(labels.shape)
    kept = np.zeros(labels.shape, bool)
    for state in (labels == 1, labels == 0):
        pool = known & state
        keys = np.where(pool, draw, np.inf)
        rank = keys.argsort(0).argsort(0)
        kept |= pool & (rank < count)
    return kept


def keep_each(known: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """(n, L) bool: each known label kept with probability 1 - drop, independently."""
    return known & (rng.random(known.shape) >= drop)


KEEPERS = {"partial": keep_share, "rps": keep_each}


def partial_draw(kind: str, value, labels: np.ndarray, known: np.ndarray, seed: int, fold: int) -> np.ndarray:
    """(n, L) bool: the labels a partial-label protocol keeps of `known` (module docstring)."""
    rng = np.random.default_rng([seed, fold, PARTIAL_SEED_KEYS[kind], round(value * 10_000)])
    if kind == "fpc":
        return keep_per_class(labels, known, int(value), rng)
    return KEEPERS[kind](known, value, rng)


def codes(labels: np.ndarray, kept: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """(n, L) uint8 `splits.store` codes: the kept positives 1; the known negatives kept 2
    (`kept` None: none verified, the paper's protocols on two-state data); 0 elsewhere."""
    out = (labels & kept).astype(np.uint8)
    if known is not None:
        out[known & kept & (labels == 0)] = NEGATIVE
    return out


def observed_labels(labels: np.ndarray, test_fold: np.ndarray, ratios, seed: int,
                    single_positive: bool = False,
                    known: np.ndarray | None = None, partial=(), fpc=(), rps=()):
    """(K, P, n, L) uint8 observed labels (`splits.store` codes) and (K, P) hidden share of
    training positives, P the protocols: one per ratio, single positive when asked for, then
    each partial-label protocol (`partial`, `fpc`, `rps`). `known` (n, L) bool: the labels a
    three-state dataset knows (None: all).

    Rows of fold k's own test set hold ground truth in observed[k].
    """
    n_folds = int(test_fold.max()) + 1
    kinds = [("partial", v) for v in partial] + [("fpc", v) for v in fpc] + [("rps", v) for v in rps]
    n_protocols = len(ratios) + int(single_positive) + len(kinds)
    observed = np.empty((n_folds, n_protocols, *labels.shape), dtype=np.uint8)
    hidden_share = np.zeros((n_folds, n_protocols))
    every = np.ones(labels.shape, bool) if known is None else known
    truth = codes(labels, every, known)
    for k in range(n_folds):
        train = test_fold != k
        draws = [every & ~hide_positives(labels, ratio, np.random.default_rng(ratio_seed(seed, k, ratio)))
                 for ratio in ratios]
        if single_positive:
            draws.append(labels.astype(bool) & ~keep_one_positive(labels,
                                                                  np.random.default_rng([seed, k,
                                                                                         SINGLE_POSITIVE_KEY])))
        draws += [partial_draw(kind, value, labels, every & train[:, None], seed, k) for kind, value in kinds]
        verified = [known] * len(ratios) + [None] * int(single_positive) + [every] * len(kinds)
        for p, (kept, negatives) in enumerate(zip(draws, verified)):
            observed[k, p] = np.where(train[:, None], codes(labels, kept, negatives), truth)
            hidden = (labels == 1) & (observed[k, p] != POSITIVE) & train[:, None]
            hidden_share[k, p] = hidden.sum() / labels[train].sum()
    return observed, hidden_share

