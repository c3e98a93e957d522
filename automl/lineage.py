"""Lineage of a fit: what data, which call, which code. Recorded in run.json (the registry reads it)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd


def data_fingerprint(source: Any, df: pd.DataFrame) -> dict[str, Any]:
    """sha256 of the training file when it is a local file, else of the table's content."""
    if isinstance(source, (str, os.PathLike)) and Path(str(source).removeprefix("file://")).is_file():
        from automl.predictor import sha256_file

        path = Path(str(source).removeprefix("file://"))
        return {"data": str(path.resolve()), "data_sha256": sha256_file(path), "data_sha256_of": "file"}
    digest = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()
    name = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    return {"data": name, "data_sha256": digest, "data_sha256_of": "table content"}


def git_info(cwd: str | None = None) -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5, cwd=cwd
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"


def lineage(source: Any, df: pd.DataFrame, call: str) -> dict[str, Any]:
    return {**data_fingerprint(source, df), "command": command_line(), "call": call, "git": git_info()}
