"""Reports of a finished fit: one self-contained HTML page (run summary, sortable leaderboard,
data profile, evaluation plots, explanations, fairness) and per-row feature contributions.

Importing this package is cheap (the CLI loads it); matplotlib and the model libraries are
imported when a report is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from automl.predictor import Predictor


def write_report(
    run_dir: str | Path, output: str | Path | None = None, *, sensitive_column: str | None = None
) -> Path:
    """Write ``run_dir/report.html`` (or ``output``) and return its path; see
    :func:`automl.report.build.write_report`."""
    from automl.report.build import write_report as _write

    return _write(run_dir, output, sensitive_column=sensitive_column)


def explain(predictor: Predictor, df: pd.DataFrame, *, class_label: Any = None) -> pd.DataFrame:
    """Per-row contributions (tree SHAP, margin space) per input column plus ``bias``; see
    :func:`automl.report.contributions.explain`."""
    from automl.report.contributions import explain as _explain

    return _explain(predictor, df, class_label=class_label)


__all__ = ["write_report", "explain"]
