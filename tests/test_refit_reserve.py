"""The time a search keeps for refitting its best candidates on every row (automl.refit.RefitReserve),
and what the search's callback hands it: completed candidates and those still training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from automl.config import FitSpec, ValidationConfig
from automl.prepare import prepare
from automl.refit import REFIT_TIME_FACTOR, RefitReserve, refit_growth, row_scale
from tests.helpers import signal_frame, trial_data


def test_the_search_ends_in_time_to_refit_its_best_candidates():
    data, *_ = trial_data(signal_frame(300, 1, True), "y", recipes=("tree",), n_folds=5)
    now = 1000.0
    # 5-fold: a refit trains on 1.25x a fold's rows, once instead of 5 times
    assert refit_growth(data) == pytest.approx(REFIT_TIME_FACTOR * 1.25 / 5) and row_scale(data) == 1.25
    reserve = RefitReserve(growth=0.3, scale=1.25, end=now + 10, earliest=now, slack=1.0)
    assert reserve.reason(now + 9.9) is None  # no candidate yet: nothing to keep time for
    reserve.observe("lightgbm", {"objective": -3.0, "fit_time_s": 8.0})  # refit: 8 x 0.3 x 1.25 = 3 s
    reserve.observe("knn", {"objective": -9.0, "fit_time_s": 500.0})  # fourth best: not kept for
    reserve.observe("xgboost", {"objective": -3.5, "fit_time_s": 4.0})  # 1.5 s
    reserve.observe(
        "lightgbm", {"objective": -4.0, "fit_time_s": 2.4}
    )  # third best, 2nd of its family: 0.9 s
    reserve.observe("linear", {"objective": 0.0, "failed": True, "fit_time_s": None})
    assert reserve.need_s() == pytest.approx(5.4)
    # a candidate still training counts with its time so far: it wraps up and joins the ensemble
    from automl.row_rungs import RUNG_KEY
    from tuning.stoppers import ReserveWatch

    watch = ReserveWatch(reserve, SimpleNamespace(is_lower=lambda rung: rung == 0))
    trial = SimpleNamespace(trial_id="t9", config={"family": "xgboost"}, last_result=None, status="RUNNING")
    step = {"objective": -3.4, "best_objective": -3.2, "iteration": 5, "time_total_s": 4.0}
    watch.on_trial_result(0, [], trial, step)  # second best so far: 4 x 0.3 x 1.25 = 1.5 s
    watch.on_trial_result(
        0, [], SimpleNamespace(trial_id="t8", config={"family": "xgboost", RUNG_KEY: 0}), step
    )
    assert set(reserve.running) == {"t9"}  # a lower rung of row fidelity never joins the ensemble
    assert reserve.need_s() == pytest.approx(6.0)  # 3 + 1.5 + 1.5: the fourth best drops out
    watch.on_trial_error(0, [], trial)
    assert reserve.running == {} and reserve.need_s() == pytest.approx(5.4)
    # once it completes it counts once, as a completed candidate
    other = RefitReserve(growth=0.3, scale=1.25, end=now + 10, earliest=now, slack=1.0)
    watch2 = ReserveWatch(other)
    watch2.on_trial_result(0, [trial], trial, step)
    trial.last_result = {"objective": -3.2, "fit_time_s": 4.0, "done_training": True}
    watch2.on_trial_complete(0, [trial], trial)
    assert other.running == {} and other.completed == [(-3.2, 4.0, "xgboost")]
    # paused by HyperBand (no callback): not counted while it does not run
    paused = SimpleNamespace(trial_id="t7", config={"family": "lightgbm"}, status="RUNNING")
    watch2.on_trial_result(0, [paused], paused, {**step, "best_objective": -1.0})
    assert "t7" in other.running
    paused.status = "PAUSED"
    watch2.on_trial_result(0, [paused, trial], trial, step)
    assert "t7" not in other.running
    assert reserve.reason(now + 4.5) is None  # 5.5 s are left: the search goes on
    why = reserve.reason(now + 4.7)
    assert why == "time kept for refitting the best candidates on every row (~5.4s expected)"
    assert reserve.reason(now + 1) == why  # once ended, it stays ended

    late = RefitReserve(growth=0.3, scale=1.25, end=now + 10, earliest=now + 6, slack=1.0)
    late.observe("lightgbm", {"objective": -3.0, "fit_time_s": 8.0})  # 3 s
    assert late.reason(now + 5.5) is None  # before `earliest`: the search keeps its share
    assert late.reason(now + 7.5) is not None  # ends 10.5 s: within the ensemble's slack
    # a holdout search keeps no time for refits (its candidates are one model each already)
    spec = FitSpec("y", validation=ValidationConfig(strategy="holdout"))
    holdout = prepare(spec, signal_frame(300, 1, True), recipes=("tree",)).data
    assert len(holdout.folds) == 1
    assert RefitReserve.start(holdout, "auto", deadline=now + 30, keep_s=5.0, slack_s=1.0) is None
    assert RefitReserve.start(data, "auto", deadline=now + 30, keep_s=5.0, slack_s=1.0) is not None
    tight = RefitReserve(growth=0.3, scale=1.25, end=now + 10, earliest=now + 9, slack=1.0)
    tight.observe("lightgbm", {"objective": -3.0, "fit_time_s": 8.0})
    assert tight.reason(now + 9.5) is None  # 12.5 s: too late to refit anyway, the search goes on
    # a trial in flight when the reserve ended the search: its record says so
    from tuning.records import record
    from tuning.stoppers import SearchStopper

    stopper = SearchStopper(target_objective=None, patience=None, reserve=reserve)
    assert stopper.stop_all() and stopper.ended()[1] == why
    at = stopper.ended()[0]
    result = SimpleNamespace(
        config={"family": "xgboost"},
        metrics={"trial_id": "abc", "objective": -3.0, "score": 3.0, "iteration": 20},
        path="/x/run_trial_abc_3_family=xgboost",
        error=None,
        checkpoint=None,
    )
    progress = SimpleNamespace(times={"abc": (at - 5, at + 0.5)})
    rec = record(result, progress, at - 10, at + 100, ended=stopper.ended())
    assert rec.status == "stopped" and rec.stop_reason == f"stopped when the search ended: {why}"
    assert record(result, progress, at - 10, at + 100).stop_reason == "early-stopped by the scheduler"
    assert RefitReserve.start(data, False, deadline=now, keep_s=1, slack_s=1) is None  # refit off
    assert RefitReserve.start(data, "auto", deadline=None, keep_s=1, slack_s=1) is None  # no limit
