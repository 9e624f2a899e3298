"""Frequency response: droop on the grid frequency, with SoC management in the deadband.

The law
-------
::

    Δf = grid_frequency_hz − f0_hz
    P  = −reserved_power_w × droop(Δf, curve)           (W, + = charging)

:func:`droop` returns the *activation*: +1 = full discharge (under-frequency),
−1 = full charge (over-frequency), 0 inside the deadband. It is odd in Δf and
piecewise linear in ``|Δf|`` through the curve's points; beyond the last point it
stays at 1. The deadband edge is inclusive (with a 1 nHz tolerance for float
rounding: ``49.99 − 50`` counts as −10 mHz). Two curves are built in (both configurable):

* ``DroopCurve.linear`` (FCR): 0 at the 10 mHz deadband edge, rising linearly
  to 1 at 200 mHz.
* ``DroopCurve.knee`` (Dynamic-Containment style): 0 at 15 mHz, 0.05 at
  200 mHz (the knee), 1 at 500 mHz.

SoC management
--------------
To hold full power for ``hold_duration_s`` in either direction, the fleet needs
``E = reserved_power_w × hold_duration_s / 3600`` Wh of energy above its lower
SoC limit and of room below its upper one, i.e. the SoC band (:func:`soc_band_pct`)::

    e_pct = 100 × E / capacity_wh
    band  = [soc_lower_pct + e_pct, soc_upper_pct − e_pct]

(collapsed to the midpoint of the limits if it is empty). Only while
``|Δf| ≤ deadband`` (activation 0), the strategy nudges the SoC back into the
band with a constant ``soc_management_power_w``: charge below the band,
discharge above it, nothing inside. Outside the deadband it delivers exactly
the droop power.

The wish
--------
Frequency response needs exactly its power: ``preferred_w = lower_w = upper_w =
P`` (plus the nudge), at a priority above peak shaving by default, so the power
manager serves it first and lower priorities only get the room left. Unknown
frequency (nan) gives 0 W.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

from actors.power_manager import Wish
from controller.runtime.strategies._inputs import ConfiguredStrategy, StrategyInputs

__all__ = [
    "DroopCurve",
    "FrequencyResponse",
    "FrequencyResponseConfig",
    "droop",
    "frequency_response_wish",
    "soc_band_pct",
]

CurveName = Literal["linear", "knee"]

_EPS_HZ = 1e-9
"""Tolerance of the deadband edge: ``49.99 − 50`` is ``−0.010000000000005`` in floats."""


@dataclass(frozen=True, slots=True)
class DroopCurve:
    """A symmetric droop curve: activation fraction as a function of ``|Δf|``.

    ``df_hz[0]`` is the deadband edge (activation ``fraction[0] == 0``), the
    points are strictly increasing in ``|Δf|``, non-decreasing in activation,
    and the last activation is 1 (full activation).
    """

    df_hz: tuple[float, ...]
    """Frequency deviations ``|Δf|`` of the points, Hz, strictly increasing, first > 0."""
    fraction: tuple[float, ...]
    """Activation at each point, 0 at the first, 1 at the last, non-decreasing."""

    def __post_init__(self) -> None:
        """Validate the points.

        Raises:
            ValueError: naming the bad field and value.
        """
        if len(self.df_hz) != len(self.fraction) or len(self.df_hz) < 2:
            raise ValueError(
                f"DroopCurve: df_hz = {self.df_hz!r} and fraction = {self.fraction!r} "
                "must have the same length, at least 2"
            )
        for name, values in (("df_hz", self.df_hz), ("fraction", self.fraction)):
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"DroopCurve: {name} = {values!r}: must be finite")
        xs = self.df_hz
        if xs[0] < 0 or any(b <= a for a, b in pairwise(xs)):
            raise ValueError(
                f"DroopCurve: df_hz = {self.df_hz!r}: must be >= 0 and strictly increasing"
            )
        if (
            self.fraction[0] != 0.0
            or self.fraction[-1] != 1.0
            or any(b < a for a, b in pairwise(self.fraction))
        ):
            raise ValueError(
                f"DroopCurve: fraction = {self.fraction!r}: must start at 0, end at 1 "
                "and never decrease"
            )

    @property
    def deadband_hz(self) -> float:
        """Half-width of the deadband, Hz: no activation for ``|Δf| ≤ deadband_hz``."""
        return self.df_hz[0]

    @property
    def full_activation_hz(self) -> float:
        """``|Δf|`` from which the activation is 1, Hz."""
        return self.df_hz[-1]

    @classmethod
    def linear(cls, deadband_hz: float = 0.010, full_activation_hz: float = 0.200) -> DroopCurve:
        """Linear droop with deadband (FCR defaults: 10 mHz, full at 200 mHz).

        Args:
            deadband_hz: Deadband half-width, Hz.
            full_activation_hz: ``|Δf|`` of full activation, Hz.

        Returns:
            The curve.
        """
        return cls((deadband_hz, full_activation_hz), (0.0, 1.0))

    @classmethod
    def knee(
        cls,
        deadband_hz: float = 0.015,
        knee_hz: float = 0.200,
        knee_fraction: float = 0.05,
        full_activation_hz: float = 0.500,
    ) -> DroopCurve:
        """Knee droop (Dynamic-Containment defaults: 15 mHz, 5 % at 200 mHz, 100 % at 500 mHz).

        Args:
            deadband_hz: Deadband half-width, Hz.
            knee_hz: ``|Δf|`` of the knee, Hz.
            knee_fraction: Activation at the knee, 0-1.
            full_activation_hz: ``|Δf|`` of full activation, Hz.

        Returns:
            The curve.
        """
        return cls((deadband_hz, knee_hz, full_activation_hz), (0.0, knee_fraction, 1.0))


def _droop_scalar(df_hz: float, curve: DroopCurve) -> float:
    if math.isnan(df_hz):
        return math.nan
    x = abs(df_hz)
    xs, ys = curve.df_hz, curve.fraction
    if x <= xs[0] + _EPS_HZ:
        return 0.0
    if x >= xs[-1]:
        frac = ys[-1]
    else:
        i = bisect.bisect_right(xs, x)  # xs[i-1] < x < xs[i]... or x == xs[i-1]
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        frac = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return frac if df_hz < 0 else -frac


@overload
def droop(df_hz: float, curve: DroopCurve) -> float: ...


@overload
def droop(df_hz: npt.NDArray[np.floating], curve: DroopCurve) -> npt.NDArray[np.float64]: ...


def droop(
    df_hz: float | npt.NDArray[np.floating], curve: DroopCurve
) -> float | npt.NDArray[np.float64]:
    """Activation of the droop curve at frequency deviation ``df_hz = f − f0``.

    Generator convention: +1 = full discharge (under-frequency, ``df_hz < 0``),
    −1 = full charge (over-frequency), 0 inside the deadband; nan stays nan.
    The battery power is ``−reserved_power_w × droop(df_hz, curve)``.

    Args:
        df_hz: Frequency deviation(s) in Hz; a float or a numpy array (vectorised).
        curve: The droop curve.

    Returns:
        The activation, a float for a float input, an array for an array.
    """
    if isinstance(df_hz, np.ndarray):
        a = df_hz.astype(np.float64, copy=False)
        frac = np.interp(np.abs(a), curve.df_hz, curve.fraction, left=0.0, right=1.0)
        frac = np.where(np.abs(a) <= curve.deadband_hz + _EPS_HZ, 0.0, frac)
        out: npt.NDArray[np.float64] = np.where(a < 0, frac, -frac) + 0.0
        out[np.isnan(a)] = np.nan
        return out
    return _droop_scalar(float(df_hz), curve)


def soc_band_pct(
    capacity_wh: float,
    reserved_power_w: float,
    hold_duration_s: float,
    soc_lower_pct: float = 0.0,
    soc_upper_pct: float = 100.0,
) -> tuple[float, float]:
    """SoC band in which full power can be held for ``hold_duration_s`` either way.

    ``e = 100 × reserved_power_w × hold_duration_s / 3600 / capacity_wh`` (%);
    band = ``[soc_lower_pct + e, soc_upper_pct − e]``, collapsed to the midpoint
    of the limits when empty. Efficiency losses are not included (add margin to
    ``hold_duration_s``).

    Args:
        capacity_wh: Fleet capacity, Wh.
        reserved_power_w: Reserved power, W.
        hold_duration_s: How long full power must be held, s.
        soc_lower_pct: Fleet lower SoC limit, %.
        soc_upper_pct: Fleet upper SoC limit, %.

    Returns:
        ``(low_pct, high_pct)``; ``(nan, nan)`` if the capacity is unknown or ≤ 0.
    """
    if not (math.isfinite(capacity_wh) and capacity_wh > 0.0):
        return (math.nan, math.nan)
    e_pct = 100.0 * reserved_power_w * hold_duration_s / 3600.0 / capacity_wh
    low, high = soc_lower_pct + e_pct, soc_upper_pct - e_pct
    if low > high:
        mid = 0.5 * (soc_lower_pct + soc_upper_pct)
        return (mid, mid)
    return (low, high)


@dataclass(frozen=True, slots=True)
class FrequencyResponseConfig:
    """Settings of :class:`FrequencyResponse` (W, Hz, s, %)."""

    enabled: bool = True
    """Run the strategy."""
    priority: int = 20
    """Power-manager priority (above peak shaving's 10 by default)."""
    curve: DroopCurve = field(default_factory=DroopCurve.linear)
    """Droop curve (``DroopCurve.linear()`` FCR or ``DroopCurve.knee()`` DC)."""
    f0_hz: float = 50.0
    """Nominal frequency, Hz."""
    reserved_power_w: float = 100_000.0
    """Power at full activation, W (≥ 0). The default suits the bundled default site
    (350 kW of inverters, 730 kWh: 100 kW for 15 min is 25 kWh, 3.4 % of capacity)."""
    hold_duration_s: float = 900.0
    """Full power must be sustainable this long in either direction, s (≥ 0)."""
    soc_management_power_w: float = 10_000.0
    """Bounded power of the SoC nudge inside the deadband, W (≥ 0; 0 disables it)."""
    interval_s: float = 0.0
    """Cadence, s: 0 = react to every grid-meter sample."""
    name: str = "frequency_response"
    """Source name of the wishes."""


def frequency_response_wish(config: FrequencyResponseConfig, inputs: StrategyInputs) -> Wish:
    """The frequency-response law (module docstring) as a pure function.

    Args:
        config: Curve, reserve, hold duration, SoC nudge power.
        inputs: The site as measured now (frequency, SoC, capacity, SoC limits).

    Returns:
        A wish that needs exactly its power: preferred = lower = upper.
    """
    df = inputs.grid_frequency_hz - config.f0_hz
    if not math.isfinite(df):
        return Wish(config.name, config.priority, 0.0, 0.0, 0.0)
    power = -config.reserved_power_w * _droop_scalar(df, config.curve) + 0.0
    if abs(df) <= config.curve.deadband_hz + _EPS_HZ and config.soc_management_power_w > 0.0:
        low, high = soc_band_pct(
            inputs.capacity_wh,
            config.reserved_power_w,
            config.hold_duration_s,
            inputs.soc_lower_pct,
            inputs.soc_upper_pct,
        )
        if inputs.soc_pct < low:
            power = config.soc_management_power_w
        elif inputs.soc_pct > high:
            power = -config.soc_management_power_w
    return Wish(config.name, config.priority, power, power, power)


class FrequencyResponse(ConfiguredStrategy[FrequencyResponseConfig]):
    """Frequency-response strategy: ``step(inputs, now) -> Wish`` (module docstring)."""

    config_type = FrequencyResponseConfig
    law = staticmethod(frequency_response_wish)

    def required_power_w(self, grid_frequency_hz: float) -> float:
        """Droop power at this frequency, without the SoC nudge (W, + = charging; nan → 0).

        Args:
            grid_frequency_hz: Measured grid frequency, Hz.

        Returns:
            ``−reserved_power_w × droop(f − f0)``.
        """
        df = grid_frequency_hz - self.config.f0_hz
        if not math.isfinite(df):
            return 0.0
        return -self.config.reserved_power_w * _droop_scalar(df, self.config.curve) + 0.0
