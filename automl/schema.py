"""The Predictor's input schema and the validation of rows given for prediction.

A column is *required* when it was never missing in training (a model cannot know what its
absence means); a column that was sometimes missing in training may be left out, and is then
treated as missing. Extra columns are ignored and reported; unknown categories are accepted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl.exceptions import SchemaError
from automl.kinds import ColumnKind, level_lookup, level_values


@dataclass
class ColumnSpec:
    name: str
    kind: str
    dtype: str
    required: bool
    categories: list[str] | None = None  # known levels (categorical/boolean), most frequent first
    #: "target" or "frequency": the column enters the models as that encoding of its levels
    #: (decided by the fit's column probe); None: as its kind says
    encoding: str | None = None


@dataclass
class InputSchema:
    columns: list[ColumnSpec]
    #: identifier columns (dropped, or kept by the column probe), echoed back by batch predict
    id_columns: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSchema:
        return cls([ColumnSpec(**c) for c in d["columns"]], list(d.get("id_columns", [])))


@dataclass
class ValidationReport:
    ignored_columns: list[str] = field(default_factory=list)
    filled_missing_columns: list[str] = field(default_factory=list)
    unknown_categories: dict[str, list[str]] = field(default_factory=dict)
    #: regression: per member, how many of these rows' predictions were clipped to the training
    #: target's range (automl.target); empty when none was
    clipped_predictions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v}


_NUMERIC_KINDS = {ColumnKind.NUMERIC.value}


def validate_frame(schema: InputSchema, df: pd.DataFrame) -> tuple[pd.DataFrame, ValidationReport]:
    """Check ``df`` against ``schema``; return the columns the model uses (coerced) and a report.

    Raises :class:`SchemaError` listing every missing required column and every value that
    cannot be read as the column's type.
    """
    if len(df) == 0:
        raise SchemaError(
            "no rows to predict: give at least one row", [{"field": "rows", "message": "empty"}]
        )
    report = ValidationReport(ignored_columns=[c for c in df.columns if c not in schema.names])
    errors: list[dict[str, str]] = []
    missing = [c.name for c in schema.columns if c.name not in df.columns]
    required_missing = [c for c in missing if _spec(schema, c).required]
    for c in required_missing:
        errors.append({"field": c, "message": "required column is missing"})
    out: dict[str, pd.Series] = {}
    for spec in schema.columns:
        if spec.name not in df.columns:
            out[spec.name] = pd.Series([np.nan] * len(df), index=df.index, dtype=float)
            continue
        s = df[spec.name]
        if spec.kind in _NUMERIC_KINDS:
            coerced = s
            if not pd.api.types.is_numeric_dtype(s):  # text that should read as numbers
                coerced = pd.to_numeric(s, errors="coerce")
                bad = coerced.isna() & s.notna() & ~s.astype("string").str.strip().isin(["", "?"])
                if bad.any():
                    errors.append(
                        {
                            "field": spec.name,
                            "message": f"expected a number, got {s[bad].iloc[0]!r} ({int(bad.sum())} row(s))",
                        }
                    )
            out[spec.name] = coerced.astype(float)
        else:
            out[spec.name] = s
            if spec.categories is not None and spec.kind == ColumnKind.CATEGORICAL.value:
                unknown = sorted(set(level_values(s)) - level_lookup(spec.categories)[0].keys() - {None})
                if unknown:
                    report.unknown_categories[spec.name] = unknown[:20]
    if errors:
        names = ", ".join(f"{e['field']!r} ({e['message']})" for e in errors)
        raise SchemaError(f"rows do not match the model's input schema: {names}", errors)
    report.filled_missing_columns = missing
    return pd.DataFrame(out, index=df.index), report


def _spec(schema: InputSchema, name: str) -> ColumnSpec:
    return next(c for c in schema.columns if c.name == name)


def row_problems(schema: InputSchema, df: pd.DataFrame) -> pd.Series:
    """Row-wise companion of :func:`validate_frame`: why each row of ``df`` cannot be predicted.

    Returns a Series aligned with ``df.index``: ``None`` for a row that can be predicted, else one
    line naming every column at fault (``"age: expected a number, got 'abc'"``). Values are judged as
    ``validate_frame`` judges them (text that does not read as a number in a numeric column; empty
    text and the missing-value marker ``"?"`` are missing, not wrong). Frame-level problems (no rows,
    a required column absent from the frame) are left to ``validate_frame``, which raises for them.
    """
    reasons = pd.Series([None] * len(df), index=df.index, dtype=object)
    for spec in schema.columns:
        if spec.kind not in _NUMERIC_KINDS or spec.name not in df.columns:
            continue
        s = df[spec.name]
        if pd.api.types.is_numeric_dtype(s):
            continue
        coerced = pd.to_numeric(s, errors="coerce")
        bad = coerced.isna() & s.notna() & ~s.astype("string").str.strip().isin(["", "?"])
        for i in np.flatnonzero(bad.to_numpy(dtype=bool)):
            problem = f"{spec.name}: expected a number, got {str(s.iloc[i])[:60]!r}"
            old = reasons.iloc[i]
            reasons.iloc[i] = problem if old is None else f"{old}; {problem}"
    return reasons
