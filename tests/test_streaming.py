"""The streaming data mode (issue 15) on small seeded tables, forced: the mode decision, the exact
profile figures, the hashed / time / group holdout, preprocessing of streamed blocks against memory
mode, an end-to-end fit whose Predictor loads and predicts without Ray, and a 2-node loopback
cluster whose nodes both run Ray Train workers while the driver never holds the table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl.config import FitSpec, SearchConfig, StreamingConfig, ValidationConfig

ROOT = Path(__file__).resolve().parents[1]


def _table(n: int = 2000, seed: int = 0, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, size=n)
    color = rng.choice(["red", "green", "blue", "grey"], size=n)
    signal = 1.5 * x1 - x2 + (color == "red") + rng.normal(scale=0.4, size=n)
    df = pd.DataFrame(
        {
            "rid": np.arange(n),
            "x1": x1,
            "x2": x2,
            "color": color,
            "day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "store": rng.integers(0, 40, n),
        }
    )
    df.loc[rng.random(n) < 0.1, "x2"] = np.nan
    df.loc[rng.random(n) < 0.05, "color"] = None
    df["label"] = 10 + 3 * signal if regression else np.where(signal > 0.3, "yes", "no")
    df.loc[rng.random(n) < 0.01, "label"] = None
    return df


def _shards(df: pd.DataFrame, directory: Path, parts: int = 4) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        df.iloc[chunk].to_parquet(directory / f"part-{i}.parquet", index=False)
    return directory


def _spec(**validation) -> FitSpec:
    return FitSpec(
        target="label",
        drop_columns=("rid",),
        validation=ValidationConfig(**validation),
        streaming=StreamingConfig(sample_rows=300),
        data_mode="streaming",
    )


# --- the mode ---------------------------------------------------------------------------------------
def test_auto_mode_keeps_small_tables_in_memory_and_streams_when_ray_memory_is_short(tmp_path, monkeypatch):
    from automl.exceptions import ConfigError
    from automl.streaming import mode

    path = _shards(_table(), tmp_path / "t")
    small = mode.choose_mode(str(path), "auto")
    assert small.mode == "memory" and "small" in small.reason
    # the footer estimate is close to the table's size in pandas
    est, real = mode.estimate_bytes(str(path)), _table().memory_usage(deep=False).sum()
    assert 0.3 * real < est < 3 * real, (est, real)
    csv = tmp_path / "csv"
    csv.mkdir()
    for i in range(2):
        _table().to_csv(csv / f"part-{i}.csv", index=False)
    est = mode.estimate_bytes(str(csv / "part-*.csv"))  # a glob: 2 files, from a sample of the first
    assert 2 * 0.3 * real < est < 2 * 3 * real, (est, real)
    assert mode.choose_mode(str(path), "streaming").mode == "streaming"
    assert mode.choose_mode(_table(), "auto").mode == "memory"
    with pytest.raises(ConfigError, match="data_mode must be one of"):
        FitSpec(target="label", data_mode="disk")
    # a table that needs more than Ray's memory streams (the reason names both sizes)
    monkeypatch.setattr(mode, "SMALL_TABLE_BYTES", 0)
    monkeypatch.setattr(mode, "ray_memory_bytes", lambda: 1e5)
    monkeypatch.setattr("automl.runtime.ensure_ray", lambda resources: None)
    big = mode.choose_mode(str(path), "auto")
    assert big.mode == "streaming" and "GiB Ray reports available" in big.reason


# --- profile and split --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planned(ray_session, tmp_path_factory):
    """One streamed plan of the seeded table read from 4 Parquet shards (a directory)."""
    from automl.streaming.run import plan_stream

    df = _table()
    path = _shards(df, tmp_path_factory.mktemp("stream") / "t")
    plan, s_train, s_valid, _ = plan_stream(_spec(), str(path))
    return df, plan, s_train, s_valid, plan.train.to_pandas(), plan.valid.to_pandas()  # small table


@pytest.mark.ray
@pytest.mark.slow
def test_profile_has_exact_figures_and_says_which_come_from_the_sample(planned):
    from automl.prepare import profile_for

    df, plan, s_train, s_valid, _, _ = planned
    assert plan.n_sample_rows == 300 and len(s_train) + len(s_valid) <= 300
    profile = profile_for(_spec(), pd.concat([s_train, s_valid], ignore_index=True))
    plan.annotate(profile)
    labelled = df[df.label.notna()]
    assert profile.n_rows == len(labelled) and profile.rows_dropped_missing_target == df.label.isna().sum()
    x2 = profile.column("x2")
    assert x2.missing_share == pytest.approx(df.x2.isna().mean(), abs=1e-6)
    assert x2.stats["mean"] == pytest.approx(df.x2.mean()) and x2.stats["std"] == pytest.approx(
        df.x2.std(ddof=0)
    )
    assert x2.stats["quantiles"]["min"] == df.x2.min() and x2.stats["quantiles"]["max"] == df.x2.max()
    color = profile.column("color")
    assert color.n_unique == 4 and color.missing_share == pytest.approx(df.color.isna().mean(), abs=1e-6)
    shares = {t["value"]: t["share"] for t in color.stats["top"]}
    assert shares == {k: pytest.approx(v / len(df), abs=1e-6) for k, v in df.color.value_counts().items()}
    assert profile.target_summary["class_counts"] == labelled.label.value_counts().to_dict()
    marks = profile.streaming
    assert marks["table_rows"] == len(df) and marks["sample_rows"] == 300
    assert "columns.missing_share" in marks["exact"] and "problem_type" in marks["from_sample"]
    assert json.loads(json.dumps(profile.to_dict(), default=str))["streaming"]["split"]["kind"] == "hash"


@pytest.mark.ray
@pytest.mark.slow
def test_hashed_split_has_no_row_in_both_parts_and_is_deterministic(planned):
    from automl.streaming.rows import clean_batch

    df, plan, s_train, s_valid, train, valid = planned
    assert not set(train.rid) & set(valid.rid)
    assert sorted([*train.rid, *valid.rid]) == sorted(df.rid[df.label.notna()])
    assert 0.15 < len(valid) / (len(train) + len(valid)) < 0.25
    # the sample's parts follow the same rule as the streamed parts
    assert set(s_valid.rid) <= set(valid.rid) and set(s_train.rid) <= set(train.rid)
    # other blocks in another order, the columns' dtypes widened: the same rows validate
    shuffled = clean_batch(df.sample(frac=1, random_state=1)).astype({"store": "float64"})
    shuffled = shuffled[shuffled.label.notna()]
    assert set(shuffled.rid[plan.rule.validates(shuffled)]) == set(valid.rid)
    # a final short of time trains on a seeded share of the training part
    half = plan.train_part(0.5).to_pandas()
    assert set(half.rid) < set(train.rid) and 0.4 < len(half) / len(train) < 0.6


def test_a_final_short_of_time_gets_the_share_of_rows_the_time_left_allows():
    from tuning.distributed.finals import FINAL_OVERHEAD_S, affordable_share

    assert affordable_share(FINAL_OVERHEAD_S + 100, FINAL_OVERHEAD_S + 50) == pytest.approx(0.5)
    assert affordable_share(FINAL_OVERHEAD_S + 100, FINAL_OVERHEAD_S + 500) == 1.0
    assert affordable_share(FINAL_OVERHEAD_S + 100, FINAL_OVERHEAD_S / 2) == 0.0


def test_scoring_short_of_time_takes_the_share_of_validation_rows_the_time_left_allows():
    from automl.streaming.evaluate import MIN_SCORED_ROWS, SCORING_MARGIN, SCORING_OVERHEAD_S, scoring_share

    # 1M rows at 100,000 rows/s: ~20 s with the margin
    need = SCORING_MARGIN * 1_000_000 / 100_000
    assert scoring_share(1_000_000, 100_000.0, SCORING_OVERHEAD_S + need) == 1.0
    assert scoring_share(1_000_000, 100_000.0, SCORING_OVERHEAD_S + need / 4) == pytest.approx(0.25)
    assert scoring_share(1_000_000, 100_000.0, 0.0) == MIN_SCORED_ROWS / 1_000_000  # a floor of rows
    assert scoring_share(1_000_000, None, 1.0) == 1.0  # no measured speed, or no time limit: every row
    assert scoring_share(1_000_000, 100_000.0, None) == 1.0


def test_the_search_ends_when_the_best_boosting_config_needs_the_time_left_for_its_final():
    """The time kept for the final grows with the best config's sample training time and the
    table's growth over the sample; the search always gets its minimum share first."""
    import time
    from types import SimpleNamespace

    from tuning.distributed.reserve import FINAL_MARGIN, FINAL_OVERHEAD_S, FinalsReserve
    from tuning.stoppers import ReserveWatch, SearchStopper

    stream = SimpleNamespace(config=StreamingConfig(), n_train_estimate=1_000_000, n_sample_train=10_000)
    reserve = FinalsReserve(stream, workers=2, end=1000.0, earliest=100.0)
    reserve.observe("random_forest", {"objective": 0.99, "fit_time_s": 50.0})  # no final for its family
    reserve.observe("lightgbm", {"objective": 0.5, "failed": True, "fit_time_s": 9.0})
    assert reserve.need_s() is None and reserve.reason(now=990.0) is None
    reserve.observe("lightgbm", {"objective": 0.8, "fit_time_s": 1.0})
    need = FINAL_OVERHEAD_S + FINAL_MARGIN * 1.0 * 100 / 2  # 100x the sample's rows on 2 workers
    assert reserve.need_s() == pytest.approx(need)
    assert reserve.reason(now=1000.0 - need - 1) is None
    # a better config that trains 3x longer on the sample needs the time from earlier on
    reserve.observe("xgboost", {"objective": 0.85, "fit_time_s": 3.0})
    need = FINAL_OVERHEAD_S + FINAL_MARGIN * 3.0 * 100 / 2
    assert reserve.need_s() == pytest.approx(need)
    assert reserve.reason(now=99.0) is None  # before the search's minimum share
    # too late for a final worth starting (on twice the sample's rows at least): the search goes on
    assert reserve.reason(now=1000.0 - FINAL_OVERHEAD_S) is None
    assert "final fit (~345s expected" in reserve.reason(now=1000.0 - need)
    # through the search's stopper: a completed trial's flat config and last result reach the
    # reserve, and its reason ends the search
    late = FinalsReserve(stream, workers=2, end=time.time() + 100, earliest=0.0)  # 145 s needed
    stopper = SearchStopper(target_objective=None, patience=None, reserve=late)
    assert not stopper.stop_all()
    final = {"objective": 0.8, "fit_time_s": 1.0, "done_training": True}
    trial = SimpleNamespace(config={"family": "lightgbm", "lightgbm.num_leaves": 31}, last_result=final)
    ReserveWatch(late).on_trial_complete(1, [], trial)
    assert stopper.stop_all() and stopper.reason.startswith("time kept for the final fit")
    # no time limit or no finals: nothing is kept
    assert FinalsReserve.start(stream, SimpleNamespace(cpus=2), end=None) is None
    off = SimpleNamespace(config=StreamingConfig(finals=False))
    assert FinalsReserve.start(off, SimpleNamespace(cpus=2), end=1e12) is None


def test_the_best_family_s_final_trains_first():
    from automl.metrics import resolve_metric
    from automl.problem import ProblemType
    from automl.trials import SearchOutcome, TrialRecord
    from tuning.distributed.finals import best_configs

    metric, _ = resolve_metric(None, ProblemType.BINARY)
    trials = [
        TrialRecord("a", "lightgbm", {}, "completed", score=0.80, checkpoint="x"),
        TrialRecord("b", "xgboost", {}, "completed", score=0.85, checkpoint="x"),
        TrialRecord("c", "lightgbm", {}, "completed", score=0.82, checkpoint="x"),
        TrialRecord("d", "catboost", {}, "completed", score=0.90, checkpoint="x"),
    ]
    outcome = SearchOutcome(trials, "", 1.0, "", 1, "random")
    best = best_configs(outcome, metric, dict.fromkeys(("lightgbm", "xgboost", "catboost"), object()))
    assert [(f, r.trial_id) for f, r in best.items()] == [("xgboost", "b"), ("lightgbm", "c")]


def test_a_failed_final_is_noted_and_the_fit_keeps_its_sample_trained_models(monkeypatch, tmp_path):
    """A final whose Ray Train run fails for good (its restarts used up) ends itself, not the fit."""
    from types import SimpleNamespace

    from automl.metrics import resolve_metric
    from automl.problem import ProblemType
    from automl.trials import SearchOutcome, TrialRecord
    from tuning.distributed import finals

    metric, _ = resolve_metric(None, ProblemType.BINARY)
    trial = TrialRecord("t1", "lightgbm", {}, "completed", score=0.9, fit_time_s=1.0, checkpoint="x")
    outcome = SearchOutcome([trial], "max_trials (1) reached", 1.0, "", 1, "random")
    prep = SimpleNamespace(metric=metric, families={"lightgbm": object()})
    stream = SimpleNamespace(
        config=StreamingConfig(final_workers=2), n_train_estimate=100_000, n_sample_train=1_000, notes=[]
    )

    def lost(*args, **kwargs):
        raise RuntimeError("Training failed: a worker's node died\n(traceback)")

    monkeypatch.setattr(finals, "_final", lost)
    kept = finals.train_finals(prep, outcome, stream, run_dir=tmp_path, deadline=None, cluster=None)
    assert kept == [] and stream.notes == [
        "final lightgbm: failed, restarts included (RuntimeError: Training failed: a worker's node "
        "died); the best sample-trained model is kept"
    ]


def test_a_final_whose_workers_failed_starts_again_with_the_workers_the_nodes_left_hold(monkeypatch):
    """The fit restarts a final, not Ray Train (whose restart keeps the group's size: two half-CPU
    workers on the one 1-CPU node left hold all of it, and the Ray Data tasks feeding them never
    run): each start has the workers the alive nodes' CPUs hold, at most FINAL_MAX_FAILURES times."""
    from types import SimpleNamespace

    from ray.train import WorkerGroupError

    from tuning.distributed import finals
    from tuning.distributed.reserve import workers_for

    assert [workers_for(c) for c in (0.5, 1.0, 2.0, 3.5)] == [1, 1, 2, 3] and finals.FINAL_WORKER_CPUS == 0.5
    started, cpus = [], iter([1.0, 1.0])

    def fit(family, job):
        started.append((job.num_workers, job.cpus_per_worker, job.max_failures))
        if len(started) < 3:
            raise WorkerGroupError("worker 1 died: its node was lost", {1: RuntimeError("node")})
        return "fitted"

    monkeypatch.setattr(finals, "fit", fit)
    monkeypatch.setattr(
        finals,
        "final_job",
        lambda prep, stream, run: SimpleNamespace(
            num_workers=run.workers, cpus_per_worker=finals.FINAL_WORKER_CPUS, max_failures=0
        ),
    )
    monkeypatch.setattr(finals, "responsive_cpus", lambda: next(cpus))
    trial = SimpleNamespace(family="lightgbm")
    stream = SimpleNamespace(notes=[])
    done, run, restarts = finals.fit_restarting(None, stream, finals.FinalRun(trial, 2, None))
    assert done == "fitted" and run.workers == 1 and restarts == 2
    assert started == [(2, 0.5, 0), (1, 0.5, 0), (1, 0.5, 0)]
    assert (
        len(stream.notes) == 2
        and stream.notes[0].startswith("final lightgbm: its workers failed (WorkerGroupError: worker 1 died")
        and stream.notes[0].endswith("started again with 1 worker(s) on the nodes alive")
    )
    # the restarts used up, or the boosting deadline past: the failure is the caller's to note
    started.clear()
    cpus = iter([2.0, 2.0])
    with pytest.raises(WorkerGroupError):
        finals.fit_restarting(None, SimpleNamespace(notes=[]), finals.FinalRun(trial, 2, None, stop=0.0))
    assert started == [(2, 0.5, 0)]


def _both_sides(df: pd.DataFrame, rule) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both parts of ``df`` from one streamed pass (each block split by the rule, as ``part`` does)."""
    import ray.data

    from automl.streaming.split import _side

    def sides(b: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([_side(b, rule, False).assign(_v=0), _side(b, rule, True).assign(_v=1)])

    out = ray.data.from_pandas(df).repartition(4).map_batches(sides, batch_format="pandas").to_pandas()
    return out[out._v == 0], out[out._v == 1]


@pytest.mark.ray
def test_time_and_group_splits_keep_their_rules(ray_session):
    from automl.streaming.split import make_rule

    df = _table()
    train, valid = _both_sides(df, make_rule(_spec(time_column="day"), df.sample(300, random_state=0)))
    assert train.day.max() < valid.day.min() and 0.1 < len(valid) / (len(train) + len(valid)) < 0.35
    train, valid = _both_sides(df, make_rule(_spec(group_column="store"), df))
    assert not set(train.store) & set(valid.store) and len(valid) > 0
    assert len(train) + len(valid) == df.label.notna().sum()


# --- preprocessing -------------------------------------------------------------------------------
@pytest.mark.ray
def test_map_batches_preprocessing_equals_memory_mode(ray_session):
    import ray.data

    from automl.prepare import prepare
    from automl.streaming.features import BatchEncoder
    from tuning.distributed.finals import frames
    from tuning.distributed.frames import FeatureLayout, to_frame

    df = _table(600)
    df = df[df.label.notna()].reset_index(drop=True)
    spec = FitSpec(target="label", drop_columns=("rid",), search=SearchConfig(column_probe=False))
    prep = prepare(spec, df, recipes=("tree",))
    pre = prep.preprocessors["tree"]
    memory = to_frame(pre.transform(df), prep.y, None)
    encoder = BatchEncoder(prep.schema, pre, "label", classes=prep.classes)
    ctx = ray.data.DataContext.get_current()
    order, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        blocks = ray.data.from_pandas(df).repartition(5)
        streamed = frames(blocks, encoder, FeatureLayout.of(pre.transform(df.head(5))), False).to_pandas()
    finally:
        ctx.execution_options.preserve_order = order
    assert list(streamed.columns) == list(memory.columns) and len(streamed) == len(df)
    for col in memory.columns:  # NaN where memory mode has NaN (a missing number), the same codes
        got = streamed[col].to_numpy(np.float64, na_value=np.nan)
        np.testing.assert_array_equal(got, memory[col].to_numpy(np.float64), err_msg=col)


# --- end to end ------------------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_streaming_fit_trains_a_final_on_every_row_and_its_predictor_needs_no_ray(ray_session, tmp_path):
    from sklearn.base import clone

    from automl import AutoML

    df = _table(3000, seed=3)
    path = _shards(df, tmp_path / "t")
    _table(400, seed=4).to_parquet(tmp_path / "test.parquet", index=False)
    automl = AutoML(
        target="label",
        data_mode="streaming",
        drop_columns=["rid"],
        streaming=StreamingConfig(sample_rows=600, final_workers=1),
        search=SearchConfig(max_trials=2, families=("lightgbm",), strategy="random", column_probe=False),
        output_dir=tmp_path / "run",
        write_report=False,
    )
    run = automl.fit(str(path), test_data=str(tmp_path / "test.parquet"))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data_mode"]["mode"] == "streaming"
    stream = info["streaming"]
    final = stream["finals"]["lightgbm"]
    assert final["workers"] == 1 and final["score"] > 0.8
    assert any("final" in str(r) for r in run.leaderboard()["stop_reason"].dropna())
    full = stream["full_validation"]
    assert 0.15 * 2970 < full["n_rows"] < 0.25 * 2970 and full["score"] > 0.8 and full["share"] == 1.0
    assert stream["test"]["n_rows"] == 400 - 2 and stream["test"]["score"] > 0.8  # 2 rows lack a label
    assert json.loads((tmp_path / "run" / "profile.json").read_text())["streaming"]["table_rows"] == 3000
    rows = df.drop(columns=["label"]).head(50)
    rows.to_parquet(tmp_path / "rows.parquet")
    expected = run.predictor_.predict_proba(rows).to_numpy()
    script = textwrap.dedent(f"""
        import sys
        import numpy as np, pandas as pd
        from automl import load
        pred = load({str(tmp_path / "run")!r})
        out = pred.predict_proba(pd.read_parquet({str(tmp_path / "rows.parquet")!r})).to_numpy()
        assert "ray" not in sys.modules, "loading or predicting imported Ray"
        np.save({str(tmp_path / "out.npy")!r}, out)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-6)
    # run.json says what Ray spilled to disk during the fit (nothing, for a table this small)
    assert stream["object_store"]["measured"] and stream["object_store"]["spilled_bytes"] >= 0
    assert final["stopped_at_deadline"] is False  # no time limit: boosting ended by itself

    # --resume of the fit reuses its final (no second Ray Train run): same record, same model files
    saved = {p.name: p.stat().st_mtime for p in (tmp_path / "run" / "finals" / "lightgbm").rglob("*")}
    again = clone(automl).fit(str(path), resume=True)
    final2 = json.loads((tmp_path / "run" / "run.json").read_text())["streaming"]["finals"]["lightgbm"]
    assert final2["resumed"] is True and final2["score"] == final["score"], final2
    assert {p.name: p.stat().st_mtime for p in (tmp_path / "run" / "finals" / "lightgbm").rglob("*")} == saved
    np.testing.assert_allclose(again.predictor_.predict_proba(rows).to_numpy(), expected, rtol=1e-6)


# --- two nodes ---------------------------------------------------------------------------------------
CLUSTER_SCRIPT = """
import json, os, sys, threading, time
import numpy as np, pandas as pd, ray
from ray.cluster_utils import Cluster

table, marks, out = sys.argv[1], sys.argv[2], sys.argv[3]
lose_node = sys.argv[4:] == ["lose-node"]  # the second node is removed once the final's workers started
columns = set(pd.read_parquet(table).columns)
n_rows = len(pd.read_parquet(table))
seen = {"rows_with_every_column": 0, "largest_frame": 0}

# every batch that reaches the driver, counted when it holds every column of the table
original_iter = ray.data.Dataset.iter_batches
def iter_batches(self, *a, **k):
    for b in original_iter(self, *a, **k):
        if columns <= set(b.keys() if isinstance(b, dict) else b.columns):
            seen["rows_with_every_column"] += len(b[next(iter(columns))])
        yield b
ray.data.Dataset.iter_batches = iter_batches
def refuse(*a, **k):
    raise AssertionError("the driver materialised a whole Dataset")
ray.data.Dataset.to_pandas = ray.data.Dataset.take_all = refuse

import automl.fit
original_fit = automl.fit.run_fit
def run_fit(spec, train, **k):
    valid = k.get("validation")
    seen["largest_frame"] = len(train) + (0 if valid is None else len(valid))
    return original_fit(spec, train, **k)
automl.fit.run_fit = run_fit

import tuning.distributed.lightgbm as lg
original_loop = lg.lightgbm_loop
def loop(cfg):
    import ray.train
    rank = ray.train.get_context().get_world_rank()
    node = ray.get_runtime_context().get_node_id()
    path = os.path.join(marks, f"rank{rank}")
    first = not os.path.exists(path)
    with open(path, "a") as f:  # one line per start of the final: the node the rank ran on
        f.write(node + "\\n")
    if lose_node and first and node == doomed_id:
        time.sleep(600)  # its node is removed in this sleep
    original_loop(cfg)
lg.lightgbm_loop = loop

# the cluster must not become the machine's default: Cluster writes its address to
# /tmp/ray/ray_current_cluster, where every later ray.init() without an address would find it
ray._private.utils.write_ray_address = lambda *a, **k: None
store = 80 * 2**20
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
try:
    doomed = cluster.add_node(num_cpus=1, object_store_memory=store)
    doomed_id = doomed.node_id  # a string: the workers' loop takes it along (the node does not pickle)
    def remove():
        while len(os.listdir(marks)) < 2:  # both ranks of the final's first start are in its loop
            time.sleep(0.2)
        cluster.remove_node(doomed, allow_graceful=False)
    if lose_node:
        threading.Thread(target=remove, daemon=True).start()
    env = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}}
    ray.init(address=cluster.address, log_to_driver=False, runtime_env=env)
    from automl import AutoML
    from automl.config import SearchConfig, StreamingConfig
    run = AutoML(
        target="label", data_mode="streaming", drop_columns=["rid"],
        streaming=StreamingConfig(sample_rows=500, final_workers=2),
        search=SearchConfig(max_trials=2, families=("lightgbm",), strategy="random", column_probe=False),
        output_dir=os.path.join(out, "run"), write_report=False,
    ).fit(table)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    json.dump({**seen, "n_rows": n_rows, "alive_nodes": sorted(nodes),
               "streaming": run.run_info_["streaming"]}, open(os.path.join(out, "result.json"), "w"))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def _cluster_fit(tmp_path, *mode: str) -> tuple[dict, dict[str, list[str]], pd.DataFrame]:
    """CLUSTER_SCRIPT's fit of a regression table on a two-node loopback cluster, in its own process
    and process group: its result.json, the nodes each rank of the final ran on (one per start)
    and the table."""
    table = tmp_path / "table.parquet"
    df = _table(4000, seed=5, regression=True)
    df.to_parquet(table, index=False)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_SCRIPT, str(table), str(marks), str(tmp_path), *mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout ends the nodes it started too
    )
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    assert proc.returncode == 0, out[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    return result, {p.name: p.read_text().split() for p in marks.iterdir()}, df


@pytest.mark.slow
def test_two_node_cluster_trains_the_final_on_both_nodes_and_the_driver_never_holds_the_table(tmp_path):
    """A loopback cluster of two 1-CPU nodes with small object stores (its own Ray, in its own
    process): the final's two Ray Train workers run one on each node, and the only table rows with
    every column that reach the driver are the sample's. A regression target (the end-to-end fit
    above is binary): the final's RMSE is near the noise floor."""
    result, ranks, df = _cluster_fit(tmp_path)
    assert set(ranks) == {"rank0", "rank1"} and all(len(nodes) == 1 for nodes in ranks.values())
    workers = {rank: nodes[0] for rank, nodes in ranks.items()}
    assert len(set(workers.values())) == 2 and set(workers.values()) <= set(result["alive_nodes"])
    final = result["streaming"]["finals"]["lightgbm"]
    assert final["workers"] == 2
    # RMSE: the noise is 3 x 0.4 = 1.2, the target's spread about 5; the sample-trained model's too
    assert 1.0 < final["score"] < 2.0 and final["sample_score"] < 2.5, final
    full = result["streaming"]["full_validation"]
    assert full["score"] < 0.4 * df["label"].std() and full["n_rows"] > 500, full
    # the sample pass fetches the rows under a hash threshold of 1.25 x sample_rows / rows (binomial)
    assert 0 < result["rows_with_every_column"] <= 1.5 * 500 < result["n_rows"]
    assert result["largest_frame"] <= 500


@pytest.mark.slow
def test_a_final_that_loses_a_node_starts_again_on_the_node_left(tmp_path):
    """The second node of the loopback cluster is removed (not gracefully) while the final's two
    workers, one per node, start: the fit starts the final again with one half-CPU worker on the
    head, whose other half CPU runs the Ray Data tasks feeding it, and the final finishes. Ray
    Train's own restart kept two workers and put both on the 1-CPU head, where the data tasks
    could not be scheduled: the fit hung."""
    result, ranks, df = _cluster_fit(tmp_path, "lose-node")
    first = {rank: nodes[0] for rank, nodes in ranks.items()}
    assert set(first) == {"rank0", "rank1"} and len(set(first.values())) == 2  # one worker per node
    assert ranks["rank0"][1:] == result["alive_nodes"] and len(ranks["rank1"]) == 1  # then one, on the head
    stream = result["streaming"]
    final = stream["finals"]["lightgbm"]
    assert final["workers"] == 1 and final["restarts"] == 1 and 1.0 < final["score"] < 2.0, final
    assert any(n.startswith("final lightgbm: its workers failed (") for n in stream["notes"]), stream["notes"]
    assert stream["full_validation"]["score"] < 0.4 * df["label"].std()


@pytest.mark.ray
def test_the_time_kept_for_a_final_ends_a_real_search(ray_session, binary_df, tmp_path):
    """Through Tune: the stopper reads each trial's flat config from its result, and a table far
    bigger than the sample (10^9 training rows) makes the first LightGBM trial's final need more
    than the hour left, so the search ends after it instead of running its 30 trials."""
    import time
    from types import SimpleNamespace

    from automl.prepare import prepare
    from automl.runtime import ensure_ray
    from tuning import FinalsReserve, run_search

    search = SearchConfig(families=("lightgbm",), strategy="random", max_trials=30, column_probe=False)
    spec = FitSpec(target="label", search=search)
    prep = prepare(spec, binary_df)
    stream = SimpleNamespace(config=StreamingConfig(), n_train_estimate=10**9, n_sample_train=len(binary_df))
    now = time.time()
    reserve = FinalsReserve(stream, workers=1, end=now + 3600, earliest=now)
    outcome = run_search(
        prep.data,
        prep.families,
        search,
        cluster=ensure_ray(spec.resources),
        resources=spec.resources,
        run_dir=tmp_path,
        deadline=now + 3000,
        seed=0,
        reserve=reserve,
    )
    assert outcome.ended_because.startswith("time kept for the final fit (~"), outcome.ended_because
    # the trial the time was kept for has its models (its checkpoint was saved before the stop)
    assert 1 <= len(outcome.completed()) < 10 and reserve.need_s() > 3600

    # a resumed search answers to the resuming fit's stopper, callbacks and budget: Tuner.restore
    # brings back the interrupted one's, pickled at its start with its clock (the old finals' end)
    from ray import tune

    from tuning.search import renewed
    from tuning.stoppers import SearchStopper
    from tuning.trainable import run_trial

    restored = tune.Tuner.restore(outcome.experiment_path, trainable=run_trial)
    old = restored._local_tuner.get_run_config()
    assert old.stop.reserve.end == reserve.end and old.stop.reserve is not reserve  # ran under it before
    stopper, callbacks = SearchStopper(target_objective=None, patience=None, reserve=None), [object()]
    internal = renewed(restored, stopper, callbacks, 123.0)._local_tuner
    assert internal.get_run_config().stop is stopper and internal.get_run_config().callbacks == callbacks
    assert internal._tune_config.time_budget_s == 123.0
