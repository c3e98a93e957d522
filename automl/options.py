"""What a fit can deploy: the best single candidates, the weighted ensemble and the stack (bagged:
fold models or a holdout model), and the refit variants of the singles and the ensemble (their
members trained once on every row, :mod:`automl.refit`); each a :class:`DeploymentOption` that
knows its out-of-fold predictions and builds its Predictor."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automl.ensemble import combine, greedy_ensemble
from automl.metrics import Metric
from automl.models.base import FittedModel, get_family
from automl.predictor import Member, Predictor
from automl.prepare import Prepared
from automl.refit import REFIT_SUFFIX, Refitter
from automl.stack_fit import StackLayer
from automl.stacking import STACK_RECIPE
from automl.training import CandidateResult
from automl.trials import TrialRecord

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A finished trial loaded back from its checkpoint, under its leaderboard name."""

    name: str
    result: CandidateResult
    trial: TrialRecord


class PredictorBuilder:
    """Turns candidates into Members and Predictors."""

    def __init__(self, prep: Prepared, *, search_ended_because: str) -> None:
        self.prep = prep
        self.search_ended_because = search_ended_because

    def member(
        self,
        name: str,
        res: CandidateResult,
        weight: float,
        *,
        recipe: str | None = None,
        refit_model: FittedModel | None = None,
    ) -> Member:
        """The candidate's bag, or its model refit on every row (``refit_model``)."""
        family = get_family(res.family)
        output = self.prep.data.output_step(res.config)
        models = [refit_model] if refit_model is not None else res.models
        return Member(
            name,
            res.family,
            recipe or family.recipe,
            weight,
            models,
            res.config,
            refit_model is not None,
            output,
        )

    def predictor(
        self, members: list[Member], stack: list[list[Member]] | None = None, chosen: str = ""
    ) -> Predictor:
        p = self.prep
        recipes = {m.recipe for layer in [*(stack or []), members] for m in layer}
        if stack:
            recipes.add("tree")  # the stack layer sees the tree features beside the predictions
        return Predictor(
            target=p.profile.target,
            problem_type=p.profile.problem,
            classes=p.classes,
            metric=p.metric.name,
            schema=p.schema,
            preprocessors={r: pre for r, pre in p.preprocessors.items() if r in recipes},
            members=members,
            task=p.task,
            stack_layers=stack,
            stack_uses_features=bool(stack),
            info={
                "chosen": chosen,
                "search_ended_because": self.search_ended_because,
                **({"target": p.target_plan.to_dict()} if p.target_plan is not None else {}),
            },
        )


@dataclass
class DeploymentOption:
    """One thing the fit could deploy.

    ``parts`` are the candidates combined with their weights (the members of a single model or
    of the weighted ensemble, or the layer feeding a stack, whose own models are ``stack``)."""

    name: str
    kind: str  # "single" | "ensemble" | "stack"
    oof: np.ndarray  # out-of-fold predictions (a refit option: its bag's, the estimate of its score)
    parts: list[tuple[Candidate, float]]
    stack: StackLayer | None = None
    refit_of: str | None = None  # a refit option: the name of the bagged option it refits
    #: a refit option whose members are not those of ``refit_of`` (:func:`ensemble_of_refits`):
    #: its score estimate is its own out-of-fold score, not the bag's
    own_estimate: bool = False
    fit_cost_s: float = field(init=False)  # seconds its members took to train (all folds)

    def __post_init__(self) -> None:
        self.fit_cost_s = float(sum(c.result.fit_time_s for c, _ in self.parts))

    @property
    def can_refit(self) -> bool:
        return self.stack is None and self.refit_of is None  # a stack trains on the bags' predictions

    def refit_variant(self) -> DeploymentOption:
        """The same members and weights, each trained once on every row (built by a Refitter)."""
        return DeploymentOption(self.name + REFIT_SUFFIX, self.kind, self.oof, self.parts, refit_of=self.name)

    @property
    def candidates(self) -> list[Candidate]:
        return [c for c, _ in self.parts]

    def build(self, builder: PredictorBuilder, refitter: Refitter | None = None) -> Predictor:
        if self.refit_of is not None and refitter is None:
            raise ValueError(f"{self.name} is a refit option: building it needs a Refitter")
        if self.stack is None:
            members = [
                builder.member(c.name, c.result, w, refit_model=refitter.model(c) if self.refit_of else None)
                for c, w in self.parts
            ]
            return builder.predictor(members, chosen=self.name)
        layer = self.stack
        top = [
            builder.member(n, r, float(w), recipe=STACK_RECIPE)
            for n, r, w in zip(layer.names, layer.results, layer.weights)
            if w > 0
        ]
        below = [builder.member(c.name, c.result, 1.0) for c, _ in self.parts]
        return builder.predictor(top, [below], chosen=self.name)


def single(c: Candidate) -> DeploymentOption:
    return DeploymentOption(c.name, "single", c.result.oof, [(c, 1.0)])


#: the option :func:`ensemble_of_refits` adds
REFITS_ENSEMBLE = "ensemble_of_refits"


def ensemble_of_refits(
    options: list[DeploymentOption],
    refitter: Refitter,
    y: np.ndarray,
    metric: Metric,
    *,
    size: int,
    mask: Any,
    deadline: float,
) -> DeploymentOption | None:
    """When some members of the refit weighted ensemble were not refit and their refits no longer
    fit before ``deadline`` (when the options' measurement must start): the greedy weighted
    ensemble (``size`` rounds, scored on ``mask``'s rows of ``y``) over the candidates that were
    refit, as a refit option of its own, when it combines at least two of them (None otherwise).
    Its score estimate is the out-of-fold score of its members' bags with the same weights (as a
    refit option's is its bag's).

    Why: the search keeps time for refitting its best three candidates
    (:data:`automl.refit.REFIT_CANDIDATES`), on an estimate; an ensemble may hold more, or a refit
    may take longer than expected. bank_marketing's 60 s ensemble (split seed 0) held a LightGBM
    bag whose refit was expected to take 4.1 s with 1.7 s left; the ensemble of its two other
    members, refit, scored 0.9381 (validation roc_auc) against the bagged ensemble's 0.9383, with
    0.49 ms one-row p50 against 2.24 ms."""
    full = next((o for o in options if o.refit_of is not None and o.kind == "ensemble"), None)
    missing = [c for c in (full.candidates if full else []) if c.name not in refitter.models]
    if not missing or refitter.affordable(missing, deadline)[0]:
        return None  # no refit ensemble, or it can still be built whole
    pool = list({c.name: c for o in options for c in o.candidates if c.name in refitter.models}.values())
    if len(pool) < 2:
        return None
    preds = [c.result.oof for c in pool]
    ens = greedy_ensemble(preds, y, metric, size=size, mask=mask, deadline=deadline)
    parts = [(c, float(w)) for c, w in zip(pool, ens.weights) if w > 0]
    if len(parts) < 2:
        return None  # one candidate: its refit single option is already offered
    oof = combine(preds, ens.weights)
    logger.info(
        "%s: the weighted ensemble over the candidates refit in time (%s)",
        REFITS_ENSEMBLE,
        ", ".join(f"{c.name} {w:.2f}" for c, w in parts),
    )
    return DeploymentOption(
        REFITS_ENSEMBLE, "ensemble", oof, parts, refit_of=full.refit_of, own_estimate=True
    )
