"""Loading tables: CSV (plain or gzip), Parquet (a file or a directory of files), JSON lines (and a
JSON array in a ``.json`` file); local paths, ``file://`` and ``s3://`` URIs; pandas DataFrames;
``ray.data.Dataset``.

S3-compatible stores other than AWS are reached by setting ``AWS_ENDPOINT_URL`` (honoured by
s3fs/botocore), together with the usual ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Union

import pandas as pd

from automl.exceptions import DataError

logger = logging.getLogger(__name__)

#: cell values read as missing in addition to pandas' defaults ("", "NA", "NaN", "null", ...)
EXTRA_MISSING_MARKERS = ("?",)

TableSource = Union[str, os.PathLike, pd.DataFrame, Any]  # noqa: UP007 (a runtime alias)  # Any: ray.data.Dataset

_FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "csv",
    ".tsv.gz": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".json.gz": "json",
}


def detect_format(path: str) -> str:
    low = path.lower()
    if low.endswith("/"):
        return "parquet"  # a directory (prefix) of Parquet files, as Spark and Ray Data write them
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if low.endswith(suffix):
            return _FORMATS[suffix]
    raise DataError(
        f"cannot tell the format of {path!r} from its name; use a .csv, .csv.gz, .parquet or .jsonl file "
        "(or a directory of .parquet files; a URI of one ends with '/')"
    )


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def storage_options(path: str) -> dict[str, Any] | None:
    """fsspec options for a URI: an S3 endpoint from ``AWS_ENDPOINT_URL`` when set."""
    if path.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        return {"client_kwargs": {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}}
    return None


def _local_path(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def load_table(source: TableSource, *, name: str = "data") -> pd.DataFrame:
    """Read ``source`` into a DataFrame. A DataFrame is copied, never modified in place.

    Raises :class:`DataError` naming the problem (no such file, empty file, header only,
    duplicate column names, a wrong delimiter that leaves one column, an unreadable file).
    """
    from_csv = False
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    elif _is_ray_dataset(source):
        df = source.to_pandas()
        logger.info("read %s: %d rows x %d columns from a ray.data.Dataset", name, len(df), df.shape[1])
    elif isinstance(source, (str, os.PathLike)):
        df, fmt = _read_path(str(source), name)
        from_csv = fmt == "csv"
    else:
        raise DataError(
            f"{name}: cannot read a {type(source).__name__}; pass a path, a URI, a pandas DataFrame "
            "or a ray.data.Dataset"
        )
    return _mark_missing(_check_columns(df, name, from_csv=from_csv), name)


def _is_ray_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("ray.data") and hasattr(obj, "to_pandas")


def _read_path(path: str, name: str) -> tuple[pd.DataFrame, str]:
    if not is_remote(path):
        local = Path(_local_path(path))
        if not local.exists():
            raise DataError(f"{name}: file {str(local)!r} does not exist; check the path")
        if local.is_dir():
            if not any(local.glob("*.parquet")):
                raise DataError(f"{name}: {str(local)!r} is a directory without .parquet files; pass a file")
            path = str(local) + "/"
        elif local.stat().st_size == 0:
            raise DataError(f"{name}: file {str(local)!r} is empty (0 bytes)")
        else:
            path = str(local)
    fmt = detect_format(path)
    opts = storage_options(path)
    try:
        df = _read(path, fmt, opts)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: {path!r} holds no data (not even a header)") from None
    except FileNotFoundError:
        raise DataError(f"{name}: {path!r} does not exist; check the bucket and key") from None
    except PermissionError as exc:
        raise DataError(
            f"{name}: access to {path!r} was denied ({_first_line(exc)}); check the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; AWS_ENDPOINT_URL for S3-compatible "
            "stores)"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"{name}: cannot read {path!r} as {fmt}: {_first_line(exc)}") from exc
    except Exception as exc:  # noqa: BLE001  remote stores raise their own types (botocore, aiohttp)
        if not is_remote(path):
            raise
        raise DataError(f"{name}: cannot read {path!r}: {type(exc).__name__}: {_first_line(exc)}") from exc
    logger.info("read %s: %d rows x %d columns from %s", name, len(df), df.shape[1], path)
    return df, fmt


def _read(path: str, fmt: str, opts: dict[str, Any] | None) -> pd.DataFrame:
    if fmt == "csv":
        sep = "\t" if ".tsv" in path.lower() else ","
        return pd.read_csv(path, sep=sep, storage_options=opts, low_memory=False)
    if fmt == "parquet":
        return pd.read_parquet(path, storage_options=opts)
    if fmt == "json" and _starts_with_bracket(path, opts):
        return pd.read_json(path, orient="records", storage_options=opts)  # one JSON array of records
    return pd.read_json(path, lines=True, storage_options=opts)


def _starts_with_bracket(path: str, opts: dict[str, Any] | None) -> bool:
    import fsspec

    with fsspec.open(path, "rt", compression="infer", **(opts or {})) as f:
        return f.read(4096).lstrip().startswith("[")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_columns(df: pd.DataFrame, name: str, *, from_csv: bool = False) -> pd.DataFrame:
    cols = [str(c) for c in df.columns]
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    # pandas renames a repeated CSV header "a" to "a.1": report those as duplicates too
    mangled = sorted(
        c
        for c in cols
        if from_csv and "." in c and c.rsplit(".", 1)[0] in cols and c.rsplit(".", 1)[1].isdigit()
    )
    if dupes or mangled:
        raise DataError(
            f"{name}: duplicate column names {dupes or mangled}; rename the columns so each is unique"
        )
    df.columns = cols
    if df.shape[1] == 0:
        raise DataError(f"{name}: the table is empty (no columns{'' if len(df) else ' and no rows'})")
    if len(df) == 0:
        raise DataError(f"{name}: the table has a header but no rows")
    if df.shape[1] == 1 and any(sep in cols[0] for sep in (";", "\t", "|")):
        raise DataError(
            f"{name}: the table has a single column named {cols[0][:60]!r}, which looks like a wrong "
            "delimiter; save it as comma-separated CSV (or .tsv for tabs)"
        )
    return df


def _mark_missing(df: pd.DataFrame, name: str) -> pd.DataFrame:
    for col in df.columns:
        s = df[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            stripped = s.astype("string").str.strip()
            hits = stripped.isin(EXTRA_MISSING_MARKERS)
            n = int(hits.sum())
            if n:
                df[col] = s.mask(hits)
                logger.info(
                    "%s: %d cells of column %r held a missing-value marker %s; read as missing",
                    name,
                    n,
                    col,
                    list(EXTRA_MISSING_MARKERS),
                )
    return df


def align_channel(train: pd.DataFrame, other: pd.DataFrame, name: str, *, target: str) -> pd.DataFrame:
    """Check a validation or test table against the training table: it must hold the target and
    every training column (extra columns are dropped, with a log line). Returns its columns in
    training order."""
    missing = [c for c in train.columns if c not in other.columns]
    if missing:
        raise DataError(
            f"{name}: the table lacks columns of the training table: {missing[:30]}; "
            "give it the same columns as the training data"
        )
    extra = [c for c in other.columns if c not in train.columns]
    if extra:
        logger.info("%s: ignoring %d columns not in the training table: %s", name, len(extra), extra[:30])
    if other[target].isna().all():
        raise DataError(f"{name}: target column {target!r} is missing in every row")
    return other[list(train.columns)]
