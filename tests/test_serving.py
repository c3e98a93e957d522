"""The REST endpoint on a real Ray Serve instance on loopback, called with a real HTTP client (httpx).

One Serve application for the module (an API key set, a small body limit); Serve is shut down at
the end so other modules' Ray work is unaffected.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from automl import load
from automl.exceptions import ConfigError

pytestmark = pytest.mark.ray

KEY = "test-key-0123456789"
AUTH = {"X-API-Key": KEY}
MAX_BODY = 50_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(small_run) -> str:
    return small_run("binary")


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def base(ray_session, model_dir, capture_dir):
    from serving import server
    from serving.capture import CaptureConfig
    from serving.schemas import AppArgs

    args = AppArgs(
        model_dir=model_dir,
        api_key=KEY,
        max_body_bytes=MAX_BODY,
        capture=CaptureConfig(directory=str(capture_dir)),
    )
    t = time.time()
    url = server.start(args, port=_free_port())
    assert time.time() - t < 90, "the endpoint should answer within seconds of being deployed"
    yield url
    server.stop()


@pytest.fixture(scope="module")
def client(base):
    with httpx.Client(base_url=base, headers=AUTH, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def features(binary_df) -> pd.DataFrame:
    return binary_df.drop(columns=["label"]).iloc[:12].reset_index(drop=True)


def _rows(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def test_predict_matches_the_predictor_in_input_order(client, model_dir, features):
    pred = load(model_dir)
    rows = _rows(features)
    rows[0]["note"] = "extra"
    r = client.post("/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == pred.predict(features).tolist()
    assert body["model_version"] == pred.model_version
    assert body["ignored_columns"] == ["note"] and body["unknown_categories"] == {}


def test_predict_proba_and_csv_body(client, model_dir, features):
    pred = load(model_dir)
    r = client.post("/predict_proba", json={"rows": _rows(features)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["classes"] == pred.classes == ["no", "yes"]
    probs = pd.DataFrame(body["probabilities"])
    assert list(probs.columns) == ["no", "yes"]
    np.testing.assert_allclose(probs.to_numpy(), pred.predict_proba(features).to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    csv = client.post("/predict", content=features.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200, csv.text
    assert csv.json()["predictions"] == pred.predict(features).tolist()


def test_unknown_category_is_accepted_and_reported(client, features):
    rows = _rows(features.iloc[:2])
    rows[1]["color"] = "purple"
    r = client.post("/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    assert r.json()["unknown_categories"] == {"color": ["purple"]}
    assert len(r.json()["predictions"]) == 2


def test_metadata_health_and_docs(client, base, model_dir):
    meta = client.get("/metadata").json()
    pred = load(model_dir)
    assert meta["model_version"] == pred.model_version and meta["problem_type"] == "binary"
    assert meta["classes"] == ["no", "yes"] and meta["metric"] == pred.metric and meta["target"] == "label"
    cols = {c["name"]: c for c in meta["columns"]}
    assert set(cols) == {"x1", "x2", "x3", "color"}
    assert cols["color"]["kind"] == "categorical"
    assert set(cols["color"]["categories"]) == {"red", "green", "blue"}
    assert cols["x1"]["required"] and not cols["x2"]["required"]  # x2 was sometimes missing in training
    health = httpx.get(base + "/health")  # no key needed
    assert health.status_code == 200 and health.json()["live"] and health.json()["ready"]
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict_proba", "/metadata", "/health"} <= set(spec["paths"])
    assert "text/csv" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_api_key_is_required_except_for_health(base, features):
    body = {"rows": _rows(features.iloc[:1])}
    missing = httpx.post(base + "/predict", json=body)
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    wrong = httpx.post(base + "/predict", json=body, headers={"X-API-Key": "not-the-key"})
    assert wrong.status_code == 401 and "wrong API key" in wrong.json()["detail"]
    assert httpx.get(base + "/metadata").status_code == 401
    bearer = httpx.post(base + "/predict", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200


def _bad_bodies(good: dict) -> list[tuple[str, bytes | str, str, int, str]]:
    """(name, body, content type, expected status, field named in the error)."""
    J = "application/json"

    def row(**change):
        r = dict(good)
        for k, v in change.items():
            if v is KeyError:
                r.pop(k)
            else:
                r[k] = v
        return json.dumps({"rows": [r]})

    csv_ok = "x1,x2,color,x3\n0.5,0.1,red,1.0\n"
    return [
        ("empty body", b"", J, 400, "body"),
        ("truncated JSON", b'{"rows": [{"x1": 1', J, 400, "body"),
        ("not JSON", b"rows=1", J, 400, "body"),
        ("trailing garbage", b'{"rows": []} xyz', J, 400, "body"),
        ("trailing comma", b'{"rows": [1],}', J, 400, "body"),
        ("invalid UTF-8", b'{"rows": [{"color": "\xff\xfe"}]}', J, 400, "body"),
        ("nested too deep", b"[" * 20_000, J, 400, "body"),
        ("null document", b"null", J, 422, "body"),
        ("list document", b"[]", J, 422, "body"),
        ("string document", b'"rows"', J, 422, "body"),
        ("number document", b"42", J, 422, "body"),
        ("no rows field", b"{}", J, 422, "rows"),
        ("misspelled rows", json.dumps({"Rows": [good]}), J, 422, "Rows"),
        ("extra top-level field", json.dumps({"rows": [good], "model": "x"}), J, 422, "model"),
        ("rows null", b'{"rows": null}', J, 422, "rows"),
        ("rows object", b'{"rows": {}}', J, 422, "rows"),
        ("rows string", b'{"rows": "x1=1"}', J, 422, "rows"),
        ("rows empty", b'{"rows": []}', J, 422, "rows"),
        ("row is a number", b'{"rows": [1]}', J, 422, "rows[0]"),
        ("row is a list", b'{"rows": [[1, 2]]}', J, 422, "rows[0]"),
        ("row is null", b'{"rows": [null]}', J, 422, "rows[0]"),
        ("value is a list", row(x1=[1, 2]), J, 422, "rows[0].x1"),
        ("value is an object", row(color={"name": "red"}), J, 422, "rows[0].color"),
        ("number too large", row(x1=10**400), J, 422, "rows[0].x1"),
        ("empty row", b'{"rows": [{}]}', J, 422, "x1"),
        ("required column missing", row(x3=KeyError), J, 422, "x3"),
        ("text in a numeric column", row(x1="abc"), J, 422, "rows[0].x1"),
        ("decimal comma", row(x3="1,5"), J, 422, "rows[0].x3"),
        ("unsupported media type", row(), "application/xml", 415, "Content-Type"),
        ("malformed CSV", 'x1,x2,color,x3\n1,2,red,4\n"unclosed,1', "text/csv", 400, "body"),
        ("CSV with too many fields", "x1,x2,color,x3\n1,2,red,4,5,6\n", "text/csv", 400, "body"),
        ("CSV header only", "x1,x2,color,x3\n", "text/csv", 422, "rows"),
        ("CSV empty", "", "text/csv", 422, "rows"),
        ("CSV missing column", "x1,x2,color\n1,2,red\n", "text/csv", 422, "x3"),
        ("CSV text in numeric column", csv_ok.replace("0.5", "abc"), "text/csv", 422, "rows[0].x1"),
        ("body over the limit", json.dumps({"rows": [good] * 2000}), J, 413, "body"),
    ]


def test_fuzz_bad_bodies_get_4xx_naming_the_field(client, features):
    good = _rows(features.iloc[:1])[0]
    cases = _bad_bodies(good)
    assert len(cases) >= 30
    for name, body, ctype, status, field in cases:
        r = client.post("/predict", content=body, headers={"Content-Type": ctype})
        assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
        err = r.json()
        fields = [e["field"] for e in err["errors"]]
        assert field in fields and field in err["detail"], f"{name}: {err}"
    assert client.post("/predict_proba", content=b'{"rows": [1]}').status_code == 422
    assert client.get("/predict").status_code == 405
    assert client.post("/nowhere", json={"rows": [good]}).status_code == 404
    # the server keeps serving
    after = client.post("/predict", json={"rows": [good]})
    assert after.status_code == 200 and len(after.json()["predictions"]) == 1


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(base, model_dir, features):
    pred = load(model_dir)
    expected = pred.predict(features).tolist()
    rows = _rows(features)
    bad = dict(rows[0], x1="not a number")

    async def go():
        async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30.0) as c:
            return await asyncio.gather(*(c.post("/predict", json={"rows": [r]}) for r in [*rows, bad]))

    answers = asyncio.run(go())
    assert [a.status_code for a in answers] == [200] * len(rows) + [422]
    assert [a.json()["predictions"][0] for a in answers[:-1]] == expected
    assert "rows[0].x1" in answers[-1].json()["detail"]


def test_short_load_gets_no_5xx(base, features):
    from serving.loadtest import run_load

    body = {"rows": _rows(features.iloc[:1])}
    res = run_load(base + "/predict", body, concurrency=8, duration_s=3.0, headers=AUTH)
    assert res["requests"] > 8 and res["errors_5xx"] == 0 and res["errors_transport"] == 0
    assert res["status_counts"] == {"2xx": res["requests"]}
    assert 0 < res["p50_ms"] <= res["p99_ms"]


def test_request_metrics_are_exported_with_serve_metrics(client, ray_session):
    assert client.post("/predict", content=b"{oops").status_code == 400
    port = next(n["MetricsExportPort"] for n in ray_session.nodes() if n["Alive"])
    deadline, text = time.time() + 40, ""
    while time.time() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if re.search(r'automl_request_errors\w*\{[^}]*endpoint="/predict"[^}]*status="400"', text):
            break
        time.sleep(2)
    assert re.search(r'automl_requests\w*\{[^}]*endpoint="/predict"[^}]*status="200"', text)
    assert re.search(r'automl_request_errors\w*\{[^}]*status="400"', text)
    assert "automl_request_latency_ms_bucket" in text


def test_successful_requests_are_captured(client, features, capture_dir, model_dir):
    rows = _rows(features.iloc[:3])
    assert client.post("/predict_proba", json={"rows": rows}).status_code == 200
    deadline, events = time.time() + 20, []
    while time.time() < deadline:
        lines = [line for f in sorted(capture_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
        events = [json.loads(line) for line in lines]
        if any(e["endpoint"] == "predict_proba" for e in events):
            break
        time.sleep(0.5)
    proba = [e for e in events if e["endpoint"] == "predict_proba"]
    assert proba and proba[-1]["rows"] == rows and proba[-1]["n_rows"] == 3
    assert proba[-1]["model_version"] == load(model_dir).model_version
    assert len(proba[-1]["response"]["probabilities"]) == 3
    # only successful requests are recorded: none of the fuzz test's bad bodies
    assert all("predictions" in e["response"] or "probabilities" in e["response"] for e in events)


def test_binding_beyond_loopback_needs_an_api_key(model_dir):
    from serving.schemas import AppArgs
    from serving.server import check_bind

    check_bind("127.0.0.1", AppArgs(model_dir=model_dir))
    check_bind("::1", AppArgs(model_dir=model_dir))
    with pytest.raises(ConfigError, match="API key"):
        check_bind("0.0.0.0", AppArgs(model_dir=model_dir))
    check_bind("0.0.0.0", AppArgs(model_dir=model_dir, api_key=KEY))


def test_cli_arguments_and_errors(model_dir, capsys, monkeypatch):
    from automl.cli import build_parser, main
    from serving.cli import app_args_from_cli

    monkeypatch.setenv("AUTOML_API_KEY", KEY)
    a = build_parser().parse_args(["serve", model_dir, "--autoscale", "1:3", "--max-batch-size", "8"])
    args = app_args_from_cli(a, model_dir)
    assert args.autoscale == (1, 3) and args.max_batch_size == 8 and args.api_key == KEY
    monkeypatch.delenv("AUTOML_API_KEY")
    # each is refused before Ray or Serve is touched: one line, exit code 2
    refused = [
        (["--host", "0.0.0.0"], "API key"),
        (["--autoscale", "3"], "MIN:MAX"),
        (["--autoscale", "3:1"], "autoscale"),
        (["--max-batch-size", "0"], "max_batch_size"),
        (["--capture-rate", "0.5"], "--capture-dir"),
        (["--api-key", "short"], "8 characters"),
    ]
    for argv, message in refused:
        assert main(["serve", model_dir, *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["serve", str(Path(model_dir) / "missing")]) == 2
    assert "not a saved model" in capsys.readouterr().err


def test_serve_config_example_and_typed_builder(model_dir):
    import yaml
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary  # what `serve run` calls
    from ray.serve.schema import ServeDeploySchema

    from serving.app import build_app

    cfg = yaml.safe_load((Path(__file__).parents[1] / "serving" / "serve_config.example.yaml").read_text())
    ServeDeploySchema.model_validate(cfg)
    app_cfg = cfg["applications"][0]
    assert app_cfg["import_path"] == "serving.app:build_app"
    args = {**app_cfg["args"], "model_dir": model_dir}
    assert isinstance(call_user_app_builder_with_args_if_necessary(build_app, args), Application)
    with pytest.raises(Exception, match="max_batch_size"):
        call_user_app_builder_with_args_if_necessary(build_app, {"model_dir": model_dir, "max_batch_size": 0})


def test_missing_or_null_required_values_are_refused_naming_row_and_column(client, features):
    good = _rows(features.iloc[:2])
    null_x1 = [good[0], dict(good[1], x1=None)]
    r = client.post("/predict", json={"rows": null_x1})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["rows[1].x1"]
    assert "--missing impute" in r.json()["detail"]
    absent = [good[0], {k: v for k, v in good[1].items() if k != "color"}]
    r = client.post("/predict", json={"rows": absent})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "rows[1].color"
    assert "required value is missing" in r.json()["errors"][0]["message"]
    marker = [dict(good[0], x3="?")]  # the missing-value marker is a missing value too
    assert client.post("/predict", json={"rows": marker}).json()["errors"][0]["field"] == "rows[0].x3"
    # x2 was sometimes missing in training: null, "?" or an absent key is imputed as in training
    optional = [
        dict(good[0], x2=None),
        dict(good[1], x2="?"),
        {k: v for k, v in good[0].items() if k != "x2"},
    ]
    assert client.post("/predict", json={"rows": optional}).status_code == 200
    meta = {c["name"]: c["missing"] for c in client.get("/metadata").json()["columns"]}
    assert meta == {"x1": "reject", "x2": "impute", "color": "reject", "x3": "reject"}


def test_missing_policy_impute_and_per_column_overrides(model_dir, features, capsys):
    from starlette.testclient import TestClient

    from automl.cli import main
    from serving.app import ModelService
    from serving.schemas import AppArgs

    pred = load(model_dir)
    rows = _rows(features.iloc[:3])
    rows[0]["x1"], rows[1]["color"] = None, None
    del rows[2]["x3"]
    impute = TestClient(ModelService(AppArgs(model_dir=model_dir, missing="impute")).build_fastapi())
    r = impute.post("/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    expected = features.iloc[:3].copy()
    expected.loc[0, "x1"], expected.loc[2, "x3"] = np.nan, np.nan
    expected["color"] = expected["color"].astype(object)
    expected.loc[1, "color"] = None
    assert r.json()["predictions"] == pred.predict(expected).tolist()
    assert impute.get("/openapi.json").json()["components"]["schemas"]["Row"].get("required") is None
    mixed = AppArgs(model_dir=model_dir, missing="impute", missing_columns={"x1": "reject"})
    r = TestClient(ModelService(mixed).build_fastapi()).post("/predict", json={"rows": rows})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["rows[0].x1"]
    with pytest.raises(ValueError, match="'age', not an input column"):
        ModelService(AppArgs(model_dir=model_dir, missing_columns={"age": "impute"}))
    with pytest.raises(ValueError, match="reject"):
        AppArgs(model_dir=model_dir, missing="drop")
    assert main(["serve", model_dir, "--missing-column", "age=impute"]) == 2
    assert "not an input column" in capsys.readouterr().err


def test_v2_routes_behind_the_api_key_and_stats(base, client, features, model_dir):
    for probe in ("/v2/health/live", "/v2/health/ready", "/health"):
        assert httpx.get(base + probe).status_code == 200  # probes need no key
    refused = httpx.get(base + "/v2/models/run")
    assert (
        refused.status_code == 401
        and set(refused.json()) == {"error"}
        and "API key" in refused.json()["error"]
    )
    assert client.get("/v2/models/run").json()["name"] == "run"  # the model directory's name
    n = len(features)
    body = {
        "inputs": [
            {
                "name": c,
                "shape": [n],
                "datatype": "FP64" if c != "color" else "BYTES",
                "data": features[c].astype(object).where(features[c].notna(), None).tolist(),  # NaN: null
            }
            for c in features.columns
        ]
    }
    r = client.post("/v2/models/run/infer", json=body)
    assert r.status_code == 200, r.text
    assert (
        next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
        == load(model_dir).predict(features).tolist()
    )
    stats = client.get("/stats").json()
    assert stats["requests_predicted"] >= 1 and stats["largest_batch"] >= 1 and stats["replica"] != "local"
