"""The serving and batch-memory benchmark helpers that need no server: input generation and tables."""

from __future__ import annotations

import pandas as pd

from bench.batch_memory import BAD_SHARE, batch_memory_markdown, write_input
from bench.serving import serving_markdown


def test_batch_memory_input_has_the_rows_and_a_share_of_unreadable_numbers(binary_df, tmp_path):
    path = tmp_path / "in.csv"
    bad = write_input(binary_df, "label", 5000, path, seed=1)
    df = pd.read_csv(path)
    assert len(df) == 5000 and "label" not in df.columns and list(df.columns) == ["x1", "x2", "color", "x3"]
    assert (df["x1"] == "n/a kg").sum() == bad and 0 < bad < 5000 * BAD_SHARE * 4
    assert pd.to_numeric(df["x1"], errors="coerce").notna().sum() == 5000 - bad


def test_batch_memory_and_serving_tables():
    runs = [
        {
            "rows": 50_000,
            "input_mb": 4.0,
            "status": "ok",
            "wall_s": 10.0,
            "rows_per_s": 5000.0,
            "rows_failed": 50,
            "driver_peak_rss_mb": 300.0,
            "largest_worker_peak_rss_mb": 400.0,
            "tree_peak_pss_mb": 1200.0,
        },
        {"rows": 200_000, "input_mb": 16.0, "status": "error", "error": "timeout after 600s"},
    ]
    text = batch_memory_markdown({"model": "m", "table": "adult", "runs": runs})
    assert "| 50,000 | 4 | ok | 10.0 | 5,000 | 50 | 300 | 400 | 1200 |" in text
    assert "| 200,000 | 16 | error: timeout after 600s |" in text
    floor = {"predict_ms": 1.0, "parse_and_predict_ms": 1.5}
    cell = {
        "rows_per_request": 1,
        "concurrency": 8,
        "rps": 50.0,
        "rows_per_s": 50.0,
        "p50_ms": 20.0,
        "p99_ms": 90.0,
        "errors_4xx": 0,
        "errors_5xx": 0,
        "errors_transport": 0,
        "floor": floor,
    }
    res = {
        "status": "ok",
        "model_dir": "m",
        "duration_s": 2,
        "server_startup_s": 9.0,
        "runs": [{**cell, "server": "serve"}, {**cell, "server": "uvicorn", "rps": 40.0}],
    }
    table = serving_markdown(res)
    assert "| serve | 1 | 8 | 50.0 |" in table and "| uvicorn | 1 | 8 | 40.0 |" in table
