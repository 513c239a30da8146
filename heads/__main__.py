"""python -m heads train --config C [--only fold=1,ratio=0.5,method=confidence] [--n-jobs N]
python -m heads {check --config C | methods}
(fit, predict, suggest and export moved to `python -m model`)"""
from __future__ import annotations

import argparse
import sys

import configs
from runtime.cli import run_cli

from . import methods, search
from .predictions import MergeOnly, parse_only

MOVED = ("fit", "predict", "suggest", "export")  # now `python -m model <command>`


def check(cfg) -> None:
    """The study's config against the registries: methods, their parameters and search grids
    (heads and finetune); the rest was checked when it loaded. What `make check` runs before
    any stage (with `python -m model check` for [model])."""
    methods.check(cfg.heads.methods, cfg.heads.params, cfg.source)
    methods.check(cfg.finetune.methods, {}, cfg.source, "finetune.methods")
    search.check(cfg)
    print(f"{cfg.source}: valid")


def list_methods() -> None:
    """Name, display name, oracle or not, parameters with their published defaults (a
    data-derived default as its rule), source."""
    for method in methods.METHODS.values():
        params = ", ".join(f"{k}={methods.PARAMETER_NOTES.get((method.name, k), v)}" if v is None
                           else f"{k}={v}"
                           for k, v in method.params.items()) or "-"
        grid = ", ".join(f"{k} in {list(v)}" for k, v in method.search.items()) or "lr only"
        print(f"{method.name:28s} {method.display:26s} {'oracle ' if method.oracle else '       '}"
              f"params: {params}; searched: {grid}  [{method.source}]")


def study_command(args) -> None:
    cfg = configs.with_scheduler(configs.load(args.config), getattr(args, "scheduler", None))
    if args.command == "check":
        check(cfg)
    else:
        from .trainer import train
        train(cfg, only=args.only, n_jobs=args.n_jobs, force=args.force)


def add_study_commands(sub) -> None:
    p = sub.add_parser("train", help="train the heads of every seed, fold, protocol and method")
    p.add_argument("--config", default=None)
    p.add_argument("--only", type=parse_only, action=MergeOnly, default={},
                   help="fold=K,ratio=R,method=M,seed=S (any of them; repeatable)")
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--scheduler", default=None,
                   help="local, or a Dask scheduler address (overrides [cluster])")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("check", help="the study's config against the method registry, before any stage runs")
    p.add_argument("--config", default=None)
    sub.add_parser("methods", help="list the registered methods with their published parameters")


def add_moved_commands(sub) -> None:
    """fit, predict, suggest and export: moved to `python -m model`; each says so."""
    for name in MOVED:
        p = sub.add_parser(name, help=f"moved: python -m model {name}", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_study_commands(sub)
    add_moved_commands(sub)
    args = parser.parse_args(argv)

    def action():
        if args.command in MOVED:
            raise ValueError(f"heads {args.command} is now `python -m model {args.command}` (same options; "
                             "make targets unchanged)")
        if args.command == "methods":
            list_methods()
            return
        study_command(args)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
