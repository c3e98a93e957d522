"""The ``automl`` command line. Errors caused by the input print as one line and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from automl import layout
from automl.cli_fit import add_fit_command
from automl.exceptions import AutoMLError

logger = logging.getLogger("automl.cli")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}

#: modules that add subcommands: each has ``add_commands(subparsers)``, which adds its parsers
#: and sets ``func`` (a callable taking the parsed args, returning an exit code) on each. Their
#: imports must stay cheap (no Ray at module level): `automl --help` loads them all.
PLUGINS = (
    "serving.cli",
    "serving.batch_cli",
    "automl.report.cli",
    "automl.registry.cli",
    "automl.monitor.cli",
    "automl.compiling",
)


def command(name: str) -> Callable:
    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = fn
        return fn

    return deco


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="automl", description="AutoML on Ray: profile, search, ensemble, serve.")
    p.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    sub = p.add_subparsers(dest="command", required=True)

    add_fit_command(sub)

    pr = sub.add_parser("profile", help="profile a table: column kinds, problem type, warnings")
    pr.add_argument("data")
    pr.add_argument("--target", required=True)
    pr.add_argument("--problem-type", choices=["binary", "multiclass", "regression"])
    pr.add_argument("--metric")
    pr.add_argument("--time-column")
    pr.add_argument("--group-column")
    pr.add_argument("--output", default="profile.json")

    lb = sub.add_parser("leaderboard", help="print the leaderboard of a run")
    lb.add_argument("dir")
    lb.add_argument("--format", choices=["table", "csv", "json"], default="table")
    lb.add_argument("--limit", type=int, default=30)

    for name in PLUGINS:
        import importlib

        importlib.import_module(name).add_commands(sub)
    return p


def _configure_logging(quiet: bool) -> logging.Handler:
    """The CLI is an application: it, not the library, decides what is shown. Returns the handler
    so that ``main`` removes it again: a caller running ``main`` in-process (tests, notebooks) would
    otherwise keep a handler bound to a stream that may be closed later."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name in ("automl", "tuning"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING if quiet else logging.INFO)
    return handler


def _remove_logging(handler: logging.Handler) -> None:
    for name in ("automl", "tuning"):
        logging.getLogger(name).removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _configure_logging(args.quiet)
    try:
        func = getattr(args, "func", None) or COMMANDS[args.command]
        code = int(func(args) or 0)
    except AutoMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    finally:
        if argv is not None:  # called in-process: leave the caller's logging as it was
            _remove_logging(handler)
    if argv is None and args.command == "fit":  # the program (not a caller passing argv): end on time
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown, which freed a fit's objects and modules
    in 2-8 s on a loaded 2-core machine (after a time limit the fit kept). The exit handlers still
    run (logging flushes, temporary directories are removed) and the streams are flushed."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- commands ------------------------------------------------------------------------------------------
@command("profile")
def cmd_profile(a: argparse.Namespace) -> int:
    from automl.config import FitSpec, ValidationConfig
    from automl.data import load_table
    from automl.prepare import profile_for

    validation = ValidationConfig(time_column=a.time_column, group_column=a.group_column)
    spec = FitSpec(a.target, problem_type=a.problem_type, metric=a.metric, validation=validation)
    prof = profile_for(spec, load_table(a.data))
    path = prof.save(a.output)
    print(prof.summary())
    print(f"profile written to {path}")
    return 0


@command("leaderboard")
def cmd_leaderboard(a: argparse.Namespace) -> int:
    from automl import leaderboard as lbmod
    from automl.exceptions import DataError

    path = Path(a.dir) / layout.LEADERBOARD
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist; pass the directory of a finished fit")
    board = lbmod.load(path)
    if a.format == "csv":
        print(board.to_csv(index=False), end="")
    elif a.format == "json":
        print(json.dumps(json.loads(board.to_json(orient="records")), indent=1))
    else:
        print(lbmod.format_table(board, limit=a.limit))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
