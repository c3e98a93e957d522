"""The PyTorch MLP family: training health rules, determinism, categorical embeddings, the epoch
kept by ``finish``, native saving, the GPU path and the Ray Train (DDP) path."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from conftest import _frame
from helpers import trial_data, two_worker_job
from sklearn.metrics import log_loss, roc_auc_score

from automl.models import get_family, mlp_health, mlp_net
from automl.models.mlp import MLPLearner, MLPModel, load_model, max_epochs_for
from automl.models.mlp_health import EpochHealth, HealthMonitor
from automl.training import train_candidate

FAMILY = get_family("mlp")


def _data(df, seed: int = 0):
    data, *_ = trial_data(df, "label", recipes=("nn",), seed=seed)
    return data


def _learner(data, fold: int = 0, **overrides) -> MLPLearner:
    config = {**FAMILY.portfolio(data.task)[0], **overrides}
    tr, va = data.folds[fold]
    X = data.features["nn"]
    return FAMILY.learner(config, data.task, X.take(tr), data.y[tr], None, X.take(va), data.y[va])


def _noisy_binary(n: int, seed: int, flip: float) -> object:
    df = _frame(n, seed, "binary")
    rows = np.random.default_rng(seed).random(n) < flip
    df.loc[rows, "label"] = np.where(df.loc[rows, "label"] == "yes", "no", "yes")
    return df


# --- health rules on constructed histories ----------------------------------------------------------
def _monitor(
    rows: list[tuple[float, float, float]], constant_loss: float = 0.69, updates: int = 100
) -> str | None:
    """Feed (training loss, validation loss, first-layer gradient) per epoch; the last verdict."""
    m = HealthMonitor(constant_loss, updates)
    verdict = None
    for i, (tl, vl, g) in enumerate(rows, start=1):
        verdict = m.check(EpochHealth(i, tl, vl, g)) or verdict
    return verdict


def test_health_rules_on_constructed_histories():
    healthy = [(0.6 - 0.02 * i, 0.6 - 0.015 * i, 1e-3) for i in range(12)]
    assert _monitor(healthy) is None
    nan, inf = float("nan"), float("inf")
    assert _monitor(healthy[:3] + [(nan, 0.5, 1e-3)]).startswith("nan_loss: training loss became nan")
    assert _monitor(healthy[:3] + [(0.4, inf, 1e-3)]).startswith("nan_loss: validation loss became inf")
    assert _monitor(healthy[:2] + [(7.5, 0.6, 1e-3)]).startswith("exploding_loss: training loss 7.5 at epoch")
    assert _monitor(healthy[:2] + [(6.0, 0.6, 1e-3)]) is None  # below 10x the constant loss
    vanishing = healthy[:3] + [(0.5, 0.5, 1e-9), (0.5, 0.5, 1e-9)]
    assert _monitor(vanishing).startswith("vanishing_gradient: ")
    assert _monitor(healthy[:3] + [(0.5, 0.5, 1e-9)]) is None  # one epoch is not enough
    overfit = healthy[:4] + [(0.45 - 0.02 * i, 0.55 + 0.02 * i, 1e-3) for i in range(6)]
    assert _monitor(overfit).startswith("overfitting: validation loss rose for 5 epochs")
    rises = [0.55, 0.62, 0.6, 0.66, 0.64, 0.7]
    noisy_rise = healthy[:4] + [(0.45 - 0.02 * i, v, 1e-3) for i, v in enumerate(rises)]
    assert _monitor(noisy_rise).startswith("overfitting: ")  # a rising trend, not strictly every epoch
    flat = healthy[:4] + [(0.45 - 0.02 * i, 0.55 + 0.01 * (i % 3), 1e-3) for i in range(6)]
    assert _monitor(flat) is None  # back at its best within the window
    slight = healthy[:4] + [(0.45 - 0.02 * i, 0.55 + 0.01 * i, 1e-3) for i in range(6)]
    assert _monitor(slight) is None  # rose by less than OVERFITTING_MIN_RISE
    both_rising = healthy[:4] + [(0.45 + 0.01 * i, 0.55 + 0.01 * i, 1e-3) for i in range(6)]
    assert _monitor(both_rising) is None  # training loss did not fall: not overfitting
    stuck = [(0.69, 0.689, 1e-3)] * 5
    assert _monitor(stuck).startswith("no_progress: best validation loss 0.689 after 5 epochs")
    assert _monitor(stuck[:4]) is None  # judged after NO_PROGRESS_EPOCHS only
    assert _monitor(stuck, updates=10) is None  # ... and after NO_PROGRESS_MIN_UPDATES optimizer steps


# --- health rules in real training ------------------------------------------------------------------
def test_huge_learning_rate_explodes_and_the_trial_reports_the_rule(binary_df):
    data = _data(binary_df)
    config = {**FAMILY.portfolio(data.task)[0], "learning_rate": 1e6, "weight_decay": 0.0}
    res = train_candidate(FAMILY, config, data)
    assert res.stop_reason.startswith(("health: nan_loss", "health: exploding_loss")), res.stop_reason
    assert len(res.history) <= 2
    assert np.isfinite(res.oof).all()  # scored with finite predictions, no crash
    assert all(np.isfinite(m.predict(data.features["nn"])).all() for m in res.models)


def test_tiny_model_on_pure_noise_makes_no_progress(monkeypatch):
    monkeypatch.setattr(mlp_health, "NO_PROGRESS_MIN_UPDATES", 0)  # judge after NO_PROGRESS_EPOCHS epochs
    df = _frame(300, 4, "binary")
    df["label"] = np.random.default_rng(4).choice(["yes", "no"], size=len(df))
    data = _data(df)
    config = {**FAMILY.portfolio(data.task)[0], "hidden": 4, "depth": 1, "learning_rate": 3e-4}
    res = train_candidate(FAMILY, config, data)
    assert res.stop_reason.startswith("health: no_progress: best validation loss"), res.stop_reason
    assert len(res.history) == mlp_health.NO_PROGRESS_EPOCHS


def test_dead_relus_make_gradients_vanish(binary_df):
    learner = _learner(_data(binary_df), norm="none")
    with torch.no_grad():  # every unit of the first layer is pushed below zero: its ReLUs are dead
        learner.model.first_layer().bias.fill_(-1e4)
    learner.step(5)
    assert learner.health_stop.startswith("vanishing_gradient: mean |gradient| of the first layer 0 <")
    assert learner.iteration == mlp_health.VANISHING_GRADIENT_EPOCHS and learner.done


def test_big_unregularised_net_on_few_noisy_rows_overfits():
    data = _data(_noisy_binary(300, 3, flip=0.3))
    X, idx = data.features["nn"], np.arange(300)
    config = {
        **FAMILY.portfolio(data.task)[0],
        "hidden": 256,
        "depth": 3,
        "dropout": 0.0,
        "weight_decay": 1e-6,
        "learning_rate": 1e-2,
        "batch_size": 16,
        "max_epochs": 40,
    }
    tr, va = idx[:60], idx[60:]
    learner = FAMILY.learner(config, data.task, X.take(tr), data.y[tr], None, X.take(va), data.y[va])
    while not learner.done:
        learner.step(1)
    assert (learner.health_stop or "").startswith("overfitting: validation loss rose for 5 epochs")
    assert learner.iteration < 40


def test_healthy_training_fires_no_rule(binary_df):
    learner = _learner(_data(binary_df), max_epochs=12)
    learner.step(12)
    assert learner.health_stop is None and learner.iteration == 12


# --- determinism, embeddings, epochs, saving ----------------------------------------------------------
def test_same_seed_same_predictions_other_seed_differs(binary_df):
    data = _data(binary_df)
    a, b = _learner(data), _learner(data)
    a.step(3)
    torch.rand(1000)  # other use of the global RNG in between must not matter
    b.step(3)
    assert np.array_equal(a.valid_predictions(), b.valid_predictions())
    X = data.features["nn"]
    assert np.array_equal(a.finish(2).predict(X), b.finish(2).predict(X))
    other = dataclasses.replace(data, task=dataclasses.replace(data.task, seed=1))
    c = _learner(other)
    c.step(3)
    assert not np.allclose(a.valid_predictions(), c.valid_predictions())


def test_categoricals_go_through_trained_embeddings(binary_df):
    data, pre, *_ = trial_data(binary_df, "label", recipes=("nn",))
    X = data.features["nn"]
    learner = _learner(data)
    embs = list(learner.model.embeddings)
    assert [e.num_embeddings for e in embs] == X.cat_sizes == [5]  # color: 3 levels + missing + rare
    assert learner.spec.emb_dims == (4,)  # round(1.6 * 5 ** 0.56)
    before = embs[0].weight.detach().clone()
    learner.step(5)
    assert not torch.allclose(before, embs[0].weight)
    model = learner.finish(5)
    levels = next(st["levels"] for st in pre["nn"].steps_ if st["name"] == "color")
    red, blue = X.take(np.arange(50)), X.take(np.arange(50))
    red.cat[:, 0], blue.cat[:, 0] = 1 + levels.index("red"), 1 + levels.index("blue")
    gap = model.predict(red)[:, 1] - model.predict(blue)[:, 1]
    assert gap.mean() > 0.05  # red adds +1 to the signal behind the label: the embedding learned it


def test_finish_returns_the_weights_of_the_asked_epoch(binary_df):
    data = _data(binary_df)
    learner = _learner(data)
    va = data.folds[0][1]
    seen = {}
    for epoch in range(1, 7):
        learner.step(1)
        seen[epoch] = learner.valid_predictions()
    X = data.features["nn"].take(va)
    for epoch in (2, 4, 6):
        model = learner.finish(epoch)
        assert model.n_iterations == epoch
        np.testing.assert_allclose(model.predict(X), seen[epoch], atol=1e-6)


def test_snapshots_over_the_memory_budget_keep_recent_epochs_and_the_best(binary_df, monkeypatch, caplog):
    from automl.models import mlp

    probe = _learner(_data(binary_df))
    state_bytes = sum(v.numel() * v.element_size() for v in probe.model.state_dict().values())
    monkeypatch.setattr(mlp, "SNAPSHOT_BUDGET_BYTES", 4 * state_bytes)  # room for 4 epochs
    data = _data(binary_df)
    config = {**FAMILY.portfolio(data.task)[0], "patience": 2}
    tr, va = data.folds[0]
    X = data.features["nn"]
    learner = FAMILY.learner(config, data.task, X.take(tr), data.y[tr], None, X.take(va), data.y[va])
    learner.step(9)
    own_best = 1 + int(np.argmin([h.val_loss for h in learner.history]))
    assert len(learner._kept) == 4 and {7, 8, 9, own_best} <= set(learner._kept)
    dropped = min(set(range(1, 10)) - set(learner._kept))
    assert learner.finish(dropped).n_iterations == own_best and "were not kept" in caplog.text


def test_regression_predicts_in_original_units(regression_df):
    df = regression_df.assign(label=regression_df["label"] * 100 + 5000)
    data = _data(df)
    res = train_candidate(FAMILY, FAMILY.portfolio(data.task)[0], data)
    assert abs(np.mean(res.oof) - df["label"].mean()) < 0.1 * df["label"].std()
    assert res.score < 0.5 * df["label"].std()


def test_saved_natively_loads_identically_and_predicts_one_row_fast(multiclass_df, tmp_path, monkeypatch):
    data = _data(multiclass_df)
    learner = _learner(data)
    learner.step(3)
    model = learner.finish(3)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.json", "model.safetensors"]
    loaded = FAMILY.load(tmp_path, data.task)
    X = data.features["nn"]
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), atol=1e-6)
    assert not loaded.module.training
    built = []
    monkeypatch.setattr(mlp_net.TabularMLP, "__init__", lambda *a, **k: built.append(1))
    one = X.take(np.array([7]))
    times = []
    for _ in range(50):
        t = time.perf_counter()
        out = loaded.predict(one)
        times.append(time.perf_counter() - t)
    assert built == []  # predicting never rebuilds the network
    assert out.shape == (1, 3) and np.isclose(out.sum(), 1.0)
    assert np.median(times) < 0.02  # ~0.2 ms here; loose because the machine is shared


def test_space_and_portfolio_are_sized_by_the_data(binary_df):
    from tuning.space import clip_to_space

    small = _data(binary_df).task
    large = dataclasses.replace(small, n_rows=50_000)
    for task in (small, large):
        space = FAMILY.search_space(task)
        for config in FAMILY.portfolio(task):
            assert clip_to_space(config, space) == config
            assert config["batch_size"] in space["batch_size"].categories
    assert FAMILY.search_space(small)["hidden"].upper < FAMILY.search_space(large)["hidden"].upper
    assert FAMILY.portfolio(small)[0]["batch_size"] == 32 and FAMILY.portfolio(large)[0]["batch_size"] == 1024
    assert max_epochs_for(300, 32) == 50 and max_epochs_for(50_000, 1024) == 10
    assert FAMILY.patience_for({}) == 10 and FAMILY.step_size({}, small) == 1


# --- GPU ------------------------------------------------------------------------------------------------
def test_use_gpu_without_cuda_falls_back_to_cpu_with_a_warning(binary_df, caplog):
    data = _data(binary_df)
    gpu_task = dataclasses.replace(data.task, use_gpu=True)
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the fallback does not happen")
    learner = _learner(dataclasses.replace(data, task=gpu_task))
    assert learner.device.type == "cpu" and "no CUDA device" in caplog.text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_use_gpu_trains_on_cuda(binary_df, tmp_path):
    data = _data(binary_df)
    data = dataclasses.replace(data, task=dataclasses.replace(data.task, use_gpu=True))
    learner = _learner(data)
    assert next(learner.model.parameters()).is_cuda and learner.num.is_cuda and learner.amp.enabled
    learner.step(3)
    model = learner.finish(3)
    assert next(model.module.parameters()).is_cuda
    X = data.features["nn"]
    model.save(tmp_path)
    cpu_task = dataclasses.replace(data.task, use_gpu=False)
    np.testing.assert_allclose(load_model(tmp_path, cpu_task).predict(X), model.predict(X), atol=1e-3)


# --- Ray Train ------------------------------------------------------------------------------------------
#: two DDP workers see the same rows in another order (shards, local shuffles), so the numbers differ
#: a little; on 60 validation rows one swapped pair moves the ROC AUC by ~0.001
RAY_TRAIN_AUC_TOLERANCE = 0.01
RAY_TRAIN_LOG_LOSS_TOLERANCE = 0.05


@pytest.mark.ray
@pytest.mark.slow
def test_ray_train_ddp_matches_the_in_process_learner(ray_session, binary_df, tmp_path):
    import ray

    from tuning import distributed

    ray.data.DataContext.get_current().enable_progress_bars = False
    data = _data(binary_df)
    X, idx = data.features["nn"], np.arange(len(binary_df))
    tr, va = idx[:240], idx[240:]
    config = {**FAMILY.portfolio(data.task)[0], "max_epochs": 3}
    local = FAMILY.learner(config, data.task, X.take(tr), data.y[tr], None, X.take(va), data.y[va])
    by_epoch = {}
    for epoch in (1, 2, 3):
        local.step(1)
        by_epoch[epoch] = (local.history[-1].val_loss, local.valid_predictions())
    local_loss, local_preds = min(by_epoch.values(), key=lambda v: v[0])
    local_auc = roc_auc_score(data.y[va], local_preds[:, 1])

    t0 = time.perf_counter()
    job = two_worker_job(data, X, tr, va, config, tmp_path, "t-mlp", max_epochs=3)
    done = distributed.fit("mlp", job)
    model, best_epoch, preds = done.model, done.best_iteration, done.model.predict(X.take(va))
    print(f"Ray Train: {time.perf_counter() - t0:.1f}s, in-process: {local.fit_time_s():.1f}s")
    assert isinstance(model, MLPModel) and 1 <= best_epoch <= 3
    assert preds.shape == (60, 2) and np.allclose(preds.sum(axis=1), 1.0)
    np.testing.assert_allclose(model.predict(X.take(va)), preds)
    ddp_auc = roc_auc_score(data.y[va], preds[:, 1])
    ddp_loss = log_loss(data.y[va], preds[:, 1])
    assert local_auc > 0.9 and abs(ddp_auc - local_auc) <= RAY_TRAIN_AUC_TOLERANCE, (ddp_auc, local_auc)
    assert abs(ddp_loss - local_loss) <= RAY_TRAIN_LOG_LOSS_TOLERANCE, (ddp_loss, local_loss)
    assert list(tmp_path.iterdir()), "the run wrote its checkpoints under storage_path"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_train_ddp_stops_together_when_the_search_ends(ray_session, binary_df, tmp_path):
    """A search trial's MLP job whose search has ended (its wrap-up flag raised): rank 0 reads
    the flag after the first epoch, the reading travels in the epoch's all_reduce and both workers
    stop there (one going on alone would wait in its next collective forever), keeping the model
    and saying why."""
    from tuning import distributed
    from tuning.wrapup import WrapUpFlag

    data = _data(binary_df)
    X, idx = data.features["nn"], np.arange(len(binary_df))
    tr, va = idx[:240], idx[240:]
    config = {**FAMILY.portfolio(data.task)[0], "max_epochs": 200}
    flag = WrapUpFlag.new()
    flag.raise_flag()
    try:
        job = two_worker_job(data, X, tr, va, config, tmp_path, "w-mlp", max_epochs=200, wrap_up=flag)
        done = distributed.fit("mlp", job)
    finally:
        flag.clear()
    assert done.search_ended and done.best_iteration == 1
    assert done.model.predict(X.take(va)).shape == (60, 2)
