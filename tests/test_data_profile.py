import gzip

import numpy as np
import pandas as pd
import pytest

from automl.data import load_table
from automl.exceptions import DataError
from automl.kinds import ColumnKind, infer_kind
from automl.profile import DataProfile, profile_table
from conftest import DATA


def test_loads_csv_gzip_parquet_jsonl_and_dataframe(tmp_path, binary_df):
    binary_df.to_csv(tmp_path / "t.csv", index=False)
    binary_df.to_csv(tmp_path / "t.csv.gz", index=False)
    binary_df.to_parquet(tmp_path / "t.parquet")
    binary_df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.csv", "t.csv.gz", "t.parquet", "t.jsonl"):
        df = load_table(tmp_path / name)
        assert df.shape == binary_df.shape, name
    assert load_table(f"file://{tmp_path / 't.csv'}").shape == binary_df.shape
    original = binary_df.copy()
    loaded = load_table(binary_df)
    loaded.loc[:, "x1"] = 0.0
    pd.testing.assert_frame_equal(binary_df, original)  # the user's frame is never modified


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"a,b,c\n", "has a header but no rows"),
    (b"a;b;c\n1;2;3\n4;5;6\n", "looks like a wrong delimiter"),
    (b"a,b,a\n1,2,3\n", "duplicate column names"),
])
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_table(path)


def test_unknown_extension_and_corrupt_gzip(tmp_path):
    (tmp_path / "x.xlsx").write_bytes(b"123")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_table(tmp_path / "x.xlsx")
    (tmp_path / "x.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_table(tmp_path / "x.csv.gz")


def test_question_marks_are_missing_values(tmp_path):
    path = tmp_path / "q.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("a,b\n1,x\n2,?\n3,y\n")
    df = load_table(path)
    assert df["b"].isna().sum() == 1


def test_target_errors(binary_df):
    with pytest.raises(DataError, match=r"target column 'lable' is not in the table.*Did you mean"):
        profile_table(binary_df, "lable")
    df = binary_df.assign(label="same")
    with pytest.raises(DataError, match="has 1 distinct value"):
        profile_table(df, "label")
    with pytest.raises(DataError, match="missing in every row"):
        profile_table(binary_df.assign(label=np.nan), "label")


def test_rows_with_missing_target_are_dropped_and_counted(binary_df):
    df = binary_df.copy()
    df.loc[:9, "label"] = np.nan
    prof = profile_table(df, "label")
    assert prof.rows_dropped_missing_target == 10
    assert prof.n_rows == len(df) - 10


@pytest.mark.parametrize("values, kind", [
    (list(range(1000)), ColumnKind.IDENTIFIER),
    (["2011-01-%02d" % (i % 28 + 1) for i in range(300)], ColumnKind.DATETIME),
    ([5] * 300, ColumnKind.CONSTANT),
    (["yes", "no"] * 150, ColumnKind.BOOLEAN),
    (["a", "b", "c"] * 100, ColumnKind.CATEGORICAL),
    ([f"the quick brown fox number {i} jumps" for i in range(300)], ColumnKind.TEXT),
    (list(np.random.default_rng(0).normal(size=300)), ColumnKind.NUMERIC),
])
def test_column_kinds(values, kind):
    got, reason = infer_kind(pd.Series(values, name="col"))
    assert got is kind, reason


def test_real_tables_kinds_and_warnings():
    bike = profile_table(load_table(DATA / "bike_small.csv.gz"), "cnt")
    assert bike.column("dteday").kind == "datetime"
    assert bike.problem_type == "regression" and bike.metric == "rmse"
    nls = profile_table(load_table(DATA / "nlswork_small.csv.gz"), "ln_wage")
    assert nls.column("idcode").kind == "identifier" and "idcode" in nls.dropped_columns
    adult = profile_table(load_table(DATA / "adult_small.csv.gz"), "class")
    assert adult.column("workclass").missing_share > 0  # '?' read as missing
    assert adult.problem_type == "binary" and "two distinct values" in adult.problem_type_reason
    car = profile_table(load_table(DATA / "car.csv.gz"), "class")
    assert car.problem_type == "multiclass"
    assert {w.code for w in car.warnings} >= {"class_imbalance"}


def test_leakage_constant_and_duplicates_warnings(binary_df):
    df = binary_df.copy()
    df["leak"] = (df["label"] == "yes").astype(int) * 10 + 1
    df["const"] = 7
    df = pd.concat([df, df.head(5)], ignore_index=True)
    prof = profile_table(df, "label")
    codes = {w.code: w for w in prof.warnings}
    assert "target_leakage" in codes and codes["target_leakage"].columns == ["leak"]
    assert "const" in prof.dropped_columns and "constant" in codes
    assert prof.n_duplicate_rows == 5 and "duplicate_rows" in codes


def test_profile_round_trips_through_json(tmp_path, binary_df):
    prof = profile_table(binary_df, "label")
    path = prof.save(tmp_path / "profile.json")
    again = DataProfile.load(path)
    assert again.to_dict() == DataProfile.from_dict(prof.to_dict()).to_dict()
    assert again.feature_columns == ["x1", "x2", "color", "x3"]
    assert set(again.baseline["features"]) == {"x1", "x2", "color", "x3"}
