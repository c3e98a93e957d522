"""CLI subcommand ``automl serve``: the best model behind a Ray Serve REST endpoint (cheap to import)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "serve",
        help="serve a saved model over HTTP with Ray Serve",
        description="Serve a saved model (a run directory or registry://NAME[:VERSION]) with "
        "Ray Serve: POST /predict, POST /predict_proba, GET /health, GET /metadata, GET /stats, "
        "the Open Inference Protocol V2 under /v2 (KServe V2 REST), docs at /docs.",
    )
    add = s.add_argument
    add("model", help="model directory, or registry://NAME[:VERSION]")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs an API key)")
    add("--port", type=int, default=8000)
    scale = s.add_mutually_exclusive_group()
    scale.add_argument("--replicas", type=int, default=1, help="fixed number of replicas (one CPU each)")
    scale.add_argument("--autoscale", metavar="MIN:MAX", help="let Serve scale replicas between MIN and MAX")
    add("--max-batch-size", type=int, default=16, help="requests one replica predicts together")
    add("--batch-wait-ms", type=float, default=2.0, help="how long a replica waits to fill a batch")
    add("--max-ongoing-requests", type=int, help="requests one replica holds at once")
    add("--api-key", help="required on every request but /health (default: $AUTOML_API_KEY)")
    add("--max-body-mb", type=float, default=10.0, help="larger request bodies get 413")
    add("--capture-dir", help="record served requests and responses in this directory")
    add("--capture-rate", type=float, help="share of requests to record (default 1.0 with --capture-dir)")
    add(
        "--missing",
        choices=["reject", "impute"],
        default="reject",
        help="a missing or null value in a required column (never missing in training): reject it with "
        "422 naming the row and column (default), or impute it as training did",
    )
    add(
        "--missing-column",
        action="append",
        default=[],
        metavar="COLUMN=POLICY",
        help="per-column missing policy (reject or impute), overriding --missing; repeatable",
    )
    add("--model-name", help="the model's name in the V2 protocol (default: the model directory's name)")
    add("--address", help="Ray cluster address (default: RAY_ADDRESS or start Ray in-process)")
    s.set_defaults(func=cmd_serve)


def _autoscale(text: str | None) -> tuple[int, int] | None:
    from automl.exceptions import ConfigError

    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise ConfigError(f"--autoscale takes MIN:MAX (e.g. 1:4); got {text!r}")
    return int(lo), int(hi)


def _missing_columns(items: list[str]) -> dict[str, str]:
    from automl.exceptions import ConfigError

    out = {}
    for item in items:
        col, sep, policy = item.rpartition("=")
        if not sep or not col:
            raise ConfigError(f"--missing-column takes COLUMN=reject or COLUMN=impute; got {item!r}")
        out[col] = policy
    return out


def app_args_from_cli(a: argparse.Namespace, model_dir: str) -> AppArgs:  # noqa: F821 - lazy import
    from pydantic import ValidationError

    from automl.exceptions import ConfigError
    from serving.schemas import AppArgs

    if a.capture_rate is not None and not a.capture_dir:
        raise ConfigError("--capture-rate needs --capture-dir (where to record requests)")
    capture = None
    if a.capture_dir:
        from serving.capture import CaptureConfig

        rate = 1.0 if a.capture_rate is None else a.capture_rate
        capture = CaptureConfig(directory=a.capture_dir, sample_rate=rate)
    try:
        return AppArgs(
            model_dir=model_dir,
            max_batch_size=a.max_batch_size,
            batch_wait_timeout_s=a.batch_wait_ms / 1000,
            num_replicas=a.replicas,
            autoscale=_autoscale(a.autoscale),
            api_key=a.api_key or os.environ.get("AUTOML_API_KEY") or None,
            max_body_bytes=int(a.max_body_mb * 1_000_000),
            capture=capture,
            max_ongoing_requests=a.max_ongoing_requests,
            missing=a.missing,
            missing_columns=_missing_columns(a.missing_column),
            model_name=a.model_name,
        )
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError("; ".join(problems)) from None


def cmd_serve(a: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from automl.config import ResourceConfig
    from automl.exceptions import ConfigError
    from automl.predictor import Predictor
    from automl.runtime import ensure_ray
    from serving import server

    t = time.time()
    model_dir = a.model
    if model_dir.startswith("registry://"):
        from automl.registry import resolve_model_uri  # issue 8: a local directory for NAME[:VERSION]

        model_dir = resolve_model_uri(model_dir)
    args = app_args_from_cli(a, model_dir)
    server.check_bind(a.host, args)
    predictor = Predictor.load(model_dir)  # fail fast (missing or altered artifact) before Ray starts
    try:
        from serving.rows import resolve_policies

        resolve_policies(predictor.schema, args.missing, args.missing_columns)
    except ValueError as exc:
        raise ConfigError(f"--missing-column: {exc}") from None
    info = ensure_ray(ResourceConfig(address=a.address))
    stop = threading.Event()  # set by Ctrl-C or SIGTERM (also one that arrives while starting)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        base = server.start(args, host=a.host, port=a.port)
        print(_banner(predictor, base, args, time.time() - t), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        if info.started_here:
            import ray

            ray.shutdown()
    return 0


def _banner(predictor: Any, base: str, args: Any, seconds: float) -> str:
    example = ", ".join(f'"{c}": ...' for c in predictor.schema.names[:2])
    key = " -H 'X-API-Key: <your key>'" if args.api_key else ""
    return (
        f"serving model {predictor.model_version} ({predictor.problem_type.value}, target "
        f"{predictor.target!r}) at {base}, ready in {seconds:.1f}s\n"
        f"  docs: {base}/docs   metadata: {base}/metadata   health: {base}/health   V2: {base}/v2\n"
        f"  try: curl -s {base}/predict -H 'Content-Type: application/json'{key} "
        f"-d '{{\"rows\": [{{{example}, ...}}]}}'\nCtrl-C stops the endpoint."
    )
