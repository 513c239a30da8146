"""Folds and simulated missing labels.

Edge-case policy, said once:
- `test_fold[i] = k` puts image i in fold k's test set; fold k trains on every other row.
- Hiding: each training row hides `round(r * n_pos)` of its positives, chosen uniformly at
  random. `round` is NumPy's (round half to even, like Python's and like the paper's
  notebooks): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2. A hidden positive is stored as 0 in `observed`.
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


def validation_rows(labels: np.ndarray, test_fold: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(K, n) bool: a stratified `share` of each fold's training rows, held out for validation.

    One fold of an iterative-stratification K-fold with K = round(1 / share) over the training
    rows (sizes stay close to the share, unlike iterstrat's shuffle split on small sets).
    """
    n_folds = int(test_fold.max()) + 1
    validation = np.zeros((n_folds, len(labels)), dtype=bool)
    for k in range(n_folds):
        train = np.flatnonzero(test_fold != k)
        splitter = MultilabelStratifiedKFold(n_splits=max(2, round(1 / share)), shuffle=True,
                                             random_state=seed + k)
        _, held = next(splitter.split(np.zeros(len(train)), labels[train]))
        validation[k, train[held]] = True
    return validation


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


def observed_labels(labels: np.ndarray, test_fold: np.ndarray, ratios, seed: int):
    """(K, R, n, L) uint8 observed labels and (K, R) hidden share of training positives.

    Rows of fold k's own test set hold ground truth in observed[k].
    """
    n_folds = int(test_fold.max()) + 1
    observed = np.empty((n_folds, len(ratios)) + labels.shape, dtype=np.uint8)
    hidden_share = np.zeros((n_folds, len(ratios)))
    for k in range(n_folds):
        train = test_fold != k
        for r, ratio in enumerate(ratios):
            hidden = hide_positives(labels, ratio, np.random.default_rng(ratio_seed(seed, k, ratio)))
            hidden[~train] = False
            observed[k, r] = labels & ~hidden
            hidden_share[k, r] = hidden.sum() / labels[train].sum()
    return observed, hidden_share
