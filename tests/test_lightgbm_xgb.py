"""LightGBM models predict batches through XGBoost's predictor (automl.models.lightgbm_xgb) with
LightGBM's scores: every problem, rf mode, native categorical splits (unknown and negative codes),
missing values of each LightGBM missing type, LightGBM's zero band and infinities; a model the
conversion does not cover keeps LightGBM's predictor; the form is built only once the rows
predicted pay for it, and survives pickling."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest
from test_fastpath import PROBLEMS
from test_lightgbm_rows import lightgbm_models

from automl.models import lightgbm_trees, lightgbm_xgb
from automl.models.base import raw_to_output
from automl.models.lightgbm_xgb import XGB_ROWS, XGBoostForm, pays


def hard_rows(n_features: int, cat_cols: list[int], n: int = 3000, seed: int = 1) -> np.ndarray:
    """Rows that take LightGBM's corner cases: missing values, zero and its +-1e-35 band,
    infinities, unseen and negative category codes, fractional codes."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    X[rng.random(X.shape) < 0.1] = np.nan
    X[rng.random(X.shape) < 0.05] = 0.0
    X[rng.random(X.shape) < 0.02] = 1e-36
    X[rng.random(X.shape) < 0.02] = -1e-36
    X[rng.random(X.shape) < 0.02] = np.float32(1e-35)  # LightGBM's zero threshold itself
    X[rng.random(X.shape) < 0.02] = -np.float32(1e-35)
    X[rng.random(X.shape) < 0.01] = np.inf
    X[rng.random(X.shape) < 0.01] = -np.inf
    for c in cat_cols:
        codes = rng.integers(-2, 40, n).astype(float)
        codes[rng.random(n) < 0.1] = np.nan
        codes[rng.random(n) < 0.05] += 0.5
        X[:, c] = codes
    return X.astype(np.float32)


def synthetic(params: dict, n_classes: int = 1, rounds: int = 60) -> tuple[lgb.Booster, list[int]]:
    rng = np.random.default_rng(0)
    n = 3000
    X = rng.normal(size=(n, 6))
    X[:, 4] = rng.integers(0, 30, n)
    X[:, 5] = rng.integers(0, 4, n)
    X[rng.random(X.shape) < 0.08] = np.nan
    X[rng.random(X.shape) < 0.1] = 0.0
    signal = (
        np.nan_to_num(X[:, 0]) * 2 + np.sin(3 * np.nan_to_num(X[:, 1])) + (np.nan_to_num(X[:, 4]) % 7 == 0)
    )
    y = signal + rng.normal(scale=0.3, size=n)
    if n_classes == 2:
        y = (y > 0.5).astype(int)
    elif n_classes > 2:
        y = np.digitize(y, [-1, 0.5, 2])
    base = {"verbosity": -1, "num_leaves": 31, "max_cat_to_onehot": 8, "min_data_in_leaf": 5, "seed": 0}
    booster = lgb.train({**base, **params}, lgb.Dataset(X, y, categorical_feature=[4, 5]), rounds)
    return booster, [4, 5]


CASES = {
    "regression": ({"objective": "regression"}, 1),
    "binary": ({"objective": "binary"}, 2),
    "multiclass": ({"objective": "multiclass", "num_class": 4}, 4),
    "rf": ({"objective": "regression", "boosting": "rf", "bagging_fraction": 0.7, "bagging_freq": 1}, 1),
    "missing_as_zero": ({"objective": "regression", "zero_as_missing": True}, 1),
    "no_missing_handling": ({"objective": "regression", "use_missing": False}, 1),
}


@pytest.mark.parametrize("indicators", [True, False], ids=["indicator_columns", "categorical_splits"])
@pytest.mark.parametrize("case", list(CASES))
def test_xgboost_gives_lightgbms_raw_scores(case, indicators, monkeypatch):
    monkeypatch.setattr(lightgbm_trees, "MAX_INDICATORS_PER_TREE", 10**6 if indicators else 0)
    params, n_classes = CASES[case]
    booster, cats = synthetic(params, n_classes)
    k = n_classes if n_classes > 2 else 1
    n_iter = booster.current_iteration() - 5  # a model cut at its best iteration
    form = XGBoostForm.build(booster, n_iter, k)
    if case == "missing_as_zero" and form is None:
        return  # a split sending zero and missing values against zero's side: nothing built (checked below)
    assert form is not None
    assert bool(form.indicators) == indicators  # every case has categorical splits
    X = hard_rows(6, cats)
    assert form.raw(X, 2) is None  # rows with infinities: LightGBM's predictor answers them
    X = X[~np.isinf(X).any(axis=1)]
    X[:50, :4] = np.finfo(np.float32).max  # the largest finite value takes LightGBM's side
    want = booster.predict(X, num_iteration=n_iter, raw_score=True)
    got = form.raw(X, 2).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * (1 + np.abs(want).max()))


def test_a_large_regression_target_keeps_its_precision_and_a_wrong_tree_is_caught(monkeypatch):
    """A target around 1e6: the first trees' constant is added back in float64 (float32 sums of
    it lost about 1 unit), and a conversion that sends missing values the wrong way in some trees
    is refused by the exact leaf check, which a tolerance scaled to 1e6 would not see."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = 1e6 + 20 * np.nan_to_num(X[:, 0]) + 5 * np.sin(np.nan_to_num(X[:, 1])) + rng.normal(size=3000)
    booster = lgb.train({"verbosity": -1, "num_leaves": 31, "seed": 0}, lgb.Dataset(X, y), 300)
    form = XGBoostForm.build(booster, 300, 1)
    assert form is not None
    Q = hard_rows(5, [])
    Q = Q[~np.isinf(Q).any(axis=1)]
    np.testing.assert_allclose(form.raw(Q, 2), booster.predict(Q, raw_score=True), rtol=0, atol=1e-3)

    real_parse = lightgbm_trees.parse

    def wrong_missing_side(text):  # trees 50 and later send missing values to the other side
        parsed = real_parse(text)
        for tree in parsed.trees[50:]:
            tree["default_left"] = (1 - tree["default_left"]).astype(np.uint8)
        return parsed

    monkeypatch.setattr(lightgbm_xgb, "parse", wrong_missing_side)
    assert XGBoostForm.build(booster, 300, 1) is None


def test_zero_as_missing_splits_on_zeros_own_side_are_converted():
    """LightGBM's "Zero" missing type sends zero and missing values to the default side; when that
    is the side zero takes by its value, XGBoost can follow it."""
    booster, cats = synthetic({"objective": "regression", "zero_as_missing": True}, rounds=30)
    lines, zero_splits = [], 0
    for line in booster.model_to_string().splitlines():  # every Zero split: default side = zero's
        if line.startswith("threshold="):
            thresholds = [float(v) for v in line[10:].split()]
        if line.startswith("decision_type="):
            types = [int(v) for v in line[14:].split()]
            for i, (dt, thr) in enumerate(zip(types, thresholds)):
                if dt & 1 == 0 and (dt >> 2) & 3 == 1:
                    types[i] = (dt & ~2) | (2 if thr >= 0 else 0)
                    zero_splits += 1
            line = "decision_type=" + " ".join(map(str, types))
        lines.append(line)
    edited = lgb.Booster(model_str="\n".join(lines) + "\n")
    assert zero_splits > 0
    form = XGBoostForm.build(edited, 30, 1)
    assert form is not None
    X = hard_rows(6, cats)
    X = X[~np.isinf(X).any(axis=1)]
    want = edited.predict(X, raw_score=True)
    np.testing.assert_allclose(form.raw(X, 2), want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))


def test_a_form_the_conversion_does_not_cover_keeps_lightgbm():
    booster, _ = synthetic({"objective": "regression", "linear_tree": True}, rounds=10)
    assert XGBoostForm.build(booster, 10, 1) is None


def test_the_zero_side_rule_refuses_what_xgboost_cannot_express(monkeypatch):
    """Zero and missing values sent to the side zero does not take by value: not built."""
    booster, _ = synthetic({"objective": "regression", "zero_as_missing": True}, rounds=20)
    text = booster.model_to_string()
    flipped = []
    for line in text.splitlines():  # flip every numeric split's default side to the other one
        if line.startswith("decision_type="):
            line = "decision_type=" + " ".join(
                str(int(v) ^ 2) if int(v) & 1 == 0 else v for v in line[14:].split()
            )
        flipped.append(line)
    odd = lgb.Booster(model_str="\n".join(flipped) + "\n")
    assert XGBoostForm.build(odd, 20, 1) is None


@pytest.fixture(scope="module")
def models():
    return lightgbm_models(400, 40)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", ["lightgbm", "random_forest"])
def test_models_switch_to_xgboost_once_it_pays_and_predict_the_same(models, name, problem):
    model = models[(name, problem)]
    n_features = model.booster.num_feature()
    X = hard_rows(n_features, [n_features - 1], n=XGB_ROWS * 4)
    X[np.isinf(X)] = 1e30  # (rows with infinities keep LightGBM: see the test above)

    def lightgbm_scores(dense):
        raw = model.booster.predict(dense, num_iteration=model.n_iterations, raw_score=True, num_threads=1)
        return raw_to_output(raw / model.n_iterations if model.average else raw, model.task.problem_type)

    batch = model._batch()
    trees, splits = batch.trees, batch.splits
    low, needed = 0, 10**9  # the fewest rows that pay for the build
    while needed - low > 1:
        mid = (low + needed) // 2
        low, needed = (low, mid) if pays(mid, trees, splits) else (mid, needed)
    assert needed > len(X)
    batch.form, batch.rows_seen = None, needed - len(X) - 1
    model.predict_dense(X, 2)
    assert batch.form is None  # not paid for yet: LightGBM's predictor answered
    got = model.predict_dense(X, 2)
    assert batch.form is not None  # this call paid for it
    np.testing.assert_allclose(got, lightgbm_scores(X), rtol=1e-5, atol=1e-5)
    # float64 input and small calls keep LightGBM's own predictor
    np.testing.assert_array_equal(
        model.predict_dense(X.astype(np.float64), 2), lightgbm_scores(X.astype(np.float64))
    )

    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(copy.predict_dense(X, 1), got, rtol=1e-6, atol=1e-6)
