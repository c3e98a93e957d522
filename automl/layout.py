"""The run directory and the Predictor artifact: every file name, in one place.

A run directory (``automl fit --output DIR``) holds the Predictor and what the search left::

    predictor.json             the Predictor's manifest (format, problem, schema, members, versions)
    checksums.json             sha256 of every Predictor file, verified before anything is loaded
    preprocessing/<recipe>.json  fitted preprocessing state (plain data)
    models/<member>/fold_<i>/  native model files
    profile.json               the training data profile (drift baseline)
    leaderboard.csv            every trial, stack model and ensemble
    validation_sample.parquet  training rows with the chosen model's out-of-fold predictions
                               (the monitor's prediction baseline, the report's evaluation)
    run.json                   why the search ended, timings, decisions, lineage
    folds.json                 the validation folds
    report.html                the HTML report
    options/<name>/            the other deployment options on the Pareto front of validation
                               score against latency, each a Predictor (``automl serve`` takes it)
    search/  train/  fallback/ the Ray Tune experiment, Ray Train runs, a fallback model

Which of these belong to the Predictor (and are checksummed), which a registered version keeps
and which stay behind when a run is published to shared storage are defined here too, so
renaming a file is a one-line change.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = "predictor.json"
CHECKSUMS = "checksums.json"
PREPROCESSING_DIR = "preprocessing"
MODELS_DIR = "models"
PROFILE = "profile.json"
LEADERBOARD = "leaderboard.csv"
VALIDATION_SAMPLE = "validation_sample.parquet"
RUN_INFO = "run.json"
FOLDS = "folds.json"
REPORT = "report.html"
SEARCH_DIR = "search"
TRAIN_DIR = "train"
FALLBACK_DIR = "fallback"
OPTIONS_DIR = "options"

#: directories whose every file belongs to the Predictor
PREDICTOR_DIRS = (PREPROCESSING_DIR, MODELS_DIR)
#: single files of the Predictor besides its manifest, checksummed when present
PREDICTOR_FILES = (PROFILE, LEADERBOARD, VALIDATION_SAMPLE)
#: files and folders a registered model version keeps (the search state and folds stay behind)
REGISTRY_KEEP = (MANIFEST, CHECKSUMS, *PREDICTOR_FILES, RUN_INFO, REPORT, *PREDICTOR_DIRS)
#: run-directory entries not copied to shared storage when a run is published (already there)
NOT_PUBLISHED = (SEARCH_DIR, TRAIN_DIR)


def preprocessing_file(recipe: str) -> str:
    return f"{PREPROCESSING_DIR}/{recipe}.json"


def model_dir(member: str, fold: int) -> str:
    return f"{MODELS_DIR}/{member}/fold_{fold}"


def predictor_files(path: Path) -> list[Path]:
    """Every file of the Predictor in ``path`` that exists (what ``checksums.json`` covers)."""
    files = [path / MANIFEST]
    for sub in PREDICTOR_DIRS:
        files += sorted(p for p in (path / sub).rglob("*") if p.is_file())
    files += [path / n for n in PREDICTOR_FILES if (path / n).is_file()]
    return files
