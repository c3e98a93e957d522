"""Helpers for tests that build candidates without Ray (pure core), through the fit's own
prepare stage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from automl.config import FitSpec, ValidationConfig
from automl.models import get_family
from automl.predictor import Member, Predictor
from automl.prepare import prepare


def trial_data(
    df: pd.DataFrame, target: str, recipes=("tree", "linear", "nn"), n_folds: int = 3, seed: int = 0
):
    """(TrialData, preprocessors, schema, profile) of ``df`` with ``n_folds``-fold validation."""
    spec = FitSpec(target, validation=ValidationConfig(strategy="kfold", n_folds=n_folds), seed=seed)
    prep = prepare(spec, df, recipes=tuple(recipes))
    return prep.data, prep.preprocessors, prep.schema, prep.profile


def predictor_from(result, data, pre, schema, prof) -> Predictor:
    family = get_family(result.family)
    output = data.output_step(result.config)  # regression: inverse transform and clip
    member = Member("m1", result.family, family.recipe, 1.0, result.models, result.config, output=output)
    return Predictor(
        target=prof.target,
        problem_type=prof.problem,
        classes=data.classes,
        metric=data.metric.name,
        schema=schema,
        preprocessors={family.recipe: pre[family.recipe]},
        members=[member],
        task=data.task,
    )


__all__ = ["predictor_from", "trial_data"]


def trial_rows(board):
    """The leaderboard's search trials: not the ensemble, nor the refit options built from members."""
    return board[~board["status"].isin(["ensemble", "refit"])]


def kill_fit_midway(args, finished, at_least: int, poll_s: float = 0.5, limit_s: float = 240.0) -> float:
    """Start the fit ``args`` in its own session, SIGKILL its driver once ``finished()`` counts
    ``at_least`` trials (no clean-up runs), then kill what is left of its session (Ray's agents
    outlive the driver). Returns the seconds the fit ran."""
    import os
    import signal
    import subprocess
    import time

    t0 = time.time()
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while len(finished()) < at_least and time.time() - t0 < limit_s:
            assert proc.poll() is None, "the fit ended before it could be interrupted"
            time.sleep(poll_s)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any clean-up
        proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return time.time() - t0


def two_worker_job(data, X, tr, va, config, tmp_path, name: str, **extra):
    """A Ray Train job of ``config`` on two CPU workers over the rows ``tr`` (training) and
    ``va`` (validation) of the matrix ``X``, scored by ROC AUC, nothing forwarded to Tune."""
    from tuning import distributed

    return distributed.job_from_matrices(
        config,
        data.task,
        X.take(tr),
        data.y[tr],
        None,
        X.take(va),
        data.y[va],
        metric="roc_auc",
        num_workers=2,
        use_gpu=False,
        storage_path=str(tmp_path),
        name=name,
        report_to_tune=False,
        **extra,
    )


def streaming_table(n: int = 2000, seed: int = 0, regression: bool = False) -> pd.DataFrame:
    """A small seeded table for the streaming tests: numbers with missing values, a category, a day,
    a store id, and a binary (or regression) label with 1 % missing."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, size=n)
    color = rng.choice(["red", "green", "blue", "grey"], size=n)
    signal = 1.5 * x1 - x2 + (color == "red") + rng.normal(scale=0.4, size=n)
    df = pd.DataFrame(
        {
            "rid": np.arange(n),
            "x1": x1,
            "x2": x2,
            "color": color,
            "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "store": rng.integers(0, 40, n),
        }
    )
    df.loc[rng.random(n) < 0.1, "x2"] = np.nan
    df.loc[rng.random(n) < 0.05, "color"] = None
    df["label"] = 10 + 3 * signal if regression else np.where(signal > 0.3, "yes", "no")
    df.loc[rng.random(n) < 0.01, "label"] = None
    return df


def signal_frame(n: int, seed: int, regression: bool) -> pd.DataFrame:
    """x1, x2, color and a target y that depends on all three (numbers, or "yes"/"no")."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    signal = 1.5 * x1 - x2 + (color == "red") + rng.normal(scale=0.3, size=n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "color": color})
    df["y"] = 10 + 3 * signal if regression else np.where(signal > 0.3, "yes", "no")
    return df
