"""The leaderboard: one row per trial plus the ensemble rows, best first.

Columns: rank, model, family, score_val, score_std, metric, fit_time_s, predict_time_s, status,
stop_reason, iterations, params (JSON), error, trial_id, members (JSON, ensembles), refit, chosen,
score_test, start_s, end_s, retries (times Tune restarted the trial after a worker or node died),
and for every deployment option the chooser measured (:mod:`automl.deploy`): latency_p50_ms,
latency_p99_ms (one-row predictions through the Predictor), rows_per_s (a batch), model_mb (on
disk), pareto (on the front of validation score against one-row latency) and deployment (why it
was chosen, rejected or not measured).

Statuses: completed, stopped, failed (trials); ensemble (the weighted ensemble, a stack); refit
(an option whose members were refit on every row: its score_val is its bag's, an estimate);
skipped (an option or stage left out, usually for time: stop_reason says why).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import layout
from automl.exceptions import ConfigError

logger = logging.getLogger(__name__)

COLUMNS = [
    "rank",
    "model",
    "family",
    "score_val",
    "score_std",
    "metric",
    "fit_time_s",
    "predict_time_s",
    "status",
    "stop_reason",
    "iterations",
    "params",
    "error",
    "trial_id",
    "members",
    "refit",
    "chosen",
    "score_test",
    "start_s",
    "end_s",
    "retries",
    "latency_p50_ms",
    "latency_p99_ms",
    "rows_per_s",
    "model_mb",
    "pareto",
    "deployment",
]
_STATUS_ORDER = {"completed": 0, "ensemble": 0, "refit": 0, "stopped": 1, "failed": 2, "skipped": 3}


@dataclass
class Row:
    model: str
    family: str
    status: str
    metric: str
    score_val: float | None = None
    score_std: float | None = None
    fit_time_s: float | None = None
    predict_time_s: float | None = None
    stop_reason: str | None = None
    iterations: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    trial_id: str | None = None
    members: dict[str, float] | None = None
    refit: bool = False
    chosen: bool = False
    score_test: float | None = None
    start_s: float | None = None
    end_s: float | None = None
    retries: int | None = None  # trials: restarts after a failure (None for ensembles)
    latency_p50_ms: float | None = None  # deployment options the chooser measured (automl.deploy)
    latency_p99_ms: float | None = None
    rows_per_s: float | None = None
    model_mb: float | None = None
    pareto: bool | None = None
    deployment: str | None = None


def build(rows: list[Row], greater_is_better: bool) -> pd.DataFrame:
    records = []
    for r in rows:
        d = dict(r.__dict__)
        d["params"] = json.dumps(r.params, sort_keys=True, default=str)
        d["members"] = json.dumps(r.members) if r.members else ""
        records.append(d)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    order = df["status"].map(lambda s: _STATUS_ORDER.get(s, 3))
    score = df["score_val"].astype(float)
    key = -score if greater_is_better else score
    df = (
        df.assign(_o=order, _k=key.fillna(np.inf))
        .sort_values(["_o", "_k"], kind="stable")
        .drop(columns=["_o", "_k"])
    )
    df.insert(0, "rank", range(1, len(df) + 1))
    return df[COLUMNS].reset_index(drop=True)


def save(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False)


def load(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=True)


def format_table(df: pd.DataFrame, limit: int = 20) -> str:
    """A readable terminal table of the leaderboard."""
    show = df.head(limit).copy()
    cols = [
        "rank",
        "model",
        "score_val",
        "score_std",
        "fit_time_s",
        "predict_time_s",
        "latency_p50_ms",
        "model_mb",
        "status",
        "stop_reason",
    ]
    show = show[[c for c in cols if c in show.columns]]
    for c in ("score_val", "score_std"):
        show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.5g}")
    for c in ("fit_time_s", "predict_time_s", "latency_p50_ms", "model_mb"):
        if c in show.columns:
            show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    show["stop_reason"] = show["stop_reason"].fillna("")
    if "chosen" in df.columns:
        show["model"] = [
            ("* " if c else "  ") + m for m, c in zip(show["model"], df.head(limit)["chosen"].fillna(False))
        ]
    return show.to_string(index=False)


def warm_start_points(previous: str | None, families: dict[str, Any], top: int = 5) -> list[dict[str, Any]]:
    """Best configs of an earlier run (its leaderboard), evaluated first in this search."""
    if not previous:
        return []
    path = Path(previous) / layout.LEADERBOARD
    if not path.exists():
        raise ConfigError(f"warm_start: {str(path)!r} does not exist; pass a run directory of an earlier fit")
    board = load(path)
    done = board[(board["status"] == "completed") & board["family"].isin(list(families))].head(top)
    points = [
        {"family": r.family, **{f"{r.family}.{k}": v for k, v in json.loads(r.params).items()}}
        for r in done.itertuples()
    ]
    logger.info("warm start: %d configs from %s", len(points), previous)
    return points
