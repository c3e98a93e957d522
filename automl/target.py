"""Regression targets: their shape, the transforms the search may train on, and the output step
of every regression member.

* **Shape.** A target whose skewness is at least ``SKEW_LIMIT`` or whose excess kurtosis is at
  least ``KURTOSIS_LIMIT`` (from the profile's target statistics) is skewed or heavy-tailed: the
  search then also tries a target transform (``log1p`` for a non-negative target, Yeo-Johnson
  otherwise) and robust objectives (Huber, Fair), as a choice of each trial (``target_transform``)
  decided by validation like any other parameter.
* **Scores in the original units.** A trial trains on the transformed target; its predictions are
  inverted before they are scored, so validation scores, out-of-fold predictions and ensembling
  are always in the target's own units.
* **Clipping.** Every regression member's predictions are clipped to the training target's range
  widened by ``CLIP_MARGIN`` of the range on each side (never below 0 for a non-negative target):
  under a random split a new row's target lies beyond the training extremes with probability of
  about 2/(n+1), so a 5 % margin leaves room for that rare case while stopping members (linear
  models, the MLP, distance-weighted k-NN) from extrapolating far beyond anything seen. A weighted
  ensemble of clipped members stays in the range too.

:class:`OutputStep` (inverse transform, then clip) is plain data stored with each member in
``predictor.json``: no pickle.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from automl.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: the config key of a trial's target transform (handled by training, not by the family)
TARGET_KEY = "target_transform"
TRANSFORMS = ("none", "log1p", "yeo-johnson")
#: settings of SearchConfig.target_transform (automl.config.TARGET_TRANSFORMS)
SETTINGS = ("auto", *TRANSFORMS)
#: |skewness| from which a target counts as skewed (a common rule of thumb for "highly skewed")
SKEW_LIMIT = 1.0
#: excess kurtosis from which a target counts as heavy-tailed (0 for a normal, 3 for a Laplace)
KURTOSIS_LIMIT = 3.0
#: share of the training target's range added on each side of the clip range
CLIP_MARGIN = 0.05


@dataclass(frozen=True)
class TargetTransform:
    """A monotone increasing map of the target; ``fit`` it on training targets, then ``forward``
    for training and ``inverse`` for predictions. Yeo-Johnson works on ``y / scale``."""

    name: str = "none"
    lmbda: float = 1.0
    scale: float = 1.0

    @classmethod
    def fit(cls, name: str, y: np.ndarray) -> TargetTransform:
        if name not in TRANSFORMS:
            raise ConfigError(f"target_transform must be one of {list(TRANSFORMS)}; got {name!r}")
        y = np.asarray(y, dtype=float)
        if name == "log1p" and len(y) and float(np.min(y)) < 0:
            raise ConfigError(
                f"target_transform='log1p' needs a non-negative target; its minimum is {np.min(y):g}: "
                "use 'yeo-johnson'"
            )
        if name == "yeo-johnson":
            from scipy import stats

            scale = float(np.std(y)) or 1.0
            return cls(name, float(stats.yeojohnson_normmax(y / scale)), scale)
        return cls(name)

    def forward(self, y: np.ndarray) -> np.ndarray:
        if self.name == "none":
            return y  # as given (class codes stay integers)
        y = np.asarray(y, dtype=float)
        if self.name == "log1p":
            return np.log1p(y)
        from scipy import stats

        return stats.yeojohnson(y / self.scale, lmbda=self.lmbda)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        if self.name == "log1p":
            return np.expm1(z)
        if self.name == "yeo-johnson":
            return _yeojohnson_inverse(z, self.lmbda) * self.scale
        return z

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetTransform:
        return cls(str(d["name"]), float(d.get("lmbda", 1.0)), float(d.get("scale", 1.0)))


def _yeojohnson_inverse(z: np.ndarray, lmbda: float) -> np.ndarray:
    """The inverse of scipy's Yeo-Johnson transform (scipy has none). Bases are kept >= 0, so a
    value beyond the transform's range maps to its edge instead of NaN."""
    out = np.empty_like(z)
    pos = z >= 0
    if abs(lmbda) < 1e-12:
        out[pos] = np.expm1(z[pos])
    else:
        out[pos] = np.power(np.maximum(z[pos] * lmbda + 1.0, 0.0), 1.0 / lmbda) - 1.0
    neg = ~pos
    if abs(lmbda - 2.0) < 1e-12:
        out[neg] = -np.expm1(-z[neg])
    else:
        out[neg] = 1.0 - np.power(np.maximum(-(2.0 - lmbda) * z[neg] + 1.0, 0.0), 1.0 / (2.0 - lmbda))
    return out


NONE = TargetTransform()


def clip_range(y: np.ndarray, margin: float = CLIP_MARGIN) -> tuple[float, float]:
    """The training target's [min, max] widened by ``margin`` of the range on each side; a
    non-negative target's lower bound stays >= 0 (a non-positive target's upper bound <= 0)."""
    y = np.asarray(y, dtype=float)
    lo, hi = float(np.min(y)), float(np.max(y))
    pad = margin * (hi - lo)
    low, high = lo - pad, hi + pad
    if lo >= 0:
        low = max(low, 0.0)
    if hi <= 0:
        high = min(high, 0.0)
    return low, high


@dataclass(frozen=True)
class OutputStep:
    """Applied to a regression member's output: invert the transform, then clip to [low, high]
    (``clip=False``: no clipping; the inverse is still bounded to the transform's range)."""

    transform: TargetTransform
    low: float
    high: float
    clip: bool = True

    def apply(self, z: np.ndarray) -> np.ndarray:
        return self.apply_counted(z)[0]

    def apply_counted(self, z: np.ndarray) -> tuple[np.ndarray, int]:
        """``(values in the target's units, number of predictions clipped)``."""
        z = np.asarray(z, dtype=float)
        n = 0
        if self.clip and self.transform.name != "none":
            # clip on the transformed scale first: the inverse cannot overflow, and the values
            # map exactly onto the bounds
            z_low, z_high = self._bounds()
            n = int(np.count_nonzero((z < z_low) | (z > z_high)))
            z = np.clip(z, z_low, z_high)
        y = self.transform.inverse(z)
        if self.clip:
            if self.transform.name == "none":
                n = int(np.count_nonzero((y < self.low) | (y > self.high)))
            y = np.clip(y, self.low, self.high)
        return y, n

    def _bounds(self) -> tuple[float, float]:
        low, high = self.transform.forward(np.array([self.low, self.high]))
        return float(low), float(high)

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.transform.to_dict(), "low": self.low, "high": self.high, "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputStep:
        return cls(TargetTransform.from_dict(d["transform"]), float(d["low"]), float(d["high"]), d["clip"])


@dataclass
class TargetPlan:
    """What the fit decided about a regression target: the transform offered besides ``none``
    (``None``: the target is left as is, and no robust objective is offered), whether members
    are clipped, the clip range of all training rows, and why."""

    offered: str | None
    reason: str
    clip: bool = True
    low: float = -math.inf
    high: float = math.inf
    margin: float = CLIP_MARGIN
    _fitted: dict[str, TargetTransform] = field(default_factory=dict, repr=False)
    _y: np.ndarray | None = field(default=None, repr=False)

    def transform(self, name: str) -> TargetTransform:
        """The transform ``name`` fitted on all training targets (Yeo-Johnson's one shape
        parameter is fitted once, not per fold)."""
        if name == "none":
            return NONE
        if name not in self._fitted:
            if self._y is None:
                raise ConfigError(f"target_transform {name!r} needs the training target")
            self._fitted[name] = TargetTransform.fit(name, self._y)
        return self._fitted[name]

    def output(self, name: str, y_train: np.ndarray | None = None) -> OutputStep:
        """The output step for transform ``name``: clipped to the range of ``y_train`` (a fold's
        training rows) or, without it, of all training rows (the deployed members)."""
        low, high = (self.low, self.high) if y_train is None else clip_range(y_train, self.margin)
        return OutputStep(self.transform(name), low, high, self.clip)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transform_offered": self.offered, "reason": self.reason, "clip": self.clip}
        if self.clip:
            out["clip_range"] = [self.low, self.high]
        if self.offered:
            out["robust_objectives"] = True
            fitted = self.transform(self.offered)
            if fitted.name == "yeo-johnson":
                out["yeo_johnson_lambda"] = fitted.lmbda
        return out


def target_shape(summary: dict[str, Any]) -> tuple[bool, str]:
    """Whether the profile's target statistics say skewed or heavy-tailed, and why."""
    skew, kurt = summary.get("skewness"), summary.get("excess_kurtosis")
    if skew is None or kurt is None:
        return False, "the target has no shape statistics"
    if abs(skew) >= SKEW_LIMIT:
        side = "right" if skew > 0 else "left"
        return True, f"{side}-skewed (skewness {skew:.2f}, |skewness| >= {SKEW_LIMIT:g})"
    if kurt >= KURTOSIS_LIMIT:
        return True, f"heavy-tailed (excess kurtosis {kurt:.2f} >= {KURTOSIS_LIMIT:g})"
    return False, f"neither skewed nor heavy-tailed (skewness {skew:.2f}, excess kurtosis {kurt:.2f})"


def plan_target(
    y: np.ndarray, summary: dict[str, Any], *, setting: str = "auto", clip: bool = True, name: str = "target"
) -> TargetPlan:
    """Decide the transform offered for a regression target (logged with its reason and the
    override) and the clip range of its members."""
    if setting not in SETTINGS:
        raise ConfigError(f"target_transform must be one of {list(SETTINGS)}; got {setting!r}")
    y = np.asarray(y, dtype=float)
    nonneg = bool(len(y)) and float(np.min(y)) >= 0
    default = "log1p" if nonneg else "yeo-johnson"
    if setting == "auto":
        shaped, why = target_shape(summary)
        offered = default if shaped else None
        reason = f"target {name!r} is {why}"
        override = (
            "SearchConfig(target_transform='none') turns this off"
            if shaped
            else (f"SearchConfig(target_transform='{default}') offers it anyway")
        )
    elif setting == "none":
        offered, reason, override = None, "target_transform='none' (set by the user)", ""
    else:
        offered, reason, override = setting, f"target_transform={setting!r} (set by the user)", ""
    if offered:
        reason += f": the search also tries {offered} of the target and robust objectives (Huber, Fair)"
    else:
        reason += ": trained on the target as it is"
    if override:
        reason += f"; {override}"
    low, high = clip_range(y) if clip and len(y) else (-math.inf, math.inf)
    plan = TargetPlan(offered, reason, clip, low, high, _y=y)
    if offered:
        plan.transform(offered)  # fails early (log1p of a negative target) and fits Yeo-Johnson once
    logger.info("%s", reason)
    if clip:
        logger.info(
            "regression members are clipped to [%.6g, %.6g] (the training target's range +%.0f%% on "
            "each side); EnsembleConfig(clip_predictions=False) lets them extrapolate",
            low,
            high,
            100 * CLIP_MARGIN,
        )
    else:
        logger.info("clip_predictions=False: regression members may extrapolate beyond the training target")
    return plan


def family_params(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config without the keys that training handles itself."""
    return {k: v for k, v in config.items() if k != TARGET_KEY}


def transform_name(config: dict[str, Any]) -> str:
    return str(config.get(TARGET_KEY, "none"))
