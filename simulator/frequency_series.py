"""Grid-frequency time series: the type, the recorded-file reader and the statistics.

* :class:`FrequencySeries` — frequency (Hz) on a regular grid from simulated
  time 0, nan where it is unknown; :meth:`FrequencySeries.at` answers the
  frequency at any site times (vectorised). The simulator's ``[frequency]``
  table and the replay use it; :mod:`simulator.frequency_synthetic` makes one.
* :func:`read_frequency_csv` — a recorded trace (timestamp and Hz columns),
  read with the one CSV reader (:func:`simulator.csv_series.read_csv_series`),
  checked and regularised as described there.
* :class:`FrequencyGaps` — what was missing in a recorded file.
* :func:`frequency_statistics` — the figures of
  ``frequency_statistics.md`` (std, percentiles, autocorrelation, abs(df/dt),
  mean abs deviation by minute of the hour) for any series, so a generator and
  a recording are compared by the same code.

Units: Hz for frequency, mHz for deviations in the statistics, seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .csv_series import CsvSeries, CsvSeriesError, read_csv_series

__all__ = [
    "ACF_LAGS_S",
    "MAX_BRIDGE_S",
    "MAX_DEVIATION_HZ",
    "PERCENTILES",
    "FrequencyGaps",
    "FrequencySeries",
    "frequency_statistics",
    "read_frequency_csv",
]

FloatArray = npt.NDArray[np.float64]

MAX_BRIDGE_S = 5.0
"""Default longest stretch without a valid sample that is bridged by linear interpolation (s)."""
MAX_DEVIATION_HZ = 5.0
"""A recorded value further than this from the nominal frequency is a measurement error
(0 Hz, 65 Hz), treated as missing (the same bound as a scripted event's ``delta_hz``)."""
ACF_LAGS_S = (1, 10, 60, 300, 900, 3600)
"""Lags of the autocorrelation in :func:`frequency_statistics` (s)."""
PERCENTILES = (0.1, 1.0, 5.0, 50.0, 95.0, 99.0, 99.9)
"""Percentiles of the deviation in :func:`frequency_statistics` (%)."""
_MAX_PROBLEM_LINES = 10


@dataclass(frozen=True, slots=True)
class FrequencyGaps:
    """Missing stretches of a recorded trace (all zero for a synthetic one)."""

    count: int = 0
    """Stretches of unknown frequency (longer than the bridging limit, or at the ends)."""
    seconds: float = 0.0
    """Their total length (s)."""
    longest_s: float = 0.0
    """The longest of them (s)."""
    bridged: int = 0
    """Short stretches bridged by linear interpolation (not unknown)."""

    def as_dict(self) -> dict[str, float | int]:
        """The figures as a JSON-ready mapping (the replay's ``frequency_gaps``)."""
        return {"count": self.count, "seconds": self.seconds, "longest_s": self.longest_s,
                "bridged": self.bridged}


@dataclass(frozen=True, slots=True)
class FrequencySeries:
    """Grid frequency every ``step_s`` from simulated time 0 (Hz; nan = unknown).

    The series repeats after its end, like a load profile.
    """

    hz: FloatArray
    """Frequency per sample (Hz); nan where it is unknown (a long gap)."""
    step_s: float
    """Sample spacing (s, > 0)."""
    source: str
    """Where it came from: the file, or ``synthetic(seed=N)``."""
    start_unix_s: float | None = None
    """The instant of sample 0 (recorded files), ``None`` for a synthetic series."""
    gaps: FrequencyGaps = field(default_factory=FrequencyGaps)
    """What was missing in the file."""
    problems: tuple[str, ...] = ()
    """One line per problem found in the file (file:line: column: what), for the log."""

    @property
    def duration_s(self) -> float:
        """Covered time span (s): samples × step."""
        return float(self.hz.size) * self.step_s

    def at(self, t_s: npt.ArrayLike) -> FloatArray:
        """Frequency at site times ``t_s`` (s since simulated time 0), vectorised.

        Linear interpolation between neighbouring samples, cyclic after the end;
        nan where a neighbour that contributes is unknown.
        """
        t = np.asarray(t_s, dtype=np.float64)
        n = self.hz.size
        pos = np.mod(t / self.step_s, n)
        i0 = np.floor(pos).astype(np.int64) % n
        frac = pos - np.floor(pos)
        v0 = self.hz[i0]
        v1 = self.hz[(i0 + 1) % n]
        out: FloatArray = np.where(frac == 0.0, v0, v0 * (1.0 - frac) + v1 * frac)
        return out

    def at_scalar(self, t_s: float) -> float:
        """:meth:`at` for one time, without numpy's per-call overhead (~30 µs there):
        the physics asks at every sub-step."""
        n = self.hz.size
        pos = (t_s / self.step_s) % n
        i0 = int(pos) % n
        frac = pos - int(pos)
        v0 = float(self.hz[i0])
        return v0 if frac == 0.0 else v0 * (1.0 - frac) + float(self.hz[(i0 + 1) % n]) * frac

    def gaps_within(self, duration_s: float) -> FrequencyGaps:
        """The unknown stretches met in ``[0, duration_s)`` (repeating after the end),
        with the file's count of bridged gaps: what a run of that length saw."""
        n = max(1, math.ceil(duration_s / self.step_s - 1e-9))
        return _gaps(self.at(np.arange(n) * self.step_s), self.step_s, self.gaps.bridged)

    def summary(self) -> str:
        """One line: source, length, step and (of a recording) the gaps (for the log)."""
        g = self.gaps
        if self.start_unix_s is None:
            return f"{self.source}: {self.duration_s:g} s at {self.step_s:g} s, repeating"
        return (f"{self.source}: {self.duration_s:g} s at {self.step_s:g} s; {g.count} gap(s) of"
                f" unknown frequency, {g.seconds:g} s in total, longest {g.longest_s:g} s;"
                f" {g.bridged} short gap(s) interpolated")

    def problem_lines(self, limit: int = _MAX_PROBLEM_LINES) -> list[str]:
        """The first ``limit`` problem lines, plus one line counting the rest."""
        lines = list(self.problems[:limit])
        if len(self.problems) > limit:
            lines.append(f"{self.source}: ... and {len(self.problems) - limit} more problem(s)")
        return lines


def read_frequency_csv(
    path: str,
    *,
    column: str | None = None,
    nominal_hz: float = 50.0,
    max_bridge_s: float = MAX_BRIDGE_S,
) -> FrequencySeries:
    """Read a recorded frequency trace and put it on a regular grid from time 0.

    The file: one header line, a timestamp column (ISO 8601 with a UTC offset —
    a naive one is UTC — or unix seconds) and a value column in Hz (``column``,
    else the only numeric one). Sample 0 of the series is the first row: the
    trace starts at simulated time 0 whatever its date.

    Rules (each problem becomes one line in :attr:`FrequencySeries.problems`):

    * a row whose timestamp is not after the latest one before it is ignored;
    * an empty or ``nan`` value, or one further than :data:`MAX_DEVIATION_HZ`
      from ``nominal_hz``, is missing;
    * the grid step is the median spacing of the rows; it must be at most 1 s
      (a coarser file is rejected);
    * between two valid samples at most ``max_bridge_s`` apart (time without a
      valid sample) the frequency is linearly interpolated; a longer gap, and
      missing samples at the start or the end, is unknown (nan: frequency
      response then asks for 0 W) and counted in :attr:`FrequencySeries.gaps`.

    Raises:
        CsvSeriesError: an unusable file (unreadable, unparseable timestamp or
            text value, coarser than one sample per second, fewer than two valid
            samples), one line naming file, line, column and value.
    """
    series = read_csv_series(path, None if column is None else [column], skip_blank_lines=True,
                             unix_seconds=True, missing_ok=True)
    problems: list[str] = []
    keep = _monotonic_rows(series, problems)
    t = series.t_unix[keep]
    v = series.values[keep].copy()
    lines = np.asarray(series.lines)[keep]
    _mark_invalid(series, v, lines, nominal_hz, problems)
    step = _grid_step(series, keep, t)
    valid = np.isfinite(v)
    if int(valid.sum()) < 2:
        raise CsvSeriesError(path, None, series.vname, f"fewer than two valid samples within "
                             f"{nominal_hz - MAX_DEVIATION_HZ:g}..{nominal_hz + MAX_DEVIATION_HZ:g}"
                             " Hz: no usable frequency")
    n = math.floor((t[-1] - t[0]) / step + 1e-6) + 1
    grid = t[0] + np.arange(n) * step
    hz, bridged = _regularise(grid, t[valid], v[valid], step, max_bridge_s)
    problems.sort(key=_line_of)
    return FrequencySeries(hz=hz, step_s=step, source=path, start_unix_s=float(t[0]),
                           gaps=_gaps(hz, step, bridged), problems=tuple(problems))


def _line_of(problem: str) -> int:
    """The file line a problem line names (for sorting them in file order)."""
    head = problem.split(": ", 1)[0]
    number = head.rsplit(":", 1)[-1]
    return int(number) if number.isdigit() else 0


def _monotonic_rows(series: CsvSeries, problems: list[str]) -> npt.NDArray[np.bool_]:
    """Rows whose timestamp is after every earlier one; the others are reported."""
    t = series.t_unix
    latest = np.maximum.accumulate(t)
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = t[1:] > latest[:-1]
    for k in np.flatnonzero(~keep):
        prev = int(np.flatnonzero(t[:k] == latest[k - 1])[0])
        problems.append(str(CsvSeriesError(
            series.path, series.lines[k], series.tname,
            f"timestamp {series.cells[k]!r} is not after {series.cells[prev]!r} (line "
            f"{series.lines[prev]}); row ignored")))
    return keep


def _mark_invalid(series: CsvSeries, v: FloatArray, lines: npt.NDArray[np.int64],
                  nominal_hz: float, problems: list[str]) -> None:
    """Out-of-range values become nan; each out-of-range row and each run of missing
    values is one problem line."""
    lo, hi = nominal_hz - MAX_DEVIATION_HZ, nominal_hz + MAX_DEVIATION_HZ
    missing = ~np.isfinite(v)
    bad = ~missing & ((v < lo) | (v > hi))
    for k in np.flatnonzero(bad):
        problems.append(str(CsvSeriesError(
            series.path, int(lines[k]), series.vname,
            f"value {v[k]:g} Hz outside {lo:g}..{hi:g} Hz; treated as missing")))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        what = ("missing value" if b - a == 1
                else f"{b - a} missing values up to line {lines[b - 1]}")
        problems.append(str(CsvSeriesError(series.path, int(lines[a]), series.vname,
                                           f"{what} (empty or nan); treated as missing")))
    v[bad] = np.nan


def _grid_step(series: CsvSeries, keep: npt.NDArray[np.bool_], t: FloatArray) -> float:
    """The median spacing of the kept rows; at most 1 s, else the file is rejected."""
    if t.size < 2:
        raise CsvSeriesError(series.path, None, series.tname, "fewer than two rows with "
                             "increasing timestamps: no usable frequency")
    steps = np.diff(t)
    step = float(np.median(steps))
    if step > 1.0 + 1e-6:
        j = int(np.flatnonzero(steps > 1.0 + 1e-6)[0])
        rows = np.flatnonzero(keep)
        raise CsvSeriesError(
            series.path, series.lines[rows[j + 1]], series.tname,
            f"step {steps[j]:g} s from {series.cells[rows[j]]!r} to {series.cells[rows[j + 1]]!r}"
            f" (median step {step:g} s): need at least one sample per second")
    return step


def _regularise(grid: FloatArray, tv: FloatArray, vv: FloatArray, step: float,
                max_bridge_s: float) -> tuple[FloatArray, int]:
    """Valid samples ``(tv, vv)`` interpolated onto ``grid``; nan across long gaps and
    outside the valid span. Also returns the number of bridged short gaps."""
    hz = np.interp(grid, tv, vv)
    gap = np.diff(tv) - step  # time without a valid sample between neighbours
    nxt = np.searchsorted(tv, grid - 1e-9 * step, side="left")  # first valid sample >= grid
    inside = (nxt > 0) & (nxt < tv.size)
    long_gap = np.zeros(grid.size, dtype=bool)
    long_gap[inside] = gap[nxt[inside] - 1] > max_bridge_s + 1e-6
    exact = np.zeros(grid.size, dtype=bool)
    ok = nxt < tv.size
    exact[ok] = np.abs(tv[nxt[ok]] - grid[ok]) <= 1e-6 * step
    unknown = (grid < tv[0] - 1e-6 * step) | (grid > tv[-1] + 1e-6 * step) | (long_gap & ~exact)
    hz[unknown] = np.nan
    bridged = int(np.count_nonzero((gap > 0.5 * step) & (gap <= max_bridge_s + 1e-6)))
    return hz, bridged


def _gaps(hz: FloatArray, step: float, bridged: int) -> FrequencyGaps:
    """Runs of nan in ``hz``: their number, total and longest length (s)."""
    nan = np.isnan(hz).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], nan, [0]])))
    runs = (edges[1::2] - edges[::2]) * step
    return FrequencyGaps(count=int(runs.size), seconds=float(runs.sum()),
                         longest_s=float(runs.max()) if runs.size else 0.0, bridged=bridged)


def frequency_statistics(
    hz: npt.ArrayLike, step_s: float = 1.0, nominal_hz: float = 50.0
) -> dict[str, object]:
    """The figures of ``frequency_statistics.md`` for a series starting at a full hour.

    Unknown samples (nan) are left out of the distribution and treated as the mean
    deviation in the autocorrelation and df/dt.

    Returns:
        ``mean_mhz``, ``std_mhz``, ``percentiles_mhz`` (at :data:`PERCENTILES`),
        ``max_abs_mhz``, ``share_above_pct`` (abs deviation > 10/20/50/100/200 mHz),
        ``acf`` (at :data:`ACF_LAGS_S`), ``dfdt_mean_mhz_s`` / ``dfdt_p99_mhz_s`` /
        ``dfdt_max_mhz_s`` (abs df/dt over one second), ``minute_mean_abs_mhz``
        (mean abs deviation by minute of the hour, 60 values).
    """
    dev = (np.asarray(hz, dtype=np.float64) - nominal_hz) * 1000.0
    known = np.isfinite(dev)
    d = dev[known]
    filled = np.where(known, dev, float(d.mean()))
    x = filled - filled.mean()
    var = float(np.dot(x, x))
    acf = [float(np.dot(x[:-int(lag / step_s)], x[int(lag / step_s):]) / var)
           if lag / step_s < x.size else math.nan for lag in ACF_LAGS_S]
    per_s = max(1, round(1.0 / step_s))
    dfdt = np.abs(np.diff(filled[::per_s]))
    minute = (np.arange(dev.size) * step_s // 60 % 60).astype(np.int64)
    by_minute = np.bincount(minute[known], np.abs(d), 60) / np.maximum(
        np.bincount(minute[known], None, 60), 1)
    return {
        "mean_mhz": float(d.mean()),
        "std_mhz": float(d.std()),
        "percentiles_mhz": [float(p) for p in np.percentile(d, PERCENTILES)],
        "max_abs_mhz": float(np.abs(d).max()),
        "share_above_pct": [float(100.0 * np.mean(np.abs(d) > lim))
                            for lim in (10, 20, 50, 100, 200)],
        "acf": acf,
        "dfdt_mean_mhz_s": float(dfdt.mean()),
        "dfdt_p99_mhz_s": float(np.percentile(dfdt, 99)),
        "dfdt_max_mhz_s": float(dfdt.max()),
        "minute_mean_abs_mhz": [float(m) for m in by_minute],
    }
