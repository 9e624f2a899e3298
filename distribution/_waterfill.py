"""Exact, sort-based weighted water-filling kernels.

The kernels solve, for weights ``w > 0`` and a scalar target ``T``,

    p_g = clip(w_g * lam, a_g, b_g),   sum_g p_g = T,

`water_fill_upper` and `water_fill_box` by sorting the breakpoints of the
piecewise-linear, non-decreasing function
``f(lam) = sum_g clip(w_g * lam, a_g, b_g)``, locating ``T`` between two
consecutive breakpoints with `numpy.searchsorted`, and solving the linear
piece in closed form. This is exact up to floating point rounding (no
iteration, no tolerance), O(n log n), and the minimiser of
``sum_g (p_g**2 / w_g)`` subject to ``a <= p <= b`` and ``sum p = T`` when
``a <= 0 <= b`` (and of ``sum_g (p_g - w_g*c)**2 / w_g`` in general).
`water_fill_box_near` gives `water_fill_box`'s answer (up to rounding: it
stops when ``f(lam)`` meets ``T`` to 1e-13) by a safeguarded Newton
iteration from a nearby multiplier, O(n) per step, falling back to the sort.

Inputs are trusted (validated by the caller).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["water_fill_box", "water_fill_box_near", "water_fill_upper"]

_F = npt.NDArray[np.float64]
_acc = np.add.accumulate  # much cheaper per call than np.cumsum on small arrays
_sum = np.add.reduce


def water_fill_upper(w: _F, hi: _F, target: float) -> _F:
    """Solve ``p = min(w * lam, hi)``, ``lam >= 0``, ``sum p = target``.

    Args:
        w: weights, all ``> 0``.
        hi: upper bounds, all ``>= 0``.
        target: ``0 <= target``; values ``>= sum(hi)`` return ``hi``.

    Returns:
        The allocation ``p`` (float64, same shape as ``w``).
    """
    t = hi / w
    order = t.argsort()
    ts = t[order]
    ws = w[order]
    cum_h = _acc(hi[order])
    # suffix[j] = sum of ws[j:], suffix[n] = 0 (exactly positive for j < n).
    n = ws.shape[0]
    suffix = np.zeros(n + 1)
    suffix[:-1] = _acc(ws[::-1])[::-1]
    f = cum_h + ts * suffix[1:]
    j = int(f.searchsorted(target))
    if j >= n:
        return hi.copy()
    lam = target / suffix[0] if j == 0 else (target - cum_h[j - 1]) / suffix[j]
    out: _F = np.minimum(w * lam, hi)
    return out


def water_fill_box(w: _F, a: _F, b: _F, target: float) -> _F:
    """Solve ``p = clip(w * lam, a, b)``, ``lam`` real, ``sum p = target``.

    Args:
        w: weights, all ``> 0``.
        a: lower bounds.
        b: upper bounds, ``b >= a`` element-wise.
        target: clipped to ``[sum a, sum b]`` by construction of the result.

    Returns:
        The allocation ``p`` (float64), ``a <= p <= b`` element-wise.
    """
    n = w.shape[0]
    keys = np.concatenate((a / w, b / w))
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    dconst = np.concatenate((-a, b))[order]
    dslope = np.concatenate((w, -w))[order]
    f = a.sum() + np.cumsum(dconst) + np.cumsum(dslope) * ks
    j = int(np.searchsorted(f, target))
    if j >= 2 * n:
        return b.copy()
    if j == 0:
        return a.copy()
    # Recompute the active set on the segment exactly (the running slope can
    # lose the smallest weights to cancellation).
    mid = 0.5 * (ks[j - 1] + ks[j])
    wm = w * mid
    at_lo = wm <= a
    at_hi = wm >= b
    lin = ~(at_lo | at_hi)
    s = float(w[lin].sum())
    if s > 0.0:
        lam = (target - float(a[at_lo].sum()) - float(b[at_hi].sum())) / s
        lam = min(max(lam, ks[j - 1]), ks[j])
    else:
        lam = ks[j]
    out: _F = np.minimum(np.maximum(w * lam, a), b)
    return out


_NEWTON_STEPS = 16


def water_fill_box_near(
    w: _F, a: _F, b: _F, target: float, lam0: float
) -> tuple[_F, float]:
    """`water_fill_box` started from a nearby multiplier ``lam0``; also returns the sum.

    Safeguarded Newton iteration on the piecewise-linear ``f(lam)``: each step
    solves the linear piece that ``lam`` lies on and keeps a bracket; it stops
    when ``f(lam)`` meets the target up to rounding (``1e-13`` relative), so
    the result is the water-filling of `water_fill_box`. Started near the
    answer (a repaired allocation moves the multiplier across few
    breakpoints) this takes two or three O(n) passes instead of sorting
    ``2n`` keys; if it has not converged after `_NEWTON_STEPS` passes (or
    ``f`` is flat where it stands), `water_fill_box` decides.

    Args:
        w: weights, all ``> 0``.
        a: lower bounds.
        b: upper bounds, ``b >= a`` element-wise.
        target: within ``[sum a, sum b]``.
        lam0: starting multiplier (any finite value; closer is faster).

    Returns:
        ``(p, sum of p)``: the allocation (float64), ``a <= p <= b`` element-wise.
    """
    tol = 1e-13 * max(1.0, abs(target))
    lo_l, hi_l = -np.inf, np.inf
    lam = lam0
    wl = np.empty_like(w)
    q = np.empty_like(w)
    for _ in range(_NEWTON_STEPS):
        np.multiply(w, lam, out=wl)
        np.minimum(np.maximum(wl, a, out=q), b, out=q)
        total = float(_sum(q))
        err = total - target
        if -tol <= err <= tol:
            return q, total
        if err < 0.0:
            lo_l = lam
        else:
            hi_l = lam
        slope = float(np.dot(w, q == wl))  # weights of the groups strictly inside
        nxt = lam - err / slope if slope > 0.0 else np.nan
        if not lo_l < nxt < hi_l:
            if not (np.isfinite(lo_l) and np.isfinite(hi_l)):
                break
            nxt = 0.5 * (lo_l + hi_l)
        lam = nxt
    q = water_fill_box(w, a, b, target)
    return q, float(_sum(q))
