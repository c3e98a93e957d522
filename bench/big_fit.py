"""One fit of the project on a synthetic Parquet table for the big-data bench: ``AutoML(target,
time_limit=budget, data_mode="streaming").fit(<directory>)``, with the driver's peak RSS, the peak
of the driver and all its Ray processes together, the object store's spilled bytes and the ROC AUC
on the fresh test rows.

``data_mode`` is passed only when ``AutoML.__init__`` accepts it (the streaming mode of issue 15);
without it the fit is today's in-memory one and the result says so (``data_mode_requested``).

Runs in its own process (``python -m bench.big_fit``, launched by :mod:`bench.bigdata`).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import SYSTEM, write_json
from bench.measure import RayStoreSampler, TreeMemorySampler, environment, ray_session_dir

DATA_MODE = "streaming"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def data_mode_kwargs(cls: type, mode: str = DATA_MODE) -> dict[str, Any]:
    """``{"data_mode": mode}`` when ``cls.__init__`` takes that argument, else ``{}``."""
    return {"data_mode": mode} if "data_mode" in inspect.signature(cls.__init__).parameters else {}


def positive_proba(proba: Any) -> Any:
    """The P(y = 1) column of a predict_proba frame (labels may come back as 1 or "1")."""
    cols = list(proba.columns)
    return proba[next((c for c in cols if str(c) == "1"), cols[-1])].to_numpy()


def run_fit(data: Path, test: Path, *, budget: float, seed: int, work: Path) -> dict[str, Any]:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from bench.synth import TARGET

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    import automl
    from automl import AutoML

    import_s = time.perf_counter() - t0
    kwargs = data_mode_kwargs(AutoML)
    if work.exists():
        shutil.rmtree(work)
    tree = TreeMemorySampler(also=ray_session_dir).start()
    store = RayStoreSampler().start()
    t0 = time.perf_counter()
    run = AutoML(
        target=TARGET,
        problem_type="binary",
        metric="roc_auc",
        time_limit=budget,
        seed=seed,
        output_dir=work / "run",
        **kwargs,
    ).fit(str(data))
    fit_wall = time.perf_counter() - t0
    driver_peak = _peak_rss_mb()
    store.stop()  # Ray is still up: one last reading of the cumulative spill counters
    tree.stop()
    import ray

    ray.shutdown()
    info = run.run_info_
    test_df = pd.read_parquet(test)  # as a user would read it: string columns stay strings
    t0 = time.perf_counter()
    proba = positive_proba(run.predict_proba(test_df.drop(columns=[TARGET])))
    return {
        "status": "ok",
        "system": SYSTEM,
        "system_version": automl.__version__,
        "budget_s": budget,
        "data_mode_requested": kwargs.get("data_mode", "memory (no data_mode argument yet)"),
        "data_mode": info.get("data_mode"),
        "import_s": import_s,
        "fit": {"wall_s": fit_wall, "over_budget_s": fit_wall - budget, "cpu_s": tree.cpu_s},
        "memory": {
            "driver_peak_rss_mb": driver_peak,
            **tree.result(),
            "source": "driver_peak_rss_mb: ru_maxrss of the driver (reading + fit); peak_tree_pss_mb: "
            "summed PSS of the driver and every Ray process of its session, sampled every 0.5 s "
            "during the fit (pages shared between processes, such as the object store, count once)",
        },
        "object_store": store.result(),
        "test": {
            "rows": len(test_df),
            "roc_auc": float(roc_auc_score(test_df[TARGET], proba)),
            "predict_s": time.perf_counter() - t0,
        },
        "run": {k: info.get(k) for k in ("chosen", "n_trials", "trials_by_status", "ended_because")}
        | {"timings": info.get("timings"), "run_dir": str(work / "run")},
        "environment": environment(load_start),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One fit of the project on a synthetic Parquet table.")
    p.add_argument("--data", required=True, help="Parquet directory of the training rows")
    p.add_argument("--test", required=True, help="Parquet file of the test rows")
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", required=True, help="folder for the run directory")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        res = run_fit(Path(a.data), Path(a.test), budget=a.budget, seed=a.seed, work=Path(a.work))
        rc = 0
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res = {"status": "error", "system": SYSTEM, "error": repr(exc), "traceback": traceback.format_exc()}
        res["memory"], rc = {"driver_peak_rss_mb": _peak_rss_mb()}, 1
        print(res["traceback"], file=sys.stderr)
    res["args"] = vars(a)
    write_json(a.out, res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
