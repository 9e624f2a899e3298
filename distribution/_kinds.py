"""Allocation across component kinds: batteries, PV curtailment and EV charger limits.

The power manager's battery target ``T`` (W, + = charging) is what the
strategies want of the battery fleet; ``must_w`` is the part of the site-level
wish that the strategies' *bounds* require (the merge of every wish with its
preferred power replaced by the value of its range nearest 0, over the fleet
bounds widened by the PV and EV ranges). Contributions are counted like
battery power, in W with the passive sign convention:

* a PV inverter with allowed setpoints ``[lower, upper]`` (``lower = −available``,
  ``upper = 0``) contributes ``c = s − lower ∈ [0, upper − lower]`` when it is
  capped at ``s``: curtailing raises the site's import like charging does;
* an EV charger whose car needs ``need`` W contributes ``c = d − need ∈ [−need, 0]``
  when it is limited to draw ``d``: throttling lowers the import like
  discharging does.

So PV only ever serves a positive ``must_w`` (the site must import more /
export less) and EV chargers only a negative one (it must import less).
Preferences (recharging toward a target SoC, say) never curtail PV or throttle
a car: the kinds serve only ``must_w``.

Which kind goes first is ``order`` (a permutation of `KINDS`; PV and EV never
compete, so only their place relative to ``battery_inverter`` matters):

* battery first (default): batteries are allocated ``T`` (`allocate`); the kind
  of ``must_w``'s sign covers ``must_w − achieved`` when that has ``must_w``'s
  sign (what the batteries could not deliver). ``closing_w`` is what batteries
  about to reach a SoC limit deliver now (+ charging ones near the upper limit,
  − discharging ones near the lower): their bounds will close before PV or EV
  could follow, so the kind covers that part of ``achieved`` already
  (``must_w − (achieved − closing)``) while those batteries still deliver it;
* PV (or EV) first: the kind covers ``must_w`` (within its range) and the
  batteries are allocated ``T`` less what it covered, never past 0 (curtailing
  PV never makes the batteries discharge, throttling a car never makes them
  charge).

Fairness within a kind:

* **PV, by rated power (water-fill).** The curtailed inverters produce
  ``x_i = min(available_i, λ·rated_i)`` with one common ``λ`` such that the
  total production is ``Σ available − C`` (`water_fill_upper`): every
  inverter is capped at the same fraction of its rating, the smaller ones
  producing all they can. Setpoint ``s_i = upper_i − x_i``; the total is exact.
* **EV, equal share by need.** The chargers draw ``d_i = clip(λ, lo_i, need_i)``
  (`water_fill_box`, equal weights) with ``Σ d = Σ need + C``, where
  ``lo_i = min(min_i, need_i)``: never a limit inside the exclusion band
  ``(0, min_i)``. When even every charger at its minimum draws more than the
  budget, chargers are paused (0 W, always allowed), largest minimum first
  (the fewest pauses), until the rest fits. The total never exceeds the
  budget and is exact whenever the rest can reach it. The API tells neither a
  car's departure time nor its energy request, so "need" is what the caller
  estimates a car would draw without a limit (gridloop: its draw when it is
  below its limit, else the charger's rating); departure times do not weigh.

A kind's component that is not capped gets its *uncapped* setpoint: PV its
lower bound (full production), EV its upper bound (the charger's rating);
`KindsResult.pv_capped` / `ev_capped` tell which are capped.

Pure numpy: arrays in, a `KindsResult` out; inputs are validated at the
boundary (`DistributionError` names the field), kernels trust them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._allocate import AllocationResult, allocate
from ._errors import DistributionError
from ._fleet import Fleet
from ._waterfill import water_fill_box, water_fill_upper

__all__ = [
    "DEFAULT_KIND_ORDER",
    "KINDS",
    "EvChargers",
    "KindsResult",
    "PvInverters",
    "allocate_kinds",
    "ev_limits",
    "pv_caps",
]

_F = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]

_CAP_TOL_W = 1e-6

KINDS: tuple[str, ...] = ("battery_inverter", "pv_inverter", "ev_charger")
"""The controllable kinds, by name (config, summary and metrics use these names)."""

DEFAULT_KIND_ORDER: tuple[str, ...] = KINDS
"""Batteries first, then PV curtailment / EV limits."""


def _floats(name: str, value: object, n: int | None = None) -> _F:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise DistributionError(name, getattr(arr, "shape", value), f"must have shape ({n},)")
    if not np.isfinite(arr).all():
        raise DistributionError(name, arr[~np.isfinite(arr)][:3].tolist(), "must be finite")
    return arr


@dataclass(frozen=True)
class PvInverters:
    """The usable PV inverters (W; pass only the usable ones)."""

    lower_w: _F
    """Lowest allowed setpoint (−available production, ≤ upper)."""
    upper_w: _F
    """Highest allowed setpoint (0 = fully curtailed)."""
    rated_w: _F
    """Rated power (> 0), the fairness weight."""

    def __post_init__(self) -> None:
        """Validate shapes, finiteness and order (naming the field)."""
        lo = _floats("pv.lower_w", self.lower_w)
        n = lo.shape[0]
        hi = _floats("pv.upper_w", self.upper_w, n)
        rated = _floats("pv.rated_w", self.rated_w, n)
        if (lo > hi).any():
            raise DistributionError("pv.lower_w", lo[lo > hi][:3].tolist(), "must be <= upper_w")
        if (rated <= 0).any():
            raise DistributionError("pv.rated_w", rated[rated <= 0][:3].tolist(), "must be > 0")
        object.__setattr__(self, "lower_w", lo)
        object.__setattr__(self, "upper_w", hi)
        object.__setattr__(self, "rated_w", rated)

    @property
    def range_w(self) -> float:
        """Most the kind can contribute (W, ≥ 0): every inverter fully curtailed."""
        return float((self.upper_w - self.lower_w).sum())


@dataclass(frozen=True)
class EvChargers:
    """The usable EV chargers (W; pass only the usable ones)."""

    min_w: _F
    """Smallest non-zero limit (the exclusion band is ``(0, min_w)``; ≥ 0)."""
    upper_w: _F
    """Highest limit (the charger's rating while a car is connected; ≥ min_w or 0)."""
    need_w: _F
    """What each car would draw without a limit (0 ≤ need ≤ upper)."""

    def __post_init__(self) -> None:
        """Validate shapes, finiteness and order (naming the field)."""
        mn = _floats("ev.min_w", self.min_w)
        n = mn.shape[0]
        hi = _floats("ev.upper_w", self.upper_w, n)
        need = _floats("ev.need_w", self.need_w, n)
        if (mn < 0).any():
            raise DistributionError("ev.min_w", mn[mn < 0][:3].tolist(), "must be >= 0")
        bad = (need < 0) | (need > hi)
        if bad.any():
            raise DistributionError("ev.need_w", need[bad][:3].tolist(), "must be in [0, upper_w]")
        object.__setattr__(self, "min_w", mn)
        object.__setattr__(self, "upper_w", hi)
        object.__setattr__(self, "need_w", need)

    @property
    def range_w(self) -> float:
        """Most the kind can contribute (W, ≤ 0): every charger paused."""
        return -float(self.need_w.sum())


def pv_caps(pv: PvInverters, curtail_w: float) -> tuple[_F, _B, float]:
    """Curtail ``curtail_w`` of PV production, fairly by rated power (module docstring).

    Args:
        pv: The usable PV inverters.
        curtail_w: The contribution wanted (W), clipped to ``[0, pv.range_w]``.

    Returns:
        ``(setpoints_w, capped, achieved_w)``: a setpoint per inverter within
        ``[lower_w, upper_w]`` (uncapped ones at ``lower_w``), which are capped,
        and the contribution achieved.
    """
    span = pv.upper_w - pv.lower_w
    c = min(max(float(curtail_w), 0.0), float(span.sum()))
    if c <= 0.0 or not span.size:
        return pv.lower_w.copy(), np.zeros(span.shape, dtype=np.bool_), 0.0
    produce = water_fill_upper(pv.rated_w, span, float(span.sum()) - c)
    sp = np.clip(pv.upper_w - produce, pv.lower_w, pv.upper_w)
    # A cap within rounding of the full production is no cap.
    capped: _B = sp > pv.lower_w + _CAP_TOL_W
    sp = np.where(capped, sp, pv.lower_w)
    return sp, capped, float((sp - pv.lower_w).sum())


def ev_limits(ev: EvChargers, reduce_w: float) -> tuple[_F, _B, float]:
    """Throttle the chargers by ``reduce_w`` (≤ 0), equal share by need (module docstring).

    Args:
        ev: The usable EV chargers.
        reduce_w: The contribution wanted (W, ≤ 0), clipped to ``[ev.range_w, 0]``.

    Returns:
        ``(limits_w, capped, achieved_w)``: a limit per charger (its ``upper_w``
        when not throttled, 0 when paused, else in ``[min_w, need_w]``), which are
        throttled or paused, and the contribution achieved (≤ 0, at most
        ``reduce_w`` when some must pause).
    """
    need = ev.need_w
    n = need.shape[0]
    total = float(need.sum())
    c = max(min(float(reduce_w), 0.0), -total)
    if c >= 0.0 or not n:
        return ev.upper_w.copy(), np.zeros(n, dtype=np.bool_), 0.0
    budget = total + c
    lo = np.minimum(ev.min_w, need)
    active = need > 0.0
    # Pause the largest minimums first (fewest pauses) until the rest fits the budget.
    order = np.lexsort((np.arange(n), need, -lo))
    lo_active = np.where(active, lo, 0.0)
    excess = float(lo_active.sum()) - budget
    if excess > 0.0:
        freed = np.cumsum(lo_active[order])
        k = int(np.searchsorted(freed, excess - 1e-9 * max(1.0, total))) + 1
        active[order[:k]] = False
    draw = np.zeros(n)
    if active.any():
        ones = np.ones(int(active.sum()))
        draw[active] = water_fill_box(ones, lo[active], need[active], budget)
    throttled = active & (draw < need)
    limits = np.where(throttled, draw, ev.upper_w)
    limits = np.where(active | (need == 0.0), limits, 0.0)
    capped: _B = throttled | (~active & (need > 0.0))
    achieved = float(np.where(capped, limits, need).sum()) - total
    return limits, capped, achieved


@dataclass(frozen=True)
class KindsResult:
    """Result of `allocate_kinds` (W, contributions counted like battery power)."""

    battery: AllocationResult
    """The battery inverters' allocation."""
    pv_setpoints_w: _F
    """A setpoint per PV inverter (uncapped = its lower bound)."""
    pv_capped: _B
    """Which PV inverters are curtailed."""
    pv_w: float
    """PV contribution achieved (≥ 0: curtailed production)."""
    ev_setpoints_w: _F
    """A limit per EV charger (uncapped = its upper bound, paused = 0)."""
    ev_capped: _B
    """Which EV chargers are throttled or paused."""
    ev_w: float
    """EV contribution achieved (≤ 0: charging power taken off)."""

    @property
    def achieved_w(self) -> float:
        """Batteries plus PV plus EV contributions (W)."""
        return self.battery.achieved_w + self.pv_w + self.ev_w


def _check_order(order: tuple[str, ...]) -> tuple[str, ...]:
    if sorted(order) != sorted(KINDS) or len(order) != len(KINDS):
        raise DistributionError("order", order, f"must name each of {KINDS} once")
    return tuple(order)


def allocate_kinds(
    fleet: Fleet,
    target_w: float,
    must_w: float,
    pv: PvInverters,
    ev: EvChargers,
    order: tuple[str, ...] = DEFAULT_KIND_ORDER,
    soc_exponent: float = 1.0,
    min_cap_w: float = 0.0,
    closing_w: float = 0.0,
) -> KindsResult:
    """Meet ``target_w`` with the batteries and ``must_w`` with PV / EV, in ``order``.

    Args:
        fleet: The battery fleet snapshot.
        target_w: The battery fleet target (W, + = charging).
        must_w: What the strategies' bounds require of batteries + PV + EV
            together (W; nan = nothing: no PV cap, no EV limit).
        pv: The usable PV inverters.
        ev: The usable EV chargers.
        order: Which kind goes first (a permutation of `KINDS`).
        soc_exponent: Passed to `allocate`.
        min_cap_w: PV / EV leave a share of at most this to the batteries (W, ≥ 0):
            a cap that small is not worth a setpoint (the caller's deadband).
        closing_w: What batteries about to reach a SoC limit deliver now (W, + =
            charging; battery first only: PV counts on the batteries for
            ``achieved − max(closing_w, 0)``, EV for ``achieved − min(closing_w, 0)``).

    Returns:
        The allocation of every kind (module docstring).

    Raises:
        DistributionError: ``order`` is not a permutation of `KINDS`, or a
            target is not a number (``target_w`` must be finite).
        AllocationInvariantError: A setpoint violates its bounds (a bug).
    """
    order = _check_order(order)
    m = float(must_w)
    if math.isinf(m):
        raise DistributionError("must_w", must_w, "must be finite or nan")
    if not min_cap_w >= 0.0 or math.isinf(min_cap_w):
        raise DistributionError("min_cap_w", min_cap_w, "must be a finite number >= 0")
    if not math.isfinite(closing_w):
        raise DistributionError("closing_w", closing_w, "must be finite")
    flex = "pv_inverter" if m > 0 else "ev_charger" if m < 0 else None
    first = flex is not None and order.index(flex) < order.index("battery_inverter")
    covered = 0.0
    pv_out: tuple[_F, _B, float] = (pv.lower_w.copy(), np.zeros(pv.lower_w.shape, np.bool_), 0.0)
    ev_out: tuple[_F, _B, float] = (ev.upper_w.copy(), np.zeros(ev.upper_w.shape, np.bool_), 0.0)
    if first and abs(m) > min_cap_w:
        if flex == "pv_inverter":
            pv_out = pv_caps(pv, m)
            covered = pv_out[2]
        else:
            ev_out = ev_limits(ev, m)
            covered = ev_out[2]
    t = float(target_w)
    # What the first kind covered comes off the batteries' target, but never turns it
    # around: curtailing PV never makes the batteries discharge, throttling a car never
    # makes them charge.
    offset = min(covered, max(t, 0.0)) if covered > 0 else max(covered, min(t, 0.0))
    battery = allocate(fleet, t - offset, soc_exponent=soc_exponent)
    if flex is not None and not first:
        closing = max(closing_w, 0.0) if flex == "pv_inverter" else min(closing_w, 0.0)
        rest = m - (battery.achieved_w - closing)
        if flex == "pv_inverter" and rest > min_cap_w:
            pv_out = pv_caps(pv, rest)
        elif flex == "ev_charger" and rest < -min_cap_w:
            ev_out = ev_limits(ev, rest)
    return KindsResult(
        battery=battery,
        pv_setpoints_w=pv_out[0],
        pv_capped=pv_out[1],
        pv_w=pv_out[2],
        ev_setpoints_w=ev_out[0],
        ev_capped=ev_out[1],
        ev_w=ev_out[2],
    )
