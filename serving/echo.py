"""A trivial Ray Serve deployment with a FastAPI ingress that answers ``POST /`` with the JSON body it
received: the floor of a request through Serve's proxy, router and replica on this machine, against
which the model endpoint's own cost is measured (``bench.serving``: a single client's one-row p50)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.serve import Application

ECHO_APP = "echo"
ECHO_ROUTE = "/echo"

_api = FastAPI(title="echo")


@_api.post("/")
async def _echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


@serve.deployment(name="Echo", ray_actor_options={"num_cpus": 0})
@serve.ingress(_api)
class Echo:
    """Echoes the request body (no parsing, no model)."""


def echo_app() -> Application:
    return Echo.bind()


def start_echo() -> str:
    """Deploy the echo app beside the running Serve instance (``serving.server.start`` first); returns
    its route."""
    serve.run(echo_app(), name=ECHO_APP, route_prefix=ECHO_ROUTE, blocking=False)
    return ECHO_ROUTE


def stop_echo() -> None:
    serve.delete(ECHO_APP)


__all__ = ["Echo", "echo_app", "start_echo", "stop_echo"]
