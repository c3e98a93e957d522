"""The Predictor: the deployable artifact, a directory independent of Ray and of the search.

Its files (``predictor.json``, ``preprocessing/``, ``models/``, the profile, leaderboard and
validation sample, all covered by ``checksums.json``) are named in :mod:`automl.layout`.
Nothing in it runs code when loaded: no pickle anywhere. ``predictor.json`` records the versions
of Python and the libraries that wrote it; loading under other versions logs a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl import layout
from automl.compiling import attach_compiled
from automl.exceptions import IntegrityError, NotFittedError, SchemaError
from automl.fastpath import row_index
from automl.models.base import FittedModel, Task, get_family
from automl.preprocessing import FeatureMatrix, Preprocessor
from automl.problem import ProblemType
from automl.schema import InputSchema, ValidationReport
from automl.target import OutputStep
from automl.versions import package_versions, warn_if_different

logger = logging.getLogger(__name__)

#: what the predict methods take: a DataFrame, or a mapping of column name -> sequence of values
Rows = pd.DataFrame | Mapping[str, Sequence[Any]]

FORMAT_VERSION = 1


@dataclass
class Member:
    """One ensemble member: a bag of fold models of one candidate."""

    name: str
    family: str
    recipe: str
    weight: float
    models: list[FittedModel]
    params: dict[str, Any] = field(default_factory=dict)
    refit: bool = False
    #: regression: inverts the member's target transform and clips to the training target's range
    output: OutputStep | None = None

    def predict(self, X: FeatureMatrix, clipped: dict[str, int] | None = None) -> np.ndarray:
        """The bag's mean prediction (on the transformed scale, then through the output step);
        ``clipped`` receives this member's count of clipped predictions when there are any."""
        out = self.models[0].predict(X)
        for m in self.models[1:]:
            out = out + m.predict(X)
        out = out / len(self.models)
        if self.output is not None:
            out, n = self.output.apply_counted(out)
            if n and clipped is not None:
                clipped[self.name] = n
        return out


class Predictor:
    """Predicts with the chosen ensemble; see the module docstring for the on-disk format."""

    def __init__(
        self,
        *,
        target: str,
        problem_type: ProblemType,
        classes: list[Any] | None,
        metric: str,
        schema: InputSchema,
        preprocessors: dict[str, Preprocessor],
        members: list[Member],
        task: Task,
        info: dict[str, Any] | None = None,
        stack_layers: list[list[Member]] | None = None,
        stack_uses_features: bool = False,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        """``members``: the last layer, combined with their weights. ``stack_layers``: earlier
        layers (layer 1 first) whose members' predictions feed the next layer (``stack`` recipe),
        with the tree features too when ``stack_uses_features``. ``calibration``: applied last."""
        self.target = target
        self.problem_type = problem_type
        self.classes = classes
        self.metric = metric
        self.schema = schema
        self.preprocessors = preprocessors
        self.members = [m for m in members if m.weight > 0]
        self.stack_layers = stack_layers or []
        self.stack_uses_features = stack_uses_features
        self.calibration = calibration
        self.task = task
        self.info = dict(info or {})
        self.info.setdefault("model_version", uuid.uuid4().hex[:12])
        self.info.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.path: Path | None = None
        #: versions of Python and the libraries that wrote this Predictor (None: not saved yet)
        self.versions: dict[str, str] | None = None
        self._fast: Any = None  # the compiled predict path, built at the first prediction

    @property
    def model_version(self) -> str:
        return self.info["model_version"]

    # -- prediction -----------------------------------------------------------------------------
    def predict_raw(self, data: Rows) -> tuple[np.ndarray, ValidationReport]:
        """Standardised predictions (probabilities or values) and the input validation report.

        ``data``: a DataFrame, or a mapping of column name -> sequence of values (one per row),
        which skips building a DataFrame. Validation and preprocessing run on arrays compiled from
        the schema and preprocessing state (:mod:`automl.fastpath`); the results equal those of
        the DataFrame path, :func:`automl.inference.reference_predict_raw`.
        """
        return self._fast_path().predict_raw(self, data)

    def _fast_path(self) -> Any:
        from automl.fastpath import compile_predict_path, plan_key

        fast = getattr(self, "_fast", None)  # (absent on a Predictor built without __init__)
        if fast is None or fast.key != plan_key(self):
            fast = self._fast = compile_predict_path(self)
        return fast

    def predict_proba(self, data: Rows) -> pd.DataFrame:
        if not self.problem_type.is_classification:
            raise SchemaError(
                "predict_proba is only defined for classification; use predict",
                [{"field": "problem_type", "message": self.problem_type.value}],
            )
        proba, _ = self.predict_raw(data)
        return pd.DataFrame(proba, index=row_index(data), columns=list(self.classes))

    def predict(self, data: Rows) -> pd.Series:
        raw, _ = self.predict_raw(data)
        return pd.Series(self.decode(raw), index=row_index(data), name=self.target)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        if self.problem_type.is_classification:
            return _label_array(self.classes)[np.asarray(raw).argmax(axis=1)]
        return np.asarray(raw, dtype=float)

    # -- persistence ----------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "problem_type": self.problem_type.value,
            "classes": self.classes,
            "metric": self.metric,
            "input_schema": self.schema.to_dict(),
            "task": self.task.to_dict(),
            "preprocessing": {r: layout.preprocessing_file(r) for r in self.preprocessors},
            "members": [_member_dict(m) for m in self.members],
            "stack_layers": [[_member_dict(m) for m in layer] for layer in self.stack_layers],
            "stack_uses_features": self.stack_uses_features,
            "calibration": self.calibration,
            "info": self.info,
            "versions": package_versions(),  # the libraries that write the files now
        }

    def save(self, path: str | Path, *, extra_files: dict[str, Path] | None = None) -> Path:
        """Write the artifact to ``path`` (created; an existing artifact there is replaced)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for sub in layout.PREDICTOR_DIRS:
            if (path / sub).exists():
                shutil.rmtree(path / sub)
        (path / layout.PREPROCESSING_DIR).mkdir()
        for r, p in self.preprocessors.items():
            (path / layout.preprocessing_file(r)).write_text(json.dumps(p.to_dict()))
        for m in [*(m for layer in self.stack_layers for m in layer), *self.members]:
            for i, model in enumerate(m.models):
                d = path / layout.model_dir(m.name, i)
                d.mkdir(parents=True)
                model.save(d)
        (path / layout.MANIFEST).write_text(json.dumps(self.manifest(), indent=1, default=_jsonable))
        for name, src in (extra_files or {}).items():
            if Path(src).resolve() != (path / name).resolve():
                shutil.copyfile(src, path / name)
        write_checksums(path)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        path = Path(path)
        if not (path / layout.MANIFEST).exists():
            raise IntegrityError(f"{str(path)!r} is not a saved model: it has no {layout.MANIFEST}")
        checksums = verify_checksums(path)
        man = json.loads((path / layout.MANIFEST).read_text())
        if man.get("format_version") != FORMAT_VERSION:
            raise IntegrityError(
                f"model format {man.get('format_version')!r} is not supported "
                f"(this version reads format {FORMAT_VERSION})"
            )
        task = Task.from_dict(man["task"])
        pres = {
            r: Preprocessor.from_dict(json.loads((path / f).read_text()))
            for r, f in man["preprocessing"].items()
        }

        def member(m: dict[str, Any]) -> Member:
            family = get_family(m["family"])
            models = [family.load(path / d, task) for d in m["models"]]
            output = m.get("output")
            return Member(
                m["name"],
                m["family"],
                m["recipe"],
                m["weight"],
                models,
                m.get("params", {}),
                m.get("refit", False),
                OutputStep.from_dict(output) if output else None,
            )

        pred = cls(
            target=man["target"],
            problem_type=ProblemType(man["problem_type"]),
            classes=man["classes"],
            metric=man["metric"],
            schema=InputSchema.from_dict(man["input_schema"]),
            preprocessors=pres,
            members=[member(m) for m in man["members"]],
            task=task,
            info=man.get("info"),
            stack_layers=[[member(m) for m in layer] for layer in man.get("stack_layers", [])],
            stack_uses_features=man.get("stack_uses_features", False),
            calibration=man.get("calibration"),
        )
        pred.path = path
        pred.versions = man.get("versions")
        warn_if_different(pred.versions, f"the model in {str(path)!r}")
        attach_compiled(pred, checksums)
        return pred

    def compile(self, opt_level: str = "O3") -> list[Any]:
        """Compile this saved Predictor's LightGBM and XGBoost models for large batches on this
        machine (``automl compile``; :mod:`automl.compiling`); one result per model file."""
        from automl.compiling import compile_predictor

        return compile_predictor(self, opt_level=opt_level)


def _member_dict(m: Member) -> dict[str, Any]:
    return {
        "name": m.name,
        "family": m.family,
        "recipe": m.recipe,
        "weight": float(m.weight),
        "params": m.params,
        "refit": m.refit,
        "models": [layout.model_dir(m.name, i) for i in range(len(m.models))],
        "output": m.output.to_dict() if m.output is not None else None,
    }


def load(path: str | Path) -> Predictor:
    """Load a saved Predictor (checksums verified first). Does not need Ray."""
    return Predictor.load(path)


# --- integrity ---------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(path: Path) -> None:
    sums = {str(f.relative_to(path)): sha256_file(f) for f in layout.predictor_files(path)}
    (path / layout.CHECKSUMS).write_text(json.dumps({"algorithm": "sha256", "files": sums}, indent=1))


def verify_checksums(path: Path) -> dict[str, str]:
    """Raise IntegrityError unless every recorded file exists with its recorded sha256, and no
    model or preprocessing file was added."""
    sums_file = path / layout.CHECKSUMS
    if not sums_file.exists():
        raise IntegrityError(
            f"{str(path)!r} has no {layout.CHECKSUMS}; refusing to load an unverifiable model"
        )
    recorded = json.loads(sums_file.read_text())["files"]
    bad = [
        name
        for name, digest in recorded.items()
        if not (path / name).is_file() or sha256_file(path / name) != digest
    ]
    present = [f.relative_to(path).as_posix() for f in layout.predictor_files(path)]
    added = [name for name in present if name not in recorded]
    if bad or added:
        detail = (f"changed or missing: {bad}" if bad else "") + (f" unexpected: {added}" if added else "")
        raise IntegrityError(
            f"model files in {str(path)!r} do not match {layout.CHECKSUMS} ({detail.strip()}); "
            "the artifact was modified after it was saved: refusing to load it"
        )
    return recorded


def ensure_fitted(obj: Any, attr: str, what: str) -> Any:
    value = getattr(obj, attr, None)
    if value is None:
        raise NotFittedError(f"this {what} is not fitted yet; call fit() with a table first")
    return value


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _label_array(classes: list[Any]) -> np.ndarray:
    """Class labels as an array of the target's own kind: integer classes (wine quality 3..9,
    cover types 1..7) come back as integers, so they compare equal to the user's labels;
    anything else stays an object array (no fixed-width string truncation)."""
    native = np.asarray(classes)
    return native if native.dtype.kind in "biuf" else np.asarray(classes, dtype=object)
