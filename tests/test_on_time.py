"""On time: `automl fit --time-limit 20` ends, as a whole process (imports, Ray start-up and
shutdown included), within 20 s plus a margin a loaded CI machine can hold; what was left out for
time is listed in run.json. The strict 3 s target is measured by the benchmark on every shared
table (bench/lean.py: fit.process in each RESULT JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 20.0
#: the target is 3 s over the limit; a loaded CI machine stretches Ray's start-up and the search's
#: wind-down (trials stopping, Tune saving its state) by a few seconds more
MARGIN_S = 3.0 + 7.0


@pytest.mark.slow
def test_a_20s_fit_process_ends_on_time(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}  # its own Ray
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "automl.cli", "fit", str(ROOT / "tests" / "data" / "car.csv.gz")]
    cmd += ["--target", "class", "--time-limit", f"{LIMIT_S:g}", "--output", str(tmp_path / "run")]
    t = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    wall = time.time() - t
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    detail = f"process {wall:.1f}s; timings {info['timings']}; cut for time {info['cut_for_time']}"
    assert wall <= LIMIT_S + MARGIN_S, detail
    # the fit's own clock counts from the process's start, Ray's shutdown included
    assert info["timings"]["total_s"] <= wall + 0.5 and "ray_stop_s" in info["timings"], detail
    assert isinstance(info["cut_for_time"], list)
    assert (tmp_path / "run" / "predictor.json").is_file()
    assert "since the process started (time limit 20.0)" in done.stdout
