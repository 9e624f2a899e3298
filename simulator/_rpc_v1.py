"""The Microgrid API v1 front end of the simulator (``frequenz.api.microgrid.v1``, 0.17).

Offers `MicrogridV1Servicer`: one handler per v1 RPC over the `ServiceCore`
(`simulator._rpc_core`) the v1alpha18/v1alpha19 front end shares, so a v1 call
gets the same API key check, validation, status codes, fault injection,
statistics and physics as a v1alpha18 one, and a setpoint sent through either
shows in the telemetry of both. Also offers `v1_component` (a catalogue entry
in v1 words). What v1 does its own way:

* numbers: v1 uses ``frequenz.api.common.v1`` enums (metric 26 is AC active
  power, category 1 is GRID, …); `simulator._wire` translates, by meaning.
* ``SetComponentPowerActive`` / ``SetComponentPowerReactive`` are unary: the
  answer (``valid_until``) comes once the setpoint is accepted; there is no
  SUCCESS / OVERRIDDEN tail as in v1alpha18's stream.
* ``AddComponentBounds`` has no token: each request is an augmentation of its
  own, lapsing after its ``validity_duration`` (5 s unless 1, 5 or 15 min);
  there is no call to clear one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from frequenz.api.common.v1.metrics import bounds_pb2 as v1_bounds_pb2
from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics_pb2
from frequenz.api.common.v1.microgrid import microgrid_pb2 as v1_common_mg_pb2
from frequenz.api.common.v1.microgrid.components import components_pb2 as v1_comp_pb2
from frequenz.api.common.v1.microgrid.sensors import sensors_pb2 as v1_sensors_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
from google.protobuf import empty_pb2

from ._rpc import stream, unary
from ._rpc_core import PowerKind, ServiceCore, lifetime_of
from ._wire import SERVICE_NAMES, V1_CATEGORY, V1_METRIC, enum_name

__all__ = ["MicrogridV1Servicer", "v1_component"]

Context = grpc.aio.ServicerContext[Any, Any]

_VALIDITY_S: dict[int, float] = {
    v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_UNSPECIFIED: 5.0,
    v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_5_SECONDS: 5.0,
    v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_1_MINUTE: 60.0,
    v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_5_MINUTES: 300.0,
    v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_15_MINUTES: 900.0,
}
"""Simulated seconds of each ``validity_duration`` (unset = 5 s, as the proto says)."""

_SENSOR_CATEGORY = v1_sensors_pb2.SENSOR_CATEGORY_PYRANOMETER
"""The v1 category of the site's weather sensors (they measure irradiance)."""


def v1_component(c: ec_pb2.ElectricalComponent) -> v1_comp_pb2.Component:
    """The v1 ``Component`` of a catalogue entry (`build_components`).

    Inverter, battery and EV charger type numbers are the same in both versions
    (v1alpha8's INVERTER_TYPE_PV is v1's INVERTER_TYPE_SOLAR, both 2).
    """
    out = v1_comp_pb2.Component(
        id=c.id,
        microgrid_id=c.microgrid_id,
        name=c.name,
        category=v1_comp_pb2.ComponentCategory.ValueType(V1_CATEGORY.get(c.category, 0)),
        manufacturer=c.manufacturer,
        model_name=c.model_name,
        status=v1_comp_pb2.COMPONENT_STATUS_ACTIVE,
    )
    info = c.category_specific_info
    which = info.WhichOneof("kind")
    if which == "grid_connection_point":
        out.category_type.grid.rated_fuse_current = info.grid_connection_point.rated_fuse_current
    elif which == "inverter":
        out.category_type.inverter.type = info.inverter.type  # type: ignore[assignment]
    elif which == "battery":
        out.category_type.battery.type = info.battery.type  # type: ignore[assignment]
    elif which == "ev_charger":
        out.category_type.ev_charger.type = info.ev_charger.type  # type: ignore[assignment]
    for mcb in c.metric_config_bounds:
        b = v1_bounds_pb2.Bounds()
        if mcb.config_bounds.HasField("lower"):
            b.lower = mcb.config_bounds.lower
        if mcb.config_bounds.HasField("upper"):
            b.upper = mcb.config_bounds.upper
        out.metric_config_bounds.add(
            metric=v1_metrics_pb2.Metric.ValueType(V1_METRIC[mcb.metric]), config_bounds=b
        )
    return out


class MicrogridV1Servicer:
    """The RPC handlers of the v1 ``Microgrid`` service for one simulated site."""

    def __init__(self, core: ServiceCore) -> None:
        """Serve the site of ``core``."""
        self.core = core
        self.physics = core.physics
        self.components = [v1_component(c) for c in core.components]
        """The Component messages ListComponents serves."""
        self._connections = [
            v1_comp_pb2.ComponentConnection(source_component_id=s, destination_component_id=d)
            for s, d in core.site.connections
        ]

    def handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The handlers under the service name ``frequenz.api.microgrid.v1.Microgrid``."""
        return grpc.method_handlers_generic_handler(
            SERVICE_NAMES["v1"],
            {
                "GetMicrogridMetadata": unary(self.GetMicrogridMetadata, empty_pb2.Empty),
                "ListComponents": unary(self.ListComponents, v1_pb2.ListComponentsRequest),
                "ListSensors": unary(self.ListSensors, v1_pb2.ListSensorRequest),
                "ListConnections": unary(self.ListConnections, v1_pb2.ListConnectionsRequest),
                "ReceiveComponentDataStream": stream(
                    self.ReceiveComponentDataStream, v1_pb2.ReceiveComponentDataStreamRequest
                ),
                "ReceiveSensorDataStream": stream(
                    self.ReceiveSensorDataStream, v1_pb2.ReceiveSensorDataStreamRequest
                ),
                "AddComponentBounds": unary(
                    self.AddComponentBounds, v1_pb2.AddComponentBoundsRequest
                ),
                "SetComponentPowerActive": unary(
                    self.SetComponentPowerActive, v1_pb2.SetComponentPowerActiveRequest
                ),
                "SetComponentPowerReactive": unary(
                    self.SetComponentPowerReactive, v1_pb2.SetComponentPowerReactiveRequest
                ),
                "StartComponent": unary(self.StartComponent, v1_pb2.StartComponentRequest),
                "PutComponentInStandby": unary(
                    self.PutComponentInStandby, v1_pb2.PutComponentInStandbyRequest
                ),
                "StopComponent": unary(self.StopComponent, v1_pb2.StopComponentRequest),
                "AckComponentError": unary(self.AckComponentError, v1_pb2.AckComponentErrorRequest),
            },
        )

    async def GetMicrogridMetadata(  # noqa: N802 - gRPC method name
        self, request: empty_pb2.Empty, context: Context
    ) -> v1_pb2.GetMicrogridMetadataResponse:
        """Microgrid id, name, enterprise, location and status.

        The common v1 ``Microgrid`` is field for field v1alpha8's (same numbers
        and types, location and delivery area included), so it is the same bytes.
        """
        await self.core.check_auth(context)
        mg = v1_common_mg_pb2.Microgrid.FromString(self.core.microgrid().SerializeToString())
        return v1_pb2.GetMicrogridMetadataResponse(microgrid=mg)

    async def ListComponents(  # noqa: N802
        self, request: v1_pb2.ListComponentsRequest, context: Context
    ) -> v1_pb2.ListComponentsResponse:
        """Components filtered by ids AND categories (v1 numbers; OR within each list)."""
        await self.core.check_auth(context)
        ids = set(request.component_ids)
        cats = set(request.categories)
        return v1_pb2.ListComponentsResponse(
            components=[
                c
                for c in self.components
                if (not ids or c.id in ids) and (not cats or c.category in cats)
            ]
        )

    async def ListSensors(  # noqa: N802
        self, request: v1_pb2.ListSensorRequest, context: Context
    ) -> v1_pb2.ListSensorsResponse:
        """Sensors filtered by ids AND categories (the site's are pyranometers)."""
        core = self.core
        await core.check_auth(context)
        ids = set(request.sensor_ids)
        cats = set(request.categories)
        if cats and _SENSOR_CATEGORY not in cats:
            return v1_pb2.ListSensorsResponse()
        return v1_pb2.ListSensorsResponse(
            sensors=[
                v1_sensors_pb2.Sensor(
                    id=s.id,
                    microgrid_id=core.site.microgrid_id,
                    name=s.name,
                    manufacturer="gridloop",
                    model_name="sim-weather",
                )
                for s in core.site.sensors
                if not ids or s.id in ids
            ]
        )

    async def ListConnections(  # noqa: N802
        self, request: v1_pb2.ListConnectionsRequest, context: Context
    ) -> v1_pb2.ListConnectionsResponse:
        """Connections filtered by ``starts`` AND ``ends`` (component ids)."""
        await self.core.check_auth(context)
        starts = set(request.starts)
        ends = set(request.ends)
        return v1_pb2.ListConnectionsResponse(
            connections=[
                c
                for c in self._connections
                if (not starts or c.source_component_id in starts)
                and (not ends or c.destination_component_id in ends)
            ]
        )

    async def ReceiveComponentDataStream(  # noqa: N802
        self, request: v1_pb2.ReceiveComponentDataStreamRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """``ComponentData`` of one component at ``telemetry_hz``, honouring the metric
        filter (v1 numbers).

        No filter = all metrics; an empty metric list is INVALID_ARGUMENT; metrics
        the component does not have (or v1 numbers the simulator does not model)
        are left out. Bounds ride on the samples, as in v1alpha18.
        """
        frames = self.core.component_stream(request.component_id, request, context, "v1")
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame

    async def ReceiveSensorDataStream(  # noqa: N802
        self, request: v1_pb2.ReceiveSensorDataStreamRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """``SensorData`` of a weather sensor: irradiance (W/m², v1's
        METRIC_SENSOR_IRRADIANCE) and ambient temperature (°C)."""
        frames = self.core.sensor_stream(request.sensor_id, request, context, "v1")
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame

    async def AddComponentBounds(  # noqa: N802
        self, request: v1_pb2.AddComponentBoundsRequest, context: Context
    ) -> v1_pb2.AddComponentBoundsResponse:
        """Add bounds on an inverter's AC active power for ``validity_duration``.

        Each request is an augmentation of its own; the effective bounds are the
        intersection of the inverter's own with every one in force. ``ts`` in the
        answer says until when they hold. The limits of v1alpha18's
        AugmentElectricalComponentBounds apply (`ServiceCore.augment_bounds`);
        an unknown ``validity_duration`` is INVALID_ARGUMENT.
        """
        core = self.core
        await core.check_auth(context)
        cid = request.component_id
        kind = await core.component_or_abort(cid, context)
        lifetime = _VALIDITY_S.get(request.validity_duration)
        if lifetime is None:
            name = enum_name(v1_pb2.ComponentBoundsValidityDuration, request.validity_duration)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"component {cid}: validity_duration {name} is not one of"
                " 5 s, 1 min, 5 min, 15 min",
            )
            raise AssertionError("unreachable")  # pragma: no cover - abort raises
        until = await core.augment_bounds(
            cid,
            kind,
            context,
            wire="v1",
            target_metric=request.target_metric,
            bounds=request.bounds,
            token=None,
            lifetime_s=lifetime,
        )
        return v1_pb2.AddComponentBoundsResponse(ts=until)

    async def _set_power(self, request: Any, kind: PowerKind, context: Context) -> Any:
        """Admit a v1 setpoint (`ServiceCore.admit_setpoint`), apply it, say until when."""
        core = self.core
        cid, power = request.component_id, request.power
        lifetime = lifetime_of(request, 60.0)
        await core.admit_setpoint(cid, power, kind, lifetime, context)
        if kind == "active":
            self.physics.set_active_power(cid, power, lifetime)
        else:
            self.physics.set_reactive_power(cid, power, lifetime)
        return core.valid_until(lifetime)

    async def SetComponentPowerActive(  # noqa: N802
        self, request: v1_pb2.SetComponentPowerActiveRequest, context: Context
    ) -> v1_pb2.SetComponentPowerActiveResponse:
        """Active power setpoint (W, positive = charging); lifetime default 60 s,
        allowed 10 s..15 min (simulated seconds). Answers once accepted."""
        until = await self._set_power(request, "active", context)
        return v1_pb2.SetComponentPowerActiveResponse(valid_until=until)

    async def SetComponentPowerReactive(  # noqa: N802
        self, request: v1_pb2.SetComponentPowerReactiveRequest, context: Context
    ) -> v1_pb2.SetComponentPowerReactiveResponse:
        """Reactive power setpoint (VAr); lifetimes as for active power."""
        until = await self._set_power(request, "reactive", context)
        return v1_pb2.SetComponentPowerReactiveResponse(valid_until=until)

    async def StartComponent(  # noqa: N802
        self, request: v1_pb2.StartComponentRequest, context: Context
    ) -> empty_pb2.Empty:
        """OFF/STANDBY -> running at 0 W; ERROR needs AckComponentError first."""
        return await self.core.command(request.component_id, context, self.physics.start)

    async def PutComponentInStandby(  # noqa: N802
        self, request: v1_pb2.PutComponentInStandbyRequest, context: Context
    ) -> empty_pb2.Empty:
        """Running inverter -> STANDBY at 0 W."""
        return await self.core.command(request.component_id, context, self.physics.standby)

    async def StopComponent(  # noqa: N802
        self, request: v1_pb2.StopComponentRequest, context: Context
    ) -> empty_pb2.Empty:
        """Inverter -> OFF; battery -> OFF (relays open) only at 0 W."""
        return await self.core.command(request.component_id, context, self.physics.stop)

    async def AckComponentError(  # noqa: N802
        self, request: v1_pb2.AckComponentErrorRequest, context: Context
    ) -> empty_pb2.Empty:
        """ERROR -> OFF."""
        return await self.core.command(request.component_id, context, self.physics.ack_error)
