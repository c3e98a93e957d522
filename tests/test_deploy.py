"""Deployment options: refit members against their bags, the constraint chooser both ways, the
Pareto front, presets and the constraint settings (no Ray here; the end-to-end fit is in
test_api.py)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from automl import AutoML, EnsembleConfig
from automl.cli import build_parser
from automl.config import FitSpec, ValidationConfig
from automl.deploy import Option, decide, pareto_front
from automl.deploy_stage import _refit_first, _refit_row
from automl.ensemble import fold_scores
from automl.exceptions import ConfigError
from automl.models import get_family
from automl.options import (
    REFITS_ENSEMBLE,
    Candidate,
    DeploymentOption,
    PredictorBuilder,
    ensemble_of_refits,
    single,
)
from automl.prepare import prepare
from automl.refit import Refitter
from automl.training import train_candidate
from automl.trials import TrialRecord
from tests.helpers import signal_frame, trial_data


@pytest.mark.parametrize("regression", [True, False])
def test_refit_member_predicts_close_to_its_bag_on_held_back_rows(regression):
    df = signal_frame(900, 0, regression)
    train, held = df.iloc[:700].reset_index(drop=True), df.iloc[700:].reset_index(drop=True)
    prep = prepare(
        FitSpec("y", validation=ValidationConfig(strategy="kfold", n_folds=4)), train, recipes=("tree",)
    )
    data = prep.data
    family = get_family("lightgbm")
    res = train_candidate(family, {**family.portfolio(data.task)[0], "n_estimators": 400}, data)
    cand = Candidate("lightgbm_001", res, TrialRecord("t1", "lightgbm", {}, "completed"))
    refitter = Refitter(data, "auto", threads=2)  # the search's cores, free again after it
    # boosting rounds grow with the rows: 4-fold trains on 3/4 of them
    assert refitter.iterations(res) == round(res.best_iteration * 4 / 3)
    bag_option = single(cand)
    builder = PredictorBuilder(prep, search_ended_because="test")
    bag = bag_option.build(builder).predict_raw(held.drop(columns=["y"]))[0]
    refit_option = bag_option.refit_variant()
    refit_pred = refit_option.build(builder, refitter)
    assert refit_option.name == "lightgbm_001_refit" and len(refit_pred.members[0].models) == 1
    assert refit_pred.members[0].refit and "iterations" in refitter.notes["lightgbm_001"]
    assert refit_pred.members[0].models[0].booster.params["num_threads"] == 2
    assert data.task.num_threads == 1  # the trials' count is left as it was
    refit = refit_pred.predict_raw(held.drop(columns=["y"]))[0]
    if regression:
        y = held["y"].to_numpy(float)
        gap = np.sqrt(np.mean((refit - bag) ** 2))
        assert gap < 0.15 * y.std(), gap
        rmse_bag, rmse_refit = (np.sqrt(np.mean((p - y) ** 2)) for p in (bag, refit))
        assert rmse_refit < 1.15 * rmse_bag
    else:
        gap = np.abs(refit[:, 1] - bag[:, 1]).mean()
        assert gap < 0.08, gap
        agree = (refit.argmax(axis=1) == bag.argmax(axis=1)).mean()
        assert agree > 0.93, agree


def test_refit_is_skipped_when_its_expected_cost_does_not_fit():
    df = signal_frame(300, 1, True)
    data, *_ = trial_data(df, "y", recipes=("tree",), n_folds=3)
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    res.fit_time_s = 100.0  # as if the bag had taken 100 s: its refit would take ~40 s
    cand = Candidate("m", res, TrialRecord("t", "lightgbm", {}, "completed"))
    import time

    ok, why = Refitter(data, "auto").affordable([cand], time.time() + 5)
    assert not ok and "refit=True forces it" in why
    assert Refitter(data, True).affordable([cand], time.time() + 5)[0]
    assert Refitter(data, "auto").affordable([cand], time.time() + 500)[0]
    assert not Refitter(data, False).enabled


def test_under_a_deadline_each_candidate_is_refit_alone_before_any_option_is_measured():
    import time

    data, *_ = trial_data(signal_frame(300, 1, True), "y", recipes=("tree",), n_folds=3)
    family = get_family("lightgbm")
    fast, slow = (train_candidate(family, family.portfolio(data.task)[0], data) for _ in range(2))
    slow.fit_time_s = 1000.0  # its refit would take far longer than the time left
    a = Candidate("lightgbm_001", fast, TrialRecord("a", "lightgbm", {}, "completed"))
    b = Candidate("lightgbm_002", slow, TrialRecord("b", "lightgbm", {}, "completed"))
    ens = DeploymentOption("weighted_ensemble", "ensemble", fast.oof, [(b, 0.5), (a, 0.5)])
    options = [ens, ens.refit_variant(), single(b), single(b).refit_variant()]
    ranked = [(Option(o.name, 1.0, lambda: None), o) for o in options]
    refitter = Refitter(data, "auto")
    _refit_first(ranked, refitter, None)
    assert refitter.models == {}  # no deadline: refits are built with their options, when measured
    _refit_first(ranked, refitter, time.time() + 60)
    # the ensemble's refit as a whole would not fit; its member that does is refit all the same
    assert set(refitter.models) == {"lightgbm_001"} and len(
        refitter.models["lightgbm_001"].booster.dump_model()
    )
    assert "iterations" in refitter.notes["lightgbm_001"]


def test_an_ensemble_of_the_refit_candidates_stands_in_when_a_member_was_not_refit_in_time():
    import time

    spec = FitSpec("y", validation=ValidationConfig(strategy="kfold", n_folds=3))
    prep = prepare(spec, signal_frame(300, 1, True), recipes=("tree",))
    data, metric = prep.data, prep.metric
    family = get_family("lightgbm")
    fast, slow, other = (train_candidate(family, family.portfolio(data.task)[0], data) for _ in range(3))
    slow.fit_time_s = 1000.0  # its refit would take far longer than the time left
    # out-of-fold predictions with independent errors: averaging two of them beats either alone
    rng = np.random.default_rng(0)
    for res in (fast, slow, other):
        res.oof = data.y + rng.normal(scale=2.0, size=len(data.y))
    a, b, c = (
        Candidate(f"lightgbm_00{i}", res, TrialRecord(str(i), "lightgbm", {}, "completed"))
        for i, res in enumerate((fast, slow, other), start=1)
    )
    ens = DeploymentOption(
        "weighted_ensemble",
        "ensemble",
        (fast.oof + slow.oof + other.oof) / 3,
        [(a, 1 / 3), (b, 1 / 3), (c, 1 / 3)],
    )
    options = [ens, single(a), ens.refit_variant(), single(a).refit_variant()]
    refitter = Refitter(data, "auto")
    mask = prep.folds.oof_mask
    kw = {"size": 25, "mask": mask, "deadline": time.time() + 60}
    assert ensemble_of_refits(options, refitter, data.y, metric, **kw) is None  # nothing refit yet
    _refit_first([(Option(o.name, 1.0, lambda: None), o) for o in options], refitter, time.time() + 60)
    assert set(refitter.models) == {"lightgbm_001", "lightgbm_003"}  # lightgbm_002: no time
    partial = ensemble_of_refits(options, refitter, data.y, metric, **kw)
    assert partial is not None and partial.name == REFITS_ENSEMBLE and partial.own_estimate
    assert {cand.name for cand in partial.candidates} == {"lightgbm_001", "lightgbm_003"}
    assert sum(w for _, w in partial.parts) == pytest.approx(1.0)
    # its estimate is its own members' out-of-fold score, better than either member's alone
    own = metric.score(data.y[mask], partial.oof[mask])
    assert own < min(metric.score(data.y[mask], r.oof[mask]) for r in (fast, other))
    pred = partial.build(PredictorBuilder(prep, search_ended_because="test"), refitter)
    assert [len(m.models) for m in pred.members] == [1, 1] and all(m.refit for m in pred.members)
    assert np.isfinite(pred.predict_raw(signal_frame(20, 2, True).drop(columns=["y"]))[0]).all()
    opt = Option(partial.name, 1.0, lambda: None)
    opt.predictor = pred
    row = _refit_row(partial, None, opt, refitter, metric)
    assert row.score_val == pytest.approx(np.mean(fold_scores(partial.oof, data, metric)))
    assert row.status == "refit" and row.stop_reason.endswith(
        "(score_val: its members' bags, weighted alike)"
    )
    # the missing member's refit fits before the deadline after all: the refit ensemble is built whole
    slow.fit_time_s = 0.01
    assert ensemble_of_refits(options, refitter, data.y, metric, **kw) is None
    slow.fit_time_s = 1000.0
    # every member of the ensemble refit: the refit ensemble itself is offered, no stand-in
    refitter.model(b)
    assert ensemble_of_refits(options, refitter, data.y, metric, **kw) is None


def _option(name: str, objective: float, latency: float, size: float, prefer: int = 0) -> Option:
    opt = Option(name, objective, lambda: None, prefer=prefer)
    opt.predictor = object()  # decide() only hands it back
    opt.measured = {"latency_ms": latency, "latency_p99_ms": 2 * latency, "rows_per_s": 1e4, "size_mb": size}
    return opt


def _order() -> list[Option]:
    return [
        _option("weighted_ensemble", 0.95, 9.0, 60.0),
        _option("weighted_ensemble_refit", 0.95, 2.5, 14.0),
        _option("lightgbm_001", 0.94, 3.0, 30.0),
        _option("lightgbm_001_refit", 0.94, 0.8, 6.0),
        _option("linear_002", 0.90, 0.3, 0.1),
    ]


def test_chooser_takes_the_best_score_that_meets_the_constraints():
    order = _order()
    choice = decide(order, max_latency_ms=2.0, max_model_mb=None)
    assert choice.option.name == "lightgbm_001_refit" and choice.met is True
    assert "weighted_ensemble (9.00 ms/row > 2 ms)" in choice.reason
    choice = decide(order, max_latency_ms=3.0, max_model_mb=10.0)
    assert choice.option.name == "weighted_ensemble_refit" or choice.option.name == "lightgbm_001_refit"
    assert choice.option.name == "lightgbm_001_refit"  # the ensemble refit weighs 14 MB
    assert decide(order, max_latency_ms=None, max_model_mb=None).option.name == "weighted_ensemble"


def test_chooser_keeps_the_fastest_when_nothing_meets_and_says_so():
    order = _order()
    choice = decide(order, max_latency_ms=0.1, max_model_mb=None)
    assert choice.option.name == "linear_002" and choice.met is False
    assert "no option meets the constraints (max_latency_ms=0.1): kept the fastest" in choice.reason
    assert "lightgbm_001_refit (0.80 ms/row > 0.1 ms)" in choice.reason
    # only a size constrained: the smallest
    choice = decide(order, max_latency_ms=None, max_model_mb=0.01)
    assert choice.option.name == "linear_002" and "kept the smallest" in choice.reason
    # nothing measured before the deadline: the best score, and the reason says it is unmeasured
    for o in order:
        o.measured = {}
    choice = decide(order, max_latency_ms=2.0, max_model_mb=None)
    assert choice.option.name == "weighted_ensemble" and "could be measured" in choice.reason


def test_the_best_option_is_measured_first_then_the_lean_ones(monkeypatch):
    import automl.deploy as deploy

    measured: list[str] = []

    def fake_measure(pred, sample, budget_s, sizes):  # the order is under test, not the timing
        measured.append(pred)
        return {"latency_ms": 1.0, "latency_p99_ms": 2.0, "rows_per_s": 1e4, "size_mb": 1.0}

    monkeypatch.setattr(deploy, "measure", fake_measure)
    monkeypatch.setattr(deploy, "setup_s", lambda pred: 0.0)  # no joint predictor to build
    names = ["weighted_ensemble", "weighted_ensemble_refit", "lightgbm_001", "lightgbm_001_refit", "knn"]
    order = [Option(n, 1.0 - i / 10, lambda n=n: n, lean=n.endswith("_refit")) for i, n in enumerate(names)]
    deploy.measure_all(order, pd.DataFrame({"x": [1.0]}), deadline=None)
    assert measured == [
        "weighted_ensemble",
        "weighted_ensemble_refit",
        "lightgbm_001_refit",
        "lightgbm_001",
        "knn",
    ]
    # a deadline that leaves time for three: the default and the lean ones, not the bag
    measured.clear()
    order = [Option(o.name, o.objective, o.build, lean=o.lean) for o in order]
    clock = iter([100.0] * 6 + [109.9] * 4)  # two readings per measured option, one per skipped
    monkeypatch.setattr(deploy, "time", SimpleNamespace(time=lambda: next(clock)))  # deploy's clock only
    deploy.measure_all(order, pd.DataFrame({"x": [1.0]}), deadline=110.0)
    assert measured == ["weighted_ensemble", "weighted_ensemble_refit", "lightgbm_001_refit"]
    assert "no time left" in order[2].note and not order[2].measured  # lightgbm_001, the bag
    # a short time left shared by many options: the best lean option is measured, not skipped for
    # an equal share below MIN_MEASURE_S while smaller ones after it are measured
    measured.clear()
    budgets: list[float] = []
    monkeypatch.setattr(deploy, "measure", lambda p, s, b, z: budgets.append(b) or fake_measure(p, s, b, z))
    many = [*names, *(f"bag_{i}" for i in range(5))]
    order = [Option(n, 1.0 - i / 20, lambda n=n: n, lean=n.endswith("_refit")) for i, n in enumerate(many)]
    readings = [100.0, 100.0, 108.0, 108.0, 108.6, 108.6, 109.2, 109.2] + [109.9] * 20
    clock = iter(readings)
    monkeypatch.setattr(deploy, "time", SimpleNamespace(time=lambda: next(clock)))
    deploy.measure_all(order, pd.DataFrame({"x": [1.0]}), deadline=110.0)
    assert measured[:3] == ["weighted_ensemble", "weighted_ensemble_refit", "lightgbm_001_refit"]
    assert budgets[1] == pytest.approx(deploy.MIN_MEASURE_S)  # 2 s left for 9 options: its minimum
    assert all(b >= deploy.MIN_MEASURE_S for b in budgets)


def test_lean_options_go_first_when_the_best_ones_first_call_builds_for_long(monkeypatch):
    """wine_quality's case: the best option's first one-row call builds its bags' joint table
    (seconds), so with little time left the lean options are measured before it."""
    import automl.deploy as deploy

    measured: list[str] = []
    monkeypatch.setattr(
        deploy, "measure", lambda p, s, b, z: measured.append(p) or {"latency_ms": 1.0, "size_mb": 1.0}
    )
    monkeypatch.setattr(deploy, "setup_s", lambda pred: 3.4 if pred == "weighted_ensemble" else 0.0)
    names = ["weighted_ensemble", "weighted_ensemble_refit", "xgboost_002", "xgboost_002_refit"]

    last: list[Option] = []

    def run(left: float) -> list[str]:
        measured.clear()
        order = last[:] = [
            Option(n, 1.0 - i / 10, lambda n=n: n, lean=n.endswith("_refit")) for i, n in enumerate(names)
        ]
        monkeypatch.setattr(deploy, "time", SimpleNamespace(time=lambda: 100.0))
        deploy.measure_all(order, pd.DataFrame({"x": [1.0]}), deadline=100.0 + left)
        return measured

    assert run(left=5.0) == [
        "weighted_ensemble_refit",
        "xgboost_002_refit",
        "weighted_ensemble",
        "xgboost_002",
    ]
    assert run(left=60.0) == [
        "weighted_ensemble",
        "weighted_ensemble_refit",
        "xgboost_002_refit",
        "xgboost_002",
    ]
    # less time left than the build itself: the best option is not measured, and says why
    measured_names = run(left=3.0)
    assert measured_names == ["weighted_ensemble_refit", "xgboost_002_refit", "xgboost_002"]
    assert "its first call would build for ~3.4s, 3.0s were left" in last[0].note


def test_joint_setup_is_estimated_until_the_joint_predictor_is_built(monkeypatch):
    """XGBoost bags: the estimate is their trees times the measured cost per tree, and 0 once
    this process has built the table (the deployment stage measures several options over it)."""
    from automl.fastpath import joint_setup_s
    from automl.models import xgboost_trees
    from automl.models.xgboost import TABLE_S_PER_TREE
    from automl.models.xgboost_trees import WALK_COMPILE_S, WALK_ENV

    df = signal_frame(300, 1, True)
    prep = prepare(
        FitSpec("y", validation=ValidationConfig(strategy="kfold", n_folds=2)), df, recipes=("tree",)
    )
    family = get_family("xgboost")
    res = train_candidate(family, {**family.portfolio(prep.data.task)[0], "n_estimators": 30}, prep.data)
    pred = single(Candidate("xgboost_001", res, TrialRecord("t1", "xgboost", {}, "completed"))).build(
        PredictorBuilder(prep, search_ended_because="test")
    )
    bag = pred.members[0].models
    assert len(bag) == 2
    trees_s = sum(m.n_iterations for m in bag) * TABLE_S_PER_TREE
    monkeypatch.setattr(xgboost_trees, "_WALK", None)  # as in a new process: the walk not compiled
    with monkeypatch.context() as m:  # a process started with AUTOML_TREE_WALK=numpy never compiles it
        m.setenv(WALK_ENV, "numpy")
        assert joint_setup_s(pred) == pytest.approx(trees_s) and xgboost_trees.warm_walk() is None
    monkeypatch.setattr(xgboost_trees, "_WALK", None)
    assert joint_setup_s(pred) == pytest.approx(WALK_COMPILE_S + trees_s)  # the first table compiles it
    thread = xgboost_trees.warm_walk()  # what a fit starts before its search
    assert thread is not None
    thread.join(60)
    assert xgboost_trees.walk_compiled_yet() and xgboost_trees.warm_walk() is None
    assert joint_setup_s(pred) == pytest.approx(trees_s)
    pred.predict(df.drop(columns=["y"]).head(1))  # a one-row call builds the table
    assert joint_setup_s(pred) == 0.0 and xgboost_trees.walk_compiled_yet()
    assert type(bag[0]).joint_setup_s(bag) == pytest.approx(trees_s)  # another bag: no compiling


def test_pareto_front_of_score_against_latency():
    points = [(0.95, 9.0), (0.95, 2.5), (0.94, 3.0), (0.94, 0.8), (0.90, 0.3), (0.89, 0.3), (0.90, 0.3)]
    assert pareto_front(points) == [False, True, False, True, True, False, True]
    assert pareto_front([(1.0, 1.0)]) == [True]


def test_constraints_presets_and_former_names():
    run = AutoML(target="y", presets="fast_inference")
    ens = run._spec().ensemble
    assert (ens.max_latency_ms, ens.max_model_mb, ens.stack_levels) == (2.0, 20.0, 0)
    # a value the user set is kept
    ens = (
        AutoML(target="y", presets="fast_inference", ensemble=EnsembleConfig(max_latency_ms=5))
        ._spec()
        .ensemble
    )
    assert (ens.max_latency_ms, ens.max_model_mb) == (5, 20.0)
    with pytest.raises(ConfigError, match="unknown preset 'fastest'; choose from"):
        AutoML(target="y", presets="fastest")._spec()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        old = EnsembleConfig(max_predict_latency_ms=3, max_model_size_mb=40)
    assert (old.max_latency_ms, old.max_model_mb) == (3, 40) and old.max_predict_latency_ms is None
    assert any("use max_latency_ms" in str(w.message) for w in seen)
    with pytest.raises(ConfigError, match="give only max_latency_ms"):
        EnsembleConfig(max_latency_ms=2, max_predict_latency_ms=3)
    with pytest.raises(ConfigError, match="max_latency_ms must be a positive number"):
        EnsembleConfig(max_latency_ms=0)
    a = build_parser().parse_args(
        ["fit", "t.csv", "--target", "y", "--max-latency-ms", "2", "--max-model-mb", "9"]
    )
    assert (a.max_latency_ms, a.max_model_mb, a.presets) == (2.0, 9.0, None)
    a = build_parser().parse_args(
        ["fit", "t.csv", "--target", "y", "--max-predict-latency-ms", "4", "--presets", "fast_inference"]
    )
    assert (a.max_latency_ms, a.presets) == (4.0, "fast_inference")
