"""Time-series loaders (stackrnn/data/series.py) and timestamps (stackrnn/data/calendar.py): small files written
here, the real M4 Hourly and airline files, and one InputError line, naming the file and line or series, for each
kind of bad input."""

from pathlib import Path

import numpy as np
import pytest

from stackrnn.data.series import (
    SeriesSet,
    calendar_features,
    date_range,
    infer_freq,
    parse_timestamp,
    phase_features,
    read_long,
    read_series,
    read_single,
    read_wide,
    read_wide_test,
    seasonality,
)
from stackrnn.errors import InputError

from .conftest import SHARED

M4 = SHARED / "m4"
AIRLINE = SHARED / "airline_passengers" / "airline-passengers.csv"
needs_m4 = pytest.mark.skipif(not (M4 / "Hourly-train.csv").is_file(), reason=f"no M4 data at {M4}")
needs_airline = pytest.mark.skipif(not AIRLINE.is_file(), reason=f"no airline data at {AIRLINE}")


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def stamps(*texts: str) -> np.ndarray:
    return np.array([parse_timestamp(t) for t in texts], dtype="datetime64[s]")


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


def one_line_error(call, *parts: str) -> str:
    """The InputError `call` raises: one line, naming each of `parts`."""
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------------------------ wide
def test_wide_rows_of_unequal_length_with_missing_values_inside(tmp_path):
    path = write(tmp_path, '"V1","V2","V3","V4","V5"\n"A","1","2","3","4"\n"B","5","","NA",""\n"C","7","nan","8",""\n')
    data = read_series(path)  # auto: "V1" first is wide
    assert data.ids == ["A", "B", "C"] and data.starts is None and data.freq is None
    assert same(data.values[0], [1, 2, 3, 4])
    assert same(data.values[1], [5])  # missing cells at the end of a row are where the series ends
    assert same(data.values[2], [7, np.nan, 8])  # inside it, they are NaN
    assert read_wide(path, freq="h").freq == "H"
    one_line_error(lambda: read_series(path, covariates=("price",)), str(path), "wide series file",
                   "no 'covariates' option", "it takes freq")


def test_wide_test_file_follows_the_training_ids(tmp_path):
    train = read_wide(write(tmp_path, '"V1","V2","V3"\n"A","1","2"\n"B","3","4"\n'))
    test = read_wide_test(train, write(tmp_path, '"V1","V2"\n"B","40"\n"A","20"\n', "test.csv"))
    assert same(test[0], [20]) and same(test[1], [40])
    one_line_error(lambda: read_wide_test(train, write(tmp_path, '"V1","V2"\n"A","20"\n', "t2.csv")),
                   "t2.csv", "'B'", "1 missing id")
    one_line_error(lambda: read_wide_test(train, write(tmp_path, '"V1","V2"\n"A","2"\n"B","4"\n"C","1"\n', "t3.csv")),
                   "t3.csv", "'C'", "lacks")


@needs_m4
def test_m4_hourly():
    train = read_series(M4 / "Hourly-train.csv", freq="H")
    test = read_wide_test(train, M4 / "Hourly-test.csv")
    assert len(train) == 414 and train.ids[:2] == ["H1", "H2"]
    assert sorted({len(v) for v in train.values}) == [700, 960]
    assert {len(v) for v in test} == {48}
    assert same(train.values[0][:3], [605, 586, 586]) and same(test[0][:3], [619, 565, 532])
    assert not any(np.isnan(v).any() for v in train.values)
    one_line_error(lambda: train.index("h1"), "unknown series id 'h1'", "Hourly-train.csv", "H1, H2, H3, ...")


# ------------------------------------------------------------------------------------------------ long
LONG = """series,timestamp,value,price
b,2024-01-01 00:00,10,1.5
a,2024-01-01 00:00,1,2
a,2024-01-01 01:00,2,2
b,2024-01-01 01:00,,1.5
a,2024-01-01 03:00,4,3
b,2024-01-01 02:00,12,1
"""


def test_long_interleaved_series_gaps_and_covariates(tmp_path):
    data = read_series(write(tmp_path, LONG), covariates=("price",))  # auto: 4 columns is long
    assert data.ids == ["b", "a"] and data.freq == "H" and data.covariate_names == ("price",)
    assert data.starts == [np.datetime64("2024-01-01T00:00:00")] * 2
    assert same(data.values[0], [10, np.nan, 12])  # an empty value is NaN
    assert same(data.values[1], [1, 2, np.nan, 4])  # a missing hour is NaN
    assert data.covariates[1].shape == (4, 1) and same(data.covariates[1][:, 0], [2, 2, np.nan, 3])
    a, held_out = data.subset(["a"]).split_last(2)
    assert same(a.values[0], [1, 2]) and same(held_out[0], [np.nan, 4]) and a.covariates[0].shape == (2, 1)


def test_long_monthly_at_month_ends_and_a_given_frequency(tmp_path):
    path = write(tmp_path, "id,date,y\nx,2020-01-31,1\nx,2020-02-29,2\nx,2020-04-30,4\n")
    data = read_long(path, id_column="id", time_column="date", value_column="y")
    assert data.freq == "M" and same(data.values[0], [1, 2, np.nan, 4])
    daily = read_long(path, id_column="id", time_column="date", value_column="y", freq="D")
    assert len(daily.values[0]) == 91  # 2020-01-31 .. 2020-04-30


@pytest.mark.parametrize("rows, parts", [
    ("a,2024-01-01,1\na,2024-01-01,2\n", ["line 3", "series 'a'", "also on line 2"]),
    ("a,2024-01-02,1\nb,2024-01-01,5\na,2024-01-01,2\n", ["line 4", "series 'a'", "comes before", "sort"]),
    ("a,2024-01-01,1\na,2024-01-02,x1\n", ["line 3", "series 'a'", "'x1' is not a number"]),
    ("a,2024-01-01,1\na,2024-01-02,inf\n", ["line 3", "is infinite"]),
    ("a,2024-01-01,1\na,Jan 2,2\n", ["line 3", "'Jan 2' is not a date"]),
    ("a,2024-01-01,1\na,2024-01-02\n", ["line 3", "2 fields", "header has 3"]),
    ("a,2024-01-01 00:00,1\na,2024-01-01 01:00,1\na,2024-01-01 02:30,1\n", ["irregular", "1 hours"]),
    ("a,2024-01-01,1\na,2024-01-01 12:00,1\n", ["cannot infer the frequency", "12 hours"]),
    ("a,2024-01-01,1\n", ["cannot infer the frequency", "no series has two timestamps"]),
    ("a,2024-01-01,1\na,2024-01-02,1\na,2924-01-01,2\n", ["series 'a'", "a typo in a year"]),
])
def test_long_bad_input_is_one_line(tmp_path, rows, parts):
    path = write(tmp_path, "series,timestamp,value\n" + rows)
    one_line_error(lambda: read_long(path), str(path), *parts)


def test_long_bad_columns_and_files(tmp_path):
    path = write(tmp_path, LONG)
    one_line_error(lambda: read_long(path, covariates=("prize",)), str(path), "no covariate column 'prize'",
                   "did you mean 'price'")
    one_line_error(lambda: read_long(path, value_column="y"), str(path), "no value column 'y'")
    one_line_error(lambda: read_long(path, freq="D"), str(path), "series 'b'", "not on the D grid")
    one_line_error(lambda: read_long(path, freq="X"), "unknown frequency 'X'")
    one_line_error(lambda: read_series(write(tmp_path, "", "empty.csv")), "empty.csv", "is empty")
    one_line_error(lambda: read_series(write(tmp_path, "series,timestamp,value\n", "h.csv")), "h.csv", "no rows")
    one_line_error(lambda: read_series(tmp_path / "nope.csv"), "nope.csv", "does not exist")
    (tmp_path / "latin.csv").write_bytes(b"series,timestamp,value\n\xe9,2024-01-01,1\n")
    one_line_error(lambda: read_series(tmp_path / "latin.csv"), "latin.csv", "line 2", "not UTF-8")
    one_line_error(lambda: read_series(path, format="xls"), "unknown series format 'xls'")


def test_wide_bad_input_is_one_line(tmp_path):
    header = '"V1","V2","V3"\n'
    for rows, parts in [('"A","1","x"\n', ["line 2", "series 'A'", "column 3 'x' is not a number"]),
                        ('"A","1","2"\n"A","3","4"\n', ["line 3", "also on line 2"]),
                        ('"A","",""\n', ["line 2", "has no values"]),
                        ('"","1","2"\n', ["line 2", "id (first cell) is empty"])]:
        path = write(tmp_path, header + rows)
        one_line_error(lambda: read_wide(path), str(path), *parts)
    one_line_error(lambda: read_wide(write(tmp_path, header)), "holds no series")


# ------------------------------------------------------------------------------------------------ single
@needs_airline
def test_airline_file():
    data = read_series(AIRLINE)  # CRLF line endings, no final newline
    assert data.ids == ["airline-passengers"] and data.freq == "M"
    assert data.starts == [np.datetime64("1949-01-01T00:00:00")]
    assert len(data.values[0]) == 144 and same(data.values[0][:3], [112, 118, 132])
    assert data.values[0][-1] == 432
    history, held_out = data.split_last(24)
    assert len(history.values[0]) == 120 and len(held_out[0]) == 24


def test_single_series_named_columns_and_values_only(tmp_path):
    path = write(tmp_path, "when,other,load\n2024-01-01,x,3\n2024-01-02,x,4\n2024-01-04,y,5\n", "load.csv")
    data = read_single(path, time_column="when", value_column="load")
    assert data.ids == ["load"] and data.freq == "D" and same(data.values[0], [3, 4, np.nan, 5])
    one_line_error(lambda: read_single(path), "load.csv", "3 columns", "name the time and value columns")
    values = read_series(write(tmp_path, "y\n1\n\n2\nNA\n", "v.csv"), freq="W")
    assert values.starts is None and values.freq == "W" and same(values.values[0], [1, 2, np.nan])


# ------------------------------------------------------------------------------------------------ SeriesSet
def test_drop_short_counts_observed_values():
    data = SeriesSet(["a", "b", "c"], [np.arange(5.0), np.array([1, np.nan, np.nan, 2.0]), np.ones(3)], source="f.csv")
    kept, dropped = data.drop_short(3)
    assert kept.ids == ["a", "c"] and dropped == 1
    one_line_error(lambda: data.drop_short(6), "f.csv", "6 observed values", "the shortest has 2", "longest 5")
    one_line_error(lambda: data.split_last(3), "series 'c'", "f.csv", "3 values", "1 series of 3")
    one_line_error(lambda: data.subset(["a", "d"]), "unknown series id 'd'", "f.csv")


# ------------------------------------------------------------------------------------------------ calendar
def test_parse_timestamps():
    assert parse_timestamp("1949-01") == np.datetime64("1949-01-01T00:00:00")
    assert parse_timestamp("1949") == np.datetime64("1949-01-01T00:00:00")
    assert parse_timestamp(" 2020-01-31T13:00 ") == np.datetime64("2020-01-31T13:00:00")
    assert parse_timestamp("2020-03-29T03:00+02:00") == np.datetime64("2020-03-29T01:00:00")  # to UTC
    assert parse_timestamp("31/01/2020") is None and parse_timestamp("") is None


@pytest.mark.parametrize("texts, freq", [
    (["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 04:00"], "H"),
    (["2024-01-01", "2024-01-02"], "D"),
    (["2024-01-01", "2024-01-08", "2024-01-22"], "W"),
    (["1949-01", "1949-02", "1949-05"], "M"),
    (["2020-01-31", "2020-04-30", "2020-07-31"], "Q"),
    (["2001", "2002", "2005"], "Y"),
])
def test_infer_freq(texts, freq):
    assert infer_freq(stamps(*texts)) == freq


def test_seasonality_and_date_range():
    assert [seasonality(f) for f in "HDWMQY"] == [24, 7, 52, 12, 4, 1]
    assert list(date_range(np.datetime64("2024-01-31"), "M", 3).astype("datetime64[D]").astype(str)) == \
        ["2024-01-31", "2024-02-29", "2024-03-31"]
    one_line_error(lambda: seasonality("min"), "unknown frequency 'min'")


def test_calendar_features():
    hourly = calendar_features(np.datetime64("2024-01-07T22:00"), "H", 3)  # a Sunday, 22:00
    assert hourly.shape == (3, 2)
    assert np.allclose(hourly[:, 0], np.array([22, 23, 0]) / 23 - 0.5)
    assert np.allclose(hourly[:, 1], np.array([6, 6, 0]) / 6 - 0.5)  # Sunday, then Monday
    daily = calendar_features(np.datetime64("2024-12-31"), "D", 2)  # a Tuesday, the year's 366th day
    assert np.allclose(daily, [[1 / 6 - 0.5, 30 / 30 - 0.5, 365 / 365 - 0.5], [2 / 6 - 0.5, -0.5, -0.5]])
    monthly = calendar_features(np.datetime64("1949-11"), "M", 3)
    assert np.allclose(monthly[:, 0], np.array([10, 11, 0]) / 11 - 0.5)
    assert calendar_features(np.datetime64("2001"), "Y", 4).shape == (4, 0)
    for freq in "HDWMQ":
        f = calendar_features(np.datetime64("2023-05-17T09:00"), freq, 1000)
        assert f.min() >= -0.5 and f.max() <= 0.5


def test_phase_features():
    assert np.allclose(phase_features(3, 24, offset=23)[:, 0], np.array([23, 0, 1]) / 23 - 0.5)
    assert phase_features(5, 1).shape == (5, 0)
