"""Reactive power, apparent power and voltage over real gRPC on every API version.

A Q setpoint outside the momentary circle is refused with one clear message on v1
and v1alpha19; the apparent-power rating and the momentary reactive bounds are in
the telemetry; the scripted voltage step reaches the per-phase voltages of meters,
inverters and the grid connection point on v1, v1alpha18 and v1alpha19, and the
official client reads them. Timeouts only guard against hangs.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2_grpc as v1_grpc
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as a18_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as a18_grpc
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as a19_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2_grpc as a19_grpc
from frequenz.client.microgrid import MicrogridApiClient
from frequenz.client.microgrid.metrics import Metric

from simulator.config import SiteConfig, site_from_dict
from simulator.server import SimulatorServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from frequenz.client.common.microgrid.components import ComponentId

pytestmark = pytest.mark.integration

M8 = metrics_pb2.Metric
M1 = v1_metrics.Metric
GRID, METER, INV = 1, 2, 3
S_VA = 50_000.0
STEPPED_V = 230.0 * 1.04  # the scripted +4 % on a stiff grid (no impedance)
VOLTAGES_8 = (
    M8.METRIC_AC_VOLTAGE_PHASE_1_N,
    M8.METRIC_AC_VOLTAGE_PHASE_2_N,
    M8.METRIC_AC_VOLTAGE_PHASE_3_N,
    M8.METRIC_AC_VOLTAGE,
)
VOLTAGES_1 = (
    M1.METRIC_AC_VOLTAGE_PHASE_1_N,
    M1.METRIC_AC_VOLTAGE_PHASE_2_N,
    M1.METRIC_AC_VOLTAGE_PHASE_3_N,
    M1.METRIC_AC_VOLTAGE,
)


def _site(grid: dict[str, Any] | None = None) -> SiteConfig:
    """Grid 1, meter 2, inverter 3 (±40 kW, ±40 kVAr, S = 50 kVA, fast) on battery 4;
    a constant 20 kW load, no noise."""
    data: dict[str, Any] = {
        "microgrid": {"id": 7},
        "component": [
            {"id": GRID, "category": "grid"},
            {"id": METER, "category": "meter"},
            {
                "id": INV,
                "category": "inverter",
                "type": "battery",
                "rated_lower_w": -40_000.0,
                "rated_upper_w": 40_000.0,
                "rated_reactive_var": 40_000.0,
                "rated_apparent_va": S_VA,
                "response_delay_s": 0.05,
            },
            {
                "id": 4,
                "category": "battery",
                "capacity_wh": 400_000.0,
                "soc_pct": 50.0,
                "max_charge_w": 100_000.0,
                "max_discharge_w": 100_000.0,
            },
        ],
        "connection": [
            {"source": GRID, "destination": METER},
            {"source": METER, "destination": INV},
            {"source": INV, "destination": 4},
        ],
        "load": {"base_w": 20_000.0},
    }
    if grid is not None:
        data["grid"] = grid
    return site_from_dict(data)


def _samples(body: Any) -> dict[int, Any]:
    return {s.metric: s for s in body.metric_samples}


def _value(body: Any, metric: int) -> float:
    return float(_samples(body)[metric].value.simple_metric.value)


def _bounds(body: Any, metric: int) -> list[tuple[float, float]]:
    return [(b.lower, b.upper) for b in _samples(body)[metric].bounds]


async def _first(call: Any, body: Callable[[Any], Any], pred: Callable[[Any], bool]) -> Any:
    """The first telemetry body of the stream ``call`` for which ``pred`` holds."""
    try:
        async with asyncio.timeout(20):
            async for msg in call:
                if pred(body(msg)):
                    return body(msg)
    finally:
        call.cancel()
    raise AssertionError("stream ended")


def _a19_stream(stub: a19_grpc.MicrogridStub, cid: int) -> Any:
    return stub.ReceiveElectricalComponentTelemetryStream(
        a19_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=cid)
    )


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_reactive_outside_the_momentary_circle_is_refused_on_v1_and_v1alpha19(
    sim_factory: Any,
) -> None:
    """At P = 40 kW the circle leaves 30 kVAr: 35 kVAr is OUT_OF_RANGE with the
    bounds named, on both versions; 30 kVAr is taken and shows up with its apparent
    power, per-phase reactive power and the [0, S] rating."""
    srv: SimulatorServer = await sim_factory(_site())
    async with grpc.aio.insecure_channel(srv.address) as channel:
        v1 = v1_grpc.MicrogridStub(channel)
        a19 = a19_grpc.MicrogridStub(channel)
        await v1.SetComponentPowerActive(
            v1_pb2.SetComponentPowerActiveRequest(component_id=INV, power=40_000.0)
        )
        await _first(
            _a19_stream(a19, INV),
            lambda m: m.telemetry,
            lambda b: _bounds(b, M8.METRIC_AC_POWER_REACTIVE)
            == [(pytest.approx(-30_000.0), pytest.approx(30_000.0))],
        )
        expected = (
            "component 3: reactive power 35000 VAr outside the current bounds"
            " [-30000, 30000] VAr"
        )
        v1_err = await _error(
            v1.SetComponentPowerReactive(
                v1_pb2.SetComponentPowerReactiveRequest(component_id=INV, power=35_000.0)
            )
        )
        a19_call = a19.SetElectricalComponentPower(
            a19_pb2.SetElectricalComponentPowerRequest(
                electrical_component_id=INV,
                power_type=a19_pb2.POWER_TYPE_REACTIVE,
                power=35_000.0,
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as a19_info:
            async for _ in a19_call:
                pass
        for err in (v1_err, a19_info.value):
            assert err.code() == grpc.StatusCode.OUT_OF_RANGE
            assert err.details() == expected
        assert srv.stats()["setpoints_reactive_out_of_bounds"] == 2

        await v1.SetComponentPowerReactive(
            v1_pb2.SetComponentPowerReactiveRequest(component_id=INV, power=30_000.0)
        )
        seen = await _first(
            _a19_stream(a19, INV),
            lambda m: m.telemetry,
            lambda b: _value(b, M8.METRIC_AC_POWER_REACTIVE) == pytest.approx(30_000.0),
        )
        assert _value(seen, M8.METRIC_AC_POWER_APPARENT) == pytest.approx(S_VA)
        assert _bounds(seen, M8.METRIC_AC_POWER_APPARENT) == [(0.0, S_VA)]
        for phase in (
            M8.METRIC_AC_POWER_REACTIVE_PHASE_1,
            M8.METRIC_AC_POWER_REACTIVE_PHASE_2,
            M8.METRIC_AC_POWER_REACTIVE_PHASE_3,
        ):
            assert _value(seen, phase) == pytest.approx(10_000.0)
        v1_seen = await _first(
            v1.ReceiveComponentDataStream(v1_pb2.ReceiveComponentDataStreamRequest(component_id=INV)),
            lambda m: m.data,
            lambda b: _value(b, M1.METRIC_AC_REACTIVE_POWER) == pytest.approx(30_000.0),
        )
        assert _bounds(v1_seen, M1.METRIC_AC_APPARENT_POWER) == [(0.0, S_VA)]
        assert _value(v1_seen, M1.METRIC_AC_REACTIVE_POWER_PHASE_2) == pytest.approx(10_000.0)
    assert srv.stats()["apparent_limit_clips"] == {str(INV): 0}


async def test_scripted_voltage_step_reaches_every_version_and_the_official_client(
    sim_factory: Any,
) -> None:
    """A +4 % step from simulated second 0.5 on a stiff grid: every phase voltage (and
    METRIC_AC_VOLTAGE) of the grid connection point, the meter and the inverter reads
    239.2 V on v1, v1alpha18 and v1alpha19 and through frequenz-client-microgrid."""
    grid = {"event": [{"kind": "step", "start_s": 0.5, "duration_s": 3600.0, "delta_pct": 4.0}]}
    srv: SimulatorServer = await sim_factory(_site(grid), time_scale=10.0)

    def stepped(metrics: tuple[int, ...]) -> Callable[[Any], bool]:
        return lambda b: all(_value(b, m) == pytest.approx(STEPPED_V) for m in metrics)

    async with grpc.aio.insecure_channel(srv.address) as channel:
        v1 = v1_grpc.MicrogridStub(channel)
        a18 = a18_grpc.MicrogridStub(channel)
        a19 = a19_grpc.MicrogridStub(channel)
        streams = []
        for cid in (GRID, METER, INV):
            v1_call = v1.ReceiveComponentDataStream(
                v1_pb2.ReceiveComponentDataStreamRequest(component_id=cid)
            )
            a18_call = a18.ReceiveElectricalComponentTelemetryStream(
                a18_pb2.ReceiveElectricalComponentTelemetryStreamRequest(
                    electrical_component_id=cid
                )
            )
            streams += [
                _first(v1_call, lambda m: m.data, stepped(VOLTAGES_1)),
                _first(a18_call, lambda m: m.telemetry, stepped(VOLTAGES_8)),
                _first(_a19_stream(a19, cid), lambda m: m.telemetry, stepped(VOLTAGES_8)),
            ]
        await asyncio.gather(*streams)
    assert srv.physics.now_s >= 0.5

    metrics = [
        Metric.AC_VOLTAGE_PHASE_1_N,
        Metric.AC_VOLTAGE_PHASE_2_N,
        Metric.AC_VOLTAGE_PHASE_3_N,
        Metric.AC_VOLTAGE,
        Metric.AC_POWER_REACTIVE_PHASE_1,
        Metric.AC_POWER_APPARENT,
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        component = ComponentId(METER)
    async with MicrogridApiClient(f"grpc://{srv.address}") as client:
        rx = client.receive_component_data_samples_stream(component, metrics)
        async with asyncio.timeout(20):
            sample = await rx.receive()
    values = {s.metric: s.value for s in sample.metric_samples}
    assert set(values) == set(metrics)
    for metric in metrics[:4]:
        assert values[metric] == pytest.approx(STEPPED_V)
    # the load's 20 kW at cos phi 0.95: Q = P tan(acos 0.95), a third per phase
    q = 20_000.0 * math.tan(math.acos(0.95))
    assert values[Metric.AC_POWER_REACTIVE_PHASE_1] == pytest.approx(q / 3.0)
    assert values[Metric.AC_POWER_APPARENT] == pytest.approx(math.hypot(20_000.0, q))
