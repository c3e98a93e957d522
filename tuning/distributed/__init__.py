"""Ray Train paths of the model families: one module per family, registered by the family's name.

A family trains one validation fold data-parallel on Ray Train workers when a module here
registers a fit for it (``@register("lightgbm")``); ``has_path`` and ``fit`` are all the rest of
the code asks, so there is no list of distributed families to keep in step anywhere else. Every
fit takes a :class:`DistributedJob`: the config, Ray Datasets in the layout of
:mod:`tuning.distributed.frames` ("train" split across workers, "validation" read whole by each),
and where to run; it returns the model of the best iteration.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from automl.exceptions import ConfigError
from automl.models.base import FittedModel, Task
from automl.preprocessing import FeatureMatrix
from tuning.distributed.frames import FeatureLayout, to_frame
from tuning.wrapup import WrapUpFlag


@dataclass(frozen=True)
class Labels:
    """The training and validation labels as arrays, for fits that need label statistics
    before training (the MLP scales regression targets and measures a constant prediction)."""

    y_train: np.ndarray
    w_train: np.ndarray | None
    y_valid: np.ndarray


@dataclass(frozen=True)
class DistributedJob:
    """One data-parallel fit of one config on one validation fold."""

    config: dict[str, Any]
    task: Task
    metric: str  # the search metric's name (automl.metrics)
    datasets: dict[str, Any]  # "train", "validation": ray.data.Dataset in the frames layout
    layout: FeatureLayout
    weighted: bool
    n_train_rows: int
    num_workers: int
    use_gpu: bool
    storage_path: str  # absolute path or URI where Ray Train keeps the run
    name: str
    report_to_tune: bool = True  # forward every worker report to the Tune trial (ASHA can stop it)
    labels: Labels | None = None
    max_epochs: int | None = None  # the MLP's epoch cap (tests)
    cpus_per_worker: float | None = None
    placement: str = "PACK"  # Ray Train's placement strategy of the workers ("SPREAD": across nodes)
    #: boosting stops at this time.time() (all workers at the same round), keeping the best round
    #: so far; None: no deadline (the XGBoost and LightGBM paths; the MLP ignores it)
    deadline: float | None = None
    #: Ray Train restarts the workers this many times after one dies (a lost node: the restarted
    #: group is placed on the nodes left); search trials set it too (tuning.train_paths)
    max_failures: int = 0
    #: the search's wrap-up flag (a search trial's job): once raised, boosting stops as at the
    #: deadline, keeping the best round so far; the MLP stops after the epoch, keeping its best
    wrap_up: WrapUpFlag | None = None


@dataclass(frozen=True)
class DistributedFit:
    model: FittedModel
    best_iteration: int  # boosting rounds or epochs of the returned model
    seconds: float  # wall time of the trainer
    stopped_at_deadline: bool = False  # boosting ended at ``DistributedJob.deadline``, not by itself
    search_ended: bool = False  # training ended when the search raised ``DistributedJob.wrap_up``


FitFn = Callable[[DistributedJob], DistributedFit]
_FITS: dict[str, FitFn] = {}


def register(family: str) -> Callable[[FitFn], FitFn]:
    """Decorator: ``fn(job) -> DistributedFit`` trains ``family`` on Ray Train."""

    def add(fn: FitFn) -> FitFn:
        if family in _FITS:
            raise ConfigError(f"model family {family!r} already has a Ray Train path")
        _FITS[family] = fn
        return fn

    return add


def _load() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "frames" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def families() -> tuple[str, ...]:
    """Names of the families that have a Ray Train path."""
    _load()
    return tuple(sorted(_FITS))


def has_path(family: str) -> bool:
    return family in families()


def fit(family: str, job: DistributedJob) -> DistributedFit:
    if not has_path(family):
        raise ConfigError(f"model family {family!r} has no Ray Train path; those that do: {list(families())}")
    t0 = time.perf_counter()
    out = _FITS[family](job)
    return replace(out, seconds=time.perf_counter() - t0)


def job_from_matrices(
    family_config: dict[str, Any],
    task: Task,
    train: FeatureMatrix,
    y: np.ndarray,
    w: np.ndarray | None,
    valid: FeatureMatrix,
    y_valid: np.ndarray,
    **where: Any,
) -> DistributedJob:
    """A job over in-memory matrices (memory mode): they go to the object store as Ray Datasets."""
    import ray.data

    datasets = {
        "train": ray.data.from_pandas(to_frame(train, y, w)),
        "validation": ray.data.from_pandas(to_frame(valid, y_valid, None)),
    }
    return DistributedJob(
        config=family_config,
        task=task,
        datasets=datasets,
        layout=FeatureLayout.of(train),
        weighted=w is not None,
        n_train_rows=train.n_rows,
        labels=Labels(np.asarray(y), w, np.asarray(y_valid)),
        **where,
    )


__all__ = ["DistributedFit", "DistributedJob", "Labels", "families", "fit", "has_path", "job_from_matrices"]
