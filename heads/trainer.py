"""Train every (method x protocol) head of a fold in one stack; folds and seeds as parallel tasks.

Reads each seed's `splits.h5` and the feature store (rows matched by id), writes one run per
seed x fold x protocol x method through `heads.predictions`. A fold's stack is one task
(`runtime.cluster`): joblib processes on this machine, or a Dask cluster.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np
import pandas as pd

import artifacts
import metrics
from features import store as feature_store
from features.store import FeatureReader, dense
from runtime import cluster
from splits import store as splits_store

from . import inputs as run_inputs
from . import methods, models, predictions, search

RAM_FRACTION = 0.5  # features load into RAM when they take at most this share of free memory
UNIT_SCALE = 10.0  # a feature whose mean or spread exceeds this is far from what the heads' initialisation expects


def epoch_batches(n_rows: int, batch_size: int, rng: np.random.Generator, window: int = 0):
    """One epoch's batches of positions 0..n_rows-1 in a seeded random order (last partial batch
    kept). window 0: one full permutation. Otherwise the positions are cut into consecutive
    windows of `window` rows, the windows come in random order and the rows in random order
    within each, so a streamed epoch reads each window once; with a single window this is the
    full permutation, draw for draw."""
    if not window or window >= n_rows:
        order = rng.permutation(n_rows)
    else:
        starts = np.arange(0, n_rows, window)
        order = np.concatenate([start + rng.permutation(min(window, n_rows - start))
                                for start in starts[rng.permutation(len(starts))]])
    return [order[i:i + batch_size] for i in range(0, n_rows, batch_size)]


def finite(x, path):
    """`x` (dense, or sparse rows) after checking every value is finite."""
    values = x.data if hasattr(x, "data") and not isinstance(x, np.ndarray) else x
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: rows hold NaN or infinite features; rebuild them (make features FORCE=1) "
                         "and check the images and checkpoint")
    return x


class InMemory:
    """Feature rows held in RAM (the fast path; sparse stores stay sparse): batches index them."""

    def __init__(self, reader: FeatureReader, rows: np.ndarray):
        self.n_features = reader.shape[1]
        self.x = finite(reader.window(np.sort(rows))[np.argsort(np.argsort(rows))] if reader.sparse
                        else reader.rows(rows), reader.path)

    def batches(self, order):
        for positions in order:
            yield positions, dense(self.x[positions])

    def blocks(self, size: int = 4096):
        for start in range(0, self.x.shape[0], size):
            yield np.arange(start, min(start + size, self.x.shape[0])), dense(self.x[start:start + size])


class Streamed:
    """Feature rows read from HDF5 a window at a time; at most two windows are held in RAM.
    `rows` are store rows in increasing order (a fold's training rows are)."""

    def __init__(self, reader: FeatureReader, rows: np.ndarray, window: int):
        self.reader, self.rows, self.window = reader, rows, window
        self.n_features = reader.shape[1]

    def _read(self, start: int):
        return finite(self.reader.window(self.rows[start:start + self.window]), self.reader.path)

    def batches(self, order):
        cache: dict = {}
        for positions in order:
            starts = positions // self.window * self.window
            needed = set(starts.tolist())
            cache = {k: v for k, v in cache.items() if k in needed}  # epochs visit a window once
            x = np.empty((len(positions), self.reader.shape[1]), np.float32)
            for start in needed:
                if start not in cache:
                    cache[start] = self._read(start)
                pick = starts == start
                x[pick] = dense(cache[start][positions[pick] - start])
            yield positions, x

    def blocks(self):
        for start in range(0, len(self.rows), self.window):
            yield np.arange(start, min(start + self.window, len(self.rows))), dense(self._read(start))


def stack_inputs(cfg, sf, fold: int, runs: list, train: np.ndarray, validation: np.ndarray):
    """(StackInputs over `train`, validation targets (P, m, L), validation bank (W, m, L),
    run_of (H,), validation verified negatives (P, m, L) or None) of a fold's runs, one head per
    grid point of each run (`heads.search.points`): each run's inputs from `heads.inputs` once,
    at each point's parameters and learning rate."""
    protocols = list(dict.fromkeys(run.protocol for run in runs))
    observed = {p: sf.observed(fold, p) for p in protocols}
    verified = {p: sf.known_negative(fold, p) for p in protocols}
    if all(v is None for v in verified.values()):
        known = val_known = None
    else:
        stacked = np.stack([np.zeros(observed[p].shape, bool) if verified[p] is None else verified[p]
                            for p in protocols]).astype(np.uint8)
        known, val_known = stacked[:, train], stacked[:, validation]
    heads, target_of, run_of, lr_scale = [], [], [], []
    for r, run in enumerate(runs):
        own = methods.parameters(run.method, cfg.heads.params.get(run.method))
        base = run_inputs.head_inputs(cfg, sf, fold, run.protocol, run.method, train, validation,
                                      observed[run.protocol], params=run_inputs.unzeroed(own))
        for point in search.points(cfg, run.method):
            heads.append(run_inputs.with_params(base, point.values, observed[run.protocol], train, validation))
            target_of.append(protocols.index(run.protocol))
            run_of.append(r)
            lr_scale.append(point.lr / cfg.heads.learning_rate)
    inputs, val_negatives = run_inputs.stack(heads, np.stack([observed[p][train] for p in protocols]), target_of,
                                             len(validation), lr_scale, known)
    return inputs, np.stack([observed[p][validation] for p in protocols]), val_negatives, np.array(run_of), val_known


class FoldData(NamedTuple):
    """A fold's rows with readable features and what its stack trains on."""
    sf: object  # splits.store.SplitsFile
    train: np.ndarray  # rows of splits.h5
    validation: np.ndarray
    test: np.ndarray
    skipped_invalid: int
    inputs: models.StackInputs
    val_targets: np.ndarray  # (P, m, L)
    val_negatives: np.ndarray  # (W, m, L)
    run_of: np.ndarray  # (H,) the run of each head (a grid point of it)
    sources: tuple  # InMemory or Streamed over (train, validation, test)
    val_known: np.ndarray | None  # (P, m, L) uint8 verified negatives of the validation rows, None without


def fold_data(cfg, sf, features_path: str, runs: list, in_ram: bool) -> FoldData:
    """The fold's training / validation / test rows whose features are valid, its stack inputs
    and its feature sources (in RAM, or streamed `shuffle_buffer` rows at a time). `sf`: a
    `splits.store.SplitsFile`, or another source of folds with its interface (`model.final`)."""
    fold = runs[0].fold
    reader = FeatureReader(features_path)
    store_rows = reader.positions(sf.ids)
    valid = reader.valid[store_rows]
    validation = np.flatnonzero(sf.validation(fold) & valid)
    train = np.flatnonzero((sf.test_fold != fold) & ~sf.validation(fold) & valid)
    test = np.flatnonzero((sf.test_fold == fold) & valid)
    inputs, val_targets, val_negatives, run_of, val_known = stack_inputs(cfg, sf, fold, runs, train, validation)
    window = 0 if in_ram else cfg.heads.shuffle_buffer

    def source(rows):
        return InMemory(reader, store_rows[rows]) if in_ram else Streamed(reader, store_rows[rows], window)

    return FoldData(sf, train, validation, test, int((~valid).sum()), inputs, val_targets, val_negatives, run_of,
                    (source(train), source(validation), source(test)), val_known)


def selection_labels(cfg, data: FoldData):
    """What a search scores validation rows against (`heads.search`): (labels (S, m, L), labels_of
    (H,), known (S, m, L) or None): each head's protocol's observed labels (over the positives
    and verified negatives when the protocol has any), or the rows' truth under select =
    "clean"; None without a search."""
    if not search.enabled(cfg):
        return None
    if cfg.heads.search.select == "clean":
        return data.sf.labels[data.validation][None], np.zeros(len(data.run_of), int), None
    return data.val_targets, np.asarray(data.inputs.target_of), observed_known(data)


def observed_known(data: FoldData) -> np.ndarray | None:
    """(P, m, L) bool: which validation labels each protocol knows (its positives and verified
    negatives; every label under a protocol without verified negatives); None when no protocol
    has any."""
    if data.val_known is None:
        return None
    verified = data.val_known == 1
    partial = verified.reshape(len(verified), -1).any(1)
    return np.where(partial[:, None, None], (data.val_targets == 1) | verified, True)


def moments(source) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's mean and standard deviation (1 where it is constant) over a source's rows,
    block by block (Chan et al.'s pairwise update, in float64)."""
    count, mean, squares = 0, 0.0, 0.0
    for _, x in source.blocks():
        x = x.astype(np.float64)
        n, block_mean = len(x), x.mean(0)
        delta = block_mean - mean
        total = count + n
        squares = squares + ((x - block_mean) ** 2).sum(0) + delta ** 2 * count * n / total
        mean, count = mean + delta * n / total, total
    std = np.sqrt(squares / max(count, 1))
    constant = std <= 1e-6 * np.maximum(np.abs(mean), 1.0)
    return np.asarray(mean, np.float32), np.where(constant, 1.0, std).astype(np.float32)


def scale_warning(reader: FeatureReader, n_rows: int = 4096) -> str:
    """A warning when the store's features lie far from unit scale over its first valid rows
    (a column mean or standard deviation beyond UNIT_SCALE: raw measurements, pixel values),
    where sigmoid layers saturate from the first step; "" otherwise."""
    rows = np.flatnonzero(reader.valid)[:n_rows]
    if not len(rows):
        return ""
    mean, std = moments(InMemory(reader, rows))
    size = np.maximum(np.abs(mean), std)
    far = size > UNIT_SCALE
    if not far.any():
        return ""
    return (f"heads: warning: {far.sum()} of {len(far)} features of {reader.path} lie far from unit scale (mean or "
            f"standard deviation up to {size.max():.3g} over its first {len(rows)} rows); heads learn little from "
            "them: set [heads] standardize = true (each feature z-scored by each fold's training rows)")


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


def train_fold(cfg, splits_path: str, features_path: str, runs: list, provenance: list[dict], n_threads: int = 0,
               in_ram: bool = True) -> list[dict]:
    """Train one fold's heads as one stack and write their runs (a task; see `runtime.cluster`)."""
    use_threads(n_threads)
    fit = fit_fold(cfg, splits_store.load(splits_path), features_path, runs, in_ram)
    return write_runs(cfg, runs, provenance, fit, {"features": str(features_path), "feature_access": fit.access})


def fit_fold(cfg, sf, features_path: str, runs: list, in_ram: bool = True) -> FoldFit:
    """One fold's heads (every grid point of each run) trained as one stack on `sf`'s fold, and
    their probabilities of the fold's test and validation rows."""
    seed, fold = runs[0].seed, runs[0].fold
    assert all((run.seed, run.fold) == (seed, fold) for run in runs)

    # data: the fold's rows with readable features (validation rows apart), targets and weights
    data = fold_data(cfg, sf, features_path, runs, in_ram)
    x_train, x_val, x_test = data.sources
    validation = (x_val.blocks, data.val_targets, data.val_negatives, data.val_known) if len(data.validation) else None
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
    return FoldFit(data, stack, probabilities, val_probabilities, "ram" if in_ram else f"stream (window {window} rows)")


def search_rows(cfg, run, data: FoldData, stack, heads, chosen: int, probabilities, val_probabilities) -> list:
    """search.csv of one run: per grid point its settings, best epoch, validation scores (observed
    labels, and truth where the splits hold it) and test mAP, and which one won."""
    sf = data.sf
    searched = search.grids(cfg, run.method)
    points = search.points(cfg, run.method)
    protocol = data.inputs.target_of[heads[0]]
    val_observed = data.val_targets[protocol]
    known = observed_known(data)
    val_known = None if known is None else known[protocol]
    rows = []
    for point, h in zip(points, heads):
        row = {**point.describe(searched), "epoch": int(stack.best_epoch_[h]),
               "val_map_observed": float(metrics.mean_average_precision(val_observed, val_probabilities[h], val_known)),
               "val_map_clean": float(metrics.mean_average_precision(sf.labels[data.validation], val_probabilities[h]))
               if sf.ground_truth else float("nan"),
               "test_map": float(metrics.mean_average_precision(sf.labels[data.test], probabilities[h])),
               "chosen": h == chosen}
        rows.append(row)
    return rows


def write_runs(cfg, runs, provenance, fit: FoldFit, attrs: dict):
    """history.csv, timing.json and predictions.h5 (written last: it marks the run complete) of
    every run of a trained stack: its winning grid point's head under a search, with
    search.csv of every point."""
    data, stack, probabilities, val_probabilities = fit.data, fit.stack, fit.probabilities, fit.val_probabilities
    sf, inputs = data.sf, data.inputs
    winners = fit.winners(cfg)
    val_known = observed_known(data)
    steps = len(stack.history_) * -(-len(data.train) // cfg.heads.batch_size)
    timing = {"fold_fit_seconds": stack.fit_seconds_, "heads_in_stack": len(data.run_of), "steps": steps,
              "train_rows": len(data.train), "test_rows": len(data.test), "skipped_invalid": data.skipped_invalid}
    records = []
    for r, run in enumerate(runs):
        h = winners[r]
        directory = predictions.run_dir(cfg, run)
        directory.mkdir(parents=True, exist_ok=True)
        predictions.write_history(directory, stack.history_, h)
        artifacts.write_text(directory / "timing.json", json.dumps(timing))
        extra = {}
        if search.enabled(cfg):
            rows = search_rows(cfg, run, data, stack, np.flatnonzero(data.run_of == r), h, probabilities,
                               val_probabilities)
            artifacts.write_text(directory / "search.csv", pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
            point = next(row for row in rows if row["chosen"])
            extra["search"] = json.dumps({**{k: v for k, v in point.items() if k not in ("chosen", "test_map")},
                                          "points": len(rows), "select": cfg.heads.search.select})
        run_attrs = predictions.run_attrs(cfg, run, "heads", cfg.heads.head, features=attrs["features"],
                                          skipped_invalid=data.skipped_invalid,
                                          feature_access=attrs["feature_access"], **extra)
        val = None if val_probabilities is None else \
            (sf.ids[data.validation], data.val_targets[inputs.target_of[h]], val_probabilities[h],
             sf.labels[data.validation] if sf.ground_truth else None,
             None if val_known is None else val_known[inputs.target_of[h]])
        predictions.write(directory, ids=sf.ids[data.test], labels=sf.labels[data.test],
                          probabilities=probabilities[h], attrs=run_attrs, provenance=provenance[r], validation=val,
                          known=None if sf.known is None else sf.known[data.test])
        records.append({"run": run.label, "observed_positives": int(inputs.targets[inputs.target_of[h]].sum()),
                        **timing})
    return records


def free_memory() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory(cfg) -> int:
    """Bytes the stacks training at once share: this machine's free memory, or on a running Dask
    cluster the share of one task on its smallest worker (when its workers set a memory limit)."""
    return cluster.task_memory(cfg) or free_memory()


def features_in_ram(cfg, reader: FeatureReader, n_rows: int, n_jobs: int) -> bool:
    """heads.features, with "auto" = RAM when every parallel fold's rows (float32 dense, or the
    stored size when sparse) fit in a share of free memory (a running cluster's task: its own share)."""
    if cfg.heads.features != "auto":
        return cfg.heads.features == "ram"
    return (1 if cluster.running_cluster(cfg) else n_jobs) * row_bytes(reader) * n_rows <= RAM_FRACTION * memory(cfg)


def row_bytes(reader: FeatureReader) -> float:
    """RAM per row held by `InMemory`: 4 bytes a value (dense), or 8 per stored value (sparse)."""
    if reader.sparse:
        return 8 * reader.stored_values() / max(1, len(reader.ids)) + 8
    return 4 * reader.shape[1]


def stack_bytes(cfg, n_heads: int, feat_dim: int, n_classes: int, n_val: int) -> int:
    """Memory of a stack of `n_heads` heads besides its features: weights, gradients, two
    optimiser slots and, while they are initialised, two host copies per head (6 float32
    arrays); under a search also each epoch's validation probabilities and the scoring's
    temporaries (about 4 float64 copies of them)."""
    stack = models.make(cfg.heads.head, ["h"] * n_heads, cfg.heads, 0)
    scoring = (4 + 4 * 8) * n_val * n_classes * n_heads if search.enabled(cfg) else 0
    return 6 * stack.parameter_count(feat_dim, n_classes) * 4 + scoring


def stack_budget(available: int, feature_bytes: int, at_once: int) -> float:
    """Bytes one of `at_once` stacks training together in `available` bytes may hold besides its own features."""
    return 0.8 * available / at_once - feature_bytes


def stacks_at_once(cfg, stacks: dict, feature_bytes: int, per_head: int, n_jobs: int) -> int:
    """How many stacks train at once on this machine, each with its own features and a share of
    free memory: n_jobs processes, fewer while the largest run's grid would not fit in a share;
    a Dask LocalCluster's workers; 1 for a running cluster (`memory` gives each task its worker's share)."""
    if cfg.cluster.scheduler:
        return cfg.cluster.workers if cfg.cluster.scheduler == "local" else 1
    largest = max(len(search.points(cfg, run.method)) for runs in stacks.values() for run in runs)
    at_once, available = min(n_jobs, len(stacks)), free_memory()
    while at_once > 1 and stack_budget(available, feature_bytes, at_once) < largest * per_head:
        at_once -= 1
    return max(at_once, 1)


def plan_stacks(cfg, stacks: dict, feature_bytes: int, feat_dim: int, n_classes: int, n_val: int,
                at_once: int = 1) -> list:
    """[(seed, fold, runs)]: each (seed, fold)'s runs in as few stacks as fit in free memory
    shared by `at_once` stacks training together, or in a running cluster's task share (a run's
    grid points stay in one stack: its selection compares them); ValueError when one run's grid
    alone cannot fit."""
    available = memory(cfg)
    budget = stack_budget(available, feature_bytes, at_once)
    per_head = stack_bytes(cfg, 1, feat_dim, n_classes, n_val)
    most = int(budget // per_head) if budget > 0 else 0
    out = []
    for (seed, fold), runs in stacks.items():
        part, size = [], 0
        for run in runs:
            points = len(search.points(cfg, run.method))
            if points > most:
                need = stack_bytes(cfg, points, feat_dim, n_classes, n_val) + feature_bytes
                raise ValueError(f"{points} {cfg.heads.head} heads on {feat_dim}-d features need about "
                                 f"{need / 2**30:.1f} GiB but {available / 2**30:.1f} GiB are free"
                                 + (" to a task of cluster.scheduler's smallest worker"
                                    if cluster.running_cluster(cfg) else "")
                                 + (f", shared by {at_once} stacks at once (cluster.workers)" if at_once > 1 else "")
                                 + "; use pooling "
                                 "= 'avg' in [extract], fewer methods, ratios or grid points per run (--only, "
                                 "[heads.search] lr / params), a smaller head, or heads.features = 'stream' with a "
                                 "smaller heads.shuffle_buffer")
            if size + points > most:
                out.append((seed, fold, part))
                part, size = [], 0
            part.append(run)
            size += points
        out.append((seed, fold, part))
    return out


def train(cfg, only: dict | None = None, n_jobs: int | None = None, force: bool = False) -> list[dict]:
    """Train the config's grid of heads (or the `only` part of it); complete runs of the same
    provenance are skipped, runs made from other inputs or settings refused (unless `force`)."""
    # setup: the inputs, the grid, what is left to do
    methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
    search.check(cfg)
    if search.enabled(cfg) and not cfg.splits.validation:
        raise ValueError(f"{cfg.source}: [heads.search] chooses on validation rows, and splits.validation is 0; "
                         "set it (0.1 holds out a tenth of each fold's training rows) and rerun `make splits`")
    features = feature_store.path(cfg)
    reader = FeatureReader(features)
    reader.check_sources()
    if not cfg.heads.standardize and (warning := scale_warning(reader)):
        print(warning)
    splits_files = {seed: splits_store.load(splits_store.path(cfg, seed)) for seed in cfg.seeds}
    protocols = predictions.configured_protocols(cfg)
    for sf in splits_files.values():
        reader.positions(sf.ids)
        run_inputs.check_truth(cfg.heads.methods, sf.ground_truth, sf.path)
        if any(run_inputs.needs(m).pseudo for m in cfg.heads.methods):
            run_inputs.score_matrix(cfg, sf)  # a score file that does not match is named before any training
        if search.enabled(cfg) and cfg.heads.search.select == "clean" and not sf.ground_truth:
            raise ValueError(f"heads.search.select = 'clean' reads the validation rows' truth, and {sf.path} holds "
                             "none; use select = 'observed'")
        for protocol in protocols:
            sf.column(protocol)
    n_folds = next(iter(splits_files.values())).n_folds
    runs = predictions.select(predictions.grid(cfg, "heads", n_folds, protocols), only, f"[heads] of {cfg.source}")
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"--n-jobs {n_jobs}: the number of parallel stacks must be at least 1")
    n_jobs = n_jobs or cfg.heads.n_jobs
    n_rows = len(next(iter(splits_files.values())).ids)
    in_ram = features_in_ram(cfg, reader, n_rows, n_jobs)
    window = 0 if in_ram or cfg.heads.shuffle_buffer >= n_rows else cfg.heads.shuffle_buffer

    def provenance(run):
        return predictions.head_provenance(cfg, run, splits_files[run.seed].fingerprint, reader.fingerprint, window)

    with predictions.claimed(cfg, runs, provenance, force) as todo:
        return _train_stacks(cfg, todo, splits_files, reader, in_ram, n_jobs, provenance) if todo else []


def _train_stacks(cfg, todo, splits_files, reader, in_ram, n_jobs, provenance) -> list[dict]:
    """One task per (seed, fold) stack of the runs to do, after the memory and output checks."""
    stacks = {}
    for run in todo:
        stacks.setdefault((run.seed, run.fold), []).append(run)
    n_rows = len(reader.ids)
    feature_rows = n_rows if in_ram else 2 * min(cfg.heads.shuffle_buffer, n_rows)
    n_classes = len(next(iter(splits_files.values())).classes)
    n_val = int(np.ceil(cfg.splits.validation * n_rows))
    feature_bytes = int(row_bytes(reader) * feature_rows)
    per_head = stack_bytes(cfg, 1, reader.shape[1], n_classes, n_val)
    at_once = stacks_at_once(cfg, stacks, feature_bytes, per_head, n_jobs)
    planned = plan_stacks(cfg, stacks, feature_bytes, reader.shape[1], n_classes, n_val, at_once)
    per_stack = max(sum(len(search.points(cfg, run.method)) for run in runs) for _, _, runs in planned)
    local = not cfg.cluster.scheduler
    fewer = f" ({n_jobs} asked; more would not fit in free memory)" if local and at_once < min(n_jobs, len(stacks)) else ""
    n_jobs = min(at_once if local else n_jobs, len(planned))
    artifacts.writable(cfg.run_dir)
    print(f"heads: {len(todo)} runs in {len(planned)} stack(s) of up to {per_stack} {cfg.heads.head} heads "
          f"({'grid points of ' if search.enabled(cfg) else ''}seeds x folds); {reader.shape[1]} features"
          + (" (sparse)" if reader.sparse else "") + f"; {n_jobs} parallel job(s){fewer}; features "
          + ("in RAM" if in_ram else f"streamed {cfg.heads.shuffle_buffer} rows at a time")
          + f"; {int((~reader.valid).sum())} invalid rows skipped")
    count = {}
    for seed, fold, _ in planned:
        count[(seed, fold)] = count.get((seed, fold), 0) + 1
    tasks, made = [], {}
    for seed, fold, group in planned:
        made[(seed, fold)] = made.get((seed, fold), 0) + 1
        part = f" stack {made[(seed, fold)]} of {count[(seed, fold)]}" if count[(seed, fold)] > 1 else ""
        tasks.append(cluster.Task(f"heads seed {seed} fold {fold + 1}{part}", train_fold,
                                  (cfg, str(splits_files[seed].path), str(reader.path), group,
                                   [provenance(r) for r in group], cluster.threads_per_task(cfg, n_jobs), in_ram)))
    return [rec for fold_records in cluster.run(cfg, tasks, n_jobs) for rec in fold_records]
