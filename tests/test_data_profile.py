import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import DATA

from automl.data import load_table
from automl.exceptions import DataError
from automl.kinds import ColumnKind, infer_kind
from automl.profile import DataProfile, profile_table


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


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"a,b,c\n", "has a header but no rows"),
        (b"a;b;c\n1;2;3\n4;5;6\n", "looks like a wrong delimiter"),
        (b"a,b,a\n1,2,3\n", "duplicate column names"),
    ],
)
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


@pytest.mark.parametrize(
    "values, kind",
    [
        (list(range(1000)), ColumnKind.IDENTIFIER),
        ([f"2011-01-{i % 28 + 1:02d}" for i in range(300)], ColumnKind.DATETIME),
        ([5] * 300, ColumnKind.CONSTANT),
        (["yes", "no"] * 150, ColumnKind.BOOLEAN),
        (["a", "b", "c"] * 100, ColumnKind.CATEGORICAL),
        ([f"the quick brown fox number {i} jumps" for i in range(300)], ColumnKind.TEXT),
        (list(np.random.default_rng(0).normal(size=300)), ColumnKind.NUMERIC),
    ],
)
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


@pytest.mark.parametrize(
    "values, name, kind",
    [
        ([0.0, 1.0, np.nan] * 100, "union", ColumnKind.BOOLEAN),  # a 0/1 flag stored as float (it has gaps)
        ([float(i % 12 + 1) for i in range(300)], "ind_code", ColumnKind.CATEGORICAL),  # integer codes
        ([i % 12 + 1 for i in range(300)], "month_number", ColumnKind.NUMERIC),  # not named like a code
        ([1.5, 2.5] * 150 + [3.5], "ratio", ColumnKind.NUMERIC),
    ],
)
def test_numeric_flags_and_codes(values, name, kind):
    got, reason = infer_kind(pd.Series(values, name=name))
    assert got is kind, reason


def _codes(prof, code):
    return {w.code: w for w in prof.warnings}.get(code)


def test_mixed_types_only_for_numbers_polluted_by_text(binary_df):
    df = binary_df.copy()
    df["doors"] = np.resize(["2", "3", "4", "5more"], len(df))  # labels that happen to be digits
    df["weight"] = [str(v) for v in np.round(np.random.default_rng(0).normal(70, 9, len(df)), 1)]
    df.loc[::4, "weight"] = "unknown"  # a numeric column with words in 25% of the rows
    df["score"] = [str(v) for v in range(len(df))]
    df.loc[::50, "score"] = "n/a"  # numbers with a little junk: read as numbers, the junk as missing
    prof = profile_table(df, "label")
    mixed = [w for w in prof.warnings if w.code == "mixed_types"]
    assert {w.columns[0] for w in mixed} == {"weight", "score"}
    by_col = {w.columns[0]: w for w in mixed}
    assert "'unknown'" in by_col["weight"].message and "categorical" in by_col["weight"].action
    assert prof.column("score").kind == "numeric" and "read as missing" in by_col["score"].action


def test_sentinel_redundant_and_conflicting_duplicate_warnings(binary_df):
    df = binary_df.copy()
    rng = np.random.default_rng(1)
    df["pdays"] = np.where(rng.random(len(df)) < 0.7, -1, rng.integers(1, 400, len(df)))
    df["hours"] = np.where(rng.random(len(df)) < 0.1, 99, rng.integers(1, 98, len(df)))  # 99 is a real value
    df["color_code"] = df["color"].map({"red": 1, "green": 2, "blue": 3})
    twin = df.iloc[[0]].assign(label="no" if df.iloc[0]["label"] == "yes" else "yes")
    df = pd.concat([df, twin], ignore_index=True)
    prof = profile_table(df, "label")
    assert _codes(prof, "sentinel_value").columns == ["pdays"]
    assert _codes(prof, "redundant_columns").columns == ["color", "color_code"]
    assert "1 rows repeat the features" in _codes(prof, "conflicting_duplicates").message
    assert prof.n_duplicate_rows == 0


def test_missing_target_rows_are_reported_as_a_warning(binary_df):
    df = binary_df.copy()
    df.loc[:4, "label"] = None
    w = _codes(profile_table(df, "label"), "missing_target")
    assert w.columns == ["label"] and w.message.startswith("5 rows (1.7%)") and w.action.startswith("dropped")


def test_time_and_group_columns_in_the_profile():
    bike = profile_table(load_table(DATA / "bike_small.csv.gz"), "cnt", time_column="dteday")
    col = bike.column("dteday")
    assert (col.role, col.kind) == ("time", "datetime") and "dteday" in bike.feature_columns
    assert col.stats["min"].startswith("2011-01-01") and "dteday" in bike.baseline["constraints"]
    nls = profile_table(load_table(DATA / "nlswork_small.csv.gz"), "ln_wage", group_column="idcode")
    assert nls.column("idcode").role == "group" and "idcode" not in nls.feature_columns
    assert "idcode" not in nls.dropped_columns and _codes(nls, "identifier") is None
    years = profile_table(load_table(DATA / "nlswork_small.csv.gz"), "ln_wage", time_column="year")
    assert years.column("year").kind == "numeric" and "year" in years.feature_columns
    # a unique, increasing integer would be an identifier; as the time column it is a number
    df = pd.DataFrame({"t": np.arange(200) * 60, "x": np.arange(200) % 7, "y": np.arange(200) % 2})
    prof = profile_table(df, "y", time_column="t")
    assert prof.column("t").kind == "numeric" and "t" in prof.feature_columns


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dteday": np.nan}, "time column 'dteday' is missing in 1 of"),
        ({"dteday": "soon"}, "neither dates nor numbers, e.g. 'soon'"),
    ],
)
def test_bad_time_column_errors(change, message):
    df = load_table(DATA / "bike_small.csv.gz")
    for col, value in change.items():
        df.loc[7, col] = value
    with pytest.raises(DataError, match=message):
        profile_table(df, "cnt", time_column="dteday")
    with pytest.raises(DataError, match="holds a single value"):
        profile_table(df.assign(dteday="2011-01-01"), "cnt", time_column="dteday")
    with pytest.raises(DataError, match="group column 'g' is missing in 1 of"):
        profile_table(df.assign(g=[None] + [1] * (len(df) - 1)), "cnt", group_column="g")


def test_real_tables_warnings_a_data_scientist_expects():
    adult = profile_table(load_table(DATA / "adult_small.csv.gz"), "class")
    assert _codes(adult, "redundant_columns").columns == ["education", "education-num"]
    car = profile_table(load_table(DATA / "car.csv.gz"), "class")
    assert _codes(car, "mixed_types") is None  # doors '2'..'5more' are labels, not numbers mixed with text
    nls = profile_table(load_table(DATA / "nlswork_small.csv.gz"), "ln_wage")
    assert nls.column("union").kind == "boolean" and nls.column("occ_code").kind == "categorical"
    assert "group_column" in _codes(nls, "identifier").action
    credit = profile_table(load_table(DATA / "credit_small.csv.gz"), "class")
    assert credit.problem_type == "binary" and not credit.dropped_columns
    assert _codes(credit, "target_leakage") is None


def test_summary_is_a_readable_table_with_actions():
    df = load_table(DATA / "nlswork_small.csv.gz")
    df.loc[:2, "ln_wage"] = np.nan
    prof = profile_table(df, "ln_wage")
    text = prof.summary()
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith("column"))
    assert header.split() == ["column", "role", "kind", "dtype", "missing", "distinct", "why"]
    idcode = next(ln for ln in lines if ln.startswith("idcode "))
    assert idcode.split()[:3] == ["idcode", "dropped", "identifier"] and "named like an identifier" in idcode
    assert "(3 rows without a target dropped)" in lines[0]
    assert "  - identifier: identifier-like columns ['idcode'] [columns: idcode]" in lines
    # idcode's values repeat (persons in several years): the fit's column probe decides
    assert any(ln.strip().startswith("action: their values repeat across rows") for ln in lines)
    no_probe = profile_table(df, "ln_wage", probe_columns=False).summary().splitlines()
    assert any(ln.strip().startswith("action: dropped: a key carries no signal") for ln in no_probe)
    frame = prof.to_frame()
    assert list(frame.columns) == ["column", "role", "kind", "dtype", "missing", "distinct", "why"]
    assert len(frame) == df.shape[1] and frame.set_index("column").loc["union", "missing"] > 0.2
