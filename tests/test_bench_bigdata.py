"""The big-data bench's parts: the seeded synthetic table, the baseline/data-mode decisions and
table, and the memory sampler that measures a fit's processes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is a repo folder, not installed


def test_synthetic_shards_are_deterministic_prefix_sharing_and_of_the_promised_kinds(tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from bench.synth import CATEGORICAL, LEVELS, MISSING, NUMERIC, TARGET, TRAIN, SynthStore, make_block

    a, _ = make_block(0, TRAIN, 3, 2000)
    assert a.equals(make_block(0, TRAIN, 3, 2000)[0]) and not a.equals(make_block(1, TRAIN, 3, 2000)[0])
    store = SynthStore(tmp_path / "s", seed=0, shard_rows=1000)
    big, small = store.table(2500), store.table(1000)
    files = sorted(Path(big["path"]).iterdir())
    assert [pq.read_metadata(f).num_rows for f in files] == [1000, 1000, 500] and big["rows"] == 2500
    assert (Path(small["path"]) / "part-00000.parquet").stat().st_ino == files[0].stat().st_ino  # shared
    assert pq.read_table(files[2]).equals(make_block(0, TRAIN, 2, 1000)[0].slice(0, 500))
    t = pq.read_table(big["path"])
    kinds = {f.name: str(f.type) for f in t.schema}
    assert {kinds[c] for c in NUMERIC} == {"float"} and len(NUMERIC) == 40
    assert {kinds[c] for c in CATEGORICAL} == {"string"} and len(CATEGORICAL) == 10
    assert kinds[TARGET] == "int8" and big["arrow_bytes"] > 0
    for c in CATEGORICAL:
        assert set(t.column(c).drop_null().unique().to_pylist()) <= set(LEVELS[c])
    assert SynthStore(tmp_path / "s", seed=0, shard_rows=1000).table(2500) == big  # cached
    sample, _ = make_block(7, TRAIN, 0, 20_000)
    for name in (*NUMERIC, *CATEGORICAL):
        share = sample.column(name).null_count / sample.num_rows
        assert abs(share - MISSING.get(name, 0.0)) < 0.015, name
    assert 0.3 < np.mean(sample.column(TARGET).to_numpy()) < 0.7


def test_synthetic_signal_is_learnable_and_below_the_oracle(tmp_path):
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    from bench.synth import CATEGORICAL, LEVELS, TARGET, SynthStore, read_frame

    store = SynthStore(tmp_path, seed=0, shard_rows=10_000)
    train, test = read_frame(store.table(20_000)["path"]), store.test(10_000)
    assert len(train) == 20_000 and list(train["cat_03"].cat.categories) == list(LEVELS["cat_03"])
    assert all(str(train[c].dtype) == "category" for c in CATEGORICAL)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "num_threads": 1, "verbose": -1},
        lgb.Dataset(train.drop(columns=[TARGET]), train[TARGET]),
        num_boost_round=100,
    )
    te = read_frame(test["path"])
    auc = roc_auc_score(te[TARGET], booster.predict(te.drop(columns=[TARGET])))
    assert 0.8 < auc < test["oracle_auc"] < 0.9, (auc, test["oracle_auc"])


def test_big_data_helpers_decide_the_baseline_and_the_data_mode_and_render_the_table():
    from bench.big_fit import data_mode_kwargs
    from bench.bigdata import baseline_fits, bigdata_markdown, fit_skip_reason

    assert baseline_fits(10_000_000, 22 * 2**30)[0]
    ok, why = baseline_fits(10_000_000, 4 * 2**30)
    assert not ok and "estimated peak 7.7 GB" in why

    class Old:
        def __init__(self, target, *, time_limit=None): ...

    class New:
        def __init__(self, target, *, time_limit=None, data_mode="auto"): ...

    assert data_mode_kwargs(Old) == {} and data_mode_kwargs(New) == {"data_mode": "streaming"}
    assert fit_skip_reason(10_000_000, streaming=True) is None
    assert fit_skip_reason(1_000_000, streaming=False) is None
    assert "no data_mode argument yet" in fit_skip_reason(3_000_000, streaming=False)
    res = {
        "seed": 0,
        "shard_rows": 250_000,
        "budget_s": 1800.0,
        "test": {"rows": 200_000, "positive_share": 0.47, "oracle_auc": 0.876},
        "tables": {"1000000": {"parquet_bytes": 230 * 2**20, "arrow_bytes": 232 * 2**20}},
        "runs": [
            {"kind": "baseline", "rows": 1_000_000, "status": "skipped", "reason": "too big"},
            {
                "kind": "ours",
                "rows": 1_000_000,
                "status": "ok",
                "budget_s": 1800.0,
                "data_mode": "streaming",
                "fit": {"wall_s": 1790.4},
                "memory": {
                    "driver_peak_rss_mb": 1500.0,
                    "peak_tree_pss_mb": 5000.0,
                    "peak_at_s": 834.6,
                    "peak_breakdown_mb": [["15114 ray::RayTrainWorker", 1425.1, 151.9]]
                    + [[f"{i} ray::Actor{i}", 100.0, 0.0] for i in range(10)],
                },
                "object_store": {"spilled_bytes": 3 * 2**20},
                "test": {"roc_auc": 0.8612},
            },
        ],
    }
    md = bigdata_markdown(res)
    row = next(ln for ln in md.splitlines() if ln.startswith("| 1,000,000"))
    assert row == (
        "| 1,000,000 | 230 | 232 | 1800 | streaming | ok | 1790 | 1,500 | 5,000 (21.6x) | 3 | 0.8612 "
        "| skipped | - | - | - |"
    )
    assert "Skipped: LightGBM at 1,000,000 rows: too big." in md and "0.8760" in md
    # what the peak was made of: the 8 largest processes (no pid), the object store's share, the rest summed
    assert (
        "All processes' peak at 1,000,000 rows: 5,000 MB at 835 s of the fit, PSS MB by process: "
        "ray::RayTrainWorker 1,425 (152 object store); ray::Actor0 100;" in md
    ), md
    assert "ray::Actor6 100; 3 others 300." in md


def test_tree_sampler_also_counts_session_processes_outside_the_tree(tmp_path):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    from bench.measure import TreeMemorySampler

    marker = f"bench-marker-{os.getpid()}"
    pid_file = tmp_path / "pid"
    child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(30)"
    # a shell that exits at once leaves its background child reparented: outside our tree
    subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{child}" {pid_file} {marker} >{tmp_path}/out 2>&1 &'],
        check=True,
    )
    from bench.measure import _memory_kb, pids_with_cmdline

    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    # once, in a full run, no process with the marker was found within 10 s: say what happened
    assert pid_file.exists(), f"the child never started: {(tmp_path / 'out').read_text()!r}"
    pid = int(pid_file.read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}").exists() else b"(gone)"
    assert pids_with_cmdline(marker) == [pid], (pid, cmdline)
    try:
        plain, also = TreeMemorySampler(), TreeMemorySampler(also=lambda: marker)
        plain.sample(), also.sample()
        assert also.result()["outside_tree_pids"] == 1 and plain.result()["outside_tree_pids"] == 0
        assert also.outside_tree == {pid} and not plain.outside_tree
        # the outside process's memory is in the sum (comparing the two samplers' peaks is racy:
        # the session's own processes change size between the two samples on a loaded machine)
        outside_pss = _memory_kb(pid)[0]
        assert outside_pss > 0 and also.peak_pss_kb >= outside_pss
        # the peak's breakdown names each process (its pid and command line) with its share
        labels = [label for label, _, _ in also.result()["peak_breakdown_mb"]]
        assert any(label.startswith(f"{pid} ") and "python -c import os" in label for label in labels), labels
        assert also.result()["peak_at_s"] is not None and also.result()["timeline_s_mb_processes"]
    finally:
        os.kill(pid, signal.SIGTERM)


def test_resumed_big_data_runs_keep_their_row_in_the_table(tmp_path):
    """--resume keeps an ok result written by an older bench (without the keys the table reads):
    its row still shows the baseline's AUC beside ours."""
    from bench.bigdata import _baseline, _ours, bigdata_markdown
    from bench.common import write_json

    write_json(tmp_path / "baseline_1000.json", {"status": "ok", "test_roc_auc": 0.87, "train_s": 5.0})
    write_json(tmp_path / "ours_1000_60s.json", {"status": "ok", "test": {"roc_auc": 0.871}, "budget_s": 60})
    runs = [
        _baseline(1000, {}, {}, tmp_path, 0, True),
        _ours(1000, {}, {}, tmp_path, tmp_path, 60.0, 0, True),
    ]
    assert [(r["kind"], r["rows"]) for r in runs] == [("baseline", 1000), ("ours", 1000)]
    table = bigdata_markdown({"runs": runs, "tables": {1000: {}}, "test": {}})
    assert "0.8700" in table and "+0.0010" in table, table
