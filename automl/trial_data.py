"""TrialData: everything a trial trains on, put in Ray's object store once and shared by all
trials (the recipes' matrices, the encoded target, weights, folds, task and metric), and the
views a fold's models get of it (out-of-fold target encodings, the target transform and the
output step of regression members)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.encoders import FoldColumns
from automl.exceptions import ConfigError
from automl.metrics import Metric
from automl.models.base import Task
from automl.preprocessing import FeatureMatrix
from automl.target import NONE, OutputStep, TargetPlan, TargetTransform, transform_name


@dataclass
class TrialData:
    """Everything a trial needs; put in Ray's object store once and shared by all trials."""

    features: dict[str, FeatureMatrix]  # recipe -> matrix of all training rows
    y: np.ndarray  # encoded target (class index or value)
    weights: np.ndarray | None
    folds: list[tuple[np.ndarray, np.ndarray]]
    task: Task
    metric: Metric
    classes: list[Any] | None = None
    #: regression: the transform offered and the clip range of members (automl.target)
    target_plan: TargetPlan | None = None
    #: out-of-fold values of target-encoded columns (automl.encoders); ``features`` hold their
    #: values cross fitted over all rows
    fold_columns: FoldColumns | None = None

    @property
    def n_outputs(self) -> int:
        return self.task.n_classes if self.task.problem_type.is_classification else 0

    def fold_matrix(self, recipe: str, fold: int, rows: np.ndarray) -> FeatureMatrix:
        """``rows`` of the recipe's matrix as the models of fold ``fold`` see them: target-encoded
        columns fitted on that fold's training rows only."""
        X = self.features[recipe].take(rows)
        if self.fold_columns is not None:
            self.fold_columns.write(X, recipe, self.fold_columns.folds[fold][rows])
        return X

    def target_transform(self, config: dict[str, Any]) -> TargetTransform:
        """The target transform a config trains on (fitted on all training targets)."""
        name = transform_name(config)
        if self.target_plan is None:
            if name != "none":
                raise ConfigError(f"target_transform={name!r} applies to regression only")
            return NONE
        return self.target_plan.transform(name)

    def output_step(self, config: dict[str, Any], rows: np.ndarray | None = None) -> OutputStep | None:
        """The output step of a config's models: its inverse transform and the clip range of the
        training target of ``rows`` (default: all training rows). None for classification."""
        if self.target_plan is None:
            return None
        return self.target_plan.output(transform_name(config), None if rows is None else self.y[rows])
