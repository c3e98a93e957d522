"""Start and stop the model endpoint in the caller's Ray session (used by ``automl serve`` and tests).

Security defaults: the HTTP proxy binds 127.0.0.1 unless told otherwise, and binding any other
address needs an API key. Ray's dashboard is never started by this module (``ensure_ray`` starts
Ray without it).
"""

from __future__ import annotations

import ipaddress
import logging
import time

from automl.exceptions import ConfigError
from serving.schemas import AppArgs

logger = logging.getLogger(__name__)

APP_NAME = "automl"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, args: AppArgs) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(host) and not args.api_key:
        raise ConfigError(
            f"binding to {host!r} exposes the model beyond this machine: give an API key "
            "(--api-key or the AUTOML_API_KEY environment variable), or bind 127.0.0.1"
        )


def start(args: AppArgs, *, host: str = "127.0.0.1", port: int = 8000, timeout_s: float = 120.0) -> str:
    """Deploy ``args.model_dir`` behind Ray Serve on ``host:port``; return the base URL once
    ``GET /health`` answers. Uses the running Ray session, or starts Ray here (``ensure_ray``)."""
    import ray
    from ray import serve

    from serving.app import build_app

    check_bind(host, args)
    if not ray.is_initialized():
        from automl.config import ResourceConfig
        from automl.runtime import ensure_ray

        ensure_ray(ResourceConfig())
    _check_cpus(args)
    app = build_app(args)  # loads nothing yet; replicas load the Predictor
    serve.start(http_options={"host": host, "port": port})
    t = time.time()
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    url_host = f"[{host}]" if ":" in host else host
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else url_host}:{port}"
    _wait_healthy(base, timeout_s)
    logger.info("serving %s at %s (ready %.1fs after deploy)", args.model_dir, base, time.time() - t)
    return f"http://{url_host}:{port}"


def stop() -> None:
    """Shut down Ray Serve in this Ray session (Ray itself keeps running)."""
    from ray import serve

    serve.shutdown()


def _check_cpus(args: AppArgs) -> None:
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    need = args.autoscale[0] if args.autoscale else args.num_replicas
    if need > cpus:
        raise ConfigError(
            f"{need} replica(s) need {need} CPUs (one each) but the Ray cluster has "
            f"{cpus:.0f}; lower --replicas / the autoscale minimum, or add nodes"
        )
    if args.autoscale and args.autoscale[1] > cpus:
        logger.warning(
            "autoscale maximum %d is above the cluster's %.0f CPUs: replicas beyond that wait for resources",
            args.autoscale[1],
            cpus,
        )


def _wait_healthy(base: str, timeout_s: float) -> None:
    import httpx

    deadline = time.time() + timeout_s
    last = "no answer"
    while time.time() < deadline:
        try:
            r = httpx.get(base + "/health", timeout=5.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise ConfigError(
        f"the endpoint at {base} did not become healthy within {timeout_s:.0f}s ({last}); "
        "is another Serve instance using a different port in this Ray session?"
    )
