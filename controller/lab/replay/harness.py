"""Deterministic replay: strategies + power manager + distribution against the site physics.

Offers:

* :func:`run_peak_shaving` → :class:`PeakShavingReport` — replay a load profile
  through :class:`~controller.runtime.strategies.PeakShaving` with the perfect-foresight
  optimum (:func:`~controller.lab.replay.optimum.optimal_peak`) as the import limit.
* :func:`run_frequency_response` → :class:`FrequencyResponseReport` — replay a
  frequency trace with step events (:func:`make_frequency_trace`) through
  :class:`~controller.runtime.strategies.FrequencyResponse`.
* :func:`fleet_models` — the battery groups of a site as LP models.

Everything runs in process on a virtual clock: :class:`simulator.physics.SitePhysics`
is stepped between control cycles, no gRPC, no sleeping, no clock reads (the
wall time in the reports is measured around the run, for information only).
A control cycle is the code ``gridloop run`` executes, built the same way
(:func:`~controller.lab.replay.transport.replay_control`): the physics' state is
written into the :class:`actors.SiteCore`'s state table as telemetry would be,
:func:`controller.runtime.cycle.plan_setpoints` measures, steps the strategies, merges
their wishes, snapshots the fleet (health exclusion), allocates and applies the
deadband/renewal rule, and the setpoints it sends are applied to the physics
(:class:`~controller.lab.replay.transport.PhysicsTransport`), where each takes
effect its inverter's response delay later.

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
instead of 1.3·10⁷ at 200 ms. The
instantaneous import (transients of a few hundred ms at each load step) is
reported separately.

*Frequency response* runs a fixed control step (default 100 ms, the
grid-meter sample period) with physics sub-steps of ``physics_step_s``
(default 50 ms).

Units and signs: W, Wh, %, Hz, simulated seconds; passive sign convention
(positive = the site importing, the batteries charging).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.optimum import FleetModel, OptimumResult, optimal_peak
from controller.lab.replay.transport import PhysicsTransport, replay_control, site_graph
from controller.runtime.config import ControlConfig, GridloopConfig
from controller.runtime.strategies import (
    FrequencyResponseConfig,
    PeakShavingConfig,
    StrategyInputs,
    frequency_response_wish,
    soc_band_pct,
)
from simulator.config import (
    BatteryConfig,
    FrequencyConfig,
    FrequencyEvent,
    InverterConfig,
    LoadConfig,
    PvConfig,
    SiteConfig,
)
from simulator.physics import SitePhysics

__all__ = [
    "FrequencyReplayOptions",
    "FrequencyResponseReport",
    "FrequencyTrace",
    "PeakReplayOptions",
    "PeakShavingReport",
    "aggregate_model",
    "classify_intervals",
    "fleet_models",
    "make_frequency_trace",
    "run_frequency_response",
    "run_peak_shaving",
    "staircase",
]

FloatArray = npt.NDArray[np.float64]
_CONTROL_DEFAULTS = ControlConfig()
ProgressCallback = Callable[[float, float], None]
"""``progress(done_s, total_s)``: called every few hundred cycles with simulated seconds."""


# --------------------------------------------------------------------------- the site


def fleet_models(site: SiteConfig) -> list[FleetModel]:
    """One LP model per battery group (connected inverters + batteries) of the site.

    A group's charge (discharge) limit is the smaller of its inverters' summed
    rating and its batteries' summed DC limit; its energy window is the sum of
    ``capacity × soc_min/max``; its efficiencies are capacity-weighted means
    (exact when the group's batteries share them, as on the default site).

    Raises:
        ReplayError: the site has no battery behind an inverter.
    """
    graph = site_graph(site)
    by_id = {c.id: c for c in site.components}
    out: list[FleetModel] = []
    for group in graph.groups:
        gi_c = [cast(InverterConfig, by_id[i]) for i in group.inverter_ids]
        gb_c = [cast(BatteryConfig, by_id[b]) for b in group.battery_ids]
        cap = sum(b.capacity_wh for b in gb_c)
        out.append(FleetModel(
            charge_max_w=min(sum(c.rated_upper_w for c in gi_c),
                             sum(b.max_charge_w for b in gb_c)),
            discharge_max_w=min(sum(-c.rated_lower_w for c in gi_c),
                                sum(b.max_discharge_w for b in gb_c)),
            energy_min_wh=sum(b.capacity_wh * b.soc_min_pct / 100 for b in gb_c),
            energy_max_wh=sum(b.capacity_wh * b.soc_max_pct / 100 for b in gb_c),
            energy_init_wh=sum(b.capacity_wh * b.soc_pct / 100 for b in gb_c),
            charge_efficiency=sum(b.capacity_wh * b.charge_efficiency for b in gb_c) / cap,
            discharge_efficiency=sum(b.capacity_wh * b.discharge_efficiency for b in gb_c) / cap,
        ))
    return out


def aggregate_model(models: Sequence[FleetModel]) -> FleetModel:
    """The fleet as one battery: summed limits and energies, capacity-weighted efficiencies.

    This is how SoC-balancing distribution makes the fleet behave (every group
    moves toward the same relative SoC), so it is the reference optimum of
    :func:`run_peak_shaving`; the energy window's width stands in for capacity
    when weighting the efficiencies.
    """
    width = [max(m.energy_max_wh - m.energy_min_wh, 1e-9) for m in models]
    total = sum(width)
    return FleetModel(
        charge_max_w=sum(m.charge_max_w for m in models),
        discharge_max_w=sum(m.discharge_max_w for m in models),
        energy_min_wh=sum(m.energy_min_wh for m in models),
        energy_max_wh=sum(m.energy_max_wh for m in models),
        energy_init_wh=sum(m.energy_init_wh for m in models),
        charge_efficiency=sum(w * m.charge_efficiency for w, m in zip(width, models, strict=True))
        / total,
        discharge_efficiency=sum(w * m.discharge_efficiency
                                 for w, m in zip(width, models, strict=True)) / total,
    )


class _Truth:
    """What the physics really does (the measurement side of a report, not the control's view)."""

    def __init__(self, physics: SitePhysics) -> None:
        self.ph = physics
        ph = physics
        self.bat_inv = ~ph.inverter_is_pv
        self.capacity = ph.battery_capacity_wh
        self.cap_total = float(self.capacity.sum())
        self.soc_lo = float(np.dot(ph.battery_soc_min_pct, self.capacity) / self.cap_total)
        self.soc_hi = float(np.dot(ph.battery_soc_max_pct, self.capacity) / self.cap_total)

    def soc_pct(self) -> float:
        """Capacity-weighted fleet SoC (%)."""
        return float(np.dot(self.ph.battery_soc_pct, self.capacity) / self.cap_total)

    def fleet_lower_w(self) -> float:
        """The battery inverters' summed lower bound (W): what the fleet could discharge."""
        return float(self.ph.inverter_lower_w[self.bat_inv].sum())

    def inputs(self) -> StrategyInputs:
        """The strategies' inputs as the true site state would give them."""
        ph = self.ph
        return StrategyInputs(
            grid_power_w=ph.grid_power_w,
            battery_power_w=ph.battery_inverter_power_w,
            grid_frequency_hz=ph.frequency_hz,
            soc_pct=self.soc_pct(),
            capacity_wh=self.cap_total,
            soc_lower_pct=self.soc_lo,
            soc_upper_pct=self.soc_hi,
            fleet_lower_w=self.fleet_lower_w(),
            fleet_upper_w=float(ph.inverter_upper_w[self.bat_inv].sum()),
        )


def _advance(physics: SitePhysics, due_s: Sequence[float], dt_s: float, fine_s: float,
             coarse_s: float, record: Callable[[], None] | None = None,
             horizon: Callable[[], float] | None = None) -> None:
    """Step the physics by ``dt_s``, finely up to the last time a sent setpoint takes effect.

    Up to the last of ``due_s`` (when the setpoints just sent take effect, after
    their inverter's response delay) the physics takes sub-steps of ``fine_s``
    and ``record`` is called at each due time; then ``coarse_s`` up to the end,
    where ``record`` is called once more. ``horizon()``, evaluated one fine
    step after the setpoints took effect, can shorten the coarse rest (e.g. to
    the time a battery reaches a SoC limit).
    """
    ph = physics
    end = ph.now_s + dt_s
    for due in sorted(set(due_s)):
        if due >= end - 1e-9:
            break
        if due > ph.now_s + 1e-12:
            ph.max_step_s = fine_s
            ph.step(due - ph.now_s)
            if record is not None:
                record()
    if horizon is not None and end - ph.now_s > fine_s:
        ph.max_step_s = fine_s
        ph.step(fine_s)  # let the last setpoints take effect
        end = min(end, ph.now_s + max(horizon(), fine_s))
    ph.max_step_s = coarse_s
    if end > ph.now_s + 1e-12:
        ph.step(end - ph.now_s)
    if record is not None:
        record()


def _config(opt: PeakReplayOptions | FrequencyReplayOptions, *,
            peak_shaving: PeakShavingConfig | None = None,
            frequency_response: FrequencyResponseConfig | None = None) -> GridloopConfig:
    """The gridloop config a replay runs: one strategy, the options' ``[control]``."""
    control = ControlConfig(setpoint_lifetime_s=int(opt.setpoint_lifetime_s),
                            deadband_w=opt.deadband_w, stale_after_s=opt.stale_after_s,
                            soc_exponent=opt.soc_exponent)
    return GridloopConfig(
        control=control,
        peak_shaving=peak_shaving or PeakShavingConfig(enabled=False),
        frequency_response=frequency_response or FrequencyResponseConfig(enabled=False),
    )


def _quiet_site(site: SiteConfig, *, load: LoadConfig, frequency: FrequencyConfig) -> SiteConfig:
    """The site with the given load and frequency, no PV, and no noise."""
    return dataclasses.replace(
        site,
        load=load,
        pv=PvConfig(irradiance_wm2=np.zeros(1), step_s=3600.0, noise_pct=0.0),
        frequency=frequency,
    )


# --------------------------------------------------------------------------- peak shaving


@dataclass(frozen=True, slots=True)
class PeakReplayOptions:
    """Settings of :func:`run_peak_shaving` (W, s)."""

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
    soc_exponent: float = 1.0
    """Distribution's SoC weighting exponent."""
    setpoint_lifetime_s: float = 900.0
    """Lifetime of each setpoint (s, whole, 10..900); renewed after half of it, so longer
    than twice the longest control step."""
    deadband_w: float = _CONTROL_DEFAULTS.deadband_w
    """The distributor's deadband (W), as ``[control] deadband_w``."""
    stale_after_s: float = _CONTROL_DEFAULTS.stale_after_s
    """Telemetry staleness limit (s), as ``[control] stale_after_s``."""


@dataclass(frozen=True)
class PeakShavingReport:
    """Control quality of a peak-shaving replay (W, %, s; + = import).

    Peaks are the largest *interval mean* import (15-min means for 15-min data:
    what a demand charge bills and what the load data describes); the
    instantaneous maximum is in :attr:`peak_import_w_instant`.
    """

    peak_import_w_uncontrolled: float
    """Peak of the load alone (no batteries)."""
    peak_import_w_optimal: float
    """Perfect-foresight optimum peak (LP, the fleet as one battery)."""
    peak_import_w: float
    """Peak import achieved by the controller."""
    peak_import_w_optimal_groups: float
    """Optimum with one battery per group (own limits and efficiencies; nan if not solved).
    At most the aggregate optimum: it may favour the most efficient group, which
    SoC-balancing distribution does not do."""
    peak_import_w_instant: float
    """Largest instantaneous import (includes the sub-second transients at load steps)."""
    import_limit_w: float
    """The limit the controller ran with."""
    reduction_optimal_w: float
    """``uncontrolled − optimal``."""
    reduction_achieved_w: float
    """``uncontrolled − achieved``."""
    reduction_achieved_pct_of_optimal: float
    """``100 × achieved / optimal`` reduction (100 when the optimum is no reduction)."""
    intervals_total: int
    """Metering intervals (one per load-profile sample) replayed."""
    intervals_above_limit: int
    """Intervals whose mean import exceeded the limit by more than the tolerance."""
    intervals_above_limit_avoidable: int
    """Of those, intervals in which the excess the fleet could have covered at the time
    (it had the discharge power and so the energy) averages above the tolerance."""
    intervals_with_excursion: int
    """Intervals with any instantaneous sample above limit + tolerance (transients
    included: a load step is answered within a cycle plus the inverter delay)."""
    above_limit_tolerance_w: float
    """Tolerance used for "above the limit"."""
    max_excess_w: float
    """Largest interval-mean import above the limit (0 if never above)."""
    energy_above_limit_wh: float
    """Energy imported above the limit (instantaneous excess, integrated)."""
    soc_min_pct: float
    """Lowest fleet SoC (capacity-weighted)."""
    soc_max_pct: float
    """Highest fleet SoC."""
    control_cycles: int
    """Control cycles run."""
    simulated_s: float
    """Simulated time replayed."""
    wall_s: float
    """Wall time of the replay (information only)."""
    lp_wall_s: float
    """Wall time of the LP (information only)."""
    lp_status: str
    """HiGHS status message."""
    load: dict[str, Any] = field(default_factory=dict)
    """Where the load came from: file, column, start, days, step, scale."""
    interval_mean_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Mean grid import per interval."""
    time_s: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Sample times (s since the start)."""
    grid_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Grid power at the samples."""
    load_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Uncontrolled grid power (= load) at the samples."""
    battery_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Battery inverter AC power at the samples."""
    soc_pct: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Fleet SoC at the samples."""

    def summary(self) -> dict[str, Any]:
        """The scalar results as a JSON-ready dict."""
        return _scalar_fields(self)


def _scalar_fields(report: Any) -> dict[str, Any]:
    """A report dataclass's fields as a JSON-ready dict, without its sample arrays."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(report):
        v = getattr(report, f.name)
        if isinstance(v, np.ndarray):
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _resolve(value: float | None, default: float) -> float:
    return default if value is None else float(value)


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
    interval = np.clip(np.ceil(time_s / interval_s - 1e-9).astype(np.int64) - 1, 0,
                       n_intervals - 1)
    dt = np.diff(time_s)
    area = 0.5 * (grid_w[1:] + grid_w[:-1]) * dt
    mean = np.bincount(interval[1:], weights=area, minlength=n_intervals) / interval_s
    above = mean - limit_w > tolerance_w
    excess = grid_w - limit_w
    coverable = np.clip(np.minimum(excess, battery_w - fleet_lower_w), 0.0, None)
    cov_area = 0.5 * (coverable[1:] + coverable[:-1]) * dt
    cov_mean = np.bincount(interval[1:], weights=cov_area, minlength=n_intervals) / interval_s
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
    step = float(load.step_s)
    n_int = values.size
    total_s = n_int * step
    models = fleet_models(site)

    t0 = time.perf_counter()
    optimum: OptimumResult = optimal_peak(values, step, aggregate_model(models))
    lp_wall = time.perf_counter() - t0
    if not optimum.success:
        raise ReplayError(f"optimum LP failed: {optimum.message}", source="optimum")
    by_group = optimal_peak(values, step, models) if opt.lp_groups else None
    limit = optimum.peak_import_w if limit_w is None else float(limit_w)

    tol_above = _resolve(opt.above_limit_tolerance_w, max(100.0, 1e-3 * limit))
    margin = _resolve(opt.recharge_margin_w, max(10.0, 1e-4 * limit))
    ps = PeakShavingConfig(
        import_limit_w=limit,
        export_limit_w=max(limit, float(values.max())) * 10.0,
        target_soc_pct=opt.target_soc_pct,
        recharge_power_w=sum(m.charge_max_w for m in models),
        recharge_margin_w=margin,
        interval_s=opt.cycle_s,
    )
    # The physics interpolates linearly: give it the staircase.
    prof, prof_step = staircase(values, step, opt.load_ramp_s)
    quiet = _quiet_site(
        site,
        load=LoadConfig(profile_w=prof, step_s=prof_step, noise_w=0.0),
        frequency=FrequencyConfig(nominal_hz=site.frequency.nominal_hz, noise_hz=0.0, events=()),
    )
    ph = SitePhysics(quiet, seed=seed, max_step_s=opt.physics_step_s)
    control = replay_control(site, _config(opt, peak_shaving=ps))
    transport = PhysicsTransport(ph, control)
    truth = _Truth(ph)

    ts: list[float] = [0.0]
    grid: list[float] = [ph.grid_power_w]
    unc: list[float] = [ph.load_power_w]
    bat: list[float] = [ph.battery_inverter_power_w]
    soc: list[float] = [truth.soc_pct()]
    lower: list[float] = [truth.fleet_lower_w()]
    wall0 = time.perf_counter()
    t = 0.0
    next_report = 0
    fine = min(opt.physics_fine_step_s, opt.physics_step_s)

    def record() -> None:
        ts.append(ph.now_s)
        grid.append(ph.grid_power_w)
        unc.append(ph.load_power_w)
        bat.append(ph.battery_inverter_power_w)
        soc.append(truth.soc_pct())
        lower.append(truth.fleet_lower_w())

    def to_soc_limit() -> float:
        """Seconds until the first battery reaches a SoC limit at its present power."""
        bp = ph.battery_power_w
        room = np.where(bp > 0, ph.battery_soc_max_pct - ph.battery_soc_pct,
                        ph.battery_soc_pct - ph.battery_soc_min_pct)
        moving = (np.abs(bp) > 1.0) & (room > 0)
        if not moving.any():
            return math.inf
        rate = np.abs(bp[moving]) / ph.battery_capacity_wh[moving] * 100.0 / 3600.0
        return float(np.min(room[moving] / rate))

    while t < total_s - 1e-9:
        due = transport.cycle()
        i = int(t / step + 1e-9)
        since = t - i * step
        if since < opt.settle_s - 1e-9:  # around a load step: the service's cadence
            dt = opt.cycle_s
            coarse = fine
        else:
            dt = min(opt.max_step_s, (i + 1) * step - t)
            coarse = opt.physics_step_s
        dt = min(dt, total_s - t)
        _advance(ph, due, dt, fine, coarse, record, None if coarse == fine else to_soc_limit)
        t = ph.now_s
        if progress is not None and transport.cycles >= next_report:
            progress(t, total_s)
            next_report = transport.cycles + 2000
    wall = time.perf_counter() - wall0
    if progress is not None:
        progress(total_s, total_s)

    t_a = np.array(ts)
    g_a = np.array(grid)
    u_a = np.array(unc)
    b_a = np.array(bat)
    s_a = np.array(soc)
    lo_a = np.array(lower)
    above_int, avoid_int, inst = classify_intervals(
        t_a, g_a, b_a, lo_a, limit_w=limit, interval_s=step, n_intervals=n_int,
        tolerance_w=tol_above)
    interval = np.clip(np.ceil(t_a / step - 1e-9).astype(np.int64) - 1, 0, n_int - 1)
    area = 0.5 * (g_a[1:] + g_a[:-1]) * np.diff(t_a)
    mean = np.bincount(interval[1:], weights=area, minlength=n_int) / step
    excess = g_a - limit
    pos = np.maximum(excess, 0.0)
    energy_above = float(np.sum(0.5 * (pos[1:] + pos[:-1]) * np.diff(t_a)) / 3600.0)
    peak_unc = float(values.max())
    peak = float(mean.max())
    red_opt = peak_unc - optimum.peak_import_w
    red_ach = peak_unc - peak
    pct = 100.0 * red_ach / red_opt if red_opt > 1e-6 else (100.0 if red_ach >= -tol_above
                                                             else 0.0)
    return PeakShavingReport(
        peak_import_w_uncontrolled=peak_unc,
        peak_import_w_optimal=float(optimum.peak_import_w),
        peak_import_w=peak,
        peak_import_w_optimal_groups=(float(by_group.peak_import_w) if by_group is not None
                                      else math.nan),
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
        energy_above_limit_wh=energy_above,
        soc_min_pct=float(s_a.min()),
        soc_max_pct=float(s_a.max()),
        control_cycles=transport.cycles,
        simulated_s=total_s,
        wall_s=wall,
        lp_wall_s=lp_wall,
        lp_status=optimum.message,
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
        load_w=u_a,
        battery_w=b_a,
        soc_pct=s_a,
    )


# --------------------------------------------------------------------------- frequency response


@dataclass(frozen=True, slots=True)
class FrequencyTrace:
    """A grid-frequency scenario: nominal + seeded smooth noise + scripted events."""

    duration_s: float
    """Length of the trace (s)."""
    events: tuple[FrequencyEvent, ...]
    """Scripted deviations (``ramp_s = 0`` = a step)."""
    nominal_hz: float = 50.0
    """Nominal frequency (Hz)."""
    noise_hz: float = 0.015
    """Standard deviation of the smooth (Ornstein-Uhlenbeck) noise (Hz)."""
    noise_tau_s: float = 60.0
    """Time constant of the noise (s)."""
    seed: int = 0
    """Seed of the noise."""


def make_frequency_trace(
    duration_s: float = 1800.0,
    *,
    seed: int = 0,
    steps: int = 4,
    step_hz: float = 0.25,
    hold_s: float = 60.0,
    ramps: int = 1,
    ramp_s: float = 10.0,
    noise_hz: float = 0.015,
    noise_tau_s: float = 60.0,
) -> FrequencyTrace:
    """A deterministic trace: ``steps`` step events of ±``step_hz`` and ``ramps`` ramps.

    Events are spread evenly over the trace with seeded jitter (±10 % of the
    spacing) and alternating signs (the first one seeded); each holds ``hold_s``.
    ``step_hz`` beyond the full-activation deviation makes the required power
    exactly ±reserve during a step, whatever the noise.

    Raises:
        ReplayError: the events do not fit into ``duration_s``.
    """
    n = steps + ramps
    if n < 0 or duration_s <= 0:
        raise ReplayError(f"frequency trace: need duration_s > 0 and events >= 0, got "
                          f"{duration_s}, {n}", source="--fr-trace")
    rng = np.random.default_rng(seed)
    spacing = duration_s / (n + 1)
    if n and spacing < hold_s + 2 * ramp_s + 5.0:
        raise ReplayError(f"frequency trace: {n} events of {hold_s:g} s do not fit into "
                          f"{duration_s:g} s", source="--fr-trace")
    kinds = ["step"] * steps + ["ramp"] * ramps
    order = rng.permutation(n)
    first_sign = 1.0 if rng.random() < 0.5 else -1.0
    events: list[FrequencyEvent] = []
    for slot, k in enumerate(order):
        start = spacing * (slot + 1) - hold_s / 2 + rng.uniform(-0.1, 0.1) * spacing
        sign = first_sign * (1.0 if slot % 2 == 0 else -1.0)
        is_ramp = kinds[k] == "ramp"
        events.append(FrequencyEvent(
            start_s=round(float(start), 3), duration_s=hold_s, delta_hz=sign * step_hz,
            ramp_s=ramp_s if is_ramp else 0.0))
    events.sort(key=lambda e: e.start_s)
    return FrequencyTrace(duration_s=duration_s, events=tuple(events), noise_hz=noise_hz,
                          noise_tau_s=noise_tau_s, seed=seed)


@dataclass(frozen=True, slots=True)
class FrequencyReplayOptions:
    """Settings of :func:`run_frequency_response` (s, %)."""

    control_step_s: float = 0.1
    """Control cycle = grid-meter sample period (s)."""
    physics_step_s: float = 0.05
    """Physics sub-step (s): resolves inverter delay and ramp."""
    activation_window_s: float = 1.0
    """After each step edge, this long is judged by the activation time, not by the RMS."""
    activation_tolerance_pct: float = 2.0
    """"Fully activated" = within this % of the reserve from the required power."""
    soc_exponent: float = 1.0
    """Distribution's SoC weighting exponent."""
    setpoint_lifetime_s: float = 10.0
    """Lifetime of each setpoint (s, whole, 10..900), as ``[control] setpoint_lifetime_s``."""
    deadband_w: float = _CONTROL_DEFAULTS.deadband_w
    """The distributor's deadband (W), as ``[control] deadband_w``."""
    stale_after_s: float = _CONTROL_DEFAULTS.stale_after_s
    """Telemetry staleness limit (s), as ``[control] stale_after_s``."""
    base_load_w: float = 150_000.0
    """Constant site load during the trace (W; irrelevant to frequency response)."""


@dataclass(frozen=True)
class FrequencyResponseReport:
    """Control quality of a frequency-response replay (W, %, s, Hz)."""

    reserved_power_w: float
    """Power at full activation."""
    rms_error_pct: float
    """RMS of delivered − required as % of the reserve, outside the activation windows."""
    rms_error_pct_all: float
    """The same over every sample, activation windows included."""
    max_abs_error_pct: float
    """Largest |delivered − required| outside the activation windows, % of reserve."""
    activation_time_s: list[float]
    """Per step edge: time from the edge to full activation (nan if never)."""
    activation_time_max_s: float
    """Largest of those."""
    fr_energy_required_wh: float
    """∫ |required| dt."""
    fr_energy_delivered_wh: float
    """∫ |delivered| dt."""
    soc_band_pct: tuple[float, float]
    """SoC band that holds the reserve for the configured duration both ways."""
    soc_in_band_pct: float
    """Share of the time the fleet SoC was inside the band (%)."""
    soc_min_pct: float
    """Lowest fleet SoC."""
    soc_max_pct: float
    """Highest fleet SoC."""
    hold_duration_s: float
    """Configured hold duration."""
    control_cycles: int
    """Control cycles run."""
    simulated_s: float
    """Simulated time replayed."""
    wall_s: float
    """Wall time (information only)."""
    events: list[dict[str, float]] = field(default_factory=list)
    """The trace's events (start, duration, delta, ramp)."""
    time_s: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Sample times."""
    frequency_hz: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Frequency at the samples."""
    required_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Required power at the samples (+ = charging)."""
    delivered_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Delivered battery AC power at the samples."""

    def summary(self) -> dict[str, Any]:
        """The scalar results as a JSON-ready dict."""
        return _scalar_fields(self)


def run_frequency_response(
    site: SiteConfig,
    trace: FrequencyTrace,
    *,
    config: FrequencyResponseConfig | None = None,
    options: FrequencyReplayOptions | None = None,
    progress: ProgressCallback | None = None,
) -> FrequencyResponseReport:
    """Replay ``trace`` on ``site`` with frequency response alone.

    *Required* power at a sample is the frequency-response law evaluated at
    the true frequency of that instant and the fleet SoC (droop, plus the SoC
    nudge inside the deadband); *delivered* is the measured battery inverter
    AC power at the same instant. The controller sees the frequency one
    control step late at worst, and the inverters add their response delay
    and ramp, so right after a step the error is large for a fraction of a
    second: that window (``activation_window_s`` after each step edge) is
    judged by the activation time, the rest by the RMS error.

    Raises:
        ReplayError: bad options or a site without batteries.
    """
    cfg = config or FrequencyResponseConfig()
    opt = options or FrequencyReplayOptions()
    if not (opt.control_step_s > 0 and opt.physics_step_s > 0):
        raise ReplayError("options: control_step_s and physics_step_s must be > 0",
                          source="options")
    if cfg.reserved_power_w <= 0:
        raise ReplayError(f"frequency_response.reserved_power_w must be > 0, got "
                          f"{cfg.reserved_power_w}", source="reserved_power_w")
    quiet = _quiet_site(
        site,
        load=LoadConfig(profile_w=np.array([opt.base_load_w]), step_s=3600.0, noise_w=0.0),
        frequency=FrequencyConfig(nominal_hz=trace.nominal_hz, noise_hz=trace.noise_hz,
                                  noise_tau_s=trace.noise_tau_s, events=trace.events),
    )
    ph = SitePhysics(quiet, seed=trace.seed, max_step_s=opt.physics_step_s)
    control = replay_control(site, _config(opt, frequency_response=dataclasses.replace(
        cfg, enabled=True)))
    transport = PhysicsTransport(ph, control)
    truth = _Truth(ph)
    n = math.floor(trace.duration_s / opt.control_step_s + 1e-9)
    t_a = np.empty(n + 1)
    f_a = np.empty(n + 1)
    req = np.empty(n + 1)
    dlv = np.empty(n + 1)
    soc = np.empty(n + 1)

    def sample(j: int) -> None:
        t_a[j] = ph.now_s
        f_a[j] = ph.frequency_hz
        inputs = truth.inputs()
        req[j] = frequency_response_wish(cfg, inputs).preferred_w
        dlv[j] = inputs.battery_power_w
        soc[j] = inputs.soc_pct

    sample(0)
    wall0 = time.perf_counter()
    for j in range(1, n + 1):
        due = transport.cycle()
        _advance(ph, due, opt.control_step_s, opt.physics_step_s, opt.physics_step_s)
        sample(j)
        if progress is not None and j % 1000 == 0:
            progress(ph.now_s, n * opt.control_step_s)
    wall = time.perf_counter() - wall0
    if progress is not None:
        progress(n * opt.control_step_s, n * opt.control_step_s)

    res = cfg.reserved_power_w
    err = dlv - req
    edges: list[float] = []
    for e in trace.events:
        if e.ramp_s == 0.0:
            edges += [e.start_s, e.start_s + e.duration_s]
    window = np.zeros(n + 1, dtype=bool)
    act: list[float] = []
    tol = opt.activation_tolerance_pct / 100.0 * res
    for edge in edges:
        in_w = (t_a >= edge) & (t_a < edge + opt.activation_window_s)
        window |= in_w
        after = np.flatnonzero((t_a >= edge) & (np.abs(err) <= tol))
        # Full activation: the first sample after the edge from which the error stays
        # within tolerance until the window ends.
        inside = np.flatnonzero(in_w)
        settled = math.nan
        for k in after:
            if k > (inside[-1] if inside.size else k):
                settled = float(t_a[k] - edge)
                break
            rest = inside[inside >= k]
            if np.all(np.abs(err[rest]) <= tol):
                settled = float(t_a[k] - edge)
                break
        act.append(settled)
    keep = ~window
    rms = float(np.sqrt(np.mean(err[keep] ** 2)) / res * 100.0) if keep.any() else math.nan
    rms_all = float(np.sqrt(np.mean(err ** 2)) / res * 100.0)
    band = soc_band_pct(truth.cap_total, res, cfg.hold_duration_s, truth.soc_lo, truth.soc_hi)
    in_band = (soc >= band[0] - 1e-9) & (soc <= band[1] + 1e-9)
    dt_h = opt.control_step_s / 3600.0
    return FrequencyResponseReport(
        reserved_power_w=res,
        rms_error_pct=rms,
        rms_error_pct_all=rms_all,
        max_abs_error_pct=float(np.max(np.abs(err[keep])) / res * 100.0) if keep.any()
        else math.nan,
        activation_time_s=act,
        activation_time_max_s=float(max(act)) if act else math.nan,
        fr_energy_required_wh=float(np.sum(np.abs(req[1:])) * dt_h),
        fr_energy_delivered_wh=float(np.sum(np.abs(dlv[1:])) * dt_h),
        soc_band_pct=(float(band[0]), float(band[1])),
        soc_in_band_pct=float(100.0 * np.mean(in_band)),
        soc_min_pct=float(soc.min()),
        soc_max_pct=float(soc.max()),
        hold_duration_s=cfg.hold_duration_s,
        control_cycles=transport.cycles,
        simulated_s=float(n * opt.control_step_s),
        wall_s=wall,
        events=[{"start_s": e.start_s, "duration_s": e.duration_s, "delta_hz": e.delta_hz,
                 "ramp_s": e.ramp_s} for e in trace.events],
        time_s=t_a,
        frequency_hz=f_a,
        required_w=req,
        delivered_w=dlv,
    )
