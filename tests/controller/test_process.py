"""The ``gridloop`` process: stop signals at any moment, closed std fds, a failed safe stop.

Every test starts ``gridloop run`` (and where needed ``gridloop sim``) as real
processes and talks to them only through signals, files and their exit status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit import ENTRY

from controller.runtime.embedded import start_simulator_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIM_COMMAND = (sys.executable, "-c", ENTRY, "sim")
"""``gridloop sim``, started through the one simulator launcher."""
BATTERY_INVERTERS = ("10", "20", "30", "31", "40")
# Frequency response with no deadband: every battery inverter carries power at once.
FR_CONFIG = """
[frequency_response]
enabled = true
deadband_hz = 0.0
reserved_power_w = 200_000.0
"""


def gridloop(
    *args: str, preexec_fn: Callable[[], object] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args], text=True, preexec_fn=preexec_fn, **kwargs
    )


def _wait_for(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for: {what}")
        time.sleep(0.05)


def _per_component(stats_path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(stats_path.read_text())["per_component"]
    except (OSError, ValueError, KeyError):
        return {}
    return data


def _all_carry_power(stats_path: Path) -> bool:
    per = _per_component(stats_path)
    return all(per.get(c, {}).get("last_setpoint_w") not in (None, 0.0) for c in BATTERY_INVERTERS)


def _setpoints_recorded(record: Path) -> int:
    lines = record.read_text().splitlines() if record.exists() else []
    if len(lines) <= 2:
        return 0
    header = lines[0].split(",")
    last = lines[-2].split(",")  # the last line may still be being written
    return int(last[header.index("setpoints_sent")] or 0)


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """``gridloop sim --port 0`` in its own process: (process, HOST:PORT, stats file)."""
    stats = tmp_path / "sim.json"
    proc, address = start_simulator_process(
        ["--port", "0", "--stats-json", str(stats), "--stats-interval", "0.1"],
        command=SIM_COMMAND, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc, address, stats
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):  # it may have been stopped
            if proc.poll() is None:
                proc.send_signal(sig)
        proc.wait(timeout=30)


# ------------------------------------------------------------------ stop signals


def _ignore(sig: signal.Signals) -> Callable[[], None]:
    def setup() -> None:  # runs in the child before exec, like nohup or a shell's `&`
        signal.signal(sig, signal.SIG_IGN)

    return setup


def test_terminal_ctrl_c_reaches_gridloop_not_its_embedded_simulator(tmp_path: Path) -> None:
    # Ctrl-C in a terminal signals the whole foreground process group. The embedded
    # simulator must still be serving when gridloop's safe stop sends it 0 W.
    config = tmp_path / "fr.toml"
    config.write_text(FR_CONFIG)
    summary_path = tmp_path / "summary.json"
    record = tmp_path / "run.csv"
    proc = gridloop(
        "run", "--duration", "600", "--config", str(config), "--record", str(record),
        "--summary-json", str(summary_path), start_new_session=True,
    )
    _wait_for(lambda: _setpoints_recorded(record) >= 10 or proc.poll() is not None, 60,
              "setpoints flowing")
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(summary_path.read_text())
    assert summary["safe_stop_commanded"] >= 1
    assert summary["safe_stop_failed"] == 0
    per = summary["simulator_stats"]["per_component"]
    last = {c: per[c].get("last_setpoint_w") for c in BATTERY_INVERTERS if c in per}
    assert last, per
    assert all(v == 0.0 for v in last.values()), last


def test_sighup_ignored_by_the_parent_stays_ignored(tmp_path: Path) -> None:
    # `nohup gridloop run`: the user asked the run to survive a hangup.
    config = tmp_path / "fr.toml"
    config.write_text(FR_CONFIG)
    record = tmp_path / "run.csv"
    proc = gridloop(
        "run", "--duration", "600", "--config", str(config), "--record", str(record),
        preexec_fn=_ignore(signal.SIGHUP),
    )
    _wait_for(lambda: _setpoints_recorded(record) >= 1 or proc.poll() is not None, 60,
              "setpoints flowing")
    proc.send_signal(signal.SIGHUP)
    after_hup = _setpoints_recorded(record)
    # It keeps controlling: setpoints go on being sent after the hangup.
    _wait_for(lambda: _setpoints_recorded(record) > after_hup + 5 or proc.poll() is not None, 60,
              "setpoints after SIGHUP")
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "safe stop" in stdout


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_sigint_during_start_up_stops_the_run_in_order(tmp_path: Path, inherited: str) -> None:
    # The config is a FIFO: `gridloop run` blocks reading it during its start-up,
    # before any event loop runs, and the test knows it is there when its own open
    # for writing returns. SIGINT then; the config comes after.
    fifo = tmp_path / "gridloop.toml"
    os.mkfifo(fifo)
    summary_path = tmp_path / "summary.json"
    proc = gridloop(
        "run", "--duration", "600", "--config", str(fifo), "--summary-json", str(summary_path),
        preexec_fn=_ignore(signal.SIGINT) if inherited == "ignored" else None,
    )
    opened = threading.Event()

    def feed() -> None:
        with open(fifo, "w") as f:  # returns once gridloop has opened it for reading
            opened.set()
            proc.send_signal(signal.SIGINT)
            f.write("[run]\nduration_s = 600\n")

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        stdout, stderr = proc.communicate(timeout=120)  # far less than --duration 600
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("SIGINT during start-up was lost: the run went on")
    assert opened.is_set()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "gridloop run:" in stdout  # the summary
    assert json.loads(summary_path.read_text())["safe_stop_failed"] == 0


# ------------------------------------------------------------------ closed std fds


def _close(fd: int) -> Callable[[], None]:
    def setup() -> None:  # like `<&-` / `>&-` in the shell
        os.close(fd)

    return setup


@pytest.mark.parametrize("fd", [0, 1])
def test_embedded_run_with_a_closed_std_fd(tmp_path: Path, fd: int) -> None:
    summary_path = tmp_path / "summary.json"
    proc = gridloop(
        "run", "--duration", "2", "--summary-json", str(summary_path), preexec_fn=_close(fd),
        stdout=None if fd == 1 else subprocess.PIPE,
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Assertion" not in stderr
    assert json.loads(summary_path.read_text())["grid_samples"] > 0
    if fd == 0:
        assert "gridloop run:" in stdout


def test_sim_and_api_run_with_stdin_closed(tmp_path: Path) -> None:
    sim, address = start_simulator_process(
        ["--port", "0"], command=SIM_COMMAND, preexec_fn=_close(0), stderr=subprocess.PIPE
    )
    try:
        run = gridloop(
            "run", "--api", f"grpc://{address}", "--duration", "2", preexec_fn=_close(0)
        )
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        assert "Assertion" not in stderr
        assert "gridloop run:" in stdout  # the summary, after the exit that used to abort
        sim.send_signal(signal.SIGINT)
        _, sim_err = sim.communicate(timeout=60)
        assert sim.returncode == 0, sim_err
        assert "Assertion" not in sim_err
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.communicate()


# ------------------------------------------------------------------ a failed safe stop


def test_a_safe_stop_the_frozen_server_never_acknowledged_is_reported_and_fails(
    tmp_path: Path, sim_process: tuple[subprocess.Popen[str], str, Path]
) -> None:
    sim, address, sim_stats = sim_process
    config = tmp_path / "fr.toml"
    config.write_text(FR_CONFIG)
    summary_path = tmp_path / "summary.json"
    proc = gridloop(
        "run", "--api", f"grpc://{address}", "--duration", "600", "--config", str(config),
        "--summary-json", str(summary_path),
    )
    _wait_for(lambda: _all_carry_power(sim_stats) or proc.poll() is not None, 60,
              "every battery inverter carrying power")
    assert proc.poll() is None
    sim.send_signal(signal.SIGSTOP)  # the server hangs: no call is answered
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    sim.send_signal(signal.SIGCONT)

    from controller.runtime.summary import EXIT_SAFE_STOP_FAILED

    assert proc.returncode == EXIT_SAFE_STOP_FAILED == 5, stderr
    assert "Traceback" not in stderr
    summary = json.loads(summary_path.read_text())
    assert summary["safe_stop_commanded"] == len(BATTERY_INVERTERS)
    assert summary["safe_stop_failed"] == len(BATTERY_INVERTERS)
    assert set(summary["safe_stop_failed_ids"]) == set(BATTERY_INVERTERS)
    assert summary["setpoints_failed"] >= len(BATTERY_INVERTERS)
    named = "10, 20, 30, 31, 40"
    assert f"SAFE STOP FAILED 0 W not confirmed by 5 of 5 inverters: {named}" in stdout
    log = [line for line in stderr.splitlines() if "safe stop" in line]
    assert len(log) == 1, stderr
    assert f"5 of 5 inverters: {named}" in log[0]


def test_the_safe_stop_line_of_a_huge_site_stays_short() -> None:
    from actors import SafeStopResult

    failed = {1000 + k: "DEADLINE_EXCEEDED" for k in range(1500)}
    failed[5000] = "UNAVAILABLE"
    line = SafeStopResult(commanded=1600, failed=failed).describe()
    assert line.startswith("0 W not confirmed by 1501 of 1600 inverters: 1000, 1001, ")
    assert "1009 and 1491 more" in line
    assert line.endswith("(DEADLINE_EXCEEDED 1500, UNAVAILABLE 1)")
    assert len(line) < 200
    assert SafeStopResult(commanded=3).describe() == (
        "0 W confirmed by all 3 commanded inverters"
    )


# ------------------------------------------------------------------ schedules


def _fr_required_column(record: Path) -> list[float]:
    """``fr_required_w`` of every complete row of the recording so far (nan if empty)."""
    lines = record.read_text().splitlines() if record.exists() else []
    if len(lines) <= 2:
        return []
    col = lines[0].split(",").index("fr_required_w")
    return [float(row.split(",")[col] or "nan") for row in lines[1:-1]]


def test_a_schedule_rewritten_mid_run_switches_frequency_response_on_and_off(
    tmp_path: Path,
) -> None:
    # The default site with its under-frequency step from the start on: the droop asks
    # for power whenever frequency response is sold, and for nothing when it is not.
    default = Path(__file__).resolve().parents[2] / "simulator" / "sites" / "default.toml"
    text = default.read_text()
    step = "start_s = 300.0\nduration_s = 120.0\ndelta_hz = -0.150"
    assert step in text
    site = tmp_path / "site.toml"
    site.write_text(text.replace(step, "start_s = 0.0\nduration_s = 1e6\ndelta_hz = -0.100"))
    schedule = tmp_path / "schedule.toml"
    schedule.write_text("# nothing sold yet\n")
    record, summary_path = tmp_path / "run.csv", tmp_path / "summary.json"
    proc = gridloop(
        "run", "--duration", "600", "--site", str(site), "--schedule", str(schedule),
        "--record", str(record), "--summary-json", str(summary_path), "--no-dashboard",
    )
    _wait_for(lambda: len(_fr_required_column(record)) >= 3 or proc.poll() is not None, 60,
              "records flowing")
    now = time.time()  # the site's clock starts at the wall clock: a day either side
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    schedule.write_text(
        f'[[window]]\nstart = "{stamp(now - 86_400)}"\nend = "{stamp(now + 86_400)}"\n'
        "reserved_power_w = 100_000\n"
    )
    _wait_for(lambda: any(v != 0 for v in _fr_required_column(record)) or proc.poll()
              is not None, 60, "frequency response on")
    proc.send_signal(signal.SIGHUP)  # with a schedule: reload it, do not stop
    schedule.write_text("# sold out\n")

    def off_again() -> bool:
        values = _fr_required_column(record)
        on = [i for i, v in enumerate(values) if v != 0]
        return proc.poll() is not None or (bool(on) and len(values) - on[-1] > 5)

    _wait_for(off_again, 60, "frequency response off again")
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    values = _fr_required_column(record)
    on = [i for i, v in enumerate(values) if v != 0]
    # Off, then on in one stretch (no restart), then off: 0 W outside the window.
    assert on[0] > 0
    assert on == list(range(on[0], on[-1] + 1))
    assert all(v < 0 for v in values[on[0]:on[-1] + 1])  # under-frequency: discharge
    assert all(v == 0 for v in values[on[-1] + 1:])
    assert "SIGHUP: reloading the schedule" in stderr
    assert f"schedule file:{schedule} at site time" in stderr
    assert " added file:" in stderr
    assert " removed file:" in stderr
    summary = json.loads(summary_path.read_text())
    assert summary["schedule_sources"] == [f"file:{schedule}"]
    assert summary["schedule_changes"] == 2
