"""The compiled predict path (automl.fastpath) against the DataFrame path it replaces
(automl.inference.reference_predict_raw): for every family and problem type the same predictions
and the same validation report, for a DataFrame and for a mapping of column -> list, including
unknown categories, missing optional columns, extra columns, all-missing rows, one row and a
batch large enough for the multi-threaded and vectorised branches. No Ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import predictor_from, trial_data

from automl import load
from automl.exceptions import SchemaError
from automl.fastpath import PARALLEL_ROWS, FastPath, ReferencePath, records_to_columns
from automl.inference import measure_latency, reference_predict_raw
from automl.models import all_families, get_family
from automl.predictor import Member, Predictor
from automl.stacking import STACK_RECIPE, stack_features
from automl.training import train_candidate

PROBLEMS = ["binary", "multiclass", "regression"]
FAMILIES = list(all_families())
#: small models: the test is about the predict path, not about their quality
SMALL = {"n_estimators": 15}


def small(name: str) -> dict[str, int]:
    return {"max_epochs": 3} if name == "mlp" else SMALL


WORDS = "cheap fast small large red quiet loud bright dark heavy light new old".split()


def rich_frame(n: int, seed: int, kind: str) -> pd.DataFrame:
    """Every column kind: numbers (one sometimes missing), an integer count, text categories
    (sometimes missing), integer category codes, a boolean, dates and free text."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue", "black"], size=n)
    shop = rng.integers(1, 9, size=n)
    flag = rng.random(n) < 0.4
    days = rng.integers(0, 700, size=n)
    signal = (
        1.2 * x1 + (color == "red") + 0.3 * (shop % 3) - flag + days / 700 + rng.normal(scale=0.3, size=n)
    )
    df = pd.DataFrame(
        {
            "x1": x1,
            "x2": rng.uniform(-1, 1, size=n),
            "count": rng.integers(0, 50, size=n),
            "color": color,
            "shop_code": shop,
            "flag": flag,
            "when": (pd.Timestamp("2022-01-01") + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d"),
            "note": [" ".join(rng.choice(WORDS, size=4)) + f" item{i}" for i in range(n)],
        }
    )
    df.loc[rng.random(n) < 0.1, "x2"] = np.nan
    df.loc[rng.random(n) < 0.1, "color"] = None
    if kind == "binary":
        df["label"] = np.where(signal > 0.8, "yes", "no")
    elif kind == "multiclass":
        df["label"] = np.select([signal < 0.0, signal < 1.2], [3, 5], 7)  # integer classes
    else:
        df["label"] = 10 + 3 * signal
    return df


def variants(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Inputs both paths must agree on (the label already dropped)."""
    big = df.iloc[np.arange(PARALLEL_ROWS + 500) % len(df)].reset_index(drop=True)
    unknown = df.head(40).copy()
    unknown.loc[unknown.index[::2], "color"] = "purple"
    unknown.loc[unknown.index[::3], "shop_code"] = 99
    unknown.loc[unknown.index[::5], "when"] = "not a date"
    all_missing = pd.DataFrame({c: [None] * 3 for c in df.columns}).astype({"x1": float, "count": float})
    as_text = df.head(20).astype({"x1": str, "count": str})  # numbers given as text
    as_text.loc[as_text.index[0], "x1"] = " ? "
    many_unknown = unknown.iloc[np.arange(600) % len(unknown)].reset_index(drop=True)
    return {
        "all_rows": df,
        "large_batch_with_unknown_categories": many_unknown,
        "one_row": df.iloc[[7]],
        "large_batch": big,
        "unknown_categories": unknown,
        "missing_optional": df.head(30).drop(columns=["x2", "color"]),
        "extra_columns": df.head(30).assign(extra=1.0, other="z"),
        "all_missing_rows": all_missing,
        "numbers_as_text": as_text,
        "shuffled_columns": df.head(25)[list(df.columns[::-1])],
        "pandas_dtypes": df.head(30).astype(
            {"color": "category", "x2": "Float64", "count": "Int64", "flag": object}
        ),
    }


def assert_same(pred: Predictor, frame: pd.DataFrame) -> None:
    ref, ref_report = reference_predict_raw(pred, frame)
    as_lists = {c: frame[c].tolist() for c in frame.columns}
    as_arrays = {c: frame[c].to_numpy() for c in frame.columns}
    for data in (frame, as_lists, as_arrays):
        fast, report = pred.predict_raw(data)
        np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-7)
        assert report.to_dict() == ref_report.to_dict()


@pytest.fixture(scope="module")
def frames():
    return {p: rich_frame(400, i, p) for i, p in enumerate(PROBLEMS)}


@pytest.fixture(scope="module")
def fitted(frames):
    """Every family on every problem: (predictor, frame without the label)."""
    out = {}
    for problem, df in frames.items():
        data, pre, schema, prof = trial_data(df, "label", n_folds=2)
        for name, family in all_families().items():
            if family.applies_to(data.task):
                res = train_candidate(family, {**family.portfolio(data.task)[0], **small(name)}, data)
                out[(name, problem)] = (
                    predictor_from(res, data, pre, schema, prof),
                    df.drop(columns=["label"]),
                )
    return out


def test_the_frame_has_every_column_kind(frames):
    data, _, schema, _ = trial_data(frames["binary"], "label", recipes=("tree",))
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "x1": "numeric",
        "x2": "numeric",
        "count": "numeric",
        "color": "categorical",
        "shop_code": "categorical",
        "flag": "boolean",
        "when": "datetime",
        "note": "text",
    }
    assert not next(c for c in schema.columns if c.name == "x2").required


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", FAMILIES)
def test_fast_path_equals_the_dataframe_path(fitted, name, problem):
    if (name, problem) not in fitted:
        pytest.skip(f"{name} does not support {problem}")
    pred, df = fitted[(name, problem)]
    assert isinstance(pred._fast_path(), FastPath)
    for frame in variants(df).values():
        assert_same(pred, frame)


def test_public_outputs_keep_order_index_and_label_type(fitted):
    pred, df = fitted[("lightgbm", "multiclass")]
    rows = df.iloc[[5, 2, 9]].set_axis(["c", "a", "b"])
    out = pred.predict(rows)
    assert list(out.index) == ["c", "a", "b"] and out.dtype.kind == "i" and set(out) <= {3, 5, 7}
    ref = pred.decode(reference_predict_raw(pred, rows)[0])
    assert (out.to_numpy() == ref).all()
    by_mapping = pred.predict({c: rows[c].tolist() for c in rows.columns})
    assert list(by_mapping.index) == [0, 1, 2] and (by_mapping.to_numpy() == ref).all()
    proba = pred.predict_proba(rows)
    assert list(proba.columns) == [3, 5, 7] and list(proba.index) == ["c", "a", "b"]


def test_errors_name_the_column_and_value_for_frames_and_mappings(fitted):
    pred, df = fitted[("xgboost", "binary")]
    rows = df.head(4)
    cases = [
        (rows.drop(columns=["x1"]), r"'x1' \(required column is missing\)"),
        (
            rows.astype({"count": object}).assign(count=["1", "2", "lots", "4"]),
            r"'count' \(expected a number, got 'lots' \(1 row",
        ),
        (rows.iloc[:0], "no rows to predict"),
    ]
    for frame, message in cases:
        with pytest.raises(SchemaError, match=message):
            reference_predict_raw(pred, frame)
        with pytest.raises(SchemaError, match=message):
            pred.predict_raw(frame)
        with pytest.raises(SchemaError, match=message):
            pred.predict_raw({c: frame[c].tolist() for c in frame.columns})
    with pytest.raises(SchemaError, match="different lengths"):
        pred.predict_raw({"x1": [1.0, 2.0], "count": [1]})
    with pytest.raises(SchemaError, match="column 'x1': give a sequence"):
        pred.predict_raw({"x1": 1.0})
    with pytest.raises(SchemaError, match=r"\['x1'\] appear more than once"):
        pred.predict_raw(pd.concat([rows, rows[["x1"]]], axis=1))


def test_stacked_and_calibrated_predictor(frames, tmp_path):
    df = frames["binary"]
    data, pre, schema, prof = trial_data(df, "label", recipes=("tree", "linear"))
    lgb, lin = get_family("lightgbm"), get_family("linear")
    base = [
        train_candidate(lgb, {**lgb.portfolio(data.task)[0], **SMALL}, data),
        train_candidate(lin, lin.portfolio(data.task)[0], data),
    ]
    names = ["lightgbm", "linear"]
    X = stack_features([b.oof for b in base], names, data.task.problem_type, data.features["tree"])
    top = train_candidate(lgb, {**lgb.portfolio(data.task)[0], **SMALL}, data, features=X)
    layer1 = [Member(n, b.family, get_family(b.family).recipe, 0.5, b.models) for n, b in zip(names, base)]
    pred = Predictor(
        target="label",
        problem_type=prof.problem,
        classes=data.classes,
        metric=data.metric.name,
        schema=schema,
        preprocessors=pre,
        members=[Member("l2_lightgbm", "lightgbm", STACK_RECIPE, 1.0, top.models)],
        task=data.task,
        stack_layers=[layer1],
        stack_uses_features=True,
        calibration={"method": "temperature", "temperature": 1.7},
    )
    loaded = load(pred.save(tmp_path / "stacked"))
    for frame in variants(df.drop(columns=["label"])).values():
        assert_same(loaded, frame)
    before = loaded.predict_raw(df.head(5))[0]
    loaded.calibration = None  # set after the path was compiled: read at every call
    assert not np.allclose(loaded.predict_raw(df.head(5))[0], before)


def test_measure_latency_reports_every_figure(fitted):
    pred, df = fitted[("lightgbm", "regression")]
    rep = measure_latency(pred, df, calls=20, warmup=2, batch_rows=2000)
    assert 0 < rep.one_row_p50_ms <= rep.one_row_p99_ms and rep.calls == 20
    assert rep.rows_per_s > 0 and rep.batch_rows == 2000 and rep.model_mb > 0 and rep.peak_rss_mb > 50


def test_records_give_the_columns_a_dataframe_of_them_would(fitted):
    pred, df = fitted[("catboost", "multiclass")]
    records = df.head(6).to_dict("records")
    del records[1]["x2"], records[2]["color"], records[4]["note"]
    records[3]["extra"] = "ignored"
    cols = records_to_columns(records)
    assert list(cols)[-1] == "extra" and cols["x2"][1] is None
    fast, report = pred.predict_raw(cols)
    ref, ref_report = reference_predict_raw(pred, pd.DataFrame(records))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-7)
    assert report.to_dict() == ref_report.to_dict() == {"ignored_columns": ["extra"]}


def test_a_step_without_compiled_form_falls_back_to_the_dataframe_path(frames, caplog):
    df = frames["regression"]
    data, pre, schema, prof = trial_data(df, "label", recipes=("tree",), n_folds=2)
    family = get_family("lightgbm")
    pred = predictor_from(
        train_candidate(family, {**family.portfolio(data.task)[0], **SMALL}, data), data, pre, schema, prof
    )
    next(c for c in schema.columns if c.name == "count").kind = "identifier"  # read as a number all the same
    rows = df.drop(columns=["label"]).head(20)
    with caplog.at_level("WARNING", logger="automl.fastpath"):
        out, _ = pred.predict_raw(rows)
    assert isinstance(pred._fast_path(), ReferencePath)
    assert "DataFrame path" in caplog.text and "'identifier'" in caplog.text
    np.testing.assert_array_equal(out, reference_predict_raw(pred, rows)[0])
    np.testing.assert_array_equal(pred.predict_raw({c: rows[c].tolist() for c in rows.columns})[0], out)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_xgboost_bag_table_matches_xgboost(fitted, problem, monkeypatch):
    """A few rows go through one NumPy table of every tree of the bag; it must give XGBoost's
    margins (NaN, unknown category codes and every split kind included), else it is not used."""
    from automl.models import xgboost_trees
    from automl.models.base import ModelInput

    pred, df = fitted[("xgboost", problem)]
    member = pred.members[0]
    joint = type(member.models[0]).joint_predictor(member.models)
    assert joint is not None
    X = pred.preprocessors["tree"].transform(_clean(pred, variants(df)["unknown_categories"]))
    assert xgboost_trees.walk_compiler() is not None  # numba is a dependency
    for compiled in (False, True):  # the NumPy pass and the compiled walk (calls of up to 8 rows)
        margins = joint.table.margins(X.dense(), compiled=compiled)
        for model, own in zip(member.models, margins):
            lib = model.booster.inplace_predict(X.dense(), predict_type="margin")
            np.testing.assert_allclose(own, np.asarray(lib).reshape(own.shape), rtol=1e-6, atol=1e-6)
    assert xgboost_trees.walk_compiled_yet()
    monkeypatch.setattr(xgboost_trees, "_WALK", None)  # as in a new process started with:
    monkeypatch.setenv(xgboost_trees.WALK_ENV, "numpy")  # Numba's memory not wanted
    assert xgboost_trees.walk_compiler() is None and not xgboost_trees.walk_compiled_yet()
    np.testing.assert_array_equal(joint.table.margins(X.dense()[:3])[0], margins[0][:3])  # the NumPy pass
    small = ModelInput(X.take(np.arange(3)))
    assert joint.predict(small, 1) is not None and joint.predict(ModelInput(X), 1) is None  # 40 rows: XGBoost
    monkeypatch.setattr(xgboost_trees, "TOLERANCE", -1.0)  # no table can pass the probe check now
    assert type(member.models[0]).joint_predictor(member.models) is None


def test_predictors_over_the_same_fold_models_share_one_joint_predictor(fitted, monkeypatch):
    """The deployment stage measures several options over the same bags: their XGBoost tables
    are built once per set of model objects (seconds for big bags), not once per Predictor."""
    from automl import fastpath
    from automl.models.xgboost import XGBoostModel

    pred, df = fitted[("xgboost", "binary")]
    models = pred.members[0].models
    built = []
    original = XGBoostModel.joint_predictor.__func__
    counted = classmethod(lambda cls, ms: built.append(len(ms)) or original(cls, ms))
    monkeypatch.setattr(XGBoostModel, "joint_predictor", counted)
    monkeypatch.setattr(fastpath, "_SHARED", type(fastpath._SHARED)())
    first = fastpath.shared_joint(models)
    assert first is not None and fastpath.shared_joint(list(models)) is first and built == [len(models)]
    assert len(models) > 1 and fastpath.shared_joint(models[:1]) is not first  # another set of models
    rows = df.head(3)
    a, b = fastpath.compile_predict_path(pred), fastpath.compile_predict_path(pred)
    np.testing.assert_array_equal(a.predict_raw(pred, rows)[0], b.predict_raw(pred, rows)[0])
    assert built == [len(models), 1]  # both paths took the shared one


def test_a_batch_does_not_build_the_joint_predictor_a_few_rows_use(fitted, monkeypatch):
    """The XGBoost table serves calls of up to TABLE_ROWS rows; a process that predicts only
    batches (automl predict, the report's explanations) must not pay its build (wine_quality's
    60 s model, two 5-fold XGBoost bags: a first batch call of 1,300 rows 1.30 s with it, 0.59 s
    without)."""
    from automl import fastpath
    from automl.models.xgboost import TABLE_ROWS, XGBoostModel

    pred, df = fitted[("xgboost", "binary")]
    built = []
    original = XGBoostModel.joint_predictor.__func__
    counted = classmethod(lambda cls, ms: built.append(1) or original(cls, ms))
    monkeypatch.setattr(XGBoostModel, "joint_predictor", counted)
    monkeypatch.setattr(fastpath, "_SHARED", type(fastpath._SHARED)())
    path = fastpath.compile_predict_path(pred)
    batch = df.head(TABLE_ROWS + 1)
    expected = path.predict_raw(pred, batch)[0]
    assert built == []  # one row more than the table serves: each fold model predicts alone
    few = path.predict_raw(pred, batch.head(TABLE_ROWS))[0]
    assert built == [1]
    np.testing.assert_allclose(few, expected[:TABLE_ROWS], rtol=1e-5, atol=1e-6)


def _clean(pred: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    from automl.schema import validate_frame

    return validate_frame(pred.schema, frame)[0]


def test_threads_follow_the_batch_size_and_the_machine(monkeypatch):
    import os

    from automl import fastpath

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert fastpath.threads_for(1) == 1 and fastpath.threads_for(PARALLEL_ROWS - 1) == 1
    assert fastpath.threads_for(PARALLEL_ROWS) == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # other processes keep the cores busy
    assert fastpath.threads_for(100_000) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's (or Ray's) choice wins over the load
    assert fastpath.threads_for(100_000) == 2 and fastpath.threads_for(10) == 1
