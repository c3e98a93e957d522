"""After the search: load the best candidates, build the weighted ensemble and the stack, choose
what to deploy under the latency/size constraints, refit and calibrate when asked, and produce
the Predictor and the leaderboard rows."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from automl.calibration import apply_calibration, choose_calibration
from automl.deploy import Option, choose
from automl.ensemble import combine, greedy_ensemble
from automl.leaderboard import Row
from automl.metrics import Metric
from automl.models.base import get_family
from automl.predictor import Member, Predictor
from automl.stack_fit import StackLayer, fit_layer
from automl.stacking import STACK_RECIPE
from automl.training import CandidateResult, TrialData, load_result, refit_full

logger = logging.getLogger(__name__)

#: single models offered to the deployment chooser (best ones first)
SINGLE_OPTIONS = 3


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


class _Builder:
    """Turns loaded candidates into Members and Predictors (refit and calibration applied last)."""

    def __init__(
        self,
        spec: Any,
        data: TrialData,
        pre: dict,
        schema: Any,
        profile: Any,
        classes: list | None,
        metric: Metric,
        outcome: Any,
    ) -> None:
        self.spec, self.data, self.pre, self.schema, self.profile = spec, data, pre, schema, profile
        self.classes, self.metric, self.outcome = classes, metric, outcome

    def member(
        self, name: str, res: CandidateResult, weight: float, recipe: str | None = None, refit: bool = False
    ) -> Member:
        family = get_family(res.family)
        models = [refit_full(family, res.config, self.data, res.best_iteration)] if refit else res.models
        return Member(name, res.family, recipe or family.recipe, weight, models, res.config, refit)

    def predictor(
        self,
        members: list[Member],
        stack: list[list[Member]] | None = None,
        chosen: str = "",
        calibration: dict | None = None,
    ) -> Predictor:
        recipes = {m.recipe for layer in [*(stack or []), members] for m in layer}
        uses_features = bool(stack)
        if uses_features:
            recipes.add("tree")
        return Predictor(
            target=self.profile.target,
            problem_type=self.profile.problem,
            classes=self.classes,
            metric=self.metric.name,
            schema=self.schema,
            preprocessors={r: p for r, p in self.pre.items() if r in recipes},
            members=members,
            task=self.data.task,
            stack_layers=stack,
            stack_uses_features=uses_features,
            calibration=calibration,
            info={"chosen": chosen, "search_ended_because": self.outcome.ended_because},
        )


def assemble(
    spec: Any,
    outcome: Any,
    data: TrialData,
    folds: Any,
    pre: dict,
    schema: Any,
    profile: Any,
    classes: list | None,
    metric: Metric,
    *,
    test: pd.DataFrame | None,
    sample: pd.DataFrame,
    deadline: float | None = None,
) -> tuple:
    ens_cfg = spec.ensemble
    names = model_names(outcome.trials)
    rows = [_trial_row(r, names[r.trial_id], metric) for r in outcome.trials]
    picked = pick_candidates(outcome.trials, metric, ens_cfg.max_members)
    if not picked:
        errors = sorted({r.error for r in outcome.trials if r.error})[:3]
        from automl.exceptions import AutoMLError

        raise AutoMLError(
            f"no trial finished ({len(outcome.trials)} started; search ended: {outcome.ended_because}). "
            + (f"Errors: {errors}. " if errors else "")
            + "Give a longer time_limit or more max_trials."
        )
    loaded = {r.trial_id: load_result(r.checkpoint, data.task) for r in picked}
    mask = folds.oof_mask
    b = _Builder(spec, data, pre, schema, profile, classes, metric, outcome)
    decisions: dict[str, Any] = {}
    # options: (name, oof, build(refit) -> (members, stack))
    options: list[tuple[str, np.ndarray, Any]] = []
    fit_costs: dict[str, float] = {}  # seconds the option's members took to train (all folds)
    for r in picked[:SINGLE_OPTIONS]:
        res = loaded[r.trial_id]
        fit_costs[names[r.trial_id]] = res.fit_time_s
        options.append(
            (
                names[r.trial_id],
                res.oof,
                lambda refit, r=r, res=res: ([b.member(names[r.trial_id], res, 1.0, refit=refit)], None),
            )
        )
    preds = [loaded[r.trial_id].oof for r in picked]
    base_names = [names[r.trial_id] for r in picked]
    if ens_cfg.enabled and len(picked) > 1:
        ens = greedy_ensemble(preds, data.y, metric, size=ens_cfg.size, mask=mask, deadline=deadline)
        ens_oof = combine(preds, ens.weights)
        weights = {base_names[i]: round(float(w), 4) for i, w in enumerate(ens.weights) if w > 0}
        scores = fold_scores(ens_oof, data, metric)
        used = [i for i, w in enumerate(ens.weights) if w > 0]
        rows.append(
            Row(
                model="weighted_ensemble",
                family="ensemble",
                status="ensemble",
                metric=metric.name,
                score_val=float(np.mean(scores)),
                score_std=float(np.std(scores)),
                members=weights,
                fit_time_s=sum(loaded[picked[i].trial_id].fit_time_s for i in used),
                predict_time_s=sum(picked[i].predict_time_s or 0 for i in used),
                stop_reason=f"greedy selection, {ens.rounds} of {ens_cfg.size} rounds",
            )
        )
        if len(used) > 1:
            fit_costs["weighted_ensemble"] = sum(loaded[picked[i].trial_id].fit_time_s for i in used)
            options.append(
                (
                    "weighted_ensemble",
                    ens_oof,
                    lambda refit, used=used, w=ens.weights: (
                        [
                            b.member(base_names[i], loaded[picked[i].trial_id], float(w[i]), refit=refit)
                            for i in used
                        ],
                        None,
                    ),
                )
            )
        k = len(data.folds)
        used_res = [loaded[picked[i].trial_id] for i in used]
        # nested features: k(k-1)/2 fits per member on (k-2)/k of the rows, then the layer itself
        stack_cost = sum(r.fit_time_s for r in used_res) / k * (k - 2) / k * k * (k - 1) / 2 * 1.3 + 10.0
        if ens_cfg.stack_levels and k > 1 and deadline is not None and time.time() + stack_cost > deadline:
            decisions["stack_level_2"] = (
                f"skipped: it would take ~{stack_cost:.0f}s and "
                f"{max(0.0, deadline - time.time()):.0f}s are left"
            )
        elif ens_cfg.stack_levels and k > 1:
            layer = fit_layer(
                used_res,
                [base_names[i] for i in used],
                ens_oof,
                data,
                level=2,
                uses_features=True,
                size=ens_cfg.size,
                seed=spec.seed,
                deadline=deadline,
            )
            decisions["stack_level_2"] = layer.reason
            if layer.results:
                rows += _stack_rows(layer, data, metric)
            if layer.kept:
                options.append(
                    (
                        "stack_l2",
                        layer.oof,
                        lambda refit, layer=layer, used=used: (
                            [
                                b.member(n, r, float(w), recipe=STACK_RECIPE)
                                for n, r, w in zip(layer.names, layer.results, layer.weights)
                                if w > 0
                            ],
                            [[b.member(base_names[i], loaded[picked[i].trial_id], 1.0) for i in used]],
                        ),
                    )
                )
        elif ens_cfg.stack_levels:
            decisions["stack_level_2"] = "skipped: stacking needs k-fold validation (a single holdout fold)"
    refit = ens_cfg.refit is True or (ens_cfg.refit == "auto" and len(data.folds) == 1)
    plan = RefitPlan(
        refit, forced=ens_cfg.refit is True, costs=fit_costs, growth=refit_growth(data), deadline=deadline
    )
    chosen_name, predictor, chosen_oof, deploy_reason = _choose(
        options, b, data, metric, ens_cfg, sample, plan
    )
    refit = plan.done.get(chosen_name, False)
    if plan.reasons:
        decisions["refit"] = plan.reasons.get(chosen_name, "; ".join(plan.reasons.values()))
    t_test = time.time()
    if test is not None:  # score the other options too (their bags, not refit): which layer helps?
        for name, _, build in options:
            if name != chosen_name:
                members, stack = build(False)
                _score_test(b.predictor(members, stack), test, rows, name, metric, classes)
    test_s = time.time() - t_test
    decisions["deployment"] = deploy_reason
    if ens_cfg.calibrate:
        cal, why = choose_calibration(data.y, chosen_oof, data.folds, data.task.problem_type)
        decisions["calibration"] = why
        if cal is not None:
            predictor.calibration = cal
            chosen_oof = apply_calibration(chosen_oof, cal, data.task.problem_type)
    for row in rows:
        row.chosen = row.model == chosen_name
        if row.chosen and predictor.calibration:
            row.stop_reason = (
                f"{row.stop_reason or ''}; calibrated (T={predictor.calibration['temperature']:.3f})"
            )
        if refit and (row.model == chosen_name or row.model in {m.name for m in predictor.members}):
            row.refit = True
    predictor.info["chosen"] = chosen_name
    if test is not None:
        t_test = time.time()
        _score_test(predictor, test, rows, chosen_name, metric, classes)
        test_s += time.time() - t_test
    info = {
        "chosen": chosen_name,
        "members": {m.name: m.weight for m in predictor.members},
        "refit": refit,
        "decisions": decisions,
        "test_scoring_s": test_s,
    }
    return predictor, rows, info, chosen_oof


class RefitPlan:
    """Whether to refit an option's members on every row, decided when the option is built:
    ``refit="auto"`` refits only when the expected cost (the members' training time, grown by the
    share of rows the validation held out) fits before the deadline; ``refit=True`` always does."""

    def __init__(
        self, wanted: bool, *, forced: bool, costs: dict[str, float], growth: float, deadline: float | None
    ) -> None:
        self.wanted, self.forced, self.costs, self.growth, self.deadline = (
            wanted,
            forced,
            costs,
            growth,
            deadline,
        )
        self.done: dict[str, bool] = {}
        self.reasons: dict[str, str] = {}

    def decide(self, name: str) -> bool:
        if not self.wanted or name.startswith("stack"):
            ok = False
        elif self.forced or self.deadline is None:
            ok = True
        else:
            expected = self.costs.get(name, 0.0) * self.growth
            left = self.deadline - time.time()
            ok = expected <= left
            verdict = (
                "refit on all rows" if ok else "kept the validation fit (no refit; refit=True forces it)"
            )
            self.reasons[name] = f"{name}: {verdict}: ~{expected:.0f}s expected, {max(0.0, left):.0f}s left"
            logger.info("refit %s", self.reasons[name])
        self.done[name] = ok
        return ok


def refit_growth(data: TrialData) -> float:
    """Expected refit time over the recorded training time of all folds: every row instead of
    one fold's training rows, once instead of once per fold, plus a 20 % margin."""
    n_train = np.mean([len(tr) for tr, _ in data.folds]) if data.folds else len(data.y)
    return 1.2 * len(data.y) / max(1.0, float(n_train)) / max(1, len(data.folds))


def _choose(
    options: list,
    b: _Builder,
    data: TrialData,
    metric: Metric,
    ens_cfg: Any,
    sample: pd.DataFrame,
    plan: RefitPlan,
) -> tuple[str, Predictor, np.ndarray, str]:
    mask = np.zeros(len(data.y), dtype=bool)
    for _, va in data.folds:
        mask[va] = True
    opts, oofs = [], {}
    for name, oof, build in options:
        oofs[name] = oof
        objective = metric.objective(metric.score(data.y[mask], oof[mask]))

        def make(name: str = name, build: Any = build) -> Predictor:
            members, stack = build(plan.decide(name))
            return b.predictor(members, stack, chosen=name)

        opts.append(Option(name, objective, make))
    t = time.time()
    chosen, predictor, reason = choose(
        opts, sample, max_latency_ms=ens_cfg.max_predict_latency_ms, max_size_mb=ens_cfg.max_model_size_mb
    )
    predictor.info["deployment"] = {
        "reason": reason,
        **chosen.measured,
        "options": {o.name: {"objective": o.objective, **o.measured} for o in opts},
    }
    logger.info("deployment: %s (chosen in %.1fs)", reason, time.time() - t)
    return chosen.name, predictor, oofs[chosen.name], reason


def _stack_rows(layer: StackLayer, data: TrialData, metric: Metric) -> list[Row]:
    out = []
    for name, res in zip(layer.names, layer.results):
        out.append(
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
        )
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


def _trial_row(r: Any, name: str, metric: Metric) -> Row:
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
        retries=getattr(r, "retries", None),
    )


def _score_test(
    predictor: Predictor,
    test: pd.DataFrame,
    rows: list[Row],
    chosen: str,
    metric: Metric,
    classes: list | None,
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
        if row.model == chosen:
            row.score_test = score
    logger.info("test %s of %s: %.5g", metric.name, chosen, score)
