"""``gridloop bench latency``: dispatch latency, frequency event → setpoints at the site.

Offers :func:`main` (``gridloop bench ...``), :func:`run_latency`,
:class:`LatencyProgress` (its progress on stderr), :func:`site_dict` (the
generated N-battery topology), :func:`step_latencies` (probe record → per-step
latencies) and :func:`summarise`.

How it measures. For every client, a fresh simulator child process
(``python -m controller.lab.bench _sim``) serves the same generated site: a grid
connection point, a grid meter, and N 1:1 battery inverter/battery pairs
(±10 kW each), no frequency noise, each component streaming in its phase of
the telemetry period (``--telemetry-phases``, default 10). It carries a
:class:`simulator.server.LatencyProbe`. Once the client is connected and
settled, the simulator steps the grid frequency to 50 Hz ± 300 mHz
(alternating, every ``--interval`` s of wall time, one unreported warm-up step
first) and records, on its own ``time.monotonic_ns`` clock, when it yielded the
first grid-meter frame showing each step and when each active-power setpoint
arrived (SetElectricalComponentPower; SetComponentPowerActive in v1). A
setpoint answers step *k* when it arrives after the step's emission, before
the next step's, and has the step's sign (over-frequency → charge, +;
under-frequency → discharge, −; ±5 kW per inverter for every client). Event →
first / last setpoint is the first / last such arrival over the N inverters.

The simulator serves one Microgrid API version, ``--api-version`` (default
v1alpha18), and every client speaks it: a v1 setpoint is one unary call
answered once, a v1alpha18/19 one a call whose answers stream.

The clients, one after another in the same run:

1. ``gridloop``: :class:`actors.Site` + :class:`controller.runtime.service.Controller`
   with only frequency response enabled (reserve N × 5 kW, full activation at
   200 mHz), in this process on uvloop.
2. ``floor``: a bare ``grpc.aio`` client that streams the grid meter's frequency
   and, on the first sample of a step, sends the N setpoints concurrently (no
   actors, no allocation), in this process on uvloop.
3. ``floor+streams``: the same floor, which also opens the 2 N battery and
   inverter telemetry streams gridloop reads and drains them without decoding:
   the simulator then serves the same telemetry load as for gridloop (a
   setpoint that arrives while it writes a phase's frames waits for them,
   whichever client sent it; ``--telemetry-phases 1`` writes all 2 N + 1 at
   once).
4. ``sdk``: frequenz-sdk's battery pool ``propose_power`` driven by
   ``microgrid.frequency()``, in a subprocess (:mod:`controller.lab.bench_sdk_client`:
   the SDK holds process-global state); null when ``frequenz.sdk`` is not importable or it fails.

Progress goes to stderr (:class:`LatencyProgress`), never to stdout: on a
terminal one updating line (client, event k of K, elapsed, a rough time left),
otherwise a line per client at every 10 % of its events and at its end.

Each step is held for ``--interval`` s after its emission (an overloaded
simulator emits the grid meter's next frame late, so steps are at least that
far apart). CPU (gridloop and the floors): ``time.process_time`` of this process
over the stepping window, per grid-meter sample the client reacted to
(``cpu_ms_per_cycle``; telemetry decoding of all 2 N streams included) and as a
share of one core (``cpu_pct``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from controller.cli_args import OneLineParser, api_version, positive_float, positive_int
from controller.errors import BenchError, EmbeddedSimulatorError
from controller.runtime.embedded import LISTEN_PREFIX, SimulatorProcess

__all__ = [
    "LatencyProgress",
    "json_safe",
    "main",
    "run_latency",
    "site_dict",
    "step_latencies",
    "summarise",
]

GRID_ID = 1
METER_ID = 2
INV_W = 10_000.0
STEP_W = 5_000.0
"""Per-inverter response to a full-activation step (W)."""
STEP_HZ = 0.3
NOMINAL_HZ = 50.0
CLIENTS = ("gridloop", "floor", "floor+streams", "sdk")
"""The clients, in the order they run."""
DEFAULT_API_VERSION = "v1alpha18"
"""The version benchmarked unless ``--api-version`` says otherwise (the SDK peer's)."""
SDK_API_VERSION = "v1alpha18"
"""The one version the SDK peer (frequenz-client-microgrid 0.18) speaks."""
_RESULT_PREFIX = "LATENCY "
_EVENT_PREFIX = "EVENT "
"""The simulator child's line saying event k (1..K) is done (its interval has passed)."""
_ROOT = str(Path(__file__).resolve().parent.parent)


def site_dict(n: int) -> dict[str, Any]:
    """A site mapping: grid connection point, grid meter, ``n`` 1:1 battery pairs (±10 kW)."""
    comps: list[dict[str, Any]] = [
        {"id": GRID_ID, "category": "grid"},
        {"id": METER_ID, "category": "meter"},
    ]
    conns: list[dict[str, Any]] = [{"source": GRID_ID, "destination": METER_ID}]
    for i in range(n):
        inv, bat = 1000 + 2 * i, 1001 + 2 * i
        comps.append(
            {
                "id": inv,
                "category": "inverter",
                "type": "battery",
                "rated_lower_w": -INV_W,
                "rated_upper_w": INV_W,
            }
        )
        comps.append(
            {
                "id": bat,
                "category": "battery",
                "capacity_wh": 100_000.0,
                "soc_pct": 50.0,
                "max_charge_w": INV_W,
                "max_discharge_w": INV_W,
            }
        )
        conns.append({"source": METER_ID, "destination": inv})
        conns.append({"source": inv, "destination": bat})
    return {
        "microgrid": {"id": 1, "name": f"bench-{n}"},
        "component": comps,
        "connection": conns,
        "frequency": {"nominal_hz": NOMINAL_HZ, "noise_hz": 0.0},
    }


def inverter_ids(n: int) -> list[int]:
    """The inverter ids of :func:`site_dict`."""
    return [1000 + 2 * i for i in range(n)]


def all_component_ids(n: int) -> list[int]:
    """Every streamed component of :func:`site_dict`: the grid meter, inverters, batteries."""
    return [METER_ID, *range(1000, 1000 + 2 * n)]


# ---------------------------------------------------------------------- analysis


def step_latencies(
    record: dict[str, Any], inverters: Sequence[int], skip: int = 1
) -> list[dict[str, Any]]:
    """Per step: event → first / last answering setpoint (ms) from a probe record.

    Args:
        record: :meth:`simulator.server.LatencyProbe.to_json` output; step labels
            are the step's frequency deviation (Hz, sign = expected setpoint sign).
        inverters: The inverters that must answer.
        skip: Leading warm-up steps left out.

    Returns:
        One dict per step: ``first_ms``, ``last_ms`` (NaN when not all answered
        before the next step), ``answered`` (inverters), ``label``.
    """
    steps = record["steps"]
    setpoints = sorted((int(t), int(c), float(p)) for t, c, p in record["setpoints"])
    wanted = set(inverters)
    out: list[dict[str, Any]] = []
    for k, step in enumerate(steps):
        if k < skip:
            continue
        emitted = step["emitted_ns"]
        if emitted is None:
            out.append({"label": step["label"], "first_ms": math.nan, "last_ms": math.nan,
                        "answered": 0})
            continue
        nxt = math.inf
        if k + 1 < len(steps) and steps[k + 1]["emitted_ns"] is not None:
            nxt = steps[k + 1]["emitted_ns"]
        sign = 1.0 if step["label"] > 0 else -1.0
        first: dict[int, int] = {}
        for t, cid, p in setpoints:
            if t < emitted or cid not in wanted or cid in first:
                continue
            if t >= nxt:
                break
            if p * sign >= STEP_W * 0.5:
                first[cid] = t
        if first:
            t_first = (min(first.values()) - emitted) / 1e6
            complete = len(first) == len(wanted)
            t_last = (max(first.values()) - emitted) / 1e6 if complete else math.nan
        else:
            t_first = t_last = math.nan
        out.append({"label": step["label"], "first_ms": t_first, "last_ms": t_last,
                    "answered": len(first)})
    return out


def _pct(values: Sequence[float]) -> dict[str, float | None]:
    import numpy as np

    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(arr, [50.0, 99.0])
    return {"p50": float(p50), "p99": float(p99), "max": float(arr.max())}


def summarise(steps: Sequence[dict[str, Any]], n: int) -> dict[str, Any]:
    """p50/p99/max (ms) of event → first and → last setpoint, and completeness."""
    return {
        "first_setpoint_ms": _pct([s["first_ms"] for s in steps]),
        "last_setpoint_ms": _pct([s["last_ms"] for s in steps]),
        "events": len(steps),
        "events_complete": sum(1 for s in steps if s["answered"] == n),
    }


# ---------------------------------------------------------------------- simulator child


async def _sim_child(args: argparse.Namespace) -> None:
    """The simulator side: serve, wait for "go" on stdin, step, print the record."""
    from simulator.config import site_from_dict
    from simulator.server import LatencyProbe, SimulatorServer

    site = site_from_dict(site_dict(args.inverters), source=f"<bench site N={args.inverters}>")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with SimulatorServer(
        site,
        telemetry_hz=args.telemetry_hz,
        telemetry_phases=args.telemetry_phases,
        api_versions=(args.api_version,),
    ) as srv:
        _settle_gc()  # as `gridloop sim` does
        emitted = asyncio.Event()

        class Probe(LatencyProbe):
            def on_frame(self, publication: int) -> None:
                super().on_frame(publication)
                if self.steps and self.steps[-1]["emitted_ns"] is not None:
                    emitted.set()

        probe = Probe(METER_ID)
        srv.latency_probe = probe
        print(f"{LISTEN_PREFIX}{srv.address}", flush=True)
        line = await reader.readline()
        if line.strip() != b"go":
            return
        for k in range(args.events + 1):
            delta = STEP_HZ if k % 2 == 0 else -STEP_HZ
            srv.physics.nominal_hz = NOMINAL_HZ + delta
            srv.physics.frequency_hz = NOMINAL_HZ + delta
            emitted.clear()
            probe.mark_step(delta, srv.publications)
            # Each step gets a full interval after its emission (an overloaded
            # simulator emits the grid meter's next frame late).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(emitted.wait(), 60.0)
            await asyncio.sleep(args.interval)
            if k:  # step 0 is the unreported warm-up
                print(f"{_EVENT_PREFIX}{k}", flush=True)
        print(_RESULT_PREFIX + json.dumps(probe.to_json()), flush=True)
        await reader.read()  # serve until the harness closes stdin


class _Sim(SimulatorProcess):
    """The probe simulator child (``python -m controller.lab.bench _sim``), via the one launcher.

    Interactive: "go" on its stdin starts the steps, the probe record comes back on
    its stdout as one (long) line; closing its stdin stops it.
    """

    def __init__(
        self,
        n: int,
        events: int,
        interval: float,
        telemetry_hz: float,
        phases: int,
        api_version: str,
    ) -> None:
        self.api_version = api_version
        """The one Microgrid API version the child serves."""
        self.on_event: Callable[[int], None] | None = None
        """Called with k when event k of the steps is done (progress)."""
        super().__init__(
            [
                "_sim", "--inverters", str(n), "--events", str(events),
                "--interval", str(interval), "--telemetry-hz", str(telemetry_hz),
                "--telemetry-phases", str(phases), "--api-version", api_version,
            ],
            command=(sys.executable, "-m", "controller.lab.bench"),
            cwd=_ROOT,
            interactive=True,
            stream_limit=1 << 28,  # the probe record is one (long) JSON line
            start_timeout_s=60.0,
        )  # fmt: skip

    async def __aenter__(self) -> _Sim:
        try:
            await super().__aenter__()
        except EmbeddedSimulatorError as exc:
            raise BenchError(str(exc)) from None
        return self

    async def run_steps(self, timeout_s: float) -> dict[str, Any]:
        """Say go; return the probe record once all steps are done (`on_event` after each)."""
        self.stdin.write(b"go\n")
        await self.stdin.drain()
        while True:
            try:
                raw = await asyncio.wait_for(self.stdout.readline(), timeout_s)
            except ValueError as exc:  # longer than the stream limit
                raise BenchError(f"simulator report unreadable: {exc}") from None
            line = raw.decode()
            if not line:
                raise BenchError("simulator exited before reporting")
            if line.startswith(_EVENT_PREFIX) and self.on_event is not None:
                self.on_event(int(line[len(_EVENT_PREFIX):]))
            elif line.startswith(_RESULT_PREFIX):
                data: dict[str, Any] = json.loads(line[len(_RESULT_PREFIX):])
                return data


# ---------------------------------------------------------------------- clients


def _cpu(cpu_s: float, wall_s: float, cycles: int) -> dict[str, float]:
    return {
        "cpu_ms_per_cycle": cpu_s * 1e3 / max(cycles, 1),
        "cpu_pct": 100.0 * cpu_s / max(wall_s, 1e-9),
        "cycles": float(cycles),
    }


def _settle_gc() -> None:
    """What `gridloop run` and `gridloop sim` do once started, for every process of
    the benchmark: collect once and `gc.freeze` what is alive (no ~15 ms full
    collection of start-up objects in the middle of a step)."""
    gc.collect()
    gc.freeze()


async def _measure(
    sim: _Sim, timeout_s: float, samples: Callable[[], int]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the steps; the probe record and this process's CPU per sample over them.

    Args:
        sim: The simulator child, ready to step.
        timeout_s: How long the steps may take.
        samples: The client's count of grid-meter samples it reacted to so far.
    """
    _settle_gc()
    cpu0, samples0 = time.process_time(), samples()
    wall0 = time.monotonic()
    record = await sim.run_steps(timeout_s)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    return record, _cpu(cpu, wall, samples() - samples0)


async def _poll(ok: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``ok`` until it holds, or raise BenchError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _gridloop_client(
    sim: _Sim, n: int, settle_s: float, timeout_s: float
) -> tuple[dict[str, Any], dict[str, float]]:
    from actors import Site
    from controller.runtime.config import config_from_dict
    from controller.runtime.control import Controller
    from controller.runtime.service import runtime_options

    config = config_from_dict(
        {
            "control": {"stale_after_s": 10.0, "setpoint_lifetime_s": 60},
            "peak_shaving": {"enabled": False},
            "frequency_response": {
                "enabled": True,
                "reserved_power_w": n * STEP_W,
                "soc_management_power_w": 0.0,
            },
        },
        source="<bench>",
    )
    site = await Site.connect(
        sim.url, options=runtime_options(config), api_version=sim.api_version
    )
    async with site:
        await _poll(lambda: not site.stats().excluded, 60.0, "gridloop: components healthy")
        controller = Controller(site, config)
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(None, stop))
        try:
            await asyncio.sleep(settle_s)
            return await _measure(sim, timeout_s, lambda: controller.acc.samples)
        finally:
            stop.set()
            await task


async def _floor_streams_client(
    sim: _Sim, n: int, settle_s: float, timeout_s: float
) -> tuple[dict[str, Any], dict[str, float]]:
    return await _floor_client(sim, n, settle_s, timeout_s, all_streams=True)


class _Floor:
    """The bare ``grpc.aio`` floor: follow the grid meter's frequency, answer each step.

    On the first sample of a step away from nominal (more than 10 mHz, sign
    change), it sends the N setpoints concurrently (±:data:`STEP_W` each) and
    cancels those of the previous step still in flight.
    """

    def __init__(self, channel: Any, ids: list[int], api_version: str) -> None:
        import importlib

        self._v1 = api_version == "v1"
        self._pb2: Any = importlib.import_module(
            f"frequenz.api.microgrid.{api_version}.microgrid_pb2"
        )
        grpc_mod: Any = importlib.import_module(
            f"frequenz.api.microgrid.{api_version}.microgrid_pb2_grpc"
        )
        self._stub = grpc_mod.MicrogridStub(channel)
        self._ids = ids
        if self._v1:
            from frequenz.api.common.v1.metrics import metric_sample_pb2

            self._freq_metric: int = metric_sample_pb2.METRIC_AC_FREQUENCY
        else:
            from frequenz.api.common.v1alpha8.metrics import metrics_pb2

            self._freq_metric = metrics_pb2.METRIC_AC_FREQUENCY
        self.samples = 0
        """Grid-meter samples received."""
        self.first_sample = asyncio.Event()
        """Set on the first sample."""
        self.calls: list[Any] = []
        """The setpoint calls of the latest step."""

    def _stream(self, cid: int, metrics: list[int] | None = None) -> Any:
        """Open one component's telemetry stream in the floor's API version."""
        pb2 = self._pb2
        if self._v1:
            req = pb2.ReceiveComponentDataStreamRequest(component_id=cid)
            if metrics:
                req.filter.metrics.extend(metrics)
            return self._stub.ReceiveComponentDataStream(req)
        req = pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=cid)
        if metrics:
            req.filter.metrics.extend(metrics)
        return self._stub.ReceiveElectricalComponentTelemetryStream(req)

    def _setpoint(self, cid: int, power_w: float) -> Any:
        """Put one active-power setpoint on the wire (v1: unary; v1alpha18/19: streamed)."""
        pb2 = self._pb2
        if self._v1:
            return self._stub.SetComponentPowerActive(
                pb2.SetComponentPowerActiveRequest(
                    component_id=cid, power=power_w, request_lifetime=60
                ),
                timeout=30.0,
            )
        return self._stub.SetElectricalComponentPower(
            pb2.SetElectricalComponentPowerRequest(
                electrical_component_id=cid, power_type=pb2.POWER_TYPE_ACTIVE,
                power=power_w, request_lifetime=60,
            ),
            timeout=30.0,
        )

    async def follow(self) -> None:
        """Stream the grid meter's frequency and answer every step."""
        last_sign = 0.0
        payload = "data" if self._v1 else "telemetry"
        async for msg in self._stream(METER_ID, [self._freq_metric]):
            self.samples += 1
            self.first_sample.set()
            f = math.nan
            for sample in getattr(msg, payload).metric_samples:
                if sample.metric == self._freq_metric:
                    f = sample.value.simple_metric.value
            df = f - NOMINAL_HZ
            if not abs(df) > 0.01:
                continue
            sign = 1.0 if df > 0 else -1.0
            if sign != last_sign:
                last_sign = sign
                self._answer(sign)

    def _answer(self, sign: float) -> None:
        for call in self.calls:
            call.cancel()
        self.calls = [self._setpoint(cid, sign * STEP_W) for cid in self._ids]

    async def drain(self, cid: int) -> None:
        """Read one more component's telemetry stream without decoding it.

        The same 2 N other streams gridloop reads, so the simulator serves the
        same telemetry load.
        """
        async for _ in self._stream(cid):
            pass


async def _floor_client(
    sim: _Sim, n: int, settle_s: float, timeout_s: float, *, all_streams: bool = False
) -> tuple[dict[str, Any], dict[str, float]]:
    import grpc.aio

    async with grpc.aio.insecure_channel(sim.address) as channel:
        floor = _Floor(channel, inverter_ids(n), sim.api_version)
        task = asyncio.create_task(floor.follow())
        others = [cid for cid in all_component_ids(n) if cid != METER_ID] if all_streams else []
        drains = [asyncio.create_task(floor.drain(cid)) for cid in others]
        try:
            await asyncio.wait_for(floor.first_sample.wait(), 30.0)
            await asyncio.sleep(settle_s)
            return await _measure(sim, timeout_s, lambda: floor.samples)
        finally:
            for t in (task, *drains):
                t.cancel()
            await asyncio.wait([task, *drains])  # never swallows our own cancellation
            for t in (task, *drains):
                if not t.cancelled():
                    t.exception()  # retrieved: a stream error after the run is expected
            for call in floor.calls:
                call.cancel()


def sdk_available() -> bool:
    """Whether frequenz-sdk can be imported (checked without importing it here)."""
    import importlib.util

    try:
        return importlib.util.find_spec("frequenz.sdk") is not None
    except (ImportError, ValueError):
        return False


async def _sdk_client(
    sim: _Sim, n: int, settle_s: float, timeout_s: float
) -> tuple[dict[str, Any], dict[str, float]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "ignore", "-m", "controller.lab.bench_sdk_client", sim.url, str(n),
        str(STEP_W), str(NOMINAL_HZ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=_ROOT,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 150.0)
        if not line.startswith(b"READY"):
            err = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()
            raise BenchError(f"sdk peer did not start: {err[-1] if err else line!r}")
        await asyncio.sleep(settle_s)
        record = await sim.run_steps(timeout_s)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return record, {}


# ---------------------------------------------------------------------- progress


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``: a duration for a progress line."""
    whole = max(0, round(seconds))
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


class LatencyProgress:
    """How far `run_latency` is, on stderr: the table and the JSON stay the output.

    On a terminal: one updating line, rich's progress bar as ``gridloop replay``
    shows it, with the client, event k of K, the time since the client started
    and a rough time left (from the events done so far). Otherwise (a log, a
    pipe): a line per client at every 10 % of its events and one at its end,
    so a long run says where it is without filling the log.
    """

    def __init__(
        self, events: int, *, file: TextIO | None = None, live: bool | None = None
    ) -> None:
        """Report the progress of runs of ``events`` events each.

        Args:
            events: Events per client (K).
            file: Where to write (stderr when None).
            live: Whether to show the updating line (None = whether ``file`` is a terminal).
        """
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.events = events
        """Events per client (K)."""
        self._file = file if file is not None else sys.stderr
        self._live = self._file.isatty() if live is None else live
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("events,"), TimeElapsedColumn(), TextColumn("elapsed, ~"),
            TimeRemainingColumn(), TextColumn("left"),
            console=Console(file=self._file), transient=True, disable=not self._live,
        )  # fmt: skip
        self._task: TaskID | None = None
        self._client = ""
        self._started = 0.0
        self._first = 0.0
        self._done = 0

    def __enter__(self) -> LatencyProgress:
        """Show the updating line (on a terminal)."""
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Remove the updating line."""
        self._bar.stop()

    def client_started(self, client: str) -> None:
        """``client`` starts (connects, settles, then runs its events)."""
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._client, self._started, self._done = client, time.monotonic(), 0
        self._task = self._bar.add_task(client, total=self.events)

    def event_done(self, k: int) -> None:
        """Event ``k`` (1..K) of the current client is done."""
        now = time.monotonic()
        if k == 1:
            self._first = now
        self._done = k
        if self._task is not None:
            self._bar.update(self._task, completed=k, refresh=True)
        tenth = max(1, self.events // 10)
        if not self._live and k < self.events and k % tenth == 0:
            # Per event: the pace since the first one (the first includes connecting).
            pace = (now - self._first) / (k - 1) if k > 1 else now - self._started
            self._line(
                f"event {k}/{self.events}, {_duration(now - self._started)} elapsed,"
                f" ~{_duration(pace * (self.events - k))} left"
            )

    def client_ended(self, note: str | None = None) -> None:
        """The current client is done, or was not run (``note`` says why)."""
        elapsed = _duration(time.monotonic() - self._started)
        if note is not None:
            self._line(f"not run ({note})")
        else:
            self._line(f"{self._done}/{self.events} events in {elapsed}")

    def _line(self, text: str) -> None:
        if not self._live:
            self._file.write(f"gridloop bench latency: {self._client}: {text}\n")
            self._file.flush()


# ---------------------------------------------------------------------- the run

Client = Callable[[_Sim, int, float, float], Awaitable[tuple[dict[str, Any], dict[str, float]]]]


async def run_latency(
    n: int,
    events: int,
    *,
    interval_s: float | None = None,
    telemetry_hz: float | None = None,
    telemetry_phases: int | None = None,
    clients: Sequence[str] = CLIENTS,
    settle_s: float = 1.0,
    api_version: str = DEFAULT_API_VERSION,
    progress: LatencyProgress | None = None,
) -> dict[str, Any]:
    """Run the latency benchmark in one Microgrid API version; return the JSON-able result.

    ``progress`` (if given) is told when each client starts, each of its events is
    done and it ends.
    """
    from simulator.server import default_telemetry_phases

    hz = telemetry_hz if telemetry_hz is not None else (10.0 if n <= 100 else 1.0)
    phases = telemetry_phases if telemetry_phases is not None else default_telemetry_phases(hz)
    if interval_s is None:
        interval_s = 2.0 if n <= 100 else 3.0
    table: dict[str, Client] = {
        "gridloop": _gridloop_client,
        "floor": _floor_client,
        "floor+streams": _floor_streams_client,
        "sdk": _sdk_client,
    }
    result: dict[str, Any] = {
        "inverters": n,
        "events": events,
        "interval_s": interval_s,
        "telemetry_hz": hz,
        "telemetry_phases": phases,
        "step_hz": STEP_HZ,
        "api_version": api_version,
        "clock": "time.monotonic_ns of the simulator process (emission and arrival)",
        "results": {},
    }
    timeout_s = (events + 1) * (interval_s + 60.0)
    for name in clients:
        if progress is not None:
            progress.client_started(name)
        skip = None
        if name == "sdk" and not sdk_available():
            skip = "frequenz-sdk not installed"
        elif name == "sdk" and api_version != SDK_API_VERSION:
            skip = f"frequenz-sdk speaks {SDK_API_VERSION} only, not {api_version}"
        if skip is None:
            try:
                async with _Sim(n, events, interval_s, hz, phases, api_version) as sim:
                    sim.on_event = None if progress is None else progress.event_done
                    record, extra = await table[name](sim, n, settle_s, timeout_s)
            except (BenchError, TimeoutError, OSError) as exc:
                if name != "sdk":
                    raise BenchError(f"{name}: {exc or type(exc).__name__}") from None
                skip = str(exc or type(exc).__name__)
        if progress is not None:
            progress.client_ended(skip)
        if skip is not None:
            result["results"][name] = None
            result.setdefault("notes", []).append(f"sdk: {skip}")
            continue
        steps = step_latencies(record, inverter_ids(n))
        entry = summarise(steps, n)
        entry.update(extra)
        entry["steps"] = steps
        result["results"][name] = entry
    return result


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(result: dict[str, Any]) -> None:
    """Print the result as a rich table."""
    from rich.console import Console
    from rich.table import Table

    n = result["inverters"]
    table = Table(
        title=f"event → setpoint latency (ms), Microgrid API {result['api_version']},"
        f" N = {n}, {result['events']} events,"
        f" telemetry {result['telemetry_hz']:g} Hz in {result['telemetry_phases']} phases"
    )
    for col in ("client", "first p50", "first p99", "first max", "last p50", "last p99",
                "last max", "complete", "CPU ms/cycle", "CPU %"):
        table.add_column(col, justify="left" if col == "client" else "right")
    for name, entry in result["results"].items():
        if entry is None:
            table.add_row(name, *["—"] * 6, "not run", "—", "—")
            continue
        f, la = entry["first_setpoint_ms"], entry["last_setpoint_ms"]
        cpu = entry.get("cpu_ms_per_cycle")
        table.add_row(
            name, _fmt(f["p50"]), _fmt(f["p99"]), _fmt(f["max"]), _fmt(la["p50"]),
            _fmt(la["p99"]), _fmt(la["max"]), f"{entry['events_complete']}/{entry['events']}",
            _fmt(cpu), _fmt(entry.get("cpu_pct")),
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for note in result.get("notes", []):
        console.print(f"note: {note}")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (nan, inf) as None, in nested dicts and lists
    (JSON has no nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def _latency_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="gridloop bench latency",
                description="Frequency event → setpoints: gridloop vs bare gRPC floor vs SDK.")
    p.add_argument("--inverters", type=positive_int("--inverters"), required=True, metavar="N")
    p.add_argument("--events", type=positive_int("--events"), default=10, metavar="K")
    p.add_argument("--interval", type=positive_float("--interval"), default=None,
                   metavar="SECONDS",
                   help="wall time between frequency steps (default 2, 3 above N = 100)")
    p.add_argument("--telemetry-hz", type=positive_float("--telemetry-hz"), default=None,
                   help="simulator telemetry rate (default 10, 1 above N = 100: the"
                   " simulator serves 2 N + 1 streams on one core)")
    p.add_argument("--telemetry-phases", type=positive_int("--telemetry-phases"), default=None,
                   metavar="K",
                   help="simulator telemetry phases: a component streams in phase id %% K"
                   " (default 10, fewer above 10 Hz; 1 = every stream at the same instant)")
    p.add_argument("--api-version", default=DEFAULT_API_VERSION, metavar="VERSION",
                   type=api_version("--api-version"),
                   help="Microgrid API version the simulator serves and every client speaks:"
                   f" v1, v1alpha18 or v1alpha19 (default {DEFAULT_API_VERSION}; the sdk"
                   f" peer speaks {SDK_API_VERSION} only)")
    p.add_argument("--clients", default=",".join(CLIENTS),
                   help=f"comma-separated subset of {','.join(CLIENTS)}")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON")
    return p


def main(argv: Sequence[str]) -> int:
    """``gridloop bench SUBCOMMAND ...``; returns the exit status."""
    args = list(argv)
    if args and args[0] == "_sim":
        sp = OneLineParser(prog="gridloop bench _sim")
        sp.add_argument("--inverters", type=int, required=True)
        sp.add_argument("--events", type=int, required=True)
        sp.add_argument("--interval", type=float, required=True)
        sp.add_argument("--telemetry-hz", type=float, required=True)
        sp.add_argument("--telemetry-phases", type=int, required=True)
        sp.add_argument("--api-version", required=True)
        from actors import run as run_on_uvloop

        run_on_uvloop(_sim_child(sp.parse_args(args[1:])))
        return 0
    if not args or args[0] != "latency":
        sys.stderr.write("usage: gridloop bench latency --inverters N [--events K] [--json FILE]\n"
                         "       gridloop bench site --api URL [--steps K] [--json FILE]\n")
        return 2
    opts = _latency_parser().parse_args(args[1:])
    clients = [c.strip() for c in opts.clients.split(",") if c.strip()]
    bad = [c for c in clients if c not in CLIENTS]
    if bad or not clients:
        sys.stderr.write(f"gridloop bench latency: --clients = {opts.clients!r}: "
                         f"expected a subset of {','.join(CLIENTS)}\n")
        return 2
    if opts.json:
        try:
            with open(opts.json, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            sys.stderr.write(f"gridloop bench latency: --json = {opts.json!r}: {exc.strerror}\n")
            return 2
    logging.basicConfig(level=logging.ERROR)  # the table is the output
    from actors import run as run_on_uvloop

    try:
        with LatencyProgress(opts.events) as progress:
            result = run_on_uvloop(
                run_latency(opts.inverters, opts.events, interval_s=opts.interval,
                            telemetry_hz=opts.telemetry_hz,
                            telemetry_phases=opts.telemetry_phases, clients=clients,
                            api_version=opts.api_version, progress=progress)
            )
    except BenchError as exc:
        sys.stderr.write(f"gridloop bench latency: {exc}\n")
        return 1
    render(result)
    if opts.json:
        Path(opts.json).write_text(json.dumps(json_safe(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main(sys.argv[1:]))
