"""Probability calibration of a classifier's final output: temperature scaling (one parameter T
dividing the log-probabilities), fitted on out-of-fold predictions.

Whether it helps is judged by cross-fitting: T is fitted on the other folds' rows and scored on
each fold's rows, so the improvement is not measured on the rows it was fitted to. Temperature
scaling never changes the arg-max class or the ranking of rows, so accuracy and ROC AUC are
unaffected; it matters for log-loss and for calibration curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from automl.problem import ProblemType

_EPS = 1e-12
#: keep calibration only when cross-fitted log-loss improves by more than this share
MIN_GAIN = 0.005


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0))))


def apply_temperature(proba: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.clip(proba, _EPS, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    res = minimize_scalar(
        lambda t: _log_loss(y, apply_temperature(proba, t)), bounds=(0.05, 20.0), method="bounded"
    )
    return float(res.x)


def apply_calibration(out: np.ndarray, calibration: dict[str, Any], problem: ProblemType) -> np.ndarray:
    if calibration.get("method") == "temperature" and problem.is_classification:
        return apply_temperature(out, float(calibration["temperature"]))
    return out


def choose_calibration(
    y: np.ndarray, oof: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], problem: ProblemType
) -> tuple[dict[str, Any] | None, str]:
    """Return (calibration or None, the reason). ``oof`` holds out-of-fold probabilities."""
    if not problem.is_classification:
        return None, "regression: nothing to calibrate"
    rows = np.concatenate([va for _, va in folds])
    before = _log_loss(y[rows], oof[rows])
    if len(folds) < 2:
        return None, "a single validation fold: no rows left to judge calibration honestly"
    crossed = np.empty_like(oof)
    for i, (_, va) in enumerate(folds):
        other = np.concatenate([v for j, (_, v) in enumerate(folds) if j != i])
        crossed[va] = apply_temperature(oof[va], fit_temperature(y[other], oof[other]))
    after = _log_loss(y[rows], crossed[rows])
    t = fit_temperature(y[rows], oof[rows])
    if after < before * (1 - MIN_GAIN):
        return (
            {"method": "temperature", "temperature": t, "log_loss_before": before, "log_loss_after": after},
            f"temperature scaling (T={t:.3f}) lowers cross-fitted log-loss {before:.4f} -> {after:.4f}",
        )
    return None, f"temperature scaling would not help (cross-fitted log-loss {before:.4f} -> {after:.4f})"
