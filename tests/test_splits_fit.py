"""Time-ordered and grouped validation in real tiny fits: folds.json proves no validation row
precedes a training row in time, and no group sits on both sides of a fold."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import DATA

from automl import AutoML, SearchConfig, ValidationConfig
from automl.data import load_table
from automl.exceptions import DataError

pytestmark = pytest.mark.ray

TINY = SearchConfig(max_trials=2, families=("lightgbm",))


def _folds(run: AutoML) -> dict:
    folds = json.loads((run.run_dir_ / "folds.json").read_text())
    assert folds == {**run.run_info_["validation"], "assignment": folds["assignment"]}  # run.json agrees
    return folds


def test_time_column_fit_trains_on_the_past_and_validates_on_the_future(ray_session, tmp_path):
    df = load_table(DATA / "bike_small.csv.gz").sample(frac=1, random_state=0)  # order must not matter
    run = AutoML(
        write_report=False,
        target="cnt",
        validation=ValidationConfig(time_column="dteday", n_folds=3),
        search=TINY,
        output_dir=tmp_path / "bike",
        seed=0,
    ).fit(df)
    folds = _folds(run)
    assert folds["kind"] == "time-kfold" and folds["column"] == "dteday" and folds["n_folds"] == 3
    when = pd.to_datetime(df["dteday"]).to_numpy()
    assignment = np.asarray(folds["assignment"])
    assert (assignment == -1).any()  # the earliest rows only ever train
    for k in range(folds["n_folds"]):
        train, valid = assignment < k, assignment == k  # forward chaining: every earlier block trains
        assert folds["training_rows"][k] == train.sum() and folds["validation_rows"][k] == valid.sum()
        assert when[train].max() < when[valid].min(), f"fold {k} validates on rows before its training rows"
    # the time column is also a feature, expanded into date parts
    assert "dteday" in run.predictor_.schema.names
    names = run.predictor_.preprocessors["tree"].transform(df.head(3)).names
    assert {"dteday.year", "dteday.month", "dteday.dayofweek", "dteday.elapsed_days"} <= set(names)
    assert run.profile_.column("dteday").role == "time" and "dteday" in run.profile_.feature_columns
    assert run.predict(df.head(5).drop(columns=["cnt"])).notna().all()


def test_group_column_fit_keeps_every_group_on_one_side(ray_session, tmp_path):
    df = load_table(DATA / "nlswork_small.csv.gz")
    run = AutoML(
        write_report=False,
        target="ln_wage",
        validation=ValidationConfig(group_column="idcode", n_folds=3),
        search=TINY,
        output_dir=tmp_path / "nls",
        seed=0,
    ).fit(df)
    folds = _folds(run)
    assert folds["kind"] == "group-kfold" and folds["column"] == "idcode" and folds["n_folds"] == 3
    groups = df["idcode"].to_numpy()
    assignment = np.asarray(folds["assignment"])
    assert (assignment >= 0).all()  # k-fold: every row is validated once
    for k in range(folds["n_folds"]):
        valid = assignment == k
        assert not set(groups[valid]) & set(groups[~valid]), f"fold {k} has a group on both sides"
    assert "idcode" not in run.predictor_.schema.names  # the group is not a feature
    assert run.profile_.column("idcode").role == "group"
    assert not [w for w in run.profile_.warnings if w.code == "identifier"]


@pytest.mark.parametrize(
    "column, bad, message",
    [
        ("dteday", None, r"time column 'dteday' is missing in 3 of 1500 rows"),
        (
            "dteday",
            "someday",
            r"time column 'dteday' has values that are neither dates nor numbers, e.g. 'some",
        ),
    ],
)
def test_bad_time_column_is_a_clear_error_before_any_search(tmp_path, column, bad, message):
    df = load_table(DATA / "bike_small.csv.gz")
    df.loc[[3, 500, 900], column] = bad
    run = AutoML(
        write_report=False,
        target="cnt",
        validation=ValidationConfig(time_column=column),
        search=TINY,
        output_dir=tmp_path / "bad",
    )
    with pytest.raises(DataError, match=message):
        run.profile(df)
    with pytest.raises(DataError, match=message):  # fit fails while profiling, before Ray or a trial starts
        run.fit(df)
    assert not (tmp_path / "bad" / "folds.json").exists()
