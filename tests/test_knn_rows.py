"""k-NN's few-row path (the search tree queried directly, automl.models.knn) gives scikit-learn's
own predictions: both weightings, classification (classes missing from the training rows too) and
regression, rows that repeat a training row (distance 0), one-hot ties and missing neighbours'
classes; larger calls and brute-force models keep scikit-learn's path."""

from __future__ import annotations

import numpy as np
import pytest

from automl.models.base import Task
from automl.models.knn import FEW_ROWS, KNNModel
from automl.problem import ProblemType


def task(problem: ProblemType, n_classes: int = 0) -> Task:
    return Task(problem_type=problem, n_classes=n_classes, n_rows=400, n_features=6, seed=0)


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    X[:, 3:] = rng.integers(0, 2, size=(400, 3))  # one-hot-like columns: many equal distances
    return X, rng.integers(0, 4, 400)


def queries(X: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    Q = rng.normal(size=(FEW_ROWS, X.shape[1])).astype(np.float32)
    Q[:, 3:] = rng.integers(0, 2, size=(FEW_ROWS, 3))
    Q[0] = X[5]  # a training row: distance 0
    Q[1, :3] = 0.0
    return Q


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classification_matches_scikit_learn(weights):
    X, y = data()
    y = np.where(y == 2, 3, y)  # class 2 of 5 never seen: its column stays 0
    model = KNNModel(X, y, {"n_neighbors": 7, "weights": weights}, task(ProblemType.MULTICLASS, 5))
    assert model.est._fit_method in ("kd_tree", "ball_tree")
    Q = queries(X)
    for n in (1, FEW_ROWS):
        got = model._few_rows(Q[:n])
        want = np.zeros((n, 5))
        want[:, model.est.classes_] = model.est.predict_proba(Q[:n])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(model._predict_num(Q[:n]), want)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regression_matches_scikit_learn(weights):
    X, _ = data()
    y = X[:, 0] * 3 + np.random.default_rng(2).normal(size=len(X))
    model = KNNModel(X, y, {"n_neighbors": 5, "weights": weights}, task(ProblemType.REGRESSION))
    Q = queries(X)
    np.testing.assert_allclose(model._few_rows(Q), model.est.predict(Q), rtol=1e-12, atol=0)


def test_larger_calls_and_brute_force_models_keep_scikit_learns_path(monkeypatch):
    X, y = data()
    model = KNNModel(X, y, {"n_neighbors": 7, "weights": "distance"}, task(ProblemType.MULTICLASS, 4))
    calls = []
    monkeypatch.setattr(model, "_few_rows", lambda Q: calls.append(len(Q)))
    model._predict_num(np.repeat(queries(X), 2, axis=0))  # 2 x FEW_ROWS rows: not few
    assert calls == []
    monkeypatch.undo()
    model.est._fit_method = "brute"
    assert model._few_rows(queries(X)) is None
