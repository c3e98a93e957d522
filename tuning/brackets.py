"""Synchronous HyperBand and BOHB schedulers whose brackets fit the trial budget.

Ray's ``HyperBandScheduler`` (and ``HyperBandForBOHB``) gives bracket ``s`` room for
``n0 = ceil(s_max_1 / (s + 1) * eta**s)`` trials (81 for BOHB's first bracket at max_t=81, eta=3),
and its successive halving keeps ``ceil(n / eta)`` where ``n`` is that room, not the trials the
bracket holds. A search with fewer trials than the room therefore prunes nothing, yet pauses each
trial at every rung; once the searcher has no more trials to give, Tune does not keep a paused
trial's actor, so each resume starts a new worker process (about 4 s of CPU for the model
libraries' imports on the 2-core machine this was measured on). The 3-trial BOHB search of the
tests took 26.6 s there, 9.6 s with the brackets below; about 5 s for ASHA.

Here a bracket's room is at most the trials the budget has left when the bracket opens, so the
last bracket of a small budget halves the trials it holds. With an unbounded budget (a time
limit) the brackets are Ray's own.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import HyperBandForBOHB, HyperBandScheduler
from ray.tune.schedulers.hyperband import _Bracket


def bracket_room(n0: int, max_trials: int, added: int) -> int:
    """The trials a bracket opening after ``added`` trials may hold: Ray's ``n0``, or fewer when
    the budget has fewer left (at least one: a bracket opens only for a trial being added)."""
    return max(1, min(n0, max_trials - added))


class _BudgetedBrackets:
    """Mixin over a Ray HyperBand scheduler; ``max_trials`` is the search's trial budget."""

    def __init__(self, *args: Any, max_trials: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_trials = max_trials
        self._seen: set[str] = set()  # trials added so far (a retried trial is added again)

    @property
    def _added(self) -> int:
        return len(self._seen)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)  # may open a bracket, seeing _added before
        self._seen.add(str(getattr(trial, "trial_id", trial)))

    def _create_bracket(self, s: int) -> _Bracket:
        # the arguments of Ray's own _create_bracket, with the room capped
        return _Bracket(
            time_attr=self._time_attr,
            max_trials=bracket_room(self._get_n0(s), self._max_trials, self._added),
            init_t_attr=self._get_r0(s),
            max_t_attr=self._max_t_attr,
            eta=self._eta,
            s=s,
            stop_last_trials=self._stop_last_trials,
        )


class BudgetedHyperBand(_BudgetedBrackets, HyperBandScheduler):
    """Ray's synchronous HyperBand, brackets capped at the trials left."""


class BudgetedBOHB(_BudgetedBrackets, HyperBandForBOHB):
    """Ray's HyperBandForBOHB, brackets capped at the trials left."""


def budgeted(bohb: bool, *, metric: str, mode: str, max_t: int, eta: int, max_trials: int) -> Any:
    """The scheduler of a HyperBand (``bohb=False``) or BOHB search over ``max_t`` steps."""
    cls = BudgetedBOHB if bohb else BudgetedHyperBand
    return cls(
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=max_t,
        reduction_factor=eta,
        max_trials=max_trials,
    )
