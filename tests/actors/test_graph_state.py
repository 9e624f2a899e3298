"""Unit tests: URL parsing, component graph, bounds conversion, telemetry decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from frequenz.api.common.v1alpha8.metrics import bounds_pb2, metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec,
)

from actors import (
    ApiUrl,
    ComponentGraph,
    ComponentInfo,
    GraphError,
    Health,
    MicrogridApiClient,
    OptionsError,
    StateTable,
    api_key_problem,
    bounds_to_band,
)

GRID, METER, INV, BAT = 1, 2, 3, 5
BATT_INV, PV_INV = 1, 2


def test_url_parse() -> None:
    assert ApiUrl.parse("grpc://127.0.0.1:50051") == ApiUrl("127.0.0.1", 50051, False)
    assert ApiUrl.parse("grpc://example.com:443").ssl is True
    assert ApiUrl.parse("grpc://example.com:443?ssl=false").ssl is False
    assert str(ApiUrl.parse("grpc://localhost:1?ssl=true")) == "grpc://localhost:1?ssl=true"
    for bad, what in [
        ("http://h:1", "scheme"),
        ("grpc://h", "missing port"),
        ("grpc://:1", "missing host"),
        ("grpc://h:1?ssl=maybe", "ssl must be"),
        ("grpc://h:1?foo=1", "unknown query"),
        ("grpc://h:99999", "bad port"),
        ("grpc://[::1:1", "not a URL"),  # urlparse raises ValueError (unclosed [)
    ]:
        with pytest.raises(OptionsError, match=what) as info:
            ApiUrl.parse(bad)
        assert info.value.field == "url"


@pytest.mark.parametrize("key", ["top\nsecret", "top\u00e9secret", "top\x7fsecret"])
def test_client_refuses_an_api_key_grpc_cannot_send_without_showing_it(key: str) -> None:
    with pytest.raises(OptionsError) as info:
        MicrogridApiClient("grpc://127.0.0.1:1", api_key=key)
    assert info.value.field == "api_key"
    assert "secret" not in str(info.value)
    assert "printable ASCII" in str(info.value)
    assert api_key_problem("a-Key_0.9 ~!") is None


def _default_like() -> ComponentGraph:
    comps = [
        ComponentInfo(1, GRID),
        ComponentInfo(2, METER),  # grid meter
        ComponentInfo(10, INV, BATT_INV), ComponentInfo(11, BAT),  # 1:1
        ComponentInfo(20, INV, BATT_INV), ComponentInfo(21, INV, BATT_INV),
        ComponentInfo(22, BAT),  # 2:1
        ComponentInfo(30, INV, BATT_INV), ComponentInfo(31, BAT), ComponentInfo(32, BAT),  # 1:2
        ComponentInfo(40, METER), ComponentInfo(41, INV, PV_INV),  # PV
        ComponentInfo(50, METER),  # load
    ]
    conns = [(1, 2), (2, 10), (10, 11), (2, 20), (2, 21), (20, 22), (21, 22), (2, 30),
             (30, 31), (30, 32), (2, 40), (40, 41), (2, 50)]
    return ComponentGraph.build(comps, conns)


def test_graph_groups_and_roles() -> None:
    g = _default_like()
    assert [(x.inverter_ids, x.battery_ids) for x in g.groups] == [
        ((10,), (11,)), ((20, 21), (22,)), ((30,), (31, 32))]
    assert g.grid_meter_id == 2
    assert g.pv_inverter_ids == (41,)
    assert g.pv_meter_ids == (40,)
    assert g.load_meter_ids == (50,)
    assert set(g.streamed_ids) == {2, 10, 11, 20, 21, 22, 30, 31, 32, 41, 40, 50}


def test_graph_groups_follow_the_first_inverter_id_whatever_the_connection_order() -> None:
    comps = [ComponentInfo(c, INV, BATT_INV) for c in (7, 3, 9, 5)] + [
        ComponentInfo(c, BAT) for c in (8, 4, 6, 2)]
    # 3 and 9 share battery 4 (one link listed twice), 5 -> 2, 7 -> 8 and 6.
    conns = [(9, 4), (7, 8), (5, 2), (3, 4), (7, 6), (9, 4)]
    g = ComponentGraph.build(comps, conns)
    assert [(x.inverter_ids, x.battery_ids, x.links) for x in g.groups] == [
        ((3, 9), (4,), ((3, 4), (9, 4), (9, 4))),
        ((5,), (2,), ((5, 2),)),
        ((7,), (6, 8), ((7, 6), (7, 8))),
    ]


def test_graph_without_grid_point_uses_the_root_meter() -> None:
    g = ComponentGraph.build(
        [ComponentInfo(2, METER), ComponentInfo(10, INV, BATT_INV), ComponentInfo(11, BAT)],
        [(2, 10), (10, 11)],
    )
    assert g.grid_meter_id == 2
    assert g.load_meter_ids == ()


EV, BREAKER = 6, 7


def _grid_of(extra: list[ComponentInfo], conns: list[tuple[int, int]]) -> ComponentGraph:
    """A site with inverter 10 -> battery 11 and the given grid side."""
    comps = [ComponentInfo(10, INV, BATT_INV), ComponentInfo(11, BAT), *extra]
    return ComponentGraph.build(comps, [*conns, (10, 11)])


def test_grid_formula_is_the_sum_of_the_branches_leaving_the_grid_point() -> None:
    # The site: grid 1 -> meter 2 -> inverter 10 -> battery 11, grid 1 -> meter 3.
    two = _grid_of([ComponentInfo(1, GRID), ComponentInfo(2, METER), ComponentInfo(3, METER)],
                   [(1, 2), (2, 10), (1, 3)])
    assert two.grid.power_ids == (2, 3)
    assert two.grid.describe() == "grid = meter 2 + meter 3; frequency from meter 2, meter 3"
    assert two.grid.measurable
    assert two.grid.problem is None
    assert two.grid_meter_id is None  # no single meter measures this grid connection
    assert {2, 3} <= set(two.streamed_ids)
    assert two.load_meter_ids == ()  # meter 3 is a grid term
    # An inverter directly on the grid connection point: its own power is a term.
    inv = _grid_of([ComponentInfo(1, GRID), ComponentInfo(3, METER)], [(1, 10), (1, 3)])
    assert inv.grid.describe() == (
        "grid = meter 3 + inverter 10; frequency from meter 3, inverter 10")
    assert inv.streamed_ids[:2] == (3, 10)
    # No meter at all.
    bare = _grid_of([ComponentInfo(1, GRID)], [(1, 10)])
    assert bare.grid.describe() == "grid = inverter 10; frequency from inverter 10"
    assert bare.grid.measurable
    # No grid connection point listed: the roots are the branches.
    roots = _grid_of([ComponentInfo(2, METER), ComponentInfo(3, METER)], [(2, 10)])
    assert roots.grid.power_ids == (2, 3)
    # An EV charger on the grid connection point: its power, but no frequency.
    ev = _grid_of([ComponentInfo(1, GRID), ComponentInfo(2, METER), ComponentInfo(6, EV)],
                  [(1, 2), (2, 10), (1, 6)])
    assert ev.grid.describe() == "grid = meter 2 + EV charger 6; frequency from meter 2"


def test_grid_formula_of_a_single_grid_meter_is_unchanged() -> None:
    g = _default_like()
    assert g.grid.power_ids == (2,)
    assert g.grid.describe() == "grid = meter 2; frequency from meter 2"
    assert g.grid_meter_id == 2
    assert g.streamed_ids[0] == 2


def test_grid_formula_names_what_makes_the_grid_unmeasurable() -> None:
    breaker = _grid_of(
        [ComponentInfo(1, GRID), ComponentInfo(2, METER), ComponentInfo(7, BREAKER)],
        [(1, 2), (2, 10), (1, 7)],
    )
    assert not breaker.grid.measurable
    assert breaker.grid.problem == "no power telemetry from breaker 7 on the grid connection point"
    assert breaker.grid.describe() == (
        "grid = meter 2 + breaker 7 (no power telemetry); frequency from meter 2")
    assert 7 not in breaker.streamed_ids
    assert breaker.grid_meter_id is None
    alone = _grid_of([ComponentInfo(1, GRID), ComponentInfo(2, METER)], [(2, 10)])
    assert not alone.grid.measurable
    assert alone.grid.problem == "no component is connected to the grid connection point"
    assert alone.grid.describe() == "grid = nothing; frequency from nothing"


def test_graph_errors_name_component() -> None:
    with pytest.raises(GraphError, match="no battery"):
        ComponentGraph.build([ComponentInfo(1, GRID), ComponentInfo(2, METER)], [(1, 2)])
    with pytest.raises(GraphError, match="unknown component 99") as info:
        ComponentGraph.build([ComponentInfo(1, GRID)], [(1, 99)])
    assert info.value.component_id == 99
    with pytest.raises(GraphError, match="duplicate"):
        ComponentGraph.build([ComponentInfo(1, GRID), ComponentInfo(1, METER)], [])
    with pytest.raises(GraphError, match="PV inverter"):
        ComponentGraph.build([ComponentInfo(3, INV, PV_INV), ComponentInfo(4, BAT)], [(3, 4)])


def _b(lo: float | None, hi: float | None) -> bounds_pb2.Bounds:
    return bounds_pb2.Bounds(lower=lo, upper=hi)


def test_bounds_to_band() -> None:
    assert bounds_to_band([_b(-10, 20)]) == (-10, 20, 0.0, 0.0, True)
    assert bounds_to_band([_b(2, 20), _b(-10, -2)]) == (-10, 20, -2, 2, True)
    assert bounds_to_band([_b(-10, -2), _b(2, 20)]) == (-10, 20, -2, 2, True)
    # The simulator's "no charging at full SoC": the charge side collapses to [0, 0].
    assert bounds_to_band([_b(-10, -2), _b(0, 0)]) == (-10, 0, -2, 0, True)
    # 0 W is always allowed even when not listed.
    assert bounds_to_band([_b(5, 20)]) == (0, 20, 0, 5, True)
    assert bounds_to_band([_b(-20, -5)]) == (-20, 0, -5, 0, True)
    # Only the intervals next to 0 are used (a safe subset of the allowed set).
    assert bounds_to_band([_b(-30, -20), _b(-10, 10), _b(20, 30)]) == (-10, 10, 0, 0, True)
    assert bounds_to_band([_b(-10, 2), _b(1, 20)]) == (-10, 20, 0, 0, True)  # overlapping
    assert bounds_to_band([_b(None, 20)])[4] is False  # unbounded
    assert bounds_to_band([_b(float("nan"), 20)])[4] is False


def test_decode_into_table() -> None:
    t = StateTable([10, 11], [INV, BAT])
    tel = ec.ElectricalComponentTelemetry(electrical_component_id=10)
    s = tel.metric_samples.add(metric=metrics_pb2.METRIC_AC_POWER_ACTIVE)
    s.value.simple_metric.value = 1234.5
    s.sample_time.seconds = 7
    s.sample_time.nanos = 5
    s.bounds.extend([_b(-5000, -2000), _b(2000, 5000)])
    tel.state_snapshots.add(states=[ec.ELECTRICAL_COMPONENT_STATE_CODE_READY])
    t.decode(0, tel, 42)
    assert t.power_w[0] == 1234.5
    assert t.sample_time_ns[0] == 7_000_000_005
    assert (t.power_lower_w[0], t.power_upper_w[0]) == (-5000, 5000)
    assert (t.power_excl_lower_w[0], t.power_excl_upper_w[0]) == (-2000, 2000)
    assert t.bounds_ok[0]
    assert t.state_ok[0]
    assert t.received_ns[0] == 42

    bat = ec.ElectricalComponentTelemetry(electrical_component_id=11)
    s = bat.metric_samples.add(metric=metrics_pb2.METRIC_BATTERY_SOC_PCT)
    s.value.simple_metric.value = 55.0
    s.bounds.append(_b(10, 90))
    s = bat.metric_samples.add(metric=metrics_pb2.METRIC_BATTERY_CAPACITY)
    s.value.simple_metric.value = 100_000.0
    s = bat.metric_samples.add(metric=metrics_pb2.METRIC_DC_POWER)
    s.value.simple_metric.value = -10.0
    s.bounds.append(_b(-50_000, 40_000))
    snap = bat.state_snapshots.add(states=[ec.ELECTRICAL_COMPONENT_STATE_CODE_READY])
    snap.errors.add(diagnostic_code=ec.ELECTRICAL_COMPONENT_DIAGNOSTIC_CODE_OVERVOLTAGE)
    t.decode(1, bat, 43)
    assert (t.soc_pct[1], t.soc_lower_pct[1], t.soc_upper_pct[1]) == (55, 10, 90)
    assert t.capacity_wh[1] == 100_000
    assert (t.power_lower_w[1], t.power_upper_w[1], t.power_w[1]) == (-50_000, 40_000, -10)
    assert not t.state_ok[1]
    assert math.isnan(t.frequency_hz[1])


def _inverter_sample(power: float, *, bounds: bool = True) -> ec.ElectricalComponentTelemetry:
    tel = ec.ElectricalComponentTelemetry(electrical_component_id=10)
    s = tel.metric_samples.add(metric=metrics_pb2.METRIC_AC_POWER_ACTIVE)
    s.value.simple_metric.value = power
    if bounds:
        s.bounds.append(_b(-5000, 5000))
    return tel


def test_incomplete_or_non_finite_data_clears_data_ok_until_a_complete_message() -> None:
    t = StateTable([10, 11], [INV, BAT])
    h = Health(t, stale_after_s=10.0, retry_min_s=1.0, retry_max_s=2.0,
               bounds_required=np.array([True, False]))
    t.decode(0, _inverter_sample(100.0), 1)
    assert t.data_ok[0]
    assert t.bounds_ok[0]
    # Bounds missing: they may have changed, so they are unusable now.
    t.decode(0, _inverter_sample(100.0, bounds=False), 2)
    assert not t.bounds_ok[0]
    assert h.reasons(3) == {10: "unusable bounds", 11: "no data"}
    for bad in (math.nan, math.inf, -math.inf):
        t.decode(0, _inverter_sample(bad), 4)
        assert not t.data_ok[0]
        assert h.reasons(5)[10] == "bad data"
    # The power metric missing altogether.
    t.decode(0, ec.ElectricalComponentTelemetry(electrical_component_id=10), 6)
    assert not t.data_ok[0]
    t.decode(0, _inverter_sample(200.0), 7)
    assert t.data_ok[0]
    assert t.bounds_ok[0]
    assert 10 not in h.reasons(8)

    def battery(
        soc: float, cap: float | None, *, bounds: bool = True
    ) -> ec.ElectricalComponentTelemetry:
        bat = ec.ElectricalComponentTelemetry(electrical_component_id=11)
        s = bat.metric_samples.add(metric=metrics_pb2.METRIC_DC_POWER)
        s.value.simple_metric.value = 0.0
        if bounds:
            s.bounds.append(_b(-10_000, 10_000))
        s = bat.metric_samples.add(metric=metrics_pb2.METRIC_BATTERY_SOC_PCT)
        s.value.simple_metric.value = soc
        if bounds:
            s.bounds.append(_b(10, 90))
        if cap is not None:
            s = bat.metric_samples.add(metric=metrics_pb2.METRIC_BATTERY_CAPACITY)
            s.value.simple_metric.value = cap
        return bat

    t.decode(1, battery(50.0, 1e5), 9)
    assert t.data_ok[1]
    t.decode(1, battery(math.nan, 1e5), 10)
    assert not t.data_ok[1]
    t.decode(1, battery(50.0, None), 11)  # capacity missing
    assert not t.data_ok[1]
    t.decode(1, battery(50.0, 1e5, bounds=False), 11)  # power and SoC limits unknown
    assert not t.data_ok[1]
    assert h.reasons(12)[11] == "bad data"
    t.decode(1, battery(50.0, 1e5), 13)
    assert t.data_ok[1]
