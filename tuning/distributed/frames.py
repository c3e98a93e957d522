"""The column layout of the Ray Datasets a distributed fit reads: ``n0..`` numeric features
(float32), ``c0..`` category codes (int32; 0 = missing, see automl.preprocessing), ``__label``
and, when rows are weighted, ``__weight``. Memory mode builds it from a FeatureMatrix; a
streaming pipeline produces it block by block with the same preprocessing code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.preprocessing import FeatureMatrix

LABEL, WEIGHT = "__label", "__weight"


@dataclass(frozen=True)
class FeatureLayout:
    n_num: int
    cat_sizes: tuple[int, ...]  # levels + 2 per categorical column (automl.preprocessing codes)

    @classmethod
    def of(cls, X: FeatureMatrix) -> FeatureLayout:
        return cls(X.num.shape[1], tuple(X.cat_sizes))

    @property
    def n_cat(self) -> int:
        return len(self.cat_sizes)

    @property
    def num_columns(self) -> list[str]:
        return [f"n{i}" for i in range(self.n_num)]

    @property
    def cat_columns(self) -> list[str]:
        return [f"c{i}" for i in range(self.n_cat)]

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the category codes in the dense matrix (numbers first, then codes)."""
        return list(range(self.n_num, self.n_num + self.n_cat))

    def empty_matrix(self) -> FeatureMatrix:
        """A zero-row FeatureMatrix with these columns (for code that sizes a model from one)."""
        return FeatureMatrix(
            np.zeros((0, self.n_num), np.float32),
            np.zeros((0, self.n_cat), np.int32),
            self.num_columns,
            self.cat_columns,
            list(self.cat_sizes),
        )

    def dense(self, batch: pd.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
        """Numbers then codes as one float32 matrix, like ``FeatureMatrix.dense()``."""
        cols = [np.asarray(batch[c], dtype=np.float32) for c in self.num_columns + self.cat_columns]
        n = len(batch[LABEL])
        return np.column_stack(cols) if cols else np.zeros((n, 0), np.float32)


def to_frame(X: FeatureMatrix, y: np.ndarray, w: np.ndarray | None) -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {f"n{i}": X.num[:, i] for i in range(X.num.shape[1])}
    cols.update({f"c{i}": X.cat[:, i].astype(np.int32) for i in range(X.cat.shape[1])})
    cols[LABEL] = np.asarray(y)
    if w is not None:
        cols[WEIGHT] = np.asarray(w, dtype=np.float32)
    return pd.DataFrame(cols)


#: object store bytes the Ray Data pipeline feeding one dataset of a Ray Train fit may hold at a
#: time (Ray Data's default: a share of the whole store, 50 % of 7.4 GB here), a bound on what it
#: reads ahead of the workers. The workers stack blocks as fast as they come, so a few dozen
#: 65,536-row blocks (~14 MB each at 50 columns) in flight keep them fed. (The store's 1.87 GB
#: peak at 10M rows came from the workers' label views, :func:`tuning.distributed.gbdt.dense_chunks`,
#: not from read-ahead: with both in place it peaked at 606 MB.)
INGEST_STORE_BYTES = 256 * 2**20


def data_config() -> Any:
    """Only "train" is split: every worker reads the whole validation set (data-parallel LightGBM
    evaluates locally, and workers whose early-stopping decisions differ deadlock in the next
    allreduce). Each dataset's pipeline holds at most ``INGEST_STORE_BYTES`` of the object store."""
    from ray.data import DataContext, ExecutionOptions, ExecutionResources
    from ray.train import DataConfig

    current = DataContext.get_current().execution_options
    options = ExecutionOptions(
        resource_limits=current.resource_limits.min(
            ExecutionResources.for_limits(object_store_memory=INGEST_STORE_BYTES)
        ),
        preserve_order=current.preserve_order,
    )
    return DataConfig(datasets_to_split=["train"], execution_options=options)
