"""Peer runs: AutoGluon-Tabular and FLAML through the shared ``run_peer.py``, one at a time.

The peers live in their own virtual environment (``requirements-peers.txt`` of the shared bench
folder: their pins clash with ours), so each run is a subprocess of that environment's Python.
Results land in ``OUT/peers/<system>_<table>_<budget>s_s<seed>.json`` in run_peer.py's RESULT
shape; the seed-0 results the shared folder already holds (``peers/<system>_<table>_60s.json``)
are used as they are instead of running again.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from automl.exceptions import ConfigError
from bench.common import Table, budget_label, read_json

logger = logging.getLogger("bench")

SYSTEMS = ("autogluon", "flaml")
#: run_peer.py's name of each system's result ("autogluon-medium_quality", "flaml")
RESULT_SYSTEM = {"autogluon": "autogluon-medium_quality", "flaml": "flaml"}
#: a peer gets this many seconds beyond its budget before its process is killed
KILL_AFTER_S = 600


def result_path(out: Path, system: str, table: str, budget: float, seed: int) -> Path:
    return out / "peers" / f"{RESULT_SYSTEM[system]}_{table}_{budget_label(budget)}_s{seed}.json"


def shared_result(bench_dir: Path, system: str, table: str, budget: float, seed: int) -> Path | None:
    """The shared folder's own result for this run (it holds seed 0 at 60 s), if any."""
    if seed != 0:
        return None
    path = bench_dir / "peers" / f"{RESULT_SYSTEM[system]}_{table}_{budget_label(budget)}.json"
    return path if path.is_file() else None


def check_python(python: Path, bench_dir: Path) -> None:
    """The peers' Python and run_peer.py must exist; the error says how to make the venv."""
    if not (bench_dir / "run_peer.py").is_file():
        raise ConfigError(f"{bench_dir} has no run_peer.py; pass --shared-bench to the shared bench folder")
    if not python.is_file():
        venv = python.parent.parent if python.parent.name == "bin" else Path("V")
        raise ConfigError(
            f"the peers' Python {python} does not exist; create their venv (their pins clash with "
            f"ours) with `python3 -m venv {venv} && {venv}/bin/pip install -U pip && {venv}/bin/pip "
            f"install -r {bench_dir}/requirements-peers.txt` (about 80 s, 1.1 GB), or pass "
            f"--peer-python PATH (or set AUTOML_BENCH_PEER_PYTHON) to an existing one"
        )


def run_peers(
    tables: list[Table],
    budgets: list[float],
    seeds: list[int],
    *,
    out: Path,
    bench_dir: Path,
    python: Path,
    systems: tuple[str, ...] = SYSTEMS,
    resume: bool = True,
) -> list[dict]:
    """Run every (system, table, budget, seed) not done yet; returns the RESULT dicts."""
    check_python(python, bench_dir)
    results = []
    for t in tables:
        for budget in budgets:
            for seed in seeds:
                for system in systems:
                    results.append(
                        _one(
                            system,
                            t,
                            budget,
                            seed,
                            out=out,
                            bench_dir=bench_dir,
                            python=python,
                            resume=resume,
                        )
                    )
    return results


def _one(
    system: str, t: Table, budget: float, seed: int, *, out: Path, bench_dir: Path, python: Path, resume: bool
) -> dict:
    path = result_path(out, system, t.name, budget, seed)
    shared = shared_result(bench_dir, system, t.name, budget, seed)
    if shared is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared, path)
        logger.info(
            "%s %s %s seed %d: the shared folder's result", system, t.name, budget_label(budget), seed
        )
    old = read_json(path) if (resume or shared is not None) else None
    if old and old.get("status") == "ok":
        return old
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(python),
        str(bench_dir / "run_peer.py"),
        "--system",
        system,
        "--data",
        str(t.file),
        "--target",
        t.target,
        "--problem",
        t.problem,
        "--metric",
        t.metric,
        "--time-limit",
        str(budget),
        "--seed",
        str(seed),
        "--out",
        str(path),
    ]
    logger.info("%s %s %s seed %d: running", system, t.name, budget_label(budget), seed)
    with open(path.with_suffix(".log"), "w") as log:
        try:
            subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, timeout=budget + KILL_AFTER_S, check=False
            )
        except subprocess.TimeoutExpired:
            logger.error("%s %s seed %d: killed after %.0fs", system, t.name, seed, budget + KILL_AFTER_S)
    res = read_json(path) or {"status": "error", "system": system, "error": "no RESULT.json written"}
    if res.get("status") == "ok":
        logger.info(
            "    %s=%.4g fit %.1fs", res["metric"]["name"], res["metric"]["value"], res["fit"]["wall_s"]
        )
    return res
