"""Inputs: s3:// (a moto S3 server on loopback), file:// URIs, ray.data.Dataset, and separate
validation / test tables ("channels") in Python and on the command line."""

import gzip
import io
import json
import logging

import numpy as np
import pandas as pd
import pytest

from automl import AutoML, SearchConfig
from automl.data import align_channel, load_table
from automl.exceptions import DataError

TINY = SearchConfig(max_trials=2, families=("lightgbm",))
BUCKET = "automl-inputs"


@pytest.fixture(scope="module")
def s3(binary_df):
    """A moto S3 server on 127.0.0.1 (free port) holding ``binary_df`` as CSV, gzipped CSV, Parquet,
    JSON lines, a directory of Parquet parts, and a train/test pair; AWS_* variables point at it."""
    import httpx
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        httpx.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto's state is per process
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        df = binary_df
        fs.pipe_file(f"{BUCKET}/t.csv", df.to_csv(index=False).encode())
        fs.pipe_file(f"{BUCKET}/t.csv.gz", gzip.compress(df.to_csv(index=False).encode()))
        fs.pipe_file(f"{BUCKET}/t.parquet", _parquet(df))
        fs.pipe_file(f"{BUCKET}/t.jsonl", df.to_json(orient="records", lines=True).encode())
        fs.pipe_file(f"{BUCKET}/parts/part-0.parquet", _parquet(df.iloc[:150]))
        fs.pipe_file(f"{BUCKET}/parts/part-1.parquet", _parquet(df.iloc[150:]))
        fs.pipe_file(f"{BUCKET}/train.csv", df.iloc[:180].to_csv(index=False).encode())
        fs.pipe_file(f"{BUCKET}/test.parquet", _parquet(df.iloc[250:]))
        yield fs
    server.stop()


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


@pytest.mark.parametrize("key", ["t.csv", "t.csv.gz", "t.parquet", "t.jsonl", "parts/"])
def test_s3_tables_load_like_local_ones(s3, binary_df, key):
    df = load_table(f"s3://{BUCKET}/{key}")
    pd.testing.assert_frame_equal(df, load_table(binary_df), check_dtype=False)


def test_s3_errors_name_the_problem(s3):
    with pytest.raises(DataError, match=rf"'s3://{BUCKET}/nope.csv' does not exist; check the bucket"):
        load_table(f"s3://{BUCKET}/nope.csv")
    with pytest.raises(DataError, match="s3://no-such-bucket/t.parquet"):
        load_table("s3://no-such-bucket/t.parquet")


def test_file_uris_and_parquet_directories(tmp_path, binary_df):
    expected = load_table(binary_df)
    binary_df.to_csv(tmp_path / "t.csv.gz", index=False)
    binary_df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    binary_df.to_json(tmp_path / "t.json", orient="records")  # one JSON array, not lines
    (tmp_path / "parts").mkdir()
    binary_df.iloc[:100].to_parquet(tmp_path / "parts" / "a.parquet", index=False)
    binary_df.iloc[100:].to_parquet(tmp_path / "parts" / "b.parquet", index=False)
    for name in ("t.csv.gz", "t.jsonl", "t.json", "parts"):
        got = load_table(f"file://{tmp_path / name}")
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=name)
    with pytest.raises(DataError, match="does not exist"):
        load_table(f"file://{tmp_path / 'missing.parquet'}")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="is a directory without .parquet files"):
        load_table(tmp_path / "empty_dir")


def test_channel_tables_must_have_the_training_columns(binary_df):
    train = binary_df.iloc[:200]
    with pytest.raises(DataError, match=r"validation: the table lacks columns of the training table: \['x2"):
        align_channel(train, binary_df.iloc[200:].drop(columns=["x2"]), "validation", target="label")
    with pytest.raises(DataError, match="target column 'label' is missing in every row"):
        align_channel(train, binary_df.iloc[200:].assign(label=np.nan), "test", target="label")
    extra = binary_df.iloc[200:].assign(note="x")[["note", *binary_df.columns[::-1]]]
    assert list(align_channel(train, extra, "test", target="label").columns) == list(train.columns)


@pytest.mark.ray
def test_ray_dataset_input_to_load_and_profile(ray_session, binary_df):
    import ray.data

    ds = ray.data.from_pandas(binary_df)
    pd.testing.assert_frame_equal(load_table(ds), load_table(binary_df))
    prof = AutoML(write_report=False, target="label").profile(ds)
    assert prof.n_rows == len(binary_df) and prof.feature_columns == ["x1", "x2", "color", "x3"]
    with pytest.raises(DataError, match=r"data: the table is empty \(no columns and no rows\)"):
        load_table(ds.limit(0))


@pytest.mark.ray
def test_fit_from_s3_with_ray_dataset_validation_and_s3_test(ray_session, s3, tmp_path, binary_df):
    """Train from an s3:// CSV, validate on a ray.data.Dataset (one "user" fold), test on s3:// Parquet."""
    import ray.data

    valid = binary_df.iloc[180:250]
    run = AutoML(write_report=False, target="label", search=TINY, output_dir=tmp_path / "s3run", seed=0).fit(
        f"s3://{BUCKET}/train.csv",
        validation_data=ray.data.from_pandas(valid),
        test_data=f"s3://{BUCKET}/test.parquet",
    )
    assert run.run_info_["data"] == f"s3://{BUCKET}/train.csv"  # lineage names the URI
    assert run.profile_.n_rows == 180 + 70  # the validation rows are profiled with the training rows
    folds = json.loads((run.run_dir_ / "folds.json").read_text())
    assert folds["kind"] == "user" and folds["validation_rows"] == [70] and folds["training_rows"] == [180]
    assert folds["assignment"] == [-1] * 180 + [0] * 70  # the user's rows, and only those, validate
    board = run.leaderboard()
    assert board[board["chosen"]]["score_test"].between(0.7, 1.0).all()  # the test table, scored at the end
    assert set(run.predict(binary_df.iloc[250:])) <= {"yes", "no"}


@pytest.mark.ray
def test_cli_fit_with_validation_and_test_files(ray_session, tmp_path, binary_df):
    from automl.cli import main

    binary_df.iloc[:180].to_csv(tmp_path / "train.csv", index=False)
    binary_df.iloc[180:240].to_parquet(tmp_path / "valid.parquet", index=False)
    binary_df.iloc[240:].to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    loggers = [logging.getLogger(name) for name in ("automl", "tuning")]
    saved = [(lg.handlers[:], lg.level) for lg in loggers]
    try:
        code = main(
            [
                "-q",
                "fit",
                str(tmp_path / "train.csv"),
                "--target",
                "label",
                "--max-trials",
                "2",
                "--families",
                "lightgbm",
                "--validation-data",
                str(tmp_path / "valid.parquet"),
                "--test-data",
                f"file://{tmp_path / 'test.jsonl'}",
                "--output",
                str(tmp_path / "cli"),
                "--no-report",  # nothing here is about the report (~2 s)
            ]
        )
    finally:  # the CLI configures logging for its process; give the test session its own back
        for lg, (handlers, level) in zip(loggers, saved):
            lg.handlers[:], lg.level = handlers, level
    assert code == 0
    folds = json.loads((tmp_path / "cli" / "folds.json").read_text())
    assert folds["kind"] == "user" and folds["validation_rows"] == [60]
    board = pd.read_csv(tmp_path / "cli" / "leaderboard.csv")
    assert board.loc[board["chosen"], "score_test"].between(0.7, 1.0).all()
