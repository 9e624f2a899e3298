"""Cost of fault injection in the simulator's hot path.

* ``test_publish_100_components_faults``: one telemetry generation for 100
  subscribed components with fault injection off, on (the soak rates, no
  episode running) and with every component in a ``bad_metric`` episode (the
  worst case: every frame is copied, corrupted and re-serialised).
* ``test_fault_tick``: one fault-scheduler tick (end due episodes, inject due
  ones) at the soak rates on the 100-component site, time advancing 1 s per tick.
* ``test_stats_with_1000_episodes``: `SimulatorServer.stats` with a full
  episode list (what ``--stats-interval`` pays per write).

Run: ``/work/venv/bin/pytest benchmarks/bench_simulator_faults.py -s``
(CI smoke: add ``--benchmark-disable``).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from controller.lab.bench import site_dict
from simulator.config import FaultConfig, SiteConfig, load_site, site_from_dict
from simulator.server import SimulatorServer

N_GROUPS = 50


def _big_site() -> SiteConfig:
    """50 inverter + battery pairs (100 streamed components) below a grid meter."""
    return site_from_dict(site_dict(N_GROUPS), source="<bench site>")


def _soak_faults() -> FaultConfig:
    ref = resources.files("simulator.sites").joinpath("soak.toml")
    return load_site(Path(str(ref))).faults


def _subscribed(faults: FaultConfig) -> SimulatorServer:
    srv = SimulatorServer(_big_site(), faults=faults, telemetry_phases=1)  # 1 publish = all
    for k in range(2 * N_GROUPS):
        cid = 1000 + k
        srv.telemetry.note_waiting(srv.telemetry.stream_key(cid))
    return srv


@pytest.mark.parametrize("mode", ["off", "soak", "all-bad-metric"])
def test_publish_100_components_faults(benchmark: Any, mode: str) -> None:
    """One telemetry generation for 100 components, by fault mode."""
    srv = _subscribed(FaultConfig() if mode == "off" else _soak_faults())
    if mode == "all-bad-metric":
        for k in range(2 * N_GROUPS):
            srv.fault_driver.bad_metric[1000 + k] = "nan"
    benchmark(srv.telemetry.publish, 0.0)
    benchmark.extra_info["messages_per_call"] = 2 * N_GROUPS
    assert len(srv.telemetry.frames(0)) == 2 * N_GROUPS


def test_fault_tick(benchmark: Any) -> None:
    """One scheduler tick at the soak rates (1 simulated s per tick)."""
    srv = _subscribed(_soak_faults())

    def tick() -> None:
        srv.physics.now_s += 1.0
        srv.fault_driver.run()

    benchmark(tick)
    stats = srv.stats()["faults"]
    benchmark.extra_info["episodes"] = sum(stats["injected"][k] for k in stats["summary"])


def test_stats_with_1000_episodes(benchmark: Any) -> None:
    """`stats()` plus JSON encoding with 1000 episodes in the list."""
    srv = _subscribed(FaultConfig(stream_end_per_h=1.0))
    for k in range(1000):
        ep = srv.fault_driver.ledger.open("stream_stall", 1000, (1000,), float(k), float(k))
        srv.fault_driver.ledger.close(ep, k + 1.0, k + 1.0)

    def encode() -> str:
        return json.dumps(srv.stats())

    text = benchmark(encode)
    assert len(json.loads(text)["faults"]["episodes"]) == 1000
