"""What a fit can deploy: the best single candidates, the weighted ensemble and the stack, each a
:class:`DeploymentOption` that knows its out-of-fold predictions and builds its Predictor."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from automl.models.base import get_family
from automl.predictor import Member, Predictor
from automl.prepare import Prepared
from automl.stack_fit import StackLayer
from automl.stacking import STACK_RECIPE
from automl.training import CandidateResult, refit_full
from automl.trials import TrialRecord


@dataclass
class Candidate:
    """A finished trial loaded back from its checkpoint, under its leaderboard name."""

    name: str
    result: CandidateResult
    trial: TrialRecord


class PredictorBuilder:
    """Turns candidates into Members and Predictors (refit on request)."""

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
        refit: bool = False,
    ) -> Member:
        family = get_family(res.family)
        data = self.prep.data
        models = [refit_full(family, res.config, data, res.best_iteration)] if refit else res.models
        output = data.output_step(res.config)
        return Member(name, res.family, recipe or family.recipe, weight, models, res.config, refit, output)

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
    oof: np.ndarray  # out-of-fold predictions of the option (its validation score comes from them)
    parts: list[tuple[Candidate, float]]
    stack: StackLayer | None = None
    fit_cost_s: float = field(init=False)  # seconds its members took to train (all folds)

    def __post_init__(self) -> None:
        self.fit_cost_s = float(sum(c.result.fit_time_s for c, _ in self.parts))

    @property
    def can_refit(self) -> bool:
        return self.stack is None  # a stack layer is trained on nested predictions of the bags

    def build(self, builder: PredictorBuilder, *, refit: bool = False) -> Predictor:
        if self.stack is None:
            members = [builder.member(c.name, c.result, w, refit=refit) for c, w in self.parts]
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
