import json

import numpy as np
import pandas as pd
import pytest

from automl.exceptions import ConfigError
from automl.prepare import build_schema
from automl.preprocessing import Preprocessor
from automl.profile import profile_table
from automl.splits import make_folds


@pytest.fixture()
def mixed():
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "cat": rng.choice(["a", "b", "c", "rare"], p=[0.4, 0.3, 0.29, 0.01], size=n),
            "when": pd.date_range("2020-01-01", periods=n, freq="13h").astype(str),
            "text": [f"red fox {i} jumps over dog {i % 3} and cat {i * 7 % 11}" for i in range(n)],
            "y": rng.integers(0, 2, n),
        }
    )
    df.loc[::10, "num"] = np.nan
    df.loc[::15, "cat"] = None
    return df


@pytest.mark.parametrize("recipe", ["tree", "linear", "nn"])
def test_json_state_round_trip_gives_identical_matrix(mixed, recipe):
    schema = build_schema(profile_table(mixed, "y"), mixed)
    pre = Preprocessor(recipe, schema.columns).fit(mixed)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    a, b = pre.transform(mixed), again.transform(mixed)
    np.testing.assert_array_equal(a.num, b.num)
    np.testing.assert_array_equal(a.cat, b.cat)
    assert a.names == b.names
    parts = {n.split(".", 1)[1] for n in a.names if n.startswith("when.")}
    assert parts == {"year", "month", "day", "dayofweek", "dayofyear", "hour", "elapsed_days"}
    assert sum("#h" in n for n in a.names) == pre.steps_[3]["buckets"]  # text hashed into buckets
    levels = next(s["levels"] for s in pre.to_dict()["steps"] if s["name"] == "cat")
    assert "rare" not in levels  # 4 rows: grouped with unseen levels into one code
    rare_rows = (mixed["cat"] == "rare").to_numpy()
    if recipe == "linear":
        col = a.names.index("cat=<rare>")
        assert (a.num[rare_rows, col] == 1).all() and a.num[~rare_rows, col].sum() == 0
    else:
        codes = a.cat[:, a.cat_names.index("cat")]
        assert (codes[rare_rows] == len(levels) + 1).all() and (codes[~rare_rows] <= len(levels)).all()


def test_unseen_and_missing_categories_get_their_own_codes(mixed):
    schema = build_schema(profile_table(mixed, "y"), mixed)
    pre = Preprocessor("tree", schema.columns).fit(mixed)
    new = mixed.head(3).copy()
    new["cat"] = ["a", "never-seen", None]
    codes = pre.transform(new).cat[:, pre.transform(new).cat_names.index("cat")]
    levels = pre.steps_[1]["levels"]
    assert codes[0] == levels.index("a") + 1
    assert codes[1] == len(levels) + 1  # rare/unseen
    assert codes[2] == 0  # missing


def test_linear_recipe_imputes_and_indicates(mixed):
    schema = build_schema(profile_table(mixed, "y"), mixed)
    X = Preprocessor("linear", schema.columns).fit_transform(mixed)
    assert not np.isnan(X.num).any()
    assert "num<missing>" in X.names
    assert X.cat.shape[1] == 0  # categories one-hot encoded into num


def test_kfold_is_stratified_and_covers_every_row():
    y = np.array([0] * 90 + [1] * 10)
    folds = make_folds(100, strategy="kfold", n_folds=5, y=y, seed=0)
    assert (folds.assignment >= 0).all()
    for _, va in folds.folds:
        assert y[va].sum() == 2


def test_time_folds_never_validate_on_the_past():
    t = pd.Series(np.repeat(np.arange(50), 4)).sample(frac=1, random_state=0).to_numpy()
    for strategy in ("holdout", "kfold"):
        folds = make_folds(len(t), strategy=strategy, n_folds=3, time_values=pd.Series(t), seed=0)
        for tr, va in folds.folds:
            assert t[tr].max() < t[va].min()


def test_group_folds_never_share_a_group():
    g = np.repeat(np.arange(40), 5)
    for strategy in ("holdout", "kfold"):
        folds = make_folds(len(g), strategy=strategy, n_folds=4, groups=pd.Series(g), seed=0)
        for tr, va in folds.folds:
            assert not set(g[tr]) & set(g[va])


def test_splits_are_seeded():
    a = make_folds(100, strategy="kfold", n_folds=5, seed=3).assignment
    b = make_folds(100, strategy="kfold", n_folds=5, seed=3).assignment
    c = make_folds(100, strategy="kfold", n_folds=5, seed=4).assignment
    assert (a == b).all() and not (a == c).all()


def test_integer_levels_read_the_same_as_floats_or_json_numbers():
    """An int 0/1 column turns float when a batch has a missing value; its levels must not become unseen."""
    df = pd.DataFrame({"flag": [0, 1] * 100, "code": [3, 7, 9, 11] * 50, "y": [0.0, 1.0] * 100})
    schema = build_schema(profile_table(df, "y"), df)
    assert {c.name: c.kind for c in schema.columns} == {"flag": "boolean", "code": "categorical"}
    pre = Preprocessor("tree", schema.columns).fit(df)
    expected = pre.transform(df.head(4)).cat
    as_float = df.head(4).astype({"flag": float})
    as_float.loc[0, "flag"] = np.nan
    got = pre.transform(as_float).cat
    assert got[0, 0] == 0 and (got[1:] == expected[1:]).all()  # missing, then the same codes
    as_json = pd.DataFrame({"flag": [1, 0.0], "code": [7.0, 3]}, dtype=object)  # numbers as JSON gives them
    assert (pre.transform(as_json).cat == expected[[1, 0]]).all()


def test_time_folds_order_text_dates_by_date_not_by_text():
    days = pd.date_range("2010-11-01", periods=120, freq="D")
    # as text, '12/01/2010' sorts after '01/05/2011'
    text = pd.Series(days.strftime("%m/%d/%Y"), name="day").sample(frac=1, random_state=0)
    text = text.reset_index(drop=True)
    folds = make_folds(len(text), strategy="kfold", n_folds=3, time_values=text, seed=0)
    assert folds.column == "day" and folds.kind == "time-kfold"
    when = pd.to_datetime(text, format="%m/%d/%Y").to_numpy()
    for tr, va in folds.folds:
        assert when[tr].max() < when[va].min()


def test_auto_validation_trades_kfold_for_holdout_when_the_budget_is_short():
    from automl.config import ValidationConfig

    v = ValidationConfig()
    assert v.resolve(39_000, n_classes=2, time_limit=60)[0] == "kfold"  # adult at 60 s
    strategy, why = v.resolve(60_000, n_classes=7, time_limit=60)  # covertype at 60 s
    assert strategy == "holdout" and "7 classes" in why and "60 s" in why
    assert v.resolve(60_000, n_classes=7, time_limit=900)[0] == "kfold"
    assert v.resolve(60_000, n_classes=7, time_limit=None)[0] == "kfold"  # trial budget only
    assert v.resolve(150_000)[0] == "holdout"
    assert ValidationConfig(strategy="kfold").resolve(60_000, n_classes=7, time_limit=60) == (
        "kfold",
        "set by the user",
    )


def test_a_holdout_keeps_a_stable_validation_set_and_trains_on_the_rest():
    from automl.config import FitSpec, ValidationConfig
    from automl.prepare import make_run_folds, profile_for

    v = ValidationConfig()
    assert v.holdout_share(20_000)[0] == 0.2  # 4,000 validation rows: a fifth
    share, why = v.holdout_share(60_000)  # covertype's training rows
    assert round(share * 60_000) == 5_000 and "5,000 validation rows" in why
    assert v.holdout_share(1_000_000)[0] == 0.02  # the floor
    assert v.holdout_share(None)[0] == 0.2  # streaming: the row count is not known up front
    assert ValidationConfig(holdout_fraction=0.3).holdout_share(60_000) == (
        0.3,
        "holdout_fraction set by the user",
    )
    with pytest.raises(ConfigError, match="holdout_fraction"):
        ValidationConfig(holdout_fraction=1.5)

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=30_000), "y": rng.integers(0, 2, 30_000)})
    y = df["y"].to_numpy()
    for validation, n_valid in (
        (ValidationConfig(strategy="holdout"), 5_000),
        (ValidationConfig(strategy="holdout", holdout_fraction=0.2), 6_000),
    ):
        spec = FitSpec("y", validation=validation)
        folds = make_run_folds(spec, df, y, profile_for(spec, df), 0)
        ((tr, va),) = folds.folds
        assert len(va) == n_valid and len(tr) == 30_000 - n_valid
        assert abs(y[va].mean() - y.mean()) < 0.01  # still stratified


@pytest.mark.parametrize(
    "values",
    [
        ["a", None, "b", " c", np.nan, "a"],
        [1, 2, None, 3],
        [1.0, 2.5, np.nan, 3.0, float("inf")],
        [True, False, None],
        ["7", 7, 7.0, "x", pd.NA],
    ],
)
def test_request_path_levels_match_the_fitted_levels(values):
    from automl.kinds import level_strings, level_values
    from automl.preprocessing import _SMALL, _codes

    s = pd.Series(values)
    expected = level_strings(s)
    got = level_values(s)
    assert [None if pd.isna(e) else e for e in expected] == list(got)
    levels = sorted({v for v in got if v is not None})[:2]
    small = _codes(s, levels)
    big = _codes(pd.concat([s] * (_SMALL // len(s) + 1), ignore_index=True), levels)[: len(s)]
    np.testing.assert_array_equal(small, big)  # dict path == hash-index path
    assert (small[[v is None for v in got]] == 0).all()
    assert set(small[[v is not None and v not in levels for v in got]]) <= {len(levels) + 1}
