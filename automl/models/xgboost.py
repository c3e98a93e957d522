"""XGBoost: histogram gradient boosting with native categorical splits, on CPU or CUDA.
Saved as XGBoost's UBJSON format."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from automl.models.base import (
    Family,
    FittedModel,
    JointPredictor,
    Learner,
    ModelInput,
    Task,
    raw_to_output,
    read_json,
    register,
    write_json,
)
from automl.models.compiled import COMPILED_ROWS, n_outputs
from automl.models.gbdt import (
    MAX_ROUNDS,
    patience_rounds,
    robust_defaults,
    robust_scale,
    robust_space,
    rounds_per_step,
)
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType

#: calls with at most this many rows go through the NumPy table of a bag's trees (the table costs
#: one gather per tree level for all rows and trees; XGBoost's own call wins on larger batches)
TABLE_ROWS = 8
#: the table's build time per tree (UBJSON dumps and reading, the probe check, the table), on the
#: 2-core test machine: 0.09-0.32 ms a tree over five 60 s fits' bags (wine_quality's 16,100
#: shallow 7-class trees 1.50-1.64 s; california_housing's 2,200 depth-10 trees, 1.8 M nodes,
#: 0.53-0.71 s). Through JSON text it was 0.17-0.38 ms (the latter bag: 2.6 s). The estimate stays
#: above the highest figure: one under the truth let a fit measure its default first and run out
#: of time for its refit options
TABLE_S_PER_TREE = 4e-4


def xgb_params(config: dict[str, Any], task: Task) -> dict[str, Any]:
    if task.problem_type is ProblemType.BINARY:
        obj = {"objective": "binary:logistic"}
    elif task.problem_type is ProblemType.MULTICLASS:
        obj = {"objective": "multi:softprob", "num_class": task.n_classes}
    else:
        obj = {"objective": "reg:squarederror"}
    params = {
        **obj,
        "tree_method": "hist",
        "nthread": task.num_threads,
        "seed": task.seed,
        "max_cat_to_onehot": 8,
        "verbosity": 0,
    }
    params.update({k: v for k, v in config.items() if k not in ("n_estimators", "robust_delta")})
    if task.use_gpu:
        params["device"] = "cuda"
    return params


def feature_types(X: FeatureMatrix) -> list[str]:
    return ["q"] * X.num.shape[1] + ["c"] * X.cat.shape[1]


class XGBoostModel(FittedModel):
    family = "xgboost"
    native_file = "model.ubj"
    joint_rows = TABLE_ROWS  # the table of every fold's trees: a few rows only

    def __init__(self, booster: Any, task: Task) -> None:
        self.booster, self.task = booster, task
        self.booster.set_param({"nthread": 1})
        self._threads = 1

    def predict(self, X: FeatureMatrix) -> np.ndarray:
        return self.predict_dense(X.dense(), 1)

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        return self.predict_dense(inputs.dense(), threads)

    def predict_dense(self, dense: np.ndarray, threads: int) -> np.ndarray:
        if threads != self._threads:  # a booster parameter: changed only when the call size asks
            self.booster.set_param({"nthread": threads})
            self._threads = threads
        if self.compiled is not None and len(dense) >= COMPILED_ROWS:
            raw = self.compiled.margins(dense, threads)
        else:
            raw = self.booster.inplace_predict(dense, predict_type="margin")
        return raw_to_output(raw, self.task.problem_type)

    @classmethod
    def joint_predictor(cls, models: list[FittedModel]) -> JointPredictor | None:
        from automl.models.xgboost_trees import XGBoostTable

        table = XGBoostTable.build([m.booster for m in models], n_outputs(models[0]))  # type: ignore[attr-defined]
        return None if table is None else _TablePredictor(table, models[0].task)

    @classmethod
    def joint_setup_s(cls, models: list[FittedModel]) -> float:
        return sum(m.n_iterations for m in models) * n_outputs(models[0]) * TABLE_S_PER_TREE

    @classmethod
    def joint_once_s(cls) -> float:
        from automl.models.xgboost_trees import walk_pending_s

        return walk_pending_s()  # the first table of a process compiles the few-row walk

    @property
    def n_iterations(self) -> int:
        return self.booster.num_boosted_rounds()

    def feature_importance(self) -> np.ndarray:
        scores = self.booster.get_score(importance_type="total_gain")
        n = len(self.booster.feature_names or []) or self.booster.num_features()
        return np.array(
            [
                scores.get(f"f{i}", scores.get(name, 0.0))
                for i, name in enumerate(self.booster.feature_names or [f"f{i}" for i in range(n)])
            ]
        )

    def contributions(self, X: FeatureMatrix) -> np.ndarray:
        import xgboost as xgb

        d = xgb.DMatrix(X.dense(), feature_types=feature_types(X), enable_categorical=True)
        return self.booster.predict(d, pred_contribs=True)

    def save(self, directory: Path) -> None:
        self.booster.save_model(str(directory / "model.ubj"))


class _TablePredictor(JointPredictor):
    """Up to TABLE_ROWS rows: every tree of a bag's boosters in one compiled walk or NumPy pass (see
    :mod:`automl.models.xgboost_trees`: a one-row call of ten 270-tree fold models took 1-2 ms
    per booster through XGBoost on the busy 2-core test machine)."""

    def __init__(self, table: Any, task: Task) -> None:
        self.table, self.task = table, task

    def predict(self, inputs: ModelInput, threads: int) -> list[np.ndarray] | None:
        if inputs.n_rows > TABLE_ROWS:  # the caller asks only for calls of up to joint_rows rows
            return None
        return [raw_to_output(m, self.task.problem_type) for m in self.table.margins(inputs.dense())]


class XGBoostLearner(Learner):
    def __init__(
        self,
        params: dict[str, Any],
        task: Task,
        train: FeatureMatrix,
        y: np.ndarray,
        w: np.ndarray | None,
        valid: FeatureMatrix,
        max_iterations: int,
    ) -> None:
        import xgboost as xgb

        t0 = time.perf_counter()
        ft = feature_types(train)
        self.task, self.max_iterations = task, max_iterations
        self.dtrain = xgb.DMatrix(train.dense(), label=y, weight=w, feature_types=ft, enable_categorical=True)
        shape = (
            (valid.n_rows, task.n_classes) if task.problem_type is ProblemType.MULTICLASS else (valid.n_rows,)
        )
        # a zero base margin makes margins of a range of trees additive; the intercept is added once
        self.dvalid_zero = xgb.DMatrix(
            valid.dense(),
            feature_types=ft,
            enable_categorical=True,
            base_margin=np.zeros(shape, dtype=np.float32),
        )
        self.dvalid = xgb.DMatrix(valid.dense(), feature_types=ft, enable_categorical=True)
        self.params = params
        self.booster = xgb.Booster(params, [self.dtrain])
        self._raw_sum: np.ndarray | None = None
        self.iteration = 0
        self._fit_time = time.perf_counter() - t0

    def step(self, n: int) -> None:
        n = min(n, self.max_iterations - self.iteration)
        t0 = time.perf_counter()
        start = self.iteration
        for _ in range(n):
            self.booster.update(self.dtrain, self.iteration)
            self.iteration += 1
        if self.iteration > start:
            part = self.booster.predict(
                self.dvalid_zero, output_margin=True, iteration_range=(start, self.iteration)
            )
            if self._raw_sum is None:
                first = self.booster.predict(self.dvalid, output_margin=True, iteration_range=(0, 1))
                intercept = first - self.booster.predict(
                    self.dvalid_zero, output_margin=True, iteration_range=(0, 1)
                )
                self._raw_sum = intercept + part
            else:
                self._raw_sum = self._raw_sum + part
        self._fit_time += time.perf_counter() - t0

    def valid_predictions(self) -> np.ndarray:
        return raw_to_output(self._raw_sum, self.task.problem_type)

    supports_state = True

    def get_state(self, directory: Path) -> None:
        self.booster.save_model(str(directory / "model.ubj"))
        np.save(directory / "raw.npy", self._raw_sum, allow_pickle=False)
        write_json(directory / "state.json", {"iteration": self.iteration})

    def set_state(self, directory: Path) -> None:
        import xgboost as xgb

        self.booster = xgb.Booster(self.params, [self.dtrain], model_file=str(directory / "model.ubj"))
        self._raw_sum = np.load(directory / "raw.npy", allow_pickle=False)
        self.iteration = int(read_json(directory / "state.json")["iteration"])

    def finish(self, best_iteration: int) -> XGBoostModel:
        return XGBoostModel(self.booster[: max(best_iteration, 1)], self.task)


@register
class XGBoostFamily(Family):
    name = "xgboost"
    refit_scales_iterations = True
    relative_cost = 1.2
    recipe = "tree"
    priority = 20
    transform_in_portfolio = True
    supports_gpu = True

    def search_space(self, task: Task) -> dict[str, Any]:
        from ray import tune

        return {
            "learning_rate": tune.loguniform(0.01, 0.3),
            "max_depth": tune.randint(2, 11),
            "min_child_weight": tune.loguniform(0.5, 32.0),
            "subsample": tune.uniform(0.5, 1.0),
            "colsample_bytree": tune.uniform(0.4, 1.0),
            "reg_lambda": tune.loguniform(1e-3, 100.0),
            "reg_alpha": tune.loguniform(1e-3, 10.0),
            **robust_space(task, ["reg:squarederror", "reg:pseudohubererror"]),
        }

    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        base = {
            "learning_rate": 0.05,
            "max_depth": 6,
            "min_child_weight": 1.0,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "reg_alpha": 1e-3,
            **robust_defaults(task, "reg:squarederror"),
        }
        return [
            base,
            {**base, "max_depth": 10, "min_child_weight": 0.5, "subsample": 1.0, "colsample_bytree": 0.6},
        ]

    def learner(self, config, task, train, y_train, w_train, valid, y_valid) -> Learner:
        params = xgb_params(config, task)
        if params.get("objective") == "reg:pseudohubererror":
            params["huber_slope"] = robust_scale(config, y_train)
        return XGBoostLearner(
            params,
            task,
            train,
            y_train,
            w_train,
            valid,
            int(config.get("n_estimators", MAX_ROUNDS)),
        )

    def step_size(self, config, task) -> int:
        return rounds_per_step(config)

    def patience_for(self, config) -> int:
        return patience_rounds(config)

    def load(self, directory: Path, task: Task) -> XGBoostModel:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(directory / "model.ubj"))
        return XGBoostModel(booster, task)
