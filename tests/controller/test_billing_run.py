"""`gridloop run` keeps the bill across a kill -9: the billing state file, end to end.

A real `gridloop run` process controls its embedded simulator over gRPC on loopback
(time-scaled, 1-min billing intervals), is killed with SIGKILL after the load peak,
and is started again on the same state file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from testkit import ENTRY

CONFIG = """
[peak_shaving]
limit = 200000
[frequency_response]
enabled = false
[billing]
interval_s = 60
timezone = "UTC"
"""


def _gridloop(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY, "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


@pytest.mark.integration
@pytest.mark.slow
def test_billed_peak_and_interval_energy_survive_sigkill(tmp_path: Path) -> None:
    (tmp_path / "gridloop.toml").write_text(CONFIG)
    state = tmp_path / "state.json"
    common = ("--config", "gridloop.toml", "--time-scale", "60", "--state", str(state))
    first = _gridloop(tmp_path, "--duration", "300", *common)
    # Wait until the load peak (site t = 600..1080 s) has been billed and an interval is
    # under way, then kill -9: no orderly stop, no final save.
    deadline = time.monotonic() + 120
    before: dict[str, Any] | None = None
    while time.monotonic() < deadline and first.poll() is None:
        data = _read(state)
        if (
            data is not None
            and data["billed_peak_w_uncontrolled"] > 280e3
            and data["interval"] is not None
            and data["interval"]["energy_wh"] > 0
        ):
            before = data
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    _, err1 = first.communicate(timeout=30)
    assert before is not None, err1
    before = _read(state)  # the last save before the kill
    assert before is not None
    assert before["format"] == "gridloop-billing-state"
    assert before["microgrid_id"] == 1  # the default site's
    # The batteries kept the billed peak (1-min means) under the bill without them.
    assert 0 < before["billed_peak_w"] < before["billed_peak_w_uncontrolled"]

    summary = tmp_path / "summary.json"
    second = _gridloop(tmp_path, "--duration", "4", "--summary-json", str(summary), *common)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "Traceback" not in err
    assert f"billing state restored from {state}: period {before['period_key']}" in err
    after = _read(state)
    assert after is not None
    s = json.loads(summary.read_text())
    assert "billed peak" in out
    if after["period_key"] == before["period_key"]:  # (a run across a month's end rolls over)
        assert after["billed_peak_w"] >= before["billed_peak_w"]
        assert after["billed_peak_w_uncontrolled"] >= before["billed_peak_w_uncontrolled"]
        assert s["billed_peak_w"] >= before["billed_peak_w"]
        iv = before["interval"]
        if after["interval"]["start_s"] == iv["start_s"]:  # still the same interval
            assert after["interval"]["energy_wh"] >= iv["energy_wh"]
            assert after["interval"]["covered_s"] >= iv["covered_s"]
        else:  # it was closed with what it had: it is in the history
            assert iv["start_s"] in after["history"]["start_s"]
    # The target: with frequency response off, the billed peak with batteries is
    # never above the billed peak without them.
    assert s["billed_peak_w"] is not None
    assert s["billed_peak_w_uncontrolled"] is not None
    assert s["billed_peak_w"] <= s["billed_peak_w_uncontrolled"]


@pytest.mark.integration
@pytest.mark.slow
def test_auto_limit_without_history_never_raises_the_bill(tmp_path: Path) -> None:
    # A new site (no history, no state file): the first 20 minutes of the default
    # scenario (its load peak included) at 60x with the limit chosen by gridloop and
    # 5-minute billing intervals (four of them). With
    # frequency response off nothing above peak shaving asks for power, so the billed
    # peak with batteries is never above the one without.
    cfg = tmp_path / "auto.toml"
    cfg.write_text(
        '[peak_shaving]\nlimit = "auto"\n[frequency_response]\nenabled = false\n'
        '[billing]\ninterval_s = 300\ntimezone = "UTC"\n'
    )
    summary = tmp_path / "summary.json"
    proc = _gridloop(
        tmp_path, "--config", str(cfg), "--duration", "20", "--time-scale", "60",
        "--summary-json", str(summary), "--no-dashboard",
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    s = json.loads(summary.read_text())
    assert s["billed_peak_w_uncontrolled"] > 0
    assert s["billed_peak_w"] <= s["billed_peak_w_uncontrolled"] + 1.0, s
    assert s["setpoints_out_of_bounds"] == 0
