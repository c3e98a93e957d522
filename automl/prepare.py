"""The prepare stage of a fit: profile, target encoding, input schema, model families,
preprocessing and validation folds, everything the search and the ensembler work from.

``run_fit``, ``AutoML.profile``, the CLI's ``profile``, the tests and the benchmarks all call
:func:`prepare` (or :func:`profile_for`) instead of rebuilding it. No Ray here.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from automl.columns import ColumnDecision, ProbeSetup, probe_columns
from automl.config import FitSpec
from automl.data import align_channel
from automl.encoders import EncodingTarget, FoldColumns, fold_columns
from automl.exceptions import ConfigError, DataError
from automl.kinds import level_strings
from automl.metrics import Metric, resolve_metric
from automl.models.base import Family, Task, all_families, get_family
from automl.preprocessing import FeatureMatrix, Preprocessor
from automl.problem import ProblemType
from automl.profile import DataProfile, profile_table
from automl.schema import ColumnSpec, InputSchema
from automl.splits import Folds, make_folds
from automl.target import TargetPlan, plan_target
from automl.trial_data import TrialData

logger = logging.getLogger(__name__)

#: levels of a categorical column listed in the input schema (the rest are "rare or unseen")
MAX_SCHEMA_LEVELS = 1000


@dataclass
class Prepared:
    """The result of the prepare stage."""

    df: pd.DataFrame  # training rows that have a target (a user validation table appended last)
    profile: DataProfile
    metric: Metric
    classes: list[Any] | None  # class labels in code order (classification)
    schema: InputSchema
    families: dict[str, Family]
    preprocessors: dict[str, Preprocessor]  # recipe -> fitted preprocessor
    folds: Folds
    data: TrialData  # matrices, encoded target, weights, folds, task: what every trial gets
    timings: dict[str, float] = field(default_factory=dict)  # profile_s, column_probe_s, preprocess_s
    column_decisions: list[ColumnDecision] = field(default_factory=list)  # the column probe's verdicts
    target_plan: TargetPlan | None = None  # regression: transform offered, clip range, why

    def decisions(self) -> dict[str, Any]:
        """What the prepare stage decided and why (run.json's ``decisions``)."""
        out: dict[str, Any] = {}
        if self.column_decisions:
            out["columns"] = {d.column: d.to_dict() for d in self.column_decisions}
        if self.target_plan is not None:
            out["target"] = self.target_plan.to_dict()
        return out

    @property
    def y(self) -> np.ndarray:
        return self.data.y

    @property
    def task(self) -> Task:
        return self.data.task


def profile_for(spec: FitSpec, table: pd.DataFrame) -> DataProfile:
    """The profile of ``table`` under ``spec`` (what a fit would infer and warn about)."""
    v = spec.validation
    return profile_table(
        table,
        spec.target,
        problem_type=spec.problem_type,
        metric=spec.metric,
        drop_columns=spec.drop_columns,
        time_column=v.time_column,
        group_column=v.group_column,
        weight_column=spec.weight_column,
        n_folds=v.n_folds,
        probe_columns=spec.search.column_probe,
    )


def prepare(
    spec: FitSpec,
    train: pd.DataFrame,
    *,
    validation: pd.DataFrame | None = None,
    recipes: tuple[str, ...] | None = None,
) -> Prepared:
    """Profile ``train`` (with a user ``validation`` table appended as the single validation
    fold), encode the target, build the schema, pick the families, fit their preprocessing
    recipes (or only ``recipes``) and make the folds."""
    t0 = time.time()
    n_valid = 0
    if validation is not None:
        validation = align_channel(train, validation, "validation", target=spec.target)
        n_valid = int(validation[spec.target].notna().sum())  # rows without a target are dropped below
        train = pd.concat([train, validation], ignore_index=True)
    profile = profile_for(spec, train)
    df = train.loc[train[spec.target].notna()].reset_index(drop=True)
    metric, _ = resolve_metric(spec.metric, profile.problem)
    y, classes = encode_target(df[spec.target], profile)
    if metric.custom and classes is not None:
        metric = metric.with_classes(classes)
    folds = make_run_folds(spec, df, y, profile, n_valid)
    logger.info("validation: %s (%s)", folds.kind, folds.describe()["validation_rows"])
    weights = sample_weights(df, y, spec, profile.problem.is_classification)
    plan = None
    if profile.problem is ProblemType.REGRESSION:
        plan = plan_target(
            y,
            profile.target_summary,
            setting=spec.search.target_transform,
            clip=spec.ensemble.clip_predictions,
            name=spec.target,
        )
    by_rule = build_schema(profile, df)  # the features as the profile's rules decide them
    task = Task(
        profile.problem,
        len(classes) if classes else 0,
        len(df),
        len(by_rule.columns),
        seed=spec.seed,
        num_threads=max(1, int(spec.resources.cpus_per_trial)),
        target_transform=(plan.offered or "") if plan else "",
        short_budget=spec.validation.budget_is_short(
            len(df), n_classes=len(classes) if classes else 0, time_limit=spec.time_limit
        ),
    )
    timings = {"profile_s": time.time() - t0}

    t = time.time()
    decisions: list[ColumnDecision] = []
    if spec.search.column_probe:
        workers = spec.resources.num_cpus or len(os.sched_getaffinity(0))
        setup = ProbeSetup(df, by_rule.columns, y, weights, folds.folds, task, metric, classes, workers)
        decisions = probe_columns(setup, profile, time_limit=spec.time_limit)
        apply_decisions(profile, decisions)
    timings["column_probe_s"] = time.time() - t
    schema = build_schema(profile, df)
    task = replace(task, n_features=len(schema.columns))
    families = select_families(spec, task)

    t = time.time()
    wanted = recipes or tuple(sorted({f.recipe for f in families.values()}))
    target = EncodingTarget(y, profile.problem, classes, spec.seed)
    pre = {r: Preprocessor(r, schema.columns).fit(df, target) for r in wanted}
    feats = {r: p.transform(df) for r, p in pre.items()}
    encoded = encoded_fold_columns(schema, df, target, folds, pre, feats)
    data = TrialData(feats, y, weights, folds.folds, task, metric, classes, plan, encoded)
    timings["preprocess_s"] = time.time() - t
    return Prepared(
        df, profile, metric, classes, schema, families, pre, folds, data, timings, decisions, plan
    )


def apply_decisions(profile: DataProfile, decisions: list[ColumnDecision]) -> None:
    """Record the probe's verdicts in the profile; a kept identifier becomes a feature (its
    profile warning stays)."""
    for d in decisions:
        cp = profile.column(d.column)
        cp.decision = d.to_dict()
        if d.changed and cp.role == "dropped":
            cp.role, cp.drop_reason = "feature", None
        if d.changed:
            cp.reason += f"; kept by the column probe as {d.choice} (see decision)"


def build_schema(profile: DataProfile, df: pd.DataFrame) -> InputSchema:
    cols = []
    for c in profile.columns:
        if not c.is_feature:
            continue
        choice = (c.decision or {}).get("choice")
        kind = "numeric" if choice == "number" else c.kind
        encoding = choice if choice in ("target", "frequency") else None
        cats = None
        if c.kind in ("categorical", "boolean"):
            levels = level_strings(df[c.name].dropna())
            cats = [str(v) for v in levels.value_counts().index[:MAX_SCHEMA_LEVELS]]
        elif encoding is not None:  # an identifier read as levels: too many to list
            kind = "categorical"
        cols.append(
            ColumnSpec(
                c.name, kind, c.dtype, required=c.missing_share == 0, categories=cats, encoding=encoding
            )
        )
    ids = [c.name for c in profile.columns if c.kind == "identifier"]
    return InputSchema(cols, ids)


def encoded_fold_columns(
    schema: InputSchema,
    df: pd.DataFrame,
    target: EncodingTarget,
    folds: Folds,
    pre: dict[str, Preprocessor],
    feats: dict[str, FeatureMatrix],
) -> FoldColumns | None:
    """Out-of-fold values of the target-encoded columns (automl.encoders); the recipes' matrices
    get the values cross fitted over all rows in place of the in-sample ones."""
    cols = [c.name for c in schema.columns if c.encoding == "target"]
    if not cols:
        return None
    names, base, per_fold = fold_columns(
        df, cols, target.y, folds.folds, target.problem, target.classes, seed=target.seed
    )
    positions, scales = {}, {}
    for r, X in feats.items():
        index = {n: i for i, n in enumerate(X.num_names)}
        positions[r] = [index[n] for n in names]
        steps = {st["name"]: st for st in pre[r].steps_ or [] if st["type"] == "target_encoding"}
        stats = [(s["mean"], s["std"]) for c in cols for s in steps[c]["scale"]]
        scales[r] = None if r == "tree" else stats
    encoded = FoldColumns(names, base, per_fold, positions, scales)
    for r, X in feats.items():
        encoded.write(X, r, base)
    return encoded


def encode_target(y: pd.Series, profile: DataProfile) -> tuple[np.ndarray, list[Any] | None]:
    if not profile.problem.is_classification:
        return pd.to_numeric(y).to_numpy(dtype=np.float64), None
    classes = sorted(y.unique().tolist(), key=lambda v: (str(type(v)), v))
    classes = [c.item() if hasattr(c, "item") else c for c in classes]
    codes = pd.Categorical(y, categories=classes).codes.astype(np.int32)
    return codes, classes


def sample_weights(df: pd.DataFrame, y: np.ndarray, spec: FitSpec, classification: bool) -> np.ndarray | None:
    w = None
    if spec.weight_column:
        w = pd.to_numeric(df[spec.weight_column], errors="coerce").to_numpy(dtype=float)
        if np.isnan(w).any() or (w < 0).any():
            raise DataError(
                f"weight column {spec.weight_column!r} must hold non-negative numbers in every row"
            )
    if spec.class_weight == "balanced":
        if not classification:
            raise ConfigError("class_weight='balanced' applies to classification only")
        counts = np.bincount(y)
        cw = len(y) / (len(counts) * np.maximum(counts, 1))
        w = cw[y] if w is None else w * cw[y]
    return w


def select_families(spec: FitSpec, task: Task) -> dict[str, Family]:
    wanted = spec.search.families
    if wanted:
        fams = {n: get_family(n) for n in wanted}
        bad = [n for n, f in fams.items() if not f.applies_to(task)]
        if bad:
            fits = [n for n, f in all_families().items() if f.applies_to(task)]
            raise ConfigError(
                f"families {bad} do not apply to a {task.problem_type.value} problem with {task.n_rows:,} "
                f"training rows (k-NN has a row limit); choose from {fits}"
            )
        return fams
    return {n: f for n, f in all_families().items() if f.applies_to(task)}


def make_run_folds(
    spec: FitSpec, df: pd.DataFrame, y: np.ndarray, profile: DataProfile, n_user_valid: int
) -> Folds:
    n = len(df)
    if n_user_valid:
        tr, va = np.arange(n - n_user_valid), np.arange(n - n_user_valid, n)
        return Folds("user", [(tr, va)], n, spec.seed)
    v = spec.validation
    n_classes = int(y.max()) + 1 if profile.problem.is_classification and len(y) else 0
    strategy, why = v.resolve(n, n_classes=n_classes, time_limit=spec.time_limit)
    share, share_why = v.holdout_share(n)
    if strategy == "holdout":
        why = f"{why}; {share_why}"
    logger.info("validation scheme %s: %s", strategy, why)
    return make_folds(
        n,
        strategy=strategy,
        n_folds=v.n_folds,
        holdout_fraction=share,
        y=y if profile.problem.is_classification else None,
        time_values=df[v.time_column] if v.time_column else None,
        groups=df[v.group_column] if v.group_column else None,
        seed=spec.seed,
    )
