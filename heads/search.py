"""The search: which settings each run's heads try, and which one wins (TensorFlow-free).

Under `[heads.search]` a run (seed, fold, protocol, method) trains one head per grid point: a
learning rate times every combination of its method's searched parameters (`heads.methods`:
each entry's `search`, overridden by [heads.search.params.<method>]). All points of a run start
from the same initial weights (the run's seed key), so they differ only in their settings, and
they train in the fold's one stack (`heads.models.HeadStack`: per-head learning rates and
parameters). Without the search a run has one point: [heads] learning_rate and its parameters.

Selection, said once: each head keeps the epoch of its best validation score; per run the point
with the best score wins (ties: the earlier point of `points`). The score is the mean AP
(`metrics.mean_average_precision`) over
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
    base = methods.configured(cfg, method)
    if not searched(cfg, method):
        return [Point(cfg.heads.learning_rate, tuple(sorted(base.items())))]
    grid = grids(cfg, method)
    names = sorted(grid)
    out = []
    for lr in learning_rates(cfg):
        for combination in itertools.product(*(grid[name] for name in names)):
            out.append(Point(lr, tuple(sorted({**base, **dict(zip(names, combination))}.items()))))
    return out


def grid(cfg, names) -> dict[str, list[Point]]:
    """{method: `points`} of each method named: what a command computes once and its stacks carry."""
    return {name: points(cfg, name) for name in dict.fromkeys(names)}


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
            raise ValueError(f"{cfg.source}: [heads.search.params.{name}]: {name!r} is not in "
                             "heads.search.methods")
        declared = methods.get(name).params
        for parameter, values in table.items():
            if parameter not in declared:
                raise ValueError(f"{cfg.source}: [heads.search.params.{name}]: method {name!r} has no "
                                 "parameter "
                                 f"{parameter!r}; its parameters: {', '.join(declared) or 'none'}")
            for value in values:
                try:
                    methods.check_value(name, parameter, value)
                except ValueError as err:
                    raise ValueError(f"{cfg.source}: [heads.search.params.{name}]: {err}") from None


def winners(scores: np.ndarray, run_of: np.ndarray) -> dict[int, int]:
    """{run index: its winning head} for per-head validation `scores` (H,) and each head's run;
    the best score wins, the first head of the run on ties (NaN scores never win unless all are)."""
    out = {}
    for run in np.unique(run_of):
        heads = np.flatnonzero(run_of == run)
        values = np.where(np.isnan(scores[heads]), -np.inf, scores[heads])
        out[int(run)] = int(heads[int(np.argmax(values))])
    return out
