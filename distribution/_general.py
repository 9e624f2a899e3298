"""General topology: per-group allowed sets of `Fleet` from the (cached) link graph.

The steps of `Fleet`'s general path (any links other than 1:1), each a
function of arrays: which components are usable as a group, why the others
are not, the DC side of every group, and the AC side as a union of pieces
(see the `distribution._fleet` docstring for the maths).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._groups import _Topology
from ._inputs import (
    BatteryArrays,
    ExclusionReason,
    InverterArrays,
    battery_reasons,
    inverter_reasons,
)

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.intp]
_B = npt.NDArray[np.bool_]
Parts = list[tuple[_I, _F, _F]]
"""Per class of groups: (groups, piece lower edges, piece upper edges), magnitudes."""
SplitClass = tuple[_I, _I, _B, _F, _F, _F, _F]
"""(groups, inverter matrix, subset masks, subset sums of eu, hi, -el, -lo) of one class."""
DcSide = tuple[_F, _F, _F, _F, _B, _B]
"""Per group: DC lower, upper, band lower, band upper, may charge, may discharge."""


def gsum(labels: _I, weights: npt.ArrayLike, n: int) -> _F:
    """Sum ``weights`` per label (float64, length ``n``)."""
    out: _F = np.bincount(labels, weights=np.asarray(weights, dtype=np.float64), minlength=n)  # type: ignore[assignment]
    return out


def group_usable(topo: _Topology, inv_ok: _B, bat_ok: _B) -> tuple[_B, _B, _B]:
    """Return ``(usable group, usable inverter, usable battery)`` masks.

    A group is usable iff it has a battery, all its batteries are usable and
    at least one inverter is; unlinked components are never usable.
    """
    n_g = topo.n_groups
    inv_ok = inv_ok & ~topo.inv_degree_zero
    bat_ok = bat_ok & ~topo.bat_degree_zero
    n_bad_bat = gsum(topo.bat_group, ~bat_ok, n_g)
    n_ok_inv = gsum(topo.inv_group, inv_ok, n_g)
    usable = topo.has_battery & (n_bad_bat == 0) & (n_ok_inv > 0)
    return usable, inv_ok & usable[topo.inv_group], bat_ok & usable[topo.bat_group]


def group_reasons(
    topo: _Topology,
    inv: InverterArrays,
    bat: BatteryArrays,
    use: tuple[_B, _B],
    avail: tuple[_B | None, _B | None],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """Exclusion codes of the inverters and batteries (`ExclusionReason`).

    Args:
        topo: the topology.
        inv: inverter arrays.
        bat: battery arrays.
        use: the usable inverter and battery masks (`group_usable`).
        avail: the inverter and battery availability masks.
    """
    (inv_use, bat_use), (i_av, b_av) = use, avail
    ri = np.zeros(inv_use.shape[0], dtype=np.int8)
    rb = np.zeros(bat_use.shape[0], dtype=np.int8)
    if not inv_use.all():
        ri = inverter_reasons(*inv, i_av)
        ri[(ri == 0) & topo.inv_degree_zero] = ExclusionReason.UNLINKED
        ri[(ri == 0) & ~inv_use] = ExclusionReason.GROUP_UNUSABLE
    if not bat_use.all():
        rb = battery_reasons(*bat, b_av)
        rb[(rb == 0) & topo.bat_degree_zero] = ExclusionReason.UNLINKED
        rb[(rb == 0) & ~bat_use] = ExclusionReason.GROUP_UNUSABLE
    return ri, rb


def dc_side(
    topo: _Topology, bat: BatteryArrays, usable: _B, bat_use: _B
) -> tuple[DcSide, _F, _F, _F]:
    """DC side of every group from its usable batteries.

    Returns:
        ``(dc, head_up, head_down, capacity)``: the `DcSide`, the
        capacity-weighted SoC headroom (pct) up and down, and the usable
        capacity (Wh) of every group.
    """
    n_g, bg = topo.n_groups, topo.bat_group

    def bz(x: _F) -> _F:
        return np.where(bat_use, x, 0.0)

    b_lo, b_hi, b_el, b_eu, b_soc, b_soc_lo, b_soc_hi, b_cap = bat
    soc, s_lo, s_hi, cap = bz(b_soc), bz(b_soc_lo), bz(b_soc_hi), bz(b_cap)
    dc_lo = gsum(bg, bz(b_lo), n_g)
    dc_hi = gsum(bg, bz(b_hi), n_g)
    if topo.multi_battery:
        # Several batteries on one DC bus: the widest band times their number.
        nb = gsum(bg, bat_use, n_g)
        wl = np.zeros(n_g)
        wu = np.zeros(n_g)
        np.minimum.at(wl, bg, bz(b_el))
        np.maximum.at(wu, bg, bz(b_eu))
        dc_bl, dc_bu = wl * nb, wu * nb
    else:
        dc_bl = gsum(bg, bz(b_el), n_g)
        dc_bu = gsum(bg, bz(b_eu), n_g)
    full = gsum(bg, bat_use & (b_soc >= b_soc_hi), n_g)
    empty = gsum(bg, bat_use & (b_soc <= b_soc_lo), n_g)
    g_cap = gsum(bg, cap, n_g)
    safe = np.where(g_cap > 0.0, g_cap, 1.0)
    head_up = gsum(bg, cap * np.maximum(s_hi - soc, 0.0), n_g) / safe
    head_down = gsum(bg, cap * np.maximum(soc - s_lo, 0.0), n_g) / safe
    up_dc = usable & (full == 0) & (dc_bu <= dc_hi)
    dn_dc = usable & (empty == 0) & (dc_bl >= dc_lo)
    return (dc_lo, dc_hi, dc_bl, dc_bu, up_dc, dn_dc), head_up, head_down, np.where(
        usable, g_cap, 0.0
    )


def ac_parts(
    topo: _Topology, inv: InverterArrays, inv_use: _B
) -> tuple[Parts, Parts, tuple[SplitClass, ...]]:
    """AC side of every group: pieces of the positive and negative side (magnitudes).

    Returns:
        ``(positive parts, negative parts, split data)``; the split data
        lets `allocate` pick the inverter subset of a multi-inverter group.
    """

    def iz(x: _F) -> _F:
        return np.where(inv_use, x, 0.0)

    i_lo, i_hi, i_el, i_eu = (iz(x) for x in inv)
    pos_parts: Parts = []
    neg_parts: Parts = []
    sg, si = topo.single_inv_groups, topo.single_inv_index
    if sg.shape[0]:
        pos_parts.append((sg, i_eu[si][:, None], i_hi[si][:, None]))
        neg_parts.append((sg, -i_el[si][:, None], -i_lo[si][:, None]))
    split = []
    for groups, mat, masks in topo.classes:
        use = inv_use[mat]
        eu_m, hi_m = i_eu[mat], i_hi[mat]
        el_m, lo_m = -i_el[mat], -i_lo[mat]
        fm = masks.astype(np.float64)
        # Subsets containing an unusable inverter are dropped (marked empty).
        any_bad = (~use).astype(np.float64) @ fm > 0
        sub_eu, sub_hi = np.where(any_bad, np.inf, eu_m @ fm), hi_m @ fm
        sub_el, sub_lo = np.where(any_bad, np.inf, el_m @ fm), lo_m @ fm
        pos_parts += _class_parts(groups, use, eu_m, hi_m, sub_eu, sub_hi)
        neg_parts += _class_parts(groups, use, el_m, lo_m, sub_el, sub_lo)
        split.append((groups, mat, masks, sub_eu, sub_hi, sub_el, sub_lo))
    return pos_parts, neg_parts, tuple(split)


def _class_parts(groups: _I, use: _B, e_m: _F, h_m: _F, sub_e: _F, sub_h: _F) -> Parts:
    """One side of the groups with ``m`` inverters: subset sums, or one piece if gap-free.

    Gap-free shortcut: if every usable inverter's span (h - e) is at least
    the largest band edge e, the subset sums chain without gaps (sorted
    prefixes overlap), so the union is [min e, sum h].
    """
    parts: Parts = []
    e_max = np.max(np.where(use, e_m, -np.inf), axis=1)
    span_min = np.min(np.where(use, h_m - e_m, np.inf), axis=1)
    simple = e_max <= span_min
    if simple.any():
        e_min = np.min(np.where(use, e_m, np.inf), axis=1)
        h_sum = np.sum(np.where(use, h_m, 0.0), axis=1)
        parts.append((groups[simple], e_min[simple, None], h_sum[simple, None]))
    if not simple.all():
        parts.append((groups[~simple], sub_e[~simple], sub_h[~simple]))
    return parts


def side_pieces(parts: Parts, dlo: _F, dhi: _F, ok: _B) -> tuple[_F, _F]:
    """Merge one side's parts per group and cut them to the DC side ``[dlo, dhi]``.

    Returns:
        ``(lo, hi)``, each ``(n_groups, P)``, empty pieces ``(+inf, -inf)``;
        groups where ``ok`` is False get no piece.
    """
    n_g = ok.shape[0]
    merged = [(groups, *_merge_rows(a, b)) for groups, a, b in parts]
    width = max((m[1].shape[1] for m in merged), default=1)
    plo = np.full((n_g, width), np.inf)
    phi = np.full((n_g, width), -np.inf)
    for groups, m_lo, m_hi in merged:
        plo[groups, : m_lo.shape[1]] = m_lo
        phi[groups, : m_hi.shape[1]] = m_hi
    plo = np.maximum(plo, dlo[:, None])
    phi = np.minimum(phi, dhi[:, None])
    bad = (plo > phi) | ~ok[:, None]
    return np.where(bad, np.inf, plo), np.where(bad, -np.inf, phi)


def _merge_rows(lo: _F, hi: _F) -> tuple[_F, _F]:
    """Merge each row's intervals into disjoint sorted pieces, padded with empties.

    Empty inputs are marked ``lo > hi``. Returns ``(plo, phi)`` of shape
    ``(rows, k)`` with empty pieces as ``(+inf, -inf)``.
    """
    empty = lo > hi
    lo = np.where(empty, np.inf, lo)
    hi = np.where(empty, -np.inf, hi)
    rows, s = lo.shape
    if s == 1:
        return lo, hi
    order = np.argsort(lo, axis=1, kind="stable")
    lo = np.take_along_axis(lo, order, axis=1)
    hi = np.take_along_axis(hi, order, axis=1)
    cmax = np.maximum.accumulate(hi, axis=1)
    valid = np.isfinite(lo)  # empties sort last: a prefix of each row is valid
    start = valid.copy()
    start[:, 1:] &= lo[:, 1:] > cmax[:, :-1]
    # A valid entry ends its piece if the next entry starts a piece or is empty.
    end = valid.copy()
    end[:, :-1] &= start[:, 1:] | ~valid[:, 1:]
    pid = np.cumsum(start, axis=1) - 1
    k = max(int(pid[:, -1].max(initial=0)) + 1, 1)
    plo = np.full((rows, k), np.inf)
    phi = np.full((rows, k), -np.inf)
    r_s, c_s = np.nonzero(start)
    plo[r_s, pid[r_s, c_s]] = lo[r_s, c_s]
    r_e, c_e = np.nonzero(end)
    phi[r_e, pid[r_e, c_e]] = cmax[r_e, c_e]
    return plo, phi


def hull_and_pieces(
    pos: tuple[_F, _F], neg: tuple[_F, _F]
) -> tuple[tuple[_F, _F, _F, _F], tuple[_F, _F] | None]:
    """Hull and band of every group from its positive and negative pieces.

    Args:
        pos: positive side pieces (`side_pieces`).
        neg: negative side pieces (magnitudes, `side_pieces`).

    Returns:
        ``((lower, upper, band lower, band upper), pieces)``: 0 where a side
        is empty; ``pieces`` as `Fleet.group_pieces`, or None when no group
        has more than one piece per side (the hull and band describe it).
    """
    (pos_lo, pos_hi), (neg_lo, neg_hi) = pos, neg
    n_pos = np.isfinite(pos_lo).sum(axis=1)
    n_neg = np.isfinite(neg_lo).sum(axis=1)
    g_hi = np.where(n_pos > 0, np.max(pos_hi, axis=1, initial=-np.inf), 0.0)
    g_bu = np.where(n_pos > 0, np.min(pos_lo, axis=1, initial=np.inf), 0.0)
    g_lo = np.where(n_neg > 0, -np.max(neg_hi, axis=1, initial=-np.inf), 0.0)
    g_bl = np.where(n_neg > 0, -np.min(neg_lo, axis=1, initial=np.inf), 0.0)
    pieces = None
    if (n_pos > 1).any() or (n_neg > 1).any():
        zero = np.zeros((pos_lo.shape[0], 1))
        pieces = (
            np.concatenate((-neg_hi, zero, pos_lo), axis=1),
            np.concatenate((-neg_lo, zero, pos_hi), axis=1),
        )
    return (g_lo, g_hi, g_bl, g_bu), pieces
