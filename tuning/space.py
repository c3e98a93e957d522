"""The joint search space over model families.

A config is flat: ``{"family": "lightgbm", "lightgbm.num_leaves": 31, ...}``. Each family's own
space is a dict of Ray Tune domains (owned by the family); here they are joined under a
``family`` choice as an Optuna define-by-run space, so TPE learns which families do well and
spends its trials there, and only the chosen family's parameters are sampled.

For a skewed or heavy-tailed regression target (``Task.target_transform``), every family's space
also has ``target_transform`` (none or the offered transform; applied by ``automl.training``), and
the portfolio tries the default of each family with ``transform_in_portfolio`` on the transformed
target right after the defaults.
"""

from __future__ import annotations

from typing import Any

from automl.models import Family, Task
from automl.target import TARGET_KEY

FAMILY_KEY = "family"


def family_space(family: Family, task: Task) -> dict[str, Any]:
    """A family's own Ray Tune domains plus the target transform choice when one is offered."""
    space = dict(family.search_space(task))
    if task.target_transform:
        from ray import tune

        space[TARGET_KEY] = tune.choice(["none", task.target_transform])
    return space


def family_portfolio(family: Family, task: Task) -> list[dict[str, Any]]:
    """A family's portfolio; with a transform offered, every config names its transform (a point
    Optuna evaluates must set every dimension) and the default is also tried transformed."""
    configs = family.portfolio(task)
    if not task.target_transform:
        return configs
    configs = [{TARGET_KEY: "none", **c} for c in configs]
    if family.transform_in_portfolio:
        configs.insert(1, {**configs[0], TARGET_KEY: task.target_transform})
    return configs


def flatten(family: str, config: dict[str, Any]) -> dict[str, Any]:
    return {FAMILY_KEY: family, **{f"{family}.{k}": v for k, v in config.items()}}


def unflatten(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a flat config into the family name and its own parameters (``_``-keys are settings)."""
    if "candidate" in config:  # grid search wraps each point
        config = config["candidate"]
    family = config[FAMILY_KEY]
    prefix = family + "."
    return family, {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}


def optuna_distributions(space: dict[str, Any]) -> dict[str, Any]:
    """Convert Ray Tune domains to Optuna distributions with Ray's own converter."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch.convert_search_space(space)


class JointSpace:
    """An Optuna define-by-run space: choose a family, then that family's parameters.

    A plain class (not a closure) so Tune can pickle the searcher into its experiment state,
    which is what makes a search resumable.
    """

    def __init__(self, families: dict[str, Family], task: Task) -> None:
        self.names = list(families)
        self.dists = {name: optuna_distributions(family_space(f, task)) for name, f in families.items()}

    def __call__(self, trial: Any) -> None:
        import optuna

        family = trial.suggest_categorical(FAMILY_KEY, self.names)
        for param, dist in self.dists[family].items():
            key = f"{family}.{param}"
            if isinstance(dist, optuna.distributions.FloatDistribution):
                trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
            elif isinstance(dist, optuna.distributions.IntDistribution):
                trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)
            else:
                trial.suggest_categorical(key, dist.choices)


def clip_to_space(config: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """Move a config's values into its family's (data-sized) domains, e.g. fewer leaves on small data."""
    from ray.tune.search.sample import Float, Integer

    out = dict(config)
    for key, dom in space.items():
        if key not in out:
            continue
        if isinstance(dom, Integer):
            out[key] = int(min(max(out[key], dom.lower), dom.upper - 1))
        elif isinstance(dom, Float):
            out[key] = float(min(max(out[key], dom.lower), dom.upper))
    return out


def portfolio(families: dict[str, Family], task: Task) -> list[dict[str, Any]]:
    """Every family's default first, then every family's second config, and so on (round robin)."""
    lists = [
        [flatten(name, clip_to_space(c, f.search_space(task))) for c in family_portfolio(f, task)]
        for name, f in families.items()
    ]
    out: list[dict[str, Any]] = []
    for rank in range(max((len(lst) for lst in lists), default=0)):
        out += [lst[rank] for lst in lists if rank < len(lst)]
    return out


def grid(families: dict[str, Family], task: Task) -> list[dict[str, Any]]:
    """Grid points: each family's ``grid`` (a small Cartesian product) or else its portfolio."""
    points: list[dict[str, Any]] = []
    for name, f in families.items():
        points += [flatten(name, c) for c in f.grid(task)]
    return points
