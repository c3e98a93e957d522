"""Training baseline for drift monitoring (in the spirit of Model Monitor's statistics/constraints).

Numeric features keep decile bin edges with the training share per bin (for PSI), a sorted
sample of values (for a two-sample KS test) and their range; categorical-like features keep the
share of each frequent level. Constraints record the kind, the missing share and the known levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from automl.kinds import ColumnKind, level_strings
from automl.problem import ProblemType

if TYPE_CHECKING:
    from automl.profile import ColumnProfile

N_BINS = 10
KS_SAMPLE = 2000
MAX_LEVELS = 100


def numeric_values(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def numeric_stats(values: np.ndarray) -> dict[str, Any]:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return {"edges": [], "shares": [], "sample": []}
    edges = np.unique(np.quantile(v, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(v, size=min(KS_SAMPLE, len(v)), replace=False))
    return {
        "edges": edges.tolist(),
        "shares": (counts / counts.sum()).tolist(),
        "sample": sample.tolist(),
        "min": float(v.min()),
        "max": float(v.max()),
        "mean": float(v.mean()),
        "std": float(v.std()),
    }


def level_stats(s: pd.Series) -> dict[str, Any]:
    present = level_strings(s.dropna())
    counts = present.value_counts()
    top = counts.head(MAX_LEVELS)
    total = max(len(present), 1)
    return {
        "levels": {str(k): float(v / total) for k, v in top.items()},
        "other_share": float(counts.iloc[MAX_LEVELS:].sum() / total) if len(counts) > MAX_LEVELS else 0.0,
    }


def build(df: pd.DataFrame, features: list[ColumnProfile], target: str, ptype: ProblemType) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    constraints: dict[str, Any] = {}
    for cp in features:
        s = df[cp.name]
        if cp.kind == ColumnKind.NUMERIC.value:
            stats[cp.name] = {"type": "numeric", **numeric_stats(numeric_values(s))}
        elif cp.kind in (ColumnKind.CATEGORICAL.value, ColumnKind.BOOLEAN.value):
            stats[cp.name] = {"type": "categorical", **level_stats(s)}
        constraints[cp.name] = {
            "kind": cp.kind,
            "missing_share": cp.missing_share,
            "known_levels_complete": cp.n_unique <= MAX_LEVELS,
        }
    return {"n_rows": len(df), "features": stats, "constraints": constraints}


def prediction_baseline(sample: pd.DataFrame, classes: list | None) -> dict[str, Any]:
    """Baseline of the model's predictions from ``validation_sample.parquet`` (out-of-fold):
    ``label`` (shares of the predicted class) for classifiers, ``score`` (probability of the
    second class) for binary ones, ``value`` for regression; each in the feature-baseline format."""
    out: dict[str, Any] = {}
    if classes:
        cols = [f"__proba_{c}" for c in classes]
        if not all(c in sample.columns for c in cols):
            return out
        proba = sample[cols].to_numpy(dtype=float)
        labels = pd.Series(np.asarray([str(c) for c in classes], dtype=object)[proba.argmax(axis=1)])
        out["label"] = {"type": "categorical", **level_stats(labels)}
        if len(classes) == 2:
            out["score"] = {"type": "numeric", "class": str(classes[1]), **numeric_stats(proba[:, 1])}
    elif "__prediction" in sample.columns:
        out["value"] = {"type": "numeric", **numeric_stats(numeric_values(sample["__prediction"]))}
    return out
