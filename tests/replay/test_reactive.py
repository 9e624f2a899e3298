"""The voltage-support replay: the transport applies Q, settling time, the summary keys."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from controller.lab.replay import stepping
from controller.lab.replay.cli import main
from controller.lab.replay.reactive import settling_time_s
from controller.lab.replay.transport import PhysicsTransport, replay_control
from controller.runtime.config import GridloopConfig, load_config
from simulator.config import load_site
from simulator.physics import SitePhysics

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "voltage_support.toml"


def _example() -> GridloopConfig:
    return load_config(EXAMPLE)


def test_transport_applies_the_cycles_reactive_target() -> None:
    cfg = _example()
    cfg = dataclasses.replace(cfg, reactive_power=dataclasses.replace(
        cfg.reactive_power, mode="fixed_q", q_var=-60_000.0))
    site = load_site(cfg.simulator.site)
    ph = SitePhysics(site, seed=0, max_step_s=0.1)
    control = replay_control(site, cfg)
    tr = PhysicsTransport(ph, control)
    bat = ph.inverter_is_battery
    for _ in range(10):
        due = tr.cycle()
        stepping.advance(ph, due, 1.0, 0.1, 0.1)
        # Every inverter within its momentary reactive bounds, the circle respected.
        q, p = ph.inverter_reactive_var[bat], ph.inverter_power_w[bat]
        assert np.all(np.abs(q) <= ph.inverter_reactive_limit_var[bat] + 1e-6)
        s = ph.inverter_rated_apparent_va[bat]
        assert np.all(np.hypot(p, q) <= s * (1 + 1e-9))
    assert control.cycle.q_target_var == pytest.approx(-60_000.0)
    assert float(ph.inverter_reactive_var[bat].sum()) == pytest.approx(-60_000.0, abs=1.0)
    assert tr.q_sent > 0
    assert tr.q_refused == {}
    # The telemetry the control saw carried the reactive metrics (the fleet's capability).
    m = control.core.measurements(tr.now_ns())
    assert m.reactive_var == pytest.approx(-60_000.0, abs=1.0)
    assert m.reactive_lower_var < -60_000.0 < m.reactive_upper_var
    assert math.isfinite(m.grid_voltage_v)


def test_settling_time_of_a_first_order_step() -> None:
    tau, c = 4.0, 80_000.0
    t = np.arange(0.0, 100.0, 0.5)
    q = np.where(t > 10.0, c * (1.0 - np.exp(-(t - 10.0) / tau)), 0.0)
    # Within 5 % once exp(-(t - 10) / tau) <= 0.05: t - 10 >= tau ln 20 = 11.98 s, so the
    # first sample on the 0.5 s grid is t = 22.0.
    assert settling_time_s(t, q, 10.0, math.inf, c, 0.05 * c) == pytest.approx(12.0)
    # Already there: the first sample after the step.
    assert settling_time_s(t, np.full(t.size, c), 10.0, math.inf, c, 1.0) == pytest.approx(0.5)
    # Leaves the band at the end of its window: never settled.
    assert math.isnan(settling_time_s(t, q, 10.0, 20.0, c, 0.05 * c))
    # No sample in the window.
    assert math.isnan(settling_time_s(t, q, 200.0, math.inf, c, 1.0))


def test_cli_routes_a_reactive_config_and_writes_the_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.json"
    # 468 s: both edges of the bundled site's voltage event (300 s, 420 s).
    rc = main(["--config", str(EXAMPLE), "--hours", "0.13", "--summary-json", str(out),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(out.read_text())
    assert data["reactive_setpoints_out_of_bounds"] == 0
    assert data["apparent_power_violations"] == 0
    assert data["reactive_setpoints_sent"] > 0
    assert 0.0 <= data["q_tracking_rms_pct"] < 5.0
    settling = data["q_settling_s"]
    assert len(settling["steps"]) == 2
    assert settling["target"] == pytest.approx(30.0)  # 3 τ of the example's 10 s
    assert all(math.isfinite(s) and s > 0 for s in settling["steps"])
    # On clean steps (the background walk off) both edges settle within 3 τ.
    assert settling["worst"] <= settling["target"]
    assert len(data["q_settling_in_noise_s"]) == 2
    assert data["voltage_in_band_pct"] > data["voltage_in_band_pct_without_reactive"]
    p = data["p_figures_with_vs_without_reactive"]
    assert set(p) == {"with_reactive", "without_reactive", "difference_pct"}
    assert set(p["difference_pct"]) == {"peak_import_w", "peak_interval_mean_import_w",
                                        "energy_above_limit_wh"}
    if not data["apparent_limit_binding"]:
        assert all(abs(d) <= 1.0 for d in p["difference_pct"].values())
        assert data["fleet_p_rms_difference_pct"] <= 1.0
    assert "Voltage support" in captured.out


@pytest.mark.parametrize(("argv", "expected"), [
    (["--config", str(EXAMPLE), "--hours", "0"], "--hours: must be a positive number, got 0.0"),
    (["--config", str(EXAMPLE), "--hours", "1", "--days", "1"],
     "--hours and --days: give one of them"),
    (["--hours", "1"], "--hours: only for a config with [reactive_power] enabled"),
])
def test_bad_reactive_flags_are_one_line_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"gridloop replay: {expected}\n"
