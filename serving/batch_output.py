"""Where a batch transform writes: the scored rows (CSV, gzipped CSV or Parquet, appended chunk by
chunk) and the errors file (the rows that failed validation, with the error-rate limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from automl.exceptions import DataError

#: the error rate is judged once this many rows were read (and at the end)
MIN_ROWS_FOR_RATE = 1000


def default_errors_path(output: str) -> str:
    """``out.csv`` -> ``out.errors.csv`` (also for ``.csv.gz`` and ``.parquet`` outputs)."""
    for suffix in (".csv.gz", ".parquet", ".pq", ".csv"):
        if output.lower().endswith(suffix):
            return output[: -len(suffix)] + ".errors.csv"
    return output + ".errors.csv"


class Writer:
    """Appends scored chunks to one CSV (optionally gzipped) or Parquet file."""

    def __init__(self, path: str) -> None:
        low = path.lower()
        if not low.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
            raise DataError(f"output {path!r} must end in .csv, .csv.gz or .parquet")
        self.path = path
        self.fmt = "parquet" if low.endswith((".parquet", ".pq")) else "csv"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._pq: Any = None
        self._csv: Any = None

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "csv":
            if self._csv is None:
                import gzip

                self._csv = (
                    gzip.open(self.path, "wt", newline="")
                    if self.path.lower().endswith(".gz")
                    else open(self.path, "w", newline="")
                )
                df.to_csv(self._csv, index=False)
            else:
                df.to_csv(self._csv, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        # no pandas metadata: batches from Ray Data carry Arrow-backed dtypes that readers should not inherit
        table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.path, table.schema)
        elif table.schema != self._pq.schema:
            table = table.cast(self._pq.schema)
        self._pq.write_table(table)

    def close(self) -> None:
        for fh in (self._pq, self._csv):
            if fh is not None:
                fh.close()


class ErrorLog:
    """The errors file (opened on the first failed row) and the error-rate limit."""

    def __init__(self, path: str, max_rate: float) -> None:
        self.path = path
        self.max_rate = max_rate
        self.rows = 0
        self.first: str | None = None
        self._fh: Any = None

    def write(self, failed: pd.DataFrame) -> None:
        if self._fh is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", newline="")
            failed.to_csv(self._fh, index=False)
        else:
            failed.to_csv(self._fh, index=False, header=False)
        self._fh.flush()
        self.rows += len(failed)
        self.first = self.first or f"row {failed.iloc[0, 0]}: {failed.iloc[0, 1]}"

    def check_rate(self, rows_read: int, *, final: bool) -> None:
        if not rows_read or (not final and rows_read < MIN_ROWS_FOR_RATE):
            return
        rate = self.rows / rows_read
        if rate > self.max_rate:
            raise DataError(
                f"{self.rows} of {rows_read} rows read ({rate:.1%}) failed validation, above "
                f"--max-error-rate {self.max_rate:g}; the job stopped (the output holds the rows scored so "
                f"far). First error: {self.first}. All errors: {self.path}. Fix the input, or raise "
                "--max-error-rate to score the valid rows and skip the rest"
            )

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
