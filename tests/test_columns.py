"""The column probe: identifier-like and high-cardinality columns are kept (encoded) or dropped by
validation, and serving encodes them the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.config import FitSpec, SearchConfig, ValidationConfig
from automl.encoders import fit_target_step, fold_columns
from automl.models import get_family
from automl.predictor import Predictor
from automl.prepare import prepare
from automl.problem import ProblemType
from automl.training import train_candidate
from tests.helpers import predictor_from, trial_rows


def _ids_table(n_ids: int = 120, per_id: int = 6, *, signal: bool, seed: int = 0) -> pd.DataFrame:
    """Rows of recurring customers: ``customer_id`` repeats ``per_id`` times in random order; with
    ``signal`` every customer has an effect of its own (sd 2, next to a feature effect of sd 1)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.repeat(np.arange(1000, 1000 + n_ids), per_id))
    effect = rng.normal(scale=2.0, size=n_ids)
    x1, x2 = rng.normal(size=len(ids)), rng.uniform(-1, 1, size=len(ids))
    y = x1 + 0.5 * x2 + rng.normal(scale=0.3, size=len(ids))
    if signal:
        y = y + effect[ids - 1000]
    return pd.DataFrame({"customer_id": ids, "x1": x1, "x2": x2, "y": y})


def _prepare(df: pd.DataFrame, target: str = "y", **search) -> object:
    spec = FitSpec(
        target, validation=ValidationConfig(strategy="kfold", n_folds=3), search=SearchConfig(**search)
    )
    return prepare(spec, df, recipes=("tree", "linear"))


def test_an_identifier_with_a_per_id_effect_is_kept_target_encoded():
    prep = _prepare(_ids_table(signal=True))
    d = prep.column_decisions[0]
    assert (d.column, d.kind, d.default, d.choice) == ("customer_id", "identifier", "drop", "target")
    # the evidence: every treatment's score on the same folds; target encoding well ahead of dropping
    assert set(d.scores) == {"drop", "target", "number", "frequency"} and len(d.fold_scores["target"]) == 3
    assert d.scores["target"] < 0.8 * d.scores["drop"]
    assert "target chosen over drop" in d.reason
    # the profile keeps its warning and records the verdict; the column is an input again
    assert any(w.code == "identifier" and w.columns == ["customer_id"] for w in prep.profile.warnings)
    cp = prep.profile.column("customer_id")
    assert cp.role == "feature" and cp.decision["choice"] == "target"
    spec = next(c for c in prep.schema.columns if c.name == "customer_id")
    assert (spec.kind, spec.encoding, spec.categories) == ("categorical", "target", None)
    assert prep.decisions()["columns"]["customer_id"]["scores"] == d.scores
    # every recipe sees the encoding as a number column
    for X in prep.data.features.values():
        assert "customer_id#te" in X.num_names


def test_an_identifier_that_is_pure_noise_is_dropped():
    prep = _prepare(_ids_table(signal=False))
    d = prep.column_decisions[0]
    assert d.choice == "drop" and len(d.scores) == 4
    assert "customer_id" not in prep.schema.names
    assert prep.profile.column("customer_id").role == "dropped"
    assert prep.data.fold_columns is None


def test_unique_identifiers_are_dropped_without_a_probe():
    df = _ids_table(signal=True)
    df["order_id"] = np.random.default_rng(1).permutation(len(df)) + 10_000
    prep = _prepare(df, column_probe=True)
    assert [d.column for d in prep.column_decisions] == ["customer_id"]
    assert "order_id" not in prep.schema.names and "order_id" in prep.schema.id_columns


def test_probe_off_keeps_the_profile_rule():
    prep = _prepare(_ids_table(signal=True), column_probe=False)
    assert prep.column_decisions == [] and "customer_id" not in prep.schema.names


def test_a_high_cardinality_categorical_with_rare_levels_is_target_encoded():
    """400 levels of 3 rows each: the tree recipe lumps them all into 'rare' (fewer than 5 rows),
    although every level has an effect; target encoding keeps it."""
    rng = np.random.default_rng(3)
    n_levels, per = 400, 3
    shop = rng.permutation(np.repeat([f"shop {i}" for i in range(n_levels)], per))
    effect = dict(zip([f"shop {i}" for i in range(n_levels)], rng.normal(scale=2.0, size=n_levels)))
    x1 = rng.normal(size=len(shop))
    df = pd.DataFrame({"shop": shop, "x1": x1, "y": x1 + shop_effect(shop, effect)})
    prep = _prepare(df)
    assert prep.profile.column("shop").kind == "categorical"
    d = prep.column_decisions[0]
    assert (d.column, d.default, d.choice) == ("shop", "levels", "target")
    spec = next(c for c in prep.schema.columns if c.name == "shop")
    assert spec.encoding == "target" and spec.categories  # levels still listed for unknown-level reports
    assert prep.data.features["tree"].cat_names == []  # no codes left: the encoding replaced them


def shop_effect(shop: np.ndarray, effect: dict[str, float]) -> np.ndarray:
    return np.array([effect[s] for s in shop])


def test_fold_encodings_never_see_their_own_validation_labels():
    """Validation rows of fold k are encoded by an encoder fitted on fold k's training rows only:
    changing the labels of fold k's validation rows leaves their encodings unchanged."""
    df = _ids_table(signal=True)
    y = df["y"].to_numpy()
    folds = [(np.arange(300, 720), np.arange(0, 300)), (np.arange(0, 420), np.arange(420, 720))]
    _, _, before = fold_columns(df, ["customer_id"], y, folds, ProblemType.REGRESSION, None)
    y2 = y.copy()
    y2[folds[0][1]] += 100.0
    _, _, after = fold_columns(df, ["customer_id"], y2, folds, ProblemType.REGRESSION, None)
    va = folds[0][1]
    np.testing.assert_array_equal(before[0][va], after[0][va])
    assert not np.allclose(before[1][folds[1][0]], after[1][folds[1][0]])  # fold 1 trains on them


def test_serving_encodes_like_training_and_handles_unseen_ids(tmp_path):
    df = _ids_table(signal=True)
    prep = _prepare(df)
    data, pre = prep.data, prep.preprocessors
    lgb = get_family("lightgbm")
    res = train_candidate(lgb, {**lgb.portfolio(data.task)[0], "n_estimators": 200}, data)
    pred = predictor_from(res, data, pre, prep.schema, prep.profile)
    pred.save(tmp_path / "m")
    loaded = Predictor.load(tmp_path / "m")
    rows = df.drop(columns=["y"]).head(50)
    np.testing.assert_array_equal(pred.predict(rows).to_numpy(), loaded.predict(rows).to_numpy())
    # the saved step is plain data: the full-table encoding of every known id, the prior for others
    step = next(s for s in loaded.preprocessors["tree"].steps_ if s["name"] == "customer_id")
    assert step["type"] == "target_encoding" and len(step["levels"]) == 120
    full = fit_target_step("customer_id", df["customer_id"], df["y"].to_numpy(), ProblemType.REGRESSION, None)
    assert step["values"] == full["values"]
    X = loaded.preprocessors["tree"].transform(rows)
    col = X.num_names.index("customer_id#te")
    lookup = dict(zip(step["levels"], step["values"][0]))
    np.testing.assert_allclose(X.num[:, col], [lookup[str(v)] for v in rows["customer_id"]], rtol=1e-6)
    # unseen ids (and a missing one) are predicted, encoded as the prior
    new = rows.head(3).assign(customer_id=[5, 99_999, None])
    out = loaded.predict(new)
    assert np.isfinite(out).all()
    Xn = loaded.preprocessors["tree"].transform(new)
    np.testing.assert_allclose(Xn.num[:, col], step["prior"][0], rtol=1e-6)
    # the compiled predict path encodes like the DataFrame path, for a frame and a column mapping,
    # known, unseen and missing ids alike (and a linear recipe's scaled encoding too)
    from automl.fastpath import FastPath
    from automl.inference import reference_predict_raw

    assert isinstance(loaded._fast_path(), FastPath)
    both = pd.concat([rows, new], ignore_index=True)
    want, _ = reference_predict_raw(loaded, both)
    np.testing.assert_allclose(loaded.predict_raw(both)[0], want, rtol=1e-9)
    np.testing.assert_allclose(loaded.predict_raw(both.to_dict("list"))[0], want, rtol=1e-9)
    lin = get_family("linear")
    res_lin = train_candidate(lin, lin.portfolio(data.task)[0], data)
    scaled = predictor_from(res_lin, data, pre, prep.schema, prep.profile)
    np.testing.assert_allclose(scaled.predict_raw(both)[0], reference_predict_raw(scaled, both)[0], rtol=1e-9)
    # the encoding carries the per-id effect: predictions of known ids track their mean target
    means = df.groupby("customer_id")["y"].mean()
    got = loaded.predict(df.drop(columns=["y"]))
    assert np.corrcoef(got.groupby(df["customer_id"]).mean(), means)[0, 1] > 0.9


@pytest.mark.parametrize("problem", ["binary", "multiclass"])
def test_classification_targets_are_encoded_per_class(problem):
    df = _ids_table(signal=True, seed=4)
    cut = [-np.inf, 0.0, np.inf] if problem == "binary" else [-np.inf, -1.0, 1.0, np.inf]
    df["y"] = pd.cut(df["y"], cut, labels=["a", "b", "c"][: len(cut) - 1]).astype(str)
    prep = _prepare(df)
    d = prep.column_decisions[0]
    assert d.choice == "target"
    names = [n for n in prep.data.features["tree"].num_names if n.startswith("customer_id#")]
    assert names == (
        ["customer_id#te"]
        if problem == "binary"
        else ["customer_id#te=a", "customer_id#te=b", "customer_id#te=c"]
    )


@pytest.mark.ray
@pytest.mark.slow
def test_a_fit_records_its_column_and_target_decisions(ray_session, tmp_path):
    """Through the whole fit: recurring customers with a per-customer effect and a skewed price.
    The probe keeps the id (target-encoded), the search tries log1p, and run.json, the report,
    predictor.json and predictions (unseen ids, the clip range) all agree."""
    import json

    from automl import AutoML

    df = _ids_table(signal=True, seed=7)
    df["y"] = np.exp(3.0 + 0.5 * df["y"])  # a skewed, positive target
    run = AutoML(
        target="y",
        search=SearchConfig(max_trials=3, families=("lightgbm", "linear")),
        validation=ValidationConfig(strategy="kfold", n_folds=3),
        output_dir=tmp_path / "run",
        seed=0,
    ).fit(df.iloc[:600])
    decisions = run.run_info_["decisions"]
    col = decisions["columns"]["customer_id"]
    assert col["choice"] == "target" and col["scores"]["target"] < col["scores"]["drop"]
    target = decisions["target"]
    assert target["transform_offered"] == "log1p" and "right-skewed" in target["reason"]
    low, high = target["clip_range"]
    board = trial_rows(run.leaderboard())
    params = board.query("family == 'lightgbm'")["params"].map(json.loads)
    assert sorted(p["target_transform"] for p in params) == ["log1p", "none"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="column_decisions"' in html and "right-skewed" in html
    manifest = json.loads((tmp_path / "run" / "predictor.json").read_text())
    assert all(m["output"]["high"] == high for m in manifest["members"])
    assert manifest["info"]["target"]["clip_range"] == [low, high]
    # a loaded model takes the id as an input: known ids, unseen ids, and far-out rows
    from automl import load

    model = load(tmp_path / "run")
    rows = (
        df.iloc[600:]
        .drop(columns=["y"])
        .assign(customer_id=lambda d: d["customer_id"].where(d.index % 2 == 0, 1))
    )
    rows.loc[rows.index[0], "x1"] = 1e4
    out = model.predict(rows)
    assert np.isfinite(out).all() and out.min() >= low and out.max() <= high
