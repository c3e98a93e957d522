"""DataProfile: the autopilot's analysis of a table, saved as ``profile.json``.

Per column: kind (with its reason), dtype, missing share, distinct count, summary statistics and
the role the column plays (feature, target, dropped, time, group, weight; the time column is
also a feature). For the table: the
problem type with its reason, the metric, class counts or the target distribution, quality
warnings with what the system does about them, and a baseline for drift monitoring.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import baseline as baseline_mod
from automl import quality
from automl.column_stats import column_stats, target_summary
from automl.exceptions import DataError
from automl.kinds import ColumnKind, infer_kind
from automl.metrics import Metric, resolve_metric
from automl.problem import ProblemType, infer_problem_type, parse_problem_type
from automl.quality import ProfileWarning

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class ColumnProfile:
    name: str
    kind: str
    reason: str
    dtype: str
    missing_share: float
    n_unique: int
    role: str = "feature"  # feature | target | dropped | time | group | weight
    drop_reason: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None  # the fit's column probe verdict (automl.columns)

    @property
    def is_feature(self) -> bool:
        """Model input: a plain feature, or the time column (which orders the split and is expanded
        into date parts like any datetime feature)."""
        return self.role == "feature" or (self.role == "time" and ColumnKind(self.kind).is_feature)


@dataclass
class DataProfile:
    target: str
    n_rows: int
    n_columns: int
    problem_type: str
    problem_type_reason: str
    metric: str
    metric_reason: str
    columns: list[ColumnProfile]
    target_summary: dict[str, Any]
    warnings: list[ProfileWarning]
    n_duplicate_rows: int = 0
    rows_dropped_missing_target: int = 0
    time_column: str | None = None
    group_column: str | None = None
    weight_column: str | None = None
    baseline: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    streaming: dict[str, Any] = field(default_factory=dict)  # streaming mode: exact figures, sampled ones

    # -- views ---------------------------------------------------------------------------------
    @property
    def problem(self) -> ProblemType:
        return ProblemType(self.problem_type)

    @property
    def feature_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.is_feature]

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def dropped_columns(self) -> dict[str, str]:
        return {c.name: c.drop_reason or "" for c in self.columns if c.role == "dropped"}

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataProfile:
        d = dict(d)
        d["columns"] = [ColumnProfile(**c) for c in d["columns"]]
        d["warnings"] = [ProfileWarning(**w) for w in d["warnings"]]
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DataProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_frame(self) -> pd.DataFrame:
        """One row per column: name, role, kind, dtype, missing share, distinct values, why."""
        return pd.DataFrame(
            [
                {
                    "column": c.name,
                    "role": c.role,
                    "kind": c.kind,
                    "dtype": c.dtype,
                    "missing": c.missing_share,
                    "distinct": c.n_unique,
                    "why": _why(c),
                }
                for c in self.columns
            ]
        )

    def summary(self) -> str:
        """A readable report: the table, the target, one line per column, the warnings."""
        lines = [
            f"{self.n_rows:,} rows x {self.n_columns} columns; target {self.target!r}"
            + (
                f" ({self.rows_dropped_missing_target:,} rows without a target dropped)"
                if self.rows_dropped_missing_target
                else ""
            ),
            f"problem type: {self.problem_type} ({self.problem_type_reason})",
            f"metric: {self.metric} ({self.metric_reason})",
            f"target: {_target_line(self.target_summary)}",
            "",
        ]
        frame = self.to_frame()
        frame["missing"] = [("<0.1%" if m < 0.001 else f"{m:.1%}") if m else "-" for m in frame["missing"]]
        lines += _table(frame).splitlines()
        features = [c for c in self.columns if c.is_feature]
        lines += [
            "",
            f"features ({len(features)}): " + ", ".join(f"{c.name}={c.kind}" for c in features),
            "dropped: " + (", ".join(f"{k} ({v})" for k, v in self.dropped_columns.items()) or "none"),
        ]
        lines.append(f"warnings ({len(self.warnings)}):" if self.warnings else "warnings: none")
        for w in self.warnings:
            cols = f" [columns: {', '.join(w.columns)}]" if w.columns else ""
            lines += [f"  - {w.code}: {w.message}{cols}", f"      action: {w.action}"]
        return "\n".join(lines)


def _why(c: ColumnProfile) -> str:
    why = c.reason
    if c.role == "dropped" and c.drop_reason and c.reason not in c.drop_reason:
        why += f"; dropped: {c.drop_reason}"
    elif c.role == "time":
        why += "; orders the time-ordered split (also a feature)"
    elif c.role == "group":
        why += "; keeps its rows in one fold (not a feature)"
    elif c.role == "weight":
        why += "; sample weights (not a feature)"
    return why


def _table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    cells = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    width = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols[:-1])]

    def fmt(row: list[str]) -> str:  # the last column ("why") is not padded
        return "  ".join(v.ljust(width[i]) for i, v in enumerate(row[:-1])) + "  " + row[-1]

    return "\n".join([fmt(cols)] + [fmt(r) for r in cells])


def _target_line(t: dict[str, Any]) -> str:
    if "class_counts" in t:
        total = sum(t["class_counts"].values()) or 1
        shown = list(t["class_counts"].items())[:10]
        more = len(t["class_counts"]) - len(shown)
        counts = ", ".join(f"{k}: {v:,} ({v / total:.1%})" for k, v in shown)
        more_text = f", ... {more} more" if more > 0 else ""
        return f"{counts}{more_text}; imbalance ratio {t['imbalance_ratio']:.1f}"
    q = t.get("quantiles", {})
    return f"mean {t.get('mean', float('nan')):.4g}, std {t.get('std', float('nan')):.4g}, " + ", ".join(
        f"{k} {v:.4g}" for k, v in q.items()
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def prepare_target(df: pd.DataFrame, target: str) -> tuple[pd.DataFrame, int]:
    """Check the target column and drop rows whose target is missing; returns (frame, n_dropped)."""
    if target not in df.columns:
        import difflib

        close = [c for c in df.columns if c.lower() == target.lower()] or difflib.get_close_matches(
            target, list(df.columns), n=1
        )
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"target column {target!r} is not in the table; its columns are {list(df.columns)[:30]}.{hint}"
        )
    if df.shape[1] < 2:
        raise DataError("the table has only the target column; add at least one feature column")
    missing = df[target].isna()
    if missing.all():
        raise DataError(f"target column {target!r} is missing in every row")
    n_dropped = int(missing.sum())
    if n_dropped:
        logger.warning("dropped %d rows whose target %r is missing", n_dropped, target)
        df = df.loc[~missing]
    return df, n_dropped


def profile_table(
    df: pd.DataFrame,
    target: str,
    *,
    problem_type: str | ProblemType | None = None,
    metric: str | Metric | None = None,
    drop_columns: tuple[str, ...] = (),
    time_column: str | None = None,
    group_column: str | None = None,
    weight_column: str | None = None,
    n_folds: int = 5,
    probe_columns: bool = True,
) -> DataProfile:
    """Profile ``df`` for predicting ``target`` (not modified); ``probe_columns``: see quality.check."""
    df, n_dropped = prepare_target(df, target)
    for role, col in (
        ("time_column", time_column),
        ("group_column", group_column),
        ("weight_column", weight_column),
        *(("drop_columns", c) for c in drop_columns),
    ):
        if col is not None and col not in df.columns:
            raise DataError(f"{role} {col!r} is not in the table; its columns are {list(df.columns)[:30]}")
    y = df[target]
    ptype, p_reason = _problem(y, target, problem_type)
    chosen, m_reason = resolve_metric(metric, ptype)
    logger.info("metric %s: %s", chosen.name, m_reason)

    columns = [_profile_column(df[c]) for c in df.columns]
    roles = {target: "target", time_column: "time", group_column: "group", weight_column: "weight"}
    for cp in columns:
        if cp.name in roles:
            cp.role = roles[cp.name]
        elif cp.name in drop_columns:
            cp.role, cp.drop_reason = "dropped", "listed in drop_columns by the user"
        elif not ColumnKind(cp.kind).is_feature:
            cp.role, cp.drop_reason = "dropped", f"{cp.kind}: {cp.reason}"
        _log_kind(cp, df[cp.name])
    if time_column is not None:
        time_cp = next(c for c in columns if c.name == time_column)
        quality.check_time_column(df[time_column], time_cp)
        time_cp.stats = column_stats(df[time_column], ColumnKind(time_cp.kind))
    if group_column is not None:
        quality.check_group_column(df[group_column])
    found = quality.check(
        df, target, ptype, columns, n_folds=n_folds, n_missing_target=n_dropped, probe_columns=probe_columns
    )
    for w in found.warnings:
        logger.warning("%s -> %s", w.message, w.action)
    for cp in columns:
        if cp.name in found.drop:
            cp.role, cp.drop_reason = "dropped", found.drop[cp.name]
        if cp.role == "dropped":
            logger.info("column %r dropped: %s", cp.name, cp.drop_reason)
    features = [c.name for c in columns if c.is_feature]
    if not features:
        raise DataError(
            "no usable feature columns remain after dropping identifiers and constant columns: "
            f"{ {c.name: c.drop_reason for c in columns if c.role == 'dropped'} }"
        )
    return DataProfile(
        target=target,
        n_rows=len(df),
        n_columns=df.shape[1],
        problem_type=ptype.value,
        problem_type_reason=p_reason,
        metric=chosen.name,
        metric_reason=m_reason,
        columns=columns,
        target_summary=target_summary(y, ptype),
        warnings=found.warnings,
        n_duplicate_rows=found.n_duplicates,
        rows_dropped_missing_target=n_dropped,
        time_column=time_column,
        group_column=group_column,
        weight_column=weight_column,
        baseline=baseline_mod.build(df, [c for c in columns if c.is_feature], target, ptype),
    )


def _problem(y: pd.Series, target: str, problem_type: str | ProblemType | None) -> tuple[ProblemType, str]:
    """The problem type (inferred and logged, or the user's, checked against the target)."""
    if problem_type is None:
        ptype, reason = infer_problem_type(y)
        logger.info(
            "problem type %s: %s; pass problem_type= (--problem-type) to override", ptype.value, reason
        )
        return ptype, reason
    ptype = parse_problem_type(problem_type)
    if ptype.is_classification and y.nunique() < 2:
        infer_problem_type(y)  # raises the single-class error
    if ptype is ProblemType.BINARY and y.nunique() != 2:
        raise DataError(f"problem_type='binary' but target {target!r} has {y.nunique()} distinct values")
    if ptype is ProblemType.REGRESSION and not pd.api.types.is_numeric_dtype(y):
        raise DataError(f"problem_type='regression' needs a numeric target; {target!r} holds text")
    return ptype, "given by the user"


def _log_kind(cp: ColumnProfile, s: pd.Series) -> None:
    """An inference beyond the dtype (dates in text, 0/1 flags, codes, keys) is logged at INFO."""
    plain = ColumnKind.NUMERIC.value if pd.api.types.is_numeric_dtype(s) else ColumnKind.CATEGORICAL.value
    level = logging.INFO if cp.kind != plain and cp.role != "target" else logging.DEBUG
    logger.log(level, "column %r is %s: %s", cp.name, cp.kind, cp.reason)


def _profile_column(s: pd.Series) -> ColumnProfile:
    kind, reason = infer_kind(s)
    return ColumnProfile(
        name=str(s.name),
        kind=kind.value,
        reason=reason,
        dtype=str(s.dtype),
        missing_share=round(float(s.isna().mean()), 6),
        n_unique=int(s.nunique()),
        stats=column_stats(s, kind),
    )
