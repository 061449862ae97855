"""Time series from CSV files: many series in the M4 wide layout or a long table, or one series.

    train = read_series("m4/Hourly-train.csv", freq="H")     # wide: "V1" (id), "V2", ...: one row per series
    test = read_wide_test(train, "m4/Hourly-test.csv")        # the values after each training series, by id
    sales = read_series("sales.csv", covariates=("price",))   # long: series, timestamp, value[, covariates]
    air = read_series("airline-passengers.csv")               # one series: Month, Passengers
    history, held_out = air.split_last(24)

Values are float64 with NaN for a missing value: an empty cell, NA, NaN, N/A, null or None, and a step missing
from a long or single file's timestamps (a gap on the grid of the frequency). Missing values are kept as NaN,
never filled: the model masks them out of its loss, the baselines say what they do with them.

Whatever is wrong with a file raises InputError with one line naming the file, the line or the series, and what
to do: user data never ends in a traceback. Timestamps and their frequency are the job of data/calendar.py; its
public names are re-exported here.
"""

from __future__ import annotations

import csv
import inspect
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError, did_you_mean, plural
from .calendar import (  # re-exported (__all__): the forecasting task reads these from here
    CALENDAR_FEATURES,
    FREQS,
    SEASONALITY,
    calendar_features,
    check_freq,
    date_range,
    grid_positions,
    infer_freq,
    parse_timestamp,
    phase_features,
    seasonality,
)

__all__ = [
    "SERIES_FORMATS", "MISSING", "SeriesSet", "read_series", "read_wide", "read_wide_test", "read_long", "read_single",
    # from calendar.py
    "FREQS", "SEASONALITY", "CALENDAR_FEATURES", "check_freq", "seasonality", "parse_timestamp", "infer_freq",
    "grid_positions", "date_range", "calendar_features", "phase_features",
]

SERIES_FORMATS = ("auto", "wide", "long", "single")
#: cells read as a missing value (compared lower-cased, without surrounding spaces)
MISSING = frozenset({"", "na", "nan", "n/a", "null", "none"})
#: a long or single series may have gaps, but a grid this many times longer than its rows (plus a margin) is
#: almost surely a typo in a timestamp (2102 for 2012) or the wrong frequency, not data
_MAX_GAP_FACTOR, _GAP_MARGIN = 10, 1000


@dataclass
class SeriesSet:
    """Time series, each with an id, in file order.

    Attributes:
        ids: the id of each series (a file's stem for a single series).
        values: each series' values, (T_i,) float64, NaN where missing.
        freq: one of FREQS ("H", "D", "W", "M", "Q", "Y"), or None when unknown (a wide file read without one).
        starts: the first timestamp of each series (datetime64[s]), or None when the file has none (M4's).
        covariates: per series (T_i, C) float64 aligned with values, known in the future; None without any.
        covariate_names: the C covariates' column names.
        source: the file they came from, for messages.
    """

    ids: list[str]
    values: list[np.ndarray]
    freq: str | None = None
    starts: list[np.datetime64] | None = None
    covariates: list[np.ndarray] | None = None
    covariate_names: tuple[str, ...] = ()
    source: str = ""
    _positions: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, id: str) -> int:
        """The position of series `id`; an InputError naming the source and some known ids when there is none."""
        if self._positions is None:
            self._positions = {name: i for i, name in enumerate(self.ids)}
        if id not in self._positions:
            known = ", ".join(self.ids[:3]) + (", ..." if len(self.ids) > 3 else "")
            raise InputError(f"unknown series id {id!r} in {self.source or 'the data'}"
                             f"{did_you_mean(str(id), self.ids)}: known ids look like {known}")
        return self._positions[id]

    def subset(self, ids: Sequence[str]) -> SeriesSet:
        """The series named by `ids`, in that order."""
        return self._take([self.index(i) for i in ids])

    def split_last(self, n: int) -> tuple[SeriesSet, list[np.ndarray]]:
        """Each series without its last n values, and those values ((n,) each): a held-out horizon.

        Covariates are cut with the values (the held-out steps' covariates are in this set, not the result)."""
        if not isinstance(n, int) or n < 1:
            raise InputError(f"cannot hold out {n!r} values: pass a whole number of at least 1")
        short = [i for i, v in enumerate(self.values) if len(v) <= n]
        if short:
            i = short[0]
            raise InputError(f"series {self.ids[i]!r} in {self.source or 'the data'} has "
                             f"{plural(len(self.values[i]), 'value')}, so holding out the last {n} leaves nothing to learn from: hold out fewer, or drop "
                             f"series shorter than {n + 1} ({plural(len(short), 'series')} of {len(self)} are)")
        head = replace(self, values=[v[:-n] for v in self.values],
                       covariates=None if self.covariates is None else [c[:-n] for c in self.covariates])
        return head, [v[-n:] for v in self.values]

    def drop_short(self, min_length: int) -> tuple[SeriesSet, int]:
        """The series with at least `min_length` observed (non-NaN) values, and how many were dropped. An
        InputError when none is left."""
        observed = [int(np.count_nonzero(~np.isnan(v))) for v in self.values]
        keep = [i for i, n in enumerate(observed) if n >= min_length]
        if not keep:
            raise InputError(f"every series in {self.source or 'the data'} is shorter than the {min_length} observed "
                             f"values needed (the shortest has {min(observed, default=0)}, the longest "
                             f"{max(observed, default=0)}): pass longer series, or shorten the model's window or "
                             "horizon")
        return self._take(keep), len(self) - len(keep)

    def _take(self, rows: list[int]) -> SeriesSet:
        pick = (lambda items: None if items is None else [items[i] for i in rows])
        return replace(self, ids=pick(self.ids), values=pick(self.values), starts=pick(self.starts),
                       covariates=pick(self.covariates))


# ------------------------------------------------------------------------------------------------ readers
def read_series(path: str | Path, format: str = "auto", **options) -> SeriesSet:
    """Read time series from a CSV file in any of the formats below; `options` go to that format's reader.

    Args:
        format: "wide" (read_wide: M4's layout), "long" (read_long: series, timestamp, value[, covariates]),
            "single" (read_single: one series, e.g. Month, Passengers), or "auto": a header starting with "V1"
            is wide, one of at most two columns single, anything else long.
    """
    if format not in SERIES_FORMATS:
        raise InputError(f"unknown series format {format!r}: use one of {', '.join(SERIES_FORMATS)}")
    if format == "auto":
        format = series_format(path)
    reader = {"wide": read_wide, "long": read_long, "single": read_single}[format]
    unknown = [name for name in options if name not in inspect.signature(reader).parameters]
    if unknown:
        raise InputError(f"{path} is a {format} series file, which takes no {unknown[0]!r} option (it takes "
                         f"{', '.join(list(inspect.signature(reader).parameters)[1:])}): leave it out, or pass the "
                         "file's format")
    return reader(path, **options)


def series_format(path: str | Path) -> str:
    """The format of a series file by its header: a first column "V1" is wide (M4's), at most two columns a
    single series, anything else long."""
    header = next(_rows(_check_path(path)), (1, []))[1]
    return "wide" if header[:1] == ["V1"] else "single" if len(header) <= 2 else "long"


def read_wide(path: str | Path, freq: str | None = None) -> SeriesSet:
    """Read series in M4's wide layout: a header ("V1", "V2", ...), then one row per series: its id, then its
    values, rows of unequal length ending in empty cells.

    Missing cells at the end of a row are where the series ends; missing cells inside it are NaN. The file has no
    timestamps (`starts` is None); `freq` ("H" for M4 Hourly) says what its steps are, if known.
    """
    path = _check_path(path)
    freq = check_freq(freq, f" for {path}")
    ids, values, seen = [], [], {}
    rows = _rows(path)
    next(rows, None)  # the header names the columns V1, V2, ...; the values are by position
    for line, row in rows:
        if not row:
            continue  # a blank line
        sid = row[0].strip()
        where = f"{path} line {line} (series {sid!r})"
        if not sid:
            raise InputError(f"{path} line {line}: the series id (first cell) is empty: give every row an id")
        if sid in seen:
            raise InputError(f"{where}: the id is also on line {seen[sid]}: give every series its own id")
        cells = row[1:]
        while cells and cells[-1].strip().lower() in MISSING:
            cells.pop()  # the row's end: a wide file pads shorter series with empty cells
        if not cells:
            raise InputError(f"{where} has no values: give the series its values, or remove the line")
        seen[sid] = line
        ids.append(sid)
        values.append(_floats(cells, where, first_column=2))
    if not ids:
        raise InputError(f"{path} holds no series: a wide file has a header, then one row per series (its id, "
                         "then its values)")
    return SeriesSet(ids, values, freq=freq, source=str(path))


def read_wide_test(train: SeriesSet, path: str | Path) -> list[np.ndarray]:
    """The held-out values of M4's test file for each series of `train`, in train's order ((H_i,) each). The
    ids of both files must be the same."""
    test = read_wide(path, train.freq)
    missing = [i for i in train.ids if i not in set(test.ids)]
    extra = [i for i in test.ids if i not in set(train.ids)]
    if missing or extra:
        source = train.source or "the training data"
        what = (f"has no series {missing[0]!r} of {source}" if missing
                else f"has series {extra[0]!r}, which {source} lacks")
        raise InputError(f"{path} {what} ({plural(len(missing), 'missing id')}, {plural(len(extra), 'extra id')}): "
                         "pass the test file that goes with the training file")
    return [test.values[test.index(i)] for i in train.ids]


def read_long(path: str | Path, *, id_column: str = "series", time_column: str = "timestamp",
              value_column: str = "value", covariates: Sequence[str] = (), freq: str | None = None) -> SeriesSet:
    """Read many series from a long table: a header, then one row per series and step.

    Rows of different series may be interleaved in any order, but each series' timestamps must increase strictly
    down the file. Steps missing from a series' timestamps are NaN (also in its covariates), as are empty values:
    rows that carry only covariates (a future step's) are kept.

    Args:
        id_column, time_column, value_column: the columns holding the series id, the timestamp and the value.
        covariates: columns of numbers known in the future (a price, a holiday flag), in this order.
        freq: one of FREQS; default inferred from the timestamps of all series.
    """
    path = _check_path(path)
    columns = {"id": id_column, "time": time_column, "value": value_column}
    return _read_table(path, columns, tuple(covariates), check_freq(freq, f" for {path}"), single_id=None)


def read_single(path: str | Path, *, time_column: str | None = None, value_column: str | None = None,
                freq: str | None = None) -> SeriesSet:
    """Read one series: a header, then one row per step with its timestamp and value ("Month","Passengers" then
    "1949-01",112); its id is the file's stem.

    A file of two columns needs no column names (the first is the time, the second the value); one of a single
    column holds values only, without timestamps. Timestamps, gaps and missing values are as in read_long.
    """
    path = _check_path(path)
    header = next(_rows(path), (1, []))[1]
    if time_column is None and value_column is None and len(header) == 1:
        return _read_table(path, {"value": header[0]}, (), check_freq(freq, f" for {path}"), single_id=path.stem)
    if time_column is None or value_column is None:
        if len(header) != 2:
            raise InputError(f"{path} has {plural(len(header), 'column')} ({', '.join(map(repr, header))}): name "
                             "the time and value columns of the series, or pass a file with two columns")
        time_column = header[0] if time_column is None else time_column
        value_column = header[1] if value_column is None else value_column
    columns = {"time": time_column, "value": value_column}
    return _read_table(path, columns, (), check_freq(freq, f" for {path}"), single_id=path.stem)


# ------------------------------------------------------------------------------------------------ tables
# a table row as read: (line, timestamp or None, value, covariates)
Record = tuple[int, "np.datetime64 | None", float, list[float]]


def _read_table(path: Path, columns: dict[str, str], covariates: tuple[str, ...], freq: str | None,
                single_id: str | None) -> SeriesSet:
    """A long table (or, with `single_id`, one series' table) as a SeriesSet: rows grouped by id in order of first
    appearance, timestamps checked and put on the frequency's grid."""
    records = _records(path, columns, covariates, single_id)
    timed = "time" in columns
    ids = list(records)
    if timed and freq is None:
        freq = infer_freq([np.array([r[1] for r in records[s]], dtype="datetime64[s]") for s in ids], f" in {path}")
    values, covs, starts = [], [], []
    for sid in ids:
        times = np.array([r[1] for r in records[sid]], dtype="datetime64[s]") if timed else None  # (R,)
        series_values, series_covs = _on_grid(records[sid], times, freq, len(covariates), f"series {sid!r} in {path}")
        values.append(series_values)
        covs.append(series_covs)
        starts.append(None if times is None else times[0])
    return SeriesSet(ids, values, freq=freq, starts=starts if timed else None, covariates=covs if covariates else None,
                     covariate_names=covariates, source=str(path))


def _records(path: Path, columns: dict[str, str], covariates: tuple[str, ...],
             single_id: str | None) -> dict[str, list[Record]]:
    """Each series' rows in file order, checked: numbers, dates, and timestamps increasing within a series."""
    rows = _rows(path)
    header = [name.strip() for name in next(rows, (1, []))[1]]
    index = {role: _column(header, name, role, path) for role, name in columns.items()}
    cov_index = [_column(header, name, "covariate", path) for name in covariates]
    records: dict[str, list[Record]] = {}
    stamps: dict[str, np.datetime64 | None] = {}  # parsed once: a long file repeats its timestamps per series
    for line, row in rows:
        if not row or row == [""]:
            continue  # a blank line
        if len(row) != len(header):
            raise InputError(f"{path} line {line} has {plural(len(row), 'field')} but the header has {len(header)}: "
                             "give every row one field per column (quote a field that holds a comma)")
        sid = single_id if single_id is not None else row[index["id"]].strip()
        where = f"{path} line {line} (series {sid!r})"
        if not sid:
            raise InputError(f"{path} line {line}: the series id in column {columns['id']!r} is empty: give every "
                             "row its series' id")
        stamp = None
        if "time" in index:
            text = row[index["time"]]
            if text not in stamps:
                stamps[text] = parse_timestamp(text)
            stamp = stamps[text]
            if stamp is None:
                raise InputError(f"{where}: timestamp {text.strip()[:40]!r} is not a date: write ISO dates or times "
                                 "(2020-01-31, 2020-01-31 13:00) or months (2020-01)")
        series = records.setdefault(sid, [])
        if stamp is not None and series and stamp <= series[-1][1]:
            before_line, before = series[-1][0], series[-1][1]
            problem = (f"timestamp {stamp} is also on line {before_line}: give each step one row" if stamp == before
                       else f"timestamp {stamp} comes before {before} on line {before_line}: sort each series' rows "
                            "by time")
            raise InputError(f"{where}: {problem}")
        value = _float(row[index["value"]], where, columns["value"])
        series.append((line, stamp, value, [_float(row[j], where, covariates[k]) for k, j in enumerate(cov_index)]))
    if not records:
        raise InputError(f"{path} holds no rows after its header: pass a file with one row per step")
    return records


def _on_grid(records: list[Record], times: np.ndarray | None, freq: str | None, covariates: int,
             what: str) -> tuple[np.ndarray, np.ndarray]:
    """One series' values (T,) and covariates (T, C) on the grid of its frequency: NaN where a step has no row.
    Without timestamps (or a frequency) each row is the next step."""
    positions = np.arange(len(records)) if times is None or freq is None else grid_positions(times, freq, f" in {what}")
    length = int(positions[-1]) + 1
    if length > _MAX_GAP_FACTOR * len(records) + _GAP_MARGIN:
        raise InputError(f"{what} spans {length} steps of {freq} from {times[0]} but has only "
                         f"{plural(len(records), 'row')}: check its timestamps (a typo in a year?) or the frequency")
    values = np.full(length, np.nan)  # (T,) gaps stay NaN
    values[positions] = [r[2] for r in records]
    covs = np.full((length, covariates), np.nan)  # (T, C)
    if covariates:
        covs[positions] = [r[3] for r in records]
    return values, covs


def _column(header: list[str], name: str, role: str, path: Path) -> int:
    if name not in header:
        raise InputError(f"{path} has no {role} column {name!r}{did_you_mean(name, header)} (its header: "
                         f"{', '.join(map(repr, header))}): name the column that holds the {role}")
    return header.index(name)


# ------------------------------------------------------------------------------------------------ cells
def _float(cell: str, where: str, column: str) -> float:
    """One cell as a number: NaN for a missing value, an InputError for anything else that is not a finite
    number."""
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        what = "is not a number" if number is None else "is infinite"
        raise InputError(f"{where}: {column} {text[:40]!r} {what}: write a number, or leave the cell empty for a "
                         "missing value")
    return number


def _floats(cells: list[str], where: str, first_column: int) -> np.ndarray:
    """A row of cells as (n,) float64; the error names the column (1-based: `first_column` is cells[0]'s)."""
    return np.array([_float(c, where, f"column {first_column + i}") for i, c in enumerate(cells)])


# ------------------------------------------------------------------------------------------------ files
def _check_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"series file {path} {what}: pass a CSV file (wide as M4's, long, or one series)")
    return path


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, row) of a CSV file, the line being where the row starts; the first is the header. An InputError for
    an empty file, bytes that are not UTF-8 and broken quoting."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror or e}): pass a readable CSV file") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel's UTF-8 CSV) is not part of the first column
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise InputError(f"{path} line {line} is not UTF-8 text (byte {e.start}): save the file as UTF-8") from None
    if not text.strip():
        raise InputError(f"{path} is empty: pass a CSV file with a header and one row per series or step")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            yield start, row
    except csv.Error as e:
        raise InputError(f"{path} line {reader.line_num}: {str(e).splitlines()[0]}: check the quoting (a field in "
                         'double quotes writes a quote inside it as "")') from None
