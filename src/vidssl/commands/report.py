"""``vidssl report RUN_DIR…``: a Markdown table comparing the reports of several eval runs."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  vidssl report runs/x/linear runs/random/linear
  vidssl report runs/*/svm --out comparison.md
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="compare eval reports (report.json) of several runs in one table",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="directories holding report.json")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from vidssl.eval.report import compare_runs

    table = compare_runs(args.runs)
    print(table, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    return 0
