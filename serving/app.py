"""The REST endpoint: a FastAPI app around the Predictor, deployed with Ray Serve.

``ModelService`` holds the Predictor and builds the FastAPI app; it does not need Ray (the load
test serves the same app with plain uvicorn as a floor). ``ModelDeployment`` is the Serve ingress
deployment: it loads the Predictor once per replica, predicts concurrent requests together with
``@serve.batch``, exports request metrics with ``ray.serve.metrics`` and answers Serve's health
checks. ``build_app(AppArgs) -> Application`` is the typed builder (``serve run serving.app:build_app
model_dir=DIR``, or a Serve config file with ``import_path: serving.app:build_app``).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from ray import serve
from ray.serve import Application
from starlette.exceptions import HTTPException

from automl.exceptions import SchemaError
from automl.predictor import Predictor
from serving.schemas import (
    AppArgs,
    ErrorResponse,
    HealthResponse,
    MetadataResponse,
    PredictRequest,
    PredictResponse,
    ProbaResponse,
    RequestError,
    RowChecker,
    parse_rows,
)

logger = logging.getLogger(__name__)

OPEN_PATHS = ("/health",)  # answered without an API key
_BODY = {
    "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        "text/csv": {"schema": {"type": "string", "example": "age,workclass\n39,State-gov\n"}},
    },
    "required": True,
}
_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 415, 422)}


def _json(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return Response(body, status, media_type="application/json")


class ModelService:
    """The Predictor behind HTTP, without Ray: body checks, prediction, responses, metrics hooks."""

    def __init__(self, args: AppArgs, *, metrics: Any = None) -> None:
        self.args = args
        self.predictor = Predictor.load(args.model_dir)
        self.checker = RowChecker(self.predictor.schema)
        self.metrics = metrics
        self.version = self.predictor.model_version
        self.classes = self.predictor.classes
        self._keys = [str(c) for c in self.classes] if self.classes is not None else None
        self.predict_rows: Callable[[list[dict[str, Any]]], Awaitable[Any]] = self._predict_now
        self.internal_failures = 0
        self.capture = None
        if args.capture is not None:
            from serving.capture import DataCapture

            self.capture = DataCapture(args.capture)
        self._warm_up()

    # -- prediction ------------------------------------------------------------------------------
    def predict_many(self, jobs: list[list[dict[str, Any]]]) -> list[np.ndarray | Exception]:
        """One Predictor call for the rows of all ``jobs`` (requests); when it fails (a request's
        values cannot be read), each request is predicted alone so only the bad one fails."""
        if len(jobs) == 1:
            return [self._predict_one(jobs[0])]
        try:
            raw, _ = self.predictor.predict_raw(pd.DataFrame([r for job in jobs for r in job]))
        except Exception:  # noqa: BLE001 - re-run per request below to attribute the failure
            return [self._predict_one(job) for job in jobs]
        out, start = [], 0
        for job in jobs:
            out.append(raw[start : start + len(job)])
            start += len(job)
        return out

    def _predict_one(self, rows: list[dict[str, Any]]) -> np.ndarray | Exception:
        try:
            return self.predictor.predict_raw(pd.DataFrame(rows))[0]
        except Exception as exc:  # noqa: BLE001 - handed back to that request's handler
            return exc

    async def _predict_now(self, rows: list[dict[str, Any]]) -> np.ndarray | Exception:
        return self.predict_many([rows])[0]

    def _warm_up(self) -> None:
        row = {
            c.name: 0.0 if c.kind == "numeric" else (c.categories or [None])[0]
            for c in self.predictor.schema.columns
        }
        res = self._predict_one([row])
        if isinstance(res, Exception):
            logger.warning("warm-up prediction on a synthetic row failed: %s", res)

    # -- HTTP --------------------------------------------------------------------------------------
    async def handle_predict(self, request: Request, proba: bool) -> Response:
        endpoint = "/predict_proba" if proba else "/predict"
        start, status, n = time.perf_counter(), 500, 0
        try:
            if proba and self.classes is None:
                raise RequestError.one(
                    400,
                    "endpoint",
                    "predict_proba needs a classification model; "
                    f"this one is {self.predictor.problem_type.value}: use /predict",
                )
            rows = parse_rows(
                await _read_body(request, self.args.max_body_bytes),
                request.headers.get("content-type", "application/json"),
            )
            report = self.checker.check(rows)
            raw = await self.predict_rows(rows)
            if isinstance(raw, Exception):
                raise raw
            payload = self._payload(raw, proba)
            payload["ignored_columns"] = report.ignored_columns
            payload["unknown_categories"] = report.unknown_categories
            if self.capture is not None:
                self.capture.record(
                    endpoint=endpoint.lstrip("/"), rows=rows, response=payload, model_version=self.version
                )
            status, n = 200, len(rows)
            self.internal_failures = 0
            return _json(payload)
        except RequestError as exc:
            status = exc.status
            return _json(exc.body(), status)
        except SchemaError as exc:  # from the Predictor: values that cannot be read as the column's type
            status = 422
            return _json({"detail": str(exc), "errors": exc.errors}, status)
        except Exception:
            self.internal_failures += 1
            logger.exception("prediction failed")
            return _json({"detail": "internal error while predicting; see the server log", "errors": []}, 500)
        finally:
            if self.metrics is not None:
                self.metrics.observe(endpoint, status, time.perf_counter() - start, n)

    def _payload(self, raw: np.ndarray, proba: bool) -> dict[str, Any]:
        if proba:
            return {
                "probabilities": [dict(zip(self._keys, p)) for p in np.asarray(raw, float).tolist()],
                "classes": self.classes,
                "model_version": self.version,
            }
        labels = self.predictor.decode(raw).tolist()
        if self.classes is None:
            labels = [v if math.isfinite(v) else None for v in labels]
        return {"predictions": labels, "model_version": self.version}

    def metadata(self) -> dict[str, Any]:
        p = self.predictor
        return {
            "model_version": self.version,
            "problem_type": p.problem_type.value,
            "target": p.target,
            "classes": self.classes,
            "metric": p.metric,
            "columns": [vars(c) for c in p.schema.columns],
            "id_columns": list(p.schema.id_columns),
            "created_at": p.info.get("created_at"),
        }

    def build_fastapi(self) -> FastAPI:
        p = self.predictor
        app = FastAPI(
            title="AutoML model",
            version=self.version,
            description=f"Predicts {p.target!r} ({p.problem_type.value}).",
        )
        meta = json.dumps(self.metadata(), default=str)

        @app.get("/health", response_model=HealthResponse)
        async def health() -> Response:
            return _json({"status": "ok", "live": True, "ready": True, "model_version": self.version})

        @app.get("/metadata", response_model=MetadataResponse)
        async def metadata() -> Response:
            return Response(meta, media_type="application/json")

        @app.post(
            "/predict",
            response_model=PredictResponse,
            responses=_ERRORS,
            openapi_extra={"requestBody": _BODY},
        )
        async def predict(request: Request) -> Response:
            return await self.handle_predict(request, proba=False)

        @app.post(
            "/predict_proba",
            response_model=ProbaResponse,
            responses=_ERRORS,
            openapi_extra={"requestBody": _BODY},
        )
        async def predict_proba(request: Request) -> Response:
            return await self.handle_predict(request, proba=True)

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, exc: HTTPException) -> Response:
            return _json(RequestError.one(exc.status_code, "path", str(exc.detail)).body(), exc.status_code)

        @app.exception_handler(RequestValidationError)
        async def validation_error(request: Request, exc: RequestValidationError) -> Response:
            errors = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
            return _json(RequestError(422, errors).body(), 422)

        if self.args.api_key:
            app.add_middleware(ApiKeyGate, key=self.args.api_key)
        return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError.one(400, "Content-Length", f"not a number: {declared[:40]!r}")
        if int(declared) > limit:
            raise RequestError.one(
                413,
                "body",
                f"{int(declared)} bytes is over the limit of {limit} bytes; send fewer rows per request",
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError.one(
                413, "body", f"over the limit of {limit} bytes; send fewer rows per request"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class ApiKeyGate:
    """ASGI middleware: every request except ``/health`` needs the key (``X-API-Key: KEY`` or
    ``Authorization: Bearer KEY``); 401 otherwise. Compared in constant time."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] != "http" or path.rstrip("/") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given is not None and hmac.compare_digest(given, self.key):
            return await self.app(scope, receive, send)
        message = "missing API key" if given is None else "wrong API key"
        body = json.dumps(
            {
                "detail": f"{message}: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                "errors": [{"field": "X-API-Key", "message": message}],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ServeMetrics:
    """Request count, errors and latency, exported with Ray Serve's own metrics (Prometheus)."""

    BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter(
            "automl_requests",
            description="requests by endpoint and HTTP status",
            tag_keys=("endpoint", "status"),
        )
        self.errors = metrics.Counter(
            "automl_request_errors", description="4xx and 5xx responses", tag_keys=("endpoint", "status")
        )
        self.rows = metrics.Counter(
            "automl_rows_predicted", description="rows predicted", tag_keys=("endpoint",)
        )
        self.latency = metrics.Histogram(
            "automl_request_latency_ms",
            description="latency in the replica",
            boundaries=self.BOUNDARIES_MS,
            tag_keys=("endpoint",),
        )

    def observe(self, endpoint: str, status: int, seconds: float, rows: int) -> None:
        tags = {"endpoint": endpoint, "status": str(status)}
        self.requests.inc(1, tags)
        if status >= 400:
            self.errors.inc(1, tags)
        if rows:
            self.rows.inc(rows, {"endpoint": endpoint})
        self.latency.observe(seconds * 1000.0, {"endpoint": endpoint})


@serve.deployment(name="AutoMLModel")
@serve.ingress()
class ModelDeployment:
    """One replica: the Predictor loaded once, requests batched with ``@serve.batch``."""

    def __init__(self, args: AppArgs) -> None:
        self.service = ModelService(args, metrics=ServeMetrics())
        self.predict_batch.set_max_batch_size(args.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        self.service.predict_rows = self.predict_batch
        logger.info("replica ready: model %s from %s", self.service.version, args.model_dir)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self.service.build_fastapi()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def predict_batch(self, jobs: list[list[dict[str, Any]]]) -> list[np.ndarray | Exception]:
        return self.service.predict_many(jobs)

    def check_health(self) -> None:
        if self.service.internal_failures >= 5:
            raise RuntimeError(
                f"{self.service.internal_failures} requests in a row failed with an internal error"
            )

    def __del__(self) -> None:
        capture = getattr(getattr(self, "service", None), "capture", None)
        if capture is not None:
            capture.close()


def build_app(args: AppArgs) -> Application:
    """The Serve application for ``args`` (a dict is validated into AppArgs, as ``serve run`` does)."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    opts: dict[str, Any] = {
        "max_ongoing_requests": args.ongoing_requests,
        "ray_actor_options": {"num_cpus": 1},  # one prediction thread per replica
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
    }
    if args.autoscale is not None:
        lo, hi = args.autoscale
        opts["autoscaling_config"] = {
            "min_replicas": lo,
            "initial_replicas": max(lo, 1),
            "max_replicas": hi,
            "target_ongoing_requests": max(2, args.max_batch_size),
        }
    else:
        opts["num_replicas"] = args.num_replicas
    return ModelDeployment.options(**opts).bind(args)


# Serve reads the builder's parameter annotation to validate `args` into AppArgs; with postponed
# annotations it would see the string "AppArgs", so give it the class.
build_app.__annotations__["args"] = AppArgs
