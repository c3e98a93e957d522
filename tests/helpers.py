"""Helpers for tests that build candidates without Ray (pure core)."""

from __future__ import annotations

import pandas as pd

from automl.fit import build_schema, encode_target
from automl.metrics import resolve_metric
from automl.models import Task, get_family
from automl.predictor import Member, Predictor
from automl.preprocessing import Preprocessor
from automl.profile import profile_table
from automl.splits import make_folds
from automl.training import TrialData


def trial_data(
    df: pd.DataFrame, target: str, recipes=("tree", "linear", "nn"), n_folds: int = 3, seed: int = 0
):
    prof = profile_table(df, target)
    schema = build_schema(prof, df)
    y, classes = encode_target(df[target], prof)
    pre = {r: Preprocessor(r, schema.columns).fit(df) for r in recipes}
    feats = {r: p.transform(df) for r, p in pre.items()}
    folds = make_folds(
        len(df), strategy="kfold", n_folds=n_folds, y=y if prof.problem.is_classification else None, seed=seed
    )
    task = Task(prof.problem, len(classes) if classes else 0, len(df), len(schema.columns), seed=seed)
    metric, _ = resolve_metric(None, prof.problem)
    return TrialData(feats, y, None, folds.folds, task, metric, classes), pre, schema, prof


def predictor_from(result, data, pre, schema, prof) -> Predictor:
    family = get_family(result.family)
    member = Member("m1", result.family, family.recipe, 1.0, result.models, result.config)
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


__all__ = ["trial_data", "predictor_from"]
