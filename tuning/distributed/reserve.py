"""How long a streaming fit's final takes, and the search's end that keeps that time.

A final trains the best boosting config of the search on every row of the training part, so its
time grows with the table while the search's trials train on the sample. A fixed share of the
time limit kept for it is too little for a big table (3M rows at 1,200 s: ~668 s expected, 477 s
kept, so the sample-trained model stayed) and too much for a small one. The search therefore ends
when the final of the best boosting config found so far needs the time that is left, but not
before it has had ``MIN_SEARCH_SHARE`` of its time (a config to train, and a few to compare), and
not for a final that could no longer train on enough rows to be worth starting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from automl.reserve import SearchReserve

#: families whose best config trains on the full data
FINAL_FAMILIES = ("lightgbm", "xgboost")
#: a final's expected time: the sample trial's training time x the rows' growth / workers, x this
FINAL_MARGIN = 2.0
#: seconds a Ray Train run takes to start and wind down, read its shards and save its model (30-40 s
#: measured for a 3,000-row LightGBM on a loaded 2-core machine, Ray 2.60)
FINAL_OVERHEAD_S = 45.0
#: a final that fits in the time left only on fewer than this many times the sample's training rows
#: is not started (the sample-trained model is nearly as good)
MIN_GROWTH = 2.0
#: the search runs at least this share of its time (from its start to the finals' end) before the
#: time kept for a final may end it
MIN_SEARCH_SHARE = 0.25


def expected_final_s(fit_time_s: float | None, stream: Any, workers: int) -> float:
    """Seconds a final of a config whose sample trial trained for ``fit_time_s`` is expected to take
    on every training row of ``stream`` (a :class:`automl.streaming.plan.StreamPlan`)."""
    growth = stream.n_train_estimate / max(1, stream.n_sample_train)
    return FINAL_OVERHEAD_S + FINAL_MARGIN * (fit_time_s or 1.0) * growth / max(1, workers)


def affordable_share(need: float, left: float) -> float:
    """The share of the training rows a final can train on in ``left`` seconds when every row
    would take ``need`` (the start-up overhead is paid whatever the rows; the rest grows with them)."""
    return max(0.0, min(1.0, (left - FINAL_OVERHEAD_S) / max(1e-9, need - FINAL_OVERHEAD_S)))


def worthwhile(share: float, stream: Any) -> bool:
    """Whether a final on ``share`` of the training rows is worth its time (``MIN_GROWTH``)."""
    return share * stream.n_train_estimate >= MIN_GROWTH * stream.n_sample_train


def default_workers(cluster: Any) -> int:
    return workers_for(cluster.cpus)


def workers_for(cpus: float) -> int:
    """A final's Ray Train workers on ``cpus`` CPUs: one per whole CPU. Each holds half a CPU
    (``finals.FINAL_WORKER_CPUS``), so half the cluster stays free for the Ray Data tasks that read
    and preprocess the blocks feeding them."""
    return max(1, int(cpus))


@dataclass(kw_only=True)
class FinalsReserve(SearchReserve):
    """The search's stopper asks it (:class:`tuning.stoppers.SearchStopper`): it watches the
    completed trials of the final families and ends the search once ``end`` (when the finals must
    be done) minus the best config's expected final time has come, and ``earliest`` has passed."""

    stream: Any
    workers: int

    @classmethod
    def start(cls, stream: Any, cluster: Any, end: float | None) -> FinalsReserve | None:
        """The reserve of a search starting now (None: no streaming, no finals or no time limit)."""
        if stream is None or end is None or not stream.config.finals:
            return None
        workers = stream.config.final_workers or default_workers(cluster)
        now = time.time()
        earliest = now + MIN_SEARCH_SHARE * max(0.0, end - now)
        return cls(stream=stream, workers=workers, end=end, earliest=earliest)

    def counts(self, family: str) -> bool:
        return family in FINAL_FAMILIES

    def need_s(self) -> float | None:
        """The expected final time of the best config so far (None: no final family completed)."""
        if not self.best:
            return None
        _, fit_s = max(self.best.values())
        return expected_final_s(fit_s, self.stream, self.workers)

    def worth(self, need: float, now: float) -> bool:
        """A final that is no longer worth starting will not be trained: the search goes on."""
        return worthwhile(affordable_share(need, self.end - now), self.stream)

    def because(self, need: float) -> str:
        return (
            f"time kept for the final fit (~{need:.0f}s expected for the best boosting config "
            f"on every training row)"
        )


__all__ = [
    "FINAL_FAMILIES",
    "FinalsReserve",
    "affordable_share",
    "default_workers",
    "expected_final_s",
    "worthwhile",
]
