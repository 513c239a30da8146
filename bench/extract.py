"""Benchmark: extraction throughput against this machine's measured limit.

    .venv/bin/python bench/extract.py [--images 64] [--batch 32] [--smoke]

For inception_resnet_v2 and resnet_v1_50 at 224 x 224 (random weights: speed does not depend
on them), prints images/s beside the limit measured in the same run: matmul GFLOP/s divided by
the model's GFLOP per image. Also times the decode-only pipeline on COCO-sized JPEGs.
Targets: >= 70% of the limit; decoding >= 3x faster than the model.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import matmul_gflops
from extract import images, preprocessing, registry
from runtime.tf_quiet import tf

GFLOP_PER_IMAGE = {"inception_resnet_v2": 13.2, "resnet_v1_50": 7.0}  # multiply-adds x 2 at 224


def model_rate(name: str, n_images: int, batch: int) -> float:
    spec = registry.get(name)
    with tf.Graph().as_default() as graph:
        tf.compat.v1.set_random_seed(0)
        x = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3])
        _, end_points = spec.build(preprocessing.get(spec.defaults.preprocessing)(x))
        out = end_points[spec.defaults.endpoint]
        session = tf.compat.v1.Session(graph=graph)
        session.run(tf.compat.v1.global_variables_initializer())
    data = np.random.default_rng(0).uniform(0, 255, (batch, 224, 224, 3)).astype(np.float32)
    session.run(out, {x: data})  # warm-up
    start = time.perf_counter()
    for _ in range(n_images // batch):
        session.run(out, {x: data})
    return (n_images // batch) * batch / (time.perf_counter() - start)


def decode_rate(n_images: int) -> float:
    from PIL import Image
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(32):
        path = tmp / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    paths = [paths[i % 32] for i in range(n_images)]
    start = time.perf_counter()
    count = sum(1 for _ in images.decoded(np.arange(n_images), paths, 224))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--smoke", action="store_true",
                        help="2 images a model: checks the code runs, measures nothing")
    args = parser.parse_args()
    n_images, batch = (2, 2) if args.smoke else (args.images, args.batch)
    gflops = matmul_gflops(sizes=(256,), trials=1) if args.smoke else matmul_gflops()
    print(f"float32 matmul: {gflops:.0f} GFLOP/s")
    decode = decode_rate(8 if args.smoke else 512)
    print(f"decode + resize, 640x480 JPEG -> 224: {decode:.0f} img/s")
    for name, cost in GFLOP_PER_IMAGE.items():
        rate = model_rate(name, n_images, batch)
        limit = gflops / cost
        print(f"{name} @224, batch {batch}: {rate:.1f} img/s; limit {limit:.1f} img/s "
              f"({cost} GFLOP/img); {100 * rate / limit:.0f}% of limit (target >= 70%); "
              f"decode is {decode / rate:.0f}x faster (target >= 3x)")


if __name__ == "__main__":
    main()
