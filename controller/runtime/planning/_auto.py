"""The auto limit: forecast the coming intervals, plan the lowest limit the fleet can hold.

:class:`AutoLimit` is what the service and the replay hold when
``[peak_shaving] limit = "auto"``. At every interval boundary they call
:meth:`AutoLimit.plan` with the site's time, the closed uncontrolled interval
means (the billing meter's history), the fleet's stored energy and the
period's billed peak; it returns a :class:`LimitPlan`. Each call:

1. forecasts the next ``horizon_h`` of interval means (:mod:`.forecast`,
   the configured forecaster) — or, in the robust mode (``scenario_weeks > 0``),
   takes the last ``scenario_weeks`` weeks' same weekday and time of day as
   separate scenarios, or, in the day-scenario mode (``scenario_days > 0``),
   the last ``scenario_days`` past days of each day's class, today's scaled to
   today's level (:func:`~.forecast.day_scenarios`, local days in ``zone``;
   no error persistence: the level is in them). For ``persist_h`` hours each
   is raised by how much the load ran above it over the last
   ``persist_window_h`` (error persistence: a load above its usual level is
   expected to stay there for a while; with ``persist_signed`` also lowered
   when it ran below);
2. finds the lowest peak ``P`` the fleet can hold over that forecast from the
   energy it has now (less the ``reserve_pct`` reserve, planned as absent),
   ending the horizon with at least ``end_energy_pct`` of its energy window (so
   the plan does not empty the battery at its horizon's end), never below
   ``floor = billed_peak / (1 + margin)``: the peak LP
   (:func:`~controller.runtime.planning.optimal_peak`), skipped when the greedy
   run already holds the floor (then ``P = floor``: the usual case once the
   period's peak is set, and a tenth of the LP's time). The robust mode takes
   the highest of the scenarios' lowest holdable peaks
   (:func:`._holdable.lowest_holdable_peaks`): the greedy battery then holds
   the limit in whichever scenario comes true; the day-scenario mode their
   ``scenario_q`` quantile;
3. adds the margin: ``limit = max(billed_peak, P · (1 + margin_pct / 100))``;
4. computes the pre-charge target: by default (``precharge_full``) the top of
   the energy window. The production law recharges only toward ``max(target
   SoC, this target)`` and only with headroom under the limit, so recharging
   never raises the bill; a fuller battery is what lets the re-planned limit
   absorb a day heavier than forecast. Otherwise the least stored energy at the
   next boundary from which the limit can still be held over every scenario
   (:func:`~controller.runtime.planning.required_energy`), plus the reserve.

Forecast errors are what the limit's quality hinges on: the optimum of a month
typically empties the whole energy window on its heaviest day, so a level
error of a few percent over a long plateau is a large share of the battery.
Every plan is re-made at the next boundary from the energy actually left, so
a too-low limit rises as soon as the battery falls behind the plan; a limit
raised on a pessimistic guess stays for the rest of the period. The choice of
forecaster, persistence and pre-charge is measured, not argued:
``benchmarks/backtest_autolimit.py`` (README, "auto limit" backtest).

Cold start: with less than a day of history there is no season to plan on;
the limit is at least the highest load seen so far (the history and, when
the caller gives it, the current interval's projected mean ``load_now_w``):
the batteries shave only what goes above what the site has already drawn.
With neither, there is no plan: ``limit_w`` is ``inf`` and ``cold`` is True
(hold: shave nothing, recharge nothing beyond what the billed peak allows).

Units: W, Wh, seconds (unix time); + = import / charging.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import tzinfo

import numpy as np
import numpy.typing as npt

from controller.errors import PlanningError
from controller.runtime.planning._holdable import lowest_holdable_peaks, required_energies
from controller.runtime.planning._lp import FleetModel, optimal_peak, simulate_greedy
from controller.runtime.planning.forecast import (
    FORECASTERS,
    WEEK_S,
    ForecastParams,
    History,
    day_scenarios,
    forecast,
)

__all__ = ["AutoLimit", "AutoLimitConfig", "LimitPlan"]

FloatArray = npt.NDArray[np.float64]

_TOL_W = 10.0
"""Resolution of the robust mode's lowest holdable limit, W."""


def _kw(model: FleetModel, end_wh: float) -> dict[str, float]:
    """The aggregate battery's figures as :mod:`._holdable` takes them."""
    return {"charge_max_w": model.charge_max_w, "discharge_max_w": model.discharge_max_w,
            "energy_min_wh": model.energy_min_wh, "end_energy_wh": end_wh,
            "charge_efficiency": model.charge_efficiency,
            "discharge_efficiency": model.discharge_efficiency}


@dataclass(frozen=True, slots=True)
class AutoLimitConfig:
    """Settings of :class:`AutoLimit` (``[peak_shaving] auto_*``; defaults: the backtest's
    choice, see ``benchmarks/backtest_autolimit.py``)."""

    horizon_h: float = 48.0
    """Planning horizon, hours (1..168)."""
    margin_pct: float = 0.0
    """The limit is the planned peak plus this many percent (0..50)."""
    forecaster: str = "shape_level"
    """One of :data:`~controller.runtime.planning.forecast.FORECASTERS`."""
    end_energy_pct: float = 0.0
    """The plan ends its horizon with at least this share of the energy window (0..100 %;
    capped at what charging can reach)."""
    weeks: int = 3
    """Past weeks the weekly forecasters look at (1..8)."""
    days: int = 14
    """Past days ``day_quantile`` looks at (1..56)."""
    quantile: float = 0.9
    """Quantile of ``day_quantile`` (0..1; 1 = the highest)."""
    persist_h: float = 2.0
    """For this many hours ahead, add how much the load ran above the forecast over the last
    ``persist_window_h`` (error persistence; 0..168 h)."""
    scenario_weeks: int = 0
    """Robust mode: plan over this many past weeks as separate scenarios of the horizon
    (the same weekday and time of day, each with its own error persistence) and take
    the highest of their lowest holdable limits (0..8; 0 = one forecast, the LP)."""
    persist_window_h: float = 1.0
    """The error persisted is measured over the last this many hours (0.25..24 h)."""
    persist_signed: bool = False
    """Error persistence also lowers a forecast (scenario) that ran above the load."""
    reserve_pct: float = 0.0
    """Energy reserve: plan as if this share of the energy window were not there, and
    pre-charge it on top (0..100 %)."""
    precharge_full: bool = True
    """Pre-charge target: the top of the energy window whenever there is headroom, instead
    of the least energy that holds the plan (plus the reserve)."""
    shape_days: int = 3
    """``shape_level``: past days of the same day class its shape is taken from (1..56)."""
    shape_q: float = 1.0
    """``shape_level``: quantile of those days per time of day (0..1)."""
    day_classes: str = "weekday"
    """``shape_level``: ``"workday"`` (Mon–Fri, Sat, Sun alike) or ``"weekday"``."""
    scenario_days: int = 0
    """Day scenarios: plan over this many past days of each day's class as scenarios (today's
    scaled to today's level, :func:`~.forecast.day_scenarios`) and take the
    ``scenario_q`` quantile of their lowest holdable limits (0..28; 0 = off)."""
    scenario_q: float = 1.0
    """Which of the scenarios' lowest holdable limits is the plan's (0..1; 1 = the highest)."""
    holiday_frac: float = 0.6
    """A past day under this share of its class's median daily energy is a holiday, taken
    neither as shape nor as scenario (0..1; 0 = none)."""
    level_cap: float = 1.5
    """Today's fitted level is at most this (1..10)."""
    level_prior: float = 0.25
    """``shape_level``: weight of the shape's own level (1) against today's fitted one, in
    typical days (0..10; :class:`~.forecast.ForecastParams`)."""

    def validate(self) -> None:
        """Check every field; raise :class:`PlanningError` naming ``peak_shaving.auto_<field>``."""
        checks = {
            "horizon_h": 1.0 <= self.horizon_h <= 168.0,
            "margin_pct": 0.0 <= self.margin_pct <= 50.0,
            "end_energy_pct": 0.0 <= self.end_energy_pct <= 100.0,
            "weeks": 1 <= self.weeks <= 8,
            "scenario_weeks": 0 <= self.scenario_weeks <= 8,
            "reserve_pct": 0.0 <= self.reserve_pct <= 100.0,
            "persist_window_h": 0.25 <= self.persist_window_h <= 24.0,
            "persist_h": 0.0 <= self.persist_h <= 168.0,
            "days": 1 <= self.days <= 56,
            "quantile": 0.0 <= self.quantile <= 1.0,
            "forecaster": self.forecaster in FORECASTERS,
            "shape_days": 1 <= self.shape_days <= 56,
            "shape_q": 0.0 <= self.shape_q <= 1.0,
            "day_classes": self.day_classes in ("workday", "weekday"),
            "level_prior": 0.0 <= self.level_prior <= 10.0,
            "scenario_days": 0 <= self.scenario_days <= 28,
            "holiday_frac": 0.0 <= self.holiday_frac <= 1.0,
            "level_cap": 1.0 <= self.level_cap <= 10.0,
            "scenario_q": 0.0 <= self.scenario_q <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                v = getattr(self, name)
                raise PlanningError(f"peak_shaving.auto_{name} = {v!r}: out of range",
                                    source=f"peak_shaving.auto_{name}")


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """One plan of :meth:`AutoLimit.plan`."""

    limit_w: float
    """The target import limit, W (≥ the billed peak; ``inf`` = no plan, cold start)."""
    planned_peak_w: float
    """The lowest peak holdable over the forecast (before the margin), W."""
    energy_target_wh: float
    """Stored energy to have at the next interval boundary (pre-charge target), Wh."""
    start_s: float
    """Start of the first planned interval, unix seconds."""
    interval_s: float
    """Interval length, seconds."""
    forecast_w: FloatArray = field(repr=False)
    """The forecast the plan is made on (robust mode: the scenario that set the limit), one
    value per interval, W."""
    energy_required_wh: FloatArray = field(repr=False)
    """Least stored energy at each boundary that still holds the limit in every scenario,
    plus the reserve, Wh (``T + 1``)."""
    used_lp: bool = False
    """Whether the LP was solved (False: the greedy check held the floor, or cold)."""
    cold: bool = False
    """No usable history and no current load: no plan."""
    plan_s: float = 0.0
    """Time this call took (``time.perf_counter``), s: for benchmarks and logs only."""

    def soc_target_pct(self, capacity_wh: float) -> float:
        """:attr:`energy_target_wh` as a SoC of ``capacity_wh`` (%; NaN if capacity ≤ 0)."""
        return 100.0 * self.energy_target_wh / capacity_wh if capacity_wh > 0 else math.nan


class AutoLimit:
    """Plans the target import limit from the site's own load history (module docstring)."""

    def __init__(self, config: AutoLimitConfig, fleet: FleetModel) -> None:
        """Create the planner.

        Args:
            config: Horizon, margin, forecaster, end energy.
            fleet: The fleet as one aggregate battery (its ``energy_init_wh`` is
                ignored: each plan starts from the energy given to it).

        Raises:
            PlanningError: a bad config field or fleet model (names it).
        """
        config.validate()
        fleet.validate()
        self.config: AutoLimitConfig = config
        """The settings."""
        self.fleet: FleetModel = fleet
        """The aggregate battery."""
        self._params = ForecastParams(weeks=config.weeks, days=config.days,
                                      quantile=config.quantile, shape_days=config.shape_days,
                                      shape_q=config.shape_q, day_classes=config.day_classes,
                                      level_prior=config.level_prior,
                                      holiday_frac=config.holiday_frac,
                                      level_cap=config.level_cap)

    def plan(self, now_s: float, history_values_w: npt.ArrayLike,
             history_starts_s: npt.ArrayLike, interval_s: float, energy_wh: float,
             billed_peak_w: float, *, load_now_w: float = math.nan,
             zone: tzinfo | None = None) -> LimitPlan:
        """Plan the limit for the interval containing ``now_s`` and the horizon after it.

        Args:
            now_s: The site's time, unix seconds.
            history_values_w: Closed uncontrolled interval means, W.
            history_starts_s: Their start times, unix seconds.
            interval_s: Billing interval length, seconds.
            energy_wh: The fleet's stored energy now, Wh (NaN = the window's middle).
            billed_peak_w: The period's billed peak so far, W (NaN or < 0 = 0).
            load_now_w: The current interval's projected uncontrolled mean, W
                (optional; the cold start's only information).
            zone: The site's time zone (the billing clock's): local days and times of
                day for ``shape_level``; None = UTC.

        Returns:
            The plan.

        Raises:
            PlanningError: bad ``now_s`` / ``interval_s`` or history arrays of unequal length.
        """
        t0 = time.perf_counter()
        cfg, f = self.config, self.fleet
        hist = History(history_values_w, history_starts_s, interval_s, now_s, zone=zone)
        n = max(1, round(cfg.horizon_h * 3600.0 / interval_s))
        billed = billed_peak_w if math.isfinite(billed_peak_w) and billed_peak_w > 0 else 0.0
        fc = forecast(cfg.forecaster, hist, n, self._params)
        if np.all(np.isnan(fc)):
            if not (math.isfinite(load_now_w) and load_now_w >= 0):
                return LimitPlan(math.inf, math.inf, f.energy_max_wh, hist.now_start_s,
                                 interval_s, fc, np.full(n + 1, f.energy_max_wh), cold=True,
                                 plan_s=time.perf_counter() - t0)
            rows, then = np.full((1, n), load_now_w), np.full((1, 1), np.nan)
        elif cfg.scenario_weeks > 0:
            rows, then = self._weekly_scenarios(hist, fc)
        elif cfg.scenario_days > 0:
            rows = day_scenarios(hist, n, cfg.scenario_days, self._params)
            rows = np.where(np.isnan(rows), fc[None, :], rows)
            then = np.full((rows.shape[0], 1), np.nan)  # today's level is in the scenarios
        else:
            rows, then = fc[None, :], self._past_forecast(hist, history_values_w,
                                                          history_starts_s)[None, :]
        rows = self._persist(hist, rows, then)
        # The reserve is planned as if absent: the window's top and the energy shift down.
        reserve = cfg.reserve_pct / 100.0 * (f.energy_max_wh - f.energy_min_wh)
        e0 = energy_wh if math.isfinite(energy_wh) else 0.5 * (f.energy_min_wh + f.energy_max_wh)
        e0 = min(max(e0 - reserve, f.energy_min_wh), f.energy_max_wh - reserve)
        model = FleetModel(f.charge_max_w, f.discharge_max_w, f.energy_min_wh,
                           f.energy_max_wh - reserve, e0, f.charge_efficiency,
                           f.discharge_efficiency)
        e_end = f.energy_min_wh + cfg.end_energy_pct / 100.0 * (model.energy_max_wh
                                                                 - f.energy_min_wh)
        e_end = min(e_end, e0 + f.charge_efficiency * f.charge_max_w * n * interval_s / 3600.0)
        grow = 1.0 + cfg.margin_pct / 100.0
        floor = billed / grow
        if rows.shape[0] == 1:
            peak, used_lp = self._lowest_peak(rows[0], interval_s, model, floor, e_end)
            worst = 0
        else:
            peaks = lowest_holdable_peaks(
                rows, interval_s / 3600.0, energy_wh=e0, floor_w=floor, tol_w=_TOL_W,
                energy_max_wh=model.energy_max_wh, **_kw(model, e_end))
            q = cfg.scenario_q if cfg.scenario_days > 0 else 1.0
            order = np.argsort(peaks, kind="stable")
            worst, used_lp = int(order[math.ceil(q * (peaks.size - 1) - 1e-9)]), False
            peak = float(peaks[worst])
        limit = max(billed, peak * grow, self._cold_floor(hist, load_now_w))
        req = required_energies(rows, limit, interval_s / 3600.0,
                                **_kw(model, e_end)).max(axis=0) + reserve
        target = f.energy_max_wh if cfg.precharge_full else float(req[1])
        target = min(max(target, f.energy_min_wh), f.energy_max_wh)
        return LimitPlan(limit, peak, target, hist.now_start_s, interval_s, rows[worst], req,
                         used_lp=used_lp, plan_s=time.perf_counter() - t0)

    @staticmethod
    def _cold_floor(hist: History, load_now_w: float) -> float:
        """With less than a day of history, the highest load seen (no season to plan on)."""
        known = hist.grid[~np.isnan(hist.grid)]
        if known.size * hist.interval_s >= 86_400.0:
            return 0.0
        seen = float(known.max()) if known.size else 0.0
        return max(seen, load_now_w) if math.isfinite(load_now_w) else seen

    def _persist_steps(self, hist: History) -> tuple[int, int]:
        """(intervals the error persists ahead, intervals it is measured over: one hour)."""
        return (round(self.config.persist_h * 3600.0 / hist.interval_s),
                max(1, round(self.config.persist_window_h * 3600.0 / hist.interval_s)))

    def _past_forecast(self, hist: History, values: npt.ArrayLike,
                       starts: npt.ArrayLike) -> FloatArray:
        """What the forecaster would have said for the last hour, an hour ago."""
        _, m = self._persist_steps(hist)
        past = History(values, starts, hist.interval_s, hist.now_start_s - m * hist.interval_s,
                       zone=hist.zone)
        return forecast(self.config.forecaster, past, m, self._params)

    def _weekly_scenarios(self, hist: History, fc: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``scenario_weeks`` past weeks as scenarios of the horizon (gaps: the point forecast)
        and, for error persistence, each one's values over the last hour."""
        weeks = self.config.scenario_weeks
        rows = hist.lags(WEEK_S, weeks, fc.size)
        rows = np.where(np.isnan(rows), fc[None, :], rows)
        _, m = self._persist_steps(hist)
        k = max(1, round(WEEK_S / hist.interval_s))
        idx = hist.grid.size - np.arange(1, weeks + 1)[:, None] * k + np.arange(-m, 0)[None, :]
        then = np.where(idx >= 0, hist.grid[np.maximum(idx, 0)], np.nan)
        return rows, then

    def _persist(self, hist: History, rows: FloatArray, then: FloatArray) -> FloatArray:
        """Each scenario raised, for ``persist_h`` hours, by how much the last hour ran above
        what it said for that hour (error persistence; with ``persist_signed`` also
        lowered by how much it ran below, never under 0 W)."""
        k, m = self._persist_steps(hist)
        k = min(k, rows.shape[1])
        recent = hist.grid[-m:]
        if k == 0 or np.all(np.isnan(recent)) or then.shape[1] != m:
            return rows
        err = recent[None, :] - then
        known = ~np.isnan(err)
        if not np.any(known):
            return rows
        out = rows.copy()
        lift = np.where(known, err, 0.0).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
        if not self.config.persist_signed:
            lift = np.maximum(lift, 0.0)
        out[:, :k] = np.maximum(out[:, :k] + lift[:, None], 0.0)
        return out

    @staticmethod
    def _lowest_peak(fc: FloatArray, interval_s: float, model: FleetModel, floor: float,
                     e_end: float) -> tuple[float, bool]:
        """The lowest holdable peak ≥ ``floor`` over the forecast; whether the LP ran."""
        out, energy = simulate_greedy(fc, interval_s, model, floor)
        if float(np.max(out)) <= floor + 1e-6 and float(energy[-1]) >= e_end - 1e-6:
            return floor, False
        res = optimal_peak(fc, interval_s, model, peak_floor_w=floor, final_energy_min_wh=e_end)
        if res.success:
            return res.peak_import_w, True
        # The LP failed (numerically): fall back to no shaving beyond the forecast's peak.
        return max(floor, float(np.max(fc))), True
