"""After the search: load the best candidates, build the weighted ensemble and the stack, choose
what to deploy under the latency/size constraints, refit and calibrate when asked, and produce
the Predictor and the leaderboard rows (an :class:`Assembly`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl.calibration import apply_calibration, choose_calibration
from automl.config import EnsembleConfig, FitSpec
from automl.deploy import Option, choose
from automl.ensemble import combine, greedy_ensemble
from automl.exceptions import AutoMLError
from automl.leaderboard import Row
from automl.metrics import Metric
from automl.options import Candidate, DeploymentOption, PredictorBuilder, single
from automl.predictor import Predictor
from automl.prepare import Prepared
from automl.refit import RefitPlan, refit_growth
from automl.stack_fit import StackLayer, fit_layer
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

    def info(self) -> dict[str, Any]:
        """The part of run.json this stage writes."""
        return {
            "chosen": self.chosen,
            "members": {m.name: m.weight for m in self.predictor.members},
            "refit": self.refit,
            "decisions": self.decisions,
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


def fold_scores(oof: np.ndarray, data: TrialData, metric: Metric) -> list[float]:
    return [metric.score(data.y[va], oof[va]) for _, va in data.folds]


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
    builder = PredictorBuilder(prep, search_ended_because=outcome.ended_because)
    plan = RefitPlan(
        spec.ensemble.refit is True or (spec.ensemble.refit == "auto" and len(prep.data.folds) == 1),
        forced=spec.ensemble.refit is True,
        costs={o.name: o.fit_cost_s for o in options},
        growth=refit_growth(prep.data),
        deadline=deadline,
    )
    sample = prep.df.drop(columns=[prep.profile.target])
    sample = sample.sample(min(len(sample), LATENCY_SAMPLE_ROWS), random_state=spec.seed)
    chosen, predictor, decisions["deployment"] = _choose(options, builder, prep, spec.ensemble, sample, plan)
    refit = plan.done.get(chosen.name, False)
    if plan.reasons:
        decisions["refit"] = plan.reasons.get(chosen.name, "; ".join(plan.reasons.values()))
    out = Assembly(predictor, rows, chosen.name, chosen.oof, refit, decisions)
    if spec.ensemble.calibrate:
        _calibrate(out, prep)
    _mark_rows(out)
    if test is not None:
        t = time.time()
        for o in options:  # the other options' bags too (not refit): which layer helps?
            p = predictor if o is chosen else o.build(builder)
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
    # nested features: k(k-1)/2 fits per member on (k-2)/k of the rows, then the layer itself
    cost = sum(c.result.fit_time_s for c in used) / k * (k - 2) / k * k * (k - 1) / 2 * 1.3 + 10.0
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


def _choose(
    options: list[DeploymentOption],
    builder: PredictorBuilder,
    prep: Prepared,
    cfg: EnsembleConfig,
    sample: pd.DataFrame,
    plan: RefitPlan,
) -> tuple[DeploymentOption, Predictor, str]:
    data, metric, mask = prep.data, prep.metric, prep.folds.oof_mask
    by_name = {o.name: o for o in options}
    opts = []
    for o in options:
        objective = metric.objective(metric.score(data.y[mask], o.oof[mask]))

        def make(o: DeploymentOption = o) -> Predictor:
            return o.build(builder, refit=plan.decide(o.name, can_refit=o.can_refit))

        opts.append(Option(o.name, objective, make))
    t = time.time()
    chosen, predictor, reason = choose(
        opts, sample, max_latency_ms=cfg.max_predict_latency_ms, max_size_mb=cfg.max_model_size_mb
    )
    predictor.info["deployment"] = {
        "reason": reason,
        **chosen.measured,
        "options": {o.name: {"objective": o.objective, **o.measured} for o in opts},
    }
    logger.info("deployment: %s (chosen in %.1fs)", reason, time.time() - t)
    return by_name[chosen.name], predictor, reason


def _calibrate(out: Assembly, prep: Prepared) -> None:
    data = prep.data
    cal, out.decisions["calibration"] = choose_calibration(
        data.y, out.chosen_oof, data.folds, data.task.problem_type
    )
    if cal is not None:
        out.predictor.calibration = cal
        out.chosen_oof = apply_calibration(out.chosen_oof, cal, data.task.problem_type)


def _mark_rows(out: Assembly) -> None:
    """The chosen row, its calibration and which rows were refit."""
    pred = out.predictor
    members = {m.name for m in pred.members}
    for row in out.rows:
        row.chosen = row.model == out.chosen
        if row.chosen and pred.calibration:
            row.stop_reason = f"{row.stop_reason or ''}; calibrated (T={pred.calibration['temperature']:.3f})"
        if out.refit and (row.chosen or row.model in members):
            row.refit = True
    pred.info["chosen"] = out.chosen


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
