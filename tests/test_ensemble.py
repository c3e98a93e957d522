import numpy as np
import pytest

from automl.ensemble import combine, greedy_ensemble
from automl.metrics import METRICS


def test_errors_that_cancel_get_equal_weights_and_noise_gets_none():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    e = rng.normal(scale=0.5, size=500)
    a, b = y + e, y - e  # averaging a and b recovers y exactly
    c = y + rng.normal(scale=2.0, size=500)  # a worse, unrelated candidate
    res = greedy_ensemble([a, b, c], y, METRICS["rmse"], size=20)
    np.testing.assert_allclose(res.weights, [0.5, 0.5, 0.0])
    assert res.score == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(combine([a, b, c], res.weights), y)


def test_single_best_candidate_when_others_only_hurt():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    good = np.column_stack([1 - (0.8 * y + 0.1), 0.8 * y + 0.1])
    bad = np.full((400, 2), 0.5)
    res = greedy_ensemble([bad, good], y, METRICS["log_loss"], size=10)
    np.testing.assert_allclose(res.weights, [0.0, 1.0])


def test_mask_excludes_rows_without_out_of_fold_predictions():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    p = np.array([0.0, 1.0, 2.0, np.nan])
    res = greedy_ensemble([p], y, METRICS["rmse"], size=3, mask=np.array([True, True, True, False]))
    assert res.score == 0.0


def test_auto_refit_only_when_its_expected_cost_fits_before_the_deadline():
    import time
    from types import SimpleNamespace

    from automl.refit import REFIT_TIME_FACTOR, Refitter, refit_growth, row_scale

    # one holdout fold training on 80 of 100 rows: refit costs 0.8 x 100/80 = 1.0 x the fold's fit
    holdout = SimpleNamespace(y=np.zeros(100), folds=[(np.arange(80), np.arange(80, 100))])
    assert REFIT_TIME_FACTOR == 0.8 and refit_growth(holdout) == pytest.approx(1.0)
    assert row_scale(holdout) == pytest.approx(1.25)

    def cand(name: str, family: str, seconds: float) -> SimpleNamespace:
        return SimpleNamespace(name=name, result=SimpleNamespace(family=family, fit_time_s=seconds))

    lgbm, knn = cand("lightgbm_001", "lightgbm", 10.0), cand("knn_002", "knn", 10.0)
    late = Refitter(holdout, "auto")
    # boosting: 10 s x 1.0 x 1.25 more rounds = 12.5 s; a k-NN keeps its count: 10 s
    assert late.expected_s([lgbm]) == pytest.approx(12.5) and late.expected_s([knn]) == pytest.approx(10.0)
    assert late.affordable([lgbm], time.time() + 20)[0] is True
    ok, why = late.affordable([lgbm, knn], time.time() + 20)
    assert ok is False and "~22.5s" in why and "refit=True forces it" in why
    assert Refitter(holdout, True).affordable([lgbm, knn], time.time() + 1)[0] is True
    assert Refitter(holdout, "auto").affordable([lgbm, knn], None)[0] is True
    assert not Refitter(holdout, False).enabled
