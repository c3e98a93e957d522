"""Cluster configuration without a cluster: ``cluster.yaml`` validates against Ray's
cluster-launcher schema, ``k8s/rayjob.yaml`` has the fields of a KubeRay RayJob (no cloud calls),
and storage settings are checked before Ray starts (the live two-node cluster is in
test_cluster.py)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
AUTOML = str(Path(sys.executable).parent / "automl")


def _validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))  # merges Ray's AWS defaults; no AWS call
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prepared = _validate(config)
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # the head runs no trials
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    gpu = [t for t in workers.values() if t["node_config"]["InstanceType"][:2] in ("g5", "g6")]
    assert len(gpu) == 1 and len(workers) == 2
    for t in workers.values():
        assert 0 <= t["min_workers"] <= t["max_workers"]
        assert t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    # CPU nodes: the CPU torch wheel first; GPU nodes: CUDA torch first, then the CUDA xgboost build
    cpu_setup = prepared["worker_setup_commands"]
    assert "torch==2.13.0" in cpu_setup[0] and "download.pytorch.org/whl/cpu" in cpu_setup[0]
    gpu_setup = gpu[0]["worker_setup_commands"]
    assert "torch==2.13.0" in gpu_setup[0] and "whl/cpu" not in gpu_setup[0]
    assert any("uninstall -y xgboost-cpu" in c and 'install -q "xgboost' in c for c in gpu_setup)
    assert "gpu" in gpu[0]["docker"]["worker_image"]
    # token auth and the token file on every node; runs in an S3 bucket
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in config[key])
    assert any(dst.endswith(".ray/auth_token") for dst in config["file_mounts"])
    assert all(any("AUTOML_STORAGE=s3://" in c for c in cmds) for cmds in (cpu_setup, gpu_setup))
    bad = copy.deepcopy(config)  # the check is real: a misspelt field fails it
    bad["available_node_types"]["gpu_worker"]["min_worker"] = 1
    with pytest.raises(Exception, match="min_worker"):
        _validate(bad)


def test_kuberay_rayjob_manifest_has_the_expected_fields():
    import ray

    job = yaml.safe_load((ROOT / "k8s" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("automl fit ") and "--storage s3://" in spec["entrypoint"]
    assert "--resume" in spec["entrypoint"] and spec["shutdownAfterJobFinishes"] is True
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["AUTOML_STORAGE"].startswith("s3://")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["authOptions"] == {"mode": "token"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = cluster["workerGroupSpecs"]
    assert all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups)
    gpu = [
        g
        for g in groups
        if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])
    ]
    assert len(gpu) == 1 and len(groups) == 2


def test_storage_is_checked_and_the_run_is_copied_there(tmp_path):
    from automl.exceptions import ConfigError
    from automl.runtime import ClusterInfo, check_storage, publish_run, storage_uri

    assert storage_uri("s3://bucket/runs/") == "s3://bucket/runs"
    assert storage_uri(str(tmp_path) + "/") == str(tmp_path)
    for bad, why in [
        ("runs/x", "must be an absolute path"),
        ("ftp://host/x", "unsupported scheme 'ftp'"),
        ("s3://", "names no bucket"),
    ]:
        with pytest.raises(ConfigError, match=why):
            storage_uri(bad)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write to storage"):
        check_storage(str(tmp_path / "a-file" / "runs"), ClusterInfo(1, 0, True, "", nodes=1))
    check_storage(str(tmp_path / "ok"), ClusterInfo(1, 0, True, "", nodes=1))
    assert list((tmp_path / "ok").iterdir()) == []  # the marker is removed
    run = tmp_path / "my-run"
    (run / "search" / "trial").mkdir(parents=True)
    (run / "models" / "m1").mkdir(parents=True)
    (run / "predictor.json").write_text("{}")
    (run / "models" / "m1" / "model.txt").write_text("tree")
    dest = Path(publish_run(run, str(tmp_path / "store")))
    assert dest == tmp_path / "store" / "my-run"
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert copied == ["models", "models/m1", "models/m1/model.txt", "predictor.json"]  # not search/
    # the CLI says so in one line, before Ray starts
    data = ROOT / "tests" / "data" / "adult_small.csv.gz"
    done = subprocess.run(
        [
            AUTOML,
            "fit",
            str(data),
            "--target",
            "class",
            "--max-trials",
            "1",
            "--output",
            str(tmp_path / "run"),
            "--storage",
            "shared/runs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
    )
    assert done.returncode == 2 and "Ray" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: storage must be an absolute path (shared by every node) or a URI such as s3://bucket/prefix; "
        "got 'shared/runs'"
    )
