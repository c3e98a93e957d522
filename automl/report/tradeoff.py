"""Report part: the deployment options (bagged and refit) with their validation score, one-row
latency, batch speed and size, the Pareto front of score against latency marked, as a table and a
scatter plot (the leaderboard rows the deployment chooser measured, :mod:`automl.deploy`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from automl.report import html as H
from automl.report import plots
from automl.report.rundata import RunData

COLUMNS = {
    "model": "option",
    "status": "kind",
    "score_val": "validation score",
    "latency_p50_ms": "1-row p50 ms",
    "latency_p99_ms": "1-row p99 ms",
    "rows_per_s": "batch rows/s",
    "model_mb": "MB on disk",
    "pareto": "Pareto front",
    "deployment": "deployment",
}


def options_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows of the measured deployment options, best validation score first."""
    if "latency_p50_ms" not in board.columns:
        return board.iloc[0:0]
    return board[pd.to_numeric(board["latency_p50_ms"], errors="coerce").notna()]


def tradeoff_section(run: RunData) -> str:
    opts = options_frame(run.board)
    if opts.empty:
        return H.note("No deployment option was measured in this run (a run from before the measurements).")
    chosen = opts["chosen"].astype(str).str.lower() == "true"
    pareto = opts["pareto"].astype(str).str.lower() == "true"
    show = opts[[c for c in COLUMNS if c in opts.columns]].rename(columns=COLUMNS).copy()
    show["Pareto front"] = ["yes" if p else "" for p in pareto]
    show["kind"] = [
        "refit" if s == "refit" else ("ensemble" if f == "ensemble" else "bagged")
        for s, f in zip(opts["status"], opts["family"])
    ]
    show["deployment"] = show["deployment"].fillna("").astype(str)
    table = H.table(
        show, table_id="options", sortable=True, row_classes=["chosen" if c else "" for c in chosen]
    )
    cons = (run.info.get("deployment") or {}).get("constraints") or {}
    limit = cons.get("max_latency_ms")
    uri = tradeoff_plot(
        opts["model"].astype(str).tolist(),
        opts["score_val"].to_numpy(float),
        opts["latency_p50_ms"].to_numpy(float),
        pareto.to_numpy(bool),
        chosen.to_numpy(bool),
        run.metric,
        limit,
    )
    text = H.note(
        "Every option the deployment chooser measured: the bagged options (fold models, or a holdout "
        "model) and their refit variants (each member trained once on every row; their validation "
        "score is their bag's, an estimate). Latency: one-row predictions through the whole Predictor; "
        "rows/s: one batch; both measured during the fit on a small sample of training rows. An "
        "option is on the Pareto front when no other is both at least as good and at least as fast. "
        "The other front options are saved in options/ of the run directory."
    )
    return text + H.figures(H.img(uri, "validation score against one-row latency")) + table


def tradeoff_plot(
    names: list[str],
    score: np.ndarray,
    latency_ms: np.ndarray,
    pareto: np.ndarray,
    chosen: np.ndarray,
    metric: str,
    max_latency_ms: float | None = None,
) -> str:
    fig = plots.figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.scatter(latency_ms[~pareto], score[~pareto], s=26, color=plots.PALETTE[7], label="dominated")
    ax.scatter(
        latency_ms[pareto], score[pareto], s=34, color=plots.PALETTE[0], label="Pareto front", zorder=3
    )
    front = np.argsort(latency_ms[pareto])
    ax.step(
        latency_ms[pareto][front], score[pareto][front], where="post", color=plots.PALETTE[0], linewidth=1
    )
    if chosen.any():
        ax.scatter(
            latency_ms[chosen], score[chosen], s=120, facecolors="none", edgecolors=plots.PALETTE[3],
            linewidths=1.6, label="chosen", zorder=4,
        )  # fmt: skip
    for x, y, n in zip(latency_ms, score, names):
        ax.annotate(plots.short(n, 22), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if max_latency_ms is not None:
        ax.axvline(
            max_latency_ms, color=plots.PALETTE[3], linestyle="--", linewidth=1, label="max_latency_ms"
        )
    if np.nanmax(latency_ms) > 5 * max(np.nanmin(latency_ms), 1e-3):
        ax.set_xscale("log")
    plots.style(ax, "Validation score against one-row latency", "one-row latency, ms (p50)", metric)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return plots.to_uri(fig)
