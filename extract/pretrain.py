"""Pretrain `demo_cnn` on a separate, fully labelled synthetic set; save a Slim checkpoint.

The demo's stand-in for an ImageNet checkpoint: the set is drawn with another seed than the
demo dataset, so no demo image is ever seen here, and extraction restores the result through
the same path as a real checkpoint. Multi-label sigmoid cross-entropy, Adam, random flips.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import artifacts
import configs
from runtime.progress import bar
from runtime.tf_quiet import tf
from splits import datasets, synthetic

from . import images, preprocessing, registry
from .demo_cnn import demo_cnn, demo_cnn_arg_scope
from .slim_compat import slim

PRETRAIN_SEED_OFFSET = 1000


def checkpoint_prefix(cfg) -> Path:
    return cfg.run_dir / "checkpoints" / "demo_cnn" / "model.ckpt"


def load_images(paths, size: int) -> np.ndarray:
    """(n, size, size, 3) float32 in [0, 255], through the extraction pipeline's decoder."""
    out = np.empty((len(paths), size, size, 3), dtype=np.float32)
    for row, image in images.decoded(np.arange(len(paths)), paths, size):
        out[row] = image
    return out


def provenance(cfg) -> dict:
    """What the demo checkpoint is made from: its set (size, seed, image size) and schedule."""
    return {"extract.pretrain_images": cfg.extract.pretrain_images,
            "extract.pretrain_epochs": cfg.extract.pretrain_epochs,
            "dataset.image_size": cfg.dataset.image_size, "seed": cfg.experiment.seed + PRETRAIN_SEED_OFFSET,
            **({"dataset.difficulty": cfg.dataset.difficulty} if cfg.dataset.difficulty else {}),
            "versions": artifacts.versions("tensorflow", "tf-slim")}


def pretrain(cfg, force: bool = False) -> Path:
    """Train and save the demo checkpoint unless one of the same provenance exists."""
    prefix = Path(cfg.extract.checkpoint) if cfg.extract.checkpoint else checkpoint_prefix(cfg)
    recipe = provenance(cfg)
    done = Path(f"{prefix}.provenance.json")
    with artifacts.claim(prefix):
        if not artifacts.must_make(done, recipe, force):
            print(f"{prefix}: already done (use --force to redo)")
            return prefix
        _pretrain(cfg, prefix)
        artifacts.record(done, recipe)
    return prefix


def _pretrain(cfg, prefix: Path) -> None:
    # data: a fully labelled synthetic set with another seed than the dataset's
    ex = cfg.extract
    seed = cfg.experiment.seed + PRETRAIN_SEED_OFFSET
    root = cfg.run_dir / "pretrain_data"
    manifest = datasets.from_csv(synthetic.write(root, ex.pretrain_images, seed, cfg.dataset.image_size,
                                                 cfg.dataset.difficulty))
    size = registry.get("demo_cnn").defaults.image_size
    pixels = load_images(manifest.paths, size)
    labels = manifest.labels.astype(np.float32)
    batch_size = 32
    steps = ex.pretrain_epochs * (len(pixels) // batch_size)
    print(f"pretrain demo_cnn: {len(pixels)} images x {labels.shape[1]} classes, "
          f"{ex.pretrain_epochs} epochs, {steps} steps of {batch_size}")

    # model
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        x = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3])
        y = tf.compat.v1.placeholder(tf.float32, [None, labels.shape[1]])
        flipped = tf.where(tf.random.uniform([tf.shape(x)[0], 1, 1, 1]) < 0.5, x[:, :, ::-1], x)
        with slim.arg_scope(demo_cnn_arg_scope()):
            logits, _ = demo_cnn(preprocessing.inception(flipped), num_classes=labels.shape[1],
                                 is_training=True)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        loss += tf.add_n(tf.compat.v1.losses.get_regularization_losses())
        with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
            train_op = tf.compat.v1.train.AdamOptimizer(2e-3).minimize(loss)
        saver = tf.compat.v1.train.Saver([v for v in tf.compat.v1.global_variables()
                                          if v.op.name.startswith("DemoCNN/") and "Adam" not in v.op.name])
        session = tf.compat.v1.Session(graph=graph)
        session.run(tf.compat.v1.global_variables_initializer())

    # loop
    rng = np.random.default_rng(seed)
    progress = bar(steps, "pretrain", "step")
    history = []
    for epoch in range(ex.pretrain_epochs):
        order = rng.permutation(len(pixels))
        losses = []
        for step in range(len(pixels) // batch_size):
            batch = order[step * batch_size:(step + 1) * batch_size]
            _, value = session.run([train_op, loss], {x: pixels[batch], y: labels[batch]})
            losses.append(value)
            progress.update()
        history.append(float(np.mean(losses)))
    progress.close()

    # save
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with graph.as_default():
        saver.save(session, str(prefix), write_meta_graph=False)
    (prefix.parent / "pretrain.json").write_text(json.dumps(
        {"loss_per_epoch": history, "images": len(pixels), "seed": seed, "config": configs.to_json(cfg)}))
    print(f"{prefix}: saved; loss per epoch {', '.join(f'{v:.3f}' for v in history)}")
