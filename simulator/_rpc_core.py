"""The version-neutral core of the simulator's RPC handlers.

Offers `ServiceCore`: what every API version's front end (`simulator._rpc` for
v1alpha18/v1alpha19, `simulator._rpc_v1` for v1) does the same way, written
once: the API key check, the component lookup, the admission of a setpoint
(latency probe, `SetpointStats`, injected delay and rejection, validation), the
telemetry streams (metric filter, stream key), bounds augmentation (problems,
the per-component cap, physics) and the Start/Standby/Stop/Ack commands. A
front end decodes its request, calls the core, and encodes its answer.

Also offers `build_components` (the site's component catalogue, in v1alpha8
messages) and `bounds_problem`. Numbers a front end hands over are in its wire's
numbering (`simulator._wire`); the core translates them.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Literal

import grpc
import grpc.aio
from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics_pb2
from frequenz.api.common.v1alpha8.grid import delivery_area_pb2
from frequenz.api.common.v1alpha8.metrics import bounds_pb2
from frequenz.api.common.v1alpha8.microgrid import microgrid_pb2 as common_mg_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.common.v1alpha8.types import location_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from ._fault_driver import FaultDriver
from ._frames import M
from ._intervals import valid_interval
from ._limits import MAX_BOUNDS_INTERVALS, MAX_BOUNDS_PER_COMPONENT, MAX_BOUNDS_TOKEN_BYTES
from ._publisher import TelemetryPublisher
from ._stats import SetpointStats
from ._wire import V1_METRIC, V1ALPHA8_METRIC, Wire, enum_name
from .config import (
    BatteryConfig,
    EvChargerConfig,
    GridConfig,
    InverterConfig,
    MeterConfig,
    SiteConfig,
)
from .errors import ComponentNotFoundError, InvalidRequestError, RequestError
from .physics import Interval, SitePhysics

__all__ = ["PowerKind", "ServiceCore", "bounds_problem", "build_components", "timestamp"]

Context = grpc.aio.ServicerContext[Any, Any]
PowerKind = Literal["active", "reactive"]
"""What a setpoint sets; None where a request names neither (INVALID_ARGUMENT)."""


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    """A protobuf timestamp of ``ns`` nanoseconds since the epoch."""
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def build_components(site: SiteConfig) -> list[ec_pb2.ElectricalComponent]:
    """The ElectricalComponent messages of ``site`` (what ListElectricalComponents serves;
    v1's ListComponents serves their translation)."""
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
        elif isinstance(c, EvChargerConfig):
            comp.category = ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER
            comp.category_specific_info.ev_charger.type = ec_pb2.EV_CHARGER_TYPE_AC
            comp.model_name = f"sim-ev-charger-{c.phases}x{c.rated_current_a:g}A"
            comp.metric_config_bounds.add(
                metric=M.METRIC_AC_POWER_ACTIVE,
                config_bounds=bounds_pb2.Bounds(lower=0.0, upper=c.rated_power_w),
            )
            phase_current = (
                M.METRIC_AC_CURRENT_PHASE_1,
                M.METRIC_AC_CURRENT_PHASE_2,
                M.METRIC_AC_CURRENT_PHASE_3,
            )
            for metric in phase_current[: c.phases]:
                comp.metric_config_bounds.add(
                    metric=metric,
                    config_bounds=bounds_pb2.Bounds(lower=0.0, upper=c.rated_current_a),
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


def _metric_enum(wire: Wire) -> Any:
    return v1_metrics_pb2.Metric if wire == "v1" else M


def bounds_problem(
    kind: str,
    wire: Wire,
    target_metric: int,
    lifetime_s: float,
    bounds: Sequence[Any],
    token: str | None,
) -> tuple[str | None, list[Interval]]:
    """What is wrong with a bounds augmentation (None = nothing) and its intervals.

    ``target_metric`` is in ``wire``'s numbering and is named in its words;
    ``bounds`` are the request's ``Bounds`` messages (an unset end is infinite);
    ``token`` None = the version has none (v1). The first problem found is named.
    """
    enum = _metric_enum(wire)
    active = M.METRIC_AC_POWER_ACTIVE if wire == "v1alpha8" else V1_METRIC[M.METRIC_AC_POWER_ACTIVE]
    problem = None
    if kind not in ("inverter", "ev_charger"):
        problem = f"bounds can only be augmented on inverters and EV chargers, not on a {kind}"
    elif target_metric != active:
        problem = (
            f"target_metric {enum_name(enum, target_metric)} is not supported;"
            f" only {enum_name(enum, active)}"
        )
    elif not 5 <= lifetime_s <= 900:
        problem = f"request_lifetime must be 5..900 s, got {lifetime_s:g}"
    elif not bounds:
        problem = "bounds: at least one interval is required"
    elif len(bounds) > MAX_BOUNDS_INTERVALS:
        problem = f"bounds: at most {MAX_BOUNDS_INTERVALS} intervals per request, got {len(bounds)}"
    elif token is not None and len(token.encode()) > MAX_BOUNDS_TOKEN_BYTES:
        problem = f"bounds_token: at most {MAX_BOUNDS_TOKEN_BYTES} bytes, got {len(token.encode())}"
    intervals: list[Interval] = []
    for i, b in enumerate(bounds):
        lo = b.lower if b.HasField("lower") else -math.inf
        hi = b.upper if b.HasField("upper") else math.inf
        if not valid_interval(lo, hi):
            problem = problem or f"bounds[{i}]: invalid interval [{lo}, {hi}]"
        intervals.append((lo, hi))
    return problem, intervals


def lifetime_of(request: Any, default_s: float) -> float:
    """A setpoint request's ``request_lifetime`` (s), ``default_s`` when unset."""
    return float(request.request_lifetime) if request.HasField("request_lifetime") else default_s


class ServiceCore:
    """What every API version's handlers share, over one simulated site."""

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
            stats: counts the setpoint requests (of every version).
            api_key: if set, every call must carry metadata ``key`` with it.
            time_scale: simulated seconds per wall second (for ``valid_until``).
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
        self.sensor_ids = frozenset(s.id for s in site.sensors)

    # ------------------------------------------------------------------ every call

    async def check_auth(self, context: Context) -> None:
        """Abort UNAUTHENTICATED unless the call carries the API key (if one is set)."""
        if self.api_key is None:
            return
        expected = self.api_key.encode()
        for key, value in context.invocation_metadata() or ():
            given = value if isinstance(value, bytes) else str(value).encode()
            # Constant-time comparison: response timing does not reveal the key.
            if key == "key" and hmac.compare_digest(given, expected):
                return
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")

    async def component_or_abort(self, cid: int, context: Context) -> str:
        """The kind of component ``cid`` (`SitePhysics.kind_of`); NOT_FOUND if unknown."""
        try:
            return self.physics.kind_of(cid)
        except ComponentNotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise  # pragma: no cover - abort raises

    async def abort_with(self, exc: RequestError, context: Context) -> None:
        """End the call with ``exc``'s status code and message."""
        await context.abort(grpc.StatusCode[exc.code], str(exc))

    def valid_until(self, lifetime_s: float) -> timestamp_pb2.Timestamp:
        """Wall-clock UTC time ``lifetime_s`` simulated seconds from now."""
        return timestamp(time.time_ns() + int(lifetime_s / self.time_scale * 1e9))

    def microgrid(self) -> common_mg_pb2.Microgrid:
        """The site's Microgrid message (id, name, enterprise, location, status)."""
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
        return mg

    # ------------------------------------------------------------------ telemetry

    async def component_stream(
        self, cid: int, request: Any, context: Context, wire: Wire
    ) -> AsyncGenerator[bytes, None]:
        """The telemetry stream of component ``cid`` in ``wire``'s frames, honouring
        the request's metric filter (see `wanted_metrics`)."""
        await self.check_auth(context)
        await self.component_or_abort(cid, context)
        wanted = await self.wanted_metrics(request, context, wire)
        async for frame in self.telemetry.stream(
            self.telemetry.stream_key(cid, wanted, wire), context
        ):
            yield frame

    async def sensor_stream(
        self, sid: int, request: Any, context: Context, wire: Wire
    ) -> AsyncGenerator[bytes, None]:
        """The telemetry stream of sensor ``sid`` (NOT_FOUND if the site has none)."""
        await self.check_auth(context)
        if sid not in self.sensor_ids:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"sensor {sid}: no such sensor")
        wanted = await self.wanted_metrics(request, context, wire)
        async for frame in self.telemetry.stream(
            self.telemetry.stream_key(-sid, wanted, wire), context
        ):
            yield frame

    @staticmethod
    async def wanted_metrics(request: Any, context: Context, wire: Wire) -> list[int] | None:
        """The metrics (v1alpha8 numbers) a stream request's filter names (None = no filter).

        A filter with an empty metric list is INVALID_ARGUMENT (the proto
        requires at least one metric); v1 numbers without a v1alpha8 meaning are
        left out, as metrics the component does not have are.
        """
        if not request.HasField("filter"):
            return None
        wanted = list(request.filter.metrics)
        if not wanted:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "filter.metrics: at least one metric must be given",
            )
        if wire == "v1":
            return [V1ALPHA8_METRIC[m] for m in wanted if m in V1ALPHA8_METRIC]
        return wanted

    # ------------------------------------------------------------------ setpoints

    async def admit_setpoint(
        self,
        cid: int,
        power: float,
        kind: PowerKind | None,
        lifetime_s: float,
        context: Context,
    ) -> None:
        """Admit a setpoint or end the call: probe, auth, stats, faults, validation.

        Returns once the setpoint may be applied (counted as accepted); the
        front end applies it and answers in its version's way. Faults (see
        `FaultConfig`): a delayed call is held ``setpoint_delay_s`` wall seconds
        before validation; an injected rejection fails a *valid* call with
        UNAVAILABLE (the device did not answer), so it never hides a bad one.
        """
        active = kind == "active"
        probe = self.telemetry.latency_probe
        if probe is not None and active:
            probe.on_setpoint(cid, power)
        await self.check_auth(context)
        self.stats.on_received(cid)
        received_wall = self._wall_s()
        faults = self.faults
        faulty = faults.active  # account for episodes even when no longer injecting
        if faulty and active:
            faults.ledger.on_setpoint_received(cid, power, received_wall)
        if faulty and faults.injecting:
            await self._injected_delay()
        await self._validate_setpoint(cid, power, kind, lifetime_s, received_wall, context)
        if faulty and faults.injecting and faults.calls.reject():
            faults.ledger.count_call("setpoint_reject")
            self.stats.on_injected_reject(cid)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"component {cid}: did not answer (injected fault)"
            )
        self.stats.on_accepted(cid, power, active)
        if faulty and active:
            faults.ledger.on_setpoint_accepted(cid, power, received_wall, self._wall_s())

    async def _injected_delay(self) -> None:
        """Hold the call ``setpoint_delay_s`` if the ``setpoint_delay`` fault says so."""
        delay = self.faults.calls.delay_s()
        if delay > 0:
            self.faults.ledger.count_call("setpoint_delay")
            await asyncio.sleep(delay)

    async def _validate_setpoint(
        self,
        cid: int,
        power: float,
        kind: PowerKind | None,
        lifetime_s: float,
        received_wall: float,
        context: Context,
    ) -> None:
        """Abort the call (counting the rejection) unless the setpoint may be applied.

        An out-of-range active power inside bounds advertised within
        ``bounds_grace_s`` before ``received_wall`` counts as a bounds race.
        """
        active = kind == "active"
        phys = self.physics
        try:
            phys.kind_of(cid)
            if kind is None:
                raise InvalidRequestError(cid, "power_type must be ACTIVE or REACTIVE")
            if not 10 <= lifetime_s <= 900:
                raise InvalidRequestError(
                    cid, f"request_lifetime must be 10..900 s, got {lifetime_s:g}"
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
            self.stats.on_rejected(cid, exc.code, race, reactive=kind == "reactive")
            await self.abort_with(exc, context)

    # ------------------------------------------------------------------ bounds

    async def augment_bounds(
        self,
        cid: int,
        kind: str,
        context: Context,
        *,
        wire: Wire,
        target_metric: int,
        bounds: Sequence[Any],
        token: str | None,
        lifetime_s: float,
    ) -> timestamp_pb2.Timestamp:
        """Add bounds on inverter ``cid`` (of ``kind``); effective = intersection with
        those in force. Returns until when they hold.

        ``token`` None = a fresh augmentation of its own (v1 has no tokens, and
        neither has a v1alpha18 request without one). Problems are
        INVALID_ARGUMENT (`bounds_problem`); a new augmentation beyond
        `MAX_BOUNDS_PER_COMPONENT` in force is RESOURCE_EXHAUSTED; re-sending a
        token in force replaces it.
        """
        problem, intervals = bounds_problem(kind, wire, target_metric, lifetime_s, bounds, token)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"component {cid}: {problem}")
        in_force = self.physics.augmentation_tokens(cid)
        if token not in in_force and len(in_force) >= MAX_BOUNDS_PER_COMPONENT:
            how = (
                "let one lapse (its validity_duration)"
                if wire == "v1"
                else "clear one with its bounds_token or let it lapse"
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"component {cid}: {len(in_force)} bounds augmentations in force, the limit is"
                f" {MAX_BOUNDS_PER_COMPONENT} per component; {how}",
            )
        try:
            self.physics.augment_bounds(
                cid, token if token is not None else uuid.uuid4().hex, intervals, lifetime_s
            )
        except RequestError as exc:
            await self.abort_with(exc, context)
        return self.valid_until(lifetime_s)

    # ------------------------------------------------------------------ commands

    async def command(
        self, cid: int, context: Context, action: Callable[[int], None]
    ) -> empty_pb2.Empty:
        """Run a state command (`SitePhysics.start` etc.) on ``cid``; its errors end the call."""
        await self.check_auth(context)
        await self.component_or_abort(cid, context)
        try:
            action(cid)
        except RequestError as exc:
            await self.abort_with(exc, context)
        return empty_pb2.Empty()
