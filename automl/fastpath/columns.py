"""Input validation on NumPy arrays: the rules of :func:`automl.schema.validate_frame`, compiled once
per Predictor, applied to a DataFrame or to a mapping of column -> sequence without building a
DataFrame.

What a call yields per schema column (:class:`Columns`):

- numeric: float64 values (missing: NaN);
- categorical / boolean: *universe codes* (int32): -1 missing, 0 a level no recipe kept and the
  schema never saw, 1..U the column's level universe (the schema's known categories first, then
  levels some recipe kept beyond them), so one hash lookup per value serves every recipe;
- datetime / text: a pandas Series (rare kinds; their parsing is pandas' own).

Pandas' own conversions are used wherever a plain fast rule could differ from them (numbers
written as text, extension dtypes, mixed objects), so both paths read every value the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.exceptions import SchemaError
from automl.kinds import ColumnKind, level_label
from automl.schema import InputSchema, ValidationReport

#: up to this many rows a Python loop over values beats pandas' per-call overhead
SMALL = 256
_LEVEL_KINDS = (ColumnKind.CATEGORICAL.value, ColumnKind.BOOLEAN.value)
_NUMERIC_TYPES = (float, int)


@dataclass(frozen=True)
class LevelUniverse:
    """Every level a column's recipes or its schema know, with a code per level (1-based)."""

    levels: list[str]
    n_known: int  # the first n_known levels are the schema's categories
    report_unknown: bool  # categorical columns report levels outside the schema's categories
    lookup: dict[str, int]
    index: pd.Index

    @classmethod
    def build(
        cls, categories: list[str] | None, extra: list[list[str]], report_unknown: bool
    ) -> LevelUniverse:
        levels = list(categories or [])
        seen = set(levels)
        for lv in extra:
            for v in lv:
                if v not in seen:
                    seen.add(v)
                    levels.append(v)
        return cls(
            levels,
            len(categories or []),
            report_unknown and categories is not None,
            {v: i + 1 for i, v in enumerate(levels)},
            pd.Index(levels, dtype=object),
        )


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    kind: str  # numeric | levels | datetime | text
    required: bool
    universe: LevelUniverse | None = None


@dataclass
class Columns:
    """One call's validated input: per schema column, the values described in the module doc."""

    n_rows: int
    values: dict[str, Any]
    report: ValidationReport


def plan_kind(kind: str) -> str:
    if kind == ColumnKind.NUMERIC.value:
        return "numeric"
    if kind in _LEVEL_KINDS:
        return "levels"
    if kind in (ColumnKind.DATETIME.value, ColumnKind.TEXT.value):
        return kind
    raise ValueError(f"no compiled reader for column kind {kind!r}")


def read_columns(schema: InputSchema, plans: list[ColumnPlan], data: Any) -> Columns:
    """Validate ``data`` (a DataFrame or a mapping of column -> sequence) against the schema:
    the same checks, errors and report as :func:`automl.schema.validate_frame`."""
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            dup = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise SchemaError(
                f"column name(s) {dup} appear more than once; give each column once",
                [{"field": c, "message": "duplicate column"} for c in dup],
            )
        n, names, get = len(data), list(data.columns), _frame_columns(data)
    elif isinstance(data, Mapping):
        n, names, get = _mapping_rows(data), list(data.keys()), data.__getitem__
    else:
        raise SchemaError(
            f"rows must be a pandas DataFrame or a mapping of column name -> sequence of values; "
            f"got {type(data).__name__}",
            [{"field": "rows", "message": f"unsupported type {type(data).__name__}"}],
        )
    if n == 0:
        raise SchemaError(
            "no rows to predict: give at least one row", [{"field": "rows", "message": "empty"}]
        )
    known = {p.name for p in plans}
    present = set(names)
    report = ValidationReport(ignored_columns=[c for c in names if c not in known])
    missing = [p.name for p in plans if p.name not in present]
    errors = [
        {"field": p.name, "message": "required column is missing"}
        for p in plans
        if p.required and p.name not in present
    ]
    values: dict[str, Any] = {}
    for p in plans:
        if p.name not in present:
            values[p.name] = _absent(p, n)
            continue
        raw = get(p.name)
        if p.kind == "numeric":
            values[p.name] = _numeric(p.name, raw, errors)
        elif p.kind == "levels":
            codes, unknown = level_codes(raw, p.universe)
            values[p.name] = codes
            if unknown:
                report.unknown_categories[p.name] = unknown[:20]
        else:
            values[p.name] = raw if isinstance(raw, pd.Series) else _series(raw)
    if errors:
        names_ = ", ".join(f"{e['field']!r} ({e['message']})" for e in errors)
        raise SchemaError(f"rows do not match the model's input schema: {names_}", errors)
    report.filled_missing_columns = missing
    return Columns(n, values, report)


def _mapping_rows(data: Mapping[str, Any]) -> int:
    lengths = {}
    for name, seq in data.items():
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise SchemaError(
                f"column {name!r}: give a sequence of values (one per row), got {type(seq).__name__}",
                [{"field": str(name), "message": "not a sequence"}],
            )
        lengths[name] = len(seq)
    if len(set(lengths.values())) > 1:
        raise SchemaError(
            f"columns have different lengths: {lengths}; give one value per row in every column",
            [{"field": str(k), "message": f"{v} value(s)"} for k, v in lengths.items()],
        )
    return next(iter(lengths.values()), 0)


def _absent(p: ColumnPlan, n: int) -> Any:
    if p.kind == "numeric":
        return np.full(n, np.nan)
    if p.kind == "levels":
        return np.full(n, -1, dtype=np.int32)
    return pd.Series(np.full(n, np.nan), dtype=float)  # as validate_frame fills it


def _series(seq: Any) -> pd.Series:
    """A column as pandas would build it for a DataFrame (dtype inference included)."""
    return pd.Series(seq.to_numpy() if isinstance(seq, pd.Series) else seq)


def _frame_columns(df: pd.DataFrame) -> Any:
    """``name -> column`` for :func:`read_columns`: a column of a NumPy dtype as its array (as a
    mapping of column -> array gives it; the tests hold both forms to the same results), a string
    column of up to SMALL rows as an object array, any other (categories, nullable numbers, longer
    string columns, which have an Arrow path) as its Series. Why: ``df[name]`` builds a Series per
    column, 38 us each here, 0.5 ms of a one-row call with 13 columns; the array from the frame's
    block manager takes 2 us. (``_mgr`` is pandas' own attribute: without it, Series for all.)"""
    position = {name: i for i, name in enumerate(df.columns)}
    manager = getattr(df, "_mgr", None)
    small = len(df) <= SMALL

    def get(name: Any) -> Any:
        try:
            values = manager.iget_values(position[name])  # type: ignore[union-attr]
        except (AttributeError, TypeError, IndexError):
            values = None
        if isinstance(values, np.ndarray) and values.ndim == 1 and len(values) == len(df):
            return values
        if small and values is not None and pd.api.types.is_string_dtype(values.dtype):
            return values.to_numpy(dtype=object)  # what the Series path reads of it up to SMALL rows
        return df[name]

    return get


def _object_array(seq: Any) -> np.ndarray:
    if isinstance(seq, np.ndarray):
        return seq if seq.dtype == object else seq.astype(object)
    return np.fromiter(seq, dtype=object, count=len(seq))


# --- numbers ---------------------------------------------------------------------------------------
def _numeric(name: str, raw: Any, errors: list[dict[str, str]]) -> np.ndarray:
    if isinstance(raw, pd.Series):
        if isinstance(raw.dtype, np.dtype) and raw.dtype.kind in "biuf":
            return raw.to_numpy().astype(np.float64, copy=False)
        return _numeric_series(name, raw, errors)
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
        return raw.astype(np.float64, copy=False)
    if not isinstance(raw, np.ndarray) and all(v is None or type(v) in _NUMERIC_TYPES for v in raw):
        return np.array(raw, dtype=np.float64)  # plain JSON numbers (None -> NaN)
    arr = _object_array(raw)
    coerced = np.asarray(pd.to_numeric(arr, errors="coerce"), dtype=np.float64)
    suspect = np.isnan(coerced) & ~pd.isna(arr)
    if suspect.any():  # text that is not a number: judge it exactly as validate_frame does
        _numeric_series(name, pd.Series(arr), errors)
    return coerced


def _numeric_series(name: str, s: pd.Series, errors: list[dict[str, str]]) -> np.ndarray:
    """validate_frame's rule for a column that is not of a numeric dtype."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float).to_numpy()
    coerced = pd.to_numeric(s, errors="coerce")
    bad = coerced.isna() & s.notna() & ~s.astype("string").str.strip().isin(["", "?"])
    if bad.any():
        errors.append(
            {"field": name, "message": f"expected a number, got {s[bad].iloc[0]!r} ({int(bad.sum())} row(s))"}
        )
    return coerced.astype(float).to_numpy()


# --- levels ----------------------------------------------------------------------------------------
def level_codes(raw: Any, universe: LevelUniverse) -> tuple[np.ndarray, list[str]]:
    """Universe codes of a column's values (see the module doc) and the sorted levels outside the
    schema's categories (empty unless the universe reports them)."""
    if isinstance(raw, pd.Series):
        if len(raw) > SMALL and _arrow_strings(raw):
            return _codes_by_arrow(raw, universe)
        arr = raw.to_numpy() if isinstance(raw.dtype, np.dtype) and raw.dtype.kind in "biuf" else None
        arr = arr if arr is not None else raw.to_numpy(dtype=object)
    elif isinstance(raw, np.ndarray):
        arr = raw if raw.dtype.kind in "biufO" else raw.astype(object)
    else:
        arr = _object_array(raw)
    if arr.dtype.kind in "biuf" or (
        len(arr) > SMALL and pd.api.types.infer_dtype(arr, skipna=True) != "string"
    ):
        return _codes_by_unique(arr, universe)
    if len(arr) <= SMALL:
        missing = pd.isna(arr)
        strings = [None if m else level_label(v) for v, m in zip(arr, missing)]
        codes = np.fromiter(
            (-1 if s is None else universe.lookup.get(s, 0) for s in strings),
            dtype=np.int32,
            count=len(strings),
        )
        return codes, _unknown(codes, universe, lambda mask: [s for s, m in zip(strings, mask) if m])
    missing = pd.isna(arr)  # every present value is a str: its level is itself
    codes = universe.index.get_indexer(arr).astype(np.int32) + 1
    codes[missing] = -1
    return codes, _unknown(codes, universe, lambda mask: arr[mask].tolist())


def _codes_by_unique(arr: np.ndarray, universe: LevelUniverse) -> tuple[np.ndarray, list[str]]:
    """Codes through the distinct values: each distinct value's level is computed once, from the
    same Python object ``Series.to_numpy(dtype=object)`` gives (so float32 and int levels read
    exactly as :func:`automl.kinds.level_values` reads them)."""
    if arr.dtype == object:
        inverse, uniques = pd.factorize(arr, use_na_sentinel=True)
        if any(type(u) is bool for u in uniques) and len(uniques) > 1:  # True == 1: no merging
            return _codes_loop(arr, universe)
        uniques = np.asarray(uniques, dtype=object)
    else:
        uniques, inverse = np.unique(arr, return_inverse=True)
        uniques = uniques.astype(object)
    strings = [None if pd.isna(u) else level_label(u) for u in uniques]
    table = np.array([-1 if s is None else universe.lookup.get(s, 0) for s in strings] + [-1], dtype=np.int32)
    codes = table[np.asarray(inverse).reshape(-1)]  # factorize's NA sentinel -1 picks the last entry
    labels = np.array([*strings, None], dtype=object)
    return codes, _unknown(
        codes, universe, lambda mask: labels[np.asarray(inverse).reshape(-1)[mask]].tolist()
    )


def _arrow_strings(s: pd.Series) -> bool:
    """Whether the column is held as Arrow strings (pandas' default string dtype)."""
    return (
        not isinstance(s.dtype, np.dtype)
        and pd.api.types.is_string_dtype(s.dtype)
        and hasattr(s.array, "__arrow_array__")
    )


def _codes_by_arrow(s: pd.Series, universe: LevelUniverse) -> tuple[np.ndarray, list[str]]:
    """Codes of an Arrow string column by Arrow's own hash lookup, without a Python object per
    value (a present string's level is the string itself; Arrow nulls are pandas' missing values)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.chunked_array(s.array.__arrow_array__())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return _codes_by_unique(s.to_numpy(dtype=object), universe)
    found = pc.index_in(arr, value_set=pa.array(universe.levels, type=arr.type))
    codes = np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int32) + 1
    codes[np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = -1
    return codes, _unknown(codes, universe, lambda mask: arr.filter(pa.array(mask)).unique().to_pylist())


def _codes_loop(arr: np.ndarray, universe: LevelUniverse) -> tuple[np.ndarray, list[str]]:
    missing = pd.isna(arr)
    strings = [None if m else level_label(v) for v, m in zip(arr, missing)]
    codes = np.array([-1 if s is None else universe.lookup.get(s, 0) for s in strings], dtype=np.int32)
    return codes, _unknown(codes, universe, lambda mask: [s for s, m in zip(strings, mask) if m])


def _unknown(codes: np.ndarray, universe: LevelUniverse, strings_at: Any) -> list[str]:
    if not universe.report_unknown:
        return []
    mask = (codes == 0) | (codes > universe.n_known)
    if not mask.any():
        return []
    return sorted(set(strings_at(mask)))
