"""Helpers that make small data for the extraction and heads tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

import configs
from extract import registry


def save_random_checkpoint(name: str, size: int, prefix: Path, seed: int = 0, drop: str = "",
                           reshape: str = "") -> Path:
    """Save randomly initialised weights of a backbone in Slim (V2) format.

    `drop`: leave out the variables whose name contains it; `reshape`: save that one with a
    wrong shape. Both exist to test the restore errors.
    """
    spec = registry.get(name)
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(seed)
        spec.build(tf.compat.v1.placeholder(tf.float32, [1, size, size, 3]))
        variables = [v for v in tf.compat.v1.global_variables() if not (drop and drop in v.op.name)]
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = {v.op.name: session.run(v) for v in variables}
    with tf.Graph().as_default() as graph:
        stored = []
        for key, value in values.items():
            if reshape and reshape in key:
                value = np.zeros(value.shape[:-1] + (value.shape[-1] + 1,), value.dtype)
            stored.append(tf.compat.v1.Variable(value, name=key))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tf.compat.v1.train.Saver(stored).save(session, str(prefix), write_meta_graph=False)
    return prefix


def demo_config(root: Path, checkpoint: Path, n_images: int = 96, **extract) -> configs.Config:
    """A config on a small synthetic set with demo_cnn, writing under `root`, its splits made."""
    import splits

    cfg = configs.from_dict({
        "experiment": {"name": "t", "runs_dir": str(root)},
        "dataset": {"n_images": n_images, "min_labels": 0},
        "extract": {"checkpoint": str(checkpoint), "batch_size": 16, "chunk_rows": 32, **extract},
    }, source="test")
    splits.make(cfg)
    return cfg
