"""How a fit's time limit is shared among its stages: what the search leaves for ensembling, the
deployment options (refits and their measurement), saving, the report and stopping Ray, and the
reserve that may end the search early to keep time for refitting its best candidates (and for the
stack layer, when it is on and expected to fit)."""

from __future__ import annotations

from typing import Any

from automl.config import FitSpec
from automl.deploy import MEASURE_S
from automl.refit import RefitReserve
from automl.stack_reserve import StackReserve

#: seconds the time limit keeps for writing report.html (about 4-6 s measured on 2 cores; its
#: explanations shrink to the time left)
REPORT_RESERVE_S = 5.0
#: share of the time limit (at most DEPLOY_RESERVE_MAX_S) kept for refitting the deployment
#: options' members on every row and measuring every option's latency and size
DEPLOY_RESERVE_SHARE, DEPLOY_RESERVE_MAX_S = 0.06, 20.0
#: seconds kept at the end for ray.shutdown() when the fit stops the Ray it started (1.8 s
#: measured at a load of 43 on 2 cores; the process then exits in well under a second)
RAY_STOP_RESERVE_S = 2.0
#: a search is started only with this much time left before its deadline (Tune's start and its
#: wind-down take a few seconds on a loaded 2-core machine)
MIN_SEARCH_S = 3.0
#: share of the time limit the search may give up for the stack layer when stacking is on (its
#: nested fits): kept only when the layer is expected to fit in it (automl.stack_reserve)
STACK_RESERVE_SHARE = 0.15


def search_reserve(spec: FitSpec) -> float:
    """Seconds the time limit keeps after the search: loading candidates and ensembling, the
    refit options and their measurement, saving and the report (when written). The stack layer's
    time is kept by the search's reserve (:func:`search_time_reserve`), when the layer fits."""
    if not spec.time_limit:
        return 0.0
    return ensemble_reserve_s(spec) + after_assemble_s(spec) + deploy_reserve_s(spec)


def ensemble_reserve_s(spec: FitSpec) -> float:
    """Seconds kept after the search for loading the candidates and ensembling them."""
    return min(60.0, max(3.0, 0.06 * spec.time_limit)) if spec.time_limit else 0.0


def deploy_reserve_s(spec: FitSpec) -> float:
    """Seconds kept for refitting the deployment options' members and measuring the options (the
    search may end earlier to keep more: :class:`automl.refit.RefitReserve`)."""
    if not spec.time_limit or (spec.ensemble.refit is False and not spec.ensemble.constrained):
        return 0.0
    return min(DEPLOY_RESERVE_MAX_S, DEPLOY_RESERVE_SHARE * spec.time_limit)


def after_assemble_s(spec: FitSpec) -> float:
    """Seconds kept after the ensembling stage: saving the Predictor and the run's files, and the
    report when one is written."""
    if not spec.time_limit:
        return 0.0
    save = min(10.0, max(1.0, 0.03 * spec.time_limit))
    return save + (min(REPORT_RESERVE_S, 0.1 * spec.time_limit) if spec.report else 0.0)


def search_time_reserve(spec: FitSpec, data: Any, deadline: float | None) -> RefitReserve | None:
    """What may end the search early to keep time after it: for refitting the best candidates
    (until the deploy stage's reserve, less the time to measure the default option and one refit
    option, is spent; a short ensembling stage is slack) and, with stacking on and k-fold
    validation, for the stack layer when it is expected to fit in STACK_RESERVE_SHARE of the limit."""
    keep_s, slack_s = max(0.0, deploy_reserve_s(spec) - 2 * MEASURE_S), ensemble_reserve_s(spec)
    if deadline is not None and spec.time_limit and spec.ensemble.stack_levels and len(data.folds) >= 2:
        return StackReserve.over(
            data,
            deadline=deadline,
            keep_s=keep_s,
            slack_s=slack_s,
            folds=len(data.folds),
            cap=STACK_RESERVE_SHARE * spec.time_limit,
            refit=spec.ensemble.refit is not False,
        )
    return RefitReserve.start(data, spec.ensemble.refit, deadline=deadline, keep_s=keep_s, slack_s=slack_s)
