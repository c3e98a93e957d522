"""Training one candidate config across the validation folds, in lockstep.

Every fold's learner advances one *step* (a few boosting rounds or an epoch) at a time; after each
step the mean validation score across folds is computed and handed to ``on_step`` (the Ray Tune
report, so a scheduler may stop the trial there). Early stopping keeps the step with the best
mean score; the out-of-fold predictions and the fold models are taken at that step. This module
knows nothing about Ray.
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

import numpy as np

from automl.metrics import METRICS
from automl.models.base import Family, FittedModel, Task
from automl.preprocessing import FeatureMatrix
from automl.target import OutputStep, family_params
from automl.trial_data import TrialData
from automl.trials import StepReport

logger = logging.getLogger(__name__)

LOG_LOSS = METRICS["log_loss"]


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
    #: "converged" | "max_iterations" | "time_budget" | "search_ended" | "health: <rule>: <detail>"
    stop_reason: str
    history: list[StepRecord] = field(default_factory=list)
    n_clipped: int = 0  # validation predictions clipped to the target's range (regression)

    @property
    def score(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def score_std(self) -> float:
        return float(np.std(self.fold_scores))


StepHook = Callable[..., None]  # on_step(metrics) or on_step(metrics, state_dir) when checkpointing
#: decides after each step whether to checkpoint: (steps done, seconds since start) -> bool
CheckpointRule = Callable[[int, float], bool]


def _patience(family: Family, config: dict[str, Any], task: Task) -> int:
    """Steps' worth of iterations without a gain that end a trial (more under a short budget)."""
    patience = family.patience_for(config)
    return int(patience * family.short_budget_patience) if task.short_budget else patience


def _empty_oof(n: int, data: TrialData) -> np.ndarray:
    k = data.n_outputs
    return np.full((n, k) if k else (n,), np.nan, dtype=np.float64)


@dataclass
class _Progress:
    """What the lockstep driver knows between steps (saved with mid-trial checkpoints)."""

    n_steps: int = 0
    best_objective: float = -np.inf
    best_secondary: float = -np.inf
    best_iteration: int = 0
    best_scores: list[float] | None = None
    best_preds: list[np.ndarray] | None = None
    last_gain: dict[str, int] = field(default_factory=lambda: {"primary": 0, "proxy": 0})
    best_proxy: float = -np.inf
    history: list[StepRecord] = field(default_factory=list)
    elapsed_before: float = 0.0  # seconds trained before the last restore
    best_clipped: int = 0  # validation predictions clipped at the best step

    def save(self, directory: Path, elapsed: float) -> None:
        meta = {k: v for k, v in self.__dict__.items() if k not in ("best_preds", "history")}
        meta["history"] = [h.__dict__ for h in self.history]
        meta["elapsed_before"] = elapsed
        (directory / "progress.json").write_text(json.dumps(meta, default=_jsonable))
        np.savez(directory / "best_preds.npz", *(self.best_preds or []))

    @classmethod
    def load(cls, directory: Path) -> _Progress:
        meta = json.loads((directory / "progress.json").read_text())
        meta["history"] = [StepRecord(**h) for h in meta["history"]]
        with np.load(directory / "best_preds.npz", allow_pickle=False) as z:
            preds = [z[f"arr_{i}"] for i in range(len(z.files))]
        return cls(**meta, best_preds=preds or None)


def train_candidate(
    family: Family,
    config: dict[str, Any],
    data: TrialData,
    *,
    deadline: float | None = None,
    on_step: StepHook | None = None,
    min_steps_before_deadline: int = 1,
    checkpoint: CheckpointRule | None = None,
    resume_from: Path | None = None,
    features: FeatureMatrix | list[FeatureMatrix] | None = None,
    select_best: bool = True,
    wrap_up: Callable[[], bool] | None = None,
) -> CandidateResult:
    """Train ``config`` of ``family`` on every fold; see the module docstring.

    With ``checkpoint``, after each step it approves the state is written to a temporary
    directory passed to ``on_step(metrics, state_dir)``; ``resume_from`` continues from such a
    directory (the learners are rebuilt on the same data, then restored). ``features`` replaces
    the family's recipe matrix, or gives one matrix per fold (stacking trains on the previous
    layer's predictions, which differ per fold).
    ``select_best=False`` trains to the config's iteration count and keeps the last step, so
    no validation label influences which model predicts its row (stack layers use this).
    ``wrap_up() -> True`` (read after each step, once ``min_steps_before_deadline`` are done) ends
    the training as the deadline does, with stop reason ``search_ended``: the search it runs in
    was ended and keeps what its trials have trained (``tuning.wrapup``).
    """
    t_start = time.perf_counter()
    learners, outputs = _build_learners(family, config, data, features, deadline)
    can_checkpoint = checkpoint is not None and all(learner.supports_state for learner in learners)
    prog = _Progress()
    if resume_from is not None:
        prog = _Progress.load(resume_from)
        for i, learner in enumerate(learners):
            learner.set_state(resume_from / f"learner_{i}")
        logger.info("%s: resumed at step %d (iteration %d)", family.name, prog.n_steps, learners[0].iteration)
    step = family.step_size(config, data.task)
    patience = _patience(family, config, data.task)
    stop_reason = None
    while stop_reason is None and (not all(learner.done for learner in learners) or prog.best_preds is None):
        for learner in learners:
            learner.step(step)
        prog.n_steps += 1
        metrics = _score_step(prog, learners, data, select_best, outputs)
        elapsed = prog.elapsed_before + time.perf_counter() - t_start
        prog.history.append(StepRecord(prog.n_steps, metrics["iteration"], metrics["score"], elapsed))
        if on_step is not None:
            if can_checkpoint and checkpoint(prog.n_steps, elapsed):
                with tempfile.TemporaryDirectory(prefix="automl-state-") as d:
                    _save_state(Path(d), prog, learners, elapsed)
                    on_step(metrics, d)
            else:
                on_step(metrics)
        stalled = select_best and metrics["iteration"] - max(prog.last_gain.values()) >= patience
        late = prog.n_steps >= min_steps_before_deadline
        stop_reason = _stop_reason(learners, stalled, late, deadline, wrap_up)
    oof = _empty_oof(len(data.y), data)
    for (_, va), p in zip(data.folds, prog.best_preds):
        oof[va] = p
    t_finish = time.perf_counter()
    models = [learner.finish(prog.best_iteration) for learner in learners]
    finish_s = time.perf_counter() - t_finish
    return CandidateResult(
        family=family.name,
        config=dict(config),
        fold_scores=[float(s) for s in prog.best_scores],
        best_iteration=int(prog.best_iteration),
        oof=oof,
        models=models,
        fit_time_s=float(sum(learner.fit_time_s() for learner in learners) + finish_s),
        wall_time_s=prog.elapsed_before + time.perf_counter() - t_start,
        stop_reason=stop_reason or "max_iterations",
        history=prog.history,
        n_clipped=prog.best_clipped,
    )


def _stop_reason(
    learners: list[Any], stalled: bool, late: bool, deadline: float | None, wrap_up: Callable[[], bool] | None
) -> str | None:
    """Why training ends after this step, or None (``late``: the steps the deadline waits for are done)."""
    fired = next((learner.health_stop for learner in learners if learner.health_stop), None)
    if fired:
        return f"health: {fired}"
    if all(learner.done for learner in learners):
        return "max_iterations"
    if stalled:
        return "converged"
    if late and deadline is not None and time.time() >= deadline:
        return "time_budget"
    if late and wrap_up is not None and wrap_up():
        return "search_ended"
    return None


def _build_learners(
    family: Family,
    config: dict[str, Any],
    data: TrialData,
    features: FeatureMatrix | list[FeatureMatrix] | None,
    deadline: float | None,
) -> tuple[list[Any], list[OutputStep | None]]:
    """One learner per fold (on the recipe's matrix, ``features``, or one matrix per fold), on
    the config's target transform; and the output step of each fold's validation predictions."""
    per_fold = features if isinstance(features, list) else [features] * len(data.folds)
    params, tf = family_params(config), data.target_transform(config)
    learners = []
    k = len(data.folds)
    for i, (tr, va) in enumerate(data.folds):
        w = data.weights[tr] if data.weights is not None else None
        if per_fold[i] is None:
            X_tr, X_va = data.fold_matrix(family.recipe, i, tr), data.fold_matrix(family.recipe, i, va)
        else:
            X_tr, X_va = per_fold[i].take(tr), per_fold[i].take(va)
        learner = family.learner(
            params, data.task, X_tr, tf.forward(data.y[tr]), w, X_va, tf.forward(data.y[va])
        )
        # a learner that trains its fold in one call gets its share of the time left
        learner.deadline = None if deadline is None else time.time() + (deadline - time.time()) * (i + 1) / k
        learners.append(learner)
    return learners, [data.output_step(config, tr) for tr, _ in data.folds]


def _score_step(
    prog: _Progress, learners: list[Any], data: TrialData, select_best: bool, outputs: list[OutputStep | None]
) -> StepReport:
    """Score the folds' validation predictions (inverted and clipped to the target's units by
    ``outputs``) after a step and keep the best step so far.

    Label metrics (accuracy, F1, ...) move in jumps: log-loss breaks their ties and keeps
    training alive while the probabilities still improve."""
    metric = data.metric
    proxy = LOG_LOSS if data.task.problem_type.is_classification and not metric.needs_proba else None
    iteration = learners[0].iteration
    preds, clipped = [], 0
    for learner, out in zip(learners, outputs):
        p = learner.valid_predictions()
        if out is not None:
            p, n = out.apply_counted(p)
            clipped += n
        preds.append(p)
    fold_scores = [metric.score(data.y[va], p) for (_, va), p in zip(data.folds, preds)]
    mean = float(np.mean(fold_scores))
    objective = metric.objective(mean)
    if not np.isfinite(objective):
        objective = -np.inf
    secondary = 0.0
    if proxy is not None:
        secondary = -float(np.mean([proxy.score(data.y[va], p) for (_, va), p in zip(data.folds, preds)]))
        if secondary > prog.best_proxy + 1e-9:
            prog.best_proxy, prog.last_gain["proxy"] = secondary, iteration
    better = (objective, secondary) > (prog.best_objective, prog.best_secondary)
    if not select_best or better or prog.best_preds is None:
        if objective > prog.best_objective:
            prog.last_gain["primary"] = iteration
        prog.best_objective, prog.best_secondary = objective, secondary
        prog.best_iteration, prog.best_scores, prog.best_preds = iteration, fold_scores, preds
        prog.best_clipped = clipped
    return StepReport(
        objective=objective,
        score=mean,
        iteration=iteration,
        best_objective=prog.best_objective,
        step=prog.n_steps,
    )


def _save_state(directory: Path, prog: _Progress, learners: list[Any], elapsed: float) -> None:
    prog.save(directory, elapsed)
    for i, learner in enumerate(learners):
        sub = directory / f"learner_{i}"
        sub.mkdir()
        learner.get_state(sub)


def is_state_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / "progress.json").exists()


# --- persistence of a candidate (trial checkpoints, run directories) --------------------------------
def save_result(result: CandidateResult, directory: str | Path) -> None:
    """Write fold models (native formats), out-of-fold predictions and metadata into ``directory``."""
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


def load_result(directory: str | Path, task: Task) -> CandidateResult:
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


def refit_full(
    family: Family, config: dict[str, Any], data: TrialData, n_iterations: int, rows: np.ndarray | None = None
) -> FittedModel:
    """Train ``config`` on every training row (or on ``rows``) for ``n_iterations`` (the best
    iteration found by validation). The learner's validation rows are a small slice of the
    training rows, only read for its bookkeeping. The model predicts on the config's transformed
    target scale: its Member's output step (``data.output_step(config)``) inverts it."""
    X = data.features[family.recipe]
    rows = np.arange(X.n_rows) if rows is None else rows
    peek = rows[: min(256, len(rows))]
    w = data.weights[rows] if data.weights is not None else None
    tf = data.target_transform(config)
    y, y_peek = tf.forward(data.y[rows]), tf.forward(data.y[peek])
    learner = family.learner(family_params(config), data.task, X.take(rows), y, w, X.take(peek), y_peek)
    target = max(1, n_iterations)
    # no more than the target: a learner that trains in one call (CatBoost) would otherwise train
    # every iteration its config allows, its early stopping blind on these training rows
    learner.max_iterations = min(learner.max_iterations, target)
    while learner.iteration < target and not learner.done:
        learner.step(min(family.step_size(config, data.task), target - learner.iteration))
    return learner.finish(min(target, learner.iteration))
