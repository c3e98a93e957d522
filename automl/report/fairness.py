"""Post-training bias metrics in the manner of SageMaker Clarify, for binary classifiers.

Each group *d* of the sensitive column (the facet) is compared with all other rows *a*:

* DPPL, difference in positive proportions in predicted labels: ``q'_a - q'_d``, where q' is
  the share of rows predicted positive. 0 is parity; positive means *d* gets fewer positives.
* DI, disparate impact: ``q'_d / q'_a``. 1 is parity; below 0.8 fails the "four-fifths rule".
* RD, recall difference: ``recall_a - recall_d`` (true positive rates).
* AD, accuracy difference: ``accuracy_a - accuracy_d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAX_GROUPS = 20
#: a numeric column with more distinct values than this is cut into quartiles
MAX_NUMERIC_LEVELS = 10
SMALL_GROUP = 30
DI_LOW, DI_HIGH, DPPL_LIMIT = 0.8, 1.25, 0.1


@dataclass
class FairnessResult:
    column: str
    positive: Any
    threshold: float
    table: pd.DataFrame
    notes: list[str]


def group_labels(values: pd.Series) -> tuple[pd.Series, list[str]]:
    """Groups as text: quartiles for a many-valued numeric column, "<missing>" for missing values,
    "<other>" for the smallest groups past ``MAX_GROUPS``."""
    notes = []
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_NUMERIC_LEVELS:
        binned = pd.qcut(values, 4, duplicates="drop")
        labels = binned.astype(str).where(values.notna(), "<missing>")
        notes.append(f"{values.name!r} is numeric with {values.nunique()} values: grouped into quartiles")
    else:
        labels = values.astype("string").fillna("<missing>").astype(str)
    counts = labels.value_counts()
    if len(counts) > MAX_GROUPS:
        keep = set(counts.index[: MAX_GROUPS - 1])
        labels = labels.where(labels.isin(keep), "<other>")
        notes.append(f"{len(counts) - MAX_GROUPS + 1} smallest groups merged into '<other>'")
    return labels.reset_index(drop=True), notes


def _rate(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def bias_metrics(groups: pd.Series, y: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """One row per group: size, actual and predicted positive rates, recall, accuracy, and the
    group-vs-rest DPPL, DI, RD, AD. ``y`` and ``pred`` are 0/1 arrays."""
    g = groups.to_numpy()
    rows = []
    for name in pd.Series(g).value_counts().index:
        d = g == name
        a = ~d
        q_d, q_a = pred[d].mean(), (pred[a].mean() if a.any() else float("nan"))
        rec_d = _rate((pred[d] & y[d]).sum(), y[d].sum())
        rec_a = _rate((pred[a] & y[a]).sum(), y[a].sum())
        acc_d, acc_a = (pred[d] == y[d]).mean(), ((pred[a] == y[a]).mean() if a.any() else float("nan"))
        rows.append(
            {
                "group": str(name),
                "rows": int(d.sum()),
                "share": float(d.mean()),
                "actual_positive_rate": float(y[d].mean()),
                "predicted_positive_rate": float(q_d),
                "recall": rec_d,
                "accuracy": float(acc_d),
                "DPPL": float(q_a - q_d),
                "DI": _rate(q_d, q_a),
                "RD": rec_a - rec_d,
                "AD": float(acc_a - acc_d),
            }
        )
    table = pd.DataFrame(rows)
    table["flags"] = [_flags(r) for r in table.itertuples()]
    return table


def _flags(r: Any) -> str:
    out = []
    if np.isfinite(r.DI) and not DI_LOW <= r.DI <= DI_HIGH:
        out.append(f"DI outside [{DI_LOW}, {DI_HIGH}]")
    if abs(r.DPPL) > DPPL_LIMIT:
        out.append(f"|DPPL| > {DPPL_LIMIT}")
    if r.rows < SMALL_GROUP:
        out.append(f"fewer than {SMALL_GROUP} rows: noisy")
    return "; ".join(out)


def fairness(
    values: pd.Series, y: np.ndarray, p_pos: np.ndarray, *, threshold: float, positive: Any
) -> FairnessResult:
    """Bias metrics of the predicted labels ``p_pos >= threshold`` across the groups of ``values``."""
    groups, notes = group_labels(values)
    pred = (np.asarray(p_pos) >= threshold).astype(int)
    table = bias_metrics(groups, np.asarray(y).astype(int), pred)
    return FairnessResult(str(values.name), positive, threshold, table, notes)
