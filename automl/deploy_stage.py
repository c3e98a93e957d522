"""The deployment stage of :func:`automl.assemble.assemble`: the bagged options and their refit
variants measured and chosen under the constraints (:mod:`automl.deploy`), and the account of it on
the leaderboard (a row per refit option, the measurements and the Pareto front on every option's
row) and in ``predictor.json`` / ``run.json`` (``info.deployment``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from automl import layout
from automl.calibration import choose_calibration
from automl.config import EnsembleConfig
from automl.deploy import MEASURE_S, ModelSizes, Option, choose, summary
from automl.ensemble import fold_scores
from automl.fastpath import available_threads
from automl.leaderboard import Row
from automl.metrics import Metric
from automl.options import DeploymentOption, PredictorBuilder, ensemble_of_refits
from automl.predictor import Predictor
from automl.prepare import Prepared
from automl.refit import Refitter

logger = logging.getLogger(__name__)


@dataclass
class Deployment:
    """What the stage decided: the chosen option and its Predictor, every option built (for test
    scoring and for saving the alternatives), and what the deadline left out."""

    chosen: DeploymentOption
    predictor: Predictor
    reason: str
    options: list[DeploymentOption]
    predictors: dict[str, Predictor]
    pareto: list[str]
    measured: dict[str, dict[str, float]]
    cuts: list[str] = field(default_factory=list)


def deploy(
    bagged: list[DeploymentOption],
    builder: PredictorBuilder,
    prep: Prepared,
    cfg: EnsembleConfig,
    sample: pd.DataFrame,
    rows: list[Row],
    *,
    deadline: float | None,
) -> Deployment:
    """Offer ``bagged`` and the refit variants of those that can be refit, choose, and record."""
    refitter = Refitter(prep.data, cfg.refit, deadline=deadline, threads=available_threads())
    options = list(bagged)
    if refitter.enabled:
        refits = [o.refit_variant() for o in bagged if o.can_refit]
        options += refits
        if refits:
            names = ", ".join(o.name for o in refits)
            logger.info("refit options %s: validation score %s", names, refitter.estimate)
    # on equal (estimated) scores: the refit after a holdout search (one model either way, more
    # rows) or under refit=True; the bag after k-fold (its score is measured, not estimated)
    refit_first = cfg.refit is True or len(prep.data.folds) == 1
    data, metric, mask = prep.data, prep.metric, prep.folds.oof_mask

    def option(o: DeploymentOption) -> Option:
        objective = metric.objective(metric.score(data.y[mask], o.oof[mask]))
        refit = o.refit_of is not None
        opt = Option(o.name, objective, lambda: None, prefer=int(refit == refit_first), lean=refit)
        opt.build = _builder(o, opt, builder, refitter, deadline)
        return opt

    opts = [option(o) for o in options]
    _refit_first(sorted(zip(opts, options), key=lambda oo: -oo[0].objective), refitter, deadline)
    if deadline is not None and refitter.enabled:  # a stand-in when missing refits no longer fit
        kw = {"size": cfg.size, "mask": mask, "deadline": deadline - MEASURE_S}
        if (partial := ensemble_of_refits(options, refitter, data.y, metric, **kw)) is not None:
            options.append(partial)
            opts.append(option(partial))
    sizes = ModelSizes()
    for c in {c.name: c for o in bagged for c in o.candidates}.values():
        if c.trial.checkpoint:  # the bag's files as the trial saved them (training.save_result)
            for i, model in enumerate(c.result.models):
                sizes.known(model, Path(c.trial.checkpoint) / f"fold_{i}")
    t = time.time()
    choice = choose(
        opts,
        sample,
        max_latency_ms=cfg.max_latency_ms,
        max_model_mb=cfg.max_model_mb,
        deadline=deadline,
        sizes=sizes,
    )
    logger.info(
        "deployment: %s (%d options measured in %.1fs)",
        choice.reason,
        sum(bool(o.measured) for o in opts),
        time.time() - t,
    )
    by_name = {o.name: o for o in options}
    chosen = by_name[choice.option.name]
    choice.predictor.info["deployment"] = {
        "reason": choice.reason,
        "constraints": {"max_latency_ms": cfg.max_latency_ms, "max_model_mb": cfg.max_model_mb},
        "constraints_met": choice.met,
        **choice.option.measured,
        "options": summary(opts),
        "refit": refitter.info(),
    }
    _record_rows(rows, options, opts, refitter, choice.option.name, metric)
    cuts = [f"{o.name}: {o.note}" for o in opts if "time" in o.note]
    return Deployment(
        chosen,
        choice.predictor,
        choice.reason,
        options,
        {o.name: o.predictor for o in opts if o.predictor is not None},
        [o.name for o in opts if o.pareto],
        {o.name: o.measured for o in opts if o.measured},
        cuts,
    )


def _refit_first(
    ranked: list[tuple[Option, DeploymentOption]], refitter: Refitter, deadline: float | None
) -> None:
    """Under a deadline, refit the refit options' candidates before anything is measured, best
    option first, each candidate alone while its refit fits (keeping the time to measure two
    options): measuring the bags first, then refitting an ensemble's members all at once, had
    spent the time the search kept for the refits (:class:`automl.refit.RefitReserve`), and a
    refit single model is the fastest option a fit offers."""
    if deadline is None or not refitter.enabled:
        return  # no deadline: every refit is built when its option is
    for _, o in ranked:
        for c in o.candidates if o.refit_of is not None else ():
            if c.name not in refitter.models and refitter.affordable([c], deadline - 2 * MEASURE_S)[0]:
                refitter.model(c)


def _builder(
    o: DeploymentOption, opt: Option, builder: PredictorBuilder, refitter: Refitter, deadline: float | None
) -> Callable[[], Predictor | None]:
    def build() -> Predictor | None:
        if o.refit_of is None:
            return o.build(builder)
        # keep time to measure this option after refitting it
        ok, why = refitter.affordable(o.candidates, None if deadline is None else deadline - MEASURE_S)
        if not ok:
            opt.note = f"not built for time: {why}"
            logger.info("%s %s", o.name, opt.note)
            return None
        return o.build(builder, refitter)

    return build


def _record_rows(
    rows: list[Row],
    options: list[DeploymentOption],
    opts: list[Option],
    refitter: Refitter,
    chosen: str,
    metric: Metric,
) -> None:
    """Measurements and notes on each option's row; a new row per refit option."""
    by_model = {r.model: r for r in rows}
    for o, opt in zip(options, opts):
        row = by_model.get(o.name)
        if row is None and o.refit_of is not None:
            row = _refit_row(o, None if o.own_estimate else by_model.get(o.refit_of), opt, refitter, metric)
            rows.append(row)
        if row is None:
            continue
        m = opt.measured
        row.latency_p50_ms, row.latency_p99_ms = m.get("latency_ms"), m.get("latency_p99_ms")
        row.rows_per_s, row.model_mb = m.get("rows_per_s"), m.get("size_mb")
        row.pareto = opt.pareto if m else None
        row.deployment = "chosen" if o.name == chosen else (opt.note or ("measured" if m else "not built"))


def _refit_row(o: DeploymentOption, bag: Row | None, opt: Option, refitter: Refitter, metric: Metric) -> Row:
    built = opt.predictor is not None
    single = o.kind == "single"
    notes = [
        ("" if single else f"{c.name} ") + refitter.notes[c.name]
        for c in o.candidates
        if c.name in refitter.notes
    ]
    res = o.parts[0][0].result
    scores = fold_scores(o.oof, refitter.data, metric) if o.own_estimate else None
    estimate = "its members' bags, weighted alike" if o.own_estimate else "the bag's"
    return Row(
        model=o.name,
        family=res.family if single else "ensemble",
        status="refit" if built else "skipped",
        metric=metric.name,
        score_val=float(np.mean(scores)) if scores else bag.score_val if bag else None,
        score_std=float(np.std(scores)) if scores else bag.score_std if bag else None,
        members=None if single else {c.name: round(w, 4) for c, w in o.parts},
        params=res.config if single else {},
        iterations=refitter.iterations(res) if single else None,
        fit_time_s=None,
        refit=True,
        stop_reason=(
            f"refit on all {len(refitter.data.y):,} rows: " + "; ".join(notes) + f" (score_val: {estimate})"
            if built
            else (opt.note or "not built")
        ),
    )


def save_alternatives(
    dep: Deployment,
    prep: Prepared,
    directory: Path,
    cuts: list[str],
    *,
    calibrate: bool,
    deadline: float | None,
) -> list[str]:
    """Save the options on the Pareto front other than the chosen one to ``directory/<name>``, each a
    Predictor calibrated like the chosen one would be (``automl serve DIR/options/<name>`` deploys
    it); those the deadline leaves no time for are added to ``cuts``. Returns the names saved."""
    by_name = {o.name: o for o in dep.options}
    saved = []
    for name in dep.pareto:
        if name == dep.chosen.name or name not in dep.predictors:
            continue
        if deadline is not None and time.time() >= deadline:
            cuts.append(f"{layout.OPTIONS_DIR}/{name}: not saved (no time left)")
            continue
        pred = dep.predictors[name]
        if calibrate:
            data = prep.data
            pred.calibration, _ = choose_calibration(
                data.y, by_name[name].oof, data.folds, data.task.problem_type
            )
        pred.info["deployment"] = {"option_of_run": True, **dep.measured.get(name, {})}
        pred.save(directory / name)
        saved.append(name)
    if saved:
        logger.info("saved the other Pareto-front options to %s: %s", directory, ", ".join(saved))
    return saved
