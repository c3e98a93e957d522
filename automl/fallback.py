"""The fallback model: when no trial finished in time (a tiny budget on a loaded machine), the
first family's default config is trained in the fit's process, so that every fit leaves a model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from automl import layout
from automl.training import TrialData

logger = logging.getLogger(__name__)

#: the fallback model trains until the deadline of the stages after it, less FALLBACK_DEPLOY_S for
#: building and measuring it, and for at least FALLBACK_MIN_S
FALLBACK_MIN_S, FALLBACK_DEPLOY_S = 2.0, 1.0


def fallback_trial(
    families: dict[str, Any], data: TrialData, run_dir: Path, *, deadline: float | None = None
) -> Any:
    """No trial finished in time (a tiny budget on a loaded machine): train the first family's
    default config here, until ``deadline`` (at least one step), so the user still gets a model,
    and say so."""
    from automl.training import save_result, train_candidate
    from automl.trials import TrialRecord

    family = next(iter(families.values()))
    config = family.portfolio(data.task)[0]
    logger.warning(
        "no trial finished within the time limit; training the %s default config in this process "
        "so there is a model (give a longer time_limit to search)",
        family.name,
    )
    result = train_candidate(family, config, data, deadline=deadline)
    path = run_dir / layout.FALLBACK_DIR
    save_result(result, path)
    return TrialRecord(
        trial_id="fallback",
        family=family.name,
        params=config,
        status="completed",
        score=result.score,
        score_std=result.score_std,
        iteration=result.best_iteration,
        fit_time_s=result.fit_time_s,
        library_time_s=result.fit_time_s,
        stop_reason=f"fallback: no trial finished within the time limit; {result.stop_reason}",
        checkpoint=str(path),
    )
