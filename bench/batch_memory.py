"""Batch prediction memory: peak RSS of the driver and of the Ray workers as the input grows.

For each row count (default 1M and 5M) a CSV of synthetic rows drawn from a manifest table
(``bench.scaling.synthetic_rows``: resampled rows, numeric noise; one row in a thousand gets an
unreadable number, so the errors file is exercised too) is scored by ``serving.batch.predict_file``
with Ray Data, in a fresh process (``python -m bench.batch_memory --child``). A thread samples that
process tree every 0.2 s: the driver's RSS, the largest RSS of any other process in the tree (Ray
workers, raylet, GCS) and the summed PSS of the tree. Bounded memory means these stay flat as rows
grow (the input is read in chunks, ``OBJECT_STORE_BUDGET`` caps what Ray Data holds at once).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import DEFAULT_MANIFEST, read_manifest, run_child, select_tables, write_json
from bench.measure import _memory_kb, tree_pids
from bench.scaling import synthetic_rows

ROWS = (1_000_000, 5_000_000)
CHUNK = 200_000
BAD_SHARE = 0.001
logger = logging.getLogger(__name__)


def write_input(df: pd.DataFrame, target: str, n: int, path: Path, seed: int = 0) -> int:
    """``n`` synthetic rows of ``df`` (without the target) written to ``path`` chunk by chunk; a
    ``BAD_SHARE`` of them hold ``"n/a kg"`` in the first numeric column. Returns the bad rows."""
    numeric = [c for c in df.columns if c != target and pd.api.types.is_numeric_dtype(df[c])]
    rng = np.random.default_rng(seed)
    bad_rows, done = 0, 0
    with open(path, "w", newline="") as fh:
        while done < n:
            k = min(CHUNK, n - done)
            chunk = synthetic_rows(df, k, target=target, seed=seed + done).drop(columns=[target])
            if numeric:
                bad = rng.random(k) < BAD_SHARE
                chunk[numeric[0]] = chunk[numeric[0]].astype(object).mask(bad, "n/a kg")
                bad_rows += int(bad.sum())
            chunk.to_csv(fh, index=False, header=done == 0)
            done += k
    return bad_rows


class PeakSampler:
    """Peak RSS of this process, peak RSS of the largest other process of its tree, and peak summed
    PSS of the tree, sampled every ``interval_s`` in a thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.driver_kb = self.worker_kb = self.tree_pss_kb = self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        me = os.getpid()
        pids = tree_pids(me)
        mem = {p: _memory_kb(p) for p in pids}
        self.driver_kb = max(self.driver_kb, mem[me][1])
        self.worker_kb = max([self.worker_kb] + [m[1] for p, m in mem.items() if p != me])
        self.tree_pss_kb = max(self.tree_pss_kb, sum(m[0] for m in mem.values()))
        self.processes = max(self.processes, len(pids))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def child(model: str, data: str, out_dir: str) -> dict[str, Any]:
    """Score ``data`` with Ray Data in this process while sampling its tree's memory."""
    import ray

    from serving.batch import predict_file

    ray.data.DataContext.get_current().enable_progress_bars = (
        False  # Ray starts as `automl predict` starts it
    )
    t0 = time.perf_counter()
    with PeakSampler() as mem:
        res = predict_file(model, data, str(Path(out_dir) / "scored.parquet"), max_error_rate=0.01)
    wall = time.perf_counter() - t0
    return {
        "status": "ok",
        "rows_read": res.rows_read,
        "rows_written": res.rows_written,
        "rows_failed": res.rows_failed,
        "wall_s": wall,
        "rows_per_s": res.rows_read / wall,
        "driver_peak_rss_mb": mem.driver_kb / 1024,
        "largest_worker_peak_rss_mb": mem.worker_kb / 1024,
        "tree_peak_pss_mb": mem.tree_pss_kb / 1024,
        "peak_processes": mem.processes,
    }


def run_batch_memory(
    model: Path,
    out: Path,
    work: Path,
    *,
    rows: tuple[int, ...] = ROWS,
    table: str = "adult",
    manifest: Path = DEFAULT_MANIFEST,
) -> dict[str, Any]:
    t = select_tables(read_manifest(manifest), [table])[0]
    df = pd.read_csv(t.file)
    runs = []
    work.mkdir(parents=True, exist_ok=True)
    for n in rows:
        data = work / f"batch_{n}.csv"
        bad = write_input(df, t.target, n, data)
        logger.info(
            "batch memory: %d rows (%d bad) -> %s (%.0f MB)", n, bad, data, data.stat().st_size / 2**20
        )
        out_json = out / f"batch_memory_{n}.json"
        args = [
            "--child",
            "--model",
            str(model),
            "--data",
            str(data),
            "--work",
            str(work),
            "--out",
            str(out_json),
        ]
        res = run_child(
            "bench.batch_memory",
            args,
            out_json=out_json,
            log_path=out_json.with_suffix(".log"),
            timeout_s=600 + n / 1000,
        )
        res.update(rows=n, bad_rows_written=bad, input_mb=data.stat().st_size / 2**20)
        runs.append(res)
        data.unlink(missing_ok=True)
        logger.info(
            "batch memory %d rows: %s",
            n,
            json.dumps(
                {
                    k: res.get(k)
                    for k in (
                        "status",
                        "wall_s",
                        "driver_peak_rss_mb",
                        "largest_worker_peak_rss_mb",
                        "tree_peak_pss_mb",
                    )
                }
            ),
        )
    result = {"model": str(model), "table": table, "runs": runs}
    write_json(out / "batch_memory.json", result)
    return result


def batch_memory_markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Model `{res['model']}`; synthetic rows from {res['table']} (CSV, 0.1% with an unreadable number), "
        "scored with Ray Data (`automl predict`); memory sampled every 0.2 s.",
        "",
        "| input rows | input MB | status | wall s | rows/s | failed rows | driver peak RSS MB "
        "| largest worker peak RSS MB | tree peak PSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['rows']:,} | {r.get('input_mb', 0):.0f} | {r.get('status')}: {r.get('error')} |||||||"
            )
            continue
        lines.append(
            f"| {r['rows']:,} | {r['input_mb']:.0f} | ok | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} "
            f"| {r['rows_failed']:,} | {r['driver_peak_rss_mb']:.0f} | {r['largest_worker_peak_rss_mb']:.0f} "
            f"| {r['tree_peak_pss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Peak memory of batch prediction as rows grow (bench/README.md).")
    p.add_argument("--model", required=True)
    p.add_argument("--rows", default=",".join(map(str, ROWS)))
    p.add_argument("--table", default="adult")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--work", required=True, help="folder for the generated inputs and outputs")
    p.add_argument("--out", required=True, help="results folder (or the result JSON with --child)")
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not a.child:
        rows = tuple(int(x) for x in a.rows.split(","))
        res = run_batch_memory(
            Path(a.model), Path(a.out), Path(a.work), rows=rows, table=a.table, manifest=Path(a.manifest)
        )
        print(batch_memory_markdown(res))
        return 0 if all(r.get("status") == "ok" for r in res["runs"]) else 1
    try:
        res, rc = child(a.model, a.data, a.work), 0
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res, rc = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()}, 1
        print(res["traceback"], file=sys.stderr)
    write_json(a.out, res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
