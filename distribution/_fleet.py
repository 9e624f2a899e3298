"""`Fleet`: validated, columnar snapshot of inverters, batteries and their links.

A `Fleet` is built from numpy arrays (one entry per component), typically
snapshotted from live telemetry every control cycle. Construction validates
once, vectorised, and precomputes per-group data for `allocate`:

* **Raises** `DistributionError` (a `ValueError`) for structural problems:
  an array that is not 1-D or has the wrong length, `links` not an integer
  ``(k, 2)`` array or with an index out of range, a negative
  ``battery_capacity_wh``, a non-boolean availability mask, or a group with
  more than `MAX_GROUP_INVERTERS` inverters.
* **Excludes** (never raises) components with live-data problems, reported
  per component as an `ExclusionReason` code: unavailable, a non-finite
  bound / SoC / capacity, ``lower > upper`` or 0 outside the inclusion
  interval, zero capacity or SoC lower limit above the upper one, an
  exclusion band not inside its inclusion interval (or not around 0), and
  components without links. An excluded inverter gets 0 W. A group is
  usable only if all its batteries are usable and at least one inverter is;
  otherwise all its components are excluded with `GROUP_UNUSABLE`
  (power through a shared DC bus would reach the unusable battery).

Groups are the connected components of the inverter–battery link graph. The
identity 1:1 topology (``links[i] == (i, i)``, or ``links=None`` with as many
inverters as batteries) takes a fast path without graph search; other
topologies are derived with `scipy.sparse.csgraph.connected_components` and
cached by the bytes of ``links``, so rebuilding a fleet each cycle with the
same links costs one dictionary lookup.

Per group, the allowed total power is a union of closed intervals ("pieces")
that always contains 0:

* AC side: the sums of the inverters' allowed sets. Inverters of one group
  never oppose each other (that would only circulate power through their
  shared DC bus), so the positive side is the union over non-empty inverter
  subsets T of ``[sum_T excl_upper, sum_T upper]`` (enumerated exactly, up to
  `MAX_GROUP_INVERTERS` inverters), and symmetrically for the negative side.
* DC side: ``[sum battery_lower_w, sum battery_upper_w]`` minus the battery
  band; for several batteries on one DC bus (whose split we do not control)
  the band is the widest battery band times the number of batteries.
* SoC: if any battery of a group is at or above its upper SoC limit the
  group gets no charging power; at or below the lower limit, no discharging.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import DistributionError

__all__ = ["MAX_GROUP_INVERTERS", "ExclusionReason", "Fleet"]

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.intp]
_B = npt.NDArray[np.bool_]

MAX_GROUP_INVERTERS = 12
"""Largest number of inverters in one group (the AC set is enumerated exactly)."""


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


@dataclass(frozen=True, slots=True)
class _Topology:
    """Static structure derived from ``links`` (cached)."""

    n_groups: int
    inv_group: _I
    bat_group: _I
    inv_degree_zero: _B
    bat_degree_zero: _B
    single_inv_groups: _I  # groups with exactly one inverter
    single_inv_index: _I  # that inverter
    classes: tuple[tuple[_I, _I, _B], ...]  # (groups, inverter matrix (G_m, m), masks (m, S))
    has_battery: _B
    n_inverters_in_group: _I
    multi_battery: bool


_TOPOLOGY_CACHE: dict[tuple[int, int, bytes], _Topology] = {}
_TOPOLOGY_CACHE_SIZE = 8
_SUBSET_MASKS: dict[int, _B] = {}
_IDENTITY_LINKS: dict[int, _I] = {}


def _subset_masks(m: int) -> _B:
    """Return the ``(m, 2**m - 1)`` membership matrix of non-empty subsets."""
    masks = _SUBSET_MASKS.get(m)
    if masks is None:
        codes = np.arange(1, 2**m)
        masks = ((codes[None, :] >> np.arange(m)[:, None]) & 1).astype(bool)
        _SUBSET_MASKS[m] = masks
    return masks


def _topology(n_inv: int, n_bat: int, links: _I) -> _Topology:
    """Derive (or fetch from the cache) the groups of a link array."""
    key = (n_inv, n_bat, links.tobytes())
    topo = _TOPOLOGY_CACHE.get(key)
    if topo is not None:
        return topo
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = n_inv + n_bat
    graph = coo_matrix(
        (np.ones(links.shape[0]), (links[:, 0], n_inv + links[:, 1])), shape=(n, n)
    )
    n_groups, labels = connected_components(graph, directed=False)
    labels = labels.astype(np.intp)
    inv_group = labels[:n_inv]
    bat_group = labels[n_inv:]
    inv_deg0 = np.bincount(links[:, 0], minlength=n_inv) == 0
    bat_deg0 = np.bincount(links[:, 1], minlength=n_bat) == 0
    n_in_group = np.bincount(inv_group, minlength=n_groups)
    n_bat_in_group = np.bincount(bat_group, minlength=n_groups)
    order = np.argsort(inv_group, kind="stable")
    starts = np.concatenate(([0], np.cumsum(n_in_group)[:-1]))
    single = np.flatnonzero(n_in_group == 1)
    single_idx = order[starts[single]]
    classes: list[tuple[_I, _I, _B]] = []
    for m in np.unique(n_in_group[n_in_group >= 2]):
        m = int(m)
        if m > MAX_GROUP_INVERTERS:
            raise DistributionError(
                "links",
                f"a group with {m} inverters",
                f"at most {MAX_GROUP_INVERTERS} inverters per group are supported",
            )
        groups = np.flatnonzero(n_in_group == m)
        mat = order[starts[groups][:, None] + np.arange(m)[None, :]]
        classes.append((groups, mat, _subset_masks(m)))
    topo = _Topology(
        n_groups=int(n_groups),
        inv_group=inv_group,
        bat_group=bat_group,
        inv_degree_zero=inv_deg0,
        bat_degree_zero=bat_deg0,
        single_inv_groups=single,
        single_inv_index=single_idx,
        classes=tuple(classes),
        has_battery=n_bat_in_group > 0,
        n_inverters_in_group=n_in_group,
        multi_battery=bool((n_bat_in_group > 1).any()),
    )
    if len(_TOPOLOGY_CACHE) >= _TOPOLOGY_CACHE_SIZE:
        _TOPOLOGY_CACHE.pop(next(iter(_TOPOLOGY_CACHE)))
    _TOPOLOGY_CACHE[key] = topo
    return topo


def _gsum(labels: _I, weights: npt.ArrayLike, n: int) -> _F:
    """Sum ``weights`` per label (float64, length ``n``)."""
    out: _F = np.bincount(labels, weights=np.asarray(weights, dtype=np.float64), minlength=n)  # type: ignore[assignment]
    return out


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


def _mask(name: str, value: Any, n: int) -> _B | None:
    """Convert an optional availability mask, or raise."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise DistributionError(name, f"dtype {arr.dtype}", "must be a boolean array")
    if arr.shape != (n,):
        raise DistributionError(name, f"shape {arr.shape}", f"must have shape ({n},)")
    return arr


def _inverter_reasons(
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


def _battery_reasons(
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


class Fleet:
    """A validated snapshot of inverters, batteries and links (see module docstring).

    All powers in watts, passive sign convention (positive = charging), SoC
    in percent, capacity in watt-hours. Arrays are copied only if a dtype
    conversion is needed; do not mutate them while the fleet is in use.

    Args:
        inverter_lower_w: (n_inv,) inclusion lower bound, ``<= 0``.
        inverter_upper_w: (n_inv,) inclusion upper bound, ``>= 0``.
        inverter_excl_lower_w: (n_inv,) exclusion band lower edge, ``<= 0``
            (``None`` or 0 = no band). Setpoints strictly inside the band,
            other than 0, are forbidden.
        inverter_excl_upper_w: (n_inv,) exclusion band upper edge, ``>= 0``.
        battery_soc_pct: (n_bat,) state of charge.
        battery_soc_lower_pct: (n_bat,) no discharging at or below this SoC.
        battery_soc_upper_pct: (n_bat,) no charging at or above this SoC.
        battery_capacity_wh: (n_bat,) usable capacity, ``>= 0`` (negative raises).
        battery_lower_w: (n_bat,) DC inclusion lower bound, ``<= 0``.
        battery_upper_w: (n_bat,) DC inclusion upper bound, ``>= 0``.
        battery_excl_lower_w: (n_bat,) optional DC exclusion band lower edge.
        battery_excl_upper_w: (n_bat,) optional DC exclusion band upper edge.
        links: (k, 2) integer pairs ``(inverter index, battery index)``;
            ``None`` means 1:1 (inverter i drives battery i).
        inverter_available: optional (n_inv,) bool mask, False = excluded.
        battery_available: optional (n_bat,) bool mask, False = excluded.

    Raises:
        DistributionError: on structural problems (see module docstring).
    """

    __slots__ = (
        "_all_ok",
        "_b_cap",
        "_b_el",
        "_b_eu",
        "_b_hi",
        "_b_lo",
        "_b_soc",
        "_b_soc_hi",
        "_b_soc_lo",
        "_bat_ok",
        "_battery_exclusion",
        "_chk",
        "_dc",
        "_g_bl",
        "_g_bu",
        "_g_cap",
        "_g_head_down",
        "_g_head_up",
        "_g_hi",
        "_g_lo",
        "_i_el",
        "_i_eu",
        "_i_hi",
        "_i_lo",
        "_identity",
        "_inv_ok",
        "_inverter_exclusion",
        "_n_bat",
        "_n_inv",
        "_pieces",
        "_simple",
        "_split",
        "_sum_hi",
        "_sum_lo",
        "_topo",
    )

    _inv_ok: _B
    _bat_ok: _B
    _g_lo: _F
    _g_hi: _F
    _g_bl: _F
    _g_bu: _F
    _g_cap: _F
    _all_ok: bool

    def __init__(
        self,
        *,
        inverter_lower_w: npt.ArrayLike,
        inverter_upper_w: npt.ArrayLike,
        inverter_excl_lower_w: npt.ArrayLike | None = None,
        inverter_excl_upper_w: npt.ArrayLike | None = None,
        battery_soc_pct: npt.ArrayLike,
        battery_soc_lower_pct: npt.ArrayLike,
        battery_soc_upper_pct: npt.ArrayLike,
        battery_capacity_wh: npt.ArrayLike,
        battery_lower_w: npt.ArrayLike,
        battery_upper_w: npt.ArrayLike,
        battery_excl_lower_w: npt.ArrayLike | None = None,
        battery_excl_upper_w: npt.ArrayLike | None = None,
        links: npt.ArrayLike | None,
        inverter_available: npt.ArrayLike | None = None,
        battery_available: npt.ArrayLike | None = None,
    ) -> None:
        """Validate the arrays and precompute the per-group allowed sets."""
        f64 = np.float64
        try:
            i_lo = np.asarray(inverter_lower_w, f64)
            i_hi = np.asarray(inverter_upper_w, f64)
            soc = np.asarray(battery_soc_pct, f64)
            s_lo = np.asarray(battery_soc_lower_pct, f64)
            s_hi = np.asarray(battery_soc_upper_pct, f64)
            cap = np.asarray(battery_capacity_wh, f64)
            b_lo = np.asarray(battery_lower_w, f64)
            b_hi = np.asarray(battery_upper_w, f64)
            n_inv = i_lo.shape[0] if i_lo.ndim == 1 else -1
            n_bat = soc.shape[0] if soc.ndim == 1 else -1
            zi = np.zeros(max(n_inv, 0))
            zb = np.zeros(max(n_bat, 0))
            i_el = zi if inverter_excl_lower_w is None else np.asarray(inverter_excl_lower_w, f64)
            i_eu = zi if inverter_excl_upper_w is None else np.asarray(inverter_excl_upper_w, f64)
            b_el = zb if battery_excl_lower_w is None else np.asarray(battery_excl_lower_w, f64)
            b_eu = zb if battery_excl_upper_w is None else np.asarray(battery_excl_upper_w, f64)
            si = (n_inv,)
            sb = (n_bat,)
            shapes_ok = (
                i_lo.shape == i_hi.shape == i_el.shape == i_eu.shape == si
                and soc.shape == s_lo.shape == s_hi.shape == cap.shape == sb
                and b_lo.shape == b_hi.shape == b_el.shape == b_eu.shape == sb
            )
        except (TypeError, ValueError):
            shapes_ok = False
        if not shapes_ok:
            # Slow path: find the first offending field and name it.
            _first_bad_field(
                {
                    "inverter_lower_w": inverter_lower_w,
                    "inverter_upper_w": inverter_upper_w,
                    "inverter_excl_lower_w": inverter_excl_lower_w,
                    "inverter_excl_upper_w": inverter_excl_upper_w,
                },
                {
                    "battery_soc_pct": battery_soc_pct,
                    "battery_soc_lower_pct": battery_soc_lower_pct,
                    "battery_soc_upper_pct": battery_soc_upper_pct,
                    "battery_capacity_wh": battery_capacity_wh,
                    "battery_lower_w": battery_lower_w,
                    "battery_upper_w": battery_upper_w,
                    "battery_excl_lower_w": battery_excl_lower_w,
                    "battery_excl_upper_w": battery_excl_upper_w,
                },
            )
        i_av = _mask("inverter_available", inverter_available, n_inv)
        b_av = _mask("battery_available", battery_available, n_bat)

        identity, topo = self._links(links, n_inv, n_bat)

        # A band reaching past its interval (an interval shrunk by SoC: a full
        # battery's inverter has upper 0 but keeps its ±2 kW band) is live data,
        # not a fault: the side the band covers is simply empty but for 0 W.
        i_lo, i_hi, i_el, i_eu = _shadow_band(i_lo, i_hi, i_el, i_eu)
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
        if np.count_nonzero(bat_ok) != n_bat and np.count_nonzero(cap < 0.0):
            bad = int(np.flatnonzero(cap < 0.0)[0])
            raise DistributionError(
                "battery_capacity_wh", f"{cap[bad]} at battery {bad}", "must not be negative"
            )

        self._n_inv = n_inv
        self._n_bat = n_bat
        self._i_lo, self._i_hi, self._i_el, self._i_eu = i_lo, i_hi, i_el, i_eu
        self._b_lo, self._b_hi, self._b_el, self._b_eu = b_lo, b_hi, b_el, b_eu
        self._b_soc, self._b_soc_lo, self._b_soc_hi, self._b_cap = soc, s_lo, s_hi, cap
        self._identity = identity
        self._topo = topo
        self._pieces: tuple[_F, _F] | None = None
        self._simple = True
        self._dc: tuple[_F, _F, _F, _F, _B, _B] | None = None
        self._g_head_up: _F | None = None
        self._g_head_down: _F | None = None
        self._split: tuple[tuple[_I, _I, _B, _F, _F, _F, _F], ...] = ()

        if identity:
            self._init_identity(inv_ok, bat_ok, i_av, b_av)
        else:
            assert topo is not None
            self._init_general(topo, inv_ok, bat_ok, i_av, b_av)
        if not identity:
            self._all_ok = bool(self._inv_ok.all())
        self._sum_lo: float | None = None
        self._sum_hi: float | None = None

    @staticmethod
    def _links(links: Any, n_inv: int, n_bat: int) -> tuple[bool, _Topology | None]:
        """Validate ``links``; return (identity?, topology or None)."""
        if links is None:
            if n_inv != n_bat:
                raise DistributionError(
                    "links",
                    None,
                    f"None (1:1) needs as many inverters ({n_inv}) as batteries ({n_bat})",
                )
            return True, None
        arr = np.asarray(links)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DistributionError("links", f"shape {arr.shape}", "must have shape (k, 2)")
        if arr.dtype.kind not in "iu":
            raise DistributionError("links", f"dtype {arr.dtype}", "must be an integer array")
        k = arr.shape[0]
        if k == n_inv == n_bat:
            ident = _IDENTITY_LINKS.get(k)
            if ident is None:
                ident = np.repeat(np.arange(k)[:, None], 2, axis=1)
                if len(_IDENTITY_LINKS) > 16:
                    _IDENTITY_LINKS.clear()
                _IDENTITY_LINKS[k] = ident
            if np.count_nonzero(arr == ident) == 2 * k:
                return True, None
        if k:
            col_inv = arr[:, 0]
            col_bat = arr[:, 1]
            if int(arr.min()) < 0 or int(col_inv.max()) >= n_inv or int(col_bat.max()) >= n_bat:
                bad_inv = np.flatnonzero((col_inv < 0) | (col_inv >= n_inv))
                if bad_inv.size:
                    j = int(bad_inv[0])
                    raise DistributionError(
                        "links",
                        f"links[{j}] = ({arr[j, 0]}, {arr[j, 1]})",
                        f"inverter index out of range [0, {n_inv})",
                    )
                j = int(np.flatnonzero((col_bat < 0) | (col_bat >= n_bat))[0])
                raise DistributionError(
                    "links",
                    f"links[{j}] = ({arr[j, 0]}, {arr[j, 1]})",
                    f"battery index out of range [0, {n_bat})",
                )
        return False, _topology(n_inv, n_bat, arr.astype(np.intp, copy=False))

    def _init_identity(
        self, inv_ok: _B, bat_ok: _B, i_av: _B | None, b_av: _B | None
    ) -> None:
        """Fast path for 1:1 links: group g = inverter g = battery g."""
        n = self._n_inv
        soc, s_lo, s_hi = self._b_soc, self._b_soc_lo, self._b_soc_hi
        hi = np.minimum(self._i_hi, self._b_hi)
        lo = np.maximum(self._i_lo, self._b_lo)
        bu = np.maximum(self._i_eu, self._b_eu)
        bl = np.minimum(self._i_el, self._b_el)
        # Combined original bounds of each pair, for the final re-check.
        self._chk = (lo, hi, bl, bu)
        # A side is usable iff the SoC allows it and the band leaves room.
        up_ok = (soc < s_hi) & (bu <= hi)
        dn_ok = (soc > s_lo) & (bl >= lo)
        ok = inv_ok & bat_ok
        self._all_ok = all_ok = np.count_nonzero(ok) == n
        if all_ok:
            # All finite here: multiplying by a mask is the cheapest select.
            self._g_hi = hi * up_ok
            self._g_bu = bu * up_ok
            self._g_lo = lo * dn_ok
            self._g_bl = bl * dn_ok
            self._g_cap = self._b_cap
            self._inverter_exclusion = np.zeros(n, dtype=np.int8)
            self._battery_exclusion = self._inverter_exclusion
        else:
            up_ok &= ok
            dn_ok &= ok
            self._g_hi = np.where(up_ok, hi, 0.0)
            self._g_bu = np.where(up_ok, bu, 0.0)
            self._g_lo = np.where(dn_ok, lo, 0.0)
            self._g_bl = np.where(dn_ok, bl, 0.0)
            self._g_cap = np.where(ok, self._b_cap, 0.0)
            ri = _inverter_reasons(self._i_lo, self._i_hi, self._i_el, self._i_eu, i_av)
            rb = _battery_reasons(
                self._b_lo, self._b_hi, self._b_el, self._b_eu,
                soc, s_lo, s_hi, self._b_cap, b_av,
            )
            self._inverter_exclusion = np.where(
                (ri == 0) & (rb != 0), np.int8(ExclusionReason.GROUP_UNUSABLE), ri
            ).astype(np.int8)
            self._battery_exclusion = np.where(
                (rb == 0) & (ri != 0), np.int8(ExclusionReason.GROUP_UNUSABLE), rb
            ).astype(np.int8)
        self._inv_ok = ok
        self._bat_ok = ok

    def _head(self, up: bool) -> _F:
        """(n_groups,) capacity-weighted SoC headroom (pct) in one direction."""
        if self._g_head_up is None:
            if up:
                return np.maximum(self._b_soc_hi - self._b_soc, 0.0)
            return np.maximum(self._b_soc - self._b_soc_lo, 0.0)
        return self._g_head_up if up else self._g_head_down  # type: ignore[return-value]

    def _init_general(
        self, topo: _Topology, inv_ok: _B, bat_ok: _B, i_av: _B | None, b_av: _B | None
    ) -> None:
        """General topology: groups from the (cached) link graph."""
        n_g = topo.n_groups
        ig, bg = topo.inv_group, topo.bat_group
        inv_ok = inv_ok & ~topo.inv_degree_zero
        bat_ok = bat_ok & ~topo.bat_degree_zero
        n_bad_bat = _gsum(bg, ~bat_ok, n_g)
        n_ok_inv = _gsum(ig, inv_ok, n_g)
        usable = topo.has_battery & (n_bad_bat == 0) & (n_ok_inv > 0)
        inv_use = inv_ok & usable[ig]
        bat_use = bat_ok & usable[bg]
        self._inv_ok = inv_use
        self._bat_ok = bat_use

        # Reasons.
        ri = np.zeros(self._n_inv, dtype=np.int8)
        rb = np.zeros(self._n_bat, dtype=np.int8)
        if not inv_use.all():
            ri = _inverter_reasons(self._i_lo, self._i_hi, self._i_el, self._i_eu, i_av)
            ri[(ri == 0) & topo.inv_degree_zero] = ExclusionReason.UNLINKED
            ri[(ri == 0) & ~inv_use] = ExclusionReason.GROUP_UNUSABLE
        if not bat_use.all():
            rb = _battery_reasons(
                self._b_lo, self._b_hi, self._b_el, self._b_eu,
                self._b_soc, self._b_soc_lo, self._b_soc_hi, self._b_cap, b_av,
            )
            rb[(rb == 0) & topo.bat_degree_zero] = ExclusionReason.UNLINKED
            rb[(rb == 0) & ~bat_use] = ExclusionReason.GROUP_UNUSABLE
        self._inverter_exclusion = ri
        self._battery_exclusion = rb

        # DC side per group (batteries of usable groups only; others zeroed).
        def bz(x: _F) -> _F:
            return np.where(bat_use, x, 0.0)

        soc, s_lo, s_hi = bz(self._b_soc), bz(self._b_soc_lo), bz(self._b_soc_hi)
        cap = bz(self._b_cap)
        dc_lo = _gsum(bg, bz(self._b_lo), n_g)
        dc_hi = _gsum(bg, bz(self._b_hi), n_g)
        nb = _gsum(bg, bat_use, n_g)
        if topo.multi_battery:
            wl = np.zeros(n_g)
            wu = np.zeros(n_g)
            np.minimum.at(wl, bg, bz(self._b_el))
            np.maximum.at(wu, bg, bz(self._b_eu))
            dc_bl, dc_bu = wl * nb, wu * nb
        else:
            dc_bl = _gsum(bg, bz(self._b_el), n_g)
            dc_bu = _gsum(bg, bz(self._b_eu), n_g)
        full = _gsum(bg, bat_use & (self._b_soc >= self._b_soc_hi), n_g)
        empty = _gsum(bg, bat_use & (self._b_soc <= self._b_soc_lo), n_g)
        g_cap = _gsum(bg, cap, n_g)
        safe = np.where(g_cap > 0.0, g_cap, 1.0)
        self._g_head_up = _gsum(bg, cap * np.maximum(s_hi - soc, 0.0), n_g) / safe
        self._g_head_down = _gsum(bg, cap * np.maximum(soc - s_lo, 0.0), n_g) / safe
        self._g_cap = np.where(usable, g_cap, 0.0)
        up_dc = usable & (full == 0) & (dc_bu <= dc_hi)
        dn_dc = usable & (empty == 0) & (dc_bl >= dc_lo)

        # AC side per group: pieces of the positive side (magnitudes) and negative side.
        def iz(x: _F) -> _F:
            return np.where(inv_use, x, 0.0)

        i_lo, i_hi, i_el, i_eu = iz(self._i_lo), iz(self._i_hi), iz(self._i_el), iz(self._i_eu)
        pos_parts: list[tuple[_I, _F, _F]] = []
        neg_parts: list[tuple[_I, _F, _F]] = []
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
            sub_eu, sub_hi = eu_m @ fm, hi_m @ fm
            sub_el, sub_lo = el_m @ fm, lo_m @ fm
            sub_eu = np.where(any_bad, np.inf, sub_eu)
            sub_el = np.where(any_bad, np.inf, sub_el)
            for parts, e_m, h_m, sub_e, sub_h in (
                (pos_parts, eu_m, hi_m, sub_eu, sub_hi),
                (neg_parts, el_m, lo_m, sub_el, sub_lo),
            ):
                # Gap-free shortcut: if every usable inverter's span (h - e) is at
                # least the largest band edge e, the subset sums chain without gaps
                # (sorted prefixes overlap), so the union is [min e, sum h].
                e_max = np.max(np.where(use, e_m, -np.inf), axis=1)
                span_min = np.min(np.where(use, h_m - e_m, np.inf), axis=1)
                simple = e_max <= span_min
                if simple.any():
                    e_min = np.min(np.where(use, e_m, np.inf), axis=1)
                    h_sum = np.sum(np.where(use, h_m, 0.0), axis=1)
                    parts.append((groups[simple], e_min[simple, None], h_sum[simple, None]))
                if not simple.all():
                    parts.append((groups[~simple], sub_e[~simple], sub_h[~simple]))
            split.append((groups, mat, masks, sub_eu, sub_hi, sub_el, sub_lo))
        self._split = tuple(split)

        def side(parts: list[tuple[_I, _F, _F]], dlo: _F, dhi: _F, ok: _B) -> tuple[_F, _F]:
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

        pos_lo, pos_hi = side(pos_parts, dc_bu, dc_hi, up_dc)
        neg_lo, neg_hi = side(neg_parts, -dc_bl, -dc_lo, dn_dc)
        n_pos = np.isfinite(pos_lo).sum(axis=1)
        n_neg = np.isfinite(neg_lo).sum(axis=1)
        self._g_hi = np.where(n_pos > 0, np.max(pos_hi, axis=1, initial=-np.inf), 0.0)
        self._g_bu = np.where(n_pos > 0, np.min(pos_lo, axis=1, initial=np.inf), 0.0)
        self._g_lo = np.where(n_neg > 0, -np.max(neg_hi, axis=1, initial=-np.inf), 0.0)
        self._g_bl = np.where(n_neg > 0, -np.min(neg_lo, axis=1, initial=np.inf), 0.0)
        if (n_pos > 1).any() or (n_neg > 1).any():
            self._simple = False
            zero = np.zeros((n_g, 1))
            self._pieces = (
                np.concatenate((-neg_hi, zero, pos_lo), axis=1),
                np.concatenate((-neg_lo, zero, pos_hi), axis=1),
            )
        self._dc = (dc_lo, dc_hi, dc_bl, dc_bu, up_dc, dn_dc)

    # ------------------------------------------------------------------ public views

    @property
    def n_inverters(self) -> int:
        """Number of inverters."""
        return int(self._n_inv)

    @property
    def n_batteries(self) -> int:
        """Number of batteries."""
        return int(self._n_bat)

    @property
    def n_groups(self) -> int:
        """Number of groups (connected components of the link graph)."""
        if self._identity:
            return int(self._n_inv)
        assert self._topo is not None
        return int(self._topo.n_groups)

    @property
    def inverter_group(self) -> _I:
        """(n_inv,) group index of every inverter."""
        if self._identity:
            return np.arange(self._n_inv)
        assert self._topo is not None
        return self._topo.inv_group

    @property
    def battery_group(self) -> _I:
        """(n_bat,) group index of every battery."""
        if self._identity:
            return np.arange(self._n_bat)
        assert self._topo is not None
        return self._topo.bat_group

    @property
    def inverter_exclusion(self) -> npt.NDArray[np.int8]:
        """(n_inv,) `ExclusionReason` codes (0 = included)."""
        return self._inverter_exclusion

    @property
    def battery_exclusion(self) -> npt.NDArray[np.int8]:
        """(n_bat,) `ExclusionReason` codes (0 = included)."""
        return self._battery_exclusion

    @property
    def group_lower_w(self) -> _F:
        """(n_groups,) lowest allowed group power (SoC and bounds applied), <= 0."""
        return self._g_lo

    @property
    def group_upper_w(self) -> _F:
        """(n_groups,) highest allowed group power (SoC and bounds applied), >= 0."""
        return self._g_hi

    @property
    def lower_w(self) -> float:
        """Fleet lower bound: sum of the usable groups' lower bounds."""
        if self._sum_lo is None:
            self._sum_lo = float(np.add.reduce(self._g_lo))
        return self._sum_lo

    @property
    def upper_w(self) -> float:
        """Fleet upper bound: sum of the usable groups' upper bounds."""
        if self._sum_hi is None:
            self._sum_hi = float(np.add.reduce(self._g_hi))
        return self._sum_hi

    def group_pieces(self) -> tuple[_F, _F]:
        """Allowed set of every group as sorted closed intervals.

        Returns:
            ``(lo, hi)``, each ``(n_groups, P)``; empty pieces are
            ``(+inf, -inf)``. Every group's set contains 0.
        """
        if self._pieces is None:
            z = np.zeros(self._g_lo.shape[0])
            neg_ok = self._g_lo < 0.0
            pos_ok = self._g_hi > 0.0
            self._pieces = (
                np.stack(
                    (np.where(neg_ok, self._g_lo, np.inf), z, np.where(pos_ok, self._g_bu, np.inf)),
                    axis=1,
                ),
                np.stack(
                    (
                        np.where(neg_ok, self._g_bl, -np.inf),
                        z,
                        np.where(pos_ok, self._g_hi, -np.inf),
                    ),
                    axis=1,
                ),
            )
        return self._pieces
