"""python -m heads train --config C [--only fold=1,ratio=0.5,method=confidence] [--n-jobs N] [--force]"""
from __future__ import annotations

import argparse
import sys

import configs


def parse_only(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in ("fold", "ratio", "method") or not value:
            raise argparse.ArgumentTypeError(f"--only {text!r}: expected fold=K,ratio=R,method=M (any of them)")
        out[key] = value
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heads", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the heads of every fold, ratio and method")
    p.add_argument("--config", default=None)
    p.add_argument("--only", type=parse_only, default={})
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    def action():
        from .trainer import train
        train(configs.load(args.config), only=args.only, n_jobs=args.n_jobs, force=args.force)

    return configs.run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
