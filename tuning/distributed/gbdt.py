"""What the data-parallel XGBoost and LightGBM fits share: the library's native eval metric for
our search metric, the reports workers send, the trainer's scaling and each worker's data.

Workers evaluate the library's native metric on the validation set every few rounds and report
it, converted to the search objective when an exact equivalent exists (roc_auc = auc,
log_loss, accuracy = 1 - error, rmse, mae); other metrics are tracked through a proxy (log-loss
or rmse) while training, and the final score is always the exact metric, computed by the trial on
the full validation rows. Reports reach Tune through Ray's ``TuneReportCallback``, so ASHA can
stop the trial.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.problem import ProblemType
from automl.trials import FAILED_OBJECTIVE
from tuning.distributed import DistributedFit
from tuning.distributed.frames import LABEL, WEIGHT, FeatureLayout

# our metric -> native name per library and problem ("bin" / "multi" / "reg"), and whether the
# native value *is* our metric (after a transform) or only a proxy
_NATIVE = {
    "xgboost": {
        "roc_auc": {"bin": "auc", "multi": "auc"},
        "log_loss": {"bin": "logloss", "multi": "mlogloss"},
        "accuracy": {"bin": "error", "multi": "merror"},
        "rmse": {"reg": "rmse"},
        "mae": {"reg": "mae"},
    },
    "lightgbm": {
        "roc_auc": {"bin": "auc"},
        "log_loss": {"bin": "binary_logloss", "multi": "multi_logloss"},
        "accuracy": {"bin": "binary_error", "multi": "multi_error"},
        "rmse": {"reg": "rmse"},
        "mae": {"reg": "l1"},
    },
}
_PROXY = {
    "xgboost": {"bin": "logloss", "multi": "mlogloss", "reg": "rmse"},
    "lightgbm": {"bin": "binary_logloss", "multi": "multi_logloss", "reg": "rmse"},
}


@dataclass(frozen=True)
class NativeMetric:
    name: str  # the library's eval metric
    exact: bool  # True: converts to the search metric; False: a proxy during training only
    flip: bool  # value is an error rate: score = 1 - value
    higher_is_better: bool


def native_metric(library: str, metric: str, problem: ProblemType) -> NativeMetric:
    kind = {"binary": "bin", "multiclass": "multi", "regression": "reg"}[problem.value]
    name = _NATIVE[library].get(metric, {}).get(kind)
    if name is None:
        return NativeMetric(_PROXY[library][kind], False, False, False)
    return NativeMetric(name, True, metric == "accuracy", metric in ("roc_auc", "accuracy"))


def loop_config(library: str, job: Any) -> dict[str, Any]:
    """The part of a worker loop's config both libraries share (rounds, patience, metric, deadline)."""
    from automl.models.gbdt import MAX_ROUNDS, patience_rounds, rounds_per_step

    config = job.config
    native = native_metric(library, job.metric, job.task.problem_type)
    return {
        "deadline": job.deadline,
        "wrap_up": job.wrap_up.key if job.wrap_up is not None else None,
        "rounds": int(config.get("n_estimators", MAX_ROUNDS)),
        "patience": patience_rounds(config),
        "step": rounds_per_step(config),
        "native": native.name,
        "exact": native.exact,
        "flip": native.flip,
        "higher": native.higher_is_better,
    }


def fit_result(model: Any, metrics: dict[str, Any]) -> DistributedFit:
    """A trainer's fit from its model and rank 0's final report (:meth:`Tracker.final`): the
    rounds kept and whether boosting was cut short by the deadline or the search's end."""
    return DistributedFit(
        model,
        int(metrics.get("iteration", model.n_iterations)),
        0.0,
        bool(metrics.get("stopped_at_deadline")),
        bool(metrics.get("search_ended")),
    )


def report(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
    import ray.train

    ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    ray.train.report(metrics, checkpoint=ckpt)


class Tracker:
    """Turns native metric values into the trial's step reports (objective, best so far, score),
    and says when to stop boosting: at the job's deadline or once the search's wrap-up flag is up."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from tuning.wrapup import WrapUpFlag

        self.flip, self.higher, self.exact = cfg["flip"], cfg["higher"], cfg["exact"]
        self.deadline = cfg.get("deadline")
        key = cfg.get("wrap_up")
        self.wrap_up = WrapUpFlag(key).reader() if key else None
        self.best = float("-inf")
        self.best_iteration = 0  # the step report's round of the best objective (1-based)
        self.stopped_at_deadline = False
        self.search_ended = False

    def final(self, best_iteration: int) -> dict[str, Any]:
        """The last report of a fold (Tune sees it too, so it carries the search metric)."""
        best = self.best if self.best > float("-inf") else FAILED_OBJECTIVE
        return {
            "objective": best,
            "best_objective": best,
            "iteration": best_iteration,
            "fold_finished": True,
            "stopped_at_deadline": self.stopped_at_deadline,
            "search_ended": self.search_ended,
        }

    def stop_now(self) -> bool:
        """Whether to stop boosting now: the deadline has come, or the search raised its wrap-up
        flag. Called by every worker at the same round (a step report's), it is rank 0's clock and
        rank 0's reading of the flag that decide, so all workers stop together: one that went on
        alone would wait for the others in its next allreduce forever."""
        if self.deadline is None and self.wrap_up is None:
            return False
        from ray.train import get_context
        from ray.train.collective import broadcast_from_rank_zero

        why = self._why_stop() if get_context().get_world_rank() == 0 else None
        why = broadcast_from_rank_zero(why)
        self.stopped_at_deadline, self.search_ended = why == "deadline", why == "search_ended"
        return why is not None

    def _why_stop(self) -> str | None:
        if self.deadline is not None and time.time() >= self.deadline:
            return "deadline"
        if self.wrap_up is not None and self.wrap_up():
            return "search_ended"
        return None

    def metrics(self, value: float, iteration: int) -> dict[str, Any]:
        score = 1.0 - value if self.flip else value
        objective = score if self.higher else -score
        if objective > self.best:
            self.best_iteration = iteration
        self.best = max(self.best, objective)
        return {
            "objective": objective,
            "best_objective": self.best,
            "score": score,
            "iteration": iteration,
            "native_metric_exact": self.exact,
        }


#: rows per batch a worker reads from its shard (one dense block each)
SHARD_BATCH_ROWS = 65_536


def dense_chunks(
    batches: Iterable[dict[str, np.ndarray]], layout: FeatureLayout
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """Numpy batches of the frames layout as (dense feature blocks, one per batch; labels; weights
    or None). The blocks are not joined: LightGBM builds its Dataset from the list as it is
    (:func:`tuning.distributed.lightgbm.native_dataset`), so a shard's features are held once, not
    twice while one big array is copied together (at 10M rows that copy was ~800 MB per worker,
    on every worker at the same moment). Labels and weights are copied too: kept as the zero-copy
    views ``iter_batches`` gives, they pinned every block of the shard in the object store until
    the last one was read (at 10M rows the store peaked at 1.87 GB while the workers read)."""
    xs, ys, ws = [], [], []
    for batch in batches:  # copies only: a batch's arrays are views of its block in the object store
        xs.append(layout.dense(batch))
        ys.append(np.array(batch[LABEL], copy=True))
        if WEIGHT in batch:
            ws.append(np.array(batch[WEIGHT], dtype=np.float32, copy=True))
    if not xs:
        return [np.zeros((0, layout.n_num + layout.n_cat), np.float32)], np.zeros(0), None
    return xs, np.concatenate(ys), (np.concatenate(ws) if ws else None)


def shard_chunks(name: str, layout: FeatureLayout) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """This worker's share of dataset ``name`` as :func:`dense_chunks`, read batch by batch."""
    import ray.train

    shard = ray.train.get_dataset_shard(name)
    return dense_chunks(shard.iter_batches(batch_format="numpy", batch_size=SHARD_BATCH_ROWS), layout)


def shard_arrays(name: str, layout: FeatureLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`shard_chunks` with the blocks joined into one matrix (for XGBoost's DMatrix)."""
    xs, y, w = shard_chunks(name, layout)
    return (xs[0] if len(xs) == 1 else np.concatenate(xs)), y, w


def scaling_config(
    num_workers: int, use_gpu: bool, cpus_per_worker: float | None = None, placement: str = "PACK"
) -> Any:
    """Workers of 1 CPU, or 0.5 when there are several: the Tune trial that drives the trainer
    holds a slot of its own, and on 2 CPUs two 1-CPU workers plus Ray Data's read tasks would
    wait for each other (the Train V1 fallback with 2 workers on 2 CPUs hung waiting for a third).
    ``placement`` "SPREAD" puts the workers on different nodes where it can (streaming finals)."""
    from ray.train import ScalingConfig

    cpus = cpus_per_worker or (0.5 if num_workers > 1 else 1.0)
    return ScalingConfig(
        num_workers=num_workers,
        use_gpu=use_gpu,
        resources_per_worker={"CPU": cpus, **({"GPU": 1} if use_gpu else {})},
        placement_strategy=placement,
    )


def run_config(job: Any) -> Any:
    from ray.train import FailureConfig, RunConfig

    callbacks = []
    if job.report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    return RunConfig(
        name=job.name,
        storage_path=job.storage_path,
        callbacks=callbacks,
        failure_config=FailureConfig(max_failures=job.max_failures),
    )
