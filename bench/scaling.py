"""How cost grows: fit time and peak memory per model family against rows and against CPUs.

* rows: each registered family's default config (its first portfolio config) trained through
  ``automl.training.train_candidate`` on one 80/20 holdout fold, 1 thread, no Ray, on 10k, 100k
  and 1M synthetic rows drawn from adult's distribution (rows resampled, small noise on numeric
  columns); capped by a deadline.
* CPUs: a whole fit (``SearchConfig(families=(name,), max_trials=K)``, no ensemble) with 1 and
  then 2 trials in parallel; the speed-up shows what the second core buys.

Every measurement runs in its own process (``python -m bench.scaling``) so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.exceptions import ConfigError
from bench.common import DEFAULT_MANIFEST, read_manifest, run_child, select_tables, write_json
from bench.measure import TreeMemorySampler

ROWS = (10_000, 100_000, 1_000_000)
CAP_S = 300.0
CPU_ROWS = 50_000
CPU_TRIALS = 4
NOISE = 0.05  # numeric noise: this share of the column's standard deviation


def synthetic_rows(
    df: pd.DataFrame, n: int, *, target: str, seed: int = 0, noise: float = NOISE
) -> pd.DataFrame:
    """``n`` rows resampled from ``df`` with Gaussian noise on numeric feature columns (integer
    columns stay integers; missing values stay missing)."""
    rng = np.random.default_rng(seed)
    out = df.iloc[rng.integers(0, len(df), n)].reset_index(drop=True)
    for col in out.columns:
        s = out[col]
        if col == target or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        jitter = rng.normal(0.0, noise * float(df[col].std() or 0.0), n)
        v = s.to_numpy(dtype=float) + jitter
        out[col] = np.round(v).astype(s.dtype) if pd.api.types.is_integer_dtype(s) else v
    return out


def _adult(manifest: Path) -> tuple[pd.DataFrame, str]:
    table = select_tables(read_manifest(manifest), ["adult"])[0]
    return pd.read_csv(table.file), table.target


def measure_rows(family_name: str, n: int, *, manifest: Path, cap_s: float, seed: int = 0) -> dict[str, Any]:
    """Default config of one family on ``n`` synthetic adult rows (holdout fold, 1 thread)."""
    import resource

    from automl.config import FitSpec, SearchConfig, ValidationConfig
    from automl.models import get_family
    from automl.prepare import prepare
    from automl.training import train_candidate

    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
    src, target = _adult(manifest)
    t0 = time.perf_counter()
    df = synthetic_rows(src, n, target=target, seed=seed)
    family = get_family(family_name)
    spec = FitSpec(
        target,
        problem_type="binary",
        metric="roc_auc",
        search=SearchConfig(families=(family_name,)),
        validation=ValidationConfig(strategy="holdout", holdout_fraction=0.2),
        seed=seed,
    )
    try:
        prep = prepare(spec, df)
    except ConfigError as exc:  # the family does not apply (k-NN above its row limit)
        return {"status": "skipped", "reason": f"{family_name} on a binary task of {n:,} rows: {exc}"}
    data, X = prep.data, prep.data.features[family.recipe]
    task = data.task
    prep_s, rss_prep = time.perf_counter() - t0, peak()
    config = family.portfolio(task)[0]
    t0 = time.perf_counter()
    res = train_candidate(family, config, data, deadline=time.time() + cap_s)
    wall = time.perf_counter() - t0
    sample = X.take(np.arange(min(10_000, n)))
    t0 = time.perf_counter()
    for m in res.models:
        m.predict(sample)
    pred_s = time.perf_counter() - t0
    return {
        "status": "ok",
        "kind": "rows",
        "family": family_name,
        "rows": n,
        "config": config,
        "prepare_s": prep_s,
        "fit_wall_s": wall,
        "library_fit_s": res.fit_time_s,
        "iterations": res.best_iteration,
        "steps": len(res.history),
        "stop_reason": res.stop_reason,
        "score_val": res.score,
        "predict_rows_per_s": len(sample) / pred_s if pred_s else None,
        "peak_rss_before_fit_mb": rss_prep,
        "peak_rss_mb": peak(),
        "cap_s": cap_s,
    }


def measure_cpus(
    family_name: str, n: int, concurrency: int, *, manifest: Path, trials: int, cap_s: float, seed: int = 0
) -> dict[str, Any]:
    """A whole fit of ``trials`` trials of one family with ``concurrency`` trials at a time."""
    from automl import AutoML, EnsembleConfig, SearchConfig

    src, target = _adult(manifest)
    df = synthetic_rows(src, n, target=target, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as d, TreeMemorySampler() as tree:
        t0 = time.perf_counter()
        run = AutoML(
            target=target,
            problem_type="binary",
            metric="roc_auc",
            time_limit=cap_s,
            seed=seed,
            search=SearchConfig(
                families=(family_name,), max_trials=trials, max_concurrent_trials=concurrency
            ),
            ensemble=EnsembleConfig(enabled=False),
            output_dir=d,
        ).fit(df)
        wall = time.perf_counter() - t0
        info = run.run_info_
    return {
        "status": "ok",
        "kind": "cpus",
        "family": family_name,
        "rows": n,
        "concurrency": concurrency,
        "trials": trials,
        "fit_wall_s": wall,
        "search_s": info["timings"]["search_s"],
        "trials_by_status": info["trials_by_status"],
        "ended_because": info["ended_because"],
        "trial_overhead_s": info["trial_overhead_s"],
        "cpu_s": tree.cpu_s,
        **tree.result(),
        "cap_s": cap_s,
    }


def run_scaling(
    out_dir: Path,
    *,
    manifest: Path,
    families: list[str] | None = None,
    rows: tuple[int, ...] = ROWS,
    cap_s: float = CAP_S,
    cpu_rows: int = CPU_ROWS,
    cpu_trials: int = CPU_TRIALS,
) -> dict[str, Any]:
    """Every measurement, one process each, one after the other; writes scaling.json."""
    from automl.models import all_families

    names = families or list(all_families())
    runs = []
    for fam in names:
        for n in rows:
            meta = {"measure": "rows", "family": fam, "rows": n, "cap": cap_s}
            runs.append(_launch(out_dir / f"rows_{fam}_{n}.json", meta, manifest, 2 * cap_s + 240))
        for c in (1, 2):
            meta = {
                "measure": "cpus",
                "family": fam,
                "rows": cpu_rows,
                "concurrency": c,
                "trials": cpu_trials,
                "cap": cap_s,
            }
            runs.append(_launch(out_dir / f"cpus_{fam}_{c}.json", meta, manifest, 2 * cap_s + 240))
    res = {
        "families": names,
        "rows": list(rows),
        "cap_s": cap_s,
        "cpu_rows": cpu_rows,
        "cpu_trials": cpu_trials,
        "runs": runs,
    }
    write_json(out_dir / "scaling.json", res)
    return res


def _launch(out_json: Path, meta: dict[str, Any], manifest: Path, timeout_s: float) -> dict[str, Any]:
    args = [a for k, v in meta.items() for a in (f"--{k}", f"{v:g}" if isinstance(v, float) else str(v))]
    res = run_child(
        "bench.scaling",
        [*args, "--manifest", str(manifest), "--out", str(out_json)],
        out_json=out_json,
        log_path=out_json.with_suffix(".log"),
        timeout_s=timeout_s,
    )
    ids = {k: v for k, v in meta.items() if k in ("family", "rows", "concurrency")}
    res.update(ids, kind=meta["measure"])
    logging.getLogger(__name__).info("scaling %s: %s", " ".join(args), res.get("status"))
    return res


def scaling_markdown(res: dict[str, Any]) -> str:
    rows = [r for r in res["runs"] if r.get("kind") == "rows" or r.get("status") != "ok"]
    rows = [r for r in rows if r.get("status") != "skipped"]
    lines = [
        f"Rows: default config, one 80/20 holdout fold, 1 thread, cap {res['cap_s']:g} s.",
        "",
        "| family | rows | status | fit s | iterations | stop reason | peak RSS MB (before fit) "
        "| predict rows/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(
                f"| {r.get('family', '?')} | {r.get('rows', '?')} | {r.get('kind')} "
                f"{r.get('status')}: {str(r.get('error', ''))[:80]} | - | - | - | - | - |"
            )
            continue
        lines.append(
            f"| {r['family']} | {r['rows']:,} | ok | {r['fit_wall_s']:.1f} | {r['iterations']} "
            f"| {r['stop_reason']} | {r['peak_rss_mb']:,.0f} ({r['peak_rss_before_fit_mb']:,.0f}) "
            f"| {r['predict_rows_per_s'] or 0:,.0f} |"
        )
    lines += [
        "",
        f"CPUs: a whole fit of {res['cpu_trials']} trials on {res['cpu_rows']:,} rows, "
        "1 vs 2 trials in parallel (no ensemble).",
        "",
        "Most fits end at the time cap, so the speed-up compares trials finished per search second.",
        "",
        "| family | trials at once | trials finished | fit s | search s | speed-up (trials/s) | CPU s "
        "| peak tree PSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cpu = {
        (r["family"], r["concurrency"]): r
        for r in res["runs"]
        if r.get("kind") == "cpus" and r.get("status") == "ok"
    }
    for (fam, c), r in sorted(cpu.items()):
        one = cpu.get((fam, 1))
        speed = f"{trials_per_s(r) / trials_per_s(one):.2f}x" if one and trials_per_s(one) else "-"
        lines.append(
            f"| {fam} | {c} | {finished(r)} | {r['fit_wall_s']:.1f} | {r['search_s']:.1f} | {speed} "
            f"| {r['cpu_s']:.0f} | {r['peak_tree_pss_mb']:,.0f} |"
        )
    skipped = [
        f"{r.get('family')} at {r.get('rows', 0):,} rows ({r.get('reason')})"
        for r in res["runs"]
        if r.get("status") == "skipped"
    ]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    return "\n".join(lines)


def finished(run: dict[str, Any]) -> int:
    """Trials that ran to their end (not stopped early by the scheduler) in a CPU measurement."""
    return int((run.get("trials_by_status") or {}).get("completed", 0))


def trials_per_s(run: dict[str, Any]) -> float:
    return finished(run) / run["search_s"] if run.get("search_s") else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One scaling measurement (see bench/README.md).")
    p.add_argument("--measure", choices=("rows", "cpus"), required=True)
    p.add_argument("--family", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--trials", type=int, default=CPU_TRIALS)
    p.add_argument("--cap", type=float, default=CAP_S)
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if a.measure == "rows":
            res = measure_rows(a.family, a.rows, manifest=Path(a.manifest), cap_s=a.cap)
        else:
            res = measure_cpus(
                a.family, a.rows, a.concurrency, manifest=Path(a.manifest), trials=a.trials, cap_s=a.cap
            )
        rc = 0
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res, rc = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()}, 1
        print(res["traceback"], file=sys.stderr)
    res.update(kind=a.measure, family=a.family, rows=a.rows)
    if a.measure == "cpus":
        res["concurrency"] = a.concurrency
    write_json(a.out, res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
