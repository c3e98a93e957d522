"""The model-family contract and the registry.

A *family* (LightGBM, XGBoost, MLP, ...) owns: its search space (Ray Tune domains sized by the
data) and a portfolio of default configs tried first; a stepwise *learner* that trains a few
iterations (boosting rounds, epochs) at a time and exposes its current validation predictions,
so that folds train in lockstep and a scheduler can stop a trial after any step; and a *fitted
model* saved in the library's native format (never pickle).

Predictions are *standardised*: classifiers give an ``(n, k)`` array of class probabilities
(columns = encoded classes 0..k-1), regressors an ``(n,)`` array.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from automl.exceptions import ConfigError
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType


@dataclass(frozen=True)
class Task:
    """What a family needs to know about the problem and the place it trains on."""

    problem_type: ProblemType
    n_classes: int  # 0 for regression
    n_rows: int
    n_features: int
    seed: int = 0
    num_threads: int = 1
    use_gpu: bool = False
    #: regression with a skewed or heavy-tailed target: the transform the search offers besides
    #: none ("log1p" or "yeo-johnson"); families then offer robust objectives too. "": neither.
    target_transform: str = ""
    #: the time limit is short for the table (automl.config.ValidationConfig.budget_is_short;
    #: of the ten shared tables at 60 s, covertype: 60 k rows x 7 classes): the search's first
    #: trial, the one that trains on all rows from the start, should converge in few rounds
    short_budget: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problem_type"] = self.problem_type.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(**{**d, "problem_type": ProblemType(d["problem_type"])})


class ModelInput:
    """One recipe's features for one prediction call, shared by every model that reads them: each
    library's form of the input (the dense float32 matrix, a CatBoost pool, torch tensors) is
    built at most once per call, not once per model."""

    def __init__(self, X: FeatureMatrix, dense: np.ndarray | None = None) -> None:
        self.X = X
        self._dense = dense
        self._cache: dict[str, Any] = {}

    @property
    def n_rows(self) -> int:
        return self.X.n_rows

    def dense(self) -> np.ndarray:
        """``X.dense()`` (numbers, then category codes as floats), C-contiguous."""
        if self._dense is None:
            self._dense = np.ascontiguousarray(self.X.dense(), dtype=np.float32)
        return self._dense

    def cached(self, key: str, build: Callable[[FeatureMatrix], Any]) -> Any:
        """``build(X)``, computed on the first request for ``key`` in this call."""
        if key not in self._cache:
            self._cache[key] = build(self.X)
        return self._cache[key]


class FittedModel(abc.ABC):
    """A trained model that predicts standardised outputs and saves itself in a native format."""

    family: ClassVar[str]
    #: the file :meth:`save` writes that ``automl compile`` can compile (automl.models.compiled),
    #: None for families with no compiled form
    native_file: ClassVar[str | None] = None
    #: the compiled library in use for large calls (automl.models.compiled.CompiledTrees), if any
    compiled: Any = None
    #: calls of at most this many rows go through :meth:`joint_predictor` (0: never); it is built at
    #: the first such call, so a process that predicts only larger batches never builds it
    joint_rows: ClassVar[int] = 0

    @abc.abstractmethod
    def predict(self, X: FeatureMatrix) -> np.ndarray: ...

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        """The same predictions as :meth:`predict`, from an input shared by the other models of a
        call, with ``threads`` threads. Families override it to skip per-model conversions."""
        return self.predict(inputs.X)

    @classmethod
    def joint_predictor(cls, models: list[FittedModel]) -> JointPredictor | None:
        """Something that predicts several models of this class in one pass (the fold models of
        a bag), or None when the family has no such thing."""
        return None

    @classmethod
    def joint_setup_s(cls, models: list[FittedModel]) -> float:
        """Estimated seconds :meth:`joint_predictor` takes to build for ``models`` (0: no such thing)."""
        return 0.0

    @classmethod
    def joint_once_s(cls) -> float:
        """Estimated seconds the first joint predictor of this class in a process takes on top of
        :meth:`joint_setup_s` (code compiled once per process), 0 once paid."""
        return 0.0

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the model's files into ``directory`` (which exists)."""

    @property
    def n_iterations(self) -> int:
        return 0

    def feature_importance(self) -> np.ndarray | None:
        """Gain-like importance per input feature (``FeatureMatrix.names`` order), if the model has one."""
        return None


class JointPredictor(abc.ABC):
    """Predicts several models at once; see :meth:`FittedModel.joint_predictor`."""

    @abc.abstractmethod
    def predict(self, inputs: ModelInput, threads: int) -> list[np.ndarray] | None:
        """Each model's standardised predictions, or None to let each model predict alone (for
        a call this way does not suit, e.g. a large batch)."""


class Learner(abc.ABC):
    """Trains one model on one fold, a few iterations at a time."""

    #: iterations trained so far
    iteration: int = 0
    #: the maximum number of iterations this config allows
    max_iterations: int = 1
    #: set by a learner whose training health check fired ("nan_loss: loss became NaN at epoch 3");
    #: the trial then stops and keeps its best step, and the leaderboard shows this reason
    health_stop: str | None = None
    #: wall-clock time (time.time()) by which the trial must wrap up; learners that train a
    #: fold in one library call (CatBoost) stop adding trees when it passes
    deadline: float | None = None

    @property
    def done(self) -> bool:
        return self.iteration >= self.max_iterations

    @abc.abstractmethod
    def step(self, n: int) -> None:
        """Train up to ``n`` more iterations (fewer if ``max_iterations`` is reached)."""

    @abc.abstractmethod
    def valid_predictions(self) -> np.ndarray:
        """Standardised predictions on the validation rows at the current iteration."""

    @abc.abstractmethod
    def finish(self, best_iteration: int) -> FittedModel:
        """The model as it was after ``best_iteration`` iterations."""

    def fit_time_s(self) -> float:
        """Seconds spent inside the model library so far."""
        return getattr(self, "_fit_time", 0.0)

    # -- mid-trial checkpoints (pausing schedulers, retries after a worker died) --------------------
    supports_state: bool = False

    def get_state(self, directory: Path) -> None:
        """Write what ``set_state`` needs to continue from the current iteration."""
        raise NotImplementedError(f"{type(self).__name__} cannot checkpoint mid-training")

    def set_state(self, directory: Path) -> None:
        """Continue from a state written by ``get_state`` (the learner was built on the same data)."""
        raise NotImplementedError(f"{type(self).__name__} cannot checkpoint mid-training")


class RefitOnRestore:
    """Checkpoint support for one-step learners (linear, k-NN): the state is whether they have
    trained; restoring trains again, which is cheap and deterministic."""

    supports_state = True

    def get_state(self, directory: Path) -> None:
        write_json(directory / "state.json", {"iteration": self.iteration})

    def set_state(self, directory: Path) -> None:
        if read_json(directory / "state.json")["iteration"] >= 1 and self.iteration == 0:
            self.step(1)


class Family(abc.ABC):
    """A model family: a registry entry."""

    name: ClassVar[str]
    recipe: ClassVar[str] = "tree"
    problem_types: ClassVar[tuple[ProblemType, ...]] = tuple(ProblemType)
    #: portfolio order: lower runs first
    priority: ClassVar[int] = 50
    #: iterations without improvement before a trial stops (scaled by the family when needed)
    patience: ClassVar[int] = 50
    #: patience x this when the budget is short for the table (Task.short_budget): few configs
    #: then train on all rows, and the deadline, not a plateau, should end them
    short_budget_patience: ClassVar[float] = 1.0
    #: whether the family can train on a GPU
    supports_gpu: ClassVar[bool] = False
    #: a skewed or heavy-tailed regression target: the portfolio also tries the default config on
    #: the transformed target (measured on diamonds: log1p helps the boosted trees a little and the
    #: linear model a lot, and hurts the MLP, k-NN and the forests, which keep it as a search choice)
    transform_in_portfolio: ClassVar[bool] = False
    #: cost of a default trial relative to LightGBM's default (measured on adult, 5 folds, one
    #: thread); the search uses it to skip a config that could not finish in the time left
    relative_cost: ClassVar[float] = 1.0
    #: a refit on every row trains the best iteration x (all rows / a fold's training rows): true
    #: for boosting, whose rounds fit the rows they see; not for epochs or a forest's trees
    refit_scales_iterations: ClassVar[bool] = False

    @abc.abstractmethod
    def search_space(self, task: Task) -> dict[str, Any]:
        """Ray Tune domains (``tune.loguniform`` ...) keyed by parameter name, sized by the data."""

    @abc.abstractmethod
    def portfolio(self, task: Task) -> list[dict[str, Any]]:
        """Configs to try before any search; the first is the family's default."""

    @abc.abstractmethod
    def learner(
        self,
        config: dict[str, Any],
        task: Task,
        train: FeatureMatrix,
        y_train: np.ndarray,
        w_train: np.ndarray | None,
        valid: FeatureMatrix,
        y_valid: np.ndarray,
    ) -> Learner: ...

    @abc.abstractmethod
    def load(self, directory: Path, task: Task) -> FittedModel: ...

    def grid(self, task: Task) -> list[dict[str, Any]]:
        """Points for grid search: a small Cartesian product of the most important parameters."""
        return self.portfolio(task)

    def step_size(self, config: dict[str, Any], task: Task) -> int:
        """Iterations per step (one report to the scheduler per step)."""
        return 1

    def patience_for(self, config: dict[str, Any]) -> int:
        return self.patience

    def applies_to(self, task: Task) -> bool:
        return task.problem_type in self.problem_types


_REGISTRY: dict[str, Family] = {}


def register(family_cls: type[Family]) -> type[Family]:
    """Class decorator adding a family to the registry; duplicate names are refused."""
    name = family_cls.name
    if name in _REGISTRY:
        raise ConfigError(f"model family {name!r} is already registered")
    _REGISTRY[name] = family_cls()
    return family_cls


def get_family(name: str) -> Family:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}; choose from {sorted(_REGISTRY)}") from None


def all_families() -> dict[str, Family]:
    _ensure_loaded()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].priority, kv[0])))


def _ensure_loaded() -> None:
    import automl.models  # noqa: F401  (importing the package registers the built-in families)


# --- helpers shared by families -------------------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def raw_to_output(raw: np.ndarray, problem_type: ProblemType) -> np.ndarray:
    """Turn margins (log-odds / class scores / values) into standardised predictions."""
    if problem_type is ProblemType.BINARY:
        p = sigmoid(np.asarray(raw, dtype=float).reshape(-1))
        return np.column_stack([1.0 - p, p])
    if problem_type is ProblemType.MULTICLASS:
        return softmax(np.asarray(raw, dtype=float))
    return np.asarray(raw, dtype=float).reshape(-1)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
