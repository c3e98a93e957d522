"""Column decisions tested, not assumed: the column probe.

The profile drops identifier-like columns and lumps the rare levels of high-cardinality
categoricals together. Both rules can be wrong: when an identifier's values repeat across rows
(the same person, customer or store in many rows) and a random split puts the same ids on both
sides, the id carries a per-id effect that helps every prediction. So before the search, a fast
default LightGBM (``PROBE_CONFIG``) is trained on the run's own validation folds (the first
``PROBE_FOLDS``) once per treatment of each such column, and a treatment other than the profile's
default is kept only when its mean validation score beats the default by more than chance
(``MIN_GAIN``, ``NOISE_GAIN``) and it wins on a majority of the folds.

Treatments: ``drop`` (the identifier default), ``target`` (out-of-fold target encoding, fitted on
each fold's training rows only), ``number`` (an integer id as a number, as AutoGluon keeps it),
``frequency`` (its share of the rows); for a high-cardinality categorical, ``levels`` (the
default codes, rare levels grouped) or ``target``. Identifiers whose values (almost) never repeat
are dropped without a probe. The probe gets at most ``PROBE_SHARE`` of the time limit.

A probe rather than a search dimension: the comparison is paired (same model, same folds, only
the column differs), so it separates the column's effect from hyperparameter noise; it costs a
few fast fits instead of spending a share of a 60 s search's ~10 trials on the losing
treatment; and every trial then shares one set of feature matrices.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from automl.encoders import fold_columns, levels_of
from automl.kinds import ColumnKind
from automl.metrics import Metric
from automl.models.base import Task, get_family
from automl.preprocessing import FeatureMatrix, Preprocessor
from automl.profile import ColumnProfile, DataProfile
from automl.quality import HIGH_CARDINALITY, MIN_REPEAT_SHARE, repeat_share
from automl.schema import ColumnSpec
from automl.training import train_candidate
from automl.trial_data import TrialData

logger = logging.getLogger(__name__)

#: validation folds of the run the probe trains on (all of them when there are fewer)
PROBE_FOLDS = 3
#: a fast LightGBM default: a high learning rate and few rounds
PROBE_CONFIG = {
    "learning_rate": 0.2,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l1": 1e-3,
    "lambda_l2": 1e-3,
    "cat_smooth": 10.0,
    "extra_trees": False,
    "n_estimators": 300,
}
#: share of the time limit the probe may take (options not started by then are not tried)
PROBE_SHARE = 0.1
#: columns probed per fit (identifiers first, then categoricals by distinct values)
MAX_COLUMNS = 3
#: relative gain of the mean validation objective a treatment needs over the default: at least
#: MIN_GAIN, and at least NOISE_GAIN / sqrt(validation rows scored). The relative standard error of
#: an RMSE on n rows is about 1/sqrt(2n); a paired comparison on the same rows is tighter, but chance
#: gains of 0.5-0.8 % of a pure-noise identifier were measured on 720 rows
MIN_GAIN = 0.005
NOISE_GAIN = 0.5


@dataclass
class ColumnDecision:
    """The probe's verdict on one column, with its evidence (scores in the metric's units)."""

    column: str
    kind: str
    default: str
    choice: str
    metric: str
    scores: dict[str, float] = field(default_factory=dict)  # treatment -> mean validation score
    fold_scores: dict[str, list[float]] = field(default_factory=dict)
    not_tried: list[str] = field(default_factory=list)  # treatments skipped for time
    reason: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.choice != self.default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidates(profile: DataProfile, df: pd.DataFrame) -> list[tuple[ColumnProfile, tuple[str, ...]]]:
    """Columns worth a probe with their treatments (the default first)."""
    found: list[tuple[ColumnProfile, tuple[str, ...]]] = []
    for c in profile.columns:
        if (
            c.kind == ColumnKind.IDENTIFIER.value
            and c.role == "dropped"
            and (c.drop_reason or "").startswith(c.kind)
        ):
            share = repeat_share(df[c.name])
            if share < MIN_REPEAT_SHARE:
                logger.info(
                    "column %r stays dropped without a probe: only %.0f%% of its rows repeat a value "
                    "(a key, not a recurring entity)",
                    c.name,
                    100 * share,
                )
                continue
            number = ("number",) if pd.api.types.is_numeric_dtype(df[c.name]) else ()
            found.append((c, ("drop", "target", *number, "frequency")))
    cats = [
        c
        for c in profile.columns
        if c.role == "feature" and c.kind == ColumnKind.CATEGORICAL.value and c.n_unique > HIGH_CARDINALITY
    ]
    found += [(c, ("levels", "target")) for c in sorted(cats, key=lambda c: -c.n_unique)]
    return found


@dataclass
class ProbeSetup:
    """What the probe trains on: the run's rows, encoded target, weights, folds and metric."""

    df: pd.DataFrame
    columns: list[ColumnSpec]  # the features as the profile decided them
    y: np.ndarray
    weights: np.ndarray | None
    folds: list[tuple[np.ndarray, np.ndarray]]
    task: Task
    metric: Metric
    classes: list[Any] | None
    #: treatments trained at once, each single-threaded (the probe runs before Ray starts, so
    #: the machine's CPUs are free; LightGBM releases the GIL while it trains)
    workers: int = 1


def probe_columns(
    setup: ProbeSetup, profile: DataProfile, *, time_limit: float | None
) -> list[ColumnDecision]:
    """Probe every candidate column (see the module docstring); returns the decisions."""
    found = candidates(profile, setup.df)
    if not found:
        return []
    if len(found) > MAX_COLUMNS:
        logger.info(
            "column probe: %d candidate columns, probing the first %d; %s keep the profile's default",
            len(found),
            MAX_COLUMNS,
            [c.name for c, _ in found[MAX_COLUMNS:]],
        )
        found = found[:MAX_COLUMNS]
    deadline = time.time() + PROBE_SHARE * time_limit if time_limit else None
    folds = setup.folds[:PROBE_FOLDS]
    task = replace(setup.task, num_threads=1)
    data = TrialData({}, setup.y, setup.weights, folds, task, setup.metric, setup.classes)
    base = Preprocessor("tree", setup.columns).fit(setup.df).transform(setup.df)
    decisions = []
    for cp, options in found:
        decision = _probe_one(cp, options, setup, data, base, deadline)
        if decision is not None:
            decisions.append(decision)
    return decisions


def _probe_one(
    cp: ColumnProfile,
    options: tuple[str, ...],
    setup: ProbeSetup,
    data: TrialData,
    base: FeatureMatrix,
    deadline: float | None,
) -> ColumnDecision | None:
    t0 = time.time()
    name = cp.name
    without = base
    if any(c.name == name for c in setup.columns):  # a categorical: its own codes are in the base
        without = (
            Preprocessor("tree", [c for c in setup.columns if c.name != name])
            .fit(setup.df)
            .transform(setup.df)
        )
    lgb = get_family("lightgbm")
    d = ColumnDecision(name, cp.kind, options[0], options[0], setup.metric.name)

    def run(option: str) -> Any:
        if deadline is not None and time.time() >= deadline:
            return None
        per_fold = _matrices(option, name, setup, data, base, without)
        res = train_candidate(lgb, PROBE_CONFIG, data, features=per_fold, deadline=deadline)
        return None if res.stop_reason == "time_budget" else res  # cut short: not comparable

    # in the order given (the default and target encoding first), `workers` at a time
    with ThreadPoolExecutor(max_workers=max(1, min(setup.workers, len(options)))) as pool:
        results = list(pool.map(run, options))
    for option, res in zip(options, results):
        if res is None:
            d.not_tried.append(option)
        else:
            d.scores[option], d.fold_scores[option] = res.score, list(res.fold_scores)
    d.seconds = time.time() - t0
    if d.default not in d.scores:
        logger.info("column probe of %r skipped: no time for it within the probe's budget", name)
        return None
    _decide(d, setup.metric, len(data.folds), sum(len(va) for _, va in data.folds))
    logger.info("column %r: %s", name, d.reason)
    return d


def _matrices(
    option: str, name: str, setup: ProbeSetup, data: TrialData, base: FeatureMatrix, without: FeatureMatrix
) -> list[FeatureMatrix]:
    """One feature matrix per probe fold for a treatment of column ``name``."""
    k = len(data.folds)
    if option == "levels":
        return [base] * k
    if option == "drop":
        return [without] * k
    if option == "number":
        values = pd.to_numeric(setup.df[name], errors="coerce").to_numpy(dtype=float)[:, None]
        return [_with(without, values, [name])] * k
    if option == "frequency":
        levels = pd.Series(levels_of(setup.df[name])[:, 0])
        share = levels.map(levels.value_counts(normalize=True)).to_numpy(dtype=float)[:, None]
        return [_with(without, share, [f"{name}#freq"])] * k
    names, _, per_fold = fold_columns(
        setup.df, [name], setup.y, data.folds, setup.task.problem_type, setup.classes, seed=setup.task.seed
    )
    return [_with(without, v, names) for v in per_fold]


def _with(X: FeatureMatrix, extra: np.ndarray, names: list[str]) -> FeatureMatrix:
    num = np.hstack([X.num, extra.astype(np.float32)])
    return FeatureMatrix(num, X.cat, X.num_names + names, X.cat_names, X.cat_sizes)


def _decide(d: ColumnDecision, metric: Metric, k: int, n_scored: int) -> None:
    """Keep the best treatment if it beats the default by the gain the module names (given the
    ``n_scored`` validation rows) and wins on most of the ``k`` folds."""
    obj = {o: metric.objective(s) for o, s in d.scores.items()}
    base = obj[d.default]
    others = [o for o in obj if o != d.default]
    shown = ", ".join(f"{o} {d.scores[o]:.5g}" for o in d.scores)
    skipped = f"; not tried for time: {d.not_tried}" if d.not_tried else ""
    evidence = (
        f"{metric.name} on {k} fold(s) of a fast LightGBM: {shown}{skipped} ({d.seconds:.1f}s). "
        f"Override: drop_columns=[{d.column!r}] keeps it out, SearchConfig(column_probe=False) keeps "
        "the profile's default"
    )
    if not others:
        d.reason = f"kept the default ({d.default}): no other treatment was tried; {evidence}"
        return
    best = max(others, key=lambda o: obj[o])
    gain = (obj[best] - base) / max(abs(base), 1e-12)
    need = max(MIN_GAIN, NOISE_GAIN / np.sqrt(max(n_scored, 1)))
    wins = sum(
        metric.objective(a) > metric.objective(b)
        for a, b in zip(d.fold_scores[best], d.fold_scores[d.default])
    )
    if gain >= need and wins > k / 2:
        d.choice = best
        d.reason = (
            f"{best} chosen over {d.default}: {gain:+.2%} on the mean, better on {wins} of {k} folds; "
            + evidence
        )
    else:
        d.reason = (
            f"{d.default} kept: the best other treatment ({best}) changes the mean by {gain:+.2%} and wins "
            f"{wins} of {k} folds (needs >= {need:.2%} and most folds); {evidence}"
        )
