"""Image input: decode JPEG / PNG in a parallel tf.data pipeline, resized to the model's size.

Every image becomes RGB: grey-scale is repeated, alpha dropped (`decode_image(channels=3)`).
What tf.io cannot decode (corrupt or truncated files, CMYK JPEGs on some builds) is retried
with Pillow; only an image neither can read is reported as an error, never raised.
Resizing: plain bilinear to (size, size), no crop; output float32 in [0, 255].
"""
from __future__ import annotations

import struct

import numpy as np
from PIL import Image

from runtime.tf_quiet import tf

# What Pillow raises on a file it cannot read: OSError (missing, truncated, unidentified),
# ValueError / SyntaxError / EOFError / struct.error (broken headers, by format plugin), and
# DecompressionBombError (absurd sizes). Each is recorded as the row's error, never fatal.
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def _resize(image, size: int):
    return tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")


def decode(path, size: int):
    """A tf.data map step: file path -> (size, size, 3) float32 RGB in [0, 255]."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return _resize(image, size)


def pil_load(path: str, size: int) -> np.ndarray:
    """The fallback decoder: (size, size, 3) float32, or an exception saying why not."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return _resize(rgb, size).numpy()


def decoded(rows: np.ndarray, paths, size: int, prefetch: int = 64):
    """Yield (row, (size, size, 3) float32) in row order; undecodable rows are skipped.

    The caller detects a skipped row by its absence and retries it with `pil_load`.
    """
    dataset = tf.data.Dataset.from_tensor_slices((rows.astype(np.int64), [paths[i] for i in rows]))
    dataset = dataset.map(lambda i, p: (i, decode(p, size)), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.ignore_errors().prefetch(prefetch)
    for row, image in dataset.as_numpy_iterator():
        yield int(row), image


def chunks(rows_by_chunk, paths, size):
    """Yield (chunk, images, valid, errors) per (chunk, rows) of `rows_by_chunk` (rows increasing
    within and across chunks): decoded in one pipeline, what fails retried with Pillow."""
    all_rows = np.concatenate([rows for _, rows in rows_by_chunk])
    stream = decoded(all_rows, paths, size)
    pending = next(stream, None)
    for chunk, rows in rows_by_chunk:
        batch = np.zeros((len(rows), size, size, 3), dtype=np.float32)
        valid = np.zeros(len(rows), dtype=bool)
        while pending is not None and pending[0] <= rows[-1]:
            j = np.searchsorted(rows, pending[0])
            batch[j] = pending[1]
            valid[j] = True
            pending = next(stream, None)
        errors = []
        for j in np.flatnonzero(~valid):
            try:
                batch[j] = pil_load(paths[rows[j]], size)
                valid[j] = True
            except UNREADABLE as err:
                errors.append((rows[j], f"{type(err).__name__}: {err}"))
        yield chunk, batch, valid, errors
