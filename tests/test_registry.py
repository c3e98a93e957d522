"""Model registry: register, list, show, promote, stages with who/when/why, integrity on load,
concurrent registrations from two processes (local directory and S3 on a loopback moto server).
Serving ``registry://NAME`` (the production version) over HTTP: tests/test_monitor.py, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import predictor_from, trial_data

from automl.cli import main as cli_main
from automl.exceptions import ConfigError, IntegrityError
from automl.models import get_family
from automl.predictor import Predictor
from automl.registry import Registry, resolve_model_uri
from automl.training import train_candidate


def _save_model(df, out: Path) -> Path:
    data, pre, schema, prof = trial_data(df, "label", recipes=("tree",))
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    prof.save(out / "profile.json")  # saved first: checksums.json then covers it
    path = predictor_from(res, data, pre, schema, prof).save(out)
    Predictor.load(path)  # sanity: the saved directory is a valid model
    return path


@pytest.fixture(scope="module")
def models(binary_df, tmp_path_factory):
    """Two different saved models (distinct model_version), built without Ray."""
    root = tmp_path_factory.mktemp("models")
    return [
        _save_model(binary_df, root / "a"),
        _save_model(binary_df.sample(frac=1.0, random_state=1), root / "b"),
    ]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOML_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("AUTOML_REGISTRY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOML_ACTOR", "tester")


def _version_of(path: Path | str) -> str:
    return json.loads((Path(path) / "predictor.json").read_text())["info"]["model_version"]


def test_register_list_promote_and_load_by_stage(models, tmp_path):
    reg = Registry(tmp_path / "registry")
    v1 = reg.register(models[0], "churn", description="first", training_data=str(models[0] / "profile.json"))
    v2 = reg.register(models[1], "churn", stage="staging", actor="ana", reason="candidate")
    assert (v1.version, v2.version) == (1, 2) and v1.uri == "registry://churn:1"
    assert v1.stage == "none" and v2.stage == "staging" and v2.history[-1].actor == "ana"
    assert v1.metrics["metric"] == "roc_auc" and v1.params["m1"]["family"] == "lightgbm"
    assert v1.profile["features"] == {
        "x1": "numeric",
        "x2": "numeric",
        "color": "categorical",
        "x3": "numeric",
    }
    lin = v1.lineage
    assert len(lin["training_data"]["sha256"]) == 64 and lin["packages"]["lightgbm"]
    assert lin["model_version"] == _version_of(models[0]) and "predictor.json" in v1.files
    assert [(m.name, m.version) for m in reg.list()] == [("churn", 1), ("churn", 2)]
    with pytest.raises(ConfigError, match="no version in stage 'production'.*automl registry promote"):
        reg.load("churn")

    reg.promote("churn", 1, "production", actor="bo", reason="best AUC")
    assert _version_of(resolve_model_uri("registry://churn")) == _version_of(models[0])
    reg.promote("churn", 2, "production", actor="cy", reason="retrained on May data")
    v1, v2 = reg.get("churn", 1), reg.get("churn", 2)
    assert v2.stage == "production" and v1.stage == "archived"
    assert v1.history[-1].reason == "replaced in production by version 2" and v1.history[-1].actor == "cy"
    assert [c.stage for c in v1.history] == ["none", "production", "archived"]
    assert all(c.at.endswith("Z") for c in v1.history)
    assert reg.load("churn").model_version == _version_of(models[1])
    assert reg.load("churn", version=1).model_version == _version_of(models[0])
    assert reg.get("churn", stage="archived").version == 1
    assert _version_of(resolve_model_uri("registry://churn:1")) == _version_of(models[0])
    assert resolve_model_uri(str(models[0])) == str(models[0])  # not a registry URI: unchanged
    with pytest.raises(ConfigError, match="has no version 7; its versions are \\[1, 2\\]"):
        reg.get("churn", 7)
    with pytest.raises(ConfigError, match="stage must be one of"):
        reg.promote("churn", 1, "prod", actor="x", reason="typo")
    with pytest.raises(ConfigError, match="needs a reason"):
        reg.promote("churn", 1, "staging", actor="x", reason=" ")
    with pytest.raises(ConfigError, match="model name"):
        reg.register(models[0], "../escape")


def test_cli_register_list_show_promote(models, tmp_path, capsys):
    root = str(tmp_path / "cli-registry")
    assert cli_main(["registry", "register", str(models[0]), "--name", "adult", "--root", root]) == 0
    assert (
        cli_main(
            [
                "registry",
                "register",
                str(models[1]),
                "--name",
                "adult",
                "--root",
                root,
                "--description",
                "second",
            ]
        )
        == 0
    )
    assert "registered registry://adult:2" in capsys.readouterr().out
    assert (
        cli_main(
            ["registry", "promote", "adult:2", "--stage", "production", "--reason", "better", "--root", root]
        )
        == 0
    )
    assert cli_main(["registry", "promote", "adult:1", "--stage", "staging", "--root", root]) == 0
    assert cli_main(["registry", "list", "--root", root, "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 2)[2])
    assert [(v["version"], v["stage"]) for v in listed] == [(1, "staging"), (2, "production")]
    assert cli_main(["registry", "show", "adult:production", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "registry://adult:2  stage: production" in out and "by tester: better" in out and "second" in out
    assert cli_main(["registry", "show", "adult:9", "--root", root]) == 2
    assert "error: model 'adult' has no version 9" in capsys.readouterr().err


def test_tampered_version_is_refused(models, tmp_path):
    reg = Registry(tmp_path / "registry")
    mv = reg.register(models[0], "fraud", stage="production", reason="first")
    stored = tmp_path / "registry" / mv.artifact
    model_file = next(stored.rglob("model.txt"))
    original = model_file.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with pytest.raises(
        IntegrityError,
        match=r"registry://fraud:1: the files .* do not match the checksums recorded "
        r"at registration \(changed or missing: \['models/.*model.txt'\]\); "
        r"refusing to load or serve it",
    ):
        resolve_model_uri("registry://fraud")
    with pytest.raises(IntegrityError):
        reg.load("fraud")
    model_file.write_bytes(original)
    assert reg.load("fraud").model_version == _version_of(models[0])  # restored: loads again
    (stored / "extra.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"unexpected: \['extra.json'\]"):
        reg.load("fraud")


_WORKER = textwrap.dedent("""
    import json, logging, os, sys, time
    from automl.registry import Registry
    root, model, ready, go, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    taken = []
    handler = logging.Handler()
    handler.emit = lambda record: (
        taken.append(record.getMessage()) if "was taken" in record.getMessage() else None
    )
    logging.getLogger("automl.registry").addHandler(handler)
    logging.getLogger("automl.registry").setLevel(logging.INFO)
    reg = Registry(root)
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    got = [reg.register(model, "race", reason=f"pid {os.getpid()}").version for _ in range(n)]
    print(json.dumps({"versions": got, "collisions": len(taken)}))
""")


def _race(root: str, model: Path, tmp_path: Path, n: int = 3) -> list[dict]:
    """Two processes register ``n`` versions each into one group, released at the same moment."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, root, str(model), str(r), str(go), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    for _ in range(6000):  # until both have imported the package (at most 60 s)
        if all(r.exists() for r in ready) or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    go.write_text("go")
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    return [json.loads(o[0].strip().splitlines()[-1]) for o in outs]


def _check_race(reg: Registry, results: list[dict], n: int = 3) -> None:
    got = [r["versions"] for r in results]
    flat = sorted(got[0] + got[1])
    assert flat == list(range(1, 2 * n + 1)), got  # distinct numbers, no gaps
    versions = reg.list("race")
    assert [v.version for v in versions] == flat
    assert len({v.artifact for v in versions}) == 2 * n  # each version has its own files
    for v in versions:
        reg.local_dir(v)  # every version complete and verified


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_two_processes_registering_get_distinct_versions(models, tmp_path):
    root = str(tmp_path / "race-registry")
    _check_race(Registry(root), _race(root, models[0], tmp_path))


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on loopback with a bucket; AWS_* variables point at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import httpx
    import s3fs

    httpx.post(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", timeout=10)  # moto's state is per process
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]}, skip_instance_cache=True)
    fs.mkdir("models")
    yield fs
    server.stop()


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_s3_registry_register_promote_resolve_and_verify(models, tmp_path, s3):
    reg = Registry("s3://models/registry")
    reg.register(models[0], "credit")
    reg.register(models[1], "credit")
    reg.promote("credit", 2, "production", actor="ana", reason="newer")
    local = resolve_model_uri("registry://credit", root="s3://models/registry")
    assert Path(local).is_relative_to(tmp_path / "cache") and _version_of(local) == _version_of(models[1])
    assert reg.load("credit").model_version == _version_of(models[1])
    assert [v.stage for v in reg.list("credit")] == ["none", "production"]
    # a damaged cached copy is fetched again; a damaged stored copy is refused
    next(Path(local).rglob("model.txt")).write_text("tampered")
    assert _version_of(resolve_model_uri("registry://credit", root="s3://models/registry")) == _version_of(
        models[1]
    )
    key = next(
        k for k in s3.find(f"models/registry/{reg.get('credit', 2).artifact}") if k.endswith("model.txt")
    )
    s3.pipe_file(key, b"tampered")
    for cached in (tmp_path / "cache").rglob("model.txt"):
        cached.write_text("tampered")
    with pytest.raises(IntegrityError, match="registry://credit:2: the files"):
        reg.load("credit")


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_two_processes_registering_on_s3_get_distinct_versions(models, tmp_path, s3):
    _check_race(Registry("s3://models/race"), _race("s3://models/race", models[0], tmp_path, n=2), n=2)
