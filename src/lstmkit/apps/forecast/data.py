"""Series for forecasting: any CSV through pandas, and three small public datasets shipped inside.

    >>> from lstmkit.apps.forecast import load_dataset, read_series
    >>> s = load_dataset("airline")                        # 144 monthly values, 1949-01 … 1960-12
    >>> s.y.shape, s.freq
    ((144,), 'MS')
    >>> s = read_series("prices.csv", target="close", date="day", covariates=["volume"])

A ``Series`` holds the target ``y`` (T,), optional covariates ``X`` (T, C), their names, the
time index and its frequency. Problems are rejected with a ``DataError`` (a ValueError whose
message is one line): a missing file or column, text in a number column, unparseable or
duplicated dates, a gap in a regular index, missing values (unless ``fill`` is "ffill" or
"interpolate"), or a series too short to forecast.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import DataError

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data")

# name -> (file, seasonal period, one-line description)
DATASETS = {
    "airline": ("airline.csv", 12, "monthly international airline passengers 1949-1960 (Box & Jenkins series G)"),
    "stocks": ("stocks.csv", 12, "monthly closing prices of MSFT, AMZN, IBM, GOOG, AAPL 2000-2010 (vega-datasets)"),
    "sunspots": ("sunspots.csv", 11, "yearly sunspot numbers 1700-2008 (NOAA NGDC via statsmodels)"),
}
STOCK_SYMBOLS = ("MSFT", "AMZN", "IBM", "GOOG", "AAPL")


def _day(stamp) -> str:
    """A timestamp's day for an error message. Not Timestamp.date(): it raises for timestamps of
    non-nanosecond units far outside the usual range, which a bad file can hold."""
    return str(stamp).split(" ")[0].split("T")[0]


@dataclass
class Series:
    """A target series with optional covariates on a shared time index.

    Attributes:
        y: (T,) float64 target values.
        X: (T, C) float64 covariates, or None.
        target: the target's name; covariates: the covariates' names.
        index: (T,) time stamps (pandas DatetimeIndex) or positions (RangeIndex).
        freq: pandas frequency string ("MS", "D", "YS", ...) or None for a plain position index.
        season: the seasonal period used by the seasonal-naive baseline and MASE (1: none).
    """

    y: np.ndarray
    X: Optional[np.ndarray] = None
    target: str = "y"
    covariates: list[str] = field(default_factory=list)
    index: object = None
    freq: Optional[str] = None
    season: int = 1

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        if self.X is not None:
            self.X = np.asarray(self.X, dtype=np.float64)
            if self.X.ndim == 1:
                self.X = self.X[:, None]
            if self.X.shape[0] != self.y.shape[0]:
                raise DataError(f"covariates have {self.X.shape[0]} rows but the target has {self.y.shape[0]}")
        if self.index is None:
            import pandas as pd

            self.index = pd.RangeIndex(len(self.y))

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int) -> "Series":
        """The first n observations (the training part of a split)."""
        return Series(self.y[:n], None if self.X is None else self.X[:n], self.target, list(self.covariates),
                      self.index[:n], self.freq, self.season)

    def future_index(self, horizon: int):
        """Time stamps of the ``horizon`` steps after the last observation."""
        import pandas as pd

        if self.freq is not None and isinstance(self.index, pd.DatetimeIndex):
            return pd.date_range(self.index[-1], periods=horizon + 1, freq=self.freq)[1:]
        start = int(self.index[-1]) + 1 if len(self.index) else 0
        return pd.RangeIndex(start, start + horizon)


def _pd():
    try:
        import pandas as pd
    except ModuleNotFoundError:  # pragma: no cover - pandas is a forecast dependency
        raise DataError("reading CSV files needs pandas: pip install 'lstmkit[forecast]'") from None
    return pd


def _season_of(freq: Optional[str]) -> int:
    if not freq:
        return 1
    f = freq.upper().lstrip("0123456789")
    for prefix, m in (("MS", 12), ("ME", 12), ("M", 12), ("QS", 4), ("QE", 4), ("Q", 4), ("W", 52),
                      ("D", 7), ("B", 5), ("H", 24), ("h", 24)):
        if f.startswith(prefix.upper()):
            return m
    return 1


def from_frame(df, target: str, *, date: Optional[str] = None, covariates: Sequence[str] = (),
               fill: str = "error", season: int = 0, where: str = "data", min_length: int = 8) -> Series:
    """A Series from a pandas DataFrame; see read_series for the arguments and the checks."""
    pd = _pd()
    if fill not in ("error", "ffill", "interpolate", "drop"):
        raise DataError(f"fill must be 'error', 'ffill', 'interpolate' or 'drop', got {fill!r}")
    cols = [target, *covariates]
    for c in cols + ([date] if date else []):
        if c not in df.columns:
            raise DataError(f"{where}: no column {c!r}; columns are {', '.join(map(str, df.columns))}")
    if target in covariates:
        raise DataError(f"{where}: {target!r} is both the target and a covariate")
    values = {}
    for c in cols:
        col = pd.to_numeric(df[c], errors="coerce")
        bad = col.isna() & df[c].notna() & (df[c].astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{where}: column {c!r} row {i + 1} holds {df[c].iloc[i]!r}, which is not a number")
        values[c] = col.to_numpy(dtype=np.float64)
        infinite = np.flatnonzero(np.isinf(values[c]))
        if len(infinite):
            i = int(infinite[0])
            raise DataError(f"{where}: column {c!r} row {i + 1} holds {df[c].iloc[i]!r}, which is not a finite number")
    frame = pd.DataFrame(values)
    freq = None
    if date:
        idx = pd.to_datetime(df[date], errors="coerce")
        if idx.isna().any():
            i = int(np.flatnonzero(idx.isna().to_numpy())[0])
            raise DataError(f"{where}: date column {date!r} row {i + 1} holds {df[date].iloc[i]!r}, "
                            "which is not a date")
        frame.index = pd.DatetimeIndex(idx)
        if frame.index.has_duplicates:
            d = frame.index[frame.index.duplicated()][0]
            raise DataError(f"{where}: date {_day(d)} appears more than once")
        if not frame.index.is_monotonic_increasing:
            frame = frame.sort_index()
        if len(frame) >= 3:
            freq = _infer_freq(pd, frame.index)
            if freq is None:
                # A regular index with a hole: find the step that most rows use, then the gap.
                steps = pd.Series(frame.index[1:] - frame.index[:-1])
                common = steps.mode().iloc[0]
                try:
                    full = pd.date_range(frame.index[0], frame.index[-1],
                                         freq=_infer_freq(pd, frame.index[:3]) or common)
                except (ValueError, TypeError):
                    full = None
                if full is not None and len(full) > len(frame) and frame.index.isin(full).all():
                    missing = full.difference(frame.index)
                    if fill == "error":
                        raise DataError(f"{where}: {len(missing)} date(s) missing from a regular series, "
                                        f"first {_day(missing[0])}; fill them in or pass fill='interpolate'/'ffill'")
                    frame = frame.reindex(full)
                    freq = full.freqstr
                else:
                    raise DataError(f"{where}: dates in {date!r} are irregularly spaced (first steps "
                                    f"{', '.join(str(s) for s in steps[:3])}); resample to a regular frequency first")
    n_missing = frame.isna().to_numpy().sum(0)
    if n_missing.any():
        if fill == "error":
            c = frame.columns[int(np.flatnonzero(n_missing)[0])]
            i = int(np.flatnonzero(frame[c].isna().to_numpy())[0])
            raise DataError(f"{where}: column {c!r} has {int(n_missing[list(frame.columns).index(c)])} missing "
                            f"value(s), first at row {i + 1}; pass fill='interpolate', 'ffill' or 'drop'")
        if fill == "drop":
            if date and freq:
                raise DataError(f"{where}: fill='drop' would leave gaps in a dated series; use 'interpolate'")
            frame = frame.dropna()
        elif fill == "ffill":
            frame = frame.ffill().bfill()
        else:
            frame = frame.interpolate(limit_direction="both")
    if len(frame) < min_length:
        raise DataError(f"{where}: {len(frame)} usable rows; forecasting needs at least {min_length}")
    X = frame[list(covariates)].to_numpy() if covariates else None
    index = frame.index if date else pd.RangeIndex(len(frame))
    return Series(frame[target].to_numpy(), X, target, list(covariates), index, freq, season or _season_of(freq))


def read_series(path: str, target: str, *, date: Optional[str] = None, covariates: Sequence[str] = (),
                fill: str = "error", season: int = 0) -> Series:
    """Read a target (and covariates) from a CSV file.

    Args:
        path: CSV file with a header row.
        target: the column to forecast.
        date [None]: a column of dates; parsed, sorted, checked for duplicates and gaps, and used
            to find the frequency (hence the default season: 12 for monthly, 7 for daily, ...).
        covariates [()]: further numeric columns fed to the model beside the target.
        fill ["error"]: missing values and missing dates are rejected ("error") or filled by
            "interpolate" (linear) or "ffill" (last value); "drop" removes rows (undated series only).
        season [0]: seasonal period for the seasonal-naive baseline and MASE; 0 infers it.
    """
    pd = _pd()
    if not os.path.isfile(path):
        raise DataError(f"no such CSV file: {path}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None
    return from_frame(df, target, date=date, covariates=covariates, fill=fill, season=season, where=path)


def load_dataset(name: str, target: Optional[str] = None, *, covariates: Sequence[str] = ()) -> Series:
    """One of the shipped datasets (see DATASETS and src/lstmkit/data/README.md for sources and licenses).

    ``"airline"`` (target "Passengers"), ``"sunspots"`` (target "SUNACTIVITY") and ``"stocks"``
    (target one of MSFT, AMZN, IBM, GOOG, AAPL; default AAPL; the other symbols can be covariates).
    """
    pd = _pd()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; shipped: {', '.join(DATASETS)}")
    file, season, _ = DATASETS[name]
    df = pd.read_csv(os.path.join(DATA_DIR, file))
    if name == "airline":
        return from_frame(df, target or "Passengers", date="Date", covariates=covariates, season=season, where=name)
    if name == "sunspots":
        df["YEAR"] = df["YEAR"].astype(int).astype(str)
        return from_frame(df, target or "SUNACTIVITY", date="YEAR", covariates=covariates, season=season, where=name)
    wide = df.pivot(index="date", columns="symbol", values="price").reset_index()
    wide["date"] = pd.to_datetime(wide["date"], format="%b %d %Y")
    wide = wide.sort_values("date")
    target = target or "AAPL"
    wide = wide.dropna(subset=[target, *covariates])  # GOOG starts in 2004
    return from_frame(wide, target, date="date", covariates=covariates, season=season, where=f"stocks/{target}")


def resolve(data: str, target: Optional[str], *, date: Optional[str] = None, covariates: Sequence[str] = (),
            fill: str = "error", season: int = 0) -> Series:
    """``data`` is a shipped dataset name ("airline", "stocks", "sunspots") or a CSV path."""
    if data in DATASETS and not os.path.isfile(data):
        s = load_dataset(data, target or None, covariates=covariates)
        if season:
            s.season = season
        return s
    if not target:
        raise DataError(f"{data}: say which column to forecast (target, --target on the command line)")
    return read_series(data, target, date=date or None, covariates=covariates, fill=fill, season=season)


def _infer_freq(pd, index) -> Optional[str]:
    """pd.infer_freq as a frequency string on every pandas: pandas 4 returns an offset object and
    pandas 3 warns about that change on each call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infer_freq.*")
        freq = pd.infer_freq(index)
    return getattr(freq, "freqstr", freq)
