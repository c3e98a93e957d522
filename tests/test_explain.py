"""Per-row contributions (tree SHAP): they add up to the model's margin for sampled rows, are
mapped back to the original input columns, average fold models and weight ensemble members.
Models are trained in-process (no Ray) on tiny seeded tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import trial_data

from automl.exceptions import ConfigError
from automl.models import all_families, get_family
from automl.predictor import Member, Predictor
from automl.preprocessing import Preprocessor
from automl.report import explain
from automl.report.contributions import column_owners
from automl.report.importance import (
    EXPLAIN_SECONDS,
    PDP_MIN_ROWS,
    PDP_ROWS,
    PERMUTATION_MIN_ROWS,
    partial_dependence,
    pdp_rows,
    permutation_importance,
    predict_seconds_per_row,
)
from automl.schema import ColumnSpec
from automl.training import train_candidate

TREE_FAMILIES = ["lightgbm", "xgboost"]
#: LightGBM's random-forest modes, when registered: their contributions are averaged over trees
FOREST_FAMILIES = [n for n in ("random_forest", "extra_trees") if n in all_families()]
PROBLEMS = ["binary", "multiclass", "regression"]
ROWS = 40  # rows explained per check


def _rich_frame(n: int = 240, seed: int = 3) -> pd.DataFrame:
    """Numbers (with gaps), a category, a date and free text: every kind of transformed feature."""
    rng = np.random.default_rng(seed)
    words = np.array(["red", "apple", "quick", "fox", "lazy", "dog", "blue", "sky", "tall", "tree"])
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], size=n),
            "when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, size=n), unit="D"),
            "t": [" ".join(rng.choice(words, size=5)) for _ in range(n)],
        }
    )
    df.loc[rng.random(n) < 0.1, "x1"] = np.nan
    signal = (
        np.nan_to_num(df["x1"])
        + (df["color"] == "red")
        + (df["when"].dt.month > 6)
        + df["t"].str.contains("fox")
    )
    df["label"] = 5 + 2 * signal + rng.normal(scale=0.2, size=n)
    return df


@pytest.fixture(scope="module")
def frames(binary_df, multiclass_df, regression_df):
    return {"binary": binary_df, "multiclass": multiclass_df, "regression": regression_df}


@pytest.fixture(scope="module")
def fitted(frames):
    """Per (family, problem): the fold models of the family's default config (3 folds)."""
    out = {}
    for problem, df in frames.items():
        data, pre, schema, prof = trial_data(df, "label", recipes=("tree",))
        for name in TREE_FAMILIES + FOREST_FAMILIES:
            family = get_family(name)
            res = train_candidate(family, family.portfolio(data.task)[0], data)
            out[(name, problem)] = (res, data, pre, schema, prof)
    return out


def _predictor(members: list[tuple[str, list, float]], data, pre, schema, prof) -> Predictor:
    """A Predictor of ``(family, fold models, weight)`` members."""
    return Predictor(
        target=prof.target,
        problem_type=prof.problem,
        classes=data.classes,
        metric=data.metric.name,
        schema=schema,
        preprocessors={"tree": pre["tree"]},
        members=[Member(f"m{i}", fam, "tree", w, models, {}) for i, (fam, models, w) in enumerate(members)],
        task=data.task,
    )


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["label"]).sample(ROWS, random_state=0)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", TREE_FAMILIES + FOREST_FAMILIES)
def test_shap_of_one_tree_model_sums_to_its_margin(fitted, frames, name, problem):
    res, data, pre, schema, prof = fitted[(name, problem)]
    pred = _predictor([(name, res.models[:1], 1.0)], data, pre, schema, prof)
    X = _rows(frames[problem])
    contrib = explain(pred, X)
    assert list(contrib.columns) == schema.names + ["bias"]
    assert contrib.index.equals(X.index)
    total = contrib.sum(axis=1).to_numpy()
    if problem == "regression":
        np.testing.assert_allclose(total, pred.predict(X).to_numpy(), rtol=1e-4, atol=1e-4)
    elif problem == "binary":
        p = pred.predict_proba(X).to_numpy()[:, 1]
        np.testing.assert_allclose(total, np.log(p / (1 - p)), rtol=1e-4, atol=1e-4)
        assert contrib.attrs["output"] == f"log-odds of class {pred.classes[1]!r}"
    else:
        # softmax margins are defined up to a per-row constant: compare differences between classes
        logp = np.log(pred.predict_proba(X).to_numpy())
        per_class = np.column_stack([explain(pred, X, class_label=c).sum(axis=1) for c in pred.classes])
        np.testing.assert_allclose(per_class - per_class[:, :1], logp - logp[:, :1], rtol=1e-4, atol=1e-4)
        # by default each row is explained toward its predicted class
        predicted = pred.predict(X).to_numpy()
        chosen = per_class[np.arange(len(X)), [pred.classes.index(c) for c in predicted]]
        np.testing.assert_allclose(total, chosen, rtol=1e-6, atol=1e-6)
    # the features that carry the signal get the largest contributions
    imp = contrib.drop(columns="bias").abs().mean()
    assert imp.idxmax() in ("x1", "x2", "color")
    assert imp["x1"] > imp["x3"]


@pytest.mark.parametrize("problem", ["binary", "regression"])
def test_fold_models_are_averaged_and_members_weighted(fitted, frames, problem):
    lgb, data, pre, schema, prof = fitted[("lightgbm", problem)]
    xgb = fitted[("xgboost", problem)][0]
    X = _rows(frames[problem])

    def single(fam, model):
        return explain(_predictor([(fam, [model], 1.0)], data, pre, schema, prof), X)

    bag = explain(_predictor([("lightgbm", lgb.models, 1.0)], data, pre, schema, prof), X)
    mean_of_folds = sum(single("lightgbm", m) for m in lgb.models) / len(lgb.models)
    pd.testing.assert_frame_equal(bag, mean_of_folds, check_exact=False, rtol=1e-6, atol=1e-9)
    ens_pred = _predictor(
        [("lightgbm", lgb.models, 0.7), ("xgboost", xgb.models, 0.3)], data, pre, schema, prof
    )
    ens = explain(ens_pred, X)
    xgb_bag = explain(_predictor([("xgboost", xgb.models, 1.0)], data, pre, schema, prof), X)
    pd.testing.assert_frame_equal(ens, 0.7 * bag + 0.3 * xgb_bag, check_exact=False, rtol=1e-5, atol=1e-6)
    if (
        problem == "regression"
    ):  # the ensemble averages member predictions: contributions add up to it exactly
        np.testing.assert_allclose(ens.sum(axis=1), ens_pred.predict(X), rtol=1e-4, atol=1e-3)


def test_transformed_features_map_back_to_their_columns():
    df = _rich_frame()
    data, pre, schema, prof = trial_data(df, "label", recipes=("tree", "linear"))
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"x1": "numeric", "color": "categorical", "when": "datetime", "t": "text"}
    for recipe in ("tree", "linear"):
        names = pre[recipe].transform(df.head(5)).names
        owners = dict(zip(names, column_owners(names, schema.names)))
        assert owners["when.year"] == "when" and owners["when.elapsed_days"] == "when"
        assert owners["t#h3"] == "t" and owners["x1"] == "x1"
        assert set(owners.values()) == set(schema.names)
    linear = pre["linear"].transform(df.head(5)).names
    assert column_owners(["color=red", "x1<missing>", "color=<rare>"], schema.names) == [
        "color",
        "x1",
        "color",
    ]
    assert "color=red" in linear
    # the longest column name wins when one name is a prefix of another
    assert column_owners(["a.b.year", "a.year", "a.b"], ["a", "a.b"]) == ["a.b", "a", "a.b"]
    with pytest.raises(ConfigError, match="zzz"):
        column_owners(["zzz"], ["a"])

    # a model on dates and text: contributions land on the original columns and sum to the prediction
    family = get_family("lightgbm")
    res = train_candidate(family, family.portfolio(data.task)[0], data)
    pred = _predictor([("lightgbm", res.models, 1.0)], data, pre, schema, prof)
    X = df.drop(columns=["label"]).head(ROWS)
    contrib = explain(pred, X)
    assert list(contrib.columns) == ["x1", "color", "when", "t", "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), pred.predict(X), rtol=1e-6, atol=1e-6)
    assert (contrib[["x1", "color", "when"]].abs().mean() > 0.05).all()


def test_non_tree_members_are_left_out_or_refused(fitted, frames):
    if "linear" not in all_families():
        pytest.skip("no linear family registered")
    lgb, data, pre, schema, prof = fitted[("lightgbm", "binary")]
    data_lin, pre_lin, _, _ = trial_data(frames["binary"], "label", recipes=("tree", "linear"))
    family = get_family("linear")
    lin = train_candidate(family, family.portfolio(data_lin.task)[0], data_lin)
    assert not hasattr(lin.models[0], "contributions")

    def predictor(members):
        return Predictor(
            target=prof.target,
            problem_type=prof.problem,
            classes=data.classes,
            metric=data.metric.name,
            schema=schema,
            preprocessors=pre_lin,
            task=data.task,
            members=[
                Member(f"m{i}", fam, get_family(fam).recipe, w, res.models, {})
                for i, (fam, res, w) in enumerate(members)
            ],
        )

    X = _rows(frames["binary"])
    with pytest.raises(ConfigError, match="tree model"):
        explain(predictor([("linear", lin, 1.0)]), X)
    mixed = explain(predictor([("lightgbm", lgb, 0.6), ("linear", lin, 0.4)]), X)
    assert mixed.attrs["coverage"] == pytest.approx(0.6) and mixed.attrs["members"] == ["m0"]
    alone = explain(predictor([("lightgbm", lgb, 1.0)]), X)
    pd.testing.assert_frame_equal(mixed, alone)  # the tree member's weight is renormalised to 1

    # such models are explained by permutation importance and partial dependence instead
    linear = predictor([("linear", lin, 1.0)])
    df = frames["binary"]
    pi = permutation_importance(linear, df.drop(columns=["label"]), data.y, data.metric, n_repeats=2)
    assert pi.columns == schema.names and pi.n_rows == len(df)
    imp = dict(zip(pi.columns, pi.mean))
    assert imp["x1"] > 0.05 and imp["x1"] > imp["x3"] + 0.03  # label = f(1.5 x1 - x2 + red); x3 is noise
    panel = partial_dependence(linear, df.drop(columns=["label"]), "x1", "numeric")
    curve = panel["curves"]["P(yes)"]
    assert len(panel["x"]) == len(curve) >= 10 and np.all(np.diff(curve) > 0)  # more x1, more "yes"
    levels = partial_dependence(linear, df.drop(columns=["label"]), "color", "categorical")
    assert levels["categorical"] and set(levels["x"]) == {"red", "green", "blue"}
    red = levels["curves"]["P(yes)"][levels["x"].index("red")]
    assert red == max(levels["curves"]["P(yes)"])

    # a slow model gets fewer rows, sized from its measured cost per row, never below the floors
    per_row = predict_seconds_per_row(linear, df.drop(columns=["label"]))
    assert 0 < per_row < 0.01
    slow = permutation_importance(
        linear,
        df.drop(columns=["label"]),
        data.y,
        data.metric,
        n_repeats=2,
        seconds_per_row=EXPLAIN_SECONDS / 100,
    )  # 100 predicted rows fit
    assert slow.n_rows == PERMUTATION_MIN_ROWS < len(df)
    assert pdp_rows(None, 4) == PDP_ROWS and pdp_rows(1e-6, 4) == PDP_ROWS
    assert pdp_rows(1.0, 4) == PDP_MIN_ROWS and PDP_MIN_ROWS < pdp_rows(EXPLAIN_SECONDS / 3000, 4) < PDP_ROWS


def test_class_label_is_checked(fitted, frames):
    res, data, pre, schema, prof = fitted[("lightgbm", "multiclass")]
    pred = _predictor([("lightgbm", res.models, 1.0)], data, pre, schema, prof)
    with pytest.raises(ConfigError, match="not a class"):
        explain(pred, _rows(frames["multiclass"]), class_label="nope")


def test_preprocessor_names_round_trip_through_plain_state():
    """Owners are computed from names the saved (JSON) preprocessing state reproduces."""
    df = _rich_frame(60)
    cols = [ColumnSpec("x1", "numeric", "float64", False), ColumnSpec("when", "datetime", "datetime64", True)]
    pre = Preprocessor("linear", cols).fit(df)
    again = Preprocessor.from_dict(pre.to_dict())
    names = again.transform(df.head(3)).names
    assert column_owners(names, ["x1", "when"]) == ["x1" if n.startswith("x1") else "when" for n in names]
