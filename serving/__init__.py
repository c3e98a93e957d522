"""Serving: the best model behind a Ray Serve REST endpoint (our routes and the Open Inference
Protocol V2), and batch prediction with Ray Data. See docs/serving.md.

``build_app`` and ``AppArgs`` build the Serve application; ``predict_file`` scores a file. Names are
imported on first use, so ``import serving`` does not import Ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AppArgs", "build_app", "predict_file"]

_WHERE = {"AppArgs": "serving.schemas", "build_app": "serving.app", "predict_file": "serving.batch"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
