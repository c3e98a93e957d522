"""k-nearest neighbours on the "linear" recipe (standardised numbers, one-hot categories).
Saved as NumPy arrays (training matrix and targets); the search index is rebuilt on load."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from automl.models.base import (
    Family,
    FittedModel,
    Learner,
    ModelInput,
    RefitOnRestore,
    Task,
    read_json,
    register,
    write_json,
)
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType

#: above this many training rows k-NN is left out of the search (slow queries, large artifacts)
MAX_ROWS = 200_000
#: calls of at most this many rows query scikit-learn's search tree directly, without the checks
#: and joblib set-up of its ``predict_proba``: one row of wine_quality's 60 s k-NN fold model
#: (4,157 training rows, 14 features, a k-d tree) 0.27 ms against 0.48 ms
FEW_ROWS = 8


class KNNModel(FittedModel):
    family = "knn"

    def __init__(self, X: np.ndarray, y: np.ndarray, config: dict[str, Any], task: Task) -> None:
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        self.X, self.y, self.config, self.task = X, y, config, task
        k = int(min(config["n_neighbors"], len(X)))
        kw = {"n_neighbors": k, "weights": config["weights"], "algorithm": "auto", "n_jobs": 1}
        if task.problem_type is ProblemType.REGRESSION:
            self.est = KNeighborsRegressor(**kw).fit(X, y)
        else:
            self.est = KNeighborsClassifier(**kw).fit(X, y)

    def predict(self, X: FeatureMatrix) -> np.ndarray:
        return self._predict_num(X.num.astype(np.float32))

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        Xq = inputs.cached("num_float32", lambda X: X.num.astype(np.float32))
        few = self._few_rows(Xq) if len(Xq) <= FEW_ROWS else None
        if few is not None:  # a tree query runs no OpenMP threads
            return few
        self.est.n_jobs = threads  # read by kneighbors at predict time; put back after the call
        try:
            # scikit-learn's brute-force search runs OpenMP threads on every core: a one-row query
            # took 5.7 ms that way on a busy 2-core machine, 0.36 ms with one thread
            with _openmp_limit(threads):
                return self._library_predict(Xq)
        finally:
            self.est.n_jobs = 1

    def _predict_num(self, Xq: np.ndarray) -> np.ndarray:
        few = self._few_rows(Xq) if len(Xq) <= FEW_ROWS else None
        return self._library_predict(Xq) if few is None else few

    def _library_predict(self, Xq: np.ndarray) -> np.ndarray:
        """scikit-learn's own predictions (probabilities over every class of the task)."""
        if self.task.problem_type is ProblemType.REGRESSION:
            return self.est.predict(Xq).astype(float)
        proba = np.zeros((len(Xq), self.task.n_classes))
        proba[:, self.est.classes_] = self.est.predict_proba(Xq)
        return proba

    def _few_rows(self, Xq: np.ndarray) -> np.ndarray | None:
        """scikit-learn's predictions for a few rows, from its own search tree queried directly
        (the same neighbours, weights and votes as its ``predict`` / ``predict_proba``), or None
        when the model searches by brute force."""
        est = self.est
        if getattr(est, "_fit_method", None) not in ("kd_tree", "ball_tree"):
            return None
        dist, ind = est._tree.query(Xq, k=est.n_neighbors)
        if self.config["weights"] == "distance":  # scikit-learn's _get_weights
            with np.errstate(divide="ignore"):
                w = 1.0 / dist
            exact = np.isinf(w)
            rows = exact.any(axis=1)
            w[rows] = exact[rows]  # a training row at distance 0 takes all the weight
        else:
            w = np.ones_like(dist)
        if self.task.problem_type is ProblemType.REGRESSION:
            y = est._y[ind]
            return (
                y.mean(axis=1)
                if self.config["weights"] != "distance"
                else (y * w).sum(axis=1) / w.sum(axis=1)
            ).astype(float)
        votes = np.zeros((len(Xq), len(est.classes_)))
        for i in range(ind.shape[1]):  # as predict_proba: one neighbour rank at a time
            votes[np.arange(len(Xq)), est._y[ind[:, i]]] += w[:, i]
        proba = np.zeros((len(Xq), self.task.n_classes))
        proba[:, est.classes_] = votes / votes.sum(axis=1, keepdims=True)
        return proba

    @property
    def n_iterations(self) -> int:
        return 1

    def save(self, directory: Path) -> None:
        np.save(directory / "X.npy", self.X, allow_pickle=False)
        np.save(directory / "y.npy", self.y, allow_pickle=False)
        write_json(directory / "knn.json", self.config)


_CONTROLLER: list[Any] = []


def _openmp_limit(threads: int) -> Any:
    """Caps the OpenMP threads of the loaded libraries for a ``with`` block (restored after).
    The controller, which looks the libraries up, is built once: building it per call cost ~14 ms."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=threads, user_api="openmp")


class KNNLearner(RefitOnRestore, Learner):
    max_iterations = 1

    def __init__(
        self, config: dict[str, Any], task: Task, train: FeatureMatrix, y: np.ndarray, valid: FeatureMatrix
    ) -> None:
        self.config, self.task, self.train, self.y, self.valid = config, task, train, y, valid
        self.iteration = 0
        self._fit_time = 0.0

    def step(self, n: int) -> None:
        if self.iteration >= 1:
            return
        t0 = time.perf_counter()
        self.model = KNNModel(self.train.num.astype(np.float32), self.y, self.config, self.task)
        self._valid_pred = self.model.predict(self.valid)
        self.iteration = 1
        self._fit_time += time.perf_counter() - t0

    def valid_predictions(self) -> np.ndarray:
        return self._valid_pred

    def finish(self, best_iteration: int) -> KNNModel:
        return self.model


@register
class KNNFamily(Family):
    name = "knn"
    relative_cost = 3.0
    recipe = "linear"
    priority = 80
    patience = 1

    def applies_to(self, task: Task) -> bool:
        return super().applies_to(task) and task.n_rows <= MAX_ROWS

    def search_space(self, task: Task) -> dict[str, Any]:
        from ray import tune

        return {
            "n_neighbors": tune.lograndint(3, max(4, min(100, task.n_rows // 10))),
            "weights": tune.choice(["uniform", "distance"]),
        }

    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        return [{"n_neighbors": 15, "weights": "distance"}]

    def learner(self, config, task, train, y_train, w_train, valid, y_valid) -> Learner:
        return KNNLearner(config, task, train, y_train, valid)

    def load(self, directory: Path, task: Task) -> KNNModel:
        X = np.load(directory / "X.npy", allow_pickle=False)
        y = np.load(directory / "y.npy", allow_pickle=False)
        return KNNModel(X, y, read_json(directory / "knn.json"), task)
