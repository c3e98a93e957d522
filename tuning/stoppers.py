"""Completion criteria beyond Tune's own (trial count, time budget): a target score and a
no-improvement patience, counted on trials that can join the ensemble (not the lower rungs of
row fidelity), and the time kept for what follows the search: a streaming fit's final fits
(:class:`tuning.distributed.reserve.FinalsReserve`) or refitting the best candidates on every row
(:class:`automl.refit.RefitReserve`). The stopper remembers why it ended the search."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from ray.tune import Callback, Stopper

from automl.row_rungs import RUNG_KEY, RowRungPlan
from automl.trials import is_candidate, is_final
from tuning.space import unflatten

logger = logging.getLogger(__name__)

#: seconds the running trials get to wrap up once the search was ended (a step, the predict timing
#: and saving their models): this share of the search's time, within [1 s, 5 s]; then Tune stops
#: what still runs. The wait comes out of the time after the search: at 30 s, an MLP whose first
#: step took 3.5 s left the deployment options unmeasured, so short fits wait little.
WRAP_GRACE_SHARE, WRAP_GRACE_MIN_S, WRAP_GRACE_MAX_S = 0.05, 1.0, 5.0


def wrap_grace_s(search_s: float) -> float:
    """Seconds a search of ``search_s`` seconds waits for its trials to wrap up."""
    return min(WRAP_GRACE_MAX_S, max(WRAP_GRACE_MIN_S, WRAP_GRACE_SHARE * search_s))


class SearchStopper(Stopper):
    """Ends the search for a target score, patience or the reserve's time. With ``wrap_up`` (it
    raises the trials' wrap-up flag and closes the searcher) the running trials first get up to
    ``grace_s`` to end with their best step (``tuning.wrapup``); Tune ends the search as soon as
    none runs. Without it, Tune stops them at once and drops what they trained."""

    def __init__(
        self,
        *,
        target_objective: float | None,
        patience: int | None,
        reserve: Any = None,
        wrap_up: Callable[[], None] | None = None,
        grace_s: float = WRAP_GRACE_MAX_S,
        hard_end: float | None = None,
    ) -> None:
        self.target = target_objective
        # time.time() at which Tune stops every trial still running (the search's time limit; kept
        # here rather than in Tune's time_budget_s: Tune restores its own TimeoutStopper with the
        # budget an interrupted search had left, where this stopper comes back as the live one)
        self.hard_end = hard_end
        self.patience = patience
        self.reserve = reserve  # FinalsReserve or RefitReserve (None: no time to keep)
        self.wrap_up = wrap_up
        self.grace_s = grace_s
        self.best = float("-inf")
        self.since_best = 0
        self.reason: str | None = None
        self.ended_at: float | None = None  # time.time() when a reason first ended the search
        self.stopped_at: float | None = None  # when Tune was told to stop the trials still running

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

    @contextlib.contextmanager
    def live(self) -> Iterator[SearchStopper]:
        """While the search runs: Tune's controller pickles its stopper into the experiment state
        and, on resume, puts the unpickled copy in place of the stopper it was given (Ray 2.60's
        ``TuneController.__setstate__``); that copy would hold the interrupted search's clock,
        reserve and wrap-up flag. A pickled SearchStopper comes back as this one instead."""
        global _LIVE
        before, _LIVE = _LIVE, self
        try:
            yield self
        finally:
            _LIVE = before

    def __reduce__(self) -> tuple[Any, tuple]:
        # without the wrap-up (a closure over the searcher, which Tune saves on its own): Tune
        # pickles its stopper with every experiment snapshot
        return unpickled_stopper, ({**self.__dict__, "wrap_up": None},)

    def __copy__(self) -> SearchStopper:  # a copy is this stopper, as an unpickled one is
        return self

    def __deepcopy__(self, memo: dict) -> SearchStopper:
        return self

    def stop_all(self) -> bool:
        if self._past_hard_end():
            return True  # the time limit: Tune stops what runs (records say "time limit")
        if self.reason is None and self.reserve is not None:
            self.reason = self.reserve.reason()
        if self.reason is None:
            return False
        if self.ended_at is None:
            self.ended_at = time.time()
            if self.wrap_up is not None:
                try:
                    self.wrap_up()
                    logger.info("search ended (%s): running trials wrap up with their best step", self.reason)
                except Exception as exc:  # noqa: BLE001 - the flag is an extra: end as Tune would
                    logger.warning("search ended (%s); its trials are stopped: %s", self.reason, exc)
                    self.wrap_up = None
        if self.wrap_up is None or time.time() >= self.ended_at + self.grace_s:
            self.stopped_at = self.stopped_at or time.time()
            return True
        return False

    def stopping(self) -> bool:
        """Whether Tune has been told to stop the trials still running (the hard end, or a reason
        whose wrap-up grace is over)."""
        return self.stopped_at is not None or self._past_hard_end()

    def _past_hard_end(self) -> bool:
        return self.hard_end is not None and time.time() >= self.hard_end

    def ended(self) -> tuple[float, str] | None:
        """Why this stopper ended the search, and when it had Tune stop the trials still running:
        infinity when every one wrapped up within the grace, so a trial stopped in the meantime was
        stopped by the scheduler (None: the stopper did not end the search)."""
        if self.reason is None or self.ended_at is None:
            return None
        return (self.stopped_at or float("inf"), self.reason)


class ReserveWatch(Callback):
    """Hands each completed trial's last result to the reserve (:class:`SearchStopper`'s), and
    the step reports of candidates still training (they wrap up and join the ensemble when the
    reserve ends the search). A candidate counts as completed only once its trial completed: Tune
    saves a reported checkpoint in a task of its own after the result, and a search stopped on
    the result itself would drop that save, and with it the model of the very trial whose final
    the time was kept for."""

    def __init__(self, reserve: Any, rungs: RowRungPlan | None = None) -> None:
        self.reserve = reserve
        self.rungs = rungs  # row fidelity: trials below its top rung never join the ensemble

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        lower = self.rungs is not None and self.rungs.is_lower(trial.config.get(RUNG_KEY))
        if not is_final(result) and not lower:
            self.reserve.progress(trial.trial_id, unflatten(trial.config)[0], result)
        # a trial paused by HyperBand gets no callback: it counts again when it reports again
        for t in trials:
            if t.trial_id in self.reserve.running and t.status != "RUNNING":
                self.reserve.running.pop(t.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if is_candidate(result):
            self.reserve.observe(unflatten(trial.config)[0], result, trial.trial_id)
        else:
            self.reserve.observe("", {}, trial.trial_id)  # a lower rung or a failure: no longer running

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.reserve.observe("", {}, trial.trial_id)


#: the stopper of the search running in this process (SearchStopper.live)
_LIVE: SearchStopper | None = None


def unpickled_stopper(state: dict[str, Any]) -> SearchStopper:
    """What an unpickled :class:`SearchStopper` becomes: the running search's in the process that
    runs it, else a copy of the pickled one (read by ``ExperimentAnalysis``, or sent to the Tune
    driver a Ray Client connection runs on the cluster)."""
    if _LIVE is not None:
        return _LIVE
    stopper = SearchStopper.__new__(SearchStopper)
    stopper.__dict__.update(state)
    return stopper
