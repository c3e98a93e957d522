"""What a Ray Train worker of a boosting final holds of its shard: dense blocks, one per batch read,
handed to LightGBM as a list (never joined into a second copy), giving the same model as one
matrix would. No Ray: the batches are the numpy dicts ``iter_batches`` yields."""

from __future__ import annotations

import numpy as np

from tuning.distributed.frames import LABEL, WEIGHT, FeatureLayout
from tuning.distributed.gbdt import dense_chunks
from tuning.distributed.lightgbm import native_dataset


def _batches(rng: np.random.Generator, layout: FeatureLayout, rows: int, size: int, weighted: bool):
    num = rng.normal(size=(rows, layout.n_num)).astype(np.float32)
    num[rng.random(num.shape) < 0.05] = np.nan
    cat = np.column_stack([rng.integers(0, k, rows) for k in layout.cat_sizes]).astype(np.int32)
    y = ((num[:, 0] > 0) ^ (cat[:, 0] % 2 == 0) ^ (rng.random(rows) < 0.1)).astype(np.int64)
    w = rng.uniform(0.5, 2.0, rows).astype(np.float32)
    for start in range(0, rows, size):
        part = slice(start, start + size)
        batch = {f"n{i}": num[part, i] for i in range(layout.n_num)}
        batch |= {f"c{i}": cat[part, i] for i in range(layout.n_cat)}
        batch[LABEL] = y[part]
        if weighted:
            batch[WEIGHT] = w[part]
        yield batch


def test_a_shard_read_in_batches_stays_in_blocks_and_trains_the_model_one_matrix_trains():
    import lightgbm

    layout = FeatureLayout(n_num=4, cat_sizes=(7, 5))
    rng = np.random.default_rng(0)
    chunks, y, w = dense_chunks(_batches(rng, layout, 5_000, 1_000, weighted=True), layout)
    vchunks, vy, _ = dense_chunks(_batches(rng, layout, 2_000, 700, weighted=False), layout)
    # one block per batch, numbers then codes, in float32; labels and weights joined
    assert [c.shape for c in chunks] == [(1_000, 6)] * 5 and all(c.dtype == np.float32 for c in chunks)
    assert len(vchunks) == 3 and y.shape == (5_000,) and w is not None and w.shape == (5_000,)
    X, vX = np.concatenate(chunks), np.concatenate(vchunks)
    assert set(np.unique(X[:, 4])) <= set(range(7))  # the first code column, after the 4 numbers

    params = {"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1, "seed": 0}

    def model(train, valid):
        return lightgbm.train(params, train, num_boost_round=30, valid_sets=[valid])

    blocks = native_dataset(chunks, y, w, layout)
    assert blocks.data is chunks  # the list itself, not a joined copy of it
    from_blocks = model(blocks, native_dataset(vchunks, vy, None, layout, reference=blocks))
    whole = native_dataset([X], y, w, layout)
    from_whole = model(whole, native_dataset([vX], vy, None, layout, reference=whole))
    assert blocks.data is None  # LightGBM let the blocks go once it had built its bins
    np.testing.assert_array_equal(from_blocks.predict(vX), from_whole.predict(vX))
    assert from_blocks.dump_model()["feature_infos"] == from_whole.dump_model()["feature_infos"]


def test_an_empty_shard_is_one_empty_block_with_the_layout_s_columns():
    layout = FeatureLayout(n_num=3, cat_sizes=(4,))
    chunks, y, w = dense_chunks(iter(()), layout)
    assert [c.shape for c in chunks] == [(0, 4)] and y.shape == (0,) and w is None


def test_a_worker_keeps_no_view_of_the_batches_it_has_read():
    """``iter_batches`` gives zero-copy views of blocks in the object store: a worker that kept the
    label (or weight) views pinned every block of its shard there until it had read the last one.
    By the time batch k is asked for, batch k - 2 must be gone (k - 1 is still the loop's)."""
    import gc
    import weakref

    layout = FeatureLayout(n_num=2, cat_sizes=(3,))
    rng = np.random.default_rng(2)
    seen: list[list[weakref.ref]] = []

    def batches():
        for k, batch in enumerate(_batches(rng, layout, 4_000, 500, weighted=True)):
            gc.collect()
            if k >= 2:
                alive = [r for r in seen[k - 2] if r() is not None]
                assert not alive, f"batch {k - 2} is still held: {len(alive)} of its arrays"
            seen.append([weakref.ref(a) for a in batch.values()])
            yield batch

    chunks, y, w = dense_chunks(batches(), layout)
    assert len(seen) == 8 and len(chunks) == 8 and y.shape == w.shape == (4_000,)
