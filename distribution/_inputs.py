"""Input checks of `Fleet`: arrays, masks, per-component usability and exclusion reasons.

Validated once at the boundary, vectorised: a structural problem raises
`DistributionError` naming the field; a live-data problem excludes the
component with an `ExclusionReason` code (computed on a slow path only
when something is excluded).
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import DistributionError

__all__ = ["ExclusionReason"]

_F = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]
InverterArrays = tuple[_F, _F, _F, _F]
"""``(lower, upper, excl_lower, excl_upper)`` of every inverter, W."""
BatteryArrays = tuple[_F, _F, _F, _F, _F, _F, _F, _F]
"""``(lower, upper, excl_lower, excl_upper, soc, soc_lower, soc_upper, capacity)``."""


class ExclusionReason(enum.IntEnum):
    """Why a component takes no part in the allocation (codes in int8 arrays)."""

    INCLUDED = 0
    """Usable: the component takes part in the allocation."""
    UNAVAILABLE = 1
    """Marked unavailable by the caller (``*_available`` mask)."""
    NOT_FINITE = 2
    """A bound, SoC, SoC limit or capacity is NaN or infinite."""
    INVALID_BOUNDS = 3
    """Inclusion ``lower > upper`` or 0 outside it, SoC limits inverted, or zero capacity."""
    BAND_OUTSIDE_INTERVAL = 4
    """The exclusion band does not contain 0 (``excl_lower > 0`` or ``excl_upper < 0``).

    A band that contains 0 but reaches past its interval (an interval shrunk by
    SoC) is not a fault: that side of the interval is empty, only 0 W remains."""
    UNLINKED = 5
    """The component appears in no link."""
    GROUP_UNUSABLE = 6
    """Usable itself, but its group is not (a battery is excluded, or no inverter is usable)."""


def _vec(name: str, value: Any, n: int) -> _F:
    """Convert ``value`` to a 1-D float64 array of length ``n`` or raise."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DistributionError(name, type(value).__name__, "must be numeric") from exc
    if arr.shape != (n,):
        raise DistributionError(name, f"shape {arr.shape}", f"must have shape ({n},)")
    return arr


def _first_bad_field(inv: dict[str, Any], bat: dict[str, Any]) -> None:
    """Raise `DistributionError` for the first array with a bad type or shape."""
    for fields in (inv, bat):
        first, value = next(iter(fields.items()))
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DistributionError(first, type(value).__name__, "must be numeric") from exc
        if arr.ndim != 1:
            raise DistributionError(first, f"shape {arr.shape}", "must be 1-D")
        for name, other in fields.items():
            if other is not None:
                _vec(name, other, arr.shape[0])


def mask(name: str, value: Any, n: int) -> _B | None:
    """Convert an optional availability mask, or raise."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise DistributionError(name, f"dtype {arr.dtype}", "must be a boolean array")
    if arr.shape != (n,):
        raise DistributionError(name, f"shape {arr.shape}", f"must have shape ({n},)")
    return arr


def inverter_reasons(
    lo: _F, hi: _F, el: _F, eu: _F, avail: _B | None
) -> npt.NDArray[np.int8]:
    """Per-inverter exclusion codes (slow path, only when something is wrong)."""
    r = np.zeros(lo.shape[0], dtype=np.int8)
    band_bad = ~((lo <= el) & (el <= 0.0) & (eu >= 0.0) & (eu <= hi))
    r[band_bad] = ExclusionReason.BAND_OUTSIDE_INTERVAL
    r[~((lo <= 0.0) & (hi >= 0.0))] = ExclusionReason.INVALID_BOUNDS
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf: fine
        r[~np.isfinite(lo + hi + el + eu)] = ExclusionReason.NOT_FINITE
    if avail is not None:
        r[~avail] = ExclusionReason.UNAVAILABLE
    return r


def _shadow_band(lo: _F, hi: _F, el: _F, eu: _F) -> tuple[_F, _F, _F, _F]:
    """Normalise a band around 0 that reaches past its interval.

    The allowed set is ``({0} ∪ [lo, hi]) \\ (el, eu)``. When ``el < lo`` the
    negative side ``[lo, el]`` is empty, so the side becomes ``lo = el = 0``;
    likewise ``eu > hi`` gives ``hi = eu = 0``. The allowed set is unchanged,
    and the arrays then satisfy ``lo <= el <= 0 <= eu <= hi``. Bands that do
    not contain 0, intervals that do not contain 0 and NaN are left alone (the
    validity checks exclude them).
    Copies only when a row needs it.
    """
    below = lo > el
    above = eu > hi
    if not (below.any() or above.any()):
        return lo, hi, el, eu
    below &= (el <= 0.0) & (lo <= 0.0)
    above &= (eu >= 0.0) & (hi >= 0.0)
    return (
        np.where(below, 0.0, lo),
        np.where(above, 0.0, hi),
        np.where(below, 0.0, el),
        np.where(above, 0.0, eu),
    )


def battery_reasons(
    lo: _F, hi: _F, el: _F, eu: _F, soc: _F, slo: _F, shi: _F, cap: _F, avail: _B | None
) -> npt.NDArray[np.int8]:
    """Per-battery exclusion codes (slow path, only when something is wrong)."""
    r = np.zeros(lo.shape[0], dtype=np.int8)
    band_bad = ~((lo <= el) & (el <= 0.0) & (eu >= 0.0) & (eu <= hi))
    r[band_bad] = ExclusionReason.BAND_OUTSIDE_INTERVAL
    r[~((lo <= 0.0) & (hi >= 0.0) & (slo <= shi) & (cap > 0.0))] = ExclusionReason.INVALID_BOUNDS
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf: fine
        r[~np.isfinite(lo + hi + el + eu + soc + slo + shi + cap)] = ExclusionReason.NOT_FINITE
    if avail is not None:
        r[~avail] = ExclusionReason.UNAVAILABLE
    return r


INVERTER_FIELDS = (
    "inverter_lower_w", "inverter_upper_w", "inverter_excl_lower_w", "inverter_excl_upper_w",
)
"""`Fleet` keywords of the inverter arrays, in the order `read_arrays` takes them."""
BATTERY_FIELDS = (
    "battery_soc_pct", "battery_soc_lower_pct", "battery_soc_upper_pct", "battery_capacity_wh",
    "battery_lower_w", "battery_upper_w", "battery_excl_lower_w", "battery_excl_upper_w",
)
"""`Fleet` keywords of the battery arrays, in the order `read_arrays` takes them."""


def read_arrays(
    inv: tuple[Any, ...], bat: tuple[Any, ...]
) -> tuple[int, int, InverterArrays, BatteryArrays]:
    """Convert the arrays given to `Fleet` to float64, or raise naming the first bad one.

    Args:
        inv: the inverter arrays in `INVERTER_FIELDS` order (band edges may
            be None: no band).
        bat: the battery arrays in `BATTERY_FIELDS` order (band edges may
            be None).

    Returns:
        ``(n_inv, n_bat, inverter arrays, battery arrays)``, the battery
        arrays in `BatteryArrays` order.
    """
    f64 = np.float64
    i_lo, i_hi, i_el, i_eu = inv
    soc, s_lo, s_hi, cap, b_lo, b_hi, b_el, b_eu = bat
    try:
        i_lo, i_hi = np.asarray(i_lo, f64), np.asarray(i_hi, f64)
        soc, s_lo, s_hi = np.asarray(soc, f64), np.asarray(s_lo, f64), np.asarray(s_hi, f64)
        cap = np.asarray(cap, f64)
        b_lo, b_hi = np.asarray(b_lo, f64), np.asarray(b_hi, f64)
        n_inv = i_lo.shape[0] if i_lo.ndim == 1 else -1
        n_bat = soc.shape[0] if soc.ndim == 1 else -1
        zi = np.zeros(max(n_inv, 0))
        zb = np.zeros(max(n_bat, 0))
        i_el = zi if i_el is None else np.asarray(i_el, f64)
        i_eu = zi if i_eu is None else np.asarray(i_eu, f64)
        b_el = zb if b_el is None else np.asarray(b_el, f64)
        b_eu = zb if b_eu is None else np.asarray(b_eu, f64)
        si = (n_inv,)
        sb = (n_bat,)
        shapes_ok = (
            i_lo.shape == i_hi.shape == i_el.shape == i_eu.shape == si
            and soc.shape == s_lo.shape == s_hi.shape == cap.shape == sb
            and b_lo.shape == b_hi.shape == b_el.shape == b_eu.shape == sb
        )
    except (TypeError, ValueError):
        shapes_ok = False
    if not shapes_ok:  # slow path: find the first offending field and name it
        _first_bad_field(
            dict(zip(INVERTER_FIELDS, inv, strict=True)),
            dict(zip(BATTERY_FIELDS, bat, strict=True)),
        )
    return n_inv, n_bat, (i_lo, i_hi, i_el, i_eu), (b_lo, b_hi, b_el, b_eu, soc, s_lo, s_hi, cap)


def usable(
    inv: InverterArrays, bat: BatteryArrays, i_av: _B | None, b_av: _B | None
) -> tuple[InverterArrays, BatteryArrays, _B, _B]:
    """Which components are usable by themselves (their own data only, not their group).

    Args:
        inv: the inverter arrays (`read_arrays`).
        bat: the battery arrays (`read_arrays`).
        i_av: optional inverter availability mask.
        b_av: optional battery availability mask.

    Returns:
        ``(inv, bat, inv_ok, bat_ok)``: the arrays with bands normalised by
        `_shadow_band`, and the usable masks.

    Raises:
        DistributionError: a negative ``battery_capacity_wh``.
    """
    # A band reaching past its interval (an interval shrunk by SoC: a full
    # battery's inverter has upper 0 but keeps its ±2 kW band) is live data,
    # not a fault: the side the band covers is simply empty but for 0 W.
    i_lo, i_hi, i_el, i_eu = _shadow_band(*inv)
    b_lo, b_hi, b_el, b_eu, soc, s_lo, s_hi, cap = bat
    b_lo, b_hi, b_el, b_eu = _shadow_band(b_lo, b_hi, b_el, b_eu)
    # NaN fails every comparison, so the chains also reject NaN; the
    # isfinite terms catch the infinities the chains would let through.
    inv_ok = (i_lo <= i_el) & (i_el <= 0.0) & (i_eu >= 0.0) & (i_eu <= i_hi)
    inv_ok &= np.isfinite(i_hi - i_lo)
    bat_ok = (b_lo <= b_el) & (b_el <= 0.0) & (b_eu >= 0.0) & (b_eu <= b_hi)
    bat_ok &= (s_lo <= s_hi) & (cap > 0.0)
    bat_ok &= np.isfinite(b_hi - b_lo + soc + s_hi - s_lo + cap)
    if i_av is not None:
        inv_ok &= i_av
    if b_av is not None:
        bat_ok &= b_av
    # Negative capacity is structural (raises); it also fails bat_ok, so the
    # check only runs when some battery is excluded anyway.
    if np.count_nonzero(bat_ok) != bat_ok.shape[0] and np.count_nonzero(cap < 0.0):
        bad = int(np.flatnonzero(cap < 0.0)[0])
        raise DistributionError(
            "battery_capacity_wh", f"{cap[bad]} at battery {bad}", "must not be negative"
        )
    return (i_lo, i_hi, i_el, i_eu), (b_lo, b_hi, b_el, b_eu, soc, s_lo, s_hi, cap), inv_ok, bat_ok
