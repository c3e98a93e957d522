"""Preprocessing of streamed blocks: the fitted recipe (JSON state, fitted on the sample) applied
to each block by the compiled predict path of :mod:`automl.fastpath`, the very code a saved
Predictor runs at serving time, plus the encoded label and weight of each row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.fastpath import _column_plan
from automl.fastpath.columns import read_columns
from automl.fastpath.features import RecipePlan
from automl.preprocessing import FeatureMatrix, Preprocessor
from automl.schema import InputSchema
from automl.streaming.rows import clean_batch


@dataclass
class EncodedBatch:
    X: FeatureMatrix
    y: np.ndarray
    w: np.ndarray | None
    n_unknown_labels: int  # rows dropped: a class the sample never saw


class BatchEncoder:
    """Turns a raw block into (features, encoded label, weight). Picklable: it holds only the
    schema and the preprocessing state, and compiles the fast path once per worker."""

    def __init__(
        self,
        schema: InputSchema,
        pre: Preprocessor,
        target: str,
        *,
        classes: list[Any] | None,
        weight_column: str | None = None,
        transform: Any = None,  # regression: the config's target transform (automl.target)
    ) -> None:
        self.schema, self.state = schema, pre.to_dict()
        self.target, self.classes, self.weight_column = target, classes, weight_column
        self.transform = transform
        self._plans: Any = None

    def _compiled(self) -> tuple[list[Any], RecipePlan]:
        if self._plans is None:
            pre = Preprocessor.from_dict(self.state)
            plans = [_column_plan(spec, {pre.recipe: pre}) for spec in self.schema.columns]
            universes = {p.name: p.universe for p in plans if p.universe is not None}
            self._plans = (plans, RecipePlan(pre, universes))
        return self._plans

    def features(self, batch: pd.DataFrame) -> FeatureMatrix:
        """The recipe's matrix of ``batch``, as the Predictor computes it."""
        plans, recipe = self._compiled()
        return recipe.transform(read_columns(self.schema, plans, batch)).X

    def encode(self, batch: pd.DataFrame) -> EncodedBatch:
        batch = clean_batch(batch)
        batch = batch.loc[batch[self.target].notna()].reset_index(drop=True)
        unknown = 0
        if self.classes is not None:
            y = pd.Categorical(batch[self.target], categories=self.classes).codes.astype(np.int32)
            if (y < 0).any():
                unknown = int((y < 0).sum())
                batch, y = batch.loc[y >= 0].reset_index(drop=True), y[y >= 0]
        else:
            y = pd.to_numeric(batch[self.target]).to_numpy(np.float64)
            if self.transform is not None:
                y = self.transform.forward(y)
        w = None
        if self.weight_column:
            w = pd.to_numeric(batch[self.weight_column], errors="coerce").fillna(0.0).to_numpy(np.float32)
        X = self.features(batch) if len(batch) else None
        return EncodedBatch(X, y, w, unknown)  # type: ignore[arg-type]
