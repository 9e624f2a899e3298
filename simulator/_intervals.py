"""Unions of closed intervals: the shape of the API's bounds (W or VAr).

Offers `Interval` (``(lower, upper)``, infinite ends allowed), `own_power_intervals`
(an inverter's allowed active power with its exclusion band), `intersect_intervals`
and `merge_intervals`. Re-exported by `simulator.physics`.
"""

from __future__ import annotations

import math

__all__ = ["Interval", "intersect_intervals", "merge_intervals", "own_power_intervals"]

Interval = tuple[float, float]


def valid_interval(lo: float, hi: float) -> bool:
    """Whether ``[lo, hi]`` is a usable interval: no NaN, lo ≤ hi, and neither end
    infinite on the wrong side (an unset end is -inf below, +inf above)."""
    return lo != math.inf and hi != -math.inf and lo <= hi  # NaN fails lo <= hi


def own_power_intervals(lower_w: float, upper_w: float, exclusion_w: float) -> list[Interval]:
    """The allowed active power of an inverter as closed inclusion intervals.

    Without an exclusion band this is ``[(lower, upper)]``. With a band
    ``(-e, +e)`` it is two intervals; a side that is not available (e.g. no
    charging at the upper SoC limit) becomes ``(0, 0)``, since 0 W is always
    allowed. This is the shape the SDK decodes as inclusion + exclusion bounds.
    """
    if exclusion_w <= 0.0:
        return [(lower_w, upper_w)]
    low = (lower_w, -exclusion_w) if lower_w <= -exclusion_w else (0.0, 0.0)
    high = (exclusion_w, upper_w) if upper_w >= exclusion_w else (0.0, 0.0)
    if low == high:
        return [low]
    return [low, high]


def intersect_intervals(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Intersection of two unions of closed intervals (each sorted, disjoint)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Sort and merge overlapping closed intervals."""
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
