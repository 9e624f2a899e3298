"""Reactive-power allocation: a fleet Q target split across inverters (pure numpy).

Each inverter ``i`` has reactive bounds ``[q_lower_i, q_upper_i]`` (VAr, as
its telemetry publishes them; 0 VAr is always allowed) and an apparent-power
rating ``S_i`` (VA; ``inf`` = none known: only the reactive bounds apply).
Active and reactive power share the circle ``P_i² + Q_i² ≤ S_i²``. With the
inverter's active power ``P_i`` fixed (``p_first``: the active setpoints
already allocated; ``q_first``: 0 W, see `active_limit_w`), its reactive
capability is::

    r_i  = sqrt(max(S_i² − P_i², 0))
    hi_i = max(0, min(q_upper_i, r_i))      lo_i = min(0, max(q_lower_i, −r_i))

and the split is the water-fill proportional to capability in the target's
direction (`distribution._waterfill.water_fill_box` with weights ``hi`` for a
positive target, ``−lo`` for a negative one)::

    Q_i = clip(w_i · λ, lo_i, hi_i),   Σ Q_i = clip(T, Σ lo, Σ hi)

so every inverter gives the same share ``λ`` of what it can give: the total
is exact whenever ``Σ lo ≤ T ≤ Σ hi`` (status ``EXACT``), else every inverter
gives all it can in that direction (``SATURATED``: the best feasible). An
unavailable inverter, or one with non-finite reactive bounds, gets 0 VAr.

Sign: passive convention as everywhere in gridloop (+ = reactive power into
the inverter: it absorbs Q, under-excited; − = it delivers Q, over-excited).

`limit_active_bounds` applies the ``q_first`` priority to the active side:
an inverter holding ``Q_i`` may carry at most ``|P_i| ≤ sqrt(S_i² − Q_i²)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._errors import AllocationInvariantError, DistributionError
from ._waterfill import water_fill_box

__all__ = [
    "ReactiveResult",
    "active_limit_w",
    "allocate_reactive",
    "limit_active_bounds",
    "reactive_capability",
]

_F = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]

_TOL = 1e-6
"""Absolute tolerance (VAr, VA) of the final re-check."""


@dataclass(frozen=True)
class ReactiveResult:
    """The outcome of `allocate_reactive`."""

    setpoints_var: _F
    """Reactive setpoint per inverter (VAr, + = absorbing); 0 where unavailable."""
    target_var: float
    """The requested fleet total (VAr)."""
    achieved_var: float
    """The sum of the setpoints (VAr)."""
    lower_var: float
    """The fleet's reactive range given the active powers: most negative total (VAr, ≤ 0)."""
    upper_var: float
    """Most positive total (VAr, ≥ 0)."""
    status: str
    """``EXACT`` (total met), ``SATURATED`` (target outside the range: the nearest end),
    ``NOTHING_AVAILABLE`` (no inverter can give reactive power; all 0 VAr)."""


def _as_array(name: str, value: object, n: int | None) -> _F:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise DistributionError(name, f"shape {arr.shape}", "must be a 1-D array")
    if n is not None and arr.shape[0] != n:
        raise DistributionError(name, f"length {arr.shape[0]}", f"must have length {n}")
    return arr


def reactive_capability(
    q_lower_var: _F, q_upper_var: _F, apparent_va: _F, active_w: _F, available: _B
) -> tuple[_F, _F]:
    """Per inverter, the reactive range ``[lo, hi]`` left by the active power (see the module).

    Inputs are trusted (validated by `allocate_reactive`).

    Returns:
        ``(lo, hi)`` with ``lo ≤ 0 ≤ hi``; both 0 where unusable.
    """
    s = np.where(np.isfinite(apparent_va), apparent_va, np.inf)
    p = np.where(np.isfinite(active_w), active_w, 0.0)
    with np.errstate(invalid="ignore"):
        r = np.sqrt(np.maximum(s * s - p * p, 0.0))
    usable = available & np.isfinite(q_lower_var) & np.isfinite(q_upper_var)
    hi = np.where(usable, np.clip(np.minimum(q_upper_var, r), 0.0, None), 0.0)
    lo = np.where(usable, np.clip(np.maximum(q_lower_var, -r), None, 0.0), 0.0)
    return lo, hi


def allocate_reactive(
    target_var: float,
    q_lower_var: object,
    q_upper_var: object,
    apparent_va: object,
    active_w: object | None = None,
    available: object | None = None,
) -> ReactiveResult:
    """Split ``target_var`` across the inverters within their reactive bounds and the
    apparent-power circle left by ``active_w`` (see the module for the maths).

    Args:
        target_var: The fleet's reactive target (VAr, + = absorbing); finite.
        q_lower_var: Lower reactive bound per inverter (VAr; non-finite = unusable).
        q_upper_var: Upper reactive bound per inverter (VAr).
        apparent_va: Apparent-power rating per inverter (VA; non-finite = no circle).
        active_w: Active power per inverter the circle is left by (W; None = 0 W,
            the ``q_first`` case).
        available: Which inverters may be commanded (None = all).

    Returns:
        The setpoints, the total, the fleet's range and the status.

    Raises:
        DistributionError: Bad input (a non-finite target, arrays of different lengths,
            a negative apparent rating), naming the argument.
        AllocationInvariantError: A setpoint violates the bounds or the circle (a bug).
    """
    if isinstance(target_var, bool) or not np.isfinite(target_var):
        raise DistributionError("target_var", target_var, "must be a finite number of VAr")
    lower = _as_array("q_lower_var", q_lower_var, None)
    n = lower.shape[0]
    upper = _as_array("q_upper_var", q_upper_var, n)
    s = _as_array("apparent_va", apparent_va, n)
    if (s < 0).any():
        raise DistributionError("apparent_va", s.tolist(), "must be >= 0")
    p = np.zeros(n) if active_w is None else _as_array("active_w", active_w, n)
    avail = np.ones(n, dtype=np.bool_) if available is None else np.asarray(available)
    if avail.shape != (n,) or avail.dtype != np.bool_:
        raise DistributionError("available", f"{avail.dtype} {avail.shape}",
                                f"must be a boolean array of length {n}")
    lo, hi = reactive_capability(lower, upper, s, p, avail)
    f_lo, f_hi = float(lo.sum()), float(hi.sum())
    target = float(target_var)
    q = np.zeros(n)
    w = hi if target > 0 else -lo
    part = w > 0.0
    if part.any() and target != 0.0:
        goal = min(max(target, f_lo), f_hi)
        q[part] = water_fill_box(w[part], lo[part], hi[part], goal)
    status = (
        "NOTHING_AVAILABLE" if f_lo == 0.0 and f_hi == 0.0 and target != 0.0
        else "EXACT" if f_lo <= target <= f_hi
        else "SATURATED"
    )
    _recheck(q, lower, upper, s, p)
    return ReactiveResult(q, target, float(q.sum()), f_lo, f_hi, status)


def _recheck(q: _F, lower: _F, upper: _F, s: _F, p: _F) -> None:
    """Independent re-check against the original bounds and circle (`AllocationInvariantError`)."""
    nz = q != 0.0
    with np.errstate(invalid="ignore"):
        outside = nz & ~((q >= lower - _TOL) & (q <= upper + _TOL))
        circle = nz & np.isfinite(s) & (q * q + p * p > (s + _TOL) ** 2)
    if outside.any() or circle.any():
        bad = np.flatnonzero(outside | circle).tolist()
        raise AllocationInvariantError(f"reactive setpoints outside bounds or circle at {bad}")


def active_limit_w(apparent_va: object, reactive_var: object) -> _F:
    """The largest ``|P|`` each inverter may carry while holding ``reactive_var``:
    ``sqrt(S² − Q²)`` (inf where no rating is known). The ``q_first`` priority.

    Args:
        apparent_va: Apparent-power rating per inverter (VA; non-finite = none).
        reactive_var: Reactive setpoint per inverter (VAr).

    Returns:
        The limit per inverter (W, ≥ 0).
    """
    s = np.asarray(apparent_va, dtype=np.float64)
    q = np.asarray(reactive_var, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lim = np.sqrt(np.maximum(s * s - q * q, 0.0))
    out: _F = np.where(np.isfinite(s), lim, np.inf)
    return out


def limit_active_bounds(
    lower_w: _F, upper_w: _F, excl_lower_w: _F, excl_upper_w: _F, limit_w: _F
) -> tuple[_F, _F, _F, _F]:
    """Active bounds (inclusion ``[lower, upper]`` minus the band ``(excl_lower, excl_upper)``)
    narrowed to ``[−limit, limit]``: a side whose band reaches past the limit keeps only 0 W.

    Args:
        lower_w: Lower ends (W).
        upper_w: Upper ends (W).
        excl_lower_w: Lower ends of the exclusion band (W, ≤ 0).
        excl_upper_w: Upper ends of the exclusion band (W, ≥ 0).
        limit_w: ``|P|`` limit per inverter (W, ≥ 0; inf = none).

    Returns:
        The narrowed ``(lower, upper, excl_lower, excl_upper)``.
    """
    up = np.minimum(upper_w, limit_w)
    lo = np.maximum(lower_w, -limit_w)
    up_gone = up < excl_upper_w
    lo_gone = lo > excl_lower_w
    return (
        np.where(lo_gone, 0.0, lo),
        np.where(up_gone, 0.0, up),
        np.where(lo_gone, 0.0, excl_lower_w),
        np.where(up_gone, 0.0, excl_upper_w),
    )
