"""The search: which settings each run's heads try, and which one wins (TensorFlow-free).

Under `[heads.search]` a run (seed, fold, protocol, method) trains one head per grid point: a
learning rate times every combination of its method's searched parameters (`heads.methods`:
each entry's `search`, overridden by [heads.search.params.<method>]). All points of a run start
from the same initial weights (the run's seed key), so they differ only in their settings, and
they train in the fold's one stack (`heads.models.HeadStack`: per-head learning rates and
parameters). Without the search a run has one point: [heads] learning_rate and its parameters.

Selection, said once: each head keeps the epoch of its best validation score; per run the point
with the best score wins (ties: the earlier point of `points`). The score is the mean AP over
classes with a positive among the validation rows' labels: their observed labels under
`select = "observed"` (the default: what a user has; a hidden positive counts as a negative),
their ground truth under `select = "clean"` (an oracle, as Cole'21's clean-validation variant).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import methods


@dataclass(frozen=True)
class Point:
    """One grid point of a run: a learning rate and the method's resolved parameters."""
    lr: float
    params: tuple  # sorted (name, value) pairs

    @property
    def values(self) -> dict:
        return dict(self.params)

    def describe(self, searched) -> dict:
        """{"lr": ..., parameter: value} for the searched parameters."""
        return {"lr": self.lr, **{name: value for name, value in self.params if name in searched}}


def enabled(cfg) -> bool:
    return cfg.heads.search.enabled


def searched(cfg, method: str) -> bool:
    """Whether `method`'s runs try a grid (the search is on and names it, or names none)."""
    search = cfg.heads.search
    return search.enabled and (not search.methods or method in search.methods)


def learning_rates(cfg) -> tuple[float, ...]:
    search = cfg.heads.search
    return search.lr or tuple(float(f"{f * cfg.heads.learning_rate:.6g}") for f in methods.LR_FACTORS)


def grids(cfg, method: str) -> dict:
    """{parameter: values} searched for `method`: the registry's grid, [heads.search.params] on top."""
    if not searched(cfg, method):
        return {}
    return {**methods.get(method).search, **cfg.heads.search.params.get(method, {})}


def points(cfg, method: str) -> list[Point]:
    """Every grid point of a run of `method` (one point when it is not searched)."""
    base = methods.parameters(method, cfg.heads.params.get(method))
    if not searched(cfg, method):
        return [Point(cfg.heads.learning_rate, tuple(sorted(base.items())))]
    grid = grids(cfg, method)
    names = sorted(grid)
    out = []
    for lr in learning_rates(cfg):
        for combination in itertools.product(*(grid[name] for name in names)):
            out.append(Point(lr, tuple(sorted({**base, **dict(zip(names, combination))}.items()))))
    return out


def describe(cfg, method: str) -> dict:
    """What a run's provenance records of its search: the grid (empty when not searched)."""
    if not searched(cfg, method):
        return {}
    return {"lr": list(learning_rates(cfg)), **{k: list(v) for k, v in sorted(grids(cfg, method).items())},
            "select": cfg.heads.search.select}


def check(cfg) -> None:
    """ValueError naming the method, parameter and value of a grid the registry refuses."""
    search = cfg.heads.search
    if not search.enabled:
        return
    for name, table in search.params.items():
        if search.methods and name not in search.methods:
            raise ValueError(f"{cfg.source}: [heads.search.params.{name}]: {name!r} is not in heads.search.methods")
        declared = methods.get(name).params
        for parameter, values in table.items():
            if parameter not in declared:
                raise ValueError(f"{cfg.source}: [heads.search.params.{name}]: method {name!r} has no parameter "
                                 f"{parameter!r}; its parameters: {', '.join(declared) or 'none'}")
            for value in values:
                try:
                    methods.check_value(name, parameter, value)
                except ValueError as err:
                    raise ValueError(f"{cfg.source}: [heads.search.params.{name}]: {err}") from None


def average_precision(truth: np.ndarray, scores: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """AP of each column: truth (..., n, L) 0/1 and scores (..., n, L) -> (..., L), NaN where a
    column has no positive. Per column: the sum over distinct scores, from the highest, of the
    recall gained there times the precision there (tied scores enter together). `known` (bool,
    broadcast like truth): only those entries count (partial labels: the others are ranked
    below every known one, where they change no precision at a positive)."""
    truth = np.asarray(truth, np.float64)
    scores = np.asarray(scores, np.float64)
    truth = np.broadcast_to(truth, scores.shape)
    if known is not None:
        known = np.broadcast_to(np.asarray(known, bool), scores.shape)
        truth = np.where(known, truth, 0.0)
        scores = np.where(known, scores, -np.inf)
    order = np.argsort(-scores, axis=-2, kind="stable")
    s = np.take_along_axis(scores, order, axis=-2)
    t = np.take_along_axis(truth, order, axis=-2)
    n = s.shape[-2]
    # the last row of each run of tied scores closes a threshold
    last = np.ones(s.shape, bool)
    last[..., :-1, :] = s[..., 1:, :] != s[..., :-1, :]
    tp = np.cumsum(t, axis=-2)
    positives = tp[..., -1, :]
    # tp at the previous closing row: the running maximum of closing rows' tp, shifted one row
    closed = np.maximum.accumulate(np.where(last, tp, 0.0), axis=-2)
    previous = np.concatenate([np.zeros_like(closed[..., :1, :]), closed[..., :-1, :]], axis=-2)
    seen = np.arange(1, n + 1, dtype=np.float64)[:, None]
    gained = np.where(last, tp - previous, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (gained * tp / seen).sum(axis=-2) / positives
    return np.where(positives > 0, ap, np.nan)


def mean_average_precision(truth: np.ndarray, scores: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """mAP: the mean of `average_precision` over columns with a positive, (...,); `known`: over
    the known entries only."""
    ap = average_precision(truth, scores, known)
    counted = ~np.isnan(ap)
    return np.where(counted.any(-1), np.nansum(ap, -1) / np.maximum(counted.sum(-1), 1), np.nan)


def winners(scores: np.ndarray, run_of: np.ndarray) -> dict[int, int]:
    """{run index: its winning head} for per-head validation `scores` (H,) and each head's run;
    the best score wins, the first head of the run on ties (NaN scores never win unless all are)."""
    out = {}
    for run in np.unique(run_of):
        heads = np.flatnonzero(run_of == run)
        values = np.where(np.isnan(scores[heads]), -np.inf, scores[heads])
        out[int(run)] = int(heads[int(np.argmax(values))])
    return out
