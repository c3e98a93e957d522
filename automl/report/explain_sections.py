"""Report section explaining the chosen model: global importance (exact tree SHAP for tree
models, permutation importance otherwise), a SHAP summary, per-column directions and partial
dependence of the top columns, each sized from the model's measured cost per row."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from automl.metrics import METRICS, resolve_metric
from automl.problem import ProblemType
from automl.report import html as H
from automl.report import plots
from automl.report.contributions import has_contributions, tree_contributions
from automl.report.importance import (
    PDP_GRID,
    partial_dependence,
    pdp_rows,
    permutation_importance,
    predict_seconds_per_row,
)
from automl.report.rundata import RunData, class_codes

logger = logging.getLogger(__name__)

#: rows explained (tree SHAP, permutation importance) at most
EXPLAIN_ROWS = 1000
#: seconds the whole section takes when time is not short; with less left before the fit's
#: deadline, SHAP, permutation importance and partial dependence shrink in proportion
EXPLAIN_FULL_S = 8.0
#: tree SHAP: seconds to aim for, rows at least, rows of the pilot that measures the cost per row
SHAP_SECONDS, SHAP_MIN_ROWS, SHAP_PILOT_ROWS = 2.0, 10, 5
BEESWARM_COLUMNS = 12
PDP_COLUMNS = 4


def explain_rows(run: RunData, seed: int = 0) -> pd.DataFrame | None:
    """Up to ``EXPLAIN_ROWS`` validation rows in a seeded random order, so that any prefix is a
    random sample too (the validation sample is in table order, which may be time order)."""
    if run.sample is None or run.predictor is None:
        return None
    order = np.random.default_rng(seed).permutation(len(run.sample))[:EXPLAIN_ROWS]
    return run.sample.iloc[order].reset_index(drop=True)


def _kinds(run: RunData) -> dict[str, str]:
    return {c.name: c.kind for c in run.predictor.schema.columns}


def _colour(X: pd.DataFrame, columns: list[str], kinds: dict[str, str]) -> np.ndarray:
    """Per column, the rank of each row's value in [0, 1] (NaN for non-numeric columns)."""
    out = np.full((len(X), len(columns)), np.nan)
    for j, c in enumerate(columns):
        if kinds.get(c) == "numeric":
            v = pd.to_numeric(X[c], errors="coerce")
            out[:, j] = v.rank(pct=True).to_numpy(float)
    return out


def _direction(values: pd.Series, shap: np.ndarray, kind: str) -> str:
    if kind != "numeric":
        return ""
    v = pd.to_numeric(values, errors="coerce")
    ok = v.notna().to_numpy() & np.isfinite(shap)
    if ok.sum() < 10 or v[ok].nunique() < 2 or np.std(shap[ok]) == 0:
        return ""
    rho = pd.Series(v[ok].to_numpy()).rank().corr(pd.Series(shap[ok]).rank())
    if abs(rho) < 0.2:
        return f"mixed (rank correlation {rho:+.2f})"
    return f"higher values push {'up' if rho > 0 else 'down'} ({rho:+.2f})"


def explain_section(run: RunData) -> str:
    rows = explain_rows(run)
    if rows is None:
        return H.note("No validation sample or saved model in this run: nothing to explain.")
    pred, kinds = run.predictor, _kinds(run)
    X = run.features(rows)
    left = run.seconds_left()
    scale = 1.0 if left is None else min(1.0, max(0.05, (left - 0.5) / EXPLAIN_FULL_S))
    # the budgets below are sized from the cost per row: a dearer row means fewer rows
    per_row = predict_seconds_per_row(pred, X) / scale
    if all(has_contributions(m) for m in pred.members):
        body, order = _shap(run, X, kinds, scale)
    else:
        logger.info(
            "explaining %s with permutation importance: members %s have no native tree contributions",
            run.info.get("chosen"),
            [m.name for m in pred.members if not has_contributions(m)],
        )
        body, order = _permutation(run, rows, X, per_row)
    panels: list[dict[str, Any]] = []
    n_columns = PDP_COLUMNS if scale >= 0.5 else (2 if scale >= 0.2 else 0)
    n_pdp = pdp_rows(per_row, n_columns)
    for col in order:
        if len(panels) >= n_columns or not _time_for_a_panel(run, per_row * scale * n_pdp * PDP_GRID):
            break
        panel = partial_dependence(pred, X, col, kinds.get(col, ""), n_rows=n_pdp)
        if panel:
            panels.append(panel)
    if panels:
        if pred.problem_type is ProblemType.BINARY:
            ylabel = f"average P({pred.classes[1]})"
        else:
            ylabel = "average probability" if pred.classes else f"average predicted {pred.target}"
        body += (
            "<h3>Partial dependence of the top features</h3>"
            + H.note(
                "The average prediction over sampled rows when the column is set to each value and "
                "every other column keeps its observed value."
            )
            + H.figures(H.img(plots.partial_dependence(panels, ylabel), "partial dependence"))
        )
    return body


#: seconds drawing the partial dependence figure takes (kept free of panels near the deadline)
PDP_DRAW_S = 0.7


def _time_for_a_panel(run: RunData, cost_s: float) -> bool:
    """Whether one more partial dependence panel (``cost_s`` of predictions) and the figure fit
    before the report's deadline (always, without one)."""
    left = run.seconds_left()
    return left is None or left >= cost_s + PDP_DRAW_S


def shap_sample(run: RunData, X: pd.DataFrame, scale: float = 1.0) -> tuple[pd.DataFrame, Any]:
    """Tree SHAP on a prefix of the (already shuffled) rows, sized so that it takes about
    ``SHAP_SECONDS`` x ``scale`` on this machine: at least ``SHAP_MIN_ROWS``, at most all rows (<= 1000).
    A pilot on the first ``SHAP_PILOT_ROWS`` rows measures the cost per row (deep trees in a
    bag of 5 fold models cost tens of milliseconds per row)."""
    pilot = X.iloc[:SHAP_PILOT_ROWS]
    t = time.perf_counter()
    c = tree_contributions(run.predictor, pilot)
    per_row = (time.perf_counter() - t) / max(1, len(pilot))
    budget = SHAP_SECONDS * scale
    # at least SHAP_MIN_ROWS rows when they fit in the budget; when they do not (dear rows, little
    # time left), the pilot's rows are the sample
    floor = SHAP_MIN_ROWS if per_row * SHAP_MIN_ROWS <= budget else len(pilot)
    n = int(min(len(X), max(floor, budget / max(per_row, 1e-9))))
    logger.info("tree SHAP on %d rows (%.1f ms per row)", max(n, len(pilot)), 1000 * per_row)
    if n <= len(pilot):
        return pilot, c
    rest = tree_contributions(run.predictor, X.iloc[len(pilot) : n])
    c = replace(c, values=np.concatenate([c.values, rest.values]), bias=np.concatenate([c.bias, rest.bias]))
    return X.iloc[:n].reset_index(drop=True), c


def _shap(run: RunData, X: pd.DataFrame, kinds: dict[str, str], scale: float) -> tuple[str, list[str]]:
    pred = run.predictor
    X, c = shap_sample(run, X, scale)
    imp = c.mean_abs()  # (outputs, columns)
    total = imp.sum(axis=0)
    order = list(np.argsort(-total))
    names = [c.columns[j] for j in order]
    multiclass = pred.problem_type is ProblemType.MULTICLASS
    stack = {str(k): imp[i, order] for i, k in enumerate(pred.classes)} if multiclass else None
    bars = plots.importance(
        names[:20],
        total[order][:20],
        "Global importance: mean |SHAP| per input column",
        "mean |contribution| to the margin",
        stack={k: v[:20] for k, v in stack.items()} if stack else None,
    )
    if multiclass:
        idx = np.asarray(pred.predict_raw(X)[0]).argmax(axis=1)
        shap = c.values[np.arange(len(X)), idx]
        what = "each row's predicted class"
    else:
        shap = c.values[:, 0]
        what = (
            f"the log-odds of {pred.classes[1]!r}"
            if pred.problem_type is ProblemType.BINARY
            else f"the predicted {pred.target}"
        )
    top = order[:BEESWARM_COLUMNS]
    swarm = plots.beeswarm(
        [c.columns[j] for j in top],
        shap[:, top],
        _colour(X, [c.columns[j] for j in top], kinds),
        "SHAP values per row (colour: value, blue low, red high; grey: category)",
    )
    share = total / total.sum() if total.sum() > 0 else total
    table = pd.DataFrame(
        [
            {
                "column": c.columns[j],
                "kind": kinds.get(c.columns[j], ""),
                "mean |SHAP|": total[j],
                "share": H.percent(share[j]),
                "mean SHAP": float(shap[:, j].mean()),
                "effect": _direction(X[c.columns[j]], shap[:, j], kinds.get(c.columns[j], "")),
            }
            for j in order
        ]
    )
    text = H.note(
        f"Exact tree SHAP values from the models' native contributions on {len(X):,} sampled "
        f"validation rows, in margin space (toward {what}); in the summary plot each dot is one row. "
        f"Features made from one input column (date parts, one-hot levels, text hashes, missing "
        f"indicators) are summed back onto it. Fold models are averaged and ensemble "
        f"members weighted by their ensemble weight ({len(c.members)} tree member(s), "
        f"{c.coverage:.0%} of the weight)."
    )
    body = text + H.figures(H.img(bars, "global feature importance"), H.img(swarm, "SHAP summary"))
    body += "<h3>Per-column SHAP summary</h3>" + H.table(table, table_id="shap", sortable=True)
    return body, names


def _metric(run: RunData) -> Any:
    if run.metric in METRICS:
        return METRICS[run.metric]
    return resolve_metric(None, ProblemType(run.problem_type))[0]


def _permutation(run: RunData, rows: pd.DataFrame, X: pd.DataFrame, per_row: float) -> tuple[str, list[str]]:
    pred = run.predictor
    y = rows[run.target]
    y = class_codes(y, pred.classes) if pred.classes is not None else y.to_numpy(float)
    keep = y >= 0 if pred.classes is not None else np.isfinite(y)
    metric = _metric(run)
    pi = permutation_importance(
        pred, X[keep].reset_index(drop=True), np.asarray(y)[keep], metric, seconds_per_row=per_row
    )
    order = list(np.argsort(-pi.mean))
    names = [pi.columns[j] for j in order]
    fams = sorted({m.family for m in pred.members})
    text = H.note(
        f"The chosen model has members without native tree contributions ({', '.join(fams)}), so "
        f"the whole model is explained by permutation importance: the drop in {metric.name} when one "
        f"column is shuffled ({pi.n_rows:,} rows, {pi.n_repeats} shuffles each). The base score on "
        f"these rows, {pi.base_score:.4g}, is higher than the validation score: the models trained "
        f"on most of them."
    )
    bars = plots.importance(
        names[:20],
        pi.mean[order][:20],
        "Permutation importance",
        f"drop in {metric.name}",
        errors=pi.std[order][:20],
    )
    table = pd.DataFrame({"column": names, "importance": pi.mean[order], "std": pi.std[order]})
    return text + H.figures(H.img(bars, "permutation importance")) + H.table(
        table, table_id="permutation", sortable=True
    ), names


# --- fairness ----------------------------------------------------------------------------------------------
