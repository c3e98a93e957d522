"""The short Markdown report of a monitoring run (``report.md``; also printed by the CLI)."""

from __future__ import annotations

from typing import Any


def _num(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def render(result: Any) -> str:
    cfg = result.config
    status = "OK: no violations" if result.ok else f"VIOLATIONS: {len(result.violations)}"
    src = f"{result.n_rows} rows" + (
        f" from {result.n_requests} captured requests" if result.n_requests else ""
    )
    lines = [
        f"# Drift report: {result.model}",
        "",
        f"{src} in {result.capture} vs a training baseline of {result.baseline_rows} rows.",
        f"Thresholds: PSI >= {cfg.psi_threshold} and p-value < {cfg.p_value} (drift), missing share change > "
        f"{cfg.missing_share_delta}, unseen categories > {cfg.new_category_share:.1%} of rows beyond "
        "the expected.",
        "",
        f"**{status}**"
        + (f"; drifted features: {', '.join(result.drifted_features)}" if result.drifted_features else ""),
        "",
    ]
    if result.violations:
        lines += [f"- [{v['kind']}] {v['message']}" for v in result.violations] + [""]
    lines += [
        "| feature | type | PSI | test | p-value | missing (train -> now) | drift |",
        "|---|---|---|---|---|---|---|",
    ]
    order = sorted(result.features.items(), key=lambda kv: -(kv[1].get("psi") or 0.0))
    for col, r in order:
        if not r.get("present", True):
            lines.append(f"| {col} | - | - | - | - | absent | - |")
            continue
        lines.append(
            f"| {col} | {r.get('type', '-')} | {_num(r.get('psi'))} | {r.get('test', '-')} | "
            f"{_num(r.get('p_value'), '.3g')} | {_num(r.get('missing_share_baseline'))} -> "
            f"{_num(r.get('missing_share'))} | {'YES' if r.get('drift') else ''} |"
        )
    if result.prediction:
        lines += ["", "| prediction | type | PSI | test | p-value | drift |", "|---|---|---|---|---|---|"]
        for key, r in result.prediction.items():
            lines.append(
                f"| {key} | {r['type']} | {_num(r.get('psi'))} | {r['test']} | "
                f"{_num(r.get('p_value'), '.3g')} | {'YES' if r.get('drift') else ''} |"
            )
    if result.extra_columns:
        lines += ["", f"Columns not seen in training (ignored by the model): {result.extra_columns[:20]}"]
    lines += [""] + [f"Note: {n}" for n in result.notes]
    return "\n".join(lines).rstrip() + "\n"
