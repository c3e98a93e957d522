"""The UBJSON reader and writer (automl.models.ubjson): XGBoost's own .ubj model read and written
back loads in XGBoost as the same model; values and typed arrays round-trip with their dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from automl.models import ubjson


def test_an_xgboost_model_read_and_written_back_is_the_same_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    X[:, 2] = rng.integers(0, 6, 300)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = rng.integers(0, 3, 300)
    dtrain = xgb.DMatrix(X, label=y, feature_types=["q", "q", "c"], enable_categorical=True)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3}, dtrain, 5)
    model = ubjson.loads(bytes(booster.save_raw("ubj")))
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    assert tree["split_conditions"].dtype == np.float32 and tree["left_children"].dtype == np.int32
    assert tree["default_left"].dtype == np.uint8 and tree["categories_segments"].dtype == np.int64
    copy = xgb.Booster()
    copy.load_model(bytearray(ubjson.dumps(model)))
    np.testing.assert_array_equal(copy.inplace_predict(X), booster.inplace_predict(X))
    assert copy.save_raw("json") == booster.save_raw("json")


def test_values_round_trip():
    value = {
        "text": "caf\u00e9",
        "n": -(2**40),
        "x": 0.25,
        "flags": [True, False],
        "nested": {"empty": [], "ints": [1, 2, 3]},
        "f32": np.array([1.5, -np.inf, np.inf], np.float32),
        "u8": np.array([0, 255], np.uint8),
        "i64": np.arange(3, dtype=np.int64),
    }
    back = ubjson.loads(ubjson.dumps(value))
    for key in ("text", "n", "x", "flags", "nested"):
        assert back[key] == value[key]
    for key in ("f32", "u8", "i64"):
        assert back[key].dtype == value[key].dtype
        np.testing.assert_array_equal(back[key], value[key])


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="no UBJSON form for object"):
        ubjson.dumps({"x": object()})
    with pytest.raises(ValueError, match="bytes after the value"):
        ubjson.loads(ubjson.dumps([1]) + b"}")
    with pytest.raises(ValueError, match="unknown marker"):
        ubjson.loads(b"?")
