"""Batch transform (`automl predict` / serving.batch.predict_file): Ray Data and in-process paths.

Each case reads in chunks much smaller than the table, so the output is assembled from many
batches (several actors with Ray): order, ids and row numbers must survive that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl import load
from automl.exceptions import DataError, SchemaError
from serving.batch import predict_file

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def model_dir(small_run) -> str:
    return small_run("binary")


@pytest.fixture(scope="module")
def table(binary_df) -> pd.DataFrame:
    """The rows shuffled (so input order is not sorted by anything), with an id column."""
    df = binary_df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    df.insert(0, "key", np.arange(len(df)) * 7 + 1000)
    return df


def _read(path) -> pd.DataFrame:
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)


def test_in_process_csv_keeps_order_and_numbers_rows(model_dir, table, tmp_path):
    src = tmp_path / "in.csv"
    table.drop(columns=["key"]).to_csv(src, index=False)
    res = predict_file(model_dir, str(src), str(tmp_path / "out.csv"), batch_size=37, use_ray=False)
    out = _read(tmp_path / "out.csv")
    assert res.rows_written == len(table) == len(out) and res.rows_failed == 0
    assert not (tmp_path / "out.errors.csv").exists()
    assert list(out.columns) == ["row", "prediction"]
    assert out["row"].tolist() == list(range(len(table)))
    expected = load(model_dir).predict(table.drop(columns=["key", "label"]))
    assert out["prediction"].tolist() == expected.tolist()


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_ray_data_parquet_keeps_order_and_the_id_column(model_dir, table, tmp_path):
    table.to_parquet(tmp_path / "in.parquet", row_group_size=50)  # several blocks
    res = predict_file(
        model_dir, str(tmp_path / "in.parquet"), str(tmp_path / "out.csv"), batch_size=40, id_column="key"
    )
    out = _read(tmp_path / "out.csv")
    assert res.rows_written == len(table)
    assert list(out.columns) == ["key", "prediction"]
    assert out["key"].tolist() == table["key"].tolist()  # input order, across blocks and actors
    expected = load(model_dir).predict(table.drop(columns=["key", "label"]))
    assert out["prediction"].tolist() == expected.tolist()


def test_ray_data_gzipped_csv_probabilities_with_row_numbers(model_dir, table, tmp_path):
    src = tmp_path / "in.csv.gz"
    table.drop(columns=["key"]).to_csv(src, index=False)
    predict_file(model_dir, str(src), str(tmp_path / "p.parquet"), proba=True, batch_size=64)
    out = _read(tmp_path / "p.parquet")
    assert list(out.columns) == ["row", "proba_no", "proba_yes"]
    assert out["row"].tolist() == list(range(len(table)))
    expected = load(model_dir).predict_proba(table.drop(columns=["key", "label"]))
    np.testing.assert_allclose(out[["proba_no", "proba_yes"]].to_numpy(), expected.to_numpy(), rtol=1e-6)


def test_missing_marker_is_read_as_missing_like_training(model_dir, table, tmp_path):
    rows = table.drop(columns=["key", "label"]).iloc[:4].copy()
    marked = rows.copy()
    marked["color"] = "?"
    src = tmp_path / "m.csv"
    marked.to_csv(src, index=False)
    predict_file(model_dir, str(src), str(tmp_path / "m_out.csv"), proba=True, use_ray=False)
    out = _read(tmp_path / "m_out.csv")
    expected = load(model_dir).predict_proba(rows.assign(color=np.nan))
    np.testing.assert_allclose(out[["proba_no", "proba_yes"]].to_numpy(), expected.to_numpy(), rtol=1e-6)


def test_errors_name_the_problem(model_dir, table, tmp_path):
    src = tmp_path / "in.csv"
    table.to_csv(src, index=False)
    with pytest.raises(DataError, match="does not exist"):
        predict_file(model_dir, str(tmp_path / "nope.csv"), str(tmp_path / "o.csv"), use_ray=False)
    with pytest.raises(DataError, match="must end in"):
        predict_file(model_dir, str(src), str(tmp_path / "o.xlsx"), use_ray=False)
    with pytest.raises(DataError, match="--id-column 'ident'"):
        predict_file(model_dir, str(src), str(tmp_path / "o.csv"), id_column="ident", use_ray=False)
    with pytest.raises(DataError, match="max_error_rate must be between 0 and 1"):
        predict_file(model_dir, str(src), str(tmp_path / "o.csv"), max_error_rate=1.5, use_ray=False)
    with pytest.raises(SchemaError, match="'x3'"):  # a required column absent from the file: whole-file error
        table.drop(columns=["x3"]).to_csv(tmp_path / "nox3.csv", index=False)
        predict_file(model_dir, str(tmp_path / "nox3.csv"), str(tmp_path / "o.csv"), use_ray=False)


def _with_bad_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    bad = table.astype({"x1": object, "x3": object})
    rows = [5, 77, 78, 250]
    bad.loc[5, "x1"] = "abc"
    bad.loc[77, "x3"] = "1,5"
    bad.loc[78, ["x1", "x3"]] = ["unknown", "x"]
    bad.loc[250, "x1"] = "12 kg"
    bad.loc[6, "x1"] = "?"  # the missing-value marker: missing, not wrong
    return bad, rows


@pytest.mark.parametrize("use_ray", [False, True], ids=["in_process", "ray_data"])
def test_bad_rows_go_to_the_errors_file_and_the_rest_are_scored(model_dir, table, tmp_path, use_ray):
    bad, rows = _with_bad_rows(table)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    res = predict_file(
        model_dir,
        str(tmp_path / "bad.csv"),
        str(tmp_path / "o.parquet"),
        batch_size=40,
        use_ray=use_ray,
        id_column="key",
    )
    assert (res.rows_written, res.rows_failed, res.rows_read) == (len(table) - 4, 4, len(table))
    assert res.errors_path == str(tmp_path / "o.errors.csv")
    errors = pd.read_csv(res.errors_path)
    assert list(errors.columns) == ["key", "error"]
    assert errors["key"].tolist() == table.loc[rows, "key"].tolist()
    assert errors["error"].tolist() == [
        "x1: expected a number, got 'abc'",
        "x3: expected a number, got '1,5'",
        "x1: expected a number, got 'unknown'; x3: expected a number, got 'x'",
        "x1: expected a number, got '12 kg'",
    ]
    out = _read(tmp_path / "o.parquet")
    good = table.drop(index=rows)
    assert out["key"].tolist() == good["key"].tolist()  # input order kept, bad rows left out
    expected = load(model_dir).predict(
        good.drop(columns=["key", "label"]).assign(x1=good["x1"].mask(good.index == 6))
    )
    assert out["prediction"].tolist() == expected.tolist()


def test_max_error_rate_stops_the_job_with_a_clear_error(model_dir, table, tmp_path):
    bad, rows = _with_bad_rows(table)
    bad.drop(columns=["key"]).to_csv(tmp_path / "bad.csv", index=False)
    out = str(tmp_path / "o.csv")
    with pytest.raises(DataError) as err:
        predict_file(model_dir, str(tmp_path / "bad.csv"), out, max_error_rate=0.01, use_ray=False)
    message = str(err.value)
    assert "4 of 300 rows read (1.3%) failed validation, above --max-error-rate 0.01" in message
    assert "First error: row 5: x1: expected a number, got 'abc'" in message and "o.errors.csv" in message
    res = predict_file(model_dir, str(tmp_path / "bad.csv"), out, max_error_rate=0.02, use_ray=False)
    assert res.rows_failed == 4 and pd.read_csv(res.errors_path)["row"].tolist() == rows
    from automl.cli import main

    assert (
        main(
            [
                "predict",
                model_dir,
                str(tmp_path / "bad.csv"),
                "--output",
                out,
                "--no-ray",
                "--max-error-rate",
                "0",
            ]
        )
        == 2
    )
