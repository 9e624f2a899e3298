"""Hand-built CycleRecords for the operator-experience tests (dashboard, CSV, report, metrics)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from controller.runtime.records import CycleRecord, GroupRecord

G1 = "g1 inv 10 / bat 11"
G2 = "g2 inv 20 / bat 21"

RecordFactory = Callable[..., CycleRecord]


def base_record() -> CycleRecord:
    """A peak-shaving moment: 61 kW of load cut to 48.2 kW, one group excluded."""
    return CycleRecord(
        time_s=12.0,
        unix_time_s=1_790_000_000.0,
        grid_power_w=48_200.0,
        uncontrolled_power_w=61_000.0,
        battery_power_w=-12_800.0,
        battery_target_w=-13_000.0,
        frequency_hz=49.912,
        fr_required_w=-5_000.0,
        fr_delivered_w=-4_900.0,
        import_limit_w=50_000.0,
        groups=(
            GroupRecord(G1, soc_pct=55.2, setpoint_w=-6_000.0, power_w=-5_900.0, healthy=True),
            GroupRecord(
                G2,
                soc_pct=48.0,
                setpoint_w=0.0,
                power_w=0.0,
                healthy=False,
                reason="setpoint timeout",
            ),
        ),
        dispatch_latency_ms=3.2,
        latency_p50_ms=2.9,
        latency_p99_ms=8.1,
        setpoints_sent=1234,
        setpoints_failed=2,
        cycle_overruns=1,
        excluded={20: "setpoint timeout"},
    )


@pytest.fixture
def make_record() -> RecordFactory:
    """``make_record(**changes)``: :func:`base_record` with fields replaced."""

    def make(**changes: Any) -> CycleRecord:
        return dataclasses.replace(base_record(), **changes)

    return make


def synthetic_run(cycles: int = 300, step_s: float = 0.2) -> list[CycleRecord]:
    """A run with a load peak above the limit and a frequency dip, SoC falling as it shaves."""
    limit_w = 50_000.0
    records = []
    soc = [60.0, 55.0]
    sent = 0
    for k in range(cycles):
        t = k * step_s
        load = 35_000.0 + 25_000.0 * math.exp(-(((t - 25.0) / 10.0) ** 2))
        freq = 50.0 - (0.15 if 35.0 <= t <= 45.0 else 0.0) + 0.005 * math.sin(t)
        fr_required = -20_000.0 * max(0.0, (50.0 - freq - 0.01) / 0.19)
        shave = min(0.0, limit_w - load)
        battery = shave + fr_required
        grid = load + battery
        per_group = battery / 2
        for i in range(2):
            soc[i] += per_group * step_s / 3600.0 / 100_000.0 * 100.0
        sent += 2
        records.append(
            CycleRecord(
                time_s=t,
                unix_time_s=1_790_000_000.0 + t,
                grid_power_w=grid,
                uncontrolled_power_w=load,
                battery_power_w=battery,
                battery_target_w=battery,
                frequency_hz=freq,
                fr_required_w=fr_required,
                fr_delivered_w=fr_required * 0.98,
                import_limit_w=limit_w,
                groups=(
                    GroupRecord(G1, soc[0], per_group, per_group, True),
                    GroupRecord(G2, soc[1], per_group, per_group, True),
                ),
                dispatch_latency_ms=2.0 + (k % 7) * 0.3,
                latency_p50_ms=2.9,
                latency_p99_ms=4.0,
                setpoints_sent=sent,
            )
        )
    return records


@pytest.fixture
def run_records() -> list[CycleRecord]:
    """A 60 s synthetic run (300 cycles of 200 ms)."""
    return synthetic_run()


@pytest.fixture
def group_names() -> tuple[str, str]:
    """The names of the two battery groups of every record here."""
    return (G1, G2)
