"""Settings as frozen dataclasses, validated on construction (never with ``assert``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from automl.exceptions import ConfigError

SEARCH_STRATEGIES = ("bayesian", "random", "grid", "hyperband", "asha", "bohb")
VALIDATION_STRATEGIES = ("auto", "holdout", "kfold")
TARGET_TRANSFORMS = ("auto", "none", "log1p", "yeo-johnson")
DATA_MODES = ("auto", "memory", "streaming")
ROW_FIDELITY = ("auto", "on", "off")
#: strategies whose searcher suggests one config at a time (the others schedule trials themselves)
ROW_FIDELITY_STRATEGIES = ("bayesian", "random")
#: row_fidelity="auto" turns on from this many training rows (see docs/search.md)
ROW_FIDELITY_MIN_ROWS = 20_000


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}; got {value!r}")


def _positive(name: str, value: float | int | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{name} must be a positive number; got {value!r}")


@dataclass(frozen=True)
class SearchConfig:
    """How candidates are searched.

    Args:
        strategy: bayesian (Optuna TPE + ASHA, default), random, grid, hyperband, asha, bohb.
        searcher: for ``asha`` only: "tpe" (default) or "random".
        max_trials: stop after this many trials (the portfolio counts). None: until the time limit.
        target_score: stop as soon as a trial reaches this validation score (metric units).
        patience: stop when this many trials in a row did not improve the best score.
        families: restrict the search to these model families (default: all that apply).
        portfolio: evaluate each family's default configs before searching.
        max_concurrent_trials: default: one per CPU (per GPU when trials use GPUs).
        warm_start: a previous run directory whose best configs are evaluated first.
        mlflow: log every trial to MLflow: True (a ``mlruns`` store in the run directory) or a
            tracking URI. Needs ``pip install mlflow`` (or mlflow-skinny).
        target_transform: regression only. "auto": for a skewed or heavy-tailed target the
            search also tries log1p (Yeo-Johnson for a target with negative values) and robust
            objectives, chosen by validation; "none": never; "log1p" / "yeo-johnson": offer
            that transform (and robust objectives) whatever the target's shape.
        column_probe: before the search, test identifier columns whose values repeat and
            high-cardinality categoricals (dropped / kept as codes, or encoded) on the
            validation folds with a fast model, instead of applying the profile's rule.
        row_fidelity: successive halving over rows (docs/search.md): configs first train on
            seeded samples of the rows (1/9, then 1/3) and only the best third of each rung
            climbs; only configs that reach the top rung are validated on the run's folds and
            can join the ensemble. "auto": on when the fit has a time limit, the table has at
            least ``ROW_FIDELITY_MIN_ROWS`` training rows and the strategy is bayesian or
            random; "on": whenever a lower rung has ``automl.row_rungs.MIN_RUNG_ROWS`` rows
            (trials then count each rung, e.g. for max_trials); "off": never.
    """

    strategy: str = "bayesian"
    searcher: str = "tpe"
    max_trials: int | None = None
    target_score: float | None = None
    patience: int | None = None
    families: tuple[str, ...] | None = None
    portfolio: bool = True
    max_concurrent_trials: int | None = None
    warm_start: str | None = None
    mlflow: bool | str = False
    target_transform: str = "auto"
    column_probe: bool = True
    row_fidelity: str = "auto"

    def __post_init__(self) -> None:
        _choice("search strategy", self.strategy, SEARCH_STRATEGIES)
        _choice("row_fidelity", self.row_fidelity, ROW_FIDELITY)
        if self.row_fidelity == "on" and self.strategy not in ROW_FIDELITY_STRATEGIES:
            raise ConfigError(
                f"row_fidelity='on' works with the strategies {list(ROW_FIDELITY_STRATEGIES)}; "
                f"{self.strategy!r} has its own scheduler (or, grid, a fixed list of configs): "
                "set row_fidelity='auto' or 'off', or strategy='bayesian'"
            )
        _choice("target_transform", self.target_transform, TARGET_TRANSFORMS)
        _choice("searcher", self.searcher, ("tpe", "random"))
        _positive("max_trials", self.max_trials)
        _positive("patience", self.patience)
        _positive("max_concurrent_trials", self.max_concurrent_trials)
        if self.families is not None:
            object.__setattr__(self, "families", tuple(self.families))

    def resolve_row_fidelity(self, n_rows: int, *, timed: bool) -> tuple[bool, str]:
        """Whether the search runs successive halving over rows on ``n_rows`` training rows, and
        why. ``timed``: the fit has a time limit (what row fidelity saves is time; with only a
        trial budget every rung would count as a trial)."""
        if self.row_fidelity == "off":
            return False, "row_fidelity='off'"
        if self.row_fidelity == "on":
            return True, "row_fidelity='on'"
        if self.strategy not in ROW_FIDELITY_STRATEGIES:
            return False, f"strategy {self.strategy!r} schedules trials itself (row_fidelity='auto')"
        if not timed:
            return False, "no time limit: every config trains on all rows (row_fidelity='on' forces it)"
        if n_rows < ROW_FIDELITY_MIN_ROWS:
            return False, (
                f"{n_rows:,} training rows < {ROW_FIDELITY_MIN_ROWS:,}: a trial on all rows is cheap "
                "enough (row_fidelity='on' forces it)"
            )
        return True, f"{n_rows:,} training rows >= {ROW_FIDELITY_MIN_ROWS:,} and a time limit"


KFOLD_ROW_FOLDS_PER_SECOND = 5_000

#: a holdout's share when ``holdout_fraction`` is not set: a fifth, at most HOLDOUT_VALIDATION_ROWS
DEFAULT_HOLDOUT_FRACTION = 0.2
#: AutoGluon's default holdout grows to 2,500 validation rows, doubled when the validation score also
#: chooses hyperparameters (as every search here does). Rows past that train the model: covertype's
#: LightGBM model scored 0.9165 test accuracy trained on 48,000 of 60,000 rows; the same config in
#: plain LightGBM 0.9186 on 54,000 and 0.9223 on all 60,000 (same test rows).
HOLDOUT_VALIDATION_ROWS = 5_000
MIN_HOLDOUT_FRACTION = 0.02


@dataclass(frozen=True)
class ValidationConfig:
    """How candidates are validated.

    ``auto`` uses k-fold (every row gets an out-of-fold prediction, and the fold models form a
    bag) up to ``kfold_max_rows`` training rows when the time budget allows it (see ``resolve``),
    and a holdout otherwise.
    """

    strategy: str = "auto"
    n_folds: int = 5
    holdout_fraction: float | None = None  # None: holdout_share's rule by the row count
    kfold_max_rows: int = 100_000
    time_column: str | None = None
    group_column: str | None = None

    def __post_init__(self) -> None:
        _choice("validation strategy", self.strategy, VALIDATION_STRATEGIES)
        if self.n_folds < 2:
            raise ConfigError(f"n_folds must be at least 2; got {self.n_folds}")
        if self.holdout_fraction is not None and not 0 < self.holdout_fraction < 1:
            raise ConfigError(f"holdout_fraction must be between 0 and 1; got {self.holdout_fraction}")
        if self.time_column and self.group_column:
            raise ConfigError("give either time_column or group_column, not both")

    def resolve(self, n_rows: int, *, n_classes: int = 0, time_limit: float | None = None) -> tuple[str, str]:
        """The validation scheme for ``n_rows`` training rows, and the reason for it.

        ``auto`` picks k-fold unless the table is above ``kfold_max_rows`` or the budget is too
        short for it: k-fold trains ``n_folds`` models per trial, and a multiclass booster one
        tree per class per round, so with ``rows x folds x classes`` above
        ``KFOLD_ROW_FOLDS_PER_SECOND`` per second of budget a search would see only a handful of
        trials (covertype, 60 k rows and 7 classes, saw 4 in 60 s); a holdout then buys the search
        five times as many. Set ``strategy="kfold"`` to keep k-fold regardless.
        """
        if self.strategy != "auto":
            return self.strategy, "set by the user"
        if n_rows > self.kfold_max_rows:
            return "holdout", f"{n_rows:,} training rows > kfold_max_rows={self.kfold_max_rows:,}"
        if self.budget_is_short(n_rows, n_classes=n_classes, time_limit=time_limit):
            return "holdout", (
                f"{self.n_folds}-fold on {n_rows:,} rows"
                + (f" x {n_classes} classes" if n_classes > 2 else "")
                + f" is too much for a {time_limit:.0f} s budget (more than "
                f"{KFOLD_ROW_FOLDS_PER_SECOND:,} row-folds per second); strategy='kfold' forces it"
            )
        return "kfold", f"{n_rows:,} rows fit {self.n_folds}-fold within the budget"

    def holdout_share(self, n_rows: int | None) -> tuple[float, str]:
        """A holdout's share of ``n_rows`` training rows (None: not known in advance, as in streaming
        mode), and the reason: ``holdout_fraction`` when set; otherwise a fifth of the rows, capped at
        ``HOLDOUT_VALIDATION_ROWS`` validation rows on tables above 25,000 rows, so that the rows past
        a stable validation set train the model."""
        if self.holdout_fraction is not None:
            return self.holdout_fraction, "holdout_fraction set by the user"
        if n_rows is None or n_rows * DEFAULT_HOLDOUT_FRACTION <= HOLDOUT_VALIDATION_ROWS:
            return DEFAULT_HOLDOUT_FRACTION, f"a {DEFAULT_HOLDOUT_FRACTION:.0%} holdout"
        share = max(MIN_HOLDOUT_FRACTION, HOLDOUT_VALIDATION_ROWS / n_rows)
        rows = round(share * n_rows)
        return share, f"holdout share {share:.1%} ({rows:,} validation rows; holdout_fraction sets it)"

    def budget_is_short(self, n_rows: int, *, n_classes: int = 0, time_limit: float | None = None) -> bool:
        """Whether ``time_limit`` is short for ``n_rows`` rows: k-fold work (rows x folds x classes
        above two) above ``KFOLD_ROW_FOLDS_PER_SECOND`` per second of it. Then ``auto`` validates on
        a holdout, and LightGBM leads with a config that converges in fewer rounds and waits longer on
        a plateau (:attr:`automl.models.base.Task.short_budget`)."""
        work = n_rows * self.n_folds * (n_classes if n_classes > 2 else 1)
        return time_limit is not None and work > time_limit * KFOLD_ROW_FOLDS_PER_SECOND


@dataclass(frozen=True)
class EnsembleConfig:
    """How the winners are combined and what the deployed model must satisfy.

    Args:
        enabled: build a greedy weighted ensemble (Caruana) over out-of-fold predictions.
        size: rounds of greedy selection (with replacement).
        max_members: candidates considered (the best of each family first).
        stack_levels: 0 or 1 extra layer of models trained on (nested) out-of-fold predictions.
        refit: "auto" (default): offer, beside each bagged option that can be refit (the best
            single models and the weighted ensemble), a *refit* option whose members are trained
            once on every training row, when that fits in the time left; on equal validation
            scores the refit option is deployed after a holdout search (same model count, more
            rows) and the bag after k-fold. True: always build the refit options (even past the
            deadline) and prefer them on equal scores. False: never refit.
        max_latency_ms: one-row latency (median through the whole Predictor, measured during the
            fit) the deployed model must meet.
        max_model_mb: size on disk the deployed model must meet.
        calibrate: calibrate classifier probabilities on out-of-fold predictions when it helps.
        max_predict_latency_ms, max_model_size_mb: the former names of ``max_latency_ms`` and
            ``max_model_mb`` (deprecated: still accepted, with a warning).
        clip_predictions: clip every regression member's predictions to the training target's
            range widened by 5 % on each side (``automl.target``); False lets them extrapolate.

    The best validation score that meets the constraints is deployed; when no option meets them,
    the fastest is kept and the log, ``run.json`` and the leaderboard say so. With a time limit,
    the search may end early to keep time for the refit options and, when it is expected to fit
    in 15 % of the limit, the stack layer (``docs/ensembling.md``).
    """

    enabled: bool = True
    size: int = 25
    max_members: int = 12
    stack_levels: int = 0
    refit: bool | str = "auto"
    max_latency_ms: float | None = None
    max_model_mb: float | None = None
    calibrate: bool = True
    max_predict_latency_ms: float | None = field(default=None, repr=False)
    max_model_size_mb: float | None = field(default=None, repr=False)
    clip_predictions: bool = True

    def __post_init__(self) -> None:
        _positive("ensemble size", self.size, allow_none=False)
        if self.stack_levels not in (0, 1):
            raise ConfigError(
                f"stack_levels must be 0 or 1; got {self.stack_levels!r}. A second stack layer is not "
                f"offered: keeping every row's label out of its own prediction would need k**3 extra "
                f"fits per model"
            )
        _choice("refit", self.refit, ("auto", True, False))
        for old, new in (("max_predict_latency_ms", "max_latency_ms"), ("max_model_size_mb", "max_model_mb")):
            value = getattr(self, old)
            if value is None:
                continue
            if getattr(self, new) is not None and getattr(self, new) != value:
                raise ConfigError(f"{old} is the former name of {new}; give only {new}")
            warnings.warn(f"EnsembleConfig({old}=...) is deprecated: use {new}=", FutureWarning, stacklevel=3)
            object.__setattr__(self, new, value)
            object.__setattr__(self, old, None)
        _positive("max_latency_ms", self.max_latency_ms)
        _positive("max_model_mb", self.max_model_mb)

    @property
    def constrained(self) -> bool:
        return self.max_latency_ms is not None or self.max_model_mb is not None


@dataclass(frozen=True)
class ResourceConfig:
    """Where trials run.

    Args:
        address: a Ray cluster address ("auto", "ray://...") or None to start Ray in-process
            (or join the one ``RAY_ADDRESS`` names).
        num_cpus: CPUs for an in-process Ray (default: all).
        cpus_per_trial: CPUs each trial uses (threads of the model library).
        gpus_per_trial: GPUs each trial requests; None: 1 when the cluster has GPUs and the
            family can use them, else 0.
        train_workers: Ray Train workers for a large-data trial (>= 2 forces the Ray Train path).
        ray_train_min_rows: training rows from which a trial trains through Ray Train workers.
        storage: where the run directory's search state lives (absolute path or s3:// URI) for
            clusters whose nodes do not share the driver's disk.
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    train_workers: int = 1
    ray_train_min_rows: int = 1_000_000
    storage: str | None = None

    def __post_init__(self) -> None:
        _positive("num_cpus", self.num_cpus)
        _positive("cpus_per_trial", self.cpus_per_trial, allow_none=False)
        _positive("train_workers", self.train_workers, allow_none=False)


@dataclass(frozen=True)
class StreamingConfig:
    """Settings of the streaming data mode (``data_mode="streaming"``, :mod:`automl.streaming`).

    Args:
        sample_rows: rows of the bounded uniform sample the profile's kinds, the preprocessing
            and the search's trials work on (the finalists train on every row).
        finals: train the best config of each boosting family (LightGBM, XGBoost) on the full
            training part through Ray Train; False keeps the sample-trained models.
        final_workers: Ray Train workers of each final fit (default: one per CPU of the cluster).
        early_stopping_rows: validation rows each final's workers read for early stopping (the
            whole validation part is scored afterwards, by Ray Data batch inference).
        finals_share: share of the time limit kept for the final fits at least; the search ends
            earlier when the best boosting config's final needs more (tuning.distributed.reserve).
    """

    sample_rows: int = 200_000
    finals: bool = True
    final_workers: int | None = None
    early_stopping_rows: int = 100_000
    finals_share: float = 0.4

    def __post_init__(self) -> None:
        _positive("sample_rows", self.sample_rows, allow_none=False)
        _positive("final_workers", self.final_workers)
        _positive("early_stopping_rows", self.early_stopping_rows, allow_none=False)
        if not 0 <= self.finals_share < 1:
            raise ConfigError(f"finals_share must be in [0, 1); got {self.finals_share}")


@dataclass(frozen=True)
class FitSpec:
    """Everything a fit is asked to do: ``AutoML``'s settings, validated, as one object."""

    target: str
    problem_type: str | None = None
    metric: Any = None  # a metric name or an automl.metrics.Metric (custom_metric)
    time_limit: float | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    seed: int = 0
    drop_columns: tuple[str, ...] = ()
    weight_column: str | None = None
    class_weight: str | None = None
    report: bool = True
    data_mode: str = "auto"  # auto | memory | streaming (automl.streaming.mode)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)

    def __post_init__(self) -> None:
        _choice("data_mode", self.data_mode, DATA_MODES)
