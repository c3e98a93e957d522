"""Prediction speed of two reference models built in-process (no Ray, no search) on adult:

- ``single``: one LightGBM booster trained on every row (what a refit member deploys);
- ``bagged``: a weighted ensemble like the demo model: LightGBM + 2 XGBoost configs, 5 fold
  models each (15 native models).

Usage::

    nice -n 19 python -m bench.predict_speed [--cache runs/predict-speed] [--calls 200]

The models are built once into ``--cache`` and reused. For each model it prints the
:func:`automl.inference.measure_latency` figures of the Predictor's predict path, and of the
DataFrame reference path (``--reference``) for a before/after comparison in the same conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from automl.inference import measure_latency
from automl.metrics import resolve_metric
from automl.models import Task, get_family
from automl.predictor import Member, Predictor
from automl.prepare import build_schema, encode_target
from automl.preprocessing import Preprocessor
from automl.profile import profile_table
from automl.splits import make_folds
from automl.training import TrialData, refit_full, train_candidate

DATA = Path(__file__).resolve().parent.parent / "data" / "adult.csv.gz"
TARGET = "class"


def _prepare(df: pd.DataFrame, n_folds: int) -> tuple[TrialData, dict[str, Preprocessor], object, object]:
    prof = profile_table(df, TARGET)
    schema = build_schema(prof, df)
    y, classes = encode_target(df[TARGET], prof)
    pre = {"tree": Preprocessor("tree", schema.columns).fit(df)}
    feats = {r: p.transform(df) for r, p in pre.items()}
    folds = make_folds(len(df), strategy="kfold", n_folds=n_folds, y=y, seed=0)
    task = Task(prof.problem, len(classes), len(df), len(schema.columns), seed=0, num_threads=2)
    metric, _ = resolve_metric(None, prof.problem)
    return TrialData(feats, y, None, folds.folds, task, metric, classes), pre, schema, prof


def _predictor(members: list[Member], data: TrialData, pre, schema, prof) -> Predictor:
    return Predictor(
        target=prof.target,
        problem_type=prof.problem,
        classes=data.classes,
        metric=data.metric.name,
        schema=schema,
        preprocessors=pre,
        members=members,
        task=data.task,
    )


def build(cache: Path) -> dict[str, Path]:
    """Build (once) and save the two reference models; return their directories."""
    paths = {"single": cache / "single", "bagged": cache / "bagged"}
    if all((p / "predictor.json").exists() for p in paths.values()):
        return paths
    df = pd.read_csv(DATA)
    data, pre, schema, prof = _prepare(df, n_folds=5)
    lgb, xgb = get_family("lightgbm"), get_family("xgboost")
    results = [
        ("lightgbm", lgb, lgb.portfolio(data.task)[0], 0.5),
        ("xgboost", xgb, xgb.portfolio(data.task)[0], 0.3),
        ("xgboost_2", xgb, xgb.portfolio(data.task)[1], 0.2),
    ]
    members = []
    for name, family, config, weight in results:
        res = train_candidate(family, config, data)
        print(f"{name}: score {res.score:.4f}, best iteration {res.best_iteration}", file=sys.stderr)
        members.append(Member(name, family.name, family.recipe, weight, res.models, config))
        if name == "lightgbm":
            iters = int(res.best_iteration * 1.25)  # the bag's best iteration, scaled to all rows
            single = refit_full(family, config, data, iters)
    _predictor(
        [Member("lightgbm_full", "lightgbm", "tree", 1.0, [single], {}, True)], data, pre, schema, prof
    ).save(paths["single"])
    _predictor(members, data, pre, schema, prof).save(paths["bagged"])
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="runs/predict-speed")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--reference", action="store_true", help="also time the DataFrame reference path")
    a = ap.parse_args(argv)
    paths = build(Path(a.cache))
    sample = pd.read_csv(DATA).drop(columns=[TARGET]).sample(1000, random_state=1)
    out = {}
    for name, path in paths.items():
        pred = Predictor.load(path)
        out[name] = measure_latency(pred, sample, calls=a.calls, batch_rows=a.batch_rows).to_dict()
        if a.reference:
            from automl.inference import reference_predict_raw

            out[name + "_reference"] = measure_latency(
                pred,
                sample,
                calls=a.calls,
                batch_rows=a.batch_rows,
                predict=lambda d, p=pred: reference_predict_raw(p, d),
            ).to_dict()
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out, indent=1, default=lambda o: float(np.asarray(o))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
