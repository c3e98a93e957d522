"""Per-row feature contributions (tree SHAP) of a Predictor, per original input column.

LightGBM and XGBoost models compute exact tree SHAP values natively
(``FittedModel.contributions``) in *margin space* (log-odds for binary, per-class scores for
multiclass, the value for regression). The preprocessing turns some input columns into several
features (datetime parts ``when.year``, one-hot ``color=red``, text hashes ``t#h3``, missing
indicators ``x<missing>``); their contributions are summed back onto the column they came from.

For a bag of fold models the contributions are averaged (they then sum to the mean fold
margin). For an ensemble, each tree member's contributions are weighted by its ensemble weight
(renormalised over the tree members): they sum to the weighted mean of the members' margins,
which is not exactly the margin of the ensemble's averaged probabilities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.exceptions import ConfigError
from automl.predictor import Member, Predictor
from automl.problem import ProblemType
from automl.schema import validate_frame

logger = logging.getLogger(__name__)

#: characters that separate an input column's name from the part a preprocessing step adds
_SEPARATORS = (".", "=", "#", "<")


@dataclass
class Contributions:
    """Tree SHAP values per original column.

    ``values``: (rows, outputs, columns); ``bias``: (rows, outputs); outputs = 1 for binary
    (the positive class's log-odds) and regression, k for multiclass (one margin per class).
    ``coverage``: the share of the ensemble weight held by the members explained.
    """

    columns: list[str]
    values: np.ndarray
    bias: np.ndarray
    coverage: float
    members: list[str]

    def margin(self) -> np.ndarray:
        return self.values.sum(axis=2) + self.bias

    def mean_abs(self) -> np.ndarray:
        """Global importance: mean |SHAP| per output and column, (outputs, columns)."""
        return np.abs(self.values).mean(axis=0)


def column_owners(feature_names: list[str], columns: list[str]) -> list[str]:
    """The input column each model feature comes from: an exact name, else the longest column
    name followed by a separator ("when.year" -> "when", "color=red" -> "color", "t#h3" -> "t")."""
    known = set(columns)
    by_length = sorted(columns, key=len, reverse=True)
    owners = []
    for name in feature_names:
        if name in known:
            owners.append(name)
            continue
        owner = next(
            (c for c in by_length if name.startswith(c) and name[len(c) : len(c) + 1] in _SEPARATORS), None
        )
        if owner is None:
            raise ConfigError(f"model feature {name!r} does not come from any input column of the schema")
        owners.append(owner)
    return owners


def has_contributions(member: Member) -> bool:
    """Tree members whose margins are in the target's own units (a member trained on a
    transformed target explains the transformed scale, which does not add up with the others)."""
    transformed = member.output is not None and member.output.transform.name != "none"
    return not transformed and all(callable(getattr(m, "contributions", None)) for m in member.models)


def _outputs(predictor: Predictor) -> int:
    return len(predictor.classes) if predictor.problem_type is ProblemType.MULTICLASS else 1


def tree_contributions(predictor: Predictor, df: pd.DataFrame) -> Contributions:
    """Tree SHAP of the Predictor's tree members on the rows of ``df`` (original columns)."""
    tree = [m for m in predictor.members if has_contributions(m)]
    if not tree:
        fams = sorted({m.family for m in predictor.members})
        raise ConfigError(
            f"per-row contributions need a tree model (LightGBM or XGBoost); the chosen model "
            f"has only {fams} members. Use the report's permutation importance instead"
        )
    total = sum(m.weight for m in predictor.members)
    tree_weight = sum(m.weight for m in tree)
    if len(tree) < len(predictor.members):
        logger.info(
            "contributions explain the tree members only (%.0f%% of the ensemble weight)",
            100 * tree_weight / total,
        )
    clean, _ = validate_frame(predictor.schema, df)
    columns = [c.name for c in predictor.schema.columns]
    k, n = _outputs(predictor), len(clean)
    values = np.zeros((n, k, len(columns)))
    bias = np.zeros((n, k))
    feats: dict[str, Any] = {}
    for member in tree:
        if member.recipe not in feats:
            feats[member.recipe] = predictor.preprocessors[member.recipe].transform(clean)
        X = feats[member.recipe]
        owners = column_owners(X.names, columns)
        to_cols = np.zeros((len(owners), len(columns)))
        to_cols[np.arange(len(owners)), [columns.index(o) for o in owners]] = 1.0
        raw = sum(
            np.asarray(m.contributions(X), dtype=float).reshape(n, k, len(owners) + 1) for m in member.models
        ) / len(member.models)
        w = member.weight / tree_weight
        values += w * (raw[..., :-1] @ to_cols)
        bias += w * raw[..., -1]
    return Contributions(columns, values, bias, tree_weight / total, [m.name for m in tree])


def explain(predictor: Predictor, df: pd.DataFrame, *, class_label: Any = None) -> pd.DataFrame:
    """Per-row contributions: one column per input column of the model's schema plus ``bias``;
    each row sums to the explained margin (see the module docstring).

    Binary: toward the positive class (``predictor.classes[1]``), in log-odds. Regression: in
    the target's units. Multiclass: toward ``class_label`` when given, else toward each row's
    predicted class (``predictor.predict(df)``). ``DataFrame.attrs["output"]`` says which.
    """
    contrib = tree_contributions(predictor, df)
    if predictor.problem_type is ProblemType.MULTICLASS:
        classes = list(predictor.classes)
        if class_label is not None:
            if class_label not in classes:
                raise ConfigError(
                    f"class_label {class_label!r} is not a class of this model; classes: {classes}"
                )
            idx = np.full(len(df), classes.index(class_label))
            output = f"margin of class {class_label!r}"
        else:
            raw, _ = predictor.predict_raw(df)
            idx = np.asarray(raw).argmax(axis=1)
            output = "margin of each row's predicted class"
        rows = np.arange(len(df))
        vals, bias = contrib.values[rows, idx], contrib.bias[rows, idx]
    else:
        if class_label is not None and class_label != (predictor.classes or [None, None])[1]:
            raise ConfigError(
                f"class_label selects a class of a multiclass model; a "
                f"{predictor.problem_type.value} model is explained toward "
                + (f"its positive class {predictor.classes[1]!r}" if predictor.classes else "its prediction")
                + f"; got class_label={class_label!r}"
            )
        vals, bias = contrib.values[:, 0], contrib.bias[:, 0]
        output = (
            f"log-odds of class {predictor.classes[1]!r}"
            if predictor.problem_type is ProblemType.BINARY
            else f"predicted {predictor.target}"
        )
    out = pd.DataFrame(vals, index=df.index, columns=contrib.columns)
    out["bias"] = bias
    out.attrs["output"] = output
    out.attrs["coverage"] = contrib.coverage
    out.attrs["members"] = contrib.members
    return out
