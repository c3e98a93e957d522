"""A LightGBM model's trees run by XGBoost's predictor, for batches.

Why: on the same data and a forest of the same size, XGBoost 3.2's CPU predictor walks trees about
three times as fast as LightGBM 4.7's ``Booster.predict`` (100,000 float32 rows, 2 threads, on the
2-core test machine: 1,000 trees of 63 leaves over 20 features, LightGBM 2.70 s, XGBoost 0.82 s;
400 trees of 31 leaves over 100 features, 0.71 s against 0.27 s). That is also faster than the
code ``automl compile`` builds (:mod:`automl.models.compiled`: 58,000 rows/s at gcc -O3 on the
first shape, where XGBoost gave 121,000), and it costs no compiler.

The XGBoost model is built in memory from the booster's own text dump (the native ``model.txt``
stays the artifact's only model file) and kept only when, on probe rows taken from the model's
split thresholds and categories, every row reaches the same leaf of every tree as in LightGBM and
the raw scores agree. LightGBM's decisions map to
XGBoost's as follows:

- a number goes left when ``x <= threshold`` (in double); XGBoost goes left when ``x < split``
  (in float32), so the split is the float32 just above the largest float32 ``<= threshold`` (the
  inputs are float32, :meth:`automl.preprocessing.FeatureMatrix.dense`);
- a missing value of a split whose missing type is NaN takes the split's default side; of type
  None it counts as 0, so it takes the side 0 takes; of type Zero (zero and missing take the
  default side) only when that is the side 0 takes by its value, otherwise nothing is built;
- a category in a split's set goes left in LightGBM and right in XGBoost, so the children swap;
  a missing value and a negative code go right in LightGBM (on x86, where LightGBM's cast of NaN
  to int is negative; elsewhere the probe check decides), which is XGBoost's default (left,
  after the swap) and its side for an invalid code. LightGBM truncates a code to an integer, so a
  code in (-1, 0) is category 0 there: such inputs are passed to XGBoost as 0.
- LightGBM reads |x| <= 1e-35 as zero; such inputs are passed to XGBoost as 0.

Linear trees are not covered: nothing is built for them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from automl.models import ubjson
from automl.models.lightgbm_trees import ZERO, Parsed, Unsupported, indicator_columns, parse
from automl.models.lightgbm_trees import probe as probe_rows

logger = logging.getLogger(__name__)

#: calls of at least this many rows use XGBoost's predictor (fewer rows: LightGBM's, whose
#: single-row API is faster for a handful of rows)
XGB_ROWS = 64
PROBE_ROWS = 512
#: rows per XGBoost call of a large batch
CHUNK_ROWS = 65_536
#: the build pays for itself once the rows predicted would have taken LightGBM that much longer
#: (ski rental: the rows before the build cost at most what the build costs). Measured on the
#: 2-core test machine: a build takes 2.4-3 us per tree node (a 7-class model of 2,100 trees x
#: 127 leaves: 1.27-1.44 s, of which 0.35 s LightGBM's text dump and 0.17 s writing the UBJSON);
#: XGBoost saves 7-46 ns per tree and row (LightGBM 0.17 s against 0.12 s for 50,000 rows of a
#: 150-tree model with missing values and categories; 13.9 s against 3.5 s for 100,000 rows of
#: that 7-class model; 15 ns on 400 trees x 31 leaves without missing values); 10 ns is taken
BUILD_S_PER_NODE, SAVED_S_PER_TREE_ROW = 3e-6, 1e-8
#: LightGBM sums leaves in double, XGBoost in float32: raw scores (less the first trees' constant,
#: see automl.models.lightgbm_trees) must agree within this times their largest magnitude + 1
ATOL = 1e-4


def pays(rows: int, trees: int, splits: int) -> bool:
    """Whether ``rows`` predicted so far with a model of ``trees`` trees and ``splits`` internal
    nodes have saved (by the estimate above) what building the XGBoost form costs."""
    return rows * trees * SAVED_S_PER_TREE_ROW >= (2 * splits + trees) * BUILD_S_PER_NODE


class XGBoostForm:
    """An in-memory XGBoost booster holding a LightGBM booster's trees; :meth:`raw` gives raw
    scores shaped as LightGBM's ``predict(raw_score=True)`` (before any rf-mode averaging)."""

    def __init__(
        self,
        booster: Any,
        offset: np.ndarray,
        n_outputs: int,
        cat_features: list[int],
        indicators: list[tuple[int, np.ndarray]],
    ) -> None:
        self.booster, self.offset, self.n_outputs = booster, offset, n_outputs
        self.cat_features, self.indicators = cat_features, indicators
        self._threads = 0
        self._lock = threading.Lock()

    @classmethod
    def build(cls, lgb_booster: Any, n_iter: int, n_outputs: int) -> XGBoostForm | None:
        """The XGBoost form of the first ``n_iter`` iterations, or None when the model has a form
        this conversion does not cover or XGBoost disagrees with LightGBM on the probe rows."""
        import xgboost as xgb

        try:
            parsed = parse(lgb_booster.model_to_string(num_iteration=n_iter))
        except Unsupported as e:
            logger.info("LightGBM model kept on its own predictor: %s", e)
            return None
        trees = parsed.trees
        model = _template(n_outputs, parsed.n_features + len(parsed.indicators))
        gb = model["learner"]["gradient_booster"]["model"]
        gb["trees"] = [dict(t, id=i) for i, t in enumerate(trees)]
        gb["tree_info"] = [i % n_outputs for i in range(len(trees))]
        gb["gbtree_model_param"]["num_trees"] = str(len(trees))
        if "iteration_indptr" in gb:
            gb["iteration_indptr"] = list(range(0, len(trees) + 1, n_outputs))
        booster = xgb.Booster()
        booster.load_model(bytearray(ubjson.dumps(model)))  # typed arrays: see automl.models.ubjson
        form = cls(
            booster,
            np.zeros(n_outputs if n_outputs > 1 else ()),
            n_outputs,
            sorted(parsed.splits.categories),
            parsed.indicators,
        )
        return form if form._check(lgb_booster, n_iter, parsed) else None

    def _check(self, lgb_booster: Any, n_iter: int, parsed: Parsed) -> bool:
        """Every probe row reaches the same leaf of every tree as in LightGBM (exact), and the raw
        scores agree; sets :attr:`offset` (XGBoost's base score less the constant taken out)."""
        import xgboost as xgb

        probe = probe_rows(parsed.splits, parsed.n_features, PROBE_ROWS)
        lgb_leaves = lgb_booster.predict(probe, num_iteration=n_iter, pred_leaf=True).astype(np.int64)
        want_nodes = parsed.leaf_nodes[parsed.leaf_start[None, : lgb_leaves.shape[1]] + lgb_leaves]
        nodes = self.booster.predict(xgb.DMatrix(self._prepared(probe)), pred_leaf=True)
        if not np.array_equal(np.asarray(nodes, np.int64).reshape(want_nodes.shape), want_nodes):
            logger.info(
                "XGBoost reaches other leaves than LightGBM on probe rows: keeping LightGBM's predictor"
            )
            return False
        want = np.asarray(lgb_booster.predict(probe, num_iteration=n_iter, raw_score=True), np.float64)
        got = self.raw(probe, 1).reshape(want.shape)  # type: ignore[union-attr]
        base = parsed.base if self.n_outputs > 1 else parsed.base[0]
        self.offset = (got - want)[0]  # XGBoost adds its base score, LightGBM the constant taken out
        scale = 1 + np.abs(want - base).max()
        if not np.allclose(got - self.offset, want, rtol=0, atol=ATOL * scale):
            logger.info("XGBoost disagrees with LightGBM on probe rows: keeping LightGBM's predictor")
            return False
        return True

    def _prepared(self, dense: np.ndarray) -> np.ndarray | None:
        """Float32 rows as XGBoost is to read them, or None for rows holding an infinity (LightGBM
        compares it with a split at +inf as equal, XGBoost as not less)."""
        if np.isinf(dense).any():
            return None
        tiny = (np.abs(dense) <= ZERO) & (dense != 0)
        if self.cat_features:  # LightGBM truncates a code to an int: (-1, 0) is category 0
            codes = dense[:, self.cat_features]
            tiny[:, self.cat_features] |= (codes < 0) & (codes > -1)
        if tiny.any():
            dense = np.where(tiny, np.float32(0), dense)
        return indicator_columns(dense, self.indicators) if self.indicators else dense

    def raw(self, dense: np.ndarray, threads: int) -> np.ndarray | None:
        """Raw scores of float32 rows, or None when a row holds an infinity (the caller keeps
        LightGBM's predictor then). Large calls go by chunks of CHUNK_ROWS rows (the prepared
        copy with indicator columns would otherwise be as large as the call)."""
        if len(dense) > CHUNK_ROWS:
            parts = [self.raw(dense[i : i + CHUNK_ROWS], threads) for i in range(0, len(dense), CHUNK_ROWS)]
            return None if any(p is None for p in parts) else np.concatenate(parts)  # type: ignore[arg-type]
        prepared = self._prepared(dense)
        if prepared is None:
            return None
        with self._lock:  # nthread is a booster parameter: one call at a time sets and uses it
            if threads != self._threads:
                self.booster.set_param({"nthread": threads})
                self._threads = threads
            out = self.booster.inplace_predict(prepared, predict_type="margin")
        return np.asarray(out, dtype=np.float64) - self.offset

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("offset", "n_outputs", "cat_features", "indicators")}
        return {"raw": bytes(self.booster.save_raw("ubj")), **state}

    def __setstate__(self, state: dict[str, Any]) -> None:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(state["raw"]))
        self.__init__(booster, **{k: v for k, v in state.items() if k != "raw"})  # type: ignore[misc]


class BatchForm:
    """One LightGBM model's XGBoost form for batches, built once the rows it predicted pay for it
    (:func:`pays`); :meth:`raw` gives None while it is not built, could not be, or for rows the
    form does not serve (the caller keeps LightGBM's predictor then)."""

    _build_lock = threading.Lock()  # one build at a time: two would share the CPUs for nothing

    def __init__(self, booster: Any, n_iter: int, n_outputs: int) -> None:
        self.booster, self.n_iter, self.n_outputs = booster, n_iter, n_outputs
        self.rows_seen = 0
        self.form: XGBoostForm | None = None
        self.failed = False
        # trees and internal nodes (LightGBM's split counts summed over features)
        splits = booster.feature_importance(importance_type="split", iteration=n_iter)
        self.trees, self.splits = n_iter * n_outputs, int(splits.sum())

    def raw(self, dense: np.ndarray, threads: int) -> np.ndarray | None:
        if self.form is None and not self.failed:
            self.rows_seen += len(dense)
            if not pays(self.rows_seen, self.trees, self.splits):
                return None
            # while another thread builds (this model's form or another's), LightGBM answers
            if not self._build_lock.acquire(blocking=False):
                return None
            try:
                if self.form is None and not self.failed:
                    self._build()
            finally:
                self._build_lock.release()
        form = self.form
        if form is None:
            return None
        try:
            return form.raw(dense, threads)
        except Exception:  # noqa: BLE001 - e.g. out of memory: LightGBM answers, now and after
            logger.warning(
                "the XGBoost form of a LightGBM model failed: its own predictor stays", exc_info=True
            )
            self.form, self.failed = None, True
            return None

    def _build(self) -> None:
        try:
            self.form = XGBoostForm.build(self.booster, self.n_iter, self.n_outputs)
        except Exception:  # noqa: BLE001 - a failed conversion only costs speed
            logger.warning(
                "could not build the XGBoost form of a LightGBM model: its own predictor stays", exc_info=True
            )
        self.failed = self.form is None

    def __getstate__(self) -> dict[str, Any]:  # a copy (e.g. sent by Ray) builds its own
        return {"booster": self.booster, "n_iter": self.n_iter, "n_outputs": self.n_outputs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


def _template(n_outputs: int, n_features: int) -> dict[str, Any]:
    """The installed XGBoost's JSON model of the right shape (its format varies by version)."""
    import xgboost as xgb

    X = np.zeros((2, n_features), dtype=np.float32)
    params: dict[str, Any] = {"max_depth": 1, "nthread": 1, "base_score": 0.5}
    y = np.arange(2) % n_outputs
    if n_outputs > 1:
        params.update(objective="multi:softprob", num_class=n_outputs)
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=1)
    return ubjson.loads(booster.save_raw("ubj"))
