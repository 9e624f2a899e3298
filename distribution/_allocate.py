"""`allocate`: split a requested fleet power into one setpoint per inverter.

Method
------
1. **Water-filling on the convex hull.** Each group g has an allowed set S_g
   (a union of closed intervals containing 0, see `Fleet`) with hull
   ``[lo_g, hi_g]``. The target T is clipped to ``[sum lo, sum hi]``
   (saturation is a status, not an error). For ``T > 0`` the weights are
   ``w_g = capacity_g * (soc_upper - soc)_g ** soc_exponent`` (for ``T < 0``
   the headroom is ``soc - soc_lower``); weights below ``1e-9 * max(w)`` are
   raised to that floor. ``p_g = clip(w_g * lam, lo_g, hi_g)`` with
   ``sum p = T`` is solved exactly by a sort-based breakpoint search
   (`water_fill_upper`), the unique minimiser of ``sum p_g**2 / w_g``.
2. **Exclusion bands.** If every ``p_g`` lies in S_g this is the answer.
   Otherwise the groups caught in a gap ("caught") must move to the piece
   just below or just above; all other groups keep the piece they are in.
   The caught groups are ordered by the extra cost of rounding up instead
   of down (``((up - p)**2 - (p - down)**2) / w``) and the first k go up.
   For every k the reachable totals form an interval and an estimate of
   the objective (rounding cost + the imbalance spread over the groups
   with slack) is known from prefix sums (vectorised, no loop). The
   cheapest k whose interval contains T is taken and the water-filling is
   re-solved exactly on the chosen pieces (`water_fill_box`), which then
   meets the target exactly. When every group has at most one piece per
   side (1:1 pairs, and any topology whose sides are single intervals),
   `_repair_simple` does the same arithmetic without the ``(n, P)`` piece
   table (the pieces are known in closed form); for 1:1 fleets it also
   re-solves from the multiplier of step 1 (`water_fill_box_near`, a few
   O(n) Newton passes instead of a sort of 2n breakpoints). The result is
   the same up to floating-point rounding.
3. **Exact fallback.** If no k works (e.g. the target needs a free group to
   change piece, or needs one group discharging while another charges), the
   exact reachable-set search of `distribution._exact` runs: the Minkowski
   sum of the groups' pieces, built group by group with interval merging,
   gives the reachable total nearest to T exactly; backtracking picks for
   each group the piece closest to its water-filling power that keeps the
   rest reachable; the final powers are the exact water-filling on those
   pieces. Only if that set grows beyond `MAX_INTERVALS` intervals
   (subset-sum-like instances) a mixed-integer program over the pieces
   (`scipy.optimize.milp`, HiGHS; `distribution._milp`) decides instead: first the nearest
   reachable total, then the piece choice closest (L1, 1/w weighted) to the
   water-filling.

Guarantees: every setpoint lies in its inverter's allowed set and every
group total in its batteries' allowed set (re-checked before returning;
a violation raises `AllocationInvariantError`). The achieved total equals
the (clipped) target whenever any allocation reaches it, otherwise it is
the nearest reachable total (status ``NEAREST_REACHABLE``) — exact up to
floating-point rounding, except on the MILP branch of step 3 where
HiGHS' tolerances (about 1e-6 of the largest bound) apply. Without
binding bands the result is exactly the weighted water-filling. Steps
1–2 are O(n log n) numpy with no Python loop over components; step 3
loops over the groups that have a band (fallback only).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._errors import AllocationInvariantError, DistributionError
from ._exact import reachable_pieces
from ._fleet import Fleet
from ._milp import milp_pieces
from ._waterfill import water_fill_box, water_fill_box_near, water_fill_upper

__all__ = ["AllocationResult", "AllocationStatus", "allocate"]

_F = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]

_WEIGHT_FLOOR = 1e-9
_max = np.maximum.reduce
_min = np.minimum.reduce
_sum = np.add.reduce


class AllocationStatus(enum.Enum):
    """Outcome of `allocate`."""

    EXACT = "exact"
    """The target was met (up to floating-point rounding)."""
    SATURATED_UPPER = "saturated_upper"
    """The target exceeded the fleet's upper bound; every group is at its upper bound."""
    SATURATED_LOWER = "saturated_lower"
    """The target was below the fleet's lower bound; every group is at its lower bound."""
    NEAREST_REACHABLE = "nearest_reachable"
    """Exclusion bands make the target unreachable; the nearest reachable total is set."""
    NOTHING_AVAILABLE = "nothing_available"
    """Nothing can move in the requested direction (no usable group); all setpoints 0 W."""
    APPROXIMATE = "approximate"
    """The exact fallback hit its time limit; the best allocation found is returned."""


@dataclass(frozen=True, slots=True)
class AllocationResult:
    """Result of `allocate` (powers in W, positive = charging)."""

    setpoints_w: _F
    """(n_inv,) setpoint per inverter; 0 W for excluded inverters."""
    achieved_w: float
    """Sum of the setpoints."""
    status: AllocationStatus
    """What happened (see `AllocationStatus`)."""
    target_w: float
    """The requested total."""
    remaining_w: float
    """``target_w - achieved_w``: what could not be allocated."""
    inverter_exclusion: npt.NDArray[np.int8]
    """(n_inv,) `ExclusionReason` code per inverter (0 = included)."""
    battery_exclusion: npt.NDArray[np.int8]
    """(n_bat,) `ExclusionReason` code per battery (0 = included)."""
    group_power_w: _F
    """(n_groups,) total power per group (see `Fleet.inverter_group`)."""
    group_lower_w: _F
    """(n_groups,) lowest allowed power per group (bounds and SoC applied)."""
    group_upper_w: _F
    """(n_groups,) highest allowed power per group (bounds and SoC applied)."""
    method: str
    """``"zero"``, ``"waterfill"``, ``"repair"``, ``"exact"`` or ``"milp"``: which step decided."""

    @property
    def fleet_lower_w(self) -> float:
        """Lowest total the usable fleet can take (SoC and bounds applied)."""
        return float(_sum(self.group_lower_w))

    @property
    def fleet_upper_w(self) -> float:
        """Highest total the usable fleet can take (SoC and bounds applied)."""
        return float(_sum(self.group_upper_w))

    @property
    def group_at_lower(self) -> _B:
        """(n_groups,) the group sits at its lower bound (incl. its SoC limit).

        Groups without room in either direction (excluded) are never reported.
        """
        out: _B = (self.group_power_w <= self.group_lower_w) & (
            self.group_upper_w > self.group_lower_w
        )
        return out

    @property
    def group_at_upper(self) -> _B:
        """(n_groups,) the group sits at its upper bound (incl. its SoC limit)."""
        out: _B = (self.group_power_w >= self.group_upper_w) & (
            self.group_upper_w > self.group_lower_w
        )
        return out

    @property
    def message(self) -> str:
        """Human-readable summary."""
        return _message(
            self.status, self.target_w, self.achieved_w,
            self.fleet_lower_w, self.fleet_upper_w, self.method,
        )


def _weights(fleet: Fleet, up: bool, exponent: float) -> _F:
    cap = fleet._g_cap
    head = fleet._head(up)
    if exponent == 1.0:
        w = cap * head
    elif exponent == 0.0:
        w = cap.copy()
    elif exponent <= 4.0:
        w = cap * head**exponent
    else:  # normalise first so that large exponents cannot overflow
        hmax = _max(head) if head.shape[0] else 1.0
        w = cap * (head / (hmax if hmax > 0.0 else 1.0)) ** exponent
    wmax = _max(w) if w.shape[0] else 0.0
    if not wmax > 0.0:
        return np.ones_like(w)
    out: _F = np.maximum(w, wmax * _WEIGHT_FLOOR)
    return out


def allocate(fleet: Fleet, target_w: float, soc_exponent: float = 1.0) -> AllocationResult:
    """Split ``target_w`` across the fleet's inverters (method: module docstring).

    Args:
        fleet: the validated fleet snapshot.
        target_w: requested total, W, positive = charging. Must be finite.
        soc_exponent: SoC balancing strength, ``>= 0`` (0 = by capacity only).

    Returns:
        The allocation; failing to meet the target is a status, not an error.

    Raises:
        DistributionError: ``target_w`` or ``soc_exponent`` is not a finite
            number (or ``soc_exponent < 0``).
        AllocationInvariantError: a setpoint violates the original bounds (a bug).
    """
    t, e = _check_args(target_w, soc_exponent)
    goal, status = t, AllocationStatus.EXACT
    if t > 0.0:
        if t > fleet.upper_w:
            goal, status = fleet.upper_w, AllocationStatus.SATURATED_UPPER
    elif t < 0.0 and t < fleet.lower_w:
        goal, status = fleet.lower_w, AllocationStatus.SATURATED_LOWER
    method = "waterfill"
    if goal == 0.0:
        p = np.zeros(fleet._g_lo.shape[0])
        method = "zero"
        if t != 0.0:
            status = AllocationStatus.NOTHING_AVAILABLE
    else:
        w = _weights(fleet, goal > 0.0, e)
        p, caught = _waterfill(fleet, w, goal)
        if np.count_nonzero(caught):
            p, method, approx = _solve_bands(fleet, w, p, caught, goal)
            if approx:
                status = AllocationStatus.APPROXIMATE
            elif method != "repair" and abs(float(p.sum()) - goal) > 1e-9 * max(1.0, abs(goal)):
                # (a repair is only returned if it passed this very check)
                status = AllocationStatus.NEAREST_REACHABLE

    setpoints = p if fleet._identity else _split(fleet, p)
    _recheck(fleet, setpoints, p)
    achieved = float(_sum(setpoints))
    return AllocationResult(
        setpoints_w=setpoints,
        achieved_w=achieved,
        status=status,
        target_w=t,
        remaining_w=t - achieved,
        inverter_exclusion=fleet._inverter_exclusion,
        battery_exclusion=fleet._battery_exclusion,
        group_power_w=p,
        group_lower_w=fleet._g_lo,
        group_upper_w=fleet._g_hi,
        method=method,
    )


def _check_args(target_w: float, soc_exponent: float) -> tuple[float, float]:
    """``(target, exponent)`` as floats, or raise naming the bad argument."""
    try:
        t = float(target_w)
    except (TypeError, ValueError) as exc:
        raise DistributionError("target_w", target_w, "must be a number") from exc
    if not math.isfinite(t):
        raise DistributionError("target_w", t, "must be finite")
    try:
        e = float(soc_exponent)
    except (TypeError, ValueError) as exc:
        raise DistributionError("soc_exponent", soc_exponent, "must be a number") from exc
    if not (e >= 0.0 and math.isfinite(e)):
        raise DistributionError("soc_exponent", e, "must be finite and >= 0")
    return t, e


def _waterfill(fleet: Fleet, w: _F, goal: float) -> tuple[_F, _B]:
    """Step 1: water-filling on the hulls; returns the group powers and the caught groups."""
    caught: _B
    if goal > 0.0:
        p = water_fill_upper(w, fleet._g_hi, goal)
        if fleet._simple:
            caught = (p > 0.0) & (p < fleet._g_bu)
    else:
        p = -water_fill_upper(w, -fleet._g_lo, -goal)
        if fleet._simple:
            caught = (p < 0.0) & (p > fleet._g_bl)
    if not fleet._simple:
        plo, phi = fleet.group_pieces()
        pc = p[:, None]
        caught = np.logical_not(((plo <= pc) & (pc <= phi)).any(axis=1))
    return p, caught


def _message(
    status: AllocationStatus, t: float, achieved: float, lo: float, hi: float, method: str
) -> str:
    if status is AllocationStatus.EXACT:
        return f"target {t:.6g} W met ({method})"
    if status is AllocationStatus.SATURATED_UPPER:
        return f"target {t:.6g} W above fleet upper bound {hi:.6g} W; saturated"
    if status is AllocationStatus.SATURATED_LOWER:
        return f"target {t:.6g} W below fleet lower bound {lo:.6g} W; saturated"
    if status is AllocationStatus.NOTHING_AVAILABLE:
        return f"target {t:.6g} W: no usable group can move in that direction"
    if status is AllocationStatus.NEAREST_REACHABLE:
        return (
            f"target {t:.6g} W unreachable because of exclusion bands; "
            f"nearest reachable total {achieved:.6g} W"
        )
    return f"target {t:.6g} W: exact search hit its time limit; best found {achieved:.6g} W"


# --------------------------------------------------------------------------- bands


def _solve_bands(
    fleet: Fleet, w: _F, p: _F, caught: _B, goal: float
) -> tuple[_F, str, bool]:
    """Steps 2 and 3 of the module docstring. Returns (p, method, approximate?)."""
    if fleet._simple:
        q = _repair_simple(fleet, w, p, caught, goal)
        if q is not None:
            return q, "repair", False
        return _exact(fleet, w, p, goal)
    plo, phi = fleet.group_pieces()
    n = p.shape[0]
    rows = np.arange(n)
    pc = p[:, None]
    inside = (plo <= pc) & (pc <= phi)
    k_in = np.argmax(np.where(inside, phi - plo, -1.0), axis=1)
    a = plo[rows, k_in]
    b = phi[rows, k_in]
    ci = np.flatnonzero(caught)
    pcg = p[ci]
    plc, phc = plo[ci], phi[ci]
    k_a = np.argmax(np.where(phc < pcg[:, None], phc, -np.inf), axis=1)
    k_b = np.argmin(np.where(plc > pcg[:, None], plc, np.inf), axis=1)
    r = np.arange(ci.shape[0])
    a_lo, a_hi = plc[r, k_a], phc[r, k_a]
    b_lo, b_hi = plc[r, k_b], phc[r, k_b]
    wc = w[ci]
    cost_up = (b_lo - pcg) ** 2 / wc
    cost_dn = (pcg - a_hi) ** 2 / wc
    order = np.argsort(cost_up - cost_dn, kind="stable")
    free = ~caught
    base_lo = float(a[free].sum() + a_lo.sum())
    base_hi = float(b[free].sum() + a_hi.sum())
    lo_k = base_lo + np.concatenate(([0.0], np.cumsum((b_lo - a_lo)[order])))
    hi_k = base_hi + np.concatenate(([0.0], np.cumsum((b_hi - a_hi)[order])))
    tol = 1e-12 * max(1.0, abs(goal))
    feasible = (lo_k <= goal + tol) & (goal - tol <= hi_k)
    if feasible.any():
        # Approximate objective per k: rounding cost of the caught groups plus the
        # cost of spreading the remaining imbalance over the groups that can absorb it.
        imbalance = -float((pcg - a_hi).sum()) + np.concatenate(
            ([0.0], np.cumsum((b_lo - a_hi)[order]))
        )
        slack_w = float(w[free & (a < b)].sum()) + np.concatenate(
            ([0.0], np.cumsum(np.where(b_hi > b_lo, wc, 0.0)[order]))
        )
        rounding = float(cost_dn.sum()) + np.concatenate(
            ([0.0], np.cumsum((cost_up - cost_dn)[order]))
        )
        spread = np.where(
            slack_w > 0.0,
            imbalance**2 / np.where(slack_w > 0.0, slack_w, 1.0),
            np.where(imbalance == 0.0, 0.0, 1e300),
        )
        approx_cost = np.where(feasible, rounding + spread, np.inf)
        k = int(np.argmin(approx_cost))
        go_up = np.zeros(ci.shape[0], dtype=bool)
        go_up[order[:k]] = True
        a[ci] = np.where(go_up, b_lo, a_lo)
        b[ci] = np.where(go_up, b_hi, a_hi)
        q = water_fill_box(w, a, b, min(max(goal, float(a.sum())), float(b.sum())))
        if abs(float(q.sum()) - goal) <= 1e-9 * max(1.0, abs(goal)):
            return q, "repair", False
    return _exact(fleet, w, p, goal)


def _repair_simple(fleet: Fleet, w: _F, p: _F, caught: _B, goal: float) -> _F | None:
    """Step 2 when every group has one piece per side (None: step 3 decides).

    Every group's set is ``[lo, bl] ∪ {0} ∪ [bu, hi]`` (`Fleet.group_pieces`
    with three columns), so the pieces that the generic step 2 finds by
    searching that ``(n, 3)`` table are known in closed form, and the terms
    that are zero on one side ({0} as the piece below or above) drop out.
    What remains is the generic step's arithmetic on the caught groups, term
    for term (the same sums in the same order, so the same ``k`` is chosen),
    and the final water-filling starts from the multiplier of step 1
    (`water_fill_box_near`) instead of sorting every breakpoint.
    """
    g_lo, g_bl, g_bu, g_hi = fleet._g_lo, fleet._g_bl, fleet._g_bu, fleet._g_hi
    ci = caught.nonzero()[0]
    pcg = p.take(ci)
    wc = w.take(ci)
    up = goal > 0.0
    # Pieces of a caught group: [a_lo, a_hi] below it, [b_lo, b_hi] above it;
    # None stands for {0}. Free groups keep the piece they are in: [bu, hi] when
    # charging, [lo, bl] when discharging (groups at 0 W: `_zero_pieces`).
    a_lo: _F | None = None
    a_hi: _F | None = None
    b_lo: _F | None = None
    b_hi: _F | None = None
    if up:
        a, b = g_bu.copy(), g_hi.copy()
        b_lo, b_hi = a.take(ci), b.take(ci)
        if fleet._band_ties():
            # [lo, 0] (a negative side without band) ties with {0} as the piece
            # below; the generic search takes the first, [lo, 0].
            tie = (g_bl.take(ci) == 0.0) & (g_lo.take(ci) < 0.0)
            a_lo = np.where(tie, g_lo.take(ci), 0.0)
            a_hi = np.where(tie, g_bl.take(ci), 0.0)
        if _min(p) == 0.0:
            _zero_pieces(fleet, p == 0.0, a, b)
    else:
        a, b = g_lo.copy(), g_bl.copy()
        a_lo, a_hi = a.take(ci), b.take(ci)
        if _max(p) == 0.0:
            _zero_pieces(fleet, p == 0.0, a, b)
    sq = pcg**2 / wc  # (0 - p)**2 / w == (p - 0)**2 / w, bit for bit
    cost_up = sq if b_lo is None else (b_lo - pcg) ** 2 / wc
    cost_dn = sq if a_hi is None else (pcg - a_hi) ** 2 / wc
    key = cost_up - cost_dn
    order = _stable_argsort(key)
    fi = (~caught).nonzero()[0]  # (take is much faster than a boolean index here)
    a_free, b_free = a.take(fi), b.take(fi)
    base_lo = float(a_free.sum() if a_lo is None else a_free.sum() + a_lo.sum())
    base_hi = float(b_free.sum() if a_hi is None else b_free.sum() + a_hi.sum())
    imbalance0 = -float(pcg.sum() if a_hi is None else (pcg - a_hi).sum())
    w_free = w.take(fi)
    has_slack = a_free < b_free
    if np.count_nonzero(has_slack) != has_slack.shape[0]:
        w_free = w_free[has_slack]
    slack0 = float(w_free.sum())
    rounding0 = float(cost_dn.sum())
    # Prefix sums over the caught groups taken up in `order` (k = 0 .. m): each
    # row is the generic step's ``concatenate(([0.0], cumsum(x[order])))``.
    if b_lo is None:  # discharging: up is {0}, nothing gains slack
        assert a_lo is not None
        assert a_hi is not None
        c_lo, c_hi, c_rnd = _prefix_sums(order, -a_lo, -a_hi, key)
        c_imb = c_hi
        c_slack = None
    else:
        assert b_hi is not None
        inc_slack = wc * (b_hi > b_lo)  # == where(b_hi > b_lo, wc, 0.0): wc > 0
        if a_lo is None or a_hi is None:
            c_lo, c_hi, c_slack, c_rnd = _prefix_sums(order, b_lo, b_hi, inc_slack, key)
            c_imb = c_lo
        else:
            c_lo, c_hi, c_imb, c_slack, c_rnd = _prefix_sums(
                order, b_lo - a_lo, b_hi - a_hi, b_lo - a_hi, inc_slack, key
            )
    # lo_k and hi_k never decrease with k: the feasible k form one range.
    tol = 1e-12 * max(1.0, abs(goal))
    k0 = int(np.searchsorted(base_hi + c_hi, goal - tol, "left"))
    k1 = int(np.searchsorted(base_lo + c_lo, goal + tol, "right"))
    if k0 >= k1:
        return None
    # Approximate objective per feasible k: rounding cost of the caught groups plus
    # the cost of spreading the remaining imbalance over the groups that can absorb it.
    imbalance = imbalance0 + c_imb[k0:k1]
    slack_w = np.full(k1 - k0, slack0) if c_slack is None else slack0 + c_slack[k0:k1]
    if slack_w[0] > 0.0:  # slack_w never decreases with k
        spread = imbalance**2 / slack_w
    else:
        spread = np.where(
            slack_w > 0.0,
            imbalance**2 / np.where(slack_w > 0.0, slack_w, 1.0),
            np.where(imbalance == 0.0, 0.0, 1e300),
        )
    approx_cost = (rounding0 + c_rnd[k0:k1]) + spread
    j = int(np.argmin(approx_cost))
    # The generic step takes the argmin over all k with inf where infeasible.
    k = 0 if approx_cost[j] == np.inf else k0 + j
    if b_lo is None:  # the first k caught groups go up to {0}
        rise = ci.take(order[:k])
        a[rise] = 0.0
        b[rise] = 0.0
    else:  # the others go down
        fall = order[k:]
        a[ci.take(fall)] = 0.0 if a_lo is None else a_lo.take(fall)
        b[ci.take(fall)] = 0.0 if a_hi is None else a_hi.take(fall)
    if fleet._identity:
        # Any caught group is unclipped in step 1 (p = w * lam there): lam is its
        # ratio; the free groups absorb the imbalance in proportion to their weights.
        lam0 = float(pcg[0] / wc[0])
        if slack_w[j] > 0.0:
            lam0 -= float(imbalance[j] / slack_w[j])
        # The chosen pieces' total range is [lo_k, hi_k] (the same sums up to rounding).
        target = min(max(goal, base_lo + float(c_lo[k])), base_hi + float(c_hi[k]))
        q, total = water_fill_box_near(w, a, b, target, lam0)
    else:
        # Group powers are split across inverters next, and the split jumps where a
        # total crosses an inverter subset's edge: keep the generic step's exact
        # arithmetic here, so that no rounding difference can move such a total.
        q = water_fill_box(w, a, b, min(max(goal, float(a.sum())), float(b.sum())))
        total = float(q.sum())
    if abs(total - goal) <= 1e-9 * max(1.0, abs(goal)):
        return q
    return None


def _stable_argsort(key: _F) -> npt.NDArray[np.intp]:
    """``argsort(key, kind="stable")``, via the faster default sort when no two keys tie."""
    if key.shape[0] < 64:  # small: the check below would cost more than it saves
        return np.argsort(key, kind="stable")
    order = key.argsort()
    ks = key.take(order)
    if np.count_nonzero(ks[1:] == ks[:-1]):
        return np.argsort(key, kind="stable")
    return order


def _prefix_sums(order: npt.NDArray[np.intp], *rows: _F) -> _F:
    """``concatenate(([0.0], cumsum(row[order])))`` of every row, as one (r, m + 1) array."""
    out = np.zeros((len(rows), order.shape[0] + 1))
    for i, row in enumerate(rows):  # (faster than one 2-D cumsum at every size)
        np.add.accumulate(row.take(order), out=out[i, 1:])
    return out


def _zero_pieces(fleet: Fleet, zero: _B, a: _F, b: _F) -> None:
    """Set ``a, b`` of the groups at 0 W to the widest piece containing 0 (first on ties)."""
    zlo, zbl, zbu, zhi = fleet._g_lo[zero], fleet._g_bl[zero], fleet._g_bu[zero], fleet._g_hi[zero]
    w2 = np.where((zhi > 0.0) & (zbu == 0.0), zhi, -1.0)
    take0 = (zlo < 0.0) & (zbl == 0.0) & (-zlo >= w2)
    take2 = ~take0 & (w2 > 0.0)
    a[zero] = np.where(take0, zlo, np.where(take2, zbu, 0.0))
    b[zero] = np.where(take0, zbl, np.where(take2, zhi, 0.0))


def _exact(fleet: Fleet, w: _F, p: _F, goal: float) -> tuple[_F, str, bool]:
    """Step 3: the exact reachable-set search (MILP if it grows too large)."""
    plo, phi = fleet.group_pieces()
    rows = np.arange(p.shape[0])
    choice = reachable_pieces(plo, phi, p, goal)
    if choice is None:
        return milp_pieces(w, p, plo, phi, goal)
    a, b = plo[rows, choice], phi[rows, choice]
    q = water_fill_box(w, a, b, min(max(goal, float(a.sum())), float(b.sum())))
    return q, "exact", False


# --------------------------------------------------------------------------- split


def _split(fleet: Fleet, p: _F) -> _F:
    """Split group powers across each group's inverters (general topology)."""
    topo = fleet._topo
    assert topo is not None
    s = np.zeros(fleet._n_inv)
    s[topo.single_inv_index] = p[topo.single_inv_groups]
    i_eu = np.where(fleet._inv_ok, fleet._i_eu, 0.0)
    i_hi = np.where(fleet._inv_ok, fleet._i_hi, 0.0)
    i_el = np.where(fleet._inv_ok, -fleet._i_el, 0.0)
    i_lo = np.where(fleet._inv_ok, -fleet._i_lo, 0.0)
    for groups, mat, masks, sub_eu, sub_hi, sub_el, sub_lo in fleet._split:
        pg = p[groups]
        pos = pg > 0.0
        mag = np.abs(pg)
        s_lo = np.where(pos[:, None], sub_eu, sub_el)
        s_hi = np.where(pos[:, None], sub_hi, sub_lo)
        contain = (s_lo <= mag[:, None]) & (mag[:, None] <= s_hi)
        size = masks.sum(axis=0)
        dist = np.maximum(s_lo - mag[:, None], mag[:, None] - s_hi)
        score = np.where(contain, size[None, :] * 1.0, -1.0 - dist)
        pick = np.argmax(score, axis=1)
        sel = masks[:, pick].T  # (G_m, m)
        base = np.where(pos[:, None], i_eu[mat], i_el[mat]) * sel
        top = np.where(pos[:, None], i_hi[mat], i_lo[mat]) * sel
        span = top - base
        tot_span = span.sum(axis=1)
        frac = np.where(
            tot_span > 0.0, (mag - base.sum(axis=1)) / np.where(tot_span > 0, tot_span, 1.0), 0.0
        )
        x = np.minimum(np.maximum(base + frac[:, None] * span, base), top)
        x = np.where(sel & (mag[:, None] > 0.0), x, 0.0)
        s[mat] = np.where(pos[:, None], x, -x)
    return s


# --------------------------------------------------------------------------- re-check


def _recheck(fleet: Fleet, s: _F, p: _F) -> None:
    """Independent check of every setpoint against the original bounds."""
    if fleet._identity and not np.count_nonzero(s < 0.0):
        # One-sided form of the same checks (all setpoints >= 0); _chk holds the
        # element-wise max/min of the inverter's and the battery's own bounds.
        lo, hi, _, eu = fleet._chk
        full = fleet._b_soc >= fleet._b_soc_hi
        bad = (s > hi) | (s < lo) | ((s > 0.0) & ((s < eu) | full))
    elif fleet._identity and not np.count_nonzero(s > 0.0):
        lo, hi, el, _ = fleet._chk
        empty = fleet._b_soc <= fleet._b_soc_lo
        bad = (s > hi) | (s < lo) | ((s < 0.0) & ((s > el) | empty))
    else:
        bad = (s < fleet._i_lo) | (s > fleet._i_hi)
        bad |= (s > fleet._i_el) & (s < fleet._i_eu) & (s != 0.0)
        if fleet._identity:
            bad |= (s < fleet._b_lo) | (s > fleet._b_hi)
            bad |= (s > fleet._b_el) & (s < fleet._b_eu) & (s != 0.0)
            bad |= (s > 0.0) & (fleet._b_soc >= fleet._b_soc_hi)
            bad |= (s < 0.0) & (fleet._b_soc <= fleet._b_soc_lo)
    if not fleet._all_ok:
        ok = fleet._inv_ok
        bad = (bad & ok) | (~ok & (s != 0.0))
    if fleet._identity:
        if np.count_nonzero(bad):
            i = int(np.flatnonzero(bad)[0])
            raise AllocationInvariantError(
                f"setpoint {s[i]!r} W of inverter {i} violates its bounds "
                f"(inverter [{fleet._i_lo[i]}, {fleet._i_hi[i]}] excl "
                f"({fleet._i_el[i]}, {fleet._i_eu[i]}), battery [{fleet._b_lo[i]}, "
                f"{fleet._b_hi[i]}] excl ({fleet._b_el[i]}, {fleet._b_eu[i]}), "
                f"SoC {fleet._b_soc[i]} in [{fleet._b_soc_lo[i]}, {fleet._b_soc_hi[i]}])"
            )
        return
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AllocationInvariantError(
            f"setpoint {s[i]!r} W of inverter {i} violates its bounds "
            f"[{fleet._i_lo[i]}, {fleet._i_hi[i]}] excl ({fleet._i_el[i]}, {fleet._i_eu[i]})"
        )
    topo = fleet._topo
    assert topo is not None
    assert fleet._dc is not None
    dc_lo, dc_hi, dc_bl, dc_bu, up_ok, dn_ok = fleet._dc
    gs = np.bincount(topo.inv_group, weights=s, minlength=topo.n_groups)
    tol = 1e-9 * np.maximum(1.0, np.abs(dc_lo) + np.abs(dc_hi))
    g_bad = (gs > tol) & (~up_ok | (gs > dc_hi + tol) | (gs < dc_bu - tol))
    g_bad |= (gs < -tol) & (~dn_ok | (gs < dc_lo - tol) | (gs > dc_bl + tol))
    g_bad |= np.abs(gs - p) > tol
    if g_bad.any():
        g = int(np.flatnonzero(g_bad)[0])
        raise AllocationInvariantError(
            f"group {g} total {gs[g]!r} W (planned {p[g]!r} W) violates its DC set "
            f"[{dc_lo[g]}, {dc_hi[g]}] excl ({dc_bl[g]}, {dc_bu[g]}), "
            f"charge allowed {bool(up_ok[g])}, discharge allowed {bool(dn_ok[g])}"
        )
