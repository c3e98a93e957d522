"""How the streaming mode reads a table: in blocks of bounded rows whatever the file's row groups,
one file per Ray Data task (every map after the read keeps that: Ray Data bundles a fused task's
input to the largest batch_size of the chain, and a 65,536-row one gave every file to one task)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest


def test_a_parquet_file_with_big_row_groups_is_read_in_blocks_of_bounded_rows(tmp_path, monkeypatch):
    """pyarrow writes row groups of up to 1M rows: a read task's block must not be a whole group.
    The blocks together are the file as pandas reads it (dtypes, missing values, order)."""
    import pandas as pd

    from automl.streaming import source

    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=2_500).astype(np.float32),
            "s": pd.Series(rng.choice(["a", "b", None], 2_500), dtype="str"),
            "k": np.arange(2_500),
        }
    )
    path = tmp_path / "t.parquet"
    df.to_parquet(path, row_group_size=2_000)  # groups of 2,000 and 500 rows
    monkeypatch.setattr(source, "CHUNK_ROWS", 700)
    blocks = list(source.read_files({"path": [str(path)]}, fmt="parquet"))
    assert [len(b) for b in blocks] == [700, 700, 700, 400]  # not [2000, 500]
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), pd.read_parquet(path))


def _tasks(stats: str, operator: str) -> int:
    line = next(ln for ln in stats.splitlines() if operator in ln and "tasks executed" in ln)
    return int(re.search(r"(\d+) tasks executed", line).group(1))


@pytest.mark.ray
def test_every_file_of_a_table_is_read_and_preprocessed_by_a_task_of_its_own(ray_session, tmp_path):
    from automl.streaming.source import open_dataset
    from automl.streaming.split import SplitRule, part
    from automl.streaming.stats import table_stats

    for i in range(4):
        pd.DataFrame({"x": np.arange(1_000) + i * 1_000, "y": np.arange(1_000) % 2}).to_parquet(
            tmp_path / f"p{i}.parquet"
        )
    ds = open_dataset(str(tmp_path), "t")
    train = part(ds, SplitRule("hash", 0.2, 0, "y"), valid=False)
    rows = sum(len(b) for b in train.iter_batches(batch_format="pandas", batch_size=None))
    assert 3_000 < rows < 3_400  # ~80 % of 4,000
    assert _tasks(train.stats(), "MapBatches(read_files)->MapBatches(_side)") == 4
    assert table_stats(ds).n_rows == 4_000
    # a DataFrame streamed as it is (tests, a frame already in memory) is cut into blocks too
    frame = open_dataset(pd.DataFrame({"x": np.arange(150_000), "y": 0}), "t")
    assert frame.num_blocks() == 3 and frame.count() == 150_000


@pytest.mark.ray
def test_the_early_stopping_rows_are_read_from_the_table_once_for_every_final(ray_session, tmp_path):
    """Every worker of every final reads all of them (they are not split): they are materialized in
    the object store once, not read again from the whole table by each worker."""
    from helpers import streaming_table
    from ray.data.dataset import MaterializedDataset

    from automl.config import FitSpec, StreamingConfig
    from automl.streaming.run import plan_stream

    df = streaming_table(2_000)
    for i, idx in enumerate(np.array_split(np.arange(len(df)), 4)):
        df.iloc[idx].to_parquet(tmp_path / f"p{i}.parquet", index=False)
    spec = FitSpec(target="label", streaming=StreamingConfig(sample_rows=300, early_stopping_rows=150))
    plan = plan_stream(spec, str(tmp_path))[0]
    rows = plan.stopping_rows()
    assert isinstance(rows, MaterializedDataset) and plan.stopping_rows() is rows
    assert rows.count() == plan.stop.count() and 100 < rows.count() < 250  # ~150 of ~400 validation rows
