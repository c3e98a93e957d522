"""Problem types and their inference from the target column."""

from __future__ import annotations

import enum
import logging

import numpy as np
import pandas as pd

from automl.exceptions import ConfigError, DataError

logger = logging.getLogger(__name__)

#: an integer target with at most this many distinct values (and few relative to the rows) is multiclass
MAX_MULTICLASS_INT_LEVELS = 20


class ProblemType(str, enum.Enum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not ProblemType.REGRESSION


def infer_problem_type(y: pd.Series) -> tuple[ProblemType, str]:
    """Infer the problem type from the target values; returns ``(type, reason)``.

    Rules (in the spirit of AutoGluon's ``infer_problem_type``): two distinct values -> binary;
    text, boolean or categorical values -> multiclass; integers with few distinct levels
    (<= 20, and at most 5 % of the rows) -> multiclass; other numbers -> regression.
    """
    y = y.dropna()
    n_unique = int(y.nunique())
    if n_unique < 2:
        raise DataError(
            f"target column {y.name!r} has {n_unique} distinct value(s); a model needs at least two. "
            "Check that you named the right column with --target."
        )
    if n_unique == 2:
        return ProblemType.BINARY, f"the target has exactly two distinct values {_preview(y)}"
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return ProblemType.MULTICLASS, f"the target is non-numeric with {n_unique} distinct values"
    values = y.to_numpy(dtype=float)
    is_integral = bool(np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0))
    if is_integral and n_unique <= MAX_MULTICLASS_INT_LEVELS and n_unique <= max(3, 0.05 * len(y)):
        return ProblemType.MULTICLASS, (
            f"the target holds {n_unique} distinct integer values (<= {MAX_MULTICLASS_INT_LEVELS}), "
            "which looks like class labels"
        )
    kind = "integer" if is_integral else "floating-point"
    return ProblemType.REGRESSION, f"the target is {kind} with {n_unique} distinct values"


def parse_problem_type(value: str | ProblemType) -> ProblemType:
    try:
        return ProblemType(value)
    except ValueError:
        raise ConfigError(
            f"problem_type must be one of {[p.value for p in ProblemType]}; got {value!r}"
        ) from None


def _preview(y: pd.Series) -> str:
    return str(sorted(map(str, y.unique()))[:2])
