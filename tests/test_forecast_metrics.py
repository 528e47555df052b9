"""Forecast metrics and baselines on hand-computed values."""
import math

import numpy as np
import pytest

from lstmkit.apps.forecast import metrics as M

Y = np.array([100.0, 200.0, 400.0])
F = np.array([110.0, 180.0, 400.0])


def test_mae_rmse():
    assert M.mae(Y, F) == pytest.approx((10 + 20 + 0) / 3)
    assert M.rmse(Y, F) == pytest.approx(math.sqrt((100 + 400 + 0) / 3))


def test_mape_smape():
    assert M.mape(Y, F) == pytest.approx(100 * (0.1 + 0.1 + 0) / 3)
    assert M.smape(Y, F) == pytest.approx(100 * (20 / 210 + 40 / 380 + 0) / 3)
    assert math.isnan(M.mape([0.0, 1.0], [1.0, 1.0]))  # undefined at a zero actual
    assert M.smape([0.0], [0.0]) == 0.0


def test_mase_uses_insample_seasonal_naive():
    train = np.array([1.0, 2.0, 4.0, 7.0])
    # lag 1: |1| + |2| + |3| = 6 / 3 = 2 ; lag 2: |3| + |5| = 8 / 2 = 4
    assert M.mase([10.0, 12.0], [11.0, 9.0], train, m=1) == pytest.approx(2.0 / 2)
    assert M.mase([10.0, 12.0], [11.0, 9.0], train, m=2) == pytest.approx(2.0 / 4)


def test_coverage():
    assert M.coverage([1, 2, 3, 4], [0, 2.5, 3, 0], [2, 3, 3, 3]) == pytest.approx(50.0)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        M.mae([1, 2], [1])


def test_baselines_by_hand():
    train = np.array([1.0, 3.0, 5.0, 2.0, 4.0, 6.0])
    np.testing.assert_array_equal(M.naive(train, 3), [6, 6, 6])
    np.testing.assert_array_equal(M.seasonal_naive(train, 5, 3), [2, 4, 6, 2, 4])
    np.testing.assert_allclose(M.drift(train, 2), [6 + 1, 6 + 2])  # slope (6 - 1) / 5
    b = M.baselines(train, 2, m=1)
    assert list(b) == ["naive", "drift"]  # no seasonal naive without a season


def test_format_table_lists_every_method():
    t = M.format_table({"LSTM": {"MAE": 1.5}, "naive": {"MAE": 2.0, "MAPE": math.nan}})
    assert "LSTM" in t and "naive" in t and "nan" in t
