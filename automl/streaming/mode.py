"""Choosing the data mode: ``memory`` (today's path: one pandas DataFrame in the driver) or
``streaming`` (a Ray Dataset read block by block), from the input's estimated in-memory size and
the memory Ray reports. The decision and its reason are logged and kept in ``run.json``.

Estimates, without reading the rows: Parquet from its footers (uncompressed sizes of the row
groups; a sample of the files when there are many), CSV from a sample of its first lines (bytes
per row on disk, bytes per row in pandas), JSON from its size on disk, a ``ray.data.Dataset`` from
its metadata, a DataFrame from its memory usage.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from automl.data import _is_ray_dataset
from automl.exceptions import ConfigError
from automl.streaming.source import FileSet, _fs, list_files

logger = logging.getLogger(__name__)

#: a memory-mode fit peaks at about this many times the table's in-memory size (profiling, the
#: recipes' matrices, the folds, the object store's copy; the 5M-row table of issue 15 peaked at
#: 20.9 GB of driver RSS for ~3.8 GB of data)
MEMORY_MODE_FACTOR = 6.0
#: below this estimated size the table is small whatever the machine: memory mode without asking Ray
SMALL_TABLE_BYTES = 64 * 2**20
#: Parquet footers read at most (the rest of the files are extrapolated by size on disk)
FOOTERS_READ = 32
#: bytes of a CSV read to estimate its rows and their in-memory size
CSV_SAMPLE_BYTES = 2**20
#: a gzip-compressed text file holds about this many times its size on disk
GZIP_RATIO = 5.0


@dataclass(frozen=True)
class ModeDecision:
    mode: str  # "memory" | "streaming"
    reason: str
    estimated_bytes: int | None  # the table's estimated in-memory size
    memory_bytes: float | None  # the memory Ray reported (None when not asked)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def estimate_bytes(source: Any) -> int | None:
    """The table's estimated in-memory size in bytes (None: unknown)."""
    if isinstance(source, pd.DataFrame):
        return int(source.memory_usage(deep=False).sum())
    if _is_ray_dataset(source):
        try:
            size = source._logical_plan.dag.infer_metadata().size_bytes  # metadata only, no execution
        except Exception:  # noqa: BLE001 - a private API: unknown rather than wrong
            size = None
        return int(size) if size is not None else None
    if isinstance(source, (str, os.PathLike)):
        files = list_files(source)
        if files.fmt == "parquet":
            return _parquet_bytes(files)
        if files.fmt == "csv":
            return _csv_bytes(files)
        return int(
            sum(s * (GZIP_RATIO if p.endswith(".gz") else 1.0) for p, s in zip(files.paths, files.sizes))
        )
    return None


def _parquet_bytes(files: FileSet) -> int:
    import pyarrow.parquet as pq

    fs = _fs(files.paths[0])
    read, on_disk = 0, 0
    for path, size in list(zip(files.paths, files.sizes))[:FOOTERS_READ]:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        read += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        on_disk += size
    return int(read * files.total_bytes / max(1, on_disk))


def _csv_bytes(files: FileSet) -> int:
    path = files.paths[0]
    gz = path.endswith(".gz")
    with _fs(path).open(path, "rb", compression="gzip" if gz else None) as f:
        head = f.read(CSV_SAMPLE_BYTES)
    lines = head.count(b"\n")
    if lines < 2:
        return int(files.total_bytes * (GZIP_RATIO if gz else 1.0))
    import io

    sep = "\t" if ".tsv" in path.lower() else ","
    sample = pd.read_csv(io.BytesIO(head[: head.rfind(b"\n")]), sep=sep, low_memory=False)
    per_row_disk = len(head) / lines
    per_row_mem = sample.memory_usage(deep=True).sum() / max(1, len(sample))
    rows = files.total_bytes * (GZIP_RATIO if gz else 1.0) / per_row_disk
    return int(rows * per_row_mem)


def ray_memory_bytes() -> float:
    """The memory Ray reports available for tasks and actors (its "memory" resource)."""
    import ray

    avail = ray.available_resources().get("memory")
    return float(avail if avail is not None else ray.cluster_resources().get("memory", 0.0))


def choose_mode(source: Any, setting: str, resources: Any = None) -> ModeDecision:
    """``setting`` "memory" / "streaming" is kept; "auto" streams when a memory-mode fit (about
    MEMORY_MODE_FACTOR times the table) would not fit in the memory Ray reports."""
    if setting not in ("auto", "memory", "streaming"):
        raise ConfigError(f"data_mode must be 'auto', 'memory' or 'streaming'; got {setting!r}")
    if setting != "auto":
        return _log(ModeDecision(setting, "set by the user (data_mode)", None, None))
    try:
        size = estimate_bytes(source)
    except Exception as exc:  # noqa: BLE001 - memory mode's reader then names what is wrong
        why = f"the table's size could not be estimated ({type(exc).__name__}: {exc})"
        return _log(ModeDecision("memory", why, None, None))
    if isinstance(source, pd.DataFrame):
        return _log(ModeDecision("memory", "the table is a pandas DataFrame already in memory", size, None))
    if size is not None and size < SMALL_TABLE_BYTES:
        why = f"the table is small (~{size / 2**20:.0f} MiB in memory < {SMALL_TABLE_BYTES / 2**20:.0f} MiB)"
        return _log(ModeDecision("memory", why, size, None))
    from automl.config import ResourceConfig
    from automl.runtime import ensure_ray

    ensure_ray(resources or ResourceConfig())
    memory = ray_memory_bytes()
    if size is None:
        why = "a ray.data.Dataset of unknown size: streaming keeps it out of the driver"
        return _log(ModeDecision("streaming", why, None, memory))
    need = size * MEMORY_MODE_FACTOR
    gib = 2**30
    if need > memory:
        why = (
            f"a memory-mode fit needs ~{need / gib:.1f} GiB ({MEMORY_MODE_FACTOR:g} x the table's "
            f"~{size / gib:.2f} GiB) > {memory / gib:.1f} GiB Ray reports available"
        )
        return _log(ModeDecision("streaming", why, size, memory))
    why = (
        f"a memory-mode fit needs ~{need / gib:.1f} GiB ({MEMORY_MODE_FACTOR:g} x ~{size / gib:.2f} GiB) "
        f"<= {memory / gib:.1f} GiB Ray reports available"
    )
    return _log(ModeDecision("memory", why, size, memory))


def _log(d: ModeDecision) -> ModeDecision:
    logger.info("data mode %s: %s; data_mode= (--data-mode) overrides it", d.mode, d.reason)
    return d
