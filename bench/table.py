"""The comparison table: our runs next to the peers' numbers at the same table and budget.

Peers come from their RESULT JSONs (``../shared/bench/peers/*.json``); PEERS.md fills in a
(table, budget, system) that has no JSON (it only holds the score, fit time and one-row latency).
Everything here is pure: dicts in, markdown out.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import SYSTEM

GREATER_IS_BETTER = {"roc_auc": True, "accuracy": True, "r2": True, "log_loss": False, "rmse": False}


@dataclass(frozen=True)
class Entry:
    """One system's numbers on one table at one budget (None: not measured)."""

    table: str
    budget: float
    system: str
    metric: str
    greater_is_better: bool
    status: str = "ok"
    score: float | None = None
    fit_s: float | None = None
    rows_per_s: float | None = None
    latency_ms: float | None = None
    latency_p99_ms: float | None = None
    peak_mb: float | None = None
    model_mb: float | None = None
    split_sha: str | None = None
    source: str = ""
    seed: int = 0  # the split seed (results without one are the peers' original seed-0 runs)
    load_per_cpu: float | None = None  # 1-minute load average at the start / usable CPUs


def table_name(res: dict[str, Any]) -> str:
    data = res.get("data") or {}
    if data.get("table"):
        return str(data["table"])
    return Path(str(data.get("path", "?"))).name.split(".")[0]


def system_label(res: dict[str, Any]) -> str:
    """``autogluon-medium_quality`` (system plus preset, as in PEERS.md), ``flaml``, ``automl-on-ray``."""
    preset = res.get("preset")
    return f"{res.get('system')}-{preset}" if preset else str(res.get("system"))


def result_seed(res: dict[str, Any]) -> int:
    """The split seed of a RESULT dict: ``split.seed``, else ``args.seed``, else 0 (the first peer
    results predate repeated splits and all used seed 0)."""
    for block in (res.get("split"), res.get("args")):
        if isinstance(block, dict) and block.get("seed") is not None:
            return int(block["seed"])
    return 0


def load_per_cpu(res: dict[str, Any]) -> float | None:
    """The 1-minute load average when the run started, per usable CPU (``environment``)."""
    env = res.get("environment") or {}
    load, cpus = env.get("loadavg_start"), env.get("cpus_usable") or env.get("cpu_count")
    return float(load[0]) / cpus if load and cpus else None


def entry_from_result(res: dict[str, Any], source: str = "") -> Entry | None:
    """An Entry from a RESULT dict (ours or a peer's); None when it names no table or budget."""
    if res.get("time_limit_s") is None or not res.get("data"):
        return None
    metric = (res.get("metric") or {}).get("name") or (res.get("args") or {}).get("metric") or "?"
    gib = (res.get("metric") or {}).get("greater_is_better", GREATER_IS_BETTER.get(metric, True))
    base = Entry(
        table_name(res),
        float(res["time_limit_s"]),
        system_label(res),
        metric,
        bool(gib),
        status=str(res.get("status")),
        source=source,
        seed=result_seed(res),
        load_per_cpu=load_per_cpu(res),
    )
    if res.get("status") != "ok":
        return base
    mem = res.get("memory") or {}
    return replace(
        base,
        score=res["metric"]["value"],
        fit_s=res["fit"]["wall_s"],
        rows_per_s=res["predict"]["rows_per_s"],
        latency_ms=res["latency_single_row"]["median_ms"],
        latency_p99_ms=res["latency_single_row"].get("p99_ms"),
        peak_mb=mem.get("peak_tree_pss_mb", mem.get("peak_rss_mb")),
        model_mb=(res.get("artifact") or {}).get("mb"),
        split_sha=(res.get("split") or {}).get("test_index_sha256"),
    )


_CELL = re.compile(r"^\s*([-+0-9.eE]+)\s*\(fit\s*([0-9.]+)s,\s*1-row\s*([0-9.]+)ms\)")


def parse_peers_md(text: str) -> list[Entry]:
    """Entries from PEERS.md's table: ``| table | budget | metric | <system>... | best |`` with cells
    like ``0.9322 (fit 63s, 1-row 106.2ms)``."""
    rows = [
        [c.strip() for c in ln.strip().strip("|").split("|")]
        for ln in text.splitlines()
        if ln.strip().startswith("|")
    ]
    if len(rows) < 3 or rows[0][:3] != ["table", "budget", "metric"]:
        return []
    systems = rows[0][3:]
    out = []
    for row in rows[2:]:
        if len(row) < 3 + len(systems):
            continue
        table, budget, metric = row[0], float(row[1].rstrip("s")), row[2]
        for system, cell in zip(systems, row[3:]):
            m = _CELL.match(cell)
            if m:
                out.append(
                    Entry(
                        table,
                        budget,
                        system,
                        metric,
                        GREATER_IS_BETTER.get(metric, True),
                        score=float(m[1]),
                        fit_s=float(m[2]),
                        latency_ms=float(m[3]),
                        source="PEERS.md",
                    )
                )
    return out


def load_peers(peers_dirs: Path | list[Path] | None, peers_md: Path | None = None) -> list[Entry]:
    """Every peer result, one per (table, budget, system, seed): the JSONs of the folders in the
    order given (an ``ok`` result beats a failed one, else the first folder wins), then PEERS.md
    (seed 0) for what they lack."""
    dirs = [peers_dirs] if isinstance(peers_dirs, Path) else list(peers_dirs or [])
    entries: dict[tuple[str, float, str, int], Entry] = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                e = entry_from_result(json.loads(path.read_text()), source=path.name)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if e is None or e.system == SYSTEM:
                continue
            key = (e.table, e.budget, e.system, e.seed)
            old = entries.get(key)
            if old is None or (old.status != "ok" and e.status == "ok"):
                entries[key] = e
    if peers_md and peers_md.is_file():
        for e in parse_peers_md(peers_md.read_text()):
            entries.setdefault((e.table, e.budget, e.system, e.seed), e)
    return list(entries.values())


def rank(entries: list[Entry]) -> dict[str, int]:
    """Rank of each system by score at one (table, budget): 1 = best; ties share a rank."""
    ok = [e for e in entries if e.score is not None and math.isfinite(e.score)]
    key = lambda e: -e.score if e.greater_is_better else e.score  # noqa: E731
    return {e.system: 1 + sum(key(o) < key(e) for o in ok) for e in ok}


def advantage(ours: Entry, peers: list[Entry]) -> float | None:
    """Our score minus the best peer's, signed so that positive means we are better."""
    scores = [p.score for p in peers if p.score is not None]
    if ours.score is None or not scores:
        return None
    best = max(scores) if ours.greater_is_better else min(scores)
    return ours.score - best if ours.greater_is_better else best - ours.score


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _row(e: Entry, r: int | None, adv: float | None) -> str:
    score = _f(e.score, ".4g") if e.status == "ok" else e.status
    return (
        f"| {e.table} | {e.budget:g}s | {e.metric} | {e.system} | {score} | {_f(r, 'd')} "
        f"| {_f(adv, '+.4g')} | {_f(e.fit_s, '.1f')} | {_f(e.rows_per_s, ',.0f')} "
        f"| {_f(e.latency_ms, '.2f')} | {_f(e.peak_mb, ',.0f')} | {_f(e.model_mb, '.2f')} |"
    )


def comparison_markdown(ours: list[Entry], peers: list[Entry]) -> str:
    """Our row for every (table, budget), followed by the peers' rows at the same table, budget and
    split seed."""
    lines = [
        "| table | budget | metric | system | test score | rank | vs best peer | fit s | predict rows/s "
        "| 1-row ms | peak MB | model MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    wins = compared = 0
    notes = []
    for o in sorted(ours, key=lambda e: (e.table, e.budget)):
        same = sorted(
            (p for p in peers if (p.table, p.budget, p.seed) == (o.table, o.budget, o.seed)),
            key=lambda p: p.system,
        )
        ranks = rank([o, *same]) if same else {}
        adv = advantage(o, same)
        if adv is not None:
            compared += 1
            wins += adv >= 0
        lines.append(_row(o, ranks.get(o.system), adv))
        lines += [_row(p, ranks.get(p.system), None) for p in same]
        shas = {p.split_sha for p in same if p.split_sha}
        if o.split_sha and shas and shas != {o.split_sha}:
            notes.append(f"{o.table}: our test split differs from the peers' (test_index_sha256)")
    out = "\n".join(lines)
    if compared:
        out += (
            f"\n\n{SYSTEM} scores at least as well as every peer on {wins} of {compared} "
            "(table, budget) pairs."
        )
    return out + "".join(f"\n\nWARNING: {n}" for n in notes)


def ensembling_markdown(results: list[dict[str, Any]]) -> str:
    """Test scores of the best single model, the weighted ensemble, the stack and the model the
    fit chose (``options_test`` of each run), so whether ensembling paid off is visible per table."""
    lines = [
        "| table | budget | seed | metric | best single (test) | weighted ensemble | stack | chosen "
        "| chosen vs best single |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    wins = n = 0
    for res in results:
        opts, metric = res.get("options_test"), res.get("metric") or {}
        if res.get("status") != "ok" or not opts or not opts.get("best_single"):
            continue
        sign = 1.0 if metric.get("greater_is_better", True) else -1.0

        def cell(key: str, opts: dict = opts) -> str:
            o = opts.get(key)
            return "-" if not o else f"{o['model']} {_f(o['score_test'], '.4g')}"

        gain = sign * (opts["chosen"]["score_test"] - opts["best_single"]["score_test"])
        n += 1
        wins += gain >= 0
        lines.append(
            f"| {table_name(res)} | {res.get('time_limit_s', 0):g}s | {result_seed(res)} "
            f"| {metric.get('name', '?')} | "
            f"{cell('best_single')} | {cell('weighted_ensemble')} | {cell('stack')} | {cell('chosen')} | "
            f"{gain:+.4g} |"
        )
    lines += [
        "",
        f"The chosen model scores at least as well as the best single model on the test split in "
        f"{wins} of {n} runs.",
    ]
    return "\n".join(lines)
