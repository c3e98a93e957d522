"""``automl compile``: a saved Predictor's tree models compiled for this machine's large batches.

The mechanism, its measured gains and costs, and why compiled code lives in a local cache and
never in the artifact are in :mod:`automl.models.compiled`. Here: which of a Predictor's model
files are compiled, attaching the cache's libraries when a Predictor is loaded (so ``automl
serve``, ``automl predict`` and the Python API use them with no change), and the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from automl import layout
from automl.exceptions import CompileError
from automl.models import compiled as trees

logger = logging.getLogger(__name__)


def tree_models(pred: Any) -> Iterator[tuple[Any, str]]:
    """Each model of a saved Predictor that has a compiled form, with its native file's path
    relative to the artifact (as in its checksums)."""
    if pred.path is None:
        raise ValueError("the Predictor is not saved: save it (Predictor.save) before compiling it")
    man = json.loads((Path(pred.path) / layout.MANIFEST).read_text())
    entries = [*(m for layer in man.get("stack_layers", []) for m in layer), *man["members"]]
    members = [*(m for layer in pred.stack_layers for m in layer), *pred.members]
    for entry, member in zip(entries, members, strict=True):
        for directory, model in zip(entry["models"], member.models, strict=True):
            if model.native_file is not None:
                yield model, (Path(directory) / model.native_file).as_posix()


def attach_compiled(pred: Any, checksums: dict[str, str]) -> int:
    """At load: give each tree model the verified compiled library this machine's cache holds for
    its native file (``checksums``: the artifact's verified sha256 by relative path). Returns the
    number attached; with no cache directory this costs one stat."""
    root = trees.cache_root()
    if not root.is_dir():
        return 0
    found = total = 0
    for model, rel in tree_models(pred):
        total += 1
        found += trees.attach(model, checksums[rel], root)
    if found:
        logger.info(
            "%d of %d tree models use compiled libraries from %s for calls of %d rows or more",
            found,
            total,
            root,
            trees.COMPILED_ROWS,
        )
    return found


def compile_predictor(
    pred: Any, *, opt_level: str = "O3", root: Path | None = None, rebuild: bool = False
) -> list[trees.CompileResult]:
    """Compile every LightGBM and XGBoost model of a saved Predictor (``pred``: a Predictor or its
    directory) into the cache, each once per native file; the Predictor uses them from then on,
    and so does every Predictor loaded from the same files on this machine."""
    from automl.fastpath import available_threads
    from automl.predictor import Predictor

    if not isinstance(pred, Predictor):
        pred = Predictor.load(pred)
    sums = json.loads((Path(pred.path) / layout.CHECKSUMS).read_text())["files"]
    threads = available_threads()
    results = []
    for model, rel in tree_models(pred):
        logger.info("compiling %s (%s, gcc -%s)", rel, model.family, opt_level)
        try:
            res = trees.compile_model(
                model,
                Path(pred.path) / rel,
                sums[rel],
                opt_level=opt_level,
                threads=threads,
                root=root,
                rebuild=rebuild,
            )
        except CompileError:
            raise  # the machine cannot compile (no gcc): every model would fail the same way
        except Exception as exc:  # noqa: BLE001 - one model that fails to compile keeps its library
            logger.warning("%s could not be compiled, it keeps %s's own predict: %r", rel, model.family, exc)
            res = trees.failed(model, f"could not be compiled: {exc!r}")
        res = dataclasses.replace(res, model_file=rel)
        results.append(res)
        logger.info(
            "%s: %d trees, %s, %.0f -> %.0f rows/s",
            rel,
            res.trees,
            "cached" if res.cached else f"compiled in {res.compile_s:.1f}s",
            res.native_rows_s,
            res.compiled_rows_s,
        )
    return results


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="compile a model's LightGBM and XGBoost trees for fast batch predictions on this machine",
    )
    p.add_argument("dir", help="a run or model directory (a Predictor)")
    p.add_argument(
        "--opt-level",
        choices=trees.OPT_LEVELS,
        default="O3",
        help="gcc optimisation: O3 predicts fastest and compiles slowest (default O3)",
    )
    p.add_argument("--rebuild", action="store_true", help="compile again what the cache already holds")
    p.set_defaults(func=cmd_compile)


def cmd_compile(a: argparse.Namespace) -> int:
    results = compile_predictor(a.dir, opt_level=a.opt_level, rebuild=a.rebuild)
    if not results:
        print(f"{a.dir} has no LightGBM or XGBoost model: nothing to compile")
        return 0
    print(f"{'model file':<44} {'trees':>6} {'compile s':>9} {'rows/s before':>13} {'after':>9}")
    for r in results:
        took = "cached" if r.cached else f"{r.compile_s:.1f}"
        after = f"{r.compiled_rows_s:,.0f}" if r.used else "unused"
        print(f"{r.model_file:<44} {r.trees:>6} {took:>9} {r.native_rows_s:>13,.0f} {after:>9}")
        if not r.used:
            print(f"  {r.reason}")
    print(
        f"compiled libraries: {trees.cache_root()} (set {trees.CACHE_ENV} to move them); "
        f"used for calls of {trees.COMPILED_ROWS} rows or more"
    )
    return 0
