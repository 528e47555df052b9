"""Time-series forecasting with LSTMs, always printed beside naive, seasonal-naive and drift baselines.

    >>> import lstmkit.apps.forecast as fc
    >>> s = fc.load_dataset("airline")                     # or fc.read_series("my.csv", "col", date="day")
    >>> f = fc.LSTMForecaster(horizon=36, log=True, seasonal_diff=12, ensemble=3)
    >>> f.fit(s.head(108)).predict(36)                       # doctest: +SKIP
    >>> print(f.backtest(s, start=108, horizon=36).table())  # doctest: +SKIP

Files: data.py (CSV + shipped datasets), transforms.py (log / differencing / scaling fitted on
the training part), model.py (ensemble of lk.LSTM with Gaussian / quantile / MSE heads),
forecaster.py (windows, fit, predict, backtest), metrics.py (MAE … MASE, coverage, baselines),
plot.py, task.py (the "forecast" task of ``lstmkit train``).
"""
from . import metrics
from .data import DATASETS, DataError, Series, from_frame, load_dataset, read_series, resolve
from .forecaster import BacktestResult, FitConfig, Forecast, ForecasterConfig, LSTMForecaster, make_windows
from .model import ForecastNet
from .transforms import Preprocessor
from . import task  # noqa: E402  registers the "forecast" task

__all__ = ["BacktestResult", "DATASETS", "DataError", "FitConfig", "Forecast", "ForecastNet", "ForecasterConfig",
           "LSTMForecaster", "Preprocessor", "Series", "from_frame", "load_dataset", "make_windows", "metrics",
           "read_series", "resolve"]
