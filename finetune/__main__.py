"""python -m finetune train --config C [--only fold=1,ratio=0.5,method=ce] [--scheduler S] [--force]
python -m finetune train --config C --final [--force]     the final model, end to end (finetune.final)"""
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
    p.add_argument("--scheduler", default=None,
                   help="local, or a Dask scheduler address (overrides [cluster])")
    p.add_argument("--final", action="store_true",
                   help="the final model ([model]) on every labelled row instead")
    p.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    def action():
        cfg = configs.with_scheduler(configs.load(args.config), args.scheduler)
        methods.check(cfg.finetune.methods, cfg.heads.params, cfg.source, "finetune.methods")
        if args.final:
            from .final import final
            final(cfg, force=args.force)
            return
        from .train import finetune
        finetune(cfg, only=args.only, force=args.force)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
