"""The Ray Train path of the boosting families: two CPU workers give models of the same quality
as training inside the trial, on the same data; and a fit can route its trials through it."""

import numpy as np
import pytest
from helpers import trial_data

from automl import AutoML, ResourceConfig, SearchConfig, ValidationConfig
from automl.models import get_family
from automl.splits import make_folds
from automl.training import train_candidate

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_two_workers_match_in_process_quality(ray_session, binary_df, family, tmp_path):
    from tuning.train_gbdt import fit_distributed

    data = trial_data(binary_df, "label", recipes=("tree",))[0]
    data.folds = make_folds(len(binary_df), strategy="holdout", y=data.y, seed=0).folds
    tr, va = data.folds[0]
    X = data.features["tree"]
    fam = get_family(family)
    config = fam.portfolio(data.task)[0]
    local = train_candidate(fam, config, data)
    model, best, took = fit_distributed(
        family,
        config,
        data.task,
        X.take(tr),
        data.y[tr],
        None,
        X.take(va),
        data.y[va],
        metric="roc_auc",
        num_workers=2,
        use_gpu=False,
        storage_path=str(tmp_path),
        name=f"t-{family}",
        report_to_tune=False,
    )
    distributed = data.metric.score(data.y[va], model.predict(X.take(va)))
    assert best > 1 and took > 0
    assert abs(distributed - local.score) < 0.02, (distributed, local.score)


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
