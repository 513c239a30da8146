"""Benchmark: what a searched field study costs, from a config's grid, measured and extrapolated.

    .venv/bin/python bench/search.py [--config configs/corel5k_field.toml] [--rates 5] [--steps 6] [--smoke]

The config's every method x protocol x grid point (`heads.search.points`) as one fold's heads,
on random data of the config's shape (rows, features, classes: --rows/--features/--classes,
default Corel5k's 3,444 training rows of 499 features and 374 classes). The learning rates are
the config's [heads.search] lr where it has them, else --rates of them (5: the registry's
LR_FACTORS x the config's rate). The planner (`heads.planner.plan_stacks`) cuts the heads into
stacks that fit in free memory; one stack of the planned size runs a few steps at batch [heads]
batch_size, and the fold's time follows from steps per epoch x epochs x the stacks. Under
successive halving ([heads.search] halving, milestones) a fold trains only the head-epochs its
schedule keeps (per run ceil(n / halving) points after each milestone, plus the unsearched one
where it is not among them), and each run's chosen setting once more after the search (a choice
of the unsearched setting is promoted, not retrained): both upper bounds, extrapolated linearly
in heads. Against the limit measured in the same run (TensorFlow's best matmul rate,
bench/machine.py): the step's matrix products (forward, weight and input gradients). Prints
the peak resident memory of this process (the stack's variables, optimiser slots, the step's
temporaries).
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import configs
from bench.heads import stack_inputs, timed_steps
from bench.machine import matmul_gflops
from heads import inputs as run_inputs
from heads import methods, models, network, planner, search
from heads.predictions import HeadRun

ROOT = Path(__file__).resolve().parents[1]


def study(cfg, rates: int | None):
    """The config with [heads.search] on at `rates` learning rates (LR_FACTORS around its rate when
    5); None: the config's own search where it has one, else 5 rates."""
    if rates is None:
        if search.enabled(cfg):
            return cfg
        rates = 5
    factors = methods.LR_FACTORS if rates == 5 else np.geomspace(0.1, 10, rates)
    lr = tuple(float(f"{f * cfg.heads.learning_rate:.6g}") for f in factors)
    return dataclasses.replace(cfg,
                               heads=dataclasses.replace(cfg.heads,
                                                         search=configs.Search(enabled=True, lr=lr)))


def head_epochs(cfg, runs) -> tuple[int, int]:
    """Head-epochs of one fold's search stack without halving and under the config's schedule
    (an upper bound: the unsearched point counted as kept apart from the best), the second pass's
    one head a run at [heads] epochs included in the latter."""
    epochs, halving = cfg.heads.epochs, cfg.heads.search.halving
    marks = [*search.milestone_epochs(cfg), epochs]
    full = kept = 0
    for run in runs:
        n = alive = len(search.points(cfg, run.method))
        full += n * epochs
        start = 0
        for mark in marks:
            kept += alive * (mark - start)
            alive, start = min(n, -(-alive // halving) + 1), mark
        kept += epochs
    return full, kept


def measure(cfg, names, points, n_rows, dim, n_classes, steps):
    """Median seconds per step of a stack over `names` at their grid `points`, and the stack."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n_rows, dim)).astype(np.float32)
    targets = (rng.random((1, n_rows, n_classes)) < 0.01).astype(np.uint8)
    bank = np.stack([rng.random((n_rows, n_classes)),
                     rng.random((n_rows, n_classes)) < 0.01]).astype(np.float32)
    inputs = stack_inputs(names, targets, bank, verified_last=False)
    inputs.params = [run_inputs.resolved(dict(point.params), 1) for point in points]
    inputs.lr_scale = np.array([point.lr / cfg.heads.learning_rate for point in points])
    stack = models.HeadStack([f"h{i}" for i in range(len(names))],
                             hidden=network.hidden_layers(cfg.heads.head, cfg.heads),
                             optimizer=cfg.heads.optimizer, learning_rate=cfg.heads.learning_rate, epochs=1)
    return timed_steps(stack, inputs, x, cfg.heads.batch_size, steps, warm=2), stack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs" / "corel5k_field.toml"))
    parser.add_argument("--rates", type=int, default=None,
                        help="learning rates to search (default: the config's [heads.search], else 5)")
    parser.add_argument("--rows", type=int, default=3444)
    parser.add_argument("--features", type=int, default=499)
    parser.add_argument("--classes", type=int, default=374)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: checks the code runs, measures nothing")
    args = parser.parse_args()
    cfg = study(configs.load(args.config), args.rates)
    rows, dim, n_classes, steps = (args.rows, args.features, args.classes, args.steps)
    if args.smoke:
        rows, dim, n_classes, steps = 256, 16, 8, 2
        cfg = dataclasses.replace(cfg,
                                  heads=dataclasses.replace(cfg.heads, hidden=(8,), methods=("ce", "asl")))

    # the grid: one fold's runs, every point of each
    protocols = [*map(str, cfg.splits.ratios)] + (["single_positive"] if cfg.splits.single_positive else [])
    runs = [HeadRun(0, 0, p, m) for p in protocols for m in cfg.heads.methods]
    n_heads = sum(len(search.points(cfg, run.method)) for run in runs)
    n_val = int(np.ceil(max(cfg.splits.validation, 0.1) * rows))
    feature_bytes = 4 * dim * rows
    planned = planner.plan_stacks(cfg, {(0, 0): runs}, search.grid(cfg, cfg.heads.methods),
                                  feature_bytes, dim,
                                  n_classes, n_val)
    largest = max(planned, key=lambda part: sum(len(search.points(cfg, r.method)) for r in part[2]))[2]
    names, points = [], []
    for run in largest:
        for point in search.points(cfg, run.method):
            names.append(run.method)
            points.append(point)
    print(f"{cfg.source}: {len(cfg.heads.methods)} methods x {len(protocols)} protocols, "
          f"{len(search.learning_rates(cfg))} learning rates "
          f"x each method's grid: {n_heads} heads a fold, in {len(planned)} stack(s) of up to {len(names)} "
          f"(free memory {planner.free_memory() / 2**30:.1f} GiB)")

    # one planned stack, timed; the fold and the study extrapolated
    gflops = matmul_gflops(sizes=(256,), trials=1) if args.smoke else matmul_gflops()
    seconds, stack = measure(cfg, names, points, rows, dim, n_classes, steps)
    parameters = stack.parameter_count(dim, n_classes)
    first = len(names) * dim * (stack.hidden or (n_classes,))[0]
    flop = 2 * cfg.heads.batch_size * (3 * parameters - first)
    per_fold = seconds * -(-rows // cfg.heads.batch_size) * cfg.heads.epochs * n_heads / len(names)
    full, kept = head_epochs(cfg, runs)
    halved = per_fold * kept / full
    folds = cfg.splits.n_folds * len(cfg.seeds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"a stack of {len(names)} heads ({parameters / 1e6:.0f} M parameters), batch "
          f"{cfg.heads.batch_size}: "
          f"{seconds * 1e3:.0f} ms/step; its matrix products at the measured {gflops:.0f} GFLOP/s: "
          f"{flop / gflops / 1e6:.0f} ms ({seconds / (flop / gflops / 1e9):.1f}x)")
    print(f"one fold ({cfg.heads.epochs} epochs of {-(-rows // cfg.heads.batch_size)} steps, {len(planned)} "
          "stack(s)): "
          f"{per_fold / 60:.0f} min on every core; {folds} (seed, fold) stacks: about "
          f"{per_fold * folds / 60:.0f} min "
          f"(goal 45 min); peak resident memory {peak:.1f} GiB")
    print(f"under halving = {cfg.heads.search.halving} at epochs {list(search.milestone_epochs(cfg))} and "
          f"the second pass: {kept / full:.2f} of the head-epochs, one fold about {halved / 60:.0f} min, "
          f"{folds} (seed, fold) stacks about {halved * folds / 60:.0f} min (goal 45 min)")


if __name__ == "__main__":
    main()
