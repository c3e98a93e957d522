"""Inputs of the streaming mode: Parquet or CSV (or JSON-lines) files, directories and globs, local
or ``s3://`` (any fsspec URI), or a ``ray.data.Dataset``; listed without reading their rows, opened
as a Ray Dataset that is never materialised whole in the driver."""

from __future__ import annotations

import glob as globmod
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from automl.data import _is_ray_dataset, detect_format, is_remote, storage_options
from automl.exceptions import DataError

logger = logging.getLogger(__name__)

_GLOB_CHARS = "*?["
#: CPUs of each Ray Data task of the streaming mode (reads and map_batches): half a CPU, so a node
#: whose CPU a final's Ray Train worker holds half of still runs the tasks that feed it (with
#: 1-CPU tasks, two 1-CPU nodes each holding a 0.5-CPU worker waited for each other forever)
DATA_TASK_CPUS = 0.5
#: rows per block read from a file (a Parquet file is read in record batches of at most this many
#: rows, whatever its row groups: pyarrow writes 1M-row groups by default, a ~1 GB pandas block)
#: or cut from a DataFrame. Every map_batches of the streaming mode takes a block as one batch
#: (``batch_size=None``): Ray Data fuses the read with the maps after it and bundles the fused
#: task's input to the largest batch_size of the chain, so a 65,536-row batch_size after the
#: one-path-per-task read gave every file of a table to ONE task (one core read and preprocessed
#: the whole table, and its worker grew to 1.7 GB at 3M rows). The block size is bounded here.
CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class FileSet:
    """The files of one input, with their sizes on disk and their format."""

    paths: list[str]
    sizes: list[int]
    fmt: str  # "parquet" | "csv" | "json" | "jsonl"
    remote: bool

    @property
    def total_bytes(self) -> int:
        return int(sum(self.sizes))


def _fs(path: str) -> Any:
    import fsspec

    protocol = path.split("://", 1)[0] if is_remote(path) else "file"
    return fsspec.filesystem(protocol, **(storage_options(path) or {}))


def list_files(source: str | os.PathLike, name: str = "data") -> FileSet:
    """The files behind a path, directory, glob or URI (a directory: its .parquet/.csv files)."""
    path = str(source)
    if path.startswith("file://"):
        path = path[len("file://") :]
    remote = is_remote(path)
    fs = _fs(path)
    if any(ch in path for ch in _GLOB_CHARS):
        found = sorted(fs.glob(path)) if remote else sorted(globmod.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.find(path) if _known_format(p))
    elif fs.exists(path):
        found = [path]
    else:
        raise DataError(f"{name}: {path!r} does not exist; check the path (or the bucket and key)")
    if remote:
        scheme = path.split("://", 1)[0]
        found = [p if "://" in p else f"{scheme}://{p}" for p in found]
    if not found:
        raise DataError(f"{name}: {path!r} matches no .parquet or .csv file; pass a file, directory or glob")
    formats = {detect_format(p) for p in found}
    if len(formats) > 1:
        raise DataError(f"{name}: {path!r} mixes formats {sorted(formats)}; keep one format per input")
    sizes = [int(fs.size(p) or 0) for p in found]
    return FileSet(found, sizes, formats.pop(), remote)


def _known_format(path: str) -> bool:
    try:
        detect_format(path)
    except DataError:
        return False
    return not os.path.basename(path).startswith(("_", "."))


def open_dataset(source: Any, name: str = "data") -> Any:
    """A ``ray.data.Dataset`` over ``source`` (a Dataset is returned as it is; a DataFrame is put
    in the object store, for tests and forced streaming of a frame already in memory).

    Files are read by the streaming mode's own half-CPU tasks (:data:`DATA_TASK_CPUS`), one file
    per task, a Parquet row group or a CSV / JSON-lines chunk per block, with the pandas readers
    of memory mode (the same dtypes and missing values as ``load_table``)."""
    import pandas as pd
    import ray.data

    if _is_ray_dataset(source):
        return source
    if isinstance(source, pd.DataFrame):
        return ray.data.from_pandas(
            [source.iloc[i : i + CHUNK_ROWS] for i in range(0, max(1, len(source)), CHUNK_ROWS)]
        )
    files = list_files(source, name)
    logger.info(
        "%s: streaming %d %s file(s), %.1f MB on disk",
        name,
        len(files.paths),
        files.fmt,
        files.total_bytes / 1e6,
    )
    items = ray.data.from_items([{"path": p} for p in files.paths], override_num_blocks=len(files.paths))
    fn = partial(read_files, fmt=files.fmt)
    return items.map_batches(fn, batch_size=1, batch_format="pandas", num_cpus=DATA_TASK_CPUS)


def map_blocks(ds: Any, fn: Any) -> Any:
    """``ds.map_batches(fn)`` as every map of the streaming mode runs: pandas batches, a block as one
    batch (see ``CHUNK_ROWS``: a batch_size here would bundle many files into one fused read task),
    half a CPU per task (``DATA_TASK_CPUS``)."""
    return ds.map_batches(fn, batch_format="pandas", batch_size=None, num_cpus=DATA_TASK_CPUS)


def release_memory() -> None:
    """Give the memory freed after a file back to the system: pyarrow's pool and glibc's heap keep
    it otherwise (a read worker idled at ~590 MB after a 250,000-row Parquet file, ~310 MB after
    this; it holds ~180 MB of imports)."""
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def read_files(batch: Any, fmt: str) -> Iterator[Any]:
    """map_batches: each path of ``batch`` -> its rows, in blocks of at most ``CHUNK_ROWS``."""
    import pandas as pd

    for path in batch["path"]:
        opts = storage_options(path) or {}
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with _fs(path).open(path, "rb") as f:
                for part in pq.ParquetFile(f).iter_batches(batch_size=CHUNK_ROWS):
                    yield part.to_pandas()
        elif fmt == "csv":
            sep = "\t" if ".tsv" in path.lower() else ","
            yield from pd.read_csv(
                path, sep=sep, storage_options=opts, low_memory=False, chunksize=CHUNK_ROWS
            )
        else:
            yield from pd.read_json(path, lines=True, storage_options=opts, chunksize=CHUNK_ROWS)
        release_memory()
