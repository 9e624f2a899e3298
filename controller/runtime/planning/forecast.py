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

Seasons are lags in absolute time (1 day = 86 400 s, 1 week = 604 800 s), so
across a daylight-saving change the profile is off by one hour for a day or a
week; the billing meter's interval starts are what is indexed.

Gaps and cold start: an interval without a usable value (missing, NaN, ±inf,
negative values are clipped to 0 W) is skipped by the seasonal statistics; an
interval a forecaster cannot fill falls back to the same time of day of the
most recent day that has it, then to the highest value seen in the last
week (conservative: a plan on it keeps the limit at what was seen); with no
usable history at all the forecast is all NaN and the planner decides (it
plans no shaving beyond the period's billed peak, see ``_auto``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.errors import PlanningError

__all__ = ["FORECASTERS", "ForecastParams", "History", "forecast"]

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


class History:
    """Closed uncontrolled interval means on a regular grid that ends at ``now_start_s``.

    Built once per plan from the meter's arrays: values are placed by their
    interval start (rounded to the grid), later duplicates win, anything not
    finite or beyond ±:data:`MAX_W` is NaN and negative values count as 0 W
    (export is no peak).
    """

    __slots__ = ("grid", "interval_s", "now_start_s")

    def __init__(self, values_w: npt.ArrayLike, starts_s: npt.ArrayLike, interval_s: float,
                 now_s: float, *, keep_s: float = 8 * WEEK_S) -> None:
        """Regularise the history.

        Args:
            values_w: Interval means, W (+ = import).
            starts_s: Their interval start times, unix seconds (same length).
            interval_s: Interval length, seconds (> 0).
            now_s: Now, unix seconds; the forecast starts at the interval that
                contains it (``floor(now / interval) · interval``).
            keep_s: How far back to keep (older values are ignored).

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

    def recent_max(self, span_s: float = WEEK_S) -> float:
        """Highest known value in the last ``span_s`` (NaN if none)."""
        tail = self.grid[-max(1, round(span_s / self.interval_s)):]
        return float(np.nanmax(tail)) if np.any(~np.isnan(tail)) else math.nan


def _nan_reduce(rows: FloatArray, how: Callable[[FloatArray], FloatArray]) -> FloatArray:
    """Column-wise statistic over the known values (NaN where a column has none)."""
    out = np.full(rows.shape[1], np.nan)
    ok = np.any(~np.isnan(rows), axis=0)
    if np.any(ok):
        out[ok] = how(rows[:, ok])
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


FORECASTERS: dict[str, Callable[[History, int, ForecastParams], FloatArray]] = {
    "naive_day": _naive_day,
    "naive_week": _naive_week,
    "week_max": _week_max,
    "week_mean": _week_mean,
    "day_quantile": _day_quantile,
    "week_ewma": _week_ewma,
    "week_max_day_q": _week_max_day_q,
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
