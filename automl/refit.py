"""Refit members: each candidate a deployment option uses, trained once more on every training row.

A bag (k fold models, or one holdout model) predicts k times per row, or was trained on only part of
the rows; its *refit* is one model trained on all rows, at the bag's best iteration scaled to the
row count (boosting rounds grow with the rows a fold did not see: x n / n_train; epochs, trees of a
forest and one-shot models keep their count). A refit model has no out-of-fold predictions of its
own, so the validation score of a refit option is *estimated* by its bag's (:attr:`Refitter.estimate`
says which, in the log, ``run.json`` and the leaderboard).

``EnsembleConfig.refit``: "auto" refits a candidate only when the expected time (the bag's
training time grown to the rows and the count of one model, x ``REFIT_TIME_FACTOR``) fits before
the deadline; ``True`` always refits; ``False`` never does. Each candidate is refit at most once,
however many options use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.exceptions import ConfigError
from automl.models.base import FittedModel, get_family
from automl.reserve import SearchReserve
from automl.training import CandidateResult, TrialData, refit_full

if TYPE_CHECKING:
    from automl.options import Candidate

logger = logging.getLogger(__name__)

REFIT_SUFFIX = "_refit"


class Refitter:
    """Refit models of the candidates, trained on demand and kept for every option that uses them."""

    def __init__(
        self, data: TrialData, mode: bool | str, *, deadline: float | None = None, threads: int | None = None
    ) -> None:
        """``threads``: the refits' (None: the trials' count, ``data.task.num_threads``). They run
        after the search, in this process, when the trials' cores are free again."""
        self.data, self.mode, self.deadline = data, mode, deadline
        self._fit_data = data
        if threads is not None:
            self._fit_data = replace(data, task=replace(data.task, num_threads=threads))
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
        return sum(
            expected_refit_s(c.result.family, c.result.fit_time_s, self.growth, self.scale)
            for c in cands
            if c.name not in self.models
        )

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
            self.models[cand.name] = refit_full(get_family(res.family), res.config, self._fit_data, n_iter)
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


#: expected refit time over the bag's recorded training time grown to every row and one model.
#: Below 1: a bag's time also holds what a refit does not do (a validation prediction after every
#: step, the rounds trained past the best one before early stopping). Measured on 60 s fits of
#: adult, diamonds, bike_sharing and california_housing (LightGBM and XGBoost, 5-fold): a refit
#: took 0.35-0.46 of the bag's time so grown on one thread. On two threads (the ten shared tables'
#: 60 s fits of 2026-12-04, 20 refits): 0.41-1.12, median 0.65, so 0.8 covers most refits, not all;
#: a refit that runs over takes its time from the options' measurement, not from the search.
REFIT_TIME_FACTOR = 0.8


def refit_growth(data: TrialData) -> float:
    """Expected refit time over the recorded training time of all folds: every row instead of
    one fold's training rows, once instead of once per fold, times ``REFIT_TIME_FACTOR``."""
    return REFIT_TIME_FACTOR * row_scale(data) / max(1, len(data.folds))


#: the search runs at least this share of its time before the time kept for refitting may end it
REFIT_MIN_SEARCH_SHARE = 0.5
#: time is kept for the refit of this many best candidates, whatever their family: a refit single
#: model is the fastest option, and the refit ensemble needs its members refit too, which at 60 s
#: are usually the three best candidates, often two of one family (bike_sharing: two LightGBM
#: bags and an extra-trees bag; nlswork: two LightGBM and an XGBoost). Time kept for the best
#: candidate of each of the two best families had left one of them unrefit on both tables.
REFIT_CANDIDATES = 3


@dataclass(kw_only=True)
class RefitReserve(SearchReserve):
    """Time after the search for refitting its best candidates on every row, so that a fit with a
    time limit offers refit options (one model per member: the fast ones to deploy) instead of
    skipping them for want of a few seconds.

    It ends the search once ``end`` (when the refits must start at the latest, ensembling
    included) minus the expected refit time of the ``REFIT_CANDIDATES`` best candidates has
    come, but not before ``earliest``, and not when ending now would no longer leave that time
    (``slack``: the time kept for ensembling, which a short ensemble leaves over).

    Measured before it (60 s fits of the shared tables, split seed 0): refits of the best singles
    were skipped on 7 of 10 tables for want of 1-3 s (``refitting would take ~2.8s, 1.4s were
    left``), so the fastest option within 0.1 % of the default was a 5-fold bag."""

    growth: float  # refit time over the bag's recorded training time (refit_growth)
    scale: float  # boosting rounds' growth (row_scale)
    slack: float = 0.0

    @classmethod
    def start(
        cls, data: TrialData, mode: bool | str, *, deadline: float | None, keep_s: float, slack_s: float
    ) -> RefitReserve | None:
        """The reserve of a search starting now and ending at ``deadline`` at the latest, whose
        refits may run until ``keep_s`` after it (None: no time limit, refit off, or a holdout
        search: its candidates are one model each already, and a refit adds rows, not speed; the
        search's time is worth more. Covertype at 60 s, split seed 2: the reserve ended a holdout
        search after 24 of its 37 s, with one config trained on every fold row)."""
        if deadline is None or mode is False or len(data.folds) < 2:
            return None
        return cls.over(data, deadline=deadline, keep_s=keep_s, slack_s=slack_s)

    @classmethod
    def over(cls, data: TrialData, *, deadline: float, keep_s: float, slack_s: float, **fields: Any) -> Any:
        """The reserve (of this class, with its own ``fields``) of a search over ``data`` starting
        now and ending at ``deadline`` at the latest."""
        now = time.time()
        return cls(
            growth=refit_growth(data),
            scale=row_scale(data),
            end=deadline + keep_s,
            earliest=now + REFIT_MIN_SEARCH_SHARE * max(0.0, deadline - now),
            slack=slack_s,
            **fields,
        )

    def need_s(self) -> float | None:
        """Expected seconds to refit the best candidates, completed or still training (with their
        time so far; None: none completed yet)."""
        if not self.completed:
            return None
        top = sorted([*self.completed, *self.running.values()], key=lambda c: -c[0])[:REFIT_CANDIDATES]
        return sum(expected_refit_s(family, fit_s, self.growth, self.scale) for _, fit_s, family in top)

    def worth(self, need: float, now: float) -> bool:
        return now + need <= self.end + self.slack  # ending now still leaves the time

    def because(self, need: float) -> str:
        return f"time kept for refitting the best candidates on every row (~{need:.1f}s expected)"


def expected_refit_s(family: str, fit_time_s: float, growth: float, scale: float) -> float:
    """Seconds to refit a candidate whose bag trained for ``fit_time_s``: ``growth`` (refit_growth),
    and for boosting families, whose rounds grow with the rows, ``scale`` (row_scale) too."""
    return fit_time_s * growth * (scale if _scales_iterations(family) else 1.0)


def _scales_iterations(family: str) -> bool:
    try:
        return bool(getattr(get_family(family), "refit_scales_iterations", False))
    except ConfigError:  # a family this process does not know: as boosting, the longer estimate
        return True
