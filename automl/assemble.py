"""After the search: load the best candidates, build the weighted ensemble, refit when asked,
and produce the Predictor and the leaderboard rows."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from automl.ensemble import combine, greedy_ensemble
from automl.leaderboard import Row
from automl.metrics import Metric
from automl.models.base import get_family
from automl.predictor import Member, Predictor
from automl.training import CandidateResult, TrialData, load_result, refit_full

logger = logging.getLogger(__name__)


def model_names(trials: list[Any]) -> dict[str, str]:
    """Readable, stable model names: family + the order in which the searcher created the trial
    ("lightgbm_003"), so a reproducible search names its models the same way every time."""
    order = sorted(trials, key=lambda r: (r.index if r.index is not None else 10**9, r.trial_id))
    return {r.trial_id: f"{r.family}_{i:03d}" for i, r in enumerate(order, 1)}


def pick_candidates(trials: list[Any], metric: Metric, max_members: int) -> list[Any]:
    """The best completed trial of each family first, then the next best overall."""
    done = [r for r in trials if r.status == "completed" and r.checkpoint and r.score is not None]
    done.sort(key=lambda r: -metric.objective(r.score))
    picked, seen = [], set()
    for r in done:
        if r.family not in seen:
            picked.append(r)
            seen.add(r.family)
    for r in done:
        if len(picked) >= max_members:
            break
        if r not in picked:
            picked.append(r)
    picked.sort(key=lambda r: -metric.objective(r.score))
    return picked[:max_members]


def fold_scores(oof: np.ndarray, data: TrialData, metric: Metric) -> list[float]:
    return [metric.score(data.y[va], oof[va]) for _, va in data.folds]


def assemble(spec: Any, outcome: Any, data: TrialData, folds: Any, pre: dict, schema: Any, profile: Any,
             classes: list | None, metric: Metric, *, test: pd.DataFrame | None,
             deadline: float | None = None) -> tuple:
    names = model_names(outcome.trials)
    rows = [_trial_row(r, names[r.trial_id], metric) for r in outcome.trials]
    chosen_trials = pick_candidates(outcome.trials, metric, spec.ensemble.max_members)
    if not chosen_trials:
        errors = sorted({r.error for r in outcome.trials if r.error})[:3]
        from automl.exceptions import AutoMLError

        raise AutoMLError(
            f"no trial finished ({len(outcome.trials)} started; search ended: {outcome.ended_because}). "
            + (f"Errors: {errors}. " if errors else "")
            + "Give a longer time_limit or more max_trials."
        )
    loaded: dict[str, CandidateResult] = {r.trial_id: load_result(r.checkpoint, data.task) for r in chosen_trials}
    mask = folds.oof_mask
    best = chosen_trials[0]
    members_spec: list[tuple[Any, float]] = [(best, 1.0)]
    ens_row = None
    if spec.ensemble.enabled and len(chosen_trials) > 1:
        preds = [loaded[r.trial_id].oof for r in chosen_trials]
        ens = greedy_ensemble(preds, data.y, metric, size=spec.ensemble.size, mask=mask, deadline=deadline)
        ens_oof = combine(preds, ens.weights)
        single = metric.score(data.y[mask], preds[0][mask])
        logger.info("weighted ensemble: %s=%.5g on out-of-fold predictions (best single %.5g)",
                    metric.name, ens.score, single)
        weights = {names[r.trial_id]: round(float(w), 4) for r, w in zip(chosen_trials, ens.weights) if w > 0}
        scores = fold_scores(ens_oof, data, metric)
        ens_row = Row(model="weighted_ensemble", family="ensemble", status="ensemble", metric=metric.name,
                      score_val=float(np.mean(scores)), score_std=float(np.std(scores)), members=weights,
                      fit_time_s=sum(loaded[r.trial_id].fit_time_s for r, w in zip(chosen_trials, ens.weights) if w),
                      predict_time_s=sum((r.predict_time_s or 0) for r, w in zip(chosen_trials, ens.weights) if w),
                      stop_reason=f"greedy selection, {ens.rounds} of {spec.ensemble.size} rounds")
        rows.append(ens_row)
        if metric.objective(ens.score) > metric.objective(single) + 1e-12 and len(weights) > 1:
            members_spec = [(r, float(w)) for r, w in zip(chosen_trials, ens.weights) if w > 0]
    refit = spec.ensemble.refit is True or (spec.ensemble.refit == "auto" and len(data.folds) == 1)
    members = []
    for r, w in members_spec:
        res = loaded[r.trial_id]
        family = get_family(r.family)
        if refit:
            models = [refit_full(family, res.config, data, res.best_iteration)]
        else:
            models = res.models
        members.append(Member(names[r.trial_id], r.family, family.recipe, w, models, res.config, refit))
    chosen_name = "weighted_ensemble" if len(members) > 1 else members[0].name
    chosen_oof = combine([loaded[r.trial_id].oof for r, _ in members_spec], np.array([w for _, w in members_spec]))
    for row in rows:
        row.chosen = row.model == chosen_name
        if refit and (row.model in {m.name for m in members} or row.model == chosen_name):
            row.refit = True
    predictor = Predictor(target=profile.target, problem_type=profile.problem, classes=classes, metric=metric.name,
                          schema=schema, preprocessors={r: p for r, p in pre.items()
                                                        if any(m.recipe == r for m in members)},
                          members=members, task=data.task,
                          info={"chosen": chosen_name, "search_ended_because": outcome.ended_because})
    if test is not None:
        _score_test(predictor, test, rows, chosen_name, metric, classes)
    info = {"chosen": chosen_name, "members": {m.name: m.weight for m in members}, "refit": refit}
    return predictor, rows, info, chosen_oof


def _trial_row(r: Any, name: str, metric: Metric) -> Row:
    return Row(model=name, family=r.family, status=r.status, metric=metric.name, score_val=r.score,
               score_std=r.score_std, fit_time_s=r.fit_time_s, predict_time_s=r.predict_time_s,
               stop_reason=r.stop_reason, iterations=r.iteration, params=r.params, error=r.error,
               trial_id=r.trial_id, start_s=r.start_offset_s, end_s=r.end_offset_s)


def _score_test(predictor: Predictor, test: pd.DataFrame, rows: list[Row], chosen: str, metric: Metric,
                classes: list | None) -> None:
    test = test.loc[test[predictor.target].notna()]
    raw, _ = predictor.predict_raw(test.drop(columns=[predictor.target]))
    y = test[predictor.target]
    if classes is not None:
        y = pd.Categorical(y, categories=classes).codes
        keep = y >= 0  # classes unseen in training cannot be scored
        y, raw = np.asarray(y)[keep], raw[keep]
    score = metric.score(np.asarray(y, dtype=float if classes is None else int), raw)
    for row in rows:
        if row.model == chosen:
            row.score_test = score
    logger.info("test %s of %s: %.5g", metric.name, chosen, score)
