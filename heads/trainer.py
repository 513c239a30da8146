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

import artifacts
from features import store as feature_store
from features.store import FeatureReader, dense
from runtime import cluster
from splits import store as splits_store

from . import inputs as run_inputs
from . import methods, models, predictions

RAM_FRACTION = 0.5  # features load into RAM when they take at most this share of free memory


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
    """(StackInputs over `train`, validation targets (P, m, L), validation negatives (W, m, L))
    of a fold's runs: each head's inputs from `heads.inputs`, targets per protocol."""
    protocols = list(dict.fromkeys(run.protocol for run in runs))
    observed = {p: sf.observed(fold, p) for p in protocols}
    heads = [run_inputs.head_inputs(cfg, sf, fold, run.protocol, run.method, train, validation, observed[run.protocol])
             for run in runs]
    inputs, val_negatives = run_inputs.stack(heads, np.stack([observed[p][train] for p in protocols]),
                                             [protocols.index(run.protocol) for run in runs], len(validation))
    return inputs, np.stack([observed[p][validation] for p in protocols]), val_negatives


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
    sources: tuple  # InMemory or Streamed over (train, validation, test)


def fold_data(cfg, splits_path: str, features_path: str, runs: list, in_ram: bool) -> FoldData:
    """The fold's training / validation / test rows whose features are valid, its stack inputs
    and its feature sources (in RAM, or streamed `shuffle_buffer` rows at a time)."""
    fold = runs[0].fold
    sf = splits_store.load(splits_path)
    reader = FeatureReader(features_path)
    store_rows = reader.positions(sf.ids)
    valid = reader.valid[store_rows]
    validation = np.flatnonzero(sf.validation(fold) & valid)
    train = np.flatnonzero((sf.test_fold != fold) & ~sf.validation(fold) & valid)
    test = np.flatnonzero((sf.test_fold == fold) & valid)
    inputs, val_targets, val_negatives = stack_inputs(cfg, sf, fold, runs, train, validation)
    window = 0 if in_ram else cfg.heads.shuffle_buffer

    def source(rows):
        return InMemory(reader, store_rows[rows]) if in_ram else Streamed(reader, store_rows[rows], window)

    return FoldData(sf, train, validation, test, int((~valid).sum()), inputs, val_targets, val_negatives,
                    (source(train), source(validation), source(test)))


def train_fold(cfg, splits_path: str, features_path: str, runs: list, provenance: list[dict], n_threads: int = 0,
               in_ram: bool = True) -> list[dict]:
    """Train one fold's heads as one stack and write their runs (a task; see `runtime.cluster`)."""
    from runtime.tf_quiet import tf
    if n_threads:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    seed, fold = runs[0].seed, runs[0].fold
    assert all((run.seed, run.fold) == (seed, fold) for run in runs)

    # data: the fold's rows with readable features (validation rows apart), targets and weights
    data = fold_data(cfg, splits_path, features_path, runs, in_ram)
    x_train, x_val, x_test = data.sources
    validation = (x_val.blocks, data.val_targets, data.val_negatives) if len(data.validation) else None
    window = 0 if in_ram else cfg.heads.shuffle_buffer

    # model and loop
    stack = models.make(cfg.heads.head, [run.key.split("/", 1)[1] for run in runs], cfg.heads, seed + fold)
    rng = np.random.default_rng([seed, fold])

    def batches():
        return x_train.batches(epoch_batches(len(data.train), cfg.heads.batch_size, rng, window))

    def predict(part):
        return np.concatenate([stack.predict_proba(x) for _, x in part.blocks()], axis=1)

    stack.fit(batches, data.inputs, validation, d_in=x_train.n_features)
    probabilities = predict(x_test)
    val_probabilities = predict(x_val) if len(data.validation) else None

    # save: one run per head
    access = "ram" if in_ram else f"stream (window {window} rows)"
    return write_runs(cfg, runs, provenance, data, stack, probabilities, val_probabilities,
                      {"features": str(features_path), "feature_access": access})


def write_runs(cfg, runs, provenance, data: FoldData, stack, probabilities, val_probabilities, attrs: dict):
    """predictions.h5, history.csv and timing.json of every head of a trained stack."""
    sf, inputs = data.sf, data.inputs
    steps = len(stack.history_) * -(-len(data.train) // cfg.heads.batch_size)
    timing = {"fold_fit_seconds": stack.fit_seconds_, "heads_in_stack": len(runs), "steps": steps,
              "train_rows": len(data.train), "test_rows": len(data.test), "skipped_invalid": data.skipped_invalid}
    records = []
    for h, run in enumerate(runs):
        directory = predictions.run_dir(cfg, run)
        run_attrs = predictions.run_attrs(cfg, run, "heads", cfg.heads.head, features=attrs["features"],
                                          skipped_invalid=data.skipped_invalid,
                                          feature_access=attrs["feature_access"])
        observed = inputs.targets[inputs.target_of[h]]
        val = None if val_probabilities is None else \
            (sf.ids[data.validation], data.val_targets[inputs.target_of[h]], val_probabilities[h])
        predictions.write(directory, ids=sf.ids[data.test], labels=sf.labels[data.test],
                          probabilities=probabilities[h], attrs=run_attrs, provenance=provenance[h], validation=val)
        predictions.write_history(directory, stack.history_, h)
        (directory / "timing.json").write_text(json.dumps(timing))
        records.append({"run": run.label, "observed_positives": int(observed.sum()), **timing})
    return records


def free_memory() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def features_in_ram(cfg, reader: FeatureReader, n_rows: int, n_jobs: int) -> bool:
    """heads.features, with "auto" = RAM when every parallel fold's rows (float32 dense, or the
    stored size when sparse) fit in a share of free memory."""
    if cfg.heads.features != "auto":
        return cfg.heads.features == "ram"
    return n_jobs * row_bytes(reader) * n_rows <= RAM_FRACTION * free_memory()


def row_bytes(reader: FeatureReader) -> float:
    """RAM per row held by `InMemory`: 4 bytes a value (dense), or 8 per stored value (sparse)."""
    if reader.sparse:
        return 8 * reader.stored_values() / max(1, len(reader.ids)) + 8
    return 4 * reader.shape[1]


def check_memory(cfg, n_heads: int, feature_bytes: int, feat_dim: int, n_classes: int) -> None:
    """Refuse a stack that cannot fit: weights, gradients, two optimiser slots and, while they
    are initialised, two host copies per head (6 float32 arrays), plus the features a fold
    holds (all of them in RAM, two windows when streamed)."""
    stack = models.make(cfg.heads.head, ["h"] * n_heads, cfg.heads, 0)
    need = 6 * stack.parameter_count(feat_dim, n_classes) * 4 + feature_bytes
    free = free_memory()
    if need > 0.8 * free:
        raise ValueError(f"{n_heads} {cfg.heads.head} heads on {feat_dim}-d features need about "
                         f"{need / 2**30:.1f} GiB but {free / 2**30:.1f} GiB are free; use pooling = 'avg' "
                         "in [extract], fewer methods or ratios per run (--only), a smaller head, or "
                         "heads.features = 'stream' with a smaller heads.shuffle_buffer")


def train(cfg, only: dict | None = None, n_jobs: int | None = None, force: bool = False) -> list[dict]:
    """Train the config's grid of heads (or the `only` part of it); complete runs of the same
    provenance are skipped, runs made from other inputs or settings refused (unless `force`)."""
    # setup: the inputs, the grid, what is left to do
    methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
    features = feature_store.path(cfg)
    reader = FeatureReader(features)
    reader.check_sources()
    splits_files = {seed: splits_store.load(splits_store.path(cfg, seed)) for seed in cfg.seeds}
    protocols = predictions.configured_protocols(cfg)
    for sf in splits_files.values():
        reader.positions(sf.ids)
        run_inputs.check_truth(cfg.heads.methods, sf.ground_truth, sf.path)
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
    per_stack = max(len(group) for group in stacks.values())
    n_jobs = min(n_jobs, len(stacks))
    n_rows = len(reader.ids)
    feature_rows = n_rows if in_ram else 2 * min(cfg.heads.shuffle_buffer, n_rows)
    n_classes = len(next(iter(splits_files.values())).classes)
    check_memory(cfg, per_stack, int(row_bytes(reader) * feature_rows), reader.shape[1], n_classes)
    artifacts.writable(cfg.run_dir)
    print(f"heads: {len(todo)} runs in {len(stacks)} stack(s) of up to {per_stack} {cfg.heads.head} heads "
          f"(seeds x folds); {reader.shape[1]} features" + (" (sparse)" if reader.sparse else "")
          + f"; {n_jobs} parallel job(s); features "
          + ("in RAM" if in_ram else f"streamed {cfg.heads.shuffle_buffer} rows at a time")
          + f"; {int((~reader.valid).sum())} invalid rows skipped")
    tasks = [cluster.Task(f"heads seed {seed} fold {fold + 1}", train_fold,
                          (cfg, str(splits_files[seed].path), str(reader.path), group, [provenance(r) for r in group],
                           cluster.threads_per_task(cfg, n_jobs), in_ram))
             for (seed, fold), group in stacks.items()]
    return [rec for fold_records in cluster.run(cfg, tasks, n_jobs) for rec in fold_records]
