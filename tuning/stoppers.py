"""Completion criteria beyond Tune's own (trial count, time budget): a target score and a
no-improvement patience, counted on trials that can join the ensemble (not the lower rungs of
row fidelity). The stopper remembers why it ended the search."""

from __future__ import annotations

from typing import Any

from ray.tune import Stopper

from automl.trials import is_candidate


class SearchStopper(Stopper):
    def __init__(self, *, target_objective: float | None, patience: int | None) -> None:
        self.target = target_objective
        self.patience = patience
        self.best = float("-inf")
        self.since_best = 0
        self.reason: str | None = None

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
        return self.reason is not None
