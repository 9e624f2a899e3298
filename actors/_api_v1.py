"""The adapter for Microgrid API v1, the original (0.17) API sites run (`actors._api`).

v1 lists ``Component`` / ``ComponentConnection`` messages of
``frequenz.api.common.v1``; the adapter turns them into the runtime's model
(ids, category, inverter type, name, the configured active-power bounds;
connection ends). Its categories are
numbered differently (grid 1 = grid connection point, CHP 10 vs 9, ...): they
are matched by name. Telemetry (``ComponentData``: ``metric_samples`` with
``sampled_at``, ``states``) is read by the state table through `V1_WIRE`, with
v1's metric numbers. A setpoint is one unary call (``SetComponentPowerActive``)
answered with ``valid_until``: the one answer is final (`STATUS_SUCCESS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from frequenz.api.common.v1.metrics import metric_sample_pb2
from frequenz.api.common.v1.microgrid.components import components_pb2 as v1c_pb2
from frequenz.api.common.v1alpha8.metrics import metrics_pb2 as v1a8_metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.microgrid.v1 import microgrid_pb2 as pb2
from frequenz.api.microgrid.v1 import microgrid_pb2_grpc as pb2_grpc
from google.protobuf import empty_pb2

from ._api import STATUS_SUCCESS, MicrogridInfo, SetpointCall, TelemetryWire, Transport

__all__ = ["V1_WIRE", "V1Api", "category_from_v1"]

#: Telemetry of v1 (``frequenz.api.common.v1`` metrics, ``ComponentData``).
V1_WIRE = TelemetryWire(
    ac_power=metric_sample_pb2.METRIC_AC_ACTIVE_POWER,
    dc_power=metric_sample_pb2.METRIC_DC_POWER,
    soc=metric_sample_pb2.METRIC_BATTERY_SOC_PCT,
    capacity=metric_sample_pb2.METRIC_BATTERY_CAPACITY,
    frequency=metric_sample_pb2.METRIC_AC_FREQUENCY,
    sample_time="sampled_at",
    snapshots="states",
    payload="data",
)

_RENAMED = {"GRID": "GRID_CONNECTION_POINT", "VOLTAGE_TRANSFORMER": "POWER_TRANSFORMER"}


def _category_table() -> dict[int, int]:
    table: dict[int, int] = {}
    for name, number in v1c_pb2.ComponentCategory.items():
        bare = name.removeprefix("COMPONENT_CATEGORY_")
        ours = "ELECTRICAL_COMPONENT_CATEGORY_" + _RENAMED.get(bare, bare)
        if ours in ec_pb2.ElectricalComponentCategory.keys():  # noqa: SIM118 - enum wrapper
            table[number] = ec_pb2.ElectricalComponentCategory.Value(ours)
    return table


_CATEGORIES = _category_table()


def category_from_v1(category: int) -> int:
    """The runtime's category of a v1 ``ComponentCategory`` (0 = unspecified/unknown).

    Args:
        category: The v1 value.

    Returns:
        The ``ElectricalComponentCategory`` value (v1's fuse and relay have none: 0).
    """
    return _CATEGORIES.get(category, 0)


def _component(comp: v1c_pb2.Component) -> ec_pb2.ElectricalComponent:
    out = ec_pb2.ElectricalComponent(
        id=comp.id,
        microgrid_id=comp.microgrid_id,
        name=comp.name,
        manufacturer=comp.manufacturer,
        model_name=comp.model_name,
        category=category_from_v1(comp.category),  # type: ignore[arg-type]
    )
    meta = comp.category_type
    kind = meta.WhichOneof("metadata")
    if kind == "inverter":
        # Same numbers (v1's SOLAR is v1alpha8's PV).
        out.category_specific_info.inverter.type = meta.inverter.type  # type: ignore[assignment]
    elif kind == "battery":
        out.category_specific_info.battery.type = meta.battery.type  # type: ignore[assignment]
    elif kind == "grid":
        out.category_specific_info.grid_connection_point.rated_fuse_current = (
            meta.grid.rated_fuse_current
        )
    for mcb in comp.metric_config_bounds:
        # The rated active power (`ComponentInfo.rated_power_w`), in v1alpha8's number.
        if mcb.metric == metric_sample_pb2.METRIC_AC_ACTIVE_POWER:
            b = out.metric_config_bounds.add(metric=v1a8_metrics_pb2.METRIC_AC_POWER_ACTIVE)
            if mcb.config_bounds.HasField("lower"):
                b.config_bounds.lower = mcb.config_bounds.lower
            if mcb.config_bounds.HasField("upper"):
                b.config_bounds.upper = mcb.config_bounds.upper
    return out


class _UnarySetpoint:
    """A SetComponentPowerActive call: one answer (final), then no more."""

    __slots__ = ("_answered", "_call")

    def __init__(self, call: grpc.aio.UnaryUnaryCall[Any, Any]) -> None:
        self._call = call
        self._answered = False

    async def read(self) -> int | None:
        if self._answered:
            return None
        self._answered = True
        await self._call
        return STATUS_SUCCESS

    def cancel(self) -> bool:
        return self._call.cancel()

    def cancelled(self) -> bool:
        return self._call.cancelled()


class V1Api:
    """Microgrid API v1 over a client's channel."""

    version = "v1"
    wire = V1_WIRE
    list_method = "ListComponents"
    telemetry_method = "ReceiveComponentDataStream"
    setpoint_method = "SetComponentPowerActive"

    def __init__(self, transport: Transport) -> None:
        """Speak v1 through ``transport``.

        Args:
            transport: The client (channel, metadata, deadlines, errors).
        """
        self._t = transport
        self._stub: Any = pb2_grpc.MicrogridStub(transport.channel)

    async def microgrid(self) -> MicrogridInfo:
        resp = await self._t.unary(
            "GetMicrogridMetadata", self._stub.GetMicrogridMetadata, empty_pb2.Empty(), None
        )
        return MicrogridInfo.from_proto(resp.microgrid)

    async def components(self) -> list[ec_pb2.ElectricalComponent]:
        resp = await self._t.unary(
            self.list_method, self._stub.ListComponents, pb2.ListComponentsRequest(), None
        )
        return [_component(c) for c in resp.components]

    async def connections(self) -> list[ec_pb2.ElectricalComponentConnection]:
        resp = await self._t.unary(
            "ListConnections", self._stub.ListConnections, pb2.ListConnectionsRequest(), None
        )
        return [
            ec_pb2.ElectricalComponentConnection(
                source_electrical_component_id=c.source_component_id,
                destination_electrical_component_id=c.destination_component_id,
            )
            for c in resp.connections
        ]

    def telemetry_stream(
        self, component_id: int, metrics: Sequence[int] | None
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        req = pb2.ReceiveComponentDataStreamRequest(component_id=component_id)
        if metrics:
            req.filter.metrics.extend(metrics)  # type: ignore[arg-type]
        call: grpc.aio.UnaryStreamCall[Any, Any] = self._stub.ReceiveComponentDataStream(
            req, metadata=self._t.metadata
        )
        return call

    def set_power_call(
        self, component_id: int, power_w: float, lifetime_s: int, timeout_s: float
    ) -> SetpointCall:
        return _UnarySetpoint(
            self._stub.SetComponentPowerActive(
                pb2.SetComponentPowerActiveRequest(
                    component_id=component_id, power=power_w, request_lifetime=lifetime_s
                ),
                timeout=timeout_s,
                metadata=self._t.metadata,
            )
        )

    async def start(self, component_id: int) -> None:
        await self._t.unary(
            "StartComponent",
            self._stub.StartComponent,
            pb2.StartComponentRequest(component_id=component_id),
            component_id,
        )

    async def ack_error(self, component_id: int) -> None:
        await self._t.unary(
            "AckComponentError",
            self._stub.AckComponentError,
            pb2.AckComponentErrorRequest(component_id=component_id),
            component_id,
        )
