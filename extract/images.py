"""Image input: decode JPEG / PNG in a parallel tf.data pipeline, resized to the model's size.

Every image becomes RGB: grey-scale is repeated, alpha dropped (`decode_image(channels=3)`).
What tf.io cannot decode (corrupt or truncated files, CMYK JPEGs on some builds) is retried
with Pillow; only an image neither can read is reported as an error, never raised.
Resizing: plain bilinear to (size, size), no crop; output float32 in [0, 255].
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _resize(image, size: int):
    return tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")


def _load(index, path, size: int):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return index, _resize(image, size)


def pil_load(path: str, size: int) -> np.ndarray:
    """The fallback decoder: (size, size, 3) float32, or an exception saying why not."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return _resize(rgb, size).numpy()


def decoded(rows: np.ndarray, paths, size: int, prefetch: int = 64):
    """Yield (row, (size, size, 3) float32) in row order; undecodable rows are skipped.

    The caller detects a skipped row by its absence and retries it with `pil_load`.
    """
    dataset = tf.data.Dataset.from_tensor_slices((rows.astype(np.int64), [paths[i] for i in rows]))
    dataset = dataset.map(lambda i, p: _load(i, p, size), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.ignore_errors().prefetch(prefetch)
    for row, image in dataset.as_numpy_iterator():
        yield int(row), image
