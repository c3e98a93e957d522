"""End to end with Ray: fit -> leaderboard -> save -> load -> predict, on tiny seeded data."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from automl import AutoML, SearchConfig, ValidationConfig, load
from automl.exceptions import AutoMLError, ConfigError, DataError, NotFittedError

pytestmark = pytest.mark.ray

LEADERBOARD_COLUMNS = {
    "rank",
    "model",
    "family",
    "score_val",
    "metric",
    "fit_time_s",
    "predict_time_s",
    "status",
    "params",
}


@pytest.fixture(scope="module")
def binary_run(ray_session, binary_df, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "binary"
    run = AutoML(
        write_report=False, target="label", search=SearchConfig(max_trials=4), output_dir=out, seed=0
    )
    return run.fit(binary_df.iloc[:250], test_data=binary_df.iloc[250:])


def test_fit_leaderboard_and_artifacts(binary_run):
    board = binary_run.leaderboard()
    assert LEADERBOARD_COLUMNS <= set(board.columns)
    trials = board[board["trial_id"].notna()]
    # the portfolio runs each family's default first, in priority order
    assert len(trials) == 4 and set(trials["family"]) == {"lightgbm", "xgboost", "linear", "extra_trees"}
    assert set(trials["status"]) <= {"completed", "stopped"}  # ASHA may stop a weak trial early
    assert (trials["status"] == "completed").sum() >= 2
    assert board["rank"].tolist() == list(range(1, len(board) + 1))
    assert board["chosen"].sum() == 1
    assert board.iloc[0]["score_val"] == board["score_val"].max()  # best first
    params = json.loads(trials.iloc[0]["params"])
    assert params and all(not k.startswith("_") for k in params)
    run_dir = binary_run.run_dir_
    for name in (
        "predictor.json",
        "checksums.json",
        "profile.json",
        "leaderboard.csv",
        "folds.json",
        "run.json",
    ):
        assert (run_dir / name).exists(), name
    info = json.loads((run_dir / "run.json").read_text())
    assert info["ended_because"] == "max_trials (4) reached"
    assert info["trial_overhead_s"]["mean"] < 1.0  # per-trial orchestration overhead
    chosen = board[board["chosen"]].iloc[0]
    assert 0.7 < chosen["score_test"] <= 1.0


def test_deployment_options_bagged_and_refit_are_measured_and_recorded(binary_run, binary_df):
    board = binary_run.leaderboard()
    for col in ("latency_p50_ms", "latency_p99_ms", "rows_per_s", "model_mb", "pareto", "deployment"):
        assert col in board.columns, col
    refit = board[board["status"] == "refit"]
    assert len(refit) >= 2 and refit["model"].str.endswith("_refit").all() and refit["refit"].all()
    # a refit option's score is its bag's (an estimate), and it says so
    for r in refit.itertuples():
        bag = board[board["model"] == r.model.removesuffix("_refit")].iloc[0]
        assert r.score_val == bag["score_val"] and "score_val: the bag's" in r.stop_reason
    measured = board[board["latency_p50_ms"].notna()]
    assert (measured["latency_p99_ms"] >= measured["latency_p50_ms"]).all()
    assert (measured["rows_per_s"] > 0).all() and (measured["model_mb"] > 0).all()
    assert measured["pareto"].astype(bool).any()
    fastest = measured.sort_values("latency_p50_ms").iloc[0]
    assert bool(fastest["pareto"])  # nothing is faster, so nothing dominates it
    info = binary_run.run_info_
    assert info["cut_for_time"] == [] and "out-of-fold score" in info["decisions"]["refit"]
    assert set(measured["model"]) <= set(info["deployment"]["options"])
    # the other Pareto-front options are saved beside the run, each a Predictor
    others = measured[measured["pareto"].astype(bool) & ~measured["chosen"]]
    X = binary_df.drop(columns=["label"]).iloc[:5]
    for name in others["model"]:
        alt = load(binary_run.run_dir_ / "options" / name)
        assert alt.predict_proba(X).shape == (5, 2)
        assert all(m.refit for m in alt.members) == name.endswith("_refit")


def test_predict_order_proba_and_round_trip(binary_run, binary_df, tmp_path):
    df = binary_df.drop(columns=["label"]).sample(frac=1, random_state=1)
    pred = binary_run.predict(df)
    assert list(pred.index) == list(df.index) and set(pred) <= {"yes", "no"}
    proba = binary_run.predict_proba(df)
    assert list(proba.columns) == ["no", "yes"]
    accuracy = (pred == binary_df.loc[df.index, "label"]).mean()
    assert accuracy > 0.8
    saved = binary_run.save(tmp_path / "model")
    again = load(saved)
    pd.testing.assert_series_equal(again.predict(df), pred)
    df.to_csv(tmp_path / "rows.csv", index=False)
    code = (
        "import sys, pandas as pd; from automl import load; "
        "p = load(sys.argv[1]).predict(pd.read_csv(sys.argv[2])); "
        "assert 'ray' not in sys.modules; print(','.join(map(str, p)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(saved), str(tmp_path / "rows.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip().split(",") == list(pred)


def test_regression_holdout_refits_on_all_rows(ray_session, regression_df, tmp_path):
    run = AutoML(
        write_report=False,
        target="label",
        search=SearchConfig(max_trials=2, families=("lightgbm",)),
        validation=ValidationConfig(strategy="holdout"),
        output_dir=tmp_path / "r",
    ).fit(regression_df)
    board = run.leaderboard()
    assert board[board["chosen"]]["refit"].item()
    assert run.run_info_["refit"] is True
    rmse = float(np.sqrt(np.mean((run.predict(regression_df) - regression_df["label"]) ** 2)))
    assert rmse < regression_df["label"].std() * 0.5


def test_failing_trial_does_not_end_the_search(ray_session, multiclass_df, tmp_path):
    # a warm-start config LightGBM rejects (num_leaves must be > 1) becomes one failed row
    prev = tmp_path / "prev"
    prev.mkdir()
    pd.DataFrame(
        [
            {
                "rank": 1,
                "model": "lightgbm_001",
                "family": "lightgbm",
                "status": "completed",
                "params": json.dumps({"num_leaves": 1, "learning_rate": 0.1}),
            }
        ]
    ).to_csv(prev / "leaderboard.csv")
    run = AutoML(
        write_report=False,
        target="label",
        # the failing config, then one that trains: all the test needs
        search=SearchConfig(max_trials=2, families=("lightgbm",), warm_start=str(prev)),
        output_dir=tmp_path / "m",
    ).fit(multiclass_df)
    board = run.leaderboard()
    failed = board[board["status"] == "failed"]
    assert len(failed) == 1 and "num_leaves" in failed.iloc[0]["error"]
    assert (board["status"] == "completed").sum() >= 1
    assert run.predict(multiclass_df.head(5)).isin(["low", "mid", "high"]).all()


def test_errors_are_typed_and_name_the_fix(binary_df):
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        AutoML(write_report=False, target="label").predict(binary_df)
    with pytest.raises(ConfigError, match=r"search strategy must be one of \['bayesian', 'random'"):
        SearchConfig(strategy="bayes")
    with pytest.raises(DataError, match="target column 'nope' is not in the table"):
        AutoML(write_report=False, target="nope", search=SearchConfig(max_trials=1)).fit(binary_df)
    with pytest.raises(ConfigError, match="unknown metric"):
        AutoML(write_report=False, target="label", metric="auc_roc", search=SearchConfig(max_trials=1)).fit(
            binary_df
        )
    assert issubclass(DataError, AutoMLError) and issubclass(ConfigError, AutoMLError)


def test_scikit_learn_contract(ray_session, regression_df, tmp_path):
    """clone() copies the settings (not the fit); fit(X, y) equals fit(table); score() is the
    chosen metric in sklearn's higher-is-better convention (rmse negated)."""
    from sklearn.base import clone
    from sklearn.metrics import mean_squared_error

    est = AutoML(
        target="label", search=SearchConfig(max_trials=2, families=("lightgbm",)), write_report=False
    )
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    copy.set_params(seed=3, output_dir=tmp_path / "xy")
    assert copy.seed == 3 and est.seed == 0
    X, y = regression_df.drop(columns=["label"]), regression_df["label"].to_numpy()
    columns_before = list(X.columns)
    copy.fit(X.iloc[:240], y[:240])
    assert list(X.columns) == columns_before  # the caller's frame is not changed
    assert copy.run_info_["target"] == "label" and (tmp_path / "xy" / "predictor.json").exists()
    score = copy.score(X.iloc[240:], y[240:])
    rmse = mean_squared_error(y[240:], copy.predict(X.iloc[240:])) ** 0.5
    assert score == pytest.approx(-rmse)
    assert copy.score(regression_df.iloc[240:]) == pytest.approx(score)  # a table with the target
    with pytest.raises(DataError, match="one label per row of X"):
        clone(est).fit(X, y[:10])
    with pytest.raises(DataError, match="already has a column named 'label'"):
        clone(est).fit(regression_df, y)
    with pytest.raises(NotFittedError):
        clone(est).score(X, y)
