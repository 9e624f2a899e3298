"""The Microgrid API v1alpha18 server over the simulated physics (grpc.aio).

Offers `SimulatorServer`: an async context manager (or `start` / `stop`) that
serves the whole ``frequenz.api.microgrid.v1alpha18.Microgrid`` service for a
`SiteConfig`, drives `SitePhysics` from one asyncio task, and streams
per-component telemetry at ``telemetry_hz``.

Design of the telemetry path: one tick task steps the physics at
``physics_hz`` (wall). The telemetry period ``1/telemetry_hz`` is split into
``telemetry_phases`` phases and a component streams in phase ``id % phases``
(real devices sample on their own clocks, not all at one instant; it also
spreads the server's writes over the period). At each phase the task
publishes: for every (component, metric filter) of that phase with
subscribers, one pre-built protobuf template is updated in place and
serialised once; all streams with that key then write the same bytes (the
response serialiser passes bytes through). Streams sleep on one
`asyncio.Event` per phase, so a slow client just skips publications instead
of queueing. A *generation* is one whole period (every phase published).

Time: simulated time runs ``time_scale`` times faster than wall time; request
lifetimes (setpoints, bounds) are in simulated seconds; timestamps on the wire
(sample times, ``valid_until_time``) are wall-clock UTC.

Fault injection: manual primitives (`SimulatorServer.pause_telemetry`,
`SimulatorServer.break_streams`, ``physics.inject_error``,
``physics.limit_power``) and a seeded, rate-driven scheduler configured by a
`FaultConfig` (``faults=``, default the site's ``[faults]`` table; see
`simulator.faults` for the kinds). Injected setpoint rejections fail with
UNAVAILABLE *after* validation (the request was valid; the device did not
answer), so they never hide an out-of-bounds setpoint. `SimulatorServer.stats`
reports every fault episode and how the client behaved during and after it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt
from frequenz.api.common.v1alpha8.grid import delivery_area_pb2
from frequenz.api.common.v1alpha8.metrics import bounds_pb2, metrics_pb2
from frequenz.api.common.v1alpha8.microgrid import microgrid_pb2 as common_mg_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.common.v1alpha8.microgrid.sensors import sensors_pb2
from frequenz.api.common.v1alpha8.types import location_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from .config import (
    BatteryConfig,
    FaultConfig,
    GridConfig,
    InverterConfig,
    MeterConfig,
    SiteConfig,
)
from .errors import ComponentNotFoundError, InvalidRequestError, RequestError
from .faults import BoundsHistory, Episode, FaultLedger, FaultScheduler, Injection, SetpointFaults
from .physics import ComponentState, Interval, SetpointStatus, SitePhysics

__all__ = [
    "MAX_BOUNDS_INTERVALS",
    "MAX_BOUNDS_PER_COMPONENT",
    "MAX_BOUNDS_TOKEN_BYTES",
    "MAX_REQUEST_BYTES",
    "REJECTION_CODES",
    "SERVICE_NAME",
    "LatencyProbe",
    "SimulatorServer",
    "default_stream_caps",
    "default_telemetry_phases",
]

_logger = logging.getLogger(__name__)

_PHASE_HZ = 100.0
"""At most this many telemetry publications per second by default (all phases)."""

SERVICE_NAME = "frequenz.api.microgrid.v1alpha18.Microgrid"
REJECTION_CODES = ("OUT_OF_RANGE", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND")
"""Status codes counted in `SimulatorServer.stats` ``setpoints_rejected``."""

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request message the server receives; gRPC itself refuses a larger one
with RESOURCE_EXHAUSTED before it is decoded. Every request of the API is small:
the largest legitimate ones are List* filters naming component ids (a few bytes
each), so 64 KiB still lists ~15 000 ids in one request."""
MAX_BOUNDS_INTERVALS = 8
"""Most intervals in one AugmentElectricalComponentBounds request (INVALID_ARGUMENT beyond)."""
MAX_BOUNDS_TOKEN_BYTES = 128
"""Longest ``bounds_token`` (UTF-8 bytes) accepted (INVALID_ARGUMENT beyond)."""
MAX_BOUNDS_PER_COMPONENT = 16
"""Most bounds augmentations (distinct tokens) in force on one component at a time.
A new token beyond it is RESOURCE_EXHAUSTED until one is cleared or lapses; lapsed
ones no longer count."""
STREAMS_PER_COMPONENT = 4
"""Default per-connection telemetry stream cap: this many streams per component and
sensor of the site (a client reads one per component; a few metric filters fit)."""
MIN_STREAMS_PER_CLIENT = 64
"""The default per-connection cap is never below this."""
CLIENTS_PER_SERVER = 8
"""Default server-wide telemetry stream cap: this many full per-connection caps."""

M = metrics_pb2.Metric
S = ec_pb2.ElectricalComponentStateCode
_STATUS = mg_pb2.SetElectricalComponentPowerRequestStatus

METER_METRICS: tuple[int, ...] = (
    M.METRIC_AC_POWER_ACTIVE,
    M.METRIC_AC_POWER_ACTIVE_PHASE_1,
    M.METRIC_AC_POWER_ACTIVE_PHASE_2,
    M.METRIC_AC_POWER_ACTIVE_PHASE_3,
    M.METRIC_AC_POWER_REACTIVE,
    M.METRIC_AC_POWER_REACTIVE_PHASE_1,
    M.METRIC_AC_POWER_REACTIVE_PHASE_2,
    M.METRIC_AC_POWER_REACTIVE_PHASE_3,
    M.METRIC_AC_CURRENT,
    M.METRIC_AC_CURRENT_PHASE_1,
    M.METRIC_AC_CURRENT_PHASE_2,
    M.METRIC_AC_CURRENT_PHASE_3,
    M.METRIC_AC_VOLTAGE_PHASE_1_N,
    M.METRIC_AC_VOLTAGE_PHASE_2_N,
    M.METRIC_AC_VOLTAGE_PHASE_3_N,
    M.METRIC_AC_FREQUENCY,
)
"""Metrics of meters and the grid connection point."""

INVERTER_METRICS: tuple[int, ...] = (
    *METER_METRICS,
    M.METRIC_DC_POWER,
    M.METRIC_INVERTER_TEMPERATURE,
)
"""Metrics of inverters (AC active power carries the bounds; reactive too)."""

BATTERY_METRICS: tuple[int, ...] = (
    M.METRIC_BATTERY_SOC_PCT,
    M.METRIC_DC_POWER,
    M.METRIC_BATTERY_CAPACITY,
    M.METRIC_BATTERY_TEMPERATURE,
    M.METRIC_DC_VOLTAGE,
    M.METRIC_DC_CURRENT,
)
"""Metrics of batteries (SoC carries SoC bounds, DC power carries power bounds)."""

SENSOR_METRICS: tuple[int, ...] = (M.METRIC_SENSOR_IRRADIANCE, M.METRIC_SENSOR_TEMPERATURE)

_NOMINAL_V = 230.0
_Values = tuple[list[float], dict[Any, list[Interval]], list[Any], list[Any]]


def _passthrough(message: Any) -> bytes:
    """Response serialiser: pre-serialised bytes go out as they are."""
    if isinstance(message, bytes):
        return message
    data: bytes = message.SerializeToString()
    return data


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


class _Template:
    """A pre-built telemetry response updated in place and serialised per generation."""

    def __init__(
        self,
        component_id: int,
        metrics: tuple[int, ...],
        full: tuple[int, ...],
        sensor: bool = False,
    ) -> None:
        self.metrics = metrics
        self.index = [full.index(m) for m in metrics]
        self.msg: Message
        if sensor:
            smsg = mg_pb2.ReceiveSensorTelemetryStreamResponse()
            stel = smsg.telemetry
            stel.sensor_id = component_id
            self.samples = [stel.metric_samples.add(metric=m) for m in metrics]
            self.snapshot: Any = stel.state_snapshots.add()
            self.msg = smsg
        else:
            emsg = mg_pb2.ReceiveElectricalComponentTelemetryStreamResponse()
            etel = emsg.telemetry
            etel.electrical_component_id = component_id
            self.samples = [etel.metric_samples.add(metric=m) for m in metrics]
            self.snapshot = etel.state_snapshots.add()
            self.msg = emsg
        self.bounded: set[int] = set()

    def render(
        self,
        seconds: int,
        nanos: int,
        values: list[float],
        bounds: dict[int, list[Interval]],
        states: list[int],
        errors: list[int],
    ) -> bytes:
        for metric, idx, sample in zip(self.metrics, self.index, self.samples, strict=True):
            ts = sample.sample_time
            ts.seconds = seconds
            ts.nanos = nanos
            sample.value.simple_metric.value = values[idx]
            if metric in bounds:
                del sample.bounds[:]
                for lo, hi in bounds[metric]:
                    b = sample.bounds.add()
                    if lo != -math.inf:
                        b.lower = lo
                    if hi != math.inf:
                        b.upper = hi
        snap = self.snapshot
        snap.origin_time.seconds = seconds
        snap.origin_time.nanos = nanos
        if list(snap.states) != states:
            del snap.states[:]
            snap.states.extend(states)
        if len(snap.errors) != len(errors):
            del snap.errors[:]
            for code in errors:
                snap.errors.add(diagnostic_code=code)
        data: bytes = self.msg.SerializeToString()
        return data


_UNKNOWN = -1
"""`_Stats.per_component` key of every id the site does not have."""


class _Stats:
    def __init__(self, known_ids: frozenset[int]) -> None:
        self._known = known_ids
        self.received = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.out_of_bounds = 0
        self.bounds_race = 0
        self.injected = 0
        self.first_accepted_unix: float | None = None
        self.first_nonzero_accepted_unix: float | None = None
        self.per_component: dict[int, dict[str, Any]] = {}

    def _comp(self, cid: int) -> dict[str, Any]:
        if cid not in self._known:  # one entry for them all: a client cannot grow the table
            cid = _UNKNOWN
        entry = self.per_component.get(cid)
        if entry is None:
            entry = {
                "received": 0,
                "accepted": 0,
                "rejected": dict.fromkeys(REJECTION_CODES, 0),
                "out_of_bounds": 0,
                "bounds_race": 0,
                "rejected_injected": 0,
                "last_setpoint_w": None,
            }
            self.per_component[cid] = entry
        return entry

    def on_received(self, cid: int) -> None:
        self.received += 1
        self._comp(cid)["received"] += 1

    def on_accepted(self, cid: int, power: float, active: bool) -> None:
        self.accepted += 1
        entry = self._comp(cid)
        entry["accepted"] += 1
        if active:
            entry["last_setpoint_w"] = power
            now = time.time()
            if self.first_accepted_unix is None:
                self.first_accepted_unix = now
            if power != 0.0 and self.first_nonzero_accepted_unix is None:
                self.first_nonzero_accepted_unix = now

    def on_rejected(self, cid: int, code: str, race: bool = False) -> None:
        self.rejected[code] += 1
        entry = self._comp(cid)
        entry["rejected"][code] = entry["rejected"].get(code, 0) + 1
        if code == "OUT_OF_RANGE":
            if race:
                self.bounds_race += 1
                entry["bounds_race"] += 1
            else:
                self.out_of_bounds += 1
                entry["out_of_bounds"] += 1

    def on_injected_reject(self, cid: int) -> None:
        self.injected += 1
        self._comp(cid)["rejected_injected"] += 1


def default_telemetry_phases(telemetry_hz: float) -> int:
    """Phases of the telemetry period: 10, fewer when that would publish more
    often than every ~10 ms (``round(100 / telemetry_hz)``): 10 at 10 Hz and
    below, 2 at 50 Hz, 1 at 100 Hz and above.

    More phases than 10 cost more than they spread: at 1 Hz and 1 000 pairs,
    100 phases of 20 frames each made every client slower (event → last
    setpoint p99 563 ms for gridloop) than 10 phases of 200 (248 ms).
    """
    return min(10, max(1, round(_PHASE_HZ / telemetry_hz)))


def default_stream_caps(site: SiteConfig) -> tuple[int, int]:
    """Default telemetry stream caps of a site: (per client connection, whole server).

    Per connection: `STREAMS_PER_COMPONENT` streams per component and sensor, at
    least `MIN_STREAMS_PER_CLIENT`; whole server: `CLIENTS_PER_SERVER` times that.
    A real client (gridloop, the SDK) opens one stream per component, so it never
    meets the cap; a client opening thousands of streams it never reads would
    otherwise take the server's time from every other client.
    """
    per_client = max(
        MIN_STREAMS_PER_CLIENT, STREAMS_PER_COMPONENT * (len(site.components) + len(site.sensors))
    )
    return per_client, CLIENTS_PER_SERVER * per_client


class LatencyProbe:
    """Opt-in timing of frequency steps and the setpoints that answer them (benchmarks).

    Attach one as ``SimulatorServer.latency_probe`` (None = off, the default; the
    hot paths then cost one ``is None`` check). Every time is
    ``time.monotonic_ns()`` of the simulator process, so emissions and arrivals
    share one clock. Call `mark_step` right after changing the physics (e.g.
    ``physics.nominal_hz``): the first frame of ``component_id`` (the grid
    meter) yielded to a client from a later telemetry publication
    (`SimulatorServer.publications`) is the step's emission. Every active-power
    SetElectricalComponentPower request is recorded on arrival (before
    validation) as ``(ns, component id, power W)``.
    """

    def __init__(self, component_id: int) -> None:
        """Watch the telemetry frames of ``component_id`` (the grid meter)."""
        self.component_id = component_id
        self.steps: list[dict[str, Any]] = []
        """Per step: ``label``, ``marked_ns``, ``emitted_ns`` (None until emitted)."""
        self.setpoints: list[tuple[int, int, float]] = []
        """Active-power setpoints as they arrived: (ns, component id, power W)."""
        self._pending: list[tuple[int, int]] = []  # (index into steps, publication at mark)

    def mark_step(self, label: float, publication: int) -> None:
        """Record a step made while ``publication`` was the latest telemetry publication."""
        self._pending.append((len(self.steps), publication))
        self.steps.append({"label": label, "marked_ns": time.monotonic_ns(), "emitted_ns": None})

    def on_frame(self, publication: int) -> None:
        """A frame of the watched component from ``publication`` is being yielded."""
        if self._pending:
            now = time.monotonic_ns()
            keep = []
            for index, marked in self._pending:
                if publication > marked:
                    self.steps[index]["emitted_ns"] = now
                else:
                    keep.append((index, marked))
            self._pending = keep

    def on_setpoint(self, component_id: int, power_w: float) -> None:
        """An active-power setpoint arrived."""
        self.setpoints.append((time.monotonic_ns(), component_id, power_w))

    def to_json(self) -> dict[str, Any]:
        """Everything recorded, JSON-able."""
        return {
            "clock": "time.monotonic_ns of the simulator process",
            "component_id": self.component_id,
            "steps": [dict(s) for s in self.steps],
            "setpoints": [list(s) for s in self.setpoints],
        }


class SimulatorServer:
    """A Microgrid API server for one simulated site.

    Use as ``async with SimulatorServer(site) as srv:`` or call `start` and
    `stop`. ``port=0`` picks a free port; read it from `port` / `address`.
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        telemetry_hz: float = 10.0,
        seed: int = 0,
        api_key: str | None = None,
        physics_hz: float = 50.0,
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
        faults: FaultConfig | None = None,
        telemetry_phases: int | None = None,
        max_streams_per_client: int | None = None,
        max_streams: int | None = None,
    ) -> None:
        """Create the server (nothing runs until `start`).

        Args:
            site: the validated site to simulate.
            host: interface to bind (loopback by default).
            port: TCP port; 0 picks a free one.
            time_scale: simulated seconds per wall second (> 0).
            telemetry_hz: telemetry messages per second per stream (wall, > 0).
            seed: seed of all noise in the physics.
            api_key: if set, every call must carry metadata ``key`` with this
                value, else it fails with UNAUTHENTICATED.
            physics_hz: wall-clock rate of the physics task (> 0).
            tls_cert: PEM server certificate chain; with ``tls_key`` the server
                serves TLS only (clients verify it against their root).
            tls_key: PEM private key of ``tls_cert``.
            faults: rate-driven fault injection; None = ``site.faults`` (the
                site file's ``[faults]`` table, all off unless configured).
            telemetry_phases: how many phases the telemetry period is split
                into. A component streams in phase ``id % telemetry_phases``,
                so the components of a site sample and send at different
                moments of the period, as real devices with their own clocks
                do, instead of all at once. 1 = every stream at the same
                instant. None = `default_telemetry_phases` (10 at 10 Hz).
            max_streams_per_client: most telemetry streams (component and
                sensor) open at once on one client connection; more are refused
                with RESOURCE_EXHAUSTED. None = `default_stream_caps`.
            max_streams: most telemetry streams open at once on the whole
                server (RESOURCE_EXHAUSTED beyond). None = `default_stream_caps`.
        """
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        for name, value in (
            ("time_scale", time_scale),
            ("telemetry_hz", telemetry_hz),
            ("physics_hz", physics_hz),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port!r}")
        if telemetry_phases is None:
            telemetry_phases = default_telemetry_phases(telemetry_hz)
        elif isinstance(telemetry_phases, bool) or not (
            isinstance(telemetry_phases, int) and 1 <= telemetry_phases <= 1000
        ):
            raise ValueError(
                f"telemetry_phases must be an integer 1..1000, got {telemetry_phases!r}"
            )
        default_caps = default_stream_caps(site)
        caps = []
        for name, cap, default in (
            ("max_streams_per_client", max_streams_per_client, default_caps[0]),
            ("max_streams", max_streams, default_caps[1]),
        ):
            if cap is None:
                cap = default
            elif isinstance(cap, bool) or not (isinstance(cap, int) and cap >= 1):
                raise ValueError(f"{name} must be a positive integer, got {cap!r}")
            caps.append(cap)
        self.max_streams_per_client: int = caps[0]
        """Most telemetry streams open at once on one client connection."""
        self.max_streams: int = caps[1]
        """Most telemetry streams open at once on the whole server."""
        self._streams_of: Counter[str] = Counter()
        """Open telemetry streams per client connection (gRPC peer)."""
        self._streams_refused = 0
        self._missed_publications = 0
        self.site = site
        self.host = host
        self.time_scale = float(time_scale)
        self.telemetry_hz = float(telemetry_hz)
        self.physics_hz = float(physics_hz)
        self.api_key = api_key
        self.tls: bool = tls_cert is not None
        """Whether the server serves TLS (else plaintext)."""
        self._tls_pair = (tls_key, tls_cert) if tls_key and tls_cert else None
        self._requested_port = port
        # At most 10 physics sub-steps per wall tick, at least physics_hz sim steps/s.
        max_step = max(1.0 / self.physics_hz, self.time_scale / (self.physics_hz * 10.0))
        self.physics = SitePhysics(site, seed=seed, max_step_s=max_step)
        """The simulated site (mutate it only from the event loop thread)."""
        self.port = 0
        """The bound port (valid after `start`)."""
        self._server: grpc.aio.Server | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self.telemetry_phases: int = telemetry_phases
        """Phases of the telemetry period (see the constructor)."""
        phases = range(telemetry_phases)
        self._event = asyncio.Event()
        """Set (and replaced) at every phase's publication."""
        self._phase_events = [asyncio.Event() for _ in phases]
        self._next_phase = 0
        self._publications = 0
        self._phase_publication = [0 for _ in phases]
        self._generation = 0
        self._frames: list[dict[tuple[int, tuple[int, ...]], bytes]] = [{} for _ in phases]
        self._templates: dict[tuple[int, tuple[int, ...]], _Template] = {}
        self._subscribers: Counter[tuple[int, tuple[int, ...]]] = Counter()
        self._waiting: list[Counter[tuple[int, tuple[int, ...]]]] = [Counter() for _ in phases]
        """Per phase, streams per key waiting for its next publication (only those
        get a frame built)."""
        self._sensor_ids = {s.id for s in site.sensors}
        self._paused: set[int] = set()
        self._break_epoch: dict[int, int] = {}
        self._break_all = 0
        self._stats = _Stats(frozenset(c.id for c in site.components))
        self._started_wall = 0.0
        self.listening_at_unix: float | None = None
        """``time.time()`` when the server started listening (None before `start`)."""
        self.faults: FaultConfig = faults if faults is not None else site.faults
        """The fault injection configuration in effect."""
        self._scheduler = FaultScheduler(self.faults, site)
        self._call_faults = SetpointFaults(self.faults)
        self._ledger = FaultLedger(self.faults)
        self._advertised = BoundsHistory(
            keep_s=self.faults.bounds_grace_s + self.faults.setpoint_delay_s + 1.0
        )
        self._fault_paused: set[int] = set()
        self._bad_metric: dict[int, str] = {}
        self._flapping: set[int] = set()
        self._timed: list[tuple[float, Episode]] = []  # (end sim s, episode) of timed episodes
        self._errors: list[Episode] = []  # open error_state episodes
        self._inverters_of = self._affected_inverters()
        self._inverter_ids = frozenset(c.id for c in site.inverters)
        self._fault_active = self.faults.enabled
        self.injecting = True
        """Set False to stop injecting new faults (scheduled episodes and per-call
        delays/rejections); running episodes still end as usual. True again resumes
        with the schedule from then on (no burst of missed events)."""
        self._components = self._build_components()
        self._connections = [
            ec_pb2.ElectricalComponentConnection(
                source_electrical_component_id=s, destination_electrical_component_id=d
            )
            for s, d in site.connections
        ]
        self._comp_category = {c.id: c.category for c in self._components}
        self.messages_sent = 0
        """Telemetry messages written to all streams so far."""
        self.latency_probe: LatencyProbe | None = None
        """Opt-in latency recording (benchmarks); None = off."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        """``HOST:PORT`` the server listens on."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving and start the physics task."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_concurrent_streams", 10_000),
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ]
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        target = f"{self.host}:{self._requested_port}"
        if ":" in self.host and not self.host.startswith("["):
            target = f"[{self.host}]:{self._requested_port}"
        try:
            if self._tls_pair is not None:
                creds = grpc.ssl_server_credentials([self._tls_pair])
                self.port = server.add_secure_port(target, creds)
            else:
                self.port = server.add_insecure_port(target)
        except RuntimeError as exc:  # grpc reports bind failures this way
            why = "address in use or unavailable"
            if self._tls_pair is not None:
                why += ", or a bad TLS certificate/key"
            raise OSError(f"cannot bind {target} ({why})") from exc
        if self.port == 0:
            what = "serve TLS on" if self._tls_pair is not None else "bind"
            raise OSError(f"cannot {what} {target}")
        await server.start()
        self._server = server
        self._event = asyncio.Event()
        self._phase_events = [asyncio.Event() for _ in range(self.telemetry_phases)]
        self._started_wall = time.monotonic()
        self.listening_at_unix = time.time()
        self._tick_task = asyncio.create_task(self._run_ticks(), name="simulator-physics")

    async def stop(self, grace: float | None = 0.5) -> None:
        """Stop the physics task and the server (open streams are cancelled)."""
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            # asyncio.wait never swallows a cancellation of the task calling stop().
            await asyncio.wait([task])
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> SimulatorServer:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        await self.stop()

    @property
    def generation(self) -> int:
        """Telemetry generations (whole periods, every phase published) so far."""
        return self._generation

    @property
    def publications(self) -> int:
        """Telemetry publications so far (one per phase; for `LatencyProbe.mark_step`)."""
        return self._publications

    async def wait_for_generation(self, count: int = 1) -> None:
        """Wait until every phase has published ``count`` more times."""
        for _ in range(count * self.telemetry_phases):
            await self._event.wait()

    # ------------------------------------------------------------------ fault injection

    def pause_telemetry(self, component_id: int, paused: bool = True) -> None:
        """Stop (or resume) telemetry of one component: its streams stay open but silent.

        Use it to make a component's data go stale. Sensors use their own id too.
        """
        if paused:
            self._paused.add(component_id)
        else:
            self._paused.discard(component_id)

    def break_streams(self, component_id: int | None = None) -> None:
        """End the open telemetry streams of one component (or all) with UNAVAILABLE.

        Clients see a dropped stream and are expected to reconnect.
        """
        if component_id is None:
            self._break_all += 1
        else:
            self._break_epoch[component_id] = self._break_epoch.get(component_id, 0) + 1

    def stats(self) -> dict[str, Any]:
        """Setpoint and fault counters (JSON-able).

        Keys (counts unless a unit is named):

        * ``setpoints_received`` / ``setpoints_accepted``; ``setpoints_rejected``
          per status code (`REJECTION_CODES`; injected rejections are not in it).
        * ``setpoints_out_of_bounds``: active-power requests outside the
          component's current bounds AND outside every bounds set advertised
          in its telemetry within ``faults.bounds_grace_s`` wall seconds before
          the request arrived, i.e. the client could not have known better.
        * ``setpoints_rejected_bounds_race``: outside the current bounds but
          inside recently advertised ones (bounds changed under the client's
          feet). Both are rejected OUT_OF_RANGE and are in
          ``setpoints_rejected.OUT_OF_RANGE``.
        * ``setpoints_rejected_injected``: valid calls failed with UNAVAILABLE
          by the ``setpoint_reject`` fault (not applied).
        * ``per_component``: ``received``, ``accepted``, ``rejected`` (per code),
          ``out_of_bounds``, ``bounds_race``, ``rejected_injected``, ``last_setpoint_w``,
          by component id; requests naming ids the site does not have are
          counted together under ``"unknown"``.
        * ``listening_at_unix``: ``time.time()`` when the server started listening;
          ``first_setpoint_accepted_at_unix`` / ``first_nonzero_setpoint_accepted_at_unix``:
          ``time.time()`` of the first accepted active-power setpoint (any / non-zero),
          None until then.
        * ``telemetry_messages_sent``, ``simulated_s`` (s), ``uptime_s`` (wall s).
        * ``telemetry_publications_missed``: phase publications the schedule
          skipped because the server's loop was late (overload); a generation
          is ``telemetry_phases`` publications.
        * ``telemetry_streams_open`` / ``telemetry_streams_refused``: streams
          open now / refused (RESOURCE_EXHAUSTED) under ``max_streams_per_client``
          or ``max_streams``.
        * ``faults``: ``enabled``, ``injecting``, ``config`` (the `FaultConfig`), ``injected`` (per
          kind, incl. ``setpoint_delay`` and ``setpoint_reject`` calls),
          ``active_episodes``, ``episodes`` (the last ``max_episodes``, oldest
          first; see `simulator.faults.Episode`), ``episodes_dropped``, and
          ``summary`` per episode kind (never truncated): ``episodes``, ``ended``,
          ``skipped`` (component already in that fault), ``setpoints_during``,
          ``setpoints_accepted_during``, ``episodes_with_setpoints_during``,
          ``ended_with_inverters`` (ended episodes with non-empty ``inverter_ids``),
          ``recovered`` (ended episodes followed by an accepted non-zero setpoint),
          ``first_nonzero_setpoint_after_wall_s_max`` / ``_mean``,
          ``duration_wall_s_mean``. Episode times: ``*_sim_s`` simulated s since
          the simulation start, ``*_wall_s`` wall s since the server started listening.
        """
        st = self._stats
        faults: dict[str, Any] = {
            "enabled": self.faults.enabled,
            "injecting": self.injecting,
            "config": dict(vars(self.faults)),
        }
        faults.update(self._ledger.to_json())
        return {
            "setpoints_received": st.received,
            "setpoints_accepted": st.accepted,
            "setpoints_rejected": {code: st.rejected.get(code, 0) for code in REJECTION_CODES},
            "setpoints_out_of_bounds": st.out_of_bounds,
            "setpoints_rejected_bounds_race": st.bounds_race,
            "setpoints_rejected_injected": st.injected,
            "per_component": {
                ("unknown" if cid == _UNKNOWN else str(cid)): {
                    "received": e["received"],
                    "accepted": e["accepted"],
                    "rejected": dict(e["rejected"]),
                    "out_of_bounds": e["out_of_bounds"],
                    "bounds_race": e["bounds_race"],
                    "rejected_injected": e["rejected_injected"],
                    "last_setpoint_w": e["last_setpoint_w"],
                }
                for cid, e in sorted(st.per_component.items())
            },
            "listening_at_unix": self.listening_at_unix,
            "first_setpoint_accepted_at_unix": st.first_accepted_unix,
            "first_nonzero_setpoint_accepted_at_unix": st.first_nonzero_accepted_unix,
            "telemetry_messages_sent": self.messages_sent,
            "telemetry_publications_missed": self._missed_publications,
            "telemetry_streams_open": self.telemetry_streams,
            "telemetry_streams_refused": self._streams_refused,
            "simulated_s": self.physics.now_s,
            "uptime_s": self._wall_s(),
            "faults": faults,
        }

    def _wall_s(self) -> float:
        """Wall seconds since the server started listening (0 before `start`)."""
        return (time.monotonic() - self._started_wall) if self._started_wall else 0.0

    def _affected_inverters(self) -> dict[int, tuple[int, ...]]:
        """Per component, the battery inverters a controller commands it through.

        A battery inverter: itself; a battery: every inverter connected to it;
        PV inverters, meters and the grid connection point: none.
        """
        inverters = {c.id for c in self.site.inverters if c.inverter_type == "battery"}
        out: dict[int, tuple[int, ...]] = {}
        for c in self.site.components:
            if c.id in inverters:
                out[c.id] = (c.id,)
            elif isinstance(c, BatteryConfig):
                out[c.id] = tuple(
                    sorted(s for s, d in self.site.connections if d == c.id and s in inverters)
                )
            else:
                out[c.id] = ()
        return out

    def _run_faults(self) -> None:
        """End due episodes, close recovered error episodes, inject what is due."""
        phys = self.physics
        now = phys.now_s
        wall = self._wall_s()
        if self._timed:
            keep: list[tuple[float, Episode]] = []
            for end, ep in self._timed:
                if now >= end:
                    self._undo(ep)
                    self._ledger.close(ep, now, wall)
                else:
                    keep.append((end, ep))
            self._timed = keep
        if self._errors:
            still: list[Episode] = []
            for ep in self._errors:
                if phys.state_of(ep.component_id) == ComponentState.RUNNING:
                    self._ledger.close(ep, now, wall)
                else:
                    still.append(ep)
            self._errors = still
        due = self._scheduler.due(now)
        if self.injecting:
            for inj in due:
                self._inject(inj, wall)

    def _inject(self, inj: Injection, wall: float) -> None:
        phys = self.physics
        cid, kind = inj.component_id, inj.kind
        busy = (
            (kind == "stream_stall" and cid in self._fault_paused)
            or (kind == "bad_metric" and cid in self._bad_metric)
            or (kind == "bounds_flap" and cid in self._flapping)
            or (kind == "error_state" and phys.state_of(cid) == ComponentState.ERROR)
        )
        if busy:
            self._ledger.skip(kind)
            return
        now = phys.now_s
        ep = self._ledger.open(kind, cid, self._inverters_of.get(cid, ()), now, wall, inj.variant)
        if kind == "stream_end":
            self.break_streams(cid)
            self._ledger.close(ep, now, wall)
            return
        if kind == "error_state":
            phys.inject_error(cid)
            self._errors.append(ep)
            return
        if kind == "stream_stall":
            self._fault_paused.add(cid)
        elif kind == "bad_metric":
            self._bad_metric[cid] = inj.variant
        elif kind == "bounds_flap":
            phys.limit_power(cid, inj.lower_w, inj.upper_w)
            self._flapping.add(cid)
        self._timed.append((now + inj.duration_sim_s, ep))

    def _undo(self, ep: Episode) -> None:
        cid = ep.component_id
        if ep.kind == "stream_stall":
            self._fault_paused.discard(cid)
        elif ep.kind == "bad_metric":
            self._bad_metric.pop(cid, None)
        elif ep.kind == "bounds_flap":
            self.physics.clear_power_limit(cid)
            self._flapping.discard(cid)

    def _corrupt(self, tmpl: _Template, cid: int, mode: str) -> bytes:
        """The frame ``tmpl`` just rendered, corrupted per the bad-metric ``mode``."""
        msg = type(tmpl.msg)()
        msg.CopyFrom(tmpl.msg)
        samples: Any = msg.telemetry.metric_samples  # type: ignore[attr-defined]
        if self.physics.kind_of(cid) == "inverter":
            value_metric: int = M.METRIC_AC_POWER_ACTIVE
            bound_metrics: tuple[int, ...] = (M.METRIC_AC_POWER_ACTIVE,)
        else:
            value_metric = M.METRIC_BATTERY_SOC_PCT
            bound_metrics = (M.METRIC_DC_POWER, M.METRIC_BATTERY_SOC_PCT)
        if mode == "missing_bounds":
            for sample in samples:
                if sample.metric in bound_metrics:
                    del sample.bounds[:]
        elif mode == "missing":
            for i in reversed(range(len(samples))):
                if samples[i].metric == value_metric:
                    del samples[i]
        else:
            value = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}[mode]
            for sample in samples:
                if sample.metric == value_metric:
                    sample.value.simple_metric.value = value
        data: bytes = msg.SerializeToString()
        return data

    # ------------------------------------------------------------------ ticking

    async def _run_ticks(self) -> None:
        loop = asyncio.get_running_loop()
        tel_period = 1.0 / (self.telemetry_hz * self.telemetry_phases)  # one phase
        period = min(1.0 / self.physics_hz, tel_period)
        last = loop.time()
        next_tick = last + period
        next_tel = last
        while True:
            now = loop.time()
            elapsed = now - last
            last = now
            publish = now >= next_tel - 1e-4
            if publish:
                next_tel += tel_period
                if next_tel < now:  # the loop was late: skip the slots that passed
                    self._missed_publications += int((now - next_tel) / tel_period) + 1
                    next_tel = now + tel_period
            try:
                if elapsed > 0:
                    self.physics.step(elapsed * self.time_scale)
                if self._fault_active:
                    self._run_faults()
                if publish:
                    self._publish()
            except Exception:  # keep serving; a bug here must not freeze every stream
                _logger.exception("simulator tick failed at t=%.3f s", self.physics.now_s)
            next_tick += period
            if next_tick < now:
                next_tick = now + period
            # Never take more than ~half of the loop: under overload the streams
            # still get to write (they skip publications instead of starving).
            after = loop.time()
            await asyncio.sleep(max(min(next_tick, next_tel) - after, after - now))

    def _publish(self) -> None:
        """Publish the next phase: build its subscribed frames, wake its streams."""
        phase = self._next_phase
        self._next_phase = (phase + 1) % self.telemetry_phases
        ns = time.time_ns()
        sec, nanos = divmod(ns, 1_000_000_000)
        frames: dict[tuple[int, tuple[int, ...]], bytes] = {}
        cache: dict[int, _Values] = {}
        snap = _Snapshot(self.physics)
        paused, fault_paused, bad = self._paused, self._fault_paused, self._bad_metric
        wall = self._wall_s()
        noted: set[int] = set()
        for key, count in self._waiting[phase].items():
            if count <= 0:
                continue
            cid = key[0]
            if abs(cid) in paused or cid in fault_paused:
                continue
            vals = cache.get(cid)
            if vals is None:
                vals = cache[cid] = self._values(cid, snap)
            tmpl = self._templates.get(key)
            if tmpl is None:
                tmpl = self._templates[key] = self._make_template(key)
            frame = tmpl.render(sec, nanos, *vals)
            mode = bad.get(cid) if bad else None
            if mode is not None:
                frame = self._corrupt(tmpl, cid, mode)
            frames[key] = frame
            if (
                cid in self._inverter_ids
                and cid not in noted
                and M.METRIC_AC_POWER_ACTIVE in key[1]
                and mode not in ("missing", "missing_bounds")
            ):
                noted.add(cid)
                self._advertised.note(cid, vals[1][M.METRIC_AC_POWER_ACTIVE], wall)
        self._frames[phase] = frames
        self._publications += 1
        self._phase_publication[phase] = self._publications
        if self._next_phase == 0:
            self._generation += 1
        event, self._phase_events[phase] = self._phase_events[phase], asyncio.Event()
        event.set()
        event, self._event = self._event, asyncio.Event()
        event.set()

    def _make_template(self, key: tuple[int, tuple[int, ...]]) -> _Template:
        cid, metrics = key
        full = SENSOR_METRICS if cid < 0 else self._metric_key_for(cid)
        return _Template(abs(cid), metrics, full, sensor=cid < 0)

    def _values(self, cid: int, snap: _Snapshot) -> _Values:
        """Metric values (in the category's full metric order), bounds, states, errors."""
        if cid < 0:  # sensor (keys use negative ids to stay apart from components)
            return [snap.irradiance, 20.0], {}, [sensors_pb2.SENSOR_STATE_CODE_OK], []
        phys = self.physics
        kind = phys.kind_of(cid)
        if kind == "battery":
            row = phys.battery_row(cid)
            state = snap.bat_state[row]
            p = snap.bat_p[row]
            bounds: dict[Any, list[Interval]] = {
                M.METRIC_BATTERY_SOC_PCT: [(snap.soc_min[row], snap.soc_max[row])],
                M.METRIC_DC_POWER: [(snap.bat_lo[row], snap.bat_hi[row])],
            }
            errors: list[Any] = []
            if state == ComponentState.RUNNING:
                op = S.ELECTRICAL_COMPONENT_STATE_CODE_READY
                if p > 1.0:
                    op = S.ELECTRICAL_COMPONENT_STATE_CODE_CHARGING
                elif p < -1.0:
                    op = S.ELECTRICAL_COMPONENT_STATE_CODE_DISCHARGING
                states = [op, S.ELECTRICAL_COMPONENT_STATE_CODE_RELAY_CLOSED]
            elif state == ComponentState.ERROR:
                states = [
                    S.ELECTRICAL_COMPONENT_STATE_CODE_ERROR,
                    S.ELECTRICAL_COMPONENT_STATE_CODE_RELAY_OPEN,
                ]
                errors = [ec_pb2.ELECTRICAL_COMPONENT_DIAGNOSTIC_CODE_BATTERY_CONTROLLER_ERROR]
            else:
                states = [
                    S.ELECTRICAL_COMPONENT_STATE_CODE_OFF,
                    S.ELECTRICAL_COMPONENT_STATE_CODE_RELAY_OPEN,
                ]
            return snap.battery_rows()[row], bounds, states, errors
        if kind == "inverter":
            row = phys.inverter_row(cid)
            p = snap.inv_p[row]
            state = snap.inv_state[row]
            errors = []
            if state == ComponentState.RUNNING:
                code = S.ELECTRICAL_COMPONENT_STATE_CODE_READY
                if p > 1.0:
                    code = S.ELECTRICAL_COMPONENT_STATE_CODE_CHARGING
                elif p < -1.0:
                    code = S.ELECTRICAL_COMPONENT_STATE_CODE_DISCHARGING
            elif state == ComponentState.STANDBY:
                code = S.ELECTRICAL_COMPONENT_STATE_CODE_STANDBY
            elif state == ComponentState.OFF:
                code = S.ELECTRICAL_COMPONENT_STATE_CODE_OFF
            else:
                code = S.ELECTRICAL_COMPONENT_STATE_CODE_ERROR
                errors = [ec_pb2.ELECTRICAL_COMPONENT_DIAGNOSTIC_CODE_HARDWARE_FAULT]
            inv_bounds: dict[Any, list[Interval]] = {
                M.METRIC_AC_POWER_ACTIVE: phys.active_power_bounds(cid),
                M.METRIC_AC_POWER_REACTIVE: phys.reactive_power_bounds(cid),
            }
            return snap.inverter_rows()[row], inv_bounds, [code], errors
        ready = [S.ELECTRICAL_COMPONENT_STATE_CODE_READY]
        if kind == "meter":
            return snap.meter_rows()[phys.meter_row(cid)], {}, ready, []
        return snap.meter_rows()[-1], {}, ready, []  # grid connection point

    # ------------------------------------------------------------------ helpers

    def _build_components(self) -> list[ec_pb2.ElectricalComponent]:
        out = []
        mg_id = self.site.microgrid_id
        for c in self.site.components:
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
                    ec_pb2.INVERTER_TYPE_PV
                    if c.inverter_type == "pv"
                    else ec_pb2.INVERTER_TYPE_BATTERY
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

    # ------------------------------------------------------------------ RPCs

    def _handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
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
                for c in self._components
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

    async def _stream(
        self, key: tuple[int, tuple[int, ...]], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """One telemetry stream: admit it under the stream caps, then yield the
        frames of its phase's publications (skipping those it was too busy for)."""
        peer = context.peer()
        problem = self._stream_cap_problem(peer)
        if problem is not None:
            self._streams_refused += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem)
        self._streams_of[peer] += 1
        self._subscribers[key] += 1
        cid = abs(key[0])
        phase = cid % self.telemetry_phases
        waiting, events, frames = self._waiting[phase], self._phase_events, self._frames
        epoch = (self._break_all, self._break_epoch.get(cid, 0))
        try:
            while True:
                waiting[key] += 1
                try:
                    await events[phase].wait()
                finally:
                    waiting[key] -= 1
                if (self._break_all, self._break_epoch.get(cid, 0)) != epoch:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "stream broken (injected)")
                frame = frames[phase].get(key)
                if frame is not None:
                    self.messages_sent += 1
                    probe = self.latency_probe
                    if probe is not None and cid == probe.component_id:
                        probe.on_frame(self._phase_publication[phase])
                    yield frame
        finally:
            self._streams_of[peer] -= 1
            if self._streams_of[peer] <= 0:
                del self._streams_of[peer]
            self._subscribers[key] -= 1
            if self._subscribers[key] <= 0:
                del self._subscribers[key]
                waiting.pop(key, None)

    @property
    def telemetry_streams(self) -> int:
        """Telemetry streams (component and sensor) open now."""
        return self._streams_of.total()

    def _stream_cap_problem(self, peer: str) -> str | None:
        """Why one more telemetry stream from ``peer`` is refused (None = admitted).

        Every open stream costs the server a write per publication whether or not
        its client reads it, so one client holding thousands of streams would
        slow the telemetry of every other client: the caps bound that work.
        """
        if self._streams_of[peer] >= self.max_streams_per_client:
            return (
                f"telemetry streams: this connection already has {self._streams_of[peer]}"
                f" open, the limit is max_streams_per_client={self.max_streams_per_client}"
            )
        if self.telemetry_streams >= self.max_streams:
            return (
                f"telemetry streams: the server already has {self.telemetry_streams} open,"
                f" the limit is max_streams={self.max_streams}"
            )
        return None

    def _metric_key_for(self, cid: int) -> tuple[int, ...]:
        """All metrics a component streams (its unfiltered stream key)."""
        kind = self.physics.kind_of(cid)
        if kind == "battery":
            return BATTERY_METRICS
        if kind == "inverter":
            return INVERTER_METRICS
        return METER_METRICS

    def _metric_key(self, supported: tuple[int, ...], wanted: list[int] | None) -> tuple[int, ...]:
        if wanted is None:
            return supported
        want = set(wanted)
        return tuple(m for m in supported if m in want)

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
        supported = self._metric_key_for(cid)
        wanted: list[int] | None = None
        if request.HasField("filter"):
            wanted = list(request.filter.metrics)
            if not wanted:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "filter.metrics: at least one metric must be given",
                )
        async for frame in self._stream((cid, self._metric_key(supported, wanted)), context):
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
        wanted: list[int] | None = None
        if request.HasField("filter"):
            wanted = list(request.filter.metrics)
            if not wanted:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "filter.metrics: at least one metric must be given",
                )
        async for frame in self._stream((-sid, self._metric_key(SENSOR_METRICS, wanted)), context):
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
        await self._check_auth(context)
        cid = request.electrical_component_id
        kind = await self._component_or_abort(cid, context)
        lifetime = request.request_lifetime if request.HasField("request_lifetime") else 5
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
            if math.isnan(lo) or math.isnan(hi) or lo > hi:
                problem = problem or f"bounds[{i}]: invalid interval [{lo}, {hi}]"
            intervals.append((lo, hi))
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
        probe = self.latency_probe
        if probe is not None and request.power_type == mg_pb2.POWER_TYPE_ACTIVE:
            probe.on_setpoint(request.electrical_component_id, request.power)
        await self._check_auth(context)
        cid = request.electrical_component_id
        power = request.power
        self._stats.on_received(cid)
        active = request.power_type == mg_pb2.POWER_TYPE_ACTIVE
        received_wall = self._wall_s()
        faulty = self._fault_active  # account for episodes even when no longer injecting
        if faulty and active:
            self._ledger.on_setpoint_received(cid, power, received_wall)
        if faulty and self.injecting:
            delay = self._call_faults.delay_s()
            if delay > 0:
                self._ledger.count_call("setpoint_delay")
                await asyncio.sleep(delay)
        try:
            phys = self.physics
            phys.kind_of(cid)
            lifetime = request.request_lifetime if request.HasField("request_lifetime") else 60
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
                and self._advertised.advertised_since(
                    cid, power, received_wall - self.faults.bounds_grace_s
                )
            )
            self._stats.on_rejected(cid, exc.code, race)
            await context.abort(grpc.StatusCode[exc.code], str(exc))
        if faulty and self.injecting and self._call_faults.reject():
            self._ledger.count_call("setpoint_reject")
            self._stats.on_injected_reject(cid)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"component {cid}: did not answer (injected fault)"
            )
        self._stats.on_accepted(cid, power, active)
        if faulty and active:
            self._ledger.on_setpoint_accepted(cid, power, received_wall, self._wall_s())
        if not active:
            phys.set_reactive_power(cid, power, float(lifetime))
            started = phys.now_s
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
                valid_until_time=self._valid_until(float(lifetime)),
            )
            await self.wait_for_generation(2)
            yield mg_pb2.SetElectricalComponentPowerResponse(
                status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
                valid_until_time=self._valid_until(max(0.0, started + lifetime - phys.now_s)),
            )
            return
        seq = phys.set_active_power(cid, power, float(lifetime))
        started_sim = phys.now_s
        yield mg_pb2.SetElectricalComponentPowerResponse(
            status=_STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
            valid_until_time=self._valid_until(float(lifetime)),
        )
        deadline_sim = started_sim + min(float(lifetime), 30.0)
        while True:
            status = phys.setpoint_status(cid, seq)
            if status is not SetpointStatus.PENDING or phys.now_s >= deadline_sim:
                break
            await self._event.wait()
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


class _Snapshot:
    """Plain-float copies of the physics state for one generation (rows built lazily)."""

    def __init__(self, phys: SitePhysics) -> None:
        self.phys = phys
        self.inv_p: list[float] = phys.inverter_power_w.tolist()
        self.inv_state: list[int] = phys.inverter_state.tolist()
        self.bat_p: list[float] = phys.battery_power_w.tolist()
        self.bat_lo: list[float] = phys.battery_lower_w.tolist()
        self.bat_hi: list[float] = phys.battery_upper_w.tolist()
        self.bat_state: list[int] = phys.battery_state.tolist()
        self.soc_min: list[float] = phys.battery_soc_min_pct.tolist()
        self.soc_max: list[float] = phys.battery_soc_max_pct.tolist()
        self.irradiance = phys.irradiance_wm2
        self._inv_rows: list[list[float]] | None = None
        self._bat_rows: list[list[float]] | None = None
        self._meter_rows: list[list[float]] | None = None

    @staticmethod
    def _ac_columns(
        p: npt.NDArray[np.float64], q: npt.NDArray[np.float64], freq: float
    ) -> list[Any]:
        """Columns in METER_METRICS order for active power ``p`` and reactive ``q``."""
        volt = _NOMINAL_V - p * 2e-6
        p3, q3 = p / 3.0, q / 3.0
        cur = p3 / volt
        return [
            p,
            p3,
            p3,
            p3,
            q,
            q3,
            q3,
            q3,
            cur * 3.0,
            cur,
            cur,
            cur,
            volt,
            volt,
            volt,
            np.full_like(p, freq),
        ]

    def inverter_rows(self) -> list[list[float]]:
        """Per inverter: values in INVERTER_METRICS order."""
        if self._inv_rows is None:
            ph = self.phys
            p = ph.inverter_power_w
            cols = self._ac_columns(p, ph.inverter_reactive_var, ph.frequency_hz)
            cols += [p, 35.0 + np.abs(p) * 1e-4]
            self._inv_rows = np.column_stack(cols).tolist() if len(p) else []
        return self._inv_rows

    def meter_rows(self) -> list[list[float]]:
        """Per meter, then the grid connection point last: values in METER_METRICS order."""
        if self._meter_rows is None:
            ph = self.phys
            p = np.append(ph.meter_power_w, ph.grid_power_w)
            q = np.append(ph.meter_reactive_var, ph.grid_reactive_var)
            self._meter_rows = np.column_stack(self._ac_columns(p, q, ph.frequency_hz)).tolist()
        return self._meter_rows

    def battery_rows(self) -> list[list[float]]:
        """Per battery: values in BATTERY_METRICS order."""
        if self._bat_rows is None:
            ph = self.phys
            p = ph.battery_power_w
            volt = ph.battery_voltage_v * (0.9 + 0.002 * ph.battery_soc_pct)
            cols = [
                ph.battery_soc_pct,
                p,
                ph.battery_capacity_wh,
                ph.battery_temperature_c + np.abs(p) * 2e-5,
                volt,
                p / volt,
            ]
            self._bat_rows = np.column_stack(cols).tolist() if len(p) else []
        return self._bat_rows
