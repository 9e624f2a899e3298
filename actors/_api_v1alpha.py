"""The adapter for Microgrid API v1alpha18 and v1alpha19 (`actors._api`).

The two versions carry the same messages on the wire (only the package name
and one nested filter message's name differ), on the
``frequenz.api.common.v1alpha8`` types that are also the runtime's model: the
adapter passes components and connections through and streams setpoint
answers (ACCEPTED, then SUCCESS, OVERRIDDEN or FAILED).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import grpc
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as a18_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as a18_grpc
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as a19_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2_grpc as a19_grpc
from google.protobuf import empty_pb2

from . import _api
from ._api import MicrogridInfo, SetpointCall, TelemetryWire, Transport

__all__ = ["V1ALPHA8_WIRE", "V1alphaApi"]

#: Telemetry of v1alpha18/19 (``frequenz.api.common.v1alpha8`` metrics).
V1ALPHA8_WIRE = TelemetryWire(
    ac_power=metrics_pb2.METRIC_AC_POWER_ACTIVE,
    dc_power=metrics_pb2.METRIC_DC_POWER,
    soc=metrics_pb2.METRIC_BATTERY_SOC_PCT,
    capacity=metrics_pb2.METRIC_BATTERY_CAPACITY,
    frequency=metrics_pb2.METRIC_AC_FREQUENCY,
    ac_reactive=metrics_pb2.METRIC_AC_POWER_REACTIVE,
    ac_apparent=metrics_pb2.METRIC_AC_POWER_APPARENT,
    ac_voltage=metrics_pb2.METRIC_AC_VOLTAGE,
    ac_voltage_phases=(
        metrics_pb2.METRIC_AC_VOLTAGE_PHASE_1_N,
        metrics_pb2.METRIC_AC_VOLTAGE_PHASE_2_N,
        metrics_pb2.METRIC_AC_VOLTAGE_PHASE_3_N,
    ),
    sample_time="sample_time",
    snapshots="state_snapshots",
    payload="telemetry",
)

_MODULES: dict[str, tuple[ModuleType, ModuleType]] = {
    "v1alpha18": (a18_pb2, a18_grpc),
    "v1alpha19": (a19_pb2, a19_grpc),
}

_S = a18_pb2.SetElectricalComponentPowerRequestStatus
# The runtime's statuses are these versions' numbers (checked once, here).
assert (
    _api.STATUS_ACCEPTED,
    _api.STATUS_REJECTED,
    _api.STATUS_FAILED,
    _api.STATUS_SUCCESS,
    _api.STATUS_OVERRIDDEN,
) == (
    _S.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
    _S.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_REJECTED,
    _S.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_FAILED,
    _S.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
    _S.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_OVERRIDDEN,
)


_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


class _StreamedSetpoint:
    """A SetElectricalComponentPower call: each read is the next streamed status."""

    __slots__ = ("_call",)

    def __init__(self, call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
        self._call = call

    async def read(self) -> int | None:
        resp = await self._call.read()
        if resp is _EOF:
            return None
        return int(resp.status)  # type: ignore[attr-defined]

    def cancel(self) -> bool:
        return self._call.cancel()

    def cancelled(self) -> bool:
        return self._call.cancelled()


class V1alphaApi:
    """Microgrid API v1alpha18 or v1alpha19 over a client's channel."""

    wire = V1ALPHA8_WIRE
    list_method = "ListElectricalComponents"
    telemetry_method = "ReceiveElectricalComponentTelemetryStream"
    setpoint_method = "SetElectricalComponentPower"
    reactive_method = "SetElectricalComponentPower"

    def __init__(self, version: str, transport: Transport) -> None:
        """Speak ``version`` (v1alpha18 or v1alpha19) through ``transport``.

        Args:
            version: The version.
            transport: The client (channel, metadata, deadlines, errors).
        """
        self.version = version
        self._pb2, grpc_mod = _MODULES[version]
        self._t = transport
        self._stub: Any = grpc_mod.MicrogridStub(transport.channel)
        self._active = self._pb2.POWER_TYPE_ACTIVE
        self._reactive = self._pb2.POWER_TYPE_REACTIVE

    async def microgrid(self) -> MicrogridInfo:
        resp = await self._t.unary(
            "GetMicrogrid", self._stub.GetMicrogrid, empty_pb2.Empty(), None
        )
        return MicrogridInfo.from_proto(resp.microgrid)

    async def components(self) -> list[ec_pb2.ElectricalComponent]:
        resp = await self._t.unary(
            self.list_method,
            self._stub.ListElectricalComponents,
            self._pb2.ListElectricalComponentsRequest(),
            None,
        )
        return list(resp.electrical_components)

    async def connections(self) -> list[ec_pb2.ElectricalComponentConnection]:
        resp = await self._t.unary(
            "ListElectricalComponentConnections",
            self._stub.ListElectricalComponentConnections,
            self._pb2.ListElectricalComponentConnectionsRequest(),
            None,
        )
        return list(resp.electrical_component_connections)

    def telemetry_stream(
        self, component_id: int, metrics: Sequence[int] | None
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        req = self._pb2.ReceiveElectricalComponentTelemetryStreamRequest(
            electrical_component_id=component_id
        )
        if metrics:
            req.filter.metrics.extend(metrics)
        stream = self._stub.ReceiveElectricalComponentTelemetryStream
        call: grpc.aio.UnaryStreamCall[Any, Any] = stream(req, metadata=self._t.metadata)
        return call

    def set_power_call(
        self, component_id: int, power_w: float, lifetime_s: int, timeout_s: float
    ) -> SetpointCall:
        return self._set(self._active, component_id, power_w, lifetime_s, timeout_s)

    def set_reactive_call(
        self, component_id: int, reactive_var: float, lifetime_s: int, timeout_s: float
    ) -> SetpointCall:
        return self._set(self._reactive, component_id, reactive_var, lifetime_s, timeout_s)

    def _set(
        self, power_type: int, component_id: int, power: float, lifetime_s: int,
        timeout_s: float,
    ) -> SetpointCall:
        """SetElectricalComponentPower with ``power_type`` (ACTIVE: W, REACTIVE: VAr)."""
        return _StreamedSetpoint(
            self._stub.SetElectricalComponentPower(
                self._pb2.SetElectricalComponentPowerRequest(
                    electrical_component_id=component_id,
                    power_type=power_type,
                    power=power,
                    request_lifetime=lifetime_s,
                ),
                timeout=timeout_s,
                metadata=self._t.metadata,
            )
        )

    async def start(self, component_id: int) -> None:
        await self._t.unary(
            "StartElectricalComponent",
            self._stub.StartElectricalComponent,
            self._pb2.StartElectricalComponentRequest(electrical_component_id=component_id),
            component_id,
        )

    async def ack_error(self, component_id: int) -> None:
        await self._t.unary(
            "AckElectricalComponentError",
            self._stub.AckElectricalComponentError,
            self._pb2.AckElectricalComponentErrorRequest(electrical_component_id=component_id),
            component_id,
        )
