"""Image input: decode JPEG / PNG in a parallel tf.data pipeline, resized to the model's size.

Every image becomes RGB: grey-scale is repeated, alpha dropped (`decode_image(channels=3)`).
What tf.io cannot decode (TIFF, corrupt or truncated files, CMYK JPEGs on some builds) is
retried with Pillow (`pil_load`), which scales what 8 bits do not hold into [0, 255] instead of
clipping it: 16-bit and 32-bit integer grey from 0..65535, float grey from 0..1 (or from its own
minimum..maximum when it leaves 0..1); every other mode through Pillow's RGB conversion. Only an
image neither can read is reported as an error, never raised. An image of more than
`MAX_PIXELS` pixels by its header (a small PNG can unpack to gigabytes) is not decoded at all:
its row's error names its size.
Resizing: plain bilinear to (size, size), no crop; output float32 in [0, 255].
"""
from __future__ import annotations

import struct
import warnings

import numpy as np
from PIL import Image

from runtime.tf_quiet import tf

# What Pillow raises on a file it cannot read: OSError (missing, truncated, unidentified),
# ValueError / SyntaxError / EOFError / struct.error (broken headers, by format plugin), and
# DecompressionBombError (absurd sizes). Each is recorded as the row's error, never fatal.
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


# the most pixels an image may have: 8192 x 8192, at most 0.75 GiB as float32 RGB while resized
MAX_PIXELS = 1 << 26


def too_large(path: str) -> str:
    """Why an image is too large to decode (its header's width x height above `MAX_PIXELS`), or
    "" (also when Pillow cannot read its header: the decoders then say what is wrong)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as err:
        return f"{err}; at most {MAX_PIXELS:,} pixels are decoded: downscale it"
    except UNREADABLE:
        return ""
    if width * height <= MAX_PIXELS:
        return ""
    return f"{width} x {height} pixels, more than the {MAX_PIXELS:,} an image may have: downscale it"


def _resize(image, size: int):
    return tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")


def decode(path, size: int):
    """A tf.data map step: file path -> (size, size, 3) float32 RGB in [0, 255]."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return _resize(image, size)


def pil_load(path: str, size: int) -> np.ndarray:
    """The fallback decoder: (size, size, 3) float32, or an exception saying why not."""
    reason = too_large(path)
    if reason:
        raise ValueError(reason)
    with Image.open(path) as image:
        rgb = rgb_values(image)
    return _resize(rgb, size).numpy()


def rgb_values(image) -> np.ndarray:
    """(h, w, 3) RGB in [0, 255] of a Pillow image of any mode (module docstring)."""
    if image.mode.startswith("I"):
        grey = np.asarray(image, np.float64) * (255 / 65535)
    elif image.mode == "F":
        grey = np.nan_to_num(np.asarray(image, np.float64))
        low, high = (0.0, 1.0) if grey.min() >= 0 and grey.max() <= 1 else (grey.min(), grey.max())
        grey = (grey - low) * (255 / max(high - low, np.finfo(np.float64).tiny))
    else:
        return np.asarray(image.convert("RGB"))
    return np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2).astype(np.float32)


def decoded(rows: np.ndarray, paths, size: int, prefetch: int = 64):
    """Yield (row, (size, size, 3) float32) in row order; undecodable rows, and those `too_large`
    to decode (checked as the pipeline reaches them), are skipped.

    The caller detects a skipped row by its absence and retries it with `pil_load` (which
    refuses the ones too large, naming their size).
    """
    def within_limit():
        for row in rows:
            if not too_large(paths[row]):
                yield int(row), paths[row]

    dataset = tf.data.Dataset.from_generator(within_limit, output_signature=(
        tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.string)))
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
