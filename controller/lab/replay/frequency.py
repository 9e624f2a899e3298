"""Frequency-response replay: a seeded, synthetic or recorded frequency trace against the physics.

* :func:`make_frequency_trace` / :class:`FrequencyTrace` — a deterministic
  scenario: nominal frequency (or a recorded / synthetic series), seeded smooth
  noise, scripted steps and ramps.
* :func:`frequency_series` — the site frequency of a replay from either source
  (a recorded CSV or the synthetic generator); its
  :meth:`~simulator.frequency_series.FrequencySeries.at` answers the frequency
  (Hz, float array) at any site times, vectorised.
* :func:`run_frequency_response` →
  :class:`~controller.lab.replay.reports.FrequencyResponseReport` — replay a trace
  through :class:`~controller.runtime.strategies.FrequencyResponse` alone.
* :class:`FrequencyReplayOptions` — its settings.

It runs a fixed control step (default 100 ms, the grid-meter sample period)
with physics sub-steps of ``physics_step_s`` (default 50 ms), in process on a
virtual clock (:mod:`controller.lab.replay.transport`: the production control
cycle, only transport and clock replaced).

Units and signs: W, Wh, %, Hz, simulated seconds; + = charging.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from controller.lab.replay import stepping
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.reports import FloatArray, FrequencyResponseReport
from controller.lab.replay.stepping import ControlOptions, PhysicsTruth, ProgressCallback
from controller.lab.replay.transport import PhysicsTransport, replay_control
from controller.runtime.strategies import (
    FrequencyResponseConfig,
    frequency_response_wish,
    soc_band_pct,
)
from simulator.config import FrequencyConfig, FrequencyEvent, LoadConfig, SiteConfig
from simulator.csv_series import CsvSeriesError
from simulator.frequency_series import FrequencySeries, read_frequency_csv
from simulator.frequency_synthetic import synthetic_frequency
from simulator.physics import SitePhysics

__all__ = [
    "FrequencyReplayOptions",
    "FrequencyTrace",
    "frequency_series",
    "make_frequency_trace",
    "run_frequency_response",
]


def frequency_series(
    csv: str | Path | None = None,
    *,
    seed: int = 0,
    duration_s: float = 86_400.0,
    nominal_hz: float = 50.0,
) -> FrequencySeries:
    """The grid frequency of a replay: the recorded trace of ``csv``, else the synthetic one.

    ``series.at(t_s)`` is the frequency (Hz) at site times ``t_s`` (s from the trace's
    start, any array shape; nan where a recording is unknown, cyclic after the end).

    Args:
        csv: a recorded trace (timestamp and Hz columns, >= 1 sample per second;
            :func:`simulator.frequency_series.read_frequency_csv`); ``None`` = the
            seeded generator (:func:`simulator.frequency_synthetic.synthetic_frequency`).
        seed: the generator's seed.
        duration_s: the generator's length (s) before it repeats.
        nominal_hz: nominal frequency (Hz).

    Raises:
        ReplayError: an unusable file or a bad duration, one line naming the flag,
            the file, the line and the value.
    """
    if csv is not None:
        try:
            return read_frequency_csv(str(csv), nominal_hz=nominal_hz)
        except CsvSeriesError as exc:
            raise ReplayError(f"--frequency-csv: {exc}", source="--frequency-csv") from None
    try:
        return synthetic_frequency(duration_s, seed=seed, nominal_hz=nominal_hz)
    except ValueError as exc:
        raise ReplayError(f"--fr-trace synthetic: {exc}", source="--fr-trace") from None


@dataclass(frozen=True, slots=True)
class FrequencyTrace:
    """A grid-frequency scenario: nominal (or ``series``) + seeded smooth noise + scripted
    events."""

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
    series: FrequencySeries | None = None
    """A recorded or synthetic frequency replacing the nominal value from time 0."""

    def gaps_in_span(self) -> dict[str, float | int]:
        """The series' unknown stretches within ``[0, duration_s)`` and its bridged count
        (the report's ``frequency_gaps``); empty without a series."""
        if self.series is None:
            return {}
        return self.series.gaps_within(self.duration_s).as_dict()


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
    series: FrequencySeries | None = None,
) -> FrequencyTrace:
    """A deterministic trace: ``steps`` step events of ±``step_hz`` and ``ramps`` ramps.

    With ``series`` (recorded or synthetic frequency) the events and the noise add
    on top of it instead of the nominal value.

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
                          noise_tau_s=noise_tau_s, seed=seed, series=series)


@dataclass(frozen=True, slots=True)
class FrequencyReplayOptions(ControlOptions):
    """Settings of :func:`run_frequency_response` (s, %).

    The ``[control]`` ones are those of
    :class:`~controller.lab.replay.stepping.ControlOptions`.
    """

    setpoint_lifetime_s: float = 10.0
    """Lifetime of each setpoint (s, whole, 10..900), as ``[control] setpoint_lifetime_s``."""
    control_step_s: float = 0.1
    """Control cycle = grid-meter sample period (s)."""
    physics_step_s: float = 0.05
    """Physics sub-step (s): resolves inverter delay and ramp."""
    activation_window_s: float = 1.0
    """After each step edge, this long is judged by the activation time, not by the RMS."""
    activation_tolerance_pct: float = 2.0
    """"Fully activated" = within this % of the reserve from the required power."""
    base_load_w: float = 150_000.0
    """Constant site load during the trace (W; irrelevant to frequency response)."""


# --------------------------------------------------------------------------- steps of a run


def _check(cfg: FrequencyResponseConfig, opt: FrequencyReplayOptions) -> None:
    """Refuse steps that are not positive and a reserve that is not."""
    if not (opt.control_step_s > 0 and opt.physics_step_s > 0):
        raise ReplayError("options: control_step_s and physics_step_s must be > 0",
                          source="options")
    if cfg.reserved_power_w <= 0:
        raise ReplayError(f"frequency_response.reserved_power_w must be > 0, got "
                          f"{cfg.reserved_power_w}", source="reserved_power_w")


def _physics(site: SiteConfig, trace: FrequencyTrace, opt: FrequencyReplayOptions) -> SitePhysics:
    """The quiet site at a constant load, its frequency following ``trace``."""
    quiet = stepping.quiet_site(
        site,
        load=LoadConfig(profile_w=np.array([opt.base_load_w]), step_s=3600.0, noise_w=0.0),
        frequency=FrequencyConfig(nominal_hz=trace.nominal_hz, noise_hz=trace.noise_hz,
                                  noise_tau_s=trace.noise_tau_s, events=trace.events,
                                  series=trace.series),
    )
    return SitePhysics(quiet, seed=trace.seed, max_step_s=opt.physics_step_s)


class _Samples:
    """Required and delivered power, frequency and SoC at every control step end."""

    def __init__(self, truth: PhysicsTruth, cfg: FrequencyResponseConfig, n: int) -> None:
        self.truth = truth
        self.cfg = cfg
        self.t = np.empty(n + 1)
        self.f = np.empty(n + 1)
        self.req = np.empty(n + 1)
        self.dlv = np.empty(n + 1)
        self.soc = np.empty(n + 1)

    def record(self, j: int) -> None:
        """Sample ``j``: the physics' state now and the law's answer to the true frequency."""
        ph = self.truth.ph
        self.t[j] = ph.now_s
        self.f[j] = ph.frequency_hz
        inputs = self.truth.inputs()
        self.req[j] = frequency_response_wish(self.cfg, inputs).preferred_w
        self.dlv[j] = inputs.battery_power_w
        self.soc[j] = inputs.soc_pct


def _run_cycles(transport: PhysicsTransport, samples: _Samples, opt: FrequencyReplayOptions,
                n: int, progress: ProgressCallback | None) -> float:
    """``n`` control steps of ``control_step_s``, sampled at each end; returns the wall time."""
    ph = transport.physics
    samples.record(0)
    wall0 = time.perf_counter()
    for j in range(1, n + 1):
        due = transport.cycle()
        stepping.advance(ph, due, opt.control_step_s, opt.physics_step_s, opt.physics_step_s)
        samples.record(j)
        if progress is not None and j % 1000 == 0:
            progress(ph.now_s, n * opt.control_step_s)
    wall = time.perf_counter() - wall0
    if progress is not None:
        progress(n * opt.control_step_s, n * opt.control_step_s)
    return wall


def _activation(t_a: FloatArray, err: FloatArray, trace: FrequencyTrace,
                opt: FrequencyReplayOptions, tol_w: float
                ) -> tuple[npt.NDArray[np.bool_], list[float]]:
    """The samples inside an activation window, and the activation time of each step edge.

    Full activation: the first sample after the edge from which the error stays
    within ``tol_w`` until the window ends (nan if none).
    """
    edges: list[float] = []
    for e in trace.events:
        if e.ramp_s == 0.0:
            edges += [e.start_s, e.start_s + e.duration_s]
    window = np.zeros(t_a.size, dtype=bool)
    act: list[float] = []
    for edge in edges:
        in_w = (t_a >= edge) & (t_a < edge + opt.activation_window_s)
        window |= in_w
        after = np.flatnonzero((t_a >= edge) & (np.abs(err) <= tol_w))
        inside = np.flatnonzero(in_w)
        settled = math.nan
        for k in after:
            if k > (inside[-1] if inside.size else k):
                settled = float(t_a[k] - edge)
                break
            rest = inside[inside >= k]
            if np.all(np.abs(err[rest]) <= tol_w):
                settled = float(t_a[k] - edge)
                break
        act.append(settled)
    return window, act


def _report(cfg: FrequencyResponseConfig, trace: FrequencyTrace, opt: FrequencyReplayOptions,
            s: _Samples, n: int, cycles: int, wall_s: float) -> FrequencyResponseReport:
    """The tracking quality of the samples: RMS outside the windows, activation times, SoC."""
    res = cfg.reserved_power_w
    err = s.dlv - s.req
    window, act = _activation(s.t, err, trace, opt, opt.activation_tolerance_pct / 100.0 * res)
    keep = ~window
    rms = float(np.sqrt(np.mean(err[keep] ** 2)) / res * 100.0) if keep.any() else math.nan
    truth = s.truth
    band = soc_band_pct(truth.cap_total, res, cfg.hold_duration_s, truth.soc_lo, truth.soc_hi)
    in_band = (s.soc >= band[0] - 1e-9) & (s.soc <= band[1] + 1e-9)
    dt_h = opt.control_step_s / 3600.0
    return FrequencyResponseReport(
        reserved_power_w=res,
        rms_error_pct=rms,
        rms_error_pct_all=float(np.sqrt(np.mean(err ** 2)) / res * 100.0),
        max_abs_error_pct=float(np.max(np.abs(err[keep])) / res * 100.0) if keep.any()
        else math.nan,
        activation_time_s=act,
        activation_time_max_s=float(max(act)) if act else math.nan,
        fr_energy_required_wh=float(np.sum(np.abs(s.req[1:])) * dt_h),
        fr_energy_delivered_wh=float(np.sum(np.abs(s.dlv[1:])) * dt_h),
        soc_band_pct=(float(band[0]), float(band[1])),
        soc_in_band_pct=float(100.0 * np.mean(in_band)),
        soc_min_pct=float(s.soc.min()),
        soc_max_pct=float(s.soc.max()),
        hold_duration_s=cfg.hold_duration_s,
        control_cycles=cycles,
        simulated_s=float(n * opt.control_step_s),
        wall_s=wall_s,
        events=[{"start_s": e.start_s, "duration_s": e.duration_s, "delta_hz": e.delta_hz,
                 "ramp_s": e.ramp_s} for e in trace.events],
        frequency_source="steps" if trace.series is None else trace.series.source,
        frequency_gaps=trace.gaps_in_span(),
        time_s=s.t,
        frequency_hz=s.f,
        required_w=s.req,
        delivered_w=s.dlv,
    )


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
    _check(cfg, opt)
    ph = _physics(site, trace, opt)
    control = replay_control(site, stepping.replay_config(
        opt, frequency_response=dataclasses.replace(cfg, enabled=True)))
    transport = PhysicsTransport(ph, control)
    n = math.floor(trace.duration_s / opt.control_step_s + 1e-9)
    samples = _Samples(PhysicsTruth(ph), cfg, n)
    wall = _run_cycles(transport, samples, opt, n, progress)
    return _report(cfg, trace, opt, samples, n, transport.cycles, wall)
