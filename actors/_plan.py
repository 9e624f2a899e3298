"""Planning a distribution round: state table → `distribution.Fleet` → allocate → what to send.

Synchronous and clock-free (time is an argument), so the `PowerDistributor`
actor and the in-process replay run the very same code:

* `FleetIndex` – where the controllable components sit in the state table: the
  battery inverters (with their batteries, groups and links, from the
  `ComponentGraph`), then the PV inverters, then the EV chargers.
* `RoundPlanner` – snapshot the table into a `distribution.Fleet` (health decides
  availability, bands clipped to the interval by the decoder) and the usable PV
  inverters and EV chargers (`flex`), `distribution.allocate_kinds` (batteries take
  the fleet target, PV curtailment / EV limits only what the strategies' bounds
  require, in the configured kind order; what batteries about to reach a SoC limit
  deliver is handed over ahead, `actors._flex.closing_w`), re-check every setpoint against the
  snapshot's bounds, and keep only the setpoints that must go out: the
  deadband/renewal rule (`needs_send`) for battery inverters and for capped PV
  inverters / EV chargers; an *uncapped* PV inverter or EV charger gets its
  uncapped setpoint (full production = its lower bound; the charger's rating =
  its upper bound) only while a cap of ours still binds it, and otherwise no
  setpoint at all, so that it runs free and never depends on gridloop when
  nothing needs capping (the last cap lapses with its finite lifetime anyway).
  While `RoundPlanner.raise_now` (the grid past the export limit, as the caller
  measured it) every raise of a battery inverter or capped PV inverter / EV charger
  is sent whatever the deadband.
  Excluded components are never commanded.
* `PlannedRound` – the result of `RoundPlanner.plan`.

Reactive power (`RuntimeOptions.reactive` not ``off``): the planner also splits the
fleet's reactive target (`reactive_target_var`, set by `Site.request_reactive`)
with `distribution.allocate_reactive` within each inverter's published reactive
bounds (which already follow its present active power) and the apparent-power
circle: ``p_first`` leaves Q the circle of the round's active setpoints;
``q_first`` allocates Q first (at 0 W) and narrows the active bounds of the fleet
snapshot to sqrt(S² − Q²) (`distribution.limit_active_bounds`), so the fleet's
bounds everywhere (the power manager's too) leave room for Q. Every Q setpoint is
re-checked against the reactive bounds and the circle of its round's active
setpoint (a bad one becomes 0 VAr and is counted in `reactive_out_of_bounds`), and
goes through the same deadband/renewal rule and health exclusion as P.
The PV / EV rules (what is usable, the EV need, what a cap takes off, when an
uncapped one is sent its uncapped setpoint) are in `actors._flex`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import distribution as _dist

from ._dispatch import SetpointBook, needs_send
from ._flex import FlexState, closing_w, flex_send, flex_state
from ._graph import ComponentGraph
from ._health import Health
from ._state import BoolArray, FloatArray, IntArray, StateTable

_logger = logging.getLogger(__name__)

_TOL_W = 1e-6

def _nan_to(values: FloatArray, nan: float) -> FloatArray:
    """`np.nan_to_num(values, nan=nan)` (±inf → ±max float), skipped when all are finite."""
    if np.isfinite(values).all():
        return values
    result: FloatArray = np.nan_to_num(values, nan=nan)
    return result


@dataclass(frozen=True)
class FleetIndex:
    """The controllable components' place in the state table (index i = the i-th one).

    Index ``i < n_battery`` is the i-th battery inverter (the Fleet's inverter
    arrays), then come the PV inverters (`pv`), then the EV chargers (`ev`).
    """

    inverter_ids: list[int]
    """Controlled component ids: battery inverters group by group, then PV inverters,
    then EV chargers (the setpoint book's and the dispatcher's index)."""
    battery_ids: list[int]
    """Battery ids, group by group."""
    inv_rows: IntArray
    """State-table rows of the controlled components (same order)."""
    bat_rows: IntArray
    """State-table rows of the batteries."""
    links: IntArray
    """(inverter index, battery index) links, shape (k, 2)."""
    n_groups: int
    """Number of battery groups."""
    group_of_inv: IntArray
    """Group index of each inverter."""
    group_of_bat: IntArray
    """Group index of each battery."""
    n_battery: int = -1
    """Number of battery inverters (the first ones); -1 = all of them (no PV, no EV)."""
    n_pv: int = 0
    """Number of PV inverters (after the battery inverters)."""
    pv_rated_w: FloatArray | None = None
    """Rated power of each PV inverter (W; nan = unknown)."""

    def __post_init__(self) -> None:
        """Default `n_battery` to every index (an index built without PV and EV)."""
        if self.n_battery < 0:
            object.__setattr__(self, "n_battery", len(self.inverter_ids))

    @property
    def battery(self) -> slice:
        """The battery inverters' indices."""
        return slice(0, self.n_battery)

    @property
    def pv(self) -> slice:
        """The PV inverters' indices."""
        return slice(self.n_battery, self.n_battery + self.n_pv)

    @property
    def ev(self) -> slice:
        """The EV chargers' indices."""
        return slice(self.n_battery + self.n_pv, len(self.inverter_ids))

    @property
    def kind_of(self) -> list[str]:
        """The kind of each index (`distribution.KINDS` names)."""
        n = len(self.inverter_ids)
        nb, npv = self.n_battery, self.n_pv
        return (["battery_inverter"] * nb + ["pv_inverter"] * npv
                + ["ev_charger"] * (n - nb - npv))

    @property
    def battery_inverter_ids(self) -> list[int]:
        """The battery inverters' ids (the first `n_battery` of `inverter_ids`)."""
        return self.inverter_ids[: self.n_battery]

    @property
    def bat_inv_rows(self) -> IntArray:
        """State-table rows of the battery inverters."""
        return self.inv_rows[: self.n_battery]

    @classmethod
    def of(cls, graph: ComponentGraph, table: StateTable) -> FleetIndex:
        """The index of `graph`'s battery groups in `table`.

        Args:
            graph: The component graph.
            table: The state table (one row per streamed component).

        Returns:
            The index.
        """
        row = table.row_of
        inverter_ids = list(graph.controlled_ids)
        battery_ids = list(graph.battery_ids)
        inv_idx = {c: k for k, c in enumerate(inverter_ids)}
        bat_idx = {c: k for k, c in enumerate(battery_ids)}
        return cls(
            inverter_ids=inverter_ids,
            battery_ids=battery_ids,
            n_battery=len(graph.battery_inverter_ids),
            n_pv=len(graph.pv_inverter_ids),
            pv_rated_w=np.array(
                [graph.components[i].rated_power_w for i in graph.pv_inverter_ids],
                dtype=np.float64,
            ),
            inv_rows=np.array([row[i] for i in inverter_ids], dtype=np.int64),
            bat_rows=np.array([row[b] for b in battery_ids], dtype=np.int64),
            links=np.array(
                [(inv_idx[i], bat_idx[b]) for g in graph.groups for i, b in g.links],
                dtype=np.int64,
            ).reshape(-1, 2),
            n_groups=len(graph.groups),
            group_of_inv=np.array(
                [k for k, g in enumerate(graph.groups) for _ in g.inverter_ids], dtype=np.int64
            ),
            group_of_bat=np.array(
                [k for k, g in enumerate(graph.groups) for _ in g.battery_ids], dtype=np.int64
            ),
        )


@dataclass
class PlannedRound:
    """One allocated round: every controlled component's setpoint, and the ones to send."""

    target_w: float
    """Requested battery fleet power (W, + = charging)."""
    result: Any
    """The batteries' `distribution.AllocationResult`."""
    setpoints_w: FloatArray
    """Setpoint per controlled component (`FleetIndex` order; 0 W for excluded ones and
    out-of-bounds replacements; PV / EV ones uncapped unless `capped`)."""
    inverter_ok: BoolArray
    """Which components were usable (health; for PV / EV also sensible bounds)."""
    bad: bool
    """Whether an allocated setpoint failed the independent bounds re-check."""
    message: str
    """Allocation status, and what the re-check replaced."""
    indices: list[int]
    """Component indices to send to (deadband/renewal and cap rules, usable ones only)."""
    powers_w: list[float]
    """Their setpoints (W)."""
    skipped: int
    """Usable, once-commanded components not re-sent (deadband, renewal not due)."""
    must_w: float = math.nan
    """What the strategies' bounds required of batteries + PV + EV (W; nan = not given)."""
    pv_w: float = 0.0
    """PV curtailment planned (W of production taken off, ≥ 0)."""
    ev_w: float = 0.0
    """EV charging power planned off (W, ≤ 0)."""
    capped: BoolArray | None = None
    """Per controlled component: a PV cap or EV limit (None: no PV, no EV)."""
    reactive_var: FloatArray | None = None
    """Reactive setpoint per battery inverter (VAr; None = reactive control off)."""
    reactive_result: Any = None
    """The `distribution.ReactiveResult` (None = reactive control off)."""
    q_indices: list[int] = field(default_factory=list)
    """Battery inverter indices to send a reactive setpoint to (deadband/renewal rule)."""
    q_powers_var: list[float] = field(default_factory=list)
    """Their reactive setpoints (VAr)."""


class RoundPlanner:
    """State table + health + setpoint book → `PlannedRound` (see the module docstring)."""

    def __init__(
        self,
        index: FleetIndex,
        table: StateTable,
        health: Health,
        *,
        soc_exponent: float,
        deadband_w: float,
        renew_after_s: float,
        reactive: str = "off",
        lifetime_s: float | None = None,
        kind_order: tuple[str, ...] = _dist.DEFAULT_KIND_ORDER,
    ) -> None:
        """Create the planner.

        Args:
            index: The fleet's rows in `table`.
            table: The state table.
            health: The health book (exclusion rules).
            soc_exponent: Passed to `allocate`.
            deadband_w: Changes up to this are not re-sent.
            renew_after_s: Unchanged setpoints are re-sent after this age.
            reactive: Reactive-power control (`RuntimeOptions.reactive`: ``off``,
                ``p_first``, ``q_first``).
            lifetime_s: The setpoints' lifetime (s; a cap older than this has lapsed);
                None = `renew_after_s`.
            kind_order: Which kind meets the strategies' bounds first
                (`distribution.allocate_kinds`).
        """
        self.index: FleetIndex = index
        """The fleet's rows."""
        self.table: StateTable = table
        """The state table."""
        self.health: Health = health
        """The health book."""
        self.soc_exponent: float = soc_exponent
        """Passed to `allocate`."""
        self.deadband_w: float = deadband_w
        """Changes up to this are not re-sent (W)."""
        self.renew_after_ns: int = int(renew_after_s * 1e9)
        """Unchanged setpoints are re-sent after this age (ns)."""
        self.lifetime_ns: int = int((renew_after_s if lifetime_s is None else lifetime_s) * 1e9)
        """A setpoint older than this has lapsed (ns)."""
        self.kind_order: tuple[str, ...] = tuple(kind_order)
        """Which kind meets the strategies' bounds first."""
        n_flex = len(index.inverter_ids) - index.n_battery
        self.flex_cap_w: FloatArray = np.full(n_flex, np.nan)
        """The last planned cap of each PV inverter / EV charger (W; nan = uncapped)."""
        self.flex_lift_until_ns: FloatArray = np.full(n_flex, np.nan)
        """When the last uncapped setpoint (a lift) planned for each PV inverter / EV
        charger lapses (monotonic ns; nan = none since its last cap)."""
        self._last_fleet: _dist.Fleet | None = None
        self._last_key: bytes = b""
        self.raise_now: bool = False
        """The site is past a limit that needs more import now (set by the caller from
        its measurements: the grid exports more than the export limit): every setpoint
        that raises a battery inverter's power or a capped PV inverter's / EV charger's
        is sent, whatever the deadband (a deadband must not hold the site past a limit)."""
        self.reactive: str = reactive
        """Reactive-power control: ``off``, ``p_first`` or ``q_first``."""
        self.reactive_target_var: float = 0.0
        """The fleet's reactive target (VAr, + = absorbing), planned with every round."""
        self.reactive_out_of_bounds: int = 0
        """Reactive setpoints the re-check replaced by 0 VAr (a bug if ever > 0)."""
        self._q_first: _dist.ReactiveResult | None = None  # q_first: Q of the last snapshot

    def build_fleet(
        self, now_ns: int, ok: BoolArray | None = None
    ) -> tuple[_dist.Fleet, BoolArray, BoolArray]:
        """Snapshot the state table into a `distribution.Fleet`.

        Its `lower_w`/`upper_w` are the fleet's bounds everywhere in gridloop
        (the measurements' and the power manager's too). Building a `Fleet` is
        the costly part of a control cycle (its per-group sets are precomputed),
        and a cycle needs it twice at the same instant (the measurements' bounds,
        then the allocation): when the fleet's inputs are bit for bit those of
        the previous call, the previous `Fleet` (immutable) is returned.

        Args:
            now_ns: Current monotonic time (health rules).
            ok: `health.ok_mask(now_ns)` when the caller has it already.

        Returns:
            (fleet, inverter usable mask, battery usable mask).
        """
        t = self.table
        ix = self.index
        if ok is None:
            ok = self.health.ok_mask(now_ns)
        ir, br = ix.bat_inv_rows, ix.bat_rows
        inv_ok = ok[ir]
        cap = t.capacity_wh[br]
        # A non-positive capacity is live data gone wrong, not a structural error:
        # exclude the battery (Fleet raises on negative capacity by contract).
        bat_ok = ok[br] & np.isfinite(t.soc_pct[br]) & np.isfinite(cap) & (cap > 0.0)

        def z(a: FloatArray, mask: BoolArray, fill: float) -> FloatArray:
            return np.where(mask & np.isfinite(a), a, fill)

        soc = t.soc_pct[br]
        inv = (
            z(t.power_lower_w[ir], inv_ok, 0.0),
            z(t.power_upper_w[ir], inv_ok, 0.0),
            z(t.power_excl_lower_w[ir], inv_ok, 0.0),
            z(t.power_excl_upper_w[ir], inv_ok, 0.0),
        )
        if self.reactive == "q_first":
            inv = self._q_first_bounds(inv, inv_ok)
        arrays: dict[str, FloatArray | BoolArray] = {
            "inverter_lower_w": inv[0],
            "inverter_upper_w": inv[1],
            "inverter_excl_lower_w": inv[2],
            "inverter_excl_upper_w": inv[3],
            "battery_soc_pct": np.where(np.isfinite(soc), soc, 50.0),
            "battery_soc_lower_pct": _nan_to(t.soc_lower_pct[br], 0.0),
            "battery_soc_upper_pct": _nan_to(t.soc_upper_pct[br], 100.0),
            "battery_capacity_wh": z(cap, bat_ok, 1.0),
            "battery_lower_w": z(t.power_lower_w[br], bat_ok, -1e12),
            "battery_upper_w": z(t.power_upper_w[br], bat_ok, 1e12),
            "inverter_available": inv_ok,
            "battery_available": bat_ok,
        }
        key = b"".join(a.tobytes() for a in arrays.values())
        if self._last_fleet is None or key != self._last_key:
            self._last_fleet = _dist.Fleet(links=ix.links, **arrays)
            self._last_key = key
        return self._last_fleet, inv_ok.copy(), bat_ok.copy()

    def _reactive_inputs(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The inverters' reactive bounds and apparent ratings from the state table."""
        t = self.table
        ir = self.index.bat_inv_rows
        return t.reactive_lower_var[ir], t.reactive_upper_var[ir], t.apparent_rating_va[ir]

    def reactive_capability(self, ok: BoolArray) -> tuple[FloatArray, FloatArray]:
        """Per inverter, the reactive range left by its measured active power (VAr).

        Args:
            ok: `health.ok_mask(now)` (rows of the state table).

        Returns:
            ``(lo, hi)`` per inverter (0 where unusable).
        """
        lower, upper, s = self._reactive_inputs()
        ir = self.index.bat_inv_rows
        return _dist.reactive_capability(lower, upper, s, self.table.power_w[ir], ok[ir])

    def _q_first_bounds(
        self, inv: tuple[FloatArray, FloatArray, FloatArray, FloatArray], inv_ok: BoolArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``q_first``: allocate Q at 0 W, narrow the active bounds to sqrt(S² − Q²)."""
        lower, upper, s = self._reactive_inputs()
        self._q_first = None
        try:
            res = _dist.allocate_reactive(self.reactive_target_var, lower, upper, s, None, inv_ok)
        except Exception:  # Q must never stop P: no narrowing, and no Q this round
            _logger.exception("reactive allocation (q_first) failed; the active bounds stay")
            return inv
        self._q_first = res
        return _dist.limit_active_bounds(*inv, _dist.active_limit_w(s, res.setpoints_var))

    def plan_reactive(
        self, sp: FloatArray, inv_ok: BoolArray
    ) -> tuple[FloatArray, _dist.ReactiveResult]:
        """The round's reactive setpoints for active setpoints ``sp`` (see the module).

        Args:
            sp: The round's active setpoint per inverter (W).
            inv_ok: Which inverters are usable.

        Returns:
            The re-checked reactive setpoints (VAr) and the allocation result.
        """
        lower, upper, s = self._reactive_inputs()
        if self.reactive == "q_first":
            if self._q_first is None:
                raise RuntimeError("q_first: no reactive allocation in this round's snapshot")
            res = self._q_first
        else:
            res = _dist.allocate_reactive(self.reactive_target_var, lower, upper, s, sp, inv_ok)
        q = np.where(inv_ok, res.setpoints_var, 0.0)
        with np.errstate(invalid="ignore"):
            inside = (q >= lower - _TOL_W) & (q <= upper + _TOL_W)
            circle = ~np.isfinite(s) | (np.hypot(sp, q) <= s + _TOL_W)
        bad = (q != 0.0) & ~(inside & circle)
        if bad.any():
            bad_ids = [self.index.inverter_ids[i] for i in np.flatnonzero(bad)]
            _logger.error("reactive allocation outside bounds for %s; sending 0 VAr", bad_ids)
            self.reactive_out_of_bounds += int(np.count_nonzero(bad))
            q = np.where(bad, 0.0, q)
        return q, res

    def check_bounds(self, sp: FloatArray) -> BoolArray:
        """Independent re-check: True where a non-zero setpoint violates the snapshot bounds."""
        t = self.table
        ir = self.index.inv_rows
        lo, hi = t.power_lower_w[ir], t.power_upper_w[ir]
        el, eu = t.power_excl_lower_w[ir], t.power_excl_upper_w[ir]
        with np.errstate(invalid="ignore"):
            inside = (sp >= lo - _TOL_W) & (sp <= hi + _TOL_W)
            ok = inside & ~((sp > el + _TOL_W) & (sp < eu - _TOL_W))
        bad: BoolArray = (sp != 0.0) & ~ok
        return bad

    def flex(self, now_ns: int, ok: BoolArray | None = None) -> FlexState:
        """The usable PV inverters and EV chargers now, and what our caps take off
        (`actors._flex.flex_state`).

        Args:
            now_ns: Current monotonic time (health rules).
            ok: `health.ok_mask(now_ns)` when the caller has it already.

        Returns:
            The state.
        """
        if ok is None:
            ok = self.health.ok_mask(now_ns)
        lifted = np.isfinite(self.flex_lift_until_ns) & (now_ns < self.flex_lift_until_ns)
        return flex_state(self.index, self.table, ok, self.flex_cap_w, self.deadband_w, lifted)

    def plan(
        self, target_w: float, now_ns: int, book: SetpointBook, must_w: float = math.nan,
        q_book: SetpointBook | None = None,
    ) -> PlannedRound:
        """Allocate `target_w` (and `must_w` over PV / EV) and decide what to send.

        An excluded component (stale, no data, bad data, error state, unusable
        bounds, waiting for a retry after a failed setpoint) is never commanded:
        what it is doing now is unknown. Its last setpoint is forgotten as
        acknowledged in `book` (the one side effect besides `flex_cap_w`), so the
        first allocation after it is back re-sends it.

        Args:
            target_w: Battery fleet target (W, + = charging).
            now_ns: Current monotonic time.
            book: What was sent before (read; excluded components marked unknown).
            must_w: What the strategies' bounds require of batteries + PV + EV
                (W; nan = nothing: no cap, no limit; `distribution.allocate_kinds`).
            q_book: What reactive setpoints were sent before, per battery inverter (None =
                plan Q without choosing what to send; only used with reactive control on).

        Returns:
            The round (nothing is recorded as sent: the caller does that when it sends).

        Raises:
            Exception: The allocation failed (whatever `distribution` raised).
        """
        ix = self.index
        nb, n = ix.n_battery, len(ix.inverter_ids)
        ok = self.health.ok_mask(now_ns)
        fleet, inv_ok, _bat_ok = self.build_fleet(now_ns, ok)
        capped: BoolArray | None = None
        pv_w = ev_w = 0.0
        if n == nb:
            res = _dist.allocate(fleet, target_w, soc_exponent=self.soc_exponent)
            sp = np.asarray(res.setpoints_w, dtype=np.float64)
            use = inv_ok
        else:
            fx = self.flex(now_ns, ok)
            kinds = _dist.allocate_kinds(
                fleet, target_w, must_w if math.isfinite(must_w) else math.nan,
                fx.pv, fx.ev, self.kind_order, self.soc_exponent, self.deadband_w,
                closing_w(ix, self.table, ok),
            )
            res = kinds.battery
            pv_w, ev_w = kinds.pv_w, kinds.ev_w
            flex_ok = np.concatenate((fx.pv_ok, fx.ev_ok))
            flex_sp = np.zeros(n - nb)
            capped = np.zeros(n, dtype=np.bool_)
            at = np.flatnonzero(flex_ok)
            flex_sp[at] = np.concatenate((kinds.pv_setpoints_w, kinds.ev_setpoints_w))
            capped[nb + at] = np.concatenate((kinds.pv_capped, kinds.ev_capped))
            sp = np.concatenate((np.asarray(res.setpoints_w, dtype=np.float64), flex_sp))
            use = np.concatenate((inv_ok, flex_ok))
        sp = np.where(use, sp, 0.0)
        bad = self.check_bounds(sp)
        message = str(getattr(res.status, "name", res.status))
        if bad.any():
            bad_ids = [ix.inverter_ids[i] for i in np.flatnonzero(bad)]
            _logger.error("allocation gave out-of-bounds setpoints for %s; sending 0 W", bad_ids)
            sp = np.where(bad, 0.0, sp)
            message += f"; out-of-bounds setpoints replaced by 0 W for {bad_ids}"
        send = needs_send(
            sp[:nb], book.last_w[:nb], book.last_sent_ns[:nb], book.last_ok[:nb], now_ns,
            self.deadband_w, self.renew_after_ns,
        )
        if capped is not None:
            capped |= bad
            send = np.concatenate((send, flex_send(
                self.index, self.table, sp, capped, now_ns, book,
                deadband_w=self.deadband_w, renew_after_ns=self.renew_after_ns,
                lifetime_ns=self.lifetime_ns,
            )))
            self.flex_cap_w = np.where(capped[nb:], sp[nb:], np.nan)
        if self.raise_now:
            with np.errstate(invalid="ignore"):
                up = sp > book.last_w + _TOL_W  # nan (never sent): False
            if capped is not None:
                up[nb:] &= capped[nb:]
            send |= up
        send &= use
        if capped is not None:
            lift = send[nb:] & ~capped[nb:]
            self.flex_lift_until_ns = np.where(
                capped[nb:], np.nan,
                np.where(lift, float(now_ns + self.lifetime_ns), self.flex_lift_until_ns))
        book.mark_unknown(~use)
        idx = np.flatnonzero(send).tolist()
        q = q_res = None
        q_idx: list[int] = []
        if self.reactive != "off":
            try:
                q, q_res = self.plan_reactive(sp[:nb], inv_ok)
            except Exception:  # Q must never stop P: no reactive setpoint this round
                _logger.exception("reactive allocation failed; no reactive setpoint this round")
                q = None
            if q is not None and q_book is not None:
                q_send = needs_send(
                    q, q_book.last_w, q_book.last_sent_ns, q_book.last_ok, now_ns,
                    self.deadband_w, self.renew_after_ns,
                ) & inv_ok
                q_book.mark_unknown(~inv_ok)
                q_idx = np.flatnonzero(q_send).tolist()
        return PlannedRound(
            target_w=target_w,
            result=res,
            setpoints_w=sp,
            inverter_ok=use,
            bad=bool(bad.any()),
            message=message,
            indices=idx,
            powers_w=sp[idx].tolist(),
            skipped=int(np.count_nonzero(~send & use & ~np.isnan(book.last_w))),
            must_w=must_w,
            pv_w=pv_w,
            ev_w=ev_w,
            capped=capped,
            reactive_var=q,
            reactive_result=q_res,
            q_indices=q_idx,
            q_powers_var=q[q_idx].tolist() if q is not None else [],
        )
