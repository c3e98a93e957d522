"""Greedy weighted ensemble selection (Caruana et al. 2004) over out-of-fold predictions.

Forward selection with replacement: each round adds the member whose inclusion gives the best
metric of the averaged predictions; weights are how often each member was picked. Members never
picked get weight zero and are dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.metrics import Metric


@dataclass
class EnsembleResult:
    weights: np.ndarray  # one per candidate, summing to 1
    score: float  # metric of the weighted out-of-fold predictions
    trajectory: list[float]  # score after each round
    rounds: int  # rounds run (fewer than asked when the deadline came first)


def fold_scores(oof: np.ndarray, data: Any, metric: Metric) -> list[float]:
    """``metric`` of ``oof`` on each validation fold of ``data`` (a TrialData)."""
    return [metric.score(data.y[va], oof[va]) for _, va in data.folds]


def combine(preds: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    out = np.zeros_like(preds[0], dtype=float)
    for p, w in zip(preds, weights):
        if w:
            out += w * p
    return out


def greedy_ensemble(
    preds: list[np.ndarray],
    y: np.ndarray,
    metric: Metric,
    *,
    size: int = 25,
    mask: np.ndarray | None = None,
    deadline: float | None = None,
) -> EnsembleResult:
    """Select weights for ``preds`` (standardised out-of-fold predictions) maximising ``metric``.

    ``mask`` restricts scoring to rows that have out-of-fold predictions. After ``deadline``
    (``time.time()``) no new round starts: the best weights found so far are returned.
    """
    if not preds:
        raise ValueError("greedy_ensemble needs at least one candidate")
    if mask is not None:
        preds = [p[mask] for p in preds]
        y = y[mask]
    counts = np.zeros(len(preds), dtype=int)
    running = np.zeros_like(preds[0], dtype=float)
    trajectory: list[float] = []
    best_counts, best_obj = None, -np.inf
    rounds = 0
    for round_ in range(1, size + 1):
        if deadline is not None and round_ > 1 and time.time() >= deadline:
            break
        rounds = round_
        scores = []
        for p in preds:
            avg = (running + p) / round_
            scores.append(metric.objective(metric.score(y, avg)))
        j = int(np.argmax(scores))  # ties: the earlier (better-ranked) candidate
        counts[j] += 1
        running += preds[j]
        trajectory.append(metric.from_objective(scores[j]))
        if scores[j] > best_obj:
            best_obj, best_counts = scores[j], counts.copy()
    weights = best_counts / best_counts.sum()
    return EnsembleResult(
        weights=weights, score=metric.from_objective(best_obj), trajectory=trajectory, rounds=rounds
    )
