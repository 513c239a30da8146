"""Stages on a Dask LocalCluster (2 worker processes) against the same work on this process."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import configs
import splits
from extract import extraction
from features import store as feature_store
from finetune import train as finetune
from heads import predictions, trainer
from tests.conftest import ROOT
from tests.helpers import (
    alive,
    assert_same_file,
    children,
    make_features,
    save_random_checkpoint,
    write_config,
)

pytestmark = pytest.mark.slow
LOCAL = {"scheduler": "local", "workers": 2}


def heads_config(root, **cluster):
    return configs.from_dict({"experiment": {"name": "c", "runs_dir": str(root)},
                              "dataset": {"n_images": 240},
                              "splits": {"ratios": [0.0, 0.5]}, "cluster": cluster,
                              "heads": {"head": "paper_mlp", "hidden": [16], "epochs": 2, "optimizer": "adam",
                                        "learning_rate": 0.01, "methods": ["ce", "ignore_missing", "epr"]}},
                             source="test")


def all_probabilities(cfg) -> dict:
    out = {}
    for path in sorted(cfg.run_dir.glob("heads/**/predictions.h5")):
        with h5py.File(path) as h5:
            out[str(path.relative_to(cfg.run_dir))] = h5["probabilities"][:]
    return out


def test_the_heads_grid_on_a_local_cluster_equals_one_process(tmp_path):
    one, dask = heads_config(tmp_path / "one"), heads_config(tmp_path / "dask", **LOCAL)
    for cfg in (one, dask):
        make_features(cfg)
    trainer.train(one, n_jobs=1)
    trainer.train(dask)
    a, b = all_probabilities(one), all_probabilities(dask)
    assert a.keys() == b.keys() and len(a) == 4 * 2 * 3
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)


def test_extraction_as_three_shard_tasks_and_a_merge_equals_one_run(tmp_path):
    checkpoint = save_random_checkpoint("demo_cnn", 96, tmp_path / "ckpt" / "model.ckpt")
    extract = {"checkpoint": str(checkpoint), "batch_size": 16, "chunk_rows": 32}
    raw = {"experiment": {"name": "x", "runs_dir": str(tmp_path / "one")},
           "dataset": {"n_images": 100, "min_labels": 0},
           "extract": extract}
    one = configs.from_dict(raw, source="test")
    sharded = configs.from_dict({**raw, "experiment": {"name": "x", "runs_dir": str(tmp_path / "sharded")},
                                 "cluster": {**LOCAL, "extract_shards": 3}}, source="test")
    for cfg in (one, sharded):
        splits.make(cfg)
    whole = extraction.extract_features(one)
    merged = extraction.extract_features(sharded)
    assert not list(merged.parent.glob("*.shard-*"))  # the shards were merged away
    assert_same_file(whole, merged, ignore={"config", "provenance", "fingerprint"})  # other image folders
    assert feature_store.FeatureReader(merged).attrs["provenance"]


def test_a_finetune_grid_of_two_runs_equals_the_sequential_runs(tmp_path):
    checkpoint = save_random_checkpoint("demo_cnn", 96, tmp_path / "ckpt" / "model.ckpt", seed=3)

    def config(root, **cluster):
        return configs.from_dict({
            "experiment": {"name": "f", "runs_dir": str(root)}, "dataset": {"n_images": 96},
            "extract": {"checkpoint": str(checkpoint), "pooling": "max"}, "heads": {"hidden": [16]},
            "finetune": {"folds": [1], "ratios": [0.5], "methods": ["ce", "confidence"], "batch_size": 16,
                         "epochs": 1},
            "cluster": cluster}, source="test")

    sequential, dask = config(tmp_path / "seq"), config(tmp_path / "dask", **LOCAL)
    for cfg in (sequential, dask):
        splits.make(cfg)
    finetune.finetune(sequential)
    records = finetune.finetune(dask)
    assert len(records) == 2
    for method in ("ce", "confidence"):
        run = predictions.HeadRun(0, 0, "0.5", method)
        with h5py.File(predictions.file(sequential, run, "finetune")) as a, \
                h5py.File(predictions.file(dask, run, "finetune")) as b:
            np.testing.assert_allclose(a["probabilities"][:], b["probabilities"][:], atol=1e-5)


def test_a_killed_worker_is_reported_and_the_rerun_completes_the_grid(tmp_path):
    config = write_config(tmp_path / "a.toml", tmp_path, dataset={"n_images": 400}, splits={"n_folds": 2},
                          heads={"epochs": 40, "head": "paper_mlp", "hidden": [64]}, cluster=LOCAL)
    cfg = configs.load(config)
    make_features(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "heads", "train", "--config", str(config)]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline, victim = time.time() + 180, None
    while time.time() < deadline and victim is None:
        time.sleep(1)
        busy = [p for p in children(first.pid) if alive(p) and _cpu_seconds(p) > 3]  # a worker that trains
        victim = busy[0] if busy else None
    assert victim, "no worker started training"
    os.kill(victim, signal.SIGKILL)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 2, err[-2000:]
    assert "FAILED" in out and "task(s) failed (a rerun redoes only these)" in err
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    reference = configs.load(write_config(tmp_path / "b.toml", tmp_path / "ref", dataset={"n_images": 400},
                                          splits={"n_folds": 2},
                                          heads={"epochs": 40, "head": "paper_mlp", "hidden": [64]}))
    make_features(reference)
    trainer.train(reference, n_jobs=1)
    got, want = all_probabilities(cfg), all_probabilities(reference)
    assert got.keys() == want.keys() and len(got) == 2 * 2 * 2
    for key in got:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_default_config_imports_no_dask(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
              "from test_cluster import heads_config\nfrom tests.helpers import make_features\nfrom heads "
              "import trainer\n"
              f"cfg = heads_config({str(tmp_path)!r})\nmake_features(cfg)\ntrainer.train(cfg, n_jobs=2)\n"
              "assert not [m for m in sys.modules if m == 'dask' or m.startswith(('dask.', 'distributed'))]\n"
              "print('no dask')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and "no dask" in done.stdout, done.stderr[-2000:]


def test_a_forced_run_that_cannot_start_keeps_the_complete_outputs(tmp_path, monkeypatch):
    from runtime import dask_engine
    cfg = heads_config(tmp_path)
    make_features(cfg)
    trainer.train(cfg, only={"fold": "1"}, n_jobs=1)
    before = all_probabilities(cfg)
    assert len(before) == 6
    too_many = heads_config(tmp_path, scheduler="local", workers=64)
    with pytest.raises(ValueError, match=r"cluster.workers = 64, but this machine has \d+ cores"):
        trainer.train(too_many, only={"fold": "1"}, force=True)
    with pytest.raises(ValueError, match=r"--n-jobs -1: the number of parallel stacks must be at least 1"):
        trainer.train(cfg, only={"fold": "1"}, n_jobs=-1, force=True)
    monkeypatch.setattr(dask_engine, "CONNECT_SECONDS", 1)
    nowhere = heads_config(tmp_path, scheduler="tcp://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ValueError,
                       match=r"no Dask scheduler answered at cluster.scheduler = 'tcp://127.0.0.1:9' "
                                         r"within 1 s"):
        trainer.train(nowhere, only={"fold": "1"}, force=True)
    after = all_probabilities(cfg)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    assert trainer.train(cfg, only={"fold": "1"}, n_jobs=1) == []  # still complete: nothing to redo

