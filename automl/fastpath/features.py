"""A preprocessing recipe compiled from its plain-data state: the same output as
:meth:`automl.preprocessing.Preprocessor.transform`, written straight into preallocated arrays from
validated columns (:mod:`automl.fastpath.columns`), every numeric column in one vectorised pass
and every categorical column through one lookup table.

The ``tree`` recipe's matrix is allocated as the dense ``[numbers | codes]`` float32 matrix the
tree libraries read, so it is built once per call, not once per model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.encoders import MISSING
from automl.fastpath.columns import Columns, LevelUniverse
from automl.fastpath.dates import date_parts
from automl.models.base import ModelInput
from automl.preprocessing import FeatureMatrix, Preprocessor, _hash_text, _numeric_out

#: preprocessing steps that encode a column's levels as numbers (automl.encoders)
ENCODING_STEPS = ("target_encoding", "frequency")


class RecipePlan:
    """One fitted Preprocessor, compiled; :meth:`transform` takes one call's validated columns."""

    def __init__(self, pre: Preprocessor, universes: dict[str, LevelUniverse]) -> None:
        if pre.steps_ is None:
            raise ValueError("the preprocessor is not fitted")
        self.recipe = pre.recipe
        self.scaled = pre.recipe != "tree"
        self.num_names: list[str] = []
        self.cat_names: list[str] = []
        self.cat_sizes: list[int] = []
        numeric: list[tuple[str, int, int, dict[str, Any]]] = []  # name, position, indicator position
        levels: list[tuple[str, int, np.ndarray]] = []  # name, cat position or one-hot offset, remap
        self.others: list[tuple[dict[str, Any], int]] = []  # datetime and text steps, first position
        #: encoded levels (target / frequency encoding): name, position, value by universe code + 1, scale
        self.encoded: list[tuple[str, int, np.ndarray, dict[str, Any]]] = []
        for st in pre.steps_:
            pos = len(self.num_names)
            if st["type"] == "numeric":
                self.num_names.append(st["name"])
                ind = -1
                if self.scaled and st["indicator"]:
                    ind = pos + 1
                    self.num_names.append(f"{st['name']}<missing>")
                numeric.append((st["name"], pos, ind, st))
            elif st["type"] == "levels":
                remap = _remap(st["levels"], universes[st["name"]])
                if self.recipe == "linear":
                    levels.append((st["name"], pos, remap))
                    self.num_names += [f"{st['name']}={v}" for v in st["levels"]] + [f"{st['name']}=<rare>"]
                else:
                    levels.append((st["name"], len(self.cat_names), remap))
                    self.cat_names.append(st["name"])
                    self.cat_sizes.append(len(st["levels"]) + 2)
            elif st["type"] in ENCODING_STEPS:
                tables = _encoding_tables(st, universes[st["name"]])
                for j, out in enumerate(st["outputs"]):
                    self.encoded.append(
                        (st["name"], pos + j, tables[j], {**st["scale"][j], "indicator": False})
                    )
                    self.num_names.append(out)
            elif st["type"] == "datetime":
                self.others.append((st, pos))
                for part, stats in st["parts"].items():
                    name = f"{st['name']}.{part}"
                    self.num_names += (
                        [name, f"{name}<missing>"] if self.scaled and stats["indicator"] else [name]
                    )
            elif st["type"] == "text":
                self.others.append((st, pos))
                self.num_names += [f"{st['name']}#h{i}" for i in range(st["buckets"])]
            else:
                raise ValueError(f"no compiled form for preprocessing step {st['type']!r}")
        self.n_num, self.n_cat = len(self.num_names), len(self.cat_names)
        self._numeric(numeric)
        self._levels(levels)

    def _numeric(self, numeric: list[tuple[str, int, int, dict[str, Any]]]) -> None:
        self.numeric_names = [n for n, *_ in numeric]
        self.numeric_pos = np.array([p for _, p, _, _ in numeric], dtype=np.intp)
        self.numeric_slice = _as_slice(self.numeric_pos)
        stats = [st for *_, st in numeric]
        self.median = np.array([s.get("median", 0.0) for s in stats], dtype=float)
        self.mean = np.array([s.get("mean", 0.0) for s in stats], dtype=float)
        self.std = np.array([s.get("std", 1.0) for s in stats], dtype=float)
        self.indicator_of = np.array(
            [i for i, (_, _, ind, _) in enumerate(numeric) if ind >= 0], dtype=np.intp
        )
        self.indicator_pos = np.array([ind for _, _, ind, _ in numeric if ind >= 0], dtype=np.intp)

    def _levels(self, levels: list[tuple[str, int, np.ndarray]]) -> None:
        self.level_names = [n for n, _, _ in levels]
        self.level_pos = np.array([p for _, p, _ in levels], dtype=np.intp)
        # one table for all columns: column j's codes are read at offset[j] + universe code + 1
        self.level_offset = np.cumsum([0] + [len(r) for _, _, r in levels[:-1]]).astype(np.intp)
        self.level_table = np.concatenate([r for _, _, r in levels]) if levels else np.zeros(0, np.int32)

    # -- per call -----------------------------------------------------------------------------------
    def transform(self, cols: Columns) -> ModelInput:
        n = cols.n_rows
        tree = self.recipe == "tree"
        dense = np.zeros((n, self.n_num + self.n_cat), dtype=np.float32) if tree else None
        num = dense[:, : self.n_num] if tree else np.zeros((n, self.n_num), dtype=np.float32)
        cat = np.zeros((n, self.n_cat), dtype=np.int32)
        if self.numeric_names:
            self._write_numeric(cols, num)
        if self.level_names:
            u = np.column_stack([cols.values[name] for name in self.level_names])
            codes = self.level_table[u + (self.level_offset + 1)]
            if self.recipe == "linear":  # one-hot, without the "missing" slot
                rows, j = np.nonzero(codes > 0)
                num[rows, self.level_pos[j] + codes[rows, j] - 1] = 1.0
            else:
                cat[:] = codes
                if tree:
                    dense[:, self.n_num :] = codes
        for name, pos, table, scale in self.encoded:
            values = table[cols.values[name] + 1]
            num[:, pos] = _numeric_out(name, values, scale, self.scaled)[0][0][:, 0]
        for st, pos in self.others:
            self._write_other(st, pos, cols.values[st["name"]], num)
        X = FeatureMatrix(num, cat, self.num_names, self.cat_names, self.cat_sizes)
        return ModelInput(X, dense)

    def _write_numeric(self, cols: Columns, num: np.ndarray) -> None:
        v = np.column_stack([cols.values[name] for name in self.numeric_names])
        where = self.numeric_slice if self.numeric_slice is not None else self.numeric_pos
        if not self.scaled:
            num[:, where] = v
            return
        miss = np.isnan(v)
        z = (np.where(miss, self.median, v) - self.mean) / self.std
        num[:, where] = np.clip(z, -10, 10)
        if len(self.indicator_pos):
            num[:, self.indicator_pos] = miss[:, self.indicator_of]

    def _write_other(self, st: dict[str, Any], pos: int, s: Any, num: np.ndarray) -> None:
        if st["type"] == "text":
            counts = np.log1p(_hash_text(s, st["buckets"]))
            num[:, pos : pos + st["buckets"]] = counts / st["scale"] if self.scaled else counts
            return
        parts = date_parts(s, st["origin"])
        for part, stats in st["parts"].items():
            for col, _ in zip(*_numeric_out(f"{st['name']}.{part}", parts[part], stats, self.scaled)):
                num[:, pos] = col[:, 0]
                pos += 1


def _encoding_tables(step: dict[str, Any], universe: LevelUniverse) -> list[np.ndarray]:
    """Per output of an encoding step, its value by universe code + 1 (as
    :func:`automl.encoders.encode`): missing -> the encoding of the missing-value level (the prior
    when training had none), a level the step did not see -> the prior."""
    position = {v: i for i, v in enumerate(step["levels"])}
    where = [position.get(v, -1) for v in universe.levels]
    tables = []
    for vals, prior in zip(step["values"], step["prior"]):
        vals = np.asarray(vals, dtype=float)
        missing = vals[position[MISSING]] if MISSING in position else prior
        known = np.array([vals[i] if i >= 0 else prior for i in where], dtype=float)
        tables.append(np.concatenate([[missing, prior], known]))
    return tables


def _remap(levels: list[str], universe: LevelUniverse) -> np.ndarray:
    """Step codes indexed by universe code + 1: missing -> 0, a level outside the step's kept
    levels -> len(levels) + 1 (rare or unseen), the step's i-th level -> i + 1."""
    rare = len(levels) + 1
    own = {v: i + 1 for i, v in enumerate(levels)}
    return np.array([0, rare] + [own.get(v, rare) for v in universe.levels], dtype=np.int32)


def _as_slice(pos: np.ndarray) -> slice | None:
    """A basic slice when the positions are consecutive (assignment through it is cheaper)."""
    if len(pos) and np.array_equal(pos, np.arange(pos[0], pos[0] + len(pos))):
        return slice(int(pos[0]), int(pos[0]) + len(pos))
    return None
