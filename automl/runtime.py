"""Reaching Ray: start it in-process on a laptop or join a cluster, check the storage a run keeps
its search state in (every node of a cluster must reach it), and publish a finished run there.

Used by ``tuning`` (the search) and ``serving`` (the endpoint, batch prediction); it imports no
Ray Tune, Train or Serve, and Ray itself only inside the functions that need it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl import layout
from automl.config import ResourceConfig
from automl.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: URI schemes pyarrow (and so Ray Tune's storage_path) can write to
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")
#: how long a joined cluster that has no CPU yet (a head with CPU: 0 whose workers are still
#: booting) is waited for before the search starts anyway (it then queues until a worker joins);
#: AUTOML_WAIT_FOR_CPUS_S overrides it
WAIT_FOR_CPUS_S = 600.0
#: seconds each node gets to confirm it sees the run's storage
STORAGE_CHECK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ClusterInfo:
    cpus: float
    gpus: float
    started_here: bool
    address: str
    nodes: int = 1  # alive Ray nodes when the fit started


def ensure_ray(resources: ResourceConfig) -> ClusterInfo:
    """Use the running Ray, join ``resources.address`` / ``RAY_ADDRESS``, or start one in-process."""
    if resources.storage:
        storage_uri(resources.storage)  # a malformed storage fails before Ray starts
    # Each ray.train.report() blocks for this interval (Ray's default 2 s): 50 boosting rounds reporting
    # every round took 134 s instead of 55 s with 0.2 s (Ray 2.60, measured on 2 cores)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    import ray

    started = False
    if not ray.is_initialized():
        address = resources.address or os.environ.get("RAY_ADDRESS")
        interval = os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]
        env = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": interval}}
        if address:
            logger.info(
                "joining the Ray cluster at %s (%s)",
                address,
                "from resources.address" if resources.address else "from RAY_ADDRESS",
            )
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            # "local": start our own instance. With no address Ray would join the last cluster
            # started on this machine (/tmp/ray/ray_current_cluster), and refuse num_cpus there
            ray.init(
                address="local",
                num_cpus=resources.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=env,
            )
            started = True
        try:
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False
        except Exception:  # noqa: BLE001 - progress bars are cosmetic
            pass
    res = ray.cluster_resources()
    if not started and res.get("CPU", 0) == 0:
        try:
            wait_s = float(os.environ.get("AUTOML_WAIT_FOR_CPUS_S", WAIT_FOR_CPUS_S))
        except ValueError:
            raise ConfigError(
                "AUTOML_WAIT_FOR_CPUS_S must be a number of seconds; got "
                f"{os.environ['AUTOML_WAIT_FOR_CPUS_S']!r}"
            ) from None
        res = _wait_for_cpus(ray, wait_s)
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    info = ClusterInfo(
        float(res.get("CPU", 1)) or 1.0,
        float(res.get("GPU", 0)),
        started,
        ray.get_runtime_context().gcs_address,
        nodes,
    )
    logger.info(
        "Ray: %.0f CPUs, %.0f GPUs on %d node(s) (%s)",
        info.cpus,
        info.gpus,
        nodes,
        "started here" if started else "joined",
    )
    return info


def _wait_for_cpus(ray: Any, timeout_s: float) -> dict[str, float]:
    """A cluster whose head runs no trials (resources: {CPU: 0}) has no CPU until the autoscaler's
    first worker joins; the search sizes its concurrency from the CPUs it sees, so wait for them."""
    logger.info(
        "the cluster has no CPU yet (a head node without trials, workers starting): "
        "waiting up to %.0fs for a worker node (AUTOML_WAIT_FOR_CPUS_S)",
        timeout_s,
    )
    end = time.time() + timeout_s
    res = ray.cluster_resources()
    while res.get("CPU", 0) == 0 and time.time() < end:
        time.sleep(5)
        res = ray.cluster_resources()
    if res.get("CPU", 0) == 0:
        logger.warning("still no CPU in the cluster after %.0fs; trials wait for a worker node", timeout_s)
    return res


#: seconds a node has to answer :func:`responsive_cpus`
PING_TIMEOUT_S = 10.0


def responsive_cpus(timeout_s: float = PING_TIMEOUT_S) -> float:
    """CPUs of the Ray nodes that run a task now: a zero-CPU task pinned to each node the GCS
    lists alive, and the CPUs of those that answer within ``timeout_s``. The GCS's list alone lags:
    a node removed during a final was still alive in it when Ray Train had already failed the
    workers' health check (it declares a node dead after missing heartbeats, ~15 s later), and a
    restart sized from it put two workers on the one 1-CPU node left."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def ping() -> bool:
        return True

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {
        ping.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(): n
        for n in nodes
    }
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    cpus = 0.0
    for ref in ready:
        try:
            ray.get(ref)
        except Exception:  # noqa: BLE001 - the node died meanwhile
            continue
        cpus += float(refs[ref].get("Resources", {}).get("CPU", 0.0))
    return cpus


# --- storage ---------------------------------------------------------------------------------------
def storage_uri(storage: str) -> str:
    """``storage`` checked and without a trailing slash: an absolute path or a URI pyarrow writes
    to (s3://bucket/prefix, gs://..., file:///...). S3-compatible stores: set AWS_ENDPOINT_URL."""
    text = str(storage).strip()
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() not in STORAGE_SCHEMES:
            raise ConfigError(
                f"storage {storage!r} has an unsupported scheme {scheme!r}; use an absolute "
                f"path shared by every node or one of {[s + '://' for s in STORAGE_SCHEMES]}"
            )
        if not rest.strip("/"):
            raise ConfigError(f"storage {storage!r} names no bucket or path; e.g. s3://my-bucket/automl-runs")
        return f"{scheme}://{rest.rstrip('/')}"
    text = text.rstrip("/")
    if not text or not os.path.isabs(os.path.expanduser(text)):
        raise ConfigError(
            f"storage must be an absolute path (shared by every node) or a URI such as "
            f"s3://bucket/prefix; got {storage!r}"
        )
    return os.path.expanduser(text)


def _filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs

    if "://" not in uri:
        return pyarrow.fs.LocalFileSystem(), uri
    return pyarrow.fs.FileSystem.from_uri(uri)


def _visible(marker: str) -> bool:
    """On one node: does the storage marker exist? (runs as a Ray task on every node)"""
    import pyarrow.fs

    fs, path = _filesystem(marker)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def check_storage(storage: str, cluster: ClusterInfo) -> None:
    """Write a marker under ``storage`` and, on a multi-node cluster, check that every node sees it.

    Raises ConfigError when the driver cannot write there or a node cannot see the marker (a path
    on the head's local disk, missing credentials on workers, no AWS_ENDPOINT_URL there). Nodes
    that join later (autoscaling) are checked by Ray when they first save a checkpoint."""
    uri = storage_uri(storage)
    marker = f"{uri}/.automl-storage-check-{uuid.uuid4().hex[:12]}"
    try:
        fs, path = _filesystem(uri)
        fs.create_dir(path, recursive=True)
        _, mpath = _filesystem(marker)
        with fs.open_output_stream(mpath) as f:
            f.write(b"automl storage check\n")
    except Exception as exc:  # noqa: BLE001 - any failure here is the user's storage set-up
        why = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        raise ConfigError(
            f"cannot write to storage {uri!r} ({why}); check that the bucket or directory "
            "exists and that the credentials (and AWS_ENDPOINT_URL for S3-compatible stores) "
            "allow writing"
        ) from exc
    try:
        if cluster.nodes > 1:
            _check_nodes_see(marker, uri)
    finally:
        try:
            fs.delete_file(mpath)
        except Exception:  # noqa: BLE001 - a leftover marker file is harmless
            pass


def _check_nodes_see(marker: str, uri: str) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe = ray.remote(num_cpus=0, max_retries=0)(_visible)
    refs = {}
    for n in nodes:
        on_node = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        refs[n["NodeID"]] = probe.options(scheduling_strategy=on_node).remote(marker)
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=STORAGE_CHECK_TIMEOUT_S)
    blind, unknown = [], []
    for node, ref in refs.items():
        if ref not in ready:
            unknown.append(node[:8])
            continue
        try:
            if not ray.get(ref):
                blind.append(node[:8])
        except Exception as exc:  # noqa: BLE001 - e.g. no credentials on that node
            blind.append(f"{node[:8]} ({type(exc).__name__})")
    if unknown:
        logger.warning(
            "storage check: nodes %s did not answer within %.0fs; Ray checks them when they "
            "save a checkpoint",
            unknown,
            STORAGE_CHECK_TIMEOUT_S,
        )
    if blind:
        raise ConfigError(
            f"storage {uri!r} is not reachable from Ray node(s) {blind} of this "
            f"{len(nodes)}-node cluster: trials there could not save checkpoints. Pass "
            "storage= (--storage) an s3:// URI or a path every node mounts (e.g. NFS), with "
            "credentials on every node"
        )
    logger.info("storage %s is reachable from %d of the %d nodes", uri, len(nodes) - len(unknown), len(nodes))


def publish_run(run_dir: Path, storage: str) -> str:
    """Copy the run directory (the Predictor, leaderboard, run.json, report; not the search state,
    which is already in storage) to ``<storage>/<run name>``; returns that URI or path."""
    import pyarrow.fs

    uri = storage_uri(storage)
    dest = f"{uri}/{run_dir.name}"
    if "://" not in uri and Path(dest).resolve() == run_dir.resolve():
        return dest
    fs, dpath = _filesystem(dest)
    fs.create_dir(dpath, recursive=True)
    local = pyarrow.fs.LocalFileSystem()
    for entry in sorted(run_dir.iterdir()):
        if entry.name in layout.NOT_PUBLISHED:
            continue
        target = f"{dpath}/{entry.name}"
        if entry.is_dir():
            fs.create_dir(target, recursive=True)
        pyarrow.fs.copy_files(
            str(entry.resolve()), target, source_filesystem=local, destination_filesystem=fs
        )
    logger.debug("run directory copied to %s", dest)
    return dest
