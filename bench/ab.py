"""Two checkouts of this project measured on the same saved models, in alternation, so that a
change to the predict path is measured apart from the machine's speed of the day:

    python -m bench.ab --before /path/to/old/checkout --models RUN/model,RUN/options/x_refit \\
        --tests RUN/../test.parquet,... --tables bike_sharing,... --out DIR [--rounds 2]

Each (model, checkout) pair is measured ``--rounds`` times by ``python -m bench.lean`` in a fresh
process of that checkout (one-row p50/p99 of 200 calls, rows/s on 100,000 rows); the rounds
alternate between the checkouts. This checkout is "after". Writes ab.json and AB.md to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_MANIFEST, REPO, SHARED_BENCH, write_json
from bench.compiled import CACHE_ENV

FIGURES = ("one_row_p50_ms", "one_row_p99_ms", "rows_per_s")


def measure(
    repo: Path, model: str, test: str, table: str, out: Path, a: argparse.Namespace
) -> dict[str, Any]:
    cmd = [str(repo / ".venv" / "bin" / "python"), "-m", "bench.lean", "--model", model, "--test", test]
    cmd += ["--table", table, "--out", str(out), "--manifest", a.manifest, "--shared-bench", a.shared_bench]
    # no compiled trees on either side: the predict path itself is measured (automl.models.compiled)
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        CACHE_ENV: str(out.parent / "no-compiled-trees"),
    }
    subprocess.run(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    return json.loads(out.read_text()) if out.is_file() else {"status": "error"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the other checkout (with its own .venv)")
    p.add_argument("--models", required=True, type=lambda s: s.split(","))
    p.add_argument("--tests", required=True, type=lambda s: s.split(","))
    p.add_argument("--tables", required=True, type=lambda s: s.split(","))
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--shared-bench", default=str(SHARED_BENCH))
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    repos = {"before": Path(a.before).resolve(), "after": REPO}
    rows = []
    for i, (model, test, table) in enumerate(zip(a.models, a.tests, a.tables, strict=True)):
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for r in range(a.rounds):
            for side, repo in repos.items():
                runs[side].append(measure(repo, model, test, table, out / f"{i}_{side}_{r}.json", a))
        row = {"table": table, "model": model, "runs": runs}
        for side in repos:
            ok = [x for x in runs[side] if x.get("status") == "ok"]
            row[side] = {f: statistics.median(x[f] for x in ok) if ok else None for f in FIGURES}
            row[side]["score"] = ok[0]["score"] if ok else None
        rows.append(row)
        write_json(out / "ab.json", rows)
        print(table, Path(model).name, row["before"], row["after"], flush=True)
    (out / "AB.md").write_text(markdown(rows, a.rounds) + "\n")
    return 0


def markdown(rows: list[dict[str, Any]], rounds: int) -> str:
    lines = [
        "| table | model | test score before / after | one-row p50 ms before / after | "
        "p99 ms before / after | rows/s before / after |",
        "|---|---|---|---|---|---|",
    ]

    def pair(row: dict[str, Any], key: str, spec: str) -> str:
        b, a = row["before"].get(key), row["after"].get(key)
        return " / ".join("-" if v is None else format(v, spec) for v in (b, a))

    for r in rows:
        lines.append(
            f"| {r['table']} | {Path(r['model']).name} | {pair(r, 'score', '.5g')} | "
            f"{pair(r, 'one_row_p50_ms', '.2f')} | {pair(r, 'one_row_p99_ms', '.2f')} | "
            f"{pair(r, 'rows_per_s', ',.0f')} |"
        )
    lines += [
        "",
        f"Medians of {rounds} measurements per side, alternating between the checkouts, each in a "
        "fresh process (`python -m bench.lean`: one-row p50/p99 of 200 calls, rows/s on 100,000 rows).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
