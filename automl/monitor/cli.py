"""CLI subcommand ``automl monitor MODEL CAPTURE``: exit 0 no violation, 1 violations found,
2 a user error (bad path, bad threshold); suitable for cron or a CI job."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "monitor",
        help="compare captured requests (or any table) with the training baseline",
        description="Exit status: 0 no violation, 1 a threshold was crossed, 2 a usage error.",
    )
    m.add_argument("model", help="run or model directory, or registry://NAME[:VERSION]")
    m.add_argument(
        "capture", help="a data-capture directory, or a CSV/Parquet/JSONL file or directory of them"
    )
    m.add_argument("--output", default="monitoring", help="directory for violations.json and report.md")
    m.add_argument("--psi-threshold", type=float, default=0.2, help="PSI at or above which a feature drifts")
    m.add_argument("--p-value", type=float, default=0.01, help="significance of the KS / chi-squared test")
    m.add_argument(
        "--missing-share-delta",
        type=float,
        default=0.1,
        help="largest allowed change of a feature's missing share",
    )
    m.add_argument(
        "--new-category-share",
        type=float,
        default=0.05,
        help="largest allowed share of rows with categories unseen in training (beyond the expected)",
    )
    m.add_argument("--min-rows", type=int, default=50, help="fewer rows: drift is reported but not flagged")
    m.add_argument("--no-predictions", action="store_true", help="do not check the prediction distribution")
    m.add_argument("--registry-root", help="registry for registry:// models (default: $AUTOML_REGISTRY)")
    m.set_defaults(func=cmd_monitor)


def cmd_monitor(a: argparse.Namespace) -> int:
    from automl.monitor import MonitorConfig, monitor

    cfg = MonitorConfig(
        psi_threshold=a.psi_threshold,
        p_value=a.p_value,
        missing_share_delta=a.missing_share_delta,
        new_category_share=a.new_category_share,
        min_rows=a.min_rows,
        check_predictions=not a.no_predictions,
    )
    result = monitor(a.model, a.capture, cfg, registry_root=a.registry_root)
    vj, rep = result.write(a.output)
    print(result.report())
    print(f"wrote {vj} and {rep}")
    return 0 if result.ok else 1
