"""One quality run: the project fit on the shared split of one table at one budget, scored on the
test split exactly like run_peer.py scores the peers, written as a RESULT JSON of the same shape.

Runs in its own process (``python -m bench.quality ...``, launched by :func:`launch`), so peak
memory is per run and Ray starts fresh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import lean
from bench.common import (
    DEFAULT_MANIFEST,
    SCHEMA,
    SHARED_BENCH,
    SYSTEM,
    Table,
    budget_label,
    read_manifest,
    run_child,
    select_tables,
    shared_modules,
    write_json,
)
from bench.measure import TreeMemorySampler, environment
from bench.result_sections import describe_split, measure_predictor, run_details

TOP5_COLUMNS = [
    "model",
    "family",
    "score_val",
    "score_std",
    "status",
    "fit_time_s",
    "predict_time_s",
    "chosen",
]
TOP5_COLUMNS += ["score_test", "latency_p50_ms", "model_mb"]
STACK_FROM_S = 300


def run_quality(
    table: Table,
    budget: float,
    *,
    seed: int,
    work_dir: Path,
    bench_dir: Path = SHARED_BENCH,
    keep_search: bool = False,
    search: str | None = None,
    manifest: Path = DEFAULT_MANIFEST,
    lean_options: bool = True,
) -> dict[str, Any]:
    """Fit, time, score and size one run; returns the RESULT dict (see bench/README.md).
    ``search`` names the search strategy (default: the project's default, bayesian);
    ``lean_options`` False: the deployment options are not measured in fresh processes."""
    splits, scoring = shared_modules(bench_dir)
    res: dict[str, Any] = {
        "schema": SCHEMA,
        "status": "running",
        "system": SYSTEM,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    t_total, load_start = time.perf_counter(), os.getloadavg()
    df = splits.load_csv(str(table.file))
    train_df, test_df = splits.split(df, table.target, table.problem, seed)
    X_test, y_test = test_df.drop(columns=[table.target]), test_df[table.target]
    res["data"], res["split"] = describe_split(table, df, train_df, test_df, splits, seed)

    t0 = time.perf_counter()
    import automl
    from automl import layout
    from automl import leaderboard as lbmod

    res["import_s"] = time.perf_counter() - t0
    res.update(system_version=automl.__version__, preset=None, time_limit_s=budget)
    if work_dir.exists():
        shutil.rmtree(work_dir)
    run_dir, model_dir = work_dir / "run", work_dir / "model"
    work_dir.mkdir(parents=True)
    train_path, test_path = work_dir / "train.parquet", work_dir / "test.parquet"
    train_df.to_parquet(train_path, index=False)
    test_df.to_parquet(test_path, index=False)
    rss_before_fit = scoring.peak_rss_mb()
    c0 = scoring.cpu_seconds()
    tree = TreeMemorySampler().start()  # until the last prediction: the peers' peak RSS covers those too
    # `automl fit` as a user runs it, in its own process; stacking from 300 s budgets on; the test
    # split is passed so every model option gets a test score, after the fit's own time limit
    cmd = lean.fit_command(table, budget, seed, train_path, test_path, run_dir)
    cmd += (["--stack-levels", "1"] if budget >= STACK_FROM_S else []) + (
        ["--search", search] if search else []
    )
    process = lean.fit_process(cmd, budget, run_dir)
    tree.sample()
    res["fit"] = _fit_record(process, tree, scoring.cpu_seconds() - c0)
    info = json.loads((run_dir / layout.RUN_INFO).read_text())
    board = lbmod.load(run_dir / layout.LEADERBOARD)

    predictor, res["artifact"] = _save_artifact(automl, run_dir, model_dir, scoring)
    measure_predictor(res, predictor, X_test, y_test, table, scoring)
    tree.stop()
    res["deployment"] = (
        {"skipped": "not measured for this seed (--lean-seeds)"}
        if not lean_options
        else lean.deployment(
            board,
            run_dir,
            model_dir,
            test_path,
            table,
            greater_is_better=res["metric"]["greater_is_better"],
            out=work_dir / "deployment",
            manifest=manifest,
            bench_dir=bench_dir,
        )
    )
    res["leaderboard_top5"] = board[TOP5_COLUMNS].head(5).to_dict(orient="records")
    res["options_test"] = lean.options_test(board, res["metric"]["greater_is_better"])
    res["system_details"] = run_details(info, run_dir, board, res["metric"]["greater_is_better"])
    # process wall time the fit's own clock (run.json timings.total_s, from the process start) did
    # not see: the process's exit after the clock stopped
    total = (res["system_details"].get("timings") or {}).get("total_s")
    res["system_details"]["outside_budget_clock_s"] = process["wall_s"] - total if total is not None else None
    res["memory"] = {
        "peak_rss_mb": scoring.peak_rss_mb(),
        "peak_rss_before_fit_mb": rss_before_fit,
        "peak_rss_children_mb": scoring.peak_rss_mb(__import__("resource").RUSAGE_CHILDREN),
        **tree.result(),
        "source": "peak_rss_mb: ru_maxrss of the driver only; peak_tree_pss_mb: summed PSS of "
        "the driver and all its Ray processes, sampled from the fit to the last "
        "prediction (the comparable figure)",
    }
    if not keep_search:
        shutil.rmtree(run_dir / "search", ignore_errors=True)
    res["environment"] = environment(load_start)
    res["total_wall_s"] = time.perf_counter() - t_total
    res["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    res["status"] = "ok"
    return res


def _fit_record(process: dict[str, Any], tree: TreeMemorySampler, cpu_s_getrusage: float) -> dict[str, Any]:
    return {
        "wall_s": process["wall_s"],
        "cpu_s": tree.cpu_s,
        "over_time_limit_s": process["overshoot_s"],
        "process": process,
        "wall_s_source": "wall time of the `automl fit` process (imports, Ray start-up and shutdown "
        "included) less its test scoring, which the time limit does not count",
        "cpu_s_source": "CPU time of the fit process and its Ray processes, sampled from /proc",
        "cpu_s_getrusage": cpu_s_getrusage,
    }


def _save_artifact(automl: Any, run_dir: Path, model_dir: Path, scoring: Any) -> tuple[Any, dict[str, Any]]:
    """Save the run as ``run.save(model_dir)`` does and load it back as ``automl serve`` does."""
    from automl import layout

    t0 = time.perf_counter()
    extra = {n: run_dir / n for n in layout.PREDICTOR_FILES if (run_dir / n).exists()}
    automl.load(run_dir).save(model_dir, extra_files=extra)
    save_s = time.perf_counter() - t0
    size = scoring.path_size_bytes(str(model_dir))
    artifact = {
        "kind": "automl Predictor directory (run.save)",
        "path": str(model_dir),
        "bytes": size,
        "save_s": save_s,
        "mb": size / 2**20,
    }
    return automl.load(model_dir), artifact


def launch(
    table: Table,
    budget: float,
    out_json: Path,
    *,
    manifest: Path,
    seed: int,
    work_dir: Path,
    bench_dir: Path,
    keep_search: bool = False,
    search: str | None = None,
    lean_options: bool = True,
) -> dict[str, Any]:
    """Run one quality run in a fresh process; returns its RESULT dict (status error on a crash)."""
    args = [
        "--manifest",
        str(manifest),
        "--table",
        table.name,
        "--budget",
        f"{budget:g}",
        "--seed",
        str(seed),
        "--work",
        str(work_dir),
        "--shared-bench",
        str(bench_dir),
        "--out",
        str(out_json),
    ] + (["--search", search] if search else [])
    if keep_search:
        args.append("--keep-search")
    if not lean_options:
        args.append("--no-lean")
    res = run_child(
        "bench.quality",
        args,
        out_json=out_json,
        log_path=out_json.with_suffix(".log"),
        timeout_s=2 * budget + 900,  # + the two deployment options measured in fresh processes
    )
    if res.get("status") != "ok":  # a crashed child wrote nothing: name the run for the tables
        res.setdefault("data", {}).setdefault("table", table.name)
        res.setdefault("time_limit_s", budget)
        res.setdefault("metric", {"name": table.metric})
        res.setdefault("split", {"seed": seed})
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One quality run of the project (see bench/README.md).")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--table", required=True)
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", required=True, help="folder for the run directory and the saved model")
    p.add_argument("--shared-bench", default=str(SHARED_BENCH))
    p.add_argument("--out", required=True)
    p.add_argument("--keep-search", action="store_true", help="keep the Ray Tune experiment (search/)")
    p.add_argument("--search", default=None, help="search strategy (default: the project's default)")
    p.add_argument("--no-lean", action="store_true", help="do not measure the deployment options")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    table = select_tables(read_manifest(a.manifest), [a.table])[0]
    try:
        res = run_quality(
            table,
            a.budget,
            seed=a.seed,
            work_dir=Path(a.work),
            bench_dir=Path(a.shared_bench),
            keep_search=a.keep_search,
            search=a.search,
            manifest=Path(a.manifest),
            lean_options=not a.no_lean,
        )
        rc = 0
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res = {
            "schema": SCHEMA,
            "status": "error",
            "system": SYSTEM,
            "error": repr(exc),
            "traceback": traceback.format_exc(),
            "data": {"table": table.name},
            "time_limit_s": a.budget,
            "metric": {"name": table.metric},
            "split": {"seed": a.seed},
        }
        rc = 1
        print(res["traceback"], file=sys.stderr)
    res["args"] = vars(a)
    write_json(a.out, res)
    print(
        f"[bench.quality] {table.name} {budget_label(a.budget)} status={res['status']} -> {a.out}",
        file=sys.stderr,
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
