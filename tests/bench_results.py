"""RESULT dicts in ``run_peer.py``'s shape for the benchmark-table tests (only the keys the tables read)."""

from __future__ import annotations


def result(
    system: str,
    table: str,
    score: float,
    *,
    metric: str = "accuracy",
    gib: bool = True,
    preset: str | None = None,
    budget: float = 60.0,
    status: str = "ok",
    sha: str = "abc",
) -> dict:
    """A RESULT dict in run_peer.py's shape (only the keys the table reads)."""
    return {
        "status": status,
        "system": system,
        "preset": preset,
        "time_limit_s": budget,
        "data": {"path": f"shared/datasets/{table}.csv.gz"},
        "split": {"test_index_sha256": sha},
        "metric": {"name": metric, "value": score, "greater_is_better": gib},
        "fit": {"wall_s": 30.0},
        "predict": {"rows_per_s": 1000.0},
        "latency_single_row": {"median_ms": 5.0},
        "memory": {"peak_rss_mb": 400.0},
        "artifact": {"mb": 1.5},
    }
