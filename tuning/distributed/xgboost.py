"""XGBoost on Ray Train: ``XGBoostTrainer`` with one worker loop per worker (rabit allreduce)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from tuning.distributed import DistributedFit, DistributedJob, register
from tuning.distributed.frames import data_config
from tuning.distributed.gbdt import (
    Tracker,
    fit_result,
    loop_config,
    report,
    run_config,
    scaling_config,
    shard_arrays,
)


def xgboost_loop(cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import xgboost

    def dmatrix(name: str) -> Any:
        X, y, w = shard_arrays(name, cfg["layout"])
        return xgboost.DMatrix(
            X, label=y, weight=w, feature_types=cfg["feature_types"], enable_categorical=True
        )

    dtrain, dvalid = dmatrix("train"), dmatrix("validation")
    tracker = Tracker(cfg)
    rank = ray.train.get_context().get_world_rank()

    class Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if (epoch + 1) % cfg["step"] == 0:
                report(tracker.metrics(float(evals_log["valid"][cfg["native"]][-1]), epoch + 1))
                return tracker.stop_now()  # True stops; the booster keeps its best_iteration
            return False

    params = {**cfg["params"], "eval_metric": cfg["native"]}
    bst = xgboost.train(
        params,
        dtrain,
        num_boost_round=cfg["rounds"],
        evals=[(dvalid, "valid")],
        early_stopping_rounds=cfg["patience"],
        callbacks=[Report()],
        verbose_eval=False,
    )
    best = int(getattr(bst, "best_iteration", bst.num_boosted_rounds() - 1)) + 1
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            bst[:best].save_model(os.path.join(d, "model.ubj"))
        report(tracker.final(best), d if rank == 0 else None)


@register("xgboost")
def fit_xgboost(job: DistributedJob) -> DistributedFit:
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    from automl.models.xgboost import XGBoostModel, xgb_params

    cfg = loop_config("xgboost", job)
    cfg["params"] = {**xgb_params(job.config, job.task), "nthread": 1}
    cfg["layout"] = job.layout
    cfg["feature_types"] = ["q"] * job.layout.n_num + ["c"] * job.layout.n_cat
    result = XGBoostTrainer(
        xgboost_loop,
        train_loop_config=cfg,
        scaling_config=scaling_config(job.num_workers, job.use_gpu, job.cpus_per_worker, job.placement),
        run_config=run_config(job),
        datasets=job.datasets,
        dataset_config=data_config(),
    ).fit()
    model = XGBoostModel(RayTrainReportCallback.get_model(result.checkpoint, "model.ubj"), job.task)
    return fit_result(model, result.metrics)
