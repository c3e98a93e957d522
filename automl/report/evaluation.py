"""Evaluation of the chosen model on its out-of-fold predictions: curves, confusion matrices and
scores, as plain numbers (plots and HTML are made elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm

#: bins of the calibration curve (equal-frequency, so every point has the same support)
CALIBRATION_BINS = 10


@dataclass
class BinaryEval:
    threshold: float
    positive: Any
    fpr: np.ndarray
    tpr: np.ndarray
    roc_auc: float
    precision_curve: np.ndarray
    recall_curve: np.ndarray
    pr_auc: float
    average_precision: float
    confusion: np.ndarray  # rows: true (negative, positive); columns: predicted
    scores: dict[str, float]
    calibration: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class MulticlassEval:
    confusion: np.ndarray
    per_class: list[dict[str, Any]]
    scores: dict[str, float]


@dataclass
class RegressionEval:
    y: np.ndarray
    pred: np.ndarray
    residuals: np.ndarray
    scores: dict[str, float]


def evaluate_binary(y: np.ndarray, p_pos: np.ndarray, threshold: float, positive: Any) -> BinaryEval:
    """``y``: 0/1 codes; ``p_pos``: predicted probability of code 1; labels are ``p_pos >= threshold``."""
    fpr, tpr, _ = skm.roc_curve(y, p_pos)
    prec, rec, _ = skm.precision_recall_curve(y, p_pos)
    pred = (p_pos >= threshold).astype(int)
    cm = skm.confusion_matrix(y, pred, labels=[0, 1])
    scores = {
        "roc_auc": float(skm.roc_auc_score(y, p_pos)) if len(np.unique(y)) == 2 else float("nan"),
        "pr_auc": float(skm.auc(rec, prec)),
        "average_precision": float(skm.average_precision_score(y, p_pos)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "brier": float(skm.brier_score_loss(y, p_pos)),
        "log_loss": float(skm.log_loss(y, np.clip(p_pos, 1e-15, 1 - 1e-15), labels=[0, 1])),
    }
    return BinaryEval(
        threshold,
        positive,
        fpr,
        tpr,
        scores["roc_auc"],
        prec,
        rec,
        scores["pr_auc"],
        scores["average_precision"],
        cm,
        scores,
        calibration(y, p_pos),
    )


def calibration(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, np.ndarray]:
    """Mean predicted probability vs observed frequency in equal-frequency bins."""
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, max(1, len(p)))) if len(g)]
    return {
        "predicted": np.array([p[g].mean() for g in groups]),
        "observed": np.array([y[g].mean() for g in groups]),
        "count": np.array([len(g) for g in groups]),
    }


def evaluate_multiclass(y: np.ndarray, proba: np.ndarray, classes: list[Any]) -> MulticlassEval:
    k = len(classes)
    pred = proba.argmax(axis=1)
    cm = skm.confusion_matrix(y, pred, labels=list(range(k)))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    per_class = [
        {
            "class": classes[i],
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
            "predicted": int(cm[:, i].sum()),
        }
        for i in range(k)
    ]
    scores = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "f1_macro": float(skm.f1_score(y, pred, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=list(range(k)))),
    }
    return MulticlassEval(cm, per_class, scores)


def evaluate_regression(y: np.ndarray, pred: np.ndarray) -> RegressionEval:
    resid = y - pred
    scores = {
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "mae": float(np.mean(np.abs(resid))),
        "r2": float(skm.r2_score(y, pred)),
        "median_abs_error": float(np.median(np.abs(resid))),
        "mean_residual": float(resid.mean()),
    }
    return RegressionEval(y, pred, resid, scores)


def best_over_time(board: Any, greater_is_better: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per family: the best validation score among trials finished by each trial's end time,
    as ``(end_s, best_so_far)``. Failed trials and trials without times are left out."""
    rows = board[board["family"].ne("ensemble") & board["status"].isin(["completed", "stopped"])]
    rows = rows.dropna(subset=["end_s", "score_val"]).sort_values("end_s")
    out = {}
    for fam, g in rows.groupby("family", sort=True):
        s = g["score_val"].to_numpy(float)
        best = np.maximum.accumulate(s) if greater_is_better else np.minimum.accumulate(s)
        out[str(fam)] = (g["end_s"].to_numpy(float), best)
    return out
