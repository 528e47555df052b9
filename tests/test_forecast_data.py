"""CSV reading: good files parse; bad ones are rejected with a one-line message that says where."""
import numpy as np
import pytest

from lstmkit.apps.forecast import DataError, load_dataset, read_series
from lstmkit.apps.forecast.transforms import Preprocessor


def write(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def monthly(n=12, start="2020-01-01"):
    import pandas as pd

    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, periods=n, freq="MS")]


def test_reads_dates_covariates_and_season(tmp_path):
    rows = "\n".join(f"{d},{i + 1},{2 * i}" for i, d in enumerate(monthly(12)))
    s = read_series(write(tmp_path, "day,sales,price\n" + rows), "sales", date="day", covariates=["price"])
    assert s.y.shape == (12,) and s.X.shape == (12, 1)
    assert s.freq == "MS" and s.season == 12
    assert str(s.future_index(2)[0].date()) == "2021-01-01"


def test_unsorted_dates_are_sorted(tmp_path):
    d = monthly(10)
    rows = "\n".join(f"{d[i]},{i}" for i in reversed(range(10)))
    s = read_series(write(tmp_path, "day,v\n" + rows), "v", date="day")
    np.testing.assert_array_equal(s.y, np.arange(10))


@pytest.mark.parametrize("text, kwargs, match", [
    ("a,b\n1,2\n", {"target": "c"}, "no column 'c'; columns are a, b"),
    ("a\n" + "\n".join(["1"] * 5 + ["x"] + ["1"] * 5), {"target": "a"}, "row 6 holds 'x', which is not a number"),
    ("a,b\n" + "\n".join(["1,1"] * 4 + [",1"] + ["1,1"] * 5), {"target": "a"},
     "1 missing value\\(s\\), first at row 5"),
    ("a\n1\n2\n3\n", {"target": "a"}, "3 usable rows; forecasting needs at least 8"),
    ("d,a\n" + "\n".join(f"2020-01-{i:02d},1" for i in range(1, 10)) + "\n2020-01-09,2\n", {"target": "a", "date": "d"},
     "date 2020-01-09 appears more than once"),
    ("d,a\n" + "\n".join(f"2020-01-{i:02d},1" for i in range(1, 9)) + "\nnot a date,2\n", {"target": "a", "date": "d"},
     "row 9 holds 'not a date', which is not a date"),
])
def test_csv_errors(tmp_path, text, kwargs, match):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=match) as e:
        read_series(path, **kwargs)
    assert "\n" not in str(e.value)


def test_missing_file():
    with pytest.raises(DataError, match="no such CSV file"):
        read_series("/nonexistent/x.csv", "a")


def test_gap_in_dates_rejected_or_filled(tmp_path):
    d = monthly(12)
    del d[5]  # 2020-06 missing
    text = "day,v\n" + "\n".join(f"{x},{i}" for i, x in enumerate(d))
    path = write(tmp_path, text)
    with pytest.raises(DataError, match="1 date\\(s\\) missing from a regular series, first 2020-06-01"):
        read_series(path, "v", date="day")
    s = read_series(path, "v", date="day", fill="interpolate")
    assert len(s) == 12 and s.y[5] == pytest.approx(4.5)  # halfway between 4 and 5


def test_missing_values_interpolated(tmp_path):
    text = "v,w\n" + "\n".join(f"{v},0" for v in ["1", "2", "", "4", "5", "6", "7", "8", "9"])
    s = read_series(write(tmp_path, text), "v", fill="interpolate")
    assert s.y[2] == pytest.approx(3.0)


def test_log_transform_rejects_nonpositive():
    with pytest.raises(DataError, match="positive values"):
        Preprocessor(log=True).fit(np.array([1.0, 0.0, 2.0, 3.0]))


def test_shipped_datasets():
    a = load_dataset("airline")
    assert len(a) == 144 and a.y[0] == 112 and a.y[-1] == 432 and a.season == 12
    st = load_dataset("stocks", "IBM", covariates=["MSFT"])
    assert len(st) == 123 and st.X.shape == (123, 1) and st.freq == "MS"
    assert len(load_dataset("stocks", "GOOG")) == 68
    sp = load_dataset("sunspots")
    assert len(sp) == 309 and sp.season == 11
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("nope")
