"""Measurements the peers' ``scoring.py`` does not cover: the memory of a whole process tree (the
driver plus its Ray processes), and descriptions of the environment and the machine."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import threading
from pathlib import Path
from typing import Any

from automl.versions import package_versions
from bench.common import REPO

#: packages described in machine.json beside the ones a model records (automl.versions)
EXTRA_PACKAGES = ("optuna", "fastapi", "uvicorn")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_pids(root: int | None = None) -> list[int]:
    """``root`` (default: this process) and all its descendants."""
    root = root or os.getpid()
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _cpu_s(pid: int) -> tuple[str, float] | None:
    """(start time, user+system CPU seconds) of one process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB: PSS shares pages mapped by several processes (Ray's object store, libraries)
    among them, so PSS summed over a tree counts each page once."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return pss, rss


class TreeMemorySampler:
    """Samples the summed PSS and RSS of this process tree every ``interval_s`` in a thread, and the
    CPU time of every process seen in it (Ray workers are not our waited-for children, so
    ``getrusage`` misses them)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak_pss_kb = 0
        self.peak_rss_kb = 0
        self.peak_processes = 0
        self.samples = 0
        self._cpu: dict[tuple[int, str], float] = {}
        self._cpu_start: dict[tuple[int, str], float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)

    def sample(self) -> None:
        pids = tree_pids()
        mem = [_memory_kb(p) for p in pids]
        self.peak_pss_kb = max(self.peak_pss_kb, sum(m[0] for m in mem))
        self.peak_rss_kb = max(self.peak_rss_kb, sum(m[1] for m in mem))
        self.peak_processes = max(self.peak_processes, len(pids))
        for pid in pids:
            cpu = _cpu_s(pid)
            if cpu is not None:
                self._cpu[(pid, cpu[0])] = cpu[1]
        if self._cpu_start is None:
            self._cpu_start = dict(self._cpu)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> TreeMemorySampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def __enter__(self) -> TreeMemorySampler:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def cpu_s(self) -> float:
        """CPU seconds used by the tree since the sampler started (processes that ended between two
        samples lose their last interval)."""
        start = self._cpu_start or {}
        return sum(v - start.get(k, 0.0) for k, v in self._cpu.items())

    def result(self) -> dict[str, Any]:
        return {
            "peak_tree_pss_mb": self.peak_pss_kb / 1024,
            "peak_tree_rss_sum_mb": self.peak_rss_kb / 1024,
            "peak_tree_processes": self.peak_processes,
            "tree_samples": self.samples,
            "tree_sample_interval_s": self.interval_s,
        }


def git_state() -> dict[str, Any]:
    def git(*a: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def environment(load_start: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """Like run_peer.py's ``environment`` block."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "packages": package_versions(EXTRA_PACKAGES),
        "git": git_state(),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg": os.getloadavg(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), None
        )
        mem = Path("/proc/meminfo").read_text().splitlines()
        info["memory_total_gb"] = int(mem[0].split()[1]) / 2**20
    except (OSError, IndexError, ValueError):
        pass
    try:
        import torch

        info["gpus"] = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a description, not a requirement
        info["gpus"] = None
    info["python"] = platform.python_version()
    info["packages"] = package_versions(EXTRA_PACKAGES)
    info["git"] = git_state()
    return info
