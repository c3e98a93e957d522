"""The Ray Train path for the boosting families: data-parallel XGBoost (``XGBoostTrainer``) and
LightGBM (``LightGBMTrainer``) on ``ray.data`` datasets with ``num_workers`` workers, CPU or GPU.

It runs inside a Tune trial (Train V2 cannot be tuned as ``Tuner(trainer)``). Workers evaluate
the library's native metric on their validation shard every few rounds and report it, converted
to the search objective when an exact equivalent exists (roc_auc=auc, log_loss, accuracy=1-error,
rmse, mae); other metrics are tracked through a proxy (log-loss or rmse) while training, and the
final score is always the exact metric, computed by the trial on the full validation rows.
Reports go to Tune through Ray's ``TuneReportCallback`` so ASHA can stop the trial.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl.models.base import FittedModel, Task
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType

LABEL, WEIGHT = "__label", "__weight"
DISTRIBUTED_FAMILIES = ("lightgbm", "xgboost")

# our metric -> native name per library and problem ("bin" / "multi" / "reg"), and whether the
# native value *is* our metric (after a transform) or only a proxy
_NATIVE = {
    "xgboost": {
        "roc_auc": {"bin": "auc", "multi": "auc"},
        "log_loss": {"bin": "logloss", "multi": "mlogloss"},
        "accuracy": {"bin": "error", "multi": "merror"},
        "rmse": {"reg": "rmse"},
        "mae": {"reg": "mae"},
    },
    "lightgbm": {
        "roc_auc": {"bin": "auc"},
        "log_loss": {"bin": "binary_logloss", "multi": "multi_logloss"},
        "accuracy": {"bin": "binary_error", "multi": "multi_error"},
        "rmse": {"reg": "rmse"},
        "mae": {"reg": "l1"},
    },
}
_PROXY = {
    "xgboost": {"bin": "logloss", "multi": "mlogloss", "reg": "rmse"},
    "lightgbm": {"bin": "binary_logloss", "multi": "multi_logloss", "reg": "rmse"},
}


@dataclass(frozen=True)
class NativeMetric:
    name: str  # the library's eval metric
    exact: bool  # True: converts to the search metric; False: a proxy during training only
    flip: bool  # value is an error rate: score = 1 - value
    higher_is_better: bool


def native_metric(library: str, metric: str, problem: ProblemType) -> NativeMetric:
    kind = {"binary": "bin", "multiclass": "multi", "regression": "reg"}[problem.value]
    name = _NATIVE[library].get(metric, {}).get(kind)
    if name is None:
        return NativeMetric(_PROXY[library][kind], False, False, False)
    return NativeMetric(name, True, metric == "accuracy", metric in ("roc_auc", "accuracy"))


def to_frame(X: FeatureMatrix, y: np.ndarray, w: np.ndarray | None) -> pd.DataFrame:
    df = pd.DataFrame(X.dense(), columns=[f"f{i}" for i in range(len(X.names))])
    df[LABEL] = y
    if w is not None:
        df[WEIGHT] = w
    return df


def _report(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
    import ray.train

    ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    ray.train.report(metrics, checkpoint=ckpt)


class _Tracker:
    """Turns native metric values into the trial's report (objective, best so far, score)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.flip, self.higher, self.exact = cfg["flip"], cfg["higher"], cfg["exact"]
        self.best = float("-inf")

    def final(self, best_iteration: int) -> dict[str, Any]:
        """The last report of a fold (Tune sees it too, so it carries the search metric)."""
        best = self.best if self.best > float("-inf") else -1e18
        return {
            "objective": best,
            "best_objective": best,
            "best_iteration": best_iteration,
            "fold_finished": True,
        }

    def metrics(self, value: float, iteration: int) -> dict[str, Any]:
        score = 1.0 - value if self.flip else value
        objective = score if self.higher else -score
        self.best = max(self.best, objective)
        return {
            "objective": objective,
            "best_objective": self.best,
            "score": score,
            "iteration": iteration,
            "native_metric_exact": self.exact,
        }


def xgboost_loop(cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import xgboost

    def dmatrix(name: str) -> Any:
        df = ray.train.get_dataset_shard(name).materialize().to_pandas()
        feats = [c for c in df.columns if c.startswith("f")]
        return xgboost.DMatrix(
            df[feats].to_numpy(np.float32),
            label=df[LABEL].to_numpy(),
            weight=df[WEIGHT].to_numpy() if WEIGHT in df else None,
            feature_types=cfg["feature_types"],
            enable_categorical=True,
        )

    dtrain, dvalid = dmatrix("train"), dmatrix("validation")
    tracker = _Tracker(cfg)
    rank = ray.train.get_context().get_world_rank()

    class Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if (epoch + 1) % cfg["step"] == 0:
                _report(tracker.metrics(float(evals_log["valid"][cfg["native"]][-1]), epoch + 1))
            return False

    params = {**cfg["params"], "eval_metric": cfg["native"]}
    bst = xgboost.train(
        params,
        dtrain,
        num_boost_round=cfg["rounds"],
        evals=[(dvalid, "valid")],
        early_stopping_rounds=cfg["patience"],
        callbacks=[Report()],
        verbose_eval=False,
    )
    best = int(getattr(bst, "best_iteration", bst.num_boosted_rounds() - 1)) + 1
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            bst[:best].save_model(os.path.join(d, "model.ubj"))
        _report(tracker.final(best), d if rank == 0 else None)


def lightgbm_loop(cfg: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import lightgbm
    import ray.train
    from ray.train.lightgbm import get_network_params

    def dataset(name: str, reference: Any = None) -> Any:
        df = ray.train.get_dataset_shard(name).materialize().to_pandas()
        feats = [c for c in df.columns if c.startswith("f")]
        return lightgbm.Dataset(
            df[feats].to_numpy(np.float32),
            label=df[LABEL].to_numpy(),
            weight=df[WEIGHT].to_numpy() if WEIGHT in df else None,
            categorical_feature=cfg["categorical"] or "auto",
            reference=reference,
            params={"verbosity": -1},
        )

    dtrain = dataset("train")
    dvalid = dataset("validation", dtrain)
    tracker = _Tracker(cfg)
    rank = ray.train.get_context().get_world_rank()

    def report(env: Any) -> None:
        if (env.iteration + 1) % cfg["step"] == 0:
            value = next(v for _, name, v, _ in env.evaluation_result_list if name == cfg["native"])
            _report(tracker.metrics(float(value), env.iteration + 1))

    params = {
        **cfg["params"],
        "metric": cfg["native"],
        "tree_learner": "data_parallel",
        "pre_partition": True,
        **get_network_params(),
    }
    bst = lightgbm.train(
        params,
        dtrain,
        num_boost_round=cfg["rounds"],
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lightgbm.early_stopping(cfg["patience"], verbose=False), report],
    )
    best = int(bst.best_iteration or bst.current_iteration())
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            bst.save_model(os.path.join(d, "model.txt"), num_iteration=best)
        _report(tracker.final(best), d if rank == 0 else None)


def fit_distributed(
    family: str,
    config: dict[str, Any],
    task: Task,
    train: FeatureMatrix,
    y: np.ndarray,
    w: np.ndarray | None,
    valid: FeatureMatrix,
    y_valid: np.ndarray,
    *,
    metric: str,
    num_workers: int,
    use_gpu: bool,
    storage_path: str,
    name: str,
    report_to_tune: bool = True,
) -> tuple[FittedModel, int, float]:
    """Train one fold with Ray Train; returns (model, best iteration, seconds in the trainer)."""
    import ray.data
    from ray.train import DataConfig, RunConfig, ScalingConfig

    from automl.models.gbdt import MAX_ROUNDS, patience_rounds, rounds_per_step

    native = native_metric(family, metric, task.problem_type)
    cfg: dict[str, Any] = {
        "rounds": int(config.get("n_estimators", MAX_ROUNDS)),
        "patience": patience_rounds(config),
        "step": rounds_per_step(config),
        "native": native.name,
        "exact": native.exact,
        "flip": native.flip,
        "higher": native.higher_is_better,
    }
    datasets = {
        "train": ray.data.from_pandas(to_frame(train, y, w)),
        "validation": ray.data.from_pandas(to_frame(valid, y_valid, None)),
    }
    callbacks = []
    if report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    # fractional CPUs: the trial that drives the trainer holds a CPU of its own (RAY_NOTES.md)
    scaling = ScalingConfig(
        num_workers=num_workers,
        use_gpu=use_gpu,
        resources_per_worker={"CPU": 0.5 if num_workers > 1 else 1.0, **({"GPU": 1} if use_gpu else {})},
    )
    run_config = RunConfig(name=name, storage_path=storage_path, callbacks=callbacks)
    # Every worker gets the whole validation set: LightGBM evaluates locally, and workers whose
    # early-stopping decisions differ deadlock in the next allreduce.
    data_config = DataConfig(datasets_to_split=["train"])
    t0 = time.perf_counter()
    if family == "xgboost":
        from ray.train.xgboost import XGBoostTrainer

        from automl.models.xgboost import XGBoostModel, feature_types, xgb_params

        cfg["params"] = {**xgb_params(config, task), "nthread": 1}
        cfg["feature_types"] = feature_types(train)
        result = XGBoostTrainer(
            xgboost_loop,
            train_loop_config=cfg,
            scaling_config=scaling,
            run_config=run_config,
            datasets=datasets,
            dataset_config=data_config,
        ).fit()
        from ray.train.xgboost import RayTrainReportCallback

        model: FittedModel = XGBoostModel(
            RayTrainReportCallback.get_model(result.checkpoint, "model.ubj"), task
        )
    elif family == "lightgbm":
        from ray.train.lightgbm import LightGBMTrainer, RayTrainReportCallback

        from automl.models.lightgbm import LightGBMModel, lgb_params

        cfg["params"] = {**lgb_params(config, task), "num_threads": 1}
        cfg["categorical"] = list(range(train.num.shape[1], train.num.shape[1] + train.cat.shape[1]))
        result = LightGBMTrainer(
            lightgbm_loop,
            train_loop_config=cfg,
            scaling_config=scaling,
            run_config=run_config,
            datasets=datasets,
            dataset_config=data_config,
        ).fit()
        booster = RayTrainReportCallback.get_model(result.checkpoint, "model.txt")
        model = LightGBMModel(booster, task, booster.current_iteration(), average=False)
    else:
        raise ValueError(f"family {family!r} has no Ray Train path; those that do: {DISTRIBUTED_FAMILIES}")
    elapsed = time.perf_counter() - t0
    return model, int(result.metrics.get("best_iteration", model.n_iterations)), elapsed
