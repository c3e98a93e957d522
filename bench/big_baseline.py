"""The number to match on the big-data bench: one plain LightGBM in one process (2 threads, 300
rounds, 63 leaves, the string columns as pandas categoricals) trained on every row of a synthetic
table, scored by ROC AUC on the fresh test rows. Peak RSS is ``getrusage`` of this process.

Runs in its own process (``python -m bench.big_baseline``, launched by :mod:`bench.bigdata`).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import write_json

PARAMS = {"objective": "binary", "num_threads": 2, "num_leaves": 63, "verbose": -1}
ROUNDS = 300


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_baseline(train: Path, test: Path, *, rounds: int = ROUNDS, seed: int = 0) -> dict[str, Any]:
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    from bench.synth import TARGET, read_frame

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    df = read_frame(train)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()
    rows = len(df)
    y = df.pop(TARGET)
    params = {**PARAMS, "seed": seed}
    t0 = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(df, y), num_boost_round=rounds)
    train_s = time.perf_counter() - t0
    peak = peak_rss_mb()
    del df, y
    test_df = read_frame(test)
    t0 = time.perf_counter()
    proba = booster.predict(test_df.drop(columns=[TARGET]))
    return {
        "status": "ok",
        "system": "lightgbm-baseline",
        "lightgbm_version": lgb.__version__,
        "params": params,
        "rounds": rounds,
        "rows": rows,
        "test_rows": len(test_df),
        "load_s": load_s,
        "train_s": train_s,
        "predict_s": time.perf_counter() - t0,
        "test_roc_auc": float(roc_auc_score(test_df[TARGET], proba)),
        "peak_rss_mb": peak,
        "peak_rss_after_load_mb": rss_loaded,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Plain single-process LightGBM on a synthetic table.")
    p.add_argument("--train", required=True, help="Parquet directory of the training rows")
    p.add_argument("--test", required=True, help="Parquet file of the test rows")
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        res, rc = run_baseline(Path(a.train), Path(a.test), rounds=a.rounds, seed=a.seed), 0
    except Exception as exc:  # noqa: BLE001 - always leave a result behind
        res = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()}
        res["peak_rss_mb"], rc = peak_rss_mb(), 1
        print(res["traceback"], file=sys.stderr)
    res["args"] = vars(a)
    write_json(a.out, res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
