"""Resuming an interrupted search: ``Tuner.restore`` brings back the interrupted search's stopper,
callbacks and searcher; this fit's replace them or are set on them."""

from __future__ import annotations

import logging
from typing import Any

from tuning.budget import BudgetGuard

logger = logging.getLogger(__name__)


def renewed(tuner: Any, stopper: Any, callbacks: list[Any], *, deadline: float | None = None) -> Any:
    """A restored tuner with this fit's stopper, callbacks and deadline.
    ``Tuner.restore`` brings back the interrupted search's, pickled with their clocks: the
    progress callback, the stopper and the time kept for a streaming final counted from the old
    start, so the reserve never ended a resumed search. Ray 2.60 takes no run config on restore;
    ``fit()`` reads these from the tuner's ``TunerInternal`` (``get_run_config()`` and its tune
    config), which is set here. Tune's controller then also restores the stopper from its
    experiment state (``TuneController.resume`` sets every pickled field, ``_stopper`` included):
    a pickled :class:`SearchStopper` comes back as the live one (:meth:`SearchStopper.live`),
    whose ``hard_end`` is this fit's time limit; a ``time_budget_s`` would come back as Tune's own
    TimeoutStopper with the budget the interrupted search had left, so none is set. The restored
    :class:`BudgetGuard` gets this fit's deadline (none: no limit), and is open again if the
    interrupted search had closed it."""
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_tune_config"):
        logger.warning("the resumed search keeps the interrupted one's callbacks and searcher deadline")
        return tuner
    run_config = internal.get_run_config()
    run_config.stop, run_config.callbacks = stopper, callbacks
    internal._tune_config.time_budget_s = None
    guard = internal._tune_config.search_alg
    if isinstance(guard, BudgetGuard):
        guard.deadline, guard.closed = (deadline if deadline is not None else float("inf")), False
    return tuner


def live_guard(tuner: Any, guard: BudgetGuard | None) -> BudgetGuard | None:
    """The BudgetGuard Tune will ask for trials: the one built here, or on resume the interrupted
    search's, restored with the tuner (:func:`renewed` gives it this fit's deadline)."""
    internal = getattr(tuner, "_local_tuner", None)
    alg = getattr(getattr(internal, "_tune_config", None), "search_alg", None)
    return alg if isinstance(alg, BudgetGuard) else guard
