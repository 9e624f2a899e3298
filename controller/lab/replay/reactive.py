"""The voltage-support replay: reactive-power figures from the physics' truth.

:func:`run_voltage_support` replays a site's own scenario (its load, PV and
``[[grid.event]]`` voltage steps, seeded) with a gridloop config's strategies and
``[reactive_power]`` on a virtual clock, through :class:`PhysicsTransport` (the
service's control cycle, planner and reactive setpoints), and again with reactive
control off, same seed, so the active-power figures of both can be compared.

Figures (from the physics, sampled at the end of every control step):

* ``q_tracking_rms_pct`` — RMS of the fleet's measured Q minus the cycle's reactive
  target, in % of the fleet's reactive capability (the battery inverters' limit at
  0 W, :meth:`~simulator.physics.SitePhysics.reactive_limit_var`).
* ``q_settling_s`` — per scripted voltage step (each edge of a ``[[grid.event]]``),
  on a clean step, as a grid-code compliance test steps a voltage source: a third
  run with the background voltage's random walk off (same load, seed and steps),
  :func:`settling_time_s`: how long until the fleet's Q stays within 5 % of the
  characteristic's value for the stepped voltage (``q_u`` mode only:
  :func:`~controller.runtime.strategies.q_u_characteristic_var` of the median true
  voltage once settled; the band is at least 5 % of the step the characteristic made,
  so a value near 0 does not ask for an exact 0; see ``_settling``). Target:
  ``max(10 s, 3 τ)`` (the filter settles to 5 % after 3 τ). The same figure in the
  run with the walk on is ``q_settling_in_noise_s`` (informative: the characteristic
  then follows the drifting voltage, and Q with it).
* ``voltage_in_band_pct`` — share of samples with the connection point's voltage
  within ``voltage_band_pct`` of nominal.
* ``reactive_setpoints_out_of_bounds`` — reactive setpoints the planner's re-check
  replaced plus those the site refused as out of range or invalid (the service's rule).
* ``apparent_power_violations`` — samples × battery inverters with
  ``sqrt(P² + Q²) > S`` (beyond :data:`actors.APPARENT_TOLERANCE`).
* ``p_figures_with_vs_without_reactive`` — the peak-shaving figures of both runs
  (peak import, peak interval-mean import, energy above the import limit) and their
  difference in %; ``apparent_limit_binding`` says whether the physics clipped Q on
  the circle (where it does, P has priority and the 1 % target does not apply).
* ``fleet_p_rms_difference_pct`` — RMS of the battery fleet's active power with minus
  without reactive control, sample by sample, in % of the fleet's active rating: P
  tracking itself, whatever strategies run (peak shaving, frequency response).

Units and signs: W, VAr, V, %, simulated s; + = importing / absorbing Q.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from actors import APPARENT_TOLERANCE
from controller.lab.replay import stepping
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.stepping import ProgressCallback
from controller.lab.replay.transport import PhysicsTransport, replay_control
from controller.runtime.config import GridloopConfig
from controller.runtime.strategies import ReactivePowerConfig, q_u_characteristic_var
from controller.runtime.summary import refused_as_out_of_bounds
from simulator.config import SiteConfig
from simulator.physics import SitePhysics

__all__ = ["ReactiveReplayOptions", "ReactiveReport", "run_voltage_support", "settling_time_s"]

FloatArray = npt.NDArray[np.float64]

SETTLE_BAND_PCT = 5.0
"""Settled: within this share of the characteristic's value (or of its step) (%)."""
SETTLE_TARGET_S = 10.0
"""The issue's settling target (s), unless 3 τ of the filter is longer."""
SETTLE_WINDOWS = 4.0
"""A step's window: at most this many times the settling target (s)."""


@dataclass(frozen=True, slots=True)
class ReactiveReplayOptions:
    """How the voltage-support replay steps (simulated s)."""

    duration_s: float = 1800.0
    """Simulated time to replay (s): by default the bundled site's voltage event and both
    load peaks."""
    control_step_s: float = 1.0
    """Time between control cycles (s)."""
    physics_step_s: float = 0.1
    """The physics' integration step (s)."""


@dataclass
class _Run:
    """The samples of one run and its counters."""

    t: FloatArray
    u: FloatArray
    q: FloatArray
    q_target: FloatArray
    grid_w: FloatArray
    p_w: FloatArray
    clips: int = 0
    apparent_violations: int = 0
    out_of_bounds: int = 0
    q_sent: int = 0
    cycles: int = 0
    wall_s: float = 0.0


@dataclass
class ReactiveReport:
    """The voltage-support replay's figures (see the module)."""

    config: ReactivePowerConfig
    duration_s: float
    q_capability_var: float
    q_tracking_rms_pct: float
    q_settling_s: list[float]
    q_settling_target_s: float
    q_settling_in_noise_s: list[float]
    voltage_in_band_pct: float
    voltage_in_band_pct_without_reactive: float
    reactive_setpoints_sent: int
    reactive_setpoints_out_of_bounds: int
    apparent_power_violations: int
    apparent_limit_binding: bool
    p_figures: dict[str, dict[str, float]] = field(default_factory=dict)
    fleet_p_rms_difference_pct: float = math.nan
    wall_s: float = 0.0

    @property
    def q_settling_worst_s(self) -> float:
        """The longest settling time (s; NaN: a step never settled or no step)."""
        if not self.q_settling_s or any(math.isnan(s) for s in self.q_settling_s):
            return math.nan
        return max(self.q_settling_s)

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-ready values (the ``--summary-json`` keys)."""
        return {
            "mode": self.config.mode,
            "simulated_s": self.duration_s,
            "q_capability_var": self.q_capability_var,
            "q_tracking_rms_pct": self.q_tracking_rms_pct,
            "q_settling_s": {"steps": self.q_settling_s, "worst": self.q_settling_worst_s,
                             "target": self.q_settling_target_s},
            "q_settling_in_noise_s": self.q_settling_in_noise_s,
            "voltage_in_band_pct": self.voltage_in_band_pct,
            "voltage_in_band_pct_without_reactive": self.voltage_in_band_pct_without_reactive,
            "reactive_setpoints_sent": self.reactive_setpoints_sent,
            "reactive_setpoints_out_of_bounds": self.reactive_setpoints_out_of_bounds,
            "apparent_power_violations": self.apparent_power_violations,
            "apparent_limit_binding": self.apparent_limit_binding,
            "p_figures_with_vs_without_reactive": self.p_figures,
            "fleet_p_rms_difference_pct": self.fleet_p_rms_difference_pct,
            "wall_s": self.wall_s,
        }


def settling_time_s(t: FloatArray, q: FloatArray, step_s: float, end_s: float,
                    final_var: float, band_var: float) -> float:
    """How long after ``step_s`` the response ``q`` settles at ``final_var``.

    Settled at sample ``k``: from ``k`` until ``end_s`` every sample has
    ``|q − final_var| ≤ band_var``.

    Args:
        t: Sample times (s, ascending).
        q: The response at each sample (VAr).
        step_s: When the step happened (s).
        end_s: Where its window ends (s, exclusive).
        final_var: The value to settle at (VAr).
        band_var: The allowed deviation from it (VAr, ≥ 0).

    Returns:
        ``t[k] − step_s`` of the first settled sample ``k`` after ``step_s``; NaN when the
        window has no sample or its last one is outside the band.
    """
    win = np.flatnonzero((t > step_s) & (t < end_s))
    if win.size == 0:
        return math.nan
    outside = np.flatnonzero(~(np.abs(q[win] - final_var) <= band_var))
    if outside.size == 0:
        return float(t[win[0]] - step_s)
    last = int(outside[-1])
    if last == win.size - 1:
        return math.nan
    return float(t[win[last + 1]] - step_s)


def _voltage_steps(site: SiteConfig) -> list[float]:
    """The times (s) at which the site's scripted voltage events step (edges without ramp)."""
    steps: list[float] = []
    for e in site.grid_model.events:
        if e.ramp_s == 0.0:
            steps += [e.start_s, e.start_s + e.duration_s]
    return sorted(steps)


def _run(site: SiteConfig, config: GridloopConfig, seed: int, opt: ReactiveReplayOptions,
         progress: ProgressCallback | None) -> _Run:
    """One replay of ``config`` on ``site``, sampled at the end of every control step."""
    ph = SitePhysics(site, seed=seed, max_step_s=opt.physics_step_s)
    control = replay_control(site, config)
    tr = PhysicsTransport(ph, control)
    n = math.floor(opt.duration_s / opt.control_step_s + 1e-9)
    run = _Run(t=np.empty(n), u=np.empty(n), q=np.empty(n), q_target=np.empty(n),
               grid_w=np.empty(n), p_w=np.empty(n))
    bat = ph.inverter_is_battery
    s_rating = ph.inverter_rated_apparent_va[bat]
    wall0 = time.perf_counter()
    for j in range(n):
        due = tr.cycle()
        stepping.advance(ph, due, opt.control_step_s, opt.physics_step_s, opt.physics_step_s)
        p, q = ph.inverter_power_w[bat], ph.inverter_reactive_var[bat]
        with np.errstate(invalid="ignore"):
            over = np.isfinite(s_rating) & (np.hypot(p, q) > s_rating * (1 + APPARENT_TOLERANCE))
        run.apparent_violations += int(np.count_nonzero(over))
        run.t[j], run.u[j], run.grid_w[j] = ph.now_s, ph.grid_voltage_v, ph.grid_power_w
        run.q[j], run.q_target[j] = float(q.sum()), control.cycle.q_target_var
        run.p_w[j] = float(p.sum())
        if progress is not None and j % 600 == 0:
            progress(ph.now_s, opt.duration_s)
    run.wall_s = time.perf_counter() - wall0
    run.cycles = tr.cycles
    run.clips = int(ph.inverter_apparent_clips[bat].sum())
    run.q_sent = tr.q_sent
    refused = refused_as_out_of_bounds(tr.q_refused)
    run.out_of_bounds = control.core.planner.reactive_out_of_bounds + refused
    return run


def _p_figures(run: _Run, config: GridloopConfig, step_s: float) -> dict[str, float]:
    """Peak-shaving figures of one run: peak import, peak interval mean, energy above limit."""
    per = max(1, round(config.billing.interval_s / step_s))
    whole = run.grid_w.size // per * per
    means = run.grid_w[:whole].reshape(-1, per).mean(axis=1) if whole else run.grid_w
    limit = config.peak_shaving.import_limit_w
    above = np.clip(run.grid_w - limit, 0.0, None) if math.isfinite(limit) else np.zeros(1)
    return {"peak_import_w": float(run.grid_w.max()),
            "peak_interval_mean_import_w": float(means.max()),
            "energy_above_limit_wh": float(above.sum() * step_s / 3600.0)}


def _diff_pct(a: float, b: float) -> float:
    """``a`` relative to ``b`` (%; 0 when both are 0)."""
    if a == b:
        return 0.0
    return 100.0 * (a - b) / abs(b) if b != 0 else math.inf


def _in_band_pct(u: FloatArray, rp: ReactivePowerConfig) -> float:
    dev = 100.0 * np.abs(u / rp.nominal_voltage_v - 1.0)
    return float(100.0 * np.mean(dev <= rp.voltage_band_pct)) if u.size else math.nan


def _settling(run: _Run, site: SiteConfig, rp: ReactivePowerConfig, q_ref_var: float,
              target_s: float) -> list[float]:
    """:func:`settling_time_s` of each voltage step inside the run (``q_u`` only).

    A step's window lasts to the next step or ``SETTLE_WINDOWS`` × the target, whichever is
    first (later, the load moves the voltage for other reasons). The value to settle at is
    the characteristic at the stepped voltage: the median of the true voltage over the
    window's second half (with the fleet's Q then in it); before the step, likewise over as
    long before it. The band is ``SETTLE_BAND_PCT`` % of that value, or of the step the
    characteristic made if that is larger.
    """
    if rp.mode != "q_u" or not run.t.size:
        return []
    steps = [s for s in _voltage_steps(site) if s < run.t[-1]]
    out: list[float] = []
    for k, step in enumerate(steps):
        end = min(steps[k + 1] if k + 1 < len(steps) else math.inf,
                  step + SETTLE_WINDOWS * target_s)
        length = min(end, run.t[-1]) - step
        after = run.u[(run.t >= step + length / 2) & (run.t < end)]
        before = run.u[(run.t > step - length / 2) & (run.t <= step)]
        if not (after.size and before.size):
            out.append(math.nan)
            continue
        final = q_u_characteristic_var(float(np.median(after)), rp, q_ref_var)
        initial = q_u_characteristic_var(float(np.median(before)), rp, q_ref_var)
        band = SETTLE_BAND_PCT / 100.0 * max(abs(final), abs(final - initial))
        out.append(settling_time_s(run.t, run.q, step, end, final, band))
    return out


def run_voltage_support(site: SiteConfig, config: GridloopConfig, *, seed: int = 0,
                        options: ReactiveReplayOptions | None = None,
                        progress: ProgressCallback | None = None) -> ReactiveReport:
    """Replay ``site``'s scenario with ``config`` (reactive control on), then with reactive
    control off, then (when the site scripts voltage steps) on clean steps, and report
    the figures of the module docstring.

    Raises:
        ReplayError: reactive control is off in ``config``, bad options, or a site the
            replay cannot build.
    """
    opt = options or ReactiveReplayOptions()
    rp = config.reactive_power
    if not rp.enabled:
        raise ReplayError("[reactive_power]: enabled = false: nothing to replay",
                          source="reactive_power")
    for name in ("duration_s", "control_step_s", "physics_step_s"):
        value = getattr(opt, name)
        if not (math.isfinite(value) and value > 0):
            raise ReplayError(f"{name}: must be a positive number of seconds, got {value!r}",
                              source=name)
    on = _run(site, config, seed, opt, progress)
    off_config = dataclasses.replace(config, reactive_power=dataclasses.replace(rp, enabled=False))
    off = _run(site, off_config, seed, opt, progress)
    clean_site = dataclasses.replace(
        site, grid_model=dataclasses.replace(site.grid_model, noise_pct=0.0))
    clean = _run(clean_site, config, seed, opt, progress) if _voltage_steps(site) else on
    ph = SitePhysics(site, seed=seed)
    bat = ph.inverter_is_battery
    capability = float(ph.reactive_limit_var(np.zeros(bat.size))[bat].sum())
    q_ref = rp.q_ref_var if rp.q_ref_var > 0 else float(
        np.nansum(ph.inverter_rated_apparent_va[bat]))
    target = max(SETTLE_TARGET_S, 3.0 * rp.time_constant_s)
    err = (on.q - on.q_target) / capability if capability > 0 else np.full(1, math.nan)
    with_p, without_p = _p_figures(on, config, opt.control_step_s), _p_figures(
        off, off_config, opt.control_step_s)
    rating = float(np.sum(np.maximum(ph.inverter_rated_upper_w, -ph.inverter_rated_lower_w)[bat]))
    p_figures = {"with_reactive": with_p, "without_reactive": without_p,
                 "difference_pct": {k: _diff_pct(with_p[k], without_p[k]) for k in with_p}}
    return ReactiveReport(
        config=rp,
        duration_s=on.t.size * opt.control_step_s,
        q_capability_var=capability,
        q_tracking_rms_pct=float(100.0 * np.sqrt(np.mean(err**2))),
        q_settling_s=_settling(clean, site, rp, q_ref, target),
        q_settling_target_s=target,
        q_settling_in_noise_s=_settling(on, site, rp, q_ref, target),
        voltage_in_band_pct=_in_band_pct(on.u, rp),
        voltage_in_band_pct_without_reactive=_in_band_pct(off.u, rp),
        reactive_setpoints_sent=on.q_sent,
        reactive_setpoints_out_of_bounds=on.out_of_bounds,
        apparent_power_violations=on.apparent_violations,
        apparent_limit_binding=on.clips > 0,
        p_figures=p_figures,
        fleet_p_rms_difference_pct=float(
            100.0 * np.sqrt(np.mean((on.p_w - off.p_w) ** 2)) / rating) if rating > 0 else math.nan,
        wall_s=on.wall_s + off.wall_s + (clean.wall_s if clean is not on else 0.0),
    )
