"""``lstmkit forecast``: forecast with a trained "forecast" run, beside the baselines, and plot it."""
from __future__ import annotations

import argparse
import math

DESCRIPTION = """Forecast with a run trained by `lstmkit train --task forecast ...`.

Without --data the run's own series is used and the forecast starts where its training part
ended, so the held-out actuals are shown and scored beside the naive, seasonal-naive and drift
baselines. With --data (a CSV with the same columns, or a shipped dataset name) the forecast
starts after the file's last row, or --holdout rows before it. --backtest forecasts from every
origin of the held-out part (rolling origin, no refit) and prints the mean metrics.

examples:
  lstmkit train --task forecast --data airline --horizon 36 --strategy recursive --lookback 24 \
      --log true --seasonal_diff 12 --hidden_size 16 --ensemble 3 --train.steps 900 --train.lr 0.005
  lstmkit forecast runs/forecast --plot airline.png
  lstmkit forecast runs/forecast --data new.csv --horizon 12 --plot next_year.png"""


def register(subparsers) -> None:
    p = subparsers.add_parser("forecast", help="forecast with a trained forecast run (+ baselines, plot)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                              allow_abbrev=False)
    p.add_argument("run_dir", metavar="RUN", help="run folder of a `forecast` task")
    p.add_argument("--data", help="CSV file or shipped dataset (default: the run's data)")
    p.add_argument("--horizon", type=int, default=0, help="steps to forecast (default: the run's horizon)")
    p.add_argument("--holdout", type=int, default=None,
                   help="start the forecast this many rows before the end (default: the run's holdout; 0 with --data)")
    p.add_argument("--plot", metavar="PNG", help="write history, forecast, interval and actuals to this PNG")
    p.add_argument("--last", type=int, default=0, help="plot only the last N values of history")
    p.add_argument("--backtest", action="store_true", help="rolling-origin scores over the held-out part")
    p.add_argument("--stride", type=int, default=1, help="steps between backtest origins [1]")
    p.add_argument("--conformal", action="store_true",
                   help="backtest: rescale each interval by the errors of the origins finished before it")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..apps.forecast import metrics as M
    from ..apps.forecast.data import resolve
    from ..apps.forecast.forecaster import LSTMForecaster
    from ..apps.forecast.task import ForecastTask, forecaster_config
    from ..apps.forecast.transforms import Preprocessor
    from . import CliError, load_run_of

    for name in ("horizon", "last", "stride"):
        if getattr(args, name) < 0:
            raise CliError(f"--{name} must be >= 0, got {getattr(args, name)}")
    cfg, task, model = load_run_of(args.run_dir, ForecastTask, "forecast", "forecast")
    c = task.cfg
    if args.data:
        series = resolve(args.data, task.series.target, date=c.date or None, covariates=c.covariates,
                         fill=c.fill, season=c.season or task.series.season)
    else:
        series = task.series
    holdout = args.holdout if args.holdout is not None else (0 if args.data else task.holdout)
    if not 0 <= holdout < len(series):
        raise CliError(f"--holdout must be in [0, {len(series) - 1}], got {holdout}")
    H = args.horizon or c.horizon
    if c.strategy == "direct" and H > c.horizon:
        raise CliError(f"this direct model forecasts at most {c.horizon} steps; got --horizon {H}")
    pre = Preprocessor(log=c.log, detrend=c.detrend, seasonal_diff=c.seasonal_diff, diff=c.diff, scale=c.scale)
    pre.load_array(model.scaler.numpy())  # the statistics of the run's training part
    origin = len(series) - holdout
    f = LSTMForecaster(forecaster_config(c)).attach(model, pre, series.head(origin))

    if args.backtest:
        if holdout < H:
            raise CliError(f"--backtest needs a held-out part of at least the horizon ({H}); it has {holdout}")
        r = f.backtest(series, start=origin, horizon=H, stride=max(1, args.stride), fit=False,
                       conformal=args.conformal)
        print(r.table(f"{series.target}: {len(r.folds)} origins from {origin}, horizon {H} (means over origins"
                      + (", conformal intervals)" if args.conformal else ")")))
        return 0

    hist = series.head(origin)
    fc = f.predict(H, hist)
    actual = series.y[origin:origin + H]
    print(f"{'date':<12} {'forecast':>10} {'lower':>10} {'upper':>10}" + (f" {'actual':>10}" if len(actual) else ""))
    for k in range(H):
        t = fc.index[k]
        t = t.date() if hasattr(t, "date") else t
        cells = [fc.mean[k], *((fc.lower[k], fc.upper[k]) if fc.lower is not None else (math.nan, math.nan))]
        line = f"{str(t):<12} " + " ".join(f"{v:>10.4g}" for v in cells)
        if k < len(actual):
            line += f" {actual[k]:>10.4g}"
        print(line)
    base = M.baselines(hist.y, H, series.season)
    if len(actual):
        n = len(actual)
        rows = {"LSTM": M.score(actual, fc.mean[:n], hist.y, series.season,
                                None if fc.lower is None else fc.lower[:n], None if fc.upper is None else fc.upper[:n])}
        for name, b in base.items():
            rows[name] = M.score(actual, b[:n], hist.y, series.season)
        print(M.format_table(rows, f"\n{series.target}: {n} held-out steps from origin {origin}"))
    if args.plot:
        from ..apps.forecast.plot import plot_forecast

        plot_forecast(args.plot, hist, fc, actual, base, last=args.last)
        print(f"plot         {args.plot}")
    return 0
