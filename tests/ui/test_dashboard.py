"""The dashboard rendered into a captured rich console from recorded states."""

from __future__ import annotations

import io
import logging
import math
import threading
import time

import pytest
from rich.console import Console

import controller.ops.dashboard as dashboard_module
from controller.ops.dashboard import (
    DashboardError,
    LiveDashboard,
    LogLine,
    render_dashboard,
    summary_line,
)
from controller.runtime.records import CycleRecord, GroupRecord


def render_text(
    record: CycleRecord, history: list[CycleRecord] | None = None, width: int = 120
) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(render_dashboard(record, history))
    return console.export_text()


def line_with(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, f"expected one line with {needle!r}, got {lines}"
    return lines[0]


def test_dashboard_shows_grid_limit_and_uncontrolled(make_record) -> None:
    text = render_text(make_record())
    grid = line_with(text, "grid power")
    assert "+48.2 kW" in grid
    assert "within limit" in grid
    assert "+61.0 kW" in line_with(text, "uncontrolled ")
    assert "import limit 50.0 kW" in text
    battery = line_with(text, "battery fleet")
    assert "-12.8 kW" in battery
    assert "target -13.0 kW" in battery


def test_dashboard_flags_import_above_limit(make_record) -> None:
    text = render_text(make_record(grid_power_w=53_000.0))
    assert "ABOVE LIMIT (+6 %)" in line_with(text, "grid power")
    assert "within limit" not in text


def test_dashboard_small_overshoot_is_at_limit(make_record) -> None:
    text = render_text(make_record(grid_power_w=50_400.0))
    assert "at limit (+0.8 %)" in line_with(text, "grid power")
    assert "ABOVE" not in text


def test_dashboard_flags_export_above_limit(make_record) -> None:
    text = render_text(make_record(grid_power_w=-12_000.0, export_limit_w=10_000.0))
    assert "ABOVE EXPORT LIMIT" in text
    assert "export limit 10.0 kW" in text


def test_dashboard_shows_frequency_and_fr_required_vs_delivered(make_record) -> None:
    text = render_text(make_record())
    assert "49.912 Hz" in text
    assert "-88 mHz" in line_with(text, "49.912 Hz")
    assert "-5.0 kW" in line_with(text, "FR required")
    assert "-4.9 kW" in line_with(text, "FR delivered")
    assert "98 %" in line_with(text, "delivered share")


def test_dashboard_60hz_grid_deviation(make_record) -> None:
    text = render_text(make_record(frequency_hz=60.02))
    assert "+20 mHz" in line_with(text, "60.020 Hz")


def test_dashboard_one_row_per_group_with_unhealthy_marker(make_record, group_names) -> None:
    text = render_text(make_record())
    g1 = line_with(text, group_names[0])
    assert "55.2 %" in g1
    assert "-6.0 kW" in g1
    assert "-5.9 kW" in g1
    assert "✔ ok" in g1
    assert "EXCLUDED" not in g1
    g2 = line_with(text, group_names[1])
    assert "48.0 %" in g2
    assert "✘ EXCLUDED: setpoint timeout" in g2


def test_dashboard_shows_latency_counters_overruns_and_excluded(make_record) -> None:
    text = render_text(make_record())
    latency = line_with(text, "latency (ms)")
    assert "p50 2.9" in latency
    assert "p99 8.1" in latency
    assert "last 3.2" in latency
    setpoints = line_with(text, "setpoints")
    assert "1234 sent" in setpoints
    assert "2 failed" in setpoints
    assert "1" in line_with(text, "cycle overruns").split("cycle overruns")[1]
    assert "#20 setpoint timeout" in line_with(text, "excluded  ")


def test_dashboard_all_healthy_says_none_excluded(make_record) -> None:
    groups = tuple(
        GroupRecord(g.name, g.soc_pct, g.setpoint_w, g.power_w, True) for g in make_record().groups
    )
    text = render_text(make_record(groups=groups, excluded={}, setpoints_failed=0))
    assert "EXCLUDED" not in text
    assert "none" in line_with(text, "excluded  ")


def test_dashboard_unknown_values_show_dash_not_nan(make_record) -> None:
    record = make_record(
        frequency_hz=math.nan,
        import_limit_w=math.nan,
        latency_p50_ms=math.nan,
        latency_p99_ms=math.nan,
        dispatch_latency_ms=math.nan,
        groups=(GroupRecord("lonely", math.nan, 0.0, math.nan, True),),
    )
    text = render_text(record)
    assert "nan" not in text.lower()
    assert "—" in line_with(text, "│ frequency ").split("││")[0]
    assert "no import limit" in line_with(text, "grid power")
    assert "—" in line_with(text, "lonely")


def test_dashboard_without_groups(make_record) -> None:
    text = render_text(make_record(groups=()))
    assert "no battery groups" in text


def test_dashboard_fits_a_narrow_terminal(make_record, group_names) -> None:
    text = render_text(make_record(), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "✔ ok" in line_with(text, group_names[0])
    assert "EXCLUDED" in line_with(text, group_names[1])
    assert "p99 8.1" in text


def test_dashboard_trend_follows_history(make_record) -> None:
    history = [
        make_record(
            time_s=float(k),
            grid_power_w=1000.0 * k,
            uncontrolled_power_w=1000.0 * k,
            import_limit_w=math.nan,
        )
        for k in range(40)
    ]
    text = render_text(history[-1], history)
    trend = line_with(text, "trend grid").split("trend grid")[1].strip()
    sparkline = trend.split()[0]
    assert len(sparkline) == 32  # the last 32 cycles on a wide console
    assert sparkline == "".join(sorted(sparkline))  # rising power, rising blocks
    assert sparkline[-1] == "█"
    assert "last 32 cycles" in trend


def test_live_dashboard_update_stores_and_bounds_history(make_record) -> None:
    console = Console(record=True, width=120, file=io.StringIO(), color_system=None)
    dash = LiveDashboard(console, history_len=3)
    assert dash.latest is None
    assert "waiting for the first control cycle" in str(dash.renderable())
    for k in range(5):
        dash.update(make_record(time_s=float(k)))
    assert dash.latest is not None
    assert dash.latest.time_s == 4.0
    assert [r.time_s for r in dash.history] == [2.0, 3.0, 4.0]


def test_live_dashboard_draws_last_frame_on_exit(make_record) -> None:
    console = Console(record=True, width=120, file=io.StringIO(), color_system=None)
    with LiveDashboard(console) as dash:
        dash.update(make_record(grid_power_w=47_000.0))
    text = console.export_text()
    assert "+47.0 kW" in line_with(text, "grid power")


def test_live_dashboard_renders_in_its_own_thread(make_record, monkeypatch) -> None:
    """update() never renders; rich's refresh thread does, a few times a second."""
    render_threads: set[int] = set()
    real_render = dashboard_module.render_dashboard

    def spy(record, history=None):
        render_threads.add(threading.get_ident())
        return real_render(record, history)

    monkeypatch.setattr(dashboard_module, "render_dashboard", spy)
    console = Console(width=120, file=io.StringIO(), force_terminal=True, color_system=None)
    main_thread = threading.get_ident()
    with LiveDashboard(console, refresh_per_second=20.0) as dash:
        dash.update(make_record())
        assert render_threads == set()  # update() itself does not draw
        deadline = time.monotonic() + 10.0
        while not (render_threads - {main_thread}) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert render_threads - {main_thread}, "the refresh thread never rendered"


def test_live_dashboard_survives_a_render_error(make_record, monkeypatch, caplog) -> None:
    def broken(record, history=None):
        raise RuntimeError("kaputt")

    monkeypatch.setattr(dashboard_module, "render_dashboard", broken)
    dash = LiveDashboard(Console(file=io.StringIO()))
    dash.update(make_record())
    with caplog.at_level(logging.ERROR):
        assert "kaputt" in str(dash.renderable())
        assert "kaputt" in str(dash.renderable())
    assert len([r for r in caplog.records if "dashboard rendering failed" in r.message]) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"refresh_per_second": 0.0}, "refresh_per_second"),
        ({"refresh_per_second": math.nan}, "refresh_per_second"),
        ({"history_len": 0}, "history_len"),
    ],
)
def test_live_dashboard_rejects_bad_parameters(kwargs, field) -> None:
    with pytest.raises(DashboardError, match=field):
        LiveDashboard(Console(file=io.StringIO()), **kwargs)


def test_summary_line_is_one_concise_line(make_record) -> None:
    line = summary_line(make_record())
    assert "\n" not in line
    for part in (
        "t=12.0s",
        "grid=+48.2kW",
        "limit=50.0kW",
        "uncontrolled=+61.0kW",
        "battery=-12.8kW",
        "f=49.912Hz",
        "fr=-5.0/-4.9kW",
        "soc=48.0..55.2%",
        "lat_p50=2.9ms",
        "lat_p99=8.1ms",
        "sent=1234",
        "failed=2",
        "overruns=1",
        "excluded=1 (#20 setpoint timeout)",
    ):
        assert part in line


def test_summary_line_with_unknowns(make_record) -> None:
    line = summary_line(make_record(frequency_hz=math.nan, fr_required_w=math.nan, groups=()))
    assert "f=nan" in line
    assert "fr=nan/" in line
    assert "soc=" not in line


def test_log_line_logs_by_record_time(make_record, caplog) -> None:
    logger = logging.getLogger("gridloop.test.status")
    log_line = LogLine(logger, interval_s=5.0)
    with caplog.at_level(logging.INFO, logger="gridloop.test.status"):
        logged = [log_line.update(make_record(time_s=float(t))) for t in range(13)]
    assert [t for t, did in enumerate(logged) if did] == [0, 5, 10]
    assert len(caplog.records) == 3
    assert caplog.records[1].getMessage().startswith("t=5.0s ")


def test_log_line_rejects_negative_interval() -> None:
    with pytest.raises(DashboardError, match="interval_s"):
        LogLine(interval_s=-1.0)


def test_the_api_version_shows_in_the_log_line_and_the_header(make_record) -> None:
    assert " api=v1 " in summary_line(make_record(api_version="v1"))
    assert "api=" not in summary_line(make_record())
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(render_dashboard(make_record(api_version="v1alpha19"), ()))
    assert "Microgrid API v1alpha19" in console.export_text()


def test_pv_caps_and_ev_limits_show_in_dashboard_and_line(make_record) -> None:
    assert "PV / EV caps" not in render_text(make_record())  # none: no row
    assert "pv_curtailed=" not in summary_line(make_record())
    record = make_record(pv_curtailed_w=45_300.0, pv_capped=2, ev_power_w=22_000.0,
                         ev_limited=2, caps_w={5: -54_000.0, 51: 7_000.0, 52: 0.0})
    assert "PV 2 capped, 45.3 kW curtailed" in line_with(render_text(record), "PV / EV caps")
    row = dashboard_module._caps_text(record).plain  # the whole row (the panel wraps it)
    for part in ("EV 2 limited, 22.0 kW charging", "#5 -54.0 kW", "#51 +7.0 kW", "#52 paused"):
        assert part in row
    line = summary_line(record)
    for part in ("pv_curtailed=+45.3kW", "pv_capped=2", "ev=+22.0kW", "ev_limited=2"):
        assert part in line
