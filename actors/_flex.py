"""PV inverters and EV chargers as controlled components: what is usable, needed and capped.

The rules `RoundPlanner` applies to the PV inverters and EV chargers of a
`FleetIndex` (after its battery inverters), pure given the state table:

* `flex_state` – the usable ones now as `distribution.PvInverters` /
  `distribution.EvChargers`, each EV charger's need, and what our caps take off
  now (measured), as a `FlexState` (the measurements' flex fields). A lift (the
  full-production setpoint, `PV_MARGIN` short of all of it) is ours until it
  lapses: what it holds back counts as taken off, so the batteries take that
  production over while the lift is in force instead of when it lapses (the
  sun's last `PV_MARGIN` then arrives at once, an export for a cycle plus the
  batteries' delay).
* `flex_send` – which of their setpoints go out: a capped one by the
  deadband/renewal rule (`needs_send`; a pause to 0 W also to one never
  commanded); an uncapped one only while a cap of ours still binds it.
* `pv_full_w` – a PV inverter's full-production setpoint, `PV_MARGIN` above its
  lower bound.
* `closing_w` – what the batteries about to reach a SoC limit deliver now: PV / EV
  take that part over `HANDOVER_S` ahead (`distribution.allocate_kinds`).

EV "need": the API tells neither a car's energy request nor its departure, so a
charger whose draw is at its limit (ours, or its rating) is taken to need its
rating, and one drawing less than its limit needs what it draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import distribution as _dist

from ._dispatch import SetpointBook, needs_send
from ._state import BoolArray, FloatArray, StateTable

if TYPE_CHECKING:
    from ._plan import FleetIndex

__all__ = ["HANDOVER_S", "PV_MARGIN", "FlexState", "closing_w", "flex_send", "flex_state",
           "pv_full_w"]

HANDOVER_S = 3.0
"""A battery that reaches a SoC limit within this long at its present power hands its
power over to PV caps / EV limits now (s). Its bounds close at the limit and its
inverter drops its power within a fraction of a second, while a PV inverter follows a
cap a cycle plus its response delay and ramp later (the bundled zero-export site:
0.2 s + 1 s + about 1 s). The price is that power curtailed (or imported) for up to
this long before each SoC limit."""

PV_MARGIN = 0.02
"""A PV inverter's full-production setpoint is this share of its available production
(at least the deadband) above its lower bound (−available): the available production
moves with the irradiance between the sample and the call, and a cap below it is out
of range (refused, the inverter then excluded until its retry). The cost is at most
this share of production for one setpoint lifetime after a cap is lifted."""


def closing_w(index: FleetIndex, table: StateTable, ok: BoolArray,
              horizon_s: float = HANDOVER_S) -> float:
    """What the usable batteries about to reach a SoC limit deliver now (W, + = charging).

    A battery charging at ``P > 0`` closes within ``horizon_s`` when its energy to the
    upper SoC limit, ``(soc_upper − soc) · capacity``, is at most ``P · horizon_s``
    (charge losses left out: early, the safe side); one discharging likewise toward
    its lower limit. Unknown values (nan) count as not closing.

    Args:
        index: Where the batteries are.
        table: The state table (the batteries' power, SoC, SoC limits, capacity).
        ok: The health book's ok mask over the table's rows now.
        horizon_s: The look-ahead (s).

    Returns:
        The closing batteries' measured power, summed (signed).
    """
    r = index.bat_rows
    p, soc, cap = table.power_w[r], table.soc_pct[r], table.capacity_wh[r]
    with np.errstate(invalid="ignore"):
        to_upper = (table.soc_upper_pct[r] - soc) / 100.0 * cap * 3600.0
        to_lower = (soc - table.soc_lower_pct[r]) / 100.0 * cap * 3600.0
        closing = ok[r] & (((p > 0) & (to_upper <= p * horizon_s))
                           | ((p < 0) & (to_lower <= -p * horizon_s)))
    return float(p[closing].sum())


def pv_full_w(lower_w: FloatArray, upper_w: FloatArray, deadband_w: float) -> FloatArray:
    """PV inverters' full-production setpoints: `PV_MARGIN` of the available production
    (at least ``deadband_w``, at most all of it) above the lower bound (W)."""
    avail = upper_w - lower_w
    full: FloatArray = lower_w + np.minimum(avail, np.maximum(PV_MARGIN * avail, deadband_w))
    return full


@dataclass(frozen=True)
class FlexState:
    """The usable PV inverters and EV chargers now (`RoundPlanner.flex`; W, + = import)."""

    pv_ok: BoolArray
    """Which PV inverters are usable (healthy, sensible bounds without an exclusion band)."""
    ev_ok: BoolArray
    """Which EV chargers are usable (healthy, sensible bounds)."""
    pv: _dist.PvInverters
    """The usable PV inverters, as `allocate_kinds` takes them."""
    ev: _dist.EvChargers
    """The usable EV chargers (with their need), as `allocate_kinds` takes them."""
    pv_in_effect_w: float
    """Production our PV caps take off now (measured, ≥ 0)."""
    ev_in_effect_w: float
    """Charging power our EV limits take off now (measured against the need, ≤ 0)."""
    pv_capped: int
    """PV inverters under a cap of ours (as last planned)."""
    ev_capped: int
    """EV chargers under a limit of ours (as last planned), paused ones included."""
    ev_power_w: float
    """Measured charging power of the usable chargers (W, ≥ 0)."""

    @property
    def power_w(self) -> float:
        """What the caps change now, counted like battery power (W)."""
        return self.pv_in_effect_w + self.ev_in_effect_w

    @property
    def lower_w(self) -> float:
        """The EV chargers' range below the uncapped site (W, ≤ 0)."""
        return self.ev.range_w

    @property
    def upper_w(self) -> float:
        """The PV inverters' range above the uncapped site (W, ≥ 0)."""
        return self.pv.range_w


def flex_state(
    index: FleetIndex, table: StateTable, ok: BoolArray, cap_w: FloatArray, deadband_w: float,
    lifted: BoolArray | None = None,
) -> FlexState:
    """The usable PV inverters and EV chargers now, and what our caps take off.

    A PV inverter is usable when healthy with bounds ``lower <= upper`` and no
    exclusion band; its rating (`FleetIndex.pv_rated_w`) weighs its share, or,
    when any usable one's rating is unknown, its available production does. An
    EV charger is usable when healthy with bounds ``[0 or min, upper]``; its
    need is its rating while it draws at its limit, else what it draws (module
    docstring). What a cap takes off is measured: ``power − full production``
    (`pv_full_w`) of a capped PV inverter, ``power − lower bound`` of a PV inverter
    under a lift of ours (``lifted``: uncapped, its full-production setpoint not
    lapsed), ``power − need`` of a limited charger.

    Args:
        index: Where the PV inverters and EV chargers are (after the batteries).
        table: The state table.
        ok: The health book's ok mask over the table's rows now.
        cap_w: The last planned cap of each PV inverter / EV charger (nan = none).
        deadband_w: The dispatch deadband (W; the PV margin's floor, the EV
            at-limit tolerance's floor).
        lifted: Which PV inverters / EV chargers are under a lift of ours now (same
            order as ``cap_w``; None = none).

    Returns:
        The state.
    """
    t, ix, cap = table, index, cap_w
    nb, npv = ix.n_battery, ix.n_pv
    rows = ix.inv_rows[nb:]
    lo, hi = t.power_lower_w[rows], t.power_upper_w[rows]
    el, eu = t.power_excl_lower_w[rows], t.power_excl_upper_w[rows]
    p = t.power_w[rows]
    with np.errstate(invalid="ignore"):
        fine = ok[rows] & np.isfinite(lo) & np.isfinite(hi) & np.isfinite(p) & (lo <= hi)
        pv_ok = fine[:npv] & (el[:npv] == 0.0) & (eu[:npv] == 0.0)
        ev_min = np.maximum(np.maximum(eu[npv:], lo[npv:]), 0.0)
        ev_ok = fine[npv:] & (lo[npv:] <= 0.0) & ((hi[npv:] >= ev_min) | (hi[npv:] == 0.0))
    # PV: the usable range starts a margin above the lower bound (see `PV_MARGIN`).
    phi = hi[:npv][pv_ok]
    plo = pv_full_w(lo[:npv][pv_ok], phi, deadband_w)
    span = phi - plo
    rated = (ix.pv_rated_w if ix.pv_rated_w is not None else np.full(npv, np.nan))[pv_ok]
    if not (np.isfinite(rated).all() and (rated > 0).all()):
        rated = np.maximum(span, 1.0)
    pv = _dist.PvInverters(lower_w=plo, upper_w=phi, rated_w=rated)
    pv_cap = cap[:npv][pv_ok]
    pv_p = p[:npv][pv_ok]
    held = (np.zeros(npv, dtype=np.bool_) if lifted is None else lifted[:npv])[pv_ok]
    pv_eff = np.where(np.isfinite(pv_cap), np.clip(pv_p - plo, 0.0, span),
                      np.where(held, np.clip(pv_p - lo[:npv][pv_ok], 0.0, phi - lo[:npv][pv_ok]),
                               0.0))
    # EV
    ehi = hi[npv:][ev_ok]
    draw = np.clip(p[npv:][ev_ok], 0.0, ehi)
    ev_cap = cap[npv:][ev_ok]
    limit = np.where(np.isfinite(ev_cap), ev_cap, ehi)
    tol = np.maximum(deadband_w, 0.02 * ehi)
    need = np.where(draw >= limit - tol, ehi, draw)
    ev = _dist.EvChargers(min_w=np.minimum(ev_min[ev_ok], ehi), upper_w=ehi, need_w=need)
    ev_eff = np.where(np.isfinite(ev_cap), draw - need, 0.0)
    return FlexState(
        pv_ok=pv_ok,
        ev_ok=ev_ok,
        pv=pv,
        ev=ev,
        pv_in_effect_w=float(pv_eff.sum()),
        ev_in_effect_w=float(ev_eff.sum()),
        pv_capped=int(np.isfinite(cap[:npv]).sum()),
        ev_capped=int(np.isfinite(cap[npv:]).sum()),
        ev_power_w=float(draw.sum()),
    )


def flex_send(
    index: FleetIndex,
    table: StateTable,
    sp: FloatArray,
    capped: BoolArray,
    now_ns: int,
    book: SetpointBook,
    *,
    deadband_w: float,
    renew_after_ns: int,
    lifetime_ns: int,
) -> BoolArray:
    """Which PV / EV setpoints go out.

    A capped one by the deadband/renewal rule (a pause to 0 W also to one never
    commanded); an uncapped one only while a cap of ours still binds it: a PV cap
    above its full production, an EV limit below the upper bound, by more than the
    deadband, sent less than a lifetime ago. So an uncapped component gets its
    uncapped setpoint once, when its cap is lifted, and otherwise none.

    Args:
        index: Where the PV inverters and EV chargers are (after the batteries).
        table: The state table (their bounds now).
        sp: Every controlled component's setpoint this round (`FleetIndex` order).
        capped: Which are capped (same order).
        now_ns: Current monotonic time.
        book: What was sent before.
        deadband_w: Changes up to this are not re-sent (W).
        renew_after_ns: Unchanged capped setpoints are re-sent after this age (ns).
        lifetime_ns: A setpoint older than this has lapsed (ns).

    Returns:
        The send mask over the PV inverters and EV chargers.
    """
    nb, npv = index.n_battery, index.n_pv
    fl = slice(nb, len(index.inverter_ids))
    last, sent_ns = book.last_w[fl], book.last_sent_ns[fl]
    never = np.isnan(last)
    by_rule = needs_send(sp[fl], last, sent_ns, book.last_ok[fl], now_ns, deadband_w,
                         renew_after_ns)
    rows = index.inv_rows[fl]
    lo, hi = table.power_lower_w[rows], table.power_upper_w[rows]
    live = ~never & ((now_ns - sent_ns) < lifetime_ns)
    with np.errstate(invalid="ignore"):
        full = pv_full_w(lo[:npv], hi[:npv], deadband_w)
        binds = np.concatenate((last[:npv] > full + deadband_w, last[npv:] < hi[npv:] - deadband_w))
    out: BoolArray = np.where(capped[fl], by_rule | never, live & binds)
    return out
