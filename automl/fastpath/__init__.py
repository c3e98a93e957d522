"""The Predictor's predict path, built for one row and for millions.

Compiled once per Predictor from its input schema and its preprocessing state (plain data):
validation and preprocessing run on NumPy arrays (:mod:`automl.fastpath.columns`,
:mod:`automl.fastpath.features`) for a DataFrame or a mapping of column -> sequence; every
recipe's matrix is built once per call and shared by every member and fold model that reads it
(:class:`automl.models.base.ModelInput`); the model libraries get one thread for small calls and
every available core for large ones. The predictions equal those of the DataFrame path
(:func:`automl.inference.reference_predict_raw`).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from automl.calibration import apply_calibration
from automl.fastpath.columns import ColumnPlan, LevelUniverse, plan_kind, read_columns
from automl.fastpath.features import ENCODING_STEPS, RecipePlan
from automl.kinds import ColumnKind
from automl.models.base import ModelInput
from automl.schema import ValidationReport
from automl.stacking import STACK_RECIPE, stack_features

if TYPE_CHECKING:
    from automl.predictor import Member, Predictor

logger = logging.getLogger(__name__)

#: calls with at least this many rows may use every available core; fewer rows take a few ms at
#: most on one thread, which starting the libraries' thread pools would eat
PARALLEL_ROWS = 1000


def available_threads() -> int:
    """Cores this process may use: its CPU affinity, or OMP_NUM_THREADS when set (Ray sets it in
    its workers to the CPUs they reserved; a user sets it to choose)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(omp))) if omp.isdigit() and int(omp) > 0 else max(1, cores)


def threads_for(n_rows: int) -> int:
    """One thread for a handful of rows; for a large batch every available core, unless other
    processes already keep them busy (1-minute load average above the cores + 0.5, and no
    OMP_NUM_THREADS set): then one. Measured on a 2-core machine at a load of ~16: a 20k-row batch
    of a LightGBM model ran at 17k rows/s on 2 threads and 33k on one (the libraries' threads
    wait for each other when the machine is oversubscribed)."""
    if n_rows < PARALLEL_ROWS:
        return 1
    cores = available_threads()
    if cores > 1 and not os.environ.get("OMP_NUM_THREADS") and _saturated(cores):
        logger.debug(
            "machine saturated by other processes: predicting on one thread (set OMP_NUM_THREADS to override)"
        )
        return 1
    return cores


def _saturated(cores: int) -> bool:
    try:
        return os.getloadavg()[0] > cores + 0.5
    except (AttributeError, OSError):  # no load average on this platform
        return False


class FastPath:
    """A Predictor's schema and preprocessing, compiled. Members, weights and calibration are read
    from the Predictor given at every call (they may be set after the path was compiled)."""

    def __init__(self, predictor: Predictor) -> None:
        self.key = plan_key(predictor)
        schema = predictor.schema
        used = _recipes_used(predictor)
        pres = {r: p for r, p in predictor.preprocessors.items() if r in used}
        if any(p.steps_ is None for p in pres.values()):
            raise ValueError("a preprocessor is not fitted")
        unknown = {st["name"] for p in pres.values() for st in p.steps_} - set(schema.names)
        if unknown:
            raise ValueError(
                f"preprocessing reads column(s) {sorted(unknown)} that are not in the input schema"
            )
        self.plans = [_column_plan(spec, pres) for spec in schema.columns]
        universes = {p.name: p.universe for p in self.plans if p.universe is not None}
        self.recipes = {r: RecipePlan(p, universes) for r, p in pres.items()}
        self._joints: dict[int, tuple[Member, Any]] = {}  # per member: its fold models' joint predictor
        missing = used - set(pres) - {STACK_RECIPE}
        if missing:
            raise ValueError(
                f"members read recipe(s) {sorted(missing)} that the Predictor has no preprocessing for"
            )
        logger.debug(
            "predict path compiled: %d columns, recipes %s; threads: 1 below %d rows, %d from there "
            "(set OMP_NUM_THREADS to cap them)",
            len(self.plans),
            sorted(self.recipes),
            PARALLEL_ROWS,
            available_threads(),
        )

    def predict_raw(self, pred: Predictor, data: Any) -> tuple[np.ndarray, ValidationReport]:
        cols = read_columns(pred.schema, self.plans, data)
        threads = threads_for(cols.n_rows)
        inputs = {r: plan.transform(cols) for r, plan in self.recipes.items()}
        clipped: dict[str, int] = {}
        for layer in pred.stack_layers:
            preds = [self.predict_member(m, inputs[m.recipe], threads, clipped) for m in layer]
            base = inputs["tree"].X if pred.stack_uses_features and "tree" in inputs else None
            inputs[STACK_RECIPE] = ModelInput(
                stack_features(preds, [m.name for m in layer], pred.problem_type, base)
            )
        out = None
        for m in pred.members:
            p = m.weight * self.predict_member(m, inputs[m.recipe], threads, clipped)
            out = p if out is None else out + p
        if pred.calibration:
            out = apply_calibration(out, pred.calibration, pred.problem_type)
        if clipped:
            cols.report.clipped_predictions = clipped
        return out, cols.report

    def predict_member(
        self, member: Member, inputs: ModelInput, threads: int, clipped: dict[str, int] | None = None
    ) -> np.ndarray:
        """The bag's mean prediction through the member's output step (as
        :meth:`automl.predictor.Member.predict`), its fold models evaluated together when their
        family can (:meth:`FittedModel.joint_predictor`); ``clipped`` receives clip counts."""
        outs = None
        # a joint predictor serves a few rows; building it (seconds for large XGBoost bags: 3.4 s
        # for wine_quality's two 5-fold bags) is not paid by a process that predicts batches
        few = inputs.n_rows <= type(member.models[0]).joint_rows
        joint = self._joint(member) if few else None
        if joint is not None:
            outs = joint.predict(inputs, threads)
        if outs is None:
            outs = [model.predict_input(inputs, threads) for model in member.models]
        out = outs[0]
        for o in outs[1:]:
            out = out + o
        out = out / len(outs)
        if member.output is not None:
            out, n = member.output.apply_counted(out)
            if n and clipped is not None:
                clipped[member.name] = n
        return out

    def _joint(self, member: Member) -> Any:
        hit = self._joints.get(id(member))
        if hit is None or hit[0] is not member:
            hit = self._joints[id(member)] = (member, shared_joint(member.models))
        return hit[1]


#: joint predictors by the fold models they predict, shared by every Predictor of the process that
#: holds those models (the deployment stage measures several options over the same bags; building
#: the XGBoost table of two 5-fold bags of 2,000 trees took 4.5 s). Keyed weakly on the first model:
#: an entry goes with its models.
_Entry = tuple[list[weakref.ref[Any]], Any]  # weak references to the models, their joint predictor
_SHARED: weakref.WeakKeyDictionary[Any, list[_Entry]] = weakref.WeakKeyDictionary()


def shared_joint(models: list[Any]) -> Any:
    """``models``' joint predictor (:meth:`FittedModel.joint_predictor`), built once per process for
    the same model objects; None when their family has none or the models are of mixed types."""
    kind = type(models[0])
    if not all(type(m) is kind for m in models):
        return None
    found, joint = _lookup(models)
    if not found:
        joint = kind.joint_predictor(models)
        _SHARED.setdefault(models[0], []).append(([weakref.ref(m) for m in models], joint))
    return joint


def _lookup(models: list[Any]) -> tuple[bool, Any]:
    """Whether this process built ``models``' joint predictor, and that predictor."""
    for refs, joint in _SHARED.get(models[0], []):
        if len(refs) == len(models) and all(r() is m for r, m in zip(refs, models)):
            return True, joint
    return False, None


def joint_setup_s(predictor: Predictor) -> float:
    """Estimated seconds a first call of a few rows would spend building the joint predictors of
    ``predictor``'s bags that this process has not built yet."""
    total, kinds = 0.0, set()
    for member in [*(m for layer in predictor.stack_layers for m in layer), *predictor.members]:
        kind = type(member.models[0])
        if kind.joint_rows and not _lookup(member.models)[0]:
            total += kind.joint_setup_s(member.models)
            kinds.add(kind)
    return total + sum(kind.joint_once_s() for kind in kinds)  # once per class, not per bag


class ReferencePath:
    """The DataFrame path, for a Predictor whose preprocessing has no compiled form."""

    def __init__(self, predictor: Predictor, reason: str) -> None:
        self.key = plan_key(predictor)
        logger.warning("predicting through the DataFrame path (slower): %s", reason)

    def predict_raw(self, pred: Predictor, data: Any) -> tuple[np.ndarray, ValidationReport]:
        from automl.inference import reference_predict_raw

        return reference_predict_raw(pred, data if isinstance(data, pd.DataFrame) else pd.DataFrame(data))


def compile_predict_path(predictor: Predictor) -> FastPath | ReferencePath:
    """The compiled path, or the DataFrame path (with a warning) when a step has no compiled form."""
    try:
        return FastPath(predictor)
    except ValueError as exc:
        return ReferencePath(predictor, str(exc))


def records_to_columns(rows: Sequence[Mapping[Any, Any]]) -> dict[Any, list[Any]]:
    """Rows given as records (JSON objects) as the column mapping ``predict_raw`` takes: every key
    any row has, in order of first appearance, with None where a row lacks it (the missing value
    ``pd.DataFrame(rows)`` would hold there)."""
    names: dict[Any, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def row_index(data: Any) -> pd.Index:
    """The index predictions are returned with: the frame's own, or 0..n-1 for a mapping."""
    if isinstance(data, pd.DataFrame):
        return data.index
    return pd.RangeIndex(len(next(iter(data.values()))) if len(data) else 0)


def plan_key(predictor: Predictor) -> tuple[Any, ...]:
    """What the compiled plans depend on: rebuilt when the schema or a preprocessor is replaced."""
    return (
        id(predictor.schema),
        tuple((r, id(p)) for r, p in predictor.preprocessors.items()),
        _recipes_used(predictor),
    )


def _recipes_used(predictor: Predictor) -> frozenset[str]:
    return frozenset(m.recipe for layer in [*predictor.stack_layers, predictor.members] for m in layer)


def _column_plan(spec: Any, pres: dict[str, Any]) -> ColumnPlan:
    kind = plan_kind(spec.kind)
    universe = None
    if kind == "levels":
        kept = [st["levels"] for p in pres.values() for st in p.steps_ if st["name"] == spec.name]
        report = spec.kind == ColumnKind.CATEGORICAL.value
        universe = LevelUniverse.build(spec.categories, kept, report)
    for p in pres.values():
        for st in p.steps_:
            # step types are named as plan kinds; encodings read a column's levels too
            fits = st["type"] == kind or (kind == "levels" and st["type"] in ENCODING_STEPS)
            if st["name"] == spec.name and not fits:
                raise ValueError(f"column {spec.name!r}: a {st['type']} step on a {spec.kind} column")
    return ColumnPlan(spec.name, kind, spec.required, universe)
