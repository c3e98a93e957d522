"""Plots as inline PNG data URIs.

Figures are built with matplotlib's object API on an Agg canvas (``Figure`` +
``FigureCanvasAgg``): no pyplot, no backend switch and no change to the host application's
global ``rcParams``. Every style choice is made on the figure itself.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
DPI = 100


def figure(w: float = 5.0, h: float = 3.6) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Any, title: str, xlabel: str = "", ylabel: str = "") -> None:
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _short(label: Any, n: int = 28) -> str:
    s = str(label)
    return s if len(s) <= n else s[: n - 1] + "\u2026"


style, short = _style, _short  # for the report modules that draw their own plots


# --- search --------------------------------------------------------------------------------------------
def best_over_time(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    points: dict[str, tuple[np.ndarray, np.ndarray]],
    metric: str,
) -> str:
    fig = figure(7.6, 3.6)
    ax = fig.add_subplot()
    end = max([float(t.max()) for t, _ in points.values() if len(t)] or [0.0])
    for i, (fam, (t, best)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        ax.step(
            np.append(t, max(end, t[-1])),
            np.append(best, best[-1]),
            where="post",
            color=color,
            linewidth=2,
            label=f"{fam} (best so far)",
        )
        pt, ps = points.get(fam, (np.array([]), np.array([])))
        ax.scatter(pt, ps, s=18, color=color, alpha=0.6, linewidths=0.5, edgecolors="white", zorder=3)
    _style(
        ax,
        "Best validation score over time, per family (dots: every trial)",
        "seconds since the search began",
        metric,
    )
    if curves:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        firsts = [float(b[0]) for _, b in curves.values()]
        lasts = [float(b[-1]) for _, b in curves.values()]
        lo, hi = min(firsts + lasts), max(firsts + lasts)
        pad = 0.15 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
        ax.set_ylim(lo - pad, hi + pad)  # the best-so-far lines, not the worst trials, set the scale
        scores = np.concatenate([s for _, s in points.values()]) if points else np.array([])
        hidden = int(((scores < lo - pad) | (scores > hi + pad)).sum())
        if hidden:
            ax.text(
                0.99,
                0.02,
                f"{hidden} weaker trial(s) outside the plotted range",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=7,
                color="#666666",
            )
    return to_uri(fig)


# --- classification ---------------------------------------------------------------------------------
def roc(fpr: np.ndarray, tpr: np.ndarray, auc: float) -> str:
    fig = figure(4.2, 3.8)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color=PALETTE[0], linewidth=2, label=f"model (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    _style(ax, "ROC curve", "false positive rate", "true positive rate (recall)")
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return to_uri(fig)


def precision_recall(
    recall: np.ndarray, precision: np.ndarray, auc: float, base_rate: float, point: tuple[float, float]
) -> str:
    fig = figure(4.2, 3.8)
    ax = fig.add_subplot()
    ax.plot(recall, precision, color=PALETTE[1], linewidth=2, label=f"model (AUC {auc:.4f})")
    ax.axhline(base_rate, color="#999999", linestyle="--", linewidth=1, label=f"base rate {base_rate:.3f}")
    ax.scatter([point[0]], [point[1]], color="black", zorder=3, s=24, label="chosen threshold")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    _style(ax, "Precision-recall curve", "recall", "precision")
    ax.legend(fontsize=8, loc="lower left", frameon=False)
    return to_uri(fig)


def calibration(predicted: np.ndarray, observed: np.ndarray) -> str:
    fig = figure(4.2, 3.8)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", color=PALETTE[2], linewidth=2, label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    _style(ax, "Calibration (equal-count bins)", "mean predicted probability", "observed frequency")
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return to_uri(fig)


def confusion(cm: np.ndarray, labels: Sequence[Any], title: str) -> str:
    k = len(labels)
    size = min(7.5, 2.6 + 0.55 * k)
    fig = figure(size + 0.8, size)
    ax = fig.add_subplot()
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8 if k < 8 else 6,
                color="white" if share[i, j] > 0.6 else "black",
            )
    names = [_short(lab, 14) for lab in labels]
    ax.set_xticks(range(k), names, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), names)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("actual", fontsize=9)
    ax.tick_params(labelsize=8)
    return to_uri(fig)


def per_class_scores(per_class: list[dict[str, Any]]) -> str:
    k = len(per_class)
    fig = figure(max(4.5, 1.0 + 0.9 * k), 3.4)
    ax = fig.add_subplot()
    x = np.arange(k)
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [c[key] for c in per_class], width=0.27, color=PALETTE[i], label=key)
    ax.set_xticks(x, [_short(c["class"], 14) for c in per_class], fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    _style(ax, "Per-class precision, recall and F1", "", "")
    ax.legend(fontsize=8, frameon=False, ncols=3, loc="upper center")
    return to_uri(fig)


def class_counts(labels: Sequence[Any], counts: Sequence[int], title: str) -> str:
    fig = figure(max(4.0, 1.0 + 0.6 * len(labels)), 3.0)
    ax = fig.add_subplot()
    ax.bar(range(len(labels)), counts, color=PALETTE[0])
    ax.set_xticks(
        range(len(labels)), [_short(v, 14) for v in labels], fontsize=8, rotation=30 if len(labels) > 5 else 0
    )
    _style(ax, title, "", "rows")
    return to_uri(fig)


# --- regression ------------------------------------------------------------------------------------
def predicted_vs_actual(y: np.ndarray, pred: np.ndarray) -> str:
    fig = figure(4.4, 4.0)
    ax = fig.add_subplot()
    ax.scatter(y, pred, s=6, alpha=0.35, color=PALETTE[0], linewidths=0, rasterized=True)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="#d62728", linestyle="--", linewidth=1, label="predicted = actual")
    _style(ax, "Predicted vs actual", "actual", "predicted")
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return to_uri(fig)


def residuals(pred: np.ndarray, resid: np.ndarray) -> str:
    fig = figure(7.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    ax1.scatter(pred, resid, s=6, alpha=0.35, color=PALETTE[0], linewidths=0, rasterized=True)
    ax1.axhline(0, color="#d62728", linestyle="--", linewidth=1)
    _style(ax1, "Residuals vs predicted", "predicted", "actual - predicted")
    ax2.hist(resid, bins=40, color=PALETTE[0], alpha=0.85)
    _style(ax2, "Residual distribution", "actual - predicted", "rows")
    return to_uri(fig)


def histogram(values: np.ndarray, title: str, xlabel: str) -> str:
    fig = figure(4.4, 3.0)
    ax = fig.add_subplot()
    ax.hist(values[np.isfinite(values)], bins=40, color=PALETTE[0], alpha=0.85)
    _style(ax, title, xlabel, "rows")
    return to_uri(fig)


# --- explanations -------------------------------------------------------------------------------------
def importance(
    names: Sequence[str],
    values: np.ndarray,
    title: str,
    xlabel: str,
    stack: dict[str, np.ndarray] | None = None,
    errors: np.ndarray | None = None,
) -> str:
    """Horizontal bars, most important on top; ``stack`` splits each bar (e.g. by class)."""
    n = len(names)
    fig = figure(6.0, 0.9 + 0.28 * max(n, 3))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    if stack:
        left = np.zeros(n)
        for i, (label, part) in enumerate(stack.items()):
            ax.barh(y, part, left=left, color=PALETTE[i % len(PALETTE)], label=_short(label, 18), height=0.7)
            left = left + part
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    else:
        ax.barh(y, values, color=PALETTE[0], height=0.7, xerr=errors, error_kw={"linewidth": 0.8})
    ax.set_yticks(y, [_short(v) for v in names], fontsize=8)
    _style(ax, title, xlabel, "")
    ax.grid(False, axis="y")
    return to_uri(fig)


def beeswarm(names: Sequence[str], shap: np.ndarray, colour: np.ndarray, title: str, seed: int = 0) -> str:
    """SHAP summary: one row of dots per column (rows = sampled rows), x = contribution, colour =
    the column's value (rank-scaled, low blue to high red; grey for non-numeric columns)."""
    from matplotlib import colormaps

    rng = np.random.default_rng(seed)
    n = len(names)
    fig = figure(6.6, 1.0 + 0.34 * max(n, 3))
    ax = fig.add_subplot()
    cmap = colormaps["coolwarm"]
    for i in range(n):
        yv = (n - 1 - i) + rng.uniform(-0.3, 0.3, size=shap.shape[0])
        c = colour[:, i]
        numeric = np.isfinite(c)
        ax.scatter(
            shap[~numeric, i], yv[~numeric], s=5, color="#9a9a9a", alpha=0.6, linewidths=0, rasterized=True
        )
        ax.scatter(
            shap[numeric, i], yv[numeric], s=5, c=cmap(c[numeric]), alpha=0.75, linewidths=0, rasterized=True
        )
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.set_yticks(np.arange(n)[::-1], [_short(v) for v in names], fontsize=8)
    _style(ax, title, "contribution to the margin (SHAP value)", "")
    ax.grid(False, axis="y")
    return to_uri(fig)


def partial_dependence(panels: list[dict[str, Any]], ylabel: str) -> str:
    """Small multiples; each panel: ``column``, ``x`` (values or labels), ``curves`` {label: y},
    ``categorical`` (bool)."""
    cols = min(2, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig = figure(3.6 * cols, 2.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        for i, (label, yv) in enumerate(panel["curves"].items()):
            color = PALETTE[i % len(PALETTE)]
            if panel["categorical"]:
                ax.plot(range(len(yv)), yv, marker="o", color=color, linewidth=1, label=_short(label, 14))
            else:
                ax.plot(
                    panel["x"],
                    yv,
                    color=color,
                    linewidth=2,
                    label=_short(label, 14),
                    marker="o" if panel.get("markers") else None,
                    markersize=4,
                )
        if panel["categorical"]:
            ax.set_xticks(
                range(len(panel["x"])), [_short(v, 10) for v in panel["x"]], rotation=40, ha="right"
            )
        _style(ax, _short(panel["column"], 40), "", ylabel)
        if len(panel["curves"]) > 1:
            ax.legend(fontsize=7, frameon=False)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return to_uri(fig)


# --- fairness -----------------------------------------------------------------------------------------
def group_rates(groups: Sequence[str], predicted: np.ndarray, observed: np.ndarray, column: str) -> str:
    n = len(groups)
    fig = figure(max(4.6, 1.2 + 0.9 * n), 3.2)
    ax = fig.add_subplot()
    x = np.arange(n)
    ax.bar(x - 0.2, observed, width=0.4, color=PALETTE[7], label="actual positive rate")
    ax.bar(x + 0.2, predicted, width=0.4, color=PALETTE[0], label="predicted positive rate")
    ax.set_xticks(x, [_short(g, 14) for g in groups], rotation=30 if n > 4 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    _style(ax, f"Positive rates by {_short(column, 30)}", "", "share of rows")
    ax.legend(fontsize=8, frameon=False)
    return to_uri(fig)
