import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from automl.exceptions import ConfigError, DataError
from automl.metrics import METRICS, binary_auc, custom_metric, resolve_metric
from automl.problem import ProblemType, infer_problem_type


@pytest.mark.parametrize(
    "values, expected",
    [
        (["a", "b", "a"], ProblemType.BINARY),
        ([0, 1, 1, 0], ProblemType.BINARY),
        (["x", "y", "z", "x"], ProblemType.MULTICLASS),
        ([1, 2, 3, 1, 2, 3] * 30, ProblemType.MULTICLASS),
        (list(np.linspace(0, 1, 200)), ProblemType.REGRESSION),
        (list(range(200)), ProblemType.REGRESSION),
    ],
)
def test_infer_problem_type(values, expected):
    ptype, reason = infer_problem_type(pd.Series(values, name="t"))
    assert ptype is expected
    assert reason  # every inference comes with its reason


def test_single_valued_target_is_an_error_naming_the_column():
    with pytest.raises(DataError, match=r"target column 'y' has 1 distinct value"):
        infer_problem_type(pd.Series([3, 3, 3], name="y"))


def test_default_metrics_and_unknown_metric():
    assert resolve_metric(None, ProblemType.BINARY)[0].name == "roc_auc"
    assert resolve_metric(None, ProblemType.MULTICLASS)[0].name == "accuracy"
    assert resolve_metric(None, ProblemType.REGRESSION)[0].name == "rmse"
    with pytest.raises(ConfigError, match=r"unknown metric 'acuracy'; choose one of \["):
        resolve_metric("acuracy", ProblemType.BINARY)
    with pytest.raises(ConfigError, match="does not apply to a regression problem"):
        resolve_metric("roc_auc", ProblemType.REGRESSION)


def test_fast_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.random(2000) + 0.3 * y, 2)  # many ties
    assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_metric_objective_flips_losses():
    rmse = METRICS["rmse"]
    assert rmse.objective(2.0) == -2.0 and rmse.from_objective(-2.0) == 2.0
    y = np.array([0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert METRICS["accuracy"].score(y, proba) == pytest.approx(2 / 3)


def test_custom_metric_sees_original_labels():
    seen = {}

    def my_acc(y_true, y_pred):
        seen["labels"] = set(y_true)
        return float(np.mean(y_true == y_pred))

    m = custom_metric("my_acc", my_acc, greater_is_better=True).with_classes(["no", "yes"])
    score = m.score(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]))
    assert score == 1.0 and seen["labels"] == {"no", "yes"}
