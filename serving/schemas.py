"""The REST endpoint's arguments (``AppArgs``), response models, and the parsing of request bodies.

Bodies are read here (JSON or ``text/csv``) so that a body that is not JSON or CSV at all is a 400
naming the problem; what the parsed body must hold is checked by the pydantic models generated
from the Predictor's input schema (``serving.rows.RowSchema``), the same models that produce the
OpenAPI document. Handlers build the response shapes below as plain dicts, which is cheaper.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.rows import MAX_ERRORS, POLICIES, RequestError, RowsReport

__all__ = ["AppArgs", "MAX_ERRORS", "RequestError", "RowsReport", "parse_body"]


#: Ray Serve's default interval between autoscaling metric pushes (AutoscalingConfig.metrics_interval_s)
SERVE_METRICS_PUSH_S = 10.0


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
        missing: what a missing or null value of a *required* column (one never missing in training)
            means: ``"reject"`` (422 naming the row and column, the default) or ``"impute"`` (predicted
            as training imputed missing values). Columns sometimes missing in training always impute
            unless ``missing_columns`` says otherwise.
        missing_columns: ``{column: "reject" | "impute"}``, overriding ``missing`` per column.
        model_name: the model's name in the V2 protocol (``/v2/models/{name}``); default: the model
            directory's name.
        replica_cpus: CPUs reserved by each replica (``ray_actor_options.num_cpus``).
        autoscale_target_ongoing_requests, upscale_delay_s, downscale_delay_s, autoscale_look_back_s:
            Serve autoscaling settings (with ``autoscale``): ongoing requests per replica to aim for
            (default ``max(2, max_batch_size)``), how long load must stay above/below it before a
            replica is added (30 s) or removed (600 s), the window load is averaged over (30 s).
        health_check_period_s: how often Serve asks a replica whether it is healthy.
        fault_file: a TEST HOOK, off by default: while this file exists, every prediction of the
            replica raises an internal error (5xx), so tests can watch the health check fail and
            Serve replace the replica. Set only at deploy time; no request can turn it on.
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
    missing: str = "reject"
    missing_columns: dict[str, str] = Field(default_factory=dict)
    model_name: str | None = None
    replica_cpus: float = 1.0
    autoscale_target_ongoing_requests: float | None = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    autoscale_look_back_s: float = 30.0
    health_check_period_s: float = 10.0
    fault_file: str | None = None

    @field_validator("missing")
    @classmethod
    def _missing(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"must be one of {list(POLICIES)}; got {v!r}")
        return v

    @field_validator("missing_columns")
    @classmethod
    def _missing_columns(cls, v: dict[str, str]) -> dict[str, str]:
        bad = {c: p for c, p in v.items() if p not in POLICIES}
        if bad:
            raise ValueError(f"each policy must be one of {list(POLICIES)}; got {bad}")
        return v

    @field_validator("model_name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", v):
            raise ValueError(f"must be letters, digits, '_', '.' or '-' (at most 128); got {v!r}")
        return v

    @field_validator("replica_cpus", "upscale_delay_s", "downscale_delay_s")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"must not be negative; got {v}")
        return v

    @field_validator("health_check_period_s", "autoscale_look_back_s", "autoscale_target_ongoing_requests")
    @classmethod
    def _positive_seconds(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError(f"must be positive; got {v}")
        return v

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

    def autoscaling_config(self) -> dict[str, Any]:
        """Serve's ``autoscaling_config`` for ``autoscale``."""
        lo, hi = self.autoscale or (1, 1)
        config: dict[str, Any] = {
            "min_replicas": lo,
            "initial_replicas": max(lo, 1),
            "max_replicas": hi,
            "target_ongoing_requests": self.autoscale_target_ongoing_requests or max(2, self.max_batch_size),
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.autoscale_look_back_s,
        }
        if self.autoscale_look_back_s <= SERVE_METRICS_PUSH_S:
            # Ray 2.60 pushes replicas' and handles' load every `metrics_interval_s` (10 s by
            # default, read from this config by replica.py and router.py; marked deprecated for env
            # vars it does not read yet) and warns a look-back window not above it will be an error
            config["metrics_interval_s"] = self.autoscale_look_back_s / 4
        return config


# --- documented shapes ----------------------------------------------------------------------------
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
    required: bool = Field(description="never missing in training")
    categories: list[str] | None = None
    missing: str = Field(description="what a missing or null value means here: reject (422) or impute")


class MetadataResponse(BaseModel):
    model_version: str
    model_name: str = Field(description="the name in the V2 protocol: /v2/models/{model_name}")
    problem_type: str
    target: str
    classes: list[Any] | None
    metric: str
    columns: list[ColumnInfo]
    id_columns: list[str]
    created_at: str | None = None


class StatsResponse(BaseModel):
    """Counters of the replica that answered (each replica keeps its own)."""

    replica: str
    model_version: str
    predictor_calls: int
    requests_predicted: int
    largest_batch: int = Field(description="most requests predicted in one Predictor call")
    batch_sizes: dict[str, int] = Field(description="requests per Predictor call -> number of calls")
    internal_failures_in_a_row: int


class HealthResponse(BaseModel):
    status: str
    live: bool
    ready: bool
    model_version: str


# --- parsing --------------------------------------------------------------------------------------
def parse_body(body: bytes, content_type: str) -> tuple[str, Any]:
    """``("json", document)`` or ``("csv", rows)``; raises RequestError (400/415/422) for a body that
    is not JSON or CSV at all. What the document must hold is checked by ``RowSchema``."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return "csv", _csv_rows(body)
    if media and media != "application/json" and not media.endswith("+json"):
        raise RequestError.one(
            415,
            "Content-Type",
            f'unsupported media type {media!r}; send application/json ({{"rows": [...]}}) or text/csv',
        )
    return "json", parse_json(body)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError.one(400, "body", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RequestError.one(
            400, "body", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise RequestError.one(400, "body", "JSON nested too deeply") from None


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
