"""The day replay: a schedule of service windows, frequency response and peak shaving together.

* :func:`run_day` → :class:`~controller.lab.replay.reports.DayReport` — one combined
  replay of a load profile and a grid frequency through the production control
  cycle (:meth:`~controller.runtime.cycle.ControlCycle.from_config` with peak shaving
  and frequency response enabled and a :class:`~controller.runtime.schedule.ScheduleBook`
  holding the schedule file's windows), for a day or more.
* :func:`schedule_book` — the book of a replay: the file's windows expanded over the
  replayed span by :meth:`~controller.runtime.schedule_file.ScheduleFile.windows`, the
  pure function the live :class:`~controller.runtime.schedule_file.FileScheduleSource`
  delivers from.
* :class:`DayReplayOptions` — its settings.

Time stepping
-------------
The grid meter gives one frequency sample per ``series.step_s`` (1 s), so inside a
window where frequency response is sold the control cycles at the samples; after
each cycle the physics takes one sub-step until the last of the setpoints just sent
takes effect (:func:`~controller.lab.replay.stepping.advance`: the inverters' response
delay; the physics applies each setpoint at its own due time inside the sub-step and
ramps from there), then coarse ones to the next cycle.
A cycle is skipped where nothing can change: inside a window, while the sampled
frequency stays in the deadband (or unknown) the law asks a constant power (0 W,
or the SoC nudge), so the next cycle is at the first sample that leaves that
class, at a load step, a billing-interval or window boundary, or when the fleet SoC
reaches a level where a wish changes (a band edge, peak shaving's target, a SoC
limit). Outside windows frequency response asks exactly 0 W and the stepping is the
peak-shaving replay's (:mod:`controller.lab.replay.peak`): ``cycle_s`` for
``settle_s`` after each load step, then up to ``max_step_s``.

What is measured (from the physics' truth, never from the control's view)
------------------------------------------------------------------------
* *FR part of the battery power*: the battery inverters' AC power minus what the
  merge granted the other strategies (peak shaving, preparation) at the cycle
  before: frequency response has the highest priority, so the rest of the fleet
  power is theirs.
* *Required*: the frequency-response law of the window in force (droop, SoC
  nudge) at the frequency sample the cycle saw and the true fleet SoC.
* One tracking sample per step between cycles, taken at the step's end (the
  setpoints have taken effect), weighted by the step's length: the RMS error is
  time-weighted, in % of the window's reserve.
* *Availability*: the share of contracted time (in windows with a reserve > 0) in
  which the fleet could hold the full reserve for the window's hold duration in
  both directions: the true fleet SoC inside
  :func:`~controller.runtime.strategies.soc_band_pct` (energy above the lower SoC
  limit and below the upper one) and the battery inverters' true bounds at least
  ±reserve (frequency response is served first, so peak shaving's share counts as
  headroom).
* *FR outside windows*: the power the merge granted frequency response in cycles
  outside every sold window, times the time to the next cycle. What the inverters
  still deliver during their response delay after a window's end is counted in the
  window.
* *Activation after a step*: a recorded or synthetic day has no clean steps; it is
  measured by the frequency-response replay
  (:func:`~controller.lab.replay.frequency.run_frequency_response`, 0.1 s control)
  on a short scripted segment with one step, with each sold window's curve and
  reserve.

Units and signs: W, Wh, %, Hz, simulated seconds; + = importing / charging.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.fleet import fleet_models
from controller.lab.replay.frequency import (
    FrequencyReplayOptions,
    make_frequency_trace,
    run_frequency_response,
)
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.peak import (
    PeakReplayOptions,
    _interval_means,
    _interval_of,
    _Samples,
    classify_intervals,
    staircase,
)
from controller.lab.replay.periods import DEFAULT_ZONE, billing_clock, feed_history
from controller.lab.replay.reports import DayReport
from controller.lab.replay.stepping import (
    PhysicsTruth,
    ProgressCallback,
    advance,
    quiet_site,
    replay_config,
)
from controller.lab.replay.transport import PhysicsTransport, replay_control
from controller.runtime.billing import BillingConfig
from controller.runtime.cycle import ControlCycle
from controller.runtime.preparation import fr_config_in_force
from controller.runtime.schedule import ScheduleBook, Window
from controller.runtime.schedule_file import ScheduleFile
from controller.runtime.strategies import (
    FrequencyResponseConfig,
    PeakShavingConfig,
    frequency_response_wish,
    soc_band_pct,
)
from simulator.config import FrequencyConfig, LoadConfig, SiteConfig
from simulator.frequency_series import FrequencySeries
from simulator.physics import SitePhysics

__all__ = ["DayReplayOptions", "run_day", "schedule_book"]

_EPS_HZ = 1e-9  # the law's deadband tolerance


@dataclass(frozen=True, slots=True)
class DayReplayOptions(PeakReplayOptions):
    """Settings of :func:`run_day` (W, s); those of
    :class:`~controller.lab.replay.peak.PeakReplayOptions` apply outside windows."""

    activation_segment_s: float = 200.0
    """Length of the scripted-step segment that measures activation (s; 0 = none)."""


def schedule_book(schedule: ScheduleFile, from_s: float, to_s: float) -> ScheduleBook:
    """The book of a replay of ``[from_s, to_s)`` (site unix s): the file's windows
    overlapping it, daily ones once per local day, under the live source's name."""
    book = ScheduleBook()
    book.replace(f"file:{schedule.source}", schedule.windows(from_s, to_s))
    return book


def _physics(site: SiteConfig, values: npt.NDArray[np.float64], step_s: float,
             series: FrequencySeries, opt: DayReplayOptions, seed: int) -> SitePhysics:
    """The quiet site: the profile as a staircase, the frequency ``series`` from time 0."""
    prof, prof_step = staircase(values, step_s, opt.load_ramp_s)
    quiet = quiet_site(
        site,
        load=LoadConfig(profile_w=prof, step_s=prof_step, noise_w=0.0),
        frequency=FrequencyConfig(nominal_hz=site.frequency.nominal_hz, noise_hz=0.0,
                                  events=(), series=series),
    )
    return SitePhysics(quiet, seed=seed, max_step_s=opt.physics_step_s)


def _law_class(series: FrequencySeries, n: int,
               cfg: FrequencyResponseConfig) -> npt.NDArray[np.int8]:
    """Per frequency sample: 0 unknown, 1 in the deadband (constant wish), 2 droop."""
    f = series.at(np.arange(n) * series.step_s)
    out = np.full(n, 2, dtype=np.int8)
    out[np.abs(f - cfg.f0_hz) <= cfg.curve.deadband_hz + _EPS_HZ] = 1
    out[np.isnan(f)] = 0
    return out


class _FrTrack:
    """The frequency-response samples of a run: one per step inside sold windows."""

    def __init__(self, truth: PhysicsTruth) -> None:
        self.truth = truth
        self.win: list[int] = []  # index into windows
        self.w: list[float] = []  # weight (s)
        self.req: list[float] = []
        self.dlv: list[float] = []
        self.avail: list[bool] = []

    def record(self, k: int, cfg: FrequencyResponseConfig, f_hz: float, others_w: float,
               weight_s: float) -> None:
        """One sample of window ``k`` at the end of a step of ``weight_s``."""
        inputs = self.truth.inputs()
        req = frequency_response_wish(cfg, dataclasses.replace(inputs, grid_frequency_hz=f_hz))
        band = soc_band_pct(self.truth.cap_total, cfg.reserved_power_w, cfg.hold_duration_s,
                            self.truth.soc_lo, self.truth.soc_hi)
        r = cfg.reserved_power_w
        ok = (band[0] - 1e-9 <= inputs.soc_pct <= band[1] + 1e-9
              and inputs.fleet_lower_w <= -r + 1e-6 and inputs.fleet_upper_w >= r - 1e-6)
        self.win.append(k)
        self.w.append(weight_s)
        self.req.append(req.preferred_w)
        self.dlv.append(inputs.battery_power_w - others_w)
        self.avail.append(bool(ok))


@dataclass
class _WindowStart:
    """A sold window as the run met it."""

    window: Window
    cfg: FrequencyResponseConfig
    soc_pct: float
    band_pct: tuple[float, float]
    prep_warned: bool


def _soc_levels(cycle: ControlCycle, truth: PhysicsTruth, fr_cfg: FrequencyResponseConfig,
                windows: list[Window]) -> list[float]:
    """Fleet SoC levels (%) where a wish may change: band edges (with and without
    preparation's margin) of the sold windows, peak shaving's target."""
    levels = []
    for w in windows:
        fw = w.frequency_response
        assert fw is not None
        hold = fw.hold_duration_s if fw.hold_duration_s is not None else fr_cfg.hold_duration_s
        lo, hi = soc_band_pct(truth.cap_total, fw.reserved_power_w, hold, truth.soc_lo,
                              truth.soc_hi)
        m = min(1.0, (hi - lo) / 4.0)
        levels += [lo, hi, lo + m, hi - m]
    if cycle.ps_config is not None:
        levels.append(cycle.ps_config.target_soc_pct)
    return levels


def _to_levels(ph: SitePhysics, truth: PhysicsTruth, levels: list[float]) -> float:
    """Seconds until the fleet SoC reaches one of ``levels`` or a battery a SoC limit, at
    the present power (inf when idle)."""
    bp = ph.battery_power_w
    total = float(bp.sum())
    soc = truth.soc_pct()
    horizon = math.inf
    if abs(total) > 1.0:
        rate = total / truth.cap_total * 100.0 / 3600.0  # % per s
        ahead = [(lv - soc) / rate for lv in levels if (lv - soc) / rate > 0]
        horizon = min(ahead, default=math.inf)
    room = np.where(bp > 0, ph.battery_soc_max_pct - ph.battery_soc_pct,
                    ph.battery_soc_pct - ph.battery_soc_min_pct)
    moving = (np.abs(bp) > 1.0) & (room > 0)
    if moving.any():
        rate_b = np.abs(bp[moving]) / ph.battery_capacity_wh[moving] * 100.0 / 3600.0
        horizon = min(horizon, float(np.min(room[moving] / rate_b)))
    return horizon


class _Run:
    """The loop of :func:`run_day` and what it records."""

    def __init__(self, transport: PhysicsTransport, series: FrequencySeries,
                 opt: DayReplayOptions, step_s: float, origin_s: float,
                 fr_base: FrequencyResponseConfig, n_intervals: int) -> None:
        self.tr = transport
        self.series = series
        self.opt = opt
        self.step_s = step_s
        self.origin_s = origin_s
        self.fr_base = fr_base
        self.truth = PhysicsTruth(transport.physics)
        self.samples = _Samples(self.truth, n_intervals)
        self.fr = _FrTrack(self.truth)
        self.starts: list[_WindowStart] = []
        self.outside_wh = 0.0
        cycle = transport.control.cycle
        assert cycle.schedule is not None
        self.schedule = cycle.schedule.schedule
        wins = self.schedule.windows
        self.sold = [w for w in wins if w.frequency_response is not None
                     and w.frequency_response.reserved_power_w > 0]
        edges = {t for w in wins for t in (w.start_s - origin_s, w.end_s - origin_s)}
        self.edges = np.array(sorted(edges))
        self._classes: dict[tuple[float, float], npt.NDArray[np.int8]] = {}
        self.unreachable: set[Window] = set()
        """Windows whose band preparation projected out of reach (it logged a warning)."""

    def _class(self, cfg: FrequencyResponseConfig, end_s: float) -> npt.NDArray[np.int8]:
        key = (cfg.f0_hz, cfg.curve.deadband_hz)
        if key not in self._classes:
            n = math.ceil(end_s / self.series.step_s) + 2
            self._classes[key] = _law_class(self.series, n, cfg)
        return self._classes[key]

    def _next_edge(self, t: float) -> float:
        i = int(np.searchsorted(self.edges, t + 1e-6, side="right"))
        return float(self.edges[i]) if i < self.edges.size else math.inf

    def _fr_step(self, t: float, cfg: FrequencyResponseConfig, end_s: float) -> float:
        """Time to the next frequency sample where the law's output may change."""
        cls = self._class(cfg, end_s)
        sp = self.series.step_s
        k = math.floor(t / sp + 1e-9)
        nxt = k + 1
        if cls[min(k, cls.size - 1)] != 2:
            change = np.flatnonzero(cls[k + 1:] != cls[k])
            nxt = k + 1 + int(change[0]) if change.size else cls.size
        return max(nxt * sp - t, 1e-3)

    def _sold(self, site_t: float | None) -> tuple[Window, FrequencyResponseConfig] | None:
        """The sold window at ``site_t`` by the schedule itself (not by the cycle's state, so
        that a cycle running frequency response outside one is seen), with its settings."""
        if site_t is None:
            return None
        w = self.schedule.frequency_window(site_t)
        if w is None or w.frequency_response is None or w.frequency_response.reserved_power_w <= 0:
            return None
        return w, fr_config_in_force(self.fr_base, w.frequency_response)

    def _window_met(self, window: Window, cfg: FrequencyResponseConfig) -> None:
        band = soc_band_pct(self.truth.cap_total, cfg.reserved_power_w, cfg.hold_duration_s,
                            self.truth.soc_lo, self.truth.soc_hi)
        self.starts.append(_WindowStart(window, cfg, self.truth.soc_pct(), band,
                                        window in self.unreachable))

    def run(self, end_s: float, progress: ProgressCallback | None) -> None:
        tr, ph, opt = self.tr, self.tr.physics, self.opt
        cycle = tr.control.cycle
        meter = cycle.meter
        fine = min(opt.physics_fine_step_s, opt.physics_step_s)
        t = ph.now_s
        next_report = 0
        fr_name = self.fr_base.name
        while t < end_s - 1e-9:
            due = tr.cycle()
            sold = self._sold(tr.site_time_s())
            fr = None if sold is None else sold[1]
            if sold is not None and (not self.starts or self.starts[-1].window != sold[0]):
                self._window_met(*sold)
            prep = cycle.preparation.status
            if prep is not None and not prep.reachable:
                self.unreachable.add(prep.window)
            f_seen = ph.frequency_hz
            i = int(t / self.step_s + 1e-9)
            self.samples.control_view(i, cycle)
            since = t - i * self.step_s
            levels: list[float] | None = None
            if since < opt.settle_s - 1e-9:
                dt_s, coarse = opt.cycle_s, fine
            elif fr is not None:
                dt_s = self._fr_step(t, fr, end_s)
                coarse = opt.physics_step_s
                if dt_s > self.series.step_s + 1e-9:
                    levels = _soc_levels(cycle, self.truth, self.fr_base, self.sold)
            else:
                dt_s = min(opt.max_step_s, (i + 1) * self.step_s - t)
                coarse = opt.physics_step_s
                levels = _soc_levels(cycle, self.truth, self.fr_base, self.sold)
            site_t = tr.site_time_s()
            if meter is not None and site_t is not None and meter.interval_end_s - site_t > 1e-6:
                dt_s = min(dt_s, meter.interval_end_s - site_t)
            dt_s = min(dt_s, self._next_edge(t) - t, end_s - t, (i + 1) * self.step_s - t
                       if since >= opt.settle_s - 1e-9 else math.inf)
            granted_fr = cycle.granted.get(fr_name, 0.0)
            others = sum(v for k, v in cycle.granted.items() if k != fr_name)
            horizon = (None if levels is None else
                       (lambda lv=levels: _to_levels(ph, self.truth, lv)))
            # One sub-step up to the last setpoint taking effect (the physics applies the
            # others at their due times inside it); around load steps the fine grid.
            last = max(due, default=t)
            fine_now = fine if since < opt.settle_s - 1e-9 else max(fine, last - t)
            advance(ph, [last] if due else [], dt_s, fine_now, coarse, self.samples.record,
                    horizon)
            step = ph.now_s - t
            if fr is not None:
                self.fr.record(len(self.starts) - 1, fr, f_seen, others, step)
            elif granted_fr != 0.0:
                self.outside_wh += abs(granted_fr) * step / 3600.0
            t = ph.now_s
            if progress is not None and tr.cycles >= next_report:
                progress(t, end_s)
                next_report = tr.cycles + 2000
        if progress is not None:
            progress(end_s, end_s)


def _curve_name(cfg: FrequencyResponseConfig) -> str:
    """``knee`` (DC style: more than two points) or ``linear`` (FCR)."""
    return "knee" if len(cfg.curve.df_hz) > 2 else "linear"


def _activation(site: SiteConfig, starts: list[_WindowStart], opt: DayReplayOptions,
                seed: int) -> tuple[list[float], float]:
    """The worst activation time (s) of each sold window on a scripted one-step segment
    (one replay per distinct curve and reserve), and their wall time (s)."""
    if opt.activation_segment_s <= 0:
        return [math.nan] * len(starts), 0.0
    trace = make_frequency_trace(opt.activation_segment_s, seed=seed, steps=1, ramps=0,
                                 noise_hz=0.0)
    options = FrequencyReplayOptions(soc_exponent=opt.soc_exponent, deadband_w=opt.deadband_w,
                                     stale_after_s=opt.stale_after_s)
    done: dict[tuple[object, ...], float] = {}
    wall = 0.0
    for s in starts:
        key = (s.cfg.curve, s.cfg.reserved_power_w, s.cfg.f0_hz)
        if key not in done:
            rep = run_frequency_response(site, trace, options=options,
                                         config=dataclasses.replace(s.cfg, enabled=True))
            done[key], wall = rep.activation_time_max_s, wall + rep.wall_s
    return [done[(s.cfg.curve, s.cfg.reserved_power_w, s.cfg.f0_hz)] for s in starts], wall


def _rms_pct(err: npt.NDArray[np.float64], w: npt.NDArray[np.float64], res: float) -> float:
    if w.sum() <= 0:
        return math.nan
    return float(np.sqrt(np.sum(w * err ** 2) / w.sum()) / res * 100.0)


def _window_rows(run: _Run, zone: dt.tzinfo, mean: npt.NDArray[np.float64],
                 above: npt.NDArray[np.bool_], origin_s: float, step_s: float,
                 activation: list[float]) -> list[dict[str, object]]:
    """One row per sold window met."""
    fr = run.fr
    k_a = np.array(fr.win, dtype=np.int64)
    w_a = np.array(fr.w)
    err = np.array(fr.dlv) - np.array(fr.req)
    av = np.array(fr.avail, dtype=bool)
    rows: list[dict[str, object]] = []
    for k, s in enumerate(run.starts):
        sel = k_a == k
        res = s.cfg.reserved_power_w
        w = w_a[sel]
        first = max(0, int((s.window.start_s - origin_s) / step_s + 1e-9))
        last = min(mean.size, math.ceil((s.window.end_s - origin_s) / step_s - 1e-9))
        rows.append({
            "window": s.window.source,
            "start": dt.datetime.fromtimestamp(s.window.start_s, zone).isoformat(),
            "end": dt.datetime.fromtimestamp(s.window.end_s, zone).isoformat(),
            "reserved_power_w": res,
            "hold_duration_s": s.cfg.hold_duration_s,
            "soc_start_pct": s.soc_pct,
            "soc_band_pct": [s.band_pct[0], s.band_pct[1]],
            "soc_in_band_at_start": bool(s.band_pct[0] - 1e-9 <= s.soc_pct
                                         <= s.band_pct[1] + 1e-9),
            "preparation_warned": s.prep_warned,
            "contracted_s": float(w.sum()),
            "fr_availability_pct": float(100.0 * np.sum(w * av[sel]) / w.sum())
            if w.sum() > 0 else math.nan,
            "fr_rms_error_pct": _rms_pct(err[sel], w, res),
            "fr_max_abs_error_pct": float(np.max(np.abs(err[sel])) / res * 100.0)
            if w.size else math.nan,
            "fr_energy_required_wh": float(np.sum(np.abs(np.array(fr.req)[sel]) * w) / 3600.0),
            "fr_energy_delivered_wh": float(np.sum(np.abs(np.array(fr.dlv)[sel]) * w) / 3600.0),
            "curve": _curve_name(s.cfg),
            "fr_activation_time_s": activation[k],
            "peak_import_w": float(mean[first:last].max()) if last > first else math.nan,
            "intervals_above_limit": int(np.count_nonzero(above[first:last])),
        })
    return rows


def run_day(
    site: SiteConfig,
    load: LoadProfile,
    schedule: ScheduleFile,
    series: FrequencySeries,
    *,
    config: FrequencyResponseConfig | None = None,
    peak_shaving: PeakShavingConfig | None = None,
    billing: BillingConfig | None = None,
    options: DayReplayOptions | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> DayReport:
    """Replay ``load`` and ``series`` on ``site`` with the windows of ``schedule``.

    The control is the production control cycle with frequency response (``config``,
    whose reserve, curve and hold duration the windows override) and peak shaving
    (``peak_shaving``; the windows set its limit; as in the peak-shaving replay it
    recharges with the fleet's whole charge power and its export limit is beyond the
    load) enabled and the schedule's windows
    over the replayed span in its book; the site's time is the profile's. The
    frequency series starts with the replay. See the module for the stepping and
    what is measured.

    Raises:
        ReplayError: bad input (too short a profile, no batteries).
    """
    opt = options or DayReplayOptions()
    values = np.asarray(load.power_w, dtype=np.float64)
    if values.size < 2:
        raise ReplayError(f"{load.path}: the load selection has {values.size} sample(s); "
                          "need at least 2", source=load.path)
    step = float(load.step_s)
    billing = billing or BillingConfig()
    clock = billing_clock(billing)
    end_s = values.size * step
    origin = load.start_unix_s
    book = schedule_book(schedule, origin, origin + end_s)
    fr_cfg = dataclasses.replace(config or FrequencyResponseConfig(), enabled=True)
    models = fleet_models(site)
    ps_cfg = dataclasses.replace(
        peak_shaving or PeakShavingConfig(), enabled=True, limit_mode="fixed",
        export_limit_w=max((peak_shaving or PeakShavingConfig()).export_limit_w,
                           float(values.max()) * 10.0),
        recharge_power_w=sum(m.charge_max_w for m in models),
        interval_s=opt.cycle_s)
    cfg = replay_config(opt, peak_shaving=ps_cfg, frequency_response=fr_cfg, billing=billing)
    control = replay_control(site, cfg, site_zone=DEFAULT_ZONE,
                             meter_max_gap_s=max(opt.max_step_s, step), schedule=book)
    assert control.cycle.meter is not None
    feed_history(control.cycle.meter, load.history_w, origin, step)
    ph = _physics(site, values, step, series, opt, seed)
    transport = PhysicsTransport(ph, control, site_origin_s=origin)
    run = _Run(transport, series, opt, step, origin, fr_cfg, values.size)
    wall0 = time.perf_counter()
    run.run(end_s, progress)
    wall = time.perf_counter() - wall0
    act, act_wall = _activation(site, run.starts, opt, seed)
    return _report(run, load, values, clock.tz, transport.cycles, wall, act, act_wall, series)


def _report(run: _Run, load: LoadProfile, values: npt.NDArray[np.float64], zone: dt.tzinfo,
            cycles: int, wall: float, act: list[float], act_wall: float,
            series: FrequencySeries) -> DayReport:
    step = float(load.step_s)
    n_int = values.size
    s = run.samples
    limits = np.where(np.isnan(s.limit), math.inf, s.limit)
    finite = limits[np.isfinite(limits)]
    tol = max(100.0, 1e-3 * (float(finite.max()) if finite.size else 0.0))
    t_a, g_a, b_a = np.array(s.ts), np.array(s.grid), np.array(s.bat)
    above, avoid, _ = classify_intervals(t_a, g_a, b_a, np.array(s.lower), limit_w=limits,
                                         interval_s=step, n_intervals=n_int, tolerance_w=tol)
    mean = _interval_means(g_a, _interval_of(t_a, step, n_int), np.diff(t_a), step, n_int)
    rows = _window_rows(run, zone, mean, above, load.start_unix_s, step, act)
    fr = run.fr
    w_a = np.array(fr.w)
    res_a = np.array([run.starts[k].cfg.reserved_power_w for k in fr.win]) if fr.win else \
        np.zeros(0)
    err_pct = (np.array(fr.dlv) - np.array(fr.req)) / np.where(res_a > 0, res_a, 1.0) * 100.0
    contracted = float(w_a.sum())
    allowed = [r for r in rows if not r["preparation_warned"]]
    return DayReport(
        fr_availability_pct=(float(100.0 * np.sum(w_a * np.array(fr.avail)) / contracted)
                             if contracted > 0 else math.nan),
        fr_rms_error_pct=(float(np.sqrt(np.sum(w_a * err_pct ** 2) / contracted))
                          if contracted > 0 else math.nan),
        soc_in_band_at_window_start_pct=(
            100.0 * sum(bool(r["soc_in_band_at_start"]) for r in allowed) / len(allowed)
            if allowed else math.nan),
        windows_sold=len(rows),
        windows_band_unreachable=len(rows) - len(allowed),
        fr_energy_outside_windows_wh=run.outside_wh,
        fr_energy_delivered_wh=float(np.sum(np.abs(np.array(fr.dlv)) * w_a) / 3600.0),
        fr_activation_time_max_s=max((a for a in act if not math.isnan(a)), default=math.nan),
        fr_activation_curve=",".join(sorted({_curve_name(st.cfg) for st in run.starts})),
        fr_activation_wall_s=act_wall,
        contracted_s=contracted,
        peak_import_w_uncontrolled=float(values.max()),
        peak_import_w=float(mean.max()),
        billed_peak_w=float(np.nanmax(s.billed)) if np.isfinite(s.billed).any() else math.nan,
        intervals_total=n_int,
        intervals_above_limit=int(np.count_nonzero(above)),
        intervals_above_limit_avoidable=int(np.count_nonzero(avoid)),
        soc_min_pct=float(np.min(s.soc)),
        soc_max_pct=float(np.max(s.soc)),
        control_cycles=cycles,
        simulated_s=n_int * step,
        wall_s=wall,
        frequency_source=series.source,
        load={"file": load.path, "start": load.start.isoformat(),
              "days": n_int * step / 86400.0, "peak_w": float(values.max()),
              "zone": str(zone)},
        windows=rows,
        time_s=t_a,
        grid_w=g_a,
        soc_pct=np.array(s.soc),
    )
