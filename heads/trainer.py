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
    unsearched: np.ndarray  # (H,) bool: whether a head is its run's unsearched setting

    @property
    def searching(self) -> bool:
        """Whether these are a search's grid points (none has the epochs of a pooled choice)."""
        return not any(point.epochs for point in self.points)


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
    heads, target_of, run_of, lr_scale, points, unsearched = [], [], [], [], [], []
    for r, run in enumerate(runs):
        own = methods.configured(cfg, run.method)
        base = run_inputs.head_inputs(cfg, sf, fold, run.protocol, run.method, train, validation,
                                      observed[run.protocol], params=run_inputs.unzeroed(own))
        reference = search.unsearched(cfg, run.method)
        for point in search.points_of(grid, run):
            heads.append(run_inputs.with_params(base, point.values, observed[run.protocol], train,
                                                validation))
            target_of.append(protocols.index(run.protocol))
            run_of.append(r)
            lr_scale.append(point.lr / cfg.heads.learning_rate)
            points.append(point)
            unsearched.append(point == reference)
    inputs, val_bank = run_inputs.stack(heads, np.stack([observed[p][train] for p in protocols]), target_of,
                                        len(validation), lr_scale, train_verified)
    val_targets = np.stack([observed[p][validation] for p in protocols])
    return StackedRuns(inputs, val_targets, val_bank, val_verified, np.array(run_of), points,
                       np.array(unsearched, bool))


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
    """A fold's trained stack with what it was trained on and what its heads predicted (the heads
    still in the stack: `alive`, all of them but those a search's halving dropped)."""
    data: FoldData
    stack: models.HeadStack
    probabilities: np.ndarray  # (A, n_test, L) of the alive heads
    val_probabilities: np.ndarray | None  # (A, m, L), None without validation rows
    access: str  # how the features were read: "ram", or "stream (window N rows)"

    @property
    def alive(self) -> np.ndarray:
        return self.stack.alive_

    def position(self, head: int) -> int:
        """Where head `head` (of the stack as built) is among the alive heads."""
        found = np.flatnonzero(self.alive == head)
        assert len(found), f"head {head} was dropped by the search's halving"
        return int(found[0])

    def winners(self, cfg) -> dict[int, int]:
        """{run index: its head}: under a per-run search the winning grid point, else the run's one head."""
        if search.enabled(cfg) and not search.pooled(cfg):
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
               n_threads: int = 0, in_ram: bool = True, chosen: dict | None = None) -> list[dict]:
    """Train one fold's heads as one stack and write their runs (a task; see `runtime.cluster`):
    their predictions, or under a pooled search that has not chosen yet (`grid` points without
    epochs) their search records. `chosen`: {(method, protocol): the pooled choice}."""
    use_threads(n_threads)
    fit = fit_fold(cfg, splits_store.load(splits_path), features_path, runs, grid, in_ram)
    attrs = {"features": str(features_path), "feature_access": fit.access}
    if search.pooled(cfg) and fit.data.stacked.searching:
        return write_searches(cfg, runs, provenance, fit, attrs)
    return write_runs(cfg, runs, provenance, fit, attrs, chosen or {})


def fit_fold(cfg, sf, features_path: str, runs: list, grid: dict, in_ram: bool = True,
             observe=None) -> FoldFit:
    """One fold's heads (every grid point of each run) trained as one stack on `sf`'s fold, and
    their probabilities of the fold's test and validation rows (`observe`: `HeadStack.fit`'s)."""
    seed, fold = runs[0].seed, runs[0].fold
    assert all((run.seed, run.fold) == (seed, fold) for run in runs)

    # data: the fold's rows with readable features (validation rows apart), targets and weights
    data = fold_data(cfg, sf, features_path, runs, grid, in_ram)
    x_train, x_val, x_test = data.sources
    stacked = data.stacked
    validation = models.Validation(x_val.blocks, stacked.val_targets, stacked.val_bank,
                                   stacked.val_verified) if len(data.validation) else None
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
            np.zeros((len(stack.alive_), n_rows, data.inputs.targets.shape[2]), np.float32)

    select, schedule = fold_schedule(cfg, data)
    stack.fit(batches, data.inputs, validation, d_in=x_train.n_features, select=select,
              train_blocks=x_train.blocks,
              standardize=moments(x_train) if cfg.heads.standardize else None, schedule=schedule,
              observe=observe)
    probabilities = predict(x_test, len(data.test))
    val_probabilities = predict(x_val, len(data.validation)) if len(data.validation) else None
    return FoldFit(data, stack, probabilities, val_probabilities,
                   "ram" if in_ram else f"stream (window {window} rows)")


def fold_schedule(cfg, data: FoldData) -> tuple[models.Selection | None, models.Schedule | None]:
    """What a stack selects on and how it runs: the pooled choice's fixed epochs; a search
    (halving at the milestones; under a per-run search each head back at its best epoch); or
    neither."""
    stacked = data.stacked
    if not stacked.searching and search.pooled(cfg):
        epochs = [point.epochs or cfg.heads.epochs for point in stacked.points]
        return None, models.Schedule(stacked.run_of, epochs_of=np.array(epochs))
    select = selection_labels(cfg, data)
    if select is None:
        return None, None
    protect = stacked.unsearched if search.pooled(cfg) else None
    return select, models.Schedule(stacked.run_of, search.milestone_epochs(cfg), cfg.heads.search.halving,
                                   restore=not search.pooled(cfg), protect=protect)


def final_maps(cfg, fit: FoldFit, heads: np.ndarray) -> dict:
    """{head: (test mAP, validation mAP on the truth)} of the run's `heads` still alive at the end."""
    data, sf = fit.data, fit.data.sf
    out = {}
    for h in heads:
        if h not in set(fit.alive.tolist()):
            continue
        at = fit.position(h)
        clean = float(metrics.mean_average_precision(sf.labels[data.validation], fit.val_probabilities[at])) \
            if sf.ground_truth and fit.val_probabilities is not None else float("nan")
        out[int(h)] = (float(metrics.mean_average_precision(sf.labels[data.test], fit.probabilities[at])),
                       clean)
    return out


def search_rows(cfg, run, fit: FoldFit, heads: np.ndarray, chosen: int | None = None) -> list[dict]:
    """search.csv of one run: per grid point (`heads`, the run's heads) and epoch its settings and
    validation score (the selection's labels; NaN from the epoch the halving dropped the point),
    at the last epoch the test mAP and the validation mAP on the truth of the points still there,
    and under a per-run search which (point, epoch) won."""
    stack = fit.stack
    searched = search.grids(cfg, run.method)
    last = len(stack.history_)
    finals = final_maps(cfg, fit, heads)
    rows = []
    for k, h in enumerate(heads):
        for epoch in range(1, last + 1):
            row = {"point": k, **fit.data.stacked.points[h].describe(searched), "epoch": epoch,
                   "val_score": float(stack.val_scores_[epoch - 1, h])}
            test_map, clean = finals.get(int(h), (np.nan, np.nan)) if epoch == last else (np.nan, np.nan)
            row.update(test_map=test_map, val_map_clean=clean)
            if chosen is not None:
                row["chosen"] = bool(h == chosen and epoch == stack.best_epoch_[h])
            rows.append(row)
    return rows


def write_searches(cfg, runs, provenance, fit: FoldFit, attrs: dict) -> list[dict]:
    """A pooled search's first pass: each run's search.csv and its reference head's outputs
    (`predictions.REFERENCE`: the unsearched setting, kept to the last epoch by the halving), then
    search.json (written last: it marks the run's search complete, with its provenance)."""
    records = []
    known = known_validation_labels(fit.data)
    for r, run in enumerate(runs):
        heads = np.flatnonzero(fit.data.run_of == r)
        directory = predictions.run_dir(cfg, run)
        directory.mkdir(parents=True, exist_ok=True)
        rows = search_rows(cfg, run, fit, heads)
        artifacts.write_text(directory / "search.csv",
                             pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
        reference = int(heads[fit.data.stacked.unsearched[heads]][0])
        shown = {**fit.data.stacked.points[reference].describe(search.grids(cfg, run.method)),
                 "epoch": cfg.heads.epochs, "reference": True}
        write_run(cfg, run, fit, reference, attrs, search_choice(cfg, shown), provenance[r], known,
                  predictions.REFERENCE)
        artifacts.record(directory / predictions.SEARCH_RECORD, provenance[r])
        records.append({"run": run.label, "points": len(heads), "left": int(np.isin(heads, fit.alive).sum()),
                        "fold_fit_seconds": fit.stack.fit_seconds_})
    return records


def search_choice(cfg, shown: dict) -> dict:
    """predictions.h5's `search` attribute under a pooled search: the chosen setting."""
    return {"search": json.dumps({**shown, "select": cfg.heads.search.select, "pool": "study"})}


def search_attribute(cfg, run, fit: FoldFit, r: int, h: int, chosen: dict) -> dict:
    """predictions.h5's `search` attribute: the setting the run's predictions come from."""
    if search.pooled(cfg):
        return search_choice(cfg, chosen[(run.method, run.protocol)])
    rows = search_rows(cfg, run, fit, np.flatnonzero(fit.data.run_of == r), h)
    directory = predictions.run_dir(cfg, run)
    artifacts.write_text(directory / "search.csv",
                         pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    point = next(row for row in rows if row["chosen"])
    shown = {k: v for k, v in point.items() if k not in ("chosen", "test_map", "val_map_clean", "point")}
    return {"search": json.dumps({**shown, "points": int((fit.data.run_of == r).sum()),
                                  "select": cfg.heads.search.select, "pool": "run"})}


def write_runs(cfg, runs, provenance, fit: FoldFit, attrs: dict, chosen: dict | None = None) -> list[dict]:
    """history.csv, timing.json and predictions.h5 (written last: it marks the run complete) of
    every run of a trained stack: its winning grid point's head under a per-run search (with
    search.csv of every point), its chosen setting's under a pooled one."""
    winners = fit.winners(cfg)
    known = known_validation_labels(fit.data)
    records = []
    for r, run in enumerate(runs):
        h = winners[r]
        extra = search_attribute(cfg, run, fit, r, h, chosen or {}) if search.enabled(cfg) else {}
        records.append(write_run(cfg, run, fit, h, attrs, extra, provenance[r], known))
    return records


OUTPUTS = {name: name for name in ("predictions.h5", "history.csv", "timing.json")}


def write_run(cfg, run, fit: FoldFit, h: int, attrs: dict, extra: dict, provenance: dict,
              known: np.ndarray | None, names: dict = OUTPUTS) -> dict:
    """One run's outputs from head `h` of a trained stack (`names`: the files they go to, as
    `predictions.REFERENCE`), predictions last; its record."""
    data, stack = fit.data, fit.stack
    sf, inputs = data.sf, data.inputs
    steps = len(stack.history_) * -(-len(data.train) // cfg.heads.batch_size)
    timing = {"fold_fit_seconds": stack.fit_seconds_, "heads_in_stack": len(data.run_of), "steps": steps,
              "train_rows": len(data.train), "test_rows": len(data.test),
              "skipped_invalid": data.skipped_invalid}
    at, protocol = fit.position(h), inputs.target_of[h]
    directory = predictions.run_dir(cfg, run)
    directory.mkdir(parents=True, exist_ok=True)
    predictions.write_history(directory, stack.history_, h, name=names["history.csv"])
    artifacts.write_text(directory / names["timing.json"], json.dumps(timing))
    run_attrs = predictions.run_attrs(cfg, run, "heads", cfg.heads.head, features=attrs["features"],
                                      skipped_invalid=data.skipped_invalid,
                                      feature_access=attrs["feature_access"], **extra)
    validation = None if fit.val_probabilities is None else predictions.ValidationRows(
        sf.ids[data.validation], data.stacked.val_targets[protocol], fit.val_probabilities[at],
        sf.labels[data.validation] if sf.ground_truth else None,
        None if known is None else known[protocol])
    predictions.write(directory, ids=sf.ids[data.test], labels=sf.labels[data.test],
                      probabilities=fit.probabilities[at], attrs=run_attrs, provenance=provenance,
                      validation=validation, known=None if sf.known is None else sf.known[data.test],
                      name=names["predictions.h5"])
    return {"run": run.label, "observed_positives": int(inputs.targets[protocol].sum()), **timing}


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


class Context(NamedTuple):
    """What every pass of a heads command shares."""
    reader: FeatureReader
    splits_files: dict  # {seed: SplitsFile}
    n_classes: int
    in_ram: bool
    n_jobs: int
    window: int  # the batch order's window (0: one permutation of the fold)


def train(cfg, only: dict | None = None, n_jobs: int | None = None, force: bool = False) -> list[dict]:
    """Train the config's grid of heads (or the `only` part of it); complete runs of the same
    provenance are skipped, runs made from other inputs or settings refused (unless `force`).
    Under a pooled search (`heads.search`): the grid's search pass, the choice of each (method,
    protocol) whose every (seed, fold) is searched, then its runs at the chosen setting."""
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
    context = Context(reader, splits_files, len(first.classes), in_ram, n_jobs, window)
    grid = search.grid(cfg, cfg.heads.methods)
    if not search.pooled(cfg):
        return train_runs(cfg, context, runs, grid, force)

    # a pooled search: every run's grid, the choices, the runs at their chosen settings
    records = train_runs(cfg, context, runs, grid, force, output=predictions.SEARCH_RECORD)
    choices = choose_settings(cfg, context, predictions.grid(cfg, "heads", first.n_folds,
                                                             predictions.configured_protocols(cfg)))
    ready = [run for run in runs if (run.method, run.protocol) in choices]
    waiting = len(runs) - len(ready)
    if waiting:
        print(f"heads: {waiting} run(s) wait for the search of every (seed, fold) of their method and "
              "protocol "
              "(the choice pools them); train the rest of the grid to choose")
    chosen = {key: [choice.point] for key, choice in choices.items()}
    if not ready:
        return records
    return records + train_runs(cfg, context, ready, chosen, force,
                                chosen={k: c.shown for k, c in choices.items()},
                                promote={k for k, c in choices.items() if c.reference})


def train_runs(cfg, context: Context, runs: list, grid: dict, force: bool, output: str = "predictions.h5",
               chosen: dict | None = None, promote: set = frozenset()) -> list[dict]:
    """Train `runs` (each with its points in `grid`) in stacks that fit in memory, each stack a
    task; `output`: the file that marks a run complete (a pooled search's first pass: its record).
    Runs of the (method, protocol)s in `promote` (chosen: the search pass's reference head) take
    that head's outputs where the pass kept them, and are not trained again."""
    def provenance(run):
        recipe = predictions.head_provenance(cfg, run, context.splits_files[run.seed].fingerprint,
                                             context.reader.fingerprint, context.window)
        if chosen is not None:
            recipe["search.chosen"] = chosen[(run.method, run.protocol)]
        return recipe

    with predictions.claimed(cfg, runs, provenance, force, output=output) as todo:
        promoted = set(promote_runs(cfg, [run for run in todo if (run.method, run.protocol) in promote],
                                    provenance, chosen))
        done = [{"run": run.label, "promoted": True} for run in todo if run in promoted]
        todo = [run for run in todo if run not in promoted]
        if not todo:
            return done
        plan = planner.plan(cfg, todo, grid, context.reader, context.n_classes, context.in_ram,
                            context.n_jobs)
        artifacts.writable(cfg.run_dir)
        what = "the search's grid points" if output != "predictions.h5" else \
            "chosen settings" if chosen is not None else "grid points" if search.enabled(cfg) else "heads"
        print(f"heads: {len(todo)} runs in {len(plan.stacks)} stack(s) of up to {plan.largest} "
              f"{cfg.heads.head} "
              f"heads ({what} of seeds x folds); {context.reader.shape[1]} features"
              + (" (sparse)" if context.reader.sparse else "")
              + f"; {plan.n_jobs} parallel job(s){plan.fewer}; "
              + ("features in RAM" if context.in_ram
                 else f"features streamed {cfg.heads.shuffle_buffer} rows at a time")
              + f"; {int((~context.reader.valid).sum())} invalid rows skipped")
        tasks = stack_tasks(cfg, plan, grid, context, provenance, chosen)
        return done + [record for records in cluster.run(cfg, tasks, plan.n_jobs) for record in records]


def promote_runs(cfg, runs: list, provenance, chosen: dict) -> list:
    """The `runs` (their choice: the search pass's reference head) whose outputs that head's
    became (`predictions.promote`); the rest are trained."""
    promoted = [run for run in runs
                if predictions.promote(predictions.run_dir(cfg, run), provenance(run),
                                       search_choice(cfg, chosen[(run.method, run.protocol)]))]
    if promoted:
        print(f"heads: {len(promoted)} run(s) chose the search pass's head at the unsearched setting and "
              "[heads] epochs: its predictions are theirs, not trained again")
    return promoted


class Choice(NamedTuple):
    """A pooled search's choice for one (method, protocol)."""
    point: search.Point  # with the chosen epochs
    shown: dict  # what the runs' provenance and predictions.h5 record of it
    reference: bool  # whether it is the unsearched setting at [heads] epochs (the search pass kept its head)


def choose_settings(cfg, context: Context, grid_runs: list) -> dict:
    """{(method, protocol): Choice} for every (method, protocol) whose every (seed, fold) run of
    the config's grid has a complete search record; the choices are written to
    runs/<name>/search_choice.csv."""
    by_key: dict = {}
    for run in grid_runs:
        by_key.setdefault((run.method, run.protocol), []).append(run)
    grid = search.grid(cfg, cfg.heads.methods)
    choices, rows = {}, []
    for (method, protocol), runs in by_key.items():
        files = [predictions.run_dir(cfg, run) / predictions.SEARCH_RECORD for run in runs]
        if not all(path.is_file() and artifacts.recorded(path)[0] for path in files):
            continue
        scores = pd.concat([pd.read_csv(path.with_name("search.csv")).assign(seed=run.seed, fold=run.fold + 1)
                            for path, run in zip(files, runs)])
        picked = search.choose(scores.rename(columns={"val_score": "score"}),
                               (search.reference(cfg, method), cfg.heads.epochs), cfg.heads.search.evidence)
        point = grid[method][int(picked["point"])]
        chosen = search.Point(point.lr, point.params, int(picked["epoch"]))
        shown = {**point.describe(search.grids(cfg, method)), "epoch": int(picked["epoch"]),
                 "pooled_score": round(float(picked["score"]), 6), "runs": int(picked["runs"]),
                 "lead": round(float(picked["lead"]), 6),
                 "points": len(grid[method])}
        reference = (int(picked["point"]), chosen.epochs) == (search.reference(cfg, method), cfg.heads.epochs)
        choices[(method, protocol)] = Choice(chosen, shown, reference)
        rows.append({"method": method, "name": methods.display_name(method),
                     "protocol": splits_store.protocol_label(protocol), "point": int(picked["point"]),
                     "params": json.dumps(shown, sort_keys=True), **shown})
    if rows:
        artifacts.write_text(cfg.run_dir / "search_choice.csv", pd.DataFrame(rows).to_csv(index=False))
    return choices


def stack_tasks(cfg, plan: planner.Plan, grid: dict, context: Context, provenance,
                chosen) -> list[cluster.Task]:
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
        own = {(run.method, run.protocol): search.points_of(grid, run) for run in stack.runs}
        tasks.append(cluster.Task(f"heads seed {stack.seed} fold {stack.fold + 1}{part}", train_fold,
                                  (cfg, str(context.splits_files[stack.seed].path), str(context.reader.path),
                                   stack.runs, own, [provenance(r) for r in stack.runs],
                                   cluster.threads_per_task(cfg, plan.n_jobs), context.in_ram, chosen)))
    return tasks
