"""The service: tick rule, `gridloop run` end to end, safe stop, and its one-line errors.

The end-to-end tests start `gridloop run` as a real process: it starts the
bundled simulator as its own child and controls it over gRPC on loopback.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
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
from testkit import ENTRY, assert_main_job_done, cancel_once

from controller.runtime.control import next_tick_s, periodic
from simulator.config import site_from_dict


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

    await cancel_once(consume(), enough, 10)


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
    assert s["api_version"] == "v1alpha19"  # the newest, found by itself
    assert_main_job_done(s)
    assert s["setpoints_out_of_bounds"] == 0
    rejected = s["simulator_stats"]["setpoints_rejected"]
    assert rejected == dict.fromkeys(rejected, 0)
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
        # Under `nohup` (a CI runner may be) SIGHUP arrives ignored, and gridloop rightly
        # leaves it so: the test's process gets the default disposition, as from a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
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
    from controller.runtime.summary import RunSummary

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


# ------------------------------------------------- bad input: one line, exit 2


def test_unparsable_api_url_is_one_line_naming_the_flag() -> None:
    line = _one_line_error(gridloop("run", "--api", "grpc://[::1:1"))
    assert "--api" in line
    assert "grpc://[::1:1" in line


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["--api-key", "top\nsecret"], {}, "--api-key"),
        (["--api-key", "topésecret"], {}, "--api-key"),
        ([], {"GRIDLOOP_API_KEY": "topésecret"}, "GRIDLOOP_API_KEY"),
    ],
)
def test_an_api_key_grpc_cannot_send_is_one_line_naming_its_source(
    args: list[str], env: dict[str, str], source: str
) -> None:
    proc = gridloop(
        "run", "--api", "grpc://127.0.0.1:1", "--duration", "1", *args,
        env={**os.environ, **env},
    )
    line = _one_line_error(proc)
    assert line.startswith(f"gridloop run: {source}: contains ")
    assert "printable ASCII" in line
    assert "secret" not in line


def test_too_slow_time_scale_is_one_line_naming_the_flag() -> None:
    line = _one_line_error(gridloop("run", "--time-scale", "1e-9", "--duration", "1"))
    assert "--time-scale = 1e-09: must be > 0.5" in line
    assert "renew_margin_s" not in line


def test_too_slow_time_scale_in_the_config_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[simulator]\ntime_scale = 0.25\n[run]\nduration_s = 1\n")
    line = _one_line_error(gridloop("run", "--config", str(cfg)))
    assert f"{cfg}: simulator.time_scale = 0.25: must be > 0.5" in line


def test_runtime_options_accept_just_above_half_speed_and_refuse_half() -> None:
    from actors import OptionsError
    from controller.runtime.config import GridloopConfig
    from controller.runtime.service import runtime_options

    config = GridloopConfig()
    opts = runtime_options(config, 0.51)
    assert 0 < opts.renew_margin_s < opts.setpoint_lifetime_s
    for slow in (0.5, 1e-9):
        with pytest.raises(OptionsError) as info:
            runtime_options(config, slow)
        assert info.value.field == "time_scale"


def test_site_file_error_of_the_embedded_simulator_is_one_line_naming_the_field(
    tmp_path: Path,
) -> None:
    text = resources.files("simulator.sites").joinpath("default.toml").read_text()
    site = tmp_path / "site.toml"
    huge = "[microgrid]\nid = 18446744073709551616\n"  # above uint64
    site.write_text(text.replace("[microgrid]\nid = 1\n", huge))
    line = _one_line_error(gridloop("run", "--site", str(site), "--duration", "1"))
    assert f"{site}: microgrid.id = 18446744073709551616: above the uint64 maximum" in line


# ------------------------------------------------- a run without a control cycle


def test_summary_without_soc_says_na_not_inf() -> None:
    from controller.runtime.summary import RunSummary

    summary = RunSummary(
        api_url="grpc://x:1", embedded=False, duration_s=0.0, simulated_s=0.0, time_scale=1.0,
        import_limit_w=None, peak_import_w_uncontrolled=-math.inf, peak_import_w=-math.inf,
        peak_import_w_instant_uncontrolled=-math.inf, peak_import_w_instant=-math.inf,
        fr_energy_required_wh=0.0, fr_energy_delivered_wh=0.0, setpoints_sent=0,
        setpoints_failed=0, setpoints_failed_by_reason={}, setpoints_out_of_bounds=None,
        dispatch_latency_ms={"p50": math.nan, "p99": math.nan, "max": math.nan},
        soc_min_pct=math.inf, soc_max_pct=-math.inf, grid_samples=0, cycle_overruns=0,
        reconnects=0, excluded_at_end={},
    )
    text = summary.render()
    assert "fleet SoC        n/a (no control cycle ran)" in text
    assert "inf" not in text
    assert "nan" not in text
    summary.grid_samples = 5  # cycles ran, but no battery reported its SoC
    assert "fleet SoC        n/a (no battery SoC was measured)" in summary.render()



def test_a_withheld_safe_stop_is_a_failed_one_unless_the_site_changed() -> None:
    from controller.runtime.summary import EXIT_SAFE_STOP_FAILED, EXIT_SITE_CHANGED, RunSummary

    summary = RunSummary(
        api_url="grpc://x:1", embedded=False, duration_s=1.0, simulated_s=1.0, time_scale=1.0,
        import_limit_w=None, peak_import_w_uncontrolled=0.0, peak_import_w=0.0,
        peak_import_w_instant_uncontrolled=0.0, peak_import_w_instant=0.0,
        fr_energy_required_wh=0.0, fr_energy_delivered_wh=0.0, setpoints_sent=4,
        setpoints_failed=0, setpoints_failed_by_reason={}, setpoints_out_of_bounds=None,
        dispatch_latency_ms={"p50": 1.0, "p99": 1.0, "max": 1.0},
        soc_min_pct=50.0, soc_max_pct=50.0, grid_samples=5, cycle_overruns=0,
        reconnects=1, excluded_at_end={}, safe_stop_commanded=4,
        safe_stop_withheld="unverified-site",
    )
    # A reconnect still unchecked at the stop: nothing was sent, the inverters keep ours.
    assert summary.exit_status == EXIT_SAFE_STOP_FAILED
    assert "SAFE STOP FAILED 0 W withheld from the 4 inverters" in summary.render()
    # The server is another site: withholding is the point, and exit 3 says why.
    summary.site_changed = "microgrid id 1 → 2"
    summary.safe_stop_withheld = "site-changed"
    assert summary.exit_status == EXIT_SITE_CHANGED


def test_a_run_too_short_for_a_cycle_prints_na_and_writes_null(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    proc = gridloop("run", "--duration", "1e-9", "--summary-json", str(summary_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "inf" not in out
    data = json.loads(summary_path.read_text())
    if data["grid_samples"] == 0:  # (a sample could arrive before the run ends)
        assert "fleet SoC        n/a (no control cycle ran)" in out
        assert data["soc_min_pct"] is None
        assert data["soc_max_pct"] is None


# ------------------------------------------------------------------ the grid formula

_FEEDERS_CONFIG = """
[peak_shaving]
import_limit_w = 250000.0
[frequency_response]
enabled = false
"""


async def _run_against(srv: Any, tmp_path: Path, config: str, *args: str) -> tuple[int, str]:
    cfg = tmp_path / "gridloop.toml"
    cfg.write_text(config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", "--api", f"grpc://{srv.address}", "--config", str(cfg),
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.integration
@pytest.mark.slow
async def test_two_feeders_are_shaved_as_their_sum(
    sim_factory: Any, feeder_site: Any, tmp_path: Path
) -> None:
    # grid 1 -> meter 2 -> inverter 10 -> battery 11, grid 1 -> meter 3 (300 kW of load):
    # the site imports 300 kW, and meter 2 alone shows only the battery.
    srv = await sim_factory(feeder_site(300_000.0))
    summary_path = tmp_path / "summary.json"
    run = asyncio.create_task(_run_against(
        srv, tmp_path, _FEEDERS_CONFIG, "--duration", "8", "--log-level", "INFO",
        "--summary-json", str(summary_path),
    ))
    # The site's own grid import (the simulator's physics) comes down to the limit
    # and stays there while the run's setpoint holds (until the 0 W of its safe stop).
    deadline = time.monotonic() + 30
    while abs(srv.physics.grid_power_w - 250_000.0) > 500.0:
        assert not run.done(), "the run ended before the grid came down to 250 kW"
        assert time.monotonic() < deadline, "never shaved to 250 kW"
        await asyncio.sleep(0.02)
    held: list[float] = []
    while not run.done() and srv.physics.inverter_setpoint_w[0] < -1_000.0:
        held.append(srv.physics.grid_power_w)
        await asyncio.sleep(0.02)
    status, stderr = await run
    assert status == 0, stderr
    assert "grid = meter 2 + meter 3; frequency from meter 2, meter 3" in stderr
    assert held
    assert max(held) <= 250_500.0
    assert min(held) >= 249_500.0
    s = json.loads(summary_path.read_text())
    assert s["grid_formula"] == "grid = meter 2 + meter 3; frequency from meter 2, meter 3"
    # Reported: what flows through the grid connection point, not meter 2's share
    # (the first samples, before the battery acts, show the whole 300 kW).
    assert s["peak_import_w_instant_uncontrolled"] >= 299_500.0
    assert srv.stats()["setpoints_out_of_bounds"] == 0


@pytest.mark.integration
@pytest.mark.slow
async def test_a_grid_that_cannot_be_measured_is_refused_in_one_line(
    sim_factory: Any, feeder_site: Any, tmp_path: Path
) -> None:
    from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
        electrical_components_pb2 as ec,
    )

    srv = await sim_factory(feeder_site(300_000.0))
    # Test-local: the simulator has no breakers; list meter 3 as one (no power telemetry).
    (comp,) = [c for c in srv.components if c.id == 3]
    comp.category = ec.ELECTRICAL_COMPONENT_CATEGORY_BREAKER
    status, stderr = await _run_against(srv, tmp_path, _FEEDERS_CONFIG, "--duration", "5")
    assert status == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert srv.address in lines[0]
    assert "grid power cannot be measured: no power telemetry from breaker 3" in lines[0]
    assert "[peak_shaving] enabled = false" in lines[0]
    assert srv.stats()["setpoints_received"] == 0  # refused before any setpoint
    # Asked explicitly: without peak shaving, frequency response runs on meter 2's frequency.
    status, stderr = await _run_against(
        srv, tmp_path, "[peak_shaving]\nenabled = false\n", "--duration", "1"
    )
    assert status == 0, stderr


def test_grid_refusal_names_what_the_enabled_strategies_cannot_get() -> None:
    import dataclasses

    from actors import GridFormula
    from controller.runtime.config import load_config
    from controller.runtime.service import grid_refusal

    meter, ev, breaker = 2, 6, 7  # ElectricalComponentCategory values
    cats = {1: 1, 2: meter, 6: ev, 7: breaker}

    def formula(*heads: int) -> GridFormula:
        succ = {c: (heads if c == 1 else ()) for c in cats}
        pred = {c: ((1,) if c in heads else ()) for c in cats}
        return GridFormula.build(cats, succ, pred)

    both = load_config(None)
    no_ps = dataclasses.replace(
        both, peak_shaving=dataclasses.replace(both.peak_shaving, enabled=False))
    no_fr = dataclasses.replace(
        both, frequency_response=dataclasses.replace(both.frequency_response, enabled=False))
    assert grid_refusal(formula(2), both) is None
    line = grid_refusal(formula(2, 7), both)
    assert line is not None
    assert "grid power cannot be measured: no power telemetry from breaker 7" in line
    assert grid_refusal(formula(2, 7), no_ps) is None  # asked for explicitly
    line = grid_refusal(formula(6), both)  # an EV charger measures power, not frequency
    assert line is not None
    assert "grid frequency cannot be measured" in line
    assert "[frequency_response] enabled = false" in line
    assert grid_refusal(formula(6), no_fr) is None
