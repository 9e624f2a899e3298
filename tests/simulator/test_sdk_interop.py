"""The frequenz-sdk (battery pool, grid power) uses the simulator as a real site.

Runs in a subprocess because the SDK keeps process-global state
(``microgrid.initialize`` may only be called once per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.interop]

pytest.importorskip("frequenz.sdk", reason="frequenz-sdk (bench extra) not installed")

_SCRIPT = r"""
import asyncio, json, logging, math
from datetime import timedelta
from frequenz.quantities import Power
from frequenz.sdk import microgrid
from frequenz.sdk.timeseries import ResamplerConfig2
from simulator.config import load_site
from simulator.server import SimulatorServer

logging.basicConfig(level=logging.ERROR)

async def main():
    out = {}
    async with SimulatorServer(load_site(), telemetry_hz=10.0) as srv:
        await microgrid.initialize(
            f"grpc://{srv.address}",
            ResamplerConfig2(resampling_period=timedelta(seconds=0.2)),
        )
        pool = microgrid.new_battery_pool(priority=5)
        soc_rx = pool.soc.new_receiver()
        status_rx = pool.power_status.new_receiver()
        grid_rx = microgrid.grid().power.new_receiver()
        async with asyncio.timeout(30):
            out["soc_pct"] = (await soc_rx.receive()).value.base_value
            status = await status_rx.receive()
            out["inclusion_w"] = [status.bounds.lower.base_value, status.bounds.upper.base_value]
            while True:
                grid = (await grid_rx.receive()).value
                if grid is not None:
                    out["grid_w"] = grid.base_value
                    out["grid_truth_w"] = srv.physics.grid_power_w
                    break
            await pool.propose_power(Power.from_watts(-100_000.0))
            while abs(srv.physics.battery_inverter_power_w + 100_000.0) > 1_000.0:
                await asyncio.sleep(0.05)
        out["battery_inverter_w"] = srv.physics.battery_inverter_power_w
        out["stats"] = srv.stats()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_sdk_battery_pool_and_grid_power() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _SCRIPT],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # SoC: capacity-weighted over the pool's usable range, between 0 and 100
    assert 0.0 < out["soc_pct"] < 100.0
    # bounds: the sum of the battery inverters' ratings (100+50+60+60+80 kW)
    assert out["inclusion_w"] == pytest.approx([-350_000.0, 350_000.0])
    assert out["grid_w"] == pytest.approx(out["grid_truth_w"], rel=0.2)
    assert out["battery_inverter_w"] == pytest.approx(-100_000.0, abs=1_000.0)
    assert out["stats"]["setpoints_accepted"] >= 1
    assert out["stats"]["setpoints_out_of_bounds"] == 0
