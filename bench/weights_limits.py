"""Benchmark: how close the `mixture` estimator gets to what the observed labels allow (reads
ground truth, so it is an analysis, never an estimator).

    .venv/bin/python bench/weights_limits.py [--data ../shared/data] [--ratio 0.5] [--smoke]

On fold 1 of each published split: detection ROC-AUC of the hidden positives by the mixture's
scenes alone (the shipped `mixture` weights also back off to the prior where the co-occurrence
is thin), by the same given each row's true hidden count, and, on the rows that show a
single label, against two tables f(s, j) of that one label: co-occurrence counted on the true
labels of the images with more labels than the least count (what the observed labels could at
best reveal) and on the true labels of the other least-count images (never observed: at r = .5
such an image shows one label).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import splits
from bench import tiny
from splits import quality, store, weights


def table_scores(single: np.ndarray, truth: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Scores of one-label rows from co-occurrence counts of `truth` rows, each row's own label
    set `own` taken out of the counts; shared out per row like the mixture's."""
    counts = single.astype(float) @ (truth.T.astype(float) @ truth)
    if own is not None:
        counts -= own
    counts[single == 1] = 0
    return counts / np.maximum(counts.sum(1, keepdims=True), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser()
    tiny.add_arguments(parser)
    parser.add_argument("--ratio", type=float, default=0.5)
    args = parser.parse_args()
    paper_dir = tiny.data_root(args) / "paper_splits"
    tmp = Path(tempfile.mkdtemp())
    for name, folder in (("MSCOCO", "labels_balanced_4labels"), ("NUS-WIDE", "labels_balanced_nus")):
        sf = store.load(splits.import_to(paper_dir / folder, tmp / f"{folder}.h5"))
        train = sf.train_rows(0)
        labels, observed = sf.labels[train], sf.observed(0, args.ratio)[train]
        kept, true_count = observed.sum(1), labels.sum(1)
        shares = weights.mixture_shares(observed)
        expected = weights.expected_hidden(kept, args.ratio)[:, None] * shares
        print(f"\n{name}, fold 1, ratio {args.ratio}: ROC-AUC of the hidden positives")
        auc = quality.detection(expected, observed, labels)
        print(f"  {'mixture scenes, no back-off (expected hidden count)':<52}{auc:.4f}")
        oracle = (true_count - kept)[:, None] * shares
        auc = quality.detection(oracle, observed, labels)
        print(f"  {'mixture scenes, no back-off (true hidden count)':<52}{auc:.4f}")
        one = kept == 1
        if not one.any():
            print("  no row shows a single label at this ratio")
            continue
        hidden = (labels == 1) & (observed == 0)
        print(f"  rows showing one label: {one.mean():.3f} of rows, {hidden[one].sum() / hidden.sum():.3f} "
              "of the hidden positives; on them:")
        counts = expected[one].sum(1, keepdims=True)  # the same expected hidden count for all three
        auc = quality.detection(expected[one], observed[one], labels[one])
        print(f"    {'mixture scenes, no back-off':<50}{auc:.4f}")
        least = true_count.min()
        larger = table_scores(observed[one], labels[true_count > least])
        print(f"    {f'true co-occurrence of the images with > {least} labels':<50}"
              f"{quality.detection(counts * larger, observed[one], labels[one]):.4f}")
        same = table_scores(observed[one], labels[true_count == least],
                            labels[one] * (true_count[one] == least)[:, None])
        print(f"    {f'true co-occurrence of the other {least}-label images':<50}"
              f"{quality.detection(counts * same, observed[one], labels[one]):.4f}")


if __name__ == "__main__":
    main()
