"""The grid behind the connection point: its impedance and the voltage it imposes.

Offers `VoltageEvent` (a scripted voltage step or ramp), `GridModelConfig`
(the optional ``[grid]`` table), `read_grid` (its reader), `BackgroundVoltage`
(the seeded background voltage of a run) and `voltage_drop_v` (the linearised
drop over the grid impedance).

Model (balanced three-phase, per phase, phase-to-neutral)::

    U = U_background(t) - (R * P / 3 + X * Q / 3) / U_nom

with ``P``, ``Q`` the site's active and reactive power at the connection point
in the passive sign convention (positive = importing active power / absorbing
reactive power, i.e. inductive), ``R + jX`` the grid's impedance per phase and
``U_nom`` the nominal phase voltage. Importing P or absorbing Q LOWERS the
voltage; exporting P (PV) or injecting Q (capacitive, Q < 0) RAISES it. It is
the usual first-order approximation ``dU ~ (R P + X Q) / U`` of the drop over a
short line; for ``X > R`` (most feeders) reactive power moves the voltage more
per unit than active power does.

``U_background`` = nominal x (1 + (offset + daily sine + seeded slow random
walk + scripted events) / 100): all four in percent of nominal. The random walk
is Ornstein-Uhlenbeck noise with standard deviation ``noise_pct`` and time
constant ``noise_tau_s`` (so it wanders about ``noise_pct`` over a few
``noise_tau_s``); the sine has amplitude ``daily_pct`` and a 24 h period, peaking at
simulated second ``daily_peak_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._profiles import ScriptedEvent, read_trapezoid
from ._signals import OrnsteinUhlenbeck, Trapezoids
from ._toml_kit import Table

__all__ = [
    "BackgroundVoltage",
    "GridModelConfig",
    "VoltageEvent",
    "read_grid",
    "voltage_drop_v",
]

_DAY_S = 86_400.0


@dataclass(frozen=True)
class VoltageEvent(ScriptedEvent):
    """A scripted background-voltage deviation of ``delta_pct`` % of nominal
    (trapezoid: ``ramp_s`` up, ``duration_s`` held, ``ramp_s`` down; ramp 0 = a step)."""

    delta_pct: float
    ramp_s: float = 0.0


@dataclass(frozen=True)
class GridModelConfig:
    """The ``[grid]`` table: impedance at the connection point and background voltage.

    The default (no table) is an infinitely stiff grid at a constant 230 V:
    zero impedance, no noise, no events.
    """

    nominal_voltage_v: float = 230.0
    """Nominal phase-to-neutral voltage (V)."""
    impedance_r_ohm: float = 0.0
    """Grid resistance per phase seen from the connection point (ohm)."""
    impedance_x_ohm: float = 0.0
    """Grid reactance per phase seen from the connection point (ohm)."""
    offset_pct: float = 0.0
    """Constant offset of the background voltage (% of nominal)."""
    noise_pct: float = 0.0
    """Standard deviation of the background's seeded slow random walk (% of nominal)."""
    noise_tau_s: float = 600.0
    """Time constant of that random walk (simulated s)."""
    daily_pct: float = 0.0
    """Amplitude of the background's daily sine (% of nominal)."""
    daily_peak_s: float = 46_800.0
    """Simulated second (mod 24 h) at which the daily sine peaks."""
    seed: int = 0
    """Seed of the random walk (mixed with the physics seed; separate from other noise)."""
    events: tuple[VoltageEvent, ...] = ()
    """Scripted voltage steps and ramps (``[[grid.event]]``)."""


def read_grid(t: Table) -> GridModelConfig:
    """The ``[grid]`` table with its ``[grid.background_voltage]`` and ``[[grid.event]]``."""
    events = []
    for et in t.tables("event"):
        events.append(VoltageEvent(*read_trapezoid(et, "delta_pct", -50.0, 50.0)))
    d = GridModelConfig()
    bg = t.table("background_voltage")
    cfg = GridModelConfig(
        nominal_voltage_v=t.float_("nominal_voltage_v", d.nominal_voltage_v, positive=True),
        impedance_r_ohm=t.float_("impedance_r_ohm", 0.0, minimum=0.0, maximum=100.0),
        impedance_x_ohm=t.float_("impedance_x_ohm", 0.0, minimum=0.0, maximum=100.0),
        offset_pct=bg.float_("offset_pct", 0.0, minimum=-50.0, maximum=50.0),
        noise_pct=bg.float_("noise_pct", 0.0, minimum=0.0, maximum=20.0),
        noise_tau_s=bg.float_("noise_tau_s", d.noise_tau_s, positive=True),
        daily_pct=bg.float_("daily_pct", 0.0, minimum=0.0, maximum=20.0),
        daily_peak_s=bg.float_("daily_peak_s", d.daily_peak_s, minimum=0.0, maximum=_DAY_S),
        seed=bg.int_("seed", 0, minimum=0),
        events=tuple(events),
    )
    bg.check_unknown()
    t.check_unknown()
    return cfg


def voltage_drop_v(cfg: GridModelConfig, power_w: float, reactive_var: float) -> float:
    """Phase voltage drop (V) over the grid impedance for the site's total P and Q.

    Positive = the connection point sits below the background voltage. ``power_w``
    and ``reactive_var`` are three-phase totals, passive sign (import / absorb > 0).
    """
    per_phase = cfg.impedance_r_ohm * power_w + cfg.impedance_x_ohm * reactive_var
    return per_phase / 3.0 / cfg.nominal_voltage_v


class BackgroundVoltage:
    """The background (no-load) phase voltage of a run, advanced with simulated time."""

    def __init__(self, cfg: GridModelConfig, seed: int) -> None:
        """Voltage of ``cfg``; ``seed`` (the physics seed) is mixed with ``cfg.seed``."""
        self._cfg = cfg
        rng = np.random.default_rng([seed, cfg.seed, 21])
        self._noise = OrnsteinUhlenbeck(rng, cfg.noise_pct, cfg.noise_tau_s)
        ev = cfg.events
        self._events = Trapezoids(
            [e.start_s for e in ev],
            [e.ramp_s for e in ev],
            [e.duration_s for e in ev],
            [e.delta_pct for e in ev],
        )

    def at(self, t_s: float, dt_s: float) -> float:
        """The background voltage (V) at ``t_s``, the random walk advanced by ``dt_s``."""
        cfg = self._cfg
        pct = cfg.offset_pct + self._events.at(t_s)
        pct += self._noise.step(dt_s) if dt_s > 0 else self._noise.x
        if cfg.daily_pct:
            pct += cfg.daily_pct * math.cos(2.0 * math.pi * (t_s - cfg.daily_peak_s) / _DAY_S)
        return cfg.nominal_voltage_v * (1.0 + pct / 100.0)
