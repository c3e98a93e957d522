"""The streaming data mode (issue 15) on small seeded tables, forced: the mode decision, the exact
profile figures, the hashed / time / group holdout, preprocessing of streamed blocks against memory
mode, an end-to-end fit whose Predictor loads and predicts without Ray (the 2-node loopback
cluster: tests/test_streaming_cluster.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import streaming_table

from automl.config import FitSpec, SearchConfig, StreamingConfig, ValidationConfig

ROOT = Path(__file__).resolve().parents[1]


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

    path = _shards(streaming_table(), tmp_path / "t")
    small = mode.choose_mode(str(path), "auto")
    assert small.mode == "memory" and "small" in small.reason
    # the footer estimate is close to the table's size in pandas
    est, real = mode.estimate_bytes(str(path)), streaming_table().memory_usage(deep=False).sum()
    assert 0.3 * real < est < 3 * real, (est, real)
    csv = tmp_path / "csv"
    csv.mkdir()
    for i in range(2):
        streaming_table().to_csv(csv / f"part-{i}.csv", index=False)
    est = mode.estimate_bytes(str(csv / "part-*.csv"))  # a glob: 2 files, from a sample of the first
    assert 2 * 0.3 * real < est < 2 * 3 * real, (est, real)
    assert mode.choose_mode(str(path), "streaming").mode == "streaming"
    assert mode.choose_mode(streaming_table(), "auto").mode == "memory"
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

    df = streaming_table()
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
    reserve = FinalsReserve(stream=stream, workers=2, end=1000.0, earliest=100.0)
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
    late = FinalsReserve(stream=stream, workers=2, end=time.time() + 100, earliest=0.0)  # 145 s needed
    stopper = SearchStopper(target_objective=None, patience=None, reserve=late)
    assert not stopper.stop_all()
    final = {"objective": 0.8, "fit_time_s": 1.0, "done_training": True}
    trial = SimpleNamespace(
        trial_id="t1", config={"family": "lightgbm", "lightgbm.num_leaves": 31}, last_result=final
    )
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

    df = streaming_table()
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

    df = streaming_table(600)
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

    df = streaming_table(3000, seed=3)
    path = _shards(df, tmp_path / "t")
    streaming_table(400, seed=4).to_parquet(tmp_path / "test.parquet", index=False)
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
    reserve = FinalsReserve(stream=stream, workers=1, end=now + 3600, earliest=now)
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

    # a resumed search answers to the resuming fit's stopper, callbacks and deadline.
    # Tuner.restore brings back the interrupted one's run config and searcher: its stopper with
    # the old clock (the old finals' end, the old time limit) that once kept a resumed search from
    # ending; renewed() puts this fit's in place (and Tune's controller, which restores its own
    # copy, gets the running search's: test_wrapup.py)
    from ray import tune

    from tuning.budget import BudgetGuard
    from tuning.resume import renewed
    from tuning.search import GRACE_S
    from tuning.stoppers import SearchStopper
    from tuning.trainable import run_trial

    restored = tune.Tuner.restore(outcome.experiment_path, trainable=run_trial)
    old = restored._local_tuner.get_run_config()
    assert isinstance(old.stop, SearchStopper) and old.stop.hard_end == pytest.approx(
        now + 3000 + GRACE_S, abs=1
    )
    stopper, callbacks = SearchStopper(target_objective=None, patience=None, reserve=None), [object()]
    guard = restored._local_tuner._tune_config.search_alg
    assert isinstance(guard, BudgetGuard) and guard.deadline != 999.0
    guard.close()  # as if the interrupted search had been ending
    internal = renewed(restored, stopper, callbacks, deadline=999.0)._local_tuner
    assert internal.get_run_config().stop is stopper and internal.get_run_config().callbacks == callbacks
    assert internal._tune_config.time_budget_s is None  # Tune would restore its old TimeoutStopper
    assert guard.deadline == 999.0 and not guard.closed
    renewed(restored, stopper, callbacks, deadline=None)  # resumed without a time limit
    assert guard.deadline == float("inf")
