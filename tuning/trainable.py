"""The Ray Tune trial function: one candidate config trained on every fold (see automl.training).

Data arrive once through the object store (``tune.with_parameters``); each step reports the
best-so-far mean validation objective, which ASHA/HyperBand compare at their rungs. The last
report carries a checkpoint with the fold models, the out-of-fold predictions and the metadata.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl.models import get_family
from automl.row_rungs import RUNG_KEY, RowRungPlan
from automl.training import CandidateResult, TrialData, is_state_checkpoint, save_result, train_candidate
from automl.trials import FinalReport, failed_report
from tuning.space import unflatten
from tuning.train_paths import TrainPath, train_candidate_ray, uses_ray_train
from tuning.wrapup import WrapUpFlag

PREDICT_TIMING_ROWS = 1000
#: the final metrics, saved next to a finished trial's models
FINAL = "final_metrics.json"


@dataclass(frozen=True)
class TrialSettings:
    deadline: float | None  # wall-clock time (time.time()) by which a trial should wrap up
    path: TrainPath | None = None  # where supported families train (in-process or Ray Train)
    #: steps at which a pausing scheduler (HyperBand, BOHB) may pause the trial: checkpoint there
    checkpoint_steps: frozenset[int] = frozenset()
    #: also checkpoint this often (seconds of training), so a retried trial loses little work
    checkpoint_every_s: float = 60.0
    #: row fidelity: the rungs a config's ``_rung`` setting names (None: every trial on all rows)
    rungs: RowRungPlan | None = None
    #: raised when the search is ended early: the trial ends after its next step, keeping its best
    wrap_up: WrapUpFlag | None = None


def run_trial(config: dict[str, Any], data: TrialData, settings: TrialSettings) -> None:
    t0 = time.time()
    restored = _restored_checkpoint()
    try:
        _run(config, data, settings, restored, t0)
    finally:  # the restored copy is ours: without this every resumed trial left one in /tmp
        if restored is not None:
            shutil.rmtree(restored, ignore_errors=True)


def _run(
    config: dict[str, Any], data: TrialData, settings: TrialSettings, restored: Path | None, t0: float
) -> None:
    from ray import tune

    family_name, params = unflatten(config)
    family = get_family(family_name)
    if restored is not None and (restored / FINAL).exists():
        # the trial had finished when its driver died, before Tune recorded it as finished:
        # report its result again (its final checkpoint stays the trial's latest) instead of retraining
        tune.report(json.loads((restored / FINAL).read_text()))
        return
    resume_from = restored if restored is not None and is_state_checkpoint(restored) else None
    last = {"t": 0.0}

    def checkpoint_now(step: int, elapsed: float) -> bool:
        if step in settings.checkpoint_steps or elapsed - last["t"] >= settings.checkpoint_every_s:
            last["t"] = elapsed
            return True
        return False

    def on_step(metrics: dict[str, Any], state_dir: str | None = None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(state_dir) if state_dir else None)

    rung = config.get(RUNG_KEY)
    lower = settings.rungs is not None and settings.rungs.is_lower(rung)
    view = settings.rungs.view(data, rung) if lower else data
    deadline = _deadline(settings, rung, t0)
    try:
        if not lower and settings.path is not None and uses_ray_train(family, settings.path):
            result = train_candidate_ray(
                family,
                params,
                data,
                settings.path,
                tune.get_context().get_trial_name(),
                wrap_up=settings.wrap_up,
            )
        else:
            result = train_candidate(
                family,
                params,
                view,
                deadline=deadline,
                on_step=on_step,
                checkpoint=checkpoint_now,
                resume_from=resume_from,
                wrap_up=settings.wrap_up.reader() if settings.wrap_up is not None else None,
            )
        if lower and result.stop_reason == "time_budget" and deadline != settings.deadline:
            result.stop_reason = f"the rung's time cap ({deadline - t0:.0f}s)"
    except Exception as exc:  # noqa: BLE001 - a bad config ends this trial, not the search
        # Reported, not raised: Tune would retry a raised error (FailureConfig), which only helps
        # when a worker died, not when the library rejects the config.
        tune.report(dict(failed_report(_first_line(exc))))
        return
    d = tempfile.mkdtemp(prefix="automl-trial-")
    try:
        final = _finish(result, data, family.recipe, d, t0, lower=lower)
        if rung is not None and settings.rungs is not None:
            final["rung"], final["rung_rows"], final["lower_rung"] = int(rung), _rows(view, lower), lower
        (Path(d) / FINAL).write_text(json.dumps(final))
        tune.report(dict(final), checkpoint=tune.Checkpoint.from_directory(d))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _deadline(settings: TrialSettings, rung: int | None, t0: float) -> float | None:
    """The search's deadline, or sooner the end of a lower rung's time cap."""
    cap = settings.rungs.time_cap(rung) if settings.rungs is not None else None
    if cap is None:
        return settings.deadline
    return t0 + cap if settings.deadline is None else min(settings.deadline, t0 + cap)


def _finish(
    result: CandidateResult, data: TrialData, recipe: str, d: str, t0: float, *, lower: bool
) -> FinalReport:
    """The final report of a trained candidate; its models are saved into ``d`` (not below the
    top rung of row fidelity: those trials never join the ensemble)."""
    predict_s, predict_wall, save_s = None, 0.0, 0.0
    if not lower:
        predict_s, predict_wall = _time_predict(result, data, recipe)
        t_save = time.time()
        save_result(result, d)
        save_s = time.time() - t_save
    objective = data.metric.objective(result.score)
    return FinalReport(
        objective=objective,
        best_objective=objective,
        score=result.score,
        score_std=result.score_std,
        iteration=result.best_iteration,
        fit_time_s=result.fit_time_s,
        trial_wall_s=time.time() - t0,
        predict_time_s=predict_s,
        stop_reason=result.stop_reason,
        # time inside the model libraries: training, the predict timing and saving the models
        library_time_s=result.fit_time_s + predict_wall + save_s,
        done_training=True,
    )


def _rows(data: TrialData, lower: bool) -> int:
    """Training rows of a trial: its rung's sample, or every fold's training rows."""
    return int(len(data.folds[0][0])) if lower else int(sum(len(t) for t, _ in data.folds))


def _restored_checkpoint() -> Path | None:
    """The checkpoint Tune restored this trial from (after a pause, a worker failure or a
    resumed search): a mid-trial state, or the final result of a trial that had finished."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    local = Path(tempfile.mkdtemp(prefix="automl-restore-"))
    ckpt.to_directory(str(local))
    return local


def _time_predict(result: Any, data: TrialData, recipe: str) -> tuple[float, float]:
    """Seconds for the candidate's bag of fold models to predict 1,000 rows in one batch
    (scaled when the table is smaller), and the seconds the measurement took."""
    X = data.features[recipe]
    idx = np.arange(min(PREDICT_TIMING_ROWS, X.n_rows))
    sample = X.take(idx)
    t = time.perf_counter()
    for model in result.models:
        model.predict(sample)
    took = time.perf_counter() - t
    return took * PREDICT_TIMING_ROWS / max(len(idx), 1), took


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line}"[:300]
