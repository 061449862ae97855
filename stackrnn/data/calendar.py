"""Timestamps of time series: parsing, the frequency, its season length, and calendar features.

    parse_timestamp("2020-01-31 13:00")          # numpy.datetime64('2020-01-31T13:00:00')
    infer_freq(times)                            # "H", "D", "W", "M", "Q" or "Y", from the spacing
    seasonality("H")                             # 24
    calendar_features(start, "H", 48)            # (48, 2): hour of day, day of week, each in [-0.5, 0.5]
    phase_features(48, 24, offset=700)           # (48, 1): position within the season, for series without dates

Timestamps are numpy datetime64[s]. A frequency is one of FREQS. Hours, days and weeks are fixed spans of seconds;
months, quarters and years are counted in calendar months, so that "1949-01", "1949-02", ... (or month ends
"2020-01-31", "2020-02-29", ...) are one month apart although their spans in days differ.

Features follow GluonTS's time features: an integer position scaled to [-0.5, 0.5] (hour of day: hour / 23 - 0.5),
so a network sees every feature on the same scale whatever its period.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from ..errors import InputError

#: the frequencies stackrnn knows, and the season length a forecaster uses for each (M4's: 24 hours a day, 7 days a
#: week, 52 weeks, 12 months and 4 quarters a year, and none for yearly data).
SEASONALITY = {"H": 24, "D": 7, "W": 52, "M": 12, "Q": 4, "Y": 1}
FREQS = tuple(SEASONALITY)

_SECONDS = {"H": 3600, "D": 86400, "W": 7 * 86400}
_MONTHS = {"M": 1, "Q": 3, "Y": 12}

#: the calendar features of each frequency, in column order (see calendar_features)
CALENDAR_FEATURES = {
    "H": ("hour_of_day", "day_of_week"),
    "D": ("day_of_week", "day_of_month", "day_of_year"),
    "W": ("week_of_year",),
    "M": ("month_of_year",),
    "Q": ("quarter_of_year",),
    "Y": (),
}


def check_freq(freq: str | None, where: str = "") -> str | None:
    """`freq` upper-cased ("h" -> "H"), or an InputError naming the known ones; None stays None."""
    if freq is None:
        return None
    if not isinstance(freq, str) or freq.upper() not in SEASONALITY:
        raise InputError(f"unknown frequency {freq!r}{where}: use one of {', '.join(FREQS)} (hourly, daily, weekly, "
                         "monthly, quarterly, yearly)")
    return freq.upper()


def seasonality(freq: str) -> int:
    """The season length of a frequency: H 24, D 7, W 52, M 12, Q 4, Y 1."""
    return SEASONALITY[check_freq(freq)]


# ------------------------------------------------------------------------------------------------ parsing
def parse_timestamp(text: str) -> np.datetime64 | None:
    """An ISO date or date-time ("2020-01-31", "2020-01-31 13:00", "2020-01-31T13:00:00Z"), "YYYY-MM" or "YYYY",
    as datetime64[s]; None when `text` is none of these (the caller knows the file and line to name).

    A time with a UTC offset is converted to UTC, so that local times across a daylight-saving change stay evenly
    spaced; times without one are taken as they are.
    """
    text = text.strip()
    if len(text) == 4 and text.isdigit():  # "1949": a year
        text += "-01"
    if len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit():  # "1949-01": a month
        text += "-01"
    try:
        stamp = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return np.datetime64(stamp.replace(microsecond=0), "s")


# ------------------------------------------------------------------------------------------------ spacing
def infer_freq(timestamps: np.ndarray | list, where: str = "") -> str:
    """The frequency of increasing timestamps, from their spacing.

    The smallest step between neighbours sets the frequency and every other step must be a whole number of it (a
    larger step is a gap of missing values). Raises InputError when the steps match no frequency or are not
    multiples of the smallest.

    Args:
        timestamps: (T,) datetime64, strictly increasing, T >= 2; or a list of such arrays (the series of one
            file, which share one frequency).
        where: what they are (a file, a series), for messages.
    """
    groups = timestamps if isinstance(timestamps, list) else [timestamps]
    groups = [np.asarray(g, dtype="datetime64[s]") for g in groups]
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        raise InputError(f"cannot infer the frequency{where}: no series has two timestamps; pass the frequency "
                         f"(one of {', '.join(FREQS)})")
    steps = np.concatenate([np.diff(g).astype(np.int64) for g in groups])  # (S,) seconds
    smallest = int(steps.min())
    for freq, seconds in _SECONDS.items():
        if smallest == seconds:
            return _multiples(freq, steps, seconds, where)
    # calendar months: every timestamp on the same day and time of its month, or on the last day of its month
    months = np.concatenate([np.diff(_month_index(g)) for g in groups])
    if all(_on_month_grid(g) for g in groups) and months.min() > 0:
        step = int(months.min())
        for freq, count in _MONTHS.items():
            if step == count:
                return _multiples(freq, months, count, where)
    raise InputError(f"cannot infer the frequency{where}: the smallest step between timestamps is "
                     f"{_span(smallest)}, which is no hour, day, week, month, quarter or year; pass the frequency or "
                     "put the timestamps on a regular grid")


def grid_positions(timestamps: np.ndarray, freq: str, where: str = "") -> np.ndarray:
    """The position of each timestamp on the grid of `freq` that starts at the first one: (T,) int64, 0 first.

    Gaps give jumps (0, 1, 3: the third step is missing). An InputError when a timestamp falls between grid
    points (an hourly series with a 13:30 in it).
    """
    timestamps = np.asarray(timestamps, dtype="datetime64[s]")
    if freq in _SECONDS:
        offsets = (timestamps - timestamps[0]).astype(np.int64)
        unit = _SECONDS[freq]
    else:
        offsets = _month_index(timestamps) - _month_index(timestamps[:1])[0]
        unit = _MONTHS[freq]
        if not _on_month_grid(timestamps):
            bad = _off_month_grid(timestamps)
            raise InputError(f"timestamp {timestamps[bad]}{where} is not on the {freq} grid starting at "
                             f"{timestamps[0]} (a different day or time of the month): give every timestamp the "
                             "same day and time of its period, or the period's last day")
    off = np.flatnonzero(offsets % unit)
    if off.size:
        raise InputError(f"timestamp {timestamps[off[0]]}{where} is not on the {freq} grid starting at "
                         f"{timestamps[0]}: put every timestamp a whole number of steps after the first, or pass the "
                         "right frequency")
    return offsets // unit


def date_range(start: np.datetime64, freq: str, n: int) -> np.ndarray:
    """(n,) datetime64[s]: `start` and the n - 1 grid points after it. Months keep the day of the month, clipped
    to the month's length (a month-end series stays on month ends)."""
    start = np.datetime64(start, "s")
    if freq in _SECONDS:
        return start + np.arange(n, dtype=np.int64) * np.timedelta64(_SECONDS[freq], "s")
    month0 = start.astype("datetime64[M]")
    months = month0 + np.arange(n) * _MONTHS[freq]  # (n,) datetime64[M]
    day = (start.astype("datetime64[D]") - month0.astype("datetime64[D]")).astype(np.int64)
    time_of_day = start - start.astype("datetime64[D]")
    if _is_month_end(start):
        days = (months + 1).astype("datetime64[D]") - 1  # the last day of each month
    else:
        lengths = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
        days = months.astype("datetime64[D]") + np.minimum(day, lengths - 1)
    return days.astype("datetime64[s]") + time_of_day


# ------------------------------------------------------------------------------------------------ features
def calendar_features(start: np.datetime64, freq: str, n: int) -> np.ndarray:
    """Calendar features of n steps from `start`: (n, F) float64 in [-0.5, 0.5], the columns
    CALENDAR_FEATURES[freq] (hourly: hour of day, day of week; daily: day of week, day of month, day of year;
    weekly: week of year; monthly: month of year; quarterly: quarter of year; yearly: none, F = 0).

    Each is an integer position p in 0..P-1 scaled as p / (P - 1) - 0.5 (GluonTS's convention). Days of the week
    count from Monday; the week of the year is the day of the year // 7 (0..52), not the ISO week.
    """
    freq = check_freq(freq)
    times = date_range(start, freq, n)  # (n,)
    days = times.astype("datetime64[D]")
    columns = {
        "hour_of_day": ((times - days).astype(np.int64) // 3600, 24),
        "day_of_week": ((days.astype(np.int64) + 3) % 7, 7),  # 1970-01-01 was a Thursday (3 days after Monday)
        "day_of_month": ((days - times.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64), 31),
        "day_of_year": (_day_of_year(days), 366),
        "week_of_year": (_day_of_year(days) // 7, 53),
        "month_of_year": (times.astype("datetime64[M]").astype(np.int64) % 12, 12),
        "quarter_of_year": (times.astype("datetime64[M]").astype(np.int64) % 12 // 3, 4),
    }
    out = np.empty((n, len(CALENDAR_FEATURES[freq])))  # (n, F)
    for j, name in enumerate(CALENDAR_FEATURES[freq]):
        position, size = columns[name]
        out[:, j] = position / (size - 1) - 0.5
    return out


def phase_features(n: int, period: int, offset: int = 0) -> np.ndarray:
    """The position of steps offset .. offset + n - 1 within a season of `period` steps, for series without
    timestamps (M4's): (n, 1) float64, (step % period) / (period - 1) - 0.5 in [-0.5, 0.5]; (n, 0) when
    period <= 1 (no season). Pass the history's length as `offset` for the steps of its forecast."""
    if period <= 1:
        return np.zeros((n, 0))
    phase = (offset + np.arange(n)) % period  # (n,)
    return (phase / (period - 1) - 0.5)[:, None]


# ------------------------------------------------------------------------------------------------ helpers
def _multiples(freq: str, steps: np.ndarray, unit: int, where: str) -> str:
    bad = np.flatnonzero(steps % unit)
    if bad.size:
        show = _span if freq in _SECONDS else (lambda months: f"{months} months")
        raise InputError(f"irregular timestamps{where}: the steps are {freq} ({show(unit)}) but one is "
                         f"{show(int(steps[bad[0]]))}, not a whole number of them: put the timestamps on a regular "
                         "grid, or pass the frequency")
    return freq


def _month_index(times: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each timestamp: (T,) int64."""
    return np.asarray(times, dtype="datetime64[s]").astype("datetime64[M]").astype(np.int64)


def _is_month_end(times) -> np.ndarray | bool:
    days = np.asarray(times, dtype="datetime64[s]").astype("datetime64[D]")
    return (days + 1).astype("datetime64[M]") != days.astype("datetime64[M]")


def _within_month(times: np.ndarray) -> np.ndarray:
    """Seconds since the start of each timestamp's month: (T,) int64."""
    times = np.asarray(times, dtype="datetime64[s]")
    return (times - times.astype("datetime64[M]").astype("datetime64[s]")).astype(np.int64)


def _off_month_grid(times: np.ndarray) -> int:
    """The first timestamp not on the month grid of the first one (same day and time of the month, or month ends
    at the same time of day); -1 when all are on it."""
    times = np.asarray(times, dtype="datetime64[s]")
    if _is_month_end(times[0]):
        time_of_day = (times - times.astype("datetime64[D]")).astype(np.int64)
        ok = _is_month_end(times) & (time_of_day == time_of_day[0])
    else:
        within = _within_month(times)
        ok = within == within[0]
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else -1


def _on_month_grid(times: np.ndarray) -> bool:
    return _off_month_grid(times) < 0


def _day_of_year(days: np.ndarray) -> np.ndarray:
    return (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)


def _span(seconds: int) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"
