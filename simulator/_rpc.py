"""The Microgrid API v1alpha18 service of the simulator: one handler per RPC.

Offers `MicrogridServicer` (the RPC handlers over a `SitePhysics`, a
`TelemetryPublisher`, a `FaultDriver` and the `SetpointStats`; `handlers` gives
them to a ``grpc.aio`` server) and `build_components` (the component catalogue
of a site). Every handler checks the API key first; bad requests fail with the
status code of the `RequestError` the physics raised, naming the component.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from frequenz.api.common.v1alpha8.grid import delivery_area_pb2
from frequenz.api.common.v1alpha8.metrics import bounds_pb2
from frequenz.api.common.v1alpha8.microgrid import microgrid_pb2 as common_mg_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.common.v1alpha8.microgrid.sensors import sensors_pb2
from frequenz.api.common.v1alpha8.types import location_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from ._fault_driver import FaultDriver
from ._frames import M
from ._intervals import valid_interval
from ._limits import MAX_BOUNDS_INTERVALS, MAX_BOUNDS_PER_COMPONENT, MAX_BOUNDS_TOKEN_BYTES
from ._publisher import TelemetryPublisher
from ._stats import SetpointStats
from .config import BatteryConfig, GridConfig, InverterConfig, MeterConfig, SiteConfig
from .errors import ComponentNotFoundError, InvalidRequestError, RequestError
from .physics import Interval, SetpointStatus, SitePhysics

__all__ = ["SERVICE_NAME", "MicrogridServicer", "build_components"]

SERVICE_NAME = "frequenz.api.microgrid.v1alpha18.Microgrid"
_STATUS = mg_pb2.SetElectricalComponentPowerRequestStatus


def _passthrough(message: Any) -> bytes:
    """Response serialiser: pre-serialised bytes go out as they are."""
    if isinstance(message, bytes):
        return message
    data: bytes = message.SerializeToString()
    return data


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def build_components(site: SiteConfig) -> list[ec_pb2.ElectricalComponent]:
    """The ElectricalComponent messages of ``site`` (what ListElectricalComponents serves)."""
    out = []
    mg_id = site.microgrid_id
    for c in site.components:
        comp = ec_pb2.ElectricalComponent(
            id=c.id,
            microgrid_id=mg_id,
            name=c.name,
            manufacturer="gridloop",
            operational_mode=ec_pb2.ELECTRICAL_COMPONENT_OPERATIONAL_MODE_CONTROL_AND_TELEMETRY,
        )
        if isinstance(c, GridConfig):
            comp.category = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_GRID_CONNECTION_POINT
            comp.category_specific_info.grid_connection_point.rated_fuse_current = (
                c.rated_fuse_current_a
            )
            comp.model_name = "grid connection point"
            comp.operational_mode = ec_pb2.ELECTRICAL_COMPONENT_OPERATIONAL_MODE_TELEMETRY_ONLY
        elif isinstance(c, MeterConfig):
            comp.category = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_METER
            comp.model_name = "sim-meter"
            comp.operational_mode = ec_pb2.ELECTRICAL_COMPONENT_OPERATIONAL_MODE_TELEMETRY_ONLY
        elif isinstance(c, InverterConfig):
            comp.category = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_INVERTER
            comp.category_specific_info.inverter.type = (
                ec_pb2.INVERTER_TYPE_PV if c.inverter_type == "pv" else ec_pb2.INVERTER_TYPE_BATTERY
            )
            comp.model_name = f"sim-{c.inverter_type}-inverter"
            comp.metric_config_bounds.add(
                metric=M.METRIC_AC_POWER_ACTIVE,
                config_bounds=bounds_pb2.Bounds(lower=c.rated_lower_w, upper=c.rated_upper_w),
            )
        elif isinstance(c, BatteryConfig):
            comp.category = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_BATTERY
            comp.category_specific_info.battery.type = ec_pb2.BATTERY_TYPE_LI_ION
            comp.model_name = "sim-li-ion"
            comp.metric_config_bounds.add(
                metric=M.METRIC_DC_POWER,
                config_bounds=bounds_pb2.Bounds(lower=-c.max_discharge_w, upper=c.max_charge_w),
            )
        comp.model = comp.model_name
        out.append(comp)
    return out


class MicrogridServicer:
    """The RPC handlers of the ``Microgrid`` service for one simulated site."""

    def __init__(
        self,
        site: SiteConfig,
        physics: SitePhysics,
        telemetry: TelemetryPublisher,
        faults: FaultDriver,
        stats: SetpointStats,
        *,
        api_key: str | None,
        time_scale: float,
        wall_s: Callable[[], float],
    ) -> None:
        """Serve ``site`` as simulated by ``physics``.

        Args:
            site: the simulated site.
            physics: the model the handlers read and command.
            telemetry: serves the telemetry streams.
            faults: per-call faults and the episode accounting.
            stats: counts the setpoint requests.
            api_key: if set, every call must carry metadata ``key`` with it.
            time_scale: simulated seconds per wall second (for ``valid_until_time``).
            wall_s: wall seconds since the server started listening.
        """
        self.site = site
        self.physics = physics
        self.telemetry = telemetry
        self.faults = faults
        self.stats = stats
        self.api_key = api_key
        self.time_scale = time_scale
        self._wall_s = wall_s
        self.components = build_components(site)
        """The ElectricalComponent messages ListElectricalComponents serves."""
        self._connections = [
            ec_pb2.ElectricalComponentConnection(
                source_electrical_component_id=s, destination_electrical_component_id=d
            )
            for s, d in site.connections
        ]
        self._sensor_ids = {s.id for s in site.sensors}

    async def _check_auth(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.api_key is None:
            return
        expected = self.api_key.encode()
        for key, value in context.invocation_metadata() or ():
            given = value if isinstance(value, bytes) else str(value).encode()
            # Constant-time comparison: response timing does not reveal the key.
            if key == "key" and hmac.compare_digest(given, expected):
                return
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")

    async def _component_or_abort(
        self, cid: int, context: grpc.aio.ServicerContext[Any, Any]
    ) -> str:
        try:
            return self.physics.kind_of(cid)
        except ComponentNotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise  # pragma: no cover - abort raises

    def _valid_until(self, lifetime_s: float) -> timestamp_pb2.Timestamp:
        return _timestamp(time.time_ns() + int(lifetime_s / self.time_scale * 1e9))

    def handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(fn: Callable[..., Any], req: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=_passthrough
            )

        def stream(fn: Callable[..., Any], req: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=_passthrough
            )

        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "GetMicrogrid": unary(self.GetMicrogrid, empty_pb2.Empty),
                "ListElectricalComponents": unary(
                    self.ListElectricalComponents, mg_pb2.ListElectricalComponentsRequest
                ),
                "ListSensors": unary(self.ListSensors, mg_pb2.ListSensorRequest),
                "ListElectricalComponentConnections": unary(
                    self.ListElectricalComponentConnections,
                    mg_pb2.ListElectricalComponentConnectionsRequest,
                ),
                "ReceiveElectricalComponentTelemetryStream": stream(
                    self.ReceiveElectricalComponentTelemetryStream,
                    mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest,
                ),
                "ReceiveSensorTelemetryStream": stream(
                    self.ReceiveSensorTelemetryStream, mg_pb2.ReceiveSensorTelemetryStreamRequest
                ),
                "AugmentElectricalComponentBounds": unary(
                    self.AugmentElectricalComponentBounds,
                    mg_pb2.AugmentElectricalComponentBoundsRequest,
                ),
                "ClearElectricalComponentBounds": unary(
                    self.ClearElectricalComponentBounds,
                    mg_pb2.ClearElectricalComponentBoundsRequest,
                ),
                "SetElectricalComponentPower": stream(
                    self.SetElectricalComponentPower, mg_pb2.SetElectricalComponentPowerRequest
                ),
                "StartElectricalComponent": unary(
                    self.StartElectricalComponent, mg_pb2.StartElectricalComponentRequest
                ),
                "PutElectricalComponentInStandby": unary(
                    self.PutElectricalComponentInStandby,
                    mg_pb2.PutElectricalComponentInStandbyRequest,
                ),
                "StopElectricalComponent": unary(
                    self.StopElectricalComponent, mg_pb2.StopElectricalComponentRequest
                ),
                "AckElectricalComponentError": unary(
                    self.AckElectricalComponentError, mg_pb2.AckElectricalComponentErrorRequest
                ),
            },
        )

    async def GetMicrogrid(  # noqa: N802 - gRPC method name
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mg_pb2.GetMicrogridResponse:
        """Microgrid id, name, enterprise, location and status."""
        await self._check_auth(context)
        site = self.site
        mg = common_mg_pb2.Microgrid(
            id=site.microgrid_id,
            enterprise_id=site.enterprise_id,
            name=site.name,
            status=common_mg_pb2.MICROGRID_STATUS_ACTIVE,
        )
        if site.latitude is not None and site.longitude is not None:
            mg.location.CopyFrom(
                location_pb2.Location(
                    latitude=site.latitude,
                    longitude=site.longitude,
                    country_code=site.country_code,
                )
            )
        if site.delivery_area_eic:
            mg.delivery_area.CopyFrom(
                delivery_area_pb2.DeliveryArea(
                    code=site.delivery_area_eic,
                    code_type=delivery_area_pb2.ENERGY_MARKET_CODE_TYPE_EUROPE_EIC,
                )
            )
        return mg_pb2.GetMicrogridResponse(microgrid=mg)

    async def ListElectricalComponents(  # noqa: N802
        self,
        request: mg_pb2.ListElectricalComponentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mg_pb2.ListElectricalComponentsResponse:
        """Components filtered by ids AND categories (OR within each list)."""
        await self._check_auth(context)
        ids = set(request.electrical_component_ids)
        cats = set(request.electrical_component_categories)
        return mg_pb2.ListElectricalComponentsResponse(
            electrical_components=[
                c
                for c in self.components
                if (not ids or c.id in ids) and (not cats or c.category in cats)
            ]
        )

    async def ListSensors(  # noqa: N802
        self, request: mg_pb2.ListSensorRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mg_pb2.ListSensorsResponse:
        """Sensors filtered by id."""
        await self._check_auth(context)
        ids = set(request.sensor_ids)
        return mg_pb2.ListSensorsResponse(
            sensors=[
                sensors_pb2.Sensor(
                    id=s.id,
                    microgrid_id=self.site.microgrid_id,
                    name=s.name,
                    manufacturer="gridloop",
                    model_name="sim-weather",
                    model="sim-weather",
                )
                for s in self.site.sensors
                if not ids or s.id in ids
            ]
        )

    async def ListElectricalComponentConnections(  # noqa: N802
        self,
        request: mg_pb2.ListElectricalComponentConnectionsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> mg_pb2.ListElectricalComponentConnectionsResponse:
        """Connections filtered by source AND destination ids."""
        await self._check_auth(context)
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
        await self._check_auth(context)
        cid = request.electrical_component_id
        await self._component_or_abort(cid, context)
        wanted = await self._wanted_metrics(request, context)
        async for frame in self.telemetry.stream(self.telemetry.stream_key(cid, wanted), context):
            yield frame

    async def ReceiveSensorTelemetryStream(  # noqa: N802
        self,
        request: mg_pb2.ReceiveSensorTelemetryStreamRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[bytes]:
        """Irradiance (W/m²) and ambient temperature (°C) of a weather sensor."""
        await self._check_auth(context)
        sid = request.sensor_id
        if sid not in self._sensor_ids:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"sensor {sid}: no such sensor")
        wanted = await self._wanted_metrics(request, context)
        async for frame in self.telemetry.stream(self.telemetry.stream_key(-sid, wanted), context):
            yield frame

    @staticmethod
    async def _wanted_metrics(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> list[int] | None:
        """The metrics a telemetry stream request's filter names (None = no filter).

        A filter with an empty metric list is INVALID_ARGUMENT (the proto
        requires at least one metric).
        """
        if not request.HasField("filter"):
            return None
        wanted = list(request.filter.metrics)
        if not wanted:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "filter.metrics: at least one metric must be given",
            )
        return wanted

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
        await self._check_auth(context)
        cid = request.electrical_component_id
        kind = await self._component_or_abort(cid, context)
        lifetime = request.request_lifetime if request.HasField("request_lifetime") else 5
        problem, intervals = _bounds_problem(request, kind, lifetime)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"component {cid}: {problem}")
        token = request.bounds_token if request.HasField("bounds_token") else uuid.uuid4().hex
        in_force = self.physics.augmentation_tokens(cid)
        if token not in in_force and len(in_force) >= MAX_BOUNDS_PER_COMPONENT:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"component {cid}: {len(in_force)} bounds augmentations in force, the limit is"
                f" {MAX_BOUNDS_PER_COMPONENT} per component; clear one with its bounds_token"
                " or let it lapse",
            )
        try:
            self.physics.augment_bounds(cid, token, intervals, float(lifetime))
        except RequestError as exc:
            await context.abort(grpc.StatusCode[exc.code], str(exc))
        return mg_pb2.AugmentElectricalComponentBoundsResponse(
            valid_until_time=self._valid_until(float(lifetime))
        )

    async def ClearElectricalComponentBounds(  # noqa: N802
        self,
        request: mg_pb2.ClearElectricalComponentBoundsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """Remove the bounds added with a token (no-op if none)."""
        await self._check_auth(context)
        cid = request.electrical_component_id
        await self._component_or_abort(cid, context)
        self.physics.clear_bounds(cid, request.bounds_token)
        return empty_pb2.Empty()

    async def SetElectricalComponentPower(  # noqa: N802
        self,
        request: mg_pb2.SetElectricalComponentPowerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[mg_pb2.SetElectricalComponentPowerResponse]:
        """Validate, then stream ACCEPTED and, once the inverter got there, SUCCESS.

        Lifetime default 60 s, allowed 10 s..15 min (simulated seconds).
        The final status is OVERRIDDEN if a newer setpoint arrives first, and
        FAILED if the component stops or the target is not reached in time.

        Faults (see `FaultConfig`): a delayed call is held ``setpoint_delay_s``
        wall seconds before validation; an injected rejection fails a *valid*
        call with UNAVAILABLE and does not apply it.
        """
        active = request.power_type == mg_pb2.POWER_TYPE_ACTIVE
        probe = self.telemetry.latency_probe
        if probe is not None and active:
            probe.on_setpoint(request.electrical_component_id, request.power)
        await self._check_auth(context)
        cid = request.electrical_component_id
        power = request.power
        self.stats.on_received(cid)
        received_wall = self._wall_s()
        faults = self.faults
        faulty = faults.active  # account for episodes even when no longer injecting
        if faulty and active:
            faults.ledger.on_setpoint_received(cid, power, received_wall)
        if faulty and faults.injecting:
            await self._injected_delay()
        lifetime = request.request_lifetime if request.HasField("request_lifetime") else 60
        await self._validate_setpoint(request, lifetime, received_wall, context)
        if faulty and faults.injecting and faults.calls.reject():
            faults.ledger.count_call("setpoint_reject")
            self.stats.on_injected_reject(cid)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"component {cid}: did not answer (injected fault)"
            )
        self.stats.on_accepted(cid, power, active)
        if faulty and active:
            faults.ledger.on_setpoint_accepted(cid, power, received_wall, self._wall_s())
        answers = (
            self._active_answers(cid, power, float(lifetime))
            if active
            else self._reactive_answers(cid, power, float(lifetime))
        )
        async with contextlib.aclosing(answers):
            async for answer in answers:
                yield answer

    async def _injected_delay(self) -> None:
        """Hold the call ``setpoint_delay_s`` if the ``setpoint_delay`` fault says so."""
        delay = self.faults.calls.delay_s()
        if delay > 0:
            self.faults.ledger.count_call("setpoint_delay")
            await asyncio.sleep(delay)

    async def _validate_setpoint(
        self,
        request: mg_pb2.SetElectricalComponentPowerRequest,
        lifetime: float,
        received_wall: float,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Abort the call (counting the rejection) unless the setpoint may be applied.

        An out-of-range active power inside bounds advertised within
        ``bounds_grace_s`` before ``received_wall`` counts as a bounds race.
        """
        cid, power = request.electrical_component_id, request.power
        active = request.power_type == mg_pb2.POWER_TYPE_ACTIVE
        phys = self.physics
        try:
            phys.kind_of(cid)
            if request.power_type not in (mg_pb2.POWER_TYPE_ACTIVE, mg_pb2.POWER_TYPE_REACTIVE):
                raise InvalidRequestError(cid, "power_type must be ACTIVE or REACTIVE")
            if not 10 <= lifetime <= 900:
                raise InvalidRequestError(
                    cid, f"request_lifetime must be 10..900 s, got {lifetime}"
                )
            if active:
                phys.check_active_power(cid, power)
            else:
                phys.check_reactive_power(cid, power)
        except RequestError as exc:
            race = (
                exc.code == "OUT_OF_RANGE"
                and active
                and self.faults.advertised.advertised_since(
                    cid, power, received_wall - self.faults.config.bounds_grace_s
                )
            )
            self.stats.on_rejected(cid, exc.code, race)
            await context.abort(grpc.StatusCode[exc.code], str(exc))

    async def _reactive_answers(
        self, cid: int, power_var: float, lifetime: float
    ) -> AsyncGenerator[mg_pb2.SetElectricalComponentPowerResponse, None]:
        """Apply a reactive setpoint: ACCEPTED, then SUCCESS two generations later."""
        phys = self.physics
        phys.set_reactive_power(cid, power_var, lifetime)
        started = phys.now_s
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
            valid_until_time=self._valid_until(lifetime),
        )
        await self.telemetry.wait_for_generation(2)
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
            valid_until_time=self._valid_until(max(0.0, started + lifetime - phys.now_s)),
        )

    async def _active_answers(
        self, cid: int, power_w: float, lifetime: float
    ) -> AsyncGenerator[mg_pb2.SetElectricalComponentPowerResponse, None]:
        """Apply an active setpoint: ACCEPTED, then SUCCESS, OVERRIDDEN or FAILED.

        The final status comes once the setpoint is no longer pending, or after
        ``min(lifetime, 30)`` simulated seconds.
        """
        phys = self.physics
        seq = phys.set_active_power(cid, power_w, lifetime)
        started_sim = phys.now_s
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
            valid_until_time=self._valid_until(lifetime),
        )
        deadline_sim = started_sim + min(lifetime, 30.0)
        while True:
            status = phys.setpoint_status(cid, seq)
            if status is not SetpointStatus.PENDING or phys.now_s >= deadline_sim:
                break
            await self.telemetry.next_publication()
        remaining = max(0.0, started_sim + lifetime - phys.now_s)
        if status is SetpointStatus.APPLIED:
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
                valid_until_time=self._valid_until(remaining),
            )
        elif status is SetpointStatus.OVERRIDDEN:
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_OVERRIDDEN
            )
        else:
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_FAILED
            )

    async def _command(
        self,
        cid: int,
        context: grpc.aio.ServicerContext[Any, Any],
        action: Callable[[int], None],
    ) -> empty_pb2.Empty:
        await self._check_auth(context)
        await self._component_or_abort(cid, context)
        try:
            action(cid)
        except RequestError as exc:
            await context.abort(grpc.StatusCode[exc.code], str(exc))
        return empty_pb2.Empty()

    async def StartElectricalComponent(  # noqa: N802
        self,
        request: mg_pb2.StartElectricalComponentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """OFF/STANDBY -> running at 0 W; ERROR needs AckError first (FAILED_PRECONDITION)."""
        return await self._command(request.electrical_component_id, context, self.physics.start)

    async def PutElectricalComponentInStandby(  # noqa: N802
        self,
        request: mg_pb2.PutElectricalComponentInStandbyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """Running inverter -> STANDBY at 0 W (a setpoint or Start wakes it)."""
        return await self._command(request.electrical_component_id, context, self.physics.standby)

    async def StopElectricalComponent(  # noqa: N802
        self,
        request: mg_pb2.StopElectricalComponentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """Inverter -> OFF; battery -> OFF (relays open) only at 0 W."""
        return await self._command(request.electrical_component_id, context, self.physics.stop)

    async def AckElectricalComponentError(  # noqa: N802
        self,
        request: mg_pb2.AckElectricalComponentErrorRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> empty_pb2.Empty:
        """ERROR -> OFF."""
        return await self._command(request.electrical_component_id, context, self.physics.ack_error)


def _bounds_problem(
    request: mg_pb2.AugmentElectricalComponentBoundsRequest, kind: str, lifetime: float
) -> tuple[str | None, list[Interval]]:
    """What is wrong with a bounds augmentation (None = nothing) and its intervals.

    Unset interval ends are infinite; the first problem found is named.
    """
    problem = None
    if kind != "inverter":
        problem = f"bounds can only be augmented on inverters, not on a {kind}"
    elif request.target_metric != M.METRIC_AC_POWER_ACTIVE:
        problem = (
            f"target_metric {M.Name(request.target_metric)} is not supported;"
            " only METRIC_AC_POWER_ACTIVE"
        )
    elif not 5 <= lifetime <= 900:
        problem = f"request_lifetime must be 5..900 s, got {lifetime}"
    elif not request.bounds:
        problem = "bounds: at least one interval is required"
    elif len(request.bounds) > MAX_BOUNDS_INTERVALS:
        problem = (
            f"bounds: at most {MAX_BOUNDS_INTERVALS} intervals per request,"
            f" got {len(request.bounds)}"
        )
    elif len(request.bounds_token.encode()) > MAX_BOUNDS_TOKEN_BYTES:
        problem = (
            f"bounds_token: at most {MAX_BOUNDS_TOKEN_BYTES} bytes,"
            f" got {len(request.bounds_token.encode())}"
        )
    intervals: list[Interval] = []
    for i, b in enumerate(request.bounds):
        lo = b.lower if b.HasField("lower") else -math.inf
        hi = b.upper if b.HasField("upper") else math.inf
        if not valid_interval(lo, hi):
            problem = problem or f"bounds[{i}]: invalid interval [{lo}, {hi}]"
        intervals.append((lo, hi))
    return problem, intervals
