"""``automl compile``: LightGBM (boosted and rf-mode forests) and XGBoost models compiled with
tl2cgen into a local cache, attached when a Predictor is loaded, used for large calls only, and
never trusted unless their sha256 and their outputs check out. Real gcc, real compiled code."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import predictor_from, trial_data
from test_fastpath import PROBLEMS, rich_frame

from automl import load
from automl.cli import main
from automl.exceptions import CompileError
from automl.inference import reference_predict_raw
from automl.models import compiled as trees
from automl.models import get_family
from automl.models.compiled import COMPILED_ROWS
from automl.training import train_candidate

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="compiling needs gcc on PATH")

#: small models: the test is about the compiled code, not about the models' quality
FAMILIES = {
    "lightgbm": {"n_estimators": 12},
    "xgboost": {"n_estimators": 12},
    "random_forest": {"n_estimators": 10},
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(family, problem) -> (saved Predictor directory, a large batch without the label)."""
    out = {}
    root = tmp_path_factory.mktemp("compiled_models")
    for problem in PROBLEMS:
        df = rich_frame(300, 3, problem)
        data, pre, schema, prof = trial_data(df, "label", n_folds=2)
        big = df.drop(columns=["label"]).iloc[np.arange(COMPILED_ROWS + 200) % len(df)].reset_index(drop=True)
        for name, small in FAMILIES.items():
            family = get_family(name)
            res = train_candidate(family, {**family.portfolio(data.task)[0], **small}, data)
            path = predictor_from(res, data, pre, schema, prof).save(root / f"{name}_{problem}")
            out[(name, problem)] = (path, big)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(trees.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", FAMILIES)
def test_compiled_models_predict_as_their_libraries(saved, cache, name, problem):
    path, big = saved[(name, problem)]
    native = load(path)  # the cache is empty: the libraries' own predict
    assert all(m.compiled is None for m in native.members[0].models)
    results = native.compile(opt_level="O1")
    assert len(results) == 2 and all(r.used and not r.cached and r.trees > 0 for r in results)
    suffix = "model.ubj" if name == "xgboost" else "model.txt"
    assert all(r.model_file.endswith(suffix) for r in results)
    assert all(r.compiled_rows_s > 0 and r.native_rows_s > 0 for r in results)

    compiled = load(path)  # a fresh load finds them in the cache
    assert all(m.compiled is not None for m in compiled.members[0].models)
    ref, _ = reference_predict_raw(load_without_cache(path, cache), big)
    got, _ = compiled.predict_raw(big)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # the unknown categories, missing values and all-missing rows of a batch go the same way
    odd = big.copy()
    odd.loc[odd.index[::3], "color"] = "purple"
    odd.loc[odd.index[::7], ["x1", "x2", "count"]] = np.nan
    ref, _ = reference_predict_raw(load_without_cache(path, cache), odd)
    np.testing.assert_allclose(compiled.predict_raw(odd)[0], ref, rtol=1e-5, atol=1e-6)

    # small calls keep the library's own predict: a compiled library that would be wrong there
    # changes nothing below COMPILED_ROWS
    for m in compiled.members[0].models:
        m.compiled.margins = lambda dense, threads: (_ for _ in ()).throw(AssertionError("used"))
    compiled.predict_raw(big.head(COMPILED_ROWS - 1))
    with pytest.raises(AssertionError, match="used"):
        compiled.predict_raw(big)


def load_without_cache(path, cache):
    """The Predictor as a machine without compiled libraries loads it."""
    import os

    old = os.environ[trees.CACHE_ENV]
    os.environ[trees.CACHE_ENV] = str(cache.parent / "no-cache-here")
    try:
        pred = load(path)
    finally:
        os.environ[trees.CACHE_ENV] = old
    assert all(m.compiled is None for m in pred.members[0].models)
    return pred


def test_a_second_compile_finds_the_cache_and_a_tampered_library_is_not_loaded(saved, cache, caplog):
    path, big = saved[("lightgbm", "binary")]
    pred = load(path)
    first = pred.compile(opt_level="O1")
    o1 = {m.compiled.library.name for m in pred.members[0].models}
    again = load(path).compile(opt_level="O1")
    assert [r.cached for r in again] == [True, True] and all(r.compile_s == 0 for r in again)
    pred = load(path)
    other = pred.compile(opt_level="O2")  # other compiler options: built again
    assert [r.cached for r in other] == [False, False]
    # under another name: this process keeps the O1 libraries it loaded open under theirs
    assert o1.isdisjoint(m.compiled.library.name for m in pred.members[0].models)
    assert all(r.used for r in first + again + other)

    libraries = sorted(cache.glob(f"*/{trees.LIBRARY_GLOB}"))
    assert len(libraries) == 2
    with open(libraries[0], "ab") as f:
        f.write(b"\0")  # the library no longer matches the sha256 recorded when it was built
    with caplog.at_level(logging.WARNING, logger="automl.models.compiled"):
        pred = load(path)
    assert sum(m.compiled is None for m in pred.members[0].models) == 1
    assert "does not match its recorded sha256: not used" in caplog.text
    (libraries[1].parent / trees.BUILD_FILE).write_text("{")  # a half-written record: not used either
    assert all(m.compiled is None for m in load(path).members[0].models)
    # still right: the tampered file's model predicts with LightGBM
    ref, _ = reference_predict_raw(load_without_cache(path, cache), big)
    np.testing.assert_allclose(pred.predict_raw(big)[0], ref, rtol=1e-5, atol=1e-6)


def test_a_library_whose_outputs_differ_is_discarded(saved, cache, monkeypatch):
    path, _ = saved[("xgboost", "regression")]
    real = trees.CompiledTrees.margins
    monkeypatch.setattr(trees.CompiledTrees, "margins", lambda self, d, t: real(self, d, t) + 0.01)
    results = load(path).compile(opt_level="O1")
    assert [r.used for r in results] == [False, False]
    assert all("differ from xgboost's" in r.reason and "discarded" in r.reason for r in results)
    assert not list(cache.glob(f"*/{trees.LIBRARY_GLOB}"))  # nothing left for a later load
    assert all(m.compiled is None for m in load(path).members[0].models)


def test_no_compiler_is_a_clear_error(saved, cache, monkeypatch):
    path, _ = saved[("lightgbm", "regression")]
    monkeypatch.setenv("PATH", str(cache))  # no gcc there
    with pytest.raises(CompileError, match="needs a C compiler, and gcc is not on PATH"):
        load(path).compile()


def test_the_command_compiles_and_reports(saved, cache, capsys, caplog, tmp_path):
    path, big = saved[("random_forest", "multiclass")]
    assert main(["compile", str(path), "--opt-level", "O1"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "model.txt" in line]
    assert len(lines) == 2 and all(" 30 " in line for line in lines)  # 10 rounds x 3 classes, rf mode
    assert str(cache) in out and f"{COMPILED_ROWS} rows or more" in out
    build = json.loads(next(cache.glob(f"*/{trees.BUILD_FILE}")).read_text())
    assert build["options"] == ["-O1"] and build["trees"] == 30 and len(build["library_sha256"]) == 64

    # `automl predict` scores its blocks with the compiled trees, as the libraries would
    big.to_csv(tmp_path / "big.csv", index=False)
    args = ["predict", str(path), str(tmp_path / "big.csv"), "--no-ray", "--proba"]
    with caplog.at_level(logging.INFO, logger="automl.compiling"):
        assert main([*args, "--output", str(tmp_path / "scored.csv")]) == 0
    assert "2 of 2 tree models use compiled libraries" in caplog.text
    scored = pd.read_csv(tmp_path / "scored.csv")
    native = load_without_cache(path, cache)
    ref = native.predict_proba(pd.read_csv(tmp_path / "big.csv"))
    np.testing.assert_allclose(
        scored[[f"proba_{c}" for c in ref.columns]].to_numpy(), ref.to_numpy(), rtol=1e-5
    )


def test_one_model_that_fails_to_compile_does_not_stop_the_others(saved, cache, monkeypatch, capsys):
    import tl2cgen

    path, big = saved[("xgboost", "binary")]
    real, calls = tl2cgen.export_lib, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("gcc: internal compiler error")
        return real(*args, **kwargs)

    monkeypatch.setattr(tl2cgen, "export_lib", first_fails)
    assert main(["compile", str(path), "--opt-level", "O1"]) == 0
    out = capsys.readouterr().out
    assert "could not be compiled: RuntimeError('gcc: internal compiler error')" in out
    pred = load(path)
    assert [m.compiled is None for m in pred.members[0].models] == [True, False]
    ref, _ = reference_predict_raw(load_without_cache(path, cache), big)
    np.testing.assert_allclose(pred.predict_raw(big)[0], ref, rtol=1e-5, atol=1e-6)
