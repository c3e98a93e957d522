"""LightGBM's single-row API (automl.models.lightgbm_rows) gives Booster.predict's scores for
calls of a few rows, for boosters and rf-mode forests on every problem, float32 and float64
input, and survives pickling (Ray sends models between processes)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import trial_data
from test_fastpath import PROBLEMS, rich_frame

from automl.models import get_family
from automl.models.base import raw_to_output
from automl.models.lightgbm_rows import FAST_ROWS
from automl.training import train_candidate


def lightgbm_models(rows: int, rounds: int) -> dict:
    """A LightGBM booster and a LightGBM-based forest per problem, by (family, problem)."""
    out = {}
    for problem in PROBLEMS:
        data, *_ = trial_data(rich_frame(rows, 5, problem), "label", n_folds=2)
        for name in ("lightgbm", "random_forest"):
            family = get_family(name)
            res = train_candidate(family, {**family.portfolio(data.task)[0], "n_estimators": rounds}, data)
            out[(name, problem)] = res.models[0]
    return out


@pytest.fixture(scope="module")
def models():
    return lightgbm_models(300, 12)


def booster_scores(model, dense):
    raw = model.booster.predict(dense, num_iteration=model.n_iterations, raw_score=True, num_threads=1)
    raw = raw / model.n_iterations if model.average else raw
    return raw_to_output(raw, model.task.problem_type)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", ["lightgbm", "random_forest"])
def test_a_few_rows_score_as_booster_predict(models, name, problem):
    model = models[(name, problem)]
    rng = np.random.default_rng(1)
    n_features = model.booster.num_feature()
    rows = rng.normal(size=(FAST_ROWS, n_features))
    rows[0, :] = np.nan  # an all-missing row
    rows[1, -1] = 99.0  # an unseen category code where the last column is categorical
    for dense in (rows.astype(np.float32), rows.astype(np.float64)):
        for n in (1, FAST_ROWS):
            np.testing.assert_array_equal(model.predict_dense(dense[:n], 1), booster_scores(model, dense[:n]))
    assert model._rows is not None  # the single-row API answered

    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_dense(rows[:1], 1), model.predict_dense(rows[:1], 1))
