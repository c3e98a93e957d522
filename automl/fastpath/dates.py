"""Date parts for a few rows on NumPy datetimes: the values of
:func:`automl.preprocessing._date_parts`, without its pandas objects for each call.

Why: a one-row call on bike_sharing (one date column) spent 2.3 ms of its 6.7 ms building the
date parts. ``pd.to_datetime(format="mixed")`` and six ``.dt`` accessors each build Series and
indexes, and that costs the same for one row as for a thousand. Plain ISO dates and datetimes
(the form CSV files, JSON requests and ``str(date)`` give) are parsed here by NumPy. Any other
form of date string, a timezone, a datetime dtype with a timezone, or a batch of more than
:data:`SMALL` rows still goes through pandas, which then costs little per row.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from automl.preprocessing import _date_parts

#: above this many rows pandas' vectorised parsing is cheap per row: the call goes to pandas
SMALL = 256
#: ISO dates and datetimes, with years within datetime64[ns]'s range (1678-2262)
ISO = re.compile(r"(?:1[7-9]|2[01])\d\d-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?)?")
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0, as pandas counts)


def date_parts(s: pd.Series, origin: float | None) -> dict[str, Any]:
    """As :func:`automl.preprocessing._date_parts` (year, month, day, dayofweek, dayofyear, hour,
    elapsed_days: floats, NaN where the date is missing or not a date)."""
    t = _small_iso(s) if origin is not None else None
    return _date_parts(s, origin) if t is None else _parts(t, origin)


def _small_iso(s: pd.Series) -> np.ndarray | None:
    """The column as datetime64[ns] when NumPy reads it as pandas would, else None."""
    if len(s) > SMALL:
        return None
    if pd.api.types.is_datetime64_any_dtype(s):
        return None if getattr(s.dt, "tz", None) is not None else s.to_numpy().astype("datetime64[ns]")
    out = np.empty(len(s), dtype="datetime64[ns]")
    for i, v in enumerate(s.to_numpy(dtype=object)):
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
            out[i] = np.datetime64("NaT")
        elif isinstance(v, str) and ISO.fullmatch(v):
            try:
                out[i] = np.datetime64(v.replace(" ", "T"), "ns")
            except ValueError:  # e.g. 2023-02-30: pandas makes it missing; leave that to pandas
                return None
        else:
            return None
    return out


def _parts(t: np.ndarray, origin: float) -> dict[str, Any]:
    nat = np.isnat(t)
    days = t.astype("datetime64[D]")
    months = t.astype("datetime64[M]")
    years = t.astype("datetime64[Y]")

    def part(values: np.ndarray) -> np.ndarray:
        return np.where(nat, np.nan, values.astype(float))

    seconds = t.astype("datetime64[s]")
    # whole seconds and the rest apart, so a date's value is exact (as pandas' total_seconds gives)
    epoch_s = seconds.astype(np.int64) + (t - seconds).astype(np.int64) / 1e9
    parts: dict[str, Any] = {
        "year": part(years.astype(np.int64) + 1970),
        "month": part(months.astype(np.int64) % 12 + 1),
        "day": part((days - months.astype("datetime64[D]")).astype(np.int64) + 1),
        "dayofweek": part((days.astype(np.int64) + EPOCH_WEEKDAY) % 7),
        "dayofyear": part((days - years.astype("datetime64[D]")).astype(np.int64) + 1),
        "hour": part((t - days.astype(t.dtype)).astype("timedelta64[h]").astype(np.int64)),
    }
    parts["elapsed_days"] = part(epoch_s) / 86400.0 - origin
    parts["_origin"] = origin
    return parts
