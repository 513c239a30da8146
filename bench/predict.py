"""Benchmark: a model's predictions from images against extraction's own rate, and from features.

    .venv/bin/python bench/predict.py [--images 96] [--backbone inception_resnet_v2] [--rows 200000] [--smoke]

From images: `model predict --images` over a folder of 640 x 480 JPEGs (the backbone at its
default settings, random weights: speed does not depend on them; a model directory with a
random paper_mlp head on its features) against the extraction of the same images into a store
(`extract.extraction.run`, what prediction builds on), both timed end to end in this run: the
rate ratio is the goal (>= 90% of extraction's own rate). From features: `model predict
--features` over a .npy of `--rows` rows of 1536 features (rows/s, reading and the CSV
included) beside the limit the matrix products of its head set at this machine's matmul rate.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import matmul_gflops
from extract import checkpoints, extraction, registry
from model import directory as model_dir
from model import predict
from runtime.tf_quiet import tf

HIDDEN = (2048, 1024, 256)  # the paper's head


def random_checkpoint(name: str, size: int, prefix: Path) -> Path:
    """A checkpoint of the backbone's randomly initialised variables (speed does not depend on them)."""
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(0)
        registry.get(name).build(tf.compat.v1.placeholder(tf.float32, [1, size, size, 3]))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix.parent.mkdir(parents=True, exist_ok=True)
            tf.compat.v1.train.Saver().save(session, str(prefix), write_meta_graph=False)
    return prefix


def images(folder: Path, n_images: int) -> None:
    """n 640 x 480 JPEGs (32 distinct ones repeated)."""
    from PIL import Image
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(32)]
    for i in range(n_images):
        pictures[i % 32].save(folder / f"{i:05d}.jpg", quality=90)


def random_model(directory: Path, plan: extraction.Plan, feat_dim: int, prefix: Path, hidden,
                 n_classes=80) -> Path:
    """A model directory whose head has random weights, for the network `plan` at `prefix`."""
    rng = np.random.default_rng(1)
    sizes = (feat_dim, *hidden, n_classes)
    weights = [rng.normal(0, 0.01, (a, b)).astype(np.float32) for a, b in itertools.pairwise(sizes)]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    contract = {"backbone": plan.backbone, "endpoint": plan.endpoint, "image_size": plan.image_size,
                "preprocessing": plan.preprocessing, "pooling": plan.pooling, "dtype": plan.dtype,
                "checkpoint": str(prefix), "checkpoint_sha256": checkpoints.sha256(prefix)}
    meta = {"method": "ce", "display": "CE", "params": {}, "learning_rate": 0.1, "epoch": 1,
            "head": {"type": "paper_mlp", "hidden": list(hidden), "activation": "sigmoid"},
            "feat_dim": feat_dim,
            "classes": [f"c{j}" for j in range(n_classes)],
            "thresholds": {"global": 0.5, "class": [0.5] * n_classes}, "features": contract, "training": {}}
    return model_dir.write(directory, meta, weights, biases, {"benchmark": True})


def from_images(root: Path, backbone: str, n_images: int, size: int) -> tuple[float, float]:
    """(extraction's rate, prediction's rate) in images/s over the same folder."""
    spec = registry.get(backbone)
    defaults = spec.defaults
    plan = extraction.Plan(backbone, defaults.endpoint, size or defaults.image_size, defaults.preprocessing,
                           defaults.pooling, "float16")
    prefix = random_checkpoint(backbone, plan.image_size, root / "ckpt" / "model.ckpt")
    folder = root / "images"
    images(folder, n_images)
    keys, paths = predict.image_list(folder)
    job = extraction.Job(plan, prefix, checkpoints.sha256(prefix), tuple(keys), tuple(paths),
                         root / "alone.h5")
    start = time.perf_counter()
    extraction.run(job)
    extract_rate = n_images / (time.perf_counter() - start)
    feat_dim = predict.feature_store.FeatureReader(root / "alone.h5").shape[1]
    directory = random_model(root / "model", plan, feat_dim, prefix, HIDDEN)
    start = time.perf_counter()
    predict.predict(directory, images=str(folder), out=str(root / "predicted.csv"))
    return extract_rate, n_images / (time.perf_counter() - start)


def from_features(root: Path, n_rows: int, feat_dim: int, gflops: float) -> tuple[float, float]:
    """(rows/s of predict --features over a .npy, the head's matmul limit in rows/s)."""
    plan = extraction.Plan("demo_cnn", "pool4", 96, "inception", "max", "float32")
    prefix = random_checkpoint("demo_cnn", 96, root / "small" / "model.ckpt")
    directory = random_model(root / "features_model", plan, feat_dim, prefix, HIDDEN)
    np.save(root / "rows.npy", np.random.default_rng(2).normal(0, 1, (n_rows, feat_dim)).astype(np.float32))
    start = time.perf_counter()
    predict.predict(directory, features=str(root / "rows.npy"), out=str(root / "rows.csv"))
    rate = n_rows / (time.perf_counter() - start)
    sizes = (feat_dim, *HIDDEN, 80)
    flops = sum(2 * a * b for a, b in itertools.pairwise(sizes))
    return rate, gflops * 1e9 / flops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--backbone", default="inception_resnet_v2")
    parser.add_argument("--size", type=int, default=0, help="image size (0: the backbone's)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--smoke", action="store_true",
                        help="demo_cnn on 4 images, 500 rows: checks the code runs")
    args = parser.parse_args()
    backbone, n_images, n_rows = ("demo_cnn", 4, 500) if args.smoke else (args.backbone,
                                                                          args.images, args.rows)
    gflops = matmul_gflops(sizes=(256,), trials=1) if args.smoke else matmul_gflops()
    print(f"float32 matmul: {gflops:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        extract_rate, predict_rate = from_images(Path(tmp), backbone, n_images, args.size)
        print(f"{backbone}, {n_images} 640x480 JPEGs: extraction {extract_rate:.2f} img/s, prediction "
              f"{predict_rate:.2f} img/s: {100 * predict_rate / extract_rate:.0f}% of extraction's rate "
              "(goal >= 90%)")
        rate, limit = from_features(Path(tmp), n_rows, 1536, gflops)
        print(f"features, {n_rows} rows x 1536 -> paper head -> CSV: {rate:,.0f} rows/s; the head's matrix "
              "products "
              f"at the matmul rate: {limit:,.0f} rows/s ({100 * rate / limit:.0f}%)")


if __name__ == "__main__":
    main()
