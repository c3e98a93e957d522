"""Everything a report reads from a run directory, loaded once.

A report needs ``run.json`` and ``leaderboard.csv``; the data profile, the validation sample
(out-of-fold predictions of the chosen model) and the saved Predictor are used when present,
and the sections that need a missing one say so instead of failing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import layout
from automl import leaderboard as lbmod
from automl.exceptions import DataError
from automl.metrics import METRICS
from automl.predictor import Predictor
from automl.profile import DataProfile

logger = logging.getLogger(__name__)

SAMPLE_FILE = layout.VALIDATION_SAMPLE


@dataclass
class RunData:
    run_dir: Path
    info: dict[str, Any]
    board: pd.DataFrame
    profile: DataProfile | None
    sample: pd.DataFrame | None
    predictor: Predictor | None
    greater_is_better: bool
    deadline: float | None = None  # time.time() by which the report must be done (a fit's end)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    @property
    def problem_type(self) -> str:
        return str(self.info.get("problem_type") or (self.profile.problem_type if self.profile else ""))

    @property
    def target(self) -> str:
        return str(self.info.get("target") or (self.profile.target if self.profile else ""))

    @property
    def metric(self) -> str:
        return str(self.info.get("metric", ""))

    @property
    def classes(self) -> list[Any] | None:
        return self.predictor.classes if self.predictor is not None else None

    @property
    def chosen_row(self) -> pd.Series | None:
        rows = self.board[self.board["chosen"].astype(str).str.lower() == "true"]
        return rows.iloc[0] if len(rows) else None

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The original input columns of ``frame`` (no target, no ``__`` bookkeeping columns)."""
        drop = [c for c in frame.columns if c == self.target or str(c).startswith("__")]
        return frame.drop(columns=drop)


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory. Raises DataError when it is not the directory of a finished fit."""
    run_dir = Path(run_dir)
    missing = [n for n in (layout.RUN_INFO, layout.LEADERBOARD) if not (run_dir / n).is_file()]
    if missing:
        raise DataError(
            f"{str(run_dir)!r} is not the directory of a finished fit: {missing} not found; "
            "pass the --output directory of `automl fit` (or run.run_dir_)"
        )
    info = json.loads((run_dir / layout.RUN_INFO).read_text())
    board = lbmod.load(run_dir / layout.LEADERBOARD)
    profile = DataProfile.load(run_dir / layout.PROFILE) if (run_dir / layout.PROFILE).is_file() else None
    sample = pd.read_parquet(run_dir / SAMPLE_FILE) if (run_dir / SAMPLE_FILE).is_file() else None
    predictor = None
    if (run_dir / layout.MANIFEST).is_file():
        predictor = Predictor.load(run_dir)
    else:
        logger.warning(
            "%s has no predictor.json: the report leaves out model evaluation and explanations", run_dir
        )
    return RunData(
        run_dir,
        info,
        board,
        profile,
        sample,
        predictor,
        greater_is_better(str(info.get("metric", "")), board),
    )


def greater_is_better(metric: str, board: pd.DataFrame) -> bool:
    """The metric's direction; for a custom metric, read from the leaderboard's order (best first)."""
    if metric in METRICS:
        return METRICS[metric].greater_is_better
    scores = board.loc[board["status"].isin(["completed", "ensemble"]), "score_val"].dropna().to_numpy(float)
    return bool(len(scores) < 2 or scores[0] >= scores[-1])


def class_codes(values: pd.Series, classes: list[Any]) -> np.ndarray:
    """Encode labels as positions in ``classes`` (-1 for a label the model never saw)."""
    codes = pd.Categorical(values, categories=classes).codes
    if (codes < 0).all() and len(values):  # dtype drift (e.g. ints read back as strings): compare as text
        codes = pd.Categorical(values.astype(str), categories=[str(c) for c in classes]).codes
    return np.asarray(codes, dtype=int)


def oof_predictions(run: RunData) -> tuple[np.ndarray, np.ndarray] | None:
    """``(y, pred)`` of the chosen model on the validation sample: class codes and an (n, k)
    probability matrix for classifiers, values and an (n,) array for regression."""
    s = run.sample
    if s is None or run.target not in s.columns:
        return None
    if run.classes is not None:
        cols = [f"__proba_{c}" for c in run.classes]
        if not all(c in s.columns for c in cols):
            return None
        y = class_codes(s[run.target], run.classes)
        keep = y >= 0
        return y[keep], s.loc[keep, cols].to_numpy(float)
    if "__prediction" not in s.columns:
        return None
    return s[run.target].to_numpy(float), s["__prediction"].to_numpy(float)
