"""Last-resort exact fallback of `allocate`: a mixed-integer program over the pieces.

Used only when the exact reachable-set search of `distribution._exact` grows
beyond its interval limit (subset-sum-like instances). Variables, with all
powers divided by one scale (the largest bound or target) for HiGHS:

* ``x_gj`` — power of group g if it takes piece j, else 0 (m variables, one
  per non-empty piece);
* ``z_gj`` — binary: group g takes piece j;
* ``s_minus``, ``s_plus`` — shortfall and excess of the total;
* ``dev_g`` — ``|p_g - p*_g|``, the distance to the water-filling power.

Constraints: one piece per group (``sum_j z_gj = 1``), ``lo_gj z_gj <= x_gj
<= hi_gj z_gj``, ``sum x + s_minus - s_plus = goal`` and ``dev_g >= ±(sum_j
x_gj - p*_g)``. Phase 1 minimises ``s_minus + s_plus`` (nearest reachable
total); phase 2 keeps that slack and minimises ``sum dev_g * max(w) / w_g``
(piece choice closest to the water-filling, L1, 1/w weighted). The final
powers are the exact water-filling on the chosen pieces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._waterfill import water_fill_box

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.intp]

MILP_TIME_LIMIT_S = 1.0
"""Time limit of each HiGHS phase; hitting it makes the result APPROXIMATE."""


def milp_pieces(w: _F, p_star: _F, plo: _F, phi: _F, goal: float) -> tuple[_F, str, bool]:
    """Nearest reachable total, then the closest piece choice (module docstring).

    Args:
        w: (n,) group weights.
        p_star: (n,) water-filling group powers (on the hulls).
        plo: (n, P) piece lower edges, empty pieces ``+inf``.
        phi: (n, P) piece upper edges, empty pieces ``-inf``.
        goal: the (clipped) target total.

    Returns:
        ``(group powers, "milp", approximate?)``.
    """
    from scipy.optimize import Bounds, milp

    n, n_p = plo.shape
    gi, pj = np.nonzero(plo <= phi)
    m = gi.shape[0]
    cons = _constraints(gi, plo[gi, pj], phi[gi, pj], p_star, goal)
    # Variable layout: x (m), z (m), s_minus, s_plus, dev (n).
    nv = 2 * m + 2 + n
    iz, ism, isp, idv = m, 2 * m, 2 * m + 1, 2 * m + 2
    lb = np.zeros(nv)
    ub = np.full(nv, np.inf)
    lb[:m] = -np.inf
    ub[iz : iz + m] = 1.0
    integrality = np.zeros(nv)
    integrality[iz : iz + m] = 1
    kw: dict[str, Any] = {"constraints": cons, "integrality": integrality}
    # Phase 1: nearest reachable total.
    c1 = np.zeros(nv)
    c1[ism] = c1[isp] = 1.0
    opts = {"time_limit": MILP_TIME_LIMIT_S, "mip_rel_gap": 1e-9}
    res1 = milp(c1, bounds=Bounds(lb, ub), options=opts, **kw)
    approx = res1.status != 0
    if res1.x is None:
        return _round_down(plo, phi, p_star), "milp", True
    slack = float(res1.x[ism] + res1.x[isp])
    # Phase 2: same slack, piece choice closest to the water-filling.
    c2 = np.zeros(nv)
    c2[idv:] = (w.max() / w) / n
    ub2 = ub.copy()
    ub2[ism] = ub2[isp] = slack + 1e-9
    opts = {"time_limit": MILP_TIME_LIMIT_S, "mip_rel_gap": 1e-6}
    res2 = milp(c2, bounds=Bounds(lb, ub2), options=opts, **kw)
    x = res2.x if res2.x is not None else res1.x
    z = np.full((n, n_p), -1.0)
    z[gi, pj] = x[iz : iz + m]
    k = np.argmax(z, axis=1)
    rr = np.arange(n)
    a, b = plo[rr, k], phi[rr, k]
    q = water_fill_box(w, a, b, min(max(goal, float(a.sum())), float(b.sum())))
    return q, "milp", approx


def _constraints(gi: _I, lo: _F, hi: _F, p_star: _F, goal: float) -> Any:
    """The `scipy.optimize.LinearConstraint` of the program (scaled; module docstring).

    Args:
        gi: (m,) group of every non-empty piece.
        lo: (m,) lower edge of every non-empty piece.
        hi: (m,) upper edge of every non-empty piece.
        p_star: (n,) water-filling group powers.
        goal: the target total.
    """
    from scipy.optimize import LinearConstraint
    from scipy.sparse import coo_matrix

    n, m = p_star.shape[0], gi.shape[0]
    scale = max(float(np.abs(np.concatenate((lo, hi, [goal]))).max()), 1.0)
    lo_s, hi_s, g_s, ps_s = lo / scale, hi / scale, goal / scale, p_star / scale
    e, g = np.arange(m), np.arange(n)
    ix, iz, ism, idv = 0, m, 2 * m, 2 * m + 2
    ones_m, ones_n = np.ones(m), np.ones(n)
    # One block per constraint family: (rows, cols, values, lower, upper), rows local.
    blocks: list[tuple[_I, _I, _F, _F, _F]] = [
        # one piece per group: sum_j z_gj = 1
        (gi, iz + e, ones_m, ones_n, ones_n),
        # x - lo z >= 0 ; x - hi z <= 0
        (np.r_[e, e], np.r_[ix + e, iz + e], np.r_[ones_m, -lo_s],
         np.zeros(m), np.full(m, np.inf)),
        (np.r_[e, e], np.r_[ix + e, iz + e], np.r_[ones_m, -hi_s],
         np.full(m, -np.inf), np.zeros(m)),
        # total: sum x + s_minus - s_plus = goal
        (np.zeros(m + 2, dtype=np.intp), np.r_[ix + e, ism, ism + 1], np.r_[ones_m, 1.0, -1.0],
         np.array([g_s]), np.array([g_s])),
        # deviation: dev_g >= +-(sum_j x_gj - p*_g)
        (np.r_[gi, g], np.r_[ix + e, idv + g], np.r_[ones_m, -ones_n],
         np.full(n, -np.inf), ps_s),
        (np.r_[gi, g], np.r_[ix + e, idv + g], np.r_[-ones_m, -ones_n],
         np.full(n, -np.inf), -ps_s),
    ]
    offsets = np.cumsum([0] + [b[3].shape[0] for b in blocks])
    a_mat = coo_matrix(
        (
            np.concatenate([b[2] for b in blocks]),
            (
                np.concatenate([b[0] + off for b, off in zip(blocks, offsets[:-1], strict=True)]),
                np.concatenate([b[1] for b in blocks]),
            ),
        ),
        shape=(int(offsets[-1]), 2 * m + 2 + n),
    ).tocsr()
    return LinearConstraint(
        a_mat, np.concatenate([b[3] for b in blocks]), np.concatenate([b[4] for b in blocks])
    )


def _round_down(plo: _F, phi: _F, p: _F) -> _F:
    """Last resort: move every group to the nearest allowed point toward 0."""
    pc = p[:, None]
    down = np.max(np.where(plo <= pc, np.minimum(phi, pc), -np.inf), axis=1)
    up = np.min(np.where(phi >= pc, np.maximum(plo, pc), np.inf), axis=1)
    out: _F = np.where(p > 0.0, down, up)
    return out
