"""Report sections about the run: summary, leaderboard (+ search progress) and data profile."""

from __future__ import annotations

import base64
import json
from typing import Any

import pandas as pd

from automl.report import evaluation, plots
from automl.report import html as H
from automl.report.rundata import RunData

LEADERBOARD_COLUMNS = [
    "rank",
    "model",
    "family",
    "score_val",
    "score_std",
    "score_test",
    "status",
    "stop_reason",
    "iterations",
    "fit_time_s",
    "predict_time_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "rows_per_s",
    "model_mb",
    "pareto",
    "start_s",
    "end_s",
    "params",
    "error",
]


def _seconds(v: Any) -> str:
    return "" if v is None else f"{float(v):.1f} s"


def constraints(run: RunData) -> dict[str, Any]:
    """Deployment constraints recorded for the run (run.json, else the Predictor's info)."""
    for source in (run.info, run.predictor.info if run.predictor else {}):
        found = (source.get("deployment") or {}).get("constraints") or {}
        if found:
            return {k: v for k, v in found.items() if v is not None}
    return {}


def summary(run: RunData) -> str:
    info, prof, chosen = run.info, run.profile, run.chosen_row
    cards: dict[str, Any] = {"chosen model": info.get("chosen", "")}
    if chosen is not None:
        cards[f"validation {run.metric}"] = chosen["score_val"]
        if pd.notna(chosen.get("score_test")):
            cards[f"test {run.metric}"] = chosen["score_test"]
    cards["trials"] = info.get("n_trials")
    cards["fit time"] = _seconds(info.get("timings", {}).get("total_s"))
    val = info.get("validation", {})
    members = info.get("members") or {}
    fams = dict(zip(run.board["model"], run.board["family"]))
    member_text = ", ".join(f"{m} ({fams.get(m, '?')}, weight {w:.3f})" for m, w in members.items())
    cons = constraints(run)
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in info.get("timings", {}).items())
    pairs = [
        ("data", f"{prof.n_rows:,} rows x {prof.n_columns} columns" if prof else None),
        ("target", run.target),
        ("problem type", run.problem_type + (f" ({prof.problem_type_reason})" if prof else "")),
        ("metric", run.metric + (f" ({prof.metric_reason})" if prof else "")),
        (
            "validation",
            f"{val.get('kind', '')}, {len(val.get('validation_rows', []))} fold(s), "
            f"{sum(val.get('validation_rows', [])):,} validation rows"
            if val
            else None,
        ),
        (
            "budget",
            (f"time limit {info['time_limit_s']:.0f} s" if info.get("time_limit_s") else "no time limit")
            + f"; search strategy {info.get('search_strategy', '')}; "
            f"{info.get('concurrency', '?')} trial(s) at once",
        ),
        ("why the search ended", info.get("ended_because")),
        ("trials by status", ", ".join(f"{k}: {v}" for k, v in info.get("trials_by_status", {}).items())),
        ("chosen model", info.get("chosen")),
        ("members", member_text or None),
        ("refit on all rows", bool(info.get("refit"))),
        (
            "predict time (1,000 rows)",
            _seconds(chosen["predict_time_s"])
            if chosen is not None and pd.notna(chosen["predict_time_s"])
            else None,
        ),
        ("constraints", ", ".join(f"{k} = {v}" for k, v in cons.items()) or "none set"),
        ("deployment", (info.get("decisions") or {}).get("deployment")),
        ("left out for time", "; ".join(info.get("cut_for_time") or []) or None),
        ("time spent", timings),
        (
            "time-limit overshoot",
            _seconds(info.get("overshoot_s")) if info.get("overshoot_s") is not None else None,
        ),
    ]
    return H.score_cards(cards) + H.kv(pairs)


def _data_uri(text: str, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(text.encode()).decode("ascii")


def leaderboard(run: RunData) -> str:
    board = run.board
    csv_link = _data_uri(board.to_csv(index=False), "text/csv")
    json_link = _data_uri(
        json.dumps(json.loads(board.to_json(orient="records")), indent=1), "application/json"
    )
    links = (
        f'<p><a class="dl" download="leaderboard.csv" href="{csv_link}">download CSV</a>'
        f'<a class="dl" download="leaderboard.json" href="{json_link}">download JSON</a>'
        f"{len(board)} rows; click a column header to sort.</p>"
    )
    show = board[[c for c in LEADERBOARD_COLUMNS if c in board.columns]].copy()
    if "params" in show:
        text = [
            m if isinstance(m, str) and m else p for p, m in zip(board["params"], board["members"].fillna(""))
        ]
        show["params"] = [H.Cell(f'<span title="{H.esc(t)}">{H.esc(t)}</span>', cls="params") for t in text]
    status = board["status"].astype(str)
    chosen = board["chosen"].astype(str).str.lower() == "true"
    classes = ["chosen" if c else s if s in ("failed", "stopped") else "" for c, s in zip(chosen, status)]
    table = H.table(show, table_id="leaderboard", sortable=True, row_classes=classes)
    body = links + f'<div class="scroll">{table}</div>'
    curves = evaluation.best_over_time(board, run.greater_is_better)
    if curves:
        rows = board[board["family"].ne("ensemble")].dropna(subset=["end_s", "score_val"])
        points = {
            str(f): (g["end_s"].to_numpy(float), g["score_val"].to_numpy(float))
            for f, g in rows.groupby("family")
        }
        body += "<h3>Search progress</h3>" + H.figures(
            H.img(plots.best_over_time(curves, points, run.metric), "best score over time per family")
        )
    return body


def _column_summary(c: Any) -> str:
    st = c.stats or {}
    if "quantiles" in st:
        q = st["quantiles"]
        return (
            f"mean {H.fmt(st.get('mean'))}, min {H.fmt(q.get('min'))}, median {H.fmt(q.get('p50'))}, "
            f"max {H.fmt(q.get('max'))}"
        )
    if "top" in st:
        return ", ".join(f"{t['value']} ({t['share']:.0%})" for t in st["top"][:4])
    return ""


def profile(run: RunData) -> str:
    prof = run.profile
    if prof is None:
        return H.note("This run has no profile.json.")
    pairs = [
        ("rows", prof.n_rows),
        ("columns", prof.n_columns),
        ("duplicate rows", prof.n_duplicate_rows),
        ("rows dropped (missing target)", prof.rows_dropped_missing_target),
        ("time column", prof.time_column),
        ("group column", prof.group_column),
        ("weight column", prof.weight_column),
    ]
    body = H.kv(pairs)
    body += f"<h3>Warnings ({len(prof.warnings)})</h3>"
    if prof.warnings:
        body += "".join(
            f'<p class="warn"><b>{H.esc(w.code)}</b>: {H.esc(w.message)}'
            + (
                f" [{H.esc(', '.join(w.columns))}]"
                if w.columns and not all(c in w.message for c in w.columns)
                else ""
            )
            + f"<br>&rarr; {H.esc(w.action)}</p>"
            for w in prof.warnings
        )
    else:
        body += H.note("No data quality warnings.")
    body += _decisions(run)
    cols = pd.DataFrame(
        [
            {
                "column": c.name,
                "role": c.role,
                "kind": c.kind,
                "dtype": c.dtype,
                "missing": H.percent(c.missing_share),
                "distinct": c.n_unique,
                "summary": _column_summary(c),
                "why": c.drop_reason if c.role == "dropped" else c.reason,
            }
            for c in prof.columns
        ]
    )
    body += (
        "<h3>Columns</h3>" + f'<div class="scroll">{H.table(cols, table_id="columns", sortable=True)}</div>'
    )
    body += "<h3>Target</h3>" + _target_plot(run)
    return body


def _decisions(run: RunData) -> str:
    """The prepare stage's decisions: the column probe's verdicts with their scores, and the
    regression target's transform and clip range (run.json ``decisions``)."""
    dec = run.info.get("decisions") or {}
    cols, target = dec.get("columns") or {}, dec.get("target")
    if not cols and not target:
        return ""
    body = "<h3>Decisions</h3>"
    if cols:
        rows = [
            {
                "column": name,
                "kind": d.get("kind"),
                "default": d.get("default"),
                "chosen": d.get("choice"),
                **{f"{o} ({d.get('metric')})": v for o, v in (d.get("scores") or {}).items()},
                "why": d.get("reason", "").split("; ")[0],
            }
            for name, d in cols.items()
        ]
        body += H.table(pd.DataFrame(rows).fillna(""), table_id="column_decisions")
    if target:
        pairs = [("target", target.get("reason")), ("clip range", target.get("clip_range"))]
        if clipped := dec.get("clipped_validation_predictions"):
            pairs.append(
                ("clipped validation predictions", ", ".join(f"{k}: {v}" for k, v in clipped.items()))
            )
        body += H.kv(pairs)
    return body


def _target_plot(run: RunData) -> str:
    prof = run.profile
    ts = prof.target_summary
    if "class_counts" in ts:
        counts = ts["class_counts"]
        uri = plots.class_counts(list(counts), list(counts.values()), f"Classes of {prof.target}")
        return H.figures(H.img(uri, "class counts")) + H.note(
            f"imbalance ratio (largest / smallest class): {H.fmt(ts.get('imbalance_ratio'))}"
        )
    if run.sample is not None and run.target in run.sample:
        values = pd.to_numeric(run.sample[run.target], errors="coerce").to_numpy(float)
        return H.figures(
            H.img(
                plots.histogram(values, f"Distribution of {prof.target}", prof.target), "target distribution"
            )
        )
    q = ts.get("quantiles", {})
    return H.kv([(k, v) for k, v in q.items()] + [("mean", ts.get("mean")), ("std", ts.get("std"))])
