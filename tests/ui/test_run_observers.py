"""End to end: `gridloop run --record --metrics-port` on the embedded simulator, then `report`.

A real child process, real gRPC to the bundled simulator, a real HTTP scrape of
/metrics while the run is going, and the recording it leaves rendered by
`gridloop report`.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from testkit import ENTRY

from controller.ops.report import PANEL_TITLES, read_recording, render_report

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_S = 8.0


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_run_records_serves_metrics_and_reports(tmp_path: Path) -> None:
    csv_path = tmp_path / "run.csv"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ENTRY,
            "run",
            "--duration",
            str(RUN_S),
            "--record",
            str(csv_path),
            "--metrics-port",
            "0",
            "--no-dashboard",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,  # its own process group: cleanup reaches the simulator child
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr_lines: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 30.0
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            stderr_lines.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
            url = match.group(1) if match else None
        assert url is not None, f"no metrics URL on stderr: {stderr_lines}"

        # During the run: poll until the control loop has sent setpoints.
        samples: dict[str, float] = {}
        deadline = time.monotonic() + RUN_S + 20.0
        while time.monotonic() < deadline:
            try:
                samples = scrape(url)
            except urllib.error.URLError:
                break  # the run is over (checked below)
            if samples.get("gridloop_setpoints_sent_total", 0.0) > 0:
                break
            time.sleep(0.2)
        assert samples.get("gridloop_setpoints_sent_total", 0.0) > 0, (
            "no CycleRecord reached the metrics exporter during the run; last scrape: "
            f"{ {k: v for k, v in samples.items() if not k.endswith('_created')} }"
        )
        grid_w = samples["gridloop_grid_power_watts"]
        assert math.isfinite(grid_w)
        assert abs(grid_w) < 10e6  # a site, not garbage
        assert 45.0 < samples["gridloop_grid_frequency_hertz"] < 65.0
        assert samples["gridloop_dispatch_latency_seconds_count"] > 0
        socs = [v for k, v in samples.items() if k.startswith("gridloop_group_soc_percent{")]
        assert socs
        assert all(0.0 <= v <= 100.0 for v in socs)
        healthy = [v for k, v in samples.items() if k.startswith("gridloop_group_healthy{")]
        assert set(healthy) <= {0.0, 1.0}

        stdout, _ = proc.communicate(timeout=RUN_S + 30.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # no-op when the run ended cleanly
        proc.wait(timeout=10)
    reader.join(timeout=5)
    while not lines.empty():
        stderr_lines.append(lines.get())
    assert proc.returncode == 0, "".join(stderr_lines)
    assert "Traceback" not in "".join(stderr_lines)
    assert "setpoints" in stdout

    recording = read_recording(csv_path)
    assert recording.rows >= 10
    assert recording.groups
    summary = render_report(csv_path, tmp_path / "report.png")
    assert summary.panel_titles == PANEL_TITLES
    assert (tmp_path / "report.png").stat().st_size > 10_000
