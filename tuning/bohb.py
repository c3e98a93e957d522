"""BOHB (Falkner et al. 2018): Ray's TuneBOHB searcher with HyperBandForBOHB, over the joint
space expressed as a conditional ConfigSpace (each family's parameters are active only when that
family is chosen). Needs ``pip install hpbandster ConfigSpace`` (the ``bohb`` extra)."""

from __future__ import annotations

from typing import Any

from automl.exceptions import ConfigError
from automl.models import Family, Task
from tuning.space import FAMILY_KEY, family_space, optuna_distributions


def _config_space(families: dict[str, Family], task: Task, seed: int) -> Any:
    import ConfigSpace as CS
    import optuna

    cs = CS.ConfigurationSpace(seed=seed)
    fam = CS.CategoricalHyperparameter(FAMILY_KEY, list(families))
    cs.add(fam)
    for name, family in families.items():
        for param, dist in optuna_distributions(family_space(family, task)).items():
            key = f"{name}.{param}"
            if isinstance(dist, optuna.distributions.FloatDistribution):
                hp = CS.UniformFloatHyperparameter(key, dist.low, dist.high, log=dist.log)
            elif isinstance(dist, optuna.distributions.IntDistribution):
                hp = CS.UniformIntegerHyperparameter(key, dist.low, dist.high, log=dist.log)
            else:
                hp = CS.CategoricalHyperparameter(key, list(dist.choices))
            cs.add(hp)
            cs.add(CS.EqualsCondition(hp, fam, name))
    return cs


def make_bohb(
    families: dict[str, Family],
    task: Task,
    points: list[dict[str, Any]],
    *,
    seed: int,
    metric: str,
    mode: str,
    max_steps: int,
    eta: int,
    max_trials: int,
) -> tuple[Any, Any]:
    try:
        from ray.tune.search.bohb import TuneBOHB

        space = _config_space(families, task, seed)
    except ImportError as exc:
        raise ConfigError(
            f"search strategy 'bohb' needs hpbandster and ConfigSpace: "
            f"pip install 'automl-on-ray[bohb]' ({exc})"
        ) from None
    searcher = TuneBOHB(space=space, metric=metric, mode=mode, seed=seed, points_to_evaluate=points or None)
    from tuning.brackets import budgeted

    scheduler = budgeted(True, metric=metric, mode=mode, max_t=max_steps, eta=eta, max_trials=max_trials)
    return searcher, scheduler
