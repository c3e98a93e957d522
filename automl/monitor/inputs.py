"""Read what the monitor compares with the baseline: data-capture files (``serving.capture``
JSON lines: one request per line with its rows and response), or any table (CSV, Parquet,
JSON lines; a file or a directory of files; a DataFrame).

Predictions come from the captured responses (``predictions`` / ``probabilities``) or from a
table's ``prediction`` / ``proba_<class>`` columns (as written by ``automl predict``).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.data import detect_format, is_remote, load_table
from automl.exceptions import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".csv", ".csv.gz", ".parquet", ".pq")


@dataclass
class Observations:
    features: pd.DataFrame
    predictions: pd.DataFrame | None  # columns: label, score (binary), value (regression)
    files: list[str] = field(default_factory=list)
    n_requests: int | None = None
    model_versions: dict[str, int] = field(default_factory=dict)
    skipped_lines: int = 0


def _files(path: str) -> list[str]:
    if is_remote(path):
        return [path]
    p = Path(path[len("file://") :] if path.startswith("file://") else path)
    if not p.exists():
        raise DataError(
            f"capture {path!r} does not exist; give a capture directory or a CSV/Parquet/JSONL file"
        )
    if p.is_file():
        return [str(p)]
    found = sorted(
        str(f)
        for f in p.rglob("*")
        if f.is_file() and f.name.lower().endswith(SUFFIXES) and not f.name.startswith(".")
    )
    if not found:
        raise DataError(f"capture directory {path!r} holds no .jsonl, .csv or .parquet files")
    return found


def _json_lines(path: str) -> tuple[list[dict[str, Any]], int]:
    opener = gzip.open if path.endswith(".gz") else open
    records, bad = [], 0
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                bad += 1  # e.g. the last line of a file being written
    return records, bad


def _response_predictions(response: Any, n: int, classes: list[str] | None) -> list[dict[str, Any]] | None:
    if not isinstance(response, dict):
        return None
    probs = response.get("probabilities")
    if isinstance(probs, list) and len(probs) == n and classes:
        out = []
        for p in probs:
            vec = [float(p.get(c, np.nan)) for c in classes]
            row = {"label": classes[int(np.nanargmax(vec))]}
            if len(classes) == 2:
                row["score"] = vec[1]
            out.append(row)
        return out
    preds = response.get("predictions")
    if isinstance(preds, list) and len(preds) == n:
        key = "label" if classes else "value"
        return [{key: (str(v) if classes else v)} for v in preds]
    return None


def _from_events(
    events: list[dict[str, Any]], classes: list[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    rows: list[dict[str, Any]] = []
    preds: list[dict[str, Any]] = []
    for ev in events:
        ev_rows = [r for r in ev.get("rows") or [] if isinstance(r, dict)]
        got = _response_predictions(ev.get("response"), len(ev_rows), classes)
        rows += ev_rows
        preds += got if got is not None else [{}] * len(ev_rows)
    pred_df = pd.DataFrame(preds) if any(preds) else None
    return pd.DataFrame(rows), pred_df


def _split_table(df: pd.DataFrame, classes: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A table's own prediction columns (``prediction``, ``proba_<c>``, ``__proba_<c>``) are
    predictions, not features."""
    pred: dict[str, Any] = {}
    drop = [
        c
        for c in df.columns
        if c in ("prediction", "__prediction") or str(c).startswith(("proba_", "__proba_", "__row", "__fold"))
    ]
    for prefix in ("proba_", "__proba_"):
        cols = [f"{prefix}{c}" for c in classes or []]
        if classes and all(c in df.columns for c in cols):
            p = df[cols].to_numpy(dtype=float)
            pred["label"] = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
            if len(classes) == 2:
                pred["score"] = p[:, 1]
            break
    for col in ("prediction", "__prediction"):
        if col in df.columns and "label" not in pred:
            pred["label" if classes else "value"] = (
                df[col].astype(str).to_numpy() if classes else df[col].to_numpy()
            )
    pred_df = pd.DataFrame(pred, index=df.index).reset_index(drop=True) if pred else None
    return df.drop(columns=drop).reset_index(drop=True), pred_df


def read_observations(source: str | Path | pd.DataFrame, *, classes: list[Any] | None = None) -> Observations:
    """The rows (and predictions, when recorded) in ``source``."""
    keys = [str(c) for c in classes] if classes else None
    if isinstance(source, pd.DataFrame):
        feats, preds = _split_table(load_table(source, name="capture"), keys)
        return Observations(feats, preds)
    files = _files(str(source))
    parts: list[tuple[pd.DataFrame, pd.DataFrame | None]] = []
    n_requests, versions, skipped = 0, Counter(), 0
    for f in files:
        fmt = detect_format(f)
        if fmt == "jsonl" and not is_remote(f):
            records, bad = _json_lines(f)
            skipped += bad
            events = [r for r in records if isinstance(r.get("rows"), list)]
            if events:
                n_requests += len(events)
                versions.update(str(e.get("model_version")) for e in events)
                parts.append(_from_events(events, keys))
            plain = [r for r in records if not isinstance(r.get("rows"), list)]
            if plain:
                parts.append(_split_table(pd.DataFrame(plain), keys))
        else:
            parts.append(_split_table(load_table(f, name="capture"), keys))
    frames = [p[0] for p in parts if len(p[0])]
    if not frames:
        raise DataError(f"{str(source)!r} holds no rows to monitor ({len(files)} file(s) read)")
    features = load_table(pd.concat(frames, ignore_index=True), name="capture")
    preds = None
    if any(p[1] is not None for p in parts):
        preds = pd.concat(
            [p[1] if p[1] is not None else pd.DataFrame(index=range(len(p[0]))) for p in parts],
            ignore_index=True,
        )
    if skipped:
        logger.warning("skipped %d unreadable lines in %s (a file being written?)", skipped, source)
    return Observations(features, preds, files, n_requests or None, dict(versions), skipped)
