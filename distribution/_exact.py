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

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_INTERVALS", "reachable_pieces"]

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.intp]

MAX_INTERVALS = 20_000
_SMALL = 48


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
    plo_l: list[list[float]] = plo.tolist()
    phi_l: list[list[float]] = phi.tolist()
    multi_l: list[int] = multi.tolist()
    pieces = {
        g: [(lo, hi) for lo, hi in zip(plo_l[g], phi_l[g], strict=True) if lo <= hi]
        for g in multi_l
    }
    # Reachable sets after each step, as Python lists while small (cheaper than
    # numpy for a handful of intervals), numpy arrays when large.
    sets: list[tuple[Any, Any]] = [([base_lo], [base_hi])]
    for g_idx in multi_l:
        r_lo, r_hi = sets[-1]
        pcs = pieces[g_idx]
        if isinstance(r_lo, list) and len(r_lo) * len(pcs) <= _SMALL:
            sets.append(_merge_py(r_lo, r_hi, pcs))
            continue
        p_lo = np.array([q[0] for q in pcs])
        p_hi = np.array([q[1] for q in pcs])
        c_lo = (np.asarray(r_lo)[:, None] + p_lo[None, :]).ravel()
        c_hi = (np.asarray(r_hi)[:, None] + p_hi[None, :]).ravel()
        m_lo, m_hi = _merge(c_lo, c_hi)
        if m_lo.shape[0] > MAX_INTERVALS:
            return None
        if m_lo.shape[0] * 3 <= _SMALL:
            sets.append((m_lo.tolist(), m_hi.tolist()))
        else:
            sets.append((m_lo, m_hi))
    r_lo, r_hi = sets[-1]
    remaining, _ = _closest(np.asarray(r_lo), np.asarray(r_hi), goal)
    finite = np.abs(np.concatenate((plo[valid], phi[valid])))
    tol = 1e-12 * n * max(1.0, float(finite.max(initial=0.0)), abs(goal))
    ps_l: list[float] = p_star.tolist()
    valid_l: list[list[bool]] = valid.tolist()
    # Backtrack: group multi[k] takes x in piece j with remaining - x in sets[k].
    for k in range(len(multi_l) - 1, -1, -1):
        g = multi_l[k]
        prev_lo, prev_hi = sets[k]
        j, x = _pick(pieces[g], prev_lo, prev_hi, remaining, ps_l[g], tol)
        choice[g] = [c for c, ok in enumerate(valid_l[g]) if ok][j]
        remaining -= x
    return choice


def _merge_py(
    r_lo: list[float], r_hi: list[float], pcs: list[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """Minkowski sum of a small interval set with a group's pieces (pure Python)."""
    cand = sorted((lo + a, hi + b) for lo, hi in zip(r_lo, r_hi, strict=True) for a, b in pcs)
    out_lo: list[float] = []
    out_hi: list[float] = []
    for lo, hi in cand:
        if out_hi and lo <= out_hi[-1]:
            if hi > out_hi[-1]:
                out_hi[-1] = hi
        else:
            out_lo.append(lo)
            out_hi.append(hi)
    return out_lo, out_hi


def _pick(
    pcs: list[tuple[float, float]],
    prev_lo: Any,
    prev_hi: Any,
    remaining: float,
    p_star: float,
    tol: float,
) -> tuple[int, float]:
    """Piece index and value x for one group: x in the piece, remaining - x reachable.

    Among the feasible (piece, previous interval) pairings, x is the value closest
    to ``p_star``. Sums of floats are not associative: pairings that miss by
    rounding only (``tol``) count as feasible, and if none is left the pairing
    that misses least is taken.
    """
    if isinstance(prev_lo, list):
        best: tuple[float, float, int, float] | None = None  # (gap>tol, dist, j, x)
        for j, (a, b) in enumerate(pcs):
            for lo, hi in zip(prev_lo, prev_hi, strict=True):
                x_lo = max(a, remaining - hi)
                x_hi = min(b, remaining - lo)
                gap = x_lo - x_hi
                x = min(max(p_star, x_lo), max(x_lo, x_hi))
                key = (max(gap, tol) if gap > tol else 0.0, abs(x - p_star), j, x)
                if best is None or key[:2] < best[:2]:
                    best = key
        assert best is not None
        return best[2], best[3]
    p_lo = np.array([q[0] for q in pcs])[:, None]
    p_hi = np.array([q[1] for q in pcs])[:, None]
    x_lo = np.maximum(p_lo, remaining - prev_hi[None, :])
    x_hi = np.minimum(p_hi, remaining - prev_lo[None, :])
    gap = x_lo - x_hi
    ok = gap <= tol
    if not ok.any():
        ok = gap <= gap.min()
    x_hi = np.maximum(x_lo, x_hi)
    cand = np.minimum(np.maximum(p_star, x_lo), x_hi)
    dist = np.where(ok, np.abs(cand - p_star), np.inf)
    flat = int(np.argmin(dist))
    return flat // dist.shape[1], float(cand.ravel()[flat])
