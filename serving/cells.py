"""Reading one cell of a request row: numbers (JSON numbers or text that reads as one), scalars of
the other kinds, the missing-value markers and each column's missing policy, and the JSON schema
of a column that the OpenAPI document shows (``serving.rows`` builds the row models from them)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticCustomError

from automl.data import EXTRA_MISSING_MARKERS
from automl.schema import ColumnSpec

NUMBER_BODY = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
MISSING_BODY = r" *(" + "|".join(re.escape(m) for m in EXTRA_MISSING_MARKERS) + r")? *"
NUMBER_TEXT = f"^{NUMBER_BODY}$"
MISSING_TEXT = f"^{MISSING_BODY}$"
_NUMBER_RE = re.compile(NUMBER_BODY)
_MISSING_RE = re.compile(MISSING_BODY)
_MISSING = object()  # a cell that holds a missing value


def kind_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def cell_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("value_error", message)


def read_number(value: Any) -> Any:
    if value is None:
        return _MISSING
    if type(value) is bool:
        raise cell_error("expected a number, got a boolean")
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise cell_error("number too large") from None
    if type(value) is float:
        return _MISSING if math.isnan(value) else value
    if type(value) is str:
        if _NUMBER_RE.fullmatch(value):
            return float(value)
        if _MISSING_RE.fullmatch(value):
            return _MISSING
        raise cell_error(f"expected a number, got {value[:40]!r}")
    if isinstance(value, (int, float)):  # numpy scalars from CSV parsing or V2 tensors
        return read_number(value.item() if hasattr(value, "item") else float(value))
    raise cell_error(f"expected a number, got {kind_name(value)}")


def read_scalar(value: Any) -> Any:
    if value is None:
        return _MISSING
    if type(value) is str:
        return _MISSING if _MISSING_RE.fullmatch(value) else value
    if type(value) in (bool, int):
        return value
    if type(value) is float:
        return _MISSING if math.isnan(value) else value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # numpy scalars
        return read_scalar(value.item())
    raise cell_error(f"expected a string, number, boolean or null, got {kind_name(value)}")


def cell_reader(read: Callable[[Any], Any], policy: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        v = read(value)
        if v is _MISSING:
            if policy == "reject":
                raise cell_error(MISSING_REJECTED)
            return None
        return v

    return check


MISSING_REJECTED = (
    "missing value in a required column (never missing in training); send a value, "
    "or serve with --missing impute to predict it as training imputed missing values"
)


def json_schema(spec: ColumnSpec, policy: str) -> dict[str, Any]:
    missing_text = {"type": "string", "pattern": MISSING_TEXT}
    if spec.kind == "numeric":
        options: list[dict[str, Any]] = [{"type": "number"}, {"type": "string", "pattern": NUMBER_TEXT}]
        if policy == "impute":
            options += [{"type": "null"}, missing_text]
    else:
        options = [{"type": "number"}, {"type": "boolean"}]
        if policy == "impute":
            options += [{"type": "string"}, {"type": "null"}]
        else:
            options.append({"type": "string", "not": {"pattern": MISSING_TEXT}})
    doc = f"{spec.kind} ({spec.dtype}); missing values: {policy}"
    if spec.categories:
        shown = ", ".join(spec.categories[:20]) + (", ..." if len(spec.categories) > 20 else "")
        doc += f"; levels seen in training: {shown} (others are accepted and predicted as rare)"
    return {"anyOf": options, "description": doc, "examples": [example_value(spec)]}


def example_value(spec: ColumnSpec) -> Any:
    """A value the column accepts: 0.0 for numbers, else its most frequent training level."""
    if spec.kind == "numeric":
        return 0.0
    return (spec.categories or ["a"])[0]


def safe_csv_cell(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def extra_cell(value: Any) -> Any:
    read_scalar(value)  # refuses lists and objects
    return value
