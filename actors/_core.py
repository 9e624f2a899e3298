"""`SiteCore`: the synchronous, clock-free part of a site, shared by the service and the replay.

A `SiteCore` holds, for one `ComponentGraph` and one `RuntimeOptions`, the
columnar `StateTable` that telemetry fills, the `Health` exclusion rules, the
controllable components' place in the table (`FleetIndex`: battery inverters,
PV inverters, EV chargers), the `RoundPlanner` that turns a fleet target (and
what the strategies' bounds require of PV and EV) into setpoints, and the
measurements (`SiteMeasurements`) every control step starts from. Time is
always an argument (monotonic ns). `Site` builds its runtime on one; an
in-process replay builds one the same way and fills its table from simulated
physics, so both run the same control code.

Offers `RuntimeOptions`, `SiteMeasurements` and `SiteCore`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import numpy as np

from distribution import DEFAULT_KIND_ORDER, KINDS

from ._actor import validate_positive
from ._api import TelemetryWire
from ._api_v1alpha import V1ALPHA8_WIRE
from ._errors import OptionsError
from ._graph import ComponentGraph
from ._health import Health
from ._plan import FleetIndex, RoundPlanner
from ._state import BoolArray, FloatArray, IntArray, StateTable, finite_or

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    """Tuning of the runtime; validated on creation (`OptionsError` names the field)."""

    call_timeout_s: float = 2.0
    """Deadline of every unary call and every SetElectricalComponentPower (s)."""
    setpoint_lifetime_s: float = 60.0
    """request_lifetime sent with every setpoint (s, the API accepts 10..900)."""
    renew_margin_s: float = 20.0
    """An unchanged setpoint is re-sent when it is this close to expiry (s)."""
    deadband_w: float = 50.0
    """An inverter's new setpoint within this of the last sent one is not re-sent (W)."""
    stale_after_s: float = 1.0
    """Telemetry older than this excludes the component (s)."""
    retry_min_s: float = 1.0
    """First retry delay of a component whose setpoint failed (s)."""
    retry_max_s: float = 30.0
    """Maximum retry delay (s)."""
    soc_exponent: float = 1.0
    """Passed to `distribution.allocate` (how strongly SoC skews the split)."""
    reconnect_min_s: float = 0.1
    """First telemetry stream reconnect delay (s)."""
    reconnect_max_s: float = 1.0
    """Maximum telemetry stream reconnect delay (s); it bounds how long after a
    server restart the runtime notices that the server is back."""
    reallocate_interval_s: float = 1.0
    """Period of re-running the last target (renewal, health changes) (s)."""
    shutdown_timeout_s: float = 1.0
    """Bound on the 0 W setpoints sent when the site is left (s)."""
    recovery_min_s: float = 1.0
    """First delay between two AckError+Start attempts on a component in ERROR (s)."""
    recovery_max_s: float = 30.0
    """Maximum delay between two such attempts (s)."""
    contention_overrides: int = 3
    """Setpoints of ours overridden by another client's within `contention_window_s`
    that mean another client controls the site (commanding then stops)."""
    contention_window_s: float = 60.0
    """The window of `contention_overrides` (s)."""
    kind_order: tuple[str, ...] = DEFAULT_KIND_ORDER
    """Which kind meets what the strategies' bounds require first: a permutation of
    ``("battery_inverter", "pv_inverter", "ev_charger")`` (`distribution.allocate_kinds`;
    only PV's and EV's place relative to the batteries matters)."""

    def __post_init__(self) -> None:
        """Validate every field."""
        for f in fields(self):
            if f.name == "kind_order":
                order = self.kind_order
                if not isinstance(order, tuple) or sorted(order) != sorted(KINDS):
                    raise OptionsError("kind_order", order, f"must name each of {KINDS} once")
                continue
            validate_positive(f.name, getattr(self, f.name), allow_zero=f.name == "deadband_w")
        lt = self.setpoint_lifetime_s
        if not 10 <= lt <= 900 or lt != int(lt):
            raise OptionsError("setpoint_lifetime_s", lt, "must be a whole number in 10..900")
        if self.renew_margin_s >= lt:
            raise OptionsError(
                "renew_margin_s", self.renew_margin_s, f"must be < setpoint_lifetime_s={lt}"
            )
        if self.retry_min_s > self.retry_max_s:
            raise OptionsError("retry_min_s", self.retry_min_s, "must be <= retry_max_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise OptionsError(
                "reconnect_min_s", self.reconnect_min_s, "must be <= reconnect_max_s"
            )
        if self.recovery_min_s > self.recovery_max_s:
            raise OptionsError(
                "recovery_min_s", self.recovery_min_s, "must be <= recovery_max_s"
            )
        if self.contention_overrides != int(self.contention_overrides):
            raise OptionsError(
                "contention_overrides", self.contention_overrides, "must be a whole number"
            )


@dataclass(frozen=True)
class SiteMeasurements:
    """A cheap snapshot of the site (W, + = into the component / importing)."""

    grid_power_w: float
    """Power through the grid connection point (+ = import): the sum of the grid
    formula's terms (`ComponentGraph.grid`); NaN if any is unknown, stale or incomplete."""
    grid_frequency_hz: float
    """Grid frequency from the first valid frequency term, NaN if none is valid."""
    grid_sample_time_ns: int
    """Local monotonic time the last sample of a grid term was decoded (0 = never)."""
    battery_power_w: float
    """Sum of the battery inverters' measured AC power (+ = charging)."""
    pv_power_w: float
    """PV power (meters if any, else PV inverters; negative = producing)."""
    load_power_w: float
    """Sum of the load meters (NaN if none)."""
    group_soc_pct: FloatArray
    """Capacity-weighted SoC per battery group (%)."""
    group_capacity_wh: FloatArray
    """Capacity per battery group (Wh)."""
    group_power_w: FloatArray
    """Measured AC power per battery group (W)."""
    group_healthy: BoolArray
    """Whether each group has a usable inverter and battery right now."""
    soc_pct: float
    """Capacity-weighted SoC of the fleet (%)."""
    soc_lower_pct: float
    """Capacity-weighted lower SoC limit of the fleet (%; 0 when capacity is unknown)."""
    soc_upper_pct: float
    """Capacity-weighted upper SoC limit of the fleet (%; 100 when capacity is unknown)."""
    fleet_lower_w: float
    """AC lower bound of the healthy, usable fleet now (W, SoC-aware)."""
    fleet_upper_w: float
    """AC upper bound of the healthy, usable fleet now (W, SoC-aware)."""
    flex_power_w: float = 0.0
    """What our PV caps and EV limits change now, counted like battery power (W:
    + = curtailed production, − = charging taken off; `RoundPlanner.flex`)."""
    flex_lower_w: float = 0.0
    """How far the usable EV chargers can lower the site's power (W, ≤ 0)."""
    flex_upper_w: float = 0.0
    """How far curtailing the usable PV inverters can raise it (W, ≥ 0)."""
    pv_curtailed_w: float = 0.0
    """PV production our caps take off now (W, ≥ 0)."""
    pv_capped: int = 0
    """PV inverters under a cap of ours (as last planned)."""
    ev_power_w: float = 0.0
    """Charging power of the usable EV chargers (W, ≥ 0)."""
    ev_limited: int = 0
    """EV chargers under a limit of ours (as last planned; paused ones included)."""


class SiteCore:
    """State table, health, measurements and round planning of one site (see the module)."""

    def __init__(
        self,
        graph: ComponentGraph,
        options: RuntimeOptions,
        wire: TelemetryWire = V1ALPHA8_WIRE,
    ) -> None:
        """Build the parts from the graph and the options (the one place that does).

        Args:
            graph: The component graph.
            options: Runtime options (staleness, retries, SoC exponent, deadband,
                lifetime and renewal margin).
            wire: How the API version's telemetry is read (`StateTable`).
        """
        self.graph: ComponentGraph = graph
        """The component graph."""
        self.options: RuntimeOptions = options
        """Runtime options."""
        ids = list(graph.streamed_ids)
        self.state: StateTable = StateTable(
            ids, [graph.components[i].category for i in ids], wire
        )
        """Columnar latest-value state of every streamed component."""
        inv_rows = np.zeros(self.state.n, dtype=np.bool_)
        for cid in graph.controlled_ids:
            inv_rows[self.state.row_of[cid]] = True
        self.health: Health = Health(
            self.state,
            stale_after_s=options.stale_after_s,
            retry_min_s=options.retry_min_s,
            retry_max_s=options.retry_max_s,
            bounds_required=inv_rows,
        )
        """Exclusion rules and the setpoint-failure book."""
        self.index: FleetIndex = FleetIndex.of(graph, self.state)
        """The battery fleet's rows in the state table."""
        self.planner: RoundPlanner = RoundPlanner(
            self.index,
            self.state,
            self.health,
            soc_exponent=options.soc_exponent,
            deadband_w=options.deadband_w,
            renew_after_s=options.setpoint_lifetime_s - options.renew_margin_s,
            lifetime_s=options.setpoint_lifetime_s,
            kind_order=options.kind_order,
        )
        """Fleet target → setpoints (allocation, bounds re-check, deadband/renewal)."""
        st = self.state
        formula = graph.grid
        self._grid_rows = np.array([st.row_of[i] for i in formula.power_ids], dtype=np.int64)
        self._grid_measurable = formula.measurable
        self._grid_one_row = int(self._grid_rows[0]) if len(formula.power_ids) == 1 else -1
        # Frequency candidates as positions in `_grid_rows`, in order of preference.
        self._freq_pos = [formula.power_ids.index(i) for i in formula.frequency_ids]
        self._pv_rows = np.array(
            [st.row_of[i] for i in (graph.pv_meter_ids or graph.pv_inverter_ids)], dtype=np.int64
        )
        self._load_rows = np.array([st.row_of[i] for i in graph.load_meter_ids], dtype=np.int64)

    def fleet_bounds(self, now: int, ok: BoolArray | None = None) -> tuple[float, float]:
        """The usable fleet's AC bounds now (W): the allocator's `Fleet.lower_w/upper_w`.

        The one fleet-bounds rule of gridloop (SoC limits, battery DC limits,
        exclusion bands, health). A snapshot the allocator would refuse gives
        NaN (the power manager then holds 0 W and says why).

        Args:
            now: Monotonic time (ns).
            ok: `health.ok_mask(now)` when the caller has it already.

        Returns:
            (lower_w, upper_w).
        """
        try:
            fleet, _, _ = self.planner.build_fleet(now, ok)
            return float(fleet.lower_w), float(fleet.upper_w)
        except Exception as exc:
            _logger.warning("fleet bounds unknown: %s: %s", type(exc).__name__, exc)
            return math.nan, math.nan

    def grid(self, now: int) -> tuple[float, float, int]:
        """Grid power, frequency and last sample time from the grid formula's terms.

        Stale, incomplete or error-state data is unknown (NaN), never an old value:
        the power needs every term, the frequency the first valid candidate. A site
        with one term (a grid meter) takes the scalar path, as fast as one row can be.
        """
        rows = self._grid_rows
        if not rows.size:
            return math.nan, math.nan, 0
        t = self.state
        valid = self.health.measured_mask(now, rows)
        g = self._grid_one_row
        if g >= 0:  # one term
            ok = bool(valid[0])
            power = float(t.power_w[g]) if ok and self._grid_measurable else math.nan
            freq = float(t.frequency_hz[g]) if ok and self._freq_pos else math.nan
            return power, freq, int(t.received_ns[g])
        power = (
            float(t.power_w[rows].sum()) if self._grid_measurable and valid.all() else math.nan
        )
        freq = math.nan
        for k in self._freq_pos:
            f = float(t.frequency_hz[rows[k]])
            if valid[k] and math.isfinite(f):
                freq = f
                break
        return power, freq, int(t.received_ns[rows].max())

    def measurements(self, now: int) -> SiteMeasurements:
        """The site measured from the state table at monotonic time `now` (ns).

        Health decides what counts (stale, incomplete or error-state data is
        unknown); the fleet bounds are those of the allocator's own snapshot
        (`RoundPlanner.build_fleet`), so the power manager merges within exactly
        what the distributor can allocate.

        Args:
            now: Monotonic time (ns).

        Returns:
            The measurements.
        """
        t = self.state
        d = self.index
        ok = self.health.ok_mask(now)
        ir, br = d.bat_inv_rows, d.bat_rows
        soc = t.soc_pct[br]
        inv_ok, bat_ok = ok[ir], ok[br] & np.isfinite(soc)
        ng = d.n_groups
        cap = finite_or(t.capacity_wh[br], 0.0)
        soc0 = finite_or(soc, 0.0)
        inv_power = finite_or(t.power_w[ir], 0.0)
        gcap = np.bincount(d.group_of_bat, cap, ng).astype(np.float64)
        gsoc_w = np.bincount(d.group_of_bat, soc0 * cap, ng)
        with np.errstate(invalid="ignore", divide="ignore"):
            gsoc = np.where(gcap > 0, gsoc_w / gcap, np.nan)
        gpow = np.bincount(d.group_of_inv, inv_power, ng).astype(np.float64)
        ginv_ok = np.bincount(d.group_of_inv, inv_ok, ng) > 0
        gbat_ok = np.bincount(d.group_of_bat, bat_ok, ng) > 0
        fleet_lo, fleet_hi = self.fleet_bounds(now, ok)
        total_cap = float(gcap.sum())
        usable = ginv_ok & gbat_ok
        grid_power, grid_freq, grid_ns = self.grid(now)
        power = t.power_w
        flex = self.planner.flex(now, ok) if len(d.inverter_ids) > d.n_battery else None

        def total(rows: IntArray) -> float:
            return float(finite_or(power[rows], 0.0).sum())

        def weighted(values: FloatArray, empty: float) -> float:
            if not total_cap:
                return empty
            return float(np.dot(finite_or(values, 0.0), cap) / total_cap)

        return SiteMeasurements(
            grid_power_w=grid_power,
            grid_frequency_hz=grid_freq,
            grid_sample_time_ns=grid_ns,
            battery_power_w=float(inv_power.sum()),
            pv_power_w=total(self._pv_rows) if self._pv_rows.size else 0.0,
            load_power_w=total(self._load_rows) if self._load_rows.size else math.nan,
            group_soc_pct=gsoc,
            group_capacity_wh=gcap,
            group_power_w=gpow,
            group_healthy=usable,
            soc_pct=float(gsoc_w.sum() / total_cap) if total_cap else math.nan,
            soc_lower_pct=weighted(t.soc_lower_pct[br], 0.0),
            soc_upper_pct=weighted(t.soc_upper_pct[br], 100.0),
            fleet_lower_w=fleet_lo,
            fleet_upper_w=fleet_hi,
            flex_power_w=flex.power_w if flex else 0.0,
            flex_lower_w=flex.lower_w if flex else 0.0,
            flex_upper_w=flex.upper_w if flex else 0.0,
            pv_curtailed_w=flex.pv_in_effect_w if flex else 0.0,
            pv_capped=flex.pv_capped if flex else 0,
            ev_power_w=flex.ev_power_w if flex else 0.0,
            ev_limited=flex.ev_capped if flex else 0,
        )

