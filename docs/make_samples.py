"""Make the README samples from a synthetic run: docs/report.png and docs/dashboard.txt.

    python docs/make_samples.py

The run is synthetic (a minute of made-up CycleRecords: a load peak above the
50 kW import limit, a frequency dip with frequency response, one battery group
briefly excluded), pushed through the project's own code paths: CsvRecorder
writes the CSV exactly as ``gridloop run --record`` does, ``gridloop report``
(``controller.report.main``) draws the PNG, and the dashboard is rendered by
``controller.dashboard.render_dashboard`` into a recorded rich console. Battery
capacities are tiny so that SoC visibly moves within a minute (the real
default run speeds the simulator's clock up instead). Replace the samples with
ones from a real ``gridloop run --record run.csv`` when possible.
"""

from __future__ import annotations

import io
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console

from controller.dashboard import render_dashboard
from controller.recording import CsvRecorder
from controller.records import CycleRecord, GroupRecord
from controller.report import main as report_main

DOCS = Path(__file__).resolve().parent
GROUPS = ("g1 inv 1003 / bat 1004", "g2 inv 1005 / bat 1006")
CAPACITY_WH = (2_000.0, 1_500.0)
MAX_POWER_W = (30_000.0, 20_000.0)
LIMIT_W = 50_000.0
FR_RESERVED_W = 20_000.0
STEP_S = 0.2
DASHBOARD_AT_S = 26.0


def droop_w(frequency_hz: float) -> float:
    """FCR-style linear droop: deadband 10 mHz, full reserve at ±200 mHz (+ = charging)."""
    deviation = frequency_hz - 50.0
    if abs(deviation) <= 0.010:
        return 0.0
    return FR_RESERVED_W * max(-1.0, min(1.0, deviation / 0.200))


def synthetic_run(cycles: int = 300) -> list[CycleRecord]:
    """A minute of control cycles (see the module docstring)."""
    rng = np.random.default_rng(7)
    soc = [62.0, 58.0]
    measured = [0.0, 0.0]
    freq_noise = 0.0
    latencies: list[float] = []
    sent = failed = 0
    records = []
    for k in range(cycles):
        t = k * STEP_S
        load = 38_000.0 + 22_000.0 * math.exp(-(((t - 30.0) / 12.0) ** 2))
        load += float(rng.normal(0.0, 600.0))
        freq_noise = 0.9 * freq_noise + float(rng.normal(0.0, 0.002))
        dip = 0.0
        if 36.0 <= t <= 46.0:
            dip = -0.16 * min(1.0, (t - 36.0) / 1.0, (46.0 - t) / 1.0)
        frequency = 50.0 + freq_noise + dip
        fr_required = droop_w(frequency)
        shave = min(0.0, LIMIT_W - load - fr_required)
        target = fr_required + shave
        if target == 0.0 and load < LIMIT_W - 8_000.0 and min(soc) < 60.0:
            target = 5_000.0  # recharge toward 60 % with headroom below the limit
        excluded = {1005: "setpoint timeout"} if 24.0 <= t < 28.0 else {}
        healthy = (True, not excluded)
        available = [m if ok else 0.0 for m, ok in zip(MAX_POWER_W, healthy, strict=True)]
        share = [a / sum(available) for a in available]
        setpoints = [max(-a, min(a, target * s)) for a, s in zip(available, share, strict=True)]
        for i in range(2):  # first-order inverter response, tau 0.4 s
            measured[i] += (setpoints[i] - measured[i]) * (1.0 - math.exp(-STEP_S / 0.4))
            soc[i] += measured[i] * STEP_S / 3600.0 / CAPACITY_WH[i] * 100.0
        battery = sum(measured)
        sent += sum(healthy)
        if excluded and abs(t - 24.0) < 1e-9:
            failed += 1
        latencies.append(float(rng.lognormal(math.log(2.6), 0.3)))
        fr_delivered = fr_required + (battery - target) if fr_required else 0.0
        records.append(
            CycleRecord(
                time_s=t,
                unix_time_s=1_795_000_000.0 + t,
                grid_power_w=load + battery,
                uncontrolled_power_w=load,
                battery_power_w=battery,
                battery_target_w=target,
                frequency_hz=frequency,
                fr_required_w=fr_required,
                fr_delivered_w=fr_delivered,
                import_limit_w=LIMIT_W,
                groups=tuple(
                    GroupRecord(
                        name,
                        soc[i],
                        setpoints[i],
                        measured[i],
                        healthy[i],
                        "" if healthy[i] else "setpoint timeout",
                    )
                    for i, name in enumerate(GROUPS)
                ),
                dispatch_latency_ms=latencies[-1],
                latency_p50_ms=float(np.percentile(latencies, 50)),
                latency_p99_ms=float(np.percentile(latencies, 99)),
                setpoints_sent=sent,
                setpoints_failed=failed,
                cycle_overruns=0,
                excluded=excluded,
            )
        )
    return records


def main() -> int:
    """Write docs/report.png and docs/dashboard.txt."""
    records = synthetic_run()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "run.csv"
        with CsvRecorder(csv_path, GROUPS) as recorder:
            for record in records:
                recorder.write(record)
        status = report_main(
            [str(csv_path), "-o", str(DOCS / "report.png"), "--dpi", "80",
             "--title", "gridloop run --record run.csv (synthetic sample)"]
        )  # fmt: skip
        if status:
            return status
    index = round(DASHBOARD_AT_S / STEP_S)
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    console.print(render_dashboard(records[index], records[: index + 1]))
    text = console.export_text()
    (DOCS / "dashboard.txt").write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
