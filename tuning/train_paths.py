"""Which path a trial trains on, and the Ray Train version of ``automl.training.train_candidate``.

In-process (default): the trial trains every fold itself (single-threaded library calls);
per-trial overhead stays well under a second. Ray Train: for large tables (at least
``ResourceConfig.ray_train_min_rows`` training rows), or when the user asks for several
workers (``train_workers >= 2``), the families that have a Ray Train path
(:mod:`tuning.distributed`: LightGBM, XGBoost, MLP) train each fold with a Ray Train trainer and
``train_workers`` workers. A Ray Train fit costs ~30 s of fixed set-up on this machine, which
only pays off for fits of many minutes.

A Ray Train trial reads the search's wrap-up flag (:mod:`tuning.wrapup`), not its deadline: Tune
stops a trial still training at the deadline, and the fit's fallback model is trained then.
Stopping boosting at the deadline was measured and not kept: in a 90 s fit of 200,000 rows on 2
workers, boosting stopped 5 s before the deadline (the time to hand the model back) kept 20 rounds
(ROC AUC 0.9427) and that candidate was deployed, where the fallback trained when the trial was
dropped reached 0.9540; stopped at the deadline itself, the model came back 3 s later, at Tune's
hard end, and was dropped anyway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.models.base import Family
from automl.target import family_params
from automl.training import CandidateResult, StepRecord, TrialData
from tuning import distributed
from tuning.wrapup import WrapUpFlag

#: Ray Train restarts of one fold's workers inside a search trial
TRIAL_TRAIN_RESTARTS = 1


class TrainingCutError(RuntimeError):
    """A fold-sequential trial was cut short before its last fold (it reports as failed)."""


@dataclass(frozen=True)
class TrainPath:
    ray_train: bool  # train supported families through Ray Train workers
    workers: int
    use_gpu: bool
    storage_path: str


def choose_path(
    n_rows: int, *, train_workers: int, min_rows: int, use_gpu: bool, storage_path: str
) -> TrainPath:
    ray_train = train_workers >= 2 or n_rows >= min_rows
    return TrainPath(ray_train, max(1, train_workers), use_gpu, storage_path)


def uses_ray_train(family: Family, path: TrainPath) -> bool:
    return path.ray_train and distributed.has_path(family.name)


def train_candidate_ray(
    family: Family,
    config: dict[str, Any],
    data: TrialData,
    path: TrainPath,
    trial_name: str,
    *,
    wrap_up: WrapUpFlag | None = None,
) -> CandidateResult:
    """Train every fold through Ray Train (one after another) and score it exactly (in the
    target's units: a transformed target's predictions are inverted and clipped first).

    Once the search raises ``wrap_up`` (it ended early: the time kept for refits, a target score,
    patience), boosting stops with its best round so far, as a trial in process does (stop
    reason ``search_ended``). The folds train one after another here, so a cut that comes before
    the last fold leaves a k-fold candidate without the other folds' models: it fails then,
    saying so. The search's deadline is not handed to the workers (the module's docstring says why).
    """
    t_start = time.perf_counter()
    n = len(data.y)
    k = data.n_outputs
    oof = np.full((n, k) if k else (n,), np.nan)
    models, scores, iters = [], [], []
    fit_time = 0.0
    history: list[StepRecord] = []
    cut: str | None = None
    params, tf = family_params(config), data.target_transform(config)
    for i, (tr, va) in enumerate(data.folds):
        w = data.weights[tr] if data.weights is not None else None
        valid = data.fold_matrix(family.recipe, i, va)
        job = distributed.job_from_matrices(
            params,
            data.task,
            data.fold_matrix(family.recipe, i, tr),
            tf.forward(data.y[tr]),
            w,
            valid,
            tf.forward(data.y[va]),
            metric=data.metric.name,
            num_workers=path.workers,
            use_gpu=path.use_gpu and family.supports_gpu,
            storage_path=path.storage_path,
            name=f"{trial_name}-fold{i}",
            # the trial reports an error instead of raising it (so Tune does not retry a config the
            # library rejects): Ray Train itself restarts the workers once after a worker error
            # (a 2-worker LightGBM fold once failed so in CI and passed when run again)
            max_failures=TRIAL_TRAIN_RESTARTS,
            wrap_up=wrap_up,
        )
        done = distributed.fit(family.name, job)
        cut = _cut(done, i, len(data.folds))
        valid_pred = done.model.predict(valid)
        step = data.output_step(config, tr)
        if step is not None:
            valid_pred = step.apply(valid_pred)
        fit_time += done.seconds
        oof[va] = valid_pred
        scores.append(data.metric.score(data.y[va], valid_pred))
        models.append(done.model)
        iters.append(done.best_iteration)
        history.append(
            StepRecord(i + 1, done.best_iteration, float(np.mean(scores)), time.perf_counter() - t_start)
        )
    return CandidateResult(
        family=family.name,
        config=dict(config),
        fold_scores=[float(s) for s in scores],
        best_iteration=int(np.max(iters)),
        oof=oof,
        models=models,
        fit_time_s=fit_time,
        wall_time_s=time.perf_counter() - t_start,
        stop_reason=cut or "ray_train",
        history=history,
    )


def _cut(done: distributed.DistributedFit, fold: int, k: int) -> str | None:
    """``search_ended`` when boosting of fold ``fold`` (0-based) was cut short by the search's
    wrap-up flag, else None; raises :class:`TrainingCutError` when folds remain."""
    if not done.search_ended:
        return None
    if fold + 1 < k:
        raise TrainingCutError(
            f"the search ended during fold {fold + 1} of {k} on the Ray Train path, which trains "
            "the folds one after another: the candidate has no models for the other folds"
        )
    return "search_ended"
