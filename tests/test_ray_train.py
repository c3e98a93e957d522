"""The Ray Train path of the boosting families: two CPU workers give models of the same quality
as training inside the trial, on the same data; and a fit can route its trials through it."""

import numpy as np
import pytest
from helpers import trial_data, two_worker_job

from automl import AutoML, ResourceConfig, SearchConfig, ValidationConfig
from automl.models import get_family
from automl.splits import make_folds
from automl.training import train_candidate

pytestmark = [pytest.mark.ray, pytest.mark.slow]


# LightGBM's Ray Train path is fitted by test_fit_routes_boosting_trials_through_ray_train below
# (two workers) and by the streaming fits' finals (tests/test_streaming.py); XGBoost's only here
@pytest.mark.parametrize("family", ["xgboost"])
def test_two_workers_match_in_process_quality(ray_session, binary_df, family, tmp_path):
    from tuning import distributed

    data = trial_data(binary_df, "label", recipes=("tree",))[0]
    data.folds = make_folds(len(binary_df), strategy="holdout", y=data.y, seed=0).folds
    tr, va = data.folds[0]
    X = data.features["tree"]
    fam = get_family(family)
    config = fam.portfolio(data.task)[0]
    local = train_candidate(fam, config, data)
    job = two_worker_job(data, X, tr, va, config, tmp_path, f"t-{family}")
    done = distributed.fit(family, job)
    score = data.metric.score(data.y[va], done.model.predict(X.take(va)))
    assert done.best_iteration > 1 and done.seconds > 0
    assert abs(score - local.score) < 0.02, (score, local.score)


# LightGBM only (CI time: ~20 s per Ray Train run): the deadline's decision and broadcast are the
# shared gbdt.Tracker's; XGBoost's callback returns that decision to xgboost.train
@pytest.mark.parametrize("family", ["lightgbm"])
def test_boosting_on_two_workers_stops_together_at_the_deadline(ray_session, binary_df, family, tmp_path):
    """A deadline that has passed: rank 0 decides at the first step report and both workers stop
    at that round (one going on alone would wait for the other in its next allreduce forever)."""
    import time

    from tuning import distributed

    data = trial_data(binary_df, "label", recipes=("tree",))[0]
    data.folds = make_folds(len(binary_df), strategy="holdout", y=data.y, seed=0).folds
    tr, va = data.folds[0]
    X = data.features["tree"]
    config = {**get_family(family).portfolio(data.task)[0], "n_estimators": 2000}
    job = two_worker_job(data, X, tr, va, config, tmp_path, f"d-{family}", deadline=time.time())
    done = distributed.fit(family, job)
    assert done.stopped_at_deadline
    assert 1 <= done.best_iteration <= 50 and done.model.n_iterations <= 50, done.best_iteration
    assert data.metric.score(data.y[va], done.model.predict(X.take(va))) > 0.8  # a usable model


def test_every_distributed_path_belongs_to_a_registered_family():
    """The Ray Train paths are found by family name: no list of them to keep in step elsewhere."""
    from automl.exceptions import ConfigError
    from automl.models import all_families
    from tuning import distributed

    assert set(distributed.families()) == {"lightgbm", "xgboost", "mlp"}
    assert set(distributed.families()) <= set(all_families())
    with pytest.raises(ConfigError, match=r"'knn' has no Ray Train path; those that do: \['lightgbm'"):
        distributed.fit("knn", None)


def test_fit_routes_boosting_trials_through_ray_train(ray_session, binary_df, tmp_path):
    run = AutoML(
        write_report=False,
        target="label",
        search=SearchConfig(max_trials=1, families=("lightgbm",)),
        validation=ValidationConfig(strategy="holdout"),
        resources=ResourceConfig(train_workers=2),
        output_dir=tmp_path / "r",
    ).fit(binary_df)
    board = run.leaderboard()
    trial = board[board["family"] == "lightgbm"].iloc[0]
    assert trial["status"] == "completed" and trial["stop_reason"] == "ray_train"
    assert trial["score_val"] > 0.9
    assert (tmp_path / "r" / "train").exists()  # Ray Train wrote its runs under the run directory
    assert np.isin(run.predict(binary_df.head(5)), ["yes", "no"]).all()
