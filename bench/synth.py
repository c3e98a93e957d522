"""A seeded synthetic binary table with known signal, written as Parquet shards one at a time (never
the whole table in memory), for the big-data bench (issue 15).

Columns: ``num_00``..``num_39`` (float32: normal, uniform, log-normal and correlated normal
columns) and ``cat_00``..``cat_09`` (strings, 20 levels of unequal frequency), some with missing
values (:data:`MISSING`); the target ``y`` (0/1) is drawn from ``sigmoid(logit)`` where the logit
(:func:`logit`) uses 9 numeric columns (linear, product, sine, step, log and square terms) and 3
categorical ones (level effects and a level-gated slope); the other 39 columns are noise. Missing
cells are blanked *after* the target is drawn, so the AUC of the true probability on the test set
(``oracle_auc`` in ``meta.json``) is an upper bound no model reaches.

Rows are a function of (seed, train/test stream, shard index) only: the table of 1M rows is the first
shards of the 10M one, so the sizes share their shard files (hard links) and a partial last shard is
a prefix of the full one. The function itself (effects, levels) is fixed and does not depend on
the seed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

GENERATOR_VERSION = 1
TARGET = "y"
N_NUMERIC, N_CATEGORICAL, N_LEVELS = 40, 10, 20
NUMERIC = tuple(f"num_{j:02d}" for j in range(N_NUMERIC))
CATEGORICAL = tuple(f"cat_{j:02d}" for j in range(N_CATEGORICAL))
#: the levels of cat_j: "a00".."a19" for cat_00, "b00".. for cat_01, ...
LEVELS = {c: tuple(f"{chr(97 + j)}{k:02d}" for k in range(N_LEVELS)) for j, c in enumerate(CATEGORICAL)}
#: share of missing cells per column (signal columns num_01 and cat_01 included)
MISSING = {
    "num_01": 0.05,
    "num_09": 0.10,
    "num_14": 0.10,
    "num_19": 0.10,
    "num_24": 0.20,
    "num_29": 0.20,
    "num_39": 0.50,
    "cat_01": 0.05,
    "cat_05": 0.10,
    "cat_09": 0.30,
}
SIGNAL = ("num_00", "num_01", "num_02", "num_03", "num_04", "num_05", "num_06", "num_07", "num_08")
SIGNAL += ("cat_00", "cat_01", "cat_02")
#: level frequencies: Zipf-like, the first level about 6x as frequent as the last
_LEVEL_P = 1.0 / np.arange(1, N_LEVELS + 1) ** 0.6
_LEVEL_P /= _LEVEL_P.sum()
#: level effects on the logit, fixed (not seeded by the table's seed: the function is the same)
_EFFECTS = np.random.default_rng(20261202).normal(size=(2, N_LEVELS)) * np.array([[0.8], [0.5]])
INTERCEPT = -1.0
TRAIN, TEST = 0, 1  # the two row streams


@dataclass(frozen=True)
class Shard:
    name: str
    rows: int
    arrow_bytes: int  # in-memory size of the Arrow table (the "table's in-memory size")
    parquet_bytes: int


def _numeric(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    prev = np.ones(rows)
    for j, name in enumerate(NUMERIC):
        kind = j % 4
        if kind == 0:
            x = rng.normal(size=rows)
        elif kind == 1:
            x = rng.uniform(-2.0, 2.0, size=rows)
        elif kind == 2:
            x = rng.lognormal(0.0, 0.75, size=rows)
        else:  # correlated with the log-normal column before
            x = 0.6 * np.log(prev) + 0.8 * rng.normal(size=rows)
        cols[name] = x.astype(np.float32)
        prev = x
    return cols


def logit(num: dict[str, np.ndarray], codes: dict[str, np.ndarray]) -> np.ndarray:
    """The known function: log-odds of ``y = 1`` from the complete (not yet blanked) columns."""
    x = {k: num[k].astype(np.float64) for k in SIGNAL if k.startswith("num")}
    z = (
        INTERCEPT
        + 1.0 * x["num_00"]
        - 0.8 * x["num_01"]
        + 0.6 * x["num_02"] * x["num_03"]
        + 0.9 * np.sin(2.0 * x["num_04"])
        + 0.7 * (x["num_05"] > 0.5)
        - 0.6 * np.log(x["num_06"])
        + 0.4 * x["num_07"] ** 2
        + _EFFECTS[0][codes["cat_00"]]
        + _EFFECTS[1][codes["cat_01"]]
        + 0.8 * x["num_08"] * (codes["cat_02"] < 5)
    )
    return z


def make_block(seed: int, stream: int, index: int, rows: int) -> tuple[Any, np.ndarray]:
    """Shard ``index`` of a stream as a pyarrow Table of ``rows`` rows, and the true P(y=1) of its
    rows. The rows depend on ``rows`` too: a partial shard is a slice of the full one (SynthStore)."""
    import pyarrow as pa

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))
    num = _numeric(rng, rows)
    codes = {c: rng.choice(N_LEVELS, size=rows, p=_LEVEL_P).astype(np.int8) for c in CATEGORICAL}
    p = 1.0 / (1.0 + np.exp(-logit(num, codes)))
    y = (rng.uniform(size=rows) < p).astype(np.int8)
    arrays, names = [], []
    for name in (*NUMERIC, *CATEGORICAL):  # missing cells drawn in a fixed column order
        share = MISSING.get(name, 0.0)
        mask = rng.uniform(size=rows) < share if share else None
        if name in num:
            arrays.append(pa.array(num[name], type=pa.float32(), mask=mask))
        else:
            idx = pa.array(codes[name], type=pa.int8(), mask=mask)
            arrays.append(pa.DictionaryArray.from_arrays(idx, pa.array(LEVELS[name])).dictionary_decode())
        names.append(name)
    arrays.append(pa.array(y))
    names.append(TARGET)
    return pa.table(arrays, names=names), p


def _write(table: Any, path: Path) -> Shard:
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return Shard(path.name, table.num_rows, int(table.nbytes), path.stat().st_size)


def _oracle_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


class SynthStore:
    """The cache of one generated table under ``root``: ``shards/`` (every shard once),
    ``rows_<n>/`` (hard links to the first shards: the table of n rows), ``test.parquet`` and
    ``meta.json`` (what was written, the oracle AUC)."""

    def __init__(self, root: Path, *, seed: int = 0, shard_rows: int = 250_000) -> None:
        if shard_rows <= 0:
            raise ValueError(f"shard_rows must be positive; got {shard_rows}")
        self.root, self.seed, self.shard_rows = Path(root), seed, shard_rows
        self.meta_path = self.root / "meta.json"
        ident = {"version": GENERATOR_VERSION, "seed": seed, "shard_rows": shard_rows}
        meta = self._read_meta()
        if meta.get("ident") != ident:  # another generator or layout: start over
            shutil.rmtree(self.root, ignore_errors=True)
            meta = {"ident": ident, "shards": {}, "tables": {}}
        self.meta = meta
        (self.root / "shards").mkdir(parents=True, exist_ok=True)
        self._save_meta()

    def _read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save_meta(self) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta, indent=1))
        tmp.replace(self.meta_path)

    def _shard(self, index: int, rows: int) -> Shard:
        full = rows == self.shard_rows
        name = f"part-{index:05d}.parquet" if full else f"part-{index:05d}-{rows}.parquet"
        path = self.root / "shards" / name
        known = self.meta["shards"].get(name)
        if known and path.is_file():
            return Shard(**known)
        table, _ = make_block(self.seed, TRAIN, index, self.shard_rows)
        shard = _write(table if full else table.slice(0, rows), path)
        self.meta["shards"][name] = asdict(shard)
        self._save_meta()
        return shard

    def table(self, rows: int) -> dict[str, Any]:
        """Generate (or reuse) the table of ``rows`` rows; returns its description (path, shards,
        bytes in memory and on disk)."""
        if rows <= 0:
            raise ValueError(f"rows must be positive; got {rows}")
        key = str(rows)
        folder = self.root / f"rows_{rows}"
        done = self.meta["tables"].get(key)
        if done and folder.is_dir():
            return done
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shards = []
        for index in range(-(-rows // self.shard_rows)):
            shard = self._shard(index, min(self.shard_rows, rows - index * self.shard_rows))
            _link(self.root / "shards" / shard.name, folder / shard.name)
            shards.append(shard)
        desc = {
            "path": str(folder),
            "rows": rows,
            "shards": len(shards),
            "shard_rows": self.shard_rows,
            "arrow_bytes": sum(s.arrow_bytes for s in shards),
            "parquet_bytes": sum(s.parquet_bytes for s in shards),
            "columns": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL), "target": TARGET},
        }
        self.meta["tables"][key] = desc
        self._save_meta()
        return desc

    def test(self, rows: int = 200_000) -> dict[str, Any]:
        """The fresh test rows (another stream of the same generator) and their oracle AUC."""
        path = self.root / f"test_{rows}.parquet"
        done = self.meta.get("test", {}).get(str(rows))
        if done and path.is_file():
            return done
        table, p = make_block(self.seed, TEST, 0, rows)
        shard = _write(table, path)
        y = table.column(TARGET).to_numpy()
        desc = {
            "path": str(path),
            "rows": rows,
            "arrow_bytes": shard.arrow_bytes,
            "parquet_bytes": shard.parquet_bytes,
            "positive_share": float(y.mean()),
            "oracle_auc": _oracle_auc(y, p),
        }
        self.meta.setdefault("test", {})[str(rows)] = desc
        self._save_meta()
        return desc


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy
        shutil.copyfile(src, dst)


def read_frame(path: str | Path, columns: list[str] | None = None) -> Any:
    """A table (a Parquet file or directory) as pandas with the string columns as categoricals of
    the generator's levels (the same codes in every file), read without ever building Python
    string objects per cell."""
    import pandas as pd
    import pyarrow.parquet as pq

    cats = [c for c in CATEGORICAL if columns is None or c in columns]
    table = pq.read_table(str(path), columns=columns, read_dictionary=cats).unify_dictionaries()
    df = table.to_pandas()
    del table
    for c in cats:
        df[c] = df[c].cat.set_categories(list(LEVELS[c]))
    if TARGET in df:
        df[TARGET] = df[TARGET].astype(np.int8)
    assert all(isinstance(df[c].dtype, pd.CategoricalDtype) for c in cats)
    return df
