"""Data-quality checks: each finding is a warning naming the columns and what the system does.

Also the checks of the columns that steer the split (time, group): their problems are errors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from automl.exceptions import DataError
from automl.kinds import MIXED_MIN_NUMBER_LEVELS, ColumnKind, mixed_types
from automl.problem import ProblemType

if TYPE_CHECKING:
    from automl.profile import ColumnProfile

#: missing share above which a column is dropped / flagged
DROP_MISSING_SHARE = 0.95
WARN_MISSING_SHARE = 0.5
HIGH_CARDINALITY = 100
#: an identifier whose values repeat in at least this share of its rows is tested by the fit's
#: column probe (automl.columns) instead of being dropped by rule
MIN_REPEAT_SHARE = 0.3
#: a single column whose binned values predict the target this well (balanced accuracy or R2) is suspect
LEAK_SCORE = 0.98
IMBALANCE_RATIO = 10.0
LEAK_SAMPLE = 20000
#: numbers that often stand for "unknown" or "not applicable" when they sit apart from the other values
SENTINELS = (-1, -9, -99, -999, -9999, 999, 9999, 99999)
SENTINEL_SHARE = 0.01
#: columns with at most this many levels are compared pairwise for one-to-one duplicates
REDUNDANT_MAX_LEVELS = 64


@dataclass
class ProfileWarning:
    code: str
    message: str
    columns: list[str]
    action: str


@dataclass
class QualityReport:
    warnings: list[ProfileWarning] = field(default_factory=list)
    drop: dict[str, str] = field(default_factory=dict)
    n_duplicates: int = 0

    def add(self, code: str, message: str, columns: list[str], action: str) -> None:
        self.warnings.append(ProfileWarning(code, message, columns, action))


def check(
    df: pd.DataFrame,
    target: str,
    ptype: ProblemType,
    columns: list[ColumnProfile],
    *,
    n_folds: int,
    n_missing_target: int = 0,
    probe_columns: bool = True,
) -> QualityReport:
    """Run every check on ``df`` (rows with a missing target already removed). ``probe_columns``:
    the fit tests repeating identifiers and high-cardinality categoricals (automl.columns)."""
    rep = QualityReport()
    if n_missing_target:
        share = n_missing_target / (len(df) + n_missing_target)
        rep.add(
            "missing_target",
            f"{n_missing_target} rows ({share:.1%}) have no value in the target {target!r}",
            [target],
            "dropped: a row without a target cannot be learned from",
        )
    _identifiers(df, columns, probe_columns, rep)
    if consts := _dropped(columns, ColumnKind.CONSTANT):
        rep.add(
            "constant",
            f"constant or near-constant columns {consts}",
            consts,
            "dropped: they cannot help a model",
        )
    _duplicates(df, target, rep)
    features = [c for c in columns if c.is_feature]
    very_missing = [c.name for c in features if c.missing_share > DROP_MISSING_SHARE and c.role == "feature"]
    for name in very_missing:
        rep.drop[name] = f"{df[name].isna().mean():.0%} of the values are missing"
    if very_missing:
        rep.add(
            "very_high_missing",
            f"columns over {DROP_MISSING_SHARE:.0%} missing: {very_missing}",
            very_missing,
            "dropped",
        )
    if high_missing := [
        c.name for c in features if WARN_MISSING_SHARE < c.missing_share <= DROP_MISSING_SHARE
    ]:
        rep.add(
            "high_missing",
            f"columns over {WARN_MISSING_SHARE:.0%} missing: {high_missing}",
            high_missing,
            "kept; missing values are imputed with an indicator column (neural/linear "
            "models) or handled natively (trees)",
        )
    if high_card := [
        c.name for c in features if c.kind == ColumnKind.CATEGORICAL.value and c.n_unique > HIGH_CARDINALITY
    ]:
        rep.add(
            "high_cardinality",
            f"categorical columns with over {HIGH_CARDINALITY} levels: {high_card}",
            high_card,
            "kept; rare levels are grouped into one 'rare' level"
            + ("; the fit's column probe also tests target encoding" if probe_columns else ""),
        )
    kept = [c for c in features if c.name not in rep.drop]
    _mixed(df, kept, rep)
    _sentinels(df, kept, rep)
    _redundant(df, kept, rep)
    if ptype.is_classification:
        _classes(df[target], n_folds, rep)
    if leaks := [c.name for c in kept if _leak_score(df[c.name], df[target], ptype) >= LEAK_SCORE]:
        rep.add(
            "target_leakage",
            f"columns that alone predict the target almost perfectly: {leaks}",
            leaks,
            "kept; if a column is not known at prediction time (it is derived from the target), "
            "drop it with drop_columns",
        )
    return rep


def repeat_share(s: pd.Series) -> float:
    """Share of the non-missing rows whose value occurs in another row too."""
    counts = s.dropna().value_counts()
    n = int(counts.sum())
    return float(counts[counts > 1].sum() / n) if n else 0.0


def check_time_column(s: pd.Series, cp: ColumnProfile) -> None:
    """The time column must be complete and orderable; it stays a (numeric or datetime) feature."""
    name = str(s.name)
    if n_missing := int(s.isna().sum()):
        raise DataError(
            f"time column {name!r} is missing in {n_missing} of {len(s)} rows; a time-ordered "
            "split needs a time for every row: fill or drop those rows, or leave out time_column"
        )
    if s.nunique() < 2:
        raise DataError(
            f"time column {name!r} holds a single value; a time-ordered split needs several distinct times"
        )
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
        if cp.kind not in (ColumnKind.NUMERIC.value, ColumnKind.DATETIME.value):
            cp.reason = f"the time column, read as numbers (was {cp.kind}: {cp.reason})"
            cp.kind = ColumnKind.NUMERIC.value
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(s.astype(str), errors="coerce", format="mixed")
    if len(bad := s[parsed.isna()]):
        raise DataError(
            f"time column {name!r} has values that are neither dates nor numbers, e.g. "
            f"{bad.iloc[0]!r} ({len(bad)} rows); give a date/time or numeric column"
        )
    if cp.kind != ColumnKind.DATETIME.value:
        cp.kind, cp.reason = ColumnKind.DATETIME.value, "the time column; every value parses as a date"


def check_group_column(s: pd.Series) -> None:
    if n_missing := int(s.isna().sum()):
        raise DataError(
            f"group column {str(s.name)!r} is missing in {n_missing} of {len(s)} rows; fill "
            "those rows (e.g. each with its own group) or drop them"
        )
    if s.nunique() < 2:
        raise DataError(f"group column {str(s.name)!r} holds a single group; a grouped split needs several")


def _identifiers(
    df: pd.DataFrame, columns: list[ColumnProfile], probe_columns: bool, rep: QualityReport
) -> None:
    """Dropped identifiers: keys, and (tested by the fit's column probe) ids whose values repeat."""
    ids = _dropped(columns, ColumnKind.IDENTIFIER)
    repeating = [c for c in ids if probe_columns and repeat_share(df[c]) >= MIN_REPEAT_SHARE]
    keys = [c for c in ids if c not in repeating]
    if keys:
        rep.add(
            "identifier",
            f"identifier-like columns {keys}",
            keys,
            "dropped: a key carries no signal that generalises to new rows (give it as group_column "
            "if rows of one key must stay together)",
        )
    if repeating:
        rep.add(
            "identifier",
            f"identifier-like columns {repeating}",
            repeating,
            "their values repeat across rows, so the same entity may sit on both sides of a random "
            "split: dropped unless the fit's column probe finds that validation scores improve with "
            "it (encoded or as a number); "
            "the fit's column decisions say what was chosen (give it as group_column to keep an "
            "entity's rows together instead)",
        )


def _dropped(columns: list[ColumnProfile], kind: ColumnKind) -> list[str]:
    return [c.name for c in columns if c.kind == kind.value and c.role == "dropped"]


def _duplicates(df: pd.DataFrame, target: str, rep: QualityReport) -> None:
    rep.n_duplicates = int(df.duplicated().sum())
    conflicting = int(df.drop(columns=[target]).duplicated().sum()) - rep.n_duplicates
    if rep.n_duplicates:
        rep.add(
            "duplicate_rows",
            f"{rep.n_duplicates} rows ({rep.n_duplicates / len(df):.1%}) duplicate an earlier row",
            [],
            "kept as given; identical rows may sit in both training and validation "
            "folds, which flatters validation scores: deduplicate the table if they are not real repeats",
        )
    if conflicting > 0:
        rep.add(
            "conflicting_duplicates",
            f"{conflicting} rows repeat the features of an earlier row with a different {target!r}",
            [target],
            "kept; they bound the achievable score (label noise or features that are not in the table)",
        )


def _mixed(df: pd.DataFrame, features: list[ColumnProfile], rep: QualityReport) -> None:
    for c in features:
        if c.kind not in (ColumnKind.CATEGORICAL.value, ColumnKind.NUMERIC.value):
            continue
        numeric = c.kind == ColumnKind.NUMERIC.value
        if found := mixed_types(df[c.name], min_levels=0 if numeric else MIXED_MIN_NUMBER_LEVELS):
            rep.add(
                "mixed_types",
                f"column {c.name!r} mixes types: {found[1]}",
                [c.name],
                "kept as numbers; the values that are not numbers are read as missing"
                if numeric
                else "treated as categorical (each distinct number is a level); clean the column if it "
                "should be numeric",
            )


def _sentinels(df: pd.DataFrame, features: list[ColumnProfile], rep: QualityReport) -> None:
    """A frequent -1/999-like value at the edge of an otherwise non-negative / smaller range."""
    for c in features:
        if c.kind != ColumnKind.NUMERIC.value or not pd.api.types.is_numeric_dtype(df[c.name]):
            continue
        s = df[c.name].dropna()
        for v in SENTINELS:
            hits = s == v
            share = float(hits.mean()) if len(s) else 0.0
            rest = s[~hits]
            if share < SENTINEL_SHARE or rest.empty:
                continue
            if (v < 0 and rest.min() >= 0) or (v > 0 and rest.max() < v / 2):
                rep.add(
                    "sentinel_value",
                    f"column {c.name!r}: {share:.1%} of the values are {v}, apart from "
                    f"the others ({rest.min():g} to {rest.max():g}); it may stand for 'unknown' or "
                    "'none'",
                    [c.name],
                    "kept as a number (trees split it off); replace it with a missing value if "
                    "that is what it means, so linear and neural models do not read it as a magnitude",
                )
                break


def _redundant(df: pd.DataFrame, features: list[ColumnProfile], rep: QualityReport) -> None:
    """Pairs of low-cardinality columns that encode the same thing one-to-one (education, education-num)."""
    small = [c.name for c in features if 2 <= c.n_unique <= REDUNDANT_MAX_LEVELS]
    codes = {n: pd.factorize(df[n])[0].astype(np.int64) for n in small}  # missing -> -1, a level of its own
    levels = {n: len(np.unique(v)) for n, v in codes.items()}
    for a, b in combinations(small, 2):
        if levels[a] == levels[b] and len(np.unique(codes[a] * (levels[b] + 1) + codes[b])) == levels[a]:
            rep.add(
                "redundant_columns",
                f"columns {a!r} and {b!r} encode the same information one-to-one",
                [a, b],
                "kept; models are unaffected, but importances are split between the two: drop "
                "one with drop_columns for clearer explanations",
            )


def _classes(y: pd.Series, n_folds: int, rep: QualityReport) -> None:
    counts = y.value_counts()
    if rare := [str(k) for k, v in counts.items() if v < n_folds]:
        rep.add(
            "rare_classes",
            f"classes with fewer rows than the {n_folds} folds: {rare}",
            [str(y.name)],
            "kept; stratified folds cannot place them in every fold, so their validation scores are noisy",
        )
    ratio = counts.iloc[0] / counts.iloc[-1]
    if ratio >= IMBALANCE_RATIO:
        rep.add(
            "class_imbalance",
            f"the largest class is {ratio:.1f}x the smallest",
            [str(y.name)],
            "kept; consider metric='balanced_accuracy' or 'roc_auc' and class_weight='balanced'",
        )


def _codes(x: pd.Series, bins: int = 32) -> np.ndarray:
    """Discretise a column into at most ~``bins * 2`` integer codes (missing: -2, other levels: -1)."""
    if pd.api.types.is_numeric_dtype(x) and x.nunique() > bins:
        ranks = x.rank(method="average", pct=True).to_numpy(dtype=float)
        return np.where(np.isnan(ranks), -2, np.floor(ranks * bins)).astype(np.int64)
    codes, levels = pd.factorize(x, use_na_sentinel=True)  # missing -> -1
    codes = codes.astype(np.int64)
    if len(levels) > bins * 2:  # keep the most frequent levels, the rest share one code
        keep = np.argsort(-np.bincount(codes[codes >= 0], minlength=len(levels)), kind="stable")[: bins * 2]
        remap = np.full(len(levels), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        return np.where(codes >= 0, remap[np.maximum(codes, 0)], -2)
    return np.where(codes >= 0, codes, -2)


def _leak_score(x: pd.Series, y: pd.Series, ptype: ProblemType) -> float:
    """Out-of-sample score of predicting y from the binned column alone (balanced accuracy or R2)."""
    if len(x) < 40:
        return 0.0
    if len(x) > LEAK_SAMPLE:
        idx = x.sample(LEAK_SAMPLE, random_state=0).index
        x, y = x.loc[idx], y.loc[idx]
    codes = _codes(x)
    rng = np.random.default_rng(0)
    half = rng.random(len(codes)) < 0.5
    frame = pd.DataFrame({"c": codes, "y": y.to_numpy()})
    fit, ev = frame[half], frame[~half]
    if ptype.is_classification:
        mapping = fit.groupby("c")["y"].agg(lambda s: s.value_counts().index[0])
        fallback = fit["y"].value_counts().index[0]
        pred = ev["c"].map(mapping).fillna(fallback)
        recalls = [(pred[ev["y"] == k] == k).mean() for k in ev["y"].unique()]
        return float(np.mean(recalls))
    yv = pd.to_numeric(fit["y"], errors="coerce")
    mapping = yv.groupby(fit["c"]).mean()
    pred = ev["c"].map(mapping).fillna(yv.mean()).to_numpy(dtype=float)
    actual = pd.to_numeric(ev["y"], errors="coerce").to_numpy(dtype=float)
    ss = ((actual - actual.mean()) ** 2).sum()
    return float(1 - ((actual - pred) ** 2).sum() / ss) if ss > 0 else 0.0
