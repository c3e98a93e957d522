"""Shared pieces of the gradient-boosting families: step sizes and early-stopping patience
scaled by the learning rate, and fold-averaged raw margins."""

from __future__ import annotations

from typing import Any

#: boosting rounds allowed per trial; early stopping ends almost every trial long before this
MAX_ROUNDS = 10000


def rounds_per_step(config: dict[str, Any]) -> int:
    """Report every ~0.5/learning_rate rounds: slow learners report less often."""
    lr = float(config.get("learning_rate", 0.1))
    return int(min(50, max(5, round(0.5 / lr))))


def patience_rounds(config: dict[str, Any]) -> int:
    lr = float(config.get("learning_rate", 0.1))
    return int(min(500, max(20, round(2.5 / lr))))


def data_sized_leaves(n_rows: int) -> int:
    return int(max(8, min(1024, n_rows // 10)))


# --- robust objectives for skewed or heavy-tailed regression targets (Task.target_transform) ------
#: the robust loss's scale (Huber's delta, Fair's c) in units of the training target's standard
#: deviation on the scale the model trains on; Huber's usual 1.345 residual sds is ~0.2 target
#: sds for a model whose error is ~15 % of the target's spread
ROBUST_DELTA = 0.2


def robust_space(task: Any, objectives: list[str]) -> dict[str, Any]:
    """Search dimensions of a robust objective: the objective and its scale (none when the
    target is left as is)."""
    if not task.target_transform:
        return {}
    from ray import tune

    return {"objective": tune.choice(objectives), "robust_delta": tune.loguniform(0.02, 1.0)}


def robust_defaults(task: Any, squared_error: str) -> dict[str, Any]:
    """The portfolio's values of those dimensions: squared error (the scale is then unused)."""
    return {"objective": squared_error, "robust_delta": ROBUST_DELTA} if task.target_transform else {}


def robust_scale(config: dict[str, Any], y: Any) -> float:
    """The robust loss's scale in the target's units: ``robust_delta`` x the sd of ``y``."""
    import numpy as np

    sd = float(np.std(np.asarray(y, dtype=float))) or 1.0
    return float(config.get("robust_delta", ROBUST_DELTA)) * sd
