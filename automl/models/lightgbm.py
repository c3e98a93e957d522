"""LightGBM: gradient-boosted trees with native categorical splits; also random forest and
extra-trees modes (``boosting="rf"``) for the forest families. Saved as LightGBM's text format."""

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
    Task,
    raw_to_output,
    read_json,
    register,
    write_json,
)
from automl.models.compiled import COMPILED_ROWS, n_outputs
from automl.models.gbdt import (
    MAX_ROUNDS,
    data_sized_leaves,
    patience_rounds,
    robust_defaults,
    robust_scale,
    robust_space,
    rounds_per_step,
)
from automl.models.lightgbm_rows import FAST_ROWS, SingleRows
from automl.models.lightgbm_xgb import XGB_ROWS, BatchForm
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType


def _objective(task: Task) -> dict[str, Any]:
    if task.problem_type is ProblemType.BINARY:
        return {"objective": "binary"}
    if task.problem_type is ProblemType.MULTICLASS:
        return {"objective": "multiclass", "num_class": task.n_classes}
    return {"objective": "regression"}


#: multiclass boosting on a large table keeps a leaf's summed hessian at least this (LightGBM's
#: default is 1e-3). Softmax hessians p(1-p) of rows the model is already sure about are near 0,
#: and a leaf of such rows can take an extreme value: on covertype (split seed 2 of the bench, 48 k
#: training rows, the portfolio's rate 0.1 and 127 leaves, seed 2) test accuracy peaked at 0.874
#: after 50 rounds and fell to 0.83 by round 119; the 60 s fit deployed a model at 0.8425. With
#: 1.0: 0.896 at 95 rounds, 0.916 at 300. On 4-fold holdouts of three splits (early stopping after
#: 25 rounds): covertype 0.9097 against 0.9044, wine_quality (6.5 k rows) 0.6704 against 0.6697, car
#: (1.7 k rows) 0.9846 against 0.9884: small tables lose a little, so the guard starts at
#: MULTICLASS_GUARD_ROWS. (max_delta_step=2 also stopped the collapse but scored 0.9036 on covertype.)
MULTICLASS_MIN_HESSIAN, MULTICLASS_GUARD_ROWS = 1.0, 10_000


def boosting_guard(task: Task) -> dict[str, Any]:
    """Parameters that keep gradient boosting from diverging on ``task`` (a config overrides them)."""
    if task.problem_type is ProblemType.MULTICLASS and task.n_rows >= MULTICLASS_GUARD_ROWS:
        return {"min_sum_hessian_in_leaf": MULTICLASS_MIN_HESSIAN}
    return {}


def lgb_params(config: dict[str, Any], task: Task) -> dict[str, Any]:
    params = {
        **_objective(task),
        "verbosity": -1,
        "num_threads": task.num_threads,
        "seed": task.seed,
        "deterministic": True,
        "force_col_wise": True,
        "max_cat_to_onehot": 8,
    }
    for key, value in config.items():
        if key in ("n_estimators", "robust_delta"):
            continue
        params[key] = value
    if params.get("bagging_fraction", 1.0) < 1.0:
        params.setdefault("bagging_freq", 1)
    if task.use_gpu:
        params["device_type"] = "cuda"
    return params


class LightGBMModel(FittedModel):
    family = "lightgbm"
    native_file = "model.txt"

    def __init__(self, booster: Any, task: Task, n_iter: int, average: bool) -> None:
        self.booster, self.task, self._n_iter, self.average = booster, task, n_iter, average

    def predict(self, X: FeatureMatrix) -> np.ndarray:
        return self.predict_dense(X.dense(), 1)

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        return self.predict_dense(inputs.dense(), threads)

    def predict_dense(self, dense: np.ndarray, threads: int) -> np.ndarray:
        if self.compiled is not None and len(dense) >= COMPILED_ROWS:
            raw = self.compiled.margins(dense, threads)  # Treelite averages an rf model's trees itself
        else:
            batch = len(dense) >= XGB_ROWS and dense.dtype == np.float32  # XGBoost reads float32
            raw = self._batch().raw(dense, threads) if batch else None
            if raw is None and len(dense) <= FAST_ROWS:
                raw = self._single_rows().raw(dense)
            if raw is None:
                raw = self.booster.predict(
                    dense, num_iteration=self._n_iter, raw_score=True, num_threads=threads
                )
            if self.average:  # rf mode: raw scores are summed over trees; the forest is their mean
                raw = raw / self._n_iter
        return raw_to_output(raw, self.task.problem_type)

    def _batch(self) -> BatchForm:
        batch = getattr(self, "_batch_form", None)
        if batch is None:
            batch = self._batch_form = BatchForm(self.booster, self._n_iter, n_outputs(self))
        return batch

    def _single_rows(self) -> SingleRows:
        rows = getattr(self, "_rows", None)
        if rows is None:
            rows = self._rows = SingleRows(self.booster, self._n_iter, n_outputs(self))
        return rows

    @property
    def n_iterations(self) -> int:
        return self._n_iter

    def feature_importance(self) -> np.ndarray:
        return self.booster.feature_importance(importance_type="gain", iteration=self._n_iter)

    def contributions(self, X: FeatureMatrix) -> np.ndarray:
        """Tree SHAP values in margin space: (n, features + 1) or (n, k * (features + 1))."""
        contrib = self.booster.predict(X.dense(), num_iteration=self._n_iter, pred_contrib=True)
        return contrib / self._n_iter if self.average else contrib

    def save(self, directory: Path) -> None:
        self.booster.save_model(str(directory / "model.txt"), num_iteration=self._n_iter)
        write_json(directory / "meta.json", {"n_iterations": self._n_iter, "average": self.average})


class LightGBMLearner(Learner):
    def __init__(
        self,
        params: dict[str, Any],
        task: Task,
        train: FeatureMatrix,
        y: np.ndarray,
        w: np.ndarray | None,
        valid: FeatureMatrix,
        max_iterations: int,
        average: bool,
    ) -> None:
        import lightgbm as lgb

        t0 = time.perf_counter()
        self.task, self.max_iterations, self.average = task, max_iterations, average
        cat_idx = list(range(train.num.shape[1], train.num.shape[1] + train.cat.shape[1]))
        dtrain = lgb.Dataset(
            train.dense(),
            label=y,
            weight=w,
            categorical_feature=cat_idx or "auto",
            params={"verbosity": -1, "feature_pre_filter": False},
            free_raw_data=False,
        )
        self.params, self.dtrain = params, dtrain
        self.booster = lgb.Booster(params=params, train_set=dtrain)
        self.valid_X = valid.dense()
        self._raw_sum = None  # raw scores summed over trees (in rf mode too: LightGBM sums raw scores)
        self._ready = 0  # rounds already trained (by a restore) that the next step counts
        self.iteration = 0
        self._fit_time = time.perf_counter() - t0

    def step(self, n: int) -> None:
        n = min(n, self.max_iterations - self.iteration)
        t0 = time.perf_counter()
        start = self.iteration
        ready, self._ready = min(self._ready, n), 0
        self.iteration += ready
        for _ in range(n - ready):
            if self.booster.update():  # True: no more splits possible
                self.max_iterations = self.iteration + 1
                self.iteration += 1
                break
            self.iteration += 1
        added = self.iteration - start
        if added:
            raw = self.booster.predict(
                self.valid_X, start_iteration=start, num_iteration=added, raw_score=True, num_threads=1
            )
            self._raw_sum = raw if self._raw_sum is None else self._raw_sum + raw
        self._fit_time += time.perf_counter() - t0

    def valid_predictions(self) -> np.ndarray:
        raw = self._raw_sum / max(self.iteration, 1) if self.average else self._raw_sum
        return raw_to_output(raw, self.task.problem_type)

    @property
    def supports_state(self) -> bool:  # type: ignore[override]
        # rf mode cannot start from saved trees (LightGBM forbids init scores there): a forest
        # trial restarts from scratch instead, which is cheap
        return not self.average

    def get_state(self, directory: Path) -> None:
        self.booster.save_model(str(directory / "model.txt"))
        np.save(directory / "raw.npy", self._raw_sum, allow_pickle=False)
        write_json(
            directory / "state.json", {"iteration": self.iteration, "max_iterations": self.max_iterations}
        )

    def set_state(self, directory: Path) -> None:
        import lightgbm as lgb

        st = read_json(directory / "state.json")
        init = lgb.Booster(model_file=str(directory / "model.txt"))
        # continue training: LightGBM merges the saved trees and starts from their scores. It
        # insists on training at least one round here; the next step counts that round.
        self.booster = lgb.train(
            self.params, self.dtrain, num_boost_round=1, init_model=init, keep_training_booster=True
        )
        self._ready = 1
        self._raw_sum = np.load(directory / "raw.npy", allow_pickle=False)
        self.iteration, self.max_iterations = int(st["iteration"]), int(st["max_iterations"])

    def finish(self, best_iteration: int) -> LightGBMModel:
        # the training booster predicts with num_iteration=best and saves only those trees
        return LightGBMModel(self.booster, self.task, best_iteration, self.average)


@register
class LightGBMFamily(Family):
    name = "lightgbm"
    refit_scales_iterations = True
    recipe = "tree"
    priority = 10
    transform_in_portfolio = True
    supports_gpu = False  # LightGBM's CUDA build is not on PyPI; it trains on CPU workers
    boosting = "gbdt"
    # covertype (48 k training rows, 7 classes) at a rate of 0.1, validation accuracy by rounds
    # without a gain before stopping, on three splits: 25 (the rate's patience) 0.9095 / 0.9055 /
    # 0.9164 at 213-357 rounds; 100: 0.9134 / 0.9097 / 0.9165 at 395-464 rounds (test +0.0067,
    # +0.0038, +0.0009); 200 added nothing
    short_budget_patience = 4.0

    def search_space(self, task: Task) -> dict[str, Any]:
        from ray import tune

        upper_leaves = data_sized_leaves(task.n_rows)
        return {
            "learning_rate": tune.loguniform(0.01, 0.3),
            "num_leaves": tune.lograndint(4, upper_leaves + 1),
            "min_data_in_leaf": tune.lograndint(2, max(3, min(256, task.n_rows // 20))),
            "feature_fraction": tune.uniform(0.4, 1.0),
            "bagging_fraction": tune.uniform(0.5, 1.0),
            "lambda_l1": tune.loguniform(1e-3, 10.0),
            "lambda_l2": tune.loguniform(1e-3, 100.0),
            "cat_smooth": tune.loguniform(1.0, 100.0),
            "extra_trees": tune.choice([False, True]),
            **robust_space(task, ["regression", "huber", "fair"]),
        }

    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        base = {
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.9,
            "bagging_fraction": 1.0,
            "lambda_l1": 1e-3,
            "lambda_l2": 1e-3,
            "cat_smooth": 10.0,
            "extra_trees": False,
            **robust_defaults(task, "regression"),
        }
        fast = []
        if task.short_budget:
            # twice the rate and four times the leaves: on covertype (48 k training rows, 7
            # classes, one thread) validation accuracy after 10 / 20 / 30 s was 0.911 / 0.913 /
            # 0.913 against the default's 0.884 / 0.899 / 0.905 (a rate of 0.2 diverged there)
            fast = [{**base, "learning_rate": 0.1, "num_leaves": 127, "min_data_in_leaf": 10}]
        return [
            *fast,
            base,
            {**base, "extra_trees": True},  # AutoGluon's GBMXT
            {
                **base,
                "learning_rate": 0.03,
                "num_leaves": 128,
                "min_data_in_leaf": 3,
                "feature_fraction": 0.9,
            },  # AutoGluon's GBMLarge
        ]

    def learner(self, config, task, train, y_train, w_train, valid, y_valid) -> Learner:
        params = {**boosting_guard(task), **lgb_params(config, task), "boosting": self.boosting}
        if params.get("objective") == "huber":
            params["alpha"] = robust_scale(config, y_train)
        elif params.get("objective") == "fair":
            params["fair_c"] = robust_scale(config, y_train)
        return LightGBMLearner(
            params,
            task,
            train,
            y_train,
            w_train,
            valid,
            int(config.get("n_estimators", MAX_ROUNDS)),
            average=False,
        )

    def step_size(self, config, task) -> int:
        return rounds_per_step(config)

    def patience_for(self, config) -> int:
        return patience_rounds(config)

    def load(self, directory: Path, task: Task) -> LightGBMModel:
        import lightgbm as lgb

        meta = read_json(directory / "meta.json")
        booster = lgb.Booster(model_file=str(directory / "model.txt"))
        return LightGBMModel(booster, task, int(meta["n_iterations"]), bool(meta["average"]))
