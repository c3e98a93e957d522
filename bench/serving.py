"""Serving speed: a bounded loopback load test of ``automl serve`` next to plain uvicorn and the floor.

Starts the REST server on 127.0.0.1 for one saved model (``serving.server.start``, default settings)
and, beside it, the same FastAPI app in plain uvicorn (one process, no Ray, no batching), drives
``POST /predict`` with 1-row and 100-row bodies at 1, 8 and 32 Locust users for a fixed duration
each (``serving.loadtest.run_load``: headless Locust), one server and then at once the other, and
reports requests/s, rows/s, p50/p99 and errors next to the in-process predict time of the same rows
(the floor: what the model alone costs). Runs in its own process (``python -m bench.serving``) so
Ray and Serve start fresh and end with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import (
    DEFAULT_MANIFEST,
    SHARED_BENCH,
    read_manifest,
    run_child,
    select_tables,
    shared_modules,
    write_json,
)

CONCURRENCY = (1, 8, 32)
ROWS_PER_REQUEST = (1, 100)
DURATION_S = 10.0
WARMUP_S = 2.0
FLOOR_REPEATS = 30
#: single-client cell: sequential one-row requests timed, and the target gap to the echo deployment
SINGLE_CALLS, SINGLE_GAP_TARGET_MS = 300, 5.0

logger = logging.getLogger(__name__)


def request_body(X: pd.DataFrame, n_rows: int) -> bytes:
    """``{"rows": [...]}`` with the first ``n_rows`` test rows (repeated if the table is smaller);
    missing values are sent as null."""
    rows = X.iloc[[i % len(X) for i in range(n_rows)]]
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    return json.dumps({"rows": records}).encode()


def floor_ms(predictor: Any, body: bytes, repeats: int = FLOOR_REPEATS) -> dict[str, float]:
    """Median ms of the in-process predict of the body's rows: the model alone, and with the
    JSON parsing and column mapping a server must also do."""
    from automl.fastpath import records_to_columns

    columns = records_to_columns(json.loads(body)["rows"])
    predictor.predict(columns)  # warm-up
    model, parsed = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict(columns)
        model.append(time.perf_counter() - t)
        t = time.perf_counter()
        predictor.predict(records_to_columns(json.loads(body)["rows"]))  # as the server does
        parsed.append(time.perf_counter() - t)
    return {
        "predict_ms": 1000 * statistics.median(model),
        "parse_and_predict_ms": 1000 * statistics.median(parsed),
    }


def single_client_ms(url: str, body: bytes, calls: int = SINGLE_CALLS, warmup: int = 30) -> dict[str, float]:
    """One client, one kept-alive connection, requests one after another: p50 and p99 in ms."""
    import httpx

    times = []
    with httpx.Client(timeout=30.0) as client:
        for i in range(warmup + calls):
            t = time.perf_counter()
            r = client.post(url, content=body, headers={"content-type": "application/json"})
            if i >= warmup:
                times.append(time.perf_counter() - t)
            r.raise_for_status()
    ms = sorted(1000 * t for t in times)
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "calls": calls,
    }


def single_client_vs_echo(base: str, body: bytes) -> dict[str, Any]:
    """A single client's one-row latency through ``automl serve`` next to a trivial Ray Serve echo
    deployment with a FastAPI ingress on the same Serve instance (``serving.echo``): the gap is what
    the model endpoint adds to Serve's own cost (target: at most ``SINGLE_GAP_TARGET_MS``)."""
    from serving.echo import start_echo, stop_echo

    echo = f"{base}{start_echo()}/"
    try:
        deadline = time.time() + 120
        while True:  # the echo replica is up when it answers
            try:
                single_client_ms(echo, body, calls=1, warmup=0)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        serve_ms = single_client_ms(f"{base}/predict", body)
        echo_ms = single_client_ms(echo, body)
    finally:
        stop_echo()
    gap = serve_ms["p50_ms"] - echo_ms["p50_ms"]
    logger.info(
        "single client, one row: serve p50 %.1f ms, echo p50 %.1f ms", serve_ms["p50_ms"], echo_ms["p50_ms"]
    )
    return {"serve": serve_ms, "echo": echo_ms, "gap_p50_ms": gap, "target_gap_ms": SINGLE_GAP_TARGET_MS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_serving(
    model_dir: Path,
    X: pd.DataFrame,
    *,
    concurrency: tuple[int, ...] = CONCURRENCY,
    rows_per_request: tuple[int, ...] = ROWS_PER_REQUEST,
    duration_s: float = DURATION_S,
) -> dict[str, Any]:
    from automl import load
    from serving import server
    from serving.loadtest import plain_uvicorn, run_load
    from serving.schemas import AppArgs

    predictor = load(model_dir)
    bodies = {n: request_body(X, n) for n in rows_per_request}
    floors = {n: floor_ms(predictor, b) for n, b in bodies.items()}
    t0 = time.perf_counter()
    # returns the base URL once GET /health answers
    base = server.start(AppArgs(model_dir=str(model_dir)), host="127.0.0.1", port=_free_port())
    startup_s = time.perf_counter() - t0
    results = []
    try:
        single = single_client_vs_echo(base, bodies[min(bodies)])
        with plain_uvicorn(str(model_dir)) as floor_url:
            servers = {"serve": base, "uvicorn": floor_url}
            for n, body in bodies.items():
                for url in servers.values():
                    run_load(f"{url}/predict", body, concurrency=1, duration_s=WARMUP_S)
                for c in concurrency:
                    for name, url in servers.items():
                        r = run_load(f"{url}/predict", body, concurrency=c, duration_s=duration_s)
                        results.append(
                            {
                                "server": name,
                                "rows_per_request": n,
                                "concurrency": c,
                                **r,
                                "rows_per_s": r["rps"] * n,
                                "floor": floors[n],
                            }
                        )
                        logger.info(
                            "%s rows=%d concurrency=%d: %.1f req/s p50 %.1f ms p99 %.1f ms",
                            name,
                            n,
                            c,
                            r["rps"],
                            r["p50_ms"],
                            r["p99_ms"],
                        )
    finally:
        server.stop()
    return {
        "status": "ok",
        "model_dir": str(model_dir),
        "url": f"{base}/predict",
        "duration_s": duration_s,
        "warmup_s": WARMUP_S,
        "server_startup_s": startup_s,
        "floor": floors,
        "single_client": single,
        "runs": results,
        "load_generator": "Locust (headless, FastHttpUser, no wait time), one process on the same machine",
        "server": "Ray Serve, default AppArgs (1 replica); uvicorn: the same FastAPI app, 1 process",
    }


def serving_markdown(res: dict[str, Any]) -> str:
    if res.get("status") != "ok":
        return f"serving benchmark: {res.get('status')}: {res.get('error')}"
    lines = [
        f"Model: `{res['model_dir']}`; {res['duration_s']:g} s per cell on loopback; server start-up "
        f"{res['server_startup_s']:.1f} s.",
        "",
        *_single_lines(res.get("single_client")),
        "| server | rows/request | clients | requests/s | rows/s | p50 ms | p99 ms "
        "| errors 4xx/5xx/transport | in-process predict ms (floor) | + JSON parsing ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        f = r["floor"]
        errors = f"{r['errors_4xx']}/{r['errors_5xx']}/{r.get('errors_transport', 0)}"
        lines.append(
            f"| {r.get('server', 'serve')} | {r['rows_per_request']} | {r['concurrency']} | {r['rps']:.1f} "
            f"| {r['rows_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {errors} "
            f"| {f['predict_ms']:.2f} | {f['parse_and_predict_ms']:.2f} |"
        )
    return "\n".join(lines)


def _single_lines(single: dict[str, Any] | None) -> list[str]:
    if not single:
        return []
    s, e = single["serve"], single["echo"]
    verdict = "meets" if single["gap_p50_ms"] <= single["target_gap_ms"] else "misses"
    return [
        f"A single client, one row per request ({s['calls']} sequential requests): `automl serve` p50 "
        f"{s['p50_ms']:.1f} ms (p99 {s['p99_ms']:.1f}); a trivial Serve echo deployment with a FastAPI "
        f"ingress p50 {e['p50_ms']:.1f} ms (p99 {e['p99_ms']:.1f}): {single['gap_p50_ms']:+.1f} ms, "
        f"{verdict} the target of at most {single['target_gap_ms']:g} ms above the echo.",
        "",
    ]


def launch(
    model_dir: Path,
    table: str,
    out_json: Path,
    *,
    manifest: Path,
    bench_dir: Path,
    seed: int,
    duration_s: float,
) -> dict[str, Any]:
    args = [
        "--model",
        str(model_dir),
        "--table",
        table,
        "--manifest",
        str(manifest),
        "--shared-bench",
        str(bench_dir),
        "--seed",
        str(seed),
        "--duration",
        f"{duration_s:g}",
        "--out",
        str(out_json),
    ]
    cells = 2 * len(CONCURRENCY) * len(ROWS_PER_REQUEST)  # Serve and uvicorn
    return run_child(
        "bench.serving",
        args,
        out_json=out_json,
        log_path=out_json.with_suffix(".log"),
        timeout_s=cells * (duration_s + 10) + 4 * len(ROWS_PER_REQUEST) * (WARMUP_S + 10) + 420,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Load-test `automl serve` on loopback (see bench/README.md).")
    p.add_argument("--model", required=True, help="a saved Predictor directory")
    p.add_argument("--table", required=True, help="manifest table whose test rows are sent")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--shared-bench", default=str(SHARED_BENCH))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=DURATION_S, help="seconds per (rows, concurrency) cell")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        table = select_tables(read_manifest(a.manifest), [a.table])[0]
        splits, _ = shared_modules(a.shared_bench)
        _, test = splits.split(splits.load_csv(str(table.file)), table.target, table.problem, a.seed)
        res, rc = run_serving(Path(a.model), test.drop(columns=[table.target]), duration_s=a.duration), 0
        res["table"] = table.name
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res, rc = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()}, 1
        print(res["traceback"], file=sys.stderr)
    write_json(a.out, res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
