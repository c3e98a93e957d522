"""Time a search keeps for what follows it: the protocol of :class:`tuning.stoppers.SearchStopper`'s
reserve (``observe`` each completed candidate, ``progress`` each step of one still training,
``reason`` to end the search), shared by
:class:`automl.refit.RefitReserve` (refitting the best candidates on every row) and
:class:`tuning.distributed.reserve.FinalsReserve` (a streaming fit's final fits)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class SearchReserve(ABC):
    """Watches the candidates (the completed ones, the best of each family that counts, and
    those still training) and ends the search once ``end`` minus the time the work after it is
    expected to take (:meth:`need_s`, from the records a subclass needs) has come, not before
    ``earliest``, and only while that work is still worth it when the search ends now
    (:meth:`worth`)."""

    end: float  # time.time() by which the work after the search must be done (or started)
    earliest: float  # time.time() before which the search is never ended for it
    #: (objective, fit s, family) of every completed candidate that counts
    completed: list[tuple[float, float, str]] = field(default_factory=list)
    #: trial id -> (objective, seconds so far, family) of each candidate still training
    running: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    ended: str | None = None

    def counts(self, family: str) -> bool:
        """Whether a candidate of ``family`` is one the kept time is for."""
        return True

    @abstractmethod
    def need_s(self) -> float | None:
        """Seconds the work after the search is expected to take (None: no candidate yet)."""

    @abstractmethod
    def worth(self, need: float, now: float) -> bool:
        """Whether ending the search at ``now`` still leaves the work worth doing."""

    @abstractmethod
    def because(self, need: float) -> str:
        """The reason the search ended, as the log and ``run.json`` say it."""

    def progress(self, trial_id: str, family: str, result: Mapping[str, Any]) -> None:
        """A step report of a candidate still training (``time_total_s``: Tune's seconds since the
        trial started). A search ended for the reserve lets its running trials wrap up, and they
        join the ensemble; counted only once completed, the best of them had no time kept for
        them (bike_sharing at 60 s: its best LightGBM bag)."""
        if self.counts(family) and "objective" in result and result.get("time_total_s") is not None:
            objective = float(result.get("best_objective", result["objective"]))
            self.running[trial_id] = (objective, float(result["time_total_s"]), family)

    def observe(self, family: str, result: Mapping[str, Any], trial_id: str | None = None) -> None:
        """A candidate's final report (trials below the top rung of row fidelity are not handed over)."""
        self.running.pop(trial_id or "", None)
        if not self.counts(family) or result.get("fit_time_s") is None or result.get("failed"):
            return
        objective = float(result.get("objective", float("-inf")))
        self.completed.append((objective, float(result["fit_time_s"]), family))

    @property
    def best(self) -> dict[str, tuple[float, float]]:
        """family -> (objective, fit s) of its best completed candidate (the first of equals)."""
        out: dict[str, tuple[float, float]] = {}
        for objective, fit_s, family in self.completed:
            if family not in out or objective > out[family][0]:
                out[family] = (objective, fit_s)
        return out

    def reason(self, now: float | None = None) -> str | None:
        """Why the search is to end now (None: it goes on). Once ended, it stays ended."""
        if self.ended is None:
            now = time.time() if now is None else now
            need = self.need_s()
            if need is not None and now >= self.earliest and now + need >= self.end and self.worth(need, now):
                self.ended = self.because(need)
        return self.ended
