"""The public estimator: ``AutoML(target=...).fit(data)``, scikit-learn style.

The constructor only stores settings; ``fit`` validates, runs the autopilot and returns self;
learned state ends in ``_``. It is a scikit-learn estimator: ``get_params`` / ``set_params``,
``sklearn.base.clone``, ``fit(X, y)`` and ``score(X, y)``. Orchestration lives in :mod:`automl.fit`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from automl import layout
from automl.config import (
    EnsembleConfig,
    FitSpec,
    ResourceConfig,
    SearchConfig,
    StreamingConfig,
    ValidationConfig,
)
from automl.data import TableSource, load_table
from automl.exceptions import ConfigError, DataError, NotFittedError
from automl.metrics import Metric
from automl.predictor import Predictor
from automl.presets import apply_presets
from automl.profile import DataProfile

logger = logging.getLogger(__name__)

#: the wall-clock budget when neither time_limit nor SearchConfig.max_trials is given
DEFAULT_TIME_LIMIT = 300.0


class AutoML(BaseEstimator):
    """Profile a table, search model pipelines with Ray Tune, ensemble the winners.

    Args:
        target: the column to predict.
        problem_type: "binary", "multiclass" or "regression"; inferred when None.
        metric: a metric name (see ``automl.metrics.METRICS``) or a ``custom_metric``; default
            roc_auc (binary), accuracy (multiclass), rmse (regression).
        time_limit: wall-clock seconds for the whole fit, Ray start-up, ensembling and saving
            included. Default: 300 s unless ``search.max_trials`` bounds the search instead.
        search, validation, ensemble, resources: settings objects (see ``automl.config``).
        seed: seeds splits, searchers and models.
        output_dir: the run directory (default: a new temporary directory).
        drop_columns: columns never used as features.
        weight_column: a column of non-negative sample weights (used in training).
        class_weight: "balanced" weighs classes inversely to their frequency.
        write_report: write ``report.html`` at the end of the fit (inside the time limit).
        presets: a preset name (or several) from ``automl.presets.PRESETS``: ``"fast_inference"``
            deploys the best model that predicts one row in at most 2 ms and weighs at most 20 MB.
            It fills the ``ensemble`` settings you left at their defaults.
        data_mode: "auto" (default), "memory" or "streaming". Streaming keeps the table a
            ``ray.data.Dataset`` (profile from streamed aggregates, a hashed holdout, trials on a
            bounded sample, the finalists on every row through Ray Train); "auto" picks it when
            the table would not fit in the memory Ray reports (see ``automl.streaming.mode``).
        streaming: settings of the streaming mode (``automl.config.StreamingConfig``).

    Example:
        >>> run = AutoML(target="class", time_limit=60).fit("data/adult.csv.gz")  # doctest: +SKIP
        >>> run.leaderboard().head()  # doctest: +SKIP
    """

    def __init__(
        self,
        target: str,
        *,
        problem_type: str | None = None,
        metric: str | Metric | None = None,
        time_limit: float | None = None,
        search: SearchConfig | None = None,
        validation: ValidationConfig | None = None,
        ensemble: EnsembleConfig | None = None,
        resources: ResourceConfig | None = None,
        seed: int = 0,
        output_dir: str | Path | None = None,
        drop_columns: tuple[str, ...] | list[str] = (),
        weight_column: str | None = None,
        class_weight: str | None = None,
        write_report: bool = True,
        presets: str | list[str] | None = None,
        data_mode: str = "auto",
        streaming: StreamingConfig | None = None,
    ) -> None:
        self.target = target
        self.problem_type = problem_type
        self.metric = metric
        self.time_limit = time_limit
        self.search = search
        self.validation = validation
        self.ensemble = ensemble
        self.resources = resources
        self.seed = seed
        self.output_dir = output_dir
        self.drop_columns = drop_columns
        self.weight_column = weight_column
        self.class_weight = class_weight
        self.write_report = write_report
        self.presets = presets
        self.data_mode = data_mode
        self.streaming = streaming

    # -- fitting ------------------------------------------------------------------------------------
    def _spec(self) -> FitSpec:
        search = self.search or SearchConfig()
        time_limit = self.time_limit
        if time_limit is not None and time_limit <= 0:
            raise ConfigError(f"time_limit must be a positive number of seconds; got {time_limit!r}")
        if time_limit is None and search.max_trials is None:
            time_limit = DEFAULT_TIME_LIMIT
            logger.info("no time_limit or max_trials given: using time_limit=%ss", DEFAULT_TIME_LIMIT)
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be None or 'balanced'; got {self.class_weight!r}")
        return FitSpec(
            target=self.target,
            problem_type=self.problem_type,
            metric=self.metric,
            time_limit=time_limit,
            search=search,
            validation=self.validation or ValidationConfig(),
            ensemble=apply_presets(self.presets, self.ensemble or EnsembleConfig()),
            resources=self.resources or ResourceConfig(),
            seed=int(self.seed),
            drop_columns=tuple(self.drop_columns),
            weight_column=self.weight_column,
            class_weight=self.class_weight,
            report=self.write_report,
            data_mode=self.data_mode,
            streaming=self.streaming or StreamingConfig(),
        )

    def fit(
        self,
        X: TableSource,
        y: Any = None,
        *,
        validation_data: TableSource | None = None,
        test_data: TableSource | None = None,
        resume: bool = False,
        started_at: float | None = None,
        stop_ray: bool = False,
    ) -> AutoML:
        """Run the autopilot; returns self.

        ``fit(table)`` takes a table holding the ``target`` column (a path, URI, DataFrame or
        ``ray.data.Dataset``); ``fit(X, y)`` takes the features (a DataFrame, or a 2-D array
        whose columns become ``x0, x1, ...``) and the labels (one per row) separately, as
        scikit-learn does. ``validation_data`` replaces the automatic validation split (the
        final models are then refit on both); ``test_data`` is scored once at the end
        (``score_test`` on the leaderboard). ``resume=True`` continues an interrupted search in
        the same ``output_dir``. ``started_at`` (a ``time.time()`` value) is when the time limit
        starts counting (default: this call; the CLI passes its process's start, so imports count).
        ``stop_ray=True`` shuts down a Ray this fit started, inside the time limit (the CLI does).
        """
        started = started_at or time.time()  # the time limit counts from here, imports included
        data = X if y is None else xy_table(X, y, self.target)
        from automl.fit import run_fit
        from automl.lineage import lineage

        spec = self._spec()
        run_dir = Path(self.output_dir) if self.output_dir else Path(tempfile.mkdtemp(prefix="automl-run-"))
        from automl.streaming.mode import choose_mode

        mode = choose_mode(data, spec.data_mode, spec.resources)
        if mode.mode == "streaming":
            from automl.streaming.run import run_streaming_fit

            result = run_streaming_fit(
                spec,
                data,
                run_dir=run_dir,
                mode=mode,
                started_at=started,
                stop_ray=stop_ray,
                validation=validation_data,
                test=test_data,
                resume=resume,
            )
            return self._take(result, run_dir)
        train = load_table(data, name="train")
        valid = load_table(validation_data, name="validation") if validation_data is not None else None
        test = load_table(test_data, name="test") if test_data is not None else None
        call = f"AutoML(target={self.target!r}, time_limit={spec.time_limit}, search={spec.search}).fit(...)"
        result = run_fit(
            spec,
            train,
            run_dir=run_dir,
            validation=valid,
            test=test,
            resume=resume,
            started_at=started,
            lineage={**lineage(data, train, call), "data_mode": mode.to_dict()},
            stop_ray=stop_ray,
        )
        return self._take(result, run_dir)

    def _take(self, result: Any, run_dir: Path) -> AutoML:
        self.predictor_ = result.predictor
        self.leaderboard_ = result.leaderboard
        self.profile_ = result.profile
        self.run_info_ = result.run_info
        self.run_dir_ = run_dir
        return self

    def profile(self, data: TableSource) -> DataProfile:
        """Profile ``data`` without fitting (what ``fit`` would infer and warn about)."""
        from automl.prepare import profile_for

        return profile_for(self._spec(), load_table(data))

    # -- using the result ---------------------------------------------------------------------------
    def _predictor(self) -> Predictor:
        pred = getattr(self, "predictor_", None)
        if pred is None:
            raise NotFittedError("this AutoML instance is not fitted yet; call fit() with a table first")
        return pred

    def leaderboard(self) -> pd.DataFrame:
        """Every trial and the ensemble, best first (a copy)."""
        self._predictor()
        return self.leaderboard_.copy()

    def predict(self, data: TableSource) -> pd.Series:
        """One prediction per input row, in input order."""
        return self._predictor().predict(_frame(data))

    def score(self, X: TableSource, y: Any = None) -> float:
        """The chosen metric on ``X`` (a table with the target column, or features with ``y``),
        as "higher is better", scikit-learn's convention: losses such as rmse or log_loss come
        back negated (like sklearn's ``neg_root_mean_squared_error``)."""
        from automl.metrics import resolve_metric

        pred = self._predictor()
        table = _frame(X if y is None else xy_table(X, y, self.target))
        if self.target not in table.columns:
            raise DataError(f"score needs the target column {self.target!r} in the table, or pass y")
        table = table.loc[table[self.target].notna()]
        raw, _ = pred.predict_raw(table.drop(columns=[self.target]))
        truth = table[self.target]
        metric, _ = resolve_metric(self.metric if self.metric is not None else pred.metric, pred.problem_type)
        if pred.classes is not None:
            codes = pd.Categorical(truth, categories=pred.classes).codes
            unseen = sorted({str(v) for v, c in zip(truth, codes) if c < 0})
            if unseen:
                raise DataError(f"score: labels {unseen[:10]} were never seen in training; drop those rows")
            metric = metric.with_classes(pred.classes) if metric.custom else metric
            truth = np.asarray(codes, dtype=int)
        return metric.objective(metric.score(np.asarray(truth), raw))

    def predict_proba(self, data: TableSource) -> pd.DataFrame:
        """Class probabilities, one column per class label (classifiers only)."""
        return self._predictor().predict_proba(_frame(data))

    def report(self, output: str | Path | None = None, *, sensitive_column: str | None = None) -> Path:
        """Write the HTML report of this fit (default ``run_dir_/report.html``); returns its path.
        ``sensitive_column`` adds bias metrics across that column's groups (binary problems)."""
        from automl.report import write_report

        self._predictor()
        return write_report(self.run_dir_, output, sensitive_column=sensitive_column)

    def explain(self, data: TableSource) -> pd.DataFrame:
        """Per-row contributions (tree SHAP, margin space): one column per input column plus
        ``bias``; see :func:`automl.report.contributions.explain` for ensembles and classes."""
        from automl.report import explain

        return explain(self._predictor(), _frame(data))

    def save(self, path: str | Path) -> Path:
        """Copy the Predictor artifact (without the search state) to ``path``."""
        pred = self._predictor()
        extra = {n: self.run_dir_ / n for n in layout.PREDICTOR_FILES if (self.run_dir_ / n).exists()}
        return pred.save(Path(path), extra_files=extra)


def xy_table(X: Any, y: Any, target: str) -> pd.DataFrame:
    """One table from features ``X`` and labels ``y`` (their rows in order); ``X`` is not changed."""
    frame = X.copy() if isinstance(X, pd.DataFrame) else None
    if frame is None:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise DataError(f"X must be a DataFrame or a 2-D array; got an array of shape {arr.shape}")
        frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(frame):
        raise DataError(
            f"y must hold one label per row of X: X has {len(frame)} rows, y has shape {labels.shape}"
        )
    if target in frame.columns:
        raise DataError(
            f"X already has a column named {target!r} (the target); pass the features without it, or "
            "call fit(table) with the whole table"
        )
    frame[target] = labels
    return frame


def _frame(data: TableSource) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else load_table(data)


def load(path: str | Path) -> Predictor:
    """Load a saved Predictor; verifies checksums and does not need Ray."""
    return Predictor.load(path)


__all__ = ["AutoML", "load"]
