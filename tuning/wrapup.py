"""A search-wide "wrap up now" flag that running trials read between their steps.

When the search is ended early (the time kept for what follows it: the refits, a streaming fit's
finals; a target score; patience), Tune would stop the running trials and drop what they had
trained. In the committed three-seed 60 s bench (ten tables) 18 trials were dropped so (the
logs' leaderboards, top rows), some as good as the chosen ensemble's best member:
california_housing, seed 1, an XGBoost config at 45,388 RMSE when it was stopped, against 44,706
for the ensemble. Instead, the driver raises this flag and the searcher launches no more trials;
each running trial reads the flag after its next step and ends as it does at its deadline: with
its best step, its models saved, so it can join the ensemble.

The flag lives in Ray's GCS key-value store (``ray.experimental.internal_kv``, which Ray's own
libraries use for small cluster-wide values), so trials on every node read it. A trial looks it
up at most every ``POLL_S``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

NAMESPACE = "automl_wrapup"
#: seconds between a trial's lookups of the flag (one GCS round trip each)
POLL_S = 0.25


@dataclass(frozen=True)
class WrapUpFlag:
    """The flag of one search; a plain value, handed to its trials with their settings."""

    key: str

    @classmethod
    def new(cls) -> WrapUpFlag:
        return cls(f"search-{uuid.uuid4().hex}")

    def raise_flag(self) -> None:
        from ray.experimental.internal_kv import _internal_kv_put

        _internal_kv_put(self.key, b"1", overwrite=True, namespace=NAMESPACE)

    def ending(self, searcher: Any) -> Callable[[], None]:
        """What ends the search early (the stopper calls it): ``searcher.close()`` (a
        :class:`tuning.budget.BudgetGuard`: no more trials), then the flag raised."""

        def end() -> None:
            searcher.close()
            self.raise_flag()

        return end

    def clear(self) -> None:
        """Removes the flag; never raises (it runs after the search, whatever its outcome)."""
        from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_initialized

        try:
            if _internal_kv_initialized():
                _internal_kv_del(self.key, namespace=NAMESPACE)
        except Exception as exc:  # noqa: BLE001 - a left-over key of a few bytes is harmless
            logger.debug("could not remove the wrap-up flag %s: %s", self.key, exc)

    def is_raised(self) -> bool:
        from ray.experimental.internal_kv import _internal_kv_exists, _internal_kv_initialized

        return _internal_kv_initialized() and bool(_internal_kv_exists(self.key, namespace=NAMESPACE))

    def reader(self, poll_s: float = POLL_S) -> Callable[[], bool]:
        """``raised() -> bool`` for a trial's training loop: looks the flag up at most every
        ``poll_s`` seconds, and once raised it stays raised. A failed lookup reads as not raised
        (the trial still ends at its deadline)."""
        state = {"next": 0.0, "up": False}

        def raised() -> bool:
            now = time.monotonic()
            if not state["up"] and now >= state["next"]:
                state["next"] = now + poll_s
                try:
                    state["up"] = self.is_raised()
                except Exception as exc:  # noqa: BLE001 - a GCS hiccup must not fail the trial
                    logger.debug("wrap-up flag lookup failed: %s", exc)
            return state["up"]

        return raised
