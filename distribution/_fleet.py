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
topologies are derived with `group_links` (`distribution._groups`) and cached
by the bytes of ``links``, so rebuilding a fleet each cycle with the same
links costs one dictionary lookup. Input checks live in
`distribution._inputs`, the general-topology steps in `distribution._general`.

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

import numpy as np
import numpy.typing as npt

from ._general import (
    DcSide,
    SplitClass,
    ac_parts,
    dc_side,
    group_reasons,
    group_usable,
    hull_and_pieces,
    side_pieces,
)
from ._groups import MAX_GROUP_INVERTERS, _Topology, links_topology
from ._inputs import (
    BatteryArrays,
    ExclusionReason,
    InverterArrays,
    battery_reasons,
    inverter_reasons,
    mask,
    read_arrays,
    usable,
)

__all__ = ["MAX_GROUP_INVERTERS", "ExclusionReason", "Fleet"]

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.intp]
_B = npt.NDArray[np.bool_]


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
        "_band_tie",
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
        n_inv, n_bat, inv, bat = read_arrays(
            (inverter_lower_w, inverter_upper_w, inverter_excl_lower_w, inverter_excl_upper_w),
            (
                battery_soc_pct, battery_soc_lower_pct, battery_soc_upper_pct,
                battery_capacity_wh, battery_lower_w, battery_upper_w,
                battery_excl_lower_w, battery_excl_upper_w,
            ),
        )
        i_av = mask("inverter_available", inverter_available, n_inv)
        b_av = mask("battery_available", battery_available, n_bat)
        topo = links_topology(links, n_inv, n_bat)
        inv, bat, inv_ok, bat_ok = usable(inv, bat, i_av, b_av)

        self._n_inv = n_inv
        self._n_bat = n_bat
        self._i_lo, self._i_hi, self._i_el, self._i_eu = inv
        (
            self._b_lo, self._b_hi, self._b_el, self._b_eu,
            self._b_soc, self._b_soc_lo, self._b_soc_hi, self._b_cap,
        ) = bat
        self._identity = topo is None
        self._topo = topo
        self._pieces: tuple[_F, _F] | None = None
        self._simple = True
        self._dc: DcSide | None = None
        self._g_head_up: _F | None = None
        self._g_head_down: _F | None = None
        self._split: tuple[SplitClass, ...] = ()
        if topo is None:
            self._init_identity(inv_ok, bat_ok, i_av, b_av)
        else:
            self._init_general(topo, (inv, bat), (inv_ok, bat_ok), (i_av, b_av))
            self._all_ok = bool(self._inv_ok.all())
        self._sum_lo: float | None = None
        self._sum_hi: float | None = None
        self._band_tie: bool | None = None

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
            ri = inverter_reasons(self._i_lo, self._i_hi, self._i_el, self._i_eu, i_av)
            rb = battery_reasons(
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
        self,
        topo: _Topology,
        arrays: tuple[InverterArrays, BatteryArrays],
        ok: tuple[_B, _B],
        avail: tuple[_B | None, _B | None],
    ) -> None:
        """General topology: groups from the (cached) link graph (`distribution._general`)."""
        inv, bat = arrays
        use_g, inv_use, bat_use = group_usable(topo, *ok)
        self._inv_ok = inv_use
        self._bat_ok = bat_use
        self._inverter_exclusion, self._battery_exclusion = group_reasons(
            topo, inv, bat, (inv_use, bat_use), avail
        )
        dc, self._g_head_up, self._g_head_down, self._g_cap = dc_side(topo, bat, use_g, bat_use)
        dc_lo, dc_hi, dc_bl, dc_bu, up_dc, dn_dc = self._dc = dc
        pos_parts, neg_parts, self._split = ac_parts(topo, inv, inv_use)
        hull, pieces = hull_and_pieces(
            side_pieces(pos_parts, dc_bu, dc_hi, up_dc),
            side_pieces(neg_parts, -dc_bl, -dc_lo, dn_dc),
        )
        self._g_lo, self._g_hi, self._g_bl, self._g_bu = hull
        if pieces is not None:
            self._simple = False
            self._pieces = pieces

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
        return self._n_inv if self._topo is None else self._topo.n_groups

    @property
    def inverter_group(self) -> _I:
        """(n_inv,) group index of every inverter."""
        return np.arange(self._n_inv) if self._topo is None else self._topo.inv_group

    @property
    def battery_group(self) -> _I:
        """(n_bat,) group index of every battery."""
        return np.arange(self._n_bat) if self._topo is None else self._topo.bat_group

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

    def _band_ties(self) -> bool:
        """Whether some group has a negative side without a band (``lo < 0 == bl``).

        Its set has two pieces ending at 0, ``[lo, 0]`` and ``{0}``; the band
        repair must break that tie as the generic piece search does.
        """
        if self._band_tie is None:
            self._band_tie = bool(np.count_nonzero((self._g_bl == 0.0) & (self._g_lo < 0.0)))
        return self._band_tie

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
