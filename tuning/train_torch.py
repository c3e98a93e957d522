"""The MLP on Ray Train: a ``TorchTrainer`` running DistributedDataParallel over ``num_workers``
workers (gloo on CPU, NCCL on GPU) that read their shard of a ``ray.data.Dataset``.

The network, the epoch, the schedule and the health rules are those of the in-process learner
(``automl.models.mlp_net``); only the data path (dataset shards instead of in-memory tensors) and
the reductions across workers (``all_reduce`` of the epoch's loss sums) differ. Every worker
reports each epoch; rank 0 attaches a checkpoint (safetensors + JSON, the saved-model format), and
the checkpoint with the lowest validation loss becomes the returned model. The training data are
split across workers, the validation set is not (every worker scores it with rank 0's batch-norm
statistics); early stopping and the health rules read totals reduced over all workers, so every
worker stops at the same epoch.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray.data.collate_fn import NumpyBatchCollateFn

from automl.exceptions import ConfigError
from automl.models.base import FittedModel, Task
from automl.preprocessing import FeatureMatrix

logger = logging.getLogger(__name__)

#: seconds between the Train controller's polls of its workers (Ray's default 2 s adds ~2 s to
#: every epoch's report); set only when the caller has not set RAY_TRAIN_HEALTH_CHECK_INTERVAL_S
TRAIN_POLL_INTERVAL_S = "0.2"
#: rows each worker's local shuffle buffer holds, in multiples of its batch size
SHUFFLE_BUFFER_BATCHES = 4


def fit_mlp_distributed(
    config: dict[str, Any],
    task: Task,
    train: FeatureMatrix,
    y_train: np.ndarray,
    w_train: np.ndarray | None,
    valid: FeatureMatrix,
    y_valid: np.ndarray,
    *,
    num_workers: int,
    use_gpu: bool,
    storage_path: str,
    max_epochs: int | None = None,
    cpus_per_worker: float | None = None,
) -> tuple[FittedModel, int, np.ndarray]:
    """Train the MLP ``config`` with DDP on Ray Train; return the model of the epoch with the lowest
    validation loss, that epoch, and the model's standardised predictions for ``valid``.

    ``cpus_per_worker`` defaults to what leaves one CPU of the cluster for Ray Data's read tasks
    (0.5 for 2 workers on 2 CPUs); workers that take every CPU can starve the data pipeline.
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from automl.models.mlp import MLPFamily, load_model, make_target, net_spec, train_settings

    if num_workers < 1:
        raise ConfigError(f"num_workers must be at least 1; got {num_workers}")
    if "://" not in storage_path and not os.path.isabs(storage_path):
        raise ConfigError(f"storage_path must be absolute or a URI (s3://...); got {storage_path!r}")
    if use_gpu and not ray.cluster_resources().get("GPU"):
        raise ConfigError("use_gpu=True but the Ray cluster has no GPUs; pass use_gpu=False")
    settings = train_settings({**config, **({"max_epochs": max_epochs} if max_epochs else {})}, task)
    target = make_target(task, y_train, w_train)
    constant = target.constant(y_train, w_train)
    cpus = cpus_per_worker or _default_cpus_per_worker(num_workers)
    loop_config = {
        "net": net_spec(config, task, train).to_dict(),
        "target": {
            "problem_type": task.problem_type.value,
            "n_classes": target.n_classes,
            "y_mean": target.y_mean,
            "y_std": target.y_std,
        },
        "settings": settings,
        "task": {**task.to_dict(), "use_gpu": False},
        "seed": task.seed,
        "threads": max(1, int(cpus)),
        "num_workers": num_workers,
        "constant_loss": target.constant_loss(constant, y_valid),
        "patience": MLPFamily().patience_for(config),
        "steps_per_epoch": max(1, math.ceil(train.n_rows / settings["batch_size"])),
        "weighted": w_train is not None,
    }
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_INTERVAL_S)
    name = f"mlp-ddp-{uuid.uuid4().hex[:8]}"
    keep_best = CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus}
        ),
        datasets={
            "train": ray.data.from_pandas(_frame(train, y_train, w_train)),
            "validation": ray.data.from_pandas(_frame(valid, y_valid, None)),
        },
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(storage_path=storage_path, name=name, checkpoint_config=keep_best),
    )
    logger.info(
        "mlp: Ray Train fit %s with %d %s workers (%.2f CPU each), up to %d epochs",
        name,
        num_workers,
        "GPU" if use_gpu else "CPU",
        cpus,
        settings["max_epochs"],
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    checkpoint, metrics = min(
        result.best_checkpoints or [], key=lambda cm: cm[1]["val_loss"], default=(None, None)
    )
    if checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} reported no checkpoint")
    if result.metrics and result.metrics.get("health"):
        logger.info("mlp: Ray Train run %s stopped by a health rule: %s", name, result.metrics["health"])
    with checkpoint.as_directory() as d:
        model = load_model(Path(d), task)
    preds = model.predict(valid)
    if not np.isfinite(preds).all():  # diverged from the first epoch: predict the constant, as in-process
        model.constant = constant
        preds = model.predict(valid)
    return model, int(metrics["epoch"]), preds


def _default_cpus_per_worker(num_workers: int) -> float:
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return float(min(1.0, max(0.1, (total - 1.0) / num_workers)))


def _frame(X: FeatureMatrix, y: np.ndarray, w: np.ndarray | None) -> pd.DataFrame:
    cols: dict[str, Any] = {f"n{i}": X.num[:, i] for i in range(X.num.shape[1])}
    cols.update({f"c{i}": X.cat[:, i].astype(np.int64) for i in range(X.cat.shape[1])})
    cols["y"] = np.asarray(y)
    if w is not None:
        cols["w"] = np.asarray(w, dtype=np.float32)
    return pd.DataFrame(cols)


class ColumnsToTensors(NumpyBatchCollateFn):
    """A Ray Data batch (one array per column) -> the tensors of an ``mlp_net.Batch``; Ray then
    pins them and moves them to the worker's device."""

    def __init__(self, n_num: int, n_cat: int, target: Any, weighted: bool) -> None:
        self.n_num, self.n_cat, self.target, self.weighted = n_num, n_cat, target, weighted

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        n = len(batch["y"])
        num = np.column_stack([batch[f"n{i}"] for i in range(self.n_num)]) if self.n_num else np.zeros((n, 0))
        cat = np.column_stack([batch[f"c{i}"] for i in range(self.n_cat)]) if self.n_cat else np.zeros((n, 0))
        out = {
            "num": torch.from_numpy(np.ascontiguousarray(num, dtype=np.float32)),
            "cat": torch.from_numpy(np.ascontiguousarray(cat, dtype=np.int64)),
            "y": self.target.encode(batch["y"]),
        }
        if self.weighted:
            out["w"] = torch.from_numpy(np.ascontiguousarray(batch["w"], dtype=np.float32))
        return out


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """One DDP worker: the same epochs as ``MLPLearner`` on this worker's shard of the data."""
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device, prepare_model

    from automl.models.mlp import MLPModel
    from automl.models.mlp_net import (
        Amp,
        Batch,
        EpochHealth,
        HealthMonitor,
        NetSpec,
        TabularMLP,
        Target,
        make_optimizer,
        make_schedule,
        train_epoch,
        unwrap,
    )
    from automl.problem import ProblemType

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])  # DDP also broadcasts rank 0's initial weights
    spec, t, s = NetSpec.from_dict(cfg["net"]), cfg["target"], cfg["settings"]
    target = Target(ProblemType(t["problem_type"]), t["n_classes"], t["y_mean"], t["y_std"])
    model = prepare_model(TabularMLP(spec))
    device = get_device()
    optimizer = make_optimizer(model, s["learning_rate"], s["weight_decay"])
    schedule = make_schedule(optimizer, s["max_epochs"] * cfg["steps_per_epoch"])
    amp = Amp.for_device(device, s["amp"])
    health = HealthMonitor(cfg["constant_loss"], cfg["steps_per_epoch"])
    collate = ColumnsToTensors(spec.n_num, len(spec.cat_sizes), target, cfg["weighted"])
    batch_size = max(1, s["batch_size"] // cfg["num_workers"])  # same global batch as in-process
    train_shard = ray.train.get_dataset_shard("train")
    valid_shard = ray.train.get_dataset_shard("validation")
    rank = ray.train.get_context().get_world_rank()
    best, best_epoch = math.inf, 0
    for epoch in range(1, s["max_epochs"] + 1):
        shuffled = train_shard.iter_torch_batches(
            batch_size=batch_size,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
            local_shuffle_buffer_size=SHUFFLE_BUFFER_BATCHES * batch_size,
            local_shuffle_seed=cfg["seed"] * 1000 + epoch * 10 + rank,
        )
        batches = (Batch(b["num"], b["cat"], b["y"], b.get("w")) for b in shuffled)
        stats = train_epoch(model, optimizer, schedule, batches, target, amp)
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:  # batch-norm running statistics drift apart per shard: evaluate rank 0's
            for buffer in unwrap(model).buffers():
                dist.broadcast(buffer, src=0)
        val_sum, val_rows = _validation_loss_sum(unwrap(model), valid_shard, collate, target)
        sums = [stats.loss_sum, stats.rows, stats.first_grad_sum, stats.batches, val_sum, val_rows]
        sums = torch.tensor(sums, dtype=torch.float64, device=device)
        if distributed:  # totals over all workers: every worker takes the same stopping decision
            dist.all_reduce(sums)
        tl, rows, gs, nb, vs, vr = sums.tolist()
        record = EpochHealth(epoch, tl / max(rows, 1), vs / max(vr, 1), gs / max(nb, 1))
        verdict = health.check(record)
        val_loss = record.val_loss if math.isfinite(record.val_loss) else math.inf
        metrics = {
            "epoch": epoch,
            "train_loss": record.train_loss,
            "val_loss": val_loss,
            "health": verdict or "",
        }
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
                MLPModel(spec, target, state, Task.from_dict(cfg["task"]), epoch).save(Path(d))
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)
        if val_loss < best:
            best, best_epoch = val_loss, epoch
        if verdict or epoch - best_epoch >= cfg["patience"]:
            break


def _validation_loss_sum(
    model: Any, shard: Any, collate: ColumnsToTensors, target: Any
) -> tuple[float, float]:
    """Summed loss and rows of the validation set (every worker reads all of it). The unwrapped
    module runs no DDP collectives."""
    import torch

    total, rows = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for b in shard.iter_torch_batches(batch_size=4096, collate_fn=collate):
            raw = model(b["num"], b["cat"])
            total += float(target.loss(raw, b["y"])) * len(b["y"])
            rows += len(b["y"])
    return total, float(rows)
