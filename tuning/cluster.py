"""Connecting to Ray: start it in-process on a laptop, or join a cluster."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from automl.config import ResourceConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterInfo:
    cpus: float
    gpus: float
    started_here: bool
    address: str


def ensure_ray(resources: ResourceConfig) -> ClusterInfo:
    """Use the running Ray, join ``resources.address`` / ``RAY_ADDRESS``, or start one in-process."""
    # Ray Train reports block for this interval (2 s by default); see RAY_NOTES.md
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    import ray

    started = False
    if not ray.is_initialized():
        address = resources.address or os.environ.get("RAY_ADDRESS")
        env = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]}}
        if address:
            logger.info("joining the Ray cluster at %s", address)
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=resources.num_cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
            started = True
        try:
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False
        except Exception:  # noqa: BLE001 - progress bars are cosmetic
            pass
    res = ray.cluster_resources()
    info = ClusterInfo(float(res.get("CPU", 1)), float(res.get("GPU", 0)), started,
                       ray.get_runtime_context().gcs_address)
    logger.info("Ray: %.0f CPUs, %.0f GPUs (%s)", info.cpus, info.gpus, "started here" if started else "joined")
    return info
