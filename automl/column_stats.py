"""Summary statistics of one column (numeric quantiles, top levels, date range) and of the
target (class counts or its distribution), as profile.json records them."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from automl.kinds import ColumnKind, level_strings
from automl.problem import ProblemType


def column_stats(s: pd.Series, kind: ColumnKind) -> dict[str, Any]:
    """Numeric quantiles, or the top values with their shares (and the range of dates)."""
    present = s.dropna()
    if not len(present):
        return {}
    if kind is ColumnKind.NUMERIC:
        vals = pd.to_numeric(present, errors="coerce").dropna().to_numpy(dtype=float)
        if not len(vals):
            return {}
        q = np.quantile(vals, [0, 0.01, 0.25, 0.5, 0.75, 0.99, 1])
        return {
            "mean": float(vals.mean()),
            "std": float(vals.std()),
            "quantiles": dict(zip(["min", "p01", "p25", "p50", "p75", "p99", "max"], map(float, q))),
        }
    top = level_strings(present).value_counts().head(10)
    stats: dict[str, Any] = {"top": [{"value": k, "share": round(v / len(s), 6)} for k, v in top.items()]}
    if kind is ColumnKind.DATETIME:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = (
                present
                if pd.api.types.is_datetime64_any_dtype(present)
                else pd.to_datetime(present.astype(str), errors="coerce", format="mixed")
            )
        stats.update({"min": str(parsed.min()), "max": str(parsed.max())})
    return stats


def target_summary(y: pd.Series, ptype: ProblemType) -> dict[str, Any]:
    if ptype.is_classification:
        counts = y.value_counts()
        return {
            "class_counts": {str(k): int(v) for k, v in counts.items()},
            "imbalance_ratio": round(float(counts.iloc[0] / counts.iloc[-1]), 4),
        }
    v = y.to_numpy(dtype=float)
    q = np.quantile(v, [0, 0.25, 0.5, 0.75, 1])
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "quantiles": dict(zip(["min", "p25", "p50", "p75", "max"], map(float, q))),
        **shape_stats(v),
    }


def shape_stats(v: np.ndarray) -> dict[str, float]:
    """Skewness and excess kurtosis (0 for a normal distribution) of a numeric target; they
    decide whether the search tries a target transform (``automl.target``)."""
    if len(v) < 3 or float(np.std(v)) == 0.0:
        return {"skewness": 0.0, "excess_kurtosis": 0.0}
    from scipy import stats

    return {"skewness": float(stats.skew(v)), "excess_kurtosis": float(stats.kurtosis(v))}
