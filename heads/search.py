"""The search: which settings each run's heads try, and which one wins (TensorFlow-free).

Under `[heads.search]` a run (seed, fold, protocol, method) trains one head per grid point: a
learning rate times every combination of its method's searched parameters (`heads.methods`:
each entry's `search`, overridden by [heads.search.params.<method>]). All points of a run start
from the same initial weights (the run's seed key), so they differ only in their settings, and
they train in the fold's one stack (`heads.models.HeadStack`: per-head learning rates and
parameters). Without the search a run has one point: [heads] learning_rate and its parameters.

Selection, said once. `pool = "study"` (the default): every run's stack trains its grid and
records each point's validation score after every epoch (`search.csv`), halving the points at
the milestones (`halving`: each run keeps its best third, and always its unsearched setting);
once every (seed, fold) of a (method, protocol) is searched, `choose` keeps the unsearched
setting ([heads] values at [heads] epochs, one recipe) unless a (point, epoch) beats it in the
paired differences over the runs by more than `evidence` standard errors (3 by default; 0: the
best mean wins), and every run of it trains that one setting for that many epochs: its
predictions are that head's. Why the guard: under missing labels the observed-label score
prefers settings that fit the hiding pattern (faster learning rates, more epochs), and on yeast
the best mean lost to one recipe at .75 and single positive (docs/results.md).
`pool = "run"`: each head keeps the epoch of its best validation score; per run the point with
the best score wins (ties: the earlier point of `points`). The score is the mean AP
(`metrics.mean_average_precision`) over
classes with a positive among the validation rows' labels: their observed labels under
`select = "observed"` (the default: what a user has; a hidden positive counts as a negative),
their ground truth under `select = "clean"` (an oracle, as Cole'21's clean-validation variant).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import methods


@dataclass(frozen=True)
class Point:
    """One grid point of a run: a learning rate and the method's resolved parameters (and, once a
    pooled search chose it, the epochs it trains: 0 = [heads] epochs)."""
    lr: float
    params: tuple  # sorted (name, value) pairs
    epochs: int = 0

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
    """Every grid point of a run of `method` (one point when it is not searched). The unsearched
    setting ([heads] learning_rate and the method's configured parameters) is always one of them,
    first when the grid lacks it: a pooled choice measures every point against it."""
    base, reference = methods.configured(cfg, method), unsearched(cfg, method)
    if not searched(cfg, method):
        return [reference]
    grid = grids(cfg, method)
    names = sorted(grid)
    out = []
    for lr in learning_rates(cfg):
        for combination in itertools.product(*(grid[name] for name in names)):
            out.append(Point(lr, tuple(sorted({**base, **dict(zip(names, combination))}.items()))))
    return out if reference in out else [reference, *out]


def unsearched(cfg, method: str) -> Point:
    """The setting a run of `method` trains without the search: [heads] learning_rate and the
    method's configured parameters."""
    return Point(cfg.heads.learning_rate, tuple(sorted(methods.configured(cfg, method).items())))


def reference(cfg, method: str) -> int:
    """The position of the unsearched setting among `points(cfg, method)`."""
    return points(cfg, method).index(unsearched(cfg, method))


def grid(cfg, names) -> dict[str, list[Point]]:
    """{method: `points`} of each method named: what a command computes once and its stacks carry.
    A pooled search's chosen settings are keyed {(method, protocol): [point]} (`points_of`)."""
    return {name: points(cfg, name) for name in dict.fromkeys(names)}


def points_of(grid: dict, run) -> list[Point]:
    """A run's grid points: its (method, protocol)'s when a choice names them, else its method's."""
    return grid.get((run.method, run.protocol)) or grid[run.method]


def pooled(cfg) -> bool:
    """Whether the search chooses one setting per (method, protocol) over the whole study."""
    return enabled(cfg) and cfg.heads.search.pool == "study"


def milestone_epochs(cfg) -> tuple[int, ...]:
    """The epochs after which a searched stack halves each run's points (none when halving = 1)."""
    search, epochs = cfg.heads.search, cfg.heads.epochs
    if not enabled(cfg) or search.halving <= 1:
        return ()
    return tuple(sorted({min(max(round(m * epochs), 1), epochs - 1) for m in search.milestones} - {0}))


def choose(scores: pd.DataFrame, reference: tuple[int, int] | None = None,
           evidence: float = 0.0) -> pd.Series:
    """The pooled choice of one (method, protocol) from its runs' per-epoch validation scores
    (`scores`: seed, fold, point, epoch, score; NaN from the epoch a run dropped a point): in each
    run a dropped point keeps the score of its last epoch (it was behind there), then per (point,
    epoch) the mean over runs. Without `evidence` the highest mean wins (ties: the earlier point,
    then the earlier epoch). With it, the `reference` (point, epochs), the unsearched setting (at
    its last epoch when training stopped before), wins unless some (point, epoch) beats it in the
    paired differences over the runs by more than `evidence` standard errors; of those, the one
    with the highest mean. Returns point, epoch, score (the pooled mean), runs and
    lead: the winner's lower bound over the reference under `evidence`, else its mean difference
    from it (NaN without a reference)."""
    table = scores.pivot_table(index=["point", "epoch"], columns=["seed", "fold"], values="score",
                               dropna=False)
    table = table.groupby(level="point").ffill()
    mean = table.mean(axis=1, skipna=False).sort_index()
    if mean.isna().all():
        raise ValueError("no grid point has a validation score in every run; the search has nothing to "
                         "choose")
    picked, lead = mean.idxmax(), float("nan")
    if reference is not None:
        key = reference_key(table, *reference)
        differences = table.sub(table.loc[key], axis=1)
        picked, lead = guarded(differences, key, evidence) if evidence else \
            (picked, float(differences.loc[picked].mean()))
    point, epoch = picked
    return pd.Series({"point": int(point), "epoch": int(epoch), "score": float(mean[picked]),
                      "runs": int(table.shape[1]), "lead": lead})


def reference_key(table: pd.DataFrame, point: int, epochs: int) -> tuple[int, int]:
    """(point, epoch) of the unsearched setting in a `choose` table: `epochs`, or its last epoch
    when training stopped before; ValueError when some run has no score of it."""
    trained = table.index.get_level_values("epoch")[table.index.get_level_values("point") == point]
    key = (point, int(min(epochs, trained.max()))) if len(trained) else None
    if key is None or table.loc[key].isna().any():
        raise ValueError(f"the unsearched setting (grid point {point}) has no validation score in every "
                         "run's search.csv, so the search cannot measure the grid against it; train the "
                         "search again (python -m heads --force)")
    return key


def guarded(differences: pd.DataFrame, reference: tuple[int, int], evidence: float) -> tuple[tuple, float]:
    """((point, epoch), lower bound) of `choose` with evidence, from each (point, epoch)'s paired
    `differences` from the `reference` over the runs (columns): of those whose mean less
    `evidence` standard errors is above 0, the highest mean (ties: the earlier point, then epoch);
    the reference (bound 0) when there is none, or with fewer than 2 runs."""
    runs = differences.shape[1]
    if runs < 2:
        return reference, 0.0
    mean = differences.mean(axis=1, skipna=False).sort_index()
    bound = mean - evidence * differences.std(axis=1, ddof=1, skipna=False) / np.sqrt(runs)
    ahead = mean[bound > 0]
    if ahead.empty:
        return reference, 0.0
    picked = ahead.idxmax()
    return picked, float(bound[picked])


def describe(cfg, method: str) -> dict:
    """What a run's provenance records of its search: the grid, the selection and how it pools and
    halves (empty when not searched)."""
    if not searched(cfg, method):
        return {}
    search = cfg.heads.search
    return {"lr": list(learning_rates(cfg)), **{k: list(v) for k, v in sorted(grids(cfg, method).items())},
            "select": search.select, "pool": search.pool, "halving": search.halving,
            "milestones": list(milestone_epochs(cfg)), "unsearched": reference(cfg, method)}


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
