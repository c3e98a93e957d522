"""What a fit can deploy: the best single candidates, the weighted ensemble and the stack (bagged:
fold models or a holdout model), and the refit variants of the singles and the ensemble (their
members trained once on every row, :mod:`automl.refit`); each a :class:`DeploymentOption` that
knows its out-of-fold predictions and builds its Predictor."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from automl.models.base import FittedModel, get_family
from automl.predictor import Member, Predictor
from automl.prepare import Prepared
from automl.refit import REFIT_SUFFIX, Refitter
from automl.stack_fit import StackLayer
from automl.stacking import STACK_RECIPE
from automl.training import CandidateResult
from automl.trials import TrialRecord


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
