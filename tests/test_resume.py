"""A fit whose process is killed midway resumes with --resume, without re-running finished trials."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import kill_fit_midway, trial_rows

pytestmark = [pytest.mark.ray, pytest.mark.slow]

AUTOML = str(Path(sys.executable).parent / "automl")
DATA = Path(__file__).parent / "data" / "adult_small.csv.gz"


def finished_trials(run_dir: Path) -> dict[str, float]:
    """Final trial checkpoints (they hold candidate.json) and their modification times."""
    return {
        str(p.parent.parent.name): p.stat().st_mtime
        for p in (run_dir / "search").glob("*/checkpoint_*/candidate.json")
    }


def test_killed_fit_resumes_without_repeating_finished_trials(tmp_path):
    out = tmp_path / "run"
    args = [
        AUTOML,
        "fit",
        str(DATA),
        "--target",
        "class",
        "--max-trials",
        "6",
        "--search",
        "random",
        "--families",
        "lightgbm,xgboost",
        "--output",
        str(out),
        "--seed",
        "3",
        "--no-report",
    ]
    killed_at = kill_fit_midway(args, lambda: finished_trials(out), at_least=2)
    before = finished_trials(out)
    assert 2 <= len(before) < 6, before
    assert not (out / "leaderboard.csv").exists()

    t1 = time.time()
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed_s = time.time() - t1
    after = finished_trials(out)
    # a trial that finished between Tune's last experiment snapshot and the SIGKILL is not in the
    # restored table: it runs again under a new id and its first directory stays on disk, unused
    # (seen twice on 2026-12-02)
    assert 6 <= len(after) <= 7, sorted(after)
    for trial, mtime in before.items():
        assert after[trial] == mtime  # finished trials were not run again
    board = pd.read_csv(out / "leaderboard.csv")
    trials = trial_rows(board)
    # at most that one re-run trial beyond the budget, and only as one of the directories above
    assert 6 <= len(trials) <= len(after) and (trials["status"] == "completed").all()
    info = json.loads((out / "run.json").read_text())
    assert info["ended_because"] == "max_trials (6) reached"
    print(f"killed after {killed_at:.1f}s with {len(before)} trials finished; resume took {resumed_s:.1f}s")
