"""Column kind inference: what each column *is*, with the reason, from its values and name."""

from __future__ import annotations

import enum
import re
import warnings

import numpy as np
import pandas as pd


class ColumnKind(str, enum.Enum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    TEXT = "text"
    IDENTIFIER = "identifier"
    CONSTANT = "constant"

    @property
    def is_feature(self) -> bool:
        return self not in (ColumnKind.IDENTIFIER, ColumnKind.CONSTANT)


_ID_NAME = re.compile(
    r"(?i)(^id$|^id[_\-\s]|[_\-\s]id$|^idcode$|[a-z]ID$|uuid|guid|^index$|^unnamed: ?0$"
    r"|^row_?(id|num|number)$)"
)
_CODE_NAME = re.compile(r"(?i:(^|[_\-\s])(code|cd|cat|category)$)|[a-z](Code|Cat|Category)$")
_BOOL_TOKENS = {"0", "1", "true", "false", "yes", "no", "y", "n", "t", "f"}
_DATE_LIKE = re.compile(
    r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?\s*$"
)

#: share of parsable values above which a text column is read as numbers or dates
PARSE_SHARE = 0.95
#: a column whose non-dominant values cover fewer rows than this share (and < 20 rows) is near-constant
NEAR_CONSTANT_SHARE = 0.001
#: integer codes named like a code (``ind_code``) with at most this many levels are categorical
MAX_CODE_LEVELS = 200
#: a text column whose number-like values take at most this many distinct values holds category
#: labels that happen to be digits (car's doors: '2', '3', '4', '5more'), not numbers mixed with text
MIXED_MIN_NUMBER_LEVELS = 10
SAMPLE = 5000


def looks_like_id_name(name: str) -> bool:
    return bool(_ID_NAME.search(name))


def infer_kind(s: pd.Series) -> tuple[ColumnKind, str]:
    """Return ``(kind, reason)`` for one column."""
    n = len(s)
    present = s.dropna()
    if len(present) == 0:
        return ColumnKind.CONSTANT, "every value is missing"
    counts = present.value_counts()
    n_unique = len(counts)
    if n_unique == 1:
        return ColumnKind.CONSTANT, f"a single distinct value ({_short(counts.index[0])})"
    minority = len(present) - int(counts.iloc[0])
    if minority < 20 and minority < NEAR_CONSTANT_SHARE * n:
        return ColumnKind.CONSTANT, (
            f"near-constant: {_short(counts.index[0])} in all but {minority} of {n} rows"
        )
    if pd.api.types.is_bool_dtype(s):
        return ColumnKind.BOOLEAN, "boolean dtype"
    if n_unique == 2 and {_token(v) for v in counts.index} <= _BOOL_TOKENS:
        return ColumnKind.BOOLEAN, f"two values {sorted(map(_token, counts.index))} that read as true/false"
    if pd.api.types.is_datetime64_any_dtype(s):
        return ColumnKind.DATETIME, "datetime dtype"
    if pd.api.types.is_numeric_dtype(s):
        return _numeric_kind(s.name, present, n_unique, n)
    return _text_kind(s.name, present, n_unique, n)


def _numeric_kind(name, present: pd.Series, n_unique: int, n: int) -> tuple[ColumnKind, str]:
    integral = pd.api.types.is_integer_dtype(present) or bool(np.all(np.mod(present.to_numpy(float), 1) == 0))
    if integral:
        if looks_like_id_name(str(name)) and n_unique > 50 and n_unique > 0.01 * n:
            return ColumnKind.IDENTIFIER, (
                f"integer column named like an identifier with {n_unique} distinct values"
            )
        if n_unique == n and n > 50 and (present.is_monotonic_increasing or present.is_monotonic_decreasing):
            return ColumnKind.IDENTIFIER, "a unique, monotonic integer per row (a row number or key)"
        if _CODE_NAME.search(str(name)) and n_unique <= MAX_CODE_LEVELS:
            return ColumnKind.CATEGORICAL, f"integer codes named like a code or category ({n_unique} levels)"
    return ColumnKind.NUMERIC, "numeric dtype"


def _text_kind(name, present: pd.Series, n_unique: int, n: int) -> tuple[ColumnKind, str]:
    sample = present.astype(str).sample(min(SAMPLE, len(present)), random_state=0)
    numeric_share = pd.to_numeric(sample, errors="coerce").notna().mean()
    if numeric_share >= PARSE_SHARE:
        return ColumnKind.NUMERIC, f"text values of which {numeric_share:.0%} parse as numbers"
    date_share = sample.str.match(_DATE_LIKE).mean()
    if date_share >= PARSE_SHARE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().mean() >= PARSE_SHARE:
            return ColumnKind.DATETIME, f"{parsed.notna().mean():.0%} of the values parse as dates"
    unique_share = n_unique / max(len(present), 1)
    mean_words = sample.str.split().str.len().mean()
    if unique_share > 0.5 and mean_words >= 3:
        return (
            ColumnKind.TEXT,
            f"free text: {unique_share:.0%} distinct values, {mean_words:.1f} words on average",
        )
    if unique_share >= 0.95 and n_unique > 50:
        return ColumnKind.IDENTIFIER, f"{unique_share:.0%} of the values are distinct short strings (a key)"
    if looks_like_id_name(str(name)) and n_unique > 50 and unique_share > 0.5:
        return ColumnKind.IDENTIFIER, f"named like an identifier with {n_unique} distinct values"
    return ColumnKind.CATEGORICAL, f"text with {n_unique} distinct values"


def mixed_types(s: pd.Series, min_levels: int = MIXED_MIN_NUMBER_LEVELS) -> tuple[float, str] | None:
    """For a text column that mixes numbers and words: ``(share of numbers, description)``; else None.

    Not mixed: numeric columns, columns without numbers or without words, and columns whose
    numbers take at most ``min_levels`` distinct values (labels such as '2', '3', '4', '5more')."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None
    present = s.dropna().astype(str).str.strip()
    if present.empty:
        return None
    sample = present.sample(min(SAMPLE, len(present)), random_state=0)
    numbers = pd.to_numeric(sample, errors="coerce")
    share = float(numbers.notna().mean())
    n_levels = int(numbers.nunique())
    if share in (0.0, 1.0) or n_levels <= min_levels:
        return None
    words = [_short(v) for v in sample[numbers.isna()].value_counts().index[:3]]
    return share, f"{share:.0%} numbers ({n_levels} distinct) and text such as {', '.join(words)}"


def level_strings(s: pd.Series) -> pd.Series:
    """Values as category labels (string dtype, missing stays missing). Integral numbers lose their
    decimal part (1.0 -> '1'), so a level reads the same whether its column arrives as integers,
    as floats (an integer column with a missing value) or as JSON numbers."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
        return s.astype("string")
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(v) & (np.mod(v, 1) == 0)
        out = s.astype("string")
        out[integral] = v[integral].astype(np.int64).astype(str)
        return out
    return s.map(_level, na_action="ignore").astype("string")


def level_values(s: pd.Series) -> np.ndarray:
    """The labels of :func:`level_strings` as a plain object array (``None`` where missing), without
    pandas' string dtype: the per-request path, where building string Series cost ~0.3 ms per
    column per call."""
    arr = s.to_numpy(dtype=object)
    out = np.full(len(arr), None, dtype=object)
    present = ~pd.isna(arr)
    out[present] = [_level(v) for v in arr[present]]
    return out


#: per level list: level -> 1-based code, and a hash index of the levels (the list is kept so
#: that its id is not reused while cached)
_LOOKUPS: dict[int, tuple[list[str], dict[str, int], pd.Index]] = {}


def level_lookup(levels: list[str]) -> tuple[dict[str, int], pd.Index]:
    """``({level: 1-based code}, pd.Index(levels))`` for a fitted level list, built once per list:
    the request path uses them for codes and for spotting unknown levels."""
    hit = _LOOKUPS.get(id(levels))
    if hit is None or hit[0] is not levels:
        if len(_LOOKUPS) > 4096:
            _LOOKUPS.clear()
        hit = _LOOKUPS[id(levels)] = (
            levels,
            {v: i + 1 for i, v in enumerate(levels)},
            pd.Index(levels, dtype=object),
        )
    return hit[1], hit[2]


def _level(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


#: one present value as its category label (1.0 -> '1'), as :func:`level_values` reads it
level_label = _level


def _token(v) -> str:
    """A value as a true/false token: 1.0 -> '1', ' Yes' -> 'yes'."""
    return _level(v).strip().lower()


def _short(v) -> str:
    text = repr(v.item() if hasattr(v, "item") else v)
    return text if len(text) <= 30 else text[:27] + "..."
