"""Linear models: L2-regularised logistic regression (classification) and ridge regression,
on the "linear" recipe (imputed, standardised, one-hot). Fitted with scikit-learn, saved as
plain coefficients (JSON) and predicted with NumPy."""

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
    raw_to_output,
    read_json,
    register,
    write_json,
)
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType


class LinearModel(FittedModel):
    family = "linear"

    def __init__(
        self, coef: np.ndarray, intercept: np.ndarray, task: Task, y_scale: tuple[float, float]
    ) -> None:
        self.coef, self.intercept, self.task, self.y_scale = coef, intercept, task, y_scale

    def predict(self, X: FeatureMatrix) -> np.ndarray:
        return self._predict_num(X.num.astype(np.float64))

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        return self._predict_num(inputs.cached("num_float64", lambda X: X.num.astype(np.float64)))

    def _predict_num(self, num: np.ndarray) -> np.ndarray:
        raw = num @ self.coef.T + self.intercept
        if self.task.problem_type is ProblemType.REGRESSION:
            return raw.reshape(-1) * self.y_scale[1] + self.y_scale[0]
        if self.task.problem_type is ProblemType.BINARY:
            raw = raw.reshape(-1)
        return raw_to_output(raw, self.task.problem_type)

    @property
    def n_iterations(self) -> int:
        return 1

    def feature_importance(self) -> np.ndarray:
        return np.abs(self.coef).sum(axis=0)

    def save(self, directory: Path) -> None:
        write_json(
            directory / "linear.json",
            {"coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "y_scale": list(self.y_scale)},
        )


class LinearLearner(RefitOnRestore, Learner):
    max_iterations = 1

    def __init__(
        self,
        config: dict[str, Any],
        task: Task,
        train: FeatureMatrix,
        y: np.ndarray,
        w: np.ndarray | None,
        valid: FeatureMatrix,
    ) -> None:
        self.config, self.task, self.train, self.y, self.w, self.valid = config, task, train, y, w, valid
        self.iteration = 0
        self._fit_time = 0.0
        self.model: LinearModel | None = None

    def step(self, n: int) -> None:
        if self.iteration >= 1:
            return
        from sklearn.linear_model import LogisticRegression, Ridge

        t0 = time.perf_counter()
        X = self.train.num.astype(np.float64)
        if self.task.problem_type is ProblemType.REGRESSION:
            mu, sd = float(np.mean(self.y)), float(np.std(self.y)) or 1.0
            est = Ridge(alpha=float(self.config["alpha"]), random_state=self.task.seed)
            est.fit(X, (self.y - mu) / sd, sample_weight=self.w)
            coef, intercept, scale = np.atleast_2d(est.coef_), np.atleast_1d(est.intercept_), (mu, sd)
        else:
            est = LogisticRegression(
                C=float(self.config["C"]),
                max_iter=int(self.config.get("max_iter", 100)),
                tol=1e-3,
                random_state=self.task.seed,
            )
            est.fit(X, self.y, sample_weight=self.w)
            coef, intercept, scale = est.coef_, est.intercept_, (0.0, 1.0)
        self.model = LinearModel(coef, intercept, self.task, scale)
        self._valid_pred = self.model.predict(self.valid)
        self.iteration = 1
        self._fit_time += time.perf_counter() - t0

    def valid_predictions(self) -> np.ndarray:
        return self._valid_pred

    def finish(self, best_iteration: int) -> LinearModel:
        return self.model


@register
class LinearFamily(Family):
    name = "linear"
    relative_cost = 0.5
    recipe = "linear"
    priority = 30
    transform_in_portfolio = True
    patience = 1

    def search_space(self, task: Task) -> dict[str, Any]:
        from ray import tune

        if task.problem_type is ProblemType.REGRESSION:
            return {"alpha": tune.loguniform(1e-3, 1e3)}
        return {"C": tune.loguniform(1e-3, 100.0)}

    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        return [{"alpha": 1.0}] if task.problem_type is ProblemType.REGRESSION else [{"C": 1.0}]

    def learner(self, config, task, train, y_train, w_train, valid, y_valid) -> Learner:
        return LinearLearner(config, task, train, y_train, w_train, valid)

    def load(self, directory: Path, task: Task) -> LinearModel:
        d = read_json(directory / "linear.json")
        return LinearModel(np.asarray(d["coef"]), np.asarray(d["intercept"]), task, tuple(d["y_scale"]))
