"""Scrape the Prometheus endpoint over real HTTP on 127.0.0.1 after observing records."""

from __future__ import annotations

import math
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.ops.metrics import MetricsError, MetricsExporter
from controller.runtime.records import GroupRecord


def scrape(exporter: MetricsExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """name + sorted labels → value, from a real HTTP GET of /metrics."""
    with urllib.request.urlopen(exporter.url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def exporter():
    with MetricsExporter(0) as metrics:
        yield metrics


def test_scrape_returns_named_metrics_with_plausible_values(
    exporter, run_records, make_record, group_names
) -> None:
    assert exporter.port > 0
    assert exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
    for record in run_records:
        exporter.observe_dispatch(record.dispatch_latency_ms / 1000.0)
        exporter.observe_cycle(record, cycle_duration_s=0.004)
    last = make_record(setpoints_sent=run_records[-1].setpoints_sent + 10)
    exporter.observe_cycle(last, cycle_duration_s=0.25)

    samples = scrape(exporter)
    cycles = len(run_records) + 1
    assert value(samples, "gridloop_cycle_duration_seconds_count") == cycles
    assert value(samples, "gridloop_cycle_duration_seconds_sum") == pytest.approx(
        0.004 * len(run_records) + 0.25
    )
    assert value(samples, "gridloop_cycle_duration_seconds_bucket", le="0.005") == len(run_records)
    assert value(samples, "gridloop_cycle_duration_seconds_bucket", le="+Inf") == cycles
    assert value(samples, "gridloop_dispatch_latency_seconds_count") == len(run_records)
    # synthetic latencies are 2.0 .. 3.8 ms: all within the 5 ms bucket, none within 1 ms
    assert value(samples, "gridloop_dispatch_latency_seconds_bucket", le="0.001") == 0
    assert value(samples, "gridloop_dispatch_latency_seconds_bucket", le="0.005") == len(
        run_records
    )
    assert value(samples, "gridloop_dispatch_latency_p50_seconds") == pytest.approx(0.0029)
    assert value(samples, "gridloop_dispatch_latency_p99_seconds") == pytest.approx(0.0081)

    assert value(samples, "gridloop_setpoints_sent_total") == last.setpoints_sent
    assert value(samples, "gridloop_setpoints_failed_total", reason="unknown") == 2
    assert value(samples, "gridloop_cycle_overruns_total") == 1
    assert value(samples, "gridloop_grid_power_watts") == 48_200.0
    assert value(samples, "gridloop_uncontrolled_power_watts") == 61_000.0
    assert value(samples, "gridloop_battery_power_watts") == -12_800.0
    assert value(samples, "gridloop_battery_target_watts") == -13_000.0
    assert value(samples, "gridloop_import_limit_watts") == 50_000.0
    assert value(samples, "gridloop_grid_frequency_hertz") == pytest.approx(49.912)
    assert value(samples, "gridloop_fr_required_watts") == -5_000.0
    assert value(samples, "gridloop_fr_delivered_watts") == -4_900.0
    g1, g2 = group_names
    assert value(samples, "gridloop_group_soc_percent", group=g1) == pytest.approx(55.2)
    assert value(samples, "gridloop_group_setpoint_watts", group=g1) == -6_000.0
    assert value(samples, "gridloop_group_power_watts", group=g1) == -5_900.0
    assert value(samples, "gridloop_group_healthy", group=g1) == 1.0
    assert value(samples, "gridloop_group_healthy", group=g2) == 0.0
    assert value(samples, "gridloop_component_excluded", component_id="20") == 1.0
    assert value(samples, "gridloop_components_excluded") == 1.0


def test_before_the_first_cycle_readings_are_unknown(exporter) -> None:
    samples = scrape(exporter)
    assert math.isnan(value(samples, "gridloop_grid_power_watts"))
    assert math.isnan(value(samples, "gridloop_grid_frequency_hertz"))
    assert value(samples, "gridloop_setpoints_sent_total") == 0
    assert value(samples, "gridloop_components_excluded") == 0


def test_recovered_component_goes_back_to_zero(exporter, make_record) -> None:
    exporter.observe_cycle(make_record(), 0.001)
    exporter.observe_cycle(make_record(excluded={}), 0.001)
    samples = scrape(exporter)
    assert value(samples, "gridloop_component_excluded", component_id="20") == 0.0
    assert value(samples, "gridloop_components_excluded") == 0.0


def test_counters_follow_cumulative_record_counts(exporter, make_record) -> None:
    for sent, failed, overruns in [(10, 0, 0), (20, 1, 0), (20, 1, 2), (35, 3, 2)]:
        exporter.observe_cycle(
            make_record(setpoints_sent=sent, setpoints_failed=failed, cycle_overruns=overruns),
            0.001,
        )
    samples = scrape(exporter)
    assert value(samples, "gridloop_setpoints_sent_total") == 35
    assert value(samples, "gridloop_setpoints_failed_total", reason="unknown") == 3
    assert value(samples, "gridloop_cycle_overruns_total") == 2


def test_dispatch_latency_from_records_when_not_observed(exporter, make_record) -> None:
    """Without observe_dispatch, a record whose setpoints_sent rose adds its latency."""
    for sent, latency_ms in [(0, 9.0), (4, 1.5), (4, 7.0), (8, 30.0), (12, math.nan)]:
        exporter.observe_cycle(
            make_record(setpoints_sent=sent, dispatch_latency_ms=latency_ms), 0.001
        )
    samples = scrape(exporter)
    assert value(samples, "gridloop_dispatch_latency_seconds_count") == 2  # 1.5 ms and 30 ms
    assert value(samples, "gridloop_dispatch_latency_seconds_sum") == pytest.approx(0.0315)
    assert value(samples, "gridloop_dispatch_latency_seconds_bucket", le="0.002") == 1


def test_explicit_counts_by_reason_take_over(exporter, make_record) -> None:
    exporter.count_setpoints(8, {"timeout": 1, "rejected": 2})
    exporter.count_setpoints(8, {"timeout": 0})
    exporter.observe_cycle(make_record(setpoints_sent=1000, setpoints_failed=50), 0.001)
    samples = scrape(exporter)
    assert value(samples, "gridloop_setpoints_sent_total") == 16
    assert value(samples, "gridloop_setpoints_failed_total", reason="timeout") == 1
    assert value(samples, "gridloop_setpoints_failed_total", reason="rejected") == 2
    assert ("gridloop_setpoints_failed_total", (("reason", "unknown"),)) not in samples


def test_unknown_values_and_bad_durations_do_not_raise(exporter, make_record) -> None:
    exporter.observe_dispatch(-1.0)
    exporter.observe_dispatch(math.inf)
    exporter.observe_cycle(
        make_record(
            frequency_hz=math.nan,
            import_limit_w=math.nan,
            groups=(GroupRecord("x", math.nan, 0.0, math.nan, True),),
        ),
        cycle_duration_s=math.nan,
    )
    samples = scrape(exporter)
    assert math.isnan(value(samples, "gridloop_grid_frequency_hertz"))
    assert math.isnan(value(samples, "gridloop_group_soc_percent", group="x"))
    assert value(samples, "gridloop_cycle_duration_seconds_count") == 0
    assert value(samples, "gridloop_dispatch_latency_seconds_count") == 0


def test_exporters_have_separate_registries(make_record) -> None:
    with MetricsExporter(0) as first, MetricsExporter(0) as second:
        first.observe_cycle(make_record(grid_power_w=1.0), 0.001)
        second.observe_cycle(make_record(grid_power_w=2.0), 0.001)
        assert value(scrape(first), "gridloop_grid_power_watts") == 1.0
        assert value(scrape(second), "gridloop_grid_power_watts") == 2.0


def test_stop_closes_the_port() -> None:
    exporter = MetricsExporter(0)
    exporter.start()
    url = exporter.url
    assert exporter.serving
    exporter.stop()
    exporter.stop()  # idempotent
    assert not exporter.serving
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_port_in_use_names_host_and_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exporter = MetricsExporter(port)
        with pytest.raises(MetricsError, match=f"127.0.0.1:{port}"):
            exporter.start()
        assert not exporter.serving


@pytest.mark.parametrize("port", [-1, 65536, True, 80.0])
def test_bad_port(port) -> None:
    with pytest.raises(MetricsError, match="metrics port"):
        MetricsExporter(port)


def test_errors_join_the_project_error_tree() -> None:
    from actors import GridloopError
    from controller.ops.dashboard import DashboardError
    from controller.ops.logs import LogConfigError
    from controller.ops.recording import RecordingError
    from controller.ops.report import ReportError

    for error in (MetricsError, DashboardError, LogConfigError, RecordingError, ReportError):
        assert issubclass(error, GridloopError)


def test_the_api_version_in_use_is_a_labelled_gauge(exporter, make_record) -> None:
    exporter.observe_cycle(make_record(), 0.001)
    assert not [k for k in scrape(exporter) if k[0] == "gridloop_api_info"]  # not known yet
    exporter.observe_cycle(make_record(api_version="v1"), 0.001)
    assert value(scrape(exporter), "gridloop_api_info", version="v1") == 1.0


def test_schedule_gauges_follow_the_record(exporter, make_record) -> None:
    exporter.observe_cycle(make_record(fr_reserve_w=0.0), 0.001)
    samples = scrape(exporter)
    assert value(samples, "gridloop_fr_reserve_watts") == 0.0
    assert value(samples, "gridloop_fr_band_unreachable") == 0.0
    exporter.observe_cycle(
        make_record(fr_reserve_w=100_000.0, fr_band_unreachable=True, fr_band_warnings=1), 0.001
    )
    samples = scrape(exporter)
    assert value(samples, "gridloop_fr_reserve_watts") == 100_000.0
    assert value(samples, "gridloop_fr_band_unreachable") == 1.0
    assert value(samples, "gridloop_fr_band_warnings") == 1.0


def test_pv_caps_and_ev_limits_are_gauges(exporter, make_record) -> None:
    exporter.observe_cycle(make_record(pv_curtailed_w=45_300.0, pv_capped=2, ev_power_w=22e3,
                                       ev_limited=1, caps_w={5: -54e3, 51: 7e3}), 0.001)
    samples = scrape(exporter)
    assert value(samples, "gridloop_pv_curtailed_watts") == 45_300.0
    assert value(samples, "gridloop_pv_capped_inverters") == 2.0
    assert value(samples, "gridloop_ev_power_watts") == 22e3
    assert value(samples, "gridloop_ev_limited_chargers") == 1.0
    assert value(samples, "gridloop_component_cap_watts", component_id="5") == -54e3
    assert value(samples, "gridloop_component_cap_watts", component_id="51") == 7e3
    # Lifted: the cap is unknown (NaN), the gauge stays.
    exporter.observe_cycle(make_record(caps_w={5: -50e3}), 0.001)
    samples = scrape(exporter)
    assert math.isnan(value(samples, "gridloop_component_cap_watts", component_id="51"))
    assert value(samples, "gridloop_component_cap_watts", component_id="5") == -50e3
