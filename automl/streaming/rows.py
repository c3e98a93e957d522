"""Per-batch helpers every streamed pass shares: the missing-value markers ``load_table`` reads
as missing, and a seeded hash of each row (or of one column) as a number in [0, 1) that does not
depend on how the table is cut into blocks or in which order they are read."""

from __future__ import annotations

import numpy as np
import pandas as pd

from automl.data import EXTRA_MISSING_MARKERS


def clean_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """The batch with the extra missing-value markers ("?") read as missing, as ``load_table``
    does in memory mode (quietly: a streamed pass counts them in its statistics instead)."""
    out = None
    for col in batch.columns:
        s = batch[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            hits = s.astype("string").str.strip().isin(EXTRA_MISSING_MARKERS).fillna(False).to_numpy(bool)
            if hits.any():
                out = batch.copy() if out is None else out
                out[col] = s.mask(hits)
    return batch if out is None else out


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in name order, numbers as float64 and everything else as Python objects, so the
    same row hashes the same whether a block was read as int or float, Arrow or object strings."""
    cols = {}
    for name in sorted(frame.columns):
        s = frame[name]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            cols[name] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(s):
            cols[name] = s.astype("int64", errors="ignore") if not s.isna().any() else s.astype(object)
        else:
            cols[name] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(cols, index=frame.index)


def row_uniform(frame: pd.DataFrame, key: str) -> np.ndarray:
    """A number in [0, 1) per row, from a hash of the row's values keyed by ``key`` (a label and
    the seed): equal rows get equal numbers, and the numbers are uniform over distinct rows."""
    hkey = (key + "0" * 16)[:16]
    h = pd.util.hash_pandas_object(_canonical(frame), index=False, hash_key=hkey).to_numpy(np.uint64)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def split_key(seed: int) -> str:
    return f"split{seed:011d}"[-16:]


def sample_key(seed: int) -> str:
    return f"sampl{seed:011d}"[-16:]
