"""The PV / EV site replay: its measures on hand-made traces, its CLI, one short run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from controller.lab.replay.cli import main
from controller.lab.replay.site_metrics import (
    EvRef,
    comply_times,
    curtailed_storable_wh,
    ev_allowed_wh,
    load_drops,
    longest_run_below,
    window_means,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zero_export_with_ev.toml"
HOUR = 3600.0


def a(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# ------------------------------------------------------------------ measures by hand


def test_window_means_are_exact_across_boundaries() -> None:
    # 0 -> 3 W over 1.5 s, back to 0 at 3 s: windows of 1 s.
    means = window_means(a(0.0, 1.5, 3.0), a(0.0, 3.0, 0.0), 1.0, 3)
    # [0,1): 0->2, mean 1; [1,2): 2->3->2, mean 2.5; [2,3): 2->0, mean 1.
    np.testing.assert_allclose(means, [1.0, 2.5, 1.0])


def test_window_means_of_a_window_not_reached_is_nan() -> None:
    means = window_means(a(0.0, 1.0), a(5.0, 5.0), 1.0, 2)
    assert means[0] == 5.0
    assert math.isnan(means[1])


def test_longest_run_below_interpolates_the_crossings() -> None:
    # Below -100 W from t = 5 s (halfway to -200) to t = 25 s: 20 s.
    t, g = a(0, 10, 20, 30), a(0, -200, -200, 0)
    assert longest_run_below(t, g, -100.0) == pytest.approx(20.0)
    assert longest_run_below(t, g, -300.0) == 0.0


def test_load_drops_group_falling_samples_and_keep_the_large_ones() -> None:
    # A fall of 100 W from sample 1 (t = 1 s), one of 40 W from sample 6 (too small).
    drops = load_drops(a(100, 100, 50, 0, 0, 80, 80, 40), 1.0, 60.0)
    np.testing.assert_allclose(drops, [1.0])


def test_comply_time_runs_to_the_export_back_within_the_limit() -> None:
    # Drop at 10 s; the site exports 1 kW from 12 s to 20 s, back to 0 W at 30 s: it
    # crosses limit + tolerance (-100 W) at 29 s.
    t, g = a(0, 10, 12, 20, 30, 40), a(0, 0, -1000, -1000, 0, 0)
    times, failed = comply_times(t, g, a(10.0), 0.0, 100.0, 900.0, 60.0)
    assert times[0] == pytest.approx(19.0)
    assert failed == 0
    # With a 15-s window it is still exporting at its end: not complied, the whole window.
    times, failed = comply_times(t, g, a(10.0), 0.0, 100.0, 15.0, 60.0)
    assert times[0] == pytest.approx(15.0)
    assert failed == 1
    # A later excess, after a minute within the limit, is not the drop's.
    t2 = np.concatenate([t, a(200, 201, 202)])
    g2 = np.concatenate([g, a(0, -5000, 0)])
    times, failed = comply_times(t2, g2, a(10.0), 0.0, 100.0, 900.0, 60.0)
    assert times[0] == pytest.approx(19.0)
    assert failed == 0
    # ... one within the minute is: the excursion goes on until 201.98 s.
    times, failed = comply_times(t2, g2, a(10.0), 0.0, 100.0, 900.0, 200.0)
    assert times[0] == pytest.approx(201.98 - 10.0)
    # No export at all: 0.
    times, failed = comply_times(t, np.zeros(6), a(10.0), 0.0, 100.0, 900.0, 60.0)
    assert times[0] == 0.0
    assert failed == 0


def test_curtailment_while_the_batteries_are_full_is_not_storable() -> None:
    t = a(0.0, HOUR, 2 * HOUR)
    pv, avail = np.full(3, -50_000.0), np.full(3, -100_000.0)  # 50 kW curtailed for 2 h
    full = curtailed_storable_wh(t, pv, avail, np.zeros(3), np.zeros(3))
    assert full == 0.0
    at_limit = curtailed_storable_wh(t, pv, avail, np.full(3, 20_000.0), np.full(3, 20_000.0))
    assert at_limit == 0.0


def test_curtailment_while_the_batteries_had_headroom_counts() -> None:
    t = a(0.0, HOUR, 2 * HOUR)
    pv, avail = np.full(3, -50_000.0), np.full(3, -100_000.0)
    # 20 kW of charge headroom: 20 kW of the 50 kW could have been stored, for 2 h.
    got = curtailed_storable_wh(t, pv, avail, np.zeros(3), np.full(3, 20_000.0))
    assert got == pytest.approx(40_000.0)
    # More headroom than curtailment: all of it.
    got = curtailed_storable_wh(t, pv, avail, np.zeros(3), np.full(3, 90_000.0))
    assert got == pytest.approx(100_000.0)
    # No curtailment: nothing.
    assert curtailed_storable_wh(t, avail, avail, np.zeros(3), np.full(3, 9e4)) == 0.0


def _car(request_wh: float = 11_000.0, stay_h: float = 2.0) -> EvRef:
    return EvRef(0.0, stay_h * HOUR, request_wh, 11_000.0, 4_140.0)


def test_ev_allowed_is_the_request_when_the_limit_does_not_bind() -> None:
    got = ev_allowed_wh([_car()], lambda t: 1e9, 4 * HOUR, 60.0, 80.0)
    assert got[0] == pytest.approx(11_000.0)


def test_ev_allowed_is_what_the_headroom_lets_through() -> None:
    # 5 kW of headroom for 2 h: 10 kWh (the car takes >= 5 kW until 10/11 of its request).
    got = ev_allowed_wh([_car()], lambda t: 5_000.0, 4 * HOUR, 60.0, 80.0)
    assert got[0] == pytest.approx(10_000.0)
    # A negative headroom (the site already above the limit) allows nothing.
    assert ev_allowed_wh([_car()], lambda t: -1.0, 4 * HOUR, 60.0, 80.0)[0] == 0.0


def test_ev_allowed_shares_the_headroom_equally() -> None:
    # Two cars, 11 kW of headroom for 1 h: 5.5 kWh each.
    cars = [_car(stay_h=1.0), _car(stay_h=1.0)]
    got = ev_allowed_wh(cars, lambda t: 11_000.0, 2 * HOUR, 60.0, 80.0)
    np.testing.assert_allclose(got, [5_500.0, 5_500.0])


# ------------------------------------------------------------------ the command


@pytest.mark.parametrize(("extra", "flag"), [
    (["--days", "-1"], "--days"),
    (["--days", "nan"], "--days"),
    (["--limit", "5000"], "--limit"),
    (["--fr-trace", "none"], "--fr-trace"),
    (["--load-csv", "/nonexistent/load.csv"], "/nonexistent/load.csv"),
])
def test_bad_input_is_one_line_naming_the_flag(extra: list[str], flag: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--config", str(EXAMPLE), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1
    assert flag in err
    assert "Traceback" not in err


def test_two_hours_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled site's first two hours: the export event (t = 600 s) and the charging
    rush (t = 900 s) through the production cycle; every setpoint within bounds."""
    out = tmp_path / "site.json"
    rc = main(["--config", str(EXAMPLE), "--days", str(2 / 24), "--summary-json", str(out),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(out.read_text())
    for key in ("export_intervals_above_limit", "pv_curtailed_storable_pct",
                "ev_energy_delivered_pct", "import_intervals_above_limit",
                "export_excess_1s_max_w", "export_excess_15min_max_w",
                "export_comply_time_max_s", "export_excess_longest_s", "control_cycles",
                "targets", "targets_met"):
        assert key in data, key
    assert data["setpoints_refused"] == 0
    assert data["intervals_total"] == 8
    assert data["load_drops"] == 1  # the export event
    assert data["ev_sessions"] >= 4  # the rush's short stays leave within two hours
    assert data["export_limit_w"] == 0.0
    assert data["import_limit_w"] == 120_000.0
    assert 0.0 <= data["pv_curtailed_storable_pct"] <= 100.0
    assert "PV / EV site replay" in captured.out


def test_a_load_profile_turns_the_clear_sky_day_to_its_clock() -> None:
    """The bundled site's PV day starts at noon; a profile from midnight sees the sun at
    noon, not at midnight."""
    from controller.lab.replay.loader import BUNDLED_PROFILES, load_profile
    from controller.lab.replay.site import _irradiance
    from controller.runtime.config import load_config
    from simulator.config import load_site

    site = load_site(load_config(EXAMPLE).simulator.site)
    own, _ = _irradiance(site, None)
    np.testing.assert_array_equal(own.irradiance_wm2, site.pv.irradiance_wm2)  # t = 0: noon
    load = load_profile(BUNDLED_PROFILES["galvanization"], start="2017-06-05", days=1.0)
    pv, what = _irradiance(site, load)
    per_hour = round(HOUR / pv.step_s)
    assert pv.irradiance_wm2[0] == 0.0  # midnight
    assert pv.irradiance_wm2[13 * per_hour] == pytest.approx(850.0)  # 5:30 to 20:30 local
    assert "profile's clock" in what


def test_the_warm_up_is_cut_at_an_interpolated_vertex() -> None:
    from controller.lab.replay.site import _after

    cols = {"t": a(0.0, 4.0, 20.0), "grid": a(-100_000.0, 0.0, 0.0)}
    cut = _after(cols, 2.0)
    np.testing.assert_allclose(cut["t"], [2.0, 4.0, 20.0])
    np.testing.assert_allclose(cut["grid"], [-50_000.0, 0.0, 0.0])


def test_the_transport_publishes_ev_chargers_and_pv_inverters_like_the_decoder() -> None:
    """Every power row the service streams (battery and PV inverters, EV chargers) gets
    its power, bounds and state from the physics; without them the control would see no
    charger at all (nan power, no bounds: excluded)."""
    from actors import intervals_to_band
    from controller.lab.replay.transport import PhysicsTransport, replay_control
    from controller.runtime.config import load_config
    from simulator.config import load_site
    from simulator.physics import SitePhysics

    cfg = load_config(EXAMPLE)
    site = load_site(cfg.simulator.site)
    ph = SitePhysics(site, seed=0)
    ph.step(950.0)  # the rush: cars at chargers 51..53
    tr = PhysicsTransport(ph, replay_control(site, cfg))
    tr.publish(tr.now_ns())
    t = tr.control.core.state
    for cid in (5, 6, 51, 52, 56):
        row = t.row_of[cid]
        k = ph.inverter_row(cid)
        assert t.power_w[row] == ph.inverter_power_w[k], cid
        lo, hi, el, eu, ok = intervals_to_band(ph.active_power_bounds(cid))
        assert (t.power_lower_w[row], t.power_upper_w[row]) == (lo, hi), cid
        assert (t.power_excl_lower_w[row], t.power_excl_upper_w[row]) == (el, eu), cid
        assert t.has_bounds[row], cid
        assert t.bounds_ok[row] == ok, cid
    assert t.power_excl_upper_w[t.row_of[51]] == pytest.approx(4140.0)  # 6 A x 3 x 230 V
    assert tr.delay_s[54] == 2.0  # a charger's response delay: when its limit takes effect
