"""The big-data bench (``--big-data``, issue 15): for each size, a seeded synthetic table (bench.synth,
cached under ``WORK/bigdata``), the plain LightGBM baseline (bench.big_baseline) where its memory
fits, and our fit in streaming mode (bench.big_fit), each in a fresh process, one after the other.

Results: ``OUT/bigdata/baseline_<rows>.json`` and ``OUT/bigdata/ours_<rows>_<budget>s.json``, with
each run's log next to it; :func:`bigdata_markdown` is the table of ``SUMMARY.md``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError
from bench.common import budget_label, read_json, run_child, write_json
from bench.synth import SynthStore

logger = logging.getLogger("bench")

ROWS = (1_000_000, 3_000_000, 10_000_000)
BUDGET_S = 1800.0
TEST_ROWS = 200_000
SHARD_ROWS = 250_000
#: the baseline's peak memory per training row, from issue 15's measurement (3.6 GB at 5M rows of
#: this table), and the share of the machine's available memory it may take
BASELINE_BYTES_PER_ROW = 720
BASELINE_MEMORY_SHARE = 0.7
#: without a streaming mode our fit reads the whole table into the driver (issue 15 measured 20.9 GB
#: of driver RSS at 5M rows): above this many rows such a fit is skipped rather than risk the machine
MEMORY_FIT_MAX_ROWS = 1_000_000


def check_rows(rows: list[int], shard_rows: int) -> list[int]:
    if not rows or min(rows) <= 0:
        raise ConfigError(f"--big-rows must list positive row counts; got {rows}")
    if shard_rows <= 0:
        raise ConfigError(f"--big-shard-rows must be positive; got {shard_rows}")
    return sorted(set(rows))


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping or evicting much)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def baseline_fits(rows: int, available: int) -> tuple[bool, str]:
    """Whether the plain LightGBM of ``rows`` rows fits in memory, and why (a skip's reason)."""
    need = rows * BASELINE_BYTES_PER_ROW + 2**30
    ok = need <= BASELINE_MEMORY_SHARE * available
    why = (
        f"estimated peak {need / 2**30:.1f} GB ({BASELINE_BYTES_PER_ROW} B/row + 1 GB) "
        f"{'<=' if ok else '>'} {BASELINE_MEMORY_SHARE:.0%} of {available / 2**30:.1f} GB available"
    )
    return ok, why


def _kept(path: Path, resume: bool, statuses: tuple[str, ...] = ("ok",)) -> dict[str, Any] | None:
    old = read_json(path) if resume else None
    return old if old and old.get("status") in statuses else None


def _baseline(rows: int, table: dict, test: dict, out: Path, seed: int, resume: bool) -> dict[str, Any]:
    path = out / f"baseline_{rows}.json"
    old = _kept(path, resume, ("ok", "skipped"))
    if old:  # a kept result from an older run may lack the keys the table reads
        return {**old, "kind": "baseline", "rows": rows}
    ok, why = baseline_fits(rows, available_bytes())
    if not ok:
        logger.info("big data %d rows: baseline skipped (%s)", rows, why)
        res = {"status": "skipped", "kind": "baseline", "rows": rows, "reason": why}
        write_json(path, res)
        return res
    logger.info("big data %d rows: plain LightGBM baseline (%s)", rows, why)
    args = ["--train", table["path"], "--test", test["path"], "--seed", str(seed), "--out", str(path)]
    res = run_child(
        "bench.big_baseline",
        args,
        out_json=path,
        log_path=path.with_suffix(".log"),
        timeout_s=max(1800.0, rows * 4e-4),
    )
    res.update(kind="baseline", rows=rows)
    return res


def fit_skip_reason(rows: int, *, streaming: bool) -> str | None:
    """Why our fit of ``rows`` rows is not run (None: it is)."""
    if streaming or rows <= MEMORY_FIT_MAX_ROWS:
        return None
    return (
        f"AutoML has no data_mode argument yet, and an in-memory fit of {rows:,} rows could exhaust "
        f"the machine's memory (only up to {MEMORY_FIT_MAX_ROWS:,} rows without streaming)"
    )


def _ours(
    rows: int, table: dict, test: dict, out: Path, work: Path, budget: float, seed: int, resume: bool
) -> dict[str, Any]:
    path = out / f"ours_{rows}_{budget_label(budget)}.json"
    old = _kept(path, resume)
    if old:
        return {**old, "kind": "ours", "rows": rows}
    from automl import AutoML
    from bench.big_fit import data_mode_kwargs

    why = fit_skip_reason(rows, streaming=bool(data_mode_kwargs(AutoML)))
    if why:
        logger.info("big data %d rows: our fit skipped (%s)", rows, why)
        res = {"status": "skipped", "kind": "ours", "rows": rows, "budget_s": budget, "error": why}
        write_json(path, res)
        return res
    logger.info(
        "big data %d rows: our fit, %s (log: %s)", rows, budget_label(budget), path.with_suffix(".log")
    )
    args = ["--data", table["path"], "--test", test["path"], "--budget", f"{budget:g}", "--seed", str(seed)]
    args += ["--work", str(work / f"fit_{rows}"), "--out", str(path)]
    res = run_child(
        "bench.big_fit", args, out_json=path, log_path=path.with_suffix(".log"), timeout_s=2 * budget + 900
    )
    res.update(kind="ours", rows=rows)
    res.setdefault("budget_s", budget)
    return res


def run_big_data(
    rows: list[int],
    out: Path,
    work: Path,
    *,
    budget: float = BUDGET_S,
    seed: int = 0,
    test_rows: int = TEST_ROWS,
    shard_rows: int = SHARD_ROWS,
    resume: bool = False,
) -> dict[str, Any]:
    """Generate, baseline and fit every size; returns ``{"tables", "test", "runs", ...}``."""
    store = SynthStore(work / f"synth_s{seed}_{shard_rows}", seed=seed, shard_rows=shard_rows)
    t0 = time.perf_counter()
    test = store.test(test_rows)
    tables, runs = {}, []
    for n in rows:
        t1 = time.perf_counter()
        tables[n] = {**store.table(n), "prepare_s": time.perf_counter() - t1}
        logger.info(
            "big data %d rows: %d shards, %.0f MB Parquet, %.0f MB in memory (Arrow), ready in %.0f s",
            n,
            tables[n]["shards"],
            tables[n]["parquet_bytes"] / 2**20,
            tables[n]["arrow_bytes"] / 2**20,
            tables[n]["prepare_s"],
        )
        runs.append(_baseline(n, tables[n], test, out, seed, resume))
        runs.append(_ours(n, tables[n], test, out, work, budget, seed, resume))
    res = {
        "budget_s": budget,
        "seed": seed,
        "shard_rows": shard_rows,
        "test": test,
        "tables": tables,
        "runs": runs,
        "total_s": time.perf_counter() - t0,
    }
    write_json(out / "bigdata.json", res)
    return res


def _mb(nbytes: Any) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:,.0f}"


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def bigdata_markdown(res: dict[str, Any]) -> str:
    """One row per size: the table, our fit and the plain LightGBM next to it."""
    by = {(r.get("kind"), r.get("rows")): r for r in res.get("runs", [])}
    lines = [
        "| rows | Parquet MB | in-memory MB | budget s | data mode | status | wall s | driver peak MB "
        "| all processes peak MB (x in-memory) | spilled MB | test ROC AUC | LightGBM AUC | LightGBM train s "
        "| LightGBM peak MB | AUC vs LightGBM |",
        "|" + "---|" * 15,
    ]
    for n, t in sorted(res.get("tables", {}).items(), key=lambda kv: int(kv[0])):
        n = int(n)
        ours, base = by.get(("ours", n), {}), by.get(("baseline", n), {})
        auc = (ours.get("test") or {}).get("roc_auc")
        b_auc = base.get("test_roc_auc")
        mem, store = ours.get("memory") or {}, ours.get("object_store") or {}
        status = "ok" if ours.get("status") == "ok" else f"{ours.get('status', '-')}: {ours.get('error')}"
        b_note = base.get("status", "-") if base.get("status") != "ok" else None
        mode = ours.get("data_mode") or ours.get("data_mode_requested", "-")
        mode = mode.get("mode", "-") if isinstance(mode, dict) else mode  # run.json's data_mode decision
        lines.append(
            f"| {n:,} | {_mb(t.get('parquet_bytes'))} | {_mb(t.get('arrow_bytes'))} "
            f"| {_f(ours.get('budget_s', res.get('budget_s')), 'g')} | {mode} "
            f"| {status} | {_f((ours.get('fit') or {}).get('wall_s'), '.0f')} "
            f"| {_f(mem.get('driver_peak_rss_mb'), ',.0f')} | {_peak(mem, t)} "
            f"| {_mb(store.get('spilled_bytes'))} | {_f(auc, '.4f')} "
            f"| {b_note or _f(b_auc, '.4f')} | {_f(base.get('train_s'), '.0f')} "
            f"| {_f(base.get('peak_rss_mb'), ',.0f')} "
            f"| {_f(auc - b_auc if auc is not None and b_auc is not None else None, '+.4f')} |"
        )
    test = res.get("test") or {}
    lines += [
        "",
        f"Synthetic binary table (bench/synth.py, seed {res.get('seed')}): 40 float32 and 10 string "
        f"columns of 20 levels, some missing, in Parquet shards of {res.get('shard_rows', 0):,} rows; "
        f"test: {test.get('rows', 0):,} fresh rows, positive share {_f(test.get('positive_share'), '.3f')}, "
        f"AUC of the true probability {_f(test.get('oracle_auc'), '.4f')} (no model can beat it). "
        "In-memory MB: the Arrow tables' size. Wall s: `fit()` with Ray start-up. Driver peak: "
        "ru_maxrss of the fitting process; all processes: summed PSS of the driver and every Ray "
        "process of its session during the fit; spilled: the object store's cumulative spilled "
        "bytes. LightGBM: one process, 2 threads, 300 rounds, 63 leaves, string columns as pandas "
        "categoricals, on the same rows (skipped where its estimated memory does not fit).",
    ]
    skipped = [r for r in res.get("runs", []) if r.get("status") == "skipped" and r.get("kind") == "baseline"]
    lines += [f"\nSkipped: LightGBM at {r['rows']:,} rows: {r['reason']}." for r in skipped]
    lines += [_breakdown(r) for r in res.get("runs", []) if (r.get("memory") or {}).get("peak_breakdown_mb")]
    return "## Big data (synthetic Parquet tables)\n\n" + "\n".join(lines)


def _peak(mem: dict[str, Any], table: dict[str, Any]) -> str:
    """All processes' peak PSS, and how many times the table's in-memory size it is."""
    peak, size = mem.get("peak_tree_pss_mb"), table.get("arrow_bytes")
    ratio = f" ({peak * 2**20 / size:.1f}x)" if peak is not None and size else ""
    return f"{_f(peak, ',.0f')}{ratio}"


#: processes named in a peak's breakdown; the rest are summed
BREAKDOWN_TOP = 8


def _breakdown(run: dict[str, Any]) -> str:
    """What the all-processes peak of one fit was made of: the largest processes (PSS MB, and the
    object store's pages among it), by their command line without the pid."""
    mem = run["memory"]
    rows = [(label.split(" ", 1)[-1], mb, shm) for label, mb, shm in mem["peak_breakdown_mb"]]
    top, rest = rows[:BREAKDOWN_TOP], rows[BREAKDOWN_TOP:]
    cells = [
        f"{name} {mb:,.0f} ({shm:,.0f} object store)" if shm >= 1 else f"{name} {mb:,.0f}"
        for name, mb, shm in top
    ]
    cells.append(f"{len(rest)} others {sum(mb for _, mb, _ in rest):,.0f}")
    return (
        f"\nAll processes' peak at {run.get('rows', 0):,} rows: {mem.get('peak_tree_pss_mb', 0):,.0f} MB at "
        f"{_f(mem.get('peak_at_s'), '.0f')} s of the fit, PSS MB by process: " + "; ".join(cells) + "."
    )
