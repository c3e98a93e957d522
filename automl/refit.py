"""Whether to refit a deployment option's members on every training row before deploying it.

``refit="auto"`` refits after a holdout search (one model per member instead of a model trained
on 80 % of the rows) but only when the expected cost (the members' training time, grown by the
share of rows the validation held out) fits before the deadline; ``refit=True`` always does,
``False`` never. Each decision and its reason are kept for run.json.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from automl.training import TrialData

logger = logging.getLogger(__name__)


class RefitPlan:
    def __init__(
        self, wanted: bool, *, forced: bool, costs: dict[str, float], growth: float, deadline: float | None
    ) -> None:
        self.wanted, self.forced, self.costs = wanted, forced, costs
        self.growth, self.deadline = growth, deadline
        self.done: dict[str, bool] = {}
        self.reasons: dict[str, str] = {}

    def decide(self, name: str, *, can_refit: bool = True) -> bool:
        if not self.wanted or not can_refit:
            ok = False
        elif self.forced or self.deadline is None:
            ok = True
        else:
            expected = self.costs.get(name, 0.0) * self.growth
            left = self.deadline - time.time()
            ok = expected <= left
            verdict = (
                "refit on all rows" if ok else "kept the validation fit (no refit; refit=True forces it)"
            )
            self.reasons[name] = f"{name}: {verdict}: ~{expected:.0f}s expected, {max(0.0, left):.0f}s left"
            logger.info("refit %s", self.reasons[name])
        self.done[name] = ok
        return ok


def refit_growth(data: TrialData) -> float:
    """Expected refit time over the recorded training time of all folds: every row instead of
    one fold's training rows, once instead of once per fold, plus a 20 % margin."""
    n_train = np.mean([len(tr) for tr, _ in data.folds]) if data.folds else len(data.y)
    return 1.2 * len(data.y) / max(1.0, float(n_train)) / max(1, len(data.folds))
