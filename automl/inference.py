"""Measuring a Predictor's prediction speed (one-row latency, batch throughput, size on disk), and
the DataFrame reference path the compiled predict path (:mod:`automl.fastpath`) must agree with.

The deployment chooser and the benchmark call :func:`measure_latency`; it times the public
``predict_raw`` path (validation, preprocessing, every member, calibration).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.calibration import apply_calibration
from automl.schema import ValidationReport, validate_frame
from automl.stacking import STACK_RECIPE, stack_features

#: a batch measurement is cut down so that it takes about this long at the measured speed
BATCH_BUDGET_S = 30.0
#: one-row calls timed at least, however short the time budget
MIN_CALLS = 10


def reference_predict_raw(predictor: Any, df: pd.DataFrame) -> tuple[np.ndarray, ValidationReport]:
    """The DataFrame path: :func:`automl.schema.validate_frame`, each recipe's
    ``Preprocessor.transform``, then each fold model's ``predict`` in turn. Slow (pandas objects
    per call, one input conversion per model) but the plain statement of what a prediction is."""
    clean, report = validate_frame(predictor.schema, df)
    layers = [*predictor.stack_layers, predictor.members]
    feats = {
        r: p.transform(clean)
        for r, p in predictor.preprocessors.items()
        if any(m.recipe == r for layer in layers for m in layer)
    }
    clipped: dict[str, int] = {}
    for layer in predictor.stack_layers:
        preds = [m.predict(feats[m.recipe], clipped) for m in layer]
        base = feats.get("tree") if predictor.stack_uses_features else None
        feats[STACK_RECIPE] = stack_features(preds, [m.name for m in layer], predictor.problem_type, base)
    out = None
    for m in predictor.members:
        p = m.weight * m.predict(feats[m.recipe], clipped)
        out = p if out is None else out + p
    if predictor.calibration:
        out = apply_calibration(out, predictor.calibration, predictor.problem_type)
    if clipped:
        report.clipped_predictions = clipped
    return out, report


@dataclass(frozen=True)
class LatencyReport:
    """What :func:`measure_latency` measured (times in milliseconds, sizes in megabytes)."""

    one_row_p50_ms: float
    one_row_p99_ms: float
    rows_per_s: float
    batch_rows: int  # rows in the timed batch (fewer than asked when the model is too slow)
    model_mb: float
    calls: int
    peak_rss_mb: float  # the process's peak resident memory after the batch (all it loaded before too)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(
    predictor: Any,
    sample: pd.DataFrame,
    *,
    calls: int = 200,
    warmup: int = 20,
    batch_rows: int = 100_000,
    predict: Callable[[pd.DataFrame], Any] | None = None,
    budget_s: float | None = None,
    model_mb: float | None = None,
) -> LatencyReport:
    """Time ``calls`` one-row predictions (after ``warmup`` untimed ones), each on a one-row
    frame cut from ``sample`` in turn, and one prediction of ``batch_rows`` rows (``sample``'s rows
    repeated). ``predict`` replaces ``predictor.predict_raw`` (to time another path).
    ``budget_s`` bounds the time: the one-row calls and the batch get about 40 % of it each (fewer
    calls, at least ``MIN_CALLS``, and a smaller batch when the model is slow). ``model_mb``: the size
    on disk when the caller knows it (else the Predictor is saved to a temporary directory)."""
    if len(sample) == 0:
        raise ValueError("measure_latency needs at least one sample row")
    predict = predict or predictor.predict_raw
    rows = [sample.iloc[[i]] for i in range(min(len(sample), warmup + calls))]
    t = time.perf_counter()
    for i in range(warmup):
        predict(rows[i % len(rows)])
    if budget_s is not None:
        per_call = (time.perf_counter() - t) / max(1, warmup)
        calls = max(min(calls, MIN_CALLS), min(calls, int(0.4 * budget_s / max(per_call, 1e-6))))
    times = np.empty(calls)
    for i in range(calls):
        row = rows[(warmup + i) % len(rows)]
        t = time.perf_counter()
        predict(row)
        times[i] = time.perf_counter() - t
    batch_s = BATCH_BUDGET_S if budget_s is None else 0.4 * budget_s
    rows_per_s, timed = _throughput(predict, sample, batch_rows, batch_s)
    return LatencyReport(
        one_row_p50_ms=float(np.percentile(times, 50) * 1000),
        one_row_p99_ms=float(np.percentile(times, 99) * 1000),
        rows_per_s=rows_per_s,
        batch_rows=timed,
        model_mb=model_size_mb(predictor) if model_mb is None else model_mb,
        calls=calls,
        peak_rss_mb=_peak_rss_mb(),
    )


def _throughput(
    predict: Callable[[pd.DataFrame], Any], sample: pd.DataFrame, batch_rows: int, budget_s: float
) -> tuple[float, int]:
    """Rows per second on one batch of ``batch_rows`` rows; a pilot of up to 1,000 rows first, and a
    smaller batch when the full one would take more than ``budget_s``."""

    def batch(n: int) -> pd.DataFrame:
        return sample.iloc[np.arange(n) % len(sample)].reset_index(drop=True)

    pilot = min(batch_rows, 1000)
    t = time.perf_counter()
    predict(batch(pilot))
    pilot_s = time.perf_counter() - t
    n = int(min(batch_rows, max(pilot, pilot / max(pilot_s, 1e-9) * budget_s)))
    if n == pilot and pilot_s >= budget_s:
        return pilot / max(pilot_s, 1e-9), n  # no time for a second batch: the pilot is the figure
    frame = batch(n)
    t = time.perf_counter()
    predict(frame)
    return n / max(time.perf_counter() - t, 1e-9), n


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # not on a Unix
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def model_size_mb(predictor: Any) -> float:
    """Size on disk of the saved Predictor (saved to a temporary directory when it has no path)."""
    path = getattr(predictor, "path", None)
    if path is not None and Path(path).is_dir():
        return _dir_mb(Path(path))
    tmp = Path(tempfile.mkdtemp(prefix="automl-size-"))
    try:
        return _dir_mb(predictor.save(tmp / "m"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
