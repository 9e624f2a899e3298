"""Benchmark: power request → all setpoints acknowledged, next to the gRPC floor.

For N = 10, 100 and 1 000 battery inverters (a generated site of N 1:1
inverter/battery pairs, ±10 kW each, no exclusion band), the simulator runs in a
separate process (``python -m simulator``, telemetry at 1 Hz so 2 N telemetry
streams do not eat the client's CPU) and the client runs on uvloop. Measured per N:

* ``floor_unary``: N concurrent bare unary calls (GetMicrogrid) on one channel;
* ``floor_setpower``: N concurrent bare SetElectricalComponentPower calls (first
  response read), the same RPC dispatch makes, without any actor machinery;
* ``actors``: `Site.set_power(target)` with targets alternating so that every
  inverter's setpoint changes (no deadband skip): request → allocate → N calls →
  all ACCEPTED. Also reports the time to the first acknowledgement.

Run ``python benchmarks/bench_actors.py`` for a table (p50/p99/max, ms) or
``pytest benchmarks/bench_actors.py`` for pytest-benchmark (``--benchmark-disable``
runs each body once as a smoke test).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as pb2_grpc
from google.protobuf import empty_pb2

from actors import RuntimeOptions, Site
from controller.runtime.embedded import start_simulator_process

SIZES = (10, 100, 1000)
INV_W = 10_000.0


def site_toml(n: int) -> str:
    """A site with a grid meter, a load meter and `n` 1:1 battery pairs."""
    parts = [
        '[microgrid]\nid = 1\nname = "bench"\n',
        '[[component]]\nid = 1\ncategory = "grid"\n',
        '[[component]]\nid = 2\ncategory = "meter"\n',
        '[[component]]\nid = 3\ncategory = "meter"\nload_share = 1.0\n',
        "[[connection]]\nsource = 1\ndestination = 2\n",
        "[[connection]]\nsource = 2\ndestination = 3\n",
    ]
    for i in range(n):
        inv, bat = 1000 + 2 * i, 1001 + 2 * i
        parts.append(
            f'[[component]]\nid = {inv}\ncategory = "inverter"\ntype = "battery"\n'
            f"rated_lower_w = {-INV_W}\nrated_upper_w = {INV_W}\n"
            f'[[component]]\nid = {bat}\ncategory = "battery"\ncapacity_wh = 100000.0\n'
            f"soc_pct = 50.0\nmax_charge_w = {INV_W}\nmax_discharge_w = {INV_W}\n"
            f"[[connection]]\nsource = 2\ndestination = {inv}\n"
            f"[[connection]]\nsource = {inv}\ndestination = {bat}\n"
        )
    return "\n".join(parts)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


class Harness:
    """One simulator process, one event loop, one connected and running `Site`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / f"site_{n}.toml"
        path.write_text(site_toml(n))
        self.proc, address = start_simulator_process(
            ["--config", str(path), "--port", "0", "--telemetry-hz", "1"],
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.url = f"grpc://{address}"
        self.loop = _new_loop()
        self.options = RuntimeOptions(stale_after_s=10.0, call_timeout_s=30.0)
        self.site: Site = self.loop.run_until_complete(self._start())
        self._flip = False
        self.sent = 0
        self.failed = 0

    async def _start(self) -> Site:
        site = await Site.connect(self.url, options=self.options, api_version="v1alpha18")
        await site.__aenter__()
        deadline = time.monotonic() + 30
        while True:  # poll with a deadline until every component is fresh
            bad = list(site.stats().excluded.items())[:5]
            if not bad:
                return site
            if time.monotonic() > deadline:
                raise RuntimeError(f"components not healthy: {bad}")
            await asyncio.sleep(0.05)

    def _target(self) -> float:
        self._flip = not self._flip
        return self.n * (3_000.0 if self._flip else 5_000.0)

    def actors_once(self) -> tuple[float, float]:
        """One request → all acks; returns (all-acks ms, first-ack ms)."""
        out = self.loop.run_until_complete(self.site.set_power(self._target()))
        if out.sent == 0:
            raise RuntimeError(f"nothing dispatched: {out}")
        self.sent += out.sent
        self.failed += len(out.failed)
        first = self.site.dispatcher.last_first_ack_ns
        return out.latency_ms, (first - out.request_time_ns) / 1e6

    async def _floor_unary(self) -> None:
        stub = pb2_grpc.MicrogridStub(self.site.client.channel)  # the bare gRPC floor
        await asyncio.gather(
            *(stub.GetMicrogrid(empty_pb2.Empty(), timeout=30.0) for _ in range(self.n))
        )

    async def _floor_setpower(self) -> None:
        stub = pb2_grpc.MicrogridStub(self.site.client.channel)  # the bare gRPC floor
        self._floor_flip = not getattr(self, "_floor_flip", False)
        p = 3_000.0 if self._floor_flip else 5_000.0
        calls = [
            stub.SetElectricalComponentPower(
                pb2.SetElectricalComponentPowerRequest(
                    electrical_component_id=cid, power_type=pb2.POWER_TYPE_ACTIVE, power=p,
                    request_lifetime=60,
                ),
                timeout=30.0,
            )
            for cid in self.site.dispatcher.inverter_ids
        ]
        for c in calls:
            await c.read()
        for c in calls:
            c.cancel()

    def timed(self, fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter_ns()
        self.loop.run_until_complete(fn())
        return (time.perf_counter_ns() - t0) / 1e6

    def floor_unary_once(self) -> float:
        return self.timed(self._floor_unary)

    def floor_setpower_once(self) -> float:
        return self.timed(self._floor_setpower)

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.site.aclose())
            self.loop.close()
        finally:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._dir.cleanup()


@pytest.fixture(scope="module", params=SIZES, ids=[f"N{n}" for n in SIZES])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(request.param)
    yield h
    h.close()


def _rounds(n: int) -> int:
    return {10: 200, 100: 50, 1000: 10}[n]


def test_floor_unary(benchmark: Any, harness: Harness) -> None:
    benchmark.group = f"N={harness.n}"
    benchmark.pedantic(harness.floor_unary_once, rounds=_rounds(harness.n), warmup_rounds=2)


def test_floor_setpower(benchmark: Any, harness: Harness) -> None:
    benchmark.group = f"N={harness.n}"
    benchmark.pedantic(harness.floor_setpower_once, rounds=_rounds(harness.n), warmup_rounds=2)


def test_actors_request_to_all_acks(benchmark: Any, harness: Harness) -> None:
    benchmark.group = f"N={harness.n}"
    benchmark.pedantic(harness.actors_once, rounds=_rounds(harness.n), warmup_rounds=2)
    benchmark.extra_info["setpoints_failed"] = harness.site.stats().setpoints_failed


def _pct(xs: list[float]) -> str:
    a = np.asarray(xs)
    return f"{np.percentile(a, 50):8.2f} {np.percentile(a, 99):8.2f} {a.max():8.2f}"


def main() -> None:
    """Print p50 / p99 / max (ms) per N for the floors and the actor path."""
    rounds = int(os.environ.get("BENCH_ROUNDS", "0"))
    print(f"{'N':>5} {'path':<26} {'p50':>8} {'p99':>8} {'max':>8}   (ms)")
    for n in SIZES:
        h = Harness(n)
        try:
            r = rounds or _rounds(n) * 2
            # Floors first: bare setpoints would OVERRIDE the runtime's ones (which it
            # rightly counts as failures), so the actor path runs last.
            for _ in range(3):
                h.floor_unary_once()
                h.floor_setpower_once()
            fu = [h.floor_unary_once() for _ in range(r)]
            fs = [h.floor_setpower_once() for _ in range(r)]
            for _ in range(3):
                h.actors_once()
            ac = [h.actors_once() for _ in range(r)]
            print(f"{n:>5} {'floor: unary GetMicrogrid':<26} {_pct(fu)}")
            print(f"{n:>5} {'floor: bare SetPower':<26} {_pct(fs)}")
            print(f"{n:>5} {'actors: request->all acks':<26} {_pct([a for a, _ in ac])}")
            print(f"{n:>5} {'actors: request->1st ack':<26} {_pct([b for _, b in ac])}")
            print(f"{n:>5} actor setpoints sent {h.sent}, failed {h.failed}: "
                  f"{h.site.stats().setpoints_failed}")
            med = float(np.median([a for a, _ in ac]))
            print(
                f"{n:>5} ratio p50 actors/floor(unary) = {med / np.median(fu):.2f}"
                f", actors/floor(SetPower) = {med / np.median(fs):.2f}",
                flush=True,
            )
        finally:
            h.close()


if __name__ == "__main__":
    main()
