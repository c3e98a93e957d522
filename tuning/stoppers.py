"""Completion criteria beyond Tune's own (trial count, time budget): a target score and a
no-improvement patience, counted on trials that can join the ensemble (not the lower rungs of
row fidelity), and the time kept for what follows the search: a streaming fit's final fits
(:class:`tuning.distributed.reserve.FinalsReserve`) or refitting the best candidates on every row
(:class:`automl.refit.RefitReserve`). The stopper remembers why it ended the search."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback, Stopper

from automl.trials import is_candidate
from tuning.space import unflatten


class SearchStopper(Stopper):
    def __init__(self, *, target_objective: float | None, patience: int | None, reserve: Any = None) -> None:
        self.target = target_objective
        self.patience = patience
        self.reserve = reserve  # FinalsReserve or RefitReserve (None: no time to keep)
        self.best = float("-inf")
        self.since_best = 0
        self.reason: str | None = None
        self.ended_at: float | None = None  # time.time() when a reason first ended the search

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not is_candidate(result):  # a lower rung of row fidelity scores a sample: not comparable
            return False
        objective = float(result.get("objective", float("-inf")))
        if objective > self.best:
            self.best, self.since_best = objective, 0
        else:
            self.since_best += 1
        if self.target is not None and objective >= self.target and self.reason is None:
            self.reason = "target score reached"
        if self.patience is not None and self.since_best >= self.patience and self.reason is None:
            self.reason = f"no improvement in {self.patience} trials"
        return False

    def stop_all(self) -> bool:
        if self.reason is None and self.reserve is not None:
            self.reason = self.reserve.reason()
        if self.reason is not None and self.ended_at is None:
            self.ended_at = time.time()
        return self.reason is not None

    def ended(self) -> tuple[float, str] | None:
        """When and why this stopper ended the search (None: it did not)."""
        return None if self.reason is None or self.ended_at is None else (self.ended_at, self.reason)


class ReserveWatch(Callback):
    """Hands each completed trial's last result to the reserve (:class:`SearchStopper`'s). Only
    once the trial completed: Tune saves a reported checkpoint in a task of its own after the
    result, and a search stopped on the result itself would drop that save, and with it the model
    of the very trial whose final the time was kept for."""

    def __init__(self, reserve: Any) -> None:
        self.reserve = reserve

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if is_candidate(result):
            self.reserve.observe(unflatten(trial.config)[0], result)
