"""Stacking never sees a row's own label; calibration and deployment constraints."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import trial_data

from automl import AutoML, EnsembleConfig, SearchConfig
from automl.calibration import choose_calibration
from automl.metrics import METRICS
from automl.models import get_family
from automl.problem import ProblemType
from automl.splits import make_folds
from automl.stack_fit import fit_layer
from automl.training import train_candidate


def test_stack_on_noise_labels_stays_at_chance(tmp_path):
    """Labels are coin flips. A 1-nearest-neighbour base model memorises its training rows: if
    any row's own label reached its out-of-fold prediction (base or stack), the score would be
    above chance. Plain same-fold stacking (layer-2 features from layer-1 models that saw the
    fold's labels) scored 0.54-0.63 here; the nested scheme stays at chance."""
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "y": rng.choice(["p", "q"], size=n)})
    data = trial_data(df, "y", recipes=("tree", "linear"), n_folds=4)[0]
    knn = get_family("knn")
    base = [train_candidate(knn, {"n_neighbors": k, "weights": "uniform"}, data) for k in (3, 1)]
    for res in base:
        assert METRICS["roc_auc"].score(data.y, res.oof) < 0.55
    layer = fit_layer(
        base,
        ["knn_3", "knn_1"],
        base[0].oof,
        data,
        level=2,
        uses_features=True,
        size=10,
        seed=0,
        deadline=None,
    )
    auc = METRICS["roc_auc"].score(data.y, layer.oof)
    assert 0.45 < auc < 0.55, auc
    assert not np.isnan(layer.oof).any()  # guard rows got out-of-fold predictions too


def test_stack_layer_learns_what_the_base_layer_misses():
    rng = np.random.default_rng(1)
    n = 1500
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.uniform(-2, 2, size=n)})
    df["y"] = df["x1"] + 2 * np.sin(3 * df["x2"]) + rng.normal(scale=0.3, size=n)  # not linear in x2
    data = trial_data(df, "y", recipes=("tree", "linear"))[0]
    base = [train_candidate(get_family("linear"), {"alpha": 1.0}, data)]
    layer = fit_layer(
        base, ["linear"], base[0].oof, data, level=2, uses_features=True, size=10, seed=0, deadline=None
    )
    assert layer.score < 0.7 * base[0].score  # rmse: the stack also sees the features
    assert layer.kept and "layer 2 kept" in layer.reason and "held-out slice" in layer.reason


def test_temperature_scaling_fixes_overconfidence_and_leaves_good_probabilities_alone():
    rng = np.random.default_rng(0)
    n = 3000
    p_true = rng.uniform(0.05, 0.95, size=n)
    y = (rng.random(n) < p_true).astype(int)
    folds = make_folds(n, strategy="kfold", n_folds=5, y=y, seed=0).folds
    logit = np.log(p_true / (1 - p_true))
    over = 1 / (1 + np.exp(-3 * logit))  # three times too confident
    cal, why = choose_calibration(y, np.column_stack([1 - over, over]), folds, ProblemType.BINARY)
    assert cal is not None and cal["temperature"] == pytest.approx(3.0, rel=0.2)
    assert cal["log_loss_after"] < cal["log_loss_before"]
    good, why = choose_calibration(y, np.column_stack([1 - p_true, p_true]), folds, ProblemType.BINARY)
    assert good is None and "would not help" in why


@pytest.mark.slow  # a full fit or several processes: kept out of `make test-fast`
@pytest.mark.ray
def test_stacking_constraints_and_calibration_end_to_end(ray_session, binary_df, tmp_path):
    # one fit for both (each costs ~9 s here): the stack layer and calibration are built before
    # the deployment stage, and a latency limit no model meets acts there only
    run = AutoML(
        write_report=False,
        target="label",
        metric="log_loss",
        search=SearchConfig(max_trials=4),
        ensemble=EnsembleConfig(stack_levels=1, max_latency_ms=1e-6),
        output_dir=tmp_path / "s",
    ).fit(binary_df)
    board = run.leaderboard()
    assert {"stack_l2", "l2_lightgbm_1"} <= set(board["model"])
    info = json.loads((run.run_dir_ / "run.json").read_text())
    assert "stack_level_2" in info["decisions"] and "calibration" in info["decisions"]
    dep = json.loads((run.run_dir_ / "predictor.json").read_text())["info"]["deployment"]
    assert dep["latency_ms"] > 0 and dep["size_mb"] > 0
    # the latency limit no model meets: the fastest option measured is kept, and it is said
    decision = run.run_info_["decisions"]["deployment"]
    assert "no option meets the constraints (max_latency_ms=1e-06): kept the fastest" in decision
    measured = {k: v for k, v in dep["options"].items() if "latency_ms" in v}
    fastest = min(measured, key=lambda k: measured[k]["latency_ms"])
    assert run.run_info_["chosen"] == fastest
    chosen = board[board["chosen"]].iloc[0]
    assert chosen["deployment"].startswith("chosen: no option meets the constraints")
    assert run.run_info_["deployment"]["constraints_met"] is False


def test_the_search_keeps_time_for_the_stack_layer_only_when_it_fits():
    """At 300 s a fixed 15 % was kept for a layer that needed 96-158 s and was skipped: the fits
    ended 44-60 s early. The search now keeps the layer's expected time only when it fits in its
    cap (and the refits' time either way)."""
    from automl.budget import search_reserve, search_time_reserve
    from automl.config import FitSpec
    from automl.refit import RefitReserve
    from automl.stack_reserve import StackReserve
    from automl.stacking import stack_cost_s

    assert stack_cost_s([5.0, 2.5], 5) == pytest.approx(1.56 * 7.5 + 10)  # (k-2)(k-1)/2k x 1.3, + 10 s
    now = 1000.0
    roomy = StackReserve(growth=0.3, scale=1.25, end=now + 60, earliest=now, slack=1.0, folds=5, cap=25.0)
    assert roomy.need_s() is None and roomy.reason(now + 59) is None  # nothing observed yet
    roomy.observe("lightgbm", {"objective": -3.0, "fit_time_s": 5.0})  # refit 5 x 0.3 x 1.25 = 1.875 s
    roomy.observe("xgboost", {"objective": -3.5, "fit_time_s": 2.5})  # 0.9375 s
    refit = 1.875 + 0.9375
    assert roomy.need_s() == pytest.approx(1.56 * 7.5 + 10 + refit)  # 21.7 s of layer: under the cap
    assert roomy.reason(now + 60 - 24.6) is None
    why = roomy.reason(now + 60 - 24.4)
    assert why == (
        "time kept for the stack layer (~21.7s expected)"
        " and refitting the best candidates on every row (~2.8s)"
    )
    # the layer needs more than the search may give up for it: only the refits' time is kept
    tight = StackReserve(growth=0.3, scale=1.25, end=now + 60, earliest=now, slack=1.0, folds=5, cap=20.0)
    tight.observe("lightgbm", {"objective": -3.0, "fit_time_s": 5.0})
    tight.observe("xgboost", {"objective": -3.5, "fit_time_s": 2.5})
    assert tight.need_s() == pytest.approx(refit) and tight.reason(now + 60 - 4) is None
    assert tight.reason(now + 60 - 2.7).startswith("time kept for refitting")
    # refit off: the layer alone
    alone = StackReserve(growth=0.3, scale=1.25, end=now + 60, earliest=now, folds=5, cap=25.0, refit=False)
    alone.observe("lightgbm", {"objective": -3.0, "fit_time_s": 5.0})
    assert alone.need_s() == pytest.approx(1.56 * 5 + 10)
    assert alone.because(17.8) == "time kept for the stack layer (~17.8s expected)"

    # wiring: with stacking on and k-fold, the search's reserve is a StackReserve, and the fixed
    # time after the search no longer holds a share for the layer
    frame = pd.DataFrame({"x": np.random.default_rng(0).normal(size=200), "y": np.arange(200) % 2})
    data = trial_data(frame, "y", n_folds=5)[0]
    stacked = FitSpec("y", time_limit=300, ensemble=EnsembleConfig(stack_levels=1))
    plain = FitSpec("y", time_limit=300)
    assert search_reserve(stacked) == search_reserve(plain)
    reserve = search_time_reserve(stacked, data, now + 200)
    assert isinstance(reserve, StackReserve) and reserve.cap == pytest.approx(45.0) and reserve.folds == 5
    assert type(search_time_reserve(plain, data, now + 200)) is RefitReserve
