"""RowRungs: a searcher wrapper that runs successive halving over rows (ASHA's promotion rule,
Li et al. 2020, on the rungs of :mod:`automl.row_rungs`).

Every Tune trial is one config on one rung (the config's ``_rung`` setting). When Tune asks for a
trial, the wrapper first looks for a promotion, highest rung first: a config in the top
``1/eta`` of the finished results of its rung that has not been sent up yet trains on the next
rung; otherwise the wrapped searcher (TPE, random) proposes a new config, which starts on the
lowest rung. The very first config (the portfolio's first default) goes straight to the top rung,
so a fit always has an ensemble candidate however early its budget ends (if that trial fails, the
next proposal takes its place).

Decisions read only the sets of finished results (ties broken by the order configs were
proposed), so under a ConcurrencyLimiter in batch mode (a trial budget) a seed gives the same
search. The wrapped searcher proposes and learns from its own configs: it is told the result of
the first rung each config trained on.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ray.tune.search import Searcher

from automl.config import SearchConfig
from automl.row_rungs import ETA, MIN_RUNG_ROWS, RUNG_KEY, RowRungPlan, plan_rungs
from automl.trial_data import TrialData
from automl.trials import TrialRecord, is_final

logger = logging.getLogger(__name__)


def next_promotion(
    scores: list[dict[str, float]], promoted: list[set[str]], eta: int, order: dict[str, int]
) -> tuple[str, int] | None:
    """(config, rung) of the next config to send up from ``rung``, or None.

    ``scores[k]``: config -> objective (higher is better) of the finished trials on rung k;
    ``promoted[k]``: configs already sent up from rung k (or declined). The top rung (the last
    entry) promotes nothing. A config is promotable when it ranks in the top
    ``floor(len(scores[k]) / eta)`` of its rung."""
    for k in reversed(range(len(scores) - 1)):
        ranked = sorted(scores[k], key=lambda c: (-scores[k][c], order.get(c, 0)))
        for config in ranked[: len(ranked) // eta]:
            if config not in promoted[k]:
                return config, k
    return None


class RowRungs(Searcher):
    def __init__(self, searcher: Searcher, n_rungs: int, eta: int, *, anchor: bool = True) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.n_rungs, self.eta = n_rungs, eta
        self.anchored = not anchor  # a config went straight to the top rung and finished
        self.anchor: str | None = None  # the trial of that config while it runs
        self.configs: dict[str, dict[str, Any]] = {}  # config id (its first trial) -> config
        self.order: dict[str, int] = {}  # config id -> proposal number
        self.trials: dict[str, tuple[str, int]] = {}  # trial id -> (config id, rung)
        self.scores: list[dict[str, float]] = [{} for _ in range(n_rungs)]
        self.promoted: list[set[str]] = [set() for _ in range(n_rungs)]

    @property
    def top(self) -> int:
        return self.n_rungs - 1

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        promo = next_promotion(self.scores, self.promoted, self.eta, self.order)
        if promo is not None:
            cid, rung = promo
            self.promoted[rung].add(cid)
            self.trials[trial_id] = (cid, rung + 1)
            logger.debug("row fidelity: config %s promoted to rung %d", cid, rung + 2)
            return {**self.configs[cid], RUNG_KEY: rung + 1}
        config = self.searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        rung = 0
        if not self.anchored and self.anchor is None:
            rung, self.anchor = self.top, trial_id
        self.configs[trial_id] = dict(config)
        self.order[trial_id] = len(self.order)
        self.trials[trial_id] = (trial_id, rung)
        return {**config, RUNG_KEY: rung}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.trials.get(trial_id, (trial_id, 0))[0] == trial_id:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # a promotion the budget guard declined stays in ``promoted``: it is not offered again
        cid, rung = self.trials.get(trial_id, (trial_id, 0))
        value = (result or {}).get(self.metric)
        finished = not error and is_final(result) and value is not None and math.isfinite(value)
        if finished:
            self.scores[rung][cid] = float(value)
        if trial_id == self.anchor:
            self.anchored, self.anchor = finished, None
        if cid == trial_id:  # the wrapped searcher's own proposal
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    # Tune saves a wrapper's own state here and the wrapped searcher separately (resume)
    def get_state(self) -> dict:
        keys = ("anchored", "anchor", "configs", "order", "trials", "scores", "promoted")
        return {k: getattr(self, k) for k in keys}

    def set_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def annotate(records: list[TrialRecord], plan: RowRungPlan) -> None:
    """Mark the trials of the lower rungs as stopped (they never join the ensemble) and say in
    ``stop_reason`` which rung and rows they trained on and whether the config climbed."""
    reached: dict[tuple[str, str], int] = {}
    for r in records:
        if r.rung is not None:
            key = (r.family, repr(sorted(r.params.items())))
            reached[key] = max(reached.get(key, -1), r.rung)
    for r in records:
        if r.status != "completed" or r.rung is None or not plan.is_lower(r.rung):
            continue
        climbed = reached[(r.family, repr(sorted(r.params.items())))] > r.rung
        r.status, r.checkpoint = "stopped", None
        r.stop_reason = (
            f"row fidelity {plan.describe(r.rung)}; "
            + ("promoted" if climbed else "not promoted")
            + f" (trained: {r.stop_reason})"
        )


def setup_rungs(
    strategy: Any, cfg: SearchConfig, data: TrialData, *, budget_s: float | None, seed: int
) -> tuple[RowRungPlan | None, str]:
    """Decide whether the search runs row fidelity (logged with the reason); when it does, wrap
    the strategy's searcher in :class:`RowRungs` and drop its step scheduler (ASHA would compare
    trials of different rungs, whose scores are not comparable). ``budget_s``: the search's
    seconds (None: a trial budget), which caps the lower rungs' trials. Returns the plan (None:
    off) and the decision as a sentence."""
    on, why = cfg.resolve_row_fidelity(data.task.n_rows, timed=budget_s is not None)
    plan = None
    if on:
        y = data.y if data.task.problem_type.is_classification else None
        plan = plan_rungs(data.folds, y, seed=seed)
        if budget_s is not None:
            plan = plan.with_time_caps(budget_s)
        if plan.top == 0:
            on, why = (
                False,
                (
                    f"{len(data.folds[0][0]):,} training rows in the first fold leave no rung of at least "
                    f"{MIN_RUNG_ROWS:,} rows at 1/{ETA} of them"
                ),
            )
    if not on or plan is None or strategy.search_alg is None:
        logger.info("row fidelity off: %s", why)
        return None, f"row fidelity off: {why}"
    note = f"row fidelity on ({why}): rungs {plan.summary()}"
    logger.info("%s", note)
    if strategy.scheduler is not None:
        name = type(strategy.scheduler).__name__
        logger.info("row fidelity: the rungs replace the %s step scheduler", name)
        strategy.scheduler = None
    strategy.search_alg = RowRungs(strategy.search_alg, plan.n_rungs, plan.eta)
    return plan, note
