"""Shared fixtures: one Ray session for the whole test run, tiny seeded tables."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).parent / "data"

os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@pytest.fixture(autouse=True)
def _keep_logging():
    """cli.main adds a stderr handler to the `automl` logger (it is the application there);
    remove it after each test so it does not outlive pytest's captured stderr."""
    logger = logging.getLogger("automl")
    handlers, level = logger.handlers[:], logger.level
    yield
    logger.handlers[:], logger.level = handlers, level


@pytest.fixture(scope="session")
def ray_session():
    """Ray on 2 CPUs, started once per test session (starting it costs 4-7 s here)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # our own instance, even when another Ray on this machine is running
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}},
        )
    yield ray
    ray.shutdown()


def _frame(n: int, seed: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-1, 1, size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    noise = rng.normal(scale=0.3, size=n)
    signal = 1.5 * x1 - x2 + (color == "red") * 1.0 + noise
    df = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "x3": rng.normal(size=n)})
    df.loc[rng.random(n) < 0.05, "x2"] = np.nan
    if kind == "binary":
        df["label"] = np.where(signal > 0.3, "yes", "no")
    elif kind == "multiclass":
        df["label"] = np.select([signal < -0.5, signal < 1.0], ["low", "mid"], "high")
    else:
        df["label"] = 10 + 3 * signal
    return df


@pytest.fixture(scope="session")
def binary_df() -> pd.DataFrame:
    return _frame(300, 0, "binary")


@pytest.fixture(scope="session")
def multiclass_df() -> pd.DataFrame:
    return _frame(300, 1, "multiclass")


@pytest.fixture(scope="session")
def regression_df() -> pd.DataFrame:
    return _frame(300, 2, "regression")


@pytest.fixture(scope="session")
def adult_small() -> pd.DataFrame:
    from automl.data import load_table

    return load_table(DATA / "adult_small.csv.gz")


@pytest.fixture(scope="session")
def small_run(ray_session, binary_df, multiclass_df, regression_df, tmp_path_factory):
    """``small_run(kind) -> run directory``: a saved fit of the ``kind`` table (LightGBM, two
    trials, seed 0), made once per test session and shared by the serving and batch tests, which
    only read it (each such fit costs 5-15 s here)."""
    from automl import AutoML, SearchConfig

    frames = {"binary": binary_df, "multiclass": multiclass_df, "regression": regression_df}
    runs: dict[str, str] = {}

    def get(kind: str) -> str:
        if kind not in runs:
            out = tmp_path_factory.mktemp(f"small_{kind}") / "run"
            search = SearchConfig(max_trials=2, families=("lightgbm",))
            run = AutoML(write_report=False, target="label", search=search, output_dir=out, seed=0)
            runs[kind] = str(run.fit(frames[kind]).run_dir_)
        return runs[kind]

    return get
