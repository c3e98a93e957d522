"""A fit in streaming mode, stage by stage:

1. open the input as a Ray Dataset (:mod:`~automl.streaming.source`);
2. one streamed pass for the exact figures (:mod:`~automl.streaming.stats`), one for a bounded
   uniform sample (:func:`~automl.streaming.split.uniform_sample`);
3. the split rule (a seeded row hash, a group hash or a time cutoff), applied to the sample and,
   lazily, to the streamed table (the training and validation parts stay Ray Datasets);
4. the memory-mode fit (:func:`automl.fit.run_fit`) on the sample, its validation part as the
   validation table: profile (kinds, problem type; exact figures written in), preprocessing, the
   search, then the final fits of the best boosting configs on every training row through Ray
   Train, the ensemble and the Predictor (the same artifact as memory mode);
5. the deployed Predictor scored on the whole validation part by Ray Data batch inference.

What it trades against memory mode: one holdout instead of k-fold bagging, trials on the sample
(fewer, larger models at the end), and a validation score of the ensemble measured on the sample's
validation rows (the whole validation part scores the chosen Predictor afterwards).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from automl import layout
from automl.config import FitSpec
from automl.exceptions import ConfigError
from automl.metrics import resolve_metric
from automl.streaming.evaluate import score_dataset, scoring_share
from automl.streaming.mode import ModeDecision
from automl.streaming.plan import StreamPlan
from automl.streaming.source import open_dataset
from automl.streaming.split import make_rule, part, split_sample, uniform_sample
from automl.streaming.stats import table_stats
from automl.streaming.store import spilled_during, store_counters

logger = logging.getLogger(__name__)


def plan_stream(spec: FitSpec, source: Any) -> tuple[StreamPlan, Any, Any, dict[str, float]]:
    """Stages 1-3: the plan, the sample's training and validation rows, and their timings."""
    cfg = spec.streaming
    t = time.time()
    ds = open_dataset(source, "train")
    stats = table_stats(ds)
    if spec.target not in stats.columns:
        raise ConfigError(
            f"target {spec.target!r} is not a column of the table; its columns: {list(stats.columns)[:30]}"
        )
    timings = {"stream_stats_s": time.time() - t}
    t = time.time()
    sample = uniform_sample(ds, stats.n_rows, cfg.sample_rows, spec.seed)
    timings["stream_sample_s"] = time.time() - t
    rule = make_rule(spec, sample)
    s_train, s_valid = split_sample(sample, rule)
    n_valid_rows = max(1, int((stats.n_rows - stats.column(spec.target).n_missing) * rule.fraction))
    keep = min(1.0, cfg.early_stopping_rows / n_valid_rows)
    plan = StreamPlan(
        train=part(ds, rule, valid=False),
        valid=part(ds, rule, valid=True),
        stop=part(ds, rule, valid=True, keep=keep),
        stats=stats,
        rule=rule,
        n_sample_train=len(s_train),
        n_sample_rows=len(sample),
        config=cfg,
        source=ds,
    )
    logger.info(
        "streaming: %d rows; sample of %d rows (%d train, %d validation); split %s",
        stats.n_rows,
        len(sample),
        len(s_train),
        len(s_valid),
        rule.describe(),
    )
    return plan, s_train, s_valid, timings


#: families left out of a streaming search unless asked for: k-NN keeps its training rows as its
#: model and compares every row to them (a 160,000-row sample made a 167 MB member whose scoring of
#: 600,000 validation rows took minutes)
STREAMING_EXCLUDED = ("knn",)


def _search(search: Any) -> Any:
    if search.families is not None:
        return search
    from automl.models import all_families

    kept = tuple(f for f in all_families() if f not in STREAMING_EXCLUDED)
    logger.info(
        "streaming: families %s left out (ask for them with SearchConfig.families)", STREAMING_EXCLUDED
    )
    return replace(search, families=kept)


def _scoring_share(spec: FitSpec, plan: StreamPlan, predictor: Any, started_at: float) -> float:
    """The share of the validation part the deployed Predictor can score before the time limit
    (its in-process batch rows/s, measured by the deployment stage, scaled to the part's rows)."""
    from automl.budget import RAY_STOP_RESERVE_S

    if spec.time_limit is None:
        return 1.0
    left = started_at + spec.time_limit - RAY_STOP_RESERVE_S - time.time()
    rows_per_s = predictor.info.get("deployment", {}).get("rows_per_s")
    share = scoring_share(plan.n_valid_estimate, rows_per_s, left)
    if share < 1.0:
        note = (
            f"the deployed Predictor is scored on a seeded {share:.1%} of the validation part "
            f"(every row: ~{plan.n_valid_estimate / rows_per_s:.0f}s at {rows_per_s:,.0f} rows/s; "
            f"{max(0.0, left):.0f}s left)"
        )
        logger.warning(note)
        plan.notes.append(note)
    return share


def run_streaming_fit(
    spec: FitSpec,
    source: Any,
    *,
    run_dir: Path,
    mode: ModeDecision,
    started_at: float,
    stop_ray: bool = False,
    validation: Any = None,
    test: Any = None,
    resume: bool = False,
) -> Any:
    """A fit in streaming mode (see the module docstring); returns :class:`automl.fit.FitResult`."""
    from automl.fit import run_fit
    from automl.runtime import ensure_ray

    if validation is not None:
        raise ConfigError(
            "validation_data is not supported in streaming mode yet: the validation part is split off "
            "by a seeded row hash (or time_column / group_column); pass data_mode='memory' to use it"
        )
    cluster = ensure_ray(spec.resources)
    store_before = store_counters()
    run_dir.mkdir(parents=True, exist_ok=True)
    plan, s_train, s_valid, timings = plan_stream(spec, source)
    # the sample's models validate on the sample's validation part; the finals are the refit
    sample_spec = replace(spec, ensemble=replace(spec.ensemble, refit=False), search=_search(spec.search))
    info = {"data_mode": mode.to_dict(), "stream_timings": timings}
    result = run_fit(
        sample_spec,
        s_train,
        run_dir=run_dir,
        validation=s_valid,
        resume=resume,
        started_at=started_at,
        lineage=info,
        stream=plan,
    )
    metric, _ = resolve_metric(spec.metric, result.profile.problem)
    share = _scoring_share(spec, plan, result.predictor, started_at)
    full = score_dataset(result.predictor, plan.valid_part(share), spec.target, metric, share)
    logger.info(
        "streaming: the deployed Predictor scores %s %.5g on %s %d validation rows (%.1fs, Ray Data)",
        metric.name,
        full.score,
        "all" if share >= 1.0 else f"a seeded {share:.1%} of the validation part:",
        full.n_rows,
        full.seconds,
    )
    result.run_info["streaming"] = {**plan.info(), "full_validation": full.to_dict()}
    if test is not None:
        scored = score_dataset(result.predictor, open_dataset(test, "test"), spec.target, metric)
        result.run_info["streaming"]["test"] = scored.to_dict()
        logger.info("streaming: test %s %.5g on %d rows", metric.name, scored.score, scored.n_rows)
    spilled = spilled_during(store_before, store_counters())
    result.run_info["streaming"]["object_store"] = spilled
    if spilled.get("spilled_bytes"):
        logger.info("streaming: Ray spilled %.0f MB of objects to disk", spilled["spilled_bytes"] / 2**20)
    (run_dir / layout.RUN_INFO).write_text(json.dumps(result.run_info, indent=1, default=str))
    if stop_ray and cluster.started_here:
        import ray

        ray.shutdown()
    return result
