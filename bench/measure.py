"""Measurements the peers' ``scoring.py`` does not cover: the memory of a whole process tree (the
driver plus its Ray processes), and descriptions of the environment and the machine."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import threading
import time
import timeit
from collections.abc import Callable
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


def tree_pids(root: int | None = None, kids: dict[int, list[int]] | None = None) -> list[int]:
    """``root`` (default: this process) and all its descendants."""
    root = root or os.getpid()
    kids, out, todo = kids if kids is not None else _children(), [], [root]
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


def _memory_kb(pid: int, shmem: bool = False) -> tuple[int, ...]:
    """(PSS, RSS) in KiB: PSS shares pages mapped by several processes (Ray's object store, libraries)
    among them, so PSS summed over a tree counts each page once. ``shmem``: a third figure, the PSS
    of shared memory (``Pss_Shmem``: for a Ray process, its share of the object store's pages)."""
    keys = ("Pss:", "Rss:", "Pss_Shmem:") if shmem else ("Pss:", "Rss:")
    out = dict.fromkeys(keys, 0)
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(maxsplit=1)[0] if line else ""
            if key in out:
                out[key] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return tuple(out[k] for k in keys)


def pids_with_cmdline(fragment: str) -> list[int]:
    """Processes whose command line contains ``fragment`` (e.g. a Ray session directory)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if fragment.encode() in Path(entry.path, "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def process_label(pid: int) -> str:
    """What a process is, for a memory breakdown: its command line's program and first argument,
    shortened (Ray's workers rename themselves, e.g. ``ray::_RayTrainWorker__execute``)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in args if a][:3]
    words = [Path(w).name if w.startswith("/") else w for w in words]
    return " ".join(words)[:80] or "?"


def ray_session_dir() -> str | None:
    """The session directory of the Ray this process is connected to (None: not connected). Every
    process Ray starts for a session has it on its command line (raylet, GCS, agents, workers)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return ray._private.worker.global_worker.node.get_session_dir_path()
    except Exception:  # noqa: BLE001 - a measurement aid: no session known
        return None


#: seconds between two points of a sampler's memory timeline
TIMELINE_STEP_S = 10.0


class TreeMemorySampler:
    """Samples the summed PSS and RSS of this process tree every ``interval_s`` in a thread, and the
    CPU time of every process seen in it (Ray workers are not our waited-for children, so
    ``getrusage`` misses them).

    ``also`` returns a command-line fragment (e.g. :func:`ray_session_dir`): processes outside the
    tree whose command line holds it, and their descendants, are summed too, and counted in
    ``outside_tree_pids``. The
    processes ``ray.init`` starts (GCS, raylet, agents, and the raylet's workers) are descendants of
    the driver, so for a local Ray that count stays 0; it would not for a Ray started elsewhere."""

    def __init__(self, interval_s: float = 0.5, also: Callable[[], str | None] | None = None) -> None:
        self.interval_s = interval_s
        self.also = also
        self.outside_tree: set[int] = set()
        self.peak_pss_kb = 0
        self.peak_rss_kb = 0
        self.peak_processes = 0
        self.peak_at_s: float | None = None
        self.peak_breakdown: list[tuple[str, float, float]] = []
        self.timeline: list[tuple[float, float, int]] = []
        self.samples = 0
        self._t0 = time.perf_counter()
        self._cpu: dict[tuple[int, str], float] = {}
        self._cpu_start: dict[tuple[int, str], float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)

    def sample(self) -> None:
        kids = _children()
        pids = tree_pids(kids=kids)
        fragment = self.also() if self.also else None
        if fragment:  # Ray's workers rename themselves ("ray::IDLE"): take the matches' descendants
            extra = {p for root in pids_with_cmdline(fragment) for p in tree_pids(root, kids)} - set(pids)
            self.outside_tree |= extra
            pids += sorted(extra)
        mem = [_memory_kb(p, shmem=True) for p in pids]  # PSS, RSS, object-store PSS: one read each
        pss_kb, elapsed = sum(m[0] for m in mem), time.perf_counter() - self._t0
        if pss_kb > self.peak_pss_kb:  # what the peak is made of, and when it happened
            self.peak_pss_kb, self.peak_at_s = pss_kb, elapsed
            self.peak_breakdown = sorted(
                (
                    (f"{pid} {process_label(pid)}", m[0] / 1024, m[2] / 1024)
                    for pid, m in zip(pids, mem)
                    if m[0]
                ),
                key=lambda x: -x[1],
            )
        if not self.timeline or elapsed - self.timeline[-1][0] >= TIMELINE_STEP_S:
            self.timeline.append((elapsed, pss_kb / 1024, len(pids)))
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
            "outside_tree_pids": len(self.outside_tree),
            "peak_at_s": self.peak_at_s,
            # [process, PSS MB, of which shared memory (the object store's pages) MB]
            "peak_breakdown_mb": [
                [label, round(mb, 1), round(sh, 1)] for label, mb, sh in self.peak_breakdown
            ],
            "timeline_s_mb_processes": [[round(t, 1), round(mb, 1), n] for t, mb, n in self.timeline],
        }


class RayStoreSampler:
    """Polls the object store statistics of the Ray this process is connected to every
    ``interval_s`` in a thread (cumulative spilled/restored bytes and the peak of bytes in use),
    so the figures survive a fit that shuts Ray down before the caller can ask.

    The figures: :func:`automl.streaming.store.store_counters` (the raylet's memory info reply)."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.stats: dict[str, Any] = {}
        self.peak_used_bytes = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-ray-store", daemon=True)

    def sample(self) -> None:
        from automl.streaming.store import store_counters

        s = store_counters()
        if s is None:  # Ray going down between two polls, a timeout
            self.errors = [*self.errors[-4:], "no object store figures (Ray down or no reply)"]
            return
        self.peak_used_bytes = max(self.peak_used_bytes, s.pop("object_store_bytes_used"))
        self.stats = s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> RayStoreSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def result(self) -> dict[str, Any]:
        return {
            **self.stats,
            "object_store_peak_used_bytes": self.peak_used_bytes,
            "polled": bool(self.stats),
            "poll_interval_s": self.interval_s,
            "poll_errors": self.errors,
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


#: the speed probe's workloads: a pure-Python loop and a seeded single-threaded LightGBM fit
PROBE_LOOP, PROBE_ROWS, PROBE_ROUNDS = 5_000_000, 20_000, 100


def speed_probe(repeats: int = 3) -> dict[str, float]:
    """Seconds (best of ``repeats``) of two fixed single-threaded workloads: this 2-core machine's
    speed moved from day to day (the same code trained 40 % fewer trials in one 60 s fit on a
    slow day), so results of different runs compare only beside this probe. Lower is faster."""
    import lightgbm
    import numpy as np

    def best(fn: Callable[[], Any]) -> float:
        return round(min(timeit.repeat(fn, number=1, repeat=repeats)), 3)

    def loop() -> int:
        total = 0
        for i in range(PROBE_LOOP):
            total += i
        return total

    rng = np.random.default_rng(0)
    X = rng.normal(size=(PROBE_ROWS, 20))
    y = X[:, 0] + np.sin(3 * X[:, 1]) + rng.normal(scale=0.3, size=PROBE_ROWS)
    params = {"objective": "regression", "num_threads": 1, "verbosity": -1, "seed": 0}
    return {
        "python_loop_s": best(loop),
        "lightgbm_fit_s": best(lambda: lightgbm.train(params, lightgbm.Dataset(X, y), PROBE_ROUNDS)),
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
    info["speed_probe"] = speed_probe()
    info["python"] = platform.python_version()
    info["packages"] = package_versions(EXTRA_PACKAGES)
    info["git"] = git_state()
    return info
