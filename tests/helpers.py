"""Helpers for tests that build candidates without Ray (pure core), through the fit's own
prepare stage."""

from __future__ import annotations

import pandas as pd

from automl.config import FitSpec, ValidationConfig
from automl.models import get_family
from automl.predictor import Member, Predictor
from automl.prepare import prepare


def trial_data(
    df: pd.DataFrame, target: str, recipes=("tree", "linear", "nn"), n_folds: int = 3, seed: int = 0
):
    """(TrialData, preprocessors, schema, profile) of ``df`` with ``n_folds``-fold validation."""
    spec = FitSpec(target, validation=ValidationConfig(strategy="kfold", n_folds=n_folds), seed=seed)
    prep = prepare(spec, df, recipes=tuple(recipes))
    return prep.data, prep.preprocessors, prep.schema, prep.profile


def predictor_from(result, data, pre, schema, prof) -> Predictor:
    family = get_family(result.family)
    output = data.output_step(result.config)  # regression: inverse transform and clip
    member = Member("m1", result.family, family.recipe, 1.0, result.models, result.config, output=output)
    return Predictor(
        target=prof.target,
        problem_type=prof.problem,
        classes=data.classes,
        metric=data.metric.name,
        schema=schema,
        preprocessors={family.recipe: pre[family.recipe]},
        members=[member],
        task=data.task,
    )


__all__ = ["predictor_from", "trial_data"]


def trial_rows(board):
    """The leaderboard's search trials: not the ensemble, nor the refit options built from members."""
    return board[~board["status"].isin(["ensemble", "refit"])]
