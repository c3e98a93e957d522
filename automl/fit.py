"""The orchestrator of a fit, stage by stage: prepare (profile, schema, preprocessing, folds) ->
search -> assemble (ensemble, choose, refit, calibrate) -> publish (Predictor, leaderboard,
run.json, report).

The only module of ``automl`` that imports ``tuning`` (and so Ray Tune), inside ``_search``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import layout
from automl import leaderboard as lb
from automl.assemble import Assembly, assemble
from automl.budget import (
    MIN_SEARCH_S,
    RAY_STOP_RESERVE_S,
    REPORT_RESERVE_S,
    after_assemble_s,
    search_reserve,
    search_time_reserve,
)
from automl.clock import Clock
from automl.config import FitSpec
from automl.deploy_stage import save_alternatives
from automl.fallback import FALLBACK_DEPLOY_S, FALLBACK_MIN_S, fallback_trial
from automl.predictor import Predictor
from automl.prepare import Prepared, prepare
from automl.profile import DataProfile
from automl.splits import Folds
from automl.trials import SearchOutcome

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    predictor: Predictor
    leaderboard: pd.DataFrame
    profile: DataProfile
    run_info: dict[str, Any]


def run_fit(
    spec: FitSpec,
    train: pd.DataFrame,
    *,
    run_dir: Path,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    resume: bool = False,
    started_at: float | None = None,
    lineage: dict[str, Any] | None = None,
    stop_ray: bool = False,
    stream: Any = None,
) -> FitResult:
    """Run the autopilot. The time limit counts from ``started_at`` (default: now); every stage
    after the search has a deadline from the time left (:class:`automl.clock.Clock`).
    ``stop_ray``: shut down a Ray this fit started, inside the time limit. ``stream``: a streaming
    fit's plan (automl.streaming): ``train`` is its sample; exact figures and final fits added."""
    clock = Clock(started_at or time.time(), spec.time_limit)
    run_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(spec, train, validation=validation)
    if stream is not None:
        stream.annotate(prep.profile)
    prep.profile.save(run_dir / layout.PROFILE)
    (run_dir / layout.FOLDS).write_text(json.dumps(prep.folds.to_dict()))
    timings = dict(prep.timings)
    if "xgboost" in prep.families:  # few-row calls of its models walk compiled code: compile it now
        from automl.models.xgboost_trees import warm_walk

        warm_walk()
    outcome, ray_started = _search(
        spec,
        prep,
        run_dir=run_dir,
        clock=clock,
        resume=resume,
        timings=timings,
        stop_ray=stop_ray,
        stream=stream,
    )
    t = time.time()
    asm = assemble(spec, prep, outcome, test=test, deadline=clock.until(after_assemble_s(spec)))
    # scoring test_data is not part of the fit: the time limit does not count it
    timings["test_scoring_s"] = clock.excluded_s = asm.test_scoring_s
    timings["ensemble_s"] = time.time() - t - asm.test_scoring_s
    clock.cuts += asm.cuts
    board, run_info = _publish(spec, prep, outcome, asm, run_dir=run_dir, clock=clock, timings=timings)
    run_info.update(lineage or {})
    _write_run_info(run_dir, run_info)
    if spec.report:
        _write_report(run_dir, run_info, clock)
    _finish(run_info, clock, timings, spec)
    _write_run_info(run_dir, run_info)
    if spec.resources.storage:  # a cluster's shared storage: copy the finished run there too
        from automl.runtime import publish_run

        run_info["published_to"] = publish_run(run_dir, spec.resources.storage)
    if ray_started:
        _stop_ray(timings)
        _finish(run_info, clock, timings, spec)
    _write_run_info(run_dir, run_info)
    if clock.cuts:
        logger.warning("left out or cut short for time: %s", "; ".join(clock.cuts))
    logger.info("fit done in %.1fs: %s", timings["total_s"], asm.chosen)
    return FitResult(asm.predictor, board, prep.profile, run_info)


def _finish(run_info: dict[str, Any], clock: Clock, timings: dict[str, float], spec: FitSpec) -> None:
    timings["total_s"] = clock.elapsed()
    run_info["timings"] = timings
    run_info["overshoot_s"] = (timings["total_s"] - spec.time_limit) if spec.time_limit else None
    run_info["cut_for_time"] = clock.cuts


def _stop_ray(timings: dict[str, float]) -> None:
    import ray

    t = time.time()
    ray.shutdown()
    timings["ray_stop_s"] = time.time() - t


def _search(
    spec: FitSpec,
    prep: Prepared,
    *,
    run_dir: Path,
    clock: Clock,
    resume: bool,
    timings: dict[str, float],
    stop_ray: bool,
    stream: Any = None,
) -> tuple[SearchOutcome, bool]:
    """Start or join Ray, run the search, and make sure there is at least one model. Returns the
    outcome and whether the fit is to stop the Ray it started (whose time the clock keeps)."""
    from automl.runtime import ensure_ray
    from tuning import FinalsReserve, run_search  # the orchestrator: the one place automl imports tuning

    t = time.time()
    cluster = ensure_ray(spec.resources)
    timings["ray_init_s"] = time.time() - t
    stopping = stop_ray and cluster.started_here
    if stopping:
        clock.end_reserve_s = RAY_STOP_RESERVE_S
    data = prep.data
    gpus = spec.resources.gpus_per_trial
    if (gpus if gpus is not None else cluster.gpus) > 0:
        # families that can use a GPU (XGBoost, CatBoost, the MLP) train on it; the trials request one
        data.task = replace(data.task, use_gpu=True)
        logger.info("GPU: %.0f in the cluster; trials of GPU-capable families train on CUDA", cluster.gpus)
    # streaming: the finals end in time to score the deployed Predictor on the validation part
    keep = search_reserve(spec) + (stream.scoring_reserve_s(spec.time_limit) if stream else 0.0)
    finals_end = clock.until(keep)
    deadline = clock.until(keep + (stream.finals_reserve_s(spec.time_limit) if stream else 0.0))
    if deadline is not None and deadline - time.time() < MIN_SEARCH_S:
        # starting Tune and winding it down would take longer than what is left: the fallback
        # model below trains in this process instead
        why = f"no time left for a search after Ray's start-up ({timings['ray_init_s']:.0f}s)"
        clock.cut("the search: " + why)
        outcome = SearchOutcome([], why, 0.0, "", 0, spec.search.strategy)
    else:
        # the time kept after the search: a streaming fit's finals, or the refits (and stack layer)
        finals = FinalsReserve.start(stream, cluster, finals_end) if stream else None
        reserve = finals if stream else search_time_reserve(spec, data, deadline)
        outcome = run_search(
            data,
            prep.families,
            spec.search,
            cluster=cluster,
            resources=spec.resources,
            run_dir=run_dir,
            deadline=deadline,
            seed=spec.seed,
            resume=resume,
            extra_points=lb.warm_start_points(spec.search.warm_start, prep.families),
            reserve=reserve,
        )
    timings["search_s"] = outcome.wall_s
    if stream is not None and outcome.completed():  # streaming: the best configs on every row
        from tuning.distributed.finals import train_finals

        t = time.time()
        outcome.trials += train_finals(
            prep,
            outcome,
            stream,
            run_dir=run_dir,
            deadline=finals_end,
            cluster=cluster,
            resume=resume,
        )
        timings["finals_s"] = time.time() - t
    if not outcome.completed():
        # at least FALLBACK_MIN_S to train it, however late: a model is the one thing a fit must leave
        deadline = clock.until(after_assemble_s(spec) + FALLBACK_DEPLOY_S)
        deadline = None if deadline is None else max(deadline, time.time() + FALLBACK_MIN_S)
        outcome.trials.append(fallback_trial(prep.families, data, run_dir, deadline=deadline))
        if deadline is not None and outcome.trials[-1].stop_reason.endswith("time_budget"):
            clock.cut(
                f"the fallback model trained until the deadline ({outcome.trials[-1].iteration} iterations)"
            )
    return outcome, stopping


def _publish(
    spec: FitSpec,
    prep: Prepared,
    outcome: SearchOutcome,
    asm: Assembly,
    *,
    run_dir: Path,
    clock: Clock,
    timings: dict[str, float],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write the validation sample, the leaderboard and the Predictor (checksums last); return
    the leaderboard and run.json's content."""
    save_validation_sample(run_dir, prep.df, prep.folds, asm.chosen_oof, prep.classes, seed=spec.seed)
    board = lb.build(asm.rows, prep.metric.greater_is_better)
    lb.save(board, run_dir / layout.LEADERBOARD)
    t = time.time()
    asm.predictor.save(run_dir)
    if asm.deployment is not None:
        keep = min(REPORT_RESERVE_S, 0.1 * spec.time_limit) if spec.report and spec.time_limit else 0.0
        save_alternatives(
            asm.deployment,
            prep,
            run_dir / layout.OPTIONS_DIR,
            clock.cuts,
            calibrate=spec.ensemble.calibrate,
            deadline=clock.until(keep),
        )
    timings["save_s"] = time.time() - t
    timings["total_s"] = clock.elapsed()
    completed = [r for r in outcome.trials if r.status == "completed" and r.library_time_s is not None]
    overhead = [r.driver_wall_s - r.library_time_s for r in completed if r.driver_wall_s]
    run_info = {
        "target": spec.target,
        "problem_type": prep.profile.problem_type,
        "metric": prep.metric.name,
        "time_limit_s": spec.time_limit,
        "search_strategy": outcome.strategy,
        "ended_because": outcome.ended_because,
        "n_trials": len(outcome.trials),
        "search_notes": outcome.notes,
        "trials_by_status": pd.Series([r.status for r in outcome.trials]).value_counts().to_dict(),
        "concurrency": outcome.concurrency,
        "validation": prep.folds.describe(),
        "timings": timings,
        "overshoot_s": (timings["total_s"] - spec.time_limit) if spec.time_limit else None,
        "trial_overhead_s": {
            "mean": float(np.mean(overhead)) if overhead else None,
            "median": float(np.median(overhead)) if overhead else None,
            "max": float(np.max(overhead)) if overhead else None,
        },
        "experiment_path": outcome.experiment_path,
        "seed": spec.seed,
        **asm.info(),
    }
    return board, run_info


def _write_run_info(run_dir: Path, run_info: dict[str, Any]) -> None:
    (run_dir / layout.RUN_INFO).write_text(json.dumps(run_info, indent=1, default=str))


def _write_report(run_dir: Path, run_info: dict[str, Any], clock: Clock) -> None:
    """``report.html`` at the end of a fit, by the clock's end (sections that do not fit are left
    out and named); a failure is logged, never raised (the fit is done)."""
    t = time.time()
    if clock.left() < REPORT_MIN_S:
        clock.cut(f"report.html ({max(0.0, clock.left()):.1f}s left; `automl report {run_dir}` writes it)")
        return
    try:
        from automl.report.build import build_report

        skipped = build_report(run_dir, deadline=clock.end).skipped
        clock.cuts += [f"report section {s}" for s in skipped]
    except Exception as exc:  # noqa: BLE001  (a report must never fail a fit)
        logger.warning(
            "the report could not be written (%s: %s); run `automl report %s` to retry",
            type(exc).__name__,
            exc,
            run_dir,
        )
        return
    run_info["timings"]["report_s"] = time.time() - t


VALIDATION_SAMPLE_ROWS = 10_000
#: with less time left the report is not written (loading the run and drawing take about 1.5 s)
REPORT_MIN_S = 1.5


def save_validation_sample(
    run_dir: Path, df: pd.DataFrame, folds: Folds, oof: np.ndarray, classes: list[Any] | None, *, seed: int
) -> Path:
    """``validation_sample.parquet``: up to 10,000 training rows (seeded sample of the rows that
    have out-of-fold predictions) with their original columns, ``__row`` (position in the
    training table), ``__fold`` and the chosen model's out-of-fold prediction: ``__proba_<class>``
    per class for classifiers, ``__prediction`` for regression. Reports read it."""
    rows = np.nonzero(folds.oof_mask)[0]
    if len(rows) > VALIDATION_SAMPLE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, VALIDATION_SAMPLE_ROWS, replace=False))
    out = df.iloc[rows].reset_index(drop=True).copy()
    out["__row"] = rows
    out["__fold"] = folds.assignment[rows]
    if classes is not None:
        for j, c in enumerate(classes):
            out[f"__proba_{c}"] = oof[rows, j]
    else:
        out["__prediction"] = oof[rows]
    path = run_dir / layout.VALIDATION_SAMPLE
    out.to_parquet(path, index=False)
    return path
