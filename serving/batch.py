"""Batch transform: score a CSV, Parquet or JSON-lines file of any size with bounded memory.

With Ray (default) the table streams through Ray Data: a read task parses the file chunk by chunk
(CSV and JSON lines with pandas, as training read them; Parquet record batches), ``map_batches`` sends
each chunk to a pool of actors that load the Predictor once each, and the driver appends the
scored chunks to the output in input order (``preserve_order``). Without Ray the same happens in
this process, one chunk at a time. At no point is the whole table in memory. Each output row
carries the input's id column (or its row number, column ``row``) next to its prediction.

A row that cannot be predicted (a value that does not read as its column's type; see
``automl.schema.row_problems``) does not end the job: it goes to the errors file (CSV: the row's id
or number, and the reason) and the other rows are scored. ``max_error_rate`` ends the job with a
``DataError`` once more than that share of the rows read so far (at least ``MIN_ROWS_FOR_RATE``,
or all of them) failed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.data import EXTRA_MISSING_MARKERS, detect_format, storage_options
from automl.exceptions import DataError, SchemaError
from automl.predictor import Predictor
from automl.schema import row_problems
from serving.batch_output import ErrorLog, Writer, default_errors_path

logger = logging.getLogger(__name__)

ROW_COLUMN = "row"
#: the reason a row was not scored (a column of the scored chunks, moved to the errors file)
ERROR_COLUMN = "error"
#: object store memory one batch transform may hold at once, and the target size of a block
OBJECT_STORE_BUDGET = 256 * 2**20
BLOCK_BYTES = 32 * 2**20


class _Scorer:
    """Loads the Predictor once (per Ray actor) and scores batches."""

    def __init__(self, model_dir: str, proba: bool, id_column: str | None) -> None:
        self.predictor = Predictor.load(model_dir)
        self.proba = proba
        self.id_column = id_column

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return score_frame(self.predictor, batch, self.proba, self.id_column)


def score_frame(
    predictor: Predictor, batch: pd.DataFrame, proba: bool, id_column: str | None
) -> pd.DataFrame:
    """Predictions for ``batch`` (plus its id column when given), in the batch's row order, and an
    ``error`` column: why a row was not predicted (``None`` when it was; its prediction is missing)."""
    out = pd.DataFrame(index=batch.index)
    if id_column:
        out[id_column] = batch[id_column].to_numpy()
    features = mark_missing(batch.drop(columns=[predictor.target], errors="ignore"))
    predict = predictor.predict_proba if proba else predictor.predict
    reasons = pd.Series([None] * len(batch), index=batch.index, dtype=object)
    ok = np.ones(len(batch), dtype=bool)
    pred = None
    if len(batch):
        try:  # the block straight through; its rows are checked one by one only when a value is unreadable
            pred = predict(features)
        except SchemaError:
            reasons = row_problems(predictor.schema, features)
            ok = reasons.isna().to_numpy()
            if ok.all():
                raise  # not a row's value (e.g. a required column absent from the file)
            pred = predict(features[ok]) if ok.any() else None
    if proba:
        p = pred if pred is not None else pd.DataFrame(columns=predictor.classes)
        for c in predictor.classes:
            out[f"proba_{c}"] = p[c].reindex(batch.index).to_numpy(dtype=float)
    else:
        pred = pred if pred is not None else pd.Series([], dtype=object)
        # object dtype when rows are missing, so integer labels stay integers once they are dropped
        out["prediction"] = (pred if ok.all() else pred.astype(object).reindex(batch.index)).to_numpy()
    out[ERROR_COLUMN] = reasons.to_numpy()
    return out.reset_index(drop=True)


def mark_missing(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells holding a missing-value marker ("?") become missing, as when training read its table."""
    for col in df.columns:
        s = df[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            hits = s.astype("string").str.strip().isin(EXTRA_MISSING_MARKERS).fillna(False).to_numpy(bool)
            if hits.any():
                df[col] = s.mask(hits)
    return df


def resolve_id_column(predictor: Predictor, columns: list[str], id_column: str | None) -> str | None:
    if id_column:
        if id_column not in columns:
            raise DataError(f"--id-column {id_column!r} is not in the input; its columns are {columns[:30]}")
        return id_column
    return next((c for c in predictor.schema.id_columns if c in columns), None)


def _read_chunks(fh: Any, fmt: str, path: str, batch_size: int) -> Iterator[pd.DataFrame]:
    """pandas chunks of a CSV/TSV or JSON-lines stream, parsed like ``automl.data.load_table``."""
    if fmt == "csv":
        sep = "\t" if ".tsv" in path.lower() else ","
        yield from pd.read_csv(fh, sep=sep, chunksize=batch_size, low_memory=False, index_col=False)
    else:
        yield from pd.read_json(fh, lines=True, chunksize=batch_size)


def _local_chunks(path: str, fmt: str, batch_size: int) -> Iterator[pd.DataFrame]:
    import fsspec

    with fsspec.open(path, "rb", compression="infer", **(storage_options(path) or {})) as fh:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for rb in pq.ParquetFile(fh).iter_batches(batch_size=batch_size):
                yield rb.to_pandas()
        else:
            yield from _read_chunks(fh, fmt, path, batch_size)


def _columns(path: str, fmt: str) -> list[str]:
    try:
        return list(next(_local_chunks(path, fmt, 5)).columns)
    except StopIteration:
        raise DataError(f"input {path!r} has no rows") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"cannot read {path!r} as {fmt}: {str(exc).strip().splitlines()[0]}") from exc


@dataclass(frozen=True)
class BatchResult:
    """What a batch transform did: rows scored (written to the output), rows that failed validation
    (written to ``errors_path``, which exists only when there were some)."""

    rows_written: int
    rows_failed: int
    errors_path: str

    @property
    def rows_read(self) -> int:
        return self.rows_written + self.rows_failed


def predict_file(
    model_dir: str,
    data: str,
    output: str,
    *,
    proba: bool = False,
    id_column: str | None = None,
    batch_size: int = 50_000,
    use_ray: bool = True,
    concurrency: int | None = None,
    errors_path: str | None = None,
    max_error_rate: float = 1.0,
) -> BatchResult:
    """Score ``data`` into ``output`` (CSV or Parquet, by suffix).

    Output columns: the id column (``id_column``, else the model's id column when the input has it,
    else ``row``, the 0-based row number) and ``prediction`` (or ``proba_<class>`` per class). Rows
    that fail validation go to ``errors_path`` (default ``<output>.errors.csv``) with the same id
    column and ``error``; above ``max_error_rate`` (a share of the rows read, 0 to 1) the job stops
    with a DataError.
    """
    predictor = Predictor.load(model_dir)  # verifies the artifact before any work starts
    if proba and not predictor.problem_type.is_classification:
        raise DataError(
            "--proba needs a classification model; this one is "
            f"{predictor.problem_type.value}: leave --proba out"
        )
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1; got {batch_size}")
    if not 0.0 <= max_error_rate <= 1.0:
        raise DataError(f"max_error_rate must be between 0 and 1 (a share of the rows); got {max_error_rate}")
    if "://" not in data and not Path(data).is_file():
        raise DataError(f"input {data!r} does not exist or is not a file")
    fmt = detect_format(data)
    ident = resolve_id_column(predictor, _columns(data, fmt), id_column)
    errors_path = errors_path or default_errors_path(output)
    writer, errors = Writer(output), ErrorLog(errors_path, max_error_rate)
    if use_ray:
        batches = _ray_batches(model_dir, data, fmt, proba, ident, batch_size, concurrency)
    else:
        chunks = _local_chunks(data, fmt, batch_size)
        batches = (score_frame(predictor, chunk, proba, ident) for chunk in chunks)
    n = written = 0
    try:
        for scored in batches:
            if ident is None:
                scored.insert(0, ROW_COLUMN, range(n, n + len(scored)))
            n += len(scored)
            failed = scored[ERROR_COLUMN].notna().to_numpy()
            if failed.any():
                errors.write(scored.loc[failed, [ident or ROW_COLUMN, ERROR_COLUMN]])
                scored = scored.loc[~failed]
            scored = scored.drop(columns=[ERROR_COLUMN])
            if len(scored):
                writer.write(scored)
                written += len(scored)
            errors.check_rate(n, final=False)
        errors.check_rate(n, final=True)
    finally:
        batches.close()  # stops the Ray Data stream (and restores its settings) on an early exit
        writer.close()
        errors.close()
    if errors.rows:
        logger.warning(
            "%d of %d rows failed validation and were not scored: see %s", errors.rows, n, errors_path
        )
    logger.info("wrote %d predictions to %s", written, output)
    return BatchResult(written, errors.rows, errors_path)


def _chunk_datasource(path: str, fmt: str, batch_size: int) -> Any:
    """A Ray Data source that yields the file's chunks exactly as the in-process path reads them
    (``_local_chunks``: pandas for CSV and JSON lines, as training parsed them; Parquet record
    batches of ``batch_size`` rows, which keeps even a file of one huge row group streaming)."""
    from ray.data.datasource import FileBasedDatasource

    class ChunkDatasource(FileBasedDatasource):
        def _read_stream(self, f: Any, p: str) -> Iterator[pd.DataFrame]:
            yield from _local_chunks(path, fmt, batch_size)

    return ChunkDatasource(path)


def _ray_batches(
    model_dir: str,
    data: str,
    fmt: str,
    proba: bool,
    ident: str | None,
    batch_size: int,
    concurrency: int | None,
) -> Iterator[pd.DataFrame]:
    import ray

    from automl.config import ResourceConfig
    from automl.runtime import ensure_ray

    info = ensure_ray(ResourceConfig())
    with _bounded_execution(ray.data.DataContext.get_current()):
        src = str(Path(data).resolve()) if "://" not in data else data
        # One actor per CPU holds the Predictor. Ray Data's file listing and read tasks take one CPU
        # each, so the pool shares the other CPUs; otherwise the pool could starve the read. (A
        # fractional CPU still gives each actor one thread.)
        pool = concurrency or max(1, int(info.cpus))
        share = min(1.0, max(0.0, info.cpus - 1.0) / pool)
        ds = ray.data.read_datasource(_chunk_datasource(src, fmt, batch_size))
        scored = ds.map_batches(
            _Scorer,
            fn_constructor_args=(str(Path(model_dir).resolve()), proba, ident),
            batch_format="pandas",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=pool),
            num_cpus=share,
        )
        yield from scored.iter_batches(batch_format="pandas", batch_size=None, prefetch_batches=1)


@contextlib.contextmanager
def _bounded_execution(ctx: Any) -> Iterator[None]:
    """Ray Data settings for one batch transform, restored afterwards: keep input order, and cap
    the object store memory the stream may hold (by default Ray Data reads ahead into a share of
    the whole object store, GBs, when scoring is slower than reading) and the size of a block."""
    opts = ctx.execution_options
    saved = (opts.preserve_order, opts.resource_limits, ctx.target_max_block_size)
    opts.preserve_order = True
    opts.resource_limits = opts.resource_limits.copy(object_store_memory=OBJECT_STORE_BUDGET)
    ctx.target_max_block_size = BLOCK_BYTES
    try:
        yield
    finally:
        opts.preserve_order, opts.resource_limits, ctx.target_max_block_size = saved


__all__ = ["BatchResult", "predict_file", "score_frame"]
