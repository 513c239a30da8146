"""python -m finetune train --config C [--only fold=1,ratio=0.5,method=ce] [--scheduler S] [--force]"""
from __future__ import annotations

import argparse
import sys

import configs
from heads import methods
from heads.predictions import MergeOnly, parse_only
from runtime.cli import run_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train backbone and head end to end from the images ([finetune] grid)")
    p.add_argument("--config", default=None)
    p.add_argument("--only", type=parse_only, action=MergeOnly, default={},
                   help="fold=K,ratio=R,method=M,seed=S (any of them; repeatable)")
    p.add_argument("--scheduler", default=None, help="local, or a Dask scheduler address (overrides [cluster])")
    p.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    def action():
        cfg = configs.with_scheduler(configs.load(args.config), args.scheduler)
        methods.check(cfg.finetune.methods, cfg.heads.params, cfg.source, "finetune.methods")
        from .train import finetune
        finetune(cfg, only=args.only, force=args.force)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
