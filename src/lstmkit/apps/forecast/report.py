"""Backtest tables for the shipped series: ``python -m lstmkit.apps.forecast.report [airline|stocks|sunspots]``.

Each recipe was chosen on a validation origin inside the training part (airline: fitted on
1949-1954, scored on 1955-1957), never on the test origins it is reported on. Every table
prints the LSTM beside the naive (random walk), seasonal-naive and drift baselines.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .data import load_dataset
from .forecaster import LSTMForecaster

# name -> (dataset, target, ForecasterConfig + FitConfig keywords, backtest keywords, note)
RECIPES = {
    "airline": ("airline", None,
                dict(strategy="recursive", lookback=24, log=True, seasonal_diff=12, hidden_size=16, epochs=300,
                     horizon=36, ensemble=3),
                dict(start=108, horizon=36),
                "last 36 months held out (1958-1960), one 36-step forecast; SARIMA(0,1,1)(0,1,1)12 on logs: 8.1 %"),
    "airline-val": ("airline", None,
                    dict(strategy="recursive", lookback=24, log=True, seasonal_diff=12, hidden_size=16, epochs=300,
                         horizon=36, ensemble=3),
                    dict(start=72, horizon=36),
                    "validation origin used to choose the recipe: fitted on 1949-1954, forecast 1955-1957"),
    "airline-direct": ("airline", None,
                       dict(strategy="direct", lookback=24, log=True, seasonal_diff=12, hidden_size=16, epochs=300,
                            horizon=36, ensemble=3),
                       dict(start=108, horizon=36),
                       "the same, direct strategy (36 outputs at once, from 37 training windows)"),
    "stocks": ("stocks", "AAPL",
               dict(strategy="recursive", lookback=12, log=True, diff=1, hidden_size=16, epochs=200, horizon=1,
                    ensemble=3),
               dict(start=87, horizon=1, stride=1),
               "AAPL monthly close, 36 one-month-ahead forecasts (2007-2010), fitted once on 2000-2007"),
    "stocks6": ("stocks", "AAPL",
                dict(strategy="recursive", lookback=12, log=True, diff=1, hidden_size=16, epochs=200, horizon=6,
                     ensemble=3),
                dict(start=87, horizon=6, stride=1),
                "AAPL monthly close, 6-month-ahead forecasts from 31 origins (2007-2010)"),
    "stocks-cov": ("stocks", "AAPL",
                   dict(strategy="recursive", lookback=12, log=True, diff=1, hidden_size=16, epochs=200, horizon=1,
                        ensemble=3, covariates_=("MSFT", "IBM", "AMZN")),
                   dict(start=87, horizon=1, stride=1),
                   "as 'stocks', with MSFT, IBM and AMZN as covariates (multivariate input)"),
    "sunspots": ("sunspots", None,
                 dict(strategy="recursive", lookback=22, hidden_size=16, epochs=200, horizon=11, ensemble=3),
                 dict(start=249, horizon=11, stride=1),
                 "yearly sunspots, 11-year forecasts from 50 origins (1949-1998), fitted once on 1700-1948"),
}


def run(name: str, seed: int = 0, conformal: bool = False, plot_dir: str = "") -> str:
    data, target, kw, bt, note = RECIPES[name]
    kw = dict(kw)
    s = load_dataset(data, target, covariates=kw.pop("covariates_", ()))
    t0 = time.perf_counter()
    r = LSTMForecaster(seed=seed, **kw).backtest(s, conformal=conformal, **bt)
    extra = ", conformal intervals" if conformal else ""
    table = r.table(f"{name}: {note}  [{time.perf_counter() - t0:.0f} s wall, 1 thread{extra}]")
    if plot_dir:
        from .metrics import baselines
        from .plot import plot_forecast

        last = r.folds[-1]
        o, H = last["origin"], r.horizon
        hist = s.head(o)
        path = os.path.join(plot_dir, f"forecast_{name}.png")
        plot_forecast(path, hist, last["forecast"], s.y[o:o + H], baselines(hist.y, H, s.season),
                      title=f"{name}: last backtest origin", last=8 * max(H, s.season))
        table += f"\nplot: {path}"
    return table


def main(argv=None) -> int:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conformal", action="store_true", help="conformal interval widening from earlier origins")
    p.add_argument("--plot-dir", default="", help="write forecast_<name>.png (last origin) here")
    a = p.parse_args(argv)
    for n in a.names:
        print(run(n, a.seed, a.conformal, a.plot_dir), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
