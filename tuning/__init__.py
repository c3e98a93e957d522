"""Ray Tune and Ray Train: the only package that builds a ``tune.Tuner`` or a Ray Train trainer."""

from tuning.distributed.reserve import FinalsReserve
from tuning.search import run_search

__all__ = ["FinalsReserve", "run_search"]
