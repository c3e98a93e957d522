"""Drift monitoring: compare served (captured) inputs and predictions with the training baseline.

    from automl.monitor import MonitorConfig, monitor
    result = monitor("runs/adult", "capture/", MonitorConfig(psi_threshold=0.2, p_value=0.01))
    result.drifted_features          # ['age']
    result.write("monitoring/")      # violations.json + report.md

The baseline is the model's ``profile.json`` (per-feature bins, samples, level shares, missing
shares) and, for predictions, the chosen model's out-of-fold predictions in
``validation_sample.parquet``. See :mod:`automl.monitor.drift` for the statistics.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from automl import layout
from automl.baseline import prediction_baseline
from automl.exceptions import DataError
from automl.monitor.drift import MonitorConfig, compare, drifted
from automl.monitor.inputs import Observations, read_observations
from automl.monitor.report import render
from automl.predictor import verify_checksums
from automl.profile import DataProfile

logger = logging.getLogger(__name__)


@dataclass
class MonitorResult:
    model: str
    capture: str
    config: MonitorConfig
    n_rows: int
    baseline_rows: int
    features: dict[str, dict[str, Any]]
    prediction: dict[str, dict[str, Any]]
    violations: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    n_requests: int | None = None
    model_versions: dict[str, int] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        return [c for c, r in self.features.items() if r.get("drift")]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "violations",
            "model": self.model,
            "capture": self.capture,
            "n_rows": self.n_rows,
            "n_requests": self.n_requests,
            "model_versions": self.model_versions,
            "baseline_rows": self.baseline_rows,
            "thresholds": self.config.to_dict(),
            "drifted_features": self.drifted_features,
            "violations": self.violations,
            "features": self.features,
            "prediction": self.prediction,
            "extra_columns": self.extra_columns,
            "notes": self.notes,
        }

    def report(self) -> str:
        return render(self)

    def write(self, output_dir: str | Path) -> tuple[Path, Path]:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        vj, rep = out / "violations.json", out / "report.md"
        vj.write_text(json.dumps(self.to_dict(), indent=1, default=str))
        rep.write_text(self.report())
        return vj, rep


def _violation(kind: str, column: str, message: str, **values: Any) -> dict[str, Any]:
    return {"kind": kind, "feature": column, "message": message, **values}


def _drift_message(col: str, r: dict[str, Any], cfg: MonitorConfig) -> str:
    return (
        f"{col}: distribution changed (PSI {r['psi']:.3f} >= {cfg.psi_threshold}, {r['test']} p-value "
        f"{r['p_value']:.3g} < {cfg.p_value})"
    )


def _check_feature(
    col: str,
    base: dict[str, Any] | None,
    con: dict[str, Any],
    obs: pd.DataFrame,
    cfg: MonitorConfig,
    violations: list[dict[str, Any]],
    n_baseline: int,
) -> dict[str, Any]:
    if col not in obs.columns:
        violations.append(
            _violation("missing_column", col, f"{col}: column is absent from every captured row")
        )
        return {"present": False}
    s = obs[col]
    base_missing = float(con.get("missing_share") or 0.0)
    missing = float(s.isna().mean())
    res: dict[str, Any] = {"present": True, "missing_share_baseline": base_missing, "missing_share": missing}
    if abs(missing - base_missing) > cfg.missing_share_delta:
        violations.append(
            _violation(
                "missing_share",
                col,
                f"{col}: missing share {missing:.3f} vs {base_missing:.3f} "
                f"in training (change > {cfg.missing_share_delta})",
                baseline=base_missing,
                current=missing,
            )
        )
    if con.get("kind") == "numeric":
        bad = pd.to_numeric(s, errors="coerce").isna() & s.notna()
        if bad.any():
            violations.append(
                _violation(
                    "type_mismatch",
                    col,
                    f"{col}: {int(bad.sum())} value(s) are not numbers, e.g. {s[bad].iloc[0]!r}",
                    count=int(bad.sum()),
                )
            )
    if base is None:
        return res
    res.update(
        compare(
            base, s, known_levels_complete=bool(con.get("known_levels_complete", True)), n_rows=n_baseline
        )
    )
    res["drift"] = drifted(res, cfg)
    if res["drift"]:
        violations.append(
            _violation(
                "drift",
                col,
                _drift_message(col, res, cfg),
                psi=res["psi"],
                p_value=res["p_value"],
                test=res["test"],
            )
        )
    share, expected = res.get("new_category_share") or 0.0, res.get("expected_unseen_share") or 0.0
    if share - expected > cfg.new_category_share:
        violations.append(
            _violation(
                "new_categories",
                col,
                f"{col}: {share:.1%} of rows hold categories unseen in "
                f"training (expected {expected:.1%}): {list(res['new_categories'])[:5]}",
                share=share,
                expected=expected,
                categories=res["new_categories"],
            )
        )
    return res


def _predictions(model_dir: Path, obs: Observations, notes: list[str]) -> pd.DataFrame | None:
    if obs.predictions is not None and obs.predictions.notna().any().any():
        return obs.predictions
    from automl.exceptions import AutoMLError
    from automl.predictor import Predictor

    try:
        pred = Predictor.load(model_dir)
        raw, _ = pred.predict_raw(obs.features)
    except AutoMLError as exc:
        notes.append(f"predictions were not captured and could not be recomputed: {exc}")
        return None
    notes.append("predictions were not captured: recomputed with the model")
    if pred.classes is None:
        return pd.DataFrame({"value": raw})
    labels = [str(c) for c in pred.decode(raw)]
    out = pd.DataFrame({"label": labels})
    if len(pred.classes) == 2:
        out["score"] = raw[:, 1]
    return out


def _check_predictions(
    model_dir: Path,
    obs: Observations,
    classes: list[Any] | None,
    cfg: MonitorConfig,
    notes: list[str],
    violations: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    sample_path = model_dir / layout.VALIDATION_SAMPLE
    if not sample_path.is_file():
        notes.append("no validation_sample.parquet next to the model: prediction drift not checked")
        return {}
    baseline = prediction_baseline(pd.read_parquet(sample_path), classes)
    preds = _predictions(model_dir, obs, notes)
    out: dict[str, dict[str, Any]] = {}
    for key, base in baseline.items():
        if preds is None or key not in preds.columns or preds[key].isna().all():
            continue
        res = compare(base, preds[key])
        res["drift"] = drifted(res, cfg)
        out[key] = res
        if res["drift"]:
            violations.append(
                _violation(
                    "prediction_drift",
                    f"prediction.{key}",
                    _drift_message(f"prediction {key}", res, cfg),
                    psi=res["psi"],
                    p_value=res["p_value"],
                    test=res["test"],
                )
            )
    return out


def monitor(
    model: str | Path,
    capture: str | Path | pd.DataFrame,
    config: MonitorConfig | None = None,
    *,
    registry_root: str | None = None,
) -> MonitorResult:
    """Compare ``capture`` (capture directory, table file or DataFrame) with the baseline of
    ``model`` (a run or model directory, or ``registry://NAME[:VERSION]``)."""
    from automl.registry import resolve_model_uri

    cfg = config or MonitorConfig()
    model_dir = Path(resolve_model_uri(str(model), root=registry_root))
    if not (model_dir / layout.PROFILE).is_file():
        raise DataError(
            f"{str(model_dir)!r} has no profile.json (the training baseline); give a run directory, "
            "a saved model directory or registry://NAME"
        )
    manifest = model_dir / layout.MANIFEST
    if manifest.is_file():
        # the baselines (profile, validation sample) are Predictor files: a changed one is refused
        verify_checksums(model_dir)
    profile = DataProfile.load(model_dir / layout.PROFILE)
    baseline = profile.baseline or {}
    classes = json.loads(manifest.read_text()).get("classes") if manifest.is_file() else None
    obs = read_observations(capture, classes=classes)
    notes: list[str] = []
    if len(obs.features) < cfg.min_rows:
        notes.append(
            f"only {len(obs.features)} rows (< min_rows {cfg.min_rows}): drift tests are reported but "
            "not flagged"
        )
    if len(obs.model_versions) > 1:
        notes.append(f"the capture mixes model versions {obs.model_versions}")
    violations: list[dict[str, Any]] = []
    n_baseline = int(baseline.get("n_rows") or profile.n_rows)
    features = {
        col: _check_feature(
            col, baseline.get("features", {}).get(col), con, obs.features, cfg, violations, n_baseline
        )
        for col, con in baseline.get("constraints", {}).items()
    }
    known = set(features) | {profile.target} | {c.name for c in profile.columns}
    extra = [c for c in obs.features.columns if c not in known]
    prediction = (
        _check_predictions(model_dir, obs, classes, cfg, notes, violations) if cfg.check_predictions else {}
    )
    result = MonitorResult(
        str(model),
        str(capture) if not isinstance(capture, pd.DataFrame) else "<DataFrame>",
        cfg,
        len(obs.features),
        n_baseline,
        features,
        prediction,
        violations,
        notes,
        extra,
        obs.n_requests,
        obs.model_versions,
    )
    logger.info(
        "monitor: %d rows, %d violation(s), drifted features %s",
        result.n_rows,
        len(violations),
        result.drifted_features,
    )
    return result


__all__ = ["MonitorConfig", "MonitorResult", "monitor"]
