"""Model-agnostic explanations of a whole Predictor: permutation importance and partial
dependence. Both batch every perturbed copy of the sample into one prediction call."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.metrics import Metric
from automl.predictor import Predictor
from automl.problem import ProblemType

logger = logging.getLogger(__name__)

#: rows x columns x repeats predicted for permutation importance at most
PERMUTATION_BUDGET = 20_000
#: seconds permutation importance, and the partial dependence panels together, aim for: a slow
#: ensemble (bagged k-NN + MLP on wine_quality: ~1.3 ms per row) would otherwise spend 35 s here
EXPLAIN_SECONDS = 4.0
PILOT_ROWS = 200
PERMUTATION_MIN_ROWS = 100
PDP_ROWS, PDP_MIN_ROWS = 100, 10
PDP_GRID = 16
PDP_LEVELS = 12


@dataclass
class PermutationImportance:
    columns: list[str]
    mean: np.ndarray  # drop of the metric's objective (higher is better) when the column is shuffled
    std: np.ndarray
    base_score: float
    n_rows: int
    n_repeats: int


def predict_seconds_per_row(predictor: Predictor, X: pd.DataFrame) -> float:
    """What one row costs this Predictor here, measured on up to ``PILOT_ROWS`` rows."""
    pilot = X.iloc[:PILOT_ROWS]
    t = time.perf_counter()
    predictor.predict_raw(pilot)
    return (time.perf_counter() - t) / max(1, len(pilot))


def permutation_importance(
    predictor: Predictor,
    X: pd.DataFrame,
    y: np.ndarray,
    metric: Metric,
    *,
    n_repeats: int = 3,
    seed: int = 0,
    seconds_per_row: float | None = None,
) -> PermutationImportance:
    """Shuffle one input column at a time; importance = how much the metric gets worse.

    Predicts at most ``PERMUTATION_BUDGET`` rows, and with ``seconds_per_row`` (see
    ``predict_seconds_per_row``) no more than ``EXPLAIN_SECONDS`` worth, but on at least
    ``PERMUTATION_MIN_ROWS`` sampled rows."""
    columns = [c.name for c in predictor.schema.columns if c.name in X.columns]
    budget = PERMUTATION_BUDGET
    if seconds_per_row:
        budget = min(budget, int(EXPLAIN_SECONDS / seconds_per_row))
    n = int(min(len(X), max(PERMUTATION_MIN_ROWS, budget // max(1, len(columns) * n_repeats))))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), n, replace=False)) if n < len(X) else np.arange(len(X))
    base_X, base_y = X.iloc[rows].reset_index(drop=True), y[rows]
    copies = [base_X]
    for col in columns:
        for _ in range(n_repeats):
            shuffled = base_X.copy()
            shuffled[col] = base_X[col].to_numpy()[rng.permutation(n)]
            copies.append(shuffled)
    raw, _ = predictor.predict_raw(pd.concat(copies, ignore_index=True))
    parts = np.split(np.asarray(raw), len(copies))
    base = metric.objective(metric.score(base_y, parts[0]))
    drops = np.array([base - metric.objective(metric.score(base_y, p)) for p in parts[1:]]).reshape(
        len(columns), n_repeats
    )
    return PermutationImportance(
        columns, drops.mean(axis=1), drops.std(axis=1), metric.score(base_y, parts[0]), n, n_repeats
    )


def pdp_grid(values: pd.Series, kind: str) -> tuple[list[Any], bool] | None:
    """Grid of values for a column and whether they are labels (categories) rather than numbers.

    Categories: the most frequent levels. Numbers: every value when there are few, else the
    2nd..98th percentiles (evenly spaced between them when the values pile up on a few points).
    None for kinds without a meaningful grid (dates, text)."""
    present = values.dropna()
    if present.empty:
        return None
    if kind in ("categorical", "boolean"):
        return present.astype(str).value_counts().index[:PDP_LEVELS].tolist(), True
    if kind != "numeric":
        return None
    nums = pd.to_numeric(present, errors="coerce").dropna().to_numpy(float)
    distinct = np.unique(nums)
    if len(distinct) <= PDP_LEVELS:
        return distinct.tolist(), False
    lo, hi = np.quantile(nums, [0.02, 0.98])
    grid = np.unique(np.quantile(nums, np.linspace(0.02, 0.98, PDP_GRID)))
    if len(grid) < PDP_GRID // 2 and hi > lo:
        grid = np.linspace(lo, hi, PDP_GRID)
    return grid.tolist(), False


def pdp_rows(seconds_per_row: float | None, n_columns: int) -> int:
    """Rows averaged per grid point so that ``n_columns`` panels cost about ``EXPLAIN_SECONDS``."""
    if not seconds_per_row:
        return PDP_ROWS
    fit = EXPLAIN_SECONDS / (seconds_per_row * PDP_GRID * max(1, n_columns))
    return int(min(PDP_ROWS, max(PDP_MIN_ROWS, fit)))


def partial_dependence(
    predictor: Predictor, X: pd.DataFrame, column: str, kind: str, *, seed: int = 0, n_rows: int = PDP_ROWS
) -> dict[str, Any] | None:
    """Average prediction with ``column`` set to each grid value, other columns as observed.

    Returns a panel for ``plots.partial_dependence``: curves are the positive class's
    probability (binary), one probability per class (multiclass) or the prediction."""
    grid = pdp_grid(X[column], kind)
    if grid is None:
        return None
    values, categorical = grid
    rng = np.random.default_rng(seed)
    base = X.iloc[np.sort(rng.choice(len(X), n_rows, replace=False))] if len(X) > n_rows else X
    base = base.reset_index(drop=True)
    copies = []
    for v in values:
        c = base.copy()
        c[column] = v
        copies.append(c)
    raw, _ = predictor.predict_raw(pd.concat(copies, ignore_index=True))
    means = np.array([p.mean(axis=0) for p in np.split(np.asarray(raw), len(values))])
    if predictor.problem_type is ProblemType.BINARY:
        curves = {f"P({predictor.classes[1]})": means[:, 1]}
    elif predictor.problem_type is ProblemType.MULTICLASS:
        curves = {str(c): means[:, j] for j, c in enumerate(predictor.classes)}
    else:
        curves = {f"predicted {predictor.target}": means}
    return {
        "column": column,
        "x": values,
        "curves": curves,
        "categorical": categorical,
        "markers": len(values) <= PDP_LEVELS,
    }
