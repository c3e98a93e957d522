"""The CLI prints a user's mistake as one line (no traceback) and exits 2."""

import subprocess
import sys
from pathlib import Path

import pytest

AUTOML = str(Path(sys.executable).parent / "automl")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AUTOML, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "missing.csv", "--target", "y"], "file 'missing.csv' does not exist"),
        (["fit", "{data}", "--target", "nope"], "target column 'nope' is not in the table"),
        (["fit", "{data}", "--target", "class", "--metric", "bogus"], "unknown metric 'bogus'"),
        (["fit", "{data}", "--target", "class", "--search", "nope"], "search strategy must be one of"),
        (["fit", "{empty}", "--target", "y"], "is empty"),
        (["leaderboard", "nowhere"], "does not exist"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    data = Path(__file__).parent / "data" / "car.csv.gz"
    args = [a.format(data=data, empty=empty) for a in args]
    out = run(*args, "--output", str(tmp_path / "o")) if args[0] == "fit" else run(*args)
    assert out.returncode == 2, out.stderr
    err_lines = [ln for ln in out.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and message in err_lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_profile_command_writes_profile_json(tmp_path):
    data = Path(__file__).parent / "data" / "bike_small.csv.gz"
    out = run("profile", str(data), "--target", "cnt", "--output", str(tmp_path / "p.json"))
    assert out.returncode == 0, out.stderr
    assert "dteday=datetime" in out.stdout and (tmp_path / "p.json").exists()
