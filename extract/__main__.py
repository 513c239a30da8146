"""python -m extract {features,pretrain} --config C ..."""
from __future__ import annotations

import argparse
import sys

import configs
from runtime.cli import run_cli


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    return index, count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extract", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("features", help="run the backbone once over every image into the feature store")
    p.add_argument("--config", default=None)
    p.add_argument("--shard", type=parse_shard, default=(0, 1), help="i/n: the i-th of n shards (0-based)")
    p.add_argument("--scheduler", default=None,
                   help="local, or a Dask scheduler address (overrides [cluster])")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("pretrain", help="pretrain demo_cnn on a separate synthetic set (demo only)")
    p.add_argument("--config", default=None)
    p.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    def action():
        cfg = configs.with_scheduler(configs.load(args.config), getattr(args, "scheduler", None))
        if args.command == "features" and cfg.dataset.adapter == "table":
            from features.importer import import_features
            import_features(cfg, force=args.force)
        elif args.command == "features":
            from .extraction import extract_features
            extract_features(cfg, shard=args.shard, force=args.force)
        elif cfg.extract.backbone != "demo_cnn" or cfg.dataset.adapter == "table":
            print(f"{cfg.source}: nothing to pretrain (backbone {cfg.extract.backbone}, dataset adapter "
                  f"{cfg.dataset.adapter}); only the demo's demo_cnn is pretrained here")
        else:
            from .pretrain import pretrain
            pretrain(cfg, force=args.force)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
