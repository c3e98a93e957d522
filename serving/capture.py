"""Data capture: a sampled share of an endpoint's requests and responses, as JSON lines.

The endpoint calls :meth:`DataCapture.record` once per successful prediction. ``record`` never
blocks and never raises: it samples, then puts the event on a bounded queue (dropping and
counting it when the queue is full); a background thread serialises the events and appends them
to rotating files ``capture-<UTC time>-<pid>-<seq>.jsonl`` in the capture directory. A file is
closed before it would pass ``max_file_bytes``; beyond ``max_files`` files the oldest are
deleted. When the directory cannot be written, events are dropped and counted, and writing is
retried every few seconds. One line per request::

    {"event_id": "...", "captured_at": "2026-01-01T00:00:00.000Z", "endpoint": "predict",
     "model_version": "...", "n_rows": 2, "rows": [{...}, {...}], "response": {...}}

``automl monitor MODEL CAPTURE_DIR`` reads these files.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.exceptions import ConfigError

logger = logging.getLogger(__name__)

FILE_PREFIX = "capture-"
FILE_SUFFIX = ".jsonl"
RETRY_AFTER_S = 5.0
_STOP = object()


@dataclass(frozen=True)
class CaptureConfig:
    """Where and how much to capture.

    Args:
        directory: local directory for the JSON-lines files (created when missing).
        sample_rate: share of requests captured, 0..1 (1.0: every request).
        max_file_bytes: a file is rotated before it passes this size.
        max_files: the most files kept; older ones are deleted (total size <= max_files * max_file_bytes).
    """

    directory: str
    sample_rate: float = 1.0
    max_file_bytes: int = 10_000_000
    max_files: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.directory, (str, os.PathLike)) or not str(self.directory).strip():
            raise ConfigError(f"capture directory must be a non-empty path; got {self.directory!r}")
        if "://" in str(self.directory):
            raise ConfigError(f"capture directory must be a local path; got {self.directory!r}")
        if (
            isinstance(self.sample_rate, bool)
            or not isinstance(self.sample_rate, (int, float))
            or not 0.0 <= float(self.sample_rate) <= 1.0
        ):
            raise ConfigError(f"capture sample_rate must be a number from 0 to 1; got {self.sample_rate!r}")
        if (
            isinstance(self.max_file_bytes, bool)
            or not isinstance(self.max_file_bytes, int)
            or self.max_file_bytes < 1024
        ):
            raise ConfigError(
                f"capture max_file_bytes must be an integer >= 1024; got {self.max_file_bytes!r}"
            )
        if isinstance(self.max_files, bool) or not isinstance(self.max_files, int) or self.max_files < 1:
            raise ConfigError(f"capture max_files must be an integer >= 1; got {self.max_files!r}")


class DataCapture:
    """Writes sampled request/response events in a background thread; see the module docstring."""

    def __init__(self, config: CaptureConfig, *, queue_size: int = 1000, seed: int | None = None) -> None:
        self.config = config
        self.directory = Path(config.directory).expanduser()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # guards the counters only; never held during I/O
        self._counts = {
            "seen": 0,
            "sampled": 0,
            "written": 0,
            "dropped_queue_full": 0,
            "dropped_write_error": 0,
            "dropped_too_large": 0,
            "errors": 0,
            "bytes_written": 0,
            "files_rotated": 0,
        }
        self._file: Any = None
        self._file_path: Path | None = None
        self._file_bytes = 0
        self._seq = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="automl-data-capture", daemon=True)
        self._thread.start()
        logger.info(
            "data capture to %s: sample rate %.3g, files up to %d bytes, at most %d files",
            self.directory,
            config.sample_rate,
            config.max_file_bytes,
            config.max_files,
        )

    # -- the caller's side: cheap, never raises ---------------------------------------------------
    def record(self, *, endpoint: str, rows: list[dict], response: dict, model_version: str) -> None:
        """Queue one request/response event (if sampled). Never blocks, never raises."""
        try:
            self._add("seen")
            rate = self.config.sample_rate
            if self._closed or rate <= 0.0 or (rate < 1.0 and self._rng.random() >= rate):
                return
            self._add("sampled")
            event = (time.time(), endpoint, model_version, rows, response)
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._add("dropped_queue_full")
        except Exception:  # capture must never fail a request
            self._add("errors")

    def _add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out["dropped"] = out["dropped_queue_full"] + out["dropped_write_error"] + out["dropped_too_large"]
        out.update(
            queued=self._queue.qsize(),
            directory=str(self.directory),
            sample_rate=self.config.sample_rate,
            current_file=str(self._file_path) if self._file_path else None,
            last_error=self._last_error,
        )
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout`` seconds), then stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            logger.warning(
                "data capture: queue still full at close; %d events not written", self._queue.qsize()
            )
        self._thread.join(timeout)

    def __enter__(self) -> DataCapture:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not _STOP and len(batch) < 256:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            for event in batch:
                if event is _STOP:
                    self._close_file()
                    return
                self._write_event(event)
            self._flush()

    def _write_event(self, event: tuple) -> None:
        ts, endpoint, model_version, rows, response = event
        try:
            line = (
                json.dumps(
                    {
                        "event_id": uuid.uuid4().hex,
                        "captured_at": _iso(ts),
                        "endpoint": endpoint,
                        "model_version": model_version,
                        "n_rows": len(rows),
                        "rows": rows,
                        "response": response,
                    },
                    default=_jsonable,
                )
                + "\n"
            ).encode()
        except Exception as exc:
            self._fail(f"cannot serialise an event: {exc}", "errors")
            return
        if len(line) > self.config.max_file_bytes:
            self._add("dropped_too_large")
            return
        if time.monotonic() < self._retry_at:
            self._add("dropped_write_error")
            return
        try:
            if self._file is None or self._file_bytes + len(line) > self.config.max_file_bytes:
                self._rotate()
            self._file.write(line)
            self._file_bytes += len(line)
            with self._lock:
                self._counts["written"] += 1
                self._counts["bytes_written"] += len(line)
        except Exception as exc:  # OSError (read-only, full disk, ...) or anything else
            self._close_file()
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            self._fail(f"cannot write to {self.directory}: {exc}", "dropped_write_error")

    def _fail(self, message: str, counter: str) -> None:
        self._add(counter)
        first = message != self._last_error
        self._last_error = message
        if first:
            logger.warning("data capture: %s; events are dropped and counted (see stats())", message)

    def _rotate(self) -> None:
        self._close_file()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._seq:05d}{FILE_SUFFIX}"
        self._file = open(path, "ab")
        self._file_path = path
        self._file_bytes = 0
        self._add("files_rotated")
        self._prune()

    def _prune(self) -> None:
        files = sorted(p for p in self.directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if p != self._file_path)
        for old in files[: max(0, len(files) - (self.config.max_files - 1))]:
            try:
                old.unlink()
            except OSError:
                pass

    def _flush(self) -> None:
        try:
            if self._file is not None:
                self._file.flush()
        except Exception as exc:
            self._close_file()
            self._fail(f"cannot write to {self.directory}: {exc}", "errors")

    def _close_file(self) -> None:
        f, self._file, self._file_path = self._file, None, None
        if f is not None:
            try:
                f.close()
            except Exception:
                pass


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


__all__ = ["CaptureConfig", "DataCapture"]
