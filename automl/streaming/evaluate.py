"""Scoring a Predictor on a streamed table by Ray Data batch inference: each block is predicted
by the Predictor itself (the same compiled path as serving) in a Ray task, and only the encoded
labels and the predictions (a few numbers per row) come back to the driver for the metric."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from automl.streaming.rows import clean_batch
from automl.streaming.source import map_blocks

logger = logging.getLogger(__name__)

Y = "__y"


#: expected seconds of scoring: this + the rows / the Predictor's measured in-process batch rows/s
#: x SCORING_MARGIN (Ray Data also reads, cleans and moves every block)
SCORING_OVERHEAD_S = 5.0
SCORING_MARGIN = 2.0
#: scoring short of time still reads at least this many rows (a score on fewer is noise)
MIN_SCORED_ROWS = 20_000


@dataclass(frozen=True)
class StreamScore:
    score: float
    n_rows: int
    n_unknown_labels: int  # rows left out: a class the Predictor never saw
    seconds: float
    share: float = 1.0  # of the part's rows scored (a seeded share when the time was short)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


#: Predictors a worker process already fetched from the object store, by object id
_LOADED: dict[str, Any] = {}


def _predictor(box: list[Any]) -> Any:
    """The Predictor behind ``box[0]`` (an ObjectRef; boxed so Ray does not resolve it per task),
    fetched once per worker process: a large ensemble is not shipped with every task."""
    import ray

    key = box[0].hex()
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = ray.get(box[0])
    return _LOADED[key]


def _predict_batch(batch: pd.DataFrame, box: list[Any], target: str) -> pd.DataFrame:
    predictor = _predictor(box)
    batch = clean_batch(batch)
    batch = batch.loc[batch[target].notna()].reset_index(drop=True)
    if predictor.classes is not None:
        y = pd.Categorical(batch[target], categories=predictor.classes).codes.astype(np.int32)
    else:
        y = pd.to_numeric(batch[target]).to_numpy(np.float64)
    out = pd.DataFrame({Y: y})
    if not len(batch):
        for j in range(len(predictor.classes or [None])):
            out[f"__p{j}"] = np.zeros(0)
        return out
    raw, _ = predictor.predict_raw(batch.drop(columns=[target]))
    raw = raw.reshape(len(batch), -1)
    for j in range(raw.shape[1]):
        out[f"__p{j}"] = raw[:, j]
    return out


def predictions(predictor: Any, ds: Any, target: str) -> tuple[np.ndarray, np.ndarray]:
    """(encoded labels, standardised predictions) of every row of ``ds`` with a target."""
    import ray

    predictor._fast = None  # compiled per worker, not shipped
    fn = partial(_predict_batch, box=[ray.put(predictor)], target=target)
    ys, ps = [], []
    for b in map_blocks(ds, fn).iter_batches(batch_format="pandas", batch_size=None):
        ys.append(b[Y].to_numpy())
        ps.append(b[[c for c in b.columns if c != Y]].to_numpy(np.float64))
    y = np.concatenate(ys) if ys else np.zeros(0)
    p = np.concatenate(ps) if ps else np.zeros((0, 1))
    return y, (p if predictor.classes is not None else p[:, 0])


def scoring_share(n_rows: int, rows_per_s: float | None, left_s: float | None) -> float:
    """The share of ``n_rows`` a Predictor that predicts ``rows_per_s`` in a batch can score in
    ``left_s`` seconds (1.0: every row; at least ``MIN_SCORED_ROWS`` rows)."""
    if left_s is None or not rows_per_s or n_rows <= MIN_SCORED_ROWS:
        return 1.0
    need = SCORING_MARGIN * n_rows / rows_per_s
    share = (left_s - SCORING_OVERHEAD_S) / need
    return 1.0 if share >= 1.0 else max(MIN_SCORED_ROWS / n_rows, share)


def score_dataset(predictor: Any, ds: Any, target: str, metric: Any, share: float = 1.0) -> StreamScore:
    """``metric`` of ``predictor`` on every row of ``ds`` that has a target (``ds``: a seeded
    ``share`` of a part's rows, when the caller took one)."""
    t = time.time()
    y, p = predictions(predictor, ds, target)
    unknown = 0
    if predictor.classes is not None:
        keep = y >= 0
        unknown = int((~keep).sum())
        y, p = y[keep].astype(int), p[keep]
    score = float(metric.score(y, p))
    return StreamScore(score, len(y), unknown, time.time() - t, round(share, 4))
