"""A few rows through a trained MLP in NumPy: the network's eval-mode forward pass as plain array
operations on its own weights, without PyTorch's per-module call overhead.

A one-row call of a 2-layer, 128-unit network took 0.10-0.15 ms through PyTorch on the 2-core test
machine (``forward_all``: ``eval()`` over every submodule, then one ``Module.__call__`` per layer);
the same pass in NumPy takes a few tens of microseconds. wine_quality's 60 s refit ensemble holds
three such networks. Batches above ``FEW_ROWS`` rows keep PyTorch, whose kernels then pay.

The arithmetic is PyTorch's eval mode in float32: embeddings looked up and concatenated after the
numeric columns, each linear layer ``x @ W.T + b``, batch norm with its running statistics, layer
norm over the last axis (biased variance), ReLU, and dropout as the identity. Results agree with
PyTorch's to float32 rounding (the matrix products sum in a different order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

#: calls of up to this many rows take the NumPy pass
FEW_ROWS = 8

Op = Callable[[np.ndarray], np.ndarray]


def _array(t: object) -> np.ndarray:
    return t.detach().to("cpu").numpy().astype(np.float32, copy=True)  # type: ignore[attr-defined]


def _linear(layer: nn.Linear) -> Op:
    w, b = np.ascontiguousarray(_array(layer.weight).T), _array(layer.bias)
    return lambda x: x @ w + b


def _batch_norm(layer: nn.BatchNorm1d) -> Op:
    mean, var = _array(layer.running_mean), _array(layer.running_var)
    scale = _array(layer.weight) if layer.affine else np.ones_like(mean)
    shift = _array(layer.bias) if layer.affine else np.zeros_like(mean)
    std = np.sqrt(var + np.float32(layer.eps))
    return lambda x: (x - mean) / std * scale + shift


def _layer_norm(layer: nn.LayerNorm) -> Op:
    eps = np.float32(layer.eps)
    scale = _array(layer.weight) if layer.elementwise_affine else None
    shift = _array(layer.bias) if layer.elementwise_affine and layer.bias is not None else None

    def op(x: np.ndarray) -> np.ndarray:
        centred = x - x.mean(axis=-1, keepdims=True)
        out = centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
        if scale is not None:
            out = out * scale
        return out + shift if shift is not None else out

    return op


class NumpyNet:
    """The eval-mode forward pass of a :class:`automl.models.mlp_net.TabularMLP` in NumPy."""

    def __init__(self, module: nn.Module) -> None:
        from torch import nn

        self.embeddings = [_array(e.weight) for e in module.embeddings]
        self.ops: list[Op] = []
        for layer in [*module.body, module.head]:
            if isinstance(layer, nn.Linear):
                self.ops.append(_linear(layer))
            elif isinstance(layer, nn.BatchNorm1d):
                self.ops.append(_batch_norm(layer))
            elif isinstance(layer, nn.LayerNorm):
                self.ops.append(_layer_norm(layer))
            elif isinstance(layer, nn.ReLU):
                self.ops.append(lambda x: np.maximum(x, np.float32(0)))
            elif not isinstance(layer, nn.Dropout):  # dropout is the identity in eval mode
                raise TypeError(f"no NumPy pass for layer {type(layer).__name__}")

    def forward(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """Raw outputs (float32) for numeric columns ``num`` and category codes ``cat``."""
        x = np.asarray(num, dtype=np.float32)
        if self.embeddings:
            codes = np.asarray(cat, dtype=np.intp)
            x = np.concatenate([x] + [e[codes[:, i]] for i, e in enumerate(self.embeddings)], axis=1)
        for op in self.ops:
            x = op(x)
        return x
