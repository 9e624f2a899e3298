"""EV chargers and PV production caps in the simulator (issue 18, simulator side).

Physics on its own virtual clock (`SitePhysics.step`), then the API over real
gRPC on loopback: raw v1 / v1alpha19 stubs and the official
``frequenz-client-microgrid``. Timeouts only guard against hangs; expiry is read
through the simulator's physics time, never the wall clock.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import warnings
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics
from frequenz.api.common.v1.microgrid.components import components_pb2 as v1_comp
from frequenz.api.common.v1.microgrid.components import ev_charger_pb2 as v1_ev
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2_grpc as v1_grpc
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as a19_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2_grpc as a19_grpc
from frequenz.client.microgrid import MicrogridApiClient, OperationOutOfRange
from frequenz.client.microgrid.component import AcEvCharger
from frequenz.client.microgrid.metrics import Metric

from simulator._ev_sessions import EvConfig, EvSession, EvSessionGenerator, car_acceptance_w
from simulator.config import SiteConfigError, load_site, site_from_dict
from simulator.errors import ComponentNotReadyError, PowerOutOfRangeError
from simulator.faults import FaultScheduler
from simulator.physics import ComponentState, SitePhysics
from simulator.server import SimulatorServer

M = metrics_pb2.Metric
S = ec_pb2.ElectricalComponentStateCode
PV, BAT_INV, EV, EV_IDLE = 5, 10, 51, 52
FULL_W = 3 * 230.0 * 32.0  # 22 080 W: charger 51's rated power
MIN_W = 3 * 230.0 * 6.0  # 4 140 W: its minimum current on three phases

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from frequenz.client.common.microgrid.components import ComponentId


def _site_dict() -> dict[str, Any]:
    """Grid 1 -> meter 2 -> PV 5 (100 kWp), battery inverter 10 -> 11, EV chargers 51
    (3 x 32 A, delay 1 s, 10 kW/s; a car from t=0 wanting 200 kWh) and 52 (1 x 16 A, no car)."""
    return {
        "microgrid": {"id": 7, "name": "ev test site"},
        "component": [
            {"id": 1, "category": "grid"},
            {"id": 2, "category": "meter", "load_share": 1.0},
            {"id": PV, "category": "inverter", "type": "pv", "rated_lower_w": -100_000.0,
             "response_delay_s": 0.5, "ramp_w_per_s": 100_000.0},
            {"id": BAT_INV, "category": "inverter", "type": "battery",
             "rated_lower_w": -50_000.0, "rated_upper_w": 50_000.0},
            {"id": 11, "category": "battery", "capacity_wh": 100_000.0, "soc_pct": 50.0,
             "max_charge_w": 50_000.0, "max_discharge_w": 50_000.0},
            {"id": EV, "category": "ev_charger", "rated_current_a": 32.0, "min_current_a": 6.0,
             "phases": 3, "response_delay_s": 1.0, "ramp_w_per_s": 10_000.0},
            {"id": EV_IDLE, "category": "ev_charger", "rated_current_a": 16.0, "phases": 1},
        ],
        "connection": [
            {"source": 1, "destination": 2},
            {"source": 2, "destination": PV},
            {"source": 2, "destination": BAT_INV},
            {"source": BAT_INV, "destination": 11},
            {"source": 2, "destination": EV},
            {"source": 2, "destination": EV_IDLE},
        ],
        "load": {"base_w": 50_000.0},
        "pv": {"peak_irradiance_wm2": 600.0},
        "ev": {
            "car_max_power_w": 30_000.0,
            "session": [{"charger": EV, "arrive_s": 0.0, "depart_s": 100_000.0,
                         "energy_wh": 200_000.0}],
        },
    }


def _phys(max_step_s: float = 0.01) -> SitePhysics:
    return SitePhysics(site_from_dict(_site_dict()), seed=0, max_step_s=max_step_s)


# ---------------------------------------------------------------- physics


def test_ev_charge_limit_follows_delay_and_ramp_then_expires_to_full_power() -> None:
    phys = _phys()
    row = phys.inverter_row(EV)
    phys.step(1.0)
    assert phys.inverter_power_w[row] == pytest.approx(FULL_W)  # no limit: the car's full power
    phys.set_active_power(EV, 8_000.0, lifetime_s=20.0)  # sent at t = 1 s
    phys.step(0.95)
    assert phys.inverter_power_w[row] == pytest.approx(FULL_W)  # response delay 1 s
    phys.step(0.55)  # 0.5 s after the limit took effect: 5 kW down at 10 kW/s
    assert phys.inverter_power_w[row] == pytest.approx(FULL_W - 5_000.0, abs=1.0)
    phys.step(1.5)
    assert phys.inverter_power_w[row] == pytest.approx(8_000.0)
    phys.step(16.0)  # t = 20 s: the limit (until t = 21 s) still holds
    assert phys.inverter_power_w[row] == pytest.approx(8_000.0)
    phys.step(1.05 + 1.5)  # lapsed at 21 s, back up at 10 kW/s
    assert phys.inverter_power_w[row] == pytest.approx(FULL_W)


def test_ev_bounds_exclusion_band_and_no_car() -> None:
    phys = _phys()
    phys.step(0.1)
    assert phys.active_power_bounds(EV) == [(0.0, 0.0), (MIN_W, FULL_W)]
    assert phys.active_power_bounds(EV_IDLE) == [(0.0, 0.0)]  # no car: 0 W only
    for power in (2_000.0, FULL_W + 100.0, -1_000.0):
        with pytest.raises(PowerOutOfRangeError, match="outside the current bounds"):
            phys.check_active_power(EV, power)
    for power in (0.0, MIN_W, 10_000.0, FULL_W):
        phys.check_active_power(EV, power)
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(EV_IDLE, 5_000.0)
    phys.check_active_power(EV_IDLE, 0.0)


def test_ev_session_taper_delivery_and_departure() -> None:
    doc = _site_dict()
    doc["ev"]["session"] = [{"charger": EV, "arrive_s": 10.0, "depart_s": 7_200.0,
                             "energy_wh": 10_000.0}]
    phys = SitePhysics(site_from_dict(doc), seed=0, max_step_s=1.0)
    row = phys.inverter_row(EV)
    phys.step(5.0)
    assert not phys.ev_connected[row]
    assert phys.inverter_power_w[row] == 0.0
    phys.step(60.0)
    assert phys.ev_connected[row]
    assert phys.inverter_power_w[row] == pytest.approx(FULL_W)
    while phys.ev_delivered_wh[row] < 8_500.0:  # past 80 %: tapering
        phys.step(10.0)
    assert MIN_W <= phys.inverter_power_w[row] < FULL_W * 0.8
    phys.step(3_600.0)
    assert phys.ev_delivered_wh[row] == pytest.approx(10_000.0, abs=10.0)  # request met
    assert phys.inverter_power_w[row] == 0.0
    assert phys.active_power_bounds(EV) == [(0.0, 0.0), (MIN_W, FULL_W)]  # still plugged in
    phys.step(3_600.0)  # gone at 7 200 s
    assert not phys.ev_connected[row]
    assert phys.active_power_bounds(EV) == [(0.0, 0.0)]
    (done,) = phys.ev_sessions_done
    assert done[:4] == (EV, 10.0, 7_200.0, 10_000.0)
    assert done[4] == pytest.approx(10_000.0, abs=10.0)


def test_grid_meter_adds_ev_load_through_the_topology() -> None:
    phys = _phys(max_step_s=0.1)
    phys.step(5.0)
    assert phys.ev_power_w == pytest.approx(FULL_W)
    expected = phys.load_power_w + phys.pv_power_w + phys.battery_inverter_power_w
    assert phys.grid_power_w == pytest.approx(expected + phys.ev_power_w)
    assert phys.meter_power_w[phys.meter_row(2)] == pytest.approx(phys.grid_power_w)
    assert phys.battery_inverter_power_w == 0.0  # the EV rows are not battery inverters


def test_pv_cap_bounds_are_the_available_production() -> None:
    phys = _phys(max_step_s=0.1)
    phys.step(1.0)
    available = float(phys.pv_available_w[phys.inverter_row(PV)])
    assert -100_000.0 < available < -40_000.0
    assert phys.active_power_bounds(PV) == [(available, 0.0)]
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(PV, available - 5_000.0)  # more than the sun gives
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(PV, 1_000.0)  # PV cannot consume
    phys.check_active_power(PV, -20_000.0)


def test_ev_charger_faults_like_an_inverter() -> None:
    phys = _phys(max_step_s=0.1)
    row = phys.inverter_row(EV)
    phys.step(1.0)
    phys.inject_error(EV)
    phys.step(5.0)
    assert phys.state_of(EV) == ComponentState.ERROR
    assert phys.inverter_power_w[row] == 0.0
    with pytest.raises(ComponentNotReadyError):
        phys.check_active_power(EV, 10_000.0)
    phys.ack_error(EV)
    phys.start(EV)
    phys.limit_power(EV, 0.0, 10_000.0)  # a bounds flap: derated
    assert phys.active_power_bounds(EV) == [(0.0, 0.0), (MIN_W, 10_000.0)]
    phys.step(5.0)
    assert phys.inverter_power_w[row] == pytest.approx(10_000.0)
    site = site_from_dict({**_site_dict(), "faults": {"error_state_per_h": 1.0}})
    assert FaultScheduler(site.faults, site).eligible["error_state"] == [BAT_INV, 11, EV, EV_IDLE]


# ---------------------------------------------------------------- sessions


def test_session_generator_is_seeded_and_merges_scripted_sessions() -> None:
    rush = EvSession(3_600.0, 9_000.0, 25_000.0, EV)
    cfg = EvConfig(seed=3, arrivals_per_day=4.0, sessions=(rush,))
    week = 7 * 86_400.0
    first = EvSessionGenerator(cfg, EV).sessions_until(week)
    assert first == EvSessionGenerator(cfg, EV).sessions_until(week)  # same seed, same sessions
    assert first != EvSessionGenerator(EvConfig(seed=4, arrivals_per_day=4.0), EV).sessions_until(
        week
    )
    assert first != EvSessionGenerator(cfg, EV_IDLE).sessions_until(week)  # per charger
    assert rush in first
    assert len(first) > 7
    for a, b in itertools.pairwise(first):
        assert a.depart_s <= b.arrive_s  # one car at a time
    for s in first:
        assert s.energy_wh >= cfg.energy_min_wh
        assert s.depart_s - s.arrive_s >= cfg.dwell_min_s
    assert EvSessionGenerator(EvConfig(), EV).next() is None  # nothing configured: no cars


def test_car_acceptance_curve() -> None:
    delivered = np.array([0.0, 7_000.0, 9_000.0, 9_990.0, 10_000.0, 0.0])
    request = np.array([10_000.0] * 5 + [0.0])
    got = car_acceptance_w(delivered, request, np.full(6, 20_000.0), np.full(6, 4_000.0), 80.0)
    assert got.tolist() == pytest.approx([20_000.0, 20_000.0, 10_000.0, 4_000.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (lambda d: d["component"][5].update(min_current_a=40.0),
         "component[5].min_current_a = 40.0: must be <= rated_current_a (32)"),
        (lambda d: d["component"][5].update(phases=4),
         "component[5].phases = 4: must be 1, 2 or 3"),
        (lambda d: d["ev"]["session"][0].update(charger=PV),
         "ev.session[0].charger = 5: no component with category 'ev_charger' has this id"),
        (lambda d: d["ev"]["session"].append({"charger": EV, "arrive_s": 50.0,
                                              "depart_s": 60.0, "energy_wh": 1.0}),
         "overlaps"),
        (lambda d: d["connection"].append({"source": EV, "destination": 11}),
         "battery 11 must sit directly behind an inverter"),
    ],
)
def test_bad_ev_config_is_one_line_naming_the_field(
    patch: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = copy.deepcopy(_site_dict())
    patch(doc)
    with pytest.raises(SiteConfigError) as err:
        site_from_dict(doc, "site.toml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bundled_zero_export_site_has_an_export_event_and_a_charging_rush() -> None:
    site = load_site(Path(str(resources.files("simulator.sites"))) / "zero_export_with_ev.toml")
    assert len(site.ev_chargers) == 6
    assert sum(1 for i in site.inverters if i.inverter_type == "pv") == 2
    phys = SitePhysics(site, seed=0, max_step_s=1.0)
    grid, ev = [], []
    for _ in range(1_800):
        phys.step(1.0)
        grid.append(phys.grid_power_w)
        ev.append(phys.ev_power_w)
    assert min(grid[600:960]) < -150_000.0  # export event (batteries idle)
    assert max(ev[:890]) == 0.0
    assert max(ev[1_020:]) > 90_000.0


# ---------------------------------------------------------------- over gRPC


def _value(data: Any, metric: int) -> float:
    return float(
        next(s.value.simple_metric.value for s in data.metric_samples if s.metric == metric)
    )


def _bounds(data: Any, metric: int) -> list[tuple[float, float]]:
    sample = next(s for s in data.metric_samples if s.metric == metric)
    return [(b.lower, b.upper) for b in sample.bounds]


async def _first(call: Any) -> Any:
    """The first message of a stream (then cancel it)."""
    try:
        async with asyncio.timeout(20):
            return await call.read()
    finally:
        call.cancel()


@pytest.mark.integration
async def test_ev_chargers_listed_and_streamed_on_v1_and_v1alpha19(
    sim_factory: Callable[..., Any],
) -> None:
    srv: SimulatorServer = await sim_factory(site_from_dict(_site_dict()))
    async with grpc.aio.insecure_channel(srv.address) as channel:
        v1, a19 = v1_grpc.MicrogridStub(channel), a19_grpc.MicrogridStub(channel)
        v1_list = await v1.ListComponents(v1_pb2.ListComponentsRequest())
        ev1 = next(c for c in v1_list.components if c.id == EV)
        assert ev1.category == v1_comp.COMPONENT_CATEGORY_EV_CHARGER
        assert ev1.category_type.ev_charger.type == v1_ev.EV_CHARGER_TYPE_AC
        a19_list = await a19.ListElectricalComponents(a19_pb2.ListElectricalComponentsRequest())
        ev19 = next(c for c in a19_list.electrical_components if c.id == EV)
        assert ev19.category == ec_pb2.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER
        assert ev19.category_specific_info.ev_charger.type == ec_pb2.EV_CHARGER_TYPE_AC

        data = (await _first(a19.ReceiveElectricalComponentTelemetryStream(
            a19_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=EV)
        ))).telemetry
        assert _value(data, M.METRIC_AC_POWER_ACTIVE) == pytest.approx(FULL_W, abs=1.0)
        for m in (M.METRIC_AC_CURRENT_PHASE_1, M.METRIC_AC_CURRENT_PHASE_3):
            assert _value(data, m) == pytest.approx(32.0, abs=0.1)
        assert _bounds(data, M.METRIC_AC_POWER_ACTIVE) == [(0.0, 0.0), (MIN_W, FULL_W)]
        assert set(data.state_snapshots[0].states) == {
            S.ELECTRICAL_COMPONENT_STATE_CODE_CHARGING,
            S.ELECTRICAL_COMPONENT_STATE_CODE_EV_CHARGING_CABLE_LOCKED_AT_EV,
        }
        idle = (await _first(v1.ReceiveComponentDataStream(
            v1_pb2.ReceiveComponentDataStreamRequest(component_id=EV_IDLE)
        ))).data
        assert _value(idle, v1_metrics.METRIC_AC_ACTIVE_POWER) == 0.0
        assert _value(idle, v1_metrics.METRIC_AC_CURRENT_PHASE_2) == 0.0  # one phase only
        assert set(idle.states[0].states) == {
            v1_comp.COMPONENT_STATE_CODE_READY,
            v1_comp.COMPONENT_STATE_CODE_EV_CHARGING_CABLE_UNPLUGGED,
        }


def _cid(n: int) -> ComponentId:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ComponentId(n)


async def _until(
    client: MicrogridApiClient, component: int, pred: Callable[[float], bool]
) -> float:
    """Active power samples of ``component`` until ``pred`` holds (timeout: hangs only)."""
    rx = client.receive_component_data_samples_stream(_cid(component), [Metric.AC_POWER_ACTIVE])
    async with asyncio.timeout(30):
        while True:
            sample = await rx.receive()
            value = sample.metric_samples[0].value
            assert isinstance(value, float)
            if pred(value):
                return value


@pytest.mark.integration
async def test_official_client_ev_limit_and_pv_cap_honoured_then_lifted_at_expiry(
    sim_factory: Callable[..., Any],
) -> None:
    srv: SimulatorServer = await sim_factory(site_from_dict(_site_dict()), time_scale=20.0)
    async with MicrogridApiClient(f"grpc://{srv.address}") as client:
        comps = {int(c.id): c for c in await client.list_components()}
        assert isinstance(comps[EV], AcEvCharger)
        sent_s = srv.physics.now_s
        await client.set_component_power_active(
            _cid(EV), 8_000.0, request_lifetime=timedelta(seconds=10)
        )
        await client.set_component_power_active(
            _cid(PV), -20_000.0, request_lifetime=timedelta(seconds=10)
        )
        await _until(client, EV, lambda p: abs(p - 8_000.0) < 1.0)
        await _until(client, PV, lambda p: abs(p + 20_000.0) < 1.0)
        await _until(client, EV, lambda p: abs(p - FULL_W) < 1.0)  # expired: full power
        await _until(client, PV, lambda p: p < -40_000.0)  # expired: uncapped
        assert srv.physics.now_s >= sent_s + 10.0
        for cid, power in ((EV, 2_000.0), (EV, FULL_W + 1_000.0), (PV, -80_000.0)):
            with pytest.raises(OperationOutOfRange):
                await client.set_component_power_active(_cid(cid), power)
    stats = srv.stats()
    assert stats["setpoints_accepted"] == 2
    assert stats["setpoints_rejected"]["OUT_OF_RANGE"] == 3
