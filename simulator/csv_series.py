"""The one reader of timestamped CSV series (load and irradiance profiles).

:func:`read_csv_series` reads a CSV with one header line, a timestamp column
(ISO 8601, with or without a UTC offset such as ``2017-01-01 00:00:00+01:00``;
or, when the caller allows it, unix seconds) and numeric columns in any unit.
It picks the timestamp column (the first whose name hints at time, else the
first column) and the value column(s) (by name, summed, or the only numeric
one), and parses every row. :meth:`CsvSeries.regular_step` checks that the step
is regular in absolute time (daylight-saving offsets are fine).

The simulator reads ``[load]`` / ``[pv]`` CSVs with it, the replay (a lab tool)
its load profiles, :mod:`simulator.frequency_series` recorded grid frequency
(unix-second timestamps and missing values allowed); each caller does its own
selection, gap handling and scaling.

Every problem raises :class:`CsvSeriesError`, one line
``FILE:LINE: column 'NAME': problem`` (LINE is the 1-based line of the file, the
header being line 1; LINE and column are left out where they do not apply).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["CsvSeries", "CsvSeriesError", "parse_timestamp", "read_csv_series"]

_TIME_HINTS = ("time", "date", "timestamp", "zeit", "datum")


class CsvSeriesError(ValueError):
    """A CSV series cannot be read; ``str()`` is ``FILE:LINE: column 'NAME': problem``."""

    def __init__(
        self,
        path: str,
        line: int | None,
        column: str | None,
        problem: str,
        about: Literal["file", "column"] = "file",
    ) -> None:
        """Create the error.

        Args:
            path: the CSV file.
            line: 1-based file line (``None``: the file as a whole).
            column: the column concerned, if any.
            problem: what is wrong.
            about: ``"column"`` when the caller's choice of value column is the
                problem (no such column, several candidates), else ``"file"``.
        """
        self.path = path
        """The CSV file."""
        self.line = line
        """1-based file line, or ``None``."""
        self.column = column
        """The column concerned, or ``None``."""
        self.problem = problem
        """What is wrong."""
        self.about = about
        """Whether the value-column choice (``"column"``) or the file is at fault."""
        where = path if line is None else f"{path}:{line}"
        col = "" if column is None else f" column '{column}':"
        super().__init__(f"{where}:{col} {problem}")


@dataclass(frozen=True, slots=True)
class CsvSeries:
    """The parsed file: one timestamp and one value per data row."""

    path: str
    """The file it came from."""
    tname: str
    """Name of the timestamp column."""
    vname: str
    """Name of the value column (the names joined by ``+`` when several are summed)."""
    cells: list[str]
    """The timestamp cells as written (for messages)."""
    lines: list[int]
    """1-based file line of each row."""
    local: list[dt.datetime]
    """Each timestamp as written, made aware (naive ones get the reader's zone)."""
    t_unix: npt.NDArray[np.float64]
    """Each timestamp in seconds since the epoch."""
    values: npt.NDArray[np.float64]
    """Each row's value (the sum of the chosen columns), finite; nan for a missing
    value where the caller allowed them (``missing_ok``)."""

    def regular_step(self, single: float = 900.0) -> float:
        """The step between the first two rows, checked to hold between all (absolute time).

        Args:
            single: the step assumed for a file with a single row.

        Raises:
            CsvSeriesError: timestamps not increasing or an irregular step, naming the line.
        """
        if self.t_unix.size < 2:
            return single
        steps = np.diff(self.t_unix)
        step = float(steps[0])
        if step <= 0:
            raise CsvSeriesError(self.path, self.lines[1], self.tname, "timestamps not increasing"
                                 f" ({self.cells[0]!r} then {self.cells[1]!r})")
        bad = np.flatnonzero(np.abs(steps - step) > 1e-6)
        if bad.size:
            j = int(bad[0])
            raise CsvSeriesError(
                self.path, self.lines[j + 1], self.tname,
                f"irregular step: {steps[j]:g} s from {self.cells[j]!r} to "
                f"{self.cells[j + 1]!r}, expected {step:g} s as between the first two rows")
        return step


def parse_timestamp(text: str, naive_tz: dt.tzinfo | None = dt.UTC) -> dt.datetime:
    """Parse an ISO 8601 timestamp into an aware datetime. Raises ValueError.

    Args:
        text: the cell (``Z`` is UTC).
        naive_tz: the zone of a timestamp without offset; ``None`` = this machine's
            local zone (as ``datetime.timestamp()`` takes a naive time).
    """
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=naive_tz) if naive_tz is not None else t.astimezone()
    return t


def read_csv_series(
    path: str,
    columns: Sequence[str] | None = None,
    *,
    naive_tz: dt.tzinfo | None = dt.UTC,
    skip_blank_lines: bool = False,
    pick_hint: str = "",
    unix_seconds: bool = False,
    missing_ok: bool = False,
) -> CsvSeries:
    """Read and parse a timestamped CSV series.

    Args:
        path: the CSV file (UTF-8, a byte-order mark is ignored).
        columns: value column(s) by name, summed per row; ``None`` = the only
            numeric column.
        naive_tz: zone of timestamps without offset (``None`` = local zone).
        skip_blank_lines: skip blank lines anywhere; otherwise only trailing
            ones are dropped and an inner blank line is a malformed row.
        pick_hint: how the user names a column, added to the "several numeric
            columns" error (e.g. ``--load-column NAME``).
        unix_seconds: also accept a timestamp written as a number: seconds since
            the epoch (UTC).
        missing_ok: an empty or ``nan`` value cell is a missing value (nan in
            :attr:`CsvSeries.values`) instead of an error; infinities and text
            are still errors.

    Raises:
        CsvSeriesError: one line naming file, line, column and problem.
    """
    header, data, lines = _read_rows(path, skip_blank_lines)
    time_idx, val_idx = _pick_columns(path, header, data, columns, pick_hint)
    return _parse_rows(path, header, data, lines, time_idx, val_idx, naive_tz,
                       unix_seconds, missing_ok)


def _read_rows(p: str, skip_blank: bool) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, data rows, file line of each row); blank lines dropped as asked."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise CsvSeriesError(p, None, None, "file not found") from None
    except IsADirectoryError:
        raise CsvSeriesError(p, None, None, "is a directory, not a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CsvSeriesError(p, None, None, f"cannot read CSV ({exc})") from None
    numbered = list(enumerate(rows, start=1))
    while numbered and not any(c.strip() for c in numbered[-1][1]):
        numbered.pop()
    if skip_blank:
        numbered = [(n, r) for n, r in numbered if any(c.strip() for c in r)]
    if not numbered:
        raise CsvSeriesError(p, None, None, "empty file (expected a header line and data rows)")
    header = [h.strip() for h in numbered[0][1]]
    data = numbered[1:]
    if not data:
        raise CsvSeriesError(p, numbered[0][0] + 1, None, "no data rows after the header")
    if len(header) < 2:
        raise CsvSeriesError(p, numbered[0][0], None, "need a timestamp column and a value "
                             f"column, header has {len(header)} column(s): {header}")
    return header, [r for _, r in data], [n for n, _ in data]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pick_columns(
    p: str, header: list[str], data: list[list[str]], columns: Sequence[str] | None, hint: str
) -> tuple[int, list[int]]:
    """(timestamp column, value columns): the first whose name hints at time, else the
    first column; ``columns`` by name, else the only numeric one."""
    time_idx = next((i for i, h in enumerate(header)
                     if any(k in h.lower() for k in _TIME_HINTS)), 0)
    if columns is not None:
        picked = []
        for name in columns:
            if name not in header:
                raise CsvSeriesError(p, 1, name, f"no such column; the header has {header}",
                                     about="column")
            if header.index(name) == time_idx:
                raise CsvSeriesError(p, 1, name, "is the timestamp column, pick a numeric one",
                                     about="column")
            picked.append(header.index(name))
        return time_idx, picked
    first = data[0]
    numeric = [i for i, h in enumerate(header)
               if i != time_idx and i < len(first) and _is_number(first[i])]
    if not numeric:
        raise CsvSeriesError(p, 2, None, f"no numeric value column (header {header}, first row "
                             f"{first})", about="column")
    if len(numeric) > 1:
        names = ", ".join(repr(header[i]) for i in numeric)
        raise CsvSeriesError(p, 1, None, f"several numeric columns ({names}); pick one"
                             + (f" with {hint}" if hint else ""), about="column")
    return time_idx, numeric


def _parse_rows(
    p: str,
    header: list[str],
    data: list[list[str]],
    lines: list[int],
    time_idx: int,
    val_idx: list[int],
    naive_tz: dt.tzinfo | None,
    unix_seconds: bool = False,
    missing_ok: bool = False,
) -> CsvSeries:
    """Parse every row: its timestamp and the sum of its value cells (finite, or nan
    for a missing one if ``missing_ok``)."""
    tname = header[time_idx]
    n, width = len(data), len(header)
    t_unix = np.empty(n, dtype=np.float64)
    values = np.zeros(n, dtype=np.float64)
    local: list[dt.datetime] = []
    for k, (row, line) in enumerate(zip(data, lines, strict=True)):
        if len(row) != width:
            raise CsvSeriesError(p, line, None, f"has {len(row)} fields, the header has {width}")
        try:
            t = _timestamp(row[time_idx], naive_tz, unix_seconds)
        except ValueError:
            expected = "ISO 8601, e.g. 2017-01-01 00:00:00+01:00"
            if unix_seconds:
                expected += ", or unix seconds"
            raise CsvSeriesError(p, line, tname, f"unparseable timestamp {row[time_idx]!r} "
                                 f"(expected {expected})") from None
        for i in val_idx:
            values[k] += _cell_value(p, line, header[i], row[i], missing_ok)
        t_unix[k] = t.timestamp()
        local.append(t)
    cells = [row[time_idx] for row in data]
    vname = "+".join(header[i] for i in val_idx)
    return CsvSeries(p, tname, vname, cells, lines, local, t_unix, values)


def _timestamp(text: str, naive_tz: dt.tzinfo | None, unix_seconds: bool) -> dt.datetime:
    """An ISO 8601 cell, or (if allowed) a finite number of unix seconds. Raises ValueError."""
    if unix_seconds:
        try:
            secs = float(text)
        except ValueError:
            pass
        else:
            try:
                return dt.datetime.fromtimestamp(secs, dt.UTC)
            except (OverflowError, OSError):  # nan, inf, beyond year 9999
                raise ValueError(text) from None
    return parse_timestamp(text, naive_tz)


def _cell_value(p: str, line: int, name: str, text: str, missing_ok: bool = False) -> float:
    cell = text.strip()
    if missing_ok and (not cell or cell.lower() == "nan"):
        return math.nan
    try:
        v = float(cell)
    except ValueError:
        what = "empty value" if not cell else f"not a number: {cell!r}"
        raise CsvSeriesError(p, line, name, what) from None
    if not math.isfinite(v):
        raise CsvSeriesError(p, line, name, f"non-finite value {cell!r}")
    return v
