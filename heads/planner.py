"""How a command's runs are planned into stacks that fit in memory (TensorFlow-free but for the
stack's parameter count).

A (seed, fold)'s runs train as one stack when its grid points fit; otherwise as few stacks as fit,
a run's grid points always together (its selection compares them). Stacks trained at once (n_jobs
processes, a LocalCluster's workers) share this machine's free memory; on a running Dask cluster
each task gets its smallest worker's memory limit per thread (`runtime.cluster.task_memory`).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from features.store import FeatureReader
from runtime import cluster

from . import models, search

RAM_FRACTION = 0.5  # features load into RAM when they take at most this share of free memory


class Stack(NamedTuple):
    """One planned stack: the runs of a (seed, fold) that train together."""
    seed: int
    fold: int  # 0-based
    runs: list  # heads.predictions.HeadRun


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
    return (1 if cluster.running_cluster(cfg)
            else n_jobs) * row_bytes(reader) * n_rows <= RAM_FRACTION * memory(cfg)


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
    """Bytes one of `at_once` stacks training together in `available` bytes may hold besides its
    own features."""
    return 0.8 * available / at_once - feature_bytes


def stacks_at_once(cfg, stacks: dict, grid: dict, feature_bytes: int, per_head: int, n_jobs: int) -> int:
    """How many stacks train at once on this machine, each with its own features and a share of
    free memory: n_jobs processes, fewer while the largest run's grid would not fit in a share;
    a Dask LocalCluster's workers; 1 for a running cluster (`memory` gives each task its worker's
    share). `grid`: {method: its grid points} (`heads.search.grid`)."""
    if cfg.cluster.scheduler:
        return cfg.cluster.workers if cfg.cluster.scheduler == "local" else 1
    largest = max(len(search.points_of(grid, run)) for runs in stacks.values() for run in runs)
    at_once, available = min(n_jobs, len(stacks)), free_memory()
    while at_once > 1 and stack_budget(available, feature_bytes, at_once) < largest * per_head:
        at_once -= 1
    return max(at_once, 1)


def too_large(cfg, points: int, need: int, available: int, feat_dim: int, at_once: int) -> ValueError:
    """The error for one run whose grid alone cannot fit, with what to change."""
    return ValueError(f"{points} {cfg.heads.head} heads on {feat_dim}-d features need about "
                      f"{need / 2**30:.1f} GiB "
                      f"but {available / 2**30:.1f} GiB are free"
                      + (" to a task of cluster.scheduler's smallest worker"
                         if cluster.running_cluster(cfg) else "")
                      + (f", shared by {at_once} stacks at once (cluster.workers)" if at_once > 1 else "")
                      + "; use pooling = 'avg' in [extract], fewer methods, ratios or grid points per run "
                        "(--only, "
                      "[heads.search] lr / params), a smaller head, or heads.features = 'stream' with a "
                      "smaller "
                      "heads.shuffle_buffer")


def plan_stacks(cfg, stacks: dict, grid: dict, feature_bytes: int, feat_dim: int, n_classes: int, n_val: int,
                at_once: int = 1) -> list[Stack]:
    """Each (seed, fold)'s runs (`stacks`: {(seed, fold): runs}) in as few stacks as fit in free
    memory shared by `at_once` stacks training together, or in a running cluster's task share (a
    run's grid points stay in one stack: its selection compares them); ValueError when one run's
    grid alone cannot fit."""
    available = memory(cfg)
    budget = stack_budget(available, feature_bytes, at_once)
    per_head = stack_bytes(cfg, 1, feat_dim, n_classes, n_val)
    most = int(budget // per_head) if budget > 0 else 0
    out = []
    for (seed, fold), runs in stacks.items():
        part, size = [], 0
        for run in runs:
            points = len(search.points_of(grid, run))
            if points > most:
                need = stack_bytes(cfg, points, feat_dim, n_classes, n_val) + feature_bytes
                raise too_large(cfg, points, need, available, feat_dim, at_once)
            if size + points > most:
                out.append(Stack(seed, fold, part))
                part, size = [], 0
            part.append(run)
            size += points
        out.append(Stack(seed, fold, part))
    return out


class Plan(NamedTuple):
    """The stacks of a command and how they run."""
    stacks: list[Stack]
    n_jobs: int  # stacks trained at once
    largest: int  # heads in the largest stack
    fewer: str  # why fewer jobs run than were asked ("" when not)


def plan(cfg, todo: list, grid: dict, reader: FeatureReader, n_classes: int, in_ram: bool,
         n_jobs: int) -> Plan:
    """The runs to do in stacks that fit in memory: each (seed, fold)'s runs together, split where
    free memory (shared by the stacks trained at once) is short."""
    stacks: dict = {}
    for run in todo:
        stacks.setdefault((run.seed, run.fold), []).append(run)
    n_rows = len(reader.ids)
    feature_rows = n_rows if in_ram else 2 * min(cfg.heads.shuffle_buffer, n_rows)
    n_val = int(np.ceil(cfg.splits.validation * n_rows))
    feature_bytes = int(row_bytes(reader) * feature_rows)
    per_head = stack_bytes(cfg, 1, reader.shape[1], n_classes, n_val)
    at_once = stacks_at_once(cfg, stacks, grid, feature_bytes, per_head, n_jobs)
    planned = plan_stacks(cfg, stacks, grid, feature_bytes, reader.shape[1], n_classes, n_val, at_once)
    local = not cfg.cluster.scheduler
    fewer = f" ({n_jobs} asked; more would not fit in free memory)" if local and at_once < min(n_jobs,
                                                                                               len(stacks)) \
        else ""
    largest = max(sum(len(search.points_of(grid, run)) for run in stack.runs) for stack in planned)
    return Plan(planned, min(at_once if local else n_jobs, len(planned)), largest, fewer)
