"""XGBoost forests as flat NumPy tables, for predicting a few rows with every tree of several
boosters in one vectorised pass.

Why: XGBoost 3.2 walks every node of every tree on each prediction call (its predictor computes
each tree's depth per call: a quarter of the profile), so a one-row call on a 270-tree booster
cost 0.25 ms warm and 1-2 ms when ten fold models take turns. Here a call of up to
``COMPILED_ROWS`` rows walks every tree node by node in Numba-compiled code (:func:`walk_compiler`),
and a larger one costs one NumPy gather per tree level for all the trees at once.

The table is built from the booster's own UBJSON dump (the native model file stays the source of
truth) and checked against XGBoost on probe rows before use: :meth:`XGBoostTable.build` returns
None (and the caller keeps XGBoost) unless the margins agree. Decisions follow XGBoost's:
``x < split`` goes left; a missing value takes the default branch; a categorical split sends the
categories in its set right and everything else (unknown codes too) left; leaf values are summed
in float32, tree after tree, from the model's intercept.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

from automl.models import ubjson

logger = logging.getLogger(__name__)

#: margins must agree with XGBoost's within this (float32 sums of a few hundred leaves)
TOLERANCE = 1e-5
PROBE_ROWS = 64
#: calls of up to this many rows walk the trees in Numba-compiled code (one row, tree after tree,
#: node after node) instead of the NumPy pass (one gather per level for every tree at once). One
#: row of wine_quality's 60 s XGBoost bags on the 2-core test machine: 4,550 depth-10 trees 0.33 ms
#: compiled, 1.70 ms in NumPy; 16,100 depth-6 trees 1.02 and 2.90 ms. The compiled walk takes every
#: row through every tree with no reuse of the nodes in cache, so larger calls keep NumPy.
COMPILED_ROWS = 8
#: compiling the walk: 0.54 s measured, 0.21 s when loaded from Numba's disk cache, plus 0.17 s to
#: import Numba
WALK_COMPILE_S = 0.7


class XGBoostTable:
    """Every tree of some boosters; :meth:`margins` gives each booster's raw margins."""

    def __init__(self, trees: list[dict[str, Any]], groups: list[list[np.ndarray]], n_features: int) -> None:
        """``trees``: XGBoost trees as its model UBJSON holds them; ``groups[m][c]``: the tree numbers
        of booster m, output c."""
        sizes = np.fromiter((len(t["left_children"]) for t in trees), np.int64, count=len(trees))
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        total = int(sizes.sum())

        def cat(key: str, dtype: Any) -> np.ndarray:  # one array of every tree's (typed) array
            parts = [np.asarray(t[key], dtype=dtype) for t in trees]
            return np.concatenate(parts) if total else np.empty(0, dtype)

        left, right = cat("left_children", np.int64), cat("right_children", np.int64)
        offset = np.repeat(start, sizes)
        self.leaf = left < 0
        own = np.arange(total)
        # children as one (nodes, 2) table; a leaf is its own child, so a walk stays on it
        self.child = np.column_stack(
            [np.where(self.leaf, own, left + offset), np.where(self.leaf, own, right + offset)]
        ).astype(np.intp)
        self.feature = np.where(self.leaf, 0, cat("split_indices", np.int64)).astype(np.intp)
        self.cond = cat("split_conditions", np.float32)  # a leaf holds its value here
        self.default_right = cat("default_left", np.int8) == 0
        self.roots = start
        self.depth = _depth(self.child, self.leaf, start)
        self.groups = groups
        self.n_features = n_features
        self._categories(trees, start)
        self.intercept: list[np.ndarray] = []
        self._compact: tuple[np.ndarray, ...] | None = None
        # the walk's view of the categories: the table flat, an empty row for the other nodes
        self.cat_flat = np.concatenate([self.cat_bits, np.zeros((1, self.cat_bits.shape[1]), bool)]).ravel()
        self.cat_of = np.where(self.cat_row >= 0, self.cat_row, len(self.cat_bits)).astype(np.intp)

    def _categories(self, trees: list[dict[str, Any]], start: np.ndarray) -> None:
        """A dense bit table: row i says which categories node ``cat_nodes[i]`` sends right."""
        nodes, sets = [], []
        for t, s in zip(trees, start):
            cats = np.asarray(t.get("categories", []), dtype=np.int64)
            segments = zip(
                t.get("categories_nodes", []), t.get("categories_segments", []), t.get("categories_sizes", [])
            )
            for node, seg, size in segments:
                nodes.append(s + node)
                sets.append(cats[seg : seg + size])
        self.cat_row = np.full(len(self.leaf), -1, dtype=np.int64)
        width = int(max((int(c.max()) + 1 for c in sets if len(c)), default=0))
        self.cat_bits = np.zeros((len(nodes), max(width, 1)), dtype=bool)
        for i, (node, members) in enumerate(zip(nodes, sets)):
            self.cat_row[node] = i
            self.cat_bits[i, members] = True
        self.has_cat = bool(nodes)

    @classmethod
    def build(cls, boosters: list[Any], n_outputs: int) -> XGBoostTable | None:
        """The table of ``boosters`` (``n_outputs``: 1, or the number of classes), or None when a
        booster has a form this table does not cover or the probe check fails."""
        trees, groups, n_features = [], [], None
        for b in boosters:
            # UBJSON with typed arrays: 2,200 depth-10 trees took 0.28 s to save and read, against
            # 1.74 s through the JSON text (with orjson)
            model = ubjson.loads(b.save_raw("ubj"))["learner"]
            gb = model["gradient_booster"]
            scalar = all(int(t["tree_param"].get("size_leaf_vector", "1")) <= 1 for t in gb["model"]["trees"])
            if (
                gb.get("name") != "gbtree"
                or int(model["learner_model_param"].get("num_target", "1")) != 1
                or not scalar
            ):
                return None
            info = np.asarray(gb["model"]["tree_info"], dtype=np.int64)
            first = len(trees)
            trees += gb["model"]["trees"]
            groups.append([first + np.nonzero(info == c)[0] for c in range(n_outputs)])
            n_features = int(model["learner_model_param"]["num_feature"])
        table = cls(trees, groups, n_features or 0)
        return table if table._calibrate(boosters) else None

    def _calibrate(self, boosters: list[Any]) -> bool:
        """Take each booster's intercept from XGBoost's margins on probe rows, then require the
        table to reproduce XGBoost's margins on every probe row."""
        probe = self._probe_rows()
        libs = [
            np.asarray(b.inplace_predict(probe, predict_type="margin"), dtype=np.float64) for b in boosters
        ]
        sums = self.margins(probe[:1], with_intercept=False)  # the intercept: from one row
        self.intercept = [
            np.atleast_1d(lib.reshape((len(probe), *own.shape[1:]))[0] - own[0]).astype(np.float32)
            for lib, own in zip(libs, sums)
        ]
        walks = [False] + ([True] if walk_compiler() is not None else [])
        for compiled in walks:  # both walks a call may take
            for lib, own in zip(libs, self.margins(probe, compiled=compiled)):
                lib = lib.reshape(own.shape)
                if not np.allclose(own, lib, rtol=0, atol=TOLERANCE * (1 + np.abs(lib).max())):
                    logger.info(
                        "the XGBoost table disagrees with XGBoost on probe rows (%s walk): keeping"
                        " XGBoost's predictor",
                        "compiled" if compiled else "NumPy",
                    )
                    return False
        return True

    def _probe_rows(self) -> np.ndarray:
        """Rows that take both sides of many splits: per feature, values drawn from its split
        points, just below them, missing values and category codes."""
        rng = np.random.default_rng(0)
        X = rng.normal(size=(PROBE_ROWS, self.n_features)).astype(np.float32)
        inner = ~self.leaf
        for f in range(self.n_features):
            cuts = self.cond[inner & (self.feature == f) & (self.cat_row < 0)]
            choices = [np.float32(np.nan)]
            if len(cuts):
                picked = rng.choice(cuts, size=min(len(cuts), 64))
                choices += list(picked) + list(np.nextafter(picked, np.float32(-np.inf)))
            if self.has_cat:
                choices += list(np.arange(self.cat_bits.shape[1] + 1, dtype=np.float32))
            X[:, f] = rng.choice(np.asarray(choices, dtype=np.float32), size=PROBE_ROWS)
        return X

    def margins(
        self, X: np.ndarray, with_intercept: bool = True, compiled: bool | None = None
    ) -> list[np.ndarray]:
        """Per booster, its raw margins for the rows of the float32 matrix X: (n,) or (n, k).
        ``compiled``: walk the trees in compiled code (None: for up to COMPILED_ROWS rows, when
        Numba is installed)."""
        # C order and writeable: Numba compiles a read-only array's signature anew
        X = np.require(X, dtype=np.float32, requirements=["C", "W"])
        if compiled is None:
            compiled = X.shape[0] <= COMPILED_ROWS and walk_compiler() is not None
        values = self._walk_compiled(X) if compiled else self._walk(X)
        out = []
        for m, group in enumerate(self.groups):
            cols = []
            for c, trees in enumerate(group):
                start = self.intercept[m][c] if with_intercept else np.float32(0)
                seq = np.concatenate([np.full((X.shape[0], 1), start, np.float32), values[:, trees]], axis=1)
                cols.append(
                    np.cumsum(seq, axis=1, dtype=np.float32)[:, -1]
                )  # tree after tree, as XGBoost adds
            out.append(cols[0] if len(cols) == 1 else np.column_stack(cols))
        return out

    def _walk_compiled(self, X: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf values, walked by the compiled kernel over compact copies of the
        table (32-bit children and features: half the bytes to bring into cache)."""
        if self._compact is None:
            self._compact = (
                self.roots.astype(np.int32),
                np.ascontiguousarray(self.child, dtype=np.int32),
                self.feature.astype(np.int32),
                np.ascontiguousarray(self.cond),
                np.ascontiguousarray(self.default_right),
                self.cat_of.astype(np.int32),
                np.ascontiguousarray(self.cat_flat),
            )
        walk = walk_compiler()
        assert walk is not None
        return walk(X, *self._compact, self.cat_bits.shape[1], len(self.cat_bits))

    def _walk(self, X: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf values: the NumPy pass, one level of every tree at a time."""
        rows = np.arange(X.shape[0])[:, None]
        node = np.broadcast_to(self.roots.astype(np.intp), (X.shape[0], len(self.roots))).copy()
        width, n_cat = self.cat_bits.shape[1], len(self.cat_bits)
        for _ in range(self.depth):
            x = X[rows, self.feature[node]]
            go_right = ~(x < self.cond[node])
            if self.has_cat:
                crow = self.cat_of[node]
                valid = (x >= 0) & (x < width)  # codes outside the table are in no set: left
                bit = crow * width + np.where(valid, x, 0).astype(np.intp)
                go_right = np.where(crow < n_cat, self.cat_flat[bit] & valid, go_right)
            missing = np.isnan(x)
            if missing.any():
                go_right[missing] = self.default_right[node[missing]]
            node = self.child[node, go_right.view(np.int8)]
        return self.cond[node]


def _depth(child: np.ndarray, leaf: np.ndarray, roots: np.ndarray) -> int:
    """The deepest tree's depth: levels walked from every root at once until only leaves are left."""
    depth, level = 0, roots[~leaf[roots]]
    while len(level):
        depth += 1
        below = child[level].ravel()
        level = below[~leaf[below]]
    return depth


_WALK: Any = None


#: set to ``numpy`` to keep the NumPy pass for every call: Numba and LLVM add about 145 MB to a
#: process's resident memory (measured beside four saved models: 347 -> 486 MB, 710 -> 866 MB)
WALK_ENV = "AUTOML_TREE_WALK"


def walk_compiler() -> Any:
    """The compiled walk (Numba, compiled on first use and cached on disk), or None when Numba is
    not installed or ``AUTOML_TREE_WALK=numpy`` (the NumPy pass then serves every call)."""
    global _WALK
    if _WALK is None:
        _WALK = _make_walk()
    return _WALK or None


def _make_walk() -> Any:
    """Numba's dispatcher of the walk, or False (not installed, or ``AUTOML_TREE_WALK=numpy``).
    Where neither the package's ``__pycache__`` nor the user's cache directory can be written
    (a read-only container), Numba refuses ``cache=True``: the walk is then compiled in each
    process instead."""
    if os.environ.get(WALK_ENV, "").lower() == "numpy":
        return False
    try:
        from numba import njit
    except ImportError:  # numba is a dependency; a stripped install still predicts, in NumPy
        return False
    try:
        return njit(cache=True, nogil=True)(_walk_rows)
    except Exception as exc:  # noqa: BLE001 - no cache locator: compile without a disk cache
        logger.info("the compiled tree walk is not cached on disk (%s)", exc)
        return njit(cache=False, nogil=True)(_walk_rows)


def warm_walk() -> threading.Thread | None:
    """Compile the walk in a background thread (importing Numba there too), unless it is compiled
    already or cannot be (the thread, or None). A fit starts this before its search, whose trials
    run in other processes, so that its deployment stage does not spend 0.4-0.7 s of its time on
    Numba: a 60 s fit of wine_quality (split seed 0) left its refit options unmeasured for want of
    0.1 s."""
    if _WALK is False or walk_compiled_yet():
        return None
    thread = threading.Thread(target=_compile_walk, name="automl-walk-compile", daemon=True)
    thread.start()
    return thread


def _compile_walk() -> None:
    """One call of the walk on a one-node tree, with the argument types a table passes."""
    walk = walk_compiler()
    if walk is None:
        return
    one = np.zeros(1, np.int32)
    tree = (one, np.zeros((1, 2), np.int32), one, np.zeros(1, np.float32), np.zeros(1, bool))
    try:
        walk(np.zeros((1, 1), np.float32), *tree, one, np.zeros(1, bool), 1, 0)
    except Exception as exc:  # noqa: BLE001 - a background extra: the first table compiles it instead
        logger.warning("compiling the few-row tree walk failed: %s", exc)


def walk_compiled_yet() -> bool:
    """Whether this process has compiled (or loaded from the disk cache) the walk already."""
    return bool(_WALK) and bool(_WALK.signatures)


def walk_pending_s() -> float:
    """Seconds the first compiled walk of this process is still expected to take: 0 once compiled,
    or when no call will compile it (Numba not installed, or ``AUTOML_TREE_WALK=numpy``)."""
    if walk_compiled_yet() or walk_compiler() is None:
        return 0.0
    return WALK_COMPILE_S


def _walk_rows(X, roots, child, feature, cond, default_right, cat_of, cat_flat, width, n_cat):  # noqa: ANN001, ANN202
    """Leaf values (rows, trees) of every row in every tree, with the NumPy pass's decisions: a
    missing value takes the default branch; a categorical node sends the codes in its set right
    and any other value (unknown codes too) left; else ``x < split`` goes left. A leaf is its own
    child. Compiled by Numba (:func:`walk_compiler`), also correct as plain Python."""
    n, n_trees = X.shape[0], roots.shape[0]
    out = np.empty((n, n_trees), np.float32)
    for i in range(n):
        for t in range(n_trees):
            node = roots[t]
            while True:
                left = child[node, 0]
                if left == node:
                    break
                x = X[i, feature[node]]
                if np.isnan(x):
                    right = default_right[node]
                elif cat_of[node] < n_cat:
                    right = x >= 0 and x < width and cat_flat[cat_of[node] * width + int(x)]
                else:
                    right = not x < cond[node]
                node = child[node, 1] if right else left
            out[i, t] = cond[node]
    return out
