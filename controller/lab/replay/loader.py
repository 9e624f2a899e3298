"""Load a load profile (timestamp + one numeric column) from a CSV file.

:func:`load_profile` reads a CSV with one header line, a timestamp column
(ISO 8601, with or without a UTC offset such as ``2017-01-01 00:00:00+01:00``;
naive timestamps are taken as UTC) and one or more numeric columns in any
unit. It picks the column (by name, or the only numeric one), checks that the
step is regular (in absolute time, so daylight-saving offsets are fine),
selects a window (``start`` date/time as written in the file, ``days``) and
scales the window so its peak equals ``peak_w``. Pure stdlib ``csv`` + numpy.

Every problem raises :class:`~controller.lab.replay.errors.ReplayError` with one
line ``FILE:LINE: column 'NAME': problem`` (LINE is the 1-based line of the
file, the header being line 1).

Units and signs: the returned power is in watts, positive = consumption
(the load draws power from the site bus).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from controller.lab.replay.errors import ReplayError

__all__ = ["BUNDLED_LOAD_CSV", "LoadProfile", "load_profile", "parse_start"]

BUNDLED_LOAD_CSV: Path = Path(__file__).parent / "data" / "load_metal_processing_LP_G_MV.csv"
"""The load profile shipped with the package (one month of a metal-processing business)."""

_TIME_HINTS = ("time", "date", "timestamp", "zeit", "datum")


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """A regular load series selected from a CSV file."""

    path: str
    """The file it came from."""
    column: str
    """The value column used."""
    start: dt.datetime
    """Timestamp of the first selected sample, as written in the file (aware)."""
    start_unix_s: float
    """The same instant in seconds since the epoch."""
    step_s: float
    """Sample spacing in seconds (regular)."""
    power_w: npt.NDArray[np.float64]
    """Load power per sample, watts (+ = consumption), after scaling."""
    raw: npt.NDArray[np.float64]
    """The selected values in the file's own unit, before scaling."""
    scale: float
    """Factor applied: ``power_w = raw * scale`` (1.0 when no peak was given)."""
    first_line: int
    """1-based file line of the first selected sample."""

    @property
    def duration_s(self) -> float:
        """Covered time span, seconds (samples × step: each sample holds for one step)."""
        return float(self.power_w.size) * self.step_s

    @property
    def peak_w(self) -> float:
        """Largest load of the selection, watts."""
        return float(self.power_w.max())


def _err(path: str, line: int | None, column: str | None, problem: str) -> ReplayError:
    where = path if line is None else f"{path}:{line}"
    col = "" if column is None else f" column '{column}':"
    return ReplayError(f"{where}:{col} {problem}", source=path)


def _parse_time(text: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp; naive → UTC. Raises ValueError."""
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t


def parse_start(text: str) -> dt.datetime:
    """Parse a ``--start`` value: ``YYYY-MM-DD`` or an ISO date-time (offset optional).

    Returns a naive datetime (meaning "wall time as written in the file") or an
    aware one (an absolute instant) when the text carries an offset.

    Raises:
        ReplayError: the text is not a date or date-time.
    """
    s = text.strip()
    try:
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        return dt.datetime.fromisoformat(s)
    except ValueError:
        raise ReplayError(
            f"--start: {text!r} is not a date (YYYY-MM-DD) or ISO date-time", source="--start"
        ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_profile(
    path: str | Path,
    *,
    column: str | None = None,
    peak_w: float | None = None,
    start: str | dt.datetime | None = None,
    days: float | None = None,
) -> LoadProfile:
    """Read, validate, select and scale a load profile.

    Args:
        path: CSV file: one header line, a timestamp column, numeric column(s).
        column: Name of the value column; ``None`` = the only numeric column.
        peak_w: Scale the selection so its largest value is this many watts
            (> 0); ``None`` = use the values as watts unchanged.
        start: First instant to use: a naive date/date-time is compared with the
            file's timestamps as written (local wall time), an aware one as an
            absolute instant; ``None`` = the first row. A start more than one
            step before the first row or after the last one is an error naming
            ``--start``, its value and the data's range.
        days: Length of the selection in days (> 0); ``None`` = to the end.

    Returns:
        The selected, scaled profile.

    Raises:
        ReplayError: one line naming file, line, column and problem.
    """
    p = str(path)
    if peak_w is not None and not (math.isfinite(peak_w) and peak_w > 0):
        raise ReplayError(f"--load-peak-w: must be a positive number of watts, got {peak_w}",
                          source="--load-peak-w")
    if days is not None and not (math.isfinite(days) and days > 0):
        raise ReplayError(f"--days: must be a positive number of days, got {days}",
                          source="--days")
    start_dt = parse_start(start) if isinstance(start, str) else start
    header, data = _read_rows(p)
    time_idx, val_idx = _pick_columns(p, header, data, column)
    series = _parse_series(p, header, data, time_idx, val_idx)
    i0, i1 = _select(p, series, start_dt, days)
    raw = series.values[i0:i1].copy()
    scale = 1.0
    if peak_w is not None:
        top = float(raw.max())
        if top <= 0:
            raise _err(p, None, series.vname, f"cannot scale to --load-peak-w {peak_w:g}: the "
                       f"selected values peak at {top:g} (need a positive maximum)")
        scale = peak_w / top
    return LoadProfile(
        path=p,
        column=series.vname,
        start=series.local[i0],
        start_unix_s=float(series.t_unix[i0]),
        step_s=series.step_s,
        power_w=raw * scale,
        raw=raw,
        scale=scale,
        first_line=i0 + 2,
    )


def _read_rows(p: str) -> tuple[list[str], list[list[str]]]:
    """(header, data rows) of the CSV file; trailing blank lines dropped, data row k is line k+2."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise _err(p, None, None, "file not found") from None
    except IsADirectoryError:
        raise _err(p, None, None, "is a directory, not a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _err(p, None, None, f"cannot read CSV ({exc})") from None
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise _err(p, None, None, "empty file (expected a header line and data rows)")
    header = [h.strip() for h in rows[0]]
    data = rows[1:]
    if not data:
        raise _err(p, 2, None, "no data rows after the header")
    if len(header) < 2:
        raise _err(p, 1, None, f"need a timestamp column and a value column, header has "
                               f"{len(header)} column(s): {header}")
    return header, data


def _pick_columns(
    p: str, header: list[str], data: list[list[str]], column: str | None
) -> tuple[int, int]:
    """(timestamp column, value column): the first whose name hints at time, else the first
    column; ``column`` by name, else the only numeric one."""
    time_idx = next((i for i, h in enumerate(header)
                     if any(k in h.lower() for k in _TIME_HINTS)), 0)
    first = data[0]
    if column is not None:
        if column not in header:
            raise _err(p, 1, column, f"no such column; the header has {header}")
        val_idx = header.index(column)
        if val_idx == time_idx:
            raise _err(p, 1, column, "is the timestamp column, pick a numeric one")
        return time_idx, val_idx
    numeric = [i for i, h in enumerate(header)
               if i != time_idx and i < len(first) and _is_number(first[i])]
    if not numeric:
        raise _err(p, 2, None, f"no numeric value column (header {header}, first row {first})")
    if len(numeric) > 1:
        names = ", ".join(repr(header[i]) for i in numeric)
        raise _err(p, 1, None, f"several numeric columns ({names}); pick one with "
                               "--load-column NAME")
    return time_idx, numeric[0]


@dataclass(frozen=True, slots=True)
class _Series:
    """The parsed file: one timestamp and one value per data row, and the regular step."""

    tname: str
    vname: str
    cells: list[str]
    """The timestamp cells as written (for messages)."""
    local: list[dt.datetime]
    t_unix: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    step_s: float


def _parse_series(
    p: str, header: list[str], data: list[list[str]], time_idx: int, val_idx: int
) -> _Series:
    """Parse every row (timestamp and value) and check that the step is regular."""
    tname, vname = header[time_idx], header[val_idx]
    n = len(data)
    t_unix = np.empty(n, dtype=np.float64)
    values = np.empty(n, dtype=np.float64)
    local: list[dt.datetime] = []
    width = len(header)
    for k, row in enumerate(data):
        line = k + 2
        if len(row) != width:
            raise _err(p, line, None, f"has {len(row)} fields, the header has {width}")
        try:
            t = _parse_time(row[time_idx])
        except ValueError:
            raise _err(p, line, tname, f"unparseable timestamp {row[time_idx]!r} "
                                       "(expected ISO 8601, e.g. 2017-01-01 00:00:00+01:00)"
                       ) from None
        cell = row[val_idx].strip()
        try:
            v = float(cell)
        except ValueError:
            what = "empty value" if not cell else f"not a number: {cell!r}"
            raise _err(p, line, vname, what) from None
        if not math.isfinite(v):
            raise _err(p, line, vname, f"non-finite value {cell!r}")
        t_unix[k] = t.timestamp()
        values[k] = v
        local.append(t)
    cells = [row[time_idx] for row in data]
    return _Series(tname, vname, cells, local, t_unix, values, _regular_step(p, tname, cells,
                                                                              t_unix))


def _regular_step(p: str, tname: str, cells: list[str], t_unix: npt.NDArray[np.float64]) -> float:
    """The step between the first two rows, checked to hold between all (absolute time)."""
    if t_unix.size < 2:
        return 900.0  # a single sample: assume the common 15-min metering step
    steps = np.diff(t_unix)
    step = float(steps[0])
    if step <= 0:
        raise _err(p, 3, tname, f"timestamps not increasing ({cells[0]!r} then {cells[1]!r})")
    bad = np.flatnonzero(np.abs(steps - step) > 1e-6)
    if bad.size:
        j = int(bad[0])
        raise _err(p, j + 3, tname,
                   f"irregular step: {steps[j]:g} s from {cells[j]!r} to {cells[j + 1]!r}, "
                   f"expected {step:g} s as between the first two rows")
    return step


def _select(
    p: str, series: _Series, start_dt: dt.datetime | None, days: float | None
) -> tuple[int, int]:
    """Row range ``[i0, i1)`` from ``start_dt`` (wall time as written, or an instant) for
    ``days`` days."""
    n, step, tname = series.t_unix.size, series.step_s, series.tname
    i0 = 0
    if start_dt is not None:
        # A start within one step before the first sample selects it (a file stamped
        # at the end of each interval begins at 00:15 for the day 00:00).
        covers = f"the data covers {series.cells[0]!r} to {series.cells[-1]!r}"
        if start_dt.tzinfo is None:
            walls = [t.replace(tzinfo=None) for t in series.local]
            early = start_dt < walls[0] - dt.timedelta(seconds=step)
            i0 = next((i for i, w in enumerate(walls) if w >= start_dt), n)
        else:
            s_unix = start_dt.timestamp()
            early = s_unix < series.t_unix[0] - step
            i0 = int(np.searchsorted(series.t_unix, s_unix - 1e-6))
        if early:
            raise _err(p, None, tname, f"--start {start_dt.isoformat()} is before the first "
                                       f"timestamp {series.cells[0]!r} ({covers})")
        if i0 >= n:
            raise _err(p, None, tname, f"empty selection: --start {start_dt.isoformat()} is after "
                                       f"the last timestamp {series.cells[-1]!r} ({covers})")
    if days is None:
        return i0, n
    count = round(days * 86400.0 / step)
    if count < 1:
        raise _err(p, None, tname, f"empty selection: --days {days:g} is shorter than one "
                                   f"step ({step:g} s)")
    if i0 + count > n:
        have = (n - i0) * step / 86400.0
        raise _err(p, None, tname, f"selection too short: --days {days:g} asked from "
                                   f"{series.cells[i0]!r}, the file has {have:.3g} day(s) "
                                   "from there")
    return i0, i0 + count
