"""Time signals of the simulated environment: seeded noise and cyclic profiles."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["OrnsteinUhlenbeck", "profile_at"]


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
