"""The replay's transport: the service's control code against in-process physics.

``gridloop run`` talks to a site over gRPC; the replay replaces only that:

* :func:`site_graph` — the site's :class:`actors.ComponentGraph`, built from its
  :class:`~simulator.config.SiteConfig` with :meth:`actors.ComponentGraph.build`
  (the grouping the service derives from ``ListElectricalComponents``).
* :func:`replay_control` — the :class:`actors.SiteCore` and the
  :class:`~controller.runtime.cycle.ControlCycle` for a site and a
  :class:`~controller.runtime.config.GridloopConfig`, built exactly as ``gridloop run``
  builds them (:func:`controller.runtime.service.runtime_options` at time scale 1,
  :meth:`~controller.runtime.cycle.ControlCycle.from_config`).
* :class:`PhysicsTransport` — writes the physics' state into the core's state
  table as the telemetry decoder would (values, bounds as
  :func:`actors.intervals_to_band` makes them, SoC limits, capacity, component
  states, receive time = the virtual clock) for every row the service streams:
  battery and PV inverters and EV chargers alike (one power-row path, as in the
  physics, whose power rows are the inverters then the chargers), runs one control cycle
  (:func:`controller.runtime.cycle.plan_setpoints`) and applies the planned setpoints
  with :meth:`~simulator.physics.SitePhysics.set_active_power` after the
  server's own validation (a refused one fails like a refused call: health
  backoff, re-sent later), whatever kind of power row the control addresses. With
  reactive control on (``[reactive_power]``) it also publishes the reactive metrics (Q
  with its momentary bounds, the apparent rating, the connection point's voltage), plans
  the cycle's reactive target with the round
  (:func:`~controller.runtime.cycle.plan_setpoints` with the reactive book, the service's
  :meth:`actors.RoundPlanner.plan`) and applies the reactive setpoints with
  :meth:`~simulator.physics.SitePhysics.set_reactive_power` (same lifetime) after
  :meth:`~simulator.physics.SitePhysics.check_reactive_power`.

The virtual clock is the physics' ``now_s``, shifted by :data:`CLOCK_ORIGIN_NS`
(a receive time of 0 means "never received" to the health rules). The site's
time, which the billing meter and the auto limit run on, is the data's clock:
``site_origin_s`` (the unix time of the replay's first row) plus ``now_s``
(rounded to the microsecond, so a cycle at a load step is exactly at its
interval boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from actors import (
    ComponentGraph,
    ComponentInfo,
    GraphError,
    PlannedRound,
    SetpointBook,
    SiteCore,
    intervals_to_band,
)
from controller.lab.replay.errors import ReplayError
from controller.runtime.billing import BillingMeter
from controller.runtime.config import GridloopConfig
from controller.runtime.cycle import ControlCycle, plan_setpoints
from controller.runtime.schedule import ScheduleBook
from controller.runtime.strategies import Strategy
from simulator.config import SiteConfig
from simulator.errors import RequestError
from simulator.physics import ComponentState, SitePhysics
from simulator.server import build_components

__all__ = ["CLOCK_ORIGIN_NS", "POWER_KINDS", "PhysicsTransport", "ReplayControl", "replay_control",
           "site_graph"]

CLOCK_ORIGIN_NS = 1_000_000_000
"""The virtual monotonic clock at physics time 0 (ns)."""
POWER_KINDS = ("inverter", "ev_charger")
"""The physics' kinds of component with a power row (battery and PV inverters, EV chargers):
their telemetry and setpoints take one path."""


def site_graph(site: SiteConfig) -> ComponentGraph:
    """The component graph the service builds for ``site``: from the component
    catalogue the simulator serves for it (`build_components`), as the service
    builds it from ListElectricalComponents.

    Raises:
        ReplayError: the site has no battery behind an inverter (or another
            graph the service would refuse).
    """
    infos = [ComponentInfo.from_proto(c) for c in build_components(site)]
    try:
        return ComponentGraph.build(infos, list(site.connections))
    except GraphError as exc:
        raise ReplayError(f"{site.source}: {exc}", source=site.source) from None


@dataclass
class ReplayControl:
    """What runs the control in a replay: the site's core, the setpoint book, the cycle."""

    core: SiteCore
    """State table, health, measurements and planner (as in ``gridloop run``)."""
    book: SetpointBook
    """What each controlled power row was last sent."""
    cycle: ControlCycle
    """The strategies' state."""


def replay_control(site: SiteConfig, config: GridloopConfig, *, site_zone: str | None = None,
                   meter_max_gap_s: float | None = None,
                   schedule: ScheduleBook | None = None) -> ReplayControl:
    """Build the control of a replay the way ``gridloop run`` builds it for ``config``.

    Args:
        site: The simulated site.
        config: The run's configuration: its strategies
            (:meth:`ControlCycle.from_config`, with its billing meter and auto limit) and
            ``[control]`` settings (lifetime, deadband, staleness, SoC exponent, via
            :func:`controller.runtime.service.runtime_options` at time scale 1).
        site_zone: The site's zone, as the API would give it (used when ``[billing]
            timezone`` is not set).
        meter_max_gap_s: How long the billing meter holds one sample (None = the
            service's default). A replay that steps the physics minutes at a time while
            nothing changes sets it to its longest step: there a gap between cycles is
            not lost telemetry but a stretch the replay knows to be constant.
        schedule: The service windows the cycle applies (None = none: the config's
            strategies all the time), as ``gridloop run --schedule`` hands them over.

    Returns:
        The core, an empty setpoint book and the cycle.

    Raises:
        ReplayError: the graph or the control settings are unusable.
    """
    from actors import OptionsError
    from controller.runtime.service import runtime_options

    graph = site_graph(site)
    try:
        options = runtime_options(config, 1.0)
    except OptionsError as exc:
        raise ReplayError(f"control: {exc}", source="control") from None
    core = SiteCore(graph, options)
    cycle = ControlCycle.from_config(config, site_zone, schedule)
    if meter_max_gap_s is not None and cycle.meter is not None:
        cycle.meter = BillingMeter(cycle.meter.clock, max_gap_s=meter_max_gap_s)
    return ReplayControl(core=core, book=SetpointBook(len(core.index.inverter_ids)),
                         cycle=cycle)


class PhysicsTransport:
    """Telemetry from, and setpoints to, a :class:`SitePhysics` (see the module docstring)."""

    def __init__(self, physics: SitePhysics, control: ReplayControl,
                 site_origin_s: float | None = None) -> None:
        """Map the state table's rows to the physics' rows.

        Args:
            physics: The simulated site (its component ids are the graph's).
            control: The replay's control.
            site_origin_s: The site's unix time at physics time 0 (s); None = no site
                time (no billing meter: peak shaving shaves single samples).
        """
        self.physics = physics
        self.control = control
        self.site_origin_s = site_origin_s
        """The site's unix time at physics time 0 (None = no site time)."""
        core = control.core
        t = core.state
        ph = physics
        ids = [int(c) for c in t.ids]
        kinds = [ph.kind_of(c) for c in ids]
        self._inv_ids = [c for c, k in zip(ids, kinds, strict=True) if k in POWER_KINDS]
        self._inv = np.array([t.row_of[c] for c in self._inv_ids], dtype=np.int64)
        self._inv_ph = np.array([ph.inverter_row(c) for c in self._inv_ids], dtype=np.int64)
        bat_ids = [c for c, k in zip(ids, kinds, strict=True) if k == "battery"]
        self._bat = np.array([t.row_of[c] for c in bat_ids], dtype=np.int64)
        self._bat_ph = np.array([ph.battery_row(c) for c in bat_ids], dtype=np.int64)
        met_ids = [c for c, k in zip(ids, kinds, strict=True) if k == "meter"]
        self._met = np.array([t.row_of[c] for c in met_ids], dtype=np.int64)
        self._met_ph = np.array([ph.meter_row(c) for c in met_ids], dtype=np.int64)
        self._lifetime_s = float(int(core.options.setpoint_lifetime_s))
        self._dispatch_ids = core.index.inverter_ids
        self._dispatch_rows = core.index.inv_rows
        self.delay_s: dict[int, float] = {c.id: c.response_delay_s for c in physics.site.inverters}
        self.delay_s.update({c.id: c.response_delay_s for c in physics.site.ev_chargers})
        """Response delay of each power row (s): when a sent setpoint takes effect."""
        self.cycles = 0
        """Control cycles run."""
        self.refused = 0
        """Setpoints the site refused (out of bounds, not ready)."""
        self.q_book: SetpointBook | None = (
            SetpointBook(core.index.n_battery) if core.reactive else None
        )
        """What each battery inverter was last sent as reactive setpoint (None = reactive
        control off), as the service's reactive dispatcher keeps it."""
        self.q_sent = 0
        """Reactive setpoints sent."""
        self.q_refused: dict[str, int] = {}
        """Reactive setpoints the site refused, by reason (the server's error code)."""

    def now_ns(self) -> int:
        """The virtual monotonic clock (ns)."""
        return CLOCK_ORIGIN_NS + round(self.physics.now_s * 1e9)

    def site_time_s(self) -> float | None:
        """The site's unix time now (s; None without an origin): the data's clock."""
        if self.site_origin_s is None:
            return None
        return self.site_origin_s + round(self.physics.now_s, 6)

    def publish(self, now_ns: int) -> None:
        """One telemetry sample of every streamed component, decoded at ``now_ns``."""
        ph = self.physics
        t = self.control.core.state
        sample_ns = round(ph.now_s * 1e9)
        inv, inv_ph = self._inv, self._inv_ph
        t.power_w[inv] = ph.inverter_power_w[inv_ph]
        t.frequency_hz[inv] = ph.frequency_hz
        for row, cid in zip(inv.tolist(), self._inv_ids, strict=True):
            lo, hi, el, eu, ok = intervals_to_band(ph.active_power_bounds(cid))
            t.power_lower_w[row], t.power_upper_w[row] = lo, hi
            t.power_excl_lower_w[row], t.power_excl_upper_w[row] = el, eu
            t.bounds_ok[row] = ok
        t.has_bounds[inv] = True
        t.state_ok[inv] = ph.inverter_state[inv_ph] <= ComponentState.STANDBY
        bat, bat_ph = self._bat, self._bat_ph
        t.power_w[bat] = ph.battery_power_w[bat_ph]
        # A battery's bounds are one interval containing 0: no exclusion band.
        t.power_lower_w[bat] = ph.battery_lower_w[bat_ph]
        t.power_upper_w[bat] = ph.battery_upper_w[bat_ph]
        t.power_excl_lower_w[bat] = 0.0
        t.power_excl_upper_w[bat] = 0.0
        t.bounds_ok[bat] = True
        t.has_bounds[bat] = True
        t.soc_pct[bat] = ph.battery_soc_pct[bat_ph]
        t.soc_lower_pct[bat] = ph.battery_soc_min_pct[bat_ph]
        t.soc_upper_pct[bat] = ph.battery_soc_max_pct[bat_ph]
        t.capacity_wh[bat] = ph.battery_capacity_wh[bat_ph]
        t.state_ok[bat] = ph.battery_state[bat_ph] == ComponentState.RUNNING
        met = self._met
        t.power_w[met] = ph.meter_power_w[self._met_ph]
        t.frequency_hz[met] = ph.frequency_hz
        if self.q_book is not None:
            self._publish_reactive()
        t.data_ok[:] = True
        t.sample_time_ns[:] = sample_ns
        t.received_ns[:] = now_ns
        t.samples += 1

    def _publish_reactive(self) -> None:
        """The reactive metrics as the decoder fills them (`actors` ``_decode_reactive``):
        Q with its momentary bounds and the apparent rating of each inverter, Q and the
        connection point's voltage at every meter and inverter."""
        ph = self.physics
        t = self.control.core.state
        inv, inv_ph = self._inv, self._inv_ph
        t.reactive_var[inv] = ph.inverter_reactive_var[inv_ph]
        t.voltage_v[inv] = ph.grid_voltage_v
        rating = ph.inverter_rated_apparent_va[inv_ph]
        with np.errstate(invalid="ignore"):
            t.apparent_rating_va[inv] = np.where(np.isfinite(rating) & (rating > 0), rating,
                                                 np.nan)
        for row, cid in zip(inv.tolist(), self._inv_ids, strict=True):
            lo, hi, _el, _eu, ok = intervals_to_band(ph.reactive_power_bounds(cid))
            t.reactive_lower_var[row] = lo if ok else np.nan
            t.reactive_upper_var[row] = hi if ok else np.nan
        t.reactive_var[self._met] = ph.meter_reactive_var[self._met_ph]
        t.voltage_v[self._met] = ph.grid_voltage_v

    def send(self, planned: PlannedRound, now_ns: int) -> list[int]:
        """Apply a planned round to the physics, as the dispatcher and the server would.

        Returns:
            The ids of the power rows (inverters, EV chargers) whose setpoint was accepted.
        """
        ph = self.physics
        core = self.control.core
        book = self.control.book
        book.record(planned.indices, planned.powers_w, now_ns)
        accepted: list[int] = []
        for i, p in zip(planned.indices, planned.powers_w, strict=True):
            cid = self._dispatch_ids[i]
            row = int(self._dispatch_rows[i])
            try:
                ph.check_active_power(cid, p)
            except RequestError as exc:
                self.refused += 1
                book.refused(i, core.health, row, now_ns, exc.code)
                continue
            ph.set_active_power(cid, p, self._lifetime_s)
            book.acknowledged(i, core.health, row)
            accepted.append(cid)
        return accepted + self.send_reactive(planned, now_ns)

    def send_reactive(self, planned: PlannedRound, now_ns: int) -> list[int]:
        """Apply a planned round's reactive setpoints, as the reactive dispatcher and the
        server would (a refused one: health backoff, re-sent later, as for P).

        Returns:
            The ids of the inverters whose reactive setpoint was accepted.
        """
        q_book = self.q_book
        if q_book is None or not planned.q_indices:
            return []
        ph = self.physics
        health = self.control.core.health
        q_book.record(planned.q_indices, planned.q_powers_var, now_ns)
        accepted: list[int] = []
        for i, q in zip(planned.q_indices, planned.q_powers_var, strict=True):
            cid = self._dispatch_ids[i]
            row = int(self._dispatch_rows[i])
            self.q_sent += 1
            try:
                ph.check_reactive_power(cid, q)
            except RequestError as exc:
                self.q_refused[exc.code] = self.q_refused.get(exc.code, 0) + 1
                q_book.refused(i, health, row, now_ns, exc.code)
                continue
            ph.set_reactive_power(cid, q, self._lifetime_s)
            q_book.acknowledged(i, health, row)
            accepted.append(cid)
        return accepted

    def cycle(self, strategies: Sequence[Strategy] | None = None) -> list[float]:
        """One control cycle now: telemetry in, the control code, setpoints out.

        Args:
            strategies: The strategies due (None = all).

        Returns:
            When the accepted setpoints take effect (physics seconds).
        """
        now_ns = self.now_ns()
        self.publish(now_ns)
        c = self.control
        planned = plan_setpoints(c.cycle, c.core, c.book, now_ns, strategies,
                                 site_time_s=self.site_time_s(), q_book=self.q_book)
        self.cycles += 1
        now_s = self.physics.now_s
        return [now_s + self.delay_s[cid] for cid in self.send(planned, now_ns)]
