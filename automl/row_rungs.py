"""Row fidelity: the rungs of successive halving over training rows (no Ray here).

A config first trains on a small seeded sample of the first fold's training rows (stratified for
classification), validated on a sample of that fold's validation rows; the search
(:mod:`tuning.rungs`) promotes the best third of each rung to the next, bigger sample, and only
configs that reach the top rung train on the run's own folds (k-fold bag or holdout), whose
out-of-fold predictions feed the ensemble. Samples are nested: a rung's rows hold every lower
rung's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from automl.trial_data import TrialData

#: the config key (a Tune setting, not a model parameter) naming the rung a trial trains on
RUNG_KEY = "_rung"
#: each rung has eta times the rows of the one below; the top 1/eta of a rung is promoted
ETA = 3
#: rungs at most, the top one included (1/9, 1/3 of the rows, then the run's folds)
MAX_RUNGS = 3
#: a lower rung trains on at least this many rows (smaller ones are left out of the plan)
MIN_RUNG_ROWS = 2_000


@dataclass(frozen=True)
class Rung:
    index: int
    train_rows: np.ndarray  # positions in the training table (a subset of fold 0's training rows)
    valid_rows: np.ndarray  # a subset of fold 0's validation rows

    def describe(self, n_rungs: int) -> str:
        return (
            f"rung {self.index + 1} of {n_rungs}: {len(self.train_rows):,} training rows, "
            f"{len(self.valid_rows):,} validation rows"
        )


@dataclass(frozen=True)
class RowRungPlan:
    """The lower rungs (smallest first); the top rung (index ``top``) is the run's own folds."""

    rungs: tuple[Rung, ...]
    eta: int
    folds_work: int  # training rows summed over the run's folds: what a top-rung trial trains on
    #: seconds a trial on each lower rung may train (a time-limited search; empty: no cap)
    time_caps: tuple[float, ...] = ()

    @property
    def top(self) -> int:
        return len(self.rungs)

    @property
    def n_rungs(self) -> int:
        return len(self.rungs) + 1

    def is_lower(self, rung: int | None) -> bool:
        return rung is not None and 0 <= rung < self.top

    def view(self, data: TrialData, rung: int | None) -> TrialData:
        """What a trial on ``rung`` trains on: one fold of the rung's rows (``data`` itself at the
        top rung). The fold index stays 0, so target-encoded columns keep fold 0's values."""
        if not self.is_lower(rung):
            return data
        r = self.rungs[rung]
        return replace(data, folds=[(r.train_rows, r.valid_rows)])

    def with_time_caps(self, budget_s: float) -> RowRungPlan:
        """Caps for a search of ``budget_s`` seconds: ``budget_s / eta**(top - k + 1)`` on rung k
        (1/27 and 1/9 of the budget with three rungs). A rung with 1/eta**j of the rows gets time
        in the same proportion, so each rung trains about as many boosting rounds; and each rung
        of a full bracket (9 configs -> 3 -> 1) spends ``budget_s / eta``, so a bracket fits in
        the budget on two trial slots. A boosted model on a medium table still improves after
        hundreds of rounds: without a cap a trial on a sample trained until the deadline; with
        it, configs are compared on what they reach in equal time."""
        caps = tuple(budget_s / self.eta ** (self.top - k + 1) for k in range(self.top))
        return replace(self, time_caps=caps)

    def time_cap(self, rung: int | None) -> float | None:
        if not self.is_lower(rung) or not self.time_caps:
            return None
        return self.time_caps[rung]

    def share(self, rung: int | None) -> float:
        """A rung's training rows as a share of a top-rung trial's (cost estimates)."""
        if not self.is_lower(rung):
            return 1.0
        return len(self.rungs[rung].train_rows) / max(1, self.folds_work)

    def describe(self, rung: int | None) -> str:
        if not self.is_lower(rung):
            return f"rung {self.n_rungs} of {self.n_rungs}: the run's folds"
        return self.rungs[rung].describe(self.n_rungs)

    def summary(self) -> str:
        sizes = [f"{len(r.train_rows):,}" for r in self.rungs]
        top = f"the run's folds ({self.folds_work:,} training rows)"
        caps = f", at most {' / '.join(f'{c:.0f}' for c in self.time_caps)} s" if self.time_caps else ""
        return f"{' -> '.join(sizes)} rows -> {top}, eta={self.eta}{caps}"


def nested_order(rows: np.ndarray, y: np.ndarray | None, seed: int) -> np.ndarray:
    """``rows`` in a seeded random order whose every prefix is a uniform sample, stratified by
    class when ``y`` (class codes of every training row) is given: each class's rows are spread
    evenly along the order, and each class's first row comes first."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(np.asarray(rows))
    if y is None:
        return perm
    labels = y[perm]
    key = np.empty(len(perm))
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        key[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
        key[idx[0]] = -1.0
    return perm[np.argsort(key, kind="stable")]


def plan_rungs(
    folds: list[tuple[np.ndarray, np.ndarray]],
    y: np.ndarray | None,
    *,
    seed: int,
    eta: int = ETA,
    max_rungs: int = MAX_RUNGS,
    min_rows: int | None = None,
) -> RowRungPlan:
    """Rungs of ``1/eta**k`` of fold 0's training rows (k = max_rungs-1 .. 1), leaving out those
    under ``min_rows`` (default ``MIN_RUNG_ROWS``); each validates on as many of fold 0's
    validation rows as it trains on (all of them when fewer). ``y``: class codes for a
    stratified sample, None for regression."""
    min_rows = MIN_RUNG_ROWS if min_rows is None else min_rows
    tr, va = folds[0]
    order_tr = nested_order(tr, y, seed)
    order_va = nested_order(va, y, seed + 1)
    rungs = []
    for k in range(max_rungs - 1, 0, -1):
        n = int(round(len(tr) / eta**k))
        if n < min_rows:
            continue
        n_va = min(len(va), n)
        idx = len(rungs)
        rungs.append(Rung(idx, np.sort(order_tr[:n]), np.sort(order_va[:n_va])))
    work = int(sum(len(t) for t, _ in folds))
    return RowRungPlan(tuple(rungs), eta, work)
