"""LightGBM's text model read into XGBoost's JSON trees (for :mod:`automl.models.lightgbm_xgb`,
whose docstring gives how each LightGBM decision maps to XGBoost's), and probe rows that take
each split's sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: LightGBM's kZeroThreshold (1e-35f): it reads |x| <= 1e-35 as zero (its dense rows drop such
#: values), and its splits of zero against the rest sit at +-1e-35f, which LightGBM writes as
#: 1.0000000180025095e-35; inputs in that band are zeroed for XGBoost
ZERO = float(np.float32(1e-35))
_ROOT_PARENT = 2147483647  # XGBoost's "no parent"


class Unsupported(Exception):
    """A tree form the conversion does not cover (the caller keeps LightGBM's predictor)."""


#: a model's categorical splits become numeric splits on "code in the split's set" columns
#: appended to the input (:func:`indicator_columns`) when it has at most this many distinct
#: (feature, set) pairs per tree. XGBoost's predictor takes a slower path for categorical splits,
#: and each column costs about 0.5 ms per 100,000 rows to build. 100,000 rows, 2 threads, on the
#: 2-core test machine (LightGBM / XGBoost with categorical splits / with indicator columns):
#: 400 synthetic trees, 54 sets: 0.73 / 0.51 / 0.33 s; diamonds' refit LightGBM, 762 trees, 109
#: sets: 2.80 / 1.34 / 0.90 s; nlswork's, 425 trees, 586 sets: 1.15 / 0.62 / 1.15 s; adult's,
#: 275 trees, 613 sets: 0.72 / 0.53 / 0.80 s
MAX_INDICATORS_PER_TREE = 0.25


@dataclass
class Parsed:
    """A LightGBM model read for XGBoost: its trees, what the probe rows and the checks need."""

    trees: list[dict[str, Any]]
    n_features: int
    splits: Splits
    indicators: list[tuple[int, np.ndarray]]  # columns appended after the features: (feature, set)
    leaf_nodes: np.ndarray  # each tree's leaves in LightGBM's order, as XGBoost node numbers
    leaf_start: np.ndarray  # per tree, where its leaves start in leaf_nodes
    base: np.ndarray  # per output, the constant taken out of the first iteration's trees


def parse(text: str) -> Parsed:
    """XGBoost JSON-shaped trees from LightGBM's text model (see :class:`Parsed`)."""
    head, _, body = text.partition("\nTree=")
    header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    n_features = int(header["max_feature_idx"]) + 1
    body = body.split("\nend of trees", 1)[0]
    blocks = [dict(ln.split("=", 1) for ln in b.splitlines()[1:] if "=" in ln) for b in body.split("\nTree=")]
    if any(f.get("is_linear", "0") != "0" for f in blocks):
        raise Unsupported("linear trees")
    forest = _Forest(blocks, n_features, int(header.get("num_tree_per_iteration", "1")))
    trees = forest.trees(n_features + len(forest.indicators))
    return Parsed(
        trees, n_features, forest.splits, forest.indicators, forest.leaf_nodes, forest.leaf_start, forest.base
    )


def indicator_columns(dense: np.ndarray, indicators: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """``dense`` with one float32 column per indicator: 1 where the feature's code is in the set
    as LightGBM reads it (truncated to an integer; missing and negative codes are in no set). One
    table lookup per feature: ``np.isin`` per indicator cost 0.1 s on 100,000 rows and 54 sets."""
    out = np.empty((len(dense), dense.shape[1] + len(indicators)), np.float32)
    out[:, : dense.shape[1]] = dense
    index: dict[int, tuple[np.ndarray, int]] = {}  # per feature: each row's table slot, the table size
    for j, (f, members) in enumerate(indicators):
        if f not in index:
            size = max(int(m.max(initial=-1)) for g, m in indicators if g == f) + 1
            with np.errstate(invalid="ignore"):
                code = np.trunc(dense[:, f])
                inside = (code >= 0) & (code < size)  # False for missing codes
            index[f] = (np.where(inside, code, size).astype(np.intp), size)
        slot, size = index[f]
        table = np.zeros(size + 1, np.float32)  # the last slot: codes in no set
        table[members] = 1.0
        out[:, dense.shape[1] + j] = table[slot]
    return out


class Splits:
    """The values the splits name, per feature: numeric thresholds and categories."""

    def __init__(
        self, num_feature: np.ndarray, threshold: np.ndarray, categories: dict[int, list[int]]
    ) -> None:
        self.num_feature, self.threshold, self.categories = num_feature, threshold, categories


class _Forest:
    """Every tree's nodes in one set of arrays: LightGBM's fields read once for all trees."""

    def __init__(self, blocks: list[dict[str, str]], n_features: int, per_iteration: int) -> None:
        def col(key: str, dtype: Any) -> np.ndarray:
            # parsed in C from one string (a token list of a large model held ~60 MB); integers and
            # thresholds are exact in float64
            text = " ".join(b.get(key, "") for b in blocks)
            return np.fromstring(text, dtype=np.float64, sep=" ").astype(dtype)

        n_leaves = np.array([int(b["num_leaves"]) for b in blocks], np.int64)
        n_int, self.sizes = n_leaves - 1, 2 * n_leaves - 1
        self.node_off = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.tree_of = np.repeat(np.arange(len(blocks)), self.sizes)
        total = int(self.sizes.sum())
        int_tree = np.repeat(np.arange(len(blocks)), n_int)
        local = np.arange(len(int_tree)) - np.repeat(np.cumsum(n_int) - n_int, n_int)
        inner = self.node_off[int_tree] + local  # global (LightGBM-numbered) internal nodes
        leaves = np.setdiff1d(np.arange(total), inner, assume_unique=True)

        def child(c: np.ndarray) -> np.ndarray:
            return self.node_off[int_tree] + np.where(c >= 0, c, n_int[int_tree] + ~c)

        lc, rc = child(col("left_child", np.int64)), child(col("right_child", np.int64))
        feat, thr = col("split_feature", np.int64), col("threshold", np.float64)
        dt = col("decision_type", np.int64)
        is_cat, dflt_left, missing = (dt & 1) == 1, ((dt >> 1) & 1) == 1, (dt >> 2) & 3
        zero_left = thr >= 0  # where 0 goes by value
        if np.any(~is_cat & (missing == 1) & (dflt_left != zero_left)):
            raise Unsupported("a split that sends zero and missing values against zero's side")
        self.left, self.right = np.full(total, -1, np.int64), np.full(total, -1, np.int64)
        self.left[inner], self.right[inner] = np.where(is_cat, rc, lc), np.where(is_cat, lc, rc)
        self.cond, self.feature = np.zeros(total, np.float32), np.zeros(total, np.int64)
        self.leaf_start = np.cumsum(n_leaves) - n_leaves
        self.base = np.zeros(per_iteration)
        leaf_values = col("leaf_value", np.float64)
        for t in range(min(per_iteration, len(blocks))):
            # LightGBM starts each output from the first iteration's tree (the target's average): a
            # large constant there would cost float32 sums their precision (a regression target
            # around 1e6 lost about 1 unit), so it is taken out and added back in float64
            first = blocks[t].get("internal_value", "").split()
            mine = slice(self.leaf_start[t], self.leaf_start[t] + n_leaves[t])
            self.base[t] = float(first[0]) if n_int[t] and first else float(leaf_values[mine].mean())
            leaf_values[mine] -= self.base[t]
        self.cond[leaves] = leaf_values.astype(np.float32)
        # numbers: x <= thr (double) left  <=>  float32 x < the float32 above the largest float32 <= thr
        low = thr.astype(np.float32)
        low = np.where(low.astype(np.float64) > thr, np.nextafter(low, np.float32(-np.inf)), low)
        self.cond[inner] = np.where(is_cat, 0.0, np.nextafter(low, np.float32(np.inf)))
        self.feature[inner] = feat
        self.default_left, self.split_type = np.zeros(total, np.int64), np.zeros(total, np.int64)
        self.default_left[inner] = np.where(is_cat, True, np.where(missing == 2, dflt_left, zero_left))
        self.split_type[inner] = is_cat
        self.new = self._adjacent_children()
        self.leaf_nodes = self.new[leaves]
        cat_sets = self._category_sets(blocks, col, inner[is_cat], thr[is_cat], int_tree[is_cat])
        categories: dict[int, list[int]] = {}
        for f, (_, members) in zip(feat[is_cat], cat_sets):
            categories.setdefault(int(f), []).extend(int(m) for m in members)
        self.cat_sets = cat_sets
        self.indicators = self._as_indicators(feat[is_cat], n_features, len(blocks))
        self.splits = Splits(feat[~is_cat], thr[~is_cat], categories)

    def _as_indicators(
        self, features: np.ndarray, n_features: int, trees: int
    ) -> list[tuple[int, np.ndarray]]:
        """Turn the categorical splits into numeric ones on indicator columns (see
        MAX_INDICATORS_PER_TREE);
        the indicators, or [] when there are none or too many."""
        ids: dict[tuple[int, bytes], int] = {}
        indicators, columns = [], []
        for f, (_, members) in zip(features, self.cat_sets):
            key = (int(f), members.tobytes())
            if key not in ids:
                ids[key] = len(indicators)
                indicators.append((int(f), members))
            columns.append(n_features + ids[key])
        if not indicators or len(indicators) > MAX_INDICATORS_PER_TREE * trees:
            return []
        nodes = np.array([node for node, _ in self.cat_sets], np.int64)
        # the children are already XGBoost's (left: not in the set): indicator < 0.5 goes left
        self.feature[nodes], self.cond[nodes] = columns, 0.5
        self.split_type[nodes], self.default_left[nodes] = 0, 1
        self.cat_sets = []
        return indicators

    def _category_sets(self, blocks, col, nodes, idx, trees) -> list[tuple[int, np.ndarray]]:  # noqa: ANN001
        """Per categorical node (global number), the categories LightGBM's bitset sends left."""
        if not len(nodes):
            return []
        n_cat = np.array([int(b.get("num_cat", "0")) for b in blocks], np.int64)
        words_per_tree = np.array([len(b.get("cat_threshold", "").split()) for b in blocks], np.int64)
        bounds = col("cat_boundaries", np.int64)  # num_cat + 1 per tree with categorical splits
        bound_off = np.cumsum(n_cat + (n_cat > 0)) - (n_cat + (n_cat > 0))
        word_off = np.cumsum(words_per_tree) - words_per_tree
        words = col("cat_threshold", np.int64).astype(np.uint32)
        out = []
        for node, i, t in zip(nodes, idx.astype(np.int64), trees):
            b0, b1 = bounds[bound_off[t] + i], bounds[bound_off[t] + i + 1]
            bits = np.unpackbits(words[word_off[t] + b0 : word_off[t] + b1].view(np.uint8), bitorder="little")
            out.append((int(node), np.flatnonzero(bits)))
        return out

    def _adjacent_children(self) -> np.ndarray:
        """Each node's new number within its tree: XGBoost's predictor takes a node's right child
        to be its left child + 1, so nodes are numbered level by level, children side by side."""
        new = np.zeros(len(self.left), np.int64)
        next_id = np.ones(len(self.sizes), np.int64)
        level = self.node_off.copy()
        while len(level):
            inner = level[self.left[level] >= 0]  # grouped by tree, as the roots are
            tid = self.tree_of[inner]
            counts = np.bincount(tid, minlength=len(self.sizes))
            rank = np.arange(len(inner)) - (np.cumsum(counts) - counts)[tid]
            lc, rc = self.left[inner], self.right[inner]
            new[lc] = next_id[tid] + 2 * rank
            new[rc] = new[lc] + 1
            next_id += 2 * counts
            level = np.column_stack([lc, rc]).ravel()
        return new

    def trees(self, n_features: int) -> list[dict[str, Any]]:
        """The XGBoost JSON trees, children and parents numbered within each tree."""
        pos = self.node_off[self.tree_of] + self.new  # where each node goes
        order = np.empty_like(pos)
        order[pos] = np.arange(len(pos))
        has = self.left >= 0
        left = np.where(has, self.new[np.maximum(self.left, 0)], -1)[order]
        right = np.where(has, self.new[np.maximum(self.right, 0)], -1)[order]
        parents = np.full(len(pos), _ROOT_PARENT, np.int64)
        inner = np.flatnonzero(has)
        parents[pos[self.left[inner]]] = self.new[inner]
        parents[pos[self.right[inner]]] = self.new[inner]
        # the dtypes of XGBoost's own typed arrays in its .ubj files
        left, right, parents = left.astype(np.int32), right.astype(np.int32), parents.astype(np.int32)
        cond, feature = self.cond[order], self.feature[order].astype(np.int32)
        default_left, split_type = (
            self.default_left[order].astype(np.uint8),
            self.split_type[order].astype(np.uint8),
        )
        zeros = np.zeros(len(pos), np.float32)
        by_tree: dict[int, list[tuple[int, np.ndarray]]] = {}
        for node, members in self.cat_sets:  # XGBoost reads a tree's categorical nodes in node order
            by_tree.setdefault(int(self.tree_of[node]), []).append((int(self.new[node]), members))
        empty, empty64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
        out = []
        for t, (a, n) in enumerate(zip(self.node_off, self.sizes)):
            sl = slice(int(a), int(a + n))
            cats = sorted(by_tree.get(t, []), key=lambda p: p[0])
            sizes = np.array([len(m) for _, m in cats], np.int64)
            out.append(
                {
                    "base_weights": cond[sl],
                    "categories": np.concatenate([m for _, m in cats]).astype(np.int32) if cats else empty,
                    "categories_nodes": np.array([c for c, _ in cats], np.int32) if cats else empty,
                    "categories_segments": (np.cumsum(sizes) - sizes) if cats else empty64,
                    "categories_sizes": sizes if cats else empty64,
                    "default_left": default_left[sl],
                    "id": t,
                    "left_children": left[sl],
                    "loss_changes": zeros[sl],
                    "parents": parents[sl],
                    "right_children": right[sl],
                    "split_conditions": cond[sl],
                    "split_indices": feature[sl],
                    "split_type": split_type[sl],
                    "sum_hessian": zeros[sl],
                    "tree_param": {
                        "num_deleted": "0",
                        "num_feature": str(n_features),
                        "num_nodes": str(int(n)),
                        "size_leaf_vector": "1",
                    },
                }
            )
        return out


def probe(splits: Splits, n_features: int, n_rows: int) -> np.ndarray:
    """Rows where each feature takes one of its split values or one just either side of it (for a
    split of zero against the rest: zero, values inside LightGBM's zero band and outside it), one
    of its categories or a code no split names, or is missing."""
    rng = np.random.default_rng(0)
    X = np.zeros((n_rows, n_features))
    for f in range(n_features):
        thr = splits.threshold[splits.num_feature == f]
        if len(thr):
            x = rng.choice(thr, n_rows)
            near = np.stack(
                [
                    x,
                    np.nextafter(x.astype(np.float32), np.float32(-np.inf)),
                    x + 1e-6 * np.maximum(1.0, np.abs(x)),
                ]
            )
            v = near[rng.integers(0, 3, n_rows), np.arange(n_rows)]
            band = np.abs(x) <= ZERO
            v[band] = rng.choice([0.0, -1e-36, 1e-36, -1e-3, 1e-3], int(band.sum()))
            X[:, f] = np.minimum(v, np.finfo(np.float32).max)  # inputs are finite (see raw)
        cats = splits.categories.get(f)
        if cats:
            X[:, f] = rng.choice(np.asarray(cats + [max(cats) + 1, 0]), n_rows)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X.astype(np.float32)
