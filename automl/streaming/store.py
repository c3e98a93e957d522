"""The object store's spill counters, read from the raylet, so a streaming fit can say in run.json
how many bytes Ray spilled to disk while it ran.

Source: the raylet's ``FormatGlobalMemoryInfo`` reply, as ``ray memory --stats-only`` prints it
(``ray._private.internal_api.get_memory_info_reply``: ``store_stats.spilled_bytes_total``,
``restored_bytes_total``, ``object_store_bytes_used``, summed over the nodes by the raylet
asked; a private API of Ray 2.60, so any failure gives None, never an error). The GCS address is
the connected Ray's: without it Ray would pick the newest cluster on the machine.
"""

from __future__ import annotations

from typing import Any

#: the counters that only grow while a cluster lives (a fit reports their difference)
CUMULATIVE = ("spilled_bytes", "spilled_objects", "restored_bytes")

_STATE: dict[str, Any] = {}


def store_counters(timeout_s: float = 10.0) -> dict[str, int] | None:
    """The connected Ray's object store figures, or None (Ray down, a timeout, an API change)."""
    try:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        if not ray.is_initialized():
            return None
        address = ray.get_runtime_context().gcs_address
        if address not in _STATE:
            _STATE.clear()
            _STATE[address] = get_state_from_address(address)
        s = get_memory_info_reply(_STATE[address], timeout_seconds=timeout_s).store_stats
        return {
            "spilled_bytes": int(s.spilled_bytes_total),
            "spilled_objects": int(s.spilled_objects_total),
            "restored_bytes": int(s.restored_bytes_total),
            "object_store_bytes_used": int(s.object_store_bytes_used),
            "object_store_capacity_bytes": int(s.object_store_bytes_avail),
        }
    except Exception:  # noqa: BLE001 - a figure for the record, never a reason to fail the fit
        return None


def spilled_during(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, Any]:
    """What the fit added to the cumulative counters (``measured`` False when either read failed)."""
    if before is None or after is None:
        return {"measured": False}
    return {"measured": True, **{k: after[k] - before[k] for k in CUMULATIVE}}
