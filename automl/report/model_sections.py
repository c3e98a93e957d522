"""Report sections about the chosen model: evaluation on its out-of-fold predictions and
fairness across a sensitive column (explanations: ``automl.report.explain_sections``)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from automl.problem import ProblemType
from automl.report import evaluation, fairness, plots
from automl.report import html as H
from automl.report.rundata import RunData, class_codes, oof_predictions

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def threshold(run: RunData) -> float:
    """The binary decision threshold on the positive class's probability (0.5: the Predictor
    predicts the more probable class) unless the run recorded another."""
    for source in (run.info, run.predictor.info if run.predictor else {}):
        if isinstance(source.get("threshold"), (int, float)):
            return float(source["threshold"])
    return DEFAULT_THRESHOLD


def evaluation_section(run: RunData) -> str:
    data = oof_predictions(run)
    if data is None or run.predictor is None:
        return H.note(
            "No out-of-fold predictions (validation_sample.parquet) in this run: nothing to evaluate."
        )
    y, pred = data
    intro = H.note(
        f"The chosen model ({run.info.get('chosen')}) on {len(y):,} validation rows: each row is "
        "predicted by the fold model(s) that did not train on it (out-of-fold predictions)."
    )
    ptype = ProblemType(run.problem_type)
    if ptype is ProblemType.BINARY:
        return intro + _binary(run, y, pred)
    if ptype is ProblemType.MULTICLASS:
        return intro + _multiclass(run, y, pred)
    return intro + _regression(y, pred)


def _binary(run: RunData, y: np.ndarray, proba: np.ndarray) -> str:
    classes, t = run.classes, threshold(run)
    ev = evaluation.evaluate_binary(y, proba[:, 1], t, classes[1])
    s = ev.scores
    cards = {
        "ROC AUC": s["roc_auc"],
        "PR AUC": s["pr_auc"],
        "precision": s["precision"],
        "recall": s["recall"],
        "F1": s["f1"],
        "accuracy": s["accuracy"],
        "Brier score": s["brier"],
    }
    figs = H.figures(
        H.img(plots.roc(ev.fpr, ev.tpr, ev.roc_auc), "ROC curve"),
        H.img(
            plots.precision_recall(
                ev.recall_curve, ev.precision_curve, ev.pr_auc, float(y.mean()), (s["recall"], s["precision"])
            ),
            "precision-recall curve",
        ),
        H.img(
            plots.confusion(ev.confusion, classes, f"Confusion matrix at threshold {t:g}"), "confusion matrix"
        ),
        H.img(
            plots.calibration(ev.calibration["predicted"], ev.calibration["observed"]), "calibration curve"
        ),
    )
    text = H.note(
        f"Positive class: {classes[1]!r}. Labels: P({classes[1]}) >= {t:g}. Precision, recall, F1 and "
        "accuracy are at this threshold; the curves cover all thresholds."
    )
    return H.score_cards(cards) + text + figs


def _multiclass(run: RunData, y: np.ndarray, proba: np.ndarray) -> str:
    ev = evaluation.evaluate_multiclass(y, proba, run.classes)
    cards = {k.replace("_", " "): v for k, v in ev.scores.items()}
    figs = H.figures(
        H.img(
            plots.confusion(ev.confusion, run.classes, "Confusion matrix (predicted: most probable class)"),
            "confusion matrix",
        ),
        H.img(plots.per_class_scores(ev.per_class), "per-class scores"),
    )
    table = H.table(pd.DataFrame(ev.per_class), table_id="per-class", sortable=True)
    return H.score_cards(cards) + figs + "<h3>Per class</h3>" + table


def _regression(y: np.ndarray, pred: np.ndarray) -> str:
    ev = evaluation.evaluate_regression(y, pred)
    s = ev.scores
    cards = {
        "RMSE": s["rmse"],
        "MAE": s["mae"],
        "R2": s["r2"],
        "median |error|": s["median_abs_error"],
        "mean residual": s["mean_residual"],
    }
    return H.score_cards(cards) + H.figures(
        H.img(plots.predicted_vs_actual(y, pred), "predicted vs actual"),
        H.img(plots.residuals(pred, ev.residuals), "residuals"),
    )


# --- explanations -----------------------------------------------------------------------------------
def fairness_section(run: RunData, column: str | None) -> str:
    if column is None:
        return H.note(
            "No sensitive column was named. Pass --sensitive-column COLUMN to `automl report` "
            "(or sensitive_column= to run.report()) to see bias metrics across its groups."
        )
    if run.problem_type != ProblemType.BINARY.value:
        return H.note(
            f"Not applicable: the bias metrics (DPPL, DI, recall and accuracy differences) are defined "
            f"here for binary classification; this is a {run.problem_type} problem."
        )
    data = oof_predictions(run)
    if data is None:
        return H.note("No out-of-fold predictions in this run: bias metrics cannot be computed.")
    s = run.sample
    codes = class_codes(s[run.target], run.classes)
    values = s.loc[codes >= 0, column]
    y, proba = data
    t = threshold(run)
    res = fairness.fairness(values, y, proba[:, 1], threshold=t, positive=run.classes[1])
    tab = res.table
    flagged = tab[tab["flags"] != ""]
    body = H.note(
        f"Groups of {column!r} on {len(y):,} out-of-fold predictions; positive label "
        f"{res.positive!r} at threshold {t:g}. Each group (facet d) is compared with all other rows "
        "(a): DPPL = q'a - q'd (difference in positive proportions in predicted labels), "
        "DI = q'd / q'a (disparate impact), RD = recall a - recall d, AD = accuracy a - accuracy d. "
        "Parity: DPPL, RD, AD = 0 and DI = 1."
    )
    for n in res.notes:
        body += H.note(n)
    if len(flagged):
        body += H.note(
            f"{len(flagged)} group(s) flagged: "
            + "; ".join(f"{g} ({f})" for g, f in zip(flagged["group"], flagged["flags"])),
            kind="warn",
        )
    body += H.figures(
        H.img(
            plots.group_rates(
                list(tab["group"]),
                tab["predicted_positive_rate"].to_numpy(),
                tab["actual_positive_rate"].to_numpy(),
                column,
            ),
            "positive rates",
        )
    )
    body += H.table(tab, table_id="fairness", sortable=True)
    return body
