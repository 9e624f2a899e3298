"""Peak-shaving replay: a load profile against the site physics, the LP optimum as the limit.

* :func:`run_peak_shaving` → :class:`~controller.lab.replay.reports.PeakShavingReport`
  — replay a load profile through :class:`~controller.runtime.strategies.PeakShaving`
  with the perfect-foresight optimum
  (:func:`~controller.lab.replay.optimum.optimal_peak`) as the import limit.
* :class:`PeakReplayOptions` — its settings.
* :func:`classify_intervals` — which metering intervals were above the limit, avoidably.
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
change), whichever is first. A month of 15-min data takes some 3·10⁴ cycles
instead of 1.3·10⁷ at 200 ms. The instantaneous import (transients of a few
hundred ms at each load step) is reported separately.

Units and signs: W, Wh, %, simulated seconds; + = importing / charging.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.fleet import aggregate_model, fleet_models
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.optimum import optimal_peak
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
from controller.runtime.planning import FleetModel, OptimumResult
from controller.runtime.strategies import PeakShavingConfig
from simulator.config import FrequencyConfig, LoadConfig, SiteConfig
from simulator.physics import SitePhysics

__all__ = ["PeakReplayOptions", "classify_intervals", "run_peak_shaving", "staircase"]


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
    limit_w: float,
    interval_s: float,
    n_intervals: int,
    tolerance_w: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which metering intervals were above the limit, avoidably, or had an excursion.

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
    above = mean - limit_w > tolerance_w
    excess = grid_w - limit_w
    coverable = np.clip(np.minimum(excess, battery_w - fleet_lower_w), 0.0, None)
    cov_mean = _interval_means(coverable, interval, dt, interval_s, n_intervals)
    avoidable = above & (cov_mean > tolerance_w)
    excursion = np.bincount(interval, weights=(excess > tolerance_w).astype(np.float64),
                            minlength=n_intervals) > 0
    return above, avoidable, excursion


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


def _checked_values(load: LoadProfile, opt: PeakReplayOptions, limit_w: float | None) -> FloatArray:
    """The profile's values, once the profile, the options and ``limit_w`` are checked."""
    values = np.asarray(load.power_w, dtype=np.float64)
    if values.size < 2:
        raise ReplayError(f"{load.path}: the load selection has {values.size} sample(s); "
                          "need at least 2", source=load.path)
    if not (0 < opt.cycle_s <= opt.settle_s and 0 < opt.load_ramp_s < load.step_s
            and opt.max_step_s > 0 and opt.physics_step_s > 0):
        raise ReplayError("options: need 0 < cycle_s <= settle_s, 0 < load_ramp_s < the "
                          "profile step, max_step_s > 0, physics_step_s > 0", source="options")
    if limit_w is not None and not (math.isfinite(limit_w) and limit_w >= 0):
        raise ReplayError(f"--limit: must be 'optimal' or a number of watts >= 0, got {limit_w}",
                          source="--limit")
    return values


@dataclass(frozen=True)
class _Optimum:
    """The LP optima of a profile and the limit the controller runs with."""

    aggregate: OptimumResult
    by_group: OptimumResult | None
    limit_w: float
    wall_s: float


def _solve_optimum(values: FloatArray, step_s: float, models: list[FleetModel],
                   opt: PeakReplayOptions, limit_w: float | None) -> _Optimum:
    """The perfect-foresight optimum (fleet as one battery; per group if asked)."""
    t0 = time.perf_counter()
    optimum = optimal_peak(values, step_s, aggregate_model(models))
    lp_wall = time.perf_counter() - t0
    if not optimum.success:
        raise ReplayError(f"optimum LP failed: {optimum.message}", source="optimum")
    by_group = optimal_peak(values, step_s, models) if opt.lp_groups else None
    limit = optimum.peak_import_w if limit_w is None else float(limit_w)
    return _Optimum(optimum, by_group, limit, lp_wall)


def _strategy_config(limit: float, values: FloatArray, models: list[FleetModel],
                     opt: PeakReplayOptions) -> PeakShavingConfig:
    """Peak shaving at ``limit``, recharging with the whole fleet up to a small margin."""
    return PeakShavingConfig(
        import_limit_w=limit,
        export_limit_w=max(limit, float(values.max())) * 10.0,
        target_soc_pct=opt.target_soc_pct,
        recharge_power_w=sum(m.charge_max_w for m in models),
        recharge_margin_w=_resolve(opt.recharge_margin_w, max(10.0, 1e-4 * limit)),
        interval_s=opt.cycle_s,
    )


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
    """The true trajectory, sampled at every physics step end (the vertices of the report)."""

    def __init__(self, truth: PhysicsTruth) -> None:
        self.truth = truth
        self.ts: list[float] = []
        self.grid: list[float] = []
        self.unc: list[float] = []
        self.bat: list[float] = []
        self.soc: list[float] = []
        self.lower: list[float] = []
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


def _run_cycles(transport: PhysicsTransport, samples: _Samples, opt: PeakReplayOptions,
                step_s: float, total_s: float, progress: ProgressCallback | None) -> float:
    """Cycle until ``total_s``: at ``cycle_s`` after each load step, sparsely between.

    Returns:
        The wall time of the loop (s, information only).
    """
    ph = transport.physics
    fine = min(opt.physics_fine_step_s, opt.physics_step_s)
    wall0 = time.perf_counter()
    t = 0.0
    next_report = 0
    while t < total_s - 1e-9:
        due = transport.cycle()
        i = int(t / step_s + 1e-9)
        since = t - i * step_s
        if since < opt.settle_s - 1e-9:  # around a load step: the service's cadence
            dt = opt.cycle_s
            coarse = fine
        else:
            dt = min(opt.max_step_s, (i + 1) * step_s - t)
            coarse = opt.physics_step_s
        dt = min(dt, total_s - t)
        advance(ph, due, dt, fine, coarse, samples.record,
                None if coarse == fine else lambda: _to_soc_limit(ph))
        t = ph.now_s
        if progress is not None and transport.cycles >= next_report:
            progress(t, total_s)
            next_report = transport.cycles + 2000
    wall = time.perf_counter() - wall0
    if progress is not None:
        progress(total_s, total_s)
    return wall


def _report(load: LoadProfile, values: FloatArray, lp: _Optimum, samples: _Samples,
            opt: PeakReplayOptions, cycles: int, wall_s: float) -> PeakShavingReport:
    """The control quality of the sampled trajectory against the optimum."""
    step = float(load.step_s)
    n_int = values.size
    limit = lp.limit_w
    tol_above = _resolve(opt.above_limit_tolerance_w, max(100.0, 1e-3 * limit))
    t_a = np.array(samples.ts)
    g_a = np.array(samples.grid)
    b_a = np.array(samples.bat)
    s_a = np.array(samples.soc)
    above_int, avoid_int, inst = classify_intervals(
        t_a, g_a, b_a, np.array(samples.lower), limit_w=limit, interval_s=step,
        n_intervals=n_int, tolerance_w=tol_above)
    mean = _interval_means(g_a, _interval_of(t_a, step, n_int), np.diff(t_a), step, n_int)
    pos = np.maximum(g_a - limit, 0.0)
    peak_unc = float(values.max())
    peak = float(mean.max())
    red_opt = peak_unc - lp.aggregate.peak_import_w
    red_ach = peak_unc - peak
    pct = 100.0 * red_ach / red_opt if red_opt > 1e-6 else (100.0 if red_ach >= -tol_above
                                                             else 0.0)
    return PeakShavingReport(
        peak_import_w_uncontrolled=peak_unc,
        peak_import_w_optimal=float(lp.aggregate.peak_import_w),
        peak_import_w=peak,
        peak_import_w_optimal_groups=(float(lp.by_group.peak_import_w)
                                      if lp.by_group is not None else math.nan),
        peak_import_w_instant=float(g_a.max()),
        import_limit_w=limit,
        reduction_optimal_w=red_opt,
        reduction_achieved_w=red_ach,
        reduction_achieved_pct_of_optimal=pct,
        intervals_total=n_int,
        intervals_above_limit=int(np.count_nonzero(above_int)),
        intervals_above_limit_avoidable=int(np.count_nonzero(avoid_int)),
        intervals_with_excursion=int(np.count_nonzero(inst)),
        above_limit_tolerance_w=tol_above,
        max_excess_w=float(max(0.0, peak - limit)),
        energy_above_limit_wh=float(np.sum(0.5 * (pos[1:] + pos[:-1]) * np.diff(t_a)) / 3600.0),
        soc_min_pct=float(s_a.min()),
        soc_max_pct=float(s_a.max()),
        control_cycles=cycles,
        simulated_s=n_int * step,
        wall_s=wall_s,
        lp_wall_s=lp.wall_s,
        lp_status=lp.aggregate.message,
        load={
            "file": load.path,
            "column": load.column,
            "start": load.start.isoformat(),
            "days": n_int * step / 86400.0,
            "step_s": step,
            "scale": load.scale,
            "peak_w": peak_unc,
        },
        interval_mean_w=mean,
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
    limit_w: float | None = None,
    options: PeakReplayOptions | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> PeakShavingReport:
    """Replay ``load`` on ``site`` with peak shaving at ``limit_w`` (None = the LP optimum).

    The load holds each profile value for its interval (15-min energy data are
    interval means) and moves to the next one over ``load_ramp_s``; the site's
    PV, load noise and frequency events are switched off, so the uncontrolled
    grid power is exactly this load and the LP (:func:`optimal_peak` on the
    profile values, "hold") is the exact optimum of the interval-mean peak.

    Time stepping: around every load step the controller cycles every
    ``cycle_s`` for ``settle_s`` with ``physics_fine_step_s`` physics sub-steps
    (inverter delay and ramp resolved); while the load is constant nothing changes between
    cycles, so the next cycle is at the next load step, ``max_step_s`` later,
    or when a battery reaches a SoC limit, whichever comes first.

    Raises:
        ReplayError: bad input (too short a profile, no batteries, LP failure).
    """
    opt = options or PeakReplayOptions()
    values = _checked_values(load, opt, limit_w)
    step = float(load.step_s)
    models = fleet_models(site)
    lp = _solve_optimum(values, step, models, opt, limit_w)
    ph = _physics(site, values, step, opt, seed)
    control = replay_control(site, replay_config(
        opt, peak_shaving=_strategy_config(lp.limit_w, values, models, opt)))
    transport = PhysicsTransport(ph, control)
    samples = _Samples(PhysicsTruth(ph))
    wall = _run_cycles(transport, samples, opt, step, values.size * step, progress)
    return _report(load, values, lp, samples, opt, transport.cycles, wall)
