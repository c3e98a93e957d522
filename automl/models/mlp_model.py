"""The trained MLP: predicts in eval mode (threads scoped per call) and saves itself as
safetensors weights plus a JSON with the architecture and the target scaling (never pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from automl.models.base import FittedModel, ModelInput, Task, read_json, write_json
from automl.models.mlp_rows import FEW_ROWS, NumpyNet
from automl.preprocessing import FeatureMatrix
from automl.problem import ProblemType

if TYPE_CHECKING:
    import torch

    from automl.models.mlp_net import NetSpec, Target


def input_tensors(X: FeatureMatrix) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    num = torch.from_numpy(np.ascontiguousarray(X.num, dtype=np.float32))
    cat = torch.from_numpy(np.ascontiguousarray(X.cat, dtype=np.int64))
    return num, cat


class MLPModel(FittedModel):
    """A trained network in eval mode; ``constant`` replaces it when its weights diverged."""

    family = "mlp"

    def __init__(
        self,
        spec: NetSpec,
        target: Target,
        state: dict[str, torch.Tensor],
        task: Task,
        epochs: int,
        constant: np.ndarray | None = None,
    ) -> None:
        from automl.models.mlp_net import TabularMLP, select_device

        self.spec, self.target, self.task, self._epochs = spec, target, task, epochs
        self.constant = constant
        self.device = select_device(task.use_gpu)
        self.module = TabularMLP(spec)
        self.module.load_state_dict({k: v.to("cpu") for k, v in state.items()})
        self.module.to(self.device).eval()
        self._numpy_net: NumpyNet | None = None

    @property
    def n_iterations(self) -> int:
        return self._epochs

    def predict(self, X: FeatureMatrix) -> np.ndarray:
        import torch

        from automl.models.mlp_net import PARALLEL_PREDICT_ROWS

        if self.constant is not None:
            return tile_constant(self.constant, X.n_rows, self.task)
        if X.n_rows <= FEW_ROWS and self._rows() is not None:
            return self._few(X.num, X.cat)
        threads = 1 if X.n_rows < PARALLEL_PREDICT_ROWS else torch.get_num_threads()
        return self._forward(input_tensors(X), threads)

    def predict_input(self, inputs: ModelInput, threads: int) -> np.ndarray:
        if self.constant is not None:
            return tile_constant(self.constant, inputs.n_rows, self.task)
        if inputs.n_rows <= FEW_ROWS and self._rows() is not None:
            return self._few(inputs.X.num, inputs.X.cat)
        return self._forward(inputs.cached("torch", input_tensors), threads)

    def _rows(self) -> NumpyNet | None:
        """The NumPy pass for a few rows (:mod:`automl.models.mlp_rows`), built on first use; None
        on a GPU, where the network stays."""
        net = getattr(self, "_numpy_net", None)  # a model pickled before this attribute has none
        if net is None and self.device.type == "cpu":
            net = self._numpy_net = NumpyNet(self.module)
        return net

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_numpy_net": None}  # rebuilt where it is used (closures do not pickle)

    def _few(self, num: np.ndarray, cat: np.ndarray) -> np.ndarray:
        return self.target.outputs(self._rows().forward(num, cat))  # type: ignore[union-attr]

    def _forward(self, tensors: tuple[torch.Tensor, torch.Tensor], threads: int) -> np.ndarray:
        from automl.models.mlp_net import forward_all, torch_threads

        num, cat = tensors
        with torch_threads(threads):
            raw = forward_all(self.module, num.to(self.device), cat.to(self.device))
        return self.target.outputs(raw.cpu().numpy())

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().to("cpu").contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))
        t = self.target
        write_json(
            directory / "mlp.json",
            {
                "format": 1,
                "net": self.spec.to_dict(),
                "epochs": self._epochs,
                "target": {
                    "problem_type": t.problem_type.value,
                    "n_classes": t.n_classes,
                    "y_mean": t.y_mean,
                    "y_std": t.y_std,
                },
                "constant": None if self.constant is None else [float(v) for v in self.constant],
            },
        )


def tile_constant(constant: np.ndarray, n: int, task: Task) -> np.ndarray:
    if task.problem_type.is_classification:
        return np.tile(np.asarray(constant, dtype=float), (n, 1))
    return np.full(n, float(constant[0]))


def load_model(directory: Path, task: Task) -> MLPModel:
    """Rebuild a saved MLP from ``mlp.json`` and ``model.safetensors`` (no pickle involved)."""
    from safetensors.torch import load_file

    from automl.models.mlp_net import NetSpec, Target

    meta = read_json(directory / "mlp.json")
    t = meta["target"]
    target = Target(
        ProblemType(t["problem_type"]), int(t["n_classes"]), float(t["y_mean"]), float(t["y_std"])
    )
    state = load_file(str(directory / "model.safetensors"), device="cpu")
    constant = None if meta.get("constant") is None else np.asarray(meta["constant"], dtype=float)
    return MLPModel(NetSpec.from_dict(meta["net"]), target, state, task, int(meta["epochs"]), constant)
