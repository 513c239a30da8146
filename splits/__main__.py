"""python -m splits {make,import-paper,describe,weight-quality,synthetic} ..."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import artifacts
import configs
from runtime.cli import run_cli

from . import import_to, make, stats, store, weights


def describe(path, out: str | None = None) -> None:
    """Print sizes, class frequencies, hidden shares and a CB weight summary of a splits.h5;
    `out`: also write the label statistics as CSV (statistic, value)."""
    sf = store.load(path)
    n, n_classes = sf.labels.shape
    protocols = ", ".join(store.protocol_label(p) for p in sf.protocols)
    print(f"{path}: {n} rows x {n_classes} classes, {sf.n_folds} folds, protocols {protocols}")
    dropped = json.loads(sf.attrs.get("dropped_classes", "[]"))
    print(f"dropped by min_labels = {sf.attrs['min_labels']}: {sf.attrs.get('dropped_rows', 0)} rows, "
          f"{len(dropped)} classes without a positive" + (f" ({', '.join(dropped[:8])})" if dropped else ""))
    print("test fold sizes:", np.bincount(sf.test_fold).tolist())
    statistics = stats.label_statistics(sf.labels)
    for key, value in statistics.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    if out:
        lines = ["statistic,value"] + [f'"{key}",{value:.6g}' for key, value in statistics.items()]
        artifacts.write_text(out, "\n".join(lines) + "\n")
    freq = sf.labels.mean(0)
    order = np.argsort(freq)[::-1]
    print("most frequent classes:", ", ".join(f"{sf.classes[c]} {freq[c]:.3f}" for c in order[:5]))
    print("rarest classes:", ", ".join(f"{sf.classes[c]} {freq[c]:.4f}" for c in order[-3:]))
    if sf.known is not None:
        print(f"labels the dataset leaves unknown: {int((~sf.known).sum())} of {sf.known.size} "
              f"({(~sf.known).mean():.3f})")
    print("hidden share of training positives (fold x protocol):")
    print(np.array2string(sf.hidden_share, precision=3))
    partial = [p for p in sf.protocols if store.protocol_kind(p)[0] in store.PARTIAL_KINDS] or \
        (sf.protocols if sf.known is not None else [])
    if partial:
        print("known share of fold 1's training labels (positives and verified negatives kept):")
        train = sf.test_fold != 0
        for protocol in partial:
            states = sf.states(0, protocol)[train]
            print(f"  {store.protocol_label(protocol)}: {(states > 0).mean():.3f} known, "
                  f"{(states == store.NEGATIVE).mean():.3f} verified negatives")
    print("CB weights of fold 1 (mean on hidden positives / on true negatives; share of hidden at 1):")
    train = sf.train_rows(0)
    truth = sf.labels[train]
    for protocol in sf.protocols:
        seen = sf.observed(0, protocol)[train]
        cb = weights.cb_weights(seen)
        hidden = (truth == 1) & (seen == 0)
        negative = truth == 0
        label = store.protocol_label(protocol)
        if hidden.any():
            print(f"  {label}: {cb[hidden].mean():.3f} / {cb[negative].mean():.3f}; "
                  f"{(cb[hidden] == 1).mean():.2f}")
        else:
            print(f"  {label}: no hidden positive; mean on true negatives {cb[negative].mean():.3f}")


def held_out(cfg, out: str, n_images: int, seed: int) -> None:
    """`python -m splits synthetic`: images drawn as the config's synthetic set, from another seed."""
    from . import synthetic
    if cfg.dataset.adapter != "synthetic":
        raise ValueError(f"{cfg.source}: dataset.adapter = {cfg.dataset.adapter!r}; held-out images are "
                         "drawn for the "
                         "synthetic set only")
    if seed == cfg.experiment.seed or n_images < 1:
        raise ValueError(f"--seed {seed} / --images {n_images}: a seed other than the dataset's "
                         f"({cfg.experiment.seed}), and at least one image")
    labels = synthetic.write(out, n_images, seed, cfg.dataset.image_size, cfg.dataset.difficulty)
    print(f"{labels}: {n_images} images (seed {seed}) in {labels.parent / 'images'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splits", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make", help="make splits.h5 from the config's dataset")
    p.add_argument("--config", default=None)
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("import-paper", help="import the paper's published splits")
    p.add_argument("directory")
    p.add_argument("--out", required=True)
    p = sub.add_parser("describe", help="summarise a splits.h5")
    p.add_argument("path")
    p.add_argument("--out", default=None, help="also write the label statistics as CSV")
    p = sub.add_parser("weight-quality", help="how well each confidence estimator finds hidden positives")
    p.add_argument("path")
    p.add_argument("--estimators", default="", help="comma-separated names (default: all)")
    p.add_argument("--out", default=None, help="CSV path; a ROC figure is written beside it")
    p = sub.add_parser("synthetic",
                       help="more images like the synthetic dataset's, another seed (a held-out set)")
    p.add_argument("--config", default=None)
    p.add_argument("--out", required=True, help="the folder: images/ and labels.csv")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--seed", type=int, default=1,
                   help="differs from the dataset's ([experiment] seed) for new images")
    args = parser.parse_args(argv)

    def action():
        if args.command == "make":
            make(configs.load(args.config), force=args.force)
        elif args.command == "import-paper":
            print(f"{import_to(args.directory, args.out)}: written")
            describe(args.out)
        elif args.command == "synthetic":
            held_out(configs.load(args.config), args.out, args.images, args.seed)
        elif args.command == "weight-quality":
            from .quality import weight_quality
            table = weight_quality(args.path, [e for e in args.estimators.split(",") if e], args.out)
            print(table.groupby(["protocol", "estimator"])[["roc_auc_calibrated",
                                                            "average_precision_calibrated",
                                                          "brier_calibrated", "no_evidence_share", "seconds"]]
                  .mean().round(4).to_string())
            chosen = table[table["estimator"] == "auto"]
            if len(chosen):
                print("auto chose (fold: estimator):")
                for protocol, group in chosen.groupby("protocol"):
                    print(f"  {protocol}: " + ", ".join(f"{r.fold}: {r.choice}" for r in group.itertuples()))
        else:
            describe(args.path, args.out)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
