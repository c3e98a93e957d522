"""Search efficiency: anytime curves (best validation score so far vs seconds since the fit
started, from the leaderboard's completed trials) and per-trial orchestration overhead."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

#: "within tolerance of the final best": |best - final| <= TOL * max(|final|, 1e-12)
TOL = 0.001


def anytime_curve(
    board: pd.DataFrame, greater_is_better: bool, offset_s: float = 0.0
) -> list[dict[str, Any]]:
    """One point per completed trial in order of completion: its score and the best so far.

    ``offset_s`` shifts the leaderboard's ``end_s`` (seconds after the search started) to seconds
    after the fit started (profiling, preprocessing and Ray start-up come first)."""
    done = board[(board["status"] == "completed") & board["score_val"].notna() & board["end_s"].notna()]
    done = done.sort_values("end_s", kind="stable")
    points, best = [], None
    for r in done.itertuples():
        s = float(r.score_val)
        if best is None or (s > best if greater_is_better else s < best):
            best = s
        t = round(offset_s + float(r.end_s), 3)
        points.append({"t_s": t, "score": s, "best": best, "model": r.model})
    return points


def curve_summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """First result, time to the final best, time to within TOL of it, trials completed."""
    if not points:
        return {
            "completed_trials": 0,
            "first_result_s": None,
            "time_to_best_s": None,
            "time_to_within_tol_s": None,
            "final_best": None,
            "tolerance": TOL,
        }
    final = points[-1]["best"]
    to_best = next(p["t_s"] for p in points if p["best"] == final)
    near = next(p["t_s"] for p in points if abs(p["best"] - final) <= TOL * max(abs(final), 1e-12))
    return {
        "completed_trials": len(points),
        "first_result_s": points[0]["t_s"],
        "time_to_best_s": to_best,
        "time_to_within_tol_s": near,
        "final_best": final,
        "tolerance": TOL,
    }


def search_offset_s(timings: dict[str, Any]) -> float:
    """Seconds from the call to fit until the search started (run.json ``timings``)."""
    return float(sum(timings.get(k) or 0.0 for k in ("profile_s", "preprocess_s", "ray_init_s")))


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def efficiency_markdown(results: list[dict[str, Any]]) -> str:
    """One row per run of the project: trials, why the search ended, curve summary, overhead."""
    lines = [
        "| table | budget | seed | trials (status) | ended because | first result s | time to best s "
        f"| within {TOL:.1%} of best s | overhead/trial mean (max) s | chosen | load avg start/end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("status") != "ok":
            continue
        sd = r.get("system_details", {})
        c = sd.get("curve_summary", {})
        ov = sd.get("trial_overhead_s") or {}
        status = ", ".join(f"{k} {v}" for k, v in sorted((sd.get("trials_by_status") or {}).items()))
        env = r.get("environment") or {}
        load = "/".join(_fmt((env.get(k) or [None])[0]) for k in ("loadavg_start", "loadavg_end"))
        lines.append(
            f"| {r['data']['table']} | {r['time_limit_s']:g}s | {(r.get('split') or {}).get('seed', 0)} "
            f"| {sd.get('n_trials', '-')} ({status}) "
            f"| {sd.get('ended_because', '-')} | {_fmt(c.get('first_result_s'))} "
            f"| {_fmt(c.get('time_to_best_s'))} | {_fmt(c.get('time_to_within_tol_s'))} "
            f"| {_fmt(ov.get('mean'), '.2f')} ({_fmt(ov.get('max'), '.2f')}) "
            f"| {sd.get('chosen', '-')} | {load} |"
        )
    return "\n".join(lines)


def plot_curves(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per table: the anytime curve of every budget (step plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    by_table: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "ok" and r.get("system_details", {}).get("anytime_curve"):
            by_table.setdefault(r["data"]["table"], []).append(r)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table, runs in sorted(by_table.items()):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for r in sorted(runs, key=lambda r: r["time_limit_s"]):
            pts = r["system_details"]["anytime_curve"]
            ax.step(
                [p["t_s"] for p in pts],
                [p["best"] for p in pts],
                where="post",
                label=f"{r['time_limit_s']:g}s budget",
                marker=".",
            )
            ax.axvline(r["time_limit_s"], color="grey", lw=0.5, ls=":")
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds since fit started")
        ax.set_ylabel(f"best validation {runs[0]['metric']['name']}")
        ax.set_title(f"{table}: anytime curve (completed trials)")
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"curve_{table}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
