"""run_search: the only place a ``tune.Tuner`` is built."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from automl import layout
from automl.config import ResourceConfig, SearchConfig
from automl.models import Family
from automl.runtime import ClusterInfo, check_storage, storage_uri
from automl.training import TrialData
from automl.trials import SearchOutcome, TrialRecord, is_failed, is_final
from tuning.budget import BudgetGuard
from tuning.progress import ProgressCallback
from tuning.space import unflatten
from tuning.stoppers import SearchStopper
from tuning.strategies import make_strategy
from tuning.train_paths import RAY_TRAIN_FAMILIES, choose_path
from tuning.trainable import TrialSettings, run_trial

logger = logging.getLogger(__name__)

EXPERIMENT = layout.SEARCH_DIR
#: seconds trials get after the deadline to hand in their final checkpoint
GRACE_S = 3.0
#: overrides TrialSettings.checkpoint_every_s (seconds between mid-trial checkpoints)
CHECKPOINT_EVERY_ENV = "AUTOML_CHECKPOINT_EVERY_S"


def experiment_path(run_dir: Path, resources: ResourceConfig) -> tuple[str, str]:
    """(storage_path, name) of the Tune experiment of a run: ``<storage>/<run name>-search``
    with ``ResourceConfig.storage`` (a shared path or s3:// URI), else ``<run_dir>/search``."""
    if resources.storage:
        return storage_uri(resources.storage), f"{run_dir.name}-{EXPERIMENT}"
    return str(run_dir.resolve()), EXPERIMENT


def run_search(
    data: TrialData,
    families: dict[str, Family],
    cfg: SearchConfig,
    *,
    cluster: ClusterInfo,
    resources: ResourceConfig,
    run_dir: Path,
    deadline: float | None,
    seed: int,
    resume: bool = False,
    extra_points: list[dict[str, Any]] | None = None,
) -> SearchOutcome:
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune

    t0 = time.time()
    gpus = resources.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if cluster.gpus >= 1 and any(f.supports_gpu for f in families.values()) else 0.0
    cpus = resources.cpus_per_trial
    # one trial per CPU slot; trials of GPU-capable families also ask for a GPU (Tune queues them
    # while the GPUs are busy), so CPU-only families keep every CPU busy on a GPU cluster
    slots = int(cluster.cpus // cpus)
    concurrency = max(1, min(cfg.max_concurrent_trials or slots, slots))
    max_trials = cfg.max_trials or 100_000
    reproducible = deadline is None and cfg.max_trials is not None
    strategy = make_strategy(
        cfg,
        families,
        data.task,
        seed=seed,
        max_trials=max_trials,
        first_points=extra_points,
        reproducible=reproducible,
    )
    guard = None
    if deadline is not None and strategy.search_alg is not None:
        guard = strategy.search_alg = BudgetGuard(
            strategy.search_alg, deadline, {n: f.relative_cost for n, f in families.items()}
        )
    tune_concurrency: int | None = concurrency
    if reproducible and strategy.search_alg is not None:
        # batches: the searcher sees every result of a batch before it suggests the next, so
        # its suggestions do not depend on which concurrent trial finished first
        from ray.tune.search import ConcurrencyLimiter

        strategy.search_alg = ConcurrencyLimiter(strategy.search_alg, max_concurrent=concurrency, batch=True)
        tune_concurrency = None
    metric = data.metric
    target = metric.objective(cfg.target_score) if cfg.target_score is not None else None
    stopper = SearchStopper(target_objective=target, patience=cfg.patience)
    progress = ProgressCallback(
        metric_name=metric.name, greater_is_better=metric.greater_is_better, deadline=deadline
    )
    storage, name = experiment_path(run_dir, resources)
    if resources.storage or cluster.nodes > 1:
        check_storage(storage, cluster)  # every node must reach it to save and restore checkpoints
    path = choose_path(
        data.task.n_rows,
        train_workers=resources.train_workers,
        min_rows=resources.ray_train_min_rows,
        use_gpu=gpus > 0,
        storage_path=str((run_dir / layout.TRAIN_DIR).resolve())
        if not resources.storage
        else f"{storage}/{name}-train",
    )
    if path.ray_train:
        logger.info(
            "Ray Train path: %s train with %d worker(s) per fold (%s)",
            list(RAY_TRAIN_FAMILIES),
            path.workers,
            "train_workers >= 2"
            if resources.train_workers >= 2
            else f"{data.task.n_rows} rows >= ray_train_min_rows={resources.ray_train_min_rows}",
        )
        concurrency = max(1, min(concurrency, int(cluster.cpus // (path.workers * 0.5 + 0.01))))
    settings = TrialSettings(
        deadline=deadline,
        path=path,
        checkpoint_steps=strategy.checkpoint_steps,
        checkpoint_every_s=_checkpoint_every_s(),
    )

    def trial_resources(config: dict[str, Any]) -> dict[str, float]:
        family = unflatten(config)[0]
        if path.ray_train and family in RAY_TRAIN_FAMILIES:
            return {"cpu": 0.01, "gpu": 0}  # its Ray Train workers request their own CPUs/GPUs
        return {"cpu": cpus, "gpu": gpus if families[family].supports_gpu else 0}

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, settings=settings), trial_resources
    )
    budget = None if deadline is None else max(1.0, deadline - time.time() + GRACE_S)
    exp_path = f"{storage}/{name}"
    callbacks: list[Any] = [progress]
    if cfg.mlflow:
        callbacks.append(_mlflow_callback(cfg.mlflow, run_dir, name))
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        stop=stopper,
        callbacks=callbacks,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=2),
        # keeping one checkpoint per trial makes Tune snapshot the experiment each time a trial
        # checkpoints, so a finished trial is durable at once: a resumed search never re-runs it
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    if resume and tune.Tuner.can_restore(exp_path):
        logger.info("resuming the search in %s", exp_path)
        tuner = tune.Tuner.restore(
            exp_path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=strategy.param_space,
            tune_config=tune.TuneConfig(
                search_alg=strategy.search_alg,
                scheduler=strategy.scheduler,
                num_samples=strategy.num_samples if strategy.name == "grid" else max_trials,
                max_concurrent_trials=tune_concurrency,
                time_budget_s=budget,
                reuse_actors=True,
            ),
            run_config=run_config,
        )
    logger.info(
        "search: %s, %d concurrent trial(s) of %.0f CPU / %.0f GPU, budget %s",
        strategy.name,
        concurrency,
        cpus,
        gpus,
        f"{budget:.0f}s" if budget else "none",
    )
    grid = tuner.fit()
    wall = time.time() - t0
    retries = _retries(grid)
    records = [
        _record(r, progress, t0, deadline, retries=retries, cache_dir=run_dir / EXPERIMENT) for r in grid
    ]
    if any(r.retries for r in records):
        logger.info(
            "trials retried after a failure: %s", {r.trial_id: r.retries for r in records if r.retries}
        )
    ended = _why_ended(stopper, records, cfg, deadline, strategy.name, guard)
    logger.info("search ended: %s (%d trials in %.1fs)", ended, len(records), wall)
    skipped = [f"skipped for lack of time: {s}" for s in (guard.skipped if guard else [])]
    return SearchOutcome(records, ended, wall, exp_path, concurrency, strategy.name, notes=skipped)


def _checkpoint_every_s() -> float:
    text = os.environ.get(CHECKPOINT_EVERY_ENV)
    if not text:
        return TrialSettings.checkpoint_every_s
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        from automl.exceptions import ConfigError

        raise ConfigError(f"{CHECKPOINT_EVERY_ENV} must be a positive number of seconds; got {text!r}")
    logger.info("mid-trial checkpoints every %.1fs (%s)", value, CHECKPOINT_EVERY_ENV)
    return value


def _retries(grid: Any) -> dict[str, int]:
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


def _mlflow_callback(setting: bool | str, run_dir: Path, name: str) -> Any:
    try:
        import mlflow  # noqa: F401
        from ray.air.integrations.mlflow import MLflowLoggerCallback
    except ImportError:
        from automl.exceptions import ConfigError

        raise ConfigError("SearchConfig(mlflow=...) needs MLflow: pip install mlflow-skinny") from None
    uri = setting if isinstance(setting, str) else (run_dir.resolve() / "mlruns").as_uri()
    if not isinstance(setting, str):
        # the run-local default is a file store (no server needed), which MLflow 3 asks to opt into
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    logger.info("logging trials to MLflow at %s (experiment %r)", uri, run_dir.name)
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=run_dir.name, save_artifact=False)


def _record(
    result: Any,
    progress: ProgressCallback,
    t0: float,
    deadline: float | None,
    *,
    retries: dict[str, int] | None = None,
    cache_dir: Path | None = None,
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
        if result.checkpoint is not None:
            rec.checkpoint = (
                _local_checkpoint(result.checkpoint, cache_dir)
                if cache_dir is not None
                else result.checkpoint.path
            )
    else:
        rec.status = "stopped"
        ended = times[1] if times and times[1] else time.time()
        if deadline is not None and ended >= deadline:
            rec.stop_reason = "time limit"
        else:
            rec.stop_reason = "early-stopped by the scheduler"
    return rec


def _why_ended(
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
