"""The MLP's NumPy pass for a few rows: PyTorch's eval-mode outputs, for every norm and problem."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import trial_data

from automl.models import get_family
from automl.models.mlp_model import input_tensors
from automl.models.mlp_rows import FEW_ROWS

FAMILY = get_family("mlp")


def _model(df, **overrides):
    data, *_ = trial_data(df, "label", recipes=("nn",), seed=0)
    config = {**FAMILY.portfolio(data.task)[0], **overrides}
    tr, va = data.folds[0]
    X = data.features["nn"]
    learner = FAMILY.learner(config, data.task, X.take(tr), data.y[tr], None, X.take(va), data.y[va])
    learner.step(3)
    return learner.finish(3), X


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
def test_a_few_rows_give_pytorchs_outputs(request, problem, norm):
    model, X = _model(request.getfixturevalue(f"{problem}_df"), norm=norm, depth=2)
    assert X.cat.shape[1] >= 1  # the rows go through an embedding too
    rows = X.take(np.arange(FEW_ROWS))
    torch_out = model._forward(input_tensors(rows), 1)
    few = model.predict(rows)
    assert model._numpy_net is not None  # the NumPy pass answered
    np.testing.assert_allclose(few, torch_out, rtol=1e-5, atol=1e-6)
    # the fast path's call (a ModelInput) takes the same pass: identical to predict
    from automl.models.base import ModelInput

    np.testing.assert_array_equal(model.predict_input(ModelInput(rows), 1), few)
    # one row more: PyTorch, exactly as before
    more = X.take(np.arange(FEW_ROWS + 1))
    np.testing.assert_array_equal(model.predict(more), model._forward(input_tensors(more), 1))


def test_batch_norm_uses_its_running_statistics(binary_df):
    model, X = _model(binary_df, norm="batch", depth=2)
    bn = next(m for m in model.module.body if type(m).__name__ == "BatchNorm1d")
    assert not np.allclose(bn.running_mean.numpy(), 0)  # training moved them: the check means something
    one = X.take(np.array([3]))
    torch_out = model._forward(input_tensors(one), 1)
    np.testing.assert_allclose(model.predict(one), torch_out, rtol=1e-5, atol=1e-6)


def test_a_model_that_used_its_numpy_pass_still_pickles(multiclass_df):
    model, X = _model(multiclass_df)
    rows = X.take(np.arange(3))
    before = model.predict(rows)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict(rows), before)
