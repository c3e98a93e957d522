"""Exact figures of a streamed table from one Ray Data pass: every block computes partial
statistics per column (rows, missing cells, count/sum/sum of squares/min/max of numbers, level
counts up to a cap), and the driver merges the partials, a few kilobytes per block. Nothing but
the partials reaches the driver."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl.streaming.rows import clean_batch
from automl.streaming.source import map_blocks

#: distinct values of one column counted per block; a column with more is "high cardinality" and
#: its level counts are not exact (its kind comes from the sample)
LEVEL_CAP = 2_000
#: distinct values of a numeric column counted (its exact unique count when it has at most these)
NUMERIC_LEVEL_CAP = 64


@dataclass
class ColumnStats:
    name: str
    dtype: str
    n_missing: int = 0
    count: int = 0  # numbers seen (numeric columns)
    total: float = 0.0
    total_sq: float = 0.0
    min: float | None = None
    max: float | None = None
    levels: dict[str, int] | None = field(default_factory=dict)  # None: more than the cap

    @property
    def numeric(self) -> bool:
        return self.count > 0 or self.dtype in ("float", "int", "bool")

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def std(self) -> float | None:
        if not self.count:
            return None
        m = self.total / self.count
        return math.sqrt(max(0.0, self.total_sq / self.count - m * m))


@dataclass
class TableStats:
    n_rows: int
    columns: dict[str, ColumnStats]

    def column(self, name: str) -> ColumnStats:
        return self.columns[name]


def _kind(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_integer_dtype(s):
        return "int"
    if pd.api.types.is_float_dtype(s):
        return "float"
    return "other"


def partial_stats(batch: pd.DataFrame) -> dict[str, Any]:
    """The partial statistics of one block (a plain dict, JSON-ready)."""
    batch = clean_batch(batch)
    out: dict[str, Any] = {"n": len(batch), "columns": {}}
    for name in batch.columns:
        s = batch[name]
        kind = _kind(s)
        col: dict[str, Any] = {"dtype": kind, "missing": int(s.isna().sum())}
        present = s.dropna()
        if kind in ("int", "float", "bool") and len(present):
            v = present.to_numpy(dtype=np.float64)
            col.update(count=len(v), total=float(v.sum()), total_sq=float((v * v).sum()))
            col.update(min=float(v.min()), max=float(v.max()))
        cap = NUMERIC_LEVEL_CAP if kind in ("int", "float") else LEVEL_CAP
        counts = present.value_counts(sort=False)
        col["levels"] = None if len(counts) > cap else {_level(k): int(c) for k, c in counts.items()}
        out["columns"][str(name)] = col
    return out


def _level(value: Any) -> str:
    """A level as the string the schema and kinds use (automl.kinds.level_strings)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (np.bool_, bool)):
        return str(bool(value))
    return str(value)


def merge(partials: list[dict[str, Any]]) -> TableStats:
    cols: dict[str, ColumnStats] = {}
    n = 0
    for p in partials:
        n += p["n"]
        for name, c in p["columns"].items():
            cs = cols.setdefault(name, ColumnStats(name, c["dtype"]))
            if cs.dtype != c["dtype"]:
                cs.dtype = "float" if {cs.dtype, c["dtype"]} <= {"int", "float", "bool"} else "other"
            cs.n_missing += c["missing"]
            if c.get("count"):
                cs.count += c["count"]
                cs.total += c["total"]
                cs.total_sq += c["total_sq"]
                cs.min = c["min"] if cs.min is None else min(cs.min, c["min"])
                cs.max = c["max"] if cs.max is None else max(cs.max, c["max"])
            if cs.levels is not None and c["levels"] is not None:
                for k, v in c["levels"].items():
                    cs.levels[k] = cs.levels.get(k, 0) + v
                cap = NUMERIC_LEVEL_CAP if cs.dtype in ("int", "float") else LEVEL_CAP
                if len(cs.levels) > cap:
                    cs.levels = None
            else:
                cs.levels = None
    return TableStats(n, cols)


def _stats_batch(batch: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"partial": [json.dumps(partial_stats(batch))]})


def table_stats(ds: Any) -> TableStats:
    """One streamed pass over ``ds``: its exact row count, missing cells, numeric moments and
    ranges, and level counts (columns with at most ``LEVEL_CAP`` distinct values)."""
    parts = map_blocks(ds, _stats_batch)
    partials = [json.loads(r["partial"]) for r in parts.iter_rows()]
    return merge(partials)
