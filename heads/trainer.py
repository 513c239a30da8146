"""Train every (method x ratio) head of a fold in one stack; folds in parallel processes.

Reads `splits.h5` and the feature store, writes per fold x ratio x method a run directory
`runs/<name>/heads/fold<k>/ratio<r>/<method>/` holding:
    predictions.h5  ids (n_test,) str, labels (n_test, L) uint8 ground truth,
                    probabilities (n_test, L) float32; with validation rows also val_ids,
                    val_observed (n_val, L) uint8 and val_probabilities (n_val, L) float32;
                    attributes method, ratio, fold, head, seed, source (heads | finetune),
                    config (JSON), complete
    history.csv     loss per epoch (train, and validation when there is some)
    timing.json     seconds to fit this fold's stack, heads in it, steps
Folds are 1-based in directory names and tables, 0-based in `splits.h5`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import configs
from features.store import FeatureReader
from splits import store as splits_store
from splits import weights

from . import losses, models

RAM_FRACTION = 0.5  # features load into RAM when they take at most this share of free memory


@dataclass(frozen=True)
class HeadRun:
    fold: int  # 0-based
    ratio: float
    method: str

    @property
    def key(self) -> str:
        return f"fold{self.fold + 1}/ratio{self.ratio:.2f}/{self.method}"


def run_dir(cfg, run: HeadRun, stage: str = "heads") -> Path:
    return cfg.run_dir / stage / run.key


def is_complete(path: Path) -> bool:
    target = path / "predictions.h5"
    if not target.is_file():
        return False
    with h5py.File(target, "r") as h5:
        return bool(h5.attrs.get("complete", False))


def write_predictions(path: Path, *, ids, labels, probabilities, attrs, validation=None) -> None:
    """Write predictions.h5 atomically (the format heads, finetune and analysis share)."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "predictions.h5.tmp"
    with h5py.File(tmp, "w") as h5:
        h5.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        h5.create_dataset("labels", data=labels.astype(np.uint8))
        h5.create_dataset("probabilities", data=probabilities.astype(np.float32))
        if validation is not None:
            val_ids, val_observed, val_probabilities = validation
            h5.create_dataset("val_ids", data=np.array(val_ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
            h5.create_dataset("val_observed", data=val_observed.astype(np.uint8))
            h5.create_dataset("val_probabilities", data=val_probabilities.astype(np.float32))
        h5.attrs.update(attrs)
        h5.attrs["complete"] = True
    os.replace(tmp, path / "predictions.h5")


def plan_runs(cfg, folds, ratios, methods, only: dict | None = None, force: bool = False,
              stage: str = "heads") -> list[HeadRun]:
    """Every (fold, ratio, method) of a grid (folds 0-based), filtered by `only`, without the
    runs of `stage` that are complete. A value of `only` outside the grid is an error."""
    only = only or {}
    for method in methods:
        losses.get(method)
    grid = {"fold": [k + 1 for k in folds], "ratio": list(ratios), "method": list(methods)}
    for key, values in grid.items():
        if key in only and not any(_matches(key, value, only[key]) for value in values):
            raise ValueError(f"--only {key}={only[key]} is not in the [{stage}] grid of {cfg.source}: {values}")
    runs = [HeadRun(k, r, m) for k in folds for r in ratios for m in methods
            if all(_matches(key, value, only[key]) for key, value in (("fold", k + 1), ("ratio", r), ("method", m))
                   if key in only)]
    return [run for run in runs if force or not is_complete(run_dir(cfg, run, stage))]


def _matches(key: str, value, wanted: str) -> bool:
    """Whether a grid value (1-based fold, ratio, method) is the one `--only key=wanted` names."""
    if key == "ratio":
        return bool(np.isclose(value, float(wanted)))
    return value == (int(wanted) if key == "fold" else wanted)


def check_features(reader: FeatureReader, sf) -> None:
    if len(reader.ids) != len(sf.ids) or (reader.ids != sf.ids).any():
        raise ValueError(f"{reader.path} has {len(reader.ids)} ids that differ from the {len(sf.ids)} of "
                         f"{sf.path}; regenerate the features (make features --force) for this dataset")


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


def finite(x: np.ndarray, path) -> np.ndarray:
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(1).sum())
        raise ValueError(f"{path}: {bad} rows hold NaN or infinite features; "
                         "regenerate them (make features --force) and check the images and checkpoint")
    return x


class InMemory:
    """Feature rows held in RAM (the fast path): batches index an array."""

    def __init__(self, reader: FeatureReader, rows: np.ndarray):
        self.x = finite(reader.rows(rows), reader.path)

    def batches(self, order):
        for positions in order:
            yield positions, self.x[positions]

    def blocks(self):
        yield np.arange(len(self.x)), self.x


class Streamed:
    """Feature rows read from HDF5 a window at a time; at most two windows are held in RAM."""

    def __init__(self, reader: FeatureReader, rows: np.ndarray, window: int):
        self.reader, self.rows, self.window = reader, rows, window

    def _read(self, start: int) -> np.ndarray:
        return finite(self.reader.window(self.rows[start:start + self.window]), self.reader.path)

    def batches(self, order):
        cache: dict[int, np.ndarray] = {}
        for positions in order:
            starts = positions // self.window * self.window
            needed = set(starts.tolist())
            cache = {k: v for k, v in cache.items() if k in needed}  # epochs visit a window once
            x = np.empty((len(positions), self.reader.shape[1]), np.float32)
            for start in needed:
                if start not in cache:
                    cache[start] = self._read(start)
                pick = starts == start
                x[pick] = cache[start][positions[pick] - start]
            yield positions, x

    def blocks(self):
        for start in range(0, len(self.rows), self.window):
            yield np.arange(start, min(start + self.window, len(self.rows))), self._read(start)


def train_fold(cfg, splits_path: str, features_path: str, runs: list[HeadRun], n_threads: int = 0,
               in_ram: bool = True) -> list[dict]:
    """Train one fold's heads as one stack and write their run directories (a joblib worker)."""
    import tensorflow as tf
    if n_threads:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    fold = runs[0].fold
    assert all(run.fold == fold for run in runs)

    # data: training rows (validation rows apart), their observed labels and weights per head
    sf = splits_store.load(splits_path)
    reader = FeatureReader(features_path)
    check_features(reader, sf)
    valid = reader.valid
    validation_rows = np.flatnonzero(sf.validation(fold) & valid)
    train = np.flatnonzero((sf.test_fold != fold) & ~sf.validation(fold) & valid)
    test = np.flatnonzero((sf.test_fold == fold) & valid)
    skipped = int((~valid).sum())
    observed = {r: sf.observed(fold, sf.ratio_index(r)) for r in {run.ratio for run in runs}}
    targets = np.stack([observed[run.ratio][train] for run in runs])
    fold_weights = [losses.fold_negative_weights(run.method, sf.labels, observed[run.ratio], train, validation_rows,
                                                 run.ratio, cfg.dataset.natural_missing_rate) for run in runs]
    neg_weight = np.stack([train_weight for train_weight, _ in fold_weights])
    pos_weight = np.stack([weights.pos_weight(observed[run.ratio][train]) for run in runs])
    window = 0 if in_ram else cfg.heads.shuffle_buffer
    source = (lambda rows: InMemory(reader, rows)) if in_ram else (lambda rows: Streamed(reader, rows, window))
    x_train, x_val, x_test = source(train), source(validation_rows), source(test)
    validation = None
    if len(validation_rows):
        val_targets = np.stack([observed[run.ratio][validation_rows] for run in runs])
        validation = (x_val.blocks, val_targets, np.stack([val_weight for _, val_weight in fold_weights]))

    # model and loop
    stack = models.make(cfg.heads.head, [run.key.split("/", 1)[1] for run in runs], cfg.heads,
                        cfg.experiment.seed + fold)
    rng = np.random.default_rng([cfg.experiment.seed, fold])

    def batches():
        return x_train.batches(epoch_batches(len(train), cfg.heads.batch_size, rng, window))

    def predict(part):
        return np.concatenate([stack.predict_proba(x) for _, x in part.blocks()], axis=1)

    stack.fit(batches, targets, pos_weight, neg_weight, [run.method for run in runs], validation,
              d_in=reader.shape[1])
    probabilities = predict(x_test)
    val_probabilities = predict(x_val) if len(validation_rows) else None

    # save: one run directory per head
    records = []
    steps = len(stack.history_) * -(-len(train) // cfg.heads.batch_size)
    for h, run in enumerate(runs):
        path = run_dir(cfg, run)
        attrs = {"method": run.method, "ratio": run.ratio, "fold": run.fold + 1, "head": cfg.heads.head,
                     "seed": cfg.experiment.seed, "source": "heads", "config": configs.to_json(cfg),
                     "features": str(features_path), "skipped_invalid": skipped,
                     "feature_access": "ram" if in_ram else f"stream (window {window} rows)"}
        write_predictions(path, ids=sf.ids[test], labels=sf.labels[test], probabilities=probabilities[h],
                          attrs=attrs, validation=None if val_probabilities is None else
                          (sf.ids[validation_rows], observed[run.ratio][validation_rows], val_probabilities[h]))
        with open(path / "history.csv", "w") as fh:
            has_val = "val_loss" in stack.history_[0]
            fh.write("epoch,train_loss" + (",val_loss" if has_val else "") + "\n")
            fh.writelines(f"{rec['epoch']},{rec['train_loss'][h]:.6f}"
                         + (f",{rec['val_loss'][h]:.6f}" if has_val else "") + "\n" for rec in stack.history_)
        timing = {"fold_fit_seconds": stack.fit_seconds_, "heads_in_stack": len(runs), "steps": steps,
                  "train_rows": len(train), "test_rows": len(test), "skipped_invalid": skipped}
        (path / "timing.json").write_text(json.dumps(timing))
        records.append({"run": run.key, **timing})
    return records


def free_memory() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def features_in_ram(cfg, n_rows: int, feat_dim: int, n_jobs: int) -> bool:
    """heads.features, with "auto" = RAM when every parallel fold's float32 rows fit in a share
    of free memory."""
    if cfg.heads.features != "auto":
        return cfg.heads.features == "ram"
    return 4 * n_rows * feat_dim * n_jobs <= RAM_FRACTION * free_memory()


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
    """Train the config's grid of heads (or the `only` part of it); complete runs are skipped."""
    from joblib import Parallel, delayed

    from extract.extraction import feature_path
    from splits import splits_path

    sf = splits_store.load(splits_path(cfg))
    features = feature_path(cfg)
    reader = FeatureReader(features)
    check_features(reader, sf)
    for ratio in cfg.splits.ratios:
        sf.ratio_index(ratio)
    runs = plan_runs(cfg, range(sf.n_folds), cfg.splits.ratios, cfg.heads.methods, only, force)
    if not runs:
        print(f"{cfg.run_dir / 'heads'}: every requested run is complete (use --force to redo)")
        return []
    folds = sorted({run.fold for run in runs})
    n_train = int((sf.test_fold != folds[0]).sum())
    per_fold = max(sum(run.fold == k for run in runs) for k in folds)
    n_jobs = min(n_jobs or cfg.heads.n_jobs, len(folds))
    in_ram = features_in_ram(cfg, len(sf.ids), reader.shape[1], n_jobs)
    feature_rows = len(sf.ids) if in_ram else 2 * min(cfg.heads.shuffle_buffer, len(sf.ids))
    check_memory(cfg, per_fold, 4 * feature_rows * reader.shape[1], reader.shape[1], len(sf.classes))
    steps = -(-n_train // cfg.heads.batch_size) * cfg.heads.epochs
    print(f"heads: {len(runs)} runs ({per_fold} {cfg.heads.head} heads per fold stack) over folds "
          f"{[k + 1 for k in folds]}; about {n_train} training rows x {reader.shape[1]} features, "
          f"{steps} steps per fold; {n_jobs} parallel job(s); features "
          + ("in RAM" if in_ram else f"streamed {cfg.heads.shuffle_buffer} rows at a time")
          + f"; {int((~reader.valid).sum())} invalid rows skipped")
    threads = max(1, (os.cpu_count() or 1) // n_jobs) if n_jobs > 1 else 0  # 0: this process's TF as is
    jobs = [delayed(train_fold)(cfg, str(sf.path), str(features), [r for r in runs if r.fold == k], threads,
                                in_ram)
            for k in folds]
    records = [rec for fold_records in Parallel(n_jobs=n_jobs)(jobs) for rec in fold_records]
    for fold in folds:
        seconds = next(r["fold_fit_seconds"] for r in records if r["run"].startswith(f"fold{fold + 1}/"))
        print(f"fold {fold + 1}: fitted in {seconds:.1f} s")
    return records
