"""Where a stack's feature rows come from, and what they look like (TensorFlow-free).

    InMemory     a fold's rows held in RAM (sparse stores stay sparse): the fast path
    Streamed     rows read from HDF5 a window at a time, at most two windows in RAM
    epoch_batches  an epoch's seeded batch order (whole permutation, or windows then rows)
    moments      each feature's mean and spread over a source (`[heads] standardize`)
    scale_warning  what `heads train` says when features lie far from unit scale
Both sources give `batches(order)` -> (positions, x (b, d) float32) and `blocks()` -> (positions,
x) in row order; positions index the rows the source was made over.
"""
from __future__ import annotations

import numpy as np

from features.store import FeatureReader, dense

# a feature whose mean or spread exceeds this is far from what the heads' initialisation expects
UNIT_SCALE = 10.0


def epoch_batches(n_rows: int, batch_size: int, rng: np.random.Generator, window: int = 0):
    """One epoch's batches of positions 0..n_rows-1 in a seeded random order (last partial batch
    kept). window 0: one full permutation. Otherwise the positions are cut into consecutive
    windows of `window` rows, the windows come in random order and the rows in random order
    within each, so a streamed epoch reads each window once; with a single window this is the
    full permutation, draw for draw."""
    if not window or window >= n_rows:
        order = rng.permutation(n_rows)
    else:
        starts = np.arange(0, n_rows, window)
        order = np.concatenate([start + rng.permutation(min(window, n_rows - start))
                                for start in starts[rng.permutation(len(starts))]])
    return [order[i:i + batch_size] for i in range(0, n_rows, batch_size)]


def finite(x, path):
    """`x` (dense, or sparse rows) after checking every value is finite."""
    values = x.data if hasattr(x, "data") and not isinstance(x, np.ndarray) else x
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: rows hold NaN or infinite features; rebuild them (make features FORCE=1) "
                         "and check the images and checkpoint")
    return x


class InMemory:
    """Feature rows held in RAM (the fast path; sparse stores stay sparse): batches index them."""

    def __init__(self, reader: FeatureReader, rows: np.ndarray):
        self.n_features = reader.shape[1]
        self.x = finite(reader.window(np.sort(rows))[np.argsort(np.argsort(rows))] if reader.sparse
                        else reader.rows(rows), reader.path)

    def batches(self, order):
        for positions in order:
            yield positions, dense(self.x[positions])

    def blocks(self, size: int = 4096):
        for start in range(0, self.x.shape[0], size):
            yield np.arange(start, min(start + size, self.x.shape[0])), dense(self.x[start:start + size])


class Streamed:
    """Feature rows read from HDF5 a window at a time; at most two windows are held in RAM.
    `rows` are store rows in increasing order (a fold's training rows are)."""

    def __init__(self, reader: FeatureReader, rows: np.ndarray, window: int):
        self.reader, self.rows, self.window = reader, rows, window
        self.n_features = reader.shape[1]

    def _read(self, start: int):
        return finite(self.reader.window(self.rows[start:start + self.window]), self.reader.path)

    def batches(self, order):
        cache: dict = {}
        for positions in order:
            starts = positions // self.window * self.window
            needed = set(starts.tolist())
            cache = {k: v for k, v in cache.items() if k in needed}  # epochs visit a window once
            x = np.empty((len(positions), self.reader.shape[1]), np.float32)
            for start in needed:
                if start not in cache:
                    cache[start] = self._read(start)
                pick = starts == start
                x[pick] = dense(cache[start][positions[pick] - start])
            yield positions, x

    def blocks(self):
        for start in range(0, len(self.rows), self.window):
            yield np.arange(start, min(start + self.window, len(self.rows))), dense(self._read(start))


def moments(source) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's mean and standard deviation (1 where it is constant) over a source's rows,
    block by block (Chan et al.'s pairwise update, in float64)."""
    count, mean, squares = 0, 0.0, 0.0
    for _, x in source.blocks():
        x = x.astype(np.float64)
        n, block_mean = len(x), x.mean(0)
        delta = block_mean - mean
        total = count + n
        squares = squares + ((x - block_mean) ** 2).sum(0) + delta ** 2 * count * n / total
        mean, count = mean + delta * n / total, total
    std = np.sqrt(squares / max(count, 1))
    constant = std <= 1e-6 * np.maximum(np.abs(mean), 1.0)
    return np.asarray(mean, np.float32), np.where(constant, 1.0, std).astype(np.float32)


def scale_warning(reader: FeatureReader, n_rows: int = 4096) -> str:
    """A warning when the store's features lie far from unit scale over its first valid rows
    (a column mean or standard deviation beyond UNIT_SCALE: raw measurements, pixel values),
    where sigmoid layers saturate from the first step; "" otherwise."""
    rows = np.flatnonzero(reader.valid)[:n_rows]
    if not len(rows):
        return ""
    mean, std = moments(InMemory(reader, rows))
    size = np.maximum(np.abs(mean), std)
    far = size > UNIT_SCALE
    if not far.any():
        return ""
    return (f"heads: warning: {far.sum()} of {len(far)} features of {reader.path} lie far from unit scale "
            "(mean or "
            f"standard deviation up to {size.max():.3g} over its first {len(rows)} rows); heads learn little "
            "from "
            "them: set [heads] standardize = true (each feature z-scored by each fold's training rows)")

