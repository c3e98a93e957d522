"""The sections of one quality run's RESULT JSON built from what the run produced: which rows were
split off for the test (``data``, ``split``), how the saved artifact predicts (``predict``,
``metric``, ``latency_single_row``) and the fit's own details (``system_details``)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from automl.predictor import sha256_file
from bench import lean
from bench.common import Table
from bench.curves import anytime_curve, curve_summary, search_offset_s

#: one-row calls timed, and batch predictions repeated, per saved artifact
LATENCY_CALLS = 200
PREDICT_REPEATS = 3


def measure_predictor(
    res: dict[str, Any], predictor: Any, X_test: Any, y_test: Any, table: Table, scoring: Any
) -> None:
    """Batch predict time, test metrics and one-row latency of the saved artifact, into ``res``."""
    use_proba = table.problem != "regression" and scoring.needs_proba(table.metric)
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


def describe_split(
    table: Table, df: Any, train_df: Any, test_df: Any, splits: Any, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The RESULT's ``data`` and ``split`` sections: which table, which rows went to the test part."""
    classification = table.problem != "regression"
    classes = sorted(train_df[table.target].unique().tolist()) if classification else None
    data = {
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
    split = {
        "function": "splits.split",
        "test_size": splits.TEST_SIZE,
        "stratified": classification,
        "seed": seed,
        "test_index_sha256": splits.split_fingerprint(test_df),
    }
    return data, split


def run_details(info: dict[str, Any], run_dir: Path, board: Any, greater_is_better: bool) -> dict[str, Any]:
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
