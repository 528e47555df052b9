"""The forecaster: no leakage, horizon shapes, direct ≡ recursive at one step, exact inverse transforms."""
import numpy as np
import pytest
import torch

from lstmkit.apps.forecast import (DataError, ForecasterConfig, LSTMForecaster, Preprocessor, Series,
                                   make_windows)
from lstmkit.apps.forecast.task import ForecastTask, ForecastTaskConfig

FAST = dict(hidden_size=4, epochs=3, samples=50)


def seasonal(n=80, m=6, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 0.5 * t + 8 * np.sin(2 * np.pi * t / m) + rng.normal(0, 1, n)


def test_inverse_undoes_the_transform_exactly():
    y = seasonal(60, 6)
    pre = Preprocessor(log=True, seasonal_diff=6, diff=1).fit(y[:40])
    z, _ = pre.transform(y)  # transform of the whole series, training statistics
    z_future = z[40 - pre.lost:]  # the steps after the origin 40 (H = 20 > lag 6)
    np.testing.assert_allclose(pre.inverse(z_future, y[:40]), y[40:], rtol=1e-10)
    np.testing.assert_allclose(pre.inverse(np.stack([z_future] * 3), y[:40]), np.stack([y[40:]] * 3), rtol=1e-10)


def test_detrend_inverse_and_training_only_line():
    y = seasonal(60, 6)
    pre = Preprocessor(log=True, detrend=True, seasonal_diff=6).fit(y[:40])
    b, a = np.polyfit(np.arange(40), np.log(y[:40]), 1)
    assert pre.trend == pytest.approx((a, b))
    z, _ = pre.transform(y)
    np.testing.assert_allclose(pre.inverse(z[40 - pre.lost:], y[:40]), y[40:], rtol=1e-10)
    back = Preprocessor(log=True, detrend=True, seasonal_diff=6).load_array(pre.to_array())
    np.testing.assert_allclose(back.transform(y)[0], z)


def test_scaler_sees_only_the_training_part():
    y = seasonal(80)
    f = LSTMForecaster(horizon=4, lookback=8, **FAST)
    x, t = f.prepare(Series(y[:60]))
    assert f.pre.mean == pytest.approx(y[:60].mean()) and f.pre.std == pytest.approx(y[:60].std())
    assert len(x) == 60 - 8 - 4 + 1  # every window (inputs and targets) inside the 60 training values
    z = (y[:60] - y[:60].mean()) / y[:60].std()
    np.testing.assert_allclose(t[-1, :, 0], z[-4:], rtol=1e-5)


def test_task_holdout_does_not_leak(tmp_path):
    y = seasonal(80)
    paths = []
    for k, scale in enumerate((1.0, 10.0)):
        yy = y.copy()
        yy[-12:] *= scale  # change only the held-out values
        p = tmp_path / f"s{k}.csv"
        p.write_text("v\n" + "\n".join(f"{v:.6f}" for v in yy))
        paths.append(str(p))
    tasks = [ForecastTask(ForecastTaskConfig(data=p, target="v", horizon=4, lookback=8, holdout=12)) for p in paths]
    a, b = tasks
    assert a.n_train == 68
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    np.testing.assert_array_equal(a.forecaster.pre.to_array(), b.forecaster.pre.to_array())
    assert not np.array_equal(a.series.y, b.series.y)  # the files do differ (the test can fail)


def test_backtest_forecasts_see_only_their_past():
    y = seasonal(80)
    s1 = Series(y, season=6)
    y2 = y.copy()
    y2[68:] += 100.0  # changes everything from the second origin on
    s2 = Series(y2, season=6)
    kw = dict(horizon=4, lookback=8, **FAST)
    r1 = LSTMForecaster(**kw).backtest(s1, start=64, horizon=4, stride=4)
    r2 = LSTMForecaster(**kw).backtest(s2, start=64, horizon=4, stride=4)
    assert [f["origin"] for f in r1.folds] == [64, 68, 72, 76]
    for k in (0, 1):  # origins 64 and 68: history unchanged → identical forecasts
        np.testing.assert_array_equal(r1.folds[k]["forecast"].mean, r2.folds[k]["forecast"].mean)
    assert not np.allclose(r1.folds[2]["forecast"].mean, r2.folds[2]["forecast"].mean)
    summary = r1.summary()
    assert set(summary) == {"LSTM", "naive", "seasonal naive", "drift"}
    assert "coverage" in summary["LSTM"] and "MASE" in summary["drift"]


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
@pytest.mark.parametrize("loss", ["gaussian", "quantile", "mse"])
def test_horizon_shapes(strategy, loss):
    s = Series(seasonal(60), season=6)
    f = LSTMForecaster(horizon=5, lookback=6, strategy=strategy, loss=loss, ensemble=2, **FAST).fit(s)
    for H in (1, 3, 5):
        fc = f.predict(H)
        assert fc.mean.shape == (H,) and len(fc.index) == H and fc.index[0] == 60
        if loss == "mse":
            assert fc.lower is None
        else:
            assert fc.lower.shape == fc.upper.shape == (H,)
            assert np.all(fc.lower <= fc.upper)
    if strategy == "direct":
        with pytest.raises(ValueError, match="at most its horizon 5"):
            f.predict(6)
    else:
        assert f.predict(12).mean.shape == (12,)  # recursive: any horizon


def test_covariates_both_strategies():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    s = Series(seasonal(60), X, covariates=["a", "b"])
    for strategy in ("direct", "recursive"):
        f = LSTMForecaster(horizon=4, lookback=6, strategy=strategy, **FAST).fit(s)
        assert f.model.members[0].lstm.input_size == 3
        assert f.predict(4).mean.shape == (4,)
    with pytest.raises(ValueError, match="same covariates"):
        f.predict(4, Series(seasonal(60)))


def test_direct_and_recursive_agree_at_one_step():
    s = Series(seasonal(70), season=6)
    kw = dict(horizon=1, lookback=8, log=True, seasonal_diff=6, hidden_size=6, epochs=5, samples=64)
    d = LSTMForecaster(strategy="direct", **kw).fit(s)
    r = LSTMForecaster(strategy="recursive", **kw).fit(s)
    fd, fr = d.predict(1), r.predict(1)
    np.testing.assert_allclose(fd.mean, fr.mean, rtol=1e-6)
    np.testing.assert_allclose(fd.lower, fr.lower, rtol=1e-6)
    np.testing.assert_allclose(fd.upper, fr.upper, rtol=1e-6)
    # and the recursive model's first step does not depend on how far it is rolled
    np.testing.assert_allclose(r.predict(6).mean[0], fr.mean[0], rtol=1e-6)


def test_too_short_for_a_window():
    with pytest.raises(DataError, match="cannot make one window"):
        make_windows(np.zeros((10, 1)), 8, 4, "direct")


def test_config_checks():
    with pytest.raises(ValueError, match="strategy must be"):
        ForecasterConfig(strategy="sideways")
    with pytest.raises(ValueError, match="level must be in"):
        ForecasterConfig(level=1.5)


def test_ensemble_member_trains_as_it_would_alone():
    s = Series(seasonal(60), season=6)
    kw = dict(horizon=3, lookback=6, strategy="recursive", hidden_size=4, epochs=3, clip_norm=0.01)
    one = LSTMForecaster(ensemble=1, **kw).fit(s).model.members[0].state_dict()
    three = LSTMForecaster(ensemble=3, **kw).fit(s).model.members
    assert all(torch.equal(one[k], v) for k, v in three[0].state_dict().items())
    assert not torch.equal(three[0].head.weight, three[1].head.weight)  # members differ from each other


def test_task_with_covariates_evaluates_beside_baselines():
    cfg = ForecastTaskConfig(data="stocks", target="IBM", covariates=("MSFT",), horizon=3, lookback=6,
                             hidden_size=4, log=True, diff=1, strategy="recursive", holdout=6)
    task = ForecastTask(cfg)
    assert task.x.shape[1:] == (6, 2) and task.y.shape[1:] == (1, 2)  # recursive: both channels forecast
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        m = task.evaluate(model)
    for k in ("loss", "MAPE", "MASE", "coverage", "naive_MAPE", "seasonal_naive_MAPE", "drift_MAPE"):
        assert np.isfinite(m[k]), k
    # the naive baseline's MAPE over the 6 held-out months, by hand
    y = task.series.y
    assert m["naive_MAPE"] == pytest.approx(100 * np.mean(np.abs(y[-6:] - y[-7]) / y[-6:]))


def test_conformal_widening_by_hand():
    from lstmkit.apps.forecast.forecaster import Forecast, conformal_widen

    y = np.array([0, 0, 11.0, 14.0])
    past = Forecast([2, 3], np.array([10.0, 10.0]), np.array([8.0, 8.0]), np.array([12.0, 12.0]), level=0.5)
    # scores |y - mean| / half-width = [1/2, 4/2]; ceil(3 · 0.5) = 2nd smallest → factor 2
    new = Forecast([4, 5], np.array([20.0, 20.0]), np.array([19.0, 19.0]), np.array([22.0, 22.0]), level=0.5)
    out = conformal_widen(new, [{"origin": 2, "raw": past}], y, 2)
    np.testing.assert_allclose(out.lower, [18.0, 18.0])
    np.testing.assert_allclose(out.upper, [24.0, 24.0])
    assert out.raw is new and conformal_widen(new, [], y, 2) is new


def test_backtest_conformal_uses_only_finished_folds():
    s = Series(seasonal(80), season=6)
    kw = dict(horizon=4, lookback=8, **FAST)
    plain = LSTMForecaster(**kw).backtest(s, start=60, horizon=4, stride=2)
    conf = LSTMForecaster(**kw).backtest(s, start=60, horizon=4, stride=2, conformal=True)
    # origins 60, 62 have no fold finished before them (60 + 4 > 62): intervals unchanged
    for k in (0, 1):
        np.testing.assert_array_equal(plain.folds[k]["forecast"].lower, conf.folds[k]["forecast"].lower)
    assert not np.allclose(plain.folds[2]["forecast"].lower, conf.folds[2]["forecast"].lower)
    np.testing.assert_array_equal(plain.folds[2]["forecast"].mean, conf.folds[2]["forecast"].mean)
