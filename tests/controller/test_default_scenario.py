"""The default configuration on a default-site-like scenario, closed loop, virtual time.

A toy plant (no gRPC, no sleeping): every 0.2 s both strategies step, the wishes
are merged and the fleet reaches the merged target one cycle later; the SoC
integrates the fleet power; the grid meter reads ``U + battery``.

Scenario (the bundled default site's first 20 minutes, simplified):
uncontrolled power U = 145 kW (180 kW load − 35 kW PV), ramping to 315 kW from
t = 600 s over 60 s, held until 1080 s, ramping back over 60 s; frequency 50 Hz
except a −150 mHz step from 300 s to 420 s.

Hand-derived expectations with the defaults (limit 250 kW, margin 10 kW,
recharge 50 kW toward 60 %, FR 100 kW linear 10/200 mHz):

* before the event: PS recharges min(50, 250 − 10 − 145) = 50 kW; grid 195 kW;
* during the event: FR = −100 × (0.150 − 0.010) / 0.190 = −73.68 kW, granted in
  full; PS still +50 (U unchanged) → grid = 145 + 50 − 73.68 = 121.3 kW;
* at the peak: PS = 250 − 315 = −65 kW → grid = 250 kW exactly, never above.
"""

from __future__ import annotations

import itertools
import math

import pytest

from actors.power_manager import merge
from controller.runtime.config import GridloopConfig
from controller.runtime.strategies import FrequencyResponse, PeakShaving, StrategyInputs

DT_S = 0.2
CAPACITY_WH = 730_000.0
FLEET_W = 350_000.0


def _uncontrolled_w(t: float) -> float:
    base, peak = 145_000.0, 170_000.0
    if t < 600:
        extra = 0.0
    elif t < 660:
        extra = peak * (t - 600) / 60
    elif t < 1080:
        extra = peak
    elif t < 1140:
        extra = peak * (1140 - t) / 60
    else:
        extra = 0.0
    return base + extra


def _frequency_hz(t: float) -> float:
    return 49.85 if 300 <= t < 420 else 50.0


def test_default_config_scenario() -> None:
    cfg = GridloopConfig()
    fr = FrequencyResponse(cfg.frequency_response)
    ps = PeakShaving(cfg.peak_shaving)
    soc = 51.0
    battery_w = 0.0
    target_w = 0.0
    log = []
    for k in range(int(1300 / DT_S)):
        t = k * DT_S
        battery_w = target_w  # one-cycle delay
        soc += battery_w * DT_S / 3600 / CAPACITY_WH * 100
        u = _uncontrolled_w(t)
        grid = u + battery_w
        inputs = StrategyInputs(
            grid_power_w=grid,
            battery_power_w=battery_w,
            grid_frequency_hz=_frequency_hz(t),
            soc_pct=soc,
            capacity_wh=CAPACITY_WH,
            soc_lower_pct=10.0,
            soc_upper_pct=90.0,
            fleet_lower_w=-FLEET_W if soc > 10 else 0.0,
            fleet_upper_w=FLEET_W if soc < 90 else 0.0,
        )
        result = merge([fr.step(inputs, t), ps.step(inputs, t)], -FLEET_W, FLEET_W)
        target_w = result.target_w
        log.append(
            (t, u, grid, result.granted["frequency_response"], result.granted["peak_shaving"])
        )

    def at(time_s: float) -> tuple[float, float, float, float, float]:
        return log[round(time_s / DT_S)]

    # Before the event: recharge 50 kW, grid 195 kW.
    _, _, grid, fr_w, ps_w = at(200.0)
    assert (fr_w, ps_w) == (0.0, 50_000.0)
    assert grid == pytest.approx(195_000.0)
    # During the event: FR granted its full droop power; PS unchanged.
    _, _, grid, fr_w, ps_w = at(360.0)
    assert fr_w == pytest.approx(-100_000.0 * 0.140 / 0.190)
    assert ps_w == 50_000.0
    assert grid == pytest.approx(145_000.0 + 50_000.0 + fr_w)
    # At the peak: PS discharges exactly the excess and the grid sits on the limit.
    _, u, grid, fr_w, ps_w = at(900.0)
    assert u == 315_000.0
    assert ps_w == pytest.approx(-65_000.0)
    assert grid == pytest.approx(250_000.0)
    # Never above the limit except while the load ramps faster than one cycle
    # (one-cycle delay: at most the load's rise in 0.2 s, 170 kW / 60 s × 0.2 s).
    ramp_step = 170_000.0 / 60 * DT_S
    assert max(g for _, _, g, _, _ in log) <= 250_000.0 + ramp_step + 1e-6
    # PS changes sign only twice: recharge → discharge at the ramp up and back after.
    signs = [math.copysign(1, p) for _, _, _, _, p in log if abs(p) > 1.0]
    assert sum(1 for a, b in itertools.pairwise(signs) if a != b) == 2
