"""Every example config runs: a few seconds of `gridloop run --config examples/X.toml`.

The embedded-simulator examples run as they are; the remote-site example runs
against a simulator in this process, its URL overridden with ``--api``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from testkit import ENTRY

from controller.runtime.schedule_file import load_schedule

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EMBEDDED = ["peak_shaving_only.toml", "fcr.toml", "dynamic_containment_with_peak_shaving.toml",
            "zero_export_with_ev.toml"]
SCHEDULES = ["fcr_day.toml"]
"""Schedule files (``--schedule``): loaded here; tests/controller/test_process.py runs one."""

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    summary = tmp_path / "summary.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", "--duration", "4", "--summary-json", str(summary),
        *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    data: dict[str, Any] = json.loads(summary.read_text())
    return data


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(
        [*EMBEDDED, "remote_site_tls.toml", *SCHEDULES]
    )


def test_fcr_day_sells_fcr_in_four_of_six_blocks_with_peak_shaving_throughout() -> None:
    midnight = 1_780_012_800.0  # 2026-05-29T00:00:00Z
    schedule = load_schedule(EXAMPLES / "fcr_day.toml", zoneinfo.ZoneInfo("UTC"))
    day = [w for w in schedule.windows(midnight, midnight + 86_400)
           if midnight <= w.start_s < midnight + 86_400]
    assert [(w.start_s - midnight) / 3600 for w in day] == [0, 4, 8, 12, 16, 20]
    assert [w.end_s - w.start_s for w in day] == [4 * 3600.0] * 6
    sold = [w.frequency_response.reserved_power_w if w.frequency_response else 0.0
            for w in day]
    assert sold == [100_000.0, 100_000.0, 0.0, 100_000.0, 100_000.0, 0.0]
    assert all(w.peak_limit_w is not None for w in day)


@pytest.mark.parametrize("name", EMBEDDED)
async def test_embedded_example_runs(tmp_path: Path, name: str) -> None:
    s = await _run(tmp_path, "--config", str(EXAMPLES / name))
    assert s["embedded"] is True
    assert s["setpoints_sent"] > 0
    assert s["setpoints_failed"] == 0
    assert s["setpoints_out_of_bounds"] == 0


async def test_remote_example_runs_against_a_local_server(tmp_path: Path, sim_factory: Any) -> None:
    srv = await sim_factory()
    s = await _run(
        tmp_path, "--config", str(EXAMPLES / "remote_site_tls.toml"),
        "--api", f"grpc://{srv.address}?ssl=false",
    )
    assert s["embedded"] is False
    assert s["setpoints_sent"] > 0
    assert s["setpoints_failed"] == 0
    assert srv.stats()["setpoints_out_of_bounds"] == 0
    assert srv.stats()["setpoints_accepted"] > 0
