"""Choosing what to deploy under the constraints ``max_latency_ms`` (one-row median latency through
the whole Predictor) and ``max_model_mb`` (size on disk).

Every option is built and measured best first (:func:`automl.inference.measure_latency` on a small
sample of training rows, each measurement sized to the time left), the Pareto front of validation
score against one-row latency is marked, and the best validation score that meets the constraints
is chosen. When no option meets them the *fastest* measured option is kept (the smallest when only
a size is constrained), and the reason says so. Options the deadline leaves unmeasured are named.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from automl.inference import measure_latency
from automl.predictor import Predictor

logger = logging.getLogger(__name__)

#: one-row calls, untimed warm-up calls and batch rows of one option's measurement (fewer when time is short)
MEASURE_CALLS, MEASURE_WARMUP, MEASURE_BATCH_ROWS = 50, 5, 10_000
#: seconds one option's measurement aims at, and the least it is given before it is skipped
MEASURE_S, MIN_MEASURE_S = 1.0, 0.25


@dataclass
class Option:
    """A deployment option as the chooser sees it."""

    name: str
    objective: float  # the validation score (or its estimate), higher is better
    build: Callable[[], Predictor | None]  # None: not built (it sets ``note``, e.g. no time to refit)
    prefer: int = 0  # on equal objectives the higher is measured and chosen first
    lean: bool = False  # one model per member (a refit option): measured right after the best
    measured: dict[str, float] = field(default_factory=dict)
    note: str = ""
    pareto: bool = False
    predictor: Predictor | None = None

    def violations(self, max_latency_ms: float | None, max_model_mb: float | None) -> list[str]:
        m, out = self.measured, []
        if max_latency_ms is not None and m["latency_ms"] > max_latency_ms:
            out.append(f"{m['latency_ms']:.2f} ms/row > {max_latency_ms:g} ms")
        if max_model_mb is not None and m["size_mb"] > max_model_mb:
            out.append(f"{m['size_mb']:.1f} MB > {max_model_mb:g} MB")
        return out

    def describe(self) -> str:
        m = self.measured
        if not m:
            return self.name
        return f"{self.name} ({m['latency_ms']:.2f} ms/row p50, {m['size_mb']:.1f} MB)"


@dataclass
class Choice:
    option: Option
    predictor: Predictor
    reason: str
    met: bool | None  # whether the constraints are met; None when there are none


def measure(
    pred: Predictor, sample: pd.DataFrame, budget_s: float = MEASURE_S, sizes: ModelSizes | None = None
) -> dict[str, float]:
    rep = measure_latency(
        pred,
        sample,
        calls=MEASURE_CALLS,
        warmup=MEASURE_WARMUP,
        batch_rows=MEASURE_BATCH_ROWS,
        budget_s=budget_s,
        model_mb=None if sizes is None else sizes.predictor_mb(pred),
    )
    return {
        "latency_ms": rep.one_row_p50_ms,
        "latency_p99_ms": rep.one_row_p99_ms,
        "rows_per_s": rep.rows_per_s,
        "size_mb": rep.model_mb,
        "calls": rep.calls,
        "batch_rows": rep.batch_rows,
    }


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (objective, latency) points (higher objective and lower latency are better): whether each
    is on the Pareto front, i.e. no other point is at least as good on both and better on one."""
    out = []
    for i, (obj, lat) in enumerate(points):
        dominated = any(
            o >= obj and t <= lat and (o > obj or t < lat) for j, (o, t) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


class ModelSizes:
    """Size on disk of a Predictor without saving it whole: its manifest and preprocessing files as
    they would be written, plus each model's files, saved once per model (many options share the
    same fold models) or read from where they already are (a trial's checkpoint)."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}  # id(model) -> bytes of its files

    def known(self, model: Any, directory: Path) -> None:
        if directory.is_dir():
            self.bytes[id(model)] = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())

    def model_bytes(self, model: Any) -> int:
        if id(model) not in self.bytes:
            with tempfile.TemporaryDirectory(prefix="automl-size-") as d:
                model.save(Path(d))
                self.known(model, Path(d))
        return self.bytes[id(model)]

    def predictor_mb(self, pred: Predictor) -> float:
        files = json.dumps(pred.manifest(), indent=1, default=str).encode()
        total = len(files) + sum(len(json.dumps(p.to_dict()).encode()) for p in pred.preprocessors.values())
        members = [*(m for layer in pred.stack_layers for m in layer), *pred.members]
        total += sum(self.model_bytes(model) for m in members for model in m.models)
        return total / 1e6


def measure_all(
    options: list[Option], sample: pd.DataFrame, deadline: float | None, sizes: ModelSizes | None = None
) -> None:
    """Build and measure ``options`` while time is left, the best first (the default choice; after
    the lean ones when its first call builds for long, see :func:`_lean_first_when_setup_is_long`),
    then the lean ones, then the rest, each in the given order; mark the Pareto front. Lean options
    come second because they are the fast end of the front: measured in plain order, a 60 s fit
    of adult measured the bags of lower score and ran out of time before its refit single model
    (0.6 ms/row against the bags' 1.7-4.5 ms)."""
    options = options[:1] + sorted(options[1:], key=lambda o: not o.lean)  # stable within each
    options = _lean_first_when_setup_is_long(options, deadline)
    for i, opt in enumerate(options):
        left = float("inf") if deadline is None else deadline - time.time()
        if left < MIN_MEASURE_S:
            opt.note = opt.note or "not measured: no time left before the fit's deadline"
            continue
        opt.predictor = opt.predictor or opt.build()
        if opt.predictor is None:
            continue
        left = float("inf") if deadline is None else deadline - time.time()
        if left < MIN_MEASURE_S:
            opt.note = "built, not measured: no time left before the fit's deadline"
            continue
        setup = setup_s(opt.predictor) if deadline is not None else 0.0
        if setup > left - MIN_MEASURE_S:  # its first call alone would run past the deadline
            opt.note = (
                f"built, not measured: its first call would build for ~{setup:.1f}s, {left:.1f}s were left"
            )
            continue
        # the best option built (the default choice) may take what is left; the others share it,
        # each at least MIN_MEASURE_S in this order: an equal share of a short time left skipped
        # the best refit option of a 60 s fit of car (8 options, 1.6 s left) and measured the
        # smaller ones after it
        first = not any(o.measured for o in options[:i])
        budget = min(MEASURE_S, left if first else max(MIN_MEASURE_S, left / (len(options) - i)))
        opt.measured = measure(opt.predictor, sample, budget, sizes)
    measured = [o for o in options if o.measured]
    for o, front in zip(measured, pareto_front([(o.objective, o.measured["latency_ms"]) for o in measured])):
        o.pareto = front


def setup_s(pred: Predictor) -> float:
    """Estimated one-time set-up of ``pred``'s first call of a few rows (its bags' joint predictors)."""
    from automl.fastpath import joint_setup_s

    return joint_setup_s(pred)


def _lean_first_when_setup_is_long(options: list[Option], deadline: float | None) -> list[Option]:
    """The lean options first when the best one's first one-row call would take more than half the
    time left building its bags' joint predictors: measured first, a 60 s fit of wine_quality
    (two 7-class XGBoost bags, 20,650 trees) spent 3.4 s of its measurement on that build and left
    its refit ensemble, whose validation score is the bag's, unmeasured."""
    first, lean = options[0], [o for o in options[1:] if o.lean]
    if deadline is None or first.lean or not lean:
        return options
    first.predictor = first.predictor or first.build()
    setup = 0.0 if first.predictor is None else setup_s(first.predictor)
    if setup <= 0 or setup <= (deadline - time.time()) / 2:
        return options
    logger.info(
        "measuring the lean options before %s: its first call builds for about %.1f s", first.name, setup
    )
    return [*lean, first, *(o for o in options[1:] if not o.lean)]


def choose(
    options: list[Option],
    sample: pd.DataFrame,
    *,
    max_latency_ms: float | None,
    max_model_mb: float | None,
    deadline: float | None = None,
    sizes: ModelSizes | None = None,
) -> Choice:
    """Measure ``options`` (best first) and choose; see the module docstring."""
    if not options:
        raise ValueError("choose() needs at least one option")
    order = sorted(options, key=lambda o: (-o.objective, -o.prefer))
    measure_all(order, sample, deadline, sizes)
    return decide(order, max_latency_ms, max_model_mb)


def decide(order: list[Option], max_latency_ms: float | None, max_model_mb: float | None) -> Choice:
    """The choice among ``order`` (best first, measured where time allowed); see the module doc."""
    if max_latency_ms is None and max_model_mb is None:
        opt = _first_built(order)
        return Choice(opt, opt.predictor, f"{opt.describe()}: the best validation score", None)
    measured = [o for o in order if o.measured]
    checks = [(o, o.violations(max_latency_ms, max_model_mb)) for o in measured]
    rejected = [f"{o.name} ({', '.join(w)})" for o, w in checks if w]
    meeting = [o for o, w in checks if not w]
    if meeting:
        opt = meeting[0]
        better = [f"{o.name} ({', '.join(w)})" for o, w in checks if w and order.index(o) < order.index(opt)]
        why = "the best validation score that meets the constraints"
        return Choice(
            opt, opt.predictor, f"{opt.describe()}: {why}" + _listed("better, rejected", better), True
        )
    if measured:
        by_size = max_latency_ms is None
        opt = min(measured, key=lambda o: (o.measured["size_mb" if by_size else "latency_ms"], -o.objective))
        reason = (
            f"no option meets the constraints ({_constraints(max_latency_ms, max_model_mb)}): kept the "
            f"{'smallest' if by_size else 'fastest'}, {opt.describe()}" + _listed("rejected", rejected)
        )
    else:
        opt = _first_built(order)
        reason = (
            f"no option could be measured before the deadline: kept {opt.name}, the best validation "
            f"score, without knowing whether it meets {_constraints(max_latency_ms, max_model_mb)}"
        )
    logger.warning(reason)
    return Choice(opt, opt.predictor, reason, False)


def _first_built(order: list[Option]) -> Option:
    for opt in order:
        opt.predictor = opt.predictor or opt.build()
        if opt.predictor is not None:
            return opt
    raise ValueError("no deployment option could be built: " + "; ".join(o.note for o in order))


def _listed(title: str, items: list[str]) -> str:
    return f"; {title}: " + "; ".join(items) if items else ""


def _constraints(max_latency_ms: float | None, max_model_mb: float | None) -> str:
    parts = [f"max_latency_ms={max_latency_ms:g}"] if max_latency_ms is not None else []
    parts += [f"max_model_mb={max_model_mb:g}"] if max_model_mb is not None else []
    return ", ".join(parts)


def summary(options: list[Option]) -> dict[str, Any]:
    """Every option's objective, measurements, Pareto flag and note (predictor.json, run.json)."""
    return {
        o.name: {
            "objective": o.objective,
            **o.measured,
            "pareto": o.pareto,
            **({"note": o.note} if o.note else {}),
        }
        for o in options
    }
