"""What the registry records about a model directory: its files with their sha256, metrics,
parameters, a data-profile summary and lineage (training data hash, training settings, the
registering command, package versions, git commit)."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from automl import layout
from automl.predictor import sha256_file
from automl.versions import package_versions

logger = logging.getLogger(__name__)


def version_files(model_dir: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of the files a version keeps."""
    files: dict[str, str] = {}
    for name in layout.REGISTRY_KEEP:
        p = model_dir / name
        if p.is_file():
            files[name] = sha256_file(p)
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    files[f.relative_to(model_dir).as_posix()] = sha256_file(f)
    return files


def verify_files(directory: Path, files: dict[str, str]) -> tuple[list[str], list[str]]:
    """(changed or missing, unexpected) files of ``directory`` against the recorded sha256."""
    bad = [
        rel
        for rel, digest in files.items()
        if not (directory / rel).is_file() or sha256_file(directory / rel) != digest
    ]
    present = {f.relative_to(directory).as_posix() for f in directory.rglob("*") if f.is_file()}
    return bad, sorted(present - set(files))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        logger.warning("could not read %s; its information is left out of the registry record", path)
        return {}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def metrics(model_dir: Path, manifest: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The chosen model's validation (and test) scores from ``leaderboard.csv``."""
    out: dict[str, Any] = {"metric": manifest.get("metric")}
    board_path = model_dir / layout.LEADERBOARD
    if board_path.is_file():
        board = pd.read_csv(board_path)
        chosen = (
            board[board["chosen"].astype(str).str.lower() == "true"] if "chosen" in board else board.head(0)
        )
        row = chosen.iloc[0] if len(chosen) else board.iloc[0]
        for k in ("model", "score_val", "score_std", "score_test"):
            if k in row.index:
                out[k] = _clean(row[k])
        out["n_trials"] = int((board["status"] != "ensemble").sum()) if "status" in board else len(board)
    if "validation" in run:
        out["validation"] = run["validation"]
    return out


def params(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        m["name"]: {"family": m["family"], "weight": m["weight"], "params": m.get("params", {})}
        for m in manifest.get("members", [])
    }


def profile_summary(model_dir: Path) -> dict[str, Any]:
    prof = _read_json(model_dir / layout.PROFILE)
    if not prof:
        return {}
    return {
        "target": prof.get("target"),
        "n_rows": prof.get("n_rows"),
        "n_columns": prof.get("n_columns"),
        "problem_type": prof.get("problem_type"),
        "metric": prof.get("metric"),
        "features": {c["name"]: c["kind"] for c in prof.get("columns", []) if c.get("role") == "feature"},
        "dropped": {
            c["name"]: c.get("drop_reason") for c in prof.get("columns", []) if c.get("role") == "dropped"
        },
        "warnings": [w.get("code") for w in prof.get("warnings", [])],
        "target_summary": prof.get("target_summary"),
    }


def git_commit(directory: Path) -> dict[str, Any] | None:
    """The commit (and whether the tree had changes) of the git checkout holding ``directory``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def lineage(
    model_dir: Path, run: dict[str, Any], manifest: dict[str, Any], *, training_data: str | None
) -> dict[str, Any]:
    """Where the model came from. The training data hash is the sha256 of ``training_data``
    (a local file) when given, else the ``data_sha256`` a fit recorded in ``run.json``."""
    data: dict[str, Any] = {"sha256": run.get("data_sha256"), "source": run.get("data")}
    if training_data:
        local = Path(
            training_data[len("file://") :] if training_data.startswith("file://") else training_data
        )
        data = {"source": training_data, "sha256": sha256_file(local) if local.is_file() else None}
    if not data["sha256"]:
        logger.info("no training data hash: pass training_data= (--training-data) to record one")
    settings = {
        k: run[k]
        for k in (
            "target",
            "problem_type",
            "metric",
            "time_limit_s",
            "search_strategy",
            "seed",
            "n_trials",
            "ended_because",
            "chosen",
        )
        if k in run
    }
    import automl

    return {
        "training_data": data,
        "profile_sha256": sha256_file(model_dir / layout.PROFILE)
        if (model_dir / layout.PROFILE).is_file()
        else None,
        "training_command": run.get("command"),
        "training_settings": settings,
        "model_version": manifest.get("info", {}).get("model_version"),
        "trained_at": manifest.get("info", {}).get("created_at"),
        "registered_with": " ".join(sys.argv) if sys.argv and sys.argv[0] else "python",
        "packages": package_versions(),
        "git": run.get("git") or git_commit(Path(automl.__file__).resolve().parent),
        "source_dir": str(model_dir.resolve()),
    }


def describe(model_dir: Path, *, training_data: str | None = None) -> dict[str, Any]:
    """metrics, params, profile and lineage of a model directory (already verified)."""
    manifest = _read_json(model_dir / layout.MANIFEST)
    run = _read_json(model_dir / layout.RUN_INFO)
    return {
        "problem_type": manifest.get("problem_type"),
        "target": manifest.get("target"),
        "classes": manifest.get("classes"),
        "metrics": metrics(model_dir, manifest, run),
        "params": params(manifest),
        "profile": profile_summary(model_dir),
        "lineage": lineage(model_dir, run, manifest, training_data=training_data),
    }
