"""The PV / EV site replay: export and import limits with PV curtailment and EV chargers.

* :func:`run_site` → :class:`~controller.lab.replay.reports.SiteReport` — a site with
  its PV inverters and EV chargers through the production control cycle
  (:meth:`~controller.runtime.cycle.ControlCycle.from_config` with the config's
  strategies and ``[control]``) against the in-process physics
  (:class:`~controller.lab.replay.transport.PhysicsTransport`: battery and PV
  inverters and EV chargers on one telemetry and setpoint path), for days.
* :class:`SiteReplayOptions` — its settings.
* :data:`SITE_EPOCH` — the site's unix time at the start of a replay of its own load.

Inputs
------
* *Load*: the site's ``[load]`` (its base and scripted events, repeated daily), or a
  :class:`~controller.lab.replay.loader.LoadProfile` (``--profile`` / ``--load-csv``)
  held per interval like the peak-shaving replay does, with its rows before the
  selection as the billing meter's history.
* *PV*: the site's ``[pv]`` irradiance profile (the bundled sites: a clear-sky day
  from noon, repeated daily), times each PV inverter's rating — not the weather
  data: seven clear days are the hardest case for an export limit. With a load
  profile, a clear-sky day is turned to the profile's local clock (the day starts
  at ``[pv] start_hour``; the profile's first row at its own time of day).
* *EVs*: the site's seeded session generator (``[ev]``, scripted sessions first).
* The physics is quiet: load and PV noise and frequency noise and events are off,
  so a run is exact and the stepping below can skip what does not change.

Time stepping
-------------
As in the other replays: the control cycles at ``cycle_s`` (the service's
cadence) from each load change to ``settle_s`` after it, for ``settle_s`` after
each car's arrival and departure and around a battery reaching a SoC limit or a
car having its request (bounds close or a load vanishes: others must take over;
steps halve as it nears), with
fine physics sub-steps (inverter delay and ramp resolved). Between these events,
while anything moves (PV produces or a car is plugged in: the sun and a car's
taper drift a few W/s), the next cycle is when the site's free powers (the load,
each PV inverter's available production, what each car would take unthrottled)
will have drifted by ``drift_w`` in all (load and PV at the rate they changed over
the last step, the tapering cars at their curve's; steps close in on a car's
taper start), between ``track_min_s`` and ``track_max_s`` later (sooner when the site
exports above its limit once the setpoints took effect: the service would correct
that within 200 ms), with a vertex of the trajectory once the setpoints took
effect and then every ``physics_step_s``;
otherwise (night, no car: a constant site) ``max_step_s`` later. The drift
between two cycles is an error the service, cycling every 200 ms, does not make:
the replay's figures are, if anything, pessimistic by about ``drift_w``.

What is measured (from :class:`~controller.lab.replay.stepping.PhysicsTruth` and the
physics' arrays, never from the control's view): see
:class:`~controller.lab.replay.reports.SiteReport` and
:mod:`controller.lab.replay.site_metrics`.

Units and signs: W, Wh, %, s; + = import / charging / consuming, PV negative.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.errors import ConfigError
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.peak import _to_soc_limit, staircase
from controller.lab.replay.periods import DEFAULT_ZONE, feed_history
from controller.lab.replay.reports import FloatArray, SiteReport
from controller.lab.replay.site_metrics import (
    EvRef,
    comply_times,
    curtailed_storable_wh,
    ev_allowed_wh,
    integral_wh,
    load_drops,
    longest_run_below,
    window_means,
)
from controller.lab.replay.stepping import ControlOptions, PhysicsTruth, ProgressCallback, advance
from controller.lab.replay.transport import PhysicsTransport, replay_control
from controller.runtime.config import GridloopConfig, read_toml
from controller.runtime.strategies import PeakShavingConfig
from simulator._ev_sessions import EvSessionGenerator
from simulator._signals import profile_at
from simulator.config import FrequencyConfig, PvConfig, SiteConfig
from simulator.physics import SitePhysics

__all__ = ["SITE_EPOCH", "SiteReplayOptions", "run_site"]

SITE_EPOCH = dt.datetime(2024, 6, 3, 12, 0, tzinfo=zoneinfo.ZoneInfo(DEFAULT_ZONE)).timestamp()
"""The site's unix time at physics time 0 when it replays its own load: a Monday at noon
(local), where the bundled sites' profiles start."""
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class SiteReplayOptions(ControlOptions):
    """Settings of :func:`run_site` (W, s); the ``[control]`` ones are those of
    :class:`~controller.lab.replay.stepping.ControlOptions` (setpoint lifetime 900 s:
    renewed after half of it, longer than twice ``max_step_s``)."""

    cycle_s: float = 0.2
    """Control cadence around events (the service's peak-shaving cadence)."""
    settle_s: float = 3.0
    """How long after an event the replay cycles at ``cycle_s`` (the slowest delay + ramp)."""
    drift_w: float = 100.0
    """Between events, cycle when the site's free power may have drifted this much (W)."""
    track_min_s: float = 1.0
    """Shortest control step between events while PV produces or a car is plugged in (s)."""
    track_max_s: float = 30.0
    """Longest control step between events while PV produces or a car is plugged in (s)."""
    max_step_s: float = 300.0
    """Longest control step while nothing moves (s)."""
    physics_fine_step_s: float = 0.1
    """Physics sub-step around events (s)."""
    physics_step_s: float = 2.0
    """Longest physics sub-step while PV produces or a car is plugged in (s): a car's taper
    follows its delivered energy one sub-step late."""
    load_ramp_s: float = 1.0
    """A load profile moves from one interval's value to the next over this long (s)."""
    above_limit_tolerance_w: float | None = None
    """Above-limit tolerance (default max(100 W, 0.1 % of the larger finite limit))."""
    load_drop_min_w: float | None = None
    """A load drop is a fall of at least this (default 10 % of the load's peak)."""
    comply_window_s: float = 900.0
    """Longest wait for the export to comply after a load drop (s)."""
    comply_hold_s: float = 60.0
    """The export has complied once it stays within the limit this long (s)."""
    ev_reference_step_s: float = 60.0
    """Step of the EVs' fluid reference (s)."""
    warmup_s: float = 10.0
    """The trajectory's first seconds, not measured: gridloop starting on a site that
    exports all its PV until its first setpoints take effect (s)."""


class _Samples:
    """The true trajectory at every physics step end (the vertices of the report)."""

    def __init__(self, truth: PhysicsTruth) -> None:
        self.truth = truth
        ph = truth.ph
        self._ev_min = np.where(ph.inverter_is_ev, ph.inverter_exclusion_w, 0.0)
        self.cols: dict[str, list[float]] = {k: [] for k in (
            "t", "grid", "load", "pv", "pv_avail", "bat", "bat_upper", "ev", "ev_flex", "soc")}
        self.record()

    def record(self) -> None:
        """Append the physics' state now."""
        ph, c = self.truth.ph, self.cols
        bat = ph.inverter_is_battery
        c["t"].append(ph.now_s)
        c["grid"].append(ph.grid_power_w)
        c["load"].append(ph.load_power_w)
        c["pv"].append(ph.pv_power_w)
        c["pv_avail"].append(float(ph.pv_available_w.sum()))
        c["bat"].append(ph.battery_inverter_power_w)
        c["bat_upper"].append(float(ph.inverter_upper_w[bat].sum()))
        c["ev"].append(ph.ev_power_w)
        flex = np.where(ph.ev_connected, np.maximum(ph.inverter_power_w - self._ev_min, 0.0), 0.0)
        c["ev_flex"].append(float(flex.sum()))
        c["soc"].append(self.truth.soc_pct())

    def arrays(self) -> dict[str, FloatArray]:
        """The columns as arrays."""
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.cols.items()}


def _limits(config: GridloopConfig) -> tuple[float, float, float]:
    """(export limit, import limit, control cycle) of the config's peak shaving (inf: none)."""
    ps: PeakShavingConfig = config.peak_shaving
    if not ps.enabled:
        return math.inf, math.inf, ps.interval_s
    imp = ps.hard_import_limit_w
    if imp is None:
        imp = ps.import_limit_w if ps.limit_mode == "fixed" else math.inf
    return float(ps.export_limit_w), float(imp), float(ps.interval_s)


def _tolerance(opt: SiteReplayOptions, config: GridloopConfig) -> float:
    """The above-limit tolerance (W): the option, else max(100 W, 0.1 % of the larger
    finite limit)."""
    if opt.above_limit_tolerance_w is not None:
        return opt.above_limit_tolerance_w
    exp_lim, imp_lim, _ = _limits(config)
    return max(100.0, 1e-3 * max((x for x in (exp_lim, imp_lim) if math.isfinite(x)),
                                 default=0.0))


def _load_series(site: SiteConfig, load: LoadProfile | None,
                 opt: SiteReplayOptions) -> tuple[FloatArray, float, str]:
    """The load the physics replays (W, one sample per step; cyclic) and its description."""
    if load is None:
        return (site.load.profile_w.astype(np.float64), float(site.load.step_s),
                "the site's load ([load])")
    values = np.asarray(load.power_w, dtype=np.float64)
    if values.size < 2:
        raise ReplayError(f"{load.path}: the load selection has {values.size} sample(s); "
                          "need at least 2", source=load.path)
    if not 0 < opt.load_ramp_s < load.step_s:
        raise ReplayError("options: need 0 < load_ramp_s < the profile step", source="options")
    prof, step = staircase(values, float(load.step_s), opt.load_ramp_s)
    return prof, step, load.path


def _pv_start_hour(site: SiteConfig) -> float | None:
    """The local hour the site's clear-sky day starts at (``[pv] start_hour``; None: the
    irradiance is a CSV's, or the site file cannot be read again)."""
    try:
        pv = read_toml(site.source, "site").get("pv", {})
    except ConfigError:
        return None
    if not isinstance(pv, dict) or "csv" in pv:
        return None
    hour = pv.get("start_hour", 12.0)
    return float(hour) if isinstance(hour, (int, float)) else None


def _irradiance(site: SiteConfig, load: LoadProfile | None) -> tuple[PvConfig, str]:
    """The quiet PV of the replay and where it comes from (see the module)."""
    irr, step = site.pv.irradiance_wm2.astype(np.float64), float(site.pv.step_s)
    what = "site [pv] irradiance x each PV inverter's rating, no noise"
    hour = _pv_start_hour(site) if load is not None else None
    if load is not None and hour is not None and abs(irr.size * step - _DAY_S) < 1e-6:
        local = load.start.hour + load.start.minute / 60.0 + load.start.second / 3600.0
        irr = np.roll(irr, -round(((local - hour) % 24.0) * 3600.0 / step))
        what += ", its day on the profile's clock"
    return PvConfig(irr, step, 0.0), what


def _physics(site: SiteConfig, prof: FloatArray, step_s: float, pv: PvConfig, seed: int,
             opt: SiteReplayOptions) -> SitePhysics:
    """The quiet site: ``prof`` as its load, ``pv``, a nominal frequency."""
    quiet = dataclasses.replace(
        site,
        load=dataclasses.replace(site.load, profile_w=prof, step_s=step_s, noise_w=0.0),
        pv=pv,
        frequency=FrequencyConfig(nominal_hz=site.frequency.nominal_hz, noise_hz=0.0, events=()),
    )
    return SitePhysics(quiet, seed=seed, max_step_s=opt.max_step_s)


def _cyclic(values: FloatArray, step_s: float, end_s: float) -> FloatArray:
    """The cyclic profile's samples from 0 to ``end_s`` (inclusive)."""
    out: FloatArray = np.resize(values, math.ceil(end_s / step_s - 1e-9) + 1)
    return out


def _fine_windows(load_rep: FloatArray, step_s: float, ev_times: list[float],
                  settle_s: float) -> tuple[FloatArray, FloatArray]:
    """Merged ``[start, end)`` windows of fine control: each load change until ``settle_s``
    after it, ``settle_s`` after each EV arrival and departure."""
    moving = np.diff(load_rep) != 0
    edges = np.diff(moving.astype(np.int8), prepend=0, append=0)
    a = np.flatnonzero(edges == 1) * step_s
    b = np.flatnonzero(edges == -1) * step_s + settle_s
    ev = np.asarray(ev_times, dtype=np.float64)
    starts = np.concatenate([a, ev])
    ends = np.concatenate([b, ev + settle_s])
    order = np.argsort(starts, kind="stable")
    out_s: list[float] = []
    out_e: list[float] = []
    for s, e in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if out_e and s <= out_e[-1]:
            out_e[-1] = max(out_e[-1], e)
        else:
            out_s.append(s)
            out_e.append(e)
    return np.array(out_s), np.array(out_e)


def _sessions(site: SiteConfig, end_s: float) -> list[tuple[int, float, float, float]]:
    """The site's EV sessions arriving before ``end_s``: (charger, arrive, depart, Wh)."""
    out = []
    for c in site.ev_chargers:
        for s in EvSessionGenerator(site.ev, c.id).sessions_until(end_s):
            out.append((c.id, s.arrive_s, s.depart_s, s.energy_wh))
    return out


def _free_w(ph: SitePhysics) -> FloatArray:
    """The site's free powers now: the load and each PV inverter's available production
    (W). Their changes are summed in absolute value: a capped PV inverter's sun does not
    offset another's change at the grid."""
    out: FloatArray = np.concatenate([[ph.load_power_w], ph.pv_available_w])
    return out


class _Cars:
    """The cars' charge curves as the stepping needs them (the physics' model, read from
    the site): how fast the tapering ones slow down, when the next one starts to."""

    def __init__(self, ph: SitePhysics, site: SiteConfig) -> None:
        ev = ph.inverter_is_ev
        self.min_w = np.where(ev, ph.inverter_exclusion_w, 0.0)
        self.max_w = np.where(ev, np.maximum(np.minimum(ph.inverter_rated_upper_w,
                                                        site.ev.car_max_power_w), self.min_w),
                              0.0)
        self.taper = site.ev.taper_start_pct / 100.0

    def rate_w_per_s(self, ph: SitePhysics) -> float:
        """How fast the tapering cars' acceptance falls now (W/s, summed)."""
        req, p = ph.ev_request_wh, ph.inverter_power_w
        on = ph.ev_connected & (req > 0) & (ph.ev_accept_w > self.min_w + 1.0)
        frac = np.where(on, ph.ev_delivered_wh / np.where(on, req, 1.0), 0.0)
        tapering = on & (frac >= self.taper)
        slope = self.max_w / (1.0 - self.taper) * np.maximum(p, 0.0) / (
            np.where(on, req, 1.0) * 3600.0)
        return float(slope[tapering].sum())

    def to_taper_s(self, ph: SitePhysics) -> float:
        """Seconds until a car starts to taper, at its present power."""
        req, p = ph.ev_request_wh, ph.inverter_power_w
        left = self.taper * req - ph.ev_delivered_wh
        todo = ph.ev_connected & (req > 0) & (left > 0) & (p > 1.0)
        return float((left[todo] / p[todo] * 3600.0).min(initial=math.inf))


class _Run:
    """The loop of :func:`run_site`."""

    def __init__(self, tr: PhysicsTransport, samples: _Samples, opt: SiteReplayOptions,
                 fine: tuple[FloatArray, FloatArray], export_level_w: float,
                 cars: _Cars) -> None:
        self.tr, self.samples, self.opt = tr, samples, opt
        self.cars = cars
        self.export_level_w = export_level_w
        """Grid power below which the site exports above its limit (W; -inf: no limit)."""
        self.fine_start, self.fine_end = fine
        self.fine_until = -math.inf
        """End of the fine window opened by a battery reaching a SoC limit or a car
        having its request."""

    def _window(self, t: float) -> tuple[bool, float]:
        """(inside a fine window, start of the next one)."""
        i = int(np.searchsorted(self.fine_start, t + 1e-9, side="right")) - 1
        inside = (i >= 0 and t < self.fine_end[i] - 1e-9) or t < self.fine_until - 1e-9
        nxt = float(self.fine_start[i + 1]) if i + 1 < self.fine_start.size else math.inf
        return inside, nxt

    def _step(self, dt_s: float, due: list[float], fine_now: float, coarse: float,
              inside: bool, rest: bool, settled: Callable[[], None]) -> None:
        """Step the physics ``dt_s`` after a cycle, recording vertices: at the setpoints'
        due time and (outside fine windows) one fine step later, once they took effect;
        while tracking, then every ``physics_step_s`` (inverters ramp for seconds: a
        vertex per sub-step keeps the trajectory's interpolation honest). A site exporting
        above its limit once they took effect ends the step there: the service, cycling
        every 200 ms, would correct it at once."""
        ph, opt, rec = self.tr.physics, self.opt, self.samples.record
        if inside:
            advance(ph, due, dt_s, fine_now, coarse, rec)
            return
        if rest:
            advance(ph, due, dt_s, fine_now, coarse, rec, lambda: _to_soc_limit(ph), settled)
            return
        end = ph.now_s + dt_s
        first = min(dt_s, max(opt.physics_step_s, fine_now + 2 * opt.physics_fine_step_s))
        advance(ph, due, first, fine_now, coarse, rec, lambda: math.inf)
        if ph.grid_power_w < self.export_level_w:  # the service would correct it at once
            return
        ph.max_step_s = opt.physics_step_s
        while ph.now_s < end - 1e-9:
            ph.step(min(opt.physics_step_s, end - ph.now_s))
            rec()

    def run(self, end_s: float, progress: ProgressCallback | None) -> None:
        tr, opt = self.tr, self.opt
        ph = tr.physics
        meter = tr.control.cycle.meter
        fine = opt.physics_fine_step_s
        t = ph.now_s
        next_report = 0
        free_t, free_w = t, _free_w(ph)

        def settled() -> None:  # the meter sees the site once the setpoints took effect
            tr.cycle(strategies=())

        while t < end_s - 1e-9:
            due = tr.cycle()
            inside, nxt = self._window(t)
            active = bool(ph.pv_available_w.sum() < -1.0 or ph.ev_connected.any())
            now_w = _free_w(ph)
            rate = float(np.abs(now_w - free_w).sum()) / (t - free_t) if t > free_t else 0.0
            rate += self.cars.rate_w_per_s(ph)
            free_t, free_w = t, now_w
            if inside:
                dt_s, coarse = opt.cycle_s, fine
            elif active:
                dt_s = (min(opt.track_max_s, max(opt.track_min_s, opt.drift_w / rate))
                        if rate > 0 else opt.track_max_s)
                coarse = min(dt_s, opt.physics_step_s)
            else:
                dt_s, coarse = opt.max_step_s, opt.max_step_s
            site_t = tr.site_time_s()
            if meter is not None and site_t is not None and meter.interval_end_s - site_t > 1e-6:
                dt_s = min(dt_s, meter.interval_end_s - site_t)
            dt_s = min(dt_s, nxt - t, end_s - t)
            soc_h = min(_to_limit(ph), self.cars.to_taper_s(ph))
            if not inside and soc_h < dt_s:  # close in on the limit
                dt_s = min(dt_s, max(opt.cycle_s, 0.5 * soc_h))
                inside = dt_s <= opt.cycle_s
                coarse = fine if inside else min(coarse, dt_s)
            last = max(due, default=t)
            fine_now = fine if inside else max(fine, last - t)
            rest = not inside and not active
            room = _limits_state(ph)
            self._step(dt_s, [last] if due else [], fine_now, coarse, inside, rest, settled)
            t = ph.now_s
            if (_limits_state(ph) != room).any():  # a SoC limit or a car served: an event
                self.fine_until = t + opt.settle_s
            if progress is not None and tr.cycles >= next_report:
                progress(t, end_s)
                next_report = tr.cycles + 2000
        if progress is not None:
            progress(end_s, end_s)


def run_site(
    site: SiteConfig,
    config: GridloopConfig,
    *,
    days: float | None = None,
    load: LoadProfile | None = None,
    options: SiteReplayOptions | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> SiteReport:
    """Replay ``site`` with its PV and EV chargers under ``config`` (see the module).

    Args:
        site: The site (its load, PV irradiance, EV sessions, components).
        config: The run's config: its strategies, ``[billing]`` and the ``[control]``
            settings ``options`` carries (the caller copies them in).
        days: Length of the replay with the site's own load (> 0; ignored with ``load``,
            whose selection sets the length).
        load: A load profile instead of the site's ``[load]``.
        options: Stepping and measurement settings.
        seed: Seed of the physics.
        progress: Called with simulated seconds done and total.

    Raises:
        ReplayError: bad input (days, too short a profile, a site the service refuses).
    """
    opt = options or SiteReplayOptions()
    if load is None and not (days is not None and math.isfinite(days) and days > 0):
        raise ReplayError(f"--days: must be a positive number of days, got {days}",
                          source="--days")
    prof, step, load_src = _load_series(site, load, opt)
    if load is not None:
        end_s = load.power_w.size * float(load.step_s)
    else:
        assert days is not None
        end_s = days * _DAY_S
    origin = load.start_unix_s if load is not None else SITE_EPOCH
    control_cfg = dataclasses.replace(
        config.control, setpoint_lifetime_s=int(opt.setpoint_lifetime_s),
        deadband_w=opt.deadband_w, stale_after_s=opt.stale_after_s,
        soc_exponent=opt.soc_exponent)
    cfg = dataclasses.replace(config, control=control_cfg)
    control = replay_control(site, cfg, site_zone=DEFAULT_ZONE,
                             meter_max_gap_s=max(opt.max_step_s, opt.track_max_s))
    if load is not None and control.cycle.meter is not None:
        feed_history(control.cycle.meter, load.history_w, origin, float(load.step_s))
    pv, pv_src = _irradiance(site, load)
    ph = _physics(site, prof, step, pv, seed, opt)
    tr = PhysicsTransport(ph, control, site_origin_s=origin)
    samples = _Samples(PhysicsTruth(ph))
    sessions = _sessions(site, end_s)
    load_rep = _cyclic(prof, step, end_s)
    fine = _fine_windows(load_rep, step, [x for s in sessions for x in s[1:3]], opt.settle_s)
    wall0 = time.perf_counter()
    exp_lim, _imp, _cycle = _limits(cfg)
    _Run(tr, samples, opt, fine, -exp_lim - _tolerance(opt, cfg), _Cars(ph, site)).run(
        end_s, progress)
    wall = time.perf_counter() - wall0
    return _report(site, cfg, opt, tr, samples, sessions, load_rep, step, end_s, wall, pv_src,
                   {"source": load_src, "start": dt.datetime.fromtimestamp(
                       origin, zoneinfo.ZoneInfo(DEFAULT_ZONE)).isoformat(),
                    "days": end_s / _DAY_S, "peak_w": float(prof.max())})


def _report(site: SiteConfig, cfg: GridloopConfig, opt: SiteReplayOptions, tr: PhysicsTransport,
            samples: _Samples, sessions: list[tuple[int, float, float, float]],
            load_rep: FloatArray, step: float, end_s: float, wall: float, pv_src: str,
            load_info: dict[str, object]) -> SiteReport:
    """The measures of the run (:mod:`controller.lab.replay.site_metrics`)."""
    ph = tr.physics
    a = _after(samples.arrays(), opt.warmup_s)
    t, grid = a["t"], a["grid"]
    exp_lim, imp_lim, cycle_s = _limits(cfg)
    tol = _tolerance(opt, cfg)
    interval = float(cfg.billing.interval_s)
    n_int = math.ceil(end_s / interval - 1e-9)
    mean = window_means(t, grid, interval, n_int)
    sec = window_means(t, grid, 1.0, math.ceil(end_s - 1e-9))
    exc_1s = np.nan_to_num(-sec - exp_lim, nan=0.0, neginf=0.0)
    exc_int = np.nan_to_num(-mean - exp_lim, nan=0.0, neginf=0.0)
    drop_min = (opt.load_drop_min_w if opt.load_drop_min_w is not None
                else 0.1 * float(load_rep.max()))
    drops = load_drops(load_rep, step, drop_min)
    drops = drops[drops < end_s]
    comply, failed = (comply_times(t, grid, drops, exp_lim, tol, opt.comply_window_s,
                                   opt.comply_hold_s)
                      if math.isfinite(exp_lim) else (np.zeros(drops.size), 0))
    delays = [c.response_delay_s for c in site.inverters]
    pv_avail_wh = -integral_wh(t, a["pv_avail"])
    storable = curtailed_storable_wh(t, a["pv"], a["pv_avail"], a["bat"], a["bat_upper"])
    ev = _ev_figures(site, ph, sessions, end_s, imp_lim, step, load_rep, opt)
    kinds = sorted({_kind(ph, c) for c in tr.control.core.index.inverter_ids})
    return SiteReport(
        export_limit_w=exp_lim,
        import_limit_w=imp_lim,
        above_limit_tolerance_w=tol,
        intervals_total=n_int,
        export_intervals_above_limit=int(np.count_nonzero(exc_int > tol)),
        export_excess_1s_max_w=float(max(0.0, float(exc_1s.max(initial=0.0)))),
        export_excess_15min_max_w=float(max(0.0, float(exc_int.max(initial=0.0)))),
        export_excess_longest_s=(longest_run_below(t, grid, -exp_lim - tol)
                                 if math.isfinite(exp_lim) else 0.0),
        export_excess_longest_allowed_s=max(delays, default=0.0) + cycle_s,
        export_energy_above_limit_wh=integral_wh(t, np.maximum(-grid - exp_lim, 0.0))
        if math.isfinite(exp_lim) else 0.0,
        load_drops=int(drops.size),
        load_drop_min_w=drop_min,
        export_comply_time_max_s=float(comply.max(initial=0.0)),
        load_drops_not_complied=failed,
        pv_source=pv_src,
        pv_energy_available_wh=pv_avail_wh,
        pv_energy_curtailed_wh=integral_wh(t, np.maximum(a["pv"] - a["pv_avail"], 0.0)),
        pv_curtailed_storable_wh=storable,
        pv_curtailed_storable_pct=100.0 * storable / pv_avail_wh if pv_avail_wh > 0 else 0.0,
        import_intervals_above_limit=int(np.count_nonzero(
            np.nan_to_num(mean - imp_lim, nan=0.0, neginf=0.0) > tol)),
        battery_energy_to_ev_wh=integral_wh(t, np.minimum(np.maximum(-a["bat"], 0.0),
                                                          a["ev_flex"])),
        peak_import_w=float(np.nanmax(mean)),
        peak_import_w_instant=float(grid.max()),
        peak_export_w_instant=float(max(0.0, -float(grid.min()))),
        soc_min_pct=float(a["soc"].min()),
        soc_max_pct=float(a["soc"].max()),
        controlled_kinds=tuple(kinds),
        setpoints_refused=tr.refused,
        control_cycles=tr.cycles,
        simulated_s=end_s,
        wall_s=wall,
        load=load_info,
        time_s=t,
        grid_w=grid,
        **ev,
    )


def _to_limit(ph: SitePhysics) -> float:
    """Seconds until a battery reaches a SoC limit or a car has its request, at the present
    power (early for the batteries: it leaves out the charge efficiency)."""
    p = ph.inverter_power_w
    todo = ph.ev_connected & (ph.ev_accept_w > 0) & (p > 1.0)
    car = ((ph.ev_request_wh[todo] - ph.ev_delivered_wh[todo]) / p[todo] * 3600.0).min(
        initial=math.inf)
    return min(_to_soc_limit(ph), float(car))


def _limits_state(ph: SitePhysics) -> npt.NDArray[np.bool_]:
    """Which batteries can charge, which can discharge, which cars still take power: a
    change is an event (the control must hand over to other components)."""
    out: npt.NDArray[np.bool_] = np.concatenate(
        [ph.battery_upper_w > 0, ph.battery_lower_w < 0, ph.ev_accept_w > 0])
    return out


def _after(cols: dict[str, FloatArray], t0: float) -> dict[str, FloatArray]:
    """The trajectory from ``t0`` on (a vertex interpolated at ``t0``)."""
    t = cols["t"]
    if not t[0] < t0 < t[-1]:
        return cols
    keep = t > t0
    return {k: np.concatenate([[np.interp(t0, t, v)], v[keep]]) for k, v in cols.items()}


def _kind(ph: SitePhysics, cid: int) -> str:
    """The kind of power row ``cid`` is: battery_inverter, pv_inverter or ev_charger."""
    row = ph.inverter_row(cid)
    if ph.inverter_is_ev[row]:
        return "ev_charger"
    return "pv_inverter" if ph.inverter_is_pv[row] else "battery_inverter"


def _ev_figures(site: SiteConfig, ph: SitePhysics, sessions: list[tuple[int, float, float, float]],
                end_s: float, imp_lim: float, step: float, load_rep: FloatArray,
                opt: SiteReplayOptions) -> dict[str, Any]:
    """The EV sessions that departed within the run: requested, allowed, delivered."""
    done = {(cid, arrive): delivered for cid, arrive, _d, _r, delivered in ph.ev_sessions_done}
    gone = [s for s in sessions if s[2] <= end_s]
    refs = []
    for cid, arrive, depart, wh in gone:
        row = ph.inverter_row(cid)
        min_w = float(ph.inverter_exclusion_w[row])
        max_w = max(min(float(ph.inverter_rated_upper_w[row]), site.ev.car_max_power_w), min_w)
        refs.append(EvRef(arrive, depart, wh, max_w, min_w))
    pv_rating = -float(ph.inverter_rated_lower_w[ph.inverter_is_pv].sum())
    irr, irr_step = ph.site.pv.irradiance_wm2, float(ph.site.pv.step_s)

    def headroom(t: float) -> float:
        pv = pv_rating * min(profile_at(irr, irr_step, t), 1000.0) / 1000.0
        return imp_lim - profile_at(load_rep, step, t) + pv

    allowed = ev_allowed_wh(refs, headroom, end_s, opt.ev_reference_step_s,
                            site.ev.taper_start_pct)
    delivered = np.array([done.get((cid, arrive), 0.0) for cid, arrive, _d, _w in gone])
    requested = float(sum(s[3] for s in gone))
    got = np.minimum(delivered, allowed)
    return {
        "ev_sessions": len(gone),
        "ev_energy_requested_wh": requested,
        "ev_energy_allowed_wh": float(allowed.sum()),
        "ev_energy_delivered_wh": float(delivered.sum()),
        "ev_energy_delivered_pct": (100.0 * float(got.sum()) / float(allowed.sum())
                                    if allowed.sum() > 0 else math.nan),
        "ev_sessions_short": int(np.count_nonzero(got < 0.99 * allowed)),
    }
