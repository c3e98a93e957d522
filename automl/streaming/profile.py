"""The streaming profile: kinds, problem type, warnings and quantiles are inferred on the bounded
sample by the memory-mode code (:func:`automl.profile.profile_table`); row counts, missing shares,
min / max / mean / std and level counts are then replaced by the exact figures of the streamed
pass (:mod:`automl.streaming.stats`), and ``profile.streaming`` names which is which."""

from __future__ import annotations

import logging
from typing import Any

from automl.profile import DataProfile
from automl.streaming.stats import TableStats

logger = logging.getLogger(__name__)

EXACT = [
    "n_rows",
    "rows_dropped_missing_target",
    "columns.missing_share",
    "columns.n_unique (columns whose levels were all counted)",
    "columns.stats.mean, std, quantiles.min, quantiles.max (numeric)",
    "columns.stats.top (columns whose levels were all counted)",
    "target_summary.class_counts, imbalance_ratio (classification)",
    "target_summary.mean, std, quantiles.min, quantiles.max (regression)",
]
FROM_SAMPLE = [
    "problem_type",
    "columns.kind, reason, role",
    "columns.stats.quantiles p01..p99",
    "n_duplicate_rows",
    "warnings",
    "baseline",
    "target_summary.quantiles p25..p75, skewness, excess_kurtosis",
]


def annotate(profile: DataProfile, stats: TableStats, *, sample_rows: int, split: dict[str, Any]) -> None:
    """Write the exact figures of ``stats`` into ``profile`` (in place) and record their source."""
    target = stats.column(profile.target)
    n_with_target = stats.n_rows - target.n_missing
    profile.n_rows = n_with_target
    profile.rows_dropped_missing_target = target.n_missing
    counted = []
    for cp in profile.columns:
        cs = stats.columns.get(cp.name)
        if cs is None:
            continue
        cp.missing_share = round(cs.n_missing / max(1, stats.n_rows), 6)
        if cs.levels is not None:
            cp.n_unique = len(cs.levels)
            counted.append(cp.name)
        if cs.count and "quantiles" in cp.stats:
            cp.stats["mean"], cp.stats["std"] = cs.mean(), cs.std()
            cp.stats["quantiles"].update({"min": cs.min, "max": cs.max})
        elif cs.levels is not None and "top" in cp.stats:
            top = sorted(cs.levels.items(), key=lambda kv: -kv[1])[:10]
            cp.stats["top"] = [{"value": k, "share": round(v / stats.n_rows, 6)} for k, v in top]
    _target(profile, target)
    profile.streaming = {
        "table_rows": stats.n_rows,
        "sample_rows": sample_rows,
        "levels_counted": counted,
        "exact": EXACT,
        "from_sample": FROM_SAMPLE,
        "split": split,
    }
    logger.info(
        "profile: exact counts, missing shares, ranges and level counts over %d rows; kinds and "
        "problem type from a %d-row sample",
        stats.n_rows,
        sample_rows,
    )


def _target(profile: DataProfile, target: Any) -> None:
    ts = profile.target_summary
    if "class_counts" in ts and target.levels is not None:
        counts = dict(sorted(target.levels.items(), key=lambda kv: -kv[1]))
        ts["class_counts"] = counts
        values = list(counts.values())
        ts["imbalance_ratio"] = round(values[0] / max(1, values[-1]), 4)
    elif "quantiles" in ts and target.count:
        ts["mean"], ts["std"] = target.mean(), target.std()
        ts["quantiles"].update({"min": target.min, "max": target.max})
