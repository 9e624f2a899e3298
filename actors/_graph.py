"""The component graph: battery groups, the grid formula, PV and load meters.

Built once from ListElectricalComponents + ListElectricalComponentConnections.
Connections point away from the grid (source = closer to the grid), so an
inverter → battery connection links an inverter to the battery behind it. A
*battery group* is a connected set of battery inverters and batteries (1:1,
n inverters : 1 battery, 1 inverter : n batteries, or mixed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from ._errors import GraphError
from ._grid import GridFormula

CAT_GRID: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_GRID_CONNECTION_POINT
CAT_METER: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_METER
CAT_INVERTER: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_INVERTER
CAT_BATTERY: int = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_BATTERY
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
                   name=comp.name)


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
        comps: dict[int, ComponentInfo] = {}
        for c in components:
            if c.id in comps:
                raise GraphError("duplicate component id", component_id=c.id)
            comps[c.id] = c
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

        # Inverter <-> battery links.
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

        # Connected components of the inverter-battery bipartite graph (union-find).
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for inv, bat in links:
            ra, rb = find(inv), find(bat)
            if ra != rb:
                parent[ra] = rb
        members: dict[int, list[int]] = {}
        for node in parent:
            members.setdefault(find(node), []).append(node)
        groups = []
        for nodes in members.values():
            invs = tuple(sorted(n for n in nodes if comps[n].category == CAT_INVERTER))
            bats = tuple(sorted(n for n in nodes if comps[n].category == CAT_BATTERY))
            glinks = tuple(sorted(lk for lk in links if lk[0] in invs))
            groups.append(BatteryGroup(inverter_ids=invs, battery_ids=bats, links=glinks))
        groups.sort(key=lambda g: g.inverter_ids[0])

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
            groups=tuple(groups),
            grid=grid,
            pv_inverter_ids=pv_invs,
            pv_meter_ids=pv_meters,
            load_meter_ids=load_meters,
            successors={k: tuple(v) for k, v in succ.items()},
        )
