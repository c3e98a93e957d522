"""Deployment constraints: choose the best model option whose measured one-row latency and size
on disk meet ``max_predict_latency_ms`` and ``max_model_size_mb``."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.predictor import Predictor

logger = logging.getLogger(__name__)

LATENCY_CALLS = 20


@dataclass
class Option:
    name: str
    objective: float  # higher is better
    build: Callable[[], Predictor]
    measured: dict[str, Any] = field(default_factory=dict)


def measure(pred: Predictor, rows: pd.DataFrame) -> dict[str, float]:
    """Median one-row predict latency (ms) and size on disk (MB) of a Predictor."""
    singles = [rows.iloc[[i % len(rows)]] for i in range(LATENCY_CALLS + 2)]
    for r in singles[:2]:
        pred.predict_raw(r)
    times = []
    for r in singles[2:]:
        t = time.perf_counter()
        pred.predict_raw(r)
        times.append(time.perf_counter() - t)
    tmp = Path(tempfile.mkdtemp(prefix="automl-size-"))
    try:
        pred.save(tmp / "m")
        size = sum(f.stat().st_size for f in (tmp / "m").rglob("*") if f.is_file()) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"latency_ms": float(np.median(times) * 1000), "size_mb": float(size)}


def choose(
    options: list[Option], rows: pd.DataFrame, *, max_latency_ms: float | None, max_size_mb: float | None
) -> tuple[Option, Predictor, str]:
    """The best option meeting the constraints (options are tried best first)."""
    options = sorted(options, key=lambda o: -o.objective)
    rejected: list[str] = []
    fallback: tuple[float, Option, Predictor] | None = None
    for opt in options:
        pred = opt.build()
        opt.measured = measure(pred, rows)
        lat, size = opt.measured["latency_ms"], opt.measured["size_mb"]
        why = []
        if max_latency_ms is not None and lat > max_latency_ms:
            why.append(f"{lat:.2f} ms/row > {max_latency_ms} ms")
        if max_size_mb is not None and size > max_size_mb:
            why.append(f"{size:.1f} MB > {max_size_mb} MB")
        if not why:
            reason = (
                "the best validation score"
                if not rejected
                else ("the best that meets the constraints; rejected: " + "; ".join(rejected))
            )
            return opt, pred, f"{opt.name}: {reason} ({lat:.2f} ms/row, {size:.1f} MB)"
        rejected.append(f"{opt.name} ({', '.join(why)})")
        cost = (lat / max_latency_ms if max_latency_ms else 0) + (size / max_size_mb if max_size_mb else 0)
        if fallback is None or cost < fallback[0]:
            fallback = (cost, opt, pred)
        if max_latency_ms is None and max_size_mb is None:
            break
    if fallback is None:
        raise ValueError("choose() needs at least one option")
    _, opt, pred = fallback
    reason = (
        f"no option meets the constraints; chose the one closest to them, {opt.name}. Rejected: "
        + "; ".join(rejected)
    )
    logger.warning(reason)
    return opt, pred, reason
