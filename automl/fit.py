"""The orchestrator of a fit: profile -> preprocess -> folds -> search -> ensemble -> Predictor.

The only module of ``automl`` that imports ``tuning`` (and so Ray Tune).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import layout
from automl import leaderboard as lb
from automl.assemble import assemble
from automl.config import EnsembleConfig, ResourceConfig, SearchConfig, ValidationConfig
from automl.data import align_channel
from automl.exceptions import ConfigError, DataError
from automl.kinds import level_strings
from automl.metrics import Metric, resolve_metric
from automl.models.base import Task, all_families, get_family
from automl.predictor import Predictor
from automl.preprocessing import Preprocessor
from automl.profile import DataProfile, profile_table
from automl.schema import ColumnSpec, InputSchema
from automl.splits import Folds, make_folds
from automl.training import TrialData

logger = logging.getLogger(__name__)

MAX_SCHEMA_LEVELS = 1000


@dataclass(frozen=True)
class FitSpec:
    target: str
    problem_type: str | None = None
    metric: str | Metric | None = None
    time_limit: float | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    seed: int = 0
    drop_columns: tuple[str, ...] = ()
    weight_column: str | None = None
    class_weight: str | None = None
    report: bool = True


@dataclass
class FitResult:
    predictor: Predictor
    leaderboard: pd.DataFrame
    profile: DataProfile
    run_info: dict[str, Any]


def build_schema(profile: DataProfile, df: pd.DataFrame) -> InputSchema:
    cols = []
    for c in profile.columns:
        if not c.is_feature:
            continue
        cats = None
        if c.kind in ("categorical", "boolean"):
            levels = level_strings(df[c.name].dropna())
            cats = [str(v) for v in levels.value_counts().index[:MAX_SCHEMA_LEVELS]]
        cols.append(ColumnSpec(c.name, c.kind, c.dtype, required=c.missing_share == 0, categories=cats))
    ids = [c.name for c in profile.columns if c.kind == "identifier"]
    return InputSchema(cols, ids)


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


def select_families(spec: FitSpec, task: Task) -> dict[str, Any]:
    wanted = spec.search.families
    if wanted:
        fams = {n: get_family(n) for n in wanted}
        bad = [n for n, f in fams.items() if not f.applies_to(task)]
        if bad:
            raise ConfigError(f"families {bad} do not support {task.problem_type.value} problems")
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
    logger.info("validation scheme %s: %s", strategy, why)
    return make_folds(
        n,
        strategy=strategy,
        n_folds=v.n_folds,
        holdout_fraction=v.holdout_fraction,
        y=y if profile.problem.is_classification else None,
        time_values=df[v.time_column] if v.time_column else None,
        groups=df[v.group_column] if v.group_column else None,
        seed=spec.seed,
    )


def run_fit(
    spec: FitSpec,
    train: pd.DataFrame,
    *,
    run_dir: Path,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    resume: bool = False,
    started_at: float | None = None,
    lineage: dict[str, Any] | None = None,
) -> FitResult:
    """Run the autopilot. The time limit counts from ``started_at`` (default: now)."""
    from automl.runtime import ensure_ray
    from tuning import run_search  # the orchestrator is the one place automl imports tuning

    t0 = started_at or time.time()
    deadline = t0 + spec.time_limit if spec.time_limit else None
    timings: dict[str, float] = {}
    run_dir.mkdir(parents=True, exist_ok=True)
    n_valid = 0
    if validation is not None:
        validation = align_channel(train, validation, "validation", target=spec.target)
        n_valid = int(validation[spec.target].notna().sum())  # rows without a target are dropped below
        train = pd.concat([train, validation], ignore_index=True)
    v = spec.validation
    profile = profile_table(
        train,
        spec.target,
        problem_type=spec.problem_type,
        metric=spec.metric,
        drop_columns=spec.drop_columns,
        time_column=v.time_column,
        group_column=v.group_column,
        weight_column=spec.weight_column,
        n_folds=v.n_folds,
    )
    df = train.loc[train[spec.target].notna()].reset_index(drop=True)
    profile.save(run_dir / layout.PROFILE)
    metric, _ = resolve_metric(spec.metric, profile.problem)
    y, classes = encode_target(df[spec.target], profile)
    if metric.custom and classes is not None:
        metric = metric.with_classes(classes)
    schema = build_schema(profile, df)
    task = Task(
        profile.problem,
        len(classes) if classes else 0,
        len(df),
        len(schema.columns),
        seed=spec.seed,
        num_threads=max(1, int(spec.resources.cpus_per_trial)),
    )
    families = select_families(spec, task)
    timings["profile_s"] = time.time() - t0

    t = time.time()
    recipes = sorted({f.recipe for f in families.values()})
    pre = {r: Preprocessor(r, schema.columns).fit(df) for r in recipes}
    feats = {r: p.transform(df) for r, p in pre.items()}
    folds = make_run_folds(spec, df, y, profile, n_valid)
    (run_dir / layout.FOLDS).write_text(json.dumps(folds.to_dict()))
    logger.info("validation: %s (%s)", folds.kind, folds.describe()["validation_rows"])
    data = TrialData(
        feats,
        y,
        sample_weights(df, y, spec, profile.problem.is_classification),
        folds.folds,
        task,
        metric,
        classes,
    )
    timings["preprocess_s"] = time.time() - t

    t = time.time()
    cluster = ensure_ray(spec.resources)
    timings["ray_init_s"] = time.time() - t
    gpus = spec.resources.gpus_per_trial
    if (gpus if gpus is not None else cluster.gpus) > 0:
        # families that can use a GPU (XGBoost, CatBoost, the MLP) train on it; the trials request one
        data.task = replace(data.task, use_gpu=True)
        logger.info("GPU: %.0f in the cluster; trials of GPU-capable families train on CUDA", cluster.gpus)
    # time kept after the search for loading candidates, ensembling, refitting, saving and the report
    reserve = (
        min(60.0, max(3.0, 0.06 * spec.time_limit))
        + (min(REPORT_RESERVE_S, 0.1 * spec.time_limit) if spec.report else 0.0)
        + (STACK_RESERVE_SHARE * spec.time_limit if spec.ensemble.stack_levels else 0.0)
        if spec.time_limit
        else 0.0
    )
    search_deadline = deadline - reserve if deadline else None
    outcome = run_search(
        data,
        families,
        spec.search,
        cluster=cluster,
        resources=spec.resources,
        run_dir=run_dir,
        deadline=search_deadline,
        seed=spec.seed,
        resume=resume,
        extra_points=_warm_start_points(spec.search.warm_start, families),
    )
    timings["search_s"] = outcome.wall_s
    if not any(r.status == "completed" and r.checkpoint for r in outcome.trials):
        outcome.trials.append(fallback_trial(families, data, run_dir))

    t = time.time()
    sample = df.drop(columns=[spec.target]).sample(min(len(df), 50), random_state=spec.seed)
    predictor, rows, info, chosen_oof = assemble(
        spec,
        outcome,
        data,
        folds,
        pre,
        schema,
        profile,
        classes,
        metric,
        test=test,
        sample=sample,
        deadline=deadline - 1.0 if deadline else None,
    )
    # scoring test_data is not part of the fit: the time limit does not count it
    timings["test_scoring_s"] = info.pop("test_scoring_s", 0.0)
    timings["ensemble_s"] = time.time() - t - timings["test_scoring_s"]
    save_validation_sample(run_dir, df, folds, chosen_oof, classes, seed=spec.seed)
    board = lb.build(rows, metric.greater_is_better)
    lb.save(board, run_dir / layout.LEADERBOARD)
    t = time.time()
    predictor.save(run_dir)
    timings["save_s"] = time.time() - t
    timings["total_s"] = time.time() - t0 - timings["test_scoring_s"]
    completed = [r for r in outcome.trials if r.status == "completed" and r.library_time_s is not None]
    overhead = [r.driver_wall_s - r.library_time_s for r in completed if r.driver_wall_s]
    run_info = {
        "target": spec.target,
        "problem_type": profile.problem_type,
        "metric": metric.name,
        "time_limit_s": spec.time_limit,
        "search_strategy": outcome.strategy,
        "ended_because": outcome.ended_because,
        "n_trials": len(outcome.trials),
        "search_notes": outcome.notes,
        "trials_by_status": pd.Series([r.status for r in outcome.trials]).value_counts().to_dict(),
        "concurrency": outcome.concurrency,
        "validation": folds.describe(),
        "timings": timings,
        "overshoot_s": (timings["total_s"] - spec.time_limit) if spec.time_limit else None,
        "trial_overhead_s": {
            "mean": float(np.mean(overhead)) if overhead else None,
            "median": float(np.median(overhead)) if overhead else None,
            "max": float(np.max(overhead)) if overhead else None,
        },
        "experiment_path": outcome.experiment_path,
        "seed": spec.seed,
        **info,
        **(lineage or {}),
    }
    (run_dir / layout.RUN_INFO).write_text(json.dumps(run_info, indent=1, default=str))
    if spec.report:
        _write_report(run_dir, run_info)
        # the report is part of the fit (the time limit keeps room for it)
        timings["total_s"] = time.time() - t0 - timings["test_scoring_s"]
        run_info["overshoot_s"] = (timings["total_s"] - spec.time_limit) if spec.time_limit else None
        (run_dir / layout.RUN_INFO).write_text(json.dumps(run_info, indent=1, default=str))
    if spec.resources.storage:  # a cluster's shared storage: copy the finished run there too
        from automl.runtime import publish_run

        run_info["published_to"] = publish_run(run_dir, spec.resources.storage)
        (run_dir / layout.RUN_INFO).write_text(json.dumps(run_info, indent=1, default=str))
    logger.info("fit done in %.1fs: %s", timings["total_s"], info.get("chosen"))
    return FitResult(predictor, board, profile, run_info)


def _write_report(run_dir: Path, run_info: dict[str, Any]) -> None:
    """``report.html`` at the end of a fit; a failure is logged, never raised (the fit is done)."""
    t = time.time()
    try:
        from automl.report import write_report

        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001  (a report must never fail a fit)
        logger.warning(
            "the report could not be written (%s: %s); run `automl report %s` to retry",
            type(exc).__name__,
            exc,
            run_dir,
        )
        return
    run_info["timings"]["report_s"] = time.time() - t
    (run_dir / layout.RUN_INFO).write_text(json.dumps(run_info, indent=1, default=str))


def fallback_trial(families: dict[str, Any], data: TrialData, run_dir: Path) -> Any:
    """No trial finished in time (a tiny budget on a loaded machine): train the first family's
    default config here, past the deadline, so the user still gets a model, and say so."""
    from automl.training import save_result, train_candidate
    from automl.trials import TrialRecord

    family = next(iter(families.values()))
    config = family.portfolio(data.task)[0]
    logger.warning(
        "no trial finished within the time limit; training the %s default config in this process "
        "so there is a model (give a longer time_limit to search)",
        family.name,
    )
    result = train_candidate(family, config, data)
    path = run_dir / layout.FALLBACK_DIR
    save_result(result, path)
    return TrialRecord(
        trial_id="fallback",
        family=family.name,
        params=config,
        status="completed",
        score=result.score,
        score_std=result.score_std,
        iteration=result.best_iteration,
        fit_time_s=result.fit_time_s,
        library_time_s=result.fit_time_s,
        stop_reason="fallback: no trial finished within the time limit",
        checkpoint=str(path),
    )


VALIDATION_SAMPLE_ROWS = 10_000
#: seconds the time limit keeps for writing report.html (about 4-6 s measured on 2 cores)
REPORT_RESERVE_S = 5.0
#: share of the time limit kept for the stack layer when stacking is on (its nested fits)
STACK_RESERVE_SHARE = 0.15


def save_validation_sample(
    run_dir: Path, df: pd.DataFrame, folds: Folds, oof: np.ndarray, classes: list[Any] | None, *, seed: int
) -> Path:
    """``validation_sample.parquet``: up to 10,000 training rows (seeded sample of the rows that
    have out-of-fold predictions) with their original columns, ``__row`` (position in the
    training table), ``__fold`` and the chosen model's out-of-fold prediction: ``__proba_<class>``
    per class for classifiers, ``__prediction`` for regression. Reports read it."""
    rows = np.nonzero(folds.oof_mask)[0]
    if len(rows) > VALIDATION_SAMPLE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, VALIDATION_SAMPLE_ROWS, replace=False))
    out = df.iloc[rows].reset_index(drop=True).copy()
    out["__row"] = rows
    out["__fold"] = folds.assignment[rows]
    if classes is not None:
        for j, c in enumerate(classes):
            out[f"__proba_{c}"] = oof[rows, j]
    else:
        out["__prediction"] = oof[rows]
    path = run_dir / layout.VALIDATION_SAMPLE
    out.to_parquet(path, index=False)
    return path


def _warm_start_points(previous: str | None, families: dict[str, Any], top: int = 5) -> list[dict[str, Any]]:
    """Best configs of an earlier run (its leaderboard), evaluated first in this search."""
    if not previous:
        return []
    path = Path(previous) / layout.LEADERBOARD
    if not path.exists():
        raise ConfigError(f"warm_start: {str(path)!r} does not exist; pass a run directory of an earlier fit")
    board = lb.load(path)
    done = board[(board["status"] == "completed") & board["family"].isin(list(families))].head(top)
    points = [
        {"family": r.family, **{f"{r.family}.{k}": v for k, v in json.loads(r.params).items()}}
        for r in done.itertuples()
    ]
    logger.info("warm start: %d configs from %s", len(points), previous)
    return points
