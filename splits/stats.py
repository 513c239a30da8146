"""Label statistics of a 0/1 label matrix: the table in ../shared/data/README.md, computed."""
from __future__ import annotations

import numpy as np


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = all equal)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    k = len(v)
    return float((2 * np.arange(1, k + 1) - k - 1) @ v / (k * v.sum()))


def label_statistics(labels: np.ndarray) -> dict:
    """How many labels per image, how imbalanced the classes, how concentrated co-occurrence."""
    y = labels.astype(np.float64)
    per_image = y.sum(1)
    freq = y.mean(0)
    pairs = y.T @ y
    counts = np.diag(pairs).copy()
    np.fill_diagonal(pairs, 0)
    upper = np.sort(pairs[np.triu_indices(len(freq), 1)])[::-1]
    top = max(1, len(upper) // 10)
    _, multiplicity = np.unique(labels, axis=0, return_counts=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = pairs / counts[:, None]
    return {
        "images": len(y),
        "classes": int(y.shape[1]),
        "labels per image (mean)": float(per_image.mean()),
        "labels per image (median)": float(np.median(per_image)),
        "labels per image (max)": int(per_image.max()),
        "class frequency (min)": float(freq.min()),
        "class frequency (median)": float(np.median(freq)),
        "class frequency (max)": float(freq.max()),
        "Gini of class frequencies": gini(freq),
        "share of co-occurrences in the top 10% of pairs": float(upper[:top].sum() / upper.sum()),
        "distinct label sets per image": float(len(multiplicity) / len(y)),
        "mean over classes of max_j P(j | i)": float(np.nanmean(conditional.max(1))),
    }
