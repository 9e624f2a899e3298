"""The one simulator launcher (`controller.runtime.embedded`): start, listen, fail, stop.

Real child processes: ``python -m simulator`` on port 0, a bad site file, and a
child that never prints the listening line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from controller.runtime.embedded import (
    LISTEN_PREFIX,
    EmbeddedSimulatorError,
    SimulatorProcess,
    listening_address,
    start_simulator_process,
)

pytestmark = pytest.mark.integration

SILENT = (sys.executable, "-c", "import time; time.sleep(60)")
"""A child that never listens."""
NEVER_LISTENED = r"^the simulator did not start: no listening line within 0\.5 s$"


def test_listening_address_reads_only_the_listening_line() -> None:
    assert listening_address(f"{LISTEN_PREFIX}127.0.0.1:5000\n") == "127.0.0.1:5000"
    assert listening_address("gridloop sim listening on [::1]:7 ") == "[::1]:7"
    assert listening_address("INFO something listening on 1.2.3.4:5") is None
    assert listening_address(LISTEN_PREFIX) is None
    assert listening_address("") is None


def test_sync_start_returns_the_address_of_a_child_in_its_own_group(tmp_path: Path) -> None:
    proc, address = start_simulator_process(["--port", "0"], stderr=subprocess.DEVNULL)
    try:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sync_start_names_the_line_of_a_child_that_exits(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(EmbeddedSimulatorError) as info:
        start_simulator_process(["--config", str(missing)], stderr=subprocess.PIPE)
    message = str(info.value)
    assert message.startswith("the simulator did not start: ")
    assert str(missing) in message
    assert "\n" not in message


def test_sync_start_gives_up_on_a_child_that_never_listens() -> None:
    with pytest.raises(EmbeddedSimulatorError, match=NEVER_LISTENED):
        start_simulator_process(command=SILENT, start_timeout_s=0.5)


async def test_async_child_listens_in_its_own_group_and_is_stopped() -> None:
    async with SimulatorProcess(["--port", "0"]) as sim:
        assert sim.address.startswith("127.0.0.1:")
        assert sim.url == f"grpc://{sim.address}?ssl=false"
        assert sim.pid is not None
        assert os.getpgid(sim.pid) == sim.pid != os.getpgid(0)
        assert sim.returncode is None
    assert sim.returncode == 0  # SIGTERM: the simulator's orderly stop


async def test_async_start_failure_is_one_line_and_leaves_no_child(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    sim = SimulatorProcess(["--config", str(missing)])
    with pytest.raises(EmbeddedSimulatorError) as info:
        async with sim:
            pytest.fail("a child with a missing site file must not listen")
    assert str(info.value).startswith("the simulator did not start: ")
    assert str(missing) in str(info.value)
    assert sim.returncode is not None


async def test_async_start_gives_up_on_a_child_that_never_listens() -> None:
    sim = SimulatorProcess(command=SILENT, start_timeout_s=0.5)
    with pytest.raises(EmbeddedSimulatorError, match=NEVER_LISTENED):
        async with sim:
            pytest.fail("the silent child cannot listen")
    assert sim.returncode == -signal.SIGTERM
