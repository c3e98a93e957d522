"""Versions of Python, the project and the libraries a model depends on: recorded in
``predictor.json`` and in registry records; a Predictor loaded under other versions says so."""

from __future__ import annotations

import logging
import platform
from importlib import metadata as importlib_metadata
from typing import Any

logger = logging.getLogger(__name__)

#: distributions whose version shapes a saved model or its predictions
PACKAGES = (
    "automl-on-ray",
    "ray",
    "pandas",
    "numpy",
    "pyarrow",
    "scikit-learn",
    "lightgbm",
    "xgboost",
    "xgboost-cpu",
    "catboost",
    "torch",
)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"python": "3.11.7", "lightgbm": "4.7.0", ...}`` for what is installed here (``PACKAGES``
    and ``extra``; a package that is not installed is left out)."""
    found = {"python": platform.python_version()}
    for name in (*PACKAGES, *extra):
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def differences(recorded: dict[str, Any] | None) -> dict[str, tuple[str, str | None]]:
    """``{package: (recorded, installed)}`` for every recorded version that differs here."""
    here = package_versions()
    recorded = recorded or {}
    return {name: (str(v), here.get(name)) for name, v in recorded.items() if here.get(name) != str(v)}


def warn_if_different(recorded: dict[str, Any] | None, what: str) -> dict[str, tuple[str, str | None]]:
    """Log a warning naming every package whose version differs from the one that wrote ``what``."""
    diff = differences(recorded)
    if diff:
        text = ", ".join(f"{n} {old} -> {new or 'not installed'}" for n, (old, new) in sorted(diff.items()))
        logger.warning(
            "%s was written with other versions than are installed here (%s); predictions may differ "
            "slightly. Install the recorded versions (predictor.json 'versions') to reproduce them exactly",
            what,
            text,
        )
    return diff
