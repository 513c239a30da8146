"""python -m features {merge,describe} ..."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

import configs

from . import store


def describe(path: Path) -> None:
    with h5py.File(path, "r") as h5:
        features = h5["features"]
        print(f"{path}: features {features.shape} {features.dtype}, complete={bool(h5.attrs.get('complete'))}")
        for key in ("backbone", "endpoint", "image_size", "preprocessing", "pooling", "feat_shape",
                    "checkpoint", "checkpoint_sha256", "shard"):
            if key in h5.attrs:
                print(f"  {key}: {h5.attrs[key]}")
        valid = h5["valid"][:]
        print(f"  valid rows: {int(valid.sum())} of {len(valid)}")
        for key, message in zip(h5["error_ids"].asstr()[:5], h5["error_messages"].asstr()[:5]):
            print(f"  unreadable {key}: {message}")
        sample = features[: min(len(features), 256)].astype(np.float32)
        print(f"  first rows: mean {sample.mean():.4f}, std {sample.std():.4f}, "
              f"share of zeros {(sample == 0).mean():.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("merge", help="join shard files into the single-file layout")
    p.add_argument("shards", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("describe", help="summarise a feature store")
    p.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    def action():
        if args.command == "merge":
            print(f"{store.merge(args.shards, args.out)}: merged {len(args.shards)} shards")
        else:
            describe(args.path)

    return configs.run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
