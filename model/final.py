"""The final model: `python -m model fit --config C` (`make model`).

It trains [model] method (or "best": the study's leaderboard leader in mAP at [model] protocol)
on every labelled row of the dataset, its labels as they are (`[model] hide` hides a share of
each row's positives first, to measure what `model suggest` finds), holding out a stratified
[model] validation share for the search's selection, early stopping and the thresholds. Under
[heads.search] the method's grid is searched as in the study. The heads are the study's
(`heads.trainer.fit_fold` on the folds of `LabelledRows`): with `--fold K --protocol P` the
model is trained on the study's fold K instead, and predicts that fold's test rows as the
study's run did.

With [model] folds = K > 0 the labelled rows are also cut into K stratified folds, each
predicted by a model of the same recipe trained on the others: the out-of-fold predictions
`model suggest` ranks the missing labels with. All K + 1 stacks are tasks of
`runtime.cluster` ([heads] n_jobs processes, or the Dask cluster of [cluster]).
Writes the model directory (`model.directory`) at [model] dir, default runs/<name>/model.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import artifacts
import configs
import metrics
from features import store as feature_store
from features.store import FeatureReader
from heads import inputs as run_inputs
from heads import methods, search
from heads.predictions import HeadRun
from runtime import cluster
from splits import folds
from splits import store as splits_store

from . import directory

# the seed key of [model] hide's draw (the splits' ratios use < 10,000, single positive 20,000)
HIDE_KEY = 30_000


@dataclass(frozen=True)
class LabelledRows:
    """A dataset's labelled rows as folds for the trainer, with the part of
    `splits.store.SplitsFile`'s interface `heads.trainer` reads. Folds 0..K-1 hold out the
    rows of `test_fold` == k (the out-of-fold models); fold K, the final one, holds out none.
    Every fold keeps its own stratified validation rows. `labels` are the labels as given: no
    ground truth (`ground_truth` is False: oracle methods are refused)."""
    path: Path  # the splits.h5 the rows come from
    ids: np.ndarray  # (N,) str
    classes: list[str]
    labels: np.ndarray  # (N, L) uint8 as given
    trained_labels: np.ndarray  # (N, L) uint8: `labels` with [model] hide applied
    test_fold: np.ndarray  # (N,) int8: the out-of-fold model that predicts each row; -1 without folds
    held: np.ndarray  # (K + 1, N) bool validation rows of each fold
    protocol: str  # protocol_key of [model] hide
    fingerprint: str
    known: np.ndarray | None = None  # (N, L) bool: a three-state dataset's known labels; None: all
    ground_truth: bool = False

    @property
    def final_fold(self) -> int:
        return len(self.held) - 1

    @property
    def protocols(self) -> list[str]:
        return [self.protocol]

    def column(self, protocol) -> int:
        if splits_store.protocol_key(protocol) != self.protocol:
            raise ValueError(f"the final model's rows have protocol {self.protocol}, not {protocol}")
        return 0

    def observed(self, fold: int, protocol) -> np.ndarray:
        self.column(protocol)
        return self.trained_labels

    def verified_negative(self, fold: int, protocol) -> np.ndarray | None:
        """The dataset's verified negatives (three-state labels), else None."""
        self.column(protocol)
        return None if self.known is None else self.known & (self.labels == 0)

    def missing_rate(self, fold: int, protocol) -> float:
        """The share of positives [model] hide hides ([dataset] natural_missing_rate goes on top)."""
        return float(self.protocol)

    def validation(self, fold: int) -> np.ndarray:
        return self.held[fold]


def labelled_rows(cfg, sf, n_folds: int | None = None) -> LabelledRows:
    """The rows of splits file `sf` (every row, its labels as given) as the final fit's folds:
    `n_folds` out-of-fold ones ([model] folds by default), then the final one."""
    seed, hide = cfg.seeds[0], cfg.model.hide
    n_folds = cfg.model.folds if n_folds is None else n_folds
    trained = sf.labels.copy()
    if hide:
        trained[folds.hide_positives(sf.labels, hide, np.random.default_rng([seed, HIDE_KEY]))] = 0
    n = len(sf.ids)
    test_fold = folds.make_folds(trained, n_folds, seed) if n_folds else np.full(n, -1, np.int8)
    held = np.zeros((n_folds + 1, n), bool)
    if n_folds:
        held[:-1] = folds.validation_rows(trained, test_fold, cfg.model.validation, seed, "model.validation")
    held[-1] = folds.held_out(trained, cfg.model.validation, seed + n_folds, "model.validation")
    recipe = {"splits": sf.fingerprint, "hide": hide, "folds": n_folds, "validation": cfg.model.validation,
              "seed": seed}
    return LabelledRows(sf.path, sf.ids, sf.classes, sf.labels, trained, test_fold, held,
                        splits_store.protocol_key(hide), artifacts.fingerprint(recipe), sf.known)


def default_protocol(cfg) -> str:
    """[model] protocol, else the configured ratio nearest the share of positives the model's
    labels lack: 1 - (1 - [dataset] natural_missing_rate) (1 - [model] hide)."""
    if cfg.model.protocol:
        return splits_store.protocol_key(cfg.model.protocol)
    missing = 1 - (1 - cfg.dataset.natural_missing_rate) * (1 - cfg.model.hide)
    candidates = cfg.splits.ratios or (0.0,)
    return splits_store.protocol_key(min(candidates, key=lambda r: abs(r - missing)))


def leaderboard_path(cfg) -> Path:
    """The study's leaderboard (`analysis.leaderboard`, written by `make figures`)."""
    return cfg.run_dir / "analysis" / "leaderboard.csv"


def resolve_method(cfg) -> tuple[str, str]:
    """([model] method, or for "best" the non-oracle heads method with the highest mean mAP in
    the study's leaderboard column of `default_protocol`; where it came from)."""
    if cfg.model.method != "best":
        return cfg.model.method, "[model] method"
    path, protocol = leaderboard_path(cfg), splits_store.protocol_label(default_protocol(cfg))
    if not path.is_file():
        raise ValueError(f"{cfg.source}: [model] method = 'best' takes the study's leader, and {path} does "
                         "not "
                         "exist; run the study first (make heads figures), or name a method")
    board = pd.read_csv(path, dtype={"protocol": str})
    if "method" not in board.columns or "stage" not in board.columns:
        raise ValueError(f"{path} names no method ids (it was written before they were its key); rerun the "
                         "report (make figures)")
    rows = board[(board["metric"] == "mAP") & (board["protocol"] == protocol) & ~board["oracle"].astype(bool)]
    # the study's heads methods
    rows = rows[(rows["stage"] == "heads") & rows["method"].isin(cfg.heads.methods)]
    if rows.empty:
        shown = ", ".join(sorted(set(board["protocol"])))
        raise ValueError(f"{path} has no heads method at protocol {protocol!r} (its protocols: {shown}); set "
                         "[model] protocol to one of them")
    leader = rows.loc[rows["mean"].idxmax()]
    return leader["method"], (f"the leader of {path} at {protocol} (mAP {leader['mean']:.4f} over "
                              f"{int(leader['runs'])} runs)")


def check(cfg) -> None:
    """[model] against the registry: a known method (or "best"), not an oracle, a known protocol."""
    if cfg.model.method != "best":
        if cfg.model.method not in methods.METHODS:
            raise ValueError(f"{cfg.source}: model.method = {cfg.model.method!r} is no method; 'best' or one "
                             "of: "
                             f"{', '.join(methods.METHODS)}")
        if run_inputs.needs(cfg.model.method).oracle:
            raise ValueError(f"{cfg.source}: model.method = {cfg.model.method!r} is an oracle: it reads the "
                             "truth of "
                             "every label, which your own data does not have; choose a method that learns "
                             "from "
                             "observed labels")
    if cfg.dataset.reviewed_labels and cfg.model.hide:
        raise ValueError(f"{cfg.source}: model.hide = {cfg.model.hide} with dataset.reviewed_labels: the "
                         "reviewed labels are what a person decided, and hiding their positives again would "
                         "suggest decided entries anew; set model.hide = 0")
    try:
        default_protocol(cfg)
    except ValueError as err:
        raise ValueError(f"{cfg.source}: model.protocol: {err}") from None


def provenance(cfg, method: str, rows_fingerprint: str, features_fingerprint: str, fold) -> dict:
    """What a model directory is made from: [heads] (how the grid runs aside), the method, its
    parameters and search, [model], the rows and features it read, which fold."""
    heads = configs.section(cfg, "heads",
                            exclude=("methods", "params", "n_jobs", "features", "shuffle_buffer",
                                                   "search"))
    return {**heads, "search": search.describe(cfg, method), "method": method,
            "params": methods.configured(cfg, method),
            **configs.section(cfg, "model", exclude=("dir", "method")),
            "dataset.natural_missing_rate": cfg.dataset.natural_missing_rate, "seed": cfg.seeds[0],
            "fold": fold,
            "rows": rows_fingerprint, "features": features_fingerprint,
            "versions": artifacts.versions("tensorflow")}


def fit(cfg, fold: int | None = None, protocol: str | None = None, force: bool = False) -> Path:
    """Write the config's model directory (module docstring); `fold` (1-based) and `protocol`:
    train on that fold of the study's splits instead of every labelled row. A complete model of
    the same provenance is kept ("already done"); one of another is refused unless `force`."""
    # setup: the method, the rows and their folds, the features (TensorFlow only from here: `check`
    # stays light)
    from heads import planner
    method, why = _checked_method(cfg)
    reader = FeatureReader(feature_store.path(cfg))
    reader.check_sources()
    sf = splits_store.load(splits_store.path(cfg))
    reader.positions(sf.ids)
    if fold is None:
        source = labelled_rows(cfg, sf)
        runs = [HeadRun(cfg.seeds[0], k, source.protocol, method) for k in range(source.final_fold + 1)]
    else:
        source, runs = sf, [_study_run(cfg, sf, fold, protocol, method)]
    out = cfg.model_dir
    cfg, grid, chosen = model_grid(cfg, method,
                                   runs[0].protocol if fold is not None else default_protocol(cfg))
    recipe = provenance(cfg, method, source.fingerprint, reader.fingerprint,
                        "all" if fold is None else {"fold": fold, "protocol": runs[0].protocol})
    if chosen:
        recipe["search.chosen"] = chosen
    with artifacts.claim(out):
        directory.recover(out)
        if not artifacts.must_make(directory.manifest_path(out), recipe, force):
            print(f"{out}: already done (use --force to redo)")
            return out
        # train: one stack per fold (the out-of-fold models, then the final one), each a task
        n_jobs = min(cfg.heads.n_jobs, len(runs))
        in_ram = planner.features_in_ram(cfg, reader, len(sf.ids), n_jobs)
        points = len(grid[method])
        print(f"model: {methods.display_name(method)} ({why}) on {len(sf.ids)} rows x {len(sf.classes)} "
              "classes, "
              f"{reader.shape[1]} features; {points} grid point(s) per stack; {len(runs) - 1} out-of-fold "
              "stack(s) "
              f"and the final one; {n_jobs} parallel job(s)")
        labels = [f"model: study fold {fold}"] if fold is not None else \
            [f"model: out-of-fold stack {run.fold + 1} of {len(runs) - 1}"
             for run in runs[:-1]] + ["model: final stack"]
        tasks = [cluster.Task(label, fit_task, (cfg, source, str(reader.path), run, grid,
                                                cluster.threads_per_task(cfg, n_jobs), in_ram))
                 for label, run in zip(labels, runs)]
        results = cluster.run(cfg, tasks, n_jobs)
        # save: the final stack's winner with its thresholds, and the out-of-fold predictions
        final = results[-1]
        meta = manifest(cfg, method, why, final, source, reader, fold, runs[-1])
        oof = out_of_fold(source, results[:-1], cfg) if fold is None and cfg.model.folds else None
        directory.write(out, meta, final.weights, final.biases, recipe, out_of_fold=oof)
    print(f"{out}: {meta['display']} at lr {meta['learning_rate']:g}, epoch {meta['epoch']}; thresholds: "
          "global "
          f"{meta['thresholds']['global']:.3f}, per class {np.min(meta['thresholds']['class']):.3f}.."
          f"{np.max(meta['thresholds']['class']):.3f}"
          + ("; out-of-fold predictions of every row" if oof else ""))
    return out


def model_grid(cfg, method: str, protocol: str) -> tuple:
    """(the config the model trains under, its grid, the pooled choice it takes or {}): under a
    pooled search the study's chosen setting of `method` at `protocol` (runs/<name>/search_choice.csv,
    its epochs with it); without one, every grid point chosen on the model's own validation rows,
    as a per-run search chooses."""
    if not search.pooled(cfg):
        return cfg, search.grid(cfg, [method]), {}
    path = cfg.run_dir / "search_choice.csv"
    label = splits_store.protocol_label(splits_store.protocol_key(protocol))
    if path.is_file():
        table = pd.read_csv(path, dtype={"protocol": str})
        row = table[(table["method"] == method) & (table["protocol"] == label)]
        if len(row):
            point = search.grid(cfg, [method])[method][int(row["point"].iloc[0])]
            shown = json.loads(row["params"].iloc[0])
            chosen = search.Point(point.lr, point.params, int(shown["epoch"]))
            return cfg, {method: [chosen]}, shown
    per_run = dataclasses.replace(cfg.heads.search, pool="run")
    cfg = dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, search=per_run))
    return cfg, search.grid(cfg, [method]), {}


def _checked_method(cfg) -> tuple[str, str]:
    """The method to train (`resolve_method`) after checking the config against the registry."""
    check(cfg)
    methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
    search.check(cfg)
    method, why = resolve_method(cfg)
    if search.enabled(cfg) and search.searched(cfg, method) and not cfg.model.validation:
        raise ValueError(f"{cfg.source}: the search chooses on validation rows; set [model] validation")
    return method, why


def _study_run(cfg, sf, fold: int, protocol: str | None, method: str) -> HeadRun:
    """The study's run of `method` on fold `fold` (1-based) under `protocol`, checked."""
    if not 1 <= fold <= sf.n_folds:
        raise ValueError(f"--fold {fold}: {sf.path} has folds 1..{sf.n_folds}")
    if protocol is None:
        raise ValueError("--fold needs --protocol: the fold's labels under which protocol (e.g. 0.5)")
    key = splits_store.protocol_key(protocol)
    sf.column(key)
    if not sf.validation(fold - 1).any():
        raise ValueError(f"{sf.path} holds no validation rows; the model's thresholds need them: set "
                         "[splits] "
                         "validation and rerun make splits")
    return HeadRun(cfg.seeds[0], fold - 1, key, method)


class FoldModel(NamedTuple):
    """One fold's winning head (what `fit_task` returns): its weights and setting, and its
    probabilities of the fold's validation and held-out rows."""
    weights: list  # (d, h_1), ..., (h_n, L) float32
    biases: list  # (h_1,), ..., (L,) float32
    lr: float
    params: dict  # the winning grid point's parameters
    epoch: int
    val_score: float  # the search's validation score (NaN without a search)
    validation: np.ndarray  # the fold's validation rows
    val_probabilities: np.ndarray  # (m, L)
    test: np.ndarray  # the fold's held-out rows (none for the final fold)
    probabilities: np.ndarray  # (n_test, L)
    train_rows: int


def fit_task(cfg, source, features_path: str, run: HeadRun, grid: dict, n_threads: int,
             in_ram: bool) -> FoldModel:
    """One fold's stack of `run`'s grid points (a task): its winning head."""
    from heads import trainer
    trainer.use_threads(n_threads)
    fit = trainer.fit_fold(cfg, source, features_path, [run], grid, in_ram)
    head = fit.winners(cfg)[0]
    stack = fit.stack
    point = fit.data.stacked.points[head]
    return FoldModel([w[head] for w in stack.weights_], [b[head, 0] for b in stack.biases_], point.lr,
                     point.values,
                     int(stack.best_epoch_[head]),
                     float(stack.val_score_[head]) if search.enabled(cfg) else float("nan"),
                     fit.data.validation, fit.val_probabilities[head], fit.data.test, fit.probabilities[head],
                     len(fit.data.train))


def manifest(cfg, method: str, why: str, final: FoldModel, source, reader: FeatureReader, fold,
             run: HeadRun) -> dict:
    """model.json's content (`model.directory`) for the final stack's result `final`."""
    val_observed = source.observed(run.fold, run.protocol)[final.validation]
    val_scores = final.val_probabilities
    verified = source.verified_negative(run.fold, run.protocol)
    val_known = None if verified is None else (val_observed == 1) | verified[final.validation]
    return {
        "method": method, "display": methods.display_name(method), "chosen_by": why,
        "params": final.params, "learning_rate": final.lr, "epoch": final.epoch,
        "head": {"type": cfg.heads.head, "hidden": [int(w.shape[1]) for w in final.weights[:-1]],
                 "activation": "sigmoid"},
        "feat_dim": int(reader.shape[1]), "classes": list(source.classes),
        "thresholds": {"global": metrics.best_global_threshold(val_observed, val_scores, val_known),
                       "class": metrics.best_f1_thresholds(val_observed, val_scores, val_known).tolist()},
        "features": directory.feature_contract(reader),
        "training": {"rows": final.train_rows, "validation_rows": len(val_observed),
                     "protocol": run.protocol, "hide": cfg.model.hide,
                     "fold": "all" if fold is None else fold,
                     "missing_rate": run_inputs.missing_rate(cfg, source, run.fold, run.protocol),
                     "seed": run.seed, "validation_score": final.val_score},
    }


def out_of_fold(rows: LabelledRows, results: list[FoldModel], cfg) -> dict:
    """out_of_fold.h5's arrays (`model.directory`): each row's probabilities from the fold model
    that held it out (NaN where its features were unreadable)."""
    probabilities = np.full(rows.labels.shape, np.nan, np.float32)
    for result in results:
        probabilities[result.test] = result.probabilities
    known = {} if rows.known is None else {"known": rows.known}
    return {"ids": np.asarray(rows.ids, object), "observed": rows.trained_labels, "labels": rows.labels,
            "probabilities": probabilities, "fold": rows.test_fold, **known,
            "attrs": {"missing_rate": run_inputs.missing_rate(cfg, rows, 0, rows.protocol),
                      "hidden": bool(cfg.model.hide > 0)}}
