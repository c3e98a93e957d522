"""The HTML report of real fits, rendered in headless Chromium: every section is there, every
plot rendered, no console error, no network request; the leaderboard sorts; fairness metrics
are right; a fit writes its report itself and a broken report never fails a fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromium import Browser, ensure_chromium

from automl import AutoML, SearchConfig
from automl.exceptions import DataError
from automl.report import fairness, write_report
from automl.report.explain_sections import explain_rows
from automl.report.html import table
from automl.report.model_sections import fairness_section
from automl.report.rundata import load_run

# Tests on real fits are marked ray and slow (the module's fits take > 20 s on 2 cores).

SECTIONS = ["summary", "leaderboard", "deployment", "data", "evaluation", "explain", "fairness"]
#: a column name that would run script (and ask for the file "x") if the report did not escape it
XSS = "<img src=x onerror=console.error('xss')>"
IMAGES = {
    "binary": {
        "best score over time per family",
        "validation score against one-row latency",
        "class counts",
        "ROC curve",
        "precision-recall curve",
        "confusion matrix",
        "calibration curve",
        "global feature importance",
        "SHAP summary",
        "partial dependence",
        "positive rates",
    },
    "multiclass": {
        "best score over time per family",
        "validation score against one-row latency",
        "class counts",
        "confusion matrix",
        "per-class scores",
        "global feature importance",
        "SHAP summary",
        "partial dependence",
    },
    "regression": {
        "best score over time per family",
        "validation score against one-row latency",
        "target distribution",
        "predicted vs actual",
        "residuals",
        "global feature importance",
        "SHAP summary",
        "partial dependence",
    },
}
#: per image: rendered size and the number of distinct colours of a 64x64 downscale (blank plots have 1)
IMAGE_PROBE = """Promise.all(Array.from(document.images).map(async (im) => {
  await im.decode().catch(() => null);
  const c = document.createElement('canvas'); c.width = 64; c.height = 64;
  const g = c.getContext('2d'); g.drawImage(im, 0, 0, 64, 64);
  const d = g.getImageData(0, 0, 64, 64).data, seen = new Set();
  for (let i = 0; i < d.length; i += 4) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
  const r = im.getBoundingClientRect();
  return {alt: im.alt, w: im.naturalWidth, h: im.naturalHeight, shown: r.width * r.height,
          colours: seen.size};
}))"""


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def browser(chromium):
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def runs(ray_session, binary_df, multiclass_df, regression_df, tmp_path_factory):
    """Real fits: binary (LightGBM + XGBoost, so an ensemble may be chosen), multiclass, regression."""
    root = tmp_path_factory.mktemp("report-runs")
    binary = binary_df.assign(**{XSS: np.random.default_rng(0).normal(size=len(binary_df))})
    plan = {
        "binary": (binary, ("lightgbm", "xgboost"), 2),
        "multiclass": (multiclass_df, ("lightgbm",), 1),
        "regression": (regression_df, ("xgboost",), 1),
    }
    return {
        problem: AutoML(
            target="label",
            search=SearchConfig(max_trials=n, families=fams),
            seed=0,
            output_dir=root / problem,
        ).fit(df)
        for problem, (df, fams, n) in plan.items()
    }


def _render(browser: Browser, path: Path, screenshot: Path) -> tuple:
    page = browser.open(path, screenshot=screenshot)
    assert page.console_errors == [] and page.exceptions == []
    assert page.requests and all(u.startswith(("file:", "data:")) for u in page.requests), page.requests
    sections = browser.evaluate(
        "Array.from(document.querySelectorAll('main > section')).map(s => [s.id, s.innerText.length])"
    )
    assert [s for s, _ in sections] == SECTIONS
    assert all(n > 80 for _, n in sections), sections
    assert browser.evaluate("document.querySelectorAll('p.error').length") == 0
    images = browser.evaluate(IMAGE_PROBE)
    for im in images:
        assert im["w"] > 100 and im["h"] > 100 and im["shown"] > 10_000, im
        assert im["colours"] > 8, f"plot {im['alt']!r} looks blank: {im}"
    assert screenshot.stat().st_size > 50_000
    return page, {im["alt"] for im in images}


def _text(browser: Browser) -> str:
    return browser.evaluate("document.body.innerText")


@pytest.mark.ray
@pytest.mark.slow
def test_a_fit_writes_its_report(runs):
    for run in runs.values():
        assert (run.run_dir_ / "report.html").stat().st_size > 50_000
        info = json.loads((run.run_dir_ / "run.json").read_text())
        assert 0 < info["timings"]["report_s"] < 60


@pytest.mark.ray
@pytest.mark.slow
def test_binary_report_renders_in_chromium(runs, browser):
    run = runs["binary"]
    path = run.report(run.run_dir_ / "report_color.html", sensitive_column="color")
    assert path.exists()
    page, alts = _render(browser, path, run.run_dir_ / "report.png")
    assert alts == IMAGES["binary"]
    text = _text(browser)
    for words in (
        "why the search ended",
        "ROC AUC",
        "PR AUC",
        "F1",
        "Brier score",
        "Per-column SHAP",
        "Partial dependence",
        "DPPL",
        "DI",
        "positive label 'yes'",
        "Deployment options: quality against speed",
        "1-row p50 ms",
        "Pareto front",
        XSS,
    ):
        assert words in text, words
    # every measured deployment option (bagged and refit) is a row of the trade-off table
    board = pd.read_csv(run.run_dir_ / "leaderboard.csv")
    measured = board[board["latency_p50_ms"].notna()]
    assert len(measured) >= 2 and (measured["status"] == "refit").any()
    assert browser.evaluate("document.querySelectorAll('#options tbody tr').length") == len(measured)
    assert measured["pareto"].astype(bool).any()
    # the leaderboard lists every trial and sorts by a clicked column (numbers as numbers)
    board = pd.read_csv(run.run_dir_ / "leaderboard.csv")
    assert browser.evaluate("document.querySelectorAll('#leaderboard tbody tr').length") == len(board)
    col = browser.evaluate(
        "Array.from(document.querySelectorAll('#leaderboard thead th')).findIndex("
        "th => th.textContent === 'score_val')"
    )
    for order in ("asc", "desc"):
        browser.evaluate(f"document.querySelectorAll('#leaderboard thead th')[{col}].click()")
        values = browser.evaluate(
            f"Array.from(document.querySelectorAll('#leaderboard tbody tr')).map("
            f"r => r.cells[{col}].getAttribute('data-v')).filter(v => v !== null).map(Number)"
        )
        assert values == sorted(values, reverse=order == "desc") and len(values) >= 2
    # fairness table: one row per colour, DPPL and DI consistent with the predicted positive rates
    rows = browser.evaluate(
        "Array.from(document.querySelectorAll('#fairness tbody tr')).map("
        "r => Array.from(r.cells).map(c => c.getAttribute('data-v') || c.textContent))"
    )
    head = browser.evaluate(
        "Array.from(document.querySelectorAll('#fairness thead th')).map(h => h.textContent)"
    )
    fair = pd.DataFrame(rows, columns=head)
    assert sorted(fair["group"]) == ["blue", "green", "red"]
    q = fair["predicted_positive_rate"].astype(float).to_numpy()
    n = fair["rows"].astype(float).to_numpy()
    rest = (q * n).sum() - q * n
    q_rest = rest / (n.sum() - n)
    np.testing.assert_allclose(fair["DPPL"].astype(float), q_rest - q, atol=1e-9)
    np.testing.assert_allclose(fair["DI"].astype(float), q / q_rest, rtol=1e-9)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("problem", ["multiclass", "regression"])
def test_multiclass_and_regression_reports_render(runs, browser, problem):
    run = runs[problem]
    _, alts = _render(browser, run.run_dir_ / "report.html", run.run_dir_ / "report.png")  # written by fit
    assert alts == IMAGES[problem]
    text = _text(browser)
    assert "No sensitive column was named" in text
    # bias metrics are for binary problems
    data = load_run(run.run_dir_)
    assert "Not applicable" in fairness_section(data, "color")
    # explanations use a random sample of the validation rows (which are stored in table order)
    assert not explain_rows(data)["__row"].is_monotonic_increasing
    expected = (
        ["balanced accuracy", "Per class", "precision"] if problem == "multiclass" else ["RMSE", "MAE", "R2"]
    )
    assert all(w in text for w in expected)


@pytest.mark.ray
@pytest.mark.slow
def test_explain_contributions_sum_to_the_regression_prediction(runs, regression_df):
    run = runs["regression"]
    rows = regression_df.drop(columns=["label"]).sample(50, random_state=1)
    contrib = run.explain(rows)
    assert list(contrib.columns) == ["x1", "x2", "color", "x3", "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), run.predict(rows), rtol=1e-4, atol=1e-3)


def test_explanations_shrink_to_the_time_left(runs):
    """Near the deadline tree SHAP keeps to its pilot rows (no minimum of 10 dear rows) and no
    partial dependence panel is started (the 60 s bench fits overran by up to 5 s in this section)."""
    import time

    from automl.report import explain_sections as ex
    from automl.report.rundata import load_run

    run = load_run(runs["regression"].run_dir_)
    X = run.features(explain_rows(run))
    roomy, _ = ex.shap_sample(run, X, scale=1.0)
    tight, _ = ex.shap_sample(run, X, scale=1e-6)
    assert len(roomy) >= ex.SHAP_MIN_ROWS and len(tight) == ex.SHAP_PILOT_ROWS < ex.SHAP_MIN_ROWS
    assert ex._time_for_a_panel(run, 0.1)  # no deadline: always
    run.deadline = time.time() + 0.5
    assert not ex._time_for_a_panel(run, 0.1)  # 0.1 s of predictions + 0.7 s of drawing > 0.5 s
    run.deadline = time.time() + 30
    assert ex._time_for_a_panel(run, 0.1)
    run.deadline = time.time() + 1.0  # the section itself: written, without partial dependence
    assert "Partial dependence" not in ex.explain_section(run)


@pytest.mark.ray
@pytest.mark.slow
def test_report_command(runs, tmp_path):
    automl = str(Path(sys.executable).parent / "automl")
    run_dir = runs["binary"].run_dir_
    ok = subprocess.run(
        [automl, "report", str(run_dir), "--output", str(tmp_path / "r.html"), "--sensitive-column", "color"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "report written to" in ok.stdout and (tmp_path / "r.html").stat().st_size > 50_000
    bad = subprocess.run(
        [automl, "report", str(run_dir), "--sensitive-column", "label"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        .splitlines()[-1]
        .startswith("error: sensitive column 'label' is not an input column")
    )
    with pytest.raises(DataError, match="is not the directory of a finished fit"):
        write_report(tmp_path)


@pytest.mark.ray
@pytest.mark.slow
def test_a_broken_report_does_not_fail_the_fit(ray_session, binary_df, tmp_path, monkeypatch, caplog):
    import automl.report.build as build

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "build_report", broken)
    run = AutoML(
        target="label", search=SearchConfig(max_trials=1, families=("lightgbm",)), output_dir=tmp_path / "run"
    ).fit(binary_df)
    assert len(run.predict(binary_df.head(3))) == 3
    assert not (run.run_dir_ / "report.html").exists()
    assert "report_s" not in json.loads((run.run_dir_ / "run.json").read_text())["timings"]
    assert any(
        "report could not be written" in r.getMessage() and "disk full" in r.getMessage()
        for r in caplog.records
    )


def test_bias_metrics_by_hand():
    groups = pd.Series(["a"] * 4 + ["b"] * 6, name="g")
    y = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.8, 0.1, 0.9, 0.1, 0.2, 0.7, 0.1, 0.1])
    res = fairness.fairness(groups, y, p, threshold=0.5, positive="yes")
    a, b = (res.table.set_index("group").loc[g] for g in ("a", "b"))
    # a: predicted positive 2/4, recall 1/2, accuracy 2/4; b: predicted positive 2/6, recall 1/3, accuracy 3/6
    assert a["predicted_positive_rate"] == 0.5 and b["predicted_positive_rate"] == pytest.approx(1 / 3)
    assert a["DPPL"] == pytest.approx(1 / 3 - 1 / 2) and b["DPPL"] == pytest.approx(1 / 2 - 1 / 3)
    assert a["DI"] == pytest.approx(0.5 / (1 / 3)) and b["DI"] == pytest.approx((1 / 3) / 0.5)
    assert a["RD"] == pytest.approx(1 / 3 - 1 / 2) and a["AD"] == pytest.approx(0.5 - 0.5)
    assert "DI outside" in b["flags"] and "fewer than 30 rows" in b["flags"]


def test_table_escapes_values():
    html = table(pd.DataFrame({"<th>": ["<script>x</script>"], "n": [1.5]}))
    assert "<script>" not in html and "&lt;script&gt;" in html and 'data-v="1.5"' in html
