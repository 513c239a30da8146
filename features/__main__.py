"""python -m features {import,merge,describe} ..."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import artifacts
import configs
from runtime.cli import run_cli

from . import store


def describe(path: Path) -> None:
    reader = store.FeatureReader(path)
    layout = "CSR (sparse)" if reader.sparse else "dense"
    print(f"{path}: {reader.shape[0]} rows x {reader.shape[1]} features, {layout}")
    for key in ("backbone", "endpoint", "image_size", "preprocessing", "pooling", "feat_shape",
                "checkpoint", "checkpoint_sha256", "shard", "source", "source_sha256", "fingerprint"):
        if key in reader.attrs:
            print(f"  {key}: {reader.attrs[key]}")
    print(f"  valid rows: {int(reader.valid.sum())} of {len(reader.valid)}")
    _, first = store.errors(path)
    for key, message in first:
        print(f"  unreadable {key}: {message}")
    sample = reader.rows(np.arange(min(len(reader.ids), 256)))
    print(f"  first rows: mean {sample.mean():.4f}, std {sample.std():.4f}, share of zeros "
          f"{(sample == 0).mean():.3f}")
    with artifacts.open_h5(path) as h5:
        if "labels" in h5:
            labels = h5["labels"][:]
            print(f"  labels: {labels.shape[1]} classes, {labels.sum(1).mean():.2f} positives per row, "
                  f"{int((labels.sum(1) == 0).sum())} rows and {int((labels.sum(0) == 0).sum())} classes "
                  "without one")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import",
                       help="import a table dataset's features and labels (dataset.adapter = 'table')")
    p.add_argument("--config", default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--if-table", action="store_true", help="do nothing for an image dataset (make's use)")
    p = sub.add_parser("merge", help="join shard files into the single-file layout")
    p.add_argument("shards", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("describe", help="summarise a feature store")
    p.add_argument("path", type=Path)
    args = parser.parse_args(argv)

    def action():
        if args.command == "import":
            from .importer import import_features
            cfg = configs.load(args.config)
            if cfg.dataset.adapter != "table" and args.if_table:
                return
            import_features(cfg, force=args.force)
        elif args.command == "merge":
            print(f"{store.merge(args.shards, args.out)}: merged {len(args.shards)} shards")
        else:
            describe(args.path)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
