"""A search ended early lets its running trials wrap up with their best step (tuning.wrapup):
the flag crosses processes through Ray, training ends on it with its models, the stopper waits
for the trials within its grace, the searcher launches nothing more, and the record says why."""

import time
from types import SimpleNamespace

import pytest
from helpers import trial_data

from automl.models import get_family
from automl.training import train_candidate
from tuning.budget import BudgetGuard
from tuning.records import record
from tuning.stoppers import SearchStopper, wrap_grace_s
from tuning.wrapup import WrapUpFlag


@pytest.mark.ray
def test_a_trial_process_sees_the_flag_the_driver_raises(ray_session, tmp_path):
    flag, reading = WrapUpFlag.new(), tmp_path / "reading"

    @ray_session.remote(num_cpus=0)
    def trial(flag: WrapUpFlag, poll_s: float) -> float | None:
        raised, t0 = flag.reader(poll_s), time.time()
        reading.touch()  # the same machine: the driver waits for this before raising the flag
        while time.time() - t0 < 60:
            if raised():
                return time.time()
            time.sleep(0.01)
        return None

    assert not flag.is_raised()
    seen = trial.remote(flag, 0.05)
    t0 = time.time()
    while not reading.exists():  # a new worker process starts first
        assert time.time() - t0 < 60 and not ray_session.wait([seen], timeout=0)[0]
        time.sleep(0.05)
    time.sleep(0.3)
    assert not ray_session.wait([seen], timeout=0)[0], "the trial wrapped up before the flag was raised"
    raised_at = time.time()
    flag.raise_flag()
    seen_at = ray_session.get(seen, timeout=60)
    assert seen_at is not None and seen_at - raised_at < 10.0  # polled every 0.05 s; a loaded CI is slow
    assert not WrapUpFlag.new().is_raised()  # another search's flag is its own
    flag.clear()
    assert not flag.is_raised()


def test_training_ends_on_the_flag_with_its_best_step_and_its_models(binary_df):
    data = trial_data(binary_df, "label", recipes=("tree",))[0]
    family = get_family("lightgbm")
    # a fast learner that overfits 300 rows: its best step is not its last one
    config = {**family.portfolio(data.task)[0], "n_estimators": 2000, "learning_rate": 0.5, "num_leaves": 31}
    reads = []

    def raised() -> bool:
        reads.append(1)
        return len(reads) >= 4  # raised before the fourth step's check

    res = train_candidate(family, config, data, wrap_up=raised)
    assert res.stop_reason == "search_ended"
    assert len(res.history) == 4 and len(res.models) == len(data.folds)
    best = max(res.history, key=lambda h: h.score)
    assert best is not res.history[-1] and res.best_iteration == best.iteration
    full = train_candidate(family, config, data)
    assert full.stop_reason != "search_ended" and len(full.history) > 4


def test_a_pickled_stopper_comes_back_as_the_running_searchs():
    """Tune's controller restores its stopper from the experiment state on resume: it must be the
    resuming search's (its clock, reserve and flag), not the interrupted one's."""
    import pickle

    import cloudpickle

    old = SearchStopper(target_objective=0.9, patience=3, reserve=_Reserve(), wrap_up=lambda: None)
    saved = cloudpickle.dumps(old)
    running = SearchStopper(target_objective=None, patience=None)
    with running.live():
        assert pickle.loads(saved) is running
    # outside a search (ExperimentAnalysis; the Tune driver a Ray Client connection runs on the
    # cluster): a copy of the pickled one, with its criteria
    copy = pickle.loads(saved)
    assert copy is not running and copy is not old and (copy.target, copy.patience) == (0.9, 3)
    assert isinstance(copy.reserve, _Reserve) and copy.wrap_up is None and old.wrap_up is not None


def test_the_stopper_ends_the_search_at_its_hard_end():
    """The search's time limit is the stopper's (Tune's time_budget_s would come back on resume
    with the interrupted search's budget left): past hard_end Tune stops every trial, and the
    stopper has not ended the search for a reason of its own (records say "time limit")."""
    stopper = SearchStopper(target_objective=None, patience=None, hard_end=time.time() + 0.2)
    assert not stopper.stop_all()
    time.sleep(0.25)
    assert stopper.stop_all() and stopper.ended() is None


class _Reserve:
    """A reserve that ends the search at once."""

    def reason(self) -> str:
        return "time kept for refitting the best candidates on every row (~1.0s expected)"


def test_the_stopper_raises_the_flag_once_and_waits_out_its_grace():
    calls = []
    stopper = SearchStopper(
        target_objective=None, patience=None, reserve=_Reserve(), wrap_up=lambda: calls.append(1), grace_s=0.3
    )
    assert not stopper.stop_all() and calls == [1]  # the trials wrap up: Tune does not stop them
    assert not stopper.stop_all() and calls == [1]
    # a trial stopped during the grace was stopped by the scheduler, not by the search's end
    assert stopper.ended()[0] == float("inf")
    time.sleep(0.35)
    assert stopper.stop_all() and calls == [1]  # the grace is over: Tune stops what still runs
    assert stopper.ended()[0] >= stopper.ended_at + 0.3
    assert stopper.ended()[1] == _Reserve().reason()
    # without a flag to raise (a grid search), Tune stops the trials at once, as before
    assert SearchStopper(target_objective=None, patience=None, reserve=_Reserve()).stop_all()
    assert wrap_grace_s(20) == 1.0 and wrap_grace_s(45) == pytest.approx(2.25) and wrap_grace_s(600) == 5.0


def test_a_closed_guard_launches_no_more_trials():
    inner = SimpleNamespace(metric="m", mode="max", suggest=lambda trial_id: {"family": "lightgbm"})
    guard = BudgetGuard(inner, deadline=time.time() + 60, costs={"lightgbm": 1.0})
    assert guard.suggest("a") == {"family": "lightgbm"}
    guard.close()
    assert guard.suggest("b") == "FINISHED"


def test_the_record_of_a_wrapped_up_trial_says_why_it_ended():
    why = "time kept for refitting the best candidates on every row (~1.0s expected)"
    result = SimpleNamespace(
        config={"family": "xgboost"},
        metrics={
            "trial_id": "abc",
            "done_training": True,
            "objective": -3.0,
            "score": 3.0,
            "iteration": 20,
            "fit_time_s": 1.0,
            "stop_reason": "search_ended",
        },
        path="/x/run_trial_abc_3_family=xgboost",
        error=None,
        checkpoint=None,
    )
    now = time.time()
    progress = SimpleNamespace(times={"abc": (now - 5, now)})
    rec = record(result, progress, now - 10, now + 100, ended=(now - 1, why))
    assert rec.status == "completed" and rec.iteration == 20
    assert rec.stop_reason == f"wrapped up with its best step when the search ended: {why}"
    # a trial the scheduler stopped while the others wrapped up (none was left for Tune to stop)
    pruned = SimpleNamespace(**{**result.__dict__, "metrics": {"trial_id": "abc", "objective": -3.0}})
    rec = record(pruned, progress, now - 10, now + 100, ended=(float("inf"), why))
    assert rec.status == "stopped" and rec.stop_reason == "early-stopped by the scheduler"
    rec = record(pruned, progress, now - 10, now + 100, ended=(now - 0.5, why))  # Tune stopped it
    assert rec.stop_reason == f"stopped when the search ended: {why}"


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_in_flight_when_the_target_is_reached_wraps_up_and_joins(ray_session, tmp_path, monkeypatch):
    """The linear trial reaches the target score at once while the MLP trains: the MLP ends after
    its next step, completed with its models, and is a candidate like any other."""
    import numpy as np
    import pandas as pd

    import tuning.search
    from automl import AutoML, SearchConfig

    # a loaded machine may take seconds to start the MLP's worker: the search waits for it (and
    # ends as soon as it completed), where a fit waits at most 5 s
    monkeypatch.setattr(tuning.search, "wrap_grace_s", lambda search_s: 120.0)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 6))
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    df["label"] = np.where(X[:, 0] + np.sin(2 * X[:, 1]) + rng.normal(scale=0.5, size=4000) > 0, "yes", "no")
    run = AutoML(
        write_report=False,
        target="label",
        time_limit=120,  # a searcher that can be closed runs under a time limit only
        search=SearchConfig(families=("linear", "mlp"), target_score=0.6, max_trials=4),
        output_dir=tmp_path / "run",
        seed=0,
    ).fit(df)
    assert run.run_info_["ended_because"] == "target score reached"
    board = run.leaderboard()
    mlp = board[board["model"].str.fullmatch(r"mlp_\d+")]
    assert len(mlp) == 1, board[["model", "status", "stop_reason"]]
    row = mlp.iloc[0]
    assert row["status"] == "completed", row
    # (the chosen model's reason also says it was calibrated)
    wrapped = "wrapped up with its best step when the search ended: target score reached"
    assert row["stop_reason"].startswith(wrapped), row["stop_reason"]
    # its final report: the bag's score and the timing of its saved fold models
    assert np.isfinite(row["score_val"]) and row["predict_time_s"] > 0 and row["iterations"] >= 1


def test_a_trial_ends_for_the_first_reason_that_holds():
    """train_candidate's stop decision, in its order: a health check, every learner done, no gain
    for the patience, the deadline, then the wrap-up flag (read only when nothing before holds,
    and, like the deadline, only once the minimum steps are done)."""
    from automl.training import _stop_reason

    going, done = SimpleNamespace(health_stop=None, done=False), SimpleNamespace(health_stop=None, done=True)
    sick = SimpleNamespace(health_stop="nan_loss: loss became NaN", done=True)
    reads = []

    def flag() -> bool:
        reads.append(1)
        return True

    assert _stop_reason([going, sick], True, True, 0.0, flag) == "health: nan_loss: loss became NaN"
    assert _stop_reason([going, done], True, True, 0.0, flag) == "converged"  # a fold still trains
    assert _stop_reason([done, done], True, True, 0.0, flag) == "max_iterations"
    assert _stop_reason([going], True, True, 0.0, flag) == "converged"
    assert _stop_reason([going], False, True, 0.0, flag) == "time_budget" and reads == []
    assert _stop_reason([going], False, False, 0.0, flag) is None and reads == []  # too few steps
    assert _stop_reason([going], False, True, time.time() + 60, flag) == "search_ended" and reads == [1]
    assert _stop_reason([going], False, True, None, None) is None
