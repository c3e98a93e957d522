"""Training one candidate config across the validation folds, in lockstep.

Every fold's learner advances one *step* (a few boosting rounds or an epoch) at a time; after each
step the mean validation score across folds is computed and handed to ``on_step`` (the Ray Tune
report, so a scheduler may stop the trial there). Early stopping keeps the step with the best
mean score; the out-of-fold predictions and the fold models are taken at that step. This module
knows nothing about Ray.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from automl.metrics import METRICS, Metric
from automl.models.base import Family, FittedModel, Task
from automl.preprocessing import FeatureMatrix

logger = logging.getLogger(__name__)

LOG_LOSS = METRICS["log_loss"]


@dataclass
class TrialData:
    """Everything a trial needs; put in Ray's object store once and shared by all trials."""

    features: dict[str, FeatureMatrix]  # recipe -> matrix of all training rows
    y: np.ndarray  # encoded target (class index or value)
    weights: np.ndarray | None
    folds: list[tuple[np.ndarray, np.ndarray]]
    task: Task
    metric: Metric
    classes: list[Any] | None = None

    @property
    def n_outputs(self) -> int:
        return self.task.n_classes if self.task.problem_type.is_classification else 0


@dataclass
class StepRecord:
    step: int
    iteration: int
    score: float
    elapsed_s: float


@dataclass
class CandidateResult:
    family: str
    config: dict[str, Any]
    fold_scores: list[float]
    best_iteration: int
    oof: np.ndarray  # standardised predictions per training row (NaN where a row is never validated)
    models: list[FittedModel]
    fit_time_s: float  # seconds inside the model library
    wall_time_s: float
    stop_reason: str  # "converged" | "max_iterations" | "time_budget" | "health: <rule>: <detail>"
    history: list[StepRecord] = field(default_factory=list)

    @property
    def score(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def score_std(self) -> float:
        return float(np.std(self.fold_scores))


StepHook = Callable[[dict[str, Any]], None]


def _empty_oof(n: int, data: TrialData) -> np.ndarray:
    k = data.n_outputs
    return np.full((n, k) if k else (n,), np.nan, dtype=np.float64)


def train_candidate(
    family: Family,
    config: dict[str, Any],
    data: TrialData,
    *,
    deadline: float | None = None,
    on_step: StepHook | None = None,
    min_steps_before_deadline: int = 1,
) -> CandidateResult:
    """Train ``config`` of ``family`` on every fold; see the module docstring."""
    t_start = time.perf_counter()
    X = data.features[family.recipe]
    learners = []
    k = len(data.folds)
    for i, (tr, va) in enumerate(data.folds):
        w = data.weights[tr] if data.weights is not None else None
        learner = family.learner(config, data.task, X.take(tr), data.y[tr], w, X.take(va), data.y[va])
        # a learner that trains its fold in one call gets its share of the time left
        learner.deadline = None if deadline is None else time.time() + (deadline - time.time()) * (i + 1) / k
        learners.append(learner)
    step = family.step_size(config, data.task)
    patience = family.patience_for(config)
    metric = data.metric
    # Label metrics (accuracy, F1, ...) move in jumps: log-loss breaks their ties and keeps
    # training alive while the probabilities still improve.
    proxy = LOG_LOSS if data.task.problem_type.is_classification and not metric.needs_proba else None
    best_key: tuple[float, float] = (-np.inf, -np.inf)
    best = (0, None, None)  # iteration, fold scores, fold predictions
    last_gain = {"primary": 0, "proxy": 0}
    best_proxy = -np.inf
    history: list[StepRecord] = []
    stop_reason = "max_iterations"
    n_steps = 0
    while True:
        for learner in learners:
            learner.step(step)
        n_steps += 1
        iteration = learners[0].iteration
        preds = [learner.valid_predictions() for learner in learners]
        fold_scores = [metric.score(data.y[va], p) for (_, va), p in zip(data.folds, preds)]
        mean = float(np.mean(fold_scores))
        objective = metric.objective(mean)
        if not np.isfinite(objective):
            objective = -np.inf
        secondary = 0.0
        if proxy is not None:
            secondary = -float(np.mean([proxy.score(data.y[va], p) for (_, va), p in zip(data.folds, preds)]))
            if secondary > best_proxy + 1e-9:
                best_proxy, last_gain["proxy"] = secondary, iteration
        if (objective, secondary) > best_key or best[1] is None:
            if objective > best_key[0]:
                last_gain["primary"] = iteration
            best_key = (objective, secondary)
            best = (iteration, fold_scores, preds)
        history.append(StepRecord(n_steps, iteration, mean, time.perf_counter() - t_start))
        if on_step is not None:
            on_step({"objective": objective, "score": mean, "iteration": iteration,
                     "best_objective": best_key[0], "step": n_steps})
        fired = next((learner.health_stop for learner in learners if learner.health_stop), None)
        if fired:
            stop_reason = f"health: {fired}"
            break
        if all(learner.done for learner in learners):
            break
        if iteration - max(last_gain.values()) >= patience:
            stop_reason = "converged"
            break
        if deadline is not None and time.time() >= deadline and n_steps >= min_steps_before_deadline:
            stop_reason = "time_budget"
            break
    best_iter, best_scores, best_preds = best
    oof = _empty_oof(X.n_rows, data)
    for (_, va), p in zip(data.folds, best_preds):
        oof[va] = p
    t_finish = time.perf_counter()
    models = [learner.finish(best_iter) for learner in learners]
    finish_s = time.perf_counter() - t_finish
    return CandidateResult(
        family=family.name,
        config=dict(config),
        fold_scores=[float(s) for s in best_scores],
        best_iteration=int(best_iter),
        oof=oof,
        models=models,
        fit_time_s=float(sum(learner.fit_time_s() for learner in learners) + finish_s),
        wall_time_s=time.perf_counter() - t_start,
        stop_reason=stop_reason,
        history=history,
    )


# --- persistence of a candidate (trial checkpoints, run directories) --------------------------------
def save_result(result: CandidateResult, directory: "str | Path") -> None:
    """Write fold models (native formats), out-of-fold predictions and metadata into ``directory``."""
    import json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i, model in enumerate(result.models):
        sub = directory / f"fold_{i}"
        sub.mkdir(exist_ok=True)
        model.save(sub)
    np.save(directory / "oof.npy", result.oof, allow_pickle=False)
    meta = {k: v for k, v in result.__dict__.items() if k not in ("models", "oof", "history")}
    meta["history"] = [h.__dict__ for h in result.history]
    meta["n_models"] = len(result.models)
    (directory / "candidate.json").write_text(json.dumps(meta, default=_jsonable))


def load_result(directory: "str | Path", task: Task) -> CandidateResult:
    import json

    from automl.models import get_family

    directory = Path(directory)
    meta = json.loads((directory / "candidate.json").read_text())
    family = get_family(meta["family"])
    models = [family.load(directory / f"fold_{i}", task) for i in range(meta.pop("n_models"))]
    history = [StepRecord(**h) for h in meta.pop("history")]
    oof = np.load(directory / "oof.npy", allow_pickle=False)
    return CandidateResult(models=models, oof=oof, history=history, **meta)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def refit_full(family: Family, config: dict[str, Any], data: TrialData, n_iterations: int) -> FittedModel:
    """Train ``config`` on every training row for ``n_iterations`` (the best iteration found by
    validation). The learner's validation rows are a small slice of the training rows, only read
    for its bookkeeping."""
    X = data.features[family.recipe]
    all_rows = np.arange(X.n_rows)
    peek = all_rows[: min(256, X.n_rows)]
    learner = family.learner(config, data.task, X, data.y, data.weights, X.take(peek), data.y[peek])
    target = max(1, n_iterations)
    while learner.iteration < target and not learner.done:
        learner.step(min(family.step_size(config, data.task), target - learner.iteration))
    return learner.finish(min(target, learner.iteration))
