"""The contract between the runtime and one Microgrid API version.

A site may run any of the versions in `API_VERSIONS` (the package
frequenz-api-microgrid ships them side by side). One adapter per version
(`actors._api_v1alpha`, `actors._api_v1`) turns that version's messages into
what the runtime uses and back; nothing above the adapters knows versions:

- components and connections come out as the runtime's model, the
  `frequenz.api.common.v1alpha8` ``ElectricalComponent`` /
  ``ElectricalComponentConnection`` messages (the graph and the site identity
  read only ids, categories, inverter types, names and connection ends);
- telemetry is decoded by the state table straight from the version's own
  messages, told by a `TelemetryWire` which metric numbers and fields to read
  (no copy per message);
- a setpoint call (active or reactive power) is a `SetpointCall` whose answers
  are the statuses below (a v1alpha18/19 call streams ACCEPTED, then SUCCESS/OVERRIDDEN/FAILED; a v1
  call answers once, which is final).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

__all__ = [
    "API_VERSIONS",
    "STATUS_ACCEPTED",
    "STATUS_FAILED",
    "STATUS_OVERRIDDEN",
    "STATUS_REJECTED",
    "STATUS_SUCCESS",
    "ApiAdapter",
    "MicrogridInfo",
    "SetpointCall",
    "TelemetryWire",
    "Transport",
]

#: The Microgrid API versions gridloop speaks, newest first (the order they are
#: tried in when the version is not given).
API_VERSIONS: tuple[str, ...] = ("v1alpha19", "v1alpha18", "v1")

#: Setpoint answers, as the runtime reads them. ACCEPTED: applied, more answers
#: follow; SUCCESS: applied, nothing follows; the others: not (or no longer) applied.
STATUS_ACCEPTED: int = 1
STATUS_REJECTED: int = 2
STATUS_FAILED: int = 3
STATUS_SUCCESS: int = 4
STATUS_OVERRIDDEN: int = 5


@dataclass(frozen=True)
class TelemetryWire:
    """Where the state table finds what it reads in one version's telemetry messages."""

    ac_power: int
    """Metric number of AC active power (inverters, meters)."""
    dc_power: int
    """Metric number of DC power (batteries)."""
    soc: int
    """Metric number of the battery state of charge (%)."""
    capacity: int
    """Metric number of the battery capacity (Wh)."""
    frequency: int
    """Metric number of the AC frequency (Hz)."""
    ac_reactive: int
    """Metric number of AC reactive power (VAr; its bounds are the allowed setpoints)."""
    ac_apparent: int
    """Metric number of AC apparent power (VA; the upper end of its bounds is the rating)."""
    ac_voltage: int
    """Metric number of the AC voltage (V; used when no phase voltage comes)."""
    ac_voltage_phases: tuple[int, int, int]
    """Metric numbers of the phase-to-neutral voltages (V; their mean is the voltage)."""
    sample_time: str
    """Field of a metric sample holding its timestamp."""
    snapshots: str
    """Field of a component's telemetry holding its state snapshots."""
    payload: str
    """Field of a telemetry stream response holding the component's telemetry."""

    @property
    def unwrap(self) -> Callable[[Any], Any]:
        """A function from a stream response to the component's telemetry."""
        return operator.attrgetter(self.payload)


@dataclass(frozen=True)
class MicrogridInfo:
    """What the server says of the microgrid itself (GetMicrogrid / GetMicrogridMetadata)."""

    id: int
    """The microgrid id."""
    latitude: float | None = None
    """Latitude of the site (degrees), None when the server gives no location."""
    longitude: float | None = None
    """Longitude of the site (degrees), None when the server gives no location."""

    @classmethod
    def from_proto(cls, microgrid: Any) -> MicrogridInfo:
        """From a ``Microgrid`` message of any version (the fields are named alike)."""
        lat = lon = None
        if microgrid.HasField("location"):
            loc = microgrid.location
            if math.isfinite(loc.latitude) and math.isfinite(loc.longitude) and (
                -90.0 <= loc.latitude <= 90.0 and -180.0 <= loc.longitude <= 180.0
            ):
                lat, lon = float(loc.latitude), float(loc.longitude)
        return cls(id=int(microgrid.id), latitude=lat, longitude=lon)

    @property
    def timezone(self) -> str | None:
        """The IANA time zone at the site's location (None without a location)."""
        if self.latitude is None or self.longitude is None:
            return None
        from tzfpy import get_tz

        zone: str = get_tz(self.longitude, self.latitude)
        return zone or None


class SetpointCall(Protocol):
    """One setpoint call on the wire, whatever the version."""

    async def read(self) -> int | None:
        """The next answer (a ``STATUS_*``), or None when no more come.

        Raises:
            grpc.aio.AioRpcError: The call failed.
        """

    def cancel(self) -> bool:
        """Cancel the call (no-op when finished); whether it was cancelled now."""

    def cancelled(self) -> bool:
        """Whether the call was cancelled."""


class Transport(Protocol):
    """What an adapter needs of the client: the channel, metadata and unary calls."""

    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]
    call_timeout_s: float

    async def unary(
        self, method: str, call: Callable[..., Any], request: object, component_id: int | None
    ) -> Any:
        """Await ``call(request)`` with the deadline and metadata; `ApiError` on failure."""


class ApiAdapter(Protocol):
    """One Microgrid API version, seen from the runtime."""

    version: str
    """The version name (one of `API_VERSIONS`)."""
    wire: TelemetryWire
    """How its telemetry messages are read."""
    list_method: str
    """The listing call that proves a server speaks this version."""
    telemetry_method: str
    """The telemetry stream's method name (named in errors)."""
    setpoint_method: str
    """The active-power setpoint's method name (named in errors)."""
    reactive_method: str
    """The reactive-power setpoint's method name (named in errors)."""

    async def microgrid(self) -> MicrogridInfo:
        """The microgrid's id and location (`ApiError` on failure, UNIMPLEMENTED included)."""

    async def components(self) -> list[ec_pb2.ElectricalComponent]:
        """Every component, as the runtime's model."""

    async def connections(self) -> list[ec_pb2.ElectricalComponentConnection]:
        """Every connection, as the runtime's model."""

    def telemetry_stream(
        self, component_id: int, metrics: Sequence[int] | None
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """Open one component's telemetry stream (metrics in this version's numbers)."""

    def set_power_call(
        self, component_id: int, power_w: float, lifetime_s: int, timeout_s: float
    ) -> SetpointCall:
        """Put an active-power setpoint on the wire at once (no await)."""

    def set_reactive_call(
        self, component_id: int, reactive_var: float, lifetime_s: int, timeout_s: float
    ) -> SetpointCall:
        """Put a reactive-power setpoint (VAr) on the wire at once (no await)."""

    async def start(self, component_id: int) -> None:
        """Start a component."""

    async def ack_error(self, component_id: int) -> None:
        """Acknowledge a component's error."""
