"""What both replays share: the physics' truth, time stepping, the config a replay runs.

* :class:`ControlOptions` — the ``[control]`` settings a replay's options carry.
* :func:`replay_config` — the :class:`~controller.runtime.config.GridloopConfig` of a
  replay: one strategy and those settings.
* :func:`quiet_site` — the site with a given load and frequency, no PV, no noise.
* :class:`PhysicsTruth` — what the physics really does (the measurement side of
  a report, not the control's view).
* :func:`advance` — step the physics between two control cycles, finely while
  the setpoints just sent take effect.

Units and signs: W, Wh, %, Hz, simulated seconds; + = importing / charging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from controller.runtime.billing import BillingConfig
from controller.runtime.config import ControlConfig, GridloopConfig
from controller.runtime.strategies import FrequencyResponseConfig, PeakShavingConfig, StrategyInputs
from simulator.config import FrequencyConfig, LoadConfig, PvConfig, SiteConfig
from simulator.physics import SitePhysics

__all__ = [
    "ControlOptions",
    "PhysicsTruth",
    "ProgressCallback",
    "advance",
    "quiet_site",
    "replay_config",
]

_CONTROL_DEFAULTS = ControlConfig()
ProgressCallback = Callable[[float, float], None]
"""``progress(done_s, total_s)``: called every few hundred cycles with simulated seconds."""


@dataclass(frozen=True, slots=True)
class ControlOptions:
    """The ``[control]`` settings of a replay (W, s)."""

    soc_exponent: float = 1.0
    """Distribution's SoC weighting exponent."""
    setpoint_lifetime_s: float = 900.0
    """Lifetime of each setpoint (s, whole, 10..900), as ``[control] setpoint_lifetime_s``."""
    deadband_w: float = _CONTROL_DEFAULTS.deadband_w
    """The distributor's deadband (W), as ``[control] deadband_w``."""
    stale_after_s: float = _CONTROL_DEFAULTS.stale_after_s
    """Telemetry staleness limit (s), as ``[control] stale_after_s``."""


def replay_config(opt: ControlOptions, *,
                  peak_shaving: PeakShavingConfig | None = None,
                  frequency_response: FrequencyResponseConfig | None = None,
                  billing: BillingConfig | None = None) -> GridloopConfig:
    """The gridloop config a replay runs: one strategy, the options' ``[control]``, the
    ``[billing]`` given (default: the defaults)."""
    control = ControlConfig(setpoint_lifetime_s=int(opt.setpoint_lifetime_s),
                            deadband_w=opt.deadband_w, stale_after_s=opt.stale_after_s,
                            soc_exponent=opt.soc_exponent)
    return GridloopConfig(
        control=control,
        peak_shaving=peak_shaving or PeakShavingConfig(enabled=False),
        frequency_response=frequency_response or FrequencyResponseConfig(enabled=False),
        billing=billing or BillingConfig(),
    )


def quiet_site(site: SiteConfig, *, load: LoadConfig, frequency: FrequencyConfig) -> SiteConfig:
    """The site with the given load and frequency, no PV, and no noise."""
    return dataclasses.replace(
        site,
        load=load,
        pv=PvConfig(irradiance_wm2=np.zeros(1), step_s=3600.0, noise_pct=0.0),
        frequency=frequency,
    )


class PhysicsTruth:
    """What the physics really does (the measurement side of a report, not the control's view)."""

    def __init__(self, physics: SitePhysics) -> None:
        """Read the fleet's fixed data (capacities, SoC limits) from ``physics``."""
        self.ph = physics
        ph = physics
        self.bat_inv = ph.inverter_is_battery
        self.capacity = ph.battery_capacity_wh
        self.cap_total = float(self.capacity.sum())
        self.soc_lo = float(np.dot(ph.battery_soc_min_pct, self.capacity) / self.cap_total)
        self.soc_hi = float(np.dot(ph.battery_soc_max_pct, self.capacity) / self.cap_total)

    def soc_pct(self) -> float:
        """Capacity-weighted fleet SoC (%)."""
        return float(np.dot(self.ph.battery_soc_pct, self.capacity) / self.cap_total)

    def energy_above_min_wh(self) -> float:
        """The fleet's stored energy above its batteries' lower SoC limits (Wh)."""
        ph = self.ph
        room = np.clip(ph.battery_soc_pct - ph.battery_soc_min_pct, 0.0, None)
        return float(np.dot(room, self.capacity) / 100.0)

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


def advance(physics: SitePhysics, due_s: Sequence[float], dt_s: float, fine_s: float,
            coarse_s: float, record: Callable[[], None] | None = None,
            horizon: Callable[[], float] | None = None,
            settled: Callable[[], None] | None = None) -> None:
    """Step the physics by ``dt_s``, finely up to the last time a sent setpoint takes effect.

    Up to the last of ``due_s`` (when the setpoints just sent take effect, after
    their inverter's response delay) the physics takes sub-steps of ``fine_s``
    and ``record`` is called at each due time (and one fine step later, when ``horizon``
    is given: the setpoints have taken effect, so the trajectory's vertices do not
    interpolate a sub-second transient over the coarse rest); then ``coarse_s`` up to
    the end, where ``record`` is called once more. ``horizon()``, evaluated one fine
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
        if record is not None:  # a vertex once settled: the coarse rest is then flat
            record()
        if settled is not None:
            settled()
        end = min(end, ph.now_s + max(horizon(), fine_s))
    ph.max_step_s = coarse_s
    if end > ph.now_s + 1e-12:
        ph.step(end - ph.now_s)
    if record is not None:
        record()
