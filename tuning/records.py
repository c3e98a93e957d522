"""Tune's results as the search's outcome: one TrialRecord per trial (status, scores, times,
a local copy of its final checkpoint), and why the search ended."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from automl.config import SearchConfig
from automl.row_rungs import RUNG_KEY
from automl.trials import TrialRecord, is_failed, is_final
from tuning.budget import BudgetGuard
from tuning.progress import ProgressCallback
from tuning.space import unflatten
from tuning.stoppers import SearchStopper

logger = logging.getLogger(__name__)


def retries_of(grid: Any) -> dict[str, int]:
    """Trial id -> failures Tune retried (``Trial.num_failures``; a spot preemption is not counted)."""
    analysis = getattr(grid, "_experiment_analysis", None)
    try:
        return {t.trial_id: int(t.num_failures) for t in analysis.trials}
    except AttributeError:  # a Ray version without it: the leaderboard shows 0
        logger.debug("Tune's trial failure counts are not available")
        return {}


def _local_checkpoint(checkpoint: Any, cache_dir: Path) -> str:
    """A local directory with the checkpoint's files: itself on a local/shared path, else a copy
    (from S3 or another remote store) under ``cache_dir/<trial dir>/<checkpoint dir>``."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return checkpoint.path
    src = Path(checkpoint.path)
    dest = cache_dir / src.parent.name / src.name
    if not (dest / "candidate.json").exists():
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        checkpoint.to_directory(str(part))
        shutil.rmtree(dest, ignore_errors=True)
        part.rename(dest)
    return str(dest)


#: a trial whose end is logged up to this long before the stopper had Tune stop the trials still
#: running was stopped by it (the stopper is asked between Tune's events; the trial's end is
#: logged as Tune handles it)
STOP_SLACK_S = 1.0


def record(
    result: Any,
    progress: ProgressCallback,
    t0: float,
    deadline: float | None,
    *,
    retries: dict[str, int] | None = None,
    cache_dir: Path | None = None,
    ended: tuple[float, str] | None = None,
) -> TrialRecord:
    config = result.config or {}
    try:
        family, params = unflatten(config)
    except KeyError:
        family, params = "?", dict(config)
    m = result.metrics or {}
    trial_id = m.get("trial_id") or os.path.basename(str(result.path))
    rec = TrialRecord(
        trial_id=str(trial_id),
        family=family,
        params=params,
        status="completed",
        retries=(retries or {}).get(str(trial_id), 0),
    )
    # Tune names trial directories "<trainable>_<trial id>_<creation index>_<params>"
    found = re.search(rf"{re.escape(str(trial_id))}_(\d+)", os.path.basename(str(result.path)))
    rec.index = int(found.group(1)) if found else None
    rec.rung = (config.get("candidate") or config).get(RUNG_KEY)
    times = progress.times.get(str(trial_id))
    if times:
        rec.start_offset_s = times[0] - t0
        rec.end_offset_s = (times[1] - t0) if times[1] else None
    if result.error is not None:
        rec.status = "failed"
        text = str(result.error).strip().splitlines()
        rec.error = next((ln for ln in reversed(text) if ln.strip()), type(result.error).__name__)[:300]
        return rec
    if is_failed(m):
        rec.status, rec.error = "failed", m.get("error")
        return rec
    rec.score = m.get("score")
    rec.iteration = m.get("iteration")
    if is_final(m):
        rec.take_final(m)
        if rec.stop_reason == "search_ended":  # it ended with its best step (tuning.wrapup)
            why = f": {ended[1]}" if ended is not None else ""
            rec.stop_reason = f"wrapped up with its best step when the search ended{why}"
        if result.checkpoint is not None:
            rec.checkpoint = (
                _local_checkpoint(result.checkpoint, cache_dir)
                if cache_dir is not None
                else result.checkpoint.path
            )
    else:
        rec.status = "stopped"
        ended_at = times[1] if times and times[1] else time.time()
        if deadline is not None and ended_at >= deadline:
            rec.stop_reason = "time limit"
        elif ended is not None and ended_at >= ended[0] - STOP_SLACK_S:
            rec.stop_reason = f"stopped when the search ended: {ended[1]}"
        else:
            rec.stop_reason = "early-stopped by the scheduler"
    return rec


def why_ended(
    stopper: SearchStopper,
    records: list[TrialRecord],
    cfg: SearchConfig,
    deadline: float | None,
    strategy: str,
    guard: BudgetGuard | None,
) -> str:
    if stopper.reason:
        return stopper.reason
    if (deadline is not None and time.time() >= deadline - 1) or (guard is not None and guard.finished_early):
        return "time limit reached"
    if strategy == "grid":
        return "grid exhausted"
    if cfg.max_trials is not None and len(records) >= cfg.max_trials:
        return f"max_trials ({cfg.max_trials}) reached"
    return "search space exhausted"
