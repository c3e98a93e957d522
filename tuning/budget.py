"""BudgetGuard: a searcher wrapper that only launches trials that can finish in the time left.

The search's time limit (``SearchStopper.hard_end``) stops whatever runs, and trials wrap up at the
deadline (see ``automl.training``); neither stops the search from *starting* a trial in the last
seconds, which only yields a half-trained model. The guard estimates how long a suggested config
will take: the median duration of finished trials of its family, or, for a family not seen yet, its
``relative_cost`` times the typical duration per unit of cost seen so far (FLAML-style cost
awareness). With row fidelity a trial's kind is its family and rung (``lightgbm@0``), whose unit
cost is the family's times the rung's share of the rows. A suggestion that would not finish in the
time left is skipped (the searcher is told it failed, so TPE learns to avoid it) and the next one is
asked for; when nothing fits any more, or time is up, the guard ends the search (``FINISHED``) and
lets running trials finish.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

from ray.tune.search import Searcher

from automl.row_rungs import RUNG_KEY, RowRungPlan
from automl.trials import is_final
from tuning.space import FAMILY_KEY

logger = logging.getLogger(__name__)

#: a config is launched when its estimated duration is at most this share of the time left
#: (a trial that runs into the deadline still ends with its best step, so some overlap is fine)
FIT_SHARE = 1.5
#: suggestions looked at per launch before the search is ended
MAX_SKIPS = 8


class BudgetGuard(Searcher):
    def __init__(
        self,
        searcher: Searcher,
        deadline: float,
        costs: dict[str, float],
        rungs: RowRungPlan | None = None,
    ) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.deadline = deadline
        self.costs = costs  # family -> relative cost
        self.rungs = rungs
        self.started: dict[str, tuple[float, str]] = {}  # Tune trial id -> (start, family)
        self.alias: dict[str, str] = {}  # Tune trial id -> the id the wrapped searcher knows it by
        self.durations: dict[str, list[float]] = {}
        self.skipped: list[str] = []
        self.finished_early = False
        self.closed = False  # the search was ended: no more trials (see close)

    def unit_cost(self, kind: str) -> float:
        family, _, rung = kind.partition("@")
        share = self.rungs.share(int(rung)) if rung and self.rungs is not None else 1.0
        return self.costs.get(family, 1.0) * share

    def estimate(self, kind: str) -> float | None:
        """Expected seconds for a trial of ``kind`` (a family, or family@rung); None before any
        trial finished."""
        if self.durations.get(kind):
            return statistics.median(self.durations[kind])
        # other families on the same rung first: a trial's fixed overhead weighs more on a
        # small rung, so scaling small-rung durations up overestimates a top-rung trial
        rung = kind.partition("@")[2]
        same = {k: ds for k, ds in self.durations.items() if k.partition("@")[2] == rung}
        per_unit = [d / self.unit_cost(k) for k, ds in (same or self.durations).items() for d in ds]
        if not per_unit:
            return None
        return statistics.median(per_unit) * self.unit_cost(kind)

    def close(self) -> None:
        """Launch no more trials: the search was ended while its running trials wrap up."""
        self.closed = True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if getattr(self, "closed", False):  # (a guard pickled before it had the attribute)
            return Searcher.FINISHED
        for attempt in range(MAX_SKIPS):
            left = self.deadline - time.time()
            if left <= 0:
                break
            inner_id = trial_id if attempt == 0 else f"{trial_id}-skip{attempt}"
            config = self.searcher.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                return config
            family = _family(config)
            expected = self.estimate(family)
            if expected is None or expected <= FIT_SHARE * left:
                self.started[trial_id] = (time.time(), family)
                self.alias[trial_id] = inner_id
                return config
            self.skipped.append(f"{family} (~{expected:.0f}s, {left:.0f}s left)")
            logger.info("skipping a %s config: ~%.0fs expected, %.0fs left", family, expected, left)
            self.searcher.on_trial_complete(inner_id, result=None, error=True)
        self.finished_early = True
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(self.alias.get(trial_id, trial_id), result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.started and not error and is_final(result):
            start, family = self.started[trial_id]
            self.durations.setdefault(family, []).append(time.time() - start)
        self.searcher.on_trial_complete(self.alias.get(trial_id, trial_id), result=result, error=error)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    # Tune saves a wrapper's own state here and the wrapped searcher separately (resume)
    def get_state(self) -> dict:
        return {"durations": self.durations, "finished_early": self.finished_early, "alias": self.alias}

    def set_state(self, state: dict) -> None:
        self.durations = dict(state.get("durations", {}))
        self.finished_early = bool(state.get("finished_early", False))
        self.alias = dict(state.get("alias", {}))


def _family(config: dict[str, Any]) -> str:
    """A config's kind: its family, with ``@rung`` under row fidelity."""
    if "candidate" in config:
        config = config["candidate"]
    family = str(config.get(FAMILY_KEY, "?"))
    return family if config.get(RUNG_KEY) is None else f"{family}@{config[RUNG_KEY]}"
