"""Drift monitoring against the training baseline: statistics, capture files and tables, schema
violations, exit codes, and the drift test on adult (ages + 15 flagged on exactly `age`)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from helpers import predictor_from, trial_data

from automl.cli import main as cli_main
from automl.exceptions import ConfigError
from automl.fit import save_validation_sample
from automl.models import get_family
from automl.monitor import MonitorConfig, monitor
from automl.monitor.drift import categorical_drift, numeric_drift, psi
from automl.predictor import Predictor
from automl.splits import make_folds
from automl.training import train_candidate
from serving.capture import CaptureConfig, DataCapture

N_TRAIN = 1000


@pytest.fixture(scope="module")
def adult_model(adult_small, tmp_path_factory):
    """A LightGBM model on the first 1,000 adult rows (built without Ray), with profile.json and
    validation_sample.parquet (out-of-fold predictions), like a run directory."""
    train = adult_small.iloc[:N_TRAIN].reset_index(drop=True)
    data, pre, schema, prof = trial_data(train, "class", recipes=("tree",))
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    out = tmp_path_factory.mktemp("adult") / "model"
    out.mkdir()
    prof.save(out / "profile.json")
    folds = make_folds(len(train), strategy="kfold", n_folds=3, y=data.y, seed=0)  # as trial_data made them
    save_validation_sample(out, train, folds, res.oof, data.classes, seed=0)
    predictor_from(res, data, pre, schema, prof).save(out)  # checksums cover the profile and the sample
    return out


@pytest.fixture(scope="module")
def held_out(adult_small):
    """The 500 adult rows the model never saw, without the target."""
    return adult_small.iloc[N_TRAIN:].drop(columns=["class"]).reset_index(drop=True)


def _capture(model_dir, frame: pd.DataFrame, directory) -> None:
    """Requests of 25 rows, alternately /predict and /predict_proba, recorded as the endpoint does."""
    pred = Predictor.load(model_dir)
    with DataCapture(CaptureConfig(str(directory))) as cap:
        for i, start in enumerate(range(0, len(frame), 25)):
            chunk = frame.iloc[start : start + 25]
            raw, _ = pred.predict_raw(chunk)
            if i % 2 and pred.classes:
                response = {"probabilities": [dict(zip(map(str, pred.classes), p)) for p in raw.tolist()]}
            else:
                response = {"predictions": pred.decode(raw).tolist()}
            cap.record(
                endpoint="predict_proba" if "probabilities" in response else "predict",
                response=response,
                rows=json.loads(chunk.to_json(orient="records")),
                model_version=pred.model_version,
            )


def test_statistics():
    rng = np.random.default_rng(0)
    base_values = rng.normal(size=5000)
    from automl.baseline import level_stats, numeric_stats

    base = numeric_stats(base_values)
    assert psi(base["shares"], base["shares"]) == pytest.approx(0.0)
    same = numeric_drift(base, rng.normal(size=500))
    moved = numeric_drift(base, rng.normal(loc=1.0, size=500))
    assert same["psi"] < 0.1 and same["p_value"] > 0.01
    assert moved["psi"] > 0.5 and moved["p_value"] < 1e-10
    cats = level_stats(pd.Series(rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1], size=5000)))
    ok = categorical_drift(
        cats, pd.Series(rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1], size=500)), n_rows=5000
    )
    bad = categorical_drift(
        cats, pd.Series(rng.choice(["a", "b", "c", "z"], p=[0.2, 0.3, 0.1, 0.4], size=500)), n_rows=5000
    )
    assert ok["psi"] < 0.05 and ok["p_value"] > 0.01 and ok["new_categories"] == {}
    assert bad["psi"] > 0.5 and bad["p_value"] < 1e-10 and 0.35 < bad["new_categories"]["z"] < 0.45
    with pytest.raises(ConfigError, match="p_value must be between 0 and 1"):
        MonitorConfig(p_value=1.5)
    with pytest.raises(ConfigError, match="psi_threshold must be a non-negative number"):
        MonitorConfig(psi_threshold=-1)


def test_drift_test_flags_exactly_the_shifted_feature(adult_model, held_out, tmp_path, capsys):
    """Capture from requests built from adult rows with ages + 15, and from the same rows unshifted."""
    _capture(adult_model, held_out.assign(age=held_out["age"] + 15), tmp_path / "shifted")
    _capture(adult_model, held_out, tmp_path / "plain")
    shifted = monitor(adult_model, tmp_path / "shifted")
    plain = monitor(adult_model, tmp_path / "plain")
    assert shifted.n_rows == plain.n_rows == 500 and shifted.n_requests == 20
    assert shifted.drifted_features == ["age"]
    age = shifted.features["age"]
    assert (
        age["psi"] > 1.0
        and age["p_value"] < 1e-20
        and age["current_mean"] == pytest.approx(held_out["age"].mean() + 15)
    )
    assert {v["kind"] for v in shifted.violations} <= {"drift", "prediction_drift"}
    assert plain.drifted_features == [] and plain.violations == [] and plain.ok
    two = held_out.assign(
        age=held_out["age"] + 15, relationship=held_out["relationship"].replace("Husband", "Wife")
    )
    _capture(adult_model, two, tmp_path / "two")
    both = monitor(adult_model, tmp_path / "two")
    assert (
        both.drifted_features == ["age", "relationship"] and both.features["relationship"]["test"] == "chi2"
    )
    assert max(r["psi"] for r in plain.features.values() if r.get("psi") is not None) < 0.1
    assert set(plain.prediction) == {"label", "score"} and not any(
        r["drift"] for r in plain.prediction.values()
    )

    assert (
        cli_main(["monitor", str(adult_model), str(tmp_path / "shifted"), "--output", str(tmp_path / "o1")])
        == 1
    )
    report = json.loads((tmp_path / "o1" / "violations.json").read_text())
    assert report["status"] == "violations" and report["drifted_features"] == ["age"]
    assert "age: distribution changed (PSI" in (tmp_path / "o1" / "report.md").read_text()
    assert (
        cli_main(["monitor", str(adult_model), str(tmp_path / "plain"), "--output", str(tmp_path / "o2")])
        == 0
    )
    assert json.loads((tmp_path / "o2" / "violations.json").read_text())["status"] == "ok"
    assert "OK: no violations" in capsys.readouterr().out


def test_tables_and_schema_violations(adult_model, held_out, tmp_path):
    rng = np.random.default_rng(0)
    bad = held_out.drop(columns=["race"]).copy()
    bad["hours-per-week"] = bad["hours-per-week"].astype(object)
    bad.loc[:2, "hours-per-week"] = "forty"
    bad.loc[rng.random(len(bad)) < 0.4, "occupation"] = None
    bad.loc[rng.random(len(bad)) < 0.15, "workclass"] = "Space-force"
    d = tmp_path / "tables"
    d.mkdir()
    bad.iloc[:250].to_csv(d / "part1.csv", index=False)
    bad.iloc[250:].to_json(d / "part2.jsonl", orient="records", lines=True)
    res = monitor(adult_model, d, MonitorConfig(check_predictions=False))
    found = {(v["kind"], v["feature"]) for v in res.violations}
    assert {
        ("missing_column", "race"),
        ("type_mismatch", "hours-per-week"),
        ("missing_share", "occupation"),
        ("new_categories", "workclass"),
    } <= found
    assert res.n_rows == 500 and "age" not in res.drifted_features
    # a clean Parquet table without predictions: they are recomputed with the model
    held_out.to_parquet(tmp_path / "clean.parquet")
    clean = monitor(adult_model, tmp_path / "clean.parquet")
    assert clean.ok and set(clean.prediction) == {"label", "score"}
    assert any("recomputed with the model" in n for n in clean.notes)


def test_registry_model_and_user_errors(adult_model, held_out, tmp_path, monkeypatch, capsys):
    from automl.registry import Registry

    monkeypatch.setenv("AUTOML_REGISTRY_CACHE", str(tmp_path / "cache"))
    reg = Registry(tmp_path / "reg")
    reg.register(adult_model, "adult", stage="production", reason="baseline")
    held_out.assign(age=held_out["age"] + 15).to_csv(tmp_path / "shifted.csv", index=False)
    res = monitor("registry://adult", tmp_path / "shifted.csv", registry_root=str(tmp_path / "reg"))
    assert res.drifted_features == ["age"]
    assert cli_main(["monitor", str(adult_model), str(tmp_path / "nowhere")]) == 2
    assert "error: capture" in capsys.readouterr().err
    assert cli_main(["monitor", str(adult_model), str(tmp_path / "shifted.csv"), "--p-value", "2"]) == 2
    assert "p_value must be between 0 and 1" in capsys.readouterr().err
    assert cli_main(["monitor", str(tmp_path), str(tmp_path / "shifted.csv")]) == 2
    assert "has no profile.json" in capsys.readouterr().err


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
@pytest.mark.ray
def test_serve_registry_production_capture_then_monitor(
    adult_model, held_out, tmp_path, monkeypatch, ray_session
):
    """End to end: register two versions, promote one, serve ``registry://adult`` (the production
    version) with data capture, send requests built from adult rows with ages + 15, monitor."""
    import httpx

    from automl.registry import Registry, resolve_model_uri
    from serving import server
    from serving.app import AppArgs

    monkeypatch.setenv("AUTOML_REGISTRY", str(tmp_path / "registry"))
    reg = Registry()
    reg.register(adult_model, "adult", stage="production", reason="first")
    reg.register(adult_model, "adult", stage="staging", reason="candidate")
    reg.promote("adult", 2, "production", actor="ana", reason="passed review")
    model_dir = resolve_model_uri("registry://adult")
    assert model_dir == str(tmp_path / "registry" / reg.get("adult", 2).artifact)
    rows = json.loads(held_out.assign(age=held_out["age"] + 15).to_json(orient="records"))
    try:
        base = server.start(
            AppArgs(model_dir=model_dir, capture=CaptureConfig(str(tmp_path / "cap"))), port=8433
        )
        with httpx.Client(timeout=30) as client:
            assert (
                client.get(f"{base}/metadata").json()["model_version"]
                == Predictor.load(adult_model).model_version
            )
            for i, start in enumerate(range(0, len(rows), 25)):
                endpoint = "predict_proba" if i % 2 else "predict"
                r = client.post(f"{base}/{endpoint}", json={"rows": rows[start : start + 25]})
                assert r.status_code == 200, r.text
        for _ in range(500):  # the replica's writer thread appends within moments; bounded wait
            if sum(len(f.read_text().splitlines()) for f in (tmp_path / "cap").glob("*.jsonl")) >= 20:
                break
            time.sleep(0.02)
    finally:
        server.stop()
    res = monitor("registry://adult", tmp_path / "cap")
    assert res.n_requests == 20 and res.n_rows == 500
    assert res.drifted_features == ["age"]
    assert set(res.prediction) == {"label", "score"}


def test_regression_model_prediction_values_are_monitored(regression_df, tmp_path):
    train, new = (
        regression_df.iloc[:200].reset_index(drop=True),
        regression_df.iloc[200:].drop(columns=["label"]),
    )
    data, pre, schema, prof = trial_data(train, "label", recipes=("tree",))
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    model = tmp_path / "model"
    prof.save(model / "profile.json")
    save_validation_sample(
        model, train, make_folds(len(train), strategy="kfold", n_folds=3, seed=0), res.oof, None, seed=0
    )
    predictor_from(res, data, pre, schema, prof).save(model)
    _capture(model, new.assign(x1=new["x1"] + 3.0), tmp_path / "cap")
    result = monitor(model, tmp_path / "cap")
    assert result.drifted_features == ["x1"]
    assert result.prediction["value"]["drift"] and result.prediction["value"]["test"] == "ks"


def test_a_changed_validation_sample_is_refused(adult_model, held_out, tmp_path):
    """The validation sample is the monitor's prediction baseline: it is a checksummed Predictor
    file, so a changed copy makes both the monitor and the loader refuse the model."""
    import shutil

    from automl import layout
    from automl.exceptions import IntegrityError

    model = tmp_path / "model"
    shutil.copytree(adult_model, model)
    sample = pd.read_parquet(model / layout.VALIDATION_SAMPLE)
    proba = next(c for c in sample.columns if c.startswith("__proba_"))
    sample[proba] = 1.0 - sample[proba]  # a baseline that would hide a real shift
    sample.to_parquet(model / layout.VALIDATION_SAMPLE, index=False)
    frame = held_out.iloc[:60]
    with pytest.raises(IntegrityError, match=r"validation_sample\.parquet.*refusing to load"):
        monitor(model, frame)
    with pytest.raises(IntegrityError, match=r"validation_sample\.parquet"):
        Predictor.load(model)
