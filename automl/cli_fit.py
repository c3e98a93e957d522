"""``automl fit``: its options and the command (the rest of the command line: :mod:`automl.cli`).

The time limit counts from the start of the process (imports included), and the command stops the
Ray it started inside the limit: ``automl fit --time-limit 60`` ends within about 60 s.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any


def _families(text: str | None) -> tuple[str, ...] | None:
    return tuple(f.strip() for f in text.split(",") if f.strip()) if text else None


def add_fit_command(sub: Any) -> None:
    f = sub.add_parser("fit", help="run the autopilot on a table")
    f.set_defaults(func=cmd_fit)
    f.add_argument("data", help="training table: CSV(.gz), Parquet or JSON lines; path, file:// or s3:// URI")
    f.add_argument("--target", required=True)
    f.add_argument("--problem-type", choices=["binary", "multiclass", "regression"])
    f.add_argument("--metric")
    f.add_argument(
        "--time-limit",
        type=float,
        help="seconds for the whole command, counted from its start: imports, Ray start-up and shutdown, "
        "ensembling and the report included (default 300 unless --max-trials)",
    )
    f.add_argument("--max-trials", type=int)
    f.add_argument("--search", default="bayesian", help="bayesian|random|grid|hyperband|asha|bohb")
    f.add_argument("--families", help="comma-separated model families (default: all that apply)")
    f.add_argument("--target-score", type=float, help="stop the search when a trial reaches this score")
    f.add_argument("--patience", type=int, help="stop after this many trials without improvement")
    f.add_argument("--time-column")
    f.add_argument("--group-column")
    f.add_argument("--validation", default="auto", choices=["auto", "holdout", "kfold"])
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--validation-data", help="a separate validation table (replaces the automatic split)")
    f.add_argument("--test-data", help="a test table scored once at the end")
    f.add_argument("--drop-columns", help="comma-separated columns never used as features")
    f.add_argument(
        "--no-column-probe",
        action="store_true",
        help="apply the profile's rules to repeating identifiers and high-cardinality categoricals "
        "instead of testing them before the search",
    )
    f.add_argument(
        "--row-fidelity",
        default="auto",
        choices=["auto", "on", "off"],
        help="successive halving over rows: configs train on 1/9, then 1/3 of the rows before the "
        "best earn the full validation (default: auto, on for >= 20,000 rows with a time limit)",
    )
    f.add_argument(
        "--target-transform",
        default="auto",
        choices=["auto", "none", "log1p", "yeo-johnson"],
        help="regression: target transforms (and robust objectives) the search tries (default: auto, "
        "for a skewed or heavy-tailed target)",
    )
    f.add_argument(
        "--no-clip",
        action="store_true",
        help="regression: let members extrapolate beyond the training target",
    )
    f.add_argument("--weight-column")
    f.add_argument("--class-weight", choices=["balanced"])
    _deploy_arguments(f)


def _deploy_arguments(f: argparse.ArgumentParser) -> None:
    """`automl fit`'s options about ensembling, deployment and the run directory."""
    f.add_argument("--no-ensemble", action="store_true")
    f.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    f.add_argument("--stack-levels", type=int, default=0, choices=[0, 1, 2])
    f.add_argument(
        "--refit",
        choices=["auto", "yes", "no"],
        default="auto",
        help="offer options whose members are refit on every row: when time allows (auto), always, never",
    )
    f.add_argument(
        "--max-latency-ms",
        "--max-predict-latency-ms",  # the former name
        dest="max_latency_ms",
        type=float,
        help="deploy the best model whose one-row latency (median, measured) is at most this",
    )
    f.add_argument(
        "--max-model-mb",
        "--max-model-size-mb",  # the former name
        dest="max_model_mb",
        type=float,
        help="deploy the best model whose size on disk is at most this",
    )
    f.add_argument(
        "--presets",
        help="comma-separated presets: fast_inference (one-row latency <= 2 ms, <= 20 MB), best_quality",
    )
    f.add_argument("--warm-start", help="a previous run directory whose best configs are tried first")
    f.add_argument(
        "--mlflow",
        nargs="?",
        const=True,
        default=False,
        help="log trials to MLflow (optionally a tracking URI; default DIR/mlruns)",
    )
    f.add_argument("--output", default=None, help="run directory (default: runs/<data name>)")
    f.add_argument("--resume", action="store_true", help="continue an interrupted search in --output")
    f.add_argument("--overwrite", action="store_true", help="replace an existing run in --output")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or start Ray in-process)")
    f.add_argument("--num-cpus", type=int)
    f.add_argument(
        "--storage",
        default=os.environ.get("AUTOML_STORAGE") or None,
        help="a path every node mounts or an s3:// URI (clusters; default: $AUTOML_STORAGE): the search "
        "state goes to STORAGE/<run name>-search, the finished run directory is copied to STORAGE/<run name>",
    )
    f.add_argument("--train-workers", type=int, default=1, help="Ray Train workers per large-data trial")
    f.add_argument(
        "--data-mode",
        default="auto",
        choices=["auto", "memory", "streaming"],
        help="streaming keeps the table a Ray Dataset (tables bigger than the driver); auto picks it "
        "from the table's size and the memory Ray reports",
    )
    f.add_argument("--sample-rows", type=int, help="streaming: rows of the sample the trials train on")


def cmd_fit(a: argparse.Namespace) -> int:
    from automl.clock import process_start_time

    started = process_start_time()
    from automl import AutoML, EnsembleConfig, ResourceConfig, SearchConfig, ValidationConfig
    from automl.config import StreamingConfig
    from automl.exceptions import ConfigError

    out = Path(a.output or Path("runs") / Path(a.data.rstrip("/")).name.split(".")[0])
    if out.exists() and any(out.iterdir()) and not (a.resume or a.overwrite):
        raise ConfigError(
            f"output directory {str(out)!r} already holds a run; pass --resume to continue it, "
            "--overwrite to replace it, or another --output"
        )
    if a.overwrite and out.exists() and not a.resume:
        import shutil

        shutil.rmtree(out)
    refit = {"auto": "auto", "yes": True, "no": False}[a.refit]
    run = AutoML(
        target=a.target,
        problem_type=a.problem_type,
        metric=a.metric,
        time_limit=a.time_limit,
        search=SearchConfig(
            strategy=a.search,
            max_trials=a.max_trials,
            target_score=a.target_score,
            patience=a.patience,
            families=_families(a.families),
            warm_start=a.warm_start,
            mlflow=a.mlflow,
            target_transform=a.target_transform,
            column_probe=not a.no_column_probe,
            row_fidelity=a.row_fidelity,
        ),
        validation=ValidationConfig(
            strategy=a.validation, n_folds=a.folds, time_column=a.time_column, group_column=a.group_column
        ),
        ensemble=EnsembleConfig(
            enabled=not a.no_ensemble,
            stack_levels=a.stack_levels,
            refit=refit,
            max_latency_ms=a.max_latency_ms,
            max_model_mb=a.max_model_mb,
            clip_predictions=not a.no_clip,
        ),
        resources=ResourceConfig(
            address=a.address, num_cpus=a.num_cpus, storage=a.storage, train_workers=a.train_workers
        ),
        seed=a.seed,
        output_dir=out,
        drop_columns=_families(a.drop_columns) or (),
        weight_column=a.weight_column,
        class_weight=a.class_weight,
        write_report=not a.no_report,
        presets=_families(a.presets),
        data_mode=a.data_mode,
        streaming=StreamingConfig(**({"sample_rows": a.sample_rows} if a.sample_rows else {})),
    )
    run.fit(
        a.data,
        validation_data=a.validation_data,
        test_data=a.test_data,
        resume=a.resume,
        started_at=started,  # the time limit counts from the process's start: imports included
        stop_ray=True,  # ... and its end: stopping the Ray this process started is inside the limit
    )
    _print_fit(run, started, out)
    return 0


def _print_fit(run: Any, started: float, out: Path) -> None:
    from automl import leaderboard as lbmod

    info = run.run_info_
    print(lbmod.format_table(run.leaderboard(), limit=15))
    best = run.leaderboard().query("chosen == True").iloc[0]
    test = best.get("score_test")
    print(
        f"\nchosen model: {best['model']}  validation {info['metric']} = {best['score_val']:.5g}"
        + (f"  test = {test:.5g}" if test is not None and test == test else "")
    )
    print(f"deployment: {info['decisions'].get('deployment')}")
    print(
        f"search ended: {info['ended_because']}; {info['n_trials']} trials; "
        f"{time.time() - started:.1f}s since the process started (time limit {info['time_limit_s']})"
    )
    if info.get("cut_for_time"):
        print("left out for time: " + "; ".join(info["cut_for_time"]))
    print(f"model saved to {out}")
    if info.get("published_to"):
        print(f"run directory copied to {info['published_to']}")
