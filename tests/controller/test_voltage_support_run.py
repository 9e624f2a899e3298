"""End to end: ``gridloop run --config examples/voltage_support.toml --summary-json F``.

The embedded simulator on the bundled weak-feeder site (a +4 % voltage step at
t = 300 s of site time), Q(U) and peak shaving on; 5.5 s of wall time at 60× cover
the step. The summary carries the reactive keys with 0 setpoints out of bounds and
0 apparent-power violations, and the peak-shaving keys as before.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import ENTRY

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "voltage_support.toml"

pytestmark = pytest.mark.integration


def test_voltage_support_example_writes_the_reactive_keys(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY, "run", "--config", str(EXAMPLE), "--duration", "5.5",
         "--time-scale", "60", "--no-dashboard", "--summary-json", str(summary)],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    s = json.loads(summary.read_text())
    assert s["simulated_s"] > 300.0  # the voltage step at t = 300 s was in the run
    assert s["reactive_setpoints_sent"] > 0
    assert s["reactive_setpoints_out_of_bounds"] == 0
    assert s["apparent_power_violations"] == 0
    assert 0.0 <= s["voltage_in_band_pct"] <= 100.0
    assert math.isfinite(s["q_tracking_rms_pct"])
    assert s["q_tracking_rms_pct"] >= 0.0
    assert s["simulator_stats"]["setpoints_reactive_out_of_bounds"] == 0
    # Peak shaving as before: its keys, no active setpoint failed or out of bounds.
    assert s["import_limit_w"] == 250_000.0
    for key in ("peak_import_w", "peak_import_w_uncontrolled", "peak_import_w_instant",
                "billed_peak_w_uncontrolled"):
        assert key in s, key  # 1-minute means may be null in a run this short
    assert math.isfinite(s["billed_peak_w"])
    assert s["setpoints_failed"] == 0
    assert s["setpoints_out_of_bounds"] == 0
    assert "reactive power" in proc.stdout  # the printed summary's line


def test_reactive_keys_are_null_with_reactive_control_off() -> None:
    from actors import RuntimeStats
    from controller.runtime.service import _reactive_summary
    from controller.runtime.summary import RunSummary

    stats = RuntimeStats(0, 0, {}, 0, [], 0, {})
    assert _reactive_summary(None, stats, {}) == {}  # the defaults below stay
    defaults = {f.name: f.default for f in dataclasses.fields(RunSummary)}
    assert defaults["reactive_setpoints_out_of_bounds"] is None
    assert defaults["apparent_power_violations"] is None
    assert math.isnan(defaults["voltage_in_band_pct"])  # written as null
