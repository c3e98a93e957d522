"""After the search: load the best candidates, build the weighted ensemble and the stack, offer
them and their refit variants to the deployment chooser (latency/size constraints,
:mod:`automl.deploy_stage`), calibrate, and produce the Predictor and the leaderboard rows (an
:class:`Assembly`). Every step keeps to the deadline it is given and records what it left out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl.calibration import apply_calibration, choose_calibration
from automl.config import EnsembleConfig, FitSpec
from automl.deploy_stage import Deployment, deploy
from automl.ensemble import combine, fold_scores, greedy_ensemble
from automl.exceptions import AutoMLError
from automl.leaderboard import Row
from automl.metrics import Metric
from automl.options import Candidate, DeploymentOption, PredictorBuilder, single
from automl.predictor import Predictor
from automl.prepare import Prepared
from automl.stack_fit import StackLayer, fit_layer
from automl.stacking import stack_cost_s
from automl.training import TrialData, load_result
from automl.trials import SearchOutcome, TrialRecord

logger = logging.getLogger(__name__)

#: single models offered to the deployment chooser (best ones first)
SINGLE_OPTIONS = 3
#: rows of the training table used to measure one-row latency of each option
LATENCY_SAMPLE_ROWS = 50


@dataclass
class Assembly:
    """What the ensembling stage hands back to the fit."""

    predictor: Predictor
    rows: list[Row]  # the leaderboard: every trial, stack model and ensemble
    chosen: str
    chosen_oof: np.ndarray  # the deployed model's out-of-fold predictions (calibrated)
    refit: bool
    decisions: dict[str, Any] = field(default_factory=dict)  # what was decided and why
    test_scoring_s: float = 0.0  # seconds spent scoring test_data (not part of the fit's budget)
    cuts: list[str] = field(default_factory=list)  # what the deadline left out
    deployment: Deployment | None = None

    def info(self) -> dict[str, Any]:
        """The part of run.json this stage writes."""
        dep = self.predictor.info.get("deployment", {})
        return {
            "chosen": self.chosen,
            "members": {m.name: m.weight for m in self.predictor.members},
            "refit": self.refit,
            "decisions": self.decisions,
            "deployment": {k: dep.get(k) for k in ("constraints", "constraints_met", "options", "refit")},
        }


def model_names(trials: list[TrialRecord]) -> dict[str, str]:
    """Readable, stable model names: family + the order in which the searcher created the trial
    ("lightgbm_003"), so a reproducible search names its models the same way every time."""
    order = sorted(trials, key=lambda r: (r.index if r.index is not None else 10**9, r.trial_id))
    return {r.trial_id: f"{r.family}_{i:03d}" for i, r in enumerate(order, 1)}


def pick_candidates(trials: list[TrialRecord], metric: Metric, max_members: int) -> list[TrialRecord]:
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


def assemble(
    spec: FitSpec,
    prep: Prepared,
    outcome: SearchOutcome,
    *,
    test: pd.DataFrame | None = None,
    deadline: float | None = None,
) -> Assembly:
    names = model_names(outcome.trials)
    rows = [_trial_row(r, names[r.trial_id], prep.metric) for r in outcome.trials]
    picked = pick_candidates(outcome.trials, prep.metric, spec.ensemble.max_members)
    if not picked:
        errors = sorted({r.error for r in outcome.trials if r.error})[:3]
        raise AutoMLError(
            f"no trial finished ({len(outcome.trials)} started; search ended: {outcome.ended_because}). "
            + (f"Errors: {errors}. " if errors else "")
            + "Give a longer time_limit or more max_trials."
        )
    cands = [Candidate(names[r.trial_id], load_result(r.checkpoint, prep.task), r) for r in picked]
    decisions: dict[str, Any] = prep.decisions()
    cuts: list[str] = []
    if clipped := {c.name: c.result.n_clipped for c in cands if c.result.n_clipped}:
        decisions["clipped_validation_predictions"] = clipped
        logger.info(
            "out-of-fold predictions clipped to the training target's range %s: %s",
            decisions.get("target", {}).get("clip_range"),
            clipped,
        )
    options = [single(c) for c in cands[:SINGLE_OPTIONS]]
    ens = _weighted_ensemble(cands, prep, spec.ensemble, rows, deadline) if len(cands) > 1 else None
    if ens is not None and len(ens.parts) > 1:
        options.append(ens)
    if spec.ensemble.stack_levels:
        stack, decisions["stack_level_2"] = _stack(ens, prep, spec, rows, deadline)
        if stack is not None:
            options.append(stack)
        elif "left" in decisions["stack_level_2"]:  # skipped for time
            cuts.append(f"stack_l2: {decisions['stack_level_2']}")
            rows.append(_skipped_row("stack_l2", decisions["stack_level_2"], prep.metric))
    builder = PredictorBuilder(prep, search_ended_because=outcome.ended_because)
    sample = prep.df.drop(columns=[prep.profile.target])
    sample = sample.sample(min(len(sample), LATENCY_SAMPLE_ROWS), random_state=spec.seed)
    dep = deploy(options, builder, prep, spec.ensemble, sample, rows, deadline=deadline)
    decisions["deployment"] = dep.reason
    refit_info = dep.predictor.info["deployment"]["refit"]
    decisions["refit"] = (
        f"refit options: score_val {refit_info['score_estimate']}; "
        + ("; ".join(f"{k}: {v}" for k, v in refit_info["members"].items()) or "none built")
        if spec.ensemble.refit is not False
        else "refit=False: no refit options"
    )
    chosen = dep.chosen
    out = Assembly(dep.predictor, rows, chosen.name, chosen.oof, chosen.refit_of is not None, decisions)
    out.cuts, out.deployment = cuts + dep.cuts, dep
    if spec.ensemble.calibrate:
        _calibrate(out, prep)
    _mark_rows(out)
    if test is not None:
        t = time.time()
        for o in dep.options:  # every option built, and the bags never built: which layer helps?
            p = dep.predictors.get(o.name) or (o.build(builder) if o.refit_of is None else None)
            if p is not None:
                _score_test(p, test, rows, o.name, prep.metric, prep.classes)
        out.test_scoring_s = time.time() - t
    return out


def _weighted_ensemble(
    cands: list[Candidate], prep: Prepared, cfg: EnsembleConfig, rows: list[Row], deadline: float | None
) -> DeploymentOption | None:
    """Caruana's greedy selection over the candidates' out-of-fold predictions (a leaderboard
    row either way; an option only when it uses several candidates)."""
    if not cfg.enabled:
        return None
    data, metric = prep.data, prep.metric
    preds = [c.result.oof for c in cands]
    ens = greedy_ensemble(preds, data.y, metric, size=cfg.size, mask=prep.folds.oof_mask, deadline=deadline)
    oof = combine(preds, ens.weights)
    parts = [(c, float(w)) for c, w in zip(cands, ens.weights) if w > 0]
    scores = fold_scores(oof, data, metric)
    rows.append(
        Row(
            model="weighted_ensemble",
            family="ensemble",
            status="ensemble",
            metric=metric.name,
            score_val=float(np.mean(scores)),
            score_std=float(np.std(scores)),
            members={c.name: round(w, 4) for c, w in parts},
            fit_time_s=sum(c.result.fit_time_s for c, _ in parts),
            predict_time_s=sum(c.trial.predict_time_s or 0 for c, _ in parts),
            stop_reason=f"greedy selection, {ens.rounds} of {cfg.size} rounds",
        )
    )
    return DeploymentOption("weighted_ensemble", "ensemble", oof, parts)


def _stack(
    ens: DeploymentOption | None, prep: Prepared, spec: FitSpec, rows: list[Row], deadline: float | None
) -> tuple[DeploymentOption | None, str]:
    """A second layer over the weighted ensemble's members, when k-fold and time allow."""
    k = len(prep.data.folds)
    if k < 2:
        return None, "skipped: stacking needs k-fold validation (a single holdout fold)"
    if ens is None:
        return None, "skipped: no weighted ensemble to stack (one candidate, or ensembling off)"
    used = [c for c, _ in ens.parts]
    cost = stack_cost_s([c.result.fit_time_s for c in used], k)
    if deadline is not None and time.time() + cost > deadline:
        return (
            None,
            f"skipped: it would take ~{cost:.0f}s and {max(0.0, deadline - time.time()):.0f}s are left",
        )
    layer = fit_layer(
        [c.result for c in used],
        [c.name for c in used],
        ens.oof,
        prep.data,
        level=2,
        uses_features=True,
        size=spec.ensemble.size,
        seed=spec.seed,
        deadline=deadline,
    )
    if layer.results:
        rows += _stack_rows(layer, prep.data, prep.metric)
    option = DeploymentOption("stack_l2", "stack", layer.oof, ens.parts, stack=layer) if layer.kept else None
    return option, layer.reason


def _calibrate(out: Assembly, prep: Prepared) -> None:
    data = prep.data
    cal, out.decisions["calibration"] = choose_calibration(
        data.y, out.chosen_oof, data.folds, data.task.problem_type
    )
    if cal is not None:
        out.predictor.calibration = cal
        out.chosen_oof = apply_calibration(out.chosen_oof, cal, data.task.problem_type)


def _mark_rows(out: Assembly) -> None:
    """The chosen row, with its calibration and the deployment reason."""
    pred = out.predictor
    for row in out.rows:
        row.chosen = row.model == out.chosen
        if row.chosen and pred.calibration:
            row.stop_reason = f"{row.stop_reason or ''}; calibrated (T={pred.calibration['temperature']:.3f})"
        if row.chosen:
            row.deployment = f"chosen: {out.decisions['deployment']}"
    pred.info["chosen"] = out.chosen


def _skipped_row(model: str, reason: str, metric: Metric) -> Row:
    return Row(model=model, family="ensemble", status="skipped", metric=metric.name, stop_reason=reason)


def _stack_rows(layer: StackLayer, data: TrialData, metric: Metric) -> list[Row]:
    out = [
        Row(
            model=name,
            family="lightgbm",
            status="completed",
            metric=metric.name,
            score_val=res.score,
            score_std=res.score_std,
            fit_time_s=res.fit_time_s,
            iterations=res.best_iteration,
            params=res.config,
            stop_reason=f"stack level {layer.level}: {res.stop_reason}",
        )
        for name, res in zip(layer.names, layer.results)
    ]
    scores = fold_scores(layer.oof, data, metric)
    out.append(
        Row(
            model=f"stack_l{layer.level}",
            family="ensemble",
            status="ensemble" if layer.kept else "stopped",
            metric=metric.name,
            score_val=float(np.mean(scores)),
            score_std=float(np.std(scores)),
            members={n: round(float(w), 4) for n, w in zip(layer.names, layer.weights) if w > 0},
            stop_reason=layer.reason,
        )
    )
    return out


def _trial_row(r: TrialRecord, name: str, metric: Metric) -> Row:
    return Row(
        model=name,
        family=r.family,
        status=r.status,
        metric=metric.name,
        score_val=r.score,
        score_std=r.score_std,
        fit_time_s=r.fit_time_s,
        predict_time_s=r.predict_time_s,
        stop_reason=r.stop_reason,
        iterations=r.iteration,
        params=r.params,
        error=r.error,
        trial_id=r.trial_id,
        start_s=r.start_offset_s,
        end_s=r.end_offset_s,
        retries=r.retries,
    )


def _score_test(
    predictor: Predictor, test: pd.DataFrame, rows: list[Row], name: str, metric: Metric, classes: list | None
) -> None:
    test = test.loc[test[predictor.target].notna()]
    raw, _ = predictor.predict_raw(test.drop(columns=[predictor.target]))
    y = test[predictor.target]
    if classes is not None:
        y = pd.Categorical(y, categories=classes).codes
        keep = y >= 0  # classes unseen in training cannot be scored
        y, raw = np.asarray(y)[keep], raw[keep]
    score = metric.score(np.asarray(y, dtype=float if classes is None else int), raw)
    for row in rows:
        if row.model == name:
            row.score_test = score
    logger.info("test %s of %s: %.5g", metric.name, name, score)
