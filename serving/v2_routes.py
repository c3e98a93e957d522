"""The Open Inference Protocol V2 routes of a ``ModelService`` (the protocol itself: ``serving.v2``).

No ``from __future__ import annotations`` here: the route handlers' path parameters are annotated
with objects built per model (the served name and version as the OpenAPI ``enum``), which FastAPI
can only read from evaluated annotations.
"""

import importlib.metadata
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response

from automl.exceptions import SchemaError
from serving.http import json_response, read_body
from serving.rows import RequestError
from serving.v2 import (
    V2Error,
    model_metadata,
    parse_request,
    request_rows,
    response_outputs,
    rows_error,
)
from serving.v2_models import (
    ErrorV2,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerMetadata,
)

if TYPE_CHECKING:
    from serving.app import ModelService

logger = logging.getLogger(__name__)

MODEL = "/v2/models/{model_name}"
VERSIONED = "/v2/models/{model_name}/versions/{model_version}"
_NOT_FOUND = {404: {"model": ErrorV2}, 401: {"model": ErrorV2}}
_INFER_ERRORS = {s: {"model": ErrorV2} for s in (400, 401, 404, 413)}
_INFER_BODY = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
    "required": True,
}


def v2_components() -> dict[str, Any]:
    """``components.schemas`` entries for the V2 request body (documented, not FastAPI-parsed, so
    the binary tensor extension can share the route)."""
    doc = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = doc.pop("$defs", {})
    return {"InferenceRequest": doc, **defs}


def _version() -> str:
    try:
        return importlib.metadata.version("automl-on-ray")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def add_v2_routes(app: FastAPI, service: "ModelService") -> None:
    name, version = service.model_name, service.version
    # the served name and version are documented as the only values (other values get 404)
    Name = Annotated[str, Path(description="the served model's name", json_schema_extra={"enum": [name]})]
    Version = Annotated[
        str, Path(description="the served model's version", json_schema_extra={"enum": [version]})
    ]
    meta = model_metadata(service.predictor, name)
    server = {"name": "automl-on-ray", "version": _version(), "extensions": ["binary_tensor_data"]}

    def check_model(model_name: str, model_version: str | None) -> None:
        if model_name != name:
            raise V2Error(404, f"unknown model {model_name!r}; this server serves {name!r}")
        if model_version is not None and model_version != version:
            raise V2Error(
                404, f"unknown version {model_version!r} of {name!r}; the served version is {version!r}"
            )

    def answer(fn: Any, model_name: str, model_version: str | None) -> Response:
        try:
            check_model(model_name, model_version)
        except V2Error as exc:
            return json_response(exc.body(), exc.status)
        return json_response(fn())

    @app.get("/v2", response_model=ServerMetadata, tags=["v2"])
    async def server_metadata() -> Response:
        return json_response(server)

    @app.get("/v2/health/live", tags=["v2"])
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", tags=["v2"])
    async def ready() -> Response:
        return json_response({"ready": True})

    @app.get(MODEL, response_model=ModelMetadata, responses=_NOT_FOUND, tags=["v2"])
    async def metadata(model_name: Name) -> Response:
        return answer(lambda: meta, model_name, None)

    @app.get(VERSIONED, response_model=ModelMetadata, responses=_NOT_FOUND, tags=["v2"])
    async def metadata_version(model_name: Name, model_version: Version) -> Response:
        return answer(lambda: meta, model_name, model_version)

    @app.get(MODEL + "/ready", response_model=ModelReady, responses=_NOT_FOUND, tags=["v2"])
    async def model_ready(model_name: Name) -> Response:
        return answer(lambda: {"name": name, "ready": True}, model_name, None)

    @app.get(VERSIONED + "/ready", response_model=ModelReady, responses=_NOT_FOUND, tags=["v2"])
    async def model_ready_version(model_name: Name, model_version: Version) -> Response:
        return answer(lambda: {"name": name, "ready": True}, model_name, model_version)

    extra = {"requestBody": _INFER_BODY}

    @app.post(
        MODEL + "/infer",
        response_model=InferenceResponse,
        responses=_INFER_ERRORS,
        openapi_extra=extra,
        tags=["v2"],
    )
    async def model_infer(request: Request, model_name: Name) -> Response:
        return await _infer(service, check_model, request, model_name, None)

    @app.post(
        VERSIONED + "/infer",
        response_model=InferenceResponse,
        responses=_INFER_ERRORS,
        openapi_extra=extra,
        tags=["v2"],
    )
    async def model_infer_version(request: Request, model_name: Name, model_version: Version) -> Response:
        return await _infer(service, check_model, request, model_name, model_version)


async def _infer(
    service: "ModelService", check_model: Any, request: Request, model_name: str, model_version: str | None
) -> Response:
    """One V2 ``infer`` request: checks, the rows, the prediction, the answer (or its error)."""
    name, version = service.model_name, service.version
    start, status, n = time.perf_counter(), 500, 0
    service.in_flight += 1
    try:
        check_model(model_name, model_version)
        try:
            body = await read_body(request, service.args.max_body_bytes)
        except RequestError as exc:
            raise rows_error(exc) from None
        req = parse_request(body, request.headers.get("inference-header-content-length"))
        try:
            rows, _ = service.rows.check_rows(request_rows(req, service.rows.names))
        except RequestError as exc:
            raise rows_error(exc) from None
        raw = await service.predict_rows(rows)
        if isinstance(raw, Exception):
            raise raw
        answer: dict[str, Any] = {
            "model_name": name,
            "model_version": version,
            "outputs": response_outputs(service.predictor, raw, req.outputs),
        }
        if req.id is not None:
            answer["id"] = req.id
        if service.capture is not None:
            payload = service.payload(raw, proba=service.classes is not None)
            service.capture.record(endpoint="v2/infer", rows=rows, response=payload, model_version=version)
        status, n = 200, len(rows)
        service.internal_failures = 0
        return json_response(answer)
    except V2Error as exc:
        status = exc.status
        return json_response(exc.body(), status)
    except SchemaError as exc:
        status = 400
        return json_response({"error": str(exc)}, status)
    except Exception:
        service.internal_failures += 1
        logger.exception("V2 inference failed")
        return json_response({"error": "internal error while predicting; see the server log"}, 500)
    finally:
        service.in_flight -= 1
        if service.metrics is not None:
            service.metrics.observe("/v2/infer", status, time.perf_counter() - start, n)
