"""Ray Tune and Ray Train: the only package that builds a ``tune.Tuner`` or a Ray Train trainer."""

from tuning.cluster import ClusterInfo, ensure_ray
from tuning.search import SearchOutcome, TrialRecord, run_search

__all__ = ["ClusterInfo", "SearchOutcome", "TrialRecord", "ensure_ray", "run_search"]
