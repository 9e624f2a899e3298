"""The component graph: battery groups, the grid formula, PV, EV chargers and load meters.

Built once from ListElectricalComponents + ListElectricalComponentConnections.
Connections point away from the grid (source = closer to the grid), so an
inverter → battery connection links an inverter to the battery behind it. A
*battery group* is a connected set of battery inverters and batteries (1:1,
n inverters : 1 battery, 1 inverter : n batteries, or mixed). The controllable
components are the battery inverters, the PV inverters (production caps) and the
EV chargers (charge limits), in that order (`ComponentGraph.controlled_ids`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from distribution import group_links

from ._errors import GraphError
from ._grid import GridFormula

CAT_METER: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_METER
CAT_INVERTER: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_INVERTER
CAT_BATTERY: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_BATTERY
CAT_EV_CHARGER: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER
INV_BATTERY: int = ec_pb2.INVERTER_TYPE_BATTERY
INV_PV: int = ec_pb2.INVERTER_TYPE_PV
INV_HYBRID: int = ec_pb2.INVERTER_TYPE_HYBRID


@dataclass(frozen=True)
class ComponentInfo:
    """What the graph needs to know about one component."""

    id: int
    """Component id."""
    category: int
    """`ElectricalComponentCategory` value."""
    inverter_type: int = 0
    """`InverterType` value for inverters (0 = unspecified)."""
    name: str = ""
    """Component name."""
    rated_power_w: float = math.nan
    """Rated AC active power (W, > 0): the larger end of the component's configured
    active-power bounds (``metric_config_bounds``); nan when the server gives none."""

    @classmethod
    def from_proto(cls, comp: ec_pb2.ElectricalComponent) -> ComponentInfo:
        """Convert an API component.

        Args:
            comp: The API message.

        Returns:
            The info.
        """
        inv_type = 0
        if comp.category_specific_info.WhichOneof("kind") == "inverter":
            inv_type = int(comp.category_specific_info.inverter.type)
        return cls(id=int(comp.id), category=int(comp.category), inverter_type=inv_type,
                   name=comp.name, rated_power_w=_rated_power_w(comp))


def _rated_power_w(comp: ec_pb2.ElectricalComponent) -> float:
    """The larger magnitude of the configured AC active-power bounds (nan: none usable)."""
    for mcb in comp.metric_config_bounds:
        if mcb.metric != metrics_pb2.METRIC_AC_POWER_ACTIVE:
            continue
        b = mcb.config_bounds
        ends = [abs(v) for v, has in ((b.lower, b.HasField("lower")),
                                       (b.upper, b.HasField("upper")))
                if has and math.isfinite(v)]
        if ends and max(ends) > 0:
            return float(max(ends))
    return math.nan


@dataclass(frozen=True)
class BatteryGroup:
    """A connected set of battery inverters and the batteries behind them."""

    inverter_ids: tuple[int, ...]
    """Battery inverter ids (sorted)."""
    battery_ids: tuple[int, ...]
    """Battery ids (sorted)."""
    links: tuple[tuple[int, int], ...]
    """(inverter id, battery id) connections inside the group."""


@dataclass(frozen=True)
class ComponentGraph:
    """The parts of a site's component graph that battery control needs."""

    components: dict[int, ComponentInfo]
    """Every component by id."""
    groups: tuple[BatteryGroup, ...]
    """Battery groups, sorted by their first inverter id."""
    grid: GridFormula
    """How the grid power is measured: the branches leaving the grid connection point."""
    pv_inverter_ids: tuple[int, ...] = ()
    """PV inverters."""
    pv_meter_ids: tuple[int, ...] = ()
    """Meters whose successors are all PV inverters."""
    ev_charger_ids: tuple[int, ...] = ()
    """EV chargers (sorted)."""
    load_meter_ids: tuple[int, ...] = ()
    """Leaf meters (no successors) that are not a term of the grid formula."""
    successors: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Successor ids by component id."""

    @property
    def battery_inverter_ids(self) -> tuple[int, ...]:
        """All battery inverter ids, group by group."""
        return tuple(i for g in self.groups for i in g.inverter_ids)

    @property
    def battery_ids(self) -> tuple[int, ...]:
        """All battery ids, group by group."""
        return tuple(b for g in self.groups for b in g.battery_ids)

    @property
    def controlled_ids(self) -> tuple[int, ...]:
        """Every component that takes active-power setpoints: battery inverters (group
        by group), then PV inverters, then EV chargers."""
        return self.battery_inverter_ids + self.pv_inverter_ids + self.ev_charger_ids

    @property
    def grid_meter_id(self) -> int | None:
        """The meter that alone measures the grid connection, if the formula is just that."""
        g = self.grid
        if g.measurable and len(g.power_ids) == 1:
            cid = g.power_ids[0]
            return cid if self.components[cid].category == CAT_METER else None
        return None

    @property
    def streamed_ids(self) -> tuple[int, ...]:
        """Components whose telemetry the runtime streams (the grid formula's terms first)."""
        ids = dict.fromkeys(
            self.grid.power_ids
            + self.battery_inverter_ids
            + self.battery_ids
            + self.pv_inverter_ids
            + self.pv_meter_ids
            + self.ev_charger_ids
            + self.load_meter_ids
        )
        return tuple(ids)

    @classmethod
    def from_protos(
        cls,
        components: Iterable[ec_pb2.ElectricalComponent],
        connections: Iterable[ec_pb2.ElectricalComponentConnection],
    ) -> ComponentGraph:
        """Build the graph from API messages.

        Args:
            components: ListElectricalComponents result.
            connections: ListElectricalComponentConnections result.

        Returns:
            The graph.
        """
        return cls.build(
            [ComponentInfo.from_proto(c) for c in components],
            [
                (int(c.source_electrical_component_id), int(c.destination_electrical_component_id))
                for c in connections
            ],
        )

    @classmethod
    def build(
        cls, components: Sequence[ComponentInfo], connections: Sequence[tuple[int, int]]
    ) -> ComponentGraph:
        """Build the graph from plain data.

        Args:
            components: The components.
            connections: (source id, destination id) pairs, source closer to the grid.

        Returns:
            The graph.

        Raises:
            GraphError: Duplicate ids, connections to unknown ids, self loops,
                a battery behind a PV inverter, no battery group at all.
        """
        comps = _index(components)
        succ, pred = _adjacency(comps, connections)
        grid = GridFormula.build({c.id: c.category for c in comps.values()}, succ, pred)
        pv_invs = tuple(
            sorted(
                c.id
                for c in comps.values()
                if c.category == CAT_INVERTER and c.inverter_type == INV_PV
            )
        )
        pv_meters = tuple(
            sorted(
                c.id
                for c in comps.values()
                if c.category == CAT_METER
                and succ[c.id]
                and all(s in pv_invs for s in succ[c.id])
            )
        )
        load_meters = tuple(
            sorted(
                c.id
                for c in comps.values()
                if c.category == CAT_METER and not succ[c.id] and c.id not in grid.power_ids
            )
        )
        return cls(
            components=comps,
            groups=_battery_groups(_battery_links(comps, connections)),
            grid=grid,
            pv_inverter_ids=pv_invs,
            pv_meter_ids=pv_meters,
            ev_charger_ids=tuple(sorted(
                c.id for c in comps.values() if c.category == CAT_EV_CHARGER
            )),
            load_meter_ids=load_meters,
            successors={k: tuple(v) for k, v in succ.items()},
        )


def _index(components: Sequence[ComponentInfo]) -> dict[int, ComponentInfo]:
    """The components by id; raises `GraphError` for a duplicate id."""
    comps: dict[int, ComponentInfo] = {}
    for c in components:
        if c.id in comps:
            raise GraphError("duplicate component id", component_id=c.id)
        comps[c.id] = c
    return comps


def _adjacency(
    comps: dict[int, ComponentInfo], connections: Sequence[tuple[int, int]]
) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Successors and predecessors by id; raises for unknown ids and self loops."""
    succ: dict[int, list[int]] = {cid: [] for cid in comps}
    pred: dict[int, list[int]] = {cid: [] for cid in comps}
    for src, dst in connections:
        for end in (src, dst):
            if end not in comps:
                raise GraphError(
                    f"connection {src} -> {dst} names unknown component {end}",
                    component_id=end,
                )
        if src == dst:
            raise GraphError(f"connection {src} -> {dst} is a self loop", component_id=src)
        succ[src].append(dst)
        pred[dst].append(src)
    return succ, pred


def _battery_links(
    comps: dict[int, ComponentInfo], connections: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The inverter -> battery connections; raises for a battery behind a PV inverter or none."""
    links: list[tuple[int, int]] = []
    for src, dst in connections:
        s, d = comps[src], comps[dst]
        if s.category == CAT_INVERTER and d.category == CAT_BATTERY:
            if s.inverter_type == INV_PV:
                raise GraphError(
                    f"battery {dst} is connected behind PV inverter {src}", component_id=src
                )
            links.append((src, dst))
    if not links:
        n_bat = sum(1 for c in comps.values() if c.category == CAT_BATTERY)
        raise GraphError(
            f"no battery is connected to an inverter ({n_bat} batteries, "
            f"{sum(1 for c in comps.values() if c.category == CAT_INVERTER)} inverters)"
        )
    return links


def _battery_groups(links: list[tuple[int, int]]) -> tuple[BatteryGroup, ...]:
    """The battery groups of ``(inverter id, battery id)`` links (`distribution.group_links`).

    Every linked inverter and battery is in exactly one group; the groups come
    sorted by their first inverter id, their ids and links sorted.
    """
    inv_ids = sorted({i for i, _ in links})
    bat_ids = sorted({b for _, b in links})
    inv_ix = {cid: k for k, cid in enumerate(inv_ids)}
    bat_ix = {cid: k for k, cid in enumerate(bat_ids)}
    index = np.array([(inv_ix[i], bat_ix[b]) for i, b in links], dtype=np.intp)
    # Group numbers follow the lowest inverter index, i.e. the lowest inverter id.
    inv_group, bat_group, n_groups = group_links(len(inv_ids), len(bat_ids), index)
    invs: list[list[int]] = [[] for _ in range(n_groups)]
    bats: list[list[int]] = [[] for _ in range(n_groups)]
    glinks: list[list[tuple[int, int]]] = [[] for _ in range(n_groups)]
    for cid, g in zip(inv_ids, inv_group.tolist(), strict=True):
        invs[g].append(cid)
    for cid, g in zip(bat_ids, bat_group.tolist(), strict=True):
        bats[g].append(cid)
    for link, k in zip(links, index[:, 0].tolist(), strict=True):
        glinks[int(inv_group[k])].append(link)
    return tuple(
        BatteryGroup(inverter_ids=tuple(i), battery_ids=tuple(b), links=tuple(sorted(lk)))
        for i, b, lk in zip(invs, bats, glinks, strict=True)
    )
