"""Train every (method x protocol) head of a fold in one stack; folds and seeds as parallel tasks.

Reads each seed's `splits.h5` and the feature store (rows matched by id), writes one run per
seed x fold x protocol x method through `heads.predictions`. Where the rows come from is
`heads.sources`, how runs are planned into stacks that fit in memory `heads.planner`; a stack
is one task (`runtime.cluster`): joblib processes on this machine, or a Dask cluster. Every
run's grid points (`heads.search`) are computed once per command and carried with its stack.
Public for `model.final`: `fit_fold` (one fold's stack on any source of folds with the
`splits.store.SplitsFile` interface), `FoldFit`, `use_threads`.
"""
from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

import artifacts
import metrics
from features import store as feature_store
from features.store import FeatureReader
from runtime import cluster
from splits import store as splits_store

from . import inputs as run_inputs
from . import methods, models, planner, predictions, search
from .sources import InMemory, Streamed, epoch_batches, moments, scale_warning


class StackedRuns(NamedTuple):
    """A fold's runs as the heads of one stack: one head per grid point of each run."""
    inputs: models.StackInputs  # over the fold's training rows
    val_targets: np.ndarray  # (P, m, L) each protocol's observed labels of the validation rows
    # (W, m, L) the validation rows' per-entry arrays (negative weights, pseudo-positives)
    val_bank: np.ndarray
    val_verified: np.ndarray | None  # (P, m, L) uint8 verified negatives of the validation rows; None without
    run_of: np.ndarray  # (H,) the run of each head
    points: list  # (H,) each head's grid point (heads.search.Point)


def stack_runs(cfg, sf, fold: int, runs: list, grid: dict, train: np.ndarray,
               validation: np.ndarray) -> StackedRuns:
    """A fold's runs stacked, one head per grid point of each run (`grid`: {method: points}):
    each run's inputs from `heads.inputs` once, at each point's parameters and learning rate."""
    protocols = list(dict.fromkeys(run.protocol for run in runs))
    observed = {p: sf.observed(fold, p) for p in protocols}
    verified = {p: sf.verified_negative(fold, p) for p in protocols}
    if all(v is None for v in verified.values()):
        train_verified = val_verified = None
    else:
        stacked = np.stack([np.zeros(observed[p].shape, bool) if verified[p] is None else verified[p]
                            for p in protocols]).astype(np.uint8)
        train_verified, val_verified = stacked[:, train], stacked[:, validation]
    heads, target_of, run_of, lr_scale, points = [], [], [], [], []
    for r, run in enumerate(runs):
        own = methods.configured(cfg, run.method)
        base = run_inputs.head_inputs(cfg, sf, fold, run.protocol, run.method, train, validation,
                                      observed[run.protocol], params=run_inputs.unzeroed(own))
        for point in grid[run.method]:
            heads.append(run_inputs.with_params(base, point.values, observed[run.protocol], train,
                                                validation))
            target_of.append(protocols.index(run.protocol))
            run_of.append(r)
            lr_scale.append(point.lr / cfg.heads.learning_rate)
            points.append(point)
    inputs, val_bank = run_inputs.stack(heads, np.stack([observed[p][train] for p in protocols]), target_of,
                                        len(validation), lr_scale, train_verified)
    val_targets = np.stack([observed[p][validation] for p in protocols])
    return StackedRuns(inputs, val_targets, val_bank, val_verified, np.array(run_of), points)


class FoldData(NamedTuple):
    """A fold's rows with readable features and what its stack trains on."""
    sf: object  # splits.store.SplitsFile
    train: np.ndarray  # rows of splits.h5
    validation: np.ndarray
    test: np.ndarray
    skipped_invalid: int
    stacked: StackedRuns
    sources: tuple  # InMemory or Streamed over (train, validation, test)

    @property
    def inputs(self) -> models.StackInputs:
        return self.stacked.inputs

    @property
    def run_of(self) -> np.ndarray:
        return self.stacked.run_of


def fold_data(cfg, sf, features_path: str, runs: list, grid: dict, in_ram: bool) -> FoldData:
    """The fold's training / validation / test rows whose features are valid, its stacked runs
    and its feature sources (in RAM, or streamed `shuffle_buffer` rows at a time). `sf`: a
    `splits.store.SplitsFile`, or another source of folds with its interface (`model.final`)."""
    fold = runs[0].fold
    reader = FeatureReader(features_path)
    store_rows = reader.positions(sf.ids)
    valid = reader.valid[store_rows]
    validation = np.flatnonzero(sf.validation(fold) & valid)
    train = np.flatnonzero((sf.test_fold != fold) & ~sf.validation(fold) & valid)
    test = np.flatnonzero((sf.test_fold == fold) & valid)
    window = 0 if in_ram else cfg.heads.shuffle_buffer

    def source(rows):
        return InMemory(reader, store_rows[rows]) if in_ram else Streamed(reader, store_rows[rows], window)

    return FoldData(sf, train, validation, test, int((~valid).sum()),
                    stack_runs(cfg, sf, fold, runs, grid, train, validation),
                    (source(train), source(validation), source(test)))


def known_validation_labels(data: FoldData) -> np.ndarray | None:
    """(P, m, L) bool: which validation labels each protocol knows (its positives and verified
    negatives; every label under a protocol without verified negatives); None when no protocol
    has any."""
    stacked = data.stacked
    if stacked.val_verified is None:
        return None
    verified = stacked.val_verified == 1
    partial = verified.reshape(len(verified), -1).any(1)
    return np.where(partial[:, None, None], (stacked.val_targets == 1) | verified, True)


def selection_labels(cfg, data: FoldData) -> models.Selection | None:
    """What a search scores validation rows against (`heads.search`): each head's protocol's
    observed labels (over the positives and verified negatives when the protocol has any), or
    the rows' truth under select = "clean"; None without a search."""
    if not search.enabled(cfg):
        return None
    if cfg.heads.search.select == "clean":
        return models.Selection(data.sf.labels[data.validation][None], np.zeros(len(data.run_of), int))
    return models.Selection(data.stacked.val_targets, np.asarray(data.inputs.target_of),
                            known_validation_labels(data))


class FoldFit(NamedTuple):
    """A fold's trained stack with what it was trained on and what it predicted."""
    data: FoldData
    stack: models.HeadStack
    probabilities: np.ndarray  # (H, n_test, L)
    val_probabilities: np.ndarray | None  # (H, m, L), None without validation rows
    access: str  # how the features were read: "ram", or "stream (window N rows)"

    def winners(self, cfg) -> dict[int, int]:
        """{run index: its head}: the winning grid point under a search, else the run's one head."""
        if search.enabled(cfg):
            return search.winners(self.stack.val_score_, self.data.run_of)
        return {r: int(np.flatnonzero(self.data.run_of == r)[0]) for r in np.unique(self.data.run_of)}


def use_threads(n_threads: int) -> None:
    """TensorFlow's threads for a task (0: its default) and deterministic kernels."""
    from runtime.tf_quiet import tf
    if n_threads:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()


def train_fold(cfg, splits_path: str, features_path: str, runs: list, grid: dict, provenance: list[dict],
               n_threads: int = 0, in_ram: bool = True) -> list[dict]:
    """Train one fold's heads as one stack and write their runs (a task; see `runtime.cluster`)."""
    use_threads(n_threads)
    fit = fit_fold(cfg, splits_store.load(splits_path), features_path, runs, grid, in_ram)
    return write_runs(cfg, runs, provenance, fit,
                      {"features": str(features_path), "feature_access": fit.access})


def fit_fold(cfg, sf, features_path: str, runs: list, grid: dict, in_ram: bool = True) -> FoldFit:
    """One fold's heads (every grid point of each run) trained as one stack on `sf`'s fold, and
    their probabilities of the fold's test and validation rows."""
    seed, fold = runs[0].seed, runs[0].fold
    assert all((run.seed, run.fold) == (seed, fold) for run in runs)

    # data: the fold's rows with readable features (validation rows apart), targets and weights
    data = fold_data(cfg, sf, features_path, runs, grid, in_ram)
    x_train, x_val, x_test = data.sources
    stacked = data.stacked
    validation = models.Validation(x_val.blocks, stacked.val_targets, stacked.val_bank,
                                   stacked.val_verified) \
        if len(data.validation) else None
    window = 0 if in_ram else cfg.heads.shuffle_buffer

    # model and loop: one head per grid point of each run, all points of a run from the run's initial weights
    keys = [runs[r].key.split("/", 1)[1] for r in data.run_of]
    stack = models.make(cfg.heads.head, keys, cfg.heads, seed + fold)
    rng = np.random.default_rng([seed, fold])

    def batches():
        return x_train.batches(epoch_batches(len(data.train), cfg.heads.batch_size, rng, window))

    def predict(part, n_rows):
        parts = [stack.predict_proba(x) for _, x in part.blocks()]
        return np.concatenate(parts, axis=1) if parts else \
            np.zeros((len(keys), n_rows, data.inputs.targets.shape[2]), np.float32)

    stack.fit(batches, data.inputs, validation, d_in=x_train.n_features, select=selection_labels(cfg, data),
              train_blocks=x_train.blocks, standardize=moments(x_train) if cfg.heads.standardize else None)
    probabilities = predict(x_test, len(data.test))
    val_probabilities = predict(x_val, len(data.validation)) if len(data.validation) else None
    return FoldFit(data, stack, probabilities, val_probabilities,
                   "ram" if in_ram else f"stream (window {window} rows)")


def search_rows(cfg, run, fit: FoldFit, heads: np.ndarray, chosen: int) -> list[dict]:
    """search.csv of one run: per grid point (`heads`, the run's heads) its settings, best epoch,
    validation scores (observed labels, and truth where the splits hold it) and test mAP, and
    which one won."""
    data, stack = fit.data, fit.stack
    sf = data.sf
    searched = search.grids(cfg, run.method)
    protocol = data.inputs.target_of[heads[0]]
    val_observed = data.stacked.val_targets[protocol]
    known = known_validation_labels(data)
    val_known = None if known is None else known[protocol]
    rows = []
    for h in heads:
        val_scores = fit.val_probabilities[h]
        row = {**data.stacked.points[h].describe(searched), "epoch": int(stack.best_epoch_[h]),
               "val_map_observed": float(metrics.mean_average_precision(val_observed, val_scores, val_known)),
               "val_map_clean": float(metrics.mean_average_precision(sf.labels[data.validation], val_scores))
               if sf.ground_truth else float("nan"),
               "test_map": float(metrics.mean_average_precision(sf.labels[data.test], fit.probabilities[h])),
               "chosen": h == chosen}
        rows.append(row)
    return rows


def write_runs(cfg, runs, provenance, fit: FoldFit, attrs: dict) -> list[dict]:
    """history.csv, timing.json and predictions.h5 (written last: it marks the run complete) of
    every run of a trained stack: its winning grid point's head under a search, with
    search.csv of every point."""
    data, stack = fit.data, fit.stack
    sf, inputs = data.sf, data.inputs
    winners = fit.winners(cfg)
    known = known_validation_labels(data)
    steps = len(stack.history_) * -(-len(data.train) // cfg.heads.batch_size)
    timing = {"fold_fit_seconds": stack.fit_seconds_, "heads_in_stack": len(data.run_of), "steps": steps,
              "train_rows": len(data.train), "test_rows": len(data.test),
              "skipped_invalid": data.skipped_invalid}
    records = []
    for r, run in enumerate(runs):
        h = winners[r]
        protocol = inputs.target_of[h]
        directory = predictions.run_dir(cfg, run)
        directory.mkdir(parents=True, exist_ok=True)
        predictions.write_history(directory, stack.history_, h)
        artifacts.write_text(directory / "timing.json", json.dumps(timing))
        extra = {}
        if search.enabled(cfg):
            rows = search_rows(cfg, run, fit, np.flatnonzero(data.run_of == r), h)
            artifacts.write_text(directory / "search.csv",
                                 pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
            point = next(row for row in rows if row["chosen"])
            extra["search"] = json.dumps({**{k: v for k,
                                             v in point.items() if k not in ("chosen", "test_map")},
                                          "points": len(rows), "select": cfg.heads.search.select})
        run_attrs = predictions.run_attrs(cfg, run, "heads", cfg.heads.head, features=attrs["features"],
                                          skipped_invalid=data.skipped_invalid,
                                          feature_access=attrs["feature_access"], **extra)
        validation = None if fit.val_probabilities is None else predictions.ValidationRows(
            sf.ids[data.validation], data.stacked.val_targets[protocol], fit.val_probabilities[h],
            sf.labels[data.validation] if sf.ground_truth else None,
            None if known is None else known[protocol])
        predictions.write(directory, ids=sf.ids[data.test], labels=sf.labels[data.test],
                          probabilities=fit.probabilities[h], attrs=run_attrs, provenance=provenance[r],
                          validation=validation, known=None if sf.known is None else sf.known[data.test])
        records.append({"run": run.label,
                        "observed_positives": int(inputs.targets[protocol].sum()), **timing})
    return records


def checked_inputs(cfg, reader: FeatureReader) -> dict:
    """{seed: SplitsFile} after checking the config against every input before any training:
    the registry, the search's validation rows, the stores' rows, ground truth for oracles, a
    score file, the protocols."""
    methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
    search.check(cfg)
    if search.enabled(cfg) and not cfg.splits.validation:
        raise ValueError(f"{cfg.source}: [heads.search] chooses on validation rows, and splits.validation is "
                         "0; set it (0.1 holds out a tenth of each fold's training rows) and rerun "
                         "`make splits`")
    reader.check_sources()
    splits_files = {seed: splits_store.load(splits_store.path(cfg, seed)) for seed in cfg.seeds}
    for sf in splits_files.values():
        reader.positions(sf.ids)
        run_inputs.check_truth(cfg.heads.methods, sf.ground_truth, sf.path)
        if any(run_inputs.needs(m).pseudo for m in cfg.heads.methods):
            run_inputs.score_matrix(cfg, sf)  # a score file that does not match is named before any training
        if search.enabled(cfg) and cfg.heads.search.select == "clean" and not sf.ground_truth:
            raise ValueError(f"heads.search.select = 'clean' reads the validation rows' truth, and {sf.path} "
                             "holds "
                             "none; use select = 'observed'")
        for protocol in predictions.configured_protocols(cfg):
            sf.column(protocol)
    return splits_files


def train(cfg, only: dict | None = None, n_jobs: int | None = None, force: bool = False) -> list[dict]:
    """Train the config's grid of heads (or the `only` part of it); complete runs of the same
    provenance are skipped, runs made from other inputs or settings refused (unless `force`)."""
    # setup: the inputs, the grid, what is left to do
    reader = FeatureReader(feature_store.path(cfg))
    splits_files = checked_inputs(cfg, reader)
    if not cfg.heads.standardize and (warning := scale_warning(reader)):
        print(warning)
    first = next(iter(splits_files.values()))
    runs = predictions.select(predictions.grid(cfg, "heads", first.n_folds,
                                               predictions.configured_protocols(cfg)),
                              only, f"[heads] of {cfg.source}")
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"--n-jobs {n_jobs}: the number of parallel stacks must be at least 1")
    n_jobs = n_jobs or cfg.heads.n_jobs
    in_ram = planner.features_in_ram(cfg, reader, len(first.ids), n_jobs)
    window = 0 if in_ram or cfg.heads.shuffle_buffer >= len(first.ids) else cfg.heads.shuffle_buffer

    def provenance(run):
        return predictions.head_provenance(cfg, run, splits_files[run.seed].fingerprint,
                                           reader.fingerprint, window)

    # train: the runs to do, planned into stacks, each stack a task
    with predictions.claimed(cfg, runs, provenance, force) as todo:
        if not todo:
            return []
        grid = search.grid(cfg, cfg.heads.methods)
        plan = planner.plan(cfg, todo, grid, reader, len(first.classes), in_ram, n_jobs)
        artifacts.writable(cfg.run_dir)
        print(f"heads: {len(todo)} runs in {len(plan.stacks)} stack(s) of up to {plan.largest} "
              f"{cfg.heads.head} heads "
              f"({'grid points of ' if search.enabled(cfg) else ''}seeds x folds); {reader.shape[1]} features"
              + (" (sparse)" if reader.sparse else "")
              + f"; {plan.n_jobs} parallel job(s){plan.fewer}; features "
              + ("in RAM" if in_ram else f"streamed {cfg.heads.shuffle_buffer} rows at a time")
              + f"; {int((~reader.valid).sum())} invalid rows skipped")
        tasks = stack_tasks(cfg, plan, grid, splits_files, reader, provenance, in_ram)
        return [record for stack_records in cluster.run(cfg, tasks, plan.n_jobs) for record in stack_records]


def stack_tasks(cfg, plan: planner.Plan, grid: dict, splits_files: dict, reader: FeatureReader, provenance,
                in_ram: bool) -> list[cluster.Task]:
    """One task per planned stack, labelled by its seed and fold (and part, when a fold's runs
    take several stacks)."""
    parts: dict = {}
    for stack in plan.stacks:
        parts[(stack.seed, stack.fold)] = parts.get((stack.seed, stack.fold), 0) + 1
    tasks, made = [], {}
    for stack in plan.stacks:
        key = (stack.seed, stack.fold)
        made[key] = made.get(key, 0) + 1
        part = f" stack {made[key]} of {parts[key]}" if parts[key] > 1 else ""
        own = {run.method: grid[run.method] for run in stack.runs}
        tasks.append(cluster.Task(f"heads seed {stack.seed} fold {stack.fold + 1}{part}", train_fold,
                                  (cfg, str(splits_files[stack.seed].path), str(reader.path), stack.runs, own,
                                   [provenance(r) for r in stack.runs],
                                   cluster.threads_per_task(cfg, plan.n_jobs),
                                   in_ram)))
    return tasks
