"""The fit's clock: the time limit counted from the start (the CLI's: its process's start, imports
included), the deadline of each stage after the search (the end, less the seconds the later stages
keep), and the list of what was skipped or cut for time (``run.json`` ``cut_for_time``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class Clock:
    start: float  # time.time() the limit counts from
    limit: float | None  # seconds; None: no time limit
    end_reserve_s: float = 0.0  # seconds kept after the last stage (stopping a Ray this fit started)
    excluded_s: float = 0.0  # seconds not counted (scoring test_data)
    cuts: list[str] = field(default_factory=list)

    @property
    def end(self) -> float | None:
        """When the fit's last stage must be done."""
        if self.limit is None:
            return None
        return self.start + self.limit + self.excluded_s - self.end_reserve_s

    def until(self, keep_s: float) -> float | None:
        """A stage's deadline: the end, less ``keep_s`` seconds for the stages after it."""
        return None if self.end is None else self.end - keep_s

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.time()

    def elapsed(self) -> float:
        return time.time() - self.start - self.excluded_s

    def cut(self, what: str) -> None:
        logger.info("cut for time: %s", what)
        self.cuts.append(what)


def process_start_time() -> float:
    """When this process started (``time.time()`` scale): the CLI counts its time limit from there.

    On Linux from ``/proc`` (its start in clock ticks after boot, and the seconds since boot, both to
    the hundredth); elsewhere psutil's figure (which rounds the boot time to the second)."""
    import os

    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        import psutil

        return float(psutil.Process().create_time())
