"""Training stack layers on out-of-fold predictions, with a guard against stacked overfitting.

No row's label reaches its own stack prediction. Plain out-of-fold features are not enough for
that: the layer-2 model of fold k would train on features that layer-1 models computed after
learning fold k's labels (a memorising 1-NN base model lets a stack recover labels that way).
So the layer-2 model of fold k trains on *nested* features: a row of fold m gets the prediction
of a base model fitted without folds k and m (k(k-1)/2 extra fits per base model, at its chosen
iteration count), and fold k's own rows get their ordinary out-of-fold predictions. The stack
also trains a fixed number of rounds: picking the round on the validation rows would let their
labels shape their predictions.

The guard holds out a seeded slice of the rows (GUARD_SHARE) from the stack layer: the layer
trains and early-stops on the other rows, with the same folds as layer 1; the slice's rows are
then predicted by the fold model that did not train on their fold. The layer is kept only if it
beats the previous layer's weighted ensemble (its weights fitted without the slice) on the slice.
Unlike AutoGluon's DyStack, layer 1 is not refitted without the slice: cheaper, and the slice's
layer-1 predictions are out-of-fold anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from automl.ensemble import combine, greedy_ensemble
from automl.models.base import get_family
from automl.stacking import stack_features
from automl.training import CandidateResult, TrialData, train_candidate

logger = logging.getLogger(__name__)

GUARD_SHARE = 0.15
#: layer-2+ models: regularised LightGBM on predictions (+ the original features), two variants.
#: A fixed number of rounds, no early stopping: choosing the round on the validation rows would
#: let their labels shape their own out-of-fold predictions.
STACK_CONFIGS = [
    {
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 40,
        "feature_fraction": 0.8,
        "bagging_fraction": 1.0,
        "lambda_l1": 0.001,
        "lambda_l2": 1.0,
        "cat_smooth": 10.0,
        "extra_trees": False,
        "n_estimators": 150,
    },
    {
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 40,
        "feature_fraction": 0.8,
        "bagging_fraction": 1.0,
        "lambda_l1": 0.001,
        "lambda_l2": 1.0,
        "cat_smooth": 10.0,
        "extra_trees": True,
        "n_estimators": 150,
    },
]


@dataclass
class StackLayer:
    level: int  # 2 for the first stack layer
    results: list[CandidateResult]
    names: list[str]
    weights: np.ndarray  # Caruana weights over this layer's results
    oof: np.ndarray  # the layer's weighted out-of-fold prediction
    score: float  # mean fold score of ``oof``
    kept: bool
    reason: str
    features: Any = None  # the out-of-fold stack features this layer was scored on


def nested_predictions(base: CandidateResult, data: TrialData, features: Any = None) -> list[np.ndarray]:
    """Per fold k: predictions for every row, where rows of fold m != k come from a model fitted
    without folds k and m, and fold k's rows are the ordinary out-of-fold predictions."""
    family = get_family(base.family)
    X = features if features is not None else data.features[family.recipe]
    k = len(data.folds)
    # (fold, fold) -> the model fitted without both, and its output step (regression: the
    # inverse target transform and the clip range of its training rows)
    cache: dict[tuple[int, int], Any] = {}
    out = []
    for a in range(k):
        pred = base.oof.copy()
        for m in range(k):
            if m == a:
                continue
            key = (min(a, m), max(a, m))
            if key not in cache:
                excluded = np.concatenate([data.folds[a][1], data.folds[m][1]])
                rows = np.setdiff1d(np.arange(len(data.y)), excluded)
                cache[key] = (_fit_rows(family, base, data, rows, X), data.output_step(base.config, rows))
            model, step = cache[key]
            target = data.folds[m][1]
            p = model.predict(X.take(target))
            pred[target] = step.apply(p) if step is not None else p
        out.append(pred)
    return out


def _fit_rows(family: Any, base: CandidateResult, data: TrialData, rows: np.ndarray, X: Any) -> Any:
    from automl.training import refit_full

    if X is data.features[family.recipe]:
        return refit_full(family, base.config, data, base.best_iteration, rows=rows)
    sub = replace(data, features={family.recipe: X})
    return refit_full(family, base.config, sub, base.best_iteration, rows=rows)


def fit_layer(
    base: list[CandidateResult],
    base_names: list[str],
    base_oof: np.ndarray,
    data: TrialData,
    *,
    level: int,
    uses_features: bool,
    size: int,
    seed: int,
    deadline: float | None,
    base_features: Any = None,
) -> StackLayer:
    """Train one stack layer on nested predictions of the base layer and judge it.

    ``base_features``: the matrix the base models were trained on, when it is not their recipe's
    (the layer below is itself a stack layer)."""
    metric, problem = data.metric, data.task.problem_type
    base_oofs = [b.oof for b in base]
    nested = [
        nested_predictions(b, data, base_features) for b in base
    ]  # [base][fold] -> (n, ...) predictions
    tree = data.features.get("tree") if uses_features else None
    X = [
        stack_features([nested[j][f] for j in range(len(base))], base_names, problem, tree)
        for f in range(len(data.folds))
    ]
    X_oof = stack_features(base_oofs, base_names, problem, tree)
    rng = np.random.default_rng(seed + level)
    guard = rng.random(len(data.y)) < GUARD_SHARE
    folds = [(tr[~guard[tr]], va[~guard[va]]) for tr, va in data.folds]
    sub = replace(data, folds=folds)
    family = get_family("lightgbm")
    results, names = [], []
    for i, cfg in enumerate(STACK_CONFIGS):
        if deadline is not None and time.time() >= deadline:
            break
        res = train_candidate(family, cfg, sub, features=X, deadline=deadline, select_best=False)
        for k, (_, va) in enumerate(data.folds):  # the guard rows, by the fold model that did not see them
            rows = va[guard[va]]
            if len(rows):
                res.oof[rows] = res.models[k].predict(X_oof.take(rows))
        results.append(res)
        names.append(f"l{level}_lightgbm_{i + 1}")
    if not results:
        return StackLayer(
            level, [], [], np.array([]), base_oof, float("nan"), False, "no time left to train it", X_oof
        )
    train_rows = np.concatenate([va for _, va in folds])
    ens = greedy_ensemble(
        [r.oof for r in results], data.y, metric, size=size, mask=_mask(train_rows, len(data.y))
    )
    oof = combine([r.oof for r in results], ens.weights)
    base_w = greedy_ensemble(
        base_oofs, data.y, metric, size=size, mask=_mask(train_rows, len(data.y))
    ).weights
    g = np.nonzero(guard)[0]
    layer_on_guard = metric.score(data.y[g], oof[g])
    base_on_guard = metric.score(data.y[g], combine(base_oofs, base_w)[g])
    kept = metric.objective(layer_on_guard) > metric.objective(base_on_guard)
    reason = (
        f"layer {level} {'kept' if kept else 'dropped'}: {metric.name} on a held-out slice of {len(g)} rows "
        f"{layer_on_guard:.5g} vs {base_on_guard:.5g} for layer {level - 1}'s weighted ensemble"
    )
    logger.info("stacking: %s", reason)
    score = float(np.mean([metric.score(data.y[va], oof[va]) for _, va in data.folds]))
    return StackLayer(level, results, names, ens.weights, oof, score, kept, reason, X_oof)


def _mask(rows: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


__all__ = ["StackLayer", "fit_layer", "GUARD_SHARE"]
