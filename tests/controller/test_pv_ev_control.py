"""PV curtailment and EV limits through real gRPC: ``gridloop run`` on the embedded simulator.

The bundled zero-export site (simulator/sites/zero_export_with_ev.toml) is copied
with its scenario moved to the start of the run, so a few wall seconds at the
example's time scale show it:

* batteries full at noon: ~120 kW of export that only PV curtailment can stop;
* the charging rush at once, little sun, a 120 kW import limit and EV limits
  ranked before the batteries: the cars are slowed, the batteries stay idle.

Each run is one ``gridloop run`` subprocess of 4 wall seconds; what is checked is
read from its ``--summary-json`` and ``--record`` outputs.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from testkit import ENTRY

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "simulator" / "sites" / "zero_export_with_ev.toml"
EV_IDS = ("51", "52", "53", "54", "55", "56")

pytestmark = [pytest.mark.integration]


def _site(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = SITE.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def _config(tmp_path: Path, site: Path, control: str = "") -> Path:
    path = tmp_path / "gridloop.toml"
    path.write_text(
        f"""
[simulator]
site = "{site}"
time_scale = 30.0
[control]
{control}
[peak_shaving]
import_limit_w = 120_000.0
export_limit_w = 0.0
target_soc_pct = 10.0
[frequency_response]
enabled = false
"""
    )
    return path


async def _run(
    tmp_path: Path, config: Path, *args: str
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    summary, record = tmp_path / "summary.json", tmp_path / "record.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", "--config", str(config), "--duration", "4",
        "--summary-json", str(summary), "--record", str(record), "--no-dashboard", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    with record.open() as f:
        rows = [{k: float(v) for k, v in row.items() if k.endswith("_w") and v}
                for row in csv.DictReader(f)]
    data: dict[str, Any] = json.loads(summary.read_text())
    return data, rows


def _no_setpoint_out_of_bounds(summary: dict[str, Any]) -> None:
    assert summary["setpoints_out_of_bounds"] == 0
    assert summary["setpoints_out_of_bounds_by_kind"] == {
        "battery_inverter": 0, "pv_inverter": 0, "ev_charger": 0,
    }


async def test_full_batteries_pv_is_curtailed_to_hold_zero_export(tmp_path: Path) -> None:
    site = _site(tmp_path, ("soc_pct = 70.0", "soc_pct = 90.0"),
                 ("soc_pct = 80.0", "soc_pct = 90.0"))
    summary, rows = await _run(tmp_path, _config(tmp_path, site), "--api-version", "v1")
    _no_setpoint_out_of_bounds(summary)
    assert summary["pv_curtailed_energy_wh"] > 0
    # The site would export ~120 kW (PV ~210 kW, load ~90 kW) with the batteries
    # full; once PV is capped (its response delay and ramp, one control cycle),
    # the export stays within the load's noise around the zero-export limit.
    settled = rows[len(rows) // 3:]
    assert settled
    assert all(r["battery_power_w"] < 1_000.0 for r in settled)  # full: they cannot charge
    mean_grid_w = sum(r["grid_power_w"] for r in settled) / len(settled)
    assert mean_grid_w > -2_000.0
    assert min(r["grid_power_w"] for r in settled) > -15_000.0
    per = summary["simulator_stats"]["per_component"]
    assert per["5"]["accepted"] > 0
    assert per["6"]["accepted"] > 0


async def test_ev_limits_ranked_first_hold_the_import_limit_without_the_batteries(
    tmp_path: Path,
) -> None:
    # The rush at once (cars at 1..6 s), little sun: ~90 kW load + ~110 kW of cars
    # against a 120 kW import limit.
    rush = [("arrive_s = 900.0", "arrive_s = 1.0"), ("arrive_s = 920.0", "arrive_s = 2.0"),
            ("arrive_s = 950.0", "arrive_s = 3.0"), ("arrive_s = 980.0", "arrive_s = 4.0"),
            ("arrive_s = 1_000.0", "arrive_s = 5.0"), ("arrive_s = 1_020.0", "arrive_s = 6.0"),
            ("peak_irradiance_wm2 = 850.0", "peak_irradiance_wm2 = 100.0")]
    site = _site(tmp_path, *rush)
    order = 'kind_order = ["ev_charger", "battery_inverter", "pv_inverter"]'
    summary, rows = await _run(tmp_path, _config(tmp_path, site, order),
                               "--api-version", "v1alpha18")
    _no_setpoint_out_of_bounds(summary)
    assert summary["ev_energy_delivered_wh"] > 0
    per = summary["simulator_stats"]["per_component"]
    limits = [per[c]["last_setpoint_w"] for c in EV_IDS if c in per and per[c]["accepted"]]
    assert limits  # the chargers were limited ...
    assert all(lim == 0.0 or lim >= 4_140.0 - 1e-6 for lim in limits)  # never in (0, min)
    settled = rows[len(rows) // 3:]
    assert settled
    # ... so the grid stays at the limit and the batteries are not drained for the cars.
    assert max(r["grid_power_w"] for r in settled) < 120_000.0 + 15_000.0
    assert sum(r["grid_power_w"] for r in settled) / len(settled) < 120_000.0 + 2_000.0
    assert all(abs(r["battery_power_w"]) < 5_000.0 for r in settled)
