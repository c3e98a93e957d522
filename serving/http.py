"""HTTP plumbing shared by the endpoint's routes: JSON responses, bounded body reading, the API-key
gate (ASGI middleware) and the request metrics exported with Ray Serve's metrics."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from serving.rows import RequestError

#: answered without an API key (liveness and readiness probes)
OPEN_PATHS = ("/health", "/v2/health/live", "/v2/health/ready")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return Response(body, status, headers=headers, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
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
    """ASGI middleware: every request except the health probes (``OPEN_PATHS``) needs the key
    (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``); 401 otherwise, in the V2 error shape
    under ``/v2``. Compared in constant time."""

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
        detail = f"{message}: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
        payload: dict[str, Any] = {"detail": detail, "errors": [{"field": "X-API-Key", "message": message}]}
        if path.startswith("/v2"):
            payload = {"error": detail}
        body = json.dumps(payload).encode()
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
