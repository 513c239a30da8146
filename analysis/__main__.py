"""python -m analysis report --config C | compare BEFORE.csv AFTER.csv [--metric mAP] [--out CSV]
| pairs RUNS.csv --pairs ROLE:AN,LL-R:AN [--metric mAP] [--out CSV]"""
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
    c = sub.add_parser("compare",
                       help="two studies' leaderboards (e.g. one recipe, then searched): means and ranks")
    c.add_argument("before")
    c.add_argument("after")
    c.add_argument("--metric", default="mAP", help="mAP | CF1 | OF1")
    c.add_argument("--out", default=None, help="a CSV to write (default: print Markdown)")
    d = sub.add_parser("paired", help="two studies of the same splits' runs.csv (e.g. one recipe, then "
                       "searched): each method's paired difference, Wilcoxon and Holm")
    d.add_argument("before")
    d.add_argument("after")
    d.add_argument("--metric", default="mAP", help="mAP | CF1 | OF1")
    d.add_argument("--out", default=None, help="a CSV to write (default: print Markdown)")
    h = sub.add_parser("pairs", help="chosen methods against each other, paired over a report's runs.csv")
    h.add_argument("runs")
    h.add_argument("--pairs", required=True, help="A:B[,C:D...], run names as in the report (ROLE:AN)")
    h.add_argument("--metric", default="mAP")
    h.add_argument("--out", default=None, help="a CSV to write (default: print Markdown)")
    args = parser.parse_args(argv)

    def action():
        if args.command == "pairs":
            from .leaderboard import head_to_head_file
            head_to_head_file(args.runs, args.pairs, args.metric, args.out)
            return
        if args.command == "paired":
            from .leaderboard import paired_files
            paired_files(args.before, args.after, args.metric, args.out)
            return
        if args.command == "compare":
            from .leaderboard import compare_files
            compare_files(args.before, args.after, args.metric, args.out)
            return
        from .report import report
        report(configs.load(args.config))

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
