"""Search strategies: a name -> (searcher, scheduler) factory, with lazy imports.

==========  ===========================================  ==================================
strategy    searcher                                     scheduler
==========  ===========================================  ==================================
bayesian    Optuna TPE (define-by-run, family-aware)     ASHA (early-stops weak trials)
random      Optuna random sampler                        FIFO (every trial runs to the end)
grid        Tune's grid over each family's grid points   FIFO
hyperband   Optuna random sampler                        HyperBand (synchronous brackets)*
asha        Optuna TPE, or random with ``searcher``      ASHA
bohb        TuneBOHB (needs hpbandster + ConfigSpace)    HyperBandForBOHB*
==========  ===========================================  ==================================

Starred: with brackets no larger than the trials the budget has left (``tuning.brackets``).

Searchers and schedulers carry the metric themselves (Tune refuses it twice), so
``TuneConfig`` gets none. Every strategy first evaluates the portfolio of default configs (except
grid, whose points are the grid itself).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from automl.config import SearchConfig
from automl.exceptions import ConfigError
from automl.models import Family, Task
from tuning import space as space_mod

STRATEGIES = ("bayesian", "random", "grid", "hyperband", "asha", "bohb")
METRIC = "best_objective"
MODE = "max"


@dataclass
class Strategy:
    name: str
    search_alg: Any
    scheduler: Any
    param_space: dict[str, Any]
    num_samples: int
    #: steps at which the scheduler pauses trials (synchronous HyperBand / BOHB rungs)
    checkpoint_steps: frozenset[int] = frozenset()


#: synchronous HyperBand (and BOHB) brackets: at most 81 steps, reduction factor 3
HB_MAX_STEPS, HB_ETA = 81, 3


def hyperband_milestones(max_t: int = HB_MAX_STEPS, eta: int = HB_ETA) -> frozenset[int]:
    """The step counts at which synchronous HyperBand compares (and pauses) trials."""
    out, r = set(), max_t
    while r >= 1:
        out.add(int(r))
        r //= eta
    return frozenset(out)


def _optuna(
    families: dict[str, Family], task: Task, points: list[dict[str, Any]], seed: int, sampler: str
) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if sampler == "tpe":
        # multivariate + group: TPE models the parameters of each family jointly (conditional space)
        smp = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(5, len(points)), multivariate=True, group=True
        )
    else:
        smp = optuna.samplers.RandomSampler(seed=seed)
    return OptunaSearch(
        space=space_mod.JointSpace(families, task),
        metric=METRIC,
        mode=MODE,
        points_to_evaluate=points or None,
        sampler=smp,
    )


def _asha(max_steps: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        metric=METRIC,
        mode=MODE,
        max_t=max_steps,
        grace_period=8,
        reduction_factor=3,
    )


def make_strategy(
    cfg: SearchConfig,
    families: dict[str, Family],
    task: Task,
    *,
    seed: int,
    max_trials: int,
    max_steps: int = 2000,
    first_points: list[dict[str, Any]] | None = None,
    reproducible: bool = False,
) -> Strategy:
    """``first_points`` (e.g. warm-start configs) are evaluated before the portfolio.

    ``reproducible`` (a trial budget, no time limit): ``bayesian`` runs without ASHA, whose
    decisions depend on the order in which concurrent trials report.
    """
    name = cfg.strategy
    if name not in STRATEGIES:
        raise ConfigError(f"search strategy must be one of {list(STRATEGIES)}; got {name!r}")
    points = list(first_points or []) + (space_mod.portfolio(families, task) if cfg.portfolio else [])
    if name == "grid":
        from ray import tune

        grid_points = list(first_points or []) + space_mod.grid(families, task)
        return Strategy(name, None, None, {"candidate": tune.grid_search(grid_points)}, 1)
    if name == "bayesian":
        scheduler = None if reproducible else _asha(max_steps)
        return Strategy(name, _optuna(families, task, points, seed, "tpe"), scheduler, {}, max_trials)
    if name == "random":
        return Strategy(name, _optuna(families, task, points, seed, "random"), None, {}, max_trials)
    if name == "asha":
        sampler = "random" if cfg.searcher == "random" else "tpe"
        return Strategy(
            name, _optuna(families, task, points, seed, sampler), _asha(max_steps), {}, max_trials
        )
    if name == "hyperband":
        from tuning.brackets import budgeted

        return Strategy(
            name,
            _optuna(families, task, points, seed, "random"),
            budgeted(False, metric=METRIC, mode=MODE, max_t=HB_MAX_STEPS, eta=HB_ETA, max_trials=max_trials),
            {},
            max_trials,
            hyperband_milestones(),
        )
    from tuning.bohb import make_bohb

    search_alg, sched = make_bohb(
        families,
        task,
        points,
        seed=seed,
        metric=METRIC,
        mode=MODE,
        max_steps=HB_MAX_STEPS,
        eta=HB_ETA,
        max_trials=max_trials,
    )
    return Strategy(name, search_alg, sched, {}, max_trials, hyperband_milestones())
