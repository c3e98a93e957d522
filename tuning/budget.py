"""BudgetGuard: a searcher wrapper that stops launching trials that cannot finish in time.

Tune's ``time_budget_s`` kills whatever runs when it expires; trials themselves wrap up at the
deadline (see ``automl.training``). What neither does is to stop *starting* trials in the last
seconds, which only yields half-trained models. The guard ends the search (``FINISHED``) once the
time left is below half the median duration of the trials completed so far.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

from ray.tune.search import Searcher


class BudgetGuard(Searcher):
    def __init__(self, searcher: Searcher, deadline: float, *, fraction: float = 0.5) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.deadline = deadline
        self.fraction = fraction
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.finished_early = False

    def _too_late(self) -> bool:
        left = self.deadline - time.time()
        if left <= 0:
            return True
        return bool(self.durations) and left < self.fraction * statistics.median(self.durations)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._too_late():
            self.finished_early = True
            return Searcher.FINISHED
        self.started[trial_id] = time.time()
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.started and not error and result and result.get("done_training"):
            self.durations.append(time.time() - self.started[trial_id])
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    # Tune saves a wrapper's own state here and the wrapped searcher separately (resume)
    def get_state(self) -> dict:
        return {"durations": list(self.durations), "finished_early": self.finished_early}

    def set_state(self, state: dict) -> None:
        self.durations = list(state.get("durations", []))
        self.finished_early = bool(state.get("finished_early", False))
