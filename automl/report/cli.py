"""CLI subcommand ``automl report DIR [--output report.html] [--sensitive-column C]``."""

from __future__ import annotations

import argparse
import time


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report of a run (plots, explanations, fairness)")
    p.add_argument("dir", help="the run directory of a finished fit")
    p.add_argument("--output", help="HTML file to write (default: DIR/report.html)")
    p.add_argument(
        "--sensitive-column", help="an input column whose groups get bias metrics (binary problems)"
    )
    p.set_defaults(func=cmd_report)


def cmd_report(a: argparse.Namespace) -> int:
    from automl.report import write_report

    t = time.perf_counter()
    path = write_report(a.dir, a.output, sensitive_column=a.sensitive_column)
    print(f"report written to {path} in {time.perf_counter() - t:.1f}s")
    return 0
