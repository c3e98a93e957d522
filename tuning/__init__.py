"""Ray Tune and Ray Train: the only package that builds a ``tune.Tuner`` or a Ray Train trainer."""

from tuning.search import run_search

__all__ = ["run_search"]
