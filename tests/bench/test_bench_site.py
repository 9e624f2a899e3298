"""``gridloop bench site``: the step analysis, and the command against the simulator.

The analysis is checked on made-up traces with known delay, ramp, noise and
clock offset. The command runs as a process (`ENTRY`) against a `SimulatorServer`
of this test over real gRPC on loopback. No wall-clock thresholds: measured
times are compared with the site file's `response_delay_s` and `ramp_w_per_s`
within one telemetry period (plus one physics tick of the simulator), and
injected faults are checked by their effect (a failure counted, a gap at
least as long as the pause).
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import ENTRY, wait_until

from actors import MicrogridApiClient
from controller.lab.bench import site_dict
from controller.lab.site_steps import (
    analyse_step,
    clock_offset,
    grid_code,
    sample_times,
    telemetry_stats,
)
from simulator.config import site_from_dict
from simulator.server import SimulatorServer

HANG_GUARD_S = 120.0
PERIOD_S = 0.1  # the simulator's telemetry period (10 Hz)
PHYSICS_HZ = 200.0
STEP_W = 4000.0
# inverter id -> (response_delay_s, ramp_w_per_s): three different inverters
INVERTERS = {1000: (0.1, 100_000.0), 1002: (0.3, 40_000.0), 1004: (0.5, 20_000.0)}


# ---------------------------------------------------------------------- analysis


def _trace(delay_s: float, ramp: float, target: float, offset_ns: int, noise: float = 0.0
           ) -> tuple[Any, Any, Any, int]:
    """Samples every 100 ms from t=0; command at 1.0 s; delivery delay 3 ms + site offset."""
    rng = np.random.default_rng(1)
    t = np.arange(0, 40) * 0.1
    p = np.clip((t - 1.0 - delay_s) * ramp, 0.0, None)
    p = np.minimum(p, abs(target)) * np.sign(target) + rng.normal(0.0, noise, t.size)
    ts = (t * 1e9).astype(np.int64) + 1_700_000_000_000_000_000  # site wall clock
    rx = (t * 1e9).astype(np.int64) + 3_000_000  # client monotonic: 3 ms later
    mono_to_wall = 1_700_000_000_000_000_000 + offset_ns
    return rx, ts, p, mono_to_wall


def test_clock_offset_is_estimated_from_the_fastest_sample_and_mapped_back() -> None:
    rx, ts, _p, m2w = _trace(0.2, 10_000.0, 1000.0, offset_ns=250_000_000)
    rx = rx.copy()
    rx[5:] += 7_000_000  # later samples arrive slower: the minimum decides
    off = clock_offset([rx], [ts], m2w)
    assert off.offset_ns == 250_000_000 + 3_000_000
    assert off.spread_p99_ms == pytest.approx(7.0)
    at = sample_times(rx, ts, off, m2w)
    assert (at <= rx).all()
    assert at[0] == rx[0]  # the fastest sample maps onto its own receive time
    # Without timestamps, receive times are used and said so.
    none = clock_offset([rx], [np.zeros_like(ts)], m2w)
    assert none.source == "receive times"
    assert (sample_times(rx, np.zeros_like(ts), none, m2w) == rx).all()


@pytest.mark.parametrize("target", [2000.0, -2000.0])
def test_step_figures_match_a_known_delay_and_ramp(target: float) -> None:
    rx, ts, p, m2w = _trace(0.35, 5000.0, target, offset_ns=-40_000_000)
    rx = rx.copy()
    rx[12:] += 7_000_000  # samples from t = 1.2 s on arrive 7 ms slower
    off = clock_offset([rx], [ts], m2w)
    at = sample_times(rx, ts, off, m2w)
    f = analyse_step(at, rx, p, command_ns=1_000_000_000, end_ns=3_900_000_000,
                     target_w=target, pre_window_ns=500_000_000)
    # Sampled every 100 ms, mapped 3 ms late (the fastest delivery): the first sample
    # past 2 % of the step is t = 1.4 s (250 W), 90 % and full (98 %) t = 1.8 s.
    assert f.dead_time_ms == pytest.approx(403.0, abs=0.01)
    assert f.dead_time_rx_ms == pytest.approx(410.0, abs=0.01)  # received 7 ms later still
    assert f.t90_ms == pytest.approx(803.0, abs=0.01)
    assert f.t_full_ms == pytest.approx(803.0, abs=0.01)
    assert f.noise_w == 0.0
    assert f.baseline_w == 0.0
    assert f.overshoot_pct == 0.0
    assert f.steady_state_error_pct == pytest.approx(0.0)


def test_noise_widens_the_band_and_no_response_is_nan() -> None:
    rx, ts, p, m2w = _trace(0.2, 10_000.0, 1000.0, offset_ns=0, noise=40.0)
    off = clock_offset([rx], [ts], m2w)
    at = sample_times(rx, ts, off, m2w)
    f = analyse_step(at, rx, p, 1_000_000_000, 3_900_000_000, 1000.0, 900_000_000)
    assert f.threshold_w == pytest.approx(3.0 * f.noise_w)  # 3 sigma > 2 % of 1 kW
    assert f.threshold_w > 20.0
    flat = np.zeros_like(p)
    g = analyse_step(at, rx, flat, 1_000_000_000, 3_900_000_000, 1000.0, 500_000_000)
    assert math.isnan(g.dead_time_ms)
    assert math.isnan(g.t90_ms)
    assert g.steady_state_error_pct == pytest.approx(100.0)


def test_overshoot_and_telemetry_stats_and_grid_code() -> None:
    rx, ts, p, _m2w = _trace(0.1, 100_000.0, 1000.0, offset_ns=0)
    p = p.copy()
    p[15] = 1200.0  # one sample 20 % beyond the target
    f = analyse_step(rx, rx, p, 1_000_000_000, 3_900_000_000, 1000.0, 500_000_000)
    assert f.overshoot_pct == pytest.approx(20.0)
    rx2 = rx.copy()
    rx2[20:] += 1_000_000_000  # a stalled stream: one gap of 1.1 s
    stats = telemetry_stats(rx2, ts)
    assert stats["period_ms"] == pytest.approx(100.0)
    assert stats["max_gap_ms"] == pytest.approx(1100.0)
    assert grid_code(400.0, 900.0)["start"] == "pass"
    verdict = grid_code(math.inf, 1001.0)
    assert verdict["start"] == "fail"
    assert verdict["full"] == "fail"
    assert grid_code(None, None)["start"] is None


# ---------------------------------------------------------------------- the command


def _site(faults: dict[str, Any] | None = None) -> Any:
    data = site_dict(len(INVERTERS))
    for comp in data["component"]:
        if comp["id"] in INVERTERS:
            comp["response_delay_s"], comp["ramp_w_per_s"] = INVERTERS[comp["id"]]
    if faults:
        data["faults"] = faults
    return site_from_dict(data, source="<bench site test>")


async def _bench(srv: SimulatorServer, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "bench", "site", "--api", f"grpc://127.0.0.1:{srv.port}",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD_S)
    assert "Traceback" not in err.decode(), err.decode()
    return out.decode(), err.decode()


def _fleet_soc(srv: SimulatorServer) -> float:
    ph = srv.physics
    return float(np.average(ph.battery_soc_pct, weights=ph.battery_capacity_wh))


def _at_rest(srv: SimulatorServer) -> None:
    for cid in INVERTERS:
        assert srv.physics.inverter_power_w[srv.physics.inverter_row(cid)] == 0.0, cid
        last = srv.stats()["per_component"].get(str(cid), {}).get("last_setpoint_w")
        assert last in (None, 0.0), (cid, last)


@pytest.mark.integration
@pytest.mark.slow
async def test_dead_time_and_t90_match_the_site_file_and_the_site_is_left_as_found(
    sim_factory: Any, tmp_path: Path
) -> None:
    srv: SimulatorServer = await sim_factory(_site(), physics_hz=PHYSICS_HZ)
    soc0 = _fleet_soc(srv)
    out_json, png = tmp_path / "site.json", tmp_path / "site.png"
    proc = await _bench(srv, "--step-w", str(STEP_W), "--steps", "2", "--hold", "1.2",
                        "--json", str(out_json), "--report", str(png))
    _out, err = await _finish(proc)
    assert proc.returncode == 0, err
    data = json.loads(out_json.read_text())
    tick_ms = 1e3 / PHYSICS_HZ
    for cid, (delay_s, ramp) in INVERTERS.items():
        e = data["inverters"][str(cid)]
        assert e["steps"] == 2
        assert e["responded"] == 2
        assert set(e["ack_ms"]) == {"p50", "p99", "max"}
        # The response shows at 2 % of the step, T90 at 90 %: when the site file says,
        # seen within one telemetry period (plus one physics tick of the simulator).
        for key, share in (("dead_time_ms", 0.02), ("t90_ms", 0.9)):
            expected = (delay_s + share * STEP_W / ramp) * 1e3
            got = e[key]["p50"]
            assert expected - tick_ms <= got <= expected + PERIOD_S * 1e3 + tick_ms, (cid, key)
        assert e["telemetry"]["period_ms"] == pytest.approx(PERIOD_S * 1e3, rel=0.1)
        assert e["overshoot_pct"] == 0.0
        assert e["steady_state_error_pct"] < 1.0
    assert data["fleet"]["inverters"] == sorted(INVERTERS)
    assert data["fleet"]["steps"] == 2
    assert data["clock"]["figures_use"] == "sample timestamps"
    assert data["zero_confirmed"] is True
    assert abs(data["soc"]["end_pct"] - data["soc"]["start_pct"]) <= 0.5
    assert abs(_fleet_soc(srv) - soc0) <= 0.5
    _at_rest(srv)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
@pytest.mark.slow
async def test_injected_faults_show_up_in_the_report_and_the_run_completes(
    sim_factory: Any, tmp_path: Path
) -> None:
    faults = {"seed": 3, "setpoint_delay_prob": 1.0, "setpoint_delay_s": 0.2,
              "setpoint_reject_prob": 0.3}
    srv: SimulatorServer = await sim_factory(_site(faults), physics_hz=PHYSICS_HZ)
    out_json = tmp_path / "faults.json"
    proc = await _bench(srv, "--inverters", "1000", "--step-w", str(STEP_W), "--steps", "4",
                        "--hold", "1.0", "--json", str(out_json))

    async def stall() -> None:  # the inverter's telemetry goes silent for 1 s mid-run
        await wait_until(lambda: srv.stats()["setpoints_accepted"] >= 2, HANG_GUARD_S,
                         "the bench's first step", poll_s=0.02)
        srv.pause_telemetry(1000)
        await asyncio.sleep(1.0)
        srv.pause_telemetry(1000, paused=False)

    staller = asyncio.create_task(stall())
    _out, err = await _finish(proc)
    await staller
    assert proc.returncode == 0, err
    e = json.loads(out_json.read_text())["inverters"]["1000"]
    assert e["ack_ms"]["p50"] >= 200.0  # every call held 0.2 s by the server
    assert e["setpoints_failed"].get("UNAVAILABLE", 0) >= 1  # rejected steps are counted
    assert e["responded"] <= e["steps"] - e["setpoints_failed"]["UNAVAILABLE"]
    assert e["telemetry"]["max_gap_ms"] >= 1000.0  # the stall
    assert srv.stats()["faults"]["injected"]["setpoint_reject"] >= 1


@pytest.mark.integration
async def test_refuses_to_start_when_another_client_holds_a_setpoint(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(_site(), physics_hz=PHYSICS_HZ)
    other = MicrogridApiClient(f"grpc://127.0.0.1:{srv.port}")
    try:
        await other.set_power(1002, 3000.0, lifetime_s=60)
        row = srv.physics.inverter_row(1002)
        await wait_until(lambda: srv.physics.inverter_power_w[row] == 3000.0, HANG_GUARD_S,
                         "the other client's setpoint in effect")
        proc = await _bench(srv, "--steps", "2", "--hold", "0.5")
        _out, err = await _finish(proc)
    finally:
        await other.close()
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "inverter 1002 runs at 3000 W" in lines[0]
    assert "another client" in lines[0]
    assert "--force" in lines[0]
    assert srv.stats()["setpoints_received"] == 1  # the other client's only


@pytest.mark.integration
async def test_refuses_to_start_when_a_component_reports_an_error(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(_site(), physics_hz=PHYSICS_HZ)
    srv.physics.inject_error(1005)  # the battery behind inverter 1004
    proc = await _bench(srv, "--steps", "2", "--hold", "0.5", "--force")
    _out, err = await _finish(proc)
    assert proc.returncode == 2, err
    assert "component 1005 reports an error state" in err
    assert srv.stats()["setpoints_received"] == 0


@pytest.mark.integration
async def test_sigterm_mid_run_sends_0_w_to_the_moved_inverters(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(_site(), physics_hz=PHYSICS_HZ)

    def moved() -> bool:
        per = srv.stats()["per_component"]
        return any(per.get(str(c), {}).get("last_setpoint_w") not in (None, 0.0)
                   for c in INVERTERS)

    proc = await _bench(srv, "--steps", "4", "--hold", "5")
    await wait_until(moved, HANG_GUARD_S, "a step in effect", poll_s=0.02)
    proc.send_signal(signal.SIGTERM)
    _out, err = await _finish(proc)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "stopped by a signal; 0 W confirmed by inverters 1000" in lines[0]
    per = srv.stats()["per_component"]
    assert per["1000"]["last_setpoint_w"] == 0.0


@pytest.mark.integration
@pytest.mark.slow
async def test_another_client_overriding_a_step_ends_the_run_with_0_w_to_the_others(
    sim_factory: Any,
) -> None:
    srv: SimulatorServer = await sim_factory(_site(), physics_hz=PHYSICS_HZ)
    per = lambda: srv.stats()["per_component"]  # noqa: E731
    other = MicrogridApiClient(f"grpc://127.0.0.1:{srv.port}")
    proc = await _bench(srv, "--inverters", "1000,1002", "--steps", "2", "--hold", "1.5")
    try:
        await wait_until(lambda: per().get("1002", {}).get("last_setpoint_w") not in (None, 0.0),
                         HANG_GUARD_S, "the bench's step on 1002", poll_s=0.01)
        await other.set_power(1002, 1500.0, lifetime_s=60)  # overrides ours
        _out, err = await _finish(proc)
    finally:
        await other.close()
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "another client controls this site" in lines[0]
    # 0 W went to the inverter still holding ours, none to the other client's.
    assert "0 W confirmed by inverters 1000; inverters 1002 left to the client" in lines[0]
    assert per()["1002"]["last_setpoint_w"] == 1500.0
    assert per()["1000"]["last_setpoint_w"] == 0.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--steps", "3"], "--steps = '3': must be even"),
        (["--inverters", "a,b"], "--inverters = 'a,b'"),
        (["--step-w", "-5"], "--step-w = '-5'"),
        (["--json", "/nonexistent/dir/x.json"], "--json = '/nonexistent/dir/x.json'"),
        (["--api-version", "v9"], "--api-version = 'v9'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    import subprocess

    res = subprocess.run(
        [sys.executable, "-c", ENTRY, "bench", "site", "--api", "grpc://127.0.0.1:1", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert needle in lines[0]
