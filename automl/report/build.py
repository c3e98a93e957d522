"""``write_report``: assemble the sections into one self-contained HTML file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from automl import layout
from automl.exceptions import AutoMLError, ConfigError
from automl.report import explain_sections, model_sections, sections, tradeoff
from automl.report import html as H
from automl.report.rundata import RunData, load_run

logger = logging.getLogger(__name__)

REPORT_FILE = layout.REPORT

#: seconds a section needs at least; with less time left before the fit's deadline it is left out
#: (explanations shrink to the time they get from there; evaluation takes about 1 s on a loaded
#: 2-core machine; the summary, leaderboard and data sections, well under a second, are always built)
MIN_SECONDS = {"evaluation": 1.5, "explain": 2.5, "fairness": 0.5}
#: (id, title) of every section, in page order
SECTIONS = (
    ("summary", "Run summary"),
    ("leaderboard", "Leaderboard"),
    ("deployment", "Deployment options: quality against speed"),
    ("data", "Data profile"),
    ("evaluation", "Model evaluation"),
    ("explain", "Explainability"),
    ("fairness", "Fairness"),
)


def _check_sensitive(run: RunData, column: str | None) -> None:
    if column is None or run.sample is None:
        return
    if column == run.target or column not in run.sample.columns or str(column).startswith("__"):
        usable = [c for c in run.features(run.sample).columns]
        raise ConfigError(
            f"sensitive column {column!r} is not an input column of this run; choose one of {usable}"
        )


@dataclass
class ReportResult:
    path: Path
    skipped: list[str] = field(default_factory=list)  # sections left out for time


def write_report(
    run_dir: str | Path, output: str | Path | None = None, *, sensitive_column: str | None = None
) -> Path:
    """Write the HTML report of a finished fit; returns its path (default ``run_dir/report.html``).

    A section that cannot be built shows the error in its place (and logs a warning); the other
    sections are still written. Build times per section are logged at INFO level.
    """
    return build_report(run_dir, output, sensitive_column=sensitive_column).path


def build_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    sensitive_column: str | None = None,
    deadline: float | None = None,
) -> ReportResult:
    """:func:`write_report`, done by ``deadline`` (a ``time.time()`` value; the fit passes its
    end): the explanations shrink to the time left, and a section that needs more than is left
    (``MIN_SECONDS``) is replaced by a note naming it (``ReportResult.skipped``)."""
    started = time.perf_counter()
    run = load_run(run_dir)
    run.deadline = deadline
    _check_sensitive(run, sensitive_column)
    builders: dict[str, Callable[[RunData], str]] = {
        "summary": sections.summary,
        "leaderboard": sections.leaderboard,
        "deployment": tradeoff.tradeoff_section,
        "data": sections.profile,
        "evaluation": model_sections.evaluation_section,
        "explain": explain_sections.explain_section,
        "fairness": lambda r: model_sections.fairness_section(r, sensitive_column),
    }
    parts, timings, skipped = [], {}, []
    for sid, title in SECTIONS:
        t = time.perf_counter()
        left = None if deadline is None else deadline - time.time()
        if left is not None and sid in MIN_SECONDS and left < MIN_SECONDS[sid]:
            skipped.append(sid)
            body = H.note(
                f"Left out: {max(0.0, left):.1f} s were left before the fit's time limit. "
                f"`automl report {run.run_dir}` builds the whole report."
            )
        else:
            body = _section(builders[sid], run, sid)
        timings[sid] = time.perf_counter() - t
        parts.append((sid, title, body))
    took = time.perf_counter() - started
    footer = H.note(
        f"Report built in {took:.1f} s ("
        + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        + f") from {run.run_dir.resolve()}."
        + (f" Left out for time: {', '.join(skipped)}." if skipped else "")
    )
    parts[-1] = (parts[-1][0], parts[-1][1], parts[-1][2] + footer)
    subtitle = (
        f"{run.problem_type} problem, target {run.target!r}, metric {run.metric}; chosen model "
        f"{run.info.get('chosen', '?')}; model version "
        f"{run.predictor.model_version if run.predictor else '?'}"
    )
    out = Path(output) if output else run.run_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(H.page(f"AutoML report: {run.target}", subtitle, parts), encoding="utf-8")
    logger.info(
        "report written to %s in %.1fs (%s)",
        out,
        took,
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    return ReportResult(out, skipped)


def _section(build: Callable[[RunData], str], run: RunData, sid: str) -> str:
    try:
        return build(run)
    except AutoMLError:
        raise
    except Exception as exc:  # one broken section must not lose the rest of the report
        logger.warning("report section %r could not be built: %s", sid, exc, exc_info=True)
        return H.note(f"This section could not be built: {type(exc).__name__}: {exc}", kind="error")
