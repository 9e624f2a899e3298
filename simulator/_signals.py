"""Time signals of the simulated environment: seeded noise and cyclic profiles."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["OrnsteinUhlenbeck", "Trapezoids", "profile_at"]


class OrnsteinUhlenbeck:
    """Exact-discretisation Ornstein-Uhlenbeck noise with std ``sigma``."""

    def __init__(self, rng: np.random.Generator, sigma: float, tau_s: float) -> None:
        self.rng = rng
        self.sigma = sigma
        self.tau_s = tau_s
        self.x = rng.normal(0.0, sigma) if sigma > 0 else 0.0

    def step(self, dt_s: float) -> float:
        if self.sigma <= 0:
            return 0.0
        a = math.exp(-dt_s / self.tau_s)
        self.x = self.x * a + self.sigma * math.sqrt(1.0 - a * a) * float(self.rng.normal())
        return self.x


def profile_at(values: npt.NDArray[np.float64], step_s: float, t_s: float) -> float:
    """Linear interpolation in a cyclic profile."""
    n = len(values)
    pos = (t_s / step_s) % n
    i0 = int(pos)
    frac = pos - i0
    return float(values[i0] * (1.0 - frac) + values[(i0 + 1) % n] * frac)


class Trapezoids:
    """A sum of scripted trapezoid deviations (the frequency and voltage events).

    Event ``k`` rises linearly over ``ramp_s[k]`` from ``start_s[k]`` (ramp 0 =
    a step), holds ``delta[k]`` for ``hold_s[k]`` and falls back over ``ramp_s[k]``.
    """

    def __init__(
        self,
        start_s: list[float],
        ramp_s: list[float],
        hold_s: list[float],
        delta: list[float],
    ) -> None:
        self._start = np.array(start_s, dtype=np.float64)
        self._ramp = np.array(ramp_s, dtype=np.float64)
        self._hold = np.array(hold_s, dtype=np.float64)
        self._delta = np.array(delta, dtype=np.float64)
        self._rs = np.where(self._ramp > 0, self._ramp, 1e-9)

    def at(self, t_s: float) -> float:
        """The summed deviation at simulated time ``t_s`` (0.0 without events)."""
        if not self._start.size:
            return 0.0
        rise = np.clip((t_s - self._start) / self._rs, 0.0, 1.0)
        end = self._start + 2 * self._ramp + self._hold
        fall = np.clip((end - t_s) / self._rs, 0.0, 1.0)
        return float(np.dot(np.minimum(rise, fall), self._delta))
