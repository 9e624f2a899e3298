"""The auto limit: forecast the coming intervals, plan the lowest limit the fleet can hold.

:class:`AutoLimit` is what the service and the replay hold when
``[peak_shaving] limit = "auto"``. At every interval boundary they call
:meth:`AutoLimit.plan` with the site's time, the closed uncontrolled interval
means (the billing meter's history), the fleet's stored energy and the
period's billed peak; it returns a :class:`LimitPlan`. Each call:

1. forecasts the next ``horizon_h`` of interval means (:mod:`.forecast`,
   the configured forecaster);
   For ``persist_h`` hours it is raised by how much the last hour ran above
   what the forecaster expected for it (error persistence: a load above its
   usual level is expected to stay there for a while; never lowered);
2. finds the lowest peak ``P`` the fleet can hold over that forecast from the
   energy it has now, ending the horizon with at least ``end_energy_pct`` of its
   energy window (so the plan does not empty the battery at its horizon's end),
   never below ``floor = billed_peak / (1 + margin)``: the peak LP
   (:func:`~controller.runtime.planning.optimal_peak`), skipped when the greedy
   run already holds the floor (then ``P = floor``: the usual case once the
   period's peak is set, and a tenth of the LP's time);
3. adds the margin: ``limit = max(billed_peak, P · (1 + margin_pct / 100))``.
   A forecast that underestimates a peak is expensive (a limit too low empties
   the batteries before the peak ends and the peak goes through almost
   unshaved), a limit slightly too high costs only the margin;
4. computes the pre-charge target: the least stored energy at the next
   boundary from which the limit can still be held over the forecast
   (:func:`~controller.runtime.planning.required_energy`).

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

import numpy as np
import numpy.typing as npt

from controller.errors import PlanningError
from controller.runtime.planning._lp import (
    FleetModel,
    optimal_peak,
    required_energy,
    simulate_greedy,
)
from controller.runtime.planning.forecast import FORECASTERS, ForecastParams, History, forecast

__all__ = ["AutoLimit", "AutoLimitConfig", "LimitPlan"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AutoLimitConfig:
    """Settings of :class:`AutoLimit` (``[peak_shaving] auto_*``; defaults: the backtest's
    choice, see ``benchmarks/backtest_autolimit.py``)."""

    horizon_h: float = 48.0
    """Planning horizon, hours (1..168)."""
    margin_pct: float = 0.0
    """The limit is the planned peak plus this many percent (0..50)."""
    forecaster: str = "week_max"
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
    persist_h: float = 3.0
    """For this many hours ahead, add the last hour's forecast shortfall (error
    persistence; 0..168 h)."""

    def validate(self) -> None:
        """Check every field; raise :class:`PlanningError` naming ``peak_shaving.auto_<field>``."""
        checks = {
            "horizon_h": 1.0 <= self.horizon_h <= 168.0,
            "margin_pct": 0.0 <= self.margin_pct <= 50.0,
            "end_energy_pct": 0.0 <= self.end_energy_pct <= 100.0,
            "weeks": 1 <= self.weeks <= 8,
            "persist_h": 0.0 <= self.persist_h <= 168.0,
            "days": 1 <= self.days <= 56,
            "quantile": 0.0 <= self.quantile <= 1.0,
            "forecaster": self.forecaster in FORECASTERS,
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
    """The forecast the plan is made on, one value per interval, W."""
    energy_required_wh: FloatArray = field(repr=False)
    """Least stored energy at each boundary that still holds the limit, Wh (``T + 1``)."""
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
                                      quantile=config.quantile)

    def plan(self, now_s: float, history_values_w: npt.ArrayLike,
             history_starts_s: npt.ArrayLike, interval_s: float, energy_wh: float,
             billed_peak_w: float, *, load_now_w: float = math.nan) -> LimitPlan:
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

        Returns:
            The plan.

        Raises:
            PlanningError: bad ``now_s`` / ``interval_s`` or history arrays of unequal length.
        """
        t0 = time.perf_counter()
        cfg, f = self.config, self.fleet
        hist = History(history_values_w, history_starts_s, interval_s, now_s)
        n = max(1, round(cfg.horizon_h * 3600.0 / interval_s))
        billed = billed_peak_w if math.isfinite(billed_peak_w) and billed_peak_w > 0 else 0.0
        fc = forecast(cfg.forecaster, hist, n, self._params)
        if np.all(np.isnan(fc)):
            if not (math.isfinite(load_now_w) and load_now_w >= 0):
                return LimitPlan(math.inf, math.inf, f.energy_max_wh, hist.now_start_s,
                                 interval_s, fc, np.full(n + 1, f.energy_max_wh), cold=True,
                                 plan_s=time.perf_counter() - t0)
            fc = np.full(n, load_now_w)
        fc = self._persist(hist, fc, np.asarray(history_values_w, dtype=np.float64),
                           np.asarray(history_starts_s, dtype=np.float64), interval_s)
        e0 = energy_wh if math.isfinite(energy_wh) else 0.5 * (f.energy_min_wh + f.energy_max_wh)
        e0 = min(max(e0, f.energy_min_wh), f.energy_max_wh)
        model = FleetModel(f.charge_max_w, f.discharge_max_w, f.energy_min_wh, f.energy_max_wh,
                           e0, f.charge_efficiency, f.discharge_efficiency)
        e_end = f.energy_min_wh + cfg.end_energy_pct / 100.0 * (f.energy_max_wh - f.energy_min_wh)
        e_end = min(e_end, e0 + f.charge_efficiency * f.charge_max_w * n * interval_s / 3600.0)
        grow = 1.0 + cfg.margin_pct / 100.0
        floor = billed / grow
        peak, used_lp = self._lowest_peak(fc, interval_s, model, floor, e_end)
        limit = max(billed, peak * grow, self._cold_floor(hist, load_now_w))
        req = required_energy(fc, interval_s, model, limit, final_energy_min_wh=e_end)
        target = min(max(float(req[1]), f.energy_min_wh), f.energy_max_wh)
        return LimitPlan(limit, peak, target, hist.now_start_s, interval_s, fc, req,
                         used_lp=used_lp, plan_s=time.perf_counter() - t0)

    @staticmethod
    def _cold_floor(hist: History, load_now_w: float) -> float:
        """With less than a day of history, the highest load seen (no season to plan on)."""
        known = hist.grid[~np.isnan(hist.grid)]
        if known.size * hist.interval_s >= 86_400.0:
            return 0.0
        seen = float(known.max()) if known.size else 0.0
        return max(seen, load_now_w) if math.isfinite(load_now_w) else seen

    def _persist(self, hist: History, fc: FloatArray, values: FloatArray, starts: FloatArray,
                 interval_s: float) -> FloatArray:
        """The forecast raised, for ``persist_h`` hours, by how much the last hour ran above
        what the same forecaster expected for it (error persistence; never lowered)."""
        k = min(fc.size, round(self.config.persist_h * 3600.0 / interval_s))
        m = max(1, round(3600.0 / interval_s))
        recent = hist.grid[-m:]
        if k == 0 or np.all(np.isnan(recent)):
            return fc
        past = History(values, starts, interval_s, hist.now_start_s - m * interval_s)
        then = forecast(self.config.forecaster, past, m, self._params)
        err = recent - then
        if np.all(np.isnan(err)):
            return fc
        lift = float(np.nanmean(err))
        if not lift > 0:
            return fc
        out = fc.copy()
        out[:k] += lift
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
