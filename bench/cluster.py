"""Benchmark: the Dask engine's overhead against joblib processes on this machine.

    .venv/bin/python bench/cluster.py [--repeats 2] [--smoke]

The demo's heads grid (configs/demo.toml as shipped: 2,400 rows, 16 classes, every registered
method x the 4 ratios and single positive x 4 folds, paper_mlp 512-256, 10 epochs) on 128-d
features (a noisy linear map of the labels, the demo's feature width), trained by the command a
user runs, `python -m heads train`, in a
fresh process each time: with `heads.n_jobs = 2` (joblib / loky processes) and with `[cluster]
scheduler = "local"` (a LocalCluster of 2 worker processes). Wall time of each, fastest of
`--repeats`; goal: the Dask run within 10% of joblib's. Then the engines' own costs: starting
a LocalCluster, and the round trip of an empty task on a running one (200 of them).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import configs
import splits
from features import store as feature_store
from runtime import cluster
from splits import store as splits_store

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.toml"


SMOKE = {"experiment": {"seeds": [0]}, "dataset": {"n_images": 200}, "splits": {"n_folds": 2},
         "heads": {"methods": ["ce", "confidence"], "epochs": 1, "hidden": [16]}}


def demo_raw(root: str, scheduler: str, smoke: bool = False) -> dict:
    """The shipped demo config (tiny under --smoke) writing under `root`, on `scheduler`."""
    raw = tomllib.loads(DEMO.read_text())
    raw["experiment"]["runs_dir"] = root
    raw["cluster"] = {"scheduler": scheduler, "workers": 2}
    for section, values in (SMOKE if smoke else {}).items():
        raw[section].update(values)
    return raw


def demo_config(root: str, scheduler: str, smoke: bool = False):
    return configs.from_dict(demo_raw(root, scheduler, smoke), source=f"demo ({scheduler or 'joblib'})")


def toml_text(raw: dict, prefix: str = "") -> str:
    """A config dict of tables as TOML (JSON's scalars and lists are TOML's; a table inside a
    table, such as [heads.search], under its dotted header)."""
    parts = []
    for section, table in raw.items():
        name = f"{prefix}{section}"
        plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
        parts.append(f"[{name}]\n"
                     + "".join(f"{key} = {json.dumps(value)}\n" for key, value in plain.items()))
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        if nested:
            parts.append(toml_text(nested, f"{name}."))
    return "".join(parts)


def features(cfg, dim: int = 128) -> None:
    """A feature store for the config's splits: labels mapped to `dim` values plus noise."""
    sf = splits_store.load(splits_store.path(cfg))
    rng = np.random.default_rng(0)
    x = (sf.labels @ rng.normal(0, 1, (sf.labels.shape[1], dim)) + rng.normal(0, 0.5, (len(sf.ids), dim)))
    path = feature_store.path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    recipe = {"bench": "noisy linear map", "dim": dim}
    feature_store.create(tmp, sf.ids, dim, "float32", 256, {"backbone": "bench"}, recipe)
    for chunk in feature_store.pending_chunks(tmp):
        rows = slice(chunk * 256, (chunk + 1) * 256)
        feature_store.commit_chunk(tmp, chunk, x[rows].astype(np.float32), np.ones(len(x[rows]), bool), [])
    feature_store.finish(tmp, path, recipe)


def grid_seconds(scheduler: str, repeats: int, smoke: bool = False) -> float:
    """Fastest wall time of `python -m heads train` on the demo grid, a fresh process each time."""
    best = np.inf
    for _ in range(repeats):
        root = tempfile.mkdtemp()
        cfg = demo_config(root, scheduler, smoke)
        splits.make(cfg)
        features(cfg)
        config = Path(root) / "demo.toml"
        config.write_text(toml_text(demo_raw(root, scheduler, smoke)))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "heads", "train", "--config", str(config), "--n-jobs", "2"],
                       cwd=ROOT, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def nothing() -> None:
    return None


def dask_costs(n: int = 200) -> tuple[float, float]:
    """(seconds to start a 2-worker LocalCluster, seconds per empty task on it)."""
    from runtime import dask_engine
    start = time.perf_counter()
    client, local = dask_engine.connect(demo_config(tempfile.mkdtemp(), "local"))
    started = time.perf_counter()
    client.gather([client.submit(nothing, pure=False) for _ in range(n)])
    per_task = (time.perf_counter() - started) / n
    client.close()
    local.close()
    return started - start, per_task


def joblib_latency(n: int = 200) -> float:
    """Seconds per empty task through this machine's engine, its processes already started."""
    cfg = demo_config(tempfile.mkdtemp(), "")
    tasks = [cluster.Task(f"empty {i}", nothing) for i in range(n)]
    with contextlib.redirect_stdout(io.StringIO()):  # one progress line per task
        cluster.run(cfg, tasks[:2], n_jobs=2)
        start = time.perf_counter()
        cluster.run(cfg, tasks, n_jobs=2)
        return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny grid: checks the code runs, measures nothing")
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats
    joblib_seconds = grid_seconds("", repeats, args.smoke)
    dask_seconds = grid_seconds("local", repeats, args.smoke)
    cfg = demo_config(tempfile.mkdtemp(), "", args.smoke)
    heads = len(cfg.heads.methods) * (len(cfg.splits.ratios) + cfg.splits.single_positive)
    print(f"\ndemo heads grid ({cfg.splits.n_folds} stacks of {heads} heads): joblib {joblib_seconds:.1f} s, "
          "Dask LocalCluster "
          f"{dask_seconds:.1f} s: {dask_seconds / joblib_seconds:.2f}x (goal <= 1.10x)")
    startup, per_task = dask_costs()
    print(f"LocalCluster start-up {startup:.1f} s; per empty task: Dask {per_task * 1e3:.1f} ms, "
          f"joblib {joblib_latency() * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
