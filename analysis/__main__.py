"""python -m analysis report --config C"""
from __future__ import annotations

import argparse
import sys

import configs
from runtime.cli import run_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="metrics, tables, figures and report.md under runs/<name>/analysis")
    p.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    def action():
        from .report import report
        report(configs.load(args.config))

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
