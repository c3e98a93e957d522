"""Row fidelity: successive halving over training rows (automl.row_rungs, tuning.rungs)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from automl import AutoML
from automl.config import ROW_FIDELITY_MIN_ROWS, SearchConfig, ValidationConfig
from automl.exceptions import ConfigError
from automl.models import get_family
from automl.row_rungs import RUNG_KEY, plan_rungs
from tests.helpers import kill_fit_midway, trial_data


def _folds(n: int, seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]).astype(np.int32)
    perm = rng.permutation(n)
    cut = int(0.8 * n)
    return [(np.sort(perm[:cut]), np.sort(perm[cut:]))], y


def test_rungs_are_nested_stratified_samples_of_the_first_fold():
    folds, y = _folds(9000)
    tr, va = folds[0]
    plan = plan_rungs(folds, y, seed=0, min_rows=100)
    assert plan.n_rungs == 3 and plan.top == 2 and plan.eta == 3
    low, mid = plan.rungs
    assert len(low.train_rows) == round(len(tr) / 9) and len(mid.train_rows) == round(len(tr) / 3)
    # as many validation rows as training rows, at most the fold's
    assert len(low.valid_rows) == len(low.train_rows) and len(mid.valid_rows) == len(va)
    assert set(low.train_rows) <= set(mid.train_rows) <= set(tr)  # nested, inside fold 0's training rows
    assert set(low.valid_rows) <= set(mid.valid_rows) <= set(va)
    for rung in plan.rungs:  # stratified: each class's share within a point of the fold's
        share = np.bincount(y[rung.train_rows], minlength=3) / len(rung.train_rows)
        assert np.abs(share - np.bincount(y[tr], minlength=3) / len(tr)).max() < 0.01
    assert plan.share(0) == pytest.approx(len(low.train_rows) / len(tr)) and plan.share(2) == 1.0
    # the same seed draws the same rows, another seed others
    again, other = plan_rungs(folds, y, seed=0, min_rows=100), plan_rungs(folds, y, seed=1, min_rows=100)
    assert np.array_equal(again.rungs[0].train_rows, low.train_rows)
    assert not np.array_equal(other.rungs[0].train_rows, low.train_rows)
    # a rung under min_rows is left out: 7,200 / 9 = 800 < 1,000 <= 2,400
    assert [len(r.train_rows) for r in plan_rungs(folds, None, seed=0, min_rows=1000).rungs] == [2400]
    assert plan_rungs(folds, None, seed=0, min_rows=5000).top == 0


def test_a_rung_view_trains_on_its_rows_and_the_top_rung_on_the_run_folds(multiclass_df):
    data, *_ = trial_data(multiclass_df, "label", recipes=("tree",))
    plan = plan_rungs(data.folds, data.y, seed=0, min_rows=10)
    view = plan.view(data, 0)
    assert len(view.folds) == 1 and np.array_equal(view.folds[0][0], plan.rungs[0].train_rows)
    assert view.y is data.y and view.features is data.features  # no copy of the matrices
    assert plan.view(data, plan.top) is data and plan.view(data, None) is data
    assert "rung 1 of 3" in plan.describe(0) and "the run's folds" in plan.describe(2)


def test_a_time_limited_search_caps_each_lower_rung_in_proportion_to_its_rows():
    from tuning.trainable import TrialSettings, _deadline

    folds, y = _folds(9000)
    plan = plan_rungs(folds, y, seed=0, min_rows=100)
    assert plan.time_cap(0) is None  # a trial budget: no cap
    capped = plan.with_time_caps(270.0)
    assert capped.time_caps == (10.0, 30.0) and capped.time_cap(2) is None
    assert capped.summary().endswith("eta=3, at most 10 / 30 s")
    settings = TrialSettings(deadline=1000.0, rungs=capped)
    assert _deadline(settings, 0, 500.0) == 510.0 and _deadline(settings, 1, 500.0) == 530.0
    assert _deadline(settings, 1, 990.0) == 1000.0  # never past the search's deadline
    assert _deadline(settings, 2, 500.0) == 1000.0  # the top rung trains until the deadline


def test_a_config_climbs_when_it_ranks_in_the_top_third_of_its_rung():
    from tuning.rungs import next_promotion

    order = {c: i for i, c in enumerate("abcdefg")}
    scores = [{"a": 0.5, "b": 0.9}, {}, {}]
    promoted: list[set[str]] = [set(), set(), set()]
    assert next_promotion(scores, promoted, 3, order) is None  # 2 results: floor(2/3) = 0 go up
    scores[0]["c"] = 0.7
    assert next_promotion(scores, promoted, 3, order) == ("b", 0)
    promoted[0].add("b")
    assert next_promotion(scores, promoted, 3, order) is None  # b already climbed, a and c are not top
    scores[0].update({"d": 0.1, "e": 0.2, "f": 0.95})
    assert next_promotion(scores, promoted, 3, order) == ("f", 0)  # 6 results: the top 2 are f, b
    # higher rungs first; ties go to the config proposed first
    scores[1].update({"b": 0.8, "f": 0.8, "c": 0.1})
    assert next_promotion(scores, promoted, 3, order) == ("b", 1)
    # the top rung promotes nothing
    assert next_promotion([{}, {}, {"x": 1.0, "y": 1.0, "z": 1.0}], [set()] * 3, 3, {}) is None


class _Proposer:
    """A stand-in for TPE: proposes c0, c1, ... and remembers what it was told."""

    metric, mode = "best_objective", "max"

    def __init__(self) -> None:
        self.n, self.told = 0, []

    def suggest(self, trial_id):
        self.n += 1
        return {"family": "lightgbm", "lightgbm.num_leaves": self.n}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append(trial_id)

    def on_trial_result(self, trial_id, result):
        pass


def _final(objective: float) -> dict:
    return {"best_objective": objective, "done_training": True}


def test_the_searcher_anchors_one_config_at_the_top_and_promotes_the_best_of_each_rung():
    from tuning.rungs import RowRungs

    inner = _Proposer()
    rungs = RowRungs(inner, n_rungs=3, eta=3)
    first = rungs.suggest("t0")
    assert first[RUNG_KEY] == 2  # the first config goes straight to the top rung
    assert [rungs.suggest(f"t{i}")[RUNG_KEY] for i in (1, 2)] == [0, 0]  # the anchor still runs
    rungs.on_trial_complete("t0", result={"failed": True}, error=False)  # the anchor failed ...
    assert rungs.suggest("t3")[RUNG_KEY] == 2  # ... so the next proposal takes its place
    rungs.on_trial_complete("t3", result=_final(0.9))
    for tid, obj in (("t1", 0.3), ("t2", 0.6)):
        rungs.on_trial_complete(tid, result=_final(obj))
    assert rungs.suggest("t4")[RUNG_KEY] == 0  # two rung-0 results: nobody climbs yet
    rungs.on_trial_complete("t4", result=_final(0.1))
    promo = rungs.suggest("t5")
    assert promo[RUNG_KEY] == 1 and promo["lightgbm.num_leaves"] == 3  # t2's config, the best of 3
    assert inner.told == ["t0", "t3", "t1", "t2", "t4"]  # only its own proposals reach TPE
    rungs.on_trial_complete("t5", result=None, error=True)  # e.g. the budget guard declined it
    rungs.on_trial_complete("t5-skip", result=None, error=True)
    assert "t5" not in inner.told
    assert rungs.suggest("t6")[RUNG_KEY] == 0  # a declined promotion is not offered again
    # the state survives a resume
    fresh = RowRungs(_Proposer(), n_rungs=3, eta=3)
    fresh.set_state(rungs.get_state())
    assert fresh.scores == rungs.scores and fresh.promoted == rungs.promoted and fresh.anchored


def test_auto_turns_row_fidelity_on_for_a_big_table_with_a_time_limit_only():
    cfg = SearchConfig()
    on, why = cfg.resolve_row_fidelity(ROW_FIDELITY_MIN_ROWS, timed=True)
    assert on and "20,000 training rows >= 20,000" in why
    on, why = cfg.resolve_row_fidelity(ROW_FIDELITY_MIN_ROWS - 1, timed=True)
    assert not on and "19,999 training rows < 20,000" in why
    assert not cfg.resolve_row_fidelity(10**6, timed=False)[0]
    assert not SearchConfig(strategy="hyperband").resolve_row_fidelity(10**6, timed=True)[0]
    forced = SearchConfig(row_fidelity="on")
    assert forced.resolve_row_fidelity(10, timed=False) == (True, "row_fidelity='on'")
    assert not SearchConfig(row_fidelity="off").resolve_row_fidelity(10**6, timed=True)[0]
    with pytest.raises(ConfigError, match="row_fidelity='on' works with the strategies"):
        SearchConfig(strategy="grid", row_fidelity="on")
    with pytest.raises(ConfigError, match=r"row_fidelity must be one of \['auto', 'on', 'off'\]"):
        SearchConfig(row_fidelity="yes")


def test_auto_leaves_a_small_table_on_all_rows_and_logs_why(binary_df, caplog):
    from tuning.rungs import setup_rungs
    from tuning.strategies import make_strategy

    data, *_ = trial_data(binary_df, "label", recipes=("tree",))
    families = {"lightgbm": get_family("lightgbm")}
    strategy = make_strategy(SearchConfig(), families, data.task, seed=0, max_trials=10)
    searcher, scheduler = strategy.search_alg, strategy.scheduler
    with caplog.at_level(logging.INFO, logger="tuning.rungs"):
        plan, note = setup_rungs(strategy, SearchConfig(), data, budget_s=60.0, seed=0)
    assert plan is None and strategy.search_alg is searcher and strategy.scheduler is scheduler
    assert "row fidelity off: 300 training rows < 20,000" in caplog.text and note in caplog.text
    # forced on, a table this small has no rung of MIN_RUNG_ROWS rows either
    plan, note = setup_rungs(strategy, SearchConfig(row_fidelity="on"), data, budget_s=60.0, seed=0)
    assert plan is None and "leave no rung of at least 2,000 rows" in note


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    s = X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3] + 0.5 * rng.normal(size=n)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    df["label"] = np.select([s < -0.5, s < 0.7], ["lo", "mid"], "hi")
    return df


@pytest.mark.slow
@pytest.mark.ray
def test_a_fit_climbs_the_rungs_and_only_top_rung_trials_join_the_ensemble(
    ray_session, tmp_path, monkeypatch
):
    import automl.row_rungs as row_rungs

    monkeypatch.setattr(row_rungs, "MIN_RUNG_ROWS", 50)  # rungs of 89 and 267 of 800 training rows
    df = _table(1000, 0)
    # a first config LightGBM rejects (num_leaves must be > 1): the anchor passes to the next one
    prev = tmp_path / "prev"
    prev.mkdir()
    bad = {"rank": 1, "model": "lightgbm_001", "family": "lightgbm", "status": "completed"}
    pd.DataFrame([{**bad, "params": json.dumps({"num_leaves": 1})}]).to_csv(prev / "leaderboard.csv")
    boards, infos = [], []
    for i in range(2):
        run = AutoML(
            write_report=False,
            target="label",
            validation=ValidationConfig(strategy="holdout"),
            search=SearchConfig(
                max_trials=11, families=("lightgbm",), row_fidelity="on", warm_start=str(prev)
            ),
            output_dir=tmp_path / f"r{i}",
            seed=5,
        ).fit(df)
        boards.append(run.leaderboard())
        infos.append(run.run_info_)
    board, info = boards[0], infos[0]
    assert info["search_notes"][0].startswith("row fidelity on (row_fidelity='on'): rungs 89 -> 267 rows")
    trials = board[board["trial_id"].notna() & (board["family"] == "lightgbm")]
    trials = trials[~trials["status"].isin(["refit", "skipped"])]
    assert len(trials) == 11
    failed = trials[trials["status"] == "failed"]
    assert len(failed) == 1 and "num_leaves" in failed.iloc[0]["error"]
    lower = trials[trials["status"] == "stopped"]
    assert lower["stop_reason"].str.contains(r"row fidelity rung [12] of 3: (?:89|267) training rows").all()
    assert lower["stop_reason"].str.contains("rung 1 of 3: 89 training rows, 89 validation rows").sum() >= 6
    assert lower["stop_reason"].str.contains("; promoted").sum() >= 2
    top = trials[trials["status"] == "completed"]
    assert len(top) >= 1 and not top["stop_reason"].str.contains("row fidelity").any()
    # every top-rung config came from the anchor or climbed the lower rungs
    assert len(trials.drop_duplicates("params")) < len(trials)
    for members in board.loc[board["family"] == "ensemble", "members"]:
        assert set(json.loads(members or "{}")) <= set(top["model"])
    assert {m.removesuffix("_refit") for m in info["members"]} <= set(top["model"])
    # the same seed gives the same leaderboard
    cols = ["model", "params", "score_val", "status", "stop_reason"]
    a, b = (x[x["trial_id"].notna()].sort_values("model")[cols].reset_index(drop=True) for x in boards)
    assert a.equals(b), (a, b)


def test_the_budget_guard_estimates_each_rung_apart():
    from tuning.budget import BudgetGuard, _family

    folds, y = _folds(9000)
    plan = plan_rungs(folds, y, seed=0, min_rows=100)
    guard = BudgetGuard(_Proposer(), deadline=0.0, costs={"lightgbm": 1.0, "xgboost": 2.0}, rungs=plan)
    assert _family({"family": "xgboost", RUNG_KEY: 1}) == "xgboost@1" and _family({"family": "mlp"}) == "mlp"
    guard.durations = {"lightgbm@0": [2.0], "lightgbm@2": [10.0]}
    assert guard.estimate("lightgbm@2") == 10.0
    assert guard.estimate("xgboost@2") == pytest.approx(20.0)  # from the top rung, not 2 s x 9 x 2
    assert guard.estimate("xgboost@0") == pytest.approx(4.0)
    # no trial on rung 1 yet: the median cost per unit of every rung (18 and 10 per top-rung unit)
    assert guard.estimate("xgboost@1") == pytest.approx(14.0 * 2 * plan.share(1))


RESUMABLE_FIT = """
import sys
import automl.row_rungs
automl.row_rungs.MIN_RUNG_ROWS = 50
from automl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _finished(run_dir) -> dict[str, float]:
    """Trials whose final report is saved in a checkpoint (every rung's), and its mtime."""
    return {
        p.parent.parent.name: p.stat().st_mtime
        for p in (run_dir / "search").glob("*/checkpoint_*/final_metrics.json")
    }


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_fit_with_row_fidelity_resumes_without_repeating_finished_rungs(tmp_path):
    """The suite's local kill-and-resume test (a run directory without --storage; the same with
    s3:// storage through `ray job submit` is in test_cluster.py): the fit's driver is SIGKILLed
    midway, `--resume` finishes it without training any finished trial or rung again."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "run"
    data = Path(__file__).parent / "data" / "adult_small.csv.gz"
    args = [sys.executable, "-c", RESUMABLE_FIT, "fit", str(data), "--target", "class", "--max-trials", "9"]
    args += [
        "--families",
        "lightgbm",
        "--row-fidelity",
        "on",
        "--output",
        str(out),
        "--seed",
        "3",
        "--no-report",
        "--refit",  # refit options are not what this tests (~5 s per fit)
        "no",
    ]
    kill_fit_midway(args, lambda: _finished(out), at_least=3, poll_s=0.3)
    before = _finished(out)
    assert 3 <= len(before) < 9, before
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _finished(out)
    # finished trials, lower rungs too, were not run again; except, at most, the last one to finish
    # before the kill: if it finished after Tune's last experiment snapshot, the restored table
    # still has it running and Tune runs it again (in its own directory, or under a new id: seen
    # on 2026-12-02 on a fresh clone)
    rerun = [trial for trial, mtime in before.items() if after.get(trial) != mtime]
    assert len(rerun) <= 1, rerun
    assert not rerun or before[rerun[0]] == max(before.values()), (rerun, before)
    board = pd.read_csv(out / "leaderboard.csv")
    trials = board[board["trial_id"].notna() & (board["family"] == "lightgbm")]
    trials = trials[~trials["status"].isin(["refit", "skipped"])]
    # a trial that finished between Tune's last snapshot and the kill may run again (see above)
    why = f"{board[['model', 'trial_id', 'status', 'stop_reason']]}\nbefore: {before}\n{done.stderr[-4000:]}"
    assert 9 <= len(trials) <= 10, why
    stopped = trials[trials["status"] == "stopped"]
    assert len(stopped) >= 5 and stopped["stop_reason"].str.contains("row fidelity rung [12] of 3").all()
    assert stopped["stop_reason"].str.contains("rung 1 of 3: 133 training rows").sum() >= 4
    assert (trials["status"] == "completed").sum() >= 1


@pytest.mark.slow
@pytest.mark.ray
def test_a_time_limited_fit_caps_the_lower_rungs_and_keeps_its_budget(ray_session, tmp_path, monkeypatch):
    import time

    import automl.row_rungs as row_rungs

    monkeypatch.setattr(row_rungs, "MIN_RUNG_ROWS", 100)
    t = time.time()
    run = AutoML(
        write_report=False,
        target="label",
        time_limit=25,
        validation=ValidationConfig(strategy="holdout"),
        search=SearchConfig(families=("lightgbm", "xgboost"), row_fidelity="on"),
        output_dir=tmp_path / "run",
        seed=1,
    ).fit(_table(3000, 1))
    assert time.time() - t < 25 + 10  # the margin a loaded machine needs (test_on_time.py)
    note = run.run_info_["search_notes"][0]
    assert note.startswith("row fidelity on (row_fidelity='on'): rungs 267 -> 800 rows") and "at most" in note
    board = run.leaderboard()
    trials = board[board["trial_id"].notna() & board["family"].isin(["lightgbm", "xgboost"])]
    trials = trials[~trials["status"].isin(["refit", "skipped"])]
    stopped = trials[(trials["status"] == "stopped") & trials["score_val"].notna()]
    rung = stopped["stop_reason"].str.contains("row fidelity rung [12] of 3")
    # a trial in flight when the search ended to keep time for refitting is stopped by that, and
    # says so (not "early-stopped by the scheduler")
    assert (rung | stopped["stop_reason"].str.startswith("stopped when the search ended: ")).all()
    assert rung.sum() >= 1
    assert (trials["status"] == "completed").sum() >= 1
    assert run.predict(_table(5, 2)).isin(["lo", "mid", "hi"]).all()
