"""What ``automl compile`` buys on a quality run's deployed models: after ``python -m bench.run``
(with ``--lean-seeds``), for each table's default choice and fastest option within 0.1 %, the
option is compiled (gcc, into a cache of this run's own) and measured twice in fresh processes
with ``python -m bench.lean``: without compiled libraries and with them. Writes COMPILED.md and
compiled.json beside the run's results.

    python -m bench.compiled --results OUT/quality --out OUT [--tables bike_sharing,...] [--opt-level O3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_MANIFEST, SHARED_BENCH, run_child, write_json

ROLES = ("default", "fastest_within")
CACHE_ENV = "AUTOML_COMPILE_CACHE"  # automl.models.compiled.CACHE_ENV (the bench imports no automl)


def option_dir(res: dict[str, Any], name: str) -> Path:
    """Where a quality run saved the option ``name``: the default in ``model/`` beside the run
    directory, the others in the run directory's ``options/``."""
    run_dir = Path(res["system_details"]["run_dir"])
    if name == res["deployment"]["picked"]["default"]:
        return run_dir.parent / "model"
    return run_dir / "options" / name


def measure(
    model: Path, test: Path, table: str, cache: Path, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    os.environ[CACHE_ENV] = str(cache)
    lean_args = ["--model", str(model), "--test", str(test), "--table", table, "--out", str(out)]
    lean_args += ["--manifest", args.manifest, "--shared-bench", args.shared_bench]
    return run_child("bench.lean", lean_args, out_json=out, log_path=out.with_suffix(".log"), timeout_s=900)


def compile_option(model: Path, cache: Path, opt_level: str, log: Path) -> dict[str, Any]:
    """``automl compile`` as a user runs it; its wall time and the per-file results it logged."""
    import subprocess

    env = {**os.environ, CACHE_ENV: str(cache)}
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(
            [sys.executable, "-m", "automl.cli", "compile", str(model), "--opt-level", opt_level],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=6 * 3600,
        ).returncode
    return {"rc": rc, "wall_s": time.perf_counter() - t, "log": str(log)}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    out = Path(args.out)
    for path in sorted(Path(args.results).glob("*_s0.json")):
        res = json.loads(path.read_text())
        table = res["data"]["table"]
        if args.tables and table not in args.tables:
            continue
        lean = res.get("deployment") or {}
        if res.get("status") != "ok" or "picked" not in lean:
            continue
        test = Path(res["system_details"]["run_dir"]).parent / "test.parquet"
        seen: set[str] = set()
        for role in args.roles:
            name = lean["picked"].get(role) or ""
            if not name or name in seen or not (option_dir(res, name) / "predictor.json").is_file():
                continue
            seen.add(name)
            model = option_dir(res, name)
            work = out / "compiled" / f"{path.stem}_{name}"
            work.mkdir(parents=True, exist_ok=True)
            cache = work / "cache"
            before = measure(model, test, table, work / "empty-cache", work / "before.json", args)
            comp = compile_option(model, cache, args.opt_level, work / "compile.log")
            after = measure(model, test, table, cache, work / "after.json", args)
            builds = [json.loads(p.read_text()) for p in cache.glob("*/build.json")]
            row = {
                "table": table,
                "budget_s": res.get("time_limit_s"),
                "role": role,
                "model": name,
                "opt_level": args.opt_level,
                "compile": comp,
                "libraries": len(builds),
                "trees": sum(b["trees"] for b in builds),
                "gcc_s": sum(b["compile_s"] for b in builds),
                "before": before,
                "after": after,
            }
            rows.append(row)
            write_json(out / "compiled.json", rows)
            rates = f"{before.get('rows_per_s', 0):,.0f} -> {after.get('rows_per_s', 0):,.0f} rows/s"
            print(
                f"{table} {role} {name}: {rates}, compile {comp['wall_s']:.0f}s",
                flush=True,
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    def fig(m: dict[str, Any], key: str, spec: str) -> str:
        v = m.get(key)
        return "-" if v is None else format(v, spec)

    lines = [
        "| table | budget | option | model | trees | compile s | test score before / after | "
        "one-row p50 ms before / after | rows/s before | rows/s after | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        up = (a.get("rows_per_s") or 0) / (b.get("rows_per_s") or float("nan"))
        lines.append(
            f"| {r['table']} | {r['budget_s']:g}s | {r['role']} | {r['model']} | {r['trees']:,} | "
            f"{r['gcc_s']:.0f} | {fig(b, 'score', '.5g')} / {fig(a, 'score', '.5g')} | "
            f"{fig(b, 'one_row_p50_ms', '.2f')} / {fig(a, 'one_row_p50_ms', '.2f')} | "
            f"{fig(b, 'rows_per_s', ',.0f')} | {fig(a, 'rows_per_s', ',.0f')} | {up:.1f}x |"
        )
    lines += [
        "",
        "Each option measured twice in fresh processes (`python -m bench.lean`: rows/s on one batch of "
        "100,000 rows, one-row p50 of 200 calls): without compiled libraries, then after `automl "
        f"compile --opt-level {rows[0]['opt_level'] if rows else 'O3'}` (compile s: the compiler's time "
        "over every library, as each library's build.json records it; trees: every LightGBM and "
        "XGBoost tree compiled). Compiled code serves calls of "
        "1,000 rows or more, so one-row latency is not expected to change.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, help="a quality run's results (the *_s0.json files)")
    p.add_argument("--out", required=True)
    p.add_argument("--tables", type=lambda s: set(s.split(",")), default=set())
    p.add_argument("--roles", type=lambda s: s.split(","), default=list(ROLES), help="default,fastest_within")
    p.add_argument("--opt-level", default="O3", choices=["O1", "O2", "O3"])
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--shared-bench", default=str(SHARED_BENCH))
    args = p.parse_args(argv)
    rows = run(args)
    (Path(args.out) / "COMPILED.md").write_text(markdown(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
