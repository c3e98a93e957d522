"""run_search: the only place a ``tune.Tuner`` is built."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl import layout
from automl.config import ResourceConfig, SearchConfig
from automl.models import Family
from automl.row_rungs import RowRungPlan
from automl.runtime import ClusterInfo, check_storage, storage_uri
from automl.training import TrialData
from automl.trials import SearchOutcome
from tuning import distributed
from tuning.budget import BudgetGuard
from tuning.linger import EndStoppedTrials
from tuning.progress import ProgressCallback
from tuning.records import record, retries_of, why_ended
from tuning.resume import live_guard, renewed
from tuning.rungs import annotate, setup_rungs
from tuning.space import unflatten
from tuning.stoppers import WRAP_GRACE_MAX_S, ReserveWatch, SearchStopper, wrap_grace_s
from tuning.strategies import make_strategy
from tuning.train_paths import TrainPath, choose_path
from tuning.trainable import TrialSettings, run_trial
from tuning.wrapup import WrapUpFlag

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


@dataclass
class _Setup:
    """How the search runs: the strategy (searcher, scheduler, space), concurrency, resources
    per trial and where trials train."""

    strategy: Any
    guard: BudgetGuard | None
    concurrency: int
    tune_concurrency: int | None  # None: a ConcurrencyLimiter batches the searcher
    max_trials: int
    cpus: float
    gpus: float
    path: TrainPath
    storage: str
    name: str
    rungs: RowRungPlan | None = None  # row fidelity (None: every trial on the run's folds)
    rungs_note: str = ""  # the row fidelity decision and its reason


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
    reserve: Any = None,
) -> SearchOutcome:
    """``reserve``: an object that may end the search early to keep time for what follows it
    (``observe(family, result)`` for each completed candidate, ``reason()``: why to end now, or
    None): :class:`tuning.distributed.reserve.FinalsReserve` for a streaming fit's final fits,
    :class:`automl.refit.RefitReserve` for refitting the best candidates on every row."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    t0 = time.time()
    setup = _setup(data, families, cfg, cluster, resources, run_dir, deadline, seed, extra_points)
    metric = data.metric
    target = metric.objective(cfg.target_score) if cfg.target_score is not None else None
    stopper = SearchStopper(
        target_objective=target,
        patience=cfg.patience,
        reserve=reserve,
        grace_s=wrap_grace_s(deadline - t0) if deadline is not None else WRAP_GRACE_MAX_S,
        # trials get GRACE_S after the deadline to hand in their final checkpoint
        hard_end=None if deadline is None else max(time.time() + 1.0, deadline + GRACE_S),
    )
    progress = ProgressCallback(
        metric_name=metric.name, greater_is_better=metric.greater_is_better, deadline=deadline
    )
    # the trials of a searcher that can be closed wrap up when the search is ended early; a grid
    # (no searcher to close) would go on launching its points, so Tune stops its trials instead
    flag = WrapUpFlag.new() if setup.guard is not None else None
    tuner = _tuner(setup, data, families, cfg, run_dir, deadline, resume, [stopper, progress], flag)
    guard = live_guard(tuner, setup.guard)  # on resume, the restored searcher Tune runs
    if flag is not None and guard is not None:
        stopper.wrap_up = flag.ending(guard)
    try:
        with stopper.live():
            grid = tuner.fit()
    finally:
        if flag is not None:
            flag.clear()
    wall = time.time() - t0
    retries, ended = retries_of(grid), stopper.ended()
    cache = run_dir / EXPERIMENT
    records = [record(r, progress, t0, deadline, retries=retries, cache_dir=cache, ended=ended) for r in grid]
    if setup.rungs is not None:
        annotate(records, setup.rungs)
    if any(r.retries for r in records):
        logger.info(
            "trials retried after a failure: %s", {r.trial_id: r.retries for r in records if r.retries}
        )
    ended = why_ended(stopper, records, cfg, deadline, setup.strategy.name, guard)
    logger.info("search ended: %s (%d trials in %.1fs)", ended, len(records), wall)
    skipped = [f"skipped for lack of time: {s}" for s in (guard.skipped if guard else [])]
    skipped.insert(0, setup.rungs_note)
    exp_path = f"{setup.storage}/{setup.name}"
    return SearchOutcome(
        records, ended, wall, exp_path, setup.concurrency, setup.strategy.name, notes=skipped
    )


def _setup(
    data: TrialData,
    families: dict[str, Family],
    cfg: SearchConfig,
    cluster: ClusterInfo,
    resources: ResourceConfig,
    run_dir: Path,
    deadline: float | None,
    seed: int,
    extra_points: list[dict[str, Any]] | None,
) -> _Setup:
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
    budget_s = None if deadline is None else max(1.0, deadline - time.time())
    rungs, note = setup_rungs(strategy, cfg, data, budget_s=budget_s, seed=seed)
    guard = None
    if deadline is not None and strategy.search_alg is not None:
        costs = {n: f.relative_cost for n, f in families.items()}
        guard = strategy.search_alg = BudgetGuard(strategy.search_alg, deadline, costs, rungs)
    tune_concurrency: int | None = concurrency
    if reproducible and strategy.search_alg is not None:
        _batches(strategy, concurrency)
        tune_concurrency = None
    storage, name = experiment_path(run_dir, resources)
    if resources.storage or cluster.nodes > 1:
        check_storage(storage, cluster)  # every node must reach it to save and restore checkpoints
    train_storage = (
        f"{storage}/{name}-train" if resources.storage else str((run_dir / layout.TRAIN_DIR).resolve())
    )
    path = choose_path(
        data.task.n_rows,
        train_workers=resources.train_workers,
        min_rows=resources.ray_train_min_rows,
        use_gpu=gpus > 0,
        storage_path=train_storage,
    )
    if path.ray_train:
        why = (
            "train_workers >= 2"
            if resources.train_workers >= 2
            else f"{data.task.n_rows} rows >= ray_train_min_rows={resources.ray_train_min_rows}"
        )
        logger.info(
            "Ray Train path: %s train with %d worker(s) per fold (%s)",
            list(distributed.families()),
            path.workers,
            why,
        )
        concurrency = max(1, min(concurrency, int(cluster.cpus // (path.workers * 0.5 + 0.01))))
    return _Setup(
        strategy,
        guard,
        concurrency,
        tune_concurrency,
        max_trials,
        cpus,
        gpus,
        path,
        storage,
        name,
        rungs=rungs,
        rungs_note=note,
    )


def _batches(strategy: Any, concurrency: int) -> None:
    """Batches: the searcher sees every result of a batch before it suggests the next, so its
    suggestions do not depend on which concurrent trial finished first."""
    from ray.tune.search import ConcurrencyLimiter

    strategy.search_alg = ConcurrencyLimiter(strategy.search_alg, max_concurrent=concurrency, batch=True)


def _tuner(
    setup: _Setup,
    data: TrialData,
    families: dict[str, Family],
    cfg: SearchConfig,
    run_dir: Path,
    deadline: float | None,
    resume: bool,
    callbacks: list[Any],
    flag: WrapUpFlag | None = None,
) -> Any:
    """A new ``tune.Tuner`` for the search, or the restored one of an interrupted search."""
    from ray import tune

    stopper, progress = callbacks
    path, strategy = setup.path, setup.strategy
    settings = TrialSettings(
        deadline=deadline,
        path=path,
        checkpoint_steps=strategy.checkpoint_steps,
        checkpoint_every_s=_checkpoint_every_s(),
        rungs=setup.rungs,
        wrap_up=flag,
    )

    def trial_resources(config: dict[str, Any]) -> dict[str, float]:
        family = unflatten(config)[0]
        if path.ray_train and distributed.has_path(family):
            return {"cpu": 0.01, "gpu": 0}  # its Ray Train workers request their own CPUs/GPUs
        return {"cpu": setup.cpus, "gpu": setup.gpus if families[family].supports_gpu else 0}

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, settings=settings), trial_resources
    )
    budget = None if stopper.hard_end is None else stopper.hard_end - time.time()
    exp_path = f"{setup.storage}/{setup.name}"
    tune_callbacks: list[Any] = [progress, EndStoppedTrials(stopper)]
    if stopper.reserve is not None:
        tune_callbacks.append(ReserveWatch(stopper.reserve, setup.rungs))
    if cfg.mlflow:
        tune_callbacks.append(_mlflow_callback(cfg.mlflow, run_dir, setup.name))
    logger.info(
        "search: %s, %d concurrent trial(s) of %.0f CPU / %.0f GPU, budget %s",
        strategy.name,
        setup.concurrency,
        setup.cpus,
        setup.gpus,
        f"{budget:.0f}s" if budget else "none",
    )
    if resume and tune.Tuner.can_restore(exp_path):
        logger.info("resuming the search in %s", exp_path)
        tuner = tune.Tuner.restore(
            exp_path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
        return renewed(tuner, stopper, tune_callbacks, deadline=deadline)
    run_config = tune.RunConfig(
        name=setup.name,
        storage_path=setup.storage,
        stop=stopper,
        callbacks=tune_callbacks,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=2),
        # keeping one checkpoint per trial makes Tune snapshot the experiment each time a trial
        # checkpoints, so a finished trial is durable at once: a resumed search never re-runs it
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    return tune.Tuner(
        trainable,
        param_space=strategy.param_space,
        tune_config=tune.TuneConfig(
            search_alg=strategy.search_alg,
            scheduler=strategy.scheduler,
            num_samples=strategy.num_samples if strategy.name == "grid" else setup.max_trials,
            max_concurrent_trials=setup.tune_concurrency,
            time_budget_s=None,  # the stopper's hard_end
            reuse_actors=True,
        ),
        run_config=run_config,
    )


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
