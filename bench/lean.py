"""What a quality run measures about the fit process and the deployed model:

- :func:`fit_process`: ``automl fit`` run as its own process on the shared split's training rows, as
  a user runs it (imports, Ray start-up and shutdown inside ``--time-limit``); its wall time and the
  overshoot over the budget (test scoring, which the limit does not count, taken out);
- :func:`deployment`: for the default choice and for the fastest option within 0.1 % (relative) of
  its validation score (among the options the fit measured; the other Pareto-front options are
  saved in ``options/`` of the run directory): test score, one-row p50 and p99, rows/s on 100k rows,
  model MB and peak predict RSS, each option measured in a fresh process (``python -m bench.lean``)
  so that the peak RSS is the model's alone;
- :func:`lean_markdown`: the SUMMARY table beside FLAML's and AutoGluon's figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import DEFAULT_MANIFEST, SHARED_BENCH, read_manifest, run_child, select_tables, write_json
from bench.table import Entry, table_name

#: relative validation-score tolerance of "the fastest option about as good as the default"
WITHIN = 0.001
#: one-row calls and batch rows of an option's measurement
CALLS, BATCH_ROWS = 200, 100_000


def fit_command(table: Any, budget: float, seed: int, train: Path, test: Path, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "automl.cli", "fit", str(train), "--target", table.target]
    cmd += ["--problem-type", table.problem, "--metric", table.metric, "--time-limit", f"{budget:g}"]
    return cmd + ["--seed", str(seed), "--output", str(run_dir), "--overwrite", "--test-data", str(test)]


def fit_process(cmd: list[str], budget: float, run_dir: Path) -> dict[str, Any]:
    """Run ``automl fit`` (``cmd``) to its end; its output goes to this process's (the run's log)."""
    sys.stdout.flush()
    t0 = time.time()
    rc = subprocess.run(cmd, timeout=3 * budget + 600).returncode
    wall = time.time() - t0
    if rc != 0:
        raise RuntimeError(f"`automl fit` exited with code {rc}: {' '.join(cmd)}")
    info = json.loads((run_dir / "run.json").read_text())
    scoring_s = (info.get("timings") or {}).get("test_scoring_s") or 0.0
    return {
        "command": " ".join(cmd[1:]),
        "process_wall_s": wall,
        "test_scoring_s": scoring_s,
        "wall_s": wall - scoring_s,  # what the time limit covers
        "overshoot_s": wall - scoring_s - budget,
        "fit_total_s": (info.get("timings") or {}).get("total_s"),
        "cut_for_time": info.get("cut_for_time"),
    }


def pick_options(board: pd.DataFrame, greater_is_better: bool) -> dict[str, str]:
    """``default``: the chosen option; ``fastest_within``: the option with the lowest measured one-row
    p50 whose validation score is within ``WITHIN`` (relative) of the default's."""
    chosen = board[board["chosen"].astype(str).str.lower() == "true"].iloc[0]
    measured = board[pd.to_numeric(board["latency_p50_ms"], errors="coerce").notna()]
    best = float(chosen["score_val"])
    tol = WITHIN * abs(best)
    ok = measured["score_val"] >= best - tol if greater_is_better else measured["score_val"] <= best + tol
    near = measured[ok].sort_values("latency_p50_ms")
    return {
        "default": str(chosen["model"]),
        "fastest_within": str(near.iloc[0]["model"]) if len(near) else "",
    }


def deployment(
    board: pd.DataFrame,
    run_dir: Path,
    model_dir: Path,
    test: Path,
    table: Any,
    *,
    greater_is_better: bool,
    out: Path,
    manifest: Path,
    bench_dir: Path,
) -> dict[str, Any]:
    """Measure the default choice and the fastest option within ``WITHIN`` of its score."""
    picked = pick_options(board, greater_is_better)
    result: dict[str, Any] = {"within": WITHIN, "picked": picked}
    for role, name in picked.items():
        if role != "default" and name == picked["default"] and "default" in result:
            result[role] = result["default"]  # the same option: measured once
            continue
        directory = model_dir if name == picked["default"] else run_dir / "options" / name
        row = board[board["model"] == name]
        in_fit = row.iloc[0][["score_val", "latency_p50_ms", "model_mb"]].to_dict() if len(row) else {}
        if not name or not (directory / "predictor.json").is_file():
            result[role] = {"model": name, "status": "not saved (no time left in the fit)", "in_fit": in_fit}
            continue
        args = ["--model", str(directory), "--test", str(test), "--table", table.name]
        args += [
            "--manifest",
            str(manifest),
            "--shared-bench",
            str(bench_dir),
            "--out",
            str(out / f"{role}.json"),
        ]
        res = run_child(
            "bench.lean", args, out_json=out / f"{role}.json", log_path=out / f"{role}.log", timeout_s=900
        )
        result[role] = {"model": name, "in_fit": in_fit, **res}
    return result


def measure_saved(model: Path, test: Path, table: Any, scoring: Any) -> dict[str, Any]:
    """In this (fresh) process: the test score and the speed of the Predictor in ``model``."""
    import automl
    from automl.inference import measure_latency

    pred = automl.load(model)
    df = pd.read_parquet(test)
    X, y = df.drop(columns=[table.target]), df[table.target]
    score = test_metrics(pred, X, y, table, scoring)
    rep = measure_latency(pred, X, calls=CALLS, warmup=20, batch_rows=BATCH_ROWS)
    return {"status": "ok", "score": score[table.metric], "all_metrics": score, **rep.to_dict()}


def test_metrics(pred: Any, X: pd.DataFrame, y: pd.Series, table: Any, scoring: Any) -> dict[str, float]:
    """The shared scoring of ``pred`` on the test rows (as run_peer.py scores the peers)."""
    if table.problem == "regression":
        return scoring.compute_metrics("regression", y, y_pred=pred.predict(X).to_numpy())
    classes = sorted(pred.classes)  # the training labels, sorted as the bench sorts them
    proba_df = pred.predict_proba(X)
    proba = scoring.align_proba(proba_df.to_numpy(), list(proba_df.columns), classes)
    labels = pred.predict(X).to_numpy()
    return scoring.compute_metrics(table.problem, y, y_pred=labels, proba=proba, classes=classes)


def options_test(board: Any, greater_is_better: bool) -> dict[str, Any]:
    """Validation and test scores of the best single model, the weighted ensemble, the stack and
    the chosen model (the ensembling table of the closing note)."""
    scored = board[board["score_test"].notna()]
    singles = scored[~scored["family"].isin(["ensemble"]) & ~scored["model"].str.startswith("l2_")]
    best_single = singles.sort_values("score_val", ascending=not greater_is_better).head(1)

    def pick(frame: Any) -> dict[str, Any] | None:
        if frame.empty:
            return None
        r = frame.iloc[0]
        return {"model": r["model"], "score_val": float(r["score_val"]), "score_test": float(r["score_test"])}

    return {
        "best_single": pick(best_single),
        "weighted_ensemble": pick(scored[scored["model"] == "weighted_ensemble"]),
        "stack": pick(scored[scored["model"] == "stack_l2"]),
        "chosen": pick(board[board["chosen"].astype(bool)]),
    }


# --- SUMMARY.md ----------------------------------------------------------------------------------------
def _cell(v: Any, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def _ours(fig: dict[str, Any] | None) -> list[str]:
    if not fig or fig.get("status") != "ok":
        return [(fig or {}).get("status", "-")] + ["-"] * 5
    return [
        f"{fig['model']} {_cell(fig['score'], '.4g')}",
        _cell(fig["one_row_p50_ms"], ".2f"),
        _cell(fig["one_row_p99_ms"], ".2f"),
        _cell(fig["rows_per_s"], ",.0f"),
        _cell(fig["model_mb"], ".2f"),
        _cell(fig["peak_rss_mb"], ",.0f"),
    ]


def _peer(e: Entry | None) -> list[str]:
    if e is None or e.status != "ok":
        return ["-"] * 6
    return [
        _cell(e.score, ".4g"),
        _cell(e.latency_ms, ".2f"),
        _cell(e.latency_p99_ms, ".2f"),
        _cell(e.rows_per_s, ",.0f"),
        _cell(e.model_mb, ".2f"),
        _cell(e.peak_mb, ",.0f"),
    ]


def lean_markdown(results: list[dict[str, Any]], peers: list[Entry]) -> str:
    """Per (table, budget, seed): our default choice and the fastest option within 0.1 % of its
    validation score, beside FLAML's and AutoGluon's figures at the same table, budget and seed."""
    tail = "p50 ms | p99 ms | rows/s | MB | peak MB"
    heads = [f"{g}: model, test score | {tail}" for g in ("default", "fastest within 0.1 %")]
    heads += [f"{g}: test score | {tail}" for g in ("flaml", "autogluon-medium_quality")]
    lines = ["| table | budget | seed | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * 24]
    for res in results:
        lean = res.get("deployment") or {}
        if res.get("status") != "ok" or not lean or "skipped" in lean:
            continue
        t, b = table_name(res), float(res.get("time_limit_s") or 0)
        seed = int((res.get("split") or {}).get("seed") or 0)
        by = {e.system: e for e in peers if (e.table, e.budget, e.seed) == (t, b, seed)}
        cells = _ours(lean.get("default")) + _ours(lean.get("fastest_within"))
        cells += _peer(by.get("flaml")) + _peer(by.get("autogluon-medium_quality"))
        lines.append(f"| {t} | {b:g}s | {seed} | " + " | ".join(cells) + " |")
    note = (
        "Ours: each option loaded in a fresh process (`python -m bench.lean`): one-row p50/p99 of 200 "
        "calls through the Predictor, rows/s on one batch of 100,000 rows (test rows repeated), the "
        "saved Predictor's MB, and the process's peak RSS (load + predictions only). Peers: their "
        "RESULT JSONs (one-row median and p99 of 200 calls, rows/s on the test split, the saved "
        "model's MB, and the peak RSS of the process that both fitted and predicted)."
    )
    return "\n".join([*lines, "", note])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Measure one saved Predictor in a fresh process (bench.quality).")
    p.add_argument("--model", required=True)
    p.add_argument("--test", required=True, help="Parquet test rows with the target column")
    p.add_argument("--table", required=True)
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--shared-bench", default=str(SHARED_BENCH))
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    from bench.common import shared_modules

    try:
        table = select_tables(read_manifest(a.manifest), [a.table])[0]
        res, rc = measure_saved(Path(a.model), Path(a.test), table, shared_modules(a.shared_bench)[1]), 0
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res, rc = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()}, 1
    write_json(a.out, res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
