"""Load tests with Locust (headless, loopback), and the serving benchmark built on it.

``run_load(url, payload, concurrency=C, duration_s=D)`` runs Locust (``serving/locustfile.py``) in
its own process with C users that each POST ``payload`` back to back for D seconds, and returns
counts, requests/s and latency percentiles from Locust's statistics.

``python -m serving.loadtest MODEL_DIR --data TABLE`` prints requests/s, p50 and p99 for 1-row and
100-row bodies at several concurrencies, for Ray Serve next to two floors measured in the same
run: the Predictor called in-process, and the same FastAPI app served by plain uvicorn (no Ray).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def locust_command(host: str, users: int, duration_s: float, csv_prefix: str) -> list[str]:
    """The headless Locust command line for ``users`` clients during ``duration_s`` seconds."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{max(1, round(duration_s))}s",
        "--host",
        host,
        "--csv",
        csv_prefix,
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]


def _read_locust_csv(prefix: str) -> dict[str, Any]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        total = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    statuses: dict[str, int] = {}
    with open(f"{prefix}_failures.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            m = re.search(r"HTTP (\d+)", r["Error"])
            key = m.group(1) if m and m.group(1) != "0" else "error:transport"
            statuses[key] = statuses.get(key, 0) + int(r["Occurrences"])
    n = int(total["Request Count"])
    ok = n - int(total["Failure Count"])
    if ok:
        statuses["2xx"] = ok
    return {
        "requests": n,
        "errors_5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
        "errors_4xx": sum(v for k, v in statuses.items() if k.startswith("4")),
        "errors_transport": statuses.get("error:transport", 0),
        "rps": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]) if n else float("nan"),
        "p99_ms": float(total["99%"]) if n else float("nan"),
        "status_counts": statuses,
    }


def run_load(
    url: str,
    payload: Any,
    *,
    concurrency: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> dict:
    """POST ``payload`` (bytes, str, or a JSON-able object) to ``url`` from ``concurrency`` Locust
    users for ``duration_s`` seconds. Returns ``requests, errors_5xx, errors_4xx, errors_transport,
    rps, p50_ms, p99_ms, status_counts`` (successes counted as ``"2xx"``)."""
    if concurrency < 1 or not 0 < duration_s <= 3600:
        raise ValueError(
            f"concurrency must be >= 1 and duration_s in (0, 3600]; got {concurrency}, {duration_s}"
        )
    if isinstance(payload, (bytes, bytearray)):
        body = bytes(payload)
    elif isinstance(payload, str):
        body = payload.encode()
    else:
        body = json.dumps(payload).encode()
    m = re.match(r"(https?://[^/]+)(/.*)?$", url)
    if m is None:
        raise ValueError(f"url must be http(s)://host:port/path; got {url!r}")
    host, path = m.group(1), m.group(2) or "/"
    with tempfile.TemporaryDirectory(prefix="automl-locust-") as tmp:
        Path(tmp, "body").write_bytes(body)
        env = {
            **os.environ,
            "AUTOML_LOAD_BODY": str(Path(tmp, "body")),
            "AUTOML_LOAD_PATH": path,
            "AUTOML_LOAD_HEADERS": json.dumps({"content-type": content_type, **(headers or {})}),
        }
        prefix = str(Path(tmp, "stats"))
        cmd = locust_command(host, concurrency, duration_s, prefix)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + 120)
        if proc.returncode != 0 or not Path(f"{prefix}_stats.csv").exists():
            raise RuntimeError(f"locust failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return _read_locust_csv(prefix)


# --- the benchmark -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_uvicorn(model_dir: str, port: int) -> None:
    """The floor: the same FastAPI app (ModelService) in plain uvicorn, one process, no batching."""
    import uvicorn

    from serving.app import ModelService
    from serving.schemas import AppArgs

    app = ModelService(AppArgs(model_dir=model_dir)).build_fastapi()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _in_process(model_dir: str, rows: list[dict], seconds: float = 3.0) -> dict:
    from automl.fastpath import records_to_columns
    from automl.predictor import Predictor

    pred = Predictor.load(model_dir)
    pred.predict_raw(records_to_columns(rows))
    times = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        pred.predict_raw(records_to_columns(rows))  # as the server predicts them
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1000.0
    return {
        "requests": len(ms),
        "rps": 1000.0 / ms.mean(),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors_5xx": 0,
    }


def _wait(url: str, timeout_s: float = 60.0) -> None:
    import httpx

    stop = time.time() + timeout_s
    while time.time() < stop:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _measure(name: str, url: str, n_rows: int, body: bytes, clients: int, duration: float) -> dict:
    r = {
        "server": name,
        "rows": n_rows,
        "clients": clients,
        **run_load(url + "/predict", body, concurrency=clients, duration_s=duration),
    }
    print(
        f"  {name:10s} rows={n_rows:<4d} clients={clients:<3d} {r['rps']:8.1f} req/s  "
        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  5xx {r['errors_5xx']}  "
        f"{r['status_counts']}",
        flush=True,
    )
    return r


@contextlib.contextmanager
def plain_uvicorn(model_dir: str) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "serving.loadtest", model_dir, "--uvicorn-child", str(port)]
    child = subprocess.Popen(cmd)
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(30)


@contextlib.contextmanager
def _serve(args: Any) -> Iterator[str]:
    from serving import server

    base = server.start(args, port=_free_port())
    try:
        yield base
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--data", help="CSV/Parquet rows to send (default: the model's validation_sample.parquet)")
    p.add_argument("--rows", default="1,100", help="rows per request, comma-separated")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--max-ongoing-requests", type=int)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--uvicorn-child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.uvicorn_child:
        _serve_uvicorn(a.model_dir, a.uvicorn_child)
        return 0
    from automl.data import load_table
    from automl.predictor import Predictor
    from serving.schemas import AppArgs

    names = Predictor.load(a.model_dir).schema.names
    table = load_table(a.data or os.path.join(a.model_dir, "validation_sample.parquet"))
    table = table[[c for c in table.columns if c in names]]
    rows = {
        n: json.loads(table.sample(n, replace=len(table) < n, random_state=0).to_json(orient="records"))
        for n in (int(x) for x in a.rows.split(","))
    }
    args = AppArgs(
        model_dir=a.model_dir,
        num_replicas=a.replicas,
        max_batch_size=a.max_batch_size,
        batch_wait_timeout_s=a.batch_wait_ms / 1000.0,
        max_ongoing_requests=a.max_ongoing_requests,
    )
    results = []
    # Both servers run side by side and each cell is measured on one, then at once on the other, so
    # the machine's other load affects the pair alike.
    with plain_uvicorn(a.model_dir) as floor, _serve(args) as serve_url:
        for n, r in rows.items():
            body = json.dumps({"rows": r}).encode()
            f = _in_process(a.model_dir, r)
            results.append({"server": "in-process", "rows": n, "clients": 1, **f})
            print(
                f"  in-process rows={n:<4d} {f['rps']:8.1f} calls/s  p50 {f['p50_ms']:7.1f} ms  "
                f"p99 {f['p99_ms']:7.1f} ms",
                flush=True,
            )
            for url in (floor, serve_url):
                run_load(url + "/predict", body, concurrency=4, duration_s=1.0)  # warm up
            for c in (int(x) for x in a.concurrency.split(",")):
                results.append(_measure("uvicorn", floor, n, body, c, a.duration))
                results.append(_measure("serve", serve_url, n, body, c, a.duration))
    print(format_table(results))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


def format_table(results: list[dict]) -> str:
    lines = [
        "| server | rows/request | clients | req/s | p50 ms | p99 ms | 5xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['server']} | {r['rows']} | {r['clients']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors_5xx']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
