"""Validation splits: holdout, k-fold (stratified for classification), time-ordered, grouped.

All are seeded. ``Folds.assignment`` gives each row the index of the fold in which it is a
validation row (-1: training only, e.g. the earliest rows of a time-ordered split); it is saved
in the run directory so a split can be inspected and reproduced.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from automl.exceptions import ConfigError, DataError

STRATEGIES = ("auto", "holdout", "kfold")


@dataclass
class Folds:
    kind: str  # holdout | kfold | time-holdout | time-kfold | group-holdout | group-kfold | user
    folds: list[tuple[np.ndarray, np.ndarray]]
    n_rows: int
    seed: int
    column: str | None = None  # the time or group column of a time-ordered or grouped split

    @property
    def assignment(self) -> np.ndarray:
        a = np.full(self.n_rows, -1, dtype=np.int32)
        for i, (_, va) in enumerate(self.folds):
            a[va] = i
        return a

    @property
    def oof_mask(self) -> np.ndarray:
        """Rows that get an out-of-fold prediction."""
        return self.assignment >= 0

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "n_folds": len(self.folds),
            "seed": self.seed,
            "column": self.column,
            "validation_rows": [int(len(v)) for _, v in self.folds],
            "training_rows": [int(len(t)) for t, _ in self.folds],
        }

    def to_dict(self) -> dict:
        return {**self.describe(), "assignment": self.assignment.tolist()}


def make_folds(
    n_rows: int,
    *,
    strategy: str,
    n_folds: int = 5,
    holdout_fraction: float = 0.2,
    y: np.ndarray | None = None,
    time_values: pd.Series | None = None,
    groups: pd.Series | None = None,
    seed: int = 0,
) -> Folds:
    """Build the folds. ``y`` (encoded classes) turns on stratification."""
    if strategy not in ("holdout", "kfold"):
        raise ConfigError(f"validation strategy must be one of {list(STRATEGIES)}; got {strategy!r}")
    if strategy == "kfold" and n_folds < 2:
        raise ConfigError(f"n_folds must be at least 2 for k-fold validation; got {n_folds}")
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction must be between 0 and 1; got {holdout_fraction}")
    idx = np.arange(n_rows)
    if time_values is not None:
        folds = _time_folds(_sortable_times(time_values), strategy, n_folds, holdout_fraction, seed)
        folds.column = getattr(time_values, "name", None)
        return folds
    if groups is not None:
        folds = _group_folds(np.asarray(groups), y, strategy, n_folds, holdout_fraction, seed)
        folds.column = getattr(groups, "name", None)
        return folds
    stratify = y if y is not None and np.bincount(y).min() >= 2 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        if strategy == "holdout":
            tr, va = train_test_split(idx, test_size=holdout_fraction, random_state=seed, stratify=stratify)
            return Folds("holdout", [(np.sort(tr), np.sort(va))], n_rows, seed)
        splitter = (
            StratifiedKFold(n_folds, shuffle=True, random_state=seed)
            if stratify is not None
            else KFold(n_folds, shuffle=True, random_state=seed)
        )
        folds = [(tr, va) for tr, va in splitter.split(idx, stratify)]
    return Folds("kfold", folds, n_rows, seed)


def _time_folds(t: np.ndarray, strategy: str, n_folds: int, frac: float, seed: int) -> Folds:
    """Forward chaining: validation rows always come after every training row in time."""
    order = np.argsort(t, kind="stable")
    ts = t[order]
    if pd.isna(ts).any():
        raise DataError(
            "the time column has missing values; fill or drop those rows before a time-ordered split"
        )
    n = len(t)
    n_val_blocks = 1 if strategy == "holdout" else n_folds
    frac_each = frac if strategy == "holdout" else 1.0 / (n_folds + 1)
    starts = [int(round(n * (1 - frac_each * (n_val_blocks - k)))) for k in range(n_val_blocks)] + [n]
    folds = []
    for k in range(n_val_blocks):
        lo, hi = _tie_safe(ts, starts[k]), _tie_safe(ts, starts[k + 1]) if starts[k + 1] < n else n
        if lo <= 0 or hi <= lo:
            raise DataError(
                "the time column has too few distinct times to build the time-ordered folds; "
                "use fewer folds or a holdout"
            )
        folds.append((np.sort(order[:lo]), np.sort(order[lo:hi])))
    return Folds("time-" + strategy, folds, n, seed)


def _sortable_times(values: pd.Series) -> np.ndarray:
    """Times as numbers that sort in time order: numbers as they are, dates (also dates held as text,
    which do not sort as text unless ISO formatted) as nanoseconds since the epoch (UTC)."""
    s = pd.Series(values)
    name = s.name if s.name is not None else "time"
    if s.isna().any():
        raise DataError(
            f"the time column {name!r} has missing values; fill or drop those rows before a "
            "time-ordered split"
        )
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float)
    if not pd.api.types.is_datetime64_any_dtype(s):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(s.astype(str), errors="coerce", format="mixed", utc=True)
        if parsed.isna().any():
            bad = s[parsed.isna()].iloc[0]
            raise DataError(f"the time column {name!r} holds {bad!r}, which is neither a date nor a number")
        s = parsed
    if s.dt.tz is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.astype("datetime64[ns]").to_numpy().astype(np.int64)


def _tie_safe(ts: np.ndarray, pos: int) -> int:
    """Move a cut back so rows with equal times fall on the same side."""
    while 0 < pos < len(ts) and ts[pos] == ts[pos - 1]:
        pos -= 1
    return pos


def _group_folds(
    g: np.ndarray, y: np.ndarray | None, strategy: str, n_folds: int, frac: float, seed: int
) -> Folds:
    n = len(g)
    idx = np.arange(n)
    if pd.isna(g).any():
        raise DataError("the group column has missing values; fill them before a grouped split")
    n_groups = len(pd.unique(g))
    if strategy == "holdout":
        tr, va = next(GroupShuffleSplit(1, test_size=frac, random_state=seed).split(idx, groups=g))
        return Folds("group-holdout", [(np.sort(tr), np.sort(va))], n, seed)
    if n_groups < n_folds:
        raise DataError(
            f"the group column has {n_groups} groups, fewer than the {n_folds} folds; use fewer folds"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if y is not None:
            splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
            folds = list(splitter.split(idx, y, groups=g))
        else:
            folds = list(GroupKFold(n_folds, shuffle=True, random_state=seed).split(idx, groups=g))
    return Folds("group-kfold", folds, n, seed)
