"""The service: tick rule, `gridloop run` end to end, safe stop, and its one-line errors.

The end-to-end tests start `gridloop run` as a real process: it starts the
bundled simulator as its own child and controls it over gRPC on loopback.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.service import next_tick_s, periodic
from simulator.config import site_from_dict

ENTRY = "import sys; from controller.cli import main; sys.exit(main(sys.argv[1:]))"


def gridloop(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# ------------------------------------------------------------------ the tick rule


def test_next_tick_on_time_and_after_overruns() -> None:
    assert next_tick_s(10.0, 10.001, 0.2) == pytest.approx(10.2)
    # Woken early (sleep granularity): still the next grid point.
    assert next_tick_s(10.0, 9.999, 0.2) == pytest.approx(10.2)
    # A cycle that overran by 2.5 intervals skips the missed ticks, it does not queue them.
    assert next_tick_s(10.0, 10.5, 0.2) == pytest.approx(10.6)


@settings(max_examples=200, derandomize=True)
@given(
    scheduled=st.floats(0.0, 1e6),
    late=st.floats(0.0, 1e3),
    interval=st.floats(1e-3, 60.0),
)
def test_next_tick_is_on_the_grid_and_after_now(
    scheduled: float, late: float, interval: float
) -> None:
    now = scheduled + late
    nxt = next_tick_s(scheduled, now, interval)
    assert nxt > now - 1e-6 * max(1.0, now)
    assert nxt <= now + interval * (1 + 1e-6) + 1e-6
    k = (nxt - scheduled) / interval
    assert abs(k - round(k)) < 1e-6 * max(1.0, k)


async def test_periodic_ends_when_its_consumer_is_cancelled() -> None:
    ticks = 0
    enough = asyncio.Event()

    async def consume() -> None:
        nonlocal ticks
        async for _ in periodic(0.001):
            ticks += 1
            if ticks == 3:
                enough.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(enough.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


# ------------------------------------------------------------------ end to end


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.integration
@pytest.mark.slow
def test_gridloop_run_shaves_the_peak_and_follows_frequency(tmp_path: Path) -> None:
    # The default site's 30-minute scenario (load peak ~320 kW for 7 min, frequency
    # steps at 5 and 19 min) in 30 s of wall time.
    summary_path = tmp_path / "summary.json"
    proc = gridloop(
        "run", "--duration", "30", "--time-scale", "60", "--summary-json", str(summary_path),
        cwd=tmp_path,
    )
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        children |= {p.pid for p in _descendants(proc.pid)}
        time.sleep(0.5)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "peak import" in stdout

    s = json.loads(summary_path.read_text())
    limit = s["import_limit_w"]
    assert s["peak_import_w_uncontrolled"] > 1.15 * limit  # there was a peak to shave
    # 1-minute means cut most of the way to the limit. Not all the way: at 60x one
    # 200 ms control cycle is 12 s of site time, so the first cycle of a load step
    # alone lifts its 1-minute mean by ~20 % of the excess, more when this shared
    # machine delays cycles. How close control gets is measured deterministically
    # by `gridloop replay` (tests/replay), not here.
    excess = s["peak_import_w_uncontrolled"] - limit
    assert s["peak_import_w"] <= limit + 0.5 * excess
    assert s["fr_energy_required_wh"] > 1_000.0
    assert s["fr_energy_delivered_wh"] >= 0.9 * s["fr_energy_required_wh"]
    assert s["setpoints_sent"] > 100
    assert s["setpoints_failed"] == 0
    assert s["setpoints_out_of_bounds"] == 0
    rejected = s["simulator_stats"]["setpoints_rejected"]
    assert rejected == dict.fromkeys(rejected, 0)
    lat = s["dispatch_latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert 0 < s["soc_min_pct"] <= s["soc_max_pct"] < 100
    # The embedded simulator was a child, and it did not outlive the run.
    assert children
    assert not [pid for pid in children if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: a closed terminal
def test_sigterm_brings_the_fleet_to_zero_and_exits_cleanly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    summary_path = tmp_path / "summary.json"
    record = tmp_path / "run.csv"
    proc = gridloop(
        "run", "--duration", "300", "--summary-json", str(summary_path), "--record", str(record),
        cwd=tmp_path,
    )
    # Wait until setpoints flow (the recording reports them), then stop it like systemd would.
    deadline = time.monotonic() + 60
    sent = 0
    while time.monotonic() < deadline and proc.poll() is None and sent < 10:
        time.sleep(0.2)
        lines = record.read_text().splitlines() if record.exists() else []
        if len(lines) > 2:
            header = lines[0].split(",")
            last = lines[-2].split(",")  # the last line may still be being written
            sent = int(last[header.index("setpoints_sent")] or 0)
    assert sent >= 10, "no setpoints were sent"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "gridloop run:" in stdout  # the summary
    stats = json.loads(summary_path.read_text())["simulator_stats"]["per_component"]
    battery_inverters = ["10", "20", "30", "31", "40"]
    last = {cid: stats[cid].get("last_setpoint_w") for cid in battery_inverters if cid in stats}
    assert last, stats
    assert all(v == 0.0 for v in last.values()), last


# ------------------------------------------------------------------ one-line errors


def _one_line_error(proc: subprocess.Popen[str]) -> str:
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_bad_config_is_one_line_naming_file_field_and_value(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text("[peak_shaving]\nimport_limit_w = -5\n")
    line = _one_line_error(gridloop("run", "--config", str(cfg)))
    assert "site.toml" in line
    assert "peak_shaving.import_limit_w" in line
    assert "-5" in line


def test_unknown_config_key_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text("[peak_shaving]\nimport_limt_w = 5\n")
    line = _one_line_error(gridloop("run", "--config", str(cfg)))
    assert "import_limt_w" in line


def test_bad_flag_value_is_one_line() -> None:
    line = _one_line_error(gridloop("run", "--duration", "-3"))
    assert "--duration" in line
    assert "-3" in line


def test_unreachable_server_is_one_line() -> None:
    with socket_bound_and_closed() as port:
        line = _one_line_error(gridloop("run", "--api", f"grpc://127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in line


class socket_bound_and_closed:  # noqa: N801 - used like a function
    """A loopback port that nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def _site_without_batteries() -> dict[str, Any]:
    text = resources.files("simulator.sites").joinpath("default.toml").read_text()
    data = tomllib.loads(text)
    drop = {
        c["id"]
        for c in data["component"]
        if c["category"] == "battery"
        or (c["category"] == "inverter" and c.get("type") == "battery")
    }
    data["component"] = [c for c in data["component"] if c["id"] not in drop]
    data["connection"] = [
        c for c in data["connection"] if c["source"] not in drop and c["destination"] not in drop
    ]
    return data


@pytest.mark.integration
async def test_a_site_without_batteries_is_one_line(sim_factory: Any) -> None:
    srv = await sim_factory(site_from_dict(_site_without_batteries()))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", "--api", f"grpc://{srv.address}", "--duration", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "batter" in lines[0]
    assert srv.address in lines[0]


def test_summary_json_is_finite_numbers_or_null(tmp_path: Path) -> None:
    from controller.service import RunSummary

    summary = RunSummary(
        api_url="grpc://x:1", embedded=False, duration_s=1.0, simulated_s=1.0, time_scale=1.0,
        import_limit_w=None, peak_import_w_uncontrolled=math.nan, peak_import_w=-math.inf,
        peak_import_w_instant_uncontrolled=1.0, peak_import_w_instant=1.0,
        fr_energy_required_wh=0.0, fr_energy_delivered_wh=0.0, setpoints_sent=0,
        setpoints_failed=0, setpoints_failed_by_reason={}, setpoints_out_of_bounds=None,
        dispatch_latency_ms={"p50": math.nan, "p99": math.nan, "max": math.nan},
        soc_min_pct=math.inf, soc_max_pct=-math.inf, grid_samples=0, cycle_overruns=0,
        reconnects=0, excluded_at_end={},
    )
    text = json.dumps(summary.to_json(), allow_nan=False)  # raises on NaN/inf
    data = json.loads(text)
    assert data["peak_import_w"] is None
    assert data["dispatch_latency_ms"]["p99"] is None
    assert "n/a" in summary.render()
