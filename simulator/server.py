"""The Microgrid API server over the simulated physics (grpc.aio): v1, v1alpha18, v1alpha19.

Offers `SimulatorServer`: an async context manager (or `start` / `stop`) that
serves the ``Microgrid`` service of every version in ``api_versions`` (default
`API_VERSIONS`: ``frequenz.api.microgrid.v1`` — the original 0.17 API —,
``v1alpha18`` and ``v1alpha19``) on one port for a `SiteConfig`, drives
`SitePhysics` from one asyncio task, and streams per-component telemetry at
``telemetry_hz``. Every version sees the same site, physics, faults, statistics,
TLS and API key: a setpoint sent through one shows in every version's telemetry.
A version not served answers UNIMPLEMENTED (gRPC does that for an unknown service).

Design of the telemetry path: one tick task steps the physics at
``physics_hz`` (wall). The telemetry period ``1/telemetry_hz`` is split into
``telemetry_phases`` phases and a component streams in phase ``id % phases``
(real devices sample on their own clocks, not all at one instant; it also
spreads the server's writes over the period). At each phase the task
publishes (`simulator._publisher`): for every (component, metric filter, wire
shape: v1 or the v1alpha18/19 one) of that phase with subscribers, the frame is
encoded once from pre-encoded pieces (`simulator._encoding`); all streams with that
key then write the same bytes (the response serialiser passes bytes through). Streams sleep on one
`asyncio.Event` per phase, so a slow client just skips publications instead
of queueing. A *generation* is one whole period (every phase published).

The parts, one role per private module: `simulator._rpc_core` (what every
version's handlers share: auth, lookup, setpoint admission, bounds, commands),
`simulator._rpc` (the v1alpha18/v1alpha19 handlers), `simulator._rpc_v1` (the v1
handlers), `simulator._wire` (the numbering tables between v1 and v1alpha8),
`simulator._publisher`, `simulator._frames` and `simulator._encoding` (telemetry),
`simulator._fault_driver` (fault episodes), `simulator._stats` (setpoint
counters), `simulator._probe` (latency probe), `simulator._limits` (request and
stream limits). This module wires them and runs the physics task.

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
import logging
import time
from typing import Any

import grpc
import grpc.aio
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from ._fault_driver import FaultDriver
from ._frames import BATTERY_METRICS, INVERTER_METRICS, METER_METRICS, SENSOR_METRICS
from ._limits import (
    CLIENTS_PER_SERVER,
    MAX_BOUNDS_INTERVALS,
    MAX_BOUNDS_PER_COMPONENT,
    MAX_BOUNDS_TOKEN_BYTES,
    MAX_REQUEST_BYTES,
    MIN_STREAMS_PER_CLIENT,
    STREAMS_PER_COMPONENT,
    StreamCaps,
    check_server_args,
    default_stream_caps,
    default_telemetry_phases,
    pending_call_limits,
)
from ._probe import LatencyProbe
from ._publisher import TelemetryPublisher
from ._rpc import SERVICE_NAME, MicrogridServicer
from ._rpc_core import ServiceCore, build_components
from ._rpc_v1 import MicrogridV1Servicer
from ._stats import REJECTION_CODES, SetpointStats
from ._wire import API_VERSIONS, SERVICE_NAMES
from .config import FaultConfig, SiteConfig
from .physics import SitePhysics

__all__ = [
    "API_VERSIONS",
    "BATTERY_METRICS",
    "CLIENTS_PER_SERVER",
    "INVERTER_METRICS",
    "MAX_BOUNDS_INTERVALS",
    "MAX_BOUNDS_PER_COMPONENT",
    "MAX_BOUNDS_TOKEN_BYTES",
    "MAX_REQUEST_BYTES",
    "METER_METRICS",
    "MIN_STREAMS_PER_CLIENT",
    "REJECTION_CODES",
    "SENSOR_METRICS",
    "SERVICE_NAME",
    "SERVICE_NAMES",
    "STREAMS_PER_COMPONENT",
    "LatencyProbe",
    "SimulatorServer",
    "build_components",
    "check_api_versions",
    "default_stream_caps",
    "default_telemetry_phases",
    "pending_call_limits",
]

_logger = logging.getLogger(__name__)


def _tick_pause(until_due_s: float, tick_cpu_s: float) -> float:
    """Seconds the physics task sleeps after a tick: until the next tick or publication
    is due (``until_due_s``), but at least the CPU time the tick took (``tick_cpu_s``).

    The floor keeps the ticks to about half of the loop under overload, so the
    streams still get to write (they skip publications instead of starving). It is
    the tick's CPU time, not its wall time: a tick the OS preempted on a busy
    machine would otherwise make the loop idle for as long as it waited.
    """
    return max(until_due_s, tick_cpu_s)


def check_api_versions(versions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``versions`` in `API_VERSIONS` order, without repeats.

    Raises:
        ValueError: one line naming ``api_versions``, the bad value and the
            allowed set, if a version is unknown or none is given.
    """
    allowed = ", ".join(API_VERSIONS)
    for v in versions:
        if v not in API_VERSIONS:
            raise ValueError(f"api_versions: unknown version {v!r}; allowed: {allowed}")
    if not versions:
        raise ValueError(f"api_versions: at least one version is required; allowed: {allowed}")
    return tuple(v for v in API_VERSIONS if v in versions)


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
        api_versions: tuple[str, ...] = API_VERSIONS,
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
            api_versions: the Microgrid API versions to serve (a non-empty
                subset of `API_VERSIONS`); the others answer UNIMPLEMENTED.
        """
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        self.api_versions: tuple[str, ...] = check_api_versions(api_versions)
        """The Microgrid API versions served, in `API_VERSIONS` order."""
        phases, per_client, total = check_server_args(
            site=site,
            port=port,
            rates={
                "time_scale": time_scale,
                "telemetry_hz": telemetry_hz,
                "physics_hz": physics_hz,
            },
            telemetry_phases=telemetry_phases,
            max_streams_per_client=max_streams_per_client,
            max_streams=max_streams,
        )
        self.site = site
        self.host = host
        self.time_scale = float(time_scale)
        self.telemetry_hz = float(telemetry_hz)
        self.physics_hz = float(physics_hz)
        self.tls: bool = tls_cert is not None
        """Whether the server serves TLS (else plaintext)."""
        self._tls_pair = (tls_key, tls_cert) if tls_key and tls_cert else None
        self._requested_port = port
        self.port = 0
        """The bound port (valid after `start`)."""
        self._server: grpc.aio.Server | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._started_wall = 0.0
        self._missed_publications = 0
        self.listening_at_unix: float | None = None
        """``time.time()`` when the server started listening (None before `start`)."""
        self._build_parts(site, seed, faults, api_key, phases, StreamCaps(per_client, total))

    def _build_parts(
        self,
        site: SiteConfig,
        seed: int,
        faults: FaultConfig | None,
        api_key: str | None,
        phases: int,
        caps: StreamCaps,
    ) -> None:
        """The physics, the fault driver, the telemetry publisher and the RPC handlers."""
        # At most 10 physics sub-steps per wall tick, at least physics_hz sim steps/s.
        max_step = max(1.0 / self.physics_hz, self.time_scale / (self.physics_hz * 10.0))
        self.physics = SitePhysics(site, seed=seed, max_step_s=max_step)
        """The simulated site (mutate it only from the event loop thread)."""
        self.faults: FaultConfig = faults if faults is not None else site.faults
        """The fault injection configuration in effect."""
        self.fault_driver = FaultDriver(
            self.faults, site, self.physics, break_streams=self.break_streams, wall_s=self._wall_s
        )
        """The fault episodes: scheduled, running, and their ledger."""
        self.telemetry = TelemetryPublisher(self.physics, phases, self.fault_driver, caps)
        """The telemetry phases, frames and streams."""
        self._setpoints = SetpointStats(frozenset(c.id for c in site.components))
        self._service = ServiceCore(
            site,
            self.physics,
            self.telemetry,
            self.fault_driver,
            self._setpoints,
            api_key=api_key,
            time_scale=self.time_scale,
            wall_s=self._wall_s,
        )
        alpha = MicrogridServicer(self._service)
        v1 = MicrogridV1Servicer(self._service)
        self._handlers = [
            v1.handlers() if version == "v1" else alpha.handlers(version)
            for version in self.api_versions
        ]

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        """``HOST:PORT`` the server listens on."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving and start the physics task."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server(options=self.grpc_options())
        server.add_generic_rpc_handlers(self._handlers)
        self.port = self._bind(server)
        await server.start()
        self._server = server
        self.telemetry.reset_events()
        self._started_wall = time.monotonic()
        self.listening_at_unix = time.time()
        self._tick_task = asyncio.create_task(self._run_ticks(), name="simulator-physics")

    def grpc_options(self) -> list[tuple[str, int]]:
        """The ``grpc.aio`` server options: one port of its own, at most 10 000 streams
        per connection, `MAX_REQUEST_BYTES` per request, and a backlog of calls not yet
        taken by the loop that holds one client's full stream cap (`pending_call_limits`:
        gRPC's default sheds a 1 000-pair client's streams at connect)."""
        soft, hard = pending_call_limits(self.max_streams_per_client)
        return [
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", 10_000),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.server.max_pending_requests", soft),
            ("grpc.server.max_pending_requests_hard_limit", hard),
        ]

    def _bind(self, server: grpc.aio.Server) -> int:
        """Add the (TLS or plaintext) port to ``server``; the bound port, or OSError."""
        target = f"{self.host}:{self._requested_port}"
        if ":" in self.host and not self.host.startswith("["):
            target = f"[{self.host}]:{self._requested_port}"
        try:
            if self._tls_pair is not None:
                creds = grpc.ssl_server_credentials([self._tls_pair])
                port = server.add_secure_port(target, creds)
            else:
                port = server.add_insecure_port(target)
        except RuntimeError as exc:  # grpc reports bind failures this way
            why = "address in use or unavailable"
            if self._tls_pair is not None:
                why += ", or a bad TLS certificate/key"
            raise OSError(f"cannot bind {target} ({why})") from exc
        if port == 0:
            what = "serve TLS on" if self._tls_pair is not None else "bind"
            raise OSError(f"cannot {what} {target}")
        return port

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
    def api_key(self) -> str | None:
        """The key every call must carry as metadata ``key`` (None = no check).

        Changing it takes effect for every new call; open streams live on.
        """
        return self._service.api_key

    @api_key.setter
    def api_key(self, key: str | None) -> None:
        self._service.api_key = key

    # ------------------------------------------------------------------ telemetry

    @property
    def telemetry_phases(self) -> int:
        """Phases of the telemetry period (see the constructor)."""
        return self.telemetry.phases

    @property
    def generation(self) -> int:
        """Telemetry generations (whole periods, every phase published) so far."""
        return self.telemetry.generation

    @property
    def publications(self) -> int:
        """Telemetry publications so far (one per phase; for `LatencyProbe.mark_step`)."""
        return self.telemetry.publications

    @property
    def messages_sent(self) -> int:
        """Telemetry messages written to all streams so far."""
        return self.telemetry.messages_sent

    @property
    def latency_probe(self) -> LatencyProbe | None:
        """Opt-in latency recording (benchmarks); None = off."""
        return self.telemetry.latency_probe

    @latency_probe.setter
    def latency_probe(self, probe: LatencyProbe | None) -> None:
        self.telemetry.latency_probe = probe

    @property
    def max_streams_per_client(self) -> int:
        """Most telemetry streams open at once on one client connection."""
        return self.telemetry.caps.per_client

    @property
    def max_streams(self) -> int:
        """Most telemetry streams open at once on the whole server."""
        return self.telemetry.caps.total

    @property
    def telemetry_streams(self) -> int:
        """Telemetry streams (component and sensor) open now."""
        return self.telemetry.caps.open

    @property
    def components(self) -> list[ec_pb2.ElectricalComponent]:
        """The ElectricalComponent messages ListElectricalComponents serves."""
        return self._service.components

    async def wait_for_generation(self, count: int = 1) -> None:
        """Wait until every phase has published ``count`` more times."""
        await self.telemetry.wait_for_generation(count)

    # ------------------------------------------------------------------ fault injection

    @property
    def injecting(self) -> bool:
        """Whether new faults are injected (scheduled episodes and per-call
        delays/rejections). Set False to stop; running episodes still end as
        usual. True again resumes with the schedule from then on (no burst of
        missed events)."""
        return self.fault_driver.injecting

    @injecting.setter
    def injecting(self, value: bool) -> None:
        self.fault_driver.injecting = value

    def pause_telemetry(self, component_id: int, paused: bool = True) -> None:
        """Stop (or resume) telemetry of one component: its streams stay open but silent.

        Use it to make a component's data go stale. Sensors use their own id too.
        """
        self.telemetry.pause(component_id, paused)

    def break_streams(self, component_id: int | None = None) -> None:
        """End the open telemetry streams of one component (or all) with UNAVAILABLE.

        Clients see a dropped stream and are expected to reconnect.
        """
        self.telemetry.break_streams(component_id)

    def stats(self) -> dict[str, Any]:
        """Setpoint and fault counters (JSON-able).

        Keys (counts unless a unit is named):

        * ``api_versions``: the Microgrid API versions served. Every other count
          covers the calls of all of them.
        * ``setpoints_received`` / ``setpoints_accepted``; ``setpoints_rejected``
          per status code (`REJECTION_CODES`; injected rejections are not in it).
        * ``setpoints_out_of_bounds``: active-power requests outside the
          component's current bounds AND outside every bounds set advertised
          in its telemetry within ``faults.bounds_grace_s`` wall seconds before
          the request arrived, i.e. the client could not have known better.
        * ``setpoints_reactive_out_of_bounds``: reactive-power requests outside the
          momentary reactive bounds (`SitePhysics.reactive_power_bounds`; they
          are counted in ``setpoints_out_of_bounds`` too).
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
        * ``apparent_limit_clips``: per inverter id, how often its reactive power
          started being clipped by its apparent-power circle because its active
          power grew (P priority; `SitePhysics.inverter_apparent_clips`).
        """
        setpoints = self._setpoints
        return {
            "api_versions": list(self.api_versions),
            **setpoints.to_json(),
            "listening_at_unix": self.listening_at_unix,
            "first_setpoint_accepted_at_unix": setpoints.first_accepted_unix,
            "first_nonzero_setpoint_accepted_at_unix": setpoints.first_nonzero_accepted_unix,
            "telemetry_messages_sent": self.messages_sent,
            "telemetry_publications_missed": self._missed_publications,
            "telemetry_streams_open": self.telemetry_streams,
            "telemetry_streams_refused": self.telemetry.caps.refused,
            "simulated_s": self.physics.now_s,
            "uptime_s": self._wall_s(),
            "faults": self.fault_driver.to_json(),
            "apparent_limit_clips": {
                str(cid): int(n)
                for cid, n in zip(
                    self.physics.inverter_ids.tolist(),
                    self.physics.inverter_apparent_clips.tolist(),
                    strict=True,
                )
            },
        }

    def _wall_s(self) -> float:
        """Wall seconds since the server started listening (0 before `start`)."""
        return (time.monotonic() - self._started_wall) if self._started_wall else 0.0

    # ------------------------------------------------------------------ ticking

    async def _run_ticks(self) -> None:
        """Step the physics at ``physics_hz``, run the faults, publish each phase on time."""
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
            busy = time.thread_time()
            self._tick(elapsed, publish)
            busy = time.thread_time() - busy
            next_tick += period
            if next_tick < now:
                next_tick = now + period
            await asyncio.sleep(_tick_pause(min(next_tick, next_tel) - loop.time(), busy))

    def _tick(self, elapsed_wall_s: float, publish: bool) -> None:
        """One tick: step the physics, run the faults, publish if it is time."""
        try:
            if elapsed_wall_s > 0:
                self.physics.step(elapsed_wall_s * self.time_scale)
            if self.fault_driver.active:
                self.fault_driver.run()
            if publish:
                self.telemetry.publish(self._wall_s())
        except Exception:  # keep serving; a bug here must not freeze every stream
            _logger.exception("simulator tick failed at t=%.3f s", self.physics.now_s)
