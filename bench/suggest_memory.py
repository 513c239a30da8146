"""Benchmark: the memory `model suggest` needs over a model of many unobserved entries.

    .venv/bin/python bench/suggest_memory.py [--rows 200000] [--classes 60] [--smoke]

A model directory (random head on imported features) whose out_of_fold.h5 holds `--rows` rows
of `--classes` classes (the synthetic scenes' co-occurring labels, `bench.tiny.labels`, at
least 3 a row), half of the positives hidden (so about 11 M unobserved entries at the defaults,
and the truth known: every estimator is scored too, the heaviest path). `python -m model suggest
--model DIR` runs in a child process; its peak resident memory (`getrusage` of the children)
against the issue's goal (2 GiB) and against the bytes of out_of_fold.h5's arrays as read (what
any reader holds at least).
"""
from __future__ import annotations

import argparse
import itertools
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import tiny
from model import directory as model_dir

ROOT = Path(__file__).resolve().parents[1]
GOAL = 2 * 1024 ** 3


def out_of_fold(n_rows: int, n_classes: int, seed: int = 0) -> dict:
    """out_of_fold.h5's arrays: scene labels, half of them hidden, scores that favour positives."""
    rng = np.random.default_rng(seed)
    labels = tiny.labels(n_rows, n_classes, rng)
    observed = (labels * (rng.random(labels.shape, np.float32) < 0.5)).astype(np.uint8)
    probabilities = np.clip(0.3 * labels + rng.random(labels.shape, np.float32) * 0.7, 0, 1)
    return {"ids": np.array([f"img{i:07d}" for i in range(n_rows)], object), "observed": observed,
            "labels": labels, "probabilities": probabilities.astype(np.float32),
            "fold": (np.arange(n_rows) % 4).astype(np.int8), "attrs": {"missing_rate": 0.5, "hidden": True}}


def random_model(path: Path, arrays: dict, feat_dim: int = 16) -> Path:
    n_classes = arrays["labels"].shape[1]
    rng = np.random.default_rng(1)
    sizes = (feat_dim, 8, n_classes)
    weights = [rng.normal(0, 0.1, (a, b)).astype(np.float32) for a, b in itertools.pairwise(sizes)]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    meta = {"method": "ce", "display": "CE", "params": {}, "learning_rate": 0.1, "epoch": 1,
            "head": {"type": "paper_mlp", "hidden": [8], "activation": "sigmoid"}, "feat_dim": feat_dim,
            "classes": [f"class {j}" for j in range(n_classes)],
            "thresholds": {"global": 0.5, "class": [0.5] * n_classes},
            "features": {"backbone": "imported", "source": "bench", "dtype": "float32"}, "training": {}}
    return model_dir.write(path, meta, weights, biases, {"benchmark": "suggest_memory"}, out_of_fold=arrays)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="2,000 rows: checks the code runs")
    args = parser.parse_args()
    n_rows = 2_000 if args.smoke else args.rows
    arrays = out_of_fold(n_rows, args.classes)
    unobserved = int((arrays["observed"] == 0).sum())
    held = sum(arrays[k].nbytes for k in ("observed", "labels", "probabilities", "fold"))
    with tempfile.TemporaryDirectory() as tmp:
        path = random_model(Path(tmp) / "model", arrays)
        del arrays
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "model", "suggest", "--model", str(path)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"model suggest over {n_rows:,} rows x {args.classes} classes ({unobserved:,} unobserved entries): "
          f"{seconds:.1f} s, peak resident {peak / 2 ** 20:,.0f} MiB = {peak / GOAL:.2f} of the goal "
          "(2 GiB), "
          f"{peak / held:.1f}x the arrays it reads ({held / 2 ** 20:,.0f} MiB)")


if __name__ == "__main__":
    main()
