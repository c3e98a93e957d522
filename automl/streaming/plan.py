"""What the streaming orchestration hands to the fit's stages (:func:`automl.fit.run_fit`): the
streamed parts of the table, their exact statistics, the split, and what the final fits left."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from automl.config import StreamingConfig
from automl.profile import DataProfile
from automl.streaming.profile import annotate
from automl.streaming.split import SplitRule, part
from automl.streaming.stats import TableStats

#: share of the time limit kept for scoring the deployed Predictor on the validation part: 90 s of
#: 1,800; at 1M rows (200,000 validation rows) that scoring took 31 s on a loaded 2-core machine
SCORING_SHARE = 0.05


@dataclass
class StreamPlan:
    train: Any  # ray.data.Dataset: the training part (raw columns, rows with a target)
    valid: Any  # ray.data.Dataset: the validation part
    stop: Any  # ray.data.Dataset: a seeded share of the validation part, for early stopping
    stats: TableStats
    rule: SplitRule
    n_sample_train: int
    n_sample_rows: int
    config: StreamingConfig
    source: Any = None  # ray.data.Dataset: the whole table (for a share of the training part)
    notes: list[str] = field(default_factory=list)  # what the final fits did or left out, and why
    finals: dict[str, Any] = field(default_factory=dict)  # family -> figures of its final fit
    _stop_rows: Any = field(default=None, repr=False)

    @property
    def n_train_estimate(self) -> int:
        """Training rows expected in the training part (exact rows with a target x its share)."""
        return int(round(self._labelled() * (1 - self.rule.fraction)))

    @property
    def n_valid_estimate(self) -> int:
        """Validation rows expected in the validation part."""
        return self._labelled() - self.n_train_estimate

    def _labelled(self) -> int:
        return self.stats.n_rows - self.stats.column(self.rule.target).n_missing

    def stopping_rows(self) -> Any:
        """``stop`` read from the table once and kept in the object store (a materialized Dataset of
        ``early_stopping_rows`` rows, ~27 MB at 100,000 rows of 50 columns). The finals' workers
        each read all of it (it is not split), and a lazy ``stop`` was read from the whole table
        again by every worker of every final, beside the pass over the training part."""
        if self._stop_rows is None:
            self._stop_rows = self.stop.materialize()
        return self._stop_rows

    def train_part(self, share: float = 1.0) -> Any:
        """The training part, or a seeded ``share`` of its rows (a final that has not the time
        for every row)."""
        if share >= 1.0 or self.source is None:
            return self.train
        return part(self.source, self.rule, valid=False, keep=share)

    def valid_part(self, share: float = 1.0) -> Any:
        """The validation part, or a seeded ``share`` of its rows (scoring short of time)."""
        if share >= 1.0 or self.source is None:
            return self.valid
        return part(self.source, self.rule, valid=True, keep=share)

    def annotate(self, profile: DataProfile) -> None:
        annotate(profile, self.stats, sample_rows=self.n_sample_rows, split=self.rule.describe())

    def finals_reserve_s(self, time_limit: float | None) -> float:
        """Seconds of the time limit kept after the search for the final fits."""
        if not time_limit or not self.config.finals:
            return 0.0
        return self.config.finals_share * time_limit

    def scoring_reserve_s(self, time_limit: float | None) -> float:
        """Seconds of the time limit kept after the fit's last stage for scoring the deployed
        Predictor on the whole validation part (a share of it when that takes longer)."""
        return SCORING_SHARE * time_limit if time_limit else 0.0

    def info(self) -> dict[str, Any]:
        return {
            "table_rows": self.stats.n_rows,
            "sample_rows": self.n_sample_rows,
            "sample_training_rows": self.n_sample_train,
            "split": self.rule.describe(),
            "finals": self.finals,
            "notes": self.notes,
        }
