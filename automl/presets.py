"""Named presets: settings chosen together for a goal (``AutoML(presets="fast_inference")``,
``automl fit --presets fast_inference``).

A preset fills :class:`~automl.config.EnsembleConfig` fields the user left at their defaults; a
field the user set keeps its value (``presets="fast_inference"`` with
``EnsembleConfig(max_latency_ms=5)`` deploys under 5 ms). What a preset set is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Any

from automl.config import EnsembleConfig
from automl.exceptions import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    ensemble: dict[str, Any]


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "fast_inference",
            "deploy the best model whose one-row latency is at most 2 ms and whose size is at most "
            "20 MB (in practice a single tree model refit on every row, or a small refit ensemble); "
            "no stack layer",
            # 2 ms: a single LightGBM booster predicts one row in about 0.8 ms through the Predictor on
            # a loaded 2-core machine, a 5-fold bag of three boosters in 7-10 ms: the limit keeps
            # refit single models and small refit ensembles and rules out bags
            {"max_latency_ms": 2.0, "max_model_mb": 20.0, "stack_levels": 0},
        ),
        Preset("best_quality", "the defaults: the best validation score, whatever it costs to predict", {}),
    )
}


def apply_presets(
    presets: str | list[str] | tuple[str, ...] | None, ensemble: EnsembleConfig
) -> EnsembleConfig:
    """``ensemble`` with the presets' values in the fields it leaves at their defaults."""
    names = [presets] if isinstance(presets, str) else list(presets or [])
    defaults = {f.name: f.default for f in fields(EnsembleConfig)}
    for name in names:
        preset = PRESETS.get(name)
        if preset is None:
            raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        taken = {k: v for k, v in preset.ensemble.items() if getattr(ensemble, k) == defaults[k]}
        kept = sorted(set(preset.ensemble) - set(taken))
        ensemble = replace(ensemble, **taken)
        logger.info(
            "preset %s: %s; set %s%s",
            name,
            preset.summary,
            ", ".join(f"{k}={v}" for k, v in taken.items()) or "nothing",
            f" (kept your {', '.join(kept)})" if kept else "",
        )
    return ensemble
