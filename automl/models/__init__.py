"""Model families. Importing this package registers the built-in families."""

from automl.models import catboost, forest, knn, lightgbm, linear, mlp, xgboost  # noqa: F401  (registers them)
from automl.models.base import Family, FittedModel, Learner, Task, all_families, get_family, register

__all__ = ["Family", "FittedModel", "Learner", "Task", "all_families", "get_family", "register"]
