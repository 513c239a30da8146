"""This machine's limits, measured in the same run as a benchmark."""
from __future__ import annotations

import time

import numpy as np

from configs.tf_quiet import tf


def matmul_gflops(n: int = 2048, repeats: int = 20) -> float:
    """float32 matrix-product rate in GFLOP/s."""
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    tf.linalg.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def copy_gbps(n_bytes: int = 64 * 2**20) -> float:
    """Memory copy bandwidth in GB/s (bytes read plus bytes written)."""
    a = np.ones(n_bytes // 4, np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    start = time.perf_counter()
    for _ in range(10):
        np.copyto(b, a)
    return 2 * a.nbytes * 10 / (time.perf_counter() - start) / 1e9
