"""`gridloop run` when the server comes back as another site, or another client commands it.

Real gRPC on loopback: `gridloop run --api` as a process (or `run_service` in this
process) against a `SimulatorServer` of this test. Every wait ends on an event
(the process exits, a counter moves); `HANG_GUARD_S` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from testkit import ENTRY, wait_until

from actors import MicrogridApiClient
from controller.ops.dashboard import render_dashboard, summary_line
from controller.ops.metrics import MetricsExporter
from controller.runtime.config import load_config
from controller.runtime.records import CycleRecord
from controller.runtime.service import RunOptions, run_service
from controller.runtime.summary import EXIT_ANOTHER_CLIENT, EXIT_SITE_CHANGED
from simulator.config import SiteConfig, load_site
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

HANG_GUARD_S = 90.0
BATTERY_INVERTERS = (10, 20, 30, 31, 40)


async def _gridloop_run(url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", "--api", url, "--no-dashboard", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def procs() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """The `gridloop run` processes of a test; killed if a failing test left them running."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _lines(stderr: bytes, needle: str) -> list[str]:
    return [line for line in stderr.decode().splitlines() if needle in line]


async def test_run_stops_with_one_line_when_the_server_comes_back_as_another_site(
    sim_factory: Any,
    another_site: SiteConfig,
    tmp_path: Path,
    procs: list[asyncio.subprocess.Process],
) -> None:
    srv1: SimulatorServer = await sim_factory(load_site(None))
    port = srv1.port
    summary = tmp_path / "summary.json"
    proc = await _gridloop_run(
        f"grpc://127.0.0.1:{port}", "--duration", "600", "--summary-json", str(summary)
    )
    procs.append(proc)
    await wait_until(
        lambda: srv1.stats()["setpoints_accepted"] > 0,
        HANG_GUARD_S,
        "gridloop commanding srv1",
        poll_s=0.05,
    )
    await srv1.stop(grace=0)
    srv2: SimulatorServer = await sim_factory(another_site, port=port)
    out, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD_S)
    assert proc.returncode == EXIT_SITE_CHANGED, err.decode()
    assert "Traceback" not in err.decode()
    said = _lines(err, "site changed")
    assert len(said) == 1, err.decode()
    assert "microgrid id 1 → 2" in said[0]
    assert "component 10 was a battery inverter and is now a PV inverter" in said[0]
    # Nothing reached the new site: no setpoint, not even 0 W at the stop.
    assert srv2.stats()["setpoints_received"] == 0, srv2.stats()
    data = json.loads(summary.read_text())
    assert data["site_changed"].startswith("microgrid id 1 → 2")
    assert data["another_client"] is None
    assert "STOPPED" in out.decode()
    # The safe stop says the 0 W was withheld, never that it was confirmed.
    assert data["safe_stop_withheld"] == "site-changed"
    assert "0 W withheld from the" in out.decode()
    assert "0 W confirmed" not in out.decode()


async def test_two_gridloop_runs_on_one_site_the_overridden_one_stops_and_says_so(
    sim: SimulatorServer, tmp_path: Path, procs: list[asyncio.subprocess.Process]
) -> None:
    url = f"grpc://127.0.0.1:{sim.port}"
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        procs.append(
            await _gridloop_run(url, "--duration", "600", "--summary-json", str(path))
        )
    waits = [asyncio.create_task(p.communicate()) for p in procs]
    done, _ = await asyncio.wait(waits, timeout=HANG_GUARD_S, return_when=asyncio.FIRST_COMPLETED)
    assert done, "hang guard: neither run noticed the other"
    for p in procs:
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)  # the one still in control ends normally
    results = await asyncio.wait_for(asyncio.gather(*waits), HANG_GUARD_S)
    stopped = [i for i, p in enumerate(procs) if p.returncode == EXIT_ANOTHER_CLIENT]
    assert stopped, [
        (p.returncode, r[1].decode()[-2000:]) for p, r in zip(procs, results, strict=True)
    ]
    for i in stopped:
        err = results[i][1]
        assert "Traceback" not in err.decode()
        said = _lines(err, "another client controls this site")
        assert len(said) == 1, err.decode()  # one line, not one per setpoint
        assert "OVERRIDDEN" not in err.decode()
        data = json.loads(paths[i].read_text())
        assert data["another_client"].startswith("another client controls this site")
        assert sum(data["setpoints_overridden"].values()) >= 3
        assert data["site_changed"] is None
        assert "STOPPED" in results[i][0].decode()
    for i, p in enumerate(procs):
        assert p.returncode in (0, EXIT_ANOTHER_CLIENT), results[i][1].decode()


async def _other_client(url: str, stop: asyncio.Event) -> None:
    """Another controller: new setpoints on every battery inverter, all the time."""
    client = MicrogridApiClient(url)
    try:
        k = 0
        while not stop.is_set():
            k += 1
            power = 5_000.0 + 1_000.0 * (k % 2)
            await asyncio.gather(
                *(client.set_power(cid, power, 10) for cid in BATTERY_INVERTERS),
                return_exceptions=True,
            )
            await asyncio.sleep(0.02)
    finally:
        await client.close()


def _scrape(exporter: MetricsExporter) -> dict[str, float]:
    with urllib.request.urlopen(exporter.url, timeout=10) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


async def test_another_client_is_in_the_summary_the_dashboard_and_the_metrics(
    sim: SimulatorServer,
) -> None:
    url = f"grpc://127.0.0.1:{sim.port}"
    records: list[CycleRecord] = []
    stop_other = asyncio.Event()
    other = asyncio.create_task(_other_client(url, stop_other))
    try:
        summary = await asyncio.wait_for(
            run_service(load_config(None), RunOptions(api_url=url, duration_s=600.0),
                        [records.append]),
            HANG_GUARD_S,
        )
    finally:
        stop_other.set()
        await other
    assert summary.another_client is not None
    assert summary.exit_status == EXIT_ANOTHER_CLIENT
    assert sum(summary.setpoints_overridden.values()) >= 3
    assert "another client controls this site" in summary.render()
    last = records[-1]  # the record given to the observers when it stopped
    assert last.another_client == summary.another_client
    assert last.setpoints_overridden >= 3
    console = Console(record=True, width=160, file=io.StringIO(), color_system=None)
    console.print(render_dashboard(last, records))
    assert "ANOTHER CLIENT" in console.export_text()
    assert "STOPPED: another client controls the site" in summary_line(last)
    with MetricsExporter(0) as exporter:
        exporter.observe_cycle(last, 0.001)
        samples = _scrape(exporter)
    assert samples["gridloop_another_client"] == 1.0
    assert samples["gridloop_site_changed"] == 0.0
    assert samples["gridloop_setpoints_overridden_total"] == last.setpoints_overridden
