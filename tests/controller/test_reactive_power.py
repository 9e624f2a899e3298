"""The reactive-power strategy (fixed Q, cos φ, cos φ(P), Q(U) with its filter) and the
``[reactive_power]`` config section: cycle-by-cycle scenarios and one-line errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.runtime.config import ConfigError, config_from_dict, load_config
from controller.runtime.strategies import (
    ReactiveInputs,
    ReactivePower,
    ReactivePowerConfig,
    cos_phi_q_var,
    q_u_characteristic_var,
)

S_VA = 300_000.0  # the fleet's apparent rating in these scenarios


def _inputs(p_w: float = 0.0, u_v: float = 230.0) -> ReactiveInputs:
    return ReactiveInputs(active_power_w=p_w, voltage_v=u_v, apparent_rating_va=S_VA,
                          reactive_upper_var=100_000.0)


def test_fixed_q_is_the_configured_fleet_q() -> None:
    strat = ReactivePower(ReactivePowerConfig(enabled=True, mode="fixed_q", q_var=-20_000.0))
    assert strat.step(_inputs(), 0.0) == -20_000.0
    assert strat.step(_inputs(p_w=math.nan, u_v=math.nan), 1.0) == -20_000.0


@pytest.mark.parametrize(("excitation", "sign"), [("under", 1.0), ("over", -1.0)])
def test_cos_phi_follows_the_active_power_with_the_excitation_sign(
    excitation: str, sign: float
) -> None:
    cfg = ReactivePowerConfig(enabled=True, mode="cos_phi", cos_phi=0.8, excitation=excitation)
    strat = ReactivePower(cfg)
    # cos φ = 0.8 → tan φ = 0.75, whatever the direction of P.
    assert strat.step(_inputs(p_w=100_000.0), 0.0) == pytest.approx(sign * 75_000.0)
    assert strat.step(_inputs(p_w=-40_000.0), 1.0) == pytest.approx(sign * 30_000.0)
    assert cos_phi_q_var(math.nan, 0.8, excitation) == 0.0
    assert cos_phi_q_var(50_000.0, 1.0, excitation) == 0.0


def test_cos_phi_p_interpolates_the_characteristic() -> None:
    cfg = ReactivePowerConfig(enabled=True, mode="cos_phi_p",
                              cos_phi_p_points=((50.0, 1.0), (100.0, 0.8)), excitation="under")
    strat = ReactivePower(cfg)
    assert strat.step(_inputs(p_w=0.4 * S_VA), 0.0) == 0.0  # below 50 %: cos φ = 1
    assert strat.step(_inputs(p_w=S_VA), 1.0) == pytest.approx(0.75 * S_VA)  # 0.8 at 100 %
    # 75 % → cos φ = 0.9 (halfway), Q = P · tan(acos 0.9)
    q = strat.step(_inputs(p_w=-0.75 * S_VA), 2.0)
    assert q == pytest.approx(0.75 * S_VA * math.tan(math.acos(0.9)))
    assert strat.step(_inputs(p_w=1.2 * S_VA), 3.0) == pytest.approx(1.2 * S_VA * 0.75)


Q_U = ReactivePowerConfig(enabled=True, mode="q_u", nominal_voltage_v=230.0, deadband_pct=1.0,
                          slope_pct_per_pct=20.0, q_limit_pct=50.0, q_ref_var=100_000.0)


@pytest.mark.parametrize(
    ("dev_pct", "expected_var"),
    [
        (0.0, 0.0), (0.99, 0.0), (-0.99, 0.0),  # deadband
        (2.0, 20_000.0),  # 1 % beyond × 20 %/% × 100 kVAr: absorb (lower U)
        (-2.0, -20_000.0),  # deliver (raise U)
        (3.5, 50_000.0), (10.0, 50_000.0), (-10.0, -50_000.0),  # limited to 50 %
    ],
)
def test_q_u_characteristic(dev_pct: float, expected_var: float) -> None:
    u = 230.0 * (1.0 + dev_pct / 100.0)
    assert q_u_characteristic_var(u, Q_U, 100_000.0) == pytest.approx(expected_var, abs=1e-6)


def test_q_u_reference_defaults_to_the_fleet_rating() -> None:
    strat = ReactivePower(ReactivePowerConfig(enabled=True, mode="q_u"))
    assert strat.q_ref_var(_inputs()) == S_VA
    no_rating = ReactiveInputs(0.0, 230.0, math.nan, 80_000.0)
    assert strat.q_ref_var(no_rating) == 80_000.0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(tau=st.floats(0.5, 60.0), step_pct=st.floats(1.5, 8.0), dt=st.floats(0.05, 1.0))
def test_q_u_filter_settles_within_5_pct_in_three_time_constants(
    tau: float, step_pct: float, dt: float
) -> None:
    cfg = ReactivePowerConfig(enabled=True, mode="q_u", q_ref_var=100_000.0,
                              time_constant_s=tau, deadband_pct=1.0, slope_pct_per_pct=10.0)
    strat = ReactivePower(cfg)
    t = 1_000.0
    assert strat.step(_inputs(u_v=230.0), t) == 0.0  # at nominal: nothing
    u = 230.0 * (1.0 + step_pct / 100.0)
    final = q_u_characteristic_var(u, cfg, 100_000.0)
    steps = math.ceil(3.0 * tau / dt)
    qs = [strat.step(_inputs(u_v=u), t + k * dt) for k in range(1, steps + 1)]
    assert abs(qs[-1] - final) <= 0.05 * abs(final)  # settled within 5 % after 3 τ
    assert all(0.0 <= a <= b <= final + 1e-9 for a, b in itertools.pairwise(qs))
    # The first-order step response itself: Q(t) = Q* · (1 − exp(−t / τ)), not a jump.
    for k, q in enumerate(qs, start=1):
        assert q == pytest.approx(final * (1.0 - math.exp(-k * dt / tau)), rel=1e-9)


def test_q_u_holds_on_an_unknown_voltage_and_ignores_time_going_back() -> None:
    strat = ReactivePower(Q_U)
    strat.step(_inputs(u_v=240.0), 0.0)
    q1 = strat.step(_inputs(u_v=240.0), 5.0)
    assert q1 > 0
    assert strat.step(_inputs(u_v=math.nan), 6.0) == q1
    assert strat.step(_inputs(u_v=240.0), 4.0) == q1  # no step back in time


# --------------------------------------------------------------------------- config


def test_config_section_reads_every_mode(tmp_path: Path) -> None:
    cfg = config_from_dict({"reactive_power": {
        "enabled": True, "mode": "cos_phi_p", "priority": "q_first", "excitation": "over",
        "cos_phi_p_points": [[0, 1], [100, 0.9]], "voltage_band_pct": 4,
    }})
    rp = cfg.reactive_power
    assert rp.enabled
    assert rp.priority == "q_first"
    assert rp.cos_phi_p_points == ((0.0, 1.0), (100.0, 0.9))
    assert not load_config(None).reactive_power.enabled  # off by default


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('mode = "q_of_u"', 'reactive_power.mode = "q_of_u": must be one of: fixed_q'),
        ('priority = "both"', 'reactive_power.priority = "both": must be one of: p_first'),
        ('mode = "cos_phi"\ncos_phi = 1.2', "reactive_power.cos_phi = 1.2: must be <= 1"),
        ('mode = "cos_phi"\ncos_phi = 0', "reactive_power.cos_phi = 0: must be > 0"),
        ('mode = "cos_phi"\nexcitation = "lagging"',
         'reactive_power.excitation = "lagging": must be one of: under, over'),
        ("time_constant_s = 0", "reactive_power.time_constant_s = 0: must be > 0"),
        ("deadband_pct = -1", "reactive_power.deadband_pct = -1: must be in [0, 20]"),
        ("q_limit_pct = 150", "reactive_power.q_limit_pct = 150: must be <= 100"),
        ("q_ref_var = nan", "reactive_power.q_ref_var = nan: must be a finite number"),
        ('mode = "q_u"\nq_var = 5.0',
         "reactive_power.q_var = 5.0: only valid with mode = 'fixed_q' (mode is 'q_u')"),
        ('mode = "fixed_q"\nslope_pct_per_pct = 5.0',
         "reactive_power.slope_pct_per_pct = 5.0: only valid with mode = 'q_u'"),
        ('mode = "cos_phi_p"\ncos_phi_p_points = [[50, 1.0], [40, 0.9]]',
         "reactive_power.cos_phi_p_points[1] = [40, 0.9]: p_pct must be > the previous"),
        ('mode = "cos_phi_p"\ncos_phi_p_points = [[50, 1.5]]',
         "reactive_power.cos_phi_p_points[0] = [50, 1.5]: cos_phi must be in (0, 1]"),
        ('mode = "cos_phi_p"\ncos_phi_p_points = [[50, "x"]]',
         "reactive_power.cos_phi_p_points[0] = [50, 'x']: must be a pair of finite numbers"),
        ('mode = "cos_phi_p"\ncos_phi_p_points = []',
         "reactive_power.cos_phi_p_points = []: must be a non-empty list"),
        ("enabled = 1", "reactive_power.enabled = 1: must be true or false"),
        ("volts = 230", "reactive_power.volts = 230: unknown key"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[reactive_power]\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert expected in text
