"""What every benchmark part shares: paths, the manifest, the shared split/scoring modules,
JSON output and running one measurement in a fresh subprocess."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from automl.exceptions import ConfigError

SYSTEM = "automl-on-ray"
SCHEMA = "peer-bench/1"  # the shape of run_peer.py's RESULT.json, which our results follow
REPO = Path(__file__).resolve().parent.parent
SHARED_BENCH = REPO.parent / "shared" / "bench"
DEFAULT_MANIFEST = REPO.parent / "shared" / "datasets" / "MANIFEST.csv"
PROBLEMS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Table:
    """One row of the datasets manifest."""

    name: str
    file: Path
    target: str
    problem: str
    metric: str
    time_column: str | None = None
    group_column: str | None = None


def read_manifest(path: str | Path) -> list[Table]:
    """Tables of a MANIFEST.csv (name, file, target, problem_type, metric, time_column, group_column);
    ``file`` is relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest {str(path)!r} does not exist; pass --manifest PATH to a MANIFEST.csv")
    tables = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            missing = [k for k in ("name", "file", "target", "problem_type", "metric") if not row.get(k)]
            if missing:
                raise ConfigError(f"manifest {str(path)!r}: row {row.get('name')!r} lacks {missing}")
            if row["problem_type"] not in PROBLEMS:
                raise ConfigError(
                    f"manifest row {row['name']!r}: problem_type {row['problem_type']!r} "
                    f"is not one of {list(PROBLEMS)}"
                )
            tables.append(
                Table(
                    row["name"],
                    path.parent / row["file"],
                    row["target"],
                    row["problem_type"],
                    row["metric"],
                    row.get("time_column") or None,
                    row.get("group_column") or None,
                )
            )
    return tables


def select_tables(tables: list[Table], names: list[str] | None) -> list[Table]:
    """The tables named (in the order given), or all of them."""
    if not names:
        return tables
    by_name = {t.name: t for t in tables}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; the manifest has {sorted(by_name)}")
    return [by_name[n] for n in names]


def shared_modules(bench_dir: str | Path = SHARED_BENCH) -> tuple[ModuleType, ModuleType]:
    """The shared ``splits`` and ``scoring`` modules (imported from their folder, never copied)."""
    bench_dir = str(Path(bench_dir).resolve())
    if not Path(bench_dir, "splits.py").is_file():
        raise ConfigError(f"{bench_dir!r} has no splits.py; pass --shared-bench to the shared bench folder")
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import scoring
    import splits

    return splits, scoring


def budget_label(budget: float) -> str:
    return f"{budget:g}s"


def jsonable(v: Any) -> Any:
    """numpy/pandas scalars and containers -> plain JSON values (NaN/inf -> None)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if hasattr(v, "tolist"):
        return jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=1))
    tmp.replace(path)
    return path


def read_json(path: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def run_child(
    module: str, args: list[str], *, out_json: Path, log_path: Path, timeout_s: float
) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process (own session, so peak RSS and Ray are per
    run); it must write ``out_json``. A crash or timeout still leaves a result with its reason."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out_json.unlink(missing_ok=True)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout_s)
            reason = None if rc == 0 else f"exit code {rc}"
            _stop_group(proc)  # leftovers of the child's session (e.g. an orphaned Ray agent)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            rc, reason = None, f"timeout after {timeout_s:.0f}s"
    res = read_json(out_json)
    if res is None:
        res = {
            "schema": SCHEMA,
            "status": "error",
            "system": SYSTEM,
            "error": reason or "no result written",
            "log_tail": _tail(log_path),
        }
    elif reason and res.get("status") == "ok":
        res["warning"] = reason
    res["harness"] = {"child_wall_s": time.perf_counter() - t0, "log": str(log_path)}
    write_json(out_json, res)
    return res


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the child we started and whatever of its session is left (its Ray processes)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
