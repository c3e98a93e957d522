"""Search strategies compared: the same table, budget and seed under ``bayesian``, ``random`` and
``asha``; the best validation score reached after 30, 60 and 120 s (from each run's anytime curve,
seconds since fit() started) and the chosen model's test score.

Each run is an ordinary quality run (``bench.quality``) with ``--search`` set; results go to
``OUT/strategies/<table>_<strategy>.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench import quality
from bench.common import Table, read_json

STRATEGIES = ("bayesian", "random", "asha")
BUDGET_S = 120.0
CHECKPOINTS_S = (30.0, 60.0, 120.0)

logger = logging.getLogger("bench")


def best_at(curve: list[dict[str, Any]], t_s: float) -> float | None:
    """Best validation score among the trials completed by ``t_s`` seconds (None: none yet)."""
    done = [p["best"] for p in curve if p["t_s"] <= t_s]
    return done[-1] if done else None


def run_strategies(
    tables: list[Table],
    strategies: list[str],
    out: Path,
    work: Path,
    *,
    manifest: Path,
    seed: int,
    bench_dir: Path,
    budget: float = BUDGET_S,
    resume: bool = False,
) -> list[dict]:
    results = []
    runs = [(t, s) for t in tables for s in strategies]
    for i, (t, s) in enumerate(runs, 1):
        path = out / "strategies" / f"{t.name}_{s}.json"
        old = read_json(path) if resume else None
        if old and old.get("status") == "ok":
            logger.info("[strategies %d/%d] %s %s: kept (--resume)", i, len(runs), t.name, s)
            results.append(old)
            continue
        logger.info("[strategies %d/%d] %s %s %gs: fitting", i, len(runs), t.name, s, budget)
        res = quality.launch(
            t,
            budget,
            path,
            manifest=manifest,
            seed=seed,
            work_dir=work / f"{t.name}_{s}",
            bench_dir=bench_dir,
            search=s,
        )
        res["search"] = s
        results.append(res)
    return results


def strategies_markdown(results: list[dict[str, Any]], checkpoints: tuple[float, ...] = CHECKPOINTS_S) -> str:
    heads = " | ".join(f"best val @{c:g}s" for c in checkpoints)
    lines = [
        f"| table | metric | strategy | {heads} | trials completed | chosen | test score | fit s |",
        "|---|---|---|" + "---|" * len(checkpoints) + "---|---|---|---|",
    ]
    for r in results:
        args = r.get("args") or {}
        strategy = r.get("search") or args.get("search") or "?"
        table = (r.get("data") or {}).get("table", "?")
        if r.get("status") != "ok":
            lines.append(
                f"| {table} | - | {strategy} | "
                + " | ".join("-" for _ in checkpoints)
                + f" | - | {r.get('status')}: {r.get('error')} | - | - |"
            )
            continue
        sd = r["system_details"]
        curve = sd.get("anytime_curve") or []
        cells = " | ".join(_fmt(best_at(curve, c)) for c in checkpoints)
        lines.append(
            f"| {table} | {r['metric']['name']} | {strategy} | {cells} | "
            f"{(sd.get('curve_summary') or {}).get('completed_trials', '-')} | {sd.get('chosen')} | "
            f"{_fmt(r['metric']['value'])} | {r['fit']['wall_s']:.1f} |"
        )
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"
