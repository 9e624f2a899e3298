"""Peak-shaving replay: a load profile against the site physics, the LP optimum as the limit.

* :func:`run_peak_shaving` → :class:`~controller.lab.replay.reports.PeakShavingReport`
  — replay a load profile through :class:`~controller.runtime.strategies.PeakShaving`
  with the perfect-foresight optimum
  (:func:`~controller.lab.replay.optimum.optimal_peak`) as the import limit.
* :class:`PeakReplayOptions` — its settings.
* :func:`classify_intervals` — which metering intervals were above the limit, avoidably.
* :func:`preventable_intervals` — which were above a limit while the fleet had the power
  and the energy to hold it.
* :func:`staircase` — a profile of interval means as the physics' piecewise-linear load.

Everything runs in process on a virtual clock (:mod:`controller.lab.replay.transport`:
the production control cycle, only transport and clock replaced).

Load, peaks and time stepping
-----------------------------
15-min load data are interval means, so the replayed load *holds* each value
for its interval and moves to the next one over ``load_ramp_s`` (1 s); the
peaks compared are interval-mean imports (what a demand charge bills), and the
LP on the profile values is the exact optimum of that peak. Around every load
step the controller cycles at the service's peak-shaving cadence (200 ms) for
``settle_s`` with 100-ms physics sub-steps (inverter response delay and ramp
resolved). While the load is constant, the stateless peak-shaving law gets
constant inputs and asks for the same total (only its split over the groups
drifts with SoC), so the next cycle is at the next load step, after
``max_step_s`` or when a battery reaches a SoC limit (where the split must
change), whichever is first. Before such a coarse step, once the setpoints just sent have
taken effect, a cycle with no strategy due meters the settled site (the service
meters every 200 ms; held from before the change, the sample would mis-meter the
interval for minutes and, through the billed peak, raise the limit held). A month
of 15-min data takes some 4·10⁴ cycles instead of 1.3·10⁷ at 200 ms. The
instantaneous import (transients of a few hundred ms at each load step) is
reported separately.

Units and signs: W, Wh, %, simulated seconds; + = importing / charging.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.fleet import aggregate_model, fleet_models
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.optimum import optimal_peak
from controller.lab.replay.periods import (
    DEFAULT_ZONE,
    Period,
    PeriodResult,
    billing_clock,
    billing_periods,
    feed_history,
    history_period,
    share_of_optimal_pct,
)
from controller.lab.replay.reports import FloatArray, PeakShavingReport
from controller.lab.replay.stepping import (
    ControlOptions,
    PhysicsTruth,
    ProgressCallback,
    advance,
    quiet_site,
    replay_config,
)
from controller.lab.replay.transport import PhysicsTransport, replay_control
from controller.runtime.billing import BillingClock, BillingConfig
from controller.runtime.cycle import ControlCycle
from controller.runtime.planning import AutoLimitConfig, FleetModel, OptimumResult
from controller.runtime.strategies import (
    PeakShaving,
    PeakShavingConfig,
    effective_limit_w,
    target_limit_w,
)
from simulator.config import FrequencyConfig, LoadConfig, SiteConfig
from simulator.physics import SitePhysics

__all__ = [
    "LimitSpec",
    "PeakReplayOptions",
    "classify_intervals",
    "preventable_intervals",
    "run_peak_shaving",
    "staircase",
]


@dataclass(frozen=True, slots=True)
class PeakReplayOptions(ControlOptions):
    """Settings of :func:`run_peak_shaving` (W, s).

    The ``[control]`` ones are those of
    :class:`~controller.lab.replay.stepping.ControlOptions`; ``setpoint_lifetime_s``
    (default 900) is renewed after half of it, so it is longer than twice the
    longest control step.
    """

    cycle_s: float = 0.2
    """Control cadence while the load changes (the service's default peak-shaving cadence)."""
    settle_s: float = 1.6
    """How long after each load step the replay cycles at ``cycle_s`` (ramp + inverter delay)."""
    load_ramp_s: float = 1.0
    """The load moves from one 15-min value to the next over this long (s)."""
    max_step_s: float = 300.0
    """Longest control step while the load is constant (s); cut short where a battery
    reaches a SoC limit."""
    physics_step_s: float = 30.0
    """Longest physics sub-step while the load is constant (s)."""
    physics_fine_step_s: float = 0.1
    """Physics sub-step around load steps (s): resolves the inverters' delay and ramp."""
    above_limit_tolerance_w: float | None = None
    """An interval counts as above the limit beyond this (default max(100 W, 0.1 % of it))."""
    recharge_margin_w: float | None = None
    """Peak shaving's ``recharge_margin_w`` (default 0.01 % of the limit: the replay is
    noise-free, so recharging can go right up to the limit)."""
    target_soc_pct: float = 100.0
    """Peak shaving recharges toward this fleet SoC (100 = as full as the limits allow)."""
    lp_groups: bool = True
    """Also solve the LP per battery group (own limits and efficiencies) for information."""


def _resolve(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _interval_of(time_s: FloatArray, interval_s: float, n_intervals: int) -> npt.NDArray[np.int64]:
    """The metering interval each sample ends (``ceil(t / interval_s) − 1``, ``t = 0``: 0)."""
    out: npt.NDArray[np.int64] = np.clip(
        np.ceil(time_s / interval_s - 1e-9).astype(np.int64) - 1, 0, n_intervals - 1)
    return out


def _interval_means(values: FloatArray, interval: npt.NDArray[np.int64], dt: FloatArray,
                    interval_s: float, n_intervals: int) -> FloatArray:
    """Mean of a piecewise-linear trajectory over each interval (trapezoids)."""
    area = 0.5 * (values[1:] + values[:-1]) * dt
    out: FloatArray = np.bincount(interval[1:], weights=area, minlength=n_intervals) / interval_s
    return out


def classify_intervals(
    time_s: FloatArray,
    grid_w: FloatArray,
    battery_w: FloatArray,
    fleet_lower_w: FloatArray,
    *,
    limit_w: float | FloatArray,
    interval_s: float,
    n_intervals: int,
    tolerance_w: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which metering intervals were above the limit, avoidably, or had an excursion.

    ``limit_w`` is one limit, or one per interval (the effective limit in force in
    it; ``inf`` = none: never above).

    The samples are the vertices of a piecewise-linear grid-power trajectory
    (``time_s`` increasing from 0, no step crossing an interval boundary); the
    sample at ``t`` ends the step that led to it, so it belongs to interval
    ``ceil(t / interval_s) − 1`` (``t = 0``: interval 0).

    * *above*: the interval's mean import (trapezoid) exceeds ``limit_w +
      tolerance_w`` — what a demand charge bills.
    * *avoidable*: above, and the excess the fleet could have covered at the
      time, ``clip(min(grid − limit, battery − fleet_lower), 0)`` (its lower
      bound is 0 at the lower SoC limit, so room means power *and* energy),
      averages above ``tolerance_w`` over the interval. Sub-second transients
      (inverters with different response delays swapping power) average
      out; a controller that leaves the fleet idle above the limit does not.
    * *excursion*: some sample exceeds ``limit_w + tolerance_w``.

    Returns:
        Three bool arrays of length ``n_intervals``: above, avoidable, excursion.
    """
    interval = _interval_of(time_s, interval_s, n_intervals)
    dt = np.diff(time_s)
    mean = _interval_means(grid_w, interval, dt, interval_s, n_intervals)
    limit = np.broadcast_to(np.asarray(limit_w, dtype=np.float64), (n_intervals,))
    above = mean - limit > tolerance_w
    excess = grid_w - limit[interval]
    coverable = np.clip(np.minimum(excess, battery_w - fleet_lower_w), 0.0, None)
    cov_mean = _interval_means(coverable, interval, dt, interval_s, n_intervals)
    avoidable = above & (cov_mean > tolerance_w)
    excursion = np.bincount(interval, weights=(excess > tolerance_w).astype(np.float64),
                            minlength=n_intervals) > 0
    return above, avoidable, excursion


def preventable_intervals(
    time_s: FloatArray,
    grid_w: FloatArray,
    battery_w: FloatArray,
    fleet_lower_w: FloatArray,
    energy_wh: FloatArray,
    *,
    limit_w: float | FloatArray,
    interval_s: float,
    n_intervals: int,
    tolerance_w: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], FloatArray]:
    """Which metering intervals were above ``limit_w`` while the fleet could have held it.

    Same trajectory convention as :func:`classify_intervals`; ``energy_wh`` is the
    fleet's energy above its lower SoC limit at each sample.

    * *above*: the interval's mean import exceeds ``limit_w + tolerance_w``.
    * *preventable*: above, and the fleet had both what the excess needed during the
      interval: the discharge power it did not use, integrated over the interval
      (``∫ max(0, battery − fleet_lower) dt``), and the energy above its lower SoC limit
      at the interval's start, each at least the excess energy ``(mean − limit) · T``.

    Returns:
        above, preventable (bool arrays of length ``n_intervals``) and each interval's
        excess energy over the limit (Wh, 0 when not above).
    """
    interval = _interval_of(time_s, interval_s, n_intervals)
    dt = np.diff(time_s)
    mean = _interval_means(grid_w, interval, dt, interval_s, n_intervals)
    limit = np.broadcast_to(np.asarray(limit_w, dtype=np.float64), (n_intervals,))
    with np.errstate(invalid="ignore"):
        above = mean - limit > tolerance_w
    excess_wh = np.where(above, (mean - limit) * interval_s / 3600.0, 0.0)
    headroom = np.clip(battery_w - fleet_lower_w, 0.0, None)
    headroom_wh = _interval_means(headroom, interval, dt, interval_s, n_intervals) * (
        interval_s / 3600.0)
    # The energy at each interval's start: the sample that ends the interval before.
    first = np.searchsorted(interval, np.arange(n_intervals), side="left")
    start_energy = np.asarray(energy_wh, dtype=np.float64)[np.maximum(first - 1, 0)]
    preventable = above & (headroom_wh >= excess_wh) & (start_energy >= excess_wh)
    return above, preventable, excess_wh


def staircase(values_w: FloatArray, step_s: float, ramp_s: float) -> tuple[FloatArray, float]:
    """A piecewise-linear profile for the physics that holds each value for its interval.

    Interval ``i`` covers ``[i·step, (i+1)·step)`` at ``values[i]``, reached from
    ``values[i−1]`` over the first ``ramp_s`` of the interval (interval 0 starts at
    its value). Returned as samples every ``ramp_s`` (the physics interpolates
    linearly between samples): ``values[0]``, then each value ``step / ramp_s`` times.

    Returns:
        (samples, sample step in s)
    """
    k = max(1, round(step_s / ramp_s))
    return np.concatenate([values_w[:1], np.repeat(values_w, k)]), step_s / k


# --------------------------------------------------------------------------- steps of a run

LimitSpec = float | Literal["auto", "optimal", "previous"] | None
"""The limit of a peak-shaving replay: watts (fixed), ``"optimal"`` (None: each period's
perfect-foresight optimum), ``"previous"`` (the previous period's optimum) or ``"auto"``
(``limit = "auto"``: the production planner, no future data)."""
_MODES = ("auto", "optimal", "previous")
_IDLE_LIMIT_W = 1e15
"""The limit of a period with no limit to run with (``previous`` without a previous
period): the batteries stay idle (no shaving, no recharging)."""


def _limit_mode(limit_w: LimitSpec) -> tuple[str, float]:
    """(mode, fixed limit or nan) of a :data:`LimitSpec`, checked."""
    if limit_w is None:
        return "optimal", math.nan
    if isinstance(limit_w, str):
        if limit_w not in _MODES:
            raise ReplayError(f"--limit: expected 'auto', 'optimal' or a number of watts, got "
                              f"{limit_w!r}", source="--limit")
        return limit_w, math.nan
    value = float(limit_w)
    if not (math.isfinite(value) and value >= 0):
        raise ReplayError(f"--limit: must be 'auto', 'optimal' or a number of watts >= 0, got "
                          f"{limit_w}", source="--limit")
    return "fixed", value


def _checked_values(load: LoadProfile, opt: PeakReplayOptions) -> FloatArray:
    """The profile's values, once the profile and the options are checked."""
    values = np.asarray(load.power_w, dtype=np.float64)
    if values.size < 2:
        raise ReplayError(f"{load.path}: the load selection has {values.size} sample(s); "
                          "need at least 2", source=load.path)
    if not (0 < opt.cycle_s <= opt.settle_s and 0 < opt.load_ramp_s < load.step_s
            and opt.max_step_s > 0 and opt.physics_step_s > 0):
        raise ReplayError("options: need 0 < cycle_s <= settle_s, 0 < load_ramp_s < the "
                          "profile step, max_step_s > 0, physics_step_s > 0", source="options")
    return values


def _strategy_config(mode: str, fixed_w: float, values: FloatArray, models: list[FleetModel],
                     opt: PeakReplayOptions) -> PeakShavingConfig:
    """Peak shaving (fixed limit, set per period, or ``auto``), recharging with the whole
    fleet up to a small margin."""
    top = float(values.max())
    ref = fixed_w if mode == "fixed" else top
    return PeakShavingConfig(
        import_limit_w=fixed_w if mode == "fixed" else top,
        limit_mode="auto" if mode == "auto" else "fixed",
        export_limit_w=max(ref, top) * 10.0,
        target_soc_pct=opt.target_soc_pct,
        recharge_power_w=sum(m.charge_max_w for m in models),
        recharge_margin_w=_resolve(opt.recharge_margin_w, max(10.0, 1e-4 * ref)),
        interval_s=opt.cycle_s,
    )


def _set_limit(cycle: ControlCycle, base: PeakShavingConfig, limit_w: float | None) -> None:
    """Run the coming period with the fixed limit ``limit_w`` (None: idle, no shaving and
    no recharging). The strategy is stateless (the interval's state is the meter's), so
    the cycle gets a new one with the new settings, as a restart with a new config would."""
    cfg = (dataclasses.replace(base, import_limit_w=limit_w) if limit_w is not None else
           dataclasses.replace(base, import_limit_w=_IDLE_LIMIT_W, target_soc_pct=0.0))
    cycle.strategies = [PeakShaving(cfg) if isinstance(s, PeakShaving) else s
                        for s in cycle.strategies]


def _physics(site: SiteConfig, values: FloatArray, step_s: float, opt: PeakReplayOptions,
             seed: int) -> SitePhysics:
    """The quiet site with the profile as a staircase (the physics interpolates linearly)."""
    prof, prof_step = staircase(values, step_s, opt.load_ramp_s)
    quiet = quiet_site(
        site,
        load=LoadConfig(profile_w=prof, step_s=prof_step, noise_w=0.0),
        frequency=FrequencyConfig(nominal_hz=site.frequency.nominal_hz, noise_hz=0.0, events=()),
    )
    return SitePhysics(quiet, seed=seed, max_step_s=opt.physics_step_s)


class _Samples:
    """The true trajectory, sampled at every physics step end (the vertices of the report),
    and what the control saw at the first cycle of each interval."""

    def __init__(self, truth: PhysicsTruth, n_intervals: int) -> None:
        self.truth = truth
        self.ts: list[float] = []
        self.grid: list[float] = []
        self.unc: list[float] = []
        self.bat: list[float] = []
        self.soc: list[float] = []
        self.lower: list[float] = []
        self.energy: list[float] = []
        self.limit = np.full(n_intervals, math.nan)  # effective limit in force
        self.given = np.full(n_intervals, math.nan)  # the target limit given (or planned)
        self.billed = np.full(n_intervals, math.nan)  # the meter's billed peak
        self.planned = np.full(n_intervals, math.nan)  # the auto limit's plan
        self.record()

    def record(self) -> None:
        """Append the physics' state now."""
        ph = self.truth.ph
        self.ts.append(ph.now_s)
        self.grid.append(ph.grid_power_w)
        self.unc.append(ph.load_power_w)
        self.bat.append(ph.battery_inverter_power_w)
        self.soc.append(self.truth.soc_pct())
        self.lower.append(self.truth.fleet_lower_w())
        self.energy.append(self.truth.energy_above_min_wh())

    def control_view(self, i: int, cycle: ControlCycle) -> None:
        """At the first cycle of interval ``i``: the effective and the given (target) limit,
        billed peak, plan."""
        if i >= self.limit.size or not math.isnan(self.limit[i]):
            return
        ps, meter = cycle.peak_shaving, cycle.meter
        billed = meter.billed_peak_w if meter is not None else math.nan
        planned = cycle.planned_limit_w
        limit = given = math.inf
        if ps is not None and ps.config.import_limit_w < _IDLE_LIMIT_W:
            limit = effective_limit_w(ps.config, billed, planned)
            given = target_limit_w(ps.config, planned)
        self.limit[i], self.billed[i], self.planned[i] = limit, billed, planned
        self.given[i] = given


def _to_soc_limit(ph: SitePhysics) -> float:
    """Seconds until the first battery reaches a SoC limit at its present power."""
    bp = ph.battery_power_w
    room = np.where(bp > 0, ph.battery_soc_max_pct - ph.battery_soc_pct,
                    ph.battery_soc_pct - ph.battery_soc_min_pct)
    moving = (np.abs(bp) > 1.0) & (room > 0)
    if not moving.any():
        return math.inf
    rate = np.abs(bp[moving]) / ph.battery_capacity_wh[moving] * 100.0 / 3600.0
    return float(np.min(room[moving] / rate))


def _cycle_interval(t: float, step_s: float, end_s: float) -> int:
    """The interval a cycle at ``t`` runs in, never past the last one before ``end_s``: the
    run loop goes on while ``t < end_s − 1e-9`` and the index rounds up within 1e-9 of an
    interval, so after months of virtual seconds (float steps of ~1e-9 s) a cycle a few
    ulps before the period's end would otherwise be taken for the next period's first
    interval and record that interval with this period's limit."""
    return min(int(t / step_s + 1e-9), round(end_s / step_s) - 1)


def _run_cycles(transport: PhysicsTransport, samples: _Samples, opt: PeakReplayOptions,
                step_s: float, end_s: float, total_s: float,
                progress: ProgressCallback | None) -> None:
    """Cycle until ``end_s``: at ``cycle_s`` after each load step, sparsely between, and
    at every billing-interval boundary (the interval-mean law starts each interval anew)."""
    ph = transport.physics
    cycle = transport.control.cycle
    meter = cycle.meter
    fine = min(opt.physics_fine_step_s, opt.physics_step_s)
    t = ph.now_s
    next_report = transport.cycles

    def meter_settled() -> None:
        # The service meters the grid every cycle (200 ms): before a coarse stretch the
        # meter sees the site once the setpoints just sent have taken effect, or it would
        # hold the sample taken before them for minutes (no strategy is stepped).
        transport.cycle(strategies=())

    while t < end_s - 1e-9:
        due = transport.cycle()
        i = _cycle_interval(t, step_s, end_s)
        samples.control_view(i, cycle)
        since = t - i * step_s
        if since < opt.settle_s - 1e-9:  # around a load step: the service's cadence
            dt = opt.cycle_s
            coarse = fine
        else:
            dt = min(opt.max_step_s, (i + 1) * step_s - t)
            coarse = opt.physics_step_s
        site_t = transport.site_time_s()
        if meter is not None and site_t is not None:
            to_boundary = meter.interval_end_s - site_t
            if to_boundary > 1e-6:
                dt = min(dt, to_boundary)
        dt = min(dt, end_s - t)
        coarse_rest = coarse != fine
        advance(ph, due, dt, fine, coarse, samples.record,
                (lambda: _to_soc_limit(ph)) if coarse_rest else None,
                meter_settled if coarse_rest else None)
        t = ph.now_s
        if progress is not None and transport.cycles >= next_report:
            progress(t, total_s)
            next_report = transport.cycles + 2000


@dataclass(frozen=True)
class _PeriodRun:
    """What the run loop knows of a period when it starts it."""

    period: Period
    optimum: OptimumResult
    limit_w: float
    soc_start_pct: float
    note: str
    lp_wall_s: float
    wall_s: float


def _optimum(values: FloatArray, step_s: float, fleet: FleetModel | list[FleetModel],
             energy_wh: float | None = None) -> tuple[OptimumResult, float]:
    """The perfect-foresight optimum of ``values`` (from ``energy_wh`` when given) and its
    wall time."""
    if energy_wh is not None and isinstance(fleet, FleetModel):
        fleet = dataclasses.replace(
            fleet, energy_init_wh=min(max(energy_wh, fleet.energy_min_wh), fleet.energy_max_wh))
    t0 = time.perf_counter()
    res = optimal_peak(values, step_s, fleet)
    if not res.success:
        raise ReplayError(f"optimum LP failed: {res.message}", source="optimum")
    return res, time.perf_counter() - t0


def _run_periods(transport: PhysicsTransport, samples: _Samples, base: PeakShavingConfig,
                 mode: str, fixed_w: float, values: FloatArray, step_s: float,
                 periods: list[Period], agg: FleetModel, previous_w: float | None,
                 opt: PeakReplayOptions, progress: ProgressCallback | None) -> list[_PeriodRun]:
    """Replay period after period: each one's optimum from the energy the fleet has at its
    start, its limit by ``mode``, then its cycles."""
    truth = samples.truth
    out: list[_PeriodRun] = []
    total = values.size * step_s
    for per in periods:
        w0 = time.perf_counter()
        energy = truth.soc_pct() / 100.0 * truth.cap_total
        lp, lp_wall = _optimum(values[per.first:per.end], step_s, agg, energy)
        note = ""
        limit: float | None = math.nan
        if mode == "fixed":
            limit = fixed_w
        elif mode == "optimal":
            limit = lp.peak_import_w
        elif mode == "previous":
            limit = previous_w
            if limit is None:
                note = "no previous period: batteries idle"
        if mode != "auto":
            _set_limit(transport.control.cycle, base, limit)
        soc0 = truth.soc_pct()
        _run_cycles(transport, samples, opt, step_s, per.end * step_s, total, progress)
        plan = transport.control.cycle.plan
        if mode == "auto":
            limit = plan.limit_w if plan is not None else math.inf
        out.append(_PeriodRun(per, lp, math.nan if limit is None else limit, soc0, note,
                              lp_wall, time.perf_counter() - w0))
        previous_w = lp.peak_import_w
    if progress is not None:
        progress(total, total)
    return out


def _period_rows(runs: list[_PeriodRun], clock: BillingClock, start_unix_s: float,
                 step_s: float, values: FloatArray, mean: FloatArray,
                 above: npt.NDArray[np.bool_], avoid: npt.NDArray[np.bool_],
                 given: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], FloatArray],
                 throughput_wh: FloatArray, usable_wh: float,
                 tolerance_w: float) -> list[PeriodResult]:
    """One :class:`PeriodResult` per period of the run."""
    rows = []
    for r in runs:
        a, b = r.period.first, r.period.end
        unc = float(values[a:b].max())
        peak = float(mean[a:b].max())
        optimum = float(r.optimum.peak_import_w)
        red_opt, red_ach = unc - optimum, unc - peak
        start = dt.datetime.fromtimestamp(start_unix_s + a * step_s, clock.tz)
        rows.append(PeriodResult(
            period=r.period.key, start=start.isoformat(), intervals=b - a, whole=r.period.whole,
            peak_import_w_uncontrolled=unc, peak_import_w_optimal=optimum, peak_import_w=peak,
            reduction_optimal_w=red_opt, reduction_achieved_w=red_ach,
            reduction_achieved_pct_of_optimal=(
                share_of_optimal_pct(red_ach, red_opt, tolerance_w) if not r.note else math.nan),
            limit_w=r.limit_w,
            intervals_above_limit=int(np.count_nonzero(above[a:b])),
            intervals_above_limit_avoidable=int(np.count_nonzero(avoid[a:b])),
            intervals_above_given_limit=int(np.count_nonzero(given[0][a:b])),
            intervals_above_given_limit_preventable=int(np.count_nonzero(given[1][a:b])),
            excess_above_given_limit_wh=float(given[2][a:b].sum()),
            equivalent_full_cycles=float(throughput_wh[a:b].sum()) / (2.0 * usable_wh),
            soc_start_pct=r.soc_start_pct, wall_s=r.wall_s, note=r.note,
        ))
    return rows


def _report(load: LoadProfile, values: FloatArray, mode: str, runs: list[_PeriodRun],
            by_group: OptimumResult | None, clock: BillingClock, agg: FleetModel,
            samples: _Samples, opt: PeakReplayOptions, cycles: int,
            wall_s: float) -> PeakShavingReport:
    """The control quality of the sampled trajectory, per period and over the run."""
    step = float(load.step_s)
    n_int = values.size
    limits = np.where(np.isnan(samples.limit), math.inf, samples.limit)
    finite = limits[np.isfinite(limits)]
    targets = [r.limit_w for r in runs if math.isfinite(r.limit_w)]
    limit = max(targets) if targets else math.nan
    tol_above = _resolve(opt.above_limit_tolerance_w,
                         max(100.0, 1e-3 * (float(finite.max()) if finite.size else 0.0)))
    t_a = np.array(samples.ts)
    g_a = np.array(samples.grid)
    b_a = np.array(samples.bat)
    s_a = np.array(samples.soc)
    above_int, avoid_int, inst = classify_intervals(
        t_a, g_a, b_a, np.array(samples.lower), limit_w=limits, interval_s=step,
        n_intervals=n_int, tolerance_w=tol_above)
    given = preventable_intervals(
        t_a, g_a, b_a, np.array(samples.lower), np.array(samples.energy),
        limit_w=np.where(np.isnan(samples.given), math.inf, samples.given), interval_s=step,
        n_intervals=n_int, tolerance_w=tol_above)
    interval = _interval_of(t_a, step, n_int)
    mean = _interval_means(g_a, interval, np.diff(t_a), step, n_int)
    throughput = _interval_means(np.abs(b_a), interval, np.diff(t_a), step, n_int) * step / 3600.0
    rows = _period_rows(runs, clock, load.start_unix_s, step, values, mean, above_int, avoid_int,
                        given, throughput, agg.energy_max_wh - agg.energy_min_wh, tol_above)
    counted = [r for r in rows if not r.note]
    red_opt = sum(r.reduction_optimal_w for r in counted)
    red_ach = sum(r.reduction_achieved_w for r in counted)
    pos = np.maximum(g_a - limits[interval], 0.0)
    excess = mean - limits
    return PeakShavingReport(
        peak_import_w_uncontrolled=float(values.max()),
        peak_import_w_optimal=max(float(r.optimum.peak_import_w) for r in runs),
        peak_import_w=float(mean.max()),
        peak_import_w_optimal_groups=(float(by_group.peak_import_w)
                                      if by_group is not None else math.nan),
        peak_import_w_instant=float(g_a.max()),
        import_limit_w=limit,
        reduction_optimal_w=red_opt,
        reduction_achieved_w=red_ach,
        reduction_achieved_pct_of_optimal=(share_of_optimal_pct(red_ach, red_opt, tol_above)
                                           if counted else math.nan),
        intervals_total=n_int,
        intervals_above_limit=int(np.count_nonzero(above_int)),
        intervals_above_limit_avoidable=int(np.count_nonzero(avoid_int)),
        intervals_with_excursion=int(np.count_nonzero(inst)),
        intervals_above_given_limit=int(np.count_nonzero(given[0])),
        intervals_above_given_limit_preventable=int(np.count_nonzero(given[1])),
        above_limit_tolerance_w=tol_above,
        max_excess_w=float(max(0.0, float(excess[np.isfinite(excess)].max(initial=0.0)))),
        energy_above_limit_wh=float(np.sum(0.5 * (pos[1:] + pos[:-1]) * np.diff(t_a))) / 3600.0,
        soc_min_pct=float(s_a.min()),
        soc_max_pct=float(s_a.max()),
        control_cycles=cycles,
        simulated_s=n_int * step,
        wall_s=wall_s,
        lp_wall_s=sum(r.lp_wall_s for r in runs),
        lp_status=runs[-1].optimum.message,
        load={
            "file": load.path,
            "column": load.column,
            "start": load.start.isoformat(),
            "days": n_int * step / 86400.0,
            "step_s": step,
            "scale": load.scale,
            "peak_w": float(values.max()),
            "history_days": load.history_w.size * step / 86400.0,
            "zone": str(clock.tz),
        },
        limit_mode=mode,
        equivalent_full_cycles=float(throughput.sum()) / (
            2.0 * (agg.energy_max_wh - agg.energy_min_wh)),
        periods=[r.as_dict() for r in rows],
        interval_mean_w=mean,
        interval_limit_w=limits,
        interval_billed_peak_w=samples.billed,
        interval_planned_limit_w=samples.planned,
        time_s=t_a,
        grid_w=g_a,
        load_w=np.array(samples.unc),
        battery_w=b_a,
        soc_pct=s_a,
    )


def run_peak_shaving(
    site: SiteConfig,
    load: LoadProfile,
    *,
    limit_w: LimitSpec = None,
    options: PeakReplayOptions | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    billing: BillingConfig | None = None,
    auto_limit: AutoLimitConfig | None = None,
) -> PeakShavingReport:
    """Replay ``load`` on ``site`` with peak shaving, billing period after billing period.

    The control is the production control cycle on the data's clock: the site's
    time is the profile's timestamps plus the virtual seconds, so the billing
    meter's intervals are the data's and its periods calendar months (or
    ``billing.period``) in ``billing.timezone``, else :data:`DEFAULT_ZONE`. The
    profile's rows before its selection (:attr:`LoadProfile.history_w`) are fed to
    the meter first, as if the site had recorded them (:func:`feed_history`): a
    replay from February learns from January; with none it starts cold. The fleet's
    SoC carries over from one period to the next.

    ``limit_w`` (:data:`LimitSpec`): watts (fixed); ``"optimal"`` / None: each
    period's own perfect-foresight optimum as its fixed limit (an upper bound no
    site reaches: it knows the future); ``"previous"``: the previous period's optimum
    (the first period's from the history when it holds all of it, else the batteries
    stay idle in it and its row says so); ``"auto"``: ``limit = "auto"``, the
    production planner (:class:`~controller.runtime.planning.AutoLimit`), no future
    data. Each period's optimum is the LP (:func:`optimal_peak`) on its values from the
    energy the fleet has at its start.

    The load holds each profile value for its interval (15-min energy data are
    interval means) and moves to the next one over ``load_ramp_s``; the site's
    PV, load noise and frequency events are switched off, so the uncontrolled
    grid power is exactly this load and the LP on the profile values ("hold") is
    the exact optimum of the interval-mean peak.

    Time stepping: around every load step the controller cycles every
    ``cycle_s`` for ``settle_s`` with ``physics_fine_step_s`` physics sub-steps
    (inverter delay and ramp resolved); while the load is constant the
    interval-mean law gets inputs that keep its wish (the interval's energy grows
    at the rate it planned), so the next cycle is at the next load step or billing
    interval boundary, ``max_step_s`` later, or when a battery reaches a SoC limit,
    whichever comes first. The meter holds a sample over such a step
    (``meter_max_gap_s = max_step_s``), which the service's meter would count as a
    telemetry gap; the sample is taken once the setpoints sent before the step have
    taken effect (a cycle with no strategy due).

    Raises:
        ReplayError: bad input (too short a profile, no batteries, bad limit, LP failure).
    """
    opt = options or PeakReplayOptions()
    mode, fixed_w = _limit_mode(limit_w)
    values = _checked_values(load, opt)
    step = float(load.step_s)
    billing = billing or BillingConfig()
    clock = billing_clock(billing)
    models = fleet_models(site)
    agg = aggregate_model(models)
    periods = billing_periods(clock, load.start_unix_s, step, values.size)
    by_group = None
    if opt.lp_groups and len(periods) == 1:
        by_group, _ = _optimum(values, step, models)
    base = _strategy_config(mode, fixed_w, values, models, opt)
    config = dataclasses.replace(replay_config(opt, peak_shaving=base, billing=billing),
                                 auto_limit=auto_limit or AutoLimitConfig())
    control = replay_control(site, config, site_zone=DEFAULT_ZONE,
                             meter_max_gap_s=max(opt.max_step_s, step))
    assert control.cycle.meter is not None
    feed_history(control.cycle.meter, load.history_w, load.start_unix_s, step)
    previous_w = None
    if mode == "previous":
        rows = history_period(clock, load.history_w, load.start_unix_s, step)
        if rows is not None and rows.size >= 2:
            previous_w = _optimum(rows, step, agg)[0].peak_import_w
    ph = _physics(site, values, step, opt, seed)
    transport = PhysicsTransport(ph, control, site_origin_s=load.start_unix_s)
    samples = _Samples(PhysicsTruth(ph), values.size)
    wall0 = time.perf_counter()
    runs = _run_periods(transport, samples, base, mode, fixed_w, values, step, periods, agg,
                        previous_w, opt, progress)
    wall = time.perf_counter() - wall0
    return _report(load, values, mode, runs, by_group, clock, agg, samples, opt,
                   transport.cycles, wall)
