"""Tree models compiled to native code for large batches: built by ``automl compile``, never by a fit.

Why a separate step: compiling pays for batch throughput and costs minutes. Measured on the
2-core test machine (a LightGBM regressor of 1,000 trees x 63 leaves, 100,000 rows, 2 threads):

=====================  ===========  ==============
library                compile time  rows/s
=====================  ===========  ==============
LightGBM's own predict  -            12,000-18,000
tl2cgen, gcc -O1        33 s         32,000
tl2cgen, gcc -O2        73 s         33,000
tl2cgen, gcc -O3        161 s        58,000
lleaves (LLVM)          340 s        153,000 (LightGBM only; needs llvmlite < 0.44)
=====================  ===========  ==============

One row gains nothing (0.23 ms compiled, 0.24 ms LightGBM), so the compiled code serves calls of
at least :data:`COMPILED_ROWS` rows; smaller calls keep the libraries' own predict (and
XGBoost's one-row table). tl2cgen (DMLC, the Treelite authors) is used: it reads both LightGBM
and XGBoost files and is kept up to date; lleaves is faster but pins an old LLVM and LightGBM only.

Safety: the artifact stays data only. A library is built on the machine that uses it, from the
artifact's native model file (whose sha256 :meth:`automl.predictor.Predictor.load` has verified),
into a local cache outside the artifact (:func:`cache_root`), keyed by that sha256 and the
compiler library's versions. It is loaded only when its own sha256 matches the one recorded at
build time, and it was kept only because its outputs matched the native library's on probe rows
built from the model's own split thresholds and categories (:func:`probe_rows`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl.exceptions import CompileError
from automl.problem import ProblemType

logger = logging.getLogger(__name__)

#: where compiled libraries live (default: $XDG_CACHE_HOME/automl-on-ray/compiled)
CACHE_ENV = "AUTOML_COMPILE_CACHE"
#: calls with at least this many rows use the compiled code
COMPILED_ROWS = 1000
OPT_LEVELS = ("O1", "O2", "O3")
#: enough rows that the models' predict takes the compiled code for them
PROBE_ROWS = 2 * COMPILED_ROWS
#: compiled and native outputs must agree this closely (XGBoost sums float32 leaves)
RTOL, ATOL = 1e-5, 1e-5
BUILD_FILE = "build.json"
#: LightGBM's kZeroThreshold: its splits between zero and non-zero values sit at +-1e-35, and it
#: counts |x| <= 1e-35 as zero. Compiled code can send a value strictly inside (-1e-35, 1e-35)
#: (never zero itself) another way than LightGBM (seen on a 12-round multiclass model: 30 of 2,000
#: probe rows); no preprocessed feature lies there in practice, so probes skip that band.
ZERO_THRESHOLD = 1e-35 * (1 + 1e-6)


#: a library's file is named by its content: a process that loaded one library keeps it (the
#: dynamic loader reuses an open library by name), so a rebuilt one must have another name
LIBRARY_GLOB = "model-*.so"


@dataclass(frozen=True)
class CompileResult:
    """One native model file compiled (or found compiled) for this machine."""

    model_file: str  # relative to the artifact
    family: str
    trees: int
    compile_s: float  # 0 when the cache had it
    cached: bool
    max_abs_diff: float  # compiled against native outputs on the probe rows
    native_rows_s: float
    compiled_rows_s: float
    used: bool  # False: the outputs did not match, the library was discarded
    reason: str = ""


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "automl-on-ray" / "compiled"


@functools.cache
def _versions() -> str:
    return (
        "tl2cgen "
        + importlib.metadata.version("tl2cgen")
        + ", treelite "
        + importlib.metadata.version("treelite")
    )


def entry_dir(source_sha256: str, root: Path | None = None) -> Path:
    """The cache entry of a native model file: its sha256 and the compiler library's versions."""
    key = hashlib.sha256(f"{source_sha256}|{_versions()}".encode()).hexdigest()[:40]
    return (root or cache_root()) / key


def _sha256(path: Path) -> str:
    from automl.predictor import sha256_file  # (the Predictor imports the model families)

    return sha256_file(path)


class CompiledTrees:
    """A compiled library: raw margins, shaped as the native library gives them."""

    def __init__(self, library: Path, n_outputs: int) -> None:
        self.library, self.n_outputs = library, n_outputs
        self._predictors: dict[int, Any] = {}  # by thread count (tl2cgen fixes it per predictor)

    def __getstate__(self) -> dict[str, Any]:  # a copy (e.g. sent by Ray) loads the library again
        return {"library": self.library, "n_outputs": self.n_outputs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def margins(self, dense: np.ndarray, threads: int) -> np.ndarray:
        import tl2cgen

        pred = self._predictors.get(threads)
        if pred is None:
            pred = self._predictors[threads] = tl2cgen.Predictor(str(self.library), nthread=threads)
        # converted here: tl2cgen 1.0's DMatrix asks NumPy 2 for a copy-free conversion and fails
        dense = np.ascontiguousarray(dense, dtype=pred.threshold_type)
        out = pred.predict(tl2cgen.DMatrix(dense, dtype=pred.threshold_type), pred_margin=True)
        out = np.asarray(out, dtype=np.float64).reshape(len(dense), -1)
        return out[:, 0] if self.n_outputs == 1 else out


def _treelite_model(family: str, path: Path) -> Any:
    import treelite

    if family == "lightgbm":
        return treelite.frontend.load_lightgbm_model(str(path))
    if family == "xgboost":
        return treelite.frontend.load_xgboost_model(str(path))
    raise ValueError(f"no compiled form for the {family} family")


def probe_rows(tl_model: Any, n: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that exercise the model's splits: each feature takes one of its split thresholds, a
    value just either side of one, a category of one of its categorical splits or one no split
    names, or a missing value."""
    rng = np.random.default_rng(seed)
    n_features = int(tl_model.num_feature)
    values: list[list[float]] = [[] for _ in range(n_features)]
    for t in range(int(tl_model.num_tree)):
        acc = tl_model.get_tree_accessor(t)
        kind, feat = acc.get_field("node_type"), acc.get_field("split_index")
        thr, cats = acc.get_field("threshold"), acc.get_field("category_list")
        begin, end = acc.get_field("category_list_begin"), acc.get_field("category_list_end")
        for i in np.flatnonzero(kind == 1):
            if np.isfinite(thr[i]):
                x = float(thr[i])
                if abs(x) <= ZERO_THRESHOLD:  # a split of zero against the rest (see ZERO_THRESHOLD)
                    values[feat[i]] += [0.0, -1e-3, 1e-3]
                    continue
                values[feat[i]] += [
                    x,
                    np.nextafter(np.float32(x), np.float32(-np.inf)),
                    x + 1e-6 * max(1.0, abs(x)),
                ]
        for i in np.flatnonzero(kind == 2):
            listed = [float(c) for c in cats[begin[i] : end[i]]]
            values[feat[i]] += listed + [max(listed, default=0.0) + 1.0]
    X = np.zeros((n, n_features))
    for f, vals in enumerate(values):
        if vals:
            X[:, f] = rng.choice(np.asarray(vals, dtype=np.float64), n)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X.astype(np.float32)


def _rows_per_s(fn: Any, X: np.ndarray) -> float:
    t = time.perf_counter()
    fn(X)
    return len(X) / max(time.perf_counter() - t, 1e-9)


def compile_model(
    model: Any,
    source: Path,
    source_sha256: str,
    *,
    opt_level: str = "O3",
    threads: int = 1,
    root: Path | None = None,
    rebuild: bool = False,
) -> CompileResult:
    """Compile ``model``'s native file ``source`` into the cache (unless it is there), check its
    outputs against the native library's and attach it to ``model`` when they match."""
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"opt_level must be one of {OPT_LEVELS}, got {opt_level!r}")
    tl_model = _treelite_model(model.family, source)
    entry = entry_dir(source_sha256, root)
    t = time.perf_counter()
    # a library built with other compiler options is rebuilt (a later O3 must not find an O1)
    cached = not rebuild and _verified_library(entry) is not None and _options(entry) == _flags(opt_level)
    if not cached:
        _build(tl_model, entry, source_sha256, opt_level, threads)
    compile_s = 0.0 if cached else time.perf_counter() - t
    probe = probe_rows(tl_model)
    model.compiled = None
    native = model.predict_dense(probe, 1)
    compiled = CompiledTrees(_library(entry), n_outputs(model))
    model.compiled = compiled
    got = model.predict_dense(probe, 1)
    diff = float(np.nanmax(np.abs(got - native))) if native.size else 0.0
    result = dict(
        model_file=str(source),
        family=model.family,
        trees=int(tl_model.num_tree),
        compile_s=round(compile_s, 2),
        cached=cached,
        max_abs_diff=diff,
    )
    if not np.allclose(got, native, rtol=RTOL, atol=ATOL, equal_nan=True):
        model.compiled = None
        shutil.rmtree(entry, ignore_errors=True)
        reason = f"compiled outputs differ from {model.family}'s by up to {diff:.3g} on probe rows: discarded"
        logger.warning("%s: %s", source, reason)
        return CompileResult(**result, native_rows_s=0.0, compiled_rows_s=0.0, used=False, reason=reason)
    batch = np.tile(probe, (max(1, 20_000 // len(probe)), 1))
    model.compiled = None
    native_rate = _rows_per_s(lambda X: model.predict_dense(X, threads), batch)
    model.compiled = compiled
    compiled_rate = _rows_per_s(lambda X: model.predict_dense(X, threads), batch)
    return CompileResult(**result, native_rows_s=native_rate, compiled_rows_s=compiled_rate, used=True)


def failed(model: Any, reason: str) -> CompileResult:
    """The result for a model that could not be compiled (it keeps its library's own predict)."""
    model.compiled = None
    return CompileResult("", model.family, 0, 0.0, False, float("nan"), 0.0, 0.0, used=False, reason=reason)


def n_outputs(model: Any) -> int:
    """Margins per row: one per class for a multiclass model, else one."""
    task = model.task
    return task.n_classes if task.problem_type is ProblemType.MULTICLASS else 1


def _build(tl_model: Any, entry: Path, source_sha256: str, opt_level: str, threads: int) -> None:
    import tl2cgen

    if shutil.which("gcc") is None:
        raise CompileError(
            "compiling tree models needs a C compiler, and gcc is not on PATH: install it "
            "(Debian/Ubuntu: apt-get install gcc) or keep predicting with the libraries' own code"
        )
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=entry.parent))
    try:
        built = work / "model.so"
        t = time.perf_counter()
        # more translation units than threads: gcc compiles them side by side
        params = {"parallel_comp": max(2, 2 * threads)}
        options = _flags(opt_level)
        tl2cgen.export_lib(
            tl_model,
            toolchain="gcc",
            libpath=str(built),
            params=params,
            nthread=threads,
            options=options,
        )
        digest = _sha256(built)
        lib = built.rename(work / LIBRARY_GLOB.replace("*", digest[:16]))
        build = {
            "source_sha256": source_sha256,
            "library": lib.name,
            "library_sha256": digest,
            "versions": _versions(),
            "options": options,
            "compile_s": round(time.perf_counter() - t, 2),
            "trees": int(tl_model.num_tree),
        }
        (work / BUILD_FILE).write_text(json.dumps(build, indent=1))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(work, entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _flags(opt_level: str) -> list[str]:
    return [f"-{opt_level}"]


def _options(entry: Path) -> list[str] | None:
    """The compiler options the entry's library was built with."""
    return json.loads((entry / BUILD_FILE).read_text()).get("options")


def _library(entry: Path) -> Path:
    return entry / json.loads((entry / BUILD_FILE).read_text())["library"]


def _verified_library(entry: Path) -> Path | None:
    """The entry's library if its sha256 is the one recorded when it was built."""
    try:
        build = json.loads((entry / BUILD_FILE).read_text())
        lib, recorded = entry / build["library"], build["library_sha256"]
    except (OSError, ValueError, KeyError, TypeError):  # absent, half-written or of another format
        return None
    if not lib.is_file():
        return None
    if recorded != _sha256(lib):
        logger.warning("compiled library %s does not match its recorded sha256: not used", lib)
        return None
    return lib


def attach(model: Any, source_sha256: str, root: Path | None = None) -> bool:
    """Give ``model`` the compiled library of its native file when this machine's cache holds a
    verified one; False (and the model keeps its library's own predict) otherwise."""
    lib = _verified_library(entry_dir(source_sha256, root))
    if lib is None:
        return False
    model.compiled = CompiledTrees(lib, n_outputs(model))
    return True
