"""Reactive power: the fleet's Q target from fixed Q, cos φ, cos φ(P) or Q(U).

What the target is
------------------
The target is the battery fleet's **total** reactive power (VAr), not the grid
meter's: gridloop controls the inverters' Q, and the site's loads draw their own
Q that no setpoint changes, so a site-level Q set point would only be met while
the fleet's capability happens to cover the loads' Q. Every mode gives the
fleet's Q; the allocator (:func:`distribution.allocate_reactive`) splits it.

Signs (passive convention, as everywhere in gridloop): **+ = the fleet absorbs
Q** (under-excited, inductive: it lowers the voltage); **− = it delivers Q**
(over-excited, capacitive: it raises the voltage).

Modes
-----
* ``fixed_q``: ``Q = q_var``.
* ``cos_phi``: ``Q = s · |P| · tan(acos(cos_phi))`` with ``P`` the fleet's active
  target of the same cycle and ``s = +1`` for ``excitation = "under"``, ``−1`` for
  ``"over"``.
* ``cos_phi_p``: as ``cos_phi`` with ``cos φ`` interpolated linearly in the
  characteristic ``cos_phi_p_points`` (``(|P| in % of the fleet's apparent rating,
  cos φ)``, constant beyond its ends; VDE-AR-N 4105/4110 style: 1 up to half
  load, 0.95 under-excited at full load).
* ``q_u``: the characteristic of the grid meter's voltage ``U`` (deviation
  ``d = 100 · (U / nominal_voltage_v − 1)`` in %)::

      Q*(U) = clip(k · (d − db), 0, Qlim)     for d > db    (absorb: lower U)
            = clip(k · (d + db), −Qlim, 0)    for d < −db   (deliver: raise U)
            = 0                                otherwise
      k = slope_pct_per_pct · Q_ref / 100,     Qlim = q_limit_pct · Q_ref / 100

  with ``Q_ref = q_ref_var`` or, when 0, the fleet's apparent rating (the sum of
  its inverters' S; their reactive capability when no rating is published), and
  then the first-order filter grid codes prescribe (VDE-AR-N 4110: ``3 τ`` of a
  few seconds to a minute)::

      Q(t) = Q(t₀) + (Q*(U) − Q(t₀)) · (1 − exp(−(t − t₀) / τ))

  which settles to within 5 % of a step after ``3 τ`` (``exp(−3) < 0.05``). An
  unknown voltage holds the filter where it is.

The step is pure and clock-free: ``now`` is the caller's time in seconds (the
site's time, so a time-scaled simulator runs the filter on its own clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Q_MODES",
    "ReactiveInputs",
    "ReactivePower",
    "ReactivePowerConfig",
    "cos_phi_q_var",
    "q_u_characteristic_var",
]

Q_MODES: tuple[str, ...] = ("fixed_q", "cos_phi", "cos_phi_p", "q_u")
"""The values of `ReactivePowerConfig.mode`."""


@dataclass(frozen=True, slots=True)
class ReactivePowerConfig:
    """Settings of the reactive-power strategy (``[reactive_power]``; units in the names)."""

    enabled: bool = False
    """Whether reactive power is controlled at all (off: no reactive RPC is sent)."""
    mode: str = "q_u"
    """``fixed_q``, ``cos_phi``, ``cos_phi_p`` or ``q_u`` (see the module)."""
    priority: str = "p_first"
    """``p_first``: Q gets what the apparent-power circle leaves after P; ``q_first``:
    P is limited to sqrt(S² − Q²)."""
    q_var: float = 0.0
    """``fixed_q``: the fleet's reactive power (VAr, + = absorbing / under-excited)."""
    cos_phi: float = 1.0
    """``cos_phi``: the power factor, in (0, 1]."""
    excitation: str = "under"
    """``cos_phi`` / ``cos_phi_p``: ``under`` (absorb Q, +) or ``over`` (deliver Q, −)."""
    cos_phi_p_points: tuple[tuple[float, float], ...] = ((50.0, 1.0), (100.0, 0.95))
    """``cos_phi_p``: ``(|P| in % of the fleet's apparent rating, cos φ)``, P ascending."""
    nominal_voltage_v: float = 230.0
    """``q_u`` and the voltage band: the nominal phase voltage (V)."""
    deadband_pct: float = 1.0
    """``q_u``: no Q within ± this deviation from nominal (% of nominal)."""
    slope_pct_per_pct: float = 20.0
    """``q_u``: Q per % of deviation beyond the deadband (% of Q_ref per % of U)."""
    q_limit_pct: float = 100.0
    """``q_u``: the largest |Q| (% of Q_ref)."""
    q_ref_var: float = 0.0
    """``q_u``: Q_ref (VAr); 0 = the fleet's apparent rating."""
    time_constant_s: float = 10.0 / 3.0
    """``q_u``: the filter's time constant τ (s of site time; 3 τ = 10 s by default)."""
    voltage_band_pct: float = 5.0
    """The voltage band the run's ``voltage_in_band_pct`` counts (± % of nominal)."""


@dataclass(frozen=True, slots=True)
class ReactiveInputs:
    """What the reactive strategy reads each cycle (NaN = unknown)."""

    active_power_w: float
    """The fleet's active target of this cycle (W, + = charging)."""
    voltage_v: float
    """The grid meter's voltage (V)."""
    apparent_rating_va: float = math.nan
    """Sum of the fleet's apparent ratings (VA)."""
    reactive_upper_var: float = math.nan
    """The fleet's reactive capability now, absorbing side (VAr, ≥ 0)."""


def cos_phi_q_var(active_power_w: float, cos_phi: float, excitation: str) -> float:
    """Q for a power factor: ``± |P| · tan(acos(cos φ))`` (+ under-excited, − over-excited).

    Args:
        active_power_w: The active power (W; its sign does not matter).
        cos_phi: The power factor, in (0, 1].
        excitation: ``under`` or ``over``.

    Returns:
        The reactive power (VAr); 0 when ``active_power_w`` is not finite.
    """
    if not math.isfinite(active_power_w):
        return 0.0
    q = abs(active_power_w) * math.tan(math.acos(min(1.0, cos_phi)))
    return q if excitation == "under" else -q


def q_u_characteristic_var(
    voltage_v: float, config: ReactivePowerConfig, q_ref_var: float
) -> float:
    """The Q(U) characteristic without the filter (see the module).

    Args:
        voltage_v: The grid meter's voltage (V).
        config: The settings.
        q_ref_var: Q_ref (VAr, ≥ 0).

    Returns:
        The characteristic's Q (VAr, + = absorbing); NaN when the voltage is unknown.
    """
    if not math.isfinite(voltage_v) or not math.isfinite(q_ref_var):
        return math.nan
    d = 100.0 * (voltage_v / config.nominal_voltage_v - 1.0)
    db = config.deadband_pct
    beyond = d - db if d > db else d + db if d < -db else 0.0
    k = config.slope_pct_per_pct * q_ref_var / 100.0
    lim = config.q_limit_pct * q_ref_var / 100.0
    return min(max(k * beyond, -lim), lim)


class ReactivePower:
    """The reactive strategy: a config, the filter's state, and a pure step (see the module)."""

    def __init__(self, config: ReactivePowerConfig) -> None:
        """Hold the settings; the filter starts at 0 VAr.

        Args:
            config: The settings.
        """
        self.config: ReactivePowerConfig = config
        """The settings (immutable)."""
        self.q_var: float = 0.0
        """The last target (VAr; the filter's state in ``q_u``)."""
        self.characteristic_var: float = 0.0
        """``q_u``: the characteristic's value at the last step (VAr)."""
        self._last_s: float = math.nan

    def q_ref_var(self, inputs: ReactiveInputs) -> float:
        """Q_ref: the configured one, else the fleet's apparent rating (else its capability)."""
        if self.config.q_ref_var > 0:
            return self.config.q_ref_var
        s = inputs.apparent_rating_va
        return s if math.isfinite(s) and s > 0 else inputs.reactive_upper_var

    def step(self, inputs: ReactiveInputs, now: float) -> float:
        """This cycle's fleet reactive target.

        Args:
            inputs: The fleet's active target, the grid meter's voltage, the fleet's rating.
            now: The time in seconds (the site's; only differences matter).

        Returns:
            The fleet's reactive target (VAr, + = absorbing).
        """
        c = self.config
        mode = c.mode
        if mode == "fixed_q":
            q = c.q_var
        elif mode == "cos_phi":
            q = cos_phi_q_var(inputs.active_power_w, c.cos_phi, c.excitation)
        elif mode == "cos_phi_p":
            q = cos_phi_q_var(inputs.active_power_w, self._cos_phi_of_p(inputs), c.excitation)
        else:
            q = self._q_u(inputs, now)
        self.q_var = q
        return q

    def _cos_phi_of_p(self, inputs: ReactiveInputs) -> float:
        s = inputs.apparent_rating_va
        if not (math.isfinite(s) and s > 0 and math.isfinite(inputs.active_power_w)):
            return 1.0
        pts = self.config.cos_phi_p_points
        p_pct = 100.0 * abs(inputs.active_power_w) / s
        return float(np.interp(p_pct, [p for p, _ in pts], [cp for _, cp in pts]))

    def _q_u(self, inputs: ReactiveInputs, now: float) -> float:
        target = q_u_characteristic_var(inputs.voltage_v, self.config, self.q_ref_var(inputs))
        last, self._last_s = self._last_s, now
        if math.isnan(target):
            return self.q_var  # unknown voltage: hold
        self.characteristic_var = target
        dt = now - last if math.isfinite(last) else 0.0
        if dt <= 0.0:
            return self.q_var
        alpha = 1.0 - math.exp(-dt / self.config.time_constant_s)
        return self.q_var + (target - self.q_var) * alpha
