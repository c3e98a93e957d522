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
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from automl.predictor import sha256_file
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
from bench.curves import anytime_curve, curve_summary, search_offset_s
from bench.measure import TreeMemorySampler, environment

LATENCY_CALLS = 200
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
PREDICT_REPEATS = 3


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
) -> dict[str, Any]:
    """Fit, time, score and size one run; returns the RESULT dict (see bench/README.md).
    ``search`` names the search strategy (default: the project's default, bayesian)."""
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
    classification = table.problem != "regression"
    classes = sorted(train_df[table.target].unique().tolist()) if classification else None
    res["data"] = {
        "table": table.name,
        "path": str(table.file.resolve()),
        "sha256": sha256_file(table.file),
        "n_rows": int(len(df)),
        "n_features": int(df.shape[1] - 1),
        "target": table.target,
        "problem": table.problem,
        "n_train": int(len(train_df)),
        "n_test": int(len(test_df)),
        "classes": classes,
        "positive_class": splits.positive_class(classes) if table.problem == "binary" else None,
        "time_column": table.time_column,
        "group_column": table.group_column,
        "time_and_group_columns": "plain features; the split is the shared random/stratified one",
    }
    res["split"] = {
        "function": "splits.split",
        "test_size": splits.TEST_SIZE,
        "stratified": classification,
        "seed": seed,
        "test_index_sha256": splits.split_fingerprint(test_df),
    }

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
    res["fit"] = {
        "wall_s": process["wall_s"],
        "cpu_s": tree.cpu_s,
        "over_time_limit_s": process["overshoot_s"],
        "process": process,
        "wall_s_source": "wall time of the `automl fit` process (imports, Ray start-up and shutdown "
        "included) less its test scoring, which the time limit does not count",
        "cpu_s_source": "CPU time of the fit process and its Ray processes, sampled from /proc",
        "cpu_s_getrusage": scoring.cpu_seconds() - c0,
    }
    info = json.loads((run_dir / layout.RUN_INFO).read_text())
    board = lbmod.load(run_dir / layout.LEADERBOARD)

    t0 = time.perf_counter()
    extra = {n: run_dir / n for n in layout.PREDICTOR_FILES if (run_dir / n).exists()}
    automl.load(run_dir).save(model_dir, extra_files=extra)  # what `run.save(model_dir)` writes
    save_s = time.perf_counter() - t0
    predictor = automl.load(model_dir)  # the deployable artifact, as `automl serve` loads it
    use_proba = classification and scoring.needs_proba(table.metric)
    fn = predictor.predict_proba if use_proba else predictor.predict
    out, times = scoring.time_batch(fn, X_test, repeats=PREDICT_REPEATS)
    med = statistics.median(times)
    res["predict"] = {
        "method": "predict_proba" if use_proba else "predict",
        "n_rows": int(len(X_test)),
        "wall_s": med,
        "wall_s_first": times[0],
        "wall_s_runs": times,
        "rows_per_s": len(X_test) / med,
        "model": "automl.load(saved artifact) in process",
    }
    all_m = lean.test_metrics(predictor, X_test, y_test, table, scoring)
    res["metric"] = {
        "name": table.metric,
        "value": all_m[table.metric],
        "greater_is_better": scoring.METRICS[table.metric][1],
        "computed_with": "sklearn on the 20% test split",
    }
    res["all_metrics"] = all_m
    res["latency_single_row"] = {
        "method": res["predict"]["method"],
        **scoring.time_single_row(fn, X_test, n_calls=LATENCY_CALLS),
    }
    tree.stop()
    res["artifact"] = {
        "kind": "automl Predictor directory (run.save)",
        "path": str(model_dir),
        "bytes": scoring.path_size_bytes(str(model_dir)),
        "save_s": save_s,
    }
    res["artifact"]["mb"] = res["artifact"]["bytes"] / 2**20
    res["deployment"] = lean.deployment(
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
    res["leaderboard_top5"] = board[TOP5_COLUMNS].head(5).to_dict(orient="records")
    res["options_test"] = lean.options_test(board, res["metric"]["greater_is_better"])
    res["system_details"] = _details(info, run_dir, board, res["metric"]["greater_is_better"])
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


def _details(info: dict[str, Any], run_dir: Path, board: Any, greater_is_better: bool) -> dict[str, Any]:
    from automl.models import all_families

    curve = anytime_curve(board, greater_is_better, search_offset_s(info.get("timings") or {}))
    keys = (
        "chosen",
        "members",
        "refit",
        "n_trials",
        "trials_by_status",
        "ended_because",
        "trial_overhead_s",
        "timings",
        "overshoot_s",
        "cut_for_time",
        "decisions",
        "deployment",
        "concurrency",
        "search_strategy",
        "validation",
    )
    return {
        **{k: info.get(k) for k in keys},
        "families_registered": list(all_families()),
        "families_tried": sorted(board.loc[board["family"] != "ensemble", "family"].dropna().unique()),
        "run_dir": str(run_dir),
        "anytime_curve": curve,
        "curve_summary": curve_summary(curve),
    }


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
