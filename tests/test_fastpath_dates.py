"""The predict path's cheap forms for a few rows: date parts on NumPy datetimes and a frame's
NumPy columns read as arrays. Each must give exactly what the pandas forms give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.fastpath.columns import _frame_columns
from automl.fastpath.dates import SMALL, _small_iso, date_parts
from automl.preprocessing import _date_parts

CASES = {
    "dates": (pd.Series(["2012-10-15", "2011-01-01", None, "1969-12-31", "2000-02-29"]), True),
    "datetimes": (
        pd.Series(["2012-10-15 10:30", "2012-10-15T23:59:59.5", np.nan, "1801-03-04 01:02:03"]),
        True,
    ),
    "datetime_dtype": (pd.Series(pd.to_datetime(["2012-10-15 10:30", None, "1960-05-06 00:00"])), True),
    "all_missing": (pd.Series([None, None], dtype=object), True),
    "other_forms": (pd.Series(["15/10/2012", "2012-10-15"]), False),
    "not_a_day": (pd.Series(["2023-02-30", "2012-10-15"]), False),
    "padded": (pd.Series([" 2012-10-15"]), False),
    "out_of_range_year": (pd.Series(["0999-01-01"]), False),
    "timezone": (pd.Series(pd.to_datetime(["2012-10-15 10:30+02:00"], utc=True)), False),
    "many_rows": (pd.Series(["2012-10-15"] * (SMALL + 1)), False),
}


@pytest.mark.parametrize("name", CASES)
def test_date_parts_equal_the_pandas_ones(name):
    s, numpy_path = CASES[name]
    assert (_small_iso(s) is not None) == numpy_path  # the forms NumPy reads, and only those
    got, want = date_parts(s, 15000.25), _date_parts(s, 15000.25)
    assert got.keys() == want.keys()
    for part in want:
        np.testing.assert_array_equal(got[part], want[part], err_msg=part)


def test_a_frame_gives_numpy_columns_as_arrays_and_the_others_as_series():
    df = pd.DataFrame(
        {
            "i": [1, 2],
            "f": [0.5, np.nan],
            "o": ["a", None],
            "cat": pd.Categorical(["x", "y"]),
            "n": pd.array([1, None], dtype="Int64"),
            "s": pd.array(["a", "b"], dtype="string"),
        }
    )
    get = _frame_columns(df)
    for name in ("i", "f"):
        assert isinstance(get(name), np.ndarray)
        np.testing.assert_array_equal(get(name), df[name].to_numpy())
    for name in ("cat", "n"):
        assert isinstance(get(name), pd.Series)
    for name in ("o", "s"):  # strings (object, "string" or pandas 3's "str"): what Series.to_numpy gives
        got = get(name)
        assert isinstance(got, np.ndarray) and got.dtype == object
        assert got[0] == "a" and pd.isna(got[1]) == pd.isna(df[name].iloc[1])
    long = pd.concat([df] * 200, ignore_index=True)  # more than SMALL rows: strings take the Arrow path
    assert isinstance(_frame_columns(long)("s"), pd.Series)
