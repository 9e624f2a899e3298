"""Exact reachable-set search over per-group interval pieces (fallback path).

The totals reachable by the fleet form the Minkowski sum of the groups'
allowed sets, each a finite union of closed intervals. `reachable_pieces`
builds it group by group, merging overlapping intervals after each step
(so the set stays small unless the instance is genuinely combinatorial,
e.g. subset-sum-like bands), finds the reachable total nearest to the goal
exactly (interval endpoints are plain sums of the inputs), and backtracks a
piece choice: walking the groups backwards, each group takes the value
closest to its water-filling power that keeps the rest reachable.

Returns ``None`` when the intermediate set exceeds `MAX_INTERVALS`
intervals; the caller then uses the MILP fallback.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_INTERVALS", "reachable_pieces"]

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.intp]

MAX_INTERVALS = 20_000


def _merge(lo: _F, hi: _F) -> tuple[_F, _F]:
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    cmax = np.maximum.accumulate(hi)
    start = np.ones(lo.shape[0], dtype=bool)
    start[1:] = lo[1:] > cmax[:-1]
    idx = np.flatnonzero(start)
    ends = np.concatenate((idx[1:] - 1, [lo.shape[0] - 1]))
    return lo[idx], cmax[ends]


def _closest(lo: _F, hi: _F, x: float) -> tuple[float, int]:
    """Point of the union of [lo, hi] closest to x, and its interval index."""
    c = np.minimum(np.maximum(x, lo), hi)
    k = int(np.argmin(np.abs(c - x)))
    return float(c[k]), k


def reachable_pieces(plo: _F, phi: _F, p_star: _F, goal: float) -> _I | None:
    """Choose one piece per group so that the nearest reachable total is reachable.

    Args:
        plo: (G, P) piece lower ends; empty pieces have ``plo > phi``.
        phi: (G, P) piece upper ends.
        p_star: (G,) preferred (water-filling) power per group.
        goal: the desired total.

    Returns:
        (G,) chosen piece index per group such that the chosen pieces can sum
        to the reachable total nearest to ``goal``, or None if the search
        grew too large.
    """
    n, _ = plo.shape
    valid = plo <= phi
    single = valid.sum(axis=1) == 1
    choice: _I = np.argmax(valid, axis=1)
    # Groups with a single piece contribute one interval: add them in one step.
    rows = np.arange(n)
    base_lo = float(plo[rows[single], choice[single]].sum())
    base_hi = float(phi[rows[single], choice[single]].sum())
    multi = np.flatnonzero(~single)
    sets: list[tuple[_F, _F]] = [(np.array([base_lo]), np.array([base_hi]))]
    for g_idx in multi:
        r_lo, r_hi = sets[-1]
        v = valid[g_idx]
        c_lo = (r_lo[:, None] + plo[g_idx, v][None, :]).ravel()
        c_hi = (r_hi[:, None] + phi[g_idx, v][None, :]).ravel()
        m_lo, m_hi = _merge(c_lo, c_hi)
        if m_lo.shape[0] > MAX_INTERVALS:
            return None
        sets.append((m_lo, m_hi))
    r_lo, r_hi = sets[-1]
    remaining, _ = _closest(r_lo, r_hi, goal)
    finite = np.abs(np.concatenate((plo[valid], phi[valid])))
    tol = 1e-12 * n * max(1.0, float(finite.max(initial=0.0)), abs(goal))
    # Backtrack: group multi[k] takes x in piece j with remaining - x in sets[k].
    for k in range(multi.shape[0] - 1, -1, -1):
        g = int(multi[k])
        prev_lo, prev_hi = sets[k]
        v = np.flatnonzero(valid[g])
        # x must satisfy: plo <= x <= phi and prev_lo <= remaining - x <= prev_hi.
        x_lo = np.maximum(plo[g, v][:, None], remaining - prev_hi[None, :])
        x_hi = np.minimum(phi[g, v][:, None], remaining - prev_lo[None, :])
        # Sums of floats are not associative: accept pairings that miss by
        # rounding only, and if none is left take the pairing that misses least.
        gap = x_lo - x_hi
        ok = gap <= tol
        if not ok.any():
            ok = gap <= gap.min()
        x_hi = np.maximum(x_lo, x_hi)
        cand = np.minimum(np.maximum(p_star[g], x_lo), x_hi)
        dist = np.where(ok, np.abs(cand - p_star[g]), np.inf)
        j, _ = np.unravel_index(int(np.argmin(dist)), dist.shape)
        x = float(cand.ravel()[int(np.argmin(dist))])
        choice[g] = v[j]
        remaining -= x
    return choice
