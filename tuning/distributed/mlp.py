"""The MLP on Ray Train: a ``TorchTrainer`` running DistributedDataParallel over ``num_workers``
workers (gloo on CPU, NCCL on GPU) that read their shard of a ``ray.data.Dataset``.

The network, the epoch, the schedule and the health rules are those of the in-process learner
(``automl.models.mlp_net``); only the data path (dataset shards instead of in-memory tensors) and
the reductions across workers (``all_reduce`` of the epoch's loss sums) differ. Every worker
reports each epoch; rank 0 attaches a checkpoint (safetensors + JSON, the saved-model format), and
the checkpoint with the lowest validation loss becomes the returned model. The training data are
split across workers, the validation set is not (every worker scores it with rank 0's batch-norm
statistics); early stopping and the health rules read totals reduced over all workers, so every
worker stops at the same epoch. A search trial's job also stops once the search raises its wrap-up
flag (:mod:`tuning.wrapup`): rank 0 reads it after each epoch and its reading travels in the same
``all_reduce``, keeping the best epoch so far.
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
from ray.data.collate_fn import NumpyBatchCollateFn

from automl.exceptions import ConfigError
from automl.models.base import Task
from tuning.distributed import DistributedFit, DistributedJob, register
from tuning.distributed.frames import LABEL, WEIGHT, data_config

logger = logging.getLogger(__name__)

#: seconds between the Train controller's polls of its workers (Ray's default 2 s adds ~2 s to
#: every epoch's report); set only when the caller has not set RAY_TRAIN_HEALTH_CHECK_INTERVAL_S
TRAIN_POLL_INTERVAL_S = "0.2"
#: rows each worker's local shuffle buffer holds, in multiples of its batch size
SHUFFLE_BUFFER_BATCHES = 4


@register("mlp")
def fit_mlp(job: DistributedJob) -> DistributedFit:
    """Train the MLP ``job.config`` with DDP on Ray Train; return the model of the epoch with the
    lowest validation loss and that epoch.

    ``job.cpus_per_worker`` defaults to what leaves one CPU of the cluster for Ray Data's read
    tasks (0.5 for 2 workers on 2 CPUs); workers that take every CPU can starve the data pipeline.
    """
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from automl.models.mlp import load_model, make_target, train_settings

    if job.labels is None:
        raise ConfigError("the MLP's Ray Train path needs the label arrays (DistributedJob.labels)")
    if job.num_workers < 1:
        raise ConfigError(f"num_workers must be at least 1; got {job.num_workers}")
    if "://" not in job.storage_path and not os.path.isabs(job.storage_path):
        raise ConfigError(f"storage_path must be absolute or a URI (s3://...); got {job.storage_path!r}")
    if job.use_gpu and not ray.cluster_resources().get("GPU"):
        raise ConfigError("use_gpu=True but the Ray cluster has no GPUs; pass use_gpu=False")
    task, labels = job.task, job.labels
    settings = train_settings(
        {**job.config, **({"max_epochs": job.max_epochs} if job.max_epochs else {})}, task
    )
    target = make_target(task, labels.y_train, labels.w_train)
    constant = target.constant(labels.y_train, labels.w_train)
    cpus = job.cpus_per_worker or _default_cpus_per_worker(job.num_workers)
    loop_config = _loop_config(job, settings, target, constant, cpus)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_INTERVAL_S)
    name = f"{job.name}-{uuid.uuid4().hex[:6]}"
    keep_best = CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if job.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=job.num_workers, use_gpu=job.use_gpu, resources_per_worker={"CPU": cpus}
        ),
        datasets=job.datasets,
        dataset_config=data_config(),
        run_config=RunConfig(storage_path=job.storage_path, name=name, checkpoint_config=keep_best),
    )
    logger.info(
        "mlp: Ray Train fit %s with %d %s workers (%.2f CPU each), up to %d epochs",
        name,
        job.num_workers,
        "GPU" if job.use_gpu else "CPU",
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
    if not np.isfinite(metrics["val_loss"]):  # diverged from the first epoch: predict the constant
        model.constant = constant
    ended = bool((result.metrics or {}).get("search_ended"))
    if ended:
        logger.info("mlp: Ray Train run %s stopped when the search ended", name)
    return DistributedFit(model, int(metrics["epoch"]), 0.0, search_ended=ended)


def _loop_config(
    job: DistributedJob, settings: dict[str, Any], target: Any, constant: Any, cpus: float
) -> dict:
    """What every worker needs: the network, the target's scaling, the settings and the data's shape."""
    from automl.models.mlp import MLPFamily, net_spec

    task = job.task
    return {
        "net": net_spec(job.config, task, job.layout.empty_matrix()).to_dict(),
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
        "num_workers": job.num_workers,
        "constant_loss": target.constant_loss(constant, job.labels.y_valid),
        "patience": MLPFamily().patience_for(job.config),
        "steps_per_epoch": max(1, math.ceil(job.n_train_rows / settings["batch_size"])),
        "weighted": job.weighted,
        "layout": job.layout,
        "wrap_up": job.wrap_up.key if job.wrap_up is not None else None,
    }


def _default_cpus_per_worker(num_workers: int) -> float:
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return float(min(1.0, max(0.1, (total - 1.0) / num_workers)))


class ColumnsToTensors(NumpyBatchCollateFn):
    """A Ray Data batch (one array per column) -> the tensors of an ``mlp_net.Batch``; Ray then
    pins them and moves them to the worker's device."""

    def __init__(self, n_num: int, n_cat: int, target: Any, weighted: bool) -> None:
        self.n_num, self.n_cat, self.target, self.weighted = n_num, n_cat, target, weighted

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        n = len(batch[LABEL])
        num = np.column_stack([batch[f"n{i}"] for i in range(self.n_num)]) if self.n_num else np.zeros((n, 0))
        cat = np.column_stack([batch[f"c{i}"] for i in range(self.n_cat)]) if self.n_cat else np.zeros((n, 0))
        out = {
            "num": torch.from_numpy(np.ascontiguousarray(num, dtype=np.float32)),
            "cat": torch.from_numpy(np.ascontiguousarray(cat, dtype=np.int64)),
            "y": self.target.encode(batch[LABEL]),
        }
        if self.weighted:
            out["w"] = torch.from_numpy(np.ascontiguousarray(batch[WEIGHT], dtype=np.float32))
        return out


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """One DDP worker: the same epochs as ``MLPLearner`` on this worker's shard of the data."""
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device, prepare_model

    from automl.models.mlp_health import EpochHealth, HealthMonitor
    from automl.models.mlp_net import (
        Amp,
        Batch,
        NetSpec,
        TabularMLP,
        Target,
        make_optimizer,
        make_schedule,
        train_epoch,
        unwrap,
    )
    from automl.problem import ProblemType
    from tuning.wrapup import WrapUpFlag

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
    wrap_up = WrapUpFlag(cfg["wrap_up"]).reader() if cfg.get("wrap_up") and rank == 0 else None
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
        flag = 1.0 if wrap_up is not None and wrap_up() else 0.0  # rank 0's reading only
        sums = [stats.loss_sum, stats.rows, stats.first_grad_sum, stats.batches, val_sum, val_rows, flag]
        sums = torch.tensor(sums, dtype=torch.float64, device=device)
        if distributed:  # totals over all workers: every worker takes the same stopping decision
            dist.all_reduce(sums)
        tl, rows, gs, nb, vs, vr, flags = sums.tolist()
        search_ended = flags > 0  # rank 0 read the raised flag
        record = EpochHealth(epoch, tl / max(rows, 1), vs / max(vr, 1), gs / max(nb, 1))
        verdict = health.check(record)
        val_loss = record.val_loss if math.isfinite(record.val_loss) else math.inf
        metrics = {
            "epoch": epoch,
            "train_loss": record.train_loss,
            "val_loss": val_loss,
            "health": verdict or "",
            "search_ended": search_ended,
        }
        _report(metrics, unwrap(model) if rank == 0 else None, spec, target, cfg["task"])
        if val_loss < best:
            best, best_epoch = val_loss, epoch
        if verdict or epoch - best_epoch >= cfg["patience"] or search_ended:
            break


def _report(metrics: dict[str, Any], model: Any, spec: Any, target: Any, task: dict[str, Any]) -> None:
    """Report the epoch; ``model`` (rank 0's unwrapped module, None on other ranks) goes with it
    as a checkpoint in the saved-model format."""
    import ray.train

    from automl.models.mlp import MLPModel

    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if model is not None:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            MLPModel(spec, target, state, Task.from_dict(task), metrics["epoch"]).save(Path(d))
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report(metrics, checkpoint=checkpoint)


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
