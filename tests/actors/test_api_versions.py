"""The per-version adapters agree: what v1 says is read as what v1alpha18/19 says.

The same telemetry content, written as a v1alpha18 ``ElectricalComponentTelemetry``
and as a v1 ``ComponentData`` (with v1's metric numbers and field names), fills
the state table identically, for random and hostile content; v1 components and
connections become the runtime's model with their categories matched by meaning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1m
from frequenz.api.common.v1.microgrid.components import components_pb2 as v1c
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec,
)
from hostile import telemetry
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit import connect_site

from actors import (
    API_VERSIONS,
    MicrogridApiClient,
    MicrogridInfo,
    OptionsError,
    StateTable,
    check_api_version,
)
from actors._api_v1 import V1_WIRE, _component, category_from_v1

INV, BAT = 3, 5

# v1alpha8 metric -> v1 metric, for the metrics the state table reads.
_TO_V1 = {
    metrics_pb2.METRIC_AC_POWER_ACTIVE: v1m.METRIC_AC_ACTIVE_POWER,
    metrics_pb2.METRIC_DC_POWER: v1m.METRIC_DC_POWER,
    metrics_pb2.METRIC_BATTERY_SOC_PCT: v1m.METRIC_BATTERY_SOC_PCT,
    metrics_pb2.METRIC_BATTERY_CAPACITY: v1m.METRIC_BATTERY_CAPACITY,
    metrics_pb2.METRIC_AC_FREQUENCY: v1m.METRIC_AC_FREQUENCY,
}


def _as_v1(tel: ec.ElectricalComponentTelemetry) -> v1c.ComponentData:
    """The same content as a v1 ComponentData."""
    data = v1c.ComponentData(component_id=tel.electrical_component_id)
    for s in tel.metric_samples:
        sample = data.metric_samples.add(metric=_TO_V1[s.metric])  # type: ignore[arg-type]
        sample.sampled_at.CopyFrom(s.sample_time)
        if s.value.HasField("simple_metric"):
            sample.value.simple_metric.value = s.value.simple_metric.value
        for b in s.bounds:
            nb = sample.bounds.add()
            if b.HasField("lower"):
                nb.lower = b.lower
            if b.HasField("upper"):
                nb.upper = b.upper
    for snap in tel.state_snapshots:
        state = data.states.add(states=list(snap.states))  # type: ignore[arg-type]
        state.errors.extend([1] * len(snap.errors))  # type: ignore[list-item]
    return data


def _columns(table: StateTable) -> dict[str, np.ndarray]:
    return {k: v for k, v in vars(table).items() if isinstance(v, np.ndarray)}


@settings(max_examples=150, deadline=None)
@given(data=st.data(), battery=st.booleans())
def test_v1_telemetry_fills_the_table_as_v1alpha18_does(data: st.DataObject, battery: bool) -> None:
    ids, cats = [10], [BAT if battery else INV]
    alpha, v1 = StateTable(ids, cats), StateTable(ids, cats, V1_WIRE)
    # SoC and capacity are numbered differently in v1 (102, 101 vs 101, 100).
    assert (alpha.metrics[0] != v1.metrics[0]) == battery
    for now in range(1, 4):
        tel = data.draw(telemetry(10, battery))
        for sample in tel.metric_samples:
            sample.sample_time.seconds = now
        alpha.decode(0, tel, now)
        v1.decode(0, _as_v1(tel), now)
        for name, col in _columns(alpha).items():
            np.testing.assert_array_equal(col, _columns(v1)[name], err_msg=name)


def test_v1_categories_are_matched_by_meaning() -> None:
    assert category_from_v1(v1c.COMPONENT_CATEGORY_GRID) == (
        ec.ELECTRICAL_COMPONENT_CATEGORY_GRID_CONNECTION_POINT
    )
    assert category_from_v1(v1c.COMPONENT_CATEGORY_CHP) == ec.ELECTRICAL_COMPONENT_CATEGORY_CHP
    assert v1c.COMPONENT_CATEGORY_CHP != ec.ELECTRICAL_COMPONENT_CATEGORY_CHP  # 10 vs 9
    assert category_from_v1(v1c.COMPONENT_CATEGORY_EV_CHARGER) == (
        ec.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER
    )
    assert category_from_v1(v1c.COMPONENT_CATEGORY_FUSE) == 0  # none in the runtime's model
    assert category_from_v1(999) == 0


def test_a_v1_component_becomes_the_runtime_model() -> None:
    comp = v1c.Component(
        id=7, microgrid_id=3, name="pv 1", category=v1c.COMPONENT_CATEGORY_INVERTER
    )
    comp.category_type.inverter.type = 2  # INVERTER_TYPE_SOLAR
    ours = _component(comp)
    assert (ours.id, ours.name) == (7, "pv 1")
    assert ours.category == ec.ELECTRICAL_COMPONENT_CATEGORY_INVERTER
    assert ours.category_specific_info.inverter.type == ec.INVERTER_TYPE_PV


@pytest.mark.parametrize("bad", ["v2", "V1", "", 1])
def test_an_unknown_api_version_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(OptionsError) as info:
        MicrogridApiClient("grpc://127.0.0.1:1", api_version=bad)  # type: ignore[arg-type]
    assert info.value.field == "api_version"
    assert "v1alpha19" in str(info.value)
    for version in (*API_VERSIONS, None):
        assert check_api_version(version) == version


@pytest.mark.integration
@pytest.mark.parametrize("version", API_VERSIONS)
async def test_the_site_location_and_time_zone_come_from_the_server(
    sim_factory: Any, version: str
) -> None:
    srv = await sim_factory(api_versions=(version,))  # the default site is in Berlin
    site = await connect_site(srv)
    try:
        assert site.client.api_version == version
        assert site.microgrid is not None
        assert site.microgrid.id == srv.site.microgrid_id
        assert (site.microgrid.latitude, site.microgrid.longitude) == pytest.approx(
            (52.52, 13.405)
        )
        assert site.microgrid.timezone == "Europe/Berlin"
    finally:
        await site.aclose()


def test_a_microgrid_without_a_usable_location_has_no_time_zone() -> None:
    from frequenz.api.common.v1alpha8.microgrid import microgrid_pb2 as mg

    assert MicrogridInfo.from_proto(mg.Microgrid(id=3)).timezone is None
    bad = mg.Microgrid(id=3)
    bad.location.latitude, bad.location.longitude = float("nan"), 13.0
    assert MicrogridInfo.from_proto(bad) == MicrogridInfo(3)
    ny = mg.Microgrid(id=4)
    ny.location.latitude, ny.location.longitude = 40.7, -74.0
    assert MicrogridInfo.from_proto(ny).timezone == "America/New_York"
