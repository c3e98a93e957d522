"""The streaming holdout: which rows validate, decided row by row in each block, seeded and
deterministic (the same rows whatever the blocks or their order), and the bounded uniform sample
the in-memory stages work on.

* ``hash``: a row validates when a seeded hash of its values falls below ``holdout_fraction``
  (equal rows land on the same side);
* ``group``: the same on a hash of the group column, so a group is never on both sides;
* ``time``: a row validates when its time is at or after the cutoff, the sample's
  ``1 - holdout_fraction`` quantile of the time column (rows without a time train).

Rows without a target are left out of both parts (as memory mode does).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from automl.exceptions import DataError
from automl.streaming.rows import clean_batch, row_uniform, sample_key, split_key
from automl.streaming.source import map_blocks

logger = logging.getLogger(__name__)

U = "__u"  # the sampling hash of a sampled row (its order in the sample)


@dataclass(frozen=True)
class SplitRule:
    kind: str  # "hash" | "group" | "time"
    fraction: float
    seed: int
    target: str
    column: str | None = None  # the group or time column
    cutoff: float | None = None  # time: first validation time (ns since the epoch, or the number)

    def validates(self, batch: pd.DataFrame) -> np.ndarray:
        """Per row of ``batch``: True when it belongs to the validation part."""
        if self.kind == "hash":
            return row_uniform(batch, split_key(self.seed)) < self.fraction
        if self.kind == "group":
            return row_uniform(batch[[self.column]], split_key(self.seed)) < self.fraction
        t = time_values(batch[self.column])
        return np.nan_to_num(t, nan=-np.inf) >= self.cutoff

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "holdout_fraction": self.fraction, "seed": self.seed}
        if self.column:
            out["column"] = self.column
        if self.cutoff is not None:
            out["cutoff"] = self.cutoff
        return out


def time_values(s: pd.Series) -> np.ndarray:
    """A time column as float (its numbers, or nanoseconds since the epoch); NaN where missing."""
    if pd.api.types.is_numeric_dtype(s):
        return pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = (
            s
            if pd.api.types.is_datetime64_any_dtype(s)
            else pd.to_datetime(s, errors="coerce", format="mixed")
        )
    t = (
        pd.Series(t).dt.tz_localize(None)
        if getattr(pd.Series(t).dt, "tz", None) is not None
        else pd.Series(t)
    )
    out = t.astype("int64").to_numpy(np.float64)
    out[t.isna().to_numpy()] = np.nan
    return out


def make_rule(spec: Any, sample: pd.DataFrame) -> SplitRule:
    """The split of ``spec.validation`` (the time cutoff read from the sample's time column)."""
    v = spec.validation
    share, _ = v.holdout_share(None)  # the stream's length is not known before it is read
    if v.strategy == "kfold":
        logger.warning("streaming mode validates on a holdout, not k-fold (k-fold was asked for)")
    if v.time_column:
        t = time_values(sample[v.time_column])
        t = t[~np.isnan(t)]
        if not len(t):
            raise DataError(f"time_column {v.time_column!r} holds no readable time in the sample")
        cutoff = float(np.quantile(t, 1 - share, method="higher"))
        return SplitRule("time", share, spec.seed, spec.target, v.time_column, cutoff)
    if v.group_column:
        return SplitRule("group", share, spec.seed, spec.target, v.group_column)
    return SplitRule("hash", share, spec.seed, spec.target)


def _side(batch: pd.DataFrame, rule: SplitRule, valid: bool, keep: float = 1.0) -> pd.DataFrame:
    batch = clean_batch(batch)
    mask = rule.validates(batch) == valid
    mask &= batch[rule.target].notna().to_numpy()
    if keep < 1.0:
        mask &= row_uniform(batch, sample_key(rule.seed + 1)) < keep
    return batch.loc[mask].reset_index(drop=True)


def part(ds: Any, rule: SplitRule, *, valid: bool, keep: float = 1.0) -> Any:
    """The training (``valid=False``) or validation part of ``ds``, a lazy Ray Dataset; ``keep``
    < 1 keeps a seeded uniform share of it (the early-stopping rows of the final fits)."""
    fn = partial(_side, rule=rule, valid=valid, keep=keep)
    return map_blocks(ds, fn)


def _sampled(batch: pd.DataFrame, seed: int, threshold: float) -> pd.DataFrame:
    batch = clean_batch(batch)
    u = row_uniform(batch, sample_key(seed))
    out = batch.loc[u < threshold].reset_index(drop=True)
    out[U] = u[u < threshold]
    return out


def uniform_sample(ds: Any, n_rows: int, cap: int, seed: int) -> pd.DataFrame:
    """At most ``cap`` rows of ``ds`` drawn uniformly (the ``cap`` smallest seeded row hashes):
    the same rows in the same order whatever the blocks. Only the sample reaches the driver."""
    threshold = min(1.0, 1.25 * cap / max(1, n_rows) + 1e-9)
    parts = map_blocks(ds, partial(_sampled, seed=seed, threshold=threshold))
    frames = list(parts.iter_batches(batch_format="pandas", batch_size=None))
    sample = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(sample):
        raise DataError("the table has no rows")
    sample = sample.sort_values(U, kind="stable").head(cap)
    return sample.drop(columns=[U]).reset_index(drop=True)


def split_sample(sample: pd.DataFrame, rule: SplitRule) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample's training and validation rows by the same rule as the streamed parts."""
    sample = sample.loc[sample[rule.target].notna()].reset_index(drop=True)
    mask = rule.validates(sample)
    train, valid = sample.loc[~mask].reset_index(drop=True), sample.loc[mask].reset_index(drop=True)
    if not len(train) or not len(valid):
        raise DataError(
            f"the {rule.kind} split left the sample's {'training' if not len(train) else 'validation'} "
            f"part empty ({len(sample)} sampled rows); raise holdout_fraction or sample_rows"
        )
    return train, valid
