"""The quality part of ``SUMMARY.md``: scores over the split seeds against the peers, time over the
budget, the detailed comparison of the first seed, search efficiency, ensembling and curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import curves, lean, repeats, table
from bench.common import SYSTEM


def peer_dirs(out: Path, bench_dir: Path, peer_results: str | None) -> list[Path]:
    """Where peer RESULT JSONs are read from, first wins: ``OUT/peers`` (``--peers`` writes there),
    ``--peer-results DIR`` (or its ``peers/`` subfolder), the shared folder's ``peers/`` (seed 0)."""
    dirs = [out / "peers"]
    if peer_results:
        d = Path(peer_results)
        dirs.append(d / "peers" if (d / "peers").is_dir() else d)
    return [*dirs, bench_dir / "peers"]


def first_seed(results: list[dict[str, Any]]) -> int | None:
    seeds = sorted({table.result_seed(r) for r in results})
    return seeds[0] if seeds else None


def quality_section(results: list[dict], peer_entries: list[table.Entry], out: Path) -> str:
    results = sorted(
        results, key=lambda r: (table.table_name(r), r.get("time_limit_s") or 0, table.result_seed(r))
    )
    ours = [e for e in (table.entry_from_result(r) for r in results) if e is not None]
    seed0 = first_seed(results)
    groups = repeats.group(ours, peer_entries)
    keys = {(g.table, g.budget) for g in groups}
    seeds = sorted({e.seed for e in ours})
    pngs = curves.plot_curves([r for r in results if table.result_seed(r) == seed0], out / "curves")
    parts = [
        f"## Quality against the peers over split seeds {', '.join(map(str, seeds))}",
        "",
        repeats.seeds_markdown(groups),
        "",
        "## Time over the budget",
        "",
        repeats.overshoot_markdown(groups),
    ]
    mismatch = repeats.split_mismatches([*ours, *peer_entries])
    if mismatch:
        parts += ["", "WARNING: systems were scored on different test rows for " + ", ".join(mismatch)]
    busy = repeats.busy_runs([e for e in [*ours, *peer_entries] if (e.table, e.budget) in keys])
    if busy:
        parts += [
            "",
            f"WARNING: {len(busy)} runs started on a busy machine (1-minute load average per CPU above "
            f"{repeats.BUSY_LOAD_PER_CPU:g}; budget-driven fits then do less work, and times stretch): "
            + ", ".join(busy),
        ]
    parts += [
        "",
        f"## Every figure at split seed {seed0} (test split of splits.py)",
        "",
        table.comparison_markdown([e for e in ours if e.seed == seed0], peer_entries),
        "",
        f"Peak MB: for {SYSTEM} the summed PSS of the driver and its Ray processes from the fit to "
        "the last prediction; for the peers the process's peak RSS (one process). Model MB: the saved "
        "Predictor directory (AutoGluon: its predictor directory; FLAML: its pickle). 1-row ms: median "
        "of 200 one-row predictions in process. Fit s: wall time of the `automl fit` process (imports, Ray "
        "start-up and shutdown) less its test scoring. "
        "The other seeds' figures are in their JSONs.",
        "",
        "## Search efficiency",
        "",
        curves.efficiency_markdown(results),
        "",
        "## Ensembling (test scores of the options each fit had)",
        "",
        table.ensembling_markdown(results),
        "",
        "## Lean deployment: the default choice and the fastest option within 0.1 % of its validation score",
        "",
        lean.lean_markdown(results, peer_entries),
    ]
    if pngs:
        parts += ["", f"Anytime curves of split seed {seed0}:"]
    parts += [f"\n![{p.stem}](curves/{p.name})" for p in pngs]
    errors = [r for r in results if r.get("status") != "ok"]
    if errors:
        parts += [
            "",
            "Failed runs: "
            + "; ".join(
                f"{(r.get('data') or {}).get('table', '?')} {r.get('time_limit_s', '?')}s "
                f"seed {table.result_seed(r)}: {r.get('error')}"
                for r in errors
            ),
        ]
    return "\n".join(parts)


def describe(host: dict[str, Any]) -> str:
    """One line about the machine (``machine.json`` has the rest)."""
    git = host.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + (" (with uncommitted changes)" if git.get("dirty") else "")
    load = ", ".join(f"{v:.1f}" for v in host.get("loadavg") or ())
    probe = host.get("speed_probe") or {}
    speed = (
        f"; speed probe {probe['python_loop_s']:.2f} s Python loop, {probe['lightgbm_fit_s']:.2f} s "
        "LightGBM fit (lower is faster: compare runs of different days beside it)"
        if probe
        else ""
    )
    return (
        f"Machine: {host.get('cpu_model', '?')}, {host.get('cpus_usable')} usable CPUs, "
        f"{host.get('memory_total_gb', 0):.0f} GB RAM, {host.get('gpus') or 0} GPUs; "
        f"Python {host.get('python')}; commit {commit}; load average at start {load}{speed} (`machine.json`)."
    )
