"""Stopping `gridloop replay` stops its baseline workers too."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from testkit import ENTRY


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_replay_leaves_no_worker_running(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "replay", "--limit", "auto", "--baselines", "both",
         "--fr-trace", "none", "--no-progress", "--days", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    parent = psutil.Process(proc.pid)
    workers: list[psutil.Process] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2:  # the two baselines' workers have started
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the baseline workers never started"
        workers = [p for p in parent.children(recursive=True) if "spawn" in " ".join(p.cmdline())]
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "gridloop replay: interrupted" in err
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [p.pid for p in alive]
