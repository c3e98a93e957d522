"""The tabular MLP itself: the ``nn.Module``, its loss and outputs, one training epoch and the
learning-rate schedule (the training health rules are in ``automl.models.mlp_health``).

Shared by the in-process learner (``automl.models.mlp``) and the Ray Train workers
(``tuning.distributed.mlp``), so both train exactly the same network the same way.

Network: numbers (standardised, with missing indicators) are concatenated with one embedding per
categorical column, then ``depth`` blocks of Linear -> BatchNorm/LayerNorm -> ReLU -> Dropout and
a linear head (1 logit for binary, k for multiclass, 1 standardised value for regression).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from automl.problem import ProblemType

NORMS = ("batch", "layer", "none")
#: gradients are clipped to this global L2 norm (a safety net against single bad batches)
GRAD_CLIP_NORM = 5.0
#: share of the schedule's optimizer steps spent warming the learning rate up linearly
WARMUP_FRACTION = 0.05
#: the cosine schedule ends at this fraction of the peak learning rate
FINAL_LR_FRACTION = 0.02
#: rows per forward pass when predicting (bounds memory on large tables)
PREDICT_CHUNK = 16384
#: below this many rows a prediction runs on one thread: for small batches, waking a second
#: intra-op thread costs more than it saves (1-row median 0.2 ms vs 3.6 ms on a busy 2-core machine)
PARALLEL_PREDICT_ROWS = 8192


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild the network (saved as JSON next to the weights)."""

    n_num: int
    cat_sizes: tuple[int, ...]
    emb_dims: tuple[int, ...]
    hidden: int
    depth: int
    dropout: float
    norm: str
    n_out: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cat_sizes": list(self.cat_sizes), "emb_dims": list(self.emb_dims)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetSpec:
        return cls(**{**d, "cat_sizes": tuple(d["cat_sizes"]), "emb_dims": tuple(d["emb_dims"])})


class TabularMLP(nn.Module):
    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, d) for n, d in zip(spec.cat_sizes, spec.emb_dims))
        width = spec.n_num + sum(spec.emb_dims)
        blocks: list[nn.Module] = []
        for _ in range(spec.depth):
            blocks.append(nn.Linear(width, spec.hidden))
            if spec.norm == "batch":
                blocks.append(nn.BatchNorm1d(spec.hidden))
            elif spec.norm == "layer":
                blocks.append(nn.LayerNorm(spec.hidden))
            blocks += [nn.ReLU(), nn.Dropout(spec.dropout)]
            width = spec.hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, spec.n_out)

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        parts = [num] + [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else num
        return self.head(self.body(x))

    def first_layer(self) -> nn.Linear:
        """The layer farthest from the loss (the vanishing-gradient rule watches it)."""
        return next(m for m in self.body if isinstance(m, nn.Linear)) if len(self.body) else self.head


def unwrap(model: nn.Module) -> TabularMLP:
    """The TabularMLP inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


# --- target: loss and standardised outputs ----------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """How network outputs relate to the target: the loss, and the way back to standardised
    predictions (regression targets are trained standardised and scaled back here)."""

    problem_type: ProblemType
    n_classes: int
    y_mean: float = 0.0
    y_std: float = 1.0

    @property
    def n_out(self) -> int:
        return self.n_classes if self.problem_type is ProblemType.MULTICLASS else 1

    def encode(self, y: np.ndarray) -> torch.Tensor:
        if self.problem_type is ProblemType.MULTICLASS:
            return torch.from_numpy(np.array(y, dtype=np.int64))
        if self.problem_type is ProblemType.BINARY:
            return torch.from_numpy(np.array(y, dtype=np.float32))
        z = (np.asarray(y, dtype=np.float64) - self.y_mean) / self.y_std
        return torch.from_numpy(z.astype(np.float32))

    def loss(self, raw: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """Mean (weighted) loss: cross-entropy, or squared error on the standardised target."""
        raw = raw.float()
        if self.problem_type is ProblemType.MULTICLASS:
            per_row = F.cross_entropy(raw, y, reduction="none")
        elif self.problem_type is ProblemType.BINARY:
            per_row = F.binary_cross_entropy_with_logits(raw[:, 0], y, reduction="none")
        else:
            per_row = (raw[:, 0] - y) ** 2
        if w is None:
            return per_row.mean()
        return (per_row * w).sum() / w.sum().clamp_min(1e-12)

    def outputs(self, raw: np.ndarray) -> np.ndarray:
        """Raw network outputs -> standardised predictions (probabilities or original units)."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.problem_type is ProblemType.BINARY:
            p = 1.0 / (1.0 + np.exp(-np.clip(raw[:, 0], -50, 50)))
            return np.column_stack([1.0 - p, p])
        if self.problem_type is ProblemType.MULTICLASS:
            z = np.exp(raw - raw.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return raw[:, 0] * self.y_std + self.y_mean

    def constant(self, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """The best constant prediction on the training target (class shares / mean)."""
        if self.problem_type.is_classification:
            share = np.bincount(np.asarray(y, dtype=np.int64), weights=w, minlength=self.n_classes)
            return share / max(share.sum(), 1e-12)
        return np.array([np.average(y, weights=w)])

    def constant_loss(self, constant: np.ndarray, y_valid: np.ndarray) -> float:
        """Loss of predicting ``constant`` for every validation row: the health rules' yardstick."""
        if self.problem_type.is_classification:
            p = np.clip(constant[np.asarray(y_valid, dtype=np.int64)], 1e-12, 1.0)
            return float(-np.log(p).mean())
        return float(np.mean(((np.asarray(y_valid, dtype=float) - constant[0]) / self.y_std) ** 2))


# --- one epoch -----------------------------------------------------------------------------------------
class Batch(NamedTuple):
    num: torch.Tensor
    cat: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor | None


@dataclass
class EpochStats:
    loss_sum: float = 0.0  # sum of row losses (a mean times the rows of each batch)
    rows: int = 0
    first_grad_sum: float = 0.0  # sum over batches of mean |gradient| of the first layer's weights
    batches: int = 0

    @property
    def train_loss(self) -> float:
        return self.loss_sum / max(self.rows, 1)

    @property
    def first_layer_grad(self) -> float:
        return self.first_grad_sum / max(self.batches, 1)


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and embeddings, none on biases and norms."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
    )


def make_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to FINAL_LR_FRACTION over ``total_steps`` optimizer steps
    (the data-sized epoch budget). Early stopping may end training before the schedule does; the
    best epoch is kept either way, and the schedule does not depend on validation data."""
    warmup = max(1, int(WARMUP_FRACTION * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Amp:
    """Mixed precision on CUDA: bfloat16 where supported, else float16 with a gradient scaler."""

    enabled: bool = False
    dtype: torch.dtype = torch.float16
    scaler: Any = field(default=None)

    @classmethod
    def for_device(cls, device: torch.device, wanted: bool) -> Amp:
        if not wanted or device.type != "cuda":
            return cls(False)
        if torch.cuda.is_bf16_supported():
            return cls(True, torch.bfloat16)
        return cls(True, torch.float16, torch.amp.GradScaler("cuda"))


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    batches: Iterable[Batch],
    target: Target,
    amp: Amp | None = None,
) -> EpochStats:
    """One pass over ``batches``: forward, loss, backward, clip, step. Returns the statistics the
    health rules read. Works for a plain module and a DDP-wrapped one."""
    amp = amp or Amp(False)
    model.train()
    first = unwrap(model).first_layer().weight
    batch_norm = any(isinstance(m, nn.BatchNorm1d) for m in unwrap(model).body)
    stats = EpochStats()
    loss_sum = torch.zeros((), device=first.device)
    grad_sum = torch.zeros((), device=first.device)
    for b in batches:
        if batch_norm and len(b.y) < 2:
            continue  # batch norm cannot train on a single row
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(first.device.type, dtype=amp.dtype, enabled=amp.enabled):
            raw = model(b.num, b.cat)
        loss = target.loss(raw, b.y, b.w)
        if amp.scaler is not None:
            amp.scaler.scale(loss).backward()
            amp.scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        grad_sum += first.grad.detach().abs().mean() if first.grad is not None else 0.0
        if amp.scaler is not None:
            amp.scaler.step(optimizer)
            amp.scaler.update()
        else:
            optimizer.step()
        schedule.step()
        loss_sum += loss.detach() * len(b.y)
        stats.rows += len(b.y)
        stats.batches += 1
    stats.loss_sum, stats.first_grad_sum = float(loss_sum), float(grad_sum)  # one device sync per epoch
    return stats


@torch.inference_mode()
def forward_all(model: nn.Module, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """Raw outputs for every row, in eval mode, in chunks of PREDICT_CHUNK rows."""
    model.eval()
    n = num.shape[0]
    if n <= PREDICT_CHUNK:
        return model(num, cat).float()
    return torch.cat(
        [
            model(num[i : i + PREDICT_CHUNK], cat[i : i + PREDICT_CHUNK]).float()
            for i in range(0, n, PREDICT_CHUNK)
        ]
    )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore the caller's setting (it is process-wide)."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def select_device(use_gpu: bool) -> torch.device:
    """CUDA when asked for and present; otherwise the CPU (a GPU request on a machine without
    one is not an error: the caller logs the fallback)."""
    return torch.device("cuda") if use_gpu and torch.cuda.is_available() else torch.device("cpu")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device``: pinned memory and an asynchronous copy for CUDA."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t
