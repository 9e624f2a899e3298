"""The Microgrid API v1alpha18 and v1alpha19 front end of the simulator: one handler per RPC.

Offers `MicrogridServicer`: the handlers of ``frequenz.api.microgrid.v1alpha18.Microgrid``
over a `ServiceCore` (`simulator._rpc_core`, shared with the v1 front end
`simulator._rpc_v1`); `handlers(version)` gives them to a ``grpc.aio`` server
under the service name of ``v1alpha18`` or ``v1alpha19``. The two versions are
the same messages on the wire (only the package and one nested filter message's
name differ), so one set of handlers serves both: requests are decoded with the
version's own classes, answers and telemetry frames are the same bytes.
Every handler checks the API key first; bad requests fail with the status code
of the `RequestError` the physics raised, naming the component.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.common.v1alpha8.microgrid.sensors import sensors_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as mg19_pb2
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from ._rpc_core import PowerKind, ServiceCore, build_components, lifetime_of
from ._wire import SERVICE_NAMES
from .physics import SetpointStatus

__all__ = ["SERVICE_NAME", "MicrogridServicer", "build_components", "passthrough"]

SERVICE_NAME = SERVICE_NAMES["v1alpha18"]
_STATUS = mg_pb2.SetElectricalComponentPowerRequestStatus
_PB = {"v1alpha18": mg_pb2, "v1alpha19": mg19_pb2}
"""The generated messages of each version this front end serves."""


def passthrough(message: Any) -> bytes:
    """Response serialiser: pre-serialised bytes (telemetry frames) go out as they are."""
    if isinstance(message, bytes):
        return message
    data: bytes = message.SerializeToString()
    return data


def unary(fn: Callable[..., Any], req: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary-unary method handler decoding ``req``."""
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=req.FromString, response_serializer=passthrough
    )


def stream(fn: Callable[..., Any], req: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary-stream method handler decoding ``req``."""
    return grpc.unary_stream_rpc_method_handler(
        fn, request_deserializer=req.FromString, response_serializer=passthrough
    )


class MicrogridServicer:
    """The RPC handlers of the v1alpha18/v1alpha19 ``Microgrid`` service for one site.

    Requests are annotated with the v1alpha18 classes; under v1alpha19 they are
    that version's (the same fields).
    """

    def __init__(self, core: ServiceCore) -> None:
        """Serve the site of ``core``."""
        self.core = core
        self.physics = core.physics
        self._connections = [
            ec_pb2.ElectricalComponentConnection(
                source_electrical_component_id=s, destination_electrical_component_id=d
            )
            for s, d in core.site.connections
        ]

    def handlers(self, version: str = "v1alpha18") -> grpc.GenericRpcHandler[Any, Any]:
        """The handlers under ``version``'s service name (``v1alpha18`` or ``v1alpha19``)."""
        pb = _PB[version]
        return grpc.method_handlers_generic_handler(
            SERVICE_NAMES[version],
            {
                "GetMicrogrid": unary(self.GetMicrogrid, empty_pb2.Empty),
                "ListElectricalComponents": unary(
                    self.ListElectricalComponents, pb.ListElectricalComponentsRequest
                ),
                "ListSensors": unary(self.ListSensors, pb.ListSensorRequest),
                "ListElectricalComponentConnections": unary(
                    self.ListElectricalComponentConnections,
                    pb.ListElectricalComponentConnectionsRequest,
                ),
                "ReceiveElectricalComponentTelemetryStream": stream(
                    self.ReceiveElectricalComponentTelemetryStream,
                    pb.ReceiveElectricalComponentTelemetryStreamRequest,
                ),
                "ReceiveSensorTelemetryStream": stream(
                    self.ReceiveSensorTelemetryStream, pb.ReceiveSensorTelemetryStreamRequest
                ),
                "AugmentElectricalComponentBounds": unary(
                    self.AugmentElectricalComponentBounds,
                    pb.AugmentElectricalComponentBoundsRequest,
                ),
                "ClearElectricalComponentBounds": unary(
                    self.ClearElectricalComponentBounds,
                    pb.ClearElectricalComponentBoundsRequest,
                ),
                "SetElectricalComponentPower": stream(
                    self.SetElectricalComponentPower, pb.SetElectricalComponentPowerRequest
                ),
                "StartElectricalComponent": unary(
                    self.StartElectricalComponent, pb.StartElectricalComponentRequest
                ),
                "PutElectricalComponentInStandby": unary(
                    self.PutElectricalComponentInStandby,
                    pb.PutElectricalComponentInStandbyRequest,
                ),
                "StopElectricalComponent": unary(
                    self.StopElectricalComponent, pb.StopElectricalComponentRequest
                ),
                "AckElectricalComponentError": unary(
                    self.AckElectricalComponentError, pb.AckElectricalComponentErrorRequest
                ),
            },
        )

    async def GetMicrogrid(  # noqa: N802 - gRPC method name
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mg_pb2.GetMicrogridResponse:
        """Microgrid id, name, enterprise, location and status."""
        await self.core.check_auth(context)
        return mg_pb2.GetMicrogridResponse(microgrid=self.core.microgrid())

    async def ListElectricalComponents(  # noqa: N802
        self,
        request: mg_pb2.ListElectricalComponentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mg_pb2.ListElectricalComponentsResponse:
        """Components filtered by ids AND categories (OR within each list)."""
        await self.core.check_auth(context)
        ids = set(request.electrical_component_ids)
        cats = set(request.electrical_component_categories)
        return mg_pb2.ListElectricalComponentsResponse(
            electrical_components=[
                c
                for c in self.core.components
                if (not ids or c.id in ids) and (not cats or c.category in cats)
            ]
        )

    async def ListSensors(  # noqa: N802
        self, request: mg_pb2.ListSensorRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mg_pb2.ListSensorsResponse:
        """Sensors filtered by id."""
        core = self.core
        await core.check_auth(context)
        ids = set(request.sensor_ids)
        return mg_pb2.ListSensorsResponse(
            sensors=[
                sensors_pb2.Sensor(
                    id=s.id,
                    microgrid_id=core.site.microgrid_id,
                    name=s.name,
                    manufacturer="gridloop",
                    model_name="sim-weather",
                    model="sim-weather",
                )
                for s in core.site.sensors
                if not ids or s.id in ids
            ]
        )

    async def ListElectricalComponentConnections(  # noqa: N802
        self,
        request: mg_pb2.ListElectricalComponentConnectionsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mg_pb2.ListElectricalComponentConnectionsResponse:
        """Connections filtered by source AND destination ids."""
        await self.core.check_auth(context)
        src = set(request.source_electrical_component_ids)
        dst = set(request.destination_electrical_component_ids)
        return mg_pb2.ListElectricalComponentConnectionsResponse(
            electrical_component_connections=[
                c
                for c in self._connections
                if (not src or c.source_electrical_component_id in src)
                and (not dst or c.destination_electrical_component_id in dst)
            ]
        )

    async def ReceiveElectricalComponentTelemetryStream(  # noqa: N802
        self,
        request: mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[bytes]:
        """Telemetry of one component at ``telemetry_hz``, honouring the metric filter.

        No filter = all metrics; a filter with an empty metric list is
        INVALID_ARGUMENT (the proto requires at least one metric); metrics the
        component does not have are left out.
        """
        frames = self.core.component_stream(
            request.electrical_component_id, request, context, "v1alpha8"
        )
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame

    async def ReceiveSensorTelemetryStream(  # noqa: N802
        self,
        request: mg_pb2.ReceiveSensorTelemetryStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[bytes]:
        """Irradiance (W/m²) and ambient temperature (°C) of a weather sensor."""
        frames = self.core.sensor_stream(request.sensor_id, request, context, "v1alpha8")
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame

    async def AugmentElectricalComponentBounds(  # noqa: N802
        self,
        request: mg_pb2.AugmentElectricalComponentBoundsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mg_pb2.AugmentElectricalComponentBoundsResponse:
        """Add bounds (inverter active power) for a token; effective = intersection.

        Lifetime default 5 s, allowed 5 s..15 min (simulated seconds). At most
        `MAX_BOUNDS_INTERVALS` intervals and a token of at most
        `MAX_BOUNDS_TOKEN_BYTES` (INVALID_ARGUMENT beyond); at most
        `MAX_BOUNDS_PER_COMPONENT` tokens in force per component (a new token
        beyond that is RESOURCE_EXHAUSTED; re-sending a token in force replaces it).
        """
        core = self.core
        await core.check_auth(context)
        cid = request.electrical_component_id
        kind = await core.component_or_abort(cid, context)
        valid_until = await core.augment_bounds(
            cid,
            kind,
            context,
            wire="v1alpha8",
            target_metric=request.target_metric,
            bounds=request.bounds,
            token=request.bounds_token if request.HasField("bounds_token") else None,
            lifetime_s=lifetime_of(request, 5.0),
        )
        return mg_pb2.AugmentElectricalComponentBoundsResponse(valid_until_time=valid_until)

    async def ClearElectricalComponentBounds(  # noqa: N802
        self,
        request: mg_pb2.ClearElectricalComponentBoundsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """Remove the bounds added with a token (no-op if none)."""
        await self.core.check_auth(context)
        cid = request.electrical_component_id
        await self.core.component_or_abort(cid, context)
        self.physics.clear_bounds(cid, request.bounds_token)
        return empty_pb2.Empty()

    async def SetElectricalComponentPower(  # noqa: N802
        self,
        request: mg_pb2.SetElectricalComponentPowerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[mg_pb2.SetElectricalComponentPowerResponse]:
        """Admit (`ServiceCore.admit_setpoint`), then stream ACCEPTED and, once the
        inverter got there, SUCCESS.

        Lifetime default 60 s, allowed 10 s..15 min (simulated seconds).
        The final status is OVERRIDDEN if a newer setpoint arrives first, and
        FAILED if the component stops or the target is not reached in time.
        """
        kind: PowerKind | None = _POWER_KIND.get(request.power_type)
        cid, power = request.electrical_component_id, request.power
        lifetime = lifetime_of(request, 60.0)
        await self.core.admit_setpoint(cid, power, kind, lifetime, context)
        answers = (
            self._active_answers(cid, power, lifetime)
            if kind == "active"
            else self._reactive_answers(cid, power, lifetime)
        )
        async with contextlib.aclosing(answers):
            async for answer in answers:
                yield answer

    async def _reactive_answers(
        self, cid: int, power_var: float, lifetime: float
    ) -> AsyncGenerator[mg_pb2.SetElectricalComponentPowerResponse, None]:
        """Apply a reactive setpoint: ACCEPTED, then SUCCESS two generations later."""
        phys, core = self.physics, self.core
        phys.set_reactive_power(cid, power_var, lifetime)
        started = phys.now_s
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
            valid_until_time=core.valid_until(lifetime),
        )
        await core.telemetry.wait_for_generation(2)
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
            valid_until_time=core.valid_until(max(0.0, started + lifetime - phys.now_s)),
        )

    async def _active_answers(
        self, cid: int, power_w: float, lifetime: float
    ) -> AsyncGenerator[mg_pb2.SetElectricalComponentPowerResponse, None]:
        """Apply an active setpoint: ACCEPTED, then SUCCESS, OVERRIDDEN or FAILED.

        The final status comes once the setpoint is no longer pending, or after
        ``min(lifetime, 30)`` simulated seconds.
        """
        phys, core = self.physics, self.core
        seq = phys.set_active_power(cid, power_w, lifetime)
        started_sim = phys.now_s
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
            valid_until_time=core.valid_until(lifetime),
        )
        deadline_sim = started_sim + min(lifetime, 30.0)
        while True:
            status = phys.setpoint_status(cid, seq)
            if status is not SetpointStatus.PENDING or phys.now_s >= deadline_sim:
                break
            await core.telemetry.next_publication()
        remaining = max(0.0, started_sim + lifetime - phys.now_s)
        if status is SetpointStatus.APPLIED:
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
                valid_until_time=core.valid_until(remaining),
            )
        elif status is SetpointStatus.OVERRIDDEN:
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_OVERRIDDEN
            )
        else:
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_FAILED
            )

    async def StartElectricalComponent(  # noqa: N802
        self,
        request: mg_pb2.StartElectricalComponentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """OFF/STANDBY -> running at 0 W; ERROR needs AckError first (FAILED_PRECONDITION)."""
        return await self.core.command(
            request.electrical_component_id, context, self.physics.start
        )

    async def PutElectricalComponentInStandby(  # noqa: N802
        self,
        request: mg_pb2.PutElectricalComponentInStandbyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """Running inverter -> STANDBY at 0 W (a setpoint or Start wakes it)."""
        return await self.core.command(
            request.electrical_component_id, context, self.physics.standby
        )

    async def StopElectricalComponent(  # noqa: N802
        self,
        request: mg_pb2.StopElectricalComponentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """Inverter -> OFF; battery -> OFF (relays open) only at 0 W."""
        return await self.core.command(request.electrical_component_id, context, self.physics.stop)

    async def AckElectricalComponentError(  # noqa: N802
        self,
        request: mg_pb2.AckElectricalComponentErrorRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """ERROR -> OFF."""
        return await self.core.command(
            request.electrical_component_id, context, self.physics.ack_error
        )


_POWER_KIND: dict[int, PowerKind] = {
    mg_pb2.POWER_TYPE_ACTIVE: "active",
    mg_pb2.POWER_TYPE_REACTIVE: "reactive",
}
"""The setpoint kind of each ``power_type`` (others are INVALID_ARGUMENT)."""
