"""`TelemetryPublisher`: the simulator's telemetry phases, frames and streams.

The telemetry period ``1/telemetry_hz`` is split into phases and a component
streams in phase ``id % phases``. At each phase's publication, for every (component,
metric filter, wire shape) key of that phase with a waiting stream, its `Template`
encodes the frame once (`simulator._encoding`: the bytes protobuf would write,
from pre-encoded pieces); every stream with that key then writes the same bytes.
Streams sleep on one `asyncio.Event` per phase, so a slow client skips
publications instead of queueing. A *generation* is one whole
period (every phase published).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import grpc.aio

from ._fault_driver import FaultDriver
from ._frames import (
    SENSOR_METRICS,
    FrameValues,
    M,
    Snapshot,
    Template,
    corrupt_frame,
    frame_values,
    metrics_of,
)
from ._limits import StreamCaps
from ._probe import LatencyProbe
from ._wire import Wire
from .physics import SitePhysics

__all__ = ["StreamKey", "TelemetryPublisher"]

_ACTIVE: int = M.METRIC_AC_POWER_ACTIVE
"""AC active power (v1alpha8 number): the metric whose bounds are noted as advertised."""

StreamKey = tuple[int, tuple[int, ...], Wire]
"""A stream's key: component id (a sensor's negated), the metrics it streams
(v1alpha8 numbers) and the wire shape its frames take (v1alpha18 and v1alpha19
streams share ``"v1alpha8"`` frames: the same bytes)."""


class TelemetryPublisher:
    """Publishes the telemetry of one simulated site, phase by phase, to its streams."""

    def __init__(
        self, physics: SitePhysics, phases: int, faults: FaultDriver, caps: StreamCaps
    ) -> None:
        """Publish ``physics`` in ``phases`` phases, honouring ``faults`` and ``caps``."""
        self.physics = physics
        self.phases = phases
        """Phases of the telemetry period."""
        self._faults = faults
        self.caps = caps
        """The telemetry stream caps and counts."""
        self._event: asyncio.Event
        """Set (and replaced) at every phase's publication."""
        self._phase_waiters: list[list[asyncio.Future[None]]] = [[] for _ in range(phases)]
        """Per phase, the futures of the streams sleeping until its next publication
        (a bare future per wait: lighter than an `asyncio.Event`, and every message
        of every stream waits once)."""
        self.reset_events()
        self._next_phase = 0
        self._publications = 0
        self._phase_publication = [0 for _ in range(phases)]
        self._generation = 0
        self._frames: list[dict[StreamKey, bytes]] = [{} for _ in range(phases)]
        self._templates: dict[StreamKey, Template] = {}
        self._subscribers: Counter[StreamKey] = Counter()
        self._waiting: list[Counter[StreamKey]] = [Counter() for _ in range(phases)]
        """Per phase, streams per key waiting for its next publication (only those
        get a frame built)."""
        self._paused: set[int] = set()
        self._break_epoch: dict[int, int] = {}
        self._break_all = 0
        self._inverter_ids = frozenset(physics.inverter_ids.tolist())
        self.messages_sent = 0
        """Telemetry messages written to all streams so far."""
        self.latency_probe: LatencyProbe | None = None
        """Opt-in latency recording (benchmarks); None = off."""

    def reset_events(self) -> None:
        """New events for the running event loop (the server calls it at start)."""
        self._event = asyncio.Event()
        self._phase_waiters = [[] for _ in range(self.phases)]

    @property
    def generation(self) -> int:
        """Telemetry generations (whole periods, every phase published) so far."""
        return self._generation

    @property
    def publications(self) -> int:
        """Telemetry publications so far (one per phase)."""
        return self._publications

    async def next_publication(self) -> None:
        """Wait for the next publication of any phase."""
        await self._event.wait()

    async def wait_for_generation(self, count: int = 1) -> None:
        """Wait until every phase has published ``count`` more times."""
        for _ in range(count * self.phases):
            await self._event.wait()

    def pause(self, component_id: int, paused: bool = True) -> None:
        """Stop (or resume) the telemetry of one component or sensor (streams stay open)."""
        if paused:
            self._paused.add(component_id)
        else:
            self._paused.discard(component_id)

    def break_streams(self, component_id: int | None = None) -> None:
        """End the open telemetry streams of one component (or all) with UNAVAILABLE."""
        if component_id is None:
            self._break_all += 1
        else:
            self._break_epoch[component_id] = self._break_epoch.get(component_id, 0) + 1

    def stream_key(
        self, cid: int, wanted: list[int] | None = None, wire: Wire = "v1alpha8"
    ) -> StreamKey:
        """The key of a stream of component ``cid`` (sensor: ``-id``) for metrics
        ``wanted`` (v1alpha8 numbers) in frames of ``wire``.

        None = every metric the component has; metrics it does not have are left out.
        """
        supported = SENSOR_METRICS if cid < 0 else metrics_of(self.physics.kind_of(cid))
        if wanted is None:
            return cid, supported, wire
        want = set(wanted)
        return cid, tuple(m for m in supported if m in want), wire

    def note_waiting(self, key: StreamKey, count: int = 1) -> None:
        """Count ``count`` more streams waiting for ``key``'s next publication.

        What a stream does before it sleeps; benchmarks use it to have frames
        built without clients.
        """
        self._waiting[abs(key[0]) % self.phases][key] += count

    def frames(self, phase: int) -> Mapping[StreamKey, bytes]:
        """The frames of ``phase``'s latest publication, by stream key."""
        return self._frames[phase]

    def frame_of(self, cid: int) -> bytes:
        """One frame of component ``cid`` with every metric, rendered now (benchmarks)."""
        key = self.stream_key(cid)
        tmpl = self._template(key)
        sec, nanos = divmod(time.time_ns(), 1_000_000_000)
        return tmpl.render(sec, nanos, *frame_values(self.physics, cid, Snapshot(self.physics)))

    def _template(self, key: StreamKey) -> Template:
        tmpl = self._templates.get(key)
        if tmpl is None:
            cid, metrics, wire = key
            full = self.stream_key(cid)[1]
            tmpl = self._templates[key] = Template(
                abs(cid), metrics, full, sensor=cid < 0, wire=wire
            )
        return tmpl

    def publish(self, wall_s: float) -> None:
        """Publish the next phase: build its waited-for frames, wake its streams.

        ``wall_s`` (wall seconds since the server started listening) dates the
        inverter bounds advertised in this publication (`FaultDriver.advertised`).
        """
        phase = self._next_phase
        self._next_phase = (phase + 1) % self.phases
        self._frames[phase] = self._render(phase, wall_s)
        self._publications += 1
        self._phase_publication[phase] = self._publications
        if self._next_phase == 0:
            self._generation += 1
        waiters, self._phase_waiters[phase] = self._phase_waiters[phase], []
        for fut in waiters:
            if not fut.done():  # a cancelled stream's future is done
                fut.set_result(None)
        event, self._event = self._event, asyncio.Event()
        event.set()

    def _render(self, phase: int, wall_s: float) -> dict[StreamKey, bytes]:
        """The frames of ``phase``'s waited-for keys (paused and stalled ones left out).

        The values of a component are computed once for all its keys; the active
        power bounds of an inverter frame are noted as advertised (`FaultDriver.advertised`)
        unless a ``bad_metric`` fault took them out.
        """
        sec, nanos = divmod(time.time_ns(), 1_000_000_000)
        frames: dict[StreamKey, bytes] = {}
        cache: dict[int, FrameValues] = {}
        physics, templates = self.physics, self._templates
        snap = Snapshot(physics)
        faults = self._faults
        paused, stalled, bad = self._paused, faults.stalled, faults.bad_metric
        inverters, note = self._inverter_ids, faults.advertised.note
        noted: set[int] = set()
        for key, count in self._waiting[phase].items():
            if count <= 0:
                continue
            cid = key[0]
            if (paused and abs(cid) in paused) or cid in stalled:
                continue
            vals = cache.get(cid)
            if vals is None:
                vals = cache[cid] = frame_values(physics, cid, snap)
            tmpl = templates.get(key) or self._template(key)
            frame = tmpl.render(sec, nanos, *vals)
            mode = bad.get(cid) if bad else None
            if mode is not None:
                frame = corrupt_frame(tmpl, physics.kind_of(cid), mode)
            frames[key] = frame
            if (
                cid in inverters
                and cid not in noted
                and _ACTIVE in key[1]
                and mode not in ("missing", "missing_bounds")
            ):
                noted.add(cid)
                note(cid, vals[1][_ACTIVE], wall_s)
        return frames

    async def stream(
        self, key: StreamKey, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """One telemetry stream: admit it under the stream caps, then yield the
        frames of its phase's publications (skipping those it was too busy for)."""
        peer = context.peer()
        problem = self.caps.problem(peer)
        if problem is not None:
            self.caps.refused += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem)
        self.caps.opened(peer)
        self._subscribers[key] += 1
        cid = abs(key[0])
        phase = cid % self.phases
        waiting, waiters, frames = self._waiting[phase], self._phase_waiters, self._frames
        loop = asyncio.get_running_loop()
        epoch = (self._break_all, self._break_epoch.get(cid, 0))
        try:
            while True:
                waiting[key] += 1
                try:
                    fut = loop.create_future()
                    waiters[phase].append(fut)
                    await fut
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
            self.caps.closed(peer)
            self._subscribers[key] -= 1
            if self._subscribers[key] <= 0:
                del self._subscribers[key]
                waiting.pop(key, None)
