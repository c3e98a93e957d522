"""The CLI prints a user's mistake as one line (no traceback) and exits 2."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

AUTOML = str(Path(sys.executable).parent / "automl")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AUTOML, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


CASES = [
    (["fit", "missing.csv", "--target", "y"], "file 'missing.csv' does not exist"),
    (["fit", "{data}", "--target", "nope"], "target column 'nope' is not in the table"),
    (["fit", "{data}", "--target", "class", "--metric", "bogus"], "unknown metric 'bogus'"),
    (["fit", "{data}", "--target", "class", "--search", "nope"], "search strategy must be one of"),
    (["fit", "{empty}", "--target", "y"], "is empty"),
    (["leaderboard", "nowhere"], "does not exist"),
]


def _args(tmp_path: Path, args: list[str]) -> list[str]:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    data = Path(__file__).parent / "data" / "car.csv.gz"
    args = [a.format(data=data, empty=empty) for a in args]
    return [*args, "--output", str(tmp_path / "o")] if args[0] == "fit" else args


def _one_error_line(stderr: str, message: str) -> None:
    err_lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and message in err_lines[0], stderr
    assert "Traceback" not in stderr


def test_a_user_error_from_the_console_script_is_one_line(tmp_path):
    args, message = CASES[0]
    out = run(*_args(tmp_path, args))
    assert out.returncode == 2, out.stderr
    _one_error_line(out.stderr, message)


@pytest.mark.parametrize("args, message", CASES)
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    """In process (each console-script start costs ~2.5 s of imports); an exception that escaped
    ``main`` would fail the test with its traceback."""
    from automl.cli import main

    loggers = [logging.getLogger(name) for name in ("automl", "tuning")]
    levels = [lg.level for lg in loggers]
    try:
        code = main(_args(tmp_path, args))
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    assert code == 2
    _one_error_line(capsys.readouterr().err, message)


def test_profile_command_writes_profile_json(tmp_path):
    data = Path(__file__).parent / "data" / "bike_small.csv.gz"
    out = run("profile", str(data), "--target", "cnt", "--output", str(tmp_path / "p.json"))
    assert out.returncode == 0, out.stderr
    assert "dteday=datetime" in out.stdout and (tmp_path / "p.json").exists()
