"""A one-line-per-event progress view of the search (finished trials, best so far, time left),
emitted on the ``automl.progress`` logger; the CLI shows it, a library user opts in."""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.tune import Callback

from automl.trials import is_candidate, is_final

logger = logging.getLogger("automl.progress")


class ProgressCallback(Callback):
    def __init__(self, *, metric_name: str, greater_is_better: bool, deadline: float | None) -> None:
        self.metric_name = metric_name
        self.sign = 1.0 if greater_is_better else -1.0
        self.deadline = deadline
        self.best: float | None = None
        self.finished = 0
        self.failed = 0
        self.last: dict[str, dict[str, Any]] = {}
        #: trial id -> [start, end] wall-clock times seen by the driver
        self.times: dict[str, list[float | None]] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.times.setdefault(trial.trial_id, [time.time(), None])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[trial.trial_id] = result

    def _end(self, trial: Any) -> None:
        self.times.setdefault(trial.trial_id, [time.time(), None])[1] = time.time()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)
        self.finished += 1
        result = self.last.get(trial.trial_id, {})
        score = result.get("score")
        lower = is_final(result) and not is_candidate(result)  # a lower rung of row fidelity
        what = f"rung {result.get('rung', 0) + 1}" if lower else "done" if is_final(result) else "stopped"
        better = score is not None and (self.best is None or self.sign * score > self.sign * self.best)
        if better and not lower:
            self.best = score
        self._emit(trials, trial, what, score)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial)
        self.failed += 1
        self._emit(trials, trial, "FAILED", None)

    def _emit(self, trials: list, trial: Any, what: str, score: float | None) -> None:
        running = sum(1 for t in trials if t.status == "RUNNING")
        left = f"{max(0.0, self.deadline - time.time()):.0f}s left" if self.deadline else ""
        family = trial.config.get("family") or trial.config.get("candidate", {}).get("family", "?")
        best = f"{self.best:.5g}" if self.best is not None else "-"
        here = f"{score:.5g}" if score is not None else "-"
        logger.info(
            "trial %s %-8s %-7s %s=%s | finished %d, failed %d, running %d | best %s | %s",
            trial.trial_id,
            family,
            what,
            self.metric_name,
            here,
            self.finished,
            self.failed,
            running,
            best,
            left,
        )
