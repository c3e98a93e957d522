"""Regression targets: a transform and robust objectives for skewed or heavy-tailed targets, scored
in the original units; every member clipped to the training target's range; plain-data artifact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from automl.exceptions import ConfigError
from automl.metrics import METRICS
from automl.models import all_families, get_family
from automl.predictor import Member, Predictor
from automl.target import TARGET_KEY, OutputStep, TargetTransform, clip_range, plan_target
from automl.training import train_candidate
from tests.helpers import predictor_from, trial_data
from tuning.space import JointSpace, family_portfolio, family_space, portfolio

RMSE = METRICS["rmse"]


def _skewed(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A lognormal price: multiplicative effects of two features (skewness ~3)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, size=n)
    y = np.exp(3.0 + 0.9 * x1 + 0.5 * x2 + rng.normal(scale=0.25, size=n))
    return pd.DataFrame({"x1": x1, "x2": x2, "price": y})


def _summary(y: np.ndarray) -> dict:
    from automl.column_stats import shape_stats

    return shape_stats(np.asarray(y, dtype=float))


def test_the_target_shape_decides_the_transform_offered():
    rng = np.random.default_rng(0)
    skewed = np.exp(rng.normal(size=2000))
    plan = plan_target(skewed, _summary(skewed))
    assert (
        plan.offered == "log1p" and "right-skewed" in plan.reason and "target_transform='none'" in plan.reason
    )
    half = rng.standard_t(3, size=1000)
    heavy = np.concatenate([half, -half])  # symmetric (skewness 0), heavy tails, negative values
    plan = plan_target(heavy, _summary(heavy))
    assert plan.offered == "yeo-johnson" and "heavy-tailed" in plan.reason
    normal = rng.normal(size=2000)
    assert plan_target(normal, _summary(normal)).offered is None
    assert plan_target(skewed, _summary(skewed), setting="none").offered is None
    assert plan_target(np.abs(normal), _summary(normal), setting="log1p").offered == "log1p"
    with pytest.raises(ConfigError, match="non-negative"):
        plan_target(heavy, _summary(heavy), setting="log1p")
    with pytest.raises(ConfigError, match="target_transform must be one of"):
        plan_target(normal, _summary(normal), setting="sqrt")


@pytest.mark.parametrize("name", ["log1p", "yeo-johnson"])
def test_transforms_invert_exactly_and_are_plain_data(name):
    rng = np.random.default_rng(1)
    y = np.exp(rng.normal(size=500)) if name == "log1p" else rng.standard_t(3, size=500) * 100
    t = TargetTransform.fit(name, y)
    np.testing.assert_allclose(t.inverse(t.forward(y)), y, rtol=1e-9, atol=1e-9)
    assert TargetTransform.from_dict(t.to_dict()) == t
    if name == "yeo-johnson":
        assert t.lmbda != 1.0 and t.scale == pytest.approx(np.std(y))


def test_clip_range_and_the_output_step():
    assert clip_range(np.array([10.0, 110.0])) == (5.0, 115.0)  # 5 % of the range on each side
    assert clip_range(np.array([1.0, 101.0]))[0] == 0.0  # a non-negative target stays >= 0
    assert clip_range(np.array([-101.0, -1.0]))[1] == 0.0
    step = OutputStep(TargetTransform(), 0.0, 10.0)
    values, n = step.apply_counted(np.array([-1.0, 5.0, 11.0]))
    assert values.tolist() == [0.0, 5.0, 10.0] and n == 2
    logged = OutputStep(TargetTransform("log1p"), 0.0, 1000.0)
    values, n = logged.apply_counted(np.array([np.log1p(50.0), 400.0]))  # expm1(400) would overflow
    assert values == pytest.approx([50.0, 1000.0]) and n == 1
    assert OutputStep.from_dict(logged.to_dict()) == logged
    free = OutputStep(TargetTransform(), 0.0, 10.0, clip=False)
    assert free.apply_counted(np.array([11.0]))[0].tolist() == [11.0]


def test_a_heavy_tailed_target_is_transformed_and_scored_in_original_units(tmp_path):
    df = _skewed()
    data, pre, schema, prof = trial_data(df, "price", recipes=("tree",))
    plan = data.target_plan
    assert data.task.target_transform == "log1p" and plan.offered == "log1p"
    lgb = get_family("lightgbm")
    base = {**lgb.portfolio(data.task)[0], "n_estimators": 400}
    direct = train_candidate(lgb, {**base, TARGET_KEY: "none"}, data)
    logged = train_candidate(lgb, {**base, TARGET_KEY: "log1p"}, data)
    y = data.y
    # out-of-fold predictions and fold scores are in price units, not log units
    assert np.mean(logged.oof) == pytest.approx(np.mean(y), rel=0.1)
    for (_, va), s in zip(data.folds, logged.fold_scores):
        assert s == pytest.approx(RMSE.score(y[va], logged.oof[va]))
    # where the transform does not matter much, both fits land close together
    assert RMSE.score(y, logged.oof) == pytest.approx(RMSE.score(y, direct.oof), rel=0.15)
    assert np.corrcoef(logged.oof, direct.oof)[0, 1] > 0.95
    assert plan.low <= logged.oof.min() and logged.oof.max() <= plan.high
    # the saved member inverts the transform at predict time, from plain data in predictor.json
    pred = predictor_from(logged, data, pre, schema, prof)
    assert pred.members[0].output.transform.name == "log1p"
    pred.save(tmp_path / "m")
    loaded = Predictor.load(tmp_path / "m")
    rows = df.drop(columns=["price"])
    np.testing.assert_array_equal(pred.predict(rows).to_numpy(), loaded.predict(rows).to_numpy())
    from automl.inference import reference_predict_raw  # the compiled path inverts as the frame path

    np.testing.assert_allclose(loaded.predict_raw(rows)[0], reference_predict_raw(loaded, rows)[0], rtol=1e-9)
    plain = predictor_from(direct, data, pre, schema, prof).predict(rows)
    assert np.corrcoef(loaded.predict(rows), plain)[0, 1] > 0.95
    assert loaded.predict(rows).mean() == pytest.approx(plain.mean(), rel=0.1)
    import json

    member = json.loads((tmp_path / "m" / "predictor.json").read_text())["members"][0]
    assert member["output"]["transform"]["name"] == "log1p" and member["output"]["clip"] is True


def test_yeo_johnson_for_a_target_with_negative_values():
    rng = np.random.default_rng(5)
    df = _skewed(seed=5)
    df["price"] = df["price"] - 40 + rng.standard_t(2, size=len(df))
    data, *_ = trial_data(df, "price", recipes=("linear",))
    assert data.task.target_transform == "yeo-johnson"
    res = train_candidate(get_family("linear"), {"alpha": 1.0, TARGET_KEY: "yeo-johnson"}, data)
    assert np.isfinite(res.oof).all() and data.target_plan.low <= res.oof.min()


def test_no_member_predicts_outside_the_clip_range(regression_df, tmp_path):
    """A linear member asked about a row far outside the training data would extrapolate; its
    prediction is clipped, and the Predictor's validation report says so."""
    data, pre, schema, prof = trial_data(regression_df, "label", recipes=("tree", "linear"))
    plan = data.target_plan
    assert plan.offered is None and plan.clip  # a plain target: clipped all the same
    y = data.y
    assert (plan.low, plan.high) == clip_range(y)
    for name in ("lightgbm", "linear", "knn"):
        fam = get_family(name)
        res = train_candidate(fam, {**fam.portfolio(data.task)[0], "n_estimators": 100}, data)
        for tr, va in data.folds:
            lo, hi = clip_range(y[tr])
            assert lo <= res.oof[va].min() and res.oof[va].max() <= hi
    linear = get_family("linear")
    res = train_candidate(linear, {"alpha": 1.0}, data)
    pred = predictor_from(res, data, pre, schema, prof)
    rows = regression_df.drop(columns=["label"]).head(3).copy()
    rows.loc[rows.index[0], "x1"] = 1e3  # 1000 sd away
    raw, report = pred.predict_raw(rows)
    assert raw[0] == pytest.approx(plan.high) and raw.max() <= plan.high and raw.min() >= plan.low
    assert report.clipped_predictions == {"m1": 1}
    pred.save(tmp_path / "m")
    again, report2 = Predictor.load(tmp_path / "m").predict_raw(rows)
    np.testing.assert_array_equal(raw, again)
    assert report2.to_dict()["clipped_predictions"] == {"m1": 1}


def test_the_ensemble_of_clipped_members_stays_in_range(regression_df):
    data, pre, schema, prof = trial_data(regression_df, "label", recipes=("linear",))
    linear = get_family("linear")
    res = train_candidate(linear, {"alpha": 1.0}, data)
    out = data.output_step(res.config)
    members = [Member(f"m{i}", "linear", "linear", 0.5, res.models, res.config, False, out) for i in (1, 2)]
    pred = Predictor(
        target="label",
        problem_type=prof.problem,
        classes=None,
        metric="rmse",
        schema=schema,
        preprocessors=pre,
        members=members,
        task=data.task,
    )
    rows = regression_df.drop(columns=["label"]).head(4).assign(x1=[-1e4, 1e4, 0.0, 1.0])
    raw, report = pred.predict_raw(rows)
    assert raw.min() >= out.low and raw.max() <= out.high and report.clipped_predictions == {"m1": 2, "m2": 2}


@pytest.mark.parametrize(
    ("family", "objective"),
    [("lightgbm", "huber"), ("lightgbm", "fair"), ("xgboost", "reg:pseudohubererror"), ("catboost", "Huber")],
)
def test_robust_objectives_train_with_a_scale_sized_by_the_target(family, objective):
    data, *_ = trial_data(_skewed(300), "price", recipes=("tree",))
    fam = get_family(family)
    config = {**fam.portfolio(data.task)[0], "objective": objective, "robust_delta": 0.3, "n_estimators": 60}
    assert fam.search_space(data.task)["objective"].categories[-1] in (
        "fair",
        "reg:pseudohubererror",
        "Huber",
    )
    tr, va = data.folds[0]
    X = data.features["tree"]
    learner = fam.learner(config, data.task, X.take(tr), data.y[tr], None, X.take(va), data.y[va])
    scale = 0.3 * np.std(data.y[tr])
    params = getattr(learner, "params", {})
    if family == "lightgbm":
        assert params["alpha" if objective == "huber" else "fair_c"] == pytest.approx(scale)
    elif family == "xgboost":
        assert params["huber_slope"] == pytest.approx(scale)
    else:
        assert params["loss_function"].startswith("Huber:delta=") and "robust_delta" not in params
    res = train_candidate(fam, {**config, TARGET_KEY: "log1p"}, data)
    assert np.isfinite(res.fold_scores).all() and np.isfinite(res.oof).all()


def test_the_search_space_offers_transform_and_robust_objectives_for_a_skewed_target():
    data, *_ = trial_data(_skewed(), "price", recipes=("tree", "linear", "nn"))
    task = data.task
    fams = {n: f for n, f in all_families().items() if f.applies_to(task)}
    for f in fams.values():
        assert family_space(f, task)[TARGET_KEY].categories == ["none", "log1p"]
    assert get_family("lightgbm").search_space(task)["objective"].categories == [
        "regression",
        "huber",
        "fair",
    ]
    points = portfolio(fams, task)
    assert all(p[f"{p['family']}.{TARGET_KEY}"] in ("none", "log1p") for p in points)
    lgb = [p for p in points if p["family"] == "lightgbm"]
    assert [p[f"lightgbm.{TARGET_KEY}"] for p in lgb[:2]] == ["none", "log1p"]
    mlp = family_portfolio(get_family("mlp"), task)
    assert all(c[TARGET_KEY] == "none" for c in mlp)  # the MLP keeps the transform a search choice
    assert set(JointSpace(fams, task).dists["knn"]) == {"n_neighbors", "weights", TARGET_KEY}


def test_classification_and_plain_regression_are_unchanged(binary_df, regression_df):
    for df in (binary_df, regression_df):
        data, *_ = trial_data(df, "label", recipes=("tree",))
        task = data.task
        assert task.target_transform == ""
        for f in all_families().values():
            if f.applies_to(task):
                assert family_space(f, task).keys() == f.search_space(task).keys()
                assert family_portfolio(f, task) == f.portfolio(task)
                assert "objective" not in f.search_space(task)
    data, *_ = trial_data(binary_df, "label", recipes=("tree",))
    assert data.target_plan is None and data.output_step({}) is None
    # plain regression: trees never leave the range, so clipping changes nothing
    data, *_ = trial_data(regression_df, "label", recipes=("tree",))
    unclipped = replace(data, target_plan=plan_target(data.y, {}, clip=False))
    lgb = get_family("lightgbm")
    config = {**lgb.portfolio(data.task)[0], "n_estimators": 100}
    a, b = train_candidate(lgb, config, data), train_candidate(lgb, config, unclipped)
    np.testing.assert_array_equal(a.oof, b.oof)
    assert a.n_clipped == 0
