"""``make bench`` / ``python -m bench.run``: the benchmark's command line and orchestration.

Quality runs (one fresh process per split seed, table and budget, one after the other) -> RESULT
JSONs in ``OUT/quality/``; optionally the peers on the same seeds (``--peers``); then mean ± sd over
the seeds against the peers with a win/tie/loss per table, time over the budget, the search-
efficiency table and anytime curves; optionally the serving load test, the scaling measurements
and the big-data bench (``--big-data``). Everything is summarised in ``OUT/SUMMARY.md``;
``OUT/machine.json`` describes the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from automl.exceptions import AutoMLError, ConfigError
from bench import batch_memory, bigdata, peers, quality, scaling, serving, strategies, summary, table
from bench.args import _csv, parse_args, resolve_seeds
from bench.common import (
    REPO,
    SYSTEM,
    Table,
    budget_label,
    read_json,
    read_manifest,
    select_tables,
    write_json,
)
from bench.measure import machine

logger = logging.getLogger("bench")


def run_quality_runs(
    tables: list[Table], budgets: list[float], seeds: list[int], a: argparse.Namespace, out: Path, work: Path
) -> list[dict]:
    """Every (seed, table, budget), seed by seed (an interrupted run has whole seeds done first)."""
    results = []
    runs = [(s, t, b) for s in seeds for t in tables for b in budgets]
    for i, (seed, t, b) in enumerate(runs, 1):
        name = f"{t.name}_{budget_label(b)}_s{seed}"
        path = out / "quality" / f"{name}.json"
        old = read_json(path) if a.resume else None
        if old and old.get("status") == "ok":
            logger.info("[%d/%d] %s: kept (--resume)", i, len(runs), name)
            results.append(old)
            continue
        logger.info("[%d/%d] %s: fitting (log: %s)", i, len(runs), name, path.with_suffix(".log"))
        res = quality.launch(
            t,
            b,
            path,
            manifest=Path(a.manifest),
            seed=seed,
            work_dir=work / name,
            bench_dir=Path(a.shared_bench),
            keep_search=a.keep_search,
            lean_options=a.lean_seeds is None or seed in a.lean_seeds,
        )
        if res.get("status") == "ok":
            logger.info(
                "    %s=%.4g fit %.1fs, %s",
                res["metric"]["name"],
                res["metric"]["value"],
                res["fit"]["wall_s"],
                res["system_details"].get("chosen"),
            )
        else:
            logger.error("    %s: %s", res.get("status"), res.get("error"))
        results.append(res)
    return results


def serving_section(
    a: argparse.Namespace,
    tables: list[Table],
    budgets: list[float],
    seeds: list[int],
    results: list[dict],
    out: Path,
    work: Path,
) -> str:
    model, tname = model_to_serve(a, tables, budgets, seeds, results, out, work)
    if model is None:
        return f"## Serving\n\nno model to serve: {tname}"
    res = serving.launch(
        Path(model),
        tname,
        out / "serving" / "serving.json",
        manifest=Path(a.manifest),
        bench_dir=Path(a.shared_bench),
        seed=seeds[0],
        duration_s=a.serving_duration,
    )
    return f"## Serving (`automl serve`, loopback, table {tname})\n\n" + serving.serving_markdown(res)


def model_to_serve(
    a: argparse.Namespace,
    tables: list[Table],
    budgets: list[float],
    seeds: list[int],
    results: list[dict],
    out: Path,
    work: Path,
) -> tuple[str | None, str]:
    """(model directory, its table): --serving-model, else the first good quality run's model, else a
    fit at the smallest budget; (None, the error) when there is none."""
    if a.serving_model is not None:
        return a.serving_model, tables[0].name
    done = [r for r in results if r.get("status") == "ok"]
    if not done:  # no quality run here: fit a model for serving at the smallest budget
        done = run_quality_runs(tables[:1], [min(budgets)], seeds[:1], a, out / "serving", work / "serving")
    if done[0].get("status") != "ok":
        return None, str(done[0].get("error"))
    return done[0]["artifact"]["path"], done[0]["data"]["table"]


def batch_memory_section(
    a: argparse.Namespace,
    tables: list[Table],
    budgets: list[float],
    seeds: list[int],
    results: list[dict],
    out: Path,
    work: Path,
) -> str:
    model, tname = model_to_serve(a, tables, budgets, seeds, results, out, work)
    if model is None:
        return f"## Batch prediction memory\n\nno model: {tname}"
    res = batch_memory.run_batch_memory(
        Path(model),
        out / "batch_memory",
        work / "batch_memory",
        rows=tuple(_csv(a.batch_memory_rows, int)),
        table=tname,
        manifest=Path(a.manifest),
    )
    return "## Batch prediction memory (`automl predict`, Ray Data)\n\n" + batch_memory.batch_memory_markdown(
        res
    )


def describe(host: dict[str, Any]) -> str:
    """One line about the machine (``machine.json`` has the rest)."""
    git = host.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + (" (with uncommitted changes)" if git.get("dirty") else "")
    load = ", ".join(f"{v:.1f}" for v in host.get("loadavg") or ())
    return (
        f"Machine: {host.get('cpu_model', '?')}, {host.get('cpus_usable')} usable CPUs, "
        f"{host.get('memory_total_gb', 0):.0f} GB RAM, {host.get('gpus') or 0} GPUs; "
        f"Python {host.get('python')}; commit {commit}; load average at start {load} (`machine.json`)."
    )


def optional_sections(
    a: argparse.Namespace, seeds: list[int], big_rows: list[int], out: Path, work: Path
) -> tuple[list[str], dict[str, Any] | None]:
    """The opt-in measurements (--strategies, --scaling, --big-data): their SUMMARY sections and the
    big-data result (None when not asked for)."""
    sections: list[str] = []
    big = None
    if a.strategies:
        res = strategies.run_strategies(
            select_tables(read_manifest(a.manifest), _csv(a.strategy_tables)),
            _csv(a.strategies),
            out,
            work / "strategies",
            manifest=Path(a.manifest),
            seed=seeds[0],
            bench_dir=Path(a.shared_bench),
            budget=a.strategy_budget,
            resume=a.resume,
        )
        sections += [
            "",
            f"## Search strategies ({a.strategy_budget:g} s each, best validation score so far)",
            "",
            strategies.strategies_markdown(res),
        ]
    if a.scaling:
        res = scaling.run_scaling(
            out / "scaling",
            manifest=Path(a.manifest),
            families=_csv(a.scaling_families) or None,
            rows=tuple(_csv(a.scaling_rows, int)),
            cap_s=a.scaling_cap,
            cpu_rows=a.scaling_cpu_rows,
        )
        sections += ["", "## How cost grows (synthetic rows from adult)", "", scaling.scaling_markdown(res)]
    if a.big_data:
        big = bigdata.run_big_data(
            big_rows,
            out / "bigdata",
            work / "bigdata",
            budget=a.big_budget,
            seed=seeds[0],
            test_rows=a.big_test_rows,
            shard_rows=a.big_shard_rows,
            resume=a.resume,
        )
        sections += ["", bigdata.bigdata_markdown(big)]
    return sections, big


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        a = parse_args(argv, __doc__)
        tables = select_tables(read_manifest(a.manifest), _csv(a.tables))
        budgets = _csv(a.budgets, float)
        if not budgets or min(budgets) <= 0:
            raise ConfigError(f"--budgets must list positive seconds; got {a.budgets!r}")
        seeds = resolve_seeds(a)
        if a.peers:
            peers.check_python(Path(a.peer_python), Path(a.shared_bench))
        big_rows = bigdata.check_rows(_csv(a.big_rows, int), a.big_shard_rows) if a.big_data else []
    except AutoMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out or REPO / "bench" / "results" / dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"))
    work = Path(a.work or tempfile.mkdtemp(prefix="automl-bench-work-"))
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    write_json(out / "machine.json", host)
    logger.info("results -> %s, run directories and models -> %s", out, work)
    t0 = time.perf_counter()
    command = " ".join(argv if argv is not None else sys.argv[1:])
    sections, results, big = (
        [
            f"# Benchmark of {SYSTEM}",
            "",
            summary.describe(host),
            "",
            f"Command: `python -m bench.run {command}`",
        ],
        [],
        None,
    )
    if not a.skip_quality:
        results = run_quality_runs(tables, budgets, seeds, a, out, work)
        if a.peers:
            peers.run_peers(
                tables,
                budgets,
                seeds,
                out=out,
                bench_dir=Path(a.shared_bench),
                python=Path(a.peer_python),
                resume=a.resume,
            )
        bench_dir = Path(a.shared_bench)
        peer_entries = table.load_peers(
            summary.peer_dirs(out, bench_dir, a.peer_results), bench_dir / "PEERS.md"
        )
        sections += ["", summary.quality_section(results, peer_entries, out)]
    if a.serving:
        sections += ["", serving_section(a, tables, budgets, seeds, results, out, work)]
    if a.batch_memory:
        sections += ["", batch_memory_section(a, tables, budgets, seeds, results, out, work)]
    extra, big = optional_sections(a, seeds, big_rows, out, work)
    sections += extra
    sections += ["", f"Total benchmark wall time: {time.perf_counter() - t0:.0f} s."]
    (out / "SUMMARY.md").write_text("\n".join(sections) + "\n")
    print("\n".join(sections))
    logger.info("summary: %s", out / "SUMMARY.md")
    failed = [r for r in results if r.get("status") != "ok"]
    failed += [r for r in (big or {}).get("runs", []) if r.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
