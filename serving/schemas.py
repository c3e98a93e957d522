"""The REST endpoint's request and response models, and the checking of request bodies.

Bodies are parsed here rather than by FastAPI's pydantic validation so that every problem is a
4xx whose message names the field (``rows[3].age``), ``text/csv`` bodies work like JSON ones, and
the rows of concurrent requests can be predicted together. The pydantic models document the API
(OpenAPI at ``/docs``); handlers build the same shapes as plain dicts, which is cheaper.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from automl.data import EXTRA_MISSING_MARKERS as MISSING_MARKERS
from automl.schema import InputSchema

#: at most this many problems are listed in one error response
MAX_ERRORS = 20
_SCALARS = (str, bool, int, float)


class RequestError(Exception):
    """A request that cannot be served as sent: a 4xx with a message naming the field(s)."""

    def __init__(self, status: int, errors: list[dict[str, str]], detail: str | None = None) -> None:
        self.status = status
        self.errors = errors[:MAX_ERRORS]
        self.detail = detail or "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)
        super().__init__(self.detail)

    @classmethod
    def one(cls, status: int, field_: str, message: str) -> RequestError:
        return cls(status, [{"field": field_, "message": message}])

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "errors": self.errors}


class AppArgs(BaseModel):
    """Arguments of the Serve application (``build_app``); also what ``serve run`` / a Serve
    config file pass as ``args:``. Invalid values raise pydantic's ValidationError naming the field.

    Args:
        model_dir: a saved Predictor directory (``run.run_dir_``, ``automl fit --output``).
        max_batch_size: requests predicted together by one replica (``@serve.batch``).
        batch_wait_timeout_s: how long a replica waits to fill a batch.
        num_replicas: fixed number of replicas (ignored when ``autoscale`` is set).
        autoscale: ``(min_replicas, max_replicas)`` for Serve autoscaling.
        api_key: when set, every request except ``GET /health`` needs it (``X-API-Key`` header or
            ``Authorization: Bearer``); 401 otherwise.
        max_body_bytes: larger request bodies get 413.
        capture: a ``serving.capture.CaptureConfig`` (or its fields as a dict): record served requests.
        max_ongoing_requests: requests one replica holds at once; default ``max(32, 4 * max_batch_size)``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    model_dir: str
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.002
    num_replicas: int = 1
    autoscale: tuple[int, int] | None = None
    api_key: str | None = None
    max_body_bytes: int = 10_000_000
    capture: Any = None
    max_ongoing_requests: int | None = None

    @field_validator("model_dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model_dir is empty; give a saved model directory")
        return v

    @field_validator("max_batch_size", "num_replicas", "max_body_bytes", "max_ongoing_requests")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"must be at least 1; got {v}")
        return v

    @field_validator("batch_wait_timeout_s")
    @classmethod
    def _wait(cls, v: float) -> float:
        if not 0 <= v <= 10:
            raise ValueError(f"must be between 0 and 10 seconds; got {v}")
        return v

    @field_validator("api_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 8:
            raise ValueError("an API key must have at least 8 characters")
        return v

    @field_validator("capture", mode="before")
    @classmethod
    def _capture(cls, v: Any) -> Any:
        if v is None:
            return None
        from serving.capture import CaptureConfig  # the capture module is optional until used

        if isinstance(v, dict):
            return CaptureConfig(**v)
        if not isinstance(v, CaptureConfig):
            raise ValueError(f"expected a CaptureConfig or a dict of its fields; got {type(v).__name__}")
        return v

    @model_validator(mode="after")
    def _scaling(self) -> AppArgs:
        if self.autoscale is not None:
            lo, hi = self.autoscale
            if lo < 0 or hi < 1 or lo > hi:
                raise ValueError(
                    f"autoscale must be (min, max) with 0 <= min <= max and max >= 1; got {self.autoscale}"
                )
        return self

    @property
    def ongoing_requests(self) -> int:
        return self.max_ongoing_requests or max(32, 4 * self.max_batch_size)


# --- documented shapes ----------------------------------------------------------------------------
class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1, description="one object per row: {column: value}")


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="one line naming every field at fault")
    errors: list[ErrorItem]


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="one per input row, in input order")
    model_version: str
    ignored_columns: list[str] = Field(default_factory=list, description="columns the model does not use")
    unknown_categories: dict[str, list[str]] = Field(
        default_factory=dict, description="column -> values never seen in training (predicted as rare)"
    )


class ProbaResponse(BaseModel):
    probabilities: list[dict[str, float]] = Field(description="one {class: probability} per input row")
    classes: list[Any]
    model_version: str
    ignored_columns: list[str] = Field(default_factory=list)
    unknown_categories: dict[str, list[str]] = Field(default_factory=dict)


class ColumnInfo(BaseModel):
    name: str
    kind: str
    dtype: str
    required: bool
    categories: list[str] | None = None


class MetadataResponse(BaseModel):
    model_version: str
    problem_type: str
    target: str
    classes: list[Any] | None
    metric: str
    columns: list[ColumnInfo]
    id_columns: list[str]
    created_at: str | None = None


class HealthResponse(BaseModel):
    status: str
    live: bool
    ready: bool
    model_version: str


# --- parsing --------------------------------------------------------------------------------------
def parse_rows(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The rows of a JSON (``{"rows": [...]}``) or CSV body; raises RequestError (400/415/422)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return _csv_rows(body)
    if media and media != "application/json" and not media.endswith("+json"):
        raise RequestError.one(
            415,
            "Content-Type",
            f'unsupported media type {media!r}; send application/json ({{"rows": [...]}}) or text/csv',
        )
    try:
        doc = json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError.one(400, "body", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RequestError.one(
            400, "body", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise RequestError.one(400, "body", "JSON nested too deeply") from None
    return _json_rows(doc)


def _json_rows(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise RequestError.one(422, "body", f'expected a JSON object {{"rows": [...]}}, got {_type(doc)}')
    extra = [k for k in doc if k != "rows"]
    if extra:
        raise RequestError(
            422, [{"field": k, "message": "unknown field; the body takes only 'rows'"} for k in extra]
        )
    if "rows" not in doc:
        raise RequestError.one(422, "rows", "required field is missing")
    rows = doc["rows"]
    if not isinstance(rows, list):
        raise RequestError.one(422, "rows", f"expected a list of objects, got {_type(rows)}")
    if not rows:
        raise RequestError.one(422, "rows", "empty: give at least one row")
    errors: list[dict[str, str]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(
                {"field": f"rows[{i}]", "message": f"expected an object {{column: value}}, got {_type(row)}"}
            )
            continue
        for col, value in row.items():
            if value is None or type(value) in (str, float, bool):
                continue
            if type(value) is int:
                if abs(value) >= 2**63:  # beyond int64: keep as float, or refuse if even that overflows
                    try:
                        row[col] = float(value)
                    except OverflowError:
                        errors.append({"field": f"rows[{i}].{col}", "message": "number too large"})
                continue
            if not isinstance(value, _SCALARS):
                errors.append(
                    {
                        "field": f"rows[{i}].{col}",
                        "message": f"expected a number, string, boolean or null, got {_type(value)}",
                    }
                )
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise RequestError(422, errors)
    return rows


def _csv_rows(body: bytes) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        with warnings.catch_warnings():  # a row longer than the header: refuse, never shift columns
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.BytesIO(body), low_memory=False, index_col=False)
    except pd.errors.ParserWarning:
        raise RequestError.one(400, "body", "malformed CSV: a row has more fields than the header") from None
    except pd.errors.EmptyDataError:
        raise RequestError.one(422, "rows", "empty CSV: give a header line and at least one row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        last = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise RequestError.one(400, "body", f"malformed CSV: {last}") from None
    if len(df) == 0:
        raise RequestError.one(422, "rows", "empty: give at least one row below the header")
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in df.to_dict("records")
    ]


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


# --- schema checks that can be made per request, before batching ------------------------------------
@dataclass
class RowsReport:
    ignored_columns: list[str] = field(default_factory=list)
    unknown_categories: dict[str, list[str]] = field(default_factory=dict)


class RowChecker:
    """Checks rows against the Predictor's input schema: required columns present (422 naming
    each missing one), extra columns listed, unknown categories listed (accepted: the model treats
    them as rare). Text cells holding a missing-value marker ("?") become missing, as when training
    read its table. Value types are checked by the Predictor when the rows are predicted."""

    def __init__(self, schema: InputSchema) -> None:
        self.names = set(schema.names)
        self.required = [c.name for c in schema.columns if c.required]
        self.known = {
            c.name: set(c.categories)
            for c in schema.columns
            if c.kind == "categorical" and c.categories is not None
        }

    def check(self, rows: list[dict[str, Any]]) -> RowsReport:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
            for col, value in row.items():
                if type(value) is str and value.strip() in MISSING_MARKERS:
                    row[col] = None
        missing = [c for c in self.required if c not in seen]
        if missing:
            raise RequestError(422, [{"field": c, "message": "required column is missing"} for c in missing])
        report = RowsReport(ignored_columns=[c for c in seen if c not in self.names])
        for col, known in self.known.items():
            if col in seen:
                unknown = {str(v) for r in rows if (v := r.get(col)) is not None and v == v} - known
                if unknown:
                    report.unknown_categories[col] = sorted(unknown)[:20]
        return report
