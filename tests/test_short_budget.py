"""A time limit short for the table (Task.short_budget): LightGBM's first config converges in few
rounds, and boosting is not stopped by a short plateau (covertype at 60 s; docs/benchmarks.md)."""

from __future__ import annotations

import dataclasses

from helpers import trial_data

from automl.config import ValidationConfig
from automl.models import get_family
from automl.training import train_candidate


def test_a_short_budget_is_judged_by_rows_folds_and_classes_per_second():
    v = ValidationConfig()
    assert v.budget_is_short(60_000, n_classes=7, time_limit=60)  # covertype at 60 s
    assert not v.budget_is_short(39_000, n_classes=2, time_limit=60)  # adult at 60 s
    assert not v.budget_is_short(60_000, n_classes=7, time_limit=None)  # a trial budget only


def test_lightgbm_leads_with_a_fast_config_only_when_the_budget_is_short(multiclass_df):
    data, *_ = trial_data(multiclass_df, "label", recipes=("tree",))
    family = get_family("lightgbm")
    usual = family.portfolio(data.task)
    short = family.portfolio(dataclasses.replace(data.task, short_budget=True))
    assert short[1:] == usual  # the usual configs follow, in their order
    assert short[0]["learning_rate"] == 0.1 and short[0]["num_leaves"] == 127
    assert usual[0]["learning_rate"] == 0.05


def test_a_short_budget_waits_longer_on_a_plateau(multiclass_df):
    data, *_ = trial_data(multiclass_df, "label", recipes=("tree",))
    family = get_family("lightgbm")
    config = {**family.portfolio(data.task)[0], "learning_rate": 0.3}  # patience: 20 rounds
    ran = {}
    for short in (False, True):
        d = dataclasses.replace(data, task=dataclasses.replace(data.task, short_budget=short))
        res = train_candidate(family, config, d)
        assert res.stop_reason == "converged"
        ran[short] = res.history[-1].iteration - res.best_iteration
    assert 20 <= ran[False] < 40 and 80 <= ran[True] < 100, ran
