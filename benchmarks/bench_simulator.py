"""Simulator benchmarks: telemetry throughput over gRPC, message building, physics steps.

Throughput: a server process (the simulator, or a bare grpc.aio server that
streams one pre-built telemetry message as fast as it can) serves 100
component streams to a client in this process that counts raw messages
(no decoding) for a fixed window. Results land in ``extra_info``:
``msgs_per_s`` and ``samples_per_s`` (metric samples per second).

Run: ``/work/venv/bin/pytest benchmarks/bench_simulator.py -s``
(CI smoke: add ``--benchmark-disable``; windows shrink to a fraction of a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2

from controller.lab.bench import site_dict
from simulator.config import SiteConfig, load_site, site_from_dict
from simulator.physics import SitePhysics
from simulator.server import INVERTER_METRICS, SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
N_STREAMS = 100
METHOD = "/frequenz.api.microgrid.v1alpha18.Microgrid/ReceiveElectricalComponentTelemetryStream"


def site_doc(groups: int) -> dict[str, Any]:
    """`controller.lab.bench.site_dict` (``groups`` ±10 kW inverter+battery pairs behind
    the grid meter, 2*groups + 2 components) with a noisy 200 kW load on the grid meter,
    frequency noise, and a ±1 kW exclusion band on every inverter, so that frames
    change from one to the next and carry exclusion bounds."""
    doc = site_dict(groups)
    for comp in doc["component"]:
        if comp["category"] == "inverter":
            comp["exclusion_w"] = 1_000.0
        elif comp["category"] == "meter":
            comp["load_share"] = 1.0
    doc["load"] = {"base_w": 200_000.0, "noise_w": 2_000.0}
    doc["frequency"]["noise_hz"] = 0.01
    return doc


def stream_ids(groups: int) -> list[int]:
    """The 100 component ids streamed: all inverters and batteries."""
    return [1000 + k for k in range(2 * groups)][:N_STREAMS]


_SIM_SCRIPT = """
import asyncio, json, sys
from simulator.config import site_from_dict
from simulator.server import SimulatorServer
doc, hz = json.loads(sys.argv[1]), float(sys.argv[2])
async def main():
    async with SimulatorServer(site_from_dict(doc, "bench"), telemetry_hz=hz) as srv:
        print(srv.port, flush=True)
        await asyncio.Event().wait()
import uvloop
uvloop.run(main())
"""

_BARE_SCRIPT = """
import asyncio, json, sys
import grpc, grpc.aio
from simulator.config import site_from_dict
from simulator.server import SimulatorServer
srv = SimulatorServer(site_from_dict(json.loads(sys.argv[1]), "bench"))
data = srv.telemetry.frame_of(1000)
async def stream(request, context):
    while True:
        yield data
async def main():
    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(
        stream, request_deserializer=lambda b: b, response_serializer=lambda b: b
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "frequenz.api.microgrid.v1alpha18.Microgrid",
        {"ReceiveElectricalComponentTelemetryStream": handler},
    ),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()
import uvloop
uvloop.run(main())
"""


class _ServerProcess:
    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _count(port: int, ids: list[int], warmup_s: float, window_s: float) -> int:
    """Open one stream per id, count raw messages received during ``window_s``."""
    counts = [0] * len(ids)
    flowing = asyncio.Event()  # every stream has delivered a message
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_stream(
            METHOD,
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=None,
        )

        async def one(i: int, cid: int) -> None:
            req = mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(
                electrical_component_id=cid
            )
            async for _ in method(req):
                counts[i] += 1
                if counts[i] == 1 and min(counts) > 0:
                    flowing.set()

        tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(ids)]
        try:
            # The window starts once every stream is flowing (a loaded machine may
            # take longer than the warm-up to open them), then after the warm-up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flowing.wait(), 30.0)
            await asyncio.sleep(warmup_s)
            start = sum(counts)
            await asyncio.sleep(window_s)
            total = sum(counts) - start
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return total


def _throughput(benchmark: Any, script: str, args: list[str]) -> None:
    quick = bool(getattr(benchmark, "disabled", False))
    warmup, window = (0.2, 0.3) if quick else (1.0, 3.0)
    groups = N_STREAMS // 2
    server = _ServerProcess(script, json.dumps(site_doc(groups)), *args)
    try:
        result: dict[str, float] = {}

        def run() -> None:
            total = asyncio.run(_count(server.port, stream_ids(groups), warmup, window))
            result["msgs_per_s"] = total / window

        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        server.close()
    msgs = result["msgs_per_s"]
    benchmark.extra_info["streams"] = N_STREAMS
    benchmark.extra_info["msgs_per_s"] = round(msgs)
    # inverters carry len(INVERTER_METRICS) samples, batteries 6: average them
    per_msg = (len(INVERTER_METRICS) + 6) / 2
    benchmark.extra_info["samples_per_s"] = round(msgs * per_msg)
    print(f"\n{benchmark.name}: {msgs:,.0f} msg/s, ~{msgs * per_msg:,.0f} samples/s")
    assert msgs > 0


@pytest.mark.parametrize("telemetry_hz", [10.0, 100.0, 1000.0])
def test_simulator_telemetry_throughput_100_streams(benchmark: Any, telemetry_hz: float) -> None:
    """Messages/s the simulator delivers to 100 component streams at a given rate."""
    benchmark.extra_info["telemetry_hz"] = telemetry_hz
    benchmark.extra_info["requested_msgs_per_s"] = telemetry_hz * N_STREAMS
    _throughput(benchmark, _SIM_SCRIPT, [str(telemetry_hz)])


def test_bare_grpc_aio_prebuilt_message_100_streams(benchmark: Any) -> None:
    """The floor: a bare grpc.aio server streaming one pre-built message flat out."""
    _throughput(benchmark, _BARE_SCRIPT, [])


def _big_site() -> SiteConfig:
    return site_from_dict(site_doc(N_STREAMS // 2), "bench")


def test_publish_100_components(benchmark: Any) -> None:
    """One telemetry generation for 100 subscribed components (build + serialise).

    One phase, so one publication is the whole generation."""
    srv = SimulatorServer(_big_site(), telemetry_phases=1)
    for cid in stream_ids(N_STREAMS // 2):
        srv.telemetry.note_waiting(srv.telemetry.stream_key(cid))
    benchmark(srv.telemetry.publish, 0.0)
    benchmark.extra_info["messages_per_call"] = N_STREAMS


@pytest.mark.parametrize("site_name", ["default", "100-components"])
def test_physics_step(benchmark: Any, site_name: str) -> None:
    """One vectorised physics sub-step."""
    site = load_site() if site_name == "default" else _big_site()
    phys = SitePhysics(site, seed=0, max_step_s=0.02)
    benchmark(phys.step, 0.02)


def test_physics_replay_month_15min(benchmark: Any) -> None:
    """A month of 15-min steps on a virtual clock (max_step_s = 900)."""
    phys = SitePhysics(load_site(), seed=0, max_step_s=900.0)

    def month() -> None:
        for _ in range(30 * 96):
            phys.step(900.0)

    start = time.perf_counter()
    benchmark.pedantic(month, rounds=1, iterations=1)
    benchmark.extra_info["wall_s"] = round(time.perf_counter() - start, 3)
