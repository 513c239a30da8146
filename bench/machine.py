"""This machine's limits, measured in the same run as a benchmark."""
from __future__ import annotations

import time

from runtime.tf_quiet import tf


def matmul_gflops(sizes=(2048, 4096), trials: int = 3, seconds: float = 1.0) -> float:
    """The best float32 matrix-product rate TensorFlow reaches here, in GFLOP/s: the fastest of
    `trials` timings at each size, so that it bounds what a model built on it can reach."""
    best = 0.0
    for n in sizes:
        a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
        tf.linalg.matmul(a, b).numpy()
        repeats = max(1, int(seconds * 2e11 / (2 * n**3)))
        for _ in range(trials):
            start = time.perf_counter()
            for _ in range(repeats):
                c = tf.linalg.matmul(a, b)
            c.numpy()
            best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def copy_gbps(n_bytes: int = 256 * 2**20, trials: int = 5) -> float:
    """Memory bandwidth in GB/s that TensorFlow reaches updating a variable in place, as an
    optimiser does (v += c: two arrays read, one written), over arrays far larger than the
    caches: the fastest of `trials`."""
    n = n_bytes // 4
    variable, delta = tf.Variable(tf.zeros([n])), tf.ones([n])

    @tf.function
    def update():
        variable.assign_add(delta)

    update()
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        update()
        best = max(best, 3 * n_bytes / (time.perf_counter() - start) / 1e9)
    return best
