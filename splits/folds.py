"""Folds and simulated missing labels.

Edge-case policy, said once:
- `test_fold[i] = k` puts image i in fold k's test set; fold k trains on every other row.
- Hiding: each training row hides `round(r * n_pos)` of its positives, chosen uniformly at
  random. `round` is NumPy's (round half to even, like Python's and like the paper's
  notebooks): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2. A hidden positive is stored as 0 in `observed`.
- Single positive (Cole et al. 2021, `single_positive`): each training row keeps one of its
  positives, chosen uniformly at random, and hides the others.
- Test rows always keep their ground truth.
"""
from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold


def make_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) int8 test-fold index by iterative stratification (seeded)."""
    if n_folds < 2:
        raise ValueError(f"n_folds = {n_folds}; need at least 2 folds")
    if len(labels) < n_folds:
        raise ValueError(f"{len(labels)} images cannot make {n_folds} folds")
    test_fold = np.full(len(labels), -1, dtype=np.int8)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        test_fold[test_rows] = k
    assert (test_fold >= 0).all()
    return test_fold


def held_out(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(n,) bool: a stratified `share` of the rows of `labels` (n, L), as one fold of an
    iterative-stratification K-fold with K = round(1 / share), seeded."""
    splitter = MultilabelStratifiedKFold(n_splits=max(2, round(1 / share)), shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(labels)), labels))
    mask = np.zeros(len(labels), bool)
    mask[held] = True
    return mask


def validation_rows(labels: np.ndarray, test_fold: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(K, n) bool: a stratified `share` of each fold's training rows, held out for validation.

    One fold of an iterative-stratification K-fold with K = round(1 / share) over the training
    rows (sizes stay close to the share, unlike iterstrat's shuffle split on small sets).
    """
    n_folds = int(test_fold.max()) + 1
    validation = np.zeros((n_folds, len(labels)), dtype=bool)
    for k in range(n_folds):
        train = np.flatnonzero(test_fold != k)
        validation[k, train[held_out(labels[train], share, seed + k)]] = True
    return validation


SINGLE_POSITIVE_KEY = 20_000  # the protocol's seed key; ratios use round(10,000 r) < 10,000


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


def observed_labels(labels: np.ndarray, test_fold: np.ndarray, ratios, seed: int, single_positive: bool = False):
    """(K, P, n, L) uint8 observed labels and (K, P) hidden share of training positives, P the
    protocols: one per ratio, then single positive when asked for.

    Rows of fold k's own test set hold ground truth in observed[k].
    """
    n_folds = int(test_fold.max()) + 1
    n_protocols = len(ratios) + int(single_positive)
    observed = np.empty((n_folds, n_protocols, *labels.shape), dtype=np.uint8)
    hidden_share = np.zeros((n_folds, n_protocols))
    for k in range(n_folds):
        train = test_fold != k
        draws = [hide_positives(labels, ratio, np.random.default_rng(ratio_seed(seed, k, ratio))) for ratio in ratios]
        if single_positive:
            draws.append(keep_one_positive(labels, np.random.default_rng([seed, k, SINGLE_POSITIVE_KEY])))
        for p, hidden in enumerate(draws):
            hidden[~train] = False
            observed[k, p] = labels & ~hidden
            hidden_share[k, p] = hidden.sum() / labels[train].sum()
    return observed, hidden_share
