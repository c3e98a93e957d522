"""Refit members: each candidate a deployment option uses, trained once more on every training row.

A bag (k fold models, or one holdout model) predicts k times per row, or was trained on only part of
the rows; its *refit* is one model trained on all rows, at the bag's best iteration scaled to the
row count (boosting rounds grow with the rows a fold did not see: x n / n_train; epochs, trees of a
forest and one-shot models keep their count). A refit model has no out-of-fold predictions of its
own, so the validation score of a refit option is *estimated* by its bag's (:attr:`Refitter.estimate`
says which, in the log, ``run.json`` and the leaderboard).

``EnsembleConfig.refit``: "auto" refits a candidate only when the expected time (the bag's training
time grown to the rows and the count of one model, +20 %) fits before the deadline; ``True`` always
refits; ``False`` never does. Each candidate is refit at most once, however many options use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.models.base import FittedModel, get_family
from automl.training import CandidateResult, TrialData, refit_full

if TYPE_CHECKING:
    from automl.options import Candidate

logger = logging.getLogger(__name__)

REFIT_SUFFIX = "_refit"


class Refitter:
    """Refit models of the candidates, trained on demand and kept for every option that uses them."""

    def __init__(self, data: TrialData, mode: bool | str, *, deadline: float | None = None) -> None:
        self.data, self.mode, self.deadline = data, mode, deadline
        self.scale = row_scale(data)
        self.growth = refit_growth(data)
        self.models: dict[str, FittedModel] = {}
        self.notes: dict[str, str] = {}  # candidate -> how it was refit (rows, iterations, seconds)

    @property
    def enabled(self) -> bool:
        return self.mode is not False

    @property
    def estimate(self) -> str:
        """How a refit option's validation score is estimated."""
        k = len(self.data.folds)
        source = (
            f"its {k}-fold bag's out-of-fold score"
            if k > 1
            else "the validation score of its holdout-trained model"
        )
        return f"estimated by {source} (a model refit on every row has no out-of-fold predictions)"

    def iterations(self, res: CandidateResult) -> int:
        if getattr(get_family(res.family), "refit_scales_iterations", False):
            return max(1, int(round(res.best_iteration * self.scale)))
        return max(1, int(res.best_iteration))

    def expected_s(self, cands: Sequence[Candidate]) -> float:
        """Seconds to refit the candidates not refit yet."""
        total = 0.0
        for c in cands:
            if c.name in self.models:
                continue
            scales = getattr(get_family(c.result.family), "refit_scales_iterations", False)
            total += c.result.fit_time_s * self.growth * (self.scale if scales else 1.0)
        return total

    def affordable(self, cands: Sequence[Candidate], deadline: float | None) -> tuple[bool, str]:
        """Whether refitting ``cands`` fits before ``deadline`` (always under refit=True), and why."""
        need = self.expected_s(cands)
        if self.mode is True or deadline is None or need == 0:
            return True, f"refitting takes ~{need:.1f}s"
        left = deadline - time.time()
        if need <= left:
            return True, f"refitting takes ~{need:.1f}s, {left:.1f}s are left"
        return (
            False,
            f"refitting would take ~{need:.1f}s, {max(0.0, left):.1f}s were left; refit=True forces it",
        )

    def model(self, cand: Candidate) -> FittedModel:
        if cand.name not in self.models:
            res, t = cand.result, time.time()
            n_iter = self.iterations(res)
            self.models[cand.name] = refit_full(get_family(res.family), res.config, self.data, n_iter)
            scaled = (
                f" (the bag's {res.best_iteration} x {self.scale:.2f})"
                if n_iter != res.best_iteration
                else ""
            )
            self.notes[cand.name] = f"{n_iter} iterations{scaled}, {time.time() - t:.1f}s"
            logger.info("%s: refit on all %d rows: %s", cand.name, len(self.data.y), self.notes[cand.name])
        return self.models[cand.name]

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "score_estimate": self.estimate, "members": dict(self.notes)}


def row_scale(data: TrialData) -> float:
    """All training rows over the mean training rows of a fold (1.25 for 5-fold or a 20 % holdout)."""
    n_train = np.mean([len(tr) for tr, _ in data.folds]) if data.folds else len(data.y)
    return float(len(data.y) / max(1.0, float(n_train)))


def refit_growth(data: TrialData) -> float:
    """Expected refit time over the recorded training time of all folds: every row instead of
    one fold's training rows, once instead of once per fold, plus a 20 % margin."""
    return 1.2 * row_scale(data) / max(1, len(data.folds))
