"""The typed boundary between ``automl`` and ``tuning``: what a trial reports, what the search
hands back.

Trial results cross Ray as plain dicts (Tune's ``report`` takes a dict); their keys are the
TypedDicts below, built by the functions here and read through ``is_final`` / ``is_failed`` /
``TrialRecord.from_final``, so no module writes or reads a metric key by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

#: a finished trial's last report carries this key (True); step reports do not
DONE_TRAINING = "done_training"
#: objective reported by a trial whose config the model library rejected: TPE learns to avoid it
FAILED_OBJECTIVE = -1e18


class _StepRequired(TypedDict):
    objective: float  # the metric turned so that higher is better (this step)
    best_objective: float  # best objective so far: what ASHA / HyperBand compare at their rungs
    iteration: int


class StepReport(_StepRequired, total=False):
    """A report after one training step (a few boosting rounds, an epoch)."""

    score: float  # the metric in its own units (mean over folds)
    step: int


class _Rung(TypedDict, total=False):
    """With row fidelity (automl.row_rungs): the rung a trial trained on."""

    rung: int  # 0 = the smallest sample; the top rung is the run's own folds
    rung_rows: int  # training rows of the rung (all folds' at the top rung)
    lower_rung: bool  # True below the top rung: not an ensemble candidate


class FinalReport(_Rung):
    """The last report of a trial that trained to the end (its checkpoint holds the models;
    below the top rung of row fidelity it holds only this report)."""

    objective: float
    best_objective: float
    score: float
    score_std: float
    iteration: int
    fit_time_s: float  # seconds inside the model library, all folds
    trial_wall_s: float
    predict_time_s: float | None  # seconds for the candidate to predict 1,000 rows (None below the top rung)
    stop_reason: str
    library_time_s: float  # training, the predict timing and saving the models
    done_training: bool  # always True here


class FailedReport(TypedDict):
    """A trial whose config the model library rejected: reported, not raised (Tune would retry)."""

    objective: float
    best_objective: float
    failed: bool  # always True here
    error: str
    done_training: bool  # always False here


def failed_report(error: str) -> FailedReport:
    return FailedReport(
        objective=FAILED_OBJECTIVE,
        best_objective=FAILED_OBJECTIVE,
        failed=True,
        error=error,
        done_training=False,
    )


def is_final(result: Mapping[str, Any] | None) -> bool:
    """Whether ``result`` is a trial's final report (it trained to the end)."""
    return bool(result and result.get(DONE_TRAINING))


def is_candidate(result: Mapping[str, Any] | None) -> bool:
    """Whether ``result`` is a final report whose models may join the ensemble (not a lower
    rung of row fidelity, whose score is on a sample and not comparable)."""
    return is_final(result) and not result.get("lower_rung")


def is_failed(result: Mapping[str, Any] | None) -> bool:
    return bool(result and result.get("failed"))


@dataclass
class TrialRecord:
    """One trial of the search as the leaderboard and the ensembler see it."""

    trial_id: str
    family: str
    params: dict[str, Any]
    status: str  # completed | stopped | failed
    score: float | None = None
    score_std: float | None = None
    iteration: int | None = None
    fit_time_s: float | None = None
    library_time_s: float | None = None
    trial_wall_s: float | None = None
    predict_time_s: float | None = None
    stop_reason: str | None = None
    error: str | None = None
    checkpoint: str | None = None  # a local directory with the candidate's models (training.save_result)
    index: int | None = None  # creation order of the trial in the search (1, 2, ...)
    start_offset_s: float | None = None  # seconds after the search started (seen by the driver)
    end_offset_s: float | None = None
    retries: int = 0  # times Tune restarted the trial after a failure (a worker or node died)
    rung: int | None = None  # row fidelity: the rung it trained on (None: row fidelity off)
    rung_rows: int | None = None  # row fidelity: the training rows of that rung

    @property
    def driver_wall_s(self) -> float | None:
        """The trial's wall time as the driver saw it (start to completion)."""
        if self.start_offset_s is None or self.end_offset_s is None:
            return None
        return self.end_offset_s - self.start_offset_s

    def take_final(self, report: Mapping[str, Any]) -> None:
        """Copy the figures of a trial's final report (``FinalReport``) into this record."""
        self.score = report.get("score")
        self.iteration = report.get("iteration")
        self.score_std = report.get("score_std")
        self.fit_time_s = report.get("fit_time_s")
        self.library_time_s = report.get("library_time_s")
        self.trial_wall_s = report.get("trial_wall_s")
        self.predict_time_s = report.get("predict_time_s")
        self.stop_reason = report.get("stop_reason")
        self.rung = report.get("rung", self.rung)
        self.rung_rows = report.get("rung_rows", self.rung_rows)


@dataclass
class SearchOutcome:
    """What ``tuning.run_search`` hands back to the fit."""

    trials: list[TrialRecord]
    ended_because: str
    wall_s: float
    experiment_path: str
    concurrency: int
    strategy: str
    notes: list[str] = field(default_factory=list)

    def completed(self) -> list[TrialRecord]:
        """Trials that trained to the end and left their models."""
        return [r for r in self.trials if r.status == "completed" and r.checkpoint]
