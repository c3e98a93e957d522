"""The ``automl`` command line. Errors caused by the input print as one line and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from automl import layout
from automl.exceptions import AutoMLError

logger = logging.getLogger("automl.cli")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}

#: modules that add subcommands: each has ``add_commands(subparsers)``, which adds its parsers
#: and sets ``func`` (a callable taking the parsed args, returning an exit code) on each. Their
#: imports must stay cheap (no Ray at module level): `automl --help` loads them all.
PLUGINS = ("serving.cli", "automl.report.cli", "automl.registry.cli", "automl.monitor.cli")


def command(name: str) -> Callable:
    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = fn
        return fn

    return deco


def _families(text: str | None) -> tuple[str, ...] | None:
    return tuple(f.strip() for f in text.split(",") if f.strip()) if text else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="automl", description="AutoML on Ray: profile, search, ensemble, serve.")
    p.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="run the autopilot on a table")
    f.add_argument("data", help="training table: CSV(.gz), Parquet or JSON lines; path, file:// or s3:// URI")
    f.add_argument("--target", required=True)
    f.add_argument("--problem-type", choices=["binary", "multiclass", "regression"])
    f.add_argument("--metric")
    f.add_argument(
        "--time-limit", type=float, help="seconds for the whole fit (default 300 unless --max-trials)"
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
    f.add_argument("--no-ensemble", action="store_true")
    f.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    f.add_argument("--stack-levels", type=int, default=0, choices=[0, 1, 2])
    f.add_argument("--refit", choices=["auto", "yes", "no"], default="auto")
    f.add_argument("--max-predict-latency-ms", type=float)
    f.add_argument("--max-model-size-mb", type=float)
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

    pr = sub.add_parser("profile", help="profile a table: column kinds, problem type, warnings")
    pr.add_argument("data")
    pr.add_argument("--target", required=True)
    pr.add_argument("--problem-type", choices=["binary", "multiclass", "regression"])
    pr.add_argument("--metric")
    pr.add_argument("--time-column")
    pr.add_argument("--group-column")
    pr.add_argument("--output", default="profile.json")

    lb = sub.add_parser("leaderboard", help="print the leaderboard of a run")
    lb.add_argument("dir")
    lb.add_argument("--format", choices=["table", "csv", "json"], default="table")
    lb.add_argument("--limit", type=int, default=30)

    pd_ = sub.add_parser("predict", help="batch predictions for a table")
    pd_.add_argument("dir", help="a run or model directory")
    pd_.add_argument("data")
    pd_.add_argument("--output", required=True, help="CSV or Parquet, by suffix")
    pd_.add_argument("--proba", action="store_true", help="one column per class instead of the label")
    pd_.add_argument(
        "--id-column", help="column to copy next to each prediction (default: the data's id column)"
    )
    pd_.add_argument("--batch-size", type=int, default=50_000)
    pd_.add_argument("--no-ray", action="store_true", help="predict in this process instead of with Ray Data")
    pd_.add_argument(
        "--errors",
        help="CSV for the rows that fail validation (their id or row number and the reason); "
        "default: OUTPUT with .errors.csv in place of its suffix",
    )
    pd_.add_argument(
        "--max-error-rate",
        type=float,
        default=1.0,
        help="stop the job when more than this share (0-1) of the rows read failed validation "
        "(default 1: never stop; the failed rows go to the errors file and the rest are scored)",
    )
    for name in PLUGINS:
        import importlib

        importlib.import_module(name).add_commands(sub)
    return p


def _configure_logging(quiet: bool) -> None:
    # The CLI is an application: it, not the library, decides what is shown.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("automl")
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for name in ("tuning",):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet)
    try:
        func = getattr(args, "func", None) or COMMANDS[args.command]
        return int(func(args) or 0)
    except AutoMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --- commands ------------------------------------------------------------------------------------------
@command("fit")
def cmd_fit(a: argparse.Namespace) -> int:
    from automl import AutoML, EnsembleConfig, ResourceConfig, SearchConfig, ValidationConfig
    from automl import leaderboard as lbmod
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
        ),
        validation=ValidationConfig(
            strategy=a.validation, n_folds=a.folds, time_column=a.time_column, group_column=a.group_column
        ),
        ensemble=EnsembleConfig(
            enabled=not a.no_ensemble,
            stack_levels=a.stack_levels,
            refit=refit,
            max_predict_latency_ms=a.max_predict_latency_ms,
            max_model_size_mb=a.max_model_size_mb,
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
    )
    t = time.time()
    run.fit(a.data, validation_data=a.validation_data, test_data=a.test_data, resume=a.resume)
    info = run.run_info_
    print(lbmod.format_table(run.leaderboard(), limit=15))
    best = run.leaderboard().query("chosen == True").iloc[0]
    print(
        f"\nchosen model: {best['model']}  validation {info['metric']} = {best['score_val']:.5g}"
        + (
            f"  test = {best['score_test']:.5g}"
            if best.get("score_test") == best.get("score_test") and best.get("score_test") is not None
            else ""
        )
    )
    print(
        f"search ended: {info['ended_because']}; {info['n_trials']} trials; fit took {time.time() - t:.1f}s"
    )
    print(f"model saved to {out}")
    if info.get("published_to"):
        print(f"run directory copied to {info['published_to']}")
    return 0


@command("profile")
def cmd_profile(a: argparse.Namespace) -> int:
    from automl.config import FitSpec, ValidationConfig
    from automl.data import load_table
    from automl.prepare import profile_for

    validation = ValidationConfig(time_column=a.time_column, group_column=a.group_column)
    spec = FitSpec(a.target, problem_type=a.problem_type, metric=a.metric, validation=validation)
    prof = profile_for(spec, load_table(a.data))
    path = prof.save(a.output)
    print(prof.summary())
    print(f"profile written to {path}")
    return 0


@command("leaderboard")
def cmd_leaderboard(a: argparse.Namespace) -> int:
    from automl import leaderboard as lbmod
    from automl.exceptions import DataError

    path = Path(a.dir) / layout.LEADERBOARD
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist; pass the directory of a finished fit")
    board = lbmod.load(path)
    if a.format == "csv":
        print(board.to_csv(index=False), end="")
    elif a.format == "json":
        print(json.dumps(json.loads(board.to_json(orient="records")), indent=1))
    else:
        print(lbmod.format_table(board, limit=a.limit))
    return 0


@command("predict")
def cmd_predict(a: argparse.Namespace) -> int:
    from serving.batch import predict_file

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
