"""A seeded synthetic grid frequency with the statistics measured in Continental Europe.

:func:`synthetic_frequency` returns a :class:`~simulator.frequency_series.FrequencySeries`
(deterministic for a seed) whose standard deviation, autocorrelation at 1 s to
1 h, abs(df/dt) and mean abs deviation by minute of the hour follow the
measured figures of 28 days of German mains frequency at 1 s (2024; see
``MEASURED`` and the README section "Grid frequency"). Simulated time 0 is a
full hour.

Model (deviation from nominal, mHz)::

    x(t) = LP[ OU_4s(t) + OU_133s(t) + OU_76000s(t) ] + A(t) * g(minute of hour)

* ``OU_tau``: Ornstein–Uhlenbeck processes (time constants 4 s, 133 s and
  21 h; shares 8.5 / 72.1 / 19.4 % of the background variance). One OU decays
  exponentially; the measured autocorrelation falls fast to 60 s, slowly to
  900 s, and does not reach zero within hours.
* ``LP``: a first-order low-pass (3.2 s): frequency is smooth over a few
  seconds (the measured autocorrelation at 10 s is lower than an OU with the
  1-s value allows; abs(df/dt) stays small).
* ``g``: the hour-boundary pattern. The measured mean abs deviation by minute
  of the hour (27–31 mHz just after the full hour, 14–16 mid-hour, small rises
  around the quarter hours) gives each minute's variance for a Gaussian
  (``(mean_abs * sqrt(pi/2))**2``); the background supplies the smallest of
  them and ``g`` the rest, positive in minutes 0–9 and negative after (a swing
  at the boundary and the opposite one before it). ``A(t)`` is a unit OU with a
  2.8 h time constant: the swing's size and sign change over the day, as the
  direction of the market's schedule changes does. It raises the
  autocorrelation at 3600 s back to the measured 0.37.
* The variances are scaled so the total standard deviation is 21.6 mHz.

Generator (28 days, seed 0) beside the measurement, as printed by
``python benchmarks/frequency_stats.py`` (deterministic for the seed: re-run it
after changing the model, and update this list and the README table)::

    * mean deviation (mHz):
      generator -1.0
      measured  0.5
    * standard deviation (mHz):
      generator 21.3
      measured  21.6
    * percentiles 0.1 / 1 / 5 / 50 / 95 / 99 / 99.9 % (mHz):
      generator -77 / -53 / -36 / -1 / 33 / 50 / 74
      measured  -78 / -52 / -34 / 1 / 34 / 53 / 76
    * largest abs deviation (mHz):
      generator 119
      measured  133
    * time with abs deviation > 10 / 20 / 50 / 100 / 200 mHz (%):
      generator 62.41 / 32.95 / 2.27 / 0.02 / 0.00
      measured  64.00 / 35.00 / 2.42 / 0.02 / 0.00
    * autocorrelation at 1 / 10 / 60 / 300 / 900 / 3600 s:
      generator 0.997 / 0.929 / 0.739 / 0.266 / 0.200 / 0.335
      measured  0.997 / 0.930 / 0.758 / 0.260 / 0.203 / 0.368
    * abs(df/dt) mean (mHz/s):
      generator 1.27
      measured  1.13
    * abs(df/dt) 99th percentile (mHz/s):
      generator 4.1
      measured  4.0
    * abs(df/dt) max (mHz/s):
      generator 9
      measured  34
    * mean abs deviation, minutes 0-4 / 28-32 / 55-59 (mHz):
      generator 26 / 16 / 17
      measured  28 / 17 / 18

The parameters were fitted to the measured autocorrelation by least squares on
the model's analytic autocorrelation, then the low-pass and the fast OU were
tuned so the generated abs(df/dt) comes close to the measured one.
``benchmarks/frequency_stats.py`` measures the generated series against
``MEASURED`` (the README table is its output).

Every process is generated exactly and vectorised: an AR(1) recursion
``y[k] = a*y[k-1] + e[k]`` is a prefix scan, computed in ``log2(n)`` numpy
passes (:func:`_ar1`).
"""

from __future__ import annotations

import math

import numpy as np

from .frequency_series import FloatArray, FrequencySeries

__all__ = ["MAX_DURATION_S", "MEASURED", "MINUTE_MEAN_ABS_MHZ", "synthetic_frequency"]

MAX_DURATION_S = 31 * 86_400.0
"""Longest series generated (s): a month at 1 s is ~20 MB per array; longer runs repeat it."""

MINUTE_MEAN_ABS_MHZ: tuple[float, ...] = (
    27, 31, 29, 27, 24, 21, 19, 17, 16, 15, 15, 15, 15, 16, 15, 15, 15, 14, 14, 14,
    14, 15, 15, 16, 17, 18, 17, 18, 18, 17, 17, 16, 15, 15, 15, 15, 15, 16, 17, 18,
    18, 18, 18, 18, 17, 14, 14, 14, 14, 15, 15, 16, 17, 18, 18, 18, 17, 17, 18, 19,
)
"""Measured mean abs deviation (mHz) by minute of the hour, minute 0 first
(Continental Europe, 28 days of 2024 at 1 s; ``frequency_statistics.md``)."""

MEASURED: dict[str, object] = {
    "mean_mhz": 0.5,
    "std_mhz": 21.6,
    "percentiles_mhz": [-78.0, -52.0, -34.0, 1.0, 34.0, 53.0, 76.0],
    "max_abs_mhz": 133.0,
    "share_above_pct": [64.0, 35.0, 2.42, 0.016, 0.0],
    "acf": [0.997, 0.930, 0.758, 0.260, 0.203, 0.368],
    "dfdt_mean_mhz_s": 1.13,
    "dfdt_p99_mhz_s": 4.0,
    "dfdt_max_mhz_s": 34.0,
    "minute_mean_abs_mhz": list(MINUTE_MEAN_ABS_MHZ),
}
"""The measured statistics, keyed as :func:`~simulator.frequency_series.frequency_statistics`
returns them (source: netzfrequenzmessung.de via github.com/borisnezlobin/enf,
17 Aug – 19 Sep 2024, summarised in ``frequency_statistics.md``)."""

_STD_MHZ = 21.6
_SMOOTH_TAU_S = 3.2
_OU_TAU_S = (4.0, 133.0, 76_000.0)
_OU_SHARE = (0.085, 0.721, 0.194)
_AMPLITUDE_TAU_S = 10_100.0
_SWING_MINUTES = 10


def _hour_pattern() -> tuple[float, FloatArray]:
    """(background variance, ``g`` per second of the hour), both in mHz, scaled so the
    total variance is ``_STD_MHZ**2``."""
    var_by_minute = (np.asarray(MINUTE_MEAN_ABS_MHZ) * math.sqrt(math.pi / 2.0)) ** 2
    background = float(var_by_minute.min())
    sign = np.where(np.arange(60) < _SWING_MINUTES, 1.0, -1.0)
    g_min = sign * np.sqrt(var_by_minute - background)
    g = np.interp(np.arange(3600.0), np.arange(60) * 60.0 + 30.0, g_min, period=3600.0)
    scale = _STD_MHZ ** 2 / (background + float(np.mean(g ** 2)))
    return background * scale, g * math.sqrt(scale)


def _ar1(e: FloatArray, a: float) -> FloatArray:
    """``y[k] = a*y[k-1] + e[k]`` with ``y[0] = e[0]``: a prefix scan in log2(n) passes."""
    y = e.copy()
    shift, coef = 1, a
    while shift < y.size and coef > 1e-15:
        y[shift:] = y[shift:] + coef * y[:-shift]
        shift, coef = 2 * shift, coef * coef
    return y


def _ou(rng: np.random.Generator, n: int, step_s: float, tau_s: float, sigma: float) -> FloatArray:
    """An exact stationary Ornstein–Uhlenbeck path (std ``sigma``), ``n`` samples."""
    a = math.exp(-step_s / tau_s)
    e = rng.standard_normal(n) * (sigma * math.sqrt(1.0 - a * a))
    e[0] = sigma * rng.standard_normal()
    return _ar1(e, a)


def _low_pass(x: FloatArray, step_s: float, tau_s: float) -> FloatArray:
    """First-order low-pass, starting settled at ``x[0]``."""
    b = math.exp(-step_s / tau_s)
    e = x * (1.0 - b)
    e[0] = x[0]
    return _ar1(e, b)


def synthetic_frequency(
    duration_s: float, *, seed: int = 0, step_s: float = 1.0, nominal_hz: float = 50.0
) -> FrequencySeries:
    """A seeded synthetic frequency trace from a full hour on (see the module docstring).

    Args:
        duration_s: length (s, 0 < duration_s <= :data:`MAX_DURATION_S`); the series
            repeats after it.
        seed: the random seed (same seed, same series).
        step_s: sample spacing (s, 0 < step_s <= 1).
        nominal_hz: nominal frequency (Hz).

    Raises:
        ValueError: a duration or step out of range, naming it.
    """
    if not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        raise ValueError(f"duration_s must be a positive number of seconds up to "
                         f"{MAX_DURATION_S:g}, got {duration_s!r}")
    if not (math.isfinite(step_s) and 0 < step_s <= 1.0):
        raise ValueError(f"step_s must be in (0, 1] s, got {step_s!r}")
    n = max(2, math.ceil(duration_s / step_s - 1e-9))
    rng = np.random.default_rng(seed)
    background, g = _hour_pattern()
    noise = np.zeros(n)
    for tau, share in zip(_OU_TAU_S, _OU_SHARE, strict=True):
        # The low-pass removes the share tau_s / (tau + tau_s) of an OU's variance.
        sigma = math.sqrt(background * share * (tau + _SMOOTH_TAU_S) / tau)
        noise += _ou(rng, n, step_s, tau, sigma)
    t = np.arange(n) * step_s
    amplitude = _ou(rng, n, step_s, _AMPLITUDE_TAU_S, 1.0)
    swing = amplitude * np.interp(t % 3600.0, np.arange(3600.0), g, period=3600.0)
    dev_mhz = _low_pass(noise, step_s, _SMOOTH_TAU_S) + swing
    return FrequencySeries(hz=nominal_hz + dev_mhz / 1000.0, step_s=step_s,
                           source=f"synthetic(seed={seed})")
