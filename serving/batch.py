"""Batch transform: score a CSV or Parquet file of any size with bounded memory.

With Ray (default) the table streams through Ray Data ``map_batches`` into a pool of actors that
each load the Predictor once; batches come back in input order and are appended to the output
file by the driver. Without Ray the same happens in this process, one chunk at a time. Each
output row carries the input's id column (or its row number) so results join back to inputs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pandas as pd

from automl.data import detect_format, storage_options
from automl.exceptions import DataError
from automl.predictor import Predictor

logger = logging.getLogger(__name__)

ROW_COLUMN = "row"


class _Scorer:
    """Loads the Predictor once (per Ray actor) and scores batches."""

    def __init__(self, model_dir: str, proba: bool, id_column: str | None) -> None:
        self.predictor = Predictor.load(model_dir)
        self.proba = proba
        self.id_column = id_column

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return score_frame(self.predictor, batch, self.proba, self.id_column)


def score_frame(predictor: Predictor, batch: pd.DataFrame, proba: bool, id_column: str | None) -> pd.DataFrame:
    out = pd.DataFrame(index=batch.index)
    if id_column:
        out[id_column] = batch[id_column].to_numpy()
    features = batch.drop(columns=[predictor.target], errors="ignore")
    if proba:
        p = predictor.predict_proba(features)
        for c in p.columns:
            out[f"proba_{c}"] = p[c].to_numpy()
    else:
        out["prediction"] = predictor.predict(features).to_numpy()
    return out.reset_index(drop=True)


def resolve_id_column(predictor: Predictor, columns: list[str], id_column: str | None) -> str | None:
    if id_column:
        if id_column not in columns:
            raise DataError(f"--id-column {id_column!r} is not in the input; its columns are {columns[:30]}")
        return id_column
    return next((c for c in predictor.schema.id_columns if c in columns), None)


def _chunks(path: str, batch_size: int) -> Iterator[pd.DataFrame]:
    fmt = detect_format(path)
    opts = storage_options(path)
    if fmt == "csv":
        yield from pd.read_csv(path, chunksize=batch_size, storage_options=opts, low_memory=False)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        import fsspec

        with fsspec.open(path, "rb", **(opts or {})) as fh:
            for rb in pq.ParquetFile(fh).iter_batches(batch_size=batch_size):
                yield rb.to_pandas()
    else:
        yield from pd.read_json(path, lines=True, chunksize=batch_size, storage_options=opts)


def _columns(path: str) -> list[str]:
    return list(next(_chunks(path, 5)).columns)


class _Writer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fmt = "parquet" if path.lower().endswith((".parquet", ".pq")) else "csv"
        if not path.lower().endswith((".parquet", ".pq", ".csv", ".csv.gz")):
            raise DataError(f"output {path!r} must end in .csv, .csv.gz or .parquet")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._pq = None
        self._first = True

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "csv":
            df.to_csv(self.path, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema)
            self._pq.write_table(table.cast(self._pq.schema))
        self._first = False

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()


def predict_file(model_dir: str, data: str, output: str, *, proba: bool = False, id_column: str | None = None,
                 batch_size: int = 50_000, use_ray: bool = True, concurrency: int | None = None) -> int:
    """Score ``data`` into ``output``; returns the number of rows written."""
    predictor = Predictor.load(model_dir)  # verifies the artifact before any work starts
    if not Path(data).exists() and "://" not in data:
        raise DataError(f"input {data!r} does not exist")
    cols = _columns(data)
    ident = resolve_id_column(predictor, cols, id_column)
    writer = _Writer(output)
    n = 0
    try:
        batches = (_ray_batches(model_dir, data, proba, ident, batch_size, concurrency) if use_ray
                   else (score_frame(predictor, chunk, proba, ident) for chunk in _chunks(data, batch_size)))
        for scored in batches:
            if ident is None:
                scored.insert(0, ROW_COLUMN, range(n, n + len(scored)))
            writer.write(scored)
            n += len(scored)
    finally:
        writer.close()
    return n


def _ray_batches(model_dir: str, data: str, proba: bool, ident: str | None, batch_size: int,
                 concurrency: int | None) -> Iterator[pd.DataFrame]:
    import ray

    from automl.config import ResourceConfig
    from tuning.cluster import ensure_ray

    info = ensure_ray(ResourceConfig())
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    fmt = detect_format(data)
    reader = {"csv": ray.data.read_csv, "parquet": ray.data.read_parquet, "jsonl": ray.data.read_json}[fmt]
    ds = reader(str(Path(data).resolve()) if "://" not in data else data)
    pool = concurrency or max(1, int(info.cpus))
    scored = ds.map_batches(_Scorer, fn_constructor_args=(str(Path(model_dir).resolve()), proba, ident),
                            batch_format="pandas", batch_size=batch_size, concurrency=pool, num_cpus=1)
    for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
        yield batch


__all__ = ["predict_file", "score_frame"]
