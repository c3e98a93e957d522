"""``automl predict``: batch predictions for a table (serving.batch), as a command of the CLI."""

from __future__ import annotations

import argparse
import time


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="batch predictions for a table")
    p.add_argument("dir", help="a run or model directory")
    p.add_argument("data")
    p.add_argument("--output", required=True, help="CSV or Parquet, by suffix")
    p.add_argument("--proba", action="store_true", help="one column per class instead of the label")
    p.add_argument(
        "--id-column", help="column to copy next to each prediction (default: the data's id column)"
    )
    p.add_argument("--batch-size", type=int, default=50_000)
    p.add_argument("--no-ray", action="store_true", help="predict in this process instead of with Ray Data")
    p.add_argument(
        "--errors",
        help="CSV for the rows that fail validation (their id or row number and the reason); "
        "default: OUTPUT with .errors.csv in place of its suffix",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=1.0,
        help="stop the job when more than this share (0-1) of the rows read failed validation "
        "(default 1: never stop; the failed rows go to the errors file and the rest are scored)",
    )
    p.set_defaults(func=cmd_predict)


def cmd_predict(a: argparse.Namespace) -> int:
    from serving.batch import predict_file  # here: `automl --help` loads this module, keep it cheap

    t = time.time()
    res = predict_file(
        a.dir,
        a.data,
        a.output,
        proba=a.proba,
        id_column=a.id_column,
        batch_size=a.batch_size,
        use_ray=not a.no_ray,
        errors_path=a.errors,
        max_error_rate=a.max_error_rate,
    )
    print(f"wrote {res.rows_written} predictions to {a.output} in {time.time() - t:.1f}s")
    if res.rows_failed:
        print(
            f"{res.rows_failed} of {res.rows_read} rows failed validation and were not scored; "
            f"their ids and reasons: {res.errors_path}"
        )
    return 0
