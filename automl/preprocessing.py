"""Preprocessing recipes whose fitted state is plain data (JSON-serialisable dicts).

Recipes:
- ``tree``: numbers as they are (missing stays NaN, handled natively), categories as integer
  codes for native categorical handling, dates expanded into parts, text as hashed word counts.
- ``linear``: numbers imputed with the median plus a missing indicator and standardised;
  categories one-hot encoded; rare levels grouped.
- ``nn``: numbers as for ``linear``; categories as embedding indices.

Category codes: 0 = missing, 1..m = the levels kept in training, m+1 = rare or unseen.

A column whose ``ColumnSpec.encoding`` is ``target`` or ``frequency`` (chosen by the fit's column
probe) enters every recipe as numbers: its levels' target or frequency encoding
(:mod:`automl.encoders`), standardised in the ``linear`` and ``nn`` recipes.
"""

from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.encoders import EncodingTarget, encode, fit_step
from automl.exceptions import ConfigError
from automl.kinds import ColumnKind, level_lookup, level_strings, level_values
from automl.schema import ColumnSpec

RECIPES = ("tree", "linear", "nn")
DATE_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "elapsed_days")
_TOKEN = re.compile(r"[a-z0-9]+")

#: per recipe: max levels kept per categorical column, min rows per kept level, text hash buckets
LIMITS = {
    "tree": {"max_levels": 255, "min_count": 5, "text_buckets": 32},
    "linear": {"max_levels": 40, "min_count": 10, "text_buckets": 128},
    "nn": {"max_levels": 500, "min_count": 5, "text_buckets": 64},
}


@dataclass
class FeatureMatrix:
    """Model input: float features and integer category codes (0 = missing, m+1 = rare/unseen)."""

    num: np.ndarray
    cat: np.ndarray
    num_names: list[str]
    cat_names: list[str]
    cat_sizes: list[int]

    def __len__(self) -> int:
        return self.num.shape[0] if self.num.size or not self.cat.size else self.cat.shape[0]

    @property
    def n_rows(self) -> int:
        return max(self.num.shape[0], self.cat.shape[0])

    def take(self, idx: np.ndarray) -> FeatureMatrix:
        return FeatureMatrix(self.num[idx], self.cat[idx], self.num_names, self.cat_names, self.cat_sizes)

    def dense(self) -> np.ndarray:
        """All features as one float32 matrix: numbers first, then codes as floats (trees)."""
        return np.hstack([self.num, self.cat.astype(np.float32)]) if self.cat.size else self.num

    @property
    def names(self) -> list[str]:
        return self.num_names + self.cat_names


class Preprocessor:
    """Fit on a training frame, transform any frame with the same columns (see ``automl.schema``)."""

    def __init__(self, recipe: str, columns: list[ColumnSpec]) -> None:
        if recipe not in RECIPES:
            raise ConfigError(f"recipe must be one of {list(RECIPES)}; got {recipe!r}")
        self.recipe = recipe
        self.columns = columns
        self.steps_: list[dict[str, Any]] | None = None

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, target: EncodingTarget | None = None) -> Preprocessor:
        """Fit on ``df``; ``target`` (the training rows' encoded target) is needed only when a
        column is target-encoded."""
        lim = LIMITS[self.recipe]
        steps = []
        for spec in self.columns:
            s = df[spec.name]
            kind = ColumnKind(spec.kind)
            if spec.encoding is not None:
                step = fit_step(spec.encoding, spec.name, s, target)
                values = encode(step, s)
                step["scale"] = [_fit_numeric(values[:, j]) for j in range(values.shape[1])]
                steps.append(step)
            elif kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                steps.append(
                    _fit_levels(
                        spec.name,
                        s,
                        lim["max_levels"],
                        lim["min_count"] if kind is ColumnKind.CATEGORICAL else 1,
                    )
                )
            elif kind is ColumnKind.DATETIME:
                parts = _date_parts(s, None)
                origin = parts.pop("_origin")
                steps.append(
                    {
                        "type": "datetime",
                        "name": spec.name,
                        "origin": origin,
                        "parts": {k: _fit_numeric(v) for k, v in parts.items()},
                    }
                )
            elif kind is ColumnKind.TEXT:
                counts = _hash_text(s, lim["text_buckets"])
                steps.append(
                    {
                        "type": "text",
                        "name": spec.name,
                        "buckets": lim["text_buckets"],
                        "scale": float(max(np.log1p(counts).std(), 1e-6)),
                    }
                )
            else:
                steps.append(
                    {"type": "numeric", "name": spec.name, **_fit_numeric(pd.to_numeric(s, errors="coerce"))}
                )
        self.steps_ = steps
        return self

    # -- transforming -----------------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> FeatureMatrix:
        if self.steps_ is None:
            from automl.exceptions import NotFittedError

            raise NotFittedError("this Preprocessor is not fitted yet; call fit() first")
        nums: list[np.ndarray] = []
        num_names: list[str] = []
        cats: list[np.ndarray] = []
        cat_names: list[str] = []
        cat_sizes: list[int] = []
        scaled = self.recipe != "tree"
        for st in self.steps_:
            s = df[st["name"]]
            if st["type"] == "levels":
                codes = _codes(s, st["levels"])
                size = len(st["levels"]) + 2
                if self.recipe == "linear":
                    onehot = np.zeros((len(s), size - 1), dtype=np.float32)  # drop the "missing" slot
                    rows = np.nonzero(codes > 0)[0]
                    onehot[rows, codes[rows] - 1] = 1.0
                    nums.append(onehot)
                    num_names += [f"{st['name']}={v}" for v in st["levels"]] + [f"{st['name']}=<rare>"]
                else:
                    cats.append(codes[:, None])
                    cat_names.append(st["name"])
                    cat_sizes.append(size)
            elif st["type"] in ("target_encoding", "frequency"):
                values = encode(st, s)
                for j, name in enumerate(st["outputs"]):
                    cols, _ = _numeric_out(name, values[:, j], {**st["scale"][j], "indicator": False}, scaled)
                    nums += cols
                    num_names.append(name)
            elif st["type"] == "datetime":
                parts = _date_parts(s, st["origin"])
                for part, stats in st["parts"].items():
                    cols, names = _numeric_out(f"{st['name']}.{part}", parts[part], stats, scaled)
                    nums += cols
                    num_names += names
            elif st["type"] == "text":
                counts = np.log1p(_hash_text(s, st["buckets"]))
                nums.append(
                    (counts / st["scale"]).astype(np.float32) if scaled else counts.astype(np.float32)
                )
                num_names += [f"{st['name']}#h{i}" for i in range(st["buckets"])]
            else:
                cols, names = _numeric_out(
                    st["name"], pd.to_numeric(s, errors="coerce").to_numpy(dtype=float), st, scaled
                )
                nums += cols
                num_names += names
        n = len(df)
        num = np.hstack(nums).astype(np.float32) if nums else np.zeros((n, 0), np.float32)
        cat = np.hstack(cats).astype(np.int32) if cats else np.zeros((n, 0), np.int32)
        return FeatureMatrix(num, cat, num_names, cat_names, cat_sizes)

    def fit_transform(self, df: pd.DataFrame, target: EncodingTarget | None = None) -> FeatureMatrix:
        return self.fit(df, target).transform(df)

    # -- plain-data state -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "columns": [vars(c) for c in self.columns], "steps": self.steps_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        pre = cls(d["recipe"], [ColumnSpec(**c) for c in d["columns"]])
        pre.steps_ = d["steps"]
        return pre


def _fit_numeric(v: pd.Series | np.ndarray) -> dict[str, Any]:
    arr = np.asarray(v, dtype=float)
    present = arr[~np.isnan(arr)]
    if len(present) == 0:
        return {"median": 0.0, "mean": 0.0, "std": 1.0, "indicator": True}
    return {
        "median": float(np.median(present)),
        "mean": float(present.mean()),
        "std": float(present.std()) or 1.0,
        "indicator": bool(len(present) < len(arr)),
    }


def _numeric_out(
    name: str, values: np.ndarray, st: dict[str, Any], scaled: bool
) -> tuple[list[np.ndarray], list[str]]:
    values = np.asarray(values, dtype=float)
    if not scaled:
        return [values[:, None]], [name]
    miss = np.isnan(values)
    z = (np.where(miss, st["median"], values) - st["mean"]) / st["std"]
    cols, names = [np.clip(z, -10, 10)[:, None]], [name]
    if st["indicator"]:
        cols.append(miss.astype(float)[:, None])
        names.append(f"{name}<missing>")
    return cols, names


def _fit_levels(name: str, s: pd.Series, max_levels: int, min_count: int) -> dict[str, Any]:
    counts = level_strings(s.dropna()).value_counts()
    kept = counts[counts >= min(min_count, max(1, int(counts.iloc[0]) if len(counts) else 1))].head(
        max_levels
    )
    return {"type": "levels", "name": name, "levels": [str(k) for k in kept.index]}


#: below this many rows a dict lookup per value beats pandas' hash-index call overhead
_SMALL = 256


def _codes(s: pd.Series, levels: list[str]) -> np.ndarray:
    """1-based level codes; 0 for missing, len(levels) + 1 for a level not kept at fit time.
    (Lookups cached per level list: building a Categorical per call cost ~0.4 ms per column per
    one-row request.)"""
    values = level_values(s)
    table, index = level_lookup(levels)
    if len(values) <= _SMALL:
        codes = np.fromiter((table.get(v, 0) for v in values), dtype=np.int32, count=len(values))
    else:
        codes = index.get_indexer(values).astype(np.int32) + 1  # -1 -> 0
    rare = (codes == 0) & (values != None)  # noqa: E711 (element-wise)
    codes[rare] = len(levels) + 1
    return codes


def _date_parts(s: pd.Series, origin: float | None) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = (
            pd.to_datetime(s, errors="coerce", format="mixed")
            if not pd.api.types.is_datetime64_any_dtype(s)
            else s
        )
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    epoch_days = (t - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=float) / 86400.0
    if origin is None:
        present = epoch_days[~np.isnan(epoch_days)]
        origin = float(present.min()) if len(present) else 0.0
    parts: dict[str, Any] = {
        "year": t.dt.year,
        "month": t.dt.month,
        "day": t.dt.day,
        "dayofweek": t.dt.dayofweek,
        "dayofyear": t.dt.dayofyear,
        "hour": t.dt.hour,
    }
    parts = {k: v.to_numpy(dtype=float) for k, v in parts.items()}
    parts["elapsed_days"] = epoch_days - origin
    parts["_origin"] = origin
    return parts


def _hash_text(s: pd.Series, buckets: int) -> np.ndarray:
    out = np.zeros((len(s), buckets), dtype=np.float32)
    for i, text in enumerate(s.astype("string").fillna("").str.lower()):
        for tok in _TOKEN.findall(text):
            out[i, zlib.crc32(tok.encode()) % buckets] += 1.0
    return out
