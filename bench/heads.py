"""Benchmark: one fold of 12 paper_mlp heads (3 methods x 4 ratios) on COCO-sized features.

    .venv/bin/python bench/heads.py [--steps 20]

Random features 24,731 x 1536 (train) with 80 classes, batch 32 as the paper. Prints per step
the time, the FLOP time at this CPU's measured matmul rate, the traffic time at its measured
copy bandwidth (weights + gradients + Adadelta's two accumulators, read and written), the
batched-vs-loop speed-up, and the whole fold's wall time at batch 32 and at batch 256.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import copy_gbps, matmul_gflops
from heads.models import HeadStack

N_TRAIN, DIM, N_CLASSES, HIDDEN = 24_731, 1536, 80, (2048, 1024, 256)
METHODS = ["ce", "ignore_missing", "confidence"] * 4


def time_steps(keys, methods, x, targets, weights, batch, steps) -> float:
    """Seconds per step of one stack over `keys`, measured after a warm-up."""
    stack = HeadStack(keys, hidden=HIDDEN, epochs=1, seed=0)
    pos = np.ones((len(keys), N_CLASSES), np.float32)
    rng = np.random.default_rng(0)
    order = [rng.integers(0, len(x), batch) for _ in range(steps + 3)]
    times = []

    def batches():
        for rows in order:
            times.append(time.perf_counter())
            yield rows, x[rows]

    stack.fit(batches, targets, pos, weights, methods, d_in=x.shape[1])
    return float(np.median(np.diff(times[3:])))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (N_TRAIN, DIM)).astype(np.float32)
    targets = (rng.random((12, N_TRAIN, N_CLASSES)) < 0.06).astype(np.float32)
    weights = rng.random((12, N_TRAIN, N_CLASSES)).astype(np.float32)
    keys = [f"h{i}" for i in range(12)]
    gflops, gbps = matmul_gflops(), copy_gbps()
    sizes = (DIM,) + HIDDEN + (N_CLASSES,)
    params = 12 * sum(a * b + b for a, b in itertools.pairwise(sizes))
    traffic = params * 4 * 4 * 2  # 4 arrays (weights, grads, 2 accumulators), each read and written
    print(f"machine: float32 matmul {gflops:.0f} GFLOP/s, copy {gbps:.1f} GB/s; "
          f"12 heads hold {params / 1e6:.0f} M parameters, about {traffic / 1e9:.1f} GB of traffic per step")
    for batch in (32, 256):
        flops = 3 * 2 * batch * params  # forward + two backward products
        step = time_steps(keys, METHODS, x, targets, weights, batch, args.steps)
        bound = max(flops / gflops / 1e9, traffic / gbps / 1e9)
        fold = step * -(-N_TRAIN // batch) * 20
        print(f"batch {batch}: {step * 1e3:.0f} ms/step; FLOP time {flops / gflops / 1e6:.0f} ms, traffic time "
              f"{traffic / gbps / 1e6:.0f} ms -> bound {bound * 1e3:.0f} ms; {step / bound:.2f}x the bound "
              f"(target <= 2x); 20 epochs = {fold / 60:.0f} min per fold")
    loop = sum(time_steps([k], [m], x, targets[i:i + 1], weights[i:i + 1], 32, args.steps)
               for i, (k, m) in enumerate(zip(keys, METHODS)))
    stacked = time_steps(keys, METHODS, x, targets, weights, 32, args.steps)
    print(f"batch 32: stacked {stacked * 1e3:.0f} ms/step vs a loop over 12 heads {loop * 1e3:.0f} ms: "
          f"{loop / stacked:.2f}x")


if __name__ == "__main__":
    main()
