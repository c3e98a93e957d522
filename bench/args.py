"""The benchmark's command line: ``python -m bench.run`` flags, split seeds, comma lists."""

from __future__ import annotations

import argparse
import os
from typing import Any

from automl.exceptions import ConfigError
from bench import batch_memory, bigdata, scaling, serving, strategies
from bench.common import DEFAULT_MANIFEST, REPO, SHARED_BENCH

#: the peers' Python: this variable, else ../peers/.venv-peers/bin/python beside the repository
PEER_PYTHON_ENV = "AUTOML_BENCH_PEER_PYTHON"
DEFAULT_SEEDS = "0,1,2"


def _csv(text: str, cast: type = str) -> list[Any]:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected a comma-separated list of {cast.__name__}s; got {text!r}") from None


def parse_args(argv: list[str] | None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--manifest", default=str(DEFAULT_MANIFEST), help="datasets MANIFEST.csv (default: %(default)s)"
    )
    p.add_argument("--tables", default="", help="comma-separated manifest names (default: all)")
    p.add_argument("--budgets", default="60,300", help="fit time limits in seconds (default: %(default)s)")
    p.add_argument(
        "--seeds",
        default=None,
        help=f"split seeds, each a fit per table and budget (default: {DEFAULT_SEEDS})",
    )
    p.add_argument("--seed", type=int, default=None, help="one split seed (the same as --seeds N)")
    p.add_argument("--peers", action="store_true", help="also run AutoGluon and FLAML on the same runs")
    p.add_argument(
        "--lean-seeds",
        type=lambda text: _csv(text, int),
        default=None,
        help="measure the deployment options (default choice, fastest within 0.1 %%) in fresh "
        "processes for these seeds only, e.g. 0 (default: every seed)",
    )
    p.add_argument(
        "--peer-python",
        default=os.environ.get(PEER_PYTHON_ENV)
        or str(REPO.parent / "peers" / ".venv-peers" / "bin" / "python"),
        help=f"the peers' venv Python for --peers (env {PEER_PYTHON_ENV}; default: %(default)s)",
    )
    p.add_argument(
        "--peer-results", default=None, help="read peer RESULT JSONs made elsewhere from DIR (or DIR/peers)"
    )
    p.add_argument("--out", default=None, help="results folder (default: bench/results/<UTC date>)")
    p.add_argument("--work", default=None, help="run directories and saved models (default: a temp folder)")
    p.add_argument(
        "--shared-bench",
        default=str(SHARED_BENCH),
        help="folder of splits.py, scoring.py, peers/ (default: %(default)s)",
    )
    p.add_argument("--resume", action="store_true", help="skip runs whose result JSON already says ok")
    p.add_argument("--keep-search", action="store_true", help="keep each run's Ray Tune experiment")
    p.add_argument("--skip-quality", action="store_true", help="no quality runs (serving/scaling only)")
    p.add_argument("--serving", action="store_true", help="load-test `automl serve` on loopback")
    p.add_argument("--serving-model", default=None, help="a saved model (default: the first quality run's)")
    p.add_argument("--serving-duration", type=float, default=serving.DURATION_S, help="seconds per cell")
    p.add_argument(
        "--strategies", default="", help="compare search strategies, e.g. bayesian,random,asha (default: off)"
    )
    p.add_argument(
        "--strategy-tables",
        default="adult,wine_quality,california_housing",
        help="tables for --strategies (default: %(default)s)",
    )
    p.add_argument(
        "--strategy-budget",
        type=float,
        default=strategies.BUDGET_S,
        help="time limit of each --strategies run (default: %(default)s)",
    )
    p.add_argument(
        "--batch-memory",
        action="store_true",
        help="peak memory of `automl predict` (Ray Data) as input rows grow "
        "(model: --serving-model, else the first run's)",
    )
    p.add_argument("--batch-memory-rows", default=",".join(map(str, batch_memory.ROWS)))
    p.add_argument("--scaling", action="store_true", help="fit time and memory vs rows and CPUs per family")
    p.add_argument("--scaling-rows", default=",".join(map(str, scaling.ROWS)))
    p.add_argument("--scaling-families", default="", help="default: every registered family")
    p.add_argument("--scaling-cap", type=float, default=scaling.CAP_S, help="seconds per measurement")
    p.add_argument("--scaling-cpu-rows", type=int, default=scaling.CPU_ROWS)
    p.add_argument("--big-data", action="store_true", help="fit synthetic Parquet tables of --big-rows rows")
    p.add_argument("--big-rows", default=",".join(map(str, bigdata.ROWS)), help="default: %(default)s")
    p.add_argument(
        "--big-budget", type=float, default=bigdata.BUDGET_S, help="seconds (default: %(default)s)"
    )
    p.add_argument("--big-test-rows", type=int, default=bigdata.TEST_ROWS, help="default: %(default)s")
    p.add_argument("--big-shard-rows", type=int, default=bigdata.SHARD_ROWS, help="default: %(default)s")
    return p.parse_args(argv)


def resolve_seeds(a: argparse.Namespace) -> list[int]:
    """``--seed N`` is ``--seeds N``; both at once is an error; neither is the default seeds."""
    if a.seed is not None and a.seeds is not None:
        raise ConfigError("pass either --seeds LIST or --seed N, not both")
    seeds = [a.seed] if a.seed is not None else _csv(a.seeds or DEFAULT_SEEDS, int)
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct non-negative integers; got {a.seeds!r}")
    return seeds
