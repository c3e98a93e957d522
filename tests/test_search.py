"""Every search strategy on a 3-trial budget, reproducibility under a trial budget, TensorBoard."""

import json

import pytest

from automl import AutoML, EnsembleConfig, SearchConfig, ValidationConfig
from automl.exceptions import ConfigError
from tests.helpers import trial_rows

pytestmark = pytest.mark.ray

STRATEGIES = ["bayesian", "random", "grid", "hyperband", "asha", "bohb"]
#: the search is what these tests are about: no ensemble, refit options or their measurement
SEARCH_ONLY = EnsembleConfig(enabled=False, refit=False)


def fit(df, tmp_path, strategy, **search):
    search = {"max_trials": 3, "families": ("lightgbm", "xgboost"), **search}
    return AutoML(
        write_report=False,
        target="label",
        search=SearchConfig(strategy=strategy, **search),
        ensemble=SEARCH_ONLY,
        output_dir=tmp_path / strategy,
        seed=0,
    ).fit(df)


@pytest.fixture(scope="module")
def random_run(ray_session, binary_df, tmp_path_factory):
    """One random search (3 trials, MLflow on), shared by the tests that only read it: the strategy
    check, TensorBoard, MLflow and the first run of the warm start (each fit costs 5-8 s here)."""
    return fit(binary_df, tmp_path_factory.mktemp("shared"), "random", mlflow=True)


@pytest.mark.parametrize(
    "strategy",
    # one strategy stays in `make test-fast`; the other five run in the full suite
    [s if s == "random" else pytest.param(s, marks=pytest.mark.slow) for s in STRATEGIES],
)
def test_each_strategy_runs_and_says_why_it_ended(request, ray_session, binary_df, tmp_path, strategy):
    shared = strategy == "random"
    run = request.getfixturevalue("random_run") if shared else fit(binary_df, tmp_path, strategy)
    board = run.leaderboard()
    # the trials themselves: not the ensemble, nor the refit options built from the members
    trials = trial_rows(board)
    info = run.run_info_
    assert info["search_strategy"] == strategy
    if strategy == "grid":  # the grid: each family's grid points (here their portfolios: 3 + 2)
        assert len(trials) == 5 and info["ended_because"] == "grid exhausted"
    else:
        assert len(trials) == 3 and info["ended_because"] == "max_trials (3) reached"
    assert (trials["status"] == "completed").sum() >= 1
    assert set(trials["status"]) <= {"completed", "stopped"}
    if strategy == "bohb":  # one bracket sized to the 3 trials halves them at its first rung
        assert (trials["status"] == "stopped").sum() >= 1
    assert run.predict(binary_df.head(3)).isin(["yes", "no"]).all()


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(
        ConfigError,
        match=r"must be one of \['bayesian', 'random', 'grid', 'hyperband', 'asha', 'bohb'\]; got 'tpe'",
    ):
        SearchConfig(strategy="tpe")


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_same_seed_and_trial_budget_give_the_same_leaderboard(ray_session, multiclass_df, tmp_path):
    cols = ["model", "family", "params", "score_val", "status"]
    boards = []
    for i in range(2):
        run = AutoML(
            write_report=False,
            target="label",
            search=SearchConfig(max_trials=6, families=("lightgbm", "xgboost")),
            ensemble=SEARCH_ONLY,
            validation=ValidationConfig(n_folds=3),
            output_dir=tmp_path / f"r{i}",
            seed=7,
        ).fit(multiclass_df)
        b = run.leaderboard()
        boards.append(trial_rows(b).sort_values("model")[cols].reset_index(drop=True))
    assert boards[0].equals(boards[1]), (boards[0], boards[1])
    # TPE proposed a config beyond the 5-config portfolio, and the same one in both runs
    assert len(set(boards[0]["params"])) == 6


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_target_score_and_patience_end_the_search(ray_session, binary_df, tmp_path):
    run = fit(binary_df, tmp_path, "random", max_trials=10, target_score=0.5)
    assert run.run_info_["ended_because"] == "target score reached"
    assert run.run_info_["n_trials"] < 10
    run = fit(binary_df, tmp_path / "p", "random", max_trials=12, patience=2, target_score=None)
    assert run.run_info_["ended_because"].startswith("no improvement in 2 trials")


def test_trial_metrics_are_written_for_tensorboard(random_run):
    events = list((random_run.run_dir_ / "search").rglob("events.out.tfevents*"))
    assert len(events) >= 3  # one per trial
    progress = json.loads((random_run.run_dir_ / "run.json").read_text())
    assert progress["n_trials"] == 3


def test_mlflow_callback_logs_every_trial(random_run):
    import mlflow

    mlflow.set_tracking_uri((random_run.run_dir_ / "mlruns").as_uri())  # the fit allowed the file store
    runs = mlflow.search_runs(experiment_names=[random_run.run_dir_.name])
    assert len(runs) == 3 and "metrics.best_objective" in runs.columns


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
def test_warm_start_evaluates_the_previous_best_configs_first(random_run, binary_df, tmp_path):
    first = random_run  # LightGBM and XGBoost trials; the second search takes its best LightGBM config
    best = json.loads(first.leaderboard().query("family == 'lightgbm'").iloc[0]["params"])
    second = AutoML(
        write_report=False,
        target="label",
        search=SearchConfig(
            max_trials=1,
            strategy="random",
            families=("lightgbm",),
            portfolio=False,
            warm_start=str(first.run_dir_),
        ),
        ensemble=SEARCH_ONLY,
        output_dir=tmp_path / "b",
        seed=2,
    ).fit(binary_df)
    trial = second.leaderboard().query("family == 'lightgbm'").iloc[0]
    assert json.loads(trial["params"]) == best
