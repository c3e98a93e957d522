"""The Ray Train path of the boosting families: two CPU workers give models of the same quality
as training inside the trial, on the same data; and a fit can route its trials through it."""

import time

import numpy as np
import pytest
from helpers import trial_data, trial_rows, two_worker_job

from automl import AutoML, ResourceConfig, SearchConfig, ValidationConfig
from automl.models import get_family
from automl.splits import make_folds
from automl.training import train_candidate

pytestmark = [pytest.mark.ray, pytest.mark.slow]


# LightGBM only (CI time: ~20 s per Ray Train run): the stop decision and its broadcast are the
# shared gbdt.Tracker's; XGBoost's callback returns that decision to xgboost.train. One run for both
# causes: the deadline and the wrap-up flag take the same decision and broadcast (_why_stop below)
@pytest.mark.parametrize("family", ["lightgbm"])
def test_a_raised_wrap_up_flag_stops_both_workers_together_with_the_best_round(
    ray_session, binary_df, family, tmp_path
):
    """A search trial's job on the Ray Train path whose search has ended (its wrap-up flag
    raised): rank 0 reads the flag at the first step report and both workers stop at that round
    (one going on alone would wait for the other in its next allreduce forever), keeping the best
    round so far and saying why."""
    from tuning import distributed
    from tuning.wrapup import WrapUpFlag

    data = trial_data(binary_df, "label", recipes=("tree",))[0]
    data.folds = make_folds(len(binary_df), strategy="holdout", y=data.y, seed=0).folds
    tr, va = data.folds[0]
    X = data.features["tree"]
    config = {**get_family(family).portfolio(data.task)[0], "n_estimators": 2000}
    flag = WrapUpFlag.new()
    flag.raise_flag()
    try:
        job = two_worker_job(data, X, tr, va, config, tmp_path, f"w-{family}", wrap_up=flag)
        done = distributed.fit(family, job)
    finally:
        flag.clear()
    assert done.search_ended and not done.stopped_at_deadline
    assert 1 <= done.best_iteration <= 50 and done.model.n_iterations <= 50, done.best_iteration
    assert data.metric.score(data.y[va], done.model.predict(X.take(va))) > 0.8  # a usable model


def test_the_stop_decision_reads_the_deadline_first_then_the_flag(ray_session):
    from tuning.distributed.gbdt import Tracker
    from tuning.wrapup import WrapUpFlag

    flag = WrapUpFlag.new()
    base = {"flip": False, "higher": True, "exact": True, "deadline": None, "wrap_up": flag.key}
    try:
        assert Tracker(base)._why_stop() is None
        assert Tracker({**base, "deadline": time.time() - 1})._why_stop() == "deadline"
        assert Tracker({**base, "deadline": time.time() + 60})._why_stop() is None
        flag.raise_flag()
        assert Tracker({**base, "deadline": time.time() + 60})._why_stop() == "search_ended"
        assert Tracker({**base, "deadline": time.time() - 1})._why_stop() == "deadline"
        assert Tracker({**base, "wrap_up": None})._why_stop() is None  # a job outside a search
    finally:
        flag.clear()


def test_a_cut_holdout_candidate_keeps_its_model_and_a_cut_k_fold_one_fails(
    ray_session, binary_df, monkeypatch
):
    """What train_candidate_ray makes of a fold cut short (distributed.fit stands in for Ray Train
    here; the stop itself is the test above): a holdout candidate keeps its model and says why it
    ended, so it can join the ensemble; the folds train one after another, so a k-fold candidate
    cut in fold 1 of 3 has no models for folds 2 and 3 and fails with the reason."""
    from tuning import distributed, train_paths
    from tuning.wrapup import WrapUpFlag

    data = trial_data(binary_df, "label", recipes=("tree",))[0]
    fam = get_family("lightgbm")
    config = fam.portfolio(data.task)[0]
    fitted = train_candidate(fam, config, data)  # a real fold model to hand back
    jobs = []

    def cut(family, job):
        jobs.append(job)
        return distributed.DistributedFit(fitted.models[0], 7, 0.1, search_ended=True)

    monkeypatch.setattr(distributed, "fit", cut)
    path, flag = train_paths.TrainPath(True, 2, False, "/tmp/unused"), WrapUpFlag.new()
    with pytest.raises(train_paths.TrainingCutError, match=r"search ended during fold 1 of 3"):
        train_paths.train_candidate_ray(fam, config, data, path, "t", wrap_up=flag)
    assert len(jobs) == 1 and jobs[0].wrap_up == flag and jobs[0].deadline is None
    data.folds = make_folds(len(binary_df), strategy="holdout", y=data.y, seed=0).folds
    result = train_paths.train_candidate_ray(fam, config, data, path, "t", wrap_up=flag)
    va = data.folds[0][1]
    assert result.stop_reason == "search_ended" and result.best_iteration == 7
    assert data.metric.score(data.y[va], result.oof[va]) > 0.8


def test_every_distributed_path_belongs_to_a_registered_family():
    """The Ray Train paths are found by family name: no list of them to keep in step elsewhere."""
    from automl.exceptions import ConfigError
    from automl.models import all_families
    from tuning import distributed

    assert set(distributed.families()) == {"lightgbm", "xgboost", "mlp"}
    assert set(distributed.families()) <= set(all_families())
    with pytest.raises(ConfigError, match=r"'knn' has no Ray Train path; those that do: \['lightgbm'"):
        distributed.fit("knn", None)


def test_fit_routes_boosting_trials_through_ray_train_with_in_process_quality(
    ray_session, binary_df, tmp_path
):
    """A fit with two Train workers trains its XGBoost trial through Ray Train (rabit allreduce
    over the workers' shards), and the trial scores as the same config trained in process on the
    same split does. XGBoost here: LightGBM's Ray Train path is trained by the wrap-up test above
    and by the streaming fits' finals (tests/test_streaming.py)."""

    def fit(out: str, workers: int):
        return AutoML(
            write_report=False,
            target="label",
            search=SearchConfig(max_trials=1, families=("xgboost",)),
            validation=ValidationConfig(strategy="holdout"),
            resources=ResourceConfig(train_workers=workers),
            output_dir=tmp_path / out,
            seed=0,
        ).fit(binary_df)

    run, local = fit("r", 2), fit("local", 1)
    trial = trial_rows(run.leaderboard()).iloc[0]
    in_process = trial_rows(local.leaderboard()).iloc[0]
    assert trial["status"] == "completed" and trial["stop_reason"] == "ray_train"
    assert in_process["stop_reason"] != "ray_train" and in_process["params"] == trial["params"]
    assert abs(trial["score_val"] - in_process["score_val"]) < 0.02, (
        trial["score_val"],
        in_process["score_val"],
    )
    assert trial["score_val"] > 0.9
    assert (tmp_path / "r" / "train").exists()  # Ray Train wrote its runs under the run directory
    assert np.isin(run.predict(binary_df.head(5)), ["yes", "no"]).all()
