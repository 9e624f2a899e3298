"""Load a load profile (timestamp + one numeric column) from a CSV file.

:func:`load_profile` reads a CSV with one header line, a timestamp column
(ISO 8601, with or without a UTC offset such as ``2017-01-01 00:00:00+01:00``;
naive timestamps are taken as UTC) and one or more numeric columns in any
unit. It picks the column (by name, or the only numeric one), checks that the
step is regular (in absolute time, so daylight-saving offsets are fine),
selects a window (``start`` date/time as written in the file, ``days``) and
scales the window so its peak equals ``peak_w``. The rows before the window are
kept, scaled alike, as the site's history (:attr:`LoadProfile.history_w`): the
replay feeds them to the billing meter as if the site had recorded them. The
reading and parsing is the simulator's one CSV reader
(:mod:`simulator.csv_series`); the selection and the scaling are the replay's.

Every problem raises :class:`~controller.lab.replay.errors.ReplayError` with one
line ``FILE:LINE: column 'NAME': problem`` (LINE is the 1-based line of the
file, the header being line 1).

Units and signs: the returned power is in watts, positive = consumption
(the load draws power from the site bus).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from controller.lab.replay.errors import ReplayError
from simulator.csv_series import CsvSeries, CsvSeriesError, read_csv_series

__all__ = ["BUNDLED_LOAD_CSV", "BUNDLED_PROFILES", "LoadProfile", "load_profile", "parse_start"]

_DATA = Path(__file__).parent / "data"
BUNDLED_PROFILES: dict[str, Path] = {
    "metal_processing": _DATA / "load_metal_processing_LP_G_MV.csv",
    "galvanization": _DATA / "load_galvanization_LP_G_G.csv",
}
"""The load profiles shipped with the package (a calendar year each, 15 min, local time
Europe/Berlin), by their ``--profile`` name; attribution in ``data/README.md``."""
BUNDLED_LOAD_CSV: Path = BUNDLED_PROFILES["metal_processing"]
"""The default bundled profile (metal processing, 2018)."""


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
    history_w: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    """The file's rows before the selection, scaled alike (W, oldest first; they end one
    step before :attr:`start_unix_s`): the site's history, as if it had recorded it."""

    @property
    def duration_s(self) -> float:
        """Covered time span, seconds (samples × step: each sample holds for one step)."""
        return float(self.power_w.size) * self.step_s

    @property
    def peak_w(self) -> float:
        """Largest load of the selection, watts."""
        return float(self.power_w.max())


def _err(path: str, line: int | None, column: str | None, problem: str) -> ReplayError:
    """A selection problem, in the CSV reader's one-line format."""
    return ReplayError(str(CsvSeriesError(path, line, column, problem)), source=path)


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
    try:
        series = read_csv_series(p, None if column is None else [column],
                                 pick_hint="--load-column NAME")
        step_s = series.regular_step()
    except CsvSeriesError as exc:
        raise ReplayError(str(exc), source=p) from None
    i0, i1 = _select(p, series, step_s, start_dt, days)
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
        step_s=step_s,
        power_w=raw * scale,
        raw=raw,
        scale=scale,
        first_line=series.lines[i0],
        history_w=series.values[:i0] * scale,
    )


def _select(
    p: str, series: CsvSeries, step: float, start_dt: dt.datetime | None, days: float | None
) -> tuple[int, int]:
    """Row range ``[i0, i1)`` from ``start_dt`` (wall time as written, or an instant) for
    ``days`` days."""
    n, tname = series.t_unix.size, series.tname
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
