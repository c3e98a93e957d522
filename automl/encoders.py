"""Column encodings for identifier-like and high-cardinality columns, as plain data.

* **Target encoding**: a level becomes the (smoothed) mean of the target over its training rows;
  one column for regression and binary targets, one per class (one-vs-rest) for multiclass.
  Fitted with scikit-learn's ``TargetEncoder`` (empirical-Bayes smoothing towards the global
  mean; its cross fitting gives every training row an encoding computed without its own label).
  The fitted state is stored as lists of levels and values, so the Predictor holds no pickle.
  Unseen levels get the prior (the global mean), missing values a level of their own.
* **Frequency encoding**: a level becomes its share of the training rows (unseen: 0).

A model must never see an encoding computed from its own validation labels: :func:`fold_columns`
builds, for each validation fold, the encodings fitted on that fold's training rows only (cross
fitted within them), and for refits on all rows the encodings cross fitted over all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from automl.kinds import level_lookup, level_values
from automl.problem import ProblemType

if TYPE_CHECKING:
    from automl.preprocessing import FeatureMatrix

ENCODINGS = ("target", "frequency")
#: the level that stands for a missing value
MISSING = "\x00missing"
#: inner folds of the cross fitting (scikit-learn's default)
CV = 5


def levels_of(s: pd.Series) -> np.ndarray:
    """Level strings of a column as an (n, 1) object array, missing values as :data:`MISSING`."""
    v = level_values(s)
    v[pd.isna(v)] = MISSING
    return v.reshape(-1, 1)


def _outputs(
    y: np.ndarray, problem: ProblemType, classes: list[Any] | None
) -> list[tuple[str, np.ndarray, str]]:
    """(feature-name suffix, target column, scikit-learn target type) per encoded output."""
    if problem is ProblemType.REGRESSION:
        return [("te", np.asarray(y, dtype=float), "continuous")]
    if problem is ProblemType.BINARY:
        return [("te", np.asarray(y, dtype=int), "binary")]
    return [(f"te={c}", (np.asarray(y) == j).astype(int), "binary") for j, c in enumerate(classes or [])]


def _encoder(target_type: str, seed: int) -> Any:
    import sklearn
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import TargetEncoder

    if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 9):
        # before 1.9 the encoder shuffles its own folds (1.9 deprecates that for a cv splitter)
        return TargetEncoder(target_type=target_type, smooth="auto", cv=CV, shuffle=True, random_state=seed)
    inner = KFold(CV, shuffle=True, random_state=seed)
    return TargetEncoder(target_type=target_type, smooth="auto", cv=inner)


def fit_target_step(
    name: str, s: pd.Series, y: np.ndarray, problem: ProblemType, classes: list[Any] | None, seed: int = 0
) -> dict[str, Any]:
    """The preprocessing step of a target-encoded column, fitted on all rows of ``s``."""
    levels = levels_of(s)
    outs, values, prior = [], [], []
    known: list[str] = []
    for suffix, yc, target_type in _outputs(y, problem, classes):
        enc = _encoder(target_type, seed).fit(levels, yc)
        known = [str(v) for v in enc.categories_[0]]
        outs.append(f"{name}#{suffix}")
        values.append([float(v) for v in enc.encodings_[0]])
        prior.append(float(np.atleast_1d(enc.target_mean_)[0]))
    return {
        "type": "target_encoding",
        "name": name,
        "levels": known,
        "values": values,
        "prior": prior,
        "outputs": outs,
    }


def fit_frequency_step(name: str, s: pd.Series) -> dict[str, Any]:
    counts = pd.Series(levels_of(s)[:, 0]).value_counts()
    return {
        "type": "frequency",
        "name": name,
        "levels": [str(k) for k in counts.index],
        "values": [[float(v) for v in counts.to_numpy() / max(len(s), 1)]],
        "prior": [0.0],
        "outputs": [f"{name}#freq"],
    }


def encode(step: dict[str, Any], s: pd.Series) -> np.ndarray:
    """(n, outputs) values of a fitted encoding step; unseen levels get the step's prior."""
    table, index = level_lookup(step["levels"])
    values = levels_of(s)[:, 0]
    if len(values) <= 256:  # a dict lookup per value beats pandas' call overhead on a few rows
        codes = np.fromiter((table.get(v, 0) for v in values), dtype=np.int64, count=len(values))
    else:
        codes = index.get_indexer(values).astype(np.int64) + 1  # -1 (unseen) -> 0, the prior
    out = np.empty((len(s), len(step["values"])), dtype=float)
    for j, (vals, prior) in enumerate(zip(step["values"], step["prior"])):
        lookup = np.concatenate([[prior], np.asarray(vals, dtype=float)])
        out[:, j] = lookup[codes]
    return out


@dataclass(frozen=True)
class EncodingTarget:
    """What a target encoding is fitted on: the encoded target of the training rows."""

    y: np.ndarray
    problem: ProblemType
    classes: list[Any] | None = None
    seed: int = 0


def fit_step(encoding: str, name: str, s: pd.Series, target: EncodingTarget | None) -> dict[str, Any]:
    if encoding == "frequency":
        return fit_frequency_step(name, s)
    if target is None:
        from automl.exceptions import ConfigError

        raise ConfigError(f"column {name!r} is target-encoded: fit the preprocessing with the target")
    return fit_target_step(name, s, target.y, target.problem, target.classes, target.seed)


@dataclass
class FoldColumns:
    """Out-of-fold values of the target-encoded feature columns.

    ``base``: (n, m) values cross fitted over all training rows (refits on all rows train on them).
    ``folds[k]``: (n, m) values for validation fold k: its training rows cross fitted within them,
    its validation rows encoded by an encoder fitted on its training rows.
    ``positions``/``scales``: per recipe, the columns of ``FeatureMatrix.num`` they replace and
    the (mean, std) the recipe standardises them with (``None``: used as they are)."""

    names: list[str]
    base: np.ndarray
    folds: list[np.ndarray]
    positions: dict[str, list[int]]
    scales: dict[str, list[tuple[float, float]] | None]

    def write(self, X: FeatureMatrix, recipe: str, values: np.ndarray) -> None:
        """Overwrite the encoded columns of ``X`` (a matrix of the rows ``values`` belongs to)."""
        pos = self.positions.get(recipe)
        if not pos:
            return
        v = np.asarray(values, dtype=float)
        scale = self.scales.get(recipe)
        if scale is not None:
            mean = np.array([m for m, _ in scale])
            std = np.array([s for _, s in scale])
            v = np.clip((v - mean) / std, -10, 10)
        X.num[:, pos] = v.astype(np.float32)


def fold_columns(
    df: pd.DataFrame,
    columns: list[str],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    problem: ProblemType,
    classes: list[Any] | None,
    *,
    seed: int = 0,
) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """(names, base, per-fold values) of the target encodings of ``columns`` (see FoldColumns)."""
    names: list[str] = []
    base_parts, fold_parts = [], [[] for _ in folds]
    for col in columns:
        levels = levels_of(df[col])
        for suffix, yc, target_type in _outputs(y, problem, classes):
            names.append(f"{col}#{suffix}")
            base_parts.append(_encoder(target_type, seed).fit_transform(levels, yc)[:, 0])
            for k, (tr, va) in enumerate(folds):
                v = np.full(len(y), np.nan)
                enc = _encoder(target_type, seed)
                v[tr] = enc.fit_transform(levels[tr], yc[tr])[:, 0]
                v[va] = enc.transform(levels[va])[:, 0]
                rest = np.isnan(v)  # rows in neither part of the fold (time-ordered splits)
                v[rest] = enc.transform(levels[rest])[:, 0] if rest.any() else v[rest]
                fold_parts[k].append(v)
    base = np.column_stack(base_parts) if base_parts else np.zeros((len(y), 0))
    per_fold = [np.column_stack(p) if p else np.zeros((len(y), 0)) for p in fold_parts]
    return names, base, per_fold
