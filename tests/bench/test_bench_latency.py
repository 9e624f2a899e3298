"""``gridloop bench latency``: the probe, the analysis and the command end to end.

No wall-clock thresholds: the numbers are checked for structure, sign,
finiteness and order (first ≤ last), never against a target.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as pb2_grpc

from controller.lab.bench import (
    METER_ID,
    STEP_W,
    LatencyProgress,
    inverter_ids,
    site_dict,
    step_latencies,
    summarise,
)
from simulator.config import site_from_dict
from simulator.server import LatencyProbe

ROOT = Path(__file__).resolve().parents[2]
FREQ = metrics_pb2.Metric.METRIC_AC_FREQUENCY


def _record(steps: list[tuple[float, int]], setpoints: list[tuple[int, int, float]]) -> Any:
    return {
        "steps": [{"label": lbl, "marked_ns": t - 10, "emitted_ns": t} for lbl, t in steps],
        "setpoints": [list(s) for s in setpoints],
    }


def test_step_latencies_first_and_last_answer_per_step() -> None:
    rec = _record(
        [(0.3, 1_000_000), (-0.3, 100_000_000), (0.3, 200_000_000)],
        [
            (101_000_000, 1000, -STEP_W),  # step 1: 1 ms
            (102_000_000, 1002, 0.0),  # wrong sign/size: ignored
            (104_000_000, 1002, -STEP_W),  # step 1: 4 ms (last)
            (150_000_000, 1000, -STEP_W),  # a renewal: not the first answer
            (203_000_000, 1000, STEP_W),  # step 2: only one of two inverters
        ],
    )
    steps = step_latencies(rec, [1000, 1002], skip=1)
    assert [s["answered"] for s in steps] == [2, 1]
    assert steps[0]["first_ms"] == pytest.approx(1.0)
    assert steps[0]["last_ms"] == pytest.approx(4.0)
    assert steps[1]["first_ms"] == pytest.approx(3.0)
    assert math.isnan(steps[1]["last_ms"])  # incomplete: no "last"
    summary = summarise(steps, 2)
    assert summary["events"] == 2
    assert summary["events_complete"] == 1
    assert summary["last_setpoint_ms"]["max"] == pytest.approx(4.0)


def test_step_latencies_answer_after_next_step_does_not_count() -> None:
    rec = _record([(0.3, 0), (-0.3, 10_000_000), (0.3, 20_000_000)],
                  [(25_000_000, 1000, -STEP_W)])  # arrives after step 2's emission
    steps = step_latencies(rec, [1000], skip=1)
    assert steps[0]["answered"] == 0
    assert math.isnan(steps[0]["first_ms"])


def test_site_dict_is_a_valid_site() -> None:
    site = site_from_dict(site_dict(3))
    ids = {c.id for c in site.components}
    assert set(inverter_ids(3)) <= ids
    assert METER_ID in ids


@pytest.mark.integration
async def test_probe_records_emission_of_the_step_and_setpoint_arrivals(sim_factory: Any) -> None:
    srv = await sim_factory(site_from_dict(site_dict(2)), telemetry_hz=20.0)
    probe = LatencyProbe(METER_ID)
    srv.latency_probe = probe
    async with grpc.aio.insecure_channel(srv.address) as channel:
        stub = pb2_grpc.MicrogridStub(channel)
        req = pb2.ReceiveElectricalComponentTelemetryStreamRequest(
            electrical_component_id=METER_ID,
            filter=pb2.ReceiveElectricalComponentTelemetryStreamRequest.ComponentTelemetryStreamFilter(
                metrics=[FREQ]
            ),
        )
        stream = stub.ReceiveElectricalComponentTelemetryStream(req)
        await stream.read()  # subscribed
        srv.physics.nominal_hz = srv.physics.frequency_hz = 50.3
        probe.mark_step(0.3, srv.publications)
        assert probe.steps[0]["emitted_ns"] is None
        async with asyncio.timeout(10):
            while True:  # frames until the step shows
                msg: Any = await stream.read()
                (sample,) = [s for s in msg.telemetry.metric_samples if s.metric == FREQ]
                if sample.value.simple_metric.value > 50.2:
                    break
        stream.cancel()
        emitted = probe.steps[0]["emitted_ns"]
        assert emitted is not None
        assert emitted >= probe.steps[0]["marked_ns"]
        call = stub.SetElectricalComponentPower(
            pb2.SetElectricalComponentPowerRequest(
                electrical_component_id=1000, power_type=pb2.POWER_TYPE_ACTIVE, power=STEP_W,
                request_lifetime=60,
            )
        )
        await call.read()
        call.cancel()
    ((t, cid, power),) = probe.setpoints
    assert (cid, power) == (1000, STEP_W)
    assert t > emitted
    out = json.loads(json.dumps(probe.to_json()))
    assert out["steps"][0]["label"] == 0.3


def test_bad_flag_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", "bench", "latency", "--inverters", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "--inverters" in proc.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_bench_latency_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "lat.json"
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", "bench", "latency", "--inverters", "10",
         "--events", "3", "--interval", "0.5", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gridloop" in proc.stdout
    data = json.loads(out.read_text())
    assert data["inverters"] == 10
    assert data["events"] == 3
    results = data["results"]
    assert set(results) == {"gridloop", "floor", "floor+streams", "sdk"}
    for name in ("gridloop", "floor", "floor+streams"):
        entry = results[name]
        assert entry["events"] == 3
        assert entry["events_complete"] == 3, entry["steps"]
        first, last = entry["first_setpoint_ms"], entry["last_setpoint_ms"]
        for stat in ("p50", "p99", "max"):
            assert math.isfinite(first[stat])
            assert math.isfinite(last[stat])
            assert first[stat] > 0
            assert first[stat] <= last[stat]
        for step in entry["steps"]:
            assert step["answered"] == 10
            assert 0 < step["first_ms"] <= step["last_ms"]
        assert entry["cpu_ms_per_cycle"] > 0
    sdk = results["sdk"]
    if sdk is not None:  # installed and ran: same structure
        assert sdk["first_setpoint_ms"]["p50"] <= sdk["last_setpoint_ms"]["p50"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("version", ["v1"])  # v1alpha19: the same wire as v1alpha18
def test_bench_latency_in_another_api_version(tmp_path: Path, version: str) -> None:
    # The simulator child serves only `version`: a client speaking another would
    # get UNIMPLEMENTED and answer no step.
    out = tmp_path / "lat.json"
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", "bench", "latency", "--inverters", "4",
         "--events", "2", "--interval", "0.5", "--api-version", version, "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Microgrid API {version}" in proc.stdout
    data = json.loads(out.read_text())
    assert data["api_version"] == version
    results = data["results"]
    for name in ("gridloop", "floor", "floor+streams"):
        assert results[name]["events_complete"] == 2, results[name]["steps"]
    assert results["sdk"] is None  # the SDK peer speaks v1alpha18 only
    assert any("v1alpha18 only" in note for note in data["notes"])


def test_an_unknown_api_version_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", "bench", "latency", "--inverters", "2",
         "--api-version", "v3"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "--api-version = 'v3': must be one of v1alpha19, v1alpha18, v1" in proc.stderr


class _Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_updating_line() -> None:
    out = _Terminal()
    with LatencyProgress(3, file=out) as progress:
        progress.client_started("gridloop")
        progress.event_done(1)
        progress.event_done(2)
        shown = out.getvalue()
        progress.client_ended()
    assert "gridloop" in shown
    assert "2/3" in shown
    assert "events" in shown
    assert "left" in shown
    assert "gridloop bench latency:" not in out.getvalue()  # no log lines on a terminal


def test_progress_elsewhere_is_a_line_per_client_and_every_tenth() -> None:
    out = io.StringIO()
    with LatencyProgress(20, file=out) as progress:
        progress.client_started("floor")
        for k in range(1, 21):
            progress.event_done(k)
        progress.client_ended()
        progress.client_started("sdk")
        progress.client_ended("frequenz-sdk not installed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 9 + 1 + 1, lines  # events 2, 4, ..., 18; the end; sdk
    assert lines[0].startswith("gridloop bench latency: floor: event 2/20, ")
    assert lines[0].endswith(" left")
    assert lines[9].startswith("gridloop bench latency: floor: 20/20 events in ")
    assert lines[10] == "gridloop bench latency: sdk: not run (frequenz-sdk not installed)"


@pytest.mark.integration
def test_bench_latency_reports_progress_on_stderr_only(tmp_path: Path) -> None:
    """Not on a terminal: a line per client on stderr; stdout is the table alone."""
    out = tmp_path / "lat.json"
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", "bench", "latency", "--inverters", "1",
         "--events", "1", "--interval", "0.1", "--clients", "floor,floor+streams",
         "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert any(line.startswith("gridloop bench latency: floor: 1/1 events in ") for line in lines)
    assert any(
        line.startswith("gridloop bench latency: floor+streams: 1/1 events in ") for line in lines
    )
    assert "gridloop bench latency" not in proc.stdout
    assert "event → setpoint latency" in proc.stdout
    assert set(json.loads(out.read_text())["results"]) == {"floor", "floor+streams"}
