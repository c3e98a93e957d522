"""Drift statistics against the training baseline (``profile.json`` -> ``baseline``).

* Numeric columns: PSI over the baseline's decile bins and a two-sample Kolmogorov-Smirnov test
  against the baseline's value sample.
* Categorical columns: PSI and a chi-squared goodness-of-fit test of the observed level counts
  against the baseline shares, over the baseline's levels plus one bucket for levels it does not
  list (buckets with an expected count under 5 are pooled, as the test requires).

A column *drifts* when both agree: PSI >= ``psi_threshold`` (a large enough change) and the
test's p-value < ``p_value`` (not a sampling accident). Requiring both keeps large samples
from flagging negligible shifts and small samples from flagging noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from automl.exceptions import ConfigError
from automl.kinds import level_strings

#: floor for a bin's share in PSI (an empty bin would make the logarithm infinite)
EPS = 1e-4
#: the smallest expected count per chi-squared bucket
MIN_EXPECTED = 5.0
OTHER = "__other__"


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds of ``automl monitor``.

    Args:
        psi_threshold: PSI at or above which a distribution counts as changed (0.1 slight, 0.2 large).
        p_value: significance level of the KS / chi-squared tests.
        missing_share_delta: a change of the missing share larger than this is a violation.
        new_category_share: a violation when categories unseen in training cover more than this share
            of rows beyond the share the training sample predicts for unseen levels.
        min_rows: below this many rows the drift tests are reported but not flagged.
        check_predictions: compare the prediction distribution with the out-of-fold baseline.
    """

    psi_threshold: float = 0.2
    p_value: float = 0.01
    missing_share_delta: float = 0.1
    new_category_share: float = 0.05
    min_rows: int = 50
    check_predictions: bool = True

    def __post_init__(self) -> None:
        for name in ("psi_threshold", "missing_share_delta", "new_category_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a non-negative number; got {v!r}")
        if (
            isinstance(self.p_value, bool)
            or not isinstance(self.p_value, (int, float))
            or not 0 < self.p_value < 1
        ):
            raise ConfigError(f"p_value must be between 0 and 1 (exclusive); got {self.p_value!r}")
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or self.min_rows < 1:
            raise ConfigError(f"min_rows must be a positive integer; got {self.min_rows!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Population stability index of two share vectors over the same buckets."""
    e = np.clip(np.asarray(expected, dtype=float), EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(base: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """PSI over the baseline bins and a KS test of ``values`` (NaN ignored) against the baseline."""
    v = values[~np.isnan(values)]
    out: dict[str, Any] = {"type": "numeric", "test": "ks", "n": int(len(v))}
    if not len(v) or not base.get("sample"):
        return {**out, "psi": None, "statistic": None, "p_value": None}
    edges = np.asarray(base["edges"], dtype=float)
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    ks = stats.ks_2samp(np.asarray(base["sample"], dtype=float), v)
    return {
        **out,
        "psi": psi(base["shares"], counts / counts.sum()),
        "statistic": float(ks.statistic),
        "p_value": float(ks.pvalue),
        "baseline_mean": base.get("mean"),
        "current_mean": float(v.mean()),
        "baseline_std": base.get("std"),
        "current_std": float(v.std()),
    }


def _pooled(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool buckets (smallest expected first) until each has an expected count >= MIN_EXPECTED."""
    order = np.argsort(expected)
    obs_groups: list[float] = []
    exp_groups: list[float] = []
    o_acc = e_acc = 0.0
    for i in order:
        o_acc += observed[i]
        e_acc += expected[i]
        if e_acc >= MIN_EXPECTED:
            obs_groups.append(o_acc)
            exp_groups.append(e_acc)
            o_acc = e_acc = 0.0
    if e_acc > 0 or o_acc > 0:
        if exp_groups:
            obs_groups[-1] += o_acc
            exp_groups[-1] += e_acc
        else:
            obs_groups.append(o_acc)
            exp_groups.append(e_acc)
    return np.asarray(obs_groups), np.asarray(exp_groups)


def unseen_share(base: dict[str, Any], n_rows: int | None) -> float:
    """The share of rows expected to hold levels absent from the training sample (Good-Turing:
    the share of levels seen exactly once), or the baseline's share of levels beyond its top list."""
    if not n_rows:
        return float(base.get("other_share", 0.0))
    singletons = sum(1 for share in base.get("levels", {}).values() if round(share * n_rows) == 1)
    return max(float(base.get("other_share", 0.0)), singletons / n_rows)


def categorical_drift(
    base: dict[str, Any], values: pd.Series, *, known_levels_complete: bool = True, n_rows: int | None = None
) -> dict[str, Any]:
    """PSI and a chi-squared test over the baseline's levels plus one bucket for all other levels
    (expected share: :func:`unseen_share`); buckets with an expected count under 5 are pooled
    for both. Also the unseen levels and their share of rows."""
    present = level_strings(values.dropna())
    n = len(present)
    out: dict[str, Any] = {"type": "categorical", "test": "chi2", "n": int(n)}
    levels: dict[str, float] = base.get("levels", {})
    if not n or not levels:
        return {**out, "psi": None, "statistic": None, "p_value": None, "new_categories": {}}
    counts = present.value_counts()
    known = counts.index.isin(list(levels))
    expected = np.asarray([*levels.values(), unseen_share(base, n_rows)], dtype=float)
    observed = np.asarray([counts.get(lvl, 0) for lvl in levels] + [counts[~known].sum()], dtype=float)
    exp_counts = np.clip(expected, EPS, None)
    obs_p, exp_p = _pooled(observed, exp_counts / exp_counts.sum() * n)
    if len(obs_p) >= 2:
        chi = stats.chisquare(obs_p, exp_p * obs_p.sum() / exp_p.sum())
        statistic, p = float(chi.statistic), float(chi.pvalue)
    else:
        statistic, p = 0.0, 1.0
    new = {str(k): round(float(c / n), 6) for k, c in counts[~known].items()} if known_levels_complete else {}
    return {
        **out,
        "psi": psi(exp_p / exp_p.sum(), obs_p / n),
        "statistic": statistic,
        "p_value": p,
        "new_categories": dict(sorted(new.items(), key=lambda kv: -kv[1])[:20]),
        "new_category_share": round(sum(new.values()), 6),
        "expected_unseen_share": round(float(expected[-1]), 6),
    }


def compare(
    base: dict[str, Any], values: pd.Series, *, known_levels_complete: bool = True, n_rows: int | None = None
) -> dict[str, Any]:
    """Drift statistics of one column (numeric or categorical, by its baseline's type)."""
    if base.get("type") == "numeric":
        return numeric_drift(base, pd.to_numeric(values, errors="coerce").to_numpy(dtype=float))
    return categorical_drift(base, values, known_levels_complete=known_levels_complete, n_rows=n_rows)


def drifted(result: dict[str, Any], config: MonitorConfig) -> bool:
    """Both PSI and the test agree that the distribution changed (and there are enough rows)."""
    if result.get("psi") is None or result.get("p_value") is None or result.get("n", 0) < config.min_rows:
        return False
    return result["psi"] >= config.psi_threshold and result["p_value"] < config.p_value
