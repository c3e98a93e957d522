"""Stacking: the predictions of one layer of models become the features of the next.

A layer-2 model sees, for each training row, the *out-of-fold* predictions of the layer-1
models (and optionally the original features), and is trained with the *same folds*: the layer-2
model of fold k never trains on fold k's rows, and the layer-1 predictions of fold k's rows come
from layer-1 models that never saw them either.

Features per layer-1 member: binary -> the log-odds of the positive class; multiclass -> the log
of each class probability; regression -> the prediction.
"""

from __future__ import annotations

import numpy as np

from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType

STACK_RECIPE = "stack"
_EPS = 1e-6


def member_features(pred: np.ndarray, problem: ProblemType) -> np.ndarray:
    if problem is ProblemType.BINARY:
        p = np.clip(pred[:, 1], _EPS, 1 - _EPS)
        return np.log(p / (1 - p))[:, None]
    if problem is ProblemType.MULTICLASS:
        return np.log(np.clip(pred, _EPS, 1.0))
    return np.asarray(pred, dtype=float)[:, None]


def stack_features(
    preds: list[np.ndarray], names: list[str], problem: ProblemType, base: FeatureMatrix | None = None
) -> FeatureMatrix:
    """The next layer's input: previous-layer predictions, then (optionally) the base features."""
    cols, col_names = [], []
    for pred, name in zip(preds, names):
        f = member_features(pred, problem)
        cols.append(f)
        col_names += [f"{name}:{j}" for j in range(f.shape[1])]
    num = np.hstack(cols).astype(np.float32)
    if base is None:
        return FeatureMatrix(num, np.zeros((len(num), 0), np.int32), col_names, [], [])
    return FeatureMatrix(
        np.hstack([num, base.num]).astype(np.float32),
        base.cat,
        col_names + base.num_names,
        base.cat_names,
        base.cat_sizes,
    )


def stack_cost_s(member_fit_s: list[float], n_folds: int) -> float:
    """Expected seconds of the stack layer over members whose bags trained for ``member_fit_s``
    (all folds) with ``n_folds``-fold validation: the nested out-of-fold features take k(k-1)/2
    fits per member on (k-2)/k of the rows, then the layer itself (10 s, and 30 % of margin)."""
    k = n_folds
    return sum(member_fit_s) / k * (k - 2) / k * k * (k - 1) / 2 * 1.3 + 10.0
