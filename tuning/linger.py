"""Ending a search without waiting for the trials Tune stopped in the middle of a step.

When the search's stopper has Tune stop the trials still running (the time limit, or a wrap-up
whose grace is over), Tune asks each trial's actor to stop and, at the end of the experiment,
waits for the actors to do so: up to 5 s, then until 10 s after its request, before it kills them
(Ray 2.60, ``TuneController._cleanup_trials``, ``_actor_force_cleanup_timeout = 10``). An actor
busy in a long step (a forest or CatBoost fit, an MLP epoch) takes the request only once its
step ends, so the search returned up to 10 s after it was stopped: in a 60 s fit of car (split
seed 0, 2026-12-04) 9.5 s went between Tune's last write and the search's end, and the fit had no
time left to measure its deployment options or write its report. A trial Tune stopped keeps no
model (its record is "stopped", without a checkpoint), so its actor is killed at once instead.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune import Callback

logger = logging.getLogger(__name__)


class EndStoppedTrials(Callback):
    """Kills the actor of each trial that Tune stopped while it was running, in the step Tune
    stopped it. ``stopper``: the search's :class:`tuning.stoppers.SearchStopper`; trials that end
    by themselves (a final result, ``done``) or on their wrap-up flag keep their actors, whose
    saved models the search uses."""

    def __init__(self, stopper: Any) -> None:
        self.stopper = stopper
        self.actors: dict[str, Any] = {}  # trial id -> actor, of the trials running at the step's start
        self.killed: list[str] = []

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self.actors = {
            t.trial_id: t.temporary_state.ray_actor
            for t in trials
            if t.status == "RUNNING" and t.temporary_state.ray_actor is not None
        }

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.actors or not self.stopper.stopping():
            return
        import ray

        for trial in trials:
            actor = self.actors.get(trial.trial_id)
            if actor is None or trial.status != "TERMINATED" or (trial.last_result or {}).get("done"):
                continue
            try:
                ray.kill(actor, no_restart=True)
                self.killed.append(trial.trial_id)
                logger.info("trial %s: stopped in the middle of a step; its actor was ended", trial.trial_id)
            except Exception as exc:  # noqa: BLE001 - Tune still kills it after its own wait
                logger.debug("could not end the actor of trial %s: %s", trial.trial_id, exc)
        self.actors = {}
