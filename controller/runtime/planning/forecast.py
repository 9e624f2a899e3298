"""Load forecasters: the next intervals' uncontrolled import from the site's own history.

Every forecaster is a pure function of a :class:`History` (the closed
uncontrolled interval means, as the billing meter keeps them) and a horizon:
:func:`forecast` ``(name, history, horizon) -> FloatArray`` gives one value
(W, + = import) per coming interval, the first one starting at
``history.now_start_s``. The names (:data:`FORECASTERS`):

* ``naive_day`` — the same interval yesterday (seasonal naive, lag 1 day).
* ``naive_week`` — the same interval last week (seasonal naive, lag 7 days).
* ``week_max`` — the highest of the same interval over the last ``weeks`` weeks.
* ``week_mean`` — their mean.
* ``day_quantile`` — the ``quantile`` of the same time of day over the last
  ``days`` days (all weekdays alike).
* ``week_ewma`` — seasonal exponential smoothing: the same interval of past
  weeks, weighted ``alpha·(1 − alpha)^k`` from the newest (no trend term;
  numpy only).
* ``week_max_day_q`` — the higher of ``week_max`` and ``day_quantile``.
* ``shape_level`` — shape × level on local days: the typical day (the
  ``shape_q`` quantile per time of day of the last ``shape_days`` past days of
  the same class: ``day_classes = "workday"`` Mon–Fri / Sat / Sun, or
  ``"weekday"``; holidays, days under ``holiday_frac`` of their class's median
  energy, left out), today's part scaled by today's level — the least-squares
  factor of the intervals seen today against the typical ones (the high
  intervals weigh most), pulled toward 1 by ``level_prior`` typical days and
  capped at ``level_cap`` — later days at level 1.

:func:`day_scenarios` gives the same days one by one (scenario ``j`` = the
``j``-th latest past day of each day's class, today's scaled to today's level
against it): the auto limit's day-scenario mode plans over them.

The weekly and daily forecasters' seasons are lags in absolute time (1 day =
86 400 s, 1 week = 604 800 s), so across a daylight-saving change their profile
is off by one hour for a day or a week; ``shape_level`` and :func:`day_scenarios`
index local days and times of day in the :class:`History`'s zone (DST-safe: a
skipped hour is unknown, a repeated one keeps its later value).

Gaps and cold start: an interval without a usable value (missing, NaN, ±inf,
negative values are clipped to 0 W) is skipped by the seasonal statistics; an
interval a forecaster cannot fill falls back to the same time of day of the
most recent day that has it, then to the highest value seen in the last
week (conservative: a plan on it keeps the limit at what was seen); with no
usable history at all the forecast is all NaN and the planner decides (it
plans no shaving beyond the period's billed peak, see ``_auto``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np
import numpy.typing as npt

from controller.errors import PlanningError

__all__ = ["FORECASTERS", "ForecastParams", "History", "day_scenarios", "forecast",
           "utc_offsets"]

FloatArray = npt.NDArray[np.float64]

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
MAX_W = 1e12
"""Values beyond ±1 TW are no measurement of a site: treated as missing."""


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """Tuning of the seasonal statistics (defaults: chosen by the backtest)."""

    weeks: int = 3
    """Past weeks ``week_max`` / ``week_mean`` look at (≥ 1)."""
    days: int = 14
    """Past days ``day_quantile`` looks at (≥ 1)."""
    quantile: float = 0.9
    """Quantile of ``day_quantile`` (0..1)."""
    alpha: float = 0.5
    """Smoothing weight of ``week_ewma`` (0 < alpha ≤ 1)."""
    shape_days: int = 10
    """Past days of the same day class ``shape_level`` takes its shape from (≥ 1)."""
    shape_q: float = 0.5
    """Quantile of those days, per time of day (0..1; 0.5 = the median)."""
    day_classes: str = "workday"
    """``shape_level``'s day classes: ``"workday"`` (Mon–Fri, Sat, Sun) or ``"weekday"``
    (each weekday its own)."""
    holiday_frac: float = 0.6
    """A past day under this share of its class's median daily energy is a holiday: no
    shape or scenario is taken from it (0 = none)."""
    level_cap: float = 1.5
    """Today's level is at most this (≥ 1): a fit against a day unlike today is no level."""
    level_prior: float = 0.25
    """``shape_level``: weight of the shape's own level (1) against today's measured one, as
    a share of a typical day (≥ 0; 0 = today's level alone; module docstring)."""


class History:
    """Closed uncontrolled interval means on a regular grid that ends at ``now_start_s``.

    Built once per plan from the meter's arrays: values are placed by their
    interval start (rounded to the grid), later duplicates win, anything not
    finite or beyond ±:data:`MAX_W` is NaN and negative values count as 0 W
    (export is no peak).
    """

    __slots__ = ("grid", "interval_s", "now_start_s", "zone")

    def __init__(self, values_w: npt.ArrayLike, starts_s: npt.ArrayLike, interval_s: float,
                 now_s: float, *, keep_s: float = 8 * WEEK_S, zone: tzinfo | None = None) -> None:
        """Regularise the history.

        Args:
            values_w: Interval means, W (+ = import).
            starts_s: Their interval start times, unix seconds (same length).
            interval_s: Interval length, seconds (> 0).
            now_s: Now, unix seconds; the forecast starts at the interval that
                contains it (``floor(now / interval) · interval``).
            keep_s: How far back to keep (older values are ignored).
            zone: The site's time zone (days and times of day of ``shape_level``);
                None = UTC.

        Raises:
            PlanningError: bad interval length or time, or arrays of unequal length.
        """
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise PlanningError(f"interval_s: must be a positive number of seconds, got "
                                f"{interval_s}", source="interval_s")
        if not math.isfinite(now_s):
            raise PlanningError(f"now_s: must be a finite unix time, got {now_s}",
                                source="now_s")
        v = np.asarray(values_w, dtype=np.float64).ravel()
        t = np.asarray(starts_s, dtype=np.float64).ravel()
        if v.size != t.size:
            raise PlanningError(f"history: {v.size} values but {t.size} start times",
                                source="history")
        self.interval_s: float = float(interval_s)
        """Interval length, seconds."""
        self.now_start_s: float = math.floor(now_s / interval_s) * interval_s
        """Start of the current interval (the first forecast one), unix seconds."""
        n = max(1, round(keep_s / interval_s))
        self.grid: FloatArray = np.full(n, np.nan)
        """The last ``n`` intervals before ``now_start_s`` (oldest first), W; NaN = unknown."""
        with np.errstate(invalid="ignore"):
            back = np.round((self.now_start_s - t) / interval_s)
        ok = np.isfinite(back) & (back >= 1) & (back <= n) & ~np.isnan(v)
        idx = (n - back[ok]).astype(np.int64)
        good = np.isfinite(v[ok]) & (np.abs(v[ok]) <= MAX_W)
        vals = np.where(good, np.maximum(v[ok], 0.0), np.nan)
        self.grid[idx] = vals
        self.zone: tzinfo = zone or UTC
        """The site's time zone."""

    def lags(self, lag_s: float, count: int, horizon: int) -> FloatArray:
        """``count × horizon``: the values 1, 2, … ``count`` lags of ``lag_s`` back.

        A horizon longer than the lag reuses the forecast's own season: the
        value ``j`` lags back for an interval beyond the first lag is the one
        ``j + 1`` lags back (what has happened), so every row is history."""
        rows = np.empty((count, horizon))
        k = max(1, round(lag_s / self.interval_s))
        steps = np.arange(horizon)
        wrap = steps // k  # extra seasons needed to reach the past
        for j in range(count):
            pos = self.grid.size - (j + 1 + wrap) * k + steps
            ok = (pos >= 0) & (pos < self.grid.size)
            row = np.full(horizon, np.nan)
            row[ok] = self.grid[pos[ok]]
            rows[j] = row
        return rows

    def local_days(self, horizon: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Local day number (days since 1970-01-01) and time-of-day slot of every grid
        interval, then of the ``horizon`` coming ones (DST-safe: by the zone's offset)."""
        steps = np.arange(-self.grid.size, horizon, dtype=np.float64)
        t: FloatArray = self.now_start_s + self.interval_s * steps
        local = t + utc_offsets(self.zone, t)
        day = np.floor(local / DAY_S)
        slot = np.floor((local - day * DAY_S) / self.interval_s + 1e-9)
        return day.astype(np.int64), slot.astype(np.int64)

    def recent_max(self, span_s: float = WEEK_S) -> float:
        """Highest known value in the last ``span_s`` (NaN if none)."""
        tail = self.grid[-max(1, round(span_s / self.interval_s)):]
        return float(np.nanmax(tail)) if np.any(~np.isnan(tail)) else math.nan


@functools.lru_cache(maxsize=64)
def _transitions(zone: tzinfo, year: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The zone's UTC offset changes in ``year`` (UTC; to the quarter hour): (times, offset
    in force from each), starting with the offset at the year's start."""
    def off(ts: float) -> float:
        return (datetime.fromtimestamp(ts, zone).utcoffset() or timedelta()).total_seconds()

    t0 = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    times, offs = [t0], [off(t0)]
    for d in range(1, 367):
        t = t0 + d * DAY_S
        if off(t) != offs[-1]:
            lo, hi = t - DAY_S, t  # the change lies in (lo, hi]: bisect to 15 min
            while hi - lo > 900.0:
                mid = lo + math.floor((hi - lo) / 1800.0) * 900.0
                lo, hi = (lo, mid) if off(mid) != offs[-1] else (mid, hi)
            times.append(hi)
            offs.append(off(hi))
    return tuple(times), tuple(offs)


def utc_offsets(zone: tzinfo, t: FloatArray) -> FloatArray:
    """The zone's UTC offset (seconds) at each unix time ``t`` (vectorised; offsets that
    change on the quarter hour, as every zone today does)."""
    if zone is UTC or t.size == 0:
        return np.zeros(t.shape)
    y0 = datetime.fromtimestamp(float(np.min(t)), UTC).year
    y1 = datetime.fromtimestamp(float(np.max(t)), UTC).year
    times: list[float] = []
    offs: list[float] = []
    for y in range(y0, y1 + 1):
        tt, oo = _transitions(zone, y)
        times.extend(tt)
        offs.extend(oo)
    idx = np.searchsorted(np.asarray(times), t, side="right") - 1
    out: FloatArray = np.asarray(offs)[np.maximum(idx, 0)]
    return out


def _nan_reduce(rows: FloatArray, how: Callable[[FloatArray], FloatArray]) -> FloatArray:
    """Column-wise statistic over the known values (NaN where a column has none)."""
    out = np.full(rows.shape[1], np.nan)
    ok = np.any(~np.isnan(rows), axis=0)
    if np.any(ok):
        out[ok] = how(rows[:, ok])
    return out


def _col_quantile(rows: FloatArray, q: float) -> FloatArray:
    """Column-wise ``q`` quantile over the known values, linear interpolation as numpy's
    default (NaN where a column has none); one sort instead of ``nanquantile``'s per-column
    loop."""
    srt = np.sort(rows, axis=0)  # NaN sort last
    cnt = np.sum(~np.isnan(rows), axis=0)
    pos = q * np.maximum(cnt - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(cnt - 1, 0))
    cols = np.arange(rows.shape[1])
    a, b = srt[lo, cols], srt[hi, cols]
    out: FloatArray = np.where(cnt > 0, a + (pos - lo) * (b - a), np.nan)
    return out


def _naive_day(h: History, n: int, p: ForecastParams) -> FloatArray:
    row: FloatArray = h.lags(DAY_S, 1, n)[0]
    return row


def _naive_week(h: History, n: int, p: ForecastParams) -> FloatArray:
    row: FloatArray = h.lags(WEEK_S, 1, n)[0]
    return row


def _week_max(h: History, n: int, p: ForecastParams) -> FloatArray:
    return _nan_reduce(h.lags(WEEK_S, p.weeks, n), lambda r: np.nanmax(r, axis=0))


def _week_mean(h: History, n: int, p: ForecastParams) -> FloatArray:
    return _nan_reduce(h.lags(WEEK_S, p.weeks, n), lambda r: np.nanmean(r, axis=0))


def _day_quantile(h: History, n: int, p: ForecastParams) -> FloatArray:
    q = p.quantile
    return _nan_reduce(h.lags(DAY_S, p.days, n), lambda r: np.nanquantile(r, q, axis=0))


def _week_ewma(h: History, n: int, p: ForecastParams) -> FloatArray:
    rows = h.lags(WEEK_S, max(p.weeks, 8), n)
    w = p.alpha * (1.0 - p.alpha) ** np.arange(rows.shape[0])
    known = ~np.isnan(rows)
    wk = np.where(known, w[:, None], 0.0)
    total = wk.sum(axis=0)
    out = np.full(n, np.nan)
    ok = total > 0
    out[ok] = (np.where(known, rows, 0.0) * wk).sum(axis=0)[ok] / total[ok]
    return out


def _week_max_day_q(h: History, n: int, p: ForecastParams) -> FloatArray:
    return np.fmax(_week_max(h, n, p), _day_quantile(h, n, p))


class _Days:
    """The history and the horizon as local days × times of day (``shape_level`` and
    :func:`day_scenarios`; DST-safe: a skipped hour is NaN, a repeated one keeps its
    later value)."""

    def __init__(self, h: History, n: int, p: ForecastParams, spd: int) -> None:
        day, slot = h.local_days(n)
        slot = np.minimum(slot, spd - 1)
        g = h.grid.size
        self.d0 = int(day[0])
        self.table: FloatArray = np.full((int(day[-1]) - self.d0 + 1, spd), np.nan)
        """Known values, local day (from ``d0``) × time of day, W."""
        self.table[day[:g] - self.d0, slot[:g]] = h.grid
        self.today = int(day[g]) - self.d0
        """Row of the current local day."""
        self.days = day[g:] - self.d0
        """Row of each forecast interval."""
        self.slots = slot[g:]
        """Time of day of each forecast interval."""
        week = (np.arange(self.table.shape[0]) + self.d0 + 3) % 7  # Monday = 0
        self.cls = week if p.day_classes == "weekday" else np.maximum(week - 4, 0)
        self.has = np.any(~np.isnan(self.table), axis=1)
        # A holiday: a past day whose energy is under ``holiday_frac`` of the median of its
        # class's last ``shape_days`` (not a day to take the shape or a scenario from).
        energy = np.where(self.has, np.nansum(self.table, axis=1), np.nan)
        for c in np.unique(self.cls[:self.today]):
            rows = np.flatnonzero(self.has[:self.today] & (self.cls[:self.today] == c))
            if rows.size >= 3:
                usual = float(np.median(energy[rows[-p.shape_days:]]))
                self.has[rows[energy[rows] < p.holiday_frac * usual]] = False
        self.level_cap = p.level_cap

    def past(self, d: int, count: int) -> npt.NDArray[np.int64]:
        """The ``count`` latest days before today of ``d``'s class (any class if none)."""
        past = np.flatnonzero(self.has[:self.today] & (self.cls[:self.today] == self.cls[d]))
        if past.size == 0:
            past = np.flatnonzero(self.has[:self.today])
        out: npt.NDArray[np.int64] = past[-count:]
        return out

    def level(self, ref: FloatArray, prior: float) -> float:
        """Today's level against ``ref`` (one day's values): least squares through the
        origin (actual ≈ level · ref, so the high intervals weigh most and the night's base
        load little) over the intervals seen today, pulled toward 1 by ``prior`` typical
        days."""
        seen = ~np.isnan(self.table[self.today]) & ~np.isnan(ref)
        got = float(np.dot(self.table[self.today][seen], ref[seen]))
        want = float(np.dot(ref[seen], ref[seen]))
        w = prior * float(np.nansum(ref * ref))
        level = (got + w) / (want + w) if want + w > 0 else 1.0
        return min(level, self.level_cap)


def _day_count(h: History) -> int:
    """Intervals a day (0: the interval does not divide a day)."""
    spd = round(DAY_S / h.interval_s)
    return spd if spd >= 1 and abs(spd * h.interval_s - DAY_S) <= 1e-6 else 0


def _shape_level(h: History, n: int, p: ForecastParams) -> FloatArray:
    """Typical shape of the day's class × today's level (module docstring)."""
    spd = _day_count(h)
    if not spd:
        return _week_mean(h, n, p)  # no whole number of intervals a day: no days to compare
    t = _Days(h, n, p, spd)
    typical: dict[int, FloatArray] = {}

    def shape(d: int) -> FloatArray:
        if d not in typical:
            past = t.past(d, p.shape_days)
            typical[d] = (_col_quantile(t.table[past], p.shape_q) if past.size
                          else np.full(spd, np.nan))
        return typical[d]

    level = t.level(shape(t.today), p.level_prior)
    out = np.empty(n)
    for d in np.unique(t.days):
        sel = t.days == d
        out[sel] = shape(int(d))[t.slots[sel]] * (level if d == t.today else 1.0)
    return out


def day_scenarios(history: History, horizon: int, count: int,
                  params: ForecastParams | None = None) -> FloatArray:
    """``count × horizon`` scenarios of the coming intervals: scenario ``j`` takes, for
    each local day of the horizon, the ``j``-th latest past day of its class (fewer days:
    they repeat), today's scaled to today's level against it (:class:`_Days.level`, the
    ``level_prior`` blend), later days as they were. NaN where a scenario has no value
    (the caller fills it); all NaN when the interval does not divide a day."""
    p = params or ForecastParams()
    spd = _day_count(history)
    out = np.full((count, horizon), np.nan)
    if not spd:
        return out
    t = _Days(history, horizon, p, spd)
    for d in np.unique(t.days):
        past = t.past(int(d), count)
        if past.size == 0:
            continue
        sel = t.days == d
        for j in range(count):
            src = t.table[past[-1 - j % past.size]]
            scale = t.level(src, p.level_prior) if d == t.today else 1.0
            out[j, sel] = src[t.slots[sel]] * scale
    return out


FORECASTERS: dict[str, Callable[[History, int, ForecastParams], FloatArray]] = {
    "naive_day": _naive_day,
    "naive_week": _naive_week,
    "week_max": _week_max,
    "week_mean": _week_mean,
    "day_quantile": _day_quantile,
    "week_ewma": _week_ewma,
    "week_max_day_q": _week_max_day_q,
    "shape_level": _shape_level,
}
"""Forecaster name → function ``(history, horizon, params) -> values`` (NaN = unknown)."""


def forecast(name: str, history: History, horizon: int,
             params: ForecastParams | None = None) -> FloatArray:
    """The next ``horizon`` intervals' uncontrolled import (W), gaps filled (module docstring).

    Args:
        name: One of :data:`FORECASTERS`.
        history: The site's closed interval means (:class:`History`).
        horizon: Number of intervals (≥ 1).
        params: Tuning; None = the defaults.

    Returns:
        ``horizon`` values, W ≥ 0; all NaN only when the history has no usable value.

    Raises:
        PlanningError: unknown forecaster or a horizon < 1.
    """
    if name not in FORECASTERS:
        raise PlanningError(f"forecaster: {name!r} is not one of {', '.join(FORECASTERS)}",
                            source="forecaster")
    if horizon < 1:
        raise PlanningError(f"horizon: need at least 1 interval, got {horizon}",
                            source="horizon")
    out = FORECASTERS[name](history, horizon, params or ForecastParams())
    gap = np.isnan(out)
    if np.any(gap):  # the same time of day of the latest day that has it
        days = history.lags(DAY_S, 7, horizon)
        for row in days:
            fill = gap & ~np.isnan(row)
            out[fill] = row[fill]
            gap &= ~fill
    if np.any(gap):
        out[gap] = history.recent_max()
    return out
