"""CatBoost: ordered boosting with native categorical features (target statistics on the
category codes), on CPU or GPU. Trained in chunks by continuation (``init_model``); saved in
CatBoost's own ``.cbm`` format."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.models.base import (
    Family,
    FittedModel,
    Learner,
    ModelInput,
    Task,
    raw_to_output,
    read_json,
    register,
    write_json,
)
from automl.models.gbdt import patience_rounds, robust_defaults, robust_scale, robust_space, rounds_per_step
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType

#: CatBoost's trees are slower than LightGBM's: cap the count (early stopping usually ends sooner)
MAX_TREES = 3000


def frame(X: FeatureMatrix) -> pd.DataFrame:
    """CatBoost wants categorical columns as integers: numbers first, then codes."""
    num = pd.DataFrame(X.num, columns=[f"n{i}" for i in range(X.num.shape[1])])
    cat = pd.DataFrame(X.cat, columns=[f"c{i}" for i in range(X.cat.shape[1])])
    return pd.concat([num, cat], axis=1)


def pool(X: FeatureMatrix) -> Any:
    """A prediction pool straight from the arrays (no DataFrame): numbers as float32, category
    codes as the strings CatBoost makes of integer categories, names as in :func:`frame`. Building
    it costs ~0.07 ms for one row against ~4.5 ms through a DataFrame, with the same predictions."""
    from catboost import FeaturesData, Pool

    n_num, n_cat = X.num.shape[1], X.cat.shape[1]
    cat = None
    if n_cat:
        labels = np.array([str(i) for i in range(int(X.cat.max(initial=0)) + 1)], dtype=object)
        cat = labels[X.cat]
    data = FeaturesData(
        num_feature_data=np.ascontiguousarray(X.num, dtype=np.float32) if n_num else None,
        cat_feature_data=cat,
        num_feature_names=[f"n{i}" for i in range(n_num)] if n_num else None,
        cat_feature_names=[f"c{i}" for i in range(n_cat)] if n_cat else None,
    )
    return Pool(data)


def cat_features(X: FeatureMatrix) -> list[int]:
    return list(range(X.num.shape[1], X.num.shape[1] + X.cat.shape[1]))


def cb_params(config: dict[str, Any], task: Task) -> dict[str, Any]:
    if task.problem_type is ProblemType.BINARY:
        loss = "Logloss"
    elif task.problem_type is ProblemType.MULTICLASS:
        loss = "MultiClass"
    else:
        loss = "RMSE"
    # one-hot for low-cardinality categories and combinations of at most 2 features: target
    # statistics over many feature combinations made CatBoost 60x slower on car, and no better
    params = {
        "loss_function": loss,
        "thread_count": task.num_threads,
        "random_seed": task.seed,
        "verbose": False,
        "allow_writing_files": False,
        "one_hot_max_size": 10,
        "max_ctr_complexity": 2,
    }
    params.update({k: v for k, v in config.items() if k not in ("n_estimators", "robust_delta", "objective")})
    if config.get("objective") == "Huber":
        params["loss_function"] = "Huber"  # its delta is set from the training target by the family
    if task.use_gpu:
        params["task_type"] = "GPU"
    return params


class CatBoostModel(FittedModel):
    family = "catboost"

    def __init__(self, model: Any, task: Task, n_trees: int | None = None) -> None:
        self.model, self.task = model, task
        self._n = n_trees or model.tree_count_

    def predict(self, X: FeatureMatrix) -> np.ndarray:
        raw = self.model.predict(frame(X), prediction_type="RawFormulaVal", ntree_end=self._n, thread_count=1)
        return raw_to_output(raw, self.task.problem_type)

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        raw = self.model.predict(
            inputs.cached("catboost_pool", pool),
            prediction_type="RawFormulaVal",
            ntree_end=self._n,
            thread_count=threads,
        )
        return raw_to_output(raw, self.task.problem_type)

    @property
    def n_iterations(self) -> int:
        return self._n

    def feature_importance(self) -> np.ndarray:
        return np.asarray(self.model.get_feature_importance())

    def save(self, directory: Path) -> None:
        model = self.model
        if self._n < model.tree_count_:
            model = model.copy()
            model.shrink(self._n)
        model.save_model(str(directory / "model.cbm"), format="cbm")


class _Deadline:
    """CatBoost callback: stop adding trees once the trial's deadline has passed."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def after_iteration(self, info: Any) -> bool:
        return self.deadline is None or time.time() < self.deadline


class CatBoostLearner(Learner):
    """Trains a fold in one CatBoost call, then replays its trees step by step.

    Continuing a CatBoost model in chunks (``init_model``) loses much of its accuracy (its
    categorical statistics do not carry over: 0.916 vs 0.974 accuracy on a fold of car), so
    the whole fold trains at the first step with CatBoost's own early stopping on the fold's
    validation rows; later steps only move the cut-off through the trained trees, so the
    lockstep driver still sees (and picks the best of) every step.
    """

    def __init__(
        self,
        params: dict[str, Any],
        task: Task,
        train: FeatureMatrix,
        y: np.ndarray,
        w: np.ndarray | None,
        valid: FeatureMatrix,
        y_valid: np.ndarray,
        max_iterations: int,
        patience: int,
    ) -> None:
        from catboost import Pool

        t0 = time.perf_counter()
        self.params, self.task, self.max_iterations, self.patience = params, task, max_iterations, patience
        self.pool = Pool(frame(train), label=y, weight=w, cat_features=cat_features(train))
        self.valid = Pool(frame(valid), label=y_valid, cat_features=cat_features(valid))
        self.model: Any = None
        self.deadline: float | None = None
        self.iteration = 0
        self._staged: list[np.ndarray] = []
        self._step = 1
        self._fit_time = time.perf_counter() - t0

    def _train(self, step: int) -> None:
        from catboost import CatBoostClassifier, CatBoostRegressor

        cls = CatBoostRegressor if self.task.problem_type is ProblemType.REGRESSION else CatBoostClassifier
        est = cls(
            iterations=self.max_iterations,
            od_type="Iter",
            od_wait=self.patience,
            use_best_model=False,
            **self.params,
        )
        est.fit(self.pool, eval_set=self.valid, callbacks=[_Deadline(self.deadline)])
        self.model = est
        self.max_iterations = max(1, int(est.tree_count_))
        # raw predictions after every `step` trees, in one pass over the trees
        self._staged = list(
            est.staged_predict(
                self.valid,
                prediction_type="RawFormulaVal",
                eval_period=step,
                thread_count=self.params["thread_count"],
            )
        )
        self._step = step

    def step(self, n: int) -> None:
        t0 = time.perf_counter()
        if self.model is None:
            self._train(n)
        self.iteration = min(self.max_iterations, self.iteration + n)
        self._fit_time += time.perf_counter() - t0

    def valid_predictions(self) -> np.ndarray:
        # staged_predict yields after trees step, 2*step, ..., and after the last tree
        idx = min(len(self._staged) - 1, max(0, -(-self.iteration // self._step) - 1))
        return raw_to_output(self._staged[idx], self.task.problem_type)

    supports_state = True

    def get_state(self, directory: Path) -> None:
        if self.model is not None:
            self.model.save_model(str(directory / "model.cbm"), format="cbm")
        write_json(
            directory / "state.json",
            {"iteration": self.iteration, "step": self._step, "trained": self.model is not None},
        )

    def set_state(self, directory: Path) -> None:
        st = read_json(directory / "state.json")
        if st["trained"]:
            from catboost import CatBoost

            self.model = CatBoost()
            self.model.load_model(str(directory / "model.cbm"), format="cbm")
            self.max_iterations = max(1, int(self.model.tree_count_))
            self._staged = list(
                self.model.staged_predict(
                    self.valid,
                    prediction_type="RawFormulaVal",
                    eval_period=st["step"],
                    thread_count=self.params["thread_count"],
                )
            )
            self._step = st["step"]
        self.iteration = int(st["iteration"])

    def finish(self, best_iteration: int) -> CatBoostModel:
        return CatBoostModel(self.model, self.task, max(1, min(best_iteration, self.model.tree_count_)))


@register
class CatBoostFamily(Family):
    name = "catboost"
    refit_scales_iterations = True
    relative_cost = 8.0
    recipe = "tree"
    transform_in_portfolio = True
    priority = 55  # strong but ~10x LightGBM's cost on CPU: after the cheap families
    supports_gpu = True

    def search_space(self, task: Task) -> dict[str, Any]:
        from ray import tune

        return {
            "learning_rate": tune.loguniform(0.02, 0.3),
            "depth": tune.randint(4, 9),
            "l2_leaf_reg": tune.loguniform(1.0, 30.0),
            "random_strength": tune.loguniform(0.1, 10.0),
            "bagging_temperature": tune.uniform(0.0, 1.0),
            "border_count": tune.choice([64, 128, 254]),
            "max_ctr_complexity": tune.choice([1, 2, 3]),
            **robust_space(task, ["RMSE", "Huber"]),
        }

    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        return [
            {
                "learning_rate": 0.1,
                "depth": 6,
                "l2_leaf_reg": 3.0,
                "random_strength": 1.0,
                "bagging_temperature": 1.0,
                "border_count": 254,
                **robust_defaults(task, "RMSE"),
            }
        ]

    def learner(self, config, task, train, y_train, w_train, valid, y_valid) -> Learner:
        params = cb_params(config, task)
        if params["loss_function"] == "Huber":
            params["loss_function"] = f"Huber:delta={robust_scale(config, y_train):.6g}"
        return CatBoostLearner(
            params,
            task,
            train,
            y_train,
            w_train,
            valid,
            y_valid,
            int(config.get("n_estimators", MAX_TREES)),
            self.patience_for(config),
        )

    def step_size(self, config, task) -> int:
        return rounds_per_step(config)

    def patience_for(self, config) -> int:
        return patience_rounds(config)

    def load(self, directory: Path, task: Task) -> CatBoostModel:
        from catboost import CatBoost

        model = CatBoost()
        model.load_model(str(directory / "model.cbm"), format="cbm")
        return CatBoostModel(model, task)
