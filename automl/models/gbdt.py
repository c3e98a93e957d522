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
