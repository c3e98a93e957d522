"""Random forest and extra trees through LightGBM's ``rf`` boosting mode (bagged, averaged,
fully grown trees), saved as LightGBM text models: forests without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.models.base import Family, Learner, Task, register
from automl.models.lightgbm import LightGBMLearner, LightGBMModel, lgb_params

#: trees per forest; reports every TREES_PER_STEP trees (more trees never hurt a forest, so the
#: lockstep driver's patience only stops a forest that has plateaued)
MAX_TREES = 200
TREES_PER_STEP = 25


class _ForestFamily(Family):
    recipe = "tree"
    extra_trees = False
    patience = 100

    def search_space(self, task: Task) -> dict[str, Any]:
        from ray import tune

        return {
            "num_leaves": tune.lograndint(64, max(65, min(4096, task.n_rows // 2))),
            "min_data_in_leaf": tune.lograndint(1, 20),
            "feature_fraction": tune.uniform(0.3, 1.0),
            "bagging_fraction": tune.uniform(0.5, 0.9),
        }

    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        return [
            {"num_leaves": 512, "min_data_in_leaf": 3, "feature_fraction": 0.6, "bagging_fraction": 0.632}
        ]

    def learner(self, config, task, train, y_train, w_train, valid, y_valid) -> Learner:
        params = {
            **lgb_params(config, task),
            "boosting": "rf",
            "bagging_freq": 1,
            "extra_trees": self.extra_trees,
            "lambda_l2": 0.0,
            "max_depth": -1,
        }
        return LightGBMLearner(
            params,
            task,
            train,
            y_train,
            w_train,
            valid,
            int(config.get("n_estimators", MAX_TREES)),
            average=True,
        )

    def step_size(self, config, task) -> int:
        return TREES_PER_STEP

    def load(self, directory: Path, task: Task) -> LightGBMModel:
        from automl.models.lightgbm import LightGBMFamily

        return LightGBMFamily().load(directory, task)


@register
class RandomForestFamily(_ForestFamily):
    name = "random_forest"
    relative_cost = 3.0
    priority = 45


@register
class ExtraTreesFamily(_ForestFamily):
    name = "extra_trees"
    relative_cost = 2.0
    priority = 40
    extra_trees = True
