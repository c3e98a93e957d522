"""The REST endpoint: a FastAPI app around the Predictor, deployed with Ray Serve.

``ModelService`` holds the Predictor and builds the FastAPI app: ``POST /predict``,
``POST /predict_proba`` (JSON or CSV rows), ``GET /metadata``, ``/health``, ``/stats`` and the Open
Inference Protocol V2 routes (``serving.v2_routes``). It does not need Ray (the load test serves the
same app with plain uvicorn as a floor). Request bodies are checked by the pydantic models generated
from the Predictor's input schema (``serving.rows.RowSchema``), which also make the OpenAPI document.
``ModelDeployment`` is the Serve ingress deployment: it loads the Predictor once per replica,
predicts concurrent requests together with ``@serve.batch``, exports request metrics with
``ray.serve.metrics`` and answers Serve's health checks. ``build_app(AppArgs) -> Application`` is the
typed builder (``serve run serving.app:build_app model_dir=DIR``, or a Serve config file with
``import_path: serving.app:build_app``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from ray import serve
from ray.serve import Application
from starlette.exceptions import HTTPException

from automl.exceptions import SchemaError
from automl.fastpath import records_to_columns
from automl.predictor import Predictor
from serving.http import ApiKeyGate, ServeMetrics, json_response, read_body
from serving.rows import RequestError, RowSchema
from serving.schemas import (
    AppArgs,
    ErrorResponse,
    HealthResponse,
    MetadataResponse,
    PredictResponse,
    ProbaResponse,
    StatsResponse,
    parse_body,
)
from serving.v2 import model_name_for

logger = logging.getLogger(__name__)

_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 415, 422)}
#: consecutive internal errors after which the replica reports itself unhealthy
UNHEALTHY_AFTER = 5


class ModelService:
    """The Predictor behind HTTP, without Ray: body checks, prediction, responses, metrics hooks."""

    def __init__(self, args: AppArgs, *, metrics: Any = None) -> None:
        self.args = args
        self.predictor = Predictor.load(args.model_dir)
        self.rows = RowSchema(self.predictor.schema, args.missing, args.missing_columns)
        self.metrics = metrics
        self.version = self.predictor.model_version
        self.model_name = args.model_name or model_name_for(args.model_dir)
        self.classes = self.predictor.classes
        self._keys = [str(c) for c in self.classes] if self.classes is not None else None
        self.predict_rows: Callable[[list[dict[str, Any]]], Awaitable[Any]] = self._predict_now
        self.internal_failures = 0
        self.in_flight = 0  # requests this replica is answering (received, not yet answered)
        self.replica = "local"
        self.batch_sizes: Counter[int] = Counter()  # requests per Predictor call -> number of calls
        self.capture = None
        if args.capture is not None:
            from serving.capture import DataCapture

            self.capture = DataCapture(args.capture)
        self._warm_up()

    # -- prediction ------------------------------------------------------------------------------
    def predict_many(self, jobs: list[list[dict[str, Any]]]) -> list[np.ndarray | Exception]:
        """One Predictor call for the rows of all ``jobs`` (requests); when it fails (a request's
        values cannot be read), each request is predicted alone so only the bad one fails."""
        self.batch_sizes[len(jobs)] += 1
        if self.args.fault_file and os.path.exists(self.args.fault_file):  # test hook, see AppArgs
            return [RuntimeError(f"injected failure: {self.args.fault_file} exists") for _ in jobs]
        if len(jobs) == 1:
            return [self._predict_one(jobs[0])]
        try:
            raw, _ = self.predictor.predict_raw(records_to_columns([r for job in jobs for r in job]))
        except Exception:  # noqa: BLE001 - re-run per request below to attribute the failure
            return [self._predict_one(job) for job in jobs]
        out, start = [], 0
        for job in jobs:
            out.append(raw[start : start + len(job)])
            start += len(job)
        return out

    def _predict_one(self, rows: list[dict[str, Any]]) -> np.ndarray | Exception:
        try:  # a column mapping, not a DataFrame: the Predictor's compiled path reads it directly
            return self.predictor.predict_raw(records_to_columns(rows))[0]
        except Exception as exc:  # noqa: BLE001 - handed back to that request's handler
            return exc

    async def _predict_now(self, rows: list[dict[str, Any]]) -> np.ndarray | Exception:
        return self.predict_many([rows])[0]

    def _warm_up(self) -> None:
        from serving.cells import example_value

        res = self._predict_one([{c.name: example_value(c) for c in self.predictor.schema.columns}])
        self.batch_sizes.clear()
        if isinstance(res, Exception):
            logger.warning("warm-up prediction on a synthetic row failed: %s", res)

    # -- HTTP --------------------------------------------------------------------------------------
    async def handle_predict(self, request: Request, proba: bool) -> Response:
        endpoint = "/predict_proba" if proba else "/predict"
        start, status, n = time.perf_counter(), 500, 0
        self.in_flight += 1
        try:
            if proba and self.classes is None:
                raise RequestError.one(
                    400,
                    "endpoint",
                    "predict_proba needs a classification model; "
                    f"this one is {self.predictor.problem_type.value}: use /predict",
                )
            body = await read_body(request, self.args.max_body_bytes)
            kind, doc = parse_body(body, request.headers.get("content-type", "application/json"))
            rows, report = self.rows.check_document(doc) if kind == "json" else self.rows.check_rows(doc)
            raw = await self.predict_rows(rows)
            if isinstance(raw, Exception):
                raise raw
            payload = self.payload(raw, proba)
            payload["ignored_columns"] = report.ignored_columns
            payload["unknown_categories"] = report.unknown_categories
            if self.capture is not None:
                sent = doc["rows"] if kind == "json" else doc  # what the client sent, not the clean rows
                self.capture.record(
                    endpoint=endpoint.lstrip("/"), rows=sent, response=payload, model_version=self.version
                )
            status, n = 200, len(rows)
            self.internal_failures = 0
            return json_response(payload)
        except RequestError as exc:
            status = exc.status
            return json_response(exc.body(), status)
        except SchemaError as exc:  # from the Predictor: values that cannot be read as the column's type
            status = 422
            return json_response({"detail": str(exc), "errors": exc.errors}, status)
        except Exception:
            self.internal_failures += 1
            logger.exception("prediction failed")
            detail = "internal error while predicting; see the server log"
            return json_response({"detail": detail, "errors": []}, 500)
        finally:
            self.in_flight -= 1
            if self.metrics is not None:
                self.metrics.observe(endpoint, status, time.perf_counter() - start, n)

    def payload(self, raw: np.ndarray, proba: bool) -> dict[str, Any]:
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
            "model_name": self.model_name,
            "problem_type": p.problem_type.value,
            "target": p.target,
            "classes": self.classes,
            "metric": p.metric,
            "columns": [{**vars(c), "missing": self.rows.policies[c.name]} for c in p.schema.columns],
            "id_columns": list(p.schema.id_columns),
            "created_at": p.info.get("created_at"),
        }

    def stats(self) -> dict[str, Any]:
        calls = sum(self.batch_sizes.values())
        return {
            "replica": self.replica,
            "model_version": self.version,
            "predictor_calls": calls,
            "requests_predicted": sum(k * v for k, v in self.batch_sizes.items()),
            "largest_batch": max(self.batch_sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "internal_failures_in_a_row": self.internal_failures,
        }

    def build_fastapi(self) -> FastAPI:
        from serving.v2_routes import add_v2_routes, v2_components

        p = self.predictor
        app = FastAPI(
            title="AutoML model",
            version=self.version,
            description=f"Predicts {p.target!r} ({p.problem_type.value}).",
        )
        meta = self.metadata()
        body = {
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                "text/csv": {"schema": {"type": "string"}, "example": self.rows.csv_example},
            },
            "required": True,
        }

        @app.get("/health", response_model=HealthResponse)
        async def health() -> Response:
            return json_response({"status": "ok", "live": True, "ready": True, "model_version": self.version})

        @app.get("/metadata", response_model=MetadataResponse, responses={401: {"model": ErrorResponse}})
        async def metadata() -> Response:
            return json_response(meta)

        @app.get("/stats", response_model=StatsResponse, responses={401: {"model": ErrorResponse}})
        async def stats() -> Response:
            return json_response(self.stats())

        @app.post(
            "/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra={"requestBody": body}
        )
        async def predict(request: Request) -> Response:
            return await self.handle_predict(request, proba=False)

        @app.post(
            "/predict_proba",
            response_model=ProbaResponse,
            responses=_ERRORS,
            openapi_extra={"requestBody": body},
        )
        async def predict_proba(request: Request) -> Response:
            return await self.handle_predict(request, proba=True)

        add_v2_routes(app, self)

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, exc: HTTPException) -> Response:
            # keeps the exception's headers: for a method a route lacks, Starlette's Route raises
            # HTTPException(405, headers={"Allow": ...}), and RFC 9110 requires `Allow` on a 405
            headers = dict(exc.headers or {})
            if request.url.path.startswith("/v2"):
                return json_response({"error": str(exc.detail)}, exc.status_code, headers)
            body = RequestError.one(exc.status_code, "path", str(exc.detail)).body()
            return json_response(body, exc.status_code, headers)

        @app.exception_handler(RequestValidationError)
        async def validation_error(request: Request, exc: RequestValidationError) -> Response:
            errors = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
            return json_response(RequestError(422, errors).body(), 422)

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                doc = get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
                schemas = doc.setdefault("components", {}).setdefault("schemas", {})
                schemas.update(self.rows.openapi_components())
                schemas.update(v2_components())
                app.openapi_schema = doc
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]
        if self.args.api_key:
            app.add_middleware(ApiKeyGate, key=self.args.api_key)
        return app


@serve.deployment(name="AutoMLModel")
@serve.ingress()
class ModelDeployment:
    """One replica: the Predictor loaded once, requests batched with ``@serve.batch``."""

    def __init__(self, args: AppArgs) -> None:
        self.service = ModelService(args, metrics=ServeMetrics())
        self.service.replica = serve.get_replica_context().replica_id.unique_id
        self.predict_batch.set_max_batch_size(args.max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        self.service.predict_rows = self.predict_rows
        logger.info("replica ready: model %s from %s", self.service.version, args.model_dir)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self.service.build_fastapi()

    async def predict_rows(self, rows: list[dict[str, Any]]) -> np.ndarray | Exception:
        """Alone on the replica, a request is predicted at once; with others in flight it joins a
        batch (which waits ``batch_wait_timeout_s`` for more: 2 ms of a lone request's latency)."""
        if self.service.in_flight <= 1:
            return self.service.predict_many([rows])[0]
        return await self.predict_batch(rows)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def predict_batch(self, jobs: list[list[dict[str, Any]]]) -> list[np.ndarray | Exception]:
        return self.service.predict_many(jobs)

    def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``; raising marks the replica unhealthy and
        Serve replaces it."""
        if self.service.internal_failures >= UNHEALTHY_AFTER:
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
        "ray_actor_options": {"num_cpus": args.replica_cpus},  # one prediction thread per replica
        "health_check_period_s": args.health_check_period_s,
        "health_check_timeout_s": 30.0,
    }
    if args.autoscale is not None:
        opts["autoscaling_config"] = args.autoscaling_config()
    else:
        opts["num_replicas"] = args.num_replicas
    return ModelDeployment.options(**opts).bind(args)


# Serve reads the builder's parameter annotation to validate `args` into AppArgs; with postponed
# annotations it would see the string "AppArgs", so give it the class.
build_app.__annotations__["args"] = AppArgs
