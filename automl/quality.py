"""Data-quality checks: each finding is a warning naming the columns and what the system does."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from automl.kinds import ColumnKind, mixed_type_share
from automl.problem import ProblemType

if TYPE_CHECKING:
    from automl.profile import ColumnProfile, ProfileWarning

#: missing share above which a column is dropped / flagged
DROP_MISSING_SHARE = 0.95
WARN_MISSING_SHARE = 0.5
HIGH_CARDINALITY = 100
#: a single column whose binned values predict the target this well (balanced accuracy or R2) is suspect
LEAK_SCORE = 0.98
IMBALANCE_RATIO = 10.0
LEAK_SAMPLE = 20000


@dataclass
class QualityReport:
    warnings: list["ProfileWarning"] = field(default_factory=list)
    drop: dict[str, str] = field(default_factory=dict)
    n_duplicates: int = 0


def check(df: pd.DataFrame, target: str, ptype: ProblemType, columns: list["ColumnProfile"],
          *, n_folds: int) -> QualityReport:
    from automl.profile import ProfileWarning as W

    rep = QualityReport()
    by_kind = lambda k: [c.name for c in columns if c.kind == k.value and c.role == "dropped"]  # noqa: E731
    ids, consts = by_kind(ColumnKind.IDENTIFIER), by_kind(ColumnKind.CONSTANT)
    if ids:
        rep.warnings.append(W("identifier", f"identifier-like columns {ids}", ids,
                              "dropped: a key carries no signal that generalises to new rows"))
    if consts:
        rep.warnings.append(W("constant", f"constant or near-constant columns {consts}", consts,
                              "dropped: they cannot help a model"))
    rep.n_duplicates = int(df.duplicated().sum())
    if rep.n_duplicates:
        rep.warnings.append(W(
            "duplicate_rows", f"{rep.n_duplicates} rows ({rep.n_duplicates / len(df):.1%}) duplicate an earlier row",
            [], "kept as given; identical rows may sit in both training and validation folds, "
                "which flatters validation scores: deduplicate the table if they are not real repeats"))
    features = [c for c in columns if c.is_feature]
    very_missing = [c.name for c in features if c.missing_share > DROP_MISSING_SHARE]
    for name in very_missing:
        rep.drop[name] = f"{df[name].isna().mean():.0%} of the values are missing"
    if very_missing:
        rep.warnings.append(W("very_high_missing", f"columns over {DROP_MISSING_SHARE:.0%} missing: {very_missing}",
                              very_missing, "dropped"))
    high_missing = [c.name for c in features if WARN_MISSING_SHARE < c.missing_share <= DROP_MISSING_SHARE]
    if high_missing:
        rep.warnings.append(W("high_missing", f"columns over {WARN_MISSING_SHARE:.0%} missing: {high_missing}",
                              high_missing, "kept; missing values are imputed with an indicator column "
                                            "(neural/linear models) or handled natively (trees)"))
    high_card = [c.name for c in features if c.kind == ColumnKind.CATEGORICAL.value and c.n_unique > HIGH_CARDINALITY]
    if high_card:
        rep.warnings.append(W("high_cardinality", f"categorical columns with over {HIGH_CARDINALITY} levels: {high_card}",
                              high_card, "kept; rare levels are grouped into one 'rare' level"))
    mixed = [c.name for c in features if c.kind == ColumnKind.CATEGORICAL.value
             and 0.05 <= mixed_type_share(df[c.name]) < 0.95]
    if mixed:
        rep.warnings.append(W("mixed_types", f"columns mixing numbers and text: {mixed}", mixed,
                              "treated as categorical; clean the column if it should be numeric"))
    if ptype.is_classification:
        counts = df[target].value_counts()
        rare = [str(k) for k, v in counts.items() if v < n_folds]
        if rare:
            rep.warnings.append(W(
                "rare_classes", f"classes with fewer rows than the {n_folds} folds: {rare}", [target],
                "kept; stratified folds cannot place them in every fold, so their validation scores are noisy"))
        ratio = counts.iloc[0] / counts.iloc[-1]
        if ratio >= IMBALANCE_RATIO:
            rep.warnings.append(W(
                "class_imbalance", f"the largest class is {ratio:.1f}x the smallest", [target],
                "kept; consider metric='balanced_accuracy' or 'roc_auc' and class_weight='balanced'"))
    leaks = [c.name for c in features if c.name not in rep.drop and _leak_score(df[c.name], df[target], ptype) >= LEAK_SCORE]
    if leaks:
        rep.warnings.append(W(
            "target_leakage", f"columns that alone predict the target almost perfectly: {leaks}", leaks,
            "kept; if a column is not known at prediction time (it is derived from the target), "
            "drop it with drop_columns"))
    return rep


def _codes(x: pd.Series, bins: int = 32) -> np.ndarray:
    """Discretise a column into at most ~``bins`` integer codes (missing gets its own code)."""
    if pd.api.types.is_numeric_dtype(x) and x.nunique() > bins:
        ranks = x.rank(method="average", pct=True)
        codes = np.floor(ranks.to_numpy(dtype=float) * bins)
    else:
        top = x.astype("string").value_counts().index[: bins * 2]
        codes = pd.Categorical(x.astype("string"), categories=top).codes.astype(float)
        codes[codes < 0] = np.nan if x.isna().all() else -1
    codes = np.where(np.isnan(codes), -2, codes)
    return codes.astype(np.int64)


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
