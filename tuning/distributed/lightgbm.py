"""LightGBM on Ray Train: ``LightGBMTrainer`` with ``tree_learner="data_parallel"`` over the
workers' shards (each worker holds its part of the training rows, pre-partitioned)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from tuning.distributed import DistributedFit, DistributedJob, register
from tuning.distributed.frames import FeatureLayout, data_config
from tuning.distributed.gbdt import (
    Tracker,
    fit_result,
    loop_config,
    report,
    run_config,
    scaling_config,
    shard_chunks,
)


def native_dataset(
    chunks: list[np.ndarray],
    y: np.ndarray,
    w: np.ndarray | None,
    layout: FeatureLayout,
    reference: Any = None,
) -> Any:
    """A LightGBM Dataset of dense blocks (:func:`tuning.distributed.gbdt.dense_chunks`), built from
    the list without joining it (``LGBM_DatasetCreateFromMats``); constructed lazily, by
    ``lightgbm.train``, which then lets the blocks go (``free_raw_data``)."""
    import lightgbm

    return lightgbm.Dataset(
        chunks if len(chunks) > 1 else chunks[0],
        label=y,
        weight=w,
        categorical_feature=layout.categorical_indices or "auto",
        reference=reference,
        params={"verbosity": -1},
    )


def lightgbm_loop(cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import lightgbm
    import ray.train
    from ray.train.lightgbm import get_network_params

    dtrain = native_dataset(*shard_chunks("train", cfg["layout"]), cfg["layout"])
    dvalid = native_dataset(*shard_chunks("validation", cfg["layout"]), cfg["layout"], reference=dtrain)
    tracker = Tracker(cfg)
    rank = ray.train.get_context().get_world_rank()

    def on_round(env: Any) -> None:
        if (env.iteration + 1) % cfg["step"] == 0:
            value = next(v for _, name, v, _ in env.evaluation_result_list if name == cfg["native"])
            report(tracker.metrics(float(value), env.iteration + 1))
            if tracker.stop_now():  # keep the best round so far, as early stopping does
                best = max(1, tracker.best_iteration)
                raise lightgbm.callback.EarlyStopException(best - 1, env.evaluation_result_list)

    params = {
        **cfg["params"],
        "metric": cfg["native"],
        "tree_learner": "data_parallel",
        "pre_partition": True,
        **get_network_params(),
    }
    bst = lightgbm.train(
        params,
        dtrain,
        num_boost_round=cfg["rounds"],
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lightgbm.early_stopping(cfg["patience"], verbose=False), on_round],
    )
    best = int(bst.best_iteration or bst.current_iteration())
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            bst.save_model(os.path.join(d, "model.txt"), num_iteration=best)
        report(tracker.final(best), d if rank == 0 else None)


@register("lightgbm")
def fit_lightgbm(job: DistributedJob) -> DistributedFit:
    from ray.train.lightgbm import LightGBMTrainer, RayTrainReportCallback

    from automl.models.lightgbm import LightGBMModel, boosting_guard, lgb_params

    cfg = loop_config("lightgbm", job)
    cfg["params"] = {**boosting_guard(job.task), **lgb_params(job.config, job.task), "num_threads": 1}
    cfg["layout"] = job.layout
    result = LightGBMTrainer(
        lightgbm_loop,
        train_loop_config=cfg,
        scaling_config=scaling_config(job.num_workers, job.use_gpu, job.cpus_per_worker, job.placement),
        run_config=run_config(job),
        datasets=job.datasets,
        dataset_config=data_config(),
    ).fit()
    booster = RayTrainReportCallback.get_model(result.checkpoint, "model.txt")
    model = LightGBMModel(booster, job.task, booster.current_iteration(), average=False)
    return fit_result(model, result.metrics)
